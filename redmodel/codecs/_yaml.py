"""YAML: PyYAML (safe loading only) through cattrs' pyyaml preconf converter."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

import cattrs

from redmodel.codecs._base import Serializer
from redmodel.codecs._deps import missing_extra
from redmodel.codecs._hooks import configure_text_scalars
from redmodel.codecs._strict import configure_strict


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
        self._loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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
            )
        except self._yaml.YAMLError:
            # The codec reports it as a ValidationError; the YAML message holds the value.
            raise TypeError("value has no YAML representation") from None
        return text.encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return self._yaml.load(data, Loader=self._loader)  # always a SafeLoader
