"""Secondary indexes on plain Redis, kept in step with every write by one Lua script.

Per model (and per bucket on a cluster) the index keys live under a root that no object
key can produce (``%`` never starts an escaped id): ``hat:%idx`` or ``hat:{7}:%idx``.

- ``<root>:eq:<field>:<value>``  SET of ids with that value (also "contains" for lists)
- ``<root>:rng:<field>``         ZSET id -> number (ranges and sorting)
- ``<root>:uq:<fields>``         HASH value -> the id that owns it (unique constraints)
- ``<root>:rec``                 HASH id -> the object's index entries (what to undo)
- ``<root>:all``                 ZSET of every id, all scores 0 (ordered by id)
- ``<root>:exp``                 ZSET id -> expiry time in ms (the sweep of expired ones)

An entry is ``kind \\x1f name \\x1f value`` (``e`` equality, ``r`` range, ``u`` unique);
the record is the object's entries joined by newlines, so a write can diff old against
new on the server without a read from the client, and a sweep can undo an expired
object's entries after its hash is gone.
"""

from __future__ import annotations

import binascii
import datetime as dt
import decimal
import enum
import math
import typing
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

import attrs

from redmodel._errors import ModelDefinitionError
from redmodel._indexes._blind import BlindIndex, check_declaration, unique_texts
from redmodel._models._keys import escape
from redmodel._models._types import NotIndexableError, canonical_text, optional_inner, scalar
from redmodel._plan import script

__all__ = ["IndexSpec", "IndexValueError", "IndexedField", "compile_indexes", "entry_key"]

EQ_TYPES = (str, int, bool, dt.date, uuid.UUID, decimal.Decimal, float, dt.datetime)
RANGE_TYPES = (int, float, decimal.Decimal, dt.date, dt.datetime)
SEP = "\x1f"
JOIN = "\x1e"


EXACT_INT = 2**53
"""A range index holds ints exactly within -EXACT_INT..EXACT_INT (a double's integers)."""


class IndexValueError(ValueError):
    """A value that cannot be an index entry (a NaN or infinite score, an int outside the
    exact range of a range index); the caller adds model and key."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(reason)


def _score(tp: Any) -> Callable[[Any], float]:
    if tp is dt.datetime:
        return lambda v: (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).timestamp()
    if tp is dt.date:
        return lambda v: float(v.toordinal())
    return float


def _finite_text(v: Any) -> str:
    try:
        f = float(v)
    except (OverflowError, ValueError):
        raise IndexValueError(f"{v!r} has no finite score") from None
    if not math.isfinite(f):
        raise IndexValueError(f"{v!r} has no finite score: a range index refuses NaN and "
                              "infinities") from None
    return "%.17g" % f  # noqa: UP031 - C's format: the script writes scores the same way


def _int_text(v: Any) -> str:
    if not -EXACT_INT <= v <= EXACT_INT:
        raise IndexValueError(f"{v} is outside -2**53..2**53, the ints a range index holds "
                              "exactly")
    return str(int(v))


def _score_text(tp: Any) -> Callable[[Any], str]:
    """value -> its score as exact, canonical decimal text (what ZADD gets and what the
    record holds): ``%.17g`` of the double, which for an int within 2**53 or a date's
    ordinal is its digits. The write script formats the scores it computes (HINCRBYFLOAT
    results) the same way, so both sides write one text per score."""
    if tp is int:
        return _int_text
    if tp is dt.date:
        return lambda v: str(v.toordinal())
    if tp is dt.datetime:
        seconds = _score(tp)
        return lambda v: _finite_text(seconds(v))
    return _finite_text


@attrs.frozen
class IndexedField:
    """One indexed field of a model."""

    name: str  # attribute name (also the index name in keys)
    stored: bytes  # hash field name
    tp: Any  # the scalar type of the values (the element type of a list)
    eq: bool  # equality / contains index
    range: bool  # range / sort index
    many: bool  # a list field: "contains"
    text: Callable[[Any], str]  # value -> its escaped text in key names
    score: Callable[[Any], float] | None
    check: Callable[[Any], str | None]  # validates a query value
    numeric: bool  # int or float: the server can recompute entries after HINCRBY
    blind: BlindIndex | None = None  # an encrypted field: text is a keyed hash (_blind.py)
    score_text: Callable[[Any], str] | None = None  # value -> exact score text, or
    # IndexValueError: THE function for range scores on every path

    def lookup_texts(self, value: Any) -> list[str]:
        """Every entry text a lookup of ``value`` tries: its text, or for a blind index its
        token under each configured index key, newest first."""
        return [self.text(value)] if self.blind is None else self.blind.tokens(value)


@attrs.frozen
class UniqueSpec:
    name: str  # fields joined by ","
    fields: tuple[str, ...]


@attrs.frozen
class IndexSpec:
    """Every index of one model."""

    fields: dict[str, IndexedField]
    uniques: tuple[UniqueSpec, ...]

    def entries(self, values: dict[str, Any], only: Sequence[str] | None = None,
                problems: list[tuple[str, str]] | None = None) -> list[str]:
        """Index entries of an object's values (all, or those involving ``only``).

        A value that cannot be indexed (see :class:`IndexValueError`) raises, or, when a
        ``problems`` list is given, is skipped and reported there as (field, reason)."""
        wanted = set(values) if only is None else set(only)
        out: list[str] = []
        for name, f in self.fields.items():
            if name not in wanted:
                continue
            value = values.get(name)
            if value is None:
                continue
            items = value if f.many else [value]
            if f.eq:
                try:
                    texts = [f.text(v) for v in items]
                except (IndexValueError, NotIndexableError, UnicodeEncodeError) as e:
                    # (a str holding a lone surrogate has no bytes: the object's own check
                    # refuses it before a write; here it is a value that cannot be indexed)
                    reason = ("a str holding a lone surrogate has no UTF-8 bytes"
                              if isinstance(e, UnicodeEncodeError)
                              else getattr(e, "reason", str(e)))
                    if problems is None:
                        raise IndexValueError(reason, name) from None
                    problems.append((name, reason))
                    texts = []
                out.extend(f"e{SEP}{name}{SEP}{t}" for t in dict.fromkeys(texts))
            if f.range and f.score_text is not None:
                try:
                    out.append(f"r{SEP}{name}{SEP}{f.score_text(value)}")
                except IndexValueError as e:
                    if problems is None:
                        raise IndexValueError(e.reason, name) from None
                    problems.append((name, e.reason))
        for u in self.uniques:
            if not wanted.intersection(u.fields):
                continue
            parts = [values.get(n) for n in u.fields]
            if any(p is None for p in parts):
                continue  # like SQL: a None never collides
            try:
                texts = self.unique_texts(u, parts)
            except (IndexValueError, NotIndexableError) as e:
                reason = getattr(e, "reason", str(e))
                if problems is None:
                    raise IndexValueError(reason, u.name) from None
                problems.append((u.name, reason))
                continue
            out.extend(f"u{SEP}{u.name}{SEP}{text}" for text in texts)
        return out

    def unique_texts(self, u: UniqueSpec, parts: Sequence[Any]) -> list[str]:
        """The entry texts of one unique constraint's values: one, or with a blind field
        one per index key, so a write under any configured key meets a value claimed
        under another (a rotation in progress)."""
        fields = [self.fields[n] for n in u.fields]
        if any(f.blind is not None for f in fields):
            return unique_texts([f.blind for f in fields], [f.text for f in fields], parts)
        return [JOIN.join(f.text(p) for f, p in zip(fields, parts, strict=True))]

    def constant_keys(self, root: str, d: str, claims: bool,
                      only: Sequence[str] | None = None) -> list[str]:
        """The index keys whose name does not depend on a value: the range index of each
        range field and (without claims) the hash of each unique constraint, of every
        field or of those tied to ``only``."""
        wanted = set(self.fields) if only is None else set(only)
        out = [f"{root}rng{d}{n}" for n, f in self.fields.items() if f.range and n in wanted]
        if not claims:
            out += [f"{root}uq{d}{u.name}" for u in self.uniques if wanted.intersection(u.fields)]
        return out

    @property
    def keeps_records(self) -> bool:
        """Whether every object of this model keeps a stored index record (``<root>rec``):
        True iff any index is blind (an encrypted field's old tokens cannot be computed
        again after a key rotation). Otherwise only an object with an expiry keeps one
        (the sweep undoes its entries after its hash is gone); the others' entries are
        what their stored fields compute to (derived)."""
        return any(f.blind is not None for f in self.fields.values())

    def fields_text(self, name: str, value: Any) -> str:
        return self.fields[name].text(value)

    def unique_fields(self, touched: Sequence[str]) -> set[str]:
        """Every field a unique constraint ties to one of ``touched``."""
        out = set(touched)
        for u in self.uniques:
            if out.intersection(u.fields):
                out.update(u.fields)
        return out


def _text(tp: Any, delimiter: str) -> Callable[[Any], str]:
    """value -> its escaped entry text: the canonical text of its type (values equal in
    Python give one entry, see _types.canonical_text); IndexValueError for a NaN."""
    canonical = canonical_text(tp)

    def text(v: Any) -> str:
        try:
            return escape(canonical(v), delimiter)
        except NotIndexableError as e:
            raise IndexValueError(str(e)) from None

    return text


def _check_indexable(check: Callable[[Any], str | None], text: Callable[[Any], str]
                     ) -> Callable[[Any], str | None]:
    """A field's check that also refuses a value no entry can hold (a NaN, an instant
    outside years 1..9999 in UTC), so a save,
    a query and get_by give one answer for it."""

    def checked(value: Any) -> str | None:
        err = check(value)
        if err is None and isinstance(value, (float, decimal.Decimal, dt.datetime)):
            try:
                text(value)
            except (IndexValueError, NotIndexableError) as e:
                return getattr(e, "reason", str(e))
        return err

    return checked


def entry_key(root: str, d: str, line: str, claims: bool) -> str | None:
    """The key an entry line lives in (None for a unique value under claims: it lives in
    its value's own bucket, see ModelSpec.claim_key)."""
    kind, name, value = line.split(SEP, 2)
    if kind == "e":
        return f"{root}eq{d}{name}{d}{value}"
    if kind == "r":
        return f"{root}rng{d}{name}"
    if kind == "u" and not claims:
        return f"{root}uq{d}{name}"
    return None


def record_lines(raw: Any) -> list[str]:
    """The entry lines of a record (an HGET reply of the rec hash)."""
    if not raw:
        return []
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)
    return [line for line in text.split("\n") if line.count(SEP) >= 2]


def _field_index(
    model: str, f: attrs.Attribute[Any], option: Any, unique: bool, delimiter: str,
    cls: type | None = None, encrypted: bool = False,
) -> IndexedField:
    where = f"{model}.{f.name}"
    inner, _ = optional_inner(f.type)
    many = typing.get_origin(inner) in (list, tuple, set, frozenset)
    tp = typing.get_args(inner)[0] if many else inner
    is_enum = isinstance(tp, type) and issubclass(tp, enum.Enum)
    if option not in (True, "eq", "range", "blind", False, None):
        raise ModelDefinitionError(f"{where}: index must be True, 'eq', 'range' or 'blind'")
    check_declaration(where, option, unique, encrypted, tp)
    if scalar(tp) is None:
        raise ModelDefinitionError(f"{where}: only scalar fields (or lists of them) can be "
                                   f"indexed, not {f.type!r}")
    kind = "range" if option == "range" else "eq"
    if kind == "range":
        if many or tp not in RANGE_TYPES or tp is bool:
            raise ModelDefinitionError(
                f"{where}: a range index needs an int, float, Decimal, date or datetime field")
    elif not (is_enum or tp in EQ_TYPES):
        raise ModelDefinitionError(f"{where}: {tp!r} cannot have an equality index")
    if unique and many:
        raise ModelDefinitionError(f"{where}: a list field cannot be unique")
    found = scalar(tp)
    assert found is not None
    blind = BlindIndex(cls or object, f.name, tp, delimiter) if option == "blind" else None
    text = _text(tp, delimiter) if blind is None else blind.text
    return IndexedField(
        name=f.name,
        stored=(getattr(f.metadata.get("redmodel"), "name", None) or f.name).encode(),
        tp=tp,
        eq=kind == "eq" or unique,
        range=kind == "range",
        many=many,
        text=text,
        score=_score(tp) if kind == "range" else None,
        score_text=_score_text(tp) if kind == "range" else None,
        check=_check_indexable(found[2], text) if kind == "eq" or unique else found[2],
        numeric=tp in (int, float) and blind is None,
        blind=blind,
    )


def _not_derived(model: str, f: attrs.Attribute[Any]) -> None:
    """An indexed field's default may not be an attrs.Factory(takes_self=True): for an
    object that does not store the field (stored before it existed) its value is computed
    from other fields on every read, and a write of those would move it without its index
    entry (decided in fix 29AI: refused rather than indexed wrong)."""
    default: Any = f.default
    if isinstance(default, attrs.Factory) and default.takes_self:  # type: ignore[arg-type]
        raise ModelDefinitionError(
            f"{model}.{f.name}: an indexed field's default cannot be an "
            "attrs.Factory(takes_self=True) (its value, for an object that does not store "
            "it, follows other fields, which no index entry can): give it a plain default "
            "or factory, or index a field that is stored")


def compile_indexes(
    cls: type, model: str, unique: Sequence[Sequence[str]], delimiter: str,
    key_name: str, layout: str, encrypted: Collection[str] = (),
) -> IndexSpec | None:
    """The IndexSpec of a model, or None when it declares no index. ``encrypted`` names
    the fields whose codec chain encrypts: they take only blind indexes."""
    fields: dict[str, IndexedField] = {}
    uniques: list[UniqueSpec] = []
    for f in attrs.fields(cls):
        opts = f.metadata.get("redmodel")
        option = getattr(opts, "index", False)
        is_unique = bool(getattr(opts, "unique", False))
        if not option and not is_unique:
            continue
        if f.name == key_name:
            raise ModelDefinitionError(f"{model}.{f.name}: the key field needs no index")
        _not_derived(model, f)
        fields[f.name] = _field_index(model, f, option or "eq", is_unique, delimiter, cls,
                                      f.name in encrypted)
        if is_unique:
            uniques.append(UniqueSpec(f.name, (f.name,)))
    names = {f.name for f in attrs.fields(cls) if f.init}  # init=False: not stored
    for names_given in unique:
        group = tuple(names_given)
        missing = [g for g in group if g not in names or g == key_name]
        if not group or missing:
            raise ModelDefinitionError(
                f"{model}: unique={group!r} names no stored field {missing} (the key "
                "field, an unknown name, or an init=False field, which the model does not "
                "store)")
        for g in group:
            if g not in fields:
                attr = next(a for a in attrs.fields(cls) if a.name == g)
                _not_derived(model, attr)
                fields[g] = attrs.evolve(
                    _field_index(model, attr, "eq", True, delimiter, cls, g in encrypted),
                    eq=False)
            if fields[g].many:
                raise ModelDefinitionError(f"{model}.{g}: a list field cannot be unique")
        uniques.append(UniqueSpec(",".join(group), group))
    if not fields:
        return None
    if layout != "hash":
        raise ModelDefinitionError(f"{model}: indexes need the hash layout")
    return IndexSpec(fields, tuple(uniques))


def bucket_of(id_text: str, buckets: int) -> int:
    """Redis' own CRC16 of the id, modulo the bucket count: stable across processes."""
    return binascii.crc_hqx(id_text.encode("utf-8", "surrogateescape"), 0) % buckets


# ---- the scripts ------------------------------------------------------------------------

# KEYS: obj, rec, all, exp
# ARGV: mode, id, root, d, objprefix, ttl ('' keep | 'persist' | ms), changed ('*' or names
#       joined by \31), entries (lines), then mode data:
#   save/update: npairs, pairs..., hdel fields...
#   incr: command, stored field, amount, index name, eq(0/1), range(0/1)
#   delete: nothing; expire: nothing (ttl carries it)
WRITE = script("index_write")

SWEEP = script("index_sweep")

# Claims of unique values for bucketed models (objects in several slots). A claim is
# "owner \x1f claimed-at ms" until its owner's write has landed, then "owner \x1f C"
# (confirmed). KEYS: the claim hash (in the value's bucket). ARGV: value, id, grace ms, a
# stale owner the client proved gone (or ''). Answers {'OURS', earlier text} (already
# ours: refreshed, so that a repair reading it meanwhile cannot drop it), 1 (claimed), or
# {'TAKEN', owner, age ms (-1 once confirmed)}. A confirmed claim whose owner is gone is
# taken over at once; an unconfirmed one (its write may be in flight) after the grace.
CLAIM = script("claim")

# KEYS: the claim hash. ARGV: value, id. Marks this id's claim as backed by a written object.
CONFIRM = script("claim_confirm")

# KEYS: the claim hash. ARGV: value, id. Deletes the claim only if this id holds it.
RELEASE = script("claim_release")

# KEYS: the claim hash. ARGV: value, id, earlier text. Undoes a refresh by CLAIM (which
# answers {'OURS', earlier text} for a value the id already held) when the write fails.
RESTORE = script("claim_restore")

CLAIM_GRACE_MS = 10_000
"""An unconfirmed claim whose owner's object does not exist may be taken over once it is
this old: long enough for the owner's own write, which follows its claim, to have landed
(a confirmed one, whose write did land, is taken over as soon as its owner is gone)."""
