"""Fix 33H (attack 33F): what a query sends at every step is bounded by the values it names.

Attack 33F F1: pieces that name no index term (an empty ``one_of``, ``~Q()``, ``Q()``) were
compiled as they stood, so an OR of one term and ten thousand of them was sent and parsed
at every step (35-220 ms a step). They are folded away as the query is compiled: an AND
holding a piece that matches nothing matches nothing, an OR drops it, ``~`` of everything
is nothing and the reverse. F2: a blind index's value is one term per configured index
key, so during a key rotation a ``one_of`` of 51-100 blind values was refused; the limit
(``MAX_TERMS``) counts the values a query names.

The property draws expressions of equality terms, ranges, ``one_of`` lists (empty too),
``Q()``, ``~`` and nesting, and checks: the query is refused exactly when it names more
than ``MAX_TERMS`` values; otherwise what is sent holds at most four nodes a named value
(plus one), and the answer is exactly the objects the expression matches (a Python oracle
over the saved objects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q, between, one_of
from redmodel._indexes._query import MAX_TERMS, _Compiler
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.keys import use_keys


@redmodel.model(prefix="f33h")
@attrs.define
class Item:
    color: str = redmodel.field(index=True)
    qty: int = redmodel.field(index="range")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="f33hb")
@attrs.define
class Patient:
    ssn: str = redmodel.field(codec="json|fernet", index="blind")
    id: str = redmodel.key_field(generated=False)


ITEMS = [Item(f"c{i % 5}", i % 7, id=f"i{i:02d}") for i in range(30)]
COLORS = [f"c{i}" for i in range(7)]  # two match nothing

Pred = Callable[[Item], bool]


def nodes(node: Any) -> int:
    """How many nodes a compiled expression holds (each sent and parsed at every step)."""
    n, stack = 0, [node]
    while stack:
        top = stack.pop()
        n += 1
        stack.extend(getattr(top, "kids", ()))
        if hasattr(top, "kid"):
            stack.append(top.kid)
    return n


def _leaf() -> st.SearchStrategy[tuple[Q, Pred, int]]:
    """(a Q of one leaf, its oracle, the values it names)."""
    color = st.sampled_from(COLORS).map(
        lambda c: (Q(color=c), (lambda o, c=c: o.color == c), 1))
    many = st.lists(st.sampled_from(COLORS), max_size=4, unique=True).map(
        lambda cs: (Q(color=one_of(cs)), (lambda o, cs=cs: o.color in cs), len(cs)))
    rng = st.tuples(st.integers(0, 7), st.integers(0, 7)).map(
        lambda ab: (Q(qty=between(min(ab), max(ab))),
                    (lambda o, ab=ab: min(ab) <= o.qty <= max(ab)), 1))
    everything = st.just((Q(), (lambda o: True), 0))
    return st.one_of(color, many, rng, everything)


def _expr() -> st.SearchStrategy[tuple[Q, Pred, int]]:
    def extend(inner: st.SearchStrategy[tuple[Q, Pred, int]]
               ) -> st.SearchStrategy[tuple[Q, Pred, int]]:
        def and_(xs: list[tuple[Q, Pred, int]]) -> tuple[Q, Pred, int]:
            return (Q(*[x[0] for x in xs]), (lambda o, xs=xs: all(x[1](o) for x in xs)),
                    sum(x[2] for x in xs))

        def or_(xs: list[tuple[Q, Pred, int]]) -> tuple[Q, Pred, int]:
            q = xs[0][0]
            for x in xs[1:]:
                q = q | x[0]
            return q, (lambda o, xs=xs: any(x[1](o) for x in xs)), sum(x[2] for x in xs)

        def not_(x: tuple[Q, Pred, int]) -> tuple[Q, Pred, int]:
            return ~x[0], (lambda o, x=x: not x[1](o)), x[2]

        return st.one_of(st.lists(inner, min_size=1, max_size=30).map(and_),
                         st.lists(inner, min_size=1, max_size=30).map(or_),
                         inner.map(not_))

    return st.recursive(_leaf(), extend, max_leaves=60)


@settings(max_examples=scaled(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=_expr())
def test_what_a_query_sends_is_bounded_by_the_values_it_names(
        store: redmodel.Store, drawn: tuple[Q, Pred, int]) -> None:
    q, matches, named = drawn
    if not store.find(Item).exists():
        store.save_many(ITEMS)
    try:
        node = _Compiler(spec_of(Item)).compile_top(q)
    except redmodel.QueryError as e:
        assert named > MAX_TERMS, e  # refused only beyond the limit
        return
    assert named <= MAX_TERMS
    assert nodes(node) <= 4 * named + 1
    assert sorted(store.find(Item, q).ids()) == sorted(o.id for o in ITEMS if matches(o))


def test_the_limit_counts_values_not_the_terms_a_rotation_sends(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = redmodel.generate_index_key(), redmodel.generate_index_key()
    use_keys(monkeypatch, index=[old])
    store.save_many([Patient(f"s{i}", id=f"p{i}") for i in range(3)])
    redmodel.configure_index_keys(keys=[new, old])
    full = Q(ssn=one_of([f"s{i}" for i in range(MAX_TERMS)]))
    assert sorted(store.find(Patient, full).ids()) == ["p0", "p1", "p2"]
    with pytest.raises(redmodel.QueryError, match=f"at most {MAX_TERMS}"):
        store.find(Patient, Q(ssn=one_of([f"s{i}" for i in range(MAX_TERMS + 1)])))
