"""Properties behind the fixes of attack 23B (tests/test_attack23b.py holds one example of
each finding): each draws the whole kind of input the finding was one case of."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q, between, one_of
from tests.budget import scaled


@redmodel.model(prefix="fx23c")
@attrs.define
class Row:
    color: str = redmodel.field(index=True, default="red")
    price: float = redmodel.field(index="range", default=1.0)
    id: str = redmodel.key_field(generated=False)


# any character (lone surrogates too), the ones the escaping is about, and escapes good and bad
PIECES = st.one_of(st.characters(), st.characters(categories=["Cs"]),
                   st.sampled_from([*list("%|{}*?[]\\:\x1e\x1f\n"), "%4A", "%zz", "%C3%A9"]))


# F2: any forged cursor is either accepted (and then runs) or a QueryError before any
# command is sent, whatever its id part holds.
@example(eid="\udc80", order=None, filtered=False)  # an undecodable byte, unordered: sent
@example(eid="a\udcff", order="price", filtered=True)  # as that byte, not as text
@given(eid=st.lists(PIECES, max_size=6).map("".join),
       order=st.sampled_from([None, "price", "-price"]),
       filtered=st.booleans())
@settings(max_examples=scaled(50, floor=10))
def test_a_forged_cursor_is_a_query_error_or_runs(
        store: redmodel.Store, eid: str, order: str | None, filtered: bool) -> None:
    sent: list[Any] = []
    execute = store._execute

    def recording(batch: Any) -> list[Any]:
        sent.append(batch)
        return execute(batch)

    store._execute = recording  # type: ignore[method-assign]
    base = store.find(Row, color="red") if filtered else store.find(Row)
    query = base if order is None else base.order_by(order)
    cursor = f"||{eid}" if order is None else f"{order}|1|{eid}"
    try:
        after = query.after(cursor)
        ids = after.ids()
    except redmodel.QueryError:
        assert sent == []
    else:
        assert ids == []
        eid.encode("utf-8", "surrogateescape")      # only text the index can hold was sent


# F5: an enum of any int and str values is accepted exactly when no two members share a
# stored text (a hash field, an index entry and a unique claim all hold that text).
@given(values=st.lists(st.one_of(st.integers(-3, 12), st.integers(),
                                 st.sampled_from(["1", "01", "-0", "0", "a", "", "10", " 1"]),
                                 st.text(max_size=3)),
                       min_size=1, max_size=6, unique_by=lambda v: (type(v), v)),
       option=st.sampled_from([{}, {"index": True}, {"unique": True}]))
@settings(max_examples=scaled(50, floor=10))
def test_an_enum_is_accepted_iff_its_member_texts_differ(
        values: list[Any], option: dict[str, Any]) -> None:
    kind = enum.Enum("Kind", {f"M{i}": v for i, v in enumerate(values)})  # type: ignore[misc]
    texts = [str(v) for v in values]
    body = {"__annotations__": {"kind": kind, "id": str},
            "kind": redmodel.field(**option), "id": redmodel.key_field(generated=False)}
    try:
        redmodel.model(prefix="fx23e")(attrs.define(type("Tagged", (), body)))
    except redmodel.ModelDefinitionError as e:
        assert len(set(texts)) < len(texts)
        assert "enum Kind: members" in str(e)
    else:
        assert len(set(texts)) == len(texts)


@redmodel.model(prefix="fx23p")
@attrs.define
class Tally:
    n: int = redmodel.field(index=True, default=0)
    r: int = redmodel.field(index="range", default=0)
    u: int | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


ROOT = "fx23p:%idx:"


@st.composite
def refused_writes(draw: st.DrawFn) -> tuple[int, str, dict[str, int], str | None, str]:
    """(n before, the call, its arguments, the key planted with a wrong type or None (the
    refusal is a unique value taken), the planted value's type): a write that must be
    refused, by a wrong-typed key it needs or by a unique value another object holds."""
    n0 = draw(st.integers(-3, 3))
    amount = draw(st.integers(-3, 3).filter(bool))
    call = draw(st.sampled_from(["incr n", "incr_fields", "update n", "update u"]))
    plant = draw(st.sampled_from(["string", "list", "zset"]
                                 + (["taken"] if call.endswith(" u") else [])))
    if call == "incr n":
        args = {"n": amount}
        keys = [f"{ROOT}eq:n:{n0 + amount}", f"{ROOT}eq:n:{n0}"]
    elif call == "incr_fields":
        args = {"n": amount, "r": draw(st.integers(-3, 3))}
        keys = [f"{ROOT}eq:n:{n0 + amount}", f"{ROOT}rng:r", f"{ROOT}rec"]
    elif call == "update n":
        args = {"n": n0 + amount}
        keys = [f"{ROOT}eq:n:{n0 + amount}", f"{ROOT}eq:n:{n0}", f"{ROOT}rec"]
    else:  # u: 5 -> 5 + amount, held by b when "taken" (a unique field is never incremented)
        args = {"u": 5 + amount}
        keys = [f"{ROOT}eq:u:{5 + amount}", f"{ROOT}uq:u", f"{ROOT}eq:u:5"]
    if plant == "taken":
        return n0, call, args, None, plant
    key = draw(st.sampled_from(keys))
    if plant == "zset" and ":rng:" in key:
        plant = "list"
    return n0, call, args, key, plant


# F1: a refused indexed incr, incr_fields or update (a wrong-typed key it needs planted, of
# each kind, or a unique value taken) leaves the object's hash byte-identical (no pin from
# an earlier "needs keys" answer of the same call), and another client's valid increment
# then lands at once.
@given(case=refused_writes())
@settings(max_examples=scaled(50, floor=10))
def test_a_refused_indexed_write_leaves_the_object_as_it_was(
        redis_client: Any, redis_url: str, case: Any) -> None:
    n0, call, args, key, plant = case
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    store.save_many([Tally(n=n0, u=5, id="a"), Tally(id="b")])
    if key is None:
        store.update(Tally, "b", u=args["u"])
    else:
        kept = redis_client.dump(key)
        redis_client.delete(key)
        {"string": lambda: redis_client.set(key, "planted"),
         "list": lambda: redis_client.rpush(key, "planted"),
         "zset": lambda: redis_client.zadd(key, {"planted": 1})}[plant]()
    before = redis_client.hgetall("fx23p:a")
    with pytest.raises((redmodel.ServerError, redmodel.UniqueViolationError)):
        if call == "incr_fields":
            store.incr_fields(Tally, "a", args)
        elif call.startswith("incr"):
            (field, amount), = args.items()
            store.incr(Tally, "a", field, amount)
        else:
            store.update(Tally, "a", **args)
    assert redis_client.hgetall("fx23p:a") == before
    if key is not None:
        redis_client.delete(key)
        if kept is not None:
            redis_client.restore(key, 0, kept)
    other = redmodel.Store.from_url(redis_url)
    assert other.incr(Tally, "a", "n", 1) == n0 + 1      # at once: no pin to wait out
    assert other.verify(Tally) == []



def badge_model(buckets: int | None) -> type:
    @redmodel.model(prefix=f"fx23b{buckets or 0}", buckets=buckets)
    @attrs.define
    class Badge:
        code: str | None = redmodel.field(unique=True, default=None)
        id: str = redmodel.key_field(generated=False)
    return Badge


BADGES = {b: badge_model(b) for b in (None, 4)}
IDS = [str(i) for i in range(5)]
CODES = list("ABCDEF")


def chain(order: list[str], start: list[str]) -> list[tuple[str, str, bool]]:
    """Saves in which each object of ``order`` takes the value the previous one held."""
    held = dict(zip(IDS, start, strict=False))
    free = next(c for c in CODES if c not in start)
    saves, given_up = [], free
    for i in order:
        saves.append((i, given_up, True))
        if i not in held:
            break
        given_up = held[i]
    return saves


def outcome(store: redmodel.Store, model: type, save: Any) -> tuple[Any, ...]:
    """What a save leaves: the error type (or None), every object's code, verify's answer."""
    try:
        save()
        error = None
    except redmodel.RedmodelError as e:
        error = type(e)
    return (error, sorted((o.id, o.code) for o in store.find(model).all()),
            store.verify(model))


# F3: save_many settles unique values in order, exactly as saving the objects one at a time
# does (a value given up by an earlier object of the call is free for a later one: within
# a chunk and across chunks, with and without buckets).
@given(buckets=st.sampled_from([None, 4]),
       start=st.lists(st.sampled_from(CODES), max_size=len(IDS), unique=True),
       data=st.data(), chunk_size=st.integers(1, 4))
@settings(max_examples=scaled(50, floor=10))
def test_save_many_settles_unique_values_as_one_at_a_time(
        redis_client: Any, buckets: int | None, start: list[str], data: st.DataObject,
        chunk_size: int) -> None:
    # any saves of distinct values, or a chain: each object takes the value the one saved
    # just before it gave up (the last taker may be an object that held nothing)
    codes = st.sampled_from(start + CODES)
    anything = st.lists(st.tuples(st.sampled_from(IDS), codes, st.booleans()),
                        min_size=1, max_size=6, unique_by=lambda s: s[1])
    saves = data.draw(anything if len(start) < 2 or data.draw(st.booleans()) else
                      st.permutations(IDS).map(lambda order: chain(order, start)))
    model = BADGES[buckets]
    store = redmodel.Store(redis_client)
    objs = [model(code=code if keep else None, id=i) for i, code, keep in saves]

    def fresh() -> None:
        redis_client.flushall()
        for i, code in zip(IDS, start, strict=False):
            store.save(model(code=code, id=i))

    def one_at_a_time() -> None:
        for o in objs:
            store.save(o)

    fresh()
    referee = outcome(store, model, one_at_a_time)
    fresh()
    got = outcome(store, model, lambda: store.save_many(objs, chunk_size=chunk_size))
    if referee[0] is None:
        assert got == referee
    else:  # refused: the chunk of the refusal ends the call (its error says what was written)
        assert got[0] is referee[0]
        assert got[2] == []


@redmodel.model(prefix="fx23t")
@attrs.define
class Moment:
    at: dt.datetime | None = redmodel.field(index="range", default=None)
    color: str = redmodel.field(index=True, default="x")
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


UTC = dt.timezone.utc
OFFSETS = [None, UTC, dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=-5)),
           dt.timezone(dt.timedelta(hours=5, minutes=30))]


def instant(v: dt.datetime) -> dt.datetime:
    """What a range index orders: a naive datetime is taken as UTC."""
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v


@st.composite
def renderings(draw: st.DrawFn) -> dt.datetime:
    """One of a few instants (a microsecond apart, or an hour), naive or at any offset."""
    at = dt.datetime(2020, 1, 1, 12, tzinfo=UTC) + draw(st.sampled_from(
        [dt.timedelta(0), dt.timedelta(microseconds=1), dt.timedelta(hours=1)]))
    tz = draw(st.sampled_from(OFFSETS))
    return at.replace(tzinfo=None) if tz is None else at.astimezone(tz)


# F4: an equality term on a range-indexed datetime matches the instant (a naive value taken
# as UTC), on every path of a query: the index walk, a scan pass and pages served from its
# window, count, exists, first, NOT, OR, one_of, between.
@given(values=st.lists(st.one_of(st.none(), renderings()), min_size=1, max_size=7),
       v=renderings(), budget=st.sampled_from([1, 2, 1000]), size=st.integers(1, 3))
@settings(max_examples=scaled(50, floor=10))
def test_equality_on_a_range_indexed_datetime_is_the_instant_everywhere(
        redis_client: Any, monkeypatch: pytest.MonkeyPatch, values: list[dt.datetime | None],
        v: dt.datetime, budget: int, size: int) -> None:
    monkeypatch.setattr("redmodel._indexes._query.STEP_BUDGET", budget)
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    store.save_many([Moment(at=x, n=-i, id=f"m{i}") for i, x in enumerate(values)])
    want = sorted(f"m{i}" for i, x in enumerate(values)
                  if x is not None and instant(x) == instant(v))
    rest = sorted(f"m{i}" for i in range(len(values)) if f"m{i}" not in want)
    find = store.find
    for q in (find(Moment, at=v), find(Moment, at=one_of([v])), find(Moment, at=between(v, v)),
              find(Moment, at=v, color="x"), find(Moment, Q(at=v) | Q(color="none")),
              find(Moment, Q(at=v) | Q(at=v)), find(Moment, ~~Q(at=v))):
        for shaped in (q, q.order_by("at"), q.order_by("-at"), q.order_by("n")):
            assert sorted(shaped.ids()) == want
            assert sorted(o.id for o in shaped.all()) == want
            assert sorted(o.id for page in shaped.pages(size) for o in page) == want
            assert shaped.count() == len(want)
            assert shaped.exists() == bool(want)
            first = shaped.first()
            assert (first is None) if not want else (first is not None and first.id in want)
    assert sorted(find(Moment, ~Q(at=v)).ids()) == rest
    assert sorted(o.id for p in find(Moment, ~Q(at=v)).order_by("n").pages(size)
                  for o in p) == rest


# The all-ids index in an older redmodel's format (a SET, or the ZSET before the pages) is
# named as such by a query, as by writes and verify: IndexNotReadyError naming reindex,
# which converts it (it was not "overwritten outside redmodel").
@pytest.mark.parametrize("kind", ["set", "zset"])
def test_a_query_names_an_old_format_all_ids_set(store: redmodel.Store, redis_client: Any,
                                                 kind: str) -> None:
    store.save(Row(id="r1"))
    redis_client.delete("fx23c:%idx:all")
    if kind == "set":
        redis_client.sadd("fx23c:%idx:all", "r1")
    else:
        redis_client.zadd("fx23c:%idx:all", {"r1": 0})
    with pytest.raises(redmodel.IndexNotReadyError,
                       match=rf"older redmodel \(a {kind}\).*store.reindex\(Row\)"):
        store.find(Row).ids()
