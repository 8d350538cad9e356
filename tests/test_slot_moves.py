"""A slot moves between primaries while a store uses it: the transport follows ASK during
the migration and MOVED after it, applying each write once, with no user code."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

import redmodel
from redmodel._transport._wire import key_slot
from redmodel.testing import RedisClusterServer

KEY_TAG = "moving"


@redmodel.model(prefix="mv", hash_tag=lambda id: KEY_TAG)
@attrs.define
class Counter:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


class Mover:
    """Moves one slot from its owner to another primary, in the steps of a resharding."""

    def __init__(self, cluster: RedisClusterServer, slot: int) -> None:
        self.cluster, self.slot = cluster, slot
        self.clients = {n.port: n.client() for n in cluster.nodes}
        self.ids = {port: c.execute_command("CLUSTER MYID").decode()
                    for port, c in self.clients.items()}

    def owner_of(self, client: redis.Redis, slot: int) -> int:
        """The port of the primary serving ``slot``, as ``client``'s node sees it."""
        for first, last, primary, *_ in client.execute_command("CLUSTER SLOTS"):
            if first <= slot <= last:
                return int(primary[1])
        raise AssertionError("slot not served")

    def start(self, source: int, target: int) -> None:
        self.clients[target].execute_command("CLUSTER SETSLOT", self.slot, "IMPORTING",
                                             self.ids[source])
        self.clients[source].execute_command("CLUSTER SETSLOT", self.slot, "MIGRATING",
                                             self.ids[target])

    def move_keys(self, source: int, target: int) -> None:
        keys = self.clients[source].execute_command("CLUSTER GETKEYSINSLOT", self.slot, 1000)
        if keys:
            self.clients[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000,
                                                 "KEYS", *keys)

    def finish(self, target: int) -> None:
        for client in self.clients.values():
            client.execute_command("CLUSTER SETSLOT", self.slot, "NODE", self.ids[target])

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture
def mover(redis_cluster: RedisClusterServer, redis_cluster_client: Any) -> Iterator[Mover]:
    m = Mover(redis_cluster, key_slot(KEY_TAG))
    home = m.owner_of(m.clients[redis_cluster.ports[0]], m.slot)
    yield m
    now = m.owner_of(m.clients[redis_cluster.ports[0]], m.slot)
    if now != home:  # put the slot back for the other tests
        m.start(now, home)
        m.move_keys(now, home)
        m.finish(home)
    m.close()


def _scenario(mover: Mover, incr: Any, read: Any, once: bool) -> None:
    source = mover.owner_of(mover.clients[mover.cluster.ports[0]], mover.slot)
    target = next(p for p in mover.cluster.ports if p != source)
    assert incr() == 1
    mover.start(source, target)
    if once:
        # A write under a write id uses two keys of the slot, and Redis Cluster answers
        # TRYAGAIN to a multi-key command while their slot migrates: the write waits
        # (within its ResendPolicy deadline) until the slot has moved, then follows MOVED.
        def migrate() -> None:
            time.sleep(0.3)
            mover.move_keys(source, target)
            time.sleep(0.3)
            mover.finish(target)

        worker = threading.Thread(target=migrate)
        worker.start()
        started = time.monotonic()
        assert incr() == 2
        worker.join()
        assert time.monotonic() - started >= 0.5
    else:
        assert incr() == 2  # migrating, the key still on the source
        mover.move_keys(source, target)
        assert incr() == 3  # ASK: the key is on the target now
        mover.finish(target)
        assert incr() == 4  # MOVED: the slot is the target's
    assert incr() == (3 if once else 5)  # the new map is known
    assert read() == (3 if once else 5)


@pytest.mark.parametrize("once", [False, True], ids=["at-most-once", "exactly-once"])
def test_a_sync_store_follows_a_slot_as_it_moves(redis_cluster: RedisClusterServer,
                                                 mover: Mover, once: bool) -> None:
    store = redmodel.Store(redis_cluster.client(), exactly_once=once)
    store.save(Counter(id="c"))
    _scenario(mover, lambda: store.incr(Counter, "c", "n", 1),
              lambda: store.get_or_raise(Counter, "c").n, once)
    store.close()


@pytest.mark.parametrize("once", [False, True], ids=["at-most-once", "exactly-once"])
def test_an_asyncio_store_follows_a_slot_as_it_moves(redis_cluster: RedisClusterServer,
                                                     mover: Mover, once: bool) -> None:
    host, port = redis_cluster.addresses[0]
    loop = asyncio.new_event_loop()
    store = redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port), exactly_once=once)
    run = loop.run_until_complete
    run(store.save(Counter(id="c")))
    _scenario(mover, lambda: run(store.incr(Counter, "c", "n", 1)),
              lambda: run(store.get_or_raise(Counter, "c")).n, once)
    run(store.aclose())
    loop.close()


def test_a_transaction_follows_a_moved_slot(redis_cluster: RedisClusterServer,
                                            mover: Mover) -> None:
    store = redmodel.Store(redis_cluster.client())
    store.save(Counter(id="c", n=10))

    @redmodel.transaction(store)
    def take(tx: redmodel.transactions.Transaction) -> int:
        c = tx.get_or_raise(Counter, "c")
        tx.incr(Counter, "c", "n", -1)
        return c.n

    source = mover.owner_of(mover.clients[redis_cluster.ports[0]], mover.slot)
    target = next(p for p in redis_cluster.ports if p != source)
    assert take() == 10
    mover.start(source, target)
    mover.move_keys(source, target)
    mover.finish(target)
    assert take() == 9  # WATCH got MOVED: the attempt ran again on the new owner
    assert take.stats.restarts == 1
    assert store.get_or_raise(Counter, "c").n == 8
    store.close()
