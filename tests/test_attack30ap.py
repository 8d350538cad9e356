"""Attack 30AP (containers and queues): one test per finding, each asserting what the
docs promise, so each fails until the library is fixed. Notes:
/work/notes/s30/ATK-AP-FINDINGS.md."""

from __future__ import annotations

import asyncio
import decimal

import pytest

import redmodel
from redmodel.containers import Queue, Set, SortedSet


def test_f1_add_many_with_a_malformed_pair_is_a_validation_error_naming_the_key(store):
    """docs/failures.md: "The other kinds of argument are checked the same way, with the
    same error" (ValidationError); docs/containers.md: ``add_many(scores, ...)`` takes "a
    mapping or pairs". A pair of three (or a non-pair) escapes as a bare ValueError /
    TypeError that names no key."""
    hits = SortedSet(store, "hits", str)
    for bad in ([("a", 1.0, 2)], [5], [("a",)]):
        with pytest.raises(redmodel.ValidationError) as caught:
            hits.add_many(bad)
        assert "hits" in str(caught.value)
    assert store.client.exists("hits") == 0


def _set_then_queue(store, client) -> Queue[int]:
    """The key "k" held a Set, whose pop set a member aside (so k:{k}:%rejected is a set),
    then clear() -- "clear() the key to let it hold something else" -- and a Queue of int."""
    s = Set(store, "k", int)
    client.sadd("k", "old-bad")
    with pytest.raises(redmodel.DecodeError):
        s.pop()
    s.clear()                               # the emptied key is gone: False
    client.rpush("k", "bad", "7")           # another program pushed a value that is no int
    return Queue(store, "k", int)


def test_f2_consume_never_destroys_an_item_it_cannot_decode(store, redis_client):
    """docs/containers.md: "**`consume()` is at least once.** ... An item is therefore always
    either in the queue or in exactly one in-flight list"; the %rejected list holds "values a
    consumer or a pop could not decode (it set them aside here and raised DecodeError, so they
    cannot stop every consumer in turn, and are not lost)"; "`clear()` the key to let it hold
    something else". consume_reject.lua runs LREM (the in-flight copy) before RPUSH to
    %rejected; when the RPUSH fails (WRONGTYPE: the %rejected set an earlier Set left, which
    clear() keeps) the item is gone from everywhere."""
    q = _set_then_queue(store, redis_client)
    try:
        for _ in q.consume(idle_timeout=0.3, poll=0.1, name="w1"):
            pass
    except (redmodel.DecodeError, redmodel.ServerError):
        pass                                 # an error is fine; losing "bad" is not
    everywhere = redis_client.lrange("k", 0, -1)
    for key in redis_client.scan_iter(match="k:*%inflight*"):
        everywhere += redis_client.lrange(key, 0, -1)
    rejected = redis_client.type("k:{k}:%rejected")
    if rejected == b"list":
        everywhere += redis_client.lrange("k:{k}:%rejected", 0, -1)
    assert b"bad" in everywhere, "consume() destroyed an item (at least once promised)"


def test_f2_async_consume_never_destroys_an_item_it_cannot_decode(redis_server, redis_client):
    """As test_f2, through an AsyncStore (docs/containers.md "With an AsyncStore": the
    same commands, the same results)."""
    _set_then_queue(redmodel.Store(redis_client), redis_client)

    async def run() -> None:
        astore = redmodel.AsyncStore.from_url(redis_server.url)
        try:
            q = Queue(astore, "k", int)
            async with q.consume(idle_timeout=0.3, poll=0.1, name="a1") as consumer:
                async for _ in consumer:
                    pass
        except (redmodel.DecodeError, redmodel.ServerError):
            pass
        finally:
            await astore.aclose()

    asyncio.run(run())
    everywhere = redis_client.lrange("k", 0, -1)
    for key in redis_client.scan_iter(match="k:*%inflight*"):
        everywhere += redis_client.lrange(key, 0, -1)
    # (fix 30C: clear() now deletes the key's %rejected too, so the consumer sets "bad"
    # aside in a %rejected list, as the sync test above accepts: docs/containers.md, the
    # keys: %rejected holds "values a consumer or a pop could not decode (it set them aside
    # here and raised DecodeError, ... and are not lost)")
    if redis_client.type("k:{k}:%rejected") == b"list":
        everywhere += redis_client.lrange("k:{k}:%rejected", 0, -1)
    assert b"bad" in everywhere, "the async consume() destroyed an item"


def test_f3_set_pop_never_destroys_a_member_it_cannot_decode(store, redis_client):
    """docs/containers.md (Members): "A pop never destroys such a member: ... `Set.pop` in the
    set's `%rejected` set"; (the container registry) "`clear()` the key to let it hold
    something else". After a Queue at "k" set a value aside (k:{k}:%rejected is a list) and
    was cleared, a Set at "k" SPOPs an undecodable member, its SADD to %rejected fails
    WRONGTYPE, and the member is gone (the sorted set's script-based pop keeps it)."""
    q = Queue(store, "k", int)
    redis_client.rpush("k", "old-bad")
    with pytest.raises(redmodel.DecodeError):
        q.pop()
    q.clear()
    s = Set(store, "k", int)
    redis_client.sadd("k", "bad")
    with pytest.raises((redmodel.DecodeError, redmodel.ServerError)):
        s.pop()
    kept = redis_client.smembers("k")
    if redis_client.type("k:{k}:%rejected") == b"set":
        kept |= redis_client.smembers("k:{k}:%rejected")
    assert b"bad" in kept, "Set.pop destroyed a member it could not decode"


def test_f4_a_set_of_decimal_never_raises_a_bare_typeerror(store):
    """docs/containers.md: "A value of the wrong type raises `ValidationError` (naming the
    key) before anything is sent"; `members()` returns a `set`. `Decimal("sNaN")` is accepted
    by `add` (SADD sNaN), after which `members()`, `union()`, ... raise a bare TypeError
    ("Cannot hash a signaling NaN value") that is no redmodel error and names no key: the
    add should have been refused, or the read should fail with a redmodel error."""
    s = Set(store, "prices", decimal.Decimal)
    try:
        s.add(decimal.Decimal("sNaN"))
    except redmodel.ValidationError as e:
        assert "prices" in str(e)
        return                                  # refused before anything was sent: fine
    for read in (s.members, s.union):
        try:
            read()
        except redmodel.RedmodelError as e:
            assert "prices" in str(e)
        except TypeError as e:
            pytest.fail(f"{read.__name__}() raised a bare TypeError: {e}")
