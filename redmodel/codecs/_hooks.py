"""cattrs hooks shared by every serializer: types a format has no native form for."""

from __future__ import annotations

import datetime as dt
import decimal
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import cattrs

from redmodel._models._types import BadValueError, exact

# Types stored as strings by every serializer, so each format round-trips them the same way.
_TEXT_SCALARS = (dt.datetime, dt.date, dt.time, decimal.Decimal, uuid.UUID)


def configure_text_scalars(converter: cattrs.Converter) -> None:
    """Decimal, UUID and time as strings; datetime/date as ISO 8601 strings (offset kept).

    ISO strings keep naive datetimes naive and aware ones at their own UTC offset, which
    neither msgpack's timestamps nor YAML's timestamps do for every value.
    """
    converter.register_unstructure_hook(decimal.Decimal, str)
    converter.register_structure_hook(decimal.Decimal, _text(exact(decimal.Decimal, str)))
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, _text(exact(uuid.UUID, str)))
    converter.register_unstructure_hook(dt.time, dt.time.isoformat)
    converter.register_structure_hook(dt.time, _text(exact(
        lambda v: _with_offset(v, dt.time), dt.time.isoformat)))
    converter.register_unstructure_hook(dt.datetime, dt.datetime.isoformat)
    converter.register_structure_hook(dt.datetime, _text(exact(
        lambda v: _with_offset(v, dt.datetime), dt.datetime.isoformat)))
    converter.register_unstructure_hook(dt.date, dt.date.isoformat)
    converter.register_structure_hook(dt.date, _text(exact(dt.date.fromisoformat,
                                                           dt.date.isoformat)))
    # A preconf converter may pass unions of native types through unchecked (pyyaml does so
    # for datetime/date); an Optional of a text scalar must structure its string instead.
    converter.register_structure_hook_factory(
        _is_optional_text_scalar, _optional_factory(converter)
    )


def _text(parse: Callable[[str], Any]) -> Callable[[Any, Any], Any]:
    """A strict hook: only text is parsed (``Decimal(1.5)`` or a number read as a date is
    a type change, not a value)."""

    def structure(value: Any, _: Any) -> Any:
        if type(value) is not str:
            raise BadValueError("not text")
        return parse(value)

    return structure


_T = TypeVar("_T", dt.datetime, dt.time)


def _with_offset(text: str, tp: type[_T]) -> _T:
    """``tp.fromisoformat``, keeping a UTC offset with microseconds (``+05:30:00.000001``).

    CPython 3.11's ``fromisoformat`` drops the microseconds of such an offset.
    """
    parsed = tp.fromisoformat(text)
    if parsed.tzinfo is None or text[-7:-6] != ".":
        return parsed
    at = max(text.rfind("+"), text.rfind("-"))
    hours, minutes, seconds = text[at + 1 :].split(":")
    offset = dt.timedelta(
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds[:2]),
        microseconds=int(seconds[3:]),
    )
    return parsed.replace(tzinfo=dt.timezone(-offset if text[at] == "-" else offset))


def _is_optional_text_scalar(tp: Any) -> bool:
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return False
    args = typing.get_args(tp)
    rest = [a for a in args if a is not type(None)]
    return len(args) == 2 and len(rest) == 1 and rest[0] in _TEXT_SCALARS


def _optional_factory(converter: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        (inner,) = (a for a in typing.get_args(tp) if a is not type(None))
        hook = converter.get_structure_hook(inner)

        def structure(value: Any, _: Any) -> Any:
            return None if value is None else hook(value, inner)

        return structure

    return factory
