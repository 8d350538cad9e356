"""A reindex (and build_index, rotate_index_key: the same object pass) while writes go on
never leaves wrong index entries (FINDINGS-16m R1).

The reindex plan is sans-I/O, so the test drives it by hand and runs writers' operations
(update, whole save, incr of an indexed int, delete, expire) between its batches, at
points Hypothesis draws: every interleaving of a write with the reindex's read of an
object and its index write for it is reachable, deterministically. Property: once the
writers stop (and after one more reindex, or none), ``verify`` is clean and every query
answers what a SCAN of the objects answers.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import ge, lt
from redmodel._errors import NotFoundError, UniqueViolationError
from redmodel._indexes import _repair
from redmodel._models._specs import spec_of
from redmodel._plan import Batch, Emit, memo_variant
from redmodel._stores._sync import Store
from tests.budget import scaled

COLORS = ["black", "red", "", "a:{b}*%\\"]
IDS = ["1", "2", "3", "a:b", "{x}", "*%\\", "7", "8"]


def declare(buckets: int | None, unique: bool) -> type:
    prefix = f"rxr{buckets or 0}{'u' if unique else ''}"

    @redmodel.model(prefix=prefix, buckets=buckets)
    @attrs.define
    class Item:
        color: str = redmodel.field(index=True)
        n: int = redmodel.field(index="range", default=0)
        k: int = redmodel.field(index=True, default=0)
        sku: str | None = redmodel.field(unique=unique or None, default=None)
        note: str = ""
        id: str = redmodel.key_field(generated=False)

    return Item


# the conversion's script, sent plain ('move') or under its memo (fix, mend, drop); the
# claim repair under its memo (docs/failures.md, "Resent maintenance calls")
CONVERT = {_repair.CONVERT.sha, memo_variant(_repair.CONVERT).sha}
DROP = memo_variant(_repair.DROP_CLAIM).sha
MODELS = [declare(b, u) for b in (None, 4) for u in (False, True)]

def ops(ids: list[str]) -> st.SearchStrategy[tuple[str, str, Any, int]]:
    """Writers' operations, mostly on the objects stored (``ids``), some on others."""
    some = st.sampled_from(ids) | st.sampled_from(IDS)
    return st.one_of(
        st.tuples(st.just("update"), some, st.sampled_from(COLORS), st.integers(-3, 3)),
        st.tuples(st.just("save"), some, st.sampled_from(COLORS), st.integers(-3, 3)),
        st.tuples(st.just("incr"), some, st.sampled_from(["n", "k"]), st.integers(-2, 2)),
        st.tuples(st.just("sku"), some, st.sampled_from(["A", "B", None]), st.just(0)),
        st.tuples(st.just("delete"), some, st.just(""), st.just(0)),
        st.tuples(st.just("expire"), some, st.sampled_from(["short", "long"]), st.just(0)),
        st.tuples(st.just("note"), some, st.just("x"), st.just(0)),
    )


def apply(store: Store, Item: type, op: tuple[str, str, Any, int]) -> None:
    kind, id, arg, num = op
    try:
        if kind == "update":
            store.update(Item, id, color=arg, n=num)
        elif kind == "save":
            old = store.get(Item, id)
            sku = old.sku if old is not None else None
            store.save(Item(arg, n=num, k=num, sku=sku, id=id))
        elif kind == "incr":
            store.incr(Item, id, arg, num)
        elif kind == "sku":
            store.update(Item, id, sku=arg)
        elif kind == "delete":
            store.delete(Item, id)
        elif kind == "expire":
            store.expire(Item, id, 0.001 if arg == "short" else 100)
            if arg == "short":
                time.sleep(0.002)
        else:
            store.update(Item, id, note=arg)
    except NotFoundError:
        pass
    except UniqueViolationError:  # a unique value another object holds
        pass


def drive(store: Store, Item: type, plan: Any, schedule: list[tuple[int, Any]]) -> int:
    """Run ``plan`` (an iteration plan) through ``store``, applying each scheduled write
    before the batch of its number, counting the batches of scripts that write entries
    (each follows the reads it acts on: a write there lands between the two; the
    conversion of an older format and the saves of the plan's progress are not counted);
    returns how many it sent."""
    step, i = next(plan), 0
    try:
        while True:
            if isinstance(step, Emit):
                step = plan.send(None)
                continue
            assert isinstance(step, Batch)
            if step.write and any(c[0] == "EVALSHA" and c[1] not in CONVERT for c in
                                  step.commands):
                for at, op in schedule:
                    if at == i:
                        apply(store, Item, op)
                i += 1
            step = plan.send(store._execute(step))
    except StopIteration:
        return i


def agree(store: Store, Item: type) -> None:
    """verify is clean, and the queries answer what a SCAN answers."""
    store.sweep(Item)  # objects expired meanwhile: their entries go at the next sweep
    assert store.verify(Item, count=3) == []
    objs = {o.id: o for o in store.scan(Item)}
    assert {o.id for o in store.find(Item).all()} == set(objs)
    for c in COLORS:
        assert {o.id for o in store.find(Item, color=c).all()} == \
            {i for i, o in objs.items() if o.color == c}, c
    for v in range(-4, 5):
        assert {o.id for o in store.find(Item, k=v).all()} == \
            {i for i, o in objs.items() if o.k == v}, v
        assert {o.id for o in store.find(Item, n=lt(v)).all()} == \
            {i for i, o in objs.items() if o.n < v}, v
        assert {o.id for o in store.find(Item, n=ge(v)).all()} == \
            {i for i, o in objs.items() if o.n >= v}, v
    if spec_of(Item).indexes.uniques:  # type: ignore[union-attr]
        for sku in ("A", "B"):
            holders = [i for i, o in objs.items() if o.sku == sku]
            assert len(holders) <= 1, holders
            got = store.get_by(Item, sku=sku)
            assert (got.id if got is not None else None) == (holders[0] if holders else None)


@settings(max_examples=scaled(40, floor=10))
@given(data=st.data(),
       model=st.sampled_from(MODELS),
       start=st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(COLORS),
                                st.integers(-3, 3), st.sampled_from(["A", "B", None]),
                                st.booleans()),
                      min_size=1, max_size=8, unique_by=lambda t: t[0]),
       count=st.integers(1, 4),
       final=st.booleans())
def test_reindex_with_writes_between_its_batches(
        redis_client: Any, data: st.DataObject, model: type, start: list[Any], count: int,
        final: bool) -> None:
    redis_client.flushall()
    store = Store(redis_client)
    Item = model
    seen: set[str] = set()
    for id, color, n, drawn, ttl in start:
        sku = None if drawn in seen else drawn
        if sku:
            seen.add(sku)
        store.save(Item(color, n=n, k=n, sku=sku, id=id), ttl=100 if ttl else None)
    schedule = data.draw(st.lists(st.tuples(st.integers(0, 4), ops([s[0] for s in start])),
                                  max_size=10))
    plan = store._use(Item, _repair.reindex_plan(Item, count, store._targets()))
    sent = drive(store, Item, plan, schedule)
    for at, op in schedule:  # writes scheduled after its last batch: the writers go on
        if at >= sent:
            apply(store, Item, op)
    if final:
        store.reindex(Item, count=count, progress=False)
    agree(store, Item)


def test_an_object_changed_between_read_and_write_is_read_again(
        redis_client: Any) -> None:
    """The finding's case, by hand: a writer changes the indexed field between the
    reindex's read of the object and its index write; the write answers CHANGED, the
    object is read again and indexed with its new value."""
    redis_client.flushall()
    store = Store(redis_client)
    Item = MODELS[0]
    store.save(Item("black", id="1"))
    plan = store._use(Item, _repair.reindex_plan(Item, 10, store._targets()))
    sent = []
    step = next(plan)
    try:
        while True:
            if isinstance(step, Emit):
                step = plan.send(None)
                continue
            if any(c[0] == "EVALSHA" and "reindex" in c for c in step.commands) \
                    and not sent:
                sent.append(step)
                store.update(Item, "1", color="red")
            step = plan.send(store._execute(step))
    except StopIteration:
        pass
    assert sent, "the reindex sent no index write"
    assert store.verify(Item) == []
    assert [o.id for o in store.find(Item, color="red").all()] == ["1"]
    assert store.find(Item, color="black").count() == 0


@pytest.mark.parametrize("model", MODELS[:1])
def test_an_object_that_keeps_changing_is_left_to_its_writers(
        redis_client: Any, model: type, caplog: pytest.LogCaptureFixture) -> None:
    """A writer that changes the object before every one of the reindex's index writes:
    the reindex gives up on it (logged) and writes nothing wrong."""
    redis_client.flushall()
    store = Store(redis_client)
    Item = model
    store.save(Item("c0", id="1"))
    plan = store._use(Item, _repair.reindex_plan(Item, 10, store._targets()))
    writes = 0
    step = next(plan)
    try:
        while True:
            if isinstance(step, Emit):
                step = plan.send(None)
                continue
            if any(c[0] == "EVALSHA" and "reindex" in c for c in step.commands):
                writes += 1
                store.update(Item, "1", color=f"c{writes}")
            step = plan.send(store._execute(step))
    except StopIteration:
        pass
    assert writes == _repair.REREADS + 1
    assert "left as its writers keep it" in caplog.text
    assert store.verify(Item) == []
    assert [o.id for o in store.find(Item, color=f"c{writes}").all()] == ["1"]


def test_a_claim_given_up_and_taken_back_during_its_repair_stays(redis_client: Any) -> None:
    """Bucketed unique values (claims): reindex drops a claim whose owner no longer holds
    the value. The owner gives the value up after reindex read the claim, and takes it
    back (confirmed again: the same text) before the drop: the claim must stay."""
    redis_client.flushall()
    store = Store(redis_client)
    Item = MODELS[3]
    assert spec_of(Item).claims
    store.save(Item("black", sku="A", id="1"))
    plan = store._use(Item, _repair.reindex_plan(Item, 10, store._targets()))
    stage = 0
    step = next(plan)
    try:
        while True:
            if isinstance(step, Emit):
                step = plan.send(None)
                continue
            cmds = step.commands
            if stage == 0 and cmds[0][0] == "HSCAN" and "%idx:uq:" in str(cmds[0][1]):
                stage = 1
            elif stage == 1 and cmds[0][0] == "HGETALL":
                store.update(Item, "1", sku="B")  # gives A up
                stage = 2
            elif stage == 2 and cmds[0][0] == "EVALSHA" and cmds[0][1] == DROP:
                store.update(Item, "1", sku="A")  # and takes it back
                stage = 3
            step = plan.send(store._execute(step))
    except StopIteration:
        pass
    assert stage == 3
    got = store.get_by(Item, sku="A")
    assert got is not None and got.id == "1"
    assert store.verify(Item) == []
    with pytest.raises(UniqueViolationError):
        store.save(Item("red", sku="A", id="2"))
