"""The all-ids index in pages (redmodel/lua/ids_lib.lua; issue 17 item 4), tested alone
through a test-only script that runs its operations, each check-then-write as the write
scripts will.

Properties: after any sequence of adds and removes (batches of ids with ``: { } * % \\``,
NUL, non-ASCII bytes, long ids past 64 bytes, shared prefixes, ids equal to page bounds)
the directory is sorted and starts with the first page '', every page but the first is
non-empty and within IDS_MAX, every page holds exactly the ids between its bound and the
next, the pages hold exactly the ids added and not removed, the count is exact, no stray
page key exists, and every walk by id (any page size, from any cursor, present or not,
across splits and merges between steps) gives exactly the sorted ids after the cursor with
no repeat or skip. Every operation is idempotent: sent again (a resend after a lost reply)
it changes nothing. A wrong-typed directory, page, split target or count refuses the
operation with nothing written.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from redmodel._plan import lua_source
from tests.budget import scaled

ROOT = b"ip:{b7}:%idx:"
D = b":"
IDS_MAX = 64

_DRIVER = """
local root, d, op = ARGV[1], ARGV[2], ARGV[3]
if op == 'add' or op == 'remove' then
  local out = {}
  for i = 4, #ARGV do
    local plan, bad
    if op == 'add' then plan, bad = ids_plan_add(root, d, ARGV[i])
    else plan, bad = ids_plan_remove(root, d, ARGV[i]) end
    if bad then out[#out + 1] = bad else ids_apply(plan); out[#out + 1] = 'OK' end
  end
  return out
elseif op == 'after' then
  local ids, ended, reads, bad = ids_after(root, d, ARGV[4], tonumber(ARGV[5]))
  if bad then return bad end
  return {ids, ended and 1 or 0, reads}
elseif op == 'count' then
  local n, bad = ids_count(root)
  return bad or n
elseif op == 'has' then
  local h, bad = ids_has(root, d, ARGV[4])
  return bad or (h and 1 or 0)
end
return {err = 'op'}
"""
SOURCE = lua_source("ids_lib") + _DRIVER


def run(client: Any, op: str, *args: bytes | str | int) -> Any:
    return client.eval(SOURCE, 0, ROOT, D, op, *args)


def key_order(ids: set[bytes]) -> list[bytes]:
    return sorted(ids)  # bytes sort byte by byte, as Redis sorts members of equal score


def check(client: Any, model: set[bytes]) -> None:
    """Every invariant of the format against the ids the model holds."""
    dir_key = ROOT + b"ids"
    bounds = client.zrange(dir_key, 0, -1, withscores=True)
    assert all(score == 0 for _, score in bounds)
    bounds = [b for b, _ in bounds]
    keys = set(client.keys(ROOT + b"*"))
    if not bounds:
        assert not model
        assert keys <= {ROOT + b"idn"}
        assert int(client.get(ROOT + b"idn") or 0) == 0
        return
    assert bounds[0] == b""
    assert bounds == key_order(set(bounds))
    seen: list[bytes] = []
    for i, bound in enumerate(bounds):
        page = client.zrange(ROOT + b"ids" + D + bound, 0, -1, withscores=True)
        assert all(score == 0 for _, score in page)
        members = [m for m, _ in page]
        if i > 0:
            assert members, f"empty page {bound!r}"
        assert len(members) <= IDS_MAX
        nxt = bounds[i + 1] if i + 1 < len(bounds) else None
        for m in members:
            assert m >= bound
            assert nxt is None or m < nxt
        seen.extend(members)
    assert seen == key_order(model)
    assert int(client.get(ROOT + b"idn") or 0) == len(model)
    assert run(client, "count") == len(model)
    pages = {ROOT + b"ids" + D + b for b in bounds}
    assert keys - pages <= {ROOT + b"ids", ROOT + b"idn"}, "a stray key"
    # every page key shares the root's hash slot (cluster buckets)
    slot = redis.cluster.key_slot(ROOT)
    assert all(redis.cluster.key_slot(k) == slot for k in keys)


def walk(client: Any, cursor: bytes, n: int) -> tuple[list[bytes], int]:
    """Every id after cursor, n per call: the ids, and the most reads one call cost."""
    out: list[bytes] = []
    most = 0
    while True:
        ids, ended, reads = run(client, "after", cursor, n)
        most = max(most, reads)
        assert len(ids) <= n
        out.extend(ids)
        if ids:
            cursor = ids[-1]
        if ended or not ids:
            return out, most


# ids that share prefixes and sort close together, with the characters ids escape and
# bytes Lua or a locale could compare differently; and long ones (past the listpack's
# 64-byte value limit)
_CHARS = st.sampled_from([b"a", b"b", b":", b"{", b"}", b"*", b"%", b"\\", b"\x00", b"\xc3\xa9",
                          b"\xff", b"z"])
ID = st.one_of(
    st.lists(_CHARS, min_size=1, max_size=4).map(b"".join),
    st.builds(lambda p, n: b"p" + p * n, _CHARS, st.integers(20, 70)),
    st.integers(0, 400).map(lambda i: b"id%05d" % i),
)
# runs of neighbouring ids, so that pages fill, split and empty
RUN = st.builds(lambda head, start, k, step: [head + b"%04d" % i
                                              for i in range(start, start + k * step, step)],
                st.sampled_from([b"r", b"r:", b"r{", b"q\xff"]), st.integers(0, 50),
                st.integers(1, 200), st.integers(1, 3))
BATCH = st.one_of(st.lists(ID, min_size=1, max_size=80), RUN)
OPS = st.lists(st.tuples(st.sampled_from(["add", "add", "remove"]), BATCH), min_size=1,
               max_size=8)


@settings(max_examples=scaled(50, floor=10))
@given(ops=OPS, n=st.integers(1, 70), cursor=ID)
def test_any_adds_and_removes_keep_the_pages_exact(redis_client: Any, ops: Any, n: int,
                                                   cursor: bytes) -> None:
    redis_client.flushall()
    model: set[bytes] = set()
    for op, ids in ops:
        replies = run(redis_client, op, *ids)
        assert replies == [b"OK"] * len(ids)
        if op == "add":
            model.update(ids)
        else:
            model.difference_update(ids)
        check(redis_client, model)
        # the same operation again (a resend after a lost reply) changes nothing
        state = _state(redis_client)
        assert run(redis_client, op, *ids) == [b"OK"] * len(ids)
        assert _state(redis_client) == state
    got, most = walk(redis_client, b"", n)
    assert got == key_order(model)
    assert most <= 2 * n + 4  # the step budget: members read plus pages visited
    got, _ = walk(redis_client, cursor, n)
    assert got == [i for i in key_order(model) if i > cursor]
    for probe in [cursor, *list(model)[:5]]:
        assert run(redis_client, "has", probe) == (1 if probe in model else 0)


def test_a_walk_across_splits_and_merges_between_its_steps(redis_client: Any) -> None:
    """Ids present throughout come exactly once, in order, when pages split and merge
    (the cursor's own page among them) between the steps of a walk."""
    stable = [b"s%03d" % i for i in range(0, 600, 3)]
    run(redis_client, "add", *stable)
    out: list[bytes] = []
    cursor = b""
    step = 0
    while True:
        ids, ended, _ = run(redis_client, "after", cursor, 7)
        out.extend(ids)
        if ids:
            cursor = ids[-1]
        if ended or not ids:
            break
        step += 1
        # churn right around the cursor: split its page, then empty the page after it
        around = [cursor + b"%02d" % k for k in range(70)]
        run(redis_client, "add", *around)
        check(redis_client, set(stable) | set(around))
        run(redis_client, "remove", *around)
        check(redis_client, set(stable))
    assert out == stable
    assert step > 20


def _state(client: Any) -> dict[bytes, Any]:
    return {k: client.dump(k) for k in client.keys(b"*")}


@pytest.mark.parametrize("where", ["dir", "page", "count", "count_text", "target_mid",
                                   "target_end"])
def test_a_wrong_typed_key_refuses_with_nothing_written(redis_client: Any, where: str) -> None:
    run(redis_client, "add", *[b"k%02d" % i for i in range(IDS_MAX)])
    if where == "dir":
        key = ROOT + b"ids"
        redis_client.delete(key)
        redis_client.set(key, "planted")
    elif where == "page":
        key = ROOT + b"ids" + D
        redis_client.delete(key)
        redis_client.sadd(key, "planted")
    elif where == "count":
        key = ROOT + b"idn"
        redis_client.delete(key)
        redis_client.rpush(key, "planted")
    elif where == "count_text":
        key = ROOT + b"idn"
        redis_client.set(key, "x1")
    else:  # the key the page's split would create: its upper half's first id, or the
        # added id alone when it is past every id of the page
        key = ROOT + b"ids" + D + (b"k31a" if where == "target_mid" else b"k99")
        redis_client.set(key, "planted")
    before = _state(redis_client)
    added = b"k31a" if where == "target_mid" else b"k99"
    for op, id_ in (("add", added), ("remove", b"k05")):
        reply = run(redis_client, op, id_)
        if where.startswith("target") and op == "remove":
            assert reply == [b"OK"]  # no split: the planted key is not touched
            continue
        assert reply[0][0] == b"WRONGTYPE" and reply[0][1] == key, reply
        assert _state(redis_client) == before


def test_pages_go_with_their_ids_and_the_last_id_takes_every_key(redis_client: Any) -> None:
    ids = [b"x%04d" % i for i in range(300)]
    run(redis_client, "add", *ids)
    check(redis_client, set(ids))
    assert redis_client.zcard(ROOT + b"ids") > 4
    run(redis_client, "remove", *ids)
    check(redis_client, set())
    # the last id removed: the directory and the count go too (no key left behind)
    assert set(redis_client.keys(b"*")) == set()
    assert run(redis_client, "after", b"", 10) == [[], 1, 2]
    run(redis_client, "add", b"x0001")  # and the next add starts them again
    check(redis_client, {b"x0001"})
    assert redis_client.zrange(ROOT + b"ids", 0, -1) == [b""]


def test_pages_left_small_by_removals_are_joined(redis_client: Any) -> None:
    ids = [b"x%04d" % i for i in range(640)]
    run(redis_client, "add", *ids)
    pages = redis_client.zcard(ROOT + b"ids")
    assert pages >= 10
    kept = ids[::10]
    run(redis_client, "remove", *[i for i in ids if i not in set(kept)])
    check(redis_client, set(kept))
    # 64 ids in pages of at most 32 after a join: a few pages, not one per old page
    assert redis_client.zcard(ROOT + b"ids") <= pages // 2


@pytest.mark.parametrize("tag", [b"{b7}", b"{0}"])
def test_pages_live_in_the_bucket_slot_of_a_cluster(redis_cluster_client: Any,
                                                    tag: bytes) -> None:
    """On a cluster, a script that declares one key of the bucket (the directory) reads and
    writes every page, undeclared, on the node of the bucket's slot: they share its slot."""
    c = redis_cluster_client
    root = b"ip:" + tag + b":%idx:"
    ids = [b"c%04d" % i for i in range(0, 400, 2)] + [b"c%04d" % i for i in range(1, 400, 2)]
    assert c.eval(SOURCE, 1, root + b"ids", root, D, "add", *ids) == [b"OK"] * len(ids)
    out: list[bytes] = []
    cursor = b""
    while True:
        got, ended, _ = c.eval(SOURCE, 1, root + b"ids", root, D, "after", cursor, 33)
        out.extend(got)
        if got:
            cursor = got[-1]
        if ended or not got:
            break
    assert out == sorted(ids)
    assert c.eval(SOURCE, 1, root + b"ids", root, D, "count") == len(ids)
    assert c.zcard(root + b"ids") > 3
