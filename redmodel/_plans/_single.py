"""Single calls without a plan: the one batch a store's save, get, update, incr, delete or
exists of a *plain* hash model sends, and what its reply means. No I/O here; both stores
can use it (send the batch with ``_execute``, hand the reply to the answer).

A call qualifies when the plan it replaces is one batch and nothing else: the model uses
the hash layout without indexes or ``track_changes`` (no snapshot, no partial save, no
index write, no claim), the store has already checked the model in the registry (a first
use registers through the plan), and no transaction is open in this context. Anything
else answers None and the store runs the plan. What qualifies builds exactly the batch the
plan would yield (the same validation first, the same command from the same layout, the
same resend flag), so the link's decisions (:mod:`redmodel._transport._wire`) and the
errors are those of the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any

from redmodel._args import flag
from redmodel._layouts._hash import HashLayout, saved
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import ModelSpec, model_class
from redmodel._plan import ACTIVE_TRANSACTION, Batch
from redmodel._plans import _objects as _ops

__all__ = ["delete", "exists", "get", "incr", "save", "update"]

# model class -> its hash layout when its single calls qualify (False: they never do)
_PLAIN: dict[type, HashLayout | bool] = {}


def _plain(cls: type, checked: Container[type]) -> HashLayout | None:
    if not isinstance(cls, type):  # a model argument that is no class: before hashing it
        model_class(cls)
    if cls not in checked or ACTIVE_TRANSACTION.get() is not None:
        return None
    found = _PLAIN.get(cls)
    if found is None:
        spec = cls.__dict__.get("__redmodel__")
        layout = layout_of(spec) if isinstance(spec, ModelSpec) else None
        found = _PLAIN[cls] = isinstance(layout, HashLayout) and layout.plain and layout
    if found is False or found is True:
        return None
    if found.spec is not cls.__dict__.get("__redmodel__"):  # declared again: look again
        del _PLAIN[cls]
        return _plain(cls, checked)
    return found


Answer = tuple[Batch, Callable[[Any], Any]]


def save(obj: Any, ttl: Any, force: bool, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> the key) of ``_objects.save`` for a plain hash object."""
    if force is not False and force is not True:
        flag(force, "force")
    layout = _plain(type(obj), checked)
    if layout is None:
        return None
    spec = layout.spec
    key = spec.key_for(getattr(obj, spec.key.name))
    spec.check(obj)
    ms = _ops.ttl_ms(spec, ttl, key)
    command = layout.save_plain(key, obj, ms)  # force: always whole

    def answer(_: Any) -> str:
        saved(obj)
        return key

    # no ttl keeps the object's expiry: a copy finding it gone would revive it forever
    return Batch([command], write=True, idempotent=True, keys=(key,),
                 fragile=ms is None), answer


def get(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> the object or None) of ``_objects.get``."""
    layout = _plain(model, checked)
    if layout is None:
        return None
    key, text = _ops.id_str(layout.spec, id_value)
    return Batch([("HGETALL", key)], keys=(key,)), lambda r: layout.decode(key, text, r)


def update(model: type, id_value: Any, values: Mapping[str, Any],
           checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.update`` (its checks first)."""
    layout = _plain(model, checked)
    if layout is None:
        return None
    spec = layout.spec
    key = spec.key_builder()(id_value)[0]  # spec.key_for without its two calls
    if not values or spec.key.name in values:
        _ops.update_checked(spec, id_value, values)  # raises its ValidationError
    command = layout.update(key, values)
    assert isinstance(command, tuple)  # no index write: a plain command
    return Batch([command], write=True, idempotent=True, keys=(key,), fragile=True), bool


def incr(model: type, id_value: Any, field: str, amount: Any,
         checked: Container[type]) -> Answer | None:
    """(the batch, reply -> the new value or None: refused, nothing written, send
    incr_fields) of ``_objects.incr`` for an int field; None for another."""
    layout = _plain(model, checked)
    if layout is None:
        return None
    spec = layout.spec
    key = spec.key_builder()(id_value)[0]  # spec.key_for without its two calls
    command = _ops.short_incr(spec, key, field, amount)
    if command is None:
        return None
    return Batch([command], write=True, keys=(key,)), _ops.short_incr_result


def delete(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.delete``."""
    layout = _plain(model, checked)
    if layout is None:
        return None
    key = layout.spec.key_for(id_value)
    return Batch([("DEL", key)], write=True, keys=(key,)), bool


def exists(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.exists``."""
    layout = _plain(model, checked)
    if layout is None:
        return None
    key = layout.spec.key_for(id_value)
    return Batch([("EXISTS", key)], keys=(key,)), bool
