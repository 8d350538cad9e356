"""Server-side conditional updates: one Lua script, no WATCH, no retry.

:func:`incr_fields` adds to several numeric fields of one object at once, only if the object
exists and every bounded field stays within its bound afterwards; otherwise nothing changes.
It is the hot-key alternative to an optimistic transaction (see docs/transactions.md): the
check and the change run inside Redis, so concurrent callers never conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redmodel._errors import ConditionFailedError, DecodeError, NotFoundError, ValidationError
from redmodel._plan import Batch, Plan, script
from redmodel._schema import FieldSpec, ModelSpec, spec_of

__all__ = ["ConditionFailedError", "incr_fields"]




# ARGV: n, then n x (hash field, HINCRBY | HINCRBYFLOAT, amount),
#       m, then m x (hash field, floor | ceiling, bound).
# Replies: {0} no such key; {1, index of the failing bound, stored value};
#          {3, hash field} a stored value is not a number; {2, new value, ...} applied.
_INCR_FIELDS = script("incr_fields")


def _number_field(spec: ModelSpec, key: str, path: str) -> tuple[bytes, FieldSpec]:
    """The stored hash-field name of an int/float field (dotted paths allowed)."""
    chain = spec.path(path)
    leaf = chain[-1]
    if leaf.numeric is None:
        raise ValidationError(
            "only int and float fields can be changed or bounded", model=spec.name, key=key,
            field=path,
        )
    name = spec.delimiter.encode().join(f.stored.encode() for f in chain)
    return name, leaf


def _check_number(spec: ModelSpec, key: str, path: str, value: Any, leaf: FieldSpec,
                  what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{what} must be a number, got {type(value).__name__}",
                              model=spec.name, key=key, field=path)
    if what == "an amount" and leaf.numeric == "int" and not isinstance(value, int):
        raise ValidationError(f"{what} of an int field must be an int, not a float",
                              model=spec.name, key=key, field=path)
    return str(value) if isinstance(value, int) else repr(float(value))


def _parse(leaf: FieldSpec, raw: Any) -> float:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return int(text) if leaf.numeric == "int" else float(text)


def incr_fields(
    model: type,
    id_value: Any,
    changes: Mapping[str, float],
    *,
    floor: Mapping[str, float] | None = None,
    ceiling: Mapping[str, float] | None = None,
) -> Plan[dict[str, Any]]:
    """Plan: add ``changes`` to numeric fields of one object, all or nothing.

    Every change applies (HINCRBY / HINCRBYFLOAT inside one EVALSHA) only if the object
    exists and, after the change, every field in ``floor`` is >= its floor and every field
    in ``ceiling`` is <= its ceiling. Returns the new values ``{field: int | float}``.

    Raises (nothing changed in each case): :class:`ValidationError` before sending for an
    unknown or non-numeric field or a wrongly typed amount; :class:`NotFoundError` when the
    object does not exist; :class:`ConditionFailedError` naming the field whose bound would
    be crossed; :class:`DecodeError` when a stored value is not a number. A missing field
    counts as 0, like HINCRBY.
    Bounds are compared as Lua numbers (doubles), exact for ints up to 2**53.
    """
    spec = spec_of(model)
    key = spec.key_for(id_value)
    if spec.layout != "hash":
        raise ValidationError("incr_fields needs the hash layout", model=spec.name, key=key)
    if not changes:
        raise ValidationError("nothing to change", model=spec.name, key=key)
    leaves: dict[str, FieldSpec] = {}
    by_stored: dict[bytes, str] = {}
    args: list[Any] = [len(changes)]
    for path, amount in changes.items():
        name, leaf = _number_field(spec, key, path)
        args += [name, "HINCRBY" if leaf.numeric == "int" else "HINCRBYFLOAT",
                 _check_number(spec, key, path, amount, leaf, "an amount")]
        leaves[path] = leaf
        by_stored[name] = path
    bounds: list[tuple[str, str, float]] = []
    for kind, limits in (("floor", floor or {}), ("ceiling", ceiling or {})):
        for path, bound in limits.items():
            name, leaf = _number_field(spec, key, path)
            args_bound = _check_number(spec, key, path, bound, leaf, f"a {kind}")
            bounds.append((path, kind, bound))
            leaves.setdefault(path, leaf)
            by_stored.setdefault(name, path)
            args += [name, kind, args_bound]
    args.insert(1 + 3 * len(changes), len(bounds))
    call = _INCR_FIELDS.call([key], args)
    replies = yield Batch([call], write=True, keys=(key,))
    return _result(spec, key, changes, leaves, bounds, by_stored, replies[0])


def _result(
    spec: ModelSpec,
    key: str,
    changes: Mapping[str, float],
    leaves: Mapping[str, FieldSpec],
    bounds: list[tuple[str, str, float]],
    by_stored: Mapping[bytes, str],
    reply: Any,
) -> dict[str, Any]:
    status = int(reply[0])
    if status == 0:
        raise NotFoundError(spec.name, key)
    if status == 1:
        path, kind, bound = bounds[int(reply[1])]
        raise ConditionFailedError(
            model=spec.name, key=key, field=path, kind=kind, bound=bound,
            current=_parse(leaves[path], reply[2]), change=changes.get(path, 0),
        )
    if status == 3:
        raw = reply[1] if isinstance(reply[1], bytes) else str(reply[1]).encode()
        raise DecodeError("stored value is not a number", model=spec.name, key=key,
                          field=by_stored.get(raw, raw.decode("utf-8", "replace")))
    return {path: _parse(leaves[path], value)
            for path, value in zip(changes, reply[1:], strict=True)}
