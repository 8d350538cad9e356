"""Helpers for the index tests: a dump of the whole keyspace, flushing every primary, and
planting a key of the wrong type."""

from __future__ import annotations

from typing import Any

import redis.cluster


def primaries(client: Any) -> list[Any]:
    return list(client.get_primaries()) if hasattr(client, "get_primaries") else [None]


def flush(client: Any) -> None:
    if hasattr(client, "get_primaries"):
        client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    else:
        client.flushall()


def all_keys(client: Any) -> list[bytes]:
    """Every key but the model registry's (``<prefix>:%schema``, written by a store's first
    use of a model, not by the writes these helpers compare)."""
    out: list[bytes] = []
    for node in primaries(client):
        cursor = 0
        while True:
            if node is None:
                cursor, keys = client.execute_command("SCAN", cursor, "COUNT", 1000)
            else:
                cursor, keys = client.execute_command("SCAN", cursor, "COUNT", 1000,
                                                      target_nodes=node)
            if isinstance(cursor, dict):  # a cluster client answers {node: cursor}
                cursor = next(iter(cursor.values()))
            out.extend(k for k in keys if not k.endswith(b":%schema"))
            if not int(cursor):
                break
    return sorted(set(out))


def dump(client: Any) -> dict[bytes, tuple[str, Any, bool]]:
    """Every key: (type, value, has a TTL). Values are compared exactly (scores as the
    server's text)."""
    out: dict[bytes, tuple[str, Any, bool]] = {}
    for key in all_keys(client):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        value: Any
        if kind == "hash":
            value = sorted(client.hgetall(key).items())
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            raw = client.execute_command("ZRANGE", key, 0, -1, "WITHSCORES")
            value = sorted((m, repr(s)) for m, s in (raw if raw and isinstance(raw[0], (list,
                           tuple)) else zip(raw[::2], raw[1::2], strict=True)))
        elif kind == "string":
            value = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            value = kind
        out[key] = (kind, value, client.pttl(key) > 0)
    return out


def plant(client: Any, key: str, kind: str) -> None:
    """A key of another type than redmodel would use there."""
    client.delete(key)
    if kind == "string":
        client.set(key, "planted")
    elif kind == "set":
        client.sadd(key, "planted")
    elif kind == "list":
        client.rpush(key, "planted")
    elif kind == "hash":
        client.hset(key, "planted", "1")
    else:
        client.zadd(key, {"planted": 1})
