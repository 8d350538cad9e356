"""Fewer server commands per indexed write (issue 17, items 2 and 4's cost; session 26).

Three rules of the index write scripts, each keeping every guarantee:
- ``index_write_many.lua`` reads the records and expiry scores of a call's ids once per call
  (one ``HMGET`` of the record hash, one ``ZMSCORE`` of the expiry set) instead of an
  ``HGET`` and a ``ZREM`` per object;
- an object that is not stored is added to its all-ids page without asking the page first
  (``ZSCORE``): the page's ``ZCARD`` is its type check, and the id is counted only when its
  ``ZADD`` added it (an id still listed after a raw ``DEL`` is not counted twice);
- a save that writes no field pair and removes none knows whether the object exists (its
  type was read before the first write): no ``EXISTS``;
- ``index_write.lua`` (a save or update) makes one entry write its first write, which is
  then that key's type check (SADD, SREM, ZADD and ZREM refuse a wrong-typed key before
  writing anything): one ``TYPE`` fewer.

The counts are asserted exactly (INFO commandstats, counts, never times); the properties
check what the rules could break: a wrong-typed key of every kind a save touches, planted
beforehand, refuses the save whole and names the key; and any mix of saves, save_many with
repeated ids, raw ``DEL``s (an id left listed) and planted expiry scores leaves the all-ids
pages, their count and the expiry set exact.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._specs import entry_key
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.index_helpers import all_ids, dump, flush, plant


@redmodel.model(prefix="few")
@attrs.define
class Few:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    note: str = ""
    id: str = redmodel.key_field()


SPEC = spec_of(Few)
ROOT = "few:%idx:"


def key(i: str) -> str:
    return SPEC.key_for(i)


def eid(i: str) -> bytes:
    """The id as the index keys hold it (escaped)."""
    return key(i)[len("few:"):].encode()
IDS = st.sampled_from(["a", "b:1", "{c}", "d*", "e%", "f\\", "7"])


def calls(client: Any) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in client.info("commandstats").items()}


def counted(client: Any, fn: Any) -> dict[str, int]:
    before = calls(client)
    fn()
    after = calls(client)
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def hats(tag: str, n: int) -> list[Few]:
    return [Few(color=f"c{i % 3}", price=float(i), id=f"{tag}{i:03}") for i in range(n)]


def test_the_scripts_send_no_per_object_record_read_expiry_removal_page_check_or_exists(
        store: redmodel.Store) -> None:
    client = store.client
    store.save(Few(color="x", price=0.0, id="warm"))  # the registry, the scripts loaded
    n = 30
    many = counted(client, lambda: store.save_many(hats("m", n)))
    # once per call, not per object (before: an HGET, a ZREM and a page ZSCORE each)
    assert (many.get("hget", 0), many.get("zrem", 0), many.get("zscore", 0)) == (0, 0, 0)
    assert (many.get("hmget"), many.get("zmscore")) == (1, 1)
    again = counted(client, lambda: store.save_many(hats("m", n)))
    assert (again.get("hget", 0), again.get("zrem", 0), again.get("zmscore")) == (0, 0, 1)
    one = counted(client, lambda: store.save(Few(color="y", price=1.0, id="new")))
    assert one.get("zscore") == 1  # the expiry set's; none of the page (ZCARD instead)
    # the object's, the all-ids state's and one of its two entry keys': the other is
    # checked by its write, the script's first
    assert one.get("type") == 3
    loaded = store.get(Few, "new")
    assert loaded is not None
    resave = counted(client, lambda: store.save(loaded))  # tracked, nothing dirty
    assert resave.get("exists", 0) == 0 and resave.get("hset", 0) == 0
    assert all_ids(client, ROOT) == sorted([b"new", b"warm"] + [f"m{i:03}".encode()
                                                                  for i in range(n)])


def color_key(color: str) -> str:
    text = SPEC.indexes.fields["color"].text(color)  # type: ignore[union-attr]
    return str(entry_key(ROOT, ":", f"e\x1fcolor\x1f{text}", False))


# every key a save of a new object (or of one stored) touches, with the kinds planted there
def _keys(o: Few) -> list[tuple[str, list[str]]]:
    return [
        (key(o.id), ["string", "set", "list", "zset"]),
        (ROOT + "rec", ["string", "set", "list", "zset"]),
        (ROOT + "all", ["string", "set", "list", "hash"]),
        (ROOT + "exp", ["string", "set", "list", "hash"]),
        (ROOT + "ids", ["string", "set", "list", "hash"]),
        (ROOT + "ids:", ["string", "set", "list", "hash"]),  # the first page
        (ROOT + "idn", ["set", "list", "hash", "zset", "not a count"]),
        (color_key(o.color),
         ["string", "list", "hash", "zset"]),
        (ROOT + "rng:price", ["string", "set", "list", "hash"]),
    ]


@settings(max_examples=scaled(50, floor=10), deadline=None)
@given(before=st.lists(IDS, max_size=3, unique=True), ident=IDS,
       color=st.sampled_from(["red", "x:y", "{t}"]), pick=st.integers(0, 1000),
       how=st.sampled_from(["save", "save_many", "update"]))
def test_a_planted_wrong_typed_key_of_each_kind_refuses_the_save_whole_and_is_named(
        store: redmodel.Store, before: list[str], ident: str, color: str, pick: int,
        how: str) -> None:
    client = store.client
    flush(client)
    for i in before:
        store.save(Few(color="red", price=1.5, id=i))
    o = Few(color=color, price=2.5, note="n", id=ident)
    # (a stored object's save reads no count: its id is listed already; nor an entry key
    # it does not change)
    skip = {ROOT + "idn", color_key("red")}
    choices = [(k, kind) for k, kinds in _keys(o) for kind in kinds
               if ident not in before or k not in skip]
    planted, kind = choices[pick % len(choices)]
    if kind == "not a count":
        client.set(planted, "01")
    else:
        plant(client, planted, kind)
    was = dump(client)
    with pytest.raises(redmodel.ServerError, match="WRONGTYPE") as err:
        if how == "save_many":
            store.save_many([o])
        elif how == "save" or ident not in before:
            store.save(o)
        else:  # by id, not read: its range entry removed by id, whatever its value
            store.update(Few, ident, color=color, price=2.5, note="n")
    assert planted in str(err.value)
    assert dump(client) == was  # nothing written


STEP = st.one_of(
    st.tuples(st.just("save"), IDS, st.sampled_from(["red", "blue"])),
    st.tuples(st.just("many"), st.lists(st.tuples(IDS, st.sampled_from(["red", "blue"])),
                                        max_size=5)),  # repeated ids: in order
    st.tuples(st.just("del"), IDS),  # a raw DEL: the id stays listed, its entries stay
    st.tuples(st.just("exp"), IDS),  # a planted expiry score (an expiry not swept yet)
    st.tuples(st.just("delete_many"), st.lists(IDS, max_size=3)),
    st.tuples(st.just("update"), IDS, st.sampled_from([3.0, -1.5])),  # by id, not read
)


@settings(max_examples=scaled(40, floor=10), deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_the_all_ids_count_and_expiry_set_stay_exact(store: redmodel.Store,
                                                     steps: list[tuple[Any, ...]]) -> None:
    client = store.client
    flush(client)
    listed: set[str] = set()
    price: dict[str, float] = {}  # what the range index holds for a stored object
    for step in steps:
        if step[0] == "save":
            store.save(Few(color=step[2], price=1.0, id=step[1]))
            listed.add(step[1])
            price[step[1]] = 1.0
        elif step[0] == "many":
            store.save_many([Few(color=c, price=2.0 + n, id=i)
                             for n, (i, c) in enumerate(step[1])])
            listed.update(i for i, _ in step[1])
            price.update((i, 2.0 + n) for n, (i, _) in enumerate(step[1]))
        elif step[0] == "update":
            if store.update(Few, step[1], price=step[2]):
                price[step[1]] = step[2]
        elif step[0] == "del":
            client.delete(key(step[1]))
        elif step[0] == "exp":
            client.zadd(ROOT + "exp", {eid(step[1]): 1})
        else:
            store.delete_many(Few, step[1])
            listed.difference_update(step[1])
        # the pages hold each listed id once and the count says how many (all_ids checks
        # it); a save (no TTL) leaves its id out of the expiry set
        assert all_ids(client, ROOT) == sorted(eid(i) for i in listed)
        if step[0] in ("save", "many"):
            saved = [step[1]] if step[0] == "save" else [i for i, _ in step[1]]
            assert not any(client.zscore(ROOT + "exp", eid(i)) is not None for i in saved)
        for i in listed:
            if client.exists(key(i)):
                assert client.zscore(ROOT + "rng:price", eid(i)) == price[i]
