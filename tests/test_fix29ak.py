"""Fix 29AK: the launcher's extra_args check, its errors, restart() behind the TLS
terminator, the pytest plugin on an unusable binary, and a bad ttl's error naming the key.

See /work/notes/s29/ATK-AK-FINDINGS.md (F1-F6) and FIX-AK-NOTES.md. No test here starts
anything on port 6379 or connects to it: every refusal of 6379 happens when the server is
made, before anything starts.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import (
    RedisClusterServer,
    RedisServer,
    ServerStartError,
    ServerStateError,
    TLSTerminator,
    binary_version,
    check_supported,
    server_supports_tls,
)
from redmodel.testing._server import OWNED_OPTIONS, _config_lines, _split_args
from tests.budget import scaled
from tests.conftest import AsyncFacade

_FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture],
                       deadline=None)

# ---- F1: extra_args are read as the server reads them ------------------------------------


def _spell_char(draw: st.DrawFn, ch: str, quote: str) -> str:
    """One character of a name inside ``quote`` (or none), in a drawn spelling."""
    if draw(st.booleans()):
        ch = ch.upper()
    if quote == '"':
        how = draw(st.sampled_from(["plain", "hex", "hexupper", "backslash"]))
        if how == "hex":
            return f"\\x{ord(ch):02x}"
        if how == "hexupper":
            return f"\\x{ord(ch):02X}"
        if how == "backslash" and ch not in "nrtba":  # \n etc. mean control characters
            return "\\" + ch
    return ch


@st.composite
def spelled_name(draw: st.DrawFn, name: str) -> str:
    """``name`` as the server still reads it: any case, any part in "..." (with \\xHH and
    backslash escapes) or '...' (a quoted part must end the word, so only the tail)."""
    cut = draw(st.integers(0, len(name)))
    head = "".join(c.upper() if draw(st.booleans()) else c for c in name[:cut])
    quote = draw(st.sampled_from(["", '"', "'"])) if cut < len(name) else ""
    tail = "".join(_spell_char(draw, c, quote) for c in name[cut:])
    return f"{head}{quote}{tail}{quote}"


@st.composite
def owned_in_extra_args(draw: st.DrawFn, names: Any = None) -> tuple[tuple[str, ...], str]:
    """(extra_args setting an owned option somewhere, that option's name)."""
    name = draw(st.sampled_from(sorted(OWNED_OPTIONS)) if names is None else names)
    spelled = draw(spelled_name(name))
    value = draw(st.sampled_from(["6379", "12345", "yes", "/tmp", "0.0.0.0", '""', "x y"]))
    lead = draw(st.sampled_from(["", " ", "\t", "  "]))
    form = draw(st.sampled_from(["one", "two", "after-save"]))
    before = draw(st.sampled_from([(), ("--maxmemory", "64mb"), ("--hz 10",),
                                   ("--appendonly", "no", "--save", "")]))
    if form == "one":
        owned: tuple[str, ...] = (f"--{lead}{spelled} {value}",)
    elif form == "two":
        owned = (f"--{lead}{spelled}", value)
    else:  # "--save" followed by an option gets "" from the server, then the option
        owned = ("--save", f"--{lead}{spelled}", value)
    after = draw(st.sampled_from([(), ("--hz", "10")]))
    return (*before, *owned, *after), name


@given(case=owned_in_extra_args())
def test_an_owned_option_is_refused_however_written(redis_server: RedisServer,
                                                    case: tuple[tuple[str, ...], str]) -> None:
    """docs/testing.md: the options the launcher owns raise ValidationError when the server
    is made, so nothing starts, "any case, also as "--port 6379" in one argument": also
    quoted, escaped (\\xHH), partly quoted, after other options. The error names it."""
    args, name = case
    lines = _config_lines([os.fsencode(a) for a in args])
    assert name.encode() in [_split_args(line)[0].lower() for line, _ in lines if line]
    for make in (lambda: RedisServer(redis_server.binary, extra_args=args),
                 lambda: RedisClusterServer(redis_server.binary, extra_args=args)):
        with pytest.raises(redmodel.ValidationError) as caught:
            make()
        assert name in str(caught.value)


@given(case=owned_in_extra_args(st.sampled_from(["port", "tls-port", "cluster-port"])))
def test_port_6379_is_unreachable_through_extra_args(redis_server: RedisServer,
                                                     case: tuple[tuple[str, ...], str]) -> None:
    """"It always chooses a free loopback port itself, never 6379": any spelling of a port
    option is refused when the server is made (nothing here is started)."""
    args, _ = case
    with pytest.raises(redmodel.ValidationError):
        RedisServer(redis_server.binary, extra_args=args)


@pytest.mark.parametrize("args", [
    ("--replicaof", "127.0.0.1", "6379"),
    ("--replicaof 127.0.0.1 6379",),
    ("--SLAVEOF", "localhost", "06379"),
    ("--cluster-announce-port", "6379"),
    ("--cluster-announce-bus-port 16379",),
    ("--sentinel",),
    ("--maxmemory-policy", "--sentinel"),  # the server looks for it among all arguments
    ("--hz", "10", "-"),  # a trailing "-": config from stdin
    ("--hz\x00", "10"),
    ('--"hz" 10',),  # a name not written plainly
    ('--hz "10',),  # unbalanced quotes
])
def test_other_ways_to_6379_or_another_config_are_refused(redis_server: RedisServer,
                                                          args: tuple[str, ...]) -> None:
    with pytest.raises(redmodel.ValidationError):
        RedisServer(redis_server.binary, extra_args=args)


@settings(max_examples=scaled(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(port=st.sampled_from([6379, 16379]), turns=st.integers(-(2**31), 2**31 - 1),
       option=st.sampled_from(["replicaof", "slaveof", "REPLICAOF", "cluster-announce-port"]),
       pad=st.sampled_from(["", "+", "00", " "]))
def test_a_port_that_wraps_to_6379_is_refused(
        redis_server: RedisServer, port: int, turns: int, option: str, pad: str) -> None:
    """The server reads a port with C's atoi, (int) strtol: a number 2**32 away from 6379
    (or 16379), however many times, is 6379 to it (attack 29AN F1): refused, nothing
    started (only the object is made)."""
    value = port + turns * 2**32
    text = f"{pad}{value}" if value >= 0 or pad not in ("+", "00") else str(value)
    words = (f"--{option}", "127.0.0.1", text) if "announce" not in option else \
        (f"--{option}", text)
    with pytest.raises(redmodel.ValidationError, match="6379"):
        RedisServer(redis_server.binary, extra_args=words)


@pytest.mark.parametrize("args", [("--rdma-bind", "0.0.0.0"), ("--rdma-port", "7000")])
def test_valkeys_second_listener_is_the_launchers_too(redis_server: RedisServer,
                                                      args: tuple[str, ...]) -> None:
    with pytest.raises(redmodel.ValidationError, match="rdma"):
        RedisServer(redis_server.binary, extra_args=args)


_HARMLESS = ["maxmemory-policy", "hz", "save", "appendonly", "notify-keyspace-events",
             "maxclients", "timeout"]


@given(name=st.sampled_from(_HARMLESS),
       value=st.text(st.characters(exclude_characters="\n\r\x00",
                                   exclude_categories=["Cs"]), max_size=12),
       one=st.booleans())
def test_a_plain_option_with_any_value_is_let_through(redis_server: RedisServer, name: str,
                                                      value: str, one: bool) -> None:
    """Values may be anything (quoted or not: `--save ""` keeps working); the server
    reads a value argument as one quoted word, so no value can set another option."""
    args: tuple[str, ...]
    if one:
        quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        args = (f"--{name} {quoted}",)
    else:
        args = (f"--{name}", value)
    assert RedisServer(redis_server.binary, extra_args=args).extra_args == args


@pytest.mark.parametrize("args", [("--save", ""), ('--save ""',), ("--save ''",), ("--save",),
                                  ("--save", "--appendonly", "no"),
                                  ("--requirepass", "--port 6379")])
def test_documented_forms_still_pass(redis_server: RedisServer, args: tuple[str, ...]) -> None:
    assert RedisServer(redis_server.binary, extra_args=args).extra_args == args


@settings(max_examples=scaled(30))
@given(spelled=spelled_name("hz"), value=st.integers(1, 500), one=st.booleans())
def test_the_check_reads_names_as_the_server_does(redis_server: RedisServer, spelled: str,
                                                  value: int, one: bool) -> None:
    """The port of sdssplitargs agrees with the server: a harmless option (hz) written in
    a drawn spelling is read as hz by both (the check is bypassed to start the server)."""
    args = (f"--{spelled} {value}",) if one else (f"--{spelled}", str(value))
    lines = _config_lines([os.fsencode(a) for a in args])
    assert [_split_args(line)[0].lower() for line, _ in lines] == [b"hz"]
    server = RedisServer(redis_server.binary)
    server.extra_args = args  # what the check would refuse (not plain), to compare
    with server:
        got = server.client().config_get("hz")["hz"]
        assert (got.decode() if isinstance(got, bytes) else got) == str(value)


# ---- F2: an unusable binary is a ServerStartError naming it and the cause -----------------


def _not_a_program(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "redis-server-not-a-program"
    path.write_bytes(b"\x7fXLF" + content)  # no "#!", no ELF: the kernel cannot run it
    path.chmod(0o755)
    return path


def _missing_interpreter(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "redis-server-script"
    path.write_text(f"#!/nonexistent-{name}/python\n")
    path.chmod(0o755)
    return path


def _hangs(tmp_path: Path) -> Path:
    path = tmp_path / "redis-server-hangs"
    path.write_text("#!/bin/sh\nexec sleep 30\n")  # exec: the PID killed is sleep's
    path.chmod(0o755)
    return path


def _assert_unusable(path: Path, cause: str, timeout: float = 10.0) -> None:
    calls = [
        lambda: RedisServer(str(path), startup_timeout=timeout).start(),
        lambda: binary_version(str(path), timeout=timeout),
        lambda: check_supported(str(path), timeout=timeout),
        lambda: server_supports_tls(str(path), timeout=timeout),
        lambda: RedisServer(str(path), tls=True, tls_terminator=False,
                            startup_timeout=timeout).start(),
    ]
    for call in calls:
        with pytest.raises(ServerStartError) as caught:
            call()
        assert str(path) in str(caught.value)
        assert cause in str(caught.value)
        assert isinstance(caught.value, redmodel.RedmodelError)
        assert isinstance(caught.value, RuntimeError)


@given(content=st.binary(max_size=64))
def test_a_file_that_is_not_a_program(tmp_path_factory: pytest.TempPathFactory,
                                      content: bytes) -> None:
    _assert_unusable(_not_a_program(tmp_path_factory.mktemp("bin"), content),
                     "not a program this machine can run")


@given(name=st.text("abcdefghij-_", min_size=1, max_size=10))
def test_a_script_whose_interpreter_is_missing(tmp_path_factory: pytest.TempPathFactory,
                                               name: str) -> None:
    _assert_unusable(_missing_interpreter(tmp_path_factory.mktemp("bin"), name),
                     f"interpreter /nonexistent-{name}/python")


def test_a_binary_that_hangs_on_version_is_given_up_within_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    _assert_unusable(_hangs(tmp_path), "did not answer", timeout=0.3)
    assert time.monotonic() - started < 10  # five calls of 0.3 s, not 10 s each


# ---- F3: the plugin fails only the tests that need a server -------------------------------


def _run_plugin(tmp_path: Path, binary: Path, *extra: str) -> str:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_app.py").write_text(
        "def test_uses_store(store):\n    pass\n\n"
        "def test_plain():\n    assert 1 + 1 == 2\n")
    root = str(Path(redmodel.__file__).resolve().parent.parent)  # this checkout's redmodel
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-p", "no:xdist", f"--redmodel-server={binary}", *extra, "test_app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
             "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])})
    return run.stdout + run.stderr


@pytest.mark.parametrize("kind", ["not-a-program", "missing-interpreter"])
@pytest.mark.parametrize("quiet", [False, True])
def test_the_plugin_fails_the_tests_that_need_the_server_with_the_reason(
        tmp_path: Path, kind: str, quiet: bool) -> None:
    """docs/testing.md: "A missing binary fails the tests with the error; nothing is
    skipped"; the test that uses no fixture of redmodel's runs and passes."""
    binary = (_not_a_program(tmp_path, b"junk") if kind == "not-a-program"
              else _missing_interpreter(tmp_path, "sh"))
    out = _run_plugin(tmp_path, binary, *(["-q"] if quiet else []))
    assert "INTERNALERROR" not in out, out[-2000:]
    assert "1 passed" in out and "1 error" in out, out[-2000:]
    assert "skipped" not in out
    assert str(binary) in out and "could not be run" in out, out[-2000:]
    if not quiet:
        assert "redmodel server: unusable" in out, out[-2000:]


# ---- F4: restart() behind the TLS terminator ----------------------------------------------


def test_restart_behind_the_tls_terminator_keeps_the_terminator_and_port(
        redis_server: RedisServer) -> None:
    with RedisServer(redis_server.binary, tls=True, tls_terminator=True) as server:
        port, terminator = server.port, server._terminator
        for how in ("running", "killed", "running"):
            server.client().set("k", 1)
            first_pid = server.pid
            if how == "killed":
                server.kill()
            server.restart()
            assert server.port == port and server._terminator is terminator
            assert server.uses_tls_terminator and server.running
            assert server.pid != first_pid
            assert server.client().get("k") is None
            assert server.client().ping()


def test_restart_without_a_started_server_is_a_state_error(redis_server: RedisServer) -> None:
    server = RedisServer(redis_server.binary)
    with pytest.raises(ServerStateError):
        server.restart()
    server.start()
    server.stop()
    with pytest.raises(ServerStateError):
        server.restart()


# ---- F5: arguments are ValidationErrors, states ServerStateErrors -------------------------

_not_a_count = st.one_of(st.integers(max_value=0), st.integers(min_value=1001),
                         st.booleans(), st.floats(), st.text(max_size=3), st.none())
_bad_seconds = st.one_of(st.floats().filter(lambda x: not 0 < x <= 1e9), st.booleans(),
                         st.text(max_size=3), st.integers(max_value=0))


@given(primaries=_not_a_count)
def test_bad_primaries_is_a_validation_error(redis_server: RedisServer, primaries: Any) -> None:
    with pytest.raises(redmodel.ValidationError):
        RedisClusterServer(redis_server.binary, primaries=primaries)


@given(replicas=st.one_of(st.integers(max_value=-1), st.integers(min_value=1001),
                          st.booleans(), st.floats(), st.text(max_size=3)))
def test_bad_replicas_is_a_validation_error(redis_server: RedisServer, replicas: Any) -> None:
    with pytest.raises(redmodel.ValidationError):
        RedisClusterServer(redis_server.binary, replicas=replicas)


@given(timeout=_bad_seconds, password=st.one_of(st.integers(), st.binary(), st.none()))
def test_bad_timeout_or_password_of_a_cluster(redis_server: RedisServer, timeout: Any,
                                              password: Any) -> None:
    with pytest.raises(redmodel.ValidationError):
        RedisClusterServer(redis_server.binary, startup_timeout=timeout)
    if password is not None:
        with pytest.raises(redmodel.ValidationError):
            RedisClusterServer(redis_server.binary, password=password)


_SERVER_STATE = [
    lambda s: s.port, lambda s: s.pid, lambda s: s.url, lambda s: s.directory,
    lambda s: s.version, lambda s: s.uses_tls_terminator, lambda s: s.ca_file,
    lambda s: s.pause(), lambda s: s.resume(), lambda s: s.kill(), lambda s: s.restart(),
    lambda s: s.client(), lambda s: s.connection_kwargs(),
]


@pytest.mark.parametrize("call", _SERVER_STATE)
def test_a_server_not_started_is_a_state_error(redis_server: RedisServer, call: Any) -> None:
    with pytest.raises(ServerStateError) as caught:
        call(RedisServer(redis_server.binary))
    assert isinstance(caught.value, redmodel.RedmodelError)
    assert isinstance(caught.value, RuntimeError)


@pytest.mark.parametrize("call", [
    lambda c: c.failover(1), lambda c: c.roles(), lambda c: c.primary_nodes(),
    lambda c: c.ports, lambda c: c.pids, lambda c: c.url,
])
def test_a_cluster_not_started_is_a_state_error(redis_server: RedisServer, call: Any) -> None:
    with pytest.raises(ServerStateError):
        call(RedisClusterServer(redis_server.binary))


def test_a_tls_file_of_a_plain_server_is_a_state_error(redis_server: RedisServer) -> None:
    with pytest.raises(ServerStateError):
        _ = redis_server.ca_file


@given(node=st.one_of(st.integers(min_value=1, max_value=65535), st.booleans(), st.text(),
                      st.tuples(st.just("127.0.0.1"), st.text(max_size=5)), st.none()))
def test_failover_of_no_node_is_a_validation_error(redis_cluster: RedisClusterServer,
                                                   node: Any) -> None:
    if node in redis_cluster.ports:
        return
    with pytest.raises(redmodel.ValidationError):
        redis_cluster.failover(node)


def test_failover_without_a_replica_is_a_state_error(redis_cluster: RedisClusterServer) -> None:
    with pytest.raises(ServerStateError):
        redis_cluster.failover(redis_cluster.ports[0])
    with pytest.raises(redmodel.ValidationError):
        redis_cluster.failover(redis_cluster.ports[0], timeout=math.nan)


def test_tls_terminator_errors_are_redmodel_errors(tmp_path: Path) -> None:
    with pytest.raises(redmodel.ValidationError):
        TLSTerminator(cert_file="c", key_file="k", ca_file="a")
    with pytest.raises(ServerStateError):
        _ = TLSTerminator(cert_file="c", key_file="k", ca_file="a", backend_port=1).port


# ---- F6: a bad ttl names the argument and the key, in every write method ------------------


@redmodel.model(prefix="fx29")
@attrs.define
class Tock:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29i")
@attrs.define
class IndexedTock:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


_TTL_MAX = 1e11
bad_ttls = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 0, -1, 1e300, 2**64,
                     10**400, True, False, "10", b"10", dt.timedelta(0),
                     dt.timedelta(seconds=-1), dt.timedelta(days=999_999_999), [1]]),
    st.floats().filter(lambda x: not 0 < x <= _TTL_MAX),
    st.integers().filter(lambda x: not 0 < x <= _TTL_MAX),
    st.booleans(), st.text(max_size=5),
    st.timedeltas().filter(lambda d: not 0 < d.total_seconds() <= _TTL_MAX),
)


@pytest.fixture(params=["sync", "async"])
def either_store(request: pytest.FixtureRequest, redis_client: Any,
                 redis_url: str) -> Iterator[Any]:
    if request.param == "sync":
        yield redmodel.Store(redis_client)
        return
    facade = AsyncFacade(redmodel.AsyncStore.from_url(redis_url), redis_client)
    yield facade
    facade.close()


_WRITES = {
    "save": lambda s, m, ttl: s.save(m(id="b"), ttl=ttl),
    "save_many": lambda s, m, ttl: s.save_many([m(id="b"), m(id="c")], ttl=ttl),
    "save_many_iter": lambda s, m, ttl: s.save_many(iter([m(id="b"), m(id="c")]), ttl=ttl),
    "expire": lambda s, m, ttl: s.expire(m, "b", ttl),
}


@_FIXTURE_OK
@given(ttl=bad_ttls, write=st.sampled_from(sorted(_WRITES)),
       model=st.sampled_from([Tock, IndexedTock]))
def test_a_bad_ttl_names_the_argument_and_the_key(either_store: Any, ttl: Any, write: str,
                                                  model: type) -> None:
    """docs/failures.md: a NaN, an infinity, a wrong type or a value out of range raises
    ValidationError naming the argument and the key; nothing is written."""
    store = either_store
    store.save(model(id="b"))
    prefix = "fx29i" if model is IndexedTock else "fx29"
    with pytest.raises(redmodel.ValidationError) as caught:
        _WRITES[write](store, model, ttl)
    assert "ttl" in str(caught.value)
    assert f"{prefix}:b" in str(caught.value)
    assert store.pttl(model, "b") is None  # no expiry set
    assert not store.exists(model, "c")


@settings(max_examples=scaled(50))
@given(ttl=bad_ttls, write=st.sampled_from(["save", "save_many", "expire"]))
def test_a_bad_ttl_in_a_transaction_names_the_key(store: redmodel.Store, ttl: Any,
                                                  write: str) -> None:
    store.save(Tock(id="b"))

    def body(tx: Any) -> None:
        if write == "save":
            tx.save(Tock(id="b"), ttl=ttl)
        elif write == "save_many":
            tx.save_many([Tock(id="b")], ttl=ttl)
        else:
            tx.expire(Tock, "b", ttl)

    with pytest.raises(redmodel.ValidationError) as caught:
        store.transaction(body)()
    assert "fx29:b" in str(caught.value)
    assert store.pttl(Tock, "b") is None
