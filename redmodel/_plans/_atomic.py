"""Server-side conditional updates: one Lua script, no WATCH, no retry.

:func:`incr_fields` adds to several numeric fields of one object at once, only if the object
exists and every bounded field stays within its bound afterwards; otherwise nothing changes.
It is the hot-key alternative to an optimistic transaction (see docs/transactions.md): the
check and the change run inside Redis, so concurrent callers never conflict. ``incr`` is
the same plan with one change.

Numbers are exact: an int is checked and added as exact 64-bit text inside the script
(never through a Lua double), so overflow, floors and ceilings are decided before anything
is written. On an indexed model the index write script does it, so the entries of every
indexed field it changes move with the values, in the same script.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from redmodel._errors import (
    ConditionFailedError,
    DecodeError,
    TransactionError,
    ValidationError,
    key_text,
)
from redmodel._indexes._specs import EXACT_INT, SEP, IndexedField
from redmodel._indexes._writes import TxHints, Write, refusal, run_writes, status
from redmodel._layouts._hash import INT64, float_text, int_text
from redmodel._layouts._pick import layout_of
from redmodel._models._keys import unescape
from redmodel._models._specs import FieldSpec, ModelSpec, increment_kind, spec_of
from redmodel._plan import Batch, Plan, script

__all__ = ["ConditionFailedError", "incr_fields"]

# KEYS: the object. ARGV: the counters (lua/counter_lib.lua, read_counters).
_INCR_FIELDS = script("incr_fields")

_LIMITS = {"int64": ("64-bit counter", INT64), "exact": ("exact range of a range index",
           (-EXACT_INT, EXACT_INT)), "double": ("finite float", (-math.inf, math.inf))}


@attrs.frozen
class _Change:
    path: str
    stored: str  # hash field name
    leaf: FieldSpec
    amount: Any
    index: IndexedField | None


def _number_field(spec: ModelSpec, key: str, path: str) -> tuple[str, FieldSpec]:
    """The stored hash-field name of an int/float field (dotted paths allowed)."""
    if not isinstance(path, str):
        raise ValidationError(f"a field is named by a str (dotted for a nested one), got "
                              f"{path!r}", model=spec.name, key=key)
    chain = spec.path(path)
    leaf = chain[-1]
    if increment_kind(chain) is None:
        raise ValidationError(
            "only int and float fields can be changed or bounded", model=spec.name, key=key,
            field=path,
        )
    return spec.delimiter.join(f.stored for f in chain), leaf


def _names(spec: ModelSpec, path: str) -> list[str]:
    """The stored hash-field name of a field, then its earlier ones (old_names= at any
    level of the path), in the order a read tries them."""
    chain = spec.path(path)
    return [spec.delimiter.join(p) for p in itertools.product(
        *[(f.stored, *f.old_stored) for f in chain])]


def _wire(spec: ModelSpec, path: str) -> str:
    """A field as the counter script takes it: 'name\nold\n...' (no stored name holds a
    newline); the script reads an old name when the current one holds nothing, and moves
    the value to the current name as it writes."""
    return "\n".join(_names(spec, path))


def default_text(leaf: FieldSpec, value: Any = attrs.NOTHING) -> str | None:
    """What an increment of ``leaf`` counts from when the object stores it nowhere, as
    exact text: its default (a Factory's value), what a read of the object gives it; None
    (0, as HINCRBY counts) for an optional field (a read gives None), a field without a
    default (a read fails) or a Factory(takes_self=True) (computed from the object:
    ``value``, the object's attribute as read, when the caller read it). A default no
    counter can hold (an int beyond 64 bits, a float inf or nan) is sent as it is ('inf',
    'nan', the int's digits): the script refuses an increment of it when the object
    stores the field nowhere (LIMIT), and compares a bound with it."""
    if leaf.optional or not leaf.has_default:
        return None
    if value is attrs.NOTHING:
        value = leaf.default
        factory: Any = attrs.Factory
        if isinstance(value, factory):
            if value.takes_self:
                return None
            value = value.factory()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if leaf.numeric == "int":
        return str(int(value)) if isinstance(value, int) else None
    try:
        return repr(float(value))
    except OverflowError:  # an int default beyond every double
        return "-inf" if value < 0 else "inf"


def takes_self(leaf: FieldSpec) -> bool:
    """Whether ``leaf``'s default is a Factory(takes_self=True)."""
    factory: Any = attrs.Factory
    return not leaf.optional and isinstance(leaf.default, factory) and \
        bool(leaf.default.takes_self)


def _kind(leaf: FieldSpec, default: str | None) -> str:
    """A counter's kind as the script takes it: 'i' | 'f', then ':' and the text it
    counts from when stored nowhere (lua/counter_lib.lua)."""
    kind = "i" if leaf.numeric == "int" else "f"
    return kind if default is None else f"{kind}:{default}"


def _amount(spec: ModelSpec, key: str, path: str, value: Any, leaf: FieldSpec) -> str:
    where = {"model": spec.name, "key": key, "field": path}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"an amount must be a number, got {type(value).__name__}",
                              **where)
    if leaf.numeric == "int":
        if not isinstance(value, int):
            raise ValidationError("an amount of an int field must be an int, not a float",
                                  **where)
        return int_text(value, "the amount", where)
    return float_text(value, "the amount", where)


def _bound(spec: ModelSpec, key: str, path: str, value: Any, leaf: FieldSpec,
           kind: str) -> str:
    """A bound as exact text: for an int field, the int bound it means (a floor of 0.5 is
    1, a ceiling of 0.5 is 0), kept within 19 digits (every 64-bit value is inside)."""
    where = {"model": spec.name, "key": key, "field": path}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"a {kind} must be a number, got {type(value).__name__}",
                              **where)
    if leaf.numeric == "float":
        return float_text(value, f"a {kind}", where)
    if isinstance(value, float):
        float_text(value, f"a {kind}", where)
        value = math.ceil(value) if kind == "floor" else math.floor(value)
    return str(max(-(10**19) + 1, min(10**19 - 1, value)))


def _parse(leaf: FieldSpec, raw: Any) -> Any:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return int(text) if leaf.numeric == "int" else float(text)


def _changes(spec: ModelSpec, key: str, changes: Mapping[str, float]) -> list[_Change]:
    out = []
    indexes = spec.indexes
    for path, amount in changes.items():
        stored, leaf = _number_field(spec, key, path)
        text = _amount(spec, key, path, amount, leaf)
        index = indexes.fields.get(path) if indexes is not None else None
        if index is not None:
            where = {"model": spec.name, "key": key, "field": path}
            if indexes is not None and any(path in u.fields for u in indexes.uniques):
                raise ValidationError("a unique field is changed with update(), not "
                                      "incremented", **where)
            if index.eq and (leaf.numeric != "int" or index.text(1) != "1"):
                raise ValidationError("a float with an equality index is changed with "
                                      "update(): its entry is its exact text", **where)
        out.append(_Change(path, stored, leaf, text, index))
    return out


def incr_fields(
    model: type,
    id_value: Any,
    changes: Mapping[str, float],
    *,
    floor: Mapping[str, float] | None = None,
    ceiling: Mapping[str, float] | None = None,
    hints: TxHints | None = None,
) -> Plan[dict[str, Any]]:
    """Plan: add ``changes`` to numeric fields of one object, all or nothing.

    Every change applies (HINCRBY / HINCRBYFLOAT inside one EVALSHA) only if the object
    exists, no int leaves the 64-bit range (nor, for a range-indexed int, -2**53..2**53),
    no float becomes infinite and, after the change, every field in ``floor`` is >= its
    floor and every field in ``ceiling`` is <= its ceiling. Returns the new values
    ``{field: int | float}``, ints exact over the whole 64-bit range. On an indexed model
    the entries of every indexed field changed follow in the same script.

    Raises (nothing changed in each case): :class:`ValidationError` before sending for an
    unknown or non-numeric field, a wrongly typed, infinite or NaN amount or bound;
    :class:`NotFoundError` when the object does not exist; :class:`ConditionFailedError`
    naming the field whose bound (or limit) would be crossed; :class:`DecodeError` when a
    stored value is not a number. A field stored nowhere counts from what a read gives it:
    its default for a non-optional field with one (see :func:`default_text`), else 0. Bounds of an
    int field are compared exactly; of a float field, as doubles.
    ``hints``: given by a transaction (see _indexes._writes.TxHints).
    """
    spec = spec_of(model)
    key = spec.key_for(id_value)
    if spec.layout != "hash":
        raise ValidationError("incr_fields needs the hash layout", model=spec.name, key=key)
    for what, given in (("changes", changes), ("floor", floor), ("ceiling", ceiling)):
        if not isinstance(given, Mapping) and (given is not None or what == "changes"):
            raise ValidationError(
                f"{what} must be a mapping of field name to number ({{\"n\": 1}}), got "
                f"{type(given).__name__}", model=spec.name, key=key)
    if not changes:
        raise ValidationError("nothing to change", model=spec.name, key=key)
    todo = _changes(spec, key, changes)
    paths = [c.path for c in todo]
    for limits in (floor or {}, ceiling or {}):
        paths += [p for p in limits if isinstance(p, str)]
    read = yield from _read_defaults(spec, key, paths)
    args: list[Any] = [len(todo)]
    for c in todo:
        window = c.index is not None and c.index.range and c.leaf.numeric == "int"
        args += [_wire(spec, c.path), _kind(c.leaf, default_text(c.leaf, read.get(
            c.path, attrs.NOTHING))), c.amount, "1" if window else "0"]
    bounds: list[tuple[str, str, Any, FieldSpec]] = []
    for kind, limits in (("floor", floor or {}), ("ceiling", ceiling or {})):
        for path, bound in limits.items():
            _, leaf = _number_field(spec, key, path)
            bounds.append((path, kind, bound, leaf))
            args += [_wire(spec, path), kind, _bound(spec, key, path, bound, leaf, kind),
                     _kind(leaf, default_text(leaf, read.get(path, attrs.NOTHING)))]
    args.insert(1 + 4 * len(todo), len(bounds))
    fields = {c.stored: c.path for c in todo} | {
        _number_field(spec, key, p)[0]: p for p, _, _, _ in bounds}
    indexed = [c for c in todo if c.index is not None]
    if not indexed:
        replies = yield Batch([_INCR_FIELDS.call([key], args)], write=True, keys=(key,))
        reply = replies[0]
    else:
        reply = yield from _indexed_incr(spec, key, todo, args, hints, read)
    return _result(spec, key, todo, bounds, fields, reply, hints is not None)


def _read_defaults(spec: ModelSpec, key: str, paths: list[str]) -> Plan[dict[str, Any]]:
    """For counters whose default is a Factory(takes_self=True) (computed from the
    object): the object read (WATCHed in a transaction) and each such field's value as
    a read gives it (its stored value, or the factory's), {path: value}; {} when there is
    none, or when the object is missing or does not decode (then such a field stored
    nowhere counts from 0)."""
    todo = []
    for path in dict.fromkeys(paths):
        try:
            if takes_self(spec.path(path)[-1]):
                todo.append(path)
        except ValidationError:
            continue  # (refused by the caller's checks)
    if not todo:
        return {}
    layout = layout_of(spec)
    replies = yield Batch([layout.read(key)], keys=(key,))
    text = spec.id_of_key(key)
    assert text is not None
    try:
        obj = layout.decode(key, unescape(text), replies[0])
    except DecodeError:
        return {}
    if obj is None:
        return {}
    out: dict[str, Any] = {}
    for path in todo:
        value = obj
        for part in path.split("."):
            value = getattr(value, part)
        out[path] = value
    return out


def _indexed_incr(spec: ModelSpec, key: str, todo: list[_Change], args: list[Any],
                  hints: TxHints | None, read: dict[str, Any]) -> Plan[Any]:
    layout = layout_of(spec)
    names: list[Any] = []
    for c in todo:
        f = c.index
        names += [c.path if f else "", "1" if f and f.eq else "0", "1" if f and f.range else "0"]
    only = [c.path for c in todo if c.index is not None]
    eq = [c for c in todo if c.index is not None and c.index.eq]
    # outside a transaction, a token to pin the equality-indexed fields while asking for
    # their entry keys (lua/index_write.lua), so the resend lands whatever the amounts
    pin = [secrets.token_hex(8)] if eq and hints is None else []
    w: Write = layout.write(key, "incr", data=[*args, *names, *pin], only=only)  # type: ignore[union-attr]
    if hints is not None and eq:
        yield from _predict_eq(spec, key, w, eq, hints, read)
    elif eq:
        w.spread = _window(w.root, spec.delimiter, eq)
    replies = yield from run_writes([w], idempotent=False, hints=hints,
                                    what=f"incr {spec.name}")
    return replies[0]


SPREAD_MAX = 4096
"""At most this many values each side of a counter's value are declared in one resend."""


def _window(root: str, d: str, eq: list[_Change]) -> Callable[[list[str], int], list[str]]:
    """For a KEYS answer of an increment: besides the entries it names (the counter's
    value then, and that plus the amount), the entries of the values around them,
    8**round each side. Other clients incrementing the same counter move its value
    between the answer and the resend; with the window the resend still names it (a
    declared key the script does not touch costs nothing), so concurrent increments
    practically never run out of tries."""
    heads = {f"{root}eq{d}{c.path}{d}": c for c in eq}

    def spread(need: list[str], attempt: int) -> list[str]:
        width = min(SPREAD_MAX, 8 ** attempt)
        out: list[str] = []
        for k in need:
            for head, c in heads.items():
                if not k.startswith(head):
                    continue
                try:
                    value = int(unescape(k[len(head):]))
                except ValueError:
                    continue
                assert c.index is not None
                out += [head + c.index.text(v) for v in range(value - width, value + width + 1)]
        return out

    return spread


def _predict_eq(spec: ModelSpec, key: str, w: Write, eq: list[_Change],
                hints: TxHints, read: dict[str, Any]) -> Plan[None]:
    """In a transaction: the new equality entries of incremented ints (their values now,
    WATCHed, or as the writes queued before this one leave them), so the write declares
    their keys (it cannot ask after EXEC)."""
    raw = hints.raw_fields.get(key, set())  # a raw command queued before it (note_raw)
    for c in eq:
        if raw is None or raw.intersection(_names(spec, c.path)):
            # its value then is the raw command's, and its index entry the one before
            # MULTI (stale): an increment names the entries of neither
            raise TransactionError(
                f"incr {spec.name}: {c.path!r} of {key_text(key)} is an equality-indexed "
                "int a raw command of this transaction (tx.command) writes; the "
                "transaction cannot follow it to the entries the increment moves, so it "
                "was refused before MULTI and nothing was written: set the value with "
                "tx.update instead of the raw command (then incr it), or increment it "
                "in another transaction")
    replies = yield Batch([("HMGET", key, *_names(spec, c.path)) for c in eq], keys=(key,))
    after: dict[str, Any] = {}
    for c, raws in zip(eq, replies, strict=True):
        got = next((r for r in raws if r is not None), None)  # as the script reads it
        if got is None:  # stored nowhere: it counts from its default
            got = default_text(c.leaf, read.get(c.path, attrs.NOTHING))
        now = hints.predict_int(key, c.path, got)
        if now is None:
            continue  # not a number: the script refuses it
        assert c.index is not None
        new = now + int(c.amount)
        w.declare_lines([f"e{SEP}{c.path}{SEP}{c.index.text(new)}"])
        hints.ints[key, c.path] = new
        after[c.path] = new
    w.values = after


def _result(
    spec: ModelSpec,
    key: str,
    todo: list[_Change],
    bounds: list[tuple[str, str, Any, FieldSpec]],
    fields: dict[str, str],
    reply: Any,
    tx: bool = False,
) -> dict[str, Any]:
    word = status(reply)
    if word == "OK":
        return {c.path: _parse(c.leaf, v) for c, v in zip(todo, reply[1:], strict=True)}
    if word == "BOUND":
        path, kind, bound, leaf = bounds[int(reply[1]) - 1]
        amount = next((c.amount for c in todo if c.path == path), "0")
        raise ConditionFailedError(
            model=spec.name, key=key, field=path, kind=kind, bound=bound,
            current=_parse(leaf, reply[2]), change=_parse(leaf, amount))
    if word == "LIMIT":
        c = todo[int(reply[1]) - 1]
        limit, (low, high) = _LIMITS[reply[2].decode() if isinstance(reply[2], bytes)
                                     else str(reply[2])]
        side = reply[3].decode() if isinstance(reply[3], bytes) else str(reply[3])
        raise ConditionFailedError(
            model=spec.name, key=key, field=c.path, kind=side,
            bound=low if side == "floor" else high, current=_parse(c.leaf, reply[4]),
            change=_parse(c.leaf, c.amount), limit=limit)
    error = refusal(spec, key, reply, f"incr {spec.name}", fields, tx=tx)
    if error is not None:
        raise error
    raise AssertionError(f"unexpected reply {reply!r}")  # pragma: no cover
