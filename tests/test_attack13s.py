"""Second attack on issue 13 (indexes, exact numbers, paging, query limits), as a user with
only the public docs. See /work/notes/FINDINGS-13s.md.

Every ``test_fixed_*`` test (``test_fails_*`` as the attack wrote it) failed on main before
the fixes of branch fix13c and states the promise it checks (or the decided behaviour,
where its docstring says so); the ``test_holds_*`` test is a control.

Findings (severity as found):
- G1 test_fixed_scan_pass_pages_lose_an_object_moving_ahead_of_the_cursor      (medium-high)
- G2 test_fixed_incr_of_a_renamed_field_restarts_from_zero                      (medium)
- G3 test_fixed_concurrent_large_incr_of_equality_indexed_int_raises_conflict   (medium)
- G4 test_fixed_bucketed_tx_refuses_a_value_given_up_earlier_in_the_same_tx     (low-medium)
- G5 test_fixed_datetime_with_sub_second_offset_saves_entries_that_disagree     (low)
- G6 test_fixed_signalling_nan_decimal_in_an_indexed_field_is_a_raw_type_error  (low)
- G7 test_fixed_query_nested_exactly_32_levels_is_refused                       (low)
- G8 test_fixed_incr_of_a_stored_int_beyond_64_bits_is_a_decode_error           (low)
- G9 test_fixed_equality_query_with_out_of_range_instant_is_not_a_query_error   (low)
- G10 test_fixed_plain_list_filter_value_is_silently_one_of                     (low)
- G11 test_fixed_tx_wrongtype_error_claims_other_writes_applied_when_there_are_none (low)
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest

import redmodel
from redmodel import Q

# ---- models ---------------------------------------------------------------------------------


@redmodel.model(prefix="s13b", buckets=4)
@attrs.define
class SB:
    color: str = redmodel.field(index=True, default="red")
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13x")
@attrs.define
class SX:
    color: str = redmodel.field(index=True, default="red")
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13d")
@attrs.define
class SD:
    d: Decimal | None = redmodel.field(index=True, default=None)
    du: Decimal | None = redmodel.field(unique=True, default=None)
    dl: list[Decimal] = redmodel.field(index=True, factory=list)
    id: str = redmodel.key_field(generated=False)


redmodel.configure_index_keys(keys=[redmodel.generate_index_key()])


@redmodel.model(prefix="s13e")
@attrs.define
class SE:
    d: Decimal | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                       default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13q")
@attrs.define
class SQ:
    color: str = redmodel.field(index=True, default="x")
    id: str = redmodel.key_field(generated=False)


def keyspace(client: Any) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key in sorted(client.keys("*")):
        kind = client.type(key).decode()
        if kind == "hash":
            out[key] = (kind, client.hgetall(key))
        elif kind == "set":
            out[key] = (kind, sorted(client.smembers(key)))
        elif kind == "zset":
            out[key] = (kind, client.zrange(key, 0, -1, withscores=True))
        elif kind == "string":
            out[key] = (kind, client.get(key))
        else:
            out[key] = (kind,)
    return out


# ---- G4: bucketed transaction refuses a value released earlier in the same transaction ---


@pytest.mark.parametrize("release", ["update_to_none", "delete"])
def test_fixed_bucketed_tx_refuses_a_value_given_up_earlier_in_the_same_tx(
        store: redmodel.Store, release: str) -> None:
    """FIXED. transactions.md, Indexed models: "a value an earlier write of the same transaction
    gives up is free for a later one (on a bucketed model ... a value held before the
    transaction stays refused)". S1 is held by nobody before the transaction."""

    def fn(tx: Any) -> None:
        tx.save(SB(sku="S1", id="b"))
        if release == "delete":
            tx.delete(SB, "b")
        else:
            tx.update(SB, "b", sku=None)
        tx.save(SB(sku="S1", id="a"))

    # The same writes one by one are accepted (the reference behaviour).
    for w in (lambda: store.save(SX(sku="S1", id="b")),
              (lambda: store.delete(SX, "b")) if release == "delete"
              else (lambda: store.update(SX, "b", sku=None)),
              lambda: store.save(SX(sku="S1", id="a"))):
        w()
    assert store.get_by(SX, sku="S1").id == "a"
    # Unbucketed, in a transaction: accepted too.
    redmodel.transaction(store)(lambda tx: (tx.save(SX(sku="S2", id="b")),
                                         tx.update(SX, "b", sku=None),
                                         tx.save(SX(sku="S2", id="a"))))()
    assert store.get_by(SX, sku="S2").id == "a"

    redmodel.transaction(store)(fn)()  # before the fix: UniqueViolationError "S1 is already taken"
    assert store.get_by(SB, sku="S1").id == "a"
    assert store.verify(SB) == []


# ---- G6: a signalling-NaN Decimal raises a raw TypeError -----------------------------------


@pytest.mark.parametrize("write", ["save_eq", "save_unique", "save_list", "update_eq",
                                   "save_blind"])
def test_fixed_signalling_nan_decimal_in_an_indexed_field_is_a_raw_type_error(
        store: redmodel.Store, write: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """FIXED. queries.md, Exact numbers: "a save of a NaN in an indexed float or Decimal field
    (equality, unique, range, a list item) is refused with ValidationError before anything
    is written". A range field does that for Decimal('sNaN'); equality, unique, list items
    and update raise TypeError("Cannot hash a signaling NaN value") from inside redmodel."""
    from cryptography.fernet import Fernet  # noqa: PLC0415
    monkeypatch.setenv("REDMODEL_FERNET_KEYS", Fernet.generate_key().decode())
    store.save(SD(id="z"))
    before = keyspace(store.client)
    nan = Decimal("sNaN")
    with pytest.raises(redmodel.ValidationError):
        if write == "save_eq":
            store.save(SD(d=nan, id="1"))
        elif write == "save_unique":
            store.save(SD(du=nan, id="1"))
        elif write == "save_blind":
            store.save(SE(d=nan, id="1"))
        elif write == "save_list":
            store.save(SD(dl=[Decimal(1), nan], id="1"))
        else:
            store.update(SD, "z", d=nan)
    assert keyspace(store.client) == before


# ---- G7: the documented nesting limit is off by one --------------------------------------------


def _alternating(levels: int) -> Q:
    q = Q(color="a")
    for i in range(levels):
        q = (q & Q(color="b")) if i % 2 == 0 else (q | Q(color="b"))
    return q


def _nots(levels: int) -> Q:
    q = Q(color="a")
    for _ in range(levels):
        q = ~q
    return q


@pytest.mark.parametrize("shape", ["and_or", "not"])
def test_fixed_query_nested_exactly_32_levels_is_refused(store: redmodel.Store,
                                                         shape: str) -> None:
    """FIXED. queries.md: QueryError for "nesting &, |, ~ more than 32 levels deep". 32 levels is
    not more than 32. Today alternating &/| is refused at 32 levels, and a chain of ~ at 31
    (so the two shapes do not even agree on where the limit is)."""
    build = _alternating if shape == "and_or" else _nots
    assert store.find(SQ, build(30)).count() == 0           # accepted
    with pytest.raises(redmodel.QueryError):
        store.find(SQ, build(33)).count()                   # refused, as documented
    assert store.find(SQ, build(32)).count() == 0           # before the fix: QueryError


# ---- G2: incr of a renamed field starts from 0 and hides the stored value --------------------


@redmodel.model(prefix="s13r")
@attrs.define
class RenOld:
    qty: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13r")
@attrs.define
class RenNew:
    quantity: int = redmodel.field(index=True, default=0, old_names=("qty",))
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13p")
@attrs.define
class PlainOld:
    qty: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13p")
@attrs.define
class PlainNew:
    quantity: int = redmodel.field(default=0, old_names=("qty",))
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("indexed", [True, False])
@pytest.mark.parametrize("call", ["incr", "incr_fields"])
def test_fixed_incr_of_a_renamed_field_restarts_from_zero(
        store: redmodel.Store, indexed: bool, call: str) -> None:
    """FIXED. migrations.md: with old_names=("qty",) "the value under an old name is read"; get()
    shows quantity=7. store.md: incr returns "the new value". incr(+1) returns 1 and the
    object now reads quantity=1: the stored 7 is lost (HINCRBY of the new name, where a
    missing field counts as 0, and the new name wins on read)."""
    old, new = (RenOld, RenNew) if indexed else (PlainOld, PlainNew)
    # two versions of one model as two classes in one process: the registry would take
    # them for two models sharing a prefix (docs/migrations.md: their stores opt out)
    store = redmodel.Store(store.client, registry=False)
    store.save(old(7, id="1"))
    if indexed:
        store.reindex(new, progress=False)
        assert store.find(new, quantity=7).ids() == ["1"]
    assert store.get(new, "1").quantity == 7
    if call == "incr":
        result = store.incr(new, "1", "quantity", 1)
    else:
        result = store.incr_fields(new, "1", {"quantity": 1})["quantity"]
    assert (result, store.get(new, "1").quantity) == (8, 8)   # before the fix: (1, 1)


# ---- G1: pages served from one scan pass lose an object that moves ahead of the cursor ------


@redmodel.model(prefix="s13w")
@attrs.define
class SW:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13wb", buckets=4)
@attrs.define
class SWB:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("desc", [False, True])
@pytest.mark.parametrize("model", [SW, SWB])
@pytest.mark.parametrize("move", ["within_ahead", "past_the_end"])
def test_fixed_scan_pass_pages_lose_an_object_moving_ahead_of_the_cursor(
        store: redmodel.Store, move: str, model: type[SW], desc: bool) -> None:
    """FIXED. queries.md, Pages and cursors: an object whose sort field changes "is placed
    by its new value". Here the object is red throughout and moves, right after the first
    page, from ahead of the cursor to elsewhere ahead of the cursor (within the pass's
    stretch, earlier; or out of it, past the last red): it is shown exactly once, and every
    other red once, pages in order (ascending and descending, one server and 4 buckets)."""
    sign = -1.0 if desc else 1.0
    objs = [model("red" if i % 15 == 0 else "blue", sign * i, id=f"{i:05d}")
            for i in range(3000)]
    store.save_many(objs)
    reds = [o for o in objs if o.color == "red"]                   # 200 reds among 3,000
    query = store.find(model, color="red").order_by("-price" if desc else "price")
    pages = query.pages(10)
    seen = [o.id for o in next(pages)]                             # reds 0..9 shown
    mover = reds[50]
    new_price = {"within_ahead": reds[30].price + sign * 0.5,      # still ahead of the cursor
                 "past_the_end": sign * 1e6}[move]                 # out of the stretch
    store.update(model, mover.id, price=new_price)
    prices = []
    for page in pages:
        seen += [o.id for o in page]
        prices += [o.price for o in page]
    assert Counter(seen)[mover.id] == 1
    assert sorted(seen) == sorted(o.id for o in reds)
    assert prices == sorted(prices, reverse=desc)


def test_holds_scan_pass_pages_place_an_object_that_keeps_its_rank(store: redmodel.Store) -> None:
    """Control for the test above: the same move by +0.5 (its rank unchanged) is shown once,
    as is every other red."""
    objs = [SW("red" if i % 15 == 0 else "blue", float(i), id=f"{i:05d}") for i in range(3000)]
    store.save_many(objs)
    reds = [o for o in objs if o.color == "red"]
    pages = store.find(SW, color="red").order_by("price").pages(10)
    seen = [o.id for o in next(pages)]
    store.update(SW, reds[50].id, price=reds[50].price + 0.5)
    for page in pages:
        seen += [o.id for o in page]
    assert sorted(seen) == sorted(o.id for o in reds)


# ---- G8: incr of a stored int beyond 64 bits is a DecodeError, not the documented refusal -----


@redmodel.model(prefix="s13i")
@attrs.define
class SI:
    n: int = redmodel.field(index=True, default=0)
    m: int = 0
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("field", ["n", "m"])
def test_fixed_incr_of_a_stored_int_beyond_64_bits_is_a_decode_error(
        store: redmodel.Store, field: str) -> None:
    """FIXED. models.md: "ints beyond 64 bits are stored as text too" (a valid value of the field,
    get() reads it). queries.md, Exact numbers: incr/incr_fields refuse "a result outside
    -2**63..2**63-1 (ConditionFailedError with limit="64-bit counter")". incr(+1) of a
    stored 2**70 raises DecodeError ("stored value is not a number Redis can add to"),
    the error for data that does not fit the model."""
    store.save(SI(n=2**70, m=2**70, id="1"))
    assert store.get(SI, "1").n == 2**70
    with pytest.raises(redmodel.ConditionFailedError) as info:
        store.incr(SI, "1", field, 1)
    assert info.value.limit == "64-bit counter"


@pytest.mark.parametrize("field", ["n", "m"])
def test_fixed_incr_brings_a_stored_int_beyond_64_bits_back_into_range(
        store: redmodel.Store, field: str) -> None:
    """FIXED (G8): a stored 2**63 (19 digits, beyond 64 bits) plus -1 is 2**63-1, within
    the 64-bit counter range: the result is written whole (HINCRBY cannot add to such a
    text), the index entry follows; plus +1 it is refused as documented, nothing changed."""
    store.save(SI(n=2**63, m=2**63, id="1"))
    with pytest.raises(redmodel.ConditionFailedError):
        store.incr(SI, "1", field, 1)
    assert getattr(store.get(SI, "1"), field) == 2**63
    assert store.incr(SI, "1", field, -1) == 2**63 - 1
    assert getattr(store.get(SI, "1"), field) == 2**63 - 1
    assert store.verify(SI) == []


# ---- G9: an equality query with an aware datetime near year 1/9999 is not a QueryError ------


@redmodel.model(prefix="s13t")
@attrs.define
class ST:
    w: datetime | None = redmodel.field(index=True, default=None)
    wu: datetime | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("call", ["find", "one_of", "get_by"])
def test_fixed_equality_query_with_out_of_range_instant_is_not_a_query_error(
        store: redmodel.Store, call: str) -> None:
    """FIXED. queries.md: "Bad queries raise QueryError before any command is sent". 0001-01-01
    00:00 at UTC+1 is a valid datetime whose UTC instant falls before year 1. A save is
    refused with ValidationError (fine); find/get_by raise redmodel._indexes._specs.IndexValueError,
    a plain ValueError that is neither QueryError nor any public redmodel error."""
    v = datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(redmodel.QueryError):
        if call == "find":
            store.find(ST, w=v).ids()
        elif call == "one_of":
            store.find(ST, w=redmodel.one_of([v])).ids()
        else:
            store.get_by(ST, wu=v)


# ---- G5: a datetime with a sub-second UTC offset is saved with entries its read-back misses --


def test_fixed_datetime_with_sub_second_offset_saves_entries_that_disagree(
        store: redmodel.Store) -> None:
    """FIXED by a decision (models.md): a datetime whose UTC offset has a fraction of a
    second (Python accepts timezone(timedelta(microseconds=1))) cannot be stored exactly
    ("+00:00:00.000001" reads back without the fraction: another instant), so it is refused
    at validation with a ValidationError naming the field, nothing written; a whole-second
    offset still round-trips and is found."""
    v = datetime(2020, 1, 1, 12, 0, tzinfo=timezone(timedelta(microseconds=1)))
    before = keyspace(store.client)
    with pytest.raises(redmodel.ValidationError) as info:
        store.save(ST(w=v, id="1"))
    assert info.value.field == "w"
    assert keyspace(store.client) == before
    ok = datetime(2020, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, seconds=7)))
    store.save(ST(w=ok, id="1"))
    assert store.get(ST, "1").w == ok
    assert store.find(ST, w=ok).ids() == ["1"]
    assert store.verify(ST) == []


# ---- G10: a plain list as a filter value is silently taken as one_of ---------------------------


@redmodel.model(prefix="s13l")
@attrs.define
class SL:
    color: str = redmodel.field(index=True, default="x")
    tags: list[str] = redmodel.field(index=True, factory=list)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("filters", [{"color": ["x"]}, {"tags": ["wool", "cotton"]}])
def test_fixed_plain_list_filter_value_is_silently_one_of(
        store: redmodel.Store, filters: dict[str, Any]) -> None:
    """FIXED by a decision (queries.md: a list as a plain filter value is refused with QueryError,
    advice to use one_of/contains). queries.md: filters are `field=value`,
    `field=one_of([...])`, `field=contains(x)`;
    "a value of the wrong type" raises QueryError before sending. A list is not a str, and
    for a list field `tags=["wool", "cotton"]` reads as "has both" (or "equals this list"),
    yet it runs as one_of: the hat with only "wool" is returned."""
    store.save(SL(tags=["wool"], id="1"))
    with pytest.raises(redmodel.QueryError):
        store.find(SL, **filters).ids()          # before the fix: ['1']


# ---- G3: concurrent incr by large amounts of an equality-indexed int still conflicts -------


@redmodel.model(prefix="s13c")
@attrs.define
class SC:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("amounts", ["fixed", "random"])
def test_fixed_concurrent_large_incr_of_equality_indexed_int_raises_conflict(
        redis_server: Any, store: redmodel.Store, amounts: str) -> None:
    """FIXED. queries.md, Concurrent increments: a call that needs other keys is resent "naming,
    besides them, a window of values around them (8, then 64, 512 and 4,096 each side), up
    to 8 times, so it practically always lands". The window is of consecutive values: when
    the clients add amounts such as 100,000, the value another client leaves is never in
    it, and 1 to 5 calls in 100 raise ConflictError (4 threads x up to 100
    calls, stopping at the first; with amounts of ±1 none do). FIXED: the field is pinned
    while a call asks for its keys (queries.md), so fixed and random amounts land."""
    store.save(SC(id="a"))
    errors: list[BaseException] = []
    seen_one = threading.Event()        # stop at the first ConflictError: keeps the test short

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        client = redis_server.client()
        s = redmodel.Store(client)
        try:
            for _ in range(100):
                if seen_one.is_set():
                    return
                try:
                    s.incr(SC, "a", "n", rng.choice([100_000, -100_000, 700_003])
                           if amounts == "fixed" else rng.randint(-10**6, 10**6))
                except redmodel.ConflictError as e:
                    errors.append(e)
                    seen_one.set()
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.verify(SC) == []
    assert errors == [], f"ConflictError within 400 calls: {errors[0]}"


# ---- G11: a refused write in a transaction claims "the other writes were" applied ------------


def test_fixed_tx_wrongtype_error_claims_other_writes_applied_when_there_are_none(
        store: redmodel.Store) -> None:
    """FIXED (decided, transactions.md: a wrong-typed key refuses the transaction before MULTI,
    nothing written, the message says so). transactions.md: a command refused inside EXEC raises
    its error, and the other
    commands are applied. With ONE queued write (or when every write was refused) the
    ServerError still says "this write was not applied, but the transaction's other writes
    were (Redis has no rollback inside EXEC)": there were none, nothing changed, and a
    caller reading the message would go looking for writes that never happened."""
    store.save(SX(id="b"))
    store.client.set("s13x:%idx:eq:color:green", "junk")      # planted wrong-typed key
    before = keyspace(store.client)
    with pytest.raises(redmodel.ServerError) as info:
        redmodel.transaction(store)(lambda tx: tx.update(SX, "b", color="green"))()
    assert keyspace(store.client) == before                    # nothing was written
    assert "other writes were" not in str(info.value)


@redmodel.model(prefix="s13f", layout="flat")
@attrs.define
class FlatOld:
    qty: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="s13f", layout="flat")
@attrs.define
class FlatNew:
    quantity: int = redmodel.field(default=0, old_names=("qty",))
    id: str = redmodel.key_field(generated=False)


def test_fixed_incr_of_a_renamed_flat_leaf_is_refused_not_restarted(
        store: redmodel.Store) -> None:
    """FIXED (G2, flat layout), decided: a flat model's incr does not rename a leaf (the
    manifest's skeleton names it); when the value is under an old name only, incr is a
    DecodeError that says so, with nothing changed (migrations.md), instead of NotFoundError
    or starting from 0."""
    store = redmodel.Store(store.client, registry=False)  # two versions, two classes
    store.save(FlatOld(7, id="1"))
    assert store.get(FlatNew, "1").quantity == 7
    with pytest.raises(redmodel.DecodeError, match="earlier name"):
        store.incr(FlatNew, "1", "quantity", 1)
    assert store.get(FlatNew, "1").quantity == 7
    store.save(store.get(FlatNew, "1"))
    assert (store.incr(FlatNew, "1", "quantity", 1), store.get(FlatNew, "1").quantity) == (8, 8)


def test_fixed_scan_pass_pages_place_a_mover_when_the_stretch_is_too_dense_to_check(
        store: redmodel.Store) -> None:
    """FIXED (G1), the other path: with 1 red in 200 objects a page of 5 reds spans about
    1,000 entries of the sort index, too many to check with one ZRANGE (queries.md), so each
    such page runs a pass of its own; a red moved ahead of the cursor is still shown once,
    every red once, pages in order."""
    objs = [SW("red" if i % 200 == 0 else "blue", float(i), id=f"{i:05d}")
            for i in range(8000)]
    store.save_many(objs)
    reds = [o for o in objs if o.color == "red"]                   # 40 reds
    pages = store.find(SW, color="red").order_by("price").pages(5)
    seen = [o.id for o in next(pages)]
    store.update(SW, reds[30].id, price=reds[12].price + 0.5)
    prices = []
    for page in pages:
        seen += [o.id for o in page]
        prices += [o.price for o in page]
    assert Counter(seen)[reds[30].id] == 1
    assert sorted(seen) == sorted(o.id for o in reds)
    assert prices == sorted(prices)


def test_fixed_async_scan_pass_pages_place_an_object_moving_ahead_of_the_cursor(
        store: redmodel.Store, redis_url: str) -> None:
    """FIXED (G1) through AsyncStore.apages: the mover of the first G1 test is shown once,
    every red once."""
    import asyncio  # noqa: PLC0415

    objs = [SW("red" if i % 15 == 0 else "blue", float(i), id=f"{i:05d}") for i in range(3000)]
    store.save_many(objs)
    reds = [o for o in objs if o.color == "red"]

    async def main() -> list[str]:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            seen: list[str] = []
            first = True
            async for page in astore.find(SW, color="red").order_by("price").apages(10):
                seen += [o.id for o in page]
                if first:
                    await astore.update(SW, reds[50].id, price=reds[30].price + 0.5)
                    first = False
            return seen

    seen = asyncio.run(main())
    assert Counter(seen)[reds[50].id] == 1
    assert sorted(seen) == sorted(o.id for o in reds)
