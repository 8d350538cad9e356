"""Blocking commands (BLPOP, BRPOP, BLMOVE) on connections that neither cut them short nor
send them twice.

redis-py 8 reads replies with a 5 s socket timeout and, on a client built directly,
retries a failed command up to ten times: a plain ``client.blpop(key, 30)`` fails after
5 s and is sent again, and a retried pop whose first reply was lost pops a second item.
Every blocking command redmodel sends therefore runs on a dedicated client to the server
(or, in a cluster, to the primary of the key's slot) whose socket timeout outlasts the
block and which never retries. Errors leave as redis-py errors: a builtin ``OSError`` from
the socket becomes ``redis.ConnectionError``, an error reply becomes
:class:`~redmodel.ServerError` naming the keys.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from redmodel._errors import ServerError, ValidationError
from redmodel._plan import Command

__all__ = [
    "BLOCK_MARGIN",
    "block_arg",
    "blocking_call",
    "blocking_call_async",
    "blocking_client",
    "is_async_client",
]

BLOCK_MARGIN = 5.0
"""Seconds a blocking command's socket timeout exceeds its block, for a slow reply."""

_REDIRECTS = ("MOVED", "ASK")
_ATTEMPTS_ON_REDIRECT = 3

_clients: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()

# Connection settings that belong to one pool, not to the connection.
_PRIVATE = ("orig_socket_timeout", "maint_notifications_pool_handler", "cache")


def is_async_client(client: Any) -> bool:
    """Whether ``client`` is a redis.asyncio client (one server or a cluster)."""
    return isinstance(client, (aredis.Redis, AsyncRedisCluster))


def _socket_timeout(timeout: float | None) -> float | None:
    return None if timeout is None else math.ceil(timeout) + BLOCK_MARGIN


def _dedicated(base: Any, node: str, kwargs: dict[str, Any], connection_class: Any,
               socket_timeout: float | None, asynchronous: bool) -> Any:
    """A client with ``kwargs``' connection settings, ``socket_timeout`` and no retry;
    cached per ``base`` client, ``node`` (a cluster node's name, or "") and timeout."""
    with _lock:
        per_base = _clients.setdefault(base, {})
        found = per_base.get((node, socket_timeout))
        if found is None:
            kwargs = {k: v for k, v in kwargs.items() if k not in _PRIVATE}
            if asynchronous:
                kwargs.update(socket_timeout=socket_timeout, retry=AsyncRetry(NoBackoff(), 0))
                found = aredis.Redis(connection_pool=aredis.ConnectionPool(
                    connection_class=connection_class, **kwargs))
            else:
                kwargs.update(socket_timeout=socket_timeout, retry=Retry(NoBackoff(), 0))
                found = redis.Redis(connection_pool=redis.ConnectionPool(
                    connection_class=connection_class, **kwargs))
            per_base[(node, socket_timeout)] = found
        return found


def blocking_client(client: Any, timeout: float | None, key: str | None = None) -> Any:
    """A client on the same server as ``client`` (in a cluster: on the primary that holds
    ``key``) for a block of up to ``timeout`` seconds (None: forever): socket timeout
    ``ceil(timeout) + BLOCK_MARGIN`` (None when forever) and no retry, so redis-py neither
    cuts the block short nor sends it twice. Cached per client (or node) and timeout.

    An asyncio cluster client must have learnt its slots first (``await
    client.initialize()``); :func:`blocking_call_async` sees to that."""
    socket_timeout = _socket_timeout(timeout)
    pool = getattr(client, "connection_pool", None)
    if pool is not None:  # one server, sync or asyncio
        return _dedicated(client, "", pool.connection_kwargs, pool.connection_class,
                          socket_timeout, isinstance(client, aredis.Redis))
    if key is None:
        raise ValueError("a blocking command on a cluster needs the key it blocks on")
    node = client.get_node_from_key(key)
    if isinstance(client, AsyncRedisCluster):
        return _dedicated(client, node.name, node.connection_kwargs, node.connection_class,
                          socket_timeout, True)
    node_pool = node.redis_connection.connection_pool
    return _dedicated(client, node.name, node_pool.connection_kwargs,
                      node_pool.connection_class, socket_timeout, False)


def block_arg(timeout: float | None) -> float | int:
    """The BLPOP/BLMOVE timeout argument for ``timeout`` seconds (None: 0, forever);
    :class:`ValidationError` unless it is a positive number."""
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValidationError(
            f"a blocking pop's timeout must be a positive number of seconds (None waits "
            f"forever; use pop() not to wait), got {timeout!r}")
    return timeout


def _redirected(error: ResponseError) -> bool:
    return str(error).startswith(_REDIRECTS)


def _server_error(error: ResponseError, command: Command, keys: Sequence[str]) -> ServerError:
    return ServerError(str(error), keys=tuple(keys), command=str(command[0]))


def _connection_error(error: OSError, command: Command) -> redis.ConnectionError:
    return redis.ConnectionError(f"{command[0]} failed: {type(error).__name__}: {error}")


def blocking_call(client: Any, command: Command, timeout: float | None,
                  keys: Sequence[str]) -> Any:
    """Send the blocking ``command`` (blocking up to ``timeout`` seconds, None: forever)
    once, on :func:`blocking_client`, and return its reply. In a cluster a MOVED or ASK
    reply (the command did not run) refreshes the slots and sends it to the new owner."""
    for attempt in range(_ATTEMPTS_ON_REDIRECT):
        conn = blocking_client(client, timeout, keys[0] if keys else None)
        try:
            return conn.execute_command(*command)
        except ResponseError as e:
            if _redirected(e) and attempt + 1 < _ATTEMPTS_ON_REDIRECT and hasattr(
                client, "nodes_manager"
            ):
                client.nodes_manager.initialize()
                continue
            raise _server_error(e, command, keys) from e
        except redis.RedisError:
            raise
        except OSError as e:  # not wrapped by redis-py on every path
            if isinstance(e, TimeoutError):
                raise redis.TimeoutError(f"{command[0]} timed out") from e
            raise _connection_error(e, command) from e
    raise AssertionError("unreachable")  # pragma: no cover


async def blocking_call_async(client: Any, command: Command, timeout: float | None,
                              keys: Sequence[str]) -> Any:
    """:func:`blocking_call` for an asyncio client."""
    for attempt in range(_ATTEMPTS_ON_REDIRECT):
        if isinstance(client, AsyncRedisCluster):
            await client.initialize()  # no-op once the slots are known
        conn = blocking_client(client, timeout, keys[0] if keys else None)
        try:
            return await conn.execute_command(*command)
        except ResponseError as e:
            if _redirected(e) and attempt + 1 < _ATTEMPTS_ON_REDIRECT and hasattr(
                client, "nodes_manager"
            ):
                await client.nodes_manager.initialize()
                continue
            raise _server_error(e, command, keys) from e
        except redis.RedisError:
            raise
        except OSError as e:  # includes the builtin TimeoutError of asyncio.timeout
            if isinstance(e, TimeoutError):
                raise redis.TimeoutError(f"{command[0]} timed out") from e
            raise _connection_error(e, command) from e
    raise AssertionError("unreachable")  # pragma: no cover
