"""A primary fails over while writers run: no acknowledged write is lost, none is applied
twice, and redmodel follows the new primary without user code (MOVED, then the new map)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

import redmodel
from redmodel.containers import Queue
from redmodel.testing import RedisClusterServer

RUN = 0.4  # seconds of writes before and after the failover
_runs = itertools.count()


@redmodel.model(prefix="fo")
@attrs.define
class Counter:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


@attrs.define
class Writer:
    """One writer's own counter and queue, and what it was told about each write."""

    id: str
    on_target: bool
    acked: list[int] = attrs.Factory(list)  # incr replies, in order
    acked_at: list[float] = attrs.Factory(list)
    pushed: list[int] = attrs.Factory(list)  # values whose push was acknowledged
    unknown_incr: int = 0
    unknown_push: list[int] = attrs.Factory(list)
    failed: list[BaseException] = attrs.Factory(list)  # plain errors: not applied

    def step(self, kind: str, value: Any, error: BaseException | None, i: int) -> None:
        if error is None:
            if kind == "incr":
                self.acked.append(value)
                self.acked_at.append(time.monotonic())
            else:
                self.pushed.append(i)
        elif isinstance(error, redmodel.OutcomeUnknownError):
            if kind == "incr":
                self.unknown_incr += 1
            else:
                self.unknown_push.append(i)
        else:
            self.failed.append(error)


@pytest.fixture
def cluster(redis_replicated_cluster: RedisClusterServer) -> Iterator[RedisClusterServer]:
    client = redis_replicated_cluster.client()
    client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    client.close()
    yield redis_replicated_cluster


def _writers(cluster: RedisClusterServer, target: Any) -> list[Writer]:
    """Two writers whose keys live on ``target`` and two elsewhere."""
    direct = cluster.client()
    run = next(_runs)
    out: list[Writer] = []
    try:
        for i in itertools.count():
            name = f"w{run}-{i}"
            node = direct.get_node_from_key(f"fo:{name}")
            on = node.port == target.port
            if sum(w.on_target == on for w in out) < 2:
                out.append(Writer(name, on))
            if len(out) == 4:
                return out
    finally:
        direct.close()
    raise AssertionError("unreachable")


def _check(cluster: RedisClusterServer, writers: list[Writer], once: bool,
           failed_over_at: float) -> None:
    direct = cluster.client()  # a fresh client: the new slot map
    store = redmodel.Store(direct)
    try:
        for w in writers:
            stored = store.get(Counter, w.id)
            final = 0 if stored is None else stored.n
            assert w.acked == sorted(set(w.acked)), f"{w.id}: an increment answered twice"
            assert len(w.acked) <= final <= len(w.acked) + w.unknown_incr, (
                f"{w.id}: {len(w.acked)} acknowledged and {w.unknown_incr} unknown increments, "
                f"but the counter holds {final}: a write was lost or applied twice")
            items = Queue(store, ("foq", w.id), int).range()
            assert len(items) == len(set(items)), f"{w.id}: a push was applied twice"
            assert set(w.pushed) <= set(items), f"{w.id}: an acknowledged push was lost"
            assert set(items) <= set(w.pushed) | set(w.unknown_push)
            assert not w.failed or not once, f"{w.id}: {w.failed[:2]}"
            if once:
                assert w.unknown_incr == 0 and not w.unknown_push
                assert final == len(w.acked)
            if w.on_target:  # it went on writing to the new primary, with no user code
                assert any(t > failed_over_at for t in w.acked_at), f"{w.id}: stuck"
    finally:
        direct.close()


@pytest.mark.parametrize("mode", ["at-most-once", "exactly-once"])
def test_a_failover_under_sync_writers(cluster: RedisClusterServer, mode: str) -> None:
    once = mode == "exactly-once"
    target = cluster.primary_nodes()[0]
    writers = _writers(cluster, target)
    store = redmodel.Store(cluster.client(), exactly_once=once)
    stop = threading.Event()

    def write(w: Writer) -> None:
        q = Queue(store, ("foq", w.id), int)
        for i in itertools.count():
            if stop.is_set():
                return
            for kind in ("incr", "push"):
                try:
                    value = (store.incr(Counter, w.id, "n", 1) if kind == "incr"
                             else q.push(i))
                    w.step(kind, value, None, i)
                except redmodel.NotFoundError:
                    store.save(Counter(id=w.id))  # the first round creates the counter
                except Exception as e:
                    w.step(kind, None, e, i)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    time.sleep(RUN)
    cluster.failover(target)
    failed_over_at = time.monotonic()
    time.sleep(RUN)
    stop.set()
    for t in threads:
        t.join()
    store.close()
    _check(cluster, writers, once, failed_over_at)


@pytest.mark.parametrize("mode", ["at-most-once", "exactly-once"])
def test_a_failover_under_asyncio_writers(cluster: RedisClusterServer, mode: str) -> None:
    once = mode == "exactly-once"
    target = cluster.primary_nodes()[0]
    writers = _writers(cluster, target)
    host, port = cluster.addresses[0]
    failed_over_at = 0.0

    async def main() -> None:
        nonlocal failed_over_at
        store = redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port), exactly_once=once)
        stop = asyncio.Event()

        async def write(w: Writer) -> None:
            q = Queue(store, ("foq", w.id), int)  # type: ignore[arg-type]
            for i in itertools.count():
                if stop.is_set():
                    return
                for kind in ("incr", "push"):
                    try:
                        value = await (store.incr(Counter, w.id, "n", 1) if kind == "incr"
                                       else q.push(i))  # type: ignore[misc]
                        w.step(kind, value, None, i)
                    except redmodel.NotFoundError:
                        await store.save(Counter(id=w.id))
                    except Exception as e:
                        w.step(kind, None, e, i)

        tasks = [asyncio.create_task(write(w)) for w in writers]
        await asyncio.sleep(RUN)
        await asyncio.to_thread(cluster.failover, target)
        failed_over_at = time.monotonic()
        await asyncio.sleep(RUN)
        stop.set()
        await asyncio.gather(*tasks)
        # a model-wide walk after the failover visits the new primary: the store that
        # lived through it and a client never used count what a new sync client counts
        fresh = redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port))
        counted = [await store.count(Counter), await fresh.count(Counter)]
        await fresh.aclose()
        await store.aclose()
        sync = redmodel.Store(cluster.client())
        expected = sync.count(Counter)
        sync.close()
        # the store that lived through the failover never misses an object; its partly
        # updated slot table may make it walk the demoted primary too (docs/store.md,
        # "Model-wide walks on a cluster", Limit); a client never used answers exactly
        assert counted[1] == expected and counted[0] >= expected > 0, (counted, expected)

    asyncio.run(main())
    _check(cluster, writers, once, failed_over_at)
