"""The transport's decisions, with no I/O: what each round of a batch sends, and what its
replies and failures mean.

Every batch redmodel sends (store methods, containers, queries, transactions) goes through
an :class:`Exchange`. A shell (:mod:`redmodel._transport._links`) takes a connection from the
client's own pool, sends one round's commands in one write, reads the replies with the connection's
``read_response`` and hands back what happened. The exchange decides:

- what to send: ``SCRIPT LOAD`` before the scripts a node has not seen, ``MULTI``/``EXEC``
  around an atomic batch, ``ASKING`` before a command redirected mid-migration, each
  command to the node of its slot (cluster) and, in exactly-once mode, each write that must
  not run twice under a write id (:func:`wrap`);
- what replies mean: done; or sent again to the right place, because the reply proves that
  nothing ran (NOSCRIPT, MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY, LOADING);
- what failures mean: before any byte was sent nothing was applied, and the batch is tried
  again under the :class:`ResendPolicy`, then redis-py's ``ConnectionError`` is raised;
  after sending, only what may be sent twice is sent again, and a write only once its
  first copy is fenced (``CLIENT KILL ID`` of the connection that carried it, on another
  connection to the same node: after the answer no copy of it can land later; without
  it, OutcomeUnknownError). Anything else is an
  :class:`~redmodel.OutcomeUnknownError`, or in exactly-once mode it is sent again under
  its write id and, once the policy gives up, fenced and settled: applied or not applied.

The rule a caller can rely on: a plain redis-py ``ConnectionError``/``TimeoutError`` from
redmodel means the call is safe to make again; ``OutcomeUnknownError`` means it may have
been applied.
"""

from __future__ import annotations

import base64
import codecs
import errno
import inspect
import os
import random
import re
import threading
import time
from binascii import crc_hqx
from collections.abc import Callable, Hashable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import redis.connection
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from redmodel._args import MAX_TTL_SECONDS, flag, integer, not_negative, seconds
from redmodel._errors import (
    CrossSlotError,
    EvictionPolicyError,
    OutcomeUnknownError,
    ServerError,
    ValidationError,
)
from redmodel._plan import (
    SCRIPTS_BY_SHA,
    Batch,
    Command,
    as_eval,
    guard_variant,
    once_variant,
    script,
)

__all__ = [
    "Call",
    "Exchange",
    "Link",
    "ResendPolicy",
    "RestartAttemptError",
    "command_keys",
    "command_slot",
    "cross_slot_error",
    "pack_commands",
    "redis_reply",
    "sendable",
    "server_error",
]

ONCE_COMMAND = script("once_command")
# the commands once_command.lua answers by their value's text beyond 2**53
EXACT_INT_REPLIES = frozenset({"INCR", "INCRBY", "DECR", "DECRBY", "HINCRBY"})
# commands once_command.lua cannot answer as they answer alone, never wrapped (they stay at
# most once, docs/failures.md): BITFIELD's integers can pass 2**53 (a Lua number is a
# double); ZMSCORE's and GEOPOS's arrays hold nulls, which Lua loses under RESP3, beside
# doubles, which RESP2 gives as text
_UNEXACT = frozenset({"BITFIELD", "ZMSCORE", "GEOPOS"})
# read-only commands whose integer replies can pass 2**53 (BITFIELD_RO's i64/u63, a TTL or
# an expiry time set by a raw PEXPIRE far ahead, an XINFO counter moved by XSETID, an
# XPENDING delivery count set by XCLAIM RETRYCOUNT (attack 32I), an
# HLL estimate): never wrapped, as a read needs no write id (its reply is exact);
# a transaction holding one is still exactly once for its writes (docs/failures.md)
BIG_READS = frozenset({"BITFIELD_RO", "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "HTTL",
                       "HPTTL", "HEXPIRETIME", "HPEXPIRETIME", "XINFO", "XPENDING",
                       "PFCOUNT"})
IF_EXISTS = script("if_exists")
GONE = "GONE "  # the error a conditional copy answers when the object is missing
ONCE_FENCE = script("once_fence")
ONCE_PREFIX = "redmodel:once:"
SLOTS = 16384
MAX_REDIRECT_ROUNDS = 32
EVICTION_RECHECK = 1.0
"""Seconds after which a node found with an evicting ``maxmemory-policy`` is asked again
(one ``INFO memory``) before the next exactly-once write to it is refused: an operator who
sets ``noeviction`` need not restart the app. A passing check is kept for the store's life."""

MAX_PENDING_CLEANUP = 4096
"""Commands tidying write-id records a store keeps per node until its next call there;
beyond this the oldest are forgotten (their records expire after ``write_id_ttl``)."""


# ---- the policy -------------------------------------------------------------------------


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if attribute.name == "attempts":
        integer(value, f"ResendPolicy.{attribute.name}", least=1)
    else:
        seconds(value, f"ResendPolicy.{attribute.name}", most=MAX_TTL_SECONDS)


def _not_negative(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    not_negative(value, f"ResendPolicy.{attribute.name}")


def _flag(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    flag(value, f"ResendPolicy.{attribute.name}")


def _record_prefix(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"ResendPolicy.{attribute.name} must be a non-empty str, got "
                              f"{value!r}")
    if "{" in value or "}" in value:
        raise ValidationError(f"ResendPolicy.{attribute.name} must not hold braces "
                              f"({value!r}): on a cluster the record's key carries its own "
                              "hash tag")


@attrs.frozen
class ResendPolicy:
    """How patiently a store sends a batch again (docs/failures.md).

    - ``attempts``: rounds that may fail in all (a connection refused before sending, or a
      reply lost after it) before the store gives up; 1 = never try again.
    - ``backoff_base`` / ``backoff_max`` (seconds): after failed round ``k`` the store sleeps
      a random time in ``[0, min(backoff_max, backoff_base * 2 ** (k - 1))]``.
    - ``deadline`` (seconds): no round starts later than this after the first one.
    - ``write_id_ttl`` (seconds): in exactly-once mode, how long the server keeps a write id
      with its first reply (or its fence); a copy of a write delayed longer than this
      (a server paused with it in its input buffer) is no longer recognised.
    - ``write_id_prefix``: in exactly-once mode, where write ids are kept: keys
      ``<prefix><id>.<n>`` (``<prefix>{<tag>}:<id>.<n>`` on a cluster). Give each ACL user
      its own (``"redmodel:once:shop:"`` with ``~redmodel:once:shop:*``) so that users do
      not share records.
    - ``allow_eviction``: exactly-once mode refuses a server whose ``maxmemory-policy`` may
      evict keys (:class:`~redmodel.EvictionPolicyError`); True accepts that risk (an
      evicted record lets a resend apply its write twice). Only a bool: anything else
      (``"no"`` from a config file) raises ValidationError rather than turn the risk on.

    Only a batch that may be sent twice (a read, a whole save, an update, an expiry) is sent
    again after its reply was lost, or any write in exactly-once mode; a write without a
    write id only after the connection that carried its first copy is killed (the fence:
    ``CLIENT KILL ID``), and a fragile one (a save that keeps the object's expiry, an
    update, an expiry: :attr:`~redmodel._plan.Batch.fragile`) only as a copy that writes
    over an existing object, else OutcomeUnknownError (under a write id in exactly-once
    mode). The fence is retried within ``attempts`` and ``deadline`` like a round.
    Redirections that prove nothing ran (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, LOADING,
    NOSCRIPT) are followed at once and count only against ``deadline``. The client's own
    ``retry`` setting applies inside each round to opening a connection, never to a
    command.
    """

    attempts: int = attrs.field(default=3, validator=_positive)
    backoff_base: float = attrs.field(default=0.05, validator=_not_negative)
    backoff_max: float = attrs.field(default=1.0, validator=_not_negative)
    deadline: float = attrs.field(default=10.0, validator=_positive)
    write_id_ttl: float = attrs.field(default=60.0, validator=_positive)
    write_id_prefix: str = attrs.field(default=ONCE_PREFIX, validator=_record_prefix)
    allow_eviction: bool = attrs.field(default=False, validator=_flag)

    def __attrs_post_init__(self) -> None:
        if self.write_id_ttl <= self.deadline:
            raise ValidationError(
                f"ResendPolicy.write_id_ttl ({self.write_id_ttl} s) must exceed its deadline "
                f"({self.deadline} s): a write id must outlive every copy of its write")

    def backoff(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to sleep after ``failures`` failed rounds ("full jitter")."""
        cap = min(self.backoff_max, self.backoff_base * 2.0 ** min(failures - 1, 60))
        return cap * rand()

    @property
    def write_id_ttl_ms(self) -> int:
        return max(1, round(self.write_id_ttl * 1000))


DEFAULT_POLICY = ResendPolicy()


# ---- commands, keys and slots -------------------------------------------------------------

_NO_KEYS = frozenset({
    "PING", "ECHO", "TIME", "INFO", "SCAN", "SCRIPT", "CLIENT", "CLUSTER", "DBSIZE",
    "FLUSHALL", "FLUSHDB", "CONFIG", "MULTI", "EXEC", "DISCARD", "UNWATCH", "ASKING",
    "READONLY", "READWRITE", "HELLO", "AUTH", "SELECT", "COMMAND", "ACL", "LASTSAVE",
    "ROLE", "WAIT", "FUNCTION", "SLOWLOG", "LATENCY", "DEBUG", "KEYS", "RANDOMKEY",
    "PUBLISH", "SAVE", "BGSAVE", "SWAPDB", "RESET", "QUIT", "MODULE",
})
_ALL_KEYS = frozenset({
    "DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SINTER", "SUNION", "SDIFF",
    "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "PFCOUNT", "PFMERGE",
})
_TWO_KEYS = frozenset({"LMOVE", "BLMOVE", "RPOPLPUSH", "BRPOPLPUSH", "SMOVE", "RENAME",
                       "RENAMENX", "COPY", "ZRANGESTORE", "GEOSEARCHSTORE"})
_ALL_BUT_LAST = frozenset({"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})
_NUMKEYS_FIRST = frozenset({"ZUNION", "ZINTER", "ZDIFF", "SINTERCARD", "LMPOP", "ZMPOP",
                            "ZINTERCARD"})
_SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})


def _name(command: Command) -> str:
    return _text(command[0]).upper()


def _count(arg: Any) -> int | None:
    """A numkeys argument as the server reads it: a decimal text of a whole number
    without sign, spaces or leading zeros; None for anything else, which the server
    refuses (a raw command's: attack 27z F1, no bare ValueError naming its keys)."""
    text = arg if isinstance(arg, bytes) else str(arg).encode()
    if not text.isdigit() or (text[:1] == b"0" and len(text) > 1) or len(text) > 18:
        return None
    return int(text)


def command_keys(command: Command) -> tuple[Sequence[Any], int | None]:
    """(the keys of ``command``, how many of its first arguments are exactly its keys --
    None when its keys are not one leading run)."""
    name = _name(command)
    if name in _SCRIPTS:
        n = _count(command[2]) if len(command) > 2 else None
        return command[3 : 3 + (n or 0)], None
    if len(command) < 2 or name in _NO_KEYS:
        return (), 0
    if name in _ALL_KEYS:
        return command[1:], len(command) - 1
    if name in _TWO_KEYS:
        return command[1:3], 2
    if name in _ALL_BUT_LAST:
        return command[1:-1], len(command) - 2
    if name in ("MSET", "MSETNX"):
        return command[1::2], None
    if name in _NUMKEYS_FIRST:
        n = _count(command[1])
        return command[2 : 2 + (n or 0)], None
    if name in ("ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"):
        n = _count(command[2]) if len(command) > 2 else None
        return (command[1], *command[3 : 3 + (n or 0)]), None
    if name in ("MEMORY", "OBJECT"):
        return command[2:3], None
    return command[1:2], 1


def sendable(wire: Sequence[Command], every: bool = False) -> list[Command]:
    """``wire`` with every str argument that is not ASCII as its UTF-8 bytes under
    ``surrogateescape``: the str form of an id holds U+DC80..U+DCFF for id bytes that are
    not UTF-8 (docs/models.md, "Ids and keys"), and so do the keys built from it; they are
    sent as those very bytes. The slow path of a pack (strict UTF-8 failed); any other
    lone surrogate is refused at its entry point, so one here raises ValidationError naming
    the command's key before anything of the batch is sent. ``every``: ASCII ones too (a
    client whose encoding is not UTF-8: see :func:`pack_commands`)."""
    out: list[Command] = []
    for command in wire:
        try:
            out.append(tuple(a.encode("utf-8", "surrogateescape")
                             if a.__class__ is str and (every or not a.isascii()) else a
                             for a in command))
        except UnicodeEncodeError:
            keys = command_keys(command)[0]
            raise ValidationError(
                f"cannot send {_name(command)}: an argument holds a lone surrogate that no "
                "bytes stand for", key=ascii(keys[0]) if keys else None) from None
    return out


_UTF8_NAMES: dict[str, bool] = {}


def utf8_encoding(encoding: Any) -> bool:
    """Whether ``encoding`` (a redis-py client's ``encoding=``) names UTF-8."""
    found = _UTF8_NAMES.get(encoding)
    if found is None:
        try:
            found = codecs.lookup(str(encoding)).name == "utf-8"
        except LookupError:
            found = False
        if len(_UTF8_NAMES) < 64:
            _UTF8_NAMES[encoding] = found
    return found


def pack_commands(conn: Any, wire: Sequence[Command]) -> Any:
    """``conn.pack_commands(wire)`` (redis-py's packer, whose encoder is strict), taking
    the str form of undecodable id bytes too (:func:`sendable`, only when strict fails).

    Every str redmodel sends (a key, an id, a command name, a script's source) is sent as
    its UTF-8 bytes (``surrogateescape``: docs/models.md "Ids and keys"), whatever the
    client's ``encoding=``: on a client of another encoding (latin-1, utf-16) they are
    made bytes here, so no encoder of redis-py's chooses them (its asyncio connections
    encode str by ``encoding=``, its sync ones with hiredis as UTF-8: without this rule
    a Store and an AsyncStore on one client's settings would address different keys)."""
    if not utf8_encoding(getattr(getattr(conn, "encoder", None), "encoding", "utf-8")):
        return conn.pack_commands(sendable(wire, every=True))
    try:
        return conn.pack_commands(wire)
    except UnicodeEncodeError:
        return conn.pack_commands(sendable(wire))


def key_slot(key: Any) -> int:
    raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else bytes(key)
    start = raw.find(b"{")
    if start > -1:
        end = raw.find(b"}", start + 1)
        if end > -1 and end != start + 1:
            raw = raw[start + 1 : end]
    return crc_hqx(raw, 0) % SLOTS


def command_slot(command: Command) -> int | None:
    """The slot every key of ``command`` is in (None without keys); CrossSlotError if its
    keys are in several (redis-py refused those before sending, so do we)."""
    keys, _ = command_keys(command)
    if not keys:
        return None
    slot = key_slot(keys[0])
    for key in keys[1:]:
        if key_slot(key) != slot:
            raise cross_slot_error([str(_text(k)) for k in keys])
    return slot


def batch_keys(batch: Batch) -> list[str]:
    """The keys a batch names: its declared keys, and the KEYS of its script calls."""
    keys = [_text(k) for k in batch.keys]
    for cmd in batch.commands:
        if cmd and cmd[0] in ("EVALSHA", "EVAL") and len(cmd) > 2:
            keys.extend(k for k in map(_text, cmd[3 : 3 + int(cmd[2])]) if k not in keys)
    return keys


_BUCKET = re.compile(r"^(.*?)\{([0-9]+)\}")


def cross_slot_error(keys: Sequence[str]) -> CrossSlotError:
    """A clear CrossSlotError, with the advice that fits: an indexed model (its index keys
    are under ``%idx``) refuses ``hash_tag`` and takes ``buckets``."""
    buckets = [_BUCKET.match(k) for k in keys]
    if keys and all(buckets):
        found = sorted({(m.group(1), int(m.group(2))) for m in buckets if m})
        named = ", ".join(f"{p}{{{b}}}" for p, b in found[:8])
        advice = ("These keys are tagged as the buckets of a model declared with buckets=N "
                  f"({named}): one transaction or atomic command can only touch the "
                  "objects of one bucket (its keys are in one slot), so a transaction over "
                  "objects in several buckets is refused. Group the writes by bucket (the "
                  "{N} in each key) into separate transactions, or write them without a "
                  "transaction (each object's write, with its index entries, is atomic on "
                  "its own). (If your own tag function made these tags, give objects that "
                  "change together one tag.)")
    elif any("%idx" in k for k in keys):
        advice = ("The model has indexes: declare it with buckets=N (e.g. buckets=16), which "
                  "keeps each object and its bucket's index entries in one slot (hash_tag "
                  "is refused for indexed models)")
    else:
        advice = ("Declare the model with hash_tag=True (every key of one object in one "
                  "slot) or a hash_tag function (objects that change together in one slot)")
    return CrossSlotError(
        f"these keys are in different cluster hash slots and cannot be used in one atomic "
        f"command: {list(keys)[:5]}. {advice}")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def describe(command: Command) -> str:
    """``EVALSHA incr_fields`` for a known script, else the command's name."""
    name = _name(command)
    if name == "EVALSHA":
        found = SCRIPTS_BY_SHA.get(_text(command[1]))
        if found is not None:
            return f"EVALSHA {found.name}"
    return name


# ---- exactly-once: write ids ------------------------------------------------------------

_TAGS: list[str] = []
_TAGS_LOCK = threading.Lock()
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def slot_tag(slot: int) -> str:
    """A short hash tag (letters and digits only) whose slot is ``slot``, so a write id's key
    lives in the slot of its write, whatever braces the write's own keys hold. The table of
    all 16384 is built once, on first use (about 0.1 s)."""
    if not _TAGS:
        with _TAGS_LOCK:
            if not _TAGS:
                table: list[str | None] = [None] * SLOTS
                left, i = SLOTS, 0
                while left:
                    n, text = i, ""
                    while True:
                        text = _DIGITS[n % 36] + text
                        n //= 36
                        if not n:
                            break
                    slot_of = crc_hqx(text.encode(), 0) % SLOTS
                    if table[slot_of] is None:
                        table[slot_of] = text
                        left -= 1
                    i += 1
                tags = [t for t in table if t is not None]
                # one C-level slice assignment, under the GIL: another thread sees the
                # table empty or whole (an extend from a generator fills it item by item,
                # and a reader that saw it non-empty could index past its end)
                _TAGS[:] = tags
    return _TAGS[slot]


def new_write_id() -> str:
    """16 random URL-safe characters (96 bits, from os.urandom: unique across processes,
    forks and machines)."""
    return base64.urlsafe_b64encode(os.urandom(12)).decode("ascii")


def once_key(slot: int | None, write_id: str, prefix: str = ONCE_PREFIX) -> str:
    """Where the server keeps a write id: ``<prefix><id>`` on one server,
    ``<prefix>{<tag>}:<id>`` in the write's slot on a cluster (the prefix is
    ``redmodel:once:`` unless the policy names another)."""
    if slot is None:
        return prefix + write_id
    return f"{prefix}{{{slot_tag(slot)}}}:{write_id}"


def eviction_policy(reply: Any) -> str | None:
    """The ``maxmemory_policy`` an ``INFO memory`` reply names (None if it names none)."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    if not isinstance(reply, str):
        return None
    for line in reply.splitlines():
        if line.startswith("maxmemory_policy:"):
            return line.split(":", 1)[1].strip()
    return None


def resp_version(client: Any) -> int:
    """The protocol (2 or 3) a redis-py client's connections speak (sync or asyncio, one
    server or a cluster): its ``protocol=`` option, else redis-py's default."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if kwargs is None:
        kwargs = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", None)
    default = int(getattr(redis.connection, "DEFAULT_RESP_VERSION", 3))
    protocol = (kwargs or {}).get("protocol")
    try:
        return int(protocol) if protocol is not None else default
    except (TypeError, ValueError):
        return default


def wrap(command: Command, key: str, ttl_ms: int, resp: int = 3) -> Command | None:
    """``command`` under the write id stored at ``key``: one of our scripts becomes its
    ``+once`` variant, a plain command with leading keys runs inside ``once_command.lua``
    (answering in protocol ``resp``, the client's: its reply has the command's own
    shape). None when it cannot be wrapped (an unknown script, a command without keys or
    whose keys are not its first arguments, a write whose integers a Lua number cannot
    hold): it stays at most once."""
    name = _name(command)
    if name == "EVALSHA":
        variant = once_variant(_text(command[1])) if len(command) > 1 else None
        if variant is None:
            return None
        n = _count(command[2]) if len(command) > 2 else None
        if n is None:
            return None  # the server refuses it: sent as given
        return ("EVALSHA", variant.sha, n + 1, key, *command[3 : 3 + n], ttl_ms,
                *command[3 + n :])
    if name in _SCRIPTS or name in _UNEXACT:
        return None
    _, leading = command_keys(command)
    if not leading:
        return None
    return ("EVALSHA", ONCE_COMMAND.sha, leading + 1, key, *command[1 : 1 + leading], ttl_ms,
            "3" if resp == 3 else "2", command[0], *command[1 + leading :])


def guard(command: Command, objects: Sequence[str] = (), resp: int = 3, holds: str = ""
          ) -> Command | None:
    """The conditional copy of a fragile write (:attr:`Batch.fragile`), sent again after
    its first copy's reply was lost: it writes only if the objects it writes (``objects``,
    else the command's first key) all still exist and hold the type it writes (``holds``,
    else the command's or script's own: ``_GUARD_TYPES``), else answers the GONE error with
    nothing written. One of our scripts becomes its ``+guard`` variant, a plain command
    with leading keys runs inside ``if_exists.lua``; None for anything else (never sent
    again)."""
    name = _name(command)
    if name == "EVALSHA":
        variant = guard_variant(_text(command[1])) if len(command) > 2 else None
        n = _count(command[2]) if variant is not None else None
        if variant is None or not n:
            return None
        needed = list(objects) or [command[3]]
        held = holds or _GUARD_TYPES.get(variant.name.partition("+")[0], "")
        return ("EVALSHA", variant.sha, n, *command[3 : 3 + n], len(needed), held, *needed,
                *command[3 + n :])
    if name in _SCRIPTS:
        return None
    _, leading = command_keys(command)
    if not leading:
        return None
    needed = list(objects) or [command[1]]
    return ("EVALSHA", IF_EXISTS.sha, leading, *command[1 : 1 + leading], len(needed),
            holds or _GUARD_TYPES.get(name, ""), *needed, "3" if resp == 3 else "2", command[0],
            *command[1 + leading :])


# The type a fragile write's objects hold when its conditional copy may go on (guard_head.lua
# probes it; another type there is GONE: the first copy may have run, the object expired,
# and another client wrote another type at its key). By script name or command; others: any.
_GUARD_TYPES = {
    "HSET": "hash", "SET": "string", "hash_save": "hash", "hash_update": "hash",
    "index_write": "hash", "index_write_many": "hash", "flat_save": "string",
    "flat_save_many": "string", "flat_expire": "string",
}


# ---- errors -----------------------------------------------------------------------------

_SERVER_ERRORS: dict[type, type[ServerError]] = {ResponseError: ServerError}
_SERVER_ERRORS_LOCK = threading.Lock()


def _plain_init(kind: type) -> bool:
    """Whether ``kind`` takes its message as Exception does (AskError and ClusterDownError
    parse theirs, so a ServerError cannot also be one of them)."""
    for cls in kind.__mro__:
        init = vars(cls).get("__init__")
        if init is None or cls in (BaseException, object):
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        if params and params[0].kind is not inspect.Parameter.VAR_POSITIONAL:
            return False
    return True


def _server_error_class(kind: type) -> type[ServerError]:
    if not _plain_init(kind):
        return ServerError
    found = _SERVER_ERRORS.get(kind)
    if found is None:
        with _SERVER_ERRORS_LOCK:
            found = _SERVER_ERRORS.get(kind)
            if found is None:
                # also an instance of redis-py's own class (OutOfMemoryError,
                # NoPermissionError, ...), so handlers written for redis-py still match
                found = type("ServerError", (ServerError, kind), {"__module__": "redmodel"})
                _SERVER_ERRORS[kind] = found
    return found


def server_error(error: BaseException, command: Command) -> BaseException:
    """The redmodel error for an error reply to ``command``: :class:`ServerError` naming its
    keys (also an instance of redis-py's class for that reply), CrossSlotError for
    CROSSSLOT; anything that is not a server reply is returned unchanged."""
    if isinstance(error, ServerError) or not isinstance(error, ResponseError):
        return error
    keys = tuple(dict.fromkeys(_text(k) for k in command_keys(command)[0]))
    if isinstance(error, ClusterCrossSlotError):
        return cross_slot_error(keys)
    reply = str(error)
    code = getattr(error, "status_code", None)  # the word redis-py's parser took off
    if code and not reply.startswith(code):
        reply = f"{code} {reply}"  # the server's whole text (MOVED, ASK, OOM, NOPERM, ...)
    cls = _server_error_class(type(error))
    made = cls(reply, keys=keys, command=describe(command))
    made.__cause__ = error
    return made


def refused(error: BaseException) -> bool:
    """Whether opening a connection failed because nothing listens at the address (TCP
    ECONNREFUSED), as redis-py reports it (its ConnectionError raised while handling the
    OSError)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return f"Error {errno.ECONNREFUSED} connecting" in str(error)


class RestartAttemptError(RedisConnectionError):
    """Internal: a transaction attempt cannot go on, and nothing of it was applied (its
    connection broke before EXEC, its slot moved, the server forgot its scripts, or its
    write was fenced). The retry loop runs the function again; a single attempt raises
    ``cause``. ``moved``/``reinit`` say what the shell refreshes first."""

    def __init__(self, cause: BaseException, *, conflict_like: bool = False) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.conflict_like = conflict_like


# ---- one exchange -----------------------------------------------------------------------

_PENDING: Any = object()

# error replies that prove the command did not run, and what to do about each
_NOSCRIPT, _MOVED, _ASK, _TRYAGAIN, _DOWN, _READONLY, _LOADING = range(7)
_REDIRECTS: dict[type, int] = {
    NoScriptError: _NOSCRIPT,
    MovedError: _MOVED,
    AskError: _ASK,
    TryAgainError: _TRYAGAIN,
    ClusterDownError: _DOWN,
    MasterDownError: _DOWN,
    ReadOnlyError: _READONLY,
    BusyLoadingError: _LOADING,
}
_PAUSE = {_TRYAGAIN: 0.05, _DOWN: 0.1, _READONLY: 0.05, _LOADING: 0.1}


class Link:
    """What one store's transport remembers between batches (no I/O): its policy and mode,
    the scripts each node has loaded, and how the shell finds a cluster's nodes.

    ``locate(slot)`` gives the primary of a slot, ``default()`` a node for keyless
    commands, ``node_at(host, port)`` the node an ASK names, ``node_key(node)`` a hashable
    name; all four are plain lookups in the client's slot map (None on one server)."""

    def __init__(
        self,
        *,
        policy: ResendPolicy = DEFAULT_POLICY,
        exactly_once: bool = False,
        cluster: bool = False,
        locate: Callable[[int], Any] | None = None,
        default: Callable[[], Any] | None = None,
        node_at: Callable[[str, int], Any] | None = None,
        node_key: Callable[[Any], Hashable] | None = None,
        resp: int = 3,
    ) -> None:
        self.policy = policy
        self.resp = resp  # the protocol the client speaks (see wrap)
        self.exactly_once = exactly_once
        self.cluster = cluster
        self.locate = locate
        self.default = default
        self.node_at = node_at
        self.node_key: Callable[[Any], Hashable] = node_key or (lambda node: None)
        self.loaded: dict[Hashable, set[str]] = {}
        self.eval_only: set[Hashable] = set()  # nodes that refused SCRIPT LOAD
        # exactly-once: each node's maxmemory-policy once looked at (None: INFO refused)
        self.evictions: dict[Hashable, str | None] = {}
        self.evictions_seen: dict[Hashable, float] = {}  # when each was looked at
        # exactly-once: commands tidying records, sent with the next call to their node
        self.pending: dict[Hashable, list[Command]] = {}
        self._pending_lock = threading.Lock()

    def ask_eviction_again(self, name: Hashable) -> bool:
        """Whether node ``name`` must be asked its policy (again): never asked, or found
        evicting at least :data:`EVICTION_RECHECK` seconds ago."""
        if name not in self.evictions:
            return True
        if self.evictions[name] in (None, "noeviction") or self.policy.allow_eviction:
            return False
        return time.monotonic() - self.evictions_seen.get(name, 0.0) >= EVICTION_RECHECK

    def leave(self, name: Hashable, commands: Sequence[Command]) -> None:
        """Keep ``commands`` for the next call to node ``name``."""
        if not commands:
            return
        with self._pending_lock:
            waiting = self.pending.setdefault(name, [])
            waiting.extend(commands)
            if len(waiting) > MAX_PENDING_CLEANUP:
                del waiting[: len(waiting) - MAX_PENDING_CLEANUP]

    def take(self, name: Hashable) -> list[Command]:
        """The commands kept for node ``name`` (now the caller's to send)."""
        if not self.pending:
            return []
        with self._pending_lock:
            return self.pending.pop(name, [])


class Call:
    """One write to one node in one round: ``wire`` is sent as one buffer and answers
    ``len(wire)`` replies; the shell fills ``replies`` (error replies as exception
    objects), ``failure`` (the connection error, if any) and ``sent`` (whether any byte of
    it may have left). ``packed``: ``wire`` as RESP bytes already (its batch's
    :attr:`~redmodel._plan.Batch.packed`, when ``wire`` is that batch's commands
    unchanged), else None: the shell packs ``wire``."""

    __slots__ = ("atomic", "check", "cleanup", "conn_id", "evals", "failure", "fence", "head",
                 "indices", "inner", "kill", "learn", "loads", "node", "packed", "pinned",
                 "replies", "sent", "wire")

    def __init__(self, node: Any, wire: Sequence[Command], indices: list[int], loads: list[str],
                 head: int, atomic: bool, pinned: bool = False,
                 fence: list[tuple[list[int], list[str]]] | None = None,
                 evals: list[str] | None = None) -> None:
        self.evals = evals or []
        self.inner: list[str] = []  # scripts SCRIPT LOADed inside MULTI (atomic_scripts)
        self.node = node
        self.wire = wire
        self.indices = indices
        self.loads = loads
        self.head = head
        self.atomic = atomic
        self.pinned = pinned
        self.fence = fence
        self.replies: list[Any] = []
        self.failure: BaseException | None = None
        self.sent = False
        self.cleanup: list[Command] = []  # tidying of records, ahead of the batch's own
        self.check = False  # an INFO asking the node's eviction policy
        # writes that may be sent again: the shell learns the server-side id of the
        # connection that carries them (``conn_id``, None when unknown) so that a lost
        # reply can be fenced (CLIENT KILL ID) before anything is sent again
        self.learn = False
        self.conn_id: int | None = None
        self.kill: list[tuple[int, list[int]]] | None = None  # a fence: (id, indices) each
        self.packed: Sequence[bytes] | None = None


_SEND, _FENCE, _DONE, _KILL = range(4)


class Exchange:
    """One batch on its way: the shell loops ``calls()`` -> send and read them ->
    ``settle(calls)`` (sleep ``pause`` seconds, refresh the slot map if ``moved`` or
    ``reinit``) until ``calls()`` returns None, then takes :meth:`result`.

    ``pinned`` is for a transaction: every call goes on the session's one connection, and
    whatever would need a new connection or another node raises :class:`RestartAttemptError`
    (nothing of the attempt was applied) instead of being sent again.
    """

    # state that most exchanges never change lives on the class (cheap to create one)
    slots: list[int | None] | None = None
    write_id: str | None = None
    failures = 0
    redirect_rounds = 0
    last_failure: BaseException | None = None
    last_redirect: BaseException | None = None
    conflict = False
    pause = 0.0
    reinit = False
    restart = False
    _unsafe: frozenset[int] | None = None
    _reads: frozenset[int] | None = None
    _maybe: set[int] | None = None
    _unfenced: set[int] | None = None
    _ask: dict[int, Any] | None = None
    # the fragile writes (Batch.fragile), and those sent again as conditional copies
    _fragile: frozenset[int] = frozenset()
    _guarded: set[int] | None = None
    _clean = False  # every reply came in one round, none an error
    _checking = False  # this round asks nodes their eviction policy
    once: Mapping[int, str] = MappingProxyType({})
    # writes sent whose replies were lost, still to be fenced: (node, connection id,
    # indices) each; then the exchange sends them again, or gives up (``_kill_give_up``)
    kills: list[tuple[Any, int, list[int]]] | None = None
    kill_failures = 0
    # rounds in which a command under a write id was sent and its reply lost (how many
    # copies of it went out: OutcomeUnknownError's message says so)
    copies_lost = 0
    _kill_give_up = False
    _kill_pause = 0.0
    # writes of a shared round (Batch.shared) whose outcome cannot be settled, set aside
    # while the round's write-id writes are settled (:meth:`_defer`), and why
    _deferred: list[int] | None = None
    _deferred_fence: BaseException | None = None

    def __init__(self, batch: Batch, link: Link, *, pinned: bool = False,
                 node: Any = None) -> None:
        self.batch = batch
        self.link = link
        self.pinned = pinned
        self.node = node  # the pinned node, or the target of a node-wide batch
        commands = batch.commands
        n = len(commands)
        self.wire: Sequence[Command] = commands
        self.replies: list[Any] = [_PENDING] * n
        self.todo: list[int] = list(range(n))
        self.started = time.monotonic()
        self.phase = _SEND
        self.moved: list[BaseException] = []
        if link.cluster and batch.target is None:
            self.slots = [command_slot(c) for c in commands]
            if batch.atomic or pinned:
                found = {s for s in self.slots if s is not None}
                if len(found) > 1:
                    raise cross_slot_error([_text(k) for c in commands
                                            for k in command_keys(c)[0]])
        if batch.fragile is not False:
            self._fragile = frozenset(batch.fragile_commands())
        if link.exactly_once and batch.write:
            unsafe = batch.unsafe_commands(True)
            if unsafe:
                self._wrap(unsafe)

    @property
    def unsafe(self) -> frozenset[int]:
        """The commands that must never be sent twice (computed when first needed)."""
        if self._unsafe is None:
            self._unsafe = frozenset(self.batch.unsafe_commands(self.link.exactly_once))
        return self._unsafe

    @property
    def reads(self) -> frozenset[int]:
        """The commands that change nothing (:meth:`Batch.read_commands`): a lost reply of
        one is sent again with no fence, and is never an unknown outcome (computed when
        first needed)."""
        if self._reads is None:
            self._reads = frozenset(self.batch.read_commands())
        return self._reads

    @property
    def maybe_applied(self) -> set[int]:
        """Commands sent whose replies were lost (they may have been applied)."""
        if self._maybe is None:
            self._maybe = set()
        return self._maybe

    @property
    def unfenced(self) -> set[int]:
        """Commands that may be sent twice (no write id: sent again only after a fence)
        whose latest copy's reply was lost and whose connection was not fenced (yet): a
        copy of each may still land later (``BatchOutcome.unfenced``)."""
        if self._unfenced is None:
            self._unfenced = set()
        return self._unfenced

    @property
    def ask(self) -> dict[int, Any]:
        """Commands an ASK sent to another node, for their next round."""
        if self._ask is None:
            self._ask = {}
        return self._ask

    # ---- exactly-once ----------------------------------------------------------------

    def _wrap(self, indices: Sequence[int]) -> None:
        commands = self.batch.commands
        wire = list(commands)
        write_id = new_write_id()
        ttl = self.link.policy.write_id_ttl_ms
        prefix = self.link.policy.write_id_prefix
        once: dict[int, str] = {}
        resp = self.link.resp
        reads = [i for i in indices if _name(commands[i]) in BIG_READS]
        if reads:  # reads need no write id: sent as they are, answered exactly
            indices = [i for i in indices if i not in reads]
            self._unsafe = frozenset(indices)
        for i in indices:
            slot = self.slots[i] if self.slots is not None else None
            key = once_key(slot, f"{write_id}.{i}", prefix)
            wrapped = wrap(commands[i], key, ttl, resp)
            if wrapped is not None and (slot is not None or not self.link.cluster):
                wire[i] = wrapped
                once[i] = key
        if (self.batch.atomic or self.pinned) and len(once) != len(indices):
            return  # a unit only some of whose commands carry an id cannot be settled
        if once:
            self.wire, self.once, self.write_id = wire, once, write_id

    def _resendable(self, i: int) -> bool:
        if i in self.once:
            return True
        if i in self.unsafe:
            return False
        # a fragile write goes again only as its conditional copy (guard)
        return not self._fragile or i not in self._fragile or (
            not self.batch.atomic and self._guard(i) is not None)

    def _objects(self, i: int) -> list[str]:
        """The objects fragile write ``i`` writes (:attr:`Batch.objects`, else its first
        key), as text."""
        objects = self.batch.objects
        if objects and objects[i]:
            return [_text(k) for k in objects[i]]
        return [_text(k) for k in command_keys(self.batch.commands[i])[0][:1]]

    def _guard(self, i: int) -> Command | None:
        objects = self.batch.objects
        return guard(self.batch.commands[i], objects[i] if objects else (), self.link.resp,
                     self.batch.holds)

    def _copy(self, i: int) -> Command:
        """What command ``i`` is sent as: its conditional copy (:func:`guard`) once a copy
        of a fragile write lost its reply (its first copy may have run), else as wrapped."""
        if self._fragile and i in self._fragile and self._maybe and i in self._maybe \
                and i not in self.once:
            guarded = self._guard(i)
            assert guarded is not None  # (_resendable)
            if self._guarded is None:
                self._guarded = set()
            self._guarded.add(i)
            return guarded
        return self.wire[i]

    def _node_of(self, i: int) -> Any:
        """The node command ``i`` goes to (raises when the slot map has none)."""
        if self.pinned or not self.link.cluster:
            return self.node
        assert self.link.locate is not None and self.slots is not None
        slot = self.slots[i]
        assert slot is not None
        return self.link.locate(slot)

    def _unchecked(self) -> list[Any]:
        """The nodes this exchange's write ids go to whose eviction policy the store has
        not looked at yet (or found evicting over EVICTION_RECHECK seconds ago); raises
        EvictionPolicyError for one it found evicting more recently."""
        link = self.link
        if not link.cluster or self.pinned:
            found = [self.node]
        else:
            found = []
            for i in self.once:
                try:
                    found.append(self._node_of(i))
                except Exception:  # no node for the slot: the send round finds out
                    continue
        nodes: dict[Hashable, Any] = {}
        for node in found:
            name = link.node_key(node)
            if link.ask_eviction_again(name):
                nodes[name] = node
            else:
                self._refuse(link.evictions[name], node)
        return list(nodes.values())

    def _refuse(self, policy: str | None, node: Any) -> None:
        if policy not in (None, "noeviction") and not self.link.policy.allow_eviction:
            assert policy is not None
            self.phase = _DONE
            raise EvictionPolicyError(policy, _node_name(node))

    def _check_calls(self, nodes: Sequence[Any]) -> list[Call]:
        """``INFO memory`` to each node, before the first write id goes there: a node whose
        policy may evict records is refused (:meth:`_settle_check`)."""
        self._checking = True
        calls = []
        for node in nodes:
            call = Call(node, [("INFO", "memory")], [], [], 0, False)
            call.check = True
            calls.append(call)
        return calls

    def _settle_check(self, calls: Sequence[Call]) -> float:
        self._checking = False
        link = self.link
        failed = False
        for call in calls:
            if not call.replies:  # the INFO was lost: nothing of the batch went out
                assert call.failure is not None
                failed = True
                self._failed(call)
                continue
            reply = call.replies[0]
            policy = None if isinstance(reply, Exception) else eviction_policy(reply)
            link.evictions[link.node_key(call.node)] = policy  # None: refused (ACL), unknown
            link.evictions_seen[link.node_key(call.node)] = time.monotonic()
            self._refuse(policy, call.node)
        if not failed:
            return 0.0
        self.failures += 1
        policy_ = link.policy
        pause = policy_.backoff(self.failures)
        if self.failures >= policy_.attempts or \
                time.monotonic() - self.started + pause > policy_.deadline:
            self.phase = _DONE
            if self._deferred:
                self._unknown([])
            assert self.last_failure is not None
            raise self.last_failure  # nothing of the batch was sent: safe to call again
        return pause

    def _retire(self) -> None:
        """The caller has every reply: the records of this exchange's write ids are of no
        use to anyone now (write ids belong to one exchange). A write sent once has no
        copy left anywhere: its record is deleted. A write sent more than once may still
        have a copy on its way (held by a paused server or a stalled network): its record
        becomes a bare mark, its expiry kept, that such a copy finds and applies nothing.
        Both go with the store's next call to that node (none is sent for them alone)."""
        if self.conflict:
            return  # EXEC did not run: no record was written
        link = self.link
        maybe = self._maybe or ()
        by_node: dict[Hashable, tuple[dict[int | None, list[str]], list[Command]]] = {}
        for i, key in self.once.items():
            if self.replies[i] is _PENDING:
                continue
            try:
                node = self._node_of(i)
            except Exception:  # no node for it now: the record expires on its own
                continue
            dels, marks = by_node.setdefault(link.node_key(node), ({}, []))
            if i in maybe:
                marks.append(("SET", key, "D", "XX", "KEEPTTL"))
            else:
                dels.setdefault(self.slots[i] if self.slots is not None else None,
                                []).append(key)
        for name, (dels, marks) in by_node.items():
            link.leave(name, [("DEL", *keys) for keys in dels.values()] + marks)

    # ---- building a round ------------------------------------------------------------

    def calls(self) -> list[Call] | None:
        """This round's calls, or None when the exchange is over."""
        if self.pause or self.moved or self.reinit:
            self.pause, self.moved, self.reinit = 0.0, [], False
        if self.phase == _SEND:
            if self.once:
                unchecked = self._unchecked()
                if unchecked:
                    return self._check_calls(unchecked)
            return self._send_calls()
        if self.phase == _FENCE:
            return self._fence_calls()
        if self.phase == _KILL:
            return self._kill_calls()
        return None

    def _where(self, i: int) -> Any:
        if self.pinned or not self.link.cluster:
            return self.node
        asked = self._ask.pop(i, None) if self._ask else None
        if asked is not None:
            return asked
        if self.batch.target is not None:
            return self.batch.target
        assert self.slots is not None
        slot = self.slots[i]
        if slot is None:
            assert self.link.default is not None
            return self.link.default()
        assert self.link.locate is not None
        return self.link.locate(slot)

    def _send_calls(self) -> list[Call]:
        link = self.link
        if not link.cluster or self.pinned:
            return [self._call(self.node, self.todo)]
        groups: dict[Hashable, tuple[Any, list[int]]] = {}
        calls: list[Call] = []
        unplaced: list[int] = []
        for i in ([self.todo[0]] if self.batch.atomic else self.todo):
            try:
                node = self._where(i)
            except Exception as e:  # no node for this slot in the map: refresh it, try again
                self.last_failure = e
                self.reinit = True
                unplaced.append(i)
                continue
            if isinstance(node, _Asked):  # ASKING holds for one command: a call of its own
                calls.append(self._call(node, self.todo if self.batch.atomic else [i]))
                continue
            name = link.node_key(node)
            if name not in groups:
                groups[name] = (node, [])
            groups[name][1].append(i)
        if self.batch.atomic:
            if groups:
                node, _ = next(iter(groups.values()))
                calls.append(self._call(node, self.todo))
            elif unplaced:
                unplaced = self.todo
        else:
            calls.extend(self._call(node, indices) for node, indices in groups.values())
        if unplaced:
            placeholder = Call(None, [], unplaced, [], 0, False)
            placeholder.failure = self.last_failure
            calls.append(placeholder)  # nothing sent: judged as a failure before sending
        return calls

    def _loads(self, node: Any, commands: Sequence[Command]) -> list[str]:
        loads: list[str] = []
        loaded: set[str] | None = None
        looked = False
        for command in commands:
            if command[0] == "EVALSHA":
                if not looked:
                    loaded, looked = self.link.loaded.get(self.link.node_key(node)), True
                sha = command[1]
                if (loaded is None or sha not in loaded) and sha not in loads \
                        and sha in SCRIPTS_BY_SHA:
                    loads.append(sha)
        return loads

    def _scripts(self, node: Any, commands: Sequence[Command]
                 ) -> tuple[Sequence[Command], list[str], list[str]]:
        """(the commands, the scripts to SCRIPT LOAD first, the scripts sent as EVAL): a node
        that refused SCRIPT LOAD (an ACL user with +eval +evalsha only) gets its unknown
        scripts as EVAL, which caches them too."""
        loads = self._loads(node, commands)
        if not loads or self.link.node_key(node) not in self.link.eval_only:
            return commands, loads, []
        unknown = set(loads)
        return ([as_eval(c) if c[0] == "EVALSHA" and c[1] in unknown else c
                 for c in commands], [], loads)

    def _atomic_scripts(self, node: Any, commands: Sequence[Command]
                        ) -> tuple[Sequence[Command], list[str]]:
        """(the commands, the scripts to SCRIPT LOAD inside MULTI, before them) for a
        MULTI/EXEC: every script of the unit is loaded inside it, whatever the store believes
        the node has, so that a script cache emptied meanwhile (SCRIPT FLUSH, a restart, a
        failover to a replica) cannot make an EVALSHA fail inside EXEC while the rest of the
        unit is applied. A node that refuses SCRIPT LOAD gets EVAL with the source instead.
        (A script the store believes the node lacks is also loaded before MULTI, by
        :meth:`_scripts`, for a server that would check EVALSHA when it is queued.)"""
        shas = list(dict.fromkeys(c[1] for c in commands
                                  if c[0] == "EVALSHA" and c[1] in SCRIPTS_BY_SHA))
        if not shas:
            return commands, []
        if self.link.node_key(node) in self.link.eval_only:
            return [as_eval(c) if c[0] == "EVALSHA" and c[1] in SCRIPTS_BY_SHA else c
                    for c in commands], []
        return commands, shas

    def _call(self, node: Any, indices: list[int]) -> Call:
        wire = self.wire
        if self._fragile and self._maybe:  # a conditional copy among them: not packed
            wire = [self._copy(i) for i in range(len(wire))]
        commands = wire if len(indices) == len(wire) else [wire[i] for i in indices]
        asked = isinstance(node, _Asked)
        if asked:
            node = node.node
        atomic = self.batch.atomic
        inner: list[str] = []
        commands, loads, evals = self._scripts(node, commands)
        if atomic:  # and again inside MULTI: see _atomic_scripts
            commands, inner = self._atomic_scripts(node, commands)
        link = self.link
        cleanup = link.take(link.node_key(node)) if link.pending and not self.pinned else []
        if not (loads or asked or atomic or cleanup):
            call = Call(node, commands, indices, loads, 0, False, pinned=self.pinned,
                        evals=evals)
            call.learn = self._learns(indices)
            packed = self.batch.packed
            if packed is not None and not evals and wire is self.batch.commands:
                # the batch's own commands, none rewritten: their RESP is made already
                call.packed = packed if commands is wire else [packed[i] for i in indices]
            return call
        out: list[Command] = [("SCRIPT", "LOAD", SCRIPTS_BY_SHA[sha].source) for sha in loads]
        out.extend(cleanup)  # after the loads: their replies come first (_note_loads)
        if asked:
            out.append(("ASKING",))
        head = len(out)  # replies before the batch's own (MULTI's is the batch's first)
        if atomic:
            out.append(("MULTI",))
            out.extend(("SCRIPT", "LOAD", SCRIPTS_BY_SHA[sha].source) for sha in inner)
        out.extend(commands)
        if atomic:
            out.append(("EXEC",))
        call = Call(node, out, indices, loads, head, atomic, pinned=self.pinned, evals=evals)
        call.inner = inner
        call.cleanup = cleanup
        call.learn = self._learns(indices)
        return call

    def _learns(self, indices: list[int]) -> bool:
        """Whether a call carries writes that may be sent again without a write id (not
        reads: those need no fence): its connection's server-side id must be known, to
        fence them if their reply is lost."""
        if not self.batch.write:
            return False
        unsafe, once = self.unsafe, self.once
        if len(unsafe) == len(self.batch.commands) and not once:
            return False  # never sent again (a transaction's EXEC, an increment)
        reads = self.reads
        return any(i not in unsafe and i not in once and i not in reads for i in indices)

    def _kill_calls(self) -> list[Call]:
        """The fence before a resend: ``CLIENT KILL ID`` of each connection that carried a
        write whose reply was lost, on another connection to the same node. Once the server
        answers (1: killed, 0: already gone), every command that connection sent has run or
        never will: no copy of the write can land later."""
        assert self.kills is not None
        groups: dict[Hashable, tuple[Any, list[tuple[int, list[int]]]]] = {}
        for node, conn_id, indices in self.kills:
            groups.setdefault(self.link.node_key(node), (node, []))[1].append(
                (conn_id, indices))
        calls = []
        for node, parts in groups.values():
            call = Call(node, [("CLIENT", "KILL", "ID", conn_id) for conn_id, _ in parts],
                        [i for _, idx in parts for i in idx], [], 0, False)
            call.kill = parts
            calls.append(call)
        return calls

    def _settle_kill(self, calls: Sequence[Call]) -> float:
        left: list[tuple[Any, int, list[int]]] = []
        denied: list[int] = []
        reason: BaseException | None = None
        for call in calls:
            assert call.kill is not None
            if call.failure is not None:
                if not call.sent and refused(call.failure):
                    # nothing listens where the first copy went: the server process that
                    # held its connection is gone, and its connections with it
                    self.unfenced.difference_update(call.indices)
                    continue
                self.last_failure = call.failure
            for pos, (conn_id, indices) in enumerate(call.kill):
                if pos >= len(call.replies):
                    left.append((call.node, conn_id, indices))
                elif isinstance(call.replies[pos], Exception):  # NOPERM, or no CLIENT KILL
                    denied.extend(indices)
                    reason = call.replies[pos]
                else:  # killed, or gone already: no copy it carried can land later
                    self.unfenced.difference_update(indices)
        if denied and not self._defer(denied, reason, self.todo):
            self.phase = _DONE
            self._unknown(denied, fence=reason)
        if left:
            self.kills = left
            self.kill_failures += 1
            delay = self._again_after(self.kill_failures)
            if delay is not None:
                return delay  # waits in line like a resend would, within the same bounds
            stuck = [i for _, _, idx in left for i in idx]
            if not self._defer(stuck, self.last_failure, self.todo):
                self.phase = _DONE
                self._unknown(stuck, fence=self.last_failure)
        self.kills = None
        self.phase = _SEND
        if self._kill_give_up:
            return self._give_up()
        return self._kill_pause

    def _defer(self, indices: list[int], fence: BaseException | None,
               todo: list[int]) -> bool:
        """In a round of several plans' batches (:attr:`Batch.shared`, not atomic, not a
        transaction's), set aside writes whose outcome cannot be settled (``indices``: their
        reply lost, not to be sent again; ``fence``: why their first copy could not be
        fenced, None for a write that must not run twice) while writes under write ids are
        still to be sent (in ``todo``): those are sent again and settled (answered, or
        fenced by :meth:`_give_up`) as they would be alone, and so are the reads left
        (:attr:`reads`: sent again with no fence until they answer or the policy gives up),
        and the exchange then ends in OutcomeUnknownError naming the set-aside ones
        (:meth:`_unknown`), its outcome telling each write-id write's and each read's.
        Removes ``indices`` from ``todo``; False (nothing set aside) when neither a
        write-id write nor a read is left to settle: the caller raises at once."""
        if not self.batch.shared or self.batch.atomic or self.pinned:
            return False
        gone = set(indices)
        rest = [i for i in todo if i not in gone]
        once, reads = self.once, self.reads
        if not any(i in once or i in reads for i in rest):
            return False
        todo[:] = rest
        self._deferred = [*(self._deferred or ()), *indices]
        if fence is not None or self._deferred_fence is None:
            self._deferred_fence = fence
        return True

    def _again_after(self, failures: int) -> float | None:
        """The pause before trying a fence (a kill or a write-id fence) again after
        ``failures`` failed tries, or None when the policy's attempts or deadline are
        spent."""
        policy = self.link.policy
        delay = policy.backoff(failures)
        if failures < policy.attempts and \
                time.monotonic() - self.started + delay <= policy.deadline:
            return delay
        return None

    def _fenced(self, pause: float, give_up: bool = False) -> float:
        """Fence the writes whose replies were lost (:meth:`_kill_calls`) before going on:
        then send them again after ``pause``, or give up."""
        self.phase = _KILL
        self._kill_give_up = give_up
        self._kill_pause = pause
        return 0.0

    def _fence_calls(self) -> list[Call]:
        ttl = self.link.policy.write_id_ttl_ms
        by_slot: dict[int | None, list[int]] = {}
        for i in self.fencing:
            slot = self.slots[i] if self.slots is not None else None
            by_slot.setdefault(slot, []).append(i)
        groups: dict[Hashable, tuple[Any, list[tuple[list[int], list[str]]]]] = {}
        for slot, indices in by_slot.items():
            if self.pinned or not self.link.cluster:
                node = self.node
            else:
                try:
                    assert self.link.locate is not None and slot is not None
                    node = self.link.locate(slot)
                except Exception as e:
                    self.last_failure = e
                    self.reinit = True
                    continue
            name = self.link.node_key(node)
            groups.setdefault(name, (node, []))[1].append((indices,
                                                           [self.once[i] for i in indices]))
        calls = []
        for node, parts in groups.values():
            commands, loads, evals = self._scripts(
                node, [("EVALSHA", ONCE_FENCE.sha, len(keys), *keys, ttl) for _, keys in parts])
            prefix: list[Command] = [("SCRIPT", "LOAD", SCRIPTS_BY_SHA[sha].source)
                                     for sha in loads]
            calls.append(Call(node, prefix + list(commands),
                              [i for idx, _ in parts for i in idx], loads, len(prefix), False,
                              fence=parts, evals=evals))
        return calls

    # ---- judging a round -------------------------------------------------------------

    def settle(self, calls: Sequence[Call]) -> float:
        """Take in what happened to this round's calls; returns the seconds to sleep before
        the next round (``moved``/``reinit`` say whether to refresh the slot map first).
        Raises when the exchange ends in an error."""
        if self.phase == _FENCE:
            return self._settle_fence(calls)
        if self.phase == _KILL:
            return self._settle_kill(calls)
        if self._checking:
            return self._settle_check(calls)
        if len(calls) == 1 and self._answered(calls[0]):
            if self._deferred:
                self._unknown([])
            return 0.0
        todo: list[int] = []
        unknown: list[int] = []
        kills: list[tuple[Any, int, list[int]]] = []
        failed = redirected = False
        for call in calls:
            self._note_loads(call)
            if call.failure is not None:
                failed = True
                self._failed(call)
                if self.pinned and (not call.sent or not call.atomic or not call.indices):
                    # nothing of the attempt was written: its WATCH is gone, start again
                    raise RestartAttemptError(call.failure)
            if not call.sent:
                todo.extend(call.indices)
                if call.cleanup:  # never left: with the next call to that node
                    self.link.leave(self.link.node_key(call.node), call.cleanup)
                continue
            body = call.replies[call.head :]
            before = len(todo)
            if call.atomic:
                redirected |= self._settle_atomic(call, body, todo, unknown)
            else:
                redirected |= self._settle_plain(call, body, todo, unknown)
            if call.failure is not None and call.learn:
                kills = self._lost(call, todo, before, unknown, kills)
        if self.restart:
            assert self.last_redirect is not None
            raise RestartAttemptError(self.last_redirect)
        if unknown:
            todo.sort()
            if not self._defer(unknown, self._fence_refusal, todo):
                self._unknown(unknown, fence=self._fence_refusal)
        todo.sort()
        self.todo = todo
        if self.conflict or not todo:
            self.phase = _DONE
            if self.once:
                self._retire()
            if self._deferred:
                self._unknown([])
            return 0.0
        return self._next_round(failed, redirected, kills)

    def _next_round(self, failed: bool, redirected: bool,
                    kills: list[tuple[Any, int, list[int]]]) -> float:
        """After a round that left commands to send: the pause before the next one, or the
        fence first (``kills``), or giving up."""
        if kills:
            self.kills = kills
            self.kill_failures = 0
        if self.pinned and failed:  # a lost EXEC reply: settle it now, never sent again
            return self._fenced(0.0, True) if kills else self._give_up()
        pause = self.pause
        if failed:
            self.failures += 1
            pause = max(pause, self.link.policy.backoff(self.failures))
        if redirected and not self.pause:  # MOVED/ASK/NOSCRIPT loops; waits have a deadline
            self.redirect_rounds += 1
        policy = self.link.policy
        late = time.monotonic() - self.started + pause > policy.deadline
        give_up = self.failures >= policy.attempts or late \
            or self.redirect_rounds > MAX_REDIRECT_ROUNDS
        if kills:  # even when giving up: the caller may call again once it has the error
            return self._fenced(pause, give_up)
        if give_up:
            return self._give_up()
        return pause

    _fence_refusal: BaseException | None = None

    def _lost(self, call: Call, todo: list[int], before: int, unknown: list[int],
              kills: list[tuple[Any, int, list[int]]]) -> list[tuple[Any, int, list[int]]]:
        """The writes of a failed call to be sent again without a write id (in ``todo``
        from ``before`` on, their replies lost): fenced first (:meth:`_kill_calls`), or, if
        the connection's id is unknown, never sent again (moved to ``unknown``)."""
        once, reads = self.once, self.reads
        maybe = self.maybe_applied
        lost = [i for i in todo[before:] if i in maybe and i not in once and i not in reads]
        if not lost:
            return kills
        if call.conn_id is None:
            todo[before:] = [i for i in todo[before:] if i not in lost]
            unknown.extend(lost)
            self._fence_refusal = RedisConnectionError(
                "the server-side id of its connection is unknown (CLIENT ID refused?)")
        else:
            kills.append((call.node, call.conn_id, lost))
        return kills

    def _answered(self, call: Call) -> bool:
        """The common round, judged quickly: one call, every reply in and none an error
        (those may need a second look). False leaves the call to the full judgement."""
        replies = call.replies
        if call.failure is not None or call.atomic or call.loads or call.evals \
                or len(replies) != len(call.indices) + call.head:
            return False
        if call.head:  # tidying of records (their replies say nothing), or ASKING
            replies = replies[call.head :]
        for reply in replies:
            if isinstance(reply, Exception):
                return False
        if len(replies) == len(self.replies):
            self.replies = replies  # the whole batch, in order, no error among them
            self._clean = True
        else:
            for i, reply in zip(call.indices, replies, strict=True):
                self.replies[i] = reply
        self.todo = []
        self.phase = _DONE
        if self.once:
            self._retire()
        return True

    def _settle_plain(self, call: Call, body: list[Any], todo: list[int],
                      unknown: list[int]) -> bool:
        """One reply per command: True if some must be sent again (a redirection)."""
        redirected = False
        replies = self.replies
        lost_once = False
        for pos, i in enumerate(call.indices):
            if pos < len(body):
                reply = body[pos]
                if isinstance(reply, Exception) and type(reply) in _REDIRECTS:
                    self._redirect(i, reply, call)
                    redirected = True
                    todo.append(i)
                else:
                    replies[i] = reply
            elif self._resendable(i):
                self.maybe_applied.add(i)
                if i not in self.once and i not in self.reads:  # a read needs no fence
                    self.unfenced.add(i)
                todo.append(i)
                lost_once = lost_once or i in self.once
            else:
                unknown.append(i)
        if lost_once:
            self.copies_lost += 1
        return redirected

    def _note_loads(self, call: Call) -> None:
        if not (call.loads or call.evals):
            return
        name = self.link.node_key(call.node)
        loaded = self.link.loaded.setdefault(name, set())
        for k, sha in enumerate(call.loads):
            if k < len(call.replies):
                if isinstance(call.replies[k], Exception):  # e.g. NOPERM: EVAL from now on
                    self.link.eval_only.add(name)
                else:
                    loaded.add(sha)
        if call.evals and call.failure is None and call.sent:
            loaded.update(call.evals)

    def _failed(self, call: Call) -> None:
        assert call.failure is not None
        self.last_failure = call.failure
        if call.sent:  # the server may have restarted and forgotten its scripts
            self.link.loaded.pop(self.link.node_key(call.node), None)
        if self.link.cluster:
            self.reinit = True

    def _redirect(self, i: int, error: BaseException, call: Call) -> None:
        kind = _REDIRECTS[type(error)]
        self.last_redirect = error
        if self.pinned and (kind != _NOSCRIPT or call.atomic):
            self.restart = True  # the session's WATCH cannot follow it elsewhere
        if kind == _NOSCRIPT:
            command = self.wire[i]
            if command[0] == "EVALSHA":
                self.link.loaded.get(self.link.node_key(call.node), set()).discard(command[1])
        elif kind == _MOVED:
            self.moved.append(error)
        elif kind == _ASK:
            assert isinstance(error, AskError)
            if self.link.node_at is not None:
                self.ask[i] = _Asked(self.link.node_at(error.host, error.port))
        else:
            self.pause = max(self.pause, _PAUSE[kind])
            if kind in (_DOWN, _READONLY) and self.link.cluster:
                self.reinit = True

    def _settle_atomic(self, call: Call, body: list[Any], todo: list[int],
                       unknown: list[int]) -> bool:
        """MULTI, QUEUED..., EXEC: True if it must be sent again (a redirection)."""
        indices = call.indices
        k = len(call.inner)
        if k:  # SCRIPT LOADs inside MULTI: their QUEUED and their replies come first
            loads_queued = body[1 : 1 + k]
            body = body[:1] + body[1 + k :]
            refused = next((r for r in loads_queued if isinstance(r, Exception)), None)
            if refused is not None and len(body) >= len(indices) + 2:
                # refused when queued (an ACL user with +eval but not +script): EXEC
                # aborted with nothing applied; sent again with EVAL (a transaction's
                # attempt runs again: EXEC dropped its WATCH)
                self.link.eval_only.add(self.link.node_key(call.node))
                self.last_redirect = refused
                if self.pinned:
                    self.restart = True
                todo.extend(indices)
                return True
            if len(body) >= len(indices) + 2 and isinstance(body[-1], list):
                loaded = self.link.loaded.setdefault(self.link.node_key(call.node), set())
                loaded.update(sha for sha, r in zip(call.inner, body[-1][:k], strict=False)
                              if not isinstance(r, Exception))
                body[-1] = body[-1][k:]
        if len(body) < len(indices) + 2:  # the EXEC reply never came
            if all(self._resendable(i) for i in indices):
                self.maybe_applied.update(indices)
                self.unfenced.update(i for i in indices
                                     if i not in self.once and i not in self.reads)
                todo.extend(indices)
                if any(i in self.once for i in indices):
                    self.copies_lost += 1
            else:
                unknown.extend(indices)
            return False
        result = body[-1]
        if isinstance(result, list):
            for i, reply in zip(indices, result, strict=False):
                self.replies[i] = reply
            return False
        if result is None:  # a watched key changed: nothing was applied
            self.conflict = True
            return False
        queued = body[: len(indices) + 1]  # MULTI's reply, then each command's
        for pos, reply in enumerate(queued):
            if isinstance(reply, Exception) and type(reply) in _REDIRECTS:
                self._redirect(indices[max(pos - 1, 0)], reply, call)
                todo.extend(indices)
                return True
        # a command refused while queued (wrong arity, unknown command) discards them all:
        # each command without a refusal of its own answers the first refusal, named by
        # the command that had it (its name, its keys), not by the command it lands on
        culprit = next((pos for pos, r in enumerate(queued[1:]) if isinstance(r, Exception)),
                       None)
        commands = self.batch.commands
        failure = result if culprit is None else \
            server_error(queued[culprit + 1], commands[indices[culprit]])
        for pos, i in enumerate(indices):
            reply = queued[pos + 1]
            self.replies[i] = reply if isinstance(reply, Exception) else failure
        return False

    def _unknown(self, indices: list[int], fence: BaseException | None = None,
                 fenced: Sequence[int] = ()) -> None:
        """Raise OutcomeUnknownError for writes sent whose replies were lost: not resendable,
        or (``fence``: why) resendable but their first copy could not be fenced; with the
        writes set aside earlier (:meth:`_defer`). ``fenced``: write-id writes fenced as
        never to run (their outcome says so)."""
        self.phase = _DONE
        if self._deferred:
            indices = [*indices, *(i for i in self._deferred if i not in indices)]
            if fence is None:
                fence = self._deferred_fence
            self._deferred = None
        commands = self.batch.commands
        keys = tuple(dict.fromkeys(_text(k) for i in indices
                                   for k in command_keys(commands[i])[0]))
        what = ", ".join(sorted({describe(commands[i]) for i in indices}))
        if self.batch.atomic:
            what = f"MULTI/EXEC of {what}"
        cause = self.last_failure
        if fence is None and self.copies_lost and all(i in self.once for i in indices):
            copies = "once" if self.copies_lost == 1 else f"{self.copies_lost} times"
            error = OutcomeUnknownError(
                f"{what} was sent {copies} under write id {self.write_id} (applied at most "
                f"once), every reply lost ({type(cause).__name__}: {cause}), and the fence "
                "(asking the server whether that write id ran) could not settle it",
                keys=keys, write_id=self.write_id)
            raise self._outcome(error, indices) from cause
        if fence is None:
            why = "redmodel did not send it again, as it must not be applied twice"
        else:
            why = ("redmodel did not send it again: it could not make sure that the first "
                   "copy can no longer be applied later (CLIENT KILL of its connection: "
                   f"{type(fence).__name__}: {fence})")
        error = OutcomeUnknownError(
            f"the connection failed after {what} was sent and before its reply arrived "
            f"({type(cause).__name__}: {cause}); {why}", keys=keys, write_id=self.write_id)
        raise self._outcome(error, indices, fenced) from cause

    # ---- giving up ---------------------------------------------------------------------

    def _ran_unsafe(self) -> list[int]:
        """The writes of this batch that must not run twice (:attr:`unsafe`) that ran: their
        replies are in (from this round, an earlier one, or another node of a cluster)."""
        replies = self.replies
        return [i for i in self.unsafe
                if replies[i] is not _PENDING and not isinstance(replies[i], Exception)]

    def _outcome(self, error: BaseException, unknown: Sequence[int],
                 fenced: Sequence[int] = ()) -> BaseException:
        """``error`` (raised as a write batch ends), told what of the batch is known, as
        its :data:`OUTCOME` attribute (a :class:`BatchOutcome`): the commands answered
        (run, or refused by the server) and those certainly not run and never to be
        (never sent, proven not run by a redirection, or fenced under their write ids).
        The others (``unknown``, and resendable writes whose reply was lost: harmless)
        may or may not have run. The bulk calls say from it, per object, what was
        written."""
        if not self.batch.write:
            return error
        replies = self.replies
        skip = set(unknown)
        skip.update(self._maybe or ())
        skip.difference_update(fenced)
        unfenced = self._unfenced or ()
        setattr(error, OUTCOME, BatchOutcome(
            {i: r for i, r in enumerate(replies) if r is not _PENDING},
            tuple(i for i, r in enumerate(replies) if r is _PENDING and i not in skip),
            tuple(sorted(i for i in unfenced if replies[i] is _PENDING))))
        return error

    def _partial(self, cause: BaseException, missing: Sequence[int],
                 fenced: Sequence[int] = ()) -> None:
        """Raise OutcomeUnknownError for a batch given up after some of its writes that must
        not run twice ran and others (``missing``) did not, or not for sure: a plain
        error would read as "nothing applied, call again" (docs/failures.md, "Several
        writes in one batch"). ``.keys`` names those not known to be applied (reads among
        ``missing`` write nothing: not named); its :data:`OUTCOME` says which commands are
        which (:meth:`_outcome`)."""
        commands = self.batch.commands
        ran = self._ran_unsafe()
        done = sorted({_text(k) for i in ran for k in command_keys(commands[i])[0]})
        reads = self.reads
        keys = tuple(dict.fromkeys(_text(k) for i in missing if i not in reads
                                   for k in command_keys(commands[i])[0]))
        maybe = self._maybe or set()
        unknown = [i for i in missing if i not in fenced and i in maybe]
        how = "exactly once " if self.once else ""
        rest = ("was not, and never will be" if not unknown else
                "was not (those that may be applied twice harmlessly may have been)")
        error = OutcomeUnknownError(
            f"part of this batch was applied {how}(keys {done[:5]}) and the rest (keys "
            f"{list(keys[:5])}) {rest} ({type(cause).__name__}: {cause})",
            keys=keys, write_id=self.write_id)
        raise self._outcome(error, unknown, fenced) from cause

    def _give_up(self) -> float:
        pending = [i for i in self.todo if i in self.maybe_applied and i in self.once]
        if pending:
            if self.batch.atomic or self.pinned:
                pending = [i for i in self.todo if i in self.once]
            self.fencing = pending
            self.fence_failures = 0
            self.phase = _FENCE
            return 0.0
        self.phase = _DONE
        if self._deferred:
            self._unknown([])
        error = self.last_failure
        if error is None:  # redirected for too long: the last redirection's reply
            assert self.last_redirect is not None
            error = server_error(self.last_redirect, self.batch.commands[self.todo[0]])
        if not self.pinned and self._ran_unsafe():
            self._partial(error, self.todo)
        lost = [i for i in self.todo if i in self._fragile and i in self.maybe_applied]
        if lost:  # a copy of a fragile write may have run: calling again is not harmless
            keys = tuple(dict.fromkeys(k for i in lost for k in self._objects(i)))
            what = ", ".join(sorted({describe(self.batch.commands[i]) for i in lost}))
            unknown = OutcomeUnknownError(
                f"every reply to {what} was lost ({type(error).__name__}: {error}); a copy "
                "may have run, and calling again after the object expired or was deleted "
                "would write it anew", keys=keys)
            raise self._outcome(unknown, lost) from error
        raise self._outcome(error, ())

    fencing: list[int]
    fence_failures: int

    def _settle_fence(self, calls: Sequence[Call]) -> float:
        resolved: dict[int, bool] = {}
        for call in calls:
            self._note_loads(call)
            if call.failure is not None:
                self._failed(call)
            body = call.replies[call.head :]
            assert call.fence is not None
            for pos, (indices, _) in enumerate(call.fence):
                if pos >= len(body) or isinstance(body[pos], Exception):
                    continue
                for i, entry in zip(indices, body[pos], strict=True):
                    ran = bool(entry) and int(entry[0]) == 1
                    resolved[i] = ran
                    if ran:
                        self.replies[i] = entry[1] if len(entry) > 1 else None
        left = [i for i in self.fencing if i not in resolved]
        if left:
            # the fence is tried at least once; again only within the policy's bounds
            self.fencing = left
            self.fence_failures += 1
            delay = self._again_after(self.fence_failures)
            if delay is not None:
                return delay
            self.phase = _DONE
            self._unknown(left)
        self.phase = _DONE
        if (self.batch.atomic or self.pinned) and any(resolved.values()):
            for i in self.todo:  # a command of the unit that failed without a record
                if self.replies[i] is _PENDING:
                    command = self.batch.commands[i]
                    self.replies[i] = server_error(ResponseError(
                        "its reply was lost with EXEC's (a read needs no write id: nothing "
                        "kept it); the transaction was applied"), command) \
                        if _name(command) in BIG_READS else \
                        ServerError("the command failed and its reply was lost")
                    resolved[i] = True
        applied = [i for i in self.todo if resolved.get(i)]
        missing = [i for i in self.todo if not resolved.get(i)]
        if not missing:
            self.todo = []
            self._retire()
            if self._deferred:
                self._unknown([])
            return 0.0
        cause = self.last_failure or RedisConnectionError("connection lost")
        fenced = [i for i in missing if resolved.get(i) is False]  # never will be applied
        if self._deferred:
            self._unknown([], fenced=fenced)
        if self.pinned:
            if not applied:
                raise RestartAttemptError(cause)
        elif not self._ran_unsafe():
            # nothing of the batch that must not run twice ran (in this round, an earlier
            # one, or on another node): safe to call again
            raise self._outcome(cause, (), fenced)
        self._partial(cause, missing, fenced)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the result --------------------------------------------------------------------

    def _exact(self) -> None:
        """A counter command run under a write id answers its value's text beyond 2**53
        (once_command.lua): the int it is, as the command alone answers it."""
        commands = self.batch.commands
        for i in self.once:
            reply = self.replies[i]
            if isinstance(reply, (bytes, str)) and _name(commands[i]) in EXACT_INT_REPLIES:
                self.replies[i] = int(reply)

    def _gone(self) -> None:
        """Raise OutcomeUnknownError when a conditional copy (:meth:`_copy`) found its
        object missing: the first copy may have run (and the object expired or was deleted
        since), or not; the call cannot tell."""
        assert self._guarded is not None
        gone = [i for i in sorted(self._guarded) if isinstance(self.replies[i], Exception)
                and str(self.replies[i]).startswith(GONE)]
        if not gone:
            return
        commands = self.batch.commands
        keys = tuple(dict.fromkeys(k for i in gone for k in self._objects(i)))
        what = ", ".join(sorted({describe(commands[i]) for i in gone}))
        cause = self.last_failure
        error = OutcomeUnknownError(
            f"the reply to {what} was lost ({type(cause).__name__}: {cause}); the first copy "
            "may have run and the object expired or was deleted before the resend, which "
            "found it missing and wrote nothing", keys=keys)
        raise self._outcome(error, gone) from cause

    def result(self) -> list[Any]:
        """The replies; raises the first error reply as a ServerError naming its keys."""
        if self._guarded:
            self._gone()
        if self.once:
            self._exact()
        replies = self.replies
        if self._clean:
            return replies
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception):
                raise server_error(reply, self.batch.commands[i])
        return replies

    def raw(self) -> list[Any]:
        """The replies with error replies as ServerError values (for EXEC results)."""
        if self._guarded:
            self._gone()
        if self.once:
            self._exact()
        commands = self.batch.commands
        return [server_error(r, commands[i]) if isinstance(r, Exception) else r
                for i, r in enumerate(self.replies)]


def _node_name(node: Any) -> str | None:
    """``host:port`` of a cluster node for messages (None on one server)."""
    return None if node is None else str(getattr(node, "name", node))


#: The attribute of an error a write batch ended in that holds its :class:`BatchOutcome`.
OUTCOME = "_redmodel_batch_outcome"


class BatchOutcome:
    """What of a write batch is known when it ends in an error (internal): ``ran`` maps
    the position of each command answered to its reply (run, or refused by the server);
    ``not_ran`` holds the positions certainly not run, and never to be. The others may
    have run; of those, ``unfenced`` holds the commands that may be sent twice (sent again
    only after a fence) whose latest copy was sent, got no reply and was not fenced
    (``CLIENT KILL`` refused or not tried: the batch was given up for another command's
    unknown outcome): a copy of each may still land later. A command that may be sent
    twice and is in none of the three was fenced: applied or not, nothing of it lands
    later. Its replies are never shown (repr) nor carried across a process boundary
    (pickle: an empty one)."""

    __slots__ = ("not_ran", "ran", "unfenced")

    def __init__(self, ran: dict[int, Any], not_ran: tuple[int, ...],
                 unfenced: tuple[int, ...] = ()) -> None:
        self.ran = ran
        self.not_ran = not_ran
        self.unfenced = unfenced

    def __repr__(self) -> str:
        return f"<BatchOutcome: {len(self.ran)} answered, {len(self.not_ran)} not run>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchOutcome, ({}, ()))


def outcome_of(error: BaseException) -> BatchOutcome | None:
    """The :class:`BatchOutcome` of a write batch's error, taken off it (None if it has
    none): the replies it holds are for the bulk call, not for the caller."""
    found = error.__dict__.pop(OUTCOME, None) if hasattr(error, "__dict__") else None
    return found if isinstance(found, BatchOutcome) else None


class _Asked:
    """The node an ASK redirection named: send ASKING first."""

    __slots__ = ("node",)

    def __init__(self, node: Any) -> None:
        self.node = node


def redis_reply(client: Any, command: tuple[Any, ...], reply: Any) -> Any:
    """``reply`` as redis-py's ``execute_command`` returns it: the client's response
    callback for the command applied (raw commands of transactions keep redis-py's
    shapes; redmodel's own plans read raw replies)."""
    callbacks = getattr(client, "response_callbacks", None)
    if callbacks is None and hasattr(client, "get_default_node"):  # a sync RedisCluster
        callbacks = client.get_redis_connection(client.get_default_node()).response_callbacks
    if not callbacks or isinstance(reply, Exception):
        return reply
    name = _text(command[0])
    callback = callbacks.get(name.upper())
    if callback is None and len(command) > 1:
        callback = callbacks.get(f"{name} {_text(command[1])}".upper())
    return reply if callback is None else callback(reply)
