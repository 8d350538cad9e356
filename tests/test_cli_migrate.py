"""``redmodel migrate plan|apply|status``, run as a subprocess against the throwaway
server (the helper of tests/test_cli.py)."""

from __future__ import annotations

import json
from typing import Any

import redmodel
from tests.migrate_models import ItemV2, v1_objects
from tests.test_cli import as_json, redmodel_cli

SET = "tests.migrate_cli_set:migrations"


def test_migrate_status_plan_apply_and_exit_codes(redis_url: str, redis_client: Any
                                                   ) -> None:
    redmodel.Store(redis_client).save_many(v1_objects(40))
    status = redmodel_cli("migrate", "status", "--migrations", SET, "--json", url=redis_url)
    assert status.returncode == 1, status.stderr             # pending steps
    body = as_json(status)
    assert (body["ok"], body["pending"], body["key"]) == (False, 2, "cli_shop:%migrations")

    plan = redmodel_cli("migrate", "plan", "--migrations", "tests.migrate_cli_set",
                        "--json", url=redis_url)
    assert plan.returncode == 0, plan.stderr
    steps = as_json(plan)["steps"]
    assert [(s["state"], s["objects"]) for s in steps] == [("pending", 40), ("pending", 40)]
    assert steps[0]["changes"]["renamed"] == {"price_cents": ["price"]}
    assert steps[0]["changes"]["removed"] == {"legacy": 40}

    applied = redmodel_cli("migrate", "apply", "--migrations", SET, "--count", "7",
                           "--progress", "--json", url=redis_url)
    assert applied.returncode == 0, applied.stderr
    body = as_json(applied)
    assert [(r["id"], r["changed"], r["verified"]) for r in body["applied"]] == [
        ("0001_item_v2", 40, True), ("0002_item_color", 0, True)]
    assert "0001_item_v2" in applied.stderr                   # the progress bars
    assert redmodel.Store(redis_client).find(ItemV2, color="red").count() == 8

    status = redmodel_cli("migrate", "status", "--migrations", SET, url=redis_url)
    assert status.returncode == 0, status.stderr
    assert "2 applied, 0 pending" in status.stdout and "40 visited" in status.stdout


def test_migrate_apply_refused_while_another_holds_the_lease(redis_url: str,
                                                              redis_client: Any) -> None:
    redmodel.Store(redis_client).save_many(v1_objects(3))
    now_ms = int(redis_client.time()[0]) * 1000
    redis_client.hset("cli_shop:%migrations", "lease", f"other:7:abc {now_ms + 60_000}")
    done = redmodel_cli("migrate", "apply", "--migrations", SET, "--json", url=redis_url)
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout)["exit_code"] == 5
    assert "another apply holds" in done.stderr and "other:7:abc" in done.stderr
    assert redis_client.hexists("mig_item:o1", "price")       # nothing written


def test_migrate_usage_errors(redis_url: str) -> None:
    none = redmodel_cli("migrate", "plan", "--migrations", "tests.migrate_models",
                        url=redis_url)
    assert none.returncode == 2 and "no Migrations set" in none.stderr
    wrong = redmodel_cli("migrate", "plan", "--migrations", "tests.migrate_models:ItemV2",
                         "--json", url=redis_url)
    assert wrong.returncode == 2 and as_json(wrong)["ok"] is False
    assert "is not a redmodel.migrations.Migrations" in wrong.stderr
