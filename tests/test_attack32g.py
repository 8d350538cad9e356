"""Attack 32G: the edges of fixes 32A (reads in shared rounds) and 32C (unregister's two
token calls; one store's concurrent first uses). Each test holds the code to a sentence of
the docs and FAILS on main as of this attack (see /work/notes/s32/ATK-G-FINDINGS.md)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import attrs
import redis
import redis.asyncio

import redmodel
from redmodel.containers import Queue
from redmodel.testing import FaultProxy
from tests.faults import FAST_RESEND, arm_fault, client_options, marked

# Each model's key space (prefix + "|") holds the Queue "<prefix>|x": the registry records
# never meet there (the model's prefix is no ":"-prefix of the key), so only the store's
# own check (the 32C lock and its under-way counts) refuses one of the two.


@redmodel.model(prefix="ag32a", delimiter="|")
@attrs.define
class Hat:
    id: str
    n: int = 0


@redmodel.model(prefix="ag32b", delimiter="|")
@attrs.define
class Cap:
    id: str
    n: int = 0


@redmodel.model(prefix="ag32c", delimiter="|")
@attrs.define
class Cup:
    id: str
    n: int = 0


@redmodel.model(prefix="ag32u")
@attrs.define
class Bag:
    id: str
    n: int = 0


def _store(proxy: FaultProxy) -> redmodel.Store:
    return redmodel.Store(redis.Redis(**client_options(proxy)), resend=FAST_RESEND)


def test_f1a_a_model_first_use_that_raised_still_refuses_an_overlapping_container(
        proxy: FaultProxy) -> None:
    """docs/containers.md ("in one store, always"): "the first to reach it goes on and
    the other is refused, even when the first then fails (a first use that raised counts
    as never having happened for the uses after it)".

    The model's first use raised (its registry read dropped every time: nothing written);
    the app falls back, in its ``except`` block, to a Queue in the model's key space. The
    failed first use still counts as under way (its plan is suspended, not closed, while
    the error is alive), so the Queue is refused "used by this store"."""
    store = _store(proxy)
    arm_fault(proxy, "drop-always", marked("ag32a:%schema"))
    try:
        store.save(Hat(id="h"))
    except redis.ConnectionError:
        proxy.clear()
        assert Queue(store, "ag32a|x", int).push(1) == 1  # SchemaConflictError now


def test_f1b_a_container_first_use_kept_in_a_future_refuses_the_model_forever(
        proxy: FaultProxy) -> None:
    """docs/containers.md: "a first use that raised counts as never having happened for
    the uses after it" (threads sharing a ``Store``).

    A thread pool's push failed (its claim dropped every time); the Future keeps the
    error, as futures do. Every later first use of the model (another thread, after the
    failure) is refused "holds containers this store uses"."""
    store = _store(proxy)
    arm_fault(proxy, "drop-always", marked("ag32b|x:{ag32b|x}:%container"))
    with ThreadPoolExecutor(2) as pool:
        failed = pool.submit(Queue(store, "ag32b|x", int).push, 1)
        assert isinstance(failed.exception(), redis.ConnectionError)
        proxy.clear()
        later = pool.submit(store.save, Cap(id="c"))
        assert later.exception() is None, later.exception()


def test_f1c_a_cancelled_async_first_use_refuses_the_model_while_its_task_is_kept(
        proxy: FaultProxy) -> None:
    """docs/containers.md: "a first use that raised counts as never having happened for
    the uses after it" (tasks of one ``AsyncStore``); the brief's "a first use that
    cancels mid-way".

    A push is cancelled while its first use waits on the server (the task object is kept,
    as ``asyncio.gather``/task sets do). The model's first use after it is refused."""

    async def main() -> None:
        store = redmodel.AsyncStore(
            redis.asyncio.Redis(**client_options(proxy, socket_timeout=5.0)),
            resend=FAST_RESEND)
        proxy.stall(lambda c: True, 1.0, when=marked("ag32c|x:{ag32c|x}:%container"))
        task = asyncio.create_task(Queue(store, "ag32c|x", int).push(1))
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        await store.save(Cup(id="c"))  # SchemaConflictError now

    asyncio.run(main())


def test_f2_unregister_returns_true_and_leaves_the_record_when_a_racing_call_stopped(
        proxy: FaultProxy, redis_server: object, redis_client: redis.Redis) -> None:
    """docs/migrations.md: "`store.unregister(Model)` deletes the record (for a
    tear-down, once the objects are gone), and the next first use records the model
    again"; the documented limits are only "Two `unregister` calls racing on one prefix
    may both answer `True`; a call stopped between its two steps leaves the `unregister`
    field, which nothing reads".

    Store A's unregister marks the record; store B's unregister (another process) marks
    it too and stops before its drop (its drop never reaches the server: B raises); A's
    drop then finds B's token and deletes nothing. A returns True, no error, and the
    whole record (owner, schema) is still there."""
    key = "ag32u:%schema"
    setup = redmodel.Store(redis_client)
    setup.save(Bag(id="b"))
    assert redis_client.hget(key, "owner") is not None
    a = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port), resend=FAST_RESEND)
    # A's drop reaches the server 1 s late: B marks meanwhile
    proxy.stall(lambda c: True, 1.0, when=lambda args: b"drop" in args)
    answer: list[object] = []
    worker = threading.Thread(target=lambda: answer.append(a.unregister(Bag)))
    worker.start()
    assert proxy.wait_fired(1, timeout=10)  # A's drop is held (a sleep: A may be slower)
    host, port = redis_server.host, redis_server.port  # type: ignore[attr-defined]
    with FaultProxy(host, port) as other:
        other.drop_request(lambda c: True, when=lambda args: b"drop" in args, times=60)
        b = redmodel.Store(redis.Redis(**client_options(other)), resend=FAST_RESEND)
        # B stopped between its two steps: documented to leave a field
        with contextlib.suppress(redis.ConnectionError):
            b.unregister(Bag)
    worker.join(10)
    assert answer == [True]
    # A returned, no error: the record must be gone
    assert redis_client.hget(key, "owner") is None, redis_client.hgetall(key)
