"""Issue 13, second attack (FINDINGS-13r F1-F6, F11, F12, F14, F15, F17): transactions of
indexed models commit what a Python model of them says or nothing, equal values have one
entry, and writes of any size and numbers of any kind keep their promises.

The properties draw the kind: a sequence of writes in one transaction (saves, updates,
increments, deletes on an unbucketed and on a bucketed model with a unique field), and
pairs of values equal in Python but written differently (Decimals, datetimes, floats).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import threading
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import redmodel
from tests.conftest import AsyncFacade, dbsize
from tests.index_helpers import dump, flush, plant

# ---- models ---------------------------------------------------------------------------------


@redmodel.model(prefix="t13h")
@attrs.define
class TH:
    color: str = redmodel.field(index=True, default="red")
    n: int = redmodel.field(index=True, default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    price: float = redmodel.field(index="range", default=1.0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="t13b", buckets=4)
@attrs.define
class TB:
    color: str = redmodel.field(index=True, default="red")
    n: int = redmodel.field(index=True, default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    price: float = redmodel.field(index="range", default=1.0)
    id: str = redmodel.key_field(generated=False)


SAME_BUCKET = ["3", "7", "13", "17"]  # one of 4 buckets: one transaction on a cluster


@redmodel.model(prefix="t13e")
@attrs.define
class TEq:
    dec: Decimal | None = redmodel.field(unique=True, default=None)
    when: dt.datetime | None = redmodel.field(unique=True, default=None)
    f: float | None = redmodel.field(unique=True, default=None)
    decs: list[Decimal] = redmodel.field(index=True, factory=list)
    floats: list[float] = redmodel.field(index=True, factory=list)
    g: float | None = redmodel.field(index=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="t13t")
@attrs.define
class TTags:
    tags: list[str] = redmodel.field(index=True, factory=list)
    color: str = redmodel.field(index=True, default="red")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="t13p")
@attrs.define
class TPlain:
    price: float = 0.0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="t13l", layout="flat")
@attrs.define
class TFlat:
    price: float = 0.0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="t13r")
@attrs.define
class TRange:
    price: float = redmodel.field(index="range", default=0.0)
    id: str = redmodel.key_field(generated=False)


def _transact(store: Any, body: Any) -> Any:
    """Run ``body(tx)`` (which only queues writes) as a transaction on any shell."""
    if isinstance(store, AsyncFacade):
        async def fn(tx: Any) -> Any:
            return body(tx)

        return store.transaction(fn)()
    return store.transaction(body)()


@pytest.fixture(params=["sync", "async", "cluster"])
def shell(request: pytest.FixtureRequest) -> Any:
    """Store, AsyncStore (through the facade) and a cluster Store; ``model`` is TH on one
    server (TB on the cluster, where an indexed model needs buckets)."""
    if request.param == "sync":
        return redmodel.Store(request.getfixturevalue("redis_client"))
    if request.param == "async":
        client = request.getfixturevalue("redis_client")
        facade = AsyncFacade(redmodel.AsyncStore.from_url(request.getfixturevalue("redis_url")),
                             client)
        request.addfinalizer(facade.close)
        return facade
    return redmodel.Store(request.getfixturevalue("redis_cluster_client"))


def _models(store: Any) -> list[type]:
    return [TB] if store.cluster else [TH, TB]


# ---- F1, F2: a transaction commits whole, or refuses before MULTI --------------------------


def test_increments_of_an_equality_indexed_int_follow_each_other(shell: Any) -> None:
    """F1: update, incr, incr of one object (and incr, update, incr): each write names the
    entry its predecessors leave; everything commits."""
    a = SAME_BUCKET[0]
    for model in _models(shell):
        shell.save(model(color="red", n=5, id=a))

        def body(tx: Any, model: Any = model) -> None:
            tx.update(model, a, color="blue")
            tx.incr(model, a, "n", 1)
            tx.incr_fields(model, a, {"n": 1, "price": 0.5})
            tx.update(model, a, n=-20)
            tx.incr(model, a, "n", 3)

        _transact(shell, body)
        got = shell.get(model, a)
        assert (got.color, got.n, got.price) == ("blue", -17, 1.5)
        assert shell.find(model, n=-17).ids() == [a]
        assert shell.find(model, n=5).ids() == shell.find(model, n=7).ids() == []
        assert shell.verify(model) == []


def test_a_raw_command_that_moves_an_indexed_int_is_no_conflict(store: redmodel.Store) -> None:
    """The one thing a transaction cannot follow: a raw HSET of an equality-indexed int
    before an incr of it. The commit refuses it before MULTI as a TransactionError that
    says nothing was written (decided in session 25: it used to fail inside EXEC after the
    other writes were applied) -- never a ConflictError (which invites a retry that would
    only fail again)."""
    store.save(TH(n=1, id="a"))

    def body(tx: Any) -> None:
        tx.update(TH, "a", color="blue")
        tx.command("HSET", "t13h:a", "n", "40")
        tx.incr(TH, "a", "n", 1)

    with pytest.raises(redmodel.TransactionError, match="nothing was written") as info:
        store.transaction(body)()
    assert not isinstance(info.value, redmodel.ConflictError)
    assert store.get(TH, "a") == TH(n=1, id="a")


def test_a_unique_value_taken_refuses_the_transaction_before_multi(shell: Any) -> None:
    """F2: a save or update to a unique value a live object holds raises
    UniqueViolationError and nothing of the transaction is written."""
    a, b, c = SAME_BUCKET[:3]
    for model in _models(shell):
        flush(shell.client)
        shell.save_many([model(sku="TAKEN", id=a), model(id=b)])
        before = dump(shell.client)
        for write in (lambda tx, m=model: tx.save(m(color="green", sku="TAKEN", id=c)),
                      lambda tx, m=model: tx.update(m, b, sku="TAKEN")):
            def body(tx: Any, write: Any = write, m: Any = model) -> None:
                tx.update(m, b, color="blue")
                tx.incr(m, b, "n", 1)
                write(tx)

            with pytest.raises(redmodel.UniqueViolationError):
                _transact(shell, body)
            assert dump(shell.client) == before, model
        if not isinstance(shell, AsyncFacade):
            with pytest.raises(redmodel.UniqueViolationError), \
                    redmodel.transactions.Transaction(shell) as tx:
                tx.save(model(sku="TAKEN", id=c))
            assert dump(shell.client) == before


def test_a_value_given_up_earlier_in_the_transaction_is_free(store: redmodel.Store) -> None:
    """Unbucketed: the holder gives the value up (an update, a delete) earlier in the same
    transaction, so a later write takes it; two writes taking one value are refused."""
    store.save_many([TH(sku="X", id="a"), TH(sku="Y", id="b")])
    store.transaction(lambda tx: (tx.update(TH, "a", sku=None), tx.save(TH(sku="X", id="c")),
                               tx.delete(TH, "b"), tx.update(TH, "c", sku="Y"),
                               tx.save(TH(sku="X", id="d"))))()
    assert store.get_by(TH, sku="Y").id == "c" and store.get_by(TH, sku="X").id == "d"
    before = dump(store.client)
    with pytest.raises(redmodel.UniqueViolationError):
        store.transaction(lambda tx: (tx.save(TH(sku="Z", id="e")), tx.save(TH(sku="Z", id="f"))))()
    assert dump(store.client) == before
    assert store.verify(TH) == []


# ---- F3, F4: bucketed unique values in transactions --------------------------------------------


@pytest.mark.parametrize("where", ["one server", "cluster"])
def test_bucketed_save_then_update_and_delete_then_save(request: pytest.FixtureRequest,
                                                        where: str) -> None:
    name = "redis_client" if where == "one server" else "redis_cluster_client"
    store = redmodel.Store(request.getfixturevalue(name))
    a, b, e = SAME_BUCKET[:3]
    pend: dict[str, Any] = {}

    def save_update(tx: Any) -> None:
        tx.save(TB(sku="U1", id=a))
        pend["u"] = tx.update(TB, a, color="blue", sku="U2")

    store.transaction(save_update)()
    got = store.get(TB, a)
    assert (got.color, got.sku, pend["u"].value) == ("blue", "U2", True)
    assert store.get_by(TB, sku="U1") is None
    store.save(TB(sku="U1", id=e))  # given up by the transaction: free at once

    store.save(TB(sku="B", id=b))
    store.transaction(lambda tx: (tx.delete(TB, b), tx.save(TB(color="green", sku="B", id=b))))()
    assert store.get_by(TB, sku="B").color == "green"
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(TB(sku="B", id=SAME_BUCKET[3]))
    store.transaction(lambda tx: (tx.update(TB, b, sku="C"), tx.update(TB, b, sku="B")))()
    assert store.get_by(TB, sku="B").id == b and store.get_by(TB, sku="C") is None
    assert store.verify(TB) == []


# ---- the property: a transaction does what a Python model says, or nothing -----------------


IDS = SAME_BUCKET[:3]
SKUS = st.sampled_from(["A", "B", "C", None])
OPS = st.one_of(
    st.tuples(st.just("save"), st.sampled_from(IDS), st.sampled_from(["red", "blue"]),
              st.integers(-3, 3), SKUS),
    st.tuples(st.just("update"), st.sampled_from(IDS),
              st.fixed_dictionaries({}, optional={"color": st.sampled_from(["red", "green"]),
                                                  "sku": SKUS, "n": st.integers(-3, 3)})
              .filter(bool)),
    st.tuples(st.just("incr"), st.sampled_from(IDS), st.integers(-2, 2)),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
)


def _expected(model: type, before: dict[str, dict[str, Any]], ops: list[Any]
              ) -> tuple[dict[str, dict[str, Any]], type[Exception] | None]:
    """The documented semantics: writes apply in order; a unique value another object
    holds refuses the whole transaction (nothing written) -- on a bucketed model held
    before the transaction, or claimed by another object's earlier write in it and not
    given up by a write in between (claims are made before MULTI; docs/transactions.md);
    an incr of a missing object fails inside EXEC (NotFoundError) and the other writes
    apply."""
    state = {k: dict(v) for k, v in before.items()}
    claimed: dict[str, set[str]] = {}
    missing = False

    def taken(i: str, sku: str | None) -> bool:
        if sku is None:
            return False
        if model is TH:
            return any(o != i and v["sku"] == sku for o, v in state.items())
        return (any(o != i and v["sku"] == sku for o, v in before.items())
                or bool(claimed.get(sku, set()) - {i}))

    def give_up(i: str, new: str | None) -> None:
        old = state[i]["sku"] if i in state else None
        if old is not None and old != new:
            claimed.get(old, set()).discard(i)

    for op in ops:
        kind, i = op[0], op[1]
        if kind == "save":
            _, _, color, n, sku = op
            if taken(i, sku):
                return before, redmodel.UniqueViolationError
            give_up(i, sku)
            claimed.setdefault(sku, set()).add(i) if sku else None
            state[i] = {"color": color, "n": n, "sku": sku}
        elif kind == "update":
            if i not in state:
                continue
            values = op[2]
            if ("sku" in values and values["sku"] != state[i]["sku"]) or model is TB:
                if "sku" in values and taken(i, values["sku"]):
                    return before, redmodel.UniqueViolationError
                if "sku" in values:
                    give_up(i, values["sku"])
                if values.get("sku"):
                    claimed.setdefault(values["sku"], set()).add(i)
            state[i].update(values)
        elif kind == "incr":
            if i not in state:
                missing = True
                continue
            state[i]["n"] += op[2]
        else:
            give_up(i, None)
            state.pop(i, None)
    return state, (redmodel.NotFoundError if missing else None)


@pytest.mark.parametrize("model", [TH, TB], ids=["single", "bucketed"])
@given(seed=st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(["red", "blue"]),
                               st.integers(-3, 3)), max_size=3, unique_by=lambda t: t[0]),
       skus=st.permutations(["A", "B", "C"]), ops=st.lists(OPS, min_size=1, max_size=6))
def test_a_transaction_commits_what_a_python_model_says_or_nothing(
        store: redmodel.Store, model: Any, seed: list[Any], skus: list[str],
        ops: list[Any]) -> None:
    flush(store.client)
    before = {i: {"color": c, "n": n, "sku": skus[j] if j % 2 == 0 else None}
              for j, (i, c, n) in enumerate(seed)}
    store.save_many([model(id=i, **v) for i, v in before.items()])

    def body(tx: Any) -> None:
        for op in ops:
            if op[0] == "save":
                tx.save(model(color=op[2], n=op[3], sku=op[4], id=op[1]))
            elif op[0] == "update":
                tx.update(model, op[1], **op[2])
            elif op[0] == "incr":
                tx.incr(model, op[1], "n", op[2])
            else:
                tx.delete(model, op[1])

    want, error = _expected(model, before, ops)
    event(f"outcome: {error.__name__ if error else 'committed'}")
    state_before = dump(store.client)
    if error is None:
        store.transaction(body)()
    else:
        with pytest.raises(error):
            store.transaction(body)()
    if error is redmodel.UniqueViolationError:
        assert dump(store.client) == state_before  # nothing written
    got = {}
    for i in IDS:
        obj = store.get(model, i)
        if obj is not None:
            got[i] = {"color": obj.color, "n": obj.n, "sku": obj.sku}
    assert got == want
    for i, v in want.items():
        assert i in store.find(model, n=v["n"]).ids()
        assert i in store.find(model, color=v["color"]).ids()
        if v["sku"] is not None:
            assert store.get_by(model, sku=v["sku"]).id == i
    for sku in {"A", "B", "C"} - {v["sku"] for v in want.values()}:
        assert store.get_by(model, sku=sku) is None
    assert store.verify(model) == []


# ---- F6: concurrent increments -------------------------------------------------------------


@pytest.mark.parametrize("where", ["one server", "cluster"])
def test_concurrent_increments_of_an_equality_indexed_int_all_land(
        request: pytest.FixtureRequest, where: str) -> None:
    """F6: several clients incrementing (and incr_fields-ing) one equality-indexed int by
    different amounts; every call lands, the entries follow."""
    server = request.getfixturevalue("redis_server" if where == "one server" else
                                     "redis_cluster")
    model = TH if where == "one server" else TB
    client = server.client()
    store = redmodel.Store(client)
    store.save(model(n=0, id="a"))
    errors: list[str] = []

    def work(amount: int) -> None:
        mine = server.client()
        s = redmodel.Store(mine)
        try:
            for k in range(60):
                try:
                    if k % 2:
                        s.incr(model, "a", "n", amount)
                    else:
                        s.incr_fields(model, "a", {"n": amount, "price": 1.0})
                except redmodel.RedmodelError as e:
                    errors.append(repr(e))
        finally:
            mine.close()

    threads = [threading.Thread(target=work, args=(amount,)) for amount in (1, 2, -3, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = store.get(model, "a")
    assert got.n == 60 * (1 + 2 - 3 + 7) and got.price == 1.0 + 4 * 30
    assert store.find(model, n=got.n).ids() == ["a"]
    assert store.verify(model) == []
    client.close()


# ---- F5: lists of any length ---------------------------------------------------------------


def test_an_object_with_20000_list_entries_can_be_rewritten_and_deleted(
        store: redmodel.Store) -> None:
    store.save(TTags([f"t{i}" for i in range(20_000)], id="x"))
    store.update(TTags, "x", color="blue")  # not loaded: the script asks for 20k keys
    store.save(TTags([f"u{i}" for i in range(9_000)], color="green", id="x"))
    assert store.find(TTags, tags="u8999").ids() == ["x"]
    assert store.find(TTags, tags="t5").ids() == []
    store.transaction(lambda tx: tx.update(TTags, "x", color="black"))()
    assert store.delete(TTags, "x") is True
    assert store.find(TTags, tags="u5").ids() == [] and store.verify(TTags) == []
    assert dbsize(store.client) == 0  # (but the model registry's record)


# ---- F14: a refused save_many / delete_many says what it wrote -----------------------------


def test_a_refused_save_many_says_which_objects_were_written(store: redmodel.Store) -> None:
    store.save(TH(sku="TAKEN", id="x"))
    objs = [TH(sku=f"N{i}", id=f"n{i}") for i in range(10)]
    objs[5] = TH(sku="TAKEN", id="n5")
    with pytest.raises(redmodel.UniqueViolationError) as info:
        store.save_many(objs, chunk_size=4)
    written = sorted(o.id for o in objs if store.exists(TH, o.id))
    assert written == ["n0", "n1", "n2", "n3", "n4", "n6", "n7"]  # chunks 1 and 2
    assert sorted(k.split(":")[1] for k in info.value.written) == written
    assert sorted(k.split(":")[1] for k in info.value.not_written) == ["n5", "n8", "n9"]
    assert "nothing was written" not in str(info.value)
    assert "7 were written" in str(info.value) and "t13h:n5 was not written" in str(info.value)


def test_a_refused_delete_many_says_which_objects_were_deleted(store: redmodel.Store) -> None:
    store.save_many([TH(color=c, id=c) for c in ("a", "b", "c")])
    plant(store.client, "t13h:%idx:eq:color:b", "string")
    with pytest.raises(redmodel.ServerError) as info:
        store.delete_many(TH, ["a", "b", "c"])
    assert info.value.written == ("t13h:a", "t13h:c")
    assert info.value.not_written == ("t13h:b",)
    assert "nothing was written" not in str(info.value)
    assert "t13h:b was not written" in str(info.value)
    assert store.get(TH, "b") is not None and store.get(TH, "a") is None


# ---- F11, F17: equal values, one entry; NaN in no index -------------------------------------


@st.composite
def equal_pairs(draw: Any) -> tuple[str, Any, Any]:
    """(field, a, b): a == b in Python, written differently."""
    kind = draw(st.sampled_from(["dec", "when", "f"]))
    if kind == "dec":
        if draw(st.booleans()):
            a = Decimal(draw(st.sampled_from(["0", "-0", "0E-5", "0.000", "-0E+3"])))
            b = Decimal(draw(st.sampled_from(["0", "0.0", "-0.00"])))
        else:
            digits = draw(st.integers(1, 10**40))
            exp = draw(st.integers(-30, 30))
            a = Decimal(digits).scaleb(exp)
            zeros = draw(st.integers(1, 12))
            sign, ds, e = a.as_tuple()
            assert isinstance(e, int)
            b = Decimal((sign, ds + (0,) * zeros, e - zeros))
            if draw(st.booleans()):
                a, b = -a, -b
        return "dec", a, b
    if kind == "when":
        base = draw(st.datetimes(min_value=dt.datetime(1900, 1, 1),
                                 max_value=dt.datetime(2200, 1, 1)))
        tz_a = dt.timezone(dt.timedelta(minutes=draw(st.integers(-23 * 60, 23 * 60))))
        tz_b = dt.timezone(dt.timedelta(minutes=draw(st.integers(-23 * 60, 23 * 60))))
        a = base.replace(tzinfo=tz_a)
        return "when", a, a.astimezone(tz_b)
    a = draw(st.sampled_from([0.0, -0.0, 3.0, -7.0, 2.0**60]))
    b = -a if a == 0 else int(a)  # -0.0 == 0.0; 3 == 3.0 (an int a float holds exactly)
    return "f", a, b


@given(pair=equal_pairs())
def test_values_equal_in_python_have_one_entry(store: redmodel.Store,
                                               pair: tuple[str, Any, Any]) -> None:
    """F11: whatever their text, values equal in Python are one unique value, get_by and
    find with either find the holder, and the stored field keeps what was given."""
    field, a, b = pair
    assert a == b
    flush(store.client)
    store.save(TEq(id="a", **{field: a}))
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(TEq(id="b", **{field: b}))
    assert store.get_by(TEq, **{field: b}).id == "a"
    assert store.find(TEq, **{field: b}).ids() == store.find(TEq, **{field: a}).ids() == ["a"]
    kept = getattr(store.get(TEq, "a"), field)
    assert kept == a and str(kept) == str(a)  # as given, text included
    if field == "dec":
        store.save(TEq(decs=[a], id="c"))
        assert store.find(TEq, decs=b).ids() == ["c"]
    if field == "f":
        store.save(TEq(floats=[a], g=a, id="c"))
        assert store.find(TEq, floats=b).ids() == store.find(TEq, g=b).ids() == ["c"]
    assert store.verify(TEq) == []


@pytest.mark.parametrize("values", [
    {"f": math.nan}, {"g": math.nan}, {"floats": [1.0, math.nan]},
    {"dec": Decimal("NaN")}, {"decs": [Decimal("1"), Decimal("NaN")]},
], ids=["unique-float", "eq-float", "float-list", "unique-decimal", "decimal-list"])
def test_nan_is_refused_by_every_index(store: redmodel.Store, values: dict[str, Any]) -> None:
    """F17: a NaN equals nothing: a save of it in any indexed field is refused before any
    write, an update too, and find / get_by with one are QueryErrors."""
    store.save(TEq(id="a"))
    before = dump(store.client)
    with pytest.raises(redmodel.ValidationError):
        store.save(TEq(id="b", **values))
    with pytest.raises(redmodel.ValidationError):
        store.update(TEq, "a", **values)
    with pytest.raises(redmodel.ValidationError):
        store.transaction(lambda tx: tx.save(TEq(id="b", **values)))()
    assert dump(store.client) == before
    name, value = next(iter(values.items()))
    probe = value[-1] if isinstance(value, list) else value
    with pytest.raises(redmodel.QueryError):
        store.find(TEq, **{name: probe}).ids()
    if name in ("f", "dec"):
        with pytest.raises(redmodel.QueryError):
            store.get_by(TEq, **{name: probe})


# ---- F12: a float field takes only the ints a float holds exactly ---------------------------


@pytest.mark.parametrize("model", [TRange, TPlain, TFlat], ids=["range", "plain", "flat"])
def test_a_float_field_refuses_an_int_it_would_round(store: redmodel.Store, model: Any) -> None:
    store.save(model(price=1.0, id="a"))
    before = dump(store.client)
    for bad in (2**53 + 1, -(2**60) - 1, 10**23):
        with pytest.raises(redmodel.ValidationError):
            store.save(model(price=bad, id="b"))
        if model is not TFlat:
            with pytest.raises(redmodel.ValidationError):
                store.update(model, "a", price=bad)
        with pytest.raises(redmodel.ValidationError):
            store.incr(model, "a", "price", bad)
    assert dump(store.client) == before
    store.save(model(price=2**60, id="c"))  # a float holds this int exactly
    assert store.get(model, "c").price == 2**60
    if model is TRange:
        assert store.find(TRange, price=2**60).ids() == ["c"]
        with pytest.raises(redmodel.QueryError):
            store.find(TRange, price=2**53 + 1).ids()


# ---- F15: a float incr stores what a save of the sum would ---------------------------------


FLOATS = st.floats(-1e17, 1e17, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("model", [TRange, TPlain, TFlat], ids=["range", "plain", "flat"])
@given(start=FLOATS, amounts=st.lists(FLOATS, min_size=1, max_size=4))
def test_float_increments_add_as_python_and_store_the_shortest_text(
        store: redmodel.Store, model: Any, start: float, amounts: list[float]) -> None:
    flush(store.client)
    store.save(model(price=start, id="a"))
    want = start
    for amount in amounts:
        want += amount
        assert store.incr(model, "a", "price", amount) == want
    assert store.get(model, "a").price == want
    stored = (store.client.hget("t13r:a" if model is TRange else "t13p:a", "price")
              if model is not TFlat else store.client.get("t13l:a:price"))
    assert stored == repr(want).encode()
    if model is TRange:
        assert store.find(TRange, price=want).ids() == ["a"]


def test_decimal_canonical_text_is_exact_beyond_28_digits(store: redmodel.Store) -> None:
    """Decimal.normalize() rounds to the context's 28 digits: canonical text must not, or
    two different values would share one unique entry."""
    a = Decimal("1." + "0" * 40 + "1")
    b = Decimal("1." + "0" * 40 + "2")
    assert a != b
    store.save(TEq(dec=a, id="a"))
    store.save(TEq(dec=b, id="b"))  # not a unique violation
    with decimal.localcontext(decimal.Context(prec=5)):
        assert store.get_by(TEq, dec=b).id == "b"


def test_a_wrong_typed_index_key_refuses_the_whole_transaction_before_multi(
        store: redmodel.Store) -> None:
    """Decided for issue 13 (attack 13s, G11; transactions.md): a key a queued script would
    touch that holds the wrong type is found at commit, before MULTI (TYPE of every such
    key along with the prefetch), so the whole transaction is refused with a ServerError
    naming the key, with the reindex advice, and nothing of it is written. (It used to be
    found inside EXEC, where the other writes landed.)"""
    store.save(TH(id="a"))
    plant(store.client, "t13h:%idx:eq:color:bad", "string")
    before = dump(store.client)

    def body(tx: Any) -> None:
        tx.update(TH, "a", color="blue")
        tx.save_many([TH(id="b"), TH(color="bad", id="c")])

    with pytest.raises(redmodel.ServerError) as info:
        store.transaction(body)()
    text = str(info.value)
    assert "t13h:%idx:eq:color:bad" in text and "reindex" in text
    assert "nothing of the transaction was written" in text
    assert dump(store.client) == before
    with pytest.raises(redmodel.ServerError, match="nothing of the transaction was written"):
        store.transaction(lambda tx: (tx.update(TH, "a", color="green"),
                                   tx.update(TH, "a", color="bad")))()
    assert dump(store.client) == before


def _wide(prefix: str, indexed: bool) -> Any:
    """A model of 4,500 int fields (9,000 HSET arguments), one of them indexed."""
    fields = {f"f{i}": attrs.field(default=i, type=int) for i in range(4_500)}
    fields["color"] = redmodel.field(index=indexed, default="red", type=str)
    fields["id"] = redmodel.key_field(generated=False, type=str)
    return redmodel.model(prefix=prefix)(attrs.make_class(f"Wide{prefix}", fields))


@pytest.mark.parametrize("indexed", [False, True], ids=["plain", "indexed"])
def test_an_object_with_thousands_of_fields_is_saved_by_scripts(store: redmodel.Store,
                                                                indexed: bool) -> None:
    """F5's kind for fields: the save scripts (a TTL, None fields, an indexed model) set
    and delete fields in parts, never unpacking 9,000 arguments into one call."""
    wide = _wide("t13w" + ("i" if indexed else "p"), indexed)
    obj = wide(id="a")
    store.save(obj, ttl=60)
    assert store.get(wide, "a").f4499 == 4499
    store.update(wide, "a", **{f"f{i}": -i for i in range(4_500)})
    assert store.get(wide, "a").f4499 == -4499
    if indexed:
        assert store.find(wide, color="red").ids() == ["a"]
    assert store.delete(wide, "a") is True
