"""The model and container registries hold against what FINDINGS-16a found: a bucket move
under way refuses every registry-changing operation (F6), a container recorded first keeps
a model out of its prefix (F5), a container's record never expires before its data (F8),
and a record redmodel cannot read is a redmodel error naming its key (F10/F11)."""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._plan import Batch, Plan, script
from redmodel.containers import Queue
from tests.budget import scaled
from tests.test_cli import as_json, redmodel_cli

# ---- F6: a bucket move under way refuses every registry-changing operation --------------


def _version(buckets: int | None) -> Any:
    @redmodel.model(prefix="rg_mv", buckets=buckets)
    @attrs.define
    class Moved:
        n: int = redmodel.field(default=0, index=True)
        id: str = redmodel.key_field(generated=False)

    return Moved


Plain, Bucketed = _version(None), _version(4)


class Stop(Exception):
    pass


def _stop(done: int, total: int) -> None:
    if done > 0:
        raise Stop


def test_every_registry_change_is_refused_while_a_bucket_move_is_under_way(
        redis_client: redis.Redis) -> None:
    ready = redmodel.Store(redis_client)       # checked the model before the move began
    ready.save_many([Plain(i, id=f"a{i}") for i in range(30)])
    with pytest.raises(Stop):
        redmodel.Store(redis_client).migrate_buckets(Bucketed, from_buckets=None, count=5,
                                                     progress=_stop)
    before = redis_client.hgetall("rg_mv:%schema")
    unchecked = redmodel.Store(redis_client, registry=False)
    changes = [
        lambda: redmodel.Store(redis_client).unregister(Bucketed),
        lambda: redmodel.Store(redis_client).unregister(Plain),
        lambda: unchecked.unregister(Bucketed),              # bypasses nothing here
        lambda: redmodel.Store(redis_client).adopt(Bucketed),
        lambda: ready.reindex(Plain),                        # checked before: asks again
        lambda: ready.build_index(Plain, "n"),
        lambda: unchecked.reindex(Bucketed),
        lambda: ready.drop_index(_no_index(), "n"),
        lambda: redmodel.Store(redis_client).count(Bucketed),
        lambda: redmodel.Store(redis_client).count(Plain),
    ]
    for change in changes:
        with pytest.raises(redmodel.SchemaConflictError, match="migrate_buckets"):
            change()
        assert redis_client.hgetall("rg_mv:%schema") == before
    moved = redmodel.Store(redis_client).migrate_buckets(Bucketed, from_buckets=None, count=5)
    assert moved > 0
    store = redmodel.Store(redis_client)
    assert [store.get(Bucketed, f"a{i}").n for i in range(30)] == list(range(30))
    assert list(store.find(Bucketed, n=7)) == [Bucketed(7, id="a7")]


def _send(batch: Batch) -> Plan[Any]:
    replies = yield batch
    return replies[0]


def _no_index() -> Any:
    @redmodel.model(prefix="rg_mv", buckets=4)
    @attrs.define
    class Moved:
        n: int = 0
        id: str = redmodel.key_field(generated=False)

    return Moved


def test_a_move_that_begins_after_a_read_still_refuses_the_registry_write(
        redis_client: redis.Redis) -> None:
    """The registry's scripts check `moving` themselves: a store that read the record just
    before a move marked it writes nothing (the compare-and-set, index states, DEL)."""
    redis_client.hset("rg_mv:%schema", "moving", "no buckets -> buckets=4")
    store = redmodel.Store(redis_client)
    for name, args, refused in [("registry", ["", "{}", "x.Y"], b"MOVING"),
                                ("registry_state", ["index:n", "", "ready"], -1),
                                ("registry_unregister", [], [b"moving",
                                                             b"no buckets -> buckets=4"])]:
        batch = Batch([script(name).call(["rg_mv:%schema"], args)], write=True,
                      keys=["rg_mv:%schema"])
        assert store.run(_send(batch)) == refused
    assert redis_client.hgetall("rg_mv:%schema") == {b"moving": b"no buckets -> buckets=4"}


# ---- F5: a container recorded first keeps a model out of its prefix ----------------------


@redmodel.model(prefix="rg_box")
@attrs.define
class Box:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def test_a_model_is_refused_a_prefix_holding_a_recorded_container(
        redis_client: redis.Redis) -> None:
    queue = Queue(redmodel.Store(redis_client), ("rg_box", "q", "1"), int)
    queue.push(5)
    assert redis_client.hexists("rg_box:%schema", "container:rg_box:q:1")
    assert redis_client.hexists("rg_box:q:%schema", "container:rg_box:q:1")
    for use in (lambda s: s.delete(Box, "q:1"), lambda s: s.save(Box(1, id="q:1")),
                lambda s: s.count(Box), lambda s: s.adopt(Box)):
        with pytest.raises(redmodel.SchemaConflictError, match="rg_box:q:1"):
            use(redmodel.Store(redis_client))
    # unregister keeps the container's marks: the model stays refused
    redmodel.Store(redis_client).unregister(Box)
    with pytest.raises(redmodel.SchemaConflictError):
        redmodel.Store(redis_client).count(Box)
    assert queue.pop() == 5
    queue.clear()                       # the key, its record and its marks: the model may
    assert not redis_client.exists("rg_box:%schema", "rg_box:q:%schema")
    store = redmodel.Store(redis_client)
    store.save(Box(1, id="q:1"))
    assert store.get(Box, "q:1") == Box(1, id="q:1")
    with pytest.raises(redmodel.SchemaConflictError, match="inside the prefix"):
        Queue(redmodel.Store(redis_client), ("rg_box", "q", "2"), int).push(1)
    assert redis_client.hkeys("rg_box:%schema") != [] and not any(
        k.startswith(b"container:") for k in redis_client.hkeys("rg_box:%schema"))


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}"


# ---- F8: a container's record lives as long as its data ---------------------------------

OPS = st.lists(st.sampled_from(["push", "pop", "expire", "persist", "clear", "wait"]),
               min_size=1, max_size=8)


@settings(max_examples=scaled(25, floor=5))
@given(ops=OPS)
def test_another_program_never_reads_a_living_container_as_another_type(
        redis_client: redis.Redis, ops: list[str]) -> None:
    """Whatever a program did to its queue (pushes, pops that empty it, short expiries,
    persist, clear, time passing), another program's first use of the key as a queue of
    another type is refused while the key holds data."""
    redis_client.flushall()
    jobs = Queue(redmodel.Store(redis_client), "rg_jobs", int)
    for op in ops:
        if op == "push":
            jobs.push(1)
        elif op == "pop":
            jobs.pop()
        elif op == "expire":
            jobs.expire(0.05)
        elif op == "persist":
            redis_client.persist("rg_jobs")
        elif op == "clear":
            jobs.clear()
        else:
            time.sleep(0.07)
        other = Queue(redmodel.Store(redis_client), "rg_jobs", str)
        if redis_client.exists("rg_jobs"):
            with pytest.raises(redmodel.SchemaConflictError):
                other.length()
        else:
            try:
                other.length()
            except redmodel.SchemaConflictError:
                continue
            other.clear()  # it recorded itself on an empty key: gone again
            jobs = Queue(redmodel.Store(redis_client), "rg_jobs", int)


# ---- F10/F11: a record redmodel cannot read ---------------------------------------------


@redmodel.model(prefix="rg_rec")
@attrs.define
class Rec:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c,
                                                                        max_size=3),
                    max_leaves=8)


def _good_schema(client: redis.Redis) -> dict[str, Any]:
    redmodel.Store(client).count(Rec)
    return json.loads(client.hget("rg_rec:%schema", "schema"))


@settings(max_examples=scaled(40, floor=10))
@given(where=st.sampled_from(["", "layout", "buckets", "delimiter", "codec", "fields",
                              "fields.n", "fields.n.stored", "fields.n.kind",
                              "fields.n.old", "indexes"]),
       value=JSON)
def test_a_malformed_record_is_refused_naming_its_key(redis_client: redis.Redis, where: str,
                                                      value: Any) -> None:
    redis_client.flushall()
    schema = _good_schema(redis_client)
    if where:
        node = schema
        *path, last = where.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    else:
        schema = value
    text = json.dumps(schema)
    redis_client.hset("rg_rec:%schema", "schema", text)
    before = redis_client.hgetall("rg_rec:%schema")
    try:
        redmodel.Store(redis_client).count(Rec)
    except redmodel.RedmodelError as e:
        assert "rg_rec:%schema" in str(e)
        assert redis_client.hgetall("rg_rec:%schema") == before  # nothing written
    # accepted: then its shape was one redmodel reads (the model is the same)


@pytest.mark.parametrize("field,value", [("schema", "{not json"), ("schema", ""),
                                         ("index:n", "half"), ("schema", '{"layout": 7}')])
def test_unreadable_records_name_their_key_in_stores_and_cli(redis_client: redis.Redis,
                                                             field: str, value: str) -> None:
    redmodel.Store(redis_client).save(Box(1, id="x"))
    redmodel.Store(redis_client).count(Rec)
    redis_client.hset("rg_rec:%schema", field, value)
    with pytest.raises(redmodel.SchemaConflictError, match="rg_rec:%schema"):
        redmodel.Store(redis_client).count(Rec)
    if field == "index:n":  # the CLI once (a subprocess): the other records, the bad one
        Queue(redmodel.Store(redis_client), ("rg_marks", "q"), int).push(1)  # marks only
        done = redmodel_cli("registry", "--json", url=_url(redis_client))
        assert done.returncode == 1, done.stderr
        body = as_json(done)
        assert [p["prefix"] for p in body["prefixes"]] == ["rg_box"]
        assert [u["key"] for u in body["unreadable"]] == ["rg_rec:%schema"]
    # the documented way out: unregister (a DEL) and let the next first use record it
    assert redmodel.Store(redis_client).unregister(Rec)
    assert redmodel.Store(redis_client).count(Rec) == 0


# ---- progress keys: a planted or half-written progress is no builtin error ---------------


@pytest.mark.parametrize("cursors", [{"server": "done"}, {"server": "abc"},
                                     {"server": "-1"}, {"server": str(2**70)}])
def test_a_reindex_progress_with_any_cursor_finishes_the_index(redis_client: redis.Redis,
                                                               cursors: dict[str, str]) -> None:
    """A run stopped right after its objects pass emitted `done` saved that cursor: the
    resume used to raise a builtin ValueError (int("done")). A cursor no run wrote starts
    the reindex over."""
    store = redmodel.Store(redis_client)
    store.save_many([Plain(i, id=f"r{i}") for i in range(12)])
    redis_client.delete(*redis_client.keys("rg_mv:%idx:*"))          # the index is lost
    redis_client.set("rg_mv:%idx:reindex", json.dumps(
        {"phase": 1, "cursors": cursors, "objects": 0, "started": 0.0, "held": {}}))
    store.reindex(Plain)          # no builtin error; a `done` pass is not read again:
    if cursors == {"server": "done"}:                         # the documented resume
        store.reindex(Plain, restart=True)
    assert store.verify(Plain) == []
    assert list(store.find(Plain, n=3)) == [Plain(3, id="r3")]


@pytest.mark.parametrize("state", [{"cursors": {"server": "abc"}}, {"old": "x"},
                                   {"new": True}, {"cursors": {"server": 1.5}}])
def test_a_malformed_move_progress_is_refused_naming_its_key(redis_client: redis.Redis,
                                                            state: dict[str, Any]) -> None:
    redmodel.Store(redis_client).save_many([Plain(i, id=f"m{i}") for i in range(5)])
    planted = {"old": None, "new": 4, "phase": 0, "cursors": {}, "done": 0, "total": 5,
               "inflight": [], "pass_start": 0, **state}
    redis_client.set("rg_mv:%rebucket", json.dumps(planted))
    with pytest.raises(redmodel.ValidationError, match="rg_mv:%rebucket"):
        redmodel.Store(redis_client).migrate_buckets(Bucketed, from_buckets=None)
    assert redis_client.hget("rg_mv:%schema", "moving") is None
