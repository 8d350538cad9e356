"""Fix 30X (attack 30AX F1-F3).

F1: redis-py's ``TimeoutError`` is no ``ConnectionError``; docs/failures.md gives both one
meaning. A bulk delete whose later chunk times out after earlier chunks were deleted
raises ``OutcomeUnknownError`` with ``.written``, never a plain timeout (property: drawn
chunk stalled, exactly-once on/off, sync/asyncio).

F2: a write that ran, whose follow-up (the confirmation or release of a bucketed model's
unique claims) fails, never raises an error reading "not applied, safe to call again":
the data stay right without the follow-up, so the call returns its result (a transaction
commits and counts it), or, when a copy of the follow-up may still land, raises
``OutcomeUnknownError`` saying it is the follow-up's. Property over the kind: the call
(delete, delete_many, save and update changing a unique value, the same in a
transaction beside an increment) x the follow-up met (release, confirm, both) x the
fault (request dropped, reply lost, stalled past the socket timeout; once or until the
policy gives up) x exactly-once on/off x sync/asyncio. After each: the write applied once,
``verify`` clean, a value given up can be claimed by another object at once, a value
held cannot.

F3: the key items of a transaction's ``watch(*keys)`` and ``read_command(watch=)``, and
the ids of the store's and the transaction's id-taking methods: any malformed item (a
list, a set, a dict, None, an int for a key, a float, an object, a str with a lone
surrogate) raises a redmodel or redis-py error (``ValidationError`` for the keys), never
a builtin, nothing sent."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._specs import CONFIRM, RELEASE
from redmodel._plan import FOLLOW_UP
from redmodel.testing import FaultProxy, has
from redmodel.transactions import AsyncTransaction, Transaction
from tests.budget import scaled


@redmodel.model(prefix="fix30xi")
@attrs.define
class Item:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


@redmodel.model(prefix="fix30xu", buckets=4)
@attrs.define
class User:
    id: str = redmodel.key_field(generated=False)
    email: str = redmodel.field(default="", unique=True)


@redmodel.model(prefix="fix30xc")
@attrs.define
class Counter:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


QUICK = redmodel.ResendPolicy(attempts=2, backoff_base=0.01, backoff_max=0.02, deadline=2.0,
                              write_id_ttl=30.0)
def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _store(proxy: FaultProxy, shell: str, **options: Any) -> Any:
    if shell == "sync":
        return redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                          socket_timeout=0.2), **options)
    return redmodel.AsyncStore(aredis.Redis(host=proxy.host, port=proxy.port,
                                            socket_timeout=0.2), **options)


def _run(shell: str, store: Any, act: Any) -> tuple[Any, BaseException | None]:
    """``act(store)`` (awaited on a loop of its own for asyncio), the store closed after;
    (its result, the exception it raised)."""
    if shell == "sync":
        try:
            return act(store), None
        except Exception as e:  # the property inspects it
            return None, e
        finally:
            store.close()

    async def main() -> tuple[Any, BaseException | None]:
        try:
            return await act(store), None
        except Exception as e:  # the property inspects it
            return None, e
        finally:
            await store.aclose()
    return asyncio.run(main())


def _plain(error: BaseException | None) -> bool:
    return isinstance(error, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(
        error, redmodel.RedmodelError)


# ---- F1 -------------------------------------------------------------------------------


@_settings(scaled(30))
@given(n=st.integers(3, 6), chunk=st.integers(1, 2), at=st.integers(1, 5),
       once=st.booleans(), shell=st.sampled_from(["sync", "async"]))
def test_f1_bulk_delete_timing_out_after_a_chunk_ran_lists_it(
        proxy: FaultProxy, redis_client: Any, n: int, chunk: int, at: int, once: bool,
        shell: str) -> None:
    redis_client.flushall()
    redmodel.Store(redis_client).save_many([Item(id=f"i{j}") for j in range(n)])
    keys = [f"fix30xi:i{j}" for j in range(n)]
    stalled = max(chunk, min(at, n - 1))  # an object of a later chunk
    stalled -= stalled % chunk
    proxy.clear()
    proxy.stall(lambda c: True, 1.0, times=50, when=has(keys[stalled]))
    store = _store(proxy, shell, exactly_once=once, resend=QUICK, chunk_size=chunk)
    _, error = _run(shell, store, lambda s: s.delete_many(Item, [f"i{j}" for j in range(n)]))
    proxy.clear()
    proxy.quiet()
    assert error is not None and not _plain(error), repr(error)
    assert isinstance(error, redmodel.OutcomeUnknownError), repr(error)
    gone = [k for k in keys if not redis_client.exists(k)]
    assert list(error.written) == keys[:stalled]  # type: ignore[attr-defined]
    assert set(error.written) <= set(gone)  # type: ignore[attr-defined]


# ---- F2 -------------------------------------------------------------------------------

CALLS = ["delete", "delete_many", "save", "update", "tx_delete", "tx_save"]


def _act(call: str, shell: str) -> Any:
    """The call, on a store (or a transaction of it, beside an increment of Counter c)."""
    if call == "delete":
        return lambda s: s.delete(User, "u0")
    if call == "delete_many":
        return lambda s: s.delete_many(User, ["u0", "u1"])
    if call == "save":
        return lambda s: s.save(User(id="u0", email="new"))
    if call == "update":
        return lambda s: s.update(User, "u0", email="new")

    def queue(tx: Any) -> None:
        tx.incr(Counter, "c", "n", 1)
        if call == "tx_delete":
            tx.delete(User, "u0")
        else:
            tx.save(User(id="u0", email="new"))

    if shell == "sync":
        def run(s: Any) -> Any:
            with Transaction(s) as tx:
                queue(tx)
        return run

    async def arun(s: Any) -> Any:
        async with AsyncTransaction(s) as tx:
            queue(tx)
    return arun


@_settings(scaled(60))
@given(call=st.sampled_from(CALLS), step=st.sampled_from(["release", "confirm", "both"]),
       fault=st.sampled_from(["drop_request", "lose_reply", "stall"]),
       times=st.sampled_from([1, 50]), once=st.booleans(),
       shell=st.sampled_from(["sync", "async"]))
def test_f2_a_write_that_ran_never_reads_not_applied_when_its_follow_up_fails(
        proxy: FaultProxy, redis_client: Any, call: str, step: str, fault: str, times: int,
        once: bool, shell: str) -> None:
    redis_client.flushall()
    direct = redmodel.Store(redis_client)
    direct.save_many([User(id="u0", email="e0"), User(id="u1", email="e1")])
    direct.save(Counter(id="c"))
    proxy.clear()
    shas = {"release": [RELEASE.sha], "confirm": [CONFIRM.sha],
            "both": [RELEASE.sha, CONFIRM.sha]}[step]
    for sha in shas:
        if fault == "stall":
            proxy.stall("EVALSHA", 1.0, times=times, when=has(sha))
        else:
            getattr(proxy, fault)("EVALSHA", times=times, when=has(sha))
    store = _store(proxy, shell, exactly_once=once, resend=QUICK)
    result, error = _run(shell, store, _act(call, shell))
    proxy.clear()
    proxy.quiet()
    # never "not applied, safe to call again" of a write that ran
    assert not _plain(error), repr(error)
    if error is not None:  # only the follow-up's own unknown outcome, said so
        assert isinstance(error, redmodel.OutcomeUnknownError), repr(error)
        assert FOLLOW_UP in str(error), repr(error)
        if call.startswith("tx_"):
            assert getattr(error, "committed", False) is True
    # the write applied, once
    deleted = call in ("delete", "delete_many", "tx_delete")
    u0 = direct.get(User, "u0")
    if deleted:
        assert u0 is None
        assert direct.get(User, "u1") is None if call == "delete_many" else True
    else:
        assert u0 is not None and u0.email == "new"
    if error is None and call in ("delete", "update"):
        assert result is True
    if error is None and call == "delete_many":
        assert result == 2
    if call.startswith("tx_"):
        assert redis_client.hget("fix30xc:c", "n") == b"1"
    # the data stay right: verify clean, a value given up is free at once, a held one not
    assert direct.verify(User) == []
    direct.save(User(id="z0", email="e0"))  # given up by u0 (deleted, or changed)
    if call == "delete_many":
        direct.save(User(id="z1", email="e1"))
    if not deleted:
        with pytest.raises(redmodel.UniqueViolationError):
            direct.save(User(id="z2", email="new"))
    assert direct.verify(User) == []


# ---- F3 -------------------------------------------------------------------------------

bad_keys = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=False), st.lists(st.text(max_size=3)),
    st.frozensets(st.text(max_size=3)).map(set), st.dictionaries(st.text(max_size=2),
                                                               st.integers(), max_size=2),
    st.tuples(st.text(max_size=3)), st.builds(object),
    st.sampled_from(["\ud800", "a\udfff"]), st.just(bytearray(b"k")))
bad_ids = st.one_of(
    st.none(), st.lists(st.text(max_size=3)), st.frozensets(st.text(max_size=3)).map(set),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.builds(object),
    st.floats(allow_nan=False), st.sampled_from(["\ud800", "a\udfff"]))


@_settings(scaled(100))
@given(bad=bad_keys, at=st.integers(0, 2),
       call=st.sampled_from(["watch", "read_command"]), shell=st.sampled_from(["sync", "async"]))
def test_f3_transaction_keys_malformed_items_are_a_validation_error(
        redis_client: Any, redis_url: str, bad: Any, at: int, call: str, shell: str) -> None:
    redis_client.set("fix30x:k", 1)
    keys: list[Any] = ["fix30x:k", "fix30x:other"]
    keys.insert(at, bad)

    def act(tx: Any) -> Any:
        if call == "watch":
            return tx.watch(*keys)
        return tx.read_command("GET", "fix30x:k", watch=keys)

    if shell == "sync":
        with Transaction(redmodel.Store(redis_client)) as tx:
            with pytest.raises(redmodel.ValidationError) as caught:
                act(tx)
            assert tx.watched == ()  # nothing sent: no key watched
    else:
        async def main() -> None:
            store = redmodel.AsyncStore.from_url(redis_url)
            try:
                async with AsyncTransaction(store) as tx:
                    with pytest.raises(redmodel.ValidationError) as caught:
                        await act(tx)
                    assert tx.watched == ()
                    raise caught.value
            finally:
                await store.aclose()
        with pytest.raises(redmodel.ValidationError) as caught:
            asyncio.run(main())
    assert "watch" in str(caught.value) and f"item {at}" in str(caught.value)


ID_CALLS = ["get", "delete", "exists", "ttl", "persist", "expire", "update", "incr",
            "get_many", "delete_many", "tx_get", "tx_exists", "tx_delete", "tx_update",
            "tx_incr", "tx_get_many"]


@_settings(scaled(100))
@given(bad=bad_ids, call=st.sampled_from(ID_CALLS))
def test_f3_malformed_ids_are_a_redmodel_or_redis_error(
        redis_client: Any, bad: Any, call: str) -> None:
    store = redmodel.Store(redis_client)
    store.save(Item(id="a", n=1))
    args = {"get": (Item, bad), "delete": (Item, bad), "exists": (Item, bad),
            "ttl": (Item, bad), "persist": (Item, bad), "expire": (Item, bad, 10),
            "incr": (Item, bad, "n", 1), "get_many": (Item, ["a", bad]),
            "delete_many": (Item, ["a", bad])}
    name = call.removeprefix("tx_")
    try:
        if call.startswith("tx_"):
            with Transaction(store) as tx:
                if name == "update":
                    tx.update(Item, bad, n=2)
                else:
                    getattr(tx, name)(*args[name])
        elif name == "update":
            store.update(Item, bad, n=2)
        else:
            getattr(store, name)(*args[name])
    except (redmodel.RedmodelError, redis.RedisError):  # refused: nothing of it applied
        assert redis_client.hget("fix30xi:a", "n") == b"1"
