"""Fix 30C (attack 30AP F1-F4, containers), each finding drawn as its kind:

- F1: every malformed item of ``SortedSet.add_many`` (and a scores argument that is no
  iterable) is a ValidationError naming the key, before anything is written;
- F2/F3: a helper key of a queue (``%rejected``, ``%redelivered``, ``%consumers``, an
  in-flight list) or a sorted set (``%rejected``) of another type fails its script before
  the first write, so no item is lost, and the error names the key; ``clear()`` deletes
  ``%rejected`` and ``%redelivered`` with the key, so any container kind can follow any
  other at a key and set aside what it cannot decode;
- F4: a value holding a signalling NaN Decimal (directly or nested) is refused at write
  with ValidationError naming the key, and such a stored member reads as DecodeError
  naming the key (never a bare TypeError / InvalidOperation).

Sync and async. Notes: /work/notes/s30/FIX-C-NOTES.md."""

from __future__ import annotations

import asyncio
import collections
import decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.containers import Queue, Set, SortedSet
from redmodel.containers import _consumer as c
from tests.budget import scaled

D = decimal.Decimal


@pytest.fixture
def shell(one_server_store: Any) -> Any:
    return one_server_store


# ---- F1: add_many's items ---------------------------------------------------------------

good_pairs = st.lists(st.tuples(st.text(max_size=4), st.floats(-1e6, 1e6)), max_size=4)
malformed = st.one_of(
    st.tuples(), st.tuples(st.text(max_size=3)),
    st.tuples(st.text(max_size=3), st.floats(-5, 5), st.integers()),
    st.lists(st.integers(), min_size=3, max_size=5), st.lists(st.integers(), max_size=1),
    st.integers(), st.none(), st.text(max_size=4), st.binary(max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=scaled(100))
@given(before=good_pairs, bad=malformed, after=good_pairs, as_generator=st.booleans())
def test_f1_every_malformed_item_is_a_validation_error_naming_the_key(
        shell: Any, before: list[Any], bad: Any, after: list[Any], as_generator: bool) -> None:
    shell.client.flushall()
    hits = SortedSet(shell, "hits", str)
    hits.add("kept", 1.0)
    items = [*before, bad, *after]
    with pytest.raises(redmodel.ValidationError) as caught:
        hits.add_many((i for i in items) if as_generator else items)
    assert "hits" in str(caught.value)
    assert shell.client.zrange("hits", 0, -1, withscores=True) == [(b"kept", 1.0)]


@pytest.mark.parametrize("scores", [5, None, "ab", b"ab", 1.5])
def test_f1_scores_that_are_no_iterable_name_the_key(shell: Any, scores: Any) -> None:
    with pytest.raises(redmodel.ValidationError) as caught:
        SortedSet(shell, "hits", str).add_many(scores)
    assert "hits" in str(caught.value)
    assert shell.client.exists("hits") == 0


# ---- F2/F3: helper keys of another type ---------------------------------------------------

TYPES = ("string", "hash", "set", "zset", "list")
RIGHT = {"%rejected": "list", "%redelivered": "hash", "%consumers": "zset",
         "%inflight:w": "list"}


def _plant(client: Any, key: str, kind: str) -> None:
    {"string": lambda: client.set(key, "x"), "hash": lambda: client.hset(key, "f", "1"),
     "set": lambda: client.sadd(key, "x"), "zset": lambda: client.zadd(key, {"x": 1}),
     "list": lambda: client.rpush(key, "x")}[kind]()


def _stored(client: Any, key: str) -> list[bytes]:
    kind = client.type(key)
    if kind == b"list":
        return client.lrange(key, 0, -1)  # type: ignore[no-any-return]
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return client.zrange(key, 0, -1)  # type: ignore[no-any-return]
    return []


queue_items = st.lists(st.one_of(st.integers(-99, 99).map(lambda n: str(n).encode()),
                                 st.sampled_from([b"bad", b"x1", b"\xff"])),
                       min_size=1, max_size=5)
wrong_helper = st.sampled_from(sorted(RIGHT)).flatmap(
    lambda h: st.tuples(st.just(h), st.sampled_from([t for t in TYPES if t != RIGHT[h]])))


def _consume_sync(store: Any) -> list[int]:
    got: list[int] = []
    try:
        for v in Queue(store, "k", int).consume(name="w", idle_timeout=0.2, poll=0.05,
                                                signals=()):
            got.append(v)
    except redmodel.RedmodelError as e:
        assert "k" in str(e)
    return got


def _consume_async(url: str) -> list[int]:
    got: list[int] = []

    async def run() -> None:
        astore = redmodel.AsyncStore.from_url(url)
        try:
            q = Queue(astore, "k", int)
            async with q.consume(name="w", idle_timeout=0.2, poll=0.05, signals=()) as c:
                async for v in c:
                    got.append(v)
        except redmodel.RedmodelError as e:
            assert "k" in str(e)
        finally:
            await astore.aclose()

    asyncio.run(run())
    return got


def _keeps_every_item(client: Any, items: list[bytes], got: list[int], planted: str) -> None:
    left = list(client.lrange("k", 0, -1))
    for key in client.scan_iter(match="k:{k}:%inflight*"):
        if key.decode() != planted:
            left += _stored(client, key.decode())
    if planted != "k:{k}:%rejected":
        left += _stored(client, "k:{k}:%rejected")
    handled = collections.Counter(left) + collections.Counter(str(v).encode() for v in got)
    missing = collections.Counter(items) - handled
    assert not missing, f"items lost: {sorted(missing)}"


@pytest.mark.parametrize("mode", ["sync", "async"])
@settings(max_examples=scaled(50))
@given(items=queue_items, helper=wrong_helper)
def test_f2_a_queue_helper_of_another_type_loses_no_item(
        redis_client: Any, redis_url: str, mode: str, items: list[bytes],
        helper: tuple[str, str]) -> None:
    redis_client.flushall()
    name, kind = helper
    planted = f"k:{{k}}:{name}"
    _plant(redis_client, planted, kind)
    redis_client.rpush("k", *items)
    got = (_consume_sync(redmodel.Store(redis_client)) if mode == "sync"
           else _consume_async(redis_url))
    _keeps_every_item(redis_client, items, got, planted)


@pytest.mark.parametrize("script", ["reject", "take", "takeback", "leave", "recover"])
def test_f2_each_consume_script_checks_its_keys_before_writing(
        redis_client: Any, script: str) -> None:
    """Each consume_* script, called with one of its keys of another type, answers an
    error naming that key and changes nothing."""
    keys = c.ConsumerKeys.of("k")
    store = redmodel.Store(redis_client)
    for bad in (keys.queue, keys.consumers, keys.redelivered, keys.in_flight("w"),
                keys.rejected):
        if script != "reject" and bad == keys.rejected:
            continue
        if script == "reject" and bad in (keys.queue, keys.consumers):
            continue
        redis_client.flushall()
        redis_client.rpush(keys.in_flight("w"), "bad")
        redis_client.zadd(keys.consumers, {"w": 1})  # overdue: recover takes it
        redis_client.rpush(keys.queue, "7")
        redis_client.delete(bad)
        _plant(redis_client, bad, "string")
        before = {k: (redis_client.type(k), _stored(redis_client, k.decode()))
                  for k in redis_client.scan_iter()}
        plan = {"reject": lambda: c._reject_plan(keys, "w", b"bad"),
                "take": lambda: c.take_plan(keys, "w", 5.0, b"bad", True),
                "takeback": lambda: c._takeback_plan(keys, "w", 5.0),
                "leave": lambda: c.leave_plan(keys, "w", b"bad"),
                "recover": lambda: c.recover_plan(keys, ["w"])}[script]()
        try:
            store.run(plan)
        except redmodel.RedmodelError as e:
            assert bad in str(e), (bad, str(e))
        else:
            # a take of a consumer that is not registered (its sorted set is the string)
            pytest.fail(f"{script} ran with {bad} of another type")
        after = {k: (redis_client.type(k), _stored(redis_client, k.decode()))
                 for k in redis_client.scan_iter()}
        assert after == before, (script, bad)


def test_f3_a_sorted_set_pop_with_rejected_of_another_type_keeps_the_member(shell: Any
                                                                           ) -> None:
    for kind in ("string", "hash", "set", "list"):
        shell.client.flushall()
        _plant(shell.client, "z:{z}:%rejected", kind)
        shell.client.zadd("z", {"bad": 1, "2": 2})
        with pytest.raises(redmodel.RedmodelError) as caught:
            SortedSet(shell, "z", int).pop_min(2)
        assert "z:{z}:%rejected" in str(caught.value)
        assert shell.client.zrange("z", 0, -1) == [b"bad", b"2"]


KINDS = ("Queue", "Set", "SortedSet")


def _set_aside(store: Any, kind: str, key: str) -> None:
    """The container ``kind`` at ``key`` meets a member it cannot decode and sets it aside
    (a pop; for a queue also a consumer), then is cleared."""
    client = store.client
    if kind == "Queue":
        q: Any = Queue(store, key, int)
        client.rpush(key, "bad-pop", "bad-consume")
        with pytest.raises(redmodel.DecodeError):
            q.pop()
        with pytest.raises(redmodel.DecodeError):
            for _ in q.consume(name="w", idle_timeout=0.2, poll=0.05, signals=()):
                pass
        assert _stored(client, f"{key}:{{{key}}}:%rejected") == [b"bad-pop", b"bad-consume"]
        q.clear()
    elif kind == "Set":
        s: Any = Set(store, key, int)
        client.sadd(key, "bad-pop")
        with pytest.raises(redmodel.DecodeError):
            s.pop()
        assert _stored(client, f"{key}:{{{key}}}:%rejected") == [b"bad-pop"]
        s.clear()
    else:
        z: Any = SortedSet(store, key, int)
        client.zadd(key, {"bad-pop": 1})
        with pytest.raises(redmodel.DecodeError):
            z.pop_min()
        assert _stored(client, f"{key}:{{{key}}}:%rejected") == [b"bad-pop"]
        z.clear()
    assert client.exists(f"{key}:{{{key}}}:%rejected", f"{key}:{{{key}}}:%redelivered",
                         key) == 0


@settings(max_examples=scaled(30))
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=4))
def test_f2_f3_any_kind_may_follow_any_other_after_clear(shell: Any, kinds: list[str]
                                                         ) -> None:
    """docs/containers.md: "`clear()` the key to let it hold something else": after clear()
    (which deletes %rejected), each next kind sets aside what it cannot decode."""
    shell.client.flushall()
    for kind in kinds:
        _set_aside(shell, kind, "k")


# ---- F4: signalling NaNs --------------------------------------------------------------------


@attrs.frozen
class Priced:
    name: str
    price: D


snans = st.sampled_from([D("sNaN"), D("-sNaN"), D("sNaN123")])
fine = st.decimals(allow_nan=False, allow_infinity=False, places=3)
# (member type, a value of it holding a signalling NaN somewhere)
holding = st.one_of(
    st.tuples(st.just(D), snans),
    st.tuples(st.just(tuple[D, ...]), st.lists(st.one_of(fine, snans), min_size=1).filter(
        lambda xs: any(x.is_snan() for x in xs)).map(tuple)),
    st.tuples(st.just(list[D]), st.tuples(st.lists(fine, max_size=2), snans).map(
        lambda t: [*t[0], t[1]])),
    st.tuples(st.just(Priced), snans.map(lambda x: Priced("hat", x))),
    st.tuples(st.just(dict[str, D]), snans.map(lambda x: {"a": D(1), "b": x})),
    st.tuples(st.just(D | None), snans),
)
CONTAINERS = {"Set": (Set, lambda c, v: c.add(v)), "Queue": (Queue, lambda c, v: c.push(v)),
              "SortedSet": (SortedSet, lambda c, v: c.add(v, 1.0))}


@settings(max_examples=scaled(100))
@given(case=holding, where=st.sampled_from(sorted(CONTAINERS)))
def test_f4_a_signalling_nan_is_refused_at_write(shell: Any, case: tuple[Any, Any],
                                                 where: str) -> None:
    shell.client.flushall()
    tp, value = case
    if tp == D | None:  # a Queue's or Set's members admit no None (session 37)
        where = "SortedSet"
    make, write = CONTAINERS[where]
    container = make(shell, "prices", tp)
    with pytest.raises(redmodel.ValidationError) as caught:
        write(container, value)
    assert "prices" in str(caught.value)
    assert shell.client.dbsize() == 0 or shell.client.exists("prices") == 0


def _reads(where: str, tp: Any) -> list[Any]:
    if where == "Set":
        hashable = getattr(tp, "__hash__", None) is not None
        return [lambda c: c.members_list(),
                (lambda c: c.union()) if hashable else (lambda c: c.members_list()),
                lambda c: c.pop()]
    if where == "Queue":
        return [lambda c: c.range(), lambda c: c.pop()]
    return [lambda c: c.range(), lambda c: c.range_by_score(), lambda c: c.pop_min()]


@settings(max_examples=scaled(100))
@given(case=holding, where=st.sampled_from(sorted(CONTAINERS)), read=st.integers(0, 2))
def test_f4_a_stored_signalling_nan_reads_as_decode_error(
        shell: Any, case: tuple[Any, Any], where: str, read: int) -> None:
    """Another program stored the member (its bytes as redmodel would write them): every
    read raises DecodeError naming the key, never TypeError or InvalidOperation."""
    shell.client.flushall()
    tp, value = case
    if tp == D | None:  # (as above)
        where = "SortedSet"
    make, _ = CONTAINERS[where]
    container = make(shell, "prices", tp)
    raw = container.encoding.encode(value)  # what the check now refuses, written anyway
    {"Set": lambda: shell.client.sadd("prices", raw),
     "Queue": lambda: shell.client.rpush("prices", raw),
     "SortedSet": lambda: shell.client.zadd("prices", {raw: 1})}[where]()
    reads = _reads(where, tp)
    with pytest.raises(redmodel.DecodeError) as caught:
        reads[read % len(reads)](container)
    assert "prices" in str(caught.value)

