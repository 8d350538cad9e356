"""YAML: PyYAML (safe loading only) through cattrs' pyyaml preconf converter."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Set
from typing import Any

import cattrs

from redmodel._errors import DecodeError
from redmodel.codecs._base import Serializer
from redmodel.codecs._deps import missing_extra
from redmodel.codecs._hooks import configure_text_scalars
from redmodel.codecs._strict import configure_strict, refuse_lone_surrogates


class YamlSerializer(Serializer):
    """``yaml``: UTF-8 YAML, loaded with PyYAML's *safe* loader only.

    Uses libyaml's ``CSafeLoader``/``CSafeDumper`` when PyYAML was built with it. Bytes
    are ``!!binary``; Decimal, UUID, dates and times are strings, as in every serializer.
    Raises :class:`CodecError` when PyYAML is not installed (``redmodel-attrs[yaml]``).
    """

    name = "yaml"

    def __init__(self) -> None:
        super().__init__()
        try:
            import yaml  # noqa: PLC0415 - optional dependency
        except ImportError:
            raise missing_extra("yaml", "PyYAML", "yaml") from None
        self._yaml = yaml
        self._loader: Any = _strict_loader(yaml)
        self._dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    def make_converter(self) -> cattrs.Converter:
        from cattrs.preconf.pyyaml import make_converter  # noqa: PLC0415 - imports yaml

        conv = make_converter(unstruct_collection_overrides={Set: list})
        configure_text_scalars(conv)
        configure_strict(conv, bytes_as=bytes, text_keys=False)
        return conv

    def dumps(self, primitive: Any) -> bytes:
        try:
            text: str = self._yaml.dump(
                primitive,
                Dumper=self._dumper,
                allow_unicode=True,
                sort_keys=False,
                width=1 << 30,  # no folding: long strings stay on one line
                explicit_end=True,  # "...": a value cut at a line end is still YAML
            )
        except self._yaml.YAMLError:
            # The codec reports it as a ValidationError; the YAML message holds the value.
            raise TypeError("value has no YAML representation") from None
        return text.encode("utf-8")

    def loads(self, data: bytes) -> Any:
        # A YAML value cut at a line end is another valid document (a shorter list, a
        # dict missing keys): the document end marker written by dumps is what tells a
        # whole value. A "..." line at column 0 can only be that marker (the dumper
        # quotes or indents any string holding one), so no cut can end with it, and a
        # value holds it once, at its end.
        if not data.endswith(b"\n...\n"):
            raise DecodeError(
                "stored yaml value has no document end marker: it was cut short, or it was "
                "written by an earlier redmodel version (re-save it: see CHANGELOG.md)"
            )
        if data.find(b"\n...\n") != len(data) - 5:
            # the marker twice: bytes appended after the value's end (empty documents,
            # comments: PyYAML would read the first document alone and ignore them; fix 30Q)
            raise DecodeError("stored yaml value has bytes after its document end marker "
                              "(corrupt)")
        value = self._yaml.load(data, Loader=self._loader)  # always a SafeLoader
        refuse_lone_surrogates(data, value, self.name)  # the pure-Python loader reads them
        return value


def _strict_loader(yaml: Any) -> Any:
    """The safe loader (libyaml's when built with it) whose ``!!binary`` is validated:
    PyYAML's reads any text, dropping what is not base64 (``!!binary '!!!'`` is b""), so a
    corrupt value would decode to other bytes instead of failing."""
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def binary(loader: Any, node: Any) -> bytes:
        text = loader.construct_scalar(node)
        try:
            return base64.b64decode("".join(text.split()).encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise yaml.constructor.ConstructorError(
                None, None, "!!binary value is not base64", node.start_mark) from None

    loader: Any = type("RedmodelSafeLoader", (base,), {})
    loader.add_constructor("tag:yaml.org,2002:binary", binary)
    return loader
