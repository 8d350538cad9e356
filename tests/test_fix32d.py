"""Fix 32D: writes whose resend cannot be told from their first copy when the object is gone
(docs/failures.md, "Resent writes and missing objects"), and exact big-integer replies of a
transaction's raw commands in exactly-once mode (docs/failures.md, "What cannot carry an
id")."""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel.testing import FaultProxy
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through


@redmodel.model(prefix="fx32p")
@attrs.define
class Plain:
    id: str = redmodel.key_field(generated=False)
    n: int = 0
    m: int = 0


@redmodel.model(prefix="fx32o")
@attrs.define
class Scripted:  # a None field: saved by hash_save.lua (HSET and HDEL), not HSET alone
    id: str = redmodel.key_field(generated=False)
    n: int = 0
    m: int = 0
    note: str | None = None


@redmodel.model(prefix="fx32b", layout="blob")
@attrs.define
class Blob:
    id: str = redmodel.key_field(generated=False)
    n: int = 0
    m: int = 0


@redmodel.model(prefix="fx32f", layout="flat")
@attrs.define
class Flat:
    id: str = redmodel.key_field(generated=False)
    n: int = 0
    m: int = 0


@redmodel.model(prefix="fx32i")
@attrs.define
class Indexed:
    id: str = redmodel.key_field(generated=False)
    n: int = redmodel.field(default=1, index=True)
    m: int = 0


MODELS = [Plain, Scripted, Blob, Flat, Indexed]
UPDATABLE = (Plain, Scripted, Indexed)  # the hash layout's (a blob or flat update refuses)
KINDS = ["save", "save_many", "update", "expire"]
# what happens between the first copy (run, its reply lost) and its resend (held 0.12 s,
# or until the seeded expiry has run out)
BETWEEN = ["expired", "deleted", "retyped", "there"]


def _retype(client: redis.Redis, key: str, model: type) -> None:
    """Another client's key of another type where the object was (attack 32I F2)."""
    client.delete(key)
    if model in (Blob, Flat):
        client.hset(key, "other", "1")
    else:
        client.set(key, "other")


def _writes(name: str) -> bool:
    return name in ("HSET", "SET", "PEXPIRE", "EVALSHA", "EVAL")


def _first_answer(kind: str, key: str) -> Any:
    return {"save": key, "save_many": 1, "update": True, "expire": True}[kind]


@settings(max_examples=scaled(200), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(MODELS), kind=st.sampled_from(KINDS),
       once=st.booleans(), between=st.sampled_from(BETWEEN))
def test_a_resent_write_answers_its_first_copy_or_outcome_unknown(
        proxy: FaultProxy, redis_client: redis.Redis, model: type, kind: str, once: bool,
        between: str) -> None:
    """Property: every write kind resent after a lost reply (a save with no ttl, which
    keeps the object's expiry; save_many; update; expire), every layout, both modes, the
    object expired, deleted, replaced by another client's key of another type, or still
    there at the resend: the call answers what its first
    copy answered, or raises OutcomeUnknownError naming the key (the mode off, the object
    gone); exactly-once always answers. Never an object revived without its expiry, never a
    False for a write that was applied."""
    if kind == "update" and model not in UPDATABLE:
        kind = "expire"
    key = spec_of(model).key_for("x")
    store = store_through(proxy, exactly_once=once, resend=FAST_RESEND)
    try:
        redis_client.delete(key)
        proxy.clear()
        # the object before the call: an expiry of 0.2 s when it is to expire before the
        # resend (an expire call gives it its own, 40 ms); the resend is held as long, so
        # it runs after that expiry (which started before the call), and the first copy
        # has 0.2 s to run before it (40 ms was too short on a slow machine)
        seed_ttl = 0.2 if between == "expired" and kind != "expire" else None
        store.save(model(id="x", n=1, m=1), ttl=seed_ttl)
        fired = len(proxy.events)
        proxy.lose_reply(_writes)

        def between_copies(argv: list[bytes]) -> bool:
            # as the resend arrives (the first copy ran): another client deletes the
            # object or puts its own key there (a timer could fire before the first copy
            # or after the resend on a slow machine)
            if between == "deleted":
                redis_client.delete(key)
            elif between == "retyped":
                _retype(redis_client, key, model)
            return True

        proxy.stall(_writes, seed_ttl or 0.12, when=between_copies)
        new = model(id="x", n=1, m=2)
        try:
            if kind == "save":
                answer = store.save(new, ttl=None)
            elif kind == "save_many":
                answer = store.save_many([new], ttl=None)
            elif kind == "update":
                answer = store.update(model, "x", m=2)
            else:
                answer = store.expire(model, "x", 0.04 if between == "expired" else 100)
        except redmodel.OutcomeUnknownError as e:
            assert not once, f"exactly-once raised {e!r}"
            assert key in e.keys, e.keys
            answer = e
        except redmodel.ServerError as e:
            # the indexed write's first copy may only ask for the object's stored values
            # (writing nothing): its write then meets the other client's key, and is
            # refused with nothing written, its true answer
            assert model is Indexed and between == "retyped", repr(e)
            assert "nothing was written" in str(e), str(e)
            answer = e
        assert [e.kind for e in proxy.events[fired:]] == ["lose_reply", "stall"]  # fired
        if not isinstance(answer, Exception) and not (
                model is Indexed and kind in ("update", "expire") and between != "there"
                and answer is False):
            # (the indexed write's first copy may ask for the object's stored values,
            # writing nothing: its write then runs after the object is gone, and False,
            # "missing", is its true answer; the object's state is checked below)
            assert answer == _first_answer(kind, key), (kind, answer)
        time.sleep(0.06)
        if between == "there":
            assert not isinstance(answer, Exception)  # nothing to tell apart: answered
            assert store.get(model, "x").m == (1 if kind == "expire" else 2)
            left = redis_client.pttl(key)
            assert left == -1 if kind != "expire" else left > 0, left
        elif between == "retyped":  # the other client's key is left as it was
            assert redis_client.type(key) == (b"hash" if model in (Blob, Flat) else b"string")
            assert redis_client.pttl(key) == -1
        else:
            assert redis_client.pttl(key) == -2, "the object was revived"
    finally:
        proxy.clear()
        redis_client.delete(key)
        store.close()


# ---- F1: exact big integers through a transaction's raw commands ----------------------------

BIG = st.one_of(
    st.integers(min_value=-1000, max_value=1000).map(lambda k: 2**53 + k),
    st.integers(min_value=-1000, max_value=1000).map(lambda k: -(2**53) + k),
    st.sampled_from([2**63 - 1, -(2**63), 2**62 + 1, -(2**62) - 3]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


@settings(max_examples=scaled(100), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=BIG, expiry=st.integers(min_value=2**53 - 1000, max_value=2**61),
       once=st.booleans(), protocol=st.sampled_from([2, 3]))
def test_big_integer_replies_of_raw_transaction_commands_are_exact(
        redis_server: Any, redis_client: redis.Redis, value: int, expiry: int, once: bool,
        protocol: int) -> None:
    """Property: BITFIELD_RO, BITFIELD, PTTL, PEXPIRETIME, INCRBY and HINCRBY queued with
    tx.command answer what redis-py's execute_command answers directly, exactly, beyond
    2**53 too, with exactly-once mode on as off, in either protocol."""
    keys = ("fx32:bf", "fx32:bf2", "fx32:v", "fx32:c", "fx32:h")
    redis_client.delete(*keys)
    redis_client.execute_command("BITFIELD", "fx32:bf", "SET", "i64", 0, value)
    redis_client.set("fx32:v", "x")
    redis_client.pexpire("fx32:v", expiry)
    start = value // 2  # INCRBY start + (value - start) lands on value, within int64
    redis_client.set("fx32:c", start)
    redis_client.hset("fx32:h", "f", start)
    client = redis.Redis(host=redis_server.host, port=redis_server.port, protocol=protocol)
    store = redmodel.Store(client, exactly_once=once)
    try:
        ttl_before = redis_client.pttl("fx32:v")
        with redmodel.transactions.Transaction(store) as tx:
            # (BITFIELD, sent at most once, in a transaction of its own: beside it nothing
            # of a transaction would carry a write id)
            got = {"BITFIELD": tx.command("BITFIELD", "fx32:bf2", "SET", "i64", 0, value,
                                          "GET", "i64", 0)}
        with redmodel.transactions.Transaction(store) as tx:
            got |= {
                "BITFIELD_RO": tx.command("BITFIELD_RO", "fx32:bf", "GET", "i64", 0),
                "PTTL": tx.command("PTTL", "fx32:v"),
                "PEXPIRETIME": tx.command("PEXPIRETIME", "fx32:v"),
                "INCRBY": tx.command("INCRBY", "fx32:c", value - start),
                "HINCRBY": tx.command("HINCRBY", "fx32:h", "f", value - start),
            }
        ttl_after = redis_client.pttl("fx32:v")
        values = {name: p.value for name, p in got.items()}
        assert values["BITFIELD_RO"] == redis_client.execute_command(
            "BITFIELD_RO", "fx32:bf", "GET", "i64", 0) == [value]
        assert values["BITFIELD"] == [0, value]
        assert values["PEXPIRETIME"] == redis_client.execute_command("PEXPIRETIME", "fx32:v")
        assert ttl_after <= values["PTTL"] <= ttl_before
        assert values["INCRBY"] == int(redis_client.get("fx32:c") or 0) == value
        assert values["HINCRBY"] == int(redis_client.hget("fx32:h", "f") or 0) == value
    finally:
        redis_client.delete(*keys)
        store.close()


def test_a_lost_exec_reply_keeps_the_writes_once_and_says_the_read_was_lost(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """A big-integer read goes unwrapped (no write id) beside the transaction's writes under
    theirs: after a lost EXEC reply the fence finds the writes applied (once), and the
    read's reply, which nothing kept, is an error raised after the commit
    (``committed`` True, its key named)."""
    redis_client.delete("fx32:c", "fx32:v")
    redis_client.set("fx32:v", "x")
    store = store_through(proxy, exactly_once=True, resend=FAST_RESEND)
    try:
        proxy.lose_reply("EXEC")
        pending: dict[str, Any] = {}

        def fn(tx: Any) -> None:
            pending["incr"] = tx.command("INCRBY", "fx32:c", 5)
            pending["pttl"] = tx.command("PTTL", "fx32:v")

        with pytest.raises(redmodel.ServerError) as raised:
            store.transaction(fn)()
        assert raised.value.committed is True  # type: ignore[attr-defined]
        assert "fx32:v" in str(raised.value)
        assert pending["incr"].value == 5
        assert redis_client.get("fx32:c") == b"5"
    finally:
        redis_client.delete("fx32:c", "fx32:v")
        store.close()
