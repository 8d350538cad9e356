"""Single calls without a plan: the one batch a store's save, get, update, incr, delete or
exists of a *plain* hash model (and the save and get of a flat model, the whole save of an
indexed one) sends, and what its reply means. No I/O here; both stores can use it (send
the batch with ``_execute``, hand the reply to the answer; an answer that is a
:class:`Then` is the plan to run on from there).

A call of a plain hash model qualifies when the plan it replaces is one batch and nothing
else: the model uses the hash layout without indexes or ``track_changes`` (no snapshot,
no partial save, no index write, no claim), the store has already checked the model in
the registry (a first use registers through the plan), and no transaction is open in
this context. Anything else answers None and the store runs the plan. What qualifies
builds exactly the batch the plan would yield (the same validation first, the same
command from the same layout, the same resend flag), so the link's decisions
(:mod:`redmodel._transport._wire`) and the errors are those of the plan.

A flat model's save and get qualify too (the flat layout has no index, snapshot or
claim): the first batch of ``_objects.save`` / ``_objects.get``, built as they build it.
Its reply is the answer unless the script asks for leaves it was not given (``KEYS``):
then the answer is the plan's own rest (``send_write`` / ``read_batch`` given that first
reply), so the commands sent are the plan's, in the same order.

An indexed hash model's save qualifies too when it is whole and claims nothing (a model
whose unique values are claimed in other buckets keeps the plan: its first batch is the
claim): the first batch of ``_objects.save``, the index write script's call, built by the
same ``save_changes`` and ``_indexes._writes.single_batch`` (the batch the first round
of ``run_writes`` sends: the same flags, fragile when no TTL is given). Its reply 1 is
settled as the plan settles it (``_objects.saved_whole``); any other reply (KEYS, STORED,
UNLISTED, UNIQUE, another refusal) is handed to the plan's own rest
(``_objects.indexed_rest``: ``run_writes(..., first=[reply])``), so the commands that
follow are the plan's, in the same order, and so are the errors. Every other call of an
indexed model (get, update, incr, delete, exists) keeps the plan.

Tracked models (``track_changes``, every indexed model by default) take this path when
the save is whole, and that is sound: a save is whole when ``force=True`` or when the
object has no snapshot of this key through this store's client (``_hash.recall``); one
that would send only what changed answers None (the plan: its first batch differs and a
reply 0 makes it save again). Both the decision and the snapshot kept after success
depend on the client of the store running the call (``_plan.ORIGIN``), which the plan's
run sets and this path sets the same way around ``save_changes`` and around
``saved_whole``; the snapshot kept is the ``state`` the same ``save_changes`` computed,
recorded after the reply as the plan does, and nothing is recorded when the send fails
(as the plan, closed by its run). So the snapshot after a save is the plan's.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any, TypeGuard

from redmodel._args import flag
from redmodel._indexes._writes import Write, needed_keys, refusal, single_batch
from redmodel._layouts._flat import FlatLayout, read_batch, send_write, write_batch
from redmodel._layouts._hash import HashLayout, recall, saved
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import ModelSpec, model_class
from redmodel._plan import ORIGIN, Batch, Plan, open_transaction
from redmodel._plans import _objects as _ops

__all__ = ["Then", "delete", "exists", "get", "incr", "save", "update"]

# model class -> its layout when its single calls qualify: a plain hash model's or a flat
# model's, or an indexed hash model's (its whole save only) (False: they never do)
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
    if cls not in checked or open_transaction() is not None:
        return None
    found = _SINGLE.get(cls)
    if found is None:
        spec = cls.__dict__.get("__redmodel__")
        layout = layout_of(spec) if isinstance(spec, ModelSpec) else None
        found = _SINGLE[cls] = layout if _qualifies(layout) else False
    if found is False or found is True:
        return None
    if found.spec is not cls.__dict__.get("__redmodel__"):  # declared again: look again
        _SINGLE.pop(cls, None)  # (another thread may have done so: no KeyError)
        return _layout(cls, checked)
    return found


def _qualifies(layout: Any) -> TypeGuard[HashLayout | FlatLayout]:
    """Whether some single call of the layout's model skips the plan: a flat model's, a
    plain hash model's; an indexed hash model's save, when it claims nothing (every other
    call of it checks :attr:`HashLayout.plain`)."""
    if isinstance(layout, FlatLayout):
        return True
    if not isinstance(layout, HashLayout):
        return False
    spec = layout.spec
    return layout.plain or (spec.indexes is not None and not spec.claims)


Answer = tuple[Batch, Callable[[Any], Any]]


def save(obj: Any, ttl: Any, force: bool, checked: Container[type],
         client: Any) -> Answer | None:
    """(the batch, reply -> the key) of ``_objects.save`` for a plain hash object, a flat
    one, or a whole save of an indexed one (``client``: the store's, whose snapshot of a
    tracked object it reads and writes, as the plan's run does)."""
    if force is not False and force is not True:
        flag(force, "force")
    layout = _layout(type(obj), checked)
    if layout is None:
        return None
    if isinstance(layout, FlatLayout):
        return _flat_save(layout, obj, ttl)
    if not layout.plain:
        return _indexed_save(layout, obj, ttl, force, client)
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


def _indexed_save(layout: HashLayout, obj: Any, ttl: Any, force: bool, client: Any
                  ) -> Answer | None:
    """``_objects.save`` of an indexed object, whole (a save of what changed since it was
    loaded answers None: the plan): its first batch, the index write script's call, and
    its reply -> the key when it wrote (1), else the plan's rest from that reply."""
    spec = layout.spec
    key = spec.key_builder()(getattr(obj, spec.key.name))[0]  # spec.key_for, 2 calls less
    spec.check(obj)
    ms = _ops.ttl_ms(spec, ttl, key)
    tracked = spec.track_changes
    if tracked:  # a snapshot is this client's: as the plan's run sets it (_plan.ORIGIN)
        token = ORIGIN.set(client)
        try:
            if not force and recall(obj, key):  # a save of what changed: the plan's
                return None
            w, state, partial = layout.save_changes(key, obj, ms, force)
        finally:
            ORIGIN.reset(token)
    else:
        w, state, partial = layout.save_changes(key, obj, ms, force)
    if partial or not isinstance(w, Write):  # (neither can be: the plan decides)
        return None
    # no ttl keeps the object's expiry: a copy finding it gone would revive it forever
    fragile = ms is None

    def answer(reply: Any) -> Any:
        if reply.__class__ is not int or reply != 1:  # not written: the plan goes on
            return Then(_ops.indexed_rest(layout, obj, key, w, state, fragile, reply))
        if not tracked:
            return _ops.saved_whole(layout, obj, key, state)
        token = ORIGIN.set(client)
        try:
            return _ops.saved_whole(layout, obj, key, state)
        finally:
            ORIGIN.reset(token)

    return single_batch(w, idempotent=True, fragile=fragile), answer


def _then(plan: Plan[Any], result: Any) -> Plan[Any]:
    yield from plan
    return result


def get(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> the object or None) of ``_objects.get``."""
    layout = _layout(model, checked)
    if layout is None or (isinstance(layout, HashLayout) and not layout.plain):
        return None  # (an indexed model: its save alone qualifies)
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
    if not isinstance(layout, HashLayout) or not layout.plain:  # (none, a flat model,
        return None  # an indexed one: the plan)
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
    if not isinstance(layout, HashLayout) or not layout.plain:  # (none, a flat model,
        return None  # an indexed one: the plan)
    spec = layout.spec
    key = spec.key_builder()(id_value)[0]  # spec.key_for without its two calls
    command = _ops.short_incr(spec, key, field, amount)
    if command is None:
        return None
    return Batch([command], write=True, keys=(key,)), _ops.short_incr_result


def delete(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.delete``."""
    layout = _layout(model, checked)
    if not isinstance(layout, HashLayout) or not layout.plain:  # (none, a flat model,
        return None  # an indexed one: the plan)
    key = layout.spec.key_for(id_value)
    return Batch([("DEL", key)], write=True, keys=(key,)), bool


def exists(model: type, id_value: Any, checked: Container[type]) -> Answer | None:
    """(the batch, reply -> bool) of ``_objects.exists``."""
    layout = _layout(model, checked)
    if not isinstance(layout, HashLayout) or not layout.plain:  # (none, a flat model,
        return None  # an indexed one: the plan)
    key = layout.spec.key_for(id_value)
    return Batch([("EXISTS", key)], keys=(key,)), bool
