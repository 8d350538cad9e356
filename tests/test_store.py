"""The Store against a real throwaway server: the hat shop from the tutorial."""

from __future__ import annotations

import datetime as dt
import time

import attrs
import pytest
import redis

import redmodel
from tests.conftest import dbsize
from tests.models import Address, AllOptional, Everything, Hat, Restaurant, Session, Street


@pytest.fixture
def store(any_store: redmodel.Store) -> redmodel.Store:
    """Every test here runs through the sync and asyncio stores, on one server and on a
    three-primary cluster."""
    return any_store


def hats() -> list[Hat]:
    return [
        Hat(color="black", price=49.99, style="fitted", quantity=1000),
        Hat(color="maroon", price=59.99, style="hipster", quantity=500),
        Hat(color="green", price=99.99, style="baseball", quantity=200),
    ]


def test_save_stores_plain_redis_strings(store: redmodel.Store) -> None:
    hat = Hat(color="green", price=99.99, style="baseball", quantity=200, id="56854717")
    assert store.save(hat) == "hat:56854717"
    assert store.client.hgetall("hat:56854717") == {
        b"color": b"green",
        b"price": b"99.99",
        b"style": b"baseball",
        b"quantity": b"200",
        b"npurchased": b"0",
    }
    assert store.client.hincrby("hat:56854717", "quantity", -1) == 199
    assert store.get(Hat, "56854717") == attrs.evolve(hat, quantity=199)


def test_get_missing_returns_none_and_get_or_raise_raises(store: redmodel.Store) -> None:
    assert store.get(Hat, "nope") is None
    with pytest.raises(redmodel.NotFoundError, match="hat:nope"):
        store.get_or_raise(Hat, "nope")


def test_save_many_and_get_many_in_chunks(store: redmodel.Store) -> None:
    store.chunk_size = 7
    many = [Hat(color=f"c{i}", price=float(i), style="s", quantity=i) for i in range(50)]
    assert store.save_many(many) == 50
    ids = [h.id for h in many] + ["missing"]
    got = store.get_many(Hat, ids)
    assert got[:-1] == many
    assert got[-1] is None
    assert store.count(Hat) == 50
    assert sorted(h.id for h in store.scan(Hat)) == sorted(h.id for h in many)


def test_save_many_validates_everything_before_writing(
    store: redmodel.Store) -> None:
    good = hats()
    bad = Hat(color="red", price="cheap", style="s")  # type: ignore[arg-type]
    with pytest.raises(redmodel.ValidationError, match="price"):
        store.save_many([*good, bad])
    assert dbsize(store.client) == 0


def test_exists_delete_and_delete_many(store: redmodel.Store) -> None:
    a, b, c = hats()
    store.save_many([a, b, c])
    assert store.exists(Hat, a.id)
    assert store.delete(Hat, a.id) is True
    assert store.delete(Hat, a.id) is False
    assert not store.exists(Hat, a.id)
    assert store.delete_many(Hat, [b.id, c.id, "nope"]) == 2
    assert store.count(Hat) == 0


def test_scan_never_matches_other_models_or_tricky_ids(store: redmodel.Store) -> None:
    @redmodel.model(prefix="hat_x")
    @attrs.define
    class Other:
        id: str

    tricky = ["*", "a:b", "[x]", "?", "\\", "{t}", "%3A", "hat:1", "ü"]
    store.save_many([Hat("c", 1.0, "s", id=i) for i in tricky])
    store.save(Other(id="1"))
    store.client.hset("hat:1:extra", "x", "1")  # another key family under the same prefix
    store.client.set("hat:2", "not a hash")
    found = sorted(h.id for h in store.scan(Hat))
    assert found == sorted(tricky)
    assert store.count(Hat) == len(tricky)
    for i in tricky:
        assert store.get(Hat, i) == Hat("c", 1.0, "s", id=i)


def test_model_ttl_and_ttl_per_save(store: redmodel.Store) -> None:
    s = Session(user="dan")
    # the expiry counts down from the save: at least what is left after the time measured
    # from before the save to after the read (a fixed margin fails on a slow machine)
    started = time.monotonic()
    store.save(s)
    left = store.ttl(Session, s.id) or 0
    assert 60 - (time.monotonic() - started) - 0.002 <= left <= 60
    started = time.monotonic()
    store.save(s, ttl=dt.timedelta(seconds=5))
    left = store.ttl(Session, s.id) or 0
    assert 5 - (time.monotonic() - started) - 0.002 <= left <= 5
    hat = hats()[0]
    store.save(hat)
    assert store.ttl(Hat, hat.id) is None
    assert store.pttl(Hat, hat.id) is None
    with pytest.raises(redmodel.NotFoundError):
        store.ttl(Hat, "missing")


def test_expire_persist_and_actual_expiry(store: redmodel.Store) -> None:
    hat = hats()[0]
    store.save(hat, ttl=1.0)  # (0.2 s could run out before the persist on a slow machine)
    assert store.persist(Hat, hat.id) is True
    assert store.ttl(Hat, hat.id) is None
    assert store.expire(Hat, hat.id, 0.1) is True
    deadline = time.monotonic() + 5
    while store.exists(Hat, hat.id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get(Hat, hat.id) is None
    assert store.expire(Hat, hat.id, 10) is False


def test_saving_without_ttl_keeps_an_existing_expiry(store: redmodel.Store) -> None:
    hat = hats()[0]
    store.save(hat, ttl=100)
    store.save(hat, ttl=None)
    assert store.ttl(Hat, hat.id) is not None


def test_bad_ttl_is_rejected_before_writing(store: redmodel.Store) -> None:
    with pytest.raises(redmodel.ValidationError, match="ttl"):
        store.save(hats()[0], ttl=-1)
    assert store.count(Hat) == 0


def test_update_changes_only_named_fields_without_read(store: redmodel.Store) -> None:
    hat = hats()[0]
    store.save(hat)
    assert store.update(Hat, hat.id, color="white", quantity=3) is True
    assert store.get(Hat, hat.id) == attrs.evolve(hat, color="white", quantity=3)


def test_update_of_missing_object_writes_nothing(store: redmodel.Store) -> None:
    assert store.update(Hat, "ghost", color="white") is False
    assert store.client.exists("hat:ghost") == 0


def test_update_validates_before_writing(store: redmodel.Store) -> None:
    hat = hats()[0]
    store.save(hat)
    with pytest.raises(redmodel.ValidationError, match="quantity"):
        store.update(Hat, hat.id, color="white", quantity="many")
    with pytest.raises(redmodel.ValidationError, match="unknown field"):
        store.update(Hat, hat.id, colour="white")
    with pytest.raises(redmodel.ValidationError, match="id"):
        store.update(Hat, hat.id, id="other")
    assert store.get(Hat, hat.id) == hat


def test_update_to_none_removes_the_field(store: redmodel.Store) -> None:
    obj = Everything(sku="u1", maybe_text="x", maybe_number=3)
    store.save(obj)
    store.update(Everything, "u1", maybe_text=None)
    assert store.client.hexists("everything:u1", "maybe_text") == 0
    assert store.get(Everything, "u1") == attrs.evolve(obj, maybe_text=None)


def test_incr_returns_new_value_and_refuses_non_numeric(store: redmodel.Store) -> None:
    hat = hats()[0]
    store.save(hat)
    assert store.incr(Hat, hat.id, "quantity", -1) == 999
    assert store.incr(Hat, hat.id, "npurchased") == 1
    assert store.incr(Hat, hat.id, "price", 0.01) == pytest.approx(50.0)
    with pytest.raises(redmodel.ValidationError, match="only int and float"):
        store.incr(Hat, hat.id, "color")
    with pytest.raises(redmodel.ValidationError, match="int field is incremented by an int"):
        store.incr(Hat, hat.id, "quantity", 0.5)
    with pytest.raises(redmodel.NotFoundError):
        store.incr(Hat, "ghost", "quantity")
    assert store.client.exists("hat:ghost") == 0
    got = store.get(Hat, hat.id)
    assert got is not None
    assert (got.quantity, got.npurchased) == (999, 1)


def test_incr_of_nested_field(store: redmodel.Store) -> None:
    r = Restaurant("Ravagh", "Persian", Address(Street("11 E 30th St"), "New York", "NY", 10016),
                   id=484272)
    store.save(r)
    assert store.incr(Restaurant, 484272, "address.zip", 1) == 10017


def test_nested_attrs_are_flattened_into_hash_fields(
    store: redmodel.Store) -> None:
    r = Restaurant(
        "Ravagh", "Persian", Address(Street("11 E 30th St", "APT 1"), "New York", "NY", 10016),
        id=484272,
    )
    store.save(r)
    assert store.client.hgetall("rest:484272") == {
        b"name": b"Ravagh",
        b"type": b"Persian",
        b"address:street:line1": b"11 E 30th St",
        b"address:street:line2": b"APT 1",
        b"address:city": b"New York",
        b"address:state": b"NY",
        b"address:zip": b"10016",
    }
    assert store.get(Restaurant, 484272) == r


def test_resaving_with_none_removes_old_values(store: redmodel.Store) -> None:
    obj = Everything(sku="n", maybe_text="x", maybe_number=1)
    store.save(obj)
    cleared = attrs.evolve(obj, maybe_text=None, maybe_number=None)
    store.save(cleared)
    assert store.get(Everything, "n") == cleared


def test_an_object_whose_every_field_is_none_still_exists(store: redmodel.Store) -> None:
    empty = AllOptional()
    store.save(empty)
    assert store.get(AllOptional, empty.id) == empty
    store.update(AllOptional, empty.id, a="x")
    assert store.get(AllOptional, empty.id) == attrs.evolve(empty, a="x")
    store.update(AllOptional, empty.id, a=None)
    assert store.get(AllOptional, empty.id) == empty


def test_wrong_value_types_are_rejected_before_any_write(store: redmodel.Store) -> None:
    cases = [
        Hat(color=1, price=1.0, style="s"),  # type: ignore[arg-type]
        Hat(color="c", price=True, style="s"),
        Hat(color="c", price=1.0, style="s", quantity=1.5),  # type: ignore[arg-type]
        Everything(sku="x", tags=["a", 1]),  # type: ignore[list-item]
        Everything(sku="x", day=dt.datetime(2020, 1, 1)),
        Everything(sku="x", address=None),  # type: ignore[arg-type]
        Hat(color="c", price=1.0, style="s", id=""),
    ]
    for obj in cases:
        with pytest.raises(redmodel.ValidationError):
            store.save(obj)
    with pytest.raises(TypeError, match="not a redmodel model"):
        store.save("a hat")
    assert dbsize(store.client) == 0


def test_saving_or_reading_a_class_that_is_not_a_model_names_the_class(
    store: redmodel.Store,
) -> None:
    @attrs.define
    class Plain:  # an attrs class without @redmodel.model
        id: str = "1"

    for call in (lambda: store.save(Plain()), lambda: store.save_many([Plain()]),
                 lambda: store.get(Plain, "1"), lambda: store.delete(Plain, "1")):
        with pytest.raises(redmodel.ModelDefinitionError) as info:
            call()
        assert isinstance(info.value, redmodel.RedmodelError)
        assert isinstance(info.value, TypeError)  # as before: code catching it still does
        assert "test_store.test_saving_or_reading_a_class_that_is_not_a_model_names_the_class." \
               "<locals>.Plain is not a redmodel model" in str(info.value)
    assert dbsize(store.client) == 0


def test_stored_data_that_does_not_fit_names_key_and_field(
    store: redmodel.Store) -> None:
    hat = hats()[0]
    key = store.save(hat)
    store.client.hset(key, "quantity", "abc")
    with pytest.raises(redmodel.DecodeError, match=r"key 'hat:.*', field 'quantity'") as info:
        store.get(Hat, hat.id)
    assert "abc" not in str(info.value)
    store.client.hdel(key, "color")
    with pytest.raises(redmodel.DecodeError, match=r"field is missing.*field 'color'"):
        store.get(Hat, hat.id)


def test_missing_field_with_a_default_uses_the_default(
    store: redmodel.Store) -> None:
    hat = hats()[0]
    key = store.save(hat)
    store.client.hdel(key, "npurchased")
    got = store.get(Hat, hat.id)
    assert got is not None
    assert got.npurchased == 0


def test_unknown_stored_fields_are_ignored(
    store: redmodel.Store) -> None:
    hat = hats()[0]
    key = store.save(hat)
    store.client.hset(key, "legacy", "x")
    assert store.get(Hat, hat.id) == hat


def test_corrupt_encoded_field_names_codec_and_key(
    store: redmodel.Store) -> None:
    obj = Everything(sku="c", tags=["a"])
    key = store.save(obj)
    store.client.hset(key, "tags", b"\xa7\x04json[1")
    with pytest.raises(redmodel.DecodeError, match=r"codec 'json'.*|field 'tags'"):
        store.get(Everything, "c")


def test_stored_name_option(store: redmodel.Store) -> None:
    @redmodel.model(prefix="item")
    @attrs.define
    class Item:
        qty: int = redmodel.field(name="quantity", default=0)
        id: str = redmodel.key_field()

    item = Item(qty=4)
    store.save(item)
    assert store.client.hget(f"item:{item.id}", "quantity") == b"4"
    assert store.incr(Item, item.id, "qty", 2) == 6


def test_from_url_uses_redis_url_and_db(redis_server: object, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    monkeypatch.setenv("REDIS_URL", url)
    with redmodel.Store.from_url(db=3) as store:
        hat = hats()[0]
        store.save(hat)
        assert store.client.connection_pool.connection_kwargs["db"] == 3
        assert store.get(Hat, hat.id) == hat
        store.client.flushdb()


def test_decoding_clients_are_refused(redis_server: object) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)  # type: ignore[attr-defined]
    with pytest.raises(redmodel.ValidationError, match="decode_responses"):
        redmodel.Store(client)
    with pytest.raises(redmodel.ValidationError, match="decode_responses"):
        redmodel.AsyncStore(redis.asyncio.Redis.from_url(
            redis_server.url, decode_responses=True))  # type: ignore[attr-defined]
    client.close()
