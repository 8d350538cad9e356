"""store.migrate_buckets: moving stored objects to another bucket count (docs/migrations.md,
"Changing the bucket count"), in every layout, with indexes, uniques, blind indexes and
TTLs, resumed after a stop, refused before any write on bad input, on one server and on a
cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster

import redmodel
from redmodel import _rebucket
from redmodel._models._schema import spec_of
from redmodel._plan import iterate_sync
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, RedisServer
from tests.budget import scaled
from tests.keys import use_keys
from tests.strategies import TRICKY

INDEX_KEY = redmodel.generate_index_key()
FERNET_KEY = redmodel.codecs.FernetTransform.generate_key()


@pytest.fixture(autouse=True)
def crypto_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, fernet=[FERNET_KEY], index=[INDEX_KEY])


@attrs.define
class Spot:
    city: str
    lines: list[str] = attrs.Factory(list)


def version(kind: str, buckets: int | None, prefix: str = "rb") -> type:
    """One version of the test's model: every call makes a class of the same module and
    qualified name, so the registry takes two calls for two versions of one model."""
    if kind == "indexed":
        @redmodel.model(prefix=prefix, buckets=buckets, unique=[("color", "size")])
        @attrs.define
        class Thing:
            color: str = redmodel.field(index=True)
            size: int = redmodel.field(index="range", default=0)
            sku: str | None = redmodel.field(unique=True, default=None)
            ssn: str | None = redmodel.field(codec="json|fernet", index="blind",
                                             default=None)
            id: str = redmodel.key_field(generated=False)
    elif kind == "flat":
        @redmodel.model(prefix=prefix, buckets=buckets, layout="flat")  # type: ignore[no-redef]
        @attrs.define
        class Thing:
            color: str
            size: int = 0
            spot: Spot = attrs.Factory(lambda: Spot("x"))
            id: str = redmodel.key_field(generated=False)
    else:
        @redmodel.model(prefix=prefix, buckets=buckets, layout=kind)  # type: ignore[no-redef]
        @attrs.define
        class Thing:
            color: str
            size: int = 0
            id: str = redmodel.key_field(generated=False)
    return Thing


def make(model: type, kind: str, i: int, id: str) -> Any:
    color = ["red", "blue", "green"][i % 3]
    if kind == "indexed":
        return model(color, i, sku=f"s{i}", ssn=f"n{i % 5}", id=id)
    if kind == "flat":
        return model(color, i, Spot(f"c{i}", [str(i)] * (i % 3)), id=id)
    return model(color, i, id=id)


def as_new(new: type, obj: Any) -> Any:
    """``obj`` as an object of the model's new version."""
    return new(**{a.name: getattr(obj, a.name) for a in attrs.fields(type(obj))})


def all_keys(client: Any) -> set[str]:
    if hasattr(client, "get_primaries"):
        return {k.decode() for node in client.get_primaries()
                for k in client.scan_iter("*", target_nodes=node)}
    return {k.decode() for k in client.scan_iter("*")}


def snapshot(client: Any) -> dict[str, Any]:
    return {k: client.dump(k) for k in all_keys(client)}


def check_moved(store: Any, old: type, new: type, kind: str, objs: list[Any],
                ttls: set[str]) -> None:
    """Every object reads as it was, once, at its new key only, with its TTL; the index
    is clean and answers; the registry records the new count and no move."""
    client = store.client
    o, n = spec_of(old), spec_of(new)
    keys = all_keys(client)
    assert store.get_many(new, [x.id for x in objs]) == objs
    for obj in objs:
        ttl = store.ttl(new, obj.id)
        assert (ttl is not None and ttl > 0) == (obj.id in ttls), obj.id
        if o.key_for(obj.id) != n.key_for(obj.id):
            assert not any(k == o.key_for(obj.id) or k.startswith(o.key_for(obj.id) + ":")
                           for k in keys), obj.id
    assert sorted(x.id for x in store.scan(new)) == sorted(x.id for x in objs)
    assert f"{o.prefix}:%rebucket" not in keys
    if kind == "indexed":
        assert store.verify(new) == []
        roots = {n.index_root(t) for t in n.tags()}
        stray = [k for k in keys if "%idx" in k and k[: k.index("%idx") + 5] not in roots]
        assert stray == []
        for color in ("red", "blue", "green"):
            assert sorted(x.id for x in store.find(new, color=color)) == sorted(
                x.id for x in objs if x.color == color)
        for obj in objs:
            assert store.get_by(new, sku=obj.sku) == obj
            assert store.get_by(new, color=obj.color, size=obj.size) is not None
        assert store.find(new, ssn="n1").count() == sum(1 for x in objs if x.ssn == "n1")
        assert store.find(new, size=redmodel.ge(2)).count() == sum(
            1 for x in objs if x.size >= 2)
    record = client.hgetall(f"{o.prefix}:%schema")
    if record:
        assert b"moving" not in record
        assert f'"buckets":{"null" if n.buckets is None else n.buckets}'.encode() in \
            record[b"schema"]


ids = st.lists(st.one_of(TRICKY, st.text(max_size=3)), min_size=1, max_size=5).map(
    "".join).filter(bool)
counts = st.sampled_from([None, 1, 3, 8])


@settings(max_examples=scaled(30, floor=5))
@given(kind=st.sampled_from(["hash", "blob", "flat", "indexed"]),
       change=st.tuples(counts, counts).filter(lambda c: c[0] != c[1]),
       drawn=st.lists(st.tuples(ids, st.booleans()), min_size=1, max_size=10,
                      unique_by=lambda t: t[0]),
       count=st.integers(1, 6))
def test_every_object_moves_once_with_its_ttl_and_index(
        redis_client: redis.Redis, kind: str, change: tuple[int | None, int | None],
        drawn: list[tuple[str, bool]], count: int) -> None:
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    src, dst = change
    old, new = version(kind, src), version(kind, dst)
    objs = [make(old, kind, i, id) for i, (id, _) in enumerate(drawn)]
    ttls = {id for id, expires in drawn if expires}
    for obj in objs:
        store.save(obj, ttl=3600 if obj.id in ttls else None)
    # (an id may keep its key: 8 -> 3 buckets, say; it is not moved, but counted as stored)
    moves = sum(1 for o in objs if spec_of(old).key_for(o.id) != spec_of(new).key_for(o.id))
    seen: list[tuple[int, int]] = []
    assert store.migrate_buckets(new, from_buckets=src, count=count,
                                 progress=lambda d, t: seen.append((d, t))) == moves
    assert seen[0] == (0, moves) and seen[-1] == (moves, moves)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    moved = [as_new(new, o) for o in objs]
    check_moved(store, old, new, kind, moved, ttls)
    # a fresh store takes the new version and refuses the old one
    fresh = redmodel.Store(redis_client)
    assert fresh.count(new) == len(objs)
    with pytest.raises(redmodel.SchemaConflictError):
        redmodel.Store(redis_client).count(old)


class Stop(Exception):
    pass


@pytest.mark.parametrize("kind", ["hash", "flat", "indexed"])
def test_a_stopped_move_is_refused_to_users_and_resumes(redis_client: redis.Redis,
                                                        kind: str) -> None:
    store = redmodel.Store(redis_client)
    old, new = version(kind, 2), version(kind, 7)
    objs = [make(old, kind, i, f"o:{i}{{*}}%\\") for i in range(40)]
    store.save_many(objs)
    o, n = spec_of(old), spec_of(new)
    movable = [x for x in objs if o.key_for(x.id) != n.key_for(x.id)]
    seen: list[tuple[int, int]] = []

    def stop_after_a_move(done: int, total: int) -> None:
        seen.append((done, total))
        # the first call comes before any page; stop after the first page that moved
        # something (a SCAN page of 4 may hold only leaves, or other tests' keys)
        if len(seen) > 1 and done > 0:
            raise Stop

    with pytest.raises(Stop):
        store.migrate_buckets(new, from_buckets=2, count=4, progress=stop_after_a_move)
    stopped_at = seen[-1][0]
    assert 0 < stopped_at < len(movable)
    # meanwhile: no store may use either version; each object is at one key, whole
    for model in (old, new):
        with pytest.raises(redmodel.SchemaConflictError, match="migrate_buckets"):
            redmodel.Store(redis_client).get(model, objs[0].id)
    keys = all_keys(redis_client)
    for x in objs:
        assert (o.key_for(x.id) in keys) + (n.key_for(x.id) in keys) == 1 or \
            o.key_for(x.id) == n.key_for(x.id) in keys
    # resumed: it starts where the stop left it (one page at most again)
    again: list[tuple[int, int]] = []
    assert store.migrate_buckets(new, from_buckets=2, count=4,
                                 progress=lambda d, t: again.append((d, t))) == len(movable)
    assert again[0] == (stopped_at, len(movable))
    moved = [as_new(new, x) for x in objs]
    check_moved(store, old, new, kind, moved, set())
    with pytest.raises(redmodel.ValidationError, match="already declares"):
        store.migrate_buckets(new, from_buckets=7)


def test_bad_input_is_refused_before_any_write(redis_client: redis.Redis) -> None:
    store = redmodel.Store(redis_client)
    old, new = version("indexed", None), version("indexed", 4)
    empty = version("hash", 3, prefix="rb_empty")
    with pytest.raises(redmodel.ValidationError, match="no Thing objects"):
        store.migrate_buckets(empty, from_buckets=None)
    assert all_keys(redis_client) == set()
    store.save_many([make(old, "indexed", i, f"b{i}") for i in range(5)])
    before = snapshot(redis_client)
    for bad, match in [(4, "already declares"), (2, "records no buckets"),
                       (0, "from_buckets must be"), (True, "from_buckets must be"),
                       ("4", "from_buckets must be")]:
        with pytest.raises(redmodel.ValidationError, match=match):
            store.migrate_buckets(new, from_buckets=bad)
    with pytest.raises(redmodel.ValidationError, match="count"):
        store.migrate_buckets(new, from_buckets=None, count=0)
    with pytest.raises(redmodel.ValidationError, match="progress"):
        store.migrate_buckets(new, from_buckets=None, progress="yes")  # type: ignore[arg-type]
    # another model's prefix: refused as the registry refuses it
    other = version("hash", 4)
    other.__qualname__ = "Other"
    with pytest.raises(redmodel.SchemaConflictError):
        store.migrate_buckets(other, from_buckets=None)
    assert snapshot(redis_client) == before


def spread(kind: str, cluster: bool) -> tuple[int | None, int | None]:
    # an index or a flat object's leaves share a slot only with buckets on a cluster
    return (2, 5) if cluster and kind in ("indexed", "flat") else (None, 3)


@pytest.mark.parametrize("kind", ["hash", "blob", "flat", "indexed"])
def test_every_store_moves_the_objects(any_store: Any, kind: str) -> None:
    cluster = hasattr(any_store.client, "get_primaries")
    src, dst = spread(kind, cluster)
    old, new = version(kind, src), version(kind, dst)
    objs = [make(old, kind, i, f"a{{{i}}}:*") for i in range(12)]
    for x in objs:
        any_store.save(x, ttl=600 if int(x.size) % 2 else None)
    ttls = {x.id for x in objs if int(x.size) % 2}
    o, n = spec_of(old), spec_of(new)
    movable = sum(1 for x in objs if o.key_for(x.id) != n.key_for(x.id))
    assert any_store.migrate_buckets(new, from_buckets=src, count=5) == movable
    moved = [as_new(new, x) for x in objs]
    check_moved(any_store, old, new, kind, moved, ttls)


@pytest.mark.parametrize("kind", ["hash", "flat"])
def test_a_key_in_the_way_stops_the_move_with_nothing_half_moved(any_store: Any,
                                                                 kind: str) -> None:
    cluster = hasattr(any_store.client, "get_primaries")
    src, dst = spread(kind, cluster)
    old, new = version(kind, src), version(kind, dst)
    objs = [make(old, kind, i, f"w{i}") for i in range(8)]
    for x in objs:
        any_store.save(x)
    o, n = spec_of(old), spec_of(new)
    victim = next(x for x in objs if o.key_for(x.id) != n.key_for(x.id))
    planted = n.key_for(victim.id)
    any_store.client.rpush(planted, "not a thing")
    before = snapshot(any_store.client)
    with pytest.raises(redmodel.ValidationError, match="already exists") as e:
        any_store.migrate_buckets(new, from_buckets=src, count=100)
    assert e.value.key == planted
    after = snapshot(any_store.client)
    # only the move's own bookkeeping was written: its progress and the registry's mark
    assert {k: v for k, v in after.items() if not k.endswith(("%rebucket", "%schema"))} \
        == {k: v for k, v in before.items() if not k.endswith("%schema")}
    any_store.client.delete(planted)
    any_store.migrate_buckets(new, from_buckets=src, count=100)
    moved = [as_new(new, x) for x in objs]
    check_moved(any_store, old, new, kind, moved, set())


class Killed(Exception):
    pass


@pytest.mark.parametrize("kind", ["hash", "flat", "indexed"])
def test_a_cluster_move_killed_between_copy_and_delete_resumes(
        redis_cluster_client: Any, kind: str) -> None:
    """Killed after a page's copies were made and before the old keys were deleted: both
    copies exist (stores are refused meanwhile), and the next run finishes the page."""
    client = redis_cluster_client
    store = redmodel.Store(client)
    old, new = version(kind, 2), version(kind, 5)
    objs = [make(old, kind, i, f"k{i}:{{}}") for i in range(10)]
    for x in objs:
        store.save(x, ttl=900)
    plan = _rebucket.migrate_plan(new, 2, 4, store._targets(), True, True)

    def execute(batch: Any) -> Any:
        if any(c[0] == "EVALSHA" and "drop" in c for c in batch.commands):
            raise Killed
        return store._execute(batch)

    with pytest.raises(Killed):
        list(iterate_sync(plan, execute))
    o, n = spec_of(old), spec_of(new)
    keys = all_keys(client)
    both = [x for x in objs if o.key_for(x.id) in keys and n.key_for(x.id) in keys]
    assert both
    # a copy need not DUMP the same as its source (an encoding may differ): it is this
    # move's own, kept in its progress, and is replaced, even when the resumed run's SCAN
    # finds its object in another page than the stopped run did (count=1 below)
    for x in both:
        copy = n.key_for(x.id)
        if kind == "flat":
            client.append(next(k for k in keys if k.startswith(copy + ":")), "x")
        else:
            client.hset(copy, "junk", "1")
    with pytest.raises(redmodel.SchemaConflictError, match="migrate_buckets"):
        redmodel.Store(client).get(new, objs[0].id)
    movable = sum(1 for x in objs if o.key_for(x.id) != n.key_for(x.id))
    assert store.migrate_buckets(new, from_buckets=2, count=1) == movable
    check_moved(store, old, new, kind, [as_new(new, x) for x in objs],
                {x.id for x in objs})


def test_an_async_store_awaits_a_coroutine_progress(redis_client: redis.Redis,
                                                   redis_url: str) -> None:
    old, new = version("blob", 3), version("blob", None)
    redmodel.Store(redis_client).save_many([make(old, "blob", i, f"c{i}") for i in range(9)])
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        seen.append((done, total))

    async def run() -> int:
        astore = redmodel.AsyncStore.from_url(redis_url)
        try:
            return await astore.migrate_buckets(new, from_buckets=3, count=4,
                                                progress=progress)
        finally:
            await astore.aclose()

    assert asyncio.run(run()) == 9
    assert seen[0] == (0, 9) and seen[-1] == (9, 9)
    assert sorted(x.id for x in redmodel.Store(redis_client).scan(new)) == sorted(
        f"c{i}" for i in range(9))


def test_objects_that_keep_their_keys_still_get_the_new_count_recorded(
        redis_client: redis.Redis) -> None:
    store = redmodel.Store(redis_client)
    old, new = version("indexed", 4), version("indexed", 8)
    o, n = spec_of(old), spec_of(new)
    stay = [i for i in range(200) if o.key_for(f"s{i}") == n.key_for(f"s{i}")][:6]
    objs = [make(old, "indexed", i, f"s{i}") for i in stay]
    store.save_many(objs)
    assert store.migrate_buckets(new, from_buckets=4) == 0
    check_moved(store, old, new, "indexed", [as_new(new, x) for x in objs], set())


POLICY = redmodel.ResendPolicy(attempts=3, backoff_base=0.0, deadline=5.0)


def test_a_lost_reply_to_a_page_is_resent_on_one_server(redis_server: RedisServer,
                                                        redis_client: redis.Redis) -> None:
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=1)
        store = redmodel.Store(client, resend=POLICY)
        try:
            old, new = version("flat", None), version("flat", 4)
            objs = [make(old, "flat", i, f"l{i}") for i in range(12)]
            store.save_many(objs)
            proxy.lose_reply("EVALSHA", when=lambda args: b"move" in args)
            moved = store.migrate_buckets(new, from_buckets=None, count=5)
            assert proxy.armed == 0  # the fault fired
            # the lost call moved its page; the resent one answers the first run's count
            # from its memo (32F: docs/migrations.md says the count is exact)
            assert moved == len(objs)
            check_moved(store, old, new, "flat", [as_new(new, x) for x in objs], set())
        finally:
            store.close()


def test_a_lost_copy_on_a_cluster_stops_the_move_and_a_new_run_finishes_it(
        redis_cluster: RedisClusterServer, redis_cluster_client: RedisCluster) -> None:
    redis_cluster_client.flushall(target_nodes=RedisCluster.PRIMARIES)
    with ClusterFaultProxy(redis_cluster.addresses) as proxies:
        host, port = proxies.startup_nodes[0]
        client = RedisCluster(host=host, port=port, socket_timeout=1,
                              address_remap=proxies.address_remap)
        store = redmodel.Store(client, resend=POLICY)
        try:
            old, new = version("hash", None), version("hash", 3)
            objs = [make(old, "hash", i, f"l{i}") for i in range(12)]
            for x in objs:
                store.save(x, ttl=300)
            proxies.lose_reply("RESTORE")
            with pytest.raises(redmodel.OutcomeUnknownError):
                store.migrate_buckets(new, from_buckets=None, count=5)
            keys = all_keys(redis_cluster_client)
            assert all(spec_of(old).key_for(x.id) in keys or spec_of(new).key_for(x.id)
                       in keys for x in objs)
            o, n = spec_of(old), spec_of(new)
            assert store.migrate_buckets(new, from_buckets=None, count=5) == sum(
                1 for x in objs if o.key_for(x.id) != n.key_for(x.id))
            check_moved(store, old, new, "hash", [as_new(new, x) for x in objs],
                        {x.id for x in objs})
        finally:
            store.close()


def test_a_version_without_the_old_indexes_leaves_no_index_key_behind(
        redis_client: redis.Redis) -> None:
    store = redmodel.Store(redis_client)
    old, new = version("indexed", 2), version("hash", 3)
    store.save_many([make(old, "indexed", i, f"d{i}") for i in range(8)])
    assert any("%idx" in k for k in all_keys(redis_client))
    store.migrate_buckets(new, from_buckets=2)
    assert [k for k in all_keys(redis_client) if "%idx" in k] == []
    record = redis_client.hgetall("rb:%schema")
    assert not [f for f in record if f.startswith((b"index:", b"unique:"))]
    assert sorted(x.id for x in store.scan(new)) == sorted(f"d{i}" for i in range(8))


@pytest.mark.parametrize("writes", ["once", "always"])
def test_objects_an_unstopped_writer_saves_meanwhile_are_moved_or_refused(
        any_store: Any, writes: str) -> None:
    """A process of the old version that was not stopped (it checked the model before the
    move, so the registry cannot stop it) saves objects at old keys during the move: a
    further pass moves them; if they keep coming, the move stops and says so."""
    cluster = hasattr(any_store.client, "get_primaries")
    src, dst = spread("hash", cluster)
    old, new = version("hash", src), version("hash", dst)
    writer = redmodel.Store(any_store.client, registry=False)
    for i in range(6):
        writer.save(make(old, "hash", i, f"u{i}"))
    extra = iter(range(100, 200))

    def write(done: int, total: int) -> None:
        if writes == "always" or done == 0:
            writer.save(make(old, "hash", 0, f"late{next(extra)}"))

    if writes == "always":
        with pytest.raises(redmodel.ValidationError, match="keep appearing"):
            any_store.migrate_buckets(new, from_buckets=src, progress=write)
        any_store.migrate_buckets(new, from_buckets=src)  # the writer stopped
    else:
        any_store.migrate_buckets(new, from_buckets=src, progress=write)
    o = spec_of(old)
    saved = [x for x in all_keys(any_store.client) if "%" not in x]
    assert saved and not [k for k in saved if k.startswith(o.object_prefix(o.tag_of("u1")))
                          and o.id_of_key(k) is not None and o.key_of_text(
                              o.id_of_key(k) or "") == k]
    ids = sorted(x.id for x in any_store.scan(new))
    assert len(ids) == len(set(ids)) == len(saved)
    assert {f"u{i}" for i in range(6)} <= set(ids) and any(i.startswith("late") for i in ids)


def test_a_move_whose_progress_was_never_saved_starts_again(redis_client: redis.Redis
                                                            ) -> None:
    """The registry holds this move's own `moving` mark but no progress (the start's
    progress write lost): nothing was moved, and migrate_buckets starts the move; another
    move's mark without progress is still refused, nothing written."""
    store = redmodel.Store(redis_client)
    old, new = version("hash", 4), version("hash", 8)
    objs = [make(old, "hash", i, f"m{i}") for i in range(10)]
    store.save_many(objs)
    rkey = "rb:%schema"
    redis_client.hset(rkey, "moving", "buckets=4 -> buckets=16")   # another move's mark
    before = snapshot(redis_client)
    with pytest.raises(redmodel.SchemaConflictError, match="progress"):
        redmodel.Store(redis_client).migrate_buckets(new, from_buckets=4)
    assert snapshot(redis_client) == before
    redis_client.hset(rkey, "moving", _rebucket.mark_of(4, 8))      # this move's own
    redmodel.Store(redis_client).migrate_buckets(new, from_buckets=4)
    check_moved(redmodel.Store(redis_client), old, new, "hash",
                [as_new(new, x) for x in objs], set())
