"""Chains from names: the built-in codec names, :func:`codec` (``codec("msgpack|bz2")``)
and :func:`stored_primitive`, which reads the chain a stored value names.

The registry itself (:func:`~redmodel.codecs.register_codec`) lives in ``_base``; this
module sits above the formats and registers theirs when it is imported. Each factory
imports its optional dependency only when a chain names it, so a missing package is a
:class:`CodecError` naming the extra, raised when the chain is built.
"""

from __future__ import annotations

from typing import Any

from redmodel._errors import CodecError
from redmodel.codecs._base import (
    _CACHE,
    _MAGIC,
    _REG_LOCK,
    _REGISTRY,
    Codec,
    Serializer,
    Transform,
    register_codec,
)
from redmodel.codecs._compress import Bz2Transform, LzmaTransform, ZlibTransform
from redmodel.codecs._fernet import configured_fernet
from redmodel.codecs._json import JsonSerializer
from redmodel.codecs._msgpack import MsgpackSerializer
from redmodel.codecs._yaml import YamlSerializer

__all__ = ["codec", "stored_primitive"]

register_codec("json", JsonSerializer)
register_codec("yaml", YamlSerializer)
register_codec("msgpack", MsgpackSerializer)
register_codec("bz2", Bz2Transform)
register_codec("zlib", ZlibTransform)
register_codec("lzma", LzmaTransform)
register_codec("fernet", configured_fernet)


def codec(spec: str | Codec) -> Codec:
    """The chain for ``spec``: a :class:`Codec`, or a string such as ``"msgpack|bz2|fernet"``.

    The first name must be a serializer, the others transforms. Raises :class:`CodecError`
    for an unknown name or a missing optional dependency.
    """
    if isinstance(spec, Codec):
        return spec
    if not isinstance(spec, str):
        raise CodecError(f"a codec chain is a string such as 'json|bz2', not {type(spec).__name__}")
    key = "|".join(part.strip() for part in spec.split("|"))
    found = _CACHE.get(key)
    if found is not None:
        return found
    names = key.split("|")
    for i, n in enumerate(names):
        if not n:
            raise CodecError(f"codec chain {spec!r} has an empty name at position {i + 1}")
    parts = [_make(n) for n in names]
    serializer, transforms = parts[0], parts[1:]
    if not isinstance(serializer, Serializer):
        raise CodecError(f"codec chain {spec!r} must start with a serializer, not {names[0]!r}")
    for n, t in zip(names[1:], transforms, strict=True):
        if not isinstance(t, Transform):
            raise CodecError(f"{n!r} in codec chain {spec!r} is not a byte transform")
    built = Codec(serializer, tuple(t for t in transforms if isinstance(t, Transform)))
    with _REG_LOCK:
        _CACHE[key] = built
    return built


def _make(name: str) -> Serializer | Transform:
    factory = _REGISTRY.get(name)
    if factory is None:
        known = ", ".join(sorted(_REGISTRY))
        raise CodecError(f"unknown codec {name!r} (known: {known})")
    return factory()


def stored_primitive(raw: bytes) -> Any:
    """What ``upgrade=`` receives for one stored string: the primitive of a value a codec
    chain wrote (its header names the chain), else the text (bytes if not UTF-8).
    Raises DecodeError when a chain's value does not decode (tampered, unknown key)."""
    if len(raw) >= 2 and raw[0] == _MAGIC and len(raw) >= 2 + raw[1]:
        name = raw[2 : 2 + raw[1]]
        if name.isascii() and all(p.decode("ascii") in _REGISTRY for p in name.split(b"|")):
            return codec(name.decode("ascii")).loader()(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
