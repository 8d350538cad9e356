"""JSON: the standard library's json through cattrs' json preconf converter."""

from __future__ import annotations

import json
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

from redmodel.codecs._base import Serializer
from redmodel.codecs._hooks import configure_text_scalars
from redmodel.codecs._strict import configure_strict, refuse_lone_surrogates


class JsonSerializer(Serializer):
    """``json``: compact UTF-8 JSON; bytes as base85, Decimal/UUID/dates as strings."""

    name = "json"

    def make_converter(self) -> cattrs.Converter:
        conv = make_converter()
        configure_text_scalars(conv)
        configure_strict(conv, bytes_as=str, text_keys=True)
        return conv

    def dumps(self, primitive: Any) -> bytes:
        return json.dumps(
            primitive, separators=(",", ":"), ensure_ascii=False, allow_nan=True
        ).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        value = json.loads(data)
        refuse_lone_surrogates(data, value, self.name)  # "\ud800": dumps never writes it
        return value
