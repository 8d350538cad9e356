"""Fixes of attack 29AH, each as a property over its kind.

- Exactly-once mode answers a counter command's integer reply exactly over 64 bits (the
  command runs inside once_command.lua, where an integer is a double): raw INCR, INCRBY,
  DECR, DECRBY and HINCRBY in a transaction and `tx.incr`, the value drawn from the whole
  signed 64-bit range, with and without a lost EXEC reply (then the value comes from the
  write id's record).
- `TxStats.restarts` counts attempts run again, not the one that gave up."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import FaultProxy, RedisServer, has
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through

INT64 = (-(2**63), 2**63 - 1)


@redmodel.model(prefix="fix29ah")
@attrs.define
class Counter:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


_COMMANDS = st.sampled_from(["INCR", "DECR", "INCRBY", "DECRBY", "HINCRBY"])
# the whole signed 64-bit range, half of the draws beyond a double's 53 bits, and its edges
_INTS = st.one_of(
    st.integers(*INT64), st.integers(2**53, INT64[1]), st.integers(INT64[0], -(2**53)),
    st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 1, 2**62 + 1, INT64[1] - 2,
                     INT64[0] + 1]))


def _expected(name: str, start: int, amount: int) -> int:
    return {"INCR": start + 1, "DECR": start - 1, "INCRBY": start + amount,
            "DECRBY": start - amount, "HINCRBY": start + amount}[name]


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, int, int]:
    name = draw(_COMMANDS)
    start = draw(_INTS)
    amount = draw(st.integers(-(2**62), 2**62))
    end = _expected(name, start, amount)
    if not INT64[0] <= end <= INT64[1]:  # an overflow is the server's refusal: not here
        amount = 0 if name in ("INCRBY", "DECRBY", "HINCRBY") else amount
        end = _expected(name, start, amount)
    if not INT64[0] <= end <= INT64[1]:
        start = 0
    return name, start, amount


def _command(name: str, key: str, amount: int) -> tuple[Any, ...]:
    if name in ("INCR", "DECR"):
        return (name, key)
    if name == "HINCRBY":
        return (name, key, "n", amount)
    return (name, key, amount)


@settings(max_examples=scaled(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_cases(), lose=st.booleans())
def test_exactly_once_counter_replies_are_exact_over_64_bits(
        proxy: FaultProxy, redis_client: Any, case: tuple[str, int, int], lose: bool) -> None:
    """Property: in exactly-once mode a raw counter command of a transaction answers what
    the command alone answers (the server's exact 64-bit value), also when the EXEC reply
    was lost and the value is read back from the write id's record."""
    name, start, amount = case
    key = "fix29ah:ctr"
    redis_client.delete(key)
    if name == "HINCRBY":
        redis_client.hset(key, "n", start)
    else:
        redis_client.set(key, start)
    store = store_through(proxy, exactly_once=True, resend=FAST_RESEND)
    try:
        @redmodel.transaction(store)
        def bump(tx: Any) -> Any:
            return tx.command(*_command(name, key, amount))

        proxy.clear()
        if lose:
            proxy.lose_reply("EXEC")
        value = bump().value
    finally:
        store.close()
    assert proxy.armed == 0  # the EXEC reply was lost when drawn so
    end = _expected(name, start, amount)
    stored = redis_client.hget(key, "n") if name == "HINCRBY" else redis_client.get(key)
    assert int(stored) == end  # applied once
    assert type(value) is int and value == end, (name, start, amount, value)


@settings(max_examples=scaled(20), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=_INTS, amount=st.integers(-(2**62), 2**62))
def test_exactly_once_tx_incr_answers_what_store_incr_answers(
        redis_server: RedisServer, redis_client: Any, start: int, amount: int) -> None:
    """Property: `tx.incr` of an object read in the attempt (the plain HINCRBY path)
    answers in exactly-once mode the value `store.incr` answers: the exact sum."""
    if not INT64[0] <= start + amount <= INT64[1]:
        amount = 0
    base = redmodel.Store(redis_client)
    base.save(Counter(id="1", n=start))
    store = redmodel.Store(redis_server.client(), exactly_once=True)
    try:
        @redmodel.transaction(store)
        def bump(tx: Any) -> Any:
            tx.get_or_raise(Counter, "1")
            return tx.incr(Counter, "1", "n", amount)

        assert bump().value == start + amount
    finally:
        store.close()
    assert base.get(Counter, "1") == Counter(id="1", n=start + amount)


@pytest.mark.parametrize("drops", [1, 2, 4, 50])
def test_restarts_count_the_attempts_run_again(
        proxy: FaultProxy, redis_client: Any, drops: int) -> None:
    """`restarts` is the number of attempts run again: with ``drops`` reads dropped under
    a policy of 5 attempts, the function runs min(drops + 1, 5) times; restarts is one
    less; the attempt that gave up (drops >= 5) counts as an error, not a restart."""
    base = redmodel.Store(redis_client)
    base.save(Counter(id="1", n=1))
    store = store_through(proxy, resend=FAST_RESEND)
    runs: list[int] = []

    @redmodel.transaction(store)
    def bump(tx: Any) -> None:
        runs.append(1)
        c = tx.get_or_raise(Counter, "1")
        tx.update(Counter, "1", n=c.n + 1)

    proxy.drop_request("HGETALL", when=has("fix29ah:1"), times=drops)
    gives_up = drops >= FAST_RESEND.attempts
    if gives_up:
        with pytest.raises(redis.ConnectionError):
            bump()
    else:
        bump()
    stats = bump.stats.snapshot()
    assert len(runs) == min(drops + 1, FAST_RESEND.attempts)
    assert stats["restarts"] == len(runs) - 1, stats
    assert stats["errors"] == (1 if gives_up else 0), stats
    assert base.get(Counter, "1") == Counter(id="1", n=1 if gives_up else 2)
