"""An AsyncStore over an asyncio cluster client that has sent nothing yet gives the full
answer of every method that walks every primary (SCAN on each), never a silently empty
one: redis-py's asyncio ``RedisCluster`` knows no primaries before its first command, and
a plan that took its targets when it was built saw none (``count`` answered 0 with
objects stored). See redmodel._stores._config.Targets.

Each case builds a fresh client (never used) on the session's cluster, after the objects
were stored through the sync cluster store; 0 objects must mean truly none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import redis.cluster
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

import redmodel
from redmodel.migrations import Migrations, rewrite
from redmodel.testing import RedisClusterServer
from tests.budget import scaled

PREFIX = "act_hat"


@redmodel.model(prefix=PREFIX, buckets=4)
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    size: int = redmodel.field(index=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix=PREFIX, buckets=4)
@attrs.define
class HatWithoutSize:  # the next deploy of Hat: its size index is dropped
    color: str = redmodel.field(index=True)
    size: int = 0
    id: str = redmodel.key_field(generated=False)


HatWithoutSize.__qualname__ = "Hat"  # the same model to the registry


def hats(n: int) -> list[Hat]:
    # ids with the characters key escaping cares about, spread over every primary
    return [Hat(color=("red", "blue", "")[i % 3], size=i % 5, id=f"h{i}:{{x}}*%\\")
            for i in range(n)]


def _primaries(client: redis.cluster.RedisCluster) -> list[Any]:
    return list(client.get_primaries())


def raw_keys(client: redis.cluster.RedisCluster, pattern: str) -> list[bytes]:
    return [k for node in _primaries(client)
            for k in client.scan_iter(match=pattern, count=1000, target_nodes=node)]


def seed(client: redis.cluster.RedisCluster, n: int) -> list[Hat]:
    client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    objs = hats(n)
    redmodel.Store(client).save_many(objs)
    return objs


def fresh(cluster: RedisClusterServer, registry: bool) -> redmodel.AsyncStore:
    host, port = cluster.addresses[0]
    return redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port), registry=registry)


async def _count(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    assert await s.count(Hat) == len(objs)


async def _scan(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    assert sorted([h.id async for h in s.scan(Hat, count=3)]) == sorted(h.id for h in objs)


async def _scan_keys(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    keys = [k async for k in s.scan_keys(Hat, count=3)]
    assert len(keys) == len(set(keys)) == len(objs)


async def _query(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    assert await s.find(Hat).count() == len(objs)
    red = await s.find(Hat, color="red").all()
    assert sorted(h.id for h in red) == sorted(h.id for h in objs if h.color == "red")


async def _reindex(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    # the index is lost (a raw DEL): only a SCAN of every primary finds the objects again
    for key in raw_keys(sync, f"{PREFIX}*%idx*"):
        sync.delete(key)
    assert await s.reindex(Hat) == len(objs)
    assert await s.find(Hat, size=1).count() == sum(h.size == 1 for h in objs)


async def _verify(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    for key in raw_keys(sync, f"{PREFIX}*%idx*"):
        sync.delete(key)
    problems = await s.verify(Hat)
    assert bool(problems) == bool(objs), problems   # every unindexed object is reported


async def _drop_index(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    assert raw_keys(sync, f"{PREFIX}*%idx*eq:size:*") or not objs
    await s.drop_index(HatWithoutSize, "size")
    assert raw_keys(sync, f"{PREFIX}*%idx*eq:size:*") == []
    records = [sync.hgetall(k) for k in raw_keys(sync, f"{PREFIX}*%idx*rec*")]
    assert not any(b"size" in field for r in records for field in r), records


async def _migration_plan(s: redmodel.AsyncStore, objs: list[Hat], sync: Any) -> None:
    m = Migrations("act_targets")
    m.add("0001_rewrite", rewrite(Hat))
    status = await m.plan(s)
    assert status.steps[0].objects == len(objs)


METHODS: dict[str, Callable[[redmodel.AsyncStore, list[Hat], Any], Awaitable[None]]] = {
    "count": _count, "scan": _scan, "scan_keys": _scan_keys, "query": _query,
    "reindex": _reindex, "verify": _verify, "drop_index": _drop_index,
    "migration_plan": _migration_plan,
}


def check(cluster: RedisClusterServer, sync: Any, method: str, n: int, registry: bool) -> None:
    objs = seed(sync, n)

    async def main() -> None:
        store = fresh(cluster, registry)
        try:
            await METHODS[method](store, objs, sync)
        finally:
            await store.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("registry", [True, False], ids=["registry", "no_registry"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_fresh_async_cluster_client_gives_the_full_answer(
        redis_cluster: RedisClusterServer, redis_cluster_client: Any, method: str,
        registry: bool) -> None:
    check(redis_cluster, redis_cluster_client, method, 13, registry)


@settings(max_examples=scaled(40), deadline=None)
@given(method=st.sampled_from(sorted(METHODS)), n=st.integers(0, 12), registry=st.booleans())
def test_a_fresh_client_answers_as_many_as_are_stored(
        redis_cluster: RedisClusterServer, redis_cluster_client: Any, method: str, n: int,
        registry: bool) -> None:
    """Whatever the method and however many objects (none included), a never-used client
    answers for exactly the objects stored."""
    check(redis_cluster, redis_cluster_client, method, n, registry)


def test_sweep_through_a_fresh_client(redis_cluster: RedisClusterServer,
                                      redis_cluster_client: Any) -> None:
    store = redmodel.Store(redis_cluster_client)
    store.save_many(hats(6), ttl=0.05)
    time.sleep(0.2)                     # expired: the index still holds them until a sweep

    async def main() -> int:
        s = fresh(redis_cluster, True)
        try:
            return await s.sweep(Hat)
        finally:
            await s.aclose()

    assert asyncio.run(main()) == 6
    assert store.find(Hat).count() == 0


def test_from_url_and_a_closed_then_reused_client(redis_cluster: RedisClusterServer,
                                                  redis_cluster_client: Any) -> None:
    seed(redis_cluster_client, 9)
    host, port = redis_cluster.addresses[0]

    async def main() -> list[int]:
        s = redmodel.AsyncStore.from_url(f"redis://{host}:{port}/0", cluster=True,
                                         registry=False)
        answers = [await s.count(Hat)]
        await s.client.aclose()          # forgets its default node; used again below
        answers.append(await s.count(Hat))
        answers.append(len([k async for k in s.scan_keys(Hat)]))
        await s.aclose()
        return answers

    assert asyncio.run(main()) == [9, 9, 9]


def test_the_sync_cluster_store_fresh_and_closed_then_reused(
        redis_cluster: RedisClusterServer, redis_cluster_client: Any) -> None:
    """redis-py's sync cluster client learns its primaries in its constructor; a store on a
    new one, and on one closed and used again, walks all three."""
    seed(redis_cluster_client, 11)
    store = redmodel.Store(redis_cluster.client(), registry=False)
    assert len(store._targets()) == 3
    assert store.count(Hat) == 11
    store.client.close()
    assert store.count(Hat) == 11
    assert len(list(store.scan_keys(Hat, count=2))) == 11
    store.client.close()


def test_a_cluster_client_knowing_no_primaries_is_an_error_not_zero(
        redis_cluster: RedisClusterServer) -> None:
    """The last guard: a plan walking the targets of a cluster client that knows none
    raises instead of answering for no object."""
    store = fresh(redis_cluster, False)
    with pytest.raises(redis.exceptions.ClusterDownError, match="knows no primaries"):
        list(store._targets())
    asyncio.run(store.aclose())


@pytest.mark.parametrize("n", [0, 7])
def test_an_index_added_by_a_fresh_client_is_built_not_taken_as_empty(
        redis_cluster: RedisClusterServer, redis_cluster_client: Any, n: int) -> None:
    """The model registry asks whether objects are stored (a SCAN of every primary) when a
    deploy adds an index: with objects, the new index is building and a query on it is
    refused until a reindex; never marked ready and answered from an empty index."""
    redis_cluster_client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    redmodel.Store(redis_cluster_client).save_many(
        [HatWithoutSize(color="red", size=1, id=h.id) for h in hats(n)])

    async def main() -> None:
        s = fresh(redis_cluster, True)
        try:
            if n:
                with pytest.raises(redmodel.IndexNotReadyError):
                    await s.find(Hat, size=1).count()
                await s.reindex(Hat)
            assert await s.find(Hat, size=1).count() == n
        finally:
            await s.aclose()

    asyncio.run(main())


@redmodel.model(prefix="act_secret", buckets=4)
@attrs.define
class Secret:
    note: str = redmodel.field(codec="json|fernet")
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("n", [0, 8])
def test_rotate_keys_through_a_fresh_client(redis_cluster: RedisClusterServer,
                                            redis_cluster_client: Any, n: int) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    redmodel.codecs.configure_fernet(keys=[old])
    try:
        redis_cluster_client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        redmodel.Store(redis_cluster_client).save_many(
            [Secret(note=f"n{i}", id=f"s{i}") for i in range(n)])
        redmodel.codecs.configure_fernet(keys=[new, old])

        async def main() -> int:
            s = fresh(redis_cluster, True)
            try:
                return await s.rotate_keys(Secret, count=3)
            finally:
                await s.aclose()

        assert asyncio.run(main()) == n
        redmodel.codecs.configure_fernet(keys=[new])           # the old key is gone
        assert redmodel.Store(redis_cluster_client).count(Secret) == n
        assert sorted(s.note for s in redmodel.Store(redis_cluster_client).scan(Secret)) \
            == sorted(f"n{i}" for i in range(n))
    finally:
        redmodel.codecs.configure_fernet(keys=[Fernet.generate_key()])


def test_from_env_cluster(redis_cluster: RedisClusterServer, redis_cluster_client: Any,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    seed(redis_cluster_client, 5)
    host, port = redis_cluster.addresses[0]
    monkeypatch.setenv("ACT_URL", f"redis://{host}:{port}/0")
    monkeypatch.setenv("ACT_CLUSTER", "1")

    async def main() -> int:
        async with redmodel.AsyncStore.from_env("ACT_") as s:
            return await s.count(Hat)

    assert asyncio.run(main()) == 5
