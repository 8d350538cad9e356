"""The transaction's hot path (issue 17, item 3): ``tx.get``/``tx.get_or_raise`` of a
hash-layout object read without their plans, and ``tx.incr`` of an object read in the
attempt queued as a plain HINCRBY without its plan (TxCore.queue_command). Both are
shortcuts of the general path (``tx.query(_ops.get...)``, the increment's plan), so:

- over drawn stored hashes (missing objects, canonical and non-canonical numbers, values
  at and beyond the 64-bit bounds, a renamed field's old name, text where a number
  belongs), drawn reads, increments (ints beyond 64 bits, bools, floats, an IntEnum,
  unknown and non-numeric fields) and a drawn write of another client between the read
  and EXEC (a conflict, then a second attempt), the shortcut and the general path answer
  the same (values, errors, attempts) and leave the same hash;
- a lost or cut reply, or a connection closed, on each command of the buy (WATCH,
  HGETALL, MULTI, HINCRBY, EXEC) leaves the increment applied once or not at all, and the
  caller can tell which: a normal return is applied once, a plain ConnectionError is not
  applied, OutcomeUnknownError is "at most once" and never resent; with exactly-once the
  lost EXEC reply is settled (fenced), never blindly resent.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel._plans import _objects as _ops
from redmodel.testing import FaultProxy, RedisServer, has
from tests.budget import scaled


@redmodel.model(prefix="tfa")
@attrs.define
class FA:
    n: int = 0
    f: float = 0.0
    r: int = redmodel.field(default=0, old_names=["r0"])
    s: str = ""
    id: str = redmodel.key_field(generated=False)


class One(enum.IntEnum):
    ONE = 1


KEY = spec_of(FA).key_for("x")
ODD_INTS = st.sampled_from([b"-0", b"007", b"+1", b" 1", b"1.0", b"", b"x",
                            b"9223372036854775807", b"-9223372036854775808",
                            b"9223372036854775806", b"9223372036854775808"])
RAW_INTS = st.one_of(st.integers(-99, 99).map(lambda i: str(i).encode()), ODD_INTS)
STORED = st.fixed_dictionaries({b"n": RAW_INTS}, optional={
    b"r": RAW_INTS, b"r0": RAW_INTS, b"s": st.sampled_from([b"a", b""]),
    b"f": st.sampled_from([b"1.5", b"0", b"nan", b"x"])})
AMOUNTS = st.one_of(st.integers(-3, 3), st.integers(-3, 3), st.sampled_from(
    [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, True, 1.5, One.ONE]))
INCRS = st.lists(st.tuples(st.sampled_from(["n", "n", "r", "f", "s", "zz"]), AMOUNTS),
                 max_size=4)
OTHER = st.none() | st.tuples(st.sampled_from([b"n", b"r", b"r0", b"f"]), RAW_INTS)


def _shape(thing: Any) -> Any:
    """What a call answered, comparable across the two runs."""
    if isinstance(thing, BaseException):
        return type(thing).__name__, str(thing)
    return thing if not attrs.has(type(thing)) else repr(thing)


def _general_read(tx: Any, must: bool) -> Any:
    plan = _ops.get_or_raise(FA, "x") if must else _ops.get(FA, "x")
    return tx.query(plan, "get FA 'x'")


def _general_incr(tx: Any, field: str, amount: Any) -> Any:
    """Transaction.incr before its shortcut: the increment's plan, queued."""
    tx._models.add(FA)
    spec = spec_of(FA)
    plain = spec.indexes is None and spec.layout == "hash"
    if not plain:
        tx._core.hints.seen.clear()
    plan = _ops.incr(FA, "x", field, amount, tx._core.hints)
    return tx._queue(plan, f"incr FA 'x' {field}", plain)


def _run(store: redmodel.Store, other: redis.Redis, general: bool, read: str,
         incrs: list[tuple[str, Any]], meddle: tuple[bytes, bytes] | None) -> Any:
    answers: list[Any] = []
    pendings: list[Any] = []
    shortcuts: list[int] = []

    def body(tx: Any) -> None:
        answers.clear()
        pendings.clear()
        if read != "none":
            try:
                must = read == "get_or_raise"
                got = _general_read(tx, must) if general else (
                    tx.get_or_raise(FA, "x") if must else tx.get(FA, "x"))
                answers.append(_shape(got))
            except (redmodel.NotFoundError, redmodel.DecodeError) as e:
                answers.append(_shape(e))
        if meddle is not None and len(shortcuts) == 0:
            other.hset(KEY, meddle[0], meddle[1])  # another client, between read and EXEC
        shortcuts.append(0)
        for field, amount in incrs:
            try:
                pending = (_general_incr(tx, field, amount) if general
                           else tx.incr(FA, "x", field, amount))
            except redmodel.ValidationError as e:
                answers.append(_shape(e))
                continue
            pendings.append(pending)
        shortcuts[-1] = sum(q.plan is None for q in tx._core._queued)

    try:
        outcome: Any = store.transaction(body).outcome()
        result = ("ok", outcome.attempts)
    except Exception as e:  # the first failed write's error, after EXEC
        result = _shape(e)
    values = []
    for p in pendings:
        try:
            values.append(_shape(p.value))
        except Exception as e:
            values.append(_shape(e))
    return (result, answers, values, other.hgetall(KEY)), shortcuts


@pytest.fixture
def two(redis_url: str) -> Iterator[tuple[Any, ...]]:
    """A store and a raw client on each of two databases of one server."""
    pairs = []
    for db in (1, 2):
        store = redmodel.Store.from_url(redis_url, db=db)
        pairs.append((store, redis.Redis.from_url(redis_url, db=db)))
    yield tuple(pairs)
    for store, client in pairs:
        client.flushdb()
        client.close()
        store.close()


@settings(max_examples=scaled(50, floor=10), deadline=None)
@given(exists=st.sampled_from([True, True, True, False]), stored=STORED,
       read=st.sampled_from(["get", "get_or_raise", "get", "none"]),
       incrs=INCRS, meddle=OTHER)
def test_the_shortcuts_answer_and_store_what_the_general_path_does(
        two: tuple[Any, ...], exists: bool, stored: dict[bytes, bytes], read: str,
        incrs: list[tuple[str, Any]], meddle: tuple[bytes, bytes] | None) -> None:
    runs = []
    for (store, client), general in zip(two, (False, True), strict=True):
        client.delete(KEY)
        if exists:
            client.hset(KEY, mapping={b"id": b"x", **stored})
        runs.append(_run(store, client, general, read, incrs, meddle))
    (fast, shortcuts), (slow, _) = runs
    event(f"increments queued as plain commands: {max(shortcuts, default=0)}")
    event(f"attempts: {fast[0][1] if fast[0][0] == 'ok' else 'raised'}")
    assert fast == slow


# ---- faults on every command of the buy ---------------------------------------------------

SOCKET_TIMEOUT = 0.4
POLICY = redmodel.ResendPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05, deadline=6.0,
                               write_id_ttl=30.0)


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


def _buy(store: Any) -> Any:
    """The tutorial's buy (docs/transactions.md): its read and increments take the
    shortcuts. Returns the new quantity."""
    if isinstance(store, redmodel.AsyncStore):
        @redmodel.transaction(store)
        async def buy_async(tx: redmodel.transactions.AsyncTransaction) -> Any:
            hat = await tx.get_or_raise(FA, "x")
            assert hat.n > 0
            return tx.incr(FA, "x", "n", -1), tx.incr(FA, "x", "r", 1)

        async def run() -> Any:
            try:
                left, _ = await buy_async()
                return left.value
            finally:
                await store.aclose()

        return asyncio.run(run())

    @redmodel.transaction(store)
    def buy(tx: redmodel.transactions.Transaction) -> Any:
        hat = tx.get_or_raise(FA, "x")
        assert hat.n > 0
        return tx.incr(FA, "x", "n", -1), tx.incr(FA, "x", "r", 1)

    left, _ = buy()
    return left.value


@pytest.mark.parametrize("once", [False, True], ids=["at-most-once", "exactly-once"])
@pytest.mark.parametrize("shell", ["sync", "async"])
@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply", "drop_request"])
@pytest.mark.parametrize("command", ["WATCH", "HGETALL", "MULTI", "HINCRBY", "EXEC"])
def test_a_fault_on_any_command_of_the_buy_applies_it_once_or_not_and_says_which(
        proxy: FaultProxy, redis_client: redis.Redis, command: str, fault: str,
        shell: str, once: bool) -> None:
    redis_client.hset(KEY, mapping={"id": "x", "n": 10, "r": 0})
    url = f"redis://{proxy.host}:{proxy.port}/0"
    kind = redmodel.AsyncStore if shell == "async" else redmodel.Store
    store = kind.from_url(url, socket_timeout=SOCKET_TIMEOUT, exactly_once=once,
                          resend=POLICY)
    if shell == "sync":
        store.client.ping()  # connect (HELLO) before the fault
    when = has(KEY) if command in ("WATCH", "HGETALL", "HINCRBY") else None
    # exactly-once wraps each write in a script call carrying its write id
    match: Any = (lambda name: name.startswith("EVAL")) if once and command == "HINCRBY" \
        else command
    getattr(proxy, fault)(match, when=when)
    try:
        left = _buy(store)
        outcome = "returned"
    except redmodel.OutcomeUnknownError:
        outcome = "unknown"
    except redis.ConnectionError:
        outcome = "not applied"
    finally:
        if shell == "sync":
            store.close()
    assert proxy.quiet(10)
    assert proxy.armed == 0  # the fault fired
    n, r = int(redis_client.hget(KEY, "n")), int(redis_client.hget(KEY, "r"))
    assert (n, r) in ((10, 0), (9, 1))  # all or nothing, never twice
    if outcome == "returned":
        assert (n, r, left) == (9, 1, 9)
    elif outcome == "not applied":
        assert (n, r) == (10, 0)
    else:  # at most once; a read's fault never gets here (nothing was written yet)
        assert command in ("MULTI", "HINCRBY", "EXEC") and not once
        if fault == "drop_request" and command in ("MULTI", "HINCRBY", "EXEC"):
            assert (n, r) == (10, 0)  # EXEC never reached the server
        else:
            assert (n, r) == (9, 1)
    if command in ("WATCH", "HGETALL"):  # nothing written yet: the attempt runs again
        assert outcome == "returned"
    if once:  # the lost EXEC reply is settled, never an unknown outcome
        assert outcome in ("returned", "not applied")
