"""Optimistic transactions: WATCH what the function reads, queue what it writes, EXEC, retry.

The decisions live in plain classes with no I/O, so an asyncio shell can reuse them:
:class:`TxCore` (what to watch, what to queue, what to refuse, which EXEC reply belongs to
which write), :class:`RetryPolicy` (when to retry and how long to wait) and :class:`TxStats`.
The sync shell is :class:`Transaction` (one attempt over a redis-py pipeline),
:func:`transact` (the retry loop) and :func:`transaction` (the decorator).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import inspect
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import attrs
from redis.exceptions import ResponseError

from redmodel import _ops
from redmodel._args import integer, not_negative
from redmodel._atomic import incr_fields as incr_fields_plan
from redmodel._connect import redis_reply
from redmodel._container_registry import first_use
from redmodel._errors import (
    ConflictError,
    DecodeError,
    OutcomeUnknownError,
    ReadAfterWriteError,
    TransactionError,
    ValidationError,
)
from redmodel._indexed import Abandoned, TxHints
from redmodel._ops import DEFAULT
from redmodel._plan import Batch, Command, Plan
from redmodel._schema import spec_of
from redmodel._types import BadValueError
from redmodel._wire import ResendPolicy, RestartAttemptError, server_error

if TYPE_CHECKING:
    from types import TracebackType

    from redmodel._aio import AsyncStore
    from redmodel._store import Store

__all__ = [
    "AsyncTransaction",
    "AsyncTransactionFunction",
    "Outcome",
    "Pending",
    "ReadAfterWriteError",
    "RetryPolicy",
    "Transaction",
    "TransactionError",
    "TransactionFunction",
    "TxCore",
    "TxStats",
    "current_transaction",
    "get_field",
    "transact",
    "transaction",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

log = logging.getLogger("redmodel.tx")


# ---- retry policy (pure) ------------------------------------------------------------------


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        not_negative(value, f"RetryPolicy.{attribute.name}")


def _at_least_one(_inst: object, _attribute: attrs.Attribute[Any], value: int) -> None:
    integer(value, "RetryPolicy.attempts", least=1)


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a transaction retries after a WATCH conflict.

    - ``attempts``: how many times the function may run in total (1 = never retry).
    - ``backoff_base`` / ``backoff_max`` (seconds): before attempt ``k + 1`` the caller
      sleeps a random time in ``[0, min(backoff_max, backoff_base * 2 ** (k - 1))]``
      ("full jitter"), so clients that collided do not collide again in step.
    - ``deadline`` (seconds, or None): no attempt starts after this much time since the
      first one.
    - ``log_level``: level of the ``redmodel.tx`` log line written per conflict.

    Only WATCH conflicts are retried, never connection errors or the function's own
    exceptions.
    """

    attempts: int = attrs.field(default=10, validator=_at_least_one)
    backoff_base: float = attrs.field(default=0.002, validator=_positive)
    backoff_max: float = attrs.field(default=0.2, validator=_positive)
    deadline: float | None = attrs.field(default=None, validator=_positive)
    log_level: int = logging.WARNING

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to sleep after conflicted attempt number ``attempt`` (1-based)."""
        cap = min(self.backoff_max, self.backoff_base * 2.0 ** min(attempt - 1, 60))
        return cap * rand()

    def next_delay(
        self, attempt: int, elapsed: float, rand: Callable[[], float] = random.random
    ) -> float | None:
        """After attempt ``attempt`` conflicted, ``elapsed`` seconds after the first one
        started: the sleep before the next attempt, or None to give up."""
        if attempt >= self.attempts:
            return None
        delay = self.backoff(attempt, rand)
        if self.deadline is not None and elapsed + delay >= self.deadline:
            return None
        return delay


DEFAULT_POLICY = RetryPolicy()


# ---- counters and outcomes ----------------------------------------------------------------

_COUNTERS = ("calls", "joined", "attempts", "commits", "conflicts", "exhausted", "errors",
             "restarts")


class TxStats:
    """Counters of one transaction function, safe to update and read from many threads.

    ``calls``: calls that ran their own transaction; ``joined``: calls that joined an
    outer one; ``attempts``: runs of the function; ``commits``: successful EXECs;
    ``conflicts``: attempts that hit a WATCH conflict (each one retried or gave up);
    ``exhausted``: calls that raised :class:`ConflictError`; ``errors``: calls that ended
    with any other exception; ``restarts``: attempts run again because nothing of them was
    applied and they could not go on (their connection broke before EXEC, their slot moved,
    the server forgot its scripts, or in exactly-once mode their EXEC was fenced).
    Counters are per process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def snapshot(self) -> dict[str, int]:
        """Every counter, read together under the lock."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(_COUNTERS, 0)

    def __getattr__(self, name: str) -> int:
        if name in _COUNTERS:
            with self._lock:
                return self._counts[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.snapshot().items())
        return f"TxStats({inner})"


@attrs.frozen
class Outcome(Generic[R]):
    """What one transactional call returned, and what it took.

    ``attempts`` is how many times the function ran (``conflicts == attempts - 1``);
    both are 0 when the call joined an outer transaction (``joined=True``): the outer
    one's attempts count then.
    """

    value: R
    attempts: int
    keys: tuple[str, ...] = ()
    joined: bool = False

    @property
    def conflicts(self) -> int:
        return max(0, self.attempts - 1)


# ---- pending results ----------------------------------------------------------------------

_WAITING, _DONE, _FAILED, _DROPPED = range(4)


class Pending(Generic[T]):
    """The result of a write queued in a transaction; its ``value`` exists after EXEC.

    Reading ``value`` before the transaction commits raises :class:`TransactionError`;
    after EXEC it returns the result (what the same Store method returns), or raises the
    error of that one command (a ``redis.ResponseError``, or e.g. ``NotFoundError`` for
    ``incr`` of a missing object).
    """

    __slots__ = ("_error", "_state", "_value", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self._state = _WAITING
        self._value: Any = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """True once EXEC answered this write (with a value or an error)."""
        return self._state in (_DONE, _FAILED)

    @property
    def value(self) -> T:
        if self._state == _DONE:
            return self._value  # type: ignore[no-any-return]
        if self._state == _FAILED:
            assert self._error is not None
            raise self._error
        if self._state == _DROPPED:
            raise TransactionError(
                f"{self.what} was never applied: its transaction attempt was abandoned "
                "(a conflict that was retried, an exception, or a rolled-back nested call)"
            )
        raise TransactionError(
            f"the result of {self.what} exists only after the transaction commits (EXEC); "
            "read .value after the transaction function returns"
        )

    def _resolve(self, value: Any) -> None:
        self._state, self._value = _DONE, value

    def _fail(self, error: BaseException) -> None:
        self._state, self._error = _FAILED, error

    def _drop(self) -> None:
        if self._state == _WAITING:
            self._state = _DROPPED

    def __repr__(self) -> str:
        state = {_WAITING: "waiting", _DONE: f"value={self._value!r}",
                 _FAILED: f"error={self._error!r}", _DROPPED: "dropped"}[self._state]
        return f"<Pending {self.what}: {state}>"


# ---- the sans-I/O core --------------------------------------------------------------------


@attrs.define
class _Queued:
    plan: Plan[Any]
    pending: Pending[Any]
    batch: Batch | None  # what the plan waits on; None once it has its result
    early: bool = False  # it has sent writes before MULTI (claims): they need undoing
    start: int = 0
    count: int = 0


def _before_multi(batch: Batch) -> bool:
    """A batch a transaction runs before MULTI: a read (WATCHed first) or an early write."""
    return batch.early or not batch.write


Steps = Generator["tuple[str, Batch]", "list[Any]", R]
"""A sans-I/O driver: yields ("read" | "write", batch) for the shell to run (a read with
WATCH of its keys first, a write at once, outside MULTI), receives the replies."""


class TxCore:
    """What one attempt has watched and queued. Makes every decision, does no I/O.

    A shell calls :meth:`read` before each read (and WATCHes the keys it returns) and
    :meth:`queue` for each write. At commit it runs :meth:`prepare` (the reads and early
    writes queued plans do before their first queued write: WATCHed reads of what they will
    change, claims in other slots), sends :meth:`exec_commands` in MULTI/EXEC, and runs
    :meth:`finish` with the replies (follow-up writes outside MULTI, such as confirming
    claims). After a conflict or an error, :meth:`undo_early` undoes early writes.
    ``hints`` is shared by the plans of this attempt (see _indexed.TxHints).
    """

    def __init__(self) -> None:
        self.watched: list[str] = []
        self._watched_set: set[str] = set()
        self._queued: list[_Queued] = []
        self.closed = False
        self.hints = TxHints()

    @property
    def commands(self) -> list[Command]:
        """The commands queued so far for MULTI/EXEC."""
        return [c for q in self._queued if q.batch is not None and
                not _before_multi(q.batch) for c in q.batch.commands]

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise TransactionError(f"cannot {what}: this transaction has already ended")

    def read(self, keys: Iterable[str], what: str, internal: bool = False) -> list[str]:
        """Keys of a read that are not watched yet (now counted as watched). Refuses a
        read once a write is queued (unless it is a queued plan's own read at commit)."""
        if not internal:
            self._check_open(what)
            if self._queued:
                raise ReadAfterWriteError(what, self._queued[0].pending.what)
        new = [k for k in dict.fromkeys(keys) if k not in self._watched_set]
        self._watched_set.update(new)
        self.watched.extend(new)
        return new

    def queue(self, batch: Batch, plan: Plan[Any], what: str) -> Pending[Any]:
        """Queue a plan waiting on ``batch``: a write for MULTI, or a read or early write
        it does first (run by :meth:`prepare`); ``plan`` is resumed with the replies.
        Scripts stay EVALSHA in MULTI: the transport loads them before MULTI."""
        self._check_open(what)
        pending: Pending[Any] = Pending(what)
        self._queued.append(_Queued(plan, pending, batch))
        return pending

    @property
    def has_writes(self) -> bool:
        return bool(self._queued)

    def mark(self) -> int:
        """A savepoint: :meth:`rollback_to` drops the writes queued after it."""
        return len(self._queued)

    def rollback_to(self, mark: int) -> None:
        dropped = self._queued[mark:]
        del self._queued[mark:]
        for q in dropped:
            q.pending._drop()
            q.plan.close()

    def prepare(self) -> Steps[None]:
        """Run every queued plan up to its write for MULTI, in queue order, so later plans
        see what earlier ones declared. A plan that fails here fails the commit: its error
        is raised (the shell then undoes early writes and abandons the attempt)."""
        for q in self._queued:
            while q.batch is not None and _before_multi(q.batch):
                batch = q.batch
                replies = yield ("write" if batch.early else "read"), batch
                q.early = q.early or batch.early
                try:
                    q.batch = q.plan.send(replies)
                except StopIteration as stop:
                    q.batch = None
                    q.pending._resolve(stop.value)
                except Exception as e:
                    q.batch = None
                    q.pending._fail(e)
                    raise

    def exec_commands(self) -> list[Command]:
        """The commands to send between MULTI and EXEC; the transaction takes no more."""
        self.closed = True
        out: list[Command] = []
        for q in self._queued:
            if q.batch is None:
                continue
            assert not _before_multi(q.batch), "prepare() runs first"
            q.start, q.count = len(out), len(q.batch.commands)
            out.extend(q.batch.commands)
        return out

    def finish_steps(self, replies: Sequence[Any]) -> Steps[BaseException | None]:
        """Give each queued write its EXEC replies, and run the follow-ups plans ask for
        (writes a lost reply may repeat, outside MULTI: confirming or releasing claims).
        Returns the first error among them."""
        first: BaseException | None = None
        for q in self._queued:
            if q.batch is None:
                continue
            error = _resume(q, replies[q.start : q.start + q.count])
            while error is None and q.batch is not None:
                more = yield "write", q.batch
                error = _resume(q, more)
            first = first or error
        self._queued.clear()
        return first

    def finish(self, replies: Sequence[Any]) -> BaseException | None:
        """:meth:`finish_steps` where no plan asks for a follow-up (no I/O to do)."""
        steps = self.finish_steps(replies)
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        steps.close()
        return TransactionError("a queued write asked for a follow-up: run finish_steps")

    def undo_early(self) -> Steps[None]:
        """For a commit that will not happen: let each plan that sent early writes undo
        them (best effort: an error here is dropped, the claim expires by its grace)."""
        for q in self._queued:
            if not q.early or q.batch is None:
                continue
            q.early = False
            with contextlib.suppress(Exception):  # Abandoned again, StopIteration, or any
                batch = q.plan.throw(Abandoned())
                while True:
                    batch = q.plan.send((yield "write", batch))
            q.batch = None

    def abandon(self) -> None:
        """End without EXEC: every queued write is dropped."""
        self.closed = True
        self.rollback_to(0)


def _resume(q: _Queued, replies: Sequence[Any]) -> BaseException | None:
    """Hand replies to a queued plan; None when it finished or asked for a follow-up (in
    ``q.batch``), else the error it ended with."""
    for reply in replies:
        if isinstance(reply, Exception):
            q.plan.close()
            q.batch = None
            q.pending._fail(reply)
            return reply
    try:
        batch = q.plan.send(list(replies))
    except StopIteration as stop:
        q.batch = None
        q.pending._resolve(stop.value)
        return None
    except Exception as e:  # the plan's own verdict on its replies, e.g. NotFoundError
        q.batch = None
        q.pending._fail(e)
        return e
    if batch.may_resend or not batch.write:
        q.batch = batch
        return None
    q.plan.close()
    q.batch = None
    error = TransactionError(
        f"{q.pending.what} needs another round trip after EXEC, which a transaction "
        "cannot give"
    )
    q.pending._fail(error)
    return error


class _WatchConflictError(Exception):
    """EXEC returned nil: a watched key changed. Internal; the retry loop catches it."""


def _single_attempt_error(error: RestartAttemptError) -> BaseException:
    """What a transaction that cannot run again raises when its attempt could not go on:
    the cause (a ConnectionError, or the server's redirection as a ServerError). Nothing
    of it was applied, so calling again is safe."""
    cause = error.cause
    if isinstance(cause, ResponseError):
        return server_error(cause, ("EXEC",))
    return cause


def _one_attempt(keys: tuple[str, ...]) -> ConflictError:
    return ConflictError(
        f"transaction conflicted on its 1 attempt (watched keys {list(keys)}): "
        "a context-managed Transaction is one attempt; use @transaction or "
        "transact() to retry",
        attempts=1, keys=keys,
    )


def _read_command(client: Any, args: tuple[Any, ...], watch: Sequence[str]) -> Plan[Any]:
    """One raw read command, its reply shaped as the client's own method would."""
    replies = yield Batch([args], keys=tuple(watch))
    return redis_reply(client, args, replies[0])


def get_field(model: type, id_value: Any, field: str) -> Plan[Any]:
    """Plan: one field of an object (HGET), decoded by its type; None if absent."""
    spec = spec_of(model)
    key = spec.key_for(id_value)
    if spec.layout != "hash":
        raise ValidationError("get_field needs the hash layout; use get()", model=spec.name,
                              key=key, field=field)
    chain = spec.path(field)
    leaf = chain[-1]
    if leaf.kind == "struct" or leaf.decode is None:
        raise ValidationError("a nested object is read whole, with get()", model=spec.name,
                              key=key, field=field)
    name = spec.delimiter.encode().join(f.stored.encode() for f in chain)
    replies = yield Batch([("HGET", key, name)], keys=(key,))
    raw = replies[0]
    if raw is None:
        return None
    try:
        return leaf.decode(raw)
    except BadValueError as e:
        raise DecodeError(f"stored value is {e}", model=spec.name, key=key,
                          field=field) from None
    except DecodeError as e:
        raise e.with_context(model=spec.name, key=key, field=field) from None


# ---- the sync shell -----------------------------------------------------------------------

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "redmodel_transaction", default=None
)


def _one(batch: Batch) -> Plan[list[Any]]:
    """A plan of one batch."""
    return (yield batch)


def _records_a_container(batch: Batch) -> bool:
    """Whether ``batch`` is the container registry's first record of a key (its only write
    a read plan makes: redmodel._container_registry.check_plan)."""
    return batch.write and batch.early and bool(batch.keys) and all(
        k.endswith(":%container") for k in batch.keys)


def current_transaction() -> Transaction | AsyncTransaction | None:
    """The transaction open in this thread / asyncio task, if any."""
    return _ACTIVE.get()  # type: ignore[no-any-return]


def _same_store(a: Any, b: Any) -> bool:
    return a is b or a.client is b.client


class _TxBase:
    """State and queued writes shared by :class:`Transaction` and :class:`AsyncTransaction`:
    a write does no I/O (it is queued for EXEC), so both shells use these methods as is."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._core = TxCore()
        self._session: Any = None
        self._token: contextvars.Token[Any] | None = None
        self._joined: tuple[Any, int] | None = None
        self._models: set[type] = set()  # what the queued writes touch, for the registry
        self._containers: list[Any] = []  # containers used through in_tx, likewise

    def _unregistered(self, models: Iterable[type]) -> list[Plan[Any]]:
        """The model registry's first-use plans of the models the store has not checked
        yet (run on the store, outside the transaction, before anything of it is sent)."""
        registry = getattr(self.store, "_registry", None)
        if registry is None:
            return []
        containers = [p for c in self._containers if (p := first_use(c)) is not None]
        return [registry.register(spec_of(cls)) for cls in sorted(set(models), key=repr)
                if cls not in registry.checked] + containers

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} watched={self._core.watched!r} "
                f"queued={len(self._core.commands)} commands>")

    @property
    def watched(self) -> tuple[str, ...]:
        """Keys WATCHed so far in this attempt."""
        return tuple(self._core.watched)

    def _activate(self) -> None:
        self._session = self.store._link.session()
        self._token = _ACTIVE.set(self)

    def _deactivate(self) -> Any:
        """Leave the context and drop what was not committed; returns the session, which the
        shell closes (UNWATCH if needed, connection back to the pool)."""
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None
        if not self._core.closed:
            self._core.abandon()
        session, self._session = self._session, None
        return session

    def _enter_joined(self) -> Any:
        """If a transaction is active here, join it (a savepoint) and return it."""
        active = _ACTIVE.get()
        if active is None:
            return None
        _check_join(active, self.store, type(self).__name__ + "(store)")
        if type(active) is not type(self):
            raise TransactionError("a sync and an asyncio transaction cannot be nested")
        self._joined = (active, active._core.mark())
        return active

    def _exit_joined(self, exc: BaseException | None) -> bool:
        """Leave a joined transaction (dropping its writes on an exception); False if this
        one was not joined."""
        if self._joined is None:
            return False
        outer, mark = self._joined
        self._joined = None
        if exc is not None:
            outer._core.rollback_to(mark)
        return True


    def _to_exec(self) -> list[Command] | None:
        """The commands for MULTI/EXEC, or None when there is nothing to send (no write and
        no watched read: with watched reads, EXEC still tells whether they stayed put)."""
        commands = self._core.exec_commands()
        if not commands and not self._core.watched:
            return None
        return commands

    def _read_commands(self, batch: Batch, what: str, internal: bool = False
                       ) -> tuple[Batch, bool]:
        """The batch to send for a read: WATCH of the keys not watched yet, then the read,
        on the session's connection (the WATCH is answered before the read runs)."""
        new = self._core.read(batch.keys, what, internal)
        if self._session is None:
            raise TransactionError(f"cannot {what}: this transaction is not open")
        if not new:
            return batch, False
        return Batch([("WATCH", *new), *batch.commands], keys=batch.keys), True

    def _commit_batch(self) -> Batch | None:
        """MULTI/EXEC's batch, or None when there is nothing to send."""
        commands = self._to_exec()
        if commands is None:
            return None
        if self._session is None:
            raise TransactionError("cannot commit: this transaction is not open")
        return Batch(commands, atomic=True, write=True, keys=self.watched)

    def queue(self, plan: Plan[R], what: str = "write") -> Pending[R]:
        """Queue a write plan for EXEC; reads it does before its first write (WATCHed) and
        early writes (claims) run at commit, before MULTI, in queue order."""
        try:
            batch = next(plan)
        except StopIteration as stop:
            done: Pending[R] = Pending(what)
            done._resolve(stop.value)
            return done
        return self._core.queue(batch, plan, what)

    # ---- writes (queued; the same in both shells) --------------------------------------

    def save(self, obj: Any, *, ttl: float | dt.timedelta | None = DEFAULT) -> Pending[str]:
        """Queue HSET (+ HDEL, PEXPIRE) of the whole object; value: its key."""
        self._models.add(type(obj))
        return self.queue(_ops.save(obj, ttl, hints=self._core.hints),
                          f"save {type(obj).__name__}")

    def save_many(self, objs: Iterable[Any], *, ttl: float | dt.timedelta | None = DEFAULT
                  ) -> Pending[int]:
        """Queue the saves of many objects in this MULTI; value: how many."""
        objs = list(objs)
        self._models.update(type(o) for o in objs)
        return self.queue(_ops.save_many(objs, ttl, max(1, len(objs)), self._core.hints),
                          "save many")

    def update(self, model: type, id: Any, **values: Any) -> Pending[bool]:
        """Queue the update script (EVAL); value: False if the object did not exist."""
        self._models.add(model)
        plan = _ops.update(model, id, values, self._core.hints)
        return self.queue(plan, f"update {model.__name__} {id!r}")

    def incr(self, model: type, id: Any, field: str, amount: float = 1) -> Pending[Any]:
        """Queue HINCRBY / HINCRBYFLOAT (script, EVAL); value: the new number."""
        self._models.add(model)
        plan = _ops.incr(model, id, field, amount, self._core.hints)
        return self.queue(plan, f"incr {model.__name__} {id!r} {field}")

    def incr_fields(
        self,
        model: type,
        id: Any,
        changes: Mapping[str, float],
        *,
        floor: Mapping[str, float] | None = None,
        ceiling: Mapping[str, float] | None = None,
    ) -> Pending[dict[str, Any]]:
        """Queue the conditional multi-field increment (EVAL); see ``incr_fields``."""
        self._models.add(model)
        plan = incr_fields_plan(model, id, changes, floor=floor, ceiling=ceiling,
                                hints=self._core.hints)
        return self.queue(plan, f"incr_fields {model.__name__} {id!r}")

    def delete(self, model: type, id: Any) -> Pending[bool]:
        """Queue DEL; value: True if the object existed."""
        self._models.add(model)
        return self.queue(_ops.delete(model, id, self._core.hints),
                          f"delete {model.__name__} {id!r}")

    def delete_many(self, model: type, ids: Iterable[Any]) -> Pending[int]:
        """Queue one DEL of every key; value: how many existed."""
        self._models.add(model)
        ids = list(ids)
        plan = _ops.delete_many(model, ids, max(1, len(ids)), self._core.hints)
        return self.queue(plan, f"delete many {model.__name__}")

    def expire(self, model: type, id: Any, ttl: float | dt.timedelta) -> Pending[bool]:
        """Queue PEXPIRE; value: False if the object did not exist."""
        self._models.add(model)
        return self.queue(_ops.expire(model, id, ttl, self._core.hints),
                          f"expire {model.__name__} {id!r}")

    def persist(self, model: type, id: Any) -> Pending[bool]:
        """Queue PERSIST; value: False if it had no expiry."""
        self._models.add(model)
        return self.queue(_ops.persist(model, id, self._core.hints),
                          f"persist {model.__name__} {id!r}")

    def command(self, *args: Any) -> Pending[Any]:
        """Queue a raw command; value: its reply, as redis-py's ``execute_command`` would
        return it (its response callback applied)."""
        client = self.store.client

        def plan() -> Plan[Any]:
            replies = yield Batch([args], write=True)
            return redis_reply(client, args, replies[0])

        return self.queue(plan(), f"{args[0]!s}")




class Transaction(_TxBase):
    """One attempt of an optimistic transaction: the handle a transaction function gets.

    Reads (``get``, ``get_many``, ``get_or_raise``, ``exists``, ``get_field``,
    ``read_command``, ``watch``) first WATCH the keys they read, then run at once. Writes
    (``save``, ``save_many``, ``update``, ``incr``, ``incr_fields``, ``delete``,
    ``delete_many``, ``expire``, ``persist``, ``command``) are queued and return a
    :class:`Pending`; they are sent in one MULTI/EXEC at the end. A read after a write
    raises :class:`ReadAfterWriteError`.

    As a context manager it is a single attempt (no retry; a conflict raises
    :class:`ConflictError` with ``attempts=1``)::

        with Transaction(store) as tx:
            hat = tx.get_or_raise(Hat, hat_id)
            tx.update(Hat, hat_id, quantity=hat.quantity - 1)

    Inside another transaction on the same store it joins the outer one. A handle belongs
    to one thread and lives for one attempt.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)

    # ---- lifecycle (used by transact and the context manager) -----------------------

    def _open(self) -> None:
        self._activate()

    def _close(self) -> None:
        session = self._deactivate()
        if session is not None:
            session.close()  # UNWATCH if needed; the connection goes back to the pool

    def _commit(self) -> None:
        """The queued plans' own reads and early writes, then MULTI, the queued commands,
        EXEC, then their follow-ups. Raises _WatchConflictError on a WATCH conflict, the
        first failed command's error after a commit, OutcomeUnknownError when EXEC's reply
        was lost, RestartAttemptError when nothing was applied and the attempt must run
        again. Early writes of a commit that did not happen are undone first; after an
        unknown outcome they stay (the commit may have happened)."""
        core = self._core
        for plan in self._unregistered(self._models):
            self.store.run(plan)
        try:
            self._drive(core.prepare())
            batch = self._commit_batch()
            if batch is None:
                return
            ex = self._session.run(batch)
            if ex.conflict:
                raise _WatchConflictError()
        except OutcomeUnknownError:
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                self._drive(core.undo_early())
            raise
        error = self._drive(core.finish_steps(ex.raw()))
        if error is not None:
            raise error

    def _drive(self, steps: Steps[T]) -> T:
        """Run a TxCore driver: its reads WATCHed on this transaction's connection, its
        writes on the store, outside MULTI."""
        try:
            kind, batch = next(steps)
            while True:
                if kind == "read":
                    replies = self._read_batch(batch, "a queued write's read", internal=True)
                else:
                    replies = self.store._execute(batch)
                kind, batch = steps.send(replies)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def __enter__(self) -> Transaction:
        active = self._enter_joined()
        if active is not None:
            return active  # type: ignore[no-any-return]
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._exit_joined(exc):
            return
        try:
            if isinstance(exc, RestartAttemptError):
                raise _single_attempt_error(exc) from None
            if exc is None:
                self._commit()
        except _WatchConflictError:
            raise _one_attempt(self.watched) from None
        except RestartAttemptError as e:
            raise _single_attempt_error(e) from None
        finally:
            self._close()

    # ---- driving plans ---------------------------------------------------------------

    def _read_batch(self, batch: Batch, what: str, internal: bool = False) -> list[Any]:
        sent, watched = self._read_commands(batch, what, internal)
        replies: list[Any] = self._session.run(sent).result()
        return replies[1:] if watched else replies

    def query(self, plan: Plan[R], what: str = "read") -> R:
        """Run a read-only plan now, WATCHing the keys of each batch first."""
        try:
            batch = next(plan)
            while True:
                if _records_a_container(batch):
                    # the container registry's first record of a key a read plan checks:
                    # sent at once on the store (the attempt whose WATCH it trips restarts)
                    batch = plan.send(self.store.run(_one(batch)))
                    continue
                if batch.write:
                    plan.close()
                    raise TransactionError(f"{what} writes: use Transaction.queue for it")
                batch = plan.send(self._read_batch(batch, what))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # ---- reads -----------------------------------------------------------------------

    def _register(self, model: type) -> None:
        for plan in self._unregistered([model]):
            self.store.run(plan)

    def watch(self, *keys: str) -> None:
        """WATCH more keys (ones the function depends on without reading them here)."""
        self._read_batch(Batch([], keys=keys), f"watch {list(keys)}")

    def get(self, model: type[T], id: Any) -> T | None:
        """WATCH the key, then HGETALL: the object or None."""
        self._register(model)
        return self.query(_ops.get(model, id), f"get {model.__name__} {id!r}")  # type: ignore[no-any-return]

    def get_or_raise(self, model: type[T], id: Any) -> T:
        """Like :meth:`get`; raises NotFoundError when missing."""
        self._register(model)
        return self.query(_ops.get_or_raise(model, id), f"get {model.__name__} {id!r}")  # type: ignore[no-any-return]

    def get_many(self, model: type[T], ids: Iterable[Any]) -> list[T | None]:
        """WATCH every key, then the HGETALLs pipelined; None where missing."""
        self._register(model)
        plan = _ops.get_many(model, ids, self.store.chunk_size)
        return self.query(plan, f"get many {model.__name__}")

    def exists(self, model: type, id: Any) -> bool:
        """WATCH the key, then EXISTS."""
        self._register(model)
        return self.query(_ops.exists(model, id), f"check {model.__name__} {id!r} exists")

    def get_field(self, model: type, id: Any, field: str) -> Any:
        """WATCH the key, then HGET one field, decoded by its type; None if absent."""
        self._register(model)
        return self.query(get_field(model, id, field), f"read {model.__name__} {id!r} {field}")

    def read_command(self, *args: Any, watch: Sequence[str]) -> Any:
        """A raw read command run now, after WATCHing ``watch`` (name every key it reads;
        ``watch=()`` reads without protection)."""
        return self.query(_read_command(self.store.client, args, watch), f"run {args[0]!s}")

class AsyncTransaction(_TxBase):
    """The asyncio twin of :class:`Transaction`, for :class:`AsyncStore`: reads are awaited
    (``await tx.get(...)``), writes are queued exactly as in the sync handle and return a
    :class:`Pending`. ``async with AsyncTransaction(store) as tx:`` is one attempt;
    ``@transaction`` on an ``async def`` retries. Nested use joins the outer transaction
    of the same asyncio task."""

    def __init__(self, store: AsyncStore) -> None:
        super().__init__(store)

    def _open(self) -> None:
        self._activate()

    async def _close(self) -> None:
        session = self._deactivate()
        if session is not None:
            await session.close()

    async def _commit(self) -> None:
        """As :meth:`Transaction._commit`, awaited."""
        core = self._core
        for plan in self._unregistered(self._models):
            await self.store.run(plan)
        try:
            await self._drive(core.prepare())
            batch = self._commit_batch()
            if batch is None:
                return
            ex = await self._session.run(batch)
            if ex.conflict:
                raise _WatchConflictError()
        except OutcomeUnknownError:
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await self._drive(core.undo_early())
            raise
        error = await self._drive(core.finish_steps(ex.raw()))
        if error is not None:
            raise error

    async def _drive(self, steps: Steps[T]) -> T:
        """As :meth:`Transaction._drive`, awaited."""
        try:
            kind, batch = next(steps)
            while True:
                if kind == "read":
                    replies = await self._read_batch(batch, "a queued write's read",
                                                     internal=True)
                else:
                    replies = await self.store._execute(batch)
                kind, batch = steps.send(replies)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncTransaction:
        active = self._enter_joined()
        if active is not None:
            return active  # type: ignore[no-any-return]
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._exit_joined(exc):
            return
        try:
            if isinstance(exc, RestartAttemptError):
                raise _single_attempt_error(exc) from None
            if exc is None:
                await self._commit()
        except _WatchConflictError:
            raise _one_attempt(self.watched) from None
        except RestartAttemptError as e:
            raise _single_attempt_error(e) from None
        finally:
            await self._close()

    async def _read_batch(self, batch: Batch, what: str, internal: bool = False
                          ) -> list[Any]:
        sent, watched = self._read_commands(batch, what, internal)
        replies: list[Any] = (await self._session.run(sent)).result()
        return replies[1:] if watched else replies

    async def query(self, plan: Plan[R], what: str = "read") -> R:
        """Run a read-only plan now, WATCHing the keys of each batch first."""
        try:
            batch = next(plan)
            while True:
                if _records_a_container(batch):  # outside the transaction, as in query
                    batch = plan.send(await self.store.run(_one(batch)))
                    continue
                if batch.write:
                    plan.close()
                    raise TransactionError(f"{what} writes: use queue() for it")
                batch = plan.send(await self._read_batch(batch, what))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # ---- reads (awaited; see Transaction for the commands) ---------------------------

    async def _register(self, model: type) -> None:
        for plan in self._unregistered([model]):
            await self.store.run(plan)

    async def watch(self, *keys: str) -> None:
        """WATCH more keys."""
        await self._read_batch(Batch([], keys=keys), f"watch {list(keys)}")

    async def get(self, model: type[T], id: Any) -> T | None:
        """WATCH the key, then read the object; None if missing."""
        await self._register(model)
        return await self.query(_ops.get(model, id), f"get {model.__name__} {id!r}")

    async def get_or_raise(self, model: type[T], id: Any) -> T:
        """Like :meth:`get`; raises NotFoundError when missing."""
        await self._register(model)
        plan = _ops.get_or_raise(model, id)
        return await self.query(plan, f"get {model.__name__} {id!r}")

    async def get_many(self, model: type[T], ids: Iterable[Any]) -> list[T | None]:
        """WATCH every key, then the reads pipelined; None where missing."""
        await self._register(model)
        plan = _ops.get_many(model, ids, self.store.chunk_size)
        return await self.query(plan, f"get many {model.__name__}")

    async def exists(self, model: type, id: Any) -> bool:
        """WATCH the key, then EXISTS."""
        await self._register(model)
        return await self.query(_ops.exists(model, id), f"check {model.__name__} {id!r} exists")

    async def get_field(self, model: type, id: Any, field: str) -> Any:
        """WATCH the key, then HGET one field, decoded by its type; None if absent."""
        await self._register(model)
        plan = get_field(model, id, field)
        return await self.query(plan, f"read {model.__name__} {id!r} {field}")

    async def read_command(self, *args: Any, watch: Sequence[str]) -> Any:
        """A raw read command run now, after WATCHing ``watch`` (name every key it reads;
        ``watch=()`` reads without protection)."""
        return await self.query(_read_command(self.store.client, args, watch),
                                f"run {args[0]!s}")


def _check_join(active: Any, store: Any, what: str) -> None:
    if store is not None and not _same_store(store, active.store):
        raise TransactionError(
            f"{what} was called inside a transaction on another store ({active.store!r}); "
            "one transaction cannot span two stores"
        )


def _join(active: Transaction, store: Store | None, fn: Callable[..., R],
          args: Sequence[Any], kwargs: Mapping[str, Any]) -> Outcome[R]:
    """Run ``fn`` inside the outer transaction; its writes are dropped if it raises."""
    _check_join(active, store, _name(fn))
    if not isinstance(active, Transaction):
        raise TransactionError(
            f"{_name(fn)} is a sync function and cannot join the open asyncio transaction "
            "(its reads would return coroutines): make it an async def and await it"
        )
    mark = active._core.mark()
    try:
        value = fn(active, *args, **kwargs)
    except BaseException:
        active._core.rollback_to(mark)
        raise
    return Outcome(value, attempts=0, keys=active.watched, joined=True)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class _Attempts:
    """The retry policy applied to one call: counts, logs and decides, does no I/O.

    Both retry loops (sync and asyncio) are: ``begin()``; run and commit; on success
    ``done()``, on a conflict sleep ``conflicted()`` seconds (it raises ConflictError when
    the policy gives up), on any other exception ``failed()`` and re-raise."""

    def __init__(self, fn: Callable[..., Any], policy: RetryPolicy, stats: TxStats) -> None:
        self.fn, self.policy, self.stats = fn, policy, stats
        self.started = time.monotonic()
        self.attempt = 0
        self.restarts = 0
        stats.add(calls=1)

    def begin(self) -> None:
        self.attempt += 1
        self.stats.add(attempts=1)

    def done(self, value: R, keys: tuple[str, ...]) -> Outcome[R]:
        self.stats.add(commits=1)
        return Outcome(value, attempts=self.attempt, keys=keys)

    def failed(self) -> None:
        self.stats.add(errors=1)

    def restarted(self, error: RestartAttemptError, resend: ResendPolicy) -> float:
        """Nothing of the attempt was applied and it cannot go on: the seconds to sleep
        before running it again, under the store's ResendPolicy; raises the cause (a
        ConnectionError: safe to call again) when that policy gives up."""
        self.restarts += 1
        self.stats.add(restarts=1)
        delay = resend.backoff(self.restarts)
        elapsed = time.monotonic() - self.started
        if self.restarts >= resend.attempts or elapsed + delay > resend.deadline:
            self.stats.add(errors=1)
            raise _single_attempt_error(error) from None
        log.log(self.policy.log_level, "transaction %s: attempt %d could not go on (%s); "
                "nothing was applied; running it again in %.1f ms", _name(self.fn),
                self.attempt, error.cause, delay * 1000)
        return delay

    def conflicted(self, keys: tuple[str, ...]) -> float:
        self.stats.add(conflicts=1)
        delay = self.policy.next_delay(self.attempt, time.monotonic() - self.started)
        _log_conflict(self.fn, self.attempt, self.policy, keys, delay)
        if delay is None:
            self.stats.add(exhausted=1)
            raise _exhausted(self.fn, self.attempt, self.policy, keys)
        return delay


def _check_kind(store: Any, want_async: bool, fn: Callable[..., Any]) -> None:
    """A sync function needs a Store, an ``async def`` an AsyncStore."""
    is_async = inspect.iscoroutinefunction(getattr(store, "run", None))
    if is_async != want_async:
        kind = "an async def" if want_async else "a sync function"
        need = "an AsyncStore" if want_async else "a Store"
        raise TransactionError(f"{_name(fn)} is {kind}: its transaction needs {need}, "
                               f"not {type(store).__name__}")


def _unbound(fn: Callable[..., Any]) -> TransactionError:
    return TransactionError(
        f"{_name(fn)} has no store: decorate it with @transaction(store), call "
        ".bind(store), or call it inside another transaction"
    )


def run_transaction(
    store: Store | None,
    fn: Callable[..., R],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    stats: TxStats | None = None,
) -> Outcome[R]:
    """The retry loop: run ``fn(tx, *args, **kwargs)`` until its EXEC succeeds or the
    policy gives up. Joins an active transaction instead, if there is one."""
    kwargs = kwargs or {}
    stats = stats or TxStats()
    active = _ACTIVE.get()
    if active is not None:
        stats.add(joined=1)
        return _join(active, store, fn, args, kwargs)
    if store is None:
        raise _unbound(fn)
    _check_kind(store, False, fn)
    attempts = _Attempts(fn, policy, stats)
    while True:
        attempts.begin()
        tx = Transaction(store)
        tx._open()
        restart: RestartAttemptError | None = None
        try:
            value = fn(tx, *args, **kwargs)
            tx._commit()
            return attempts.done(value, tx.watched)
        except _WatchConflictError:
            pass
        except RestartAttemptError as e:
            restart = e
        except BaseException:
            attempts.failed()
            raise
        finally:
            tx._close()
        if restart is not None:
            time.sleep(attempts.restarted(restart, store.resend))
        else:
            time.sleep(attempts.conflicted(tx.watched))


async def _join_async(active: AsyncTransaction, store: AsyncStore | None,
                      fn: Callable[..., Awaitable[R]], args: Sequence[Any],
                      kwargs: Mapping[str, Any]) -> Outcome[R]:
    """Await ``fn`` inside the outer transaction; its writes are dropped if it raises."""
    _check_join(active, store, _name(fn))
    if not isinstance(active, AsyncTransaction):
        raise TransactionError(f"{_name(fn)} is async; the open transaction is not")
    mark = active._core.mark()
    try:
        value = await fn(active, *args, **kwargs)
    except BaseException:
        active._core.rollback_to(mark)
        raise
    return Outcome(value, attempts=0, keys=active.watched, joined=True)


async def run_transaction_async(
    store: AsyncStore | None,
    fn: Callable[..., Awaitable[R]],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    stats: TxStats | None = None,
) -> Outcome[R]:
    """:func:`run_transaction` for ``async def`` functions on an :class:`AsyncStore`."""
    kwargs = kwargs or {}
    stats = stats or TxStats()
    active = _ACTIVE.get()
    if active is not None:
        stats.add(joined=1)
        return await _join_async(active, store, fn, args, kwargs)
    if store is None:
        raise _unbound(fn)
    _check_kind(store, True, fn)
    attempts = _Attempts(fn, policy, stats)
    while True:
        attempts.begin()
        tx = AsyncTransaction(store)
        tx._open()
        restart: RestartAttemptError | None = None
        try:
            value = await fn(tx, *args, **kwargs)
            await tx._commit()
            return attempts.done(value, tx.watched)
        except _WatchConflictError:
            pass
        except RestartAttemptError as e:
            restart = e
        except BaseException:
            attempts.failed()
            raise
        finally:
            await tx._close()
        if restart is not None:
            await asyncio.sleep(attempts.restarted(restart, store.resend))
        else:
            await asyncio.sleep(attempts.conflicted(tx.watched))


def _log_conflict(fn: Callable[..., Any], attempt: int, policy: RetryPolicy,
                  keys: tuple[str, ...], delay: float | None) -> None:
    then = "giving up" if delay is None else f"retrying in {delay * 1000:.1f} ms"
    log.log(policy.log_level, "transaction %s: WATCH conflict on attempt %d of %d "
            "(watched keys %s); %s", _name(fn), attempt, policy.attempts, list(keys), then)


def _exhausted(fn: Callable[..., Any], attempt: int, policy: RetryPolicy,
               keys: tuple[str, ...]) -> ConflictError:
    why = "" if attempt >= policy.attempts else f" within its deadline of {policy.deadline} s"
    return ConflictError(
        f"transaction {_name(fn)} conflicted on all {attempt} attempts{why}: other clients "
        f"kept changing the watched keys {list(keys)}. Allow more attempts in its "
        "RetryPolicy, or move the update into one Lua script (incr_fields) for a hot key",
        attempts=attempt, keys=keys,
    )


def transact(
    store: Store,
    fn: Callable[Concatenate[Transaction, P], R],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Run ``fn(tx, *args, **kwargs)`` as an optimistic transaction with the default
    :class:`RetryPolicy` and return its result. For another policy or the attempt count,
    use ``transaction(store, policy=...)(fn).outcome(...)``."""
    return run_transaction(store, fn, args, kwargs).value


class TransactionFunction(Generic[P, R]):
    """A function run as an optimistic transaction; made by :func:`transaction`.

    Calling it runs the function with a fresh :class:`Transaction` as first argument,
    commits, retries on conflict per ``policy``, and returns the function's return value.
    ``outcome(...)`` returns an :class:`Outcome` with the attempt count too; ``stats``
    holds thread-safe counters over every call.
    """

    def __init__(
        self,
        fn: Callable[Concatenate[Transaction, P], R],
        store: Store | None,
        policy: RetryPolicy,
    ) -> None:
        self.fn = fn
        self.store = store
        self.policy = policy
        self.stats = TxStats()
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.outcome(*args, **kwargs).value

    def outcome(self, *args: P.args, **kwargs: P.kwargs) -> Outcome[R]:
        """Run it and return the value with how many attempts it took."""
        return run_transaction(self.store, self.fn, args, kwargs, policy=self.policy,
                               stats=self.stats)

    def bind(self, store: Store) -> TransactionFunction[P, R]:
        """The same function run on ``store`` (new counters)."""
        return TransactionFunction(self.fn, store, self.policy)

    def __repr__(self) -> str:
        return f"<transaction {_name(self.fn)} store={self.store!r} {self.policy!r}>"


class AsyncTransactionFunction(Generic[P, R]):
    """An ``async def`` run as an optimistic transaction on an :class:`AsyncStore`; made by
    :func:`transaction`. ``await f(...)`` returns its value, ``await f.outcome(...)`` the
    :class:`Outcome`; ``stats`` as for :class:`TransactionFunction`."""

    def __init__(
        self,
        fn: Callable[Concatenate[AsyncTransaction, P], Awaitable[R]],
        store: AsyncStore | None,
        policy: RetryPolicy,
    ) -> None:
        self.fn = fn
        self.store = store
        self.policy = policy
        self.stats = TxStats()
        functools.update_wrapper(self, fn)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return (await self.outcome(*args, **kwargs)).value

    async def outcome(self, *args: P.args, **kwargs: P.kwargs) -> Outcome[R]:
        """Run it and return the value with how many attempts it took."""
        return await run_transaction_async(self.store, self.fn, args, kwargs,
                                           policy=self.policy, stats=self.stats)

    def bind(self, store: AsyncStore) -> AsyncTransactionFunction[P, R]:
        """The same function run on ``store`` (new counters)."""
        return AsyncTransactionFunction(self.fn, store, self.policy)

    def __repr__(self) -> str:
        return f"<async transaction {_name(self.fn)} store={self.store!r} {self.policy!r}>"


_Fn = Callable[Concatenate[Transaction, P], R]
_AFn = Callable[Concatenate[AsyncTransaction, P], Awaitable[R]]


class _Decorator:
    """What ``transaction(store, policy=...)`` returns: applied to a function, it makes a
    :class:`TransactionFunction`, or an :class:`AsyncTransactionFunction` for ``async def``."""

    def __init__(self, store: Any, policy: RetryPolicy) -> None:
        self.store, self.policy = store, policy

    @overload
    def __call__(self, fn: _AFn[P, R], /) -> AsyncTransactionFunction[P, R]: ...
    @overload
    def __call__(self, fn: _Fn[P, R], /) -> TransactionFunction[P, R]: ...
    def __call__(self, fn: Any, /) -> Any:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TransactionError(
                f"{_name(fn)} is a generator function: a transaction runs the function to "
                "its return and then commits, so its body would never run; return a value "
                "(a list) instead of yielding"
            )
        if inspect.iscoroutinefunction(fn):
            return AsyncTransactionFunction(fn, self.store, self.policy)
        return TransactionFunction(fn, self.store, self.policy)


@overload
def transaction(fn: _AFn[P, R], /) -> AsyncTransactionFunction[P, R]: ...
@overload
def transaction(fn: _Fn[P, R], /) -> TransactionFunction[P, R]: ...
@overload
def transaction(
    store: Store | AsyncStore | None = None, /, *, policy: RetryPolicy | None = None
) -> _Decorator: ...
def transaction(
    store_or_fn: Any = None, /, *, policy: RetryPolicy | None = None
) -> Any:
    """Decorate a function whose first parameter is a :class:`Transaction`::

        @redmodel.transaction(store, policy=redmodel.RetryPolicy(attempts=20))
        def buy(tx, hat_id):
            hat = tx.get_or_raise(Hat, hat_id)      # WATCH hat:…, HGETALL hat:…
            if hat.quantity <= 0:
                raise OutOfStockError(hat_id)      # nothing written, propagated as is
            tx.incr(Hat, hat_id, "quantity", -1)   # queued
            tx.incr(Hat, hat_id, "npurchased", 1)  # queued
        buy("56854717")                            # MULTI, EVAL, EVAL, EXEC; retried

    On an ``async def`` with an :class:`AsyncStore` it makes the asyncio version (the
    handle is an :class:`AsyncTransaction`; ``await hat = tx.get(...)``; ``await buy(id)``).
    Without a store (``@transaction()`` or bare ``@transaction``) the function must be
    bound with ``.bind(store)`` or called inside another transaction, which it joins.
    """
    if callable(store_or_fn):
        return _Decorator(None, policy or DEFAULT_POLICY)(store_or_fn)
    return _Decorator(store_or_fn, policy or DEFAULT_POLICY)
