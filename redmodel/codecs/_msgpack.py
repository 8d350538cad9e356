"""msgpack: the msgpack package through cattrs' msgpack preconf converter."""

from __future__ import annotations

from typing import Any

import cattrs

from redmodel.codecs._base import Serializer
from redmodel.codecs._deps import missing_extra
from redmodel.codecs._hooks import configure_text_scalars
from redmodel.codecs._strict import configure_strict

# msgpack ints stop at 64 bits; larger ones travel as this extension type, big-endian signed.
_BIG_INT_EXT = 1


class MsgpackSerializer(Serializer):
    """``msgpack``: compact binary; bytes are ``bin``, ints of any size round-trip.

    Datetimes are ISO 8601 strings (not msgpack timestamps), so a naive datetime comes back
    naive and an aware one keeps its UTC offset. Raises :class:`CodecError` when msgpack is
    not installed (``redmodel-attrs[msgpack]``).
    """

    name = "msgpack"

    def __init__(self) -> None:
        super().__init__()
        try:
            import msgpack  # noqa: PLC0415 - optional dependency
        except ImportError:
            raise missing_extra("msgpack", "msgpack", "msgpack") from None
        self._msgpack: Any = msgpack

    def make_converter(self) -> cattrs.Converter:
        from cattrs.preconf.msgpack import make_converter  # noqa: PLC0415 - imports msgpack

        conv = make_converter()
        configure_text_scalars(conv)
        configure_strict(conv, bytes_as=bytes, text_keys=False)
        return conv

    def dumps(self, primitive: Any) -> bytes:
        data: bytes = self._msgpack.packb(primitive, use_bin_type=True, default=self._default)
        return data

    def loads(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=self._ext_hook)

    def _default(self, value: Any) -> Any:
        if isinstance(value, int):
            size = (value.bit_length() + 8) // 8  # one spare bit for the sign
            return self._msgpack.ExtType(_BIG_INT_EXT, value.to_bytes(size, "big", signed=True))
        raise TypeError(f"msgpack cannot encode {type(value).__name__}")

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == _BIG_INT_EXT:
            return int.from_bytes(data, "big", signed=True)
        raise ValueError(f"unknown msgpack extension type {code}")
