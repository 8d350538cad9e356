"""Attack 29AL: this session's fixes to indexes, migrations, incr and typing, seen by a
fresh user. Each test holds the code to a sentence of the docs and FAILS on main as of
this attack (/work/notes/s29/ATK-AL-FINDINGS.md)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

import redmodel
from tests import user_mypy

ROOT = Path(__file__).resolve().parent.parent


def _counter(prefix: str, tp: type, default: Any, indexed: bool) -> type:
    """A model whose counter ``n`` was added after its objects were stored."""
    return redmodel.model(prefix=prefix)(attrs.make_class("Counter", {
        "name": attrs.field(type=str, default=""),
        "n": attrs.field(type=tp, default=default,
                         metadata=redmodel.field(index=indexed).metadata),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)}))


# ---- F1: an incr counts from 0 when the default is one no counter holds ------------------

@pytest.mark.parametrize(("tp", "default", "amount", "indexed"), [
    (int, 2**63, -1, False), (int, 2**64, 1, False), (int, -(2**63) - 1, 1, False),
    (int, 2**63, -1, True), (int, 2**64, 0, True),
    (float, float("inf"), 1.0, False), (float, float("-inf"), 1.0, False)])
@pytest.mark.parametrize("how", ["incr", "incr_fields", "tx"])
def test_incr_of_a_default_beyond_a_counter_is_refused_not_counted_from_zero(
        redis_client: redis.Redis, tp: type, default: Any, amount: Any, how: str,
        indexed: bool) -> None:
    """docs/migrations.md, Schema evolution, "field added": "its `default` / `factory`
    applies (an `incr` counts from it, ...)"; docs/store.md: "`incr` and `incr_fields`
    refuse, changing nothing, a result outside Redis' 64-bit integers or an infinite float
    (`ConditionFailedError` with `limit` set)". An object that stores `n` nowhere reads
    its default (2**64, inf); an incr of it counted from 0 instead (2**64 + 1 -> 1, inf +
    1.0 -> 1.0), wrote that, and left the index naming the default (verify non-empty)."""
    store = redmodel.Store(redis_client, registry=False)
    redis_client.flushall()
    model = _counter("atk29al_big", tp, default, indexed)
    redis_client.hset("atk29al_big:1", mapping={"name": "a"})
    if indexed:
        store.reindex(model, progress=False)
    assert store.get(model, "1").n == default  # type: ignore[union-attr]
    with pytest.raises(redmodel.ConditionFailedError):
        if how == "incr":
            store.incr(model, "1", "n", amount)
        elif how == "incr_fields":
            store.incr_fields(model, "1", {"n": amount})
        else:
            store.transaction(lambda tx: tx.incr(model, "1", "n", amount))()
    assert redis_client.hgetall("atk29al_big:1") == {b"name": b"a"}  # nothing changed
    if indexed:
        assert store.verify(model) == []


# ---- F2: a tracked save moving an old name overwrites another writer's value -------------

@attrs.define
class Spot:
    city: str = "x"
    zip: int = 0


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("other", ["update", "incr", "tracked_save", "update_nested",
                                   "incr_nested"])
def test_a_tracked_save_that_moves_an_old_name_keeps_another_writers_change(
        redis_client: redis.Redis, indexed: bool, other: str) -> None:
    """docs/queries.md, How entries stay right: "`save` of an object loaded by `get` sends
    only the fields that changed since ..., so two writers who change different fields of
    one object both keep their change"; docs/migrations.md: a tracked partial save "does
    move values read under an old name". Writer A loads an object whose `qty` (and nested
    `spot`) is under an old name; writer B changes `qty` (update, incr, its own tracked
    save); A changes only `color` and saves: the move wrote A's stale `qty` over B's (an
    incr lost), on indexed and unindexed models alike (AsyncStore too)."""
    ix: dict[str, Any] = {"index": True} if indexed else {}

    @redmodel.model(prefix="atk29al_mv", track_changes=True)
    @attrs.define
    class Item:
        color: str = redmodel.field(default="red", **ix)
        qty: int = redmodel.field(default=0, old_names=("quant",), **ix)
        spot: Spot = redmodel.field(factory=Spot, old_names=("where",))
        id: str = redmodel.key_field(generated=False)

    store = redmodel.Store(redis_client, registry=False)
    redis_client.flushall()
    redis_client.hset("atk29al_mv:1", mapping={"color": "red", "quant": "3",
                                               "where:city": "NY", "where:zip": "4"})
    if indexed:
        store.reindex(Item, progress=False)
    a = store.get(Item, "1")
    assert a is not None and a.qty == 3
    if other == "update":
        store.update(Item, "1", qty=5)
    elif other == "incr":
        store.incr(Item, "1", "qty", 2)
    elif other == "tracked_save":
        b = store.get(Item, "1")
        assert b is not None
        b.qty = 5
        store.save(b)
    elif other == "update_nested":
        store.update(Item, "1", spot=Spot("LA", 9))
    else:
        store.incr(Item, "1", "spot.zip", 5)
    by_b = store.get(Item, "1")
    assert by_b is not None
    a.color = "blue"
    store.save(a)
    got = store.get(Item, "1")
    assert got is not None
    assert (got.color, got.qty, got.spot) == ("blue", by_b.qty, by_b.spot)
    if indexed:
        assert store.verify(Item) == []


# ---- F3, F4: an init=False field with index options ---------------------------------------

def test_an_indexed_init_false_field_is_refused_or_works(redis_client: redis.Redis) -> None:
    """docs/models.md, Errors: "Every error is a `redmodel.RedmodelError`" (and
    `ModelDefinitionError` "at declaration: ... bad option"); ATK-COMMON: an exception
    leaving redmodel that is neither redmodel's nor redis-py's is a finding. A model with
    an `init=False` field declaring `index=True` is accepted, and its first `save` raises a
    bare `KeyError('x')` naming no key. Either the declaration is refused, or it works."""
    cls = attrs.make_class("InitFalse", {
        "name": attrs.field(type=str, default=""),
        "x": attrs.field(type=str, default="v", init=False,
                         metadata=redmodel.field(index=True).metadata),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)})
    try:
        model = redmodel.model(prefix="atk29al_if")(cls)
    except redmodel.ModelDefinitionError:
        return
    store = redmodel.Store(redis_client, registry=False)
    redis_client.flushall()
    obj = model(name="a", id="1")
    store.save(obj)
    assert store.get(model, "1") == obj
    assert store.find(model, x="v").ids() == ["1"]
    assert store.verify(model) == []


@pytest.mark.parametrize("shape", ["whole", "list", "optional"])
@pytest.mark.parametrize("option", [{"index": True}, {"unique": True}])
def test_an_index_option_on_an_init_false_field_of_a_nested_class_is_refused(
        shape: str, option: dict[str, Any]) -> None:
    """docs/models.md, Options: "`index=`, `unique=` or `key=` on a field of a nested
    class (held whole, in a list, dict, tuple or optional) is refused at declaration with
    `ModelDefinitionError`". On a nested field declared `init=False` it is accepted and
    does nothing, silently (the check looks at init fields only)."""
    inner = attrs.make_class("Place", {
        "city": attrs.field(type=str, default="", init=False,
                            metadata=redmodel.field(**option).metadata)})
    tp = {"whole": inner, "list": list[inner], "optional": inner | None}[shape]  # type: ignore[valid-type]
    cls = attrs.make_class("Outer", {
        "addr": attrs.field(type=tp),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)})
    with pytest.raises(redmodel.ModelDefinitionError, match="addr"):
        redmodel.model(prefix="atk29al_nif")(cls)


# ---- F5, F6: mypy --strict with the plugin ----------------------------------------------

_USER_CODE = '''\
from __future__ import annotations

import functools

import redmodel
from redmodel import AsyncStore, Store
from redmodel.transactions import Transaction


async def coro(tx: Transaction, n: int) -> None:
    pass


def sync(tx: Transaction, n: int) -> None:
    pass


def wire(store: Store, astore: AsyncStore) -> None:
    store.transaction(functools.partial(coro, n=1))  # F5
    redmodel.transaction(store)(functools.partial(coro, n=1))  # F5
    astore.transaction(functools.partial(sync, n=1))  # mirror
    store.transaction(functools.partial(sync, n=1))
    redmodel.transaction(coro).bind(store)  # F6
'''


@pytest.fixture(scope="module")
def mypy_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    path = tmp_path_factory.mktemp("atk29al") / "usercode.py"
    path.write_text(_USER_CODE)
    return user_mypy.mypy_errors(path)


def _line(marker: str) -> list[int]:
    return [n for n, text in enumerate(_USER_CODE.splitlines(), 1) if text.endswith(marker)]


def test_mypy_flags_a_partial_of_an_async_def_given_to_a_store_transaction(
        mypy_lines: dict[int, list[str]], redis_client: redis.Redis) -> None:
    """docs/models.md, Type checking (mypy): "a transaction function of the wrong kind is
    an error at the decorator: ... an `async def` given to a `Store`'s transaction
    (`arg-type`, as a sync function given to an `AsyncStore`'s is)". A
    `functools.partial` of an `async def` is refused at run time ("is an async def: its
    transaction needs an AsyncStore") and its mirror (a partial of a sync function given
    to an AsyncStore) is an `arg-type` error, but mypy passes it on a Store."""
    store = redmodel.Store(redis_client, registry=False)

    async def coro(tx: Any, n: int) -> None:
        pass

    with pytest.raises(redmodel.TransactionError, match="async def"):
        store.transaction(functools.partial(coro, n=1))
    assert all(mypy_lines.get(n) for n in _line("# mirror"))
    missing = [n for n in _line("# F5") if not any("[arg-type]" in e for e in
                                                    mypy_lines.get(n, []))]
    assert missing == [], mypy_lines


def test_mypy_flags_an_async_def_bound_to_a_store(mypy_lines: dict[int, list[str]]) -> None:
    """docs/models.md, Type checking (mypy): "an `async def` given to a `Store`'s
    transaction" is an error; docs/transactions.md, Binding the store: without a store,
    "call `fn.bind(store)` to get a bound copy". `redmodel.transaction(coro)` of an `async
    def` whose handle is annotated `Transaction` is typed as a sync
    `TransactionFunction[..., Coroutine]`, so `.bind(store)` with a `Store` passes mypy
    (at run time it is an AsyncTransactionFunction whose call on that Store returns a
    coroutine a sync caller never awaits: the transaction silently never runs)."""
    assert all(mypy_lines.get(n) for n in _line("# F6")), mypy_lines


