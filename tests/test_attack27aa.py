"""Attack 27AA: documented promises of indexed writes, transactions and counters, held to
the code (one test per finding; each fails until the finding is fixed).

Also run, and found nothing (kept out of this file): a Hypothesis state machine of save /
save_many (repeated ids, unique single and compound, blind and blind-unique, TTLs) /
update / incr / incr_fields / delete / delete_many / expire / persist / transactions,
sync and async, against a dict oracle; planted wrong-typed keys mid save_many; lost, cut
and dropped replies of a bucketed save_many and of indexed increments, exactly-once on
and off; equality-indexed ints at and beyond the 64-bit edges; early claims undone by a
refusal before MULTI.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

import redmodel
from redmodel.transactions import AsyncTransaction, Transaction


@redmodel.model(prefix="atk27aa")
@attrs.define
class Stock:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk27ai")
@attrs.define
class IStock:
    color: str = redmodel.field(index=True, default="x")
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


def _errors(pendings: list[Any]) -> list[BaseException]:
    out = []
    for p in pendings:
        try:
            _ = p.value
        except Exception as e:  # each Pending's own error is what is judged
            out.append(e)
    return out


@pytest.mark.parametrize("model", [Stock, IStock])
def test_f1_every_command_failed_inside_exec_is_marked_committed(
        store: redmodel.Store, model: type) -> None:
    """docs/transactions.md, "Errors and guarantees": "a command fails *inside* EXEC (e.g.
    `tx.incr` on a missing object, WRONGTYPE) | Redis has no rollback: the other commands
    **are** applied; the call raises that command's error ... after the commit, marked
    `error.committed = True` ..., and that `Pending` re-raises it."

    Two commands fail inside one EXEC: the first one's error is marked, the second one's
    (re-raised by its Pending) is not, although the transaction committed (the update of
    "a" is applied). A caller handling that Pending's error by `getattr(e, "committed",
    False)`, as the docs advise, is told nothing was written."""
    store.save(model(id="a"))
    with pytest.raises(redmodel.NotFoundError) as raised, Transaction(store) as tx:
        tx.update(model, "a", n=5)
        first = tx.incr(model, "gone1", "n", 1)
        second = tx.incr(model, "gone2", "n", 1)
    assert store.get(model, "a").n == 5  # committed
    assert getattr(raised.value, "committed", False) is True
    errors = _errors([first, second])
    assert [type(e) for e in errors] == [redmodel.NotFoundError] * 2
    assert [getattr(e, "committed", False) for e in errors] == [True, True]


def test_f1_raw_commands_failing_inside_exec_async(redis_url: str, redis_client: Any) -> None:
    """The same promise on an AsyncStore, with raw commands refused inside EXEC
    (WRONGTYPE-like: INCR of a non-integer): the second failed command's Pending error has
    no `committed`."""
    redis_client.set("atk27aa:raw1", "x")
    redis_client.set("atk27aa:raw2", "y")

    async def run() -> tuple[BaseException, list[BaseException]]:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save(Stock(id="a"))
            try:
                async with AsyncTransaction(astore) as tx:
                    p1 = tx.command("INCR", "atk27aa:raw1")
                    tx.update(Stock, "a", n=5)
                    p2 = tx.command("INCR", "atk27aa:raw2")
            except redmodel.ServerError as e:
                return e, _errors([p1, p2])
            raise AssertionError("the transaction raised nothing")

    call_error, errors = asyncio.run(run())
    assert redis_client.hget("atk27aa:a", "n") == b"5"  # committed
    assert getattr(call_error, "committed", False) is True
    assert len(errors) == 2
    assert [getattr(e, "committed", False) for e in errors] == [True, True]
