"""Strict structuring, shared by every serializer and the flat layout's tree.

cattrs' defaults call the type on the stored value: ``bool("no") is True``, ``int(41.9)``
is 41, ``list("abc")`` is three letters. Data read back after a field changed type must
fail instead (the hash layout's scalar decoders already do), unless the field declares
``redmodel.field(upgrade=...)``. These hooks accept exactly the primitive the serializer
writes for the declared type, and nothing else.

Attrs classes are structured under their stored names (``redmodel.field(name=...)``),
reading a field's ``old_names`` (and its attribute name, which encoded values used
before stored names applied to them) when the current name holds nothing.
"""

from __future__ import annotations

import base64
import enum
import json
import re
import types
import typing
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import attrs
import cattrs
from cattrs import cols
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from redmodel._errors import DecodeError
from redmodel._models._types import BadValueError, make_checker

__all__ = ["configure_containers", "configure_strict", "describe", "field_names",
           "structure_sealed", "upgrading"]

Hook = Callable[[Any, Any], Any]


def _exact(tp: type, what: str) -> Hook:
    def structure(value: Any, _: Any) -> Any:
        if type(value) is tp:
            return value
        raise BadValueError(what)

    return structure


def _float(value: Any, _: Any) -> float:
    # Every int is a float value (the checker accepts ints for float fields, and a hash
    # stores 41 and 41.0 alike), so an int read as float is no coercion; a bool is.
    if type(value) is float or type(value) is int:
        return float(value)
    raise BadValueError("not a number")


def _or_enum(tp: type, hook: Hook, enum_hook: Hook) -> Hook:
    def structure(value: Any, t: Any) -> Any:
        if t is not tp and isinstance(t, type) and issubclass(t, enum.Enum):
            return enum_hook(value, t)
        return hook(value, t)

    return structure


def _scalar(tp: type, what: str, enum_hook: Hook) -> Hook:
    """The hook of a type stored as itself: the value, only if it is exactly that type (one
    call on the hot path: no wrapper)."""

    def structure(value: Any, t: Any) -> Any:
        if t is tp:
            if type(value) is tp:
                return value
            raise BadValueError(what)
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return enum_hook(value, t)
        if type(value) is tp:
            return value
        raise BadValueError(what)

    return structure


def _enum_factory(tp: type[enum.Enum]) -> Hook:
    by_value = {(type(m.value), m.value): m for m in tp}
    name = tp.__name__

    def structure(value: Any, _: Any) -> Any:
        try:
            return by_value[(type(value), value)]
        except (KeyError, TypeError):
            raise BadValueError(f"not a value of {name}") from None

    return structure


_KEY_TEXT: dict[Any, Callable[[str], Any]] = {
    int: int,
    float: float,
    bool: {"true": True, "false": False}.__getitem__,
}


def _float_key_written(text: str, parsed: float) -> bool:
    # json writes a float key as it writes a float (repr, or Infinity, -Infinity, NaN);
    # an int's text also reads as a float key (every int is a float value, as for values)
    return text == json.dumps(parsed) or text == str(_int_or_none(text))


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


_KEY_WRITTEN: dict[Any, Callable[[str, Any], bool]] = {
    int: lambda text, parsed: text == str(parsed),
    float: _float_key_written,
}


def _json_key(tp: Any) -> Callable[[Any], Any] | None:
    """JSON object keys are text: the primitive a key of type ``tp`` was written as."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        texts = {("true" if m.value is True else str(m.value)): m.value for m in tp}
        parse: Callable[[str], Any] | None = texts.__getitem__
    else:
        parse = _KEY_TEXT.get(tp)
    if parse is None:
        return None

    written = _KEY_WRITTEN.get(tp)

    def key(text: Any) -> Any:
        if type(text) is not str:
            raise BadValueError("not a key text")
        try:
            parsed = parse(text)
        except (KeyError, ValueError):
            raise BadValueError("key does not parse") from None
        if written is not None and not written(text, parsed):
            # " 1", "01", "1_0", "1e0": parsed by int()/float(), never written by JSON
            raise BadValueError("an object key not as JSON writes this dict's keys")
        return parsed

    return key


def _is_list_like(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, set, frozenset) or (
        typing.get_origin(tp) is tuple and typing.get_args(tp)[-1:] == (Ellipsis,))


def _sequence_factory(conv: cattrs.Converter) -> Callable[[Any], Hook]:
    def factory(tp: Any) -> Hook:
        origin = typing.get_origin(tp)
        if origin is list:
            inner = cols.list_structure_factory(tp, conv)
        elif origin is tuple:
            inner = cols.homogenous_tuple_structure_factory(tp, conv)
        else:
            elem = conv.get_structure_hook(typing.get_args(tp)[0])
            arg = typing.get_args(tp)[0]

            def inner(value: Any, _: Any) -> Any:
                members = origin(elem(v, arg) for v in value)
                if len(members) != len(value):
                    # a set is written without repeats: a list that repeats a member
                    # (a list[str] retyped set[str], or 1 and 1.0 for a set[float])
                    # would lose items, so it is a changed type
                    raise BadValueError("a list with repeated members, not a set's")
                return members

        def structure(value: Any, t: Any) -> Any:
            if type(value) is not list:
                raise BadValueError("not a list")
            return inner(value, t)

        return structure

    return factory


def _fixed_tuple_factory(conv: cattrs.Converter) -> Callable[[Any], Hook]:
    def factory(tp: Any) -> Hook:
        args = typing.get_args(tp)
        hooks = [conv.get_structure_hook(a) for a in args]

        def structure(value: Any, _: Any) -> Any:
            if type(value) is not list or len(value) != len(args):
                raise BadValueError(f"not a list of {len(args)} items")
            return tuple(h(v, a) for h, v, a in zip(hooks, value, args, strict=True))

        return structure

    return factory


def _mapping_factory(conv: cattrs.Converter, text_keys: bool) -> Callable[[Any], Hook]:
    def factory(tp: Any) -> Hook:
        key_tp = typing.get_args(tp)[0]
        inner = cols.mapping_structure_factory(tp, conv)
        key = _json_key(key_tp) if text_keys else None

        def structure(value: Any, t: Any) -> Any:
            if type(value) is not dict:
                raise BadValueError("not an object")
            count = len(value)
            if key is not None:
                value = {key(k): v for k, v in value.items()}
            mapping = inner(value, t)
            if len(mapping) != count:
                # two stored keys read as one (1 and 1.0 for a dict[float, ...]): one
                # entry would be lost, so it is not what a dict of this type wrote
                raise BadValueError("an object two of whose keys read as one key")
            return mapping

        return structure

    return factory


_NATIVE = (str, int, float, bool, type(None))


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Literal


def _literal_values(tp: Any) -> list[Any]:
    """A Literal's values, nested Literals flattened (``Literal[Literal[1], 2]``)."""
    out: list[Any] = []
    for a in typing.get_args(tp):
        out.extend(_literal_values(a) if _is_literal(a) else [a])
    return out


def _literal_factory(tp: Any) -> Hook:
    """A value of the Literal only if it is one of its values *of the same type*: cattrs'
    own hook tests ``value in args``, which reads True as 1 and 1.0 as 1. An enum member
    is read from its value, as an enum field is."""
    by_value: dict[tuple[type, Any], Any] = {}
    for v in _literal_values(tp):
        raw = v.value if isinstance(v, enum.Enum) else v
        by_value.setdefault((type(raw), raw), v)

    def structure(value: Any, _: Any) -> Any:
        try:
            return by_value[(type(value), value)]
        except (KeyError, TypeError):
            raise BadValueError("not one of the Literal's values") from None

    return structure


def _is_native_union(tp: Any) -> bool:
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return False
    args = typing.get_args(tp)
    return all(a in _NATIVE or (_is_literal(a) and all(
        type(v) in _NATIVE for v in _literal_values(a))) for a in args) and not (
        len(args) == 2 and type(None) in args)  # an Optional: cattrs' hook, strict inside


def _native_union_factory(tp: Any) -> Hook:
    """A union of str, int, float, bool, None (and Literals of them): the value only if
    its type is exactly one of them (cattrs' passthrough takes a bool for an int), or an
    int where float is one (read as a float, as for a float field)."""
    args = typing.get_args(tp)
    classes = {a for a in args if not _is_literal(a)}
    literal = {(type(v), v) for a in args if _is_literal(a) for v in _literal_values(a)}
    as_float = float in classes and int not in classes

    def structure(value: Any, _: Any) -> Any:
        kind = type(value)
        if kind in classes:
            return value
        if kind is int and as_float:
            return float(value)
        if (kind, value) in literal:
            return value
        raise BadValueError("not a value of any of the union's types")

    return structure


def field_names(f: attrs.Attribute[Any]) -> tuple[str, tuple[str, ...]]:
    """(stored name, names to read when it holds nothing) of an attrs field: its
    ``old_names``, then its attribute name when it is stored under another."""
    opts = f.metadata.get("redmodel")
    stored = getattr(opts, "name", None) or f.name
    olds = tuple(getattr(opts, "old_names", ()))
    if stored != f.name and f.name not in olds:
        olds += (f.name,)
    return stored, olds


# True while an encrypting chain structures what it decoded: a value read there is
# encoded whole by a chain that encrypts, wherever it sits inside that value.
_SEALED: ContextVar[bool] = ContextVar("redmodel_sealed", default=False)


def structure_sealed(structure: Hook, primitive: Any, tp: Any) -> Any:
    """``structure(primitive, tp)`` for a chain that encrypts: an ``upgrade=`` inside
    checks its result as a value encoded whole and encrypted (see :func:`upgrading`)."""
    token = _SEALED.set(True)
    try:
        return structure(primitive, tp)
    finally:
        _SEALED.reset(token)


def upgrading(hook: Hook, tp: Any, upgrade: Callable[[Any], Any], where: str,
              raw: Callable[[Any], Any] = lambda v: v, *, sealed: bool | None = None) -> Hook:
    """``hook``, falling back to ``upgrade(raw(value))`` for a value it refuses; the
    result must be a valid value of ``tp`` (DecodeError otherwise, never quoting it).

    The result is checked as a save checks the field: ``sealed`` says the value is
    encoded whole by a chain that encrypts (which only words the refusal of an object of
    a subclass secret beyond the declared class: any strict subclass is refused, session
    37); None: as the chain being decoded says (its decoder structures under
    :func:`structure_sealed` when it encrypts). Attack 33A F1."""
    checks = (make_checker(tp, where), make_checker(tp, where, sealed=True))

    def structure(value: Any, t: Any) -> Any:
        try:
            return hook(value, t)
        except Exception:
            pass
        check = checks[_SEALED.get() if sealed is None else sealed]
        return upgrade_value(upgrade, raw(value), check)

    return structure


def upgrade_value(upgrade: Callable[[Any], Any], value: Any,
                  check: Callable[[Any], str | None]) -> Any:
    """``upgrade(value)`` checked; DecodeError naming what went wrong, not the value."""
    failed = ""
    try:
        new = upgrade(value)
    except Exception as e:
        failed = type(e).__name__
    if failed:
        raise DecodeError(f"stored value does not decode and upgrade= raised {failed}")
    if (err := check(new)) is not None:
        raise DecodeError(f"upgrade= returned a bad value: {err}")
    return new


def object_structurer(generated: Any, cls: type, aliases: list[tuple[str, tuple[str, ...]]],
                      *, str_keys: bool = False) -> Hook:
    """cattrs' structure function ``generated`` of attrs class ``cls`` taking only an
    object: a dict (``str_keys``: whose keys are not bytes, the flat tree's object node: a
    dict's entries are a node of bytes keys). cattrs' function tests ``"name" in value`` for
    a field with a default, which a str, a list or a dict's entries answer False, so it
    would make an object of defaults (33A F5). ``aliases``: (stored name, old names) of the
    fields with old names, an old name's value moved to the stored name when that holds
    none. A flat tree's function without aliases has ``generated`` under ``__wrapped__``
    (the flat layout's generated decoder reads the hooks off its signature, and does the
    object check itself)."""
    not_object = f"not an object ({cls.__name__}: the field's type changed?)"

    def structure(value: Any, tp: Any) -> Any:
        if type(value) is not dict or (str_keys and value
                                       and type(next(iter(value))) is bytes):
            raise BadValueError(not_object)
        for stored, olds in aliases:
            if stored not in value:
                for old in olds:
                    if old in value:
                        value[stored] = value[old]
                        break
        return generated(value, tp)

    if str_keys and not aliases:
        structure.__wrapped__ = generated  # type: ignore[attr-defined]
    return structure


def _attrs_factory(conv: cattrs.Converter) -> Callable[[Any], Hook]:
    def factory(cls: Any) -> Hook:
        attrs.resolve_types(cls)
        overrides: dict[str, Any] = {}
        aliases: list[tuple[str, tuple[str, ...]]] = []
        for f in attrs.fields(cls):
            stored, olds = field_names(f)
            hooks: dict[str, Any] = {"rename": stored}
            if olds:
                aliases.append((stored, olds))
            upgrade = getattr(f.metadata.get("redmodel"), "upgrade", None)
            if upgrade is not None:
                hook = conv.get_structure_hook(f.type)
                hooks["struct_hook"] = upgrading(hook, f.type, upgrade,
                                                 f"{cls.__name__}.{f.name}")
            overrides[f.name] = override(**hooks)
        generated = make_dict_structure_fn(cls, conv, **overrides)
        # Only an object: cattrs' function tests `"name" in value` for a field with a
        # default, which a str or a list answers False, so "x" or ["x"] would make an
        # object of defaults (33A F5); None or a number fails in it with a TypeError.
        return object_structurer(generated, cls, aliases)

    return factory


def configure_strict(conv: cattrs.Converter, *, bytes_as: type, text_keys: bool) -> None:
    """Register the strict hooks on a serializer's converter: ``bytes_as`` is the
    primitive bytes are written as (str for base85 JSON), ``text_keys`` says object keys
    come back as text (JSON). Call last: it replaces the preconf's lenient hooks."""
    to_bytes = conv.get_structure_hook(bytes)
    exact_bytes = _exact(bytes_as, "not bytes")
    # Class hooks (cattrs tries them first) also catch subclasses: bool is an int, and an
    # enum mixing in int or str is both; each hook sends an enum to the enum hook.
    enums: dict[Any, Hook] = {}

    def enum_hook(value: Any, t: Any) -> Any:
        hook = enums.get(t)
        if hook is None:
            hook = enums[t] = _enum_factory(t)
        return hook(value, t)

    if bytes_as is str:  # base85 text (JSON): its decoder reads any text of its alphabet
        def text_bytes(value: Any, t: Any) -> bytes:
            raw: bytes = to_bytes(exact_bytes(value, t), t)
            if base64.b85encode(raw) != value.encode("ascii"):
                # ("9" reads as b"", "VPa" as b"ab"): not what an encode wrote
                raise BadValueError("not base85 of bytes")
            return raw

        conv.register_structure_hook(bytes, _or_enum(bytes, text_bytes, enum_hook))
    else:
        conv.register_structure_hook(bytes, _or_enum(
            bytes, lambda v, t: to_bytes(exact_bytes(v, t), t), enum_hook))
    conv.register_structure_hook(float, _or_enum(float, _float, enum_hook))
    for scalar, what in ((int, "not an integer"), (str, "not text"), (bool, "not a boolean")):
        conv.register_structure_hook(scalar, _scalar(scalar, what, enum_hook))
    conv.register_structure_hook_factory(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum_factory)
    conv.register_structure_hook_factory(_is_literal, _literal_factory)
    conv.register_structure_hook_factory(_is_native_union, _native_union_factory)
    configure_containers(conv, text_keys=text_keys)
    conv.register_structure_hook_factory(attrs.has, _attrs_factory(conv))
    # The factory takes the converter it runs in: a copy (containers' canonical converter)
    # must use its own hooks for the fields.
    conv.register_unstructure_hook_factory(attrs.has, _unstructure_fn)


_ESCAPE = re.compile(rb"\\[uU]0{0,4}[dD][89a-fA-F]")
"""An escape that may stand for a surrogate (JSON ``\ud800``, YAML ``\ud800`` or
``\U0000d800``): only a loaded value whose text held one can hold a lone surrogate."""


def refuse_lone_surrogates(data: bytes, value: Any, name: str) -> None:
    """DecodeError when ``value``, loaded from ``data``, holds a lone surrogate anywhere
    (in a str or a mapping key): no UTF-8 text holds one, so the serializer's dumps,
    which writes UTF-8, never wrote it, and a save of it is refused."""
    if _ESCAPE.search(data) is None or not _has_surrogate(value):
        return
    raise DecodeError(f"stored {name} value holds an escaped lone surrogate, which no "
                      "UTF-8 text holds: it was not written by this codec")


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
    return False


def configure_containers(conv: cattrs.Converter, *, text_keys: bool) -> None:
    """Lists, tuples and sets only from a list, dicts only from a dict."""
    conv.register_structure_hook_factory(_is_list_like, _sequence_factory(conv))
    conv.register_structure_hook_factory(_is_fixed_tuple, _fixed_tuple_factory(conv))
    conv.register_structure_hook_factory(_is_dict, _mapping_factory(conv, text_keys))


def _unstructure_fn(cls: Any, conv: cattrs.Converter) -> Callable[[Any], Any]:
    """Attrs classes are written under their stored names (``redmodel.field(name=...)``)."""
    renames: dict[str, Any] = {f.name: override(rename=field_names(f)[0])
                               for f in attrs.fields(cls)}
    return make_dict_unstructure_fn(cls, conv, **renames)


def _is_fixed_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple and not _is_list_like(tp)


def _is_dict(tp: Any) -> bool:
    return typing.get_origin(tp) is dict


def describe(e: BaseException) -> tuple[str, str | None]:
    """(reason, field path) of a structuring failure, never quoting a value: dict keys
    (data, maybe secret) are cut from the path."""
    if isinstance(e, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        lines = cattrs.transform_error(e, path="", format_exception=_reason)
        reasons: dict[str, None] = {}
        paths: dict[str, None] = {}
        for line in lines:
            reason, _, path = line.rpartition(" @ ")
            reasons[reason or line] = None
            path = path.split("[", 1)[0].lstrip(".")
            if path:
                paths[path] = None
        return "; ".join(reasons), ", ".join(paths) or None
    return _reason(e, None), None


def _reason(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, KeyError):
        return "field is missing"
    if isinstance(exc, BadValueError):
        return f"stored value is {exc}"
    if isinstance(exc, DecodeError):
        return f"{exc.reason} (codec {exc.codec!r})" if exc.codec else exc.reason
    return f"stored value does not fit ({type(exc).__name__})"

