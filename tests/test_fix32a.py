"""Fix 32A: a read in a round that also holds writes (``run_many``, the gathers inside
save_many / delete_many, a plan's own batch that mixes reads and writes) whose reply was
lost is sent again as it would be alone: never fenced with ``CLIENT KILL`` on its account,
never set aside as a write whose outcome is unknown, never named in an
OutcomeUnknownError's keys (attack 32A F1, F1b).

Property: 2-4 plans, at least one read (a queue's length and range, a set's members, a
sorted set's range, a model query) and one write (push, pop, set add: write ids in
exactly-once mode, else never resent; a capping trim: resent after a fence), one plan's
command faulted (reply lost or cut, request dropped once, held past the socket timeout),
the fence allowed, refused (an ACL user without ``client|kill``) or lost (every ``CLIENT
KILL`` request dropped), exactly-once on/off, sync/async. Oracle: every read returns what
it returns alone with no fault; no OutcomeUnknownError names a read's key; the writes end
as fix 31M's property says (a write-id write never unknown, a result applied once, a plain
error not applied, nothing changes after run_many returned unless unknown).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._plan import READ_COMMANDS, Batch
from redmodel.containers import Queue, Set, SortedSet
from tests.budget import scaled
from tests.faults import (
    FAST_RESEND,
    arm_fault,
    client_options,
    marked,
    run_many_outcomes,
    user_without_client_kill,
)

USER = "fixa32nokill"
READS = ["length", "range", "members", "zrange", "query"]
WRITES = ["push", "pop", "trim", "sadd"]
START = [b"1", b"2", b"3"]
QPREFIX = "fa32q"


@redmodel.model(prefix=QPREFIX)
@attrs.define
class AQ:
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


RED = AQ("red", id="q1")


@attrs.define
class Drawn:
    kind: str
    n: int

    @property
    def key(self) -> str:
        return QPREFIX if self.kind == "query" else f"fa32-{self.n}{self.kind}"

    @property
    def read(self) -> bool:
        return self.kind in READS

    def prepare(self, client: Any) -> None:
        if self.kind in ("length", "range", "push", "pop", "trim"):
            client.rpush(self.key, *START)
        elif self.kind in ("members", "sadd"):
            client.sadd(self.key, *START)
        elif self.kind == "zrange":
            client.zadd(self.key, {b"a": 1, b"b": 2, b"c": 3})

    def container(self, store: Any) -> Any:
        if self.kind in ("members", "sadd"):
            return Set(store, self.key, int)
        if self.kind == "zrange":
            return SortedSet(store, self.key, str)
        return Queue(store, self.key, int)

    def first(self, store: Any) -> Any:
        """The unfaulted first use (the container's registration, the model's)."""
        if self.kind == "query":
            return store.find(AQ, color="red").all_plan()
        return self.container(store).exists_plan()

    def plan(self, store: Any) -> Any:
        kind, box = self.kind, self.container(store)
        if kind == "query":
            return store.find(AQ, color="red").all_plan()
        if kind in ("push", "sadd"):
            return box.push_plan(7) if kind == "push" else box.add_plan(7)
        if kind == "trim":
            return box.trim_plan(0, 0)
        name = {"length": "length_plan", "range": "range_plan", "members": "members_plan",
                "zrange": "range_plan", "pop": "pop_plan"}[kind]
        return getattr(box, name)()

    def alone(self) -> Any:
        """What the read returns alone with no fault."""
        return {"length": 3, "range": [1, 2, 3], "members": {1, 2, 3},
                "zrange": ["a", "b", "c"], "query": [RED]}[self.kind]

    def state(self, client: Any) -> Any:
        if self.kind in ("push", "pop", "trim"):
            return client.lrange(self.key, 0, -1)
        if self.kind == "sadd":
            return sorted(client.smembers(self.key))
        return None

    def check(self, outcome: Any, once: bool, now: Any, later: Any) -> bool:
        """The oracle; whether a write of it that must not run twice was applied."""
        unknown = isinstance(outcome, redmodel.OutcomeUnknownError)
        failed = isinstance(outcome, BaseException)
        if self.read:
            assert outcome == self.alone(), (
                f"read {self.kind} got {outcome!r}, alone with no fault {self.alone()!r}")
            return False
        if once and self.kind != "trim":
            assert not unknown, (
                f"exactly-once {self.kind} told {outcome!r} while the server answered "
                f"throughout: alone it is resent under its write id ({now} -> {later})")
        if unknown:
            return True
        assert now == later, f"{self.kind}: {outcome!r}, then a copy landed: {now} -> {later}"
        if failed:
            assert isinstance(outcome, (redis.ConnectionError, redis.TimeoutError)), outcome
        if self.kind == "push":
            assert now == (START if failed else [*START, b"7"]), (now, outcome)
            assert failed or outcome == 4, outcome
        elif self.kind == "pop":
            assert now == (START if failed else START[1:]), (now, outcome)
            assert failed or outcome == 1, outcome
        elif self.kind == "sadd":
            assert now == (START if failed else [*START, b"7"]), (now, outcome)
            assert failed or outcome == 1, outcome
        else:  # a capping trim: may be applied twice harmlessly (fenced first)
            assert now in ((START, [b"1"]) if failed else ([b"1"],)), (now, outcome)
            return False
        return not failed


def _kinds() -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(READS + WRITES), min_size=2, max_size=4).filter(
        lambda ks: any(k in READS for k in ks) and any(k in WRITES for k in ks))


def _names_a_read(error: Any, reads: list[Drawn]) -> list[str]:
    if not isinstance(error, redmodel.OutcomeUnknownError):
        return []
    return [k for k in error.keys for p in reads
            if k == p.key or (p.kind == "query" and k.startswith(QPREFIX))]


@settings(max_examples=scaled(100), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=_kinds(), target=st.integers(0, 3),
       fault=st.sampled_from(["lose", "cut", "drop", "stall"]),
       fence=st.sampled_from(["ok", "denied", "lost"]),
       once=st.booleans(),
       shell=st.sampled_from(["sync", "async"]))
def test_a_read_in_a_shared_round_gets_what_it_gets_alone(
        redis_client: Any, proxy: Any, kinds: list[str], target: int, fault: str,
        fence: str, once: bool, shell: str) -> None:
    redis_client.flushall()
    user_without_client_kill(redis_client, USER)
    redmodel.Store(redis_client).save(RED)
    plans = [Drawn(k, n) for n, k in enumerate(kinds)]
    for p in plans:
        p.prepare(redis_client)
    victim = plans[target % len(plans)]

    def arm() -> None:
        if fence == "lost":
            proxy.drop_request("CLIENT", times=1000, when=lambda a: a[1:2] == [b"KILL"])
        arm_fault(proxy, fault, marked(victim.key))

    outcomes, error = run_many_outcomes(
        shell, client_options(proxy, USER if fence == "denied" else None),
        {"exactly_once": once, "resend": FAST_RESEND},
        lambda store: [p.plan(store) for p in plans],
        first=lambda store: [p.first(store) for p in plans], arm=arm)
    now = [p.state(redis_client) for p in plans]
    proxy.clear()
    assert proxy.quiet()  # every stalled copy has landed (or was fenced)
    later = [p.state(redis_client) for p in plans]
    reads = [p for p in plans if p.read]
    for told in [error, *outcomes]:
        assert not _names_a_read(told, reads), (
            f"OutcomeUnknownError names a read's key {_names_a_read(told, reads)}: {told}")
    applied = [p.check(o, once, n, la)
               for p, o, n, la in zip(plans, outcomes, now, later, strict=True)]
    if error is not None:
        assert any(isinstance(o, BaseException) for o in outcomes)
        if not isinstance(error, redmodel.OutcomeUnknownError):
            assert not any(applied), (
                f"plain {error!r} after writes were applied: "
                f"{[(p.kind, o) for p, o in zip(plans, outcomes, strict=True)]}")


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_read_in_a_plans_own_write_batch_is_resent_without_a_fence(
        redis_client: Any, proxy: Any, shell: str) -> None:
    """A container's first use marks it in the model registry and reads the registry back
    in one batch (HSET, HGET owner, HGET schema): the HGETs' replies lost after the HSET
    answered, on a store that may not CLIENT KILL: the reads are sent again (alone, a read
    needs no fence) and the push returns; before, the HGETs were fenced like writes and
    the push raised OutcomeUnknownError naming the registry."""
    redis_client.delete("fa32:lone")
    user_without_client_kill(redis_client, USER)
    marked_yet: list[bytes] = []

    def after_the_mark(args: list[bytes]) -> bool:  # an HGET of the marking batch
        if args[0].upper() == b"HSET":
            marked_yet.append(args[1])
            return False
        return bool(marked_yet) and args[2:3] == [b"owner"]

    outcomes, error = run_many_outcomes(
        shell, client_options(proxy, USER), {"resend": FAST_RESEND},
        lambda store: [Queue(store, ("fa32", "lone"), int).push_plan(7)],
        arm=lambda: proxy.lose_reply(lambda c: c in ("HSET", "HGET"), when=after_the_mark))
    proxy.clear()
    assert marked_yet, "no marking batch was sent"
    assert error is None and outcomes == [1], (outcomes, error)
    assert redis_client.lrange("fa32:lone", 0, -1) == [b"7"]


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_read_that_never_answers_beside_an_applied_write_is_not_named(
        redis_client: Any, proxy: Any, shell: str) -> None:
    """Every copy of the LLEN dropped, the push beside it applied (exactly once: resent
    under its write id when the dropped LLEN took its reply along): the read fails plainly
    (as alone) and run_many raises OutcomeUnknownError (a write was applied: calling it
    again would push twice), naming no key of the read, which wrote nothing."""
    redis_client.delete("fa32q", "fa32r")
    redis_client.rpush("fa32q", *START)
    redis_client.rpush("fa32r", *START)
    outcomes, error = run_many_outcomes(
        shell, client_options(proxy), {"exactly_once": True, "resend": FAST_RESEND},
        lambda store: [Queue(store, "fa32q", int).push_plan(7),
                       Queue(store, "fa32r", int).length_plan()],
        first=lambda store: [Queue(store, k, int).exists_plan() for k in ("fa32q", "fa32r")],
        arm=lambda: arm_fault(proxy, "drop-always", marked("fa32r")))
    proxy.clear()
    assert outcomes[0] == 4 and isinstance(outcomes[1], redis.ConnectionError), outcomes
    assert not isinstance(outcomes[1], redmodel.OutcomeUnknownError), outcomes
    assert isinstance(error, redmodel.OutcomeUnknownError), error
    assert error.keys == (), error
    assert "reads only" in str(error), error


def test_what_counts_as_a_read() -> None:
    """Every command of a batch that is not a write; in a write batch only the plain
    reads that may be sent twice; in gather's merged batch the reads of each part."""
    from redmodel._plan import gather  # noqa: PLC0415

    mixed = Batch([("HSET", "k", "f", "v"), ("HGET", "k", "f"), ("EVALSHA", "x", 0)],
                  write=True, idempotent=True)
    assert mixed.read_commands() == (1,)
    never = Batch([("RPUSH", "k", "v"), ("LLEN", "k")], write=True)
    assert never.read_commands() == ()  # a batch that must not run twice: all writes
    assert Batch([("EVALSHA", "x", 0), ("TYPE", "k")]).read_commands() == (0, 1)
    assert Batch([(b"GET", "k")], write=True, idempotent=True).read_commands() == ()

    def plan(batch: Batch) -> Any:
        yield batch
    round_ = next(gather([plan(never), plan(Batch([("LLEN", "r")])), plan(mixed)]))
    assert round_.shared and round_.read_commands() == (2, 4)


def test_read_commands_are_read_only_on_the_server(redis_client: Any) -> None:
    """Each name of READ_COMMANDS is flagged ``readonly`` in the server's command table:
    a wrong "read" would be resent with no fence (a double apply)."""
    table = redis_client.command()
    for name in sorted(READ_COMMANDS):
        flags = {f if isinstance(f, str) else f.decode() for f in table[name.lower()]["flags"]}
        assert "readonly" in flags and "write" not in flags, (name, flags)

