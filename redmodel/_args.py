"""Checks of the numeric arguments of public methods (timeouts, ttls, windows, counts,
indices), made before anything is sent: a bad one raises :class:`ValidationError` naming
the argument and the key, never a builtin ``OverflowError``/``ValueError`` from deeper
down (a socket timeout, a thread's wait, a float conversion)."""

from __future__ import annotations

import datetime as dt
import math
import sys
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
    "int_too_long",
    "integer",
    "many",
    "not_negative",
    "page_count",
    "seconds",
    "shown",
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


INT_TEXT_ALWAYS = 10**600
"""Every int of fewer digits converts to text and back at any digit limit of the
interpreter (``sys.set_int_max_str_digits`` takes 0, none, or at least 640)."""

_POWERS: dict[int, int] = {}


def _digits(value: int) -> int:
    """The count of decimal digits of ``value`` (without its sign), without its text."""
    n = abs(value)
    d = max(1, int(math.log10(n)) + 1) if n else 1
    while 10**d <= n:
        d += 1
    while d > 1 and 10 ** (d - 1) > n:
        d -= 1
    return d


def int_too_long(value: int) -> str | None:
    """None when the int ``value`` converts to decimal text (and back) in this
    interpreter; else why not: CPython refuses ints of more digits than
    ``sys.get_int_max_str_digits()`` (4300 by default; a program may lower it) with a bare
    ValueError, so redmodel, which stores an int as its decimal text, refuses them before
    anything is written."""
    if -INT_TEXT_ALWAYS < value < INT_TEXT_ALWAYS:
        return None
    limit = sys.get_int_max_str_digits()
    if not limit:
        return None
    bound = _POWERS.get(limit)
    if bound is None:
        bound = _POWERS[limit] = 10**limit
    if -bound < value < bound:
        return None
    return (f"an int of {_digits(value)} digits: more than this interpreter converts to "
            f"text (sys.get_int_max_str_digits() is {limit})")


def shown(value: Any) -> str:
    """``repr(value)`` for an error message; an int too long for text is described, not
    converted (its repr would raise ValueError), and so is a value holding one (a tuple of
    parts)."""
    if isinstance(value, int) and int_too_long(value) is not None:
        return f"an int of {_digits(value)} digits"
    try:
        return repr(value)
    except ValueError:  # an int too long for text inside it
        return f"a {type(value).__name__} holding an int too long for text"


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
            f"{shown(value)}", key=key, model=model)
    return float(number)


def integer(value: Any, what: str, *, key: str | None = None, least: int = INT64_MIN,
            most: int = INT64_MAX) -> int:
    """``value`` if it is an int (not a bool) from ``least`` to ``most``; else
    :class:`ValidationError` naming ``what`` and ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValidationError(f"{what} must be an int from {least} to {most}, got {shown(value)}",
                              key=key)
    return int(value)


def not_negative(value: Any, what: str, *, most: float = MAX_TTL_SECONDS) -> float:
    """``value`` as seconds if it is a finite number from 0 to ``most`` (a backoff);
    else :class:`ValidationError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= most):
        raise ValidationError(f"{what} must be a number of seconds from 0 to {most:.0e}, "
                              f"got {shown(value)}")
    return float(value)


def page_count(value: Any, what: str = "count", *, model: str | None = None) -> int:
    """``value`` if it is an int (not a bool) from 1 to :data:`MAX_PAGE` (a SCAN page's
    COUNT); else :class:`ValidationError` naming ``what`` and the model."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise ValidationError(f"{what} must be an int from 1 to {MAX_PAGE}, got {shown(value)}",
                              model=model)
    return int(value)


def flag(value: Any, what: str, *, key: str | None = None, none: bool = False) -> bool:
    """``value`` if it is a bool (or, with ``none``, None); else :class:`ValidationError`
    naming ``what`` and ``key`` (a string such as ``"no"`` read from a config file must
    never turn a setting on)."""
    if not isinstance(value, bool) and not (none and value is None):
        also = " or None" if none else ""
        raise ValidationError(f"{what} must be True or False{also}, got {shown(value)}", key=key)
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


def key_names(keys: Iterable[Any], what: str) -> tuple[Any, ...]:
    """The items of ``keys`` (already known to be an iterable: :func:`many`, or a
    ``*keys`` tuple) when each is one key: a ``str`` (with no lone surrogate: no bytes
    stand for it) or ``bytes``. Anything else (a list or a set inside the list, ``None``,
    an int, a dict...) raises :class:`ValidationError` naming ``what``, the item's
    position and its type, before anything is sent (attack 30AX F3). The key itself is
    not shown."""
    out = tuple(keys)
    for at, key in enumerate(out):
        if type(key) is bytes or (isinstance(key, str) and not unsendable(key)):
            continue
        if isinstance(key, str):
            problem = "a str holding a lone surrogate (no UTF-8 bytes stand for it)"
        else:
            problem = type(key).__name__
        raise ValidationError(f"{what}: every key must be a str or bytes; item {at} is "
                              f"{problem}")
    return out


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
