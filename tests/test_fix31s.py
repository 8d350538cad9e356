"""Fix 31S: the flat layout stores every field type the hash and blob layouts store, sets
of attrs objects (at any depth) among them, and reads it back equal.

Found by the lead: a flat model with a ``frozenset[P]`` field (P a frozen attrs class)
failed in ``store.save`` with a builtin ``TypeError: unhashable type: 'dict'`` (the tree
converter unstructured the set to a set of dicts). The kind, drawn whole: model shapes
built from scalars, enums, Optional, lists, homogeneous and fixed tuples, sets and
frozensets (of scalars, enums, Optional values, tuples, frozensets, frozen attrs objects
holding any of these), dicts, nested attrs classes; values of them saved through each
layout by save, save_many, a tracked save and a transaction, read by get, get_many and
scan; equal sets (other iteration orders) store the same bytes, in this process and in
one with another hash seed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import transaction
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.strategies import values
from tests.test_fix30u import _reordered, _stored

ROOT = Path(__file__).resolve().parent.parent
LAYOUTS = ("hash", "blob", "flat")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"
    GREEN = "g:r*n"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 20


SCALARS: list[Any] = [str, int, float, bool, bytes, decimal.Decimal, uuid.UUID,
                      dt.datetime, dt.date, dt.time, Color, Level]
KEYS: list[Any] = [str, int, bytes, bool, Color, Level, uuid.UUID, dt.date]

_names = itertools.count()


def _class(field_types: list[Any], *, frozen: bool) -> type:
    """An attrs class with one field per type (frozen: hashable, a set may hold it)."""
    cls = attrs.make_class(f"N{next(_names)}",
                           {f"f{i}": attrs.field(type=t) for i, t in enumerate(field_types)},
                           frozen=frozen)
    cls.__module__ = __name__
    return cls


def hashable_types(depth: int) -> st.SearchStrategy[Any]:
    """Types whose every value is hashable: what a set can hold."""
    base: st.SearchStrategy[Any] = st.sampled_from(SCALARS)
    if depth == 0:
        return base
    sub = hashable_types(depth - 1)
    return st.one_of(
        base,
        sub.map(lambda t: t | None),
        sub.map(lambda t: tuple[t, ...]),
        st.tuples(sub, sub).map(lambda ts: tuple[ts[0], ts[1]]),
        sub.map(lambda t: frozenset[t]),
        st.lists(sub, min_size=1, max_size=3).map(lambda ts: _class(ts, frozen=True)),
    )


def field_types(depth: int) -> st.SearchStrategy[Any]:
    """Any field type a model admits (to ``depth`` levels of containers and classes),
    weighted to sets and the containers around them."""
    base: st.SearchStrategy[Any] = st.sampled_from(SCALARS)
    elements = hashable_types(min(depth, 2))
    sets = st.one_of(elements.map(lambda t: set[t]),
                     elements.map(lambda t: frozenset[t]))
    if depth == 0:
        return st.one_of(base, sets)
    sub = field_types(depth - 1)
    return st.one_of(
        sets,
        base,
        sub.map(lambda t: t | None),
        sub.map(lambda t: list[t]),
        sub.map(lambda t: tuple[t, ...]),
        st.tuples(sub, sub).map(lambda ts: tuple[ts[0], ts[1]]),
        st.tuples(st.sampled_from(KEYS), sub).map(
            lambda kv: dict[kv[0], kv[1]]),
        st.lists(sub, min_size=1, max_size=3).map(lambda ts: _class(ts, frozen=False)),
    )


def _model(types_: list[Any], layout: str, track: bool, codec: str | None = None) -> type:
    fields = {f"f{i}": attrs.field(type=t) if codec is None else
              redmodel.field(codec=codec, type=t) for i, t in enumerate(types_)}
    fields["id"] = redmodel.key_field(generated=False, type=str)
    cls = attrs.make_class(f"M{next(_names)}", fields)
    cls.__module__ = __name__
    return redmodel.model(prefix=f"f31s_{uuid.uuid4().hex[:12]}", layout=layout,
                          track_changes=track)(cls)


def _objects(cls: type, n: int) -> st.SearchStrategy[list[Any]]:
    attrs.resolve_types(cls)
    kwargs = {f.name: values(f.type) for f in attrs.fields(cls) if f.name != "id"}
    one = st.fixed_dictionaries(kwargs)
    return st.lists(one, min_size=n, max_size=n).map(
        lambda ds: [cls(**d, id=f"o{i}") for i, d in enumerate(ds)])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_shape_is_stored_and_read_back_equal(store: redmodel.Store, layout: str) -> None:
    @settings(max_examples=scaled(200), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(field_types(2), min_size=1, max_size=3), st.booleans(), st.data())
    def check(types_: list[Any], track: bool, data: st.DataObject) -> None:
        cls = _model(types_, layout, track)
        a, b, c, d = data.draw(_objects(cls, 4))
        # (every builtin exception here fails the test: none may leave redmodel)
        store.save(a)
        assert store.get(cls, "o0") == a
        # equal sets iterating in another order store the same bytes
        before = _stored(store, cls)
        store.save(_reordered(a, data.draw(st.randoms(use_true_random=False))))
        assert _stored(store, cls) == before
        store.save_many([b, c])
        assert store.get_many(cls, ["o1", "o2", "o9"]) == [b, c, None]
        assert sorted(store.scan(cls), key=lambda o: o.id) == [a, b, c]
        # a tracked save (a model with track_changes: what changed since the get)
        loaded = store.get(cls, "o1")
        changed = attrs.evolve(d, id="o1")
        assert loaded is not None
        for f in attrs.fields(cls):
            if f.name != "id":
                setattr(loaded, f.name, getattr(changed, f.name))
        store.save(loaded)
        assert store.get(cls, "o1") == changed

        @transaction(store)
        def swap(tx: Any) -> Any:
            old = tx.get(cls, "o0")
            tx.save(attrs.evolve(old, id="o3"))
            tx.save(attrs.evolve(c, id="o0"))
            return old

        assert swap() == a
        assert store.get_many(cls, ["o0", "o3"]) == [attrs.evolve(c, id="o0"),
                                                     attrs.evolve(a, id="o3")]

    check()


# ---- the same leaves in a process with another hash seed -----------------------------------

_ENCODER = """
import json, sys
import attrs, redmodel
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of

@attrs.frozen
class Point:
    x: int
    label: str

@attrs.frozen
class Tagged:
    at: Point
    tags: frozenset[str]
    raw: frozenset[bytes]

@redmodel.model(prefix="f31s_seed", layout="flat")
@attrs.define
class Shape:
    points: frozenset[Point]
    tagged: set[Tagged]
    nested: frozenset[frozenset[str]]
    pairs: frozenset[tuple[str, bytes]]
    by_name: dict[str, set[Point]]
    id: str = redmodel.key_field(generated=False)

words = json.loads(sys.argv[1])
obj = Shape(
    points=frozenset(Point(i, w) for i, w in enumerate(words)),
    tagged={Tagged(Point(len(w), w), frozenset(words[i:]), frozenset(x.encode() for x in words[:i]))
            for i, w in enumerate(words)},
    nested=frozenset(frozenset(words[i:i + 2]) for i in range(len(words))),
    pairs=frozenset((w, w[::-1].encode()) for w in words),
    by_name={w: {Point(-i, w)} for i, w in enumerate(words)},
    id="x")
write = layout_of(spec_of(Shape)).save("f31s_seed:x", obj, None)
print(json.dumps([str(a) for a in write.args] + write.keys))
"""


def test_equal_sets_of_objects_make_the_same_leaves_under_other_hash_seeds() -> None:
    """One check is enough (the order is a sort on the stored bytes, no hash in it): the
    model's sets of frozen attrs objects, of frozensets, of tuples, in a dict, encoded in
    processes with three hash seeds, give the same manifest, leaf keys and values."""
    words = ["alpha", "b:c", "", "d*e", "zeta", "é", "x" * 30, "0", "10", "9"]
    outs = set()
    for seed in ("1", "2", "3"):
        run = subprocess.run([sys.executable, "-c", _ENCODER, json.dumps(words)], cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout)
    assert len(outs) == 1


# ---- what set members the model admits, the flat layout stores ------------------------------


@attrs.frozen
class Inner:
    n: int
    tags: frozenset[str] = frozenset()


@attrs.frozen
class Outer:
    inner: Inner
    maybe: Inner | None = None
    when: dt.datetime | None = None


SET_FIELDS = [
    frozenset[Outer], set[Inner], frozenset[tuple[Inner, int]], frozenset[frozenset[Inner]],
    dict[str, frozenset[Outer]], list[set[Inner]], tuple[frozenset[Inner], ...],
    frozenset[Inner] | None, set[Inner | None], frozenset[decimal.Decimal],
    frozenset[dt.datetime], set[Color], frozenset[tuple[Level, bytes]],
]


@pytest.mark.parametrize("tp", SET_FIELDS, ids=str)
def test_a_flat_model_with_sets_of_objects_saves_in_every_way(
        store: redmodel.Store, tp: Any) -> None:
    """The finding's example and its neighbours, on the generated (save) path and the
    generic one; a codec field holding the same type is one leaf, read back equal too."""
    cls = _model([tp, tp], "flat", False)
    attrs.resolve_types(cls)
    encoded = _model([tp], "flat", False, codec="json")
    assert layout_of(spec_of(cls))._encode is None  # (a set: the generic code)
    assert layout_of(spec_of(encoded))._encode is not None  # (one leaf: the generated)

    @settings(max_examples=scaled(30, floor=3), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(values(tp), values(tp))
    def check(x: Any, y: Any) -> None:
        obj = cls(x, y, id="a")
        store.save(obj)
        assert store.get(cls, "a") == obj
        store.save_many([obj, attrs.evolve(obj, id="b")])
        assert store.get_many(cls, ["a", "b"]) == [obj, attrs.evolve(obj, id="b")]
        one = encoded(x, id="a")
        store.save(one)
        assert store.get(encoded, "a") == one

    check()
