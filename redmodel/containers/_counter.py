"""A windowed counter: :class:`WindowCounter` counts events per key in fixed time windows
(one hash per window, expiring with it).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Generic, Protocol, TypeVar, overload

from redmodel._args import MAX_TTL_SECONDS, integer, shown
from redmodel._container_registry import forget, guard_plans, record_key, unmark_commands
from redmodel._errors import (
    DecodeError,
    ValidationError,
)
from redmodel._models._keys import escape
from redmodel._plan import Batch, Plan, script
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store
from redmodel.containers._base import InTransaction, S, container_key
from redmodel.transactions._handles import AsyncTransaction, Transaction
from redmodel.transactions._policy import Pending

_COUNT = re.compile(rb"-?[1-9][0-9]{0,18}|0")

__all__ = [
    "WindowCounter",
    "WindowCounterInAsyncTx",
    "WindowCounterInTx",
]


T = TypeVar("T")


# ---- WindowCounter ----------------------------------------------------------------------


_INCR = script("counter_incr")
_LATEST = 2.0**62  # seconds: a window's start stays an int Redis can store an expiry for


@guard_plans
class WindowCounter(Generic[S]):
    """Counts events per subject in fixed time windows (the tutorial's visits per address
    per minute): one string key per subject and window, ``prefix:subject:start+window``
    (the window's start in Unix seconds and its length in seconds), expiring when its
    window ends. The length is in the key so that counters of one prefix with different
    windows (one after another's :meth:`forget`) never share a key, even where their
    windows start at the same second.

    >>> visits = WindowCounter(store, "visits", window=60)   # doctest: +SKIP
    >>> visits.incr(IPv4Address("104.174.118.18"))          # doctest: +SKIP
    1

    ``clock`` (default :func:`time.time`) gives the current time in seconds. Windows are
    aligned to multiples of ``window`` seconds since the epoch, so every client with a
    synchronised clock counts into the same key.
    """

    _WRITES: ClassVar[frozenset[str]] = frozenset({"incr", "reset"})
    _BLOCKING: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, store: S, key_prefix: Any, *, window: float | dt.timedelta = 60,
                 clock: Callable[[], float] = time.time) -> None:
        key = container_key(key_prefix)
        length = window.total_seconds() if isinstance(window, dt.timedelta) else window
        if isinstance(length, bool) or not isinstance(length, (int, float)) or not (
            1 <= length <= MAX_TTL_SECONDS and length == int(length)  # NaN, inf fail here
        ):
            raise ValidationError(f"window must be a whole number of seconds from 1 to "
                                  f"{MAX_TTL_SECONDS:.0e}, got {shown(window)}", key=key)
        if not callable(clock):  # called on each use: a builtin TypeError there otherwise
            raise ValidationError(f"clock must be a callable returning Unix seconds (such "
                                  f"as time.time), got {type(clock).__name__}", key=key)
        self.store = store
        self.key = key
        self.window = int(length)
        self.clock = clock

    def __repr__(self) -> str:
        return f"WindowCounter({self.key!r}, window={self.window})"

    @overload
    def in_tx(self: WindowCounter[Store], tx: Transaction) -> WindowCounterInTx: ...
    @overload
    def in_tx(self: WindowCounter[AsyncStore], tx: AsyncTransaction) -> WindowCounterInAsyncTx: ...
    def in_tx(self, tx: Transaction | AsyncTransaction) -> Any:
        """Run :meth:`incr` and :meth:`reset` (queued) and :meth:`get` (at once, WATCHed)
        through ``tx``.

        Redis: none (see :meth:`Container.in_tx`)."""
        return InTransaction(self, tx)

    def window_start(self, at: float | None = None) -> int:
        """Unix seconds at which the window holding ``at`` (default now) began.

        Redis: none."""
        now = self.clock() if at is None else at
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not (
                -_LATEST <= now <= _LATEST):  # NaN and infinities fail too
            raise ValidationError(f"a time must be a finite number of Unix seconds, got "
                                  f"{shown(now)}" + (" from the clock" if at is None else ""),
                                  key=self.key)
        return int(now // self.window) * self.window

    def key_for(self, subject: Any, at: float | None = None) -> str:
        """The key counting ``subject`` in the window holding ``at`` (default now):
        ``prefix:subject:start+window``. The subject is one key part: its key
        (:func:`container_key`, parts joined by ``:``) escaped once more, so a tuple
        subject's ``:`` is ``%3A`` and a part's own escapes ``%253A``; no two (prefix,
        subject, window) share a key (the prefix is all but the last two parts). The last
        part names the window by its start and its length, so two counters of one prefix
        share a key only if they have the same window.

        Redis: none."""
        part = escape(container_key(subject))  # one part: its own ':' and '%' escaped
        return f"{self.key}:{part}:{self.window_start(at)}+{self.window}"

    def incr_plan(self, subject: Any, amount: int = 1) -> Plan[int]:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValidationError(f"amount must be an int, got {type(amount).__name__}",
                                  key=self.key)
        integer(amount, "amount", key=self.key)
        now = self.clock()
        key = self.key_for(subject, now)
        left_ms = max(1, math.ceil((self.window_start(now) + self.window - now) * 1000))
        # one script, not MULTI: in a MULTI a refused INCRBY (a foreign key) still let
        # PEXPIRE run, and the foreign data was deleted when the window ended
        replies = yield Batch([_INCR.call((key,), (amount, left_ms))], write=True,
                              keys=(key,))
        return int(replies[0])

    @overload
    def incr(self: WindowCounter[Store], subject: Any, amount: int = 1) -> int: ...
    @overload
    def incr(self: WindowCounter[AsyncStore], subject: Any, amount: int = 1
             ) -> Coroutine[object, object, int]: ...
    def incr(self, subject: Any, amount: int = 1) -> Any:
        """INCRBY and PEXPIRE (to the end of the current window) in one script, atomically;
        returns the subject's count in the current window, this event included. A key
        that holds something else (a hash, a string that is not an integer) is refused
        with :class:`~redmodel.ServerError` naming it, left as it was (no expiry set).

        Redis: EVALSHA counter_incr.lua (INCRBY, PEXPIRE; in a transaction: queued in its
        MULTI)."""
        return self.store.run(self.incr_plan(subject, amount))

    def get_plan(self, subject: Any) -> Plan[int]:
        key = self.key_for(subject)
        replies = yield Batch([("GET", key)], keys=(key,))
        raw = replies[0]
        if raw is None:
            return 0
        # what INCRBY reads: ASCII digits, no sign but '-', no spaces, '_' or leading zeros,
        # within 64 bits (Python's int() takes " 12", "+12", "1_2" and other scripts' digits)
        text = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
        if _COUNT.fullmatch(text) is None or not -(2**63) <= int(text) < 2**63:
            raise DecodeError("stored counter is not an integer", key=key)
        return int(text)

    @overload
    def get(self: WindowCounter[Store], subject: Any) -> int: ...
    @overload
    def get(self: WindowCounter[AsyncStore], subject: Any) -> Coroutine[object, object, int]: ...
    def get(self, subject: Any) -> Any:
        """GET: the subject's count in the current window (0 if none yet).

        Redis: GET."""
        return self.store.run(self.get_plan(subject))

    def reset_plan(self, subject: Any) -> Plan[bool]:
        key = self.key_for(subject)
        replies = yield Batch([("DEL", key)], write=True, keys=(key,))
        return bool(replies[0])

    @overload
    def reset(self: WindowCounter[Store], subject: Any) -> bool: ...
    @overload
    def reset(self: WindowCounter[AsyncStore], subject: Any) -> Coroutine[object, object, bool]: ...
    def reset(self, subject: Any) -> Any:
        """DEL: forget the subject's count in the current window; True if it had one.

        Redis: DEL."""
        return self.store.run(self.reset_plan(subject))

    def _forget_plan(self) -> Plan[bool]:
        record = record_key(self.key)
        replies = yield Batch([("DEL", record)], write=True, idempotent=True, keys=(record,))
        unmark = unmark_commands(self.key, counter=True)  # its marks in the model registry, if any
        if unmark:
            yield Batch(unmark, write=True, idempotent=True, keys=[c[1] for c in unmark])
        forget(self)
        return bool(replies[0])

    @overload
    def forget(self: WindowCounter[Store]) -> bool: ...
    @overload
    def forget(self: WindowCounter[AsyncStore]) -> Coroutine[object, object, bool]: ...
    def forget(self) -> Any:
        """DEL the counter's record in the container registry (a tear-down: its window keys
        expire by themselves), so that its prefix may count with another window next; True
        if there was one. A counter of another window never reads the old keys (the
        window's length is in the key); one of the same window is the same counter and
        goes on counting in the current window's keys (:meth:`reset` clears a subject).

        Redis: DEL of the record, and HDEL of its mark in ``<key>:%schema`` (the mark
        that keeps a model out of the counter's prefix)."""
        return self.store.run(self._forget_plan())


class WindowCounterInTx(Protocol):
    """``counter.in_tx(tx)`` for a Transaction ``tx``."""

    def incr(self, subject: Any, amount: int = 1) -> Pending[int]: ...
    def get(self, subject: Any) -> int: ...
    def reset(self, subject: Any) -> Pending[bool]: ...


class WindowCounterInAsyncTx(Protocol):
    """``counter.in_tx(tx)`` for an AsyncTransaction ``tx``."""

    def incr(self, subject: Any, amount: int = 1) -> Pending[int]: ...
    def get(self, subject: Any) -> Coroutine[object, object, int]: ...
    def reset(self, subject: Any) -> Pending[bool]: ...
