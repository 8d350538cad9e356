"""Fix 29AJ-A: a command the ACL refuses inside a script never half-writes.

Redis does not roll back a script whose redis.call the ACL refuses after a write, so every
redmodel script that writes more than once asks the ACL (redis.acl_check_cmd) about each
(command, key) its writes may call before the first one. The property drawn here: for each
feature's documented rule (tests/acl.py; flat and blob as docs/deploy.md adds them), take
away each single command in turn and run the feature's writes on existing and new objects
as that user: each call either succeeds or raises a redis-py error (a redmodel one, naming
the key) with every key of the model exactly as it was (type, value, whether it expires);
indexes stay in step (verify() == []); save_many's .written / .not_written are exact.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.testing import RedisServer
from tests.acl import RULES, setuser_args


@redmodel.model(prefix="fxhat", ttl=3600)
@attrs.define
class FxHat:
    color: str
    price: float = 0.0
    quantity: int = 0
    note: str | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="fxihat")
@attrs.define
class FxIHat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    sku: str = redmodel.field(unique=True)
    quantity: int = redmodel.field(default=0, index="range")
    note: str | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="fxthat", ttl=3600)
@attrs.define
class FxTHat:  # indexed, with an expiry: the expiry set and the records
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    id: str = redmodel.key_field()


@redmodel.model(prefix="fxflat", layout="flat")
@attrs.define
class FxFlat:
    color: str
    tags: list[str] = attrs.field(factory=list)
    count: int = 0
    id: str = redmodel.key_field()


@redmodel.model(prefix="fxblob", layout="blob")
@attrs.define
class FxBlob:
    color: str
    count: int = 0
    id: str = redmodel.key_field()


PATTERNS = ("fx*",)
CONSUMED: list[bytes] = []  # the items the consume op was handed (and acknowledged)
# the flat and blob layouts add commands to the hash models' rule (docs/deploy.md)
EXTRA = {"flat": ("get", "mget", "set", "mset", "incrby"), "blob": ("get", "set")}


def _commands(feature: str) -> tuple[str, ...]:
    base = RULES["hash models" if feature in EXTRA else feature].all_commands()
    return tuple(dict.fromkeys([*base, *EXTRA.get(feature, ())]))


# ---- the state of every key of the scenario, raw ----------------------------------------

def snapshot(admin: redis.Redis) -> dict[bytes, Any]:
    """Every key's (type, value, whether it expires), read in two pipelined round trips
    (each key's type; then its value, as its type reads it, and its PTTL). A key gone
    between the two is left out, as a scan after it went would."""
    keys = list(admin.scan_iter(b"fx*"))
    pipe = admin.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = pipe.execute()
    pipe = admin.pipeline(transaction=False)
    for key, kind in zip(keys, kinds, strict=True):
        if kind == b"hash":
            pipe.hgetall(key)
        elif kind == b"set":
            pipe.smembers(key)
        elif kind == b"zset":
            pipe.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            pipe.lrange(key, 0, -1)
        else:
            pipe.get(key) if kind == b"string" else pipe.exists(key)
        pipe.pttl(key)
    replies = pipe.execute()
    out: dict[bytes, Any] = {}
    for i, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
        value, pttl = replies[2 * i], replies[2 * i + 1]
        if pttl == -2:
            continue
        if kind == b"set":
            value = sorted(value)
        elif kind not in (b"hash", b"zset", b"list", b"string"):
            value = None
        out[key] = (kind, value, pttl > 0)
    return out


def expiring(admin: redis.Redis, within_ms: int = 5000) -> set[bytes]:
    """The keys of :func:`snapshot` that expire within ``within_ms``: a window counter's
    bucket ends at its window's end, and one that ends between two snapshots is the
    server's doing, not the call's."""
    keys = list(admin.scan_iter(b"fx*"))
    pipe = admin.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    return {k for k, ms in zip(keys, pipe.execute(), strict=True) if 0 < ms <= within_ms}


def changed_keys(before: dict[bytes, Any], after: dict[bytes, Any],
                 expired: set[bytes]) -> list[bytes]:
    """The keys whose state differs, except those of ``expired`` gone since."""
    return sorted(k for k in {*before, *after} if before.get(k) != after.get(k)
                  and not (k in expired and k not in after))


def _items_of(state: dict[bytes, Any]) -> list[bytes]:
    """The queue's items, waiting or in flight."""
    return sorted(v for k, (kind, value, _) in state.items()
                  if kind == b"list" and k.startswith(b"fxq:jobs") and b"rejected" not in k
                  for v in value)


def _items(admin: redis.Redis) -> list[bytes]:
    return _items_of(snapshot(admin))


def _names_a_key(error: BaseException, keys: tuple[str, ...]) -> bool:
    text = str(error)
    return any(k in text for k in keys) or "fx" in text


# ---- the writes of each feature, as the user ----------------------------------------------

def _hash_ops(user: redmodel.Store) -> list[tuple[str, Callable[[], Any], tuple[str, ...]]]:
    return [
        ("save over", lambda: user.save(FxHat("white", 2.0, id="h1")), ("fxhat:h1",)),
        ("save new", lambda: user.save(FxHat("green", 3.0, note="n", id="h9")), ("fxhat:h9",)),
        ("update", lambda: user.update(FxHat, "h1", color="red", note=None), ("fxhat:h1",)),
        ("incr", lambda: user.incr(FxHat, "h1", "quantity", 2), ("fxhat:h1",)),
        ("incr_fields", lambda: user.incr_fields(FxHat, "h1", {"quantity": 1, "price": 0.5}),
         ("fxhat:h1",)),
        ("expire", lambda: user.expire(FxHat, "h1", 100), ("fxhat:h1",)),
        ("persist", lambda: user.persist(FxHat, "h1"), ("fxhat:h1",)),
        ("delete", lambda: user.delete(FxHat, "h2"), ("fxhat:h2",)),
    ]


def _index_ops(user: redmodel.Store) -> list[tuple[str, Callable[[], Any], tuple[str, ...]]]:
    return [
        ("save over", lambda: user.save(FxIHat("white", 2.0, "S1", note=None, id="i1")),
         ("fxihat:i1",)),
        ("save new", lambda: user.save(FxIHat("green", 3.0, "S9", id="i9")), ("fxihat:i9",)),
        ("update", lambda: user.update(FxIHat, "i1", color="red", price=7.0), ("fxihat:i1",)),
        ("incr", lambda: user.incr(FxIHat, "i1", "quantity", 2), ("fxihat:i1",)),
        ("delete", lambda: user.delete(FxIHat, "i2"), ("fxihat:i2",)),
        ("save ttl over", lambda: user.save(FxTHat("blue", 4.0, id="t1")), ("fxthat:t1",)),
        ("save ttl new", lambda: user.save(FxTHat("blue", 5.0, id="t9")), ("fxthat:t9",)),
        ("expire", lambda: user.expire(FxTHat, "t1", 100), ("fxthat:t1",)),
        ("persist", lambda: user.persist(FxTHat, "t1"), ("fxthat:t1",)),
        ("delete ttl", lambda: user.delete(FxTHat, "t2"), ("fxthat:t2",)),
    ]


def _flat_ops(user: redmodel.Store) -> list[tuple[str, Callable[[], Any], tuple[str, ...]]]:
    return [
        ("save over", lambda: user.save(FxFlat("white", ["x"], id="f1")), ("fxflat:f1",)),
        ("save new", lambda: user.save(FxFlat("green", ["a", "b"], id="f9"), ttl=60),
         ("fxflat:f9",)),
        ("incr", lambda: user.incr(FxFlat, "f1", "count", 2), ("fxflat:f1",)),
        ("expire", lambda: user.expire(FxFlat, "f1", 100), ("fxflat:f1",)),
        ("delete", lambda: user.delete(FxFlat, "f2"), ("fxflat:f2",)),
        ("blob save", lambda: user.save(FxBlob("white", id="b1"), ttl=60), ("fxblob:b1",)),
        ("blob delete", lambda: user.delete(FxBlob, "b2"), ("fxblob:b2",)),
    ]


def _container_ops(user: redmodel.Store) -> list[tuple[str, Callable[[], Any], tuple[str, ...]]]:
    queue = redmodel.containers.Queue(user, ("fxq", "jobs"), str)
    scores = redmodel.containers.SortedSet(user, ("fxq", "scores"), str)
    hits = redmodel.containers.WindowCounter(user, ("fxq", "hits"), window=60)

    def consume() -> None:
        consumer = queue.consume(name="w1", max_items=2, idle_timeout=0.02, poll=0.01,
                                 signals=())
        for item in consumer:
            CONSUMED.append(item.encode())
            consumer.ack()
        consumer.stop()

    return [
        ("queue push", lambda: queue.push("a", "b"), ("fxq:jobs",)),
        ("consume", consume, ("fxq:jobs",)),
        ("recover", queue.recover, ("fxq:jobs",)),
        ("pop_min", scores.pop_min, ("fxq:scores",)),
        ("window incr", lambda: hits.incr("1.2.3.4"), ("fxq:hits",)),
    ]


def _many(feature: str) -> list[Any]:
    """A save_many's objects: new ones and one over an existing object."""
    made: dict[str, list[Any]] = {
        "hash models": [FxHat("m", 1.0, id="m1"), FxHat("m", 2.0, id="h1")],
        "exactly-once": [FxHat("m", 1.0, id="m1")],
        "indexes and queries": [FxIHat("m", 1.0, "M1", id="m1"),
                                FxIHat("m", 2.0, "M2", id="i1"), FxTHat("m", 3.0, id="m3")],
        "flat": [FxFlat("m", ["z"], id="m1"), FxFlat("m", [], id="f1")],
    }
    return made.get(feature, [])


def _setup(admin_store: redmodel.Store, feature: str) -> None:
    if feature in ("hash models", "exactly-once"):
        admin_store.save(FxHat("black", 1.0, note="keep?", id="h1"))
        admin_store.save(FxHat("brown", 1.5, id="h2"))
    elif feature == "indexes and queries":
        admin_store.save(FxIHat("black", 1.0, "S1", note="keep?", id="i1"))
        admin_store.save(FxIHat("brown", 1.5, "S2", id="i2"))
        admin_store.save(FxTHat("black", 1.0, id="t1"))
        admin_store.save(FxTHat("brown", 1.5, id="t2"))
    elif feature in EXTRA:
        admin_store.save(FxFlat("black", ["p", "q", "r"], id="f1"))
        admin_store.save(FxFlat("brown", ["p"], id="f2"), ttl=600)
        admin_store.save(FxBlob("black", id="b1"))
        admin_store.save(FxBlob("brown", id="b2"))
    else:
        queue = redmodel.containers.Queue(admin_store, ("fxq", "jobs"), str)
        queue.push("x", "y")
        scores = redmodel.containers.SortedSet(admin_store, ("fxq", "scores"), str)
        scores.add_many({"a": 1.0, "b": 2.0})
        hits = redmodel.containers.WindowCounter(admin_store, ("fxq", "hits"), window=60)
        hits.incr("1.2.3.4")  # registered (the container registry) before the user's calls


OPS = {"hash models": _hash_ops, "exactly-once": _hash_ops, "indexes and queries": _index_ops,
       "flat": _flat_ops, "containers": _container_ops}
CASES = [(feature, command) for feature in (*OPS, "blob") if feature != "blob"
         for command in _commands(feature)]


@pytest.fixture(scope="module")
def server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    from redmodel._pytest_plugin import _binary  # noqa: PLC0415

    with RedisServer(_binary(pytestconfig)) as started:
        yield started


def run_without(server: RedisServer, feature: str, without: str | None
                ) -> list[str]:
    """The feature's writes as a user lacking ``without``; the broken promises found."""
    broken: list[str] = []
    with server.client() as admin, redmodel.Store(server.client()) as admin_store:
        admin.flushall()
        _setup(admin_store, feature)
        name, password = f"fx-{secrets.token_hex(4)}", secrets.token_hex(8)
        rule_feature = "hash models" if feature in EXTRA else feature
        args = setuser_args(name, password, rule_feature, PATTERNS, without=without)
        extra = [f"+{c}" for c in EXTRA.get(feature, ()) if c != without]
        admin.execute_command(*args, *extra)
        options: dict[str, Any] = {}
        if feature == "exactly-once":
            options = {"exactly_once": True,
                       "resend": redmodel.ResendPolicy(write_id_prefix="redmodel:once:app:")}
        with redmodel.Store.from_url(server.url, username=name, password=password,
                                     **options) as user:
            for label, op, keys in OPS[feature](user):
                CONSUMED.clear()
                soon, before = expiring(admin), snapshot(admin)
                try:
                    op()
                except redis.RedisError as e:
                    after = snapshot(admin)
                    if label == "consume":  # several scripts, each whole: no item lost
                        now, was = _items(admin), _items_of(before)
                        if not set(was) <= set(now) | set(CONSUMED) or not (
                                Counter(now) <= Counter(was)):
                            broken.append(f"consume: {e} and items lost")
                        continue
                    changed = changed_keys(before, after, soon)
                    if changed:
                        broken.append(f"{label}: {type(e).__name__} and changed {changed}")
                    elif not _names_a_key(e, keys):
                        broken.append(f"{label}: {e} names no key")
            # save_many: what it says was written, and not, is exact
            many = _many(feature)
            if many:
                soon, before = expiring(admin), snapshot(admin)
                try:
                    user.save_many(many)
                except redmodel.RedmodelError as e:
                    # (None: refused before its first chunk was sent)
                    if getattr(e, "not_written", None) is None and changed_keys(
                            before, snapshot(admin), soon):
                        broken.append(f"save_many: {e} and changed keys")
                    for key in getattr(e, "not_written", None) or ():
                        mine = {k: v for k, v in snapshot(admin).items()
                                if k == key.encode()}
                        if mine != {k: v for k, v in before.items() if k == key.encode()}:
                            broken.append(f"save_many: {key} listed as not written, changed")
                    for key in getattr(e, "written", None) or ():
                        if not admin.exists(key):
                            broken.append(f"save_many: {key} listed as written, missing")
                except redis.RedisError as e:
                    broken.append(f"save_many: {type(e).__name__} without .written: {e}")
        for cls in (FxIHat, FxTHat) if feature == "indexes and queries" else ():
            problems = admin_store.verify(cls)
            if problems:
                broken.append(f"verify({cls.__name__}): {problems}")
        admin.execute_command("ACL", "DELUSER", name)
    return broken


@pytest.mark.parametrize(("feature", "without"), CASES)
def test_a_refused_command_leaves_every_key_as_it_was(
    server: RedisServer, feature: str, without: str
) -> None:
    assert run_without(server, feature, without) == []


@pytest.mark.parametrize("feature", list(OPS))
def test_with_the_whole_rule_every_write_succeeds(server: RedisServer, feature: str) -> None:
    """The scenario itself is right: with nothing taken away, nothing is refused."""
    assert run_without(server, feature, None) == []



_REPAIRS = {
    "index_fix": ["del", "exists", "hdel", "hget", "hmget", "hset", "incrby", "persist",
                  "pexpire", "pexpiretime", "sadd", "srem", "time", "type", "zadd", "zcard",
                  "zrange", "zrem", "zrevrangebylex", "zscore"],
    "ids_convert": ["del", "exists", "get", "incrby", "scard", "set", "srandmember", "srem",
                    "type", "zadd", "zcard", "zrange", "zrem", "zrevrangebylex", "zscore"],
    "rebucket": ["del", "dump", "exists", "get", "mset", "rename", "type"],
}


@pytest.mark.parametrize(("script", "without"),
                         [(s, c) for s, cs in _REPAIRS.items() for c in cs])
def test_a_repair_script_refuses_before_anything_a_command_the_user_lacks(
        server: RedisServer, script: str, without: str) -> None:
    """The repair scripts (reindex's index_fix and ids_convert, migrate_buckets'
    rebucket) ask the ACL about every command they (or their libraries) can call, before
    anything: a user lacking one gets NOPERM naming it, with nothing written (they write
    more than once; Redis never rolls a script back)."""
    from redmodel._plan import lua_source  # noqa: PLC0415

    with server.client() as admin:
        admin.flushall()
        admin.set("rep:probe", "kept")
        name, password = f"fx-{secrets.token_hex(4)}", secrets.token_hex(8)
        admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~rep:*",
                              "resetchannels", "-@all", "+eval",
                              *[f"+{c}" for c in _REPAIRS[script] if c != without])
        try:
            user = redis.Redis(host=server.host, port=server.port, username=name,
                               password=password)
            with pytest.raises(redis.exceptions.NoPermissionError,
                               match=f"'{without}' command.*nothing was written"):
                user.eval(lua_source(script), 2, "rep:probe", "rep:other", "x", "y")
            user.close()
            assert admin.get("rep:probe") == b"kept" and admin.exists("rep:other") == 0
            assert admin.ping()  # (acl_check_cmd without a key crashes some servers)
        finally:
            admin.execute_command("ACL", "DELUSER", name)


@pytest.mark.parametrize("kind", ["save", "save_many"])
@pytest.mark.parametrize("stored", [1, 63, 64, 65, 127, 128])
def test_a_key_a_write_makes_outside_the_users_patterns_writes_nothing(
        server: RedisServer, stored: int, kind: str) -> None:
    """A key a script computes (an all-ids page a split makes, never declared at the
    EVALSHA) outside the user's write patterns: the write is refused before anything is
    written, wherever the pages split (attack 29AO F1: a check asked once per command, with
    its first key, let the range key's answer stand for the new page)."""
    from tests.test_attack29ao import AkHat, _snapshot  # noqa: PLC0415

    with server.client() as admin, redmodel.Store(server.client()) as owner:
        admin.flushall()
        owner.save_many([AkHat("red", i, id=f"{i:03d}") for i in range(stored)])
        keys = sorted(k.decode() for k in admin.keys("ak*"))
        name, password = f"fx-{secrets.token_hex(4)}", secrets.token_hex(8)
        patterns = ["%R~ak:*", "~ak:0*", "~ak:1*", "~ak:%schema*", "~ak:%idx:eq:*",
                    "~ak:%idx:rng*", "~ak:%idx:idn*", "~ak:%idx:rec*", "~ak:%idx:exp*",
                    "~ak:%idx:all*", *[f"~{k}" for k in keys]]
        admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", *patterns,
                              "resetchannels", "-@all", "+@hash", "+@keyspace",
                              "+@scripting", "+@set", "+@sortedset", "+@string", "+time",
                              "+client|kill", "+client|id")
        try:
            before = _snapshot(admin, "ak*")
            new = [AkHat("blue", 500 + i, id=f"1{i:02d}") for i in range(3)]
            with redmodel.Store.from_url(server.url, username=name,
                                         password=password) as user:
                try:
                    user.save(new[0]) if kind == "save" else user.save_many(new)
                except (redmodel.RedmodelError, redis.RedisError) as e:
                    written = getattr(e, "written", None) or []
                    after = _snapshot(admin, "ak*")
                    changed = {k for k in set(after) | set(before)
                               if after.get(k) != before.get(k)}
                    assert not written or kind == "save_many"
                    if not written:
                        assert changed == set(), (str(e), sorted(changed))
            assert owner.verify(AkHat) == []
        finally:
            admin.execute_command("ACL", "DELUSER", name)
