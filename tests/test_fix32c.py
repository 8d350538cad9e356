"""Fix 32C: the kinds behind the attack's findings (tests/test_attack32c.py holds one
example of each; notes in /work/notes/s32/FIX-C-NOTES.md).

F1: a registry script redmodel resends after a lost reply, whose reply says what it did,
answers a resend of the same call as its first run answered: ``unregister`` (whether
there was a record) and the index-state script (how many states changed, or -1 for a
bucket move) whatever reply is lost or cut, whatever came between first run and resend.

F2: in one store, of a model and a container sharing keys whose first uses overlap in
time (threads on a Store, tasks on an AsyncStore, either order), exactly one is refused;
a model and a container that share nothing are both accepted (docs/containers.md, "The
container registry", "in one store, always")."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._registry import STATES
from redmodel._plan import Batch
from redmodel.containers import Queue, Set, SortedSet, WindowCounter
from redmodel.testing import FaultProxy, has
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through

_COUNT = itertools.count()


def _wipe(client: redis.Redis, ns: str) -> None:
    for k in client.scan_iter(f"{ns}*"):
        client.delete(k)


def _model(prefix: str, delimiter: str = ":") -> type:
    cls = type(f"M32c{next(_COUNT)}", (), {
        "__annotations__": {"n": int, "id": str}, "n": 0,
        "id": redmodel.key_field(generated=False)})
    return redmodel.model(prefix=prefix, delimiter=delimiter)(attrs.define(cls))


# ---- F1: unregister ---------------------------------------------------------------------

# what the prefix's record holds before unregister
STATES_BEFORE = st.sampled_from(["none", "model", "model+marks", "marks"])
FAULTS = st.sampled_from(["lose_reply", "cut_reply", "drop_request", "none"])


@settings(max_examples=scaled(150, floor=12),
          suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(before=STATES_BEFORE, step=st.sampled_from(["mark", "drop"]), fault=FAULTS)
def test_unregister_answers_whether_there_was_a_record_whatever_reply_is_lost(
        redis_client: redis.Redis, proxy: FaultProxy, before: str, step: str,
        fault: str) -> None:
    """Store.unregister: "Returns whether there was a record", with a lost or cut reply
    (resent) or a dropped request at either of its two script calls; afterwards the
    record's model fields are gone and the container registry's marks stay."""
    ns = f"f32u{next(_COUNT)}"
    m = _model(ns)
    key = f"{ns}:%schema"
    marks = {f"container:{ns}:q{i}": "Queue of int" for i in range(2)}
    try:
        if before.startswith("model"):
            redmodel.Store(redis_client).save(m(id="a"))
        if "marks" in before:
            redis_client.hset(key, mapping=marks)
        store = store_through(proxy, resend=FAST_RESEND)
        proxy.events.clear()
        if fault != "none":
            getattr(proxy, fault)("EVALSHA", when=has(key, step))
        got = store.unregister(m)
        proxy.clear()
        sent = before.startswith("model") or step == "mark"  # drop: only after a record
        assert [e.kind for e in proxy.events] == ([fault] if sent and fault != "none"
                                                  else [])
        event(f"{before} {step} {fault}")
        assert got is before.startswith("model"), (before, step, fault, got)
        left = {k.decode(): v.decode() for k, v in redis_client.hgetall(key).items()}
        assert left == (marks if "marks" in before else {}), left
        assert store.unregister(m) is False  # nothing left to unregister
        store.client.close()
    finally:
        proxy.clear()
        _wipe(redis_client, ns)


# ---- F1: the index-state script ---------------------------------------------------------

STATE = st.sampled_from(["", "ready", "building", "stale"])
EXPECT = st.sampled_from(["", "ready", "building", "stale", "*"])
# what happens to the record between the first run and the resend
MEANWHILE = st.sampled_from(["nothing", "moving", "states", "version", "deleted"])


@settings(max_examples=scaled(200, floor=20), deadline=None)
@given(initial=st.lists(STATE, min_size=3, max_size=3),
       asks=st.lists(st.tuples(st.integers(0, 2), EXPECT, STATE), min_size=1, max_size=3),
       meanwhile=MEANWHILE)
def test_a_resent_index_state_call_answers_as_its_first_run(
        redis_client: redis.Redis, initial: list[str], asks: list[tuple[int, str, str]],
        meanwhile: str) -> None:
    """The index-state script (mark_ready after a reindex, an older version's first use,
    drop_index) sent twice as the same call (a resend after its first run's reply was
    lost), whatever changed between the two: a first run that changed states answers
    their count again, writing nothing more; one that changed nothing wrote nothing, and
    its resend runs as a first run would then."""
    ns = f"f32s{next(_COUNT)}"
    key = f"{ns}:%schema"
    try:
        redis_client.hset(key, mapping={"owner": "x.M", "version": "v0"})
        for i, s in enumerate(initial):
            if s:
                redis_client.hset(key, f"index:f{i}", s)
        args = [x for i, want, new in asks for x in (f"index:f{i}", want, new)]
        call = Batch([STATES.call([key], [*args, "tok"])], write=True, keys=[key])
        store = redmodel.Store(redis_client)
        first = store.run(_send(call))
        after_first = redis_client.hgetall(key)
        if meanwhile == "moving":
            redis_client.hset(key, "moving", "no buckets -> buckets=4")
        elif meanwhile == "states":
            for i in range(3):
                redis_client.hset(key, f"index:f{i}", "building")
        elif meanwhile == "version":  # another write gave the record its own version
            redis_client.hset(key, "version", "other")
        elif meanwhile == "deleted":
            redis_client.delete(key)
        before_resend = redis_client.hgetall(key)
        second = store.run(_send(call))
        event(f"first {first}, {meanwhile}")
        if first > 0 and meanwhile in ("nothing", "moving", "states"):
            assert second == first, (first, second, meanwhile)
            assert redis_client.hgetall(key) == before_resend  # nothing written again
        elif meanwhile == "nothing":  # changed nothing, nothing changed: same again
            assert second == first == 0
            assert redis_client.hgetall(key) == after_first
    finally:
        _wipe(redis_client, ns)


def _send(batch: Batch) -> Any:
    return (yield batch)[0]


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply"])
def test_a_reindex_whose_state_reply_is_lost_still_marks_the_index_ready(
        redis_client: redis.Redis, proxy: FaultProxy, fault: str) -> None:
    """mark_ready through a FaultProxy that loses (or cuts) the state script's reply:
    resent, it answers as its first run (the indexes are ready, nothing raised)."""
    ns = f"f32r{next(_COUNT)}"

    def version(indexed: bool) -> Any:
        @redmodel.model(prefix=ns)
        @attrs.define
        class Item:
            name: str = redmodel.field(index=indexed, default="")
            id: str = redmodel.key_field(generated=False)
        return Item

    V1, V2 = version(False), version(True)

    try:
        redmodel.Store(redis_client).save(V1(name="a", id="x"))
        redmodel.Store(redis_client).save(V2(name="b", id="y"))  # building: objects exist
        assert redis_client.hget(f"{ns}:%schema", "index:name") == b"building"
        store = store_through(proxy, resend=FAST_RESEND)
        getattr(proxy, fault)("EVALSHA", when=has(f"{ns}:%schema", "index:name"))
        store.reindex(V2)
        assert [e.kind for e in proxy.events] == [fault]
        assert redis_client.hget(f"{ns}:%schema", "index:name") == b"ready"
        assert store.find(V2, name="b").count() == 1
    finally:
        proxy.clear()
        _wipe(redis_client, ns)


# ---- F2 ---------------------------------------------------------------------------------

# (model prefix suffix, delimiter, container kind, container key suffix, overlap); a key's
# ':' joins its parts (a str key is one part: its ':' is escaped)
SHAPES = st.sampled_from([
    ("p", "|", "Queue", "p|x", True),
    ("a:b", "|", "Set", "a:b|x", True),
    ("a:b", "|", "SortedSet", "a:b|x:y", True),
    ("visits:eu", "|", "WindowCounter", "visits", True),
    ("item", ":", "Queue", "item", True),
    ("s", ":", "Set", "s:x", True),              # the registry records see it too
    ("p", "|", "Queue", "p-x", False),
    ("p", "|", "Queue", "q|x", False),
    ("p", ":", "SortedSet", "pp:x", False),
    ("visits:eu", "|", "WindowCounter", "visitz", False),
])
ORDERS = st.sampled_from(["model first", "container first", "together"])


def _container(kind: str, store: Any, key: tuple[str, ...]) -> Any:
    if kind == "WindowCounter":
        return WindowCounter(store, key, window=60)
    return {"Queue": Queue, "Set": Set, "SortedSet": SortedSet}[kind](store, key, int)


def _use_container(kind: str, c: Any) -> Any:
    if kind == "Queue":
        return c.push(1)
    if kind == "Set":
        return c.add(1)
    if kind == "SortedSet":
        return c.add(1, 1.0)
    return c.incr("s")


@settings(max_examples=scaled(200, floor=20), deadline=None)
@given(shape=SHAPES, order=ORDERS, runner=st.sampled_from(["threads", "tasks"]),
       delay=st.sampled_from([0.0, 0.0005, 0.002]), seed=st.integers(0, 2**16))
def test_one_store_refuses_exactly_one_of_two_overlapping_first_uses(
        redis_url: str, redis_client: redis.Redis,
        shape: tuple[str, str, str, str, bool], order: str, runner: str, delay: float,
        seed: int) -> None:
    ns = f"f32o{next(_COUNT)}"
    suffix, delimiter, kind, key_suffix, overlap = shape
    m = _model(f"{ns}{suffix}", delimiter)
    key = tuple(f"{ns}{key_suffix}".split(":"))
    rng = random.Random(seed)
    # who waits: the second of the order sleeps `delay` (none when "together")
    waits = {"model": 0.0, "container": 0.0}
    if order != "together":
        waits["container" if order == "model first" else "model"] = delay
    out: dict[str, str] = {}

    def judge(name: str, error: BaseException | None) -> None:
        if error is None:
            out[name] = "ok"
        elif isinstance(error, redmodel.SchemaConflictError):
            out[name] = "refused"
        else:
            out[name] = f"failed: {error!r}"

    try:
        if runner == "threads":
            store = redmodel.Store(redis.Redis.from_url(redis_url))
            gate = threading.Barrier(2)

            def use(name: str, call: Callable[[], Any]) -> None:
                gate.wait()
                time.sleep(waits[name] + rng.random() * delay / 4)
                try:
                    call()
                except Exception as e:  # judged below
                    judge(name, e)
                else:
                    judge(name, None)

            threads = [
                threading.Thread(target=use, args=("model", lambda: store.save(m(id="y")))),
                threading.Thread(target=use, args=("container", lambda: _use_container(
                    kind, _container(kind, store, key)))),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            store.client.close()
        else:
            async def main() -> None:
                astore = redmodel.AsyncStore.from_url(redis_url)

                async def use(name: str, make: Callable[[], Any]) -> None:
                    if waits[name]:
                        await asyncio.sleep(waits[name])
                    try:
                        await make()
                    except Exception as e:  # judged below
                        judge(name, e)
                    else:
                        judge(name, None)

                pair = [use("model", lambda: astore.save(m(id="y"))),
                        use("container", lambda: _use_container(
                            kind, _container(kind, astore, key)))]
                if rng.random() < 0.5:
                    pair.reverse()
                await asyncio.gather(*pair)
                await astore.client.aclose()

            asyncio.run(main())
        event(f"{kind} {'overlapping' if overlap else 'apart'} {runner} {order}: "
              f"{sorted(out.items())}")
        if overlap:
            assert sorted(out.values()) == ["ok", "refused"], (shape, order, runner, out)
        else:
            assert out == {"model": "ok", "container": "ok"}, (shape, order, runner, out)
    finally:
        _wipe(redis_client, ns)
