"""Attacks on issue 12's promises ("nothing applied twice, nothing lost"), as a user with
only the docs (docs/failures.md, docs/containers.md, docs/store.md, docs/queries.md) and
redmodel.testing's fault proxy. Findings are in /work/notes/FINDINGS-12r.md.

Tests marked ``FIXED`` in their docstring failed when the attack was made and now pin the fix;
each states the promise the finding broke (all ten are fixed):

- F1 a blocking pop (``Queue.pop_blocking``, ``redmodel.containers.pop_blocking``,
  ``consume(reliable=False)``) whose reply is lost removes the item and raises a *plain*
  ``redis.ConnectionError``, which failures.md and store.md define as "not applied, safe to
  call again"; at-most-once writes must raise ``OutcomeUnknownError`` (sync, asyncio,
  cluster, exactly-once mode too);
- F2 ``Queue.trim`` is resent after a lost reply as if it were idempotent, but
  ``LTRIM key 1 -1`` applied twice drops two items: ``trim`` returns normally and an item
  is lost (both modes, alone and in ``run_many``);
- F3 on a bucketed model with a unique field, ``save`` / ``save_many`` / ``update`` whose
  claim reply is lost raise ``OutcomeUnknownError`` and write nothing, where failures.md's
  table promises "returns; applied once" for these resent methods (fixed);
- F4 ``Set.pop`` / ``SortedSet.pop_min`` / ``pop_max`` of a member that does not decode
  destroy it (it is neither left nor set aside), unlike a queue's pops;
- F5 exactly-once mode applies an incr twice when the server evicts its write-id record
  (volatile-* eviction policies drop exactly those keys) between the write and its resend
  (decided: the store refuses a server whose policy may evict, EvictionPolicyError);
- F6 (low) a blocking pop refused by an ACL is not a ``NoPermissionError``;
- F7 (liveness) reliable ``consume()`` cannot drain a queue on a server at maxmemory;
- F8 exactly-once records keep each write's whole reply (a popped value) for 60 s in the
  shared ``redmodel:once:*`` namespace, not the documented ~180 bytes (fixed);
- F9 a consumer or blocking pop waiting on a primary that fails over (or on a slot that
  migrates) dies with ``ServerError: UNBLOCKED ...`` (or a ``MOVED`` turned into a
  ServerError) instead of following the new owner;
- F10 an AsyncStore writes to a pooled connection the server already closed (idle timeout,
  restart) and reports ``OutcomeUnknownError`` for a write that cannot have been applied
  (fixed).

The other tests pass: promises that held under attack, kept as regression tests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster

import redmodel
from redmodel.containers import Queue, Set, SortedSet
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, RedisServer, has
from tests.faults import DURABLE, FAST_RESEND, cluster_client, store_through

SOCKET_TIMEOUT = 0.5
POLICY = FAST_RESEND


@redmodel.model(prefix="a12r")
@attrs.define
class Counter:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a12rb", buckets=4)
@attrs.define
class Sku:
    qty: int = redmodel.field(index="range", default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


def _direct_store(proxy: FaultProxy, *, once: bool = False) -> redmodel.Store:
    """As docs/store.md and failures.md build it: redis-py's default retry (10)."""
    return store_through(proxy, socket_timeout=SOCKET_TIMEOUT, exactly_once=once, resend=POLICY)


def _url_store(proxy: FaultProxy, *, once: bool = False) -> redmodel.Store:
    return redmodel.Store.from_url(f"redis://{proxy.host}:{proxy.port}/0",
                                   socket_timeout=SOCKET_TIMEOUT, exactly_once=once,
                                   resend=POLICY)


def _blocking(name: str) -> bool:
    return name in ("BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH")


def _arm(proxy: FaultProxy, fault: str, command: Any, key: str | None = None,
         times: int = 1) -> None:
    when = has(key) if key is not None else None
    if fault == "stall":
        proxy.stall(command, 1.2, when=when, times=times)
    else:
        getattr(proxy, fault)(command, when=when, times=times)


# ---- F1: blocking pops report a lost item as "safe to call again" ---------------------------

BLOCKING_POPS: dict[str, Callable[[Queue[int]], Any]] = {
    "Queue.pop_blocking": lambda q: q.pop_blocking(1),
    "Queue.pop_blocking(right)": lambda q: q.pop_blocking(1, right=True),
    "redmodel.containers.pop_blocking": lambda q: redmodel.containers.pop_blocking(q, timeout=1),
    "consume(reliable=False)": lambda q: list(q.consume(reliable=False, idle_timeout=0.5,
                                                        poll=0.2, signals=())),
}


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply"])
@pytest.mark.parametrize("how", list(BLOCKING_POPS))
@pytest.mark.parametrize("shell", ["Store(redis.Redis(...))", "Store.from_url",
                                   "Store(..., exactly_once=True)"])
def test_f1_blocking_pop_with_a_lost_reply_is_not_reported_as_safe_to_retry(
        proxy: FaultProxy, redis_client: redis.Redis, shell: str, how: str,
        fault: str) -> None:
    """FIXED (F1). failures.md: a plain ``redis.ConnectionError`` means "not applied ...
    calling again: safe"; store.md: "A plain redis.ConnectionError from redmodel always
    means 'safe to call again'"; issue 12: "A lost reply to such a batch raises a
    documented redmodel error that ... names the keys"; failures.md "What cannot carry an
    id stays at most once (OutcomeUnknownError on a lost reply)". A blocking pop whose
    reply is lost has removed the item; the caller gets a plain ConnectionError and the
    item is gone."""
    store = {"Store(redis.Redis(...))": _direct_store,
             "Store.from_url": _url_store,
             "Store(..., exactly_once=True)": lambda p: _direct_store(p, once=True)}[shell](proxy)
    queue = Queue(store, "jobs", int)
    redis_client.rpush("jobs", 1, 2)
    _arm(proxy, fault, _blocking)
    try:
        with pytest.raises(redis.ConnectionError) as caught:
            BLOCKING_POPS[how](queue)
        assert proxy.events, "the fault never fired"
        popped = 2 - redis_client.llen("jobs")
        assert popped == 1, "the lost reply's pop was applied exactly once"
        assert isinstance(caught.value, redmodel.OutcomeUnknownError), (
            f"{how} popped an item whose reply was lost and raised a plain "
            f"{type(caught.value).__name__} ({caught.value}): documented as 'not applied, "
            f"safe to call again', but the item is gone")
        assert "jobs" in caught.value.keys
    finally:
        store.close()


@pytest.mark.parametrize("how", ["Queue.pop_blocking", "consume(reliable=False)"])
def test_f1_async_blocking_pop_with_a_lost_reply_is_not_reported_as_safe_to_retry(
        proxy: FaultProxy, redis_client: redis.Redis, how: str) -> None:
    """FIXED (F1), the asyncio shell (AsyncStore on a redis.asyncio client built directly,
    redis-py's default retry)."""
    redis_client.rpush("jobs", 1, 2)

    async def main() -> BaseException | None:
        store = redmodel.AsyncStore(aredis.Redis(host=proxy.host, port=proxy.port,
                                                 socket_timeout=SOCKET_TIMEOUT), resend=POLICY)
        queue = Queue(store, "jobs", int)
        proxy.lose_reply(_blocking)
        try:
            if how == "Queue.pop_blocking":
                await queue.pop_blocking(1)
            else:
                async with queue.consume(reliable=False, idle_timeout=0.5, poll=0.2,
                                         signals=()) as consumer:
                    [item async for item in consumer]
        except Exception as e:  # judged below
            return e
        finally:
            await store.aclose()
        return None

    error = asyncio.run(main())
    assert proxy.events, "the fault never fired"
    assert redis_client.llen("jobs") == 1
    assert isinstance(error, redis.ConnectionError), repr(error)
    assert isinstance(error, redmodel.OutcomeUnknownError), (
        f"an async {how} lost an item and raised a plain {type(error).__name__}")


def test_f1_cluster_blocking_pop_with_a_lost_reply_is_not_reported_as_safe_to_retry(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster) -> None:
    """FIXED (F1), the cluster shell."""
    proxies = ClusterFaultProxy(redis_cluster.addresses).start()
    try:
        host, port = proxies.startup_nodes[0]
        store = redmodel.Store(cluster_client(dict(host=host, port=port,
                                                   address_remap=proxies.address_remap,
                                                   socket_timeout=SOCKET_TIMEOUT), None),
                               resend=POLICY)
        redis_cluster_client.rpush("jobs", 1, 2)
        node = redis_cluster_client.get_node_from_key("jobs")
        proxy = proxies.proxy_for((node.host, int(node.port)))
        proxy.lose_reply(_blocking)
        with pytest.raises(redis.ConnectionError) as caught:
            Queue(store, "jobs", int).pop_blocking(1)
        assert redis_cluster_client.llen("jobs") == 1
        assert isinstance(caught.value, redmodel.OutcomeUnknownError), (
            f"plain {type(caught.value).__name__}: the item is gone")
        store.close()
    finally:
        proxies.stop()


# ---- F2: Queue.trim is resent although LTRIM with a relative start is not idempotent -------


def _is_ltrim(name: str) -> bool:
    """LTRIM itself, or (exactly-once mode, once trim(1, -1) carries a write id) the
    script call that runs it: see :func:`_of_ltrim`."""
    return name in ("LTRIM", "EVALSHA", "EVAL")


def _of_ltrim(key: str) -> Callable[[list[bytes]], bool]:
    """``when=``: an LTRIM of ``key``, sent plain or inside the exactly-once script."""
    return lambda argv: key.encode() in argv[1:] and (
        argv[0].upper() == b"LTRIM" or b"LTRIM" in argv[1:])


@pytest.mark.parametrize("once", [False, True], ids=["at-most-once", "exactly-once"])
@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply", "stall"])
def test_f2_trim_whose_reply_is_lost_is_not_applied_twice(
        proxy: FaultProxy, redis_client: redis.Redis, fault: str, once: bool) -> None:
    """FIXED (F2). ``jobs.trim(1, -1)`` (drop the head) must drop exactly one item, or
    raise OutcomeUnknownError. failures.md: a batch is "only ever sent again when that is
    harmless"; issue 12 item 1: anything whose second application changes something is not
    resent. LTRIM 1 -1 sent twice drops two items, and trim() returns None as if all went
    well. (Fixed: the fault is armed on the LTRIM whether it is sent plain or, in
    exactly-once mode where it now carries a write id, inside the script that runs it;
    armed on the name LTRIM alone it would never fire there.)"""
    store = _direct_store(proxy, once=once)
    redis_client.rpush("jobs", 1, 2, 3, 4)
    if fault == "stall":
        proxy.stall(_is_ltrim, 1.2, when=_of_ltrim("jobs"))
    else:
        getattr(proxy, fault)(_is_ltrim, when=_of_ltrim("jobs"))
    try:
        outcome: Any
        try:
            outcome = Queue(store, "jobs", int).trim(1, -1)
        except redmodel.OutcomeUnknownError as e:
            outcome = e
        assert proxy.quiet(10)
        assert proxy.events, "the fault never fired"
        assert redis_client.lrange("jobs", 0, -1) == [b"2", b"3", b"4"], (
            f"trim(1, -1) {'returned' if outcome is None else 'raised'} and the server "
            f"holds {redis_client.lrange('jobs', 0, -1)}: LTRIM applied twice, item 2 lost")
    finally:
        store.close()


def test_f2_trim_in_run_many_in_exactly_once_mode_is_applied_once(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """FIXED (F2). failures.md: in exactly-once mode, several writes in one batch are
    "each exactly once". run_many(trim, push) with the batch's reply lost returns
    [None, 4] (the push's recorded reply) while the list ends [3, 4, 9]: the trim ran
    twice. (Fixed: the fault is armed on the LTRIM sent plain or inside the exactly-once
    script, where it now travels; armed on the name LTRIM alone it never fired once the
    trim carried a write id, and this test passed without a fault.)"""
    store = _direct_store(proxy, once=True)
    queue = Queue(store, "jobs", int)
    redis_client.rpush("jobs", 1, 2, 3, 4)
    proxy.lose_reply(_is_ltrim, when=_of_ltrim("jobs"))
    try:
        result = store.run_many(queue.trim_plan(1, -1), queue.push_plan(9))
        assert proxy.events, "the fault never fired"
        assert result == [None, 4]
        assert redis_client.lrange("jobs", 0, -1) == [b"2", b"3", b"4", b"9"], (
            f"returned {result} but the server holds {redis_client.lrange('jobs', 0, -1)}")
    finally:
        store.close()


# ---- F3: saves of a bucketed model with a unique field are not "resent, returns" ----------


SKU_WRITES: dict[str, tuple[Callable[[redmodel.Store], Any], Any]] = {
    "save": (lambda st: st.save(Sku(1, "B9", id="c")), None),
    "save_many": (lambda st: st.save_many([Sku(1, "B7", id="e"), Sku(2, "B8", id="f")]), 2),
    "update(sku=...)": (lambda st: st.update(Sku, "b", sku="B2"), True),
}


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply", "stall"])
@pytest.mark.parametrize("method", list(SKU_WRITES))
def test_f3_resent_saves_of_a_bucketed_unique_model_return_after_a_lost_reply(
        proxy: FaultProxy, redis_client: redis.Redis, method: str, fault: str) -> None:
    """Fixed (F3: claims are idempotent per value and id, so every step is resent).
    failures.md's table: ``save``, ``save_many``, ``update`` are resent
    ("yes") and under a lost reply, a cut reply or a stall they "return; applied once";
    store.md: "A write whose reply is lost is never sent twice unless that is harmless
    (whole saves, updates, expiries)". On a bucketed model with a unique field (queries.md:
    the value is claimed first) they raise OutcomeUnknownError and write nothing."""
    redmodel.Store(redis_client).save(Sku(10, "B1", id="b"))
    store = _direct_store(proxy)
    act, result = SKU_WRITES[method]
    _arm(proxy, fault, lambda name: name.startswith("EVAL"))
    try:
        try:
            value = act(store)
        except redmodel.OutcomeUnknownError as e:
            pytest.fail(f"{method} of a bucketed unique model under {fault} raised "
                        f"OutcomeUnknownError ({str(e)[:120]}...): the docs say it is resent "
                        f"and returns, applied once")
        assert proxy.events, "the fault never fired"
        if result is not None:
            assert value == result
    finally:
        assert proxy.quiet(10)
        store.close()


def test_f3_after_a_lost_claim_the_same_save_can_be_called_again(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """Passes: after F3's OutcomeUnknownError, saving the same object again succeeds (the
    unconfirmed claim belongs to the same id) and the index is consistent."""
    store = _direct_store(proxy)
    proxy.lose_reply(lambda name: name.startswith("EVAL"))
    try:
        with contextlib.suppress(redmodel.OutcomeUnknownError):
            store.save(Sku(1, "B9", id="c"))
        store.save(Sku(1, "B9", id="c"))
        assert redmodel.Store(redis_client).get_by(Sku, sku="B9") == Sku(1, "B9", id="c")
        assert redmodel.Store(redis_client).verify(Sku) == []
    finally:
        store.close()


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply", "stall"])
def test_f3_a_takeover_claim_whose_reply_is_lost_returns_and_holds_the_value(
        proxy: FaultProxy, redis_client: redis.Redis, fault: str) -> None:
    """F3's kind, at the second claim step: the value is claimed by an owner that no longer
    exists, so the save takes the claim over (a second claim call naming that owner). Its
    reply is lost: the takeover is sent again, finds the claim already this id's, and the
    save returns with the value held, confirmed and consistent."""
    from redmodel._indexes._writes import unique_lines  # noqa: PLC0415
    from redmodel._models._schema import spec_of  # noqa: PLC0415

    spec = spec_of(Sku)
    ((name, text),) = unique_lines(spec, {"sku": "T1", "qty": 0})
    claims = spec.claim_key(name, text)
    redis_client.hset(claims, text, "ghost\x1fC")  # a confirmed claim of an object now gone
    store = _direct_store(proxy)
    when = has(claims, "ghost")  # only the takeover names the old owner
    if fault == "stall":
        proxy.stall(lambda n: n.startswith("EVAL"), 1.2, when=when)
    else:
        getattr(proxy, fault)(lambda n: n.startswith("EVAL"), when=when)
    try:
        assert store.save(Sku(3, "T1", id="c")) == spec.key_for("c")
        assert [e.kind for e in proxy.events] == [fault]
        assert proxy.quiet(10)
        direct = redmodel.Store(redis_client)
        assert direct.get_by(Sku, sku="T1") == Sku(3, "T1", id="c")
        assert direct.verify(Sku) == []
        with pytest.raises(redmodel.UniqueViolationError):
            direct.save(Sku(4, "T1", id="d"))
    finally:
        store.close()


@redmodel.model(prefix="a12rp", buckets=4)
@attrs.define
class Pair:
    a: str | None = redmodel.field(unique=True, default=None)
    b: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


def test_f3_a_refused_save_after_a_resent_claim_leaves_the_value_free_after_the_grace(
        proxy: FaultProxy, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """F3's documented edge (queries.md): a save whose claims' reply is lost, then refused
    (its second value is taken). The resent claim of its first value cannot tell whether
    its first copy made it, so it is kept as held before: unconfirmed, like a crash
    between claim and write leaves it. Another object gets that value once the claim is
    older than CLAIM_GRACE_MS (0.3 s here), and never before."""
    monkeypatch.setattr("redmodel._indexes._writes.CLAIM_GRACE_MS", 300)
    direct = redmodel.Store(redis_client)
    direct.save(Pair(b="B", id="owner"))
    store = _direct_store(proxy)
    proxy.lose_reply(lambda n: n.startswith("EVAL"))  # the claims of A and B
    try:
        with pytest.raises(redmodel.UniqueViolationError):
            store.save(Pair(a="A", b="B", id="x"))
        assert [e.kind for e in proxy.events] == ["lose_reply"]
        assert direct.get(Pair, "x") is None
        with pytest.raises(redmodel.UniqueViolationError):
            direct.save(Pair(a="A", id="y"))  # within the grace: "a write in flight"
        time.sleep(0.35)
        direct.save(Pair(a="A", id="y"))
        assert direct.get_by(Pair, a="A") == Pair(a="A", id="y")
        assert direct.verify(Pair) == []
    finally:
        store.close()


# ---- F4: pops of sets and sorted sets destroy a member that does not decode ----------------


@pytest.mark.parametrize("how", ["Set.pop", "SortedSet.pop_min", "SortedSet.pop_max"])
def test_f4_a_set_pop_of_an_undecodable_member_does_not_destroy_it(
        store: redmodel.Store, redis_client: redis.Redis, how: str) -> None:
    """FIXED (F4). containers.md: a stored member that does not decode raises DecodeError;
    a queue's pops set it aside in ``%rejected`` "so ... are not lost". Set and sorted-set
    pops raise the DecodeError after the server removed the member, which is then neither
    in the set nor set aside anywhere: the member is lost (issue 12: "nothing lost")."""
    if how == "Set.pop":
        redis_client.sadd("nums", b"three")
        pop: Callable[[], Any] = Set(store, "nums", int).pop
    else:
        redis_client.zadd("nums", {b"three": 1.0})
        z = SortedSet(store, "nums", int)
        pop = z.pop_min if how.endswith("min") else z.pop_max
    with pytest.raises(redmodel.DecodeError):
        pop()
    kept = [k for k in redis_client.keys("*")
            if (redis_client.type(k) == b"list" and b"three" in redis_client.lrange(k, 0, -1))
            or (redis_client.type(k) == b"set" and redis_client.sismember(k, b"three"))
            or (redis_client.type(k) == b"zset" and redis_client.zscore(k, b"three") is not None)]
    assert kept, f"{how} raised DecodeError and the member b'three' is nowhere on the server"


# ---- F5: exactly-once records are the first keys a volatile-* eviction policy drops ---------


def test_f5_exactly_once_survives_memory_pressure_between_a_write_and_its_resend() -> None:
    """Decided (F5): exactly-once mode needs ``maxmemory-policy noeviction`` (docs/failures.md,
    "Where the guarantee ends"). The attack's scenario on such a server: the first copy's
    reply is lost; before the resend, a moment of memory pressure (``maxmemory 1``). With
    noeviction the server refuses writes instead of evicting, so the record survives, the
    resend is recognised and ``incr`` from 0 by 1 returns 1 and stores 1. (Under a
    volatile-*/allkeys-* policy the record would be evicted and the incr applied twice:
    the store refuses such a server, see the next test.)"""
    with RedisServer(extra_args=("--maxmemory-policy", "noeviction")) as server, \
            FaultProxy(server.host, server.port) as proxy:
        direct = server.client()
        redmodel.Store(direct).save(Counter(id="a"))
        store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                           socket_timeout=SOCKET_TIMEOUT), exactly_once=True)
        seen = []

        def when(args: list[bytes]) -> bool:
            if b"a12r:a" not in args:
                return False
            seen.append(args)
            if len(seen) == 1:
                return True  # the first copy runs, its reply is lost
            # the resend: a moment of memory pressure first
            direct.config_set("maxmemory", 1)
            direct.config_set("maxmemory", 0)
            return False

        proxy.lose_reply(lambda name: name.startswith("EVAL"), times=2, when=when)
        value = store.incr(Counter, "a", "n", 1)
        assert [e.kind for e in proxy.events] == ["lose_reply"]
        assert len(seen) == 2, "the store resent the write under its id"
        assert (value, direct.hget("a12r:a", "n")) == (1, b"1"), (
            f"exactly-once incr returned {value} and the server holds "
            f"{direct.hget('a12r:a', 'n')!r}: applied twice after the record was evicted")
        store.close()


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl", "allkeys-lfu"])
def test_f5_exactly_once_refuses_a_server_that_may_evict_its_records(policy: str) -> None:
    """Decided (F5): under ``volatile-*`` memory pressure evicts exactly the write-id records
    (the only keys of a write with an expiry), under ``allkeys-*`` records too, and a
    resend then applies the write twice. So the store looks at the server's policy (``INFO
    memory``) before the first write that carries a write id goes there, and refuses with
    EvictionPolicyError naming the policy: nothing sent, nothing recorded. Reads and
    resendable writes carry no id and go on. ``ResendPolicy(allow_eviction=True)`` accepts
    the risk (docs/failures.md)."""
    with RedisServer(extra_args=("--maxmemory-policy", policy)) as server:
        direct = server.client()
        redmodel.Store(direct).save(Counter(id="a"))
        store = redmodel.Store(server.client(), exactly_once=True)
        try:
            with pytest.raises(redmodel.EvictionPolicyError, match=policy) as raised:
                store.incr(Counter, "a", "n", 1)
            assert raised.value.policy == policy
            with pytest.raises(redmodel.EvictionPolicyError):
                Queue(store, "jobs", int).push(1)  # checked once, refused every time
            assert direct.hget("a12r:a", "n") == b"0"
            # nothing sent: no record, no push (the registry's record is the setup save's;
            # the queue's record in the container registry is written at its first use, a
            # resendable write that carries no write id, like the registry's)
            assert sorted(direct.keys("*")) == [b"a12r:%schema", b"a12r:a",
                                                 b"jobs:{jobs}:%container"]
            assert store.get(Counter, "a") == Counter(id="a")
            store.save(Counter(n=5, id="b"), ttl=100)  # whole saves with a ttl carry no id
            with pytest.raises(redmodel.EvictionPolicyError):  # (fix 32D: fragile, an id)
                store.save(Counter(n=5, id="b"))
        finally:
            store.close()
        risky = redmodel.Store(server.client(), exactly_once=True,
                               resend=redmodel.ResendPolicy(allow_eviction=True))
        assert risky.incr(Counter, "a", "n", 1) == 1
        risky.close()


def test_f5_without_info_the_store_cannot_look_and_goes_on(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """Decided (F5): an ACL user refused ``INFO`` cannot learn the policy; the store goes on
    (docs/deploy.md: grant ``+info`` to let it look, or see to noeviction yourself). With
    ``+info`` the same user on a volatile-lru server is refused."""
    base = ["+@all", "-info"]
    redis_client.acl_setuser("a12rinfo", enabled=True, passwords=["+pw"], keys=["*"],
                             commands=base)
    redis_client.config_set("maxmemory-policy", "volatile-lru")
    redmodel.Store(redis_client).save(Counter(id="a"))
    try:
        store = redmodel.Store(redis.Redis(host=redis_server.host, port=redis_server.port,
                                           username="a12rinfo", password="pw"),
                               exactly_once=True)
        assert store.incr(Counter, "a", "n", 1) == 1
        store.close()
        redis_client.acl_setuser("a12rinfo", enabled=True, commands=["+info"])
        store = redmodel.Store(redis.Redis(host=redis_server.host, port=redis_server.port,
                                           username="a12rinfo", password="pw"),
                               exactly_once=True)
        with pytest.raises(redmodel.EvictionPolicyError, match="volatile-lru"):
            store.incr(Counter, "a", "n", 1)
        store.close()
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.acl_deluser("a12rinfo")


def test_f5_a_cluster_node_that_may_evict_is_named(
        redis_cluster: RedisClusterServer) -> None:
    """Decided (F5), on a cluster: each primary is looked at before the first write id goes
    to it; the one with an evicting policy is refused, by name."""
    admin = redis_cluster.client()
    key = "a12r:a"
    node = admin.get_node_from_key(key)
    owner = admin.get_redis_connection(node)
    owner.config_set("maxmemory-policy", "allkeys-lru")
    store = redmodel.Store(redis_cluster.client(), exactly_once=True)
    try:
        with pytest.raises(redmodel.EvictionPolicyError, match="allkeys-lru") as raised:
            store.incr(Counter, "a", "n", 1)
        assert raised.value.node == node.name
        assert admin.exists(key) == 0
    finally:
        owner.config_set("maxmemory-policy", "noeviction")
        store.close()
        admin.close()


# ---- F6: a blocking pop's NOPERM is not a redis NoPermissionError -----------------------------


def test_f6_a_blocking_pop_refused_by_acl_is_a_no_permission_error(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """FIXED (F6, low). failures.md: a ServerError is "also an instance of redis-py's class
    for the reply, e.g. OutOfMemoryError, NoPermissionError". ``Queue.pop()`` refused by an
    ACL is a NoPermissionError; ``Queue.pop_blocking()`` of the same key is only a
    ResponseError, so ``except redis.exceptions.NoPermissionError`` misses it."""
    redis_client.acl_setuser("a12r", enabled=True, passwords=["+pw"], keys=["mine*"],
                             commands=["+@all"])
    store = redmodel.Store(redis.Redis(host=redis_server.host, port=redis_server.port,
                                       username="a12r", password="pw"))
    try:
        other = Queue(store, "other", int)
        with pytest.raises(redmodel.ServerError) as popped:
            other.pop()
        assert isinstance(popped.value, redis.exceptions.NoPermissionError)
        with pytest.raises(redmodel.ServerError) as waited:
            other.pop_blocking(0.1)
        assert isinstance(waited.value, redis.exceptions.NoPermissionError), (
            f"pop_blocking's NOPERM is {type(waited.value).__mro__[:4]}")
    finally:
        store.close()
        redis_client.acl_deluser("a12r")


# ---- F7: reliable consumers cannot drain a queue on a full server -------------------------


def test_f7_a_reliable_consumer_drains_a_queue_on_a_server_at_maxmemory(
        redis_server: RedisServer, redis_client: redis.Redis, store: redmodel.Store) -> None:
    """FIXED (F7, liveness). A server at ``maxmemory`` with ``noeviction`` (Redis' default
    policy) refuses writes that may grow memory; draining a queue is what frees it. The
    at-most-once pops still drain it, but ``consume()`` (the default, reliable loop) raises
    OutOfMemoryError at once (its take-back/take scripts are refused), so every worker of
    a full queue stops exactly when the queue must be drained. docs/containers.md does not
    say so."""
    queue = Queue(store, "jobs", int)
    redis_client.rpush("jobs", *range(10))
    redis_client.config_set("maxmemory-policy", "noeviction")
    # full whatever else the session's server holds: a limit just under its used_memory
    # stopped being one when another test's idle connection closed meanwhile
    redis_client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            redis_client.rpush("jobs", 99)  # full: writes that may grow memory are refused
        assert queue.pop() == 0  # at most once: drains
        try:
            got = list(queue.consume(idle_timeout=0.3, poll=0.1, signals=(), max_items=3))
        except redmodel.ServerError as e:
            pytest.fail(f"consume() on a full server: {str(e)[:140]}")
        assert got == [1, 2, 3]
    finally:
        redis_client.config_set("maxmemory", 0)


def test_f2_async_trim_whose_reply_is_lost_is_not_applied_twice(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """FIXED (F2), the asyncio shell."""
    redis_client.rpush("jobs", 1, 2, 3, 4)

    async def main() -> None:
        store = redmodel.AsyncStore(aredis.Redis(host=proxy.host, port=proxy.port,
                                                 socket_timeout=SOCKET_TIMEOUT), resend=POLICY)
        proxy.lose_reply("LTRIM", when=has("jobs"))
        try:
            await Queue(store, "jobs", int).trim(1, -1)
        except redmodel.OutcomeUnknownError:
            pass
        finally:
            await store.aclose()

    asyncio.run(main())
    assert proxy.events
    assert redis_client.lrange("jobs", 0, -1) == [b"2", b"3", b"4"], (
        f"async trim(1, -1): the server holds {redis_client.lrange('jobs', 0, -1)}")


# ---- F8: exactly-once records keep every reply, popped values included ---------------------


def test_f8_exactly_once_keeps_about_180_bytes_per_write_not_the_popped_value(
        redis_url: str, redis_client: redis.Redis) -> None:
    """Fixed (F8: a record is deleted with the store's next call once its reply came; each
    store may have its own record prefix). failures.md "Its cost" promised ~180 bytes
    per write for write_id_ttl seconds. The record held the write's whole reply, so a pop kept the
    popped value itself (here 100 kB) for 60 s under ``redmodel:once:*``: memory grows with
    the size of what is popped, and the value outlives the queue (a ``clear()`` or a
    deletion does not reach it), in a key pattern every exactly-once app on the server must
    be granted (deploy.md: ``~redmodel:once:*``), so one ACL user can read what another
    popped."""
    store = redmodel.Store.from_url(redis_url, exactly_once=True)
    secret = "4111-1111-1111-1111 " + "x" * 100_000
    queue = Queue(store, ("tenant-a", "cards"), str)
    queue.push(secret)
    assert queue.pop() == secret
    queue.clear()
    kept = {k: redis_client.get(k) or b"" for k in redis_client.keys("redmodel:once:*")}
    holding = [k for k, v in kept.items() if b"4111-1111-1111-1111" in v]
    size = sum(len(v) for v in kept.values())
    store.close()
    assert not holding and size < 1_000, (
        f"after pop() and clear(), {len(holding)} record(s) still hold the popped value "
        f"({size} bytes kept under redmodel:once:*)")


# ---- F9: a waiting consumer dies on a failover ------------------------------------------


@pytest.mark.parametrize("how", ["consume()", "pop_blocking"])
def test_f9_a_consumer_waiting_on_a_primary_that_fails_over_goes_on(
        redis_replicated_cluster: RedisClusterServer, how: str) -> None:
    """FIXED (F9). failures.md: "a primary fails over (CLUSTER FAILOVER): writes to its
    slots get MOVED; the store updates its slot map and goes on"; issue 12 item 8: "redmodel
    follows the new primary without user code". A consumer (or pop_blocking) waiting on the
    old primary gets ``UNBLOCKED force unblock from blocking operation, instance state
    changed (master -> replica?)``, a reply that proves nothing ran, as a ServerError: the
    worker loop dies on every routine failover (the item is not lost, it waits on the new
    primary)."""
    cluster = redis_replicated_cluster
    client = cluster.client()
    store = redmodel.Store(client)
    key = f"jobs-{how[:4]}"
    queue = Queue(store, key, int)
    got: list[Any] = []

    def run() -> None:
        try:
            if how == "consume()":
                for item in queue.consume(idle_timeout=8, poll=5, signals=(), max_items=1,
                                          visibility_timeout=30):
                    got.append(item)
            else:
                got.append(queue.pop_blocking(8))
        except Exception as e:  # judged below
            got.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    node = client.get_node_from_key(key)
    cluster.failover(int(node.port))
    client.rpush(key, 7)
    worker.join(30)
    assert not worker.is_alive()
    store.close()
    assert got == [7], f"{how} across a failover: {[str(g)[:160] for g in got]}"


@pytest.mark.parametrize("how", ["consume()", "pop_blocking"])
def test_f9_a_consumer_waiting_on_a_slot_that_migrates_goes_on(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster, how: str) -> None:
    """FIXED (F9). failures.md: "a slot migrates | ASK then MOVED, followed"; "MOVED and
    ASK (the cluster's slot map is updated, the command goes to the right node)". A blocked
    BLMOVE/BLPOP whose slot is moved away is answered ``-MOVED`` by the server; redmodel
    raises it as ``ServerError: BLMOVE: 5024 127.0.0.1:port`` (the MOVED word even lost)
    and the worker loop dies."""
    key = f"mig-{how[:4]}"
    store = redmodel.Store(redis_cluster.client())
    queue = Queue(store, key, int)
    got: list[Any] = []

    def run() -> None:
        try:
            if how == "consume()":
                for item in queue.consume(idle_timeout=8, poll=5, signals=(), max_items=1):
                    got.append(item)
            else:
                got.append(queue.pop_blocking(8))
        except Exception as e:  # judged below
            got.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    slot = redis_cluster_client.keyslot(key)
    clients = {n.port: n.client() for n in redis_cluster.nodes}
    ids = {port: c.execute_command("CLUSTER MYID").decode() for port, c in clients.items()}
    source = int(redis_cluster_client.get_node_from_key(key).port)
    target = next(port for port in clients if port != source)

    def move(src: int, dst: int) -> None:
        clients[dst].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[src])
        clients[src].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[dst])
        keys = clients[src].execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        if keys:
            clients[src].execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
        for c in clients.values():
            c.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[dst])

    try:
        move(source, target)
        time.sleep(0.3)
        redis_cluster.client().rpush(key, 7)
        worker.join(30)
        assert not worker.is_alive()
        assert got == [7], f"{how} across a slot migration: {[str(g)[:160] for g in got]}"
    finally:
        move(target, source)  # put the slot back for other tests
        for c in clients.values():
            c.close()
        store.close()


# ---- F10: AsyncStore sends writes on connections the server already closed ------------------


@pytest.mark.parametrize("shell", ["sync", "async"])
@pytest.mark.parametrize("event", ["idle timeout", "server restart"])
def test_f10_a_write_after_the_server_dropped_an_idle_connection_is_applied_once(
        shell: str, event: str) -> None:
    """Fixed (F10; failed for the asyncio shell, the sync shell passed). The server closes
    an idle pooled connection (its ``timeout`` setting, a load balancer's idle timeout) or restarts
    while the app is idle. The next ``incr`` is written to the dead socket and raises
    ``OutcomeUnknownError`` ("may or may not have been applied ... read the keys first"),
    although nothing can have been applied; failures.md: "Nothing sent yet ...: nothing
    was applied. The round is tried again". The sync shell notices the dead connection
    before sending and returns 1."""
    with RedisServer() as server:
        server.client().hset("a12r:a", "n", 0)

        def prepare() -> None:
            if event == "idle timeout":
                server.client().config_set("timeout", 1)
                time.sleep(2.3)
            else:
                server.kill()
                server.restart()
                server.client().hset("a12r:a", "n", 0)

        if shell == "sync":
            store = redmodel.Store(redis.Redis(host=server.host, port=server.port))
            store.get(Counter, "a")
            prepare()
            value: Any = store.incr(Counter, "a", "n", 1)
            store.close()
        else:
            async def main() -> Any:
                astore = redmodel.AsyncStore(aredis.Redis(host=server.host, port=server.port))
                try:
                    await astore.get(Counter, "a")
                    prepare()
                    return await astore.incr(Counter, "a", "n", 1)
                except redmodel.OutcomeUnknownError as e:
                    return e
                finally:
                    await astore.aclose()

            value = asyncio.run(main())
        stored = server.client().hget("a12r:a", "n")
        assert (value, stored) == (1, b"1"), (
            f"{shell} incr after {event}: {value!r}; the server holds {stored!r}")


@pytest.mark.parametrize("how", ["incr", "transaction"])
def test_f10_an_idle_event_loop_also_gets_a_fresh_connection(how: str) -> None:
    """F10's kind: the event loop idles (``await asyncio.sleep``, so asyncio has read the
    EOF) while the server's ``timeout`` closes the pooled connection; redis-py 8.1's asyncio
    pool hands it out anyway (its check is ignored while maintenance notifications are
    ``auto``). The next incr, alone or in a transaction, goes on a new connection: applied
    once, no OutcomeUnknownError."""
    with RedisServer() as server:
        server.client().hset("a12r:a", "n", 0)

        async def main() -> Any:
            astore = redmodel.AsyncStore(aredis.Redis(host=server.host, port=server.port))
            try:
                await astore.get(Counter, "a")
                server.client().config_set("timeout", 1)
                await asyncio.sleep(2.3)
                if how == "incr":
                    return await astore.incr(Counter, "a", "n", 1)

                @redmodel.transaction(astore)
                async def bump(tx: redmodel.transactions.AsyncTransaction) -> Any:
                    await tx.get_or_raise(Counter, "a")
                    return tx.incr(Counter, "a", "n", 1)

                return (await bump()).value
            except redmodel.OutcomeUnknownError as e:
                return e
            finally:
                await astore.aclose()

        value = asyncio.run(main())
        assert (value, server.client().hget("a12r:a", "n")) == (1, b"1"), (
            f"async {how} after an idle close: {value!r}")


# ---- promises that held (regression tests) --------------------------------------------------


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply", "drop_request", "stall"])
def test_held_a_consumer_of_equal_values_loses_none_under_a_lost_take(
        proxy: FaultProxy, redis_client: redis.Redis, fault: str) -> None:
    """Held: equal values (the ack is an LREM by value) and a lost/cut/dropped/stalled take
    script: every item is handed out at least once and nothing is left behind."""
    store = _direct_store(proxy)
    redis_client.rpush("jobs", "X", "X", "Y")
    consumer = Queue(store, "jobs", str).consume(name="w1", idle_timeout=1.5, poll=0.2,
                                                 signals=())
    got = []
    for item in consumer:
        got.append(item)
        if len(got) == 1:
            _arm(proxy, fault, lambda name: name.startswith("EVAL"))
    assert proxy.quiet(10)
    time.sleep(0.2)
    assert collections.Counter(got)["X"] >= 2 and "Y" in got, got
    assert redis_client.keys("*") == [b"jobs:{jobs}:%container"]  # the queue's record
    store.close()


@pytest.mark.parametrize("kind", ["direct", "from_url"])
def test_held_a_reliable_consumer_across_server_kills_loses_nothing(kind: str) -> None:
    """Held: SIGKILL and restart (AOF written before each reply: tests/faults.py DURABLE)
    of the server three times while a consumer drains 300 items: every item handled, queue
    and in-flight lists empty."""
    n = 300
    with RedisServer(extra_args=DURABLE) as server:
        direct = server.client()
        store = (redmodel.Store(redis.Redis(host=server.host, port=server.port, socket_timeout=1))
                 if kind == "direct" else redmodel.Store.from_url(server.url, socket_timeout=1))
        queue = Queue(store, "jobs", int)
        direct.rpush("jobs", *range(n))
        seen: collections.Counter[int] = collections.Counter()
        errors: list[BaseException] = []

        def consume() -> None:
            while True:
                try:
                    for item in queue.consume(name="w", idle_timeout=2.0, poll=0.2, signals=(),
                                              visibility_timeout=5):
                        seen[item] += 1
                        time.sleep(0.005)
                    return
                except Exception as e:  # a consumer may give up; a new one takes over
                    errors.append(e)
                    time.sleep(0.3)

        worker = threading.Thread(target=consume)
        worker.start()
        for _ in range(3):
            time.sleep(0.4)
            server.kill()
            time.sleep(0.5)
            server.restart()
        worker.join(60)
        assert not worker.is_alive()
        assert [i for i in range(n) if not seen[i]] == []
        assert direct.keys("*") == [b"jobs:{jobs}:%container"]  # the queue's record
        assert all(isinstance(e, redis.RedisError) for e in errors), errors
        store.close()


def test_held_exactly_once_write_ids_stay_unique_across_fork(
        redis_url: str, redis_client: redis.Redis) -> None:
    """Held: an exactly-once store made before fork, used in 40 forked children at once:
    no child's write is mistaken for another's resend (each applied once)."""
    store = redmodel.Store.from_url(redis_url, exactly_once=True)
    store.save(Counter(id="a"))
    queue = Queue(store, "q", int)
    store.incr(Counter, "a", "n", 1)
    queue.push(0)
    children = []
    for i in range(40):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                store.incr(Counter, "a", "n", 1)
                queue.push(i + 1)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    assert redis_client.hget("a12r:a", "n") == b"41"
    assert sorted(int(x) for x in redis_client.lrange("q", 0, -1)) == list(range(41))
    store.close()


def test_held_new_id_unique_across_fork_and_threads() -> None:
    """Held: ids made in 300 forked children (3 each, right after fork) and by 6 threads."""
    read, write = os.pipe()
    ids = [redmodel.new_id() for _ in range(200)]
    children = []
    for _ in range(300):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(read)
            os.write(write, (" ".join(redmodel.new_id() for _ in range(3)) + "\n").encode())
            os._exit(0)
        children.append(pid)
        ids.append(redmodel.new_id())
    os.close(write)
    for pid in children:
        os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        ids.extend(pipe.read().decode().split())
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.extend(redmodel.new_id() for _ in range(5000)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids += out
    assert len(ids) == 200 + 300 * 4 + 30000
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("command", ["MULTI", "EXEC"])
@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply", "stall"])
def test_held_transaction_with_a_lost_multi_or_exec_reply_is_never_rerun(
        proxy: FaultProxy, redis_client: redis.Redis, fault: str, command: str) -> None:
    """Held: MULTI..EXEC go in one write, so a lost reply to MULTI (EXEC still forwarded)
    must not be taken as "lost before EXEC": OutcomeUnknownError, applied once."""
    redmodel.Store(redis_client).save(Counter(id="a"))
    store = _direct_store(proxy)

    @redmodel.transaction(store)
    def bump(tx: redmodel.transactions.Transaction) -> None:
        tx.get_or_raise(Counter, "a")
        tx.incr(Counter, "a", "n", 1)

    _arm(proxy, fault, command)
    with pytest.raises(redmodel.OutcomeUnknownError):
        bump()
    assert proxy.quiet(10)
    assert redis_client.hget("a12r:a", "n") == b"1"
    store.close()


def test_held_exactly_once_fenced_stalled_copies_never_apply(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """Held: every copy of an exactly-once incr stalled past the socket timeout; the policy
    gives up, fences, says "not applied" (plain error); the stalled copies then reach the
    server and apply nothing."""
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.3),
                           exactly_once=True,
                           resend=redmodel.ResendPolicy(attempts=3, backoff_base=0.01,
                                                        backoff_max=0.02, deadline=3,
                                                        write_id_ttl=30))
    redmodel.Store(redis_client).save(Counter(id="a"))
    proxy.stall(lambda name: name.startswith("EVAL"), 1.5, times=50, when=has("a12r:a"))
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)) as caught:
        store.incr(Counter, "a", "n", 1)
    assert not isinstance(caught.value, redmodel.OutcomeUnknownError)
    proxy.clear()
    assert proxy.quiet(10)
    time.sleep(0.2)
    assert redis_client.hget("a12r:a", "n") == b"0"
    store.close()


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply", "drop_request", "stall"])
def test_held_reads_are_retried_boundedly(proxy: FaultProxy, redis_client: redis.Redis,
                                          fault: str) -> None:
    """Held: a read under a fault that fires on every attempt is sent at most
    ResendPolicy.attempts times, then the plain error."""
    redmodel.Store(redis_client).save(Counter(id="a"))
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.3),
                           resend=redmodel.ResendPolicy(attempts=3, backoff_base=0.01,
                                                        backoff_max=0.02, deadline=5))
    calls = lambda: int(redis_client.info("commandstats")  # noqa: E731
                        .get("cmdstat_hgetall", {}).get("calls", 0))
    before = calls()
    _arm(proxy, fault, "HGETALL", times=100)
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        store.get(Counter, "a")
    proxy.clear()
    assert proxy.quiet(10)
    assert calls() - before <= 3
    store.close()


def _drain(server: RedisServer, during: Callable[[int], None]) -> tuple[list[int], str | None]:
    direct = server.client()
    store = redmodel.Store.from_url(server.url, socket_timeout=1)
    queue = Queue(store, "jobs", int)
    direct.rpush("jobs", *range(5))
    consumer = queue.consume(name="w", idle_timeout=0.5, poll=0.1, signals=(),
                             visibility_timeout=30)
    seen = []
    for item in consumer:
        seen.append(item)
        during(item)
    store.close()
    return sorted(seen), consumer.stopped_by


def test_an_outage_longer_than_idle_timeout_is_not_idle() -> None:
    """A reliable consumer whose server is down, while it waits, longer than
    ``idle_timeout`` with values in the queue does not stop as "idle": it drains them once
    the server is back (the held test above ended early under load when its outages added
    up to the timeout)."""
    with RedisServer(extra_args=DURABLE) as server:
        outage = threading.Thread(
            target=lambda: (server.kill(), time.sleep(1.5), server.restart()))

        def during(item: int) -> None:
            if not outage.is_alive() and outage.ident is None:
                outage.start()  # the consumer asks for the next value while it is down
                time.sleep(0.2)

        seen, stopped_by = _drain(server, during)
        # the first value may come twice (its acknowledgement was lost in the outage)
        assert sorted(set(seen)) == [0, 1, 2, 3, 4] and stopped_by == "idle"
        outage.join()


def test_a_loop_body_longer_than_idle_timeout_is_not_idle() -> None:
    """The loop body's time is not idle time: a handler slower than ``idle_timeout`` with
    values waiting does not end the loop."""
    with RedisServer() as server:
        assert _drain(server, lambda item: time.sleep(0.7 if item < 2 else 0)) == (
            [0, 1, 2, 3, 4], "idle")
