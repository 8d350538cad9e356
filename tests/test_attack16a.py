"""Attacks on issue 16's migrations, registry and CLI (findings in /work/notes/FINDINGS-16a.md):
each test states a promise of docs/migrations.md or docs/cli.md."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.containers import Queue
from redmodel.migrations import MigrationLockedError, Migrations, build_index, update
from redmodel.testing import FaultProxy
from tests.attack16a_set import Counter, slow
from tests.faults import proxied_store
from tests.test_cli import as_json, redmodel_cli


@redmodel.model(prefix="a16_ctr")
@attrs.define
class Ctr:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def increment(obj: Ctr) -> Ctr:
    obj.n += 1
    return obj


def values(client: Any, n: int) -> list[int]:
    return [int(client.hget(f"a16_ctr:c{i}", "n")) for i in range(n)]


# ---- F1: a lost EXEC reply applies a custom step twice ------------------------------------


def test_lost_exec_reply_does_not_apply_a_custom_step_twice(redis_server: Any,
                                                            redis_client: Any) -> None:
    """migrations.md, "Lost replies": "the batch was conditional on what it read, so
    `apply` reads it again and does what is still to do"; "each step runs once per
    database". An `update` that increments must leave every object incremented once."""
    redmodel.Store(redis_client).save_many([Ctr(0, id=f"c{i}") for i in range(10)])
    with proxied_store(redis_server) as (proxy, store):
        store.count(Ctr)
        m = Migrations("a16_lost")
        m.add("0001_inc", update(Ctr, increment))
        proxy.lose_reply("EXEC")
        m.apply(store, count=100)
        assert proxy.events                                   # the reply was lost
        store.close()
    assert values(redis_client, 10) == [1] * 10


# ---- F2: a lease that runs out lets two appliers write at once ----------------------------


def test_an_expired_lease_never_lets_two_appliers_apply_a_step_twice(redis_url: str,
                                                                    redis_client: Any) -> None:
    """migrations.md, "How `apply` stays online": a second `apply` raises
    MigrationLockedError; "the lease ran out during a batch: MigrationLockedError at the
    next renewal, having written nothing more". A slow first apply whose lease ran out
    must not commit its batch once a second apply holds the lease: every object is
    incremented exactly once."""
    n = 6
    redmodel.Store(redis_client).save_many([Ctr(0, id=f"c{i}") for i in range(n)])

    def slow(obj: Ctr) -> Ctr:
        time.sleep(0.15)
        return increment(obj)

    outcome: dict[str, Any] = {}

    def run(who: str) -> None:
        m = Migrations("a16_lease", lease=0.3)
        m.add("0001_inc", update(Ctr, slow))
        store = redmodel.Store.from_url(redis_url)
        try:
            outcome[who] = m.apply(store, count=n)
        except MigrationLockedError as e:
            outcome[who] = e
        finally:
            store.close()

    first = threading.Thread(target=run, args=("first",))
    first.start()
    time.sleep(0.5)                       # the first batch (0.9 s) outlives its 0.3 s lease
    second = threading.Thread(target=run, args=("second",))
    second.start()
    first.join(30)
    second.join(30)
    assert values(redis_client, n) == [1] * n, outcome


# ---- F3: a corrupt step record is taken as "pending" and the step runs again --------------


def test_a_corrupt_step_record_is_not_silently_taken_as_pending(store: redmodel.Store) -> None:
    """migrations.md: each step is "recorded in Redis so that each step runs once per
    database". A `step:<id>` field apply cannot read is not proof the step never ran:
    status/apply must say so (a redmodel error naming the key), not run the step again."""
    store.save_many([Ctr(0, id=f"c{i}") for i in range(3)])
    m = Migrations("a16_corrupt")
    m.add("0001_inc", update(Ctr, increment))
    store.client.hset(m.key, "step:0001_inc", "{not json")
    with pytest.raises(redmodel.RedmodelError):
        m.apply(store)
    assert values(store.client, 3) == [0] * 3


# ---- F4: the CLI calls a user's step error a bug in redmodel ------------------------------


def test_cli_a_failing_user_step_is_not_reported_as_a_redmodel_bug(redis_url: str,
                                                                   redis_client: Any) -> None:
    """cli.md: exit 4 is "a bug in redmodel (the traceback is printed)". A user's step that
    raises is documented (migrations.md: "the custom function raises ... the error") and
    is not redmodel's bug: it must not exit 4 nor say "a bug in redmodel"."""
    redmodel.Store(redis_client).save_many([Counter(1, id="x")])
    done = redmodel_cli("migrate", "apply", "--migrations", "tests.attack16a_set:failing",
                        "--json", url=redis_url)
    assert done.returncode not in (0, 4), done.stderr
    assert "bug in redmodel" not in done.stdout + done.stderr
    assert as_json(done)["ok"] is False


# ---- promises that held ----------------------------------------------------------------------


def test_held_progress_error_stops_and_apply_resumes_once(store: redmodel.Store) -> None:
    """An exception from the progress callback stops apply between batches; the next
    apply continues and every object is incremented exactly once."""
    store.save_many([Ctr(0, id=f"c{i}") for i in range(10)])
    m = Migrations("a16_resume")
    m.add("0001_inc", update(Ctr, increment))

    class Stop(Exception):
        pass

    def stop(p: Any) -> None:
        if p.done >= 5:
            raise Stop

    with pytest.raises(Stop):
        m.apply(store, count=5, progress=stop)
    assert m.status(store).steps[0].state == "partial"
    m.apply(store, count=5)
    assert values(store.client, 10) == [1] * 10
    assert m.apply(store) == []


def test_held_wrong_returns_write_nothing(store: redmodel.Store) -> None:
    store.save_many([Ctr(0, id=f"c{i}") for i in range(3)])
    for i, fn in enumerate([lambda o: 5, lambda o: {"n": 1}, lambda o: Ctr(9, id=o.id + "z"),
                            lambda o: Ctr("x", id=o.id)]):                  # type: ignore
        m = Migrations(f"a16_wrong{i}")
        m.add("0001", update(Ctr, fn))
        with pytest.raises(redmodel.RedmodelError):
            m.apply(store)
        assert m.status(store).steps[0].state == "pending"
    assert values(store.client, 3) == [0] * 3
    assert store.client.exists("a16_ctr:c0z") == 0


# ---- F5: a model that arrives after a container inside its prefix deletes the container ---


@redmodel.model(prefix="a16_thing")
@attrs.define
class Thing:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def test_a_model_does_not_take_a_recorded_container_inside_its_prefix(
        redis_client: Any) -> None:
    """containers.md, "The container registry": "A key inside a model's prefix (`("item",
    "x")` while a model stores its objects under `item`) is refused too: the model would
    take the container for one of its objects." When the container was recorded first,
    the model's first use must not let `delete` (or `save`) treat the queue as an object:
    either the model is refused (SchemaConflictError) or the queue survives."""
    queue = Queue(redmodel.Store(redis_client), ("a16_thing", "1"), int)
    queue.push(5)
    store = redmodel.Store(redis_client)
    with contextlib.suppress(redmodel.SchemaConflictError):
        store.delete(Thing, "1")
    assert queue.pop() == 5, "the model deleted the queue as one of its objects"


# ---- F6: unregister during an unfinished bucket move drops `moving` -----------------------


def _bucketed(buckets: int | None) -> Any:
    @redmodel.model(prefix="a16_mv", buckets=buckets)
    @attrs.define
    class Moved:
        n: int = 0
        id: str = redmodel.key_field(generated=False)

    return Moved


Moved0 = _bucketed(None)
Moved8 = _bucketed(8)


def test_unregister_during_an_unfinished_bucket_move_keeps_the_prefix_refused(
        redis_client: Any) -> None:
    """migrations.md, "Changing the bucket count": while the move runs "a store's first use
    of the model, in either version, raises `SchemaConflictError` naming
    `migrate_buckets`" and "Until the move finishes, `moving` stays set." After
    `unregister` of a stopped move, the new version is accepted and `get` misses the
    objects still at their old keys: the silently incomplete answer issue 16 forbids."""
    redmodel.Store(redis_client).save_many([Moved0(i, id=f"a{i}") for i in range(40)])

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        if done > 0:
            raise Stop

    with pytest.raises(Stop):
        redmodel.Store(redis_client).migrate_buckets(Moved8, from_buckets=None, count=10,
                                                     progress=stop)
    with contextlib.suppress(redmodel.RedmodelError):     # refusing is right too
        redmodel.Store(redis_client).unregister(Moved8)
    store = redmodel.Store(redis_client)
    try:
        missing = [i for i in range(40) if store.get(Moved8, f"a{i}") is None]
    except redmodel.SchemaConflictError as e:
        assert "migrate_buckets" in str(e)
    else:
        assert missing == [], f"{len(missing)} of 40 objects silently missing"


# ---- F7: a lost reply to the step's record is reported as a lease that ran out ------------


def test_a_lost_reply_to_the_final_record_is_not_a_lost_lease(redis_server: Any,
                                                              redis_client: Any) -> None:
    """migrations.md: a lost connection "resends what is safe to resend ... otherwise the
    error"; MigrationLockedError means another apply holds the lease or "the lease ran
    out during a batch (a batch took longer than `lease`)" (cli.md: exit 5, "nothing was
    written"). When only the reply to the script that records the finished step (and
    releases the lease) is lost, the step *is* applied and recorded: apply must not claim
    the lease ran out during a batch (it returns the record, or raises the connection
    error)."""
    redmodel.Store(redis_client).save_many([Ctr(0, id=f"c{i}") for i in range(30)])
    m = Migrations("a16_final")
    m.add("0001_inc", update(Ctr, increment))
    scripts: list[str] = []

    def count_scripts(name: str) -> bool:
        if name in ("EVALSHA", "EVAL"):
            scripts.append(name)
        return False

    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        store = redmodel.Store.from_url(proxy.url)
        store.count(Ctr)
        proxy.lose_reply(count_scripts)                  # a dry run counts the scripts
        m.apply(store, count=10)
        total = len(scripts)
        redis_client.delete(m.key)
        redis_client.flushall()
        redmodel.Store(redis_client).save_many([Ctr(0, id=f"c{i}") for i in range(30)])
        proxy.clear()
        seen = [0]

        def last_script(name: str) -> bool:
            if name in ("EVALSHA", "EVAL"):
                seen[0] += 1
                return seen[0] == total
            return False

        store = redmodel.Store.from_url(proxy.url)
        store.count(Ctr)
        proxy.lose_reply(last_script)
        try:
            m.apply(store, count=10)
        except MigrationLockedError as e:
            pytest.fail(f"a finished, recorded step reported as a lost lease: {e}")
        except (redmodel.RedmodelError, redis.RedisError):
            pass                                         # the connection error: fine
        finally:
            store.close()
    assert m.status(redmodel.Store(redis_client)).steps[0].state == "applied"
    assert values(redis_client, 30) == [1] * 30


# ---- F8: a container's record expires while its key lives ---------------------------------


def test_a_container_record_does_not_expire_before_its_key(redis_client: Any) -> None:
    """containers.md, "The container registry": "a later first use that differs raises
    `SchemaConflictError`"; "`expire()` gives it the key's expiry". A queue that expired
    its key, emptied (Redis deletes an empty list, so the expiry goes with it) and was
    pushed again lives without expiry, but its record still expires: afterwards another
    program reads the queue of int as a queue of str, silently."""
    jobs = Queue(redmodel.Store(redis_client), "a16_jobs", int)
    jobs.push(1)
    jobs.expire(0.2)
    assert jobs.pop() == 1                              # the list is gone, and its expiry
    jobs.push(2)                                        # a new list, without expiry
    time.sleep(0.4)
    assert redis_client.exists("a16_jobs") == 1
    other = Queue(redmodel.Store(redis_client), "a16_jobs", str)
    with pytest.raises(redmodel.SchemaConflictError):
        other.pop()
    assert jobs.pop() == 2


def test_held_an_undecodable_object_stops_the_step_and_resume_applies_once(
        store: redmodel.Store) -> None:
    """migrations.md: "a stored object does not decode: `DecodeError` naming the key; the
    step stops with its cursor before that batch; fix the object ... and apply again"."""
    store.save_many([Ctr(0, id=f"c{i}") for i in range(40)])
    store.client.hset("a16_ctr:c20", "n", "not an int")
    m = Migrations("a16_decode")
    m.add("0001_inc", update(Ctr, increment))
    with pytest.raises(redmodel.DecodeError) as e:
        m.apply(store, count=7)
    assert e.value.key == "a16_ctr:c20"
    assert m.status(store).steps[0].state in ("partial", "pending")
    store.client.hset("a16_ctr:c20", "n", "0")
    m.apply(store, count=7)
    assert values(store.client, 40) == [1] * 40


@redmodel.model(prefix="a16_idx")
@attrs.define
class Painted:
    color: str = ""
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a16_idx")
@attrs.define
class PaintedV2:
    color: str = redmodel.field(index=True, default="")
    id: str = redmodel.key_field(generated=False)


PaintedV2.__qualname__ = Painted.__qualname__ = "Painted"


def test_held_build_index_while_writers_recolour_and_delete(redis_url: str,
                                                            redis_client: Any) -> None:
    """migrations.md: `build_index` "never writes entries for values a writer changed
    meanwhile"; afterwards `store.verify(Model)` is clean and every query answers what a
    scan finds."""
    colours = ["red", "green", "blue"]
    n = 150
    redmodel.Store(redis_client).save_many([Painted(colours[i % 3], id=f"p{i}")
                                            for i in range(n)])
    redmodel.Store(redis_client).count(PaintedV2)             # v2 deployed: building
    stop = threading.Event()

    def writer(seed: int) -> None:
        store, rnd = redmodel.Store.from_url(redis_url), random.Random(seed)
        while not stop.is_set():
            i, op = rnd.randrange(n), rnd.random()
            if op < 0.5:
                obj = store.get(PaintedV2, f"p{i}")
                if obj is not None:
                    obj.color = rnd.choice(colours)
                    store.save(obj)
            elif op < 0.7:
                store.delete(PaintedV2, f"p{i}")
            else:
                store.save(PaintedV2(rnd.choice(colours), id=f"p{i}"))
        store.close()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        m = Migrations("a16_build")
        m.add("0001_colour", build_index(PaintedV2, "color"))
        m.apply(redmodel.Store.from_url(redis_url), count=20)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    store = redmodel.Store(redis_client)
    assert store.verify(PaintedV2) == []
    for c in colours:
        truth = sorted(o.id for o in store.scan(PaintedV2) if o.color == c)
        assert sorted(store.find(PaintedV2, color=c).ids()) == truth


# ---- F9: a run stopped between a batch's EXEC and its cursor re-applies a custom step ----


def test_a_run_stopped_after_a_batch_committed_resumes_without_applying_it_again(
        redis_server: Any, redis_client: Any) -> None:
    """migrations.md: "A run that stopped (a crash, Ctrl-C, an error) leaves [the cursor]
    there; the next `apply` continues from it, visiting at most the one batch that was
    under way again. Visiting an object twice changes nothing"; error table: "a connection
    is lost: ... otherwise the error; the cursor keeps what was done". Here the connection
    dies after the first batch's EXEC, before the script that saves its cursor: the resume
    runs the custom function again on that batch's objects."""
    n = 20
    redmodel.Store(redis_client).save_many([Ctr(0, id=f"c{i}") for i in range(n)])
    m = Migrations("a16_crash", lease=0.5)
    m.add("0001_inc", update(Ctr, increment))
    scripts = [0]

    def after_the_lease(name: str) -> bool:      # the 1st script takes the lease
        if name in ("EVALSHA", "EVAL"):
            scripts[0] += 1
            return scripts[0] >= 2
        return False

    with proxied_store(redis_server) as (proxy, store):
        store.count(Ctr)
        proxy.drop_request(after_the_lease, times=100)
        with pytest.raises(redis.ConnectionError):
            m.apply(store, count=5)
        proxy.clear()
        store.close()
    assert 0 < sum(values(redis_client, n)) < n            # one batch was committed
    time.sleep(0.6)                                        # the dead run's lease runs out
    m.apply(redmodel.Store(redis_client), count=5)
    assert values(redis_client, n) == [1] * n


# ---- F10: one malformed registry record crashes `redmodel registry` -----------------------


def test_cli_registry_survives_a_malformed_record(redis_url: str, redis_client: Any) -> None:
    """cli.md: exit 4 is "a bug in redmodel"; exit 1 "the command ran and found problems".
    A `<prefix>:%schema` hash whose `schema` is JSON but not an object (written by hand, by
    another tool, or planted) must be reported, not crash the listing of every prefix with
    an AttributeError."""
    redmodel.Store(redis_client).save_many([Counter(1, id="x")])
    redis_client.hset("a16_bad:%schema", mapping={"owner": "app.Bad", "schema": "[]"})
    done = redmodel_cli("registry", "--json", url=redis_url)
    assert done.returncode in (0, 1), done.stderr
    body = as_json(done)
    assert "a16_cli" in {p["prefix"] for p in body["prefixes"]}


# ---- F11: a malformed registry record raises AttributeError out of a store ----------------


@pytest.mark.parametrize("schema", ["[]", "null", "5", '"x"', '{"fields": 5}',
                                    '{"fields": [1, 2]}', '{"fields": {"n": 5}}'])
def test_a_malformed_registry_record_is_a_redmodel_error(redis_client: Any,
                                                         schema: str) -> None:
    """migrations.md, "Registry and index lifecycle": a record that does not match is
    refused with `SchemaConflictError` "before anything is written"; BRIEF-COMMON: every
    exception leaving redmodel is a redmodel error or a redis-py error naming the key. A
    `schema` field that is JSON of another shape raises a builtin AttributeError today."""
    redmodel.Store(redis_client).save(Counter(1, id="x"))
    redis_client.hset("a16_cli:%schema", "schema", schema)
    with pytest.raises(redmodel.RedmodelError) as e:
        redmodel.Store(redis_client).count(Counter)
    assert "a16_cli:%schema" in str(e.value)
    assert redis_client.hget("a16_cli:%schema", "schema") == schema.encode()


BAD_RECORD = ('{"id": "0001_slow_inc", "applied_at": "x", "visited": "a", "changed": null, '
              '"seconds": "s", "verified": true, "kind": "custom", "model": "m", '
              '"position": 0}')


def test_a_malformed_step_record_is_not_taken_as_applied(store: redmodel.Store) -> None:
    """F3, the other way round: a `step:<id>` record of the right keys but wrong types
    (`applied_at: "x"`) is taken as "applied" and `apply` skips a step that never ran.
    Expected: a redmodel error naming the records key, nothing skipped silently."""
    store.save_many([Counter(0, id=f"x{i}") for i in range(3)])
    store.client.hset(slow.key, "step:0001_slow_inc", BAD_RECORD)
    with pytest.raises(redmodel.RedmodelError):
        slow.apply(store)


def test_cli_migrate_status_of_a_malformed_record_is_not_a_crash(redis_url: str,
                                                                  redis_client: Any) -> None:
    """cli.md: exit 4 is "a bug in redmodel". `redmodel migrate status` (text) of a
    malformed step record dies with `TypeError` / `OverflowError` (exit 4); `--json` of the
    same record exits 0 calling it applied."""
    redis_client.hset("a16_slow:%migrations", "step:0001_slow_inc", BAD_RECORD)
    done = redmodel_cli("migrate", "status", "--migrations", "tests.attack16a_set:slow",
                        url=redis_url)
    assert done.returncode != 4, done.stderr
    assert "bug in redmodel" not in done.stderr


def test_held_cluster_resume_after_a_stop_applies_once(redis_cluster_client: Any) -> None:
    """On a cluster (cursor per node, a transaction per slot), a run stopped by the
    progress callback mid-way resumes from its cursor: ids with hash tags and `: % * \\`,
    every object incremented exactly once."""
    store = redmodel.Store(redis_cluster_client)
    ids = [f"c{i}" if i % 3 else f"{{t}}{i}:%*\\" for i in range(60)]
    store.save_many([Ctr(0, id=i) for i in ids])
    m = Migrations("a16_cluster")
    m.add("0001_inc", update(Ctr, increment))
    calls = [0]

    class Stop(Exception):
        pass

    def stop(p: Any) -> None:
        calls[0] += 1
        if calls[0] == 5:
            raise Stop

    with pytest.raises(Stop):
        m.apply(store, count=7, progress=stop)
    m.apply(redmodel.Store(redis_cluster_client), count=7)
    assert [o.n for o in store.get_many(Ctr, ids)] == [1] * len(ids)


# ---- F12: import checks every line "before the first write", except a huge TTL ------------


def test_cli_import_refuses_a_huge_ttl_before_the_first_write(redis_url: str,
                                                              redis_client: Any) -> None:
    """cli.md, import: "Every line is checked before the first write: JSON, format version,
    a loaded model, the id, the TTL, ... If any line is bad, nothing is written and the bad
    lines are listed by number (exit 1)." A `pttl` of 2**70 ms passes the check (`--dry-run`
    says all lines are good); the real import writes the lines before it, then fails."""
    base = {"v": 1, "model": "tests.attack16a_set:Counter", "pttl": None, "data": {"n": 1}}
    lines = [dict(base, id=f"g{i}") for i in range(5)] + [dict(base, id="bad", pttl=2**70)]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    dry = redmodel_cli("import", "--models", "tests.attack16a_set", "--dry-run", "--json",
                       url=redis_url, stdin=text.encode())
    assert dry.returncode == 1, dry.stdout
    done = redmodel_cli("import", "--models", "tests.attack16a_set", "--json", "--chunk", "2",
                        url=redis_url, stdin=text.encode())
    assert done.returncode == 1
    assert [e["line"] for e in as_json(done)["errors"]] == [6]
    assert redis_client.exists(*[f"a16_cli:g{i}" for i in range(5)]) == 0


# ---- F13: lease=inf or a huge lease is accepted, then apply breaks ------------------------


@pytest.mark.parametrize("lease", [float("inf"), 1e300, 2**70])
def test_a_lease_out_of_range_is_refused_up_front(store: redmodel.Store,
                                                  lease: float) -> None:
    """`Migrations(name, lease=...)` refuses 0, -1, NaN, True and "10" with ValidationError
    ("lease must be a positive number of seconds"), but accepts inf (apply then raises a
    builtin OverflowError) and 1e300 or 2**70 (apply then always fails with
    MigrationLockedError "the lease ran out ..."). Bad input is refused before the first
    write, with a redmodel error; a lease that is accepted works."""
    store.save_many([Ctr(0, id=f"c{i}") for i in range(3)])
    try:
        m = Migrations("a16_lease_range", lease=lease)
    except redmodel.ValidationError:
        return
    m.add("0001_inc", update(Ctr, increment))
    assert [r.changed for r in m.apply(store)] == [3]
