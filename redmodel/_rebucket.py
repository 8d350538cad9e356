"""Moving a model's stored objects to another bucket count: ``store.migrate_buckets``.

An offline step (docs/migrations.md, "Changing the bucket count"): while it runs, the
model registry holds ``moving`` (``<prefix>:%schema``), and a store's first use of the
model, in either version, raises :class:`SchemaConflictError` naming ``migrate_buckets``;
processes that already use the model must be stopped first. Its progress is kept in
``<prefix>:%rebucket`` (JSON: phase, per-target SCAN cursor, counts), saved after each
page, so a run that stopped continues where it was, doing at most one page again.

Phases:

1. **move**: a SCAN of the objects at their old keys (on every primary), a page of
   ``count`` at a time. On one server, one script per page renames every key of every
   object of the page (a flat object's leaves too), after checking that no target key
   exists: each object moves whole, atomically, and keeps its TTL. On a cluster the old
   and new keys are in different slots: each key is copied (DUMP, RESTORE with its PTTL;
   a flat object's leaves before its manifest), then the old keys are deleted by a
   script that first checks they still hold what was copied. After a pass that moved
   something another follows, until one moves nothing (a third that still moves
   something stops the move: an old-version writer still runs).
2. **drop**: every index key of the old buckets is deleted (a SCAN of ``...%idx...``).
3. **index**: a reindex of the model builds its indexes in the new buckets (entries,
   unique claims, expiry bookkeeping from each object's PTTL); it keeps its own progress.
4. **record**: the registry records the new model (schema, owner, every index ready) and
   loses ``moving``; the progress key is deleted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Generator, Sequence
from typing import Any

import attrs

from redmodel._args import page_count
from redmodel._errors import SchemaConflictError, ServerError, ValidationError
from redmodel._indexes._registry import (
    UNREGISTER_FIELD,
    VERSION,
    check,
    describe,
    index_kinds,
    new_version,
    owner_of,
    parse,
    registry_key,
    schema_text,
)
from redmodel._indexes._repair import cursor_text, reindex_plan, whole
from redmodel._layouts._flat import manifest_leaves
from redmodel._layouts._pick import layout_of
from redmodel._models._keys import glob_escape
from redmodel._models._specs import ModelSpec, model_class, model_spec
from redmodel._plan import Batch, Emit, IterPlan, script

__all__ = ["MoveProgress", "ProgressArg", "migrate_plan", "state_key"]

MOVE = script("rebucket")
PHASES = ("move", "drop", "index", "record")
MOVING = "moving"  # the registry field that marks a move under way
MAX_PASSES = 3

ProgressArg = bool | None | Callable[[int, int], object]
"""``progress=`` of ``migrate_buckets``: a callable receiving ``(done, total)`` after each
page (on an AsyncStore it may be a coroutine function: its result is awaited), or, as for
``reindex``, True/False/None to print a counter on stderr (None: when stderr is a
terminal)."""


@attrs.frozen
class MoveProgress:
    """Emitted after each page: objects moved so far, and how many there were to move."""

    done: int
    total: int


def state_key(spec: ModelSpec) -> str:
    """Where a bucket move keeps its progress: ``<prefix>:%rebucket``."""
    return spec.prefix + ":%rebucket"


def mark_of(old: int | None, new: int | None) -> str:
    """The registry's ``moving`` mark of a move from ``old`` to ``new`` buckets."""
    return f"{_name(old)} -> {_name(new)}"


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


def _name(buckets: int | None) -> str:
    return "no buckets" if buckets is None else f"buckets={buckets}"


def _target_name(target: Any) -> str:
    return str(getattr(target, "name", None) or "server")


def check_args(spec: ModelSpec, from_buckets: Any, count: Any) -> ModelSpec:
    """The model as it was stored (``spec`` with ``from_buckets``), or ValidationError."""
    if from_buckets is not None and (isinstance(from_buckets, bool) or not isinstance(
            from_buckets, int) or not 1 <= from_buckets <= 16384):
        raise ValidationError(f"from_buckets must be None or an int from 1 to 16384, not "
                              f"{from_buckets!r}", model=spec.name)
    page_count(count, model=spec.name)
    if from_buckets == spec.buckets:
        raise ValidationError(
            f"{spec.name} already declares {_name(spec.buckets)}: migrate_buckets moves the "
            "objects stored with another count (from_buckets=) to the model's", model=spec.name)
    if spec.hash_tag:
        raise ValidationError(f"{spec.name} declares hash_tag: migrate_buckets moves objects "
                              "between bucket counts only", model=spec.name)
    return attrs.evolve(spec, buckets=from_buckets)


@attrs.define
class _State:
    old: int | None
    new: int | None
    phase: int = 0
    cursors: dict[str, str] = attrs.field(factory=dict)
    done: int = 0
    total: int = 0
    # a cluster's pages being copied: their new keys, which may hold this move's own
    # copies, until their objects' old keys are deleted
    inflight: list[str] = attrs.field(factory=list)
    # ``done`` when the move's current pass began: after a pass that moved something
    # another follows, until one moves nothing (objects an unstopped writer saved at old
    # keys meanwhile are moved, or seen)
    pass_start: int = 0

    def dump(self) -> str:
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def load(cls, raw: Any) -> _State | None:
        try:
            data = json.loads(_text(raw))
            state = cls(data["old"], data["new"], whole(data["phase"]),
                        {str(k): str(v) for k, v in data["cursors"].items()},
                        whole(data["done"]), whole(data["total"]),
                        [str(k) for k in data.get("inflight", [])],
                        whole(data.get("pass_start", 0)))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            return None
        if not all(cursor_text(c) for c in state.cursors.values()) or not all(
                b is None or (isinstance(b, int) and not isinstance(b, bool))
                for b in (state.old, state.new)):
            return None  # not what a move wrote: refused, naming the key
        return state if 0 <= state.phase < len(PHASES) else None


Step = Generator["Batch | Emit", "list[Any] | None", Any]


def _ask(batch: Batch) -> Step:
    replies = yield batch
    return replies or []


def _pairs(old: ModelSpec, new: ModelSpec, key: str) -> tuple[str, str] | None:
    """(old key, new key) of a key a SCAN found, when it is an object at its old place
    (the two are equal when its key is the same in both counts); None for anything else
    (an object already moved, a key of another kind)."""
    text = old.id_of_key(key)
    if text is None or old.key_of_text(text) != key:
        return None
    return key, new.key_of_text(text)


def _scan(spec: ModelSpec, old: ModelSpec, new: ModelSpec, cursor: int, count: int,
          target: Any) -> Generator[Any, Any, tuple[int, list[tuple[str, str]]]]:
    d = spec.delimiter
    pattern = f"{glob_escape(spec.prefix)}{glob_escape(d)}*"
    replies = yield from _ask(Batch([("SCAN", cursor, "MATCH", pattern, "COUNT", count,
                                      "TYPE", layout_of(spec).scan_type)], target=target))
    next_cursor, raw = replies[0]
    if isinstance(next_cursor, dict):
        next_cursor = next(iter(next_cursor.values()))
    found = [p for k in raw if (p := _pairs(old, new, _text(k))) is not None]
    return int(next_cursor), found


def _moving(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in pairs if a != b]


def migrate_plan(model: type, from_buckets: int | None, count: int, targets: Sequence[Any],
                 cluster: bool, registry: bool, empty_ok: bool = False) -> IterPlan:
    """Move every object of ``model`` stored with ``from_buckets`` to the model's bucket
    count; emits :class:`MoveProgress` after each page and, last, the number moved.
    ``empty_ok``: nothing stored under ``from_buckets`` is no error (the migrations step
    ``rebucket`` then only records the new count; ``migrate_buckets`` refuses it)."""
    spec = model_spec(model)
    old = check_args(spec, from_buckets, count)
    new = spec
    skey = state_key(spec)
    state, record = yield from _start(spec, old, targets, registry, empty_ok)
    yield Emit([MoveProgress(state.done, state.total)])
    while state.phase < len(PHASES):
        phase = PHASES[state.phase]
        if phase == "move":
            yield from _move(spec, old, new, count, targets, cluster, skey, state)
        elif phase == "drop":  # whatever the new version declares: the old one may have
            yield from _drop(spec, old, count, targets)   # had indexes this one dropped
        elif phase == "index" and new.indexes is not None:
            yield from _reindex(model, count, targets)
        elif phase == "record":
            yield from _none_left(spec, old, new, targets, skey)
            if registry:
                yield from _record(spec, registry_key(spec.prefix), record)
        state.phase += 1
        state.cursors = {}
        state.inflight = []
        if state.phase < len(PHASES):
            yield from _save(skey, state)
    yield from _ask(Batch([("DEL", skey)], write=True, idempotent=True, keys=[skey]))
    yield Emit([state.done])


def _start(spec: ModelSpec, old: ModelSpec, targets: Sequence[Any], registry: bool,
           empty_ok: bool = False) -> Generator[Any, Any, tuple[_State, Any]]:
    """Check the move against its saved progress and the registry; a new move counts the
    objects to move, marks the registry and saves its progress (its first writes)."""
    from_buckets, new = old.buckets, spec
    skey, rkey = state_key(spec), registry_key(spec.prefix)
    cmds: list[Any] = [("TYPE", skey), ("GET", skey)]
    if registry:
        cmds += [("TYPE", rkey), ("HGETALL", rkey)]
    replies = yield from _ask(Batch(cmds, keys=[skey, rkey] if registry else [skey]))
    if _text(replies[0]) not in ("string", "none"):
        raise ServerError(f"WRONGTYPE {skey} is a {_text(replies[0])}, not the string where "
                          "migrate_buckets keeps its progress: delete it",
                          keys=(skey,), command=f"migrate_buckets {spec.name}")
    state = _State.load(replies[1]) if replies[1] is not None else None
    if replies[1] is not None and state is None:
        raise ValidationError(f"{skey} does not hold a bucket move's progress: delete it",
                              model=spec.name, key=skey)
    if state is not None and (state.old, state.new) != (from_buckets, spec.buckets):
        raise ValidationError(
            f"another bucket move is under way, from {_name(state.old)} to "
            f"{_name(state.new)} ({skey}): finish it first (migrate_buckets with "
            f"from_buckets={state.old} and the model declaring {_name(state.new)})",
            model=spec.name, key=skey)
    record = None
    if registry:
        if _text(replies[2]) not in ("hash", "none"):
            raise ServerError(f"WRONGTYPE {rkey} is a {_text(replies[2])}, not the model "
                              "registry's hash", keys=(rkey,),
                              command=f"migrate_buckets {spec.name}")
        record = parse(rkey, replies[3])
    if record is not None and record.schema:
        recorded = record.schema.get("buckets")
        if state is None and recorded != from_buckets:
            raise ValidationError(
                f"the registry {rkey} records {_name(recorded)} for {spec.name}'s stored "
                f"objects, not from_buckets={from_buckets}", model=spec.name, key=rkey)
        if recorded not in (from_buckets, spec.buckets):
            raise ValidationError(
                f"the registry {rkey} records {_name(recorded)}, neither the move's source "
                f"nor its target", model=spec.name, key=rkey)
        # everything but the bucket count must be a change the registry accepts
        check(spec, attrs.evolve(record, moving=""), dict(describe(spec), buckets=recorded),
              owner_of(spec.cls))
    if state is None:
        # this move's own mark without its progress: a start whose progress was never
        # saved (its reply lost, the run killed between the two writes) moved nothing
        # yet, so the move starts again; another move's mark is refused
        if record is not None and record.moving and record.moving != mark_of(
                from_buckets, spec.buckets):
            raise SchemaConflictError(
                f"the registry {rkey} says a bucket move is under way ({record.moving}) but "
                f"its progress ({skey}) is gone: check that no other migrate_buckets runs, "
                f"then HDEL {rkey} {MOVING} and start again",
                prefix=spec.prefix, key=rkey, owner=record.owner, model=owner_of(spec.cls))
        state = _State(from_buckets, spec.buckets)
        found = False
        for target in targets:
            cursor = 0
            while True:
                cursor, pairs = yield from _scan(spec, old, new, cursor, 1000, target)
                state.total += len(_moving(pairs))
                found = found or bool(pairs)
                if cursor == 0:
                    break
        if not found and not empty_ok:
            raise ValidationError(
                f"no {spec.name} objects are stored with {_name(from_buckets)} to move (a "
                f"model without data needs no move: store.unregister({spec.name}) lets the "
                "new version register afresh)", model=spec.name)
        # the first writes: the registry marks the move (stores refuse the model until it
        # ends), then the progress
        if registry:
            mark = mark_of(from_buckets, spec.buckets)
            yield from _ask(Batch([("HSET", rkey, MOVING, mark, VERSION, new_version())],
                                  write=True, idempotent=True, keys=[rkey]))
        yield from _save(skey, state)
    return state, record


def _none_left(spec: ModelSpec, old: ModelSpec, new: ModelSpec, targets: Sequence[Any],
               skey: str) -> Step:
    """Before the registry records the new count: no object is left at an old key. One
    is when the progress says more than was done (``skey`` edited by hand or planted) or
    a process of the old version saved one after the move: recording the count then would
    hide it from every store, so the move stops, nothing recorded, ``moving`` kept."""
    for target in targets:
        cursor = 0
        while True:
            cursor, pairs = yield from _scan(spec, old, new, cursor, 1000, target)
            left = _moving(pairs)
            if left:
                raise ValidationError(
                    f"{spec.name}: an object is still at its old key {left[0][0]} though the "
                    f"move's progress ({skey}) says every object was moved: a process of the "
                    f"old version still writes, or {skey} was changed by hand. Nothing was "
                    f"recorded: stop the old version's processes, delete {skey} and run the "
                    "move again (it starts over and moves what is left)",
                    model=spec.name, key=left[0][0])
            if cursor == 0:
                break


def _save(skey: str, state: _State) -> Step:
    yield from _ask(Batch([("SET", skey, state.dump())], write=True, idempotent=True,
                          keys=[skey]))


def _move(spec: ModelSpec, old: ModelSpec, new: ModelSpec, count: int, targets: Sequence[Any],
          cluster: bool, skey: str, state: _State) -> Step:
    """Passes over every target until one moves nothing; when the last of this run's
    ``MAX_PASSES`` still moves something, a writer still saves objects at old keys: the
    move stops and says so (the next run starts with a new pass)."""
    passes = 0
    while True:
        yield from _move_pass(spec, old, new, count, targets, cluster, skey, state)
        moved = state.done - state.pass_start
        if moved == 0:
            return
        passes += 1
        state.pass_start = state.done
        state.cursors = {}
        yield from _save(skey, state)
        if passes >= MAX_PASSES:
            raise ValidationError(
                f"objects of {spec.name} keep appearing at their old keys ({moved} in the "
                "last pass over them): a process still writes the old version. Stop it "
                "and run migrate_buckets again to finish the move", model=spec.name)


def _move_pass(spec: ModelSpec, old: ModelSpec, new: ModelSpec, count: int,
               targets: Sequence[Any], cluster: bool, skey: str, state: _State) -> Step:
    for target in targets:
        name = _target_name(target)
        if state.cursors.get(name) == "done":
            continue
        cursor = int(state.cursors.get(name, "0"))
        while True:
            cursor, found = yield from _scan(spec, old, new, cursor, count, target)
            pairs = _moving(found)
            if pairs:
                state.done += (yield from (_copy_drop(spec, pairs, skey, state) if cluster
                                           else _rename(spec, pairs)))
            state.cursors[name] = str(cursor) if cursor else "done"
            yield from _save(skey, state)
            yield Emit([MoveProgress(state.done, max(state.total, state.done))])
            if cursor == 0:
                break


def _keys_of(spec: ModelSpec, pairs: list[tuple[str, str]]) -> Generator[
        Any, Any, list[tuple[list[str], list[str]]]]:
    """Every key of each object, old and new (a flat object's leaves after its key)."""
    if spec.layout != "flat":
        return [([a], [b]) for a, b in pairs]
    got = yield from _ask(Batch([("GET", a) for a, _ in pairs], keys=[a for a, _ in pairs]))
    out = []
    for (a, b), manifest in zip(pairs, got, strict=True):
        leaves = manifest_leaves(a, spec.delimiter, manifest)
        out.append(([a, *leaves], [b, *(b + leaf[len(a):] for leaf in leaves)]))
    return out


def _taken(spec: ModelSpec, key: str, kind: str) -> ValidationError:
    return ValidationError(
        f"cannot move {spec.name}'s object there: its new key {key} already exists (a "
        f"{kind} written outside this move); nothing of the object was moved: delete or "
        "rename that key, then run migrate_buckets again", model=spec.name, key=key)


def _changed(spec: ModelSpec, key: str) -> ValidationError:
    return ValidationError(
        f"{key} was written while migrate_buckets moved it: the writers of {spec.name} must "
        "be stopped during the move (docs/migrations.md); it was left at its old key: stop "
        "them and run migrate_buckets again", model=spec.name, key=key)


def _rename(spec: ModelSpec, pairs: list[tuple[str, str]]) -> Step:
    """One server: one script moves every object of the page, each whole."""
    objects = yield from _keys_of(spec, pairs)
    keys: list[str] = []
    sizes: list[int] = []
    for src, dst in objects:
        keys += [*src, *dst]
        sizes.append(len(src))
    flat = "1" if spec.layout == "flat" else "0"
    replies = yield from _ask(Batch(
        [MOVE.memo_call(spec.index_root(spec.tags()[0]), spec.delimiter, keys,
                        ["move", spec.delimiter, flat, *sizes])], write=True,
        idempotent=True, keys=keys))
    reply = replies[0]
    status = _text(reply[0])
    if status == "TAKEN":
        raise _taken(spec, _text(reply[1]), _text(reply[2]))
    if status == "CHANGED":
        raise _changed(spec, _text(reply[1]))
    if status != "MOVED":
        raise ServerError(f"unexpected reply {reply!r}", keys=tuple(keys[:5]),
                          command=f"migrate_buckets {spec.name}")
    return int(reply[1])


def _memo_drop(spec: ModelSpec, keys: list[str], payloads: list[Any]) -> Any:
    """The drop of one object's old keys under a memo in their slot (a resend after a lost
    reply answers DROPPED again, not GONE): under the index root of their hash tag, or,
    for keys without one, a memo whose hash tag is the object's key (ids and prefixes
    hold no braces)."""
    first, d = keys[0], spec.delimiter
    at = first.find("{")
    end = first.find("}", at + 1) if at >= 0 else -1
    if at >= 0 and end > at + 1:
        return MOVE.memo_call(f"{first[: end + 1]}{d}%idx{d}", d, keys, ["drop", *payloads])
    return MOVE.memo_call(f"{spec.prefix}{d}%idx{d}", d, keys, ["drop", *payloads],
                          slot_of=first)


def _copy_drop(spec: ModelSpec, pairs: list[tuple[str, str]], skey: str, state: _State
               ) -> Step:
    """A cluster: copy every key (DUMP, RESTORE with its PTTL), then delete the old ones
    with the script that checks they still hold what was copied. The page's new keys are
    saved in the progress first: a run that resumes the page takes a new key that exists
    for this move's own copy (and replaces it), any other for a key in the way."""
    objects = yield from _keys_of(spec, pairs)
    cmds: list[Any] = []
    for src, dst in objects:
        for a, b in zip(src, dst, strict=True):
            cmds += [("DUMP", a), ("PTTL", a), ("DUMP", b)]
    got = yield from _ask(Batch(cmds, keys=[k for s, t in objects for k in (*s, *t)]))
    # per object: the payloads its old keys hold, the restores of its leaves, and of its key
    plans: list[tuple[list[tuple[str, Any]], list[tuple[str, int, Any, bool]],
                      list[tuple[str, int, Any, bool]], list[str]]] = []
    at = 0
    for src, dst in objects:
        payloads: list[tuple[str, Any]] = []
        restores: list[tuple[str, int, Any, bool]] = []
        for a, b in zip(src, dst, strict=True):
            payload, pttl, there = got[at], int(got[at + 1]), got[at + 2]
            at += 3
            if payload is None or pttl == -2:
                continue  # gone since the SCAN (or a leaf the manifest lost)
            if there is not None and there != payload and b not in state.inflight:
                raise _taken(spec, b, "key")
            payloads.append((a, payload))
            if there != payload:
                restores.append((b, max(pttl, 0), payload, there is not None))
        if payloads and payloads[0][0] == src[0]:
            main = [r for r in restores if r[0] == dst[0]]
            plans.append((payloads, [r for r in restores if r[0] != dst[0]], main, dst))
    if not plans:
        return 0
    # added to the keys of pages copied before and not finished (a resumed page's SCAN
    # may find its objects in other pages than the stopped run did)
    state.inflight = sorted({*state.inflight, *(b for _, _, _, dst in plans for b in dst)})
    yield from _save(skey, state)
    leaves = [("RESTORE", b, ttl, p, *(("REPLACE",) if ours else ()))
              for _, rs, _, _ in plans for b, ttl, p, ours in rs]
    mains = [("RESTORE", b, ttl, p, *(("REPLACE",) if ours else ()))
             for _, _, rs, _ in plans for b, ttl, p, ours in rs]
    # the leaves first, the object's key (a flat manifest) last: the copy becomes an object
    # only when it is whole
    for cmds in (leaves, mains):
        if cmds:
            yield from _ask(Batch(cmds, write=True, idempotent=False,
                                  keys=[c[1] for c in cmds]))
    drops = [_memo_drop(spec, [a for a, _ in payloads], [p for _, p in payloads])
             for payloads, _, _, _ in plans]
    replies = yield from _ask(Batch(drops, write=True, idempotent=True,
                                    keys=[a for payloads, _, _, _ in plans for a, _ in payloads]))
    moved, made, changed, finished = 0, [], [], set()
    for (_, _, _, dst), reply in zip(plans, replies, strict=True):
        if _text(reply[0]) == "DROPPED":
            moved += 1
            finished.update(dst)
        elif _text(reply[0]) == "GONE":  # deleted meanwhile: its copy is all there is
            finished.update(dst)
        else:  # written since the copy: the new copy goes, the object stays where it was
            changed.append(_text(reply[1]))
            made += dst  # this run's copy, or an earlier run's (it held the same)
    state.inflight = [k for k in state.inflight if k not in finished]
    if made:
        yield from _ask(Batch([("DEL", b) for b in made], write=True, idempotent=True,
                              keys=made))
    if changed:
        raise _changed(spec, changed[0])
    return moved


def _drop(spec: ModelSpec, old: ModelSpec, count: int, targets: Sequence[Any]) -> Step:
    """Delete every index key of the old buckets."""
    d = spec.delimiter
    tail = glob_escape(f"{d}%idx{d}") + "*"
    if old.buckets is None:
        pattern = glob_escape(spec.prefix) + tail
        roots = {old.index_root(None)}
    else:
        pattern = glob_escape(f"{spec.prefix}{d}") + "{*}" + tail
        roots = {old.index_root(t) for t in old.tags()}
    for target in targets:
        cursor = 0
        while True:
            replies = yield from _ask(Batch([("SCAN", cursor, "MATCH", pattern, "COUNT",
                                              count)], target=target))
            cursor, raw = replies[0]
            if isinstance(cursor, dict):
                cursor = next(iter(cursor.values()))
            cursor = int(cursor)
            keys = [k for k in (_text(r) for r in raw) if _root(k, d) in roots]
            if keys:
                yield from _ask(Batch([("DEL", k) for k in keys], write=True,
                                      idempotent=True, keys=keys))
            if cursor == 0:
                break


def _root(key: str, d: str) -> str:
    mark = f"{d}%idx{d}"
    at = key.find(mark)
    return key[: at + len(mark)] if at >= 0 else ""


def _reindex(model: type, count: int, targets: Sequence[Any]) -> Step:
    """A reindex of the new model, its emitted items swallowed."""
    plan = reindex_plan(model, count, targets)
    try:
        step = next(plan)
        while True:
            step = plan.send(None) if isinstance(step, Emit) else plan.send((yield step))
    except StopIteration:
        return
    finally:  # ended early (closed, failed): the plan it drives too
        plan.close()


def _record(spec: ModelSpec, rkey: str, record: Any) -> Step:
    """The registry records the model with its new bucket count, every index ready, and
    the move's mark gone (one MULTI on the one key)."""
    kinds = index_kinds(spec)
    gone = [] if record is None else [n for n in record.states if n not in kinds]
    cmds: list[Any] = [("HSET", rkey, "schema", schema_text(describe(spec)),
                        "owner", owner_of(spec.cls), VERSION, new_version(),
                        *(x for n in kinds for x in (n, "ready")))]
    # an unregister's mark made before the move is dropped with it: this rewrites the
    # record (registry_unregister.lua: a drop deletes only a record marked since the last
    # write of its owner/schema)
    cmds.append(("HDEL", rkey, MOVING, UNREGISTER_FIELD, *gone))
    yield from _ask(Batch(cmds, atomic=True, write=True, idempotent=True, keys=[rkey]))


def print_progress(model: type, show: bool | None) -> Callable[[int, int], object] | None:
    """The stderr counter ``progress=True`` (or None on a terminal) shows."""
    if not (sys.stderr.isatty() if show is None else show):
        return None
    name = model.__name__

    def line(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\rmigrate_buckets {name}: {done}/{total}\x1b[K", end=end, file=sys.stderr)

    return line


class Feed:
    """What a store does with a move's emitted items (both stores): hands each
    :class:`MoveProgress` to the callback, and keeps the result."""

    def __init__(self, model: type, progress: ProgressArg) -> None:
        model_class(model)
        if progress is not None and not isinstance(progress, bool) and not callable(progress):
            raise ValidationError(f"progress must be a callable(done, total), a bool or "
                                  f"None, got {progress!r}")
        self.call = progress if callable(progress) else print_progress(model, progress)
        self.result = 0

    def feed(self, item: Any) -> object:
        """What the callback answered (an AsyncStore awaits an awaitable answer)."""
        if not isinstance(item, MoveProgress):
            self.result = int(item)
            return None
        return None if self.call is None else self.call(item.done, item.total)
