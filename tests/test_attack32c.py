"""Attack 32C: the registry's first use and rotate_keys (fix 31J). Each test holds the code
to a documented promise and fails on main (see /work/notes/s32/ATK-C-FINDINGS.md)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.containers import Queue
from redmodel.testing import FaultProxy, has
from tests.faults import FAST_RESEND, store_through

_COUNT = itertools.count()


def _ns(tag: str) -> str:
    return f"a32c_{tag}{next(_COUNT)}"


def _wipe(client: redis.Redis, ns: str) -> None:
    for k in client.scan_iter(f"{ns}*"):
        client.delete(k)


# ---- F1 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply"])
def test_f1_unregister_resent_after_a_lost_reply_still_says_there_was_a_record(
        redis_client: redis.Redis, proxy: FaultProxy, fault: str) -> None:
    """Store.unregister: "Delete the model's record from the model registry ... Returns
    whether there was a record." The registry script is sent as idempotent and resent
    after a lost reply; the resend finds no record (its first run deleted it) and answers
    0, so unregister returns False for a record it deleted (docs/containers.md: "A
    model's registration is one script; its resend after a lost reply answers as its first
    run did" -- the unregistration script does not)."""
    ns = _ns("unr")

    @redmodel.model(prefix=ns)
    @attrs.define
    class M:
        v: int = 0
        id: str = redmodel.key_field(generated=False)

    direct = redmodel.Store(redis_client)
    try:
        direct.save(M(id="a"))
        direct.delete(M, "a")
        assert redis_client.exists(f"{ns}:%schema")
        store = store_through(proxy, resend=FAST_RESEND)
        getattr(proxy, fault)("EVALSHA", when=has(f"{ns}:%schema"))
        got = store.unregister(M)
        assert [e.kind for e in proxy.events] == [fault]
        assert not redis_client.exists(f"{ns}:%schema")
        assert got is True, "unregister deleted the record and answered False"
    finally:
        _wipe(redis_client, ns)


# ---- F2 ---------------------------------------------------------------------------------

def _pipe_model(ns: str) -> type:
    @redmodel.model(prefix=ns, delimiter="|")
    @attrs.define
    class Piped:
        v: int = 0
        id: str = redmodel.key_field(generated=False)
    return Piped


def test_f2_one_async_store_refuses_a_queue_and_a_model_first_used_by_concurrent_tasks(
        redis_url: str, redis_client: redis.Redis) -> None:
    """docs/containers.md, "The container registry": "When one of `prefix + delimiter` and
    `<key>:` starts the other, whatever the delimiter, the second of the two to be used is
    refused with `SchemaConflictError` naming both, nothing written: ... (`"pipe|x"` next
    to a model `pipe` with delimiter `|`) ... - **in one store, always**: a store's first
    use of a container key is checked against every model that store used, and its first
    use of a model against every container key it checked, in either order". Two tasks of
    one AsyncStore (asyncio.gather at start-up) first-using the model `p` (delimiter `|`)
    and the Queue `p|x`: both are accepted, and the model now counts/deletes the queue."""
    ns = _ns("tsk")
    piped = _pipe_model(ns)
    out: dict[str, str] = {}

    async def main() -> None:
        astore = redmodel.AsyncStore.from_url(redis_url)

        async def use(name: str, coro: Any) -> None:
            try:
                await coro
                out[name] = "ok"
            except redmodel.SchemaConflictError:
                out[name] = "refused"

        await asyncio.gather(use("queue", Queue(astore, f"{ns}|x", int).push(1)),
                             use("model", astore.save(piped(id="y"))))
        await astore.client.aclose()

    try:
        asyncio.run(main())
        assert sorted(out.values()) == ["ok", "refused"], (
            f"one store accepted both the model {ns!r} (|) and the queue {ns}|x: {out}")
    finally:
        _wipe(redis_client, ns)


def test_f2_one_sync_store_refuses_a_queue_and_a_model_first_used_by_two_threads(
        redis_url: str, redis_client: redis.Redis) -> None:
    """As above (docs/containers.md, "in one store, always ... in either order"), with two
    threads sharing one Store: both first uses are accepted when they overlap in time."""
    bad = []
    for _ in range(10):
        ns = _ns("thr")
        piped = _pipe_model(ns)
        store = redmodel.Store(redis.Redis.from_url(redis_url))
        gate = threading.Barrier(2)
        out: dict[str, str] = {}

        def use(name: str, call: Any, gate: threading.Barrier = gate,
                out: dict[str, str] = out) -> None:
            gate.wait()
            try:
                call()
                out[name] = "ok"
            except redmodel.SchemaConflictError:
                out[name] = "refused"

        threads = [
            threading.Thread(target=use, args=(
                "queue", lambda: Queue(store, f"{ns}|x", int).push(1))),  # noqa: B023
            threading.Thread(target=use, args=(
                "model", lambda: store.save(piped(id="y")))),  # noqa: B023
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if sorted(out.values()) != ["ok", "refused"]:
            bad.append(out)
        _wipe(redis_client, ns)
    assert not bad, f"one store accepted both {len(bad)} times of 10: {bad[:2]}"
