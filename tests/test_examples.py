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


def test_hatshop_demo_honours_redis_url(redis_url: str, redis_client: redis.Redis) -> None:
    out = run_example("examples.hatshop", {"REDIS_URL": redis_url})
    assert f"using REDIS_URL={redis_url}" in out
    keys = sorted(k.decode() for k in redis_client.scan_iter(match="hat:*"))
    assert len(keys) == 3
    assert {redis_client.hget(k, "color") for k in keys} == {b"black", b"maroon", b"green"}
