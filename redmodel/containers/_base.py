"""What every container shares: container keys (:func:`container_key`), member encodings
(:class:`Members`: scalars as their Redis string, anything else through a canonical codec
chain), the base class :class:`Container` (bound to a store and one key; every method a
``<name>_plan`` and a run of it) and the transaction handle :class:`InTransaction`.

Every method exists twice: ``<name>_plan(...)`` is the sans-I/O plan (a generator of
:class:`~redmodel._plan.Batch` es) and ``<name>(...)`` runs it through the store. Inside a
transaction, ``container.in_tx(tx).<name>(...)`` runs reads at once (WATCHing the key) and
queues writes (returning a :class:`~redmodel.transactions.Pending`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import ipaddress
import types
import typing
import uuid
import weakref
from collections.abc import Callable, Coroutine, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar, Generic, Protocol, TypeVar, overload

import attrs
import cattrs
from cattrs.fns import identity
from typing_extensions import TypeVar as DefaultTypeVar

from redmodel._args import MAX_TTL_SECONDS, int_too_long, integer, seconds, shown, unsendable
from redmodel._container_registry import forget, record_key, unmark_commands
from redmodel._errors import (
    CONNECTION_ERRORS,
    DecodeError,
    ModelDefinitionError,
    OutcomeUnknownError,
    ServerError,
    TransactionError,
    ValidationError,
)
from redmodel._models._hidden import check_members_encrypted
from redmodel._models._keys import escape
from redmodel._models._types import (
    NAN_MEMBER,
    BadValueError,
    Checker,
    holds,
    holds_nan,
    indefinite,
    is_type_form,
    make_checker,
    optional_inner,
    scalar,
    type_shown,
)
from redmodel._plan import Batch, Command, Plan, script
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store
from redmodel.codecs import Codec
from redmodel.codecs import codec as resolve_codec
from redmodel.containers._consumer import (
    ConsumerKeys,
)
from redmodel.transactions._handles import AsyncTransaction, Transaction
from redmodel.transactions._policy import Pending

__all__ = [
    "Container",
    "ContainerInAsyncTx",
    "ContainerInTx",
    "InTransaction",
    "Members",
    "S",
    "container_key",
    "members_of",
]

# named S (not S_co) as docs/design.md writes it: Queue[T, S]
S = DefaultTypeVar("S", bound="Store | AsyncStore", default="Store", covariant=True)  # noqa: PLC0105
"""The store a container is bound to: its methods are overloaded on ``self``, returning the
value on a :class:`~redmodel.Store` and a coroutine of it on an :class:`~redmodel.AsyncStore`
(docs/design.md). The default keeps ``Queue[int]`` meaning ``Queue[int, Store]``."""

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
        too_long = int_too_long(part)
        if too_long is not None:  # str() of it raises a bare ValueError
            raise ValidationError(f"a container key part cannot be {too_long}", key=None)
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
            key=None if isinstance(whole, (dict, list, bytes)) else shown(whole),
        )
    if not text:
        raise ValidationError("a container key part must not be empty", key=repr(whole))
    if unsendable(text):
        raise ValidationError("a container key part must be UTF-8-encodable text (no lone "
                              "surrogate)", key=repr(whole))
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
        except Exception as e:  # any failure: a value the chain cannot encode (as Codec)
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
    (unless ``codec`` is given), else the codec chain (default ``"json"``). A ``tp`` that
    is no type (a list, an object, None, a str) raises ModelDefinitionError naming
    ``where`` (the container and its key) and only the type of what was given."""
    if not is_type_form(tp):
        raise ModelDefinitionError(
            f"{where}: the member type must be a type (str, int, an attrs class, "
            f"list[str], X | None, ...), got {type_shown(tp)}")
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
            check = make_checker(tp, where, sealed=chain.encrypts)
        except ModelDefinitionError as e:
            raise ModelDefinitionError(f"{e} (container members)") from None
    return Members(tp, chain.name, _chain_encoder(chain, tp), chain.decoder(tp), check,
                   deterministic=not chain.holds_keys)


_SNAN = ("a signalling NaN Decimal (Decimal('sNaN')) cannot be a member: it cannot be "
         "compared or hashed")
_PLAIN = (str, bytes, int, float, bool, type(None))


def _snan(value: Any) -> bool | None:
    if isinstance(value, decimal.Decimal):
        return value.is_snan()
    return False if isinstance(value, _PLAIN) else None


def _holds_snan(value: Any) -> bool:
    """Whether ``value`` is or holds (:func:`holds`) a signalling NaN ``Decimal``: a value
    that is stored as the text ``sNaN`` and reads back, but raises on every comparison and
    hash (``==``, a set, a sentinel), so a container refuses it as a member."""
    return holds(value, _snan)


# a put-back certainly not applied (a plain connection error: never sent, or fenced) is
# sent again: it is the member's last way home; at most this many times, after pauses of
# 0.02, 0.04, ... seconds (at most 0.5): about 5 s in all
_PUT_BACK_TRIES = 16
_PUT_BACK_PAUSE = 0.02
_PUT_BACK_LONGEST = 0.5


def _moved(error: DecodeError, rejected: str) -> DecodeError:
    """The DecodeError of a pop whose member was set aside in ``rejected``."""
    return DecodeError(f"{error.reason}; the pop moved it to {rejected!r}", model=error.model,
                       key=error.key, field=error.field, codec=error.codec)


# ---- the base class ---------------------------------------------------------------------


class InTransaction(Generic[C]):
    """A container's methods run through a transaction: reads at once (WATCHing the key),
    writes queued, returning :class:`~redmodel.Pending`. Made by ``container.in_tx(tx)``."""

    def __init__(self, container: C, tx: Transaction | AsyncTransaction) -> None:
        mine: Any = getattr(container, "store", None)
        theirs: Any = getattr(tx, "store", None)
        if mine is not None and theirs is not None and mine is not theirs and (
                getattr(mine, "client", None) is not getattr(theirs, "client", None)):
            raise TransactionError(
                f"{container!r} is bound to {mine!r} and cannot join a transaction on "
                f"another store ({theirs!r}): its writes would go to that store; one "
                "transaction cannot span two stores")
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
        make_plan = getattr(make_plan, "__wrapped__", make_plan)  # checked at commit
        pending = getattr(self.tx, "_containers", None)
        if make_plan is None or name.startswith("_"):
            raise AttributeError(f"{type(container).__name__} has no operation {name!r}")
        write = name in container._WRITES
        what = f"{type(container).__name__}.{name} {container.key!r}"

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
    # its pops answer None for "empty" (Queue, Set): a member type admitting None is refused
    _none_means_empty: ClassVar[bool] = False

    @overload
    def __init__(self, store: S, key: Any, type: type[T], *, codec: str | Codec | None = None
                 ) -> None: ...
    @overload
    def __init__(self: Container[Any, S], store: S, key: Any, type: types.UnionType, *,
                 codec: str | Codec | None = None) -> None: ...
    def __init__(self, store: S, key: Any, type: Any, *, codec: str | Codec | None = None
                 ) -> None:
        """``type`` is the members' type: a class, a generic alias (``list[int]``) or a
        union written ``A | B`` (``IPv4Address | IPv6Address``). A union is no ``type[T]``:
        mypy with the plugin (``redmodel.mypy``) types the container by it
        (``Queue[IPv4Address | IPv6Address]``); without the plugin its members are
        ``Any`` unless the variable is annotated."""
        self.store = store
        self.key = container_key(key)
        self.type = type
        self.encoding = members_of(type, codec, f"{self.__class__.__name__} {self.key!r}")
        if self._none_means_empty and (type is None or optional_inner(type)[1]):
            raise ModelDefinitionError(
                f"{self.__class__.__name__} {self.key!r}: a member type that admits None "
                f"({_type_name(type)}) would make pop()'s None ambiguous (an empty "
                f"{self.__class__.__name__.lower()}, or a None member taken out of it); hold "
                "the values in a class of their own (an attrs class with an Optional field)")
        if self._deterministic_members and not self.encoding.deterministic:
            raise ModelDefinitionError(
                f"{self.__class__.__name__} {self.key!r}: codec {self.encoding.name!r} encrypts "
                "with a random nonce, so equal members would be stored as different members; "
                "use a chain without fernet"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r}, {_type_name(self.type)})"

    @overload
    def in_tx(self: Container[T, Store], tx: Transaction) -> ContainerInTx: ...
    @overload
    def in_tx(self: Container[T, AsyncStore], tx: AsyncTransaction) -> ContainerInAsyncTx: ...
    def in_tx(self, tx: Transaction | AsyncTransaction) -> Any:
        """This container's methods inside transaction ``tx``: reads run now and WATCH the
        key, writes are queued and return a :class:`~redmodel.Pending`.

        Redis: none (the handle's reads send WATCH then the read's commands at once; its
        writes go into the transaction's MULTI ... EXEC)."""
        return InTransaction(self, tx)

    # ---- encoding ------------------------------------------------------------------

    def _encode(self, value: Any) -> bytes:
        reason = self.encoding.check(value)
        if reason is None and _holds_snan(value):
            reason = _SNAN
        if reason is None and self._deterministic_members and holds_nan(value):
            reason = NAN_MEMBER  # a Redis set holds one text: every NaN would be one member
        if reason is not None:
            raise ValidationError(f"not {indefinite(_type_name(self.type))} member: {reason}",
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

    def _write_members(self, command: str, values: Sequence[Any]) -> Plan[int]:
        """``command key member...`` (RPUSH, LPUSH, SADD, SREM) as one write of every value
        encoded, each checked before anything is sent; its integer reply."""
        if not values:
            raise ValidationError(f"{command} needs at least one value", key=self.key)
        data = [self._encode(v) for v in values]
        replies = yield Batch([(command, self.key, *data)], write=True, keys=(self.key,))
        return int(replies[0])

    def _decode(self, raw: Any, key: str | None = None) -> T:
        key = self.key if key is None else key
        if isinstance(raw, str):  # a client with decode_responses=True (refused by Store)
            raw = raw.encode("utf-8")
        try:
            value = self.encoding.decode(raw)
        except BadValueError as e:
            raise DecodeError(f"stored member does not decode as {_type_name(self.type)}: {e}",
                              key=key) from None
        except DecodeError as e:
            raise e.with_context(key=key) from None
        except (TypeError, ArithmeticError) as e:  # a frozenset of a signalling NaN, ...
            raise DecodeError(f"stored member does not decode as {_type_name(self.type)}: "
                              f"{type(e).__name__}", key=key) from None
        if _holds_snan(value):
            raise DecodeError(f"stored member does not decode as {_type_name(self.type)}: "
                              f"{_SNAN}", key=key)
        return value  # type: ignore[no-any-return]

    # ---- what a pop took and cannot decode --------------------------------------------

    def _set_aside_command(self, rejected: str, raws: Sequence[Any]) -> Command:
        """The command that keeps ``raws`` (popped, not decodable) in ``rejected``."""
        raise NotImplementedError  # pragma: no cover - every popping container has one

    def _decoded_or_set_aside(self, raw: Any, set_aside: bool = True,
                              put_back: Command | None = None) -> Plan[T]:
        """The member a pop took. One that does not decode is not dropped: it is added, raw,
        to the container's ``%rejected`` key (a list for a queue, where :meth:`consume`
        sets its own aside, a set for a set), and :class:`DecodeError` names that key (never
        the value). ``set_aside=False`` (a pop inside a transaction): the error says it is
        lost.

        ``put_back``: the command that returns the member to where the pop took it
        (``SADD`` to a set, ``LPUSH``/``RPUSH`` to the end of a queue it came from). The
        pop then ends in exactly one of (docs/containers.md, "A member that does not
        decode"):

        - the set-aside applied: :class:`DecodeError` naming ``%rejected``;
        - the set-aside certainly not applied (the server refused it: ``%rejected`` holds
          another type; or it failed with a plain connection error or timeout: never
          sent, or fenced in exactly-once mode): the member is put back, then
          :class:`ServerError` naming both keys (refused) or :class:`DecodeError`
          naming both (not sent); a put-back refused too raises :class:`ServerError`
          saying the member is lost;
        - the set-aside's or the put-back's outcome unknown, or a put-back certainly not
          applied: :class:`OutcomeUnknownError` whose ``keys`` are the container's key
          and ``%rejected`` (the member is in one of them, or lost).

        Never a plain connection error once the pop took the member (which reads "nothing
        applied"). Without ``put_back`` (a consumer's own set-aside) a set-aside that is
        refused or fails is raised as the store raised it."""
        try:
            return self._decode(raw)
        except DecodeError as e:
            error = e
        rejected = ConsumerKeys.of(self.key).rejected
        if not set_aside:
            raise DecodeError(
                f"{error.reason}; it was popped in a transaction, which can send nothing "
                f"after EXEC, so it could not be set aside in {rejected!r}: it is lost",
                model=error.model, key=error.key, field=error.field,
                codec=error.codec) from None
        aside = self._set_aside_command(rejected, [raw])
        if put_back is None:
            yield Batch([aside], write=True, keys=(rejected,))
            raise _moved(error, rejected)
        try:
            replies = yield Batch([aside], write=True, keys=(rejected,), errors=True)
        except OutcomeUnknownError as lost:
            raise self._unknown(error, rejected, f"setting it aside in {rejected!r}",
                                lost) from None
        except CONNECTION_ERRORS as failed:  # not applied, never to be: safe to put back
            why = f"setting it aside in {rejected!r} failed ({type(failed).__name__}: " \
                  f"{failed}; not applied)"
            yield from self._put_back(error, rejected, put_back, why)
            raise DecodeError(f"{error.reason}; {why}: it was put back in {self.key!r}",
                              model=error.model, key=error.key, field=error.field,
                              codec=error.codec) from None
        refused = replies[0]
        if not isinstance(refused, ServerError):
            raise _moved(error, rejected)
        why = f"{rejected!r} refused to keep it"
        back = yield from self._put_back(error, rejected, put_back, why)
        outcome = (f"it is lost: putting it back in {self.key!r} failed too "
                   f"({back.reply})" if isinstance(back, ServerError)
                   else f"it was put back in {self.key!r}")
        raise ServerError(
            f"{refused.reply} (a popped member did not decode ({error.reason}) and "
            f"{why}: {outcome}; clear or rename {rejected!r})", keys=(rejected, self.key),
            command=str(aside[0])) from None

    def _put_back(self, error: DecodeError, rejected: str, put_back: Command, why: str
                  ) -> Plan[Any]:
        """Send ``put_back`` (after a set-aside certainly not applied, ``why``): its reply
        (a :class:`ServerError` value when refused); :class:`OutcomeUnknownError` naming
        the container and ``rejected`` when it failed (unknown, or not applied: the
        member is then lost)."""
        pause = 0.0
        for tries in range(1, _PUT_BACK_TRIES + 1):
            try:
                back = yield Batch([put_back], write=True, keys=(self.key,), errors=True,
                                   pause=pause)
            except OutcomeUnknownError as lost:
                raise self._unknown(error, rejected, f"{why}; putting it back in "
                                    f"{self.key!r}", lost) from None
            except CONNECTION_ERRORS as failed:  # not applied, never to be: send it again
                if tries < _PUT_BACK_TRIES:
                    pause = min(_PUT_BACK_PAUSE * 2 ** (tries - 1), _PUT_BACK_LONGEST)
                    continue
                raise self._unknown(
                    error, rejected, f"{why}; putting it back in {self.key!r} failed "
                    f"{tries} times (not applied: it is lost)", failed) from None
            return back[0]
        raise AssertionError("unreachable")  # pragma: no cover

    def _unknown(self, error: DecodeError, rejected: str, what: str, cause: Exception
                 ) -> OutcomeUnknownError:
        """The error of a pop whose member did not decode and whose set-aside or put-back
        ended unknown: names the container first (the pop took the member from it)."""
        write_id = getattr(cause, "write_id", None)
        return OutcomeUnknownError(
            f"a member popped from {self.key!r} did not decode ({error.reason}); {what} "
            f"ended with {type(cause).__name__} ({cause}): the member is in "
            f"{self.key!r} or {rejected!r}, or lost", keys=(self.key, rejected),
            write_id=write_id if isinstance(write_id, str) else None)

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
        # and the helper keys of the key's name that any container kind left there: the
        # %rejected members a pop set aside (a list, a set or a sorted set, by kind: kept,
        # the next kind's set-aside would fail on it) and a queue's %redelivered marks
        # (kept, a new value equal to an old one would count as a redelivery). Consumers'
        # own keys (%consumers, in-flight lists) stay: they belong to running consumers.
        helpers = ConsumerKeys.of(self.key)
        gone = (helpers.rejected, helpers.redelivered)
        replies = yield Batch([("DEL", self.key), ("DEL", record), ("DEL", *gone)],
                              write=True, idempotent=False, keys=(self.key, record, *gone))
        unmark = unmark_commands(self.key)  # its marks in the model registry, if any
        if unmark:
            yield Batch(unmark, write=True, idempotent=True, keys=[c[1] for c in unmark])
        forget(self)
        return bool(replies[0])

    @overload
    def clear(self: Container[T, Store]) -> bool: ...
    @overload
    def clear(self: Container[T, AsyncStore]) -> Coroutine[object, object, bool]: ...
    def clear(self) -> Any:
        """DEL the key, its record in the container registry (so the key may hold
        another kind of container next) and its ``%rejected`` and ``%redelivered`` keys
        (the members a pop or consumer set aside are deleted with it); True if the key
        existed. Consumers' keys (``%consumers``, in-flight lists) stay.

        Redis: DEL (the key and its record), DEL (its %rejected and %redelivered), HDEL
        (its marks in the model registry records of its ``:``-prefixes, for a key with
        ``:``)."""
        return self._run(self.clear_plan())

    def exists_plan(self) -> Plan[bool]:
        replies = yield Batch([("EXISTS", self.key)], keys=(self.key,))
        return bool(replies[0])

    @overload
    def exists(self: Container[T, Store]) -> bool: ...
    @overload
    def exists(self: Container[T, AsyncStore]) -> Coroutine[object, object, bool]: ...
    def exists(self) -> Any:
        """EXISTS: False for an empty container (Redis deletes empty lists/sets).

        Redis: EXISTS."""
        return self._run(self.exists_plan())

    def expire_plan(self, ttl: float | dt.timedelta) -> Plan[bool]:
        ms = _ttl_ms(ttl, self.key)
        # the record never expires (a key emptied and filled again loses its expiry: a
        # record that expired with the old one would leave the new data unchecked); it
        # goes with clear()
        # fragile: a copy sent again after the container expired would answer False
        replies = yield Batch([("PEXPIRE", self.key, ms)], write=True, idempotent=True,
                              keys=(self.key,), fragile=True)
        return bool(replies[0])

    @overload
    def expire(self: Container[T, Store], ttl: float | dt.timedelta) -> bool: ...
    @overload
    def expire(self: Container[T, AsyncStore], ttl: float | dt.timedelta
               ) -> Coroutine[object, object, bool]: ...
    def expire(self, ttl: float | dt.timedelta) -> Any:
        """PEXPIRE: the whole container expires in ``ttl`` seconds; False if it is empty.

        Redis: PEXPIRE."""
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


# ---- in-transaction handles, as type checkers see them ------------------------------

# ``in_tx`` returns an InTransaction at run time; these protocols give each container's
# handle its exact signatures: writes queue and return a Pending of the value, reads run
# now and return the value (in an AsyncTransaction a coroutine of it). Only types.

class ContainerInTx(Protocol):
    """``container.in_tx(tx)`` for a Transaction ``tx``."""

    def clear(self) -> Pending[bool]: ...
    def expire(self, ttl: float | dt.timedelta) -> Pending[bool]: ...
    def exists(self) -> bool: ...


class ContainerInAsyncTx(Protocol):
    """``container.in_tx(tx)`` for an AsyncTransaction ``tx``."""

    def clear(self) -> Pending[bool]: ...
    def expire(self, ttl: float | dt.timedelta) -> Pending[bool]: ...
    def exists(self) -> Coroutine[object, object, bool]: ...
