"""The blob layout: the whole object through the model's codec chain into one string key."""

from __future__ import annotations

from typing import Any

import attrs

from redmodel._errors import DecodeError, ValidationError
from redmodel._layouts._hash import CAS_STRING
from redmodel._models._specs import ModelSpec
from redmodel._models._types import BadValueError
from redmodel._plan import Command
from redmodel.codecs import codec as resolve_codec
from redmodel.codecs._base import Codec

__all__ = ["BlobLayout"]


class BlobLayout:
    """SET / GET of one encoded value per object. Built once per model."""

    scan_type = "string"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.codec = spec.codec or resolve_codec("json")
        self.encode = self.codec.encoder(spec.cls)
        self.decoder = self.codec.decoder(spec.cls)
        self.id_primitive = self.codec.serializer.converter.get_unstructure_hook(spec.key.type)
        opts = next(f for f in attrs.fields(spec.cls) if f.name == spec.key.name).metadata
        self.text_id = spec.key.type is str  # stored as the key's text itself
        key_stored = getattr(opts.get("redmodel"), "name", None) or spec.key.name
        self.keyed = self.codec.object_decoder(spec.cls, key_stored)

    def precheck(self, key: str, obj: Any) -> None:
        """Refuse, before anything is written, what :meth:`save` refuses of an object whose
        fields are valid: what its codec cannot encode (a value its serializer refuses, a
        ``str`` id holding U+DC80..U+DCFF, bytes that are not UTF-8, which the blob holds
        inside its encoded value, where a text codec cannot: docs/models.md), with the
        error save raises. save_many's up-front check of a sequence and ``redmodel
        import``'s check call it (through :func:`redmodel._plans._objects.check_whole`):
        each object is encoded, the bytes dropped (one chunk is kept in memory)."""
        self.save(key, obj, None)

    def save(self, key: str, obj: Any, ttl_ms: int | None) -> Command:
        try:
            data = self.encode(obj)
        except ValidationError as e:
            raise ValidationError(str(e), model=self.spec.name, key=key) from None
        if ttl_ms is None:
            return ("SET", key, data, "KEEPTTL")
        return ("SET", key, data, "PX", ttl_ms)

    def delete(self, key: str) -> Command:
        return ("DEL", key)

    def expire(self, key: str, ttl_ms: int | None) -> Command:
        return ("PERSIST", key) if ttl_ms is None else ("PEXPIRE", key, ttl_ms)

    def update(self, key: str, values: Any) -> Command:
        raise ValidationError(
            "partial update needs the hash layout; load, change and save the object "
            "(in a transaction to make it atomic)", model=self.spec.name, key=key,
        )

    def incr(self, key: str, path: str, amount: float) -> tuple[Command, str]:
        raise ValidationError(
            "atomic increments need the hash or flat layout", model=self.spec.name, key=key,
            field=path,
        )

    def cas(self, target: tuple[str, bytes | None], old: bytes, new: bytes) -> Command:
        return CAS_STRING.call([target[0]], [old, new])

    def check_readable(self, key: str, id_text: str, reply: Any) -> None:
        """Raise DecodeError naming the key if this stored object cannot be read as ``get``
        reads it (what a rotation checks before it rewrites a page)."""
        self.decode(key, id_text, reply)

    def keyed_values(self, key: str, reply: Any
                     ) -> list[tuple[tuple[str, bytes | None], bytes, Codec]]:
        """The stored value with its key and the model's chain when that chain holds keys
        (the whole object is its one value): what a key rotation re-encrypts."""
        chain = self.spec.codec
        if reply is None or chain is None or not chain.holds_keys:
            return []
        return [((key, None), reply, chain)]

    def read(self, key: str) -> Command:
        return ("GET", key)

    def decode(self, key: str, id_text: str, reply: Any) -> Any:
        """The object from a GET reply. Its id is the key's, whatever the payload says: a
        copy made with COPY or RENAME is the object at its own key."""
        if reply is None:
            return None
        try:
            return self.keyed(reply, id_text if self.text_id else self.id_primitive(
                self._decode_id(key, id_text)))
        except DecodeError as e:
            raise e.with_context(model=self.spec.name, key=key) from None

    def _decode_id(self, key: str, id_text: str) -> Any:
        assert self.spec.key.decode is not None
        try:
            return self.spec.key.decode(id_text.encode("utf-8", "surrogateescape"))
        except BadValueError as e:
            raise DecodeError(f"id: {e}", model=self.spec.name, key=key,
                              field=self.spec.key.name) from None
