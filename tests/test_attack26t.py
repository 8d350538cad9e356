"""Attack 26t: indexed writes inside transactions (stop 25's fixes F2-F5 of attack 25x).

Sequences of writes of 1-3 objects of an indexed model (equality int and float, range int
and float, unique, contains) queued in ONE transaction, with TTL'd objects (which keep a
record) mixed with record-less ones and the raw commands the docs say a transaction
follows; then the index must equal a scan and ``verify`` be clean (docs/transactions.md,
"Indexed models"; docs/queries.md, "How entries stay right").
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q
from redmodel._models._specs import spec_of
from redmodel.testing import FaultProxy
from tests.budget import scaled
from tests.conftest import AsyncFacade
from tests.faults import FAST_RESEND, store_through
from tests.keys import use_keys


@redmodel.model(prefix="ax26t")
@attrs.define
class Tx:
    n: int = redmodel.field(index=True, default=0)
    f: float = redmodel.field(index=True, default=0.0)
    r: float = redmodel.field(index="range", default=0.0)
    ri: int = redmodel.field(index="range", default=0)
    u: str | None = redmodel.field(unique=True, default=None)
    tags: list[str] = redmodel.field(index=True, factory=list)
    note: str = ""
    cnt: int = 0
    id: str = redmodel.key_field()


SPEC = spec_of(Tx)
GONE_INDEX_KEY = redmodel.generate_index_key()
IDS = ["a", "b:{1}", "c %\\ d"]
ID = st.sampled_from(IDS)
INTS = st.sampled_from([0, -1, 7, 2**53 + 1, 2**63 - 1, -(2**63), 10**30])
FLOATS = st.sampled_from([0.0, -0.0, 1.5, 2.0**53, 2.0**60, 1e308, -1e308, 5e-324])
RINTS = st.sampled_from([0, -1, 2**53, -(2**53), 3])
UNIQ = st.sampled_from([None, "u1", "u2", "x:{y}"])
TAGS = st.lists(st.sampled_from(["a", "b", "{t}", ""]), max_size=3)
FIELDS = {"n": INTS, "f": FLOATS, "r": FLOATS, "ri": RINTS, "u": UNIQ, "tags": TAGS}
CHANGE = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda name: st.tuples(st.just(name), FIELDS[name]))
AMOUNT = st.sampled_from([1, -1, 2**62, 0.5, -0.0])


@st.composite
def objs(draw: Any, i: str | None = None) -> Tx:
    return Tx(id=draw(ID) if i is None else i, n=draw(INTS), f=draw(FLOATS),
              r=draw(FLOATS), ri=draw(RINTS), u=draw(UNIQ), tags=draw(TAGS))


PLAIN_OP = st.one_of(
    st.tuples(st.just("save"), objs(), st.booleans()),
    st.tuples(st.just("loaded"), ID, CHANGE),
    st.tuples(st.just("update"), ID, CHANGE),
    st.tuples(st.just("incr"), ID, st.sampled_from(["n", "r", "ri", "cnt"]), AMOUNT),
    st.tuples(st.just("incr_fields"), ID, AMOUNT, AMOUNT),
    st.tuples(st.sampled_from(["delete", "expire", "persist"]), ID),
)
OP = st.one_of(
    PLAIN_OP,
    st.tuples(st.just("raw_note"), ID, st.sampled_from(["HSET", "HDEL", "HINCRBY"])),
    st.tuples(st.just("del_then_save"), objs()),
    st.tuples(st.just("del_then_delete"), ID),
    st.tuples(st.just("hset_then_update"), ID, CHANGE, st.sampled_from(["0", "-0.0", "x"])),
)


def _queue(tx: Any, op: tuple[Any, ...], loaded: dict[str, Tx | None],
           gone: set[str]) -> None:
    kind = op[0]
    if kind in ("delete", "del_then_delete"):
        gone.add(op[1])
    if kind == "save":
        tx.save(op[1], ttl=60 if op[2] else None)
    elif kind == "loaded":
        obj = loaded.get(op[1])
        if obj is not None:
            setattr(obj, *op[2])
            tx.save(obj)
    elif kind == "update":
        tx.update(Tx, op[1], **dict([op[2]]))
    elif kind == "incr":
        tx.incr(Tx, op[1], op[2], op[3] if op[2] in ("f", "r") else int(op[3] or 1))
    elif kind == "incr_fields":
        tx.incr_fields(Tx, op[1], {"n": int(op[2] or 1), "r": op[3], "ri": 1})
    elif kind == "delete":
        tx.delete(Tx, op[1])
    elif kind == "expire":
        tx.expire(Tx, op[1], 60)
    elif kind == "persist":
        tx.persist(Tx, op[1])
    elif kind == "raw_note":
        if loaded.get(op[1]) is None or op[1] in gone:
            return  # a raw HSET would create an object behind redmodel's back
        key = SPEC.key_for(op[1])
        args = {"HSET": ("note", "x"), "HDEL": ("note",), "HINCRBY": ("cnt", "2")}[op[2]]
        tx.command(op[2], key, *args)
    elif kind == "del_then_save":
        tx.command("DEL", SPEC.key_for(op[1].id))
        tx.save(op[1])
    elif kind == "del_then_delete":
        tx.command("DEL", SPEC.key_for(op[1]))
        tx.delete(Tx, op[1])
    elif kind == "hset_then_update":
        if loaded.get(op[1]) is None or op[1] in gone:
            return
        name, value = op[2]
        tx.command("HSET", SPEC.key_for(op[1]), name, op[3])
        tx.update(Tx, op[1], **{name: value})


def _setup(store: redmodel.Store, start: list[Any]) -> dict[bytes, Any]:
    # not FLUSHDB: the registry stays (stores cache it)
    for key in list(store.client.scan_iter(match=b"ax26t*")):
        if not key.endswith(b"%schema"):
            store.client.delete(key)
    for obj, ttl in copy.deepcopy(start):
        with contextlib.suppress(redmodel.UniqueViolationError):
            store.save(obj, ttl=60 if ttl else None)
    return _dump(store)


def _work(store: redmodel.Store, ops: list[Any], read: bool) -> Any:
    ops = copy.deepcopy(ops)

    def work(tx: Any) -> None:
        loaded: dict[str, Tx | None] = {}
        for i in IDS:
            loaded[i] = tx.get(Tx, i) if read else store.get(Tx, i)
        gone: set[str] = set()
        for op in ops:
            _queue(tx, op, loaded, gone)
    return work


def _dump(store: redmodel.Store) -> dict[bytes, Any]:
    c = store.client
    out: dict[bytes, Any] = {}
    for key in sorted(c.scan_iter(match=b"ax26t*")):
        if key.endswith(b"%schema"):
            continue
        t = c.type(key)
        if t == b"hash":
            out[key] = (c.hgetall(key), c.pttl(key) > 0)
        elif t == b"zset" and key.endswith(b"%idx:exp"):
            out[key] = sorted(c.zrange(key, 0, -1))  # expiry instants differ between runs
        elif t == b"zset":
            out[key] = c.zrange(key, 0, -1, withscores=True)
        elif t == b"set":
            out[key] = sorted(c.smembers(key))
        else:
            out[key] = t
    return out


def check(store: redmodel.Store, where: str) -> None:
    live = {o.id: o for o in store.scan(Tx)}
    assert sorted(store.find(Tx).ids()) == sorted(live), where
    for name in ("n", "f"):
        for v in {getattr(o, name) for o in live.values()}:
            want = sorted(i for i, o in live.items() if getattr(o, name) == v)
            assert sorted(store.find(Tx, **{name: v}).ids()) == want, (where, name, v)
            assert sorted(store.find(Tx, ~Q(**{name: v})).ids()) == \
                sorted(set(live) - set(want)), (where, name, v)
    for t in {t for o in live.values() for t in o.tags}:
        want = sorted(i for i, o in live.items() if t in o.tags)
        assert sorted(store.find(Tx, tags=redmodel.contains(t)).ids()) == want, (where, t)
    for name in ("r", "ri"):
        want = sorted(getattr(o, name) for o in live.values())
        got = store.find(Tx).order_by(name).ids()
        assert [getattr(live.get(i), name, "gone") for i in got] == want, (where, name)
    for o in live.values():
        if o.u is not None:
            assert store.get_by(Tx, u=o.u) == o, where
    assert store.verify(Tx) == [], where


EXEC_ERRORS = (redmodel.NotFoundError, redmodel.ConditionFailedError)
BEFORE = (redmodel.UniqueViolationError, redmodel.ValidationError)


@settings(max_examples=scaled(25, floor=8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=st.lists(st.tuples(objs(), st.booleans()), max_size=3),
       ops=st.lists(OP, min_size=1, max_size=5), read=st.booleans())
def test_any_sequence_in_one_transaction_leaves_an_exact_index(
        store: redmodel.Store, start: list[Any], ops: list[Any], read: bool) -> None:
    before = _setup(store, start)
    work = _work(store, ops, read)

    where = f"{start} {ops} read={read}"
    try:
        store.transaction(work)()
        event("committed")
    except BEFORE as e:
        event("refused before " + str(e)[:50])
        assert _dump(store) == before, where  # refused before MULTI: nothing written
    except redmodel.TransactionError as e:
        event("TransactionError " + str(e)[:60])
        if "nothing was written" in str(e):
            assert _dump(store) == before, where
        else:
            assert "applied" in str(e), (where, e)
    except EXEC_ERRORS as e:
        event(type(e).__name__)
        pass  # a command failed inside EXEC: the others applied (documented)
    check(store, where)



# F1: a unique value refused in a transaction that also has a raw command on the holder's
# key: UniqueViolationError "nothing was written" AFTER EXEC applied the raw command and
# every other write (a deleted holder, a raw HSET)
UNIQUE_RAW: dict[str, Any] = {
    "raw hset of the holder, after": lambda tx: tx.command(
        "HSET", SPEC.key_for("a"), "note", "z"),
    "raw del and delete of the holder, after": lambda tx: (
        tx.command("DEL", SPEC.key_for("a")), tx.delete(Tx, "a")),
}


@pytest.mark.parametrize("raw", sorted(UNIQUE_RAW))
@pytest.mark.parametrize("how", ["save", "update"])
def test_a_refused_unique_value_with_a_raw_command_on_its_holder_writes_nothing(
        store: redmodel.Store, raw: str, how: str) -> None:
    """docs/transactions.md "Indexed models": "a unique value another live object holds
    (after the writes queued before) raises `UniqueViolationError` at commit with nothing
    written"; the failure table: "`UniqueViolationError` at commit, **before** `MULTI`:
    nothing written". Here a holds u1; one transaction queues a write of b taking u1 and
    then a raw command on a's key (a raw HSET of an unindexed field; or a raw DEL of a and
    tx.delete of a, which the docs say gives the value up only AFTER the write of b).
    Today: the error says "nothing was written", but EXEC ran: a's note is "z" / a and
    its entries are deleted (the refusal came from the script inside EXEC)."""
    _setup(store, [])
    store.save_many([Tx(id="a", u="u1", n=1), Tx(id="b", n=2)])
    before = _dump(store)

    def work(tx: Any) -> None:
        if how == "save":
            tx.save(Tx(id="b", n=2, u="u1"))
        else:
            tx.update(Tx, "b", u="u1")
        UNIQUE_RAW[raw](tx)

    with pytest.raises(redmodel.UniqueViolationError, match="nothing was written"):
        store.transaction(work)()
    assert _dump(store) == before
    check(store, raw)


PRE_RAW_DEL: dict[str, Any] = {
    "update": lambda tx: tx.update(Tx, "a", n=5),
    "incr": lambda tx: tx.incr(Tx, "a", "n", 1),
    "persist": lambda tx: tx.persist(Tx, "a"),
    "persist, ttl'd": lambda tx: tx.persist(Tx, "a"),
}


# F2: a redmodel write of an object, then a raw DEL of it, then tx.save/tx.delete of it in
# one transaction: the entries of before MULTI (or those the first write left) stay
# (record-less objects; a TTL'd object's too after tx.persist). Stop 25's F2 fix covers a
# raw DEL that is the object's first write only
@pytest.mark.parametrize("then", ["delete", "save"])
@pytest.mark.parametrize("first", sorted(PRE_RAW_DEL))
def test_a_write_then_a_raw_del_then_an_index_write_of_that_key(
        store: redmodel.Store, first: str, then: str) -> None:
    """docs/transactions.md "Indexed models": "An index write of a key a raw command of
    the same transaction names ... takes the object's entries as they were indexed before
    `MULTI` (its record, or what its fields read then compute to) and as the writes queued
    before it leave ... An entry taken that way stands for the object even when a raw `DEL`
    of the same transaction removed it: a `tx.save` or `tx.delete` after it removes the
    entries it had before `MULTI`." Here tx.update/incr/persist of a, a raw DEL of a,
    then tx.delete (or tx.save) of a. Today: verify lists a's old entries (f='0.0', n,
    r, ri: "lists ax26t:a, which does not exist" / "whose n is not ...")."""
    store.client.flushdb()
    store.save(Tx(id="a", r=2.5), ttl=60 if "ttl" in first else None)
    store.save(Tx(id="b", n=2, f=1.5))

    def work(tx: Any) -> None:
        PRE_RAW_DEL[first](tx)
        tx.command("DEL", SPEC.key_for("a"))
        if then == "delete":
            tx.delete(Tx, "a")
        else:
            tx.save(Tx(id="a", n=3, f=1.5, r=7.0))

    store.transaction(work)()
    check(store, f"{first}, raw DEL, {then}")




# F3: raw DEL of a, tx.save of a refused inside EXEC (its unique value held by b, whose
# key a raw command names), then another tx.save of a: a is stored but missing from its
# equality and range indexes (verify lists it), under a "nothing was written" error
def test_a_write_after_a_unique_refusal_inside_exec_leaves_an_exact_index(
        store: redmodel.Store) -> None:
    """docs/transactions.md "Indexed models": "when a queued write of an object fails
    inside `EXEC` ... and a later write of the same object assumed what it would have
    left: that later write is refused too (its fields are not as assumed), so the index
    never follows a write that did not happen". Here the first save of a (u1, held by b)
    is refused by the script inside EXEC; the second save of a (no u) is applied as if
    the first had been: a is stored, verify says "ax26t:a: missing from the equality
    index n='0'" (and f, r, ri), and the error says nothing was written."""
    _setup(store, [(Tx(id="b", u="u1"), False)])

    def work(tx: Any) -> None:
        tx.command("DEL", SPEC.key_for("a"))
        tx.save(Tx(id="a", u="u1"))
        tx.command("DEL", SPEC.key_for("b"))
        tx.save(Tx(id="b"))
        tx.save(Tx(id="a"))

    with contextlib.suppress(redmodel.UniqueViolationError):
        store.transaction(work)()
    check(store, "unique refused inside EXEC, then a save of the same object")


FAULTS = st.sampled_from(["lose EXEC", "cut EXEC", "drop EXEC", "writer before MULTI",
                          "lose MULTI", "lose EVALSHA", "lose SCRIPT", "cut HMGET",
                          "drop MULTI", "lose WATCH"])
SAFE_OPS = st.lists(OP, min_size=1, max_size=4)


@settings(max_examples=scaled(8, floor=3), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=st.lists(st.tuples(objs(), st.booleans()), max_size=3), ops=SAFE_OPS,
       fault=FAULTS, other=CHANGE, once=st.booleans())
def test_lost_exec_replies_and_a_racing_writer_leave_all_or_nothing(
        store: redmodel.Store, proxy: FaultProxy, start: list[Any], ops: list[Any],
        fault: str, other: Any, once: bool) -> None:
    """docs/transactions.md: a connection lost during EXEC is OutcomeUnknownError ("EXEC
    is all-or-nothing, but whether it ran is unknown. Never resent"); the commit's reads
    are WATCHed, so a writer between them and EXEC makes the attempt run again. The state
    after is the one of the transaction applied once (on what it read), or nothing; in
    exactly-once mode (docs/failures.md) the store settles it: applied, exactly once."""
    before = _setup(store, start)
    racer = store.get(Tx, "a")
    if fault == "writer before MULTI":
        if racer is None:
            return
        store.update(Tx, "a", **dict([other]))  # what the retried attempt sees
    try:
        store.transaction(_work(store, ops, False))()
    except (*BEFORE, *EXEC_ERRORS, redmodel.TransactionError):
        pass
    want = _dump(store)
    again = _setup(store, start)
    assert again == before, {k: (again.get(k), before.get(k)) for k in set(again) | set(before)
                             if again.get(k) != before.get(k)}
    through = store_through(proxy, socket_timeout=5, exactly_once=once, resend=FAST_RESEND)
    try:
        raced: list[BaseException] = []
        if fault == "writer before MULTI":
            def write_first(argv: list[bytes]) -> bool:
                # on the proxy's thread as the MULTI arrives, after the WATCHed reads: the
                # racing write lands between them and EXEC (a thread that slept 0.05 s
                # into a 0.15 s stall could land after EXEC on a slow machine, or before
                # the WATCH)
                try:
                    store.update(Tx, "a", **dict([other]))
                except Exception as e:  # (raised here, it would stop the proxy's thread)
                    raced.append(e)
                return True

            proxy.stall("MULTI", 0.15, when=write_first)
        else:
            how, cmd = fault.split()
            {"lose": proxy.lose_reply, "cut": proxy.cut_reply,
             "drop": proxy.drop_request}[how](cmd)
        try:
            through.transaction(_work(through, ops, False))()
            outcome = "done"
        except redmodel.OutcomeUnknownError:
            outcome = "unknown"
        except (*BEFORE, *EXEC_ERRORS, redmodel.TransactionError):
            outcome = "refused"
        assert not raced, raced
        if fault == "writer before MULTI" or once:  # exactly-once mode settles it
            assert outcome != "unknown", (fault, once)
        proxy.quiet()
        time.sleep(0.05)  # a forwarded EXEC may still be on its way: dump after it
        got = _dump(store)
        assert got in (want, before) if outcome == "unknown" else got == want, \
            (fault, outcome, start, ops)
        check(store, f"{fault} {ops}")
    except redmodel.UniqueViolationError:
        pass  # the racing update refused: nothing to race
    finally:
        proxy.clear()
        through.close()




# F1, F2 through AsyncStore (one core: the same findings)
@pytest.mark.parametrize("finding", ["F1", "F2"])
def test_async_transactions_share_f1_and_f2(redis_url: str, store: redmodel.Store,
                                            finding: str) -> None:
    """As the F1 and F2 tests above, with an `async def` transaction of an AsyncStore."""
    shell = AsyncFacade(redmodel.AsyncStore.from_url(redis_url), store.client)
    try:
        if finding == "F2":
            _setup(store, [(Tx(id="a", r=2.5), False), (Tx(id="b", u="u1"), False)])

            async def work(tx: Any) -> None:
                await tx.get(Tx, "a")
                tx.update(Tx, "a", n=5)
                tx.command("DEL", SPEC.key_for("a"))
                tx.delete(Tx, "a")

            shell.transaction(work)()
        else:
            before = _setup(store, [(Tx(id="c"), False), (Tx(id="b", u="u1"), False)])

            async def work(tx: Any) -> None:
                tx.update(Tx, "c", u="u1")
                tx.command("HSET", SPEC.key_for("b"), "note", "z")

            with pytest.raises(redmodel.UniqueViolationError, match="nothing was written"):
                shell.transaction(work)()
            assert _dump(store) == before
        check(store, finding)
    finally:
        shell.close()


@redmodel.model(prefix="ax26b")
@attrs.define
class BlindTx:
    email: str | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                       default=None)
    n: int = redmodel.field(index=True, default=0)
    k: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field()


BSPEC = spec_of(BlindTx)



# F1 on a blind (encrypted) unique index, whose objects keep records
def test_blind_unique_refused_with_a_raw_command_on_its_holder_writes_nothing(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """As F1: a holds the encrypted email; a transaction updates b to it and raw-HSETs an
    unrelated field of a. Today: UniqueViolationError "nothing was written", and a's
    field zz is "1" (EXEC ran)."""
    use_keys(monkeypatch)
    store.save_many([BlindTx(id="a", email="x@y", n=1), BlindTx(id="b", n=2)])

    def work(tx: Any) -> None:
        tx.update(BlindTx, "b", email="x@y")
        tx.command("HSET", BSPEC.key_for("a"), "zz", "1")

    with pytest.raises(redmodel.UniqueViolationError, match="nothing was written"):
        store.transaction(work)()
    assert store.client.hget(BSPEC.key_for("a"), "zz") is None
    assert store.verify(BlindTx) == []


@settings(max_examples=scaled(5, floor=2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=st.lists(st.tuples(objs(), st.booleans()), max_size=3),
       txs=st.lists(st.lists(OP, min_size=1, max_size=3), min_size=2, max_size=6))
def test_racing_transactions_leave_an_exact_index(
        store: redmodel.Store, redis_url: str, start: list[Any], txs: list[Any]) -> None:
    """Transactions of the sequences above run in two threads at once on the same
    objects (each retried on conflict): afterwards the index equals a scan, verify is
    clean (docs/transactions.md: a watched key that changed means nothing was written)."""
    _setup(store, start)
    errors: list[BaseException] = []

    def runner(mine: list[Any]) -> None:
        other = redmodel.Store.from_url(redis_url)
        try:
            for ops in mine:
                try:
                    other.transaction(_work(other, ops, True),
                                      policy=redmodel.transactions.RetryPolicy(
                                          attempts=50))()
                except (*BEFORE, *EXEC_ERRORS, redmodel.TransactionError):
                    pass
                except BaseException as e:
                    errors.append(e)
        finally:
            other.close()

    threads = [threading.Thread(target=runner, args=(txs[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check(store, f"{start} {txs}")


@settings(max_examples=scaled(5, floor=2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=st.lists(st.tuples(objs(), st.booleans()), max_size=3),
       ops=st.lists(PLAIN_OP, min_size=1, max_size=4), short=st.sets(ID, min_size=1),
       read=st.booleans())
def test_objects_expiring_during_a_transaction(
        store: redmodel.Store, start: list[Any], ops: list[Any], short: set[str],
        read: bool) -> None:
    """Objects whose expiry passes between the transaction's reads and its commit (and
    during the commit's own reads): the index, after the documented sweep, equals a scan
    and verify is clean. (The objects that expire hold no unique value: F4.)"""
    _setup(store, [(attrs.evolve(o, u=None), ttl) for o, ttl in start])
    for i in short:
        if store.client.exists(SPEC.key_for(i)):
            store.expire(Tx, i, 0.03)
    inner = _work(store, ops, read)

    def work(tx: Any) -> None:
        inner(tx)
        time.sleep(0.035)

    with contextlib.suppress(*BEFORE, *EXEC_ERRORS, redmodel.TransactionError):
        store.transaction(work)()
    time.sleep(0.035)
    store.sweep(Tx)
    check(store, f"{start} {ops} {short}")



# F4: an expired object's unique value taken over by another writer, then the expired
# object written again with that value: accepted, two live objects hold one unique value
# (outside a transaction too)
@pytest.mark.parametrize("in_tx", [False, True])
def test_an_expired_holder_written_again_cannot_take_back_a_taken_unique_value(
        store: redmodel.Store, in_tx: bool) -> None:
    """docs/queries.md ("How entries stay right", TTL): "a write of an object whose own
    expiry passed replaces what is left of its entries, and a unique value held by an
    expired (or deleted) object is taken over by the next writer"; unique values: a second
    live holder is refused (UniqueViolationError). b (TTL'd) holds u1 and expires; a takes
    u1 (the next writer); then b is saved again with u1. Expected: refused, a keeps u1.
    Today: both saves succeed, scan shows a and b with u1, get_by answers a, verify says
    "ax26t:b: the unique index u='u1' points at id 'a'" (b's left-over record still names
    u1, so its save sees the value as unchanged)."""
    _setup(store, [])
    store.save(Tx(id="a"))
    store.save(Tx(id="b", u="u1"), ttl=0.02)
    time.sleep(0.04)

    def work(tx: Any) -> None:
        tx.save(Tx(id="a", u="u1"))
        tx.save(Tx(id="b", u="u1"))

    with contextlib.suppress(redmodel.UniqueViolationError):
        if in_tx:
            store.transaction(work)()
        else:
            store.save(Tx(id="a", u="u1"))
            store.save(Tx(id="b", u="u1"))
    store.sweep(Tx)
    holders = sorted(o.id for o in store.scan(Tx) if o.u == "u1")
    assert len(holders) <= 1, holders
    check(store, "expired holder written again")



# F4 on a blind-indexed model (every object keeps a record): an object deleted behind
# redmodel's back (or expired) takes its encrypted unique value back from its new holder
@pytest.mark.parametrize("gone", ["raw DEL", "expired"])
def test_blind_holder_gone_and_written_again_cannot_take_back_its_unique_value(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, gone: str) -> None:
    """As F4 (docs/queries.md: "a unique value held by an expired (or deleted) object is
    taken over by the next writer"): a holds the email and is gone (raw DEL / expiry), b
    takes the email, a is saved again with it. Expected: UniqueViolationError. Today:
    both saved, verify: "ax26b:a: the unique index email=... points at id 'b'"."""
    use_keys(monkeypatch)
    store.save(BlindTx(id="b"))
    store.save(BlindTx(id="a", email="x@y"), ttl=0.02 if gone == "expired" else None)
    if gone == "raw DEL":
        store.client.delete(BSPEC.key_for("a"))
    else:
        time.sleep(0.04)
    store.save(BlindTx(id="b", email="x@y"))
    with contextlib.suppress(redmodel.UniqueViolationError):
        store.save(BlindTx(id="a", email="x@y"))
    store.sweep(BlindTx)
    assert [o.id for o in store.scan(BlindTx) if o.email] == ["b"]
    if gone == "raw DEL":  # the refused save wrote nothing: what a raw DEL leaves is
        # reported (docs/queries.md: reindex removes it), and it is nothing else
        assert store.verify(BlindTx) == [
            "ax26b:a: indexed, but the object does not exist (deleted outside redmodel, "
            "restored from an older snapshot, or expired and not swept yet)"]
        store.reindex(BlindTx)
    assert store.verify(BlindTx) == []


# ---- the fixes' own rules (FT26) -------------------------------------------------------------

RAW_BEFORE: dict[str, tuple[tuple[Any, ...], Any]] = {
    # a raw command on the holder queued BEFORE the write taking its value: the
    # transaction follows what it can, refuses before MULTI what it cannot judge
    "HSET of another field": (("HSET", "note", "z"), redmodel.UniqueViolationError),
    "HINCRBY of another field": (("HINCRBY", "cnt", "2"), redmodel.UniqueViolationError),
    "HSET of the unique field": (("HSET", "u", '"u2"'), redmodel.TransactionError),
    "HDEL of the unique field": (("HDEL", "u"), redmodel.TransactionError),
    "EXPIRE": (("PEXPIRE", "60000"), redmodel.TransactionError),
    "DEL": (("DEL",), None),
    # only the raw commands queued before count: a raw DEL of a after the write
    "HSET of another field, DEL after": (("HSET", "note", "z"), redmodel.UniqueViolationError),
}


@pytest.mark.parametrize("raw", sorted(RAW_BEFORE))
def test_a_raw_command_on_the_holder_before_the_write_taking_its_value(
        store: redmodel.Store, raw: str) -> None:
    """a holds u1; one transaction runs a raw command on a, then tx.update of b to u1.
    A raw command naming other fields leaves a holding u1 (UniqueViolationError), one
    that may write a's unique field (or any field) cannot be judged before MULTI
    (TransactionError naming a's key): both before MULTI, nothing written. A raw DEL
    gives the value up: b takes it (docs/transactions.md, "Indexed models")."""
    _setup(store, [])
    store.save_many([Tx(id="a", u="u1", n=1), Tx(id="b", n=2)])
    before = _dump(store)
    (cmd, *args), want = RAW_BEFORE[raw]

    def work(tx: Any) -> None:
        tx.command(cmd, SPEC.key_for("a"), *args)
        tx.update(Tx, "b", u="u1")
        if raw.endswith("DEL after"):
            tx.command("DEL", SPEC.key_for("a"))

    if want is None:
        store.transaction(work)()
        assert store.get_by(Tx, u="u1") == Tx(id="b", n=2, u="u1")
        assert store.get(Tx, "a") is None
        return
    with pytest.raises(want, match="nothing was written") as e:
        store.transaction(work)()
    if want is redmodel.TransactionError:
        assert SPEC.key_for("a") in str(e.value)
    assert _dump(store) == before
    check(store, raw)


def test_a_raw_copy_reviving_a_gone_holder_is_refused_before_multi(store: redmodel.Store) -> None:
    """A raw command on ANOTHER key (COPY) makes the gone holder of u1 exist again inside
    EXEC. Before attack 26w's F2 fix the script refused the write taking u1 there, after
    the other writes were applied (and said so); now a raw command naming the holder's
    key anywhere counts as one on it, so the commit refuses the transaction before MULTI
    with a TransactionError, nothing written."""
    _setup(store, [])
    store.save_many([Tx(id="a", u="u1"), Tx(id="c", n=3)])
    store.client.delete(SPEC.key_for("a"))  # gone; the unique index still names a

    def work(tx: Any) -> None:
        tx.command("COPY", SPEC.key_for("c"), SPEC.key_for("a"))
        tx.update(Tx, "c", note="applied")
        tx.save(Tx(id="b", u="u1"))

    with pytest.raises(redmodel.TransactionError, match="nothing was written"):
        store.transaction(work)()
    assert store.get(Tx, "b") is None
    assert store.get(Tx, "c") == Tx(id="c", n=3)
    assert not store.client.exists(SPEC.key_for("a"))


# F4's kind: holders that keep a record (TTL'd; every object of a blind model), gone by
# expiry or raw DEL, then writes of others and of the gone ones, in any order
GONE_IDS = ["a", "b:{1}"]
GONE_U = st.sampled_from(["u1", "u1", "u2", None])  # mostly a value a gone one held
GONE_OP = st.one_of(
    st.tuples(st.just("save"), st.sampled_from(GONE_IDS), GONE_U, st.booleans()),
    st.tuples(st.just("update"), st.sampled_from(GONE_IDS), GONE_U),
    st.tuples(st.just("save_many"), st.lists(
        st.tuples(st.sampled_from(GONE_IDS), GONE_U),
        min_size=1, max_size=3, unique_by=lambda t: t[0])),
)


def _write_of(i: str, u: str | None) -> Any:
    return st.one_of(st.tuples(st.just("save"), st.just(i), st.just(u), st.booleans()),
                     st.tuples(st.just("update"), st.just(i), st.just(u)),
                     st.tuples(st.just("save_many"), st.just([(i, u)])))


@settings(max_examples=scaled(20, floor=6), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(blind=st.booleans(),
       start=st.lists(st.tuples(st.sampled_from(GONE_IDS), st.sampled_from(["u1", "u2"]),
                                st.sampled_from(["expired", "raw DEL", "expired", "raw DEL",
                                                 "live", "live ttl"])),
                      min_size=1, max_size=2, unique_by=lambda t: t[0]),
       extra=st.lists(GONE_OP, max_size=2), in_tx=st.booleans(), data=st.data())
def test_gone_record_keeping_holders_never_make_two_live_holders(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, blind: bool,
        start: list[Any], extra: list[Any], in_tx: bool, data: Any) -> None:
    """docs/queries.md (TTL; unique values): a unique value held by an expired or deleted
    object is taken over by the next writer, and a gone object written again with a
    value another live object took is refused (UniqueViolationError), outside and inside
    transactions, with save, update and save_many: at most one live holder per value,
    the unique index names it, verify clean (but for what a raw DEL leaves, which
    reindex removes). Each holder's value is written by the other id and by the holder
    again, with other writes, in an order drawn from all of them."""
    core = []
    for x, v, _ in start:
        other = next(i for i in GONE_IDS if i != x)
        core += [data.draw(_write_of(other, v)), data.draw(_write_of(x, v))]
    ops = data.draw(st.permutations(core + extra))
    # one index key for every example: the registry record (kept below) records the key
    # the blind entries are under, and refuses a process configured with another
    use_keys(monkeypatch, index=[GONE_INDEX_KEY])
    model: Any = BlindTx if blind else Tx
    spec = BSPEC if blind else SPEC
    ufield = "email" if blind else "u"
    for key in list(store.client.scan_iter(match=spec.prefix.encode() + b"*")):
        if not key.endswith(b"%schema"):
            store.client.delete(key)
    rawdel = set()
    for i, u, how in start:
        with contextlib.suppress(redmodel.UniqueViolationError):
            store.save(model(id=i, **{ufield: u}), ttl={  # a record kept: TTL, or blind
                "expired": 0.02, "live ttl": 60, "live": None,
                "raw DEL": None if blind else 60}[how])
        if how == "raw DEL":
            store.client.delete(spec.key_for(i))
            rawdel.add(i)
    if any(how == "expired" for *_, how in start):
        time.sleep(0.03)

    def queue(s: Any) -> None:
        for op in ops:  # (ValidationError: one save_many giving two objects one value)
            with contextlib.suppress(redmodel.UniqueViolationError, redmodel.ValidationError):
                if op[0] == "save":
                    s.save(model(id=op[1], **{ufield: op[2]}), ttl=60 if op[3] else None)
                elif op[0] == "update":
                    s.update(model, op[1], **{ufield: op[2]})
                else:
                    s.save_many([model(id=i, **{ufield: u}) for i, u in op[1]])

    if in_tx:
        with contextlib.suppress(redmodel.UniqueViolationError, redmodel.TransactionError):
            store.transaction(queue)()
    else:
        queue(store)
    store.sweep(model)
    live = list(store.scan(model))
    for u in ("u1", "u2"):
        holders = [o for o in live if getattr(o, ufield) == u]
        assert len(holders) <= 1, (u, holders)
        if holders:
            assert store.get_by(model, **{ufield: u}) == holders[0]
    ids = {o.id for o in live}
    trace = ": indexed, but the object does not exist"
    assert [p for p in store.verify(model)
            if not any(p.startswith(spec.key_for(i) + trace) for i in rawdel - ids)] == []
    store.reindex(model)
    assert store.verify(model) == []


@pytest.mark.parametrize("how", ["save", "save_many"])
def test_a_gone_object_written_again_checks_the_type_of_every_key_it_writes(
        store: redmodel.Store, how: str) -> None:
    """A gone object's entries are all written again (F4's fix), so the key of an entry
    its left-over record names too is type-checked first: a wrong-typed one (an index key
    overwritten outside redmodel) refuses the write with nothing written (docs/queries.md:
    a ServerError naming the key), not a script error after the object's fields."""
    _setup(store, [])
    store.save(Tx(id="a", n=7), ttl=0.02)
    time.sleep(0.03)
    eq = SPEC.key_for("x")[: -len("x")] + "%idx:eq:n:7"
    assert store.client.type(eq) == b"set"
    store.client.delete(eq)
    store.client.set(eq, "planted")
    with pytest.raises(redmodel.ServerError, match="WRONGTYPE"):
        if how == "save":
            store.save(Tx(id="a", n=7))
        else:
            store.save_many([Tx(id="b:{1}"), Tx(id="a", n=7)])
    assert store.client.exists(SPEC.key_for("a")) == 0


def test_a_raw_del_after_a_write_that_failed_inside_exec_then_a_delete(
        store: redmodel.Store) -> None:
    """tx.incr_fields of c fails inside EXEC (its range int would pass 2**53), then a raw
    DEL of c and tx.delete of c: the delete cannot check what the failed write left (the
    object is gone), so it removes every entry c had before MULTI or after any write
    queued before (found by Hypothesis: it removed only the failed write's n='1', and
    n='0' stayed listing a gone object)."""
    _setup(store, [(Tx(id="c", ri=2**53), False)])

    def work(tx: Any) -> None:
        tx.incr_fields(Tx, "c", {"n": 1, "ri": 1})
        tx.command("DEL", SPEC.key_for("c"))
        tx.delete(Tx, "c")

    with pytest.raises(redmodel.ConditionFailedError):
        store.transaction(work)()
    check(store, "failed incr_fields, raw DEL, delete")
