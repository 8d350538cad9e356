"""At-least-once consumption (``Queue.consume``): items move into a per-consumer in-flight
list and are acknowledged when done; a consumer killed mid-item, or whose reply is lost,
loses nothing; a dead consumer's items come back after its visibility timeout, or when it
restarts under the same name. On one server, on a cluster, and from an AsyncStore."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.cluster
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

import redmodel
from redmodel import DecodeError, TransactionError, ValidationError
from redmodel._models._keys import slot_prefix
from redmodel.containers import Queue
from redmodel.containers._consumer import ConsumerKeys
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy; its value. Fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def all_keys(client: Any) -> set[str]:
    """Every key but the container registry's records and the marks it leaves in the
    model registry of a key's prefixes (`jobs:%schema` for `jobs:eu`: they stay by design,
    tests/test_registry_guards.py tests them)."""
    if hasattr(client, "get_primaries"):
        found = client.keys("*", target_nodes=client.PRIMARIES)
    else:
        found = client.keys("*")
    return {k.decode() for k in found if not k.endswith((b":%container", b":%schema"))}


def leave_behind_a_dead_consumer(client: Any, queue: str, name: str, items: list[bytes],
                                 overdue: bool = True) -> None:
    """What a consumer killed mid-item leaves: its items in its in-flight list and its
    registration, with a deadline in the past (or an hour ahead)."""
    keys = ConsumerKeys.of(queue)
    client.rpush(keys.in_flight(name), *items)
    now_ms = int(time.time() * 1000)
    client.zadd(keys.consumers, {name: now_ms - 60_000 if overdue else now_ms + 3_600_000})


# ---- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "prefix"), [
    ("jobs", "jobs:{jobs}"),
    ("jobs:eu", "jobs:eu:{jobs:eu}"),
    ("jobs:{7}", "jobs:{7}"),
    ("a{b}c{d}", "a{b}c{d}"),
])
def test_bookkeeping_keys_share_the_queue_slot_readably(key: str, prefix: str) -> None:
    assert slot_prefix(key) == prefix
    keys = ConsumerKeys.of(key)
    assert keys.in_flight("w:1") == f"{prefix}:%inflight:w%3A1"
    assert keys.consumers == f"{prefix}:%consumers"


@given(st.text(alphabet=st.sampled_from("ab{}:%*x"), max_size=12)
       | st.text(max_size=12), st.text(max_size=8))
def test_bookkeeping_keys_are_in_the_queue_slot_whatever_its_braces(key: str, name: str
                                                                     ) -> None:
    keys = ConsumerKeys.of(key)
    slot = key_slot(key.encode())
    for derived in (keys.consumers, keys.redelivered, keys.rejected, keys.in_flight(name)):
        assert key_slot(derived.encode()) == slot, derived


# ---- ack, take back, recover (every shell: sync, async, cluster, async cluster) -----------


def test_each_item_is_in_flight_while_handled_and_acknowledged_after(any_store: Any) -> None:
    q = Queue(any_store, "jobs", int)
    q.push(1, 2, 3)
    consumer = q.consume(name="w1", idle_timeout=0.3, poll=0.1)
    seen = []
    for item in consumer:
        assert q.in_flight() == {"w1": [item]}  # moved, not popped
        assert item not in q.range()
        seen.append((item, consumer.delivery_count, consumer.redelivered))
    assert seen == [(1, 1, False), (2, 1, False), (3, 1, False)]
    assert consumer.stopped_by == "idle"
    assert q.in_flight() == {}
    assert all_keys(any_store.client) == set(), "nothing left: no queue, no bookkeeping"


def test_bookkeeping_keys_share_the_queue_hash_slot_on_a_cluster(any_store: Any) -> None:
    q = Queue(any_store, ("jobs", "eu"), str)
    q.push("a", "b")
    consumer = q.consume(name="w1", poll=0.1)
    for _ in consumer:
        keys = all_keys(any_store.client)
        assert {key_slot(k.encode()) for k in keys} == {key_slot(b"jobs:eu")}, keys
        assert "jobs:eu:{jobs:eu}:%inflight:w1" in keys
        assert "jobs:eu:{jobs:eu}:%consumers" in keys
        consumer.stop()


def test_break_returns_the_unacknowledged_item_to_the_head(any_store: Any) -> None:
    q = Queue(any_store, "jobs", str)
    q.push("a", "b", "c")
    for item in q.consume(name="w1", poll=0.1):
        assert item == "a"
        break
    assert q.range() == ["a", "b", "c"]
    assert q.in_flight() == {}
    consumer = q.consume(name="w2", poll=0.1, max_items=1)
    assert [(i, consumer.delivery_count) for i in consumer] == [("a", 2)]


def test_ack_before_break_keeps_the_item_handled(any_store: Any) -> None:
    q = Queue(any_store, "jobs", str)
    q.push("a", "b")
    consumer = q.consume(name="w1", poll=0.1)
    for _ in consumer:
        assert consumer.ack() is True
        assert consumer.ack() is False  # nothing left to acknowledge
        break
    assert q.range() == ["b"]


def test_an_exception_in_the_loop_returns_the_item(store: redmodel.Store) -> None:
    q = Queue(store, "jobs", int)
    q.push(1, 2)
    with pytest.raises(ZeroDivisionError):
        for item in q.consume(name="w1", poll=0.1):
            _ = item / 0
    assert q.range() == [1, 2]
    assert store.client.hgetall("jobs:{jobs}:%redelivered") == {b"1": b"1:1"}


def test_a_restart_under_the_same_name_takes_back_its_items_first(any_store: Any) -> None:
    q = Queue(any_store, "jobs", int)
    q.push(3, 4)
    leave_behind_a_dead_consumer(any_store.client, "jobs", "w1", [b"1", b"2"], overdue=False)
    consumer = q.consume(name="w1", idle_timeout=0.3, poll=0.1)
    got = [(i, consumer.delivery_count) for i in consumer]
    assert got == [(1, 2), (2, 2), (3, 1), (4, 1)]
    assert q.in_flight() == {} and q.length() == 0


def test_another_consumer_returns_a_dead_consumers_items_and_gets_them(any_store: Any) -> None:
    q = Queue(any_store, "jobs", int)
    q.push(3)
    leave_behind_a_dead_consumer(any_store.client, "jobs", "dead", [b"1", b"2"])
    consumer = q.consume(name="alive", idle_timeout=0.5, poll=0.1)
    got = [(i, consumer.delivery_count) for i in consumer]
    # its first call finds "dead" overdue and returns 1, 2 to the head, ahead of 3
    assert got == [(1, 2), (2, 2), (3, 1)]
    assert q.in_flight() == {}
    assert all_keys(any_store.client) == set()


def test_recover_returns_only_overdue_consumers_items_in_order(any_store: Any) -> None:
    q = Queue(any_store, "jobs", int)
    q.push(9)
    leave_behind_a_dead_consumer(any_store.client, "jobs", "dead", [b"1", b"2"])
    leave_behind_a_dead_consumer(any_store.client, "jobs", "busy", [b"5"], overdue=False)
    assert q.recover() == 2
    assert q.range() == [1, 2, 9]
    assert q.in_flight() == {"busy": [5]}
    assert q.recover() == 0


def test_recover_handles_more_stale_consumers_than_one_call_takes(store: redmodel.Store
                                                                  ) -> None:
    q = Queue(store, "jobs", int)
    for n in range(25):
        leave_behind_a_dead_consumer(store.client, "jobs", f"dead-{n}", [str(n).encode()])
    assert q.recover() == 25
    assert sorted(q.range()) == list(range(25))
    assert q.in_flight() == {}


def test_delivery_count_grows_with_each_death(store: redmodel.Store) -> None:
    q = Queue(store, "jobs", str)
    q.push("poison")
    keys = ConsumerKeys.of("jobs")
    counts = []
    for attempt in range(3):
        consumer = q.consume(name=f"w{attempt}", poll=0.1)
        for _ in consumer:
            counts.append(consumer.delivery_count)
            # die: the item stays in flight and the deadline passes
            store.client.zadd(keys.consumers, {consumer.name: 0})
            consumer.reliable = False  # leave nothing behind, as a killed process would
            break
        assert q.recover() == 1
    consumer = q.consume(name="last", max_items=1, poll=0.1)
    counts += [consumer.delivery_count for _ in consumer]
    assert counts == [1, 2, 3, 4]
    assert store.client.exists(keys.redelivered) == 0, "acknowledged: the count is gone"


def test_equal_values_share_a_delivery_count_until_acknowledged(store: redmodel.Store) -> None:
    """Counts are kept per value: a copy equal to a redelivered one counts as redelivered
    while that one is unacknowledged (never the reverse); one consumer at a time, exact."""
    q = Queue(store, "ips", str)
    leave_behind_a_dead_consumer(store.client, "ips", "dead", [b"10.0.0.1"])
    q.push("10.0.0.1", "10.0.0.2")
    q.recover()
    assert q.range() == ["10.0.0.1", "10.0.0.1", "10.0.0.2"]
    consumer = q.consume(name="w", idle_timeout=0.3, poll=0.1)
    got = [(i, consumer.delivery_count) for i in consumer]
    assert got == [("10.0.0.1", 2), ("10.0.0.1", 1), ("10.0.0.2", 1)]
    assert store.client.exists("ips:{ips}:%redelivered") == 0

    leave_behind_a_dead_consumer(store.client, "ips", "dead", [b"10.0.0.1"])
    q.push("10.0.0.1")
    q.recover()
    first, second = q.consume(name="a", poll=0.1), q.consume(name="b", poll=0.1)
    a, b = iter(first), iter(second)
    assert (next(a), first.delivery_count) == ("10.0.0.1", 2)  # the returned copy
    assert (next(b), second.delivery_count) == ("10.0.0.1", 2)  # fresh, but shares it
    first.stop()
    second.stop()
    assert list(a) == list(b) == []
    assert store.client.exists("ips:{ips}:%redelivered") == 0


def test_sentinel_is_acknowledged_and_not_yielded(store: redmodel.Store) -> None:
    q = Queue(store, "jobs", str)
    q.push("a", "STOP", "b")
    consumer = q.consume(sentinel="STOP", poll=0.1)
    assert list(consumer) == ["a"]
    assert consumer.stopped_by == "sentinel"
    assert q.range() == ["b"] and q.in_flight() == {}


def test_an_undecodable_item_is_set_aside_not_redelivered(store: redmodel.Store) -> None:
    q = Queue(store, "jobs", int)
    store.client.rpush("jobs", b"1", b"secret-garbage", b"3")
    got = []
    with pytest.raises(DecodeError) as info:
        for item in q.consume(name="w", idle_timeout=0.3, poll=0.1):
            got.append(item)
    assert "secret-garbage" not in str(info.value)
    assert "jobs:{jobs}:%rejected" in str(info.value) and info.value.key == "jobs"
    assert store.client.lrange("jobs:{jobs}:%rejected", 0, -1) == [b"secret-garbage"]
    got += list(q.consume(name="w", idle_timeout=0.3, poll=0.1))
    assert got == [1, 3]


@pytest.mark.parametrize("how", ["pop", "pop_right", "pop_blocking",
                                 "redmodel.containers.pop_blocking", "consume(reliable=False)"])
def test_an_undecodable_value_an_at_most_once_pop_takes_is_set_aside(any_store: Any, how: str
                                                                      ) -> None:
    q = Queue(any_store, ("jobs", "eu"), int)
    any_store.client.rpush("jobs:eu", b"secret-garbage")
    with pytest.raises(DecodeError) as info:
        if how == "redmodel.containers.pop_blocking":
            redmodel.containers.pop_blocking(q, timeout=1)
        elif how == "pop_blocking":
            q.pop_blocking(1)
        elif how == "consume(reliable=False)":
            list(q.consume(reliable=False, idle_timeout=1, poll=0.1))
        else:
            getattr(q, how)()
    rejected = "jobs:eu:{jobs:eu}:%rejected"
    assert "secret-garbage" not in str(info.value)
    assert rejected in str(info.value) and info.value.key == "jobs:eu"
    assert any_store.client.lrange(rejected, 0, -1) == [b"secret-garbage"]
    assert all_keys(any_store.client) == {rejected}


def test_an_undecodable_value_popped_in_a_transaction_is_reported_lost(store: redmodel.Store
                                                                       ) -> None:
    """A transaction sends nothing after EXEC, so its pop cannot set the value aside: the
    DecodeError says the value is lost (documented), and nothing else is touched."""
    q = Queue(store, "jobs", int)
    store.client.rpush("jobs", b"secret-garbage", b"2")

    @redmodel.transaction(store)
    def take(tx: Any) -> Any:
        return q.in_tx(tx).pop()

    with pytest.raises(DecodeError, match="is lost") as info:
        take()
    assert "secret-garbage" not in str(info.value)
    assert all_keys(store.client) == {"jobs"} and q.range() == [2]


def test_at_most_once_consumer_keeps_no_bookkeeping(store: redmodel.Store) -> None:
    q = Queue(store, "jobs", int)
    q.push(1, 2)
    for item in q.consume(reliable=False, poll=0.1):
        assert item == 1
        assert all_keys(store.client) == {"jobs"}
        break
    assert q.range() == [2], "at most once: the item left the queue when it was popped"


def test_consumer_arguments_are_validated(store: redmodel.Store) -> None:
    q = Queue(store, "jobs", int)
    for bad in (0, -1, True, "5"):
        with pytest.raises(ValidationError, match="visibility_timeout"):
            q.consume(visibility_timeout=bad)
    for name in ("", 5):
        with pytest.raises(ValidationError, match="consumer name"):
            q.consume(name=name)  # type: ignore[arg-type]

    @redmodel.transaction(store)
    def inside(tx: Any) -> None:
        q.consume()

    with pytest.raises(TransactionError):
        inside()


# ---- a consumer killed with SIGKILL mid-item ----------------------------------------------

_WORKER = textwrap.dedent("""
    import sys, time
    import redmodel
    store = redmodel.Store.from_url(sys.argv[1])
    queue = redmodel.containers.Queue(store, "jobs", int)
    consumer = queue.consume(name=sys.argv[2], visibility_timeout=float(sys.argv[3]),
                             poll=0.1)
    for job in consumer:
        print("got", job, consumer.delivery_count, flush=True)
        time.sleep(3600)  # mid-item: killed here
""")


def _worker(url: str, name: str, timeout: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _WORKER, url, name, str(timeout)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def _first_line(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    return proc.stdout.readline().split()


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()


def test_a_consumer_killed_mid_item_loses_nothing(redis_url: str, redis_client: Any) -> None:
    store = redmodel.Store(redis_client)
    q = Queue(store, "jobs", int)
    q.push(*range(1, 6))
    victim = _worker(redis_url, "victim", 1.0)
    try:
        assert _first_line(victim) == ["got", "1", "1"]
    finally:
        _kill(victim)
    killed_at = time.monotonic()
    assert q.in_flight() == {"victim": [1]}
    survivor = q.consume(name="survivor", visibility_timeout=1.0, poll=0.1, max_items=5)
    handled = {}
    for job in survivor:
        handled[job] = (survivor.delivery_count, time.monotonic() - killed_at)
    assert sorted(handled) == [1, 2, 3, 4, 5], "nothing lost"
    count, after = handled[1]
    assert count == 2, "the one duplicate is flagged"
    assert after > 0.5, "it came back only once the victim's heartbeat was too old"
    assert all(handled[j][0] == 1 for j in (2, 3, 4, 5))
    assert all_keys(redis_client) == set()


def test_a_killed_consumer_restarted_under_its_name_takes_its_item_back_at_once(
    redis_url: str, redis_client: Any
) -> None:
    q = Queue(redmodel.Store(redis_client), "jobs", int)
    q.push(7, 8)
    first = _worker(redis_url, "worker-1", 30.0)
    try:
        assert _first_line(first) == ["got", "7", "1"]
    finally:
        _kill(first)
    started = time.monotonic()
    again = _worker(redis_url, "worker-1", 30.0)
    try:
        assert _first_line(again) == ["got", "7", "2"]  # its own item first, counted
        assert time.monotonic() - started < 15, "without waiting for the visibility timeout"
    finally:
        _kill(again)
    assert q.range() == [8]


# ---- lost replies (FaultProxy) -------------------------------------------------------------


def _store_through(p: FaultProxy) -> redmodel.Store:
    return redmodel.Store.from_url(p.url)  # from_url: redis-py retries nothing


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply"])
def test_a_lost_blmove_reply_loses_nothing(proxy: FaultProxy, redis_client: Any,
                                           fault: str) -> None:
    q = Queue(_store_through(proxy), "jobs", str)
    getattr(proxy, fault)("BLMOVE")
    threading.Timer(0.3, redis_client.rpush, ("jobs", "x")).start()  # while it waits
    consumer = q.consume(name="w", poll=2, max_items=1)
    got = [(item, consumer.delivery_count) for item in consumer]
    # the wait is a peek that moves nothing: its lost reply leaves "x" in the queue, and
    # the consumer takes it (a first delivery) after reconnecting
    assert got == [("x", 1)]
    assert [e.kind for e in proxy.events] == [fault]
    assert all_keys(redis_client) == set()


def test_a_lost_take_reply_loses_nothing(proxy: FaultProxy, redis_client: Any) -> None:
    q = Queue(_store_through(proxy), "jobs", str)
    list(q.consume(name="w", idle_timeout=0.2, poll=0.1))  # the scripts are now loaded
    q.push("a", "b")
    scripts = iter(range(100))
    # the second script call of the next run: its take back comes first, then the take
    proxy.lose_reply(lambda name: name == "EVALSHA" and next(scripts) == 1)
    consumer = q.consume(name="w", idle_timeout=0.5, poll=0.1)
    got = [(i, consumer.delivery_count) for i in consumer]
    # "a" moved into the in-flight list, the reply was lost: taken back, counted
    assert got == [("a", 2), ("b", 1)]
    assert [e.kind for e in proxy.events] == ["lose_reply"]
    assert all_keys(redis_client) == set()


def test_a_lost_blmove_reply_on_a_cluster_loses_nothing(redis_cluster: RedisClusterServer,
                                                        redis_cluster_client: Any) -> None:
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        host, port = proxies.startup_nodes[0]
        client = redis.cluster.RedisCluster(host=host, port=port,
                                            address_remap=proxies.address_remap)
        try:
            q = Queue(redmodel.Store(client), ("jobs", "eu"), str)
            proxies.lose_reply("BLMOVE")
            threading.Timer(0.3, redis_cluster_client.rpush, ("jobs:eu", "x")).start()
            consumer = q.consume(name="w", poll=2, max_items=1)
            got = [(item, consumer.delivery_count) for item in consumer]
        finally:
            client.close()
        assert got == [("x", 1)]  # the lost peek moved nothing
        assert [e.kind for e in proxies.events] == ["lose_reply"]
    assert all_keys(redis_cluster_client) == set()


def test_a_late_wait_strands_nothing_on_a_cluster(redis_cluster: RedisClusterServer,
                                                  redis_cluster_client: Any) -> None:
    """A consumer's wait on the empty queue reaches the server late, after the consumer
    was taken for dead and unregistered, and after an item arrived: the wait moves
    nothing (the item stays in the queue, where anyone can take it), and the consumer's
    next take, finding itself unregistered, registers again before it takes."""
    keys = ConsumerKeys.of("jobs:eu")
    plain = Queue(redmodel.Store(redis_cluster_client), ("jobs", "eu"), str)
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        host, port = proxies.startup_nodes[0]
        client = redis.cluster.RedisCluster(host=host, port=port,
                                            address_remap=proxies.address_remap)
        try:
            q = Queue(redmodel.Store(client), ("jobs", "eu"), str)
            consumer = q.consume(name="w", poll=0.3, max_items=1, visibility_timeout=30,
                                 signals=())
            got: list[tuple[str, int]] = []
            worker = threading.Thread(
                target=lambda: got.extend((i, consumer.delivery_count) for i in consumer))
            worker.start()
            wait_until(lambda: redis_cluster_client.zcard(keys.consumers), what="register")
            proxies.stall("BLMOVE", 0.8)  # its next wait is slow on the wire
            wait_until(lambda: proxies.events, what="the stall")
            proxies.clear()
            proxies.stall("EVALSHA", 1.0)  # and so is the take after it
            redis_cluster_client.zadd(keys.consumers, {"w": 0})  # taken for dead
            assert plain.recover() == 0 and plain.in_flight() == {}
            plain.push("x")
            wait_until(lambda: len(proxies.events) == 2, what="the late wait to run")
            assert plain.range() == ["x"], "the late wait moved nothing"
            assert plain.in_flight() == {}
            worker.join(timeout=10)
            assert not worker.is_alive()
        finally:
            client.close()
    assert got == [("x", 1)]
    assert all_keys(redis_cluster_client) == set()


def test_pop_blocking_is_at_most_once_and_never_resent(proxy: FaultProxy, redis_client: Any
                                                         ) -> None:
    """Even through a client that retries ten times, a blocking pop is sent once: its
    lost reply loses that one item (documented) and says so (OutcomeUnknownError naming
    the queue, not the plain "nothing applied" ConnectionError), never a second one."""
    retrying = redis.Redis(host=proxy.host, port=proxy.port,
                           retry=Retry(NoBackoff(), 10), socket_timeout=5)
    q = Queue(redmodel.Store(retrying), "jobs", str)
    q.push("a", "b")
    proxy.lose_reply("BLPOP")
    with pytest.raises(redmodel.OutcomeUnknownError) as caught:
        q.pop_blocking(1)
    assert caught.value.keys == ("jobs",)
    assert redis_client.lrange("jobs", 0, -1) == [b"b"]


# ---- asyncio ------------------------------------------------------------------------------


async def _consume_all(q: Queue[Any], **kwargs: Any) -> list[tuple[Any, int]]:
    consumer: Any = q.consume(**kwargs)
    assert isinstance(consumer, redmodel.containers.AsyncConsumer)
    async with consumer:
        return [(item, consumer.delivery_count) async for item in consumer]


def test_async_consumer_takes_back_acknowledges_and_recovers(redis_url: str,
                                                            redis_client: Any) -> None:
    async def main() -> None:
        store = redmodel.AsyncStore.from_url(redis_url)
        q = Queue(store, "jobs", int)
        await q.push(3)  # type: ignore[misc]
        leave_behind_a_dead_consumer(redis_client, "jobs", "dead", [b"1"])
        leave_behind_a_dead_consumer(redis_client, "jobs", "w", [b"0"], overdue=False)
        got = await _consume_all(q, name="w", idle_timeout=0.3, poll=0.1)
        assert got == [(0, 2), (1, 2), (3, 1)]  # its own first, then the recovered
        await q.push(5, 6)  # type: ignore[misc]
        consumer: Any = q.consume(name="w", poll=0.1)
        async with consumer:
            async for item in consumer:
                assert item == 5
                break
        assert await q.range() == [5, 6]  # type: ignore[misc]
        await store.aclose()

    asyncio.run(main())
    # 5 went back to the queue: its redelivery is marked
    assert redis_client.keys("jobs:{jobs}:%re*") == [b"jobs:{jobs}:%redelivered"]
    assert redis_client.hgetall("jobs:{jobs}:%redelivered") == {b"5": b"1:1"}


def test_an_abandoned_async_consumer_returns_its_item_without_a_garbage_collection(
    redis_url: str, redis_client: Any
) -> None:
    """``async for ...: break`` without ``async with``: nothing keeps the loop alive (the
    consumer holds it, and its heartbeat task holds the consumer, by weak references), so
    on CPython it is finalised as soon as ``async for`` drops it, with the cyclic garbage
    collector off: the item is back long before the visibility timeout, and the heartbeat
    task has ended."""

    def heartbeats() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if "_heartbeats" in repr(t.get_coro())]

    async def main() -> tuple[list[int], list[asyncio.Task[Any]]]:
        store = redmodel.AsyncStore.from_url(redis_url)
        q = Queue(store, "jobs", int)
        await q.push(1, 2)  # type: ignore[misc]
        async for _ in q.consume(name="w", visibility_timeout=30, poll=0.1):
            assert len(heartbeats()) == 1
            break
        for _ in range(50):
            await asyncio.sleep(0.02)
            if await q.range() == [1, 2]:  # type: ignore[misc]
                break
        found = await q.range(), heartbeats()  # type: ignore[misc]
        await store.aclose()
        return found

    gc.disable()
    try:
        queue, beating = asyncio.run(main())
    finally:
        gc.enable()
    assert queue == [1, 2] and beating == []
    assert redis_client.zcard("jobs:{jobs}:%consumers") == 0, "it unregistered"


def test_cancelling_an_async_consumer_returns_its_item(redis_url: str, redis_client: Any
                                                       ) -> None:
    async def main() -> list[int]:
        store = redmodel.AsyncStore.from_url(redis_url)
        q = Queue(store, "jobs", int)
        await q.push(1, 2)  # type: ignore[misc]
        handling = asyncio.Event()

        async def worker() -> None:
            async with q.consume(name="w", poll=0.1) as consumer:  # type: ignore[attr-defined]
                async for _ in consumer:
                    handling.set()
                    await asyncio.sleep(3600)

        task = asyncio.create_task(worker())
        await handling.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        found = await q.range()  # type: ignore[misc]
        await store.aclose()
        return found  # type: ignore[no-any-return]

    assert asyncio.run(main()) == [1, 2]
    assert redis_client.hgetall("jobs:{jobs}:%redelivered") == {b"1": b"1:1"}


def test_async_at_most_once_pops_set_undecodable_values_aside(redis_url: str,
                                                             redis_client: Any) -> None:
    async def main() -> None:
        store = redmodel.AsyncStore.from_url(redis_url)
        q = Queue(store, "jobs", int)
        for n in range(4):
            redis_client.rpush("jobs", f"garbage-{n}".encode())
        with pytest.raises(DecodeError, match="rejected"):
            await q.pop_blocking(1)  # type: ignore[misc]
        with pytest.raises(DecodeError, match="rejected"):
            await redmodel.containers.pop_blocking(q, timeout=1)  # type: ignore[misc]
        with pytest.raises(DecodeError, match="rejected"):
            await q.pop_right()  # type: ignore[misc]
        with pytest.raises(DecodeError, match="rejected"):
            async for _ in q.consume(reliable=False, poll=0.1):  # type: ignore[attr-defined]
                pass
        await store.aclose()

    asyncio.run(main())
    assert redis_client.lrange("jobs:{jobs}:%rejected", 0, -1) == [
        b"garbage-0", b"garbage-1", b"garbage-3", b"garbage-2"]
    assert all_keys(redis_client) == {"jobs:{jobs}:%rejected"}


def test_async_consumer_waits_without_blocking_the_loop(redis_url: str,
                                                       redis_client: Any) -> None:
    async def main() -> None:
        store = redmodel.AsyncStore.from_url(redis_url)
        q = Queue(store, "jobs", str)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        async def push_later() -> None:
            await asyncio.sleep(0.3)
            await q.push("late")  # type: ignore[misc]

        tick, push = asyncio.create_task(ticker()), asyncio.create_task(push_later())
        got = await _consume_all(q, name="w", max_items=1, poll=1.0)
        tick.cancel()
        await push
        assert got == [("late", 1)]
        assert ticks >= 5, "other tasks ran while the consumer waited in BLMOVE"
        await store.aclose()

    asyncio.run(main())


def test_async_consumer_on_a_cluster(redis_cluster: RedisClusterServer,
                                     redis_cluster_client: Any) -> None:
    async def main() -> None:
        host, port = redis_cluster.addresses[0]
        store = redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port))
        q = Queue(store, ("jobs", "eu"), int)
        await q.push(2, 3)  # type: ignore[misc]
        leave_behind_a_dead_consumer(redis_cluster_client, "jobs:eu", "dead", [b"1"])
        got = await _consume_all(q, name="w", idle_timeout=0.3, poll=0.1)
        assert sorted(got) == [(1, 2), (2, 1), (3, 1)]
        await store.aclose()

    asyncio.run(main())
    assert all_keys(redis_cluster_client) == set()


def test_async_lost_blmove_reply_loses_nothing(proxy: FaultProxy, redis_client: Any) -> None:
    async def main() -> None:
        store = redmodel.AsyncStore.from_url(proxy.url)
        q = Queue(store, "jobs", str)
        proxy.lose_reply("BLMOVE")

        async def push_later() -> None:
            await asyncio.sleep(0.2)
            redis_client.rpush("jobs", "x")

        push = asyncio.create_task(push_later())
        got = await _consume_all(q, name="w", max_items=1, poll=2)
        await push
        assert got == [("x", 1)]  # the lost peek moved nothing: a first delivery
        await store.aclose()

    asyncio.run(main())
    assert [e.kind for e in proxy.events] == ["lose_reply"]
    assert all_keys(redis_client) == set()


# ---- blocking pops on every shell; errors when the server dies ----------------------------


def test_blocking_pops_on_every_shell(any_store: Any) -> None:
    q = Queue(any_store, ("jobs", "eu"), str)
    pusher = Queue(redmodel.Store(any_store.client), ("jobs", "eu"), str)
    threading.Timer(0.2, pusher.push, ("late",)).start()
    assert q.pop_blocking(3) == "late"
    assert q.pop_blocking(0.1) is None


def test_blocking_pop_across_slots_is_refused_on_a_cluster(redis_cluster_client: Any) -> None:
    store = redmodel.Store(redis_cluster_client)
    a, b = Queue(store, "a", str), Queue(store, "b", str)
    assert key_slot(b"a") != key_slot(b"b")
    with pytest.raises(redmodel.CrossSlotError, match="hash slots"):
        redmodel.containers.pop_blocking(a, b, timeout=0.1)


def test_async_pop_blocking_on_a_cluster(redis_cluster: RedisClusterServer,
                                         redis_cluster_client: Any) -> None:
    async def main() -> Any:
        host, port = redis_cluster.addresses[0]
        store = redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port))
        q = Queue(store, "jobs", str)
        asyncio.get_running_loop().call_later(0.2, redis_cluster_client.rpush, "jobs", "x")
        found = await q.pop_blocking(3)  # type: ignore[misc]
        await store.aclose()
        return found

    assert asyncio.run(main()) == "x"


def test_a_dead_server_ends_the_consumer_with_a_redis_error() -> None:
    with RedisServer() as server:
        store = redmodel.Store.from_url(server.url)
        q = Queue(store, "jobs", int)
        q.push(1)
        consumer = q.consume(name="w", visibility_timeout=0.6, poll=0.2)
        started = time.monotonic()
        with pytest.raises(redis.RedisError) as info:
            for _ in consumer:
                server.kill()  # mid-item; the next take finds no server
        assert isinstance(info.value, (redis.ConnectionError, redis.TimeoutError))
        assert time.monotonic() - started < 10, "it gives up after its visibility timeout"
        store.close()


# ---- a wait whose slot is migrating follows ASK ----------------------------------------


def _blocked_in_blpop(client: Any, floor: int) -> bool:
    """Whether a connection of this node opened after ``floor`` (a ``CLIENT ID``: ids grow)
    waits (flag ``b``) in a BLPOP: this test's pop, not one another test left waiting on
    the session's cluster."""
    return any(info.get("cmd") == "blpop" and "b" in info.get("flags", "")
               and int(info["id"]) > floor for info in client.client_list())


@pytest.mark.parametrize("move", ["ASK", "MOVED"])
@pytest.mark.parametrize("shell", ["sync", "asyncio"])
def test_a_blocking_pop_follows_its_slot_to_another_node(
        redis_cluster: RedisClusterServer, redis_cluster_client: Any, shell: str,
        move: str) -> None:
    """``ASK``: the queue's slot is MIGRATING from its owner and IMPORTING on another node
    and the queue is empty, so the owner answers a BLPOP with ``-ASK`` (nothing ran): the
    pop sends ``ASKING`` + ``BLPOP`` to the importing node and waits there. ``MOVED``: the
    pop waits on the owner, and the slot is then given to another node, which unblocks it
    with ``-MOVED`` (nothing ran): it refreshes the slot map and waits on the new owner.
    Either way the migration ends and the value pushed to the new owner is the one it
    returns. (A ServerError, or a wait on the old owner, would never see the value.)"""
    key = f"mig-{shell}-{move}"
    slot = redis_cluster_client.keyslot(key)
    clients = {n.port: n.client() for n in redis_cluster.nodes}
    ids = {port: c.execute_command("CLUSTER MYID").decode() for port, c in clients.items()}
    floors = {port: int(c.client_id()) for port, c in clients.items()}
    source = int(redis_cluster_client.get_node_from_key(key).port)
    target = next(port for port in clients if port != source)

    def assign(owner: int) -> None:
        for c in clients.values():
            c.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[owner])

    got: list[Any] = []
    if move == "ASK":
        clients[target].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
        clients[source].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
    try:
        if shell == "sync":
            # no registry record: it would hold the slot, which then could not move
            store = redmodel.Store(redis_cluster.client(), registry=False)
            worker = threading.Thread(
                target=lambda: got.append(Queue(store, key, int).pop_blocking(8)))
        else:
            async def pop() -> Any:
                host, port = redis_cluster.addresses[0]
                astore = redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port),
                                             registry=False)
                try:
                    return await Queue(astore, key, int).pop_blocking(8)  # type: ignore[misc]
                finally:
                    await astore.aclose()

            worker = threading.Thread(target=lambda: got.append(asyncio.run(pop())))
        worker.start()
        waits_on = target if move == "ASK" else source
        wait_until(lambda: _blocked_in_blpop(clients[waits_on], floors[waits_on]),
                   what=f"a BLPOP on {waits_on}")
        assign(target)
        if move == "MOVED":
            wait_until(lambda: _blocked_in_blpop(clients[target], floors[target]),
                       what="the BLPOP moved")
        with redis_cluster.client() as pusher:
            pusher.rpush(key, 7)
        worker.join(15)
        assert not worker.is_alive()
        assert got == [7]
    finally:
        assign(source)
        for c in clients.values():
            c.close()


def test_async_waiters_follow_a_failover(redis_replicated_cluster: RedisClusterServer
                                        ) -> None:
    """An AsyncConsumer and an async pop_blocking wait on one primary; it fails over, so
    the server unblocks both (``UNBLOCKED ... instance state changed`` from Redis 7.0,
    ``MOVED`` from Valkey 9: nothing popped either way). Each refreshes the slot map and
    waits again on the new primary, and gets the value pushed there."""
    cluster = redis_replicated_cluster
    sync_client = cluster.client()
    primary = sync_client.get_node_from_key("fo-a")
    other = next(k for k in (f"fo-{n}" for n in range(1000))
                 if k != "fo-a" and sync_client.get_node_from_key(k).name == primary.name)
    host, port = cluster.addresses[0]

    async def main() -> list[Any]:
        store = redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port))
        popper = Queue(store, "fo-a", int)
        consumer: Any = Queue(store, other, int).consume(
            max_items=1, idle_timeout=10, poll=8, signals=())

        async def consume() -> list[Any]:
            async with consumer:
                return [item async for item in consumer]

        waits = [asyncio.create_task(popper.pop_blocking(10)),  # type: ignore[arg-type]
                 asyncio.create_task(consume())]
        try:
            await asyncio.sleep(0.5)  # both are waiting on the primary
            await asyncio.to_thread(cluster.failover, int(primary.port))
            await asyncio.to_thread(sync_client.rpush, "fo-a", 1)
            await asyncio.to_thread(sync_client.rpush, other, 2)
            return list(await asyncio.gather(*waits, return_exceptions=True))
        finally:
            await store.aclose()

    try:
        got = asyncio.run(main())
    finally:
        sync_client.close()
    assert got == [1, [2]], [str(g)[:160] for g in got]


def test_an_async_blocking_pop_refused_by_an_acl_is_a_no_permission_error(
        redis_server: RedisServer, redis_client: Any) -> None:
    """The asyncio shell's blocking pop maps the server's NOPERM as every other path does:
    a ServerError that is also redis-py's NoPermissionError, naming the key."""
    redis_client.acl_setuser("blk", enabled=True, passwords=["+pw"], keys=["mine*"],
                             commands=["+@all"])

    async def main() -> BaseException | None:
        store = redmodel.AsyncStore(redis.asyncio.Redis(
            host=redis_server.host, port=redis_server.port, username="blk", password="pw"),
            registry=False)  # else the first refusal is of the queue's registry record
        try:
            await Queue(store, "other", int).pop_blocking(0.1)  # type: ignore[misc]
        except Exception as e:  # judged below
            return e
        finally:
            await store.aclose()
        return None

    try:
        error = asyncio.run(main())
    finally:
        redis_client.acl_deluser("blk")
    assert isinstance(error, redmodel.ServerError), repr(error)
    assert isinstance(error, redis.exceptions.NoPermissionError)
    assert error.keys == ("other",)


# ---- a full server (maxmemory, noeviction) -----------------------------------------------


@pytest.mark.parametrize("shell", ["sync", "asyncio", "exactly-once"])
def test_a_reliable_consumer_drains_a_queue_on_a_full_server(
        redis_server: RedisServer, redis_client: Any, shell: str) -> None:
    """A server at ``maxmemory`` with ``noeviction`` refuses every command that may grow
    memory (RPUSH, BLMOVE, ZADD, a script whose first write is one), which is when a queue
    most needs draining. The consume scripts run with ``allow-oom`` (they move items; the
    heartbeat is a few bytes), so a consumer takes everything, the items of a dead
    consumer too, waits by polling while the server refuses its BLMOVE wait, stops on
    ``idle_timeout`` and leaves, all on a server that stays full."""
    redis_client.rpush("jobs", 1, 2, 3)
    leave_behind_a_dead_consumer(redis_client, "jobs", "dead", [b"0"])
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", 1)  # every command that may grow memory: OOM
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            redis_client.rpush("jobs", 99)
        kwargs = {"name": "w", "idle_timeout": 0.6, "poll": 0.3, "signals": ()}
        if shell == "asyncio":
            async def main() -> tuple[list[Any], str | None]:
                store = redmodel.AsyncStore.from_url(redis_server.url)
                consumer: Any = Queue(store, "jobs", int).consume(**kwargs)
                async with consumer:
                    got = [item async for item in consumer]
                await store.aclose()
                return got, consumer.stopped_by

            got, stopped_by = asyncio.run(main())
        else:
            store = redmodel.Store.from_url(redis_server.url,
                                            exactly_once=shell == "exactly-once")
            consumer = Queue(store, "jobs", int).consume(**kwargs)
            got, stopped_by = list(consumer), consumer.stopped_by
            store.close()
        assert sorted(got) == [0, 1, 2, 3]
        assert stopped_by == "idle"  # it waited (polling) on the empty queue, then left
        left = all_keys(redis_client) - {k for k in all_keys(redis_client)
                                         if k.startswith("redmodel:once:")}
        assert left <= {"jobs:{jobs}:%redelivered"}, left
    finally:
        redis_client.config_set("maxmemory", 0)
