"""Fix 31G: ``store.run_many`` / ``gather`` when a round shared by several plans fails.

Each plan gets exactly what it would have learned alone about ITS commands, from the
round's outcome record (which commands answered, which certainly never ran): its replies
when all of them answered (whatever happened to the others'), an OutcomeUnknownError
naming its own keys when one of its writes' outcome is unknown, a plain connection error
when nothing of it that must not run twice ran (attack 31G F1, F3). A plan is "alone"
only when it is the only plan of the call: the last running plan's failure is raised with
every plan's ``results``, and a plain ConnectionError leaves run_many only when no write
of the call that must not run twice was applied (F2).

Property: draw 2-4 plans (queue pushes; queue and set pops, a member that does not decode
or not; save_many and delete_many plans; a query), one plan's command faulted in the
round (lost reply, cut reply, dropped request once or always, stall past the socket
timeout), exactly-once mode on/off, sync/async. Oracle per plan: its write applied
exactly once or not, and its outcome in ``results`` says which (result: applied; a plain
error or ServerError: not; OutcomeUnknownError: it names one of the plan's keys); a pop's
member is never lost outside an OutcomeUnknownError naming its container; a read never
gets OutcomeUnknownError; the raised error is a plain ConnectionError only when no write
of the call that must not run twice was applied. A cluster test: two pops on two nodes,
one node's reply lost, the other pop keeps its member."""

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
from redmodel._plans import _objects as _ops
from redmodel.containers import Queue, Set
from redmodel.testing import ClusterFaultProxy, RedisClusterServer
from tests.budget import scaled
from tests.faults import FAST_RESEND, arm_fault, cluster_client, marked

BAD = b"bad"
KINDS = ["push", "pop", "pop-bad", "set-pop", "save", "delete", "query"]
PLAIN = (redis.ConnectionError, redis.TimeoutError)


@redmodel.model(prefix="fixg_hat")
@attrs.define
class FHat:
    color: str
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fixg_ihat")
@attrs.define
class IHat:
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


def rejected(key: str) -> str:
    return f"{key}:{{{key}}}:%rejected"


def _plain(e: Any) -> bool:
    return isinstance(e, PLAIN) and not isinstance(e, redmodel.OutcomeUnknownError)


@attrs.define
class Drawn:
    """One drawn plan: its kind, its n-th place, the keys it writes or reads."""

    kind: str
    n: int

    @property
    def key(self) -> str:  # a container's key, or the faulted key of a model plan
        if self.kind in ("save", "delete"):
            return f"fixg_hat:{self.kind[0]}{self.n}-0"
        if self.kind == "query":
            return f"fixg_ihat:{self.qid}"
        return f"g{self.n}"

    qid: str = ""

    def keys(self) -> set[str]:
        if self.kind in ("save", "delete"):
            return {f"fixg_hat:{self.kind[0]}{self.n}-{j}" for j in range(2)}
        if self.kind == "query":
            return set()
        return {self.key, rejected(self.key)}

    def members(self) -> list[bytes]:
        return [BAD, b"2"] if self.kind == "pop-bad" else [b"1", b"2"]

    def prepare(self, client: Any) -> None:
        if self.kind in ("pop", "pop-bad"):
            client.rpush(self.key, *self.members())
        elif self.kind == "set-pop":
            client.sadd(self.key, *self.members())
        elif self.kind == "delete":
            for k in self.keys():
                client.hset(k, "color", "red")

    def plan(self, store: Any) -> Any:
        if self.kind == "push":
            return Queue(store, self.key, int).push_plan(7)
        if self.kind in ("pop", "pop-bad"):
            return Queue(store, self.key, int).pop_plan()
        if self.kind == "set-pop":
            return Set(store, self.key, int).pop_plan()
        if self.kind == "save":
            return _ops.save_many([FHat(color="red", id=f"s{self.n}-{j}") for j in range(2)],
                                  _ops.DEFAULT, 100, ready=store._registry.ready_for)
        if self.kind == "delete":
            return store._use(FHat, _ops.delete_many(FHat, [f"d{self.n}-{j}"
                                                            for j in range(2)], 100))
        return store.find(IHat, color="red").all_plan()

    def check(self, client: Any, outcome: Any) -> bool:
        """Assert the oracle for this plan; whether a write of it that must not run twice
        was applied (pushes, pops, deletes)."""
        if isinstance(outcome, redmodel.OutcomeUnknownError):
            assert self.kind != "query", f"a read got {outcome!r}"
            assert set(outcome.keys) & self.keys(), (
                f"{self.kind} {self.key}: {outcome!r} names none of its keys "
                f"{sorted(self.keys())}: {outcome.keys}")
        unknown = isinstance(outcome, redmodel.OutcomeUnknownError)
        failed = isinstance(outcome, BaseException)
        if self.kind == "push":
            held = client.lrange(self.key, 0, -1)
            if not unknown:
                assert held == ([] if failed else [b"7"]), (held, repr(outcome))
            return held == [b"7"]
        if self.kind in ("pop", "pop-bad", "set-pop"):
            held = (client.lrange(self.key, 0, -1) if self.kind != "set-pop"
                    else list(client.smembers(self.key)))
            held += client.lrange(rejected(self.key), 0, -1)
            returned = [] if failed or outcome is None else [str(outcome).encode()]
            members = self.members()
            if unknown:
                assert self.key in outcome.keys, (outcome, outcome.keys)
            else:
                assert sorted(held + returned) == sorted(members), (
                    f"{self.kind} {self.key}: member lost: held {held}, returned "
                    f"{returned}, outcome {outcome!r}")
            if _plain(outcome):
                assert sorted(held) == sorted(members), "a plain error after the pop"
            return sorted(held) != sorted(members) or bool(returned)
        if self.kind == "save":
            if not failed:
                assert outcome == 2 and all(client.exists(k) for k in self.keys())
            return False  # whole saves may be applied twice harmlessly
        if self.kind == "delete":
            left = sum(client.exists(k) for k in self.keys())
            if not failed:
                assert outcome == 2 and left == 0, (outcome, left)
            elif not unknown:
                assert left == 2, (f"delete_many raised {outcome!r} after deleting "
                                   f"{2 - left}")
            return left < 2
        if not failed:
            assert [h.id for h in outcome] == [self.qid], outcome
        else:
            assert isinstance(outcome, (redis.RedisError, redmodel.RedmodelError)), outcome
        return False


def _arm(proxy: Any, fault: str, key: str) -> None:
    arm_fault(proxy, fault, marked(key))


def _outcomes(plans: list[Drawn], go: Any) -> tuple[list[Any], Any]:
    try:
        return list(go()), None
    except Exception as e:
        results = getattr(e, "results", None)
        assert results is not None and len(results) == len(plans), (
            f"run_many raised {e!r} without every plan's results")
        return list(results), e


@settings(max_examples=scaled(120), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=4),
       target=st.integers(0, 3),
       fault=st.sampled_from(["lose", "cut", "drop", "drop-always", "stall"]),
       once=st.booleans(),
       shell=st.sampled_from(["sync", "async"]))
def test_each_plan_of_a_failed_round_learns_what_it_would_alone(
        redis_client: Any, proxy: Any, kinds: list[str], target: int, fault: str,
        once: bool, shell: str) -> None:
    redis_client.flushall()
    plans = [Drawn(k, n) for n, k in enumerate(kinds)]
    for p in plans:
        p.prepare(redis_client)
    victim = plans[target % len(plans)]
    options: dict[str, Any] = {"exactly_once": once, "resend": FAST_RESEND}

    def setup(store: Any, hat: Any) -> None:
        for p in plans:
            p.qid = hat.id
            if p.kind in ("push", "pop", "pop-bad"):
                store.run(Queue(store, p.key, int).exists_plan())
            elif p.kind == "set-pop":
                store.run(Set(store, p.key, int).exists_plan())

    if shell == "sync":
        store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                           socket_timeout=1.0), **options)
        try:
            hat = IHat("red")
            store.save(hat)
            setup(store, hat)
            assert store.find(IHat, color="red").all() == [hat]
            _arm(proxy, fault, victim.key)
            outcomes, error = _outcomes(plans, lambda: store.run_many(
                *[p.plan(store) for p in plans]))
        finally:
            store.close()
    else:
        async def run() -> tuple[list[Any], Any]:
            astore = redmodel.AsyncStore(redis.asyncio.Redis(
                host=proxy.host, port=proxy.port, socket_timeout=1.0), **options)
            try:
                hat = IHat("red")
                await astore.save(hat)
                for p in plans:
                    p.qid = hat.id
                    if p.kind in ("push", "pop", "pop-bad"):
                        await Queue(astore, p.key, int).exists()
                    elif p.kind == "set-pop":
                        await Set(astore, p.key, int).exists()
                assert await astore.find(IHat, color="red").all() == [hat]
                _arm(proxy, fault, victim.key)
                try:
                    return list(await astore.run_many(*[p.plan(astore) for p in plans])), None
                except Exception as e:
                    results = getattr(e, "results", None)
                    assert results is not None and len(results) == len(plans), (
                        f"run_many raised {e!r} without every plan's results")
                    return list(results), e
            finally:
                await astore.aclose()
        outcomes, error = asyncio.run(run())
    proxy.clear()
    assert proxy.quiet()  # a stalled command has landed
    applied = [p.check(redis_client, o) for p, o in zip(plans, outcomes, strict=True)]
    if error is not None:
        assert any(isinstance(o, BaseException) for o in outcomes)
        if _plain(error):
            assert not any(applied), (
                f"plain {type(error).__name__} after writes were applied: "
                f"{[(p.kind, o) for p, o in zip(plans, outcomes, strict=True)]}")


# ---- cluster: a node's failure vs another node's replies ---------------------------------

_runs = itertools.count()


@pytest.fixture(params=["sync", "async"])
def cluster_env(request: pytest.FixtureRequest, redis_cluster: RedisClusterServer,
                redis_cluster_client: RedisCluster) -> Iterator[tuple[Any, Any, Any, Any]]:
    proxies = ClusterFaultProxy(redis_cluster.addresses).start()
    host, port = proxies.startup_nodes[0]
    options: dict[str, Any] = dict(host=host, port=port, address_remap=proxies.address_remap,
                                   socket_timeout=0.5)
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


@pytest.mark.parametrize("fault", ["lose", "cut", "drop-always"])
def test_a_pop_on_one_node_keeps_its_member_when_another_nodes_reply_is_lost(
        cluster_env: tuple[Any, Any, Any, Any], fault: str) -> None:
    """Per-node rounds of a cluster store: the pop whose node answered gets its member;
    the other pop's outcome names its own container (or it is back where it was)."""
    store, direct, proxies, loop = cluster_env
    run = next(_runs)
    keys: list[str] = []
    nodes: set[str] = set()
    for j in range(200):  # two keys on two nodes
        k = f"fixg{run}-{j}"
        node = str(direct.get_node_from_key(k).name)
        if node not in nodes:
            nodes.add(node)
            keys.append(k)
        if len(keys) == 2:
            break
    first, second = keys
    for k in keys:
        direct.delete(k, rejected(k))
        direct.rpush(k, b"1", b"2")

    def wait(value: Any) -> Any:
        if loop is None:
            return value

        async def go() -> Any:
            return await value
        return loop.run_until_complete(go())

    for k in keys:
        wait(Queue(store, k, int).exists())
    node = direct.get_node_from_key(second)
    proxy = proxies.proxy_for((node.host, int(node.port)))
    when = lambda a: second.encode() in a  # noqa: E731
    if fault == "lose":
        proxy.lose_reply(lambda c: True, when=when)
    elif fault == "cut":
        proxy.cut_reply(lambda c: True, when=when)
    else:
        proxy.drop_request(lambda c: True, when=when, times=60)
    try:
        outcomes = list(wait(store.run_many(Queue(store, first, int).pop_plan(),
                                            Queue(store, second, int).pop_plan())))
        error = None
    except Exception as e:
        outcomes, error = list(e.results), e  # type: ignore[attr-defined]
    proxies.clear()
    assert outcomes[0] == 1, f"the first node's pop got {outcomes[0]!r}"
    assert direct.lrange(first, 0, -1) == [b"2"]
    other = outcomes[1]
    if isinstance(other, redmodel.OutcomeUnknownError):
        assert second in other.keys and first not in other.keys, other.keys
    elif isinstance(other, BaseException):
        assert direct.lrange(second, 0, -1) == [b"1", b"2"], repr(other)
    else:
        assert other == 1 and direct.lrange(second, 0, -1) == [b"2"]
    if error is not None:
        assert not _plain(error), f"plain {error!r} after the first pop was applied"
