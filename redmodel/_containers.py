"""Typed Redis containers: a list as a queue, a set, a sorted set, a windowed counter.

A container is bound to a store and one key. Its members go through the same encoders as
model fields: scalars are stored as their Redis string (a set of ints reads ``1``, ``2`` in
redis-cli), IP addresses as their text, anything else (attrs classes, lists, dicts) through
a codec chain (default ``"json"``), canonicalised so equal values are equal bytes.

Every method exists twice: ``<name>_plan(...)`` is the sans-I/O plan (a generator of
:class:`~redmodel._plan.Batch` es) and ``<name>(...)`` runs it through the store. Inside a
transaction, ``container.in_tx(tx).<name>(...)`` runs reads at once (WATCHing the key) and
queues writes (returning a :class:`~redmodel.Pending`). Blocking pops use a dedicated client
whose socket timeout outlasts the block, never the store's own (redis-py 8 defaults to a 5 s
socket timeout and retries a timed-out read).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import inspect
import ipaddress
import math
import signal
import time
import types
import typing
import uuid
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar, Generic, TypeVar, overload

import attrs
import cattrs
from cattrs.fns import identity
from redis.crc import key_slot

from redmodel._args import MAX_TTL_SECONDS, integer, seconds
from redmodel._blocking import (
    block_arg,
    blocking_call,
    blocking_call_async,
    is_async_client,
)
from redmodel._consume import (
    DEFAULT_VISIBILITY_TIMEOUT,
    AsyncConsumer,
    Consumer,
    ConsumerKeys,
    in_flight_plan,
    make_consumer,
    one_batch,
    recover_plan,
)
from redmodel._container_registry import forget, guard_plans, guarded, record_key
from redmodel._errors import (
    CrossSlotError,
    DecodeError,
    ModelDefinitionError,
    TransactionError,
    ValidationError,
)
from redmodel._hidden import check_members_encrypted
from redmodel._keys import escape
from redmodel._plan import Batch, Command, Plan, S, run_async, run_sync, script
from redmodel._tx import current_transaction
from redmodel._types import BadValueError, Checker, make_checker, scalar
from redmodel.codecs import Codec
from redmodel.codecs import codec as resolve_codec

if typing.TYPE_CHECKING:
    from redmodel._aio import AsyncStore
    from redmodel._store import Store
    from redmodel._tx import AsyncTransaction, Transaction

__all__ = [
    "AsyncConsumer",
    "Consumer",
    "Queue",
    "Set",
    "SortedSet",
    "WindowCounter",
    "container_key",
    "pop_blocking",
]

T = TypeVar("T")
C = TypeVar("C")

# ---- keys -------------------------------------------------------------------------------

KeyPart = str | int | dt.date | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address
_KEY_TYPES = "str, int, date, datetime, UUID, IPv4Address, IPv6Address, a str/int Enum"


def _key_part(part: Any, whole: Any) -> str:
    if isinstance(part, enum.Enum):
        part = part.value
    if isinstance(part, bool) or part is None or isinstance(part, (float, bytes)):
        text = None
    elif isinstance(part, str):
        text = part
    elif isinstance(part, int):
        text = str(part)
    elif isinstance(part, (dt.date, dt.time)):
        text = part.isoformat()
    elif isinstance(part, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        text = str(part)
    else:
        text = None
    if text is None:
        hint = ""
        if isinstance(part, list):
            hint = "; pass several parts as a tuple"
        elif isinstance(part, bytes):
            hint = "; decode bytes to str first"
        raise ValidationError(
            f"a container key part must be {_KEY_TYPES} (or a tuple of them), "
            f"not {type(part).__name__}{hint}",
            key=None if isinstance(whole, (dict, list, bytes)) else repr(whole),
        )
    if not text:
        raise ValidationError("a container key part must not be empty", key=repr(whole))
    return escape(text)


def container_key(key: Any) -> str:
    """The Redis key of a container: each part escaped (as model ids are), joined by ``:``.

    ``"ips"`` -> ``ips``; ``date(2026, 11, 25)`` -> ``2026-11-25``; ``42`` -> ``42``;
    ``("visits", date(2026, 11, 25))`` -> ``visits:2026-11-25``; a ``:`` inside one part is
    escaped (``"a:b"`` -> ``a%3Ab``). Raises :class:`ValidationError` for anything else
    (None, bool, float, bytes, dict, list, an empty part).
    """
    if isinstance(key, tuple):
        if not key:
            raise ValidationError("a container key needs at least one part")
        return ":".join(_key_part(p, key) for p in key)
    return _key_part(key, key)


# ---- members ----------------------------------------------------------------------------


@attrs.frozen
class Members:
    """How the members of one container are checked, encoded and decoded."""

    type: Any
    name: str  # "native" for Redis strings, else the codec chain's name
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]  # raises BadValueError or DecodeError
    check: Checker
    deterministic: bool = True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _float_text(v: Any) -> bytes:
    return repr(float(v) + 0.0).encode()  # + 0.0 turns -0.0 into 0.0: equal, same bytes


def _decimal_text(v: decimal.Decimal) -> bytes:
    """Decimal("1.50") == Decimal("1.5"): trailing zeros go, so equal values are equal
    members (``normalize()`` would also round to the context's precision)."""
    if not v.is_finite():
        return str(v).encode()
    if v.is_zero():
        return b"0"
    sign, digits, exponent = v.as_tuple()
    assert isinstance(exponent, int)
    kept = list(digits)
    while kept[-1] == 0:
        kept.pop()
        exponent += 1
    return str(decimal.Decimal((sign, tuple(kept), exponent))).encode()


def _text_decoder(parse: Callable[[str], Any]) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        try:
            return parse(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BadValueError("not an IP address") from None

    return decode


def _is_type_check(*allowed: Any) -> Checker:
    names = " or ".join(a.__name__ for a in allowed)

    def check(v: Any) -> str | None:
        return None if isinstance(v, allowed) else f"expected {names}, got {type(v).__name__}"

    return check


_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def _is_ip_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return set(typing.get_args(tp)) == set(_IP)
    return False


def _native(tp: Any) -> Members | None:
    if tp in _IP or _is_ip_union(tp):
        parse: Callable[[str], Any] = tp if tp in _IP else ipaddress.ip_address
        allowed = (tp,) if tp in _IP else _IP
        return Members(tp, "native", lambda v: str(v).encode(), _text_decoder(parse),
                       _is_type_check(*allowed))
    found = scalar(tp)
    if found is None:
        return None
    encode, decode, check = found
    if tp is float:
        encode = _float_text
    elif tp is decimal.Decimal:
        encode = _decimal_text
    return Members(tp, "native", encode, decode, check)


def _order_key(item: Any) -> tuple[str, str]:
    """A total order on primitives that no hash seed changes: type name, then repr (of a
    canonical tree, so a dict's repr is its sorted items)."""
    return (type(item).__name__, repr(item))


def _canonical(tree: Any) -> Any:
    """The primitive tree with every dict's keys sorted, every set as a sorted list and
    -0.0 as 0.0, so equal values dump to equal bytes in every process."""
    if isinstance(tree, dict):
        items = [(k, _canonical(v)) for k, v in tree.items()]
        try:
            items.sort(key=lambda kv: kv[0])
        except TypeError:
            items.sort(key=lambda kv: _order_key(kv[0]))
        return dict(items)
    if isinstance(tree, list):
        return [_canonical(v) for v in tree]
    if isinstance(tree, tuple):
        return tuple(_canonical(v) for v in tree)
    if isinstance(tree, (set, frozenset)):  # passed through by the converter (an Any field)
        return sorted((_canonical(v) for v in tree), key=_order_key)
    if isinstance(tree, float):
        return tree + 0.0
    return tree


def _is_set_type(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, AbstractSet)


def _sorted_set_hook(converter: cattrs.Converter) -> Callable[[Any], Callable[[Any], Any]]:
    def factory(tp: Any) -> Callable[[Any], Any]:
        args = typing.get_args(tp)
        element = converter.get_unstructure_hook(args[0]) if args else converter.unstructure

        def unstructure(value: Any) -> list[Any]:
            return sorted((_canonical(element(v)) for v in value), key=_order_key)

        return unstructure

    return factory


_canonical_converters: weakref.WeakKeyDictionary[Any, cattrs.Converter] = (
    weakref.WeakKeyDictionary()
)


def canonical_converter(serializer: Any) -> cattrs.Converter:
    """A copy of ``serializer``'s converter that unstructures equal values equally in every
    process: sets and frozensets (whose iteration order follows the hash seed) as lists
    sorted by :func:`_order_key`, floats as floats (``1`` in a float position as ``1.0``)
    and Decimals without trailing zeros, where the serializer keeps those as floats and
    strings. Structuring is unchanged: a sorted list structures back into a set."""
    found = _canonical_converters.get(serializer)
    if found is None:
        base: cattrs.Converter = serializer.converter
        found = base.copy()
        found.register_unstructure_hook_factory(_is_set_type, _sorted_set_hook(found))
        if base.get_unstructure_hook(float) is identity:
            found.register_unstructure_hook(float, lambda v: float(v) + 0.0)
        if base.get_unstructure_hook(decimal.Decimal) is str:
            found.register_unstructure_hook(
                decimal.Decimal, lambda v: _decimal_text(v).decode("ascii"))
        _canonical_converters[serializer] = found
    return found


def _chain_encoder(chain: Codec, tp: Any) -> Callable[[Any], bytes]:
    unstructure = canonical_converter(chain.serializer).get_unstructure_hook(tp)
    dumps = chain.serializer.dumps
    header = chain._header  # the header the chain's own encoder writes
    transforms = chain.transforms

    def encode(value: Any) -> bytes:
        try:
            data = dumps(_canonical(unstructure(value)))
        except (TypeError, ValueError, OverflowError) as e:
            raise ValidationError(
                f"codec {chain.name!r} cannot encode a value of type "
                f"{type(value).__name__}: {type(e).__name__}"
            ) from None
        for t in transforms:
            data = t.encode(data)
        return header + data

    return encode


def members_of(tp: Any, codec: str | Codec | None, where: str) -> Members:
    """The member encoding for ``tp``: native Redis strings for scalars and IP addresses
    (unless ``codec`` is given), else the codec chain (default ``"json"``)."""
    if codec is None:
        native = _native(tp)
        if native is not None:
            return native
        codec = "json"
    chain = resolve_codec(codec)
    check_members_encrypted(tp, chain, where)
    if tp in _IP or _is_ip_union(tp):
        check: Checker = _is_type_check(*_IP)
    else:
        try:
            check = make_checker(tp, where)
        except ModelDefinitionError as e:
            raise ModelDefinitionError(f"{e} (container members)") from None
    return Members(tp, chain.name, _chain_encoder(chain, tp), chain.decoder(tp), check,
                   deterministic=not chain.holds_keys)


# ---- the base class ---------------------------------------------------------------------


class InTransaction(Generic[C]):
    """A container's methods run through a transaction: reads at once (WATCHing the key),
    writes queued, returning :class:`~redmodel.Pending`. Made by ``container.in_tx(tx)``."""

    def __init__(self, container: C, tx: Transaction | AsyncTransaction) -> None:
        self.container = container
        self.tx = tx

    def __repr__(self) -> str:
        return f"<{self.container!r} in {self.tx!r}>"

    def __getattr__(self, name: str) -> Callable[..., Any]:
        container: Any = self.container
        if name in container._BLOCKING:
            raise TransactionError(
                f"{type(container).__name__}.{name} blocks, which a transaction cannot do "
                "(inside MULTI a blocking pop does not wait); call it outside the "
                "transaction, or use a non-blocking pop here"
            )
        make_plan = getattr(type(container), f"{name}_plan", None)
        if make_plan is None or name.startswith("_"):
            raise AttributeError(f"{type(container).__name__} has no operation {name!r}")
        write = name in container._WRITES
        what = f"{type(container).__name__}.{name} {container.key!r}"

        make_plan = getattr(make_plan, "__wrapped__", make_plan)  # checked at commit
        pending = getattr(self.tx, "_containers", None)

        def call(*args: Any, **kwargs: Any) -> Any:
            plan = make_plan(container, *args, **kwargs)
            if pending is not None and container not in pending:
                pending.append(container)
            return self.tx.queue(plan, what) if write else self.tx.query(plan, what)

        return call


class Container(Generic[T, S]):
    """What every container has: a store, a key, a member type and its encoding.

    ``S`` is the store's type, inferred from the constructor's ``store``: on a
    :class:`~redmodel.Store` (the default, so ``Queue[int]`` is ``Queue[int, Store]``)
    methods return values, on an :class:`~redmodel.AsyncStore` coroutines of them, and
    type checkers see each form's own signatures (docs/design.md)."""

    _WRITES: ClassVar[frozenset[str]] = frozenset({"clear", "expire"})
    _BLOCKING: ClassVar[frozenset[str]] = frozenset()
    _deterministic_members: ClassVar[bool] = False

    def __init__(self, store: S, key: Any, type: type[T], *, codec: str | Codec | None = None
                 ) -> None:
        self.store = store
        self.key = container_key(key)
        self.type = type
        self.encoding = members_of(type, codec, f"{self.__class__.__name__} {self.key!r}")
        if self._deterministic_members and not self.encoding.deterministic:
            raise ModelDefinitionError(
                f"{self.__class__.__name__} {self.key!r}: codec {self.encoding.name!r} encrypts "
                "with a random nonce, so equal members would be stored as different members; "
                "use a chain without fernet"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r}, {_type_name(self.type)})"

    def in_tx(self: C, tx: Transaction | AsyncTransaction) -> InTransaction[C]:
        """This container's methods inside transaction ``tx``: reads run now and WATCH the
        key, writes are queued and return a :class:`~redmodel.Pending`."""
        return InTransaction(self, tx)

    # ---- encoding ------------------------------------------------------------------

    def _encode(self, value: Any) -> bytes:
        reason = self.encoding.check(value)
        if reason is not None:
            raise ValidationError(f"not a {_type_name(self.type)} member: {reason}",
                                  key=self.key)
        try:
            return self.encoding.encode(value)
        except ValidationError as e:
            raise ValidationError(str(e), key=self.key) from None
        except (ValueError, TypeError, ArithmeticError) as e:
            raise ValidationError(
                f"cannot encode a {_type_name(self.type)} member: {type(e).__name__}",
                key=self.key,
            ) from None

    def _decode(self, raw: Any, key: str | None = None) -> T:
        key = self.key if key is None else key
        if isinstance(raw, str):  # a client with decode_responses=True (refused by Store)
            raw = raw.encode("utf-8")
        try:
            return self.encoding.decode(raw)  # type: ignore[no-any-return]
        except BadValueError as e:
            raise DecodeError(f"stored member does not decode as {_type_name(self.type)}: {e}",
                              key=key) from None
        except DecodeError as e:
            raise e.with_context(key=key) from None

    # ---- what a pop took and cannot decode --------------------------------------------

    def _set_aside_command(self, rejected: str, raws: Sequence[Any]) -> Command:
        """The command that keeps ``raws`` (popped, not decodable) in ``rejected``."""
        raise NotImplementedError  # pragma: no cover - every popping container has one

    def _decoded_or_set_aside(self, raw: Any, set_aside: bool = True) -> Plan[T]:
        """The member a pop took. One that does not decode is not dropped: it is added, raw,
        to the container's ``%rejected`` key (a list for a queue, where :meth:`consume`
        sets its own aside, a set for a set), and :class:`DecodeError` names that key (never
        the value). The set-aside is itself at most once: a process that dies, or a
        connection that drops, between the pop and the set-aside loses the member.
        ``set_aside=False`` (a pop inside a transaction): the error says it is lost."""
        try:
            return self._decode(raw)
        except DecodeError as e:
            rejected = ConsumerKeys.of(self.key).rejected
            if not set_aside:
                raise DecodeError(
                    f"{e.reason}; it was popped in a transaction, which can send nothing "
                    f"after EXEC, so it could not be set aside in {rejected!r}: it is lost",
                    model=e.model, key=e.key, field=e.field, codec=e.codec) from None
            yield Batch([self._set_aside_command(rejected, [raw])], write=True,
                        keys=(rejected,))
            raise DecodeError(f"{e.reason}; the pop moved it to {rejected!r}", model=e.model,
                              key=e.key, field=e.field, codec=e.codec) from None

    def _same_kind(self, other: Container[Any, Any], what: str) -> None:
        if type(other) is not type(self) or other.type != self.type or (
            other.encoding.name != self.encoding.name
        ):
            raise ValidationError(
                f"{what} needs another {type(self).__name__} of {_type_name(self.type)} with "
                f"the same encoding, got {other!r}", key=self.key)

    def _run(self, plan: Plan[Any]) -> Any:
        return self.store.run(plan)

    # ---- key-level operations ---------------------------------------------------------

    def clear_plan(self) -> Plan[bool]:
        record = record_key(self.key)  # in the key's slot: one DEL
        replies = yield Batch([("DEL", self.key), ("DEL", record)], write=True,
                              idempotent=False, keys=(self.key, record))
        forget(self)
        return bool(replies[0])

    @overload
    def clear(self: Container[T, Store]) -> bool: ...
    @overload
    def clear(self: Container[T, AsyncStore]) -> Coroutine[Any, Any, bool]: ...
    def clear(self) -> Any:
        """DEL the key, and its record in the container registry (so the key may hold
        another kind of container next); True if the key existed."""
        return self._run(self.clear_plan())

    def exists_plan(self) -> Plan[bool]:
        replies = yield Batch([("EXISTS", self.key)], keys=(self.key,))
        return bool(replies[0])

    @overload
    def exists(self: Container[T, Store]) -> bool: ...
    @overload
    def exists(self: Container[T, AsyncStore]) -> Coroutine[Any, Any, bool]: ...
    def exists(self) -> Any:
        """EXISTS: False for an empty container (Redis deletes empty lists/sets)."""
        return self._run(self.exists_plan())

    def expire_plan(self, ttl: float | dt.timedelta) -> Plan[bool]:
        ms = _ttl_ms(ttl, self.key)
        record = record_key(self.key)  # the record expires with the key (same slot)
        replies = yield Batch([("PEXPIRE", self.key, ms), ("PEXPIRE", record, ms)],
                              write=True, idempotent=True, keys=(self.key, record))
        return bool(replies[0])

    @overload
    def expire(self: Container[T, Store], ttl: float | dt.timedelta) -> bool: ...
    @overload
    def expire(self: Container[T, AsyncStore], ttl: float | dt.timedelta
               ) -> Coroutine[Any, Any, bool]: ...
    def expire(self, ttl: float | dt.timedelta) -> Any:
        """PEXPIRE: the whole container expires in ``ttl`` seconds; False if it is empty."""
        return self._run(self.expire_plan(ttl))


def _ttl_ms(ttl: Any, key: str) -> int:
    return max(1, round(seconds(ttl, "ttl", most=MAX_TTL_SECONDS, key=key) * 1000))


def _indices(start: Any, stop: Any, key: str, whose: str = "") -> tuple[int, int]:
    return (integer(start, f"{whose}start", key=key), integer(stop, f"{whose}stop", key=key))


def _as_list(reply: Any) -> list[Any]:
    return [] if reply is None else list(reply)


_ZSET_POP = script("zset_pop")
_POP_ROUNDS = 16  # reads a pop makes while other clients keep changing that end


def _text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(reply: Any) -> list[tuple[Any, float]]:
    """``[m, s, m, s]`` (RESP2) or ``[[m, s], ...]`` (RESP3) -> ``[(m, float(s)), ...]``."""
    items = _as_list(reply)
    if items and isinstance(items[0], (list, tuple)):
        return [(m, float(s)) for m, s in items]
    return [(items[i], float(items[i + 1])) for i in range(0, len(items), 2)]


# ---- blocking pops ----------------------------------------------------------------------


def _then(result: Any, finish: Callable[[Any], Any]) -> Any:
    """``finish(result)``, or an awaitable of it when ``result`` is one (an AsyncStore)."""
    if inspect.isawaitable(result):

        async def later() -> Any:
            return finish(await result)

        return later()
    return finish(result)


def _pop_blocking_plan(queues: Sequence[Queue[T, Any]], timeout: float | None, right: bool
                       ) -> Plan[tuple[Queue[T, Any], T] | None]:
    if current_transaction() is not None:
        raise TransactionError(
            "a blocking pop cannot run inside a transaction (inside MULTI it would not "
            "wait); pop before or after it")
    block = block_arg(timeout)
    by_key = {q.key: q for q in queues}
    cmd: Command = ("BRPOP" if right else "BLPOP", *by_key, block)
    replies = yield Batch([cmd], write=True, keys=tuple(by_key))
    reply = replies[0]
    if reply is None:
        return None
    raw_key, raw = reply
    key = raw_key.decode("utf-8") if isinstance(raw_key, bytes) else str(raw_key)
    queue = by_key[key]
    value = yield from queue._decoded_or_set_aside(raw)
    return queue, value


def _blocks(batch: Batch) -> bool:
    """Whether ``batch`` is a blocking pop (else it is a set-aside, sent by the store)."""
    return str(batch.commands[0][0]).upper() in ("BLPOP", "BRPOP")


@overload
def pop_blocking(*queues: Queue[T, Store], timeout: float | None, right: bool = False
                 ) -> tuple[Queue[T, Store], T] | None: ...
@overload
def pop_blocking(*queues: Queue[T, AsyncStore], timeout: float | None, right: bool = False
                 ) -> Coroutine[Any, Any, tuple[Queue[T, AsyncStore], T] | None]: ...
def pop_blocking(*queues: Queue[T, Any], timeout: float | None, right: bool = False) -> Any:
    """BLPOP (BRPOP with ``right=True``) across ``queues``, checked in the order given:
    ``(queue, value)`` from the first non-empty one, or None after ``timeout`` seconds
    (fractions allowed; None waits forever).

    Queues must share a store and a member encoding (and, in a cluster, a hash slot). Runs
    on a dedicated connection that never resends it (see :mod:`redmodel._blocking`); raises
    :class:`TransactionError` inside a transaction.

    At most once: the value is removed when the server sends it, so a value whose reply is
    lost (a dropped connection) is lost too, and :class:`OutcomeUnknownError` names the
    queues (a connection that failed before sending raises the plain redis-py error). A
    wait that a failover or a slot migration interrupts goes on at the new owner.
    :meth:`Queue.consume` is at least once. A
    value that does not decode is set aside (see :meth:`Queue.pop`) before
    :class:`DecodeError` is raised.
    """
    if not queues:
        raise ValidationError("pop_blocking needs at least one queue")
    block_arg(timeout, "pop_blocking's timeout", queues[0].key)
    first = queues[0]
    for q in queues[1:]:
        first._same_kind(q, "pop_blocking")
        if q.store.client is not first.store.client:
            raise ValidationError("pop_blocking's queues must share one store", key=q.key)
    client = first.store.client
    if first.store.cluster and len({key_slot(q.key.encode()) for q in queues}) > 1:
        raise CrossSlotError(
            f"pop_blocking's queues are in different cluster hash slots: "
            f"{[q.key for q in queues][:5]}; one BLPOP can wait on one slot only")
    plan = _pop_blocking_plan(queues, timeout, right)
    for q in reversed(queues):
        plan = guarded(q, plan)
    store: Any = first.store
    if is_async_client(client):  # an AsyncStore: the caller awaits this

        async def execute_async(batch: Batch) -> list[Any]:
            if not _blocks(batch):
                return await store.run(one_batch(batch))  # type: ignore[no-any-return]
            return [await blocking_call_async(client, c, timeout, batch.keys)
                    for c in batch.commands]

        return run_async(plan, execute_async)

    def execute(batch: Batch) -> list[Any]:
        if not _blocks(batch):
            return store.run(one_batch(batch))  # type: ignore[no-any-return]
        return [blocking_call(client, c, timeout, batch.keys) for c in batch.commands]

    return run_sync(plan, execute)


# ---- Queue ------------------------------------------------------------------------------


def trim_is_idempotent(start: int, stop: int) -> bool:
    """Whether ``LTRIM key start stop`` applied twice leaves what it left once. LTRIM keeps
    the values from index ``a = max(0, len + start if start < 0 else start)`` to ``b =
    min(len - 1, len + stop if stop < 0 else stop)``. With ``start <= 0`` and ``stop >=
    -1`` the kept list ``L'`` has ``a' = 0`` on the second run (``len' <= -start`` when
    ``start < 0``) and ``b' = len' - 1`` (``len' - 1 <= stop`` when ``stop >= 0``): all of
    ``L'`` stays. A positive start drops ``start`` more values from the head each time,
    a stop below -1 drops ``-stop - 1`` more from the tail."""
    return start <= 0 and stop >= -1


@guard_plans
class Queue(Container[T, S]):
    """A Redis list of typed values, used as a FIFO queue: :meth:`push` appends at the tail
    (RPUSH), :meth:`pop` takes from the head (LPOP), :meth:`pop_blocking` waits (BLPOP).

    >>> ips = Queue(store, "ips", IPv4Address)        # doctest: +SKIP
    >>> ips.push(IPv4Address("104.174.118.18"))       # doctest: +SKIP
    1
    """

    _WRITES = Container._WRITES | {"push", "push_left", "pop", "pop_right", "trim", "recover"}
    _BLOCKING = frozenset({"pop_blocking", "consume"})

    def push_plan(self, *values: T) -> Plan[int]:
        return self._push("RPUSH", values)

    @overload
    def push(self: Queue[T, Store], *values: T) -> int: ...
    @overload
    def push(self: Queue[T, AsyncStore], *values: T) -> Coroutine[Any, Any, int]: ...
    def push(self, *values: T) -> Any:
        """RPUSH: append at the tail; returns the new length. O(1) per value."""
        return self._run(self.push_plan(*values))

    def push_left_plan(self, *values: T) -> Plan[int]:
        return self._push("LPUSH", values)

    @overload
    def push_left(self: Queue[T, Store], *values: T) -> int: ...
    @overload
    def push_left(self: Queue[T, AsyncStore], *values: T) -> Coroutine[Any, Any, int]: ...
    def push_left(self, *values: T) -> Any:
        """LPUSH: insert at the head (each value in turn, so the last one ends up first);
        returns the new length."""
        return self._run(self.push_left_plan(*values))

    def _push(self, command: str, values: Sequence[T]) -> Plan[int]:
        if not values:
            raise ValidationError(f"{command} needs at least one value", key=self.key)
        data = [self._encode(v) for v in values]
        replies = yield Batch([(command, self.key, *data)], write=True, keys=(self.key,))
        return int(replies[0])

    def pop_plan(self) -> Plan[T | None]:
        return self._pop("LPOP")

    @overload
    def pop(self: Queue[T, Store]) -> T | None: ...
    @overload
    def pop(self: Queue[T, AsyncStore]) -> Coroutine[Any, Any, T | None]: ...
    def pop(self) -> Any:
        """LPOP: the head value, or None when the queue is empty. At most once. A value
        that does not decode is moved to the queue's ``%rejected`` list (one more round
        trip), then :class:`DecodeError` is raised."""
        return self._run(self.pop_plan())

    def pop_right_plan(self) -> Plan[T | None]:
        return self._pop("RPOP")

    @overload
    def pop_right(self: Queue[T, Store]) -> T | None: ...
    @overload
    def pop_right(self: Queue[T, AsyncStore]) -> Coroutine[Any, Any, T | None]: ...
    def pop_right(self) -> Any:
        """RPOP: the tail value (the newest one pushed), or None when empty."""
        return self._run(self.pop_right_plan())

    def _pop(self, command: str) -> Plan[T | None]:
        # In a transaction the reply comes with EXEC, and a transaction sends no write
        # after it: nothing can set an undecodable value aside there.
        in_transaction = current_transaction() is not None
        replies = yield Batch([(command, self.key)], write=True, keys=(self.key,))
        if replies[0] is None:
            return None
        return (yield from self._decoded_or_set_aside(replies[0], not in_transaction))

    def _set_aside_command(self, rejected: str, raws: Sequence[Any]) -> Command:
        return ("RPUSH", rejected, *raws)

    @overload
    def pop_blocking(self: Queue[T, Store], timeout: float | None, *, right: bool = False
                     ) -> T | None: ...
    @overload
    def pop_blocking(self: Queue[T, AsyncStore], timeout: float | None, *, right: bool = False
                     ) -> Coroutine[Any, Any, T | None]: ...
    def pop_blocking(self: Queue[T, Any], timeout: float | None, *, right: bool = False
                     ) -> Any:
        """BLPOP (BRPOP with ``right=True``): the head value, waiting up to ``timeout``
        seconds (fractions allowed, None forever) for one; None on timeout.
        Not in a transaction; see :func:`pop_blocking` for several queues."""
        found = pop_blocking(self, timeout=timeout, right=right)
        return _then(found, lambda f: None if f is None else f[1])

    def range_plan(self, start: int = 0, stop: int = -1) -> Plan[list[T]]:
        start, stop = _indices(start, stop, self.key)
        replies = yield Batch([("LRANGE", self.key, start, stop)], keys=(self.key,))
        return [self._decode(r) for r in _as_list(replies[0])]

    @overload
    def range(self: Queue[T, Store], start: int = 0, stop: int = -1) -> list[T]: ...
    @overload
    def range(self: Queue[T, AsyncStore], start: int = 0, stop: int = -1
              ) -> Coroutine[Any, Any, list[T]]: ...
    def range(self, start: int = 0, stop: int = -1) -> Any:
        """LRANGE: values from index ``start`` to ``stop`` inclusive, as Redis counts
        (negative from the tail; the default is every value), head first. O(S+N)."""
        return self._run(self.range_plan(start, stop))

    def length_plan(self) -> Plan[int]:
        replies = yield Batch([("LLEN", self.key)], keys=(self.key,))
        return int(replies[0])

    @overload
    def length(self: Queue[T, Store]) -> int: ...
    @overload
    def length(self: Queue[T, AsyncStore]) -> Coroutine[Any, Any, int]: ...
    def length(self) -> Any:
        """LLEN: how many values are queued."""
        return self._run(self.length_plan())

    def trim_plan(self, start: int, stop: int) -> Plan[None]:
        start, stop = _indices(start, stop, self.key, "trim's ")
        # LTRIM keeps a window of the list as it is when it runs. A window that starts at
        # the head (start 0) or counts from the tail (start < 0) and ends at or past the
        # tail's count (stop >= -1) keeps all of itself when applied again: resendable.
        # Any other (a positive start, a stop below -1) drops more on each application,
        # so it is never resent (exactly-once mode gives it a write id).
        yield Batch([("LTRIM", self.key, start, stop)], write=True,
                    idempotent=trim_is_idempotent(start, stop), keys=(self.key,))
        return None

    @overload
    def trim(self: Queue[T, Store], start: int, stop: int) -> None: ...
    @overload
    def trim(self: Queue[T, AsyncStore], start: int, stop: int) -> Coroutine[Any, Any, None]: ...
    def trim(self, start: int, stop: int) -> Any:
        """LTRIM: keep only the values from ``start`` to ``stop`` inclusive (``trim(0, 99)``
        keeps the 100 at the head, ``trim(-100, -1)`` the 100 at the tail).

        Those caps (``start <= 0`` and ``stop >= -1``) change nothing when applied twice,
        so a lost reply is resent. A trim that drops from an end by a count (``trim(1,
        -1)`` drops the head, ``trim(0, -2)`` the tail) drops more each time it runs: a
        lost reply raises :class:`OutcomeUnknownError` (in exactly-once mode the store
        resends it under its write id and it returns, applied once)."""
        return self._run(self.trim_plan(start, stop))

    @overload
    def consume(
        self: Queue[T, Store],
        *,
        sentinel: Any = None,
        max_items: int | None = None,
        idle_timeout: float | None = None,
        poll: float = 1.0,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
        name: str | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        reliable: bool = True,
    ) -> Consumer[T]: ...
    @overload
    def consume(
        self: Queue[T, AsyncStore],
        *,
        sentinel: Any = None,
        max_items: int | None = None,
        idle_timeout: float | None = None,
        poll: float = 1.0,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
        name: str | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        reliable: bool = True,
    ) -> AsyncConsumer[T]: ...
    def consume(
        self: Queue[T, Any],
        *,
        sentinel: Any = None,
        max_items: int | None = None,
        idle_timeout: float | None = None,
        poll: float = 1.0,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
        name: str | None = None,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        reliable: bool = True,
    ) -> Any:
        """A :class:`Consumer` (an :class:`AsyncConsumer` on an AsyncStore): iterate it to
        get values one by one, at least once. Each is moved into this consumer's in-flight
        list (LMOVE in a script; while the queue is empty it waits with a BLMOVE of the
        queue onto itself, which moves nothing) and acknowledged when the next is asked
        for; a consumer that dies has its items returned to the queue by another
        after ``visibility_timeout`` seconds without a heartbeat, or takes them back when
        it restarts under the same ``name``. ``reliable=False``: the at-most-once BLPOP
        loop. Stops on a signal, the ``sentinel`` value, ``max_items`` values or
        ``idle_timeout`` seconds without a value; see :class:`Consumer`."""
        if current_transaction() is not None:
            raise TransactionError("a consumer cannot run inside a transaction (it blocks, "
                                   "and inside MULTI a blocking pop does not wait)")
        return make_consumer(self, sentinel=sentinel, max_items=max_items,
                             idle_timeout=idle_timeout, poll=poll, signals=signals, name=name,
                             visibility_timeout=visibility_timeout, reliable=reliable)

    def recover_plan(self) -> Plan[int]:
        return recover_plan(ConsumerKeys.of(self.key))

    @overload
    def recover(self: Queue[T, Store]) -> int: ...
    @overload
    def recover(self: Queue[T, AsyncStore]) -> Coroutine[Any, Any, int]: ...
    def recover(self) -> Any:
        """Return the in-flight items of every consumer whose heartbeat is older than its
        visibility timeout to the head of the queue, and unregister those consumers: one
        ``consume_recover`` script (two when it finds stale consumers). How many items
        came back. Consumers do this themselves at each take; call it when none runs."""
        return self._run(self.recover_plan())

    def in_flight_plan(self) -> Plan[dict[str, list[T]]]:
        found = yield from in_flight_plan(ConsumerKeys.of(self.key))
        return {name: [self._decode(r) for r in raw] for name, (_, raw) in found.items()}

    @overload
    def in_flight(self: Queue[T, Store]) -> dict[str, list[T]]: ...
    @overload
    def in_flight(self: Queue[T, AsyncStore]) -> Coroutine[Any, Any, dict[str, list[T]]]: ...
    def in_flight(self) -> Any:
        """Every registered consumer's unacknowledged items, by consumer name (ZRANGE of
        the consumers, then LRANGE of each in-flight list)."""
        return self._run(self.in_flight_plan())


# ---- Set --------------------------------------------------------------------------------


@guard_plans
class Set(Container[T, S]):
    """A Redis set of typed values. Equal values are the same member (members are encoded
    canonically), so ``Set(store, day, IPv4Address)`` counts each address once."""

    _WRITES = Container._WRITES | {"add", "remove", "pop"}
    _deterministic_members = True

    def _hashable(self, what: str) -> None:
        if getattr(self.type, "__hash__", None) is None:
            raise ValidationError(
                f"{what} returns a Python set, but {_type_name(self.type)} is not hashable; "
                "use members_list()", key=self.key)

    def add_plan(self, *values: T) -> Plan[int]:
        return self._change("SADD", values)

    @overload
    def add(self: Set[T, Store], *values: T) -> int: ...
    @overload
    def add(self: Set[T, AsyncStore], *values: T) -> Coroutine[Any, Any, int]: ...
    def add(self, *values: T) -> Any:
        """SADD: add values; returns how many were not members yet."""
        return self._run(self.add_plan(*values))

    def remove_plan(self, *values: T) -> Plan[int]:
        return self._change("SREM", values)

    @overload
    def remove(self: Set[T, Store], *values: T) -> int: ...
    @overload
    def remove(self: Set[T, AsyncStore], *values: T) -> Coroutine[Any, Any, int]: ...
    def remove(self, *values: T) -> Any:
        """SREM: remove values; returns how many were members."""
        return self._run(self.remove_plan(*values))

    def _change(self, command: str, values: Sequence[T]) -> Plan[int]:
        if not values:
            raise ValidationError(f"{command} needs at least one value", key=self.key)
        data = [self._encode(v) for v in values]
        replies = yield Batch([(command, self.key, *data)], write=True, keys=(self.key,))
        return int(replies[0])

    def members_list_plan(self) -> Plan[list[T]]:
        replies = yield Batch([("SMEMBERS", self.key)], keys=(self.key,))
        return [self._decode(r) for r in _as_list(replies[0])]

    @overload
    def members_list(self: Set[T, Store]) -> list[T]: ...
    @overload
    def members_list(self: Set[T, AsyncStore]) -> Coroutine[Any, Any, list[T]]: ...
    def members_list(self) -> Any:
        """SMEMBERS as a list, in no particular order (for unhashable member types)."""
        return self._run(self.members_list_plan())

    def members_plan(self) -> Plan[set[T]]:
        self._hashable("members")
        found = yield from self.members_list_plan()
        return set(found)

    @overload
    def members(self: Set[T, Store]) -> set[T]: ...
    @overload
    def members(self: Set[T, AsyncStore]) -> Coroutine[Any, Any, set[T]]: ...
    def members(self) -> Any:
        """SMEMBERS: every member. O(N)."""
        return self._run(self.members_plan())

    def contains_plan(self, value: T) -> Plan[bool]:
        data = self._encode(value)
        replies = yield Batch([("SISMEMBER", self.key, data)], keys=(self.key,))
        return bool(replies[0])

    @overload
    def contains(self: Set[T, Store], value: T) -> bool: ...
    @overload
    def contains(self: Set[T, AsyncStore], value: T) -> Coroutine[Any, Any, bool]: ...
    def contains(self, value: T) -> Any:
        """SISMEMBER. O(1)."""
        return self._run(self.contains_plan(value))

    def __contains__(self: Set[T, Store], value: object) -> bool:
        """``value in a_set``: :meth:`contains` on a sync Store. On an AsyncStore ``in``
        cannot await, so it raises TypeError: use ``await a_set.contains(value)``."""
        if inspect.iscoroutinefunction(self.store.run):
            raise TypeError(f"Set {self.key!r} is on an AsyncStore: `in` cannot await; use "
                            "`await s.contains(value)`")
        return self.contains(value)  # type: ignore[arg-type]

    def cardinality_plan(self) -> Plan[int]:
        replies = yield Batch([("SCARD", self.key)], keys=(self.key,))
        return int(replies[0])

    @overload
    def cardinality(self: Set[T, Store]) -> int: ...
    @overload
    def cardinality(self: Set[T, AsyncStore]) -> Coroutine[Any, Any, int]: ...
    def cardinality(self) -> Any:
        """SCARD: how many members. O(1)."""
        return self._run(self.cardinality_plan())

    def pop_plan(self) -> Plan[T | None]:
        in_transaction = current_transaction() is not None
        replies = yield Batch([("SPOP", self.key)], write=True, keys=(self.key,))
        if replies[0] is None:
            return None
        return (yield from self._decoded_or_set_aside(replies[0], not in_transaction))

    @overload
    def pop(self: Set[T, Store]) -> T | None: ...
    @overload
    def pop(self: Set[T, AsyncStore]) -> Coroutine[Any, Any, T | None]: ...
    def pop(self) -> Any:
        """SPOP: remove and return a random member; None when empty. A member that does not
        decode is moved to the set's ``%rejected`` set (``SADD``, one more round trip),
        then :class:`DecodeError` is raised (as :meth:`Queue.pop` does)."""
        return self._run(self.pop_plan())

    def _set_aside_command(self, rejected: str, raws: Sequence[Any]) -> Command:
        return ("SADD", rejected, *raws)

    def _algebra(self, command: str, others: Sequence[Set[T, Any]]) -> Plan[set[T]]:
        self._hashable(command)
        for other in others:
            self._same_kind(other, command)
        keys = (self.key, *(o.key for o in others))
        replies = yield Batch([(command, *keys)], keys=keys)
        return {self._decode(r) for r in _as_list(replies[0])}

    def union_plan(self, *others: Set[T, Any]) -> Plan[set[T]]:
        return self._algebra("SUNION", others)

    @overload
    def union(self: Set[T, Store], *others: Set[T, Any]) -> set[T]: ...
    @overload
    def union(self: Set[T, AsyncStore], *others: Set[T, Any]) -> Coroutine[Any, Any, set[T]]: ...
    def union(self, *others: Set[T, Any]) -> Any:
        """SUNION: members of this set or any of ``others`` (same type and encoding)."""
        return self._run(self.union_plan(*others))

    def intersection_plan(self, *others: Set[T, Any]) -> Plan[set[T]]:
        return self._algebra("SINTER", others)

    @overload
    def intersection(self: Set[T, Store], *others: Set[T, Any]) -> set[T]: ...
    @overload
    def intersection(self: Set[T, AsyncStore], *others: Set[T, Any]
                     ) -> Coroutine[Any, Any, set[T]]: ...
    def intersection(self, *others: Set[T, Any]) -> Any:
        """SINTER: members of this set that are in every one of ``others``."""
        return self._run(self.intersection_plan(*others))

    def difference_plan(self, *others: Set[T, Any]) -> Plan[set[T]]:
        return self._algebra("SDIFF", others)

    @overload
    def difference(self: Set[T, Store], *others: Set[T, Any]) -> set[T]: ...
    @overload
    def difference(self: Set[T, AsyncStore], *others: Set[T, Any]
                   ) -> Coroutine[Any, Any, set[T]]: ...
    def difference(self, *others: Set[T, Any]) -> Any:
        """SDIFF: members of this set that are in none of ``others``."""
        return self._run(self.difference_plan(*others))


# ---- SortedSet --------------------------------------------------------------------------

Bound = float | str


def _score(value: Any, key: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"a score must be a number (not NaN), got {type(value).__name__}",
                              key=key)
    try:
        score = float(value)
    except OverflowError:  # an int past the largest double
        raise ValidationError(f"a score must fit a double (at most about 1.8e308), got an "
                              f"int of {int(value).bit_length()} bits", key=key) from None
    if math.isnan(score):
        raise ValidationError("a score must be a number (not NaN), got NaN", key=key)
    return repr(score).encode()


def _bound(value: Bound, key: str) -> bytes:
    if isinstance(value, str):
        text = value.strip()
        body = text[1:] if text.startswith("(") else text
        try:
            if math.isnan(float(body)):
                raise ValueError(body)
        except ValueError:
            raise ValidationError(
                f"a score bound is a number, '-inf', '+inf', or '(' and a number for an "
                f"exclusive bound; got {value!r}", key=key) from None
        return text.encode()
    return _score(value, key)


@guard_plans
class SortedSet(Container[T, S]):
    """A Redis sorted set of typed members with float scores, ordered by score (then by
    the members' stored bytes)."""

    _WRITES = Container._WRITES | {"add", "add_many", "incr", "remove", "pop_min", "pop_max"}
    _deterministic_members = True

    def add_many_plan(
        self,
        scores: Mapping[T, float] | Iterable[tuple[T, float]],
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> Plan[int]:
        pairs = scores.items() if isinstance(scores, Mapping) else scores
        args: list[Any] = []
        for member, score in pairs:
            args += [_score(score, self.key), self._encode(member)]
        if not args:
            raise ValidationError("ZADD needs at least one member", key=self.key)
        flags = [name.upper() for name, on in (("nx", nx), ("xx", xx), ("gt", gt),
                                               ("lt", lt)) if on]
        replies = yield Batch([("ZADD", self.key, *flags, *args)], write=True,
                              keys=(self.key,))
        return int(replies[0])

    @overload
    def add_many(
        self: SortedSet[T, Store],
        scores: Mapping[T, float] | Iterable[tuple[T, float]],
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> int: ...
    @overload
    def add_many(
        self: SortedSet[T, AsyncStore],
        scores: Mapping[T, float] | Iterable[tuple[T, float]],
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> Coroutine[Any, Any, int]: ...
    def add_many(
        self,
        scores: Mapping[T, float] | Iterable[tuple[T, float]],
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> Any:
        """ZADD [NX|XX] [GT|LT]: set the scores of several members (a mapping or pairs);
        returns how many members were new. O(log N) per member."""
        return self._run(self.add_many_plan(scores, nx=nx, xx=xx, gt=gt, lt=lt))

    def add_plan(self, member: T, score: float, *, nx: bool = False, xx: bool = False,
                 gt: bool = False, lt: bool = False) -> Plan[int]:
        return self.add_many_plan([(member, score)], nx=nx, xx=xx, gt=gt, lt=lt)

    @overload
    def add(self: SortedSet[T, Store], member: T, score: float, *, nx: bool = False,
            xx: bool = False, gt: bool = False, lt: bool = False) -> int: ...
    @overload
    def add(self: SortedSet[T, AsyncStore], member: T, score: float, *, nx: bool = False,
            xx: bool = False, gt: bool = False, lt: bool = False) -> Coroutine[Any, Any, int]: ...
    def add(self, member: T, score: float, *, nx: bool = False, xx: bool = False,
            gt: bool = False, lt: bool = False) -> Any:
        """ZADD of one member; 1 if it was new, 0 if only its score changed."""
        return self._run(self.add_plan(member, score, nx=nx, xx=xx, gt=gt, lt=lt))

    def incr_plan(self, member: T, amount: float = 1) -> Plan[float]:
        data = self._encode(member)
        replies = yield Batch([("ZINCRBY", self.key, _score(amount, self.key), data)],
                              write=True, keys=(self.key,))
        return float(replies[0])

    @overload
    def incr(self: SortedSet[T, Store], member: T, amount: float = 1) -> float: ...
    @overload
    def incr(self: SortedSet[T, AsyncStore], member: T, amount: float = 1
             ) -> Coroutine[Any, Any, float]: ...
    def incr(self, member: T, amount: float = 1) -> Any:
        """ZINCRBY: add ``amount`` to the member's score (from 0 if new); the new score."""
        return self._run(self.incr_plan(member, amount))

    def remove_plan(self, *members: T) -> Plan[int]:
        if not members:
            raise ValidationError("ZREM needs at least one member", key=self.key)
        data = [self._encode(m) for m in members]
        replies = yield Batch([("ZREM", self.key, *data)], write=True, keys=(self.key,))
        return int(replies[0])

    @overload
    def remove(self: SortedSet[T, Store], *members: T) -> int: ...
    @overload
    def remove(self: SortedSet[T, AsyncStore], *members: T) -> Coroutine[Any, Any, int]: ...
    def remove(self, *members: T) -> Any:
        """ZREM: remove members; returns how many were there."""
        return self._run(self.remove_plan(*members))

    def score_plan(self, member: T) -> Plan[float | None]:
        data = self._encode(member)
        replies = yield Batch([("ZSCORE", self.key, data)], keys=(self.key,))
        return None if replies[0] is None else float(replies[0])

    @overload
    def score(self: SortedSet[T, Store], member: T) -> float | None: ...
    @overload
    def score(self: SortedSet[T, AsyncStore], member: T) -> Coroutine[Any, Any, float | None]: ...
    def score(self, member: T) -> Any:
        """ZSCORE: the member's score, None if it is not a member."""
        return self._run(self.score_plan(member))

    def rank_plan(self, member: T, *, reverse: bool = False) -> Plan[int | None]:
        data = self._encode(member)
        cmd = "ZREVRANK" if reverse else "ZRANK"
        replies = yield Batch([(cmd, self.key, data)], keys=(self.key,))
        return None if replies[0] is None else int(replies[0])

    @overload
    def rank(self: SortedSet[T, Store], member: T, *, reverse: bool = False) -> int | None: ...
    @overload
    def rank(self: SortedSet[T, AsyncStore], member: T, *, reverse: bool = False
             ) -> Coroutine[Any, Any, int | None]: ...
    def rank(self, member: T, *, reverse: bool = False) -> Any:
        """ZRANK (ZREVRANK with ``reverse``): 0-based position by ascending (descending)
        score; None if not a member. O(log N)."""
        return self._run(self.rank_plan(member, reverse=reverse))

    def cardinality_plan(self) -> Plan[int]:
        replies = yield Batch([("ZCARD", self.key)], keys=(self.key,))
        return int(replies[0])

    @overload
    def cardinality(self: SortedSet[T, Store]) -> int: ...
    @overload
    def cardinality(self: SortedSet[T, AsyncStore]) -> Coroutine[Any, Any, int]: ...
    def cardinality(self) -> Any:
        """ZCARD: how many members."""
        return self._run(self.cardinality_plan())

    def _range(self, args: Sequence[Any]) -> Plan[list[tuple[T, float]]]:
        replies = yield Batch([("ZRANGE", self.key, *args, "WITHSCORES")], keys=(self.key,))
        return [(self._decode(m), s) for m, s in _pairs(replies[0])]

    def range_with_scores_plan(self, start: int = 0, stop: int = -1, *, reverse: bool = False
                               ) -> Plan[list[tuple[T, float]]]:
        start, stop = _indices(start, stop, self.key)
        return self._range([start, stop, *(["REV"] if reverse else [])])

    @overload
    def range_with_scores(self: SortedSet[T, Store], start: int = 0, stop: int = -1, *,
                          reverse: bool = False) -> list[tuple[T, float]]: ...
    @overload
    def range_with_scores(self: SortedSet[T, AsyncStore], start: int = 0, stop: int = -1, *,
                          reverse: bool = False) -> Coroutine[Any, Any, list[tuple[T, float]]]: ...
    def range_with_scores(self, start: int = 0, stop: int = -1, *, reverse: bool = False
                          ) -> Any:
        """ZRANGE start stop [REV] WITHSCORES: ``(member, score)`` pairs by rank, ``start``
        to ``stop`` inclusive (negative from the end). O(log N + M)."""
        return self._run(self.range_with_scores_plan(start, stop, reverse=reverse))

    def range_plan(self, start: int = 0, stop: int = -1, *, reverse: bool = False
                   ) -> Plan[list[T]]:
        pairs = yield from self.range_with_scores_plan(start, stop, reverse=reverse)
        return [m for m, _ in pairs]

    @overload
    def range(self: SortedSet[T, Store], start: int = 0, stop: int = -1, *,
              reverse: bool = False) -> list[T]: ...
    @overload
    def range(self: SortedSet[T, AsyncStore], start: int = 0, stop: int = -1, *,
              reverse: bool = False) -> Coroutine[Any, Any, list[T]]: ...
    def range(self, start: int = 0, stop: int = -1, *, reverse: bool = False) -> Any:
        """Like :meth:`range_with_scores`, members only (the scores still come back)."""
        return self._run(self.range_plan(start, stop, reverse=reverse))

    def range_by_score_with_scores_plan(
        self, min: Bound = "-inf", max: Bound = "+inf", *, reverse: bool = False,
        offset: int = 0, count: int | None = None,
    ) -> Plan[list[tuple[T, float]]]:
        lo, hi = _bound(min, self.key), _bound(max, self.key)
        offset = integer(offset, "offset", key=self.key, least=0)
        if count is not None:
            count = integer(count, "count", key=self.key, least=0)
        args: list[Any] = [hi, lo, "BYSCORE", "REV"] if reverse else [lo, hi, "BYSCORE"]
        if count is not None or offset:
            args += ["LIMIT", offset, -1 if count is None else count]
        return self._range(args)

    @overload
    def range_by_score_with_scores(
        self: SortedSet[T, Store], min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None,
    ) -> list[tuple[T, float]]: ...
    @overload
    def range_by_score_with_scores(
        self: SortedSet[T, AsyncStore], min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None,
    ) -> Coroutine[Any, Any, list[tuple[T, float]]]: ...
    def range_by_score_with_scores(
        self, min: Bound = "-inf", max: Bound = "+inf", *, reverse: bool = False,
        offset: int = 0, count: int | None = None,
    ) -> Any:
        """ZRANGE min max BYSCORE [REV] [LIMIT offset count] WITHSCORES: ``(member, score)``
        pairs with ``min <= score <= max`` (a bound may be ``"(5"`` for exclusive,
        ``"-inf"``/``"+inf"``), ascending, or descending with ``reverse``."""
        return self._run(self.range_by_score_with_scores_plan(
            min, max, reverse=reverse, offset=offset, count=count))

    def range_by_score_plan(
        self, min: Bound = "-inf", max: Bound = "+inf", *, reverse: bool = False,
        offset: int = 0, count: int | None = None,
    ) -> Plan[list[T]]:
        pairs = yield from self.range_by_score_with_scores_plan(
            min, max, reverse=reverse, offset=offset, count=count)
        return [m for m, _ in pairs]

    @overload
    def range_by_score(
        self: SortedSet[T, Store], min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None,
    ) -> list[T]: ...
    @overload
    def range_by_score(
        self: SortedSet[T, AsyncStore], min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None,
    ) -> Coroutine[Any, Any, list[T]]: ...
    def range_by_score(
        self, min: Bound = "-inf", max: Bound = "+inf", *, reverse: bool = False,
        offset: int = 0, count: int | None = None,
    ) -> Any:
        """Like :meth:`range_by_score_with_scores`, members only."""
        return self._run(self.range_by_score_plan(
            min, max, reverse=reverse, offset=offset, count=count))

    def _pop(self, command: str, count: int) -> Plan[list[tuple[T, float]]]:
        count = integer(count, "count", key=self.key, least=1)
        if current_transaction() is not None:
            return (yield from self._pop_in_transaction(command, count))
        # Read the members at that end, decode them, then pop in one script only members
        # read and decoded: none is taken out and put back, so a concurrent ZINCRBY, ZADD
        # or ZREM of one is never lost or undone. One that does not decode is moved to
        # %rejected by that script and nothing else is taken (then DecodeError).
        rejected = ConsumerKeys.of(self.key).rejected
        end = "max" if command == "ZPOPMAX" else "min"
        out: list[tuple[T, float]] = []
        for _ in range(_POP_ROUNDS):
            want = count - len(out)
            replies = yield Batch([("ZRANGE", self.key, 0, want - 1,
                                    *(["REV"] if end == "max" else []), "WITHSCORES")],
                                  keys=(self.key,))
            head = _pairs(replies[0])
            if not head:
                break
            values: dict[bytes, T] = {}
            marks: list[Any] = []
            error: DecodeError | None = None
            blocked = False  # a later round met a member that does not decode
            for raw, _ in head:
                try:
                    values[raw] = self._decode(raw)
                except DecodeError as failed:
                    if out:  # return what was popped; the next call sets it aside
                        blocked = True
                        break
                    error = error or failed
                    marks += [raw, b"0"]
                    continue
                marks += [raw, b"1"]
            if not marks:
                break
            replies = yield Batch([_ZSET_POP.call([self.key, rejected],
                                                  [end, len(marks) // 2, *marks])],
                                  write=True, keys=(self.key, rejected))
            word, found = replies[0]
            if _text_of(word) == "REJECTED":
                assert error is not None
                n = int(found)
                moved = "it" if n == 1 else f"the {n} members that do not decode"
                raise DecodeError(f"{error.reason}; the pop moved {moved} to {rejected!r} and "
                                  "took nothing else", model=error.model, key=error.key,
                                  field=error.field, codec=error.codec) from None
            got = _pairs(found)
            out += [(values[raw], score) for raw, score in got]
            if len(out) >= count or blocked or (len(got) == len(head) < want):
                break  # done, or the set held no more than it read
        return out

    def _pop_in_transaction(self, command: str, count: int) -> Plan[list[tuple[T, float]]]:
        """ZPOPMIN/ZPOPMAX queued in the transaction: nothing can be sent after EXEC, so a
        member that does not decode (and those popped with it) is lost."""
        replies = yield Batch([(command, self.key, count)], write=True, keys=(self.key,))
        popped = _pairs(replies[0])
        good: list[tuple[T, float]] = []
        error: DecodeError | None = None
        for member, score in popped:
            try:
                good.append((self._decode(member), score))
            except DecodeError as failed:
                error = error or failed
        if error is None:
            return good
        rejected = ConsumerKeys.of(self.key).rejected
        lost = f" (and the {len(good)} other members popped with it)" if good else ""
        raise DecodeError(
            f"{error.reason}; it was popped in a transaction, which can send nothing after "
            f"EXEC, so it could not be set aside in {rejected!r}: it is lost{lost}",
            model=error.model, key=error.key, field=error.field, codec=error.codec) from None

    def pop_min_plan(self, count: int = 1) -> Plan[list[tuple[T, float]]]:
        return self._pop("ZPOPMIN", count)

    @overload
    def pop_min(self: SortedSet[T, Store], count: int = 1) -> list[tuple[T, float]]: ...
    @overload
    def pop_min(self: SortedSet[T, AsyncStore], count: int = 1
                ) -> Coroutine[Any, Any, list[tuple[T, float]]]: ...
    def pop_min(self, count: int = 1) -> Any:
        """Remove and return up to ``count`` lowest-scored ``(member, score)`` pairs,
        lowest first; ``[]`` when empty. Reads them (ZRANGE), decodes them, then pops in
        one script (ZPOPMIN) only members it read and decoded that are still the lowest, so
        no member is ever taken out and put back. When one does not decode, that script
        moves it (with its score) to the sorted set's ``%rejected`` sorted set and takes
        nothing else, and :class:`DecodeError` is raised (docs/containers.md)."""
        return self._run(self.pop_min_plan(count))

    def pop_max_plan(self, count: int = 1) -> Plan[list[tuple[T, float]]]:
        return self._pop("ZPOPMAX", count)

    @overload
    def pop_max(self: SortedSet[T, Store], count: int = 1) -> list[tuple[T, float]]: ...
    @overload
    def pop_max(self: SortedSet[T, AsyncStore], count: int = 1
                ) -> Coroutine[Any, Any, list[tuple[T, float]]]: ...
    def pop_max(self, count: int = 1) -> Any:
        """ZPOPMAX: like :meth:`pop_min` from the top, highest first."""
        return self._run(self.pop_max_plan(count))


# ---- WindowCounter ----------------------------------------------------------------------


_LATEST = 2.0**62  # seconds: a window's start stays an int Redis can store an expiry for


@guard_plans
class WindowCounter(Generic[S]):
    """Counts events per subject in fixed time windows (the tutorial's visits per address
    per minute): one string key per subject and window, ``prefix:subject:start`` (the
    window's start in Unix seconds), expiring when its window ends.

    >>> visits = WindowCounter(store, "visits", window=60)   # doctest: +SKIP
    >>> visits.incr(IPv4Address("104.174.118.18"))          # doctest: +SKIP
    1

    ``clock`` (default :func:`time.time`) gives the current time in seconds. Windows are
    aligned to multiples of ``window`` seconds since the epoch, so every client with a
    synchronised clock counts into the same key.
    """

    _WRITES: ClassVar[frozenset[str]] = frozenset({"incr", "reset"})
    _BLOCKING: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, store: S, key_prefix: Any, *, window: float | dt.timedelta = 60,
                 clock: Callable[[], float] = time.time) -> None:
        key = container_key(key_prefix)
        length = window.total_seconds() if isinstance(window, dt.timedelta) else window
        if isinstance(length, bool) or not isinstance(length, (int, float)) or not (
            1 <= length <= MAX_TTL_SECONDS and length == int(length)  # NaN, inf fail here
        ):
            raise ValidationError(f"window must be a whole number of seconds from 1 to "
                                  f"{MAX_TTL_SECONDS:.0e}, got {window!r}", key=key)
        self.store = store
        self.key = key
        self.window = int(length)
        self.clock = clock

    def __repr__(self) -> str:
        return f"WindowCounter({self.key!r}, window={self.window})"

    def in_tx(self, tx: Transaction | AsyncTransaction) -> InTransaction[Any]:
        """Run :meth:`incr` (queued) and :meth:`get` (at once, WATCHed) through ``tx``."""
        return InTransaction(self, tx)

    def window_start(self, at: float | None = None) -> int:
        """Unix seconds at which the window holding ``at`` (default now) began."""
        now = self.clock() if at is None else at
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not (
                -_LATEST <= now <= _LATEST):  # NaN and infinities fail too
            raise ValidationError(f"a time must be a finite number of Unix seconds, got "
                                  f"{now!r}" + (" from the clock" if at is None else ""),
                                  key=self.key)
        return int(now // self.window) * self.window

    def key_for(self, subject: Any, at: float | None = None) -> str:
        """The key counting ``subject`` in the window holding ``at`` (default now)."""
        return f"{self.key}:{container_key(subject)}:{self.window_start(at)}"

    def incr_plan(self, subject: Any, amount: int = 1) -> Plan[int]:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValidationError(f"amount must be an int, got {type(amount).__name__}",
                                  key=self.key)
        integer(amount, "amount", key=self.key)
        now = self.clock()
        key = self.key_for(subject, now)
        left_ms = max(1, math.ceil((self.window_start(now) + self.window - now) * 1000))
        replies = yield Batch([("INCRBY", key, amount), ("PEXPIRE", key, left_ms)],
                              atomic=True, write=True, keys=(key,))
        return int(replies[0])

    @overload
    def incr(self: WindowCounter[Store], subject: Any, amount: int = 1) -> int: ...
    @overload
    def incr(self: WindowCounter[AsyncStore], subject: Any, amount: int = 1
             ) -> Coroutine[Any, Any, int]: ...
    def incr(self, subject: Any, amount: int = 1) -> Any:
        """INCRBY and PEXPIRE (to the end of the current window) in one MULTI/EXEC round
        trip; returns the subject's count in the current window, this event included."""
        return self.store.run(self.incr_plan(subject, amount))

    def get_plan(self, subject: Any) -> Plan[int]:
        key = self.key_for(subject)
        replies = yield Batch([("GET", key)], keys=(key,))
        raw = replies[0]
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            raise DecodeError("stored counter is not an integer", key=key) from None

    @overload
    def get(self: WindowCounter[Store], subject: Any) -> int: ...
    @overload
    def get(self: WindowCounter[AsyncStore], subject: Any) -> Coroutine[Any, Any, int]: ...
    def get(self, subject: Any) -> Any:
        """GET: the subject's count in the current window (0 if none yet)."""
        return self.store.run(self.get_plan(subject))

    def reset_plan(self, subject: Any) -> Plan[bool]:
        key = self.key_for(subject)
        replies = yield Batch([("DEL", key)], write=True, keys=(key,))
        return bool(replies[0])

    @overload
    def reset(self: WindowCounter[Store], subject: Any) -> bool: ...
    @overload
    def reset(self: WindowCounter[AsyncStore], subject: Any) -> Coroutine[Any, Any, bool]: ...
    def reset(self, subject: Any) -> Any:
        """DEL: forget the subject's count in the current window; True if it had one."""
        return self.store.run(self.reset_plan(subject))

    def _forget_plan(self) -> Plan[bool]:
        record = record_key(self.key)
        replies = yield Batch([("DEL", record)], write=True, idempotent=True, keys=(record,))
        forget(self)
        return bool(replies[0])

    @overload
    def forget(self: WindowCounter[Store]) -> bool: ...
    @overload
    def forget(self: WindowCounter[AsyncStore]) -> Coroutine[Any, Any, bool]: ...
    def forget(self) -> Any:
        """DEL the counter's record in the container registry (a tear-down: its window keys
        expire by themselves), so that its prefix may count with another window next; True
        if there was one."""
        return self.store.run(self._forget_plan())

