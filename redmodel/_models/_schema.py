"""Reading a model declaration once into an immutable spec.

A model is a plain attrs class with a ``__redmodel__`` spec attached by :func:`model`.
Field options live in attrs field metadata under the ``"redmodel"`` key.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, overload

import attrs

from redmodel._args import MAX_TTL_SECONDS, unsendable
from redmodel._errors import ModelDefinitionError
from redmodel._indexes._specs import compile_indexes
from redmodel._models._hidden import (
    check_encryption_applies,
    check_not_held,
    hide_encrypted,
    note_held,
)
from redmodel._models._keys import escape, new_id, snake_case
from redmodel._models._specs import FieldSpec, ModelSpec, base_spec, spec_of
from redmodel._models._types import (
    _SCALARS,
    ID_STR,
    NUMERIC,
    is_model_class,
    make_checker,
    object_checker,
    optional_inner,
    scalar,
)
from redmodel.codecs import Codec
from redmodel.codecs import codec as resolve_codec

__all__ = ["FieldSpec", "ModelSpec", "field", "key_field", "model", "spec_of"]

T = TypeVar("T")
_META = "redmodel"
_UNSET: Any = object()  # an @model option not given (a subclass inherits its base's)
LAYOUTS = ("hash", "flat", "blob")


@attrs.frozen
class FieldOptions:
    """What ``redmodel.field(...)`` records in attrs metadata."""

    key: bool = False
    name: str | None = None
    codec: str | Codec | None = None
    index: bool | str = False
    unique: bool = False
    old_names: tuple[str, ...] = ()
    upgrade: Callable[[Any], Any] | None = None


# ``default=None`` is typed as the value it is, None (an error on an ``int`` or a
# ``list[int]`` field, right on an ``int | None`` one), not as the Any of a field without
# a default: its overload comes first (with ``default: T`` alone, a generic field's type
# as context makes T fail and the call fall through to that Any).
@overload
def field(
    *,
    key: bool = False,
    name: str | None = None,
    codec: str | Codec | None = None,
    index: bool | str = False,
    unique: bool = False,
    old_names: Sequence[str] = (),
    upgrade: Callable[[Any], Any] | None = None,
    default: None,
    factory: None = None,
    **kwargs: Any,
) -> None: ...
@overload
def field(
    *,
    key: bool = False,
    name: str | None = None,
    codec: str | Codec | None = None,
    index: bool | str = False,
    unique: bool = False,
    old_names: Sequence[str] = (),
    upgrade: Callable[[Any], Any] | None = None,
    default: T,
    factory: None = None,
    **kwargs: Any,
) -> T: ...
@overload
def field(
    *,
    key: bool = False,
    name: str | None = None,
    codec: str | Codec | None = None,
    index: bool | str = False,
    unique: bool = False,
    old_names: Sequence[str] = (),
    upgrade: Callable[[Any], Any] | None = None,
    default: None = None,
    factory: None = None,
    **kwargs: Any,
) -> Any: ...
@overload
def field(
    *,
    key: bool = False,
    name: str | None = None,
    codec: str | Codec | None = None,
    index: bool | str = False,
    unique: bool = False,
    old_names: Sequence[str] = (),
    upgrade: Callable[[Any], Any] | None = None,
    default: None = None,
    factory: Callable[[], T],
    **kwargs: Any,
) -> T: ...
def field(
    *,
    key: bool = False,
    name: str | None = None,
    codec: str | Codec | None = None,
    index: bool | str = False,
    unique: bool = False,
    old_names: Sequence[str] = (),
    upgrade: Callable[[Any], Any] | None = None,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """An attrs field with redmodel options; other keyword arguments go to ``attrs.field``.

    - ``key=True``: this field is the object's id (its value goes in the Redis key).
    - ``name="qty"``: the name stored in Redis, if not the attribute name.
    - ``codec="json|fernet"``: store this field through a codec chain instead of as a
      plain Redis string (see docs/codecs.md).
    - ``index=True``: an equality index (on a list field: "contains");
      ``index="range"``: a range and sort index (see docs/queries.md).
    - ``unique=True``: no two objects may hold the same value.
    - ``old_names=("qty",)``: names this field was stored under before; a value stored
      under one is read when the current name holds none, and moved on the next save
      (docs/migrations.md, "Schema evolution").
    - ``upgrade=fn``: the field's type changed; a stored value that does not decode
      strictly as the declared type is passed to ``fn`` (as text for a plain Redis
      string, as the serializer's primitive for an encoded value) and ``fn`` returns the
      value in the new type. Without it such a value is a DecodeError.

    For mypy to know which fields are required, enable the plugin ``redmodel.mypy``.
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    if isinstance(old_names, str):
        old_names = (old_names,)
    if upgrade is not None and not callable(upgrade):
        raise ModelDefinitionError(f"upgrade must be a function, not {type(upgrade).__name__}")
    metadata[_META] = FieldOptions(key=key, name=name, codec=codec, index=index, unique=unique,
                                   old_names=tuple(old_names), upgrade=upgrade)
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata, **kwargs)
    return attrs.field(default=default, metadata=metadata, **kwargs)


@overload
def key_field(*, generated: Literal[True] = True, **kwargs: Any) -> str: ...
@overload
def key_field(*, generated: Literal[False], default: T, factory: None = None,
              **kwargs: Any) -> T: ...
@overload
def key_field(*, generated: Literal[False], default: None = None,
              factory: Callable[[], T], **kwargs: Any) -> T: ...
@overload
def key_field(*, generated: bool = True, **kwargs: Any) -> Any: ...
def key_field(*, generated: bool = True, **kwargs: Any) -> Any:
    """The id field. ``generated=True`` (default) fills it with :func:`new_id` when the
    object is created without one; ``generated=False`` makes the caller supply it, as a
    keyword argument (``kw_only=True`` by default, so the field can be declared anywhere,
    even after fields with defaults).

    A generated id is a ``str`` (26 characters): the field is declared ``str`` (the model
    refuses another type), and takes no ``default=``/``factory=`` of its own (with one,
    declare ``generated=False``)."""
    if generated:
        given = [name for name in ("default", "factory") if name in kwargs]
        if given:
            raise ModelDefinitionError(
                f"key_field(): a generated id takes no {given[0]}= (it would never be "
                f"used); to give ids yourself, use key_field(generated=False, "
                f"{given[0]}=...)")
        return field(key=True, factory=new_id, **kwargs)
    kwargs.setdefault("kw_only", True)
    return field(key=True, **kwargs)


@overload
def model(cls: type[T], /) -> type[T]: ...
@overload
def model(
    *,
    prefix: str | None = None,
    key: str | None = None,
    layout: str = "hash",
    ttl: float | dt.timedelta | None = None,
    codec: str | Codec | None = None,
    delimiter: str = ":",
    hash_tag: bool | Callable[[Any], str] = False,
    unique: Sequence[Sequence[str]] = (),
    buckets: int | None = None,
    track_changes: bool | None = None,
) -> Callable[[type[T]], type[T]]: ...
def model(
    cls: type[T] | None = None,
    /,
    *,
    prefix: str | None = None,
    key: Any = _UNSET,
    layout: Any = _UNSET,
    ttl: Any = _UNSET,
    codec: Any = _UNSET,
    delimiter: Any = _UNSET,
    hash_tag: Any = _UNSET,
    unique: Any = _UNSET,
    buckets: Any = _UNSET,
    track_changes: Any = _UNSET,
) -> type[T] | Callable[[type[T]], type[T]]:
    """Declare an attrs class a redmodel model. Use above ``@attrs.define``::

        @redmodel.model(prefix="hat", ttl=3600)
        @attrs.define
        class Hat:
            color: str
            price: float
            id: str = redmodel.key_field()

    - ``prefix``: first part of every key (default: the class name in snake case).
    - ``key``: name of the id field (default: the field declared with ``key=True``,
      else a field named ``id``).
    - ``layout``: ``"hash"`` (one hash per object), ``"flat"`` or ``"blob"``.
    - ``ttl``: default expiry of saved objects, seconds or a timedelta.
    - ``codec``: the codec chain of a blob and the default for encoded fields.
    - ``hash_tag``: for Redis Cluster. ``True`` puts the id in a hash tag
      (``hat:{56854717}``) so every key of one object is in one slot; a function of the id
      returning a tag (``lambda id: id.split("-")[0]``) gives ``order:{acme}:acme-123``, so
      objects sharing a tag share a slot and can change together in one transaction.
    - ``unique=[("color", "style")]``: fields whose values together are unique.
    - ``buckets=16``: spread objects over 16 hash-tagged buckets (``hat:{7}:56854717``),
      each with its own index keys in the same slot, so an indexed model works on Redis
      Cluster; queries fan out to every bucket. Changing it is a migration:
      ``store.migrate_buckets`` (docs/migrations.md).
    - ``track_changes``: remember what ``get`` loaded (and from which key, through which
      store's client), so ``save`` to that key through that client sends only the fields
      whose value changed (two writers of different fields both keep theirs; another
      text of an equal value, a set's member order or HINCRBYFLOAT's ``1`` for ``1.0``,
      is no change; a TTL is set in the same script); a save anywhere else is whole.
      Default: on for models with indexes.

    A subclass of a model is a model only when decorated too; it inherits every option
    its base was given except ``prefix`` (its own keys: the subclass name in snake case),
    and options given to it win (docs/models.md, "Inheritance").

    Raises :class:`ModelDefinitionError` for anything that could not be stored.
    """
    given = {name: value for name, value in (
        ("key", key), ("layout", layout), ("ttl", ttl), ("codec", codec),
        ("delimiter", delimiter), ("hash_tag", hash_tag), ("unique", unique),
        ("buckets", buckets), ("track_changes", track_changes)) if value is not _UNSET}

    def wrap(c: type[T]) -> type[T]:
        base = base_spec(c)
        options = {**(base.options if base is not None else {}), **given}
        spec = _compile(c, prefix, options.get("key"), options.get("layout", "hash"),
                        options.get("ttl"), options.get("codec"),
                        options.get("delimiter", ":"), options.get("hash_tag", False),
                        options.get("unique", ()), options.get("buckets"),
                        options.get("track_changes"))
        spec = attrs.evolve(spec, options=options)
        check_not_held(spec)
        setattr(c, "__redmodel__", spec)  # noqa: B010 - attrs slots classes allow class attrs
        hide_encrypted(spec)
        note_held(spec)
        return c

    return wrap(cls) if cls is not None else wrap


def _seconds(ttl: float | dt.timedelta | None, where: str) -> float | None:
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, dt.timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            0 < seconds <= MAX_TTL_SECONDS):  # NaN and infinities fail too
        raise ModelDefinitionError(f"{where}: ttl must be a positive number of seconds up "
                                   f"to {MAX_TTL_SECONDS:.0e}, got {ttl!r}")
    return float(seconds)


def _check_tag_prefix(name: str, prefix: str, tag: str) -> None:
    """Refuse a prefix whose braces would keep the bucket's (or the id's) hash tag after it
    from being read. Redis Cluster hashes the text between a key's first '{' and the first
    '}' after it; an empty one there means no tag at all, so each whole key is hashed and
    an object's keys land in different slots (attack 32L). Other braces are harmless: a
    non-empty tag in the prefix puts every key in its one slot, an unclosed '{' makes the
    tag end inside the bucket's, the same for all its keys."""
    brace = prefix.find("{")
    if brace >= 0 and prefix[brace + 1:brace + 2] == "}":
        raise ModelDefinitionError(
            f"{name}: the prefix {prefix!r} holds an empty '{{}}' before the {tag}'s hash "
            "tag: Redis Cluster would hash each whole key instead, and an object's keys "
            "would land in different slots; remove the braces from the prefix"
        )


def _compile(
    cls: type,
    prefix: str | None,
    key: str | None,
    layout: str,
    ttl: float | dt.timedelta | None,
    model_codec: str | Codec | None,
    delimiter: str,
    hash_tag: bool | Callable[[Any], str] = False,
    unique: Sequence[Sequence[str]] = (),
    buckets: int | None = None,
    track_changes: bool | None = None,
) -> ModelSpec:
    name = cls.__name__
    if not attrs.has(cls):
        raise ModelDefinitionError(f"{name} must be an attrs class (apply @attrs.define first)")
    if layout not in LAYOUTS:
        raise ModelDefinitionError(f"{name}: unknown layout {layout!r}, use one of {LAYOUTS}")
    if layout == "flat" and model_codec is not None:
        # Every leaf is its own key: a model chain would apply to nothing, and one that
        # encrypts would let lists, dicts and their keys reach Redis in plaintext.
        raise ModelDefinitionError(
            f"{name}: the flat layout stores every leaf as its own key and applies no model "
            "codec; declare the chain on the fields that need it (redmodel.field(codec=...)), "
            "which then store that field as one encoded leaf"
        )
    if not (hash_tag is True or hash_tag is False or callable(hash_tag)):
        raise ModelDefinitionError(f"{name}: hash_tag must be True, False or a function")
    if not isinstance(delimiter, str) or not delimiter or "%" in delimiter \
            or "{" in delimiter or "}" in delimiter or unsendable(delimiter):
        raise ModelDefinitionError(f"{name}: bad delimiter {delimiter!r}")
    prefix = snake_case(name) if prefix is None else prefix
    if not isinstance(prefix, str) or not prefix or delimiter in prefix:
        raise ModelDefinitionError(
            f"{name}: prefix {prefix!r} must be a non-empty str not containing {delimiter!r}"
        )
    if unsendable(prefix):
        raise ModelDefinitionError(
            f"{name}: prefix {prefix!r} must be UTF-8-encodable text (no lone surrogate)")
    _resolve(cls)
    all_fields = [f for f in attrs.fields(cls) if f.init]
    _not_init_false(name, [f for f in attrs.fields(cls) if not f.init])
    key_name = key or _key_name(cls, all_fields)
    chain = resolve_codec(model_codec) if model_codec is not None else None
    default_codec = chain or resolve_codec("json")
    # a blob whose chain encrypts encodes every field whole, encrypted
    sealed = layout == "blob" and chain is not None and chain.encrypts
    specs = [_field(name, f, default_codec, delimiter, sealed) for f in all_fields]
    key_spec = next((s for s in specs if s.name == key_name), None)
    if key_spec is None:
        raise ModelDefinitionError(f"{name}: key field {key_name!r} is not a field")
    if key_spec.kind != "scalar" or key_spec.optional:
        raise ModelDefinitionError(f"{name}: key field {key_name!r} must be a plain scalar")
    key_attr = next(f for f in all_fields if f.name == key_name)
    if getattr(key_attr.default, "factory", None) is new_id and key_attr.type is not str:
        shown = getattr(key_attr.type, "__name__", None) or repr(key_attr.type)
        raise ModelDefinitionError(
            f"{name}: key field {key_name!r} is generated (key_field()), and a generated "
            f"id is a str of 26 characters, which a field of type {shown} cannot hold: declare it "
            f"`{key_name}: str = redmodel.key_field()`, or use "
            f"key_field(generated=False) to give each object its {shown} id yourself")
    if key_spec.old_stored or key_spec.upgrade is not None:
        raise ModelDefinitionError(
            f"{name}: the key field {key_name!r} is read from the key, not stored: it takes "
            "no old_names= or upgrade=")
    fields = tuple(s for s in specs if s is not key_spec)
    if key_spec.encode is _SCALARS[str][0]:  # a str id: the str form of the id's bytes
        key_spec = attrs.evolve(key_spec, encode=ID_STR[0], decode=ID_STR[1], check=ID_STR[2])
    _check_unique_names(name, fields)
    check_encryption_applies(name, layout, chain, fields)
    encrypted = {s.name for s in fields if s.codec is not None and s.codec.encrypts}
    indexes = compile_indexes(cls, name, unique, delimiter, key_name, layout, encrypted)
    if buckets is not None and (isinstance(buckets, bool) or not isinstance(buckets, int)
                                or not 1 <= buckets <= 16384):
        raise ModelDefinitionError(f"{name}: buckets must be an int from 1 to 16384")
    if buckets is not None and hash_tag:
        raise ModelDefinitionError(f"{name}: buckets already decide the hash tag")
    if indexes is not None and hash_tag:
        raise ModelDefinitionError(
            f"{name}: an indexed model keeps objects and index entries in one slot per "
            "bucket: declare buckets=N instead of hash_tag"
        )
    if buckets is not None or hash_tag:
        _check_tag_prefix(name, prefix, "bucket" if buckets is not None else "id")
    return ModelSpec(
        cls=cls,
        name=name,
        prefix=prefix,
        delimiter=delimiter,
        layout=layout,
        ttl=_seconds(ttl, name),
        codec=chain,
        key=key_spec,
        fields=fields,
        by_name={f.name: f for f in fields},
        hash_tag=hash_tag,
        buckets=buckets,
        indexes=indexes,
        track_changes=indexes is not None if track_changes is None else track_changes,
    )


def _resolve(cls: type) -> None:
    try:
        attrs.resolve_types(cls)
    except NameError as e:
        raise ModelDefinitionError(
            f"{cls.__name__}: cannot resolve the annotation {e.name!r}; declare the types it "
            "names at module level, before the model"
        ) from None


def _key_name(cls: type, fields: list[attrs.Attribute[Any]]) -> str:
    marked = [f.name for f in fields if _options(f).key]
    if len(marked) > 1:
        raise ModelDefinitionError(f"{cls.__name__}: more than one key field: {marked}")
    if marked:
        return marked[0]
    if any(f.name == "id" for f in fields):
        return "id"
    raise ModelDefinitionError(
        f"{cls.__name__} has no key field: add `id: str = redmodel.key_field()` "
        "or mark a field with redmodel.field(key=True)"
    )


def _options(f: attrs.Attribute[Any]) -> FieldOptions:
    opts = f.metadata.get(_META)
    return opts if isinstance(opts, FieldOptions) else FieldOptions()


def _check_unique_names(model_name: str, fields: tuple[FieldSpec, ...]) -> None:
    seen: set[str] = set()
    for f in fields:
        if f.stored in seen:
            raise ModelDefinitionError(f"{model_name}: two fields are stored as {f.stored!r}")
        seen.add(f.stored)
    for f in fields:
        for old in f.old_stored:
            if old in seen:
                raise ModelDefinitionError(
                    f"{model_name}.{f.name}: old name {old!r} is the stored name of another "
                    "field (or listed twice)")
            seen.add(old)
    for f in fields:
        if f.children:
            _check_unique_names(f"{model_name}.{f.name}", f.children)


def _classes_in(tp: Any, seen: set[Any] | None = None) -> list[type]:
    """The attrs classes a type holds (itself, its arguments', their fields'), once each."""
    seen = set() if seen is None else seen
    if tp in seen:
        return []
    seen.add(tp)
    if is_model_class(tp):
        out: list[type] = [tp]
        for x in attrs.fields(tp):
            out += _classes_in(x.type, seen)
        return out
    return [c for arg in typing.get_args(tp) for c in _classes_in(arg, seen)]


def _not_init_false(label: str, fields: Sequence[attrs.Attribute[Any]]) -> None:
    """``index=``/``unique=``/``key=`` on an ``init=False`` field: refused (the model
    stores only the fields its constructor takes, so no entry or id could follow it)."""
    for x in fields:
        opts = _options(x)
        given = [o for o, on in (("index=", opts.index), ("unique=", opts.unique),
                                 ("key=", opts.key)) if on]
        if given:
            raise ModelDefinitionError(
                f"{label}.{x.name}: {given[0]} on an init=False field: a model stores only "
                "the fields its constructor takes (init=True), so this one is neither "
                "stored nor indexed: drop init=False, or the option")


def _no_index_inside(label: str, cls: type, fields: Sequence[attrs.Attribute[Any]]) -> None:
    """A field of a nested class declaring ``index=``/``unique=``/``key=`` would be ignored
    (a model's indexes and key are its own top-level fields): refused, unless the class is
    a model itself (the options are its own model's, unchanged when it is nested)."""
    if "__redmodel__" in cls.__dict__:
        return
    for x in fields:
        opts = _options(x)
        given = [o for o, on in (("index=", opts.index), ("unique=", opts.unique),
                                 ("key=", opts.key)) if on]
        if given:
            raise ModelDefinitionError(
                f"{label}.{x.name}: {given[0]} on a field of the nested class "
                f"{cls.__name__} does nothing (a model indexes only its own top-level "
                "fields): index a top-level field holding the value instead")


def _field(
    where: str, f: attrs.Attribute[Any], default_codec: Codec, delimiter: str,
    sealed: bool = False,
) -> FieldSpec:
    """The spec of attribute ``f``; ``sealed``: the model encodes it whole through a chain
    that encrypts (a blob's), so its checker lets a secret subclass's object through."""
    opts = _options(f)
    label = f"{where}.{f.name}"
    stored = opts.name or f.name
    if not stored or stored.startswith("\x00") or unsendable(stored):
        raise ModelDefinitionError(f"{label}: bad stored name {stored!r}")
    for old in opts.old_names:
        if not isinstance(old, str) or not old or old.startswith("\x00") or old == stored \
                or unsendable(old):
            raise ModelDefinitionError(f"{label}: bad old name {old!r}")
    inner, optional = optional_inner(f.type)
    if opts.upgrade is not None and is_model_class(inner) and not optional \
            and opts.codec is None:
        raise ModelDefinitionError(
            f"{label}: upgrade= applies to a value stored whole; a nested {inner.__name__} "
            "is stored field by field, so declare upgrade= on its own fields")
    common: dict[str, Any] = {
        "name": f.name,
        "init_name": f.alias or f.name,
        "stored": escape(stored, delimiter),
        "type": f.type,
        "optional": optional,
        "has_default": f.default is not attrs.NOTHING,
        "default": None if f.default is attrs.NOTHING else f.default,
        "check": make_checker(f.type, label, sealed=sealed),
        "old_stored": tuple(escape(old, delimiter) for old in opts.old_names),
        "upgrade": opts.upgrade,
    }
    found = scalar(inner)
    if found is not None and opts.codec is None:
        enc, dec, _ = found
        return FieldSpec(
            kind="scalar", encode=enc, decode=dec, numeric=NUMERIC.get(inner), **common
        )
    if is_model_class(inner) and not optional and opts.codec is None:
        nested = [x for x in attrs.fields(inner) if x.init]
        # every field, init=False ones too: an option there does nothing either
        _no_index_inside(label, inner, attrs.fields(inner))
        children = tuple(_field(f"{label}", x, default_codec, delimiter, sealed)
                         for x in nested)
        # stored field by field: each field is checked where it is stored, by its own
        # spec's checker (sealed where its own or the default chain encrypts it whole)
        common["check"] = object_checker(inner, [(c.name, c.check) for c in children], sealed)
        return FieldSpec(kind="struct", cls=inner, children=children, **common)
    for cls in _classes_in(inner):  # (list[Address], dict[str, Address], a whole value)
        _no_index_inside(label, cls, attrs.fields(cls))
    chain = resolve_codec(opts.codec) if opts.codec is not None else default_codec
    if chain.encrypts and not sealed:  # encoded whole and encrypted
        common["check"] = make_checker(f.type, label, sealed=True)
    return FieldSpec(
        kind="encoded",
        codec=chain,
        encode=chain.encoder(inner),
        decode=chain.decoder(inner),
        **common,
    )
