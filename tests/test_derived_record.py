"""The derived index record (issue 17, item 4 part 2; /work/notes/s25/REC-CONTRACT.md).

An object of a model without a blind index keeps a stored record (``<root>rec``) only while
it has an expiry; the others' old entries are what their stored fields compute to. A write
sends what it assumes the indexed fields hold; the script checks it (HMGET) and answers
STORED, writing nothing, when it is wrong, and the client sends again.

The property: after any interleaving of saves (not loaded, loaded and changed, forced),
save_many, update, incr/incr_fields, delete, delete_many, expire/persist and
transactions, with hostile ids and values, every index key is exactly what the live
objects' fields compute to, ``<root>rec`` holds exactly the objects with an expiry (with
their entries), and queries equal a scan. Then: lost replies on a write answered STORED
and on its resend, a planted legacy record (used and dropped), and a writer changing the
fields between the STORED answer and the resend.

(``verify`` is not called here: its record-less rules are R25's branch, s25-recr.)
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._specs import WRITE
from redmodel._indexes._writes import MANY, run_writes, status
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from redmodel._plan import Batch
from redmodel.testing import FaultProxy, has
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through
from tests.index_helpers import all_ids, dump, expected_keyspace, flush


@redmodel.model(prefix="drv")
@attrs.define
class Drv:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    n: int = redmodel.field(index=True)  # incr moves its equality entry
    k: int = redmodel.field(index="range", default=0)  # incr moves its score
    sku: str | None = redmodel.field(unique=True, default=None)
    note: str = ""
    id: str = redmodel.key_field()


@redmodel.model(prefix="drvq", buckets=4)  # unique values claimed in their own buckets
@attrs.define
class DrvQ:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    n: int = redmodel.field(index=True)
    k: int = redmodel.field(index="range", default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    note: str = ""
    id: str = redmodel.key_field()


SPEC = spec_of(Drv)
ROOT = "drv:%idx:"
IDS = ["a", "b:1", "{c}", "d*", "e%", "f\\", "g h"]
ID = st.sampled_from(IDS)
TEXTS = st.one_of(st.sampled_from(["red", "", "x:y", "{t}", "*", "%", "\\", "é"]),
                  st.just("h" * 200))
FLOATS = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                   st.sampled_from([0.0, -0.0, 1.5, 2.0**53]))
INTS = st.one_of(st.integers(-3, 3), st.sampled_from([2**53, -(2**53), 2**63 - 1, 2**70]))
SMALL = st.integers(-5, 5)


@st.composite
def drv(draw: Any, i: str | None = None, cls: type = Drv) -> Any:
    i = draw(ID) if i is None else i
    return cls(id=i, color=draw(TEXTS), price=draw(FLOATS), n=draw(INTS), k=draw(SMALL),
               sku=draw(st.sampled_from([None, f"k-{i}", "shared"])), note=draw(TEXTS))


def expected(live: dict[str, Any], ttl: set[str], spec: Any = SPEC) -> dict[bytes, Any]:
    """The index keys (and records) the live objects call for, as :func:`actual` shows (a
    value that cannot be indexed has no entry)."""
    return expected_keyspace(spec, live, ttl, skip_unindexable=True)


def actual(client: Any, spec: Any = SPEC) -> dict[bytes, Any]:
    """The index keys in the server (claims of a bucketed model's unique values, which
    keep a claim's text: only the holder, as the confirmed claim's owner)."""
    out: dict[bytes, Any] = {}
    roots = [spec.index_root(t) for t in spec.tags()]
    for root in roots:
        ids = all_ids(client, root)
        if ids:
            out[(root + "ids").encode()] = ("zset", [(i, 0.0) for i in ids])
    for k, (kind, held, _) in dump(client).items():
        value = held
        if not k.startswith(spec.prefix.encode() + b":") or k.startswith(
                tuple((r + "ids").encode() for r in roots)) or \
                k in {(r + "idn").encode() for r in roots}:
            continue
        if b"%idx" not in k:
            continue  # an object
        if kind == "zset":
            value = sorted((m, -1.0 if k.endswith(b"exp") else float(s)) for m, s in value)
        if spec.claims and kind == "hash" and not k.endswith(b"rec"):
            value = [(f, v.split(b"\x1f")[0]) for f, v in value]
        out[k] = (kind, value)
    return out


def check(store: redmodel.Store, cls: type = Drv) -> None:
    """Index keys and records equal what the stored objects compute to; queries = scans."""
    spec = spec_of(cls)
    live = {o.id: o for o in store.scan(cls)}
    ttl = {i for i in live if store.pttl(cls, i) is not None}
    assert actual(store.client, spec) == expected(live, ttl, spec)
    for color in {o.color for o in live.values()} | {"red"}:
        assert sorted(store.find(cls, color=color).ids()) == \
            sorted(i for i, o in live.items() if o.color == color)
    assert sorted(store.find(cls).order_by("price").ids()) == sorted(live)
    for o in live.values():
        if o.sku is not None:
            assert store.get_by(cls, sku=o.sku) == o


def _apply(store: redmodel.Store, step: tuple[Any, ...], cls: type = Drv) -> None:
    kind = step[0]
    try:
        if kind == "save":
            _, o, ttl = step
            store.save(o, ttl=60 if ttl else None)
        elif kind == "many":
            store.save_many(step[1], ttl=60 if step[2] else None)
        elif kind in ("loaded", "force"):
            loaded = store.get(cls, step[1])
            if loaded is None:
                return
            loaded.color, loaded.n = step[2], step[3]
            store.save(loaded, force=kind == "force")
        elif kind == "stale":  # loaded, another writer moves it, the copy is saved
            loaded = store.get(cls, step[1])
            if loaded is None:
                return
            store.update(cls, step[1], color=step[2], price=step[4])
            loaded.note, loaded.n = "stale", step[3]
            store.save(loaded)
        elif kind == "update":
            store.update(cls, step[1], color=step[2])
        elif kind == "update_range":
            store.update(cls, step[1], price=step[2])
        elif kind == "incr":
            store.incr(cls, step[1], step[2], step[3])
        elif kind == "incr_fields":
            store.incr_fields(cls, step[1], {"n": step[2], "k": step[3]})
        elif kind == "delete":
            store.delete(cls, step[1])
        elif kind == "delete_many":
            store.delete_many(cls, step[1])
        elif kind == "expire":
            store.expire(cls, step[1], 60)
        elif kind == "persist":
            store.persist(cls, step[1])
        elif kind == "tx":
            _, i, o, color = step

            def work(tx: Any) -> None:
                tx.get(cls, i)
                tx.update(cls, i, color=color)
                tx.incr(cls, i, "n", 1)
                tx.save(o)
                tx.incr(cls, o.id, "k", 2)
                tx.delete(cls, i) if color == "" else tx.update(cls, o.id, price=1.5)

            store.transaction(work)()
    except (redmodel.UniqueViolationError, redmodel.NotFoundError,
            redmodel.ConditionFailedError, redmodel.ValidationError):
        pass  # refused: nothing written (the check after the step says so)


STEP = st.one_of(
    st.tuples(st.just("save"), drv(), st.booleans()),
    st.tuples(st.just("many"), st.lists(drv(), max_size=3), st.booleans()),
    st.tuples(st.sampled_from(["loaded", "force"]), ID, TEXTS, INTS),
    st.tuples(st.just("stale"), ID, TEXTS, INTS, FLOATS),
    st.tuples(st.just("update"), ID, TEXTS),
    st.tuples(st.just("update_range"), ID, FLOATS),
    st.tuples(st.just("incr"), ID, st.sampled_from(["n", "k"]), SMALL),
    st.tuples(st.just("incr_fields"), ID, SMALL, SMALL),
    st.tuples(st.just("delete"), ID),
    st.tuples(st.just("delete_many"), st.lists(ID, max_size=3)),
    st.tuples(st.sampled_from(["expire", "persist"]), ID),
    st.tuples(st.just("tx"), ID, drv(), TEXTS),
)


@settings(max_examples=scaled(80, floor=10), deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_index_keys_and_records_are_what_the_fields_compute_to(
        store: redmodel.Store, steps: list[tuple[Any, ...]]) -> None:
    flush(store.client)
    for step in steps:
        _apply(store, step)
        check(store)


@settings(max_examples=scaled(40, floor=10), deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_the_same_on_a_bucketed_model_with_claims(
        store: redmodel.Store, steps: list[tuple[Any, ...]]) -> None:
    flush(store.client)
    for step in steps:
        _apply(store, _as(DrvQ, step), DrvQ)
        check(store, DrvQ)


def _as(cls: type, step: tuple[Any, ...]) -> tuple[Any, ...]:
    """A step of the Drv property on another model of the same fields."""
    def conv(x: Any) -> Any:
        if isinstance(x, Drv):
            return cls(**attrs.asdict(x))
        if isinstance(x, list):
            return [conv(y) for y in x]
        return x
    return (step[0], *(conv(x) for x in step[1:]))


def test_nan_is_refused_before_any_write(store: redmodel.Store) -> None:
    flush(store.client)
    store.save(Drv(id="a", color="red", price=1.0, n=1))
    before = dump(store.client)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(redmodel.ValidationError):
            store.save(Drv(id="a", color="blue", price=bad, n=1))
        with pytest.raises(redmodel.ValidationError):
            store.update(Drv, "a", price=bad)
    assert dump(store.client) == before


def test_a_record_only_while_the_object_expires(store: redmodel.Store) -> None:
    """Persisting drops the record (its entries stay, derived now); a new TTL makes one."""
    flush(store.client)
    rec = ROOT + "rec"
    store.save(Drv(id="a", color="red", price=1.0, n=1), ttl=60)
    assert store.client.hkeys(rec) == [b"a"]
    assert store.persist(Drv, "a")
    assert store.client.hkeys(rec) == []
    check(store)
    assert store.expire(Drv, "a", 60)  # nothing known by id: STORED, then the record
    assert store.client.hkeys(rec) == [b"a"]
    check(store)


def test_a_planted_legacy_record_is_used_and_dropped(store: redmodel.Store) -> None:
    """A record an older redmodel wrote names the entries to undo (here ones the fields
    no longer compute to: a raw HSET moved them); the next write uses it and drops it."""
    flush(store.client)
    store.save(Drv(id="a", color="red", price=1.0, n=1, sku="s"))
    old = "\n".join(sorted(SPEC.indexes.entries(  # type: ignore[union-attr]
        {"color": "red", "price": 1.0, "n": 1, "k": 0, "sku": "s"})))
    store.client.hset(ROOT + "rec", "a", old)  # as an older redmodel left it
    store.client.hset("drv:a", "color", "blue")  # raw: the record still says red
    assert store.client.sismember(ROOT + "eq:color:red", "a")
    store.save(Drv(id="a", color="green", price=2.0, n=1, sku="s"))
    assert store.client.hkeys(ROOT + "rec") == []
    assert not store.client.exists(ROOT + "eq:color:red")
    check(store)
    store.client.hset(ROOT + "rec", "a", "\n".join(sorted(SPEC.indexes.entries(  # type: ignore[union-attr]
        {"color": "green", "price": 2.0, "n": 1, "k": 0, "sku": "s"}))))
    assert store.delete(Drv, "a")
    assert actual(store.client) == {}


def _drive(store: redmodel.Store, plan: Any, between: Any = None) -> Any:
    """Run a write plan, one batch at a time, calling ``between()`` after the first."""
    client = store.client
    reply: Any = None
    first = True
    try:
        while True:
            batch: Batch = plan.send(reply)
            reply = []
            for cmd in batch.commands:
                if cmd[0] == "EVALSHA":
                    script = MANY if cmd[1] == MANY.sha else None
                    source = script.source if script else _source(cmd[1])
                    reply.append(client.execute_command("EVAL", source, *cmd[2:]))
                else:
                    reply.append(client.execute_command(*cmd))
            if first and between is not None:
                between()
            first = False
    except StopIteration as done:
        return done.value


def _source(sha: str) -> str:
    assert sha == WRITE.sha
    return WRITE.source


def test_a_writer_between_the_stored_answer_and_the_resend(store: redmodel.Store) -> None:
    """The resend assumes what the STORED answer said; a writer that moved the fields in
    between gets another STORED answer, and the third send lands on what it found."""
    flush(store.client)
    store.save(Drv(id="a", color="red", price=1.0, n=1, sku="s"))
    layout: Any = layout_of(SPEC)
    w = layout.save(SPEC.key_for("a"), Drv(id="a", color="blue", price=2.0, n=2), None)
    plan = run_writes([w], idempotent=True, hints=None, what="save")

    def other() -> None:  # after the first (STORED) answer, before the resend
        store.update(Drv, "a", color="green", sku="t")

    seen: list[list[str | None]] = []

    def spy() -> Any:  # the plan, noting the status word of each answer it gets
        reply = yield next(plan)
        while True:
            seen.append([status(r) for r in reply])
            try:
                batch = plan.send(reply)
            except StopIteration as done:
                return done.value
            reply = yield batch

    answers = _drive(store, spy(), other)
    assert answers == [1]
    assert seen[:2] == [["STORED"], ["STORED"]]
    assert store.get(Drv, "a") == Drv(id="a", color="blue", price=2.0, n=2)
    assert not store.client.exists(ROOT + "eq:color:green") and not \
        store.client.exists(ROOT + "eq:color:red")
    check(store)


@pytest.mark.parametrize("which", ["stored", "resend"])
def test_lost_replies_around_a_stored_answer(proxy: FaultProxy, redis_client: Any,
                                             which: str) -> None:
    """docs/failures.md: a save is resent (applied once, returns); a delete is not
    (OutcomeUnknownError; applied or not, never twice). ``stored``: the reply lost is the
    STORED answer (nothing was written); ``resend``: the one of the send after it."""
    store = store_through(proxy, resend=FAST_RESEND)
    try:
        store.save(Drv(id="a", color="red", price=1.0, n=1))
        # the first send assumes what it writes (blue); the resend what is stored (red)
        when = (lambda argv: b"blue" in argv and b"red" not in argv) if which == "stored" \
            else has("red", "blue")
        proxy.lose_reply("EVALSHA", when=when)
        store.save(Drv(id="a", color="blue", price=2.0, n=1))
        assert proxy.wait_fired()
        assert store.get(Drv, "a") == Drv(id="a", color="blue", price=2.0, n=1)
        check(redmodel.Store(redis_client))
        # a delete by id assumes nothing known: its first answer is STORED
        stored_first = b"?"
        when = has(stored_first) if which == "stored" else has("1", "blue")
        proxy.lose_reply("EVALSHA", when=when)
        with pytest.raises(redmodel.OutcomeUnknownError):
            store.delete(Drv, "a")
        assert (store.get(Drv, "a") is None) == (which == "resend")
        check(redmodel.Store(redis_client))
        store.delete(Drv, "a")
        assert actual(redis_client) == {}
    finally:
        store.close()


def test_a_model_with_a_blind_index_keeps_a_record_for_every_object(
        store: redmodel.Store, fresh_keys: None) -> None:
    """Old tokens cannot be computed again after a key rotation: every object of such a
    model keeps its record (IndexSpec.keeps_records), and writes use it as before."""

    @redmodel.model(prefix="drvb")
    @attrs.define
    class Secretive:
        name: str = redmodel.field(index=True)
        email: str | None = redmodel.field(codec="json|fernet", index="blind", default=None)
        id: str = redmodel.key_field()

    assert spec_of(Secretive).indexes.keeps_records  # type: ignore[union-attr]
    assert not SPEC.indexes.keeps_records  # type: ignore[union-attr]
    flush(store.client)
    rec = "drvb:%idx:rec"
    store.save(Secretive(name="a", email="a@x", id="1"))
    store.save_many([Secretive(name="b", email="b@x", id="2"),
                     Secretive(name="c", id="3")])
    assert sorted(store.client.hkeys(rec)) == [b"1", b"2", b"3"]
    store.update(Secretive, "1", name="z")
    store.save(Secretive(name="y", email="c@x", id="2"))  # blind: the record says the old
    assert store.find(Secretive, name="a").ids() == []
    assert store.find(Secretive, name="b").ids() == []
    assert sorted(store.find(Secretive, email="c@x").ids()) == ["2"]
    assert store.find(Secretive, email="b@x").ids() == []
    store.persist(Secretive, "3")
    assert sorted(store.client.hkeys(rec)) == [b"1", b"2", b"3"]
    assert store.delete(Secretive, "2") and store.delete(Secretive, "1")
    assert store.client.hkeys(rec) == [b"3"]
    assert store.find(Secretive, email="c@x").ids() == []


# ---- helper M25: the paths that give an object an expiry; objects stored before the index ----


@redmodel.model(prefix="drvt")
@attrs.define
class DrvT:
    color: str = redmodel.field(index=True)
    n: int = redmodel.field(index="range", default=0)  # range-only: a tx incr is not followed
    f: float = redmodel.field(index="range", default=0.0)
    note: str = ""
    id: str = redmodel.key_field(generated=False)


def _record_of(store: redmodel.Store, id: str) -> set[str]:
    raw = store.client.hget("drvt:%idx:rec", id)
    return set() if raw is None else set(raw.decode().split("\n"))


def _lines(o: DrvT) -> set[str]:
    return {f"e\x1fcolor\x1f{o.color}", f"r\x1fn\x1f{o.n}", f"r\x1ff\x1f{o.f:.17g}"}


def test_every_path_that_gives_an_expiry_writes_the_whole_record(store: redmodel.Store) -> None:
    """A dirty save with a TTL (one field changed), a save_many of loaded objects with a
    TTL, and a transaction's increments of range-only scores then an expire: each object
    has an expiry after it, so it keeps a record holding every entry it has (the sweep
    undoes them from it), its scores as the index holds them."""
    for k in store.client.keys("drvt*"):
        store.client.delete(k)
    store.save_many([DrvT("red", i, i + 0.1, id=f"t{i}") for i in range(4)])
    assert store.client.hlen("drvt:%idx:rec") == 0
    one = store.get(DrvT, "t0")
    assert one is not None
    one.color = "blue"
    store.save(one, ttl=60)                       # partial: only color sent
    assert _record_of(store, "t0") == _lines(one)
    two = store.get_many(DrvT, ["t1", "t2"])
    for o in two:
        assert o is not None
        o.note = "x"                              # no indexed field changed
    assert store.save_many(two, ttl=60) == 2
    for o in two:
        assert o is not None and _record_of(store, o.id) == _lines(o)

    def bump(tx: Any) -> None:
        tx.incr(DrvT, "t3", "n", 3)
        tx.incr(DrvT, "t3", "f", 0.2)
        tx.expire(DrvT, "t3", 60)
    store.transaction(bump)()
    three = store.get(DrvT, "t3")
    assert three is not None and three.n == 6 and abs(three.f - 3.3) < 1e-9
    assert _record_of(store, "t3") == _lines(three)
    assert store.verify(DrvT) == []
    store.persist(DrvT, "t0")                     # no expiry: the record goes
    assert _record_of(store, "t0") == set() and store.verify(DrvT) == []


def test_raw_hset_then_update_and_expire_in_a_transaction_keeps_its_record(
        store: redmodel.Store) -> None:
    """The CLI's sealed import: raw DEL and HSET of a new object, then update (its index
    entries) and expire, in one transaction: the writes after the raw HSET know the object
    exists then, and the record holds its entries."""
    for k in store.client.keys("drvt*"):
        store.client.delete(k)

    def sealed(tx: Any) -> None:
        tx.command("DEL", "drvt:s1")
        tx.command("HSET", "drvt:s1", "color", "green", "n", "4", "f", "0.5", "note", "")
        tx.update(DrvT, "s1", color="green", n=4, f=0.5)
        tx.expire(DrvT, "s1", 60)
    store.transaction(sealed)()
    assert _record_of(store, "s1") == _lines(DrvT("green", 4, 0.5, id="s1"))
    assert store.verify(DrvT) == []
    assert [o.id for o in store.find(DrvT, color="green")] == ["s1"]


@redmodel.model(prefix="drvo")
@attrs.define
class DrvOld:
    color: str = ""
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="drvo")
@attrs.define
class DrvNew:
    color: str = redmodel.field(index=True, default="")
    id: str = redmodel.key_field(generated=False)


DrvOld.__qualname__ = DrvNew.__qualname__ = "DrvOldNew"


def test_a_write_of_an_object_stored_before_its_index_lists_it(store: redmodel.Store) -> None:
    """Objects stored before their model had an index are in no all-ids page and have no
    record: a blind save, a loaded-and-changed save and a save_many of them (the index
    still building) each put the id in the pages; no record does not mean listed."""
    for k in store.client.keys("drvo*"):
        store.client.delete(k)
    store.save_many([DrvOld("red", id=f"o{i}") for i in range(5)])
    assert all_ids(store.client, "drvo:%idx:") == []
    store.save(DrvNew("red", id="o0"))                       # blind, values unchanged
    loaded = store.get(DrvNew, "o1")
    assert loaded is not None
    loaded.color = "blue"
    store.save(loaded)                                       # dirty
    store.save_many([DrvNew("red", id="o2"), DrvNew("green", id="o3")])
    assert all_ids(store.client, "drvo:%idx:") == [b"o0", b"o1", b"o2", b"o3"]
    assert store.client.hlen("drvo:%idx:rec") == 0
    store.build_index(DrvNew, "color")
    assert all_ids(store.client, "drvo:%idx:") == [b"o0", b"o1", b"o2", b"o3", b"o4"]
    assert store.verify(DrvNew) == []


@redmodel.model(prefix="drvr")
@attrs.define
class DrvR1:
    hits: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="drvr")
@attrs.define
class DrvR2:
    hits: int = redmodel.field(index=True, default=0, name="h", old_names=["hits"])
    id: str = redmodel.key_field(generated=False)


DrvR1.__qualname__ = DrvR2.__qualname__ = "DrvR"


def test_a_value_under_an_old_name_derives_its_old_entry(store: redmodel.Store) -> None:
    """A loaded object whose indexed counter is still stored under its old name
    (old_names=): the old entry its write removes is derived from that name's value (as
    the model reads it), and an increment derives it in Lua the same way."""
    for k in store.client.keys("drvr*"):
        store.client.delete(k)
    store.save_many([DrvR1(5, id="r1"), DrvR1(9, id="r2")])
    loaded = store.get(DrvR2, "r1")
    assert loaded is not None and loaded.hits == 5
    loaded.hits = 6
    store.save(loaded)
    store.incr(DrvR2, "r2", "hits", 1)
    assert [o.id for o in store.find(DrvR2, hits=5)] == []
    assert [o.id for o in store.find(DrvR2, hits=9)] == []
    assert [o.id for o in store.find(DrvR2, hits=6)] == ["r1"]
    assert [o.id for o in store.find(DrvR2, hits=10)] == ["r2"]
    assert store.verify(DrvR2) == []
