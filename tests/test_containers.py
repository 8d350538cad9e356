"""Typed containers against the real server: queues (with blocking pops and the consumer
loop), sets, sorted sets, windowed counters, in and out of transactions."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import os
import signal
import threading
import time
import uuid
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import attrs
import pytest
import redis
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import (
    DecodeError,
    ModelDefinitionError,
    ReadAfterWriteError,
    TransactionError,
    ValidationError,
)
from redmodel.containers._base import container_key
from redmodel.containers._counter import WindowCounter
from redmodel.containers._queue import Queue, pop_blocking
from redmodel.containers._sets import Set, SortedSet
from redmodel.transactions import Pending
from tests.budget import scaled
from tests.strategies import values

BOT = IPv4Address("104.174.118.18")


@attrs.frozen
class Visit:
    addr: str
    path: str
    at: dt.datetime
    tags: tuple[str, ...] = ()


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


_TIMERS: list[threading.Timer] = []


def later(seconds: float, fn: Any, *args: Any) -> threading.Timer:
    timer = threading.Timer(seconds, fn, args)
    timer.start()
    _TIMERS.append(timer)
    return timer


@pytest.fixture(autouse=True)
def _join_timers(request: pytest.FixtureRequest) -> Any:
    """A push scheduled by a test finishes before its store is closed: the store is set
    up first, so it is torn down after the timers are joined."""
    for name in ("store", "async_store", "cluster_store"):
        if name in request.fixturenames:
            request.getfixturevalue(name)
    yield
    while _TIMERS:
        _TIMERS.pop().join(timeout=10)


# ---- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "expected"), [
    ("ips", "ips"),
    (42, "42"),
    (dt.date(2026, 11, 25), "2026-11-25"),
    (dt.datetime(2026, 11, 25, 10, 30), "2026-11-25T10%3A30%3A00"),
    (("visits", dt.date(2026, 11, 25)), "visits:2026-11-25"),
    (("ip", BOT, 7), "ip:104.174.118.18:7"),
    ("a:b*", "a%3Ab%2A"),
    (Color.RED, "red"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
])
def test_keys_convert_and_escape_like_model_keys(key, expected):
    assert container_key(key) == expected


@pytest.mark.parametrize(
    "bad", [None, 1.5, True, b"ips", {"a": 1}, ["a", "b"], "", (), ("a", None)]
)
def test_unsupported_keys_raise_a_validation_error_naming_the_type(store, bad):
    with pytest.raises(ValidationError, match="container key"):
        Queue(store, bad, int)


def test_a_raw_date_key_becomes_its_isoformat(store, redis_client):
    today = dt.date(2026, 11, 25)
    visitors = Set(store, today, str)
    visitors.add("dan", "jon", "alex")
    assert redis_client.smembers("2026-11-25") == {b"dan", b"jon", b"alex"}


# ---- members ----------------------------------------------------------------------------


def test_scalars_are_stored_as_plain_redis_strings(store, redis_client):
    Set(store, "n", int).add(1, 2)
    assert redis_client.smembers("n") == {b"1", b"2"}
    Queue(store, "ips", IPv4Address).push(BOT)
    assert redis_client.lrange("ips", 0, -1) == [b"104.174.118.18"]
    Queue(store, "days", dt.date).push(dt.date(2026, 1, 2))
    assert redis_client.lrange("days", 0, -1) == [b"2026-01-02"]
    Queue(store, "colors", Color).push(Color.BLUE)
    assert redis_client.lrange("colors", 0, -1) == [b"blue"]


def test_equal_values_are_one_member(store, redis_client):
    nums = Set(store, "f", float)
    assert nums.add(0.0, -0.0, 1, 1.0) == 2
    decs = Set(store, "d", decimal.Decimal)
    assert decs.add(decimal.Decimal("1.50"), decimal.Decimal("1.5")) == 1
    maps = Set(store, "m", dict[str, int])
    assert maps.add({"b": 1, "a": 2}, {"a": 2, "b": 1}) == 1
    assert redis_client.smembers("m") == {b'\xa7\x04json{"a":2,"b":1}'}
    assert maps.members_list() == [{"a": 2, "b": 1}]


def test_attrs_members_go_through_the_codec(store):
    visits = Queue(store, "visits", Visit)
    v = Visit("1.2.3.4", "/hats", dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc), ("x",))
    visits.push(v)
    assert visits.pop() == v
    packed = Queue(store, "packed", Visit, codec="msgpack|zlib")
    packed.push(v)
    assert packed.range() == [v]


def test_either_ip_version_as_one_member_type(store, redis_client):
    q = Queue(store, "ips", IPv4Address | IPv6Address)
    q.push(BOT, IPv6Address("::1"))
    assert redis_client.lrange("ips", 0, -1) == [b"104.174.118.18", b"::1"]
    assert q.range() == [BOT, IPv6Address("::1")]
    with pytest.raises(ValidationError, match="expected IPv4Address or IPv6Address"):
        q.push("104.174.118.18")


def test_wrong_member_type_is_refused_before_anything_is_sent(store, redis_client):
    ints = Queue(store, "ints", int)
    with pytest.raises(ValidationError, match=r"expected int, got str.*key 'ints'"):
        ints.push(1, "2")
    with pytest.raises(ValidationError, match="expected int, got bool"):
        ints.push(True)
    with pytest.raises(ValidationError, match="at least one"):
        ints.push()
    assert redis_client.exists("ints") == 0


def test_unsupported_member_type_fails_at_declaration(store):
    with pytest.raises(ModelDefinitionError):
        Queue(store, "q", object)


def test_fernet_chain_is_refused_for_sets(store, monkeypatch):
    from cryptography.fernet import Fernet  # noqa: PLC0415

    redmodel.codecs.configure_fernet([Fernet.generate_key()])
    Queue(store, "secret", Visit, codec="json|fernet")  # a queue does not compare members
    with pytest.raises(ModelDefinitionError, match="random nonce"):
        Set(store, "secret-set", Visit, codec="json|fernet")


def test_undecodable_member_raises_decode_error_naming_the_key_not_the_value(
    store, redis_client
):
    redis_client.rpush("ints", b"secret-value")
    with pytest.raises(DecodeError) as info:
        Queue(store, "ints", int).pop()
    assert info.value.key == "ints"
    assert "secret-value" not in str(info.value)
    redis_client.sadd("visits", b"secret-json")
    with pytest.raises(DecodeError) as info2:
        Set(store, "visits", Visit).members()
    assert info2.value.key == "visits"
    assert "secret-json" not in str(info2.value)


# ---- Queue ------------------------------------------------------------------------------


def test_queue_push_pop_range_length_trim(store, redis_client):
    q = Queue(store, "q", int)
    assert q.pop() is None
    assert q.push(1, 2, 3) == 3
    assert q.push_left(0, -1) == 5
    assert q.range() == [-1, 0, 1, 2, 3]
    assert q.range(1, 2) == [0, 1]
    assert q.length() == 5
    assert q.pop() == -1
    assert q.pop_right() == 3
    q.trim(0, 1)
    assert q.range() == [0, 1]
    assert q.exists()
    assert q.expire(10)
    assert 0 < redis_client.pttl("q") <= 10_000
    assert q.clear()
    assert not q.exists()
    assert q.length() == 0



@given(values=st.lists(st.integers(0, 9), max_size=12), start=st.integers(-15, 15),
       stop=st.integers(-15, 15))
def test_a_trim_is_resendable_only_where_a_second_ltrim_changes_nothing(
        redis_client, values, start, stop):
    """Property: for every list and every ``(start, stop)`` that ``trim`` marks
    resendable, the server's LTRIM applied twice leaves what it left once (so a resend
    after a lost reply is harmless). ``trim(1, -1)`` / ``trim(0, -2)`` are not marked."""
    batch = next(Queue(redmodel.Store(redis_client, registry=False), "t", int).trim_plan(
        start, stop))  # the plan's own batch: no first-use check before it
    redis_client.delete("t")
    if values:
        redis_client.rpush("t", *values)
    redis_client.ltrim("t", start, stop)
    once = redis_client.lrange("t", 0, -1)
    redis_client.ltrim("t", start, stop)
    if batch.may_resend:
        assert redis_client.lrange("t", 0, -1) == once
    assert (start, stop) not in {(1, -1), (0, -2)} or not batch.may_resend


def test_trim_refuses_what_is_not_an_int(store):
    q = Queue(store, "q", int)
    for bad in (1.0, "1", None, True):
        with pytest.raises(ValidationError, match="trim's start must be an int"):
            q.trim(bad, -1)
    with pytest.raises(ValidationError, match="trim's stop must be an int"):
        q.trim(0, 2.5)


def test_blocking_pop_returns_after_a_push_from_another_connection(store, redis_server):
    q = Queue(store, "ips", IPv4Address)
    other = Queue(redmodel.Store(redis_server.client()), "ips", IPv4Address)
    started = time.monotonic()  # before the timer: a descheduled thread cannot shorten the wait
    later(0.3, other.push, BOT)
    assert q.pop_blocking(5) == BOT
    assert 0.25 < time.monotonic() - started < 3


def test_blocking_pop_times_out_with_none(store):
    q = Queue(store, "empty", int)
    started = time.monotonic()
    assert q.pop_blocking(0.2) is None
    assert 0.15 < time.monotonic() - started < 2
    assert q.pop_blocking(0.2, right=True) is None


def test_blocking_pop_outlasts_the_clients_socket_timeout(redis_server):
    """A client reads with a socket timeout (redis-py 8: 5 s) and retries: a block longer
    than that timeout must still wait it out, and not be sent twice."""
    store = redmodel.Store(redis_server.client(socket_timeout=0.3))
    q = Queue(store, "slow", int)
    started = time.monotonic()  # before the timer: a descheduled thread cannot shorten the wait
    later(0.8, q.push, 7)
    assert q.pop_blocking(3) == 7
    assert 0.7 < time.monotonic() - started < 2.5
    assert q.length() == 0


def test_blocking_pop_without_timeout_waits_for_a_value(store):
    q = Queue(store, "forever", int)
    later(0.2, q.push, 5)
    assert q.pop_blocking(None) == 5


def test_blocking_pop_across_several_queues(store):
    high, low = Queue(store, "high", str), Queue(store, "low", str)
    low.push("l1")
    high.push("h1")
    assert pop_blocking(high, low, timeout=1) == (high, "h1")
    assert pop_blocking(high, low, timeout=1) == (low, "l1")
    assert pop_blocking(high, low, timeout=0.2) is None
    later(0.2, low.push, "l2")
    found = pop_blocking(high, low, timeout=3)
    assert found is not None and found[0] is low and found[1] == "l2"
    low.push("a", "b")
    assert pop_blocking(low, timeout=1, right=True) == (low, "b")


def test_blocking_pop_validation(store):
    q, other = Queue(store, "q", int), Queue(store, "o", str)
    for bad in (0, -1, True, "1"):
        with pytest.raises(ValidationError, match="positive number"):
            q.pop_blocking(bad)
    with pytest.raises(ValidationError, match="same encoding"):
        pop_blocking(q, other, timeout=1)
    with pytest.raises(ValidationError):
        pop_blocking(timeout=1)


def test_blocking_pop_refused_inside_a_transaction(store):
    q = Queue(store, "q", int)
    q.push(1)

    @redmodel.transaction(store)
    def through_handle(tx):
        q.in_tx(tx).pop_blocking(1)

    @redmodel.transaction(store)
    def direct(tx):
        q.pop_blocking(1)

    for fn in (through_handle, direct):
        with pytest.raises(TransactionError, match=r"blocking pop|blocks"):
            fn()
    assert q.length() == 1


# ---- the consumer loop ------------------------------------------------------------------


def test_consumer_stops_on_sentinel_and_max_items(store):
    q = Queue(store, "work", str)
    q.push("a", "b", "STOP", "c")
    consumer = q.consume(sentinel="STOP", poll=0.2)
    assert list(consumer) == ["a", "b"]
    assert (consumer.stopped_by, consumer.count) == ("sentinel", 2)
    assert q.range() == ["c"]
    q.push("d", "e")
    consumer = q.consume(max_items=2, poll=0.2)
    assert list(consumer) == ["c", "d"]
    assert consumer.stopped_by == "max_items"
    assert q.range() == ["e"]


def test_consumer_stops_when_idle(store):
    q = Queue(store, "work", int)
    started = time.monotonic()  # before the timer: a descheduled thread cannot shorten the wait
    later(0.2, q.push, 1)
    consumer = q.consume(idle_timeout=0.6, poll=0.2)
    assert list(consumer) == [1]
    assert consumer.stopped_by == "idle"
    assert 0.7 < time.monotonic() - started < 10  # (it stops: a loaded machine may take seconds)


def test_consumer_finishes_the_current_item_on_sigterm_then_restores_handlers(store):
    q = Queue(store, "work", int)
    q.push(1, 2, 3)
    before = signal.getsignal(signal.SIGTERM)
    done = []
    consumer = q.consume(poll=0.2)
    for item in consumer:
        if item == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs; the item is still finished below
        done.append(item)
    assert done == [1]
    assert consumer.stopped_by == "signal"
    assert q.range() == [2, 3]
    assert signal.getsignal(signal.SIGTERM) is before


def test_consumer_signal_while_waiting_stops_within_the_poll(store):
    q = Queue(store, "work", int)
    started = time.monotonic()  # before the timer: a descheduled thread cannot shorten the wait
    later(0.3, os.kill, os.getpid(), signal.SIGINT)
    consumer = q.consume(poll=0.5)
    assert list(consumer) == []
    assert consumer.stopped_by == "signal"
    assert time.monotonic() - started < 3


def test_consumer_stop_from_another_thread(store):
    q = Queue(store, "work", int)
    consumer = q.consume(poll=0.2)
    later(0.3, consumer.stop)
    assert list(consumer) == []
    assert consumer.stopped_by == "stop"


# ---- Set --------------------------------------------------------------------------------


def test_set_operations(store):
    days = Set(store, "days", dt.date)
    d1, d2, d3 = (dt.date(2026, 1, n) for n in (1, 2, 3))
    assert days.add(d1, d2, d2) == 2
    assert days.members() == {d1, d2}
    assert days.contains(d1) and d1 in days
    assert not days.contains(d3)
    assert days.cardinality() == 2
    assert days.remove(d1, d3) == 1
    assert days.pop() == d2
    assert days.pop() is None
    assert days.members() == set()


def test_set_algebra(store):
    a, b, c = (Set(store, k, IPv4Address) for k in ("a", "b", "c"))
    ip = [IPv4Address(f"10.0.0.{n}") for n in range(5)]
    a.add(ip[0], ip[1], ip[2])
    b.add(ip[1], ip[2], ip[3])
    c.add(ip[2], ip[4])
    assert a.union(b, c) == set(ip)
    assert a.intersection(b) == {ip[1], ip[2]}
    assert a.intersection(b, c) == {ip[2]}
    assert a.difference(b) == {ip[0]}
    assert a.difference(b, c) == {ip[0]}
    with pytest.raises(ValidationError, match="same encoding"):
        a.union(Set(store, "s", str))  # type: ignore[arg-type]


def test_unhashable_members_come_back_as_a_list(store):
    s = Set(store, "lists", list[int])
    s.add([1, 2], [3])
    assert sorted(s.members_list()) == [[1, 2], [3]]
    with pytest.raises(ValidationError, match="members_list"):
        s.members()


# ---- SortedSet --------------------------------------------------------------------------


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def any_protocol_store(request, redis_server, redis_client):
    client = redis_server.client(protocol=request.param)
    yield redmodel.Store(client)
    client.close()


def test_sorted_set_add_scores_ranks_and_ranges(any_protocol_store):
    z = SortedSet(any_protocol_store, "scores", str)
    assert z.add_many({"a": 1, "b": 2.5, "c": 3}) == 3
    assert z.add("d", -1) == 1
    assert z.add("a", 10, nx=True) == 0 and z.score("a") == 1.0
    assert z.add("zz", 5, xx=True) == 0 and z.score("zz") is None
    assert z.incr("a", 0.5) == 1.5
    assert z.cardinality() == 4
    assert z.rank("d") == 0 and z.rank("d", reverse=True) == 3 and z.rank("zz") is None
    assert z.range() == ["d", "a", "b", "c"]
    assert z.range(0, 1, reverse=True) == ["c", "b"]
    assert z.range_with_scores(1, 2) == [("a", 1.5), ("b", 2.5)]
    assert z.range_by_score(1.5, 3) == ["a", "b", "c"]
    assert z.range_by_score("(1.5", "+inf") == ["b", "c"]
    assert z.range_by_score(reverse=True, count=2) == ["c", "b"]
    assert z.range_by_score(offset=1, count=2) == ["a", "b"]
    assert z.range_by_score_with_scores(2, 3) == [("b", 2.5), ("c", 3.0)]
    assert z.pop_min() == [("d", -1.0)]
    assert z.pop_max(2) == [("c", 3.0), ("b", 2.5)]
    assert z.remove("a", "zz") == 1
    assert z.pop_min() == []


def test_sorted_set_of_ip_addresses_counts_visits(store):
    hits = SortedSet(store, "hits", IPv4Address)
    for _ in range(3):
        hits.incr(BOT)
    hits.incr(IPv4Address("10.0.0.1"))
    assert hits.range_with_scores(reverse=True) == [(BOT, 3.0), (IPv4Address("10.0.0.1"), 1.0)]


def test_sorted_set_validation(store):
    z = SortedSet(store, "z", str)
    for bad in (float("nan"), "1", True, None):
        with pytest.raises(ValidationError, match="score"):
            z.add("a", bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="bound"):
        z.range_by_score("low", 3)
    with pytest.raises(ValidationError, match="count"):
        z.pop_min(0)


# ---- what set and sorted-set pops cannot decode ------------------------------------------

REJECTED = "nums:eu:{nums:eu}:%rejected"


@pytest.mark.parametrize("how", ["Set.pop", "SortedSet.pop_min", "SortedSet.pop_max(3)"])
def test_a_set_pop_sets_an_undecodable_member_aside(any_store, how):
    """As a queue's pops do (containers.md): a popped member that does not decode is not
    destroyed but kept, raw, in the container's ``%rejected`` key (a set for a set, a
    sorted set with its score for a sorted set); a sorted set's pop takes nothing else:
    the members at that end that do decode are never taken out (its script pops only
    members read and decoded), so they stay with their scores; DecodeError names the key
    and the rejected key, never the value."""
    client = any_store.client
    if how == "Set.pop":
        client.sadd("nums:eu", b"secret-three")
        with pytest.raises(DecodeError) as info:
            Set(any_store, ("nums", "eu"), int).pop()
        assert client.smembers(REJECTED) == {b"secret-three"}
        assert client.exists("nums:eu") == 0
    else:
        client.zadd("nums:eu", {b"secret-three": 0.5, b"1": 1.0, b"3": float("inf")})
        z = SortedSet(any_store, ("nums", "eu"), int)
        with pytest.raises(DecodeError) as info:
            z.pop_min() if how == "SortedSet.pop_min" else z.pop_max(3)
        assert client.zrange(REJECTED, 0, -1, withscores=True) == [(b"secret-three", 0.5)]
        assert client.zrange("nums:eu", 0, -1, withscores=True) == [
            (b"1", 1.0), (b"3", float("inf"))]
        if how == "SortedSet.pop_max(3)":  # it read all three: two decode and stay
            assert "took nothing else" in str(info.value)
    assert "secret-three" not in str(info.value)
    assert REJECTED in str(info.value) and info.value.key == "nums:eu"


def test_a_set_pop_in_a_transaction_says_an_undecodable_member_is_lost(store):
    """A transaction sends nothing after EXEC, so it cannot set the member aside: the
    DecodeError says so (as for a queue's pop in a transaction)."""
    store.client.sadd("nums", b"three")

    @redmodel.transaction(store)
    def take(tx):
        return Set(store, "nums", int).in_tx(tx).pop()

    with pytest.raises(DecodeError, match="it is lost") as info:
        _ = take().value  # raised by take() itself, as a queue's pop in a transaction
    assert "three" not in str(info.value)
    assert store.client.exists("nums", "nums:{nums}:%rejected") == 0


# ---- WindowCounter ----------------------------------------------------------------------


def test_window_counter_counts_and_expires_with_its_window(store, redis_client):
    visits = WindowCounter(store, "visits", window=1)
    # start just after a window boundary so both increments land in the same window
    time.sleep(1 - time.time() % 1 + 0.01)
    assert visits.incr(BOT) == 1
    assert visits.incr(BOT, 2) == 3
    assert visits.get(BOT) == 3
    assert visits.get(IPv4Address("10.0.0.1")) == 0
    key = visits.key_for(BOT)
    assert key.startswith("visits:104.174.118.18:")
    assert 0 < redis_client.pttl(key) <= 1000
    time.sleep(1.05)
    assert redis_client.exists(key) == 0
    assert visits.get(BOT) == 0


def test_window_counter_keys_follow_the_clock(store, redis_client):
    now = [1_000_000.5]
    visits = WindowCounter(store, ("visits", "minute"), window=60, clock=lambda: now[0])
    started = time.monotonic()
    assert visits.incr("a") == 1
    assert visits.key_for("a") == "visits:minute:a:999960+60"
    left = redis_client.pttl("visits:minute:a:999960+60")
    # 19.5 s to the window's end by the counter's clock, less the time since (measured: a
    # fixed margin fails on a slow machine)
    assert 19_500 - (time.monotonic() - started) * 1000 - 2 <= left <= 19_500
    now[0] += 60
    assert visits.get("a") == 0
    assert visits.incr("a") == 1


# any two windows (common lengths, whose starts align, and any others up to the limit)
_WINDOWS = st.one_of(st.sampled_from([1, 2, 60, 120, 3600, 86_400]),
                     st.integers(1, 10**11))
_SUBJECTS = st.one_of(st.text(st.characters(exclude_categories=()), min_size=1, max_size=6),
                      st.sampled_from(["a:b", "a%3Ab", "{x}", "*", "\\", "1+60", "0+1"]),
                      st.integers(-(2**64), 2**64),
                      st.tuples(st.sampled_from(["a", "a:1", "1"]), st.integers(-3, 3)))


@st.composite
def _two_instants(draw: Any, w1: int, w2: int) -> tuple[float, float]:
    """Two instants: any ones, or two in windows of ``w1`` and ``w2`` that start at the
    same second (where a key without the window's length was one key for both)."""
    if draw(st.booleans()):
        any_time = st.floats(-(2.0**62), 2.0**62, allow_nan=False)
        return draw(any_time), draw(any_time)
    lcm = w1 * w2 // math.gcd(w1, w2)
    base = draw(st.integers(-3, 3)) * lcm
    base = base if abs(base) < 2**52 else 0
    inside = st.integers(0, min(w1, w2) - 1)
    return base + draw(inside) + draw(st.sampled_from([0.0, 0.25])), base + draw(inside)


@settings(max_examples=scaled(300))
@given(data=st.data(), w1=_WINDOWS, w2=_WINDOWS, s1=_SUBJECTS, s2=_SUBJECTS)
def test_two_window_counters_of_one_prefix_share_a_key_only_with_the_same_window(
        data, w1, w2, s1, s2):
    """Property (no I/O): for any two windows, subjects and instants, two counters of one
    prefix give one key only for the same window, subject and window start."""
    t1, t2 = data.draw(_two_instants(w1, w2))
    a = WindowCounter(None, "hits", window=w1)
    b = WindowCounter(None, "hits", window=w2)
    # a subject no key can carry (a lone surrogate) is refused by both, never keyed
    for counter, subject, at in ((a, s1, t1), (b, s2, t2)):
        try:
            container_key(subject)
        except redmodel.ValidationError:
            with pytest.raises(redmodel.ValidationError):
                counter.key_for(subject, at)
            return
    same = (w1 == w2 and container_key(s1) == container_key(s2)
            and a.window_start(t1) == b.window_start(t2))
    assert (a.key_for(s1, t1) == b.key_for(s2, t2)) == same


def _start_within(window: int, at: float) -> int:
    start = WindowCounter(None, "hits", window=window).window_start(at)
    return start if start >= -(2**62) else start + window


@settings(max_examples=scaled(40))
@given(data=st.data(), w1=_WINDOWS, w2=_WINDOWS, n=st.integers(1, 2**62))
def test_a_counter_after_forget_with_another_window_never_reads_the_old_counts(
        redis_client, data, w1, w2, n):
    """Property (fixed clocks, never the wall clock): a counter of a prefix counts ``n``,
    is forgotten, and a counter of the same prefix with another window, at any instant
    (often one where both windows start at the same second), reads 0 and counts its own;
    the old keys keep their count."""
    assume(w1 != w2)
    t1, t2 = data.draw(_two_instants(w1, w2))
    # each instant moved to its window's start (the same keys): the key's expiry, the
    # window's end by the fixed clock, is then a whole window (>= 1 s) away, not as little
    # as 1 ms, and the keys are made persistent right after counting, so no expiry ends a
    # count before the asserts on a loaded machine
    # (a start before the earliest instant a clock may give, 2**62 s back, is the next
    # window's start instead: the window holding -2**62 begins before it)
    t1 = _start_within(w1, t1)
    t2 = _start_within(w2, t2)
    redis_client.flushdb()
    old = WindowCounter(redmodel.Store(redis_client), "hits", window=w1, clock=lambda: t1)
    assert old.incr(BOT, n) == n
    assert redis_client.persist(old.key_for(BOT, t1))
    assert old.forget()
    new = WindowCounter(redmodel.Store(redis_client), "hits", window=w2, clock=lambda: t2)
    assert new.get(BOT) == 0
    assert new.incr(BOT) == 1
    assert redis_client.persist(new.key_for(BOT, t2))  # (as the old key's, above)
    assert redis_client.get(old.key_for(BOT, t1)) == str(n).encode()
    assert not new.reset(IPv4Address("10.0.0.1"))
    assert new.reset(BOT)


def test_window_counter_validation(store):
    for bad in (0, 0.5, 1.5, True, "60"):
        with pytest.raises(ValidationError, match="window"):
            WindowCounter(store, "v", window=bad)  # type: ignore[arg-type]
    assert WindowCounter(store, "v", window=dt.timedelta(minutes=1)).window == 60
    with pytest.raises(ValidationError, match="amount"):
        WindowCounter(store, "v").incr("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="container key"):
        WindowCounter(store, "v").incr(None)


# ---- transactions -----------------------------------------------------------------------


def test_containers_in_a_transaction_read_now_and_queue_writes(store, redis_client):
    q = Queue(store, "q", int)
    seen = Set(store, "seen", int)
    visits = WindowCounter(store, "visits", window=60)
    q.push(1, 2)
    pendings: list[Pending[Any]] = []

    @redmodel.transaction(store)
    def move(tx):
        head = q.in_tx(tx).range(0, 0)[0]           # WATCH q, LRANGE now
        known = seen.in_tx(tx).contains(head)       # WATCH seen, SISMEMBER now
        popped = q.in_tx(tx).pop()                  # queued
        added = seen.in_tx(tx).add(head)            # queued
        counted = visits.in_tx(tx).incr("mover")    # queued: INCRBY + PEXPIRE
        assert isinstance(popped, Pending) and not popped.done
        assert redis_client.llen("q") == 2          # nothing applied before EXEC
        pendings.extend([popped, added, counted])
        return head, known, tx.watched

    head, known, watched = move()
    assert (head, known) == (1, False)
    assert set(watched) == {"q", "seen"}
    assert [p.value for p in pendings] == [1, 1, 1]
    assert q.range() == [2]
    assert seen.members() == {1}


def test_container_read_after_a_queued_write_is_refused(store):
    q = Queue(store, "q", int)

    @redmodel.transaction(store)
    def bad(tx):
        q.in_tx(tx).push(1)
        q.in_tx(tx).length()

    with pytest.raises(ReadAfterWriteError):
        bad()
    assert q.length() == 0


def test_container_plans_work_with_tx_query_and_queue_and_conflicts_retry(
    store, redis_client
):
    z = SortedSet(store, "z", str)
    z.add("a", 1)
    runs = []

    @redmodel.transaction(store)
    def bump(tx):
        score = tx.query(z.score_plan("a"))
        if not runs:
            redis_client.zadd("z", {"a": 100})   # someone else changes a watched key
        runs.append(score)
        return tx.queue(z.add_plan("a", score + 1))

    pending = bump()
    assert runs == [1.0, 100.0]
    assert pending.value == 0
    assert z.score("a") == 101.0


def test_in_tx_unknown_operation(store):
    with redmodel.transactions.Transaction(store) as tx, pytest.raises(AttributeError):
        Queue(store, "q", int).in_tx(tx).nope()


# ---- properties -------------------------------------------------------------------------

ROUND_TRIP_TYPES = [int, str, float, bool, bytes, decimal.Decimal, uuid.UUID, dt.date,
                    dt.datetime, dt.time, IPv4Address, IPv6Address, Color, Visit,
                    dict[str, list[int]]]


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    if tp is IPv4Address:
        return st.ip_addresses(v=4)
    if tp is IPv6Address:
        return st.ip_addresses(v=6)
    if tp is Visit:
        return st.builds(Visit, st.text(), st.text(), st.datetimes(),
                         st.lists(st.text(), max_size=3).map(tuple))
    return values(tp)


@pytest.mark.parametrize("tp", ROUND_TRIP_TYPES, ids=lambda t: getattr(t, "__name__", str(t)))
def test_any_value_round_trips_through_push_and_pop(store, tp):
    q = Queue(store, "q", tp)

    @settings(max_examples=scaled(40))
    @given(st.lists(_strategy(tp), min_size=1, max_size=5))
    def check(items):
        q.clear()
        q.push(*items)
        assert q.range() == items
        assert [q.pop() for _ in items] == items

    check()


HASHABLE_TYPES = [t for t in ROUND_TRIP_TYPES if t != dict[str, list[int]]]


@pytest.mark.parametrize("tp", HASHABLE_TYPES, ids=lambda t: getattr(t, "__name__", str(t)))
def test_any_value_round_trips_through_add_and_members(store, tp):
    s = Set(store, "s", tp)

    @settings(max_examples=scaled(40))
    @given(st.lists(_strategy(tp), min_size=1, max_size=5))
    def check(items):
        s.clear()
        s.add(*items)
        assert s.members() == set(items)
        assert all(s.contains(i) for i in items)

    check()


def test_sets_work_for_resp2_clients(redis_server, redis_client):
    client: redis.Redis = redis_server.client(protocol=2)
    try:
        s = Set(redmodel.Store(client), "s", int)
        s.add(1, 2)
        assert s.members() == {1, 2}
    finally:
        client.close()


def test_containers_in_one_pipeline(own_store: redmodel.Store, own_client: Any) -> None:
    """Several container operations (and a count) in one round trip per step. (Counted on a
    server of this file's own: the session's server counts every file's commands.)"""
    from ipaddress import IPv4Address  # noqa: PLC0415

    store, redis_client = own_store, own_client
    ips = redmodel.containers.Queue(store, "pipe:ips", IPv4Address)
    seen = redmodel.containers.Set(store, ("pipe", "seen"), IPv4Address)
    visits = redmodel.containers.WindowCounter(store, "pipe:visits", window=60)
    addr = IPv4Address("104.174.118.18")
    # the store's first use of each key checks it in the container registry, once
    store.run_many(ips.exists_plan(), seen.exists_plan(), visits.get_plan(addr))
    before = redis_client.info("stats")["total_commands_processed"]
    pushed, added, counted = store.run_many(
        ips.push_plan(addr, addr), seen.add_plan(addr), visits.incr_plan(addr))
    assert (pushed, added, counted) == (2, 1, 1)
    assert store.run_many(ips.length_plan(), seen.members_plan()) == [2, {addr}]
    after = redis_client.info("stats")["total_commands_processed"]
    assert after - before <= 12, "a handful of commands in two pipelines"
    assert ips.pop() == addr


@redmodel.model(prefix="wcpre")
@attrs.define
class _WcModel:
    n: int
    id: str = redmodel.key_field(generated=False)


def test_window_counter_at_a_model_prefix_is_refused_in_either_order(redis_client):
    """A WindowCounter's keys are <key>:<subject>:<start>, inside a model's prefix equal to
    its key: refused after the model; before it, the counter marks <key>:%schema and the
    model is refused; forget() removes the mark and the model may register."""
    redmodel.Store(redis_client).save(_WcModel(1, id="x"))
    with pytest.raises(redmodel.SchemaConflictError, match="wcpre:%schema"):
        WindowCounter(redmodel.Store(redis_client), "wcpre", window=60).incr("s")
    assert redis_client.keys("wcpre:s:*") == []
    redmodel.Store(redis_client).unregister(_WcModel)
    redis_client.delete("wcpre:x")
    counter = WindowCounter(redmodel.Store(redis_client), "wcpre", window=60)
    assert counter.incr("s") == 1
    with pytest.raises(redmodel.SchemaConflictError, match="wcpre"):
        redmodel.Store(redis_client).save(_WcModel(1, id="y"))
    assert counter.forget() is True
    assert not any(k.startswith(b"container:") for k in redis_client.hgetall("wcpre:%schema"))
    redmodel.Store(redis_client).save(_WcModel(1, id="y"))


_BIG = st.one_of(st.integers(-(2**63), 2**63 - 1),
                 st.integers(2**53 - 3, 2**53 + 3), st.integers(2**63 - 5, 2**63 - 1),
                 st.integers(-(2**63), -(2**63) + 5), st.integers(-(2**53) - 3, -(2**53) + 3))


@settings(max_examples=scaled(60))
@given(amounts=st.lists(_BIG, min_size=1, max_size=3))
def test_window_counter_incr_is_exact_for_every_64_bit_count(store, amounts):
    """Property: incr returns, and get reads, the exact 64-bit count (INCRBY's reply
    passed through a Lua double lost ints beyond 2**53: 2**53 + 1 came back 2**53); a
    sum beyond 64 bits is refused with the count left as it was."""
    visits = WindowCounter(store, "big", window=60, clock=lambda: 1_000_000.0)
    store.client.delete(visits.key_for("s", 1_000_000.0))
    total = 0
    for a in amounts:
        if -(2**63) <= total + a < 2**63:
            total += a
            assert visits.incr("s", a) == total
        else:
            with pytest.raises(redmodel.ServerError):
                visits.incr("s", a)
        assert visits.get("s") == total
