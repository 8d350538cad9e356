"""The IP watcher example (``python -m examples.ipwatcher``) flags the bot and only the bot,
on the test server through $REDIS_URL and on its own throwaway server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from examples.ipwatcher import traffic

ROOT = Path(__file__).resolve().parent.parent


def run_watcher(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "examples.ipwatcher"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def flagged_and_calm(out: str) -> tuple[set[str], set[str]]:
    lines = dict(line.split(": ", 1) for line in out.splitlines()
                 if line.startswith(("flagged: ", "not flagged: ")))
    return set(lines["flagged"].split(", ")), set(lines["not flagged"].split(", "))


def assert_only_the_bot_is_flagged(out: str) -> None:
    flagged, calm = flagged_and_calm(out)
    assert flagged == {"104.174.118.18"}
    assert calm == {str(a) for a in traffic.NORMAL}
    assert "Hat bot detected!: 104.174.118.18 (15 visits this minute)" in out
    for addr in traffic.NORMAL:
        assert f"Hat bot detected!: {addr} " not in out
    assert "queue idle for 1 s: watcher stopped" in out


def test_watcher_on_redis_url_flags_the_bot(redis_url: str, redis_client: redis.Redis) -> None:
    out = run_watcher({**os.environ, "REDIS_URL": redis_url})
    assert f"using REDIS_URL={redis_url}" in out
    assert_only_the_bot_is_flagged(out)
    assert redis_client.llen("ipwatcher:ips") == 0, "the watcher consumed every visit"
    counters = {k.decode() for k in redis_client.scan_iter(match="ipwatcher:visits:*")
                if not k.endswith((b":%container", b":%schema"))}  # registry records stay
    assert any(k.startswith("ipwatcher:visits:104.174.118.18:") for k in counters)
    for key in counters:
        assert 0 < redis_client.pttl(key) <= 60_000, "every counter expires with its minute"


def test_watcher_on_its_own_throwaway_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = run_watcher(env)
    assert "started a throwaway" in out
    assert_only_the_bot_is_flagged(out)


def test_traffic_keeps_normal_addresses_below_the_limit() -> None:
    visits = traffic.requests()
    assert visits.count(traffic.BOT) == traffic.BOT_VISITS
    for addr in traffic.NORMAL:
        assert 2 <= visits.count(addr) < 15
