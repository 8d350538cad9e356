"""Looking for plaintext where it must not be: every key name and value on a server (all
types, every field, member and score), in the forms a plaintext could take there."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from redmodel._models._keys import escape


def _nodes(client: Any) -> list[Any]:
    if hasattr(client, "get_primaries"):
        return list(client.get_primaries())
    return [None]


def dump(client: Any) -> bytes:
    """Every key name and everything stored under it, on every primary of a cluster."""
    out: list[bytes] = []
    for node in _nodes(client):
        target = {} if node is None else {"target_nodes": node}
        cursor = 0
        while True:
            cursor, keys = client.execute_command("SCAN", cursor, "COUNT", 500, **target)
            if isinstance(cursor, dict):
                cursor = next(iter(cursor.values()))
            for key in keys:
                out.append(key)
                out.extend(_values(client, key))
            if int(cursor) == 0:
                break
    return b"\n".join(out)


def _values(client: Any, key: bytes) -> Iterable[bytes]:
    kind = client.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        return [client.get(key) or b""]
    if kind == "hash":
        return [x for kv in client.hgetall(key).items() for x in kv]
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [x for m, s in client.zrange(key, 0, -1, withscores=True)
                for x in (m, repr(s).encode())]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "stream":
        return [repr(client.xrange(key)).encode()]
    raise AssertionError(f"unexpected type {kind} at {key!r}")


def forms(secret: str) -> set[bytes]:
    """The ways ``secret`` could appear in stored bytes or text: UTF-8, JSON-escaped,
    escaped as a key part."""
    return {secret.encode(), json.dumps(secret)[1:-1].encode(),
            escape(secret).encode(), json.dumps(secret, ensure_ascii=False)[1:-1].encode()}


def leaked(secrets: Iterable[str], haystack: bytes | str) -> list[str]:
    """The secrets found in ``haystack`` in any of their :func:`forms`."""
    data = haystack.encode("utf-8", "surrogateescape") if isinstance(haystack, str) \
        else haystack
    return [s for s in secrets if any(f in data for f in forms(s))]
