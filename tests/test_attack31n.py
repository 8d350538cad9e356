"""Attack 31N: the mypy plugin after fix 31K, held to docs/models.md "Type checking (mypy)"
and "Where the check ends": "the plugin refuses a call only when it is certain the store
refuses it; where it cannot see through a type or an argument it reports nothing".

User code is one string, checked once by mypy --strict with the project's configuration and
plugin (a subprocess, seeded cache, as tests/test_attack31k.py does), then imported and run
against the test server: every ``# Fn ok`` line runs (a mypy error there is a false
positive: it breaks users' CI), every ``f<n>_bad_*`` function is refused by the store
(ValidationError) and its ``# Fn E`` line must be a ``[redmodel]`` error (a refusal missed).
Each test FAILS on main as of this attack (/work/notes/s31/ATK-N-FINDINGS.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import redmodel
from tests import user_mypy

ROOT = Path(__file__).resolve().parent.parent

_USER_CODE = '''\
from __future__ import annotations

from typing import Any, TypeVar

import attrs

import redmodel
from redmodel import AsyncStore, Store

T = TypeVar("T")

@attrs.define
class Dto:
    id: str = "x"

@redmodel.model(prefix="atk31n")
@attrs.define
class Num:
    id: int = redmodel.key_field(generated=False)
    n: int = 0

class AppStore(Store):
    """A store of one's own: its methods take what they declare."""
    def get_from_path(self, model: type[T], id: str) -> T | None:
        return self.get(model, int(id))
    def audit(self, obj: Dto) -> str:
        return obj.id
    def labels(self, ids: str) -> list[str]:
        return ids.split(",")
    def bump(self, model: type, id: str, field: str) -> int:
        return int(self.incr(model, int(id), field))
    def update(self, model: type, id: Any, /, **values: Any) -> bool:
        return super().update(model, int(id), **values)

class AsyncAppStore(AsyncStore):
    async def get_from_path(self, model: type[T], id: str) -> T | None:
        return await self.get(model, int(id))

def f1(store: AppStore) -> None:
    store.save(Num(id=1))
    store.get_from_path(Num, "1")  # F1 ok
    store.audit(Dto())  # F1 ok
    store.labels("a,b")  # F1 ok
    store.bump(Num, "1", "n")  # F1 ok
    store.update(Num, "1", n=4)  # F1 ok

async def f1_async(astore: AsyncAppStore) -> None:
    await astore.get_from_path(Num, "1")  # F1 ok

def f2_bad_bytearray(store: Store) -> None:
    store.get_many(Num, bytearray(b"12"))  # F2 E: [redmodel]

def f2_bad_memoryview(store: Store) -> None:
    store.delete_many(Num, memoryview(b"12"))  # F2 E: [redmodel]

def f3_bad_floor(store: Store) -> None:
    store.incr_fields(Num, 1, {"n": 1}, floor={"n": True})  # F3 E: [redmodel]

def f3_bad_ceiling(store: Store) -> None:
    store.incr_fields(Num, 1, {"n": 1}, ceiling={"n": False})  # F3 E: [redmodel]

def f4(store: Store, maybe: int | None, flag: int | bool, some: str | list[int]) -> None:
    store.save(Num(id=2))
    store.get(Num, maybe)  # F4 ok
    store.exists(Num, flag)  # F4 ok
    store.get_many(Num, some)  # F4 ok
'''

@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[int, list[str]], ModuleType]:
    return user_mypy.user_code(tmp_path_factory, "usercode_atk31n", _USER_CODE)


def _unmet(report: dict[int, list[str]], finding: str) -> list[str]:
    return user_mypy.unmet(_USER_CODE, report, finding)


_refused = user_mypy.refused


def test_mypy_f1_methods_of_ones_own_store_subclass_are_not_judged_as_the_stores(
        user: Any, redis_url: str) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it"; the rule applies to "every method that takes a model, on
    `Store`, `AsyncStore`, `Transaction` and `AsyncTransaction`" (docs/design.md: "a
    subclass of `Store` gets the sync signatures"). A user's own methods on a Store
    subclass (``get_from_path(model, id: str)``, ``audit(obj: Dto)``, ``labels(ids:
    str)``, an ``update`` override taking a str id) all run, yet get ``[redmodel]``
    errors: the plugin applies the store's parameter-name rule to any method of any
    subclass."""
    report, module = user
    store = module.AppStore.from_url(redis_url)
    astore = module.AsyncAppStore.from_url(redis_url)
    try:
        module.f1(store)

        async def run() -> None:
            try:
                await module.f1_async(astore)
            finally:
                await astore.aclose()
        asyncio.run(run())
        store.delete(module.Num, 1)
    finally:
        store.close()
    assert not _unmet(report, "F1"), "\n".join(_unmet(report, "F1"))


def test_mypy_f2_a_bytearray_or_memoryview_as_ids_is_refused(user: Any,
                                                             store: redmodel.Store) -> None:
    """docs/models.md: refused (code `redmodel`) "where the store would refuse it for a
    reason the types show: ... a `str` or `bytes` given as the ids of
    `get_many`/`delete_many` ... any other iterable is accepted". The store refuses a
    ``bytearray`` and a ``memoryview`` too ("ids must be an iterable such as a list ...,
    got bytearray"); mypy passes both (and the docs call every other iterable accepted)."""
    report, module = user
    _refused(module, store, "f2")
    assert not _unmet(report, "F2"), "\n".join(_unmet(report, "F2"))


def test_mypy_f3_a_bool_floor_or_ceiling_of_incr_fields_is_refused(user: Any,
                                                                   store: redmodel.Store) -> None:
    """docs/models.md: what the store refuses is a `redmodel` error: "... an int field
    incremented by a `float`, any by a `bool`; also for the literal keys and amounts of
    `incr_fields`' `changes`, `floor` and `ceiling` dicts". ``floor={"n": True}`` is
    refused by the store ("a floor must be a number, got bool"); mypy passes it (the
    plugin checks the amounts of ``changes`` only)."""
    report, module = user
    store.save(module.Num(id=1))
    try:
        _refused(module, store, "f3")
    finally:
        store.delete(module.Num, 1)
    assert not _unmet(report, "F3"), "\n".join(_unmet(report, "F3"))


def test_mypy_f4_an_id_of_a_union_type_that_may_be_right_is_not_refused(
        user: Any, store: redmodel.Store) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it ... a false error would break your CI". An id typed
    ``int | None``, ``int | bool`` or ids typed ``str | list[int]`` (an int / a list at run
    time: the call runs) get ``[redmodel]`` errors: any member the store would refuse
    makes the plugin refuse the call."""
    report, module = user
    module.f4(store, 2, 2, [2])
    store.delete(module.Num, 2)
    assert not _unmet(report, "F4"), "\n".join(_unmet(report, "F4"))
