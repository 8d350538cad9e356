"""Attack 29AI: expiry, layouts, schema changes and indexes over time. Each test holds the
code to a sentence of the docs and FAILS on main as of this attack.

The migration tests declare two versions of one model in one function (same module and
class name: the registry sees version 1, then a newer version 2), as docs/migrations.md
does, and build the new index before writing with version 2."""

from __future__ import annotations

import time
from typing import Any

import attrs
import redis

import redmodel


def _v1_hats(client: redis.Redis, prefix: str, **values: list[Any]) -> type:
    """Version 1 of a model without any index, holding the given stored fields."""
    names = list(values)
    n = len(next(iter(values.values())))

    @redmodel.model(prefix=prefix)
    @attrs.define
    class Old:
        name: str
        id: str = redmodel.key_field(generated=False)

    for i in range(n):
        client.hset(f"{prefix}:{i + 1}", mapping={"name": f"n{i + 1}",
                                                  **{k: values[k][i] for k in names}})
    return Old


def test_renamed_indexed_field_writes_drop_the_old_entry(redis_client: redis.Redis) -> None:
    """docs/migrations.md, Schema evolution: `field renamed, old_names=("qty",)`: "the
    value under an old name is read"; docs/queries.md, How entries stay right: "writes the
    object and the difference between its old and new entries"; and after `build_index`
    queries answer from the data. An update, a whole save, a delete or an expire of an
    object whose value is still under the old name must not leave the old value's entry."""
    _v1_hats(redis_client, "atk29ai_ren", qty=["1", "2", "3", "4"])

    @redmodel.model(prefix="atk29ai_ren")
    @attrs.define
    class Item:
        name: str
        quantity: int = redmodel.field(index=True, default=0, old_names=("qty",))
        id: str = redmodel.key_field(generated=False)

    store = redmodel.Store(redis_client)
    assert store.build_index(Item, "quantity") == 4
    assert store.verify(Item) == []
    assert store.find(Item, quantity=1).ids() == ["1"]
    store.update(Item, "1", quantity=50)                  # update by id
    store.save(Item("n2", 60, id="2"))                    # a whole save
    store.delete(Item, "3")                               # a delete
    store.expire(Item, "4", 0.05)                         # an expiry
    time.sleep(0.1)
    answers = {q: store.find(Item, quantity=q).ids() for q in (1, 2, 3, 4)}
    assert answers == {1: [], 2: [], 3: [], 4: []}, answers
    assert store.verify(Item) == []


def test_added_indexed_field_with_default_writes_drop_the_default_entry(
        redis_client: redis.Redis) -> None:
    """docs/migrations.md: "field added: its `default` / `factory` applies"; "A new index
    is `building` until it is built ... `store.build_index(Model, field)` ... builds it and
    marks it `ready`"; docs/queries.md: an update "writes the object and the difference
    between its old and new entries", and "expired objects never show up". After adding
    an indexed field with a default and building it, an update, a tracked save, a delete
    or an expiry of an old object must leave no entry of the default value behind."""
    _v1_hats(redis_client, "atk29ai_add", note=["", "", "", "", ""])

    @redmodel.model(prefix="atk29ai_add")
    @attrs.define
    class Item:
        name: str
        color: str = redmodel.field(index=True, default="red")
        id: str = redmodel.key_field(generated=False)

    store = redmodel.Store(redis_client)
    assert store.build_index(Item, "color") == 5
    assert store.verify(Item) == []
    assert sorted(store.find(Item, color="red").ids()) == ["1", "2", "3", "4", "5"]
    store.update(Item, "1", color="blue")                 # update by id
    loaded = store.get(Item, "2")
    assert loaded is not None
    loaded.color = "green"
    store.save(loaded)                                    # a tracked save
    store.delete(Item, "3")
    store.expire(Item, "4", 0.05)
    time.sleep(0.1)
    reds = store.find(Item, color="red")
    assert (reds.ids(), reds.count()) == (["5"], 1), (reds.ids(), reds.count())
    assert store.verify(Item) == []


def test_upgraded_indexed_field_writes_drop_the_upgraded_entry(
        redis_client: redis.Redis) -> None:
    """docs/migrations.md: "type changed, `upgrade=fn`: a value that does not decode
    strictly as the new type goes through `fn`" (reads, reindex and build_index index
    the upgraded value); docs/queries.md: a write "writes the object and the difference
    between its old and new entries". An update or a delete of an object still holding
    the old type's text must drop the entry of its upgraded value."""
    _v1_hats(redis_client, "atk29ai_upg", flag=["yes", "no"], qty=["41.9", "2.2"])

    @redmodel.model(prefix="atk29ai_upg")
    @attrs.define
    class Item:
        name: str
        flag: bool = redmodel.field(index=True, default=False,
                                    upgrade=lambda v: v in ("yes", "1"))
        qty: int = redmodel.field(index=True, default=0, upgrade=lambda v: round(float(v)))
        id: str = redmodel.key_field(generated=False)

    store = redmodel.Store(redis_client)
    assert store.reindex(Item, progress=False) == 2
    assert store.verify(Item) == []
    assert store.find(Item, flag=True).ids() == ["1"]
    assert store.find(Item, qty=42).ids() == ["1"]
    store.update(Item, "1", flag=False, qty=7)
    store.delete(Item, "2")
    answers = (store.find(Item, flag=True).ids(), store.find(Item, qty=42).ids(),
               store.find(Item, qty=2).ids(), store.find(Item, flag=False).ids())
    assert answers == ([], [], [], ["1"]), answers
    assert store.verify(Item) == []


@attrs.define
class _Address:
    city: str
    zip: int


def test_incr_of_a_leaf_of_a_renamed_nested_field_keeps_the_object_readable(
        store: redmodel.Store) -> None:
    """docs/migrations.md, Schema evolution: `old_names=`: "the value under an old name is
    read (the current name wins if both hold one)"; "an `incr`/`incr_fields` of such a
    field on the hash layout ... adds to the value read through an old name when the
    current one holds none, and moves it to the current name in the same script". After
    an `incr` of `addr.zip` on an object stored under `address:*`, its `addr.city` is still
    only under the old name and must still be read; the object must not become a
    DecodeError."""
    store.client.hset("atk29ai_nest:1", mapping={"address:city": "NY", "address:zip": "10016"})

    @redmodel.model(prefix="atk29ai_nest")
    @attrs.define
    class Shop:
        addr: _Address = redmodel.field(old_names=("address",))
        id: str = redmodel.key_field(generated=False)

    assert store.get(Shop, "1") == Shop(_Address("NY", 10016), id="1")
    assert store.incr(Shop, "1", "addr.zip") == 10017
    assert store.get(Shop, "1") == Shop(_Address("NY", 10017), id="1")
