"""Queries over a model's secondary indexes, as plans (so sync, asyncio and cluster stores
run the same logic).

A query is evaluated per bucket by one Lua script (sweep expired objects, set algebra over
the index keys, sort, cursor, limit), then the hits are fetched in one pipelined round
trip. On a cluster every bucket's script runs in the same pipeline (one per node) and the
results are merged, sorted and limited again.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs

from redmodel._errors import QueryError
from redmodel._index import IndexedField, IndexSpec
from redmodel._keys import unescape
from redmodel._plan import Batch, Plan, script
from redmodel._schema import ModelSpec, spec_of

__all__ = [
    "Q", "Query", "Range", "between", "contains", "ge", "gt", "le", "lt", "one_of",
]

M = TypeVar("M")


# ---- predicates ---------------------------------------------------------------------------


@attrs.frozen
class Range:
    """A range of a range-indexed field; ``None`` ends are open."""

    low: Any = None
    high: Any = None
    low_inclusive: bool = True
    high_inclusive: bool = True


def gt(value: Any) -> Range:
    """``field > value``."""
    return Range(low=value, low_inclusive=False)


def ge(value: Any) -> Range:
    """``field >= value``."""
    return Range(low=value)


def lt(value: Any) -> Range:
    """``field < value``."""
    return Range(high=value, high_inclusive=False)


def le(value: Any) -> Range:
    """``field <= value``."""
    return Range(high=value)


def between(low: Any, high: Any, *, inclusive: tuple[bool, bool] = (True, True)) -> Range:
    """``low <= field <= high`` (each end inclusive or not)."""
    return Range(low, high, inclusive[0], inclusive[1])


@attrs.frozen
class _OneOf:
    values: tuple[Any, ...]


def one_of(values: Sequence[Any]) -> _OneOf:
    """``field in values``."""
    return _OneOf(tuple(values))


@attrs.frozen
class _Contains:
    value: Any


def contains(value: Any) -> _Contains:
    """A list field holds ``value`` (the same as ``tags="x"`` on an indexed list)."""
    return _Contains(value)


@attrs.frozen(init=False)
class Q:
    """A query expression: ``Q(color="black", price=lt(50))`` (AND of its terms);
    combine with ``&``, ``|`` and ``~``."""

    op: str = "AND"
    terms: tuple[Any, ...] = ()

    def __init__(self, *args: Q, **filters: Any) -> None:
        terms: list[Any] = list(args)
        terms.extend(("FIELD", name, value) for name, value in filters.items())
        self.__attrs_init__("AND", tuple(terms))

    @classmethod
    def _make(cls, op: str, terms: tuple[Any, ...]) -> Q:
        q = cls.__new__(cls)
        q.__attrs_init__(op, terms)
        return q

    def __and__(self, other: Q) -> Q:
        return Q._make("AND", (self, other))

    def __or__(self, other: Q) -> Q:
        return Q._make("OR", (self, other))

    def __invert__(self) -> Q:
        return Q._make("NOT", (self,))


# ---- compiling to the script's tokens ---------------------------------------------------------


def _score_text(f: IndexedField, value: Any, inclusive: bool, low: bool) -> str:
    if value is None:
        return "-inf" if low else "+inf"
    _check(f, value)
    assert f.score is not None
    text = repr(f.score(value))
    return text if inclusive else "(" + text


def _check(f: IndexedField, value: Any) -> None:
    err = f.check(value)
    if err is not None:
        raise QueryError(f"{f.name}: {err}")


class _Compiler:
    def __init__(self, spec: ModelSpec) -> None:
        if spec.indexes is None:
            raise QueryError(f"{spec.name} declares no index: mark fields with "
                             "redmodel.field(index=True | 'range' | unique=True)")
        self.spec = spec
        self.indexes: IndexSpec = spec.indexes

    def field(self, name: str) -> IndexedField:
        f = self.indexes.fields.get(name)
        if f is None:
            known = any(a.name == name for a in attrs.fields(self.spec.cls))
            why = "is not indexed" if known else "is not a field"
            raise QueryError(f"{self.spec.name}.{name} {why}")
        return f

    def tokens(self, q: Q) -> list[str]:
        if q.op == "NOT":
            return ["NOT", *self.tokens(q.terms[0])]
        parts = [self.term(t) for t in q.terms]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return ["ALL"]
        return [q.op, str(len(parts)), *[tok for p in parts for tok in p]]

    def term(self, term: Any) -> list[str]:
        if isinstance(term, Q):
            return self.tokens(term)
        _, name, value = term
        f = self.field(name)
        if isinstance(value, Range):
            if not f.range:
                raise QueryError(f"{self.spec.name}.{name} has an equality index: a range "
                                 "needs index='range'")
            return ["RANGE", name, _score_text(f, value.low, value.low_inclusive, True),
                    _score_text(f, value.high, value.high_inclusive, False)]
        if isinstance(value, (_OneOf, list, set, frozenset, tuple)) and not isinstance(
                value, str):
            values = value.values if isinstance(value, _OneOf) else tuple(value)
            return ["OR", str(len(values)), *[t for v in values for t in self.eq(f, v)]]
        if isinstance(value, _Contains):
            if not f.many:
                raise QueryError(f"{self.spec.name}.{name} is not a list: use ==")
            value = value.value
        return self.eq(f, value)

    def eq(self, f: IndexedField, value: Any) -> list[str]:
        _check(f, value)
        if f.eq:
            texts = f.lookup_texts(value)  # a blind index: one per index key
            if len(texts) == 1:
                return ["EQ", f.name, texts[0]]
            return ["OR", str(len(texts)), *[t for x in texts for t in ("EQ", f.name, x)]]
        text = _score_text(f, value, True, True)
        return ["RANGE", f.name, text, text]


# ---- the script ---------------------------------------------------------------------------

# KEYS: rec, all, exp. ARGV: root, d, objprefix, count_only, order, desc, offset, limit,
# cursor_score, cursor_id, then the expression tokens.
QUERY = script("query")


# ---- the query object ----------------------------------------------------------------------


@attrs.frozen
class Page(Generic[M]):
    """One page of results and the cursor for the next (None after the last page)."""

    items: list[M]
    cursor: tuple[float, str] | str | None


@attrs.frozen
class _Hit:
    key: tuple[Any, ...]
    eid: str
    tag: str | None
    score: float | None


class Query(Generic[M]):
    """``store.find(Hat, color="black", price=redmodel.lt(50))``: a lazy, immutable query.

    Refine with :meth:`order_by`, :meth:`limit`, :meth:`offset`, :meth:`after`; run with
    :meth:`all`, :meth:`ids`, :meth:`count`, :meth:`exists`, :meth:`first`,
    :meth:`pages` (or iterate). With an AsyncStore the run methods return awaitables.
    :meth:`explain` lists the commands a run sends. Every check happens here, before any
    command: unknown or non-indexed fields, ranges on equality indexes, wrong value types
    raise :class:`QueryError`.
    """

    def __init__(self, store: Any, model: type[M], where: Q, *, order: str = "",
                 desc: bool = False, offset: int = 0, limit: int | None = None,
                 cursor: tuple[float, str] | str | None = None) -> None:
        self.store = store
        self.model = model
        self.spec = spec_of(model)
        self.where = where
        self._order, self._desc = order, desc
        self._offset, self._limit, self._cursor = offset, limit, cursor
        compiler = _Compiler(self.spec)
        self._tokens = compiler.tokens(where)
        if order:
            f = compiler.field(order)
            if not f.range:
                raise QueryError(f"{self.spec.name}.{order} needs index='range' to sort by")

    def _with(self, **changes: Any) -> Query[M]:
        options = {"order": self._order, "desc": self._desc, "offset": self._offset,
                   "limit": self._limit, "cursor": self._cursor, **changes}
        return Query(self.store, self.model, self.where, **options)

    def order_by(self, field: str) -> Query[M]:
        """Sort by a range-indexed field, ties by id; ``"-price"`` reverses both."""
        desc = field.startswith("-")
        return self._with(order=field.lstrip("-+"), desc=desc)

    def limit(self, n: int | None) -> Query[M]:
        """At most ``n`` results."""
        if n is not None and n < 0:
            raise QueryError("limit must be >= 0")
        return self._with(limit=n)

    def offset(self, n: int) -> Query[M]:
        """Skip the first ``n`` results."""
        if n < 0:
            raise QueryError("offset must be >= 0")
        return self._with(offset=n)

    def after(self, cursor: tuple[float, str] | str | None) -> Query[M]:
        """Results after a :class:`Page` cursor (stable under inserts, unlike offset)."""
        return self._with(cursor=cursor)

    # ---- plans ----------------------------------------------------------------------

    def _script_args(self, tag: str | None, count_only: bool, want: int) -> tuple[
            list[str], list[Any]]:
        spec = self.spec
        root = spec.index_root(tag)
        keys = [root + "rec", root + "all", root + "exp"]
        cursor = self._cursor
        cscore, cid = ("", "")
        if isinstance(cursor, tuple):
            cscore, cid = repr(float(cursor[0])), cursor[1]
        elif isinstance(cursor, str):
            cid = cursor
        args = [root, spec.delimiter, spec.object_prefix(tag), "1" if count_only else "0",
                self._order, "1" if self._desc else "0", 0, want, cscore, cid, *self._tokens]
        return keys, args

    def _batch(self, count_only: bool, want: int) -> tuple[Batch, list[str | None]]:
        tags = self.spec.tags()
        cmds = [QUERY.call(*self._script_args(t, count_only, want)) for t in tags]
        keys = [self._script_args(t, count_only, want)[0][0] for t in tags]
        return Batch(cmds, keys=keys), tags

    def count_plan(self) -> Plan[int]:
        batch, _ = self._batch(True, -1)
        replies = yield batch
        return sum(int(r[0]) for r in replies)

    def _hits_plan(self, limit: int | None) -> Plan[list[_Hit]]:
        """The ids (per bucket) of this query's results, merged, sorted, cut."""
        want = -1 if limit is None else self._offset + limit
        batch, tags = self._batch(False, want)
        replies = yield batch
        runs: list[list[_Hit]] = []
        for tag, reply in zip(tags, replies, strict=True):
            items = reply[1:]
            run = []
            for i in range(0, len(items), 2):
                eid = items[i].decode() if isinstance(items[i], bytes) else str(items[i])
                raw = items[i + 1]
                score = float(raw) if raw not in (b"", "") else None
                run.append(_Hit((score or 0.0, eid), eid, tag, score))
            runs.append(run)
        # the script orders its hits when asked to sort, cut (limit) or resume (cursor)
        script_sorted = bool(self._order) or want >= 0 or self._cursor is not None
        if len(runs) == 1 and script_sorted:
            merged = runs[0]
        elif self._order:
            merged = list(heapq.merge(*runs, key=lambda h: h.key, reverse=self._desc))
        elif script_sorted:
            merged = list(heapq.merge(*runs, key=lambda h: h.eid))
        else:
            merged = sorted((h for run in runs for h in run), key=lambda h: h.eid)
        end = None if limit is None else self._offset + limit
        return merged[self._offset:end]

    def _fetch(self, hits: list[_Hit]) -> Plan[list[M]]:
        from redmodel._ops import layout_of  # noqa: PLC0415 - _ops imports this module

        spec = self.spec
        layout = layout_of(spec)
        keys = [spec.object_prefix(h.tag) + h.eid for h in hits]
        if not keys:
            return []
        replies = yield Batch([layout.read(k) for k in keys], keys=keys)
        out = []
        for key, hit, reply in zip(keys, hits, replies, strict=True):
            obj = layout.decode(key, unescape(hit.eid), reply)
            if obj is not None:  # deleted behind redmodel's back: skipped
                out.append(obj)
        return out

    def all_plan(self) -> Plan[list[M]]:
        hits = yield from self._hits_plan(self._limit)
        return (yield from self._fetch(hits))

    def ids_plan(self) -> Plan[list[Any]]:
        hits = yield from self._hits_plan(self._limit)
        decode = self.spec.key.decode
        assert decode is not None
        return [decode(unescape(h.eid).encode()) for h in hits]

    def page_plan(self, size: int) -> Plan[Page[M]]:
        hits = yield from self._hits_plan(size)
        items = yield from self._fetch(hits)
        cursor: tuple[float, str] | str | None = None
        if len(hits) == size and hits:
            last = hits[-1]
            cursor = (last.score, last.eid) if last.score is not None else last.eid
        return Page(items, cursor)

    # ---- running (the store decides sync or async) ----------------------------------

    def all(self) -> list[M]:
        """The results as objects: one script call per bucket, then one pipelined read
        of the hits (HGETALL each)."""
        return self.store.run(self.all_plan())  # type: ignore[no-any-return]

    def ids(self) -> list[Any]:
        """The results' ids only: one script call per bucket."""
        return self.store.run(self.ids_plan())  # type: ignore[no-any-return]

    def count(self) -> int:
        """How many objects match (expired ones never count): one script call per
        bucket."""
        return self.store.run(self.count_plan())  # type: ignore[no-any-return]

    def exists(self) -> bool:
        """Whether any object matches."""
        result = self.store.run(self.count_plan())
        if hasattr(result, "__await__"):
            async def later() -> bool:
                return bool(await result)
            return later()  # type: ignore[return-value]
        return bool(result)

    def first(self) -> M | None:
        """The first result (in this query's order), or None."""
        result = self.store.run(self.limit(1).all_plan())
        if hasattr(result, "__await__"):
            async def later() -> M | None:
                found = await result
                return found[0] if found else None
            return later()  # type: ignore[return-value]
        return result[0] if result else None

    def page(self, size: int) -> Page[M]:
        """One page of ``size`` results after this query's cursor, with the next cursor."""
        return self.store.run(self.page_plan(size))  # type: ignore[no-any-return]

    def _paging(self, size: int) -> Generator[tuple[Query[M], int], Any, None]:
        """(query, page size) for each page: the offset applies once, the limit overall;
        the caller sends back each page's cursor."""
        if size < 1:
            raise QueryError("a page holds at least one result")
        remaining = self._limit
        query = self._with(limit=None)
        while remaining is None or remaining > 0:
            n = size if remaining is None else min(size, remaining)
            cursor = yield query, n
            if cursor is None:
                return
            if remaining is not None:
                remaining -= n
            query = query.after(cursor).offset(0)

    def pages(self, size: int = 500) -> Iterator[list[M]]:
        """Every result (after the offset, up to the limit), a page at a time, following
        cursors (sync stores)."""
        steps = self._paging(size)
        try:
            query, n = next(steps)
            while True:
                page = query.page(n)
                if page.items:
                    yield page.items
                query, n = steps.send(page.cursor)
        except StopIteration:
            return

    async def apages(self, size: int = 500) -> AsyncIterator[list[M]]:
        """:meth:`pages` for an AsyncStore."""
        steps = self._paging(size)
        try:
            query, n = next(steps)
            while True:
                page = await query.store.run(query.page_plan(n))
                if page.items:
                    yield page.items
                query, n = steps.send(page.cursor)
        except StopIteration:
            return

    def __iter__(self) -> Iterator[M]:
        for items in self.pages():
            yield from items

    def explain(self) -> list[str]:
        """The Redis commands a run of :meth:`all` sends, and what the script does."""
        spec = self.spec
        tags = spec.tags()
        lines = [f"{len(tags)} x EVALSHA query script (one per bucket, pipelined), each: "
                 f"sweep expired objects (ZRANGEBYSCORE {spec.index_root(tags[0])}exp), "
                 f"then {_describe(self._tokens, spec.index_root(tags[0]), spec.delimiter)}"]
        if self._order:
            lines.append(f"  sort by {self._order} {'desc' if self._desc else 'asc'} "
                         f"(ZSCORE {spec.index_root(tags[0])}rng{spec.delimiter}{self._order}"
                         " per hit)")
        if self._limit is not None or self._offset:
            lines.append(f"  offset {self._offset}, limit {self._limit}")
        lines.append("then HGETALL of each hit, pipelined in one round trip")
        return lines

    def __repr__(self) -> str:
        return f"<Query {self.spec.name} {' '.join(self._tokens)}>"


def _describe(tokens: list[str], root: str, d: str) -> str:
    pos = 0

    def walk() -> str:
        nonlocal pos
        op = tokens[pos]
        pos += 1
        if op == "EQ":
            name, value = tokens[pos], tokens[pos + 1]
            pos += 2
            return f"SMEMBERS {root}eq{d}{name}{d}{value}"
        if op == "RANGE":
            name, lo, hi = tokens[pos : pos + 3]
            pos += 3
            return f"ZRANGEBYSCORE {root}rng{d}{name} {lo} {hi}"
        if op == "ALL":
            return f"ZRANGE {root}all 0 -1"
        if op == "NOT":
            return f"(SMEMBERS {root}all minus {walk()})"
        n = int(tokens[pos])
        pos += 1
        parts = [walk() for _ in range(n)]
        return "(" + f" {op} ".join(parts) + ")"

    return walk()
