"""Session 28 fixes found by attack 28AB.

- ``one_of`` over a range index with values of one score but different texts (0.0 and
  -0.0; Decimals whose doubles are +0 and -0) was compiled into two terms taken to be
  disjoint: ``count()`` counted every object at that score twice, and a NOT of it
  subtracted that from the total. Range scores are now written in one canonical text.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q, one_of
from tests.budget import scaled

D = decimal.Decimal
UTC = dt.timezone.utc


@redmodel.model(prefix="fx28")
@attrs.define
class R:
    fr: float | None = redmodel.field(index="range", default=None)
    dr: D | None = redmodel.field(index="range", default=None)
    tr: dt.datetime | None = redmodel.field(index="range", default=None)
    ir: int | None = redmodel.field(index="range", default=None)
    id: str = redmodel.key_field(generated=False)


_T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
# values with equal scores but different Python values or texts sit side by side
POOLS: dict[str, list[Any]] = {
    "fr": [0.0, -0.0, 5e-324, -5e-324, 1.0, 1.0000000000000002, 0.1 + 0.2, 0.3, 2.0**53,
           -(2.0**53), 1e308],
    "dr": [D("0"), D("-0"), D("0.000"), D("1E-400"), D("-1E-400"), D("1"), D("1.0"),
           D("0.1"), D("0.10000000000000000001"), D("-2.5")],
    "tr": [_T0, _T0 + dt.timedelta(microseconds=1), _T0.astimezone(dt.timezone(
        dt.timedelta(hours=5))), dt.datetime(1, 1, 1, tzinfo=UTC),
        dt.datetime(9999, 12, 31, tzinfo=UTC)],
    "ir": [0, 1, -1, 2**53, -(2**53), 2**53 - 1, 7],
}


def _score(field: str, value: Any) -> float:
    if field == "tr":
        return float(value.timestamp())
    return float(value)


@settings(max_examples=scaled(200))
@given(data=st.data(), field=st.sampled_from(sorted(POOLS)))
def test_one_of_counts_each_object_once_whatever_texts_share_a_score(
        store: redmodel.Store, data: st.DataObject, field: str) -> None:
    """Property: for a ``one_of`` over a range-indexed field drawn from values where
    several share one score, ``count()`` is ``len(ids())``, both are the objects whose
    score equals a listed value's, ``limit(k).count()`` is at most ``k``, and the NOT's
    count is the rest."""
    pool = POOLS[field]
    values = data.draw(st.lists(st.sampled_from(pool), max_size=12), label="stored")
    wanted = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5),
                       label="one_of")
    if data.draw(st.booleans(), label="add each value's twins"):  # same score, other text
        wanted += [t for w in wanted for t in pool if _score(field, t) == _score(field, w)]
    k = data.draw(st.integers(0, 14), label="limit")
    store.delete_many(R, store.find(R).ids())
    store.save_many([R(id=f"o{i}", **{field: v}) for i, v in enumerate(values)])
    scores = {_score(field, w) for w in wanted}
    expected = {f"o{i}" for i, v in enumerate(values) if _score(field, v) in scores}
    query = store.find(R, **{field: one_of(wanted)})
    assert set(query.ids()) == expected
    assert query.count() == len(expected)
    assert query.limit(k).count() == min(k, len(expected))
    assert query.exists() == bool(expected)
    rest = store.find(R, ~Q(**{field: one_of(wanted)}))
    assert rest.count() == len(values) - len(expected) == len(rest.ids())
