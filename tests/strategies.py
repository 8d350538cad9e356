"""Hypothesis strategies: any value of any supported field type, any model instance."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import typing
import uuid
from typing import Any

import attrs
from hypothesis import strategies as st

# Text that exercises keys and SCAN patterns: delimiters, glob characters, braces, escapes.
TRICKY = st.sampled_from([":", "*", "?", "[", "]", "\\", "{", "}", "%", "|", " ", ""])
text = st.one_of(
    st.text(),
    st.lists(st.one_of(TRICKY, st.text(max_size=3)), max_size=6).map("".join),
)
ids = text.filter(bool)

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
timezones = st.one_of(st.none(), st.just(dt.timezone.utc), offsets)
datetimes = st.datetimes(timezones=timezones)
times = st.times(timezones=timezones)

SCALARS: dict[Any, st.SearchStrategy[Any]] = {
    str: text,
    int: st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.integers(min_value=-(2**200), max_value=2**200),
    ),
    float: st.floats(allow_nan=False),
    bool: st.booleans(),
    bytes: st.binary(),
    decimal.Decimal: st.decimals(allow_nan=False, allow_infinity=False),
    uuid.UUID: st.uuids(),
    dt.datetime: datetimes,
    dt.date: st.dates(),
    dt.time: times,
}


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Any value of type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return st.one_of(*(st.none() if a is type(None) else values(a) for a in args))
    if tp in SCALARS:
        return SCALARS[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and attrs.has(tp):
        return instances(tp)
    if origin is list:
        return st.lists(values(args[0]), max_size=4)
    if origin in (set, frozenset):
        return st.frozensets(values(args[0]), max_size=4).map(origin)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values(args[0]), max_size=4).map(tuple)
        return st.tuples(*(values(a) for a in args))
    if origin is dict:
        return st.dictionaries(values(args[0]), values(args[1]), max_size=4)
    raise NotImplementedError(tp)


def instances(cls: type, **fixed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Any instance of attrs class ``cls``; ``fixed`` overrides strategies per field."""
    attrs.resolve_types(cls)
    kwargs = {
        f.alias or f.name: fixed[f.name] if f.name in fixed else values(f.type)
        for f in attrs.fields(cls)
        if f.init
    }
    return st.builds(cls, **kwargs)
