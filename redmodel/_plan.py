"""Plans: the sans-I/O core.

Every store operation is a generator that yields :class:`Batch` es of commands and receives
their replies, then returns its result. Only the stores (sync, asyncio, transaction) do I/O,
so the logic exists once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import copy
import hashlib
import os
import re
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Sequence,
)
from importlib import resources
from types import GeneratorType
from typing import Any, Protocol, TypeVar

import attrs
from redis.crc import key_slot
from typing_extensions import TypeVar as DefaultTypeVar

from redmodel._errors import (
    CONNECTION_ERRORS,
    OutcomeUnknownError,
    RedmodelError,
    ValidationError,
)

__all__ = [
    "AsyncRunner",
    "Batch",
    "Command",
    "Emit",
    "IterPlan",
    "LuaScript",
    "Plan",
    "S",
    "SyncRunner",
    "check_plan",
    "close_plan",
    "iterate_async",
    "iterate_sync",
    "not_a_batch",
    "run_async",
    "run_sync",
]

# The transaction open in this thread / asyncio task (set by redmodel.transactions), here at
# the bottom so that plans above the transactions (queries, containers) can ask whether one
# is open without importing them.
ACTIVE_TRANSACTION: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "redmodel_transaction", default=None
)


def open_transaction() -> Any:
    """The transaction open in this thread / asyncio task, or None. One that ended (its
    close began, or it committed or was abandoned) is not open, even if an interrupt
    landed before it left the context (38K K1: later transactions joined such a one and
    their writes were lost)."""
    tx = ACTIVE_TRANSACTION.get()
    if tx is None:
        return None
    live = getattr(tx, "_live", None)  # (a stand-in without it counts as open)
    return tx if live is None or live() else None


def in_transaction() -> bool:
    """Whether a transaction is open in this thread / asyncio task."""
    return open_transaction() is not None


# The redis-py client of the store whose plan runs now in this thread / asyncio task (set by
# the drivers below for what they run, never across a yield to the caller): where a tracked
# object's snapshot says it was loaded from (redmodel._layouts._hash.remember).
ORIGIN: contextvars.ContextVar[Any] = contextvars.ContextVar("redmodel_origin", default=None)


def origin() -> Any:
    """The client the running plan reads and writes through: the running store's, else the
    open transaction's store's (a transaction drives its plans itself), else None
    (unknown: a tracked object then saves whole)."""
    found = ORIGIN.get()
    if found is None:
        tx = open_transaction()
        if tx is not None:
            found = getattr(tx.store, "client", None)
    return found


def _send(plan: Generator[Any, Any, Any], value: Any, client: Any) -> Any:
    """``plan.send(value)`` with :data:`ORIGIN` set to ``client`` for that step only."""
    token = ORIGIN.set(client)
    try:
        return plan.send(value)
    finally:
        ORIGIN.reset(token)

R = TypeVar("R")
Command = tuple[Any, ...]

class SyncRunner(Protocol):
    """What runs a plan at once and returns its result: a :class:`~redmodel.Store`.

    The interface the stores give the layers below them (queries, transactions), so
    those never import the stores: the store passes itself down."""

    def run(self, plan: Plan[R], /) -> R: ...

    def _execute(self, batch: Batch, /) -> list[Any]: ...


class AsyncRunner(Protocol):
    """What runs a plan as a coroutine: an :class:`~redmodel.AsyncStore`."""

    def run(self, plan: Plan[R], /) -> Coroutine[object, object, R]: ...

    def _execute(self, batch: Batch, /) -> Coroutine[object, object, list[Any]]: ...


# named S (not S_co) as docs/design.md writes it: Query[M, S]
S = DefaultTypeVar("S", bound="SyncRunner | AsyncRunner", default="SyncRunner",  # noqa: PLC0105
                   covariant=True)
"""The runner an object that runs plans is bound to (``Query[M, S]``): its running
methods are overloaded on ``self``, returning the value on a :class:`SyncRunner` (a
Store) and a coroutine of it on an :class:`AsyncRunner` (an AsyncStore; docs/design.md).
The default keeps ``Query[Hat]`` meaning the sync form. Covariant, so a subclass of Store
is a Store and a ``Query[Hat, Store]`` is a ``Query[Hat, SyncRunner | AsyncRunner]``."""


@attrs.frozen(slots=True)
class Batch:
    """Commands sent in one round trip; ``atomic`` wraps them in MULTI/EXEC.

    ``write`` marks batches that change data (a transaction queues those, and sends the
    others at once). ``keys`` are the keys the batch reads, for WATCH.

    ``idempotent`` says whether sending the batch twice is harmless: a second application
    changes nothing and answers the same (reads; a whole save; an update). ``None`` means
    "reads are, writes are not": increments, pushes, pops and counted deletes keep the
    default (a claim of a unique value is idempotent: a second copy finds it its own).
    Only an idempotent batch is ever resent after a lost reply (:attr:`may_resend`); for
    the others a lost reply is an outcome nobody can know.

    ``early`` marks writes a transaction sends at once, before its MULTI, instead of
    queueing them (claims of unique values in other cluster slots); elsewhere it changes
    nothing.

    ``errors``: the plan handles this batch's failures itself (``save_many`` and
    ``delete_many``, which say what of the call was written): a store returns its error
    replies as :class:`~redmodel.ServerError` values among the replies instead of raising
    the first, and :func:`run_sync`/:func:`run_async` throw an exception of the store
    (:class:`~redmodel.OutcomeUnknownError`, a connection error) into the plan where it
    yielded the batch. Merged by :func:`gather` with other batches, the plan gets the
    same (:func:`gather` hands each plan its own part: its replies when the merged
    round failed after all of them answered, else an error telling its own commands'
    outcome, :func:`_plan_part`); queued in a transaction, the
    batch's errors are raised as for any other.

    ``check``: a read whose replies only refuse or let pass (TYPE checks of index keys),
    deciding nothing a later plan depends on. At commit a transaction sends the checks of
    all its queued plans in one round trip and hands their replies out in queue order, so
    the plan's code from a check to its next batch must not change what later plans
    read from the shared ``TxHints`` (redmodel.transactions._core.TxCore.prepare).

    ``follow_up``: a write sent after the call's own write ran (or was refused), which
    the data stay right without: the confirmation or release of a bucketed model's
    unique claims (``redmodel._indexes._writes.settle``/``undo``/``release``). A claim
    left unconfirmed while its owner holds the value blocks nobody else, and one whose
    owner gave the value up (or is gone) is taken over by the next claimer (at once when
    confirmed, after ``CLAIM_GRACE_MS`` when not) and dropped by ``reindex``; ``verify``
    reports neither. So when such a batch ends in a plain connection error or timeout
    (nothing of it ran, or its first copy was fenced: no copy lands later) the store
    answers ``None`` for each command and the call returns its own outcome
    (:func:`follow_up_failed`): a plain error would read "not applied, safe to call
    again" of a write that was applied (attack 30AX F2). An
    :class:`~redmodel.OutcomeUnknownError` (a copy may still land: a stale release could
    free a value its owner took again) is raised, its message saying it is the
    follow-up's. :func:`gather` marks a merged batch so only when each part is.

    ``pause``: seconds the driver waits before sending the batch (``time.sleep`` in
    :func:`run_sync`/:func:`iterate_sync`, ``asyncio.sleep`` in their async twins), so
    that a plan polling for another client's write does not send round trips back to back
    (a pinned increment waiting out a pin). :func:`gather` waits the longest pause of a
    round. A transaction never polls (its plans get no "pinned" answer) and ignores it.

    ``packed``: each command as the RESP bytes a UTF-8 client packs it into, made by the
    plan together with the command (save_many of a plain hash model: see
    ``redmodel._models._compiled.hash_packer``). A shell sends them instead of packing
    the commands again only when a round sends the batch's own commands unchanged (no
    write id wrapped around one, no EVAL for an EVALSHA, nothing before or around them),
    on a client of any encoding (every str goes as UTF-8: ``_wire.pack_commands``);
    anything else packs the commands as always. Never compared or
    shown.

    ``shared``: a round :func:`gather` merged from several plans' batches. When a write
    of one plan without write id cannot be settled (its reply lost and no fence of its
    connection possible: ``CLIENT KILL`` refused or lost, its connection's id unknown),
    the store does not give up the round at once: the other plans' writes under write ids
    (exactly-once mode) are still sent again and settled as each would be alone, and the
    round then ends in :class:`~redmodel.OutcomeUnknownError` for the unsettled ones
    (``Exchange._defer``). A batch of one plan is judged as always.

    ``reads``: the positions of the commands that change nothing (reads), set by
    :func:`gather` on the batch it merges (every command of a batch that is not a
    ``write``, and the reads of those that are: :meth:`read_commands`). A read whose reply
    is lost is sent again as it would be alone, never fenced nor counted among the writes
    whose outcome is unknown, whatever else the round holds.

    ``fragile``: writes that may be sent twice only while the object they write still exists
    (True: every command; or their indices, :func:`gather`): a save with ``ttl=None`` (it
    keeps the expiry the object has), an update, an expiry. ``objects``: per command, the
    objects it writes (a batch script's several), else its first key is the object.
    ``holds``: the type those objects hold (``hash`` | ``string``) when the command does not
    say it (a PEXPIRE): a conditional copy finding another type there writes nothing, as for
    a missing object; "" for the command's own (see ``redmodel._transport._wire.guard``). A
    copy that finds one gone (expired or deleted after the first copy ran) would revive it
    without its expiry, or answer "missing" for a write that was applied. In exactly-once
    mode they are sent under write ids (:meth:`unsafe_commands` with ``once``): a resend
    answers the first copy's reply. Otherwise a copy sent after a lost reply is conditional
    (``redmodel._transport._wire.guard``): it writes only if the object exists, and the call
    raises :class:`~redmodel.OutcomeUnknownError` naming the key when it does not; one that
    cannot be made conditional is never sent again (docs/failures.md, "Resent writes and
    missing objects").

    ``meanwhile``: client work the plan can do while the server runs this batch (the
    next chunk's encoding in ``save_many``). A store may call it once, after the batch's
    first round is sent and before its replies are read, or never (a transaction, a
    cluster's spread round, :func:`gather`); the plan does that work at its own turn when
    it was not done. It sends nothing, never raises (it keeps what it would raise for its
    turn) and changes nothing the batch's outcome depends on. Never compared or shown.
    """

    commands: Sequence[Command]
    atomic: bool = False
    write: bool = False
    keys: Sequence[str] = ()
    target: Any = None  # a cluster node for node-wide commands (SCAN); None: route by key
    idempotent: bool | None = None
    early: bool = False
    unsafe: tuple[int, ...] | None = None
    errors: bool = False
    check: bool = False
    follow_up: bool = False
    pause: float = 0.0
    shared: bool = False
    reads: tuple[int, ...] | None = None
    fragile: bool | tuple[int, ...] = False
    objects: Sequence[Sequence[str]] | None = attrs.field(default=None, eq=False, repr=False)
    holds: str = ""
    packed: Sequence[bytes] | None = attrs.field(default=None, eq=False, repr=False)
    meanwhile: Callable[[], None] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def may_resend(self) -> bool:
        """Whether a store may send this batch again after its reply was lost."""
        return (not self.write) if self.idempotent is None else self.idempotent

    def unsafe_commands(self, once: bool = False) -> tuple[int, ...]:
        """Indices of the commands that must never be sent twice: ``unsafe`` when a batch
        mixes both kinds (:func:`gather`), else every command or none, as
        :attr:`may_resend` says. ``once`` (exactly-once mode): with the :attr:`fragile`
        ones, which are then sent under write ids."""
        if self.unsafe is not None:
            unsafe = self.unsafe
        else:
            unsafe = () if self.may_resend else tuple(range(len(self.commands)))
        if once and self.fragile is not False:
            return tuple(sorted({*unsafe, *self.fragile_commands()}))
        return unsafe

    def fragile_commands(self) -> tuple[int, ...]:
        """Indices of the :attr:`fragile` commands."""
        fragile = self.fragile
        if fragile is True:
            return tuple(range(len(self.commands)))
        return () if fragile is False else fragile

    def read_commands(self) -> tuple[int, ...]:
        """Indices of the commands that change nothing (sent again after a lost reply with
        no fence, never an unknown outcome): ``reads`` when set (:func:`gather`), else
        every command of a batch that is not a ``write`` (the label a store already trusts
        to resend it alone and a transaction to send it outside MULTI), and in a ``write``
        batch only a plain command of :data:`READ_COMMANDS` that may be sent twice (not
        among :meth:`unsafe_commands`): a script, or any other name, counts as a write."""
        if self.reads is not None:
            return self.reads
        if not self.write:
            return tuple(range(len(self.commands)))
        if self.unsafe is None and not self.may_resend:
            return ()  # every command must not run twice
        unsafe = frozenset(self.unsafe or ())
        return tuple(i for i, c in enumerate(self.commands)
                     if c and c[0] in READ_COMMANDS and i not in unsafe)


#: Plain commands that change nothing (each flagged ``readonly`` in the server's command
#: table: tests/test_fix32a.py checks), counted as reads inside a write batch
#: (:meth:`Batch.read_commands`); as redmodel spells them (upper case str).
READ_COMMANDS = frozenset({
    "EXISTS", "TYPE", "TTL", "PTTL", "GET", "MGET", "STRLEN", "HGET", "HMGET", "HGETALL",
    "HEXISTS", "HLEN", "HKEYS", "HVALS", "HSCAN", "LLEN", "LRANGE", "LINDEX", "SCARD",
    "SISMEMBER", "SMISMEMBER", "SMEMBERS", "SSCAN", "ZCARD", "ZSCORE", "ZMSCORE", "ZRANGE",
    "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZREVRANGEBYLEX",
    "ZRANK", "ZREVRANK", "ZCOUNT", "ZLEXCOUNT", "ZSCAN", "SCAN",
})


@attrs.frozen(slots=True)
class Emit:
    """Items an iteration plan hands to its caller (a page of keys or objects)."""

    items: Sequence[Any]


Plan = Generator[Batch, list[Any], R]
IterPlan = Generator["Batch | Emit", "list[Any] | None", None]


def follow_up_failed(batch: Batch, error: Exception) -> list[Any]:
    """What a store answers for ``batch`` when sending it raised ``error``: ``error``
    raised again unless ``batch`` is a :attr:`Batch.follow_up` that failed plainly (a
    redis-py ``ConnectionError``/``TimeoutError``: not run, or fenced), for which each
    command's reply is ``None``. An :class:`~redmodel.OutcomeUnknownError` of a follow-up
    is raised with its message saying so (the call's own write is not the unknown
    part)."""
    if not batch.follow_up or not isinstance(error, CONNECTION_ERRORS):
        raise error
    if isinstance(error, RedmodelError):
        if error.args and isinstance(error.args[0], str) and FOLLOW_UP not in error.args[0]:
            error.args = (f"{error.args[0]}{FOLLOW_UP}", *error.args[1:])
        raise error
    return [None] * len(batch.commands)


#: added to the message of an OutcomeUnknownError of a :attr:`Batch.follow_up`
FOLLOW_UP = ("; this was a follow-up sent after the call's own write (confirming or "
             "releasing claims of unique values), whose outcome is what is unknown: the "
             "call's own write was done as its result would have said (read the object)")


def check_plan(plan: Any, what: str = "run()") -> None:
    """Refuse, with :class:`ValidationError`, a ``plan`` argument that is no plan (a
    generator of :class:`Batch`), before it is started: ``store.run(None)``,
    ``run_many(plan, "LEN")``. Nothing is sent."""
    if plan.__class__ is not GeneratorType and not isinstance(plan, Generator):
        raise ValidationError(
            f"{what} takes plans (generators of batches: a container's or a query's "
            f"*_plan(), such as q.push_plan(x)), got {type(plan).__name__}; nothing was "
            "sent")


def not_a_batch(plan: Any, item: Any) -> Batch:
    """What a driver does with an item a plan yielded that is no :class:`Batch` (a
    generator of something else, an iteration plan's ``Emit`` given to ``run``): the plan
    is closed and :class:`ValidationError` raised; that item is not sent."""
    with contextlib.suppress(Exception):
        plan.close()
    raise ValidationError(f"a plan yielded a {type(item).__name__}, not a Batch: run() "
                          "and run_many() run plans (a container's or a query's *_plan()); "
                          "it was not sent")


def close_plan(plan: Generator[Any, Any, Any]) -> None:
    """Close ``plan`` (``plan.close()``: its ``finally`` blocks and ``with`` exits run at
    once), because the call that drove it ends without finishing it: a failure of any
    kind (an error of the store or of the connection, a timeout, ``KeyboardInterrupt``,
    ``asyncio.CancelledError``), or the caller leaving an iteration. A plan suspended at
    a yield would otherwise keep what its ``finally`` gives back (a first use counted as
    under way in the store's registry) for as long as the error's traceback (a kept
    exception, a Future, a cancelled Task) keeps it alive. A plan already finished (it
    raised itself) is left as it is; an error of the close itself is not raised over the
    call's own (the call's error is what the caller must see)."""
    with contextlib.suppress(Exception):
        plan.close()


def run_sync(plan: Plan[R], execute: Callable[[Batch], list[Any]], client: Any = None) -> R:
    """Drive ``plan`` with ``execute(batch) -> replies``; ``client``: the store's (the
    :data:`ORIGIN` of the run). A ``plan`` that is no plan, or an item it yields that is
    no :class:`Batch`, raises :class:`ValidationError` (:func:`check_plan`). When the run
    ends in any exception (``BaseException``: a failed batch the plan did not take,
    ``KeyboardInterrupt``...) the plan is closed before it leaves (:func:`close_plan`)."""
    check_plan(plan)
    token = ORIGIN.set(client)  # nothing of the caller's runs before it returns
    try:
        batch = next(plan)
        while True:
            if batch.__class__ is not Batch:
                batch = not_a_batch(plan, batch)
            if batch.pause:
                time.sleep(batch.pause)
            try:
                replies = execute(batch)
            except Exception as e:
                if not batch.errors:
                    raise
                batch = plan.throw(e)  # the plan says what of it was done, or re-raises
                continue
            batch = plan.send(replies)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except BaseException:
        close_plan(plan)  # its finally blocks run now, not when the error is freed
        raise
    finally:
        ORIGIN.reset(token)


async def run_async(plan: Plan[R], execute: Callable[[Batch], Awaitable[list[Any]]],
                    client: Any = None) -> R:
    """Drive ``plan`` with ``await execute(batch) -> replies``; ``client`` as for
    :func:`run_sync` (set in this task's context: nothing else runs in it meanwhile). The
    plan is closed when the run ends in any exception, ``asyncio.CancelledError``
    included (:func:`close_plan`)."""
    check_plan(plan)
    token = ORIGIN.set(client)
    try:
        batch = next(plan)
        while True:
            if batch.__class__ is not Batch:
                batch = not_a_batch(plan, batch)
            if batch.pause:
                await asyncio.sleep(batch.pause)
            try:
                replies = await execute(batch)
            except Exception as e:
                if not batch.errors:
                    raise
                batch = plan.throw(e)  # as in run_sync
                continue
            batch = plan.send(replies)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except BaseException:
        close_plan(plan)  # its finally blocks run now, not when the error is freed
        raise
    finally:
        ORIGIN.reset(token)


def iterate_sync(plan: IterPlan, execute: Callable[[Batch], list[Any]],
                 client: Any = None) -> Iterator[Any]:
    """Drive an iteration plan, yielding the items it emits; ``client`` as for
    :func:`run_sync` (set for each step of the plan, not while the caller has an item).
    The plan stays suspended between the pages the caller takes, and is closed
    (:func:`close_plan`) when this iteration ends without finishing it: an exception of
    any kind, or the caller closing (or dropping) the iterator."""
    try:
        step = _send(plan, None, client)
        while True:
            if isinstance(step, Emit):
                yield from step.items
                step = _send(plan, None, client)
            else:
                if step.pause:
                    time.sleep(step.pause)
                step = _send(plan, execute(step), client)
    except StopIteration:
        return
    finally:
        close_plan(plan)


async def iterate_async(
    plan: IterPlan, execute: Callable[[Batch], Awaitable[list[Any]]], client: Any = None
) -> AsyncIterator[Any]:
    """Drive an iteration plan with an async executor, yielding the items it emits;
    ``client`` and closing as for :func:`iterate_sync`."""
    try:
        step = _send(plan, None, client)
        while True:
            if isinstance(step, Emit):
                for item in step.items:
                    yield item
                step = _send(plan, None, client)
            else:
                if step.pause:
                    await asyncio.sleep(step.pause)
                step = _send(plan, await execute(step), client)
    except StopIteration:
        return
    finally:
        close_plan(plan)


@attrs.frozen
class LuaScript:
    """A Lua script from ``redmodel/lua/<name>.lua``, sent as EVALSHA (and as EVAL, or after
    SCRIPT LOAD, where the server does not know it yet)."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    def call(self, keys: Sequence[str], args: Sequence[Any]) -> Command:
        """An EVALSHA command; stores fall back to EVAL on NOSCRIPT."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def memo_call(self, root: str, d: str, keys: Sequence[str], args: Sequence[Any],
                  slot_of: str | None = None) -> Command:
        """This script's call under a memo of its own (:func:`memo_variant`): a key under
        the index root ``root`` (delimiter ``d``), new per call, in the slot of ``root``'s
        hash tag, where the first run keeps its reply for :data:`MEMO_TTL_MS`. Sent again
        after a lost reply, the same command answers the first run's reply (docs/failures.md
        "Resent maintenance calls"). ``slot_of``: a key without a hash tag whose slot
        (a cluster's) the memo takes, when ``root`` has none: by a hash tag of that slot
        (a short number), unless ``root``'s own braces (a prefix such as ``a{b``) would
        swallow that tag; then the call is sent without a memo, as it was before memos (a
        resend's count may be short; attack 32J)."""
        variant = memo_variant(self)
        key = f"{root}memo{d}{new_token()}"
        if slot_of is not None:
            # (imported here: the model layer's package imports this module)
            from redmodel._models._keys import _tag_for_slot  # noqa: PLC0415

            slot = key_slot(slot_of.encode("utf-8", "surrogateescape"))
            key += f"{{{_tag_for_slot(slot)}}}"
            if key_slot(key.encode("utf-8", "surrogateescape")) != slot:
                return self.call(keys, args)
        return ("EVALSHA", variant.sha, len(keys) + 1, key, *keys, MEMO_TTL_MS, *args)


SCRIPTS_BY_SHA: dict[str, LuaScript] = {}
_INCLUDE = "--! include "
_SHEBANG = "#!"  # a script's first line may declare its flags: #!lua flags=allow-oom


def lua_source(name: str, _seen: set[str] | None = None) -> str:
    """The text of ``redmodel/lua/<name>.lua`` with its ``--! include other`` lines replaced
    by those files (each included once), so shared pieces are written once.

    A script may start with a shebang (``#!lua flags=allow-oom``, Redis 7+): it stays the
    first line. Only a script's own first line may be one (an included file's would land
    in the middle)."""
    seen = set() if _seen is None else _seen
    text = resources.files("redmodel.lua").joinpath(f"{name}.lua").read_text("utf-8")
    out = []
    for number, line in enumerate(text.splitlines()):
        if line.startswith(_SHEBANG) and (number or _seen is not None):
            raise ValueError(f"redmodel/lua/{name}.lua: a shebang must be the first line "
                             "of a script, not of an included file")
        if line.startswith(_INCLUDE):
            part = line[len(_INCLUDE):].strip()
            if part not in seen:
                seen.add(part)
                out.append(lua_source(part, seen))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


_SCRIPT_REFUSAL = re.compile(
    r"can't run this command or subcommand\s+script: ([0-9a-f]{40}), on @user_script:([0-9]+)")
_CALLED = re.compile(r"(?:redis\.p?call|call_parts)\(\s*'([A-Za-z_|]+)'")
_NAMES = re.compile(r"'([A-Z][A-Z_|]+)'")


def refused_in_script(reply: str) -> str:
    """The command a script's ACL refusal names, as Valkey's does (``'zrank'``), for the
    refusal's text of a server that names none (Redis 7.0: "The user executing the script
    can't run this command or subcommand script: <sha>, on @user_script:<line>."): the
    command(s) called on that line of the redmodel script of that sha, and the script.
    "" for any other text, a script this process did not load, or a line that calls no
    command by name."""
    found = _SCRIPT_REFUSAL.search(reply)
    if found is None:
        return ""
    known = SCRIPTS_BY_SHA.get(found.group(1))
    if known is None:
        return ""
    lines = known.source.splitlines()
    number = int(found.group(2))
    if not 0 < number <= len(lines):
        return ""
    line = lines[number - 1]
    found_names = _CALLED.findall(line) or (  # redis.call(max and 'ZPOPMAX' or 'ZPOPMIN', ...)
        _NAMES.findall(line) if "call(" in line else [])
    called = list(dict.fromkeys(c.lower() for c in found_names))
    if not called:
        return ""
    which = " or ".join(f"'{c}'" for c in called)
    return (f"the refused command is {which} (line {number} of redmodel's script "
            f"{known.name})")


def script(name: str) -> LuaScript:
    """Load a script once at import; stores can map its sha back to its source."""
    s = LuaScript(name, lua_source(name))
    SCRIPTS_BY_SHA[s.sha] = s
    return s


def _wrapped(base: LuaScript, kind: str, head: str, tail: str) -> LuaScript:
    """``base``'s text wrapped as ``<name>+<kind>``: ``head`` (a script of redmodel/lua),
    then the script's body as the local function ``<kind>_body``, then ``tail`` (Lua text).
    The script's flags (its shebang: allow-oom) stay its first line. Registered with the
    scripts (SCRIPTS_BY_SHA), so NOSCRIPT falls back to it; made once per (script, kind)."""
    key = (base.sha, kind)
    found = _WRAPPED.get(key)
    if found is None:
        shebang, body = "", base.source
        if body.startswith(_SHEBANG):
            shebang, body = body.split("\n", 1)
            shebang += "\n"
        text = (shebang + lua_source(head) + f"local function {kind}_body()\n" + body
                + "end\n" + tail)
        found = _WRAPPED[key] = LuaScript(f"{base.name}+{kind}", text)
        SCRIPTS_BY_SHA[found.sha] = found
    return found


_WRAPPED: dict[tuple[str, str], LuaScript] = {}


def once_variant(sha: str) -> LuaScript | None:
    """The exactly-once form of a known script (``<name>+once``): the script's text wrapped
    in a function between ``once_head.lua`` and ``once_tail.lua``, which take the write id's
    key as KEYS[1] and its expiry as ARGV[1] (docs/failures.md). None for a sha this process
    did not load, which cannot be wrapped."""
    base = SCRIPTS_BY_SHA.get(sha)
    if base is None or base.name.endswith("+once") or base.name.startswith("once_"):
        return None
    return _wrapped(base, "once", "once_head", lua_source("once_tail"))


def guard_variant(sha: str) -> LuaScript | None:
    """The conditional form of a known script (``<name>+guard``): ``guard_head.lua``
    before the script's text, which takes a count and the objects the write needs first
    in ARGV and answers the GONE error with nothing written when one is missing
    (:attr:`Batch.fragile`). None for a sha this process did not load."""
    base = SCRIPTS_BY_SHA.get(sha)
    if base is None or "+" in base.name:
        return None
    return _wrapped(base, "guard", "guard_head", "return guard_body()\n")


MEMO_TTL_MS = 120_000
"""How long a memo keeps a maintenance call's reply (ms): longer than any resend of the
call under the default ResendPolicy (deadline 10 s). A copy that comes later than this (a
policy whose deadline is longer, a server paused with the call in its input buffer)
answers as a first run would then."""


def new_token() -> str:
    """16 random URL-safe characters (96 bits, from os.urandom): unique per call."""
    return base64.urlsafe_b64encode(os.urandom(12)).decode("ascii")


def memo_variant(base: LuaScript) -> LuaScript:
    """The memo form of a script (``<name>+memo``): its text wrapped in a function
    between ``memo_head.lua`` and ``memo_tail.lua``, which take the memo's key as KEYS[1]
    and its expiry as ARGV[1]."""
    return _wrapped(base, "memo", "memo_head", lua_source("memo_tail"))


def as_eval(command: Command) -> Command:
    """EVALSHA of a known script -> the same call as EVAL; anything else unchanged."""
    if command and command[0] == "EVALSHA":
        found = SCRIPTS_BY_SHA.get(command[1])
        if found is not None:
            return ("EVAL", found.source, *command[2:])
    return command


class PlanResults(list[Any]):
    """What each plan of a :func:`gather` (``store.run_many``) that raised came to, in plan
    order: its result, or the exception it ended in. Set as ``results`` on the error
    ``run_many`` raises, so a value a plan returned (a member a pop took) is not lost
    with its neighbour's failure. Never shown (repr) nor carried across a process
    boundary (pickle, copy: an empty one): it may hold decoded secrets."""

    def __repr__(self) -> str:
        return f"<results of {len(self)} plans>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlanResults, ())


def _part_error(error: Exception, start: int, count: int) -> Exception:
    """A copy of ``error`` (thrown into a merged batch of :func:`gather`) for the plan whose
    commands are ``start:start+count`` of it: its :data:`~redmodel._transport._wire.OUTCOME`
    (which commands ran, which never will) in that plan's own positions, so a plan that
    says what of its batch was written reads its own commands; anything a plan sets on
    the error stays its own."""
    from redmodel._transport._wire import OUTCOME, BatchOutcome  # noqa: PLC0415

    try:
        part = copy.copy(error)
    except Exception:  # an exception that cannot be copied: the plan gets the error itself
        return error
    part.__cause__, part.__context__ = error.__cause__, error.__context__
    whole = getattr(error, OUTCOME, None)
    if isinstance(whole, BatchOutcome):
        ours = range(start, start + count)
        setattr(part, OUTCOME, BatchOutcome(
            {i - start: r for i, r in whole.ran.items() if i in ours},
            tuple(i - start for i in whole.not_ran if i in ours),
            tuple(i - start for i in whole.unfenced if i in ours)))
    return part


def _answered(reply: Any, command: Command) -> Any:
    """A reply of a round's :data:`~redmodel._transport._wire.OUTCOME` as the store
    answers it in an :attr:`Batch.errors` batch (``Exchange.raw``): an error reply as the
    ServerError naming the command's keys, a counter's text under a write id as its int."""
    from redmodel._transport._wire import EXACT_INT_REPLIES, server_error  # noqa: PLC0415

    if isinstance(reply, Exception):
        return server_error(reply, command)
    if isinstance(reply, (bytes, str)) and command and \
            str(command[0]).upper() in EXACT_INT_REPLIES:
        return int(reply)
    return reply


def _applied(batch: Batch, replies: dict[int, Any] | Sequence[Any]) -> bool:
    """Whether a write of ``batch`` that must not run twice ran: its reply (by position)
    is in and is no error reply. A follow-up's does not count (the data stay right
    without it: see :attr:`Batch.follow_up`)."""
    if batch.follow_up:
        return False
    got = replies if isinstance(replies, dict) else dict(enumerate(replies))
    return any(k in got and not isinstance(got[k], Exception)
               for k in batch.unsafe_commands())


def _keys_of(commands: Sequence[Command]) -> tuple[str, ...]:
    """The keys ``commands`` name, each once, in order."""
    from redmodel._transport._wire import _text, command_keys  # noqa: PLC0415

    return tuple(dict.fromkeys(_text(k) for c in commands for k in command_keys(c)[0]))


def _plan_part(error: Exception, batch: Batch, start: int, count: int
               ) -> list[Any] | Exception:
    """What the plan whose ``batch`` is ``start:start+count`` of a merged round of
    :func:`gather` learns from the round's failure ``error``, as it would alone, from the
    round's :data:`~redmodel._transport._wire.OUTCOME` (which commands ran and answered,
    which never ran and never will):

    - every command of it answered: its replies (the failure is another plan's);
    - a command of it that must not run twice neither answered nor certainly not run,
      or (a write batch) one that may be sent twice whose copy got no reply and was not
      fenced (``BatchOutcome.unfenced``: ``CLIENT KILL`` refused, or the round given up
      for another plan's unknown write before its fence: a copy may land later): an
      :class:`~redmodel.OutcomeUnknownError` naming its own keys;
    - such a command of it answered and the others certainly not run: an
      :class:`~redmodel.OutcomeUnknownError` saying so (part applied), naming the keys of
      the others;
    - else (nothing of it that must not run twice ran, and no copy of it can land later:
      not run, or fenced; a read): a plain connection error, ``error`` itself when it is
      one.

    An error comes as a copy carrying the plan's own slice of the outcome
    (:func:`_part_error`). Without an outcome (a round of reads, an error raised before
    any command went out), the plan gets a copy of ``error``."""
    from redmodel._transport._wire import OUTCOME, BatchOutcome, describe  # noqa: PLC0415

    whole = getattr(error, OUTCOME, None)
    if not isinstance(whole, BatchOutcome):
        return _part_error(error, start, count)
    commands = batch.commands
    ran = {k: _answered(whole.ran[start + k], commands[k]) for k in range(count)
           if start + k in whole.ran}
    if len(ran) == count:
        return [ran[k] for k in range(count)]
    not_ran = {k for k in range(count) if start + k in whole.not_ran}
    unsafe = batch.unsafe_commands()
    # a fragile write (Batch.fragile) whose copy may have run and that was not settled:
    # calling again could revive an object that expired meanwhile, so never plain
    unknown = [k for k in sorted({*unsafe, *batch.fragile_commands()})
               if k not in ran and k not in not_ran]
    late = [k for k in range(count) if start + k in whole.unfenced and k not in ran
            and k not in unsafe] if batch.write else []
    unknown += late
    missing = [k for k in range(count) if k not in ran]
    applied = _applied(batch, ran)
    part = _part_error(error, start, count)
    if unknown or applied:
        cause = error.__cause__ if isinstance(error, OutcomeUnknownError) and \
            error.__cause__ is not None else error
        what = ", ".join(sorted({describe(commands[k]) for k in (unknown or missing)}))
        reads = set(batch.read_commands())
        done = _keys_of([commands[k] for k in unsafe if k in ran])
        if unknown:
            message = (f"{what} was sent in one round with other plans' commands "
                       "(run_many, or several objects of one call) and that round failed "
                       "before its reply arrived")
            if late:
                message += ("; redmodel could not make sure that no copy of it lands "
                            "later (its connection was not fenced)")
        else:
            message = (f"part of this plan's batch was applied (keys {list(done[:5])}) "
                       f"and the rest ({what}) was not, and never will be: it was sent in "
                       "one round with other plans' commands (run_many) that failed")
        made = OutcomeUnknownError(
            f"{message} ({type(cause).__name__}: {cause})",
            keys=_keys_of([commands[k] for k in missing
                           if k not in reads]),  # a read wrote nothing
            write_id=getattr(error, "write_id", None))
        made.__cause__ = cause
        whole_part = getattr(part, OUTCOME, None)
        if whole_part is not None:
            setattr(made, OUTCOME, whole_part)
        return made
    if not isinstance(error, OutcomeUnknownError):
        return part  # plain, or what the round failed in (nothing of it ran)
    # the round's outcome is unknown for another plan's command; this one's is known:
    # nothing of it that must not run twice ran
    reason = error.__cause__
    plain: Exception
    if isinstance(reason, CONNECTION_ERRORS) and not isinstance(reason, OutcomeUnknownError):
        plain = copy.copy(reason)
        plain.__cause__, plain.__context__ = reason.__cause__, reason.__context__
    else:
        from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415
        plain = RedisConnectionError(
            f"the connection failed before {', '.join(sorted({describe(c) for c in commands}))}"
            f" (keys {list(_keys_of(commands)[:5])}) ran: not applied")
    whole_part = getattr(part, OUTCOME, None)
    if whole_part is not None:
        setattr(plain, OUTCOME, whole_part)
    return plain


def gather(plans: Sequence[Plan[Any]]) -> Plan[list[Any]]:
    """One plan running ``plans`` side by side: each round sends every plan's next batch
    in one pipeline (an atomic or node-targeted batch goes alone). Returns their results
    in order.

    Each plan gets its own replies and failures as it would alone: unless it is the only
    plan, every round is sent as an :attr:`Batch.errors` batch, and a plan whose batch
    asked for ``errors`` gets its error replies as values; for any other plan an error
    reply of its part is its failure. When a round shared by several plans fails, each
    plan gets what the round's outcome (which commands answered, which certainly never
    ran) says of ITS commands (:func:`_plan_part`): its replies when all of them
    answered, else an :class:`~redmodel.OutcomeUnknownError` naming its own keys or a
    plain connection error (a write of it that may be sent twice whose copy was not
    fenced counts as unknown); a :attr:`Batch.follow_up` plan gets what the store
    answers it alone (:func:`follow_up_failed`); a plan that asked for ``errors`` has
    that error thrown in (a copy, telling its own commands' outcome), for any other it
    is its failure. A
    plan's failure never stops the others: they run to their end (a pop's set-aside and
    put-back included), then the first :class:`~redmodel.OutcomeUnknownError` among the
    failures, else the first failure, is raised, its ``results`` a :class:`PlanResults`
    (each plan's result, or its exception). That failure is never a plain connection
    error once a write of any plan that must not run twice was applied (an
    OutcomeUnknownError saying so is raised instead, the plain one its cause and the
    plan's entry in ``results``). An error a plan raises while building its first batch
    (bad input) is raised at once: nothing was sent; so is one of the ``plans`` that is no
    plan, or a first item that is no :class:`Batch` (ValidationError, before any plan
    starts / any batch is sent)."""
    state = _Gathering(plans)
    try:
        while state.current:
            group, spans, sent = _round(state.current, alone=len(plans) == 1)
            state.last.update(group)
            try:
                replies = yield sent
            except Exception as e:  # the round failed (sent as errors: see Batch.errors)
                if len(group) == 1:  # its own batch's failure: what the store raises for it
                    state.failure(next(iter(group)), group, e)
                    continue
                for i, (start, count) in spans.items():
                    got = _plan_part(e, group[i], start, count)
                    if isinstance(got, Exception) and group[i].follow_up:
                        try:  # as the store answers a follow-up alone
                            got = follow_up_failed(group[i], got)
                        except Exception as raised:
                            got = raised
                    if isinstance(got, list):
                        state.answer(i, group, got)
                    else:
                        state.failure(i, group, got)
                continue
            for i, (start, count) in spans.items():
                state.answer(i, group, replies[start : start + count])
    finally:  # ended early (closed, KeyboardInterrupt...): the plans still running too
        for i in list(state.current):
            close_plan(plans[i])
    if state.failed:
        raise _first_failure(state.failed, state.results, state.applied, state.last)
    return state.results


class _Gathering:
    """What :func:`gather` knows of its plans while they run."""

    def __init__(self, plans: Sequence[Plan[Any]]) -> None:
        self.plans = plans
        self.results: list[Any] = [None] * len(plans)
        self.failed: dict[int, Exception] = {}  # by plan, in the order they happened
        self.current: dict[int, Batch] = _first_batches(plans, self.results)
        self.last: dict[int, Batch] = {}  # each plan's batch of its latest round
        self.applied: set[int] = set()  # plans a write that must not run twice of ran

    def advance(self, i: int, step: Callable[[Any], Batch], value: Any) -> None:
        try:
            batch = step(value)
            self.current[i] = (batch if batch.__class__ is Batch
                               else not_a_batch(self.plans[i], batch))
        except StopIteration as stop:
            self.results[i] = stop.value
            del self.current[i]
        except Exception as e:
            self.failed[i] = e
            del self.current[i]

    def fail(self, i: int, error: Exception) -> None:
        self.failed[i] = error
        del self.current[i]
        self.plans[i].close()

    def answer(self, i: int, group: dict[int, Batch], part: list[Any]) -> None:
        """Plan ``i`` gets its replies ``part`` of a round: an error reply among them is
        its failure unless its batch asked for ``errors``."""
        if _applied(group[i], part):
            self.applied.add(i)
        if not group[i].errors:
            refused = next((r for r in part if isinstance(r, Exception)), None)
            if refused is not None:  # what the store raises for it alone
                self.fail(i, refused)
                return
        self.advance(i, self.plans[i].send, part)

    def failure(self, i: int, group: dict[int, Batch], error: Exception) -> None:
        """Plan ``i``'s batch of a round ended in ``error`` (its own part of it): thrown
        in when the batch asked for ``errors``, else its failure."""
        if _ran_unsafe(error, group[i]):
            self.applied.add(i)
        if group[i].errors:
            self.advance(i, self.plans[i].throw, error)
        else:
            self.fail(i, error)


def _ran_unsafe(error: Exception, batch: Batch) -> bool:
    """Whether ``error``'s outcome (in ``batch``'s own positions) says a write of it that
    must not run twice ran."""
    from redmodel._transport._wire import OUTCOME, BatchOutcome  # noqa: PLC0415

    whole = getattr(error, OUTCOME, None)
    return isinstance(whole, BatchOutcome) and _applied(batch, whole.ran)


def _first_batches(plans: Sequence[Plan[Any]], results: list[Any]) -> dict[int, Batch]:
    """Each plan's first batch, by plan (a plan done at once: its result in ``results``);
    a ``plans`` item that is no plan, an error building a first batch or a first item that
    is no Batch is raised, the plans started before it closed: nothing was sent."""
    for plan in plans:
        check_plan(plan, "run_many()")
    current: dict[int, Batch] = {}
    try:
        for i, plan in enumerate(plans):
            try:
                first = next(plan)
            except StopIteration as stop:
                results[i] = stop.value
                continue
            current[i] = first if first.__class__ is Batch else not_a_batch(plan, first)
    except BaseException:
        for started in current:
            with contextlib.suppress(Exception):
                plans[started].close()
        raise
    return current


def _round(current: dict[int, Batch], alone: bool
           ) -> tuple[dict[int, Batch], dict[int, tuple[int, int]], Batch]:
    """The plans :func:`gather` sends in its next round (by plan), where each one's
    commands are in the batch sent (start, count), and that batch. ``alone``: the only
    plan of the gather, so its batch goes unchanged (with other plans, finished or not,
    its failure must come back to the gather: their results are reported with it)."""
    group = {i: b for i, b in current.items() if not b.atomic and b.target is None}
    if any(b.early for b in group.values()):  # early writes never share with queued ones
        group = {i: b for i, b in group.items() if b.early or not b.write}
    if not group:
        first = next(iter(current))
        group = {first: current[first]}
    commands: list[Command] = []
    spans: dict[int, tuple[int, int]] = {}
    for i, batch in group.items():
        spans[i] = (len(commands), len(batch.commands))
        commands.extend(batch.commands)
    if len(group) == 1:
        only = next(iter(group.values()))
        if not alone and not only.errors:
            only = attrs.evolve(only, errors=True)  # its failure must not stop the others
        return group, spans, only
    batches = group.values()
    unsafe = tuple(start + k for i, (start, _) in spans.items()
                   for k in group[i].unsafe_commands())
    reads = tuple(start + k for i, (start, _) in spans.items()
                  for k in group[i].read_commands())
    fragile = tuple(start + k for i, (start, _) in spans.items()
                    for k in group[i].fragile_commands())
    return group, spans, Batch(
        commands,
        write=any(b.write for b in batches),
        keys=[k for b in batches for k in b.keys],
        idempotent=not unsafe,
        early=any(b.early for b in batches),
        unsafe=unsafe,
        errors=True,
        follow_up=all(b.follow_up for b in batches),
        pause=max(b.pause for b in batches),
        shared=True,
        reads=reads,
        fragile=fragile or False,
    )


def _written(batch: Batch) -> list[Command]:
    """The commands of ``batch`` that may change data (all but its reads)."""
    reads = set(batch.read_commands())
    return [c for k, c in enumerate(batch.commands) if k not in reads]


def _first_failure(failed: dict[int, Exception], results: list[Any], applied: set[int],
                   last: dict[int, Batch]) -> Exception:
    """The error :func:`gather` raises: the first OutcomeUnknownError among the plans'
    failures (an unknown outcome is never hidden behind a known one), else the first
    failure; its ``results`` each plan's result or failure (:class:`PlanResults`). A
    plain connection error ("not applied, safe to call again") once a write of any plan
    that must not run twice was applied (``applied``) becomes an OutcomeUnknownError
    saying so, naming the keys the failed plans' latest batches (``last``) write: never a
    read's (:meth:`Batch.read_commands`; a failed read wrote nothing, so when only reads
    failed it names none)."""
    chosen = next((e for e in failed.values() if isinstance(e, OutcomeUnknownError)),
                  next(iter(failed.values())))
    done = PlanResults(results)
    for i, error in failed.items():
        done[i] = error
    if applied and isinstance(chosen, CONNECTION_ERRORS) and \
            not isinstance(chosen, OutcomeUnknownError):
        keys = _keys_of([c for i in failed if i in last
                         for c in _written(last[i])])
        reading = "" if keys else " (reads only: they wrote nothing)"
        wrapped = OutcomeUnknownError(
            f"writes of plans {sorted(applied)} of this run_many were applied, and then "
            f"plans {sorted(failed)} failed{reading} ({type(chosen).__name__}: {chosen}): "
            "each plan's outcome is in this error's results",
            keys=keys)
        wrapped.__cause__ = chosen
        chosen = wrapped
    chosen.results = done  # type: ignore[attr-defined]
    return chosen
