"""Batched index maintenance (issue 17, item 2) and streamed bulk calls (item 8).

``save_many`` / ``delete_many`` write the indexed objects of a chunk's bucket in one call
of ``index_write_many.lua``; the property: they leave exactly the keyspace (objects, index
entries, records, all-ids, unique hashes and claims) that saving or deleting the same
objects one at a time leaves, with the same refusals and the same objects written.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel._plans._objects import DEFAULT, save_command
from tests.budget import scaled
from tests.index_helpers import dump, flush

IDS_ALL = ["a", "b:1", "{c}", "d*", "e%", "f\\", "g h", "7"]
IDS = st.sampled_from(IDS_ALL)
TEXTS = st.sampled_from(["red", "", "x:y", "{t}", "*", "%", "\\", "é"])
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 1.5, math.nan]))
INTS = st.one_of(st.integers(-5, 5), st.sampled_from([2**53, 2**53 + 1, -(2**63), 2**64]))
SKUS = st.one_of(st.none(), st.sampled_from(["s1", "s2", "s:3"]))


def declare(buckets: int | None) -> type:
    @redmodel.model(prefix="bulk", buckets=buckets)
    @attrs.define
    class Hat:
        color: str = redmodel.field(index=True)
        price: float = redmodel.field(index="range")
        quantity: int = redmodel.field(index=True)
        sku: str | None = redmodel.field(unique=True, default=None)
        id: str = redmodel.key_field()

    return Hat


HATS = {None: declare(None), 4: declare(4)}


def hats(cls: type) -> st.SearchStrategy[Any]:
    return st.builds(cls, id=IDS, color=TEXTS, price=FLOATS, quantity=INTS, sku=SKUS)


def one_at_a_time(store: redmodel.Store, objs: list[Any], chunk: int) -> set[str]:
    """What save_many promises, done with save: every object is checked first (nothing
    written when one is refused, or two of different ids share a unique value); then in
    chunks, each object alone, stopping after a chunk with a refusal. A unique value held
    by another live object refuses its object; on a bucketed model (claims, made for the
    whole chunk before it is written) it refuses the whole chunk. The keys written."""
    holders: dict[tuple[str, str], str] = {}
    for o in objs:
        try:
            save_command(o, DEFAULT)
        except redmodel.ValidationError:
            return set()
        if o.sku is not None and holders.setdefault(("sku", o.sku), o.id) != o.id:
            return set()
    cls = type(objs[0]) if objs else None
    claims = bool(objs) and spec_of(cls).claims  # type: ignore[arg-type]
    written: set[str] = set()
    for start in range(0, len(objs), chunk):
        part = objs[start:start + chunk]
        now = {i: o.sku for i, o in zip(IDS_ALL, store.get_many(cls, IDS_ALL), strict=True)
               if o is not None}  # type: ignore[arg-type]
        keep = []
        # each object is judged in turn, with and without claims: a value an earlier
        # object of the chunk gave up is free for a later one (with claims the chunk is
        # then sent in two parts, docs/queries.md), one still held is taken
        for o in part:
            if o.sku is not None and any(s == o.sku and i != o.id for i, s in now.items()):
                continue  # refused
            now[o.id] = o.sku
            keep.append(o)
        if claims and len(keep) < len(part):
            break
        for o in keep:
            written.add(store.save(o))
        if len(keep) < len(part):
            break
    return written


def restore(store: redmodel.Store, stored: list[Any]) -> None:
    """An empty server, then the stored objects saved one by one (refused ones skipped)."""
    flush(store.client)
    for o in stored:
        with contextlib.suppress(redmodel.ValidationError, redmodel.UniqueViolationError):
            store.save(attrs.evolve(o))  # a fresh copy: no tracked snapshot


def comparable(client: Any) -> dict[bytes, Any]:
    """The keyspace, with a claim's time (when it was made) left out."""
    out = {}
    for k, (kind, value, ttl) in dump(client).items():
        claim = (b"%claim" in k or b"%uc" in k) and kind == "hash"
        out[k] = (kind, sorted(f for f, _ in value) if claim else value, ttl)
    return out


@pytest.fixture(params=[None, 4], ids=["plain", "buckets"])
def cls(request: pytest.FixtureRequest) -> type:
    return HATS[request.param]


@settings(max_examples=scaled(40, floor=10))
@given(data=st.data())
def test_save_many_leaves_what_saving_one_at_a_time_leaves(store: redmodel.Store, cls: type,
                                                           data: st.DataObject) -> None:
    stored = data.draw(st.lists(hats(cls), max_size=4))
    batch = data.draw(st.lists(hats(cls), max_size=8))
    chunk = data.draw(st.integers(1, 4))

    def setup() -> None:
        restore(store, stored)

    setup()
    expected = one_at_a_time(store, [attrs.evolve(o) for o in batch], chunk)
    want = comparable(store.client)
    setup()
    try:
        store.save_many([attrs.evolve(o) for o in batch], chunk_size=chunk)
        written = {spec_of(cls).key_for(o.id) for o in batch}
    except (redmodel.ValidationError, redmodel.UniqueViolationError) as e:
        written = set(getattr(e, "written", None) or ())
    assert comparable(store.client) == want
    assert written == expected


@settings(max_examples=scaled(30, floor=10))
@given(data=st.data())
def test_delete_many_leaves_what_deleting_one_at_a_time_leaves(
        store: redmodel.Store, cls: type, data: st.DataObject) -> None:
    stored = data.draw(st.lists(hats(cls), max_size=6))
    ids = data.draw(st.lists(IDS, max_size=8))

    def setup() -> None:
        restore(store, stored)

    setup()
    count = sum(store.delete(cls, i) for i in ids)
    want = comparable(store.client)
    setup()
    assert store.delete_many(cls, ids) == count
    assert comparable(store.client) == want


def test_a_generator_is_streamed_and_a_bad_chunk_says_what_was_written(
        store: redmodel.Store) -> None:
    cls = HATS[None]

    def objs() -> Iterator[Any]:
        for i in range(7):
            yield cls(id=f"g{i}", color="red", price=math.nan if i == 5 else 1.0, quantity=i)

    with pytest.raises(redmodel.ValidationError) as caught:
        store.save_many(objs(), chunk_size=2)
    assert set(caught.value.written) == {f"bulk:g{i}" for i in range(4)}
    assert set(caught.value.not_written) == {"bulk:g4", "bulk:g5"}
    assert "read no further" in str(caught.value)
    assert sorted(store.find(cls, color="red").ids()) == [f"g{i}" for i in range(4)]
    # a list is checked whole first: nothing written
    with pytest.raises(redmodel.ValidationError) as caught:
        store.save_many([cls(id="l1", color="blue", price=1.0, quantity=1),
                         cls(id="l2", color="blue", price=math.inf, quantity=1)],
                        chunk_size=1)
    assert not caught.value.written  # refused before the first write: a plain error
    assert store.find(cls, color="blue").count() == 0
    got = store.get_many(cls, (f"g{i}" for i in range(6)))
    assert [o.id if o else None for o in got] == ["g0", "g1", "g2", "g3", None, None]


def test_ttls_through_the_batched_path(store: redmodel.Store) -> None:
    cls = HATS[4]
    objs = [cls(id=f"t{i}", color="red", price=1.0, quantity=i) for i in range(6)]
    store.save_many(objs, ttl=100)
    assert all(0 < (store.pttl(cls, f"t{i}") or 0) <= 100_000 for i in range(6))
    store.save_many(objs)  # a whole save keeps the expiry, as save does
    assert all(store.pttl(cls, f"t{i}") for i in range(6))
    assert sorted(store.find(cls, color="red").ids()) == [f"t{i}" for i in range(6)]


def test_batched_writes_through_every_shell(any_store: Any) -> None:
    """Sync, asyncio, and a three-primary cluster (one batch call per bucket and chunk)."""
    cls = HATS[4]
    objs = [cls(id=f"s{i}", color="red" if i % 2 else "blue", price=float(i), quantity=i,
                sku=f"k{i}") for i in range(12)]
    assert any_store.save_many(objs, chunk_size=5) == 12
    assert sorted(any_store.find(cls, color="red").ids()) == sorted(
        f"s{i}" for i in range(1, 12, 2))
    with pytest.raises(redmodel.UniqueViolationError) as caught:
        any_store.save_many([cls(id="s99", color="red", price=1.0, quantity=1, sku="k3")])
    assert not caught.value.written
    assert any_store.get(cls, "s99") is None
    assert any_store.delete_many(cls, [f"s{i}" for i in range(12)] + ["gone"]) == 12
    assert any_store.find(cls).count() == 0
    assert any_store.find(cls, color="red").count() == 0


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_a_unique_value_given_up_later_in_the_chunk_is_still_refused_in_order(
        store: redmodel.Store, chunk: int) -> None:
    """save_many saves in order: a write refused because another object holds the value
    stays refused when that object gives the value up later in the same call (found by the
    property above: the refused write was sent again after it, reordering the chunk)."""
    cls = HATS[None]
    flush(store.client)
    store.save(cls(id="b:1", color="red", price=0.0, quantity=0, sku="s1"))
    with pytest.raises(redmodel.UniqueViolationError) as caught:
        store.save_many([cls(id="a", color="red", price=0.0, quantity=0, sku=None),
                         cls(id="a", color="red", price=0.0, quantity=0, sku="s1"),
                         cls(id="b:1", color="red", price=0.0, quantity=0, sku=None)],
                        chunk_size=chunk)
    a = store.get(cls, "a")
    assert a is not None and a.sku is None
    written = {"bulk:a", "bulk:b%3A1"} if chunk == 3 else {"bulk:a"}
    assert set(caught.value.written) == written
