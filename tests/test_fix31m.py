"""Fix 31M: exactly-once writes (under write ids) in a round shared with a write that may
be sent twice (a capping LTRIM) whose reply was lost and whose connection cannot be fenced.

Alone, a push or pop under a write id whose reply is lost is sent again under its id (a
second copy is a no-op, a late first copy is recognised) until it answers, or fenced when
the policy gives up: it returns, or raises a plain error (not applied). In a round of
``run_many`` the neighbour trim's fence (``CLIENT KILL``) may fail (an ACL user without
``client|kill``, or every kill request lost on the way): the trim's plan gets
OutcomeUnknownError, and the write-id writes of the round are still settled as alone
(attack 31M F1, F1b, F2).

Property: 2-4 plans drawn from push, pop (write ids) and trim(0, 0) (may be sent twice),
at least one trim and one push/pop; one plan's command faulted (reply lost, reply cut,
stall past the socket timeout); the fence refused (ACL) or every CLIENT KILL request
dropped; sync/async. Oracle: a push or pop never gets OutcomeUnknownError (the server
answers throughout); a result means applied once with the right value, a plain error
means not applied; nothing of a plan not told OutcomeUnknownError changes after run_many
returned; a trim is trimmed when it returns, untouched-or-trimmed and settled when plain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.containers import Queue
from tests.budget import scaled
from tests.faults import (
    FAST_RESEND,
    arm_fault,
    client_options,
    marked,
    run_many_outcomes,
    user_without_client_kill,
)

USER = "fixmnokill"
START = [b"1", b"2", b"3"]


def _kinds() -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(["push", "pop", "trim"]), min_size=2, max_size=4).filter(
        lambda ks: "trim" in ks and ("push" in ks or "pop" in ks))


def _plan(store: Any, kind: str, key: str) -> Any:
    queue = Queue(store, key, int)
    if kind == "push":
        return queue.push_plan(7)
    if kind == "pop":
        return queue.pop_plan()
    return queue.trim_plan(0, 0)


def _options(proxy: Any, fence: str) -> dict[str, Any]:
    return client_options(proxy, USER if fence == "denied" else None)


def _check(kind: str, outcome: Any, now: Any, later: Any) -> None:
    unknown = isinstance(outcome, redmodel.OutcomeUnknownError)
    failed = isinstance(outcome, BaseException)
    if kind in ("push", "pop"):
        assert not unknown, (
            f"exactly-once {kind} told {outcome!r} while the server answered throughout: "
            f"alone it is resent under its write id (state {now} -> {later})")
    if unknown:
        return
    assert now == later, f"{kind}: {outcome!r}, then a copy landed: {now} -> {later}"
    if failed:
        assert isinstance(outcome, (redis.ConnectionError, redis.TimeoutError)), outcome
    if kind == "push":
        assert now == (START if failed else [*START, b"7"]), (now, outcome)
        assert failed or outcome == 4, outcome
    elif kind == "pop":
        assert now == (START if failed else START[1:]), (now, outcome)
        assert failed or outcome == 1, outcome
    else:
        assert now in ((START, [b"1"]) if failed else ([b"1"],)), (now, outcome)


@settings(max_examples=scaled(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=_kinds(), target=st.integers(0, 3),
       fault=st.sampled_from(["lose", "cut", "stall"]),
       fence=st.sampled_from(["denied", "lost"]),
       shell=st.sampled_from(["sync", "async"]))
def test_write_id_writes_beside_an_unfenceable_write_end_as_alone(
        redis_client: Any, proxy: Any, kinds: list[str], target: int, fault: str,
        fence: str, shell: str) -> None:
    redis_client.flushall()
    user_without_client_kill(redis_client, USER)
    keys = [f"fm{n}{k}" for n, k in enumerate(kinds)]
    for key in keys:
        redis_client.rpush(key, *START)
    mark = keys[target % len(keys)]

    def arm() -> None:
        if fence == "lost":
            proxy.drop_request("CLIENT", times=1000, when=lambda a: a[1:2] == [b"KILL"])
        arm_fault(proxy, fault, marked(mark))

    outcomes, _ = run_many_outcomes(
        shell, _options(proxy, fence), {"exactly_once": True, "resend": FAST_RESEND},
        lambda store: [_plan(store, k, key) for k, key in zip(kinds, keys, strict=True)],
        first=lambda store: [Queue(store, key, int).exists_plan() for key in keys], arm=arm)
    now = [redis_client.lrange(k, 0, -1) for k in keys]
    proxy.clear()
    assert proxy.quiet()  # every stalled copy has landed (or was fenced)
    later = [redis_client.lrange(k, 0, -1) for k in keys]
    assert len(outcomes) == len(kinds), outcomes
    for kind, outcome, n, la in zip(kinds, outcomes, now, later, strict=True):
        _check(kind, outcome, n, la)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_lone_trim_that_cannot_be_fenced_is_still_unknown(
        redis_client: Any, proxy: Any, mode: str) -> None:
    """A lone batch's behaviour is unchanged: a trim alone, its LTRIM reply lost, no
    CLIENT KILL: OutcomeUnknownError naming its key."""
    user_without_client_kill(redis_client, USER)
    redis_client.delete("fm_lone")
    redis_client.rpush("fm_lone", *START)
    options: dict[str, Any] = {"exactly_once": True, "resend": FAST_RESEND}

    def go(store: Any) -> Any:
        proxy.lose_reply("LTRIM", when=lambda a: b"fm_lone" in a)
        return Queue(store, "fm_lone", int).trim(0, 0)

    with pytest.raises(redmodel.OutcomeUnknownError) as caught:
        if mode == "sync":
            store = redmodel.Store(redis.Redis(**_options(proxy, "denied")), **options)
            try:
                Queue(store, "fm_lone", int).length()
                go(store)
            finally:
                store.close()
        else:
            async def run() -> None:
                astore = redmodel.AsyncStore(redis.asyncio.Redis(**_options(proxy, "denied")),
                                             **options)
                try:
                    await Queue(astore, "fm_lone", int).length()
                    await go(astore)
                finally:
                    await astore.aclose()
            asyncio.run(run())
    proxy.clear()
    assert "fm_lone" in caught.value.keys
