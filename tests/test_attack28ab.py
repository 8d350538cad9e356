"""Attack 28AB: values at the edges through indexed writes and queries, held to the docs
(one test per finding; each fails until the finding is fixed). The findings are in
/work/notes/s28/ATK-AB-FINDINGS.md.

Also run, and found nothing (kept out of this file): range / equality / unique / compound
indexes over float, int, Decimal, datetime (naive, aware, years 1 and 9999), date, bool,
enum and str, written by save, save_many (repeated ids, lists and generators with a bad
object, chunked), update, incr / incr_fields (2**53, +-2**63 and beyond-64-bit stored ints,
float sums compared with Python's repr and the ZSET score, inf / NaN / huge amounts and
bounds), delete, delete_many, TTLs down to a microsecond; paging by cursor over -0.0,
subnormals, 1e308, microsecond-apart datetimes and decimals that tie; save_many compared
with one-at-a-time saves (unique and compound unique, with and without buckets); the
all-ids pages under 60 random rounds of save_many / delete_many of ids with ``: * % { }``,
raw bytes and 64+ byte ids; planted wrong-typed split targets, pages, eq sets, expiry set
and count; lost, cut and dropped replies of index_write_many (save_many, delete_many).
"""

from __future__ import annotations

import decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import redmodel
from redmodel import Q, one_of

D = decimal.Decimal


@redmodel.model(prefix="atk28ab")
@attrs.define
class Z:
    fr: float | None = redmodel.field(index="range", default=None)
    dr: D | None = redmodel.field(index="range", default=None)
    id: str = redmodel.key_field(generated=False)


# pairs of values a range index holds at one score (+0 and -0) whose texts differ
ZERO_PAIRS = [
    ("fr", 0.0, -0.0),
    ("dr", D("0"), D("-0")),
    ("dr", D("1E-400"), D("-1E-400")),  # both the double 0, "values ... tie" (Exact numbers)
]


@pytest.mark.parametrize(("field", "a", "b"), ZERO_PAIRS)
def test_f1_count_of_one_of_zero_and_negative_zero_on_a_range_index(
        store: redmodel.Store, field: str, a: object, b: object) -> None:
    """docs/queries.md, Queries table: "`.count()` / `.exists()` | int / bool | how many
    results `.ids()` would give"; and under limit/offset: "`count()` and `exists()`
    describe the results `ids()` gives: ... at most the limit".

    `one_of([0.0, -0.0])` on a range-indexed float (or Decimals whose doubles are +0 and
    -0) is compiled into two terms taken to be disjoint (ORD), and the native count adds
    one ZCOUNT per term: every object at score 0 is counted twice, `limit(n).count()`
    answers n when fewer match, and a NOT of it counts 0 where ids() gives the others."""
    store.save_many([Z(id=f"{i}", **{field: (a if i % 2 else b)}) for i in range(4)]
                    + [Z(id="one", fr=1.0, dr=D(1))])
    q = store.find(Z, **{field: one_of([a, b])})
    assert sorted(q.ids()) == ["0", "1", "2", "3"]
    assert (q.count(), q.limit(10).count()) == (4, 4)
    n = store.find(Z, ~Q(**{field: one_of([a, b])}))
    assert n.ids() == ["one"] and n.count() == 1


@given(tiny=st.decimals(min_value=D("1E-600"), max_value=D("1E-330"), places=None,
                        allow_nan=False, allow_infinity=False))
def test_f1_count_of_decimals_that_tie_at_zero(store: redmodel.Store, tiny: D) -> None:
    """The same promise, drawn: a positive and a negative Decimal too small for a double
    (each a score of +0 or -0) in one `one_of`: count() must equal len(ids())."""
    store.client.flushall()
    store.save_many([Z(id="p", dr=tiny), Z(id="n", dr=-tiny)])
    q = store.find(Z, dr=one_of([tiny, -tiny]))
    assert q.count() == len(q.ids()) == 2
