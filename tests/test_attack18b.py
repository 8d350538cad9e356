"""Second attack on issue 18, against the fixes of the first round (FINDINGS-18a): one
failing test per finding of /work/notes/FINDINGS-18b.md. The promises are docs/design.md's
and docs/transactions.md's ("Scripts inside MULTI", the plain HINCRBY row of the commit
table)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import enum
from typing import Any

import attrs
import redis

import redmodel
from redmodel import Store
from redmodel.containers import Queue, Set, SortedSet
from redmodel.plans import Plan


@redmodel.model(prefix="atk18b")
@attrs.define
class Hat:
    color: str = "black"
    quantity: int = 0
    id: str = redmodel.key_field()


class Step(enum.IntEnum):
    """An ordinary int (an IntEnum is an ``int``): the amounts a shop names."""
    ONE = 1


# ---- F1: the plain HINCRBY path sends the amount as given ------------------------------


def test_a_plain_increment_takes_every_int_the_script_takes(
        store: Store, redis_client: redis.Redis) -> None:
    """``store.incr(Hat, id, "quantity", Step.ONE)`` and ``tx.incr`` of an object the
    transaction did not read accept an IntEnum amount (the counter script). Once the
    transaction has read the object, the same call takes the plain HINCRBY path, which
    hands the IntEnum itself to the wire: hiredis refuses to pack it (redis-py DataError
    "A tuple item must be str, int, float or bytes.", naming no key), and redis-py's own
    packer would send repr() "<Step.ONE: 1>" inside MULTI (HINCRBY fails in EXEC, the rest
    of the transaction applies). docs/transactions.md: the plain path is taken only when
    "every check of the script passes and its only write is that HINCRBY"."""
    store.save(Hat(id="e1", quantity=5))
    assert store.incr(Hat, "e1", "quantity", Step.ONE) == 6

    @redmodel.transaction(store)
    def restock(tx: Any) -> Any:
        tx.get_or_raise(Hat, "e1")
        first = tx.incr(Hat, "e1", "quantity", Step.ONE)
        tx.command("SET", "atk18b:marker", "1")
        return first

    pending = restock()
    assert pending.value == 7
    assert redis_client.hget("atk18b:e1", "quantity") == b"7"
    assert redis_client.get("atk18b:marker") == b"1"


# ---- F2: a plain function that returns a generator expression is refused ---------------


def test_a_function_that_ran_and_returns_a_generator_expression_commits(
        store: Store, redis_client: redis.Redis) -> None:
    """The fix of FINDINGS-18a F2 refuses any function whose *result* is a generator, on
    the grounds that "its body would never run". ``sold`` is an ordinary function: its
    body ran, queued its write, and returns a lazy value built from what it read (as it
    may return ``map(...)`` or ``iter([...])``, both accepted). It is refused after the
    fact, with a message that is false, and its write is thrown away. Only a generator
    whose frame has not started (a generator function behind a wrapper) is the case the
    issue's bug 3 names."""
    store.save(Hat(id="g1", quantity=5))

    @redmodel.transaction(store)
    def sold(tx: Any, ids: list[str]) -> Any:
        hats = [tx.get_or_raise(Hat, i) for i in ids]
        tx.incr(Hat, "g1", "quantity", -1)
        return (h.color for h in hats)

    @redmodel.transaction(store)
    def sold_map(tx: Any, ids: list[str]) -> Any:
        hats = [tx.get_or_raise(Hat, i) for i in ids]
        tx.incr(Hat, "g1", "quantity", -1)
        return map(lambda h: h.color, hats)

    assert list(sold_map(["g1"])) == ["black"]   # accepted
    assert redis_client.hget("atk18b:g1", "quantity") == b"4"
    assert list(sold(["g1"])) == ["black"]       # refused: TransactionError
    assert redis_client.hget("atk18b:g1", "quantity") == b"3"


# ---- F3: the sync twin of 18a-F7: a handle joined from threads --------------------------


def test_joined_sync_transactions_from_threads_are_refused_or_serialised(
        redis_url: str) -> None:
    """FINDINGS-18a F7 was fixed for asyncio.gather (joins serialised). The sync twin:
    inside ``outer``, joined functions run on a thread pool with the caller's context
    (``contextvars.copy_context().run``, what ``asyncio.to_thread``, starlette's
    ``run_in_threadpool`` and many executors do) join the same open Transaction and send
    their WATCH/HGETALL concurrently over its one pinned connection: "the transaction's
    connection was closed", redis-py ``TimeoutError`` naming no key, every attempt
    restarted, and connections leaked from the pool. docs: "A handle belongs to one
    thread": a join from another thread must be refused (TransactionError) or serialised,
    never corrupt the connection."""
    store = Store.from_url(redis_url, socket_timeout=1)  # a corrupted read fails fast
    for i in range(8):
        store.save(Hat(id=f"t{i}", quantity=i))

    @redmodel.transaction(store)
    def take(tx: Any, i: int) -> int:
        return int(tx.get_or_raise(Hat, f"t{i}").quantity)

    @redmodel.transaction(store)
    def outer(tx: Any) -> list[int]:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(contextvars.copy_context().run, take, i)
                       for i in range(4)]
            got = [f.result() for f in futures]
        tx.incr(Hat, "t0", "quantity", 1)
        return got

    for _ in range(8):  # the threads do not always overlap
        outcome: Any
        try:
            outcome = outer()
        except redmodel.TransactionError as refused:  # refused: the promise is kept
            outcome = refused
        pool = store.client.connection_pool
        assert len(pool._in_use_connections) == 0  # type: ignore[attr-defined]
        assert outer.stats.restarts == 0
        if not isinstance(outcome, redmodel.TransactionError):
            assert outcome == list(range(4))


# ---- F4: an AsyncTransaction joined from another event loop ------------------------------


def test_an_async_transaction_joined_from_another_event_loop_is_refused(
        redis_url: str) -> None:
    """``asyncio.to_thread`` copies the context, so a joined async function run there on
    its own loop (``asyncio.run``) joins the outer AsyncTransaction, whose connection and
    lock belong to the first loop: asyncio's ``RuntimeError: Task ... got Future attached to
    a different loop`` leaves redmodel, not a TransactionError saying what is wrong (as
    for a join from a sync function, or a join of another store)."""

    async def main() -> BaseException | None:
        store = redmodel.AsyncStore.from_url(redis_url)
        await store.save(Hat(id="l1", quantity=3))

        @redmodel.transaction(store)
        async def take(tx: Any) -> int:
            return int((await tx.get_or_raise(Hat, "l1")).quantity)

        @redmodel.transaction(store)
        async def outer(tx: Any) -> int:
            value = await asyncio.to_thread(lambda: asyncio.run(take()))
            tx.incr(Hat, "l1", "quantity", 1)
            return value

        try:
            for _ in range(20):  # the other loop's read sometimes slips through
                await asyncio.wait_for(outer(), 5)
        except Exception as e:
            return e
        finally:
            await store.client.aclose()
        return None

    error = asyncio.run(main())
    assert error is None or isinstance(error, redmodel.TransactionError), repr(error)


# ---- F5: a composed plan (redmodel.plans' own example) queued in a transaction ------------


def both(a: Plan[Any], b: Plan[Any]) -> Plan[tuple[Any, Any]]:
    """The helper redmodel.plans' docstring shows (there for ints)."""
    x = yield from a
    y = yield from b
    return (x, y)


def test_a_composed_write_plan_in_a_transaction_is_all_or_nothing(
        store: Store, redis_client: redis.Redis) -> None:
    """``tx.queue(both(q1.push_plan(1), q2.add_plan("m", 2)))``: redmodel.plans documents
    composing plans with ``yield from`` and docs/containers.md ``tx.queue(q.push_plan(x))``.
    Only the first plan's write makes it into MULTI; at EXEC the INCR and the first push are
    applied, then the call raises ``TransactionError: write needs another round trip after
    EXEC`` - an error after a partial commit (a retry by the caller applies them twice)."""
    q1 = Queue(store, "atk18b:q1", int)
    z2 = SortedSet(store, "atk18b:z2", str)

    @redmodel.transaction(store)
    def f(tx: Any) -> Any:
        tx.command("INCR", "atk18b:ctr")
        return tx.queue(both(q1.push_plan(1), z2.add_plan("m", 2)))

    with contextlib.suppress(redmodel.TransactionError):
        f()  # refusing it is fine, if nothing was applied
    # a container's own key escapes ":" (atk18b:q1 is stored at atk18b%3Aq1)
    applied = (redis_client.get("atk18b:ctr"), redis_client.lrange("atk18b%3Aq1", 0, -1),
               redis_client.zrange("atk18b%3Az2", 0, -1))
    assert applied in ((None, [], []), (b"1", [b"1"], [b"m"])), applied


def test_a_container_schema_conflict_in_a_transaction_comes_before_any_write(
        store: Store, redis_client: redis.Redis) -> None:
    """docs/containers.md: a first use that differs from the key's record "raises
    SchemaConflictError naming both, before anything is written", and ``in_tx`` / plans are
    checked "at commit, before anything is sent". With the second container's plan behind
    a composed plan, the transaction commits the INCR and the first push, then raises
    SchemaConflictError."""
    Set(store, "atk18b:s3", str).add("x")
    q1 = Queue(store, "atk18b:q1", int)
    q3 = Queue(store, "atk18b:s3", int)  # a Queue over a key recorded as a Set

    @redmodel.transaction(store)
    def f(tx: Any) -> Any:
        tx.command("INCR", "atk18b:ctr")
        return tx.queue(both(q1.push_plan(5), q3.push_plan(1)))

    # the documented refusals: SchemaConflictError, or TransactionError refusing a plan
    # redmodel did not build (a composed plan) before anything is sent
    with contextlib.suppress(redmodel.SchemaConflictError, redmodel.TransactionError):
        f()
    assert redis_client.get("atk18b:ctr") is None
    assert redis_client.lrange("atk18b%3Aq1", 0, -1) == []
