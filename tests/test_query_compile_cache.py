"""Queries of the same ``field=value`` filters share one compiled expression (issue 17,
item 5): the cache must never give a query another value's expression (1, 1.0 and True;
0.0 and -0.0; a str and a bytes), nor skip a check that compiling makes."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q, QueryError, between, ge, gt, le, lt
from redmodel._indexes._query import _Compiler
from redmodel._models._specs import spec_of
from tests.budget import scaled


@redmodel.model(prefix="cc")
@attrs.define
class Item:
    name: str = redmodel.field(default="", index=True)
    n: int = redmodel.field(default=0, index=True)
    x: float = redmodel.field(default=0.0, index=True)
    r: float = redmodel.field(default=0.0, index="range")
    k: int = redmodel.field(default=0, index="range")
    id: str = redmodel.key_field()


class NoRun:
    """A store that is never asked to run anything: compiling needs none."""


SCALARS = st.one_of(
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, -(2**63), 2**64, True, False, 0.0, -0.0,
                     1.0, 0.1 + 0.2, 0.3, math.inf, -math.inf, math.nan, "", "1", "a:{b}",
                     "*%\\", b"x", None]),
    st.integers(), st.floats(), st.text(max_size=4))
BOUNDS = st.one_of(SCALARS, SCALARS.map(lambda v: ("lt", v)), SCALARS.map(lambda v: ("ge", v)))
HELPERS = {"lt": lt, "ge": ge, "gt": gt, "le": le}


def compiled(where: Q) -> Any:
    try:
        return ("ok", _Compiler(spec_of(Item)).compile_top(where))
    except QueryError as e:
        return ("error", str(e))


def through_query(where: Q) -> Any:
    try:
        return ("ok", redmodel.Query(NoRun(), Item, where)._expr)
    except QueryError as e:
        return ("error", str(e))


@settings(max_examples=scaled(150, floor=30))
@given(filters=st.lists(st.tuples(st.sampled_from(["name", "n", "x", "r", "k"]), BOUNDS),
                        min_size=1, max_size=3, unique_by=lambda t: t[0]),
       repeat=st.integers(1, 3))
def test_a_query_compiles_as_its_own_filters_do(filters: list[Any], repeat: int) -> None:
    kwargs: dict[str, Any] = {}
    for name, drawn in filters:
        value = drawn
        if isinstance(drawn, tuple):
            try:
                value = HELPERS[drawn[0]](drawn[1])
            except QueryError:
                continue  # refused before any query exists
        kwargs[name] = value
    where = Q(**kwargs)
    for _ in range(repeat):  # the first compiles and keeps it, the next ones reuse it
        assert through_query(where) == compiled(where), kwargs


def test_values_equal_in_python_keep_their_own_expressions() -> None:
    pairs = [({"n": 1}, {"n": True}), ({"x": 0.0}, {"x": -0.0}), ({"x": 1.0}, {"x": 1}),
             ({"r": ge(0.0)}, {"r": ge(-0.0)}), ({"k": between(1, 2)}, {"k": between(1.0, 2)})]
    for a, b in pairs:
        for first, second in ((a, b), (b, a)):
            through_query(Q(**first))
            assert through_query(Q(**second)) == compiled(Q(**second)), (first, second)


def test_a_refused_value_is_refused_every_time() -> None:
    for _ in range(3):
        with pytest.raises(QueryError):
            redmodel.Query(NoRun(), Item, Q(n="x"))
        with pytest.raises(QueryError):
            redmodel.Query(NoRun(), Item, Q(k=lt(2**60)))
