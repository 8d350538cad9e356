"""Fixtures shared by every test. The servers, and the ``store`` fixture (a Store on an
empty throwaway server), come from redmodel's pytest plugin (redmodel/_pytest_plugin.py):
throwaway redis-servers on free loopback ports."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis._parsers.commands as _commands_parsers
import redis.utils
from hypothesis import HealthCheck, settings
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

import redmodel
from redmodel._pytest_plugin import _binary as _plugin_binary
from redmodel.testing import FaultProxy, RedisClusterServer, RedisServer
from tests.keys import use_keys

# Example counts come from a profile, never hard-coded high in a test: "default" keeps
# `make test` within about 3 minutes per server on a 2-core machine; HYPOTHESIS_PROFILE=ci
# (what .ci/run sets) draws six times as many, HYPOTHESIS_PROFILE=thorough sixty times as
# many (session 28: the default went from 60 to 20 when `make test` took 239 s here;
# session 30: to 10, when the suite had grown to 4,766 tests and ~400 s of CPU a server).
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}
settings.register_profile("default", max_examples=10, **_COMMON)
settings.register_profile("ci", max_examples=60, **_COMMON)
settings.register_profile("thorough", max_examples=600, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# redis-py looks its own version up in the installed distributions' metadata (importlib.metadata
# parses METADATA files) for every client it makes, twice: ~0.95 of the ~1.1 ms of CPU of a
# `redis.Redis()`, and the suite makes thousands of clients (each cluster client one a node).
# The answer cannot change within a process, so the test process asks once; what redis-py
# sends (CLIENT SETINFO lib-ver) is the same string. Session 34, tests/ only: redmodel leaves
# redis-py as it is.
if hasattr(redis.utils, "get_lib_version"):  # (redis-py 5.x and later)
    redis.utils.get_lib_version = functools.cache(redis.utils.get_lib_version)


# A cluster client (sync: when it is built; asyncio: at its first command) sends COMMAND
# and parses the reply (~240 commands' key specs) into its CommandsParser: ~9 of the ~15 ms
# of CPU a RedisCluster() costs, and the suite builds ~800 of them. The table is the
# server binary's, so each test process parses it once per binary (told apart by COMMAND
# COUNT, a one-integer reply) and hands each new parser its own copy. What redis-py does
# with the table, and every other command it sends, is unchanged. Session 35, tests/ only.
_COMMAND_TABLES: dict[Any, dict[str, Any]] = {}


def _cached_initialize(original: Any) -> Any:
    def initialize(self: Any, r: Any) -> None:
        count = r.execute_command("COMMAND COUNT")
        found = _COMMAND_TABLES.get(count)
        if found is None:
            original(self, r)
            _COMMAND_TABLES[count] = dict(self.commands)
        else:
            self.commands = dict(found)
    return initialize


def _cached_async_initialize(original: Any) -> Any:
    async def initialize(self: Any, node: Any = None) -> None:
        if node:
            self.node = node
        count = await self.node.execute_command("COMMAND COUNT")
        found = _COMMAND_TABLES.get(("async", count))
        if found is None:
            await original(self, node)
            _COMMAND_TABLES[("async", count)] = dict(self.commands)
        else:
            self.commands = dict(found)
    return initialize


if hasattr(_commands_parsers, "CommandsParser"):
    _commands_parsers.CommandsParser.initialize = _cached_initialize(
        _commands_parsers.CommandsParser.initialize)
if hasattr(_commands_parsers, "AsyncCommandsParser"):
    _commands_parsers.AsyncCommandsParser.initialize = _cached_async_initialize(
        _commands_parsers.AsyncCommandsParser.initialize)


class AsyncFacade:
    """The sync Store API over an AsyncStore: each call is awaited on a private event loop,
    so the behavioural tests written against Store exercise the asyncio shell unchanged.
    ``client`` is a synchronous client on the same server, for raw assertions."""

    def __init__(self, astore: redmodel.AsyncStore, client: Any) -> None:
        object.__setattr__(self, "_astore", astore)
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "_loop", asyncio.new_event_loop())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._astore, name)
        if not callable(attr):
            return attr

        return _awaiting(attr, self._loop)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._astore, name, value)

    def close(self) -> None:
        self._loop.run_until_complete(self._astore.aclose())
        self._loop.close()


def _awaiting(fn: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``fn`` with its awaitable results awaited on ``loop`` (queries stay wrapped)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            return loop.run_until_complete(_await(result))
        if hasattr(result, "__anext__"):
            return iter(loop.run_until_complete(_collect(result)))
        if isinstance(result, redmodel.Query):
            return _QueryFacade(result, loop)
        if isinstance(result, redmodel.transactions.AsyncTransactionFunction):
            return _awaiting(result, loop)  # store.transaction(fn)(...)
        return result

    return call


class _QueryFacade:
    """A Query of an AsyncStore whose run methods are awaited for the caller."""

    def __init__(self, query: redmodel.Query[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._query, self._loop = query, loop

    def __getattr__(self, name: str) -> Any:
        if name == "pages":
            return lambda size=500: iter(self._loop.run_until_complete(
                _collect(self._query.apages(size))))
        attr = getattr(self._query, name)
        return _awaiting(attr, self._loop) if callable(attr) else attr

    def __iter__(self) -> Any:
        return (item for page in self.pages() for item in page)


async def _await(result: Any) -> Any:
    return await result


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def _async_cluster(cluster: RedisClusterServer) -> AsyncRedisCluster:
    host, port = cluster.addresses[0]
    return AsyncRedisCluster(host=host, port=port)


def _one_server_store(request: pytest.FixtureRequest, kind: str, registry: bool
                      ) -> Iterator[Any]:
    client = request.getfixturevalue("redis_client")
    if kind == "sync":
        yield redmodel.Store(client, registry=registry)
        return
    url = request.getfixturevalue("redis_url")
    facade = AsyncFacade(redmodel.AsyncStore.from_url(url, registry=registry), client)
    yield facade
    facade.close()


@pytest.fixture(params=["sync", "async"])
def one_server_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """:func:`any_store` on the test server only: a Store, or an AsyncStore behind the
    sync facade; ``store.client`` is a sync client for raw assertions."""
    yield from _one_server_store(request, request.param, True)


@pytest.fixture(params=["sync", "async", "cluster", "async_cluster"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The same behaviour through every shell: sync and asyncio, one server and a
    three-primary cluster. ``store.client`` is a sync client for raw assertions.

    A test marked ``no_registry`` gets stores built with ``registry=False``: for tests
    that put two versions of a model side by side as two classes on one prefix, which the
    model registry takes for two models (tests/test_registry.py tests the registry)."""
    kind = request.param
    registry = request.node.get_closest_marker("no_registry") is None
    if kind in ("sync", "async"):
        yield from _one_server_store(request, kind, registry)
        return
    client = request.getfixturevalue("redis_cluster_client")
    if kind == "cluster":
        yield redmodel.Store(client, registry=registry)
        return
    facade = AsyncFacade(redmodel.AsyncStore(_async_cluster(request.getfixturevalue(
        "redis_cluster")), registry=registry), client)
    yield facade
    facade.close()


@pytest.fixture
def proxy(redis_server: RedisServer, redis_client: Any) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the test server (after ``redis_client`` emptied it), for the
    fault tests (tests/faults.py has stores through it)."""
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


@pytest.fixture(scope="module")
def own_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """A server of this test file's own (the session's binary), for a test that asserts a
    server-wide count: INFO ``total_commands_processed``, or commandstats of what any
    connection sends (HELLO, CLIENT SETINFO, AUTH, SELECT). On the session's server
    (``redis_server``) those counts are shared by every file a worker runs, so any other
    connection's commands would move them."""
    with RedisServer(_plugin_binary(pytestconfig)) as server:
        yield server


@pytest.fixture
def own_client(own_server: RedisServer) -> Iterator[Any]:
    """A ``redis.Redis`` on :func:`own_server`, emptied with FLUSHALL before the test."""
    with own_server.client() as client:
        client.flushall()
        yield client


@pytest.fixture
def own_store(own_client: Any) -> redmodel.Store:
    """A :class:`redmodel.Store` on :func:`own_server` (its client is ``own_client``)."""
    return redmodel.Store(own_client)


@pytest.fixture(autouse=True)
def _empty_session_servers(request: pytest.FixtureRequest) -> None:
    """A test that uses the session's server, TLS server or cluster (``redis_server``,
    ``tls_redis_server``, ``redis_cluster``) starts with it empty (every primary), as
    ``redis_client`` and ``redis_cluster_client`` give it: otherwise what another file's
    tests left there (a model's registry record under the same prefix, say) decides the
    outcome by which files ran earlier in the same worker. (Autouse: before the test's own
    fixtures.)"""
    names = request.fixturenames
    if "redis_server" in names and "redis_client" not in names:
        with request.getfixturevalue("redis_server").client() as client:
            client.flushall()
    if "tls_redis_server" in names:  # (no fixture of the plugin empties this one)
        with request.getfixturevalue("tls_redis_server").client() as client:
            client.flushall()
    if "redis_cluster" in names and "redis_cluster_client" not in names:
        for node in request.getfixturevalue("redis_cluster").primary_nodes():
            with node.client() as client:
                client.flushall()


@pytest.fixture
def fresh_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """One newly generated Fernet key and index key configured for the test, and nothing
    else (tests/keys.py); what was configured before comes back after it."""
    use_keys(monkeypatch)


def dbsize(client: Any) -> int:
    """Keys on the server, or on every primary of a cluster (RedisCluster.dbsize asks one),
    but the model registry's (``<prefix>:%schema``: a store's first use of a model records
    it, tests/test_registry.py tests it)."""
    if hasattr(client, "get_primaries"):
        nodes = client.get_primaries()
        total = sum(int(client.dbsize(target_nodes=node)) for node in nodes)
        registry = sum(1 for node in nodes
                       for _ in client.scan_iter("*:%schema", target_nodes=node))
        return total - registry
    return int(client.dbsize()) - sum(1 for _ in client.scan_iter("*:%schema"))


# The longest files first (seconds of a whole loaded run, session 22), then the rest in
# collection order: with `--dist loadfile` a file runs in one worker, and `make test` passes
# `--no-loadscope-reorder` (xdist would otherwise start the files with the most tests first,
# and these few-test files last, where one of them alone makes the run's tail).
SLOW_FILES_FIRST = (
    "test_fix32f.py", "test_fix32g.py", "test_benchmarks.py", "test_cli.py",
    "test_cli_docs.py", "test_attack12r.py",
    "test_codecs.py", "test_evolution.py", "test_layouts.py", "test_faults.py",
    "test_testing.py", "test_consume.py", "test_index_state.py", "test_index_state_cluster.py",
    "test_cli_migrate.py",
    "test_docs.py", "test_identity.py", "test_crashes.py", "test_migrate_online.py",
    "test_attack13r.py", "test_roundtrip.py", "test_blind_state.py", "test_buy_stress.py",
    "test_fix29aja.py", "test_docstring_commands.py", "test_indexed_single_call.py",
)


# The tests that run mypy over user-code fixtures: they need no server, so `make test`
# runs them once, on their own (REDMODEL_ONLY_MYPY=1), and each server's run without them
# (REDMODEL_SKIP_MYPY=1: the Makefile)
MYPY_FILES = ("test_typing.py", "test_fix29ajb.py")


def seeded_mypy_cache(dest: Path) -> Path:
    """A mypy ``--cache-dir`` at ``dest`` seeded with the checkout's ``.mypy_cache`` (its
    per-target-version directories, "3.10" for the project's ``python_version``), which
    ``make test``'s ``mypy --strict redmodel`` has just brought up to date (redmodel, redis-py,
    attrs, cattrs, the stdlib): a check of one user-code file then costs ~0.5 s of CPU
    instead of ~5 s from a cold cache (session 30: six such checks in the first server's
    run). mypy validates each cached module against its source, options and plugin hash, so
    a stale or half-written seed costs time, never a wrong answer; without a seed (a bare
    ``pytest`` on a fresh clone) the cache starts cold, as before."""
    root = Path(__file__).resolve().parent.parent / ".mypy_cache"
    seeds = [p for p in root.glob("[0-9]*.[0-9]*") if p.is_dir()] if root.is_dir() else []
    for seed in seeds:
        target = dest / seed.name
        if target.exists():
            continue
        try:
            shutil.copytree(seed, target)
        except (OSError, shutil.Error):  # a file rewritten mid-copy: this version starts cold
            shutil.rmtree(target, ignore_errors=True)
    return dest


def _runs_mypy(item: pytest.Item) -> bool:
    return item.path.name in MYPY_FILES or "mypy" in item.name or any(
        name.startswith("mypy") for name in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection built (~5,000 items, their modules, Hypothesis' strategies) lives
    to the end of the run, so the cyclic garbage collector need not walk it again and
    again: it is frozen (gc.freeze). Measured (session 34, the whole suite on Redis 7.0.15,
    6 workers): the collector's time in the workers fell from 34.8 s to 25.1 s, of ~290 s
    of the workers' CPU. Nothing a test asserts depends on when a cycle is collected: the
    tests that need it call gc.collect() (tests/test_attack12q.py) or turn the collector
    off (tests/test_consume.py)."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # REDMODEL_SKIP_MYPY=1: every test but those; REDMODEL_ONLY_MYPY=1: those alone (`make
    # test` runs them once, in a step of their own, then each server's run without them)
    skip, only = (os.environ.get(f"REDMODEL_{w}_MYPY") == "1" for w in ("SKIP", "ONLY"))
    if skip or only:
        dropped = [item for item in items if _runs_mypy(item) is skip]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if _runs_mypy(item) is not skip]
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
