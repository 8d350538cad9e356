"""flat_save_many.lua batches its work per call (one MGET of the manifests, MSETs gathered
across objects, a repeated id read afresh after a flush): a call stores exactly what
saving the same objects one at a time with ``store.save`` (flat_save.lua) stores.

The referee runs on a second database of the same server. Before the call both databases
get the same history: earlier saves of some of the objects (with an expiry or none, more
or fewer list leaves) and a wrong-typed key planted where one object's manifest goes.
Calls mix new objects, re-saves with fewer or more leaves, repeated ids, ttl None (keep
the expiry) and given, ids with ``: { } * % \\``, and objects of two models whose keys
overlap (prefix ``nb`` and delimiter ``:``, prefix ``nb:x`` and delimiter ``|``: a
manifest of one is the manifest or a leaf of another), which the script must follow key
by key. Afterwards both databases hold the same keys, bytes and TTL buckets; the call's
error names the wrong-typed key, and its ``.not_written`` names only refused objects. A
lost reply to the batched call is resent (a save is idempotent) and ends as the referee,
or raises with every object whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._layouts._flat import _SAVE_MANY
from redmodel._models._specs import spec_of
from redmodel.testing import FaultProxy
from tests.budget import scaled
from tests.strategies import instances
from tests.test_flat_fast import IDS, Listy
from tests.test_flat_fast import _dump as _dump_all

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")


@redmodel.model(prefix="nb", layout="flat")
@attrs.define
class Outer:
    id: str = redmodel.key_field(generated=False)
    tags: list[str] = attrs.Factory(list)
    v: str = ""


@redmodel.model(prefix="nb:x", layout="flat", delimiter="|")
@attrs.define
class Nested:
    """Keys that overlap Outer's: Nested a is nb:x|a, Outer x|a's key; Nested a:v is Outer
    x|a's leaf v; Nested a's leaf nb:x|a|0 is Outer x|a|0's key."""

    id: str = redmodel.key_field(generated=False)
    zero: str = redmodel.field(default="", name="0")


FEW_IDS = st.one_of(st.sampled_from(["x", "a", "x|a", "a:v", "x|a|0", "{t}", "*", "%25", "\\"]),
                    IDS)
SMALL = st.text(max_size=3)
OBJ = {
    Listy: instances(Listy, id=FEW_IDS, tags=st.lists(SMALL, max_size=4),
                     scores=st.dictionaries(SMALL, st.integers(), max_size=2)),
    Outer: st.builds(Outer, id=FEW_IDS, tags=st.lists(SMALL, max_size=4), v=SMALL),
    Nested: st.builds(Nested, id=FEW_IDS, zero=SMALL),
}
ANY = st.one_of(*OBJ.values())
# one model (the script follows manifests only) or several (it follows every key)
CALL = st.one_of(st.sampled_from(list(OBJ)).flatmap(lambda m: st.lists(OBJ[m], min_size=1,
                                                                      max_size=8)),
                 st.lists(ANY, min_size=1, max_size=8))
TTLS = st.sampled_from([None, 100])


@pytest.fixture
def pair(redis_url: str, redis_client: redis.Redis) -> Iterator[Any]:
    """(store on db 0, client on db 0, store on db 2, client on db 2). Without the model
    registry, which refuses the overlapping Outer and Nested (fix 30U): a store without one
    must still save such models' keys as one at a time does."""
    ref = redis.Redis.from_url(redis_url, db=2)
    yield (redmodel.Store(redis_client, registry=False), redis_client,
           redmodel.Store(redis.Redis.from_url(redis_url, db=2), registry=False), ref)
    ref.flushdb()
    ref.close()


def _dump(r: redis.Redis) -> dict[bytes, tuple[Any, ...]]:
    """Every key: its type, bytes and TTL bucket (not the model registry's, which a store
    writes once)."""
    return {k: v for k, v in _dump_all(r).items() if b"%schema" not in k}


def _key(obj: Any) -> str:
    return spec_of(obj).key_for(obj.id)


def _history(stores: tuple[redmodel.Store, ...], before: list[tuple[Any, int | None]],
             plant: str | None) -> None:
    for store in stores:
        store.client.flushdb()
        for obj, ttl in before:
            with contextlib.suppress(redmodel.ServerError):
                store.save(obj, ttl=ttl)
        if plant is not None:
            store.client.delete(plant)
            store.client.hset(plant, "planted", "1")


def _one_at_a_time(store: redmodel.Store, objs: list[Any], ttl: int | None) -> list[str]:
    """The referee: each save on its own; the keys it refused (a wrong-typed manifest)."""
    refused = []
    for obj in objs:
        try:
            store.save(obj, ttl=ttl)
        except redmodel.ServerError:
            refused.append(_key(obj))
    return refused


@settings(max_examples=scaled(50), deadline=None)
@given(objs=CALL, ttl=TTLS, data=st.data())
def test_a_batched_call_stores_what_saving_one_at_a_time_stores(
        pair: Any, objs: list[Any], ttl: int | None, data: st.DataObject) -> None:
    batched, batched_r, ref, ref_r = pair
    before = data.draw(st.lists(st.tuples(st.one_of(st.sampled_from(objs), ANY), TTLS),
                                max_size=6), "before")
    # the earlier saves differ from the call's: more or fewer leaves
    before = [(attrs.evolve(o, tags=[*o.tags, "old"]) if hasattr(o, "tags") and i % 2 else o,
               t) for i, (o, t) in enumerate(before)]
    plant = data.draw(st.none() | st.sampled_from([_key(o) for o in objs]), "plant")
    _history((batched, ref), before, plant)
    assert _dump(batched_r) == _dump(ref_r)

    refused = _one_at_a_time(ref, objs, ttl)
    try:
        batched.save_many(objs, ttl=ttl, chunk_size=1000)
    except redmodel.ServerError as e:
        assert refused, "refused only when one at a time refuses too"
        assert refused[0] in e.keys or refused[0] in str(e)
        for key in getattr(e, "not_written", None) or ():
            assert key in refused or key in e.keys, (key, refused)
    else:
        assert not refused, refused
    assert _dump(batched_r) == _dump(ref_r)


def test_keys_two_models_share_are_followed_key_by_key(pair: Any) -> None:
    """Outer x|a's leaf v is Nested a:v's manifest key: in one call, Nested a:v must read
    the manifest Outer x|a has just written there (with its kept expiry, naming a leaf to
    delete), not the one the call found."""
    batched, batched_r, ref, ref_r = pair
    objs = [Outer(id="x|a", v="m\nzz"), Nested(id="a:v", zero="q")]
    for store in (batched, ref):
        store.client.flushdb()
    _history((batched, ref), [(Outer(id="x|a", v="old"), 100)], None)
    for r in (batched_r, ref_r):
        r.set("nb:x|a:v|zz", "stale")
    assert _one_at_a_time(ref, objs, None) == []
    assert batched.save_many(objs, chunk_size=1000) == 2
    assert not batched_r.exists("nb:x|a:v|zz")
    assert batched_r.pttl("nb:x|a:v|0") > 0
    assert _dump(batched_r) == _dump(ref_r)


def test_a_lost_reply_to_a_batched_call_is_resent_and_ends_as_one_at_a_time(
        redis_server: Any, redis_url: str, redis_client: redis.Redis) -> None:
    """A call with repeated ids, shrinking and growing lists and kept expiries; its one
    flat_save_many.lua reply is lost (or cut): the store sends it again (a save is
    idempotent: the same call twice ends as once) and the keys are the referee's, or it
    raises and every object is whole (its manifest and the leaves it names)."""
    before = [Outer(id=f"o{i}", tags=["t"] * (i % 4), v="old") for i in range(12)]
    objs = [Outer(id=f"o{i % 9}", tags=["n"] * ((i * 5) % 4), v=f"new{i}") for i in range(16)]
    ref_r = redis.Redis.from_url(redis_url, db=2)
    ref = redmodel.Store(ref_r)
    try:
        for fault in ("lose_reply", "cut_reply"):
            plain = redmodel.Store(redis_client)
            _history((plain, ref), [(o, 100 if i % 2 else None) for i, o in enumerate(before)],
                     None)
            assert _one_at_a_time(ref, objs, None) == []
            with FaultProxy(redis_server.host, redis_server.port) as proxy:
                store = redmodel.Store.from_url(proxy.url)
                getattr(proxy, fault)("EVALSHA",
                                      when=lambda argv: _SAVE_MANY.sha.encode() in argv)
                try:
                    store.save_many(objs)
                except (redmodel.RedmodelError, redis.ConnectionError):
                    done = False
                else:
                    done = True
                assert proxy.events, "the fault fired"
                store.close()
            if done:
                assert _dump(redis_client) == _dump(ref_r)
            for o in before:
                key = _key(o)
                names = redis_client.get(key).decode().split("\n")[1:]
                assert all(redis_client.exists(f"{key}:{s}") for s in names)
                got = plain.get(Outer, o.id)
                assert got in (o, *[x for x in objs if x.id == o.id])
    finally:
        ref_r.flushdb()
        ref_r.close()
