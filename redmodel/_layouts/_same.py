"""Whether two field values are the same value: what a tracked partial save asks of a
field whose stored bytes differ from what the loaded value encodes to (another writer's
text of an equal value: a set's other member order, HINCRBYFLOAT's ``1`` for ``1.0``,
JSON of other spacing), so that such a field counts as unchanged and is not sent.

Stricter than ``==``, since a value called "the same" is not written: of one type
exactly (``1``, ``1.0`` and ``True`` differ), a float's sign of zero (``-0.0`` is not
``0.0``) and NaN equal to NaN, a Decimal's digits and exponent (``1.10`` is not ``1.1``),
a datetime's or time's offset, tzinfo and fold, a list's, tuple's or dict's order, every
field of an attrs class or dataclass. A type not known here is never the same (the field
is sent, as a changed one is)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any

import attrs

__all__ = ["same_value"]

# compared by ==, which is exact for them once their types are equal
_EXACT = frozenset([str, bytes, int, bool, type(None), uuid.UUID, dt.date, dt.timedelta])


def same_value(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are one value of one type (see the module's text)."""
    t = type(a)
    if t is not type(b):
        return False
    if t is float:
        if math.isnan(a):
            return math.isnan(b)
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    if t in _EXACT:
        return bool(a == b)
    if isinstance(a, enum.Enum):
        return a is b
    if t is decimal.Decimal:
        return bool(a.as_tuple() == b.as_tuple())
    if t is dt.datetime or t is dt.time:
        return (a.replace(tzinfo=None) == b.replace(tzinfo=None) and a.fold == b.fold
                and type(a.tzinfo) is type(b.tzinfo) and a.tzinfo == b.tzinfo
                and a.utcoffset() == b.utcoffset())
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same_value(k, j) and same_value(v, w)
            for (k, v), (j, w) in zip(a.items(), b.items(), strict=True))
    if isinstance(a, (set, frozenset)):
        if len(a) != len(b):
            return False
        members = {m: m for m in b}  # one member of b per == class (a set has no two)
        return all(x in members and same_value(x, members[x]) for x in a)
    if attrs.has(t):
        return all(same_value(getattr(a, f.name), getattr(b, f.name))
                   for f in attrs.fields(t))
    if dataclasses.is_dataclass(a):
        return all(same_value(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a))
    return False
