"""A Redis list as a typed queue (:class:`Queue`), and :func:`pop_blocking` over several.

Blocking pops use a dedicated client whose socket timeout outlasts the block, never the
store's own (redis-py 8 defaults to a 5 s socket timeout and retries a timed-out read).
Consuming at least once is :meth:`Queue.consume` (:mod:`redmodel.containers._consumer`).
"""

from __future__ import annotations

import inspect
import signal
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol, TypeVar, overload

from redis.crc import key_slot

from redmodel._args import flag
from redmodel._container_registry import guard_plans, guarded
from redmodel._errors import (
    CrossSlotError,
    TransactionError,
    ValidationError,
)
from redmodel._plan import Batch, Command, Plan, run_async, run_sync
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store
from redmodel._transport._blocking import (
    block_arg,
    blocking_call,
    blocking_call_async,
    is_async_client,
)
from redmodel.containers._base import (
    Container,
    ContainerInAsyncTx,
    ContainerInTx,
    InTransaction,
    S,
    _as_list,
    _indices,
)
from redmodel.containers._consumer import (
    DEFAULT_VISIBILITY_TIMEOUT,
    AsyncConsumer,
    Consumer,
    ConsumerKeys,
    in_flight_plan,
    make_consumer,
    one_batch,
    recover_plan,
)
from redmodel.transactions._handles import AsyncTransaction, Transaction, current_transaction
from redmodel.transactions._policy import Pending

__all__ = [
    "Queue",
    "QueueInAsyncTx",
    "QueueInTx",
    "pop_blocking",
]


T = TypeVar("T")


# ---- blocking pops ----------------------------------------------------------------------


def _then(result: Any, finish: Callable[[Any], Any]) -> Any:
    """``finish(result)``, or an awaitable of it when ``result`` is one (an AsyncStore)."""
    if inspect.isawaitable(result):

        async def later() -> Any:
            return finish(await result)

        return later()
    return finish(result)


def _pop_blocking_plan(queues: Sequence[Queue[T, Any]], timeout: float | None, right: bool
                       ) -> Plan[tuple[Queue[T, Any], T] | None]:
    if current_transaction() is not None:
        raise TransactionError(
            "a blocking pop cannot run inside a transaction (inside MULTI it would not "
            "wait); pop before or after it")
    block = block_arg(timeout)
    flag(right, "right")
    by_key = {q.key: q for q in queues}
    cmd: Command = ("BRPOP" if right else "BLPOP", *by_key, block)
    replies = yield Batch([cmd], write=True, keys=tuple(by_key))
    reply = replies[0]
    if reply is None:
        return None
    raw_key, raw = reply
    key = raw_key.decode("utf-8") if isinstance(raw_key, bytes) else str(raw_key)
    queue = by_key[key]
    back: Command = ("RPUSH" if right else "LPUSH", key, raw)  # to the end it came from
    value = yield from queue._decoded_or_set_aside(raw, True, back)
    return queue, value


def _blocks(batch: Batch) -> bool:
    """Whether ``batch`` is a blocking pop (else it is a set-aside, sent by the store)."""
    return str(batch.commands[0][0]).upper() in ("BLPOP", "BRPOP")


@overload
def pop_blocking(*queues: Queue[T, Store], timeout: float | None, right: bool = False
                 ) -> tuple[Queue[T, Store], T] | None: ...
@overload
def pop_blocking(*queues: Queue[T, AsyncStore], timeout: float | None, right: bool = False
                 ) -> Coroutine[object, object, tuple[Queue[T, AsyncStore], T] | None]: ...
def pop_blocking(*queues: Queue[T, Any], timeout: float | None, right: bool = False) -> Any:
    """BLPOP (BRPOP with ``right=True``) across ``queues``, checked in the order given:
    ``(queue, value)`` from the first non-empty one, or None after ``timeout`` seconds
    (fractions allowed; None waits forever).

    Queues must share a store and a member encoding (and, in a cluster, a hash slot). Runs
    on a dedicated connection that never resends it (see
    :mod:`redmodel._transport._blocking`); raises
    :class:`TransactionError` inside a transaction.

    At most once: the value is removed when the server sends it, so a value whose reply is
    lost (a dropped connection) is lost too, and :class:`OutcomeUnknownError` names the
    queues (a connection that failed before sending raises the plain redis-py error). A
    wait that a failover or a slot migration interrupts goes on at the new owner.
    :meth:`Queue.consume` is at least once. A
    value that does not decode is set aside (see :meth:`Queue.pop`) before
    :class:`DecodeError` is raised.

    Redis: BLPOP (BRPOP with right=True) naming every queue, on a connection of its own;
    then RPUSH to the queue's %rejected of a value that does not decode.
    """
    if not queues:
        raise ValidationError("pop_blocking needs at least one queue")
    block_arg(timeout, "pop_blocking's timeout", queues[0].key)
    first = queues[0]
    for q in queues[1:]:
        first._same_kind(q, "pop_blocking")
        if q.store.client is not first.store.client:
            raise ValidationError("pop_blocking's queues must share one store", key=q.key)
    client = first.store.client
    if first.store.cluster and len({key_slot(q.key.encode()) for q in queues}) > 1:
        raise CrossSlotError(
            f"pop_blocking's queues are in different cluster hash slots: "
            f"{[q.key for q in queues][:5]}; one BLPOP can wait on one slot only")
    plan = _pop_blocking_plan(queues, timeout, right)
    for q in reversed(queues):
        plan = guarded(q, plan)
    store: Any = first.store
    if is_async_client(client):  # an AsyncStore: the caller awaits this

        async def execute_async(batch: Batch) -> list[Any]:
            if not _blocks(batch):
                return await store.run(one_batch(batch))  # type: ignore[no-any-return]
            return [await blocking_call_async(client, c, timeout, batch.keys)
                    for c in batch.commands]

        return run_async(plan, execute_async)

    def execute(batch: Batch) -> list[Any]:
        if not _blocks(batch):
            return store.run(one_batch(batch))  # type: ignore[no-any-return]
        return [blocking_call(client, c, timeout, batch.keys) for c in batch.commands]

    return run_sync(plan, execute)


# ---- Queue ------------------------------------------------------------------------------


def trim_is_idempotent(start: int, stop: int) -> bool:
    """Whether ``LTRIM key start stop`` applied twice leaves what it left once. LTRIM keeps
    the values from index ``a = max(0, len + start if start < 0 else start)`` to ``b =
    min(len - 1, len + stop if stop < 0 else stop)``. With ``start <= 0`` and ``stop >=
    -1`` the kept list ``L'`` has ``a' = 0`` on the second run (``len' <= -start`` when
    ``start < 0``) and ``b' = len' - 1`` (``len' - 1 <= stop`` when ``stop >= 0``): all of
    ``L'`` stays. A positive start drops ``start`` more values from the head each time,
    a stop below -1 drops ``-stop - 1`` more from the tail."""
    return start <= 0 and stop >= -1


@guard_plans
class Queue(Container[T, S]):
    """A Redis list of typed values, used as a FIFO queue: :meth:`push` appends at the tail
    (RPUSH), :meth:`pop` takes from the head (LPOP), :meth:`pop_blocking` waits (BLPOP).

    >>> ips = Queue(store, "ips", IPv4Address)        # doctest: +SKIP
    >>> ips.push(IPv4Address("104.174.118.18"))       # doctest: +SKIP
    1
    """

    _WRITES = Container._WRITES | {"push", "push_left", "pop", "pop_right", "trim", "recover"}
    _none_means_empty = True
    _BLOCKING = frozenset({"pop_blocking", "consume"})

    @overload
    def in_tx(self: Queue[T, Store], tx: Transaction) -> QueueInTx[T]: ...
    @overload
    def in_tx(self: Queue[T, AsyncStore], tx: AsyncTransaction) -> QueueInAsyncTx[T]: ...
    def in_tx(self, tx: Transaction | AsyncTransaction) -> Any:
        """As :meth:`Container.in_tx`, typed with this container's operations.

        Redis: none (see :meth:`Container.in_tx`)."""
        return InTransaction(self, tx)

    def push_plan(self, *values: T) -> Plan[int]:
        return self._write_members("RPUSH", values)

    @overload
    def push(self: Queue[T, Store], *values: T) -> int: ...
    @overload
    def push(self: Queue[T, AsyncStore], *values: T) -> Coroutine[object, object, int]: ...
    def push(self, *values: T) -> Any:
        """RPUSH: append at the tail; returns the new length. O(1) per value.

        Redis: RPUSH."""
        return self._run(self.push_plan(*values))

    def push_left_plan(self, *values: T) -> Plan[int]:
        return self._write_members("LPUSH", values)

    @overload
    def push_left(self: Queue[T, Store], *values: T) -> int: ...
    @overload
    def push_left(self: Queue[T, AsyncStore], *values: T) -> Coroutine[object, object, int]: ...
    def push_left(self, *values: T) -> Any:
        """LPUSH: insert at the head (each value in turn, so the last one ends up first);
        returns the new length.

        Redis: LPUSH."""
        return self._run(self.push_left_plan(*values))

    def pop_plan(self) -> Plan[T | None]:
        return self._pop("LPOP")

    @overload
    def pop(self: Queue[T, Store]) -> T | None: ...
    @overload
    def pop(self: Queue[T, AsyncStore]) -> Coroutine[object, object, T | None]: ...
    def pop(self) -> Any:
        """LPOP: the head value, or None when the queue is empty. At most once. A value
        that does not decode is moved to the queue's ``%rejected`` list (one more round
        trip), then :class:`DecodeError` is raised.

        Redis: LPOP; then RPUSH to %rejected of a value that does not decode."""
        return self._run(self.pop_plan())

    def pop_right_plan(self) -> Plan[T | None]:
        return self._pop("RPOP")

    @overload
    def pop_right(self: Queue[T, Store]) -> T | None: ...
    @overload
    def pop_right(self: Queue[T, AsyncStore]) -> Coroutine[object, object, T | None]: ...
    def pop_right(self) -> Any:
        """RPOP: the tail value (the newest one pushed), or None when empty.

        Redis: RPOP; then RPUSH to %rejected of a value that does not decode."""
        return self._run(self.pop_right_plan())

    def _pop(self, command: str) -> Plan[T | None]:
        # In a transaction the reply comes with EXEC, and a transaction sends no write
        # after it: nothing can set an undecodable value aside there.
        in_transaction = current_transaction() is not None
        replies = yield Batch([(command, self.key)], write=True, keys=(self.key,))
        if replies[0] is None:
            return None
        back = "LPUSH" if command == "LPOP" else "RPUSH"  # to the end it came from
        return (yield from self._decoded_or_set_aside(
            replies[0], not in_transaction, (back, self.key, replies[0])))

    def _set_aside_command(self, rejected: str, raws: Sequence[Any]) -> Command:
        return ("RPUSH", rejected, *raws)

    @overload
    def pop_blocking(self: Queue[T, Store], timeout: float | None, *, right: bool = False
                     ) -> T | None: ...
    @overload
    def pop_blocking(self: Queue[T, AsyncStore], timeout: float | None, *, right: bool = False
                     ) -> Coroutine[object, object, T | None]: ...
    def pop_blocking(self: Queue[T, Any], timeout: float | None, *, right: bool = False
                     ) -> Any:
        """BLPOP (BRPOP with ``right=True``): the head value, waiting up to ``timeout``
        seconds (fractions allowed, None forever) for one; None on timeout.
        Not in a transaction; see :func:`pop_blocking` for several queues.

        Redis: BLPOP (BRPOP with right=True), on a connection of its own; then RPUSH to
        %rejected of a value that does not decode."""
        found = pop_blocking(self, timeout=timeout, right=right)
        return _then(found, lambda f: None if f is None else f[1])

    def range_plan(self, start: int = 0, stop: int = -1) -> Plan[list[T]]:
        start, stop = _indices(start, stop, self.key)
        replies = yield Batch([("LRANGE", self.key, start, stop)], keys=(self.key,))
        return [self._decode(r) for r in _as_list(replies[0])]

    @overload
    def range(self: Queue[T, Store], start: int = 0, stop: int = -1) -> list[T]: ...
    @overload
    def range(self: Queue[T, AsyncStore], start: int = 0, stop: int = -1
              ) -> Coroutine[object, object, list[T]]: ...
    def range(self, start: int = 0, stop: int = -1) -> Any:
        """LRANGE: values from index ``start`` to ``stop`` inclusive, as Redis counts
        (negative from the tail; the default is every value), head first. O(S+N).

        Redis: LRANGE."""
        return self._run(self.range_plan(start, stop))

    def length_plan(self) -> Plan[int]:
        replies = yield Batch([("LLEN", self.key)], keys=(self.key,))
        return int(replies[0])

    @overload
    def length(self: Queue[T, Store]) -> int: ...
    @overload
    def length(self: Queue[T, AsyncStore]) -> Coroutine[object, object, int]: ...
    def length(self) -> Any:
        """LLEN: how many values are queued.

        Redis: LLEN."""
        return self._run(self.length_plan())

    def trim_plan(self, start: int, stop: int) -> Plan[None]:
        start, stop = _indices(start, stop, self.key, "trim's ")
        # LTRIM keeps a window of the list as it is when it runs. A window that starts at
        # the head (start 0) or counts from the tail (start < 0) and ends at or past the
        # tail's count (stop >= -1) keeps all of itself when applied again: resendable.
        # Any other (a positive start, a stop below -1) drops more on each application,
        # so it is never resent (exactly-once mode gives it a write id).
        yield Batch([("LTRIM", self.key, start, stop)], write=True,
                    idempotent=trim_is_idempotent(start, stop), keys=(self.key,))
        return None

    @overload
    def trim(self: Queue[T, Store], start: int, stop: int) -> None: ...
    @overload
    def trim(self: Queue[T, AsyncStore], start: int, stop: int
             ) -> Coroutine[object, object, None]: ...
    def trim(self, start: int, stop: int) -> Any:
        """LTRIM: keep only the values from ``start`` to ``stop`` inclusive (``trim(0, 99)``
        keeps the 100 at the head, ``trim(-100, -1)`` the 100 at the tail).

        Those caps (``start <= 0`` and ``stop >= -1``) change nothing when applied twice,
        so a lost reply is resent. A trim that drops from an end by a count (``trim(1,
        -1)`` drops the head, ``trim(0, -2)`` the tail) drops more each time it runs: a
        lost reply raises :class:`OutcomeUnknownError` (in exactly-once mode the store
        resends it under its write id and it returns, applied once).

        Redis: LTRIM."""
        return self._run(self.trim_plan(start, stop))

    @overload
    def consume(
        self: Queue[T, Store],
        *,
        sentinel: Any = None,
        max_items: int | None = None,
        idle_timeout: float | None = None,
        poll: float = 1.0,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
        name: str | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        reliable: bool = True,
    ) -> Consumer[T]: ...
    @overload
    def consume(
        self: Queue[T, AsyncStore],
        *,
        sentinel: Any = None,
        max_items: int | None = None,
        idle_timeout: float | None = None,
        poll: float = 1.0,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
        name: str | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        reliable: bool = True,
    ) -> AsyncConsumer[T]: ...
    def consume(
        self: Queue[T, Any],
        *,
        sentinel: Any = None,
        max_items: int | None = None,
        idle_timeout: float | None = None,
        poll: float = 1.0,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
        name: str | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        reliable: bool = True,
    ) -> Any:
        """A :class:`Consumer` (an :class:`AsyncConsumer` on an AsyncStore): iterate it to
        get values one by one, at least once. Each is moved into this consumer's in-flight
        list (LMOVE in a script; while the queue is empty it waits with a BLMOVE of the
        queue onto itself, which moves nothing) and acknowledged when the next is asked
        for; a consumer that dies has its items returned to the queue by another
        after ``visibility_timeout`` seconds without a heartbeat, or takes them back when
        it restarts under the same ``name``. ``reliable=False``: the at-most-once BLPOP
        loop. Stops on a signal, the ``sentinel`` value, ``max_items`` values or
        ``idle_timeout`` seconds without a value; see :class:`Consumer`.

        Redis: none until iterated; then per item BLMOVE into its in-flight list (BLPOP with
        reliable=False) and EVALSHA consume_take.lua, consume_takeback.lua,
        consume_heartbeat.lua, consume_reject.lua, consume_leave.lua, ZRANGE and LRANGE."""
        if current_transaction() is not None:
            raise TransactionError("a consumer cannot run inside a transaction (it blocks, "
                                   "and inside MULTI a blocking pop does not wait)")
        return make_consumer(self, sentinel=sentinel, max_items=max_items,
                             idle_timeout=idle_timeout, poll=poll, signals=signals, name=name,
                             visibility_timeout=visibility_timeout, reliable=reliable)

    def recover_plan(self) -> Plan[int]:
        return recover_plan(ConsumerKeys.of(self.key))

    @overload
    def recover(self: Queue[T, Store]) -> int: ...
    @overload
    def recover(self: Queue[T, AsyncStore]) -> Coroutine[object, object, int]: ...
    def recover(self) -> Any:
        """Return the in-flight items of every consumer whose heartbeat is older than its
        visibility timeout to the head of the queue, and unregister those consumers: one
        ``consume_recover`` script (two when it finds stale consumers). How many items
        came back. Consumers do this themselves at each take; call it when none runs.

        Redis: EVALSHA consume_recover.lua."""
        return self._run(self.recover_plan())

    def in_flight_plan(self) -> Plan[dict[str, list[T]]]:
        found = yield from in_flight_plan(ConsumerKeys.of(self.key))
        return {name: [self._decode(r) for r in raw] for name, (_, raw) in found.items()}

    @overload
    def in_flight(self: Queue[T, Store]) -> dict[str, list[T]]: ...
    @overload
    def in_flight(self: Queue[T, AsyncStore]) -> Coroutine[object, object, dict[str, list[T]]]: ...
    def in_flight(self) -> Any:
        """Every registered consumer's unacknowledged items, by consumer name (ZRANGE of
        the consumers, then LRANGE of each in-flight list).

        Redis: ZRANGE of the consumers, then LRANGE of each one's in-flight list."""
        return self._run(self.in_flight_plan())


class QueueInTx(ContainerInTx, Protocol[T]):
    """``queue.in_tx(tx)`` for a Transaction ``tx``."""

    def push(self, *values: T) -> Pending[int]: ...
    def push_left(self, *values: T) -> Pending[int]: ...
    def pop(self) -> Pending[T | None]: ...
    def pop_right(self) -> Pending[T | None]: ...
    def trim(self, start: int, stop: int) -> Pending[None]: ...
    def recover(self) -> Pending[int]: ...
    def range(self, start: int = 0, stop: int = -1) -> list[T]: ...
    def length(self) -> int: ...
    def in_flight(self) -> dict[str, list[T]]: ...


class QueueInAsyncTx(ContainerInAsyncTx, Protocol[T]):
    """``queue.in_tx(tx)`` for an AsyncTransaction ``tx``."""

    def push(self, *values: T) -> Pending[int]: ...
    def push_left(self, *values: T) -> Pending[int]: ...
    def pop(self) -> Pending[T | None]: ...
    def pop_right(self) -> Pending[T | None]: ...
    def trim(self, start: int, stop: int) -> Pending[None]: ...
    def recover(self) -> Pending[int]: ...
    def range(self, start: int = 0, stop: int = -1) -> Coroutine[object, object, list[T]]: ...
    def length(self) -> Coroutine[object, object, int]: ...
    def in_flight(self) -> Coroutine[object, object, dict[str, list[T]]]: ...
