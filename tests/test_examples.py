"""The examples run as the README says, and print what they stored and read back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from redmodel.testing import RedisServer, binary_version, find_server_binary
from tests import forked

ROOT = Path(__file__).resolve().parent.parent


def run_example(module: str, env: dict[str, str], timeout: float = 120) -> str:
    # as `python -m module` in the checkout, forked with redmodel imported
    done = forked.run("module", module, cwd=ROOT, env={**os.environ, **env}, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_hatshop_demo_on_its_own_throwaway_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = run_example("examples.hatshop", {**env, "REDIS_URL": ""})
    version = binary_version(find_server_binary())  # "Valkey 9.1.2" / "Redis 7.0.15"
    assert f"started a throwaway {version} server at redis://127.0.0.1:" in out
    for color in ("black", "maroon", "green"):
        assert color in out
    assert "== the saved hat: True" in out
    assert "-> {'quantity': 999, 'npurchased': 1}" in out  # one incr_fields call
    assert "12 buyers x 8 tries on 3 hats (60 in stock)" in out
    tally = dict(line.strip().rsplit(None, 1) for line in out.splitlines()
                 if line.strip().startswith(("sold", "out of stock", "retries")))
    assert int(tally["sold"]) + int(tally["out of stock"]) == 96


def test_hatshop_demo_on_a_users_server_names_it_and_leaves_it_as_it_was(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.set("theirs", "untouched")
    with redis_server.client() as admin:
        admin.config_set("requirepass", "s3cret")
    try:
        url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/0"
        for _ in range(2):
            out = run_example("examples.hatshop", {"REDIS_URL": url})
            assert f"using REDIS_URL=redis://127.0.0.1:{redis_server.port}/0: " in out
            assert "s3cret" not in out, "the password is never printed"
            product, version = binary_version(redis_server.binary).split()
            assert f": {product} {version}\n" in out
            assert "cleaned up: deleted the 6 hats this run saved" in out
            with redis.Redis.from_url(url) as client:
                assert list(client.scan_iter()) == [b"theirs"]
    finally:
        with redis.Redis.from_url(url) as client:
            client.config_set("requirepass", "")


def test_restaurant_example_flat_and_blob(redis_url: str, redis_client: redis.Redis) -> None:
    out = run_example("examples.restaurant", {"REDIS_URL": redis_url})
    assert "restaurant:484272:address:street:line1 b'11 E 30th St'" in out
    assert out.count("read back equal: True") == 2
    assert redis_client.get("restaurant:484272:address:zip") == b"10016"
    assert redis_client.type("restaurant_blob:484272") == b"string"


def test_cardinfo_example_never_stores_plaintext(redis_url: str, redis_client: redis.Redis
                                                 ) -> None:
    out = run_example("examples.cardinfo", {"REDIS_URL": redis_url})
    assert "plaintext card number on the server: False" in out
    assert "2211849528391929" not in out, "the repr hides the card number"
    assert "rotated to a new key: 1 value(s) re-encrypted" in out
    stored = redis_client.hget("user:1000", "card")
    assert stored is not None and b"2211849528391929" not in stored


def test_message_example_prints_the_compression_ratio(redis_url: str) -> None:
    out = run_example("examples.message", {"REDIS_URL": redis_url})
    first = out.splitlines()[1]
    assert first.startswith("message: 260,000 bytes of text; stored with json|bz2: ")
    stored = int(first.split("json|bz2: ")[1].split(" bytes")[0])
    assert stored < 300
    assert "| `msgpack|bz2|fernet` |" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A server the demo cannot use ends it with one line saying what to do: no traceback, and
# not redis-py 8's "HELLO must be called with the client already authenticated ..." riddle.
@pytest.mark.parametrize(("case", "says"), [
    ("no password", "needs a password: put it in REDIS_URL (redis://:PASSWORD@host:port/0) "
                    "or in REDIS_PASSWORD"),
    ("wrong password", "refused the login: invalid username-password pair"),
    ("down", "cannot reach the server at redis://127.0.0.1:"),
])
def test_demo_says_in_one_line_why_it_cannot_use_the_server(case: str, says: str) -> None:
    with RedisServer(password="s3cret") as server:
        port = _free_port() if case == "down" else server.port
        auth = ":wrong@" if case == "wrong password" else ""
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        env["REDIS_URL"] = f"redis://{auth}127.0.0.1:{port}/0"
        done = subprocess.run([sys.executable, "-m", "examples.hatshop"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and says in line, line
    assert "wrong" not in line and "s3cret" not in line


def test_demo_takes_the_password_from_redis_password() -> None:
    with RedisServer(password="s3cret") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        env["REDIS_URL"] = f"redis://127.0.0.1:{server.port}/0"
        env["REDIS_PASSWORD"] = "s3cret"
        out = run_example("examples.hatshop", env)
        assert f"using REDIS_URL=redis://127.0.0.1:{server.port}/0: " in out
    assert "cleaned up: deleted the 6 hats this run saved" in out
