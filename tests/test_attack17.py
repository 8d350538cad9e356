"""Attacks on issue 17's fast paths (single calls, compiled codecs, short incr, packed
bulk, AsyncStore): each test states a promise of docs/*.md. Failing tests are findings
(`# F<n>:`); the others held and are kept for regression value."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import FaultProxy, has
from redmodel.transactions import Transaction
from tests.budget import scaled


@attrs.define
class Addr:
    street: str
    zip: int


@redmodel.model(prefix="a17p")
@attrs.define
class P:
    s: str
    f: float
    i: int
    when: dt.datetime
    addr: Addr
    tags: list[str] = attrs.Factory(list)
    opt: str | None = None
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c")
@attrs.define
class Ctr:
    n: int = 0
    x: float = 0.0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17ix")
@attrs.define
class Ix:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=0.0)
    sku: str | None = redmodel.field(unique=True, default=None)
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


ids = st.text(alphabet=":{}*%\\?[] ab\u00e9", min_size=1, max_size=8)
texts = st.text(max_size=40)
floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 0.1 + 0.2, 5e-324, 1.7976931348623157e308])
ints = st.integers(-(2**70), 2**70)
whens = st.datetimes(timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=5)), None]))
objs = st.builds(P, s=texts, f=floats, i=ints, when=whens,
                 addr=st.builds(Addr, street=texts, zip=ints),
                 tags=st.lists(texts, max_size=3), opt=st.none() | texts, id=ids)


def dump(client: Any, key: str) -> dict[bytes, bytes]:
    return client.hgetall(key)  # type: ignore[no-any-return]


@settings(max_examples=scaled(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=objs)
def test_every_path_writes_the_same_bytes(redis_url: str, store: redmodel.Store, obj: P) -> None:
    """store.md: `save_many` sends "the same command per object" as `save`; a
    transaction's and an AsyncStore's save are the same plan. The bytes in Redis and the
    object read back are the same whichever path wrote them."""
    client = store.client
    client.flushall()
    results: list[dict[bytes, bytes]] = []
    back: list[Any] = []

    def snap() -> None:
        keys = [k for k in client.keys("a17p:*") if not k.endswith(b"%schema")]
        assert len(keys) == 1, keys
        results.append(dump(client, keys[0]))
        back.append(store.get(P, obj.id))
        client.delete(keys[0])

    store.save(obj)
    snap()
    store.save_many([obj])
    snap()
    with Transaction(store) as tx:
        tx.save(obj)
    snap()

    async def run() -> None:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save(obj)
            back.append(await astore.get(P, obj.id))

    asyncio.run(run())
    snap()
    back.pop(-2)
    assert all(r == results[0] for r in results), results
    for b in back:
        assert b == obj or (b is not None and math.isnan(obj.f))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_bad_float_index_value_in_a_list_writes_nothing(store: redmodel.Store, bad: float) -> None:
    """store.md: a sequence is validated whole before the first chunk ("index values such as
    a NaN range value"): a bad object in it leaves nothing written."""
    good = [Ix("red", 1.0, id=f"g{i}") for i in range(5)]
    with pytest.raises(redmodel.ValidationError):
        store.save_many([*good, Ix("red", bad, id="bad")])
    assert store.client.keys("a17ix*") == [] or all(
        b"%schema" in k for k in store.client.keys("a17ix*")), store.client.keys("a17ix*")


def test_single_save_of_nan_range_value_writes_nothing(store: redmodel.Store) -> None:
    with pytest.raises(redmodel.ValidationError):
        store.save(Ix("red", math.nan, id="bad"))
    assert store.client.exists("a17ix:bad") == 0


def test_duplicate_unique_in_a_list_writes_nothing(store: redmodel.Store) -> None:
    """store.md: "two objects sharing a unique value" refused before the first chunk."""
    with pytest.raises(redmodel.RedmodelError):
        store.save_many([Ix("red", 1.0, sku="S", id="a"), Ix("red", 2.0, sku="S", id="b")])
    assert store.client.exists("a17ix:a", "a17ix:b") == 0


# ---- lost replies on the single-call fast path -------------------------------------------


def proxied(redis_server: Any) -> tuple[FaultProxy, redmodel.Store]:
    proxy = FaultProxy(redis_server.host, redis_server.port).start()
    return proxy, redmodel.Store.from_url(proxy.url)


@pytest.mark.parametrize("amount", [1, 2**40])
def test_lost_incr_reply_is_outcome_unknown_and_applied_once(redis_server: Any,
                                                             redis_client: Any,
                                                             amount: int) -> None:
    """failures.md: increments "raise OutcomeUnknownError" on a lost reply, never resent;
    `.keys` names its keys."""
    proxy, store = proxied(redis_server)
    try:
        store.save(Ctr(5, id="c"))
        proxy.lose_reply(lambda name: name.upper() in ("EVALSHA", "EVAL", "HINCRBY", "FCALL"),
                         when=has("a17c:c"))
        with pytest.raises(redmodel.OutcomeUnknownError) as e:
            store.incr(Ctr, "c", "n", amount)
        assert proxy.events
        assert "a17c:c" in e.value.keys
    finally:
        store.close()
        proxy.stop()
    assert int(redis_client.hget("a17c:c", "n")) == 5 + amount


def test_lost_float_incr_reply_is_outcome_unknown(redis_server: Any, redis_client: Any) -> None:
    proxy, store = proxied(redis_server)
    try:
        store.save(Ctr(5, 1.5, id="c"))
        proxy.lose_reply(lambda name: name.upper() in ("EVALSHA", "EVAL", "HINCRBYFLOAT"),
                         when=has("a17c:c"))
        with pytest.raises(redmodel.OutcomeUnknownError):
            store.incr(Ctr, "c", "x", 0.25)
    finally:
        store.close()
        proxy.stop()
    assert float(redis_client.hget("a17c:c", "x")) == 1.75


def test_async_lost_incr_reply_is_outcome_unknown_and_applied_once(redis_server: Any,
                                                                   redis_client: Any) -> None:
    redmodel.Store(redis_client).save(Ctr(5, id="c"))

    async def run() -> None:
        with FaultProxy(redis_server.host, redis_server.port) as proxy:
            async with redmodel.AsyncStore.from_url(proxy.url) as astore:
                await astore.get(Ctr, "c")
                proxy.lose_reply(lambda name: name.upper() in ("EVALSHA", "EVAL", "HINCRBY"),
                                 when=has("a17c:c"))
                with pytest.raises(redmodel.OutcomeUnknownError):
                    await astore.incr(Ctr, "c", "n", 3)
                assert proxy.events

    asyncio.run(run())
    assert int(redis_client.hget("a17c:c", "n")) == 8


def test_lost_save_reply_is_settled(redis_server: Any, redis_client: Any) -> None:
    """failures.md: a whole save whose reply is lost is resent once fenced: the call
    returns (or raises a plain ConnectionError / OutcomeUnknownError); the object is whole."""
    proxy, store = proxied(redis_server)
    try:
        store.save(Ctr(1, id="c"))
        proxy.lose_reply(lambda name: name.upper() in ("HSET", "EVALSHA", "EVAL"),
                         when=has("a17c:c"))
        store.save(Ctr(2, 2.5, id="c"))
        assert proxy.events
    finally:
        store.close()
        proxy.stop()
    assert redmodel.Store(redis_client).get(Ctr, "c") == Ctr(2, 2.5, id="c")


def test_lost_update_reply_is_settled(redis_server: Any, redis_client: Any) -> None:
    proxy, store = proxied(redis_server)
    try:
        store.save(Ctr(1, id="c"))
        proxy.lose_reply(lambda name: name.upper() in ("EVALSHA", "EVAL"), when=has("a17c:c"))
        assert store.update(Ctr, "c", n=7) is True
        assert proxy.events
    finally:
        store.close()
        proxy.stop()
    assert redmodel.Store(redis_client).get(Ctr, "c") == Ctr(7, id="c")


# ---- wrong-typed keys planted beforehand ---------------------------------------------------


@pytest.mark.parametrize("call", ["save", "get", "update", "incr", "save_many", "get_many",
                                  "exists_then_incr_fields"])
def test_wrongtype_object_key_names_the_key(store: redmodel.Store, call: str) -> None:
    """failures.md: error replies raise ServerError naming the keys (`.keys`)."""
    store.get(Ctr, "zzz")                     # registry recorded
    store.client.set("a17c:c", "x")
    with pytest.raises(redis.ResponseError) as e:
        if call == "save":
            store.save(Ctr(1, id="c"))
        elif call == "get":
            store.get(Ctr, "c")
        elif call == "update":
            store.update(Ctr, "c", n=1)
        elif call == "incr":
            store.incr(Ctr, "c", "n", 1)
        elif call == "save_many":
            store.save_many([Ctr(1, id="c")])
        elif call == "get_many":
            store.get_many(Ctr, ["c"])
        else:
            store.incr_fields(Ctr, "c", {"n": 1})
    assert isinstance(e.value, redmodel.ServerError), repr(e.value)
    assert "a17c:c" in e.value.keys, (e.value.keys, str(e.value))
    assert store.client.get("a17c:c") == b"x"


@pytest.mark.parametrize("call", ["save", "get", "incr"])
def test_wrongtype_registry_key_names_the_key(store: redmodel.Store, call: str) -> None:
    store.client.set("a17c:%schema", "x")
    store.client.hset("a17c:c", "n", "1")
    with pytest.raises((redmodel.RedmodelError, redis.ResponseError)) as e:
        if call == "save":
            store.save(Ctr(1, id="c"))
        elif call == "get":
            store.get(Ctr, "c")
        else:
            store.incr(Ctr, "c", "n")
    assert "a17c:%schema" in str(e.value) or "a17c:%schema" in getattr(e.value, "keys", ())
    assert store.client.hgetall("a17c:c") == {b"n": b"1"}


def test_wrongtype_index_key_on_single_save_writes_nothing(store: redmodel.Store) -> None:
    """queries.md: one script per object that checks every key's type before it writes."""
    store.save(Ix("red", 1.0, id="a"))
    idx = [k for k in store.client.keys("a17ix:%idx*") if b"price" in k or b"color" in k]
    assert idx
    store.client.delete(*idx)
    for k in idx:
        store.client.set(k, "x")
    with pytest.raises(redis.ResponseError) as e:
        store.save(Ix("blue", 2.0, id="b"))
    assert store.client.exists("a17ix:b") == 0
    assert any(k.decode() in str(e.value) or k.decode() in getattr(e.value, "keys", ())
               for k in idx), str(e.value)


# ---- registry ------------------------------------------------------------------------------


def test_conflicting_schema_from_another_store_is_refused_after_cache(redis_client: Any) -> None:
    """migrations.md: a model registered with another schema -> SchemaConflictError."""
    a = redmodel.Store(redis_client)
    a.save(Ctr(1, id="c"))
    a.get(Ctr, "c")

    @redmodel.model(prefix="a17c")
    @attrs.define
    class Ctr2:
        n: str
        id: str = redmodel.key_field(generated=False)

    b = redmodel.Store(redis_client)
    with pytest.raises(redmodel.SchemaConflictError):
        b.save(Ctr2("x", id="d"))
    assert redis_client.exists("a17c:d") == 0
    with pytest.raises(redmodel.SchemaConflictError):
        b.get(Ctr2, "c")
