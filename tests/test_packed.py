"""The store's packed pipelines (hiredis): same results as redis-py's pipeline, scripts
loaded in the same buffer, recovery after the server forgets its scripts, errors raised."""

from __future__ import annotations

import pytest
import redis
from redis._parsers import _RESP3Parser
from redis.connection import ConnectionPool

import redmodel
from tests.models import AllOptional, Hat


def hats(n: int) -> list[Hat]:
    return [Hat(color=f"c{i}", price=float(i), style="s", quantity=i) for i in range(n)]


def test_bulk_calls_survive_a_script_flush(redis_client: redis.Redis) -> None:
    store = redmodel.Store(redis_client)
    first = [AllOptional(a=str(i)) for i in range(5)]  # None fields: a script per save
    store.save_many(first)
    redis_client.script_flush()
    second = [AllOptional(b=i) for i in range(5)]
    assert store.save_many(second) == 5
    assert store.get_many(AllOptional, [o.id for o in first + second]) == first + second


def test_bulk_errors_are_raised(redis_client: redis.Redis) -> None:
    store = redmodel.Store(redis_client)
    many = hats(3)
    redis_client.set(f"hat:{many[1].id}", "a string, not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        store.get_many(Hat, [h.id for h in many])


def test_a_pure_python_parser_uses_the_redis_py_pipeline(redis_server: object) -> None:
    pool = ConnectionPool.from_url(redis_server.url, parser_class=_RESP3Parser,  # type: ignore[attr-defined]
                                   protocol=3)
    client = redis.Redis(connection_pool=pool)
    store = redmodel.Store(client)
    many = hats(10)
    assert store.save_many(many) == 10
    assert store.get_many(Hat, [h.id for h in many]) == many
    client.flushall()
    client.close()


def test_bulk_calls_survive_the_server_closing_idle_connections(
        redis_client: redis.Redis, redis_url: str) -> None:
    store = redmodel.Store(redis_client)
    many = hats(5)
    store.save_many(many)
    killer = redis.Redis.from_url(redis_url)
    killed = killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    killer.close()
    assert killed >= 1, "the store's pooled connection was closed by the server"
    assert store.get_many(Hat, [h.id for h in many]) == many
