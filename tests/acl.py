"""The smallest ACL rule each redmodel feature needs: the one place to edit a rule.

tests/test_acl.py runs each feature as a user created with exactly its rule (plus the key
patterns of the scenario's own models and containers) and asserts that it works with no
command or key refused, and that taking away any one command makes something refused.
docs/deploy.md shows the same rules; test_acl checks that they match these.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Rule:
    commands: tuple[str, ...]  # "+cmd" each; "cmd|sub" for one subcommand
    keys: tuple[str, ...] = ()  # key patterns redmodel itself writes, beyond the app's own
    includes: tuple[str, ...] = ()  # other features this one is built on

    def all_commands(self) -> tuple[str, ...]:
        inherited = [c for name in self.includes for c in RULES[name].all_commands()]
        return tuple(dict.fromkeys([*inherited, *self.commands]))

    def all_keys(self) -> tuple[str, ...]:
        inherited = [k for name in self.includes for k in RULES[name].all_keys()]
        return tuple(dict.fromkeys([*inherited, *self.keys]))


RULES: dict[str, Rule] = {
    # save / get / update / incr / incr_fields / delete / expiry / scan, and the bulk forms;
    # the writes are Lua scripts (SCRIPT LOAD the first time a server sees one, and again
    # after NOSCRIPT; then EVALSHA), and ACLs are checked on the commands inside scripts too.
    "hash models": Rule(commands=(
        "hset", "hgetall", "hget", "hdel", "hincrby", "exists", "del",
        "pexpire", "pttl", "persist", "scan", "evalsha", "script|load",
        # the fence before a resend: CLIENT KILL ID of the connection whose reply was lost
        "client|kill",
    )),
    # equality entries are sets, range entries and the all-ids index sorted sets; scripts
    # read the server clock (TIME) to leave expired objects out, mirror each object's
    # expiry (PEXPIRETIME) in the expiry set, and check the TYPE of
    # every key before their first write; reindex keeps its progress in a string (GET,
    # SET) and walks the index keys with SSCAN/ZSCAN/HSCAN.
    "indexes and queries": Rule(includes=("hash models",), commands=(
        "sadd", "srem", "smembers", "sismember", "scard", "zadd", "zrem", "zcard", "zscore",
        "zrange", "zrangebyscore", "time", "type", "get", "set", "hscan", "zscan",
        "sscan", "zcount", "zmscore", "smismember", "sintercard", "pexpiretime",
        # the all-ids pages (ids_lib.lua): an id's page (ZREVRANGEBYLEX of the directory),
        # the count (INCRBY); reindex's conversion reads an old SET with SRANDMEMBER
        "zrevrangebylex", "incrby", "srandmember", "hmget",
    )),
    "transactions": Rule(includes=("hash models",), commands=(
        "watch", "unwatch", "multi", "exec",
    )),
    # Queue, Set, SortedSet and WindowCounter (its increment and expiry in one script);
    # reliable consume() takes, acknowledges and recovers items in Lua scripts (LMOVE into
    # an in-flight list, heartbeats in a sorted set) and waits on an empty queue with a
    # BLMOVE of the queue onto itself (a peek that moves nothing).
    "containers": Rule(commands=(
        "rpush", "lpush", "lpop", "rpop", "blpop", "brpop", "lrange", "llen", "ltrim",
        "sadd", "srem", "smembers", "sismember", "scard", "spop", "sunion", "sinter",
        "sdiff", "zadd", "zincrby", "zrem", "zscore", "zrank", "zrevrank", "zcard", "zrange",
        "zpopmin", "zpopmax", "get", "incrby", "exists", "del", "pexpire",
        "evalsha", "script|load", "lmove", "blmove", "lrem",
        "zrangebyscore", "hset", "hget", "hdel", "time",
        "client|kill",  # the fence before a capped trim (or an expiry) is resent
        "hgetall",  # the container registry's record of each key, read at first use
    )),
    # exactly-once mode on hash models: each write that must not run twice carries a write
    # id whose record its script reads and writes (GET, SET) under the store's own prefix
    # (ResendPolicy.write_id_prefix, here the user's name), deleted with the next call
    # (DEL); before the first one the store reads the server's maxmemory-policy (INFO).
    "exactly-once": Rule(includes=("hash models",), commands=("get", "set", "info"),
                         keys=("redmodel:once:app:*",)),
}


def setuser_args(user: str, password: str, feature: str, keys: tuple[str, ...],
                 without: str | None = None) -> list[str]:
    """``ACL SETUSER`` arguments: the feature's rule for ``keys`` (minus one command)."""
    rule = RULES[feature]
    return [
        "ACL", "SETUSER", user, "reset", "on", f">{password}",
        *(f"~{k}" for k in (*keys, *rule.all_keys())), "resetchannels", "-@all",
        *(f"+{c}" for c in rule.all_commands() if c != without),
    ]
