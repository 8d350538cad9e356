"""Session 25, fix F: the all-ids pages under damage planted by hand (attack 24i, F1-F6).

Properties, against the server:
- any ids (``: { } * % \\``, NUL, ``\\xff``, ids past 64 bytes), any mix of planted damage
  of the pages (an id moved or copied into a page outside its bounds, a bound whose page
  does not exist, a page the directory forgot, a page of thousands of ids, scores other
  than 0, a count holding anything but an integer >= 0): verify reports it whenever the
  pages break a rule of their format (checked here independently, by raw reads); one
  reindex leaves verify clean, every id in exactly one page, in its bounds, every page at
  most 64 ids, the count exact, and every query shape answering the stored objects;
- a page of one bucket holding ids of other buckets (F3): reindex removes them from that
  page only; every bucket keeps its own ids, records and count;
- a mend step reads and moves a bounded number of members, whatever the damage;
- a write over a count holding no integer >= 0 is refused naming the count, nothing written;
- an increment that gives up on a field pinned by another increment says so, naming the
  field and the key.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q
from redmodel._indexes import _writes
from redmodel._indexes._repair import CONVERT
from redmodel._models._keys import escape
from redmodel._plan import lua_source
from tests.budget import scaled
from tests.index_helpers import flush

ROOT = "fx25:%idx:"
RB = ROOT.encode()


@redmodel.model(prefix="fx25")
@attrs.define
class Fx:
    color: str = redmodel.field(index=True, default="red")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx25b", buckets=3)
@attrs.define
class Fb:
    color: str = redmodel.field(index=True, default="red")
    id: str = redmodel.key_field(generated=False)


WEIRD = st.sampled_from(["\x00", "\xff", "a\x00b", ":", "{", "}", "*", "%", "\\",
                         "a" * 70, "a" * 70 + "b", "p" * 64, " ", "\n", "k050", "k050\x00"])
IDS = st.one_of(WEIRD, st.text(alphabet="ab:{%\\\x00", min_size=1, max_size=6),
                st.integers(0, 299).map(lambda i: f"k{i:03d}"))
BAD_COUNTS = st.sampled_from(["-5", "lots", "", "1e3", " 3", "3 ", str(2**64), "-0", "+1", "007",
                             "9" * 19, "\xff"])

DAMAGE = st.one_of(
    st.tuples(st.just("move"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("copy"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("nopage"), IDS, st.just(0)),
    st.tuples(st.just("unlist"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("huge"), st.integers(0, 10**6), st.integers(65, 700)),
    st.tuples(st.just("score"), st.integers(0, 10**6), st.sampled_from([1, -2, 0.5])),
    st.tuples(st.just("count"), BAD_COUNTS, st.just(0)),
    st.tuples(st.just("drift"), st.integers(-3, 3), st.just(0)),
)


def _page(root: bytes, bound: bytes) -> bytes:
    return root + b"ids:" + bound


def broken(r: redis.Redis, root: bytes = RB) -> list[str]:
    """The rules of the pages' format (docs/design.md "The all-ids index in pages") that
    the raw keys break, read independently of redmodel."""
    out: list[str] = []
    dir_key = root + b"ids"
    listed = r.zrange(dir_key, 0, -1, withscores=True)
    bounds = [b for b, _ in listed]
    if any(s != 0 for _, s in listed):
        out.append("dir score")
    if bounds and bounds[0] != b"":
        out.append("no first bound")
    total = 0
    for i, b in enumerate(bounds):
        members = r.zrange(_page(root, b), 0, -1, withscores=True)
        if b != b"" and not members:
            out.append(f"bound {b!r} without page")
        if len(members) > 64:
            out.append(f"page {b!r} holds {len(members)}")
        if any(s != 0 for _, s in members):
            out.append(f"page {b!r} score")
        nxt = bounds[i + 1] if i + 1 < len(bounds) else None
        if any(m < b or (nxt is not None and m >= nxt) for m, _ in members):
            out.append(f"page {b!r} outside")
        total += len(members)
    for key in r.scan_iter(match=root + b"ids:*"):
        if key[len(root) + 4:] not in set(bounds):
            out.append(f"unlisted {key!r}")
    recorded = r.get(root + b"idn")
    if (recorded or b"0") != str(total).encode():
        out.append(f"count {recorded!r} != {total}")
    return out


def _numeric(r: redis.Redis) -> bool:
    """Whether INCRBY takes the count as it is: absent, 0, or digits without a leading
    zero (Redis 7.0 refuses "007"; some Valkey versions take it)."""
    v = r.get(RB + b"idn")
    return v is None or v == b"0" or (v.isdigit() and not v.startswith(b"0") and len(v) <= 18)


def page_ids(r: redis.Redis, root: bytes = RB) -> list[bytes]:
    ids: list[bytes] = []
    for b in r.zrange(root + b"ids", 0, -1):
        ids.extend(r.zrange(_page(root, b), 0, -1))
    return ids


def answers(store: redmodel.Store, live: dict[str, str]) -> None:
    ids = store.find(Fx).ids()
    assert sorted(ids) == sorted(live)
    assert store.find(Fx).count() == len(live)
    assert sorted(store.find(Fx, ~Q(color="red")).ids()) == sorted(
        i for i, c in live.items() if c != "red")
    assert sorted(o.id for page in store.find(Fx).pages(7) for o in page) == sorted(live)


@settings(max_examples=scaled(25), deadline=None)
@given(ids=st.lists(IDS, min_size=1, max_size=150, unique=True),
       damage=st.lists(DAMAGE, min_size=1, max_size=4))
def test_any_planted_damage_is_reported_and_one_reindex_mends_it(
        store: redmodel.Store, redis_client: redis.Redis, ids: list[str],
        damage: list[Any]) -> None:
    flush(redis_client)
    store.save_many([Fx(color="blue" if i[-1:] in "ab" else "red", id=i) for i in ids])
    live = {i: "blue" if i[-1:] in "ab" else "red" for i in ids}
    assert broken(redis_client) == []
    r = redis_client
    for n, (kind, a, b) in enumerate(damage):
        bounds = r.zrange(RB + b"ids", 0, -1)
        if not bounds:
            break
        src = bounds[a % len(bounds)] if isinstance(a, int) else b""
        members = r.zrange(_page(RB, src), 0, -1)
        if kind in ("move", "copy") and members:
            m = members[b % len(members)]
            dst = bounds[(a + 1 + b) % len(bounds)]
            if kind == "move":
                r.zrem(_page(RB, src), m)
            r.zadd(_page(RB, dst), {m: 0})
        elif kind == "nopage":
            r.zadd(RB + b"ids", {a.encode("utf-8", "surrogateescape"): 0})
        elif kind == "unlist" and src != b"":
            r.zrem(RB + b"ids", src)
        elif kind == "huge":
            extra = {f"h{n}x{j:05d}": "red" for j in range(b)}
            with r.pipeline(transaction=False) as p:
                for j in extra:
                    p.hset(f"fx25:{j}", "color", "red")
                p.zadd(_page(RB, src), dict.fromkeys(extra, 0))
                p.execute()
            if _numeric(r):
                r.incrby(RB + b"idn", b)
            live.update(extra)
        elif kind == "score" and members:
            r.zadd(_page(RB, src), {members[0]: b})
        elif kind == "count":
            r.set(RB + b"idn", a)
        elif kind == "drift" and _numeric(r):
            r.incrby(RB + b"idn", a)
    if broken(r):
        assert store.verify(Fx) != []
    store.reindex(Fx)
    assert store.verify(Fx) == []
    assert broken(r) == []
    got = page_ids(r)
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(escape(i).encode("utf-8", "surrogateescape") for i in live)
    answers(store, live)
    # and the pages take writes again
    more = [f"{i}~" for i in list(live)[::5]]
    store.save_many([Fx(id=i) for i in more])
    live.update(dict.fromkeys(more, "red"))
    store.delete_many(Fx, list(live)[::3])
    for i in list(live)[::3]:
        del live[i]
    assert broken(r) == []
    answers(store, live)


@settings(max_examples=scaled(20), deadline=None)
@given(ids=st.lists(st.integers(0, 199).map(lambda i: f"u{i:03d}"), min_size=3, max_size=60,
                    unique=True),
       strays=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 2)), min_size=1,
                       max_size=5))
def test_ids_of_another_bucket_planted_into_a_page_are_removed_from_it_only(
        store: redmodel.Store, redis_client: redis.Redis, ids: list[str],
        strays: list[tuple[int, int]]) -> None:
    """F3: the stray copy goes; its object keeps its record and page in its own bucket."""
    flush(redis_client)
    store.save_many([Fb(id=i) for i in ids])
    spec = redmodel._models._specs.spec_of(Fb)  # type: ignore[attr-defined]
    roots = {t: spec.index_root(t).encode() for t in spec.tags()}
    own = {t: sorted(escape(i).encode() for i in ids if spec.tag_of(i) == t) for t in spec.tags()}
    records = {t: redis_client.hgetall(roots[t] + b"rec") for t in spec.tags()}
    for k, shift in strays:
        i = ids[k % len(ids)]
        tag = spec.tag_of(i)
        other = str((int(tag) + shift) % 3)
        page = redis_client.zrange(roots[other] + b"ids", 0, -1) or [b""]
        redis_client.zadd(_page(roots[other], page[k % len(page)]), {i: 0})
        redis_client.incr(roots[other] + b"idn")
    assert store.verify(Fb) != []
    store.reindex(Fb)
    assert store.verify(Fb) == []
    for t in spec.tags():
        assert sorted(page_ids(redis_client, roots[t])) == own[t]
        assert broken(redis_client, roots[t]) == []
        assert redis_client.hgetall(roots[t] + b"rec") == records[t]
    assert sorted(store.find(Fb).ids()) == sorted(ids)
    assert store.find(Fb).count() == len(ids)


@settings(max_examples=scaled(15), deadline=None)
@given(size=st.integers(65, 3000), budget=st.sampled_from([64, 100, 333, 1000]),
       strays=st.integers(0, 400))
def test_a_mend_step_moves_a_bounded_number_of_members(
        redis_client: redis.Redis, size: int, budget: int, strays: int) -> None:
    """One 'mend' call of ids_convert.lua over a page of `size` ids and `strays` ids planted
    below the next page's bound into the first: no call changes more than about `budget`
    members (plus one split of a full page: 64), and the steps end with legal pages."""
    flush(redis_client)
    r = redis_client
    r.zadd(RB + b"ids", {b"": 0, b"m": 0})
    r.zadd(_page(RB, b""), {f"a{j:05d}": 0 for j in range(size)})
    r.zadd(_page(RB, b"m"), {"m0": 0})
    if strays:
        r.zadd(_page(RB, b""), {f"z{j:04d}": 0 for j in range(strays)})  # >= 'm': outside
    r.set(RB + b"idn", size + strays + 1)
    r.script_load(lua_source("ids_convert"))
    keys = [ROOT + "all", ROOT + "all:old", ROOT + "ids", ROOT + "idn"]
    start = "-"

    def snapshot() -> dict[bytes, set[bytes]]:
        return {b: set(r.zrange(_page(RB, b), 0, -1)) for b in r.zrange(RB + b"ids", 0, -1)}

    for _ in range(1000):
        before = snapshot()
        reply = r.execute_command(*CONVERT.call(keys, ["mend", ":", start, budget]))
        assert reply[0] == b"STEP", reply
        after = snapshot()
        changed = 0
        for b in set(before) | set(after):
            changed += len(before.get(b, set()) ^ after.get(b, set()))
        assert changed <= 2 * (budget + 64 + 48), (changed, budget)
        if reply[1] == 1:
            break
        start = reply[2].decode()
    else:
        raise AssertionError("the mend steps did not end")
    assert broken(r) == []
    assert sorted(page_ids(r)) == sorted(
        [f"a{j:05d}".encode() for j in range(size)] + [b"m0"] +
        [f"z{j:04d}".encode() for j in range(strays)])


@settings(max_examples=scaled(15), deadline=None)
@given(text=BAD_COUNTS)
def test_a_count_holding_no_integer_refuses_writes_naming_it_and_reindex_rebuilds_it(
        store: redmodel.Store, redis_client: redis.Redis, text: str) -> None:
    """F1 (decided): writes refuse the count naming it; verify reports it; reindex sets it
    to the number of ids the pages hold."""
    flush(redis_client)
    store.save_many([Fx(id=f"c{i}") for i in range(3)])
    redis_client.set(ROOT + "idn", text)
    with pytest.raises(redmodel.ServerError, match="fx25:%idx:idn"):
        store.save(Fx(id="new"))
    assert not redis_client.exists("fx25:new")
    assert any("fx25:%idx:idn" in line for line in store.verify(Fx))
    store.reindex(Fx)
    assert store.verify(Fx) == []
    assert redis_client.get(ROOT + "idn") == b"3"
    store.save(Fx(id="new"))
    assert store.find(Fx).count() == 4


@redmodel.model(prefix="fx25p")
@attrs.define
class Pinned:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


def test_an_increment_giving_up_on_a_pin_says_the_field_stayed_pinned(
        store: redmodel.Store, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A pin planted by "another increment" (fresh, by the server's clock) outlasts the
    wait (shortened here): the ConflictError names the field and the key, and says it
    stayed pinned, not that the keys kept changing."""
    flush(redis_client)
    store.save(Pinned(id="p"))
    monkeypatch.setattr(_writes, "PIN_WAIT", 0.2)
    now = redis_client.time()
    ms = now[0] * 1000 + now[1] // 1000
    redis_client.hset("fx25p:p", "\x00pin\x1fn", f"someone\x1f{ms}")
    with pytest.raises(redmodel.ConflictError) as caught:
        store.incr(Pinned, "p", "n", 1)
    text = str(caught.value)
    assert "pinned" in text and "'n'" in text and "fx25p:p" in text, text
    assert "kept changing" not in text
    redis_client.hdel("fx25p:p", "\x00pin\x1fn")
    assert store.incr(Pinned, "p", "n", 1) == 1


def test_on_a_cluster_a_stray_of_another_bucket_is_forgotten_on_its_pages_node(
        redis_cluster_client: Any) -> None:
    """F3 on a cluster: the forget of a stray id runs in the slot of the bucket whose page
    holds it (every key it declares is that bucket's), and the mend steps of each bucket
    run on their own node; the real object keeps its entries and page."""
    c = redis_cluster_client
    store = redmodel.Store(c)
    ids = [f"u{i:02d}" for i in range(30)]
    store.save_many([Fb(id=i) for i in ids])
    spec = redmodel._models._specs.spec_of(Fb)  # type: ignore[attr-defined]
    i = ids[0]
    own = spec.index_root(spec.tag_of(i)).encode()
    other = spec.index_root(str((int(spec.tag_of(i)) + 1) % 3)).encode()
    c.zadd(_page(other, b""), {escape(i): 0})
    c.incr(other + b"idn")
    assert store.verify(Fb) != []
    store.reindex(Fb)
    assert store.verify(Fb) == []
    assert c.zscore(_page(other, b""), escape(i)) is None
    # the real object keeps its entry and its page in its own bucket (it keeps no record:
    # objects without an expiry have none since the derived record)
    assert c.sismember(own + b"eq:color:red", escape(i))
    assert c.zscore(_page(own, b""), escape(i)) is not None
    assert sorted(store.find(Fb).ids()) == ids
    assert store.find(Fb).count() == len(ids)
    store.delete_many(Fb, ids)
    store.unregister(Fb)
