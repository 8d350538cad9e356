"""JSON: the standard library's json through cattrs' json preconf converter."""

from __future__ import annotations

import json
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

from redmodel._errors import DecodeError
from redmodel.codecs._base import Serializer
from redmodel.codecs._hooks import configure_text_scalars
from redmodel.codecs._strict import configure_strict, refuse_lone_surrogates

_DECODER = json.JSONDecoder()  # strict: no control characters inside strings, as json.loads


def _is_number(primitive: Any) -> bool:
    return isinstance(primitive, (int, float)) and not isinstance(primitive, bool)


class JsonSerializer(Serializer):
    """``json``: compact UTF-8 JSON; bytes as base85, Decimal/UUID/dates as strings.

    A top-level number ends with a newline (``12345\\n``), which marks its end: an object,
    array, string or literal ends with its own last character, a number does not (``12345``
    cut short is ``1234``). ``loads`` reads exactly what ``dumps`` writes: a number without
    its newline, or any byte after a value's end, is a :class:`DecodeError`.
    """

    name = "json"

    def make_converter(self) -> cattrs.Converter:
        conv = make_converter()
        configure_text_scalars(conv)
        configure_strict(conv, bytes_as=str, text_keys=True)
        return conv

    def dumps(self, primitive: Any) -> bytes:
        data = json.dumps(
            primitive, separators=(",", ":"), ensure_ascii=False, allow_nan=True
        ).encode("utf-8")
        return data + b"\n" if _is_number(primitive) else data

    def loads(self, data: bytes) -> Any:
        # raw_decode, unlike json.loads, skips no whitespace around the value, so the end it
        # answers is where the value's own text ends; json.loads read a number cut short
        # (or with digits appended) as another number (fix 30Q).
        text = data.decode("utf-8")
        value, end = _DECODER.raw_decode(text)
        if _is_number(value):
            if text[end:] != "\n":
                raise DecodeError(
                    "stored json number does not end with its newline: it was cut short or "
                    "has bytes appended, or it was written by an earlier redmodel version "
                    "(re-save it: see CHANGELOG.md)"
                )
        elif end != len(text):
            raise DecodeError("stored json value has bytes after its end (corrupt)")
        refuse_lone_surrogates(data, value, self.name)  # "\ud800": dumps never writes it
        return value
