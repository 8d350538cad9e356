"""Calls of one cluster store that lose their connections together reload the slot map once
(redmodel._transport._links: ``_Shell._moves``): a round that loses a connection asks for a
reload of the map (``CLUSTER SLOTS`` and redis-py's walk of 16,384 slots), and a reload
that ended after a round ended, succeeded or failed, stands for that round's. Every call
still answers what the server holds."""

from __future__ import annotations

import asyncio
import time
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import pytest
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

import redmodel
from redmodel._models._specs import spec_of
from redmodel._transport._links import AsyncLink, SyncLink
from redmodel.testing import ClusterFaultProxy, RedisClusterServer, has
from tests.faults import FAST_RESEND, cluster_client

CALLS = 12
SOCKET_TIMEOUT = 0.4
STALL = 0.8


@redmodel.model(prefix="reload")
@attrs.define
class Item:
    id: str
    n: int = 0


def _stall_each_once(proxies: ClusterFaultProxy, direct_client: Any, ids: list[str]) -> None:
    """Stall the first HGETALL of each id past the socket timeout (once: the resend
    passes)."""
    for i in ids:
        key = spec_of(Item).key_for(i)
        node = direct_client.get_node_from_key(key)
        proxies.proxy_for((node.host, int(node.port))).stall("HGETALL", STALL, when=has(key))


def _through(proxies: ClusterFaultProxy, loop: asyncio.AbstractEventLoop | None) -> Any:
    """A cluster client (asyncio when ``loop`` is given) that reaches the nodes only through
    ``proxies``, with the test's short socket timeout and no redis-py retries."""
    host, port = proxies.startup_nodes[0]
    options = {"host": host, "port": port, "address_remap": proxies.address_remap,
               "socket_timeout": SOCKET_TIMEOUT,
               "retry": (AsyncRetry if loop else Retry)(NoBackoff(), 0)}
    return cluster_client(options, loop)


def _count_reloads(monkeypatch: pytest.MonkeyPatch, manager_class: Any) -> list[int]:
    """Count the calls of ``manager_class.initialize`` (redis-py's reload of the map)."""
    count = [0]
    original = manager_class.initialize

    if asyncio.iscoroutinefunction(original):
        async def counted_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            return await original(self, *args, **kwargs)
        monkeypatch.setattr(manager_class, "initialize", counted_async)
    else:
        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            return original(self, *args, **kwargs)
        monkeypatch.setattr(manager_class, "initialize", counted)
    return count


def _slots_answered(cluster: RedisClusterServer) -> int:
    """How many CLUSTER SLOTS the cluster's nodes have answered (INFO commandstats)."""
    total = 0
    for client in cluster.node_clients():
        with client:
            stats = client.info("commandstats")
            total += int(stats.get("cmdstat_cluster|slots", {}).get("calls", 0))
    return total


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_calls_that_lose_their_connections_together_share_a_failed_reload(
        redis_cluster: RedisClusterServer, redis_cluster_client: Any, shell: str) -> None:
    """CALLS reads lose their connections together (each stalled past the socket timeout
    once) while every node stalls CLUSTER SLOTS past the timeout too: the reload they ask
    for fails, and it stands for all of them (without that, each waited for the one before
    and then made its own: CALLS failed reloads one after another, each trying every
    node). Every read then answers what the server holds."""
    direct = redmodel.Store(redis_cluster_client)
    ids = [f"item-{k}" for k in range(CALLS)]
    direct.save_many(Item(id=i, n=k) for k, i in enumerate(ids))
    loop = asyncio.new_event_loop() if shell == "async" else None
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        client = _through(proxies, loop)

        def arm() -> int:
            _stall_each_once(proxies, redis_cluster_client, ids)  # all time out together
            proxies.stall("CLUSTER", STALL, times=1_000)          # and so does every reload
            return _slots_answered(redis_cluster)

        try:
            if loop is None:
                store: Any = redmodel.Store(client, resend=FAST_RESEND)
                store.get(Item, ids[0])  # the store's first call (its checks) is not tested
                before = arm()
                with ThreadPoolExecutor(CALLS) as pool:
                    got = list(pool.map(lambda i: store.get(Item, i), ids))
                store.close()
            else:
                astore = redmodel.AsyncStore(client, resend=FAST_RESEND)

                async def main() -> tuple[int, list[Item]]:
                    await astore.get(Item, ids[0])
                    began = arm()
                    try:
                        return began, list(await asyncio.gather(*(astore.get(Item, i)
                                                                  for i in ids)))
                    finally:
                        await astore.aclose()

                before, got = loop.run_until_complete(main())
            proxies.clear()
            assert proxies.quiet(10)
        finally:
            if loop is not None:
                loop.close()
    assert got == [Item(id=i, n=k) for k, i in enumerate(ids)]
    sent = _slots_answered(redis_cluster) - before
    nodes = len(redis_cluster.addresses)
    # one failed reload tries every node; a second (a round that ended after the first
    # reload, on a machine slow enough) is allowed, CALLS of them are what is refused
    assert 1 <= sent <= 2 * nodes, f"{sent} CLUSTER SLOTS for {CALLS} calls losing together"


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_reload_that_began_after_a_round_ended_stands_for_it(
        redis_cluster: RedisClusterServer, shell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule, with the rounds' end times chosen: CALLS rounds that ended before any
    reload make one reload between them (threads, or asyncio tasks, at once); a round
    that ended after the last reload ended makes its own; one that ended before it does not."""
    host, port = redis_cluster.addresses[0]
    lost = types.SimpleNamespace(moved=[], reinit=True)  # what a round that lost a conn. says
    if shell == "sync":
        client = redis.cluster.RedisCluster(host=host, port=port)
        link = SyncLink(client, cluster=True, policy=FAST_RESEND, exactly_once=False)
        reloads = _count_reloads(monkeypatch, redis.cluster.NodesManager)
        ended = time.monotonic()
        with ThreadPoolExecutor(CALLS) as pool:
            list(pool.map(lambda _: link._refresh(lost, ended), range(CALLS)))  # type: ignore[arg-type]
        assert reloads[0] == 1
        link._refresh(lost, time.monotonic())  # type: ignore[arg-type]
        assert reloads[0] == 2
        link._refresh(lost, ended)  # type: ignore[arg-type]
        assert reloads[0] == 2
        client.close()
        return
    aclient = redis.asyncio.cluster.RedisCluster(host=host, port=port)
    alink = AsyncLink(aclient, cluster=True, policy=FAST_RESEND, exactly_once=False)
    reloads = _count_reloads(monkeypatch, redis.asyncio.cluster.NodesManager)

    async def main() -> list[int]:
        await aclient.initialize()
        counts = [reloads[0]]
        ended = time.monotonic()
        await asyncio.gather(*(alink._refresh(lost, ended)  # type: ignore[arg-type]
                               for _ in range(CALLS)))
        counts.append(reloads[0])
        await alink._refresh(lost, time.monotonic())  # type: ignore[arg-type]
        counts.append(reloads[0])
        await alink._refresh(lost, ended)  # type: ignore[arg-type]
        counts.append(reloads[0])
        await aclient.aclose()
        return counts

    first, together, later, again = asyncio.run(main())
    assert (together - first, later - together, again - later) == (1, 1, 0)


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_reload_that_failed_stands_for_the_rounds_that_waited_for_it(
        redis_cluster: RedisClusterServer, shell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node stalls CLUSTER SLOTS past the socket timeout: the first reload fails, and
    the calls that waited for it do not each try again (one timeout after another), their
    next round would."""
    loop = asyncio.new_event_loop() if shell == "async" else None
    lost = types.SimpleNamespace(moved=[], reinit=True)
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        client = _through(proxies, loop)
        try:
            if loop is None:
                link: Any = SyncLink(client, cluster=True, policy=FAST_RESEND, exactly_once=False)
                reloads = _count_reloads(monkeypatch, redis.cluster.NodesManager)
                proxies.stall("CLUSTER", STALL, times=1_000)
                ended = time.monotonic()
                with ThreadPoolExecutor(CALLS) as pool:
                    list(pool.map(lambda _: link._refresh(lost, ended), range(CALLS)))
                client.close()
            else:
                link = AsyncLink(client, cluster=True, policy=FAST_RESEND, exactly_once=False)
                reloads = _count_reloads(monkeypatch, redis.asyncio.cluster.NodesManager)

                async def main() -> None:
                    proxies.stall("CLUSTER", STALL, times=1_000)
                    ended = time.monotonic()
                    await asyncio.gather(*(link._refresh(lost, ended) for _ in range(CALLS)))
                    await client.aclose()

                loop.run_until_complete(main())
            assert reloads[0] == 1
            proxies.clear()
            assert proxies.quiet(10)
        finally:
            if loop is not None:
                loop.close()
    assert [e for e in proxies.events if e.kind == "stall"], "no reload was stalled"


def test_a_cancelled_reload_stands_for_no_one(
        redis_cluster: RedisClusterServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task whose reload is cancelled (``asyncio.wait_for`` ran out) ended no reload: the
    task that waited for the lock behind it reloads itself (a cancelled reload counted as
    ended sent it on with the stale map, one more failed round of its ResendPolicy)."""
    loop = asyncio.new_event_loop()
    lost = types.SimpleNamespace(moved=[], reinit=True)
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        client = _through(proxies, loop)
        link = AsyncLink(client, cluster=True, policy=FAST_RESEND, exactly_once=False)
        reloads = _count_reloads(monkeypatch, redis.asyncio.cluster.NodesManager)

        async def main() -> tuple[int, float]:
            await client.initialize()
            first = reloads[0]
            # the first CLUSTER SLOTS answers after 0.3 s (under the socket timeout)
            proxies.stall("CLUSTER", 0.3, times=1)
            ended = time.monotonic()
            hurried = asyncio.ensure_future(
                asyncio.wait_for(link._refresh(lost, ended), 0.1))  # type: ignore[arg-type]
            await asyncio.sleep(0.05)  # it holds the lock, in its stalled reload
            patient = asyncio.ensure_future(link._refresh(lost, ended))  # type: ignore[arg-type]
            with pytest.raises(asyncio.TimeoutError):
                await hurried
            await patient
            return reloads[0] - first, link._reload_ended

        try:
            made, reload_ended = loop.run_until_complete(main())
            loop.run_until_complete(client.aclose())
        finally:
            loop.close()
    assert [e for e in proxies.events if e.kind == "stall"], "the first reload was not stalled"
    assert made == 2  # the cancelled one, and the waiting task's own
    assert reload_ended > float("-inf")


def test_an_interrupted_reload_stands_for_no_one(
        redis_cluster: RedisClusterServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread's reload interrupted by a BaseException (``KeyboardInterrupt``) ended no
    reload: the next call that lost a connection before it reloads itself."""
    host, port = redis_cluster.addresses[0]
    lost = types.SimpleNamespace(moved=[], reinit=True)
    client = redis.cluster.RedisCluster(host=host, port=port)
    link = SyncLink(client, cluster=True, policy=FAST_RESEND, exactly_once=False)
    reloads = _count_reloads(monkeypatch, redis.cluster.NodesManager)
    counted = redis.cluster.NodesManager.initialize
    interrupt = [True]

    def interrupted_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = counted(self, *args, **kwargs)  # the reload ran and was counted
        if interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt  # as arrives in a thread's reload at ^C
        return result

    monkeypatch.setattr(redis.cluster.NodesManager, "initialize", interrupted_once)
    try:
        ended = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            link._refresh(lost, ended)  # type: ignore[arg-type]
        assert link._reload_ended == float("-inf")
        link._refresh(lost, ended)  # type: ignore[arg-type]
        assert reloads[0] == 2
        assert link._reload_ended >= ended
    finally:
        client.close()
