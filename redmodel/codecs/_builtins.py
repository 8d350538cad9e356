"""Registers the built-in codec names. Imported lazily by the registry."""

from __future__ import annotations

from redmodel.codecs._base import register_codec
from redmodel.codecs._json import JsonSerializer

register_codec("json", JsonSerializer)
