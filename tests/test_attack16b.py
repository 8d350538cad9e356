"""Second attack on issue 16 (findings in /work/notes/FINDINGS-16b.md): each test states a
promise of docs/migrations.md, docs/containers.md or docs/cli.md about the round-1 fixes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.migrations import MigrationLockedError, Migrations, build_index, rebucket, update
from redmodel.testing import FaultProxy
from tests.attack16b_set import Cn, Cn4, slow
from tests.faults import proxied_store
from tests.test_cli import ROOT, as_json, redmodel_cli


def _model(buckets: int | None) -> Any:
    @redmodel.model(prefix="a16b_rb", buckets=buckets)
    @attrs.define
    class Rb:
        n: int = 0
        id: str = redmodel.key_field(generated=False)

    return Rb


Rb0 = _model(None)
Rb8 = _model(8)


def _indexed(buckets: int | None) -> Any:
    @redmodel.model(prefix="a16b_ix", buckets=buckets)
    @attrs.define
    class Ix:
        c: str = redmodel.field(index=True, default="r")
        id: str = redmodel.key_field(generated=False)

    return Ix


Ix0 = _indexed(None)
Ix4 = _indexed(4)
Ix8 = _indexed(8)


def inc(obj: Any) -> Any:
    obj.n += 1
    return obj


class Stop(Exception):
    pass


IDS = [f"o{i}" for i in range(12)] + ["a:b", "{t}", "x*y", "p%q", "b\\s", "{a}:*%\\"]


def _ns(store: redmodel.Store, model: Any) -> list[int]:
    return sorted(store.get(model, i).n for i in IDS)  # type: ignore[union-attr]


def test_rebucket_then_custom_step_in_one_set_applies_once(redis_client: Any) -> None:
    """migrations.md: "Later steps of the same model in the set (a rewrite, a build_index)
    are checked against the registry as the move will leave it ... a set can hold the
    move and what follows it"; a custom step reaches each object "exactly once when the
    step completes"."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_set")
    m.add("0001_rb", rebucket(Rb8, from_buckets=None))
    m.add("0002_inc", update(Rb8, inc))
    m.apply(redmodel.Store(redis_client), count=5)
    assert _ns(redmodel.Store(redis_client), Rb8) == [1] * len(IDS)


def test_rebucket_stopped_mid_move_then_resumed_with_the_custom_step(redis_client: Any) -> None:
    """migrations.md: "a killed apply leaves the step partial and the prefix moving, and the
    next apply resumes the move where it stopped"; changed counts "objects moved, across
    runs"."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_set2")
    m.add("0001_rb", rebucket(Rb8, from_buckets=None))
    m.add("0002_inc", update(Rb8, inc))
    plan = m.plan(redmodel.Store(redis_client))
    to_move = plan.steps[0].objects

    def stop(p: Any) -> None:
        if p.done > 0:
            raise Stop

    with pytest.raises(Stop):
        m.apply(redmodel.Store(redis_client), count=5, progress=stop)
    assert m.status(redmodel.Store(redis_client)).steps[0].state == "partial"
    recs = m.apply(redmodel.Store(redis_client), count=5)
    assert [r.changed for r in recs] == [to_move, len(IDS)]
    assert _ns(redmodel.Store(redis_client), Rb8) == [1] * len(IDS)


@pytest.mark.parametrize("command", ["EXEC", "HMGET", "UNLINK", "EVALSHA", "WATCH"])
def test_lost_replies_with_odd_ids_apply_a_custom_step_once(redis_server: Any,
                                                            redis_client: Any,
                                                            command: str) -> None:
    """migrations.md: "a custom step is applied at most once to each object, and exactly
    once when the step completes"; lost replies "are resolved by reading"; marker hashes
    "once the step is recorded they are deleted (UNLINK), and a run stopped before that
    deletes them the next time"."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_lost")
    m.add("0001_inc", update(Rb0, inc))
    with proxied_store(redis_server) as (proxy, store):
        store.count(Rb0)
        proxy.lose_reply(command, times=2)
        for _ in range(3):
            with contextlib.suppress(redmodel.RedmodelError, redis.RedisError, OSError):
                if m.status(store).steps[0].state == "applied":
                    break
                m.apply(store, count=4)
        store.close()
    s = redmodel.Store(redis_client)
    assert m.status(s).steps[0].state == "applied"
    assert _ns(s, Rb0) == [1] * len(IDS)
    m.apply(s)
    assert [k for k in redis_client.scan_iter("a16b_lost*")] == [m.key.encode()]


def _stopped_move(redis_client: Any) -> None:
    redmodel.Store(redis_client).save_many([Ix0(id=i) for i in IDS])

    def stop(done: int, total: int) -> None:
        if done > 0:
            raise Stop

    with pytest.raises(Stop):
        redmodel.Store(redis_client).migrate_buckets(Ix8, from_buckets=None, count=4,
                                                     progress=stop)


@pytest.mark.parametrize("action", ["unregister", "adopt", "reindex",
                                    "build_index", "old_count", "new_count"])
def test_nothing_changes_the_record_while_moving(redis_client: Any, action: str) -> None:
    """migrations.md: "Nothing else changes the record while moving is set: unregister,
    adopt, drop_index, reindex and build_index (also those of a store that checked the
    model before the move began ...) ... raise SchemaConflictError naming migrate_buckets,
    nothing written"."""
    early = redmodel.Store(redis_client)
    early.save(Ix0(id="early"))                                   # checked before the move began
    _stopped_move(redis_client)
    before = redis_client.hgetall("a16b_ix:%schema")
    with pytest.raises(redmodel.SchemaConflictError, match="migrate_buckets"):
        if action == "unregister":
            early.unregister(Ix0)
        elif action == "adopt":
            early.adopt(Ix0)
        elif action == "reindex":
            early.reindex(Ix0)
        elif action == "drop_index":
            early.drop_index(Ix0, "c")
        elif action == "build_index":
            early.build_index(Ix0, "c")
        elif action == "old_count":
            redmodel.Store(redis_client).count(Ix0)
        else:
            redmodel.Store(redis_client).count(Ix8)
    assert redis_client.hgetall("a16b_ix:%schema") == before


def test_container_clear_removes_its_prefix_mark(redis_client: Any) -> None:
    """containers.md: "the model is refused: a new key with : in it marks each of its
    prefixes' model registry records ... and clear() removes the marks"; "A record never
    expires: clear() deletes it with the key"."""
    store = redmodel.Store(redis_client)
    q = redmodel.containers.Queue(store, ("a16b_cq", "x", "y"), int)
    q.push(1)
    q.expire(0.05)
    assert redis_client.ttl("a16b_cq:x:y:{a16b_cq:x:y}:%container") == -1
    q.clear()
    assert redis_client.keys("a16b_cq*") == []

    @redmodel.model(prefix="a16b_cq")
    @attrs.define
    class Cq:
        n: int = 0
        id: str = redmodel.key_field(generated=False)

    redmodel.Store(redis_client).save(Cq(1, id="z"))
    assert redmodel.Store(redis_client).get(Cq, "z") == Cq(1, id="z")
    w = redmodel.containers.Queue(redmodel.Store(redis_client), ("a16b_cw", "k"), str)
    w.push("a")
    w.pop()
    with pytest.raises(redmodel.SchemaConflictError):
        redmodel.containers.Queue(redmodel.Store(redis_client), ("a16b_cw", "k"), int).push(1)


def test_model_first_then_nested_container_refused(redis_client: Any) -> None:
    """containers.md: "A key inside a model's prefix ... is refused too" - a deeper key."""
    redmodel.Store(redis_client).save(Rb0(0, id="a"))
    with pytest.raises(redmodel.SchemaConflictError):
        redmodel.containers.Queue(redmodel.Store(redis_client), ("a16b_rb", "a", "b"),
                                  int).push(1)


@pytest.mark.parametrize(("name", "step"), [("a16b_cl", "0001_inc"),
                                            ("a16b{cl}", "0001_inc"),
                                            ("a16b_cl2", "0001_{inc}")])
def test_cluster_custom_step_with_odd_names_and_ids(redis_cluster_client: Any, name: str,
                                                    step: str) -> None:
    """migrations.md: on a cluster the markers are "one per slot,
    ...:done:<step id>:{<tag>}, whose hash tag puts it in the slot of the objects it marks";
    a custom step reaches each object exactly once when it completes."""
    store = redmodel.Store(redis_cluster_client)
    store.save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations(name)
    m.add(step, update(Rb0, inc))
    m.apply(store, count=4)
    assert _ns(store, Rb0) == [1] * len(IDS)
    assert m.apply(store) == []


def test_a_planted_done_field_never_unlinks_a_foreign_key(redis_client: Any) -> None:
    """migrations.md: "Every field is read strictly ... a record written by hand or by
    another tool"; done:<marker key> fields name "the marker hashes ...
    <name>:%migrations:done:... keys". A done: field naming any other key must not make
    apply UNLINK it."""
    store = redmodel.Store(redis_client)
    store.save_many([Rb0(0, id=i) for i in IDS[:3]])
    redis_client.set("a16b_victim", "precious")
    m = Migrations("a16b_done")
    m.add("0001_inc", update(Rb0, inc))
    redis_client.hset(m.key, "done:a16b_victim", "1")
    with contextlib.suppress(redmodel.RedmodelError):
        m.apply(store)
    assert redis_client.get("a16b_victim") == b"precious"


@pytest.mark.parametrize(("args", "field"), [(("migrate", "plan"), "lease"),
                                             (("migrate", "status"), "cursor:0001_inc"),
                                             (("migrate", "apply"), "step:0001_inc")])
def test_cli_malformed_records_exit_1(redis_url: str, redis_client: Any,
                                      args: tuple[str, str], field: str) -> None:
    """cli.md exit 1: "any migrate command a field of the set's records it cannot read
    (named)"; never 4."""
    redis_client.hset("a16b_inc:%migrations", field, "{bad")
    done = redmodel_cli(*args, "--migrations", "tests.attack16b_set:inc", url=redis_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert field in done.stdout + done.stderr


@pytest.mark.parametrize("command", ["SCAN", "EVALSHA", "UNLINK", "EXEC", "HGETALL",
                                     "RENAME"])
def test_held_rebucket_step_survives_a_lost_reply(redis_server: Any, redis_client: Any,
                                                  command: str) -> None:
    _rebucket_after_lost_replies(redis_server, redis_client, command)


def test_rebucket_step_resumes_after_lost_hset_replies(redis_server: Any,
                                                       redis_client: Any) -> None:
    """F1: three lost HSET replies at the start of the move (marking `moving`, saving the
    progress): the first apply raises ConnectionError, and every later apply refuses with
    "its progress (a16b_ix:%rebucket) is gone ... HDEL a16b_ix:%schema moving": the step
    is never resumed. migrations.md: "a killed apply leaves the step partial and the
    prefix moving, and the next apply resumes the move where it stopped"; "A run that
    stopped (a crash, a lost connection, ...) is resumed by running the same call again"."""
    _rebucket_after_lost_replies(redis_server, redis_client, "HSET")


def _rebucket_after_lost_replies(redis_server: Any, redis_client: Any,
                                                      command: str) -> None:
    """migrations.md: the rebucket step is "resumed and recorded like every other step";
    a lost connection "resends what is safe to resend ... otherwise the error; the cursor
    keeps what was done"; a killed apply is resumed by the next. After lost replies and a
    second apply every object is found at its new key, once."""
    redmodel.Store(redis_client).save_many([Ix0(c=f"c{k % 3}", id=i)
                                            for k, i in enumerate(IDS)])
    m = Migrations("a16b_rbl")
    m.add("0001_rb", rebucket(Ix8, from_buckets=None))
    with proxied_store(redis_server) as (proxy, store):
        proxy.lose_reply(command, times=3)
        with contextlib.suppress(redmodel.RedmodelError, redis.RedisError, OSError):
            m.apply(store, count=4)
        store.close()
    s = redmodel.Store(redis_client)
    with contextlib.suppress(MigrationLockedError):
        m.apply(s, count=4)
    if m.status(s).steps[0].state != "applied":
            time.sleep(0.1)
    s2 = redmodel.Store(redis_client)
    m.apply(s2, count=4)
    assert m.status(s2).steps[0].state == "applied"
    assert sorted(o.id for o in s2.scan(Ix8)) == sorted(IDS)
    assert s2.verify(Ix8) == []
    assert sorted(o.id for o in s2.find(Ix8, c="c1")) == sorted(
        i for k, i in enumerate(IDS) if k % 3 == 1)


def _lines(ids: list[str], pttl: int | None = None) -> bytes:
    return "".join(json.dumps({"v": 1, "model": "tests.attack16b_set:Cn", "id": i,
                               "pttl": pttl, "data": {"n": 7}}) + "\n"
                   for i in ids).encode()


def test_cli_import_over_a_wrong_typed_key_is_the_documented_partial_import(
        redis_url: str, redis_client: Any) -> None:
    """F2, decided (cli.md, import): a dry run reads nothing from the database, so a key of
    the wrong type at one object's key is found only while writing: the import writes the
    other lines, exits 3 and names the key it could not write; nothing else is lost."""
    redis_client.set("a16b_cli:o5", "planted")
    data = _lines([f"o{i}" for i in range(10)])
    args = ("import", "--models", "tests.attack16b_set:Cn")
    dry = redmodel_cli(*args, "--dry-run", url=redis_url, stdin=data)
    assert dry.returncode == 0, dry.stderr
    assert redis_client.keys("a16b_cli:o*") == [b"a16b_cli:o5"]   # the dry run wrote nothing
    real = redmodel_cli(*args, url=redis_url, stdin=data)
    written = sorted(k for k in redis_client.keys("a16b_cli:o*") if k != b"a16b_cli:o5")
    assert real.returncode == 3, (real.returncode, real.stderr)
    assert "a16b_cli:o5" in real.stderr
    assert written == sorted(f"a16b_cli:o{i}".encode() for i in range(10) if i != 5)
    assert redis_client.get("a16b_cli:o5") == b"planted"          # left as it was


@pytest.mark.parametrize("command", ["EXEC", "EVALSHA", "UNLINK"])
def test_async_lost_replies_apply_a_custom_step_once(redis_server: Any, redis_client: Any,
                                                     command: str) -> None:
    """migrations.md: "apply takes an AsyncStore too"; a custom step is applied "exactly
    once when the step completes"."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_async")
    m.add("0001_inc", update(Rb0, inc))

    async def run(url: str) -> None:
        astore = redmodel.AsyncStore.from_url(url)
        try:
            for _ in range(3):
                with contextlib.suppress(redmodel.RedmodelError, redis.RedisError, OSError):
                    await m.apply(astore, count=4)
                    return
        finally:
            await astore.aclose()

    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        proxy.lose_reply(command, times=2)
        asyncio.run(run(proxy.url))
    s = redmodel.Store(redis_client)
    assert m.status(s).steps[0].state == "applied"
    assert _ns(s, Rb0) == [1] * len(IDS)


def test_cli_failing_step_traceback_and_json(redis_url: str, redis_client: Any) -> None:
    """cli.md: exit 1 for "a step whose function raised (your code's error: the step, the
    object's key and the exception are named; --traceback prints its traceback)"."""
    redmodel.Store(redis_client).save(Cn(0, id="k{1}"))
    done = redmodel_cli("migrate", "apply", "--migrations", "tests.attack16b_set:boom",
                        "--traceback", url=redis_url)
    assert done.returncode == 1, done.stderr
    out = done.stdout + done.stderr
    assert "0001_boom" in out and "a16b_cli:k" in out and "KeyError" in out
    assert "Traceback" in out and "_boom" in out
    done = redmodel_cli("migrate", "apply", "--migrations", "tests.attack16b_set:boom",
                        "--json", url=redis_url)
    assert done.returncode == 1, done.stderr
    assert as_json(done)["ok"] is False


def test_rebucket_of_the_wrong_count_writes_nothing(redis_client: Any) -> None:
    """migrations.md: "a rebucket whose from_buckets is not the count the registry records:
    SchemaConflictError / ValidationError before anything is written (the lease
    included)"."""
    s = redmodel.Store(redis_client)
    s.save_many([Cn(0, id=i) for i in IDS])
    m = Migrations("a16b_wrong")
    m.add("0001_rb", rebucket(Cn4, from_buckets=2))
    assert m.plan(s).steps[0].problems
    before = {k: redis_client.type(k) for k in redis_client.keys("*")}
    with pytest.raises((redmodel.SchemaConflictError, redmodel.ValidationError)):
        m.apply(s)
    assert {k: redis_client.type(k) for k in redis_client.keys("*")} == before


@redmodel.model(prefix="a16b_own")
@attrs.define
class Own:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a16b_own")
@attrs.define
class Intruder:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("plant", ["empty", "missing"])
def test_a_record_without_a_readable_owner_is_not_written_over(redis_client: Any,
                                                               plant: str) -> None:
    """migrations.md: "A record redmodel cannot read (... missing or wrong-typed fields ...)
    is never guessed at nor written over: a store's first use of the model raises
    SchemaConflictError naming the key"."""
    redmodel.Store(redis_client).save(Own(1, id="a"))
    if plant == "empty":
        redis_client.hset("a16b_own:%schema", "owner", "")
    else:
        redis_client.hdel("a16b_own:%schema", "owner")
    before = redis_client.hgetall("a16b_own:%schema")
    with pytest.raises(redmodel.SchemaConflictError, match="a16b_own:%schema"):
        redmodel.Store(redis_client).count(Intruder)
    assert redis_client.hgetall("a16b_own:%schema") == before


def test_cli_registry_reports_a_wrong_typed_record(redis_url: str, redis_client: Any) -> None:
    """cli.md, registry: "A record redmodel cannot read ... is listed under unreadable with
    its key and the problem ... and the command exits 1"; migrations.md: "A key of another
    type there is a ServerError (WRONGTYPE) naming it". `redmodel registry` says "no
    registered prefixes", exit 0, for a string at `<prefix>:%schema`."""
    redis_client.set("a16b_str:%schema", "x")
    done = redmodel_cli("registry", url=redis_url)
    assert done.returncode != 0 and "a16b_str:%schema" in done.stdout + done.stderr, (
        done.returncode, done.stdout)


def _ix_new(buckets: int | None, with_d: bool) -> Any:
    if with_d:
        @redmodel.model(prefix="a16b_ixn", buckets=buckets)
        @attrs.define
        class Ixn:
            c: str = redmodel.field(index=True, default="r")
            d: str = redmodel.field(index=True, default="q")
            id: str = redmodel.key_field(generated=False)

        return Ixn

    @redmodel.model(prefix="a16b_ixn", buckets=buckets)  # type: ignore[no-redef]
    @attrs.define
    class Ixn:
        c: str = redmodel.field(index=True, default="r")
        id: str = redmodel.key_field(generated=False)

    return Ixn


def test_rebucket_then_build_index_of_a_new_index(redis_client: Any) -> None:
    """migrations.md: "Later steps of the same model in the set (a rewrite, a
    build_index) are checked against the registry as the move will leave it, and
    registered only when they run, after the move"."""

    Ixn = _ix_new(None, False)
    redmodel.Store(redis_client).save_many([Ixn(c=f"c{k % 2}", id=i)
                                            for k, i in enumerate(IDS)])
    New = _ix_new(4, True)
    m = Migrations("a16b_rbi")
    m.add("0001_rb", rebucket(New, from_buckets=None))
    m.add("0002_d", build_index(New, "d"))
    plan = m.plan(redmodel.Store(redis_client))
    assert [s.problems for s in plan.steps] == [(), ()]
    m.apply(redmodel.Store(redis_client), count=5)
    s = redmodel.Store(redis_client)
    assert s.verify(New) == []
    assert sorted(o.id for o in s.find(New, d="q")) == sorted(IDS)


def test_cluster_two_appliers_after_a_lease_ran_out_apply_once(redis_cluster: Any,
                                                               redis_cluster_client: Any
                                                               ) -> None:
    """migrations.md: markers make "a second apply that took over a lease that ran out
    while the first one was still in a batch" harmless: "a custom step is applied at most
    once to each object" - on a cluster (markers per slot), with odd ids."""
    redmodel.Store(redis_cluster_client).save_many([Rb0(0, id=i) for i in IDS])

    def slow(obj: Any) -> Any:
        time.sleep(0.05)
        return inc(obj)

    outcome: dict[str, Any] = {}

    def run(who: str) -> None:
        m = Migrations("a16b_cl_lease", lease=0.3)
        m.add("0001_inc", update(Rb0, slow))
        store = redmodel.Store(redis_cluster.client())
        try:
            outcome[who] = m.apply(store, count=len(IDS))
        except (MigrationLockedError, redmodel.RedmodelError) as e:
            outcome[who] = e
        finally:
            store.close()

    first = threading.Thread(target=run, args=("first",))
    first.start()
    time.sleep(0.45)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    first.join(30)
    second.join(30)
    assert _ns(redmodel.Store(redis_cluster_client), Rb0) == [1] * len(IDS), outcome


@pytest.mark.parametrize("delay", [1.1])
def test_a_killed_cli_apply_resumes_and_applies_each_object_once(redis_url: str,
                                                                 redis_client: Any,
                                                                 delay: float) -> None:
    """migrations.md: "a run resumed from a cursor saved before a batch that committed (a
    crash, a kill ...)": "a custom step is applied at most once to each object, and exactly
    once when the step completes". SIGKILL of `redmodel migrate apply` mid-step, then
    apply again once its lease ran out."""
    ids = [f"k{i}" for i in range(60)] + ["a:b", "{t}", "x*y", "p%q", "b\\s"]
    redmodel.Store(redis_client).save_many([Cn(0, id=i) for i in ids])
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["REDIS_URL"] = redis_url
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "redmodel", "migrate", "apply",
                             "--migrations", "tests.attack16b_set:slow", "--count", "7"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    time.sleep(0.6)
    s = redmodel.Store(redis_client)
    slow.apply(s, count=7)
    assert slow.status(s).steps[0].state == "applied"
    assert sorted({s.get(Cn, i).n for i in ids}) == [1]  # type: ignore[union-attr]


def test_custom_step_then_rebucket_then_custom_step(redis_client: Any) -> None:
    """migrations.md: a set "can hold the move and what follows it"; each custom step reaches
    each object exactly once; plan lists no problem for a set that apply runs."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_sandwich")
    m.add("0001_inc", update(Rb0, inc))
    m.add("0002_rb", rebucket(Rb8, from_buckets=None))
    m.add("0003_inc", update(Rb8, inc))
    assert [s.problems for s in m.plan(redmodel.Store(redis_client)).steps] == [(), (), ()]

    def stop(p: Any) -> None:
        if p.step == "0002_rb" and p.done > 0:
            raise Stop

    with pytest.raises(Stop):
        m.apply(redmodel.Store(redis_client), count=5, progress=stop)
    m.apply(redmodel.Store(redis_client), count=5)
    assert _ns(redmodel.Store(redis_client), Rb8) == [2] * len(IDS)


@redmodel.model(prefix="a16b_wc")
@attrs.define
class Wm:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def test_a_window_counter_inside_a_model_prefix_is_refused(redis_client: Any) -> None:
    """F5. containers.md, "The container registry": "A key inside a model's prefix
    (("item", "x") while a model stores its objects under item) is refused too: the model
    would take the container for one of its objects." A WindowCounter whose key_prefix is
    a model's prefix writes `a16b_wc:<subject>:<start>` keys inside it, in either order,
    unrefused."""
    redmodel.Store(redis_client).save(Wm(1, id="x"))
    with pytest.raises(redmodel.SchemaConflictError):
        redmodel.containers.WindowCounter(redmodel.Store(redis_client), "a16b_wc",
                                          window=60).incr("s")


def test_cluster_rebucket_step_stopped_and_resumed_with_odd_ids(redis_cluster_client: Any
                                                                 ) -> None:
    """migrations.md: the rebucket step on a cluster (DUMP/RESTORE, then a delete script)
    resumes where it stopped; every object found once at its new key, indexes verified."""
    s = redmodel.Store(redis_cluster_client)
    s.save_many([Ix4(c=f"c{k % 3}", id=i) for k, i in enumerate(IDS)])
    m = Migrations("a16b_clrb")
    m.add("0001_rb", rebucket(Ix8, from_buckets=4))
    m.add("0002_inc", update(Ix8, lambda o: o))
    to_move = m.plan(s).steps[0].objects

    def stop(p: Any) -> None:
        if p.done > 0:
            raise Stop

    with pytest.raises(Stop):
        m.apply(redmodel.Store(redis_cluster_client), count=3, progress=stop)
    recs = m.apply(redmodel.Store(redis_cluster_client), count=3)
    assert (recs[0].changed, recs[1].changed) == (to_move, len(IDS))
    s = redmodel.Store(redis_cluster_client)
    assert sorted(o.id for o in s.scan(Ix8)) == sorted(IDS)
    assert s.verify(Ix8) == []


@redmodel.model(prefix="a16b_flat", layout="flat")
@attrs.define
class Fl:
    n: int = 0
    tags: list[str] = attrs.field(factory=list)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a16b_blob", layout="blob")
@attrs.define
class Bl:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("model", [Fl, Bl])
@pytest.mark.parametrize("command", ["EXEC", "EVALSHA"])
def test_custom_step_on_flat_and_blob_layouts_applies_once(redis_server: Any,
                                                           redis_client: Any, model: Any,
                                                           command: str) -> None:
    """migrations.md: "a custom step is applied at most once to each object, and exactly
    once when the step completes" - for every layout, with lost replies."""
    redmodel.Store(redis_client).save_many([model(0, id=i) for i in IDS])
    m = Migrations(f"a16b_lay_{model.__name__}")
    m.add("0001_inc", update(model, inc))
    with proxied_store(redis_server) as (proxy, store):
        store.count(model)
        proxy.lose_reply(command, times=2)
        for _ in range(3):
            with contextlib.suppress(redmodel.RedmodelError, redis.RedisError, OSError):
                m.apply(store, count=4)
                break
        store.close()
    s = redmodel.Store(redis_client)
    assert m.status(s).steps[0].state == "applied"
    assert sorted(s.get(model, i).n for i in IDS) == [1] * len(IDS)


@pytest.mark.parametrize("action", ["unregister", "reindex"])
def test_a_registry_false_store_cannot_change_a_moving_prefix(redis_client: Any,
                                                              action: str) -> None:
    """migrations.md: "A store built with registry=False bypasses the registry by definition
    ..., but its unregister, drop_index and reindex still are [refused]: they change what
    the move rebuilds"."""
    _stopped_move(redis_client)
    before = {k: redis_client.type(k) for k in redis_client.keys("a16b_ix*")}
    raw = redmodel.Store(redis_client, registry=False)
    with pytest.raises(redmodel.SchemaConflictError, match="migrate_buckets"):
        if action == "unregister":
            raw.unregister(Ix0)
        else:
            raw.reindex(Ix8)
    assert {k: redis_client.type(k) for k in redis_client.keys("a16b_ix*")} == before


def test_an_inconsistent_rebucket_progress_is_not_trusted(redis_client: Any) -> None:
    """F6. migrations.md: the move's progress "(its phase, each SCAN cursor, the counts) is
    saved in <prefix>:%rebucket"; a %rebucket that "does not hold a bucket move's progress"
    is refused ("delete it"); issue 16: never a silently incomplete answer. A progress whose
    phase says the move is past (phase 3) while most objects are still at old keys is
    trusted: apply records the new count, drops `moving`, and `get` misses objects."""
    _stopped_move(redis_client)
    progress = json.loads(redis_client.get("a16b_ix:%rebucket"))
    progress["phase"] = 3
    redis_client.set("a16b_ix:%rebucket", json.dumps(progress))
    m = Migrations("a16b_phase")
    m.add("0001_rb", rebucket(Ix8, from_buckets=None))
    with contextlib.suppress(redmodel.RedmodelError):
        m.apply(redmodel.Store(redis_client), count=4)
    s = redmodel.Store(redis_client)
    try:
        missing = [i for i in IDS if s.get(Ix8, i) is None]
    except redmodel.SchemaConflictError:
        return                                          # still refused: fine
    assert missing == [], f"{len(missing)} of {len(IDS)} objects silently missing"
