"""Session 23, attack area D (the bare machine, tooling and typing): one failing test per
finding. The typing findings are in tests/typing/attack23d.py, checked by
tests/test_typing.py like every fixture there (no second mypy run).

Promises: docs/cli.md ("Exit codes": 2 is usage, a bad option; 4 is a bug in redmodel),
the common rule that every exception leaving redmodel is a redmodel error (or redis-py's)
and that bad input gets a clear error before anything is sent, and docs/deploy.md's
``from_env`` table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import redmodel
from tests.test_cli import redmodel_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("REDIS_"):
            monkeypatch.delenv(name)
    return monkeypatch


# F4: a malformed --url/REDIS_URL makes the CLI exit 4 "a bug in redmodel" with a traceback
def test_cli_malformed_url_is_a_usage_error_not_a_bug() -> None:
    for url in ("http://127.0.0.1:1/0", "redis://127.0.0.1:notaport/0"):
        done = redmodel_cli("inspect", "--models", "examples.hatshop:Hat", "--url", url,
                            keys=None)
        # docs/cli.md: "2 | usage: a bad option ..."; "Errors are one line on stderr".
        assert done.returncode == 2, (url, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# F5: Store.from_env with a REDIS_PORT that is not a number raises a bare ValueError
def test_from_env_bad_port_is_a_redmodel_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    clean_env.setenv("REDIS_PORT", "63 79")
    with pytest.raises(redmodel.RedmodelError, match="REDIS_PORT"):
        redmodel.Store.from_env()
    with pytest.raises(redmodel.RedmodelError, match="REDIS_PORT"):
        redmodel.AsyncStore.from_env()


# F6: Store.from_url with a URL redis-py cannot parse raises a bare ValueError
def test_from_url_malformed_url_is_a_redmodel_error() -> None:
    for url in ("http://127.0.0.1:1/0", "redis://127.0.0.1:notaport/0",
                "redis://127.0.0.1:99999999/0"):
        with pytest.raises((redmodel.RedmodelError, redis.RedisError)):
            redmodel.Store.from_url(url)


# F7: REDIS_TLS with a value it does not understand ("enabled", "2") silently means
# plain TCP, so REDIS_PASSWORD goes over the network in plaintext
@pytest.mark.parametrize("value", ["enabled", "2", "required"])
def test_from_env_unknown_tls_value_is_refused(clean_env: pytest.MonkeyPatch,
                                                value: str) -> None:
    clean_env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    clean_env.setenv("REDIS_TLS", value)
    clean_env.setenv("REDIS_PASSWORD", "s3cret-pw")
    # docs/deploy.md: "REDIS_TLS | 1/true/yes/on: rediss://"; any other non-empty value
    # must not silently be taken as "no TLS": bad input gets a clear error.
    with pytest.raises(redmodel.RedmodelError, match="REDIS_TLS") as caught:
        redmodel.Store.from_env()
    assert "s3cret-pw" not in str(caught.value)


# F8: `make test` fails on a bare machine (python3 and make only, as README.md promises):
# tests/test_testing.py::test_no_server_left_behind_by_this_process runs `ps`, which a bare
# Debian (debian:12-slim: no procps) does not have -> FileNotFoundError
def test_suite_needs_nothing_but_python_on_path(tmp_path: Path) -> None:
    onlypy = tmp_path / "bin"
    onlypy.mkdir()
    (onlypy / "python3").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "PYTEST_"))}
    env["PATH"] = str(onlypy)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
         "tests/test_testing.py::test_no_server_left_behind_by_this_process"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    # README.md: "nothing but `python3` (with `venv`) and `make` has to be on the machine"
    assert done.returncode == 0, done.stdout[-2000:]
