"""The fence before a resend (issue 12, findings S1 and S7 of round s): a resendable write
whose reply was lost is sent again only once the connection that carried its first copy is
killed (``CLIENT KILL ID``, on another connection), so no copy of it can land after the call
returned and undo a later write. Without the fence: ``OutcomeUnknownError``."""

from __future__ import annotations

import asyncio
import threading
import time

import attrs
import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

import redmodel
from redmodel.testing import (
    ClusterFaultProxy,
    FaultProxy,
    RedisClusterServer,
    RedisServer,
    has,
)

POLICY = redmodel.ResendPolicy(attempts=10, backoff_base=0.01, backoff_max=0.05, deadline=8.0,
                               write_id_ttl=30.0)


@redmodel.model(prefix="fence")
@attrs.define
class Counter:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _kills(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_client|kill", {}).get("calls", 0))


@pytest.mark.parametrize("protocol", [2, 3], ids=["RESP2 (CLIENT ID)", "RESP3 (HELLO)"])
def test_a_stalled_save_is_fenced_and_cannot_undo_a_later_delete(
        proxy: FaultProxy, redis_client: redis.Redis, protocol: int) -> None:
    kills = _kills(redis_client)
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.3,
                                       protocol=protocol), resend=POLICY)
    # (fix 32D) the object exists: a save with no ttl is fragile, its resend writes only
    # over it (docs/failures.md, "Resent writes and missing objects")
    redis_client.hset("fence:a", "n", "1")
    proxy.stall("HSET", 1.0, when=has("fence:a"))
    store.save(Counter(n=5, id="a"))  # held, fenced, resent: returns
    assert [e.kind for e in proxy.events] == ["stall"]
    assert store.delete(Counter, "a") is True
    assert proxy.quiet(10)
    time.sleep(0.1)
    assert store.get(Counter, "a") is None
    assert _kills(redis_client) == kills + 1
    store.close()


def test_asyncio_a_stalled_save_is_fenced_and_cannot_undo_a_later_delete(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    async def run() -> Counter | None:
        client = aredis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.3)
        async with redmodel.AsyncStore(client, resend=POLICY) as store:
            await store.get(Counter, "b")  # a pooled connection, its id learned
            # (fix 32D) the object exists: a save with no ttl is fragile, resent over it alone
            redis_client.hset("fence:b", "n", "1")
            proxy.stall("HSET", 1.0, when=has("fence:b"))
            await store.save(Counter(n=5, id="b"))
            assert await store.delete(Counter, "b") is True
            assert proxy.quiet(10)
            await asyncio.sleep(0.1)
            return await store.get(Counter, "b")

    assert asyncio.run(run()) is None
    assert [e.kind for e in proxy.events] == ["stall"]


def test_without_client_kill_a_lost_reply_to_a_save_is_outcome_unknown(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    redis_client.execute_command("ACL", "SETUSER", "fence_nokill", "reset", "on", ">pw",
                                 "~*", "resetchannels", "+@all", "-client|kill")
    try:
        store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                           username="fence_nokill", password="pw",
                                           socket_timeout=0.3), resend=POLICY)
        proxy.lose_reply("HSET", when=has("fence:c"))
        with pytest.raises(redmodel.OutcomeUnknownError) as raised:
            store.save(Counter(n=1, id="c"))
        assert raised.value.keys == ("fence:c",)
        assert "CLIENT KILL" in str(raised.value)
        assert [e.kind for e in proxy.events] == ["lose_reply"]  # not sent again
        store.close()
    finally:
        redis_client.execute_command("ACL", "DELUSER", "fence_nokill")
        redis_client.delete("fence:c")


def _paused(server: RedisServer, seconds: float) -> threading.Thread:
    server.pause()
    thread = threading.Timer(seconds, server.resume)
    thread.start()
    return thread


def test_a_paused_server_the_fence_waits_in_line_then_the_save_is_resent(
        own_server: RedisServer) -> None:
    store = redmodel.Store(redis.Redis(host=own_server.host, port=own_server.port,
                                       socket_timeout=0.3), resend=POLICY)
    store.get(Counter, "d")  # a pooled connection: the save goes into its socket
    resumer = _paused(own_server, 1.0)
    try:
        store.save(Counter(n=5, id="d"))  # lands when the server resumes, fenced, resent
        assert store.delete(Counter, "d") is True
        time.sleep(0.2)
        assert store.get(Counter, "d") is None
    finally:
        resumer.join()
        own_server.resume()
        store.close()


def test_a_server_paused_past_the_deadline_is_outcome_unknown(own_server: RedisServer) -> None:
    policy = redmodel.ResendPolicy(attempts=10, backoff_base=0.01, backoff_max=0.05,
                                   deadline=0.8)
    store = redmodel.Store(redis.Redis(host=own_server.host, port=own_server.port,
                                       socket_timeout=0.3, retry=Retry(NoBackoff(), 0)),
                           resend=policy)  # the client's retry would stretch each connect
    store.get(Counter, "e")
    resumer = _paused(own_server, 2.0)
    try:
        with pytest.raises(redmodel.OutcomeUnknownError) as raised:
            store.save(Counter(n=5, id="e"))  # neither the fence nor a resend gets through
        assert raised.value.keys == ("fence:e",)
    finally:
        resumer.join()
        own_server.resume()
    # applied when it resumed, once: the server runs what waited in its socket as soon as
    # it runs again (waited for: a fixed 0.2 s may be too short on a slow machine)
    deadline = time.monotonic() + 10
    while store.get(Counter, "e") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get(Counter, "e") == Counter(n=5, id="e")
    store.delete(Counter, "e")
    store.close()


def test_asyncio_cluster_the_fence_goes_to_the_node_of_the_first_copy(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster) -> None:
    """On a cluster the stalled save is fenced on its own node (ClusterFaultProxy, that
    node's proxy stalling it), then resent; the later delete stays."""
    node = redis_cluster_client.get_node_from_key("fence:f")
    kills_before = _kills(redis_cluster_client.get_redis_connection(node))

    async def run(proxies: ClusterFaultProxy) -> Counter | None:
        host, port = proxies.startup_nodes[0]
        client = AsyncRedisCluster(host=host, port=port, address_remap=proxies.address_remap,
                                   socket_timeout=0.3)
        async with redmodel.AsyncStore(client, resend=POLICY) as store:
            proxy = proxies.proxy_for((node.host, int(node.port)))
            # (fix 32D) the object exists: a save with no ttl is fragile, resent over it alone
            redis_cluster_client.hset("fence:f", "n", "1")
            proxy.stall("HSET", 1.0, when=has("fence:f"))
            await store.save(Counter(n=5, id="f"))
            assert [e.kind for e in proxy.events] == ["stall"]
            assert await store.delete(Counter, "f") is True
            assert proxies.quiet(10)
            await asyncio.sleep(0.1)
            return await store.get(Counter, "f")

    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        assert asyncio.run(run(proxies)) is None
    assert _kills(redis_cluster_client.get_redis_connection(node)) == kills_before + 1
