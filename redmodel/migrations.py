"""Versioned migrations of stored objects: planned, reviewed, applied online, recorded.

A :class:`Migrations` set is a named, ordered list of steps with ids, as in Alembic or
Django; each step runs once per database, and the database records it::

    from redmodel.migrations import Migrations, build_index, rebucket, rewrite

    migrations = Migrations("shop")
    migrations.add("0001_item_v2", rewrite(Item))            # re-save old forms
    migrations.add("0002_item_color", build_index(Item, "color"))
    migrations.add("0003_item_buckets", rebucket(Item, from_buckets=None))  # offline

    @migrations.step("0003_fill_sku", Item)                  # obj -> obj to save, or None
    def fill_sku(item: Item) -> Item | None:
        ...

    migrations.plan(store)      # what each pending step changes, and how many objects
    migrations.apply(store)     # batched, online, resumable, verified, recorded
    migrations.status(store)    # applied / partial / pending

Every method takes a :class:`~redmodel.Store` (and returns the result) or an
:class:`~redmodel.AsyncStore` (and returns a coroutine of it). See docs/migrations.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, overload

from redmodel._errors import ValidationError
from redmodel._migrate import (
    KIND_BUILD,
    KIND_CUSTOM,
    KIND_DROP,
    KIND_REBUCKET,
    KIND_REWRITE,
    Cursor,
    MigrationError,
    MigrationLockedError,
    MigrationProgress,
    MigrationStatus,
    MigrationStepError,
    MigrationVerifyError,
    Operation,
    Step,
    StepRecord,
    StepState,
    apply_core,
    check_id,
    check_lease,
    drive_async,
    drive_sync,
    plan_core,
    records_key,
    status_core,
)
from redmodel._models._specs import model_spec
from redmodel._rebucket import check_args
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store

__all__ = [
    "Cursor",
    "MigrationError",
    "MigrationLockedError",
    "MigrationProgress",
    "MigrationStatus",
    "MigrationStepError",
    "MigrationVerifyError",
    "Migrations",
    "Operation",
    "Step",
    "StepRecord",
    "StepState",
    "build_index",
    "drop_index",
    "rebucket",
    "rewrite",
    "update",
]

M = TypeVar("M")


def rewrite(model: type) -> Operation:
    """A step that saves every stored object of ``model`` whose stored form is older than
    the model (a value under an old name, a removed field, a value of an older type, a
    field added since) in its current form: read through ``old_names=``/``upgrade=``, saved
    whole. Objects already current are not written."""
    model_spec(model)
    return Operation(KIND_REWRITE, model)


def update(model: type[M], fn: Callable[[M], M | None]) -> Operation:
    """A custom step: ``fn(obj)`` for every stored object of ``model``; it returns the
    object to save (changed in place or a new one with the same id) or None to leave it
    as it is. ``fn`` may be called more than once for an object (a conflict with a
    concurrent write re-reads it and calls ``fn`` again), so it must depend only on the
    object; what it returns is saved at most once per object (a "done" marker written in
    the object's own transaction), whatever replies are lost or wherever a run stops. If
    ``fn`` raises, ``apply`` raises :class:`MigrationStepError` (its ``__cause__``)."""
    model_spec(model)
    if not callable(fn):
        raise ValidationError(f"a migration step needs a function, not {fn!r}")
    return Operation(KIND_CUSTOM, model, fn=fn)


def build_index(model: type, name: str) -> Operation:
    """A step that builds an index the model declares (``name``: a field, or a unique
    constraint's fields joined by commas): ``store.build_index``, then a ``store.verify``
    of the model."""
    model_spec(model)
    return Operation(KIND_BUILD, model, index=name)


def drop_index(model: type, name: str) -> Operation:
    """A step that deletes the entries of an index the model no longer declares
    (``store.drop_index``)."""
    model_spec(model)
    return Operation(KIND_DROP, model, index=name)


def rebucket(model: type, *, from_buckets: int | None) -> Operation:
    """An **offline** step that moves every object of ``model`` stored with
    ``from_buckets`` buckets (None: plain keys) to the bucket count the model declares now:
    ``store.migrate_buckets``' own plan, run under the set's lease, resumable (a run that
    stopped continues the move from ``<prefix>:%rebucket``), then a ``store.verify`` of the
    model, then the record. Stop every process that uses the model first: while the move
    runs the registry marks the prefix ``moving`` and refuses the model's stores.

    Nothing to do (recorded with 0 moved) when the registry already records the model's
    count, or when nothing is stored and nothing recorded; refused before any write
    (``ValidationError``) when the registry records another count than ``from_buckets``.
    ``from_buckets`` equal to the model's count, or a model with ``hash_tag``, is refused
    here."""
    spec = model_spec(model)
    check_args(spec, from_buckets, 1)
    return Operation(KIND_REBUCKET, model, from_buckets=from_buckets)


def _is_async(store: Any) -> bool:
    from redmodel._stores._async import AsyncStore  # noqa: PLC0415

    return isinstance(store, AsyncStore)


class Migrations:
    """A named, ordered set of steps. ``name`` names the set's records in Redis:
    ``<name>:%migrations`` (one hash). ``lease`` (seconds, up to 1e11) is how long a
    crashed ``apply``'s lease blocks the next one; a running ``apply`` renews it after
    each batch."""

    def __init__(self, name: str, *, lease: float = 30.0) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"a migration set needs a name (a non-empty str), not "
                                  f"{name!r}")
        self.lease = check_lease(lease)
        check_id(name)
        self.name = name
        self._steps: list[Step] = []

    @property
    def key(self) -> str:
        """The hash that records the set's applied steps (and its lease)."""
        return records_key(self.name)

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(self._steps)

    def add(self, id: str, operation: Operation) -> None:
        """Append a step; ``id`` is recorded when it is applied, so never change it."""
        check_id(id)
        if not isinstance(operation, Operation):
            raise ValidationError(f"step {id!r}: expected an operation (rewrite(Model), "
                                  f"build_index(...), ...), not {operation!r}")
        if any(s.id == id for s in self._steps):
            raise ValidationError(f"migrations {self.name!r} already has a step {id!r}")
        self._steps.append(Step(id, operation))

    def step(self, id: str, model: type[M]
             ) -> Callable[[Callable[[M], M | None]], Callable[[M], M | None]]:
        """Decorator: ``fn(obj) -> obj | None`` as a custom step (see :func:`update`)."""
        def decorate(fn: Callable[[M], M | None]) -> Callable[[M], M | None]:
            self.add(id, update(model, fn))
            return fn
        return decorate

    def __repr__(self) -> str:
        return f"Migrations({self.name!r}, steps={[s.id for s in self._steps]})"

    # ---- running --------------------------------------------------------------------------

    @overload
    def status(self, store: Store) -> MigrationStatus: ...
    @overload
    def status(self, store: AsyncStore) -> Coroutine[object, object, MigrationStatus]: ...
    def status(self, store: Store | AsyncStore) -> Any:
        """Each step: applied (with its record), partial (with its cursor) or pending;
        records of steps the set no longer has; steps out of order. One HGETALL."""
        core = status_core(self.name, self._steps)
        if _is_async(store):
            return drive_async(store, core, None)  # type: ignore[arg-type]
        return drive_sync(store, core, None)  # type: ignore[arg-type]

    @overload
    def plan(self, store: Store, *, count: int = 500) -> MigrationStatus: ...
    @overload
    def plan(self, store: AsyncStore, *, count: int = 500
             ) -> Coroutine[object, object, MigrationStatus]: ...
    def plan(self, store: Store | AsyncStore, *, count: int = 500) -> Any:
        """:meth:`status`, and for each step not applied: how many objects it will visit (a
        SCAN count), what it changes (fields renamed, upgraded, removed, as found in a
        sample of 100 stored objects, and how many of those are in an old form; indexes
        built or dropped) and why the registry would refuse its model; for an offline
        ``rebucket`` step, the objects it will move, ``nothing_to_do`` when the registry
        already records the model's count, and as a problem a registry that records
        another count than its ``from_buckets``. Reads only."""
        core = plan_core(self.name, self._steps, store._targets, count)
        if _is_async(store):
            return drive_async(store, core, None)  # type: ignore[arg-type]
        return drive_sync(store, core, None)  # type: ignore[arg-type]

    @overload
    def apply(self, store: Store, *, count: int = 500,
              progress: Callable[[MigrationProgress], None] | None = None,
              out_of_order: bool = False) -> list[StepRecord]: ...
    @overload
    def apply(self, store: AsyncStore, *, count: int = 500,
              progress: Callable[[MigrationProgress], Awaitable[None] | None] | None = None,
              out_of_order: bool = False) -> Coroutine[object, object, list[StepRecord]]: ...
    def apply(self, store: Store | AsyncStore, *, count: int = 500,
              progress: Callable[[MigrationProgress], Any] | None = None,
              out_of_order: bool = False) -> Any:
        """Run the pending steps in order, ``count`` objects per batch, while the
        application keeps writing; returns the records of the steps applied now.

        Takes the set's lease first (:class:`MigrationLockedError` if another ``apply``
        holds it). Each batch of a rewrite or custom step is one optimistic transaction per
        slot (WATCH, read, MULTI, the saves, EXEC), so a concurrent write is never
        overwritten and a deleted object never comes back; after each batch the step's
        cursor is saved, so a run that stopped continues where it stopped. After its last
        batch a step is verified and recorded. An offline ``rebucket`` step moves the
        objects with ``store.migrate_buckets``' plan instead (its writers must be stopped).
        ``progress(MigrationProgress)`` is called after each batch. ``out_of_order=True``
        runs pending steps that come before applied ones (refused otherwise)."""
        core = apply_core(self.name, self._steps, registry=store._registry,
                          where=store._targets, cluster=store.cluster, count=count,
                          lease_seconds=self.lease, out_of_order=out_of_order)
        if _is_async(store):
            return drive_async(store, core, progress)  # type: ignore[arg-type]
        return drive_sync(store, core, progress)  # type: ignore[arg-type]


for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and _obj.__module__.startswith("redmodel._"):
        _obj.__module__ = __name__
