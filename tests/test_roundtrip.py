"""Property: for any instance of a model covering every supported field type, save then get
returns an equal instance, against the real server."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled
from tests.models import Everything, Restaurant
from tests.strategies import ids, instances


@settings(max_examples=scaled(300))
@given(obj=instances(Everything, sku=ids))
def test_save_then_get_returns_an_equal_object(store: redmodel.Store, obj: Everything) -> None:
    store.save(obj)
    assert store.get(Everything, obj.sku) == obj


@settings(max_examples=scaled(50))
@given(objs=st.lists(instances(Everything, sku=ids), max_size=8, unique_by=lambda o: o.sku))
def test_save_many_then_get_many_returns_equal_objects(
    store: redmodel.Store, objs: list[Everything]
) -> None:
    store.client.flushdb()
    store.save_many(objs)
    assert store.get_many(Everything, [o.sku for o in objs]) == objs
    assert sorted(o.sku for o in store.scan(Everything)) == sorted(o.sku for o in objs)


@settings(max_examples=scaled(100))
@given(obj=instances(Restaurant))
def test_nested_objects_round_trip(store: redmodel.Store, obj: Restaurant) -> None:
    store.save(obj)
    assert store.get(Restaurant, obj.id) == obj
