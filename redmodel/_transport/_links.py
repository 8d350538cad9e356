"""The transport's two shells: they only move bytes for :mod:`redmodel._transport._wire`.

:class:`SyncLink` (``redis.Redis`` / ``redis.cluster.RedisCluster``) and :class:`AsyncLink`
(their asyncio twins) each take a connection from the client's own pool (so the user's
TLS, auth, protocol and timeouts apply), pack a round's commands into one buffer (hiredis'
``pack_command`` when it is installed, redis-py's packer otherwise), send it, read the
replies with the connection's public ``read_response``, release the connection and hand
back what happened. They never call redis-py's command methods, so redis-py's command
retry (10 attempts on a client built directly) never resends anything; the client's retry
setting still applies to opening a connection.

A :class:`SyncSession` / :class:`AsyncSession` keeps one connection for a transaction
(WATCH is per connection).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import attrs
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redmodel._errors import CONNECTION_ERRORS, RedmodelError
from redmodel._plan import Batch, Command, follow_up_failed
from redmodel._transport._wire import (
    Call,
    Exchange,
    Link,
    ResendPolicy,
    RestartAttemptError,
    batch_keys,
    command_slot,
    cross_slot_error,
    pack_commands,
    resp_version,
    sendable,
)

__all__ = ["AsyncLink", "AsyncSession", "SyncLink", "SyncSession"]

_packer: Callable[[Any], bytes] | None
try:
    from hiredis import pack_command as _packer
except ImportError:  # pragma: no cover - hiredis is an optional extra
    _packer = None
_HIREDIS_PARSERS: tuple[type, ...]
try:  # the parsers' own readers and their "incomplete" answer (see _buffered)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _INCOMPLETE
    from redis._parsers.hiredis import _AsyncHiredisParser, _HiredisParser
    _HIREDIS_PARSERS = (_HiredisParser, _AsyncHiredisParser)
except ImportError:  # pragma: no cover - hiredis missing, or redis-py moved them
    _HIREDIS_PARSERS, _INCOMPLETE = (), object()

# a reply that came whole although redis-py raises it as a ConnectionError
_REPLY_ERRORS = (BusyLoadingError, AuthenticationError)
# what a broken connection raises: redis-py wraps socket errors; anything else from the
# parser (a protocol error) leaves the connection as unusable
_TRANSPORT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def _node_key(node: Any) -> Hashable:
    return None if node is None else node.name


_CLIENT_ID: Command = ("CLIENT", "ID")
_UNKNOWN = object()


def _socket_of(conn: Any) -> Any:
    """What changes each time a connection (sync or asyncio) connects again."""
    sock = getattr(conn, "_sock", None)
    return sock if sock is not None else getattr(conn, "_writer", None)


def _known_id(conn: Any) -> Any:
    """The server-side id of ``conn`` as now connected: learned from a ``CLIENT ID`` sent
    earlier on this socket, or from the HELLO reply (RESP3, sync: ``handshake_metadata``);
    ``_UNKNOWN`` if neither (the shell asks ``CLIENT ID`` before the connection's first
    write); None if the server refused CLIENT ID (ACL)."""
    sock = _socket_of(conn)
    learned = getattr(conn, "_redmodel_id", None)
    if learned is not None and learned[0] is sock:
        return learned[1]
    meta = getattr(conn, "handshake_metadata", None)
    if isinstance(meta, dict):
        found = meta.get(b"id", meta.get("id"))
        if isinstance(found, int):
            conn._redmodel_id = (sock, found)
            return found
    return _UNKNOWN


def _learned(conn: Any, reply: Any) -> int | None:
    """Take in the reply to ``CLIENT ID`` (an error reply: refused, the id stays unknown).
    It is asked in a round trip of its own, once per connection, before the connection's
    first write (asyncio, RESP2): asked in the same packet as the write, a request lost
    with the write would leave the write's first copy impossible to fence."""
    found = reply if isinstance(reply, int) and not isinstance(reply, bool) else None
    conn._redmodel_id = (_socket_of(conn), found)
    return found


class _Shell:
    """What both shells share: the link (policy, mode, loaded scripts) and packing."""

    def __init__(self, client: Any, *, cluster: bool, policy: ResendPolicy,
                 exactly_once: bool) -> None:
        self.client = client
        self.cluster = cluster
        self.link = Link(
            policy=policy, exactly_once=exactly_once, cluster=cluster,
            locate=self._locate if cluster else None,
            default=self._default if cluster else None,
            node_at=self._node_at if cluster else None,
            node_key=_node_key if cluster else None,
            resp=resp_version(client),
        )
        # every str is sent as its UTF-8 bytes whatever the client's encoding= (see
        # _wire.pack_commands): hiredis' packer and Call.packed give exactly those
        self._hiredis = _packer is not None
        # when the last reload of the cluster's slot map ended, succeeded or failed
        # (time.monotonic()): see _Shell._moves
        self._reload_ended = float("-inf")
        # the lock around a reload: SyncLink's (per process), AsyncLink's (per event loop)
        self._lock_of_pid: tuple[int, threading.Lock] | None = None
        self._locks_of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                        asyncio.Lock] = weakref.WeakKeyDictionary()

    def _locate(self, slot: int) -> Any:
        return self.client.nodes_manager.get_node_from_slot(slot)

    def _default(self) -> Any:
        return self.client.get_default_node()

    def _node_at(self, host: str, port: int) -> Any:
        manager = self.client.nodes_manager
        remap = getattr(manager, "remap_host_port", None)
        if remap is not None:
            host, port = remap(host, port)
        node = manager.get_node(host=host, port=port)
        if node is None:
            raise RedisConnectionError(f"no node {host}:{port} in the cluster map")
        return node

    def _pack(self, conn: Any, wire: Sequence[Command],
              packed: Sequence[bytes] | None = None) -> Any:
        """``wire`` as the buffers to send, every str as its UTF-8 bytes whatever the
        client's ``encoding=`` (:func:`_wire.pack_commands`); ``packed``: ``wire`` in RESP
        already, as a UTF-8 client packs it (:attr:`Call.packed`)."""
        if packed is not None:
            return [b"".join(packed)]
        if self._hiredis:
            assert _packer is not None
            pack = _packer
            try:
                return [b"".join([pack(c) for c in wire])]
            except TypeError:
                pass  # a value hiredis does not pack: redis-py's encoder explains it
            except UnicodeEncodeError:  # the str form of undecodable id bytes
                return self._pack(conn, sendable(wire))
        return pack_commands(conn, wire)

    def _moves(self, ex: Exchange) -> tuple[list[BaseException], bool]:
        """(MOVED errors to apply, whether to reload the whole map) after a round.

        A reload (``CLUSTER SLOTS`` and redis-py's walk of its 16,384 slots) is what a
        round that lost a connection asks for. Calls in flight that lose their connections
        together (threads of one store, or asyncio tasks) share one: each reloads under a
        lock of the store (``_reload_lock``) and skips its reload when one ended after its
        round ended (:meth:`_reload_covers`): the one it waited for, or one made
        meanwhile. redis-py's own ``NodesManager.initialize`` shares a reload that
        succeeded the same way (its lock and epoch); here a reload that *failed* (every
        node unreachable, or stalled past the socket timeout) stands for the waiting
        calls too, so they do not each wait out one more timeout after another (twelve
        threads losing their connections 0.1 s apart behind a ``CLUSTER SLOTS`` stalled
        past the timeout: the last answered after 13.5 s, past the ResendPolicy's deadline,
        with 36 reloads sent; now 1.25 s and 3); the next round of each fails and reloads
        on its own. A reload that stood for a call may have read the map just before its
        failure: when the map was still stale, the call's next round fails again and
        reloads (counted by the ResendPolicy), as with redis-py alone. A reload that was
        interrupted (its task cancelled, a ``KeyboardInterrupt``) neither succeeded nor
        failed and stands for no one: the next waiting call reloads."""
        if not self.cluster:
            return [], False
        manager = self.client.nodes_manager
        if ex.moved and getattr(manager, "address_remap", None) is not None:
            return [], True  # MOVED names real addresses: only a reload remaps them
        return ex.moved, ex.reinit

    def _reload_covers(self, ended: float) -> bool:
        """Whether a reload of the slot map ended (succeeded or failed, not interrupted)
        at or after ``ended``, a round's end (``time.monotonic()``)."""
        return self._reload_ended >= ended

    @contextlib.contextmanager
    def _reloading(self) -> Iterator[None]:
        """Around one reload of the slot map (sync, or around its ``await``): the reload
        ends when it returns or raises an Exception (a failed one stands for the waiting
        calls too: their next round reloads); one interrupted by a BaseException (a
        cancelled task, a ``KeyboardInterrupt``) ended neither way and stands for no one."""
        try:
            yield
        except Exception:
            self._reload_ended = time.monotonic()
            raise
        self._reload_ended = time.monotonic()


# ---- sync -------------------------------------------------------------------------------


class SyncLink(_Shell):
    """The transport of a :class:`~redmodel.Store`."""

    def execute(self, batch: Batch) -> list[Any]:
        """Send ``batch``; its replies (raises ServerError for an error reply)."""
        if batch.follow_up:
            return self._follow_up(batch)
        if len(batch.commands) == 1 and not batch.atomic:
            return self._one(batch)
        ex = Exchange(batch, self.link)
        self.drive(ex)
        return ex.raw() if batch.errors else ex.result()  # errors: see Batch.errors

    def _follow_up(self, batch: Batch) -> list[Any]:
        """A :attr:`~redmodel._plan.Batch.follow_up` sent: a plain connection error or
        timeout answers None per command (:func:`~redmodel._plan.follow_up_failed`)."""
        try:
            return self.execute(attrs.evolve(batch, follow_up=False))
        except CONNECTION_ERRORS as e:
            return follow_up_failed(batch, e)

    def _one(self, batch: Batch) -> list[Any]:
        """A one-command batch (a store's single call: save, get, update, incr...). The
        common round is done here, without an :class:`Exchange`: one server, nothing to
        load or tidy first, not exactly-once; the call is the one ``Exchange._call`` would
        build (one command, its connection's id learnt for a resendable write) and goes
        through the same :meth:`_round`. A reply that came whole and is no error is the
        answer (``Exchange._answered``'s case). Anything else (a lost reply, a failure
        before sending, an error reply: NOSCRIPT, READONLY, WRONGTYPE...) is handed, as the
        round it was, to the batch's Exchange, which judges it and goes on exactly as when
        it had sent that round itself: resend or not under the policy, fence,
        OutcomeUnknownError, ServerError naming the key."""
        link = self.link
        command = batch.commands[0]
        if self.cluster or link.exactly_once or link.pending or (
                command[0] == "EVALSHA" and command[1] not in link.loaded.get(None, ())):
            ex = Exchange(batch, link)
            self.drive(ex)
            return ex.raw() if batch.errors else ex.result()
        call = Call(None, batch.commands, [0], [], 0, False)
        # Exchange._learns: a write that may be sent again
        call.learn = batch.write and (batch.may_resend if batch.unsafe is None
                                      else not batch.unsafe)
        started = time.monotonic()
        got = self._send(call, None)  # _round of one call
        if got is not None:
            conn, pool = got
            try:
                if batch.meanwhile is not None:
                    batch.meanwhile()
                self._read(conn, call)
            except BaseException:  # interrupted (KeyboardInterrupt, ...)
                conn.disconnect()
                pool.release(conn)
                raise
            pool.release(conn)
        if call.failure is None and call.replies and \
                not isinstance(call.replies[0], Exception):
            return call.replies
        ex = Exchange(batch, link)
        ex.started = started
        pause = ex.settle([call])
        if pause:
            time.sleep(pause)
        self.drive(ex)
        return ex.raw() if batch.errors else ex.result()

    def drive(self, ex: Exchange, session: SyncSession | None = None) -> None:
        meanwhile = ex.batch.meanwhile  # (the first round's only)
        while True:
            calls = ex.calls()
            if calls is None:
                return
            self._round(calls, session, meanwhile)
            meanwhile = None
            if not self.cluster:
                pause = ex.settle(calls)
            else:
                ended = time.monotonic()
                try:
                    pause = ex.settle(calls)
                finally:
                    self._refresh(ex, ended)
            if pause:
                time.sleep(pause)

    def _refresh(self, ex: Exchange, ended: float) -> None:
        moved, reinit = self._moves(ex)
        if not (moved or reinit):
            return
        manager = self.client.nodes_manager
        try:
            for error in moved:
                manager.move_slot(error)
            if reinit:
                with self._reload_lock():
                    if self._reload_covers(ended):
                        return
                    with self._reloading():
                        manager.initialize()
        except Exception:  # every node unreachable: the next round fails and counts
            return

    def _reload_lock(self) -> threading.Lock:
        """The store's lock around a reload of the slot map (see :meth:`_Shell._moves`);
        a new one in a forked child, where another thread may have held the parent's.
        (redis-py's own lock in ``NodesManager.initialize`` is not made new: a child forked
        while a thread reloaded waits for it forever; build the child's client anew.)"""
        pid = os.getpid()
        held = self._lock_of_pid
        if held is None or held[0] != pid:
            held = self._lock_of_pid = (pid, threading.Lock())
        return held[1]

    def _pool(self, node: Any) -> Any:
        if node is None:
            return self.client.connection_pool
        return self.client.get_redis_connection(node).connection_pool

    def _round(self, calls: list[Call], session: SyncSession | None,
               meanwhile: Callable[[], None] | None = None) -> None:
        """Send every call, then (``meanwhile``, the batch's: see :class:`Batch`) read
        every call's replies (one round trip per node)."""
        if session is None and self.cluster and len(calls) > 1:
            self._spread(calls)
            return
        open_: list[tuple[Call, Any, Any]] = []
        done = 0
        try:
            for call in calls:
                if not call.wire:
                    continue  # nothing to send: no node was found for it
                got = self._send(call, session)
                if got is not None:
                    open_.append((call, *got))
            if meanwhile is not None and open_:
                meanwhile()
            for call, conn, pool in open_:
                if not self._read(conn, call) and call.pinned and session is not None:
                    session.broken()
                done += 1
                if pool is not None:
                    pool.release(conn)
        finally:
            for _call, conn, pool in open_[done:]:  # interrupted (KeyboardInterrupt, ...)
                conn.disconnect()
                if pool is not None:
                    pool.release(conn)

    def _spread(self, calls: list[Call]) -> None:
        """:meth:`_round` for calls to several cluster nodes: each node's call is sent and
        its replies read in a thread of a shared pool (the first in this thread), so the
        nodes are written and read at once. Measured against writing every node's buffer
        and then reading the nodes in turn, interleaved, 20,000 hats on three primaries:
        save_many 16,185 -> 29,226 /s, get_many 23,077 -> 50,595 /s (reading the nodes in
        threads after writing all from this one: 21,344 / 29,155). Each call's outcome is
        its own (``failure``, ``replies``); every call ends (its connection released, or
        closed if its replies were not all read) before this returns or raises, and the
        first exception a call raised is raised then."""
        todo = [call for call in calls if call.wire]
        futures = [_readers().submit(self._node_call, call) for call in todo[1:]]
        try:
            if todo:
                self._node_call(todo[0])
        finally:
            concurrent.futures.wait(futures)
        for future in futures:
            future.result()  # raises what the call raised (its connection was closed)

    def _node_call(self, call: Call) -> None:
        got = self._send(call, None)
        if got is None:
            return  # the failure is the call's; nothing of it left on a connection
        conn, pool = got
        try:
            self._read(conn, call)  # closes the connection if it raises
        finally:
            pool.release(conn)

    def _send(self, call: Call, session: SyncSession | None) -> tuple[Any, Any] | None:
        try:
            if call.pinned and session is not None:
                conn, pool = session.connection(call.node), None
            else:
                pool = self._pool(call.node)
                conn = pool.get_connection()
            try:
                conn.check_health()
                if call.learn:
                    found = _known_id(conn)
                    call.conn_id = self._ask_id(conn) if found is _UNKNOWN else found
                data = self._pack(conn, call.wire, call.packed)
            except BaseException:
                self._drop(conn, pool, session, call)
                raise
        except _TRANSPORT_ERRORS as e:
            call.failure = e  # nothing of this call left: it can be sent again
            return None
        call.sent = True
        try:
            conn.send_packed_command(data, check_health=False)
        except _TRANSPORT_ERRORS as e:
            call.failure = e  # part of it may have reached the server
            self._drop(conn, pool, session, call)
            return None
        except BaseException:
            self._drop(conn, pool, session, call)
            raise
        return conn, pool

    def _ask_id(self, conn: Any) -> int | None:
        """``CLIENT ID`` of a connection that has not told it (nothing of a call sent yet:
        a failure here leaves the call safe to send again)."""
        conn.send_packed_command(self._pack(conn, [_CLIENT_ID]), check_health=False)
        try:
            return _learned(conn, conn.read_response(disconnect_on_error=False))
        except ResponseError as e:
            return _learned(conn, e)

    def _read(self, conn: Any, call: Call) -> bool:
        """Read the call's replies into ``call.replies`` (error replies as exceptions);
        False when the connection broke (``call.failure``; the connection closed). A reply
        already in the connection's buffer is taken from it directly (see
        :func:`_buffered`), the others through the connection's ``read_response`` (its
        ``socket_timeout`` applies to each wait on the socket)."""
        replies = call.replies
        read = conn.read_response
        take = _buffered(conn)
        left = len(call.wire)
        while left:
            try:
                reply = _INCOMPLETE if take is None else take()
                if reply is _INCOMPLETE:
                    reply = read(disconnect_on_error=False)
                elif not isinstance(reply, _PLAIN) and _push(conn, reply):
                    # a push message (RESP3): not a reply, handled as redis-py does
                    conn._parser.handle_push_response(reply)
                    continue
                replies.append(reply)
            except ResponseError as e:
                replies.append(e)
            except _REPLY_ERRORS as e:
                replies.append(e)
            except _TRANSPORT_ERRORS as e:
                call.failure = e
                conn.disconnect()
                return False
            except BaseException:
                conn.disconnect()
                raise
            left -= 1
        if take is not None and conn.health_check_interval:  # as read_response does
            conn.next_health_check = time.monotonic() + conn.health_check_interval
        return True

    def _drop(self, conn: Any, pool: Any, session: SyncSession | None, call: Call) -> None:
        conn.disconnect()
        if pool is not None:
            pool.release(conn)
        elif session is not None:
            session.broken()

    def session(self) -> SyncSession:
        return SyncSession(self)


_READERS: dict[int, concurrent.futures.ThreadPoolExecutor] = {}  # per process, on first use


def _readers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that send to and read from cluster nodes (:meth:`SyncLink._spread`),
    one pool per process, made on first use: they wait on sockets with the GIL released.
    A forked child gets its own (the parent's threads do not exist in it: a task given to
    the parent's pool would wait forever). No lock: a pool starts no thread before its
    first task, so one made twice by a race costs nothing."""
    pid = os.getpid()
    pool = _READERS.get(pid)
    if pool is None:
        _READERS.clear()  # a parent's pool is of no use here
        pool = _READERS.setdefault(pid, concurrent.futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="redmodel-read"))
    return pool


def _placement(session: Any, batch: Batch) -> tuple[int, Any, bool] | None:
    """Where a transaction session on a cluster sends ``batch`` (shared by the sync and the
    asyncio session): None to stay put, else (its slot, that slot's node, whether the
    connection held now must be closed first). One transaction lives in one slot: a batch
    for another raises CrossSlotError, and so does a move to another node once something
    (a WATCH) lives on the connection."""
    slots = {command_slot(c) for c in batch.commands} - {None}
    slot = next(iter(slots), None)
    if slot is None or slot == session.slot:
        return None
    if session.slot is not None:
        raise cross_slot_error(batch_keys(batch) or ["(the watched keys)"])
    node = session.link._locate(slot)
    moved = session.conn is not None and node.name != session.node.name
    if moved and session.used:
        raise cross_slot_error(batch_keys(batch))
    return slot, node, moved


class SyncSession:
    """One connection kept for a transaction: WATCH, the reads and MULTI/EXEC go on it.
    Everything that would need another connection raises RestartAttemptError."""

    def __init__(self, link: SyncLink) -> None:
        self.link = link
        self.node: Any = None
        self.slot: int | None = None
        self.conn: Any = None
        self.pool: Any = None
        self.used = False  # sent something whose state (WATCH) lives on the connection
        self.dead = False

    def _place(self, batch: Batch) -> None:
        if not self.link.cluster:
            return
        placed = _placement(self, batch)
        if placed is not None:
            if placed[2]:
                self.close()
            self.slot, self.node = placed[0], placed[1]

    def connection(self, node: Any) -> Any:
        if self.dead:
            raise RedisConnectionError("the transaction's connection was lost")
        if self.conn is None:
            if self.link.cluster and self.node is None:
                self.node = self.link._default()
            self.pool = self.link._pool(self.node if self.link.cluster else None)
            self.conn = self.pool.get_connection()
        elif self.conn.can_read(timeout=0):  # the server closed it, or left it unread
            raise RedisConnectionError("the transaction's connection was closed")
        self.used = True
        return self.conn

    def broken(self) -> None:
        self.dead = True

    def run(self, batch: Batch) -> Exchange:
        """Run a batch on the session's connection (reads, WATCH, or the commit)."""
        self._place(batch)
        ex = Exchange(batch, self.link.link, pinned=True, node=self.node)
        try:
            self.link.drive(ex, self)
        except RestartAttemptError:
            self.broken()
            raise
        except (RedmodelError, RedisError):
            raise  # (a round trip that ended: its replies were read, or the link closed it)
        except BaseException:
            # interrupted mid round trip (a KeyboardInterrupt, a signal handler's
            # exception): a reply may be left unread on the connection, which the UNWATCH
            # of close() would take for its own, handing the pool a connection one reply
            # behind (38K K1). Closed instead, never used again
            self.broken()
            raise
        if batch.atomic:
            self.used = False  # EXEC answered: no WATCH is left on the connection
        return ex

    def close(self, unwatch: bool = True) -> None:
        """Give the connection back: UNWATCH first if a WATCH may still hold on it, or
        close it if it broke (or the UNWATCH did not end: any exception, an interrupt's
        too)."""
        conn, pool = self.conn, self.pool
        if conn is None:
            return
        try:
            if self.dead:
                conn.disconnect()
            elif unwatch and self.used:
                conn.send_command("UNWATCH", check_health=False)
                conn.read_response(disconnect_on_error=True)
        except Exception:
            conn.disconnect()
        except BaseException:
            conn.disconnect()
            raise
        finally:
            # forgotten before it is released: __del__ never touches a connection that
            # may be another caller's already
            self.conn = self.pool = None
            pool.release(conn)
            self.used = False

    def __del__(self) -> None:
        # a session dropped holding its connection: an interrupt (KeyboardInterrupt, a
        # signal handler's exception) landed as its transaction closed, before close()
        # (38K K1). The connection's state is unknown (a WATCH, a reply unread): closed,
        # then given back to the pool
        conn, pool = getattr(self, "conn", None), getattr(self, "pool", None)
        if conn is not None and pool is not None:
            self.conn = self.pool = None
            with contextlib.suppress(Exception):
                conn.disconnect()
            with contextlib.suppress(Exception):
                pool.release(conn)


# ---- asyncio ----------------------------------------------------------------------------


def _socket_readable(conn: Any) -> bool:
    """Whether the socket under an asyncio connection has something the event loop has not
    read yet (an EOF or a reset included): asyncio's StreamReader only knows what the loop
    already read, and a loop kept busy never got round to it. Asked with ``poll`` (or
    ``select`` where there is none), no byte taken. TLS records that carry no data (a
    session ticket) also count: one needless reconnection, never a wrong answer."""
    writer = getattr(conn, "_writer", None)
    transport = getattr(writer, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if fd < 0:
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


async def _dirty(conn: Any) -> bool:
    """Whether an idle connection cannot be trusted to send on: the server closed it (its
    ``timeout``, a restart, a load balancer's idle timeout) or it holds unread data."""
    try:
        return bool(await conn.can_read()) or _socket_readable(conn)
    except _TRANSPORT_ERRORS:
        return True


async def _refreshed(conn: Any) -> None:
    """Make a pooled asyncio connection ready to send on, before anything is written on
    it, as redis-py's sync pool does on checkout (the sync shell relies on that): a dirty
    one (:func:`_dirty`) is closed and opened again. redis-py 8.1's asyncio pool ignores
    its own check's answer while maintenance notifications are on (their default,
    ``auto``; the sync pool's check raises on a closed socket first, so it reconnects), and
    asks only what the event loop has read: without this a write would go to a socket the
    server closed, and its lost reply would be an :class:`~redmodel.OutcomeUnknownError`
    for a write that cannot have been applied. Shared by the one-server and cluster paths
    and by transactions (:class:`AsyncSession`)."""
    if conn.is_connected and await _dirty(conn):
        await conn.disconnect()
    await conn.connect()


# replies that need no second look (ResponseError values are replies too: appended)
_PLAIN = (bytes, int, dict, str, float, ResponseError)


def _buffered(conn: Any) -> Callable[[], Any] | None:
    """The ``gets`` of a connection's hiredis reader (sync or asyncio), or None (another
    parser).

    redis-py's ``read_response`` wraps every reply in its layers (asyncio: an
    ``asyncio.timeout`` per reply; both: the host-error wrapper, the error-reply raise):
    on a bulk call's thousand replies that is more time than parsing them. Most of them
    are already in the reader's buffer when asked for, where no timeout can matter:
    ``_read`` takes those with ``gets()`` and goes through ``read_response`` (the timeout,
    the socket read) only when the buffer holds no whole reply (``gets()`` answers
    ``_INCOMPLETE`` and takes nothing). What ``read_response`` does to a reply beyond
    that is done by :func:`_push` (and the caller's push handler)."""
    parser = getattr(conn, "_parser", None)
    if type(parser) not in _HIREDIS_PARSERS or not getattr(parser, "_connected", True):
        return None
    reader = getattr(parser, "_reader", None)
    return None if reader is None else reader.gets


def _push(conn: Any, reply: Any) -> bool:
    """What redis-py's hiredis parser does to a reply taken from its buffer besides
    returning it: a connection error (an error reply it maps to one, such as LOADING) is
    raised; True for a RESP3 push message (the caller hands it to the parser's
    ``handle_push_response``: it is no reply, read on). False: an ordinary reply (an
    array, a set, None...)."""
    push = getattr(conn._parser, "_hiredis_PushNotificationType", None)
    if isinstance(reply, RedisConnectionError):
        raise reply
    if push is not None and isinstance(reply, push):
        return True
    if isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError):
        raise reply[0]
    return False


class AsyncLink(_Shell):
    """The transport of an :class:`~redmodel.AsyncStore`: :class:`SyncLink` awaited."""

    def __init__(self, client: Any, *, cluster: bool, policy: ResendPolicy,
                 exactly_once: bool) -> None:
        super().__init__(client, cluster=cluster, policy=policy, exactly_once=exactly_once)
        self._ready = not cluster

    async def execute(self, batch: Batch) -> list[Any]:
        if batch.follow_up:  # as SyncLink._follow_up
            try:
                return await self.execute(attrs.evolve(batch, follow_up=False))
            except CONNECTION_ERRORS as e:
                return follow_up_failed(batch, e)
        if not self._known():
            await self.ready()
        ex = Exchange(batch, self.link)
        await self.drive(ex)
        return ex.raw() if batch.errors else ex.result()  # errors: see Batch.errors

    def _known(self) -> bool:
        """Whether the client knows the cluster's nodes: once it was initialised, and
        again after it was closed (redis-py's ``aclose`` forgets its default node and
        initialises again on its next command; so does this link)."""
        return not self.cluster or (self._ready and not getattr(self.client, "_initialize", False))

    async def ready(self) -> None:
        """redis-py 8.1's asyncio cluster client learns its slot map on first use; that
        happens before anything is sent, so it is tried under the ResendPolicy. The
        store awaits this before it starts a plan, so a plan that walks every primary
        (redmodel._stores._config.Targets) finds them known."""
        if self._known():
            return
        policy = self.link.policy
        started = time.monotonic()
        failures = 0
        while True:
            try:
                await self.client.initialize()
            except (RedisError, RedisClusterException) as e:
                failures += 1
                delay = policy.backoff(failures)
                if failures >= policy.attempts or \
                        time.monotonic() - started + delay > policy.deadline:
                    raise RedisConnectionError(f"cannot reach the cluster: {e}") from e
                await asyncio.sleep(delay)
                continue
            self._ready = True
            return

    async def drive(self, ex: Exchange, session: AsyncSession | None = None) -> None:
        meanwhile = ex.batch.meanwhile  # (the first round's only)
        while True:
            calls = ex.calls()
            if calls is None:
                return
            await self._round(calls, session, meanwhile)
            meanwhile = None
            if not self.cluster:
                pause = ex.settle(calls)
            else:
                ended = time.monotonic()
                try:
                    pause = ex.settle(calls)
                finally:
                    await self._refresh(ex, ended)
            if pause:
                await asyncio.sleep(pause)

    async def _refresh(self, ex: Exchange, ended: float) -> None:
        moved, reinit = self._moves(ex)
        if not (moved or reinit):
            return
        manager = self.client.nodes_manager
        try:
            for error in moved:
                await manager.move_slot(error)
            if reinit:
                async with self._reload_lock():
                    if self._reload_covers(ended):
                        return
                    with self._reloading():
                        await manager.initialize()
        except Exception:  # every node unreachable: the next round fails and counts
            return

    def _reload_lock(self) -> asyncio.Lock:
        """The store's lock around a reload of the slot map in the running event loop
        (see :meth:`_Shell._moves`): an asyncio lock belongs to one loop, and a store may
        be used from several, one after the other."""
        loop = asyncio.get_running_loop()
        lock = self._locks_of_loop.get(loop)
        if lock is None:
            lock = self._locks_of_loop[loop] = asyncio.Lock()
        return lock

    async def _acquire(self, node: Any) -> tuple[Any, Any]:
        """A connection from the client's pool (one server) or the node's (cluster), ready
        to send on: see :func:`_refreshed`."""
        if node is None:
            pool = self.client.connection_pool
            conn = await pool.get_connection()
        else:
            pool = node
            conn = node.acquire_connection()
        try:
            await _refreshed(conn)
        except BaseException:
            await conn.disconnect()
            await self._release(conn, pool)
            raise
        return conn, pool

    async def _release(self, conn: Any, pool: Any) -> None:
        if pool is None:
            return
        if hasattr(pool, "acquire_connection"):  # a cluster node
            pool.release(conn)
        else:
            await pool.release(conn)

    async def _round(self, calls: list[Call], session: AsyncSession | None,
                     meanwhile: Callable[[], None] | None = None) -> None:
        """Send every call, then read every call's replies; calls to several nodes (a
        cluster's bulk call) each go in a task of their own, gathered: a node's replies are
        read as they come, whichever node answers first (measured: save_many of 20,000
        hats on three primaries ~1.4x faster than reading the nodes one after the
        other). Each call's outcome is its own (``failure``, ``replies``), as in turn."""
        if session is None and len(calls) > 1:
            await self._gathered(calls)
            return
        open_: list[tuple[Call, Any, Any]] = []
        done = 0
        try:
            for call in calls:
                if not call.wire:
                    continue
                got = await self._send(call, session)
                if got is not None:
                    open_.append((call, *got))
            if meanwhile is not None and open_:
                meanwhile()  # (see Batch: the server runs the batch meanwhile)
            for call, conn, pool in open_:
                if not await self._read(conn, call) and call.pinned and session is not None:
                    session.broken()
                done += 1
                await self._release(conn, pool)
        finally:
            for _call, conn, pool in open_[done:]:  # interrupted (cancelled, ...)
                await conn.disconnect()
                await self._release(conn, pool)

    async def _gathered(self, calls: list[Call]) -> None:
        """:meth:`_round` for calls to several nodes, one task each. Every task ends (its
        connection released, or closed if its replies were not all read) before this
        returns or raises; the first exception a task raised (cancelled, interrupted) is
        raised then. Cancelling the round cancels every task, each closing its
        connection."""
        outcomes = await asyncio.gather(*(self._node_call(call) for call in calls if call.wire),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _node_call(self, call: Call) -> None:
        got = await self._send(call, None)
        if got is None:
            return  # the failure is the call's; nothing of it left on a connection
        conn, pool = got
        try:
            await self._read(conn, call)  # closes the connection if it raises
        finally:
            await self._release(conn, pool)

    async def _send(self, call: Call, session: AsyncSession | None
                    ) -> tuple[Any, Any] | None:
        try:
            if call.pinned and session is not None:
                conn, pool = await session.connection(), None
            else:
                conn, pool = await self._acquire(call.node)
            try:
                await conn.check_health()
                if call.learn:
                    found = _known_id(conn)
                    call.conn_id = await self._ask_id(conn) if found is _UNKNOWN else found
                data = self._pack(conn, call.wire, call.packed)
            except BaseException:
                await self._drop(conn, pool, session)
                raise
        except _TRANSPORT_ERRORS as e:
            call.failure = e
            return None
        call.sent = True
        try:
            await conn.send_packed_command(data, check_health=False)
        except _TRANSPORT_ERRORS as e:
            call.failure = e
            await self._drop(conn, pool, session)
            return None
        except BaseException:
            await self._drop(conn, pool, session)
            raise
        return conn, pool

    async def _ask_id(self, conn: Any) -> int | None:
        """:meth:`SyncLink._ask_id`, awaited."""
        await conn.send_packed_command(self._pack(conn, [_CLIENT_ID]), check_health=False)
        try:
            return _learned(conn, await conn.read_response(disconnect_on_error=False))
        except ResponseError as e:
            return _learned(conn, e)

    async def _read(self, conn: Any, call: Call) -> bool:
        """:meth:`SyncLink._read`, awaited; a reply already in the connection's buffer is
        taken from it directly (see :func:`_buffered`), the others through the
        connection's ``read_response`` (its ``socket_timeout`` applies to each)."""
        replies = call.replies
        read = conn.read_response
        take = _buffered(conn)
        left = len(call.wire)
        while left:
            try:
                reply = _INCOMPLETE if take is None else take()
                if reply is _INCOMPLETE:
                    reply = await read(disconnect_on_error=False)
                elif not isinstance(reply, _PLAIN) and _push(conn, reply):
                    # a push message (RESP3): not a reply, handled as redis-py does
                    await conn._parser.handle_push_response(reply)
                    continue
                replies.append(reply)
            except ResponseError as e:
                replies.append(e)
            except _REPLY_ERRORS as e:
                replies.append(e)
            except _TRANSPORT_ERRORS as e:
                call.failure = e
                await conn.disconnect()
                return False
            except BaseException:
                await conn.disconnect()
                raise
            left -= 1
        if take is not None and conn.health_check_interval:  # as read_response does
            conn.next_health_check = (asyncio.get_running_loop().time()
                                      + conn.health_check_interval)
        return True

    async def _drop(self, conn: Any, pool: Any, session: AsyncSession | None) -> None:
        await conn.disconnect()
        if pool is not None:
            await self._release(conn, pool)
        elif session is not None:
            session.broken()

    def session(self) -> AsyncSession:
        return AsyncSession(self)


class AsyncSession:
    """:class:`SyncSession` for asyncio."""

    def __init__(self, link: AsyncLink) -> None:
        self.link = link
        self.node: Any = None
        self.slot: int | None = None
        self.conn: Any = None
        self.pool: Any = None
        self.used = False
        self.dead = False

    async def _place(self, batch: Batch) -> None:
        if not self.link.cluster:
            return
        await self.link.ready()
        placed = _placement(self, batch)
        if placed is not None:
            if placed[2]:
                await self.close()
            self.slot, self.node = placed[0], placed[1]

    async def connection(self) -> Any:
        if self.dead:
            raise RedisConnectionError("the transaction's connection was lost")
        if self.conn is None:
            if self.link.cluster and self.node is None:
                await self.link.ready()
                self.node = self.link._default()
            self.conn, self.pool = await self.link._acquire(
                self.node if self.link.cluster else None)
        elif await _dirty(self.conn):
            raise RedisConnectionError("the transaction's connection was closed")
        self.used = True
        return self.conn

    def broken(self) -> None:
        self.dead = True

    async def run(self, batch: Batch) -> Exchange:
        await self._place(batch)
        ex = Exchange(batch, self.link.link, pinned=True, node=self.node)
        try:
            await self.link.drive(ex, self)
        except RestartAttemptError:
            self.broken()
            raise
        except (RedmodelError, RedisError):
            raise
        except BaseException:  # cancelled or interrupted mid round trip: as SyncSession.run
            self.broken()
            raise
        if batch.atomic:
            self.used = False  # EXEC answered: no WATCH is left on the connection
        return ex

    async def close(self, unwatch: bool = True) -> None:
        conn, pool, self.conn, self.pool = self.conn, self.pool, None, None
        if conn is None:
            return
        try:
            if self.dead:
                await conn.disconnect()
            elif unwatch and self.used:
                await conn.send_command("UNWATCH", check_health=False)
                await conn.read_response()
        except Exception:
            await conn.disconnect()
        finally:
            await self.link._release(conn, pool)
            self.used = False
