"""A ``ServerError``'s ``.reply`` is the server's whole error text, its code word included
(redis-py's parser takes ``MOVED``, ``ASK``, ``OOM``, ``NOPERM``, ``CLUSTERDOWN``... off the
text and says it by the exception's class; a redirect's class, ``MovedError``, cannot be
mixed into a ServerError, so a MOVED left when the ResendPolicy ran out read as a bare
"12582 127.0.0.1:34817", a refusal of unknown kind: found by an attacker, session 37)."""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

import redmodel
from redmodel.testing import ClusterFaultProxy, RedisClusterServer, RedisServer


@redmodel.model(prefix="ert")
@attrs.define
class Counter:
    id: str
    n: int = 0


def test_a_refusal_names_its_code_word_and_keeps_its_class(own_server: RedisServer,
                                                            own_client: Any) -> None:
    """OOM: the reply starts with the server's code word; the error is still redis-py's
    class for it, and nothing was written."""
    store = redmodel.Store(own_client)
    store.save(Counter(id="first"))  # the model's registry record is written
    own_client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redmodel.ServerError) as caught:
            store.save(Counter(id="a"))
    finally:
        own_client.config_set("maxmemory", 0)
    assert caught.value.reply.startswith("OOM ")
    assert isinstance(caught.value, redis.exceptions.OutOfMemoryError)
    assert "ert:a" in str(caught.value) and str(caught.value).count("OOM") == 1
    assert own_client.exists("ert:a") == 0


def test_a_moved_left_at_the_deadline_says_moved() -> None:
    """A slot moves while every node holds CLUSTER SLOTS past the socket timeout, behind
    ``address_remap`` (a MOVED names real addresses: only a reload remaps them): the
    increment runs out of its policy and raises a ServerError whose reply is ``MOVED
    <slot> <host:port>``; nothing was applied."""
    policy = redmodel.ResendPolicy(attempts=3, backoff_base=0.01, backoff_max=0.05,
                                   deadline=1.0)
    with RedisClusterServer() as cluster, ClusterFaultProxy(cluster.addresses) as proxies:
        direct = cluster.client()
        redmodel.Store(direct).save(Counter(id="a"))
        key = "ert:a"
        slot = key_slot(key.encode())
        clients = {node.port: node.client() for node in cluster.nodes}
        ids = {p: c.execute_command("CLUSTER MYID") for p, c in clients.items()}
        ids = {p: i.decode() if isinstance(i, bytes) else i for p, i in ids.items()}
        src = int(direct.get_node_from_key(key).port)
        dst = next(p for p in cluster.ports if p != src)
        host, port = proxies.startup_nodes[0]
        client = redis.cluster.RedisCluster(host=host, port=port,
                                            address_remap=proxies.address_remap,
                                            socket_timeout=0.4, retry=Retry(NoBackoff(), 0))
        store = redmodel.Store(client, resend=policy)
        assert store.get(Counter, "a") == Counter(id="a")
        proxies.stall("CLUSTER", 2.0, times=1_000)
        clients[dst].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[src])
        clients[src].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[dst])
        clients[src].execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", key)
        for c in clients.values():
            c.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[dst])
        started = time.monotonic()
        with pytest.raises(redmodel.ServerError) as caught:
            store.incr(Counter, "a", "n", 1)
        assert time.monotonic() - started < 10
        assert caught.value.reply.startswith(f"MOVED {slot} "), caught.value.reply
        assert key in caught.value.keys
        proxies.clear()
        assert int(clients[dst].hget(key, "n") or 0) == 0  # not applied
        client.close()
        for c in clients.values():
            c.close()
        direct.close()
