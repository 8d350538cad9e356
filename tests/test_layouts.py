"""The same store API works for every layout (hash, flat, blob)."""

from __future__ import annotations

import re
import time

import attrs
import pytest
from hypothesis import given, settings

import redmodel
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.conftest import dbsize
from tests.models import LAYOUTS, Address, Everything, Hat, Restaurant, Street, variant
from tests.strategies import ids, instances


def _models(base: type, short: str | None, tagged: bool) -> dict[str, type]:
    return {layout: variant(base, layout, hash_tag=tagged,
                            prefix=f"{short}{layout}" if short else None)
            for layout in LAYOUTS}


# On a cluster every key of one object must share a slot: there the models are hash-tagged
# (rflat:{484272}:name); on one server they keep the tutorial's plain keys.
EVERYTHING = {tagged: _models(Everything, None, tagged) for tagged in (False, True)}
RESTAURANT = {tagged: _models(Restaurant, "r", tagged) for tagged in (False, True)}
HAT = {tagged: _models(Hat, "h", tagged) for tagged in (False, True)}


@pytest.fixture
def store(any_store: redmodel.Store) -> redmodel.Store:
    """Sync and asyncio stores, on one server and on a three-primary cluster."""
    return any_store


def key_of(cls: type, id_value: object) -> str:
    return spec_of(cls).key_for(id_value)


def ravagh(cls: type) -> Restaurant:
    return cls(  # type: ignore[no-any-return]
        "Ravagh", "Persian", Address(Street("11 E 30th St", "APT 1"), "New York", "NY", 10016),
        id=484272,
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_save_get_delete_every_layout(store: redmodel.Store, layout: str) -> None:
    cls = RESTAURANT[store.cluster][layout]
    obj = ravagh(cls)
    store.save(obj)
    assert store.exists(cls, 484272)
    assert store.get(cls, 484272) == obj
    assert store.get(cls, 1) is None
    assert store.delete(cls, 484272) is True
    assert dbsize(store.client) == 0, "every key of the object is gone"
    assert store.get(cls, 484272) is None


def test_flat_layout_writes_one_key_per_leaf(store: redmodel.Store) -> None:
    key = store.save(ravagh(RESTAURANT[store.cluster]["flat"]))
    assert key == ("rflat:{484272}" if store.cluster else "rflat:484272")
    client = store.client
    leaves = {k.decode(): v for k in client.scan_iter(f"{key}:*")
              if (v := client.get(k)) is not None}
    assert leaves == {
        f"{key}:name": b"Ravagh",
        f"{key}:type": b"Persian",
        f"{key}:address:street:line1": b"11 E 30th St",
        f"{key}:address:street:line2": b"APT 1",
        f"{key}:address:city": b"New York",
        f"{key}:address:state": b"NY",
        f"{key}:address:zip": b"10016",
    }
    assert client.incrby(f"{key}:address:zip", 1) == 10017
    assert store.get(RESTAURANT[store.cluster]["flat"], 484272).address.zip == 10017  # type: ignore[union-attr]


def test_flat_resave_removes_leaves_that_no_longer_exist(store: redmodel.Store) -> None:
    cls = EVERYTHING[store.cluster]["flat"]
    obj = cls(sku="s", tags=["a", "b", "c"], scores={"x": 1.0, "y": 2.0}, maybe_text="t")
    store.save(obj)
    before = dbsize(store.client)
    smaller = attrs.evolve(obj, tags=["a"], scores={}, maybe_text=None)
    store.save(smaller)
    assert dbsize(store.client) == before - 5
    assert store.get(cls, "s") == smaller


def test_flat_ids_and_dict_keys_with_delimiters_never_leak(store: redmodel.Store) -> None:
    cls = EVERYTHING[store.cluster]["flat"]
    a = cls(sku="a", scores={"b:tags:0": 1.0})
    b = cls(sku="a:tags", tags=["x"])
    store.save_many([a, b])
    assert store.get(cls, "a") == a
    assert store.get(cls, "a:tags") == b
    assert sorted(o.sku for o in store.scan(cls)) == ["a", "a:tags"]
    store.delete(cls, "a")
    assert store.get(cls, "a:tags") == b


@pytest.mark.parametrize("layout", LAYOUTS)
def test_many_scan_count_every_layout(store: redmodel.Store, layout: str) -> None:
    cls = HAT[store.cluster][layout]
    hats = [cls(color=f"c{i}", price=float(i), style="s", id=f"id:{i}*") for i in range(30)]
    assert store.save_many(hats) == 30
    assert store.get_many(cls, [h.id for h in hats] + ["none"]) == [*hats, None]
    assert store.count(cls) == 30
    assert sorted(h.id for h in store.scan(cls, count=7)) == sorted(h.id for h in hats)
    assert store.delete_many(cls, [h.id for h in hats[:10]]) == 10
    assert store.count(cls) == 20


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ttl_applies_to_every_key_of_an_object(store: redmodel.Store, layout: str) -> None:
    cls = RESTAURANT[store.cluster][layout]
    store.save(ravagh(cls), ttl=50)
    def keys() -> list[bytes]:  # the object's: not the model registry's record
        return [k for k in store.client.scan_iter("*") if not k.endswith(b":%schema")]

    assert keys() and all(0 < store.client.ttl(k) <= 50 for k in keys())
    store.save(ravagh(cls), ttl=None)  # keeps the expiry it had
    assert all(0 < store.client.ttl(k) <= 50 for k in keys())
    assert store.persist(cls, 484272) is True
    assert all(store.client.ttl(k) == -1 for k in keys())
    assert store.expire(cls, 484272, 0.1) is True
    deadline = time.monotonic() + 5
    while dbsize(store.client) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dbsize(store.client) == 0
    assert store.get(cls, 484272) is None


@pytest.mark.parametrize("layout", ["flat", "blob"])
def test_partial_update_needs_the_hash_layout(store: redmodel.Store, layout: str) -> None:
    cls = HAT[store.cluster][layout]
    hat = cls(color="c", price=1.0, style="s")
    store.save(hat)
    with pytest.raises(redmodel.ValidationError, match="hash layout"):
        store.update(cls, hat.id, color="x")
    assert store.get(cls, hat.id) == hat


def test_flat_incr_changes_the_leaf_and_refuses_missing(store: redmodel.Store) -> None:
    cls = HAT[store.cluster]["flat"]
    hat = cls(color="c", price=1.0, style="s", quantity=3)
    store.save(hat)
    assert store.incr(cls, hat.id, "quantity", -1) == 2
    assert store.incr(cls, hat.id, "price", 0.5) == 1.5
    with pytest.raises(redmodel.NotFoundError):
        store.incr(cls, "ghost", "quantity")
    assert store.client.exists("hflat:ghost:quantity") == 0
    with pytest.raises(redmodel.ValidationError):
        store.incr(cls, hat.id, "color")


def test_blob_refuses_increments(store: redmodel.Store) -> None:
    cls = HAT[store.cluster]["blob"]
    hat = cls(color="c", price=1.0, style="s")
    store.save(hat)
    with pytest.raises(redmodel.ValidationError, match="hash or flat"):
        store.incr(cls, hat.id, "quantity")


@pytest.mark.parametrize("layout", ["flat", "blob"])
def test_corrupt_stored_data_names_the_key(store: redmodel.Store, layout: str) -> None:
    cls = RESTAURANT[store.cluster][layout]
    key = store.save(ravagh(cls))
    if layout == "flat":
        store.client.set(f"{key}:address:zip", "not a zip")
        match = rf"address\.zip.*key '{re.escape(key)}'|key '{re.escape(key)}'.*zip"
    else:
        store.client.set(key, b"\xa7\x04json{broken")
        match = rf"key '{re.escape(key)}'.*codec 'json'"
    with pytest.raises(redmodel.DecodeError, match=match) as info:
        store.get(cls, 484272)
    assert "not a zip" not in str(info.value)


def test_flat_missing_leaf_is_a_decode_error(store: redmodel.Store) -> None:
    cls = RESTAURANT[store.cluster]["flat"]
    key = store.save(ravagh(cls))
    store.client.delete(f"{key}:name")
    with pytest.raises(redmodel.DecodeError, match=re.escape(key)):
        store.get(cls, 484272)


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=scaled(150))
@given(data=instances(Everything, sku=ids))
def test_any_object_round_trips_in_every_layout(
    store: redmodel.Store, layout: str, data: Everything
) -> None:
    cls = EVERYTHING[store.cluster][layout]
    obj = cls(**attrs.asdict(data, recurse=False))
    store.save(obj)
    assert store.get(cls, obj.sku) == obj


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_custom_delimiter_is_used_and_escaped(store: redmodel.Store, layout: str) -> None:
    @redmodel.model(prefix=f"slash_{layout}", layout=layout, delimiter="/",
                    hash_tag=store.cluster)
    @attrs.define
    class Doc:
        id: str = redmodel.key_field(generated=False)
        address: Address = attrs.Factory(lambda: Address(Street("l"), "c", "s", 1))
        tags: list[str] = attrs.Factory(list)

    doc = Doc(Address(Street("a/b"), "c/d", "s", 1), ["x/y", "z:w"], id="2024/05:01")
    key = store.save(doc)
    part = "{2024%2F05:01}" if store.cluster else "2024%2F05:01"
    assert key == f"slash_{layout}/{part}"
    assert store.get(Doc, "2024/05:01") == doc
    assert [d.id for d in store.scan(Doc)] == ["2024/05:01"]
    if layout == "flat":
        assert store.client.get(f"{key}/address/street/line1") == b"a/b"
        assert store.client.get(f"{key}/tags/1") == b"z:w"
    if layout == "hash":
        assert store.client.hget(key, "address/street/line1") == b"a/b"
