"""FINDINGS-18a F4, F7, F11 beyond the attack's own tests (tests/test_attack18a.py): a
transaction after SCRIPT FLUSH is all or nothing with several scripts and for an ACL user
who may not SCRIPT LOAD; every MULTI carries its scripts; gathered joined functions keep
the pool bounded on every path (success, a raising join, cancellation); a container of
another store is refused in an async transaction too."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel import AsyncStore, Store
from redmodel._plan import Batch, script
from redmodel._transport._wire import Exchange, Link
from redmodel.containers import Queue, WindowCounter
from redmodel.testing import RedisServer


@redmodel.model(prefix="f18h")
@attrs.define
class Hat:
    quantity: int = 0
    id: str = redmodel.key_field()


@redmodel.model(prefix="f18i")
@attrs.define
class IHat:
    color: str = redmodel.field(index=True, default="black")
    quantity: int = 0
    id: str = redmodel.key_field()


@redmodel.model(prefix="f18f", layout="flat")
@attrs.define
class FlatHat:
    color: str = "black"
    tags: list[str] = attrs.Factory(list)
    id: str = redmodel.key_field()


# ---- F11: scripts inside MULTI ---------------------------------------------------------------


def test_every_multi_loads_each_of_its_scripts_inside_it() -> None:
    """Whatever the store believes the node has loaded, a MULTI carries one SCRIPT LOAD of
    each distinct script it calls, right after MULTI (so EXEC runs them first)."""
    a, b = script("hash_update"), script("incr_fields")
    batch = Batch([("SET", "k", 1), a.call(["x"], [1]), b.call(["y"], [2]), a.call(["z"], [3])],
                  atomic=True, write=True)
    link = Link()
    link.loaded[None] = {a.sha, b.sha}
    calls = Exchange(batch, link).calls()
    assert calls is not None
    wire = calls[0].wire
    assert [c[:2] for c in wire[:3]] == [("MULTI",), ("SCRIPT", "LOAD"), ("SCRIPT", "LOAD")]
    assert {c[2] for c in wire[1:3]} == {a.source, b.source}
    assert [c[0] for c in wire[3:]] == ["SET", "EVALSHA", "EVALSHA", "EVALSHA", "EXEC"]
    link.eval_only.add(None)  # a node that refused SCRIPT LOAD: EVAL inside MULTI instead
    calls = Exchange(batch, link).calls()
    assert calls is not None
    assert [c[0] for c in calls[0].wire] == ["MULTI", "SET", "EVAL", "EVAL", "EVAL", "EXEC"]


def test_a_transaction_of_many_scripts_after_script_flush_commits_whole(store: Store) -> None:
    store.save_many([Hat(id="a", quantity=5), IHat(id="b"), FlatHat(id="c")])
    store.client.script_flush()

    @redmodel.transaction(store)
    def change(tx: Any) -> None:
        tx.command("SET", "f18marker", "1")
        tx.incr(Hat, "a", "quantity", 1)
        tx.update(IHat, "b", color="red")
        tx.save(FlatHat("green", id="c"))

    change()
    assert store.client.get("f18marker") == b"1"
    assert store.get_or_raise(Hat, "a").quantity == 6
    assert store.find(IHat, color="red").all() == [IHat("red", id="b")]
    assert store.get_or_raise(FlatHat, "c").color == "green"
    store.client.script_flush()
    counter = WindowCounter(store, "f18visits", window=60)  # its own MULTI with a script
    assert counter.incr("x") == 1
    store.client.script_flush()
    assert counter.incr("x") == 2


def test_a_user_who_may_not_load_scripts_commits_whole_after_script_flush() -> None:
    """An ACL user with EVAL/EVALSHA but not SCRIPT: the SCRIPT LOAD inside MULTI is
    refused when queued, EXEC aborts with nothing applied, and the attempt runs again with
    EVAL inside MULTI."""
    with RedisServer() as server:
        admin = server.client()
        admin.acl_setuser("evaler", enabled=True, passwords=["+pw"], keys=["*"],
                          commands=["+@all", "-script"])
        store = Store(server.client(username="evaler", password="pw"))
        try:
            store.save(Hat(id="a", quantity=1))

            @redmodel.transaction(store)
            def change(tx: Any) -> None:
                tx.get_or_raise(Hat, "a")
                tx.command("SET", "marker", "1")
                tx.incr(Hat, "a", "quantity", 1)

            change()
            admin.script_flush()
            change()
            assert store.get_or_raise(Hat, "a").quantity == 3
            assert change.stats.commits == 2
        finally:
            store.close()
            admin.close()


# ---- F7: joined functions gathered in tasks ---------------------------------------------


def _in_use(astore: AsyncStore) -> int:
    return len(list(astore.client.connection_pool._get_in_use_connections()))


def test_gathered_joins_keep_the_pool_bounded_on_every_path(redis_url: str) -> None:
    async def scenario() -> None:
        async with AsyncStore.from_url(redis_url) as astore:
            ids = [f"g{i}" for i in range(8)]
            await astore.save_many([Hat(id=i, quantity=10) for i in ids])

            @redmodel.transaction(astore)
            async def take(tx: Any, hat_id: str, fail: bool = False) -> int:
                hat = await tx.get_or_raise(Hat, hat_id)
                tx.incr(Hat, hat_id, "quantity", -1)
                if fail:
                    raise KeyError(hat_id)
                return hat.quantity

            @redmodel.transaction(astore)
            async def outer(tx: Any, fail: bool, catch: bool) -> list[Any]:
                return list(await asyncio.gather(
                    *(take(i, fail and i == "g3") for i in ids), return_exceptions=catch))

            for n in range(30):
                kind = n % 4
                if kind == 0:
                    # reads after another task's queued write: ReadAfterWriteError, or fine
                    with contextlib.suppress(redmodel.ReadAfterWriteError):
                        await outer(False, False)
                elif kind == 1:  # a join raises, the outer function lets it through
                    with pytest.raises((KeyError, redmodel.ReadAfterWriteError)):
                        await outer(True, False)
                elif kind == 2:  # a join raises, the outer catches it: commits nothing
                    with pytest.raises(redmodel.TransactionError):
                        await outer(True, True)
                else:  # the caller gives up (cancellation mid round trip)
                    task = asyncio.ensure_future(outer(False, True))
                    await asyncio.sleep(0.0005 * (n % 5))
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, redmodel.RedmodelError):
                        await task
                assert _in_use(astore) == 0, (n, _in_use(astore))
            assert outer.stats.restarts == 0
            # nothing a failed or refused call queued was applied: only whole commits
            left = [h.quantity for h in await astore.get_many(Hat, ids) if h is not None]
            assert len(set(left)) == 1, left

    asyncio.run(scenario())


def test_gathered_reads_of_one_transaction_share_its_connection(redis_url: str) -> None:
    """Not only joins: ``gather(tx.get(...), ...)`` on one handle runs its round trips one
    at a time and sees every value."""
    async def scenario() -> None:
        async with AsyncStore.from_url(redis_url) as astore:
            await astore.save_many([Hat(id=f"r{i}", quantity=i) for i in range(12)])

            @redmodel.transaction(astore)
            async def read_all(tx: Any) -> list[int]:
                hats = await asyncio.gather(*(tx.get_or_raise(Hat, f"r{i}") for i in range(12)))
                return [h.quantity for h in hats]

            for _ in range(10):
                assert await read_all() == list(range(12))
            assert read_all.stats.restarts == 0 and _in_use(astore) == 0

    asyncio.run(scenario())


# ---- F4: another store's container, async ------------------------------------------------


def test_an_async_container_of_another_store_cannot_join(redis_url: str,
                                                         store: Store) -> None:
    async def scenario() -> None:
        async with AsyncStore.from_url(redis_url) as astore, \
                AsyncStore.from_url(redis_url + "/2") as other:
            jobs = Queue(other, "f18jobs", int)
            sync_jobs = Queue(store, "f18jobs", int)

            @redmodel.transaction(astore)
            async def enqueue(tx: Any) -> None:
                jobs.in_tx(tx).push(1)

            with pytest.raises(redmodel.TransactionError, match="another store"):
                await enqueue()

            @redmodel.transaction(astore)
            async def enqueue_sync(tx: Any) -> None:
                sync_jobs.in_tx(tx).push(1)  # type: ignore[call-overload]

            with pytest.raises(redmodel.TransactionError, match="another store"):
                await enqueue_sync()
            assert not await astore.client.exists("f18jobs")

    asyncio.run(scenario())
    with contextlib.suppress(redis.RedisError):
        store.client.delete("f18jobs")
