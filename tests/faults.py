"""What the fault tests share (tests/test_attack*.py, tests/test_fix*.py): a quick resend
policy, stores connected through a :class:`~redmodel.testing.FaultProxy`, and the proxy in
front of the test server (the ``proxy`` fixture itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

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
