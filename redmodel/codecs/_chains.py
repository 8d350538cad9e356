"""Registers the built-in codec names. Imported lazily by the registry.

Each factory imports its optional dependency only when a chain names it, so a missing
package is a :class:`CodecError` naming the extra, raised when the chain is built.
"""

from __future__ import annotations

from redmodel.codecs._base import register_codec
from redmodel.codecs._compress import Bz2Transform, LzmaTransform, ZlibTransform
from redmodel.codecs._fernet import configured_fernet
from redmodel.codecs._json import JsonSerializer
from redmodel.codecs._msgpack import MsgpackSerializer
from redmodel.codecs._yaml import YamlSerializer

register_codec("json", JsonSerializer)
register_codec("yaml", YamlSerializer)
register_codec("msgpack", MsgpackSerializer)
register_codec("bz2", Bz2Transform)
register_codec("zlib", ZlibTransform)
register_codec("lzma", LzmaTransform)
register_codec("fernet", configured_fernet)
