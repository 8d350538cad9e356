"""Checks of the numeric arguments of public methods (timeouts, ttls, windows, counts,
indices), made before anything is sent: a bad one raises :class:`ValidationError` naming
the argument and the key, never a builtin ``OverflowError``/``ValueError`` from deeper
down (a socket timeout, a thread's wait, a float conversion)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from redmodel._errors import ValidationError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_BLOCK_SECONDS",
    "MAX_TTL_SECONDS",
    "MAX_VISIBILITY_SECONDS",
    "integer",
    "not_negative",
    "seconds",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The integers Redis takes as a count, an index or an increment."""

MAX_TTL_SECONDS = 10**11
"""About 3,000 years: Redis refuses an expiry whose time overflows, after a script has
written (so a longer ttl is refused before sending)."""

MAX_BLOCK_SECONDS = 10**9
"""About 31 years: the longest block (a blocking pop's timeout, a consumer's poll or idle
timeout). Python's sockets refuse a timeout past about 9.2e9 s; ``None`` waits forever."""

MAX_VISIBILITY_SECONDS = 10**12
"""About 31,700 years: a consumer's visibility timeout; its deadline, in server
milliseconds, stays an exact double."""


def seconds(value: Any, what: str, *, most: float, key: str | None = None,
            model: str | None = None, forever: str = "") -> float:
    """``value`` (a number or a ``timedelta``) as seconds, if it is finite, positive and
    at most ``most``; else :class:`ValidationError` naming ``what`` and ``key``.
    ``forever``: how to ask for no limit, said in the message (e.g. "None waits forever")."""
    number = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not (
            0 < number <= most):  # NaN and infinities fail the comparison
        hint = f"; {forever}" if forever else ""
        raise ValidationError(
            f"{what} must be a positive number of seconds up to {most:.0e}{hint}, got "
            f"{value!r}", key=key, model=model)
    return float(number)


def integer(value: Any, what: str, *, key: str | None = None, least: int = INT64_MIN,
            most: int = INT64_MAX) -> int:
    """``value`` if it is an int (not a bool) from ``least`` to ``most``; else
    :class:`ValidationError` naming ``what`` and ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValidationError(f"{what} must be an int from {least} to {most}, got {value!r}",
                              key=key)
    return int(value)


def not_negative(value: Any, what: str, *, most: float = MAX_TTL_SECONDS) -> float:
    """``value`` as seconds if it is a finite number from 0 to ``most`` (a backoff);
    else :class:`ValidationError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= most):
        raise ValidationError(f"{what} must be a number of seconds from 0 to {most:.0e}, "
                              f"got {value!r}")
    return float(value)
