"""Fix 30Q: property tests of the two kinds of attacks 30AR F2 and 30AQ F1
(/work/notes/s30/FIX-Q-NOTES.md).

- 30AR F2, a terminal of a query disagreeing with ``ids()``: for any objects (sort values
  None or not), any filter shape (none, equality, ``one_of``, a range on the sort field or
  another, NOT, OR, AND), any order (by id, ``order_by`` ascending or descending), offset,
  limit and cursor, on a model with and without buckets, every terminal (``ids``,
  ``count``, ``exists``, ``first``, ``all``, ``page``, ``pages``, iteration, the plans
  ``count_plan`` / ``size_plan`` / ``exists_plan``) agrees with a Python oracle of
  docs/queries.md, "Queries": ``order_by(field)`` leaves out objects without a value for
  it, and ``count()``/``exists()`` describe the results ``ids()`` gives.
- 30AQ F1, a stored value cut short or with bytes appended that decodes to another value:
  for every serializer and chain (json, msgpack, yaml, each bare and under zlib, bz2,
  lzma, fernet and zlib|fernet) and any value kind (numbers, literals, text, bytes,
  lists, dicts, Decimals, datetimes, attrs classes), every proper prefix of the stored
  bytes and any bytes appended to them raise DecodeError (docs/codecs.md, "Stored
  format": "a value cut short or with bytes appended never decodes").
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q, between, ge, lt, one_of
from tests.budget import scaled
from tests.keys import use_keys
from tests.strategies import values

# ---- 30AR F2: every terminal agrees with the oracle of ids() ------------------------------

COLORS = ("red", "green", "blue")


@redmodel.model(prefix="fx30q")
@attrs.define
class Item:
    color: str = redmodel.field(index=True)
    price: float | None = redmodel.field(index="range", default=None)
    rank: int | None = redmodel.field(index="range", default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx30qb", buckets=4)
@attrs.define
class BItem:
    color: str = redmodel.field(index=True)
    price: float | None = redmodel.field(index="range", default=None)
    rank: int | None = redmodel.field(index="range", default=None)
    id: str = redmodel.key_field(generated=False)


_rows = st.lists(
    st.tuples(st.sampled_from(COLORS),
              st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.5, 4.0])),
              st.one_of(st.none(), st.integers(min_value=-2, max_value=3))),
    max_size=14)


def _term() -> st.SearchStrategy[tuple[Any, Any]]:
    """(Q, predicate over (color, price, rank)) of one filter term."""
    color = st.sampled_from(COLORS).map(
        lambda c: (Q(color=c), lambda o, c=c: o[0] == c))
    colors = st.lists(st.sampled_from(COLORS), max_size=3).map(
        lambda cs: (Q(color=one_of(cs)), lambda o, cs=cs: o[0] in cs))
    price = st.sampled_from([0.5, 1.0, 2.5, 4.0]).map(
        lambda p: (Q(price=lt(p)), lambda o, p=p: o[1] is not None and o[1] < p))
    rank = st.integers(min_value=-2, max_value=3).map(
        lambda r: (Q(rank=ge(r)), lambda o, r=r: o[2] is not None and o[2] >= r))
    rank_in = st.tuples(st.integers(-2, 3), st.integers(-2, 3)).map(
        lambda b: (Q(rank=between(*b)),
                   lambda o, b=b: o[2] is not None and b[0] <= o[2] <= b[1]))
    return st.one_of(color, colors, price, rank, rank_in)


def _negate(t: tuple[Any, Any]) -> tuple[Any, Any]:
    return ~t[0], lambda o: not t[1](o)


def _either(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    return a[0] | b[0], lambda o: a[1](o) or b[1](o)


def _both(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    return a[0] & b[0], lambda o: a[1](o) and b[1](o)


_filters = st.one_of(
    st.just(None),
    _term(),
    _term().map(_negate),
    st.tuples(_term(), _term()).map(lambda ab: _either(*ab)),
    st.tuples(_term(), _term()).map(lambda ab: _both(*ab)),
    st.tuples(_term(), _term()).map(lambda ab: _both(ab[0], _negate(ab[1]))),
)


def _oracle(rows: dict[str, tuple[Any, ...]], pred: Any, order: str) -> list[str]:
    """The ids ``ids()`` gives, by docs/queries.md: the matches; with ``order_by`` only
    those with a value for the field, by value then id (``-`` reverses both)."""
    ids = [i for i, o in rows.items() if pred is None or pred(o)]
    if not order:
        return sorted(ids)
    name, desc = order.lstrip("-"), order.startswith("-")
    at = {"price": 1, "rank": 2}[name]
    scored = [i for i in ids if rows[i][at] is not None]
    return sorted(scored, key=lambda i: (rows[i][at], i), reverse=desc)


@pytest.mark.parametrize("model", [Item, BItem], ids=["one", "buckets"])
def test_every_terminal_agrees_with_ids_and_the_oracle(store: redmodel.Store,
                                                       model: type) -> None:
    """docs/queries.md, "Queries": "`order_by(field)` leaves out objects that have no
    value for the field"; "`count()` and `exists()` describe the results `ids()` gives:
    the matches after the cursor, less the offset, at most the limit"; "Pages and
    cursors": "Without any change, the pages together are exactly `.all()`"."""

    @settings(max_examples=scaled(150))
    @given(data=_rows, where=_filters,
           order=st.sampled_from(["", "rank", "-rank", "price", "-price"]),
           offset=st.integers(0, 4), limit=st.one_of(st.none(), st.integers(0, 6)),
           cut=st.one_of(st.none(), st.integers(0, 5)), size=st.integers(1, 4))
    def run(data: list[tuple[Any, ...]], where: tuple[Any, Any] | None, order: str,
            offset: int, limit: int | None, cut: int | None, size: int) -> None:
        rows = {f"i{n:02d}": row for n, row in enumerate(data)}
        store.save_many([model(*row, id=i) for i, row in rows.items()])
        try:
            base = store.find(model) if where is None else store.find(model, where[0])
            if order:
                base = base.order_by(order)
            expected = _oracle(rows, None if where is None else where[1], order)
            # every position: the start, and after the cursor of a page of `cut` results
            queries = [(base, expected)]
            if cut:
                page = base.page(cut)
                assert [o.id for o in page.items] == expected[:cut]
                if page.cursor is not None:
                    queries.append((base.after(page.cursor), expected[cut:]))
            for q, matches in queries:
                for q2, want in ((q, matches), (q.offset(offset), matches[offset:]),
                                 (q.limit(limit), matches[:limit]),
                                 (q.offset(offset).limit(limit),
                                  matches[offset:][:limit])):
                    _check_terminals(store, q2, want, size)
        finally:
            store.delete_many(model, list(rows))

    run()


def _check_terminals(store: redmodel.Store, q: Any, want: list[str], size: int) -> None:
    assert q.ids() == want
    assert q.count() == len(want)
    assert q.exists() is bool(want)
    first = q.first()
    assert (first.id if first is not None else None) == (want[0] if want else None)
    assert [o.id for o in q.all()] == want
    assert [o.id for page in q.pages(size) for o in page] == want
    assert [o.id for o in q] == want
    assert store.run(q.size_plan()) == len(want)
    assert store.run(q.exists_plan()) is bool(want)
    page = q.page(size)
    assert [o.id for o in page.items] == want[:size]


def test_count_plan_of_a_sorted_query_counts_only_scored_objects(store: redmodel.Store
                                                                 ) -> None:
    """``count_plan`` (before cursor, offset and limit) of an ``order_by`` query counts
    the objects its pages give, and an unordered query's count on the same filter keeps
    counting every match (the compiled filter is shared between the two)."""
    store.save_many([Item("red", id="a"), Item("red", rank=1, id="b"),
                     Item("green", price=1.0, id="c")])
    try:
        for _ in range(2):  # the second time from the cached native count
            assert store.find(Item, color="red").count() == 2
            assert store.find(Item, color="red").order_by("rank").count() == 1
            assert store.find(Item, color="red").order_by("-price").count() == 0
            assert store.find(Item).order_by("rank").count() == 1
            assert store.find(Item).count() == 3
            assert store.find(Item, rank=lt(5)).order_by("rank").count() == 1
            assert store.run(store.find(Item).order_by("price").count_plan()) == 1
    finally:
        store.delete_many(Item, ["a", "b", "c"])


# ---- 30AQ F1: a value cut short or with bytes appended never decodes -----------------------


@attrs.define
class Inner:
    n: int
    f: float
    s: str
    when: dt.datetime | None
    tags: list[str]


KINDS: list[Any] = [int, float, bool, str, bytes, decimal.Decimal, dt.datetime, dt.date,
                    int | None, list[int], list[float], dict[str, int], tuple[int, str],
                    Inner]
SERIALIZERS = ("json", "msgpack", "yaml")
TRANSFORMS = ("", "|zlib", "|bz2", "|lzma", "|fernet", "|zlib|fernet")


def _value_and_kind() -> st.SearchStrategy[tuple[Any, Any]]:
    floats = st.floats(allow_nan=False)  # nan is not promised equal (docs/codecs.md)
    return st.sampled_from(KINDS).flatmap(
        lambda tp: st.tuples(floats if tp is float else values(tp), st.just(tp)))


@pytest.mark.parametrize("transforms", TRANSFORMS)
@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_a_value_cut_short_or_with_bytes_appended_never_decodes(
        serializer: str, transforms: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/codecs.md, "Stored format": every proper prefix of a stored value, and the
    value with any bytes appended, raises DecodeError, for every chain and value kind."""
    use_keys(monkeypatch)
    chain = redmodel.codecs.codec(serializer + transforms)

    @settings(max_examples=scaled(50))
    @given(vk=_value_and_kind(), tail=st.one_of(
        st.binary(min_size=1, max_size=8),
        st.sampled_from([b"\n", b" ", b"0", b"5\n", b"e3\n", b"\n...\n", b"...\n",
                         b"# c\n...\n", b"\x00", b"\xc0"])),
        data=st.data())
    def run(vk: tuple[Any, Any], tail: bytes, data: st.DataObject) -> None:
        value, tp = vk
        stored = chain.encode(value, tp)
        assert _same(chain.decode(stored, tp), value)
        # every proper prefix when short, else the cuts near either end and a few between
        cuts = range(len(stored)) if len(stored) <= 64 else sorted(
            {*range(24), *range(len(stored) - 24, len(stored)),
             *data.draw(st.lists(st.integers(0, len(stored) - 1), max_size=8))})
        for n in cuts:
            with pytest.raises(redmodel.DecodeError):
                chain.decode(stored[:n], tp)
        with pytest.raises(redmodel.DecodeError):
            chain.decode(stored + tail, tp)

    run()


def _same(a: Any, b: Any) -> bool:
    return bool(a == b and type(a) is type(b))


def test_json_numbers_end_with_a_newline_and_old_bare_numbers_are_refused() -> None:
    """docs/codecs.md, "Stored format": a json top-level number ends with a newline; a
    bare number (cut short, or written by an earlier version) raises DecodeError saying
    so; literals, strings, arrays and objects are stored as before (no newline)."""
    c = redmodel.codecs.codec("json")
    assert c.encode(12345, int) == b"\xa7\x04json12345\n"
    assert c.encode(-2.5, float) == b"\xa7\x04json-2.5\n"
    assert c.encode(None, int | None) == b"\xa7\x04jsonnull"
    assert c.encode(True, bool) == b"\xa7\x04jsontrue"
    assert c.encode([1, 2], list[int]) == b"\xa7\x04json[1,2]"
    assert c.encode("7", str) == b'\xa7\x04json"7"'
    with pytest.raises(redmodel.DecodeError, match="earlier redmodel version"):
        c.decode(b"\xa7\x04json12345", int)
    with pytest.raises(redmodel.DecodeError, match="bytes after its end"):
        c.decode(b"\xa7\x04json[1,2] ", list[int])


@redmodel.model(prefix="fx30q_native")
@attrs.define
class Native:
    n: int = 0
    f: float = 0.0
    coded: int = redmodel.field(codec="json", default=0)
    id: str = redmodel.key_field(generated=False)


def test_the_hash_layouts_native_numbers_are_not_json(store: redmodel.Store) -> None:
    """docs/codecs.md, "Stored format": a hash field of a number without a codec is a
    Redis-native number (HINCRBY works on it), not json: it carries no newline; only a
    field coded with json does."""
    store.save(Native(12345, 2.5, 7, id="x"))
    raw = store.client.hgetall("fx30q_native:x")
    assert raw[b"n"] == b"12345" and raw[b"f"] == b"2.5"
    assert raw[b"coded"] == b"\xa7\x04json7\n"
    store.client.hincrby("fx30q_native:x", "n", 1)
    assert store.get(Native, "x") == Native(12346, 2.5, 7, id="x")
    store.client.hset("fx30q_native:x", "coded", b"\xa7\x04json7")  # an earlier version's
    with pytest.raises(redmodel.DecodeError, match="fx30q_native:x"):
        store.get(Native, "x")
    store.delete(Native, "x")
