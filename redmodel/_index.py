"""Secondary indexes on plain Redis, kept in step with every write by one Lua script.

Per model (and per bucket on a cluster) the index keys live under a root that no object
key can produce (``%`` never starts an escaped id): ``hat:%idx`` or ``hat:{7}:%idx``.

- ``<root>:eq:<field>:<value>``  SET of ids with that value (also "contains" for lists)
- ``<root>:rng:<field>``         ZSET id -> number (ranges and sorting)
- ``<root>:uq:<fields>``         HASH value -> the id that owns it (unique constraints)
- ``<root>:rec``                 HASH id -> the object's index entries (what to undo)
- ``<root>:all``                 SET of every id (NOT, count of all)
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
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from redmodel._errors import ModelDefinitionError
from redmodel._keys import escape
from redmodel._plan import script
from redmodel._types import optional_inner, scalar

__all__ = ["IndexSpec", "IndexedField", "compile_indexes"]

EQ_TYPES = (str, int, bool, dt.date, uuid.UUID, decimal.Decimal, float, dt.datetime)
RANGE_TYPES = (int, float, decimal.Decimal, dt.date, dt.datetime)
SEP = "\x1f"
JOIN = "\x1e"


def _score(tp: Any) -> Callable[[Any], float]:
    if tp is dt.datetime:
        return lambda v: (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).timestamp()
    if tp is dt.date:
        return lambda v: float(v.toordinal())
    return float


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


@attrs.frozen
class UniqueSpec:
    name: str  # fields joined by ","
    fields: tuple[str, ...]


@attrs.frozen
class IndexSpec:
    """Every index of one model."""

    fields: dict[str, IndexedField]
    uniques: tuple[UniqueSpec, ...]

    def entries(self, values: dict[str, Any], only: Sequence[str] | None = None) -> list[str]:
        """Index entries of an object's values (all, or those involving ``only``)."""
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
                out.extend(f"e{SEP}{name}{SEP}{f.text(v)}" for v in dict.fromkeys(items))
            if f.range and f.score is not None:
                out.append(f"r{SEP}{name}{SEP}{f.score(value)!r}")
        for u in self.uniques:
            if not wanted.intersection(u.fields):
                continue
            parts = [values.get(n) for n in u.fields]
            if any(p is None for p in parts):
                continue  # like SQL: a None never collides
            text = JOIN.join(self.fields_text(n, p) for n, p in zip(u.fields, parts, strict=True))
            out.append(f"u{SEP}{u.name}{SEP}{text}")
        return out

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
    found = scalar(tp)
    assert found is not None
    encode = found[0]
    return lambda v: escape(encode(v).decode("utf-8", "surrogateescape"), delimiter)


def _field_index(
    model: str, f: attrs.Attribute[Any], option: Any, unique: bool, delimiter: str
) -> IndexedField:
    where = f"{model}.{f.name}"
    inner, _ = optional_inner(f.type)
    many = typing.get_origin(inner) in (list, tuple, set, frozenset)
    tp = typing.get_args(inner)[0] if many else inner
    is_enum = isinstance(tp, type) and issubclass(tp, enum.Enum)
    if scalar(tp) is None:
        raise ModelDefinitionError(f"{where}: only scalar fields (or lists of them) can be "
                                   f"indexed, not {f.type!r}")
    kind = "range" if option == "range" else "eq"
    if option not in (True, "eq", "range", False, None):
        raise ModelDefinitionError(f"{where}: index must be True, 'eq' or 'range'")
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
    return IndexedField(
        name=f.name,
        stored=(getattr(f.metadata.get("redmodel"), "name", None) or f.name).encode(),
        tp=tp,
        eq=kind == "eq" or unique,
        range=kind == "range",
        many=many,
        text=_text(tp, delimiter),
        score=_score(tp) if kind == "range" else None,
        check=found[2],
        numeric=tp in (int, float),
    )


def compile_indexes(
    cls: type, model: str, unique: Sequence[Sequence[str]], delimiter: str,
    key_name: str, layout: str,
) -> IndexSpec | None:
    """The IndexSpec of a model, or None when it declares no index."""
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
        fields[f.name] = _field_index(model, f, option or "eq", is_unique, delimiter)
        if is_unique:
            uniques.append(UniqueSpec(f.name, (f.name,)))
    names = {f.name for f in attrs.fields(cls)}
    for names_given in unique:
        group = tuple(names_given)
        missing = [g for g in group if g not in names or g == key_name]
        if not group or missing:
            raise ModelDefinitionError(f"{model}: unique={group!r} names no field {missing}")
        for g in group:
            if g not in fields:
                attr = next(a for a in attrs.fields(cls) if a.name == g)
                fields[g] = attrs.evolve(
                    _field_index(model, attr, "eq", True, delimiter), eq=False)
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
    return binascii.crc_hqx(id_text.encode("utf-8"), 0) % buckets


# ---- the scripts ------------------------------------------------------------------------

_LIB = r"""
local SEP = '\31'
local function split(line)
  return string.match(line, '^([^\31]*)\31([^\31]*)\31(.*)$')
end
local function lines(text)
  local t = {}
  if text then for line in string.gmatch(text, '[^\n]+') do t[line] = true end end
  return t
end
local function time_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local CLAIMS = false
local function apply(root, d, id, line, add)
  local kind, name, value = split(line)
  if kind == 'u' and CLAIMS then return end
  if kind == 'e' then
    local k = root .. 'eq' .. d .. name .. d .. value
    if add then redis.call('SADD', k, id) else redis.call('SREM', k, id) end
  elseif kind == 'r' then
    local k = root .. 'rng' .. d .. name
    if add then redis.call('ZADD', k, value, id) else redis.call('ZREM', k, id) end
  elseif kind == 'u' then
    local k = root .. 'uq' .. d .. name
    if add then redis.call('HSET', k, value, id)
    elseif redis.call('HGET', k, value) == id then redis.call('HDEL', k, value) end
  end
end
local function forget(root, d, id, rec, all, exp)
  for line in pairs(lines(redis.call('HGET', rec, id))) do apply(root, d, id, line, false) end
  redis.call('HDEL', rec, id)
  redis.call('SREM', all, id)
  redis.call('ZREM', exp, id)
end
-- drop the entries of objects whose expiry has passed: cost grows with their number only
local function sweep(root, d, objprefix, rec, all, exp)
  local now = time_ms()
  local ids = redis.call('ZRANGEBYSCORE', exp, '-inf', now)
  for _, id in ipairs(ids) do
    local pttl = redis.call('PTTL', objprefix .. id)
    if pttl == -2 then forget(root, d, id, rec, all, exp)
    elseif pttl == -1 then redis.call('ZREM', exp, id)
    else redis.call('ZADD', exp, now + pttl, id) end
  end
  return #ids
end
"""

# KEYS: obj, rec, all, exp
# ARGV: mode, id, root, d, objprefix, ttl ('' keep | 'persist' | ms), changed ('*' or names
#       joined by \31), entries (lines), then mode data:
#   save/update: npairs, pairs..., hdel fields...
#   incr: command, stored field, amount, index name, eq(0/1), range(0/1)
#   delete: nothing; expire: nothing (ttl carries it)
WRITE = script(
    _LIB
    + r"""
local obj, rec, all, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, id, root, d, objprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if string.sub(mode, -2) == ':c' then CLAIMS = true; mode = string.sub(mode, 1, -3) end
-- with claims (a bucketed model), unique values are claimed in their own slots by the
-- client before this runs; here we only report the ones this write gives up
local function released(old, new)
  local out = {}
  for line in pairs(old) do
    if not new[line] and string.sub(line, 1, 1) == 'u' then out[#out + 1] = line end
  end
  return out
end
local ttl, changed, newtext = ARGV[6], ARGV[7], ARGV[8]
sweep(root, d, objprefix, rec, all, exp)
local exists = redis.call('EXISTS', obj) == 1
if mode ~= 'save' and not exists then
  if mode == 'incr' then return false end
  return 0
end
if mode == 'delete' then
  local gone = released(lines(redis.call('HGET', rec, id)), {})
  forget(root, d, id, rec, all, exp)
  redis.call('DEL', obj)
  if CLAIMS and #gone > 0 then return {'RELEASE', 1, unpack(gone)} end
  return 1
end
local old = lines(redis.call('HGET', rec, id))
local new = {}
local result = 1
if mode == 'incr' then
  result = redis.call(ARGV[9], obj, ARGV[10], ARGV[11])
  for line in pairs(old) do
    local kind, name = split(line)
    if name ~= ARGV[12] then new[line] = true end
  end
  -- HINCRBY answers a number (its exact integer text: tostring keeps 14 digits only),
  -- HINCRBYFLOAT answers Redis' own text of the float
  local text = result
  if type(result) == 'number' then text = string.format('%d', result) end
  if ARGV[13] == '1' then new['e' .. SEP .. ARGV[12] .. SEP .. text] = true end
  if ARGV[14] == '1' then new['r' .. SEP .. ARGV[12] .. SEP .. text] = true end
elseif mode == 'expire' then
  new = old
else
  if changed ~= '*' then
    local ch = {}
    for name in string.gmatch(changed, '[^\31]+') do ch[name] = true end
    for line in pairs(old) do
      local kind, name = split(line)
      if not ch[name] then new[line] = true end
    end
  end
  for line in pairs(lines(newtext)) do new[line] = true end
  for line in pairs(new) do
    if not old[line] then
      local kind, name, value = split(line)
      if kind == 'u' and not CLAIMS then
        local owner = redis.call('HGET', root .. 'uq' .. d .. name, value)
        if owner and owner ~= id then return {'UNIQUE', name, value} end
      end
    end
  end
  local npairs = tonumber(ARGV[9])
  if npairs > 0 then redis.call('HSET', obj, unpack(ARGV, 10, 9 + 2 * npairs)) end
  if #ARGV > 9 + 2 * npairs then redis.call('HDEL', obj, unpack(ARGV, 10 + 2 * npairs)) end
  if redis.call('EXISTS', obj) == 0 then redis.call('HSET', obj, '\0', '') end
end
local gone = CLAIMS and released(old, new) or {}
for line in pairs(old) do if not new[line] then apply(root, d, id, line, false) end end
for line in pairs(new) do if not old[line] then apply(root, d, id, line, true) end end
local text = {}
for line in pairs(new) do text[#text + 1] = line end
table.sort(text)
redis.call('HSET', rec, id, table.concat(text, '\n'))
redis.call('SADD', all, id)
if ttl == 'persist' then
  local had = redis.call('PERSIST', obj)
  if mode == 'expire' then result = had end
  redis.call('ZREM', exp, id)
elseif ttl ~= '' then
  redis.call('PEXPIRE', obj, ttl)
  redis.call('ZADD', exp, time_ms() + tonumber(ttl), id)
else
  local pttl = redis.call('PTTL', obj)
  if pttl > 0 then redis.call('ZADD', exp, time_ms() + pttl, id)
  else redis.call('ZREM', exp, id) end
end
if #gone > 0 then return {'RELEASE', result, unpack(gone)} end
return result
"""
)

SWEEP = script(
    _LIB
    + r"""
return sweep(ARGV[1], ARGV[2], ARGV[3], KEYS[1], KEYS[2], KEYS[3])
"""
)

# Claims of unique values for bucketed models (objects in several slots). A claim is
# "owner \x1f claimed-at ms" until its owner's write has landed, then "owner \x1f C"
# (confirmed). KEYS: the claim hash (in the value's bucket). ARGV: value, id, grace ms, a
# stale owner the client proved gone (or ''). Answers 2 (already ours), 1 (claimed), or
# {'TAKEN', owner, age ms (-1 once confirmed)}. A confirmed claim whose owner is gone is
# taken over at once; an unconfirmed one (its write may be in flight) after the grace.
CLAIM = script(
    r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local owner, at = string.match(cur, '^(.*)\31([%dC]+)$')
  if owner == ARGV[2] then return 2 end
  local age = -1
  if at ~= 'C' then age = now - tonumber(at) end
  local stale = owner == ARGV[4] and (age < 0 or age >= tonumber(ARGV[3]))
  if not stale then return {'TAKEN', owner, age} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. now)
return 1
"""
)

# KEYS: the claim hash. ARGV: value, id. Marks this id's claim as backed by a written object.
CONFIRM = script(
    r"""
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.match(cur, '^(.*)\31[%dC]+$') == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31C')
  return 1
end
return 0
"""
)

# KEYS: the claim hash. ARGV: value, id. Deletes the claim only if this id holds it.
RELEASE = script(
    r"""
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.match(cur, '^(.*)\31[%dC]+$') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
)

CLAIM_GRACE_MS = 10_000
"""An unconfirmed claim whose owner's object does not exist may be taken over once it is
this old: long enough for the owner's own write, which follows its claim, to have landed
(a confirmed one, whose write did land, is taken over as soon as its owner is gone)."""
