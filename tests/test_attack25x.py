"""Attack 25x: the derived index record (issue 17 item 4 part 2).

Objects without an expiry (of a model without a blind index) keep no record: a write sends
the bytes it assumes the indexed fields hold and the script checks them (docs/queries.md,
"How entries stay right"). Here: the field types the earlier property (tests/
test_derived_record.py: str, float, int) does not draw, whose stored bytes and entries do
not map one to one (Decimal 1.0 vs 1.00, lists ("contains") in another order, enums,
tz-aware datetimes, UUIDs, dates, None and back), checked by queries against a scan AND by
``verify`` (which the earlier property does not call); raw commands behind redmodel's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import enum
import itertools
import threading
import time
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q
from redmodel._models._specs import spec_of
from redmodel.testing import FaultProxy
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through
from tests.keys import use_keys


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"
    ODD = "x:y{z}"


@redmodel.model(prefix="ax25")
@attrs.define
class Typed:
    tags: list[str] = redmodel.field(index=True, factory=list)
    dec: decimal.Decimal | None = redmodel.field(index=True, default=None)
    rdec: decimal.Decimal = redmodel.field(index="range", default=decimal.Decimal(0))
    when: dt.datetime | None = redmodel.field(index=True, default=None)
    day: dt.date | None = redmodel.field(index="range", default=None)
    c: Color | None = redmodel.field(index=True, default=None)
    flag: bool = redmodel.field(index=True, default=False)
    u: uuid.UUID | None = redmodel.field(unique=True, default=None)
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field()


IDS = ["a", "b:1", "{c}", "d*%", "e\\ f"]
ID = st.sampled_from(IDS)
UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))
BASE = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
WHENS = st.sampled_from([None, BASE, BASE + dt.timedelta(microseconds=1),
                         BASE.astimezone(PLUS2), (BASE + dt.timedelta(microseconds=1))
                         .astimezone(PLUS2)])
DECS = st.sampled_from([decimal.Decimal(s) for s in
                        ["1", "1.0", "1.00", "-0", "0", "0E-5", "10", "1E+1", "2.5"]])
OPT_DECS = st.none() | DECS
TAGS = st.lists(st.sampled_from(["a", "b", "x:y", "{t}", "é", ""]), max_size=3)
DAYS = st.sampled_from([None, dt.date(2024, 1, 1), dt.date(1, 1, 1), dt.date(9999, 12, 31)])
UUIDS = st.sampled_from([None, uuid.UUID(int=1), uuid.UUID(int=2)])
INTS = st.sampled_from([0, 1, -1, 2**53 + 1, 2**63 - 2])


@st.composite
def typed(draw: Any, i: str | None = None) -> Typed:
    return Typed(id=draw(ID) if i is None else i, tags=draw(TAGS), dec=draw(OPT_DECS),
                 rdec=draw(DECS), when=draw(WHENS), day=draw(DAYS),
                 c=draw(st.none() | st.sampled_from(Color)), flag=draw(st.booleans()),
                 u=draw(UUIDS), n=draw(INTS))


FIELDS = {"dec": OPT_DECS, "rdec": DECS, "when": WHENS, "day": DAYS, "tags": TAGS,
          "c": st.none() | st.sampled_from(Color), "flag": st.booleans(), "u": UUIDS,
          "n": INTS}
CHANGE = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda name: st.tuples(st.just(name), FIELDS[name]))

STEP = st.one_of(
    st.tuples(st.just("save"), typed(), st.booleans()),
    st.tuples(st.just("many"), st.lists(typed(), max_size=3), st.booleans()),
    st.tuples(st.sampled_from(["loaded", "force", "stale"]), ID, CHANGE, CHANGE),
    st.tuples(st.just("update"), ID, CHANGE),
    st.tuples(st.just("incr"), ID, st.integers(-2, 2)),
    st.tuples(st.sampled_from(["delete", "expire", "persist"]), ID),
    st.tuples(st.just("delete_many"), st.lists(ID, max_size=3)),
    st.tuples(st.just("tx"), ID, typed(), CHANGE),
    st.tuples(st.just("short"), typed()),  # an expiry that passes during the run
    st.tuples(st.just("sweep")),
    st.tuples(st.sampled_from(["by_query", "by_unique", "tx_loaded"]), ID, CHANGE, CHANGE),
)


def _apply(store: redmodel.Store, step: tuple[Any, ...]) -> None:
    kind = step[0]
    try:
        if kind == "save":
            store.save(step[1], ttl=60 if step[2] else None)
        elif kind == "many":
            store.save_many(step[1], ttl=60 if step[2] else None)
        elif kind in ("loaded", "force", "stale"):
            loaded = store.get(Typed, step[1])
            if loaded is None:
                return
            if kind == "stale":  # another writer moves it after our load
                store.update(Typed, step[1], **dict([step[3]]))
            setattr(loaded, *step[2])
            store.save(loaded, force=kind == "force")
        elif kind == "update":
            store.update(Typed, step[1], **dict([step[2]]))
        elif kind == "incr":
            store.incr(Typed, step[1], "n", step[2])
        elif kind == "delete":
            store.delete(Typed, step[1])
        elif kind == "delete_many":
            store.delete_many(Typed, step[1])
        elif kind == "expire":
            store.expire(Typed, step[1], 60)
        elif kind == "persist":
            store.persist(Typed, step[1])
        elif kind == "short":
            store.save(step[1], ttl=0.01)  # gone before the check: not racing it
            time.sleep(0.015)
        elif kind == "sweep":
            store.sweep(Typed)
        elif kind in ("by_query", "by_unique"):  # loaded by a query / get_by, not get
            if kind == "by_query":
                got = [o for o in store.find(Typed).all() if o.id == step[1]]
            else:
                held = store.get(Typed, step[1])
                got = [store.get_by(Typed, u=held.u)] if held and held.u else []
            if got and got[0] is not None:
                store.update(Typed, step[1], **dict([step[3]]))  # then another writer
                setattr(got[0], *step[2])
                store.save(got[0])
        elif kind == "tx_loaded":  # a loaded copy saved in a transaction after an update
            loaded = store.get(Typed, step[1])
            if loaded is None:
                return
            setattr(loaded, *step[2])

            def work2(tx: Any) -> None:
                tx.update(Typed, step[1], **dict([step[3]]))
                tx.save(loaded)
                tx.incr(Typed, step[1], "n", 1)

            store.transaction(work2)()
        elif kind == "tx":
            _, i, o, change = step

            def work(tx: Any) -> None:
                tx.get(Typed, i)
                tx.update(Typed, i, **dict([change]))
                tx.save(o)
                tx.incr(Typed, o.id, "n", 1)

            store.transaction(work)()
    except (redmodel.UniqueViolationError, redmodel.NotFoundError,
            redmodel.ConditionFailedError, redmodel.ValidationError):
        pass  # refused: nothing written (the check after the step says so)


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


def check(store: redmodel.Store, where: str) -> None:
    live = {o.id: o for o in store.scan(Typed)}
    assert sorted(store.find(Typed).ids()) == sorted(live), where
    assert store.find(Typed).count() == len(live), where
    for name in ("dec", "when", "c", "flag", "n"):
        for v in {getattr(o, name) for o in live.values()} - {None}:
            want = sorted(i for i, o in live.items() if _eq(getattr(o, name), v))
            assert sorted(store.find(Typed, **{name: v}).ids()) == want, (where, name, v)
            assert sorted(store.find(Typed, ~Q(**{name: v})).ids()) == \
                sorted(set(live) - set(want)), (where, name, v)
    for t in {t for o in live.values() for t in o.tags}:
        want = sorted(i for i, o in live.items() if t in o.tags)
        assert sorted(store.find(Typed, tags=redmodel.contains(t)).ids()) == want, (where, t)
    for name in ("rdec", "day"):
        want = sorted(getattr(o, name) for o in live.values() if getattr(o, name) is not None)
        got = store.find(Typed).order_by(name).ids()  # ties by escaped id: values only
        assert [getattr(live.get(i), name, "gone") for i in got] == want, (where, name)
        assert sorted(got) == sorted(i for i, o in live.items()
                                     if getattr(o, name) is not None), (where, name)
    for o in live.values():
        if o.u is not None:
            assert store.get_by(Typed, u=o.u) == o, where
    store.sweep(Typed)  # verify reports an expired object not swept yet (documented)
    assert store.verify(Typed) == [], where


@settings(max_examples=scaled(60, floor=10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=7))
def test_typed_fields_stay_exact_under_any_interleaving(store: redmodel.Store,
                                                        steps: list[Any]) -> None:
    store.client.flushdb()
    for n, step in enumerate(steps):
        _apply(store, step)
        check(store, f"after step {n}: {step[0]}")
        # docs/queries.md "Keys": the record only for an object with an expiry
        ttl = {eid(o.id) for o in store.scan(Typed) if store.pttl(Typed, o.id) is not None}
        assert {f.decode() for f in store.client.hkeys(ROOT + "rec")} == ttl, step[0]


ROOT = "ax25:%idx:"
SPEC = spec_of(Typed)


def eid(i: str) -> str:
    """An id as the index keys hold it (escaped)."""
    return SPEC.key_for(i)[len(SPEC.object_prefix(SPEC.tag_of(SPEC.id_text(i)))):]


def _legacy(store: redmodel.Store, objs: list[Typed]) -> None:
    """Objects as an earlier version left them: a record for each, no expiry (saved with
    a TTL, whose record this version keeps, then the TTL and expiry-set member removed)."""
    for o in objs:
        store.save(o, ttl=60)
    for o in objs:
        store.client.persist(SPEC.key_for(o.id))
    store.client.delete(ROOT + "exp")
    assert store.client.hlen(ROOT + "rec") == len(objs)


@settings(max_examples=scaled(40, floor=10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=st.lists(typed(), max_size=4, unique_by=lambda o: o.id),
       steps=st.lists(STEP, min_size=1, max_size=5))
def test_legacy_records_are_used_dropped_and_never_wrong(store: redmodel.Store,
                                                         start: list[Typed],
                                                         steps: list[Any]) -> None:
    """docs/queries.md: "A record found on an object that no longer needs one (written by
    an older redmodel ...) is used as its old entries and dropped by that same write;
    `reindex` drops them all." and verify: "a record left by an older version on an
    object that need not keep one is not an error"."""
    store.client.flushdb()
    try:
        _legacy(store, start)
    except redmodel.UniqueViolationError:
        return
    check(store, "planted")
    for n, step in enumerate(steps):
        _apply(store, step)
        check(store, f"after step {n}: {step[0]}")
    store.reindex(Typed)
    check(store, "after reindex")
    ttl = {o.id for o in store.scan(Typed) if store.pttl(Typed, o.id) is not None}
    assert {f.decode() for f in store.client.hkeys(ROOT + "rec")} == {eid(i) for i in ttl}


def _damage(store: redmodel.Store, kind: str, o: Typed) -> None:
    c, key = store.client, SPEC.key_for(o.id)
    if kind == "hset_eq":
        c.hset(key, "n", "777")
    elif kind == "hset_enum":
        c.hset(key, "c", store_bytes(store, "c", Color.ODD))
    elif kind == "hdel_eq":
        c.hdel(key, "when")
    elif kind == "hset_range":
        c.hset(key, "rdec", "12345")
    elif kind == "hset_unique":
        c.hset(key, "u", str(uuid.UUID(int=99)))
    elif kind == "del":
        c.delete(key)
    elif kind == "expire":
        c.pexpire(key, 1)
        time.sleep(0.01)
        c.exists(key)
    elif kind == "stale":
        c.sadd(ROOT + "eq:n:31337", eid(o.id))
    elif kind.startswith("garbage_"):  # bytes no codec reads
        c.hset(key, kind[len("garbage_"):], b"\xff{[")


def store_bytes(store: redmodel.Store, name: str, value: Any) -> bytes:
    """The bytes redmodel stores for ``value`` in field ``name`` (saved on a scratch id)."""
    probe = Typed(id="\x00probe", **{name: value})  # type: ignore[arg-type]
    store.save(probe)
    raw = store.client.hget(SPEC.key_for(probe.id), name)
    store.delete(Typed, probe.id)
    assert raw is not None
    return bytes(raw)


def consistent_or_reported(store: redmodel.Store, where: str) -> None:
    try:
        check(store, where)
    except (AssertionError, redmodel.DecodeError):
        assert store.verify(Typed) != [], f"{where}: queries disagree with a scan, verify is silent"


DAMAGE = st.sampled_from(["hset_eq", "hset_enum", "hdel_eq", "hset_range", "hset_unique",
                          "del", "expire", "stale", "garbage_n", "garbage_c", "garbage_tags",
                          "garbage_when", "garbage_u", "garbage_rdec"])


@settings(max_examples=scaled(50, floor=10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=st.lists(typed(), min_size=1, max_size=3, unique_by=lambda o: o.id),
       damage=st.lists(DAMAGE, min_size=1, max_size=2), ttl=st.booleans(),
       steps=st.lists(STEP, min_size=1, max_size=4))
def test_raw_damage_is_reported_until_reindex_repairs_it(
        store: redmodel.Store, start: list[Typed], damage: list[str], ttl: bool,
        steps: list[Any]) -> None:
    """docs/queries.md "Checking and repairing an index": verify "lists, in words, every
    disagreement between the stored objects and their index"; reindex "rebuilds the index
    from the stored objects". So after damage done by raw commands and any writes after
    it, either the queries equal a scan or verify says something; and after reindex,
    verify is empty and the queries equal a scan."""
    store.client.flushdb()
    for o in start:
        with contextlib.suppress(redmodel.UniqueViolationError):
            store.save(o, ttl=60 if ttl else None)
    store_bytes(store, "c", Color.ODD)  # the probe before any damage
    for kind in damage:
        _damage(store, kind, start[0])
    consistent_or_reported(store, "damaged")
    for n, step in enumerate(steps):
        with contextlib.suppress(redmodel.DecodeError):  # a get of a garbage field
            _apply(store, step)
        consistent_or_reported(store, f"after step {n}: {step[0]}")
    for i in IDS:  # an object no codec reads cannot be indexed: deleted (works by id)
        try:
            store.get(Typed, i)
        except redmodel.DecodeError:
            store.delete(Typed, i)
    store.reindex(Typed)
    check(store, "after reindex")


def _run_quietly(store: redmodel.Store, steps: list[Any], errors: list[BaseException]) -> None:
    for step in steps:
        try:
            _apply(store, step)
        except redmodel.ConflictError:
            pass  # contention: documented, nothing written
        except BaseException as e:
            errors.append(e)
            return


async def _run_async(url: str, steps: list[Any], errors: list[BaseException]) -> None:
    async with redmodel.AsyncStore.from_url(url) as astore:
        for step in steps:
            try:
                kind = step[0]
                if kind == "save":
                    await astore.save(step[1], ttl=60 if step[2] else None)
                elif kind == "many":
                    await astore.save_many(step[1], ttl=60 if step[2] else None)
                elif kind in ("loaded", "force", "stale"):
                    loaded = await astore.get(Typed, step[1])
                    if loaded is not None:
                        setattr(loaded, *step[2])
                        await astore.save(loaded, force=kind == "force")
                elif kind == "update":
                    await astore.update(Typed, step[1], **dict([step[2]]))
                elif kind == "incr":
                    await astore.incr(Typed, step[1], "n", step[2])
                elif kind == "delete":
                    await astore.delete(Typed, step[1])
                elif kind == "delete_many":
                    await astore.delete_many(Typed, step[1])
                elif kind == "expire":
                    await astore.expire(Typed, step[1], 60)
                elif kind == "persist":
                    await astore.persist(Typed, step[1])
            except (redmodel.UniqueViolationError, redmodel.NotFoundError,
                    redmodel.ConditionFailedError, redmodel.ValidationError,
                    redmodel.ConflictError):
                pass
            except BaseException as e:
                errors.append(e)
                return


@settings(max_examples=scaled(15, floor=4), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(runs=st.lists(st.lists(STEP.filter(lambda s: s[0] != "tx_loaded"),  # F5: own test
                             min_size=4, max_size=12), min_size=3, max_size=3))
def test_concurrent_writers_sync_and_async_leave_an_exact_index(
        store: redmodel.Store, redis_url: str, runs: list[list[Any]]) -> None:
    """Two sync writers and an async one on the same few ids (loaded snapshots going
    stale, unique values moving, STORED answers racing other writers): afterwards verify
    is empty and every query equals a scan (docs/queries.md "How entries stay right":
    another writer in between gives another STORED answer)."""
    store.client.flushdb()
    errors: list[BaseException] = []
    others = [redmodel.Store.from_url(redis_url) for _ in range(2)]
    threads = [threading.Thread(target=_run_quietly, args=(s, r, errors))
               for s, r in zip(others, runs[:2], strict=True)]
    threads.append(threading.Thread(target=lambda: asyncio.run(
        _run_async(redis_url, runs[2], errors))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in others:
        s.client.close()
    assert errors == []
    check(store, "after the race")


OPS = ["save", "save_many", "update", "expire", "delete", "delete_many", "tx"]
RESENT = {"save", "save_many", "update", "expire"}
A0 = Typed(id="a", n=1, c=Color.RED, tags=["x"], u=uuid.UUID(int=1))
B0 = Typed(id="b:1", n=2, c=Color.BLUE, tags=["y"])


def _op(store: redmodel.Store, op: str) -> None:
    if op == "save":  # blind, changes equality values: first answer STORED
        store.save(attrs.evolve(A0, n=5, c=Color.BLUE, tags=["z"]))
    elif op == "save_many":
        store.save_many([attrs.evolve(A0, n=5), attrs.evolve(B0, n=6),
                         attrs.evolve(A0, n=7, u=uuid.UUID(int=2))])
    elif op == "update":
        store.update(Typed, "a", n=5, u=uuid.UUID(int=2))
    elif op == "expire":
        store.expire(Typed, "a", 60)
    elif op == "delete":
        store.delete(Typed, "a")
    elif op == "delete_many":
        store.delete_many(Typed, ["a", "b:1"])
    else:
        def work(tx: Any) -> None:
            tx.update(Typed, "a", n=5)
            tx.delete(Typed, "b:1")

        store.transaction(work)()


FAULTS = ["lose_reply", "cut_reply", "drop_request"]


@pytest.mark.parametrize("exactly_once", [False, True])
@pytest.mark.parametrize("nth", [1, 2])
@pytest.mark.parametrize("op", OPS)
def test_lost_replies_on_stored_answers_and_their_resends(
        proxy: FaultProxy, redis_client: Any, op: str, nth: int, exactly_once: bool) -> None:
    """docs/failures.md "Every write method under every fault": save, save_many, update,
    expire: "returns; applied once" (both modes); delete, delete_many, transactions:
    unknown (off) / returns, once (on). The reply lost is the ``nth`` script or EXEC of
    the call (1: the STORED answer, 2: the send after it), under each fault of FAULTS
    in turn (when the call sends no ``nth`` one, no fault fires: one run stands for all)."""
    for fault in FAULTS:
        _lost_reply_case(proxy, redis_client, op, nth, exactly_once, fault)
        if not proxy.events:
            break


def _lost_reply_case(proxy: FaultProxy, redis_client: Any, op: str, nth: int,
                     exactly_once: bool, fault: str) -> None:
    """One case, on an emptied server, as if it were a test of its own."""
    proxy.clear()
    proxy.events.clear()
    redis_client.flushall()
    base = redmodel.Store(redis_client)
    base.save_many([A0, B0])
    store = store_through(proxy, resend=FAST_RESEND, exactly_once=exactly_once)
    try:
        seen = itertools.count(1)
        getattr(proxy, fault)(lambda name: name in ("EVALSHA", "EVAL", "EXEC"),
                              when=lambda argv: next(seen) == nth)
        try:
            _op(store, op)
            outcome = "returned"
        except redmodel.OutcomeUnknownError:
            outcome = "unknown"
        # final once the call ended: the proxy records a fault before the client can see
        # it (the closed connection, the cut reply), and the client waits for one or the
        # other (no socket timeout): no wait for a fault that did not fire
        fired = bool(proxy.events)
        where = f"{op} {fault} nth={nth} once={exactly_once} {outcome} fired={fired}"
        if fired and not exactly_once and op not in RESENT:
            assert outcome == "unknown", where
        else:
            assert outcome == "returned", where
        after = {o.id: o for o in base.scan(Typed)}
        expect_ = {"save": {"a": attrs.evolve(A0, n=5, c=Color.BLUE, tags=["z"]), "b:1": B0},
                   "save_many": {"a": attrs.evolve(A0, n=7, u=uuid.UUID(int=2)),
                                 "b:1": attrs.evolve(B0, n=6)},
                   "update": {"a": attrs.evolve(A0, n=5, u=uuid.UUID(int=2)), "b:1": B0},
                   "expire": {"a": A0, "b:1": B0},
                   "delete": {"b:1": B0}, "delete_many": {},
                   "tx": {"a": attrs.evolve(A0, n=5)}}[op]
        if outcome == "returned":
            assert after == expect_, where
        elif op == "delete_many":  # atomic per object (docs/store.md): F1's test checks .keys
            assert set(after) <= {"a", "b:1"} and all(after[i] == {"a": A0, "b:1": B0}[i]
                                                      for i in after), where
        else:
            assert after in (expect_, {"a": A0, "b:1": B0}), where
        if op == "expire" and outcome == "returned":
            assert base.pttl(Typed, "a") is not None, where
        check(base, where)
    finally:
        store.close()


# F1: an OutcomeUnknownError from delete_many names an object it never sent again in none
# of .written, .not_written, .keys (only in its message)
def test_delete_many_unknown_outcome_accounts_for_every_object(
        proxy: FaultProxy, redis_client: Any) -> None:
    """docs/store.md: "When a chunk's outcome is unknown (`OutcomeUnknownError` ...) its
    keys are in neither list: `.written` holds the earlier chunks, `.not_written` the
    chunks never sent, and the error's `.keys` (and message) the ones that may or may not
    have been written." A delete_many by id of two record-less objects: the first send
    answers STORED for both, the resend of the first loses its reply. The second object
    (never sent again, still there) must be in one of the three; it is in none."""
    base = redmodel.Store(redis_client)
    base.save_many([A0, B0])
    store = store_through(proxy, resend=FAST_RESEND)
    try:
        seen = itertools.count(1)
        proxy.lose_reply(lambda name: name in ("EVALSHA", "EVAL"),
                         when=lambda argv: next(seen) == 2)
        with pytest.raises(redmodel.OutcomeUnknownError) as caught:
            store.delete_many(Typed, ["a", "b:1"])
        err = caught.value
        accounted = set(getattr(err, "written", ()) or ()) | set(
            getattr(err, "not_written", ()) or ()) | set(err.keys or ())
        assert base.get(Typed, "b:1") == B0  # not deleted
        assert SPEC.key_for("b:1") in accounted, str(err)
    finally:
        store.close()


def _lines(o: Typed) -> str:
    """The record of ``o`` as docs/queries.md ("Keys") and earlier versions wrote it: its
    entry lines, sorted, joined by newlines."""
    indexes = SPEC.indexes
    assert indexes is not None
    return "\n".join(sorted(indexes.entries({n: getattr(o, n) for n in indexes.fields},
                                            problems=[])))


def test_hand_planted_legacy_records_upgrade(store: redmodel.Store) -> None:
    """docs/queries.md: "`store.delete` of such an id [deleted behind redmodel's back]
    removes its entries only when it has a record"; "A record found on an object that no
    longer needs one ... is used as its old entries and dropped by that same write";
    CHANGELOG: "`store.reindex(Model)` drops them all"."""
    store.client.flushdb()
    objs = [A0, B0, Typed(id="{c}", n=3, tags=["x", "y"], u=uuid.UUID(int=2)),
            Typed(id="d*%", n=4, when=BASE)]
    store.save_many(objs)
    for o in objs:  # as the previous version left them: a record for every object
        store.client.hset(ROOT + "rec", eid(o.id), _lines(o))
    store.client.delete(SPEC.key_for("a"))  # raw DEL: only its record names its entries
    store.delete(Typed, "a")
    store.update(Typed, "b:1", n=20)  # used and dropped
    store.expire(Typed, "{c}", 60)  # kept: it expires now
    assert {f.decode() for f in store.client.hkeys(ROOT + "rec")} == \
        {eid("{c}"), eid("d*%")}
    assert store.find(Typed, n=1).ids() == []
    assert store.find(Typed, tags=redmodel.contains("x")).ids() == ["{c}"]
    assert store.get_by(Typed, u=uuid.UUID(int=1)) is None
    store.save(Typed(id="new", u=uuid.UUID(int=1)))  # a's unique value is free again
    check(store, "upgraded")
    store.reindex(Typed)
    assert {f.decode() for f in store.client.hkeys(ROOT + "rec")} == {eid("{c}")}
    check(store, "after reindex")


@redmodel.model(prefix="ax25b")
@attrs.define
class Blind:
    email: str | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                       default=None)
    ssn: str | None = redmodel.field(codec="json|fernet", index="blind", default=None)
    n: int = redmodel.field(index=True, default=0)
    k: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field()


BROOT = "ax25b:%idx:"
BSPEC = spec_of(Blind)
SECRETS = st.sampled_from([None, "a@x", "b@x", "", "é:{x}"])
BSTEP = st.one_of(
    st.tuples(st.just("save"), ID, SECRETS, SECRETS, st.integers(-2, 2), st.booleans()),
    st.tuples(st.just("update"), ID, SECRETS, st.integers(-2, 2)),
    st.tuples(st.just("loaded"), ID, SECRETS),
    st.tuples(st.just("incr"), ID, st.sampled_from(["n", "k"])),
    st.tuples(st.sampled_from(["delete", "expire", "persist"]), ID),
    st.tuples(st.just("many"), st.lists(st.tuples(ID, SECRETS), max_size=3)),
    st.tuples(st.just("rotate")),
)


def _bcheck(store: redmodel.Store, where: str) -> None:
    live = {o.id: o for o in store.scan(Blind)}
    for name in ("email", "ssn", "n"):
        for v in {getattr(o, name) for o in live.values()} - {None}:
            assert sorted(store.find(Blind, **{name: v}).ids()) == sorted(
                i for i, o in live.items() if getattr(o, name) == v), (where, name, v)
    for o in live.values():
        if o.email is not None:
            assert store.get_by(Blind, email=o.email) == o, where
    assert store.find(Blind).count() == len(live), where
    # docs/queries.md "Keys": a record for every object of a model with a blind index
    assert {f.decode() for f in store.client.hkeys(BROOT + "rec")} == {
        BSPEC.key_for(i)[len(BSPEC.object_prefix(None)):] for i in live}, where
    assert store.verify(Blind) == [], where


@settings(max_examples=scaled(30, floor=8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(BSTEP, min_size=1, max_size=7))
def test_blind_models_keep_every_record_through_any_interleaving(
        store: redmodel.Store, steps: list[Any]) -> None:
    store.client.flushdb()
    mp = pytest.MonkeyPatch()
    fernet = redmodel.codecs.FernetTransform.generate_key()
    keys = [redmodel.generate_index_key()]
    try:
        use_keys(mp, fernet=[fernet], index=keys)
        for n, step in enumerate(steps):
            kind = step[0]
            try:
                if kind == "save":
                    _, i, e, s, k, ttl = step
                    store.save(Blind(id=i, email=e, ssn=s, k=k), ttl=60 if ttl else None)
                elif kind == "update":
                    store.update(Blind, step[1], ssn=step[2], k=step[3])
                elif kind == "loaded":
                    o = store.get(Blind, step[1])
                    if o is not None:
                        o.email = step[2]
                        store.save(o)
                elif kind == "incr":
                    store.incr(Blind, step[1], step[2], 1)
                elif kind == "delete":
                    store.delete(Blind, step[1])
                elif kind == "expire":
                    store.expire(Blind, step[1], 60)
                elif kind == "persist":
                    store.persist(Blind, step[1])
                elif kind == "many":
                    store.save_many([Blind(id=i, email=e) for i, e in step[1]])
                else:  # the documented rotation, whole
                    keys = [redmodel.generate_index_key(), *keys]
                    use_keys(mp, fernet=[fernet], index=keys)
                    store.rotate_index_key(Blind)
                    keys = keys[:1]
                    use_keys(mp, fernet=[fernet], index=keys)
                    store.rotate_index_key(Blind)
            except (redmodel.UniqueViolationError, redmodel.NotFoundError,
                    redmodel.ValidationError):
                pass
            _bcheck(store, f"after step {n}: {kind}")
    finally:
        mp.undo()


BETWEEN = {
    "update": lambda s: s.update(Typed, "a", n=8, c=Color.ODD, u=uuid.UUID(int=3)),
    "delete": lambda s: s.delete(Typed, "a"),
    "expire": lambda s: s.expire(Typed, "a", 60),  # starts a record
    "save_ttl": lambda s: s.save(attrs.evolve(A0, n=9, tags=["q"]), ttl=60),
    "persist_after_ttl": lambda s: (s.expire(Typed, "a", 60), s.persist(Typed, "a")),
    "move_unique": lambda s: (s.update(Typed, "a", u=None),
                              s.update(Typed, "b:1", u=uuid.UUID(int=1))),
    "incr": lambda s: s.incr(Typed, "a", "n", 5),
    "recreate": lambda s: (s.delete(Typed, "a"), s.save(attrs.evolve(A0, n=11, c=None))),
}


@pytest.mark.parametrize("nth", [2, 3])
@pytest.mark.parametrize("op", OPS)
def test_a_writer_racing_the_assumption_and_the_resend(
        proxy: FaultProxy, redis_client: Any, op: str, nth: int) -> None:
    """docs/queries.md "How entries stay right": "not as assumed (... another writer in
    between), it writes nothing and answers the stored bytes, and the client sends
    again". Another writer's call (each of BETWEEN in turn) runs right before the
    ``nth`` script reaches the server (2: the resend after a STORED answer): afterwards
    the queries equal a scan, verify is empty, and the call ends as if it ran after the
    other writer. A call that sends no 3rd script runs alone: one run stands for all."""
    for between in sorted(BETWEEN):
        if not _racing_case(proxy, redis_client, op, between, nth):
            assert nth == 3, f"{op}: no second script"
            break


def _racing_case(proxy: FaultProxy, redis_client: Any, op: str, between: str,
                 nth: int) -> bool:
    """One race, on an emptied server, as if it were a test of its own; whether the
    other writer ran (the call sent an ``nth`` script)."""
    proxy.clear()
    redis_client.flushall()
    base = redmodel.Store(redis_client)
    base.save_many([A0, B0])
    store = store_through(proxy, resend=FAST_RESEND)
    seen = itertools.count(1)
    done: list[str] = []

    def when(argv: list[bytes]) -> bool:
        if next(seen) == nth:
            try:
                BETWEEN[between](base)
                done.append("ok")
            except redmodel.RedmodelError as e:
                done.append(type(e).__name__)
        return False

    proxy.drop_request(lambda name: name in ("EVALSHA", "EVAL", "EXEC"), when=when)
    try:
        # the other writer may have taken it away first
        with contextlib.suppress(redmodel.NotFoundError, redmodel.UniqueViolationError):
            _op(store, op)
        check(base, f"{op} racing {between} nth={nth} ({done})")
        return bool(done)
    finally:
        store.close()


RAW_THEN = {
    "save": lambda tx: tx.save(attrs.evolve(A0, n=7, c=None)),
    "delete": lambda tx: tx.delete(Typed, "a"),
}


# F2: a raw DEL queued in a transaction before a save/delete of that object leaves the
# object's old entries behind (the script finds no object and no record: old = {})
@pytest.mark.parametrize("then", sorted(RAW_THEN))
def test_a_raw_del_in_a_transaction_then_an_index_write_of_that_key(
        store: redmodel.Store, then: str) -> None:
    """docs/transactions.md "Indexed models": "An index write of a key a raw command of
    the same transaction names (its first argument) takes the object's entries as they
    were indexed before `MULTI` (its record, or what its fields read then compute to) and
    as the writes queued before it leave, without checking the fields". A raw DEL of
    ax25:a, then a save (or delete) of a: the entries a had before MULTI (n=1, c=red)
    must go. With the derived record they stay (a record used to name them)."""
    store.client.flushdb()
    store.save_many([A0, B0])

    def work(tx: Any) -> None:
        tx.command("DEL", SPEC.key_for("a"))
        RAW_THEN[then](tx)

    store.transaction(work)()
    assert store.find(Typed, n=1).ids() == []
    assert store.find(Typed, c=Color.RED).ids() == []
    check(store, f"DEL then {then}")


# F3: a raw HSET of an equality-indexed int queued before tx.incr of it failed inside
# EXEC (TransactionError: keys not named) after the HSET was applied. Decided (FIX-Y):
# refused at commit, before MULTI, nothing written (docs/transactions.md "Indexed models")
RAW_WRITES = {
    "hset n": (("HSET", "n", "5"), True),
    "hmset c n": (("HMSET", "c", "odd", "n", "5"), True),
    "hincrby n": (("HINCRBY", "n", "4"), True),
    "hdel n": (("HDEL", "n"), True),
    "hsetnx n": (("HSETNX", "n", "5"), True),
    "expire": (("PEXPIRE", "60000"), True),  # not a hash command: any field
    # other fields (their stored bytes as they are: the index stays exact): followed
    "hset c": (("HSET", "c", "red"), False),
    "hdel dec": (("HDEL", "dec"), False),
}


@pytest.mark.parametrize("raw", sorted(RAW_WRITES))
def test_a_raw_hset_in_a_transaction_then_incr_of_that_field(store: redmodel.Store,
                                                             raw: str) -> None:
    """An increment of an equality-indexed int a raw command of the same transaction
    writes cannot be followed (its value is the raw command's, its entry the stale one of
    before MULTI): the commit refuses it before MULTI with a TransactionError and nothing
    (not the raw command either) is written. A raw command naming only other fields
    leaves the increment as it is: applied, indexed exactly."""
    store.client.flushdb()
    store.save_many([A0, B0])
    args, refused = RAW_WRITES[raw]

    def work(tx: Any) -> None:
        tx.command(args[0], SPEC.key_for("a"), *args[1:])
        tx.incr(Typed, "a", "n", 1)

    if refused:
        with pytest.raises(redmodel.TransactionError, match="raw command") as caught:
            store.transaction(work)()
        assert "nothing was written" in str(caught.value)
        assert store.get(Typed, "a") == A0
        assert store.client.pttl(SPEC.key_for("a")) == -1
    else:
        store.transaction(work)()
        got = store.get(Typed, "a")
        assert got is not None and got.n == 2
        assert sorted(store.find(Typed, n=2).ids()) == ["a", "b:1"]
        assert store.find(Typed, n=1).ids() == []
    check(store, f"{raw} then incr")


@redmodel.model(prefix="ax25q", buckets=4)
@attrs.define
class TypedQ:
    u: uuid.UUID | None = redmodel.field(unique=True, default=None)
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field()


UNIQUE_DAMAGE = {
    "hset": lambda c, key: c.hset(key, "u", str(uuid.UUID(int=3))),
    "hdel": lambda c, key: c.hdel(key, "u"),
    "del": lambda c, key: c.delete(key),
}


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("model", [Typed, TypedQ])
@pytest.mark.parametrize("damage", sorted(UNIQUE_DAMAGE))
@pytest.mark.parametrize("how", ["save", "update", "save_many"])
def test_a_unique_value_whose_holder_gave_it_up_behind_our_back_is_free(
        store: redmodel.Store, damage: str, model: type, legacy: bool, how: str) -> None:
    """docs/queries.md: "Their unique values are not blocked: a writer that wants one
    checks that its holder still exists and holds it. "Holds" means in its stored fields,
    as `get_by` sees it: when a raw command changed or removed the holder's field (its
    index record still names the value), the writer's refused write is sent once more
    after the holder gives the value up ... and on a bucketed model its claim is taken
    over." ``legacy``: the holder also has a record an earlier version wrote."""
    store.client.flushdb()
    spec = spec_of(model)
    one = uuid.UUID(int=1)
    store.save(model(id="a", u=one, n=1), ttl=60 if legacy else None)
    store.save(model(id="b:1", n=2))
    key = spec.key_for("a")
    if legacy:
        store.client.persist(key)
        for tag in spec.tags():
            store.client.delete(spec.index_root(tag) + "exp")
    UNIQUE_DAMAGE[damage](store.client, key)
    if how == "save":
        store.save(model(id="b:1", n=2, u=one))
    elif how == "update":
        store.update(model, "b:1", u=one)
    else:
        store.save_many([model(id="b:1", n=2, u=one), model(id="c", n=3)])
    assert store.get_by(model, u=one) == model(id="b:1", n=2, u=one)
    store.reindex(model)
    assert store.verify(model) == []
    assert store.get_by(model, u=one) == model(id="b:1", n=2, u=one)


# F4: a transaction refuses a unique value whose holder no longer holds it in its fields
# (a raw HSET/HDEL), where every other write takes it (UniqueViolationError at commit)
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("damage", ["hset", "hdel"])
def test_a_transaction_takes_a_unique_value_its_holder_gave_up_behind_our_back(
        store: redmodel.Store, damage: str, legacy: bool) -> None:
    """docs/queries.md ("Objects deleted behind redmodel's back"): "a writer that wants
    one checks that its holder still exists and holds it. "Holds" means in its stored
    fields, as `get_by` sees it: when a raw command changed or removed the holder's field
    ..., the writer's refused write is sent once more after the holder gives the value
    up"; docs/transactions.md: UniqueViolationError only for "a unique value held by
    another live object". get_by says nobody holds it; save/update/save_many take it
    (test above); a transaction's update raises UniqueViolationError."""
    store.client.flushdb()
    one = uuid.UUID(int=1)
    store.save(Typed(id="a", u=one, n=1), ttl=60 if legacy else None)
    store.save(Typed(id="b:1", n=2))
    if legacy:  # the holder also has a record an earlier version wrote
        store.client.persist(SPEC.key_for("a"))
        store.client.delete(ROOT + "exp")
    UNIQUE_DAMAGE[damage](store.client, SPEC.key_for("a"))
    assert store.get_by(Typed, u=one) is None  # nobody holds it, as get_by sees it
    store.transaction(lambda tx: tx.update(Typed, "b:1", u=one))()
    assert store.get_by(Typed, u=one) == Typed(id="b:1", n=2, u=one)


# F5: a loaded object whose equality-indexed int another writer changed, saved in a
# transaction and then incremented there: TransactionError inside EXEC, the save applied
@pytest.mark.parametrize("first", [False, True])
def test_a_stale_loaded_save_then_incr_in_one_transaction(store: redmodel.Store,
                                                          first: bool) -> None:
    """docs/transactions.md "Indexed models": "several writes of one object work in any
    order: `update` then `incr` then `incr` of an equality-indexed int (each names the
    entry of the value the earlier ones leave)"; the commit reads (WATCHed) what the
    scripts will find, and a failure inside EXEC is promised only after a raw command;
    docs/store.md: a save of a loaded object sends only the fields that changed. Here
    b:1 is loaded (n=2), another writer sets n=5, then one transaction saves the loaded
    copy (c changed: n is not written) and increments n. Expected: c changed, n=6, the
    index exact. Today: TransactionError inside EXEC (eq:n:6 not named: the transaction
    followed n=2 from the loaded copy, not the n=5 it read), the save applied, n=5."""
    store.client.flushdb()
    store.save_many([A0, B0])
    loaded = store.get(Typed, "b:1")
    assert loaded is not None
    store.update(Typed, "b:1", n=5)  # another writer, before the transaction
    loaded.c = Color.ODD

    def work(tx: Any) -> None:
        if first:
            tx.update(Typed, "b:1", tags=["y", "z"])
        tx.save(loaded)
        tx.incr(Typed, "b:1", "n", 1)

    store.transaction(work)()
    got = store.get(Typed, "b:1")
    assert got is not None and (got.c, got.n) == (Color.ODD, 6)
    assert store.find(Typed, n=6).ids() == ["b:1"]
    check(store, "stale loaded save then incr")
