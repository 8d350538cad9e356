"""Fix 30T (attack 30AT F1, F2): a tracked object's snapshot describes one key on one
server, the key it was loaded from (or saved at) through one store's client; a save to
another key (its id changed) or through another client (another database, server, an
AsyncStore against a Store, another client on the same server) is a whole save.

The property draws the kind: objects loaded by get, get_many, scan or a query through any
of six stores (two Store objects sharing one client on database 0, a Store with another
client on database 0, a Store on database 7, an AsyncStore on each database), copied
(copy.copy, attrs.evolve), given another id, changed field by field (nested leaves, None),
and saved through any store by save, save_many or a transaction; objects saved meanwhile by
other writers. The oracle follows docs/store.md: a save of an object whose snapshot is of
the same key through the same client sends only the leaves that changed since (the others
keep what is stored; gone: whole); every other save stores the object as it is. An indexed
model's unique values are checked against what the save leaves (UniqueViolationError,
nothing written), and store.verify finds nothing wrong. The flat and blob layouts keep no
snapshot: every save is whole."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import RedisServer
from tests.budget import scaled
from tests.strategies import ids as tricky_ids


@attrs.define
class Pt:
    a: int = 0
    b: int | None = None


@redmodel.model(prefix="fix30t_h", track_changes=True)
@attrs.define
class Hashed:
    x: int = 0
    y: int = 0
    p: Pt = attrs.Factory(Pt)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix30t_i")
@attrs.define
class Indexed:  # indexed: tracks changes by default
    x: int = redmodel.field(default=0, index=True)
    email: str = redmodel.field(default="e0", unique=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix30t_f", layout="flat", track_changes=True)
@attrs.define
class Flat:
    x: int = 0
    p: Pt = attrs.Factory(Pt)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix30t_b", layout="blob", track_changes=True)
@attrs.define
class Blob:
    x: int = 0
    p: Pt = attrs.Factory(Pt)
    id: str = redmodel.key_field(generated=False)


MODELS: dict[type, dict[str, st.SearchStrategy[Any]]] = {
    Hashed: {"x": st.integers(0, 3), "y": st.integers(0, 3), "p.a": st.integers(0, 3),
             "p.b": st.one_of(st.none(), st.integers(0, 3))},
    Indexed: {"x": st.integers(0, 3),
              "email": st.sampled_from(["e1", "e2", "e3", "e4", "e5"])},
    Flat: {"x": st.integers(0, 3), "p.a": st.integers(0, 3),
           "p.b": st.one_of(st.none(), st.integers(0, 3))},
    Blob: {"x": st.integers(0, 3), "p.a": st.integers(0, 3),
           "p.b": st.one_of(st.none(), st.integers(0, 3))},
}


def leaves(obj: Any) -> dict[str, Any]:
    """The object's stored leaves, by dotted name (what a partial save compares)."""
    return {name: getattr(obj.p, name[2:]) if name.startswith("p.") else getattr(obj, name)
            for name in MODELS[type(obj)]}


def build(model: type, id_: str, values: dict[str, Any]) -> Any:
    obj = model(id=id_)
    for name, value in values.items():
        set_leaf(obj, name, value)
    return obj


def set_leaf(obj: Any, name: str, value: Any) -> None:
    if name.startswith("p."):
        setattr(obj.p, name[2:], value)
    else:
        setattr(obj, name, value)


class Place:
    """One store: its database, its client (what a snapshot records) and its calls, sync
    or awaited on ``loop``."""

    def __init__(self, store: Any, db: int, loop: asyncio.AbstractEventLoop | None) -> None:
        self.store, self.db, self.loop = store, db, loop
        self.client = store.client

    def call(self, name: str, *args: Any) -> Any:
        result = getattr(self.store, name)(*args)
        if self.loop is not None:
            return self.loop.run_until_complete(result)
        return result

    def get(self, model: type, id_: str, how: str) -> Any:
        if how == "get":
            return self.call("get", model, id_)
        if how == "get_many":
            return self.call("get_many", model, [id_])[0]
        if how == "query" and model is Indexed:
            found = self.store.find(model).all()
            if self.loop is not None:
                found = self.loop.run_until_complete(found)
        else:  # scan (and a query of a model without indexes)
            found = self.store.scan(model)
            if self.loop is not None:
                found = self.loop.run_until_complete(_collect(found))
        return next((o for o in found if o.id == id_), None)

    def save(self, obj: Any, how: str) -> None:
        if how == "save":
            self.call("save", obj)
        elif how == "save_many":
            self.call("save_many", [obj])
        elif self.loop is None:
            self.store.transaction(lambda tx: tx.save(obj))()
        else:
            async def fn(tx: Any) -> None:
                tx.save(obj)
            self.loop.run_until_complete(self.store.transaction(fn)())


async def _collect(items: Any) -> list[Any]:
    return [item async for item in items]


def _first(model: type, n: int) -> dict[str, Any]:
    """Leaves of a pre-filled object: distinct for every ``n`` (unique emails per id)."""
    if model is Indexed:
        return {"x": n, "email": f"e{n % 10 // 4 + 1}"}
    return {name: n + i + 10 for i, name in enumerate(sorted(MODELS[model]))}


PLACES = ("s0", "s0_same_client", "s0_other_client", "s7", "a0", "a7")


def _places(server: RedisServer, client0: redis.Redis, loop: asyncio.AbstractEventLoop
            ) -> tuple[dict[str, Place], Callable[[], None]]:
    other0, client7 = server.client(), server.client(db=7)
    a0 = redmodel.AsyncStore.from_url(server.url, db=0)
    a7 = redmodel.AsyncStore.from_url(server.url, db=7)
    places = {
        "s0": Place(redmodel.Store(client0), 0, None),
        "s0_same_client": Place(redmodel.Store(client0), 0, None),
        "s0_other_client": Place(redmodel.Store(other0), 0, None),
        "s7": Place(redmodel.Store(client7), 7, None),
        "a0": Place(a0, 0, loop),
        "a7": Place(a7, 7, loop),
    }

    def close() -> None:
        other0.close()
        client7.close()
        loop.run_until_complete(a0.aclose())
        loop.run_until_complete(a7.aclose())
    return places, close


def _steps(model: type) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    names = sorted(MODELS[model])
    values = st.fixed_dictionaries({n: MODELS[model][n] for n in names})
    slot, place, who = st.integers(0, 2), st.sampled_from(PLACES), st.integers(0, 2)
    change = st.one_of(st.tuples(st.just("id"), who), st.sampled_from(names).flatmap(
        lambda n: st.tuples(st.just(n), MODELS[model][n])))
    load = st.tuples(st.just("load"), slot, place, who,
                     st.sampled_from(["get", "get_many", "scan", "query"]))
    save = st.tuples(st.just("save"), slot, place, st.sampled_from(["save", "save_many", "tx"]))
    step = st.one_of(
        st.tuples(st.just("put"), place, who, values),  # another writer
        load,
        st.tuples(st.just("change"), slot, st.lists(change, max_size=3)),
        st.tuples(st.just("copy"), slot, slot, st.sampled_from(["copy", "evolve"])),
        save,
        # the kind's shape in one step: load here, change, save there
        st.tuples(st.just("cycle"), load, st.lists(change, max_size=3), save),
    )
    return st.lists(step, min_size=3, max_size=12)


@settings(max_examples=scaled(200))
@given(model=st.sampled_from([Hashed, Hashed, Indexed, Indexed, Flat, Blob]), data=st.data(),
       who=st.lists(tricky_ids, min_size=3, max_size=3, unique=True))
def test_a_save_elsewhere_than_the_snapshot_is_whole(
        redis_server: RedisServer, redis_client: redis.Redis, model: type,
        data: st.DataObject, who: list[str]) -> None:
    redis_client.flushall()
    loop = asyncio.new_event_loop()
    places, close = _places(redis_server, redis_client, loop)
    tracked = model in (Hashed, Indexed)  # the hash layout keeps snapshots
    stored: dict[tuple[int, str], dict[str, Any]] = {}  # (db, id) -> leaves
    slots: list[Any] = [None, None, None]
    snaps: list[tuple[str, Any, dict[str, Any]] | None] = [None, None, None]

    def write(place: Place, obj: Any, how: str, snap: Any) -> bool:
        """Save ``obj`` through ``place``; the oracle's outcome checked. True if written."""
        target = (place.db, obj.id)
        now = leaves(obj)
        expect = dict(now)
        # a partial save: only what changed since (save_many saves each object whole,
        # docs/migrations.md "A whole save is ...")
        if tracked and how != "save_many" and snap is not None and snap[0] == obj.id \
                and snap[1] is place.client and target in stored:
            expect = {**stored[target],
                      **{n: v for n, v in now.items() if v != snap[2][n]}}
        clash = model is Indexed and any(
            db == place.db and i != obj.id and held["email"] == expect["email"]
            for (db, i), held in stored.items())
        try:
            place.save(obj, how)
        except redmodel.UniqueViolationError:
            assert clash, (how, obj)
            return False
        assert not clash, (how, obj, stored)
        stored[target] = expect
        return True

    def do(step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "put":  # another writer saves a new object
            _, p, w, values = step
            write(places[p], build(model, who[w], values), "save", None)
        elif kind == "load":
            _, s, p, w, how = step
            got = places[p].get(model, who[w], how)
            assert (got is None) == ((places[p].db, who[w]) not in stored)
            slots[s] = got
            snaps[s] = None if got is None else (got.id, places[p].client, leaves(got))
        elif kind == "change" and slots[step[1]] is not None:
            for name, value in step[2]:
                if name == "id":
                    slots[step[1]].id = who[value]
                else:
                    set_leaf(slots[step[1]], name, value)
        elif kind == "copy" and slots[step[1]] is not None:
            _, s, d, how = step
            src = slots[s]
            slots[d] = copy.copy(src) if how == "copy" else attrs.evolve(src)
            snaps[d] = None  # a new object: nothing loaded
        elif kind == "save" and slots[step[1]] is not None:
            _, s, p, how = step
            obj, place = slots[s], places[p]
            if write(place, obj, how, snaps[s]):
                snaps[s] = (obj.id, place.client, leaves(obj))
            # what the key holds now, read through another store of that database
            check = places["s0_other_client" if place.db == 0 else "a7"]
            got, want = check.get(model, obj.id, "get"), stored.get((place.db, obj.id))
            assert (None if got is None else leaves(got)) == want

    try:
        # every id held in both databases at first, each object's leaves differing from
        # every other's (so a snapshot of one says something wrong about any other)
        for k, p in enumerate(("s0", "s7")):
            for w in range(3):
                write(places[p], build(model, who[w], _first(model, 10 * k + 4 * w)),
                      "save", None)
        for step in data.draw(_steps(model)):
            if step[0] == "cycle":
                _, load, changes, save = step
                run = [load, ("change", load[1], changes), ("save", load[1], *save[2:])]
            else:
                run = [step]
            for one in run:
                do(one)
        for db in (0, 7):
            for (d, i), want in stored.items():
                if d == db:
                    got = places["s0" if db == 0 else "s7"].get(model, i, "get")
                    assert got is not None and leaves(got) == want, (db, i)
            if model is Indexed:
                assert places["s0" if db == 0 else "s7"].call("verify", model) == []
    finally:
        close()
        loop.close()


# ---- the identity's two sides, named ------------------------------------------------------


def test_two_stores_over_one_client_keep_both_writers_fields(
        redis_client: redis.Redis) -> None:
    """Two Store objects over one client reach the same database through the same pool:
    an object loaded by one and saved by the other still sends only what changed, so a
    writer of another field meanwhile keeps its change (docs/store.md)."""
    first, second = redmodel.Store(redis_client), redmodel.Store(redis_client)
    first.save(Hashed(1, 1, id="k"))
    obj = first.get(Hashed, "k")
    assert obj is not None
    first.update(Hashed, "k", y=7)  # another writer, another field
    obj.x = 2
    second.save(obj)
    assert first.get(Hashed, "k") == Hashed(2, 7, id="k")


@pytest.mark.parametrize("other", ["client", "database"])
def test_another_client_saves_whole(redis_server: RedisServer, redis_client: redis.Redis,
                                    other: str) -> None:
    """Through another client (on the same server, or another database) the snapshot
    says nothing about what is stored there: the object is stored as it is, a field
    another writer changed there meanwhile included."""
    client = redis_server.client() if other == "client" else redis_server.client(db=7)
    try:
        src, dst = redmodel.Store(redis_client), redmodel.Store(client)
        src.save(Hashed(1, 1, id="k"))
        dst.save(Hashed(1, 1, id="k")) if other == "database" else None
        obj = src.get(Hashed, "k")
        assert obj is not None
        dst.update(Hashed, "k", y=7)  # what the target holds differs from the snapshot
        obj.x = 2
        dst.save(obj)
        assert dst.get(Hashed, "k") == Hashed(2, 1, id="k")
    finally:
        client.close()


def test_a_snapshot_of_one_store_saved_in_anothers_transaction(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """A transaction saves through its store's client: an object loaded by another store
    (database 7 here) is saved whole inside it; one loaded by the transaction's own store
    sends only what changed."""
    client7 = redis_server.client(db=7)
    try:
        here, there = redmodel.Store(redis_client), redmodel.Store(client7)
        here.save(Hashed(1, 1, id="k"))
        there.save(Hashed(5, 5, id="k"))
        obj = there.get(Hashed, "k")
        assert obj is not None
        here.update(Hashed, "k", y=3)
        here.transaction(lambda tx: tx.save(obj))()
        assert here.get(Hashed, "k") == Hashed(5, 5, id="k")
        mine = here.get(Hashed, "k")
        assert mine is not None
        here.update(Hashed, "k", y=9)
        mine.x = 6
        here.transaction(lambda tx: tx.save(mine))()
        assert here.get(Hashed, "k") == Hashed(6, 9, id="k")
    finally:
        client7.close()
