"""The migrations step ``rebucket(Model, from_buckets=N)``: store.migrate_buckets' plan as
an offline step of a migration set (docs/migrations.md, "Migrations" and "Changing the
bucket count"): planned (objects to move, OFFLINE, mismatches), applied under the lease,
killed and resumed, refused before any write, in every shell and from the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import redmodel
from redmodel.migrations import MigrationProgress, Migrations, rebucket
from tests.migrate_rebucket_set import (
    ThingB2,
    ThingV1,
    ThingV2,
    ThingV8,
    mismatch,
    moved,
    v1_things,
)
from tests.test_cli import as_json, redmodel_cli
from tests.test_migrations import call


class Killed(Exception):
    pass


def kill_after(ticks: int) -> Callable[[MigrationProgress], None]:
    """Stop the run at the ``ticks``-th page that moved something (a page of a shared
    cluster's SCAN may hold only other tests' keys)."""
    seen: list[MigrationProgress] = []

    def tick(p: MigrationProgress) -> None:
        if p.phase == "rebucket" and p.done > (seen[-1].done if seen else 0):
            seen.append(p)
            if len(seen) == ticks:
                raise Killed
    return tick


def keys_of(client: Any) -> set[bytes]:
    if hasattr(client, "get_primaries"):
        return {k for node in client.get_primaries()
                for k in client.scan_iter(target_nodes=node)}
    return set(client.scan_iter())


def found_once(store: Any, n: int) -> None:
    """Every object is found by get, exactly once by a scan, and by its indexes."""
    ids = [t.id for t in store.scan(ThingV2)]
    assert sorted(ids) == sorted(f"t{i}" for i in range(n))
    for i in range(n):
        assert store.get(ThingV2, f"t{i}") == ThingV2(color=("red", "green", "blue")[i % 3],
                                                        size=i, id=f"t{i}")
    assert store.find(ThingV2, color="red").count() == len(range(0, n, 3))
    assert store.verify(ThingV2) == []


def test_plan_shows_an_offline_move_then_apply_moves_and_records(store: redmodel.Store
                                                                 ) -> None:
    store.save_many(v1_things(30))
    status = moved.status(store)
    assert [(s.kind, s.offline, s.state) for s in status.steps] == [
        ("rebucket", True, "pending"), ("rewrite", False, "pending")]
    plan = moved.plan(store, count=7)
    first, second = plan.steps
    assert (first.objects, first.problems, first.offline) == (30, (), True)
    assert first.changes["from_buckets"] is None and first.changes["to_buckets"] == 4
    assert "OFFLINE" in first.description and "offline" in first.changes
    assert second.problems == ()        # checked as the move leaves the registry
    assert second.objects == 30         # counted where the move finds them
    assert first.to_json()["offline"] is True
    assert store.client.exists(moved.key, "rb_thing:%rebucket") == 0   # plan only reads

    ticks: list[MigrationProgress] = []
    records = moved.apply(store, count=7, progress=ticks.append)
    assert [(r.id, r.kind, r.visited, r.changed, r.verified) for r in records] == [
        ("0001_thing_buckets", "rebucket", 30, 30, True),
        ("0002_thing_current", "rewrite", 30, 0, True)]
    moves = [t for t in ticks if t.phase == "rebucket"]
    assert moves[0].done == 0 and moves[-1].done == moves[-1].total == 30
    assert all(t.rate is None or t.rate > 0 for t in moves) and moves[-1].eta == 0
    found_once(redmodel.Store(store.client), 30)       # a new process takes v2
    assert store.client.hget("rb_thing:%schema", "moving") is None
    assert not store.client.exists("rb_thing:%rebucket", "rb_thing:t1")
    assert [s.state for s in moved.status(store).steps] == ["applied", "applied"]
    assert moved.apply(store) == []
    with pytest.raises(redmodel.SchemaConflictError, match="buckets changed"):
        redmodel.Store(store.client).count(ThingV1)    # the old version is refused


def test_a_killed_move_resumes_and_is_recorded_once(any_store: Any) -> None:
    n = 40
    any_store.save_many(v1_things(n, ThingB2))
    m = Migrations("rb_kill")
    m.add("0001_thing_buckets", rebucket(ThingV2, from_buckets=2))
    to_move = call(any_store, m.plan, count=5).steps[0].objects
    assert 10 < to_move < n     # from 2 buckets to 4 about half the keys change
    with pytest.raises(Killed):
        call(any_store, m.apply, count=5, progress=kill_after(2))
    status = call(any_store, m.status)
    step = status.steps[0]
    assert step.state == "partial" and step.cursor is not None and 0 < step.cursor.visited < to_move
    assert status.lease is None                          # released on the way out
    assert any_store.client.hget("rb_thing:%schema", "moving") is not None
    assert any_store.client.exists("rb_thing:%rebucket") == 1
    assert not any_store.client.hexists(m.key, "step:0001_thing_buckets")
    with pytest.raises(redmodel.SchemaConflictError, match="migrate_buckets"):
        redmodel.Store(any_store.client).count(ThingV2)  # stores refused meanwhile
    planned = call(any_store, m.plan, count=5)
    assert planned.steps[0].problems == () and "under_way" in planned.steps[0].changes
    assert planned.steps[0].objects == to_move - step.cursor.visited

    ticks: list[MigrationProgress] = []
    records = call(any_store, m.apply, count=5, progress=ticks.append)
    assert [(r.visited, r.changed) for r in records] == [(to_move, to_move)]  # all of it
    assert ticks[0].done == step.cursor.visited          # went on where it stopped
    found_once(any_store, n)
    assert call(any_store, m.status).steps[0].state == "applied"
    assert any_store.client.exists("rb_thing:%rebucket") == 0


def test_a_run_killed_after_the_move_only_verifies_and_records(store: redmodel.Store
                                                               ) -> None:
    store.save_many(v1_things(12))
    m = Migrations("rb_late")
    m.add("0001_thing_buckets", rebucket(ThingV2, from_buckets=None))

    def kill_at_verify(p: MigrationProgress) -> None:
        if p.phase == "verify":
            raise Killed
    with pytest.raises(Killed):
        m.apply(store, count=5, progress=kill_at_verify)
    assert store.client.hget("rb_thing:%schema", "moving") is None   # the move finished
    records = m.apply(store, count=5)
    assert [(r.visited, r.changed, r.verified) for r in records] == [(12, 12, True)]
    found_once(store, 12)


def test_a_step_that_does_not_match_the_database_writes_nothing(store: redmodel.Store
                                                                ) -> None:
    store.save_many(v1_things(10))
    before = {k: store.client.dump(k) for k in keys_of(store.client)}
    plan = mismatch.plan(store)
    assert plan.steps[0].problems and "not from_buckets=8" in plan.steps[0].problems[0]
    with pytest.raises(redmodel.ValidationError, match="not from_buckets=8"):
        mismatch.apply(store)
    assert {k: store.client.dump(k) for k in keys_of(store.client)} == before
    with pytest.raises(redmodel.ValidationError, match="already declares"):
        rebucket(ThingV8, from_buckets=8)             # refused when the step is made
    with pytest.raises(redmodel.ValidationError, match="from_buckets must be"):
        rebucket(ThingV8, from_buckets=0)


def test_nothing_to_do_when_the_count_is_recorded_or_nothing_is_stored(
        store: redmodel.Store) -> None:
    m = Migrations("rb_noop")
    m.add("0001_thing_buckets", rebucket(ThingV2, from_buckets=None))
    plan = m.plan(store)                                 # a fresh database
    assert plan.steps[0].objects == 0 and "nothing_to_do" in plan.steps[0].changes
    assert redmodel.Store(store.client).count(ThingV1) == 0   # v1 recorded, nothing stored
    plan = m.plan(store)
    assert "record_only" in plan.steps[0].changes and plan.steps[0].problems == ()
    assert [(r.visited, r.changed) for r in m.apply(store)] == [(0, 0)]
    assert b'"buckets":4' in store.client.hget("rb_thing:%schema", "schema")
    assert redmodel.Store(store.client).count(ThingV2) == 0   # v2 accepted now
    store.client.delete(m.key)
    store.unregister(ThingV2)
    store.save_many(v1_things(5))
    assert store.migrate_buckets(ThingV2, from_buckets=None) == 5   # moved by hand
    plan = m.plan(store)
    assert "already records buckets=4" in plan.steps[0].changes["nothing_to_do"]
    assert [(r.visited, r.changed) for r in m.apply(store)] == [(0, 0)]
    found_once(store, 5)


# ---- the command line ------------------------------------------------------------------------


def test_migrate_plan_and_apply_a_move_from_the_cli(redis_url: str, redis_client: Any
                                                    ) -> None:
    redmodel.Store(redis_client).save_many(v1_things(20))
    wrong = redmodel_cli("migrate", "plan", "--migrations",
                         "tests.migrate_rebucket_set:mismatch", url=redis_url)
    assert wrong.returncode == 1, wrong.stderr          # as other refusals do
    assert "OFFLINE" in wrong.stdout and "not from_buckets=8" in wrong.stdout
    applied = redmodel_cli("migrate", "apply", "--migrations",
                           "tests.migrate_rebucket_set:moved", "--count", "6", "--json",
                           url=redis_url)
    assert applied.returncode == 0, applied.stderr
    body = as_json(applied)
    assert [(r["id"], r["changed"]) for r in body["applied"]] == [
        ("0001_thing_buckets", 20), ("0002_thing_current", 0)]
    assert body["steps"][0]["offline"] is True and body["pending"] == 0
    assert body["steps"][0]["record"]["visited"] == 20
    found_once(redmodel.Store(redis_client), 20)
