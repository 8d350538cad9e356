"""The fault matrix: every write method x every fault x every shell x both client retry
settings x exactly-once off and on, through redmodel.testing's fault-injection proxy.

Each test runs every method of :data:`CASES` (each on its own keys, the faults keyed on
them, so they run side by side) and reads the server afterwards, directly: a write that
returned was applied exactly once; one that raised ``OutcomeUnknownError`` was applied at
most once (and exactly as the fault implies: a dropped request never, a lost, cut or
stalled reply once); a plain ``ConnectionError`` means "not applied, safe to call again".
Never twice. In exactly-once mode every write returns and is applied exactly once.
docs/failures.md has the same matrix as a table.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

import redmodel
from redmodel._indexes._writes import unique_lines
from redmodel._models._specs import spec_of
from redmodel.containers import Queue, Set, SortedSet, WindowCounter
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, RedisServer, has
from tests.faults import FAST_RESEND, cluster_client

SOCKET_TIMEOUT = 0.4
STALL = 0.9
POLICY = FAST_RESEND
FAULTS = ("lose_reply", "cut_reply", "drop_request", "stall", "refuse")
SHELLS = ("sync", "async", "cluster", "async_cluster")
RETRIES = ("redis-py default", "none")
MODES = ("at-most-once", "exactly-once")
READS = frozenset({"WATCH", "UNWATCH", "HGETALL", "HGET", "EXISTS", "GET", "PTTL", "LRANGE",
                   "SMEMBERS", "ZRANGE", "ZSCORE", "SCRIPT", "CLUSTER", "HELLO", "PING",
                   "MULTI", "EXEC", "ASKING"})
_ids = itertools.count()


@redmodel.model(prefix="fm")
@attrs.define
class Item:
    id: str = redmodel.key_field(generated=False)
    quantity: int = 0
    n: int = 0


@redmodel.model(prefix="fmu", buckets=4)
@attrs.define
class Sku:
    """A bucketed model with a unique field: its saves claim the value in the value's own
    bucket first (docs/queries.md), then write, then confirm the claim."""

    id: str = redmodel.key_field(generated=False)
    sku: str | None = redmodel.field(unique=True, default=None)
    qty: int = redmodel.field(index="range", default=0)


def _claim_key(value: str) -> str:
    """The claim hash of a unique ``sku`` value: the fault is keyed on the claim step."""
    spec = spec_of(Sku)
    ((name, text),) = unique_lines(spec, {"sku": value, "qty": 0})
    return spec.claim_key(name, text)


def _sku(direct: Any, k: str) -> tuple[int, str | None, bool] | None:
    """(qty, sku, whether get_by finds the object by its sku) of object ``k``."""
    found = direct.get(Sku, k)
    if found is None:
        return None
    return found.qty, found.sku, direct.get_by(Sku, sku=found.sku) == found


def _sku_unique(direct: Any, k: str) -> bool:
    """The object's value stays its own: another object cannot take it."""
    found = direct.get(Sku, k)
    if found is None or found.sku is None:
        return True
    try:
        direct.save(Sku(id=k + "-thief", sku=found.sku))
    except redmodel.UniqueViolationError:
        return True
    return False


def _clock() -> float:
    return 1_000_000_000.0


@attrs.frozen
class Case:
    """One write method: ``seed(direct, k)`` prepares its keys, ``act(store, k)`` calls it
    (returning a value or, on an AsyncStore, an awaitable), ``observe(direct, k)`` reads
    what the server holds; ``before``/``after`` are that state without and with the write
    applied once, ``result`` what the method returns then; ``key(k)`` is the key its
    fault is keyed on. ``idempotent``: resent by redmodel after a lost reply."""

    name: str
    act: Callable[[Any, str], Any]
    observe: Callable[[Any, str], Any]
    before: Any
    after: Any
    result: Any
    idempotent: bool = False
    seed: Callable[[Any, str], Any] = lambda direct, k: None
    key: Callable[[str], str] = lambda k: f"fm:{k}"
    consistent: Callable[[Any, str], bool] = lambda direct, k: True
    blocking: bool = False  # a blocking pop: no write id, not resent, no connect retry
    # a save with no ttl of a new object (fix 32D, docs/failures.md "Resent writes and
    # missing objects"): with the mode off its resend writes only over the object, so a
    # first copy that never ran leaves it missing and the call raises OutcomeUnknownError
    fragile_new: bool = False
    # the state it may leave then, when not "before" (save_many on a cluster: the other
    # object lives on a node without the fault and is written)
    unknown_state: Callable[[Any, str], bool] | None = None


def _item(direct: Any, k: str) -> tuple[int, int] | None:
    found = direct.get(Item, k)
    return None if found is None else (found.quantity, found.n)


def _seed(quantity: int = 10) -> Callable[[Any, str], Any]:
    return lambda direct, k: direct.save(Item(id=k, quantity=quantity))


def _q(store: Any, k: str) -> Queue[int]:
    return Queue(store, ("fq", k), int)


def _s(store: Any, k: str) -> Set[str]:
    return Set(store, ("fs", k), str)


def _z(store: Any, k: str) -> SortedSet[str]:
    return SortedSet(store, ("fz", k), str)


def _w(store: Any, k: str) -> WindowCounter:
    return WindowCounter(store, ("fw", k), window=3600, clock=_clock)


def _transaction(store: Any, k: str) -> Any:
    if isinstance(store, redmodel.AsyncStore):
        @redmodel.transaction(store)
        async def buy_async(tx: redmodel.transactions.AsyncTransaction) -> Any:
            item = await tx.get_or_raise(Item, k)
            return tx.incr(Item, k, "quantity", -1), item.quantity

        async def run() -> Any:
            pending, seen = await buy_async()
            return pending.value, seen

        return run()

    @redmodel.transaction(store)
    def buy(tx: redmodel.transactions.Transaction) -> Any:
        item = tx.get_or_raise(Item, k)
        return tx.incr(Item, k, "quantity", -1), item.quantity

    pending, seen = buy()
    return pending.value, seen


def _members(direct: Any, k: str) -> set[str]:
    return _s(direct, k).members()


CASES = [
    Case("save", lambda st, k: st.save(Item(id=k, quantity=7)), _item, None, (7, 0),
         "fm:{k}", idempotent=True, fragile_new=True),
    Case("save_many", lambda st, k: st.save_many([Item(id=k, quantity=1),
                                                  Item(id=k + "b", quantity=2)]),
         lambda d, k: (_item(d, k), _item(d, k + "b")), (None, None), ((1, 0), (2, 0)), 2,
         idempotent=True, fragile_new=True,
         unknown_state=lambda d, k: _item(d, k) is None and _item(d, k + "b") in (None, (2, 0))),
    Case("update", lambda st, k: st.update(Item, k, quantity=5), _item, (1, 0), (5, 0),
         True, idempotent=True, seed=_seed(1)),
    Case("incr", lambda st, k: st.incr(Item, k, "quantity", 1), _item, (10, 0), (11, 0), 11,
         seed=_seed()),
    Case("incr_fields", lambda st, k: st.incr_fields(Item, k, {"quantity": -1, "n": 1},
                                                     floor={"quantity": 0}),
         _item, (10, 0), (9, 1), {"quantity": 9, "n": 1}, seed=_seed()),
    Case("delete", lambda st, k: st.delete(Item, k), _item, (10, 0), None, True,
         seed=_seed()),
    Case("delete_many", lambda st, k: st.delete_many(Item, [k, k + "b"]), _item, (10, 0),
         None, 2,
         seed=lambda d, k: d.save_many([Item(id=k, quantity=10), Item(id=k + "b", quantity=10)]),
         # on a cluster the other object may live on a node without the fault
         consistent=lambda d, k: _item(d, k + "b") in (None, (10, 0))),
    Case("expire", lambda st, k: st.expire(Item, k, 100),
         lambda d, k: d.pttl(Item, k) is not None, False, True, True, idempotent=True,
         seed=_seed()),
    Case("persist", lambda st, k: st.persist(Item, k),
         lambda d, k: d.pttl(Item, k) is None, False, True, True,
         seed=lambda d, k: d.save(Item(id=k), ttl=100)),
    Case("run_many", lambda st, k: st.run_many(_z(st, k).incr_plan("m", 1),
                                               _q(st, k).push_plan(1)),
         lambda d, k: _z(d, k).score("m"), None, 1.0, [1.0, 1],
         key=lambda k: f"fz:{k}",
         consistent=lambda d, k: _q(d, k).range() in ([], [1])),
    Case("transaction", _transaction, _item, (10, 0), (9, 0), (9, 10), seed=_seed()),
    Case("Queue.push", lambda st, k: _q(st, k).push(1, 2), lambda d, k: _q(d, k).range(),
         [], [1, 2], 2, key=lambda k: f"fq:{k}"),
    Case("Queue.pop", lambda st, k: _q(st, k).pop(), lambda d, k: _q(d, k).range(),
         [1, 2], [2], 1, key=lambda k: f"fq:{k}", seed=lambda d, k: _q(d, k).push(1, 2)),
    Case("Set.add", lambda st, k: _s(st, k).add("a", "b"), _members, set(), {"a", "b"}, 2,
         key=lambda k: f"fs:{k}"),
    Case("Set.remove", lambda st, k: _s(st, k).remove("a"), _members, {"a", "b"}, {"b"}, 1,
         key=lambda k: f"fs:{k}", seed=lambda d, k: _s(d, k).add("a", "b")),
    Case("Set.pop", lambda st, k: _s(st, k).pop(), _members, {"a"}, set(), "a",
         key=lambda k: f"fs:{k}", seed=lambda d, k: _s(d, k).add("a")),
    Case("SortedSet.add", lambda st, k: _z(st, k).add("a", 1.0),
         lambda d, k: _z(d, k).range_with_scores(), [], [("a", 1.0)], 1,
         key=lambda k: f"fz:{k}"),
    Case("SortedSet.incr", lambda st, k: _z(st, k).incr("a", 1.5),
         lambda d, k: _z(d, k).range_with_scores(), [], [("a", 1.5)], 1.5,
         key=lambda k: f"fz:{k}"),
    Case("SortedSet.remove", lambda st, k: _z(st, k).remove("a"),
         lambda d, k: _z(d, k).range_with_scores(), [("a", 1.0), ("b", 2.0)], [("b", 2.0)], 1,
         key=lambda k: f"fz:{k}", seed=lambda d, k: _z(d, k).add_many({"a": 1.0, "b": 2.0})),
    Case("SortedSet.pop_min", lambda st, k: _z(st, k).pop_min(),
         lambda d, k: _z(d, k).range_with_scores(), [("a", 1.0), ("b", 2.0)], [("b", 2.0)],
         [("a", 1.0)], key=lambda k: f"fz:{k}",
         seed=lambda d, k: _z(d, k).add_many({"a": 1.0, "b": 2.0})),
    Case("bucketed_unique.save", lambda st, k: st.save(Sku(id=k, sku=f"S-{k}", qty=7)),
         _sku, None, (7, "S-{k}", True), lambda k: spec_of(Sku).key_for(k), idempotent=True,
         key=lambda k: _claim_key(f"S-{k}"), consistent=_sku_unique),
    Case("bucketed_unique.save_many",
         lambda st, k: st.save_many([Sku(id=k, sku=f"S-{k}", qty=1),
                                     Sku(id=k + "b", sku=f"S-{k}b", qty=2)]),
         lambda d, k: (_sku(d, k), _sku(d, k + "b")), (None, None),
         ((1, "S-{k}", True), (2, "S-{k}b", True)), 2, idempotent=True,
         key=lambda k: _claim_key(f"S-{k}"),
         consistent=lambda d, k: _sku_unique(d, k) and _sku_unique(d, k + "b")),
    Case("bucketed_unique.update", lambda st, k: st.update(Sku, k, sku=f"S-{k}"), _sku,
         (1, "O-{k}", True), (1, "S-{k}", True), True, idempotent=True,
         seed=lambda d, k: d.save(Sku(id=k, sku=f"O-{k}", qty=1)),
         key=lambda k: _claim_key(f"S-{k}"),
         consistent=lambda d, k: _sku_unique(d, k) and d.get_by(Sku, sku=f"O-{k}") is None),
    Case("Queue.push_left", lambda st, k: _q(st, k).push_left(1, 2),
         lambda d, k: _q(d, k).range(), [], [2, 1], 2, key=lambda k: f"fq:{k}"),
    Case("Queue.pop_right", lambda st, k: _q(st, k).pop_right(),
         lambda d, k: _q(d, k).range(), [1, 2], [1], 2, key=lambda k: f"fq:{k}",
         seed=lambda d, k: _q(d, k).push(1, 2)),
    Case("Queue.clear", lambda st, k: _q(st, k).clear(), lambda d, k: _q(d, k).range(),
         [1, 2], [], True, key=lambda k: f"fq:{k}", seed=lambda d, k: _q(d, k).push(1, 2)),
    # trim(1, -1) drops the head: a second LTRIM drops another value, so never resent
    Case("Queue.trim", lambda st, k: _q(st, k).trim(1, -1), lambda d, k: _q(d, k).range(),
         [1, 2, 3], [2, 3], None, key=lambda k: f"fq:{k}",
         seed=lambda d, k: _q(d, k).push(1, 2, 3)),
    # trim(0, 1) caps the list at two: a second LTRIM changes nothing, so it is resent
    Case("Queue.trim_cap", lambda st, k: _q(st, k).trim(0, 1), lambda d, k: _q(d, k).range(),
         [1, 2, 3], [1, 2], None, idempotent=True, key=lambda k: f"fq:{k}",
         seed=lambda d, k: _q(d, k).push(1, 2, 3)),
    Case("Queue.pop_blocking", lambda st, k: _q(st, k).pop_blocking(1),
         lambda d, k: _q(d, k).range(), [1, 2], [2], 1, key=lambda k: f"fq:{k}",
         seed=lambda d, k: _q(d, k).push(1, 2), blocking=True),
    Case("WindowCounter.incr", lambda st, k: _w(st, k).incr("x"),
         lambda d, k: _w(d, k).get("x"), 0, 1, 1, key=lambda k: _w(None, k).key_for("x")),
    Case("WindowCounter.reset", lambda st, k: _w(st, k).reset("x"),
         lambda d, k: _w(d, k).get("x"), 2, 0, True, key=lambda k: _w(None, k).key_for("x"),
         seed=lambda d, k: [_w(d, k).incr("x"), _w(d, k).incr("x")]),
]


def _filled(value: Any, k: str) -> Any:
    """An expected value with this run's key in it: ``"{k}"`` in strings (also inside
    tuples) filled in, a callable called with ``k``."""
    if callable(value):
        return value(k)
    if isinstance(value, str):
        return value.format(k=k)
    if isinstance(value, tuple):
        return tuple(_filled(v, k) for v in value)
    return value


def expected(fault: str, once: bool, case: Case) -> tuple[str, str]:
    """(what the call does: "ok", "unknown" or "plain" -- a plain ConnectionError, not
    applied --, which state the server is left in)."""
    if case.blocking:  # a dedicated connection, sent once, no write id in either mode
        if fault == "refuse":
            return "plain", "before"
        if fault == "stall":  # its socket timeout is the block + 5 s: the reply comes
            return "ok", "after"
        return "unknown", "before" if fault == "drop_request" else "after"
    if case.fragile_new and not once and fault in ("drop_request", "stall"):
        return "unknown", "before"  # (a stalled first copy is fenced before the resend)
    if fault == "refuse" or once or case.idempotent:
        return "ok", "after"
    return "unknown", "before" if fault == "drop_request" else "after"


# ---- the shells under test ---------------------------------------------------------------


@attrs.define
class Env:
    """A store through fault proxies, a direct store to seed and observe, and how to run
    a call on the store's side (an event loop for asyncio)."""

    store: Any
    direct: Any
    proxies: Any
    proxy_for: Callable[[str], FaultProxy]
    loop: asyncio.AbstractEventLoop | None

    def run(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            assert self.loop is not None
            return self.loop.run_until_complete(_awaited(value))
        return value

    def drop_idle_connections(self) -> None:
        client = self.store.client
        if self.loop is None:
            pools = ([client.get_redis_connection(n).connection_pool for n in client.get_nodes()]
                     if isinstance(client, RedisCluster) else [client.connection_pool])
            for pool in pools:
                pool.disconnect()
        elif isinstance(client, AsyncRedisCluster):
            for node in client.get_nodes():
                self.loop.run_until_complete(node.disconnect())
        else:
            self.loop.run_until_complete(client.connection_pool.disconnect())


async def _awaited(value: Any) -> Any:
    return await value


def _retry(kind: str, asyncio_client: bool) -> dict[str, Any]:
    if kind == "redis-py default":
        return {}
    return {"retry": (AsyncRetry if asyncio_client else Retry)(NoBackoff(), 0)}


@pytest.fixture
def env(request: pytest.FixtureRequest, shell: str, retry: str, mode: str) -> Iterator[Env]:
    once = mode == "exactly-once"
    options: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT}
    loop = asyncio.new_event_loop() if shell.startswith("async") else None
    if shell in ("sync", "async"):
        server: RedisServer = request.getfixturevalue("redis_server")
        direct_client = request.getfixturevalue("redis_client")
        proxy = FaultProxy(server.host, server.port).start()
        options.update(host=proxy.host, port=proxy.port, **_retry(retry, loop is not None))
        client: Any = (aredis.Redis(**options) if loop else redis.Redis(**options))
        proxies: Any = proxy

        def proxy_for(key: str) -> FaultProxy:
            return proxy
    else:
        cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
        direct_client = request.getfixturevalue("redis_cluster_client")
        proxies = ClusterFaultProxy(cluster.addresses).start()
        host, port = proxies.startup_nodes[0]
        options.update(host=host, port=port, address_remap=proxies.address_remap,
                       **_retry(retry, loop is not None))
        client = cluster_client(options, loop)

        def proxy_for(key: str) -> FaultProxy:
            node = direct_client.get_node_from_key(key)
            return proxies.proxy_for((node.host, int(node.port)))  # type: ignore[no-any-return]
    store_cls = redmodel.AsyncStore if loop else redmodel.Store
    store = store_cls(client, exactly_once=once, resend=POLICY)
    try:
        yield Env(store, redmodel.Store(direct_client), proxies, proxy_for, loop)
    finally:
        if loop is not None:
            loop.run_until_complete(store.aclose())
            loop.close()
        else:
            store.close()
        proxies.stop()


def _arm(env: Env, fault: str, key: str) -> FaultProxy:
    proxy = env.proxy_for(key)
    writes = READS.__contains__
    when = has(key)
    if fault == "stall":
        proxy.stall(lambda name: not writes(name), STALL, when=when)
    elif fault != "refuse":
        getattr(proxy, fault)(lambda name: not writes(name), when=when)
    return proxy


def _call(env: Env, case: Case, k: str) -> tuple[str, Any]:
    """("ok", value) or ("error", the exception) of one call."""
    try:
        return "ok", env.run(case.act(env.store, k))
    except Exception as e:  # judged by the caller
        return "error", e


def _run_all(env: Env, fault: str, keys: dict[str, str]) -> dict[str, tuple[str, Any]]:
    if fault == "refuse":  # refusals are not keyed: one method at a time, fresh connections
        outcomes = {}
        for case in CASES:
            env.drop_idle_connections()
            proxy = env.proxy_for(case.key(keys[case.name]))
            proxy.refuse_connections(1)
            outcomes[case.name] = _call(env, case, keys[case.name])
            proxy.clear()
        return outcomes
    for case in CASES:
        _arm(env, fault, case.key(keys[case.name]))
    if env.loop is None:
        with ThreadPoolExecutor(len(CASES)) as pool:
            futures = {c.name: pool.submit(_call, env, c, keys[c.name]) for c in CASES}
            return {name: f.result() for name, f in futures.items()}

    async def gather() -> list[tuple[str, Any]]:
        async def one(case: Case) -> tuple[str, Any]:
            try:
                return "ok", await _awaited(case.act(env.store, keys[case.name]))
            except Exception as e:  # judged by the caller
                return "error", e

        return await asyncio.gather(*(one(c) for c in CASES))

    return dict(zip((c.name for c in CASES), env.loop.run_until_complete(gather()),
                    strict=True))


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("retry", RETRIES)
@pytest.mark.parametrize("shell", SHELLS)
def test_every_write_is_applied_once_or_at_most_once_with_the_documented_error(
        env: Env, shell: str, retry: str, mode: str, fault: str) -> None:
    once = mode == "exactly-once"
    run = next(_ids)
    keys = {c.name: f"{c.name.replace('.', '_')}-{run}" for c in CASES}
    for case in CASES:
        case.seed(env.direct, keys[case.name])
    # the store's first use of each container key (the container registry's read and
    # record) happens before the faults: they are armed for each method's own write
    env.run(env.store.run_many(*(plan for k in keys.values() for plan in (
        _q(env.store, k).exists_plan(), _s(env.store, k).exists_plan(),
        _z(env.store, k).exists_plan(), _w(env.store, k).get_plan("x")))))
    outcomes = _run_all(env, fault, keys)
    assert env.proxies.quiet(10), "a stalled command never reached the server"
    env.proxies.clear()
    problems = []
    unknown_seen = unknown_wanted = 0
    for case in CASES:
        k = keys[case.name]
        kind, value = outcomes[case.name]
        want, state = expected(fault, once, case)
        if want == "unknown":
            unknown_wanted += 1
            unknown_seen += isinstance(value, redmodel.OutcomeUnknownError)
        if (fault == "stall" and want == "unknown" and kind == "ok"
                and value == _filled(case.result, k)):
            # The reply of a stalled command was read although the stall is longer than
            # the socket timeout: a busy machine held the client past both, and a reply
            # already there is read before a timer that is due (asyncio's order). The
            # caller is told "applied" and it was: correct. The state is still checked;
            # the run must see the unknown outcome elsewhere (below).
            want, state = "ok", "after"
        seen = case.observe(env.direct, k)
        where = f"{case.name} under {fault} ({mode}, {shell}, retry {retry})"
        if kind == "error" and not isinstance(value, (redmodel.RedmodelError,
                                                      redis.RedisError)):
            problems.append(f"{where}: a builtin error escaped: {type(value)} {value!r}")
        elif want == "ok" and kind != "ok":
            problems.append(f"{where}: raised {value!r}")
        elif want == "ok" and value != _filled(case.result, k):
            problems.append(f"{where}: returned {value!r}, not {_filled(case.result, k)!r}")
        elif want == "unknown" and not isinstance(value, redmodel.OutcomeUnknownError):
            problems.append(f"{where}: {kind} {value!r}, not OutcomeUnknownError")
        elif want == "plain" and (not isinstance(value, redis.ConnectionError)
                                  or isinstance(value, redmodel.OutcomeUnknownError)):
            problems.append(f"{where}: {kind} {value!r}, not a plain ConnectionError")
        expected_state = _filled(case.after if state == "after" else case.before, k)
        if seen != expected_state and not (
                want == "unknown" and case.unknown_state is not None
                and case.unknown_state(env.direct, k)):
            problems.append(f"{where}: the server holds {seen!r}, not {expected_state!r} "
                            f"({'once' if state == 'after' else 'never'} applied)")
        if not case.consistent(env.direct, k):
            problems.append(f"{where}: a second write of the batch was applied twice")
    assert not problems, "\n".join(problems)
    assert unknown_seen or not unknown_wanted, (
        f"no call under {fault} ({mode}, {shell}) raised OutcomeUnknownError")
