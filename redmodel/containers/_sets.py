"""A Redis set as a typed :class:`Set`, and a sorted set as a typed :class:`SortedSet`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, overload

from redmodel._args import flag, integer, many
from redmodel._container_registry import guard_plans
from redmodel._errors import (
    DecodeError,
    ValidationError,
)
from redmodel._plan import Batch, Command, Plan
from redmodel._stores._async import AsyncStore
from redmodel._stores._sync import Store
from redmodel.containers._base import (
    _POP_ROUNDS,
    _ZSET_POP,
    Container,
    ContainerInAsyncTx,
    ContainerInTx,
    InTransaction,
    S,
    _as_list,
    _indices,
    _pairs,
    _text_of,
    _type_name,
)
from redmodel.containers._consumer import (
    ConsumerKeys,
)
from redmodel.transactions._handles import AsyncTransaction, Transaction, current_transaction
from redmodel.transactions._policy import Pending

__all__ = [
    "Set",
    "SetInAsyncTx",
    "SetInTx",
    "SortedSet",
    "SortedSetInAsyncTx",
    "SortedSetInTx",
]


T = TypeVar("T")


# ---- Set --------------------------------------------------------------------------------


@guard_plans
class Set(Container[T, S]):
    """A Redis set of typed values. Equal values are the same member (members are encoded
    canonically), so ``Set(store, day, IPv4Address)`` counts each address once."""

    _WRITES = Container._WRITES | {"add", "remove", "pop"}
    _none_means_empty = True
    _deterministic_members = True

    @overload
    def in_tx(self: Set[T, Store], tx: Transaction) -> SetInTx[T]: ...
    @overload
    def in_tx(self: Set[T, AsyncStore], tx: AsyncTransaction) -> SetInAsyncTx[T]: ...
    def in_tx(self, tx: Transaction | AsyncTransaction) -> Any:
        """As :meth:`Container.in_tx`, typed with this container's operations.

        Redis: none (see :meth:`Container.in_tx`)."""
        return InTransaction(self, tx)

    def _hashable(self, what: str) -> None:
        if getattr(self.type, "__hash__", None) is None:
            raise ValidationError(
                f"{what} returns a Python set, but {_type_name(self.type)} is not hashable; "
                "use members_list()", key=self.key)

    def add_plan(self, *values: T) -> Plan[int]:
        return self._write_members("SADD", values)

    @overload
    def add(self: Set[T, Store], *values: T) -> int: ...
    @overload
    def add(self: Set[T, AsyncStore], *values: T) -> Coroutine[object, object, int]: ...
    def add(self, *values: T) -> Any:
        """SADD: add values; returns how many were not members yet.

        Redis: SADD."""
        return self._run(self.add_plan(*values))

    def remove_plan(self, *values: T) -> Plan[int]:
        return self._write_members("SREM", values)

    @overload
    def remove(self: Set[T, Store], *values: T) -> int: ...
    @overload
    def remove(self: Set[T, AsyncStore], *values: T) -> Coroutine[object, object, int]: ...
    def remove(self, *values: T) -> Any:
        """SREM: remove values; returns how many were members.

        Redis: SREM."""
        return self._run(self.remove_plan(*values))

    def members_list_plan(self) -> Plan[list[T]]:
        replies = yield Batch([("SMEMBERS", self.key)], keys=(self.key,))
        return [self._decode(r) for r in _as_list(replies[0])]

    @overload
    def members_list(self: Set[T, Store]) -> list[T]: ...
    @overload
    def members_list(self: Set[T, AsyncStore]) -> Coroutine[object, object, list[T]]: ...
    def members_list(self) -> Any:
        """SMEMBERS as a list, in no particular order (for unhashable member types).

        Redis: SMEMBERS."""
        return self._run(self.members_list_plan())

    def members_plan(self) -> Plan[set[T]]:
        self._hashable("members")
        found = yield from self.members_list_plan()
        return set(found)

    @overload
    def members(self: Set[T, Store]) -> set[T]: ...
    @overload
    def members(self: Set[T, AsyncStore]) -> Coroutine[object, object, set[T]]: ...
    def members(self) -> Any:
        """SMEMBERS: every member. O(N).

        Redis: SMEMBERS."""
        return self._run(self.members_plan())

    def contains_plan(self, value: T) -> Plan[bool]:
        data = self._encode(value)
        replies = yield Batch([("SISMEMBER", self.key, data)], keys=(self.key,))
        return bool(replies[0])

    @overload
    def contains(self: Set[T, Store], value: T) -> bool: ...
    @overload
    def contains(self: Set[T, AsyncStore], value: T) -> Coroutine[object, object, bool]: ...
    def contains(self, value: T) -> Any:
        """SISMEMBER. O(1).

        Redis: SISMEMBER."""
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
    def cardinality(self: Set[T, AsyncStore]) -> Coroutine[object, object, int]: ...
    def cardinality(self) -> Any:
        """SCARD: how many members. O(1).

        Redis: SCARD."""
        return self._run(self.cardinality_plan())

    def pop_plan(self) -> Plan[T | None]:
        in_transaction = current_transaction() is not None
        replies = yield Batch([("SPOP", self.key)], write=True, keys=(self.key,))
        if replies[0] is None:
            return None
        return (yield from self._decoded_or_set_aside(
            replies[0], not in_transaction, ("SADD", self.key, replies[0])))

    @overload
    def pop(self: Set[T, Store]) -> T | None: ...
    @overload
    def pop(self: Set[T, AsyncStore]) -> Coroutine[object, object, T | None]: ...
    def pop(self) -> Any:
        """SPOP: remove and return a random member; None when empty. A member that does not
        decode is moved to the set's ``%rejected`` set (``SADD``, one more round trip),
        then :class:`DecodeError` is raised (as :meth:`Queue.pop` does).

        Redis: SPOP; SADD to %rejected for a member that does not decode."""
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
    def union(self: Set[T, AsyncStore], *others: Set[T, Any]
              ) -> Coroutine[object, object, set[T]]: ...
    def union(self, *others: Set[T, Any]) -> Any:
        """SUNION: members of this set or any of ``others`` (same type and encoding).

        Redis: SUNION."""
        return self._run(self.union_plan(*others))

    def intersection_plan(self, *others: Set[T, Any]) -> Plan[set[T]]:
        return self._algebra("SINTER", others)

    @overload
    def intersection(self: Set[T, Store], *others: Set[T, Any]) -> set[T]: ...
    @overload
    def intersection(self: Set[T, AsyncStore], *others: Set[T, Any]
                     ) -> Coroutine[object, object, set[T]]: ...
    def intersection(self, *others: Set[T, Any]) -> Any:
        """SINTER: members of this set that are in every one of ``others``.

        Redis: SINTER."""
        return self._run(self.intersection_plan(*others))

    def difference_plan(self, *others: Set[T, Any]) -> Plan[set[T]]:
        return self._algebra("SDIFF", others)

    @overload
    def difference(self: Set[T, Store], *others: Set[T, Any]) -> set[T]: ...
    @overload
    def difference(self: Set[T, AsyncStore], *others: Set[T, Any]
                   ) -> Coroutine[object, object, set[T]]: ...
    def difference(self, *others: Set[T, Any]) -> Any:
        """SDIFF: members of this set that are in none of ``others``.

        Redis: SDIFF."""
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


def _pair(pair: Any, number: int, key: str) -> tuple[Any, Any]:
    """``(member, score)`` of one item of ``add_many``'s pairs: a tuple or list of two;
    anything else (a pair of three, a lone value, a str) raises :class:`ValidationError`
    naming the key and the item's position (never its value)."""
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        return pair[0], pair[1]
    shape = (f"a {type(pair).__name__} of {len(pair)}" if isinstance(pair, (tuple, list))
             else f"a {type(pair).__name__}")
    raise ValidationError(
        f"add_many's scores must be a mapping or (member, score) pairs: item {number} is "
        f"{shape}, not a (member, score) pair", key=key)


@guard_plans
class SortedSet(Container[T, S]):
    """A Redis sorted set of typed members with float scores, ordered by score (then by
    the members' stored bytes)."""

    _WRITES = Container._WRITES | {"add", "add_many", "incr", "remove", "pop_min", "pop_max"}
    _deterministic_members = True

    @overload
    def in_tx(self: SortedSet[T, Store], tx: Transaction) -> SortedSetInTx[T]: ...
    @overload
    def in_tx(self: SortedSet[T, AsyncStore], tx: AsyncTransaction) -> SortedSetInAsyncTx[T]: ...
    def in_tx(self, tx: Transaction | AsyncTransaction) -> Any:
        """As :meth:`Container.in_tx`, typed with this container's operations.

        Redis: none (see :meth:`Container.in_tx`)."""
        return InTransaction(self, tx)

    def add_many_plan(
        self,
        scores: Mapping[T, float] | Iterable[tuple[T, float]],
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
    ) -> Plan[int]:
        for name, on in (("nx", nx), ("xx", xx), ("gt", gt), ("lt", lt)):
            flag(on, name, key=self.key)
        if isinstance(scores, Mapping):
            pairs: Iterable[Any] = scores.items()
        else:
            try:
                pairs = many(scores, "scores", "(member, score) pairs", model=None)
            except ValidationError as e:
                raise ValidationError(str(e), key=self.key) from None
        args: list[Any] = []
        for number, pair in enumerate(pairs):  # every pair checked before anything is sent
            member, score = _pair(pair, number, self.key)
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
    ) -> Coroutine[object, object, int]: ...
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
        returns how many members were new. O(log N) per member.

        Redis: ZADD [NX|XX] [GT|LT]."""
        return self._run(self.add_many_plan(scores, nx=nx, xx=xx, gt=gt, lt=lt))

    def add_plan(self, member: T, score: float, *, nx: bool = False, xx: bool = False,
                 gt: bool = False, lt: bool = False) -> Plan[int]:
        return self.add_many_plan([(member, score)], nx=nx, xx=xx, gt=gt, lt=lt)

    @overload
    def add(self: SortedSet[T, Store], member: T, score: float, *, nx: bool = False,
            xx: bool = False, gt: bool = False, lt: bool = False) -> int: ...
    @overload
    def add(self: SortedSet[T, AsyncStore], member: T, score: float, *, nx: bool = False,
            xx: bool = False, gt: bool = False, lt: bool = False
            ) -> Coroutine[object, object, int]: ...
    def add(self, member: T, score: float, *, nx: bool = False, xx: bool = False,
            gt: bool = False, lt: bool = False) -> Any:
        """ZADD of one member; 1 if it was new, 0 if only its score changed.

        Redis: ZADD."""
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
             ) -> Coroutine[object, object, float]: ...
    def incr(self, member: T, amount: float = 1) -> Any:
        """ZINCRBY: add ``amount`` to the member's score (from 0 if new); the new score.

        Redis: ZINCRBY."""
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
    def remove(self: SortedSet[T, AsyncStore], *members: T) -> Coroutine[object, object, int]: ...
    def remove(self, *members: T) -> Any:
        """ZREM: remove members; returns how many were there.

        Redis: ZREM."""
        return self._run(self.remove_plan(*members))

    def score_plan(self, member: T) -> Plan[float | None]:
        data = self._encode(member)
        replies = yield Batch([("ZSCORE", self.key, data)], keys=(self.key,))
        return None if replies[0] is None else float(replies[0])

    @overload
    def score(self: SortedSet[T, Store], member: T) -> float | None: ...
    @overload
    def score(self: SortedSet[T, AsyncStore], member: T
              ) -> Coroutine[object, object, float | None]: ...
    def score(self, member: T) -> Any:
        """ZSCORE: the member's score, None if it is not a member.

        Redis: ZSCORE."""
        return self._run(self.score_plan(member))

    def rank_plan(self, member: T, *, reverse: bool = False) -> Plan[int | None]:
        data = self._encode(member)
        cmd = "ZREVRANK" if flag(reverse, "reverse", key=self.key) else "ZRANK"
        replies = yield Batch([(cmd, self.key, data)], keys=(self.key,))
        return None if replies[0] is None else int(replies[0])

    @overload
    def rank(self: SortedSet[T, Store], member: T, *, reverse: bool = False) -> int | None: ...
    @overload
    def rank(self: SortedSet[T, AsyncStore], member: T, *, reverse: bool = False
             ) -> Coroutine[object, object, int | None]: ...
    def rank(self, member: T, *, reverse: bool = False) -> Any:
        """ZRANK (ZREVRANK with ``reverse``): 0-based position by ascending (descending)
        score; None if not a member. O(log N).

        Redis: ZRANK (ZREVRANK with reverse=True)."""
        return self._run(self.rank_plan(member, reverse=reverse))

    def cardinality_plan(self) -> Plan[int]:
        replies = yield Batch([("ZCARD", self.key)], keys=(self.key,))
        return int(replies[0])

    @overload
    def cardinality(self: SortedSet[T, Store]) -> int: ...
    @overload
    def cardinality(self: SortedSet[T, AsyncStore]) -> Coroutine[object, object, int]: ...
    def cardinality(self) -> Any:
        """ZCARD: how many members.

        Redis: ZCARD."""
        return self._run(self.cardinality_plan())

    def _range(self, args: Sequence[Any]) -> Plan[list[tuple[T, float]]]:
        replies = yield Batch([("ZRANGE", self.key, *args, "WITHSCORES")], keys=(self.key,))
        return [(self._decode(m), s) for m, s in _pairs(replies[0])]

    def range_with_scores_plan(self, start: int = 0, stop: int = -1, *, reverse: bool = False
                               ) -> Plan[list[tuple[T, float]]]:
        start, stop = _indices(start, stop, self.key)
        rev = flag(reverse, "reverse", key=self.key)
        return self._range([start, stop, *(["REV"] if rev else [])])

    @overload
    def range_with_scores(self: SortedSet[T, Store], start: int = 0, stop: int = -1, *,
                          reverse: bool = False) -> list[tuple[T, float]]: ...
    @overload
    def range_with_scores(self: SortedSet[T, AsyncStore], start: int = 0, stop: int = -1, *,
                          reverse: bool = False
                          ) -> Coroutine[object, object, list[tuple[T, float]]]: ...
    def range_with_scores(self, start: int = 0, stop: int = -1, *, reverse: bool = False
                          ) -> Any:
        """ZRANGE start stop [REV] WITHSCORES: ``(member, score)`` pairs by rank, ``start``
        to ``stop`` inclusive (negative from the end). O(log N + M).

        Redis: ZRANGE [REV] WITHSCORES."""
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
              reverse: bool = False) -> Coroutine[object, object, list[T]]: ...
    def range(self, start: int = 0, stop: int = -1, *, reverse: bool = False) -> Any:
        """Like :meth:`range_with_scores`, members only (the scores still come back).

        Redis: ZRANGE [REV] WITHSCORES."""
        return self._run(self.range_plan(start, stop, reverse=reverse))

    def range_by_score_with_scores_plan(
        self, min: Bound = "-inf", max: Bound = "+inf", *, reverse: bool = False,
        offset: int = 0, count: int | None = None,
    ) -> Plan[list[tuple[T, float]]]:
        lo, hi = _bound(min, self.key), _bound(max, self.key)
        offset = integer(offset, "offset", key=self.key, least=0)
        if count is not None:
            count = integer(count, "count", key=self.key, least=0)
        rev = flag(reverse, "reverse", key=self.key)
        args: list[Any] = [hi, lo, "BYSCORE", "REV"] if rev else [lo, hi, "BYSCORE"]
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
    ) -> Coroutine[object, object, list[tuple[T, float]]]: ...
    def range_by_score_with_scores(
        self, min: Bound = "-inf", max: Bound = "+inf", *, reverse: bool = False,
        offset: int = 0, count: int | None = None,
    ) -> Any:
        """ZRANGE min max BYSCORE [REV] [LIMIT offset count] WITHSCORES: ``(member, score)``
        pairs with ``min <= score <= max`` (a bound may be ``"(5"`` for exclusive,
        ``"-inf"``/``"+inf"``), ascending, or descending with ``reverse``.

        Redis: ZRANGE BYSCORE [REV] [LIMIT] WITHSCORES."""
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
    ) -> Coroutine[object, object, list[T]]: ...
    def range_by_score(
        self, min: Bound = "-inf", max: Bound = "+inf", *, reverse: bool = False,
        offset: int = 0, count: int | None = None,
    ) -> Any:
        """Like :meth:`range_by_score_with_scores`, members only.

        Redis: ZRANGE BYSCORE [REV] [LIMIT] WITHSCORES."""
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
                ) -> Coroutine[object, object, list[tuple[T, float]]]: ...
    def pop_min(self, count: int = 1) -> Any:
        """Remove and return up to ``count`` lowest-scored ``(member, score)`` pairs,
        lowest first; ``[]`` when empty. Reads them (ZRANGE), decodes them, then pops in
        one script (ZPOPMIN) only members it read and decoded that are still the lowest, so
        no member is ever taken out and put back. When one does not decode, that script
        moves it (with its score) to the sorted set's ``%rejected`` sorted set and takes
        nothing else, and :class:`DecodeError` is raised (docs/containers.md).

        Redis: ZRANGE WITHSCORES, then EVALSHA zset_pop.lua of the members read (repeated
        while members popped meanwhile leave it short); ZPOPMIN in a transaction."""
        return self._run(self.pop_min_plan(count))

    def pop_max_plan(self, count: int = 1) -> Plan[list[tuple[T, float]]]:
        return self._pop("ZPOPMAX", count)

    @overload
    def pop_max(self: SortedSet[T, Store], count: int = 1) -> list[tuple[T, float]]: ...
    @overload
    def pop_max(self: SortedSet[T, AsyncStore], count: int = 1
                ) -> Coroutine[object, object, list[tuple[T, float]]]: ...
    def pop_max(self, count: int = 1) -> Any:
        """ZPOPMAX: like :meth:`pop_min` from the top, highest first.

        Redis: ZRANGE REV WITHSCORES, then EVALSHA zset_pop.lua of the members read
        (repeated while members popped meanwhile leave it short); ZPOPMAX in a transaction."""
        return self._run(self.pop_max_plan(count))


class SetInTx(ContainerInTx, Protocol[T]):
    """``set.in_tx(tx)`` for a Transaction ``tx``."""

    def add(self, *values: T) -> Pending[int]: ...
    def remove(self, *values: T) -> Pending[int]: ...
    def pop(self) -> Pending[T | None]: ...
    def members(self) -> set[T]: ...
    def members_list(self) -> list[T]: ...
    def contains(self, value: T) -> bool: ...
    def cardinality(self) -> int: ...
    def union(self, *others: Set[T, Any]) -> set[T]: ...
    def intersection(self, *others: Set[T, Any]) -> set[T]: ...
    def difference(self, *others: Set[T, Any]) -> set[T]: ...


class SetInAsyncTx(ContainerInAsyncTx, Protocol[T]):
    """``set.in_tx(tx)`` for an AsyncTransaction ``tx``."""

    def add(self, *values: T) -> Pending[int]: ...
    def remove(self, *values: T) -> Pending[int]: ...
    def pop(self) -> Pending[T | None]: ...
    def members(self) -> Coroutine[object, object, set[T]]: ...
    def members_list(self) -> Coroutine[object, object, list[T]]: ...
    def contains(self, value: T) -> Coroutine[object, object, bool]: ...
    def cardinality(self) -> Coroutine[object, object, int]: ...
    def union(self, *others: Set[T, Any]) -> Coroutine[object, object, set[T]]: ...
    def intersection(self, *others: Set[T, Any]) -> Coroutine[object, object, set[T]]: ...
    def difference(self, *others: Set[T, Any]) -> Coroutine[object, object, set[T]]: ...


class SortedSetInTx(ContainerInTx, Protocol[T]):
    """``sorted_set.in_tx(tx)`` for a Transaction ``tx``."""

    def add(
        self, member: T, score: float, *,
        nx: bool = False, xx: bool = False, gt: bool = False, lt: bool = False
    ) -> Pending[int]: ...
    def add_many(
        self, scores: Mapping[T, float] | Iterable[tuple[T, float]], *,
        nx: bool = False, xx: bool = False, gt: bool = False, lt: bool = False
    ) -> Pending[int]: ...
    def incr(self, member: T, amount: float = 1) -> Pending[float]: ...
    def remove(self, *members: T) -> Pending[int]: ...
    def pop_min(self, count: int = 1) -> Pending[list[tuple[T, float]]]: ...
    def pop_max(self, count: int = 1) -> Pending[list[tuple[T, float]]]: ...
    def score(self, member: T) -> float | None: ...
    def rank(self, member: T, *, reverse: bool = False) -> int | None: ...
    def cardinality(self) -> int: ...
    def range(self, start: int = 0, stop: int = -1, *, reverse: bool = False) -> list[T]: ...
    def range_with_scores(
        self, start: int = 0, stop: int = -1, *, reverse: bool = False
    ) -> list[tuple[T, float]]: ...
    def range_by_score(
        self, min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None
    ) -> list[T]: ...
    def range_by_score_with_scores(
        self, min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None
    ) -> list[tuple[T, float]]: ...


class SortedSetInAsyncTx(ContainerInAsyncTx, Protocol[T]):
    """``sorted_set.in_tx(tx)`` for an AsyncTransaction ``tx``."""

    def add(
        self, member: T, score: float, *,
        nx: bool = False, xx: bool = False, gt: bool = False, lt: bool = False
    ) -> Pending[int]: ...
    def add_many(
        self, scores: Mapping[T, float] | Iterable[tuple[T, float]], *,
        nx: bool = False, xx: bool = False, gt: bool = False, lt: bool = False
    ) -> Pending[int]: ...
    def incr(self, member: T, amount: float = 1) -> Pending[float]: ...
    def remove(self, *members: T) -> Pending[int]: ...
    def pop_min(self, count: int = 1) -> Pending[list[tuple[T, float]]]: ...
    def pop_max(self, count: int = 1) -> Pending[list[tuple[T, float]]]: ...
    def score(self, member: T) -> Coroutine[object, object, float | None]: ...
    def rank(self, member: T, *, reverse: bool = False
             ) -> Coroutine[object, object, int | None]: ...
    def cardinality(self) -> Coroutine[object, object, int]: ...
    def range(
        self, start: int = 0, stop: int = -1, *, reverse: bool = False
    ) -> Coroutine[object, object, list[T]]: ...
    def range_with_scores(
        self, start: int = 0, stop: int = -1, *, reverse: bool = False
    ) -> Coroutine[object, object, list[tuple[T, float]]]: ...
    def range_by_score(
        self, min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None
    ) -> Coroutine[object, object, list[T]]: ...
    def range_by_score_with_scores(
        self, min: Bound = "-inf", max: Bound = "+inf", *,
        reverse: bool = False, offset: int = 0, count: int | None = None
    ) -> Coroutine[object, object, list[tuple[T, float]]]: ...
