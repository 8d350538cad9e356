"""What a model declares, read from its spec: fields, codecs, indexes, encrypted parts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from redmodel._models._specs import FieldSpec, ModelSpec, spec_of
from redmodel._models._types import optional_inner
from redmodel.codecs import Codec, codec

__all__ = ["describe", "encrypted_paths", "holds_keys", "leaves", "type_name", "warnings"]


def type_name(tp: Any) -> str:
    """``int``, ``list[str]``, ``Address | None``: a type as its declaration reads."""
    if isinstance(tp, type) and not getattr(tp, "__args__", None):
        return tp.__qualname__
    return str(tp).replace("typing.", "")


def leaves(fields: tuple[FieldSpec, ...], path: str = "") -> Iterator[tuple[str, FieldSpec]]:
    """(dotted attribute path, spec) of every stored field, nested structs walked."""
    for f in fields:
        if f.kind == "struct":
            yield from leaves(f.children, f"{path}{f.name}.")
        else:
            yield f"{path}{f.name}", f


def _field_chains(cls: type, seen: set[type]) -> Iterator[Codec]:
    """Chains named by ``field(codec=...)`` anywhere in ``cls`` (as rotate_keys finds them)."""
    seen.add(cls)
    for f in attrs.fields(cls):
        chain = getattr(f.metadata.get("redmodel"), "codec", None)
        if chain is not None:
            yield codec(chain)
        inner, _ = optional_inner(f.type)
        if isinstance(inner, type) and attrs.has(inner) and inner not in seen:
            yield from _field_chains(inner, seen)


def holds_keys(spec: ModelSpec) -> bool:
    """Whether some stored value of the model is encrypted (a chain with keys)."""
    if spec.codec is not None and spec.codec.holds_keys:
        return True
    if spec.layout == "blob":  # the whole value goes through the model's chain alone
        return False
    return any(c.holds_keys for c in _field_chains(spec.cls, set()))


def warnings(spec: ModelSpec) -> list[str]:
    """What the declaration promises that the stored data does not keep."""
    if spec.layout != "blob":
        return []
    chain = spec.codec.name if spec.codec is not None else "json"
    return [f"field {path} declares codec {f.codec.name!r}, but the blob layout stores the "
            f"whole object through the model's codec {chain!r} alone"
            for path, f in leaves(spec.fields)
            if f.kind == "encoded" and f.codec is not None and _declared(spec, path)]


def _declared(spec: ModelSpec, path: str) -> bool:
    """Whether the field at ``path`` names a codec itself (not the model's default)."""
    cls: Any = spec.cls
    found: Any = None
    for part in path.split("."):
        found = attrs.fields_dict(cls)[part]
        cls = optional_inner(found.type)[0]
    return getattr(found.metadata.get("redmodel"), "codec", None) is not None


def encrypted_paths(spec: ModelSpec) -> list[str]:
    """The dotted paths of the hash/flat fields stored through a chain with keys;
    ``["$"]`` for a blob whose whole value is."""
    if spec.layout == "blob":
        return ["$"] if holds_keys(spec) else []
    return [p for p, f in leaves(spec.fields)
            if f.kind == "encoded" and f.codec is not None and f.codec.holds_keys]


def describe(cls: type) -> dict[str, Any]:
    """The declaration of a model, as plain data (what ``inspect`` prints)."""
    spec = spec_of(cls)
    per_field = spec.layout != "blob"  # a blob is one value, through the model's chain
    fields = [{"name": path, "stored": _stored(spec, path), "type": type_name(f.type),
               "codec": f.codec.name if per_field and f.kind == "encoded" and f.codec
               else None,
               "encrypted": bool(per_field and f.kind == "encoded" and f.codec
                                 and f.codec.holds_keys)}
              for path, f in leaves(spec.fields)]
    indexes = []
    uniques: list[list[str]] = []
    if spec.indexes is not None:
        for name, ix in spec.indexes.fields.items():
            kinds = [k for k, on in (("contains" if ix.many else "eq", ix.eq),
                                     ("range", ix.range)) if on]
            indexes.append({"field": name, "kinds": kinds})
        uniques = [list(u.fields) for u in spec.indexes.uniques]
    hash_tag = spec.hash_tag if isinstance(spec.hash_tag, bool) else "function"
    return {
        "name": spec.name,
        "prefix": spec.prefix,
        "key_example": spec.object_prefix(None if spec.buckets is None else "B") + "<id>",
        "id_field": spec.key.name,
        "layout": spec.layout,
        "codec": spec.codec.name if spec.codec is not None else None,
        "ttl": spec.ttl,
        "buckets": spec.buckets,
        "hash_tag": hash_tag,
        "fields": fields,
        "indexes": indexes,
        "unique": uniques,
        "encrypted": holds_keys(spec),
        "warnings": warnings(spec),
    }


def _stored(spec: ModelSpec, path: str) -> str:
    chain = spec.path(path)
    return spec.delimiter.join(f.stored for f in chain)
