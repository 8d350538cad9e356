"""Attack 30AT: flat and blob layouts, nested data, partial (tracked) saves. Each test holds
the code to a sentence of the docs and FAILS on main as of this attack.

F1 and F2 have one root cause: a tracked object's snapshot (redmodel/_layouts/_hash.py,
``remember``/``recall``) is keyed by the Python object alone, not by the key (and the
server) it was loaded from, so a "save of only what changed" is sent to a key whose stored
object is not the one the snapshot describes."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import redis

import redmodel


@redmodel.model(prefix="atk30at_t", track_changes=True)
@attrs.define
class Tracked:
    x: int = 0
    y: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk30at_i")
@attrs.define
class Indexed:  # an indexed model tracks changes by default (docs/queries.md)
    x: int = redmodel.field(default=0, index=True)
    email: str = redmodel.field(default="", unique=True)
    id: str = redmodel.key_field(generated=False)


def test_f1_tracked_save_under_a_changed_id_merges_into_the_other_object(
        redis_client: redis.Redis) -> None:
    """docs/store.md, Atomicity: "A tracked `save` of an object loaded by `get` sends only
    what changed; when nothing changed it still checks that the object exists, and saves
    it whole when it is gone." and `Store.save`'s docstring: "saves an object loaded by
    `get` by sending only the fields that changed since". What changed is relative to the
    object stored at the key the object is saved to. An object loaded from `a`, given the
    id `b` (a copy over an existing object) and saved, must be stored at `b` as it is: the
    save writes only `x` there, and `b` keeps its own `y`."""
    store = redmodel.Store(redis_client)
    store.save(Tracked(1, 1, id="a"))
    store.save(Tracked(9, 9, id="b"))
    obj = store.get(Tracked, "a")
    assert obj is not None
    obj.id = "b"
    obj.x = 2
    store.save(obj)
    assert store.get(Tracked, "b") == Tracked(2, 1, id="b")   # main: Tracked(x=2, y=9)


def test_f1_indexed_save_under_a_changed_id_skips_the_unique_check(
        redis_client: redis.Redis) -> None:
    """docs/queries.md (unique fields): a save of an object whose unique value another id
    holds raises `UniqueViolationError`, nothing written; docs/store.md: a tracked save
    "sends only what changed". Loaded from `a`, given id `b`, saved: the object claims
    `ann@x` (held by `a`), so the save must either be refused or store the object as it
    is. On main it returns normally and `b` holds a mix: `x` from the object, `email`
    from the old `b`."""
    store = redmodel.Store(redis_client)
    store.save(Indexed(1, "ann@x", id="a"))
    store.save(Indexed(9, "bob@x", id="b"))
    obj = store.get(Indexed, "a")
    assert obj is not None
    obj.id = "b"
    obj.x = 2
    try:
        store.save(obj)
    except redmodel.UniqueViolationError:
        assert store.get(Indexed, "b") == Indexed(9, "bob@x", id="b")   # nothing written
    else:
        assert store.get(Indexed, "b") == obj   # main: Indexed(x=2, email='bob@x', id='b')
    assert store.verify(Indexed) == []


def _two_dbs(redis_server: Any, redis_client: redis.Redis) -> tuple[redis.Redis, redis.Redis]:
    """The test server's database 0 (the fixture's client) and database 7."""
    return redis_client, redis_server.client(db=7)


def test_f2_an_object_copied_to_another_store_is_not_written(
        redis_server: Any, redis_client: redis.Redis) -> None:
    """docs/store.md, Atomicity: "A tracked `save` of an object loaded by `get` sends only
    what changed; when nothing changed it still checks that the object exists, and saves
    it whole when it is gone." Copying an object from one store (server, database) to
    another that holds an older version of it (a sync, a restore, a migration between
    servers) writes nothing at all: the snapshot taken by the first store's `get` says
    "nothing changed", and the target only checks that its own object exists."""
    src_client, dst_client = _two_dbs(redis_server, redis_client)
    src, dst = redmodel.Store(src_client), redmodel.Store(dst_client)
    try:
        src.save(Tracked(5, 5, id="c"))
        dst.save(Tracked(0, 0, id="c"))              # the target's older copy
        obj = src.get(Tracked, "c")
        assert obj is not None
        dst.save(obj)
        assert dst.get(Tracked, "c") == Tracked(5, 5, id="c")   # main: Tracked(0, 0)
    finally:
        dst_client.delete("atk30at_t:c", "atk30at_t:%schema")
        dst_client.close()


def test_f2_async_load_then_save_elsewhere_same_loss(
        redis_server: Any, redis_client: redis.Redis, redis_url: str) -> None:
    """The same as F2 with an `AsyncStore` as the source (docs/store.md: `Store` and
    `AsyncStore` share one transport and behave alike): an object an `AsyncStore` read
    from database 0 and a `Store` on database 7 saves is not written there."""
    _, dst_client = _two_dbs(redis_server, redis_client)
    dst = redmodel.Store(dst_client)

    async def load() -> Any:
        astore = redmodel.AsyncStore.from_url(redis_url)
        try:
            await astore.save(Tracked(3, 4, id="d"))
            return await astore.get(Tracked, "d")
        finally:
            await astore.aclose()

    try:
        dst.save(Tracked(0, 0, id="d"))
        obj = asyncio.run(load())
        obj.x = 6                                     # one field changed since the get
        dst.save(obj)
        assert dst.get(Tracked, "d") == Tracked(6, 4, id="d")   # main: Tracked(6, 0)
    finally:
        dst_client.delete("atk30at_t:d", "atk30at_t:%schema")
        dst_client.close()
