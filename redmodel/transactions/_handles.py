"""The transaction handles, one attempt each: :class:`Transaction` (sync) and
:class:`AsyncTransaction` (asyncio), thin shells over :class:`~._core.TxCore`; reads run at
once (WATCHing their keys), writes are queued for MULTI/EXEC. Also the interface they
need of a store (:class:`Store`, :class:`AsyncStore`: protocols the stores satisfy, so this
package never imports the stores) and :func:`current_transaction`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeAlias, TypeVar

from redmodel._args import key_names, many
from redmodel._container_registry import first_use
from redmodel._errors import (
    NotFoundError,
    OutcomeUnknownError,
    TransactionError,
    ValidationError,
)
from redmodel._layouts._hash import INT64
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import ModelSpec, model_spec, spec_of
from redmodel._plan import (
    ACTIVE_TRANSACTION,
    AsyncRunner,
    Batch,
    Command,
    Plan,
    SyncRunner,
    check_plan,
    close_plan,
    not_a_batch,
    open_transaction,
)
from redmodel._plans import _objects as _ops
from redmodel._plans._atomic import incr_fields as incr_fields_plan
from redmodel._plans._objects import DEFAULT
from redmodel._transport._wire import ResendPolicy, RestartAttemptError, redis_reply

if TYPE_CHECKING:
    from types import TracebackType

    from redmodel._transport._links import AsyncLink, SyncLink

from redmodel.transactions._core import (
    Steps,
    TxCore,
    _after_exec,
    _one_attempt,
    _read_command,
    _single_attempt_error,
    _WatchConflictError,
    get_field,
)
from redmodel.transactions._policy import Pending

__all__ = [
    "AsyncStore",
    "AsyncTransaction",
    "Store",
    "Transaction",
    "current_transaction",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

#: What ``read_command(..., watch=)`` takes: the keys the command reads, as a tuple, a list
#: or a set. Not any ``Sequence[str]``: a bare ``str`` is one (of its characters), and
#: ``watch="key"`` would WATCH the characters and leave the key read unwatched (a lost
#: update); mypy refuses it, and so does the call (ValidationError, nothing sent).
WatchKeys: TypeAlias = "tuple[str, ...] | list[str] | AbstractSet[str]"

log = logging.getLogger("redmodel.tx")


class _Settings(Protocol):
    """What a transaction reads of its store, sync or asyncio."""

    @property
    def client(self) -> Any: ...

    @property
    def chunk_size(self) -> int: ...

    @property
    def resend(self) -> ResendPolicy: ...


class Store(SyncRunner, _Settings, Protocol):
    """What a transaction needs of its store: a :class:`~redmodel.Store` is one. The store
    passes itself down, so this module never imports the stores'."""

    @property
    def _link(self) -> SyncLink: ...


class AsyncStore(AsyncRunner, _Settings, Protocol):
    """What an asyncio transaction needs of its store: an :class:`~redmodel.AsyncStore`."""

    @property
    def _link(self) -> AsyncLink: ...


_HashRead = tuple[Batch, bool, list[Command], Any, str, str]  # see _TxBase._hash_read


# ---- the sync shell -----------------------------------------------------------------------

_ACTIVE = ACTIVE_TRANSACTION
# the closes of asyncio transactions left to a task of their own (AsyncTransaction._close):
# held here until they end (the event loop keeps only weak references to tasks)
_ENDING: set[asyncio.Task[None]] = set()


def _one(batch: Batch) -> Plan[list[Any]]:
    """A plan of one batch."""
    return (yield batch)


def _records_a_container(batch: Batch) -> bool:
    """Whether ``batch`` is the container registry's first record of a key, or its marks
    in the model registry records of the key's prefixes and of the key itself (the only
    writes a read plan makes: redmodel._container_registry.check_plan)."""
    return batch.write and batch.early and bool(batch.keys) and all(
        k.endswith((":%container", ":%schema")) for k in batch.keys)


def current_transaction() -> Transaction | AsyncTransaction | None:
    """The transaction open in this thread / asyncio task, if any."""
    return open_transaction()  # type: ignore[no-any-return]


def _same_store(a: Any, b: Any) -> bool:
    return a is b or a.client is b.client


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _check_own_plan(plan: Any, what: str) -> None:
    """Refuse a plan not built by redmodel (its code outside the redmodel package): only
    redmodel's plans are known to write once, in their last batch, so that all of a
    transaction's writes go in one MULTI. Closes the refused plan (it has not run)."""
    code = getattr(plan, "gi_code", None)
    if code is not None and os.path.abspath(code.co_filename).startswith(_PACKAGE_DIR):
        return
    with contextlib.suppress(Exception):
        plan.close()
    raise TransactionError(
        f"cannot queue {what}: a transaction queues only plans redmodel built (such as "
        "q.push_plan(x)); a plan of your own, e.g. plans composed with yield from, could "
        "write again after EXEC, once the rest is committed. Queue each plan separately: "
        "tx.queue(a); tx.queue(b). Nothing was sent"
    )


def _watch_batch(keys: tuple[Any, ...]) -> tuple[Batch, str]:
    """The empty batch that WATCHes these keys, and what it is called in errors; a key
    that is no ``str`` or ``bytes`` raises ValidationError, nothing sent."""
    names = key_names(keys, "watch")
    return Batch([], keys=names), f"watch {list(names)}"


class _TxBase:
    """State and queued writes shared by :class:`Transaction` and :class:`AsyncTransaction`:
    a write does no I/O (it is queued for EXEC), so both shells use these methods as is."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._core = TxCore()
        self._session: Any = None
        self._token: contextvars.Token[Any] | None = None
        self._joined: tuple[Any, int] | None = None
        self._models: set[type] = set()  # what the queued writes touch, for the registry
        self._containers: list[Any] = []  # containers used through in_tx, likewise
        self._owner: Any = None  # the thread (sync) or event loop (async) that opened it
        self._ids: dict[tuple[type, type, Any], tuple[str, str]] = {}  # see _id
        self._committing = False  # in _commit: its EXEC and follow-ups (the core closed)

    def _live(self) -> bool:
        """Whether this transaction is open (``_plan.open_transaction``): it has its
        session, and it has not ended (committed, or abandoned: its core closed) unless
        its commit is under way. One still in the context but ended (an interrupt landed
        as its close began, before it left: 38K K1) is not."""
        return self._session is not None and (not self._core.closed or self._committing)

    def _id(self, spec: Any, model: type, id: Any) -> tuple[str, str]:
        """(key, id text) of an id (``_ops.id_str``), worked out once per attempt for a
        str or int id (the same object read and written several times)."""
        cls = id.__class__
        if cls is not str and cls is not int:
            return _ops.id_str(spec, id)
        found = self._ids.get((model, cls, id))
        if found is None:
            found = self._ids[model, cls, id] = _ops.id_str(spec, id)
        return found

    def _hash_read(self, model: type, id: Any, what: str) -> _HashRead | None:
        """For an object of the hash layout, the read ``_ops.get`` sends (its one
        command), WATCHed as :meth:`_read_commands` does, for the shell to send and
        :meth:`_hash_object` to decode; None for another layout (whose read may take
        more rounds: the plan runs)."""
        spec = spec_of(model)
        if spec.layout != "hash":
            return None
        key, text = self._id(spec, model, id)
        layout = layout_of(spec)
        commands = [layout.read(key)]
        sent, watched = self._read_commands(commands, (key,), what)
        return sent, watched, commands, layout, key, text

    def _hash_object(self, read: _HashRead, ex: Any, must: bool) -> Any:
        """The object :meth:`_hash_read`'s read found (``ex``: its exchange), as
        ``_ops.get`` (``must``: ``_ops.get_or_raise``) returns it."""
        _, watched, commands, layout, key, text = read
        replies = self._read_replies(commands, ex, False, watched, False)
        found = layout.decode(key, text, replies[0])
        if found is None and must:
            raise NotFoundError(layout.spec.name, key)
        return found

    @staticmethod
    def _current_owner() -> Any:
        """The thread (or, for an AsyncTransaction, the running event loop) calling now."""
        return threading.get_ident()

    def _uses(self, model: Any) -> ModelSpec:
        """The spec of a write's model argument, noted for the registry's first use at
        commit; one that is no model class raises ModelDefinitionError as the Store's
        method does, before anything reads its name or hashes it (nothing queued, and
        the commit does not trip over it)."""
        spec = model_spec(model)
        self._models.add(model)
        return spec

    def _unregistered(self, models: Iterable[type]) -> list[Plan[Any]]:
        """The model registry's first-use plans of the models the store has not checked
        yet (run on the store, outside the transaction, before anything of it is sent)."""
        registry = getattr(self.store, "_registry", None)
        if registry is None:
            return []
        if not self._containers:
            checked = registry.checked
            for cls in models:
                if cls not in checked:
                    break
            else:
                return []  # the common case: nothing to check, nothing built
        containers = [p for c in self._containers if (p := first_use(c)) is not None]
        return [registry.register(spec_of(cls)) for cls in sorted(set(models), key=repr)
                if cls not in registry.checked] + containers

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} watched={self._core.watched!r} "
                f"queued={len(self._core.commands)} commands>")

    @property
    def watched(self) -> tuple[str, ...]:
        """Keys WATCHed so far in this attempt.

        Redis: none."""
        return tuple(self._core.watched)

    def _activate(self) -> None:
        self._owner = self._current_owner()
        self._session = self.store._link.session()
        self._token = _ACTIVE.set(self)

    def _leave(self) -> None:
        """Stop being the active transaction of this context: the first step of a close,
        before anything that can wait or fail, and safe to repeat. A transaction
        interrupted while it opened (a KeyboardInterrupt, or a timeout's exception raised
        by a signal handler, landing between ``_ACTIVE.set`` and the try that closes it) or
        while it waited to close (a task cancelled behind a gathered round trip) stayed
        active for good: every later transaction of the thread or task joined the dead one
        and its writes were never sent (38K K1). What was active before is None (only an
        outermost transaction activates), so it is set back to None, not reset by the
        token (two steps fewer for an interrupt to land between)."""
        if _ACTIVE.get() is self:
            _ACTIVE.set(None)
        self._token = None

    def _deactivate(self) -> Any:
        """Leave the context and drop what was not committed; returns the session, which the
        shell closes (UNWATCH if needed, connection back to the pool). The session goes
        first: a transaction without one is never taken as open (``_plan.open_transaction``),
        should an interrupt land before it leaves the context."""
        session, self._session = self._session, None
        self._leave()
        if not self._core.closed:
            self._core.abandon()
        return session

    def _enter_joined(self) -> Any:
        """If a transaction is active here, join it (a savepoint) and return it."""
        active = open_transaction()
        if active is None:
            return None
        _check_join(active, self.store, type(self).__name__ + "(store)")
        if type(active) is not type(self):
            raise TransactionError("a sync and an asyncio transaction cannot be nested")
        self._joined = (active, active._core.mark())
        return active

    def _exit_joined(self, exc: BaseException | None) -> bool:
        """Leave a joined transaction (dropping its writes on an exception); False if this
        one was not joined."""
        if self._joined is None:
            return False
        outer, mark = self._joined
        self._joined = None
        if exc is not None:
            outer._core.rollback_to(mark)
        return True


    def _to_exec(self) -> list[Command] | None:
        """The commands for MULTI/EXEC, or None when there is nothing to send (no write and
        no watched read: with watched reads, EXEC still tells whether they stayed put)."""
        commands = self._core.exec_commands()
        if not commands and not self._core.watched:
            return None
        return commands

    def _read_commands(self, commands: Sequence[Command], keys: Sequence[str], what: str,
                       internal: bool = False, batch: Batch | None = None
                       ) -> tuple[Batch, bool]:
        """The batch to send for a read (of ``commands``, or ``batch``'s): WATCH of the
        keys not watched yet, then the read, on the session's connection (the WATCH is
        answered before the read runs)."""
        new = self._core.read(keys, what, internal)
        if self._session is None:
            raise TransactionError(f"cannot {what}: this transaction is not open")
        if not new:
            return batch or Batch(commands, keys=keys), False
        return Batch([("WATCH", *new), *commands], keys=keys), True

    def _read_replies(self, commands: Sequence[Command], ex: Any, errors: bool,
                      watched: bool, internal: bool) -> list[Any]:
        """The replies of a read sent as :meth:`_read_commands` said (``ex``: its
        exchange), without WATCH's."""
        replies: list[Any] = ex.raw() if errors else ex.result()
        if watched:
            replies = replies[1:]
        if not internal:
            self._core.note_read(commands, replies)
        return replies

    def _commit_batch(self) -> Batch | None:
        """MULTI/EXEC's batch, or None when there is nothing to send."""
        commands = self._to_exec()
        if commands is None:
            return None
        if self._session is None:
            raise TransactionError("cannot commit: this transaction is not open")
        return Batch(commands, atomic=True, write=True, keys=self.watched)

    def _queue(self, plan: Plan[R], what: str, plain: bool) -> Pending[R]:
        try:
            batch = next(plan)
        except StopIteration as stop:
            done: Pending[R] = Pending(what)
            done._resolve(stop.value)
            return done
        return self._core.queue(batch, plan, what, plain)

    def queue(self, plan: Plan[R], what: str = "write") -> Pending[R]:
        """Queue a write plan for EXEC; reads it does before its first write (WATCHed) and
        early writes (claims) run at commit, before MULTI, in queue order.

        Redis: any command the plan writes, queued between MULTI and EXEC (RPUSH, SADD,
        EVALSHA of a script, ...; SCRIPT LOAD of each script right after MULTI, so that a
        server that forgot its scripts cannot apply half of the transaction); its reads
        run at once, after WATCH, before MULTI.

        Only a plan redmodel built (``q.push_plan(x)``, ``z.add_plan(m, s)``, ...) is
        accepted: a plan of your own, e.g. two plans composed with ``yield from``, would
        send its second write only when resumed with EXEC's replies, after the first was
        committed, and a generator cannot be known to write once before it runs. It is
        refused with TransactionError before anything is sent: queue each plan on its
        own (``tx.queue(a); tx.queue(b)``), they commit in one MULTI/EXEC."""
        _check_own_plan(plan, what)
        self._core.hints.seen.clear()  # before the plan builds its first batch
        return self._queue(plan, what, False)

    # ---- writes (queued; the same in both shells) --------------------------------------

    def save(self, obj: Any, *, ttl: float | dt.timedelta | None = DEFAULT) -> Pending[str]:
        """Queue a save of the whole object (as :meth:`Store.save`); value: its key.

        Redis: queued between MULTI and EXEC, as Store.save: HSET, or EVALSHA hash_save.lua
        or hash_update.lua (an EXISTS read, WATCHed, before MULTI for a partial save);
        indexed model: before MULTI, TYPE of its index keys, WATCH, EXISTS, HGET and HMGET of the
        object's key, index record and indexed fields, then EVALSHA index_write.lua queued, and on a
        bucketed model claim.lua, claim_confirm.lua, claim_release.lua and claim_restore.lua
        as needed before MULTI or after EXEC; flat layout: WATCH and GET of the object's key
        before MULTI, then EVALSHA flat_save.lua; blob layout: SET."""
        pending = self.queue(_ops.save(obj, ttl, hints=self._core.hints),
                             f"save {type(obj).__name__}")
        self._models.add(type(obj))  # queued: a model (one refused is not left for commit)
        return pending

    def save_many(self, objs: Iterable[Any], *, ttl: float | dt.timedelta | None = DEFAULT
                  ) -> Pending[int]:
        """Queue the saves of many objects in this MULTI; value: how many.

        Redis: as save, for each object (HSET, EXISTS, TYPE, WATCH, HGET, GET, EVALSHA
        hash_save.lua, hash_update.lua, index_write.lua, flat_save.lua, claim.lua,
        claim_confirm.lua, claim_release.lua and claim_restore.lua as needed, SET)."""
        objs = list(many(objs, "objs", "objects"))
        pending = self.queue(_ops.save_many(objs, ttl, max(1, len(objs)), self._core.hints),
                             "save many")
        self._models.update(type(o) for o in objs)  # queued: models, as for save
        return pending

    def update(self, model: type, id: Any, /, **values: Any) -> Pending[bool]:
        """Queue the update script (EVALSHA); value: False if the object did not exist.
        ``model`` and ``id`` are positional-only, as in :meth:`Store.update`: a field named
        ``model`` is a value.

        Redis: queued between MULTI and EXEC: EVALSHA hash_update.lua; indexed model: before MULTI,
        TYPE of its index keys, WATCH, EXISTS, HGET and HMGET of the object's key, index record and
        indexed fields, then EVALSHA index_write.lua queued, and on a bucketed model claim.lua,
        claim_confirm.lua, claim_release.lua and claim_restore.lua as needed before MULTI or after
        EXEC."""
        self._uses(model)
        plan = _ops.update(model, id, values, self._core.hints)
        return self.queue(plan, f"update {model.__name__} {id!r}")

    def incr(self, model: type, id: Any, field: str, amount: float = 1) -> Pending[Any]:
        """Queue the increment; value: the new number. A plain HINCRBY when this attempt
        read the object (``get``, WATCHed) and only plain increments were queued since, on
        an unindexed hash model with an int field the read shows holding a 64-bit int (the
        script's checks then cannot fail; a change in between aborts EXEC); else the
        counter script.

        Redis: queued between MULTI and EXEC: EVALSHA incr_fields.lua (hash layout), or HINCRBY when
        this attempt read the object (unindexed hash layout); indexed model: before MULTI, TYPE of
        its index keys, WATCH, EXISTS, HGET and HMGET of the object's key, index record and indexed
        fields, then EVALSHA index_write.lua queued; flat layout: WATCH and GET of the object's key
        before MULTI, then EVALSHA flat_incr.lua."""
        spec = self._uses(model)
        plain = spec.indexes is None and spec.layout == "hash"  # see _ops.plain_incr
        core = self._core
        if not plain:
            core.hints.seen.clear()
        elif core.hints.seen and amount.__class__ is int and INT64[0] <= amount <= INT64[1]:
            # the plan's own plain case without the plan: with an int amount within 64
            # bits, plain_incr answers a command only for an int field that
            # check_increment accepts, so the plan would queue that command alone
            key = self._id(spec, model, id)[0]
            command = _ops.plain_incr(spec, key, field, amount, core.hints)
            if command is not None:
                return core.queue_command(command, key, f"incr {model.__name__} {id!r} "
                                          f"{field}", int)
        plan = _ops.incr(model, id, field, amount, core.hints)
        return self._queue(plan, f"incr {model.__name__} {id!r} {field}", plain)

    def incr_fields(
        self,
        model: type,
        id: Any,
        changes: Mapping[str, float],
        *,
        floor: Mapping[str, float] | None = None,
        ceiling: Mapping[str, float] | None = None,
    ) -> Pending[dict[str, Any]]:
        """Queue the conditional multi-field increment (EVALSHA); see ``incr_fields``.

        Redis: queued between MULTI and EXEC: EVALSHA incr_fields.lua; indexed model: before MULTI,
        TYPE of its index keys, WATCH, EXISTS, HGET and HMGET of the object's key, index record and
        indexed fields, then EVALSHA index_write.lua queued (HMGET of its equality-indexed ints
        first)."""
        self._uses(model)
        plan = incr_fields_plan(model, id, changes, floor=floor, ceiling=ceiling,
                                hints=self._core.hints)
        return self.queue(plan, f"incr_fields {model.__name__} {id!r}")

    def delete(self, model: type, id: Any) -> Pending[bool]:
        """Queue the delete (DEL on the hash layout); value: True if the object existed.

        Redis: queued between MULTI and EXEC: DEL (hash and blob layouts); indexed model: before
        MULTI, TYPE of its index keys, WATCH, EXISTS, HGET and HMGET of the object's key, index
        record and indexed fields, then EVALSHA index_write.lua queued, and claim.lua,
        claim_confirm.lua, claim_release.lua and claim_restore.lua as needed after EXEC on a
        bucketed model; flat layout: WATCH and GET of the object's key before MULTI, then EVALSHA
        flat_delete.lua."""
        self._uses(model)
        return self.queue(_ops.delete(model, id, self._core.hints),
                          f"delete {model.__name__} {id!r}")

    def delete_many(self, model: type, ids: Iterable[Any]) -> Pending[int]:
        """Queue one delete per object (as :meth:`delete`); value: how many existed.

        Redis: as delete, for each object (DEL, TYPE, WATCH, EXISTS, HGET, GET, EVALSHA
        index_write.lua, flat_delete.lua, claim.lua, claim_confirm.lua, claim_release.lua
        and claim_restore.lua as needed)."""
        self._uses(model)
        ids = list(many(ids, "ids", "ids", model=getattr(model, "__name__", None)))
        plan = _ops.delete_many(model, ids, max(1, len(ids)), self._core.hints)
        return self.queue(plan, f"delete many {model.__name__}")

    def expire(self, model: type, id: Any, ttl: float | dt.timedelta) -> Pending[bool]:
        """Queue the expiry (PEXPIRE on the hash layout); value: False if the object did not
        exist.

        Redis: queued between MULTI and EXEC: PEXPIRE (hash and blob layouts); indexed model: before
        MULTI, TYPE of its index keys, WATCH, EXISTS, HGET and HMGET of the object's key, index
        record and indexed fields, then EVALSHA index_write.lua queued; flat layout: WATCH and GET
        of the object's key before MULTI, then EVALSHA flat_expire.lua."""
        self._uses(model)
        return self.queue(_ops.expire(model, id, ttl, self._core.hints),
                          f"expire {model.__name__} {id!r}")

    def persist(self, model: type, id: Any) -> Pending[bool]:
        """Queue the persist (PERSIST on the hash layout); value: False if it had no expiry.

        Redis: queued between MULTI and EXEC: PERSIST (hash and blob layouts); indexed model: before
        MULTI, TYPE of its index keys, WATCH, EXISTS, HGET and HMGET of the object's key, index
        record and indexed fields, then EVALSHA index_write.lua queued; flat layout: WATCH and GET
        of the object's key before MULTI, then EVALSHA flat_expire.lua."""
        self._uses(model)
        return self.queue(_ops.persist(model, id, self._core.hints),
                          f"persist {model.__name__} {id!r}")

    def command(self, *args: Any) -> Pending[Any]:
        """Queue a raw command; value: its reply, as redis-py's ``execute_command`` would
        return it (its response callback applied).

        A name holding whitespace (``"CONFIG GET"``) is sent as its words, as redis-py
        sends it. A command that would end the transaction, change its connection's state
        or drop its scripts (:data:`REFUSED_RAW`: ``MULTI``, ``EXEC``, ``SELECT``,
        ``CLIENT`` but its reads, ``SCRIPT``, ...) raises :class:`ValidationError` here,
        nothing sent.

        In exactly-once mode the command runs under a write id like every queued write,
        answering its reply as it would alone; a read whose integers can pass 2**53
        (``BITFIELD_RO``, ``PTTL``, ``PEXPIRETIME``, ...) goes without one, exactly
        (docs/failures.md, "Where the guarantee ends").

        Redis: any command given (not one of those), queued between MULTI and EXEC."""
        client = self.store.client
        sent, words = checked_raw(args, "command")
        if len(words) > 1:
            # an index write of a key it names in this transaction cannot know what it
            # holds then: it takes its entries as the transaction read them (TxHints.raw).
            # Every argument counts as a key it may touch (attack 26w F2): the first
            # with what the command says of it (a write of a hash field makes it, a DEL
            # removes it), DEL/UNLINK removes each key, and any other argument as
            # touched by a command of unknown effect (a value that happens to be an
            # object's key makes the rules conservative, never wrong)
            name, rest = words[0], words[2:]
            touched: list[tuple[str, str, Sequence[Any], bool | None, bool]] = []
            first = _key_text(words[1])
            touched.append((first, name, rest, _RAW_EXISTS.get(name), False))
            dels = name in ("DEL", "UNLINK")
            for arg in dict.fromkeys(_key_text(a) for a in rest):
                if arg != first:
                    touched.append((arg, name, (), False, False) if dels
                                   else (arg, "", (), None, True))
            hints = self._core.hints
            for key, cmd, cargs, *_ in touched:
                hints.note_raw(key, cmd, cargs)

            def turn() -> None:
                # at its turn: the writes queued before it judge the object without it
                for key, cmd, cargs, made, blind in touched:
                    hints.raw_turn(key, cmd, cargs, made, blind)
            self._core.at_turn(turn)

        def plan() -> Plan[Any]:
            replies = yield Batch([sent], write=True)
            return redis_reply(client, sent, replies[0])

        return self.queue(plan(), words[0])


#: raw commands a transaction refuses at queue time (tx.command raises ValidationError,
#: nothing sent): they would end or nest the MULTI (half-applying the transaction), or
#: change the state of its pooled connection, which goes back to the pool and serves the
#: store's later calls (another database, another user, RESP3, a subscriber, a replica
#: link, replies switched off). SWAPDB, FLUSHDB and the like change data, not the
#: connection: they are queued as any other command. docs/transactions.md "Raw commands".
REFUSED_RAW = frozenset({
    "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",  # the transaction itself
    "SELECT", "RESET", "AUTH", "HELLO", "CLIENT", "QUIT",  # the connection's state
    "MONITOR", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",  # the connection turns into a stream of pushes
    "READONLY", "READWRITE", "ASKING",  # cluster state of the connection
    "SYNC", "PSYNC", "REPLCONF",  # the connection turns into a replica link
    "SCRIPT",  # SCRIPT FLUSH drops the scripts the queued writes' EVALSHA run (attack 26y F1)
})


#: CLIENT subcommands that only read the connection's state: allowed where CLIENT is not
_CLIENT_READS = frozenset({"ID", "INFO", "GETNAME", "LIST", "GETREDIR", "TRACKINGINFO"})


def checked_raw(args: Sequence[Any], what: str) -> tuple[tuple[Any, ...], list[Any]]:
    """A raw command of a transaction (``tx.command``, ``tx.read_command``) as sent
    (:func:`raw_args`) and as words (:func:`raw_words`); raises
    :class:`ValidationError`, nothing sent, for an empty command or one of
    :data:`REFUSED_RAW` (``CLIENT`` but its read-only subcommands, ``CLIENT ID`` ...)."""
    sent = raw_args(args)
    words = raw_words(sent)
    if not words or not words[0]:
        raise ValidationError(f"tx.{what}() needs a command name; nothing was sent")
    if isinstance(sent[0], bytes):
        try:
            sent[0].decode()
        except UnicodeDecodeError:  # (attack 27z F2: it left as a bare UnicodeDecodeError)
            raise ValidationError(f"tx.{what}({sent[0]!r}, ...): a command name must be "
                                  "UTF-8 text; nothing was sent") from None
    name = words[0]
    if name in REFUSED_RAW and not (
            name == "CLIENT" and len(words) > 1
            and _key_text(words[1]).upper() in _CLIENT_READS):
        raise ValidationError(
            f"tx.{what}({name}, ...): {name} cannot be sent in a transaction: it would "
            "end the MULTI, change the state of the transaction's connection or drop "
            "the scripts its writes run (docs/transactions.md, \"Raw commands\"); "
            "nothing was sent")
    return sent, words


def raw_args(args: Sequence[Any]) -> tuple[Any, ...]:
    """A raw command's arguments as redis-py sends them: a command name holding
    whitespace (``"CONFIG GET"``) as its words (redis-py splits a str name always, a
    bytes-like one holding a space), a bytes-like argument (memoryview, bytearray) as
    bytes, an int or float as its text (redis-py's ``repr``), a str as is (the client
    encodes it); anything else as given (redis-py refuses it with its DataError). The
    command name is text: a ``str`` or bytes-like, as a key is; anything else (None, a
    number, a list) raises :class:`ValidationError` naming its type, nothing sent."""
    out: list[Any] = []
    for i, given in enumerate(args):
        a = bytes(given) if isinstance(given, (memoryview, bytearray)) else given
        if i == 0:
            out.extend(_name_words(a))
            continue
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            out.append(repr(a).encode())
        else:
            out.append(a)
    return tuple(out)


def _name_words(name: Any) -> list[Any]:
    """A raw command's name as the words redis-py sends; ValidationError, nothing sent,
    for a name that is no ``str``/``bytes`` or is blank (its next argument would be taken
    for the name)."""
    if isinstance(name, str):
        try:
            words: list[Any] = name.encode("utf-8", "surrogateescape").split()
        except UnicodeEncodeError:
            raise ValidationError(f"raw command name {name!r} is not text UTF-8 can "
                                  "carry; nothing was sent") from None
    elif isinstance(name, bytes):
        words = name.split() if b" " in name else [name]
    else:
        raise ValidationError(f"a raw command's name must be a str or bytes, got "
                              f"{type(name).__name__}; nothing was sent")
    if not words:
        raise ValidationError("a raw command's name is blank; nothing was sent")
    return words


def raw_words(sent: Sequence[Any]) -> list[Any]:
    """``sent`` (:func:`raw_args`) with its command name as upper-cased text."""
    if not sent:
        return []
    return [_key_text(sent[0]).upper(), *sent[1:]]


def _key_text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


# raw commands whose key is a hash that exists (True) or no key (False) after them
_RAW_EXISTS = {"HSET": True, "HMSET": True, "HSETNX": True, "HINCRBY": True,
               "HINCRBYFLOAT": True, "DEL": False, "UNLINK": False}


class Transaction(_TxBase):
    """One attempt of an optimistic transaction: the handle a transaction function gets.

    Reads (``get``, ``get_many``, ``get_or_raise``, ``exists``, ``get_field``,
    ``read_command``, ``watch``) first WATCH the keys they read, then run at once. Writes
    (``save``, ``save_many``, ``update``, ``incr``, ``incr_fields``, ``delete``,
    ``delete_many``, ``expire``, ``persist``, ``command``) are queued and return a
    :class:`Pending`; they are sent in one MULTI/EXEC at the end, with a SCRIPT LOAD of
    each script they call inside it (all or nothing even on a server that forgot its
    scripts: docs/transactions.md). A read after a write raises
    :class:`ReadAfterWriteError`.

    As a context manager it is a single attempt (no retry; a conflict raises
    :class:`ConflictError` with ``attempts=1``)::

        with Transaction(store) as tx:
            hat = tx.get_or_raise(Hat, hat_id)
            tx.update(Hat, hat_id, quantity=hat.quantity - 1)

    Inside another transaction on the same store it joins the outer one. A handle belongs
    to one thread and lives for one attempt: a join from another thread (a copied
    context) raises TransactionError before anything is sent.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)

    # ---- lifecycle (used by transact and the context manager) -----------------------

    def _open(self) -> None:
        self._activate()

    def _close(self) -> None:
        session = self._session
        try:
            self._deactivate()
        finally:  # (an interrupt in _deactivate must not keep the connection)
            if session is not None:
                session.close()  # UNWATCH if needed; the connection goes back to the pool

    def _commit(self) -> None:
        self._committing = True
        try:
            self._exec()
        finally:
            self._committing = False

    def _exec(self) -> None:
        """The queued plans' own reads and early writes, then MULTI, SCRIPT LOAD of each
        script queued (the transport's Exchange._atomic_scripts), the queued commands,
        EXEC, then their follow-ups. Raises _WatchConflictError on a WATCH conflict, the
        first failed command's error after a commit, OutcomeUnknownError when EXEC's reply
        was lost, RestartAttemptError when nothing was applied and the attempt must run
        again. Early writes of a commit that did not happen are undone first; after an
        unknown outcome they stay (the commit may have happened)."""
        core = self._core
        for plan in self._unregistered(self._models):
            self.store.run(plan)
        try:
            if core.to_prepare:
                self._drive(core.prepare())
            batch = self._commit_batch()
            if batch is None:
                return
            ex = self._session.run(batch)
            if ex.conflict:
                raise _WatchConflictError()
        except OutcomeUnknownError:
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                self._drive(core.undo_early())
            raise
        try:  # EXEC ran: an error of a follow-up (OutcomeUnknownError) says so too
            error = self._drive(core.finish_steps(ex.raw()))
        except Exception as e:
            _after_exec(e)
            raise
        if error is not None:
            raise error

    def _drive(self, steps: Steps[T]) -> T:
        """Run a TxCore driver: its reads WATCHed on this transaction's connection, its
        writes on the store, outside MULTI."""
        try:
            kind, batch = next(steps)
            while True:
                if kind == "read":
                    replies = self._read_batch(batch, "a queued write's read", internal=True)
                else:
                    replies = self.store._execute(batch)
                kind, batch = steps.send(replies)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            close_plan(steps)  # the plans it drives run their finally blocks now
            raise

    def __enter__(self) -> Transaction:
        active = self._enter_joined()
        if active is not None:
            return active  # type: ignore[no-any-return]
        try:
            self._open()
        except BaseException:  # interrupted while it opened: __exit__ will not run
            self._close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._joined is not None:  # (an attribute, no call: nothing for an interrupt to
            self._exit_joined(exc)    # land on before the outermost one's try below)
            return
        try:
            if isinstance(exc, RestartAttemptError):
                raise _single_attempt_error(exc) from None
            if exc is None:
                self._commit()
        except _WatchConflictError:
            raise _one_attempt(self.watched) from None
        except RestartAttemptError as e:
            raise _single_attempt_error(e) from None
        finally:
            self._close()

    # ---- driving plans ---------------------------------------------------------------

    def _read_batch(self, batch: Batch, what: str, internal: bool = False) -> list[Any]:
        commands = batch.commands
        sent, watched = self._read_commands(commands, batch.keys, what, internal, batch)
        return self._read_replies(commands, self._session.run(sent), batch.errors, watched,
                                  internal)

    def query(self, plan: Plan[R], what: str = "read") -> R:
        """Run a read-only plan now, WATCHing the keys of each batch first.

        Redis: WATCH of each batch's keys, then any read command the plan holds, at once
        (LLEN, HGETALL, EVALSHA of a read script, ...)."""
        check_plan(plan, "query()")
        try:
            batch = next(plan)
            while True:
                if batch.__class__ is not Batch:
                    batch = not_a_batch(plan, batch)
                if _records_a_container(batch):
                    # the container registry's first record of a key a read plan checks:
                    # sent at once on the store (the attempt whose WATCH it trips restarts)
                    batch = plan.send(self.store.run(_one(batch)))
                    continue
                if batch.write:
                    plan.close()
                    raise TransactionError(f"{what} writes: use Transaction.queue for it")
                batch = plan.send(self._read_batch(batch, what))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            close_plan(plan)  # as run_sync: closed before the error leaves
            raise

    # ---- reads -----------------------------------------------------------------------

    def _register(self, model: type) -> None:
        model_spec(model)  # ModelDefinitionError before hashing it (as the Store's reads)
        for plan in self._unregistered((model,)):
            self.store.run(plan)

    def watch(self, *keys: str) -> None:
        """WATCH more keys (ones the function depends on without reading them here).

        Redis: WATCH. Each key is a ``str`` or ``bytes``; anything else (a list of
        keys given as one argument: ``watch(*keys)``) raises :class:`ValidationError`,
        nothing sent."""
        self._read_batch(*_watch_batch(keys))

    def get(self, model: type[T], id: Any) -> T | None:
        """WATCH the key, then read the object (HGETALL on the hash layout): it or None.

        Redis: WATCH of the key, then HGETALL (hash layout), EVALSHA flat_get.lua (flat layout) or
        GET (blob layout) at once."""
        self._register(model)
        what = f"get {model.__name__} {id!r}"
        read = self._hash_read(model, id, what)
        if read is not None:
            return self._hash_object(read, self._session.run(read[0]), False)  # type: ignore[no-any-return]
        return self.query(_ops.get(model, id), what)  # type: ignore[no-any-return]

    def get_or_raise(self, model: type[T], id: Any) -> T:
        """Like :meth:`get`; raises NotFoundError when missing.

        Redis: WATCH of the key, then HGETALL (hash layout), EVALSHA flat_get.lua (flat layout) or
        GET (blob layout) at once."""
        self._register(model)
        what = f"get {model.__name__} {id!r}"
        read = self._hash_read(model, id, what)
        if read is not None:
            return self._hash_object(read, self._session.run(read[0]), True)  # type: ignore[no-any-return]
        return self.query(_ops.get_or_raise(model, id), what)  # type: ignore[no-any-return]

    def get_many(self, model: type[T], ids: Iterable[Any]) -> list[T | None]:
        """WATCH every key, then the reads pipelined; None where missing.

        Redis: WATCH of every key, then HGETALL (hash layout), EVALSHA flat_get.lua (flat
        layout) or GET (blob layout) per id, pipelined, at once."""
        many(ids, "ids", "ids", model=model_spec(model).cls.__name__)  # before the WATCH
        self._register(model)
        plan = _ops.get_many(model, ids, self.store.chunk_size)
        return self.query(plan, f"get many {model.__name__}")

    def exists(self, model: type, id: Any) -> bool:
        """WATCH the key, then EXISTS.

        Redis: WATCH of the key, then EXISTS at once."""
        self._register(model)
        return self.query(_ops.exists(model, id), f"check {model.__name__} {id!r} exists")

    def get_field(self, model: type, id: Any, field: str) -> Any:
        """WATCH the key, then HGET one field, decoded by its type; None if absent.

        Redis: WATCH of the key, then HGET at once."""
        self._register(model)
        return self.query(get_field(model, id, field), f"read {model.__name__} {id!r} {field}")

    def read_command(self, *args: Any, watch: WatchKeys) -> Any:
        """A raw read command run now, after WATCHing ``watch`` (name every key it reads,
        as a tuple, a list or a set: ``watch=(key,)``; ``watch=()`` reads without
        protection; one key given as a ``str`` or ``bytes`` raises :class:`ValidationError`,
        nothing sent: its characters are not keys). Sent as :meth:`command` sends it; what
        :meth:`command` refuses (``UNWATCH``, ``SELECT``, ``SCRIPT`` ...) raises
        :class:`ValidationError` here, nothing sent.

        Redis: WATCH of the keys named in watch, then the command at once (e.g. GET)."""
        sent, words = checked_raw(args, "read_command")
        return self.query(_read_command(self.store.client, sent, watch), f"run {words[0]}")

class AsyncTransaction(_TxBase):
    """The asyncio twin of :class:`Transaction`, for :class:`AsyncStore`: reads are awaited
    (``await tx.get(...)``), writes are queued exactly as in the sync handle and return a
    :class:`Pending`. ``async with AsyncTransaction(store) as tx:`` is one attempt;
    ``@transaction`` on an ``async def`` retries. Nested use joins the outer transaction
    of the same asyncio task, and of tasks it starts (``asyncio.gather`` of joined
    functions): their round trips on the transaction's one connection go one at a time."""

    def __init__(self, store: AsyncStore) -> None:
        super().__init__(store)
        # joined functions gathered in tasks share this handle: one round trip at a time on
        # its one connection (docs/transactions.md, "Joining")
        self._lock = asyncio.Lock()
        self._join_tasks: list[Any] = []  # the task of each join, in order (see _join_async)
        self._joins_running: list[Any] = []  # the task of each join not yet returned
        self._task: Any = None  # the task that opened it
        self._poisoned: TransactionError | None = None

    @staticmethod
    def _current_owner() -> Any:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _open(self) -> None:
        self._task = asyncio.current_task()
        self._activate()

    async def _run(self, batch: Batch) -> Any:
        """One round trip on the transaction's connection, after any other task's."""
        async with self._lock:
            if self._session is None:
                raise TransactionError("cannot send: this transaction has already ended")
            return await self._session.run(batch)

    async def _close(self) -> None:
        self._leave()  # at once: a cancel while waiting for the lock must not leave it active
        try:
            await self._end()
        except asyncio.CancelledError:
            # cancelled behind a gathered task's round trip: the connection goes back to
            # the pool once that ends, in a task of its own
            if self._session is not None:
                ending = asyncio.get_running_loop().create_task(self._end())
                _ENDING.add(ending)
                ending.add_done_callback(_ENDING.discard)
            raise

    async def _end(self) -> None:
        async with self._lock:  # a gathered task's round trip ends first
            session = self._deactivate()
            if session is not None:
                await session.close()

    async def _commit(self) -> None:
        self._committing = True
        try:
            await self._exec()
        finally:
            self._committing = False

    async def _exec(self) -> None:
        """As :meth:`Transaction._exec`, awaited."""
        if self._poisoned is not None:
            raise self._poisoned
        core = self._core
        for plan in self._unregistered(self._models):
            await self.store.run(plan)
        try:
            if core.to_prepare:
                await self._drive(core.prepare())
            batch = self._commit_batch()
            if batch is None:
                return
            ex = await self._run(batch)
            if ex.conflict:
                raise _WatchConflictError()
        except OutcomeUnknownError:
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await self._drive(core.undo_early())
            raise
        try:  # EXEC ran: an error of a follow-up (OutcomeUnknownError) says so too
            error = await self._drive(core.finish_steps(ex.raw()))
        except Exception as e:
            _after_exec(e)
            raise
        if error is not None:
            raise error

    async def _drive(self, steps: Steps[T]) -> T:
        """As :meth:`Transaction._drive`, awaited."""
        try:
            kind, batch = next(steps)
            while True:
                if kind == "read":
                    replies = await self._read_batch(batch, "a queued write's read",
                                                     internal=True)
                else:
                    replies = await self.store._execute(batch)
                kind, batch = steps.send(replies)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            close_plan(steps)  # the plans it drives run their finally blocks now
            raise

    async def __aenter__(self) -> AsyncTransaction:
        active = self._enter_joined()
        if active is not None:
            return active  # type: ignore[no-any-return]
        try:
            self._open()
        except BaseException:  # interrupted while it opened: __aexit__ will not run
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._joined is not None:  # (an attribute, no call: nothing for an interrupt to
            self._exit_joined(exc)    # land on before the outermost one's try below)
            return
        try:
            if isinstance(exc, RestartAttemptError):
                raise _single_attempt_error(exc) from None
            if exc is None:
                await self._commit()
        except _WatchConflictError:
            raise _one_attempt(self.watched) from None
        except RestartAttemptError as e:
            raise _single_attempt_error(e) from None
        finally:
            await self._close()

    async def _read_batch(self, batch: Batch, what: str, internal: bool = False
                          ) -> list[Any]:
        commands = batch.commands
        sent, watched = self._read_commands(commands, batch.keys, what, internal, batch)
        return self._read_replies(commands, await self._run(sent), batch.errors, watched,
                                  internal)

    async def query(self, plan: Plan[R], what: str = "read") -> R:
        """Run a read-only plan now, WATCHing the keys of each batch first.

        Redis: as Transaction.query"""
        check_plan(plan, "query()")
        try:
            batch = next(plan)
            while True:
                if batch.__class__ is not Batch:
                    batch = not_a_batch(plan, batch)
                if _records_a_container(batch):  # outside the transaction, as in query
                    batch = plan.send(await self.store.run(_one(batch)))
                    continue
                if batch.write:
                    plan.close()
                    raise TransactionError(f"{what} writes: use queue() for it")
                batch = plan.send(await self._read_batch(batch, what))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            close_plan(plan)  # as run_sync: closed before the error leaves
            raise

    # ---- reads (awaited; see Transaction for the commands) ---------------------------

    async def _register(self, model: type) -> None:
        model_spec(model)  # ModelDefinitionError before hashing it (as the Store's reads)
        for plan in self._unregistered((model,)):
            await self.store.run(plan)

    async def watch(self, *keys: str) -> None:
        """WATCH more keys.

        Redis: as Transaction.watch (its keys checked as there)"""
        await self._read_batch(*_watch_batch(keys))

    async def get(self, model: type[T], id: Any) -> T | None:
        """WATCH the key, then read the object; None if missing.

        Redis: as Transaction.get"""
        await self._register(model)
        what = f"get {model.__name__} {id!r}"
        read = self._hash_read(model, id, what)
        if read is not None:
            return self._hash_object(read, await self._run(read[0]), False)  # type: ignore[no-any-return]
        return await self.query(_ops.get(model, id), what)

    async def get_or_raise(self, model: type[T], id: Any) -> T:
        """Like :meth:`get`; raises NotFoundError when missing.

        Redis: as Transaction.get_or_raise"""
        await self._register(model)
        what = f"get {model.__name__} {id!r}"
        read = self._hash_read(model, id, what)
        if read is not None:
            return self._hash_object(read, await self._run(read[0]), True)  # type: ignore[no-any-return]
        return await self.query(_ops.get_or_raise(model, id), what)

    async def get_many(self, model: type[T], ids: Iterable[Any]) -> list[T | None]:
        """WATCH every key, then the reads pipelined; None where missing.

        Redis: as Transaction.get_many"""
        many(ids, "ids", "ids", model=model_spec(model).cls.__name__)  # before the WATCH
        await self._register(model)
        plan = _ops.get_many(model, ids, self.store.chunk_size)
        return await self.query(plan, f"get many {model.__name__}")

    async def exists(self, model: type, id: Any) -> bool:
        """WATCH the key, then EXISTS.

        Redis: as Transaction.exists"""
        await self._register(model)
        return await self.query(_ops.exists(model, id), f"check {model.__name__} {id!r} exists")

    async def get_field(self, model: type, id: Any, field: str) -> Any:
        """WATCH the key, then HGET one field, decoded by its type; None if absent.

        Redis: as Transaction.get_field"""
        await self._register(model)
        plan = get_field(model, id, field)
        return await self.query(plan, f"read {model.__name__} {id!r} {field}")

    async def read_command(self, *args: Any, watch: WatchKeys) -> Any:
        """A raw read command run now, after WATCHing ``watch`` (name every key it reads,
        as a tuple, a list or a set; ``watch=()`` reads without protection; one key given
        as a ``str`` or ``bytes`` raises :class:`ValidationError`, nothing sent).

        Redis: as Transaction.read_command"""
        sent, words = checked_raw(args, "read_command")
        return await self.query(_read_command(self.store.client, sent, watch),
                                f"run {words[0]}")


def _check_join(active: Any, store: Any, what: str) -> None:
    if store is not None and not _same_store(store, active.store):
        raise TransactionError(
            f"{what} was called inside a transaction on another store ({active.store!r}); "
            "one transaction cannot span two stores"
        )
    if active._owner is not None and active._current_owner() != active._owner:
        where = "event loop" if isinstance(active, AsyncTransaction) else "thread"
        raise TransactionError(
            f"{what} was called in another {where} than the transaction it would join (the "
            "context was copied, as asyncio.to_thread or a thread pool with "
            "copy_context does): a transaction's connection belongs to the "
            f"{where} that opened it. Run it in that {where}, or outside the transaction. "
            "Nothing was sent"
        )
