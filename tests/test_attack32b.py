"""Attack 32B: the mypy plugin after fix 31N (commit a53c388), held to docs/models.md "Type
checking (mypy)" and "Where the check ends": "the plugin refuses a call only when it is
certain the store refuses it; where it cannot see through a type or an argument it reports
nothing" and "An id, a field value or an `update` value of a subclass the store refuses is
refused as the store refuses it: a `bool` for an `int`/`float`, a `datetime` for a `date`".

User code is one string, checked once by mypy --strict with the project's configuration and
plugin (a subprocess, seeded cache, as tests/test_attack31n.py does), then imported and run
against the test server: every ``# Fn ok`` line runs (a ``[redmodel]`` error there is a
false positive), every ``f<n>_bad_*`` function is refused by the store (ValidationError)
and its ``# Fn E`` line must be a ``[redmodel]`` error. Each test FAILS on main as of this
attack (/work/notes/s32/ATK-B-FINDINGS.md).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import redmodel
from tests.conftest import seeded_mypy_cache

ROOT = Path(__file__).resolve().parent.parent

_USER_CODE = '''\
from __future__ import annotations

import datetime as dt
from typing import Any, Optional, TypeVar

import attrs

import redmodel
from redmodel import Store
from redmodel.transactions import Transaction

T = TypeVar("T")

@attrs.define
class Address:
    zip: int = 0

@redmodel.model(prefix="atk32b")
@attrs.define
class Prof:
    id: int = redmodel.key_field(generated=False)
    scores: list[float] = attrs.field(factory=list)
    weights: dict[str, float] = attrs.field(factory=dict)
    tags: list[int | None] = attrs.field(factory=list)
    counts: tuple[int, ...] = ()
    fs: frozenset[int] = frozenset()
    days: tuple[dt.date, ...] = ()
    maybe: Optional[Address] = None

def f1(store: Store) -> None:
    ints: list[int] = [1, 2]
    halves: dict[str, int] = {"a": 1}
    store.update(Prof, 1, scores=ints)  # F1 ok
    store.update(Prof, 1, weights=halves)  # F1 ok
    store.update(Prof, 1, tags=ints)  # F1 ok

def f2(store: Store) -> Any:
    @store.transaction
    def read(tx: Transaction) -> Any:
        return tx.get_field(Prof, 1, "maybe")  # F2 ok
    return read()

def f2_bad_below_optional(store: Store) -> Any:
    @store.transaction
    def read(tx: Transaction) -> Any:
        return tx.get_field(Prof, 1, "maybe.zip")  # F2 E: [redmodel]
    return read()

def f3_bad_tuple_of_bools(store: Store) -> None:
    store.update(Prof, 1, counts=(True, False))  # F3 E: [redmodel]

def f3_bad_frozenset_of_bools(store: Store) -> None:
    store.update(Prof, 1, fs=frozenset({True}))  # F3 E: [redmodel]

def f3_bad_tuple_of_datetimes(store: Store) -> None:
    store.update(Prof, 1, days=(dt.datetime(2020, 1, 1),))  # F3 E: [redmodel]

class Cache:
    """Not a store: ids are text here."""
    def get(self, model: type[T], id: str) -> T | None:
        return None

def f4(where: Store | Cache) -> None:
    where.get(Prof, "1")  # F4 ok

class AppStore(Store):
    def fetch(self, id: str) -> Prof | None:
        return super().get(Prof, id)  # F5 E: [redmodel]

def f5_bad_super(store: Store) -> None:
    AppStore(store.client).fetch("1")

def f5_bad_bound_method(store: Store) -> None:
    get = store.get
    get(Prof, "1")  # F5 E: [redmodel]
'''

_MARK = re.compile(r"#\s*(F\d+)\s+(ok|E)(?::\s*(.*))?$")


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[int, list[str]], ModuleType]:
    where = tmp_path_factory.mktemp("atk32b")
    path = where / "usercode_atk32b.py"
    path.write_text(_USER_CODE)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--show-error-codes", "--no-error-summary", "--no-pretty",
         "--cache-dir", str(seeded_mypy_cache(where / ".cache")), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    found: dict[int, list[str]] = {}
    for line in done.stdout.splitlines():
        head, _, rest = line.partition(": ")
        if head.rsplit(":", 1)[0].endswith("usercode_atk32b.py") and rest.startswith("error"):
            found.setdefault(int(head.rsplit(":", 1)[1]), []).append(rest)
    spec = importlib.util.spec_from_file_location("usercode_atk32b", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["usercode_atk32b"] = module
    spec.loader.exec_module(module)
    return found, module


def _unmet(report: dict[int, list[str]], finding: str) -> list[str]:
    unmet = []
    for number, text in enumerate(_USER_CODE.splitlines(), 1):
        match = _MARK.search(text)
        if match is None or match[1] != finding:
            continue
        got = report.get(number, [])
        ok = not got if match[2] == "ok" else any(match[3] in e for e in got)
        if not ok:
            unmet.append(f"line {number}: {text.strip()}\n    mypy: {got}")
    return unmet


def _refused(module: ModuleType, store: redmodel.Store, prefix: str) -> None:
    bad = [getattr(module, n) for n in dir(module) if n.startswith(prefix + "_bad")]
    assert bad
    for fn in bad:
        with pytest.raises(redmodel.ValidationError):
            fn(store)


@pytest.fixture
def prof(user: Any, store: redmodel.Store) -> Any:
    _, module = user
    store.save(module.Prof(id=1, maybe=module.Address(zip=3)))
    yield module
    store.delete(module.Prof, 1)


def test_mypy_f1_an_update_value_of_an_invariant_container_the_store_takes(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it ... a false error would break your CI". A ``list[int]``
    for a ``list[float]`` field (or ``list[int | None]``), a ``dict[str, int]`` for a
    ``dict[str, float]``: the store takes each (an int is a float field's value), the
    plugin says "scores of Prof is list[float], not list[int]" (mypy's invariance of
    list/dict, which says nothing about what the store refuses)."""
    report, _ = user
    prof.f1(store)
    assert store.get(prof.Prof, 1).scores == [1, 2]
    assert not _unmet(report, "F1"), "\n".join(_unmet(report, "F1"))


def test_mypy_f2_get_field_of_an_optional_nested_object(user: Any, prof: Any,
                                                        store: redmodel.Store) -> None:
    """docs/models.md: "`tx.get_field(Hat, id, "quantity")` `int | None` ... with the same
    checks as `store.incr`; `tx.get_field` of a nested object (read whole, with `get`) is
    refused". An ``Optional[Address]`` field is stored whole (one value): the store reads
    it (``Address(zip=3)``), the plugin refuses it; a path below it (``"maybe.zip"``) the
    store refuses ("unknown field"), the plugin types it ``int | None``."""
    report, _ = user
    assert prof.f2(store) == prof.Address(zip=3)
    _refused(prof, store, "f2")
    assert not _unmet(report, "F2"), "\n".join(_unmet(report, "F2"))


def test_mypy_f3_bools_and_datetimes_inside_a_tuple_or_frozenset_value(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md: "An id, a field value or an `update` value of a subclass the store
    refuses is refused as the store refuses it: a `bool` for an `int`/`float`, a
    `datetime` for a `date`". ``counts=(True, False)`` for ``tuple[int, ...]``,
    ``frozenset({True})`` for ``frozenset[int]``, ``(datetime(...),)`` for
    ``tuple[date, ...]``: the store refuses each ("expected int, got bool"); mypy passes
    them (tuple/frozenset are covariant, and the plugin checks bool/datetime at the top
    level only; the same in a list is caught only by list's invariance)."""
    report, _ = user
    _refused(prof, store, "f3")
    assert not _unmet(report, "F3"), "\n".join(_unmet(report, "F3"))


def test_mypy_f4_a_receiver_that_may_be_no_store(user: Any, prof: Any) -> None:
    """docs/models.md "Where the check ends": "the plugin refuses a call only when it is
    certain the store refuses it". ``where: Store | Cache`` and ``where.get(Prof, "1")``:
    with a Cache the call runs, yet the plugin reports "the id of Prof is int, not str"
    (the union's Store member is judged as if it were the receiver) -- the same rule fix
    31N applied to a union id."""
    report, _ = user
    prof.f4(prof.Cache())
    assert not _unmet(report, "F4"), "\n".join(_unmet(report, "F4"))


def test_mypy_f5_a_store_method_reached_through_super_or_a_bound_method(
        user: Any, prof: Any, store: redmodel.Store) -> None:
    """docs/models.md: "every method that takes a model, on `Store`, `AsyncStore` ... is
    refused (code `redmodel`) where the store would refuse it for a reason the types show";
    "an id ... that is not of the key field's type (`store.get(Num, "1")` for `id: int`)".
    ``super().get(Prof, id)`` with ``id: str`` in a Store subclass, and ``get =
    store.get; get(Prof, "1")``: the store refuses both, mypy passes both (the method hook
    is not reached through ``super()`` or a bound method held in a variable)."""
    report, _ = user
    _refused(prof, store, "f5")
    assert not _unmet(report, "F5"), "\n".join(_unmet(report, "F5"))
