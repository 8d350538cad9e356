"""The single-command pops (``Set.pop``, ``Queue.pop``/``pop_right``, ``pop_blocking``
either end, the at-most-once consumer's BLPOP) set a member they cannot decode aside in a
second command; when the server refuses that set-aside (``%rejected`` holds another type:
another program wrote it), the member is put back where the pop took it and
``ServerError`` names both keys. Before, the member was gone (attack 30AP F3, the part fix
30C left open: "A pop never destroys such a member", docs/containers.md).

Property: whatever the container kind, the pop's end, the wrong type at ``%rejected`` and
the good members around the bad one, popping until the error leaves every member that was
not returned in the container, the bad one back at the end it was popped from, and
``%rejected`` untouched. Sync and async."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.containers import Queue, Set, pop_blocking
from tests.budget import scaled

KEY = "pk"
REJECTED = "pk:{pk}:%rejected"
BAD = b"bad"  # no int's text: does not decode as int


@pytest.fixture
def shell(one_server_store: Any) -> Any:
    return one_server_store


def _plant_rejected(client: Any, kind: str) -> Any:
    {"string": lambda: client.set(REJECTED, "other program"),
     "hash": lambda: client.hset(REJECTED, "f", "v"),
     "zset": lambda: client.zadd(REJECTED, {"m": 1}),
     "set": lambda: client.sadd(REJECTED, "m"),
     "list": lambda: client.rpush(REJECTED, "m")}[kind]()
    return client.dump(REJECTED)


def _pop(shell: Any, how: str) -> Any:
    if how == "set":
        return Set(shell, KEY, int).pop()
    queue = Queue(shell, KEY, int)
    if how == "left":
        return queue.pop()
    if how == "right":
        return queue.pop_right()
    got = pop_blocking(queue, timeout=0.1, right=how == "blocking-right")
    return None if got is None else got[1]


@settings(max_examples=scaled(60))
@given(how=st.sampled_from(["set", "left", "right", "blocking-left", "blocking-right"]),
       data=st.data(),
       before=st.lists(st.integers(-10**20, 10**20), max_size=4, unique=True),
       after=st.lists(st.integers(-10**20, 10**20), max_size=4, unique=True))
def test_a_refused_set_aside_puts_the_member_back_and_names_both_keys(
        shell: Any, how: str, data: st.DataObject, before: list[int], after: list[int]
) -> None:
    client = shell.client
    client.flushall()
    wrong = data.draw(st.sampled_from(
        ["string", "hash", "zset", "list"] if how == "set" else ["string", "hash", "zset", "set"]))
    dumped = _plant_rejected(client, wrong)
    good = list(dict.fromkeys([*before, *after]))  # a set's members, once each
    if how == "set":
        client.sadd(KEY, BAD, *[str(n) for n in good])
    else:
        client.rpush(KEY, *[str(n) for n in before], BAD, *[str(n) for n in after])
    stored_before = (sorted(client.smembers(KEY)) if how == "set"
                     else client.lrange(KEY, 0, -1))
    popped: list[int] = []
    with pytest.raises(redmodel.ServerError) as caught:
        for _ in range(len(before) + len(after) + 2):
            value = _pop(shell, how)
            assert value is not None, "the bad member was never met"
            popped.append(value)
    error = caught.value
    assert KEY in error.keys and REJECTED in error.keys, error.keys
    assert "put back" in str(error) and REJECTED in str(error)
    assert client.dump(REJECTED) == dumped  # untouched
    if how == "set":
        assert BAD in client.smembers(KEY)
        assert sorted(client.smembers(KEY) | {str(n).encode() for n in popped}) \
            == stored_before
    else:
        # every good member popped came off the end the pop takes; the bad one is back there
        left = how in ("left", "blocking-left")
        rest = stored_before[len(popped):] if left else stored_before[:len(stored_before)
                                                                       - len(popped)]
        assert client.lrange(KEY, 0, -1) == rest
        assert (rest[0] if left else rest[-1]) == BAD


def test_the_at_most_once_consumer_puts_back_what_it_cannot_set_aside(
        redis_client: Any) -> None:
    store = redmodel.Store(redis_client)
    redis_client.set(REJECTED, "other program")
    redis_client.rpush(KEY, BAD, "7")
    consumer = Queue(store, KEY, int).consume(reliable=False, idle_timeout=0.2,
                                              signals=())
    with pytest.raises(redmodel.ServerError) as caught:
        for _ in consumer:
            pass
    assert KEY in caught.value.keys and REJECTED in caught.value.keys
    assert redis_client.lrange(KEY, 0, -1) == [BAD, b"7"]
    assert redis_client.get(REJECTED) == b"other program"
