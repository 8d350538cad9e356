"""Session 26, fix L (attack 26P's F4): an object without a record whose id is missing
from its all-ids page (stored by a process still running a version of the model without
any index, after the new version's build) has no entries, so whatever redmodel write of
it comes next indexes it whole: every query shape answers what a scan answers after it,
and verify is clean (docs/performance.md, the page check)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import between
from tests.budget import scaled


@redmodel.model(prefix="fx26l")
@attrs.define
class _New:                      # version 2: three indexes
    __qualname__ = "_New"
    n: int = redmodel.field(index=True, default=0)
    r: int = redmodel.field(index="range", default=0)
    s: str = redmodel.field(index=True, default="")
    x: int = 0
    id: str = redmodel.key_field(generated=False)


_NewV = _New


@redmodel.model(prefix="fx26l")
@attrs.define
class _New:                      # version 1: none (an old pod, still running)
    __qualname__ = "_New"
    n: int = 0
    r: int = 0
    s: str = ""
    x: int = 0
    id: str = redmodel.key_field(generated=False)


_Old = _New

_IDS = st.sampled_from(["a", "b:{x}", "c*%\\"])
_N = st.integers(0, 2)
_R = st.integers(-(2**53) + 8, 2**53 - 8)  # (an increment stays in the exact range)
_S = st.sampled_from(["", "k", "\u00e9\U0001f600", ":{*}%\\"])
_OBJ = st.builds(_NewV, id=st.just("?"), n=_N, r=_R, s=_S, x=st.integers(-5, 5))
_LISTED = st.builds(_NewV, id=st.sampled_from(["L1", "L2"]), n=_N, r=_R, s=_S)
_FIELDS = st.dictionaries(st.sampled_from(["n", "r", "s", "x"]), st.none(), min_size=1, max_size=4)
_WRITE = st.one_of(
    st.tuples(st.just("save"), _OBJ, st.booleans()),            # fresh or loaded first
    st.tuples(st.just("force"), _OBJ),
    st.tuples(st.just("save_many"), st.lists(_OBJ, min_size=1, max_size=3)),
    st.tuples(st.just("update"), _OBJ, _FIELDS),         # any subset (x: no indexed one)
    st.tuples(st.just("incr"), st.just("?"), st.sampled_from(["n", "r", "x"])),
    st.tuples(st.just("incr_fields"), st.just("?")),
    st.tuples(st.just("expire"), st.just("?")),
    st.tuples(st.just("persist"), st.just("?")),
    st.tuples(st.just("tx"), _OBJ, _FIELDS),
    st.tuples(st.just("tx_incr"), st.just("?")),                # its first write there
)


def _with_id(x: Any, uid: str) -> Any:
    if x == "?":
        return uid
    if isinstance(x, _NewV):
        return attrs.evolve(x, id=uid)
    if isinstance(x, list):
        return [_with_id(o, uid) for o in x]
    return x


def _run(store: redmodel.Store, w: tuple[Any, ...], uid: str) -> None:
    w = tuple(_with_id(x, uid) for x in w)
    kind = w[0]
    if kind == "save":
        if w[2] and store.get(_NewV, w[1].id) is not None:
            got = store.get(_NewV, w[1].id)
            assert got is not None
            got.n, got.r, got.s, got.x = w[1].n, w[1].r, w[1].s, w[1].x
            store.save(got)
        else:
            store.save(w[1])
    elif kind == "force":
        store.save(w[1], force=True)
    elif kind == "save_many":
        store.save_many(w[1])
    elif kind == "update":
        store.update(_NewV, w[1].id, **{f: getattr(w[1], f) for f in w[2]})
    elif kind == "incr":
        if store.get(_NewV, w[1]) is not None:
            store.incr(_NewV, w[1], w[2], 1)
    elif kind == "incr_fields":
        if store.get(_NewV, w[1]) is not None:
            store.incr_fields(_NewV, w[1], {"n": 1, "r": -3})
    elif kind == "expire":
        store.expire(_NewV, w[1], dt.timedelta(hours=1))
    elif kind == "persist":
        store.persist(_NewV, w[1])
    elif kind == "tx_incr":
        if store.get(_NewV, w[1]) is not None:
            store.transaction(lambda tx: tx.incr_fields(_NewV, w[1], {"r": 2, "x": 1}))()
    else:
        obj, fields = w[1], w[2]

        def fn(tx: Any) -> None:
            tx.save(obj)
            if fields:
                tx.update(_NewV, obj.id, **{f: getattr(obj, f) for f in fields})
            tx.incr(_NewV, obj.id, "n", 1)

        store.transaction(fn)()


def _same_as_scan(store: redmodel.Store) -> None:
    objs = {o.id: o for o in store.scan(_NewV)}
    ids = sorted(objs)
    assert sorted(o.id for o in store.find(_NewV).all()) == ids
    assert store.find(_NewV).count() == len(ids)
    assert [o.id for o in store.find(_NewV).order_by("r").all()] == \
        [o.id for o in sorted(objs.values(), key=lambda o: (o.r, o.id))] or \
        sorted(o.id for o in store.find(_NewV).order_by("r").all()) == ids
    for n in range(-1, 6):
        assert sorted(o.id for o in store.find(_NewV, n=n).all()) == \
            sorted(i for i, o in objs.items() if o.n == n)
    for s in {"", "k", *(o.s for o in objs.values())}:
        assert sorted(o.id for o in store.find(_NewV, s=s).all()) == \
            sorted(i for i, o in objs.items() if o.s == s)
    assert sorted(o.id for o in store.find(_NewV, r=between(-10, 10)).all()) == \
        sorted(i for i, o in objs.items() if -10 <= o.r <= 10)
    assert store.verify(_NewV) == []


@settings(max_examples=scaled(10, floor=3), deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uid=_IDS, olds=st.lists(_OBJ, min_size=1, max_size=2),
       listed=st.lists(_LISTED, max_size=2), writes=st.lists(_WRITE, min_size=1, max_size=3))
def test_any_write_of_an_unlisted_object_indexes_it_whole(
        redis_url: str, redis_client: redis.Redis, uid: str, olds: list[Any],
        listed: list[Any], writes: list[tuple[Any, ...]]) -> None:
    """An old pod writes the object ``uid`` (maybe more than once) after the build; then
    the new version writes it any way, and each write indexes it whole."""
    redis_client.flushdb()
    new = redmodel.Store(redis.Redis.from_url(redis_url))
    old = redmodel.Store(redis.Redis.from_url(redis_url))
    old.save(_Old(id="L0", n=1, r=1))     # the old version is registered first
    for o in listed:
        new.save(o)
    new.reindex(_NewV)                     # the deploy's build: ready
    for o in olds:                         # an old pod writes after it: unlisted objects
        old.save(_Old(id=uid, n=o.n, r=o.r, s=o.s, x=o.x))
    indexed = False
    for w in writes:
        _run(new, w, uid)
        # an increment of an unindexed field only is no index write (a plain script): it
        # leaves the object as it found it, unlisted until the next write that is one
        indexed = indexed or w[:1] != ("incr",) or w[2] != "x"
        if indexed:
            _same_as_scan(new)


@pytest.mark.parametrize("how", ["incr", "tx_incr", "async_incr", "expire", "persist"])
def test_an_increment_or_expiry_of_an_unlisted_object_indexes_it_whole(
        redis_url: str, redis_client: redis.Redis, how: str) -> None:
    """The writes the property draws least often, each alone (the transaction's: its
    prefetch's listing write, queued inside EXEC before the increment)."""
    new = redmodel.Store(redis.Redis.from_url(redis_url))
    old = redmodel.Store(redis.Redis.from_url(redis_url))
    old.save(_Old(id="L0", n=1, r=1))
    new.save(_NewV(id="L1", n=2, r=5, s="k"))
    new.reindex(_NewV)
    old.save(_Old(id="u", n=2, r=7, s="k"))
    if how == "incr":
        new.incr(_NewV, "u", "r", 1)
    elif how == "tx_incr":
        new.transaction(lambda tx: tx.incr(_NewV, "u", "n", 1))()
    elif how == "async_incr":
        async def run() -> None:
            a = redmodel.AsyncStore(redis.asyncio.Redis.from_url(redis_url))
            try:
                await a.incr_fields(_NewV, "u", {"n": 1, "x": 2})
            finally:
                await a.aclose()
        asyncio.run(run())
    elif how == "expire":
        new.expire(_NewV, "u", 3600)
    else:
        new.persist(_NewV, "u")
    _same_as_scan(new)
    assert sorted(o.id for o in new.find(_NewV, s="k").all()) == ["L1", "u"]


@redmodel.model(prefix="fx26lu")
@attrs.define
class _Uq:                       # version 2: an equality index and a unique field
    __qualname__ = "_Uq"
    n: int = redmodel.field(index=True, default=0)
    e: str = redmodel.field(unique=True, default="")
    x: int = 0
    id: str = redmodel.key_field(generated=False)


_UqV = _Uq


@redmodel.model(prefix="fx26lu")
@attrs.define
class _Uq:                       # version 1: none (an old pod, still running)
    __qualname__ = "_Uq"
    n: int = 0
    e: str = ""
    x: int = 0
    id: str = redmodel.key_field(generated=False)


_UqOld = _Uq

_E = st.sampled_from(["held", "free", ":{*}%\\"])
_TX_WRITE = st.one_of(
    st.tuples(st.just("save"), _N, _E),
    st.tuples(st.just("update"), st.dictionaries(
        st.sampled_from(["n", "e", "x"]), st.one_of(_N, _E), min_size=1, max_size=3)),
    st.tuples(st.just("incr")), st.tuples(st.just("incr_fields")),
    st.tuples(st.just("expire")), st.tuples(st.just("persist")),
)


@settings(max_examples=scaled(30, floor=6), deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uid=_IDS, e=_E, n=_N, ttl=st.booleans(), other=st.booleans(), write=_TX_WRITE)
def test_a_transaction_write_of_an_unlisted_object_refuses_before_multi_or_indexes_it(
        redis_url: str, redis_client: redis.Redis, uid: str, e: str, n: int, ttl: bool,
        other: bool, write: tuple[Any, ...]) -> None:
    """Attack 26X F1, F3, F4: a transaction's write of any kind of an unlisted object
    (with an expiry or not, maybe after another write) either takes a unique value another
    live object holds (the one it keeps, or a new one) and is UniqueViolationError before
    MULTI with nothing written, or indexes it whole (with its record when it has an
    expiry): every query answers what a scan answers, verify is clean."""
    redis_client.flushdb()
    new = redmodel.Store(redis.Redis.from_url(redis_url))
    old = redmodel.Store(redis.Redis.from_url(redis_url))
    old.save(_UqOld(id="L0", n=1, e="L0"))
    new.save(_UqV(id="L1", n=2, e="held"))
    new.reindex(_UqV)
    old.save(_UqOld(id=uid, n=n, e=e))
    if ttl:
        old.expire(_UqOld, uid, 3600)
    kind = write[0]
    if kind == "update":
        write = (kind, {f: (v if isinstance(v, str) == (f == "e") else
                            ("free" if f == "e" else 1)) for f, v in write[1].items()})
    after = write[2] if kind == "save" else write[1].get("e", e) if kind == "update" else e

    def fn(tx: Any) -> None:
        if other:
            tx.save(_UqV(id="w", n=1, e="w1"))
        if kind == "save":
            tx.save(_UqV(id=uid, n=write[1], e=write[2]))
        elif kind == "update":
            tx.update(_UqV, uid, **write[1])
        elif kind == "incr":
            tx.incr(_UqV, uid, "n", 1)
        elif kind == "incr_fields":
            tx.incr_fields(_UqV, uid, {"n": 1, "x": 1})
        elif kind == "expire":
            tx.expire(_UqV, uid, 100)
        else:
            tx.persist(_UqV, uid)

    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    if after == "held":
        with pytest.raises(redmodel.UniqueViolationError):
            new.transaction(fn)()
        assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before
        return
    new.transaction(fn)()
    objs = {o.id: o for o in new.scan(_UqV)}
    for v in range(0, 5):
        assert sorted(o.id for o in new.find(_UqV, n=v).all()) == \
            sorted(i for i, o in objs.items() if o.n == v)
    for v in ["held", "free", ":{*}%\\", "w1"]:
        holder = new.get_by(_UqV, e=v)
        assert (holder.id if holder else None) == next(
            (i for i, o in sorted(objs.items()) if o.e == v), None), v
    assert new.verify(_UqV) == []
