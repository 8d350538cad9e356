"""The examples run as the README says, and print what they stored and read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def run_example(module: str, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_hatshop_demo_on_its_own_throwaway_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = run_example("examples.hatshop", {**env, "REDIS_URL": ""})
    assert "started a throwaway" in out
    for color in ("black", "maroon", "green"):
        assert color in out
    assert "== the saved hat: True" in out
    assert "quantity   -> 999" in out
    assert "12 buyers x 8 tries on 3 hats (60 in stock)" in out
    tally = dict(line.strip().rsplit(None, 1) for line in out.splitlines()
                 if line.strip().startswith(("sold", "out of stock", "retries")))
    assert int(tally["sold"]) + int(tally["out of stock"]) == 96


def test_hatshop_demo_honours_redis_url(redis_url: str, redis_client: redis.Redis) -> None:
    out = run_example("examples.hatshop", {"REDIS_URL": redis_url})
    assert f"using REDIS_URL={redis_url}" in out
    keys = sorted(k.decode() for k in redis_client.scan_iter(match="hat:*"))
    assert len(keys) == 6, "the demo's three hats and the buy flow's three"
    assert {redis_client.hget(k, "color") for k in keys} == {b"black", b"maroon", b"green"}
    for key in keys:
        quantity, sold = (int(redis_client.hget(key, f) or 0) for f in ("quantity", "npurchased"))
        assert quantity >= 0 and sold >= 0
