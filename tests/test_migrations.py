"""redmodel.migrations: plan, apply (batched, online, resumable, idempotent, leased),
status and records, in every shell and layout. The online run with writer processes is
tests/test_migrate_online.py."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.migrations import (
    MigrationError,
    MigrationLockedError,
    MigrationProgress,
    Migrations,
    MigrationVerifyError,
    build_index,
    drop_index,
    rewrite,
)
from tests.budget import scaled
from tests.faults import proxied_store
from tests.migrate_models import PLAIN, ItemV1, ItemV2, v1_objects

SPECIAL = ": { } * % \\"


def call(store: Any, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``method(store, ...)`` on a Store, or awaited on the AsyncStore behind the tests'
    AsyncFacade."""
    astore = getattr(store, "_astore", None)
    if astore is None:
        return method(store, *args, **kwargs)
    return store._loop.run_until_complete(method(astore, *args, **kwargs))


def migrations_v2(name: str = "shop") -> Migrations:
    m = Migrations(name)
    m.add("0001_item_v2", rewrite(ItemV2))
    m.add("0002_item_color", build_index(ItemV2, "color"))
    return m


def stored(client: Any, n: int) -> dict[str, dict[bytes, bytes]]:
    return {f"o{i}": client.hgetall(f"mig_item:o{i}") for i in range(n)}


# ---- plan, apply, status ---------------------------------------------------------------------


def test_plan_counts_and_says_what_changes_then_apply_records(store: redmodel.Store) -> None:
    store.save_many(v1_objects(120))
    m = migrations_v2()
    plan = m.plan(store)
    first, second = plan.steps
    assert (first.state, first.objects, second.objects) == ("pending", 120, 120)
    assert first.changes["renamed"] == {"price_cents": ["price"]}
    assert sorted(first.changes["upgraded"]) == ["fragile", "price_cents"]
    assert first.changes["removed"] == {"legacy": 100}       # sampled: 100 of 120
    assert first.changes["old_form"] == 100
    assert second.changes == {"index": "color"}
    assert plan.pending == plan.steps and plan.lease is None
    assert store.client.exists(m.key) == 0                   # plan only reads

    ticks: list[MigrationProgress] = []
    records = m.apply(store, count=25, progress=ticks.append)
    assert [(r.id, r.visited, r.changed, r.verified) for r in records] == [
        ("0001_item_v2", 120, 120, True), ("0002_item_color", 120, 0, True)]
    rewrites = [t for t in ticks if t.phase == "rewrite"]
    assert len(rewrites) >= 4 and rewrites[-1].done == 120 and rewrites[-1].total == 120
    assert all(t.rate is None or t.rate > 0 for t in ticks)
    assert rewrites[-1].eta == 0
    status = m.status(store)
    assert [s.state for s in status.steps] == ["applied", "applied"]
    assert status.steps[0].record == records[0] and status.lease is None
    assert store.get(ItemV2, "o3") == ItemV2(price_cents=325, color="black", fragile=True,
                                             id="o3")
    assert set(store.client.hgetall("mig_item:o3")) == {b"price_cents", b"color", b"fragile"}
    assert store.find(ItemV2, color="red").count() == 24
    assert store.verify(ItemV2) == []
    assert m.apply(store) == []                               # each step runs once
    assert m.plan(store).steps[0].objects is None             # applied: not counted again


def test_apply_is_idempotent_per_batch(store: redmodel.Store) -> None:
    store.save_many(v1_objects(60))
    m = Migrations("idem")
    m.add("rw", rewrite(ItemV2))
    assert m.apply(store)[0].changed == 60
    before = stored(store.client, 60)
    store.client.hdel(m.key, "step:rw")                       # forget it ran: run it again
    again = m.apply(store, count=7)
    assert (again[0].visited, again[0].changed) == (60, 0)
    assert stored(store.client, 60) == before


def test_a_killed_apply_resumes_from_its_cursor(store: redmodel.Store) -> None:
    n, count = 400, 40
    store.save_many(v1_objects(n))
    m = migrations_v2()

    class Killed(Exception):
        pass

    def kill_after(batches: int) -> Callable[[MigrationProgress], None]:
        seen = []

        def tick(p: MigrationProgress) -> None:
            seen.append(p)
            if len(seen) == batches:
                raise Killed
        return tick

    with pytest.raises(Killed):
        m.apply(store, count=count, progress=kill_after(3))
    status = m.status(store)
    assert [s.state for s in status.steps] == ["partial", "pending"]
    cursor = status.steps[0].cursor
    assert cursor is not None and 0 < cursor.visited == cursor.changed < n
    assert status.lease is None                               # released on the way out
    old = sum(1 for i in range(n) if store.client.hexists(f"mig_item:o{i}", "price"))
    assert old == n - cursor.visited
    ticks: list[MigrationProgress] = []
    records = m.apply(store, count=count, progress=ticks.append)
    assert ticks[0].done > cursor.visited                     # it went on from the cursor
    first = records[0]
    assert first.changed == n                                 # no object rewritten twice
    assert first.visited <= n + 2 * count                     # at most one batch again
    assert store.verify(ItemV2) == []


def test_a_run_killed_after_its_last_batch_only_checks(store: redmodel.Store) -> None:
    store.save_many(v1_objects(30))
    m = Migrations("late")
    m.add("rw", rewrite(ItemV2))

    def kill_at_check(p: MigrationProgress) -> None:
        if p.phase == "verify":
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        m.apply(store, count=10, progress=kill_at_check)
    status = m.status(store)
    assert status.steps[0].state == "partial" and status.lease is None
    ticks: list[MigrationProgress] = []
    record = m.apply(store, count=10, progress=ticks.append)[0]
    assert {t.phase for t in ticks} == {"verify"}             # no batch visited again
    assert (record.visited, record.changed) == (30, 30)


def test_two_applies_one_runs_the_other_is_refused(store: redmodel.Store) -> None:
    store.save_many(v1_objects(100))
    m = migrations_v2()
    inside, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def slow(p: MigrationProgress) -> None:
        inside.set()
        release.wait(10)

    def first() -> None:
        try:
            m.apply(redmodel.Store(store.client), count=10, progress=slow)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    with pytest.raises(MigrationLockedError) as refused:
        migrations_v2().apply(redmodel.Store(store.client))
    assert refused.value.holder and refused.value.expires_in is not None
    assert "another apply holds" in str(refused.value)
    assert m.status(store).lease == refused.value.holder
    release.set()
    thread.join(30)
    assert not failure
    assert [s.state for s in m.status(store).steps] == ["applied", "applied"]


def test_a_crashed_holders_lease_runs_out(store: redmodel.Store) -> None:
    store.save_many(v1_objects(10))
    m = migrations_v2()
    now_ms = int(store.client.time()[0]) * 1000
    store.client.hset(m.key, "lease", f"crashed:1:abc {now_ms + 60_000}")
    with pytest.raises(MigrationLockedError) as held:
        m.apply(store)
    assert held.value.holder == "crashed:1:abc" and 50 < (held.value.expires_in or 0) <= 60
    assert store.client.hexists("mig_item:o1", "price")        # nothing written
    store.client.hset(m.key, "lease", f"crashed:1:abc {now_ms - 1}")
    assert len(m.apply(store)) == 2


def test_records_report_unknown_and_out_of_order_steps(store: redmodel.Store) -> None:
    store.save_many(v1_objects(10))
    m = migrations_v2()
    m.apply(store)
    later = Migrations("shop")
    later.add("0001_item_v2", rewrite(ItemV2))
    later.add("0001b_inserted", rewrite(ItemV2))
    later.add("0002_item_color", build_index(ItemV2, "color"))
    status = later.status(store)
    assert status.out_of_order == ("0001b_inserted",)
    with pytest.raises(MigrationError, match="before steps already applied"):
        later.apply(store)
    assert len(later.apply(store, out_of_order=True)) == 1
    renamed = Migrations("shop")
    renamed.add("0001_item_v2", rewrite(ItemV2))
    # in the order they were applied
    assert [r.id for r in renamed.status(store).unknown] == ["0002_item_color",
                                                             "0001b_inserted"]


def test_step_ids_and_set_names_with_special_characters(store: redmodel.Store) -> None:
    store.save_many(v1_objects(5))
    m = Migrations(f"shop{SPECIAL}")
    step_id = f"0001{SPECIAL}é"
    m.add(step_id, rewrite(ItemV2))
    assert m.apply(store)[0].id == step_id
    assert m.status(store).steps[0].state == "applied"
    assert store.client.exists(m.key) == 1 and "%migrations" in m.key
    with pytest.raises(redmodel.ValidationError):
        m.add(step_id, rewrite(ItemV2))                       # ids are unique in a set
    with pytest.raises(redmodel.ValidationError):
        m.add(" padded", rewrite(ItemV2))
    with pytest.raises(redmodel.ValidationError):
        Migrations("x", lease=0)


# ---- custom steps and errors -----------------------------------------------------------------


def test_custom_step_saves_what_it_returns(store: redmodel.Store) -> None:
    hash_v1, hash_v2 = PLAIN["hash"]
    store.save_many([hash_v1(qty=i + 0.4, id=f"p{i}") for i in range(30)])
    m = Migrations("custom")

    @m.step("0001_tag_big", hash_v2)
    def tag_big(obj: Any) -> Any:
        if obj.quantity < 20 or obj.tag:
            return None                                       # left as it is
        obj.tag = "big"
        return obj

    assert m.apply(store, count=8)[0].changed == 10
    assert {p.id for p in store.scan(hash_v2) if p.tag == "big"} == {f"p{i}"
                                                                      for i in range(20, 30)}
    assert store.client.hget("mig_hash:p3", "qty") == b"3.4"   # untouched: never saved

    wrong = Migrations("wrong")
    wrong.add("0001", rewrite(hash_v2))
    wrong.step("0002", hash_v2)(lambda obj: hash_v2(quantity=1, id="elsewhere"))
    with pytest.raises(MigrationError, match="same id"):
        wrong.apply(store)
    assert [s.state for s in wrong.status(store).steps] == ["applied", "pending"]
    assert not store.client.exists("mig_hash:elsewhere")


def test_an_object_that_does_not_decode_stops_the_step_before_it(store: redmodel.Store
                                                                  ) -> None:
    store.save_many(v1_objects(50))
    store.client.hset("mig_item:o7", "price", "not a number")
    m = migrations_v2()
    with pytest.raises(redmodel.DecodeError) as failed:
        m.apply(store, count=10)
    assert failed.value.key == "mig_item:o7"
    assert m.status(store).steps[0].state in ("pending", "partial")
    assert m.status(store).lease is None
    store.client.hset("mig_item:o7", "price", "7.25")
    records = m.apply(store, count=10)
    assert records[0].changed <= 50 and store.verify(ItemV2) == []
    assert store.get(ItemV2, "o7").price_cents == 725   # type: ignore[union-attr]


def test_a_model_the_registry_refuses_writes_nothing(store: redmodel.Store) -> None:
    store.save_many(v1_objects(5))
    store.client.hset("mig_item:%schema", "owner", "somebody.Else")
    m = migrations_v2()
    with pytest.raises(redmodel.SchemaConflictError):
        m.apply(store)
    assert store.client.exists(m.key) == 0
    assert store.client.hexists("mig_item:o1", "price")
    store.client.hset("mig_item:%schema", "owner", "tests.migrate_models.Item")
    bad = Migrations("bad")
    bad.add("x", build_index(ItemV2, "nope"))
    with pytest.raises(redmodel.ValidationError, match="declares no index 'nope'"):
        bad.apply(store)
    assert store.client.exists(bad.key) == 0


def test_a_lost_exec_reply_is_read_and_done_again(redis_server: Any, redis_client: Any
                                                   ) -> None:
    redis_client.flushall()
    redmodel.Store(redis_client).save_many(v1_objects(30))
    with proxied_store(redis_server) as (proxy, store):
        proxy.lose_reply("EXEC", times=2)
        records = migrations_v2().apply(store, count=10)
        assert proxy.events
        store.close()
    assert records[0].changed <= 30
    store = redmodel.Store(redis_client)
    assert store.verify(ItemV2) == []
    assert not any(redis_client.hexists(f"mig_item:o{i}", "price") for i in range(30))


def test_drop_index_step(store: redmodel.Store) -> None:
    store.save_many(v1_objects(10))
    migrations_v2().apply(store)
    m = Migrations("drop")
    m.add("0001", drop_index(ItemV2, "color"))
    with pytest.raises(redmodel.ValidationError):              # still declared by ItemV2
        m.apply(store)
    assert m.status(store).steps[0].state == "pending"


# ---- concurrent writers ---------------------------------------------------------------------


def test_concurrent_writers_lose_nothing(store: redmodel.Store) -> None:
    """Writer threads keep changing ``quantity`` (and deleting objects) while a custom step
    sets ``tag`` on every object: afterwards each object holds both, each writer's last
    value, and no deleted object came back."""
    hash_v1, hash_v2 = PLAIN["hash"]
    n = 300
    store.save_many([hash_v1(qty=float(i), id=f"p{i}") for i in range(n)])
    m = Migrations("writers")
    m.step("0001_tag", hash_v2)(lambda obj: None if obj.tag else _tagged(obj))
    stop = threading.Event()
    lasts: list[dict[str, int]] = []
    deleted: set[str] = set()

    def writer(me: int) -> None:
        s = redmodel.Store(store.client)
        rng, last, k = random.Random(me), {}, 0
        while not stop.is_set():
            k += 1
            oid = f"p{rng.randrange(me, n, 3)}"
            if oid in deleted:
                continue
            if me == 0 and k % 50 == 0:
                s.delete(hash_v2, oid)
                deleted.add(oid)
                last.pop(oid, None)
                continue
            # a partial write (a whole save of an object read earlier would overwrite the
            # step's change as it overwrites any concurrent write: not the migration's doing)
            assert s.update(hash_v2, oid, quantity=me * 1_000_000 + k)
            last[oid] = me * 1_000_000 + k
        lasts.append(last)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    m.apply(store, count=20)
    stop.set()
    for t in threads:
        t.join(30)
    objects = {o.id: o for o in store.scan(hash_v2)}
    assert not deleted & set(objects)
    assert len(objects) == n - len(deleted)
    assert all(o.tag == "migrated" for o in objects.values())
    for last in lasts:
        for oid, value in last.items():
            assert objects[oid].quantity == value, oid


def _tagged(obj: Any) -> Any:
    obj.tag = "migrated"
    return obj


# ---- every shell and layout -----------------------------------------------------------------

IDS = st.text(alphabet=st.sampled_from([*SPECIAL.replace(" ", ""), "a", "é", "1"]),
              min_size=1, max_size=6)


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
def test_rewrite_in_every_shell_and_layout(any_store: Any, layout: str) -> None:
    v1, v2 = PLAIN[layout]
    plain = redmodel.Store(any_store.client, registry=False)

    @settings(max_examples=scaled(5, floor=2))
    @given(ids=st.lists(IDS, min_size=1, max_size=12, unique=True),
           qtys=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=12, max_size=12))
    def check(ids: list[str], qtys: list[float]) -> None:
        for key in list(any_store.client.scan_iter(match=f"mig_{layout}*")):
            any_store.client.delete(key)
        plain.save_many([v1(qty=q, note="x", id=i) for i, q in zip(ids, qtys, strict=False)])
        m = Migrations(f"all{SPECIAL}")
        m.add(f"0001{SPECIAL}", rewrite(v2))
        planned = call(any_store, m.plan)
        assert planned.steps[0].objects == len(ids)
        records = call(any_store, m.apply, count=5)
        assert records[0].visited == len(ids)
        assert records[0].changed == len(ids)
        for i, q in zip(ids, qtys, strict=False):
            assert any_store.get(v2, i) == v2(quantity=round(q), id=i)
        assert call(any_store, m.status).steps[0].state == "applied"
        any_store.client.delete(m.key)
        again = call(any_store, m.apply, count=5)    # nothing left to change
        assert (again[0].visited, again[0].changed) == (len(ids), 0)
        any_store.client.delete(m.key)

    check()


def test_verify_error_names_objects_left_in_an_old_form(store: redmodel.Store) -> None:
    """A writer of the old version still at work re-creates old forms after the rewrite
    passed: the step does not verify and is not recorded."""
    store.save_many(v1_objects(20))
    m = Migrations("old-writer")
    m.add("rw", rewrite(ItemV2))
    old = redmodel.Store(store.client, registry=False)

    def old_writer(p: MigrationProgress) -> None:
        if p.phase == "rewrite" and p.done == 20:   # after the last batch, before the check
            old.save(ItemV1(price=1.25, color="red", id="o1"))   # the old version writes
    with pytest.raises(MigrationVerifyError) as failed:
        m.apply(store, progress=old_writer)
    assert any("mig_item:o1" in p for p in failed.value.problems)
    assert m.status(store).steps[0].state == "pending"
    assert m.apply(store)[0].changed == 1                     # the writer stopped: done
