"""Running a function as a transaction: the retry loop (:func:`run_transaction`, its
asyncio twin), joining an active transaction, and the decorator :func:`transaction` with
the functions it makes (:class:`TransactionFunction`, :class:`AsyncTransactionFunction`).
``transact`` is the deprecated alias of ``transaction(store)(fn)(*args)``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from redmodel._errors import (
    ConflictError,
    TransactionError,
    ValidationError,
)
from redmodel._stores._config import ShellConfig  # what Store and AsyncStore share
from redmodel._transport._wire import ResendPolicy, RestartAttemptError

if TYPE_CHECKING:

    pass

from redmodel._plan import open_transaction
from redmodel.transactions._core import _single_attempt_error, _WatchConflictError
from redmodel.transactions._handles import (
    AsyncStore,
    AsyncTransaction,
    Store,
    Transaction,
    _check_join,
)
from redmodel.transactions._policy import DEFAULT_POLICY, Outcome, RetryPolicy, TxStats

__all__ = [
    "AsyncTransactionFunction",
    "TransactionDecorator",
    "TransactionFunction",
    "run_transaction",
    "run_transaction_async",
    "transact",
    "transaction",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

log = logging.getLogger("redmodel.tx")


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
        _refuse_result(fn, value, False)
    except BaseException:
        active._core.rollback_to(mark)
        raise
    return Outcome(value, attempts=0, keys=active.watched, joined=True)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class _Attempts:
    """The retry policy applied to one call: counts, logs and decides, does no I/O.

    Both retry loops (sync and asyncio) are: ``begin()``; run and commit inside ``with
    attempts:`` (a WATCH conflict or a restart ends the attempt there, any other exception
    is counted by ``failed()`` and re-raised); on success ``done()``, else sleep
    ``pause()`` seconds (it raises ConflictError, or the restart's cause, when the policy
    gives up)."""

    def __init__(self, fn: Callable[..., Any], policy: RetryPolicy, stats: TxStats) -> None:
        self.fn, self.policy, self.stats = fn, policy, stats
        self.started = time.monotonic()
        self.attempt = 0
        self.restarts = 0  # attempts run again after a restart: the ResendPolicy's budget
        self.conflicts = 0  # attempts that hit a WATCH conflict: the RetryPolicy's budget
        self._restart: RestartAttemptError | None = None

    def begin(self) -> None:
        self.attempt += 1
        self._restart = None
        self.stats.bump("attempts", calls=self.attempt == 1)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> bool:
        """Whether the attempt's exception ends only the attempt (a WATCH conflict, a
        restart); any other is counted and goes on."""
        if exc is None or isinstance(exc, _WatchConflictError):
            return exc is not None
        if isinstance(exc, RestartAttemptError):
            self._restart = exc
            return True
        self.failed()
        return False

    def pause(self, resend: ResendPolicy, keys: tuple[str, ...]) -> float:
        """The seconds to sleep after an attempt that ended in a restart or a conflict."""
        if self._restart is not None:
            return self.restarted(self._restart, resend)
        return self.conflicted(keys)

    def done(self, value: R, keys: tuple[str, ...]) -> Outcome[R]:
        self.stats.bump("commits")
        return Outcome(value, attempts=self.attempt, keys=keys, restarts=self.restarts)

    def failed(self) -> None:
        self.stats.add(errors=1)

    def restarted(self, error: RestartAttemptError, resend: ResendPolicy) -> float:
        """Nothing of the attempt was applied and it cannot go on: the seconds to sleep
        before running it again, under the store's ResendPolicy; raises the cause (a
        ConnectionError: safe to call again) when that policy gives up."""
        self.restarts += 1  # (attempts that could not go on: the policy's count)
        delay = resend.backoff(self.restarts)
        elapsed = time.monotonic() - self.started
        if self.restarts >= resend.attempts or elapsed + delay > resend.deadline:
            self.stats.add(errors=1)
            raise _single_attempt_error(error) from None
        self.stats.add(restarts=1)  # run again (TxStats.restarts)
        log.log(self.policy.log_level, "transaction %s: attempt %d could not go on (%s); "
                "nothing was applied; running it again in %.1f ms", _name(self.fn),
                self.attempt, error.cause, delay * 1000)
        return delay

    def conflicted(self, keys: tuple[str, ...]) -> float:
        # only conflicts use up the RetryPolicy (docs/transactions.md "Retry policy"): an
        # attempt restarted before it (nothing applied) is the ResendPolicy's to count
        self.stats.add(conflicts=1)
        self.conflicts += 1
        delay = self.policy.next_delay(self.conflicts, time.monotonic() - self.started)
        _log_conflict(self.fn, self.conflicts, self.restarts, self.policy, keys, delay)
        if delay is None:
            self.stats.add(exhausted=1)
            raise _exhausted(self.fn, self.conflicts, self.restarts, self.policy, keys)
        return delay


def _check_kind(store: Any, want_async: bool, fn: Callable[..., Any]) -> None:
    """A sync function needs a Store, an ``async def`` an AsyncStore."""
    if _store_is_async(store) != want_async:
        kind = "an async def" if want_async else "a sync function"
        need = "an AsyncStore" if want_async else "a Store"
        raise TransactionError(f"{_name(fn)} is {kind}: its transaction needs {need}, "
                               f"not {type(store).__name__}")


def _unbound(fn: Callable[..., Any]) -> TransactionError:
    return TransactionError(
        f"{_name(fn)} has no store: decorate it with @transaction(store), call "
        ".bind(store), or call it inside another transaction"
    )


def _generator_error(fn: Callable[..., Any], what: str = "a generator function"
                     ) -> TransactionError:
    return TransactionError(
        f"{_name(fn)} is {what}: a transaction runs the function to its return and then "
        "commits, so its body would never run; return a value (a list) instead of yielding"
    )


def _is_generator_function(fn: Callable[..., Any]) -> bool:
    """A generator function, also behind ``functools.wraps`` or as a callable object's
    ``__call__`` (what can be told before calling it)."""
    for f in (fn, inspect.unwrap(fn), getattr(type(fn), "__call__", None)):  # noqa: B004
        if f is not None and (inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f)):
            return True
    return False


def _is_async_function(fn: Callable[..., Any], deep: bool = False) -> bool:
    """An ``async def`` (or a callable object's ``__call__``); ``deep``: also behind
    ``functools.wraps`` (a guess: the wrapper may await it or not)."""
    found = (fn, getattr(type(fn), "__call__", None)) + ((inspect.unwrap(fn),) if deep else ())  # noqa: B004
    return any(f is not None and inspect.iscoroutinefunction(f) for f in found)


def _store_is_async(store: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(store, "run", None))


def check_function(fn: Callable[..., Any], store: Any) -> None:
    """Refuse, before anything runs, a function a transaction cannot run: a generator
    function, or a function of the wrong kind for ``store`` (an ``async def`` for a
    :class:`Store`, a sync function for an :class:`AsyncStore`), or no function at all
    (``transaction(store)(5)``: ValidationError)."""
    if not callable(fn):
        raise ValidationError(f"a transaction decorates a function of a transaction "
                              f"handle, got {type(fn).__name__}")
    if _is_generator_function(fn):
        raise _generator_error(fn)
    if store is None:
        return
    if _store_is_async(store):
        if not _is_async_function(fn, deep=True):
            _check_kind(store, False, fn)
    elif _is_async_function(fn):  # an async def behind a decorator: refused when it returns
        _check_kind(store, True, fn)


_REFUSABLE = (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)


def _refuse_result(fn: Callable[..., Any], value: Any, want_async: bool) -> None:
    """What the function returned, when a transaction cannot commit it: a generator (its
    body never ran), or in a sync transaction a coroutine (an ``async def`` behind a
    decorator: its writes would never be queued). Closes it and raises TransactionError;
    the attempt is then abandoned with nothing sent."""
    if not isinstance(value, _REFUSABLE):
        return  # what most functions return: no generator, no coroutine
    if ((inspect.isgenerator(value) and value.gi_code.co_name != "<genexpr>")
            or (inspect.isasyncgen(value) and value.ag_code.co_name != "<genexpr>")):
        # a generator expression was built by a body that ran (a lazy view of what it
        # read): returned as is; any other generator comes from a generator function the
        # decoration-time check could not see (behind a wrapper), whose body never ran
        if inspect.isgenerator(value):
            value.close()
        raise _generator_error(fn, "a function that returned a generator")
    if not want_async and inspect.iscoroutine(value):
        value.close()
        raise TransactionError(
            f"{_name(fn)} returned a coroutine: it is an async def (perhaps behind a "
            "decorator) and a sync transaction cannot await it, so its writes would never "
            "be queued; run it on an AsyncStore with await"
        )


def run_transaction(
    store: Store | None,
    fn: Callable[..., R],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    stats: TxStats | None = None,
    checked: bool = False,
) -> Outcome[R]:
    """The retry loop: run ``fn(tx, *args, **kwargs)`` until its EXEC succeeds or the
    policy gives up. Joins an active transaction instead, if there is one. ``checked``:
    the caller already ran :func:`check_function` for this function and store (a
    :class:`TransactionFunction` does once)."""
    kwargs = kwargs or {}
    stats = stats or TxStats()
    active = open_transaction()
    if active is not None:
        stats.add(joined=1)
        return _join(active, store, fn, args, kwargs)
    if store is None:
        raise _unbound(fn)
    if not checked:
        check_function(fn, store)
    attempts = _Attempts(fn, policy, stats)
    while True:
        attempts.begin()
        tx = Transaction(store)
        try:
            tx._open()  # (inside the try: interrupted while it opens, it is closed: 38K K1)
            with attempts:
                value = fn(tx, *args, **kwargs)
                _refuse_result(fn, value, False)
                tx._commit()
                return attempts.done(value, tx.watched)
        finally:
            tx._close()
        time.sleep(attempts.pause(store.resend, tx.watched))


async def _join_async(active: AsyncTransaction, store: AsyncStore | None,
                      fn: Callable[..., Awaitable[R]], args: Sequence[Any],
                      kwargs: Mapping[str, Any]) -> Outcome[R]:
    """Await ``fn`` inside the outer transaction; its writes are dropped if it raises."""
    _check_join(active, store, _name(fn))
    if not isinstance(active, AsyncTransaction):
        raise TransactionError(f"{_name(fn)} is async; the open transaction is not")
    mark = active._core.mark()
    task = asyncio.current_task()
    joins, running = active._join_tasks, active._joins_running
    first = len(joins)
    # a join shares the savepoint stack with other tasks when it runs in one of its own or
    # while another task's join runs (asyncio.gather of joined functions)
    shared = task is not active._task or any(t is not task for t in running)
    joins.append(task)
    running.append(task)
    try:
        value = await _awaited(fn, fn(active, *args, **kwargs))
    except BaseException:
        shared = shared or any(t is not task for t in joins[first + 1 :])
        if shared and active._core.mark() > mark:
            # the writes queued after the savepoint may be another task's: none can be
            # dropped alone, so the attempt commits nothing (docs/transactions.md)
            active._poisoned = TransactionError(
                f"{_name(fn)} raised in a transaction that functions of other tasks joined "
                "too (asyncio.gather); its queued writes cannot be told apart from theirs, "
                "so this transaction commits nothing")
        else:
            active._core.rollback_to(mark)
        raise
    finally:
        running.remove(task)
    return Outcome(value, attempts=0, keys=active.watched, joined=True)


async def _awaited(fn: Callable[..., Any], result: Any) -> Any:
    """The value of an async transaction function's call: refused (TransactionError, the
    attempt abandoned) when it is not awaitable or its value is a generator."""
    if not inspect.isawaitable(result):
        _refuse_result(fn, result, True)
        raise TransactionError(f"{_name(fn)} returned {type(result).__name__}, not an "
                               "awaitable: an async transaction runs an async def")
    value = await result
    _refuse_result(fn, value, True)
    return value


async def run_transaction_async(
    store: AsyncStore | None,
    fn: Callable[..., Awaitable[R]],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    stats: TxStats | None = None,
    checked: bool = False,
) -> Outcome[R]:
    """:func:`run_transaction` for ``async def`` functions on an :class:`AsyncStore`."""
    kwargs = kwargs or {}
    stats = stats or TxStats()
    active = open_transaction()
    if active is not None:
        stats.add(joined=1)
        return await _join_async(active, store, fn, args, kwargs)
    if store is None:
        raise _unbound(fn)
    if not checked:
        check_function(fn, store)
    attempts = _Attempts(fn, policy, stats)
    while True:
        attempts.begin()
        tx = AsyncTransaction(store)
        try:
            tx._open()  # (inside the try: interrupted while it opens, it is closed: 38K K1)
            with attempts:
                value = await _awaited(fn, fn(tx, *args, **kwargs))
                await tx._commit()
                return attempts.done(value, tx.watched)
        finally:
            await tx._close()
        await asyncio.sleep(attempts.pause(store.resend, tx.watched))


def _log_conflict(fn: Callable[..., Any], conflict: int, restarts: int, policy: RetryPolicy,
                  keys: tuple[str, ...], delay: float | None) -> None:
    """``conflict``: the attempt's number in the RetryPolicy's count (conflicts only);
    ``restarts``: attempts run again before it after a restart, named apart."""
    then = "giving up" if delay is None else f"retrying in {delay * 1000:.1f} ms"
    also = f", after {restarts} restarted" if restarts else ""
    log.log(policy.log_level, "transaction %s: WATCH conflict on attempt %d of %d%s "
            "(watched keys %s); %s", _name(fn), conflict, policy.attempts, also, list(keys),
            then)


def _exhausted(fn: Callable[..., Any], conflicts: int, restarts: int, policy: RetryPolicy,
               keys: tuple[str, ...]) -> ConflictError:
    """``conflicts``: the attempts that conflicted (ConflictError.attempts); ``restarts``:
    those run again after a restart, which the message names apart (not conflicts)."""
    why = "" if conflicts >= policy.attempts else f" within its deadline of {policy.deadline} s"
    also = "" if not restarts else (
        f" (and {restarts} more {'was' if restarts == 1 else 'were'} run again after a "
        "restart, nothing of them applied)")
    return ConflictError(
        f"transaction {_name(fn)} conflicted on all {conflicts} attempts{why}{also}: other "
        f"clients kept changing the watched keys {list(keys)}. Allow more attempts in its "
        "RetryPolicy, or move the update into one Lua script (incr_fields) for a hot key",
        attempts=conflicts, keys=keys,
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
    use ``transaction(store, policy=...)(fn).outcome(...)``.

    Redis: as Store.transact"""
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
        self._checked = False  # check_function passed for fn and store (both fixed)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.outcome(*args, **kwargs).value

    def outcome(self, *args: P.args, **kwargs: P.kwargs) -> Outcome[R]:
        """Run it and return the value with how many attempts it took.

        Redis: as Store.transact"""
        if not self._checked and self.store is not None and open_transaction() is None:
            check_function(self.fn, self.store)  # what run_transaction would do first
            self._checked = True
        return run_transaction(self.store, self.fn, args, kwargs, policy=self.policy,
                               stats=self.stats, checked=self._checked)

    def bind(self, store: Store) -> TransactionFunction[P, R]:
        """The same function run on ``store`` (new counters).

        Redis: none (a bound copy)."""
        check_function(self.fn, store)  # as the decorator given that store would
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
        self._checked = False  # as TransactionFunction._checked
        functools.update_wrapper(self, fn)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return (await self.outcome(*args, **kwargs)).value

    async def outcome(self, *args: P.args, **kwargs: P.kwargs) -> Outcome[R]:
        """Run it and return the value with how many attempts it took.

        Redis: as Store.transact"""
        if not self._checked and self.store is not None and open_transaction() is None:
            check_function(self.fn, self.store)
            self._checked = True
        return await run_transaction_async(self.store, self.fn, args, kwargs,
                                           policy=self.policy, stats=self.stats,
                                           checked=self._checked)

    def bind(self, store: AsyncStore) -> AsyncTransactionFunction[P, R]:
        """The same function run on ``store`` (new counters).

        Redis: none (a bound copy)."""
        # as the decorator given that store would: an async def bound to a sync Store is
        # refused here (its call would return a coroutine a sync caller never awaits)
        check_function(self.fn, store)
        return AsyncTransactionFunction(self.fn, store, self.policy)

    def __repr__(self) -> str:
        return f"<async transaction {_name(self.fn)} store={self.store!r} {self.policy!r}>"


_Fn = Callable[Concatenate[Transaction, P], R]
_AFn = Callable[Concatenate[AsyncTransaction, P], Awaitable[R]]


_D = TypeVar("_D", bound="Store | AsyncStore | None")


class TransactionDecorator(Generic[_D]):
    """What ``transaction(store, policy=...)`` returns: applied to a function, it makes a
    :class:`TransactionFunction`, or an :class:`AsyncTransactionFunction` for ``async def``.

    Typed by the store it was given (``_D``): bound to a :class:`~redmodel.Store` it accepts
    only a sync function of a :class:`Transaction`, bound to an
    :class:`~redmodel.AsyncStore` only an ``async def`` of an :class:`AsyncTransaction`,
    unbound (``None``) either."""

    def __init__(self, store: _D, policy: RetryPolicy) -> None:
        self.store, self.policy = store, policy

    @overload
    def __call__(self: TransactionDecorator[AsyncStore], fn: _AFn[P, R], /
                 ) -> AsyncTransactionFunction[P, R]: ...
    @overload
    def __call__(self: TransactionDecorator[Store], fn: _Fn[P, R], /
                 ) -> TransactionFunction[P, R]: ...
    @overload
    def __call__(self: TransactionDecorator[None], fn: _AFn[P, R], /
                 ) -> AsyncTransactionFunction[P, R]: ...
    @overload
    def __call__(self: TransactionDecorator[None], fn: _Fn[P, R], /
                 ) -> TransactionFunction[P, R]: ...
    def __call__(self, fn: Any, /) -> Any:
        store: Any = self.store  # which store kind fits which function: the overloads
        check_function(fn, store)
        if _store_is_async(store) if store is not None else _is_async_function(fn, deep=True):
            return AsyncTransactionFunction(fn, store, self.policy)
        return TransactionFunction(fn, store, self.policy)


@overload
def transaction(fn: _AFn[P, R], /) -> AsyncTransactionFunction[P, R]: ...
@overload
def transaction(fn: _Fn[P, R], /) -> TransactionFunction[P, R]: ...
@overload
def transaction(
    store: Store, /, *, policy: RetryPolicy | None = None
) -> TransactionDecorator[Store]: ...
@overload
def transaction(
    store: AsyncStore, /, *, policy: RetryPolicy | None = None
) -> TransactionDecorator[AsyncStore]: ...
@overload
def transaction(
    store: None = None, /, *, policy: RetryPolicy | None = None
) -> TransactionDecorator[None]: ...
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
        buy("56854717")                     # MULTI, HINCRBY, HINCRBY, EXEC; retried

    On an ``async def`` with an :class:`AsyncStore` it makes the asyncio version (the
    handle is an :class:`AsyncTransaction`; ``await hat = tx.get(...)``; ``await buy(id)``).
    Without a store (``@transaction()`` or bare ``@transaction``) the function must be
    bound with ``.bind(store)`` or called inside another transaction, which it joins.

    Redis: none (decorates; the function sends when called, as Store.transact).
    """
    if callable(store_or_fn):
        return TransactionDecorator(None, policy or DEFAULT_POLICY)(store_or_fn)
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise ValidationError(f"policy must be a redmodel.RetryPolicy or None, got "
                              f"{type(policy).__name__}")
    if store_or_fn is not None and not isinstance(store_or_fn, ShellConfig):
        raise ValidationError(f"transaction takes a redmodel.Store, an AsyncStore, None or "
                              f"the function it decorates, got {type(store_or_fn).__name__}")
    return TransactionDecorator(store_or_fn, policy or DEFAULT_POLICY)
