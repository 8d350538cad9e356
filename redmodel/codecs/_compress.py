"""Compression transforms from the standard library: bz2, zlib, lzma."""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any

from redmodel._errors import DecodeError, ValidationError
from redmodel.codecs._base import Transform

_CORRUPT = (OSError, ValueError, EOFError, zlib.error, lzma.LZMAError)


def _level(value: Any, what: str, allowed: range | frozenset[int]) -> int:
    """``value`` if it is an int (not a bool) the compressor takes; else ValidationError
    naming ``what`` (zlib/bz2/lzma would raise a bare ValueError at the first encode)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        shown = (f"from {allowed.start} to {allowed.stop - 1}" if isinstance(allowed, range)
                 else "0 to 9, optionally | lzma.PRESET_EXTREME")
        raise ValidationError(f"{what} must be an int {shown}, got {value!r}")
    return value


_PRESETS = frozenset([*range(10), *(p | lzma.PRESET_EXTREME for p in range(10))])


def _corrupt(name: str) -> DecodeError:
    return DecodeError(f"{name} layer: compressed data is corrupt or truncated")


class Bz2Transform(Transform):
    """``bz2``: bzip2 compression (CRC-checked); best ratio of the three on text, slowest."""

    name = "bz2"

    def __init__(self, level: int = 9) -> None:
        self.level = _level(level, "Bz2Transform level", range(1, 10))

    def __repr__(self) -> str:
        return f"Bz2Transform(level={self.level})"

    def encode(self, data: bytes) -> bytes:
        return bz2.compress(data, self.level)

    def decode(self, data: bytes) -> bytes:
        if not data:  # bz2 reads an empty input as an empty stream
            raise _corrupt(self.name)
        # one stream, as encode writes: bz2.decompress would ignore bytes after it that
        # are no stream (and join a second stream's), so a corrupt value could pass
        d = bz2.BZ2Decompressor()
        try:
            out = d.decompress(data)
        except _CORRUPT:
            raise _corrupt(self.name) from None
        if not d.eof or d.unused_data:  # truncated, or bytes after the stream
            raise _corrupt(self.name)
        return out


class ZlibTransform(Transform):
    """``zlib``: deflate with the zlib header and Adler-32 check; fast, small overhead."""

    name = "zlib"

    def __init__(self, level: int = 6) -> None:
        self.level = _level(level, "ZlibTransform level", range(-1, 10))

    def __repr__(self) -> str:
        return f"ZlibTransform(level={self.level})"

    def encode(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decode(self, data: bytes) -> bytes:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data)
        except _CORRUPT:
            raise _corrupt(self.name) from None
        if not d.eof or d.unused_data:  # truncated, or bytes after the stream
            raise _corrupt(self.name)
        return out


class LzmaTransform(Transform):
    """``lzma``: xz container with a CRC-64 check; good ratio on large values."""

    name = "lzma"

    def __init__(self, preset: int = 6) -> None:
        self.preset = _level(preset, "LzmaTransform preset", _PRESETS)

    def __repr__(self) -> str:
        return f"LzmaTransform(preset={self.preset})"

    def encode(self, data: bytes) -> bytes:
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=self.preset)

    def decode(self, data: bytes) -> bytes:
        if not data:
            raise _corrupt(self.name)
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)  # one stream, as encode writes
        try:
            out = d.decompress(data)
        except _CORRUPT:
            raise _corrupt(self.name) from None
        if not d.eof or d.unused_data:  # truncated, or bytes after the stream
            raise _corrupt(self.name)
        return out
