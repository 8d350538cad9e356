"""Second attack on issue 13 (indexes, exact numbers, paging, query limits), as a user with
only the public docs. See /work/notes/FINDINGS-13s.md.

Every ``test_fails_*`` test fails on main today and states the promise it checks; the
``test_holds_*`` tests guard attacks that found nothing.
"""

from __future__ import annotations

import random
from collections import Counter
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


# ---- G1: bucketed transaction refuses a value released earlier in the same transaction ---


@pytest.mark.parametrize("release", ["update_to_none", "delete"])
def test_fails_bucketed_tx_refuses_a_value_given_up_earlier_in_the_same_tx(
        store: redmodel.Store, release: str) -> None:
    """transactions.md, Indexed models: "a value an earlier write of the same transaction
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
    redmodel.transact(store, lambda tx: (tx.save(SX(sku="S2", id="b")),
                                         tx.update(SX, "b", sku=None),
                                         tx.save(SX(sku="S2", id="a"))))
    assert store.get_by(SX, sku="S2").id == "a"

    redmodel.transact(store, fn)     # today: UniqueViolationError "S1 is already taken"
    assert store.get_by(SB, sku="S1").id == "a"
    assert store.verify(SB) == []


# ---- G2: a signalling-NaN Decimal raises a raw TypeError -----------------------------------


@pytest.mark.parametrize("write", ["save_eq", "save_unique", "save_list", "update_eq"])
def test_fails_signalling_nan_decimal_in_an_indexed_field_is_a_raw_type_error(
        store: redmodel.Store, write: str) -> None:
    """queries.md, Exact numbers: "a save of a NaN in an indexed float or Decimal field
    (equality, unique, range, a list item) is refused with ValidationError before anything
    is written". A range field does that for Decimal('sNaN'); equality, unique, list items
    and update raise TypeError("Cannot hash a signaling NaN value") from inside redmodel."""
    store.save(SD(id="z"))
    before = keyspace(store.client)
    nan = Decimal("sNaN")
    with pytest.raises(redmodel.ValidationError):
        if write == "save_eq":
            store.save(SD(d=nan, id="1"))
        elif write == "save_unique":
            store.save(SD(du=nan, id="1"))
        elif write == "save_list":
            store.save(SD(dl=[Decimal(1), nan], id="1"))
        else:
            store.update(SD, "z", d=nan)
    assert keyspace(store.client) == before


# ---- G3: the documented nesting limit is off by one --------------------------------------------


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
def test_fails_query_nested_exactly_32_levels_is_refused(store: redmodel.Store,
                                                         shape: str) -> None:
    """queries.md: QueryError for "nesting &, |, ~ more than 32 levels deep". 32 levels is
    not more than 32. Today alternating &/| is refused at 32 levels, and a chain of ~ at 31
    (so the two shapes do not even agree on where the limit is)."""
    build = _alternating if shape == "and_or" else _nots
    assert store.find(SQ, build(30)).count() == 0           # accepted
    with pytest.raises(redmodel.QueryError):
        store.find(SQ, build(33)).count()                   # refused, as documented
    assert store.find(SQ, build(32)).count() == 0           # today: QueryError


# ---- G4: incr of a renamed field starts from 0 and hides the stored value --------------------


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
def test_fails_incr_of_a_renamed_field_restarts_from_zero(
        store: redmodel.Store, indexed: bool, call: str) -> None:
    """migrations.md: with old_names=("qty",) "the value under an old name is read"; get()
    shows quantity=7. store.md: incr returns "the new value". incr(+1) returns 1 and the
    object now reads quantity=1: the stored 7 is lost (HINCRBY of the new name, where a
    missing field counts as 0, and the new name wins on read)."""
    old, new = (RenOld, RenNew) if indexed else (PlainOld, PlainNew)
    store.save(old(7, id="1"))
    if indexed:
        store.reindex(new, progress=False)
        assert store.find(new, quantity=7).ids() == ["1"]
    assert store.get(new, "1").quantity == 7
    if call == "incr":
        result = store.incr(new, "1", "quantity", 1)
    else:
        result = store.incr_fields(new, "1", {"quantity": 1})["quantity"]
    assert (result, store.get(new, "1").quantity) == (8, 8)   # today: (1, 1)
