"""Queries over a model's secondary indexes, as plans (so sync, asyncio and cluster stores
run the same logic).

A query runs a page at a time. For each page, every bucket runs the query script in
bounded steps: a step examines at most :data:`STEP_BUDGET` candidates and answers its
matches and where to go on, so no script call holds the server for long whatever the
number of results. A step either *walks* an ordered index in the query's result order (the
all-ids index for unordered queries, the sort field's sorted set otherwise) and stops after
the page is full, or *scans* the members of the query's most selective term in no order,
every step going on where the last stopped; the script picks the cheaper from native
counts. The client merges the buckets' matches, keeps the page's best, then fetches those
objects in one pipelined round trip.

Results are ordered by the sort field then by id, or by id; a cursor is the exact position
of a page's last result (the score as Redis wrote it, and the id), so the next page starts
right after it whatever objects came and went meanwhile.
"""

from __future__ import annotations

import decimal
import functools
import inspect
import math
import re
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Generic, TypeVar, overload

import attrs

from redmodel._args import INT64_MAX, shown
from redmodel._errors import IndexNotReadyError, QueryError, ServerError
from redmodel._indexes._registry import Registry, query_needs, registry_key
from redmodel._indexes._repair import sweep_step
from redmodel._indexes._specs import IndexedField, IndexValueError
from redmodel._layouts._pick import layout_of
from redmodel._models._keys import unescape
from redmodel._models._specs import ModelSpec, model_spec
from redmodel._plan import (
    AsyncRunner,
    Batch,
    Command,
    Emit,
    IterPlan,
    Plan,
    S,
    SyncRunner,
    in_transaction,
    iterate_async,
    iterate_sync,
    open_transaction,
    script,
)

__all__ = [
    "Contains", "OneOf", "Page", "Q", "Query", "Range", "between", "contains", "ge", "gt", "le",
    "lt", "one_of",
]

M = TypeVar("M")
G = TypeVar("G", bound=Generator[Any, Any, Any])

PAGE_SIZE = 1000
"""Results per page when iterating a query (``for obj in query``) and in :meth:`Query.pages`."""

ALL_PAGE_SIZE = 20_000
"""Results per page when :meth:`Query.all` and :meth:`Query.ids` gather every result."""

STEP_BUDGET = 1000
"""Work one script call does at most, about: members it reads from an index plus members
it looks up in one (SMISMEMBER, ZMSCORE). About half a millisecond of server time on a
quiet machine, whatever the size of the result: a page takes several calls when it is
larger, or when candidates are rarely matches. (Measured with ``python -m
benchmarks.bench_steps`` before any change: a step of 1,000 units took 0.24-0.61 ms at
the median on Redis 7.0.15 and Valkey 9.1.2, so a larger budget would break the promise
of docs/queries.md.)"""

MAX_EXACT_INT = 2**53
"""Range indexes hold numbers as doubles: ints are exact within +-2**53 only."""

MAX_TERMS = 100
"""Index terms one query may name at most (a ``one_of`` names one per value). Every step
sends and parses the whole expression, and checking one candidate may take a command per
term; the step counts both in its :data:`STEP_BUDGET` (a term parsed 2 units, a command 3
on top of its members), so at 100 terms the fixed part of a step and one candidate's
check still fit in one budget (at 1,000 terms, as before, they took 2-7 ms of one call
whatever the budget: docs/queries.md "Cost of each query shape")."""

MAX_DEPTH = 32
"""How deeply ``&``, ``|`` and ``~`` may nest (chains of one operator are flattened, so
``a | b | c | ...`` is one level)."""


# ---- predicates ---------------------------------------------------------------------------
#
# No repr of an expression and no query error shows a value, only its type (``Q(ssn=<str>)``):
# a Q is not bound to a model, so it cannot know which fields are encrypted, and logging the
# filter a query was built from must not log an SSN (decided in session 23).

_SHOWN_VALUES = 5
"""Values of a ``one_of`` its repr lists (as types) before it says how many more."""


def _shape(value: Any) -> str:
    """A filter value as its repr shows it: never the value, only its type."""
    if value is None or isinstance(value, (Range, OneOf, Contains)):
        return repr(value)
    return f"<{type(value).__name__}>"


@attrs.frozen(repr=False)
class Range:
    """A range of a range-indexed field; ``None`` ends are open (``Range()`` is every
    value). The helpers :func:`lt`, :func:`between`, ... need a value for each end they
    name."""

    low: Any = None
    high: Any = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __repr__(self) -> str:
        return (f"Range(low={_shape(self.low)}, high={_shape(self.high)}, "
                f"low_inclusive={self.low_inclusive!r}, high_inclusive={self.high_inclusive!r})")


def _bound(value: Any, helper: str) -> Any:
    if value is None:
        raise QueryError(f"{helper}(None): a bound needs a value (leave the end out for an "
                         "open range)")
    if _is_nan(value):
        raise QueryError(f"{helper}(NaN): NaN is not a bound (no value compares with it)")
    return value


def _is_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, decimal.Decimal) and value.is_nan()


def gt(value: Any) -> Range:
    """``field > value``."""
    return Range(low=_bound(value, "gt"), low_inclusive=False)


def ge(value: Any) -> Range:
    """``field >= value``."""
    return Range(low=_bound(value, "ge"))


def lt(value: Any) -> Range:
    """``field < value``."""
    return Range(high=_bound(value, "lt"), high_inclusive=False)


def le(value: Any) -> Range:
    """``field <= value``."""
    return Range(high=_bound(value, "le"))


def between(low: Any, high: Any, *, inclusive: tuple[bool, bool] = (True, True)) -> Range:
    """``low <= field <= high`` (each end inclusive or not: ``inclusive=(True, False)``)."""
    if not (isinstance(inclusive, tuple) and len(inclusive) == 2
            and all(isinstance(i, bool) for i in inclusive)):
        raise QueryError(f"between(..., inclusive=) takes two bools, (low end, high end), "
                         f"not a {type(inclusive).__name__}")
    return Range(_bound(low, "between"), _bound(high, "between"), inclusive[0], inclusive[1])


@attrs.frozen(repr=False)
class OneOf:
    """What :func:`one_of` gives: ``field in values``."""

    values: tuple[Any, ...]

    def __repr__(self) -> str:
        shown = [_shape(v) for v in self.values[:_SHOWN_VALUES]]
        if len(self.values) > _SHOWN_VALUES:
            shown.append(f"... {len(self.values) - _SHOWN_VALUES} more")
        return f"one_of([{', '.join(shown)}])"


def one_of(values: Sequence[Any]) -> OneOf:
    """``field in values`` (a list, tuple or set of values; ``one_of([])`` matches
    nothing)."""
    if isinstance(values, (str, bytes, bytearray, memoryview, Mapping)):
        raise QueryError(f"one_of needs a list of values, not a {type(values).__name__}: "
                         "write one_of([value]) for a single value")
    try:
        return OneOf(tuple(values))
    except TypeError:
        raise QueryError(f"one_of needs a list of values, not a {type(values).__name__}"
                         ) from None


@attrs.frozen(repr=False)
class Contains:
    """What :func:`contains` gives: a list field holds ``value``."""

    value: Any

    def __repr__(self) -> str:
        return f"contains({_shape(self.value)})"


def contains(value: Any) -> Contains:
    """A list field holds ``value`` (the same as ``tags="x"`` on an indexed list)."""
    return Contains(value)


@attrs.frozen(init=False, repr=False)
class Q:
    """A query expression: ``Q(color="black", price=lt(50))`` (AND of its terms);
    combine with ``&``, ``|`` and ``~``."""

    op: str = "AND"
    terms: tuple[Any, ...] = ()

    def __init__(self, *args: Q, **filters: Any) -> None:
        for arg in args:
            if not isinstance(arg, Q):
                raise QueryError(f"Q() takes Q expressions and field=value filters, not "
                                 f"a {type(arg).__name__}")
        terms = args + tuple([("FIELD", name, value) for name, value in filters.items()])
        self.__attrs_init__("AND", terms)

    @classmethod
    def _make(cls, op: str, terms: tuple[Any, ...]) -> Q:
        for term in terms:
            if not isinstance(term, Q):
                raise QueryError(f"{op} combines Q expressions, not a {type(term).__name__}")
        q = cls.__new__(cls)
        q.__attrs_init__(op, terms)
        return q

    def _chain(self, op: str, other: Q) -> Q:
        """``self op other``, flattened: a chain of one operator is one node, however
        long (so building it, comparing it and compiling it never recurse deeply)."""
        if not isinstance(other, Q):
            raise QueryError(f"{op} combines Q expressions, not a {type(other).__name__}")
        left = self.terms if self.op == op and self.terms else (self,)
        right = other.terms if other.op == op and other.terms else (other,)
        q = Q.__new__(Q)
        q.__attrs_init__(op, left + right)  # terms: Q expressions, and an AND's filters
        return q

    def __and__(self, other: Q) -> Q:
        return self._chain("AND", other)

    def __or__(self, other: Q) -> Q:
        return self._chain("OR", other)

    def __invert__(self) -> Q:
        return Q._make("NOT", (self,))

    def __repr__(self) -> str:
        """``Q(ssn=<str>) | ~Q(price=Range(...))``: fields, operators and the values' types,
        never a value."""
        return _show(self, 0)


_SHOWN_DEPTH = 2 * MAX_DEPTH
"""Nesting a Q's repr spells out (deeper is ``Q(...)``: a repr never recurses deeply)."""


def _show(q: Q, depth: int) -> str:
    if depth > _SHOWN_DEPTH:
        return "Q(...)"
    if q.op == "NOT":
        return "~" + _group(q.terms[0], depth + 1)
    if q.op == "OR":
        return " | ".join(_group(t, depth + 1) for t in q.terms) or "Q()"
    filters = [f"{t[1]}={_shape(t[2])}" for t in q.terms if not isinstance(t, Q)]
    parts = [f"Q({', '.join(filters)})"] if filters or not q.terms else []
    parts += [_group(t, depth + 1) for t in q.terms if isinstance(t, Q)]
    return " & ".join(parts)


def _group(q: Q, depth: int) -> str:
    """``q`` shown as an operand: in parentheses when it is an & or | of several."""
    text = _show(q, depth)
    joined = q.op != "NOT" and len(q.terms) > 1 and any(isinstance(t, Q) for t in q.terms)
    return f"({text})" if joined or (q.op == "OR" and len(q.terms) > 1) else text


# ---- compiling ---------------------------------------------------------------------------


@attrs.frozen
class _Eq:
    key: str  # below the bucket's index root
    field: str
    text: str


@attrs.frozen
class _Rng:
    key: str
    field: str
    lo: str  # Redis range text: "-inf", "1.5" or "(1.5"
    hi: str


@attrs.frozen
class _All:
    pass


@attrs.frozen
class _Not:
    kid: Any


@attrs.frozen
class _Op:
    op: str  # AND, OR, or ORD (an OR of disjoint terms)
    kids: tuple[Any, ...]


_Node = _Eq | _Rng | _All | _Not | _Op
_ALL = _All()
_NOTHING = _Op("ORD", ())


def _check(f: IndexedField, value: Any) -> None:
    err = f.check(value)
    if err is not None:
        raise QueryError(f"{f.name}: {err}")


def _score_text(f: IndexedField, value: Any) -> str:
    """The exact text of ``value``'s score in the range index (Python's repr of a float
    is the shortest text that reads back as the same double)."""
    if value is None:
        raise QueryError(f"{f.name}: None is not indexed (objects without a value are in no "
                         "index)")
    _check(f, value)
    # a float field takes the ints a float holds exactly (its check refuses the others)
    if f.tp is int and not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
        raise QueryError(f"{f.name}: the int is outside +-2**53, where the range index "
                         "holds ints exactly")
    assert f.score is not None
    failed = ""
    try:
        score = f.score(value)
    except (ArithmeticError, ValueError) as e:
        failed = type(e).__name__  # raised below: the error may hold the value
    if failed:
        raise QueryError(f"{f.name}: the {type(value).__name__} has no score in the range "
                         f"index: {failed}")
    if not math.isfinite(score):
        raise QueryError(f"{f.name}: the {type(value).__name__} is not a finite number; the "
                         "range index refuses NaN and infinities")
    return repr(score + 0.0)  # -0.0 and 0.0: one score, one text (a one_of of both is one term)


def _range_bound(f: IndexedField, value: Any, inclusive: bool, low: bool) -> str:
    if value is None:
        return "-inf" if low else "+inf"
    if _is_nan(value):
        raise QueryError(f"{f.name}: NaN is not a bound (no value compares with it)")
    text = _score_text(f, value)
    return text if inclusive else "(" + text


def _check_shape(q: Any) -> None:
    """Refuse (QueryError) an expression nested deeper than :data:`MAX_DEPTH`, walking it
    without recursion (so a hostile expression cannot exhaust the stack)."""
    # a level is an operator: a ~, or an & / | of several terms (Q(a="x") & Q(b="y") is
    # one, flattened to Q(a="x", b="y"); a Q of one filter, or Q(q) wrapping one
    # expression, is none)
    stack: list[tuple[Any, int]] = [(q, 0)]
    while stack:
        node, depth = stack.pop()
        kids = [t for t in node.terms if isinstance(t, Q)]
        if node.op == "NOT" or len(node.terms) > 1:
            depth += 1
        if depth > MAX_DEPTH:
            raise QueryError(f"the query nests &, | and ~ more than {MAX_DEPTH} levels deep")
        stack.extend((t, depth) for t in kids)


class _Compiler:
    def __init__(self, spec: ModelSpec) -> None:
        if spec.indexes is None:
            raise QueryError(f"{spec.name} declares no index: mark fields with "
                             "redmodel.field(index=True | 'range' | unique=True)")
        self.spec = spec
        self.indexes = spec.indexes
        self.d = spec.delimiter
        self.used: set[str] = set()
        self.named = 0  # the values the query names (compile_top's limit)

    def field(self, name: str) -> IndexedField:
        self.used.add(name)
        f = self.indexes.fields.get(name)
        if f is None:
            known = any(a.name == name for a in attrs.fields(self.spec.cls))
            why = "is not indexed" if known else "is not a field"
            raise QueryError(f"{self.spec.name}.{name} {why}")
        return f

    def compile_top(self, q: Q) -> _Node:
        """``q`` compiled, after the checks of its shape and size."""
        if not isinstance(q, Q):
            raise QueryError(f"a query is a Q expression, not a {type(q).__name__}")
        _check_shape(q)
        self.named = 0
        node = self.compile(q)
        # the values named, not the terms sent: a blind index's value is one term per
        # configured index key, two while keys rotate (docs/codecs.md: queries keep
        # working then; attack 33F F2); what is sent is bounded by it, since pieces that
        # match nothing or everything are folded away as they are compiled (F1)
        if self.named > MAX_TERMS:
            raise QueryError(f"the query names {self.named} index terms; at most "
                             f"{MAX_TERMS} (a one_of names one per value): query in parts "
                             "and merge the ids")
        return node

    def compile(self, q: Q) -> _Node:
        if q.op == "NOT":
            kid = self.compile(q.terms[0])
            if isinstance(kid, _All):  # ~Q(): nothing
                return _NOTHING
            if kid == _NOTHING:  # ~one_of([]): everything
                return _ALL
            return kid.kid if isinstance(kid, _Not) else _Not(kid)
        return _combine(q.op, [self.term(t) for t in q.terms])

    def term(self, term: Any) -> _Node:
        if isinstance(term, Q):
            return self.compile(term)
        _, name, value = term
        f = self.field(name)
        if isinstance(value, Range):
            if not (isinstance(value.low_inclusive, bool)
                    and isinstance(value.high_inclusive, bool)):
                raise QueryError(f"{self.spec.name}.{name}: a Range's inclusive ends are "
                                 "bools")
            if not f.range:
                raise QueryError(f"{self.spec.name}.{name} has an equality index: a range "
                                 "needs index='range'")
            self.named += 1
            return _Rng(f"rng{self.d}{name}", name,
                        _range_bound(f, value.low, value.low_inclusive, True),
                        _range_bound(f, value.high, value.high_inclusive, False))
        if isinstance(value, (list, set, frozenset, tuple)):
            has = (f"Q({name}=a) & Q({name}=b) for one holding all, contains(x) for one "
                   "item, " if f.many else "")
            raise QueryError(
                f"{self.spec.name}.{name}: a {type(value).__name__} is not a filter value; "
                f"write {name}=one_of([...]) for any of several values ({has}decided for "
                "issue 13)")
        if isinstance(value, OneOf):
            values = value.values
            kids = list(dict.fromkeys(self.eq(f, v) for v in values))
            self.named += len(kids)
            if len(kids) == 1:
                return kids[0]
            # an object has one value of a single-valued field: its terms never overlap
            return _Op("OR" if f.many else "ORD", tuple(kids))
        if isinstance(value, Contains):
            if not f.many:
                raise QueryError(f"{self.spec.name}.{name} is not a list: use ==")
            value = value.value
        self.named += 1
        return self.eq(f, value)

    def eq(self, f: IndexedField, value: Any) -> _Node:
        if value is None:
            raise QueryError(f"{f.name}: None is not indexed (objects without a value are "
                             "in no index)")
        if _is_nan(value):
            raise QueryError(f"{f.name}: NaN equals nothing")
        if f.eq:
            _check(f, value)
            # a blind index: one token per configured index key; an object's entries are
            # all under the key of its last write, so the terms never overlap
            kids = tuple(_Eq(f"eq{self.d}{f.name}{self.d}{t}", f.name, t)
                         for t in f.lookup_texts(value))
            return kids[0] if len(kids) == 1 else _Op("OR" if f.many else "ORD", kids)
        text = _score_text(f, value)
        return _Rng(f"rng{self.d}{f.name}", f.name, text, text)


def _combine(op: str, kids: list[_Node]) -> _Node:
    """AND/OR of ``kids``, flattened (an AND inside an AND is one AND), with the pieces
    that match nothing or everything folded away (an AND holding one that matches nothing
    matches nothing; an OR drops it): so no expression is sent wider than the terms it
    names (attack 33F F1: ten thousand empty one_of's or ~Q()'s in an OR of one term)."""
    flat: list[_Node] = []
    for kid in kids:
        if op == "AND" and kid == _NOTHING:
            return _NOTHING
        if isinstance(kid, _Op) and (kid.op == op or (op == "OR" and kid.op == "ORD")):
            flat.extend(kid.kids)
        elif op == "AND" and isinstance(kid, _All):
            continue
        elif op == "OR" and isinstance(kid, _All):
            return _ALL
        else:
            flat.append(kid)
    if not flat:
        return _ALL if op == "AND" else _NOTHING
    if len(flat) == 1:
        return flat[0]
    return _Op(op, tuple(flat))


def _end(text: str) -> tuple[float, bool]:
    """A Redis range text as (value, inclusive)."""
    if text in ("-inf", "+inf"):
        return float(text), True
    if text.startswith("("):
        return float(text[1:]), False
    return float(text), True


def _tighter(a: str, b: str, low: bool) -> str:
    (va, a_inclusive), (vb, _) = _end(a), _end(b)
    if va != vb:
        return a if (va > vb) == low else b
    return b if a_inclusive else a  # the same value: an exclusive end is the tighter


def _split_walk(expr: _Node, order: str) -> tuple[str, str, _Node]:
    """(low, high, rest): the ranges on the sort field at the top of ``expr`` become the
    bounds of the walk over its sorted set; ``rest`` filters the candidates."""
    terms = list(expr.kids) if isinstance(expr, _Op) and expr.op == "AND" else [expr]
    lo, hi, rest = "-inf", "+inf", []
    for term in terms:
        if isinstance(term, _Rng) and term.field == order:
            lo, hi = _tighter(lo, term.lo, True), _tighter(hi, term.hi, False)
        else:
            rest.append(term)
    return lo, hi, _combine("AND", rest)


@attrs.frozen
class _Program:
    """An expression as the script's tokens, with the index keys they name (KEYS[6:])."""

    tokens: tuple[str, ...]
    keys: tuple[str, ...]
    sort: str  # index of the sort field's key in KEYS, or ""
    walk_lo: str = "-inf"
    walk_hi: str = "+inf"


def _program(expr: _Node, sort_key: str | None = None, walk: tuple[str, str] = ("-inf", "+inf")
             ) -> _Program:
    keys: dict[str, int] = {}

    def index(key: str) -> str:
        return str(keys.setdefault(key, len(keys) + 6))

    def emit(node: _Node) -> list[str]:
        if isinstance(node, _Eq):
            return ["EQ", index(node.key)]
        if isinstance(node, _Rng):
            return ["RANGE", index(node.key), node.lo, node.hi]
        if isinstance(node, _All):
            return ["ALL"]
        if isinstance(node, _Not):
            return ["NOT", *emit(node.kid)]
        return [node.op, str(len(node.kids)), *[t for kid in node.kids for t in emit(kid)]]

    tokens = emit(expr)
    sort = index(sort_key) if sort_key else ""
    return _Program(tuple(tokens), tuple(keys), sort, *walk)


# ---- cursors ------------------------------------------------------------------------------

# ASCII digits only: Python's float() also reads other scripts' digits, Redis does not
_SCORE = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_RAW = re.compile(r"[*?\[\]\\{}\n\x1e\x1f]|%(?![0-9A-F]{2})")


def _cursor_text(order: str, score: str, eid: str) -> str:
    return f"{order}|{score}|{eid}"


def _parse_cursor(cursor: Any, delimiter: str) -> tuple[str, str, str]:
    """(order, score text, escaped id) of a cursor; QueryError when it is not one."""
    if not isinstance(cursor, str):
        raise QueryError(f"a cursor is the str a Page gave (Page.cursor), not "
                         f"{type(cursor).__name__}")
    parts = cursor.split("|", 2)
    if len(parts) != 3:
        raise QueryError(f"malformed cursor {cursor!r}: use the cursor of a Page")
    order, score, eid = parts
    if order and not order.removeprefix("-").isidentifier():
        raise QueryError(f"malformed cursor {cursor!r}: use the cursor of a Page")
    if order and not (_SCORE.fullmatch(score) and math.isfinite(float(score))):
        raise QueryError(f"malformed cursor {cursor!r}: {score!r} is not a score")
    if not order and score:
        raise QueryError(f"malformed cursor {cursor!r}: an unordered query's cursor has no "
                         "score")
    if not eid or _RAW.search(eid) or delimiter in eid:
        raise QueryError(f"malformed cursor {cursor!r}: {eid!r} is not an escaped id")
    try:
        # the bytes the id is sent as (_raw): a lone surrogate other than one standing for
        # an undecodable byte of a stored id (surrogateescape) is no id any index holds
        _raw(eid)
    except UnicodeEncodeError:
        raise QueryError(f"malformed cursor {cursor!r}: {eid!r} is not an escaped id "
                         "(not UTF-8 text)") from None
    return order, score, eid


# ---- compiled expressions, shared by queries of the same filters ---------------------------


@attrs.define
class _Compiled:
    """A compiled filter: its expression, the index states it needs, its count program."""

    expr: _Node
    needs: frozenset[str]
    program: _Program | None = None
    # the one-command counts of a single-bucket model (Query._native_count), by sort
    # field ("" for by id: an order_by count also needs the sort field's score): the step
    # check each was built with, and the batch
    native: dict[str, tuple[tuple[str, str, str] | None, Batch]] = attrs.field(factory=dict)


_COMPILED: dict[tuple[Any, ...], _Compiled] = {}
_COMPILED_MAX = 4096
_UNKEYED = object()


def _value_key(value: Any) -> Any:
    """A key telling filter values apart exactly as compiling them does (the type, and a
    float's repr, so 1, 1.0 and True, or 0.0 and -0.0, never share an entry), or _UNKEYED
    for a value kept out of the cache."""
    t = type(value)
    if t is str or t is int or t is bool:
        return (t, value)
    if t is float:
        return (t, repr(value))
    if t is Range:
        ends = (_value_key(value.low) if value.low is not None else None,
                _value_key(value.high) if value.high is not None else None)
        if _UNKEYED in ends:
            return _UNKEYED
        return ("range", *ends, type(value.low_inclusive), value.low_inclusive,
                type(value.high_inclusive), value.high_inclusive)
    return _UNKEYED


def _where_key(spec: ModelSpec, where: Any) -> tuple[Any, ...] | None:
    """The cache key of ``where`` when it is ``field=value`` filters only (what
    ``find(Model, a=1, b=lt(2))`` builds) of str, int, bool, float or Range values, on
    fields that are not blind-indexed (their entry texts depend on the configured keys);
    else None (compiled each time)."""
    if type(where) is not Q or where.op != "AND" or spec.indexes is None:
        return None
    fields = spec.indexes.fields
    parts: list[Any] = [spec.cls]
    for term in where.terms:
        if type(term) is not tuple:
            return None
        _, name, value = term
        f = fields.get(name)
        if f is None or f.blind is not None:
            return None
        k = _value_key(value)
        if k is _UNKEYED:
            return None
        parts.append((name, k))
    return tuple(parts)


# ---- the query object ----------------------------------------------------------------------


@attrs.frozen
class Page(Generic[M]):
    """One page of results and the cursor to pass to :meth:`Query.after` for the next
    (``None`` once there is no more)."""

    items: list[M]
    cursor: str | None


# A hit: (sort key, escaped id, bucket tag, score text). The sort key compares as Redis
# orders: the score as a double, then the id's bytes.
_Hit = tuple[tuple[Any, ...], str, "str | None", str]


@attrs.define
class _Bucket:
    """Where one bucket's part of a page (or count) stands between script calls."""

    tag: str | None
    from_score: str = ""
    from_id: str = ""
    step: str = ""  # "" (the script chooses), "W" (walk) or "S" (scan)
    scan: tuple[str, str, str, str] = ("0", "1", "", "")
    done: bool = False
    found: int = 0
    settled: bool = False


@attrs.define
class Window:
    """Later results of a scan pass, kept by pages() so that the next pages need no pass
    of their own: ``hits`` in result order; ``beyond`` whether matches after the last of
    them may exist (the pass kept only so many); ``ids`` each kept hit by (bucket tag,
    escaped id)."""

    hits: list[_Hit] = attrs.field(factory=list)
    beyond: bool = True
    ids: dict[tuple[str | None, str], _Hit] = attrs.field(factory=dict)

    def fill(self, hits: list[_Hit], beyond: bool) -> None:
        self.hits, self.beyond = hits, beyond
        self.ids = {(h[2], h[1]): h for h in hits}

    def serves(self, want: int) -> bool:
        """Whether it holds the whole next page of ``want`` results."""
        return len(self.hits) >= want or (bool(self.hits) and not self.beyond)

    def take(self, want: int) -> tuple[list[_Hit], bool]:
        hits = self.hits[:want]
        del self.hits[:want]
        for h in hits:
            self.ids.pop((h[2], h[1]), None)
        return hits, bool(self.hits) or self.beyond

    def put(self, hits: list[_Hit], desc: bool) -> None:
        """Place ``hits`` (new positions of kept or just-read results) in order."""
        for h in hits:
            old = self.ids.pop((h[2], h[1]), None)
            if old is not None:
                self.hits.remove(old)
        self.hits.extend(hits)
        self.hits.sort(key=lambda h: h[0], reverse=desc)
        for h in hits:
            self.ids[(h[2], h[1])] = h

    def drop(self, hits: list[_Hit]) -> None:
        for h in hits:
            old = self.ids.pop((h[2], h[1]), None)
            if old is not None:
                self.hits.remove(old)

    def clear(self) -> None:
        self.hits, self.beyond, self.ids = [], True, {}


def _str(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


class Query(Generic[M, S]):
    """``store.find(Hat, color="black", price=redmodel.lt(50))``: a lazy, immutable query.

    Refine with :meth:`order_by`, :meth:`limit`, :meth:`offset`, :meth:`after`; run with
    :meth:`all`, :meth:`ids`, :meth:`count`, :meth:`exists`, :meth:`first`, :meth:`page`,
    :meth:`pages`, or iterate (``for``; ``async for`` with an AsyncStore, whose run
    methods return awaitables). :meth:`explain` lists the commands a run sends. Every
    check happens here, before any command: unknown or non-indexed fields, ranges on
    equality indexes, wrong value types, None or NaN bounds, malformed cursors raise
    :class:`QueryError`.

    ``S`` is the store's type: ``Query[Hat]`` (``Query[Hat, Store]``) runs at once,
    ``Query[Hat, AsyncStore]`` (from ``AsyncStore.find``) returns coroutines, and type
    checkers see each form's own signatures (docs/design.md).
    """

    def __init__(self, store: S, model: type[M], where: Q, *, order: str = "",
                 desc: bool = False, offset: int = 0, limit: int | None = None,
                 cursor: str | None = None) -> None:
        self.store = store
        self.model = model
        self.spec = model_spec(model)
        self.where = where
        self._order, self._desc = order, desc
        self._offset, self._limit, self._cursor = offset, limit, cursor
        key = _where_key(self.spec, where)
        known = None if key is None else _COMPILED.get(key)
        if known is None:
            compiler = _Compiler(self.spec)
            expr = compiler.compile_top(where)
            used = frozenset(compiler.used)
            known = _Compiled(expr, query_needs(self.spec, used))
            if key is not None:
                if len(_COMPILED) >= _COMPILED_MAX:
                    _COMPILED.clear()
                _COMPILED[key] = known
        self._known = known
        self._expr = known.expr
        self._needs = known.needs
        if order:
            if not _Compiler(self.spec).field(order).range:
                raise QueryError(f"{self.spec.name}.{order} needs index='range' to sort by")
            self._needs = self._needs | {f"index:{order}"}
        self._after = None if cursor is None else _parse_cursor(cursor, self.spec.delimiter)
        self._texts: dict[tuple[str, type, str], str] = {}

    def _guard(self, plan: G) -> G:
        """``plan``, after the store checked that every index this query reads is built
        (IndexNotReadyError if not): on the first use of the model it reads the registry
        record; later, each script step checks the states it read in the same call
        (:meth:`_step_check`), so a change by another process is seen by the next step.
        On a cluster (the record lives in another slot than the index keys) and for a
        store that cannot check in the script, the same check is an HGET per field of
        the record (one round trip) before each query (Registry.confirm)."""
        registry: Registry | None = getattr(self.store, "_registry", None)
        if registry is None:
            return plan
        check = registry.step_check(self.spec.cls, self._needs)
        recheck = check is not None and (not check[0] or bool(getattr(
            self.store, "cluster", False)))
        return registry.needing(self.spec, self._needs, plan, recheck)

    def _step_check(self) -> tuple[str, str, str] | None:
        """(registry key, marker, expected states) a script step checks, or None (no
        registry, a cluster, inside a transaction: see :meth:`_guard`)."""
        if in_transaction() or getattr(self.store, "cluster", False):
            return None
        registry: Registry | None = getattr(self.store, "_registry", None)
        check = None if registry is None else registry.step_check(self.spec.cls,
                                                                  self._needs)
        return check if check is not None and check[0] else None

    @functools.cached_property
    def _count_program(self) -> _Program:
        """The program counting what :meth:`ids` walks: the filter's matches, and for an
        ``order_by`` query only those the sort field's index holds (an object whose sort
        value is None has no score, so its pages leave it out: fix 30Q). The sort field's
        ranges at the top of the filter bound that term, as they bound the walk."""
        if self._order:
            lo, hi, rest = _split_walk(self._expr, self._order)
            scored = _Rng(f"rng{self.spec.delimiter}{self._order}", self._order, lo, hi)
            return _program(_combine("AND", [scored, rest]))
        known = self._known
        if known.program is None:
            known.program = _program(self._expr)
        return known.program

    @functools.cached_property
    def _page_program(self) -> _Program:
        if not self._order:
            return self._count_program
        lo, hi, rest = _split_walk(self._expr, self._order)
        return _program(rest, f"rng{self.spec.delimiter}{self._order}", (lo, hi))

    def _with(self, **changes: Any) -> Query[M, S]:
        options = {"order": self._order, "desc": self._desc, "offset": self._offset,
                   "limit": self._limit, "cursor": self._cursor, **changes}
        return Query(self.store, self.model, self.where, **options)

    def order_by(self, field: str) -> Query[M, S]:
        """Sort by a range-indexed field, ties by id; ``"-price"`` reverses both. Objects
        without a value for the field have no score to sort by and are left out.

        Redis: none (a builder)."""
        if not isinstance(field, str):
            raise QueryError(f"order_by takes a field name, not {field!r}")
        desc = field.startswith("-")
        name = field[1:] if desc else field
        if not name.isidentifier():
            raise QueryError(f"order_by takes a field name, or one with a single '-' in "
                             f"front for descending, not {field!r}")
        return self._with(order=name, desc=desc)

    def limit(self, n: int | None) -> Query[M, S]:
        """At most ``n`` results.

        Redis: none (a builder)."""
        if n is not None:
            _count_option(n, "limit", 0, "or None")
        return self._with(limit=n)

    def offset(self, n: int) -> Query[M, S]:
        """Skip the first ``n`` results (they are still found: O(n); prefer cursors).

        Redis: none (a builder)."""
        _count_option(n, "offset", 0, most=INT64_MAX - 1)  # offset + 1 is a count too
        return self._with(offset=n)

    def after(self, cursor: str | None) -> Query[M, S]:
        """Results after a :class:`Page` cursor: the next page starts right after the
        previous page's last result, whatever was added or removed meanwhile. The cursor
        supersedes an earlier :meth:`offset` (the offset was applied when the page that gave
        the cursor was found); an ``offset()`` called after ``after()`` skips results
        after the cursor.

        Redis: none (a builder)."""
        if cursor is None:
            return self._with(cursor=None)
        return self._with(cursor=cursor, offset=0)

    # ---- one page of hits ------------------------------------------------------------

    @property
    def _order_tag(self) -> str:
        return ("-" if self._desc else "") + self._order if self._order else ""

    def _key(self, score: str, eid: bytes) -> tuple[Any, ...]:
        return (float(score), eid) if self._order else (eid,)

    def _later(self, key: tuple[Any, ...], than: tuple[Any, ...]) -> bool:
        return key < than if self._desc else key > than

    def _best(self, hits: list[_Hit], n: int, after: tuple[Any, ...] | None = None
              ) -> list[_Hit]:
        """The first ``n`` of ``hits`` after ``after`` (None: from the start) in result
        order, each id once: a scan may send an id twice (SSCAN may repeat a member; an OR
        sends the matches of each of its terms). ``hits`` are in the order they were
        found, so an id's last sighting is its newest: its sort value then places it (an
        object whose sort value moved before the cursor meanwhile is left out)."""
        latest = {(h[2], h[1]): h for h in hits}
        out = list(latest.values())
        if after is not None:
            out = [h for h in out if self._later(h[0], after)]
        out.sort(key=lambda h: h[0], reverse=self._desc)
        return out[:n]

    def _call(self, program: _Program, mode: str, bucket: _Bucket, want: int, span: int = 0
              ) -> Command:
        spec = self.spec
        root = spec.index_root(bucket.tag)
        keys = [root + "rec", root + "all", root + "exp", root + "ids", root + "idn",
                *[root + k for k in program.keys]]
        check = self._step_check()
        if check is None:
            head = ["", "", ""]
        else:
            keys.append(check[0])
            head = [str(len(keys)), check[1], check[2]]
        if mode == "count" and not bucket.step and program.tokens[0] in _NATIVE_ONE:
            # one term: counted natively, the script's short form (no step state)
            return QUERY.call(keys, [*head, "count1", *program.tokens])
        args = [*head, mode, program.sort,
                "1" if self._desc else "0", want, STEP_BUDGET, program.walk_lo,
                program.walk_hi, bucket.from_score, _raw(bucket.from_id), bucket.step,
                *bucket.scan, span, *program.tokens]
        return QUERY.call(keys, args)

    def _ask(self, buckets: list[_Bucket], build: Callable[[_Bucket], Command]
             ) -> Generator[Batch, list[Any], list[Any]]:
        """The replies of these buckets' script steps (``build`` makes a bucket's call). A
        bucket whose step answers that an expired object is still indexed is swept (the
        sweep names every key it touches) and asked again, so an expired object never
        shows up in a result or a count. A step that answers that the registry record
        changed since this store read it (``R``) is asked again after the store read it
        anew (which raises IndexNotReadyError for an index no longer ready)."""

        replies = yield Batch([build(b) for b in buckets],
                              keys=[self.spec.index_root(b.tag) + "rec" for b in buckets])
        for _ in range(100):
            self._refused(replies)
            changed = [i for i, r in enumerate(replies) if _str(r[0]) == "R"]
            if changed:
                registry: Registry = getattr(self.store, "_registry")  # noqa: B009
                yield from registry.recheck(self.spec, self._needs)
                again = yield Batch([build(buckets[i]) for i in changed],
                                    keys=[self.spec.index_root(buckets[i].tag) + "rec"
                                          for i in changed])
                for i, reply in zip(changed, again, strict=True):
                    replies[i] = reply
                continue
            due = [i for i, r in enumerate(replies) if _str(r[0]) == "X"]
            if not due:
                return replies
            for i in due:
                for _ in range(1000):  # each step sweeps a bounded number of ids
                    _, more = yield from sweep_step(self.spec, buckets[i].tag)
                    if not more:
                        break
            again = yield Batch([build(buckets[i]) for i in due],
                                keys=[self.spec.index_root(buckets[i].tag) + "rec"
                                      for i in due])
            for i, reply in zip(due, again, strict=True):
                replies[i] = reply
        raise QueryError(f"{self.spec.name}: expired objects kept appearing faster than "
                         "they could be swept, or the model registry record kept changing; "
                         "try again")

    def _refused(self, replies: list[Any]) -> None:
        """Raise ServerError for a step that found a key it reads of the wrong type, and
        IndexNotReadyError for a bucket whose all-ids index is still in an older version's
        format (``<root>all``: written before the pages; ``store.reindex`` converts it)."""
        for reply in replies:
            if _str(reply[0]) == "U":
                key, kind = _str(reply[1]), _str(reply[2])
                cls = self.spec.cls.__name__
                raise IndexNotReadyError(
                    f"{self.spec.name}: the all-ids index {key} is in the format of an "
                    f"older redmodel (a {kind}), not converted yet: run store.reindex({cls}) "
                    "(or `redmodel reindex`) once to convert it; writes keep working "
                    "meanwhile, and queries answer once it is done",
                    model=self.spec.name, index="all-ids", state="unconverted")
            if _str(reply[0]) == "WRONGTYPE":
                key, actual, want = (_str(r) for r in reply[1:4])
                cls = self.spec.cls.__name__
                raise ServerError(
                    f"WRONGTYPE {key} holds a {actual}, not a {want}: an index key of model "
                    f"{self.spec.name} was overwritten outside redmodel; delete it and run "
                    f"store.reindex({cls}) (queries that do not read it still run)",
                    keys=(key,), command=f"query {self.spec.name}")

    def _start(self) -> tuple[str, str]:
        """(score, escaped id) this query's results start after ('' for the start)."""
        if self._after is None:
            return "", ""
        order, score, eid = self._after
        if order != self._order_tag:
            raise QueryError(f"this cursor comes from a query ordered by "
                             f"{order or 'id'!r}, not {self._order_tag or 'id'!r}")
        return score, eid

    def _hits_plan(self, start: tuple[str, str], want: int, keep: int = 0,
                   window: Window | None = None
                   ) -> Generator[Batch, list[Any], tuple[list[_Hit], bool]]:
        """The first ``want`` hits after ``start``, and whether there may be more: every
        bucket runs the script step by step until its part of the page is settled.

        With ``keep`` (pages() only), the script may choose to scan for up to ``keep``
        results at once; when every bucket did scan, the hits after the first ``want``
        (up to ``keep`` in all) go to ``window``, for the next pages to use without
        scanning again."""
        for _ in range(3):
            hits, more, short = yield from self._hits_pass(start, want, keep, window)
            if not short:
                break
        return hits, more

    def _hits_pass(self, start: tuple[str, str], want: int, keep: int,
                   window: Window | None
                   ) -> Generator[Batch, list[Any], tuple[list[_Hit], bool, bool]]:
        """One try of :meth:`_hits_plan`, and whether its page came out short: the pool of
        hits is trimmed to the best ``hold`` as it grows, and a later sighting of a kept id
        (a scan sends an id once per term of an OR that holds it) whose sort value moved
        past the last one kept leaves fewer than ``hold`` hits up to there, the pool having
        dropped the hits that followed them: the answer stops at that point (``cut``)."""
        buckets = [_Bucket(tag, *start) for tag in self.spec.tags()]
        after = self._key(start[0], _raw(start[1])) if start[1] else None
        pool: list[_Hit] = []  # in the order found (_best keeps an id's last sighting)
        trimmed = False
        cut: tuple[Any, ...] | None = None  # a trimmed pool holds every hit up to here
        program = self._page_program
        # ids spread evenly over buckets: each is asked for its share of the page (and a
        # margin) at a time, and for more only while its walk may still reach into the page
        share = want if len(buckets) == 1 else min(want, want * 5 // (4 * len(buckets)) + 8)
        while live := [b for b in buckets if not b.settled]:
            replies = yield from self._ask(
                live, lambda b: self._call(program, "page", b, min(share, want - b.found),
                                           keep))
            for bucket, reply in zip(live, replies, strict=True):
                pool.extend(self._step(bucket, reply, want, after))
            hold = max(want, keep) if all(b.step == "S" for b in buckets) else want
            if len(pool) > 2 * hold:
                every = self._best(pool, len(pool), after)
                pool = every[:hold]
                if len(every) > hold:
                    trimmed = True
                    last = pool[-1][0]
                    cut = last if cut is None or self._later(cut, last) else cut
            walking = [b for b in buckets if not b.settled and b.step == "W"]
            if walking and len(pool) >= want:
                first = self._best(pool, want, after)
                if len(first) == want:
                    self._settle(walking, first[-1][0])
        every = self._best(pool, len(pool), after)
        short = False
        if cut is not None:
            kept = [h for h in every if not self._later(h[0], cut)]
            short, every = len(kept) < min(want, len(every)), kept
        more = trimmed or len(every) > want or not all(b.done for b in buckets)
        best = every[:max(want, keep)]
        if window is not None and keep > want and all(b.step == "S" and b.done
                                                      for b in buckets):
            # every match after start (as of the pass) up to the last kept is here
            window.fill(best[want:], trimmed or len(every) > len(best))
        return best[:want], more, short

    def _step(self, bucket: _Bucket, reply: list[Any], want: int,
              after: tuple[Any, ...] | None) -> list[_Hit]:
        kind = _str(reply[0])
        bucket.done = bool(reply[1])
        head = 4 if kind == "W" else 6
        tag = bucket.tag
        raws, scores = reply[head::2], reply[head + 1::2]
        keys: list[tuple[Any, ...]]
        if self._order:
            keys = [(float(s), r) for s, r in zip(scores, raws, strict=True)]
        else:
            keys = [(r,) for r in raws]
        # a scan's matches come in any order: those before ``after`` too, which _best
        # leaves out (an id's later sighting there says it moved before the cursor)
        hits: list[_Hit] = [(k, r.decode("utf-8", "surrogateescape"), tag, s.decode())
                            for k, r, s in zip(keys, raws, scores, strict=True)]
        if kind == "W":  # in result order, after the position the walk started from
            bucket.step = "W"
            bucket.from_score, bucket.from_id = _str(reply[2]), _str(reply[3])
            bucket.found += len(hits)
            bucket.settled = bucket.done or bucket.found >= want
        else:  # a part of a scan: any order, the client keeps what follows the cursor
            bucket.step = "S"
            bucket.scan = (_str(reply[2]), _str(reply[3]), _str(reply[4]), _str(reply[5]))
            bucket.settled = bucket.done
        return hits

    def _settle(self, buckets: list[_Bucket], last: tuple[Any, ...]) -> None:
        """A walk whose frontier is past the page's last hit can only find later hits."""
        for b in buckets:
            if b.from_id:
                frontier = self._key(b.from_score, _raw(b.from_id))
                if not self._later(last, frontier):
                    b.settled = True

    # ---- plans --------------------------------------------------------------------------

    def _count_plan(self, cap: int = -1) -> Plan[int]:
        """How many objects match (stopping once ``cap`` are found, when given)."""
        buckets = [_Bucket(tag) for tag in self.spec.tags()]
        program = self._count_program
        total = 0
        # matches a scan read with SSCAN (which may repeat a member): each counted once
        seen: dict[str | None, set[bytes]] = {}
        while live := [b for b in buckets if not b.done]:
            replies = yield from self._ask(live, lambda b: self._call(program, "count", b,
                                                                      cap))
            for bucket, reply in zip(live, replies, strict=True):
                if _str(reply[0]) == "N":
                    total += int(reply[1])
                    bucket.done = True
                    continue
                bucket.done = bool(reply[1])
                bucket.step = _str(reply[2])
                if bucket.step == "S":
                    bucket.scan = tuple(_str(r) for r in reply[3:7])  # type: ignore[assignment]
                    total += int(reply[7])
                    mine = seen.setdefault(bucket.tag, set())
                    for raw in reply[8:]:
                        if raw not in mine:
                            mine.add(raw)
                            total += 1
                else:
                    bucket.from_score, bucket.from_id = _str(reply[3]), _str(reply[4])
                    total += int(reply[5])
            if 0 <= cap <= total:
                break
        return total

    def _exists_plan(self) -> Plan[bool]:
        if self._limit == 0:
            return False
        if self._after is not None:  # a position to start from: the first page of one
            hits, _ = yield from self._hits_plan(self._start(), self._offset + 1)
            return len(hits) > self._offset
        return (yield from self._count_plan(cap=self._offset + 1)) > self._offset

    def _size_plan(self) -> Plan[int]:
        """How many results :meth:`ids` gives: the matches after the cursor, less the
        offset, at most the limit."""
        if self._limit == 0:
            return 0
        if self._after is None:
            total = yield from self._count_plan()
            total = max(0, total - self._offset)
        else:  # counted from the cursor's position: its ids, in steps
            total = len((yield from self._ids_plan()))
        return total if self._limit is None else min(total, self._limit)

    def _reads(self, hits: list[_Hit]) -> Batch:
        """The pipelined reads of these hits' objects."""
        spec = self.spec
        tags = {h[2] for h in hits}
        if len(tags) == 1:  # one bucket (or none): one prefix
            prefix = spec.object_prefix(next(iter(tags)))
            keys = [prefix + h[1] for h in hits]
        else:
            prefixes = {t: spec.object_prefix(t) for t in tags}
            keys = [prefixes[h[2]] + h[1] for h in hits]
        read = layout_of(spec).read
        return Batch([read(k) for k in keys], keys=keys)

    def _decode(self, hits: list[_Hit], batch: Batch, replies: list[Any]) -> list[M]:
        decode = layout_of(self.spec).decode
        out = []
        for key, hit, reply in zip(batch.keys, hits, replies, strict=True):
            obj = decode(key, unescape(hit[1]), reply)
            if obj is not None:  # deleted since its id was found: skipped
                out.append(obj)
        return out

    def _judge(self, obj: Any) -> tuple[bool, float | None]:
        """Whether ``obj``, as read, matches this query's filter, and its sort score: a
        page served from a window checks its objects here instead of on the server (with
        the entry texts and scores the index would hold: IndexedField.text / score_text,
        computed only for the fields the query names)."""
        indexes = self.spec.indexes
        assert indexes is not None
        texts: dict[str, set[str]] = {}
        scores: dict[str, float | None] = {}

        known = self._texts  # (field, type, repr) -> texts: values repeat across objects
        if len(known) > 10_000:
            known.clear()

        def text_of(name: str) -> set[str]:
            if name not in texts:
                f, value = indexes.fields[name], getattr(obj, name)
                items = () if value is None else value if f.many else (value,)
                out: set[str] = set()
                for v in items:
                    if f.blind is not None:
                        # the value's token under every configured key (as the query's
                        # terms are; not kept: the keys may be configured anew)
                        out.update(f.lookup_texts(v))
                        continue
                    k = (name, type(v), repr(v))
                    got = known.get(k)
                    if got is None:
                        got = known[k] = f.text(v)
                    out.add(got)
                texts[name] = out
            return texts[name]

        def score_of(name: str) -> float | None:
            if name not in scores:
                f, value = indexes.fields[name], getattr(obj, name)
                try:
                    scores[name] = (None if value is None or f.score_text is None
                                    else float(f.score_text(value)))
                except (IndexValueError, ArithmeticError, ValueError):
                    scores[name] = None
            return scores[name]

        def ok(node: _Node) -> bool:
            if isinstance(node, _Eq):
                return node.text in text_of(node.field)
            if isinstance(node, _Rng):
                v = score_of(node.field)
                if v is None:
                    return False
                (lo, lo_in), (hi, hi_in) = _end(node.lo), _end(node.hi)
                return (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi)
            if isinstance(node, _All):
                return True
            if isinstance(node, _Not):
                return not ok(node.kid)
            if node.op == "AND":
                return all(ok(k) for k in node.kids)
            return any(ok(k) for k in node.kids)

        return ok(self._expr), score_of(self._order) if self._order else None

    def _checked(self, hits: list[_Hit], batch: Batch, replies: list[Any],
                 start: tuple[str, str], window: Window | None) -> list[M]:
        """The objects of a page served from a window, as they are now: one that no longer
        matches is left out; one whose sort field changed is placed by its new value (in
        this page, later in ``window``, or else found by the next pass, which runs after
        this read; not shown if it moved before the page's start)."""
        layout = layout_of(self.spec)
        after = self._key(start[0], _raw(start[1])) if start[1] else None
        last = hits[-1][0] if hits else None
        out: list[tuple[tuple[Any, ...], M]] = []
        for key, hit, reply in zip(batch.keys, hits, replies, strict=True):
            obj = layout.decode(key, unescape(hit[1]), reply)
            if obj is None:
                continue
            matches, score = self._judge(obj)
            if not matches:
                continue
            if not self._order or score == hit[0][0]:
                out.append((hit[0], obj))
                continue
            assert score is not None and last is not None
            moved = (score, hit[0][1])
            if after is not None and not self._later(moved, after):
                continue  # now before the page's start: not shown
            if not self._later(moved, last):
                out.append((moved, obj))
            elif window is not None and (not window.beyond or (
                    window.hits and not self._later(moved, window.hits[-1][0]))):
                # later in the window (past its last kept result when the pass found
                # every match): shown at its new place by a later page
                window.put([(moved, hit[1], hit[2], repr(score))], self._desc)
            # else past the window's last result, with matches beyond it: the next pass,
            # from a cursor before its new place, finds it
        out.sort(key=lambda pair: pair[0], reverse=self._desc)
        return [obj for _, obj in out]

    def _ids(self, hits: list[_Hit]) -> list[Any]:
        decode = self.spec.key.decode
        assert decode is not None
        return [decode(unescape(h[1]).encode("utf-8", "surrogateescape")) for h in hits]

    @staticmethod
    def _along(batch: Batch, plan: Generator[Batch, list[Any], Any]
               ) -> Generator[Batch, list[Any], tuple[list[Any], Any]]:
        """Run ``plan`` with ``batch`` sent in its first round trip: (batch's replies, the
        plan's result)."""
        first = next(plan)
        n = len(batch.commands)
        replies = yield Batch([*batch.commands, *first.commands],
                              keys=[*batch.keys, *first.keys])
        try:
            step = plan.send(replies[n:])
            while True:
                step = plan.send((yield step))
        except StopIteration as stop:
            return replies[:n], stop.value
        finally:  # ended early (closed, failed): the plan it drives too
            plan.close()

    def _pages_plan(self, size: int, objects: bool = True, ahead: bool = True) -> IterPlan:
        """Emits a :class:`Page` of objects (or ids) per page: the offset is skipped first
        (ids only), the limit counts across pages, each page starts after the last. With
        ``ahead``, a page's objects are read in the round trip of the next page's first
        script step."""
        _check_size(size)
        start = self._start()
        skip, remaining = self._offset, self._limit
        keep = ALL_PAGE_SIZE  # results one scan pass may serve (ids and scores kept)
        window = Window() if objects and ahead and keep > size else None
        if window is None:
            keep = 0
        while skip:
            hits, more = yield from self._hits_plan(start, min(skip, size))
            skip -= len(hits)
            if hits:
                start = (hits[-1][3], hits[-1][1])
            if not more:
                return
        if remaining == 0:
            return
        hits, more = yield from self._hits_plan(start, size if remaining is None else
                                                min(size, remaining), keep, window)
        checked = False  # whether this page's hits came from the window (checked on reading)
        while True:
            page_start = start
            if hits:
                start = (hits[-1][3], hits[-1][1])
            if remaining is not None:
                remaining -= len(hits)
            items: list[Any] = []
            if checked and window is not None:
                # read first: an object of this page whose sort value moved later goes
                # back to the window (even past its end), which decides what follows
                items = yield from self._read_checked(hits, page_start, window)
                more = bool(window.hits) or window.beyond
            cursor = _cursor_text(self._order_tag, *start) if more and hits else None
            want = 0 if cursor is None else size if remaining is None else min(size,
                                                                               remaining)
            following: Any = None
            served = window is not None and want > 0 and window.serves(want)
            if window is not None and not served:
                window.clear()
            if not objects:
                items = self._ids(hits)
            elif not checked:
                reads, replies = self._reads(hits), list[Any]()
                if want and ahead and not served:
                    replies, following = yield from self._along(
                        reads, self._hits_plan(start, want, keep, window))
                elif hits:
                    replies = (yield reads) or []
                items = self._decode(hits, reads, replies)
            yield Emit([Page(items, cursor)])
            if want <= 0:
                return
            if served and window is not None:
                hits, more, checked = yield from self._from_window(start, want, keep, window)
            else:
                hits, more = following or (yield from self._hits_plan(start, want, keep,
                                                                      window))
                checked = False

    def _read_checked(self, hits: list[_Hit], start: tuple[str, str], window: Window
                      ) -> Generator[Batch, list[Any], list[M]]:
        reads = self._reads(hits)
        replies = ((yield reads) or []) if hits else []
        return self._checked(hits, reads, replies, start, window)

    def _from_window(self, start: tuple[str, str], want: int, keep: int, window: Window
                     ) -> Generator[Batch, list[Any], tuple[list[_Hit], bool, bool]]:
        """The next page's hits from ``window`` (with objects that moved into it), and
        whether more may follow; or, when that cannot be told cheaply, from a pass of its
        own. The last item says which (True: from the window, checked as read)."""
        hits, more = window.take(want)
        hits_now = yield from self._movers(hits, start, window)
        if hits_now is None:
            window.clear()
            hits, more = yield from self._hits_plan(start, want, keep, window)
            return hits, more, False
        return hits_now, more or bool(window.hits), True

    def _movers(self, hits: list[_Hit], start: tuple[str, str], window: Window
                ) -> Generator[Batch, list[Any], list[_Hit] | None]:
        """The hits of a page taken from ``window``, with the objects kept later in it
        whose sort value now places them within this page (after ``start``, up to its
        last hit), found with one ZRANGE BYSCORE of the sort index per bucket: an object
        that moved ahead of the cursor is shown at its new place. The page keeps its size
        (what no longer fits goes back to the window). ``None`` when a bucket's index holds
        too many entries in that stretch to tell cheaply."""
        if not hits or not self._order:
            return hits
        spec = self.spec
        cap = max(8 * len(hits), STEP_BUDGET)
        first = self._key(start[0], _raw(start[1])) if start[1] else None
        last = hits[-1][0]
        if self._desc:
            lo, hi = hits[-1][3], start[0] or "+inf"
        else:
            lo, hi = start[0] or "-inf", hits[-1][3]
        tags = spec.tags()
        keys = [f"{spec.index_root(t)}rng{spec.delimiter}{self._order}" for t in tags]
        replies = yield Batch([("ZRANGE", k, lo, hi, "BYSCORE", "LIMIT", 0, cap, "WITHSCORES")
                               for k in keys], keys=keys)
        moved: list[_Hit] = []
        for tag, reply in zip(tags, replies, strict=True):
            pairs = _score_pairs(reply)
            if len(pairs) >= cap:
                return None
            for member, score in pairs:
                eid = _str(member)
                kept = window.ids.get((tag, eid))
                if kept is None:
                    continue
                pos = (score, _raw(eid))
                if pos == kept[0] or self._later(pos, last) or (
                        first is not None and not self._later(pos, first)):
                    continue
                moved.append((pos, eid, tag, repr(score)))
        if not moved:
            return hits
        window.drop(moved)
        merged = sorted([*hits, *moved], key=lambda h: h[0], reverse=self._desc)
        window.put(merged[len(hits):], self._desc)
        return merged[:len(hits)]

    def _gather(self, objects: bool) -> Plan[list[Any]]:
        out: list[Any] = []
        steps = self._pages_plan(ALL_PAGE_SIZE, objects)
        try:
            step = next(steps)
            while True:
                if isinstance(step, Emit):
                    out.extend(step.items[0].items)
                    step = steps.send(None)
                else:
                    step = steps.send((yield step))
        except StopIteration:
            return out
        finally:  # ended early (closed, failed): the plan it drives too
            steps.close()

    def _all_plan(self) -> Plan[list[M]]:
        return self._gather(True)

    def _ids_plan(self) -> Plan[list[Any]]:
        return self._gather(False)

    def _first_plan(self) -> Plan[M | None]:
        found = yield from self.limit(min(1, 1 if self._limit is None else self._limit)
                                      )._all_plan()
        return found[0] if found else None

    def _page_plan(self, size: int) -> Plan[Page[M]]:
        steps = self._pages_plan(size, ahead=False)
        try:
            step = next(steps)
            while not isinstance(step, Emit):
                step = steps.send((yield step))
        except StopIteration:
            return Page([], None)
        finally:  # ended early (closed, failed): the plan it drives too
            steps.close()
        page: Page[M] = step.items[0]
        return page

    # ---- the public plans: each checks the model registry first, as the methods do -------

    def _plan_guard(self, plan: G) -> G:
        """``plan``, checked as :meth:`_guard` does, except inside a transaction
        (``tx.query(query.ids_plan())``), where the check's writes (a first registration)
        cannot run: there the plan runs unchecked, as it always did."""
        return plan if in_transaction() else self._guard(plan)

    def count_plan(self, cap: int = -1) -> Plan[int]:
        """How many objects match (stopping once ``cap`` are found, when given), before
        any cursor, offset or limit; with ``order_by``, only those with a value for the
        sort field (the ones its pages give). ``cap``: an int from -1 (no cap, the
        default) to 2**63-1; anything else raises QueryError here."""
        _count_option(cap, "count_plan's cap", -1, "(-1: no cap)")
        return self._plan_guard(self._count_plan(cap))

    def exists_plan(self) -> Plan[bool]:
        """The plan of :meth:`exists`."""
        return self._plan_guard(self._exists_plan())

    def size_plan(self) -> Plan[int]:
        """The plan of :meth:`count`."""
        return self._plan_guard(self._size_plan())

    def all_plan(self) -> Plan[list[M]]:
        """The plan of :meth:`all`."""
        return self._plan_guard(self._all_plan())

    def ids_plan(self) -> Plan[list[Any]]:
        """The plan of :meth:`ids`."""
        return self._plan_guard(self._ids_plan())

    def first_plan(self) -> Plan[M | None]:
        """The plan of :meth:`first`."""
        return self._plan_guard(self._first_plan())

    def page_plan(self, size: int) -> Plan[Page[M]]:
        """The plan of :meth:`page`."""
        _check_size(size)
        return self._plan_guard(self._page_plan(size))

    # ---- running (the store decides sync or async) ----------------------------------

    @overload
    def all(self: Query[M, SyncRunner]) -> list[M]: ...
    @overload
    def all(self: Query[M, AsyncRunner]) -> Coroutine[object, object, list[M]]: ...
    def all(self) -> Any:
        """Every result as an object, gathered a page of :data:`ALL_PAGE_SIZE` at a time
        (script steps per bucket, then HGETALL of the page's hits, pipelined).

        Redis: EVALSHA query.lua per bucket (repeated a page at a time), then HGETALL of
        each page's hits, pipelined (indexes need the hash layout). On a cluster, first
        HGET (per field) of the model's registry record."""
        return self.store.run(self._guard(self._all_plan()))

    @overload
    def ids(self: Query[M, SyncRunner]) -> list[Any]: ...
    @overload
    def ids(self: Query[M, AsyncRunner]) -> Coroutine[object, object, list[Any]]: ...
    def ids(self) -> Any:
        """Every result's id (script steps only, no object is read).

        Redis: EVALSHA query.lua per bucket, a page at a time. On a cluster, first HGET
        (per field) of the model's registry record."""
        return self.store.run(self._guard(self._ids_plan()))

    def _native_count(self) -> Batch | None:
        """The one batch of :meth:`count` when Redis answers it natively in one script
        call, or None (the plan runs). It qualifies when the plan's first batch would be
        that call and, when answered ``N``, its last: no cursor and no ``limit(0)``, one
        term (``EQ``, ``RANGE`` or every id) on a model without buckets, no transaction
        open in this context, not a cluster, and the store already knows every index the
        query reads ready with a check the script runs itself (a first use, a pending
        index or a store that cannot check in the script goes through the plan, which
        reads the registry record first). The batch is exactly the plan's first (the
        same script call, the same registry and expiry checks in it), cached on the
        compiled filter per step check."""
        if self._after is not None or self._limit == 0 or open_transaction() is not None:
            return None
        known = self._known
        program = self._count_program
        if program.tokens[0] not in _NATIVE_ONE:
            return None
        spec = self.spec
        store = self.store
        if spec.buckets is not None or getattr(store, "cluster", True):
            return None
        registry: Registry | None = getattr(store, "_registry", None)
        check = None
        if registry is not None:
            if not registry.known_ready(spec.cls, self._needs):
                return None
            check = registry.step_check(spec.cls, self._needs)
            if check is not None and not check[0]:
                return None
        cached = known.native.get(self._order)
        if cached is not None and (cached[0] is check or cached[0] == check):
            return cached[1]
        batch = Batch([self._call(program, "count", _Bucket(None), -1)],
                      keys=[spec.index_root(None) + "rec"])
        known.native[self._order] = (check, batch)
        return batch

    def _native_total(self, reply: Any) -> int | None:
        """:meth:`count`'s answer from the reply to :meth:`_native_count`'s batch, or None
        when the script answered anything but a native count (an expired object to sweep,
        a registry record that changed, a key of the wrong type): the plan then runs from
        its start and handles it as it always does."""
        if type(reply) is not list or len(reply) != 2 or reply[0] not in _N_REPLY:
            return None
        total = max(0, int(reply[1]) - self._offset)
        return total if self._limit is None else min(total, self._limit)

    def _count_fallback(self) -> Plan[int]:
        return self._guard(self._size_plan())

    @overload
    def count(self: Query[M, SyncRunner]) -> int: ...
    @overload
    def count(self: Query[M, AsyncRunner]) -> Coroutine[object, object, int]: ...
    def count(self) -> Any:
        """How many results :meth:`ids` would give, exactly (expired objects never count):
        the matches, less the offset, at most the limit; one script call per bucket where
        Redis counts natively, bounded steps otherwise. After a cursor, the ids from it
        are counted (in steps).

        Redis: EVALSHA query.lua per bucket (on a cluster, first HGET, per field, of the
        model's registry record)."""
        counted = getattr(self.store, "_counted", None)
        if counted is not None:
            batch = self._native_count()
            if batch is not None:
                return counted(batch, self._native_total, self._count_fallback)
        return self.store.run(self._guard(self._size_plan()))

    @overload
    def exists(self: Query[M, SyncRunner]) -> bool: ...
    @overload
    def exists(self: Query[M, AsyncRunner]) -> Coroutine[object, object, bool]: ...
    def exists(self) -> Any:
        """Whether :meth:`ids` would give any result (stops at the first; ``limit(0)``
        gives none).

        Redis: EVALSHA query.lua per bucket (on a cluster, first HGET, per field, of the
        model's registry record)."""
        return self.store.run(self._guard(self._exists_plan()))

    @overload
    def first(self: Query[M, SyncRunner]) -> M | None: ...
    @overload
    def first(self: Query[M, AsyncRunner]) -> Coroutine[object, object, M | None]: ...
    def first(self) -> Any:
        """The first result (in this query's order), or None.

        Redis: EVALSHA query.lua per bucket, then HGETALL of the first hit. On a cluster,
        first HGET (per field) of the model's registry record."""
        return self.store.run(self._guard(self._first_plan()))

    @overload
    def page(self: Query[M, SyncRunner], size: int) -> Page[M]: ...
    @overload
    def page(self: Query[M, AsyncRunner], size: int) -> Coroutine[object, object, Page[M]]: ...
    def page(self, size: int) -> Any:
        """One page of ``size`` results after this query's cursor, with the next cursor.

        Redis: EVALSHA query.lua per bucket, then HGETALL of the page's hits, pipelined. On
        a cluster, first HGET (per field) of the model's registry record."""
        _check_size(size)
        return self.store.run(self._guard(self._page_plan(size)))

    def _is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.store.run)

    def pages(self: Query[M, SyncRunner], size: int = PAGE_SIZE) -> Iterator[list[M]]:
        """Every result (after the offset, up to the limit), a page at a time, following
        cursors; memory holds one page (sync stores; :meth:`apages` for an AsyncStore).

        Redis: per page: EVALSHA query.lua per bucket, then HGETALL of its hits, pipelined.
        On a cluster, first HGET (per field) of the model's registry record."""
        _check_size(size)
        if self._is_async():
            raise TypeError("this query's store is an AsyncStore: use `async for page in "
                            "query.apages(size)`")
        return (page.items for page in iterate_sync(self._guard(self._pages_plan(size)),
                                                    self.store._execute, self._client())
                if page.items)

    def _client(self) -> Any:
        """The store's client (where the objects a page decodes were read from), if it has
        one (a plan runner of another kind: unknown)."""
        return getattr(self.store, "client", None)

    def apages(self: Query[M, AsyncRunner], size: int = PAGE_SIZE) -> AsyncIterator[list[M]]:
        """:meth:`pages` for an AsyncStore: ``async for page in query.apages(100)``.

        Redis: as Query.pages"""
        _check_size(size)
        if not self._is_async():
            raise TypeError("this query's store is a sync Store: use `for page in "
                            "query.pages(size)`")
        return self._apages(size)

    async def _apages(self: Query[M, AsyncRunner], size: int) -> AsyncIterator[list[M]]:
        async for page in iterate_async(self._guard(self._pages_plan(size)),
                                        self.store._execute, self._client()):
            if page.items:
                yield page.items

    def __iter__(self: Query[M, SyncRunner]) -> Iterator[M]:
        """``for obj in query``: every result, :data:`PAGE_SIZE` at a time."""
        return (item for items in self.pages() for item in items)

    async def __aiter__(self: Query[M, AsyncRunner]) -> AsyncIterator[M]:
        """``async for obj in query`` (an AsyncStore's query): every result,
        :data:`PAGE_SIZE` at a time."""
        async for items in self.apages():
            for item in items:
                yield item

    def explain(self) -> list[str]:
        """The Redis commands a run of :meth:`all` sends, and what the script does.

        Redis: none (describes what all() would send)."""
        spec = self.spec
        tags = spec.tags()
        root = spec.index_root(tags[0])
        program = self._page_program
        what = _describe(program.tokens, [root + k for k in program.keys])
        if self._order:
            walk = (f"ZRANGE {root}rng{spec.delimiter}{self._order} by rank "
                    f"{program.walk_lo} .. {program.walk_hi}"
                    f"{' REV' if self._desc else ''} WITHSCORES")
        else:
            walk = (f"the all-ids pages from the cursor (ZREVRANGEBYLEX {root}ids, then "
                    f"ZRANGE {root}ids{spec.delimiter}<bound> BYLEX of each page)")
        lines = [
            f"per page: EVALSHA of the query script in each of {len(tags)} bucket(s), "
            f"pipelined; each call checks the index states it needs in the registry record "
            f"(HGET {registry_key(spec.prefix)}), sweeps expired objects (ZRANGEBYSCORE "
            f"{root}exp), then does about {STEP_BUDGET} members read or looked up and answers "
            "where to go on",
            f"  filter: {what}",
            f"  walk in result order: {walk}, filtered by SMISMEMBER / ZMSCORE, stopping "
            "once the page is full",
            "  or, when cheaper (from SCARD / ZCOUNT), scan the rarest term (SSCAN of its "
            "set, ZRANGE of its range), keeping the page's best on the client",
        ]
        if self._order:
            lines.append(f"  sort by {self._order} {'desc' if self._desc else 'asc'}, "
                         "ties by id")
        if self._limit is not None or self._offset:
            lines.append(f"  offset {self._offset}, limit {self._limit}")
        lines.append("then HGETALL of each hit of the page, pipelined in one round trip")
        return lines

    def __repr__(self) -> str:
        return f"<Query {self.spec.name} {' '.join(self._count_program.tokens)}>"


_NATIVE_ONE = frozenset({"EQ", "RANGE", "ALL"})
_N_REPLY = frozenset({b"N", "N"})


def _score_pairs(reply: Any) -> list[tuple[Any, float]]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs, RESP2 or RESP3."""
    items = list(reply or [])
    if items and isinstance(items[0], (list, tuple)):
        return [(m, float(sc)) for m, sc in items]
    return [(items[i], float(items[i + 1])) for i in range(0, len(items), 2)]


def _raw(eid: str) -> bytes:
    return eid.encode("utf-8", "surrogateescape")


def _check_size(size: Any) -> None:
    _count_option(size, "size", 1, why="a page holds at least one result")


def _count_option(value: Any, what: str, least: int, more: str = "", *,
                  most: int = INT64_MAX, why: str = "") -> int:
    """``value`` if it is an int (not a bool) from ``least`` to ``most`` (a query's
    limit, offset, page size or ``count_plan`` cap); else :class:`QueryError` naming
    ``what`` (and only the type of a value that is no int), before anything is sent."""
    if value.__class__ is int and least <= value <= most:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and least <= value <= most:
        return int(value)
    got = shown(value) if isinstance(value, (int, float)) else type(value).__name__
    lead = f"{why}: " if why else ""
    tail = f" {more}" if more else ""
    raise QueryError(f"{lead}{what} must be an int from {least} to {most}{tail}, not {got}")


def _describe(tokens: Sequence[str], keys: Sequence[str]) -> str:
    pos = 0

    def key(token: str) -> str:
        return keys[int(token) - 6]  # KEYS: rec, all, exp, ids, idn, then the program's keys

    def walk() -> str:
        nonlocal pos
        op = tokens[pos]
        pos += 1
        if op == "EQ":
            pos += 1
            return f"SMISMEMBER {key(tokens[pos - 1])}"
        if op == "RANGE":
            name, lo, hi = tokens[pos : pos + 3]
            pos += 3
            return f"ZMSCORE {key(name)} within {lo} .. {hi}"
        if op == "ALL":
            return "every id"
        if op == "NOT":
            return f"NOT {walk()}"
        n = int(tokens[pos])
        pos += 1
        parts = [walk() for _ in range(n)]
        return "(" + f" {'OR' if op == 'ORD' else op} ".join(parts) + ")"

    return walk()


# ---- the script ---------------------------------------------------------------------------

QUERY = script("query")
"""One bounded step of a query in one bucket; its header comment gives KEYS and ARGV."""


