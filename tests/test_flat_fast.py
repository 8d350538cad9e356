"""The flat layout's fast paths store and read exactly what the generic code does.

The fast paths (redmodel/_layouts/_flat.py): per-model generated save/get code for models
of a fixed shape, flat_save.lua's unchanged-manifest shortcut, and save_many's batched
flat_save_many.lua. The referee is the code they replaced: the generic encoder (the layout
with its generated code turned off), and the flat_save.lua of before (kept below, run with
EVALSHA), one object at a time, in a second database of the same server. After every step
both databases hold the same keys, types, bytes and expiries, and ``get`` builds the same
objects as the generic decode of the same reply.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import math
import uuid
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._layouts._flat import _SAVE_MANY, FlatLayout, read_batch
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from redmodel._plan import Batch
from tests.budget import scaled
from tests.faults import proxied_store
from tests.models import Address, Point, Size, Style
from tests.strategies import TRICKY, instances, text

# flat_lib.lua and flat_save.lua as they were before the fast paths (the referee)
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # huge reprs

REFERENCE_SAVE = r'''
-- the leaf keys a flat object's manifest names (lines after the skeleton)
local function leaves(manifest, base)
  local out, first = {}, true
  for line in string.gmatch(manifest, '[^\n]+') do
    if first then first = false else out[#out + 1] = base .. line end
  end
  return out
end
-- Every key a script touches is in KEYS: nil when each of `keys` is declared, else the
-- reply {'KEYS', missing...} to give instead of touching anything (the client sends the
-- call again with them; redmodel/_flat.py)
local function undeclared(keys)
  local declared = {}
  for _, k in ipairs(KEYS) do declared[k] = true end
  local out = {'KEYS'}
  for _, k in ipairs(keys) do
    if not declared[k] then out[#out + 1] = k end
  end
  if #out > 1 then return out end
  return nil
end
-- KEYS: the manifest, the new leaves (one per value), then any other key the client
-- expects the save to touch (leaves the object had). ARGV: ttl ('' keeps the object's
-- expiry | ms), delimiter, the new manifest, the new leaves' values.
-- Answers 1, or {'KEYS', missing...} (nothing written) when the old manifest names
-- leaves to delete that are not declared.
local base = KEYS[1] .. ARGV[2]
local n = #ARGV - 3
local old = redis.call('GET', KEYS[1])
local stale = {}
if old then
  local new = {}
  for i = 2, n + 1 do new[KEYS[i]] = true end
  for _, k in ipairs(leaves(old, base)) do
    if not new[k] then stale[#stale + 1] = k end
  end
  local missing = undeclared(stale)
  if missing then return missing end
end
local keep = -1
if ARGV[1] == '' then keep = redis.call('PTTL', KEYS[1]) end
for _, k in ipairs(stale) do redis.call('DEL', k) end
redis.call('SET', KEYS[1], ARGV[3])
local args = {}
for i = 2, n + 1 do
  args[#args + 1] = KEYS[i]
  args[#args + 1] = ARGV[i + 2]
  if #args >= 1000 then redis.call('MSET', unpack(args)); args = {} end
end
if #args > 0 then redis.call('MSET', unpack(args)) end
local ms = tonumber(ARGV[1])
if not ms and keep > 0 then ms = keep end
if ms then
  for i = 1, n + 1 do redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
'''


@attrs.define
class Inner:
    s: str
    n: int | None = None


@redmodel.model(prefix="ff", layout="flat")
@attrs.define
class Fixed:
    """A fixed-shape model (generated code): every scalar type, nested and optional nested
    classes, a renamed field, a field with its own codec."""

    id: str = redmodel.key_field(generated=False)
    text: str = ""
    number: int = 0
    real: float = 0.0
    flag: bool = False
    blob: bytes = b""
    when: dt.datetime = dt.datetime(2000, 1, 1)
    day: dt.date = dt.date(2000, 1, 1)
    money: decimal.Decimal = decimal.Decimal(0)
    uid: uuid.UUID = attrs.field(factory=lambda: uuid.UUID(int=0))
    style: Style = Style.FITTED
    size: Size = Size.S
    maybe: str | None = redmodel.field(default=None, name="may:be")
    inner: Inner = attrs.Factory(lambda: Inner("x"))
    opt: Inner | None = None
    address: Address | None = None
    meta: dict[str, int] | None = redmodel.field(codec="json", default=None)


@redmodel.model(prefix="fl", layout="flat")
@attrs.define
class Listy:
    """Not of a fixed shape (the generic code), for the batched script's other cases."""

    id: str = redmodel.key_field(generated=False)
    tags: list[str] = attrs.Factory(list)
    scores: dict[str, int] = attrs.Factory(dict)
    point: Point | None = None


MODELS = (Fixed, Listy)
IDS = st.one_of(st.sampled_from(["a", "x:y", "{t}", "*", "%25", "\\", "é"]),
                st.lists(st.one_of(TRICKY, st.text(max_size=2)), min_size=1,
                         max_size=4).map("".join).filter(bool))
HUGE = "h" * 70_000
texts = st.one_of(text, st.just(HUGE), st.just(""), st.just("\ud800"))
floats = st.floats()  # NaN and +-inf too: not refused by an unindexed model


def fixed() -> st.SearchStrategy[Fixed]:
    return instances(Fixed, id=IDS, text=texts, real=floats,
                     number=st.integers(-(2**70), 2**70),
                     opt=st.none() | instances(Inner, s=texts))


def objects() -> st.SearchStrategy[Any]:
    return st.one_of(fixed(), instances(Listy, id=IDS, tags=st.lists(texts, max_size=5)))


TTLS = st.sampled_from([None, 100, 1000])


def _generic(layout: Any) -> FlatLayout:
    ref = FlatLayout(layout.spec)
    ref._encode = None  # the generic encode and decode
    return ref


def _same(a: Any, b: Any) -> bool:
    """Equal objects, a NaN equal to a NaN."""
    if attrs.has(type(a)) and type(a) is type(b):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@settings(max_examples=scaled(100))
@given(obj=objects(), ttl=TTLS)
def test_generated_save_sends_what_the_generic_code_sends(obj: Any, ttl: int | None) -> None:
    spec = spec_of(obj)
    layout = layout_of(spec)
    try:
        spec.check(obj)
    except redmodel.ValidationError:
        return
    key = spec.key_for(obj.id)
    fast, slow = layout.save(key, obj, ttl), _generic(layout).save(key, obj, ttl)
    assert (fast.keys, fast.args) == (slow.keys, slow.args)


def _dump(r: redis.Redis) -> dict[bytes, tuple[Any, ...]]:
    out: dict[bytes, tuple[Any, ...]] = {}
    for k in r.scan_iter(count=1000):
        kind = r.type(k)
        pttl = r.pttl(k)
        value = r.get(k) if kind == b"string" else None
        out[k] = (kind, value, pttl > 0, pttl == -1)
    return out


def _reference_save(r: redis.Redis, sha: str, obj: Any, ttl: int | None) -> None:
    """Save as before: the generic encode, the old script, resent with the keys it asks."""
    spec = spec_of(obj)
    spec.check(obj)
    key = spec.key_for(obj.id)
    w = _generic(layout_of(spec)).save(key, obj, None if ttl is None else ttl * 1000)
    for _ in range(3):
        reply = r.evalsha(sha, len(w.keys), *w.keys, *w.args)
        if reply == 1:
            return
        assert reply[0] == b"KEYS"
        w.declare(k.decode("utf-8", "surrogateescape") for k in reply[1:])
    raise AssertionError("the reference save kept asking for keys")


STEP = st.one_of(
    st.tuples(st.just("save"), objects(), TTLS),
    st.tuples(st.just("many"), st.lists(objects(), min_size=1, max_size=6), TTLS),
    st.tuples(st.just("plant"), st.sampled_from(MODELS), IDS,
              st.sampled_from(["", ":text", ":tags:0", ":inner:s"])),
)


@pytest.fixture
def two(redis_url: str, redis_client: redis.Redis) -> Any:
    """(store on db 0, client on db 0, client on db 1 with the reference script)."""
    ref = redis.Redis.from_url(redis_url, db=1)
    ref.flushdb()
    store = redmodel.Store(redis_client, registry=False)
    yield store, redis_client, ref, ref.script_load(REFERENCE_SAVE)
    ref.flushdb()
    ref.close()


@settings(max_examples=scaled(30))
@given(steps=st.lists(STEP, min_size=1, max_size=5))
def test_fast_saves_store_and_read_what_the_generic_ones_do(two: Any, steps: list[Any]
                                                            ) -> None:
    store, new, ref, sha = two
    new.flushdb()
    ref.flushdb()
    seen: dict[str, Any] = {}
    for step in steps:
        if step[0] == "plant":  # a wrong-typed key where an object or a leaf goes
            _, model, id_, suffix = step
            key = spec_of(model).key_for(id_) + suffix
            for r in (new, ref):
                r.delete(key)
                r.hset(key, "planted", "1")
            continue
        objs = [step[1]] if step[0] == "save" else step[1]
        ttl = step[2]
        valid = True  # a bad object refuses its whole chunk (here: the call) unwritten
        for obj in objs:
            try:
                spec_of(obj).check(obj)
            except redmodel.ValidationError:
                valid = False
        refused = set()
        for obj in objs if valid else ():
            try:
                _reference_save(ref, sha, obj, ttl)
            except redis.ResponseError as e:
                assert "WRONGTYPE" in str(e)
                refused.add(spec_of(obj).key_for(obj.id))
        try:
            if step[0] == "save":
                store.save(objs[0], ttl=ttl)
            else:
                store.save_many(iter(objs), ttl=ttl, chunk_size=100)
            assert valid and not refused
        except redmodel.ValidationError:
            assert not valid
        except redmodel.ServerError as e:  # a wrong-typed object key: named, not written
            assert valid and "WRONGTYPE" in str(e)
            assert refused & set(e.keys)
        for obj in objs:
            seen[spec_of(obj).key_for(obj.id)] = obj
        assert _dump(new) == _dump(ref)
    for key, obj in seen.items():  # get: the generated decode builds the generic object
        spec = spec_of(obj)
        layout = layout_of(spec)
        try:
            got: Any = store.get(type(obj), obj.id)
        except redmodel.RedmodelError as e:
            got = e
        try:
            want: Any = _generic(layout).decode(key, spec.id_text(obj.id),
                                                _raw_get(store, layout, key))
        except redmodel.RedmodelError as e:
            want = e
        if isinstance(want, Exception):
            assert type(got) is type(want) and str(got) == str(want)
        else:
            assert _same(got, want)


def _raw_get(store: redmodel.Store, layout: Any, key: str) -> Any:
    return store.run(read_batch(Batch([layout.read(key)], keys=(key,))))[0]


def test_a_lost_reply_to_a_batched_save_many_never_leaves_half_an_object(
        redis_server: Any, redis_client: redis.Redis) -> None:
    """The chunk's one flat_save_many.lua call runs, its reply is lost: the store resends it
    (a whole save is idempotent) or raises; either way every object is whole (its manifest
    and every leaf it names, with the same expiry), none half written."""
    objs = [Fixed(id=f"o{i}", text=f"t{i}", number=i, opt=Inner("y", i) if i % 2 else None)
            for i in range(40)]
    redmodel.Store(redis_client).save_many([attrs.evolve(o, opt=Inner("z")) for o in objs])
    for fault in ("lose_reply", "cut_reply"):
        with proxied_store(redis_server) as (proxy, store):
            getattr(proxy, fault)("EVALSHA", when=lambda argv: _SAVE_MANY.sha.encode() in argv)
            with contextlib.suppress(redmodel.RedmodelError, redis.ConnectionError):
                store.save_many(objs, ttl=500)
            assert proxy.events, "the fault fired"
            store.close()
        check = redmodel.Store(redis_client)
        for o in objs:
            key = spec_of(Fixed).key_for(o.id)
            leaves = redis_client.get(key).decode().split("\n")[1:]
            keys = [key, *(f"{key}:{s}" for s in leaves)]
            assert all(redis_client.exists(k) for k in keys)
            assert all(redis_client.pttl(k) > 0 for k in keys), "every leaf has the TTL"
            assert check.get(Fixed, o.id) == o  # the new object, whole
            assert not redis_client.exists(f"{key}:opt:s") or o.opt is not None
