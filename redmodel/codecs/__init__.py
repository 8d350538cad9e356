"""Codec layers: one serializer plus byte transforms, composed into a chain.

Import them from here (``from redmodel.codecs import JsonSerializer``); the modules in
this package are private. A new format is one module here and one ``register_codec`` call.
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

for _name in __all__:
    if isinstance(globals()[_name], type) or callable(globals()[_name]):
        globals()[_name].__module__ = __name__
del _name
