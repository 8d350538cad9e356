"""Attack 30AR (queries, pages, cursors, index repair): one failing test per finding.

Each test holds the code to a sentence of docs/queries.md (quoted in its docstring);
notes in /work/notes/s30/ATK-AR-FINDINGS.md."""

from __future__ import annotations

import attrs
import pytest

import redmodel
from redmodel import Q, lt


@redmodel.model(prefix="ar30")
@attrs.define
class Thing:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=1.0)
    rank: int | None = redmodel.field(index="range", default=None)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


# ---- F1 -------------------------------------------------------------------------------


@pytest.mark.parametrize("plant", ["string", "list", "set", "zset"])
def test_f1_verify_and_reindex_blind_to_a_non_hash_at_an_indexed_objects_key(
        store: redmodel.Store, plant: str) -> None:
    """docs/queries.md, "Checking and repairing an index": "`store.verify(Model)` lists, in
    words, every disagreement between the stored objects and their index, both ways (`[]`
    when everything agrees)"; pass 2 finds "ids whose object does not exist"; and "What to
    run when": after "writing objects with raw commands | `store.reindex(Model)`: the
    entries follow the objects as they are now".

    A raw command replaces an indexed object's hash with a key of another type. There is
    no object 1 any more (get raises WRONGTYPE, store.count() skips it), yet verify says
    `[]`, and reindex keeps every entry of it: find(color="red") still lists it, its
    count counts it, and its unique value stays held by nothing that exists."""
    c = store.client
    store.save_many([Thing("red", 2.0, sku="A", id="1"), Thing("blue", 3.0, id="2")])
    c.delete("ar30:1")
    {"string": lambda: c.set("ar30:1", "x"), "list": lambda: c.rpush("ar30:1", "x"),
     "set": lambda: c.sadd("ar30:1", "x"), "zset": lambda: c.zadd("ar30:1", {"x": 1})}[plant]()
    assert store.count(Thing) == 1                      # the data: one object, "2"
    assert store.verify(Thing) != []                    # FAILS: [] (index lists "1")
    store.reindex(Thing, progress=False)
    assert store.find(Thing, color="red").ids() == []   # the entries follow the objects
    assert store.find(Thing).count() == 1
    assert store.verify(Thing) == []


# ---- F2 -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["none", "color", "range", "not", "or"])
def test_f2_count_and_exists_of_an_order_by_query_count_objects_it_leaves_out(
        store: redmodel.Store, where: str) -> None:
    """docs/queries.md, "Queries": "`order_by(field)` leaves out objects that have no value
    for the field (`None` is not indexed, so they have no score to sort by)", and "`count()`
    and `exists()` describe the results `ids()` gives: the matches after the cursor, less
    the offset, at most the limit"; the table: "`.count()` / `.exists()` | int / bool | how
    many results `.ids()` would give / whether it gives any".

    `find(Thing).order_by("rank")` gives the one object that has a rank, but count() says 3
    and exists() is True where ids() is [] and first() is None."""
    store.save_many([Thing("red", id="a"), Thing("red", rank=1, id="b"),
                     Thing("green", id="c")])
    base = {"none": store.find(Thing), "color": store.find(Thing, color="red"),
            "range": store.find(Thing, price=lt(5.0)),
            "not": store.find(Thing, ~Q(color="blue")),
            "or": store.find(Thing, Q(color="red") | Q(color="green"))}[where]
    for order in ("rank", "-rank"):
        q = base.order_by(order)
        assert q.ids() == ["b"]
        assert q.count() == len(q.ids())                 # FAILS: 3 (or 2) against 1
        assert q.offset(1).count() == 0
        assert q.limit(5).count() == 1
    empty = store.find(Thing, color="green").order_by("rank")
    assert empty.ids() == [] and empty.first() is None
    assert empty.count() == 0 and empty.exists() is False
