"""Attack 33B: the mypy plugin after fix 32K (starred parts of update displays, bd2b3d2),
held to docs/models.md "Type checking (mypy)" and "Where the check ends": "the plugin
refuses a call only when it is certain the store refuses it ... (a false error would break
your CI ...)"; "A starred part of a display is judged by what it gives".

User code is one string, checked once by mypy --strict with the project's configuration and
plugin (tests/user_mypy.py), then imported and run against the test server: every
``b<n>_ok_*`` function runs (its ``# Fn ok`` line must carry no error: a false positive),
every ``b<n>_bad_*`` function is refused by the store (ValidationError) and its ``# Fn E``
line must be a ``[redmodel]`` error. Each test FAILS on main as of this attack
(/work/notes/s33/ATK-B-FINDINGS.md).
"""

from __future__ import annotations

from typing import Any

import pytest

import redmodel
from tests import user_mypy

_USER_CODE = '''\
from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
from typing_extensions import Unpack

import redmodel
from redmodel import Store

@redmodel.model(prefix="atk33b")
@attrs.define
class Prof:
    id: int = redmodel.key_field(generated=False)
    scores: list[int] = attrs.field(factory=list)
    names: list[str] = attrs.field(factory=list)
    strs: tuple[str, ...] = ()
    pair: tuple[int, int] = (0, 0)
    tags: set[int] = attrs.field(factory=set)
    fs: frozenset[str] = frozenset()
    grid: list[list[int]] = attrs.field(factory=list)
    n: int = 0
    counts: tuple[int, ...] = ()
    trip: tuple[int, str] = (0, "")

def b1_ok_set_spread_in_list(store: Store) -> None:
    store.update(Prof, 1, scores=[*{1, True}])  # F1 ok

def b1_ok_set_given_to_list(store: Store) -> None:
    store.update(Prof, 1, scores=list({1, True}))  # F1 ok

def b1_ok_set_call_spread(store: Store) -> None:
    store.update(Prof, 1, scores=[*set([1, True])])  # F1 ok

def b1_ok_nested(store: Store) -> None:
    store.update(Prof, 1, grid=[[*{1, True}]])  # F1 ok

def b2_ok_dict_given_to_list(store: Store) -> None:
    store.update(Prof, 1, names=list({"a": 1}))  # F2 ok

def b2_ok_dict_given_to_list_spread(store: Store) -> None:
    store.update(Prof, 1, names=[*list({"a": 1})])  # F2 ok

def b2_ok_dict_given_to_tuple(store: Store) -> None:
    store.update(Prof, 1, strs=tuple({"a": 1}))  # F2 ok

def b2_ok_dict_given_to_frozenset(store: Store) -> None:
    store.update(Prof, 1, fs=frozenset({"a": 1}))  # F2 ok

def b2_ok_dict_given_to_set(store: Store) -> None:
    store.update(Prof, 1, tags=set({1: "a"}))  # F2 ok

def b1_ok_fixed_tuple_set_spread(store: Store) -> None:
    ints: list[int] = [2]
    store.update(Prof, 1, pair=(*{1, 1, 1}, *ints))  # F1 ok

def b2_ok_fixed_tuple_dict_spread(store: Store) -> None:
    ints: list[int] = []
    store.update(Prof, 1, pair=(*list({1: 2}), 3, *ints))  # F2 ok

def b3_bad_spelled_star_too_long(store: Store) -> None:
    store.update(Prof, 1, pair=(1, *[2, 3]))  # F3 E: [redmodel]

def b3_bad_spelled_star_only(store: Store) -> None:
    store.update(Prof, 1, pair=(*[1, 2, 3],))  # F3 E: [redmodel]

def b3_bad_spelled_stars(store: Store) -> None:
    store.update(Prof, 1, pair=(*[1], *[2], *[3]))  # F3 E: [redmodel]

def b3_bad_spelled_star_wrong_item(store: Store) -> None:
    store.update(Prof, 1, pair=(*[1, "a"],))  # F3 E: [redmodel]

def b3_bad_spelled_star_bool(store: Store) -> None:
    store.update(Prof, 1, pair=(*(True,), *[2]))  # F3 E: [redmodel]

def b3_bad_tuple_of_display(store: Store) -> None:
    store.update(Prof, 1, pair=tuple([1, 2, 3]))  # F3 E: [redmodel]

def b4_ok_changes_later_key(store: Store) -> None:
    store.incr_fields(Prof, 1, {"n": 1.5, "n": 1})  # F4 ok

def b4_ok_changes_overridden(store: Store) -> None:
    over: dict[str, int] = {"n": 2}
    store.incr_fields(Prof, 1, {"n": 0.5, **over})  # F4 ok

def b4_ok_changes_spelled_override(store: Store) -> None:
    store.incr_fields(Prof, 1, {"n": True, **{"n": 3}})  # F4 ok

def b4_ok_floor_overridden(store: Store) -> None:
    store.incr_fields(Prof, 1, {"n": 4}, floor={"n": True, **{"n": 0}})  # F4 ok

NonEmpty = tuple[int, Unpack[tuple[int, ...]]]
Tail = tuple[Unpack[tuple[int, ...]], str]

def b5_ok_variadic_for_tuple_of_ints(store: Store) -> None:
    v: NonEmpty = (1, 2)
    store.update(Prof, 1, counts=v)  # F5 ok

def b5_ok_variadic_for_pair(store: Store) -> None:
    v: NonEmpty = (1, 2)
    store.update(Prof, 1, pair=v)  # F5 ok

def b5_ok_variadic_for_fixed(store: Store) -> None:
    w: Tail = (1, "a")
    store.update(Prof, 1, trip=w)  # F5 ok

def b6_bad_ids_spread_variable(store: Store) -> None:
    strs: list[str] = ["1"]
    store.get_many(Prof, [*strs])  # F6 E: [redmodel]

def b6_bad_ids_spelled_star(store: Store) -> None:
    store.get_many(Prof, [*["1"]])  # F6 E: [redmodel]

def b6_bad_ids_spelled_bool(store: Store) -> None:
    store.get_many(Prof, [*[True]])  # F6 E: [redmodel]

def b6_bad_delete_ids_spelled_star(store: Store) -> None:
    store.delete_many(Prof, (*["1"],))  # F6 E: [redmodel]

def b6_bad_ids_set_spread(store: Store) -> None:
    store.get_many(Prof, {*{"1"}})  # F6 E: [redmodel]

def b7_ok_get_many_set_display(store: Store) -> None:
    store.get_many(Prof, {1, True})  # F7 ok

def b7_ok_delete_many_set_display(store: Store) -> None:
    store.delete_many(Prof, {7, 0, False})  # F7 ok

T = TypeVar("T", bound=Store)

def b8_bad_bound_type_variable(store: Store) -> Any:
    def fetch(where: T) -> Any:
        return where.get(Prof, "1")  # F8 E: [redmodel]
    return fetch(store)

class Repo(Generic[T]):
    def __init__(self, where: T) -> None:
        self.where = where

    def fetch(self) -> Any:
        return self.where.get(Prof, "1")  # F8 E: [redmodel]

def b8_bad_generic_class(store: Store) -> Any:
    return Repo(store).fetch()
'''


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return user_mypy.user_code(tmp_path_factory, "atk33b_user", _USER_CODE)


@pytest.fixture
def prof(user: Any, store: redmodel.Store) -> Any:
    _, module = user
    store.save(module.Prof(id=1))
    yield module
    store.delete(module.Prof, 1)


def _runs(module: Any, store: redmodel.Store, prefix: str) -> None:
    fns = sorted(n for n in dir(module) if n.startswith(prefix + "_ok"))
    assert fns
    for name in fns:
        getattr(module, name)(store)  # runs: the store takes it


def test_mypy_f1_a_set_display_spread_or_given_to_list_keeps_its_equal_items(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it ... (a false error would break your CI ...)"; "Type
    checking (mypy)": "in a set display ..., where equal items are one (`{1, True}` is
    `{1}`), an item is refused only when no earlier item the store takes may equal it".
    A set display spread into a list (``[*{1, True}]``, ``[*set([1, True])]``, at depth
    too) or given to ``list(...)`` is ``[1]``; ``(*{1, 1, 1}, *ints)`` is ``(1, 2)`` with
    ``ints == [2]``: every call runs and is stored, yet each is a ``[redmodel]`` error (the
    set's items are spelled out into the outer list/tuple as if all were in the value)."""
    report, _ = user
    _runs(prof, store, "b1")
    got = store.get(prof.Prof, 1)
    assert (got.scores, got.grid, got.pair) == ([1], [[1]], (1, 2))
    missed = user_mypy.unmet(_USER_CODE, report, "F1")
    assert not missed, "\n".join(missed)


def test_mypy_f2_a_dict_display_given_to_list_tuple_set_is_judged_by_its_values(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it"; "A starred part of a display is judged by what it
    gives". Iterating a dict gives its KEYS: ``list({"a": 1})`` is ``["a"]``,
    ``tuple({"a": 1})`` ``("a",)``, ``frozenset({"a": 1})`` ``frozenset({"a"})``,
    ``set({1: "a"})`` ``{1}``, ``[*list({"a": 1})]`` ``["a"]``, and ``(*list({1: 2}), 3)``
    the 2-tuple ``(1, 3)``: each runs and is stored, yet each is a ``[redmodel]`` error
    (the plugin reads the dict display's keys AND values as the items)."""
    report, _ = user
    _runs(prof, store, "b2")
    got = store.get(prof.Prof, 1)
    assert (got.names, got.strs, got.fs, got.tags, got.pair) == (
        ["a"], ("a",), frozenset({"a"}), {1}, (1, 3))
    missed = user_mypy.unmet(_USER_CODE, report, "F2")
    assert not missed, "\n".join(missed)


def test_mypy_f3_a_fixed_tuple_given_spelled_out_starred_parts_is_not_judged(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md "Type checking (mypy)": "A starred part of a display is judged by
    what it gives: `*[1, True]` or `*(1, "a")` item by item", a value's items are judged
    at "each position of a `tuple[X, Y]`", and "in a `tuple[X, Y]`, a display with a `*xs`
    is refused when it has more other items than positions, or an item no position takes".
    ``(1, *[2, 3])`` is certainly the 3-tuple ``(1, 2, 3)`` (so is ``tuple([1, 2, 3])``, a
    display given to ``tuple(...)``), and ``(*[1, "a"],)`` certainly holds ``"a"`` at an
    int position: the store refuses each ("expected a tuple of 2 items" / wrong item);
    mypy passes (it types such a display ``tuple[int, ...]``, and a spelled-out starred
    part is no ``*xs`` for the plugin's fixed-tuple rule)."""
    report, _ = user
    user_mypy.refused(prof, store, "b3")
    missed = user_mypy.unmet(_USER_CODE, report, "F3")
    assert not missed, "\n".join(missed)


def test_mypy_f4_incr_fields_judges_an_overridden_key_of_a_dict_display(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it"; "Type checking (mypy)": incr_fields' "literal keys and
    amounts" are judged "by the same rule" as the store's, and (fix 32K, for update) "A
    dict display's later key wins, so a value is refused only when no later key (a `**d`
    part's too) may equal its key". ``{"n": 0.5, **over}`` (``over == {"n": 2}``),
    ``{"n": 1.5, "n": 1}``, ``{"n": True, **{"n": 3}}`` as ``changes`` and
    ``floor={"n": True, **{"n": 0}}`` are dicts whose ``"n"`` is an int: each runs (n goes
    0 -> 1 -> 3 -> 6 -> 10), yet each is a ``[redmodel]`` error (incr_fields judges every
    literal key's amount on its own, as if no later key could replace it)."""
    report, _ = user
    _runs(prof, store, "b4")
    assert store.get(prof.Prof, 1).n == 10
    missed = user_mypy.unmet(_USER_CODE, report, "F4")
    assert not missed, "\n".join(missed)


def test_mypy_f5_a_variadic_tuple_type_value_is_refused(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it". ``tuple[int, *tuple[int, ...]]`` (PEP 646: a non-empty
    tuple of ints) is a ``tuple[int, ...]`` field's value, and may be a ``tuple[int, int]``
    one; ``tuple[*tuple[int, ...], str]`` may be a ``tuple[int, str]``: each runs and is
    stored, yet each is a ``[redmodel]`` error (``_refused`` takes the ``UnpackType`` item
    for one item of a wrong type)."""
    report, _ = user
    _runs(prof, store, "b5")
    got = store.get(prof.Prof, 1)
    assert (got.counts, got.pair, got.trip) == ((1, 2), (1, 2), (1, "a"))
    missed = user_mypy.unmet(_USER_CODE, report, "F5")
    assert not missed, "\n".join(missed)


def test_mypy_f6_a_starred_part_of_get_many_ids_is_not_judged(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md "Type checking (mypy)": refused is "an id (`get`, ..., and the items
    of `get_many`/`delete_many`'s ids) that is not of the key field's type (... a `bool`
    for an `int` key too)"; and "A starred part of a display is judged by what it gives:
    `*[1, True]` ... item by item, any other `*xs` by its iterable's item type".
    ``store.get_many(Prof, strs)`` (``strs: list[str]``) is refused, yet ``[*strs]``,
    ``[*["1"]]``, ``[*[True]]``, ``{*{"1"}}`` and ``delete_many(Prof, (*["1"],))`` pass
    mypy; the store refuses each (fix 32K judged starred parts for update values only: the
    ids' display items skip every ``StarExpr``)."""
    report, _ = user
    user_mypy.refused(prof, store, "b6")
    missed = user_mypy.unmet(_USER_CODE, report, "F6")
    assert not missed, "\n".join(missed)


def test_mypy_f7_a_set_display_of_ids_is_judged_item_by_item(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md: "in a set display ..., where equal items are one (`{1, True}` is
    `{1}`), an item is refused only when no earlier item the store takes may equal it".
    ``store.get_many(Prof, {1, True})`` asks for the one id ``1``, ``delete_many(Prof, {7,
    0, False})`` for ``7`` and ``0``: both run, yet each is a ``[redmodel]`` error (ids'
    set displays are judged item by item, without update's equal-item rule)."""
    report, _ = user
    _runs(prof, store, "b7")
    missed = user_mypy.unmet(_USER_CODE, report, "F7")
    assert not missed, "\n".join(missed)


def test_mypy_f8_a_receiver_typed_by_a_type_variable_bound_to_store_is_not_judged(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md: "every method that takes a model, on `Store`, ... is refused ...
    where the store would refuse it"; "Where the check ends" exempts only a receiver "that
    may be no store". ``where: T``, ``T = TypeVar("T", bound=Store)`` (also a ``Generic[T]``
    class's attribute) is certainly a Store: ``where.get(Prof, "1")`` is refused by the
    store, yet passes mypy (a constrained TypeVar is judged, a bound one is not). Weak."""
    report, _ = user
    user_mypy.refused(prof, store, "b8")
    missed = user_mypy.unmet(_USER_CODE, report, "F8")
    assert not missed, "\n".join(missed)
