"""Issue 12, attack round s: a fresh attack on "nothing applied twice, nothing lost" after
rounds q and r were fixed, as a user with only the public docs (README, docs/failures.md,
containers.md, store.md, queries.md, transactions.md, deploy.md) and redmodel.testing.
Findings are in /work/notes/FINDINGS-12s.md.

Every test whose docstring starts with **FIXED** failed when the attack was made and now
pins its fix (all seven findings are fixed); the others pin what held up under this attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster

import redmodel
from redmodel._transport._wire import EVICTION_RECHECK
from redmodel.containers import Queue, SortedSet, WindowCounter
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, RedisServer, has
from tests.faults import FAST_RESEND, cluster_client, store_through

SOCKET_TIMEOUT = 0.3
POLICY = FAST_RESEND


@redmodel.model(prefix="a12s")
@attrs.define
class Counter:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a12sb", buckets=4)
@attrs.define
class Sku:
    qty: int = redmodel.field(index="range", default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


def _direct_store(proxy: FaultProxy, *, once: bool = False,
                  socket_timeout: float = SOCKET_TIMEOUT) -> redmodel.Store:
    return store_through(proxy, socket_timeout=socket_timeout, exactly_once=once, resend=POLICY)


def _is_release_of(value: bytes) -> Any:
    """The release (and confirmation) scripts' arguments: sha, numkeys, the value's
    claim hash, the value, the id; a claim adds the grace and more."""
    return lambda argv: len(argv) == 6 and argv[4] == value


def _sku_holders(store: redmodel.Store, value: str) -> list[str]:
    return sorted(o.id for o in store.find(Sku).all() if o.sku == value)


# ---- S1: a stale copy of a resent release frees a value its owner holds again ---------------

@pytest.mark.parametrize("how", ["save", "update", "save_many", "delete", "transaction"])
def test_s1_a_stale_release_copy_does_not_free_a_value_held_again(
        proxy: FaultProxy, redis_client: redis.Redis, how: str) -> None:
    """FIXED (S1, high): a resend now waits for the fence (CLIENT KILL ID of the connection
    that carried the first copy), so no stale copy lands later. queries.md: a claim
    "refuses a value another id holds"; failures.md:
    save/update are resent, "a stale copy may land later: same data"; queries.md: "A stale
    copy of a claim ... only marks the object's own claim unconfirmed again; the object still
    holds the value, so nobody can take it over". A save that gives a value up *releases*
    its claim, and that release is resent after a socket timeout like every other step. Its
    stalled first copy lands after the object took the value back: it deletes the object's
    new claim, and another object then saves the same unique value: two holders."""
    store = _direct_store(proxy)
    store.save(Sku(1, "X", id="a"))
    proxy.stall("EVALSHA", 1.5, when=_is_release_of(b"X"))
    if how == "save":
        store.save(Sku(1, "Y", id="a"))            # gives X up: its release is stalled, resent
    elif how == "update":
        assert store.update(Sku, "a", sku="Y") is True
    elif how == "save_many":
        assert store.save_many([Sku(1, "Y", id="a")]) == 1
    elif how == "delete":
        assert store.delete(Sku, "a") is True
    else:
        redmodel.transaction(store)(lambda tx: tx.save(Sku(1, "Y", id="a")))()
    assert [e.kind for e in proxy.events] == ["stall"], "the release was not stalled"
    store.save(Sku(1, "X", id="a"))                # takes X back (the same id)
    assert proxy.quiet(10)                         # the stale release reaches the server
    time.sleep(0.1)
    with contextlib.suppress(redmodel.RedmodelError):   # refused: X is a's
        store.save(Sku(2, "X", id="b"))
    holders = _sku_holders(redmodel.Store(redis_client), "X")
    store.close()
    assert holders == ["a"], (
        f"unique field sku: objects {holders} all hold 'X'; a stale copy of a's resent "
        f"release deleted the claim a made again afterwards")


def test_s1_cluster_a_stale_release_copy_does_not_free_a_value_held_again(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster) -> None:
    """FIXED (S1) on the cluster shell (ClusterFaultProxy, the claim's node stalled): the
    fence goes to the node the first copy went to."""
    proxies = ClusterFaultProxy(redis_cluster.addresses).start()
    try:
        host, port = proxies.startup_nodes[0]
        store = redmodel.Store(cluster_client(dict(host=host, port=port,
                                                   address_remap=proxies.address_remap,
                                                   socket_timeout=SOCKET_TIMEOUT), None),
                               resend=POLICY)
        store.save(Sku(1, "X", id="a"))
        claims = [k for k in (f"a12sb:{{{b}}}:%idx:uq:sku" for b in range(4))
                  if redis_cluster_client.hexists(k, "X")]
        node = redis_cluster_client.get_node_from_key(claims[0])
        proxy = proxies.proxy_for((node.host, int(node.port)))
        proxy.stall("EVALSHA", 1.5, when=_is_release_of(b"X"))
        store.save(Sku(1, "Y", id="a"))
        assert [e.kind for e in proxy.events] == ["stall"]
        store.save(Sku(1, "X", id="a"))
        assert proxy.quiet(10)
        time.sleep(0.1)
        with contextlib.suppress(redmodel.RedmodelError):
            store.save(Sku(2, "X", id="b"))
        holders = _sku_holders(redmodel.Store(redis_cluster_client), "X")
        store.close()
        assert holders == ["a"], f"objects {holders} all hold the unique value 'X'"
    finally:
        proxies.stop()


def test_s1_held_a_stale_release_after_another_id_took_the_value_changes_nothing(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """Held: the release only deletes a claim its own id holds, so a stale release landing
    after *another* object took the value leaves that object's claim alone."""
    store = _direct_store(proxy)
    store.save(Sku(1, "X", id="a"))
    proxy.stall("EVALSHA", 1.5, when=_is_release_of(b"X"))
    store.save(Sku(1, "Y", id="a"))
    store.save(Sku(2, "X", id="b"))
    assert proxy.quiet(10)
    time.sleep(0.1)
    with pytest.raises(redmodel.RedmodelError):
        store.save(Sku(3, "X", id="c"))
    assert _sku_holders(redmodel.Store(redis_client), "X") == ["b"]
    store.close()


# ---- S2: builtin exceptions from ordinary arguments -----------------------------------------

BUILTIN_CASES: dict[str, Any] = {
    "Queue.pop_blocking(math.inf)": lambda s: Queue(s, "jobs", int).pop_blocking(math.inf),
    "redmodel.containers.pop_blocking(q, timeout=math.inf)":
        lambda s: redmodel.containers.pop_blocking(Queue(s, "jobs", int), timeout=math.inf),
    "Queue.pop_blocking(1e10)": lambda s: Queue(s, "jobs", int).pop_blocking(1e10),
    "Queue.pop_blocking(10**30)": lambda s: Queue(s, "jobs", int).pop_blocking(10**30),
    "Queue.expire(math.inf)": lambda s: Queue(s, "jobs", int).expire(math.inf),
    "SortedSet.add(m, 10**400)": lambda s: SortedSet(s, "z", str).add("m", 10**400),
    "WindowCounter(window=nan).incr": lambda s: WindowCounter(s, "w", window=math.nan).incr("x"),
    "consume(visibility_timeout=math.inf)":
        lambda s: list(Queue(s, "jobs", int).consume(visibility_timeout=math.inf,
                                                     idle_timeout=0.2, poll=0.1, signals=())),
}


@pytest.mark.parametrize("case", list(BUILTIN_CASES))
def test_s2_ordinary_arguments_never_raise_a_builtin_exception(store: redmodel.Store,
                                                               case: str) -> None:
    """FIXED (S2, low-medium). Issue 12 item 4: "Every exception that leaves a redmodel call
    is one of those two kinds" (redmodel or redis-py); failures.md: "No builtin ... leaves
    redmodel", a bad argument is a ``ValidationError`` "before anything is sent". An infinite
    timeout (the natural spelling of "wait forever"), a huge one, an infinite expiry, a score
    too large for a double, a NaN window raise builtin OverflowError/ValueError. (The same
    values given to ``store.expire``/``SortedSet.add(nan)`` are ValidationErrors.)"""
    try:
        BUILTIN_CASES[case](store)
    except (redmodel.RedmodelError, redis.RedisError):
        pass
    except Exception as e:  # judged here
        pytest.fail(f"{case} raised the builtin {type(e).__name__}: {e}")


MORE_CASES: dict[str, Any] = {
    "pop_blocking(async-sized 1e20)": lambda s: Queue(s, "jobs", int).pop_blocking(1e20),
    "consume(poll=math.inf)": lambda s: Queue(s, "jobs", int).consume(poll=math.inf),
    "consume(idle_timeout=nan)": lambda s: Queue(s, "jobs", int).consume(idle_timeout=math.nan),
    "consume(visibility_timeout=math.inf)":
        lambda s: Queue(s, "jobs", int).consume(visibility_timeout=math.inf),
    "consume(max_items='3')": lambda s: Queue(s, "jobs", int).consume(max_items="3"),
    "Queue.range(10**30)": lambda s: Queue(s, "jobs", int).range(0, 10**30),
    "Queue.trim(2**63)": lambda s: Queue(s, "jobs", int).trim(0, 2**63),
    "Queue.expire(1e300)": lambda s: Queue(s, "jobs", int).expire(1e300),
    "SortedSet.incr(m, -10**400)": lambda s: SortedSet(s, "z", str).incr("m", -10**400),
    "SortedSet.range_by_score('(nan')": lambda s: SortedSet(s, "z", str).range_by_score("(nan"),
    "SortedSet.range_by_score(count=2**64)":
        lambda s: SortedSet(s, "z", str).range_by_score(count=2**64),
    "SortedSet.pop_min(10**30)": lambda s: SortedSet(s, "z", str).pop_min(10**30),
    "WindowCounter(window=inf)": lambda s: WindowCounter(s, "w", window=math.inf),
    "WindowCounter.key_for(at=inf)": lambda s: WindowCounter(s, "w").key_for("x", math.inf),
    "WindowCounter.key_for(at=10**400)":
        lambda s: WindowCounter(s, "w").key_for("x", 10**400),
    "WindowCounter.incr(amount=2**63)": lambda s: WindowCounter(s, "w").incr("x", 2**63),
    "Store(chunk_size=0)": lambda s: redmodel.Store(s.client, chunk_size=0),
    "save_many(chunk_size=-1)": lambda s: s.save_many([Counter(id="a")], chunk_size=-1),
    "ResendPolicy(write_id_ttl=math.inf)": lambda s: redmodel.ResendPolicy(write_id_ttl=math.inf),
    "ResendPolicy(attempts=None)": lambda s: redmodel.ResendPolicy(attempts=None),
    "RetryPolicy(backoff_max=nan)":
        lambda s: redmodel.transactions.RetryPolicy(backoff_max=math.nan),
}


@pytest.mark.parametrize("case", list(MORE_CASES))
def test_s2_fixed_every_numeric_argument_is_checked_before_sending(
        own_store: redmodel.Store, own_client: redis.Redis, case: str) -> None:
    """Fixed (S2): the other numeric arguments of public methods, found by going through
    each one taking a number or a timedelta: a NaN, an infinity, a wrong type or a value out
    of range is a ``ValidationError`` raised before anything is sent (failures.md). (Counted
    on a server of this file's own: the session's server counts every file's commands.)"""
    before = int(own_client.info("stats")["total_commands_processed"])
    with pytest.raises(redmodel.ValidationError):
        MORE_CASES[case](own_store)
    after = int(own_client.info("stats")["total_commands_processed"])
    assert after == before + 1, "something was sent before the argument was refused"


def test_s2_held_store_expire_of_infinity_is_a_validation_error(store: redmodel.Store) -> None:
    """Held (for contrast): the Store's own expire and a NaN score are ValidationErrors."""
    store.save(Counter(id="a"))
    with pytest.raises(redmodel.ValidationError):
        store.expire(Counter, "a", math.inf)
    with pytest.raises(redmodel.ValidationError):
        SortedSet(store, "z", str).add("m", math.nan)


def test_s2_a_long_visibility_timeout_does_not_kill_the_heartbeat_thread(
        store: redmodel.Store) -> None:
    """FIXED (S2). ``consume(visibility_timeout=1e12)`` (a consumer that should never be taken
    for dead) runs, but its heartbeat thread dies at once with an uncaught builtin
    ``OverflowError: timestamp out of range for platform time_t`` printed to stderr."""
    died: list[BaseException] = []
    old = threading.excepthook
    threading.excepthook = lambda args: died.append(args.exc_value)  # type: ignore[assignment]
    try:
        Queue(store, "jobs", int).push(1)
        assert list(Queue(store, "jobs", int).consume(visibility_timeout=1e12, idle_timeout=0.2,
                                                      poll=0.1, signals=())) == [1]
    finally:
        threading.excepthook = old
    assert not died, f"the heartbeat thread died: {died[0]!r}"


# ---- S3: a sorted-set pop's put-back is not atomic with the pop -----------------------------

@pytest.mark.parametrize("once", [False, True], ids=["plain", "exactly_once"])
def test_s3_a_pop_meeting_an_undecodable_member_never_takes_out_the_others(
        proxy: FaultProxy, redis_client: redis.Redis, once: bool) -> None:
    """Was FAILS (S3, low-medium): the pop, the set-aside and the put-back (``ZADD NX``)
    were separate round trips, so a ``ZINCRBY`` by another client in between lost the
    popped score (member "1" ended with 5, not 1 + 5), a ``ZREM`` was undone.

    Decided (containers.md): a pop reads the members at its end, decodes them, and pops in
    one script only members it read and decoded; when one does not decode, that script
    moves it alone to ``%rejected`` and takes nothing else. Here the script is held on the
    wire while other clients change the set: the members that decode never leave it, so
    the increment and the removal made meanwhile stand."""
    store = _direct_store(proxy, once=once, socket_timeout=3.0)
    redis_client.zadd("z", {b"1": 1, b"two": 2, b"3": 3, b"4": 4})
    proxy.stall("EVALSHA", 0.6)
    errors: list[BaseException] = []

    def pop() -> None:
        try:
            SortedSet(store, "z", int).pop_min(3)
        except redmodel.DecodeError as e:
            errors.append(e)

    t = threading.Thread(target=pop)
    t.start()
    assert proxy.wait_fired(1, timeout=2.0)
    assert redis_client.zscore("z", b"1") == 1.0             # read, not taken out
    assert redis_client.zincrby("z", 5, b"1") == 6.0         # another client's increment
    assert redis_client.zrem("z", b"3") == 1                 # and removal
    t.join(5)
    store.close()
    assert errors, "the pop did not raise DecodeError"
    assert "took nothing else" in str(errors[0])
    assert redis_client.zrange("z:{z}:%rejected", 0, -1, withscores=True) == [(b"two", 2.0)]
    assert redis_client.zrange("z", 0, -1, withscores=True) == [(b"4", 4.0), (b"1", 6.0)], (
        "a member that decodes was taken out and put back: a concurrent change was lost "
        "or undone")
    # the next pop returns what decodes, in order
    again = redmodel.Store(redis_client, exactly_once=once)
    assert SortedSet(again, "z", int).pop_min(5) == [(4, 4.0), (1, 6.0)]


def test_s3_a_pop_takes_the_lowest_members_as_they_are_when_it_runs(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """Fixed (S3): members added at the popping end, or popped by another client, between
    the pop's read and its script are not skipped or taken twice: the script pops only the
    members it was told decode and that are still at that end, and the pop reads again."""
    store = _direct_store(proxy, socket_timeout=3.0)
    redis_client.zadd("z", {b"5": 5, b"6": 6, b"7": 7})
    proxy.stall("EVALSHA", 0.6)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(SortedSet(store, "z", int).pop_min(2)))
    t.start()
    assert proxy.wait_fired(1, timeout=2.0)
    redis_client.zadd("z", {b"1": 1})                        # a new lowest member
    assert redis_client.zpopmin("z") == [(b"1", 1.0)]        # taken again by another pop
    redis_client.zadd("z", {b"0": 0})
    t.join(5)
    store.close()
    assert got == [[(0, 0.0), (5, 5.0)]]
    assert redis_client.zrange("z", 0, -1) == [b"6", b"7"]


# ---- S4: save_many refused on a wrong-typed key does not say what was written ---------------

@redmodel.model(prefix="a12se")
@attrs.define
class Opt:
    n: int = 0
    tag: str | None = None
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("model", [Counter, Opt], ids=["HSET", "script"])
def test_s4_save_many_refused_by_a_wrong_typed_key_names_written_and_not_written(
        store: redmodel.Store, redis_client: redis.Redis, model: Any) -> None:
    """FIXED (S4, medium). store.md: "An object the server refuses (a unique value taken, a
    wrong-typed key) stops the call after its chunk: the error says which objects were
    written and which not, and carries their keys (.written, .not_written)". A unique value
    taken does; a wrong-typed key gives a bare ServerError with ``written``/``not_written``
    None, though k0..k2 were written and k4, k5 were not: the caller cannot tell what to
    redo."""
    prefix = "a12s" if model is Counter else "a12se"
    redis_client.set(f"{prefix}:k3", "not a hash")
    ids = [f"k{i}" for i in range(6)]
    with pytest.raises(redmodel.ServerError) as caught:
        store.save_many([model(n=7, id=i) for i in ids], chunk_size=2)
    written = sorted(k.decode() for k in redis_client.keys(f"{prefix}:*")
                     if redis_client.type(k) == b"hash" and b"%" not in k)  # not the registry
    assert written == [f"{prefix}:k0", f"{prefix}:k1", f"{prefix}:k2"]
    e = caught.value
    assert getattr(e, "written", None) is not None and getattr(e, "not_written", None), (
        f"ServerError for a refused save_many carries written={getattr(e, 'written', None)!r},"
        f" not_written={getattr(e, 'not_written', None)!r}; the server holds {written}")
    assert sorted(e.written) == written
    assert sorted(e.not_written) == [f"{prefix}:k3", f"{prefix}:k4", f"{prefix}:k5"]


def test_s4_cluster_save_many_refused_on_one_node_names_what_the_others_wrote(
        redis_cluster_client: RedisCluster) -> None:
    """FIXED (S4) on the cluster: one node's wrong-typed key; the other nodes' objects are
    written, the error does not say so."""
    store = redmodel.Store(redis_cluster_client)
    ids = [f"k{i}" for i in range(12)]
    redis_cluster_client.set("a12s:k5", "not a hash")
    with pytest.raises(redmodel.ServerError) as caught:
        store.save_many([Counter(n=7, id=i) for i in ids])
    written = [i for i in ids if redis_cluster_client.type(f"a12s:{i}") == b"hash"]
    assert written, "nothing was written"
    assert getattr(caught.value, "written", None) is not None, (
        f"objects {written} were written; the error's .written is None")


def test_s4_delete_many_with_a_chunk_of_unknown_outcome_lists_it_in_neither(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """Fixed (S4): a chunk whose reply is lost (a counted delete is never resent) raises
    OutcomeUnknownError carrying ``.written`` (the earlier chunks) and ``.not_written``
    (the chunks never sent); the chunk whose outcome is unknown is in neither list, and
    its keys are the error's ``.keys`` (store.md)."""
    store = store_through(proxy, socket_timeout=SOCKET_TIMEOUT, chunk_size=2, resend=POLICY)
    ids = [f"k{i}" for i in range(6)]
    store.save_many([Counter(n=1, id=i) for i in ids])
    proxy.lose_reply("DEL", when=has("a12s:k2"))
    with pytest.raises(redmodel.OutcomeUnknownError) as caught:
        store.delete_many(Counter, ids)
    store.close()
    e = caught.value
    assert e.written == ("a12s:k0", "a12s:k1")
    assert e.not_written == ("a12s:k4", "a12s:k5")
    assert set(e.keys) <= {"a12s:k2", "a12s:k3"} and "a12s:k2" in e.keys
    assert [k.decode() for k in sorted(redis_client.keys("a12s:*"))
            if "%" not in k.decode()] == ["a12s:k4", "a12s:k5"]  # (the registry's record)


# ---- S5: an EvictionPolicyError is remembered after the policy is fixed ---------------------

RECHECK = EVICTION_RECHECK + 0.1


def test_s5_a_refusal_is_asked_again_at_most_once_a_second(redis_client: redis.Redis) -> None:
    """Fixed (S5): within EVICTION_RECHECK of a refusal, another exactly-once write to that
    node is refused again without asking (no INFO: the command count does not move), and
    after it the store asks once more."""
    with RedisServer(extra_args=("--maxmemory-policy", "volatile-lru")) as server:
        store = redmodel.Store(server.client(), exactly_once=True)
        admin = server.client()

        def infos() -> int:
            stats = admin.info("commandstats")
            return int(stats.get("cmdstat_info", {}).get("calls", 0))

        with pytest.raises(redmodel.EvictionPolicyError):
            store.incr(Counter, "a", "n", 1)
        before = infos()
        for _ in range(5):
            with pytest.raises(redmodel.EvictionPolicyError):
                store.incr(Counter, "a", "n", 1)
        assert infos() == before + 1  # only this test's own INFO commandstats
        time.sleep(RECHECK)
        with pytest.raises(redmodel.EvictionPolicyError):
            store.incr(Counter, "a", "n", 1)
        assert infos() == before + 3  # the previous look, the store's INFO memory
        store.close()


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_s5_a_store_refused_for_its_eviction_policy_works_once_the_policy_is_fixed(
        shell: str) -> None:
    """FIXED (S5, low-medium, liveness). failures.md/store.md: an evicting policy is refused
    with EvictionPolicyError, whose message says "Set maxmemory-policy noeviction, or pass
    ... allow_eviction=True". An operator does set it (``CONFIG SET maxmemory-policy
    noeviction``), but the store looked once and keeps refusing every exactly-once write
    for the rest of its life: the app must be restarted. (The refusal sent nothing, so
    looking again costs one INFO per refused write.)

    Decided (fix): a refusing node is asked again (one INFO) at most once per
    ``EVICTION_RECHECK`` (1 s) per node, so a retry loop against a misconfigured server does
    not send an INFO per attempt; the test waits that long after fixing the policy, and
    checks that a second refusal within it is still a refusal (nothing sent)."""
    with RedisServer(extra_args=("--maxmemory-policy", "volatile-lru")) as server:
        admin = server.client()
        redmodel.Store(admin).save(Counter(id="a"))

        if shell == "sync":
            store = redmodel.Store(server.client(), exactly_once=True)
            with pytest.raises(redmodel.EvictionPolicyError):
                store.incr(Counter, "a", "n", 1)
            admin.config_set("maxmemory-policy", "noeviction")
            time.sleep(RECHECK)
            try:
                result: Any = store.incr(Counter, "a", "n", 1)
            except redmodel.EvictionPolicyError as e:
                result = e
            store.close()
        else:
            async def main() -> Any:
                astore = redmodel.AsyncStore(aredis.Redis(host=server.host, port=server.port),
                                             exactly_once=True)
                try:
                    with pytest.raises(redmodel.EvictionPolicyError):
                        await astore.incr(Counter, "a", "n", 1)
                    admin.config_set("maxmemory-policy", "noeviction")
                    await asyncio.sleep(RECHECK)
                    try:
                        return await astore.incr(Counter, "a", "n", 1)
                    except redmodel.EvictionPolicyError as e:
                        return e
                finally:
                    await astore.aclose()
            result = asyncio.run(main())
        assert result == 1, (
            f"after CONFIG SET maxmemory-policy noeviction the store still refuses: {result}")


# ---- S6: the blocking pops' dedicated clients pile up and outlive the store -----------------

def _floor(client: redis.Redis) -> int:
    """The id of ``client``'s own connection: connections opened later have larger ids
    (``CLIENT ID`` grows), so a count above it ignores other tests' connections that close
    while this test runs (counting ``connected_clients`` went to -1 in CI that way)."""
    return int(client.client_id())


def _opened_since(client: redis.Redis, floor: int) -> int:
    """How many connections opened after ``floor`` are still open (``CLIENT LIST``)."""
    return sum(1 for info in client.client_list() if int(info["id"]) > floor)


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_s6_closing_the_store_closes_the_blocking_pops_connections(
        redis_url: str, redis_client: redis.Redis, shell: str) -> None:
    """FIXED (S6, medium). deploy.md: "A ``with`` block closes the connections";
    "``aclose()`` (or ``async with``) closes it". A store that made one ``pop_blocking``
    leaves its dedicated connection open after the block (sync: until the store object is
    garbage-collected; asyncio: still open after ``aclose()``)."""
    base = _floor(redis_client)
    redis_client.rpush("jobs", 1, 2, 3)
    if shell == "sync":
        with redmodel.Store.from_url(redis_url) as store:
            queue = Queue(store, "jobs", int)
            assert queue.pop_blocking(0.5) == 1
            assert queue.pop_blocking(1.5) == 2
            assert queue.pop_blocking(2.5) == 3
            during = _opened_since(redis_client, base)
        time.sleep(0.2)
        left = _opened_since(redis_client, base)
        del store, queue
    else:
        async def main() -> tuple[int, int]:
            async with redmodel.AsyncStore.from_url(redis_url) as astore:
                aqueue = Queue(astore, "jobs", int)
                assert await aqueue.pop_blocking(0.5) == 1
                assert await aqueue.pop_blocking(1.5) == 2
                assert await aqueue.pop_blocking(2.5) == 3
                n = _opened_since(redis_client, base)
            await asyncio.sleep(0.2)
            return n, _opened_since(redis_client, base)
        during, left = asyncio.run(main())
    assert during >= 1, "the blocking pops opened no connection: nothing was measured"
    assert left == 0, f"{left} connections of the closed store are still open on the server"


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_s6_blocking_pops_with_varying_timeouts_do_not_open_a_connection_each(
        redis_server: RedisServer, redis_client: redis.Redis, shell: str) -> None:
    """FIXED (S6). containers.md: the dedicated clients "are cached per store client, node and
    socket timeout" (``ceil(timeout) + 5``). A worker whose timeout varies (a backoff, a
    random jitter, what is left of a long deadline) gets a new client, and a new open
    connection, for every distinct whole second, kept for the store's life: 60 pops with
    timeouts 0.5 .. 59.5 hold 60 connections (the server's ``maxclients`` is the limit)."""
    redis_client.rpush("jobs", *range(60))
    base = _floor(redis_client)
    if shell == "sync":
        store = redmodel.Store(redis.Redis(host=redis_server.host, port=redis_server.port))
        queue = Queue(store, "jobs", int)
        for k in range(60):
            assert queue.pop_blocking(k + 0.5) == k
        grown = _opened_since(redis_client, base)
        store.close()
    else:
        async def main() -> int:
            astore = redmodel.AsyncStore(aredis.Redis(host=redis_server.host,
                                                      port=redis_server.port))
            aqueue = Queue(astore, "jobs", int)
            for k in range(60):
                assert await aqueue.pop_blocking(k + 0.5) == k
            n = _opened_since(redis_client, base)
            await astore.aclose()
            return n
        grown = asyncio.run(main())
    assert grown <= 5, f"60 blocking pops (one at a time) left {grown} connections open"


# ---- held: what this attack could not break -------------------------------------------------

def test_held_a_fence_that_finds_the_write_applied_leaves_a_mark_for_stalled_copies(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """Held: exactly-once incr, first copy applied with its reply lost, every resend stalled
    past the socket timeout; the fence finds the record and returns the reply; the next call
    cuts the record to a ``D`` mark (not deleted), so the stalled copies apply nothing."""
    redmodel.Store(redis_client).save(Counter(id="a"))
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.3),
                           exactly_once=True,
                           resend=redmodel.ResendPolicy(attempts=3, backoff_base=0.01,
                                                        backoff_max=0.02, deadline=2,
                                                        write_id_ttl=30))
    store.get(Counter, "a")
    proxy.lose_reply("EVALSHA", when=has("a12s:a"))
    proxy.stall("EVALSHA", 2.0, times=50, when=has("a12s:a"))
    assert store.incr(Counter, "a", "n", 1) == 1
    store.get(Counter, "b")                              # tidies the record
    assert [redis_client.get(k) for k in redis_client.keys("redmodel:once:*")] == [b"D"]
    proxy.clear()
    assert proxy.quiet(10)
    time.sleep(0.1)
    assert redis_client.hget("a12s:a", "n") == b"1"
    store.close()


def test_held_a_stale_claim_copy_aged_past_the_grace_does_not_let_another_id_take_the_value(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """Held: a's claim, stalled and resent, is fenced first (CLIENT KILL ID), so its stale
    copy never lands: the claim stays confirmed. (Before the fence the copy landed and
    marked a's claim unconfirmed.) A claim of a's left unconfirmed all the same (a copy
    that landed after an OutcomeUnknownError), even once older than CLAIM_GRACE_MS
    (simulated by writing an aged timestamp), still refuses b's save: a holds X."""
    store = _direct_store(proxy)
    store.save(Sku(1, "Y", id="a"))
    proxy.stall("EVALSHA", 1.5, when=lambda argv: len(argv) == 8 and argv[4] == b"X")
    store.save(Sku(1, "X", id="a"))
    assert [e.kind for e in proxy.events] == ["stall"]
    assert proxy.quiet(10)
    time.sleep(0.1)
    key = next(f"a12sb:{{{b}}}:%idx:uq:sku" for b in range(4)
               if redis_client.hexists(f"a12sb:{{{b}}}:%idx:uq:sku", "X"))
    owner, stamp = redis_client.hget(key, "X").split(b"\x1f")
    assert owner == b"a" and stamp == b"C"               # the stale copy was fenced
    aged = int(redis_client.time()[0]) * 1000 - 11_000
    redis_client.hset(key, "X", owner + b"\x1f" + str(aged).encode())
    with pytest.raises(redmodel.RedmodelError):
        store.save(Sku(2, "X", id="b"))
    assert _sku_holders(redmodel.Store(redis_client), "X") == ["a"]
    store.close()


def test_held_concurrent_async_blocking_pops_each_get_their_own_queue(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """Held: 20 concurrent ``pop_blocking`` tasks on one AsyncStore, values pushed in reverse
    order: each task gets its own queue's value (no shared connection, no crossed replies)."""
    async def main() -> list[Any]:
        astore = redmodel.AsyncStore(aredis.Redis(host=redis_server.host,
                                                  port=redis_server.port))
        tasks = [asyncio.create_task(Queue(astore, f"k{i}", int).pop_blocking(2))
                 for i in range(20)]
        await asyncio.sleep(0.3)
        for i in reversed(range(20)):
            redis_client.rpush(f"k{i}", i)
        got = await asyncio.gather(*tasks)
        await astore.aclose()
        return got
    assert asyncio.run(main()) == list(range(20))


# ---- S7: a stale copy of a resent save/expire undoes a later delete/persist -----------------

@redmodel.model(prefix="a12si")
@attrs.define
class Indexed:
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("once", [False, True], ids=["off", "exactly_once"])
@pytest.mark.parametrize("case", ["expire then persist", "save then delete",
                                  "indexed save then delete"])
def test_s7_a_stale_copy_of_a_resent_write_does_not_undo_a_later_write(
        proxy: FaultProxy, redis_client: redis.Redis, case: str, once: bool) -> None:
    """FIXED (S7, medium-high): fenced before it is resent, in both modes. Was: failures.md's
    table: save/expire under a stall "returns; once (a
    stale copy may land later: same data)"; issue 12: resent writes are those "whose second
    application changes nothing". "Where the guarantee ends" admits a stale save landing
    after a later *save*. But the stale copy also lands after a later ``delete`` (the deleted
    object comes back, index entries included) or ``persist`` (the object gets its expiry back
    and vanishes): a second application that changes everything, in exactly-once mode too,
    where the user was told each write is applied exactly once."""
    store = _direct_store(proxy, once=once)
    # (fix 32D) a save with no ttl, an expiry: fragile writes, under a write id in
    # exactly-once mode (sent as EVALSHA); with the mode off the resend writes only over
    # the object, and a new object's first copy fenced while held leaves it missing:
    # OutcomeUnknownError naming the key (docs/failures.md, "Resent writes and missing
    # objects"), then the delete finds nothing
    unknown = not once and case != "expire then persist"
    if case == "expire then persist":
        store.save(Counter(id="a"))
        proxy.stall(lambda name: name in ("PEXPIRE", "EVALSHA"), 1.0, when=has("a12s:a"))
        assert store.expire(Counter, "a", 100) is True
        assert store.persist(Counter, "a") is True
    elif case == "save then delete":
        proxy.stall(lambda name: name in ("HSET", "EVALSHA"), 1.0, when=has("a12s:a"))
        with pytest.raises(redmodel.OutcomeUnknownError) if unknown else contextlib.nullcontext():
            store.save(Counter(n=5, id="a"))
        assert store.delete(Counter, "a") is (not unknown)
    else:
        proxy.stall(lambda name: name.startswith("EVAL"), 1.0, when=has("a12si:a"))
        with pytest.raises(redmodel.OutcomeUnknownError) if unknown else contextlib.nullcontext():
            store.save(Indexed(n=5, id="a"))
        assert store.delete(Indexed, "a") is (not unknown)
    assert [e.kind for e in proxy.events] == ["stall"]
    assert proxy.quiet(10)
    time.sleep(0.1)
    if case == "expire then persist":
        state = store.ttl(Counter, "a")
        assert state is None, f"persisted, then the stale PEXPIRE landed: ttl {state}"
    else:
        model = Counter if case == "save then delete" else Indexed
        state = store.get(model, "a")
        assert state is None, f"deleted, then the stale save landed: {state} is back"
    store.close()


def test_s7_a_stale_save_copy_after_a_delete_breaks_a_unique_constraint(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """FIXED (S7, via S1's consequence): on a bucketed unique model the resurrected object
    still holds its unique value, whose claim its delete released and another object took:
    two holders of one unique value."""
    store = _direct_store(proxy)
    proxy.stall("EVALSHA", 1.0, when=lambda argv: len(argv) > 10 and b"X" in argv)
    # (fix 32D) the write step: held, fenced; its resend writes only over the object,
    # which the held first copy never made: OutcomeUnknownError naming the key
    # (docs/failures.md, "Resent writes and missing objects"), and the delete finds nothing
    with pytest.raises(redmodel.OutcomeUnknownError):
        store.save(Sku(1, "X", id="a"))
    assert [e.kind for e in proxy.events] == ["stall"]
    assert store.delete(Sku, "a") is False
    # a's claim of X, made before its unknown write, holds X for CLAIM_GRACE_MS: b may be
    # refused meanwhile (never two holders)
    with contextlib.suppress(redmodel.UniqueViolationError):
        store.save(Sku(2, "X", id="b"))
    assert proxy.quiet(10)
    time.sleep(0.1)
    holders = _sku_holders(redmodel.Store(redis_client), "X")
    store.close()
    assert len(holders) <= 1, f"objects {holders} all hold the unique value 'X'"
