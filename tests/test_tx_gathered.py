"""Transactions without the Lua tax (issue 17, item 3) and with gathered pre-reads
(FINDINGS-16m R2): a transaction sends plain HINCRBY where the counter script could only
do that, and the reads its queued writes need before MULTI in a constant number of round
trips. Neither may change what a transaction does:

- a transaction of drawn writes (indexed and unindexed models, update / incr / save /
  delete, several objects, some missing, some read first) leaves exactly the state the
  same writes leave done one by one (a write refused inside EXEC, such as an increment
  of a missing object, is skipped in both);
- a concurrent write injected between the pre-read round trip and EXEC, on an object the
  transaction read or pre-read (WATCHed), makes it run again, and the result is that
  write followed by the transaction's writes: never a lost update.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel.transactions._core import TxCore
from tests.budget import scaled
from tests.index_helpers import dump, flush


@redmodel.model(prefix="tgu")
@attrs.define
class GU:
    """Unindexed: its increments of an object read in the transaction are plain HINCRBY."""

    n: int = 0
    m: int = 0
    s: str | None = None
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="tgi")
@attrs.define
class GI:
    """Indexed: its writes pre-read the object and its index record before MULTI."""

    color: str = redmodel.field(index=True, default="red")
    n: int = redmodel.field(index=True, default=0)
    price: float = redmodel.field(index="range", default=1.0)
    id: str = redmodel.key_field(generated=False)


REFUSED = (redmodel.NotFoundError, redmodel.ConditionFailedError, redmodel.ValidationError)
IDS = ["a", "b", "c", "x:{1}*%"]
MODELS = st.sampled_from([GU, GI])
BIG = 2**63 - 1
INTS = st.one_of(st.integers(-5, 5), st.sampled_from([BIG, -BIG - 1, BIG - 2, 2**53]))


@st.composite
def values(draw: Any, model: Any) -> dict[str, Any]:
    if model is GU:
        return {"n": draw(INTS), "m": draw(st.integers(-5, 5)),
                "s": draw(st.none() | st.text(max_size=3))}
    return {"color": draw(st.sampled_from(["red", "blue", "a b*"])),
            "n": draw(st.integers(-5, 5)),
            "price": draw(st.floats(-10, 10, allow_nan=False).map(lambda f: f + 0.0))}


@st.composite
def ops(draw: Any) -> tuple[Any, ...]:
    model = draw(MODELS)
    i = draw(st.sampled_from(IDS))
    kind = draw(st.sampled_from(["save", "update", "incr", "incr", "delete"]))
    if kind == "save":
        return kind, model, i, draw(values(model))
    if kind == "update":
        whole = draw(values(model))
        keys = draw(st.lists(st.sampled_from(sorted(whole)), min_size=1, unique=True))
        return kind, model, i, {k: whole[k] for k in keys}
    if kind == "incr":
        field = draw(st.sampled_from(["n", "m"] if model is GU else ["n"]))
        return kind, model, i, field, draw(INTS if model is GU else st.integers(-3, 3))
    return kind, model, i


SEEDS = st.lists(st.tuples(MODELS, st.sampled_from(IDS)).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.just(t[1]), values(t[0]))),
    max_size=6, unique_by=lambda t: (t[0], t[1]))
READS = st.lists(st.tuples(MODELS, st.sampled_from(IDS)), max_size=5)


def _apply(target: Any, op: tuple[Any, ...]) -> None:
    """One drawn write on a Store or queued on a Transaction."""
    kind, model, i = op[0], op[1], op[2]
    if kind == "save":
        target.save(model(id=i, **op[3]))
    elif kind == "update":
        target.update(model, i, **op[3])
    elif kind == "incr":
        target.incr(model, i, op[3], op[4])
    else:
        target.delete(model, i)


def _one_by_one(store: redmodel.Store, writes: list[tuple[Any, ...]]) -> None:
    for op in writes:
        with contextlib.suppress(REFUSED):  # refused with nothing written, as in EXEC
            _apply(store, op)


def _seed(store: redmodel.Store, seed: list[Any]) -> None:
    flush(store.client)
    for model, i, v in seed:
        store.save(model(id=i, **v))


def _run(store: redmodel.Store, reads: list[Any], writes: list[Any]) -> Any:
    def body(tx: Any) -> None:
        for model, i in reads:
            tx.get(model, i)
        for op in writes:
            _apply(tx, op)

    try:
        return store.transaction(body).outcome()
    except REFUSED:
        return None  # raised after EXEC (the other writes landed) or before MULTI


def _targets(writes: list[Any]) -> list[tuple[Any, str]]:
    return list(dict.fromkeys((op[1], op[2]) for op in writes))


@settings(max_examples=scaled(25, floor=8), deadline=None)
@given(seed=SEEDS, writes=st.lists(ops(), min_size=1, max_size=7), data=st.data())
def test_a_transaction_of_drawn_writes_leaves_what_they_leave_one_by_one(
        store: redmodel.Store, seed: list[Any], writes: list[Any], data: Any) -> None:
    # mostly the objects it writes are read first (their increments go plain), some not
    reads = data.draw(st.lists(st.sampled_from(_targets(writes)), max_size=4) | READS)
    _seed(store, seed)
    _one_by_one(store, writes)
    want = dump(store.client)
    _seed(store, seed)
    _run(store, reads, writes)
    plain = [w for w in writes if w[0] == "incr" and w[1] is GU and (GU, w[2]) in reads]
    event(f"increments of an object read first: {len(plain)}")
    assert dump(store.client) == want


@settings(max_examples=scaled(25, floor=8), deadline=None)
@given(seed=SEEDS, writes=st.lists(ops(), min_size=1, max_size=6), data=st.data())
def test_a_concurrent_write_between_the_pre_reads_and_exec_makes_it_run_again(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, seed: list[Any],
        writes: list[Any], data: Any) -> None:
    targets = _targets(writes)
    reads = data.draw(st.lists(st.sampled_from(targets), max_size=4) | READS)
    # another client's write, mostly on an object the transaction reads or writes
    concurrent = data.draw(ops().flatmap(lambda op: st.sampled_from(targets).map(
        lambda t: (op[0], *t, *op[3:]) if op[1] is t[0] else op)))
    # the expected state: the concurrent write, then the transaction's (its second run)
    _seed(store, seed)
    _one_by_one(store, [concurrent])
    _one_by_one(store, writes)
    want = dump(store.client)
    _seed(store, seed)
    key = spec_of(concurrent[1]).key_for(concurrent[2])
    attempts: list[tuple[str, ...]] = []  # the keys each attempt WATCHed by EXEC
    changed: list[bool] = []
    real = TxCore.exec_commands

    def exec_commands(core: TxCore) -> Any:
        attempts.append(tuple(core.watched))
        if len(attempts) == 1:  # after the pre-read round trips, before MULTI .. EXEC
            before = dump(store.client)
            # another client's write: a thread of its own, outside this transaction
            writer = threading.Thread(target=_one_by_one, args=(store, [concurrent]))
            writer.start()
            writer.join()
            changed.append(dump(store.client) != before)
        return real(core)

    monkeypatch.setattr(TxCore, "exec_commands", exec_commands)
    _run(store, reads, writes)
    assert dump(store.client) == want  # nothing lost: the concurrent write is in
    if attempts and changed[0] and key in attempts[0]:
        event("a watched object changed: the transaction ran again")
        assert len(attempts) >= 2
    else:
        event("no watched object changed")


def test_an_object_that_expires_between_the_read_and_exec_is_not_brought_back(
        store: redmodel.Store) -> None:
    """The plain HINCRBY trusts the WATCHed read that the object exists; an expiry after
    the read aborts EXEC (Redis 7.0+, Valkey: an expired watched key counts as changed), so
    the attempt runs again, finds nothing, and no partial hash is created."""
    ttl = 0.5  # the read must come before it ends: a slow machine may take 0.1 s to get there
    store.save(GU(n=1, id="ttl"), ttl=ttl)
    saved = time.monotonic()  # the expiry counts from the save: before this
    attempts: list[int] = []

    def buy(tx: Any) -> None:
        attempts.append(1)
        tx.get_or_raise(GU, "ttl")
        time.sleep(max(0.0, saved + ttl - time.monotonic()) + 0.05)  # it expires here
        tx.incr(GU, "ttl", "n", 1)

    with pytest.raises(redmodel.NotFoundError):
        store.transaction(buy)()
    assert len(attempts) == 2
    assert store.client.exists(spec_of(GU).key_for("ttl")) == 0
