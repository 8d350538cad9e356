"""Attack 31K: the mypy plugin after fix 31F, held to docs/models.md "Type checking (mypy)".
User code written from the docs, checked once with mypy --strict and the plugin (the
project's configuration, in a subprocess, as tests/test_attack31f.py does) AND imported and
run against the test server: every ``# Fn ok`` line runs fine (so a mypy error there is a
false positive, which breaks users' CI), every ``# Fn E`` line's function raises the
store's ValidationError (so mypy passing it is a refusal missed). Each test FAILS on main as
of this attack (/work/notes/s31/ATK-K-FINDINGS.md).

docs/models.md: "every method that takes a model ... is refused (code `redmodel`) where the
store would refuse it for a reason the types show"; "Where the check ends: arguments the
plugin cannot see are checked at run time only (... a model class passed as `type`)".
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio

import redmodel
from tests import user_mypy

ROOT = Path(__file__).resolve().parent.parent

_USER_CODE = '''\
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol, TypeVar

import attrs
from typing_extensions import dataclass_transform

import redmodel
from redmodel import AsyncStore, Store
from redmodel.transactions import Transaction

T = TypeVar("T")

@redmodel.model(prefix="atk31kb", key="sku")
@attrs.define
class Item:
    n: int = 0
    sku: int = 0

@redmodel.model(prefix="atk31ks")
@attrs.define
class SubItem(Item):
    extra: str = ""

@redmodel.model(prefix="atk31kp")
@attrs.define
class Plainid:
    n: int = 0
    id: int = 0

def f1_ok(store: Store) -> None:
    store.save(Item(sku=1))
    store.get(Item, 1)  # F1 ok
    store.update(Item, 1, n=2)  # F1 ok
    store.save(SubItem(sku=1))
    store.get(SubItem, 1)  # F1 ok
    store.save(Plainid(id=1))
    store.get(Plainid, 1)  # F1 ok

def f1_bad_item_id(store: Store) -> None:
    store.get(Item, "1")  # F1 E: [redmodel]

def f1_bad_item_update(store: Store) -> None:
    store.update(Item, 1, sku=2)  # F1 E: [redmodel]

def f1_bad_item_incr(store: Store) -> None:
    store.incr(Item, 1, "sku")  # F1 E: [redmodel]

def f1_bad_sub_update(store: Store) -> None:
    store.update(SubItem, 1, sku=2)  # F1 E: [redmodel]

def f1_bad_plain_id(store: Store) -> None:
    store.get(Plainid, "1")  # F1 E: [redmodel]

def f1_bad_plain_update(store: Store) -> None:
    store.update(Plainid, 1, id=2)  # F1 E: [redmodel]

@dataclass_transform(field_specifiers=(attrs.field, redmodel.field, redmodel.key_field))
def entity(cls: type[T]) -> type[T]:
    return attrs.define(cls)

@redmodel.model(prefix="atk31kdt")
@entity
class Tx:
    n: int = 0
    price: float = 0.0
    id: str = redmodel.key_field()

def f2(store: Store) -> None:
    t = Tx(id="t1")
    store.save(t)
    store.update(Tx, "t1", n=1)  # F2 ok
    store.incr(Tx, "t1", "price")  # F2 ok
    if TYPE_CHECKING:
        reveal_type(store.incr(Tx, "t1", "price"))  # F2 N: "float"
    with Transaction(store) as tx:
        tx.incr(Tx, "t1", "n")  # F2 ok

class HasId(Protocol):
    id: str

@redmodel.model(prefix="atk31kh")
@attrs.define
class Hat:
    n: int = 0
    id: str = redmodel.key_field()

def load(store: Store, model: type[HasId], id: str) -> HasId | None:
    return store.get(model, id)  # F3 ok

def load_any(store: Store, model: type[object], id: str) -> object:
    store.exists(model, id)  # F3 ok
    return store.get(model, id)  # F3 ok

def f3(store: Store) -> None:
    store.save(Hat(id="h1"))
    assert load(store, Hat, "h1") is not None
    assert load_any(store, Hat, "h1") is not None

@attrs.define
class Saving:
    def persist(self, store: Store) -> None:
        store.save(self)  # F4 ok

@attrs.define
class Entity:
    id: str = redmodel.key_field()

@redmodel.model(prefix="atk31kc")
@attrs.define
class Cap(Entity, Saving):
    n: int = 0

def save_all(store: Store, items: list[Entity]) -> None:
    store.save_many(items)  # F4 ok

def f4(store: Store) -> None:
    Cap(id="c1").persist(store)
    save_all(store, [Cap(id="c2")])

def f5(store: Store, ids: tuple[str], pair: tuple[str, str]) -> None:
    store.save(Hat(id="h5"))
    store.get(Hat, *ids)  # F5 ok
    store.update(Hat, *ids, n=1)  # F5 ok
    store.incr(Hat, *pair)  # F5 ok
    store.get(Hat, **{"id": "h5"})  # F5 ok
    store.get_many(Hat, *[["h5"]])  # F5 ok
    with Transaction(store) as tx:
        tx.get(Hat, *ids)  # F5 ok

async def f5_async(astore: AsyncStore, ids: tuple[str]) -> None:
    await astore.get(Hat, *ids)  # F5 ok

@redmodel.model(prefix="atk31kday")
@attrs.define
class Day:
    on: dt.date | None = None
    id: dt.date = redmodel.key_field(generated=False)

def f6_bad_id(store: Store) -> None:
    store.get(Day, dt.datetime(2020, 1, 1))  # F6 E: [redmodel]

def f6_bad_value(store: Store) -> None:
    store.update(Day, dt.date(2020, 1, 1), on=dt.datetime(2020, 1, 1))  # F6 E: [redmodel]

cached = redmodel.model(prefix="atk31kv", ttl=60)

@cached
@attrs.define
class Cached:
    n: int = 0
    id: str = redmodel.key_field()

def f7(store: Store) -> None:
    store.save(Cached(id="v1"))  # F7 ok
    store.update(Cached, "v1", n=1)  # F7 ok
'''

@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[int, list[str]], ModuleType]:
    return user_mypy.user_code(tmp_path_factory, "usercode_atk31k", _USER_CODE)


def _unmet(report: dict[int, list[str]], finding: str) -> list[str]:
    return user_mypy.unmet(_USER_CODE, report, finding)


_refused = user_mypy.refused


def test_mypy_f1_the_key_named_by_the_model_option_or_by_default(user: Any, store: redmodel.Store
                                                                  ) -> None:
    """docs/models.md: `@redmodel.model(key=...)`: "name of the id field | the field declared
    with `key=True`, else a field named `id`"; Inheritance: a decorated subclass "inherits
    every option its base was given"; Type checking: an id "that is not of the key field's
    type" and updating "the key field" are refused (code `redmodel`). The plugin knows only
    ``key_field()``/``field(key=True)``: with ``key="sku"`` or a plain ``id: int`` field it
    misses ``store.get(Item, "1")``, ``update(Item, 1, sku=2)``, ``incr(Item, 1, "sku")``
    (all ValidationError at run time); on a subclass of a key_field() model given
    ``key="sku"`` it would refuse the right id and accept updating the real key."""
    report, module = user
    module.f1_ok(store)
    _refused(module, store, "f1")
    assert _unmet(report, "F1") == []


def test_mypy_f2_a_dataclass_transform_attrs_model_has_its_fields(user: Any,
                                                                  store: redmodel.Store) -> None:
    """docs/models.md: "a stored field is one the model's `__init__` takes, named by its
    attribute"; a model is "a class decorated with `@redmodel.model` itself". A model whose
    attrs decorator is the user's own ``@dataclass_transform`` wrapper of ``attrs.define``
    (mypy sees its ``__init__`` and fields) runs fine, but every field is refused: "Tx has
    no field 'n' to update", incr typed ``int | float``."""
    report, module = user
    module.f2(store)
    assert _unmet(report, "F2") == []


def test_mypy_f3_a_model_class_typed_as_a_protocol_or_object_is_not_judged(
        user: Any, store: redmodel.Store) -> None:
    """docs/models.md: "arguments the plugin cannot see are checked at run time only (...
    a model class passed as `type`)"; "an object typed `object`, `Any`, a protocol or a type
    variable is not judged". ``def load(store, model: type[HasId], id)`` (a Protocol) and
    ``model: type[object]`` are refused ("HasId is not a redmodel model") though any model
    class may be passed and the calls run."""
    report, module = user
    module.f3(store)
    assert _unmet(report, "F3") == []


def test_mypy_f4_an_object_typed_by_a_plain_base_or_mixin_of_models(
        user: Any, store: redmodel.Store) -> None:
    """docs/models.md: refused "where the store would refuse it for a reason the types
    show"; the key field may be "declared in a plain attrs base class or mixin of the
    model". A mixin's ``store.save(self)`` and ``save_many(items: list[Entity])`` (Entity a
    plain attrs base of models) are refused by mypy; at run time every object is a model's
    (the type is an upper bound: a subclass of a non-model may be a model)."""
    report, module = user
    module.f4(store)
    assert store.get(module.Cap, "c1") is not None and store.get(module.Cap, "c2") is not None
    assert _unmet(report, "F4") == []


def test_mypy_f5_ids_given_by_star_args_are_not_read_as_one_id(
        user: Any, store: redmodel.Store, redis_server: Any) -> None:
    """docs/models.md: "arguments the plugin cannot see are checked at run time only". The
    id of ``store.get(Hat, *ids)``, ``update(Hat, *ids, n=1)``, ``incr(Hat, *pair)``,
    ``get(Hat, **{"id": ...})``, ``tx.get``/``astore.get`` likewise, is compared whole
    (``tuple[str]`` is not ``str``): a false ``[redmodel]`` error on code that runs."""
    report, module = user
    module.f5(store, ("h5",), ("h5", "n"))

    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await module.f5_async(redmodel.AsyncStore(client), ("h5",))
        finally:
            await client.aclose()
    asyncio.run(run())
    assert _unmet(report, "F5") == []


def test_mypy_f6_a_datetime_for_a_date_id_or_field(user: Any, store: redmodel.Store) -> None:
    """docs/models.md: an id "that is not of the key field's type" and an update value "of
    the wrong type" are refused ("a `bool` for an `int` key too, which the store refuses":
    a subclass the store refuses). The store refuses a ``datetime`` for a ``date`` id or
    field ("expected date, got datetime"); mypy takes it (a subclass)."""
    report, module = user
    _refused(module, store, "f6")
    assert _unmet(report, "F6") == []


def test_mypy_f7_a_model_decorator_kept_in_a_variable(user: Any, store: redmodel.Store) -> None:
    """docs/models.md: "a model is a class decorated with `@redmodel.model` itself"; only
    ``redmodel.model(...)(cls)`` called as a function is named as unseen. A decorator made
    once and reused (``cached = redmodel.model(prefix=..., ttl=60)`` then ``@cached``)
    decorates the class, runs, and is refused: "Cached is not a redmodel model"."""
    report, module = user
    module.f7(store)
    assert _unmet(report, "F7") == []
