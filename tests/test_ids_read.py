"""The read side of the all-ids pages (issue 17 item 4): queries, verify and the reindex
conversion read the all-ids index through ids_lib.lua only.

Properties, against the server:
- any set of ids (``: { } * % \\``, NUL, ``\\xff``, ids past 64 bytes, shared prefixes),
  any page size, from any cursor (an id present or not), with ids_lib adds and removes
  between two pages of a query (pages split and joined under the walk): the unfiltered
  walk and NOT's complement give every id present throughout exactly once, in id order,
  never one twice; and with
  the churn undone, count() of everything and of NOT are exact, and ``.all()`` is exactly
  the sorted ids;
- a bucket whose old all-ids index (``<root>all``, ZSET or the older SET) is still there:
  every query is IndexNotReadyError naming store.reindex; the conversion (ids_convert.lua,
  its reply lost on the way and the step sent again) ends with the pages holding exactly
  the old ids, the count exact, ``all`` gone, queries answering;
- a directory, page or count of the wrong type: a ServerError naming the key, nothing read.
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
from redmodel import Q
from redmodel._indexes import _query
from redmodel._indexes._repair import CONVERT
from redmodel._models._keys import escape
from redmodel._plan import lua_source
from redmodel.testing import FaultProxy, RedisServer
from tests.budget import scaled

ROOT = "ir:%idx:"
D = ":"


@redmodel.model(prefix="ir")
@attrs.define
class Item:
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field(generated=False)


_DRIVER = """
local root, d, op = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local plan, bad
  if op == 'add' then plan, bad = ids_plan_add(root, d, ARGV[i])
  else plan, bad = ids_plan_remove(root, d, ARGV[i]) end
  if bad then return bad end
  ids_apply(plan)
end
return 'OK'
"""
LIB = lua_source("ids_lib") + _DRIVER


def lib(client: redis.Redis, op: str, ids: list[str]) -> None:
    """ids_lib adds or removes (escaped ids), as the write side does them."""
    if ids:
        assert client.eval(LIB, 0, ROOT, D, op, *ids) == b"OK"


def convert(client: Any, n: int = 50) -> None:
    """Every step of the conversion of the old all-ids index into pages (a no-op once the
    write side writes pages and no ``all``)."""
    keys = [ROOT + "all", ROOT + "all" + D + "old", ROOT + "ids", ROOT + "idn"]
    client.script_load(lua_source("ids_convert"))
    for _ in range(10_000):
        reply = client.execute_command(*CONVERT.call(keys, ["move", D, n]))
        assert reply[0] == b"LEFT", reply
        if int(reply[1]) == 0:
            return
    raise AssertionError("the conversion never ended")


def pages_ids(client: redis.Redis) -> list[bytes]:
    out: list[bytes] = []
    for bound in client.zrange(ROOT + "ids", 0, -1):
        out.extend(client.zrange(ROOT.encode() + b"ids" + D.encode() + bound, 0, -1))
    return out


def key(i: str) -> bytes:
    return escape(i).encode("utf-8", "surrogateescape")


def stored(ids: set[str]) -> list[str]:
    """The ids in the order the all-ids index keeps them: by escaped id, byte by byte."""
    return sorted(ids, key=key)


# ids that share prefixes, hold the characters ids escape, NUL, \xff, and pass 64 bytes
_PIECES = st.sampled_from(["a", "ab", ":", "{", "}", "*", "%", "\\", "\x00", "\xff", "z",
                           "é", "x" * 40, "%25", "ids"])
IDS = st.lists(_PIECES, min_size=1, max_size=4).map("".join)


@pytest.fixture
def fresh(store: redmodel.Store, redis_client: redis.Redis) -> Iterator[redmodel.Store]:
    yield store


def many(specials: list[str], n: int, tag: str) -> set[str]:
    """The special ids, and n more made of them and a number (shared prefixes)."""
    heads = specials or [""]
    return set(specials) | {f"{heads[k % len(heads)]}{tag}{k}" for k in range(n)}


@settings(max_examples=scaled(30, floor=8), deadline=None)
@given(ids=st.builds(many, st.lists(IDS, max_size=12), st.integers(0, 200), st.just("")),
       churn=st.builds(many, st.lists(IDS, max_size=6), st.integers(0, 90), st.just("~")),
       size=st.integers(1, 70), budget=st.sampled_from([1, 3, 20, 1000]), data=st.data())
def test_walks_are_exact_across_splits_and_joins(fresh: redmodel.Store, ids: set[str],
                                                 churn: set[str], size: int, budget: int,
                                                 data: st.DataObject) -> None:
    saved = _query.STEP_BUDGET
    _query.STEP_BUDGET = budget  # pages of many script steps (the cursor between them)
    try:
        walks(fresh, ids, churn, size, data)
    finally:
        _query.STEP_BUDGET = saved


def walks(store: redmodel.Store, ids: set[str], churn: set[str], size: int,
          data: st.DataObject) -> None:
    client = store.client
    client.flushall()
    churn -= ids
    everything = ids | churn
    objs = [Item(color=data.draw(st.sampled_from(["red", "blue"])), id=i) for i in everything]
    store.save_many(objs)
    convert(client)
    red = {o.id for o in objs if o.color == "red"}
    for q, want in ((store.find(Item), everything), (store.find(Item, ~Q(color="red")),
                                                     everything - red)):
        got: list[str] = []
        # from the start, or from any id's position (present or not)
        start = data.draw(st.one_of(st.none(), IDS | st.sampled_from(sorted(everything) or
                                                                     ["a"])))
        cursor = None if start is None else f"||{escape(start)}"
        out = sorted(escape(c) for c in churn)
        for _ in range(1000):
            page = q.after(cursor).page(size)
            got.extend(o.id for o in page.items)
            # between two pages: churn ids leave and come back, splitting and joining pages
            k = data.draw(st.integers(0, len(out)))
            lib(client, data.draw(st.sampled_from(["add", "remove"])), out[:k])
            cursor = page.cursor
            if cursor is None:
                break
        assert len(got) == len(set(got)), "an id came twice"
        steady = [i for i in got if i in ids]
        assert steady == [i for i in stored(want & ids) if start is None or
                          key(i) > key(start)], "an id present throughout was skipped"
        assert all(i in want for i in got)
        lib(client, "add", out)
    # the churn undone: exact answers
    assert store.find(Item).count() == len(everything)
    assert store.find(Item, ~Q(color="red")).count() == len(everything - red)
    assert [o.id for o in store.find(Item).all()] == stored(everything)
    assert pages_ids(client) == [escape(i).encode("utf-8", "surrogateescape")
                                 for i in stored(everything)]


@pytest.mark.parametrize("kind", ["zset", "set"])
def test_an_unconverted_bucket_refuses_every_query(store: redmodel.Store,
                                                   redis_client: redis.Redis,
                                                   kind: str) -> None:
    store.save_many([Item(color="red", id=f"k{i}") for i in range(5)])
    convert(redis_client)
    assert store.find(Item).count() == 5
    redis_client.delete(ROOT + "all")
    if kind == "zset":
        redis_client.zadd(ROOT + "all", {"k9": 0})
    else:
        redis_client.sadd(ROOT + "all", "k9")
    for call in (lambda: store.find(Item).count(), lambda: store.find(Item).all(),
                 lambda: store.find(Item, color="red").count(),
                 lambda: store.find(Item, ~Q(color="red")).all(),
                 lambda: store.find(Item).page(2)):
        with pytest.raises(redmodel.IndexNotReadyError, match=r"store\.reindex\(Item\)"):
            call()
    convert(redis_client)  # the reindex step: all gone, the old id in the pages
    assert redis_client.exists(ROOT + "all") == 0
    assert store.find(Item).count() == 6
    redis_client.set(ROOT + "all", "x")
    with pytest.raises(redmodel.ServerError, match="ir:%idx:all"):
        store.find(Item).count()


@pytest.mark.parametrize("where", ["ids", "page", "idn", "idn-text"])
def test_a_wrong_typed_directory_page_or_count_is_named(store: redmodel.Store,
                                                        redis_client: redis.Redis,
                                                        where: str) -> None:
    store.save_many([Item(color="red", id=f"k{i:03d}") for i in range(100)])
    convert(redis_client)
    key = {"ids": ROOT + "ids", "page": ROOT + "ids" + D + "k064", "idn": ROOT + "idn",
           "idn-text": ROOT + "idn"}[where]
    assert redis_client.exists(key)
    redis_client.delete(key)
    if where == "idn-text":
        redis_client.set(key, "many")
    else:
        redis_client.rpush(key, "x")
    calls = [lambda: store.find(Item).all(), lambda: store.find(Item, ~Q(color="blue")).all()]
    if where.startswith("idn"):  # the count is read by every call (N); the pages by walks
        calls += [lambda: store.find(Item).count(),
                  lambda: store.find(Item, ~Q(color="red")).count()]
    for call in calls:
        with pytest.raises(redmodel.ServerError) as caught:
            call()
        assert key in str(caught.value)
        assert key in caught.value.keys
    problems = " ".join(store.verify(Item))
    assert key in problems


@pytest.mark.parametrize("kind", ["zset", "set", "spare"])
def test_the_conversion_survives_a_lost_reply(redis_server: RedisServer,
                                              redis_client: redis.Redis, kind: str) -> None:
    """An old all-ids index (a ZSET; the older SET; an older SET -> ZSET conversion cut
    short, ids left in the spare key) converted in steps whose reply is lost and which are
    sent again: the pages hold exactly its ids, the count is exact, the old keys are gone."""
    ids = [escape(i) for i in ["a", "a:b", "{x}", "*", "%", "\\", "\x00", "\xff" * 3,
                               "y" * 70]] + [f"k{i:04d}" for i in range(300)]
    lib(redis_client, "add", ids[:7])  # a write since the upgrade put these in the pages
    if kind == "zset":
        redis_client.zadd(ROOT + "all", dict.fromkeys(ids, 0))
    elif kind == "set":
        redis_client.sadd(ROOT + "all", *ids)
    else:
        redis_client.zadd(ROOT + "all", dict.fromkeys(ids[:100], 0))
        redis_client.sadd(ROOT + "all" + D + "old", *ids[100:])
    keys = [ROOT + "all", ROOT + "all" + D + "old", ROOT + "ids", ROOT + "idn"]
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        client = redis.Redis.from_url(proxy.url, socket_timeout=2)
        step = CONVERT.call(keys, ["move", D, 40])
        client.script_load(lua_source("ids_convert"))
        for _ in range(3):  # lost replies: the step ran; sent again, it moves the next ids
            proxy.lose_reply("EVALSHA")
            with pytest.raises(redis.ConnectionError):
                client.execute_command(*step)
            proxy.clear()
        convert(client, 40)
        client.close()
    assert redis_client.exists(*keys[:2]) == 0
    assert pages_ids(redis_client) == sorted(i.encode("utf-8", "surrogateescape") for i in ids)
    assert int(redis_client.get(ROOT + "idn")) == len(ids)
    sizes = [redis_client.zcard(ROOT + "ids" + D + b.decode("utf-8", "surrogateescape"))
             for b in redis_client.zrange(ROOT + "ids", 0, -1)]
    assert max(sizes) <= 64
    # the count check of reindex: exact, and set right when overwritten
    redis_client.script_load(lua_source("ids_convert"))
    reply = redis_client.execute_command(*CONVERT.call(keys, ["count", D]))
    assert reply == [b"COUNT", len(ids), str(len(ids)).encode()]  # the count's text
    redis_client.set(ROOT + "idn", 7)
    reply = redis_client.execute_command(*CONVERT.call(keys, ["fix", D]))
    assert reply == [b"COUNT", len(ids), b"7"]
    assert int(redis_client.get(ROOT + "idn")) == len(ids)


@pytest.mark.parametrize("planted", ["ids", "idn", "page", "spare", "all", "split"])
def test_a_conversion_step_checks_types_before_its_first_write(redis_client: redis.Redis,
                                                               planted: str) -> None:
    even = [f"k{i:03d}" for i in range(0, 128, 2)]
    lib(redis_client, "add", even)  # one full page, ''
    redis_client.zadd(ROOT + "all", dict.fromkeys([f"k{i:03d}" for i in range(1, 40, 2)], 0))
    # k001's add splits page '' in two halves; the upper one would be the page of k062
    key = {"ids": ROOT + "ids", "idn": ROOT + "idn", "page": ROOT + "ids" + D,
           "spare": ROOT + "all" + D + "old", "all": ROOT + "all",
           "split": ROOT + "ids" + D + "k062"}[planted]
    redis_client.delete(key)
    redis_client.rpush(key, "x")
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    redis_client.script_load(lua_source("ids_convert"))
    keys = [ROOT + "all", ROOT + "all" + D + "old", ROOT + "ids", ROOT + "idn"]
    reply = redis_client.execute_command(*CONVERT.call(keys, ["move", D, 10]))
    assert reply[:2] == [b"WRONGTYPE", key.encode()]
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before


@pytest.mark.parametrize("kind", ["zset", "set"])
def test_reindex_converts_through_lost_replies(redis_server: RedisServer,
                                              redis_client: redis.Redis, kind: str) -> None:
    """store.reindex of a database an older version wrote (``all``, no pages), two of its
    conversion steps' replies lost (the store sends them again): the pages hold exactly the
    ids, the count is exact, ``all`` is gone, the queries answer."""
    ids = ["a", "a:b", "{x}", "*", "%", "\\", "\x00", "\xff", "y" * 70] + [
        f"k{i:03d}" for i in range(150)]
    direct = redmodel.Store(redis_client)
    direct.save_many([Item(color="red" if i.startswith("k") else "blue", id=i) for i in ids])
    members = pages_ids(redis_client) or redis_client.zrange(ROOT + "all", 0, -1)
    for bound in redis_client.zrange(ROOT + "ids", 0, -1):
        redis_client.delete(ROOT.encode() + b"ids" + D.encode() + bound)
    redis_client.delete(ROOT + "all", ROOT + "ids", ROOT + "idn")
    if kind == "zset":
        redis_client.zadd(ROOT + "all", dict.fromkeys(members, 0))
    else:
        redis_client.sadd(ROOT + "all", *members)
    with pytest.raises(redmodel.IndexNotReadyError, match=r"store\.reindex\(Item\)"):
        direct.find(Item).all()
    policy = redmodel.ResendPolicy(attempts=5, backoff_base=0.01, backoff_max=0.05,
                                   deadline=8.0, write_id_ttl=30.0)
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        store = redmodel.Store(redis.Redis.from_url(proxy.url, socket_timeout=2),
                               resend=policy)
        try:
            assert store.get(Item, "a") is not None
            store.client.script_load(lua_source("ids_convert"))
            proxy.lose_reply("EVALSHA", times=2,
                             when=lambda args: args[1] == CONVERT.sha.encode()
                             and b"move" in args)
            assert store.reindex(Item, count=40, progress=False) == len(ids)
            assert proxy.events, "no reply was lost"
        finally:
            store.close()
    assert redis_client.exists(ROOT + "all") == 0
    assert pages_ids(redis_client) == sorted(escape(i).encode("utf-8", "surrogateescape")
                                             for i in ids)
    assert int(redis_client.get(ROOT + "idn")) == len(ids)
    assert direct.verify(Item) == []
    assert direct.find(Item).count() == len(ids)
    assert [o.id for o in direct.find(Item).all()] == stored(set(ids))
    assert direct.find(Item, ~Q(color="red")).count() == 9
