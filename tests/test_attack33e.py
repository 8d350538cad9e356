"""Attack 33E: the mypy plugin after fix 33D, held to docs/models.md "Type checking (mypy)"
and "Where the check ends" ("the plugin refuses a call only when it is certain the store
refuses it"). No finding in the 30-minute box: this file keeps the probes as a check that
PASSES (each ``e_ok_*`` runs on the server with no mypy error; each ``e_bad_*`` is refused
by the store and is a ``[redmodel]`` error). Notes: /work/notes/s33/ATK-E-FINDINGS.md.
"""

from __future__ import annotations

from typing import Any

import pytest

import redmodel
from tests import user_mypy

_USER_CODE = '''\
from __future__ import annotations

import builtins
from collections import Counter, OrderedDict, defaultdict
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Generic, TypeVar

import attrs
from typing_extensions import Self

import redmodel
from redmodel import Store

@redmodel.model(prefix="atk33e")
@attrs.define
class Prof:
    id: int = redmodel.key_field(generated=False)
    scores: list[int] = attrs.field(factory=list)
    names: list[str] = attrs.field(factory=list)
    pair: tuple[int, int] = (0, 0)
    tags: set[int] = attrs.field(factory=set)
    fss: set[frozenset[int]] = attrs.field(factory=set)
    tps: set[tuple[int, int]] = attrs.field(factory=set)
    meta: dict[str, int] = attrs.field(factory=dict)
    n: int = 0

def e_ok_fraction(store: Store) -> None:
    store.update(Prof, 1, tags={1, Fraction(1)})  # F1 ok
def e_ok_decimal(store: Store) -> None:
    store.update(Prof, 1, tags={1, Decimal(1)})  # F1 ok
def e_ok_frozensets(store: Store) -> None:
    store.update(Prof, 1, fss={frozenset({1}), frozenset({True})})  # F1 ok
def e_ok_tuples(store: Store) -> None:
    store.update(Prof, 1, tps={(1, 2), (True, 2)})  # F1 ok
def e_ok_complex(store: Store) -> None:
    store.update(Prof, 1, scores=[*{1, 1+0j}])  # F1 ok
def e_ok_set_star_float(store: Store) -> None:
    fs: list[int] = [2]
    store.update(Prof, 1, pair=(*{*fs, 2.0}, 1))  # F1 ok
def e_ok_builtins_list(store: Store) -> None:
    store.update(Prof, 1, scores=builtins.list({1, True}))  # F1 ok
def e_ok_calls(store: Store) -> None:
    store.update(Prof, 1, scores=list(range(3)))  # F1 ok
    store.update(Prof, 1, scores=list(b"ab"))  # F1 ok
    store.update(Prof, 1, scores=sorted({1, True}))  # F1 ok
    store.update(Prof, 1, scores=list(reversed([1, 2])))  # F1 ok
    store.update(Prof, 1, names=list("ab"))  # F1 ok
    store.update(Prof, 1, scores=list(map(int, "12")))  # F1 ok
    store.update(Prof, 1, scores=list(tuple(set({1: 0, True: 1}))))  # F1 ok
    store.update(Prof, 1, scores=[*dict({1: 0, True: 1})])  # F1 ok
    store.update(Prof, 1, tags=set(frozenset({1, True})))  # F1 ok
def e_ok_mappings(store: Store) -> None:
    store.update(Prof, 1, meta=dict.fromkeys(["a"], 1))  # F1 ok
    store.update(Prof, 1, meta=dict(a=1))  # F1 ok
    store.update(Prof, 1, meta=OrderedDict(a=1))  # F1 ok
    store.update(Prof, 1, meta=Counter("ab"))  # F1 ok
    store.update(Prof, 1, meta=defaultdict(int, a=1))  # F1 ok
def e_ok_ids(store: Store) -> None:
    store.get_many(Prof, {1: "a", True: "b"})  # F1 ok
    store.get_many(Prof, [*{1, True}, 2])  # F1 ok
    store.get_many(Prof, tuple(list({1: 0, True: 0})))  # F1 ok
def e_ok_tuples_spelled(store: Store) -> None:
    store.update(Prof, 1, pair=(*(1, 2), *()))  # F1 ok
    store.update(Prof, 1, pair=(*{1: 0, 2: 0}, ))  # F1 ok
    store.update(Prof, 1, pair=(*[1], *{2: 0}))  # F1 ok

def e_bad_float_first(store: Store) -> None:
    store.update(Prof, 1, tags={1.0, 1})  # F1 E: [redmodel]
def e_bad_date_in_ints(store: Store) -> None:
    d: date = datetime(2020, 1, 1)
    store.update(Prof, 1, tags={1, *[d]})  # F1 E: [redmodel]
def e_bad_tuple_first(store: Store) -> None:
    store.update(Prof, 1, tps={(True, 2), (1, 2)})  # F1 E: [redmodel]
def e_bad_frozenset_first(store: Store) -> None:
    store.update(Prof, 1, fss={frozenset({True}), frozenset({1})})  # F1 E: [redmodel]
def e_bad_pair_dict_keys(store: Store) -> None:
    store.update(Prof, 1, pair=tuple({1: 0, True: 1}))  # F1 E: [redmodel]
def e_bad_floor_override(store: Store) -> None:
    store.incr_fields(Prof, 1, {"n": 1}, floor={"n": 1, **{"n": True}})  # F1 E: [redmodel]
def e_bad_ids_dict(store: Store) -> None:
    store.get_many(Prof, {**{"1": 1}})  # F1 E: [redmodel]
def e_bad_ids_frozenset(store: Store) -> None:
    store.delete_many(Prof, frozenset([True, 1]))  # F1 E: [redmodel]

K = TypeVar("K")
class GS(Store, Generic[K]):
    pass
class Sub(Store):
    def fetch_bad(self: Self) -> Any:
        return self.get(Prof, "1")  # F1 E: [redmodel]
SB = TypeVar("SB", bound=Sub)
def e_bad_sub_bound(store: Store) -> Any:
    def fetch(where: SB) -> Any:
        return where.get(Prof, "1")  # F1 E: [redmodel]
    return fetch(Sub(store.client))
def e_bad_generic_store(store: Store) -> Any:
    return GS[int](store.client).get(Prof, "1")  # F1 E: [redmodel]
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return user_mypy.user_code(tmp_path_factory, "atk33e_user", _USER_CODE)


def test_mypy_probes_of_33d_hold(user: Any, store: redmodel.Store) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it"; "Type checking (mypy)": displays given to list()/
    tuple()/set()/frozenset(), the equal-item rule, ids judged as displays, bound-TypeVar
    receivers judged as their bound. Passes (no finding): kept as a regression check."""
    report, module = user
    store.save(module.Prof(id=1))
    try:
        for name in sorted(n for n in dir(module) if n.startswith("e_ok")):
            getattr(module, name)(store)
        user_mypy.refused(module, store, "e")
    finally:
        store.delete(module.Prof, 1)
    assert not user_mypy.unmet(_USER_CODE, report, "F1")
