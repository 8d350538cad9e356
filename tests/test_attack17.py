"""Attacks on issue 17's fast paths (single calls, compiled codecs, short incr, packed
bulk, AsyncStore): each test states a promise of docs/*.md. Failing tests are findings
(`# F<n>:`); the others held and are kept for regression value."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import math
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import FaultProxy, has
from redmodel.transactions import Transaction
from tests.budget import scaled
from tests.faults import proxied_store


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
whens = st.datetimes(timezones=st.sampled_from(
    [dt.timezone.utc, dt.timezone(dt.timedelta(hours=5)), None]))
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


# ---- F1: the generated (and generic) decoders are not strict -------------------------------


@redmodel.model(prefix="a17u")
@attrs.define
class Up:
    when: dt.datetime = redmodel.field(upgrade=lambda v: dt.datetime(1999, 1, 1))
    n: int = redmodel.field(default=0, upgrade=lambda v: -1)
    f: float = redmodel.field(default=0.0, upgrade=lambda v: -1.0)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize(("field", "raw", "upgraded"), [
    ("when", "2020-01-01", dt.datetime(1999, 1, 1)),   # a `date` field's text
    ("n", "1_000", -1),                                # Python syntax, not decimal text
    ("n", " 1", -1),
    ("f", "1_0.5", -1.0),
    ("f", "1e999", -1.0),                              # not a finite float's text: reads inf
])
def test_values_that_are_not_exactly_the_declared_type_reach_upgrade(
        store: redmodel.Store, field: str, raw: str, upgraded: Any) -> None:
    # F1: migrations.md "Strict decoding": "A stored value that is not exactly of the
    # declared type is a DecodeError naming the key" and "`upgrade=` is called only for
    # values that do not decode strictly". A `date` text in a `datetime` field (a date field
    # changed to datetime), `1_000` or ` 1` in an int field, `1_0.5`/`1e999` in a float
    # field decode silently (midnight, 1000, 1, 10.5, inf) on get, get_many, scan, tx.get
    # and AsyncStore.get alike, and `upgrade` is never called.
    store.get(Up, "zz")
    store.client.hset("a17u:a", mapping={"when": "2020-01-01T00:00:00", "n": "1", "f": "1.5"})
    store.client.hset("a17u:a", field, raw)
    assert getattr(store.get(Up, "a"), field) == upgraded


# ---- held: the same answer from every path -------------------------------------------------


INCR_CASES = [
    ({"n": "5", "x": "0.1"}, "x", 0.2),
    ({"n": str(2**63 - 1), "x": "0.1"}, "n", 1),
    ({"n": str(2**70), "x": "0.1"}, "n", 1),
    ({"n": "abc", "x": "0.1"}, "n", 1),
    ({"n": "05", "x": "0.1"}, "n", 1),
    ({"x": "0.1"}, "n", 1),
    ({"n": "5", "x": "1e308"}, "x", 1e308),
    ({"n": "5", "x": "nan"}, "x", 1.0),
    ({"n": "5", "x": "-0.0"}, "x", -0.0),
    ({"n": "5", "x": "0.1"}, "x", 2**53 + 1),
    ({"n": "5", "x": "0.1"}, "n", 2**63),
    ({"n": "5", "x": "0.1"}, "n", True),
]


def test_incr_short_path_answers_as_incr_fields_and_async(redis_url: str,
                                                          store: redmodel.Store) -> None:
    """store.md: incr is checked first (exists, a number, no 64-bit overflow) and writes
    the double sum as its repr; the short script refuses what it cannot decide and hands it
    to incr_fields. Sync incr, AsyncStore.incr and incr_fields agree on every case."""
    client = store.client

    def outcome(fn: Any) -> tuple[Any, Any]:
        client.delete("a17c:c")
        client.hset("a17c:c", mapping=raw)
        try:
            got: Any = fn()
        except redmodel.RedmodelError as e:
            got = type(e)
        return got, client.hgetall("a17c:c")

    async def aincr(field: str, amount: Any) -> Any:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            return await astore.incr(Ctr, "c", field, amount)

    store.get(Ctr, "zz")
    for raw, field, amount in INCR_CASES:
        one = outcome(functools.partial(store.incr, Ctr, "c", field, amount))
        many = outcome(functools.partial(store.incr_fields, Ctr, "c", {field: amount}))
        many = (many[0][field] if isinstance(many[0], dict) else many[0], many[1])
        other = outcome(lambda f=field, a=amount: asyncio.run(aincr(f, a)))  # type: ignore
        assert one == many == other, (raw, field, amount, one, many, other)


@pytest.mark.parametrize("protocol", [2, 3])
def test_fast_paths_under_resp3(redis_server: Any, protocol: int) -> None:
    """store.md: plans see replies "as the connection's parser gives them": RESP3 maps and
    RESP2 lists give the same objects on the single-call and bulk paths, sync and async."""
    store = redmodel.Store(redis.Redis(host=redis_server.host, port=redis_server.port,
                                       protocol=protocol))
    store.client.flushall()
    objs = [Ctr(i, i / 7, id=f"k{i}") for i in range(20)]
    assert store.save_many(objs) == 20
    assert store.get(Ctr, "k3") == objs[3]
    assert store.get_many(Ctr, ["k1", "nope"]) == [objs[1], None]
    assert store.incr(Ctr, "k3", "n", 2) == 5
    assert store.exists(Ctr, "k3") and not store.exists(Ctr, "nope")
    store.client.set("a17c:k9", "x")
    with pytest.raises(redmodel.ServerError) as e:
        store.get_many(Ctr, [f"k{i}" for i in range(20)])
    assert e.value.keys == ("a17c:k9",)

    async def run() -> None:
        astore = redmodel.AsyncStore(redis.asyncio.Redis(
            host=redis_server.host, port=redis_server.port, protocol=protocol))
        try:
            assert await astore.get(Ctr, "k4") == objs[4]
            assert await astore.incr(Ctr, "k4", "n", 1) == 5
            with pytest.raises(redmodel.ServerError) as e:
                await astore.get(Ctr, "k9")
            assert e.value.keys == ("a17c:k9",)
            with pytest.raises(redmodel.ServerError):
                await astore.save_many(objs)
        finally:
            await astore.aclose()

    asyncio.run(run())
    store.close()


def test_async_cancelled_call_leaves_no_stale_reply(redis_server: Any,
                                                    redis_client: Any) -> None:
    """AsyncStore reads buffered replies straight from hiredis: a call cancelled while its
    reply is on its way must not leave that reply for the next call on the connection."""
    redmodel.Store(redis_client).save_many([Ctr(i, id=f"k{i}") for i in range(8)])

    async def run() -> None:
        with FaultProxy(redis_server.host, redis_server.port) as proxy:
            astore = redmodel.AsyncStore(redis.asyncio.Redis(host=proxy.host,
                                                             port=proxy.port))
            try:
                await astore.get(Ctr, "k0")
                proxy.stall("HGETALL", 0.4, when=has("a17c:k1"))
                with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                    await asyncio.wait_for(astore.get(Ctr, "k1"), 0.1)
                for i in (2, 3, 4):
                    assert (await astore.get(Ctr, f"k{i}")) == Ctr(i, id=f"k{i}")
                await asyncio.sleep(0.45)
                assert (await astore.get(Ctr, "k5")) == Ctr(5, id="k5")
                got = await asyncio.gather(*[astore.get(Ctr, f"k{i % 8}") for i in range(40)])
                assert [g.id for g in got] == [f"k{i % 8}" for i in range(40)]
            finally:
                await astore.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("call", ["save", "get", "incr", "exists", "delete", "update"])
def test_unreadable_registry_record_refuses_every_single_call_twice(store: redmodel.Store,
                                                                     call: str) -> None:
    """migrations.md: a record redmodel cannot read: "a store's first use of the model
    raises SchemaConflictError naming the key ..., nothing written" (and a refused check is
    not cached as done: the second call is refused too)."""
    store.client.hset("a17c:%schema", mapping={"owner": "x", "schema": "{not json"})
    store.client.hset("a17c:a", "n", "1")
    fn = {"save": lambda: store.save(Ctr(5, id="a")), "get": lambda: store.get(Ctr, "a"),
          "incr": lambda: store.incr(Ctr, "a", "n", 1), "exists": lambda: store.exists(Ctr, "a"),
          "delete": lambda: store.delete(Ctr, "a"),
          "update": lambda: store.update(Ctr, "a", n=7)}[call]
    for _ in range(2):
        with pytest.raises(redmodel.SchemaConflictError, match="a17c:%schema"):
            fn()
    assert store.client.hgetall("a17c:a") == {b"n": b"1"}


@redmodel.model(prefix="a17e")
@attrs.define
class Enc:
    name: str
    secret: str = redmodel.field(codec="json|fernet", default="")
    num: int = redmodel.field(codec="json|fernet", default=0)
    opt: str | None = redmodel.field(codec="json|fernet", default=None)
    id: str = redmodel.key_field(generated=False)


SECRET = "A17SUPERSECRETVALUE"


def everything(client: Any) -> bytes:
    out: list[bytes] = []
    for k in client.keys("*"):
        out.append(k)
        t = client.type(k)
        if t == b"hash":
            out += [x for kv in client.hgetall(k).items() for x in kv]
        elif t == b"string":
            out.append(client.get(k))
        elif t == b"set":
            out += list(client.smembers(k))
        elif t == b"zset":
            out += client.zrange(k, 0, -1)
    return b"\n".join(out)


def test_encrypted_fields_never_in_plaintext_on_any_path(redis_url: str,
                                                          store: redmodel.Store) -> None:
    """codecs.md: an encrypted field is hidden in Redis and in errors, whichever path
    (single save/update, save_many, transaction, AsyncStore) wrote it."""
    pytest.importorskip("cryptography")
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key()])
    store.save(Enc("n", SECRET, 12345678901, SECRET, id="a"))
    store.save_many([Enc("n", SECRET, 12345678901, SECRET, id="b")])
    assert store.update(Enc, "a", secret=SECRET + "2", opt=SECRET + "3", num=12345678901)
    with Transaction(store) as tx:
        tx.save(Enc("n", SECRET, 12345678901, id="d"))
    for bad in [{"secret": SECRET.encode()}, {"secret": SECRET + "\ud800"}, {"num": SECRET}]:
        with pytest.raises(redmodel.ValidationError) as e:
            store.update(Enc, "a", **bad)
        assert SECRET not in str(e.value) and SECRET not in repr(e.value)

    async def run() -> None:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save(Enc("n", SECRET, 12345678901, id="e"))
            await astore.update(Enc, "e", secret=SECRET)

    asyncio.run(run())
    assert store.get(Enc, "a") == Enc("n", SECRET + "2", 12345678901, SECRET + "3", id="a")
    blob = everything(store.client)
    assert SECRET.encode() not in blob and b"12345678901" not in blob


def test_single_save_without_client_kill_is_outcome_unknown(redis_server: Any,
                                                           redis_client: Any) -> None:
    """failures.md: a resendable write is resent only once its first copy is fenced with
    `CLIENT KILL`; "without them a lost reply to such a write is OutcomeUnknownError". The
    single-call path (`SyncLink._one`, AsyncStore) hands the lost reply to the same rule."""
    redis_client.acl_setuser("a17nokill", enabled=True, passwords=["+pw"], keys=["*"],
                             commands=["+@all", "-client|kill"])
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                           username="a17nokill", password="pw"))
        store.save(Ctr(1, id="a"))
        proxy.lose_reply("HSET", when=has("a17c:a"))
        with pytest.raises(redmodel.OutcomeUnknownError):
            store.save(Ctr(5, id="a"))
        proxy.lose_reply("HGETALL", when=has("a17c:a"))
        assert store.get(Ctr, "a") == Ctr(5, id="a")          # reads are resent

        async def run() -> None:
            astore = redmodel.AsyncStore(redis.asyncio.Redis(
                host=proxy.host, port=proxy.port, username="a17nokill", password="pw"))
            try:
                await astore.get(Ctr, "a")
                proxy.lose_reply("HSET", when=has("a17c:a"))
                with pytest.raises(redmodel.OutcomeUnknownError):
                    await astore.save(Ctr(7, id="a"))
            finally:
                await astore.aclose()

        asyncio.run(run())
        store.close()
    assert redis_client.hgetall("a17c:a") == {b"n": b"7", b"x": b"0.0"}


@pytest.mark.parametrize("exactly_once", [False, True])
def test_async_gathered_incrs_with_lost_replies_apply_once(redis_server: Any,
                                                           redis_client: Any,
                                                           exactly_once: bool) -> None:
    """failures.md: a lost increment is OutcomeUnknownError (never resent), or in
    exactly-once mode resent under its write id; every other call gets its own reply."""
    redmodel.Store(redis_client).save(Ctr(0, id="k"))

    async def run() -> list[Any]:
        with FaultProxy(redis_server.host, redis_server.port) as proxy:
            astore = redmodel.AsyncStore(redis.asyncio.Redis(host=proxy.host, port=proxy.port),
                                         exactly_once=exactly_once)
            try:
                await astore.get(Ctr, "k")
                proxy.lose_reply(lambda n: n.upper() in ("EVALSHA", "EVAL"),
                                 when=has("a17c:k"), times=3)
                return await asyncio.gather(*[astore.incr(Ctr, "k", "n", 1) for _ in range(30)],
                                            return_exceptions=True)
            finally:
                await astore.aclose()

    res = asyncio.run(run())
    oks = [x for x in res if isinstance(x, int)]
    unknown = [x for x in res if isinstance(x, redmodel.OutcomeUnknownError)]
    assert len(oks) + len(unknown) == 30, res
    assert len(set(oks)) == len(oks)
    assert (not unknown) if exactly_once else len(unknown) == 3
    assert int(redis_client.hget("a17c:k", "n")) == 30


def test_transaction_short_path_lost_exec_is_outcome_unknown(redis_server: Any,
                                                             redis_client: Any) -> None:
    """transactions.md: connection lost during EXEC -> OutcomeUnknownError naming the keys,
    never resent: the read-then-HINCRBY short path applies once."""
    redmodel.Store(redis_client).save(Ctr(10, id="h"))
    with proxied_store(redis_server) as (proxy, store):

        @redmodel.transaction(store)
        def buy(tx: Any, hid: str) -> Any:
            tx.get_or_raise(Ctr, hid)
            return tx.incr(Ctr, hid, "n", -1)

        assert buy("h").value == 9
        proxy.lose_reply("EXEC")
        with pytest.raises(redmodel.OutcomeUnknownError) as e:
            buy("h")
        assert "a17c:h" in e.value.keys
        store.close()
    assert redis_client.hget("a17c:h", "n") == b"8"
