"""Field types: what redmodel accepts, how a scalar becomes a Redis string and back, and a
checker per type that validates a value before anything is written.

Everything here is built once per model field at declaration, never per call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import sys
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from redmodel._args import int_too_long
from redmodel._errors import ModelDefinitionError

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]
Checker = Callable[[Any], "str | None"]  # None when valid, else a short reason
# A reason never quotes the value: one checker serves encrypted and plain positions
# alike, and its reason reaches ValidationError/DecodeError texts (attack 33A F7).

NoneType = type(None)


class BadValueError(Exception):
    """Raised by a scalar decoder; the caller adds key, model and field."""


def optional_inner(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not NoneType]
        if len(args) < len(typing.get_args(tp)):
            if len(args) == 1:
                return args[0], True
            return typing.Union[tuple(args)], True  # noqa: UP007 - runtime construction
    return tp, False


def is_model_class(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


# ---- scalars: Redis string form -------------------------------------------------------


def exact(parse: Callable[[str], Any], show: Callable[[Any], str]) -> Callable[[str], Any]:
    """``parse``, refusing text that is not exactly what ``show`` writes of the value it
    reads (strict decoding: ``2020-01-01`` is a date's text, not a datetime's; ``1_000``
    and `` 1`` are Python syntax, not stored text): ValueError, so the caller's error or
    the field's ``upgrade=`` decides."""
    def parsed(text: str) -> Any:
        value = parse(text)
        if show(value) != text:
            raise ValueError("not the value's own text")
        return value

    return parsed


def _dec_text(parse: Callable[[str], Any]) -> Decoder:
    def decode(raw: bytes) -> Any:
        try:
            return parse(raw.decode("utf-8"))
        except (ValueError, TypeError, ArithmeticError) as e:
            raise BadValueError(type(e).__name__) from None

    return decode


def _dec_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadValueError("not UTF-8 text") from None


def _dec_int(raw: bytes) -> int:
    """An int's decimal text exactly as ``str(int)`` (and HINCRBY) writes it: no sign
    ``+``, leading zero, ``-0``, space or ``_``."""
    try:
        value = int(raw)
    except ValueError:
        if len(raw) > sys.get_int_max_str_digits() > 0 and raw.lstrip(b"-").isdigit():
            raise BadValueError(
                f"an int of {len(raw.lstrip(b'-'))} digits: more than this interpreter "
                f"converts from text (sys.get_int_max_str_digits() is "
                f"{sys.get_int_max_str_digits()})") from None
        raise BadValueError("not an integer") from None
    if str(value).encode() != raw:
        raise BadValueError("not an integer's decimal text")
    return value


_NON_FINITE = (b"nan", b"inf", b"-inf")  # repr's text of the floats that are no number


def _dec_float(raw: bytes) -> float:
    """A float's decimal text (``repr``'s, HINCRBYFLOAT's, an int's): none of Python's
    extra syntax (``_``, spaces, ``+``, ``Infinity``), and inf or nan only from their own
    text (``1e999`` reads as inf: it is no float's text)."""
    try:
        value = float(raw)
    except ValueError:
        raise BadValueError("not a number") from None
    if b"_" in raw or raw[:1] in (b"+", b"") or raw.strip() != raw:
        raise BadValueError("not a number's decimal text")
    if value - value != 0 and raw not in _NON_FINITE:  # inf or nan
        raise BadValueError("out of a float's range")
    return value


def _dec_bool(raw: bytes) -> bool:
    if raw == b"1":
        return True
    if raw == b"0":
        return False
    raise BadValueError("not a boolean (expected 1 or 0)")


def _check_type(*allowed: type, exclude: tuple[type, ...] = ()) -> Checker:
    names = " or ".join(a.__name__ for a in allowed)

    def check(value: Any) -> str | None:
        if isinstance(value, allowed) and not isinstance(value, exclude):
            return None
        return f"expected {names}, got {type(value).__name__}"

    return check


def _float_bytes(v: Any) -> bytes:
    return repr(float(v)).encode()


def _check_str(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected str, got {type(value).__name__}"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text with a lone surrogate cannot be stored as UTF-8"
    return None


def _check_id_str(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected str, got {type(value).__name__}"
    if not value.isascii():
        try:
            value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return ("text with a lone surrogate other than U+DC80..U+DCFF (which stand for "
                    "undecodable id bytes) cannot be stored")
    return None


def _dec_id_str(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


ID_STR: tuple[Encoder, Decoder, Checker] = (
    lambda v: v.encode("utf-8", "surrogateescape"), _dec_id_str, _check_id_str)
"""Encoder, decoder and checker of a ``str`` id: an id is bytes, its str form those bytes
decoded as UTF-8 with ``surrogateescape`` (os.fsdecode's convention), so a key another
program wrote with undecodable id bytes is read, scanned and queried as the str holding
U+DC80..U+DCFF for them and addresses that very key again; any other lone surrogate is
refused (no bytes stand for it). Field values of type str stay strict UTF-8 text."""

_check_number = _check_type(float, int, exclude=(bool,))
_check_int_type = _check_type(int, exclude=(bool,))


def _check_int(value: Any) -> str | None:
    """An int (not a bool) that has decimal text in this interpreter (its digit limit:
    ``_args.int_too_long``)."""
    err = _check_int_type(value)
    return int_too_long(value) if err is None else err


def _check_float(value: Any) -> str | None:
    err = _check_number(value)
    if err is None and isinstance(value, int):
        try:
            exact = float(value) == value
        except OverflowError:
            return "an int this large does not fit a float field"
        if not exact:  # stored (and indexed) as a float, it would read back rounded
            return ("this int has no exact float (beyond 2**53 only some ints do): convert "
                    "it yourself if rounding is what you want")
    return err


def _check_offset(tp: type) -> Checker:
    """A datetime/time check that also refuses a UTC offset with a fraction of a second:
    its ISO text (``+00:00:00.000001``) reads back without the fraction (Python 3.11's
    fromisoformat), another instant (decided for issue 13: refused, not stored)."""
    check = _check_type(tp)

    def checked(value: Any) -> str | None:
        err = check(value)
        if err is None:
            offset = value.utcoffset()
            if offset is not None and offset.microseconds:
                return ("a UTC offset with a fraction of a second cannot be stored "
                        "exactly; use a whole-second offset")
        return err

    return checked


_SCALARS: dict[type, tuple[Encoder, Decoder, Checker]] = {
    str: (lambda v: v.encode("utf-8"), _dec_str, _check_str),
    int: (lambda v: str(int(v)).encode(), _dec_int, _check_int),
    float: (_float_bytes, _dec_float, _check_float),
    bool: (lambda v: b"1" if v else b"0", _dec_bool, _check_type(bool)),
    bytes: (bytes, bytes, _check_type(bytes)),
    decimal.Decimal: (
        lambda v: str(v).encode(),
        _dec_text(exact(decimal.Decimal, str)),
        _check_type(decimal.Decimal),
    ),
    uuid.UUID: (lambda v: str(v).encode(), _dec_text(exact(uuid.UUID, str)),
                _check_type(uuid.UUID)),
    dt.datetime: (
        lambda v: v.isoformat().encode(),
        _dec_text(exact(dt.datetime.fromisoformat, dt.datetime.isoformat)),
        _check_offset(dt.datetime),
    ),
    dt.date: (
        lambda v: v.isoformat().encode(),
        _dec_text(exact(dt.date.fromisoformat, dt.date.isoformat)),
        _check_type(dt.date, exclude=(dt.datetime,)),
    ),
    dt.time: (
        lambda v: v.isoformat().encode(),
        _dec_text(exact(dt.time.fromisoformat, dt.time.isoformat)),
        _check_offset(dt.time),
    ),
}

NUMERIC = {int: "int", float: "float"}


def _enum_scalar(tp: type[enum.Enum]) -> tuple[Encoder, Decoder, Checker]:
    if issubclass(tp, enum.Flag):
        # a combination of members (R | W) and the empty flag are values of the class but
        # not among its members: they have no member text to be stored as
        raise ModelDefinitionError(
            f"enum {tp.__name__} is a Flag: its combined and empty values have no stored "
            "text of their own; store the int value (an int field) or a list of members")
    by_member: dict[Any, bytes] = {}
    for member in tp:
        value = member.value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ModelDefinitionError(
                f"enum {tp.__name__} has a value of type {type(value).__name__}; "
                "only str and int enum values can be stored"
            )
        if isinstance(value, int) and (why := int_too_long(value)) is not None:
            raise ModelDefinitionError(
                f"enum {tp.__name__}: member {member.name} has {why}; it cannot be stored")
        try:
            raw = str(value).encode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate: no UTF-8 text can hold it, so no stored text could decode
            raise ModelDefinitionError(
                f"enum {tp.__name__}: member {member.name} has a value ({value!r}) that "
                "is not UTF-8-encodable text; it cannot be stored") from None
        for other, taken in by_member.items():
            if taken == raw:
                # the stored text is the member's identity (hash fields, flat leaves, index
                # entries, JSON keys): two members of one text could never be told apart
                raise ModelDefinitionError(
                    f"enum {tp.__name__}: members {other.name} ({other.value!r}) and "
                    f"{member.name} ({value!r}) are both stored as {str(value)!r}; give "
                    "each member a value of its own text")
        by_member[member] = raw
    by_raw = {raw: member for member, raw in by_member.items()}

    def decode(raw: bytes) -> Any:
        try:
            return by_raw[raw]
        except KeyError:
            raise BadValueError(f"not a value of {tp.__name__}") from None

    return by_member.__getitem__, decode, _check_type(tp)


def scalar(tp: Any) -> tuple[Encoder, Decoder, Checker] | None:
    """Encoder, decoder and checker of a scalar type, or None if ``tp`` is not a scalar
    (also when it is not hashable: a list or an object given where a type goes)."""
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return _enum_scalar(tp)
        return _SCALARS.get(tp)
    try:
        return _SCALARS.get(tp)
    except TypeError:  # unhashable: no type
        return None


def is_type_form(tp: Any) -> bool:
    """Whether ``tp`` can be a type annotation redmodel reads: a class, or a typing form
    (``list[int]``, ``X | None``, ``Literal[...]``). Not an instance, a string, None."""
    return isinstance(tp, type) or typing.get_origin(tp) is not None


def type_shown(tp: Any) -> str:
    """``tp`` for an error message: its repr when it is a type form, else only the type of
    the object given for it (whose repr may show a secret)."""
    return repr(tp) if is_type_form(tp) else f"a {type(tp).__name__} object"


# ---- canonical index text ---------------------------------------------------------------


class NotIndexableError(ValueError):
    """A value that no index entry can stand for (a NaN equals nothing, not even itself)."""


def _canonical_float(v: Any) -> str:
    f = float(v)
    if math.isnan(f):
        raise NotIndexableError("NaN equals nothing, so an index cannot hold it")
    return repr(f + 0.0)  # -0.0 == 0.0: adding 0.0 makes -0.0 0.0


def _canonical_decimal(v: decimal.Decimal) -> str:
    if v.is_nan():
        raise NotIndexableError("a Decimal NaN equals nothing, so an index cannot hold it")
    if v.is_infinite():
        return "-Infinity" if v < 0 else "Infinity"
    if not v:
        return "0"  # 0, -0, 0E-5, 0.000 are all equal
    sign, digits, exponent = v.as_tuple()
    assert isinstance(exponent, int)
    while len(digits) > 1 and digits[-1] == 0:  # 1.0, 1.00, 1E+0: one text; exact, unlike
        digits, exponent = digits[:-1], exponent + 1  # normalize(), which rounds to 28 digits
    return str(decimal.Decimal((sign, digits, exponent)))


def _canonical_datetime(v: dt.datetime) -> str:
    if v.utcoffset() is None:
        return v.isoformat()  # naive: never equal to an aware one
    try:
        return v.astimezone(dt.timezone.utc).isoformat()  # one instant, one text
    except OverflowError:
        raise NotIndexableError("its instant in UTC falls outside the years 1..9999") from None


def canonical_text(tp: Any) -> Callable[[Any], str]:
    """value -> its canonical text for an index entry (before escaping): values equal in
    Python (``==``) give one text, so equality lookups and unique constraints follow
    ``==`` (``Decimal('1.0')`` and ``Decimal('1.00')``, one instant in two time zones,
    ``-0.0`` and ``0.0``). The stored field keeps the value as given. Raises
    :class:`NotIndexableError` for a NaN."""
    if tp is float:
        return _canonical_float
    if tp is decimal.Decimal:
        return _canonical_decimal
    if tp is dt.datetime:
        return _canonical_datetime
    found = scalar(tp)
    assert found is not None
    encode = found[0]
    return lambda v: encode(v).decode("utf-8", "surrogateescape")


# ---- NaN where equality is the meaning: set members, dict keys ---------------------------

NAN_MEMBER = ("a set member cannot be or hold a NaN: a NaN equals nothing, not even another "
              "NaN, so the set could not be read back equal (nor keep two NaNs as two "
              "members); use a list, or leave the NaN out")
NAN_KEY = ("a dict key cannot be a NaN: a NaN equals nothing, not even another NaN, so the "
           "dict could not be read back equal (nor keep two NaN keys as two keys)")


def may_hold_nan(tp: Any, _within: tuple[type, ...] = ()) -> bool:
    """Whether a value of the type ``tp`` can be or hold a NaN (a float or a Decimal, at
    any depth: in an Optional, a tuple, list, set, dict, nested class)."""
    if tp is float or tp is decimal.Decimal:
        return True
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return False  # a member is one object, read back as itself
    if is_model_class(tp):
        if tp in _within:
            return False
        try:
            attrs.resolve_types(tp)
        except NameError:
            return True
        return any(may_hold_nan(f.type, (*_within, tp)) for f in attrs.fields(tp))
    return any(may_hold_nan(a, _within) for a in typing.get_args(tp) if is_type_form(a))


def holds(value: Any, leaf: Callable[[Any], bool | None], _depth: int = 0) -> bool:
    """Whether ``value`` is or holds (in a tuple, list, set, dict key or value, attrs or
    dataclass object's field) a value ``leaf`` answers True for; ``leaf`` answers None for
    a value to look inside (a walk of at most 200 levels)."""
    found = leaf(value)
    if found is not None or _depth > 200:
        return bool(found)
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(holds(v, leaf, _depth + 1) for v in value)
    if isinstance(value, dict):
        return any(holds(k, leaf, _depth + 1) or holds(v, leaf, _depth + 1)
                   for k, v in value.items())
    if attrs.has(type(value)):
        return any(holds(getattr(value, a.name, None), leaf, _depth + 1)
                   for a in attrs.fields(type(value)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(holds(getattr(value, f.name, None), leaf, _depth + 1)
                   for f in dataclasses.fields(value))
    return False


def _nan(value: Any) -> bool | None:
    if isinstance(value, enum.Enum):  # (a member is itself, whatever its value)
        return False
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, decimal.Decimal):
        return value.is_nan()
    return False if isinstance(value, (str, bytes, int)) else None


def holds_nan(value: Any) -> bool:
    """Whether ``value`` is or holds (:func:`holds`) a float or Decimal NaN: a value that
    is unequal to itself, so a set or dict holding it cannot be read back equal, nor keep
    two of them apart (json and yaml give every NaN as one object; a key name or set
    member in Redis is one text)."""
    return holds(value, _nan)


# ---- checkers for any supported type ---------------------------------------------------

_SEQUENCES = (list, tuple, set, frozenset)


def make_checker(tp: Any, where: str, _within: tuple[type, ...] = (), *,
                 sealed: bool = False) -> Checker:
    """A checker for values of ``tp``; raises ModelDefinitionError if ``tp`` is unsupported.

    ``where`` names the model and field for the declaration error. ``_within`` holds the
    nested classes being walked: a class found inside itself (a linked list, a tree) is
    refused, since every checker, encoder and decoder is built per shape and a recursive
    class has no finite shape.

    An object of a strict subclass of a declared attrs class is refused wherever it is
    held (:func:`object_checker`): it would be stored, and read back, as the declared
    class. ``sealed``: values here are encoded whole by a chain that encrypts; where they
    are not, that refusal also says when the subclass is secret beyond the declared class
    (its model's chain or a field's own chain encrypts: docs/codecs.md, "Never skipped"),
    as it would reach Redis in plaintext.
    """
    inner, optional = optional_inner(tp)
    if optional:
        check_inner = make_checker(inner, where, _within, sealed=sealed)
        return lambda v: None if v is None else check_inner(v)
    found = scalar(tp)
    if found is not None:
        return found[2]
    if is_model_class(tp):
        return _struct_checker(tp, where, _within, sealed)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in _SEQUENCES:
        return _sequence_checker(origin, args, where, _within, sealed)
    if origin is dict:
        if len(args) != 2:
            raise ModelDefinitionError(f"{where}: dict needs key and value types")
        if scalar(args[0]) is None:
            raise ModelDefinitionError(
                f"{where}: dict keys must be a scalar type, not {type_shown(args[0])}"
            )
        return _dict_checker(args[0], args[1], where, _within, sealed)
    raise ModelDefinitionError(f"{where}: unsupported field type {type_shown(tp)}")


def _sequence_checker(
    origin: type, args: tuple[Any, ...], where: str, within: tuple[type, ...], sealed: bool
) -> Checker:
    if origin is tuple and len(args) >= 1 and args[-1] is not Ellipsis:
        items = [make_checker(a, where, within, sealed=sealed) for a in args]

        def check_fixed(v: Any) -> str | None:
            if not isinstance(v, tuple) or len(v) != len(items):
                return f"expected a tuple of {len(items)} items"
            for i, (item, c) in enumerate(zip(v, items, strict=True)):
                if (err := c(item)) is not None:
                    return at(f"[{i}]", err)
            return None

        return check_fixed
    if len(args) == 0 or (origin is tuple and len(args) != 2):
        raise ModelDefinitionError(f"{where}: {origin.__name__} needs an element type")
    element = make_checker(args[0], where, within, sealed=sealed)
    no_nan = origin in (set, frozenset) and may_hold_nan(args[0])
    ordered = origin in (list, tuple)

    def check(v: Any) -> str | None:
        if not isinstance(v, origin):
            return f"expected {origin.__name__}, got {type(v).__name__}"
        items: Iterable[Any] = typing.cast("Iterable[Any]", v)
        for i, item in enumerate(items):
            if (err := element(item)) is not None:
                return at(f"[{i}]" if ordered else "[<member>]", err)
        if no_nan and any(holds_nan(item) for item in items):
            return NAN_MEMBER
        return None

    return check


def _dict_checker(key_tp: Any, value_tp: Any, where: str, within: tuple[type, ...],
                  sealed: bool) -> Checker:
    check_key = make_checker(key_tp, where, within, sealed=sealed)
    check_value = make_checker(value_tp, where, within, sealed=sealed)
    no_nan = may_hold_nan(key_tp)

    def check(v: Any) -> str | None:
        if not isinstance(v, dict):
            return f"expected dict, got {type(v).__name__}"
        for i, (k, item) in enumerate(v.items()):
            if (err := check_key(k)) is not None:  # a scalar: its reason says it all
                return err
            if (err := check_value(item)) is not None:
                return at(f"[<key {i}>]", err)
        if no_nan and any(holds_nan(k) for k in v):
            return NAN_KEY
        return None

    return check


def _struct_checker(cls: type, where: str, within: tuple[type, ...], sealed: bool) -> Checker:
    if cls in within:
        cycle = " -> ".join(c.__name__ for c in (*within[within.index(cls):], cls))
        raise ModelDefinitionError(
            f"{where}: the nested class {cls.__name__} contains itself ({cycle}); "
            "recursive nested classes are not supported"
        )
    within = (*within, cls)
    try:
        attrs.resolve_types(cls)
    except NameError as e:
        raise ModelDefinitionError(f"{where}: cannot resolve the annotation {e.name!r}") from None
    fields = [
        (f.name, make_checker(f.type, f"{where}.{f.name}", within, sealed=sealed))
        for f in attrs.fields(cls)
        if f.init
    ]
    return object_checker(cls, fields, sealed)


def object_checker(cls: type, fields: Sequence[tuple[str, Checker]], sealed: bool) -> Checker:
    """A checker for objects of the attrs class ``cls`` whose attribute ``name`` is checked
    by ``check``, for each ``(name, check)`` of ``fields``.

    An object of a strict subclass of ``cls`` is refused wherever it is held: it would be
    stored as a ``cls`` (only ``cls``'s fields, by ``cls``'s hooks) and read back as one,
    without the subclass's own fields and unequal to it (attrs' ``==`` compares classes).
    The reason names both classes and what would be lost (:func:`subclass_reason`).
    ``sealed``: the object is encoded whole by a chain that encrypts; else the reason also
    says when the subclass is secret beyond ``cls`` (docs/codecs.md, "Never skipped"). A
    nested field stored field by field (the hash and flat layouts) passes the checkers of
    its fields' own specs: each is sealed where that field's own chain (or the model's
    default chain) encrypts it whole (attack 33A F2)."""

    def check(v: Any) -> str | None:
        if type(v) is not cls:  # (the common case costs this one test)
            if cls not in type(v).__mro__:  # (isinstance would take an ABC's registered
                # class, or a __class__ property's answer, for a subclass: neither is one)
                return _not_the_class(cls, type(v))
            return subclass_reason(cls, type(v), sealed)
        for name, c in fields:
            if (err := c(getattr(v, name))) is not None:
                return at(f".{name}", err)
        return None

    return check


def subclass_reason(cls: type, sub: type, sealed: bool) -> Reason:
    """Why an object of ``sub``, a strict subclass of ``cls``, cannot be held where ``cls``
    is declared: what it would lose (its own fields, else its class), and, unless
    ``sealed``, that it would reach Redis in plaintext when ``sub`` is secret beyond
    ``cls``. Names classes and fields only, never a value."""
    # _hidden reads declarations through redmodel.codecs, which imports this module
    from redmodel._models._hidden import adds_secrecy  # noqa: PLC0415

    declared = {a.name for a in attrs.fields(cls)}
    try:
        extra = [a.name for a in attrs.fields(sub) if a.name not in declared]
    except (TypeError, attrs.exceptions.NotAnAttrsClassError):  # a plain subclass
        extra = []
    if extra:
        lost = (f"without its field{'s' if len(extra) > 1 else ''} "
                f"{', '.join(extra)}, and unequal to what was saved")
    else:
        lost = "unequal to what was saved (attrs' == compares classes)"
    base = indefinite(cls.__name__)
    text = (f"{indefinite(sub.__name__)} where {cls.__name__} is declared would be stored "
            f"as {base} and read back as one, {lost}; hold {base} there, or declare "
            f"{sub.__name__} in its place")
    secret = None if sealed else adds_secrecy(cls, sub)
    if secret:
        text = (f"{secret}, which would be ignored here: {indefinite(sub.__name__)} held as "
                f"{base} is stored as one, in plaintext. Also, {text}")
    return at("", text)


def _not_the_class(cls: type, got: type) -> str:
    """Why an object of ``got`` is no ``cls``; where the two share a name (a class declared
    again, another module's ``Part``), each is named with its module."""
    if got.__name__ != cls.__name__:
        return f"expected {cls.__name__}, got {got.__name__}"
    where, want = f"{got.__module__}.{got.__qualname__}", f"{cls.__module__}.{cls.__qualname__}"
    return (f"expected {want}, got another class of that name "
            f"({where}{', declared again' if where == want else ''})")


def indefinite(name: str) -> str:
    """``name`` with its indefinite article (by its first letter: "an Item", "a Part")."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


class Reason(str):
    """A checker's reason for a value found inside the one checked (a nested object's
    field, a list item, a dict value), with where it sits: ``path`` (``.name``, ``[0]``,
    ``[<member>]`` for a set member, ``[<key 0>]`` for the value of a dict's first key:
    a key is never quoted, it may be secret) and ``text``. As a str it reads ``path:
    text`` (``name: text`` for a nested field, as it always did); :func:`located` gives
    the message that names the whole path (``Car.parts[0]: text``)."""

    path: str
    text: str


def at(segment: str, err: str) -> Reason:
    """The reason ``err``, found at ``segment`` of the value checked, as a :class:`Reason`
    (``segment`` put before the path ``err`` already has)."""
    path, text = (segment + err.path, err.text) if isinstance(err, Reason) else (segment, err)
    shown = path.removeprefix(".")
    reason = Reason(f"{shown}: {text}" if shown else text)
    reason.path = path
    reason.text = text
    return reason


def located(err: str, where: str) -> str:
    """The message of the reason ``err`` of a value held at ``where`` (``Car.parts``):
    ``Car.parts[0].name: text`` for a :class:`Reason`, else ``err`` itself."""
    if isinstance(err, Reason):
        return f"{where}{err.path}: {err.text}"
    return err
