"""Codec layers: one serializer plus byte transforms, composed into a chain.

The public names are re-exported from :mod:`redmodel`; the modules in this package are
private. A new format is one module here and one ``register_codec`` call.
"""

from redmodel.codecs._base import (
    Codec,
    Serializer,
    Transform,
    codec,
    register_codec,
)

__all__ = ["Codec", "Serializer", "Transform", "codec", "register_codec"]
