"""Migrations: versioned steps over stored objects, planned, applied online, recorded.

The logic is one sans-I/O core (:func:`apply_core`, :func:`status_core`, :func:`plan_core`):
generators that yield :class:`~redmodel._plan.Batch` es (run by the store), :class:`TxWork`
(a batch of objects to read and rewrite under WATCH: run by the store's transaction, sync
or asyncio) and :class:`~redmodel._plan.Emit` of :class:`MigrationProgress` (handed to the
caller's callback). :func:`drive_sync` and :func:`drive_async` are the two shells.

Where things live: one hash per migration set, ``<name>:%migrations`` (one key, so one
slot on a cluster): ``step:<id>`` holds the JSON record of an applied step,
``cursor:<id>`` the position of a step under way, ``lease`` the holder of the set's lease
and when it expires (server time), so two ``apply`` never run at once and a crashed
holder's lease runs out; ``done:<marker key>`` names a custom step's marker hashes
(:func:`marker_key`: which objects the step saved, written in each object's own
MULTI/EXEC, so a custom step is applied at most once per object), deleted once the step
is recorded. Lost replies are resolved by reading (the markers, the records hash), never
by resending a write blindly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

import attrs
import redis
from redis.crc import key_slot

from redmodel import _rebucket
from redmodel._args import MAX_PAGE, page_count
from redmodel._errors import (
    ConflictError,
    DecodeError,
    OutcomeUnknownError,
    RedmodelError,
    SchemaConflictError,
    ValidationError,
)
from redmodel._indexes import _registry
from redmodel._indexes._repair import verify_plan
from redmodel._indexes._specs import SEP, record_lines
from redmodel._layouts._blob import BlobLayout
from redmodel._layouts._flat import FlatLayout, read_batch
from redmodel._layouts._hash import MARKER, HashLayout, stale_fields
from redmodel._layouts._pick import layout_of
from redmodel._models._keys import _tag_for_slot, escape
from redmodel._models._schema import ModelSpec, spec_of
from redmodel._models._specs import model_spec
from redmodel._plan import Batch, Emit, close_plan, script
from redmodel._plans._objects import save as save_plan
from redmodel._plans._objects import scan_page
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store
from redmodel.transactions._policy import RetryPolicy
from redmodel.transactions._run import run_transaction, run_transaction_async

LEASE = script("migrations")
KIND_REWRITE = "rewrite"
KIND_CUSTOM = "custom"
KIND_BUILD = "build_index"
KIND_DROP = "drop_index"
KIND_REBUCKET = "rebucket"  # offline: store.migrate_buckets' plan, under the lease
APPLIED, PENDING, PARTIAL = "applied", "pending", "partial"
SAMPLE = 100
FINISHED = -1  # a cursor's scan once the walk is done (SCAN cursors are never negative)
VERIFY_RUNS = 3  # a verify that finds problems runs again; what every run finds counts
REDO_LOST = 3  # a batch whose EXEC reply was lost is read and done again this many times
MAX_COUNT = MAX_PAGE  # objects per batch (SCAN's COUNT)
MAX_LEASE = 1e11  # seconds, the store's TTL bound: the expiry in ms stays an exact integer
DONE = "done:"  # records-hash field prefix naming a custom step's marker hash


# ---- errors ---------------------------------------------------------------------------------


class MigrationError(RedmodelError):
    """A migration cannot run or did not finish: a bad step, steps out of order, a step
    that did not verify. ``step`` is the step's id (None for the whole set) and ``key``
    the set's records key."""

    def __init__(self, message: str, *, step: str | None = None, key: str | None = None
                 ) -> None:
        super().__init__(message)
        self.step = step
        self.key = key


class MigrationLockedError(MigrationError):
    """Another ``apply`` holds the set's lease (``holder``: host:pid:token of it,
    ``expires_in``: seconds until it runs out unless renewed), or this one lost it."""

    def __init__(self, message: str, *, key: str, holder: str, expires_in: float | None
                 ) -> None:
        super().__init__(message, key=key)
        self.holder = holder
        self.expires_in = expires_in


class MigrationStepError(MigrationError):
    """A custom step's function raised for an object (the application's error, not
    redmodel's): ``step`` is the step's id, ``object_key`` the object's key, and the
    function's exception is ``__cause__``. Nothing of that batch was written; the step
    stays partial (or pending), so ``apply`` again runs it from the batch."""

    def __init__(self, message: str, *, step: str, object_key: str) -> None:
        super().__init__(message, step=step)
        self.object_key = object_key


class MigrationVerifyError(MigrationError):
    """A step ran to its end but its check failed (objects still in an old form, an index
    that disagrees with the objects); ``problems`` lists them in words. The step is not
    recorded: ``apply`` again runs it again (only what is left changes)."""

    def __init__(self, message: str, *, step: str, key: str, problems: Sequence[str]) -> None:
        super().__init__(message, step=step, key=key)
        self.problems = tuple(problems)


# ---- steps ----------------------------------------------------------------------------------


@attrs.frozen
class Operation:
    """What a step does to one model (made by :func:`rewrite`, :func:`build_index`,
    :func:`drop_index`, or ``Migrations.step``)."""

    kind: str
    model: type
    index: str | None = None
    fn: Callable[[Any], Any] | None = attrs.field(default=None, eq=False)
    from_buckets: int | None = None  # rebucket: the count the objects are stored with

    def __attrs_post_init__(self) -> None:
        model_spec(self.model)  # a model class (ModelDefinitionError), as the makers check

    @property
    def offline(self) -> bool:
        """Whether the step needs the model's writers stopped (a bucket move)."""
        return self.kind == KIND_REBUCKET

    def describe(self) -> str:
        name = self.model.__name__
        if self.kind == KIND_REBUCKET:
            to = spec_of(self.model).buckets
            return (f"move every {name} from {_rebucket._name(self.from_buckets)} to "
                    f"{_rebucket._name(to)} (OFFLINE: stop every process that uses {name})")
        if self.kind == KIND_REWRITE:
            return f"rewrite every {name} in its current form"
        if self.kind == KIND_CUSTOM:
            fn = getattr(self.fn, "__qualname__", repr(self.fn))
            return f"{fn}() over every {name}"
        return f"{self.kind.replace('_', ' ')} {self.index!r} of {name}"


@attrs.frozen
class Step:
    """One versioned step of a :class:`~redmodel.migrations.Migrations` set."""

    id: str
    operation: Operation

    @property
    def model(self) -> type:
        return self.operation.model

    @property
    def kind(self) -> str:
        return self.operation.kind


def check_count(count: object) -> int:
    return page_count(count)


def check_lease(lease: object) -> float:
    if (not isinstance(lease, (int, float)) or isinstance(lease, bool) or
            not 0 < lease <= MAX_LEASE):
        raise ValidationError(f"lease must be a positive number of seconds up to "
                              f"{MAX_LEASE:g}, not {lease!r}")
    return float(lease)


def model_label(cls: type) -> str:
    """``module:Class``, as ``redmodel ... -m`` takes it (a script's models: its name, not
    ``__main__``)."""
    return f"{_registry.module_name(cls.__module__)}:{cls.__qualname__}"


def check_id(step_id: object) -> str:
    if not isinstance(step_id, str) or not step_id or step_id != step_id.strip():
        raise ValidationError(f"a step id must be a non-empty str without surrounding "
                              f"whitespace, not {step_id!r}")
    try:
        step_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("a step id must be valid unicode text (no lone surrogates)"
                              ) from None
    return step_id


def records_key(name: str) -> str:
    return f"{escape(name)}:%migrations"


# ---- records --------------------------------------------------------------------------------


@attrs.frozen
class StepRecord:
    """What ``apply`` recorded for a step it applied and verified."""

    id: str
    kind: str
    model: str
    applied_at: float  # POSIX seconds
    visited: int
    changed: int
    seconds: float
    verified: bool
    position: int  # the step's place in the set when it ran

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Cursor:
    """Where a step under way stopped: after the SCAN page ``scan`` of target ``target``
    (a node's name; empty for a single server)."""

    target: str
    scan: int
    visited: int
    changed: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class StepState:
    """One step of a set in ``plan`` / ``status``: ``state`` is ``applied``, ``pending`` or
    ``partial`` (stopped mid-way; ``cursor`` says where). ``plan`` also fills ``objects``
    (how many stored objects the step would visit: a SCAN count), ``changes`` (what it
    changes, see docs/migrations.md) and ``problems`` (why the registry would refuse the
    step's model). ``offline``: the step needs every process that uses its model stopped
    (``rebucket``); its ``objects`` are the objects it will move."""

    id: str
    kind: str
    model: str
    description: str
    state: str
    record: StepRecord | None = None
    cursor: Cursor | None = None
    objects: int | None = None
    changes: dict[str, Any] = attrs.Factory(dict)
    problems: tuple[str, ...] = ()
    offline: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "model": self.model,
                "description": self.description, "state": self.state,
                "offline": self.offline,
                "record": None if self.record is None else self.record.to_json(),
                "cursor": None if self.cursor is None else self.cursor.to_json(),
                "objects": self.objects, "changes": self.changes,
                "problems": list(self.problems)}


@attrs.frozen
class MigrationStatus:
    """The steps of a set against what the database recorded. ``unknown``: records of
    steps the set no longer has (a step removed or renamed); ``out_of_order``: pending
    steps that come before an applied one (a step inserted after later ones ran);
    ``lease``: who holds the set's lease now, or None."""

    name: str
    key: str
    steps: tuple[StepState, ...]
    unknown: tuple[StepRecord, ...] = ()
    out_of_order: tuple[str, ...] = ()
    lease: str | None = None

    @property
    def pending(self) -> tuple[StepState, ...]:
        """The steps ``apply`` would run, in order (pending and partial ones)."""
        return tuple(s for s in self.steps if s.state != APPLIED)

    @property
    def applied(self) -> tuple[StepState, ...]:
        return tuple(s for s in self.steps if s.state == APPLIED)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key,
                "steps": [s.to_json() for s in self.steps],
                "unknown": [r.to_json() for r in self.unknown],
                "out_of_order": list(self.out_of_order), "lease": self.lease,
                "pending": len(self.pending)}


@attrs.frozen
class MigrationProgress:
    """Handed to ``apply``'s ``progress`` callback after each batch: the step, its phase
    (``rewrite``, ``custom``, ``rebucket``, ``verify``, or the reindex pass of an index
    step), objects done and the step's total (a count taken when the step started; None
    when unknown; a ``rebucket`` step counts objects moved and to move, across runs),
    objects per second and the estimated seconds left (None when unknown)."""

    step: str
    phase: str
    done: int
    total: int | None
    changed: int
    elapsed: float
    rate: float | None
    eta: float | None


_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "kind": (str,), "model": (str,), "applied_at": (int, float),
    "visited": (int,), "changed": (int,), "seconds": (int, float), "verified": (bool,),
    "position": (int,)}
_CURSOR_TYPES: dict[str, tuple[type, ...]] = {
    "target": (str,), "scan": (int,), "visited": (int,), "changed": (int,),
    "seconds": (int, float)}
_LATEST = 253402300799.0  # 9999-12-31 23:59:59 UTC, the last time a record can name


def _checked(key: str, field: str, text: str, types: dict[str, tuple[type, ...]]
             ) -> dict[str, Any]:
    """The JSON object of a record field, every value of its type and range; otherwise a
    MigrationError naming the key and the field (the record is neither applied nor
    pending: a guess either way would run a step twice or skip it)."""
    def bad(why: str) -> MigrationError:
        return _checked_error(key, field, why)

    try:
        value = json.loads(text)
    except ValueError:
        raise bad("not JSON") from None
    if not isinstance(value, dict) or set(value) != set(types):
        raise bad(f"expected a JSON object with {sorted(types)}")
    for name, allowed in types.items():
        v = value[name]
        if isinstance(v, bool) and bool not in allowed:
            raise bad(f"{name} is {v!r}")
        if not isinstance(v, allowed):
            raise bad(f"{name} is {v!r}")
        if isinstance(v, float) and not (0.0 <= v <= _LATEST):
            raise bad(f"{name} is {v!r}")
        if isinstance(v, int) and not isinstance(v, bool) and not (
                (FINISHED if name == "scan" else 0) <= v < 2**63):
            raise bad(f"{name} is {v!r}")
    if value.get("applied_at", 0) > _LATEST or value.get("seconds", 0) > _LATEST:
        raise bad("a time out of range")
    return value


def _parse_all(raw: Any, key: str
               ) -> tuple[dict[str, StepRecord], dict[str, Cursor], str | None, dict[str, str]]:
    """Step records, cursors, the lease's holder (token) and the marker hashes of custom
    steps (marker key -> step id) of a records hash; a field this version cannot read is
    a MigrationError naming it. Fields of other names are left alone (a later version's)."""
    items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    records: dict[str, StepRecord] = {}
    cursors: dict[str, Cursor] = {}
    marks: dict[str, str] = {}
    lease = None
    for k, v in items:
        field = k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else str(k)
        text = v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
        if field.startswith("step:"):
            value = _checked(key, field, text, _RECORD_TYPES)
            if value["id"] != field[5:]:
                raise _checked_error(key, field, f"id is {value['id']!r}")
            records[field[5:]] = StepRecord(**value)
        elif field.startswith("cursor:"):
            cursors[field[7:]] = Cursor(**_checked(key, field, text, _CURSOR_TYPES))
        elif field.startswith(DONE):
            marks[field[len(DONE):]] = text
        elif field == "lease":
            if _LEASE_VALUE.fullmatch(text) is None:
                raise _checked_error(key, field, "expected '<holder> <ms>'")
            lease = text.split(" ", 1)[0]
    return records, cursors, lease, marks


# ASCII digits only, as migrations.lua's '^(%S+) (%d+)$' reads them: Python's \d also
# takes other scripts' digits ("tok \u0663"), which the script would take as no lease.
_LEASE_VALUE = re.compile(r"\S+ [0-9]{1,17}")


def _checked_error(key: str, field: str, why: str) -> MigrationError:
    return MigrationError(
        f"the migrations record {key!r} field {field!r} cannot be read ({why}): it was "
        "not written by this version of redmodel; fix it, or delete the field if you know "
        "the step never ran (HDEL)", key=key)


def _read_records(key: str) -> Generator[Batch, Any, Any]:
    replies = yield Batch([("HGETALL", key)], keys=[key])
    return _parse_all(replies[0] or {}, key)


def status_core(name: str, steps: Sequence[Step]) -> Generator[Any, Any, MigrationStatus]:
    status, _ = yield from _status(name, steps)
    return status


def _status(name: str, steps: Sequence[Step]
            ) -> Generator[Any, Any, tuple[MigrationStatus, dict[str, str]]]:
    """The status, and the marker hashes the records name (marker key -> step id)."""
    key = records_key(name)
    records, cursors, lease, marks = yield from _read_records(key)
    states = []
    for step in steps:
        op = step.operation
        record = records.get(step.id)
        cursor = cursors.get(step.id)
        state = APPLIED if record else PARTIAL if cursor else PENDING
        states.append(StepState(step.id, op.kind, model_label(op.model), op.describe(),
                                state, record, cursor, offline=op.offline))
    known = {s.id for s in steps}
    unknown = tuple(sorted((r for i, r in records.items() if i not in known),
                           key=lambda r: r.applied_at))
    last_applied = max((i for i, s in enumerate(states) if s.state == APPLIED), default=-1)
    late = tuple(s.id for s in states[:max(last_applied, 0)] if s.state != APPLIED)
    return MigrationStatus(name, key, tuple(states), unknown, late, lease), marks


# ---- what a step changes (plan) -------------------------------------------------------------


def _count(spec: ModelSpec, targets: Sequence[Any], count: int
           ) -> Generator[Batch, Any, int]:
    total = 0
    for target in targets:
        cursor = 0
        while True:
            cursor, keys = yield from scan_page(spec, cursor, count, target)
            total += len(keys)
            if cursor == 0:
                break
    return total


def _renames(spec: ModelSpec) -> tuple[dict[str, list[str]], list[str]]:
    renamed: dict[str, list[str]] = {}
    upgraded: list[str] = []

    def walk(fields: Sequence[Any], where: str) -> None:
        for f in fields:
            path = where + f.name
            if f.old_stored:
                renamed[path] = list(f.old_stored)
            if f.upgrade is not None:
                upgraded.append(path)
            if f.kind == "struct":
                walk(f.children, path + ".")

    walk(spec.fields, "")
    return renamed, upgraded


def _stored_names(spec: ModelSpec, reply: Any) -> set[str] | None:
    """The names an object's stored form holds at its top level, where the layout shows
    them (hash fields; a blob's payload keys when it decodes to a mapping)."""
    layout = layout_of(spec)
    if isinstance(layout, HashLayout):
        data = reply.items() if isinstance(reply, dict) else ()
        return {(k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k)
                .split(spec.delimiter, 1)[0] for k, _ in data} - {MARKER.decode()}
    return None


def plan_changes(spec: ModelSpec, kind: str, index: str | None,
                 sample: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """What a step changes, in words a review reads: renames, upgrades, stored names the
    model no longer declares (from ``sample``: (key, stored reply) pairs), how many of the
    sampled objects are in an old form, and indexes built or dropped."""
    if kind in (KIND_BUILD, KIND_DROP):
        return {"index": index}
    renamed, upgraded = _renames(spec)
    declared = {f.stored for f in spec.fields} | {n for f in spec.fields for n in f.old_stored}
    removed: dict[str, int] = {}
    stale = failed = 0
    layout = layout_of(spec)
    for key, reply in sample:
        names = _stored_names(spec, reply)
        for n in sorted((names or set()) - declared):
            removed[n] = removed.get(n, 0) + 1
        try:
            obj = layout.decode(key, spec.id_of_key(key) or "", reply)
        except DecodeError:
            failed += 1
            continue
        if obj is not None and is_stale(spec, key, reply, obj):
            stale += 1
    out: dict[str, Any] = {"sampled": len(sample)}
    if kind == KIND_REWRITE:
        out.update(renamed=renamed, upgraded=upgraded, removed=removed, old_form=stale)
        if spec.indexes is not None:
            out["indexes"] = sorted(_registry.index_kinds(spec))
    out["undecodable"] = failed
    return out


def _sample(spec: ModelSpec, targets: Sequence[Any]) -> Generator[Batch, Any, list[Any]]:
    keys: list[str] = []
    for target in targets:
        cursor = 0
        while len(keys) < SAMPLE:
            cursor, page = yield from scan_page(spec, cursor, SAMPLE, target)
            keys += page[: SAMPLE - len(keys)]
            if cursor == 0:
                break
    if not keys:
        return []
    layout = layout_of(spec)
    replies = yield from read_batch(Batch([layout.read(k) for k in keys], keys=keys))
    return [(k, r) for k, r in zip(keys, replies, strict=True) if r]


def registry_problems(spec: ModelSpec, after_move: bool = False
                      ) -> Generator[Batch, Any, tuple[str, ...]]:
    """Why the registry would refuse the model. ``after_move``: a ``rebucket`` step of its
    prefix runs first, so the record is taken as that step leaves it (the model's bucket
    count, no move under way)."""
    record = yield from _registry.read_plan(_registry.registry_key(spec.prefix))
    if record is None:
        return ()
    if after_move:
        record = _moved(spec, record)
    try:
        _registry.check(spec, record, _registry.describe(spec), _registry.owner_of(spec.cls))
    except SchemaConflictError as e:
        return e.problems or (str(e),)
    return ()


def _moved(spec: ModelSpec, record: Any) -> Any:
    """``record`` as a finished bucket move of ``spec``'s prefix leaves it."""
    schema = dict(record.schema, buckets=spec.buckets) if record.schema else record.schema
    return attrs.evolve(record, moving="", schema=schema)


# ---- rebucket: store.migrate_buckets as a step ----------------------------------------------

MOVE, RESUME, NOTHING, RECORD = "move", "resume", "done", "record"


def rebucket_look(spec: ModelSpec, from_buckets: int | None, targets: Sequence[Any],
                  count: int, counting: bool = True
                  ) -> Generator[Batch, Any, tuple[str, dict[str, Any], int]]:
    """What a ``rebucket`` step finds, reading only: (what it will do, what to show, how
    many objects it will move). ``move``: objects are stored under ``from_buckets``;
    ``resume``: a move (``<prefix>:%rebucket``) of these counts is under way; ``done``: the
    registry already records the model's count, or nothing is stored and nothing recorded;
    ``record``: the registry records ``from_buckets`` and nothing is stored (only the count
    is recorded). Raises ValidationError (or SchemaConflictError) for what the move would
    refuse: another move under way, a registry that records another count, a change
    other than the count that the registry refuses. ``counting=False``: only those checks
    (no SCAN; answers ``move``)."""
    old = _rebucket.check_args(spec, from_buckets, count)
    skey, rkey = _rebucket.state_key(spec), _registry.registry_key(spec.prefix)
    replies = yield Batch([("GET", skey), ("HGETALL", rkey)], keys=[skey, rkey])
    info: dict[str, Any] = {"from_buckets": from_buckets, "to_buckets": spec.buckets,
                            "offline": f"stop every process that uses {spec.name} first"}
    state = _rebucket._State.load(replies[0]) if replies[0] is not None else None
    if replies[0] is not None and state is None:
        raise ValidationError(f"{skey} does not hold a bucket move's progress: delete it",
                              model=spec.name, key=skey)
    record = _registry.parse(rkey, replies[1])
    if state is not None:
        if (state.old, state.new) != (from_buckets, spec.buckets):
            raise ValidationError(
                f"another bucket move is under way, from {_rebucket._name(state.old)} to "
                f"{_rebucket._name(state.new)} ({skey}): finish it first", model=spec.name,
                key=skey)
        info["under_way"] = f"{state.done} of {state.total} moved ({skey})"
        return RESUME, info, max(state.total - state.done, 0)
    recorded: Any = _UNRECORDED
    if record is not None and record.schema:
        recorded = record.schema.get("buckets")
    if recorded == spec.buckets:
        info["nothing_to_do"] = (f"the registry {rkey} already records "
                                 f"{_rebucket._name(spec.buckets)}")
        return NOTHING, info, 0
    if recorded is not _UNRECORDED:
        if recorded != from_buckets:
            raise ValidationError(
                f"the registry {rkey} records {_rebucket._name(recorded)} for {spec.name}'s "
                f"stored objects, not from_buckets={from_buckets}: the step does not "
                "match this database", model=spec.name, key=rkey)
        assert record is not None
        # this move's own mark without its progress: a start that lost its progress
        # write moved nothing yet, and the move starts again (_rebucket._start)
        if record.moving and record.moving != _rebucket.mark_of(from_buckets, spec.buckets):
            raise SchemaConflictError(
                f"the registry {rkey} says a bucket move is under way ({record.moving}) but "
                f"its progress ({skey}) is gone: check that no other migrate_buckets runs, "
                f"then HDEL {rkey} {_rebucket.MOVING} and apply again",
                prefix=spec.prefix, key=rkey, owner=record.owner,
                model=_registry.owner_of(spec.cls))
        # everything but the bucket count must be a change the registry accepts
        _registry.check(spec, attrs.evolve(record, moving=""),
                        dict(_registry.describe(spec), buckets=recorded),
                        _registry.owner_of(spec.cls))
    if not counting:
        return MOVE, info, 0
    moving = same = 0
    for target in targets:
        cursor = 0
        while True:
            cursor, pairs = yield from _rebucket._scan(spec, old, spec, cursor, count, target)
            moving += sum(1 for a, b in pairs if a != b)
            same += sum(1 for a, b in pairs if a == b)
            if cursor == 0:
                break
    info["in_place"] = same  # their key is the same in both counts
    if moving or same:
        return MOVE, info, moving
    if recorded is _UNRECORDED:
        info["nothing_to_do"] = (f"no {spec.name} objects are stored with "
                                 f"{_rebucket._name(from_buckets)}, and the registry "
                                 "records no count")
        return NOTHING, info, 0
    info["record_only"] = "nothing is stored: only the registry's count changes"
    return RECORD, info, 0


_UNRECORDED = object()


def _run_rebucket(step: Step, spec: ModelSpec, cursor: Cursor | None, lease: Lease,
                  registry: Any, targets: Sequence[Any], cluster: bool, count: int
                  ) -> Generator[Any, Any, tuple[int, int, _Clock]]:
    """The move, through ``store.migrate_buckets``' own plan (``_rebucket.migrate_plan``,
    which resumes from ``<prefix>:%rebucket``); each of its pages also saves the step's
    cursor (renewing the lease), and the lease is renewed between pages at least every
    third of its time. Returns (objects found to move, objects moved, clock)."""
    op = step.operation
    action, _, _ = yield from rebucket_look(spec, op.from_buckets, targets, count)
    before = cursor.visited if cursor is not None else 0
    seconds = cursor.seconds if cursor is not None else 0.0
    clock = _Clock(before, seconds)
    total = moved = before
    started = False
    if action == NOTHING:  # moved already (a run that stopped before its record), or empty
        return total, moved, clock
    plan = _rebucket.migrate_plan(step.model, op.from_buckets, count, targets, cluster,
                                  registry.enabled, empty_ok=action == RECORD)
    renewed = time.monotonic()
    reply: Any = None
    try:
        while True:
            try:
                item = plan.send(reply)
            except StopIteration:
                break
            reply = None
            if isinstance(item, Emit):
                for x in item.items:
                    if not isinstance(x, _rebucket.MoveProgress):
                        moved = int(x)
                        continue
                    if not started:  # the move's own count of what earlier runs moved
                        clock, started = _Clock(x.done, seconds), True
                    total, moved = max(x.total, x.done), x.done
                    position = Cursor("", 0, moved, moved, round(clock.elapsed(), 3))
                    yield from lease.run("hold", [(f"cursor:{step.id}",
                                                   _dumps(position.to_json()))])
                    renewed = time.monotonic()
                    yield Emit([clock.progress(step.id, KIND_REBUCKET, moved, total, moved)])
                continue
            if time.monotonic() - renewed > lease.ms / 3000:
                yield from lease.run("hold")
                renewed = time.monotonic()
            reply = yield item
    finally:  # ended early (thrown into, closed): the plan it drives too
        plan.close()
    return max(total, moved), moved, clock


def _unknown_drop(step: Step, spec: ModelSpec, state: StepState
                  ) -> Generator[Batch, Any, str | None]:
    """Why a ``drop_index`` step names no index (a misspelled name would be recorded as
    applied, having dropped nothing): the model's registry record holds no state of that
    name. A step under way (its registry state already deleted) passes; so does a prefix
    with no registry record (a store with ``registry=False``: nothing to check against)."""
    if state.state != PENDING:
        return None
    name = step.operation.index or ""
    record = yield from _registry.read_plan(_registry.registry_key(spec.prefix))
    if record is None or f"index:{name}" in record.states or f"unique:{name}" in record.states:
        return None
    held = sorted(n.split(":", 1)[1] for n in record.states if ":" in n
                  and not n.endswith(":%all"))
    return (f"drop_index names {name!r}, but the registry record "
            f"{_registry.registry_key(spec.prefix)!r} holds no index of that name "
            f"(it holds {held}): misspelled?")


def plan_core(name: str, steps: Sequence[Step], where: Callable[[], Sequence[Any]],
              count: int) -> Generator[Any, Any, MigrationStatus]:
    """``where()`` lists the SCAN targets; asked after the first round trip (an asyncio
    cluster client learns its nodes then)."""
    check_count(count)
    status = yield from status_core(name, steps)
    targets = where()
    planned = []
    # prefixes a pending rebucket step moves before later steps: their stored bucket count
    moves: dict[str, int | None] = {}
    for state, step in zip(status.steps, steps, strict=True):
        if state.state == APPLIED:
            planned.append(state)
            continue
        spec = spec_of(step.model)
        if step.kind == KIND_REBUCKET:
            moves.setdefault(spec.prefix, step.operation.from_buckets)
            try:
                _, changes, objects = yield from rebucket_look(
                    spec, step.operation.from_buckets, targets, count)
                problems: tuple[str, ...] = ()
            except (ValidationError, SchemaConflictError) as e:
                changes, objects = {"from_buckets": step.operation.from_buckets,
                                    "to_buckets": spec.buckets}, 0
                problems = (str(e),)
            planned.append(attrs.evolve(state, objects=objects, changes=changes,
                                        problems=problems))
            continue
        problems = yield from registry_problems(spec, spec.prefix in moves)
        if step.kind == KIND_DROP:
            unknown = yield from _unknown_drop(step, spec, state)
            problems += (unknown,) if unknown else ()
        # a step after a move visits the objects the move leaves: count them where they are
        now = attrs.evolve(spec, buckets=moves[spec.prefix]) if spec.prefix in moves else spec
        objects = yield from _count(now, targets, count)
        sample = yield from _sample(now, targets)
        changes = plan_changes(spec, step.kind, step.operation.index, sample)
        planned.append(attrs.evolve(state, objects=objects, changes=changes,
                                    problems=problems))
    return attrs.evolve(status, steps=tuple(planned))


# ---- old forms ------------------------------------------------------------------------------


def is_stale(spec: ModelSpec, key: str, reply: Any, obj: Any) -> bool:
    """Whether ``reply`` (what is stored at ``key``, read by the layout) is not what a whole
    save of ``obj`` (decoded from it) would store: an old name, a removed field, a value of
    an older type, a field added since. Where the stored form cannot be compared (values
    encrypted, which differ on every write) every object counts as stale, so a rewrite
    rewrites it."""
    layout = layout_of(spec)
    if isinstance(layout, HashLayout):
        data = {k: v for k, v in (reply.items() if isinstance(reply, dict) else ())
                if k != MARKER}
        stale, moved = stale_fields(obj)
        if stale or moved:
            return True
        want = layout.encode_state(obj)
        if layout.encrypted:
            return set(want) != set(data)
        return want != data
    if isinstance(layout, BlobLayout):
        if layout.codec.encrypts:
            return True
        command = layout.save(key, obj, None)
        assert isinstance(command, tuple)
        return bool(command[2] != reply)
    if isinstance(layout, FlatLayout) and not _flat_encrypted(spec.fields):
        write = layout.save(key, obj, None)  # args: ttl, delimiter, manifest, leaf values
        stored = [v.encode() if isinstance(v, str) else v for v in reply]
        return [write.args[2].encode(), *write.args[3:]] != stored
    return True


def _flat_encrypted(fields: Sequence[Any]) -> bool:
    return any((f.codec is not None and f.codec.encrypts) or _flat_encrypted(f.children)
               for f in fields)


# ---- applying -------------------------------------------------------------------------------


@attrs.frozen
class TxWork:
    """Objects a shell reads and rewrites in one optimistic transaction: ``read(tx)`` is
    the read plan it runs through ``tx.query`` (WATCHing the keys), ``write(tx, rows)``
    queues the saves and answers how many objects it changed."""

    keys: tuple[str, ...]
    read: Any  # Plan[list[tuple[str, Any, Any]]] factory
    write: Callable[[Any, list[Any]], int]
    retry: bool  # False: one attempt (a conflict raises ConflictError into the core)


def _rows(spec: ModelSpec, keys: Sequence[str]) -> Generator[Batch, Any, list[Any]]:
    """(key, stored reply, decoded object) of each key still holding an object."""
    layout = layout_of(spec)
    replies = yield from read_batch(Batch([layout.read(k) for k in keys], keys=keys))
    out = []
    for k, r in zip(keys, replies, strict=True):
        obj = layout.decode(k, spec.id_of_key(k) or "", r)
        if obj is not None:
            out.append((k, r, obj))
    return out


def _writer(spec: ModelSpec, op: Operation, step_id: str = ""
            ) -> Callable[[Any, list[Any]], int]:
    def write(tx: Any, rows: list[Any], saved: list[str] | None = None) -> int:
        changed = 0
        for key, reply, obj in rows:
            if op.kind == KIND_CUSTOM:
                assert op.fn is not None
                try:
                    new = op.fn(obj)
                except Exception as e:
                    # its type only: its text may quote the object's (decrypted) values;
                    # the exception itself is the __cause__
                    raise MigrationStepError(
                        f"step {step_id!r} ({op.describe()}): the function raised "
                        f"{type(e).__name__} for {key!r} (its __cause__); nothing of this "
                        "batch was written", step=step_id, object_key=key) from e
                if new is None:
                    continue
                if type(new) is not spec.cls or spec.key_for(getattr(new, spec.key.name)) != key:
                    # the id is in the key (never encrypted); anything else only by its
                    # type: it may be or hold a decrypted value (attack 33A F3)
                    what = (f"a {spec.cls.__name__} with id "
                            f"{getattr(new, spec.key.name)!r}" if type(new) is spec.cls
                            else f"a {type(new).__qualname__.rsplit('>.', 1)[-1]}")
                    raise MigrationError(
                        f"{op.describe()}: for {key!r} the function returned {what}; it must "
                        f"return the {spec.cls.__name__} it was given (same id), or None",
                        key=key)
                _save_whole(tx, new)
                if saved is not None:
                    saved.append(key)
            elif op.kind == KIND_BUILD or is_stale(spec, key, reply, obj):
                # a rewrite keeps the values (its decode reads the old form), so it writes
                # all their entries too: an object stored before its model had an index
                # (no record says so any more) is indexed by it, as the docs promise
                _save_whole(tx, obj, fresh=op.kind in (KIND_BUILD, KIND_REWRITE))
            else:
                continue
            changed += 1
        return changed
    return write


def _save_whole(tx: Any, obj: Any, fresh: bool = False) -> None:
    """Queue a whole save of ``obj`` in ``tx`` (a transaction's ``save`` of a tracked object
    sends only what changed, keeping removed fields): every field, old names and removed
    fields deleted, index entries as the model says now; ``ttl=None`` keeps the expiry the
    object has. ``fresh``: the object may have none of its entries yet (an index is being
    built), so its save writes them all and adds it to the all-ids index (an object
    without a record is otherwise taken to have what its fields compute to)."""
    tx._models.add(type(obj))
    if fresh:
        spec = spec_of(type(obj))
        tx._core.hints.unindexed.add(spec.key_for(getattr(obj, spec.key.name)))
    tx.queue(save_plan(obj, None, True, hints=tx._core.hints), f"migrate {type(obj).__name__}")


class _Clock:
    """Rate and ETA of a step, from its start (and what a resumed run had done before)."""

    def __init__(self, before: int, seconds: float) -> None:
        self.started = time.monotonic()
        self.before = before
        self.seconds = seconds

    def elapsed(self) -> float:
        return self.seconds + time.monotonic() - self.started

    def progress(self, step: str, phase: str, done: int, total: int | None, changed: int
                 ) -> MigrationProgress:
        now = time.monotonic() - self.started
        fresh = done - self.before
        rate = fresh / now if now > 0 and fresh > 0 else None
        eta = (max(0.0, (total - done) / rate) if rate and total is not None else None)
        return MigrationProgress(step, phase, done, total, changed, self.seconds + now, rate,
                                 eta)


@attrs.define
class Lease:
    key: str
    token: str
    ms: int

    def call(self, mode: str, sets: Sequence[tuple[str, str]] = (),
             dels: Sequence[str] = ()) -> Batch:
        args: list[Any] = [self.token, mode, self.ms, len(sets)]
        for f, v in sets:
            args += [f, v]
        args += list(dels)
        return Batch([LEASE.call([self.key], args)], write=True, idempotent=False,
                     keys=[self.key])

    def run(self, mode: str, sets: Sequence[tuple[str, str]] = (),
            dels: Sequence[str] = ()) -> Generator[Batch, Any, None]:
        """The lease script (:meth:`call`), checked (:meth:`check`). A lost reply is never
        resent blindly: the records hash is read back to learn whether the script ran
        (its fields written, the lease held, or released for ``drop``); only a script
        that did not run is sent again, which is then its own check."""
        for attempt in range(REDO_LOST + 1):
            try:
                self.check((yield self.call(mode, sets, dels))[0])
                return
            except (OutcomeUnknownError, redis.ConnectionError, redis.TimeoutError):
                if attempt == REDO_LOST:
                    raise
            reply = yield Batch([("HGETALL", self.key)], keys=[self.key])
            fields = {(k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k):
                      (v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v)
                      for k, v in (reply[0] or {}).items()}
            holder = str(fields.get("lease", "")).split(" ", 1)[0]
            written = (all(fields.get(f) == v for f, v in sets) and
                       not any(d in fields for d in dels))
            if mode == "take" and holder == self.token:
                return
            if mode == "hold" and written and (sets or dels or holder == self.token):
                return  # it ran (a lease lost since is found by the next renewal)
            if mode == "drop" and written and holder != self.token:
                return
        raise AssertionError("unreachable")

    def check(self, reply: Any) -> None:
        words = [w.decode() if isinstance(w, bytes) else str(w) for w in reply]
        if words[0] == "OK":
            return
        holder = words[1] if len(words) > 1 else ""
        if words[0] == "HELD":
            left = int(words[2]) / 1000
            raise MigrationLockedError(
                f"another apply holds the migrations lease {self.key!r} ({holder}) for "
                f"{left:.1f} s more unless it renews it; wait for it to finish, or, if it "
                "crashed, for the lease to run out", key=self.key, holder=holder,
                expires_in=left)
        raise MigrationLockedError(
            f"this apply lost the migrations lease {self.key!r} (it ran out: a batch took "
            f"longer than the lease, {self.ms / 1000:g} s){' to ' + holder if holder else ''}"
            "; nothing of the batch in progress is lost: run apply again",
            key=self.key, holder=holder, expires_in=None)


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def new_lease(key: str, seconds: float) -> Lease:
    token = f"{socket.gethostname() or 'host'}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    return Lease(key, token.replace(" ", "_"), max(1, round(seconds * 1000)))


def apply_core(name: str, steps: Sequence[Step], *, registry: Any,
               where: Callable[[], Sequence[Any]], cluster: bool, count: int,
               lease_seconds: float, out_of_order: bool,
               ) -> Generator[Any, Any, list[StepRecord]]:
    """Run the pending steps in order under the set's lease; returns the records of the
    steps this run applied. ``where()``: as for :func:`plan_core`."""
    check_count(count)
    status, marks = yield from _status(name, steps)
    targets = where()
    if status.out_of_order and not out_of_order:
        raise MigrationError(
            f"migrations {name!r}: the pending steps {list(status.out_of_order)} come before "
            "steps already applied (inserted after those ran?); move them to the end, or "
            "apply with out_of_order=True", key=status.key)
    todo = [(i, s) for i, (s, st) in enumerate(zip(steps, status.steps, strict=True))
            if st.state != APPLIED]
    recorded = {r.id for r in status.applied if r.record is not None}
    recorded |= {r.id for r in status.unknown}
    if not todo and not any(step in recorded for step in marks.values()):
        return []
    moves: set[str] = set()
    for _, step in todo:  # refused models and bad index names: before the first write
        spec = spec_of(step.model)
        if step.kind == KIND_REBUCKET:  # a step that does not match: refused here
            yield from rebucket_look(spec, step.operation.from_buckets, targets, count,
                                     counting=False)
            moves.add(spec.prefix)
            continue
        if spec.prefix in moves:  # registered once the move ran; checked as it leaves it
            problems = yield from registry_problems(spec, after_move=True)
            if problems:
                raise SchemaConflictError(
                    f"step {step.id!r}: {spec.name} does not match the objects stored under "
                    f"prefix {spec.prefix!r} once they are moved: " + "; ".join(problems),
                    prefix=spec.prefix, key=_registry.registry_key(spec.prefix), owner="",
                    model=_registry.owner_of(spec.cls), problems=problems)
        if step.kind == KIND_BUILD:
            _registry.check_declared(spec, step.operation.index or "")
        if step.kind == KIND_DROP and (f"index:{step.operation.index}" in
                                       _registry.index_kinds(spec) or
                                       f"unique:{step.operation.index}" in
                                       _registry.index_kinds(spec)):
            raise ValidationError(
                f"step {step.id!r}: {spec.name} still declares the index "
                f"{step.operation.index!r}: remove it from the model first (its writes "
                "would only add the entries back)", model=spec.name)
        if step.kind == KIND_DROP:
            state = status.steps[[s.id for s in steps].index(step.id)]
            unknown = yield from _unknown_drop(step, spec, state)
            if unknown:
                raise ValidationError(f"step {step.id!r}: {unknown}", model=spec.name)
        if (registry.enabled and step.model not in registry.checked
                and step.kind != KIND_DROP and spec.prefix not in moves):
            yield from registry.register(spec)
    lease = new_lease(status.key, lease_seconds)
    yield from lease.run("take")
    done: list[StepRecord] = []
    try:
        # read again under the lease: an apply that held it until now may have run steps
        status, marks = yield from _status(name, steps)
        recorded = {r.id for r in status.applied if r.record is not None}
        recorded |= {r.id for r in status.unknown}
        # a run stopped between a step's record and the deletion of its markers
        yield from _forget_marks(lease, [k for k, i in marks.items() if i in recorded])
        for position, step in enumerate(steps):
            if status.steps[position].state == APPLIED:
                continue
            cursor = status.steps[position].cursor
            mine = {k for k, i in marks.items() if i == step.id}
            record = yield from _run_step(step, position, cursor, lease, registry, targets,
                                          cluster, count, mine)
            done.append(record)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            yield from lease.run("drop")
        raise
    yield from lease.run("drop")
    return done


def _run_step(step: Step, position: int, cursor: Cursor | None, lease: Lease, registry: Any,
              targets: Sequence[Any], cluster: bool, count: int, marks: set[str] | None = None
              ) -> Generator[Any, Any, StepRecord]:
    spec = spec_of(step.model)
    marks = set() if marks is None else marks
    if (registry.enabled and step.model not in registry.checked
            and step.kind not in (KIND_DROP, KIND_REBUCKET)):
        yield from registry.register(spec)  # a model of a prefix a rebucket step moved
    problems: list[str] = []
    if step.kind == KIND_REBUCKET:
        visited, changed, clock = yield from _run_rebucket(step, spec, cursor, lease,
                                                           registry, targets, cluster, count)
        problems = yield from _verify_index(step, spec, targets, count, clock, visited,
                                            _declared(spec))
    elif step.kind in (KIND_REWRITE, KIND_CUSTOM):
        visited, changed, clock = yield from _walk(step, spec, cursor, lease, targets,
                                                   cluster, count, marks)
        if step.kind == KIND_REWRITE:
            problems = yield from _check_forms(step, spec, targets, count, clock, visited)
    elif step.kind == KIND_BUILD:
        visited, changed, clock = yield from _walk(step, spec, cursor, lease, targets,
                                                   cluster, count)
        yield from registry.mark_ready(spec)
        built = step.operation.index
        problems = yield from _verify_index(step, spec, targets, count, clock, visited,
                                            lambda name: name == built)
    else:
        clock = _Clock(0, 0.0)
        if cursor is None:  # under way: its registry state may be gone before its record
            yield from lease.run("hold", [(f"cursor:{step.id}",
                                           _dumps(Cursor("", 0, 0, 0, 0.0).to_json()))])
        changed = yield from registry.use(step.model, _registry.drop_index_plan(
            spec, step.operation.index or "", targets, count))
        visited = 0
        held = yield from _registry.read_plan(_registry.registry_key(spec.prefix))
        states = {} if held is None else held.states
        problems = [f"the registry still holds {n}" for n in states
                    if n.split(":", 1)[-1] == step.operation.index]
    if problems:  # not recorded; the next apply walks the step again from the start
        yield from lease.run("hold", (), [f"cursor:{step.id}"])
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)"
                                           if len(problems) > 5 else "")
        raise MigrationVerifyError(
            f"step {step.id!r} ({step.operation.describe()}) did not verify: {shown}",
            step=step.id, key=lease.key, problems=problems)
    record = StepRecord(step.id, step.kind, model_label(step.model), time.time(), visited,
                        changed, round(clock.elapsed(), 3), True, position)
    yield from lease.run("hold", [(f"step:{step.id}", _dumps(record.to_json()))],
                         [f"cursor:{step.id}"])
    yield from _forget_marks(lease, sorted(marks))
    return record


def _forget_marks(lease: Lease, marks: Sequence[str]) -> Generator[Batch, Any, None]:
    """Delete the marker hashes of a recorded step, then their names in the records (so a
    run stopped in between deletes them the next time)."""
    if not marks:
        return
    for key in marks:
        yield Batch([("UNLINK", key)], write=True, idempotent=True, keys=[key])
    yield from lease.run("hold", (), [DONE + k for k in marks])


def marker_key(records: str, step_id: str, slot_of: str | None) -> str:
    """The hash of a custom step's "done" markers (field: an object's key) for the objects
    in the cluster slot of ``slot_of`` (None: a single server, one hash per step). The
    name starts with the records key, so the ACL pattern ``~<name>:%migrations*`` covers
    it; its only hash tag (ids and names escape their braces) picks the slot."""
    base = f"{records}:{DONE}{escape(step_id)}"
    if slot_of is None:
        return base
    return f"{base}:{{{_tag_for_slot(key_slot(slot_of.encode('utf-8', 'surrogateescape')))}}}"


def _target_name(target: Any) -> str:
    return "" if target is None else str(getattr(target, "name", target))


def _walk(step: Step, spec: ModelSpec, cursor: Cursor | None, lease: Lease,
          targets: Sequence[Any], cluster: bool, count: int, marks: set[str] | None = None
          ) -> Generator[Any, Any, tuple[int, int, _Clock]]:
    """The batches of a step from ``cursor``, the cursor saved after each. A custom step
    writes markers (:func:`marker_key`); ``marks`` holds the marker hashes the records
    name, and each new one is named in the same script that saves the cursor after the
    batch that wrote it (a run stopped before that revisits the batch, and names it)."""
    names = [_target_name(t) for t in targets]
    start, scan = 0, 0
    visited = changed = 0
    seconds = 0.0
    if cursor is not None and cursor.target in names:
        start, scan = names.index(cursor.target), cursor.scan
        visited, changed, seconds = cursor.visited, cursor.changed, cursor.seconds
    clock = _Clock(visited, seconds)
    if scan == FINISHED:  # stopped after its last batch, before its check
        return visited, changed, clock
    total = yield from _count(spec, targets, count)
    write = _writer(spec, step.operation, step.id)
    for t in range(start, len(targets)):
        while True:
            scan, keys = yield from scan_page(spec, scan, count, targets[t])
            used: set[str] = set()
            if keys:
                changed += yield from _batch(step, spec, keys, write, cluster, lease.key,
                                             used)
                visited += len(keys)
            fresh = sorted(used - marks) if marks is not None else []
            last = scan == 0 and t + 1 == len(names)
            position = Cursor(names[t] if scan or last else names[t + 1],
                              FINISHED if last else scan, visited, changed,
                              round(clock.elapsed(), 3))
            yield from lease.run("hold", [(f"cursor:{step.id}", _dumps(position.to_json())),
                                          *((DONE + k, step.id) for k in fresh)])
            if marks is not None:
                marks.update(fresh)
            yield Emit([clock.progress(step.id, step.kind, visited, max(total, visited),
                                       changed)])
            if scan == 0:
                break
    return visited, changed, clock


def _groups(keys: Sequence[str], cluster: bool) -> list[tuple[str, ...]]:
    if not cluster:
        return [tuple(keys)]
    by_slot: dict[int, list[str]] = {}
    for k in keys:
        by_slot.setdefault(key_slot(k.encode("utf-8", "surrogateescape")), []).append(k)
    return [tuple(v) for v in by_slot.values()]


def _batch(step: Step, spec: ModelSpec, keys: Sequence[str],
           write: Callable[[Any, list[Any]], int], cluster: bool, records: str = "",
           used: set[str] | None = None) -> Generator[Any, Any, int]:
    """One page of objects: for a rewrite, a plain read first picks the objects in an old
    form (the others need nothing); then one transaction per slot group reads them again
    under WATCH and saves them. A conflicting group is redone one object per transaction,
    each re-read (a concurrent write is never overwritten with what was read before it,
    and an object deleted meanwhile stays deleted).

    A custom step is applied at most once to each object: its transaction also WATCHes
    and reads the step's marker hash of the group's slot (added to ``used``), skips the
    objects marked done, and marks those it saves in the same MULTI/EXEC. So a transaction
    redone after a lost EXEC reply, a run resumed from before a committed batch, or a
    second applier after a lease ran out finds what was done (and a second applier's
    EXEC fails on the marker the first one wrote, and is read again)."""
    if step.kind == KIND_REWRITE:
        rows = yield from _rows(spec, keys)  # DecodeError: the step stops before this page
        keys = [k for k, reply, obj in rows if is_stale(spec, k, reply, obj)]
    elif step.kind == KIND_BUILD:
        keys = yield from _unindexed(spec, keys)
    changed = 0
    for group in _groups(keys, cluster):
        if not group:
            continue
        marker = None
        if step.kind == KIND_CUSTOM:
            marker = marker_key(records, step.id, group[0] if cluster else None)
            if used is not None:
                used.add(marker)
        try:
            changed += yield from _tx(spec, group, write, len(group) == 1, marker)
        except ConflictError:
            for key in group:
                changed += yield from _tx(spec, (key,), write, True, marker)
    return changed


def _unindexed(spec: ModelSpec, keys: Sequence[str]) -> Generator[Any, Any, list[str]]:
    """The keys of objects whose index record does not list exactly the entries their
    values have (an object stored before the index existed has no record at all)."""
    layout = layout_of(spec)
    if spec.indexes is None or not isinstance(layout, HashLayout):
        return list(keys)
    heads = [layout.index_keys(k) for k in keys]
    commands = [layout.read(k) for k in keys]
    commands += [("HGET", ks[1], head[0]) for ks, head in heads]
    replies = yield Batch(commands, keys=list(keys))
    out = []
    derived: list[tuple[str, str, list[str]]] = []  # (key, its escaped id, its entries)
    for i, key in enumerate(keys):
        obj = layout.decode(key, spec.id_of_key(key) or "", replies[i])
        if obj is None:
            continue
        record = replies[len(keys) + i]
        want = spec.indexes.entries({n: getattr(obj, n) for n in spec.indexes.fields})
        if record is None and not spec.indexes.keeps_records:
            # no record is the rule (its entries derive from its fields): it is indexed
            # when the entries are there
            derived.append((key, heads[i][1][0], want))
        elif record is None or set(record_lines(record)) != set(want):
            out.append(key)
    if derived:
        checks: list[tuple[str, str]] = []
        cmds: list[Any] = []
        for key, eid, want in derived:
            root = heads[keys.index(key)][1][1]
            for line in want:
                kind, name, text = line.split(SEP, 2)
                if kind == "e":
                    cmds.append(("SISMEMBER", f"{root}eq{spec.delimiter}{name}"
                                 f"{spec.delimiter}{text}", eid))
                    checks.append((key, "1"))
                elif kind == "r":
                    cmds.append(("ZSCORE", f"{root}rng{spec.delimiter}{name}", eid))
                    checks.append((key, "score:" + text))
                elif kind == "u" and not spec.claims:
                    cmds.append(("HGET", f"{root}uq{spec.delimiter}{name}", text))
                    checks.append((key, "id:" + eid))
        found = (yield Batch(cmds, keys=[k for k, _ in checks])) if cmds else []
        missing = set()
        for (key, want_), got in zip(checks, found, strict=True):
            seen: str | None = got.decode("utf-8", "surrogateescape") \
                if isinstance(got, bytes) else None if got is None else str(got)
            if want_ == "1":
                ok = bool(got)
            elif want_.startswith("score:"):
                ok = seen is not None and float(seen) == float(want_[6:])
            else:
                ok = seen == want_[3:]
            if not ok:
                missing.add(key)
        out += [k for k, _, _ in derived if k in missing]
    return out


def _tx(spec: ModelSpec, keys: tuple[str, ...], write: Callable[[Any, list[Any]], int],
        retry: bool, marker: str | None = None) -> Generator[Any, Any, int]:
    if marker is None:
        read: Callable[[], Any] = lambda: _rows(spec, keys)  # noqa: E731
        work = write
    else:
        read = lambda: _undone_rows(spec, keys, marker)  # noqa: E731

        def work(tx: Any, rows: list[Any]) -> int:
            saved: list[str] = []
            changed = write(tx, rows, saved)  # type: ignore[call-arg]
            if saved:
                tx.queue(_mark(marker, saved), "mark objects migrated")
            return changed
    for attempt in range(REDO_LOST + 1):
        try:
            return int((yield TxWork(keys, read, work, retry)))
        except (OutcomeUnknownError, redis.ConnectionError, redis.TimeoutError):
            # EXEC's reply was lost, or the connection broke: the transaction was
            # conditional on what it read (a custom step's on its markers too), so
            # reading it again tells what is still to do
            if attempt == REDO_LOST:
                raise
    raise AssertionError("unreachable")


def _undone_rows(spec: ModelSpec, keys: Sequence[str], marker: str
                 ) -> Generator[Batch, Any, list[Any]]:
    """:func:`_rows` of the keys the marker hash does not hold (WATCHing it)."""
    replies = yield Batch([("HMGET", marker, *keys)], keys=[marker])
    todo = [k for k, v in zip(keys, replies[0], strict=True) if v is None]
    if not todo:
        return []
    return (yield from _rows(spec, todo))


def _mark(marker: str, keys: Sequence[str]) -> Generator[Batch, Any, None]:
    yield Batch([("HSET", marker, *(x for k in keys for x in (k, "1")))], write=True,
                keys=[marker])


def _check_forms(step: Step, spec: ModelSpec, targets: Sequence[Any], count: int,
                 clock: _Clock, total: int) -> Generator[Any, Any, list[str]]:
    """After a rewrite: every stored object decodes and is in the current form. An object
    found in an old form is read again once (a writer of the old version may be at work:
    that is reported, not hidden)."""
    problems: list[str] = []
    seen = 0
    for target in targets:
        scan = 0
        while True:
            scan, keys = yield from scan_page(spec, scan, count, target)
            if keys:
                try:
                    rows = yield from _rows(spec, keys)
                except DecodeError as e:
                    problems.append(f"{e}")
                    rows = []
                old = [k for k, reply, obj in rows if is_stale(spec, k, reply, obj)]
                if old:
                    again = yield from _rows(spec, old)
                    problems += [f"{k!r} is still in an old form" for k, reply, obj in again
                                 if is_stale(spec, k, reply, obj)]
                seen += len(keys)
                yield Emit([clock.progress(step.id, "verify", seen, max(seen, total), 0)])
            if scan == 0:
                break
    return problems


def _declared(spec: ModelSpec) -> Callable[[str], bool]:
    """A check's scope: the indexes the model declares (the entries of an index it no
    longer declares are a ``drop_index`` step's to delete, never another step's problem)."""
    names = set() if spec.indexes is None else {
        *spec.indexes.fields, *(u.name for u in spec.indexes.uniques)}
    return names.__contains__


def _verify_index(step: Step, spec: ModelSpec, targets: Sequence[Any], count: int,
                  clock: _Clock, total: int, scope: Callable[[str], bool]
                  ) -> Generator[Any, Any, list[str]]:
    """``store.verify`` of the model, scoped to what the step did: a disagreement about an
    index counts only when ``scope`` takes its name (a ``build_index`` step: its own index;
    a rebucket: every index the model declares); one about an object or the all-ids index
    always counts. While writers are at work a check can catch a write between reading an
    object and reading its entries, so a failing check runs again (up to three runs) and
    only a disagreement every run found counts."""
    persistent: list[str] | None = None
    for _ in range(VERIFY_RUNS):
        found: list[str] = []
        plan = verify_plan(step.model, count, targets, scope=scope)
        reply: Any = None
        try:
            while True:
                try:
                    item = plan.send(reply)
                except StopIteration:
                    break
                reply = None
                if isinstance(item, Emit):
                    found += [x for x in item.items if isinstance(x, str)]
                else:
                    reply = yield item
        finally:  # ended early (thrown into, closed): the plan it drives too
            plan.close()
        yield Emit([clock.progress(step.id, "verify", total, total, 0)])
        persistent = found if persistent is None else [p for p in persistent if p in found]
        if not persistent:
            return []
    return persistent or []


# ---- the shells -----------------------------------------------------------------------------


def drive_sync(store: Store, core: Generator[Any, Any, Any],
               tick: Callable[[MigrationProgress], None] | None) -> Any:
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                item = core.throw(error) if error is not None else core.send(send)
            except StopIteration as stop:
                return stop.value
            send = error = None
            try:
                if isinstance(item, Batch):
                    send = store._execute(item)
                elif isinstance(item, TxWork):
                    work = item

                    def body(tx: Any, work: TxWork = work) -> int:
                        return work.write(tx, tx.query(work.read(),
                                                       "read objects to migrate"))

                    policy = _RETRY if work.retry else _ONE_ATTEMPT
                    send = run_transaction(store, body, policy=policy).value
                elif isinstance(item, Emit):
                    for p in item.items:
                        if tick is not None:
                            tick(p)
            except (Exception, KeyboardInterrupt) as e:
                error = e
    except BaseException:  # not thrown into it (CancelledError): closed before it leaves
        close_plan(core)
        raise


async def drive_async(store: AsyncStore, core: Generator[Any, Any, Any],
                      tick: Callable[[MigrationProgress], Awaitable[None] | None] | None
                      ) -> Any:
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                item = core.throw(error) if error is not None else core.send(send)
            except StopIteration as stop:
                return stop.value
            send = error = None
            try:
                if isinstance(item, Batch):
                    send = await store._execute(item)
                elif isinstance(item, TxWork):
                    work = item

                    async def body(tx: Any, work: TxWork = work) -> int:
                        rows = await tx.query(work.read(), "read objects to migrate")
                        return work.write(tx, rows)

                    policy = _RETRY if work.retry else _ONE_ATTEMPT
                    send = (await run_transaction_async(store, body, policy=policy)).value
                elif isinstance(item, Emit):
                    for p in item.items:
                        if tick is not None:
                            maybe = tick(p)
                            if maybe is not None:
                                await maybe
            except (Exception, KeyboardInterrupt) as e:
                error = e
    except BaseException:  # not thrown into it (CancelledError): closed before it leaves
        close_plan(core)
        raise


# a group's conflict: split it; one object's: retry it (logged at INFO, not as a warning:
# conflicts are what a migration running next to writers expects)
_ONE_ATTEMPT = RetryPolicy(attempts=1, log_level=logging.DEBUG)
_RETRY = RetryPolicy(attempts=50, backoff_max=0.5, log_level=logging.INFO)
