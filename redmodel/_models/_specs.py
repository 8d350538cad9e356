"""The compiled form of a model: :class:`ModelSpec` (with its :class:`FieldSpec` s), what
every layer below the declaration reads, and :func:`spec_of`, which finds it.

A spec is built once, when :func:`redmodel.model` reads the declaration
(:mod:`redmodel._models._schema`), and is immutable afterwards. It knows the model's key
format (prefix, delimiter, hash tags, buckets) and validates objects before a write.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from redmodel._errors import ModelDefinitionError, ValidationError
from redmodel._indexes._specs import IndexSpec, bucket_of
from redmodel._models._compiled import checker, key_text
from redmodel._models._keys import escape, snake_case, unescape
from redmodel._models._types import Checker, Decoder, Encoder, located
from redmodel.codecs import Codec

__all__ = ["FieldSpec", "ModelSpec", "base_spec", "model_class", "model_spec", "spec_of"]

_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


@attrs.frozen
class FieldSpec:
    """One attribute of a model, compiled."""

    name: str  # attribute name
    init_name: str  # keyword for the class constructor (attrs alias)
    stored: str  # name in Redis (escaped part of a hash field name / key)
    type: Any
    optional: bool
    has_default: bool
    kind: str  # "scalar" | "struct" | "encoded"
    check: Checker
    encode: Encoder | None = None  # scalar and encoded kinds
    decode: Decoder | None = None
    codec: Codec | None = None  # encoded kind
    cls: type | None = None  # struct kind
    children: tuple[FieldSpec, ...] = ()  # struct kind
    numeric: str | None = None  # "int" | "float" for HINCRBY / HINCRBYFLOAT
    old_stored: tuple[str, ...] = ()  # earlier stored names, escaped (old_names=)
    upgrade: Callable[[Any], Any] | None = None  # upgrade=: a value of an older type
    default: Any = attrs.field(default=None, eq=False)  # with has_default, the attrs
    # default (a value or an attrs.Factory): what a read gives a field stored nowhere


def increment_kind(chain: tuple[FieldSpec, ...]) -> str | None:
    """What ``incr``/``incr_fields`` add to the field at the end of ``chain`` (a
    :meth:`ModelSpec.path`): ``"int"`` (HINCRBY, an int amount) or ``"float"`` (HINCRBYFLOAT,
    an int or float amount); None when it cannot be incremented. The one rule, which
    redmodel.mypy mirrors at type-check time (its ``_incr_refusal``, docs/store.md "incr"):

    1. the path names fields of the model (never its key field: the id is in the key);
    2. every part before the last is a nested attrs class stored field by field: not
       Optional, no ``codec=`` (else the object is stored whole, as one encoded value);
    3. the last part is declared ``int`` or ``float`` (``| None`` allowed), no ``codec=``
       (a codec stores its own bytes, not a number Redis can add to; bool, enums and
       other types are not numbers here);
    4. an int field takes an int amount (not a float, not a bool)."""
    leaf = chain[-1]
    if leaf.numeric is None or any(f.kind == "encoded" for f in chain):
        return None
    return leaf.numeric


@attrs.frozen
class ModelSpec:
    """A model, compiled once at declaration."""

    cls: type
    name: str
    prefix: str
    delimiter: str
    layout: str
    ttl: float | None
    codec: Codec | None  # model codec: blob layout, and default for encoded fields
    key: FieldSpec
    fields: tuple[FieldSpec, ...]  # every stored field but the key
    by_name: dict[str, FieldSpec]
    hash_tag: bool | Callable[[Any], str] = False
    buckets: int | None = None
    indexes: IndexSpec | None = None
    track_changes: bool = False
    # The @model options given explicitly, inherited by a decorated subclass.
    options: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    # Generated code of this model (redmodel._models._compiled), built on first use.
    compiled: dict[Any, Any] = attrs.field(factory=dict, eq=False, repr=False, init=False)

    @property
    def claims(self) -> bool:
        """Unique values are claimed in their own buckets before a write (a model with
        unique constraints spread over several buckets); see _indexes._specs.CLAIM."""
        return bool(self.indexes and self.indexes.uniques and (self.buckets or 1) > 1)

    def claim_key(self, name: str, value_text: str) -> str:
        """The hash holding the claims of unique constraint ``name`` for this value."""
        if not self.claims:  # with the objects: in the one slot there is
            return f"{self.index_root(None if self.buckets is None else '0')}uq" \
                   f"{self.delimiter}{name}"
        tag = str(bucket_of(value_text, self.buckets or 1))
        return f"{self.index_root(tag)}uq{self.delimiter}{name}"

    def tag_of(self, text: str) -> str | None:
        """The hash tag of the object with this id text, or None for plain keys."""
        if self.buckets is not None:
            return str(bucket_of(text, self.buckets))
        return None

    def object_prefix(self, tag: str | None) -> str:
        """What precedes the escaped id in object keys of this tag: ``hat:`` / ``hat:{7}:``."""
        d = self.delimiter
        return f"{self.prefix}{d}" if tag is None else f"{self.prefix}{d}{{{tag}}}{d}"

    def index_root(self, tag: str | None) -> str:
        """The index key root of a bucket: ``hat:%idx:`` / ``hat:{7}:%idx:``."""
        return f"{self.object_prefix(tag)}%idx{self.delimiter}"

    def tags(self) -> list[str | None]:
        """Every bucket's tag (one None on a single server without buckets)."""
        return [None] if self.buckets is None else [str(b) for b in range(self.buckets)]

    def id_text(self, id_value: Any) -> str:
        """The id as text (the str form of its bytes: UTF-8 with ``surrogateescape``, so
        any bytes of a ``bytes`` id have one); raises ValidationError for an empty or
        mistyped id."""
        if (err := self.key.check(id_value)) is not None:
            raise ValidationError(f"bad id of a key {self.prefix}{self.delimiter}...: {err}",
                                  model=self.name, field=self.key.name)
        assert self.key.encode is not None
        text = self.key.encode(id_value).decode("utf-8", "surrogateescape")
        if not text:
            raise ValidationError("id is empty", model=self.name, field=self.key.name)
        return text

    def key_for(self, id_value: Any) -> str:
        """The Redis key of the object with this id: ``hat:56854717``; with ``hash_tag=True``
        ``hat:{56854717}``; with a tag function ``order:{acme}:123``."""
        return self.key_text(id_value)[0]

    def key_text(self, id_value: Any) -> tuple[str, str]:
        """(the key, the id text) of this id (the model's generated key builder)."""
        return self.key_builder()(id_value)

    def key_builder(self) -> Callable[[Any], tuple[str, str]]:
        """The generated function behind :meth:`key_text` (for a loop over many ids)."""
        found = self.compiled.get("key")
        if found is None:
            found = self.compiled["key"] = key_text(self, self.key_text_generic)
        return found

    def checker(self) -> Callable[[Any], None]:
        """The generated function behind :meth:`check` (for a loop over many objects)."""
        found = self.compiled.get("check")
        if found is None:
            found = self.compiled["check"] = checker(self, self.check_generic)
        return found

    def key_text_generic(self, id_value: Any) -> tuple[str, str]:
        """What the generated key builder refers to for the ids it does not build inline."""
        text = self.id_text(id_value)
        return self.key_of_text(text, id_value), text

    def key_of_text(self, text: str, id_value: Any = None) -> str:
        d = self.delimiter
        part = escape(text, d)
        if self.buckets is not None:
            return self.object_prefix(self.tag_of(text)) + part
        if self.hash_tag is True:
            return f"{self.prefix}{d}{{{part}}}"
        if self.hash_tag:
            tag = self.hash_tag(id_value if id_value is not None else text)
            if not isinstance(tag, str) or not tag:
                raise ValidationError("hash_tag must return a non-empty str", model=self.name)
            return f"{self.prefix}{d}{{{escape(tag, d)}}}{d}{part}"
        return f"{self.prefix}{d}{part}"

    def id_of_key(self, key: str) -> str | None:
        """The id text of one of this model's object keys, or None if ``key`` is not one
        (a leaf of a flat object, an index, another model's key under the same prefix)."""
        d = self.delimiter
        head = len(self.prefix) + len(d)
        rest = key[head:]
        if self.hash_tag or self.buckets is not None:
            if not rest.startswith("{") or "}" not in rest:
                return None
            close = rest.index("}")
            if self.hash_tag is True and self.buckets is None:
                part = rest[1:close] if close == len(rest) - 1 else None
            else:
                tail = rest[close + 1 :]
                part = tail[len(d):] if tail.startswith(d) else None
        else:
            part = rest
        if part is None or d in part or "{" in part or "}" in part:
            return None
        if part.startswith("%") and not _HEX2.match(part, 1):
            return None  # redmodel's own keys (%schema, %idx): an escaped id has %XX
        text = unescape(part)
        # only a part escape() makes: a foreign one ('%80', 'a%3ab', '50%') names an id
        # whose key is another key, and reading it would read that other key
        return text if escape(text, d) == part else None

    def check(self, obj: Any) -> None:
        """Validate every field of ``obj`` before anything is written (the model's
        generated validator; :meth:`check_generic` raises the error of an invalid one)."""
        self.checker()(obj)

    def check_generic(self, obj: Any) -> None:
        """The field-by-field walk the generated validator refers to for an invalid
        object: raises ValidationError naming the model and the first bad field."""
        if not isinstance(obj, self.cls):
            raise ValidationError(
                f"expected a {self.name}, got {type(obj).__name__}", model=self.name
            )
        for f in self.fields:
            if (err := f.check(getattr(obj, f.name))) is not None:
                key = None
                if f is not self.key:  # the key the object would be saved at, if it has one
                    try:
                        key = self.key_for(getattr(obj, self.key.name))
                    except Exception:  # its id is bad too: no key to name
                        key = None
                raise ValidationError(located(err, f"{self.name}.{f.name}"),
                                      model=self.name, key=key, field=f.name)

    def path(self, dotted: str) -> tuple[FieldSpec, ...]:
        """``"address.zip"`` -> the chain of field specs down to that leaf; a name that is
        not a str (an int, a list) raises ValidationError, as an unknown one does."""
        if not isinstance(dotted, str):
            raise ValidationError(f"a field is named by a str (dotted for a nested one), "
                                  f"got {dotted!r}", model=self.name)
        chain: list[FieldSpec] = []
        fields = self.by_name
        for part in dotted.split("."):
            f = fields.get(part)
            if f is None:
                raise ValidationError(f"unknown field {dotted!r}", model=self.name)
            chain.append(f)
            fields = {c.name: c for c in f.children}
        return tuple(chain)


def spec_of(cls_or_obj: Any) -> ModelSpec:
    """The spec of a model class or instance; raises :class:`ModelDefinitionError` (a
    RedmodelError and a TypeError) naming the class for anything else."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    spec = cls.__dict__.get("__redmodel__")
    if not isinstance(spec, ModelSpec):
        base = base_spec(cls)
        if base is not None:
            raise ModelDefinitionError(
                f"{cls.__module__}.{cls.__qualname__} is a subclass of the model "
                f"{base.name} but not a model itself: decorate it with @redmodel.model "
                f"(it inherits {base.name}'s options, and its keys get their own prefix, "
                f"{snake_case(cls.__name__)!r} unless given) or store {base.name} objects"
            )
        raise ModelDefinitionError(
            f"{cls.__module__}.{cls.__qualname__} is not a redmodel model "
            "(decorate the attrs class with @redmodel.model)"
        )
    return spec


def model_class(model: Any) -> type:
    """``model`` if it is a class (the model argument of a public method: ``store.get(Hat,
    id)``, ``tx.update(Hat, id, ...)``, ``rotate(Hat)``), checked before anything reads its
    ``__name__`` or hashes it; else :class:`ModelDefinitionError` naming only its type (an
    object's repr may show a secret field). Whether the class is a model, :func:`spec_of`
    says (:func:`model_spec` does both)."""
    if isinstance(model, type):
        return model
    raise ModelDefinitionError(_not_a_model_class(model))


def model_spec(model: Any) -> ModelSpec:
    """The spec of a model argument: :func:`model_class`, then :func:`spec_of`; a model
    instance given for its class is refused too (ModelDefinitionError)."""
    return spec_of(model_class(model))


def _not_a_model_class(model: Any) -> str:
    kind = type(model)
    name = (kind.__qualname__ if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}")
    if isinstance(kind.__dict__.get("__redmodel__"), ModelSpec):
        return (f"expected a model class, got an instance of the model {name}: pass the "
                f"class ({kind.__qualname__}), not an object")
    shown = "None" if model is None else f"a {name} object"
    return (f"expected a model class (an attrs class decorated with @redmodel.model), "
            f"got {shown}")


def base_spec(cls: type) -> ModelSpec | None:
    """The spec of the nearest model class ``cls`` derives from."""
    for base in cls.__mro__[1:]:
        found = base.__dict__.get("__redmodel__")
        if isinstance(found, ModelSpec):
            return found
    return None
