"""Store operations as plans: generators that yield batches of commands and return results.

``Store`` and ``AsyncStore`` only drive these; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from redmodel._blob import BlobLayout
from redmodel._errors import (
    DecodeError,
    NotFoundError,
    UniqueViolationError,
    ValidationError,
)
from redmodel._flat import FlatLayout
from redmodel._hash import HashLayout, remember
from redmodel._index import CLAIM, CLAIM_GRACE_MS, CONFIRM, RELEASE
from redmodel._keys import glob_escape, unescape
from redmodel._plan import Batch, Command, Emit, IterPlan, Plan
from redmodel._schema import ModelSpec, spec_of
from redmodel._types import optional_inner
from redmodel.codecs import Codec
from redmodel.codecs import codec as resolve_codec

__all__ = ["DEFAULT", "layout_of"]


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final[Any] = _Default()
"""Sentinel: use the model's own setting (for example its default TTL)."""

Layout = HashLayout | FlatLayout | BlobLayout
_KINDS: dict[str, type[Layout]] = {"hash": HashLayout, "flat": FlatLayout, "blob": BlobLayout}
_LAYOUTS: dict[type, Layout] = {}


def layout_of(spec: ModelSpec) -> Layout:
    """The layout object of a model, built on first use."""
    layout = _LAYOUTS.get(spec.cls)
    if layout is None or layout.spec is not spec:
        layout = _LAYOUTS[spec.cls] = _KINDS[spec.layout](spec)
    return layout


def ttl_ms(spec: ModelSpec, ttl: Any) -> int | None:
    """Milliseconds of expiry for a save, from the call's ``ttl`` or the model's default."""
    if ttl is DEFAULT:
        ttl = spec.ttl
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, dt.timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValidationError(f"ttl must be a positive number of seconds, got {ttl!r}",
                              model=spec.name)
    return max(1, round(seconds * 1000))


def _id_of(spec: ModelSpec, obj: Any) -> Any:
    return getattr(obj, spec.key.name)


def id_str(spec: ModelSpec, id_value: Any) -> tuple[str, str]:
    """(key, id text) for an id; raises ValidationError for an empty or mistyped id."""
    text = spec.id_text(id_value)
    return spec.key_of_text(text, id_value), text


# ---- writes -----------------------------------------------------------------------------


def save_command(obj: Any, ttl: Any) -> tuple[str, Command]:
    """Validate ``obj`` and return its key and the one command that stores it whole."""
    spec = spec_of(obj)
    key = spec.key_for(_id_of(spec, obj))
    spec.check(obj)
    return key, layout_of(spec).save(key, obj, ttl_ms(spec, ttl))


def _unique_error(spec: ModelSpec, key: str, reply: Any) -> UniqueViolationError | None:
    """The error an index write script answered instead of writing, if it did."""
    if not isinstance(reply, list) or not reply or reply[0] not in (b"UNIQUE", "UNIQUE"):
        return None
    name = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
    raw = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
    parts = tuple(unescape(p) for p in raw.split("\x1e"))
    fields = tuple(name.split(","))
    return UniqueViolationError(spec.name, fields, parts[0] if len(parts) == 1 else parts, key)


def _check_write(spec: ModelSpec, key: str, reply: Any) -> None:
    error = _unique_error(spec, key, reply)
    if error is not None:
        raise error


def _unique_entries(spec: ModelSpec, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(constraint name, value text) of every unique value in ``values``."""
    if spec.indexes is None:
        return []
    out = []
    for entry in spec.indexes.entries(dict(values)):
        kind, name, text = entry.split("\x1f")
        if kind == "u":
            out.append((name, text))
    return out


def _eid(spec: ModelSpec, key: str) -> str:
    text = spec.id_of_key(key)
    assert text is not None
    return key[len(spec.object_prefix(spec.tag_of(text))):]


def claim(spec: ModelSpec, key: str, values: Mapping[str, Any]) -> Plan[list[tuple[str, str]]]:
    """Claim these unique values for the object at ``key`` in their own buckets (before
    its write); returns the claims made now. Raises UniqueViolationError, having released
    them, when another live object holds one."""
    eid = _eid(spec, key)
    wanted = [(spec.claim_key(name, text), text, name) for name, text in
              _unique_entries(spec, values)]
    if not wanted:
        return []
    grace = str(CLAIM_GRACE_MS)
    replies = yield Batch([CLAIM.call([k], [t, eid, grace, ""]) for k, t, _ in wanted],
                          write=True)
    made = [(k, t) for (k, t, _), r in zip(wanted, replies, strict=True) if r == 1]
    taken = [(w, r) for w, r in zip(wanted, replies, strict=True) if isinstance(r, list)]
    stale = [(w, r) for w, r in taken if int(r[2]) < 0 or int(r[2]) >= CLAIM_GRACE_MS]
    if stale:  # an old claim whose owner object is gone may be taken over
        owners = [_text(r[1]) for _, r in stale]
        alive = yield Batch([("EXISTS", spec.object_prefix(spec.tag_of(unescape(o))) + o)
                             for o in owners])
        retry = [(w, o) for (w, _), o, live in zip(stale, owners, alive, strict=True)
                 if not live]
        if retry:
            again = yield Batch([CLAIM.call([k], [t, eid, grace, o]) for (k, t, _), o in retry],
                                write=True)
            made += [(k, t) for ((k, t, _), _), r in zip(retry, again, strict=True) if r == 1]
            won = {(k, t) for ((k, t, _), _), r in zip(retry, again, strict=True) if r == 1}
            taken = [(w, r) for w, r in taken if (w[0], w[1]) not in won]
    if taken:
        yield from release(made, eid)
        (_, t, name), _ = taken[0]
        parts = tuple(unescape(p) for p in t.split("\x1e"))
        raise UniqueViolationError(spec.name, tuple(name.split(",")),
                                   parts[0] if len(parts) == 1 else parts, key)
    return made


def release(claims: Sequence[tuple[str, str]], eid: str) -> Plan[None]:
    """Give up claims this object holds (each only if it still holds it)."""
    if claims:
        yield Batch([RELEASE.call([k], [t, eid]) for k, t in claims], write=True, idempotent=True)


def settle(spec: ModelSpec, key: str, reply: Any, made: Sequence[tuple[str, str]],
           retry: bool = False) -> Plan[Any]:
    """After an indexed write: release the unique values it gave up (claims mode), or the
    claims made for a write that found no object; the write's own result."""
    _check_write(spec, key, reply)
    if not spec.claims:
        return reply
    eid = _eid(spec, key)
    result = reply
    if isinstance(reply, list) and reply and _text(reply[0]) == "RELEASE":
        result = reply[1]
        gone = []
        for line in reply[2:]:
            _, name, text = _text(line).split("\x1f")
            gone.append((spec.claim_key(name, text), text))
        yield from release(gone, eid)
    if result == 0:
        if not retry:  # a partial save that found no object is retried whole, keep them
            yield from release(made, eid)
    elif made:
        yield Batch([CONFIRM.call([k], [t, eid]) for k, t in made], write=True, idempotent=True)
    return result


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def save(obj: Any, ttl: Any = DEFAULT, force: bool = False) -> Plan[str]:
    """Whole, or (for a tracked object loaded earlier) only what changed; a partial save
    of an object deleted meanwhile becomes a whole one."""
    spec = spec_of(obj)
    key = spec.key_for(_id_of(spec, obj))
    spec.check(obj)
    layout = layout_of(spec)
    ms = ttl_ms(spec, ttl)
    if not isinstance(layout, HashLayout):
        yield Batch([layout.save(key, obj, ms)], write=True, idempotent=True, keys=(key,))
        return key
    cmd, state, partial = layout.save_changes(key, obj, ms, force)
    if cmd is not None:
        made: list[tuple[str, str]] = []
        if spec.claims and spec.indexes is not None:
            values = {n: getattr(obj, n) for n in spec.indexes.fields}
            made = yield from claim(spec, key, values)
        replies = yield Batch([cmd], write=True, idempotent=True, keys=(key,))
        result = yield from settle(spec, key, replies[0], made, retry=partial)
        if partial and result == 0:
            cmd = layout.save_changes(key, obj, ms, True)[0]
            assert cmd is not None
            replies = yield Batch([cmd], write=True, idempotent=True, keys=(key,))
            yield from settle(spec, key, replies[0], made)
    if spec.track_changes:
        remember(obj, state)
    return key


def save_many(objs: Iterable[Any], ttl: Any, chunk_size: int) -> Plan[int]:
    """Every object is validated before the first chunk is sent; each chunk is one pipelined
    round trip of one atomic command per object. Objects are saved whole."""
    objs = list(objs)
    planned = [save_command(obj, ttl) for obj in objs]
    _unique_within(objs)
    if any(spec_of(o).claims for o in objs):
        # unique claims live in other slots than their objects: one object at a time
        for obj in objs:
            yield from save(obj, ttl, force=True)
        return len(objs)
    for start in range(0, len(planned), chunk_size):
        chunk = planned[start : start + chunk_size]
        replies = yield Batch([c for _, c in chunk], write=True, idempotent=True,
                              keys=[k for k, _ in chunk])
        for (key, _), obj, reply in zip(chunk, objs[start : start + chunk_size], replies,
                                        strict=True):
            _check_write(spec_of(obj), key, reply)
    for obj in objs:
        spec = spec_of(obj)
        if spec.track_changes:
            remember(obj, layout_of(spec).encode_state(obj))  # type: ignore[union-attr]
    return len(planned)


def _unique_within(objs: Sequence[Any]) -> None:
    """Two objects of one save_many claiming one unique value: refused before sending."""
    seen: dict[tuple[type, str, str], Any] = {}
    for obj in objs:
        spec = spec_of(obj)
        if spec.indexes is None:
            continue
        values = {n: getattr(obj, n) for n in spec.indexes.fields}
        for entry in spec.indexes.entries(values):
            if entry.startswith("u"):
                _, name, text = entry.split("\x1f")
                mark = (spec.cls, name, text)
                other = seen.setdefault(mark, obj)
                if other is not obj and _id_of(spec, other) != _id_of(spec, obj):
                    raise ValidationError(
                        f"two objects in one save_many share the unique {name}",
                        model=spec.name, field=name)


def delete(model: type, id_value: Any) -> Plan[bool]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    replies = yield Batch([layout_of(spec).delete(key)], write=True, keys=(key,))
    return bool((yield from settle(spec, key, replies[0], [])))


def delete_many(model: type, ids: Iterable[Any], chunk_size: int) -> Plan[int]:
    spec = spec_of(model)
    layout = layout_of(spec)
    keys = [spec.key_for(i) for i in ids]
    removed = 0
    for start in range(0, len(keys), chunk_size):
        part = keys[start : start + chunk_size]
        # one command per object: a cluster pipeline routes each to its slot
        replies = yield Batch([layout.delete(k) for k in part], write=True, keys=part)
        for k, r in zip(part, replies, strict=True):
            removed += int((yield from settle(spec, k, r, [])))
    return removed


def update(model: type, id_value: Any, values: Mapping[str, Any]) -> Plan[bool]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    if not values:
        raise ValidationError("nothing to update", model=spec.name, key=key)
    if spec.key.name in values:
        raise ValidationError("the id cannot be updated", model=spec.name, key=key,
                              field=spec.key.name)
    cmd = layout_of(spec).update(key, values)
    made: list[tuple[str, str]] = []
    if spec.claims:
        found = yield Batch([("EXISTS", key)], keys=(key,))
        if not found[0]:
            return False  # as the write would answer; no claim for a missing object
        made = yield from claim(spec, key, values)
    replies = yield Batch([cmd], write=True, idempotent=True, keys=(key,))
    return bool((yield from settle(spec, key, replies[0], made)))


def incr(model: type, id_value: Any, field: str, amount: float) -> Plan[Any]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    cmd, kind = layout_of(spec).incr(key, field, amount)
    replies = yield Batch([cmd], write=True, keys=(key,))
    if replies[0] is None:
        raise NotFoundError(spec.name, key)
    return int(replies[0]) if kind == "int" else float(replies[0])


def expire(model: type, id_value: Any, ttl: float | dt.timedelta) -> Plan[bool]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    if ttl is None or ttl is DEFAULT:
        raise ValidationError("expire needs a ttl; use persist() to remove an expiry",
                              model=spec.name, key=key)
    ms = ttl_ms(spec, ttl)
    replies = yield Batch([layout_of(spec).expire(key, ms)], write=True, idempotent=True,
                          keys=(key,))
    return bool(replies[0])


def persist(model: type, id_value: Any) -> Plan[bool]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    # not resendable: a second PERSIST answers False ("had no expiry"), so its reply
    # depends on whether the first one ran
    replies = yield Batch([layout_of(spec).expire(key, None)], write=True, keys=(key,))
    return bool(replies[0])


# ---- reads ------------------------------------------------------------------------------


def get(model: type, id_value: Any) -> Plan[Any]:
    spec = spec_of(model)
    key, text = id_str(spec, id_value)
    layout = layout_of(spec)
    replies = yield Batch([layout.read(key)], keys=(key,))
    return layout.decode(key, text, replies[0])


def get_or_raise(model: type, id_value: Any) -> Plan[Any]:
    found = yield from get(model, id_value)
    if found is None:
        spec = spec_of(model)
        raise NotFoundError(spec.name, spec.key_for(id_value))
    return found


def get_many(model: type, ids: Iterable[Any], chunk_size: int) -> Plan[list[Any]]:
    spec = spec_of(model)
    layout = layout_of(spec)
    wanted = [id_str(spec, i) for i in ids]
    out: list[Any] = []
    for start in range(0, len(wanted), chunk_size):
        part = wanted[start : start + chunk_size]
        replies = yield Batch([layout.read(k) for k, _ in part], keys=[k for k, _ in part])
        out.extend(layout.decode(k, t, r) for (k, t), r in zip(part, replies, strict=True))
    return out


def get_by_keys(spec: ModelSpec, keys: Sequence[str]) -> Plan[list[Any]]:
    """Objects at these keys of one model, skipping keys that vanished."""
    layout = layout_of(spec)
    replies = yield Batch([layout.read(k) for k in keys], keys=keys)
    found = (layout.decode(k, spec.id_of_key(k) or "", r)
             for k, r in zip(keys, replies, strict=True))
    return [obj for obj in found if obj is not None]


def exists(model: type, id_value: Any) -> Plan[bool]:
    key = spec_of(model).key_for(id_value)
    replies = yield Batch([("EXISTS", key)], keys=(key,))
    return bool(replies[0])


def pttl(model: type, id_value: Any) -> Plan[int | None]:
    """Milliseconds left; None when the object has no expiry; NotFoundError when missing."""
    spec = spec_of(model)
    key = spec.key_for(id_value)
    replies = yield Batch([("PTTL", key)], keys=(key,))
    ms = int(replies[0])
    if ms == -2:
        raise NotFoundError(spec.name, key)
    return None if ms == -1 else ms


# ---- iteration ------------------------------------------------------------------------


def scan_pattern(spec: ModelSpec) -> str:
    return f"{glob_escape(spec.prefix)}{glob_escape(spec.delimiter)}*"


def scan_page(spec: ModelSpec, cursor: int, count: int, target: Any = None
              ) -> Plan[tuple[int, list[str]]]:
    """One SCAN page: the next cursor and the keys of this model's objects in it."""
    cmd = ("SCAN", cursor, "MATCH", scan_pattern(spec), "COUNT", count,
           "TYPE", layout_of(spec).scan_type)
    replies = yield Batch([cmd], target=target)
    next_cursor, raw_keys = replies[0]
    if isinstance(next_cursor, dict):  # a cluster client answers {node: cursor}
        next_cursor = next(iter(next_cursor.values()))
    keys = []
    for raw in raw_keys:
        key = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if spec.id_of_key(key) is not None:
            keys.append(key)
    return int(next_cursor), keys


def scan_keys(model: type, count: int, targets: Sequence[Any] = (None,)) -> IterPlan:
    """Every object key of the model, a page at a time: SCAN on each target (every primary
    of a cluster, or the one server)."""
    spec = spec_of(model)
    for target in targets:
        cursor = 0
        while True:
            cursor, keys = yield from scan_page(spec, cursor, count, target)
            if keys:
                yield Emit(keys)
            if cursor == 0:
                break


def each_page(
    model: type, count: int, targets: Sequence[Any],
    per_page: Callable[[ModelSpec, Sequence[str]], Plan[Any]],
) -> IterPlan:
    """Run ``per_page`` on every page of keys and emit what it returns."""
    spec = spec_of(model)
    pages = scan_keys(model, count, targets)
    try:
        step = next(pages)
        while True:
            if isinstance(step, Emit):
                result = yield from per_page(spec, step.items)
                yield Emit(result)
                step = pages.send(None)
            else:
                step = pages.send((yield step))
    except StopIteration:
        return


def scan(model: type, count: int, targets: Sequence[Any] = (None,)) -> IterPlan:
    """Every stored object: each SCAN page, then its objects in one pipelined read."""
    return each_page(model, count, targets, get_by_keys)


def _rotated(spec: ModelSpec, keys: Sequence[str]) -> Plan[list[int]]:
    done = yield from rotate_page(spec, keys)
    return [done]


def rotate_keys(model: type, count: int, targets: Sequence[Any] = (None,)) -> IterPlan:
    """Emits, per SCAN page, how many stored values were re-encrypted."""
    return each_page(model, count, targets, _rotated)


# ---- key rotation -----------------------------------------------------------------------


def _chains(spec: ModelSpec) -> list[Codec]:
    found: dict[str, Codec] = {}
    if spec.codec is not None:
        found[spec.codec.name] = spec.codec

    def walk(cls: type) -> None:
        for f in attrs.fields(cls):
            chain = getattr(f.metadata.get("redmodel"), "codec", None)
            if chain is not None:
                c = resolve_codec(chain)
                found[c.name] = c
            inner, _ = optional_inner(f.type)
            if isinstance(inner, type) and attrs.has(inner) and inner is not cls:
                walk(inner)

    walk(spec.cls)
    return [c for c in found.values() if c.holds_keys]


def rotate_page(spec: ModelSpec, keys: Sequence[str]) -> Plan[int]:
    """Re-encrypt under the newest key every stored value of these objects written by a
    key-holding chain of the model; one read round trip, one compare-and-set round trip."""
    chains = _chains(spec)
    if not chains or not keys:
        return 0
    layout = layout_of(spec)
    replies = yield Batch([layout.read(k) for k in keys])
    writes: list[Command] = []
    for key, reply in zip(keys, replies, strict=True):
        for target, old in layout.raw_values(key, reply):
            chain = next((c for c in chains if c.wrote(old)), None)
            if chain is None:
                continue
            try:
                new = chain.rotate(old)
            except DecodeError as e:
                raise e.with_context(model=spec.name, key=key) from None
            if new is not None:
                writes.append(layout.cas(target, old, new))
    if not writes:
        return 0
    done = yield Batch(writes, write=True)
    return sum(int(r) for r in done)
