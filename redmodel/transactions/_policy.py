"""Transaction values with no I/O: :class:`RetryPolicy` (when to retry, how long to wait),
:class:`TxStats` (a function's counters), :class:`Outcome` (a result and its attempts) and
:class:`Pending` (a queued write's reply, filled after EXEC).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import attrs

from redmodel._args import integer, not_negative
from redmodel._errors import (
    TransactionError,
)

if TYPE_CHECKING:

    pass

__all__ = [
    "DEFAULT_POLICY",
    "Outcome",
    "Pending",
    "RetryPolicy",
    "TxStats",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

log = logging.getLogger("redmodel.tx")


# ---- retry policy (pure) ------------------------------------------------------------------


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None or attribute.name != "deadline":  # only the deadline may be None
        not_negative(value, f"RetryPolicy.{attribute.name}")


def _at_least_one(_inst: object, _attribute: attrs.Attribute[Any], value: int) -> None:
    integer(value, "RetryPolicy.attempts", least=1)


def _level(_inst: object, _attribute: attrs.Attribute[Any], value: int) -> None:
    integer(value, "RetryPolicy.log_level", least=0, most=100)  # logging's levels: 0-50


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a transaction retries after a WATCH conflict.

    - ``attempts``: how many times the function may run in total (1 = never retry), an
      attempt run again after a restart (nothing applied: the store's ResendPolicy's to
      count and budget) aside: the ``attempts``-th WATCH conflict gives up.
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
    log_level: int = attrs.field(default=logging.WARNING, validator=_level)

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

    def bump(self, name: str, calls: bool = False) -> None:
        """Add 1 to one counter (and to ``calls`` too if asked): a call's hot path."""
        with self._lock:
            self._counts[name] += 1
            if calls:
                self._counts["calls"] += 1

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

    ``attempts`` is how many times the function ran: the one that committed, those that
    hit a WATCH conflict (``conflicts``) and those run again after a restart, nothing of
    them applied (``restarts``), so ``conflicts == attempts - 1 - restarts``. All are 0
    when the call joined an outer transaction (``joined=True``): the outer one's attempts
    count then.
    """

    value: R
    attempts: int
    keys: tuple[str, ...] = ()
    joined: bool = False
    restarts: int = 0

    @property
    def conflicts(self) -> int:
        return max(0, self.attempts - 1 - self.restarts)


# ---- pending results ----------------------------------------------------------------------

_WAITING, _DONE, _FAILED, _DROPPED = range(4)


class Pending(Generic[T]):
    """The result of a write queued in a transaction; its ``value`` exists after EXEC.

    Reading ``value`` before the transaction commits raises :class:`TransactionError`;
    after EXEC it returns the result (what the same Store method returns), or raises the
    error of that one command (a ``redis.ResponseError``, or e.g. ``NotFoundError`` for
    ``incr`` of a missing object).

    Its repr shows the state and only the type of the value (``value=<str>``), never the
    value: a pop of an encrypting Queue holds a plaintext.
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
        # the value's type only: a pop of an encrypting Queue (or a field read) holds a
        # plaintext, and a Pending gets logged (attack 33A survey)
        state = {_WAITING: "waiting", _DONE: f"value=<{type(self._value).__name__}>",
                 _FAILED: f"error={self._error!r}", _DROPPED: "dropped"}[self._state]
        return f"<Pending {self.what}: {state}>"
