"""Fix 31I: a write that may be sent twice (a unique claim, its confirmation or release, a
capping LTRIM, a whole save) in a round shared by several plans (``run_many``, and the
gathers inside save_many / delete_many) whose reply was lost.

Alone, such a write is fenced (``CLIENT KILL`` of the connection that carried it) and
sent again, or, when the fence cannot be made (an ACL user without ``client|kill``), the
call raises OutcomeUnknownError: a copy may still land. In a shared round the transport
records, per command, which such writes got no reply and were not fenced
(``BatchOutcome.unfenced``: the fence was refused, or the round was given up for another
plan's unsafe write before its fence was tried); such a plan gets OutcomeUnknownError
naming its keys, never a plain error (attack 31I F1-F3b). A read stays plain.

Property: draw 2-4 plans (pushes, pops and delete_many of a bucketed unique model: writes
that must not run twice; trims and save_many of that model: writes that may be sent twice,
with their claims; a query: a read), one plan's command faulted (lost reply, cut reply,
dropped request once or always, stall past the socket timeout: the late copy), for a
bucketed plan at a drawn step (any command, the claim, its confirmation, its release), an
ACL user with or without ``client|kill``, exactly-once on/off, sync/async. Oracle: each
plan's state is read when run_many returns and again once every stalled copy has landed;
only an OutcomeUnknownError (naming one of the plan's keys) allows a change in between; a
plain error means the plan's write was not applied (for writes that may be sent twice: it
is where it was, or applied once and fenced) and never is later; a result means applied.
A cluster test: a node's round, a trim beside a stalled push on one node, and a trim whose
reply is lost on a node the user may not CLIENT KILL on."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster

import redmodel
from redmodel._indexes._specs import CLAIM, CONFIRM, RELEASE
from redmodel._plans import _objects as _ops
from redmodel.containers import Queue
from redmodel.testing import ClusterFaultProxy, RedisClusterServer
from tests.budget import scaled
from tests.faults import (
    FAST_RESEND,
    PASSWORD,
    arm_fault,
    client_options,
    cluster_client,
    user_without_client_kill,
)

KINDS = ["push", "pop", "trim", "bsave", "bdelete", "query"]
STEPS = {"any": None, "claim": CLAIM, "confirm": CONFIRM, "release": RELEASE}
PLAIN = (redis.ConnectionError, redis.TimeoutError)
USER = "fixinokill"


@redmodel.model(prefix="fixi_bu", buckets=4)
@attrs.define
class IBU:
    sku: str = redmodel.field(unique=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fixi_q")
@attrs.define
class IQ:
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


def _plain(e: Any) -> bool:
    return isinstance(e, PLAIN) and not isinstance(e, redmodel.OutcomeUnknownError)


@attrs.define
class Drawn:
    """One drawn plan: its kind and n-th place; ``mark`` is in every id / value / key of
    it (what a fault matches)."""

    kind: str
    n: int

    @property
    def mark(self) -> str:
        return f"fi{self.n}{self.kind[:2]}"

    @property
    def key(self) -> str:
        return self.mark

    def ids(self) -> list[str]:
        return [f"{self.mark}-{j}" for j in range(2)]

    def prepare(self, client: Any, store: Any) -> None:
        if self.kind in ("push", "pop", "trim"):
            client.rpush(self.key, b"1", b"2", b"3")
        elif self.kind == "bdelete":
            store.save_many([IBU(f"{self.mark}v{j}", id=i) for j, i in enumerate(self.ids())])

    def plan(self, store: Any) -> Any:
        if self.kind == "push":
            return Queue(store, self.key, int).push_plan(7)
        if self.kind == "pop":
            return Queue(store, self.key, int).pop_plan()
        if self.kind == "trim":
            return Queue(store, self.key, int).trim_plan(0, 0)
        if self.kind == "bsave":
            return _ops.save_many([IBU(f"{self.mark}v{j}", id=i)
                                   for j, i in enumerate(self.ids())],
                                  _ops.DEFAULT, 100, ready=store._registry.ready_for)
        if self.kind == "bdelete":
            return store._use(IBU, _ops.delete_many(IBU, self.ids(), 100))
        return store.find(IQ, color="red").all_plan()

    def state(self, client: Any) -> Any:
        """What of the server this plan's writes change (a late copy changes it)."""
        if self.kind in ("push", "pop", "trim"):
            return client.lrange(self.key, 0, -1)
        if self.kind in ("bsave", "bdelete"):
            mine = self.mark.encode()
            found = {}
            for k in client.keys("fixi_bu*"):
                kind = client.type(k)
                if kind == b"hash":
                    found[k] = sorted((f, v) for f, v in client.hgetall(k).items()
                                      if mine in f or mine in v or mine in k)
                elif kind == b"zset":
                    found[k] = sorted(m for m in client.zrange(k, 0, -1)
                                      if mine in m or mine in k)
                elif kind == b"set":
                    found[k] = sorted(m for m in client.smembers(k) if mine in m or mine in k)
                elif mine in k:
                    found[k] = client.dump(k)
            return {k: v for k, v in found.items() if v}
        return None

    def objects(self, client: Any) -> int:
        return sum(len(client.keys(f"fixi_bu:*{i}")) for i in self.ids())

    def check(self, client: Any, outcome: Any, before: Any, now: Any, later: Any) -> bool:
        """The oracle for this plan; returns whether a write of it that must not run twice
        was applied."""
        unknown = isinstance(outcome, redmodel.OutcomeUnknownError)
        failed = isinstance(outcome, BaseException)
        if unknown:
            assert self.kind != "query", f"a read got {outcome!r}"
            assert any(self.mark in k or k.startswith("fixi_bu") for k in outcome.keys), (
                f"{self.kind} {self.mark}: {outcome!r} names none of its keys: {outcome.keys}")
        else:
            assert now == later, (
                f"{self.kind} {self.mark}: {outcome!r} (no OutcomeUnknownError), but a "
                f"copy of its write landed after run_many returned: {now} -> {later}")
        if self.kind == "push":
            if not unknown:
                assert now == ([b"1", b"2", b"3"] if failed else [b"1", b"2", b"3", b"7"]), (
                    now, repr(outcome))
            return now != before
        if self.kind == "pop":
            if not unknown:
                assert now == ([b"1", b"2", b"3"] if failed else [b"2", b"3"]), (
                    now, repr(outcome))
                assert failed or outcome == 1, outcome
            return now != before
        if self.kind == "trim":
            if not failed:
                assert now == [b"1"], (now, outcome)
            elif not unknown:  # not applied, or applied once and fenced (may be sent twice)
                assert now in ([b"1", b"2", b"3"], [b"1"]), (now, repr(outcome))
            return False
        if self.kind == "bsave":
            if not failed:
                assert outcome == 2 and self.objects(client) == 2, outcome
            return False
        if self.kind == "bdelete":
            left = self.objects(client)
            if not failed:
                assert outcome == 2 and left == 0, (outcome, left)
            elif not unknown:
                assert left == 2, f"delete_many raised {outcome!r} after deleting {2 - left}"
            return left < 2
        if failed:
            assert isinstance(outcome, (redis.RedisError, redmodel.RedmodelError)), outcome
        return False


def _arm(proxy: Any, fault: str, victim: Drawn, step: str) -> None:
    mark = victim.mark.encode()
    sha = STEPS[step]

    def when(args: list[bytes]) -> bool:
        if sha is not None and not (len(args) > 1 and args[1] == sha.sha.encode()):
            return False
        return any(mark in a for a in args)

    arm_fault(proxy, fault, when)


def _client_options(proxy: Any, nokill: bool) -> dict[str, Any]:
    return client_options(proxy, USER if nokill else None)


@settings(max_examples=scaled(120), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=4),
       target=st.integers(0, 3),
       fault=st.sampled_from(["lose", "cut", "drop", "drop-always", "stall"]),
       step=st.sampled_from(list(STEPS)),
       nokill=st.booleans(),
       once=st.booleans(),
       shell=st.sampled_from(["sync", "async"]))
def test_no_plan_of_a_shared_round_is_told_plain_of_a_write_that_may_land_later(
        redis_client: Any, proxy: Any, kinds: list[str], target: int, fault: str,
        step: str, nokill: bool, once: bool, shell: str) -> None:
    redis_client.flushall()
    user_without_client_kill(redis_client, USER)
    plans = [Drawn(k, n) for n, k in enumerate(kinds)]
    victim = plans[target % len(plans)]
    options: dict[str, Any] = {"exactly_once": once, "resend": FAST_RESEND}
    store = redmodel.Store(redis.Redis(**_client_options(proxy, nokill)), **options)
    try:
        store.save(IQ("red", id="q1"))
        store.verify(IBU)  # the model's first use, not faulted
        for p in plans:
            p.prepare(redis_client, store)
            if p.kind in ("push", "pop", "trim"):  # the container's first use, not faulted
                store.run(Queue(store, p.key, int).exists_plan())
        if shell == "sync":
            before = [p.state(redis_client) for p in plans]
            _arm(proxy, fault, victim, step)
            try:
                outcomes, error = list(store.run_many(*[p.plan(store) for p in plans])), None
            except Exception as e:
                outcomes, error = list(getattr(e, "results", [])), e
        else:
            async def run() -> tuple[list[Any], Any]:
                astore = redmodel.AsyncStore(redis.asyncio.Redis(
                    **_client_options(proxy, nokill)), **options)
                try:
                    await astore.find(IQ, color="red").all()
                    await astore.verify(IBU)  # the model's first use, not faulted
                    _arm(proxy, fault, victim, step)
                    try:
                        return list(await astore.run_many(
                            *[p.plan(astore) for p in plans])), None
                    except Exception as e:
                        return list(getattr(e, "results", [])), e
                finally:
                    await astore.aclose()
            before = [p.state(redis_client) for p in plans]
            outcomes, error = asyncio.run(run())
    finally:
        store.close()
    now = [p.state(redis_client) for p in plans]
    proxy.clear()
    assert proxy.quiet()  # every stalled copy has landed (or was fenced)
    later = [p.state(redis_client) for p in plans]
    assert len(outcomes) == len(plans), f"run_many raised {error!r} without results"
    applied = [p.check(redis_client, o, b, n, la)
               for p, o, b, n, la in zip(plans, outcomes, before, now, later, strict=True)]
    if error is not None:
        assert any(isinstance(o, BaseException) for o in outcomes)
        if _plain(error):
            assert not any(applied), (
                f"plain {error!r} after writes were applied: "
                f"{[(p.kind, o) for p, o in zip(plans, outcomes, strict=True)]}")


# ---- cluster: a node's round ---------------------------------------------------------------

_runs = itertools.count()


@pytest.fixture(params=["sync", "async"])
def cluster_env(request: pytest.FixtureRequest, redis_cluster: RedisClusterServer,
                redis_cluster_client: RedisCluster) -> Iterator[tuple[Any, Any, Any, Any]]:
    """A store as the ACL user without ``client|kill`` on every node, through fault
    proxies."""
    user_without_client_kill(redis_cluster_client, USER, target_nodes=RedisCluster.ALL_NODES)
    proxies = ClusterFaultProxy(redis_cluster.addresses).start()
    host, port = proxies.startup_nodes[0]
    options: dict[str, Any] = dict(host=host, port=port, address_remap=proxies.address_remap,
                                   socket_timeout=0.5, username=USER, password=PASSWORD)
    loop = asyncio.new_event_loop() if request.param == "async" else None
    client = cluster_client(options, loop)
    store: Any = (redmodel.AsyncStore(client, resend=FAST_RESEND)
                  if loop else redmodel.Store(client, resend=FAST_RESEND))
    try:
        yield store, redis_cluster_client, proxies, loop
    finally:
        if loop is not None:
            loop.run_until_complete(store.aclose())
            loop.close()
        else:
            store.close()
        proxies.stop()


def _wait(loop: Any, value: Any) -> Any:
    if loop is None:
        return value

    async def go() -> Any:
        return await value
    return loop.run_until_complete(go())


def _run_many(store: Any, loop: Any, *plans: Any) -> tuple[list[Any], Any]:
    try:
        return list(_wait(loop, store.run_many(*plans))), None
    except Exception as e:
        return list(e.results), e  # type: ignore[attr-defined]


def test_cluster_a_trim_whose_node_cannot_fence_is_not_told_plain(
        cluster_env: tuple[Any, Any, Any, Any]) -> None:
    """Two trims on two nodes, the second node's LTRIM reply lost and its connection
    not fenceable (no CLIENT KILL): the first trim returns, the second's outcome is an
    OutcomeUnknownError naming its own key only (alone: the same), the call is not plain."""
    store, direct, proxies, loop = cluster_env
    run = next(_runs)
    keys: list[str] = []
    nodes: set[str] = set()
    for j in range(200):  # two keys on two nodes
        k = f"fixi{run}-{j}"
        node = str(direct.get_node_from_key(k).name)
        if node not in nodes:
            nodes.add(node)
            keys.append(k)
        if len(keys) == 2:
            break
    first, second = keys
    for k in keys:
        direct.delete(k)
        direct.rpush(k, b"1", b"2", b"3")
        _wait(loop, Queue(store, k, int).exists())
    node = direct.get_node_from_key(second)
    proxy = proxies.proxy_for((node.host, int(node.port)))
    proxy.lose_reply("LTRIM", when=lambda a: second.encode() in a)
    outcomes, error = _run_many(store, loop, Queue(store, first, int).trim_plan(0, 0),
                                Queue(store, second, int).trim_plan(0, 1))
    proxies.clear()
    assert outcomes[0] is None and direct.lrange(first, 0, -1) == [b"1"], outcomes[0]
    assert direct.lrange(second, 0, -1) == [b"1", b"2"]  # applied, reply lost
    other = outcomes[1]
    assert isinstance(other, redmodel.OutcomeUnknownError), repr(other)
    assert second in other.keys and first not in other.keys, other.keys
    assert error is not None and not _plain(error), repr(error)


def test_cluster_a_trim_beside_a_stalled_push_on_its_node_never_lands_after_plain(
        cluster_env: tuple[Any, Any, Any, Any]) -> None:
    """A push and a trim on one node (one call to it), the push stalled past the socket
    timeout with the trim behind it on its connection: the trim's outcome is not plain
    while its copy may land later (attack 31I F3 on a cluster node)."""
    store, direct, proxies, loop = cluster_env
    run = next(_runs)
    pushed = f"fixi{run}p"
    home = str(direct.get_node_from_key(pushed).name)
    trimmed = next(k for k in (f"fixi{run}t{j}" for j in range(200))
                   if str(direct.get_node_from_key(k).name) == home)  # the same node
    direct.delete(pushed, trimmed)
    direct.rpush(trimmed, b"1", b"2", b"3")
    for k in (pushed, trimmed):
        _wait(loop, Queue(store, k, int).exists())
    node = direct.get_node_from_key(pushed)
    proxy = proxies.proxy_for((node.host, int(node.port)))
    proxy.stall("RPUSH", 1.5, when=lambda a: pushed.encode() in a)
    outcomes, error = _run_many(store, loop, Queue(store, pushed, int).push_plan(5),
                                Queue(store, trimmed, int).trim_plan(0, 0))
    now = direct.lrange(trimmed, 0, -1)
    proxies.clear()
    assert proxies.quiet()
    later = direct.lrange(trimmed, 0, -1)
    trim = outcomes[1]
    assert isinstance(outcomes[0], redmodel.OutcomeUnknownError), repr(outcomes[0])
    if not isinstance(trim, redmodel.OutcomeUnknownError):
        assert now == later, f"{trim!r}, then the LTRIM landed: {now} -> {later}"
    assert isinstance(trim, redmodel.OutcomeUnknownError) or trim is None, repr(trim)
    assert error is not None and not _plain(error), repr(error)



@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_follow_ups_unknown_outcome_in_a_shared_round_says_it_is_the_follow_ups(
        redis_client: Any, proxy: Any, shell: str) -> None:
    """Batch.follow_up: an OutcomeUnknownError of a confirmation/release "is raised, its
    message saying it is the follow-up's" (the call's own write was done). delete_many
    of two objects of a bucketed unique model (their releases share a round), a
    release's reply lost and no CLIENT KILL: the error says so, as delete_many of one
    object does."""
    deleting = Drawn("bdelete", 0)
    user_without_client_kill(redis_client, USER)
    options = _client_options(proxy, True)
    store = redmodel.Store(redis.Redis(**options), resend=FAST_RESEND)
    error: Exception | None = None
    try:
        store.verify(IBU)
        deleting.prepare(redis_client, store)
        _arm(proxy, "lose", deleting, "release")
        if shell == "sync":
            try:
                store.delete_many(IBU, deleting.ids())
            except Exception as e:
                error = e
        else:
            async def run() -> Exception | None:
                astore = redmodel.AsyncStore(redis.asyncio.Redis(**options),
                                             resend=FAST_RESEND)
                try:
                    await astore.verify(IBU)
                    await astore.delete_many(IBU, deleting.ids())
                except Exception as e:
                    return e
                finally:
                    await astore.aclose()
                return None
            error = asyncio.run(run())
    finally:
        proxy.clear()
        store.close()
    assert deleting.objects(redis_client) == 0
    assert isinstance(error, redmodel.OutcomeUnknownError), repr(error)
    assert "follow-up" in str(error), str(error)
