"""Blocking commands (BLPOP, BRPOP, BLMOVE) on connections that neither cut them short nor
send them twice.

redis-py 8 reads replies with a 5 s socket timeout and, on a client built directly,
retries a failed command up to ten times: a plain ``client.blpop(key, 30)`` fails after
5 s and is sent again, and a retried pop whose first reply was lost pops a second item.
Every blocking command redmodel sends therefore runs on a dedicated client to the server
(or, in a cluster, to the primary of the key's slot) whose socket timeout outlasts the
block and which never retries; redmodel sends the command on one of its connections
itself (``send_packed_command`` / ``read_response``, as the transport in
:mod:`redmodel._transport._links` does), so it knows whether the command left.

What a failure means (docs/failures.md, docs/containers.md):

- the connection failed **before** the command was sent: a plain
  ``redis.ConnectionError`` (nothing ran; safe to call again);
- it failed **after** (a lost or cut reply, a socket timeout): a pop may have removed a
  value whose reply never arrived, so :class:`~redmodel.OutcomeUnknownError` naming the
  keys. Blocking pops are at most once, in exactly-once mode too (a blocking command
  cannot run inside the exactly-once script). The one exception is a ``BLMOVE`` of a list
  onto its own end (the consumer's peek), which changes nothing: a plain error;
- a reply that proves the command did not run is followed, within the block's timeout:
  ``MOVED`` and ``ASK`` (a slot that migrated: the slot map is refreshed, the command
  goes to the new owner, after ``ASKING`` for an ``ASK``), ``UNBLOCKED ... instance state
  changed`` (a failover demoted the primary the command waited on: it waits again on the
  new one), ``TRYAGAIN``, ``CLUSTERDOWN`` and ``READONLY`` (after a short pause). So does
  a pooled connection the server already closed: it is replaced before anything is sent;
- any other error reply becomes :class:`~redmodel.ServerError` naming the keys, also an
  instance of redis-py's class for the reply (``NoPermissionError``,
  ``OutOfMemoryError``, ...), as on every other path
  (:func:`redmodel._transport._wire.server_error`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry

from redmodel._args import MAX_BLOCK_SECONDS, seconds
from redmodel._errors import OutcomeUnknownError
from redmodel._plan import Command
from redmodel._transport._wire import pack_commands, server_error

__all__ = [
    "BLOCK_MARGIN",
    "aclose_blocking_clients",
    "block_arg",
    "blocking_call",
    "blocking_call_async",
    "blocking_client",
    "close_blocking_clients",
    "is_async_client",
]

BLOCK_MARGIN = 5.0
"""Seconds a blocking command's socket timeout exceeds its block, for a slow reply."""

_FOLLOW_LIMIT = 10  # replies proving nothing ran, in a row, that one call follows
_WAITED = 1.0  # a reply after this many seconds ends a wait, not a row of refusals
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 0.5  # between follow-ups, from the second on

_clients: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()

# Connection settings that belong to one pool, not to the connection.
_PRIVATE = ("orig_socket_timeout", "maint_notifications_pool_handler", "cache")

# a reply that came whole (nothing ran) although redis-py raises it as a ConnectionError
_REPLY_ERRORS = (BusyLoadingError, AuthenticationError)
# what a broken connection raises (redis-py wraps most socket errors, not all)
_TRANSPORT_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def is_async_client(client: Any) -> bool:
    """Whether ``client`` is a redis.asyncio client (one server or a cluster)."""
    return isinstance(client, (aredis.Redis, AsyncRedisCluster))


def _socket_timeout(timeout: float | None) -> float | None:
    return None if timeout is None else math.ceil(timeout) + BLOCK_MARGIN


def _dedicated(base: Any, node: str, kwargs: dict[str, Any], connection_class: Any,
               asynchronous: bool) -> Any:
    """A client with ``kwargs``' connection settings and no retry, one per ``base`` client
    and ``node`` (a cluster node's name, or ""). Its pool opens a connection only when
    every one it has is busy, so it holds as many as pops ran at once on that node; each
    call sets the socket timeout of the connection it uses (:func:`_send`)."""
    with _lock:
        per_base = _clients.setdefault(base, {})
        found = per_base.get(node)
        if found is None:
            kwargs = {k: v for k, v in kwargs.items() if k not in _PRIVATE}
            if asynchronous:
                kwargs.update(socket_timeout=BLOCK_MARGIN, retry=AsyncRetry(NoBackoff(), 0))
                found = aredis.Redis(connection_pool=aredis.ConnectionPool(
                    connection_class=connection_class, **kwargs))
            else:
                kwargs.update(socket_timeout=BLOCK_MARGIN, retry=Retry(NoBackoff(), 0))
                found = redis.Redis(connection_pool=redis.ConnectionPool(
                    connection_class=connection_class, **kwargs))
            per_base[node] = found
        return found


def _node_client(client: Any, node: Any) -> Any:
    if isinstance(client, AsyncRedisCluster):
        return _dedicated(client, node.name, node.connection_kwargs, node.connection_class,
                          True)
    node_pool = node.redis_connection.connection_pool
    return _dedicated(client, node.name, node_pool.connection_kwargs,
                      node_pool.connection_class, False)


def blocking_client(client: Any, key: str | None = None) -> Any:
    """The client on the same server as ``client`` (in a cluster: on the primary that holds
    ``key``) that blocking commands use: no retry, so redis-py never sends one twice, and
    a socket timeout set per call (:func:`_socket_timeout`), so it never cuts a block
    short. One per client and node, closed by :func:`close_blocking_clients`.

    An asyncio cluster client must have learnt its slots first (``await
    client.initialize()``); :func:`blocking_call_async` sees to that."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:  # one server, sync or asyncio
        return _dedicated(client, "", pool.connection_kwargs, pool.connection_class,
                          isinstance(client, aredis.Redis))
    if key is None:
        raise ValueError("a blocking command on a cluster needs the key it blocks on")
    return _node_client(client, client.get_node_from_key(key))


def _taken(client: Any) -> list[Any]:
    with _lock:
        return list(_clients.pop(client, {}).values())


def close_blocking_clients(client: Any) -> None:
    """Close the connections of ``client``'s blocking clients (:meth:`Store.close`); a
    later blocking pop opens new ones."""
    for dedicated in _taken(client):
        dedicated.connection_pool.disconnect()


async def aclose_blocking_clients(client: Any) -> None:
    """:func:`close_blocking_clients` for an asyncio client (:meth:`AsyncStore.aclose`)."""
    for dedicated in _taken(client):
        await dedicated.connection_pool.disconnect()


def _asked_client(client: Any, at: tuple[str, int]) -> Any | None:
    """The dedicated client of the cluster node an ASK named (None: not in the map)."""
    manager = client.nodes_manager
    host, port = at
    remap = getattr(manager, "remap_host_port", None)
    if remap is not None:
        host, port = remap(host, port)
    node = manager.get_node(host=host, port=port)
    return None if node is None else _node_client(client, node)


def block_arg(timeout: float | None, what: str = "a blocking pop's timeout",
              key: str | None = None) -> float | int:
    """The BLPOP/BLMOVE timeout argument for ``timeout`` seconds (None: 0, forever);
    :class:`ValidationError` (naming ``what`` and ``key``) unless it is a positive number
    of seconds up to :data:`~redmodel._args.MAX_BLOCK_SECONDS`."""
    if timeout is None:
        return 0
    seconds(timeout, what, most=MAX_BLOCK_SECONDS, key=key,
            forever="None waits forever; use pop() not to wait")
    return timeout


def _name(command: Command) -> str:
    name = command[0]
    return (name.decode() if isinstance(name, bytes) else str(name)).upper()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def moves_nothing(command: Command) -> bool:
    """Whether ``command`` changes nothing even when it runs: a ``BLMOVE`` of a list onto
    the same end of itself (the consumer's peek). Any other blocking pop removes a value."""
    return (_name(command) == "BLMOVE" and _text(command[1]) == _text(command[2])
            and _text(command[3]).upper() == _text(command[4]).upper())


# ---- one call, across the replies that prove nothing ran (no I/O here) -------------------

_ASK, _MOVED, _PAUSE = "ask", "moved", "pause"


def _nothing_ran(error: ResponseError) -> str | None:
    """How to follow an error reply that proves the blocking command did not run (None:
    any other reply, which is raised)."""
    if isinstance(error, MovedError):  # before AskError: a MovedError is an AskError
        return _MOVED
    if isinstance(error, AskError):
        return _ASK
    if str(error).startswith("UNBLOCKED") and "instance state changed" in str(error):
        return _MOVED  # a failover demoted its primary: refresh the map, wait again
    if isinstance(error, (TryAgainError, ClusterDownError, ReadOnlyError)):
        return _PAUSE
    return None


class _Call:
    """One blocking call: the command to send next (with the time left to block) and what
    to do about each reply that proves it did not run."""

    def __init__(self, command: Command, timeout: float | None, keys: Sequence[str]) -> None:
        self.command = command
        self.timeout = timeout
        self.keys = tuple(keys)
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.socket_timeout = _socket_timeout(timeout)
        self.follows = 0
        self.asking: tuple[str, int] | None = None

    def wire(self) -> list[Command] | None:
        """The commands to send now (``ASKING`` first after an ASK); None when the block's
        time ran out while following (the call then answers None, as on a timeout)."""
        command = self.command
        if self.follows and self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return None
            command = (*command[:-1], max(0.001, round(left, 3)))  # 0 would wait forever
        return [("ASKING",), command] if self.asking is not None else [command]

    def reply(self, replies: list[Any], waited: float = 0.0) -> tuple[bool, Any]:
        """``(True, reply)`` when the call is done; ``(False, refresh)`` to send again,
        first refreshing the cluster's slot map when ``refresh`` (raises the error of a
        reply that cannot be followed). ``waited``: seconds the command was out, so that
        a wait ended by a failover hours later does not count towards the limit."""
        asked, self.asking = self.asking, None
        if waited >= _WAITED:
            self.follows = 0
        reply = replies[-1]
        if not isinstance(reply, ResponseError):
            return True, reply  # (even if ASKING was refused: what it popped is returned)
        if asked is not None and isinstance(replies[0], ResponseError):
            raise server_error(replies[0], self.command)  # ASKING itself refused
        how = _nothing_ran(reply)
        if how is None or self.follows >= _FOLLOW_LIMIT:
            raise server_error(reply, self.command) from reply
        self.follows += 1
        if how == _ASK:
            assert isinstance(reply, AskError)
            self.asking = (str(reply.host), int(reply.port))
        return False, how != _ASK

    def pause(self) -> float:
        """Seconds to wait before the next send (none before the first follow-up)."""
        if self.follows <= 1:
            return 0.0
        pause = min(_LONGEST_PAUSE, _FIRST_PAUSE * 2 ** (self.follows - 2))
        if self.deadline is not None:
            pause = min(pause, max(0.0, self.deadline - time.monotonic()))
        return float(pause)

    def lost(self, error: BaseException, sent: bool) -> BaseException:
        """The error for a connection that failed: before the command was sent, the
        plain redis-py error (nothing ran); after, OutcomeUnknownError, unless the command
        changes nothing."""
        name = _name(self.command)
        if sent and not moves_nothing(self.command):
            return OutcomeUnknownError(
                f"the connection failed after {name} was sent and before its reply arrived "
                f"({type(error).__name__}: {error}); a blocking pop is at most once: it may "
                "have removed a value, which is then lost, and redmodel did not send it "
                "again", keys=self.keys)
        if isinstance(error, redis.RedisError):
            return error
        if isinstance(error, TimeoutError):
            return redis.TimeoutError(f"{name} timed out")
        return redis.ConnectionError(f"{name} failed: {type(error).__name__}: {error}")


# ---- sync -------------------------------------------------------------------------------


def _fresh(conn: Any) -> None:
    """Replace a pooled connection the server closed (idle timeout, restart) or left
    unread, before anything is sent on it."""
    try:
        stale = conn.can_read(timeout=0)
    except _TRANSPORT_ERRORS:
        stale = True
    if stale:
        conn.disconnect()
        conn.connect()


def _send(client: Any, call: _Call, wire: list[Command]) -> list[Any]:
    """Send ``wire`` once on a connection of ``client``; its replies (error replies as
    exceptions in the list)."""
    pool = client.connection_pool
    sent = False
    try:
        conn = pool.get_connection()
    except _REPLY_ERRORS:
        raise
    except _TRANSPORT_ERRORS as e:
        raise call.lost(e, sent) from e
    try:
        try:
            _fresh(conn)
            conn.check_health()
            data = pack_commands(conn, wire)
            sent = True
            conn.send_packed_command(data, check_health=False)
            replies: list[Any] = []
            for _ in wire:
                try:  # this call's socket timeout for these reads (None: no limit)
                    replies.append(conn.read_response(timeout=call.socket_timeout,
                                                      disconnect_on_error=False))
                except ResponseError as e:
                    replies.append(e)
            return replies
        except _REPLY_ERRORS:
            conn.disconnect()
            raise
        except _TRANSPORT_ERRORS as e:
            conn.disconnect()
            raise call.lost(e, sent) from e
        except BaseException:
            conn.disconnect()
            raise
    finally:
        pool.release(conn)


def blocking_call(client: Any, command: Command, timeout: float | None,
                  keys: Sequence[str]) -> Any:
    """Send the blocking ``command`` (blocking up to ``timeout`` seconds, None: forever;
    its last argument is that block) once, on :func:`blocking_client`, and return its
    reply. A reply proving it did not run is followed within the timeout (see the module's
    docstring); a connection that fails after it was sent raises OutcomeUnknownError
    unless it changes nothing."""
    call = _Call(command, timeout, keys)
    key = call.keys[0] if call.keys else None
    while True:
        wire = call.wire()
        if wire is None:
            return None
        conn_client = None
        if call.asking is not None:
            conn_client = _asked_client(client, call.asking)
            if conn_client is None:  # a node the map does not know yet
                call.asking = None
                client.nodes_manager.initialize()
                continue
        if conn_client is None:
            conn_client = blocking_client(client, key)
        sent_at = time.monotonic()
        replies = _send(conn_client, call, wire)
        done, reply = call.reply(replies, time.monotonic() - sent_at)
        if done:
            return reply
        if reply and hasattr(client, "nodes_manager"):
            client.nodes_manager.initialize()
        pause = call.pause()
        if pause:
            time.sleep(pause)


# ---- asyncio ----------------------------------------------------------------------------


async def _fresh_async(conn: Any) -> None:
    try:
        stale = conn.is_connected and await conn.can_read()
    except _TRANSPORT_ERRORS:
        stale = True
    if stale:
        await conn.disconnect()
    await conn.connect()


async def _send_async(client: Any, call: _Call, wire: list[Command]) -> list[Any]:
    pool = client.connection_pool
    sent = False
    try:
        conn = await pool.get_connection()
    except _REPLY_ERRORS:
        raise
    except _TRANSPORT_ERRORS as e:
        raise call.lost(e, sent) from e
    try:
        try:
            conn.socket_timeout = call.socket_timeout  # for the send and the reads
            await _fresh_async(conn)
            await conn.check_health()
            data = pack_commands(conn, wire)
            sent = True
            await conn.send_packed_command(data, check_health=False)
            replies: list[Any] = []
            for _ in wire:
                try:
                    replies.append(await conn.read_response(disconnect_on_error=False))
                except ResponseError as e:
                    replies.append(e)
            return replies
        except _REPLY_ERRORS:
            await conn.disconnect()
            raise
        except _TRANSPORT_ERRORS as e:  # includes the builtin TimeoutError of asyncio
            await conn.disconnect()
            raise call.lost(e, sent) from e
        except BaseException:
            await conn.disconnect()
            raise
    finally:
        await pool.release(conn)


async def blocking_call_async(client: Any, command: Command, timeout: float | None,
                              keys: Sequence[str]) -> Any:
    """:func:`blocking_call` for an asyncio client."""
    call = _Call(command, timeout, keys)
    key = call.keys[0] if call.keys else None
    cluster = isinstance(client, AsyncRedisCluster)
    while True:
        wire = call.wire()
        if wire is None:
            return None
        if cluster:
            await client.initialize()  # no-op once the slots are known
        conn_client = None
        if call.asking is not None:
            conn_client = _asked_client(client, call.asking)
            if conn_client is None:
                call.asking = None
                await client.nodes_manager.initialize()
                continue
        if conn_client is None:
            conn_client = blocking_client(client, key)
        sent_at = time.monotonic()
        replies = await _send_async(conn_client, call, wire)
        done, reply = call.reply(replies, time.monotonic() - sent_at)
        if done:
            return reply
        if reply and cluster:
            await client.nodes_manager.initialize()
        pause = call.pause()
        if pause:
            await asyncio.sleep(pause)
