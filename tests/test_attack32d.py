"""Attack 32D: transactions, TTLs and exactly-once under faults.
Each test holds the code to a sentence of the docs and FAILS on main as of this attack."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs
import pytest
import redis.asyncio as aredis

import redmodel
from redmodel._models._specs import spec_of
from redmodel.testing import FaultProxy
from tests.faults import FAST_RESEND, store_through

BIG = 2**62 + 1  # beyond 2**53: a Lua number (a double) cannot hold it
HUGE_TTL_MS = 2**60 + 12345  # a raw PEXPIRE far past what a store's ttl allows


def _commands(tx: Any) -> dict[str, Any]:
    """Queue, in one transaction, raw reads whose integer replies pass 2**53."""
    return {
        "BITFIELD_RO": tx.command("BITFIELD_RO", "atk32d:bf", "GET", "i64", 0),
        "PEXPIRETIME": tx.command("PEXPIRETIME", "atk32d:v"),
    }


def _expected(client: Any) -> dict[str, Any]:
    return {
        "BITFIELD_RO": [BIG],
        "PEXPIRETIME": client.execute_command("PEXPIRETIME", "atk32d:v"),
    }


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f1_exactly_once_raw_tx_command_big_integer_replies_are_exact(
        redis_server: Any, redis_client: Any, shell: str) -> None:
    """Transaction.command's docstring: "Queue a raw command; value: its reply, as
    redis-py's `execute_command` would return it". docs/failures.md ("What cannot carry an
    id"): `BITFIELD` stays at most once because "its integers can pass 2**53, which a Lua
    number cannot hold" -- the same holds of every command whose integer reply can pass
    2**53, but only BITFIELD (with ZMSCORE, GEOPOS) is kept out of once_command.lua, and
    only INCR/INCRBY/DECR/DECRBY/HINCRBY are read back exactly. With exactly_once=True,
    `BITFIELD_RO ... GET i64` of 2**62+1 answers [2**62]; `PTTL`/`PEXPIRETIME` of a key
    given a huge expiry (raw PEXPIRE) answer rounded values (PEXPIRETIME checked here).
    The same transaction with the mode off answers them exactly (asserted first)."""
    redis_client.delete("atk32d:bf", "atk32d:v")
    redis_client.execute_command("BITFIELD", "atk32d:bf", "SET", "i64", 0, BIG)
    redis_client.set("atk32d:v", "x")
    redis_client.pexpire("atk32d:v", HUGE_TTL_MS)
    results = {}
    try:
        for once in (False, True):
            if shell == "sync":
                store = redmodel.Store(redis_client, exactly_once=once)
                with redmodel.transactions.Transaction(store) as tx:
                    pending = _commands(tx)
            else:
                async def run(once: bool = once) -> dict[str, Any]:
                    client = aredis.Redis(host=redis_server.host, port=redis_server.port)
                    astore = redmodel.AsyncStore(client, exactly_once=once)
                    try:
                        async with redmodel.transactions.AsyncTransaction(astore) as atx:
                            got = _commands(atx)
                    finally:
                        await astore.aclose()
                    return got
                pending = asyncio.run(run())
            results[once] = {name: p.value for name, p in pending.items()}
        want = _expected(redis_client)
        assert {k: results[False][k] for k in want} == want  # the mode off: exact
        assert {k: results[True][k] for k in want} == want  # exactly-once: rounded
    finally:
        redis_client.delete("atk32d:bf", "atk32d:v")


@redmodel.model(prefix="atk32d")
@attrs.define
class Hat:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


@redmodel.model(prefix="atk32db", layout="blob")
@attrs.define
class BlobHat:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


@redmodel.model(prefix="atk32di")
@attrs.define
class IndexedHat:
    id: str = redmodel.key_field(generated=False)
    n: int = redmodel.field(default=0, index=True)


def _lose_then_delay(proxy: FaultProxy) -> None:
    """The write's reply is lost (it ran), and its resend reaches the server 0.1 s later
    (a slow reconnect): longer than the object's remaining expiry."""
    def writes(name: str) -> bool:
        return name in ("HSET", "SET", "PEXPIRE", "EVALSHA", "EVAL")
    proxy.lose_reply(writes)
    proxy.stall(writes, 0.1)


@pytest.mark.parametrize("once", [False, True], ids=["at-most-once", "exactly-once"])
@pytest.mark.parametrize("model", [Hat, BlobHat, IndexedHat])
def test_f2_a_resent_save_revives_an_expired_object_without_its_expiry(
        proxy: FaultProxy, redis_client: Any, once: bool, model: type) -> None:
    """docs/store.md, TTL: "`ttl=None` on a save ... sends no expiry command: an expiry the
    key already has is kept". docs/failures.md, the table: `save` is resent after a lost
    reply ("yes (fenced first)") and "returns; applied once"; a plain resend is for "a
    write that may be applied twice harmlessly (a whole save, ...)".
    An object saved with ttl=0.03, then saved again with ttl=None: that save runs (its
    expiry is kept), its reply is lost, the object expires, and the resend re-creates it
    with NO expiry: an object that should be gone lives forever (every layout, both
    modes). Applied once, it would have expired."""
    store = store_through(proxy, exactly_once=once, resend=FAST_RESEND)
    key = spec_of(model).key_for("e")
    try:
        store.save(model(id="e", n=1), ttl=0.03)
        _lose_then_delay(proxy)
        # (fix 32D) docs/failures.md, "Resent writes and missing objects": with the mode
        # off the resend writes only over the object, and finding it gone the call raises
        # OutcomeUnknownError naming its key; in exactly-once mode it answers the first
        # copy's reply from its write id. The indexed save's first copy asks for an index
        # key it did not declare and writes nothing (recorded under its write id): its
        # write runs in a later round, after the expiry, and makes the object anew, as a
        # save with ttl=None of a missing object does ("an expiry the key already has is
        # kept": it has none)
        if once:
            store.save(model(id="e", n=2), ttl=None)
        else:
            with pytest.raises(redmodel.OutcomeUnknownError) as raised:
                store.save(model(id="e", n=2), ttl=None)
            assert raised.value.keys == (key,)
        assert [e.kind for e in proxy.events] == ["lose_reply", "stall"]  # the fault fired
        time.sleep(0.1)
        if model is IndexedHat and once:
            assert redis_client.hget(key, "n") in (None, b"2")
        else:
            assert redis_client.pttl(key) == -2, "the object outlived the expiry it had"
    finally:
        redis_client.delete(key)
        store.close()


@pytest.mark.parametrize("once", [False, True], ids=["at-most-once", "exactly-once"])
@pytest.mark.parametrize("call", ["expire", "update"])
def test_f3_a_resent_write_answers_missing_for_an_object_it_changed(
        proxy: FaultProxy, redis_client: Any, once: bool, call: str) -> None:
    """docs/store.md, the table: `expire(Model, id, ttl)` returns "`False` if missing", and
    `update` "returns `False`" for a missing object ("write nothing"); docs/failures.md: a
    plain result means "applied exactly once". The brief's promise: the caller can tell
    whether a write was applied. Here the write ran on a live object (its reply lost);
    the object then expired (the expire's own 20 ms, or the TTL it had), and the resend,
    finding it gone, answers False: the caller reads "missing, nothing done". The indexed
    layout's expire answers True in the same case (tested alongside)."""
    store = store_through(proxy, exactly_once=once, resend=FAST_RESEND)
    try:
        store.save(IndexedHat(id="e"))
        _lose_then_delay(proxy)
        # (fix 32D) docs/failures.md, "Resent writes and missing objects": every layout
        # alike; the indexed script's answer after a delete (not an expiry) was False
        try:
            assert store.expire(IndexedHat, "e", 0.02) is True  # the indexed layout knows
        except redmodel.OutcomeUnknownError as e:
            assert not once and e.keys == (spec_of(IndexedHat).key_for("e"),)
        proxy.clear()
        store.save(Hat(id="e"), ttl=None if call == "expire" else 0.03)
        _lose_then_delay(proxy)
        # (fix 32D) docs/failures.md, "Resent writes and missing objects": with the mode
        # off the resend finds the object gone and the call raises OutcomeUnknownError
        # naming its key (the first copy may have run, or not); exactly-once answers True
        try:
            answered = (store.expire(Hat, "e", 0.02) if call == "expire"
                        else store.update(Hat, "e", n=5))
        except redmodel.OutcomeUnknownError as e:
            assert not once and e.keys == (spec_of(Hat).key_for("e"),)
            answered = True
        assert [e.kind for e in proxy.events][-2:] == ["lose_reply", "stall"]
        assert answered is True, f"{call} ran on a live object, yet answered {answered!r}"
    finally:
        redis_client.delete(spec_of(Hat).key_for("e"), spec_of(IndexedHat).key_for("e"))
        store.close()
