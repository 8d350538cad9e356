"""Every ```python block in README.md and docs/*.md runs as written: each page in a process
of its own (tests/run_doc.py, forked with redmodel imported and nothing else done:
tests/forked.py), its blocks in order, nothing predefined.
A page gets its server as a user's program does, from ``REDIS_URL``: here the session's
throwaway server, holding another application's keys (and an ACL user named ``shop``).

The pages run against a user's own server, so each must leave it as it found it: the other
application's keys and ACL users untouched, and nothing of its own left behind (keys with
an expiry, which go by themselves, excepted). Such a page also runs again on the same
server (tests/test_attack15.py runs the README twice in a row)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from tests import forked

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Another application's data on the user's server, in the URL's database and in db 1.
FOREIGN = {0: {b"hat-app:config": b"keep me", b"shop": b"mine"}, 1: {b"hat:1": b"db 1's"}}


def _state(url: str) -> tuple[dict[int, set[bytes]], list[str]]:
    """Every key without an expiry, per database, and the ACL users."""
    keys: dict[int, set[bytes]] = {}
    for db in range(16):
        with redis.Redis.from_url(url, db=db) as client:
            found = set(client.scan_iter(count=1000))
            keys[db] = {key for key in found if client.pttl(key) == -1}
            if db == 0:
                users = sorted(client.acl_users())
    return keys, users


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_documentation_examples_run_and_leave_the_server_as_they_found_it(
    path: Path, redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    for db, values in FOREIGN.items():
        with redis.Redis.from_url(redis_url, db=db) as client:
            client.mset(values)
    redis_client.execute_command("ACL", "SETUSER", "shop", "on", ">theirs", "~shop*", "+get")
    try:
        before = _state(redis_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        env["REDIS_URL"] = redis_url
        # as `python tests/run_doc.py PAGE` in tmp_path, forked with redmodel imported
        done = forked.run("doc", str(path), cwd=tmp_path, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        assert _state(redis_url) == before, f"{path.name} did not leave the server as it was"
        for db, values in FOREIGN.items():
            with redis.Redis.from_url(redis_url, db=db) as client:
                assert client.mget(list(values)) == list(values.values())
        assert redis_client.acl_getuser("shop")["passwords"], "the page changed user shop"
    finally:
        redis_client.execute_command("ACL", "DELUSER", "shop")
        with redis.Redis.from_url(redis_url, db=1) as one:
            one.flushdb()
