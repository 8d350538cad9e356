"""Serializer / Transform / Codec (a chain) and the registry of named codecs.

An encoded value starts with a small header naming the chain that wrote it, so a value read
through another chain fails with a clear :class:`DecodeError` instead of decoding to garbage::

    b"\\xa7" + bytes([len(name)]) + name + payload     # name = b"msgpack|bz2|fernet"
"""

from __future__ import annotations

import abc
import hashlib
import threading
import types
import typing
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

import cattrs

from redmodel._errors import CodecError, DecodeError, RedmodelError, ValidationError
from redmodel.codecs._strict import describe, structure_sealed

__all__ = ["Codec", "Serializer", "Transform", "register_codec"]

_T = TypeVar("_T")
_MAGIC = 0xA7  # not a valid first byte of UTF-8 text, JSON, YAML or a msgpack map/array


class Serializer(abc.ABC):
    """Maps a typed Python value to bytes and back, through its own cattrs converter.

    Subclasses set ``name`` and implement ``make_converter``, ``dumps`` and ``loads``.
    """

    name: str = ""

    def __init__(self) -> None:
        self._converter: cattrs.Converter | None = None
        self._lock = threading.Lock()

    @property
    def converter(self) -> cattrs.Converter:
        """The serializer's converter, built on first use."""
        if self._converter is None:
            with self._lock:
                if self._converter is None:
                    converter = self.make_converter()
                    canonical_sets(converter)
                    self._converter = converter
        return self._converter

    @abc.abstractmethod
    def make_converter(self) -> cattrs.Converter:
        """A converter that unstructures to (and structures from) this format's primitives."""

    @abc.abstractmethod
    def dumps(self, primitive: Any) -> bytes:
        """Primitive tree -> bytes."""

    @abc.abstractmethod
    def loads(self, data: bytes) -> Any:
        """Bytes -> primitive tree."""


def canonical_sets(converter: cattrs.Converter) -> None:
    """Make ``converter`` write every set and frozenset as a list in one canonical order
    (:func:`_set_order`) instead of its iteration order, which follows the order members
    were added in and, for ``str``/``bytes`` members, the process's hash seed: equal sets
    then encode to equal bytes in every process, so comparing stored bytes (a rewrite's
    "is this object in the current form", change tracking's fingerprints) sees them equal.

    Only where the converter writes a set as a list (every built-in serializer): a
    serializer whose converter keeps sets as sets is left as it is. Reading is unchanged:
    a list in any order structures back into the same set."""
    try:
        writes_lists = type(converter.unstructure(frozenset(), frozenset[int])) is list
    except Exception:  # a converter of the application's without a frozenset hook
        writes_lists = False
    if not writes_lists:
        return

    def factory(tp: Any) -> Callable[[Any], list[Any]]:
        args = typing.get_args(tp)
        element = (converter.get_unstructure_hook(args[0]) if args
                   else converter.unstructure)

        def unstructure(value: Any) -> list[Any]:
            return _set_order([element(v) for v in value])

        return unstructure

    converter.register_unstructure_hook_factory(_is_set_type, factory)


def _is_set_type(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, AbstractSet)


def _set_order(items: list[Any]) -> list[Any]:
    """``items`` (a set's members, unstructured) in an order no hash seed or insertion
    order changes: by value when all are ints or all are str or all are bytes, else by
    type name and repr (of the unstructured member: a nested set is already a sorted
    list, an attrs member a dict in field order)."""
    if len(items) < 2:
        return items
    first = type(items[0])
    if first in (int, str, bytes) and all(type(v) is first for v in items):
        items.sort()
        return items
    items.sort(key=_order_key)
    return items


def _order_key(item: Any) -> tuple[str, str]:
    return (type(item).__name__, repr(item))


class Transform(abc.ABC):
    """Maps bytes to bytes and back: compression, encryption.

    An encrypting transform sets ``encrypts = True`` (a transform with keys to rotate counts
    as one too): values of a chain holding one are kept out of reprs, error messages and
    plain indexes (docs/codecs.md, "Blind indexes").
    """

    name: str = ""
    encrypts: bool = False

    @abc.abstractmethod
    def encode(self, data: bytes) -> bytes:
        """Forward direction (compress, encrypt)."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> bytes:
        """Reverse direction; raises :class:`DecodeError` on corrupt or tampered input."""

    def rotate(self, data: bytes) -> bytes | None:
        """Re-encode ``data`` (this layer's output) under the newest key.

        Returns ``None`` when there is nothing to do, which is always the case for a layer
        without keys. Raises :class:`DecodeError` when ``data`` does not decode.
        """
        return None


class Codec:
    """An immutable chain: one serializer followed by zero or more transforms.

    Build one with :func:`codec` (``codec("msgpack|bz2|fernet")``) or directly
    (``Codec(JsonSerializer(), [Bz2()])``).  ``encoder(tp)`` / ``decoder(tp)`` return
    functions specialised for one type, built once and cached.
    """

    __slots__ = ("_decoders", "_encoders", "_header", "_prints", "name", "serializer",
                 "transforms")

    def __init__(self, serializer: Serializer, transforms: Iterable[Transform] = ()) -> None:
        if not isinstance(serializer, Serializer):
            raise CodecError(f"a codec chain starts with a redmodel.codecs.Serializer, got "
                             f"{type(serializer).__name__}")
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Iterable):
            raise CodecError(f"a codec chain's transforms are an iterable of "
                             f"redmodel.codecs.Transform, got {type(transforms).__name__}")
        self.serializer = serializer
        self.transforms = tuple(transforms)
        for t in self.transforms:
            if not isinstance(t, Transform):
                raise CodecError(f"a codec chain's transforms are redmodel.codecs.Transform "
                                 f"instances, got {type(t).__name__}")
        names = [serializer.name, *(t.name for t in self.transforms)]
        if not all(isinstance(n, str) and n and n.isascii() and "|" not in n for n in names):
            raise CodecError("every part of a codec chain needs a name: ASCII text without "
                             "'|'")
        self.name = "|".join(names)
        raw = self.name.encode("ascii")
        if len(raw) > 255:
            raise CodecError(f"codec chain name too long: {self.name!r}")
        self._header = bytes([_MAGIC, len(raw)]) + raw
        self._encoders: dict[Any, Callable[[Any], bytes]] = {}
        self._decoders: dict[Any, Callable[[bytes], Any]] = {}
        self._prints: dict[Any, Callable[[Any], bytes]] = {}

    def __repr__(self) -> str:
        return f"Codec({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def encoder(self, tp: Any) -> Callable[[Any], bytes]:
        """A function ``value -> bytes`` for values of type ``tp``."""
        fn = self._encoders.get(tp)
        if fn is None:
            fn = self._encoders[tp] = self._make_encoder(tp)
        return fn

    def decoder(self, tp: Any) -> Callable[[bytes], Any]:
        """A function ``bytes -> value`` for values of type ``tp``; raises DecodeError."""
        fn = self._decoders.get(tp)
        if fn is None:
            fn = self._decoders[tp] = self._make_decoder(tp)
        return fn

    def fingerprint(self, tp: Any) -> Callable[[Any], bytes]:
        """A function ``value -> digest`` of the value's serialized form before any
        transform: equal values give equal digests where an encrypting chain's output
        differs every time (change tracking compares these, in process memory only)."""
        fn = self._prints.get(tp)
        if fn is None:
            unstructure = self._hook("unstructure", tp)
            dumps = self.serializer.dumps
            name = self.name

            def fingerprint(value: Any) -> bytes:
                failed = ""
                try:
                    return hashlib.blake2b(dumps(unstructure(value)), digest_size=16).digest()
                except Exception as e:  # as encode: raised below, the error may hold the value
                    failed = type(e).__name__
                raise ValidationError(f"codec {name!r} cannot fingerprint a value of type "
                                      f"{type(value).__name__}: {failed}")

            fn = self._prints[tp] = fingerprint
        return fn

    def encode(self, value: Any, tp: Any = None) -> bytes:
        """Encode one value (of type ``tp``, default its own type)."""
        return self.encoder(type(value) if tp is None else tp)(value)

    @typing.overload
    def decode(self, data: bytes, tp: type[_T]) -> _T: ...
    @typing.overload
    def decode(self, data: bytes, tp: types.UnionType | type[Any]) -> Any: ...
    @typing.overload
    def decode(self, data: bytes, tp: Any) -> Any: ...
    def decode(self, data: bytes, tp: Any) -> Any:
        """Decode one value of type ``tp``. Typed as ``tp`` where Python's typing can say
        it: a class (``Hat``) or a generic alias (``list[int]``, ``dict[str, Hat]``); a
        union (``int | None``), a ``Literal`` or an ``Annotated`` is no ``type[...]``, so
        such a value is ``Any`` to a type checker (annotate the variable it goes to)."""
        return self.decoder(tp)(data)

    @property
    def holds_keys(self) -> bool:
        """True when a transform of the chain has keys to rotate (``fernet``)."""
        return any(_overrides_rotate(t) for t in self.transforms)

    @property
    def encrypts(self) -> bool:
        """True when a transform of the chain encrypts (``fernet``, or any transform that
        sets ``encrypts`` or holds keys to rotate)."""
        return any(t.encrypts or _overrides_rotate(t) for t in self.transforms)

    def wrote(self, data: bytes) -> bool:
        """True when ``data`` starts with this chain's header."""
        try:
            return bool(data.startswith(self._header))
        except (AttributeError, TypeError):
            raise _not_bytes(data, self.name) from None

    def rotate(self, data: bytes) -> bytes | None:
        """``data`` (a stored value of this chain) re-encrypted under the newest keys.

        Works on the raw stored bytes: only the layers above the innermost key-holding
        transform are undone and redone, the value is never deserialized. Returns ``None``
        when the value is already under the newest keys (or the chain holds no keys), so a
        caller writes back only what changed. Raises :class:`DecodeError` when ``data`` was
        not written by this chain or does not decode under any configured key.
        """
        rotatable = [i for i, t in enumerate(self.transforms) if _overrides_rotate(t)]
        if not rotatable:
            return None
        if not self.wrote(data):
            raise DecodeError(_header_mismatch(data, self.name), codec=self.name)
        lowest = rotatable[0]
        # outputs[i] is what transform i produced when the value was written.
        outputs = {len(self.transforms) - 1: data[len(self._header) :]}
        try:
            for i in range(len(self.transforms) - 1, lowest, -1):
                outputs[i - 1] = self.transforms[i].decode(outputs[i])
            rotated: bytes | None = None
            for i in range(lowest, len(self.transforms)):
                t = self.transforms[i]
                rotated = t.encode(rotated) if rotated is not None else t.rotate(outputs[i])
        except DecodeError as e:
            raise e.with_context(codec=self.name) from None
        return None if rotated is None else self._header + rotated

    def _hook(self, kind: str, tp: Any) -> Callable[..., Any]:
        """The serializer converter's (un)structure hook for ``tp``; a type it has none for
        (``5``, ``"int"``, ``object``, ``complex``) is a CodecError naming the codec and
        the type, not cattrs' own error."""
        converter = self.serializer.converter
        try:
            if kind == "unstructure":
                return converter.get_unstructure_hook(tp)
            return converter.get_structure_hook(tp)
        except Exception as e:
            raise CodecError(f"codec {self.name!r} cannot {kind} the type {_type_name(tp)}: "
                             f"{type(e).__name__}") from None

    def _make_encoder(self, tp: Any) -> Callable[[Any], bytes]:
        unstructure = self._hook("unstructure", tp)
        dumps = self.serializer.dumps
        header = self._header
        transforms = self.transforms
        name = self.name

        def encode(value: Any) -> bytes:
            failed = ""
            try:
                data = dumps(unstructure(value))
            except Exception as e:
                # Any failure of the converter or the serializer (TypeError, ValueError,
                # OverflowError, UnicodeError, and IndexError for a tuple of the wrong
                # length, AttributeError from PyYAML's representer...) is a value this
                # chain cannot encode. Raised below: the error may hold the value.
                failed = type(e).__name__
            if failed:
                raise ValidationError(
                    f"codec {name!r} cannot encode a value of type {type(value).__name__}: "
                    f"{failed}"
                )
            try:
                for t in transforms:
                    data = t.encode(data)
            except RedmodelError:
                raise
            except Exception as e:  # a transform of the application's (register_codec)
                failed = f"{type(e).__name__} in its layer {t.name!r}"
            if failed:
                raise CodecError(f"codec {name!r} cannot encode a value of type "
                                 f"{type(value).__name__}: {failed}")
            return header + data

        return encode

    def loader(self, tp: Any = None) -> Callable[[bytes], Any]:
        """A function ``bytes -> primitive``: the header checked, the transforms undone and
        the serializer's parse, before any type is applied (what ``upgrade=`` receives for
        an encoded value); raises DecodeError."""
        header = self._header
        transforms = self.transforms[::-1]
        loads = self.serializer.loads
        name = self.name
        what = "parse" if tp is None else f"decode as {_type_name(tp)}"

        def load(data: bytes) -> Any:
            try:
                written = data.startswith(header)
            except (AttributeError, TypeError):
                raise _not_bytes(data, name) from None
            if not written:
                raise DecodeError(_header_mismatch(data, name), codec=name)
            data = data[len(header) :]
            try:
                for t in transforms:
                    data = t.decode(data)
            except DecodeError as e:
                raise e.with_context(codec=name) from None
            failed = ""
            try:
                return loads(data)
            except DecodeError as e:  # the serializer's own, naming no value
                raise e.with_context(codec=name) from None
            except Exception as e:
                # Raised below, outside this block: the parser's error may quote the
                # decrypted value, and it would ride along as __context__.
                failed = type(e).__name__
            raise DecodeError(f"stored value does not {what}: {failed}", codec=name)

        return load

    def structurer(self, tp: Any) -> Callable[[Any], Any]:
        """A function ``primitive -> value of tp``, strict: a primitive that is not exactly
        what this chain writes for ``tp`` raises DecodeError naming the failing field path
        (never the value)."""
        structure = self._hook("structure", tp)
        name = self.name
        sealed = self.encrypts

        def struct(primitive: Any) -> Any:
            return _structured(structure, primitive, tp, name, sealed)

        return struct

    def object_decoder(self, tp: Any, field: str) -> Callable[[bytes, Any], Any]:
        """A function ``(bytes, value) -> object of tp`` that sets the primitive field
        ``field`` to ``value`` before structuring (the blob layout's id, from the key)."""
        decode: Callable[[bytes, Any], Any] = self._make_decoder(tp, field)
        return decode

    def _make_decoder(self, tp: Any, field: str | None = None) -> Any:
        # One closure on the hot path: loader() and structurer() inlined.
        header = self._header
        transforms = self.transforms[::-1]
        loads = self.serializer.loads
        structure = self._hook("structure", tp)
        name = self.name
        what = f"decode as {_type_name(tp)}"
        sealed = self.encrypts

        def decode(data: bytes, value: Any = None) -> Any:
            try:
                written = data.startswith(header)
            except (AttributeError, TypeError):
                raise _not_bytes(data, name) from None
            if not written:
                raise DecodeError(_header_mismatch(data, name), codec=name)
            data = data[len(header) :]
            try:
                for t in transforms:
                    data = t.decode(data)
            except DecodeError as e:
                raise e.with_context(codec=name) from None
            failed = ""
            try:
                primitive = loads(data)
            except DecodeError as e:  # the serializer's own, naming no value
                raise e.with_context(codec=name) from None
            except Exception as e:
                # Raised below, outside this block: the parser's error may quote the
                # decrypted value, and it would ride along as __context__.
                failed = type(e).__name__
            if failed:
                raise DecodeError(f"stored value does not {what}: {failed}", codec=name)
            if field is not None and type(primitive) is dict:
                primitive[field] = value
            return _structured(structure, primitive, tp, name, sealed)

        return decode


def _not_bytes(data: Any, codec: str) -> ValidationError:
    return ValidationError(f"codec {codec!r} reads bytes, got {type(data).__name__}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _overrides_rotate(t: Transform) -> bool:
    return type(t).rotate is not Transform.rotate


def _header_mismatch(data: bytes, expected: str) -> str:
    if len(data) >= 2 and data[0] == _MAGIC and len(data) >= 2 + data[1]:
        found = data[2 : 2 + data[1]]
        # Name the other chain only when every part is a registered name: a damaged
        # length byte would otherwise put stored (maybe plaintext) bytes in the message.
        parts = found.split(b"|")
        if found.isascii() and all(p.decode("ascii") in _REGISTRY for p in parts):
            return f"value was written with codec {found.decode()!r}, read with {expected!r}"
        return f"value header names an unknown codec chain, read with {expected!r}"
    return (
        "value has no redmodel codec header (not written by a codec, or truncated), "
        f"read with {expected!r}"
    )


_REGISTRY: dict[str, Callable[[], Serializer | Transform]] = {}
_CACHE: dict[str, Codec] = {}
_REG_LOCK = threading.Lock()


def register_codec(name: str, factory: Callable[[], Serializer | Transform]) -> None:
    """Register a serializer or transform under ``name`` for chain strings.

    ``factory`` is called once, when a chain first names it. Registering a name again
    replaces it for chains built afterwards.
    """
    if not name or "|" in name or not name.isascii():
        raise CodecError(f"invalid codec name {name!r}")
    with _REG_LOCK:
        _REGISTRY[name] = factory
        for key in [k for k in _CACHE if name in k.split("|")]:
            del _CACHE[key]


def _structured(structure: Callable[[Any, Any], Any], primitive: Any, tp: Any,
                codec: str, sealed: bool) -> Any:
    """``structure(primitive, tp)``; a failure becomes a DecodeError naming the codec and
    the field (never the value); one that already names a codec passes unchanged.
    ``sealed``: the chain encrypts (an ``upgrade=`` inside checks its result so)."""
    reason: tuple[str, str | None]
    try:
        if sealed:
            return structure_sealed(structure, primitive, tp)
        return structure(primitive, tp)
    except DecodeError as e:
        if e.codec is not None:
            raise
        reason = (e.reason, e.field)
    except Exception as e:
        reason = describe(e)
    raise DecodeError(reason[0], field=reason[1], codec=codec)
