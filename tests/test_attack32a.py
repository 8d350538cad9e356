"""Attack 32A: run_many's shared rounds and the reads in them (after fix 31M).

A read needs no fence (docs/failures.md: "Reads need no fence"): alone, a read whose reply
was lost is simply sent again and returns. In a round shared with a write (``run_many``),
the transport counts the read among the "resendable writes" (``_settle_plain`` puts every
resendable command in ``maybe_applied`` / ``unfenced``; ``_lost`` fences them all with
``CLIENT KILL``). For an ACL user without ``CLIENT KILL`` the read is then set aside as an
unfenceable write (``_settle_kill`` -> ``_defer`` / ``_unknown``): never sent again, its
plan fails, and run_many raises ``OutcomeUnknownError`` naming only the read's key ("the
write may or may not have been applied (keys ['r'])") though every write answered. In
exactly-once mode the step goes on resending the neighbour's write-id push (fix 31M) and
still drops the read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

import redmodel
from redmodel.containers import Queue
from redmodel.testing import FaultProxy
from tests.faults import FAST_RESEND

USER = "atka32nokill"


def _client(redis_client: Any, proxy: FaultProxy, cls: Any) -> Any:
    redis_client.acl_setuser(USER, enabled=True, passwords=["+pw"], keys=["*"],
                             commands=["+@all", "-client|kill"])
    return cls(host=proxy.host, port=proxy.port, username=USER, password="pw")


def _go(redis_client: Any, proxy: FaultProxy, shell: str, exactly_once: bool,
        arm: Any) -> tuple[Any, list[Any], Any]:
    """(the read alone, run_many's outcome per plan, the raised error) for
    ``q.push_plan(5)`` beside ``r.length_plan()``, the fault ``arm(proxy)`` armed before
    each call."""
    options: dict[str, Any] = {"exactly_once": exactly_once, "resend": FAST_RESEND}

    def make(store: Any) -> list[Any]:
        return [Queue(store, "a32q", int).push_plan(5), Queue(store, "a32r", int).length_plan()]

    if shell == "sync":
        store = redmodel.Store(_client(redis_client, proxy, redis.Redis), **options)
        try:
            for key in ("a32q", "a32r"):  # the containers' first use, not faulted
                store.run(Queue(store, key, int).exists_plan())
            arm(proxy)
            alone = Queue(store, "a32r", int).length()
            proxy.clear()
            arm(proxy)
            try:
                return alone, list(store.run_many(*make(store))), None
            except Exception as e:
                return alone, list(getattr(e, "results", [e])), e
        finally:
            store.close()

    async def run() -> tuple[Any, list[Any], Any]:
        import redis.asyncio as aredis  # noqa: PLC0415
        astore = redmodel.AsyncStore(_client(redis_client, proxy, aredis.Redis), **options)
        try:
            for key in ("a32q", "a32r"):
                await astore.run(Queue(astore, key, int).exists_plan())
            arm(proxy)
            alone = await Queue(astore, "a32r", int).length()
            proxy.clear()
            arm(proxy)
            try:
                return alone, list(await astore.run_many(*make(astore))), None
            except Exception as e:
                return alone, list(getattr(e, "results", [e])), e
        finally:
            await astore.aclose()
    return asyncio.run(run())


def _lose_llen(proxy: FaultProxy) -> None:
    proxy.lose_reply("LLEN")


def _lose_all(proxy: FaultProxy) -> None:  # the push's reply and the read's both lost
    proxy.lose_reply(lambda c: True, when=lambda a: b"a32q" in a)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["mode-off", "exactly-once"])
@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f1_a_read_beside_a_write_is_fenced_and_dropped_without_client_kill(
        redis_client: Any, proxy: FaultProxy, shell: str, exactly_once: bool) -> None:
    """F1. docs/failures.md: "Reads need no fence."; docs/store.md run_many: "each plan
    gets what it would have got alone about its own commands"; failures.md
    "`.keys` names every key of the object the write may have touched, and no more".
    The push answered, the LLEN's reply was lost: alone the read is sent again and
    returns 3; beside the push, on a store whose user lacks CLIENT KILL, the read is not
    sent again and run_many raises OutcomeUnknownError naming only the read's key."""
    redis_client.delete("a32q", "a32r")
    redis_client.rpush("a32q", 1, 2, 3)
    redis_client.rpush("a32r", 1, 2, 3)
    alone, outcomes, error = _go(redis_client, proxy, shell, exactly_once, _lose_llen)
    proxy.clear()
    assert alone == 3
    assert redis_client.lrange("a32r", 0, -1) == [b"1", b"2", b"3"]  # nothing wrote it
    assert not (isinstance(error, redmodel.OutcomeUnknownError) and "a32r" in error.keys), (
        f"OutcomeUnknownError names the read's key {error.keys}: {error}")
    assert outcomes == [4, 3], outcomes


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f1b_exactly_once_step_resends_the_push_but_drops_the_read(
        redis_client: Any, proxy: FaultProxy, shell: str) -> None:
    """F1b. docs/failures.md (fix 31M): the step "goes on sending the write-id writes again
    under their ids until they answer"; "Reads need no fence"; store.md run_many: "each
    plan gets what it would have got alone". The round's replies are all lost: the push
    is resent under its write id and returns 4, the read (alone: resent, 3) is set aside
    as an unfenceable write, and run_many raises OutcomeUnknownError naming the read."""
    redis_client.delete("a32q", "a32r")
    redis_client.rpush("a32q", 1, 2, 3)
    redis_client.rpush("a32r", 1, 2, 3)
    _alone, outcomes, error = _go(redis_client, proxy, shell, True, _lose_all)
    proxy.clear()
    assert redis_client.lrange("a32q", 0, -1) == [b"1", b"2", b"3", b"5"]
    assert not (isinstance(error, redmodel.OutcomeUnknownError) and "a32r" in error.keys), (
        f"OutcomeUnknownError names the read's key {error.keys}: {error}")
    assert outcomes == [4, 3], outcomes
