"""Session 29 fixes of attack 29AI (the findings' own tests: tests/test_attack29ai.py).

An indexed write of an object without an index record derives its old entries from the
stored bytes of its indexed fields; those entries must be the ones reindex / build_index /
verify give, i.e. the value `get` reads: the current stored name, else the first old name
holding one (old_names=); stored nowhere, None for an optional field, else its default (a
Factory's value, a Factory(takes_self=True)'s from the whole object); `upgrade=` of bytes
that do not decode strictly. An incr of a field stored nowhere counts from what `get`
reads (its default). A renamed nested object is read leaf by leaf, so an incr that moves
one leaf keeps the object readable.

The property draws stored objects of that kind (written raw, as an older version of the
model left them), indexes them (reindex), then runs drawn writes, checking after each that
`verify` is [], that queries and get_by answer as the data says, that `get` works and that
an incr returns what `get` read before plus the amount.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled


@attrs.define
class Spot:
    city: str
    zip: int = 0
    floor: int | None = None


def _double(self: Any) -> int:
    """A default computed from the object (another field this test's writes leave as
    stored: a write of a field such a factory reads does not move the derived field's
    entry while the object stores it nowhere: docs/migrations.md)."""
    return 2 * len(self.label)


@redmodel.model(prefix="fx29ai")
@attrs.define
class Item:
    label: str = ""
    qty: int = redmodel.field(index=True, default=0, old_names=("quant", "q"))
    color: str = redmodel.field(index=True, default="red")
    level: int = redmodel.field(index="range", default=-3)
    rank: int = redmodel.field(index=True, factory=lambda: 7)
    # (not indexed: an indexed field's default cannot take self, see the test below; its
    # incr still counts from what a read gives)
    twice: int = redmodel.field(default=attrs.Factory(_double, takes_self=True))
    note: str | None = redmodel.field(index=True, default=None)
    flag: bool = redmodel.field(index=True, default=False, upgrade=lambda v: v in ("yes", "1"))
    score: int = redmodel.field(index=True, default=0, upgrade=lambda v: round(float(v)))
    code: str | None = redmodel.field(unique=True, default=None, old_names=("sku",))
    spot: Spot = redmodel.field(old_names=("place", "where"), factory=lambda: Spot("x"))
    id: str = redmodel.key_field(generated=False)


INDEXED = ("qty", "color", "level", "rank", "note", "flag", "score")
IDS = ("1", "2", "3")
_NAMES = {"qty": ("qty", "quant", "q"), "code": ("code", "sku")}


def _stored(draw: Any, i: int) -> dict[str, str]:
    """One object's hash as older versions of the model left it."""
    h: dict[str, str] = {}
    if draw(st.booleans()):
        h["label"] = draw(st.sampled_from(["", "ab", "abc"]))
    # a renamed field: under its name, an old one, or several (the current name wins)
    for where in draw(st.sets(st.sampled_from(_NAMES["qty"]), max_size=3)):
        h[where] = str(draw(st.integers(-3, 3)))
    for name, values in (("color", st.sampled_from(["red", "blue"])),
                         ("level", st.integers(-4, 2).map(str)),
                         ("rank", st.integers(5, 8).map(str)),
                         ("twice", st.integers(0, 3).map(str)),
                         ("note", st.sampled_from(["a", "b"])),
                         ("flag", st.sampled_from(["1", "0", "yes", "no"])),
                         ("score", st.sampled_from(["1", "2", "41.9", "1.2"]))):
        if draw(st.booleans()):
            h[name] = draw(values)
    code = draw(st.sampled_from([None, "code", "sku"]))
    if code is not None:
        h[code] = f"c{i}"
    # the nested object's leaves, each under the current name, an old one, or both
    for leaf, values in (("city", st.sampled_from(["NY", "LA"])),
                         ("zip", st.integers(-2, 2).map(str)),
                         ("floor", st.integers(0, 2).map(str))):
        places = draw(st.sets(st.sampled_from(["spot", "place", "where"]),
                              min_size=1 if leaf == "city" else 0, max_size=2))
        for p in places:
            h[f"{p}:{leaf}"] = draw(values)
    if not h:
        h["\x00"] = ""
    return h


@st.composite
def _objects(draw: Any) -> list[dict[str, str]]:
    return [_stored(draw, i) for i in range(len(IDS))]


_VALUES = {
    "qty": st.integers(-3, 3), "color": st.sampled_from(["red", "blue", "green"]),
    "level": st.integers(-4, 2), "rank": st.integers(5, 8), "twice": st.integers(0, 6),
    "note": st.sampled_from([None, "a", "c"]), "flag": st.booleans(),
    "score": st.integers(0, 42),
    "spot": st.builds(Spot, st.sampled_from(["NY", "SF"]), st.integers(-2, 2),
                      st.sampled_from([None, 1])),
}

_WRITES = st.one_of(
    st.tuples(st.just("update"), st.sampled_from(IDS),
              st.dictionaries(st.sampled_from(sorted(_VALUES)), st.none(), min_size=1,
                              max_size=3)),
    st.tuples(st.sampled_from(["save", "tracked", "save_many", "delete", "delete_many",
                               "expire", "persist", "tx"]), st.sampled_from(IDS), st.none()),
    st.tuples(st.just("incr"), st.sampled_from(IDS),
              st.sampled_from(["qty", "level", "rank", "twice", "score", "spot.zip"])),
    st.tuples(st.just("incr_fields"), st.sampled_from(IDS),
              st.sets(st.sampled_from(["qty", "level", "rank", "twice", "spot.zip"]),
                      min_size=1, max_size=3)),
)


def _fresh(draw_values: dict[str, Any], id_: str) -> Item:
    return Item(label="xy", **{k: v for k, v in draw_values.items() if k != "code"},
                id=id_)


def _check(store: redmodel.Store) -> None:
    """verify is [], and every query and get_by answers as the data says."""
    assert store.verify(Item) == []
    objs = {i: store.get(Item, i) for i in IDS}
    live = {i: o for i, o in objs.items() if o is not None}
    for name in INDEXED:
        for value in {getattr(o, name) for o in live.values()} | {0, "red", -3, 7, None}:
            if value is None or (name in ("level", "qty", "rank", "twice", "score")
                                 and type(value) is not int):
                continue
            if name == "flag" and type(value) is not bool:
                continue
            if name in ("color", "note") and type(value) is not str:
                continue
            got = store.find(Item, **{name: value}).ids()
            if name == "level":
                assert store.find(Item, level=redmodel.between(value, value)).count() \
                    == len(got)
            want = sorted(i for i, o in live.items() if getattr(o, name) == value)
            assert sorted(got) == want, (name, value, got, want)
    for i, o in live.items():
        if o.code is not None:
            found = store.get_by(Item, code=o.code)
            assert found is not None and found.id == i


def _number(obj: Item, path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _run(store: redmodel.Store, writes: list[Any], values: Any) -> None:
    for (kind, id_, arg), new in zip(writes, values, strict=False):
        before = store.get(Item, id_)
        if kind == "update":
            store.update(Item, id_, **{k: new[k] for k in arg})
        elif kind == "save":
            store.save(_fresh(new, id_))
        elif kind == "tracked":
            if before is not None:
                before.color, before.qty = new["color"], new["qty"]
                store.save(before)
        elif kind == "save_many":
            store.save_many([_fresh(new, id_), _fresh(new, "3" if id_ != "3" else "1")])
        elif kind == "delete":
            store.delete(Item, id_)
        elif kind == "delete_many":
            store.delete_many(Item, [id_, "2"])
        elif kind == "expire":
            store.expire(Item, id_, 60)
        elif kind == "persist":
            store.persist(Item, id_)
        elif kind == "tx":
            def work(tx: Any, id_: str = id_, new: Any = new) -> None:
                tx.update(Item, id_, color=new["color"])
                tx.incr(Item, id_, "rank", 1)
            with contextlib.suppress(redmodel.NotFoundError):
                store.transaction(work)()
        elif kind in ("incr", "incr_fields"):
            paths = [arg] if kind == "incr" else sorted(arg)
            try:
                if kind == "incr":
                    got = {arg: store.incr(Item, id_, arg, 2)}
                else:
                    got = store.incr_fields(Item, id_, dict.fromkeys(paths, 2))
            except redmodel.NotFoundError:
                assert before is None
                continue
            except redmodel.DecodeError:  # an upgraded (non-strict) stored value
                assert any(p == "score" for p in paths)
                assert store.get(Item, id_) == before  # nothing written
                continue
            assert before is not None
            for p in paths:
                assert got[p] == _number(before, p) + 2, (p, got, before)
            after = store.get(Item, id_)
            assert after is not None
            for p in paths:
                assert _number(after, p) == got[p]
        _check(store)


@pytest.fixture
def plain_store(redis_client: redis.Redis) -> redmodel.Store:
    return redmodel.Store(redis_client, registry=False)


@settings(max_examples=scaled(100, floor=10))
@given(stored=_objects(),
       writes=st.lists(_WRITES, min_size=1, max_size=6),
       values=st.lists(st.fixed_dictionaries(_VALUES), min_size=6, max_size=6))
def test_writes_of_migrated_objects_keep_the_index_as_reads_see_it(
        plain_store: redmodel.Store, stored: list[dict[str, str]], writes: list[Any],
        values: list[dict[str, Any]]) -> None:
    """Property: objects stored by older versions (renamed fields under old names, or
    under both; fields added since, with defaults 0, non-zero, negative, a Factory and a
    Factory(takes_self=True); optional ones absent; values that need `upgrade=`; a renamed
    nested object with its leaves partly moved) are indexed by reindex; then every write
    (update by id, whole save, tracked save, save_many, delete, delete_many, expire,
    persist, incr, incr_fields, a transaction) leaves verify == [], queries and get_by as
    the data says, get working, and an incr returning get-before + amount."""
    store = plain_store
    store.client.flushall()
    for id_, h in zip(IDS, stored, strict=True):
        store.client.hset(f"fx29ai:{id_}", mapping=h)
    assert store.reindex(Item, progress=False) == len(IDS)
    _check(store)
    _run(store, writes, values)


@attrs.define
class _Place:
    city: str = "x"
    zip: int = 0


def _counter_model(prefix: str, default: Any, indexed: bool, layout: str = "hash") -> type:
    """A model whose `n` was added after objects were stored (their hash lacks it)."""
    opts: dict[str, Any] = {"index": True} if indexed else {}
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        opts["default"] = default
    else:
        opts["default"] = default

    @redmodel.model(prefix=prefix, layout=layout)
    @attrs.define
    class Counter:
        name: str = ""
        n: int = redmodel.field(**opts)
        id: str = redmodel.key_field(generated=False)

    return Counter


_DEFAULTS = st.one_of(st.integers(-10, 10), st.integers(-10, 10).map(
    lambda v: attrs.Factory(lambda: v)))


@settings(max_examples=scaled(50, floor=5))
@given(default=_DEFAULTS, amount=st.integers(-5, 5), indexed=st.booleans(),
       how=st.sampled_from(["incr", "incr_fields", "tx", "floor"]))
def test_incr_of_a_field_stored_nowhere_counts_from_its_default(
        plain_store: redmodel.Store, default: Any, amount: int, indexed: bool,
        how: str) -> None:
    """Decision 2 of the brief: an incr of a non-optional int field with a default that
    the stored object lacks counts from what `get` reads (its default), on indexed and
    unindexed models, by incr, incr_fields and tx.incr; a bound compares with it too. The
    old index entry it removes is the default's."""
    store = plain_store
    store.client.flushall()
    M = _counter_model("fx29ai_cnt", default, indexed)
    store.client.hset("fx29ai_cnt:1", mapping={"name": "a"})
    if indexed:
        store.reindex(M, progress=False)
    before = store.get(M, "1")
    assert before is not None
    if how == "incr":
        got = store.incr(M, "1", "n", amount)
    elif how == "incr_fields":
        got = store.incr_fields(M, "1", {"n": amount})["n"]
    elif how == "floor":
        try:
            got = store.incr_fields(M, "1", {"n": amount}, floor={"n": before.n})["n"]
        except redmodel.ConditionFailedError as e:
            assert amount < 0 and e.current == before.n
            assert store.client.hget("fx29ai_cnt:1", "n") is None
            return
        assert amount >= 0
    else:
        out: list[Any] = []
        store.transaction(lambda tx: out.append(tx.incr(M, "1", "n", amount)))()
        got = store.get(M, "1").n  # type: ignore[union-attr]
    assert got == before.n + amount
    assert store.get(M, "1").n == got  # type: ignore[union-attr]
    if indexed:
        assert store.verify(M) == []
        assert store.find(M, n=got).ids() == ["1"]
        if amount:
            assert store.find(M, n=before.n).ids() == []


def test_async_incr_of_a_field_stored_nowhere_counts_from_its_default(
        redis_client: redis.Redis, redis_url: str) -> None:
    """The same rule through the async store (unindexed: the short script's path)."""
    M = _counter_model("fx29ai_acnt", 5, False)
    redis_client.flushall()
    redis_client.hset("fx29ai_acnt:1", mapping={"name": "a"})

    async def main() -> tuple[Any, Any]:
        async with redmodel.AsyncStore.from_url(redis_url, registry=False) as store:
            return await store.incr(M, "1", "n", 1), await store.get(M, "1")

    new, after = asyncio.run(main())
    assert new == 6 and after.n == 6


def test_flat_incr_of_a_leaf_stored_nowhere_is_refused_unchanged(
        plain_store: redmodel.Store) -> None:
    """The flat layout (checked): an object whose manifest lists no `n` leaf is refused
    (NotFoundError, nothing written), as before: its get keeps reading the default."""
    store = plain_store
    store.client.flushall()
    @redmodel.model(prefix="fx29ai_flat", layout="flat")
    @attrs.define
    class Old:
        name: str = ""
        id: str = redmodel.key_field(generated=False)

    store.save(Old(name="a", id="1"))
    M = _counter_model("fx29ai_flat", 5, False, layout="flat")
    keys = sorted(store.client.keys("*"))
    with pytest.raises(redmodel.NotFoundError):
        store.incr(M, "1", "n", 1)
    assert sorted(store.client.keys("*")) == keys


@settings(max_examples=scaled(50, floor=5))
@given(places=st.fixed_dictionaries({"city": st.sets(st.sampled_from(["place", "where", "spot"]),
                                                      min_size=1, max_size=3),
                                     "zip": st.sets(st.sampled_from(["place", "where", "spot"]),
                                                     max_size=3)}),
       which=st.sampled_from(["incr", "incr_fields"]))
def test_a_renamed_nested_object_is_read_leaf_by_leaf(
        plain_store: redmodel.Store, places: dict[str, set[str]], which: str) -> None:
    """Decision 3: each leaf of a renamed nested object is read under its current stored
    path, else the first old one holding a value (in _atomic._names' order); an incr of
    one leaf moves only it, and the object stays readable with every other leaf as read
    before."""
    store = plain_store
    store.client.flushall()
    order = ["spot", "place", "where"]
    h = {}
    want: dict[str, Any] = {}
    for leaf, where in places.items():
        for i, p in enumerate(order):
            if p in where:
                h[f"{p}:{leaf}"] = f"{leaf[0]}{i}" if leaf == "city" else str(10 * i + 1)
        first = next((p for p in order if p in where), None)
        want[leaf] = None if first is None else h[f"{first}:{leaf}"]
    store.client.hset("fx29ai:1", mapping=h)
    store.reindex(Item, progress=False)
    got = store.get(Item, "1")
    assert got is not None
    assert got.spot == Spot(want["city"], 0 if want["zip"] is None else int(want["zip"]))
    if which == "incr":
        new = store.incr(Item, "1", "spot.zip", 3)
    else:
        new = store.incr_fields(Item, "1", {"spot.zip": 3})["spot.zip"]
    assert new == got.spot.zip + 3
    after = store.get(Item, "1")
    assert after is not None and after.spot == Spot(got.spot.city, new)
    assert store.verify(Item) == []


def test_a_save_of_none_is_not_read_back_through_an_old_name(
        plain_store: redmodel.Store) -> None:
    """A whole save (and an update) removes every old name of the fields it writes (as a
    loaded object's save always did), so a None it writes is read as None, not as the
    value an old name still holds; and an indexed object's later writes pay no STORED
    round trip for old names."""
    store = plain_store
    store.client.flushall()
    store.client.hset("fx29ai:1", mapping={"sku": "c1", "where:floor": "2",
                                           "spot:city": "NY"})
    store.save(Item(code=None, spot=Spot("NY"), id="1"))
    got = store.get(Item, "1")
    assert got is not None and got.code is None and got.spot.floor is None
    store.client.hset("fx29ai:1", mapping={"sku": "c2", "place:floor": "1"})
    store.update(Item, "1", code=None, spot=Spot("LA"))
    got = store.get(Item, "1")
    assert got is not None and got.code is None and got.spot == Spot("LA")
    assert store.get_by(Item, code="c2") is None
    assert store.verify(Item) == []


@pytest.mark.parametrize("option", [{"index": True}, {"index": "range"}, {"unique": True}])
def test_an_indexed_field_whose_default_takes_self_is_refused(option: dict[str, Any]) -> None:
    """An indexed field stored nowhere (an object stored before it existed) would be read
    as its Factory(takes_self=True)'s value, which follows the other fields: a write of
    those would move it without its entry. Refused at declaration (lead's decision)."""
    cls = attrs.make_class("Derived", {
        "label": attrs.field(type=str, default=""),
        "twice": attrs.field(type=int, default=attrs.Factory(_double, takes_self=True),
                             metadata=redmodel.field(**option).metadata),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)})
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Derived\.twice: .*takes_self"):
        redmodel.model(prefix="fx29ai_derived")(cls)
