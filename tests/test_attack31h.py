"""Attack 31H: a signature fuzzer over the public API (Hypothesis drew hostile arguments
for every Store / AsyncStore method, transaction handles, Query, containers, codecs and
the CLI; the fuzzer: /work/notes/s31/atkh-fuzz/fuzz*.py, not kept in the repo). One test
per finding, each holding the code to docs/failures.md:

    "No builtin `OSError`/`ConnectionResetError` leaves redmodel: every exception is a
    redmodel error or a redis-py error. Nor does a builtin `OverflowError`/`ValueError`
    for a bad argument ... The other kinds of argument are checked the same way, with the
    same error"

Each fails now (a builtin TypeError / AttributeError / decimal.InvalidOperation escapes).
Findings: /work/notes/s31/ATK-H-FINDINGS.md. Nothing half-written and no encrypted value
in an error was found (every refusal left the server's keys, TYPE + DUMP + PEXPIRETIME,
unchanged).
"""

from __future__ import annotations

import asyncio
import decimal
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.codecs import _fernet
from redmodel.containers import Queue, WindowCounter

OK = (redmodel.RedmodelError, redis.RedisError)


@redmodel.model(prefix="atk31h")
@attrs.define
class Car:
    model: str = ""
    color: str = redmodel.field(index=True, default="")
    id: str = redmodel.key_field(generated=False)


def _refused(call: Any) -> BaseException:
    with pytest.raises(BaseException) as info:
        call()
    assert isinstance(info.value, OK), f"{type(info.value).__name__}: {info.value}"
    return info.value


def _tx(store: redmodel.Store, fn: Any) -> Any:
    return store.transaction(fn)()


def _atx(url: str, fn: Any) -> Any:
    async def go() -> Any:
        s = redmodel.AsyncStore.from_url(url)
        try:
            @s.transaction
            async def body(tx: Any) -> Any:
                r = fn(tx)
                return await r if asyncio.iscoroutine(r) else r
            return await body()
        finally:
            await s.aclose()
    return asyncio.run(go())


# F1 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [[Car], {"a": 1}], ids=["list", "dict"])
@pytest.mark.parametrize("method", ["count", "sweep", "get", "exists", "delete"])
def test_f1_an_unhashable_model_argument_raises_a_redmodel_error(
        store: redmodel.Store, bad: Any, method: str) -> None:
    """A model argument that is no model: `store.get(None, id)` raises ModelDefinitionError,
    but a list / dict / set there escapes as a builtin TypeError ("unhashable type")."""
    args = (bad,) if method in ("count", "sweep") else (bad, "c1")
    _refused(lambda: getattr(store, method)(*args))


# F2 ------------------------------------------------------------------------------------
_BAD_MODELS = {"None": None, "str": "Car", "int": 5, "dict": {"a": 1}}
_F2 = [(m, b) for m in ("delete", "persist", "expire", "update", "delete_many")
       for b in _BAD_MODELS] + [("get", "dict"), ("incr", "dict")]


@pytest.mark.parametrize(("method", "bad"), _F2, ids=[f"{m}-{b}" for m, b in _F2])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_f2_a_transaction_handle_refuses_a_non_model_with_a_redmodel_error(
        store: redmodel.Store, redis_url: str, bad: Any, method: str, kind: str) -> None:
    """docs/transactions.md: a handle's write "returns a `Pending` whose `.value` is what the
    Store method of the same name returns" and refuses what it refuses: Store raises
    ModelDefinitionError for a model argument that is no model; the handles raise a builtin
    AttributeError ('... has no attribute __name__') or TypeError."""
    args: dict[str, tuple[Any, ...]] = {
        "delete": ("c1",), "persist": ("c1",), "expire": ("c1", 10), "get": ("c1",),
        "update": ("c1",), "incr": ("c1", "n"), "delete_many": (["c1"],)}
    def fn(tx: Any) -> Any:
        return getattr(tx, method)(_BAD_MODELS[bad], *args[method])
    _refused(lambda: _tx(store, fn) if kind == "sync" else _atx(redis_url, fn))


def test_f2_rotate_index_key_refuses_a_non_model(store: redmodel.Store) -> None:
    """The same kind through Store.rotate_index_key: `store.rotate_index_key(object())`
    raises AttributeError where `store.reindex(object())` raises ModelDefinitionError."""
    _refused(lambda: store.rotate_index_key(object()))


# F3 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [None, 1.5j], ids=["None", "complex"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_f3_a_raw_command_name_that_is_not_text_raises_validation_error(
        store: redmodel.Store, redis_url: str, name: Any, kind: str) -> None:
    """docs/failures.md (above); transactions.md raw commands: a bad name raises
    ValidationError, nothing sent (attack 27z F2 fixed bytes that are not UTF-8). A name
    that is None (or a complex) leaves redis-py's packer as a builtin TypeError."""
    def fn(tx: Any) -> Any:
        return tx.command(name, "atk31h:k", "v")
    _refused(lambda: _tx(store, fn) if kind == "sync" else _atx(redis_url, fn))


# F4 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("plan", [None, b"x", "LEN"], ids=["None", "bytes", "str"])
@pytest.mark.parametrize("how", ["run", "run_many"])
def test_f4_run_of_something_that_is_not_a_plan_raises_a_redmodel_error(
        store: redmodel.Store, plan: Any, how: str) -> None:
    """store.md: `run(plan)` / `run_many(*plans)` run plans; something else ('NoneType'
    object is not an iterator; a str: AttributeError 'str' object has no attribute
    'pause') escapes as a builtin error."""
    good = Queue(store, "atk31h_q", int).length_plan()
    _refused(lambda: store.run(plan) if how == "run" else store.run_many(good, plan))


# F5 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cap", [None, "5", decimal.Decimal("sNaN"), []],
                         ids=["None", "str", "sNaN", "list"])
def test_f5_count_plan_cap_is_checked(store: redmodel.Store, cap: Any) -> None:
    """failures.md: "every numeric argument of a public method (... a count ...) is checked
    before anything is sent, and ... a wrong type ... raises ValidationError naming the
    argument". `Query.count_plan(cap=)` compares it unchecked: TypeError, or
    decimal.InvalidOperation for Decimal('sNaN')."""
    store.save(Car(id="c1", color="red"))
    _refused(lambda: store.run(store.find(Car, color="red").count_plan(cap)))


# F6 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tp", [["x"], Car(id="x")], ids=["list", "instance"])
def test_f6_a_container_type_that_is_not_a_type_is_refused(
        store: redmodel.Store, tp: Any) -> None:
    """containers.md: a container holds values of its `type`; a type argument that is
    unhashable (a list, a model instance) escapes as TypeError from the type lookup."""
    _refused(lambda: Queue(store, "atk31h_q", tp).pop_right())


# F7 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("clock", [None, True, 5.0], ids=["None", "bool", "float"])
def test_f7_a_window_counter_clock_that_is_not_callable_is_refused(
        store: redmodel.Store, clock: Any) -> None:
    """A WindowCounter's `clock=` is called on each use; a non-callable is accepted by the
    constructor and then raises a builtin TypeError ('NoneType' object is not callable)."""
    _refused(lambda: WindowCounter(store, "atk31h_wc", clock=clock).incr("u"))


# F8 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("file", [float("nan"), 5, ("a", 1)], ids=["nan", "int", "tuple"])
def test_f8_configure_fernet_file_of_a_wrong_type_raises_a_redmodel_error(
        monkeypatch: pytest.MonkeyPatch, file: Any) -> None:
    """codecs.md: configure_fernet(file=...) reads "a file of keys"; invalid sources raise
    CodecError. A `file=` that is no path leaves as a builtin TypeError from os.fspath."""
    monkeypatch.setattr(_fernet, "_configured", _fernet._configured)
    _refused(lambda: redmodel.codecs.configure_fernet(file=file))


# F9 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_f9_tx_update_of_a_field_named_model_or_id(
        store: redmodel.Store, redis_url: str, kind: str) -> None:
    """docs/transactions.md: `tx.update` returns a Pending whose value is what
    `Store.update` returns. `store.update(Car, "c1", model="T")` updates the field `model`
    (Store.update's `model` and `id` are positional-only); `tx.update(Car, "c1",
    model="T")` raises a builtin TypeError ("got multiple values for argument 'model'")."""
    store.save(Car(id="c1", model="A"))
    assert store.update(Car, "c1", model="B") is True
    def fn(tx: Any) -> Any:
        return tx.update(Car, "c1", model="T")
    try:
        _tx(store, fn) if kind == "sync" else _atx(redis_url, fn)
    except BaseException as e:
        assert isinstance(e, OK), f"{type(e).__name__}: {e}"
    got = store.get(Car, "c1")
    assert got is not None and got.model == "T"
