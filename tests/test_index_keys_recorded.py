"""Which index keys a model's blind entries are under is recorded in its registry record,
and a process configured without one of them is refused (docs/codecs.md, "Which keys the
data is under"; attack 37G F2: such a process found nothing and let a unique value be
taken twice).

The property: whatever key configurations a process goes through (a wrong key, keys
dropped too early, rotations begun, finished or not, reindexes), every call either is
refused with a CodecError that writes nothing, or answers exactly (lookups find every
holder, a unique value is never taken twice); and a process configured with every key
that was ever the newest is never refused.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._blind import IndexKeyring
from redmodel._indexes._rotate import rotate_index_key
from redmodel._plan import iterate_sync
from redmodel.testing import RedisServer
from tests.budget import scaled
from tests.keys import forget_keys, use_keys

FERNET = redmodel.codecs.FernetTransform.generate_key()
KEYS = [redmodel.generate_index_key() for _ in range(3)]
KIDS = IndexKeyring([k.encode() for k in KEYS], "test").kids
IDS = ["a", "b:{1}", "c %\\ d*", "é\U0001f600"]
SSNS = ["987-65-4321", "", "s" * 3000, "\U0001f600 \u2603"]
EMAILS = ["ann@example.org", "b@x"]


def declare(buckets: int | None) -> type:
    """On a cluster an indexed model has buckets (claiming unique values in theirs)."""

    @redmodel.model(prefix="ikr" if buckets is None else "bikr", buckets=buckets)
    @attrs.define
    class Patient:
        name: str = redmodel.field(index=True)
        ssn: str | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                         default=None)
        email: str | None = redmodel.field(codec="json|fernet", index="blind", default=None)
        id: str = redmodel.key_field(generated=False)

    return Patient


MODELS = {False: declare(None), True: declare(4)}
RECORD = {False: "ikr:%schema", True: "bikr:%schema"}


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, fernet=[FERNET], index=[KEYS[0]])


@pytest.fixture
def store(any_store: redmodel.Store) -> redmodel.Store:
    """Sync and asyncio stores, on one server and on a three-primary cluster."""
    return any_store


@pytest.fixture
def Patient(store: redmodel.Store) -> type:
    return MODELS[store.cluster]


def configure(*which: int) -> None:
    redmodel.configure_index_keys(keys=[KEYS[i] for i in which])


def snapshot(client: Any) -> dict[bytes, Any]:
    """Every key's type and content (on every primary of a cluster), the registry
    record's included. (Not DUMP: a hash of the hashtable encoding dumps its fields in
    its table's order, which a lookup's rehash step may change.)"""
    if hasattr(client, "get_primaries"):
        keys = [k for node in client.get_primaries()
                for k in client.scan_iter("*", target_nodes=node)]
    else:
        keys = list(client.scan_iter("*"))
    read = {b"hash": client.hgetall, b"set": client.smembers, b"string": client.get,
            b"list": lambda k: client.lrange(k, 0, -1),
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True)}
    out = {}
    for k in keys:
        kind = client.type(k)
        out[k] = (kind, read[kind](k), client.pttl(k) > 0)
    return out


def recorded(client: Any) -> set[str]:
    raw = client.hget(RECORD[hasattr(client, "get_primaries")], "indexkeys")
    return set(raw.decode().split()) if raw is not None else set()


# ---- the refusal ---------------------------------------------------------------------------


CALLS = {
    "save": lambda s, Patient: s.save(Patient("eve", "987-65-4321", id="p9")),
    "save_many": lambda s, Patient: s.save_many([Patient("eve", "x", id="p9")]),
    "find": lambda s, Patient: s.find(Patient, ssn="987-65-4321").ids(),
    "count": lambda s, Patient: s.find(Patient, email="ann@example.org").count(),
    "get_by": lambda s, Patient: s.get_by(Patient, ssn="987-65-4321"),
    "get": lambda s, Patient: s.get(Patient, "p1"),
    "update": lambda s, Patient: s.update(Patient, "p1", name="x"),
    "delete": lambda s, Patient: s.delete(Patient, "p1"),
    "verify": lambda s, Patient: s.verify(Patient),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_process_with_another_index_key_is_refused_and_writes_nothing(
        store: redmodel.Store, Patient: type, call: str) -> None:
    """37G F2: data indexed under one key, a process (a new store) configured with another
    one: every call of the model is refused with a CodecError naming the model, the
    registry key and the key ids (never a key or a value), before anything is written."""
    store.save(Patient("ann", "987-65-4321", "ann@example.org", id="p1"))
    assert recorded(store.client) == {KIDS[0]}
    configure(1)
    other = _new_store(store)
    before = snapshot(store.client)
    with pytest.raises(redmodel.CodecError) as caught:
        CALLS[call](other, Patient)
    text = str(caught.value)
    assert "Patient" in text and RECORD[store.cluster] in text
    assert KIDS[0] in text and KIDS[1] in text
    assert not any(k in text for k in KEYS) and "987-65-4321" not in text
    after = snapshot(store.client)
    assert after == before, sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
    # the store that checked the first key is checked again: its keys changed too
    with pytest.raises(redmodel.CodecError):
        CALLS[call](store, Patient)
    assert snapshot(store.client) == before
    configure(0)
    assert other.get_by(Patient, ssn="987-65-4321").id == "p1"


def _new_store(store: Any) -> Any:
    """Another store on the same server or cluster (a process that starts afresh)."""
    if store.cluster:
        return redmodel.Store(store.client)
    return redmodel.Store(redis.Redis(host=store.client.connection_pool.connection_kwargs[
        "host"], port=store.client.connection_pool.connection_kwargs["port"]))


def test_the_rotation_of_the_docs_records_each_step(store: redmodel.Store,
                                                   Patient: type) -> None:
    """docs/codecs.md, "Rotating the index key": step 1 adds the new key's id; until step 2
    has run whole, a process with only the old or only the new key is refused; after it,
    only the new key's id is recorded: the old key alone is refused, the new one alone is
    not, and step 4 and lookups work under it."""
    store.save_many([Patient("ann", "987-65-4321", "ann@example.org", id="p1"),
                     Patient("bob", "123", "ann@example.org", id="p2")])
    configure(1, 0)
    store.save(Patient("cid", "555", "b@x", id="p3"))
    assert recorded(store.client) == {KIDS[0], KIDS[1]}
    for alone in (0, 1):
        configure(alone)
        with pytest.raises(redmodel.CodecError):
            store.find(Patient, email="ann@example.org").ids()
    configure(1, 0)
    assert store.rotate_index_key(Patient, progress=False) == 2
    assert recorded(store.client) == {KIDS[1]}
    configure(0)
    with pytest.raises(redmodel.CodecError):
        store.get(Patient, "p1")
    configure(1)
    assert store.rotate_index_key(Patient, progress=False) == 3
    assert sorted(store.find(Patient, email="ann@example.org").ids()) == ["p1", "p2"]
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(Patient("eve", "555", id="p4"))
    assert store.verify(Patient) == []
    assert recorded(store.client) == {KIDS[1]}


def test_a_record_naming_a_lost_key_is_repaired_by_rotate_index_key(
        store: redmodel.Store, Patient: type) -> None:
    """A record naming ids of keys that are lost (a process with a wrong key wrote first,
    a planted field): every call is refused but rotate_index_key, which enters every
    object under the configured newest key and records it; then the calls work."""
    store.save_many([Patient("ann", "987-65-4321", "ann@example.org", id="p1")])
    store.client.hset(RECORD[store.cluster], "indexkeys", f"{KIDS[0]} zzzz")
    fresh = _new_store(store)
    with pytest.raises(redmodel.CodecError) as caught:
        fresh.get(Patient, "p1")
    assert "zzzz" in str(caught.value)
    assert fresh.rotate_index_key(Patient, progress=False) == 0
    assert recorded(store.client) == {KIDS[0]}
    assert fresh.get_by(Patient, ssn="987-65-4321").id == "p1"


def test_a_whole_reindex_records_the_newest_key(store: redmodel.Store, Patient: type) -> None:
    """A reindex (as the rotation's step 2 does) enters every blind entry under the newest
    key and records it; a process with the older key alone is refused after it."""
    store.save(Patient("ann", "987-65-4321", id="p1"))
    configure(1, 0)
    store.reindex(Patient, progress=False)
    assert recorded(store.client) == {KIDS[1]}
    configure(1)
    assert store.get_by(Patient, ssn="987-65-4321").id == "p1"
    configure(0)
    with pytest.raises(redmodel.CodecError):
        store.get_by(Patient, ssn="987-65-4321")


def test_a_reindex_under_another_key_alone_moves_every_entry_to_it(
        store: redmodel.Store, Patient: type) -> None:
    """reindex, like rotate_index_key, is not refused for the keys the record names: it
    enters every blind entry under the configured newest key and records that key alone
    (docs/codecs.md: a key replaced outright, then reindex); the old key is refused."""
    store.save_many([Patient("ann", "987-65-4321", "b@x", id="p1"),
                     Patient("bob", "123", "b@x", id="p2")])
    configure(2)
    store.reindex(Patient, progress=False)
    assert recorded(store.client) == {KIDS[2]}
    assert store.verify(Patient) == []
    assert sorted(store.find(Patient, email="b@x").ids()) == ["p1", "p2"]
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(Patient("eve", "123", id="p3"))
    configure(0)
    with pytest.raises(redmodel.CodecError):
        store.find(Patient, email="b@x").ids()


def test_a_rotation_stopped_midway_has_recorded_the_new_key_already(
        redis_client: Any) -> None:
    """38L F1: a rotation (or reindex) stopped after its first page has moved entries to
    the new key; the record names it from the start, so a process with the old key alone
    (or the new one alone) is refused, and one with both finds everything."""
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    P = MODELS[False]
    store.save_many([P("n", f"s{i}", "b@x", id=f"p{i}") for i in range(40)])
    configure(1, 0)
    plan = rotate_index_key(P, 5)
    pages = iterate_sync(store._registry.use(P, plan, check_keys=False), store._execute,
                         store.client)
    assert next(pages)[1] > 0  # one page moved, then the run stops (Ctrl-C, a crash)
    pages.close()
    assert recorded(redis_client) == {KIDS[0], KIDS[1]}
    for alone in (0, 1):
        configure(alone)
        with pytest.raises(redmodel.CodecError):
            _new_store_of(redis_client).find(P, ssn="s7").ids()
    configure(1, 0)
    fresh = _new_store_of(redis_client)
    assert [fresh.find(P, ssn=f"s{i}").ids() for i in range(40)] == [[f"p{i}"]
                                                                      for i in range(40)]


def test_a_reindex_that_passed_over_an_object_keeps_the_older_key(
        redis_client: Any) -> None:
    """38L F2: reindex goes on past an object it cannot read, whose entries stay under the
    older key: it does not record the newest key alone, so a process with the newest
    alone is still refused (it would let that object's unique value be taken again)."""
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    P = MODELS[False]
    store.save_many([P("n", f"s{i}", id=f"p{i}") for i in range(3)])
    redis_client.hset("ikr:p1", "ssn", "not a fernet token")
    configure(1, 0)
    store.reindex(P, progress=False)
    assert recorded(redis_client) == {KIDS[0], KIDS[1]}
    configure(1)
    with pytest.raises(redmodel.CodecError):
        _new_store_of(redis_client).save(P("eve", "s1", id="p9"))


def test_a_planted_field_is_named_short_and_without_what_it_holds(redis_client: Any
                                                                   ) -> None:
    """38L F5: the refusal names at most 8 key ids and only counts what is no key id (a
    huge field, a key planted by hand), never repeating it."""
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    P = MODELS[False]
    store.save(P("ann", "1", id="p1"))
    planted = " ".join([KEYS[2], "x" * 5_000_000, *(f"k{i:03d}" for i in range(20))])
    redis_client.hset("ikr:%schema", "indexkeys", planted)
    with pytest.raises(redmodel.CodecError) as caught:
        _new_store_of(redis_client).get(P, "p1")
    text = str(caught.value)
    assert len(text) < 2000 and KEYS[2] not in text and "xxxx" not in text
    assert "k000" in text and "and 12 more" in text and "2 entries that are no key id" in text


def _new_store_of(client: Any) -> redmodel.Store:
    pool = client.connection_pool.connection_kwargs
    return redmodel.Store(redis.Redis(host=pool["host"], port=pool["port"]))


def test_a_store_without_index_keys_is_checked_once_it_has_some(
        store: redmodel.Store, Patient: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process with no index key: a get by id works (no token needed), a lookup raises
    that keys are missing; once keys are configured, the same store checks them."""
    store.save(Patient("ann", "987-65-4321", id="p1"))
    monkeypatch.delenv("REDMODEL_INDEX_KEYS", raising=False)
    forget_keys(monkeypatch)
    redmodel.codecs.configure_fernet(keys=[FERNET])
    fresh = _new_store(store)
    assert fresh.get(Patient, "p1").name == "ann"
    with pytest.raises(redmodel.CodecError):
        fresh.get_by(Patient, ssn="987-65-4321")
    configure(2)
    with pytest.raises(redmodel.CodecError) as caught:
        fresh.get(Patient, "p1")
    assert KIDS[0] in str(caught.value)


# ---- the property --------------------------------------------------------------------------

CONFIG = st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True)
OP = st.one_of(
    st.tuples(st.just("save"), st.sampled_from(IDS), st.sampled_from(SSNS),
              st.sampled_from(EMAILS)),
    st.tuples(st.just("find_ssn"), st.sampled_from(SSNS)),
    st.tuples(st.just("find_email"), st.sampled_from(EMAILS)),
    st.tuples(st.just("get_by"), st.sampled_from(SSNS)),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("rotate")),
    st.tuples(st.just("reindex")),
)


@settings(max_examples=scaled(30, floor=5), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(CONFIG, st.integers(0, 1), OP), min_size=1, max_size=12))
def test_every_call_is_refused_whole_or_answers_exactly(
        store: redmodel.Store, Patient: type,
        steps: list[tuple[list[int], int, tuple[Any, ...]]]) -> None:
    """Two stores (two processes' views) through drawn key configurations and calls: a
    call is refused with a CodecError and writes nothing, or it answers as a model of
    the data says (lookups exact, a unique ssn never held twice) and, after it, the same
    process finds every holder of every value; a configuration holding
    every key that was ever the newest of an accepted call is never refused. At the end,
    under such a configuration, a rotation leaves the index exact (verify)."""
    client = store.client
    for key in snapshot(client):  # every object and entry; the registry record stays
        if not key.endswith(b"%schema"):  # (the stores remember they registered)
            client.delete(key)
    stores = [store, _new_store(store)]
    last: list[list[int] | None] = [None, None]  # the configuration each store ran under
    live: dict[str, tuple[str, str]] = {}
    newest = {KIDS.index(k) for k in recorded(client)}  # the ids an earlier example left
    for config, which, op in steps:
        configure(*config)
        if last[which] == config and op[0] not in ("rotate", "reindex"):
            # a process that keeps its keys is not checked again when another process
            # rotates (docs/codecs.md, "Where it ends": give every process the new key
            # first); the draw stands for a process started anew instead
            stores[which] = _new_store(store)
        last[which] = config
        s = stores[which]
        before = snapshot(client)
        try:
            _apply(s, Patient, op, live)
        except redmodel.CodecError:
            event("refused")
            assert not newest <= set(config), (config, newest)
            assert snapshot(client) == before
            continue
        newest.add(config[0])
        # the accepted process sees all of the data: every holder of every value
        for ssn in SSNS:
            _apply(s, Patient, ("find_ssn", ssn), live)
        for email in EMAILS:
            _apply(s, Patient, ("find_email", email), live)
    final = sorted(newest) or [0]
    configure(*final)
    stores[0].rotate_index_key(Patient, progress=False)
    assert stores[0].verify(Patient) == []
    for ssn in SSNS:
        assert stores[1].find(Patient, ssn=ssn).ids() == [i for i in live if live[i][0] == ssn]


def _apply(s: Any, Patient: type, op: tuple[Any, ...], live: dict[str, tuple[str, str]]) -> None:
    kind = op[0]
    if kind == "save":
        _, i, ssn, email = op
        taken = any(j != i and v[0] == ssn for j, v in live.items())
        try:
            s.save(Patient("n", ssn, email, id=i))
        except redmodel.UniqueViolationError:
            assert taken, op
            return
        assert not taken, op
        live[i] = (ssn, email)
    elif kind == "find_ssn":
        assert sorted(s.find(Patient, ssn=op[1]).ids()) == sorted(
            i for i, v in live.items() if v[0] == op[1])
    elif kind == "find_email":
        assert sorted(s.find(Patient, email=op[1]).ids()) == sorted(
            i for i, v in live.items() if v[1] == op[1])
    elif kind == "get_by":
        got = s.get_by(Patient, ssn=op[1])
        holders = [i for i, v in live.items() if v[0] == op[1]]
        assert (got.id if got is not None else None) == (holders[0] if holders else None)
    elif kind == "delete":
        assert bool(s.delete(Patient, op[1])) == (op[1] in live)
        live.pop(op[1], None)
    elif kind == "rotate":
        s.rotate_index_key(Patient, progress=False)
    else:
        s.reindex(Patient, progress=False)


# ---- processes racing to be first ---------------------------------------------------------


PLAIN = MODELS[False]


def _first_use(url: str, key: str, ssn: str, out: Any) -> None:
    redmodel.codecs.configure_fernet(keys=[FERNET])
    redmodel.configure_index_keys(keys=[key])
    store = redmodel.Store.from_url(url)
    try:
        store.save(PLAIN("p", ssn, id=ssn))
        out.put("saved")
    except redmodel.CodecError:
        out.put("refused")


def test_processes_with_different_keys_racing_on_an_empty_server(
        redis_server: RedisServer, redis_client: Any) -> None:
    """Two processes, each with its own key, make the first use of the model at once on
    an empty server: exactly one is accepted, its key recorded, the other refused with
    nothing of it written."""
    ctx = multiprocessing.get_context("fork")
    for _ in range(8):
        redis_client.flushall()
        out = ctx.Queue()
        procs = [ctx.Process(target=_first_use, args=(redis_server.url, KEYS[i], f"s{i}", out))
                 for i in (0, 1)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        answers = sorted(out.get(timeout=5) for _ in procs)
        assert answers == ["refused", "saved"]
        held = recorded(redis_client)
        assert len(held) == 1 and held <= set(KIDS[:2])
        winner = KIDS.index(held.pop())
        assert sorted(k.decode() for k in redis_client.scan_iter("ikr:*")
                      if b"%" not in k) == [f"ikr:s{winner}"]


def test_an_async_store_is_checked_alike(redis_server: RedisServer, redis_client: Any) -> None:
    """The asyncio store refuses as the sync one does (same registry)."""
    redis_client.flushall()
    redmodel.Store(redis_client).save(PLAIN("ann", "1", id="p1"))
    configure(2)

    async def main() -> None:
        s = redmodel.AsyncStore.from_url(redis_server.url)
        try:
            with pytest.raises(redmodel.CodecError):
                await s.get_by(PLAIN, ssn="1")
        finally:
            await s.aclose()

    asyncio.run(main())
