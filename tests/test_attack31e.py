"""Attack 31E: values at the edges through indexes, queries and increments, held to the
docs (one test per finding; each fails until the finding is fixed or the doc reworded).
The findings are in /work/notes/s31/ATK-E-FINDINGS.md.

Also run, and found nothing (the probes are not kept here): range indexes of int / float /
Decimal / datetime (naive and aware) / date drawn at the edges (+-2**53, -0.0, subnormals,
nextafter, 1e308, tying Decimals, microsecond-apart datetimes, years 1..9999) against a
Python oracle for eq / lt / le / gt / ge / between / one_of / NOT, order_by both ways,
count / exists / first / pages / offset+limit / manual after(cursor) paging, with
STEP_BUDGET 1..1000 and compound AND / OR / NOT expressions, on sync, async, cluster and
async cluster with buckets; equality / unique / blind indexes over values equal in Python
of other texts (0.0/-0.0, 1/1.0, Decimal exponents, instants at other offsets, list items)
through save, save_many, tracked partial saves, update and transactions; incr /
incr_fields bounds and 64-bit / 2**53 / infinite limits vs Python; lost and cut replies of
incr / incr_fields on indexed fields in both modes.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import attrs
import pytest

import redmodel


@redmodel.model(prefix="atk31e")
@attrs.define
class Shift:
    start: dt.datetime | None = redmodel.field(unique=True, default=None)
    at: dt.datetime | None = redmodel.field(index=True, default=None)
    id: str = redmodel.key_field(generated=False)


def _fold_pair() -> tuple[dt.datetime, dt.datetime]:
    ny = zoneinfo.ZoneInfo("America/New_York")  # the tzdata package (dev extra) has it
    # 01:30 happens twice on 2021-11-07 in New York (EDT, then EST)
    first = dt.datetime(2021, 11, 7, 1, 30, fold=0, tzinfo=ny)
    second = dt.datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=ny)
    assert first == second  # Python: same tzinfo, so compared as wall times
    return first, second


def test_f1_aware_datetimes_are_equal_when_they_are_one_instant(store: redmodel.Store) -> None:
    """docs/queries.md, "Equal values, one entry" (decided after attack 31E F1): "two aware
    datetimes are equal when they are the same instant ... redmodel takes them as the two
    instants they are: each holds its own unique value, each finds only its own object,
    and the `fold=1` time and its UTC instant are one value".

    The attack held the code to Python's `==`, which is not transitive here (fold 0 and 1
    of one ZoneInfo are == as wall times, an hour apart as instants): no canonical text can
    follow it, so the docs now promise instants, and this test holds the code to that."""
    first, second = _fold_pair()
    store.save(Shift(id="a", start=first, at=first))
    assert store.find(Shift, at=second).all() == []
    assert store.get_by(Shift, start=second) is None
    store.save(Shift(id="b", start=second, at=second))  # another instant: its own value
    same_instant = second.astimezone(dt.timezone.utc)
    assert second != same_instant  # Python: fold=1 in a repeated hour is never == across zones
    assert [s.id for s in store.find(Shift, at=same_instant).all()] == ["b"]
    assert getattr(store.get_by(Shift, start=same_instant), "id", None) == "b"
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(Shift(id="c", start=same_instant))
    assert store.verify(Shift) == []
