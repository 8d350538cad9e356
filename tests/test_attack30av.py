"""Attack 30AV: asyncio and cluster parity, transactions and exactly-once under faults.
Each test holds the code to a sentence of the docs and FAILS on main as of this attack."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

import redmodel
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, has
from tests.faults import FAST_RESEND


@redmodel.model(prefix="atk30av")
@attrs.define
class Item:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


_LOOP: list[asyncio.AbstractEventLoop] = []


def _run(value: Any) -> Any:
    """``value``, awaited on the test's one event loop when it is a coroutine."""
    if not asyncio.iscoroutine(value):
        return value
    if not _LOOP or _LOOP[0].is_closed():
        _LOOP[:] = [asyncio.new_event_loop()]
    return _LOOP[0].run_until_complete(value)


def _delete_many(store: Any, ids: list[str]) -> BaseException | None:
    """Run store.delete_many (sync or asyncio); the exception it raised, if any."""
    try:
        _run(store.delete_many(Item, ids))
    except Exception as e:  # the test inspects it
        return e
    return None


def _close(store: Any) -> None:
    if isinstance(store, redmodel.AsyncStore):
        _run(store.aclose())
        _LOOP.pop().close()
    else:
        store.close()


IDS = [f"i{j}" for j in range(12)]


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f1_exactly_once_delete_many_part_applied_is_not_a_plain_connection_error(
        proxy: FaultProxy, redis_client: Any, shell: str) -> None:
    """docs/failures.md, "Where the guarantee ends": "**Several writes in one batch**
    (`run_many`, `delete_many` across nodes): each is exactly once, but when the policy
    gives up after some were applied and others fenced, the batch raises
    `OutcomeUnknownError` naming the keys of those not applied." docs/store.md (delete_many
    errors): "`.written` holds the earlier chunks, `.not_written` the chunks never sent".
    The table of docs/failures.md: a plain `ConnectionError` means "not applied".
    With exactly_once=True and chunk_size=4, the second chunk's request dropped until the
    policy gives up: the first chunk's 4 objects are deleted, yet the call raises a plain
    `redis.ConnectionError` with no `.written` (the mode off raises OutcomeUnknownError
    with `.written` = the first chunk). Calling again answers 8, not 12."""
    direct = redmodel.Store(redis_client)
    for i in IDS:
        direct.save(Item(id=i))
    options: dict[str, Any] = dict(exactly_once=True, resend=FAST_RESEND, chunk_size=4)
    store: Any = (redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port), **options)
                  if shell == "sync" else
                  redmodel.AsyncStore(aredis.Redis(host=proxy.host, port=proxy.port),
                                      **options))
    try:
        _run(store.get(Item, "i0"))  # the registry read done before the fault
        proxy.drop_request(lambda c: c in ("EVALSHA", "EVAL"), times=50,
                           when=has("atk30av:i4"))
        error = _delete_many(store, IDS)
        proxy.clear()
    finally:
        _close(store)
    gone = [f"atk30av:{i}" for i in IDS if not direct.exists(Item, i)]
    assert gone == [f"atk30av:i{j}" for j in range(4)]  # the first chunk was applied
    assert isinstance(error, redmodel.OutcomeUnknownError), repr(error)
    assert not set(gone) & set(error.keys)
    assert tuple(error.written or ()) == tuple(gone)


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f1b_exactly_once_delete_many_across_nodes_one_node_fenced(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster,
        shell: str) -> None:
    """docs/failures.md, "Where the guarantee ends": "Several writes in one batch
    (`run_many`, `delete_many` across nodes): ... when the policy gives up after some
    were applied and others fenced, the batch raises `OutcomeUnknownError` naming the keys
    of those not applied." On a cluster, exactly_once=True, every request to the node of
    `i0` dropped: the other nodes' objects are deleted, that node's are fenced, and the
    call raises a plain `redis.ConnectionError` (`.keys` none), which the failures.md
    table reads as "not applied". (With the fault on a later key of that node, so that
    one of its objects is applied first, the same call raises OutcomeUnknownError.)"""
    direct = redmodel.Store(redis_cluster_client)
    for i in IDS:
        direct.save(Item(id=i))
    proxies = ClusterFaultProxy(redis_cluster.addresses).start()
    host, port = proxies.startup_nodes[0]
    options: dict[str, Any] = dict(host=host, port=port, address_remap=proxies.address_remap)
    store: Any = (redmodel.Store(RedisCluster(**options), exactly_once=True,
                                 resend=FAST_RESEND)
                  if shell == "sync" else
                  redmodel.AsyncStore(AsyncRedisCluster(**options), exactly_once=True,
                                      resend=FAST_RESEND))
    try:
        _run(store.get(Item, "i0"))
        node = redis_cluster_client.get_node_from_key("atk30av:i0")
        on_node = [f"atk30av:{i}" for i in IDS if redis_cluster_client.get_node_from_key(
            f"atk30av:{i}").name == node.name]
        proxies.proxy_for((node.host, int(node.port))).drop_request(
            lambda c: c in ("EVALSHA", "EVAL"), times=50, when=has("atk30av:i0"))
        error = _delete_many(store, IDS)
        proxies.clear()
    finally:
        _close(store)
        proxies.stop()
    left = [f"atk30av:{i}" for i in IDS if direct.exists(Item, i)]
    assert left == on_node and len(left) < len(IDS)  # the other nodes' part was applied
    assert isinstance(error, redmodel.OutcomeUnknownError), repr(error)
    assert set(error.keys) == set(on_node)


@pytest.mark.parametrize("watch", ["atk30av:ctr", b"atk30av:ctr"])
@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f2_read_command_watch_given_one_key_as_text_loses_an_update(
        redis_server: Any, redis_client: Any, shell: str, watch: Any) -> None:
    """docs/transactions.md: transactions change data "without a lost update"; "Reads run
    at once and first `WATCH` every key they read: ... `tx.read_command("GET", key,
    watch=(key,))`"; read_command's docstring: "after WATCHing ``watch`` (name every key
    it reads...)". docs/failures.md: arguments are checked before anything is sent, "the
    ids of `get_many`/`delete_many` ... never a `str` or `bytes` (one id: its characters
    are not ids)", "The other kinds of argument are checked the same way".
    `watch="key"` (or b"key"), one key written as text, is taken as its characters: the
    key read is never WATCHed, so a concurrent write between the read and EXEC is lost
    (here 0 -> +100 concurrently -> the transaction's SET 1 wins). On a cluster the same
    call raises CrossSlotError listing the characters. Either refuse it
    (ValidationError) or watch the key."""
    key = "atk30av:ctr"
    redis_client.set(key, 0)
    runs: list[int] = []

    def meddle() -> None:
        runs.append(1)
        if len(runs) == 1:
            redis_client.incrby(key, 100)  # a concurrent writer after the read

    try:
        if shell == "sync":
            store = redmodel.Store(redis_server.client())

            def body(tx: Any) -> None:
                value = int(tx.read_command("GET", key, watch=watch))
                meddle()
                tx.command("SET", key, value + 1)

            store.transaction(body)()
        else:
            async def main() -> None:
                astore = redmodel.AsyncStore(aredis.Redis(host=redis_server.host,
                                                          port=redis_server.port))

                async def body(tx: Any) -> None:
                    value = int(await tx.read_command("GET", key, watch=watch))
                    meddle()
                    tx.command("SET", key, value + 1)

                try:
                    await astore.transaction(body)()
                finally:
                    await astore.aclose()

            asyncio.run(main())
    except redmodel.ValidationError:
        return  # refused before anything was written: what the docs' argument rule asks
    assert int(redis_client.get(key)) == 101  # the concurrent +100 was not lost
