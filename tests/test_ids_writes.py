"""Every write path keeps the all-ids pages (issue 17 item 4: redmodel/lua/ids_lib.lua
wired into index_lib.lua's write_index/forget; docs/design.md "The all-ids index in pages").

Properties, read from the pages themselves (tests/index_helpers.all_ids, which also asserts
the format: ordered, at most 64 ids a page, no empty page but the first, the count exact,
no stray page key):
- after any sequence of saves, deletes, save_many/delete_many (ids with ``: { } * % \\``,
  past 64 bytes, sharing prefixes, blocks large enough to split pages) and expiries swept,
  each bucket's pages hold exactly its live objects' ids;
- a wrong-typed directory, page, count or split target planted beforehand refuses a save,
  one object of a save_many, or a delete, whole: the error names the key, the object's
  hash and every index key are byte-identical, the other objects of the call are written;
- a lost reply to a save (or save_many) that split a page is settled as docs/failures.md
  says: resent after its fence, applied exactly once; a delete's lost reply in
  exactly-once mode too;
- an unconverted ZSET ``<root>all`` (a database of an older redmodel) is written through:
  added ids go to the pages, a removed id leaves the pages and ``all``; a SET ``all`` is
  refused with the reindex advice;
- drop_index of a model's last index deletes the pages, directory and count; a bucket
  move (migrate_buckets) leaves each new bucket's pages exactly its ids;
- the write scripts touch no undeclared key but the pages under a declared directory
  (the KEYS audit of tests/test_keys_audit.py, on these paths alone).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel._plan import lua_source
from redmodel.testing import FaultProxy, RedisServer
from tests import test_ids_pages as pages_test
from tests.budget import scaled
from tests.index_helpers import IDS_MAX, all_ids, dump, flush, plant
from tests.test_keys_audit import run_audit


@redmodel.model(prefix="idw", buckets=2)
@attrs.define
class Item:
    color: str = redmodel.field(index=True)
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field()


@redmodel.model(prefix="idp")
@attrs.define
class Plain:  # one bucket (no hash tag): a single server only
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


SPEC = spec_of(Item)
PSPEC = spec_of(Plain)
PROOT = PSPEC.index_root(None)
D = SPEC.delimiter


def eid(spec: Any, i: str) -> bytes:
    key = spec.key_for(i)
    return key[len(spec.object_prefix(spec.tag_of(spec.id_text(i)))):].encode(
        "utf-8", "surrogateescape")


def pages_of(client: Any, spec: Any) -> dict[str | None, set[bytes]]:
    return {t: set(all_ids(client, spec.index_root(t), spec.delimiter)) for t in spec.tags()}


def expect(spec: Any, live: set[str]) -> dict[str | None, set[bytes]]:
    out: dict[str | None, set[bytes]] = {t: set() for t in spec.tags()}
    for i in live:
        out[spec.tag_of(spec.id_text(i))].add(eid(spec, i))
    return out


# ---- any sequence of writes keeps the pages exact ----------------------------------------

SPECIAL = st.sampled_from(["a", "b:1", "{c}", "d*", "e%", "f\\", "g h", "7", "é", "x" * 70,
                           "x" * 70 + ":1", "a:" + "b" * 80, "p}", "{", ":"])
PREFIXED = st.builds(lambda p, n: f"{p}{n}", st.sampled_from(["k", "k:", "k{", "ka"]),
                     st.integers(0, 300))
IDS = st.one_of(SPECIAL, PREFIXED)
BLOCK = st.builds(lambda p, a, n: [f"{p}{i:04d}" for i in range(a, a + n)],
                  st.sampled_from(["blk", "blk:", "b{"]), st.integers(0, 200),
                  st.integers(60, 160))  # past one page in a bucket: splits

STEP = st.one_of(
    st.tuples(st.just("save"), IDS),
    st.tuples(st.just("many"), st.lists(IDS, max_size=8)),
    st.tuples(st.just("block"), BLOCK),
    st.tuples(st.just("delete"), IDS),
    st.tuples(st.just("delete_many"), st.lists(IDS, max_size=8)),
    st.tuples(st.just("drop_block"), BLOCK),
    st.tuples(st.just("expire"), IDS),
)


def expire_now(client: Any, i: str) -> None:
    """As an expiry would leave it: the object gone, its expiry time past (a sweep's due)."""
    key = SPEC.key_for(i)
    root = SPEC.index_root(SPEC.tag_of(SPEC.id_text(i)))
    client.delete(key)
    client.zadd(root + "exp", {eid(SPEC, i): 1})


@settings(max_examples=scaled(50), deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=10))
def test_any_writes_keep_each_buckets_pages_exactly_its_objects(
        redis_client: redis.Redis, steps: list[Any]) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    live: set[str] = set()
    for op, arg in steps:
        if op == "save":
            store.save(Item(color="c", n=len(arg), id=arg))
            live.add(arg)
        elif op in ("many", "block"):
            store.save_many([Item(color=i[:1], id=i) for i in arg])
            live.update(arg)
        elif op == "delete":
            assert store.delete(Item, arg) == (arg in live)
            live.discard(arg)
        elif op in ("delete_many", "drop_block"):
            store.delete_many(Item, arg)
            live.difference_update(arg)
        else:
            if arg in live:
                expire_now(redis_client, arg)
                live.discard(arg)
            store.sweep(Item)
        assert pages_of(redis_client, SPEC) == expect(SPEC, live), op
        for t in SPEC.tags():  # no record: no object has an expiry (derived entries)
            assert redis_client.hkeys(SPEC.index_root(t) + "rec") == []


# ---- the batched adds and removals of index_write_many.lua (ids_lib's ids_plan_add_near,
# ids_plan_remove_near) ---------------------------------------------------------------------

_NEAR = """
local root, d = ARGV[1], ARGV[2]
local typed, deltas, near, gone, out = {}, {}, {}, {}, {}
for i = 3, #ARGV, 2 do
  local plan, bad
  if ARGV[i] == 'a' then plan, bad = ids_plan_add_near(root, d, ARGV[i + 1], typed, near)
  else plan, bad = ids_plan_remove_near(root, d, ARGV[i + 1], typed, gone) end
  if bad then out[#out + 1] = bad
  else ids_apply_later(plan, deltas); ids_noted(plan, near, gone); out[#out + 1] = 'OK' end
end
ids_flush(deltas)
return out
"""
NEAR = lua_source("ids_lib") + _NEAR
# calls of mixed adds and removes: runs of increasing ids (where the shortcut applies, and
# across splits), ids already there, ids going back, removals between adds of a call
NEAR_OP = st.one_of(
    st.tuples(st.just("a"), pages_test.ID),
    st.tuples(st.just("r"), pages_test.ID),
)
NEAR_CALL = st.one_of(
    st.lists(NEAR_OP, min_size=1, max_size=40),
    pages_test.RUN.map(lambda ids: [("a", i) for i in ids]),
    pages_test.RUN.map(lambda ids: [("r", i) for i in ids]),  # removals in a row
    st.tuples(pages_test.RUN, st.lists(NEAR_OP, max_size=10)).map(
        lambda t: [("a", i) for i in t[0]] + t[1]),
)


@settings(max_examples=scaled(40, floor=10), deadline=None)
@given(calls=st.lists(NEAR_CALL, min_size=1, max_size=6))
def test_adds_and_removals_in_a_row_keep_the_pages_exact(redis_client: redis.Redis,
                                            calls: list[list[tuple[str, bytes]]]) -> None:
    redis_client.flushall()
    model: set[bytes] = set()
    for ops in calls:
        args = [x for op, i in ops for x in (op, i)]
        assert redis_client.eval(NEAR, 0, pages_test.ROOT, pages_test.D, *args) == \
            [b"OK"] * len(ops)
        for op, i in ops:
            if op == "a":
                model.add(i)
            else:
                model.discard(i)
        pages_test.check(redis_client, model)


# ---- wrong-typed keys planted beforehand ---------------------------------------------------

def fill_first_page(client: Any, store: redmodel.Store) -> None:
    """The plain model's first page full (IDS_MAX ids m00..m63): the next add splits it."""
    store.save_many([Plain(color="f", id=f"m{i:02d}") for i in range(IDS_MAX)])
    assert client.zcard(PROOT + "ids") == 1


def index_state(client: Any) -> dict[bytes, Any]:
    return {k: v for k, v in dump(client).items() if not k.startswith(b"idp:z")}


PLANTS = {
    # where, what is planted, the id refused (z...), the id of the same call written (a...)
    "directory": lambda c: c.set(PROOT + "ids", "x"),
    "count": lambda c: c.set(PROOT + "idn", "not a number"),
    "count type": lambda c: plant(c, PROOT + "idn", "list"),
    "page": lambda c: (c.zadd(PROOT + "ids", {"z": 0}), c.set(PROOT + "ids:z", "x")),
    "split target": lambda c: c.set(PROOT + "ids:zz", "x"),
}
PLANTED_KEY = {"directory": PROOT + "ids", "count": PROOT + "idn", "count type": PROOT + "idn",
               "page": PROOT + "ids:z", "split target": PROOT + "ids:zz"}


@pytest.mark.parametrize("where", sorted(PLANTS))
def test_a_wrong_typed_ids_key_refuses_a_save_whole(redis_client: redis.Redis,
                                                    where: str) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    fill_first_page(redis_client, store)
    PLANTS[where](redis_client)
    before = dump(redis_client)
    with pytest.raises(redmodel.ServerError) as e:
        store.save(Plain(color="new", id="zz"))
    assert PLANTED_KEY[where] in str(e.value)
    assert dump(redis_client) == before  # the object, its record, entries, pages: untouched


@pytest.mark.parametrize("where", ["page", "split target"])
def test_a_wrong_typed_page_refuses_its_object_of_a_save_many_and_writes_the_others(
        redis_client: redis.Redis, where: str) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    fill_first_page(redis_client, store)
    PLANTS[where](redis_client)
    with pytest.raises(redmodel.ServerError) as e:
        store.save_many([Plain(color="new", id="zz"), Plain(color="new", id="a1")])
    assert PLANTED_KEY[where] in str(e.value)
    assert redis_client.exists(PSPEC.key_for("zz")) == 0
    assert redis_client.hget(PROOT + "rec", "zz") is None
    assert redis_client.smembers(PROOT + "eq:color:new") == {b"a1"}
    assert store.get(Plain, "a1") == Plain(color="new", id="a1")
    first = redis_client.zrange(PROOT + "ids:", 0, -1) + redis_client.zrange(
        PROOT + "ids:" + redis_client.zrange(PROOT + "ids", 1, 1)[0].decode(), 0, -1) \
        if where == "split target" else redis_client.zrange(PROOT + "ids:", 0, -1)
    assert b"a1" in first and b"zz" not in first
    assert int(redis_client.get(PROOT + "idn")) == IDS_MAX + 1


@pytest.mark.parametrize("many", [False, True])
def test_a_wrong_typed_page_refuses_a_delete_whole(redis_client: redis.Redis,
                                                   many: bool) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    store.save_many([Plain(color="c", id=i) for i in ("a", "q", "r")])
    # a page bound p whose page is not a sorted set: q's and r's page
    redis_client.zadd(PROOT + "ids", {"p": 0})
    redis_client.set(PROOT + "ids:p", "x")
    before = dump(redis_client)
    with pytest.raises(redmodel.ServerError) as e:
        if many:
            store.delete_many(Plain, ["a", "q"])
        else:
            store.delete(Plain, "q")
    assert PROOT + "ids:p" in str(e.value)
    after = dump(redis_client)
    q = PSPEC.key_for("q").encode()
    assert after[q] == before[q]
    assert redis_client.hget(PROOT + "rec", "q") is None  # no expiry: no stored record
    assert redis_client.sismember(PROOT + "eq:color:c", "q")
    if many:  # the other object of the call is deleted, from its page too
        assert redis_client.exists(PSPEC.key_for("a")) == 0
        assert b"a" not in redis_client.zrange(PROOT + "ids:", 0, -1)
        assert int(redis_client.get(PROOT + "idn")) == 2
    else:
        assert after == before


def test_a_sweep_leaves_a_wrong_typed_page_alone_and_reports_it(
        redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    store.save_many([Plain(color="c", id=i) for i in ("a", "q")])
    redis_client.zadd(PROOT + "ids", {"p": 0})
    redis_client.set(PROOT + "ids:p", "x")
    for i in ("a", "q"):
        redis_client.delete(PSPEC.key_for(i))
        redis_client.zadd(PROOT + "exp", {i: 1})
    assert store.sweep(Plain) == 2
    assert PROOT + "ids:p" in caplog.text
    assert redis_client.hgetall(PROOT + "rec") == {}
    assert redis_client.zcard(PROOT + "exp") == 0
    assert redis_client.zrange(PROOT + "ids:", 0, -1) == [b"q"]  # a left its page; q's
    # (by the planted bound, p's) is left alone
    assert int(redis_client.get(PROOT + "idn")) == 1
    assert redis_client.get(PROOT + "ids:p") == b"x"


# ---- lost replies ---------------------------------------------------------------------------

@pytest.fixture
def proxy(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


@pytest.mark.parametrize("many", [False, True])
def test_a_lost_reply_to_a_save_that_split_a_page_applies_it_once(
        redis_client: redis.Redis, proxy: FaultProxy, many: bool) -> None:
    flush(redis_client)
    fill_first_page(redis_client, redmodel.Store(redis_client))
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2))
    proxy.lose_reply("EVALSHA")
    objs = [Plain(color="s", id="m10x")] + ([Plain(color="s", id="m50x")] if many else [])
    if many:
        store.save_many(objs)
    else:
        store.save(objs[0])
    assert any(ev.kind == "lose_reply" for ev in proxy.events)
    ids = all_ids(redis_client, PROOT, D)
    assert len(ids) == IDS_MAX + len(objs) and redis_client.zcard(PROOT + "ids") == 2
    assert set(ids) == {f"m{i:02d}".encode() for i in range(IDS_MAX)} | {
        o.id.encode() for o in objs}
    assert redis_client.smembers(PROOT + "eq:color:s") == {o.id.encode() for o in objs}
    store.client.close()


def test_a_lost_reply_to_a_delete_in_exactly_once_mode_applies_it_once(
        redis_client: redis.Redis, proxy: FaultProxy) -> None:
    flush(redis_client)
    fill_first_page(redis_client, redmodel.Store(redis_client))
    redmodel.Store(redis_client).save(Plain(color="f", id="zz"))  # a page of its own
    assert redis_client.zcard(PROOT + "ids") == 2
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2),
                           exactly_once=True)
    proxy.lose_reply("EVALSHA")
    assert store.delete(Plain, "zz") is True
    ids = all_ids(redis_client, PROOT, D)
    assert len(ids) == IDS_MAX and b"zz" not in ids
    assert redis_client.zcard(PROOT + "ids") == 1  # its page went with it
    store.close()


# ---- an unconverted all-ids index -----------------------------------------------------------

def unconvert(client: Any, ids: list[str]) -> None:
    """As a database of an older redmodel leaves it: ``all`` a ZSET of the ids, no pages."""
    client.delete(PROOT + "ids", PROOT + "idn", PROOT + "ids:")
    client.zadd(PROOT + "all", dict.fromkeys(ids, 0))


def test_an_unconverted_zset_is_written_through(redis_client: redis.Redis) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    store.save_many([Plain(color="c", id=i) for i in ("a", "b", "c")])
    unconvert(redis_client, ["a", "b", "c"])
    store.save(Plain(color="n", id="d"))  # new: into the pages, not into all
    assert all_ids(redis_client, PROOT, D) == [b"d"]
    store.save(Plain(color="c2", id="a"))  # an old one saved again: into the pages too
    assert all_ids(redis_client, PROOT, D) == [b"a", b"d"]
    store.delete(Plain, "b")  # out of all (the conversion must not bring it back)
    assert redis_client.zrange(PROOT + "all", 0, -1) == [b"a", b"c"]
    store.delete_many(Plain, ["a", "d"])  # out of both
    assert redis_client.zrange(PROOT + "all", 0, -1) == [b"c"]
    assert all_ids(redis_client, PROOT, D) == []
    store.save_many([Plain(color="c", id=i) for i in ("c", "e")])
    assert all_ids(redis_client, PROOT, D) == [b"c", b"e"]
    store.delete(Plain, "c")  # all left empty: gone, the bucket converted
    assert redis_client.exists(PROOT + "all") == 0
    assert all_ids(redis_client, PROOT, D) == [b"e"]


def test_an_unconverted_set_refuses_writes_with_the_reindex_advice(
        redis_client: redis.Redis) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    redis_client.sadd(PROOT + "all", "a")
    before = dump(redis_client)
    for write in (lambda: store.save(Plain(color="c", id="b")),
                  lambda: store.save_many([Plain(color="c", id="b"), Plain(color="c", id="e")]),
                  lambda: store.delete(Plain, "a")):
        with pytest.raises(redmodel.ServerError, match=r"store\.reindex\(Plain\)"):
            write()
        assert dump(redis_client) == before


# ---- drop_index, and the KEYS audit of these paths ------------------------------------------

def test_dropping_the_last_index_deletes_the_pages(redis_client: redis.Redis) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    store.save_many([Plain(color="c", id=f"i{n:03d}") for n in range(150)])  # several pages
    assert redis_client.zcard(PROOT + "ids") > 2

    @redmodel.model(prefix="idp")
    @attrs.define
    class Bare:
        color: str
        id: str = redmodel.key_field()

    store.adopt(Bare)  # another class name here: the same model, a new version
    store.drop_index(Bare, "color", count=2)  # two pages a step
    assert [k for k in redis_client.keys("idp:%idx:*")] == []
    assert len(redis_client.keys("idp:*")) >= 150  # the objects stay


def test_the_write_scripts_touch_only_declared_keys_and_their_pages(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)

    def go() -> None:
        store.save_many([Item(color="c", id=f"w{n:03d}") for n in range(200)])  # splits
        store.save(Item(color="d", id="w0005x"))
        store.delete(Item, "w0005x")
        store.delete_many(Item, [f"w{n:03d}" for n in range(0, 200, 2)])  # joins
        for n in (1, 3):
            expire_now(redis_client, f"w{n:03d}")
        store.sweep(Item)

    audit = run_audit([(redis_server.host, redis_server.port)], go)
    assert audit.commands > 0
    assert list(dict.fromkeys(audit.violations)) == []
    assert {"index_write", "index_write_many", "index_sweep"} <= audit.seen


def rb_version(buckets: int) -> type:
    @redmodel.model(prefix="idrb", buckets=buckets)
    @attrs.define
    class RB:  # one qualified name for both versions: the same model
        color: str = redmodel.field(index=True)
        id: str = redmodel.key_field()

    return RB


def test_a_bucket_move_moves_the_ids_into_the_new_buckets_pages(
        redis_client: redis.Redis) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    ids = [f"r{n:03d}" for n in range(150)] + ["a:b", "{c}", "x" * 70]
    old, new = rb_version(2), rb_version(3)
    store.save_many([old(color="c", id=i) for i in ids])
    assert store.migrate_buckets(new, from_buckets=2) > 0  # (those whose bucket changed)
    spec3 = spec_of(new)
    # every bucket's pages (the old buckets' dropped with their other index keys, rebuilt
    # by the move's reindex) hold exactly the ids now in that bucket
    assert pages_of(redis_client, spec3) == expect(spec3, set(ids))


# ---- transactions and a cluster -------------------------------------------------------------

def test_writes_in_a_transaction_keep_the_pages(redis_client: redis.Redis) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    store.save_many([Plain(color="c", id=f"t{n:02d}") for n in range(IDS_MAX)])

    def body(tx: Any) -> None:  # a split, a delete, a re-save and a new id in one EXEC
        tx.save(Plain(color="n", id="t05x"))
        tx.delete(Plain, "t10")
        tx.save(Plain(color="n", id="t20"))
        tx.save(Plain(color="n", id="zz"))
        tx.delete(Plain, "zz")

    store.transaction(body)()
    want = {f"t{n:02d}".encode() for n in range(IDS_MAX)} - {b"t10"} | {b"t05x"}
    assert set(all_ids(redis_client, PROOT, D)) == want
    # a wrong-typed directory seen before MULTI refuses the transaction, nothing written
    redis_client.delete(PROOT + "ids", PROOT + "ids:", *[PROOT + "ids:" + b.decode()
                        for b in redis_client.zrange(PROOT + "ids", 0, -1)])
    redis_client.delete(PROOT + "idn")
    redis_client.set(PROOT + "ids", "x")
    before = dump(redis_client)
    with pytest.raises(redmodel.ServerError, match=PROOT + "ids"):
        store.transaction(lambda tx: tx.save(Plain(color="n", id="new")))()
    assert dump(redis_client) == before


def test_pages_on_a_cluster(redis_cluster_client: Any) -> None:
    client = redis_cluster_client
    store = redmodel.Store(client)
    ids = [f"k{n:03d}" for n in range(200)] + ["{c}", "a:b", "x" * 70]
    store.save_many([Item(color="c", id=i) for i in ids])
    store.delete_many(Item, ids[:150:2])
    store.delete(Item, "{c}")
    store.save(Item(color="d", id="k000"))
    expire_now(client, "k001")
    store.sweep(Item)
    live = set(ids) - set(ids[:150:2]) - {"{c}", "k001"} | {"k000"}
    assert pages_of(client, SPEC) == expect(SPEC, live)


def test_reindex_puts_back_an_id_the_pages_lost(redis_client: redis.Redis) -> None:
    flush(redis_client)
    store = redmodel.Store(redis_client)
    store.save_many([Plain(color="c", id=i) for i in ("a", "b", "c")])
    redis_client.zrem(PROOT + "ids:", "b")  # lost (a raw command), the count left as it was
    redis_client.decr(PROOT + "idn")
    # a write of an object without a record looks (only a record says an object is
    # listed: one stored before its model had an index is not) and puts it back
    store.save(Plain(color="c2", id="b"))
    assert all_ids(redis_client, PROOT, D) == [b"a", b"b", b"c"]
    assert redis_client.get(PROOT + "idn") == b"3"
    redis_client.zrem(PROOT + "ids:", "b")  # lost again
    redis_client.decr(PROOT + "idn")
    store.reindex(Plain, progress=False)  # a reindex looks too
    assert all_ids(redis_client, PROOT, D) == [b"a", b"b", b"c"]


@settings(max_examples=scaled(40, floor=10), deadline=None)
@given(runs=st.lists(pages_test.RUN, min_size=1, max_size=3), data=st.data())
def test_removals_in_a_row_of_present_ids_keep_the_pages_exact(
        redis_client: redis.Redis, runs: list[list[bytes]], data: st.DataObject) -> None:
    """Ids removed in increasing order (a delete_many of a range), some added back between
    them: the pages they leave empty or small are removed or joined as ids_plan_remove
    would."""
    redis_client.flushall()
    model = {i for run in runs for i in run}
    added = [x for i in sorted(model) for x in ("a", i)]
    assert redis_client.eval(NEAR, 0, pages_test.ROOT, pages_test.D, *added)
    ids = sorted(model)
    start = data.draw(st.integers(0, len(ids) - 1))
    stop = data.draw(st.integers(start + 1, len(ids)))
    step = data.draw(st.integers(1, 3))
    ops: list[tuple[str, bytes]] = []
    for i in ids[start:stop:step]:
        ops.append(("r", i))
        if data.draw(st.integers(0, 9)) == 0:
            ops.append(("a", data.draw(st.sampled_from(ids))))  # back (or already there)
    args = [x for op, i in ops for x in (op, i)]
    assert redis_client.eval(NEAR, 0, pages_test.ROOT, pages_test.D, *args) == \
        [b"OK"] * len(ops)
    for op, i in ops:
        if op == "a":
            model.add(i)
        else:
            model.discard(i)
    pages_test.check(redis_client, model)
