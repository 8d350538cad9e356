"""What the fault tests share (tests/test_attack*.py, tests/test_fix*.py): a quick resend
policy, stores connected through a :class:`~redmodel.testing.FaultProxy`, the proxy in
front of the test server (the ``proxy`` fixture itself is in tests/conftest.py), and a
``run_many`` with a fault armed in its round (an ACL user who cannot fence, the faults,
the run on either shell)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

import redmodel
from redmodel.testing import FaultProxy, RedisServer

# A server whose acknowledged writes survive a SIGKILL of its process: Redis and Valkey
# write(2) the AOF buffer before they send the replies of the commands in it (beforeSleep:
# flushAppendOnlyFile, then the pending replies), and a killed process's writes are in the
# file. fsync only matters to a crash of the machine, which no test makes: "always" made
# each write wait for the disk, and a whole run's disk traffic made one such test take
# 30 s instead of 4 ("everysec" would not do: it may postpone the write(2) by up to 2 s
# while a background fsync runs, and reply meanwhile).
DURABLE = ("--appendonly", "yes", "--appendfsync", "no")

#: How often :func:`cluster_client` starts a cluster client before it gives up.
SETUP_TRIES = 5


def cluster_client(options: dict[str, Any], loop: asyncio.AbstractEventLoop | None) -> Any:
    """A ``RedisCluster`` of ``options`` (an asyncio one when ``loop`` is given), its
    start-up done: CLUSTER SLOTS and COMMAND, whose reply is large. Set-up is not what the
    fault tests test: on a busy machine the start-up through a Python proxy can outlast
    the short socket timeout the faults need (an ERROR in CI once), so it is
    tried again with a fresh client, up to :data:`SETUP_TRIES` times. Call it before any
    fault is armed."""
    for attempt in range(SETUP_TRIES):
        try:
            if loop is None:
                return redis.cluster.RedisCluster(**options)
            client = redis.asyncio.cluster.RedisCluster(**options)
            try:
                loop.run_until_complete(client.initialize())
            except BaseException:
                loop.run_until_complete(client.aclose())
                raise
            return client
        except (redis.TimeoutError, redis.ConnectionError):
            if attempt == SETUP_TRIES - 1:
                raise
    raise AssertionError("unreachable")


#: Resends quick enough for a test: 5 attempts 10 to 50 ms apart, within 8 s.
FAST_RESEND = redmodel.ResendPolicy(attempts=5, backoff_base=0.01, backoff_max=0.05,
                                    deadline=8.0, write_id_ttl=30.0)


def store_through(proxy: FaultProxy, *, socket_timeout: float | None = None,
                  **options: Any) -> redmodel.Store:
    """A Store on a ``redis.Redis(host=, port=)`` client of the proxy (redis-py's default
    retry), with the Store's ``options`` (``exactly_once=``, ``resend=``, ...)."""
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=socket_timeout)
    return redmodel.Store(client, **options)


@contextmanager
def proxied_store(server: RedisServer) -> Iterator[tuple[FaultProxy, redmodel.Store]]:
    """A FaultProxy in front of ``server`` and a ``Store.from_url`` of it, as the docs
    build a store; the proxy stops on leaving."""
    with FaultProxy(server.host, server.port) as proxy:
        yield proxy, redmodel.Store.from_url(proxy.url)


# ---- run_many with a fault in its round (tests/test_fix31g.py, test_fix31i.py,
# test_fix31m.py, test_fix32a.py) -----------------------------------------------------------

#: The password of the ACL users :func:`user_without_client_kill` makes (a test server's).
PASSWORD = "pw"

#: The faults :func:`arm_fault` arms on the commands a test picks.
FAULTS = ("lose", "cut", "drop", "drop-always", "stall")


def user_without_client_kill(client: Any, name: str, **options: Any) -> None:
    """The ACL user ``name`` (password :data:`PASSWORD`) who may run anything but
    ``CLIENT KILL``: a store of it cannot fence a resendable write whose reply was lost.
    ``options`` go to ``acl_setuser`` (``target_nodes=`` on a cluster)."""
    client.acl_setuser(name, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
                       commands=["+@all", "-client|kill"], **options)


def client_options(proxy: FaultProxy, user: str | None = None, *,
                   socket_timeout: float = 1.0) -> dict[str, Any]:
    """A redis-py client's options (sync or asyncio) for the proxy, as ``user`` (one of
    :func:`user_without_client_kill`) or the default user."""
    options: dict[str, Any] = {"host": proxy.host, "port": proxy.port,
                               "socket_timeout": socket_timeout}
    if user is not None:
        options.update(username=user, password=PASSWORD)
    return options


def arm_fault(proxy: FaultProxy, fault: str, when: Callable[[list[bytes]], bool]) -> None:
    """Arm ``fault`` (one of :data:`FAULTS`) on the commands whose arguments ``when``
    accepts: the reply lost or cut once, the request dropped once or every time, or held
    1.5 s (past the 1 s socket timeout of :func:`client_options`: a late copy)."""
    if fault == "lose":
        proxy.lose_reply(lambda c: True, when=when)
    elif fault == "cut":
        proxy.cut_reply(lambda c: True, when=when)
    elif fault == "drop":
        proxy.drop_request(lambda c: True, when=when)
    elif fault == "drop-always":
        proxy.drop_request(lambda c: True, when=when, times=60)
    else:
        assert fault == "stall", fault
        proxy.stall(lambda c: True, 1.5, when=when)


def marked(*marks: str) -> Callable[[list[bytes]], bool]:
    """A ``when`` for :func:`arm_fault`: a command one of whose arguments holds a mark."""
    found = [m.encode() for m in marks]
    return lambda args: any(m in a for a in args for m in found)


def run_many_outcomes(shell: str, options: dict[str, Any], store_options: dict[str, Any],
                      plans: Callable[[Any], list[Any]], *,
                      first: Callable[[Any], list[Any]] = lambda store: [],
                      arm: Callable[[], None] = lambda: None) -> tuple[list[Any], Any]:
    """(each plan's outcome: its result or its exception, the error run_many raised or
    None) of ``store.run_many(*plans(store))`` on a Store (``shell`` "sync") or an
    AsyncStore ("async") of a redis-py client of ``options`` (:func:`client_options`),
    ``store_options`` the store's; the plans ``first(store)`` are run one by one before
    (a container's first use, unfaulted), then ``arm()``. A raised error without every
    plan's ``results`` fails the test."""

    def split(error: Exception, count: int) -> tuple[list[Any], Any]:
        results = getattr(error, "results", None)
        assert results is not None and len(results) == count, (
            f"run_many raised {error!r} without every plan's results")
        return list(results), error

    if shell == "sync":
        store = redmodel.Store(redis.Redis(**options), **store_options)
        try:
            for plan in first(store):
                store.run(plan)
            arm()
            made = plans(store)
            try:
                return list(store.run_many(*made)), None
            except Exception as e:
                return split(e, len(made))
        finally:
            store.close()

    async def run() -> tuple[list[Any], Any]:
        astore = redmodel.AsyncStore(redis.asyncio.Redis(**options), **store_options)
        try:
            for plan in first(astore):
                await astore.run(plan)
            arm()
            made = plans(astore)
            try:
                return list(await astore.run_many(*made)), None
            except Exception as e:
                return split(e, len(made))
        finally:
            await astore.aclose()
    assert shell == "async", shell
    return asyncio.run(run())
