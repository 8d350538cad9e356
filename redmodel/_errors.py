"""The one exception hierarchy of redmodel.

Every error carries what it is about (model, key, field, codec) as attributes and in its
message, and never a secret or a stored plaintext value.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "CodecError",
    "ConditionFailedError",
    "ConflictError",
    "CrossSlotError",
    "DecodeError",
    "EvictionPolicyError",
    "IndexNotReadyError",
    "ModelDefinitionError",
    "NotFoundError",
    "OutcomeUnknownError",
    "QueryError",
    "ReadAfterWriteError",
    "RedmodelError",
    "SchemaConflictError",
    "ServerError",
    "TransactionError",
    "UniqueViolationError",
    "ValidationError",
    "as_text",
    "key_text",
]


def _rebuild(cls: type[RedmodelError], args: tuple[Any, ...]) -> RedmodelError:
    """An error back from a pickle or a copy: its class and its finished message (``args``),
    without calling ``__init__`` again (which would add the context to the message twice,
    or miss its keyword arguments); the attributes come back as the pickle's state."""
    error = cls.__new__(cls)
    error.args = args
    return error


def key_text(key: str | bytes) -> str:
    """A key (or id) as a message names it: as written when it is UTF-8 text, else its
    repr, quoted, with each lone surrogate (U+DC80..U+DCFF: an id byte that is not UTF-8)
    as its ``\\udc80`` escape and bytes as ``b'...'``, so a message is always text and
    still names that very key (the escape is what ``redmodel export`` writes in JSON)."""
    if isinstance(key, str):
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return repr(key)
        return key
    return repr(bytes(key))


def as_text(message: str) -> str:
    """``message`` as UTF-8-encodable text: a lone surrogate a piece of it carries (a key
    inserted without :func:`key_text`) becomes its ``\\udc80`` escape. Every
    RedmodelError's message goes through it: a log handler writing UTF-8 never fails on
    one, and ``str(error).encode()`` never raises."""
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        return message.encode("utf-8", "backslashreplace").decode("utf-8")
    return message


class RedmodelError(Exception):
    """Base class of every error redmodel raises itself.

    Errors from redis-py (connection, timeout, permission) are passed through unwrapped.

    An error that stops a ``save_many`` or ``delete_many`` once a chunk was sent (an
    object refused, an error reply, a lost reply) says in its message what was written,
    and carries the keys: ``written`` (written, or deleted) and ``not_written`` (the
    refused ones, those never sent, and those fenced). The keys of objects whose outcome is
    unknown (:class:`OutcomeUnknownError`) are in neither, and in its ``keys``. Both are
    None for any other error (and a plain ``redis.ConnectionError`` has neither: from
    ``delete_many`` it means nothing was deleted; from ``save_many`` the earlier chunks
    are written, which is safe to repeat).
    """

    written: tuple[str, ...] | None = None
    not_written: tuple[str, ...] | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*(as_text(a) if isinstance(a, str) else a for a in args))

    def __reduce__(self) -> tuple[Any, ...]:
        # Every error crosses a process boundary (multiprocessing, a task queue) and goes
        # through copy.copy/deepcopy as itself: same class, same message, same attributes.
        # Only what the error shows (its args and attributes) is kept: never its cause,
        # context or traceback, which may hold what the message left out.
        return (_rebuild, (type(self), self.args), dict(self.__dict__))


class ModelDefinitionError(RedmodelError, TypeError):
    """A model declaration cannot be used: unsupported field type, no key field, bad option.

    Raised when the class is declared, never later on a save of a model; and when a class
    that is not a model at all is saved or read as one (the message names it).
    """


def _context(model: str | None, key: str | None, field: str | None) -> str:
    parts = []
    if model:
        parts.append(f"model {model}")
    if key is not None:
        parts.append(f"key {key!r}")
    if field:
        parts.append(f"field {field!r}")
    return ", ".join(parts)


class ValidationError(RedmodelError, ValueError):
    """A value cannot be written: wrong type, empty id, non-numeric increment.

    Raised before any command is sent, so nothing of the object is written.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        key: str | None = None,
        field: str | None = None,
    ) -> None:
        self.model = model
        self.key = key
        self.field = field
        ctx = _context(model, key, field)
        super().__init__(f"{message} ({ctx})" if ctx else message)


class NotFoundError(RedmodelError, LookupError):
    """The caller asked for an object that must exist and it does not (``get_or_raise``)."""

    def __init__(self, model: str, key: str) -> None:
        self.model = model
        self.key = key
        super().__init__(f"no {model} stored at key {key!r}")


class DecodeError(RedmodelError, ValueError):
    """Stored data does not fit the model or its codec: missing field, bad number, wrong codec
    chain, tampered ciphertext, unknown encryption key.

    The message names the key, model, field and codec involved; it never contains the stored
    value, a plaintext or a key.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        key: str | None = None,
        field: str | None = None,
        codec: str | None = None,
    ) -> None:
        self.reason = message
        self.model = model
        self.key = key
        self.field = field
        self.codec = codec
        ctx = _context(model, key, field)
        if codec:
            ctx = f"{ctx}, codec {codec!r}" if ctx else f"codec {codec!r}"
        super().__init__(f"{message} ({ctx})" if ctx else message)

    def with_context(
        self,
        *,
        model: str | None = None,
        key: str | None = None,
        field: str | None = None,
        codec: str | None = None,
    ) -> DecodeError:
        """A copy of this error with the missing context filled in (own values win)."""
        return DecodeError(
            self.reason,
            model=self.model or model,
            key=self.key if self.key is not None else key,
            field=self.field or field,
            codec=self.codec or codec,
        )


class CodecError(RedmodelError, ValueError):
    """A codec chain cannot be built: unknown name, missing optional dependency, no key."""


class ConflictError(RedmodelError):
    """An optimistic transaction conflicted on every attempt its retry policy allowed; or,
    outside a transaction, a call whose keys other writers kept changing for 8 round trips
    (a flat object's leaves; an indexed object's entries). Nothing was written: calling
    again is safe. ``attempts``: how many were made; ``keys``: the object keys."""

    def __init__(self, message: str, *, attempts: int, keys: tuple[str, ...] = ()) -> None:
        self.attempts = attempts
        self.keys = keys
        super().__init__(message)


class CrossSlotError(RedmodelError):
    """An atomic operation would need keys in different Redis Cluster hash slots."""


class TransactionError(RedmodelError):
    """A transaction was used in a way it cannot honour: a result read before commit, a
    nested call on another store, an unbound transaction function, a write that needs a
    second round trip after EXEC."""


class ReadAfterWriteError(TransactionError):
    """A read was asked for after a write was queued: inside MULTI a read only returns
    QUEUED, so it cannot be answered. Do every read first, then the writes."""

    def __init__(self, read: str, first_write: str) -> None:
        self.read = read
        self.first_write = first_write
        super().__init__(
            f"cannot {read} after {first_write} was queued in this transaction: reads must "
            "come before the first write (inside MULTI a read is not answered until EXEC)"
        )


class ConditionFailedError(RedmodelError):
    """A conditional update changed nothing because a field would have crossed its bound.

    ``kind`` is ``"floor"`` or ``"ceiling"``; ``current`` is the stored value, ``change``
    the amount asked for (0 for a bounded field that was not being changed), ``bound`` the
    limit. ``limit`` names a limit the caller did not set (``None`` for a floor or ceiling
    given to ``incr_fields``): ``"64-bit counter"`` (Redis' integers),
    ``"exact range of a range index"`` (ints within ±2**53) or ``"finite float"``.
    Raised by ``incr_fields`` and ``incr`` (and their transaction results).
    """

    def __init__(
        self,
        *,
        model: str,
        key: str,
        field: str,
        kind: str,
        bound: float,
        current: float,
        change: float,
        limit: str | None = None,
    ) -> None:
        self.model = model
        self.key = key
        self.field = field
        self.kind = kind
        self.bound = bound
        self.current = current
        self.change = change
        self.limit = limit
        side = "below its floor" if kind == "floor" else "above its ceiling"
        if limit:
            side = ("below" if kind == "floor" else "above") + f" the {limit} limit"
        super().__init__(
            f"{field} would go {side} {bound} (stored {current}, change {change:+}); "
            f"this change was not applied (model {model}, key {key!r}, field {field!r})"
        )


class UniqueViolationError(RedmodelError):
    """A save or update would give a unique field (or fields) a value another object holds.

    Checked atomically with the write: nothing of the refused object is written.
    ``fields`` names the constraint, ``value`` the value (a tuple for several fields)."""

    def __init__(self, model: str, fields: tuple[str, ...], value: Any, key: str) -> None:
        self.model = model
        self.fields = fields
        self.value = value
        self.key = key
        what = fields[0] if len(fields) == 1 else "(" + ", ".join(fields) + ")"
        super().__init__(
            f"{what} = {value!r} is already taken by another {model}; nothing was written "
            f"(model {model}, key {key!r})"
        )


class QueryError(RedmodelError, ValueError):
    """A query cannot be run: unknown or non-indexed field, a range on an equality-only
    index, a value of the wrong type. Raised before any command is sent."""


class IndexNotReadyError(QueryError):
    """A query (or ``get_by``) needs an index the model registry records as not built yet:
    one added to a model whose objects were stored before it, so it holds none of them.
    ``store.reindex(Model)`` (or ``store.build_index(Model, field)``, or ``redmodel
    reindex``) builds it; until then a query refuses rather than answering from an index
    that misses objects. ``model`` and ``index`` name it, ``state`` is its registry state."""

    def __init__(self, message: str, *, model: str, index: str, state: str) -> None:
        self.model = model
        self.index = index
        self.state = state
        super().__init__(message)


class SchemaConflictError(RedmodelError):
    """A store's first use of a model disagrees with what the model registry recorded for
    its prefix: another model owns the prefix, or the model changed in a way that would
    misread the stored objects (layout, buckets, hash tag, delimiter, a codec, a new field
    without a default). ``prefix``, ``key`` (the registry key), ``owner`` (the recorded
    owner) and ``model`` (the one refused) say which; ``problems`` lists each difference.
    Nothing was written.

    Also raised at a store's first use of a container key that another program uses as
    another kind of container, member type, codec or window (``prefix``: the container's
    key, ``key``: its record, ``owner``/``model``: ``"Queue of int"``...), or that lies
    inside a model's prefix (docs/containers.md, "The container registry")."""

    def __init__(self, message: str, *, prefix: str, key: str, owner: str, model: str,
                 problems: tuple[str, ...] = ()) -> None:
        self.prefix = prefix
        self.key = key
        self.owner = owner
        self.model = model
        self.problems = problems
        super().__init__(message)


class OutcomeUnknownError(RedmodelError, RedisConnectionError):
    """The connection failed after a write was sent and before its reply arrived: the write
    may or may not have been applied. Either redmodel did not send it again (it is not
    safe to resend), or, in exactly-once mode, it was sent again under its write id (so
    applied at most once) and neither those copies' replies nor the fence that asks the
    server whether the id ran came back: the message says which. ``keys`` names the keys
    it writes; ``write_id`` is its write id in exactly-once mode (see docs/failures.md),
    else None.

    A subclass of redis-py's ``ConnectionError``, so existing handlers still catch it."""

    def __init__(self, message: str, *, keys: tuple[str, ...] = (),
                 write_id: str | None = None) -> None:
        self.keys = keys
        self.write_id = write_id
        shown = list(keys[:5]) + (["..."] if len(keys) > 5 else [])
        super().__init__(f"{message}; the write may or may not have been applied "
                         f"(keys {shown})")


#: The redis-py errors of a connection that failed: ``redis.TimeoutError`` is no subclass
#: of ``redis.ConnectionError``, and docs/failures.md gives both one meaning (plain: not
#: applied, or harmless to repeat; :class:`OutcomeUnknownError`: may or may not be). Every
#: ``except`` of redmodel that decides a write's outcome (written, not written, resend,
#: settle) catches this tuple, never ``ConnectionError`` alone (attack 30AX F1).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


class ServerError(RedmodelError, ResponseError):
    """The server refused a command redmodel sent (WRONGTYPE, OOM, NOPERM, BUSY,
    READONLY, ...): ``reply`` is the server's whole error text, its code word first
    (``"OOM command not allowed ..."``, ``"MOVED 12582 10.0.0.5:6379"``: redis-py's
    parser takes the word off), ``keys`` the keys involved. A subclass of redis-py's
    ``ResponseError``."""

    def __init__(self, reply: str, *, keys: tuple[str, ...] = (), command: str = "") -> None:
        self.reply = reply
        self.keys = keys
        self.command = command
        shown = list(keys[:5]) + (["..."] if len(keys) > 5 else [])
        named = _refused_in_script(reply)
        super().__init__(f"{command + ': ' if command else ''}{reply}"
                         f"{'; ' + named if named else ''} (keys {shown})")


class EvictionPolicyError(RedmodelError):
    """Exactly-once mode was asked of a server whose ``maxmemory-policy`` may evict keys
    (any policy but ``noeviction``): under memory pressure it could drop a write id's
    record and a resend would then apply the write twice (docs/failures.md). Raised before
    the first write that carries a write id is sent, so nothing was applied. ``policy`` is
    the server's policy, ``node`` which server (``host:port``, or None on one server).
    Set ``maxmemory-policy noeviction`` on the server, or accept the risk with
    ``ResendPolicy(allow_eviction=True)``."""

    def __init__(self, policy: str, node: str | None = None) -> None:
        self.policy = policy
        self.node = node
        where = f"the server {node}" if node else "the server"
        super().__init__(
            f"exactly-once mode needs maxmemory-policy noeviction, and {where} has "
            f"{policy!r}: under memory pressure it may evict the records of write ids, and "
            "a write sent again after a lost reply would then be applied twice. Nothing was "
            "sent. Set maxmemory-policy noeviction, or pass "
            "resend=redmodel.ResendPolicy(allow_eviction=True) to accept that risk")


def _refused_in_script(reply: str) -> str:
    """The command a script's ACL refusal is about, where the server's text does not name
    it (Redis 7.0): see :func:`redmodel._plan.refused_in_script`."""
    if "user_script" not in reply:  # the common case: no import, no search
        return ""
    from redmodel._plan import refused_in_script  # noqa: PLC0415  (the scripts' sources)

    return refused_in_script(reply)
