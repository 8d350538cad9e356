"""Exactly-once mode answers a raw transaction command as the command alone does (attack
29AM F3, F4): the wrapped command's reply keeps the client's protocol (RESP3 maps,
doubles, nested pairs; RESP2's forms on a RESP2 client), also when it is replayed from the
write id's record after a lost EXEC reply; a write whose integer replies a Lua double cannot
hold (BITFIELD) is not wrapped."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import FaultProxy, RedisServer
from tests.budget import scaled
from tests.faults import FAST_RESEND

_SETUP = [("ZADD", "z", "1", "a", "2.5", "b", "-3", "c"), ("HSET", "h", "a", "1", "b", "2"),
          ("SADD", "s", "x", "y"), ("RPUSH", "l", "1", "2", "3"), ("SET", "n", "7"),
          ("GEOADD", "g", "13.361389", "38.115556", "p")]

# writes (each wrapped in exactly-once mode) whose replies have every RESP3 shape
_COMMANDS = [
    ("ZPOPMIN", "z", "2"), ("ZPOPMAX", "z", "2"), ("ZPOPMIN", "z"), ("ZINCRBY", "z", "0.2", "a"),
    ("ZADD", "z", "GT", "CH", "9", "a"),
    ("HGETALL", "h"), ("HINCRBYFLOAT", "h", "a", "0.5"), ("HDEL", "h", "b"),
    ("SPOP", "s", "5"), ("SMEMBERS", "s"), ("LPOP", "l", "2"), ("RPOP", "l"),
    ("INCRBYFLOAT", "n", "1.25"), ("GETDEL", "n"), ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("ZSCORE", "z", "nope"), ("LPOS", "l", "9"), ("HMGET", "h", "a", "nope", "b"),
    ("MGET", "n", "nope"), ("SORT", "l", "GET", "nope:*"), ("GETEX", "n", "PX", "100000"),
    ("GEOHASH", "g", "p", "nope"), ("GEODIST", "g", "p", "nope"),
]
# commands of newer servers (Valkey 9, Redis 8) whose arrays hold nulls: drawn where known
_NEWER = [("HGETDEL", "h", "FIELDS", "2", "nope", "a"),
          ("HGETEX", "h", "PX", "100000", "FIELDS", "2", "b", "nope")]
# not wrapped (at most once: a lost EXEC reply of a transaction holding one is an
# OutcomeUnknownError): their replies are drawn without lost replies
_UNWRAPPED = [("ZMSCORE", "z", "a", "nope"), ("GEOPOS", "g", "nope"),
              ("BITFIELD", "bf", "INCRBY", "i64", "0", str(2**62 + 3))]


def _known(admin: redis.Redis, name: str) -> bool:
    try:
        admin.execute_command(name)  # (no arguments: refused either way, nothing done)
    except redis.ResponseError as e:
        return "unknown command" not in str(e).lower()
    return True


def _run(server: RedisServer, protocol: int, commands: list[tuple[str, ...]], once: bool,
         proxy: FaultProxy | None = None) -> list[Any]:
    with server.client() as admin:
        admin.flushall()
        for c in _SETUP:
            admin.execute_command(*c)
    host, port = (proxy.host, proxy.port) if proxy is not None else (server.host, server.port)
    with redmodel.Store(server.client(host=host, port=port, protocol=protocol),
                        exactly_once=once, resend=FAST_RESEND) as store:
        pending: list[Any] = []

        def fn(tx: Any) -> None:
            pending.clear()
            pending.extend(tx.command(*c) for c in commands)

        if proxy is not None:
            proxy.clear()
            proxy.lose_reply("EXEC")
        store.transaction(fn)()
        if proxy is not None:
            assert proxy.armed == 0
    return [sorted(v) if isinstance(v, (set, list)) and c[0] in ("SPOP", "SMEMBERS") else v
            for v, c in zip([p.value for p in pending], commands, strict=True)]


@settings(max_examples=scaled(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(st.sampled_from(_COMMANDS), min_size=1, max_size=5),
       unwrapped=st.lists(st.sampled_from(_UNWRAPPED), max_size=1),
       protocol=st.sampled_from([2, 3]), lose=st.booleans())
def test_exactly_once_answers_what_the_command_alone_answers(
        redis_server: RedisServer, proxy: FaultProxy, commands: list[tuple[str, ...]],
        unwrapped: list[tuple[str, ...]], protocol: int, lose: bool) -> None:
    """Property: a transaction's raw commands answer the same values (redis-py's shapes
    for the client's protocol: maps, doubles, nested pairs, nulls inside arrays) with
    exactly-once mode on as off, and with the EXEC reply lost (replayed from the write
    ids' records) as not."""
    if not lose:
        commands = [*commands, *unwrapped]
    with redis_server.client() as admin:
        known = [c for c in _NEWER if _known(admin, c[0])]
    commands = [*commands, *known[: len(commands) % 3]]
    plain = _run(redis_server, protocol, commands, once=False)
    once = _run(redis_server, protocol, commands, once=True,
                proxy=proxy if lose else None)
    assert once == plain, (commands, protocol, lose)


@pytest.mark.parametrize("name", ["BITFIELD", "ZMSCORE", "GEOPOS"])
def test_a_write_whose_integers_a_double_cannot_hold_is_not_wrapped(name: str) -> None:
    from redmodel._transport._wire import wrap  # noqa: PLC0415

    assert wrap((name, "k", "INCRBY", "i64", "0", "1"), "once:k", 1000) is None
    assert wrap(("INCRBY", "k", "1"), "once:k", 1000) is not None
