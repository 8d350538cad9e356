"""Helpers for the index tests: a dump of the whole keyspace, flushing every primary,
planting a key of the wrong type, and the keyspace the live objects call for."""

from __future__ import annotations

from typing import Any

import redis.cluster

from redmodel._indexes._specs import entry_key


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


IDS_MAX = 64  # redmodel/lua/ids_lib.lua: a page holds at most this many ids


def all_ids(client: Any, root: str | bytes, d: str | bytes = b":") -> list[bytes]:
    """The ids of one bucket's all-ids index (``root`` its index root, ``hat:{3}:%idx:``),
    read from its pages (redmodel/lua/ids_lib.lua: the directory ``root ids``, the page of
    bound ``b`` at ``root ids d b``, the count ``root idn``), in id order. On the way it
    asserts the format: the directory's scores are 0 and its first bound is ''; every page
    holds only ids between its bound and the next, at most IDS_MAX, and none is empty but
    the first; the count is the number of ids; no page key exists outside the directory."""
    root = root.encode() if isinstance(root, str) else root
    d = d.encode() if isinstance(d, str) else d
    directory = root + b"ids"
    raw = client.execute_command("ZRANGE", directory, 0, -1, "WITHSCORES")
    pairs = (raw if raw and isinstance(raw[0], (list, tuple))
             else list(zip(raw[::2], raw[1::2], strict=True)))
    assert all(float(s) == 0 for _, s in pairs), pairs
    bounds = [b for b, _ in pairs]
    count = client.get(root + b"idn")
    pages = {directory + d + b for b in bounds}
    glob = bytes(c for b in directory + d for c in (b"\\" + bytes([b]) if bytes([b]) in
                                                    b"*?[]\\" else bytes([b])))
    stray = {k for k in client.scan_iter(match=glob + b"*", count=1000)} - pages
    assert not stray, f"page keys not in the directory: {sorted(stray)[:5]}"
    if not bounds:
        assert int(count or 0) == 0, count
        return []
    assert bounds[0] == b"", bounds[:3]
    out: list[bytes] = []
    for i, b in enumerate(bounds):
        members = client.execute_command("ZRANGE", directory + d + b, 0, -1, "WITHSCORES")
        got = (members if members and isinstance(members[0], (list, tuple))
               else list(zip(members[::2], members[1::2], strict=True)))
        ids = [m for m, _ in got]
        assert all(float(s) == 0 for _, s in got)
        assert len(ids) <= IDS_MAX, (b, len(ids))
        assert ids or i == 0, f"page {b!r} is empty"
        assert all(m >= b for m in ids), b
        if i + 1 < len(bounds):
            assert all(m < bounds[i + 1] for m in ids), b
        out.extend(ids)
    assert out == sorted(out)
    assert int(count or 0) == len(out), (count, len(out))
    return out


def expected_keyspace(spec: Any, live: dict[str, Any], ttl: set[str], *,
                      skip_unindexable: bool = False) -> dict[bytes, Any]:
    """The oracle of the index property tests: the index keys (and records) the ``live``
    objects (id -> object) of ``spec``'s model call for, computed from their entry lines
    alone, each as ``(type, sorted members)``: an ``e`` line is a set member, an ``r`` line
    a score, a ``u`` line a hash field (a bucketed model's unique value: a claim in its
    value's own bucket); every object is in ``ids`` (its all-ids pages, as one sorted set of
    score 0), and only those in ``ttl`` keep a record (``rec``) and an ``exp`` entry (score
    -1: an expiry time). ``skip_unindexable``: a value that cannot be indexed has no entry
    (else it raises: the test draws none)."""
    indexes = spec.indexes
    assert indexes is not None
    sets: dict[str, set[bytes]] = {}
    zsets: dict[str, dict[bytes, float]] = {}
    hashes: dict[str, dict[bytes, bytes]] = {}
    for i, o in live.items():
        tag = spec.tag_of(spec.id_text(i))
        root = spec.index_root(tag)
        eid = spec.key_for(i)[len(spec.object_prefix(tag)):].encode()
        lines = indexes.entries({n: getattr(o, n) for n in indexes.fields},
                                problems=[] if skip_unindexable else None)
        if i in ttl:  # the sweep needs the entries after the hash is gone
            hashes.setdefault(root + "rec", {})[eid] = "\n".join(sorted(lines)).encode()
            zsets.setdefault(root + "exp", {})[eid] = -1.0
        zsets.setdefault(root + "ids", {})[eid] = 0.0
        for line in lines:
            kind, _, text = line.split("\x1f", 2)
            if kind == "u" and spec.claims:  # a claim, in its value's own bucket
                _, name, text = line.split("\x1f", 2)
                hashes.setdefault(spec.claim_key(name, text), {})[text.encode()] = eid
                continue
            key = entry_key(root, ":", line, False)
            assert key is not None
            if kind == "e":
                sets.setdefault(key, set()).add(eid)
            elif kind == "r":
                zsets.setdefault(key, {})[eid] = float(text)
            else:
                hashes.setdefault(key, {})[text.encode()] = eid
    out: dict[bytes, Any] = {}
    for k, members in sets.items():
        out[k.encode()] = ("set", sorted(members))
    for k, scores in zsets.items():
        out[k.encode()] = ("zset", sorted(scores.items()))
    for k, fields in hashes.items():
        out[k.encode()] = ("hash", sorted(fields.items()))
    return out
