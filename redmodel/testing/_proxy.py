"""A fault-injection proxy for Redis connections: :class:`FaultProxy`.

It listens on a free loopback port and forwards every connection to a real server,
reading the Redis protocol (RESP2 and RESP3) in both directions so it knows which reply
answers which command. A fault is armed on the next command matching a name and fires
once (or ``times`` times):

- :meth:`FaultProxy.lose_reply`: the command reaches the server and is executed; its
  reply is swallowed and the client's connection is closed (a write applied whose
  reply never arrives);
- :meth:`FaultProxy.cut_reply`: half of the reply reaches the client, then the
  connection is closed;
- :meth:`FaultProxy.drop_request`: the connection is closed before the command is
  forwarded (nothing reaches the server);
- :meth:`FaultProxy.stall`: the command (and what follows it on that connection) is held
  for ``seconds`` before it is forwarded, as a paused server would do;
- :meth:`FaultProxy.refuse_connections`: new connections are closed as soon as accepted.

A fault can also be keyed on the whole command: ``when=`` takes a predicate over its
arguments as bytes (the name first), e.g. the key it writes (``when=has(b"hat:1")``) or a
script's sha (``when=lambda argv: argv[1] == sha.encode()``). :meth:`FaultProxy.quiet`
waits until every command a stall held back has reached the server and been answered.

For a cluster, :class:`ClusterFaultProxy` puts one proxy before every node and gives
redis-py an ``address_remap`` so the cluster client reaches the nodes only through them.

Example::

    with RedisServer() as server, FaultProxy(server.host, server.port) as proxy:
        client = redis.Redis(host=proxy.host, port=proxy.port)
        proxy.lose_reply("INCRBY")
        client.incrby("n", 1)   # raises ConnectionError; the server holds n = 1
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from redmodel._args import MAX_BLOCK_SECONDS, integer, seconds
from redmodel._errors import ValidationError
from redmodel.testing._binaries import HOST, ServerStartError, free_port

__all__ = ["ClusterFaultProxy", "FaultEvent", "FaultProxy", "has", "resp_end"]

_CRLF = b"\r\n"
_LINE_TYPES = frozenset(b"+-:_,#(")
_BLOB_TYPES = frozenset(b"$!=")
_AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}


def resp_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """The offset just after the RESP value starting at ``pos``, or None while it is
    incomplete. Inline commands (a line without a type byte) count as one value."""
    if pos >= len(buf):
        return None
    line_end = buf.find(_CRLF, pos)
    if line_end < 0:
        return None
    kind = buf[pos]
    after = line_end + 2
    if kind in _LINE_TYPES:
        return after
    if kind in _BLOB_TYPES:
        size = int(buf[pos + 1 : line_end])
        if size < 0:
            return after
        end = after + size + 2
        return end if end <= len(buf) else None
    if kind in _AGGREGATES:
        count = int(buf[pos + 1 : line_end])
        if count < 0:
            return after
        at: int | None = after
        for _ in range(count * _AGGREGATES[kind]):
            assert at is not None
            at = resp_end(buf, at)
            if at is None:
                return None
        if kind == ord("|"):  # an attribute map precedes the real reply
            return resp_end(buf, at) if at is not None else None
        return at
    return after  # an inline command


def _command_name(buf: bytes | bytearray, start: int, end: int) -> str:
    """The first word of the command encoded in ``buf[start:end]``, upper-cased."""
    if buf[start] == ord("*"):
        first = buf.find(_CRLF, start) + 2
        if first >= end or buf[first] != ord("$"):
            return ""
        size_end = buf.find(_CRLF, first)
        size = int(buf[first + 1 : size_end])
        return bytes(buf[size_end + 2 : size_end + 2 + size]).decode("latin-1").upper()
    words = bytes(buf[start:end]).split()
    return words[0].decode("latin-1").upper() if words else ""


def _count_values(buf: bytes | bytearray, start: int) -> int:
    count = 0
    while (end := resp_end(buf, start)) is not None:
        count, start = count + 1, end
    return count


@attrs.frozen
class FaultEvent:
    """A fault that fired: its kind, the command it fired on, and when (monotonic)."""

    kind: str
    command: str
    at: float


@attrs.define
class _Fault:
    kind: str  # lose_reply | cut_reply | drop_request | stall
    match: Callable[[str], bool]
    times: int
    seconds: float = 0.0
    when: Callable[[list[bytes]], bool] | None = None


def _arguments(buf: bytes | bytearray, start: int, end: int) -> list[bytes]:
    """Every argument of the command encoded in ``buf[start:end]`` (name first)."""
    if buf[start] != ord("*"):
        return bytes(buf[start:end]).split()
    count_end = buf.find(_CRLF, start)
    out = []
    at = count_end + 2
    for _ in range(int(buf[start + 1 : count_end])):
        size_end = buf.find(_CRLF, at)
        size = int(buf[at + 1 : size_end])
        out.append(bytes(buf[size_end + 2 : size_end + 2 + size]))
        at = size_end + 4 + size
    return out


def has(*parts: bytes | str) -> Callable[[list[bytes]], bool]:
    """A ``when=`` predicate: the command has every one of ``parts`` among its arguments
    (a key, a member, a script's sha)."""
    wanted = [p.encode() if isinstance(p, str) else p for p in parts]
    return lambda argv: all(w in argv[1:] for w in wanted)


@attrs.define(eq=False)
class _Link:
    """One client connection and its connection to the server."""

    client: socket.socket
    server: socket.socket
    up: bytearray = attrs.Factory(bytearray)  # client bytes not yet parsed
    down: bytearray = attrs.Factory(bytearray)  # server bytes not yet parsed
    # one entry per forwarded command: the reply-side fault armed on it and its name
    pending: deque[tuple[_Fault, str] | None] = attrs.Factory(deque)
    held: bytearray = attrs.Factory(bytearray)  # client bytes held back by a stall
    held_until: float = 0.0
    client_gone: bool = False  # the client left while a stall held its commands
    closed: bool = False


class FaultProxy:
    """A TCP proxy in front of one Redis server that injects faults on demand.

    ``FaultProxy(host, port)`` forwards ``127.0.0.1:<proxy.port>`` to ``host:port``.
    Arm faults with the methods below; each fires on the next command whose name
    matches (``"INCRBY"``, ``"EVALSHA"``, ``"EXEC"``; or a predicate on the upper-cased
    name) and is then used up. :attr:`events` lists what fired. Start with :meth:`start`
    or a ``with`` block; :meth:`stop` closes every connection and the listener.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        if not isinstance(target_host, str) or not target_host:
            raise ValidationError(f"target_host must be a host name or address, got "
                                  f"{target_host!r}")
        self.target = (target_host, integer(target_port, "target_port", least=1, most=65535))
        self.host = HOST
        self.port = 0
        self.events: list[FaultEvent] = []
        self._faults: list[_Fault] = []
        self._refuse = 0
        self._lock = threading.Lock()
        self._fired = threading.Condition(self._lock)
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._links: set[_Link] = set()
        self._running = False
        self._soon: list[Callable[[], Any]] = []
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # ---- arming ------------------------------------------------------------------------

    def _arm(self, kind: str, command: str | Callable[[str], bool], times: int,
             seconds_: float = 0.0, when: Callable[[list[bytes]], bool] | None = None) -> None:
        if not isinstance(command, str) and not callable(command):
            raise ValidationError(f"command must be a command name or a predicate on it, got "
                                  f"{type(command).__name__}")
        if when is not None and not callable(when):
            raise ValidationError(f"when must be a predicate on the command's arguments or "
                                  f"None, got {type(when).__name__}")
        integer(times, "times", least=0)  # 0 arms nothing
        if kind == "stall":
            seconds(seconds_, "seconds", most=MAX_BLOCK_SECONDS)
        match: Callable[[str], bool] = (
            command.upper().__eq__ if isinstance(command, str) else command)
        with self._lock:
            self._faults.append(_Fault(kind, match, times, float(seconds_), when))

    def lose_reply(self, command: str | Callable[[str], bool], *, times: int = 1,
                   when: Callable[[list[bytes]], bool] | None = None) -> None:
        """The next matching command is executed by the server; its reply is swallowed
        and the client's connection closed."""
        self._arm("lose_reply", command, times, when=when)

    def cut_reply(self, command: str | Callable[[str], bool], *, times: int = 1,
                  when: Callable[[list[bytes]], bool] | None = None) -> None:
        """The next matching command's reply is cut in half: the client gets the first
        half, then its connection is closed."""
        self._arm("cut_reply", command, times, when=when)

    def drop_request(self, command: str | Callable[[str], bool], *, times: int = 1,
                     when: Callable[[list[bytes]], bool] | None = None) -> None:
        """The connection is closed before the next matching command is forwarded."""
        self._arm("drop_request", command, times, when=when)

    def stall(self, command: str | Callable[[str], bool], seconds: float, *,
              times: int = 1, when: Callable[[list[bytes]], bool] | None = None) -> None:
        """The next matching command, and whatever follows it on its connection, reaches
        the server only after ``seconds`` (as if the server were paused)."""
        self._arm("stall", command, times, seconds, when=when)

    def refuse_connections(self, count: int = 1) -> None:
        """The next ``count`` new connections are closed as soon as they are accepted."""
        integer(count, "count", least=0)
        with self._lock:
            self._refuse += count

    def clear(self) -> None:
        """Disarm every fault that has not fired."""
        with self._lock:
            self._faults.clear()
            self._refuse = 0

    def wait_fired(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` faults have fired in all; False on timeout."""
        integer(count, "count", least=0)
        deadline = time.monotonic() + seconds(timeout, "timeout", most=MAX_BLOCK_SECONDS)
        with self._fired:
            while len(self.events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._fired.wait(left)
            return True

    def quiet(self, timeout: float = 10.0) -> bool:
        """Wait until no stall holds commands back and every command forwarded for a client
        that left has been answered by the server (so its effect is visible); False on
        timeout."""
        deadline = time.monotonic() + seconds(timeout, "timeout", most=MAX_BLOCK_SECONDS)
        while time.monotonic() < deadline:
            if not self._busy(deadline):
                return True
            time.sleep(0.01)
        return False

    def _busy(self, deadline: float) -> bool:
        """Whether a link holds a stall or awaits replies for a client that left (asked of
        the proxy's own thread, which owns the links)."""
        done = threading.Event()
        busy: list[bool] = [True]

        def probe() -> None:
            busy[0] = any(link.held_until or (link.client_gone and not link.closed)
                          for link in self._links)
            done.set()

        self._call_soon(probe)
        done.wait(max(0.0, deadline - time.monotonic()))
        return busy[0]

    def close_connections(self) -> None:
        """Close every open client connection now (as a server restart would)."""

        def close_all() -> None:
            for link in list(self._links):
                self._close(link)

        self._call_soon(close_all)

    @property
    def armed(self) -> int:
        """How many armed faults have not fired yet."""
        with self._lock:
            return sum(f.times for f in self._faults) + self._refuse

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of the proxy."""
        return f"redis://{self.host}:{self.port}"

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen on a free loopback port and forward in a background thread."""
        if self._running:
            raise RuntimeError("this FaultProxy is already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(20):
            try:
                port = free_port()
                listener.bind((self.host, port))
                break
            except OSError:
                continue
        else:  # pragma: no cover - the port search itself raises first
            raise ServerStartError("no free port for the proxy")
        listener.listen(128)
        listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self.port = port
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"FaultProxy:{port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener; idempotent."""
        if not self._running:
            return
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        if not self._running:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]}>"

    # ---- the loop ------------------------------------------------------------------------

    def _call_soon(self, fn: Callable[[], Any]) -> None:
        with self._lock:
            self._soon.append(fn)
        self._wake()

    def _wake(self) -> None:
        # read once: the loop's thread, ending (stop() from another thread), closes the
        # socket and sets it to None between a check and a second read (seen once in CI:
        # AttributeError at a fixture's teardown); a closed socket's send is an OSError
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"x")

    def _loop(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while self._running:
                timeout = self._next_timer()
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            assert self._wake_r is not None
                            self._wake_r.recv(4096)
                    else:
                        link, from_client = key.data
                        self._on_readable(link, from_client)
                with self._lock:
                    soon, self._soon = self._soon, []
                for fn in soon:
                    fn()
                self._release_stalls()
        finally:
            for link in list(self._links):
                self._close(link)
            if self._listener is not None:
                selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            selector.close()
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None

    def _next_timer(self) -> float | None:
        stalled = [link.held_until for link in self._links if link.held_until]
        if not stalled:
            return 0.5
        return max(0.0, min(stalled) - time.monotonic())

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        with self._lock:
            refuse = self._refuse > 0
            if refuse:
                self._refuse -= 1
                self._record("refuse_connection", "")
        if refuse:
            client.close()
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, server)
        self._links.add(link)
        self._selector.register(client, selectors.EVENT_READ, (link, True))
        self._selector.register(server, selectors.EVENT_READ, (link, False))

    def _on_readable(self, link: _Link, from_client: bool) -> None:
        sock = link.client if from_client else link.server
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if from_client and link.held_until:
                # As with a paused server, the bytes already sent stay sent: they reach
                # the server when the stall ends, and the server runs them.
                link.client_gone = True
                self._drop_client(link)
                return
            self._close(link)
            return
        if from_client:
            if link.held_until:
                link.held += data
            else:
                self._client_bytes(link, data)
        else:
            self._server_bytes(link, data)

    def _record(self, kind: str, command: str) -> None:
        """Append an event; the caller holds the lock."""
        self.events.append(FaultEvent(kind, command, time.monotonic()))
        self._fired.notify_all()

    def _take_fault(self, name: str, buf: bytes | bytearray, start: int, end: int
                    ) -> _Fault | None:
        argv: list[bytes] | None = None
        with self._lock:
            for fault in self._faults:
                if fault.times <= 0 or not fault.match(name):
                    continue
                if fault.when is not None:
                    if argv is None:
                        argv = _arguments(buf, start, end)
                    if not fault.when(argv):
                        continue
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _client_bytes(self, link: _Link, data: bytes | bytearray) -> None:
        """Forward whole commands to the server, applying request-side faults."""
        link.up += data
        start = 0
        out = bytearray()
        while not link.closed:
            end = resp_end(link.up, start)
            if end is None:
                break
            name = _command_name(link.up, start, end)
            fault = self._take_fault(name, link.up, start, end) if name else None
            if fault is not None and fault.kind == "drop_request":
                with self._lock:
                    self._record("drop_request", name)
                self._send(link.server, out)
                self._close(link)
                return
            if fault is not None and fault.kind == "stall":
                with self._lock:
                    self._record("stall", name)
                link.held_until = time.monotonic() + fault.seconds
                link.held += link.up[start:]
                del link.up[:]
                self._send(link.server, out)
                return
            out += link.up[start:end]
            link.pending.append(None if fault is None else (fault, name))
            start = end
        del link.up[:start]
        self._send(link.server, out)

    def _release_stalls(self) -> None:
        now = time.monotonic()
        for link in list(self._links):
            if link.held_until and link.held_until <= now and not link.closed:
                link.held_until = 0.0
                held, link.held = link.held, bytearray()
                first = resp_end(held, 0)
                if first is None:
                    link.up += held
                    continue
                # the stalled command itself is forwarded without re-matching its fault
                link.pending.append(None)
                self._send(link.server, held[:first])
                if link.client_gone:
                    link.pending.extend([None] * _count_values(held, first))
                    self._send(link.server, held[first:])
                else:
                    self._client_bytes(link, held[first:])

    def _server_bytes(self, link: _Link, data: bytes) -> None:
        """Forward whole replies to the client, applying reply-side faults."""
        if link.client_gone:  # nobody to answer: wait for the replies, then hang up
            link.down += data
            while link.pending and (end := resp_end(link.down, 0)) is not None:
                del link.down[:end]
                link.pending.popleft()
            if not link.pending and not link.held_until:
                self._close(link)
            return
        link.down += data
        start = 0
        out = bytearray()
        while not link.closed:
            if link.down[start : start + 1] == b">":  # a push message answers no command
                end = resp_end(link.down, start)
                if end is None:
                    break
                out += link.down[start:end]
                start = end
                continue
            head = link.pending[0] if link.pending else None
            fault, name = head if head is not None else (None, "")
            if fault is not None and fault.kind == "cut_reply" and start < len(link.down):
                end = resp_end(link.down, start)
                size = (end or len(link.down)) - start
                out += link.down[start : start + max(1, size // 2)]
                with self._lock:
                    self._record("cut_reply", name)
                self._send(link.client, out)
                self._close(link)
                return
            end = resp_end(link.down, start)
            if end is None:
                break
            if link.pending:
                link.pending.popleft()
            if fault is not None and fault.kind == "lose_reply":
                with self._lock:
                    self._record("lose_reply", name)
                self._send(link.client, out)
                self._close(link)
                return
            out += link.down[start:end]
            start = end
        del link.down[:start]
        self._send(link.client, out)

    def _send(self, sock: socket.socket, data: bytes | bytearray) -> None:
        if not data:
            return
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                time.sleep(0.001)
                continue
            except OSError:
                return
            view = view[sent:]

    def _drop_client(self, link: _Link) -> None:
        assert self._selector is not None
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(link.client)
        link.client.close()

    def _close(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        assert self._selector is not None
        for sock in (link.client, link.server):
            if sock.fileno() < 0:
                continue
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class ClusterFaultProxy:
    """One :class:`FaultProxy` before every node of a cluster.

    ``ClusterFaultProxy(addresses)`` takes the nodes' ``(host, port)`` pairs (e.g.
    ``RedisClusterServer.addresses``). Pass :meth:`address_remap` to redis-py's cluster
    client (``RedisCluster(..., address_remap=proxies.address_remap)``, sync or asyncio)
    so every connection goes through a proxy; :meth:`proxy_for` finds the proxy of a node,
    and the arming methods arm every proxy at once.
    """

    def __init__(self, addresses: Iterable[tuple[str, int]]) -> None:
        self.proxies = {tuple(address): FaultProxy(*address) for address in addresses}
        self._back: dict[tuple[str, int], tuple[str, int]] = {}

    def start(self) -> ClusterFaultProxy:
        for address, proxy in self.proxies.items():
            proxy.start()
            self._back[(proxy.host, proxy.port)] = address  # type: ignore[assignment]
        return self

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()

    def __enter__(self) -> ClusterFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def address_remap(self, address: tuple[str, int]) -> tuple[str, int]:
        """Where a cluster client should connect to reach ``address``: its proxy."""
        proxy = self.proxies.get((address[0], int(address[1])))
        if proxy is None:  # e.g. "localhost" for 127.0.0.1, or a node added later
            proxy = next((p for (h, port), p in self.proxies.items()
                          if port == int(address[1])), None)
        return (proxy.host, proxy.port) if proxy is not None else address

    def proxy_for(self, address: tuple[str, int]) -> FaultProxy:
        """The proxy in front of the node at ``address``."""
        return self.proxies[(address[0], int(address[1]))]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every proxy, for a client's start-up node list."""
        return [(p.host, p.port) for p in self.proxies.values()]

    @property
    def events(self) -> list[FaultEvent]:
        """Every fault that fired, on any node."""
        return sorted((e for p in self.proxies.values() for e in p.events), key=lambda e: e.at)

    def lose_reply(self, command: str | Callable[[str], bool], *, times: int = 1,
                   when: Callable[[list[bytes]], bool] | None = None) -> None:
        for p in self.proxies.values():
            p.lose_reply(command, times=times, when=when)

    def cut_reply(self, command: str | Callable[[str], bool], *, times: int = 1,
                  when: Callable[[list[bytes]], bool] | None = None) -> None:
        for p in self.proxies.values():
            p.cut_reply(command, times=times, when=when)

    def drop_request(self, command: str | Callable[[str], bool], *, times: int = 1,
                     when: Callable[[list[bytes]], bool] | None = None) -> None:
        for p in self.proxies.values():
            p.drop_request(command, times=times, when=when)

    def stall(self, command: str | Callable[[str], bool], seconds: float, *,
              times: int = 1, when: Callable[[list[bytes]], bool] | None = None) -> None:
        for p in self.proxies.values():
            p.stall(command, seconds, times=times, when=when)

    def refuse_connections(self, count: int = 1) -> None:
        """Every node's proxy refuses its next ``count`` new connections."""
        for p in self.proxies.values():
            p.refuse_connections(count)

    def clear(self) -> None:
        for p in self.proxies.values():
            p.clear()

    def quiet(self, timeout: float = 10.0) -> bool:
        """:meth:`FaultProxy.quiet` on every node's proxy."""
        deadline = time.monotonic() + timeout
        return all(p.quiet(max(0.0, deadline - time.monotonic()))
                   for p in self.proxies.values())
