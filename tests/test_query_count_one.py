"""A count Redis answers natively is one command from the call (issue 17, item 5).

``Query.count()`` of one term (an equality, a range, every object) on a model without
buckets, once the store knows the indexes it reads ready, sends the plan's first batch
alone (one EVALSHA of query.lua, with the registry and expiry checks in it) and answers
from its reply; any other reply (an expired object to sweep, a registry record that
changed, a wrong-typed key) runs the plan from its start. These tests hold the shortcut to
the truth and to the plan over edge values, offsets and limits, count what it sends, and
check that what it does not cover (a transaction, a first use, a cursor, two terms) takes
the plan."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q, Range, between, ge, gt, le, lt
from redmodel._plan import ACTIVE_TRANSACTION, Batch
from tests.budget import scaled


@redmodel.model(prefix="cnt1")
@attrs.define
class Thing:
    kind: str = redmodel.field(index=True)
    n: int = redmodel.field(default=0, index="range")
    x: float = redmodel.field(default=0.0, index="range")
    id: str = redmodel.key_field()


EDGE_INTS = st.sampled_from([0, 1, -1, 2**53, -(2**53), 2**53 - 1, 7])
EDGE_FLOATS = st.sampled_from([0.0, -0.0, 0.1 + 0.2, 0.3, 1e308, -1e308, 5e-324, 2.5])
IDS = st.text(alphabet=":{}*%\\ab\u00e9", min_size=1, max_size=6)
KINDS = st.sampled_from(["a", "b:{x}", "*%\\", "\u00e9 %"])
THINGS = st.lists(st.builds(Thing, kind=KINDS, n=EDGE_INTS, x=EDGE_FLOATS, id=IDS),
                  max_size=10, unique_by=lambda t: t.id)


def inside(v: float, r: Range) -> bool:
    if r.low is not None and (v < r.low or (v == r.low and not r.low_inclusive)):
        return False
    return not (r.high is not None and (v > r.high or (v == r.high and not r.high_inclusive)))


class Recorder:
    """Wraps a store's ``_execute``: every batch it is handed."""

    def __init__(self, store: Any) -> None:
        self.store, self.batches = store, list[Batch]()
        self.inner = store._execute
        store._execute = self

    def __call__(self, batch: Batch) -> Any:
        self.batches.append(batch)
        return self.inner(batch)

    def close(self) -> None:
        self.store._execute = self.inner


def one_evalsha(batches: list[Batch]) -> bool:
    return (len(batches) == 1 and len(batches[0].commands) == 1
            and batches[0].commands[0][0] == "EVALSHA")


@settings(max_examples=scaled(40, floor=10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(things=THINGS, data=st.data())
def test_a_native_count_is_one_command_and_the_truth(store: Any, things: list[Thing],
                                                     data: st.DataObject) -> None:
    store.client.flushdb()
    store.save_many(things)
    store.count(Thing)  # the model is known (a first use registers through the plan)
    kind = data.draw(KINDS)
    field, values = data.draw(st.sampled_from([("n", EDGE_INTS), ("x", EDGE_FLOATS)]))
    lo, hi = data.draw(values), data.draw(values)
    r = data.draw(st.sampled_from([gt(lo), ge(lo), lt(hi), le(hi), between(lo, hi),
                                   between(lo, hi, inclusive=(False, True)), Range()]))
    filters, truth = data.draw(st.sampled_from([
        ({"kind": kind}, sum(t.kind == kind for t in things)),
        ({field: r}, sum(inside(getattr(t, field), r) for t in things)),
        ({}, len(things)),
    ]))
    query = store.find(Thing, **filters)
    offset = data.draw(st.integers(0, 12))
    limit = data.draw(st.none() | st.integers(1, 12))
    query = query.offset(offset).limit(limit)
    want = max(0, truth - offset)
    want = want if limit is None else min(want, limit)
    recorder = Recorder(store)
    try:
        assert query.count() == want, (filters, offset, limit)
        assert one_evalsha(recorder.batches), recorder.batches
        del recorder.batches[:]
        assert query.count() == want  # the cached batch, again
        assert one_evalsha(recorder.batches)
    finally:
        recorder.close()
    assert store.run(query.size_plan()) == want == len(query.ids())


def test_what_the_shortcut_leaves_to_the_plan_answers_as_the_plan(store: Any) -> None:
    store.save_many([Thing("a", i, float(i), id=f"t{i}") for i in range(5)])
    cold = redmodel.Store(store.client)  # never used the model: registers first
    recorder = Recorder(cold)
    try:
        assert cold.find(Thing, kind="a").count() == 5
        assert len(recorder.batches) > 1  # the registry record was read first
        del recorder.batches[:]
        for query, want in ((cold.find(Thing, kind="a", n=ge(2)), 3),
                            (cold.find(Thing, Q(kind="a") | Q(kind="b")), 5),
                            (cold.find(Thing, kind="a").limit(0), 0),
                            (cold.find(Thing).order_by("n").after(
                                cold.find(Thing).order_by("n").page(2).cursor), 3)):
            assert query.count() == want == cold.run(query.size_plan())
        assert query._native_count() is None  # a cursor: counted from its position
        assert cold.find(Thing, kind="a", n=ge(2))._native_count() is None  # two terms
        token = ACTIVE_TRANSACTION.set(object())
        try:
            assert cold.find(Thing, kind="a")._native_count() is None
        finally:
            ACTIVE_TRANSACTION.reset(token)
        assert cold.find(Thing, kind="a")._native_count() is not None
    finally:
        recorder.close()


def test_an_expired_object_is_swept_then_counted_out(store: Any) -> None:
    store.save_many([Thing("a", i, float(i), id=f"t{i}") for i in range(3)])
    query = store.find(Thing, kind="a")
    assert query.count() == 3
    store.save(Thing("a", 9, 9.0, id="gone"), ttl=0.5)  # (0.15 s: gone before the count
    saved = time.monotonic()                             # on a slow machine)
    assert query.count() == 4  # the cached batch
    time.sleep(max(0.0, saved + 0.5 - time.monotonic()) + 0.05)
    recorder = Recorder(store)
    try:
        assert query.count() == 3
        assert len(recorder.batches) > 1  # answered X: the plan swept, then counted
    finally:
        recorder.close()
    assert store.find(Thing, kind="a").count() == 3


def test_an_async_store_takes_the_same_shortcut(store: Any, redis_url: str) -> None:
    store.save_many([Thing("a", i, float(i), id=f"t{i}") for i in range(4)])

    async def go() -> list[Any]:
        astore = redmodel.AsyncStore.from_url(redis_url)
        try:
            first = await astore.find(Thing, kind="a").count()  # registers
            recorder = Recorder(astore)

            async def execute(batch: Batch) -> Any:
                recorder.batches.append(batch)
                return await recorder.inner(batch)

            astore._execute = execute
            counts = [await astore.find(Thing, kind="a").offset(1).count(),
                      await astore.find(Thing, n=between(1, 2)).count(),
                      await astore.find(Thing).limit(2).count()]
            return [first, counts, len(recorder.batches)]
        finally:
            await astore.aclose()

    assert asyncio.run(go()) == [4, [3, 2, 2], 3]


@pytest.mark.parametrize(("key", "filters"), [
    ("cnt1:%idx:eq:kind:a", {"kind": "a"}), ("cnt1:%idx:all", {"kind": "a"}),
    ("cnt1:%idx:exp", {"kind": "a"}), ("cnt1:%idx:rng:n", {"n": between(0, 2)}),
    # a count of every id reads the pages (its own branch of the script, past the
    # pages' functions, which a count of one index does not load)
    ("cnt1:%idx:all", {}), ("cnt1:%idx:exp", {}), ("cnt1:%idx:idn", {}),
])
def test_a_wrong_typed_key_is_refused_as_by_the_plan(store: Any, key: str,
                                                     filters: dict[str, Any]) -> None:
    store.save(Thing("a", 1, 1.0, id="t"))
    query = store.find(Thing, **filters)
    assert query.count() == 1  # the shortcut's batch is cached
    store.client.delete(key)
    store.client.set(key, "planted")
    errors = []
    for run in (query.count, lambda: store.run(query.size_plan())):
        with pytest.raises(redmodel.ServerError) as info:
            run()
        errors.append((type(info.value), str(info.value), info.value.keys))
    assert errors[0] == errors[1] and key in errors[0][1]
