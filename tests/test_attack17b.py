"""Attacks on issue 17's fast paths, part 2: indexes, queries, flat layout, async bulk.
Each test states a promise of docs/*.md; failing ones are findings (`# F<n>:`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.testing import has
from tests.faults import proxied_store


@redmodel.model(prefix="a17q")
@attrs.define
class Q:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=0.0)
    n: int = redmodel.field(index="range", default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


QV1 = Q


@attrs.define
class Street:
    line1: str
    line2: str | None = None


@redmodel.model(prefix="a17f", layout="flat")
@attrs.define
class F:
    name: str
    street: Street
    tags: list[str] = attrs.Factory(list)
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17g", layout="flat")
@attrs.define
class G:                      # a fixed shape: generated code
    name: str
    street: Street
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def flat_dump(client: Any, prefix: str) -> dict[bytes, tuple[bytes, bool]]:
    out = {}
    for k in client.keys(f"{prefix}:*"):
        if k.endswith(b"%schema"):
            continue
        out[k] = (client.get(k), client.pttl(k) > 0)
    return out


@pytest.mark.parametrize("model", [F, G])
def test_flat_save_and_save_many_write_the_same_keys(store: redmodel.Store, model: Any) -> None:
    """layouts.md: save_many "does for each what `save` does"."""
    kw: dict[str, Any] = {"tags": ["a", "b", "c"]} if model is F else {}
    objs = [model(f"n{i}", Street("l1", None if i % 2 else "x"), n=i, id=f"i{i}:{{*%\\", **kw)
            for i in range(5)]
    store.save_many(objs, ttl=100)
    a = flat_dump(store.client, model.__name__.lower().join(["a17", ""]))
    store.client.flushall()
    for o in objs:
        store.save(o, ttl=100)
    b = flat_dump(store.client, model.__name__.lower().join(["a17", ""]))
    assert a == b
    assert all(ttl for _, ttl in a.values()), "a leaf without its TTL"
    assert store.get_many(model, [o.id for o in objs]) == objs


def test_flat_save_many_deletes_leaves_of_a_shrunk_list(store: redmodel.Store) -> None:
    """layouts.md: "`save` can delete the leaves that no longer exist (a list that shrank)"."""
    store.save(F("a", Street("l"), tags=["1", "2", "3", "4"], id="x"))
    store.save_many([F("a", Street("l"), tags=["1"], id="x")])
    assert sorted(k for k in store.client.keys("a17f:x:tags*")) == [b"a17f:x:tags:0"]
    assert store.get(F, "x").tags == ["1"]


def test_flat_save_many_without_ttl_keeps_the_expiry_of_every_leaf(store: redmodel.Store) -> None:
    """store.md: "`ttl=None` ... an expiry the key already has is kept"; layouts.md: a TTL
    applies to the whole object."""
    store.save(G("a", Street("l", "m"), id="x"), ttl=100)
    store.save_many([G("b", Street("l2", "m2"), 3, id="x")], ttl=None)
    ttls = {k: store.client.pttl(k) for k in store.client.keys("a17g:x*")}
    assert all(t > 0 for t in ttls.values()), ttls


def test_flat_save_many_wrongtype_object_key_refused_whole(store: redmodel.Store) -> None:
    """layouts.md: a key of another type where the object's key goes refuses its save
    (ServerError naming it, nothing written); store.md: `.written`/`.not_written`."""
    store.get(G, "zz")
    store.client.hset("a17g:b", "x", "1")
    objs = [G("a", Street("l"), id="a"), G("b", Street("l"), id="b"), G("c", Street("l"), id="c")]
    with pytest.raises(redmodel.ServerError) as e:
        store.save_many(objs)
    assert "a17g:b" in e.value.keys or "a17g:b" in str(e.value)
    assert store.client.keys("a17g:b:*") == []
    assert store.client.type("a17g:b") == b"hash"
    written = set(getattr(e.value, "written", ()) or ())
    not_written = set(getattr(e.value, "not_written", ()) or ())
    assert "a17g:b" in not_written
    for k in ("a17g:a", "a17g:c"):
        assert (k in written) == bool(store.client.exists(k)), (written, not_written)


def test_flat_save_many_lost_reply_leaves_whole_objects(redis_server: Any,
                                                         redis_client: Any) -> None:
    """store.md: a save_many chunk whose reply is lost is resent whole (harmless)."""
    objs = [F(f"n{i}", Street("l"), tags=["t"] * i, n=i, id=f"o{i}") for i in range(6)]
    with proxied_store(redis_server) as (proxy, store):
        store.get(F, "zz")
        proxy.lose_reply(lambda n: n.upper() in ("EVALSHA", "EVAL"), when=has("a17f:o0"))
        with contextlib.suppress(redis.ConnectionError):
            store.save_many(objs, ttl=50)
        assert proxy.events
        store.close()
    plain = redmodel.Store(redis_client)
    got = plain.get_many(F, [o.id for o in objs])
    assert all(g is None or g == o for g, o in zip(got, objs, strict=True))
    assert all(redis_client.pttl(k) > 0 for k in redis_client.keys("a17f:o*"))


# ---- indexes ---------------------------------------------------------------------------------


def check_consistent(store: redmodel.Store) -> None:
    assert store.verify(Q) == []
    objs = list(store.scan(Q))
    for color in ("red", "blue", "green"):
        want = sorted(o.id for o in objs if o.color == color)
        assert sorted(o.id for o in store.find(Q, color=color).all()) == want
        assert store.find(Q, color=color).count() == len(want)
    want = sorted(o.id for o in objs if 10 <= o.n < 50)
    got = store.find(Q, n=redmodel.between(10, 50, inclusive=(True, False))).all()
    assert sorted(o.id for o in got) == want
    for o in objs:
        if o.sku is not None:
            assert store.get_by(Q, sku=o.sku) == o


def test_mixed_writes_keep_indexes_right(store: redmodel.Store) -> None:
    """queries.md: every write changes the object and its entries in one script;
    `verify` is clean and every query answers what a scan answers."""
    rng = random.Random(17)
    colors = ["red", "blue", "green"]
    for _ in range(150):
        op = rng.randrange(7)
        i = f"q{rng.randrange(12)}"
        try:
            if op == 0:
                store.save(Q(rng.choice(colors), rng.random(), rng.randrange(60),
                             sku=rng.choice([None, f"s{rng.randrange(5)}"]), id=i))
            elif op == 1:
                store.save_many([Q(rng.choice(colors), rng.random(), rng.randrange(60),
                                   sku=None, id=f"q{rng.randrange(12)}") for _ in range(3)])
            elif op == 2:
                store.update(Q, i, color=rng.choice(colors), n=rng.randrange(60))
            elif op == 3:
                store.incr(Q, i, "n", rng.randrange(-5, 5))
            elif op == 4:
                store.incr_fields(Q, i, {"n": 1, "price": 0.5})
            elif op == 5:
                store.delete(Q, i)
            else:
                store.delete_many(Q, [i, f"q{rng.randrange(12)}"])
        except (redmodel.NotFoundError, redmodel.UniqueViolationError):
            pass
    check_consistent(store)


def test_concurrent_writers_keep_indexes_right(redis_url: str, store: redmodel.Store) -> None:
    def work(seed: int) -> None:
        s = redmodel.Store.from_url(redis_url)
        rng = random.Random(seed)
        for _ in range(60):
            i = f"q{rng.randrange(8)}"
            try:
                r = rng.randrange(4)
                if r == 0:
                    s.save(Q(rng.choice(["red", "blue"]), rng.random(), rng.randrange(60),
                             sku=f"s{rng.randrange(4)}", id=i))
                elif r == 1:
                    s.incr(Q, i, "n", 1)
                elif r == 2:
                    s.update(Q, i, sku=f"s{rng.randrange(4)}", color="green")
                else:
                    s.delete(Q, i)
            except (redmodel.NotFoundError, redmodel.UniqueViolationError):
                pass
        s.close()

    ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check_consistent(store)


def test_lost_reply_to_indexed_incr_is_outcome_unknown(redis_server: Any,
                                                        redis_client: Any) -> None:
    redmodel.Store(redis_client).save(Q("red", 1.0, 5, id="a"))
    with proxied_store(redis_server) as (proxy, store):
        store.get(Q, "a")
        proxy.lose_reply(lambda n: n.upper() in ("EVALSHA", "EVAL"), when=has("a17q:a"))
        with pytest.raises(redmodel.OutcomeUnknownError):
            store.incr(Q, "a", "n", 2)
        store.close()
    plain = redmodel.Store(redis_client)
    assert plain.get(Q, "a").n == 7
    check_consistent(plain)


def test_lost_reply_to_indexed_save_is_settled(redis_server: Any, redis_client: Any) -> None:
    with proxied_store(redis_server) as (proxy, store):
        store.save(Q("red", 1.0, 5, sku="u", id="a"))
        proxy.lose_reply(lambda n: n.upper() in ("EVALSHA", "EVAL"), when=has("a17q:a"))
        store.save(Q("blue", 2.0, 15, sku="v", id="a"))
        assert proxy.events
        store.close()
    plain = redmodel.Store(redis_client)
    assert plain.get(Q, "a") == Q("blue", 2.0, 15, sku="v", id="a")
    check_consistent(plain)


def test_query_notices_index_dropped_by_another_store(redis_client: Any) -> None:
    """queries.md: "a store that has been running all along sees a change made by another
    process on its next query: ... `drop_index`" -> IndexNotReadyError."""
    a = redmodel.Store(redis_client)
    a.save_many([QV1("red", 1.0, i, id=f"a{i}") for i in range(3)])
    assert a.find(QV1, color="red").count() == 3

    class Q:  # the same model, its color index removed (a newer deploy)
        color: str
        price: float = redmodel.field(index="range", default=0.0)
        n: int = redmodel.field(index="range", default=0)
        sku: str | None = redmodel.field(unique=True, default=None)
        id: str = redmodel.key_field(generated=False)

    Q.__qualname__ = "Q"
    Q2 = redmodel.model(prefix="a17q")(attrs.define(Q))

    b = redmodel.Store(redis_client)
    b.get(Q2, "a0")
    b.drop_index(Q2, "color")
    with pytest.raises(redmodel.IndexNotReadyError):
        a.find(QV1, color="red").count()
    with pytest.raises(redmodel.IndexNotReadyError):
        a.find(QV1, color="red").all()


def test_async_save_many_equals_sync(redis_url: str, store: redmodel.Store) -> None:
    objs = [Q(["red", "blue"][i % 2], i / 3, i, sku=f"k{i}", id=f"z{i}:{{}}") for i in range(30)]
    store.save_many(objs)
    sync = {k: store.client.dump(k) and store.client.hgetall(k)
            for k in store.client.keys("a17q:z*")}
    store.client.flushall()

    async def run() -> list[Any]:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save_many(objs, chunk_size=7)
            return await astore.get_many(Q, [o.id for o in objs])

    got = asyncio.run(run())
    assert got == objs
    assert {k: store.client.hgetall(k) for k in store.client.keys("a17q:z*")} == sync
    check_consistent(store)


# ---- F2: a bulk call refused before anything was sent says its keys may have been written --


@redmodel.model(prefix="a17x")
@attrs.define
class Unbucketed:
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("call", ["save_many", "delete_many"])
def test_cluster_bulk_refused_before_sending_lists_every_key_as_not_written(
        redis_cluster_client: Any, call: str) -> None:
    # F2: failures.md puts CrossSlotError with the errors raised before anything is sent;
    # store.md: "When a chunk's outcome is unknown (`OutcomeUnknownError` ...) its keys are
    # in **neither** list", and a bulk error carries `.written` / `.not_written`. An indexed
    # model without buckets on a cluster is refused by a CrossSlotError before its first
    # chunk is sent (nothing reaches any node), yet the error has `.not_written == ()` and
    # says "0 were written, 4 may or may not have been (...: in neither list)". A caller
    # that follows the documented lists re-reads keys that cannot have been written.
    store = redmodel.Store(redis_cluster_client)
    ids = [f"i{i}" for i in range(4)]
    with pytest.raises(redmodel.CrossSlotError) as e:
        if call == "save_many":
            store.save_many([Unbucketed(i, id=x) for i, x in enumerate(ids)])
        else:
            store.delete_many(Unbucketed, ids)
    assert [k for k in redis_cluster_client.keys("a17x:*") if b"%schema" not in k] == []
    assert tuple(e.value.written) == ()
    assert sorted(e.value.not_written) == sorted(f"a17x:{x}" for x in ids), str(e.value)
    assert "may or may not" not in str(e.value)


# ---- held: every path leaves the same keys and bytes (indexed, flat) -------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from redmodel.transactions import Transaction  # noqa: E402
from tests.budget import scaled  # noqa: E402


def whole_db(client: Any) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for k in client.keys("*"):
        if k.endswith(b"%schema"):
            continue
        t = client.type(k)
        if t == b"hash":
            out[k] = client.hgetall(k)
        elif t == b"string":
            out[k] = client.get(k)
        elif t == b"set":
            out[k] = sorted(client.smembers(k))
        elif t == b"zset":   # the expiry set's scores are times: members only
            out[k] = (sorted(client.zrange(k, 0, -1)) if k.endswith(b"%idx:exp")
                      else client.zrange(k, 0, -1, withscores=True))
        else:
            out[k] = t
        out[k] = (out[k], client.pttl(k) > 0)
    return out


q_ids = st.text(alphabet=":{}*%\\ ab\u00e9", min_size=1, max_size=5)
q_objs = st.lists(st.builds(
    Q, color=st.text(max_size=6), price=st.floats(allow_nan=False, allow_infinity=False),
    n=st.integers(-(2**53), 2**53), sku=st.none() | st.text(max_size=4), id=q_ids),
    max_size=4, unique_by=(lambda o: o.id, lambda o: object() if o.sku is None else o.sku))
f_objs = st.lists(st.builds(
    F, name=st.text(max_size=6), street=st.builds(Street, st.text(max_size=4),
                                                 st.none() | st.text(max_size=3)),
    tags=st.lists(st.text(max_size=3), max_size=3), n=st.integers(-(2**70), 2**70), id=q_ids),
    max_size=3, unique_by=lambda o: o.id)


@settings(max_examples=scaled(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objs=q_objs | f_objs, ttl=st.sampled_from([None, 100]))
def test_every_path_leaves_the_same_database(redis_url: str, store: redmodel.Store,
                                             objs: list[Any], ttl: Any) -> None:
    """store.md: save_many sends "the same command per object" (indexed: the same script
    per object); a transaction and AsyncStore run the same plans: the whole database
    (objects, index keys, records, leaves, TTLs) is the same whichever path wrote it."""
    client = store.client
    dumps = []

    async def run() -> None:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save_many(objs, ttl=ttl, chunk_size=2)

    for path in ("save", "save_many", "tx", "async"):
        client.flushall()
        if path == "save":
            for o in objs:
                store.save(o, ttl=ttl)
        elif path == "save_many":
            store.save_many(objs, ttl=ttl)
        elif path == "tx":
            with Transaction(store) as tx:
                for o in objs:
                    tx.save(o, ttl=ttl)
        else:
            asyncio.run(run())
        dumps.append(whole_db(client))
        if objs:
            assert store.get_many(type(objs[0]), [o.id for o in objs]) == objs
    for d in dumps[1:]:
        assert d.keys() == dumps[0].keys(), dumps
        for k in d:
            assert d[k] == dumps[0][k], (k, [x.get(k) for x in dumps])


def test_query_notices_index_rebuilt_as_building_by_another_store(redis_client: Any) -> None:
    """queries.md: a running store sees "a rolling deploy turning an index back to
    `building`" or `drop_index` on its next query (IndexNotReadyError), not an answer from
    the compiled query it cached (the index no longer holds b0)."""
    a = redmodel.Store(redis_client)
    a.save_many([QV1("red", 1.0, i, id=f"a{i}") for i in range(3)])
    assert a.find(QV1, color="red").count() == 3
    assert a.find(QV1, color="red").count() == 3          # the compiled query, cached

    class Q:  # the same model, its color index removed (a newer deploy)
        color: str
        price: float = redmodel.field(index="range", default=0.0)
        n: int = redmodel.field(index="range", default=0)
        sku: str | None = redmodel.field(unique=True, default=None)
        id: str = redmodel.key_field(generated=False)

    Q.__qualname__ = "Q"
    without = redmodel.model(prefix="a17q")(attrs.define(Q))
    b = redmodel.Store(redis_client)
    b.get(without, "a0")
    b.drop_index(without, "color")
    b.save(without("red", 2.0, 9, id="b0"))            # not in the color index
    c = redmodel.Store(redis_client)
    c.get(QV1, "a0")                                   # the older version runs again
    for _ in range(2):
        with pytest.raises(redmodel.IndexNotReadyError):
            a.find(QV1, color="red").ids()
