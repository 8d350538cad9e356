"""Single calls without a plan: the one batch a store's save, get, update, incr, delete or
exists of a *plain* hash model (and the save and get of a flat model) sends, and what its
reply means. No I/O here; both stores can use it (send the batch with ``_execute``, hand
the reply to the answer; an answer that is a :class:`Then` is the plan to run on from
there).

A call qualifies when the plan it replaces is one batch and nothing else: the model uses
the hash layout without indexes or ``track_changes`` (no snapshot, no partial save, no
index write, no claim), the store has already checked the model in the registry (a first
use registers through the plan), and no transaction is open in this context. Anything
else answers None and the store runs the plan. What qualifies builds exactly the batch the
plan would yield (the same validation first, the same command from the same layout, the
same resend flag), so the link's decisions (:mod:`redmodel._transport._wire`) and the
errors are those of the plan.

A flat model's save and get qualify too (the flat layout has no index, snapshot or
claim): the first batch of ``_objects.save`` / ``_objects.get``, built as they build it.
Its reply is the answer unless the script asks for leaves it was not given (``KEYS``):
then the answer is the plan's own rest (``send_write`` / ``read_batch`` given that first
reply), so the commands sent are the plan's, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any

from redmodel._args import flag
from redmodel._indexes._writes import needed_keys, refusal
from redmodel._layouts._flat import FlatLayout, read_batch, send_write, write_batch
from redmodel._layouts._hash import HashLayout, saved
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import ModelSpec, model_class
from redmodel._plan import ACTIVE_TRANSACTION, Batch, Plan
from redmodel._plans import _objects as _ops

__all__ = ["Then", "delete", "exists", "get", "incr", "save", "update"]

# model class -> its layout when its single calls qualify: a plain hash model's or a flat
# model's (False: they never do)
_SINGLE: dict[type, HashLayout | FlatLayout | bool] = {}


class Then:
    """An answer that is not the call's result yet: ``plan`` goes on from the reply (the
    store runs it and returns what it returns)."""

    __slots__ = ("plan",)

    def __init__(self, plan: Plan[Any]) -> None:
        self.plan = plan


def _layout(cls: type, checked: Container[type]) -> HashLayout | FlatLayout | None:
    if not isinstance(cls, type):  # a model argument that is no class: before hashing it
        model_class(cls)
    if cls not in checked or ACTIVE_TRANSACTION.get() is not None:
        return None
    found = _SINGLE.get(cls)
    if found is None:
        spec = cls.__dict__.get("__redmodel__")
        layout = layout_of(spec) if isinstance(spec, ModelSpec) else None
        found = _SINGLE[cls] = (
            layout if isinstance(layout, FlatLayout)
            or (isinstance(layout, HashLayout) and layout.plain) else False)
    if found is False or found is True:
        return None
    if found.spec is not cls.__dict__.get("__redmodel__"):  # declared again: look again
        _SINGLE.pop(cls, None)  # (another thread may have done so: no KeyError)
        return _layout(cls, checked)
    return found


Answer = tuple[Batch, Callable[[Any], Any]]


def save(obj: Any, ttl: Any, force: bool, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> the key) of ``_objects.save`` for a plain hash object."""
    if force is not False and force is not True:
        flag(force, "force")
    layout = _layout(type(obj), checked)
    if layout is None:
        return None
    if isinstance(layout, FlatLayout):
        return _flat_save(layout, obj, ttl)
    spec = layout.spec
    key = spec.key_builder()(getattr(obj, spec.key.name))[0]  # spec.key_for, 2 calls less
    spec.check(obj)
    ms = _ops.ttl_ms(spec, ttl, key)
    command = layout.save_plain(key, obj, ms)  # force: always whole

    def answer(_: Any) -> str:
        saved(obj)
        return key

    # no ttl keeps the object's expiry: a copy finding it gone would revive it forever
    return Batch([command], write=True, idempotent=True, keys=(key,),
                 fragile=ms is None), answer


def _flat_save(layout: FlatLayout, obj: Any, ttl: Any) -> Answer:
    """``_objects.save`` of a flat object: its first batch, and its reply -> the key (or
    the rest of ``send_write`` when the script asked for more leaves)."""
    spec = layout.spec
    key = spec.key_builder()(getattr(obj, spec.key.name))[0]  # spec.key_for, 2 calls less
    spec.check(obj)
    ms = _ops.ttl_ms(spec, ttl, key)
    w = layout.save(key, obj, ms)
    # no ttl keeps the object's expiry: a copy finding it gone would revive it forever
    fragile = ms is None

    def answer(reply: Any) -> Any:
        if reply.__class__ is not int:  # 1: written; else KEYS, or a refusal
            what = f"save {spec.name}"
            if needed_keys(reply) is not None:
                return Then(_then(send_write(w, what, fragile, reply), key))
            error = refusal(spec, key, reply, what)
            if error is not None:
                raise error
        return key

    return write_batch(w, fragile), answer


def _then(plan: Plan[Any], result: Any) -> Plan[Any]:
    yield from plan
    return result


def get(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> the object or None) of ``_objects.get``."""
    layout = _layout(model, checked)
    if layout is None:
        return None
    key, text = layout.spec.key_builder()(id_value)  # _ops.id_str, 2 calls less
    if isinstance(layout, FlatLayout):
        flat = layout
        batch = Batch([flat.read(key)], keys=(key,))

        def answer(reply: Any) -> Any:
            if needed_keys(reply):  # leaves it was not given: read_batch goes on
                return Then(_decoded(flat, key, text, read_batch(batch, [reply])))
            return flat.decode(key, text, reply)

        return batch, answer
    return Batch([("HGETALL", key)], keys=(key,)), lambda r: layout.decode(key, text, r)


def _decoded(layout: FlatLayout, key: str, text: str, plan: Plan[list[Any]]) -> Plan[Any]:
    replies = yield from plan
    return layout.decode(key, text, replies[0])


def update(model: type, id_value: Any, values: Mapping[str, Any],
           checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.update`` (its checks first)."""
    layout = _layout(model, checked)
    if not isinstance(layout, HashLayout):  # (none, or a flat model: the plan)
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
    layout = _layout(model, checked)
    if not isinstance(layout, HashLayout):  # (none, or a flat model: the plan)
        return None
    spec = layout.spec
    key = spec.key_builder()(id_value)[0]  # spec.key_for without its two calls
    command = _ops.short_incr(spec, key, field, amount)
    if command is None:
        return None
    return Batch([command], write=True, keys=(key,)), _ops.short_incr_result


def delete(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.delete``."""
    layout = _layout(model, checked)
    if not isinstance(layout, HashLayout):  # (none, or a flat model: the plan)
        return None
    key = layout.spec.key_for(id_value)
    return Batch([("DEL", key)], write=True, keys=(key,)), bool


def exists(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.exists``."""
    layout = _layout(model, checked)
    if not isinstance(layout, HashLayout):  # (none, or a flat model: the plan)
        return None
    key = layout.spec.key_for(id_value)
    return Batch([("EXISTS", key)], keys=(key,)), bool
