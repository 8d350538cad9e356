"""Fix 32F: a resendable maintenance script whose reply says what it did answers a resend
of the same call (its first run's reply lost or cut, then sent again) as its first run
answered, so the caller's answer is the answer it gives without any fault
(docs/failures.md, "Resent maintenance calls"; notes: /work/notes/s32/FIX-F-NOTES.md).

Each property draws a state, runs the call once through a FaultProxy without a fault
(counting the script calls it makes), rebuilds the same state under the same names, and
runs it again with the reply of a drawn one of those calls lost or cut: the answer (the
count, the log lines of a reindex, the retried write's outcome) and the keys left are
the same.

- store.sweep (index_sweep.lua 'apply': the count of objects whose entries it dropped);
- store.migrate_buckets on one server (rebucket.lua 'move': the count moved) and on a
  cluster (rebucket.lua 'drop': the count, and the move finished);
- store.reindex (index_fix.lua repairs, ids_convert.lua fix/mend/drop, claim_drop.lua:
  the lines it logs and the count it returns);
- a save refused by a unique value whose holder no longer holds it (index_fix.lua
  'unheld': the fix answers by state, and the write is sent again whichever copy ran).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster

import redmodel
from redmodel._indexes import _repair, _writes
from redmodel._models._specs import spec_of
from redmodel._plan import Batch, memo_variant
from redmodel._rebucket import MOVE
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through

_COUNT = itertools.count()
FAULT = st.sampled_from(["lose_reply", "cut_reply"])
SETTINGS = {"suppress_health_check": [HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow], "deadline": None}


def _wipe(client: Any, ns: str) -> None:
    for k in list(client.scan_iter(f"{ns}*", count=1000)):
        client.delete(k)


def _snapshot(client: Any, ns: str) -> dict[bytes, Any]:
    """Every key of the namespace with its content and whether it expires; the memos
    (a call's reply kept for its resend), the registry's record (its version is a new
    token per call) and the progress keys are left out, and of the expiry index only its
    members (its scores are expiry times: when the state was built)."""
    out: dict[bytes, Any] = {}
    for k in client.scan_iter(f"{ns}*", count=1000):
        if b"%idx:memo:" in k or k.endswith((b"%schema", b"%rebucket", b"%idx:reindex")):
            continue
        t = client.type(k).decode()
        if t == "string":
            v: Any = client.get(k)
        elif t == "hash":
            v = client.hgetall(k)
        elif t == "set":
            v = client.smembers(k)
        elif t == "zset" and k.endswith(b"%idx:exp"):  # expiry times: when it was built
            v = client.zrange(k, 0, -1)
        elif t == "zset":
            v = client.zrange(k, 0, -1, withscores=True)
        elif t == "list":
            v = client.lrange(k, 0, -1)
        else:
            v = None
        out[k] = (t, v, client.pttl(k) > 0)
    return out


def _calls_of(*scripts: Any) -> Callable[[list[bytes]], bool]:
    """A ``when=`` predicate: an EVALSHA of one of these scripts (as it is sent with its
    memo, or without: so the test also faults the calls of a version without memos)."""
    shas = {x.sha.encode() for s in scripts for x in (s, memo_variant(s))}
    return lambda argv: argv[0].upper() == b"EVALSHA" and argv[1] in shas


def _counting(match: Callable[[list[bytes]], bool]) -> tuple[list[int], Callable[..., bool]]:
    seen = [0]

    def when(argv: list[bytes]) -> bool:
        if match(argv):
            seen[0] += 1
        return False
    return seen, when


def _nth(match: Callable[[list[bytes]], bool], n: int,
         seen: list[int] | None = None) -> Callable[[list[bytes]], bool]:
    """A ``when=`` predicate true for the n-th matching command (``seen[0]`` counts them)."""
    count = [0] if seen is None else seen

    def when(argv: list[bytes]) -> bool:
        if match(argv):
            count[0] += 1
            return count[0] == n
        return False
    return when


def _twice(proxy: Any, match: Callable[[list[bytes]], bool], build: Callable[[], None],
           run: Callable[[], Any], data: st.DataObject, fault: str, client: Any, ns: str
           ) -> tuple[Any, Any]:
    """(answer, keys) without a fault, then with the reply of the n-th matching call
    (drawn) lost or cut: asserts the two agree and returns the first. A run that makes
    no such call is run once more without a fault (the same answer)."""
    build()
    seen, when = _counting(match)
    proxy.lose_reply("EVALSHA", when=when)
    want = run()
    proxy.clear()
    calls = seen[0]
    want_keys = _snapshot(client, ns)
    _wipe(client, ns)
    build()
    seen, n = [0], 0
    # (drawn with fixed bounds: the call count may differ from one replay to the next)
    pick = data.draw(st.integers(0, 2**16), label="faulted call (mod the calls)")
    if calls:
        n = 1 + pick % calls
        getattr(proxy, fault)("EVALSHA", when=_nth(match, n, seen))
    before = len(proxy.events)
    got = run()
    proxy.clear()
    # the fault fired when the run made an n-th such call: a SCAN's pages depend on the
    # server's hash table, so a rebuilt state may be walked in fewer calls (a move)
    fired = bool(calls) and seen[0] >= n
    assert [e.kind for e in proxy.events[before:]] == ([fault] if fired else [])
    event(f"calls {min(calls, 4)}{'+' if calls > 4 else ''}"
          f"{'' if fired or not calls else ', fewer: not fired'}")
    assert got == want, (got, want)
    assert _snapshot(client, ns) == want_keys
    return want, want_keys


# ---- sweep ------------------------------------------------------------------------------

def _indexed(ns: str, buckets: int | None) -> type:
    @redmodel.model(prefix=ns, buckets=buckets)
    @attrs.define
    class Item:
        tag: str = redmodel.field(index=True)
        price: float = redmodel.field(index="range", default=0.0)
        sku: str | None = redmodel.field(unique=True, default=None)
        id: str = redmodel.key_field(generated=False)
    return Item


FATES = st.sampled_from(["alive", "gone", "persisted", "not due"])


@settings(max_examples=scaled(60, floor=8), **SETTINGS)
@given(fates=st.lists(FATES, min_size=1, max_size=10),
       buckets=st.sampled_from([None, 2, 4]), fault=FAULT, data=st.data())
def test_a_sweep_answers_its_count_whatever_reply_is_lost(
        redis_client: redis.Redis, proxy: FaultProxy, fates: list[str],
        buckets: int | None, fault: str, data: st.DataObject) -> None:
    """store.sweep returns how many expired objects' entries it dropped: the same when the
    reply of any of its 'apply' calls was lost or cut (the resend answers from the
    memo), and the index is left the same."""
    ns = f"f32w{next(_COUNT)}"
    Item = _indexed(ns, buckets)
    spec = spec_of(Item)

    def build() -> None:
        plain = redmodel.Store(redis_client)
        for i, fate in enumerate(fates):
            plain.save(Item(f"t{i % 3}", float(i), sku=f"s{i}", id=f"o{i}"), ttl=600)
            tag = spec.tag_of(f"o{i}")
            exp = spec.index_root(tag) + "exp"
            if fate != "not due":
                redis_client.zadd(exp, {f"o{i}": 0})  # due now
            if fate == "gone":
                redis_client.delete(spec.key_for(f"o{i}"))
            elif fate == "persisted":
                redis_client.persist(spec.key_for(f"o{i}"))

    store = store_through(proxy, resend=FAST_RESEND)
    try:
        want, _ = _twice(proxy, _calls_of(_repair.SWEEP), build, lambda: store.sweep(Item),
                         data, fault, redis_client, ns)
        assert want == fates.count("gone")
    finally:
        store.client.close()
        proxy.clear()
        _wipe(redis_client, ns)


# ---- migrate_buckets --------------------------------------------------------------------

@attrs.define
class Spot:
    city: str
    lines: list[str] = attrs.Factory(list)


def _movable(ns: str, layout: str, buckets: int | None) -> type:
    if layout == "flat":
        @redmodel.model(prefix=ns, buckets=buckets, layout="flat")
        @attrs.define
        class Flat:
            color: str
            spot: Spot
            id: str = redmodel.key_field(generated=False)
        return Flat

    @redmodel.model(prefix=ns, buckets=buckets)
    @attrs.define
    class Thing:
        color: str
        size: int = 0
        id: str = redmodel.key_field(generated=False)
    return Thing


def _thing(model: type, layout: str, i: int) -> Any:
    if layout == "flat":
        return model(f"c{i}", Spot(f"x{i}", [str(i)] * (i % 3)), id=f"m{i}")
    return model(f"c{i}", i, id=f"m{i}")


@settings(max_examples=scaled(60, floor=8), **SETTINGS)
@given(n=st.integers(1, 14), page=st.integers(1, 6), layout=st.sampled_from(["hash", "flat"]),
       counts=st.sampled_from([(None, 3), (None, 4), (2, 5), (4, None)]), fault=FAULT,
       data=st.data())
def test_migrate_buckets_answers_its_count_whatever_page_reply_is_lost(
        redis_client: redis.Redis, proxy: FaultProxy, n: int, page: int, layout: str,
        counts: tuple[int | None, int | None], fault: str, data: st.DataObject) -> None:
    """One server: migrate_buckets returns how many objects it moved, the same when the
    reply of any page's move was lost or cut (before: the resend found the page moved and
    answered 0 for it), and every object is at its new key."""
    ns = f"f32m{next(_COUNT)}"
    src, dst = counts
    old, new = _movable(ns, layout, src), _movable(ns, layout, dst)

    def build() -> None:
        plain = redmodel.Store(redis_client)
        for i in range(n):
            plain.save(_thing(old, layout, i), ttl=600 if i % 2 else None)

    store = store_through(proxy, resend=FAST_RESEND)
    try:
        want, _ = _twice(proxy, _calls_of(MOVE), build,
                         lambda: store.migrate_buckets(new, from_buckets=src, count=page),
                         data, fault, redis_client, ns)
        o, m = spec_of(old), spec_of(new)
        assert want == sum(1 for i in range(n) if o.key_for(f"m{i}") != m.key_for(f"m{i}"))
        for i in range(n):
            assert store.get(new, f"m{i}") == _thing(new, layout, i)
    finally:
        store.client.close()
        proxy.clear()
        _wipe(redis_client, ns)


@pytest.mark.parametrize("fault", ["lose_reply", "cut_reply"])
def test_migrate_buckets_on_a_cluster_counts_a_drop_whose_reply_was_lost(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster,
        fault: str) -> None:
    """A cluster: the checked delete of an object's old keys after its copy (rebucket.lua
    'drop'), its reply lost or cut: the resend answers DROPPED from the memo (before:
    GONE, the object not counted), so the count equals the fault-free one."""
    client = redis_cluster_client
    ns = f"f32c{next(_COUNT)}"
    old, new = _movable(ns, "hash", None), _movable(ns, "hash", 3)
    o, m = spec_of(old), spec_of(new)
    ids = [f"m{i}" for i in range(8)]
    moving = sum(1 for i in ids if o.key_for(i) != m.key_for(i))
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        host, port = proxies.startup_nodes[0]
        proxied = RedisCluster(host=host, port=port, socket_timeout=2,
                               address_remap=proxies.address_remap)
        store = redmodel.Store(proxied, resend=FAST_RESEND)
        try:
            client.flushall(target_nodes=RedisCluster.PRIMARIES)
            plain = redmodel.Store(client)
            for i in range(len(ids)):
                plain.save(_thing(old, "hash", i), ttl=600)
            # one fault in all (each node's proxy is armed; the count is shared)
            moves = _calls_of(MOVE)
            getattr(proxies, fault)("EVALSHA", when=_nth(
                lambda argv: moves(argv) and b"drop" in argv, 1))
            assert store.migrate_buckets(new, from_buckets=None, count=3) == moving
            assert [e.kind for e in proxies.events] == [fault]
            for i in range(len(ids)):
                assert store.get(new, ids[i]) == _thing(new, "hash", i)
        finally:
            proxies.clear()
            store.close()


# ---- reindex ----------------------------------------------------------------------------

DAMAGE = st.sampled_from(["stale_eq", "stale_score", "stale_unique", "gone", "count",
                          "unlisted_page", "page_score", "stale_claim"])


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """The messages logged on redmodel.index while the block runs."""
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    logger = logging.getLogger("redmodel.index")
    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield got
    finally:
        logger.removeHandler(handler)


@settings(max_examples=scaled(50, floor=5), **SETTINGS)
@given(n=st.integers(1, 8), buckets=st.sampled_from([None, 2]),
       damage=st.lists(st.tuples(DAMAGE, st.integers(0, 7)), min_size=1, max_size=4),
       fault=FAULT, data=st.data())
def test_a_reindex_reports_and_counts_as_without_a_lost_reply(
        redis_client: redis.Redis, proxy: FaultProxy, n: int, buckets: int | None,
        damage: list[tuple[str, int]], fault: str, data: st.DataObject) -> None:
    """store.reindex with drawn damage (stale entries of each index kind, a gone object, a
    wrong count of the all-ids pages, a page its directory does not list, a page score,
    a stale claim): the lines it logs ("... set right", "... deleted") and the count it
    returns are the same when the reply of any of its repair calls (index_fix.lua,
    ids_convert.lua fix/mend/drop, claim_drop.lua) was lost or cut, and the index is
    left the same."""
    ns = f"f32r{next(_COUNT)}"
    Item = _indexed(ns, buckets)
    spec = spec_of(Item)
    d = spec.delimiter

    def build() -> None:
        plain = redmodel.Store(redis_client)
        for i in range(n):
            plain.save(Item(f"t{i % 2}", float(i), sku=f"s{i}", id=f"o{i}"))
        for kind, at in damage:
            eid = f"o{at % n}"
            root = spec.index_root(spec.tag_of(eid))
            if kind == "stale_eq":
                redis_client.sadd(f"{root}eq{d}tag{d}zz", eid)
            elif kind == "stale_score":
                redis_client.zadd(f"{root}rng{d}price", {eid: 12345.5})
            elif kind == "stale_unique" and not spec.claims:
                redis_client.hset(f"{root}uq{d}sku", f"ghost{at}", eid)
            elif kind in ("stale_unique", "stale_claim") and spec.claims:
                redis_client.hset(spec.claim_key("sku", f"ghost{at}"), f"ghost{at}",
                                  f"nobody{at}\x1fC")
            elif kind == "gone":
                redis_client.delete(spec.key_for(eid))
            elif kind == "count":
                redis_client.set(f"{root}idn", 999)
            elif kind == "unlisted_page":
                redis_client.zadd(f"{root}ids{d}zz{at}", {"zz": 0})
            elif kind == "page_score":
                redis_client.zadd(f"{root}ids{d}", {eid: 5})

    store = store_through(proxy, resend=FAST_RESEND)

    def run() -> tuple[int, list[str]]:
        with _warnings() as got:
            count = store.reindex(Item, count=3, progress=False)
        return count, sorted(got)

    try:
        repairs = _calls_of(_repair.FIX, _repair.CONVERT, _repair.DROP_CLAIM)
        (_count, lines), _ = _twice(  # (not the conversion steps: their reply is a state)
            proxy, lambda argv: repairs(argv) and b"move" not in argv, build, run,
            data, fault, redis_client, ns)
        assert store.verify(Item) == []
        event(f"lines {min(len(lines), 3)}")
    finally:
        store.client.close()
        proxy.clear()
        _wipe(redis_client, ns)


# ---- a unique value its holder no longer holds ------------------------------------------

def _uniq(ns: str, fields: int, buckets: int | None) -> type:
    if fields == 1:
        @redmodel.model(prefix=ns, buckets=buckets)
        @attrs.define
        class One:
            a: str = redmodel.field(unique=True)
            b: str = ""
            id: str = redmodel.key_field(generated=False)
        return One

    @redmodel.model(prefix=ns, buckets=buckets, unique=[("a", "b")])
    @attrs.define
    class Two:
        a: str
        b: str = ""
        id: str = redmodel.key_field(generated=False)
    return Two


@settings(max_examples=scaled(60, floor=8), **SETTINGS)
@given(fields=st.sampled_from([1, 2]), holder=st.sampled_from(["changed", "holds", "gone"]),
       same_id=st.booleans(), fault=FAULT, data=st.data())
def test_a_write_refused_by_a_stale_holder_ends_as_without_a_lost_reply(
        redis_client: redis.Redis, proxy: FaultProxy, fields: int, holder: str,
        same_id: bool, fault: str, data: st.DataObject) -> None:
    """A save whose unique value the index names for an object whose stored fields (raw
    commands) no longer hold it: the holder gives it up (index_fix.lua 'unheld') and the
    save is sent again. With that fix's reply lost or cut, the resend answers by state
    (the value is free now) and the save succeeds as it does without a fault (before: the
    resend answered FIXED 0 and the save raised a UniqueViolation for a free value). A
    holder that still holds it refuses the save either way."""
    ns = f"f32u{next(_COUNT)}"
    M = _uniq(ns, fields, None)
    spec = spec_of(M)
    writer = "w1"

    def build() -> None:
        plain = redmodel.Store(redis_client)
        plain.save(M("v", "x", id="h1"))
        if holder == "changed":
            redis_client.hset(spec.key_for("h1"), "a", "other")
        elif holder == "gone":
            redis_client.delete(spec.key_for("h1"))
        if same_id:
            plain.save(M("before", "y", id=writer))

    store = store_through(proxy, resend=FAST_RESEND)

    def run() -> str:
        try:
            store.save(M("v", "x", id=writer))
        except redmodel.UniqueViolationError:
            return "refused"
        got = store.get(M, writer)
        assert got == M("v", "x", id=writer)
        return "saved"

    fix_sha = _writes.FIX.sha.encode()

    def unheld(argv: list[bytes]) -> bool:
        return argv[0].upper() == b"EVALSHA" and argv[1] == fix_sha and b"unheld" in argv

    try:
        want, _ = _twice(proxy, unheld, build, run, data, fault, redis_client, ns)
        assert want == ("refused" if holder == "holds" else "saved")
        event(f"{holder} -> {want}")
    finally:
        store.client.close()
        proxy.clear()
        _wipe(redis_client, ns)


# ---- the memo's own checks ----------------------------------------------------------------

def _due(redis_client: Any, ns: str) -> tuple[type, Any]:
    """A model whose object o0 is gone and due for the sweep (its entries stale)."""
    Item = _indexed(ns, None)
    spec = spec_of(Item)
    redmodel.Store(redis_client).save(Item("t", 1.0, sku="s", id="o0"), ttl=600)
    redis_client.zadd(spec.index_root(None) + "exp", {"o0": 0})
    redis_client.delete(spec.key_for("o0"))
    return Item, spec


def test_a_memo_key_the_acl_refuses_stops_the_call_with_nothing_written(
        redis_server: Any, redis_client: redis.Redis) -> None:
    """A user whose key patterns cover the model's keys but not the memos (``<root>memo``):
    the sweep's 'apply' is refused before anything runs, naming the memo key, also a
    NoPermissionError; nothing of the sweep was written."""
    ns = f"f32a{next(_COUNT)}"
    Item, _ = _due(redis_client, ns)
    before = _snapshot(redis_client, ns)
    redis_client.acl_setuser("f32fmemo", enabled=True, passwords=["+pw"],
                             keys=[f"{ns}:[^%]*", f"{ns}:%idx:[^m]*", f"{ns}:%schema"],
                             commands=["+@all"])
    store = redmodel.Store(redis.Redis(host=redis_server.host, port=redis_server.port,
                                       username="f32fmemo", password="pw"))
    try:
        with pytest.raises(redmodel.ServerError) as e:
            store.sweep(Item)
        assert isinstance(e.value, redis.exceptions.NoPermissionError)
        # (refused at the EVALSHA, whose keys the server checks first: the memo's own
        # check inside the script is the backstop for a key allowed at the call)
        assert f"{ns}:%idx:memo:" in str(e.value)
        assert _snapshot(redis_client, ns) == before
        # the memo keys allowed at the call (an ACL selector over every key of the
        # model, without SET), but not the memo's SET: the script's own check refuses it
        # before the sweep's first write
        redis_client.execute_command(
            "ACL", "SETUSER", "f32fmemo", f"(+@all -set ~{ns}:*)")
        with pytest.raises(redmodel.ServerError) as e:
            store.sweep(Item)
        assert isinstance(e.value, redis.exceptions.NoPermissionError)
        assert "'set' command" in str(e.value) and f"{ns}:%idx:memo:" in str(e.value)
        assert "nothing was written" in str(e.value)
        assert _snapshot(redis_client, ns) == before
        assert redmodel.Store(redis_client).sweep(Item) == 1  # a user allowed: swept
    finally:
        store.close()
        redis_client.acl_deluser("f32fmemo")
        _wipe(redis_client, ns)


def test_a_planted_key_at_a_memo_key_stops_the_call_with_nothing_written(
        redis_client: redis.Redis) -> None:
    """A key of another type (or a string redmodel did not write) at the call's memo key:
    an error naming it before the script's first write; nothing written."""
    ns = f"f32p{next(_COUNT)}"
    Item, spec = _due(redis_client, ns)
    root, d = spec.index_root(None), spec.delimiter
    keys = [root + "rec", root + "all", root + "exp", root + "ids", root + "idn",
            spec.key_for("o0"), f"{root}eq{d}tag{d}t", f"{root}rng{d}price", f"{root}uq{d}sku"]
    store = redmodel.Store(redis_client)
    for plant in ("hash", "string"):
        call = _repair.SWEEP.memo_call(root, d, keys, ["apply", root, d,
                                                       spec.object_prefix(None), "o0"])
        memo = call[3]
        if plant == "hash":
            redis_client.hset(memo, "x", "y")
        else:
            redis_client.set(memo, "not a memo")
        before = _snapshot(redis_client, ns)
        with pytest.raises(redmodel.ServerError, match="WRONGTYPE") as e:
            store.run(_send(Batch([call], write=True, keys=[memo])))
        assert memo in str(e.value) and "nothing was written" in str(e.value)
        assert _snapshot(redis_client, ns) == before
        redis_client.delete(memo)
    assert store.sweep(Item) == 1
    _wipe(redis_client, ns)


def _send(batch: Batch) -> Any:
    return (yield batch)[0]
