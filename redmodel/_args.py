"""Checks of the numeric arguments of public methods (timeouts, ttls, windows, counts,
indices), made before anything is sent: a bad one raises :class:`ValidationError` naming
the argument and the key, never a builtin ``OverflowError``/``ValueError`` from deeper
down (a socket timeout, a thread's wait, a float conversion)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, TypeVar

from redmodel._errors import ValidationError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_BLOCK_SECONDS",
    "MAX_PAGE",
    "MAX_TTL_SECONDS",
    "MAX_VISIBILITY_SECONDS",
    "flag",
    "integer",
    "many",
    "not_negative",
    "page_count",
    "seconds",
    "unsendable",
]

T = TypeVar("T")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The integers Redis takes as a count, an index or an increment."""

MAX_TTL_SECONDS = 10**11
"""About 3,000 years: Redis refuses an expiry whose time overflows, after a script has
written (so a longer ttl is refused before sending)."""

MAX_PAGE = 2**31 - 1
"""The largest page size (``count=`` of a SCAN-paged method): SCAN's COUNT, HSCAN's in a
script, a Lua number; a page is never near it in practice."""

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


def page_count(value: Any, what: str = "count", *, model: str | None = None) -> int:
    """``value`` if it is an int (not a bool) from 1 to :data:`MAX_PAGE` (a SCAN page's
    COUNT); else :class:`ValidationError` naming ``what`` and the model."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise ValidationError(f"{what} must be an int from 1 to {MAX_PAGE}, got {value!r}",
                              model=model)
    return int(value)


def flag(value: Any, what: str, *, key: str | None = None, none: bool = False) -> bool:
    """``value`` if it is a bool (or, with ``none``, None); else :class:`ValidationError`
    naming ``what`` and ``key`` (a string such as ``"no"`` read from a config file must
    never turn a setting on)."""
    if not isinstance(value, bool) and not (none and value is None):
        also = " or None" if none else ""
        raise ValidationError(f"{what} must be True or False{also}, got {value!r}", key=key)
    return bool(value)


def many(value: T, what: str, of: str, *, model: str | None = None) -> T:
    """``value`` if it can be the iterable of a bulk call (a list, a tuple, a set, a
    generator, ...); a str or bytes (one id, not ids: iterating it would name its
    characters) or a non-iterable raises :class:`ValidationError` naming ``what`` and
    asking for a list ``of`` them ("ids", "objects"). The
    value itself is not shown (an object may hold a secret)."""
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(
            value, Iterable):
        raise ValidationError(f"{what} must be an iterable such as a list (pass a list of "
                              f"{of}), got {type(value).__name__}", model=model)
    return value


def unsendable(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (no UTF-8 bytes stand for it). Names that
    are not ids (a model prefix, a stored field name, a container key part, a consumer
    name, a URL option) are text and refuse it where they are given; an id is bytes, and
    its str form may hold U+DC80..U+DCFF for undecodable bytes (``_models._types.ID_STR``)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
