"""Codec layers: one serializer plus byte transforms, composed into a chain.

The public names are re-exported from :mod:`redmodel`; the modules in this package are
private. A new format is one module here and one ``register_codec`` call.
"""

from redmodel.codecs._base import (
    Codec,
    Serializer,
    Transform,
    register_codec,
)
from redmodel.codecs._chains import codec
from redmodel.codecs._compress import Bz2Transform, LzmaTransform, ZlibTransform
from redmodel.codecs._config import CodecConfig, codec_from_config, codec_from_env
from redmodel.codecs._fernet import FernetTransform, configure_fernet
from redmodel.codecs._json import JsonSerializer
from redmodel.codecs._msgpack import MsgpackSerializer
from redmodel.codecs._yaml import YamlSerializer

__all__ = [
    "Bz2Transform",
    "Codec",
    "CodecConfig",
    "FernetTransform",
    "JsonSerializer",
    "LzmaTransform",
    "MsgpackSerializer",
    "Serializer",
    "Transform",
    "YamlSerializer",
    "ZlibTransform",
    "codec",
    "codec_from_config",
    "codec_from_env",
    "configure_fernet",
    "register_codec",
]
