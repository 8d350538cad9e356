"""Consuming a :class:`~redmodel.Queue` at least once: ``queue.consume()``.

A consumer moves each item atomically from the queue to the tail of its own in-flight
list (LMOVE inside the ``consume_take`` script, which checks that the consumer is
registered) and acknowledges it (LREM from that list) when the loop body is done with it.
While the queue is empty it waits with a blocking *peek* that moves nothing (``BLMOVE
queue queue LEFT LEFT``: the head is popped and pushed back to the head, and the command
blocks until there is one), then takes with the script. Nothing is ever only in the
client's memory: an item is in the queue or in exactly one in-flight list, and every
in-flight list that holds an item belongs to a registered consumer (recovery and leaving
empty a list in the script that unregisters its consumer), so a consumer that dies (or
whose reply is lost, or whose command arrives late) loses nothing. Its items come back:

- when it restarts under the same name, it takes back its own in-flight items first;
- when its heartbeat is older than its visibility timeout, any other consumer (at its
  next take) or :meth:`Queue.recover` returns them to the head of the queue, atomically
  in one script.

Keys, all in the queue's cluster hash slot (see :func:`slot_prefix`), for queue ``jobs``:
``jobs:{jobs}:%inflight:<name>`` (a list per consumer), ``jobs:{jobs}:%consumers`` (a
sorted set: name -> deadline, heartbeat plus visibility timeout, in server milliseconds),
``jobs:{jobs}:%redelivered`` (a hash: member -> redelivery marks) and
``jobs:{jobs}:%rejected`` (members that did not decode). The scripts are
``redmodel/lua/consume_*.lua``.

The loop itself is a sans-I/O state machine (:meth:`_ConsumerBase._reliable_steps`) that
yields batches for the store, blocking commands, pauses and values for the caller; the
sync :class:`Consumer` and the asyncio :class:`AsyncConsumer` only drive it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs
import redis

from redmodel._args import (
    MAX_BLOCK_SECONDS,
    MAX_VISIBILITY_SECONDS,
    flag,
    integer,
    many,
    seconds,
    unsendable,
)
from redmodel._container_registry import guarded
from redmodel._errors import DecodeError, ValidationError
from redmodel._models._keys import escape, new_id, slot_prefix
from redmodel._plan import Batch, Command, Plan, script
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store
from redmodel._transport._blocking import (
    block_arg,
    blocking_call,
    blocking_call_async,
    is_async_client,
)

__all__ = [
    "AsyncConsumer",
    "ConsumedQueue",
    "Consumer",
    "ConsumerKeys",
    "in_flight_plan",
    "recover_plan",
]

_T_co = TypeVar("_T_co", covariant=True)
_S_co = TypeVar("_S_co", covariant=True)


class ConsumedQueue(Protocol[_T_co, _S_co]):
    """What a consumer needs of the queue it consumes (a :class:`~redmodel.containers.Queue`
    is one): its key, its store, and how it decodes a member. The queue passes itself
    down, so this module never imports the queue's."""

    @property
    def key(self) -> str: ...

    @property
    def store(self) -> _S_co: ...

    def _decode(self, raw: Any, key: str | None = None, /) -> _T_co: ...

    def _encode(self, value: Any, /) -> bytes: ...

    def _decoded_or_set_aside(self, raw: Any, set_aside: bool = True,
                              put_back: Command | None = None, /) -> Plan[_T_co]: ...

T = TypeVar("T")
log = logging.getLogger("redmodel.consume")

_TAKE = script("consume_take")
_TAKEBACK = script("consume_takeback")
_LEAVE = script("consume_leave")
_RECOVER = script("consume_recover")
_HEARTBEAT = script("consume_heartbeat")
_REJECT = script("consume_reject")

DEFAULT_VISIBILITY_TIMEOUT = 30.0
_STALE_PER_CALL = 10  # consumers one recovery call returns the items of
_TAKEBACK_LIMIT = 100  # items one take-back returns (the rest come at the next one)
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 1.0  # backoff after a connection error
_OOM_POLL = 0.2  # seconds between takes while a full server refuses the BLMOVE wait

# ---- keys -------------------------------------------------------------------------------

@attrs.frozen
class ConsumerKeys:
    """The keys of reliable consumption for one queue, all in its hash slot."""

    queue: str
    base: str

    @classmethod
    def of(cls, queue_key: str) -> ConsumerKeys:
        return cls(queue_key, slot_prefix(queue_key))

    @property
    def consumers(self) -> str:
        """Sorted set: consumer name -> deadline (server ms)."""
        return f"{self.base}:%consumers"

    @property
    def redelivered(self) -> str:
        """Hash: member -> ``"waiting:returned"`` redelivery marks."""
        return f"{self.base}:%redelivered"

    @property
    def rejected(self) -> str:
        """List: members a consumer could not decode."""
        return f"{self.base}:%rejected"

    def in_flight(self, name: str) -> str:
        """List: the items consumer ``name`` took and has not acknowledged."""
        return f"{self.base}:%inflight:{escape(name)}"

    def for_consumer(self, name: str) -> tuple[str, str, str, str]:
        return (self.queue, self.consumers, self.redelivered, self.in_flight(name))


# ---- plans: one script call each --------------------------------------------------------


@attrs.frozen
class _Item:
    raw: bytes
    count: int  # delivery count: 1 the first time


@attrs.frozen
class _Taken:
    acked: bool
    item: _Item | None
    in_flight: int
    stale: list[str]
    registered: bool  # False: taken for dead (or left) meanwhile; nothing was done


def _names(reply: Any) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in reply or ()]


def _call(lua: Any, keys: Sequence[str], args: Sequence[Any], *, idempotent: bool | None = None
          ) -> Batch:
    return Batch([lua.call(keys, args)], write=True, keys=tuple(keys), idempotent=idempotent)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def take_plan(keys: ConsumerKeys, name: str, ttl: float, ack: bytes | None, take: bool
              ) -> Plan[_Taken]:
    """Acknowledge ``ack``, heartbeat and (with ``take``) move the queue's head into the
    consumer's in-flight list: one ``consume_take`` script call. All of it only while the
    consumer is registered; otherwise nothing happens and ``registered`` is False."""
    args = [name, _ms(ttl), "0" if ack is None else "1", ack or b"", "1" if take else "0"]
    replies = yield _call(_TAKE, keys.for_consumer(name), args)
    acked, member, count, in_flight, stale, registered = replies[0]
    item = None if member is None else _Item(member, int(count))
    return _Taken(bool(acked), item, int(in_flight), _names(stale), bool(registered))


def _takeback_plan(keys: ConsumerKeys, name: str, ttl: float
                   ) -> Plan[tuple[list[_Item], int, list[str]]]:
    replies = yield _call(_TAKEBACK, keys.for_consumer(name), [name, _ms(ttl), _TAKEBACK_LIMIT])
    pairs, in_flight, stale = replies[0]
    items = [_Item(pairs[i], int(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    return items, int(in_flight), _names(stale)


def leave_plan(keys: ConsumerKeys, name: str, ack: bytes | None) -> Plan[int]:
    """Acknowledge ``ack``, return what else the consumer holds to the queue's head, and
    unregister it; how many items went back."""
    args = [name, "0" if ack is None else "1", ack or b""]
    replies = yield _call(_LEAVE, keys.for_consumer(name), args)
    return int(replies[0])


def _heartbeat_plan(keys: ConsumerKeys, name: str, ttl: float) -> Plan[bool]:
    """Move a registered consumer's deadline; never registers one. Whether it was."""
    replies = yield _call(_HEARTBEAT, (keys.consumers,), [name, _ms(ttl)], idempotent=True)
    return bool(replies[0])


def _reject_plan(keys: ConsumerKeys, name: str, raw: bytes) -> Plan[bool]:
    replies = yield _call(_REJECT, (*keys.for_consumer(name), keys.rejected), [raw])
    return bool(replies[0])


def recover_plan(keys: ConsumerKeys, names: Iterable[str] = ()) -> Plan[int]:
    """Return the items of every consumer whose deadline has passed to the head of the
    queue and unregister them (``consume_recover``). ``names`` are the stale consumers the
    caller knows of; the script answers with the others it finds (without writing), and
    the plan sends again with their in-flight lists too. How many items went back."""
    declared = list(dict.fromkeys(names))
    returned = 0
    for _ in range(100):  # each round handles up to _STALE_PER_CALL consumers
        keys_ = [keys.queue, keys.consumers, keys.redelivered,
                 *(keys.in_flight(n) for n in declared)]
        replies = yield _call(_RECOVER, keys_, [_STALE_PER_CALL, *declared])
        kind, value = replies[0]
        if kind in (b"NEED", "NEED"):
            declared = _names(value)
            continue
        returned += int(value)
        if len(declared) < _STALE_PER_CALL:
            return returned
        declared = []
    return returned


def in_flight_plan(keys: ConsumerKeys) -> Plan[dict[str, tuple[float, list[bytes]]]]:
    """Every registered consumer: ``name -> (deadline in server ms, raw in-flight items)``
    (ZRANGE, then LRANGE of each list in one pipeline)."""
    replies = yield Batch([("ZRANGE", keys.consumers, 0, -1, "WITHSCORES")],
                          keys=(keys.consumers,))
    raw = replies[0] or []
    if raw and not isinstance(raw[0], (list, tuple)):  # RESP2: name, score, name, score
        raw = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
    deadlines = {_names([n])[0]: float(s) for n, s in raw}
    if not deadlines:
        return {}
    lists = [keys.in_flight(n) for n in deadlines]
    replies = yield Batch([("LRANGE", k, 0, -1) for k in lists], keys=tuple(lists))
    return {n: (d, list(r or [])) for (n, d), r in zip(deadlines.items(), replies, strict=True)}


# ---- the consumer loop ------------------------------------------------------------------


@attrs.frozen
class _Block:
    """A blocking command, sent once on a dedicated connection."""

    command: Command
    seconds: float
    keys: tuple[str, ...]


@attrs.frozen
class _Deliver:
    """A value for the caller; the machine resumes when the caller asks for the next."""

    value: Any


@attrs.frozen
class _Pause:
    seconds: float


@attrs.define
class _LoopState:
    backlog: deque[_Item] = attrs.Factory(deque)  # taken back, not yet handed out
    resync: bool = True  # take back what this name holds (at the start: an earlier run's)
    failing_since: float | None = None  # monotonic time of the first connection error
    pause: float = _FIRST_PAUSE


Step = Batch | _Block | _Deliver | _Pause
Steps = Generator[Step, Any, None]


def _default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"


_LONGEST_BEAT = 3600.0  # seconds between heartbeats at most, however long the timeout


def _beat_interval(visibility_timeout: float) -> float:
    """Seconds between heartbeats: a third of the visibility timeout, at most an hour."""
    return min(visibility_timeout / 3, _LONGEST_BEAT)


def _check_sentinel(queue: ConsumedQueue[Any, Any], sentinel: Any) -> None:
    """Refuse a sentinel that would never stop the loop: one the queue cannot hold, or one
    no value read from the queue is equal to, not even the sentinel itself pushed and
    read back (a NaN anywhere inside it, ``Decimal("NaN")``; a type compared by
    identity). :class:`ValidationError`, before anything is sent."""
    try:
        raw = queue._encode(sentinel)
    except ValidationError as e:
        raise ValidationError(f"sentinel must be a value the queue can hold, got "
                              f"{type(sentinel).__name__} ({e.args[0]})",
                              key=queue.key) from None
    try:
        same = bool(queue._decode(raw) == sentinel)
    except Exception:  # a comparison that raises never stops the loop either
        same = False
    if not same:
        raise ValidationError(
            f"sentinel must equal itself as read back from the queue, so that pushing it "
            f"stops the loop; this {type(sentinel).__name__} does not (a NaN inside it, "
            f"or a type compared by identity) and would never stop it", key=queue.key)


class _ConsumerBase(Generic[T]):
    """What the sync and asyncio consumers share: settings, state and the loop."""

    def __init__(
        self,
        queue: ConsumedQueue[T, Any],
        *,
        sentinel: Any = None,
        max_items: int | None = None,
        idle_timeout: float | None = None,
        poll: float = 1.0,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
        name: str | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        reliable: bool = True,
    ) -> None:
        key = queue.key
        if max_items is not None:
            integer(max_items, "max_items", key=key, least=0)
        seconds(poll, "poll", most=MAX_BLOCK_SECONDS, key=key)  # never None: it is a wait
        if idle_timeout is not None:
            block_arg(idle_timeout, "idle_timeout", key)
        if name is not None and (not isinstance(name, str) or not name or unsendable(name)):
            raise ValidationError(f"a consumer name must be a non-empty str of UTF-8-"
                                  f"encodable text, got {name!r}", key=queue.key)
        if sentinel is not None:
            _check_sentinel(queue, sentinel)
        signals = many(signals, "signals", "signal numbers", model=None)
        self.signals = tuple(signals)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in self.signals):
            raise ValidationError(f"signals must be signal numbers (signal.SIGTERM), got "
                                  f"{self.signals!r}", key=key)
        self.queue = queue
        self.sentinel = sentinel
        self.max_items = max_items
        self.idle_timeout = idle_timeout
        self.poll = poll
        self.reliable = flag(reliable, "reliable")
        self.name = _default_name() if name is None else name
        self.visibility_timeout = seconds(visibility_timeout, "visibility_timeout",
                                          most=MAX_VISIBILITY_SECONDS, key=key)
        self.keys = ConsumerKeys.of(queue.key)
        self.count = 0
        self.delivery_count = 0
        self.stopped_by: str | None = None
        self._stop: str | None = None
        self._current: _Item | None = None

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} of {self.queue!r}: {self.count} items, "
                f"stopped_by={self.stopped_by}>")

    @property
    def redelivered(self) -> bool:
        """Whether the current item was handed out before (``delivery_count > 1``).

        Redis: none."""
        return self.delivery_count > 1

    def stop(self, reason: str = "stop") -> None:
        """Stop after the current item (thread-safe: it only sets a flag).

        Redis: none (the loop leaves at its next step: EVALSHA consume_leave.lua then)."""
        self._stop = self._stop or reason

    def _on_signal(self, signum: int, _frame: types.FrameType | None) -> None:
        self.stop("signal")

    # ---- the state machine ------------------------------------------------------------

    def _begin(self) -> None:
        self.stopped_by = None
        self._current = None

    def _stop_reason(self, last: float) -> str | None:
        if self._stop is not None:
            return self._stop
        if self.max_items is not None and self.count >= self.max_items:
            return "max_items"
        if self.idle_timeout is not None and time.monotonic() - last >= self.idle_timeout:
            return "idle"
        return None

    def _block_seconds(self, last: float) -> float:
        wait = self.poll
        if self.idle_timeout is not None:
            wait = min(wait, self.idle_timeout - (time.monotonic() - last))
        return max(0.01, round(wait, 3))

    def _decoded(self, raw: bytes) -> Any:
        return self.queue._decode(raw)

    def _deliver(self, value: Any, count: int) -> _Deliver | None:
        """The step that hands ``value`` out, or None when it is the sentinel."""
        if self.sentinel is not None and value == self.sentinel:
            self.stopped_by = "sentinel"
            return None
        self.count += 1
        self.delivery_count = count
        return _Deliver(value)

    def _at_most_once_steps(self) -> Steps:
        key = self.queue.key
        last = time.monotonic()
        while True:
            reason = self._stop_reason(last)
            if reason is not None:
                self.stopped_by = reason
                return
            wait = self._block_seconds(last)
            reply = yield _Block(("BLPOP", key, wait), wait, (key,))
            if reply is None:
                continue
            last = time.monotonic()
            value = yield from self.queue._decoded_or_set_aside(
                reply[1], True, ("LPUSH", key, reply[1]))
            step = self._deliver(value, 1)
            if step is None:
                return
            yield step
            last = time.monotonic()  # the loop body's time is not idle time

    def _reliable_steps(self) -> Steps:
        state = _LoopState()
        last = time.monotonic()
        while True:
            try:
                reason = self._stop_reason(last)
                if reason is not None:
                    self.stopped_by = reason
                    return  # the driver acknowledges the current item as it leaves
                item = yield from self._next_item(state, last)
                if item is None:
                    continue
                state.failing_since, state.pause = None, _FIRST_PAUSE
                last = time.monotonic()
                self._current = item
                value = yield from self._decoded_or_rejected(item)
                step = self._deliver(value, item.count)
                if step is None:
                    return
                yield step
                last = time.monotonic()  # the loop body's time is not idle time
            except (redis.ConnectionError, redis.TimeoutError) as error:
                # Whatever the lost reply did, the server knows: take back what is ours.
                now = time.monotonic()
                if state.failing_since is None:
                    state.failing_since = now
                if now - state.failing_since >= self.visibility_timeout:
                    raise
                log.warning("consumer %r of %r: %s; taking back its in-flight items",
                            self.name, self.keys.queue, error)
                self._current = None
                state.backlog.clear()
                state.resync = True
                yield _Pause(state.pause)
                state.pause = min(state.pause * 2, _LONGEST_PAUSE)
                # idle means the server answered "empty" for idle_timeout seconds: time it
                # could not be reached does not count (an outage is not an empty queue)
                last = time.monotonic()

    def _next_item(self, state: _LoopState, last: float) -> Generator[Step, Any, _Item | None]:
        """Acknowledge the current item and get the next: taken back or taken from the
        queue; None after a wait for the queue to be non-empty (the caller asks again)."""
        keys, name, ttl = self.keys, self.name, self.visibility_timeout
        current = self._current
        if current is not None and (state.resync or state.backlog):
            yield from take_plan(keys, name, ttl, current.raw, take=False)
            self._current = None
        if state.resync:
            items, _, stale = yield from _takeback_plan(keys, name, ttl)
            state.backlog = deque(items)
            state.resync = False
            yield from self._recover(stale)
        if state.backlog:
            return state.backlog.popleft()
        ack = None if self._current is None else self._current.raw
        taken = yield from take_plan(keys, name, ttl, ack, take=True)
        self._current = None
        if not taken.registered:
            log.warning("consumer %r of %r was taken for dead and its items returned to the "
                        "queue; it registers again", name, keys.queue)
            state.resync = True
            return None
        # More in the list than this consumer knows of (a reply it never saw): take back.
        state.resync = taken.in_flight != int(taken.item is not None)
        yield from self._recover(taken.stale)
        if taken.item is not None:
            return taken.item
        # Wait for an item without taking it: BLMOVE of the queue onto itself pops the
        # head and pushes it back (the list is unchanged) once there is one. It moves
        # nothing anywhere else, so a wait whose command reaches the server late (after
        # this consumer was taken for dead, or left) can strand nothing; the take that
        # follows checks the registration in the script.
        wait = self._block_seconds(last)
        try:
            yield _Block(("BLMOVE", keys.queue, keys.queue, "LEFT", "LEFT", wait), wait,
                         (keys.queue,))
        except redis.exceptions.OutOfMemoryError:
            # A server at maxmemory with noeviction refuses BLMOVE (it may grow a list)
            # but runs the take script (allow-oom, it moves what is there): while the
            # server is full, poll the queue instead of waiting on it.
            yield _Pause(min(wait, _OOM_POLL))
        return None

    def _decoded_or_rejected(self, item: _Item) -> Generator[Step, Any, Any]:
        try:
            return self._decoded(item.raw)
        except DecodeError as e:
            yield from _reject_plan(self.keys, self.name, item.raw)
            self._current = None
            raise DecodeError(f"{e.reason}; the consumer moved it to {self.keys.rejected!r}",
                              model=e.model, key=e.key, field=e.field, codec=e.codec) from None

    def _recover(self, stale: list[str]) -> Generator[Step, Any, None]:
        """Return the items of consumers whose deadline passed; best effort (the next
        take of any consumer tries again)."""
        if not stale:
            return
        try:
            returned = yield from recover_plan(self.keys, stale)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            log.warning("consumer %r of %r: recovery failed: %s", self.name, self.keys.queue, e)
            return
        if returned:
            log.info("consumer %r of %r returned %d items of stale consumers %s to the queue",
                     self.name, self.keys.queue, returned, stale)

    def _steps(self) -> Steps:
        # the queue's key is checked in the container registry before the first step
        return guarded(self.queue, self._reliable_steps() if self.reliable
                       else self._at_most_once_steps())

    def _leave_plan(self, acknowledge: bool) -> Plan[int]:
        ack = self._current.raw if acknowledge and self._current is not None else None
        self._current = None
        return leave_plan(self.keys, self.name, ack)


def one_batch(batch: Batch) -> Plan[list[Any]]:
    """A plan of one batch: its replies."""
    replies = yield batch
    return replies


class Consumer(_ConsumerBase[T]):
    """A worker loop over a :class:`Queue`, at least once by default::

        for job in jobs.consume(name="worker-1"):   # LMOVE into an in-flight list
            handle(job)                             # acknowledged when the next is asked for

    Each item is moved atomically from the queue into this consumer's in-flight list and
    acknowledged (removed from it) when the loop body asks for the next one, or when the
    loop stops. If the process dies, its items come back: when a consumer with the same
    ``name`` starts, it takes them back first; otherwise, once its heartbeat (sent every
    ``visibility_timeout / 3`` seconds, at most hourly, from a thread while iterating) is older than
    ``visibility_timeout``, any other consumer or :meth:`Queue.recover` returns them to
    the head of the queue. So an item can be handed out more than once:
    ``delivery_count`` (``redelivered``) says when this value was handed out before.
    The heartbeat thread needs the GIL: a handler step that holds it (a long regular
    expression, a C call that does not release it) longer than ``visibility_timeout``
    gets this consumer taken for dead while it lives, and its item handed to another
    (flagged as a redelivery there). Size the timeout to the longest such step.

    Iteration stops when

    - SIGINT or SIGTERM arrives (handlers are installed while iterating, in the main thread
      only, and restored after): the current item is finished first, the loop ends at
      the next take (within ``poll`` seconds when it is waiting);
    - a value equal to ``sentinel`` is taken (acknowledged, not yielded; None: none);
    - ``max_items`` values were yielded;
    - no value came for ``idle_timeout`` seconds of waiting (counted while the consumer
      waits and the server answers: neither the loop body's time nor time the server
      cannot be reached counts, so a slow handler or an outage never ends the loop as
      "idle" while values wait in the queue);
    - :meth:`stop` is called (from the loop body or another thread).

    ``stopped_by`` then says which (``"signal"``, ``"sentinel"``, ``"max_items"``,
    ``"idle"``, ``"stop"``) and ``count`` how many values were yielded. When the loop is
    left by ``break`` or an exception, the current item is *not* acknowledged: it goes
    back to the head of the queue (call :meth:`ack` first if it was handled). Anything
    else this consumer held goes back too, and it unregisters.

    With ``reliable=False`` the loop is the at-most-once ``BLPOP`` loop: no in-flight list,
    no heartbeat, and an item whose reply is lost, or whose consumer dies, is lost (a lost
    reply ends the loop with :class:`~redmodel.OutcomeUnknownError` naming the queue).
    """

    queue: ConsumedQueue[T, Store]

    def ack(self) -> bool:
        """Acknowledge the current item now (it is otherwise acknowledged when the next is
        asked for). False if there is none, or if it was no longer this consumer's (it
        was taken for dead and the item returned to the queue).

        Redis: EVALSHA consume_take.lua (acknowledging, taking nothing)."""
        current = self._current
        if current is None:
            return False
        taken = self.queue.store.run(
            take_plan(self.keys, self.name, self.visibility_timeout, current.raw, take=False))
        self._current = None
        return taken.acked

    def _install(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in self.signals}

    def _execute(self, step: Batch | _Block) -> Any:
        if isinstance(step, Batch):
            return self.queue.store.run(one_batch(step))
        return blocking_call(self.queue.store.client, step.command, step.seconds, step.keys)

    def __iter__(self) -> Iterator[T]:
        self._begin()
        previous = self._install()
        beat = _HeartbeatThread(self) if self.reliable else None
        machine = self._steps()
        finished = False
        try:
            if beat is not None:
                beat.start()
            step = next(machine)
            while True:
                if isinstance(step, (Batch, _Block)):
                    try:
                        reply = self._execute(step)
                    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError
                            ) as e:  # the machine handles what it can, raises the rest
                        step = machine.throw(e)
                        continue
                    step = machine.send(reply)
                elif isinstance(step, _Pause):
                    time.sleep(step.seconds)
                    step = machine.send(None)
                else:
                    yield step.value
                    step = machine.send(None)
        except StopIteration:
            finished = True
        finally:
            machine.close()
            if beat is not None:
                beat.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.reliable:
                self._leave(finished)

    def _leave(self, finished: bool) -> None:
        plan = self._leave_plan(acknowledge=finished)
        if finished:
            self.queue.store.run(plan)
            return
        try:
            self.queue.store.run(plan)
        except Exception as e:  # leaving on an error: the items come back after the timeout
            log.warning("consumer %r of %r could not return its items (%s); they come back "
                        "after its visibility timeout", self.name, self.keys.queue, e)


class _HeartbeatThread:
    """Heartbeats of one sync consumer, every ``visibility_timeout / 3`` seconds (at most
    hourly)."""

    def __init__(self, consumer: Consumer[Any]) -> None:
        self.consumer = consumer
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"redmodel heartbeat {consumer.name}")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=1.0)  # a beat stuck on a dead server may land later

    def _run(self) -> None:
        c = self.consumer
        interval = _beat_interval(c.visibility_timeout)
        while not self.stopping.wait(interval):
            try:
                c.queue.store.run(_heartbeat_plan(c.keys, c.name, c.visibility_timeout))
            except Exception as e:  # the next beat tries again; a dead server is no news
                log.warning("consumer %r of %r: heartbeat failed: %s", c.name, c.keys.queue, e)


def _cancelling() -> int:
    """The current task's count of cancellation requests (``Task.cancelling()``, Python
    3.11+; always 0 before, where a cancel that redis-py drops cannot be seen)."""
    task = asyncio.current_task()
    counter = getattr(task, "cancelling", None)
    return 0 if counter is None else int(counter())


def _stop_on_signal(ref: weakref.ref[Any]) -> None:
    consumer = ref()
    if consumer is not None:
        consumer.stop("signal")


async def _heartbeats(ref: weakref.ref[AsyncConsumer[Any]], store: Any, keys: ConsumerKeys,
                      name: str, ttl: float) -> None:
    """Heartbeats of one AsyncConsumer, every ``ttl / 3`` seconds (at most hourly). The task
    holds the consumer only by a weak reference (nothing the event loop holds keeps an abandoned
    consumer, or its loop, alive) and ends when the consumer is gone, or when it is
    cancelled, also when redis-py drops that cancel."""
    interval = _beat_interval(ttl)
    while True:
        await asyncio.sleep(interval)
        if ref() is None:
            return
        try:
            await store.run(_heartbeat_plan(keys, name, ttl))
        except Exception as e:  # the next beat tries again
            log.warning("consumer %r of %r: heartbeat failed: %s", name, keys.queue, e)
        if _cancelling():
            return


class AsyncConsumer(_ConsumerBase[T]):
    """:class:`Consumer` for an :class:`~redmodel.AsyncStore`: ``async for`` over it, the
    same commands awaited, its heartbeat an asyncio task::

        async with jobs.consume(name="worker-1") as consumer:
            async for job in consumer:
                await handle(job)

    ``async with`` (or ``await consumer.aclose()``) leaves at once when the loop is left
    by ``break`` or an exception. Without it, the loop (an async generator) is closed once
    nothing references it: on CPython right after ``async for`` drops it (unless you keep
    the iterator in a variable), elsewhere at a garbage collection; the event loop then
    runs its cleanup in a task, which returns the current item and unregisters; at the
    latest when the event loop shuts down. The consumer holds its loop, and its heartbeat
    task and signal handlers hold the consumer, only by weak references.

    Cancelling the task that iterates stops the consumer (its item goes back), also
    when redis-py drops the cancel during a command (Python 3.11's ``asyncio.wait_for``
    can): after each command the consumer checks ``Task.cancelling()`` and raises
    ``CancelledError`` itself. Signal handlers go through the running loop (main thread
    only)."""

    queue: ConsumedQueue[T, AsyncStore]

    def __init__(self, queue: ConsumedQueue[T, AsyncStore], **kwargs: Any) -> None:
        super().__init__(queue, **kwargs)
        self._running: weakref.ref[AsyncIterator[T]] | None = None
        self._closed: asyncio.Future[None] | None = None  # done when the loop has left

    async def ack(self) -> bool:
        """See :meth:`Consumer.ack`.

        Redis: as Consumer.ack"""
        current = self._current
        if current is None:
            return False
        store: Any = self.queue.store
        taken = await store.run(
            take_plan(self.keys, self.name, self.visibility_timeout, current.raw, take=False))
        self._current = None
        return bool(taken.acked)

    def __aiter__(self) -> AsyncIterator[T]:
        running = self._iterate()
        self._running = weakref.ref(running)
        return running

    async def __aenter__(self) -> AsyncConsumer[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Leave now: return what this consumer holds and unregister. When the loop was
        already dropped (``break``), wait for the cleanup the event loop started.

        Redis: EVALSHA consume_leave.lua (nothing if it already left)."""
        ref, self._running = self._running, None
        running: Any = None if ref is None else ref()
        if running is not None:
            await running.aclose()
        closed = self._closed
        if (closed is not None and not closed.done()
                and closed.get_loop() is asyncio.get_running_loop()):
            await asyncio.shield(closed)

    def _install(self) -> list[tuple[int, Any]]:
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in self.signals:
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, _stop_on_signal, weakref.ref(self))
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append((sig, previous))
        return installed

    async def _execute(self, step: Batch | _Block) -> Any:
        store: Any = self.queue.store
        if isinstance(step, Batch):
            return await store.run(one_batch(step))
        return await blocking_call_async(self.queue.store.client, step.command, step.seconds,
                                         step.keys)

    async def _iterate(self) -> AsyncIterator[T]:
        closed = self._closed = asyncio.get_running_loop().create_future()
        self._begin()
        installed = self._install()
        beat = None
        if self.reliable:
            beat = asyncio.create_task(_heartbeats(
                weakref.ref(self), self.queue.store, self.keys, self.name,
                self.visibility_timeout))
        machine = self._steps()
        finished = False
        cancels = _cancelling()  # cancels already pending are not ours to act on

        def check_cancelled() -> None:
            # redis-py can swallow a cancel during a command; the task still counts it
            if _cancelling() > cancels:
                raise asyncio.CancelledError

        try:
            step = next(machine)
            while True:
                if isinstance(step, (Batch, _Block)):
                    try:
                        reply = await self._execute(step)
                    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError
                            ) as e:  # the machine handles what it can, raises the rest
                        check_cancelled()
                        step = machine.throw(e)
                        continue
                    check_cancelled()
                    step = machine.send(reply)
                elif isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                    check_cancelled()
                    step = machine.send(None)
                else:
                    yield step.value
                    cancels = _cancelling()  # the loop body's own cancels are its business
                    step = machine.send(None)
        except StopIteration:
            finished = True
        finally:
            try:
                machine.close()
                if beat is not None:
                    beat.cancel()  # a beat still on the wire changes nothing once we left
                loop = asyncio.get_running_loop()
                for sig, previous in installed:
                    loop.remove_signal_handler(sig)
                    if previous is not None:
                        signal.signal(sig, previous)
                if self.reliable:
                    await self._leave(finished)
            finally:
                if not closed.done():
                    closed.set_result(None)

    async def _leave(self, finished: bool) -> None:
        plan = self._leave_plan(acknowledge=finished)
        store: Any = self.queue.store
        if finished:
            await store.run(plan)
            return
        try:
            await store.run(plan)
        except Exception as e:  # leaving on an error: the items come back after the timeout
            log.warning("consumer %r of %r could not return its items (%s); they come back "
                        "after its visibility timeout", self.name, self.keys.queue, e)


def make_consumer(queue: ConsumedQueue[T, Any], **kwargs: Any) -> Consumer[T]:
    """A :class:`Consumer`, or an :class:`AsyncConsumer` for a queue on an AsyncStore."""
    if is_async_client(queue.store.client):
        return AsyncConsumer(queue, **kwargs)  # type: ignore[return-value]
    return Consumer(queue, **kwargs)

