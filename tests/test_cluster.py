"""What only a cluster can show: slots, hash tags, cross-slot refusals, SCAN on every
primary, transactions within one slot. (The whole store, layout and encryption suites also
run on the cluster, parametrized, through the ``any_store`` fixture.)"""

from __future__ import annotations

import attrs
import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

import redmodel
from tests.models import Address, Restaurant, Street


@redmodel.model(prefix="order", hash_tag=lambda id: id.split("-")[0])
@attrs.define
class Order:
    total: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="rest_untagged", layout="flat")
@attrs.define
class Untagged:
    name: str
    address: Address
    id: int = redmodel.field(key=True)


@pytest.fixture
def store(redis_cluster_client: RedisCluster) -> redmodel.Store:
    return redmodel.Store(redis_cluster_client)


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_objects_spread_over_every_primary_and_scan_finds_them_all(store: redmodel.Store
                                                                   ) -> None:
    orders = [Order(total=i, id=f"t{i}-1") for i in range(200)]
    store.save_many(orders)
    owners = {store.client.get_node_from_key(spec_key).name
              for spec_key in store.scan_keys(Order)}
    assert len(owners) == 3, "keys live on all three primaries"
    assert sorted(o.id for o in store.scan(Order)) == sorted(o.id for o in orders)
    assert store.count(Order) == 200
    assert store.get_many(Order, [o.id for o in orders]) == orders


def test_a_hash_tag_function_groups_objects_into_one_slot(store: redmodel.Store) -> None:
    keys = [store.save(Order(total=n, id=f"acme-{n}")) for n in range(5)]
    assert keys[0] == "order:{acme}:acme-0"
    assert len({slot(k) for k in keys}) == 1


def test_flat_without_hash_tag_fails_with_a_clear_error(store: redmodel.Store) -> None:
    r = Untagged("Ravagh", Address(Street("11 E 30th St"), "New York", "NY", 10016), id=1)
    with pytest.raises(redmodel.CrossSlotError, match="hash_tag=True"):
        store.save(r)


def test_transaction_on_objects_sharing_a_tag(store: redmodel.Store) -> None:
    store.save_many([Order(total=10, id="acme-1"), Order(total=0, id="acme-2")])

    @redmodel.transaction(store)
    def move(tx: redmodel.transactions.Transaction, amount: int) -> None:
        src = tx.get_or_raise(Order, "acme-1")
        tx.get_or_raise(Order, "acme-2")
        if src.total < amount:
            raise ValueError("not enough")
        tx.incr(Order, "acme-1", "total", -amount)
        tx.incr(Order, "acme-2", "total", amount)

    move(4)
    assert [o.total for o in store.get_many(Order, ["acme-1", "acme-2"])] == [6, 4]  # type: ignore[union-attr]


def test_transaction_across_slots_is_refused_before_writing(store: redmodel.Store) -> None:
    store.save_many([Order(total=10, id="acme-1"), Order(total=0, id="zeta-1")])
    assert slot("order:{acme}:acme-1") != slot("order:{zeta}:zeta-1")

    @redmodel.transaction(store)
    def move(tx: redmodel.transactions.Transaction) -> None:
        tx.get_or_raise(Order, "acme-1")
        tx.get_or_raise(Order, "zeta-1")
        tx.incr(Order, "acme-1", "total", -1)
        tx.incr(Order, "zeta-1", "total", 1)

    with pytest.raises(redmodel.CrossSlotError):
        move()
    assert [o.total for o in store.get_many(Order, ["acme-1", "zeta-1"])] == [10, 0]  # type: ignore[union-attr]


def test_restaurant_hash_layout_needs_no_tag(store: redmodel.Store) -> None:
    r = Restaurant("Ravagh", "Persian", Address(Street("l"), "c", "s", 1), id=484272)
    assert store.save(r) == "rest:484272"
    assert store.get(Restaurant, 484272) == r
