"""Attack 33H: query folding (28ba352) and the refactors afa3dd9 / 2706016.

No finding in the time box: these tests PASS now. They hold the folded queries to every
terminal (fix 33H's property checks ids() only) and a blind one_of during a three-key
rotation; kept as coverage of the folding.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import redmodel
from redmodel import Q, one_of
from tests.budget import scaled
from tests.keys import use_keys
from tests.test_fix33h import ITEMS, Item, Patient, Pred, _expr


@settings(
    max_examples=scaled(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(drawn=_expr())
def test_folded_queries_answer_the_same_on_every_terminal(
    store: redmodel.Store, drawn: tuple[Q, Pred, int]
) -> None:
    """docs/queries.md: "Every terminal (ids, count, exists, first, all, page, pages,
    iteration, and their plans) gives the same results for the same query"."""
    q, matches, named = drawn
    if named > 100:
        return
    if not store.find(Item).exists():
        store.save_many(ITEMS)
    want = sorted(o.id for o in ITEMS if matches(o))
    query = store.find(Item, q)
    assert sorted(query.ids()) == want
    assert query.count() == len(want)
    assert query.exists() == bool(want)
    byq = sorted((o for o in ITEMS if matches(o)), key=lambda o: (o.qty, o.id))
    oq = query.order_by("qty")
    assert oq.ids() == [o.id for o in byq]
    assert oq.count() == len(want)
    assert oq.exists() == bool(want)
    f = oq.first()
    assert (f.id if f else None) == (byq[0].id if byq else None)
    assert [o.id for p in oq.pages(3) for o in p] == [o.id for o in byq]
    assert [o.id for p in query.pages(4) for o in p] == sorted(want)
    assert oq.offset(2).limit(3).ids() == [o.id for o in byq][2:5]
    assert oq.offset(2).limit(3).count() == len([o.id for o in byq][2:5])
    dq = query.order_by("-qty")
    assert dq.ids() == [o.id for o in sorted(byq, key=lambda o: (o.qty, o.id), reverse=True)]
    query.explain()


def test_blind_one_of_while_three_keys_answers_every_terminal(
    store: redmodel.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/queries.md: "Every terminal ... gives the same results for the same query";
    a longer list is queried in parts of up to 100 values (MAX_TERMS counts values)."""
    k1, k2, k3 = (redmodel.generate_index_key() for _ in range(3))
    use_keys(monkeypatch, index=[k1])
    store.save_many([Patient(f"s{i}", id=f"p{i}") for i in range(2)])
    redmodel.configure_index_keys(keys=[k2, k1])
    store.save(Patient("s2", id="p2"))
    redmodel.configure_index_keys(keys=[k3, k2, k1])
    store.save(Patient("s3", id="p3"))
    vals = ["s0", "s0", "s2"] + [f"x{i}" for i in range(96)] + ["s3"]
    q = Q(ssn=one_of(vals)) | ~Q() | Q(ssn=one_of([]))
    query = store.find(Patient, q)
    assert sorted(query.ids()) == ["p0", "p2", "p3"]
    assert query.count() == 3 and query.exists()
    assert sorted(o.id for page in query.pages(1) for o in page) == ["p0", "p2", "p3"]
    assert store.find(Patient, ~Q(ssn=one_of(vals))).ids() == ["p1"]
    assert store.find(Patient, ~Q(ssn=one_of(vals))).count() == 1
