"""Attack on indexes and queries (session 23, area B): one test per finding, each asserting
what docs/queries.md and docs/store.md promise and failing on the code it was written
against (``# F<n>:`` names the finding)."""

from __future__ import annotations

import datetime as dt
import enum

import attrs
import pytest
import redis

import redmodel


@redmodel.model(prefix="atk23b")
@attrs.define
class Counter:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


# F1: a refused indexed incr ("nothing was written") leaves its pin in the object, and a
# second client's valid incr then fails with a false ConflictError.
def test_f1_refused_indexed_incr_leaves_a_pin_that_blocks_other_writers(
        store: redmodel.Store, redis_client: redis.Redis, redis_url: str) -> None:
    """docs/queries.md: a key of the wrong type "refuses the write with a `ServerError`
    naming that key, and nothing changes"; docs/store.md: `incr` refuses "changing
    nothing". The script first answers "needs keys" (writing a pin), the resend is then
    refused by the planted key, and the pin stays: the object's hash is changed, and for
    2 s every other client's increment of the field answers "pinned" until it gives up
    with ConflictError ("other clients wrote it between each of 8 tries"), though nobody
    wrote."""
    store.save(Counter(id="c1"))
    other = redmodel.Store.from_url(redis_url)
    assert other.get(Counter, "c1") is not None            # the other store knows the model
    redis_client.set("atk23b:%idx:eq:n:1", "planted")      # the entry key n=1 would need
    before = redis_client.hgetall("atk23b:c1")
    with pytest.raises(redmodel.ServerError, match="atk23b:%idx:eq:n:1"):
        store.incr(Counter, "c1", "n", 1)
    assert redis_client.hgetall("atk23b:c1") == before     # nothing changed: no pin left
    assert other.incr(Counter, "c1", "n", 2) == 2          # n=2's key is fine: it lands
    assert other.get(Counter, "c1") == Counter(n=2, id="c1")


@redmodel.model(prefix="atk23bp")
@attrs.define
class Priced:
    color: str = redmodel.field(index=True, default="red")
    price: float = redmodel.field(index="range", default=1.0)
    id: str = redmodel.key_field(generated=False)


# F2: a cursor whose id holds a lone surrogate escapes as a bare UnicodeEncodeError, not
# QueryError.
@pytest.mark.parametrize("order", [None, "price", "-price"])
def test_f2_cursor_with_a_lone_surrogate_is_a_query_error(
        store: redmodel.Store, order: str | None) -> None:
    """docs/queries.md: "Bad queries raise `QueryError` before any command is sent: ... a
    malformed cursor (a score in anything but ASCII digits, say)". A forged cursor whose id
    part holds a lone surrogate (no page ever gives one: ids with one are refused) raises
    `UnicodeEncodeError` from deep in the send instead, unordered and ordered alike, with
    or without a filter."""
    store.save_many([Priced(price=float(i), id=f"i{i:02}") for i in range(4)])
    for last_id in ("a\udc00", "\ud800", "i01\udfff"):
        cursor = f"||{last_id}" if order is None else f"{order}|1|{last_id}"
        for base in (store.find(Priced), store.find(Priced, color="red")):
            query = base if order is None else base.order_by(order)
            with pytest.raises(redmodel.QueryError, match="cursor"):
                query.after(cursor).ids()


@redmodel.model(prefix="atk23bb", buckets=4)
@attrs.define
class Badge:
    code: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


# F3: on a bucketed model, save_many refuses a chunk in which one object gives a unique
# value up and a later object takes it, though saving them one at a time (or chunk_size=1,
# or the same model without buckets) succeeds.
def test_f3_bucketed_save_many_refuses_a_value_given_up_earlier_in_its_chunk(
        store: redmodel.Store) -> None:
    """docs/queries.md ("How entries stay right"): save_many "does for each object, in
    order, exactly what `index_write.lua` does for it alone ... so the result is the one of
    saving or deleting them one at a time"; on a bucketed model the claims of a chunk are
    made together, "a taken value refuses the chunk", and "settled in chunk order". Here
    no value is taken when its taker's turn comes (its holder gave it up just before, in
    the same list), no two objects of the list share a value (so the up-front check passes),
    yet the whole chunk is refused with UniqueViolationError and nothing is written."""
    store.save(Badge(code="A", id="3"))
    assert store.save_many([Badge(code="C", id="3"), Badge(code="A", id="1")]) == 2
    assert sorted((b.id, b.code) for b in store.find(Badge).all()) == [("1", "A"), ("3", "C")]
    assert store.verify(Badge) == []


@redmodel.model(prefix="atk23bt")
@attrs.define
class Event:
    at: dt.datetime = redmodel.field(index="range")
    at_eq: dt.datetime = redmodel.field(index=True)
    id: str = redmodel.key_field(generated=False)


def instant(v: dt.datetime) -> dt.datetime:
    """The instant a range index orders: a naive datetime is taken as UTC."""
    return v.replace(tzinfo=dt.timezone.utc) if v.tzinfo is None else v


# F4: an equality filter on a range-indexed datetime matches aware objects for a naive
# value (and the reverse), unlike the same filter on an equality index or a scan.
# Decided (lead, session 23): a range index orders instants (naive taken as UTC) and an
# equality term on it matches the instant; Python's == (naive never equal to aware) is
# kept by an equality index. The test asserts the decided behaviour.
def test_f4_range_equality_of_naive_and_aware_datetimes_is_not_python_equality(
        store: redmodel.Store) -> None:
    """docs/queries.md ("Exact numbers"): an equality index follows Python's `==` (a
    naive and an aware datetime are never equal); a range index orders instants, a naive
    datetime taken as UTC, and an equality term on a range-indexed field matches every
    value of that instant, naive or aware."""
    noon = dt.datetime(2020, 1, 1, 12, 0)
    values = [noon, noon.replace(tzinfo=dt.timezone.utc),
              noon.replace(hour=13, tzinfo=dt.timezone(dt.timedelta(hours=1)))]
    store.save_many([Event(v, v, id=f"e{i}") for i, v in enumerate(values)])
    everything = store.find(Event).all()
    for v in values:
        scan = sorted(e.id for e in everything if e.at == v)
        assert sorted(store.find(Event, at_eq=v).ids()) == scan     # Python's ==
        same = sorted(e.id for e in everything if instant(e.at) == instant(v))
        assert sorted(store.find(Event, at=v).ids()) == same        # the instant


class Mixed(enum.Enum):
    INT_ONE = 1
    STR_ONE = "1"


# F5: an Enum with an int and a str member of the same text (1 and "1") would store both as
# "1" (INT_ONE reading back as STR_ONE, a find of one answering the other, the two colliding
# as unique). Decided (lead, session 23): such an enum is refused at declaration.
def test_f5_enum_members_1_and_str_1_collide_and_do_not_round_trip() -> None:
    """docs/models.md: `Enum` (str or int values) is stored as "the member's value as
    text", and an enum two of whose members share that text is refused at declaration
    with ModelDefinitionError naming the enum and both members (hash field, index,
    unique index alike)."""
    for option in ({"index": True}, {"unique": True}, {}):
        with pytest.raises(redmodel.ModelDefinitionError,
                           match=r"Mixed.*INT_ONE.*STR_ONE"):
            @redmodel.model(prefix="atk23be")
            @attrs.define
            class Tagged:
                kind: Mixed | None = redmodel.field(default=None, **option)
                id: str = redmodel.key_field(generated=False)
