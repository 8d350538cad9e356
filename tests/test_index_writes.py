"""Writes of indexed models are all or nothing (issue 13, item 1).

For random models (a random choice of indexed fields: equality, range, unique, lists) and
random values (NaN, infinities, -0.0, floats a hair apart, ints beyond 2**53 and 2**63,
empty, huge and non-UTF-8 text, ids full of ``: { } * % \\``), with a key of the wrong
type planted beforehand where a write may touch it (the object's key, an equality set,
the range set, the record, all-ids and expiry sets, a unique hash), every write either
applies fully (the object and every entry)
or changes nothing (a dump of the whole keyspace, types, values and TTLs, is unchanged);
when it applies, ``verify`` finds no problem it did not find before.
Through every shell: sync, asyncio, cluster (bucketed models), asyncio cluster.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._errors import RedmodelError
from redmodel._models._specs import spec_of
from tests.index_helpers import dump, flush, plant
from tests.strategies import ids as any_ids

# name -> (type, index option)
PALETTE: dict[str, tuple[Any, Any]] = {
    "i_eq": (int, True),
    "i_rng": (int, "range"),
    "i_uq": (int, "unique"),
    "f_eq": (float, True),
    "f_rng": (float, "range"),
    "s_eq": (str, True),
    "s_uq": (str, "unique"),
    "tags": (list[str], True),
    "b_eq": (bool, True),
    "d_rng": (decimal.Decimal, "range"),
    "t_rng": (dt.datetime, "range"),
    "n": (int, False),
}
INTS = [f for f, (tp, _) in PALETTE.items() if tp is int]

_MODELS: dict[tuple[tuple[str, ...], bool], type] = {}


def model_of(fields: tuple[str, ...], buckets: bool) -> type:
    """One model per choice of fields (every field optional, default None)."""
    found = _MODELS.get((fields, buckets))
    if found is None:
        attrs_: dict[str, Any] = {}
        for name in fields:
            tp, option = PALETTE[name]
            if option == "unique":
                f = redmodel.field(unique=True, type=tp | None, default=None)
            elif option:
                f = redmodel.field(index=option, type=tp | None, default=None)
            else:
                f = attrs.field(type=tp | None, default=None)
            attrs_[name] = f
        attrs_["id"] = redmodel.key_field(generated=False, type=str)
        name = f"M{len(_MODELS)}"
        cls = attrs.make_class(name, attrs_)
        found = redmodel.model(prefix=name.lower(), buckets=4 if buckets else None)(cls)
        _MODELS[(fields, buckets)] = found
    return found


models = st.tuples(st.sampled_from(sorted(set(PALETTE) - {"n"})),
                   st.sets(st.sampled_from(sorted(PALETTE)), max_size=4)).map(
    lambda t: tuple(sorted({t[0], *t[1]})))

huge_ints = st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, -(2**63),
                             -(2**63) - 1, 2**64, 0])
ints = st.one_of(st.integers(-(2**65), 2**65), huge_ints, st.integers(-5, 5))
floats = st.one_of(st.floats(), st.sampled_from([0.1 + 0.2, 0.3, -0.0, 5e-324,
                                                 1.7976931348623157e308, 1 / 3]))
surrogates = st.characters(categories=["Cs"])
texts = st.one_of(
    st.text(alphabet=st.characters() | surrogates, max_size=6),
    st.sampled_from(["", ":", "{a}", "*", "%", "\\", "x" * 100_000]),
)
VALUES: dict[Any, st.SearchStrategy[Any]] = {
    int: ints,
    float: floats,
    str: texts,
    list[str]: st.lists(texts, max_size=3),
    bool: st.booleans(),
    decimal.Decimal: st.decimals() | st.sampled_from([decimal.Decimal("1e400")]),
    dt.datetime: st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
}
obj_ids = st.one_of(any_ids, st.sampled_from(["a:b", "{x}", "*", "%", "\\", "a}b{c"]))


def values_for(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={f: st.none() | VALUES[PALETTE[f][0]] for f in fields})


def make(cls: type, id: str, values: dict[str, Any]) -> Any:
    return cls(id=id, **values)


def try_save(store: Any, obj: Any) -> bool:
    try:
        store.save(obj)
    except RedmodelError:
        return False
    return True


def index_keys_of(store: Any, cls: type, obj: Any) -> list[str]:
    """Index keys a write of ``obj`` may touch (where a planted key hurts)."""
    spec = spec_of(cls)
    key = spec.key_for(obj.id)
    tag = spec.tag_of(spec.id_text(obj.id))
    root = spec.index_root(tag)
    d = spec.delimiter
    # the all-ids pages: the directory, the count, the first page (the others' bounds are
    # ids: tests/test_ids_writes.py plants them)
    out = [key, root + "rec", root + "all", root + "exp", root + "ids", root + "idn",
           root + "ids" + d]
    assert spec.indexes is not None
    for line in spec.indexes.entries({n: getattr(obj, n) for n in spec.indexes.fields},
                                     problems=[]):
        kind, name, value = line.split("\x1f", 2)
        if kind == "e":
            out.append(f"{root}eq{d}{name}{d}{value}")
        elif kind == "r":
            out.append(f"{root}rng{d}{name}")
        else:
            out.append(spec.claim_key(name, value))
    return out


operations = st.sampled_from(["save", "save_tracked", "update", "incr", "incr_fields",
                              "delete", "expire", "persist", "save_many"])


@settings(max_examples=max(10, settings.default.max_examples // 3), report_multiple_bugs=False)
@given(data=st.data(), fields=models, op=operations)
def test_a_write_applies_fully_or_changes_nothing(any_store: Any, data: st.DataObject,
                                                  fields: tuple[str, ...], op: str) -> None:
    store = any_store
    if "n" not in fields and op in ("incr", "incr_fields"):
        fields = tuple(sorted({*fields, "n"}))
    cls = model_of(fields, store.cluster)
    client = store.client
    flush(client)
    target = data.draw(obj_ids, label="id")
    seeded = data.draw(values_for(fields), label="stored")
    exists = try_save(store, make(cls, target, seeded))
    other = make(cls, target + "-2", data.draw(values_for(fields), label="other"))
    try_save(store, other)
    new_values = data.draw(values_for(fields), label="new")
    new = make(cls, target, new_values)
    planted = None
    if data.draw(st.booleans(), label="plant?"):
        candidates = index_keys_of(store, cls, new) + index_keys_of(store, cls, other)
        planted = data.draw(st.sampled_from(candidates), label="planted key")
        kind = "set" if planted.endswith("all") else data.draw(
            st.sampled_from(["string", "list"]), label="planted type")
        plant(client, planted, kind)
    before = dump(client)
    # what verify says before (a planted key hides or breaks what was there)
    problems_before = set(store.verify(cls))

    def run() -> Any:
        if op == "save":
            return store.save(new)
        if op == "save_tracked":
            loaded = store.get(cls, target) if exists and planted is None else None
            if loaded is None:
                return store.save(new)
            for name, value in new_values.items():
                setattr(loaded, name, value)
            return store.save(loaded)
        if op == "update":
            if not new_values:
                return None
            return store.update(cls, target, **new_values)
        if op == "incr":
            field = data.draw(st.sampled_from([f for f in fields if f in INTS]), label="field")
            return store.incr(cls, target, field, data.draw(ints, label="amount"))
        if op == "incr_fields":
            changes = data.draw(st.dictionaries(st.sampled_from([f for f in fields if f in
                                INTS]), ints, min_size=1), label="changes")
            return store.incr_fields(cls, target, changes)
        if op == "delete":
            return store.delete(cls, target)
        if op == "expire":
            return store.expire(cls, target, 100)
        if op == "persist":
            return store.persist(cls, target)
        return store.save_many(batch)

    batch = [new]
    if op == "save_many" and planted is None:
        batch += [make(cls, f"{target}-{i}", data.draw(values_for(fields), label="many"))
                  for i in range(3)]
    try:
        run()
        event(f"{op}: applied")
    except RedmodelError as e:
        event(f"{op}: refused ({type(e).__name__})")
        if planted is not None and isinstance(e, redmodel.ServerError):
            # named as is, or as its repr (how messages show a key with characters that
            # do not print, so that no key can forge a line of a log)
            assert planted in str(e) or repr(planted) in str(e), \
                "the error names the wrong-typed key"
        after = dump(client)
        if len(batch) == 1:
            assert after == before, f"{op} raised {e!r} and changed the keyspace"
            return
        # save_many: one atomic write per object; a refusal by the server (here a unique
        # value another object of the batch still held when it came) leaves the others
        # of its chunk written: each object is written whole or not at all
        if isinstance(e, redmodel.ValidationError):
            assert after == before, "a bad object anywhere: nothing is sent"
        spec = spec_of(cls)
        for obj in batch:
            key = spec.key_for(obj.id).encode()
            assert store.get(cls, obj.id) == obj or after.get(key) == before.get(key)
        assert [p for p in store.verify(cls) if p not in problems_before] == []
        return
    problems = [p for p in store.verify(cls) if p not in problems_before]
    assert problems == [], f"{op} applied, but its index is not in step: {problems}"
    if op in ("save", "save_many"):
        assert store.get(cls, target) == new


# ---- one path for indexed fields (item 2) ---------------------------------------------------


def declare_qh(buckets: int | None) -> type:
    @redmodel.model(prefix="qh", buckets=buckets)
    @attrs.define
    class QH:
        price: float = redmodel.field(index="range", default=0.0)
        quantity: int = redmodel.field(index="range", default=0)
        color: str = redmodel.field(index=True, default="black")
        n: int = redmodel.field(index=True, default=0)
        sku: str | None = redmodel.field(unique=True, default=None)
        big: int = 0
        id: str = redmodel.key_field(generated=False)

    return QH


QHS = {False: declare_qh(None), True: declare_qh(4)}
SAME_BUCKET = ["3", "7", "13", "17"]  # ids in one of 4 buckets: one transaction on a cluster


@pytest.fixture
def QH(any_store: Any) -> type:
    return QHS[any_store.cluster]


def test_incr_fields_moves_the_entries_of_indexed_fields(any_store: Any, QH: type) -> None:
    store = any_store
    store.save(QH(price=13.0, quantity=5, id="1"))
    assert store.incr_fields(QH, "1", {"price": 0.5, "quantity": -1}) == {
        "price": 13.5, "quantity": 4}
    assert store.find(QH, price=redmodel.between(13.4, 13.6)).ids() == ["1"]
    assert store.find(QH, quantity=4).ids() == ["1"]
    assert store.find(QH, quantity=5).ids() == []
    assert store.verify(QH) == []


def test_an_overflow_of_the_second_field_changes_nothing(any_store: Any, QH: type) -> None:
    store = any_store
    store.save(QH(quantity=5, big=2**63 - 8, id="1"))
    before = dump(store.client)
    with pytest.raises(redmodel.ConditionFailedError) as info:
        store.incr_fields(QH, "1", {"quantity": 1, "big": 10})
    e = info.value
    assert (e.field, e.kind, e.bound, e.current, e.change, e.limit) == (
        "big", "ceiling", 2**63 - 1, 2**63 - 8, 10, "64-bit counter")
    assert dump(store.client) == before
    with pytest.raises(redmodel.ConditionFailedError, match="64-bit counter"):
        store.incr(QH, "1", "big", 8)
    assert store.incr(QH, "1", "big", 7) == 2**63 - 1
    assert dump(store.client) != before


def test_a_range_indexed_int_stays_within_2_53(any_store: Any, QH: type) -> None:
    store = any_store
    with pytest.raises(redmodel.ValidationError, match=r"2\*\*53") as info:
        store.save(QH(quantity=2**53 + 1, id="1"))
    assert (info.value.model, info.value.field) == ("QH", "quantity")
    assert info.value.key is not None and info.value.key.endswith("1")
    store.save(QH(quantity=2**53 - 1, id="1"))
    before = dump(store.client)
    with pytest.raises(redmodel.ConditionFailedError, match="exact range of a range index"):
        store.incr(QH, "1", "quantity", 2)
    with pytest.raises(redmodel.ConditionFailedError, match="exact range"):
        store.incr_fields(QH, "1", {"quantity": 2, "n": 1})
    assert dump(store.client) == before, "nothing changed, not even n"
    assert store.incr(QH, "1", "quantity", 1) == 2**53
    assert store.find(QH, quantity=2**53).ids() == ["1"]
    assert store.find(QH, quantity=redmodel.gt(2**53 - 1)).ids() == ["1"]
    assert store.verify(QH) == []


def test_floor_and_ceiling_on_indexed_counters(any_store: Any, QH: type) -> None:
    store = any_store
    store.save(QH(quantity=1, n=5, id="1"))
    before = dump(store.client)
    with pytest.raises(redmodel.ConditionFailedError, match="below its floor 0"):
        store.incr_fields(QH, "1", {"quantity": -2, "n": 1}, floor={"quantity": 0})
    with pytest.raises(redmodel.ConditionFailedError, match=r"above its ceiling 5\.5"):
        store.incr_fields(QH, "1", {"n": 1}, ceiling={"n": 5.5})
    assert dump(store.client) == before
    assert store.incr_fields(QH, "1", {"quantity": -1, "n": 1}, floor={"quantity": 0},
                             ceiling={"n": 6.5}) == {"quantity": 0, "n": 6}
    assert store.find(QH, n=6, quantity=0).ids() == ["1"]
    assert store.find(QH, n=5).ids() == []
    assert store.verify(QH) == []


def test_every_write_path_keeps_the_entries_in_step(any_store: Any, QH: type) -> None:
    store = any_store
    store.save_many([QH(price=float(i), quantity=i, color="red", n=i, sku=f"S{i}", id=str(i))
                     for i in range(6)])
    hat = store.get(QH, "1")
    hat.color = "green"
    hat.price = 0.1 + 0.2
    store.save(hat)  # tracked: only what changed
    store.save(QH(price=0.3, color="blue", sku="S2", id="2"))  # whole, not loaded
    assert store.update(QH, "3", color="white", sku="T3", quantity=7) is True
    assert store.incr(QH, "4", "n", 10) == 14
    assert store.incr_fields(QH, "5", {"n": -1, "quantity": 2, "price": 0.25}) == {
        "n": 4, "quantity": 7, "price": 5.25}
    assert store.expire(QH, "0", 100) is True
    assert store.persist(QH, "0") is True
    assert store.delete(QH, "0") is True
    assert store.delete_many(QH, ["5", "nope"]) == 1
    assert store.verify(QH) == []
    assert store.find(QH, color="red").ids() == ["4"]
    assert store.find(QH, n=14).ids() == ["4"]
    assert store.find(QH, quantity=7).ids() == ["3"]
    assert store.find(QH).order_by("price").ids() == ["2", "1", "3", "4"]
    assert store.find(QH, price=0.1 + 0.2).ids() == ["1"], "0.1 + 0.2 is not 0.3"
    assert store.get_by(QH, sku="T3").id == "3"
    assert store.get_by(QH, sku="S3") is None


def declare_sparse(buckets: int | None) -> type:
    @redmodel.model(prefix="qsparse", buckets=buckets)
    @attrs.define
    class Sparse:
        color: str | None = redmodel.field(index=True, default=None)
        note: str | None = None
        id: str = redmodel.key_field(generated=False)

    return Sparse


SPARSE = {False: declare_sparse(None), True: declare_sparse(4)}


def test_an_object_whose_fields_all_go_stays_an_object(any_store: Any) -> None:
    """A write that leaves the hash without a field (no pairs, or an HDEL of the last ones)
    keeps a placeholder: the object exists, one by one and batched alike."""
    store = any_store
    Sparse = SPARSE[store.cluster]
    store.save_many([Sparse("red", "x", id="1"), Sparse("red", "y", id="2")])
    assert store.update(Sparse, "1", color=None, note=None) is True
    store.save(Sparse(id="2"))
    store.save_many([Sparse(id="3"), Sparse("blue", id="4")])
    store.save_many([Sparse(id="4")])
    for i in "1234":
        assert store.get(Sparse, i) == Sparse(id=i)
    assert sorted(store.find(Sparse).ids()) == ["1", "2", "3", "4"]
    assert store.find(Sparse, color="red").ids() == []
    assert store.verify(Sparse) == []


def test_a_tracked_save_of_an_object_deleted_meanwhile_recreates_it(any_store: Any,
                                                                      QH: type) -> None:
    store = any_store
    store.save(QH(color="red", id="1"))
    hat = store.get(QH, "1")
    store.delete(QH, "1")
    assert store.save(hat).endswith("1")  # unchanged since it was loaded
    assert store.get(QH, "1") == hat
    assert store.find(QH, color="red").ids() == ["1"]
    assert store.verify(QH) == []


def test_a_save_many_with_one_bad_object_anywhere_sends_nothing(any_store: Any,
                                                                 QH: type) -> None:
    store = any_store
    hats = [QH(price=float(i), id=f"h{i}") for i in range(100)]
    hats[57].price = float("nan")
    with pytest.raises(redmodel.ValidationError, match="NaN") as info:
        store.save_many(hats, chunk_size=10)
    assert (info.value.model, info.value.field) == ("QH", "price")
    assert dump(store.client) == {}
    hats[57].price = 57.0
    assert store.save_many(hats, chunk_size=10) == 100
    assert store.find(QH).count() == 100 and store.verify(QH) == []


def test_a_wrong_typed_key_refuses_the_write_and_names_the_key(any_store: Any,
                                                                QH: type) -> None:
    store = any_store
    store.save(QH(color="red", id="1"))
    key = spec_of(QH).index_root(spec_of(QH).tag_of("1")) + "eq:color:green"
    plant(store.client, key, "string")
    before = dump(store.client)
    with pytest.raises(redmodel.ServerError) as info:
        store.update(QH, "1", color="green")
    assert key in str(info.value) and key in info.value.keys
    assert "nothing was written" in str(info.value)
    assert dump(store.client) == before


def test_a_wrong_typed_claim_hash_refuses_the_save(any_store: Any) -> None:
    """Bucketed model: the unique value's claim lives in its own bucket's hash."""
    store = any_store
    BH = QHS[True]
    claims = spec_of(BH).claim_key("sku", "A")
    plant(store.client, claims, "list")
    before = dump(store.client)
    with pytest.raises(redmodel.ServerError) as info:
        store.save(BH(sku="A", id="1"))
    assert claims in str(info.value)
    assert dump(store.client) == before


# ---- transactions ------------------------------------------------------------------------


@pytest.fixture(params=["one server", "cluster"])
def sync_store(request: pytest.FixtureRequest) -> redmodel.Store:
    name = "redis_client" if request.param == "one server" else "redis_cluster_client"
    return redmodel.Store(request.getfixturevalue(name))


def test_transactions_keep_the_entries_in_step(sync_store: redmodel.Store) -> None:
    store = sync_store
    QH = QHS[store.cluster]
    a, b, c, d = SAME_BUCKET
    store.save_many([QH(color="red", n=1, quantity=1, id=i) for i in (a, b)])

    @store.transaction
    def work(tx: redmodel.transactions.Transaction) -> None:
        tx.update(QH, a, color="green")  # not loaded: its record is read first
        tx.incr(QH, a, "n", 5)  # an equality-indexed counter of the same object
        tx.incr(QH, b, "quantity", 2)
        tx.save_many([QH(color="blue", sku="X", id=c), QH(color="blue", id=d)])
        tx.delete(QH, b)

    work()
    assert store.find(QH, color="green", n=6).ids() == [a]
    assert store.find(QH, color="blue").ids() == sorted([c, d])
    assert store.get(QH, b) is None
    assert store.verify(QH) == []

    with redmodel.transactions.Transaction(store) as tx:  # one object written twice in one MULTI
        tx.save(QH(color="white", sku="Y", id=a))
        tx.update(QH, a, color="black", sku="Z")
    assert store.find(QH, color="black").ids() == [a]
    assert store.get_by(QH, sku="Z").id == a and store.get_by(QH, sku="Y") is None
    assert store.verify(QH) == []


def test_bucketed_unique_values_work_in_transactions(sync_store: redmodel.Store) -> None:
    """Claims live in their value's bucket (another slot): made before MULTI, confirmed
    after EXEC, released when the transaction does not commit."""
    store = sync_store
    BH = QHS[True]
    a, b, c, d = SAME_BUCKET
    with redmodel.transactions.Transaction(store) as tx:
        first = tx.save(BH(sku="A", id=a))
        tx.save(BH(sku="B", id=b))
    assert first.value.endswith(a)
    assert store.get_by(BH, sku="A").id == a
    with pytest.raises(redmodel.UniqueViolationError), \
            redmodel.transactions.Transaction(store) as tx:
        tx.save(BH(sku="C", id=c))
        tx.save(BH(sku="A", id=d))
    assert store.get(BH, c) is None and store.get(BH, d) is None
    store.save(BH(sku="C", id=d))  # C was released at once, not after 10 s
    assert store.get_by(BH, sku="C").id == d

    @store.transaction
    def swap(tx: redmodel.transactions.Transaction) -> None:
        tx.get(BH, a)
        tx.update(BH, a, sku="Z")
        tx.incr(BH, a, "n", 1)

    swap()
    assert store.get_by(BH, sku="Z").id == a
    store.save(BH(sku="A", id=c))  # given up by the transaction: free again
    assert store.verify(BH) == []


def test_async_transactions_keep_the_entries_in_step(redis_url: str, redis_client: Any
                                                     ) -> None:
    """(``redis_client`` empties the server: QHS' two models share a prefix, and the
    model registry refuses the second on a server that holds the first.)"""
    import asyncio  # noqa: PLC0415

    QH = QHS[False]

    async def main() -> None:
        store = redmodel.AsyncStore.from_url(redis_url)
        await store.save(QH(color="red", n=1, id="1"))

        @store.transaction
        async def work(tx: redmodel.transactions.AsyncTransaction) -> None:
            tx.update(QH, "1", color="green")
            tx.incr(QH, "1", "n", 2)
            tx.save(QH(color="blue", sku="S", id="2"))

        await work()
        assert await store.find(QH, color="green", n=3).ids() == ["1"]
        assert await store.verify(QH) == []
        await store.aclose()

    asyncio.run(main())


# ---- exact numbers (item 3) -------------------------------------------------------------------


def test_counters_are_exact_across_64_bits(any_store: Any, QH: type) -> None:
    store = any_store
    store.save(QH(big=2**63 - 15, id="1"))  # ...793
    assert store.incr(QH, "1", "big", 1) == 2**63 - 14  # was ...792 through a float
    assert store.incr_fields(QH, "1", {"big": -(2**63) + 14}) == {"big": 0}
    assert store.incr(QH, "1", "big", -(2**63)) == -(2**63)
    assert store.get(QH, "1").big == -(2**63)


def test_flat_counters_are_exact(any_store: Any) -> None:
    @redmodel.model(prefix="flatc", layout="flat", hash_tag=True)
    @attrs.define
    class Counter:
        value: int = 0
        id: str = redmodel.key_field(generated=False)

    store = any_store
    store.save(Counter(2**62 + 1, id="c"))
    assert store.incr(Counter, "c", "value", 2**62 - 2) == 2**63 - 1
    with pytest.raises(redmodel.ConditionFailedError, match="64-bit counter"):
        store.incr(Counter, "c", "value", 1)
    assert store.get(Counter, "c").value == 2**63 - 1


def test_equality_entries_of_ints_are_their_exact_text(any_store: Any, QH: type) -> None:
    store = any_store
    store.save_many([QH(n=2**62, id="1"), QH(n=2**62 + 1, id="2"), QH(n=-(2**63), id="3")])
    assert store.find(QH, n=2**62 + 1).ids() == ["2"]
    assert store.find(QH, n=2**62).ids() == ["1"]
    assert store.find(QH, n=-(2**63)).ids() == ["3"]
    assert store.incr(QH, "2", "n", 2**62 - 2) == 2**63 - 1
    assert store.find(QH, n=2**63 - 1).ids() == ["2"]
    assert store.verify(QH) == []


def test_scores_are_exact(any_store: Any, QH: type) -> None:
    store = any_store
    store.save_many([QH(price=0.1 + 0.2, id="a"), QH(price=0.3, id="b"),
                     QH(price=-0.0, id="c"), QH(price=5e-324, id="d")])
    assert store.find(QH).order_by("price").ids() == ["c", "d", "b", "a"]
    assert store.find(QH, price=0.3).ids() == ["b"]
    assert store.find(QH, price=0.0).ids() == ["c"], "-0.0 == 0.0"
    assert store.verify(QH) == []
