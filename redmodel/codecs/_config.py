"""Codec chains from configuration: a chain string, a mapping, or an environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeAlias

from redmodel._errors import CodecError
from redmodel.codecs._base import Codec
from redmodel.codecs._chains import codec

__all__ = ["CodecConfig", "codec_from_config", "codec_from_env"]

CodecConfig: TypeAlias = str | Codec | Mapping[str, Any]
"""``"msgpack|bz2"``, a :class:`Codec`, or ``{"serializer": "msgpack", "transforms": [...]}``."""

_KEYS = ("serializer", "transforms")


def codec_from_config(config: CodecConfig) -> Codec:
    """The chain a configuration value describes.

    >>> codec_from_config({"serializer": "json", "transforms": ["zlib"]})
    Codec('json|zlib')

    ``transforms`` may be a list of names or one ``"a|b"`` string, and may be left out.
    Raises :class:`CodecError` naming the bad part.
    """
    if isinstance(config, (str, Codec)):
        return codec(config)
    if not isinstance(config, Mapping):
        raise CodecError(
            f"codec config must be a chain string or a mapping, not {type(config).__name__}"
        )
    unknown = [k for k in config if k not in _KEYS]
    if unknown:
        raise CodecError(
            f"unknown codec config key(s) {', '.join(map(repr, unknown))} "
            f"(expected {' and '.join(map(repr, _KEYS))})"
        )
    serializer = config.get("serializer")
    if not isinstance(serializer, str) or not serializer.strip() or "|" in serializer:
        raise CodecError(
            f"codec config 'serializer' must be one name such as 'json', not {serializer!r}"
        )
    transforms = config.get("transforms") or []
    if isinstance(transforms, str):
        transforms = transforms.split("|")
    if not isinstance(transforms, (list, tuple)):
        raise CodecError(
            f"codec config 'transforms' must be a list of names, not {type(transforms).__name__}"
        )
    for i, t in enumerate(transforms):
        if not isinstance(t, str) or not t.strip() or "|" in t:
            raise CodecError(f"codec config 'transforms'[{i}] must be one name, not {t!r}")
    return codec("|".join([serializer, *transforms]))


def codec_from_env(var: str, default: CodecConfig | None = None) -> Codec:
    """The chain named by environment variable ``var`` (e.g. ``"msgpack|bz2|fernet"``).

    Uses ``default`` when the variable is unset or blank; raises :class:`CodecError` when
    there is neither, or when the chain is invalid (the message names the variable).
    """
    value = os.environ.get(var, "").strip()
    if not value:
        if default is None:
            raise CodecError(f"environment variable {var} is not set and no default codec given")
        return codec_from_config(default)
    try:
        return codec(value)
    except CodecError as e:
        raise CodecError(f"environment variable {var}: {e}") from None
