"""Attack 29AH: transactions and exactly-once under faults. Each test holds the code to a
sentence of the docs and FAILS on main as of this attack."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis

import redmodel
from redmodel.testing import FaultProxy, RedisServer, has
from tests.faults import FAST_RESEND, store_through


@redmodel.model(prefix="atk29ah")
@attrs.define
class Item:
    id: str = redmodel.key_field(generated=False)
    n: int = 0
    x: float = 0.0


BIG = 2**62 + 1  # past 2**53: a Lua double cannot hold it (nor BIG + 2)


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f1_exactly_once_tx_incr_value_is_exact_over_64_bits(
        redis_server: RedisServer, redis_client: Any, shell: str) -> None:
    """docs/transactions.md: writes queued in a transaction "Each returns a `Pending` whose
    `.value` is what the Store method of the same name returns"; docs/store.md, `incr`:
    "the new value, exact over 64 bits". With exactly_once=True, `tx.incr` of an object
    read in the attempt (the plain-HINCRBY short path) returns the new value rounded to a
    double (2**62+3 -> 2**62): the HINCRBY runs inside once_command.lua, whose Lua number
    holds 53 bits. The store holds the right value; the same call with the mode off, or
    `store.incr` in the mode, answers it exactly. No fault needed."""
    redmodel.Store(redis_client).save(Item(id="1", n=BIG))
    if shell == "sync":
        store = redmodel.Store(redis_server.client(), exactly_once=True)

        @redmodel.transaction(store)
        def bump(tx: Any) -> Any:
            tx.get_or_raise(Item, "1")
            return tx.incr(Item, "1", "n", 2)

        value = bump().value
    else:
        async def run() -> Any:
            astore = redmodel.AsyncStore(aredis.Redis(host=redis_server.host,
                                                      port=redis_server.port),
                                         exactly_once=True)

            @redmodel.transaction(astore)
            async def bump(tx: Any) -> Any:
                await tx.get_or_raise(Item, "1")
                return tx.incr(Item, "1", "n", 2)

            try:
                return (await bump()).value
            finally:
                await astore.aclose()

        value = asyncio.run(run())
    assert int(redis_client.hget("atk29ah:1", "n")) == BIG + 2
    assert value == BIG + 2, f"tx.incr answered {value}, the store holds {BIG + 2}"


def test_f2_restarts_counts_only_attempts_run_again(
        proxy: FaultProxy, redis_client: Any) -> None:
    """docs/transactions.md, "How many attempts did it take?": `fn.stats` counts
    "`restarts` (attempts run again because they could not go on, nothing applied)"
    (TxStats' docstring: "attempts run again because nothing of them was applied and they
    could not go on"). Every read of the attempt's connection is dropped: the policy's 5
    attempts run (4 of them run again), then the plain ConnectionError. `restarts` says 5:
    the last attempt, which gave up and was not run again, is counted too (a single drop
    counts 1 for 1 re-run, so one counter means two things)."""
    redmodel.Store(redis_client).save(Item(id="1", n=1))
    store = store_through(proxy, resend=FAST_RESEND)
    runs: list[int] = []

    @redmodel.transaction(store)
    def buy(tx: Any) -> None:
        runs.append(1)
        item = tx.get_or_raise(Item, "1")
        tx.update(Item, "1", n=item.n + 1)

    proxy.drop_request("HGETALL", when=has("atk29ah:1"), times=50)
    with pytest.raises(redis.ConnectionError) as caught:
        buy()
    assert not isinstance(caught.value, redmodel.OutcomeUnknownError)
    assert len(runs) == FAST_RESEND.attempts == 5
    assert redmodel.Store(redis_client).get(Item, "1").n == 1
    assert buy.stats.snapshot()["restarts"] == len(runs) - 1, buy.stats.snapshot()


def test_f1b_exactly_once_raw_tx_command_reply_is_the_servers(
        redis_server: RedisServer, redis_client: Any) -> None:
    """tx.command's docstring (redmodel/transactions/_handles.py): "Queue a raw command;
    value: its reply, as redis-py's ``execute_command`` would return it". With
    exactly_once=True a raw `INCRBY` (keys first: it carries a write id, docs/failures.md)
    runs inside once_command.lua and its integer reply passes through a Lua double: 2**62+1
    comes back as 2**62. The counter holds 2**62+1; execute_command would say so. (The
    same root cause as F1.)"""
    store = redmodel.Store(redis_server.client(), exactly_once=True)

    @redmodel.transaction(store)
    def bump(tx: Any) -> Any:
        return tx.command("INCRBY", "atk29ah:ctr", BIG)

    value = bump().value
    assert int(redis_client.get("atk29ah:ctr")) == BIG
    assert value == BIG, f"tx.command answered {value}, the server's reply is {BIG}"
