"""Bulk calls on a cluster, sent to every node of a chunk at once (the sync shell sends and
reads each node's part in a thread of its own, the asyncio shell in gathered tasks), with
one node's reply lost or its connection cut while the other nodes answered: what is
reported written is what the servers hold, and nothing is sent twice that must not be.
Sync and asyncio, through redmodel.testing's ClusterFaultProxy.

Also: AsyncStore and Store store the same bytes for the same objects, and read them back
alike (a property over drawn hats).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

import redmodel
from redmodel._plans._objects import save_key
from redmodel.testing import ClusterFaultProxy, RedisClusterServer, has
from tests.budget import scaled
from tests.faults import cluster_client

PREFIX = "cbulk"
SOCKET_TIMEOUT = 0.5
POLICY = redmodel.ResendPolicy(attempts=3, backoff_base=0.01, backoff_max=0.02, deadline=4.0)
_runs = itertools.count()


@redmodel.model(prefix=PREFIX)
@attrs.define
class Hat:
    color: str
    price: float
    quantity: int = 0
    id: str = redmodel.key_field(generated=False)


@attrs.define
class Env:
    """A store (sync or asyncio) through one fault proxy per primary, and the direct
    cluster client to observe with."""

    store: Any
    direct: RedisCluster
    proxies: ClusterFaultProxy
    loop: asyncio.AbstractEventLoop | None

    def run(self, value: Any) -> Any:
        if self.loop is None:
            return value

        async def wait() -> Any:
            return await value

        return self.loop.run_until_complete(wait())

    def proxy_of(self, key: str) -> Any:
        node = self.direct.get_node_from_key(key)
        return self.proxies.proxy_for((node.host, int(node.port)))

    def node_of(self, key: str) -> str:
        return str(self.direct.get_node_from_key(key).name)

    def calls(self, command: str) -> dict[str, int]:
        """{node: calls of ``command`` since the last reset} (INFO commandstats)."""
        out = {}
        for node in self.direct.get_primaries():
            stats = self.direct.get_redis_connection(node).info("commandstats")
            out[str(node.name)] = int(stats.get(f"cmdstat_{command.lower()}",
                                                {}).get("calls", 0))
        return out

    def reset_stats(self) -> None:
        self.direct.config_resetstat(target_nodes=RedisCluster.PRIMARIES)


@pytest.fixture(params=["sync", "async"])
def env(request: pytest.FixtureRequest, redis_cluster: RedisClusterServer,
        redis_cluster_client: RedisCluster) -> Iterator[Env]:
    proxies = ClusterFaultProxy(redis_cluster.addresses).start()
    host, port = proxies.startup_nodes[0]
    options: dict[str, Any] = dict(host=host, port=port, address_remap=proxies.address_remap,
                                   socket_timeout=SOCKET_TIMEOUT)
    loop = asyncio.new_event_loop() if request.param == "async" else None
    client = cluster_client(options, loop)
    store: Any = (redmodel.AsyncStore(client, resend=POLICY)
                  if loop else redmodel.Store(client, resend=POLICY))
    try:
        yield Env(store, redis_cluster_client, proxies, loop)
    finally:
        if loop is not None:
            loop.run_until_complete(store.aclose())
            loop.close()
        else:
            store.close()
        proxies.stop()


def hats(run: int, n: int) -> list[Hat]:
    return [Hat(color=f"c{i}", price=i + 0.5, quantity=i, id=f"r{run}-{i}") for i in range(n)]


def key(h: Hat) -> str:
    return f"{PREFIX}:{h.id}"


def spread(env: Env, objs: list[Hat]) -> dict[str, list[Hat]]:
    by_node: dict[str, list[Hat]] = {}
    for h in objs:
        by_node.setdefault(env.node_of(key(h)), []).append(h)
    assert len(by_node) >= 2, "the objects should span several nodes"
    return by_node


def test_a_lost_reply_on_one_node_is_sent_again_there_only(env: Env) -> None:
    """save_many (a whole save may be sent again) of one chunk over every node; one node's
    reply is lost: the call succeeds, every object is stored, and the other nodes ran each
    save exactly once (nothing sent twice where a reply came back)."""
    objs = hats(next(_runs), 24)
    by_node = spread(env, objs)
    victim = objs[5]
    env.run(env.store.save_many(objs[:1]))  # the registry and scripts, before counting
    env.reset_stats()
    env.proxy_of(key(victim)).lose_reply(lambda name: name not in ("INFO", "CLIENT"),
                                         when=has(key(victim)))
    assert env.run(env.store.save_many(objs, chunk_size=100)) == len(objs)
    assert env.proxies.events and env.proxies.events[0].kind == "lose_reply"
    got = redmodel.Store(env.direct).get_many(Hat, [h.id for h in objs])
    assert got == objs
    calls = env.calls("hset")
    lost_on = env.node_of(key(victim))
    for node, there in by_node.items():
        if node == lost_on:
            assert len(there) < calls[node] <= 2 * len(there)
        else:
            assert calls[node] == len(there), (node, calls, lost_on)


def test_b_a_lost_reply_to_a_counted_delete_is_never_sent_again(env: Env) -> None:
    """delete_many (a counted delete is never sent again) of three chunks over every node;
    in the second chunk one node's reply is lost: OutcomeUnknownError naming only keys of
    that node's part of the chunk, .written the first chunk, .not_written the third; the
    DELs went to each node once, and the other nodes' objects of the chunk are deleted."""
    objs = hats(next(_runs), 30)
    env.run(env.store.save_many(objs))
    chunks = [objs[0:10], objs[10:20], objs[20:30]]
    spread(env, chunks[1])
    victim = chunks[1][3]
    lost_on = env.node_of(key(victim))
    env.store.chunk_size = 10
    env.reset_stats()
    env.proxy_of(key(victim)).lose_reply("DEL", when=has(key(victim)))
    with pytest.raises(redmodel.OutcomeUnknownError) as caught:
        env.run(env.store.delete_many(Hat, [h.id for h in objs]))
    e = caught.value
    # fix 30V: the other nodes' part of the chunk is written and listed (docs/store.md:
    # "a node that fails leaves the other nodes' part of the chunk written: those keys
    # are in .written"); before, they were in neither list (a known limit)
    # (and those of the failed node's part whose replies came before the fault)
    assert e.written == tuple(key(h) for h in chunks[0]) + tuple(
        key(h) for h in chunks[1] if key(h) not in e.keys)
    assert e.not_written == tuple(key(h) for h in chunks[2])
    assert key(victim) in e.keys
    assert set(e.keys) <= {key(h) for h in chunks[1] if env.node_of(key(h)) == lost_on}
    # lose_reply lets the server run what it was sent: the lost DELs ran, once
    assert [h.id for h in objs if env.direct.exists(key(h))] == [h.id for h in chunks[2]]
    assert sum(env.calls("del").values()) == len(chunks[0]) + len(chunks[1])


def test_c_a_node_cut_off_mid_chunk_while_the_others_answered(env: Env) -> None:
    """save_many of three chunks; in the second, one node's connection is cut after it
    ran the writes and the node stays unreachable (the fence before a resend cannot reach
    it), while the other nodes answered: OutcomeUnknownError naming only keys of that
    node's part of the chunk, .written the first chunk, .not_written the third (never
    sent); the servers hold the first chunk, the other nodes' part of the second, and
    nothing of the third."""
    run = next(_runs)
    objs = hats(run, 30)
    warm = [Hat(color="w", price=0.0, id=f"w{run}-{i}") for i in range(12)]
    spread(env, warm)
    env.run(env.store.save_many(warm))  # a connection to every node, before the fault
    chunks = [objs[0:10], objs[10:20], objs[20:30]]
    spread(env, chunks[1])
    victim = chunks[1][3]
    lost_on = env.node_of(key(victim))
    proxy = env.proxy_of(key(victim))
    proxy.cut_reply(lambda name: name not in ("INFO", "CLIENT"), when=has(key(victim)))
    proxy.refuse_connections(10_000)
    try:
        with pytest.raises(redmodel.OutcomeUnknownError) as caught:
            env.run(env.store.save_many(objs, chunk_size=10))
    finally:
        proxy.clear()
    e = caught.value
    # fix 30V: the other nodes' part of the chunk is written and listed (docs/store.md:
    # "a node that fails leaves the other nodes' part of the chunk written: those keys
    # are in .written"); before, they were in neither list (a known limit)
    # (and those of the failed node's part whose replies came before the fault)
    assert e.written == tuple(key(h) for h in chunks[0]) + tuple(
        key(h) for h in chunks[1] if key(h) not in e.keys)
    assert e.not_written == tuple(key(h) for h in chunks[2])
    assert key(victim) in e.keys
    assert set(e.keys) <= {key(h) for h in chunks[1] if env.node_of(key(h)) == lost_on}
    held = {h.id for h in objs if env.direct.exists(key(h))}
    others = {h.id for h in chunks[1] if env.node_of(key(h)) != lost_on}
    assert {h.id for h in chunks[0]} | others <= held
    assert not held & {h.id for h in chunks[2]}


# ---- AsyncStore and Store store the same bytes ---------------------------------------------

ids = st.text(alphabet=st.sampled_from("ab:{}*%\\ é\U0001f600"), min_size=1, max_size=8)
drawn_hats = st.lists(
    st.builds(Hat, color=st.text(max_size=30), price=st.floats(width=64),
              quantity=st.integers(min_value=-(2**70), max_value=2**70), id=ids),
    max_size=40, unique_by=lambda h: h.id)


def _held(client: redis.Redis, keys: list[str]) -> dict[str, Any]:
    return {k: (client.type(k), client.hgetall(k), client.pttl(k)) for k in keys}


@pytest.fixture(params=["one server", "cluster"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any, Any]]:
    """(a sync client to observe with, a factory of an asyncio client, its kind)."""
    if request.param == "one server":
        url = request.getfixturevalue("redis_url")
        yield request.getfixturevalue("redis_client"), lambda: aredis.Redis.from_url(url)
        return
    cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
    host, port = cluster.addresses[0]
    yield (request.getfixturevalue("redis_cluster_client"),
           lambda: AsyncRedisCluster(host=host, port=port))


@settings(max_examples=scaled(30, floor=8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objs=drawn_hats, chunk=st.integers(min_value=1, max_value=17))
def test_async_and_sync_bulk_calls_store_the_same_bytes(
        pair: tuple[Any, Any], objs: list[Hat], chunk: int) -> None:
    """save_many through AsyncStore leaves byte for byte what Store's leaves (values, type,
    expiry), whatever the chunk size, on one server and on a cluster (where a chunk goes
    to several nodes at once); get_many reads them back alike through both."""
    client, async_client = pair
    sync = redmodel.Store(client, chunk_size=chunk)
    keys = [save_key(h) for h in objs]
    loop = asyncio.new_event_loop()
    astore = redmodel.AsyncStore(async_client(), chunk_size=chunk)

    def wipe() -> None:
        for k in keys:
            client.delete(k)

    try:
        assert sync.save_many(objs) == len(objs)
        by_sync = _held(client, keys)
        back_sync = sync.get_many(Hat, [h.id for h in objs])
        wipe()
        assert loop.run_until_complete(astore.save_many(objs)) == len(objs)
        assert _held(client, keys) == by_sync
        back_async = loop.run_until_complete(astore.get_many(Hat, [h.id for h in objs]))
        assert repr(back_async) == repr(back_sync) == repr(objs)
    finally:
        wipe()
        loop.run_until_complete(astore.aclose())
        loop.close()


# ---- replies taken from the buffer (AsyncStore) behave as those read through redis-py ------


def test_bulk_replies_across_many_socket_reads_and_an_error_reply_among_them(
        any_store: Any) -> None:
    """get_many of hats whose replies span many socket reads (some whole in the buffer,
    some not) reads them all back; a wrong-typed key among them raises ServerError naming
    it, and the connection it came on serves the next call. Every shell (the asyncio ones
    take buffered replies from the hiredis reader)."""
    run = next(_runs)
    objs = [Hat(color=f"{i}" * 3000, price=i / 3, quantity=i, id=f"big{run}-{i}")
            for i in range(120)]
    assert any_store.save_many(objs, chunk_size=50) == len(objs)
    assert any_store.get_many(Hat, [h.id for h in objs]) == objs
    bad = f"{PREFIX}:big{run}-bad"
    any_store.client.set(bad, "not a hash")
    ids = [h.id for h in objs[:60]] + [f"big{run}-bad"] + [h.id for h in objs[60:]]
    with pytest.raises(redmodel.ServerError) as caught:
        any_store.get_many(Hat, ids)
    assert bad in str(caught.value) and "WRONGTYPE" in str(caught.value)
    assert any_store.get_many(Hat, [h.id for h in objs]) == objs
    any_store.client.delete(bad, *(key(h) for h in objs))


def test_a_forked_child_sends_to_every_node_with_its_own_threads(
        redis_cluster: RedisClusterServer) -> None:
    """A cluster Store whose bulk calls started the sending threads, then fork: the child's
    save_many reaches every node (the parent's threads do not exist in the child; a task
    given to their pool would wait forever)."""
    host, port = redis_cluster.addresses[0]
    store = redmodel.Store(RedisCluster(host=host, port=port))
    objs = hats(next(_runs), 12)
    assert store.save_many(objs[:6]) == 6  # the parent's threads are running now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            child = redmodel.Store(RedisCluster(host=host, port=port))
            code = 0 if child.save_many(objs[6:]) == 6 else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child's save_many did not return within 20 s")
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_many(Hat, [h.id for h in objs]) == objs
    store.close()
