"""Fix 32G: the kinds behind the attack's findings (tests/test_attack32g.py holds one
example of each; notes in /work/notes/s32/FIX-G-NOTES.md).

F1: a call that drives a plan and ends in ANY failure (a transport error, a timeout, a
redmodel error of the store between batches, an unknown outcome, KeyboardInterrupt,
asyncio.CancelledError) closes the plan before the error leaves: right after the call
returns, with its error (or task) kept alive, the store's registry has nothing under way,
and the next first use, overlapping or not, behaves as if the failed one never happened
(docs/containers.md, "in one store, always"), for every plan shape that can be a first use
(a model's save, a tracked save, a container's push, a transaction, run_many), sync and
async.

F2: of two unregisters and a registration interleaved on one prefix, with lost replies
and a call that stops between its two steps, the record ends as docs/migrations.md says:
gone when a mark came after the last registration, there when a registration came after
every mark; each unregister answers whether there was a record at its mark."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import attrs
import redis
import redis.asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._registry import UNREGISTER, new_version
from redmodel._plan import Batch
from redmodel.containers import Queue
from redmodel.testing import FaultProxy
from tests.budget import scaled
from tests.faults import FAST_RESEND, arm_fault, client_options

_COUNT = itertools.count()


def _wipe(client: redis.Redis, ns: str) -> None:
    for k in client.scan_iter(f"{ns}*"):
        client.delete(k)


def _model(prefix: str, delimiter: str = "|") -> type:
    cls = type(f"M32g{next(_COUNT)}", (), {
        "__annotations__": {"n": int, "id": str}, "n": 0,
        "id": redmodel.key_field(generated=False)})
    return redmodel.model(prefix=prefix, delimiter=delimiter)(attrs.define(cls))


# ---- F1 ---------------------------------------------------------------------------------

SYNC_KINDS = ["connection", "timeout", "server", "unknown", "interrupt", "transport"]
ASYNC_KINDS = ["connection", "timeout", "server", "unknown", "interrupt", "cancel"]
# (what the failing call first uses, how): a model's key space "<ns>|" holds the Queue
# "<ns>|x"; the registry records never meet there, so only the store's own check (its
# under-way counts) could refuse the overlapping use after the failure
SHAPES = ["save", "tracked save", "push", "transaction", "run_many"]


def _failure(kind: str, batch: Batch) -> BaseException:
    keys = tuple(str(k) for k in batch.keys)
    if kind == "connection":
        return redis.ConnectionError("injected: connection lost")
    if kind == "timeout":
        return redis.TimeoutError("injected: timed out")
    if kind == "server":
        return redmodel.ServerError("ERR injected", keys=keys)
    if kind == "unknown":
        return redmodel.OutcomeUnknownError("injected: outcome unknown", keys=keys)
    assert kind == "interrupt"
    return KeyboardInterrupt()


class _FailingStore(redmodel.Store):
    """A Store whose ``at``-th batch fails with ``kind`` (sent nowhere) instead of being
    sent: the real server behind it for every other batch."""

    at = -1
    kind = ""
    sent = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        real = self._execute  # (the store binds its link's execute on itself)

        def execute(batch: Batch) -> list[Any]:
            n, self.sent = self.sent, self.sent + 1
            if n == self.at:
                raise _failure(self.kind, batch)
            return real(batch)

        self._execute = execute  # type: ignore[method-assign]


class _FailingAsyncStore(redmodel.AsyncStore):
    at = -1
    kind = ""
    sent = 0
    stuck: asyncio.Event | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        real = self._execute

        async def execute(batch: Batch) -> list[Any]:
            n, self.sent = self.sent, self.sent + 1
            if n == self.at:
                if self.kind == "cancel":  # waits until its task is cancelled
                    assert self.stuck is not None
                    self.stuck.set()
                    await asyncio.sleep(3600)
                raise _failure(self.kind, batch)
            return await real(batch)

        self._execute = execute  # type: ignore[method-assign]


def _under_way(store: Any) -> tuple[dict[Any, int], dict[str, int]]:
    reg = store._registry
    return dict(reg._models_under_way), dict(reg._keys_under_way)


def _used(store: Any, failed_model: bool, m: type, key: str) -> bool:
    """Whether the failing call's first use was completed in the store (then it counts:
    the overlapping use after it is refused, as after any use)."""
    reg = store._registry
    if failed_model:
        return m in reg.checked
    return any(mark[0] == key for mark in reg.containers)


@settings(max_examples=scaled(100, floor=12),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(shape=st.sampled_from(SHAPES), kind=st.sampled_from(SYNC_KINDS),
       at=st.integers(0, 3), overlap=st.booleans())
def test_a_failed_first_use_leaves_nothing_under_way_sync(
        redis_client: redis.Redis, proxy: FaultProxy, shape: str, kind: str, at: int,
        overlap: bool) -> None:
    """docs/containers.md: "a first use that raised counts as never having happened for
    the uses after it", while its exception is kept (the traceback holds the driver's
    frame)."""
    ns = f"f32g{next(_COUNT)}"
    m = _model(ns)
    key = f"{ns}|x"
    kept: list[BaseException] = []
    try:
        if shape == "tracked save":
            redmodel.Store(redis_client).save(m(id="t"))
        if kind == "transport":  # a real one: every request dropped, from the at-th on
            store: Any = redmodel.Store(redis.Redis(**client_options(proxy)),
                                        resend=FAST_RESEND)
            at = 0
            arm_fault(proxy, "drop-always", lambda args: True)
        else:
            store = _FailingStore(redis_client)
            store.at, store.kind = at, kind
        loaded = redmodel.Store(redis_client).get(m, "t") if shape == "tracked save" \
            else None
        failed_model = shape in ("save", "tracked save", "transaction")
        try:
            if shape == "save":
                store.save(m(id="a"))
            elif shape == "tracked save":
                loaded.n = 5
                store.save(loaded)
            elif shape == "push":
                Queue(store, key, int).push(1)
            elif shape == "transaction":
                store.transaction(lambda tx: tx.save(m(id="a")))()
            else:
                store.run_many(Queue(store, key, int).push_plan(1),
                               Queue(store, f"{ns}|y", int).push_plan(2))
        except BaseException as e:  # KeyboardInterrupt is a drawn kind
            kept.append(e)  # kept alive, as an app's fallback or a Future keeps it
        proxy.clear()
        if isinstance(store, _FailingStore):
            store.at = -1
        failed = bool(kept)
        event(f"{shape} {kind} failed={failed}")
        assert _under_way(store) == ({}, {}), (shape, kind, at, kept)
        used = _used(store, failed_model, m, key)
        assert failed or at > 0  # every shape sends a first batch
        if failed and at == 0:
            assert not used  # the first batch of a first use is its registry read
        # the next first use of the other kind, overlapping the failed one's keys or not
        try:
            if failed_model:
                Queue(store, key if overlap else f"{ns}q|x", int).push(1)
            else:
                store.save((m if overlap else _model(f"{ns}z"))(id="f"))
            refused = False
        except redmodel.SchemaConflictError:
            refused = True
        assert refused == (overlap and used), (shape, kind, at, failed, used, kept)
        assert _under_way(store) == ({}, {})
    finally:
        proxy.clear()
        kept.clear()
        _wipe(redis_client, ns)


@settings(max_examples=scaled(300, floor=30),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(shape=st.sampled_from(SHAPES), kind=st.sampled_from(ASYNC_KINDS),
       at=st.integers(0, 3), overlap=st.booleans())
def test_a_failed_first_use_leaves_nothing_under_way_async(
        redis_url: str, redis_client: redis.Redis, shape: str, kind: str, at: int,
        overlap: bool) -> None:
    """As the sync test, on an AsyncStore; "cancel" cancels the call's task while its
    at-th batch waits, and the task is kept (as asyncio.gather and task sets keep it)."""
    ns = f"f32h{next(_COUNT)}"
    m = _model(ns)
    key = f"{ns}|x"
    kept: list[Any] = []

    async def call(store: Any, loaded: Any) -> None:
        if shape == "save":
            await store.save(m(id="a"))
        elif shape == "tracked save":
            loaded.n = 5
            await store.save(loaded)
        elif shape == "push":
            await Queue(store, key, int).push(1)
        elif shape == "transaction":
            async def body(tx: Any) -> None:
                await tx.save(m(id="a"))
            await store.transaction(body)()
        else:
            await store.run_many(Queue(store, key, int).push_plan(1),
                                 Queue(store, f"{ns}|y", int).push_plan(2))

    async def main() -> None:
        store = _FailingAsyncStore(redis.asyncio.Redis.from_url(redis_url))
        store.at, store.kind, store.stuck = at, kind, asyncio.Event()
        loaded = None
        if shape == "tracked save":
            setup = redmodel.AsyncStore(redis.asyncio.Redis.from_url(redis_url))
            await setup.save(m(id="t"))
            loaded = await setup.get(m, "t")
            await setup.client.aclose()
        if kind == "cancel":
            task = asyncio.create_task(call(store, loaded))
            waiter = asyncio.create_task(store.stuck.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            kept.append(task)  # the task, and with it its error, stays alive
            failed = task.cancelled() or task.exception() is not None
        else:  # awaited here: a KeyboardInterrupt leaving a task would stop the loop
            try:
                await call(store, loaded)
                failed = False
            except BaseException as e:
                kept.append(e)
                failed = True
        store.at = -1
        failed_model = shape in ("save", "tracked save", "transaction")
        event(f"{shape} {kind} failed={failed}")
        assert _under_way(store) == ({}, {}), (shape, kind, at)
        used = _used(store, failed_model, m, key)
        assert failed or at > 0  # every shape sends a first batch
        if failed and at == 0:
            assert not used
        try:
            if failed_model:
                await Queue(store, key if overlap else f"{ns}q|x", int).push(1)
            else:
                await store.save((m if overlap else _model(f"{ns}z"))(id="f"))
            refused = False
        except redmodel.SchemaConflictError:
            refused = True
        assert refused == (overlap and used), (shape, kind, at, failed, used)
        assert _under_way(store) == ({}, {})
        await store.client.aclose()

    try:
        asyncio.run(main())
    finally:
        kept.clear()
        _wipe(redis_client, ns)


# ---- F2 ---------------------------------------------------------------------------------

# who acts next: an unregister ("A", "B": its next script run) or a registration ("R")
WHO = st.sampled_from(["A", "B", "R"])


def _run(client: redis.Redis, key: str, step: str, token: str) -> int:
    """One run of an unregister's script call, as Registry.unregister sends it."""
    call = UNREGISTER.call([key], [step, token])
    return int(client.execute_command("EVAL", UNREGISTER.source, *call[2:]))


@settings(max_examples=scaled(400, floor=40),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(turns=st.lists(WHO, min_size=1, max_size=10), recorded=st.booleans(),
       lost=st.sets(st.sampled_from(["A mark", "A drop", "B mark", "B drop"])),
       stops=st.sets(st.sampled_from(["A", "B"])))
def test_two_unregisters_and_a_registration_end_as_the_docs_say(
        redis_client: redis.Redis, turns: list[str], recorded: bool, lost: set[str],
        stops: set[str]) -> None:
    """docs/migrations.md (unregister), two unregisters A and B and registrations R on
    one prefix, interleaved run by run: a call whose reply is lost is sent again later
    (another turn of its unregister), and a call may stop between its two steps (its drop
    never sent). Each mark run answers whether there is a record at that run (so an
    unregister answers whether there was one at its mark; a resend after the other's drop
    deleted it answers as a call after that drop); every drop run deletes the record when
    it is marked since its last registration (its own mark or the other's: 32G F2), and
    nothing else; a registration after every mark stays. At the end the record is there
    iff the model says so, and a store's unregister answers that and deletes it."""
    ns = f"f32u{next(_COUNT)}"
    m = _model(ns, ":")
    key = f"{ns}:%schema"
    store = redmodel.Store(redis_client)
    try:
        if recorded:
            store.save(m(id="a"))
        tokens = {"A": new_version(), "B": new_version()}
        runs = {w: ["mark"] * (1 + (f"{w} mark" in lost)) for w in "AB"}
        exists, marked = recorded, False  # the docs' model of the record
        for who in turns:
            if who == "R":  # another store's first use (its save)
                redmodel.Store(redis_client).save(m(id="r"))
                exists, marked = True, False
                continue
            if not runs[who]:
                continue
            step = runs[who].pop(0)
            got = _run(redis_client, key, step, tokens[who])
            if step == "mark":
                assert got == int(exists), (who, exists, got)
                marked = marked or exists
                if not runs[who] and got and who not in stops:  # its answer: then drop
                    runs[who] = ["drop"] * (1 + (f"{who} drop" in lost))
            elif marked:
                assert got == 1
                exists, marked = False, False
            else:
                assert got == 0
        event(f"exists={exists} marked={marked}")
        state = redis_client.hgetall(key)
        assert (b"owner" in state) == exists, (turns, recorded, lost, stops, state)
        assert (b"unregister" in state) == marked, (turns, recorded, lost, stops, state)
        assert store.unregister(m) is exists  # a store's own: the record goes
        assert redis_client.exists(key) == 0
    finally:
        _wipe(redis_client, ns)
