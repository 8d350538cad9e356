"""Attack 31M: run_many after fix 31I (unfenced writes), exactly-once mode.

In exactly-once mode a write that must not run twice (a push, a pop) carries a write id:
alone, its lost reply is resent under that id (or fenced), so it returns or raises plain.
In a round of ``run_many`` shared with a neighbour whose resendable write (a capping
``trim``) lost its reply and cannot be fenced (an ACL user without ``CLIENT KILL``), the
Exchange raises ``OutcomeUnknownError`` at once from ``_settle_kill`` (``_unknown(denied)``),
abandoning the write-id resend / fence of the other plans' writes of that round:
``_plan_part`` then tells the push / pop plan "unknown" (its write id is neither answered
nor in ``not_ran``), and a pop's member is lost although its write-id record holds it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

import redmodel
from redmodel.containers import Queue
from redmodel.testing import FaultProxy
from tests.faults import FAST_RESEND

PLAIN = (redis.ConnectionError, redis.TimeoutError)


def _nokill_client(redis_client: Any, proxy: FaultProxy, cls: Any = redis.Redis,
                   fence: str = "denied") -> Any:
    """A client of a user without CLIENT KILL (``fence="denied"``), or of the default user
    whose every CLIENT KILL request is dropped on the way (``"lost"``: a flaky network)."""
    if fence == "lost":
        proxy.drop_request("CLIENT", times=1000, when=lambda a: a[1:2] == [b"KILL"])
        return cls(host=proxy.host, port=proxy.port)
    redis_client.acl_setuser("a31mnokill", enabled=True, passwords=["+pw"], keys=["*"],
                             commands=["+@all", "-client|kill"])
    return cls(host=proxy.host, port=proxy.port, username="a31mnokill", password="pw")


def _run_many(redis_client: Any, proxy: FaultProxy, mode: str, make: Any,
              fence: str = "denied") -> Any:
    """Run ``make(store)``'s plans in one run_many on an exactly-once store of a user
    without CLIENT KILL; returns each plan's outcome (results when it raised)."""
    if mode == "sync":
        store = redmodel.Store(_nokill_client(redis_client, proxy, fence=fence), exactly_once=True,
                               resend=FAST_RESEND)
        try:
            return list(store.run_many(*make(store)))
        except redmodel.OutcomeUnknownError as e:
            return list(e.results)  # type: ignore[attr-defined]
        finally:
            store.close()

    async def go() -> Any:
        import redis.asyncio as aredis  # noqa: PLC0415
        astore = redmodel.AsyncStore(_nokill_client(redis_client, proxy, aredis.Redis, fence),
                                     exactly_once=True, resend=FAST_RESEND)
        try:
            return list(await astore.run_many(*make(astore)))
        except redmodel.OutcomeUnknownError as e:
            return list(e.results)  # type: ignore[attr-defined]
        finally:
            await astore.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize("fence", ["denied", "lost"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_f1_an_exactly_once_pop_beside_an_unfenceable_trim_loses_its_member(
        redis_client: Any, proxy: FaultProxy, mode: str, fence: str) -> None:
    """F1. docs/containers.md: "(`pop()` and `pop_right()` in exactly-once mode are the
    exception: they carry a write id, so the store resends them and they return the
    value"; docs/failures.md (exactly-once mode): the store "says for sure: applied (you
    get the reply) or not applied ... Only when even the fence cannot reach the server is
    the result `OutcomeUnknownError`"; docs/store.md run_many: "each plan gets what it
    would have got alone about its own commands". The pop's LPOP ran (its write-id record
    holds the member); the neighbour trim's LTRIM reply is lost and cannot be fenced: the
    pop gets OutcomeUnknownError, the member is gone from the queue and from every
    result. Alone the same lost reply returns the member. ``fence="lost"``: no ACL needed,
    every CLIENT KILL request dropped (the fence of the trim fails until the policy gives
    up): the same."""
    redis_client.delete("a31m_t", "a31m_p")
    redis_client.rpush("a31m_t", 1, 2, 3)
    redis_client.rpush("a31m_p", 41, 42)
    proxy.lose_reply("LTRIM", when=lambda a: b"a31m_t" in b" ".join(a))
    out = _run_many(redis_client, proxy, mode, lambda s: [
        Queue(s, "a31m_t", int).trim_plan(0, 0), Queue(s, "a31m_p", int).pop_plan()], fence)
    proxy.clear()
    left = [int(x) for x in redis_client.lrange("a31m_p", 0, -1)]
    assert left == [42], left  # the LPOP ran
    assert out[1] == 41, f"exactly-once pop ran (took 41) but its outcome is {out[1]!r}"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_f1b_an_exactly_once_push_beside_an_unfenceable_trim_is_unknown(
        redis_client: Any, proxy: FaultProxy, mode: str) -> None:
    """F1b. As F1 with a push: docs/failures.md exactly-once mode "says for sure: applied
    (you get the reply) or not applied (a plain `ConnectionError`, safe to call again).
    Only when even the fence cannot reach the server is the result
    `OutcomeUnknownError`". The push was applied once (its write-id record holds its
    reply; the server was reachable the whole time), but its plan is told
    OutcomeUnknownError naming its queue."""
    redis_client.delete("a31m_t2", "a31m_q")
    redis_client.rpush("a31m_t2", 1, 2, 3)
    redis_client.rpush("a31m_q", 1)
    proxy.lose_reply("LTRIM", when=lambda a: b"a31m_t2" in b" ".join(a))
    out = _run_many(redis_client, proxy, mode, lambda s: [
        Queue(s, "a31m_t2", int).trim_plan(0, 0), Queue(s, "a31m_q", int).push_plan(5)])
    proxy.clear()
    assert redis_client.lrange("a31m_q", 0, -1) == [b"1", b"5"]  # applied once
    assert out[1] == 2, f"exactly-once push applied, reachable server, outcome {out[1]!r}"


def test_f2_exactly_once_writes_stalled_beside_an_unfenceable_trim_land_after_return(
        redis_client: Any, proxy: FaultProxy) -> None:
    """F2 (same root as F1). docs/failures.md, exactly-once mode: "When the policy gives
    up (every resend lost, the deadline passed), it **fences** the write ids
    (`once_fence.lua`: ... any other is marked fenced, so a copy still on its way can
    never apply) ... Only when even the fence cannot reach the server is the result
    `OutcomeUnknownError`"; docs/containers.md: exactly-once pops "return the value".
    A push (write id) stalled 1.5 s past the socket timeout, a trim and a pop (write id)
    behind it on the same connection, a user without CLIENT KILL: run_many raises
    OutcomeUnknownError for all three while the server answers fine; the push's and the
    pop's write ids are never fenced, and both copies land AFTER run_many returned (the
    popped member 41 is gone, reported by nobody)."""
    for k in ("a31m_sa", "a31m_sb", "a31m_sp"):
        redis_client.delete(k)
    redis_client.rpush("a31m_sa", 1, 2, 3)
    redis_client.rpush("a31m_sb", 1)
    redis_client.rpush("a31m_sp", 41, 42)
    client = _nokill_client(redis_client, proxy)
    client.connection_pool.connection_kwargs["socket_timeout"] = 0.5
    store = redmodel.Store(client, exactly_once=True, resend=FAST_RESEND)
    qa, qb, qp = (Queue(store, k, int) for k in ("a31m_sa", "a31m_sb", "a31m_sp"))
    qa.length(), qb.length(), qp.length()  # first use (registry) done before the fault
    proxy.stall("EVALSHA", 1.5, when=lambda a: b"a31m_sb" in a)
    try:
        out = list(store.run_many(qb.push_plan(5), qa.trim_plan(0, 0), qp.pop_plan()))
    except redmodel.OutcomeUnknownError as e:
        out = list(e.results)  # type: ignore[attr-defined]
    now = [redis_client.lrange(k, 0, -1) for k in ("a31m_sb", "a31m_sp")]
    time.sleep(2.0)
    proxy.clear()
    later = [redis_client.lrange(k, 0, -1) for k in ("a31m_sb", "a31m_sp")]
    store.close()
    assert out[0] == 2 and out[2] == 41, (
        f"exactly-once push/pop outcomes {out[0]!r}, {out[2]!r}; state {now} then {later}")
