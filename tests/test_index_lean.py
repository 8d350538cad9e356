"""The leaner index write path (issue 17, items 2 and 4) leaves exactly the index state the
objects call for.

The write path now reuses the entries and the stored state save_many's check and encode
computed, caches entry keys, and a whole save of a loaded object declares the old
entries' keys only when an indexed field's stored bytes changed (a KEYS answer covers a
writer that changed it meanwhile). The
property: after any sequence of saves (one at a time, save_many, partial saves of loaded
objects, saves of stale copies another writer overtook, with and without TTLs, and with a
wrong-typed index key planted beforehand) every index key, record, the all-ids and expiry
sets are exactly what a model computed in Python from the live objects says, and
``verify`` finds nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._specs import entry_key
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.index_helpers import all_ids, dump, expected_keyspace, flush, plant


@redmodel.model(prefix="lean")
@attrs.define
class Lean:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    n: int = redmodel.field(index=True)
    at: dt.datetime = redmodel.field(index="range")
    tags: list[str] = redmodel.field(index=True, factory=list)
    sku: str | None = redmodel.field(unique=True, default=None)
    note: str = ""
    id: str = redmodel.key_field()


SPEC = spec_of(Lean)
ROOT = "lean:%idx:"
IDS = st.sampled_from(["a", "b:1", "{c}", "d*", "e%", "f\\", "g h", "7"])
BASE = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
TEXTS = st.one_of(st.sampled_from(["red", "", "x:y", "{t}", "*", "%", "\\", "é"]),
                  st.just("h" * 300))  # a huge one: beyond listpack sizes (64)
FLOATS = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0.0, -0.0, 1.5, 2.0**53, -(2.0**53) - 2]))
INTS = st.one_of(st.integers(-3, 3), st.sampled_from([2**53, 2**53 - 1, -(2**53), 2**63 - 1]))
TIMES = st.integers(0, 3).map(lambda us: BASE + dt.timedelta(microseconds=us))


@st.composite
def lean(draw: st.DrawFn, ident: Any = IDS) -> Lean:
    i = draw(ident)
    return Lean(id=i, color=draw(TEXTS), price=draw(FLOATS), n=draw(INTS), at=draw(TIMES),
                tags=draw(st.lists(TEXTS, max_size=2)),
                sku=draw(st.sampled_from([None, f"k-{i}"])),  # never another id's
                note=draw(st.sampled_from(["", "n"])))


def expected(live: dict[str, Lean], ttl: dict[str, bool]) -> dict[bytes, Any]:
    """The index keys the live objects call for, each as dump() shows it."""
    return expected_keyspace(SPEC, live, {i for i, t in ttl.items() if t})


def actual(client: Any, planted: str = "") -> dict[bytes, Any]:
    """The index keys in the server but a planted one (exp's scores replaced by -1); the
    all-ids pages, directory and count as one sorted set ``ROOT ids`` of the ids they hold
    (all_ids checks their format)."""
    out: dict[bytes, Any] = {}
    ids = all_ids(client, ROOT)
    if ids:
        out[(ROOT + "ids").encode()] = ("zset", [(i, 0.0) for i in ids])
    for k, (kind, value, _) in dump(client).items():
        if not k.startswith(ROOT.encode()) or k == planted.encode():
            continue
        if k.startswith((ROOT + "ids").encode()) or k == (ROOT + "idn").encode():
            continue
        if kind == "zset":
            out[k] = (kind, sorted((m, -1.0 if k.endswith(b"exp") else float(s))
                                   for m, s in value))
        else:
            out[k] = (kind, value)
    return out


def check(store: redmodel.Store, live: dict[str, Lean], ttl: dict[str, bool],
          planted: str = "") -> None:
    assert actual(store.client, planted) == expected(live, ttl)
    for i, o in live.items():
        assert store.get(Lean, i) == o
        assert (store.pttl(Lean, i) is not None) == ttl.get(i, False)
    problems = store.verify(Lean)
    if planted:  # the planted key is the only problem verify finds
        assert len(problems) == 1 and problems[0].startswith(planted), problems
    else:
        assert problems == []


STEP = st.one_of(
    st.tuples(st.just("save"), lean(), st.booleans()),
    st.tuples(st.just("many"), st.lists(lean(), max_size=4, unique_by=lambda o: o.id),
              st.booleans()),
    st.tuples(st.just("partial"), IDS, TEXTS, FLOATS),  # load, change, save what changed
    st.tuples(st.just("reload_many"), IDS, TEXTS),  # load, change, save_many (whole)
    st.tuples(st.just("stale"), IDS, lean(), st.booleans()),  # a copy another writer
    # overtook, saved whole (save_many) or partially (save)
    st.tuples(st.just("planted"), lean()),  # a wrong-typed entry key: refused, nothing written
    st.tuples(st.just("bad"), lean(), st.sampled_from([math.nan, math.inf, -math.inf])),
)


@settings(max_examples=scaled(80, floor=10), deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=6))
def test_the_write_path_leaves_exactly_the_entries_of_the_live_objects(
        store: redmodel.Store, steps: list[tuple[Any, ...]]) -> None:
    flush(store.client)
    live: dict[str, Lean] = {}
    ttl: dict[str, bool] = {}

    def saved(o: Lean, with_ttl: bool) -> None:
        ttl[o.id] = with_ttl or (ttl.get(o.id, False) and o.id in live)
        live[o.id] = attrs.evolve(o)

    for step in steps:
        kind = step[0]
        if kind == "save":
            _, o, with_ttl = step
            store.save(o, ttl=60 if with_ttl else None)
            saved(o, with_ttl)
        elif kind == "many":
            _, objs, with_ttl = step
            store.save_many(objs, ttl=60 if with_ttl else None)
            for o in objs:
                saved(o, with_ttl)
        elif kind in ("partial", "reload_many"):
            loaded = store.get(Lean, step[1])
            if loaded is None:
                continue
            loaded.color = step[2]
            if kind == "partial":
                loaded.price = step[3]
                store.save(loaded)
            else:
                store.save_many([loaded])
            saved(loaded, False)
        elif kind == "stale":
            _, i, newer, whole = step
            loaded = store.get(Lean, i)
            if loaded is None:
                continue
            newer = attrs.evolve(newer, id=i, sku=loaded.sku)
            store.save(newer)  # another writer: the loaded copy's snapshot is stale now
            saved(newer, False)
            loaded.note = "stale"  # not an indexed field: its entries look unchanged
            if whole:
                store.save_many([loaded])
            else:
                store.save(loaded)  # a partial save of what it changed (the note)
                loaded = attrs.evolve(newer, note="stale")
            saved(loaded, False)
        elif kind == "planted":
            _, o = step
            if any(other.color == o.color for other in live.values()):
                continue  # planting would destroy a live entry
            color = SPEC.indexes.fields["color"].text(o.color)  # type: ignore[union-attr]
            key = entry_key(ROOT, ":", f"e\x1fcolor\x1f{color}", False)
            assert key is not None
            plant(store.client, key, "string")
            for many in (False, True):
                with pytest.raises(redmodel.ServerError, match="WRONGTYPE"):
                    store.save_many([o]) if many else store.save(o)
                assert store.client.get(key) == b"planted"
                check(store, live, ttl, key)
            store.client.delete(key)
        else:
            _, o, bad = step
            with pytest.raises(redmodel.ValidationError):
                store.save_many([attrs.evolve(o, id="z-first"), attrs.evolve(o, price=bad)])
        check(store, live, ttl)
