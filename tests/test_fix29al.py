"""Fix 29AL (/work/notes/s29/FIX-AL-NOTES.md): property tests of each kind attack 29AL
found (tests/test_attack29al.py holds its cases).

- F1: an increment of a field the object stores nowhere counts from its default; a
  default no counter holds (an int outside the signed 64-bit range, a float inf or nan)
  is refused with ConditionFailedError, nothing written, whatever the amount; a bound is
  compared with it; when the object stores the field the default plays no part.
- F2: a tracked partial save writes only the leaves its writer changed: a value read
  under an old name moves only when written, so another writer's change survives.
- F3/F4: index=/unique=/key= on an init=False field, in every container shape, is a
  ModelDefinitionError naming it.
- F5/F6: the mypy plugin flags a functools.partial of an async def given to a Store's
  transaction (every form) and transaction(async_fn).bind(store); bind refuses it at
  run time too.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import redmodel
from tests import user_mypy
from tests.conftest import AsyncFacade

ROOT = Path(__file__).resolve().parent.parent
INT64 = (-(2**63), 2**63 - 1)
_SEQ = itertools.count()


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Store, or an AsyncStore behind the sync facade; ``.client`` for raw commands."""
    client = request.getfixturevalue("redis_client")
    if request.param == "sync":
        store = redmodel.Store(client, registry=False)
        store.client = client  # type: ignore[attr-defined]
        yield store
        return
    facade = AsyncFacade(redmodel.AsyncStore.from_url(
        request.getfixturevalue("redis_url"), registry=False), client)
    yield facade
    facade.close()


def _is_async(store: Any) -> bool:
    return isinstance(store, AsyncFacade)


# ---- F1: defaults no counter holds --------------------------------------------------------

def _counter(tp: type, default: Any, index: Any) -> type:
    """A model whose counter ``n`` (default ``default``) was added after its objects
    were stored; ``m`` a second counter stored with them."""
    meta = redmodel.field(index=index).metadata if index else {}
    return redmodel.model(prefix=f"fx29al_n{next(_SEQ)}")(attrs.make_class("C", {
        "name": attrs.field(type=str, default=""),
        "m": attrs.field(type=int, default=0),
        "n": attrs.field(type=tp, default=default, metadata=meta),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)}))


def _incr(store: Any, model: type, how: str, amount: Any, floor: Any = None) -> Any:
    if how == "incr":
        return store.incr(model, "1", "n", amount)
    if how == "incr_fields":
        return store.incr_fields(model, "1", {"n": amount})["n"]
    if how == "bound":  # n only bounded, m changed
        store.incr_fields(model, "1", {"m": 1}, floor={"n": floor})
        return None
    if _is_async(store):
        async def atx(tx: Any) -> Any:
            return tx.incr(model, "1", "n", amount)  # queued: not awaited
        return store.transaction(atx)().value

    def tx(tx: Any) -> Any:
        return tx.incr(model, "1", "n", amount)
    return store.transaction(tx)().value


_EDGES = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, -(2**64), 10**19, 10**30,
          -(10**40), 0, 1, -1, 2**53 + 1]
_INTS = st.one_of(st.sampled_from(_EDGES), st.integers(-(2**70), 2**70),
                  st.integers(2**63 - 5, 2**63 + 5), st.integers(-(2**63) - 5, -(2**63) + 5))
_FLOATS = st.one_of(st.sampled_from([math.inf, -math.inf, math.nan, 1.7e308, -1.7e308,
                                     0.0, -0.5]),
                    st.floats(allow_nan=True, allow_infinity=True))


@given(data=st.data())
def test_an_increment_counts_from_a_default_only_a_counter_holds(
        shell: Any, data: st.DataObject) -> None:
    """A default a counter holds is counted from (refused only if the sum leaves the
    64-bit range / is not finite); one it cannot hold is refused whatever the amount,
    nothing written, the key and field named; stored, the default plays no part."""
    kind = data.draw(st.sampled_from(["int", "float"]))
    how = data.draw(st.sampled_from(["incr", "incr_fields", "tx"]))
    stored = data.draw(st.booleans())
    if kind == "int":
        default = data.draw(_INTS)
        amount: Any = data.draw(st.one_of(st.integers(-3, 3), st.integers(*INT64)))
        index = data.draw(st.sampled_from([None, True]))
    else:
        default = data.draw(_FLOATS)
        amount = data.draw(st.floats(-1e300, 1e300))
        # (a range index refuses a non-finite value: such a default cannot be indexed)
        index = data.draw(st.sampled_from([None, "range"])) if math.isfinite(default) \
            else None
    model = _counter(int if kind == "int" else float, default, index)
    client = shell.client
    client.flushall()
    key = model.__redmodel__.key_for("1")  # type: ignore[attr-defined]
    client.hset(key, mapping={"name": "a", "m": "0", **({"n": "7"} if stored else {})})
    if index:
        shell.reindex(model, progress=False)
    before = client.hgetall(key)
    start = 7 if stored else default
    if kind == "int":
        holds = INT64[0] <= start <= INT64[1]
        total = start + amount
        fits = holds and INT64[0] <= total <= INT64[1] and (
            index != "range" or abs(total) <= 2**53)
    else:
        holds = math.isfinite(start)
        total = float(start) + amount if holds else math.nan
        fits = holds and math.isfinite(total)
    if not fits:
        with pytest.raises(redmodel.ConditionFailedError) as e:
            _incr(shell, model, how, amount)
        assert e.value.key == key and e.value.field == "n" and e.value.limit
        assert client.hgetall(key) == before  # nothing written
    else:
        assert _incr(shell, model, how, amount) == total
        got = shell.get(model, "1")
        assert got is not None and got.n == total
    if index:
        assert shell.verify(model) == []


@given(default=st.one_of(_INTS, st.sampled_from([math.inf, -math.inf, math.nan])),
       floor=st.integers(-(10**19) + 1, 10**19 - 1))
def test_a_bound_on_a_field_stored_nowhere_is_compared_with_its_default(
        redis_client: redis.Redis, default: Any, floor: int) -> None:
    """A floor on a counter stored nowhere compares with what a read gives it (its
    default), exactly; nan is above no floor."""
    if isinstance(default, float):
        floor = max(-(2**53), min(2**53, floor))  # a float's bound is an exact float
    model = _counter(float if isinstance(default, float) else int, default, None)
    store = redmodel.Store(redis_client, registry=False)
    redis_client.flushall()
    key = model.__redmodel__.key_for("1")  # type: ignore[attr-defined]
    redis_client.hset(key, mapping={"name": "a", "m": "0"})
    ok = not (isinstance(default, float) and math.isnan(default)) and default >= floor
    if ok:
        store.incr_fields(model, "1", {"m": 1}, floor={"n": floor})
        assert redis_client.hget(key, "m") == b"1"
    else:
        with pytest.raises(redmodel.ConditionFailedError) as e:
            store.incr_fields(model, "1", {"m": 1}, floor={"n": floor})
        assert e.value.field == "n" and e.value.kind == "floor"
        assert redis_client.hgetall(key) == {b"name": b"a", b"m": b"0"}


# ---- F2: a tracked save writes only what its writer changed ------------------------------

@attrs.define
class Spot:
    city: str = "x"
    zip: int = redmodel.field(default=0, old_names=("pc",))


def _item(indexed: bool) -> type:
    ix: dict[str, Any] = {"index": True} if indexed else {}

    @redmodel.model(prefix=f"fx29al_mv{next(_SEQ)}", track_changes=True)
    @attrs.define
    class Item:
        color: str = redmodel.field(default="red", **ix)
        qty: int = redmodel.field(default=0, old_names=("quant",), **ix)
        spot: Spot = redmodel.field(factory=Spot, old_names=("where",))
        id: str = redmodel.key_field(generated=False)

    return Item


LEAVES = ("color", "qty", "spot.city", "spot.zip")
# every stored name each leaf may be under (current first)
NAMES = {"color": ["color"], "qty": ["qty", "quant"],
         "spot.city": ["spot:city", "where:city"],
         "spot.zip": ["spot:zip", "spot:pc", "where:zip", "where:pc"]}


def _leaves(obj: Any) -> dict[str, Any]:
    return {"color": obj.color, "qty": obj.qty, "spot.city": obj.spot.city,
            "spot.zip": obj.spot.zip}


def _set(obj: Any, leaf: str, value: Any) -> None:
    if leaf.startswith("spot."):
        setattr(obj.spot, leaf[5:], value)
    else:
        setattr(obj, leaf, value)


_VALUE = {"color": st.sampled_from(["red", "blue", "green"]),
          "qty": st.integers(0, 9), "spot.city": st.sampled_from(["NY", "LA", "Oslo"]),
          "spot.zip": st.integers(0, 9)}
_STEP = st.one_of(
    st.tuples(st.just("a_get")),
    st.tuples(st.just("a_set"), st.sampled_from(LEAVES), st.data()),
    st.tuples(st.just("a_save"), st.booleans()),  # force=True or not
    st.tuples(st.just("b_update"), st.sampled_from(LEAVES), st.data()),
    st.tuples(st.just("b_incr"), st.sampled_from(["qty", "spot.zip"]), st.integers(-3, 3)),
    st.tuples(st.just("b_tracked"), st.sampled_from(LEAVES), st.data()),
)


@given(indexed=st.booleans(),
       names=st.fixed_dictionaries({leaf: st.sampled_from(NAMES[leaf]) for leaf in LEAVES}),
       start=st.fixed_dictionaries(_VALUE), steps=st.lists(_STEP, max_size=12))
def test_two_writers_one_tracked_keep_each_others_changes_over_renamed_fields(
        shell: Any, indexed: bool, names: dict[str, str], start: dict[str, Any],
        steps: list[Any]) -> None:
    """Random interleavings of writer A (tracked: get, change leaves, save; sometimes
    force=True) and writer B (update, incr, its own tracked save), over an object whose
    leaves start under current or old names: after each step the object reads as the
    leaves each writer last wrote (A's partial save writes only the leaves A changed
    since its get or last save; its whole save writes all of A's); the index verifies."""
    model = _item(indexed)
    client = shell.client
    client.flushall()
    key = model.__redmodel__.key_for("1")  # type: ignore[attr-defined]
    client.hset(key, mapping={names[leaf]: str(start[leaf]) for leaf in LEAVES})
    if indexed:
        shell.reindex(model, progress=False)
    truth = dict(start)
    a = shell.get(model, "1")
    assert a is not None and _leaves(a) == truth
    base = dict(truth)  # what A's tracked save compares with
    for step in steps:
        op = step[0]
        if op == "a_get":
            a = shell.get(model, "1")
            base = dict(truth)
        elif op == "a_set":
            leaf = step[1]
            _set(a, leaf, step[2].draw(_VALUE[leaf]))
        elif op == "a_save":
            now = _leaves(a)
            if step[1]:
                shell.save(a, force=True)
                truth = dict(now)
            else:
                shell.save(a)
                truth.update({k: v for k, v in now.items() if v != base[k]})
            base = dict(now)
        elif op == "b_update":
            leaf, value = step[1], step[2].draw(_VALUE[step[1]])
            if leaf.startswith("spot."):
                spot = Spot(truth["spot.city"], truth["spot.zip"])
                setattr(spot, leaf[5:], value)
                shell.update(model, "1", spot=spot)
            else:
                shell.update(model, "1", **{leaf: value})
            truth[leaf] = value
        elif op == "b_incr":
            assert shell.incr(model, "1", step[1], step[2]) == truth[step[1]] + step[2]
            truth[step[1]] += step[2]
        else:
            b = shell.get(model, "1")
            leaf, value = step[1], step[2].draw(_VALUE[step[1]])
            _set(b, leaf, value)
            shell.save(b)
            truth[leaf] = value
        got = shell.get(model, "1")
        assert got is not None and _leaves(got) == truth, (step, truth)
    if indexed:
        assert shell.verify(model) == []
        for color in ("red", "blue", "green"):
            assert shell.find(model, color=color).ids() == (
                ["1"] if truth["color"] == color else [])


def test_a_tracked_save_moves_what_it_writes_and_a_written_none_is_not_read_back(
        redis_client: redis.Redis) -> None:
    """A leaf the save writes leaves its old names (a None written is not read back
    through one); a leaf it does not write stays where it is."""

    @redmodel.model(prefix="fx29al_none", track_changes=True)
    @attrs.define
    class Opt:
        note: str | None = redmodel.field(default=None, old_names=("memo",))
        qty: int = redmodel.field(default=0, old_names=("quant",))
        id: str = redmodel.key_field(generated=False)

    store = redmodel.Store(redis_client, registry=False)
    redis_client.flushall()
    redis_client.hset("fx29al_none:1", mapping={"memo": "hi", "quant": "3"})
    a = store.get(Opt, "1")
    assert a is not None and a.note == "hi"
    a.note = None
    store.save(a)
    assert redis_client.hgetall("fx29al_none:1") == {b"quant": b"3"}
    got = store.get(Opt, "1")
    assert got is not None and (got.note, got.qty) == (None, 3)


# ---- F3/F4: init=False fields with index options -------------------------------------------

_OPTIONS = [{"index": True}, {"index": "range"}, {"unique": True}, {"key": True}]


def _opt_meta(option: dict[str, Any]) -> Any:
    if "key" in option:
        return redmodel.key_field(generated=False).metadata
    return redmodel.field(**option).metadata


@pytest.mark.parametrize("option", _OPTIONS, ids=str)
def test_an_option_on_a_top_level_init_false_field_is_refused(option: dict[str, Any]
                                                                ) -> None:
    cls = attrs.make_class("Top", {
        "name": attrs.field(type=int, default=0),
        "x": attrs.field(type=int, default=1, init=False, metadata=_opt_meta(option)),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)})
    with pytest.raises(redmodel.ModelDefinitionError, match=r"\.x\b.*init=False"):
        redmodel.model(prefix="fx29al_top")(cls)


def test_a_model_level_unique_naming_an_init_false_field_is_refused() -> None:
    cls = attrs.make_class("TopU", {
        "a": attrs.field(type=str, default=""),
        "x": attrs.field(type=str, default="v", init=False),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)})
    with pytest.raises(redmodel.ModelDefinitionError, match="'x'"):
        redmodel.model(prefix="fx29al_topu", unique=[("a", "x")])(cls)


_SHAPES = {
    "whole": lambda c: c, "list": lambda c: list[c], "optional": lambda c: c | None,
    "dict": lambda c: dict[str, c], "tuple": lambda c: tuple[c, ...],
    "pair": lambda c: tuple[int, c], "frozenset": lambda c: frozenset[c],
    "codec": lambda c: c,
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
@pytest.mark.parametrize("option", _OPTIONS, ids=str)
@pytest.mark.parametrize("deep", [False, True])
def test_an_option_on_a_nested_init_false_field_is_refused(
        shape: str, option: dict[str, Any], deep: bool) -> None:
    """In a nested class held whole, in a list, dict, tuple, optional, set or encoded
    (and one level deeper): refused, naming the model's field."""
    inner = attrs.make_class("Place", {
        "city": attrs.field(type=str, default="", init=False, metadata=_opt_meta(option)),
        "n": attrs.field(type=int, default=0)}, frozen=shape == "frozenset")
    if deep:
        inner = attrs.make_class("Wrap", {"place": attrs.field(type=inner)},
                                 frozen=shape == "frozenset")
    meta = redmodel.field(codec="json").metadata if shape == "codec" else {}
    cls = attrs.make_class("Outer", {
        "addr": attrs.field(type=_SHAPES[shape](inner), metadata=meta),
        "id": attrs.field(type=str, kw_only=True,
                          metadata=redmodel.key_field(generated=False).metadata)})
    with pytest.raises(redmodel.ModelDefinitionError, match="addr"):
        redmodel.model(prefix="fx29al_nest")(cls)


def test_init_false_fields_without_options_are_still_accepted(
        redis_client: redis.Redis) -> None:
    @redmodel.model(prefix="fx29al_ok")
    @attrs.define
    class Ok:
        name: str = redmodel.field(default="", index=True)
        cache: int = attrs.field(default=0, init=False)
        id: str = redmodel.key_field(generated=False)

    store = redmodel.Store(redis_client, registry=False)
    redis_client.flushall()
    store.save(Ok(name="a", id="1"))
    assert store.find(Ok, name="a").ids() == ["1"]
    assert store.verify(Ok) == []


# ---- F5/F6: mypy ----------------------------------------------------------------------------

_USER_CODE = '''\
from __future__ import annotations

import functools

import redmodel
from redmodel import AsyncStore, RetryPolicy, Store
from redmodel.transactions import AsyncTransaction, Transaction


async def coro(tx: Transaction, n: int) -> None:
    pass


async def acoro(tx: AsyncTransaction, n: int) -> None:
    pass


def sync(tx: Transaction, n: int) -> None:
    pass


def wire(store: Store, astore: AsyncStore, p: RetryPolicy) -> None:
    store.transaction(functools.partial(coro, n=1))  # BAD
    store.transaction(policy=p)(functools.partial(coro, n=1))  # BAD
    redmodel.transaction(store)(functools.partial(coro, n=1))  # BAD
    redmodel.transaction(store, policy=p)(functools.partial(coro, n=1))  # BAD
    store.transact(functools.partial(coro, n=1))  # BAD
    redmodel.transact(store, functools.partial(coro, n=1))  # BAD
    redmodel.transaction(coro).bind(store)  # BAD
    redmodel.transaction()(coro).bind(store)  # BAD
    redmodel.transaction(policy=p)(coro).bind(store)  # BAD
    redmodel.transaction(sync).bind(astore)  # BAD
    redmodel.transaction(acoro).bind(store)  # BAD
    astore.transaction(functools.partial(sync, n=1))  # BAD
    store.transaction(functools.partial(sync, n=1))  # OK
    redmodel.transaction(store)(functools.partial(sync, n=1))  # OK
    store.transact(functools.partial(sync, n=1))  # OK
    astore.transaction(functools.partial(acoro, n=1))  # OK
    redmodel.transaction(sync).bind(store)  # OK
    redmodel.transaction(acoro).bind(astore)  # OK
    redmodel.transaction()(sync).bind(store)  # OK
'''


@pytest.fixture(scope="module")
def mypy_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    path = tmp_path_factory.mktemp("fx29al") / "usercode.py"
    path.write_text(_USER_CODE)
    return user_mypy.mypy_errors(path)


def test_mypy_flags_every_form_of_a_transaction_function_of_the_wrong_kind(
        mypy_lines: dict[int, list[str]]) -> None:
    lines = _USER_CODE.splitlines()
    bad = {n for n, text in enumerate(lines, 1) if text.endswith("# BAD")}
    ok = {n for n, text in enumerate(lines, 1) if text.endswith("# OK")}
    missing = sorted(n for n in bad if not any("[arg-type]" in e for e in mypy_lines.get(n, [])))
    assert missing == [], [lines[n - 1] for n in missing]
    wrong = sorted(n for n in ok if mypy_lines.get(n))
    assert wrong == [], [mypy_lines[n] for n in wrong]
    assert set(mypy_lines) <= bad, mypy_lines


def test_bind_refuses_a_function_of_the_wrong_kind_at_run_time(
        redis_client: redis.Redis, redis_url: str) -> None:
    """transaction(async_fn).bind(Store) is refused at bind (its call would return a
    coroutine a sync caller never awaits: the transaction would silently never run),
    as is a sync function bound to an AsyncStore; right kinds bind and run."""
    store = redmodel.Store(redis_client, registry=False)
    astore = redmodel.AsyncStore.from_url(redis_url, registry=False)

    async def coro(tx: Any, n: int) -> int:
        return n

    def sync(tx: Any, n: int) -> int:
        return n

    with pytest.raises(redmodel.TransactionError, match="async def"):
        redmodel.transaction(coro).bind(store)  # type: ignore[arg-type]
    with pytest.raises(redmodel.TransactionError):
        redmodel.transaction(sync).bind(astore)  # type: ignore[arg-type]
    with pytest.raises(redmodel.TransactionError, match="async def"):
        redmodel.transaction(functools.partial(coro, n=1)).bind(store)  # type: ignore[arg-type]
    assert redmodel.transaction(sync).bind(store)(3) == 3
