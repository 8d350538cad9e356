"""A count of one term (an equality, a range, every object) is answered natively at the top
of the query script (issue 17, item 5): SCARD / ZCOUNT / ZCARD after the registry check and
the expiry check, with a wrong-typed key named instead of a script error. These tests hold
it to what the step-by-step count and the ids say, and to the model's truth."""

from __future__ import annotations

import math
import time
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Range, between, ge, gt, le, lt
from tests.budget import scaled


@redmodel.model(prefix="cnt")
@attrs.define
class Thing:
    kind: str = redmodel.field(index=True)
    n: int = redmodel.field(default=0, index="range")
    x: float = redmodel.field(default=0.0, index="range")
    id: str = redmodel.key_field()


EDGE_INTS = st.sampled_from([0, 1, -1, 2**53, -(2**53), 2**53 - 1, 7])
EDGE_FLOATS = st.sampled_from([0.0, -0.0, 0.1 + 0.2, 0.3, 1e308, -1e308, 5e-324, 2.5])
IDS = st.text(alphabet=":{}*%\\ab\u00e9", min_size=1, max_size=6)
KINDS = st.sampled_from(["a", "b:{x}", "*%\\"])
THINGS = st.lists(st.builds(Thing, kind=KINDS, n=EDGE_INTS, x=EDGE_FLOATS, id=IDS),
                  max_size=12, unique_by=lambda t: t.id)


def inside(v: float, r: Range) -> bool:
    if r.low is not None and (v < r.low or (v == r.low and not r.low_inclusive)):
        return False
    return not (r.high is not None and (v > r.high or (v == r.high and not r.high_inclusive)))


@settings(max_examples=scaled(40, floor=10),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(things=THINGS, data=st.data())
def test_a_native_count_is_the_number_of_matches(store: Any, things: list[Thing],
                                                 data: st.DataObject) -> None:
    store.client.flushdb()
    store.save_many(things)
    kind = data.draw(KINDS)
    assert store.find(Thing, kind=kind).count() == sum(t.kind == kind for t in things)
    assert store.find(Thing).count() == len(things)
    for field, values in (("n", EDGE_INTS), ("x", EDGE_FLOATS)):
        lo, hi = data.draw(values), data.draw(values)
        r = data.draw(st.sampled_from([gt(lo), ge(lo), lt(hi), le(hi), between(lo, hi),
                                       between(lo, hi, inclusive=(False, True)), Range()]))
        truth = sum(inside(getattr(t, field), r) for t in things)
        query = store.find(Thing, **{field: r})
        assert query.count() == truth == len(query.ids()), (field, r)
        # the same count through the general script path (an AND with every object)
        assert store.find(Thing, redmodel.Q(**{field: r}) & redmodel.Q()).count() == truth


def test_nan_is_refused_as_a_bound_before_anything_is_sent(store: Any) -> None:
    with pytest.raises(redmodel.QueryError):
        store.find(Thing, x=lt(math.nan)).count()


def test_a_wrong_typed_key_is_named(store: Any) -> None:
    store.save(Thing("a", 1, 1.0, id="t"))
    assert store.find(Thing, kind="a").count() == 1
    for key, query in (("cnt:%idx:eq:kind:a", store.find(Thing, kind="a")),
                       ("cnt:%idx:rng:n", store.find(Thing, n=ge(0))),
                       ("cnt:%idx:all", store.find(Thing)),
                       ("cnt:%idx:exp", store.find(Thing, kind="a"))):
        saved = store.client.dump(key)
        store.client.delete(key)
        store.client.set(key, "planted")
        try:
            with pytest.raises(redis.ResponseError, match=key) as info:
                query.count()
            assert isinstance(info.value, redmodel.ServerError)
        finally:
            store.client.delete(key)
            if saved is not None:
                store.client.restore(key, 0, saved)
    assert store.find(Thing, kind="a").count() == 1


def test_expired_objects_never_count(store: Any) -> None:
    store.save_many([Thing("a", i, float(i), id=f"t{i}") for i in range(4)])
    store.save(Thing("a", 9, 9.0, id="gone"), ttl=0.5)  # (0.15 s: gone before the count
    saved = time.monotonic()                             # on a slow machine)
    assert store.find(Thing, n=ge(0)).count() == 5
    time.sleep(max(0.0, saved + 0.5 - time.monotonic()) + 0.05)
    assert store.find(Thing, n=ge(0)).count() == 4
    assert store.find(Thing, x=le(100)).count() == 4
    assert store.find(Thing, kind="a").count() == 4
    assert store.find(Thing).count() == 4
