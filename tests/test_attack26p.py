"""Session 26, attack P: stop 25's bulk packer (save_many's generated HSET packer, the
driver's packed bytes, get_many's decode of a chunk), the page check of record-less writes.
One failing test per finding (``# F<n>:`` names it), each asserting what the docs promise;
the test without a mark is a sound area the suite did not cover (the packed bytes against
one-at-a-time saves on clients of other encodings and RESP3)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled


@attrs.define
class _In:
    a: int = 0
    b: str = ""


@redmodel.model(prefix="atk26ph")
@attrs.define
class _H:
    i: int = 0
    f: float = 0.0
    s: str = ""
    b: bytes = b""
    d: Decimal = Decimal(0)
    t: dt.datetime = dt.datetime(2020, 1, 1)
    inner: _In = attrs.Factory(_In)
    xs: list[int] = attrs.Factory(list)
    o: int | None = 1
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk26pi")
@attrs.define
class _Idx:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk26pl")
@attrs.define
class _IdxL:
    xs: list[int] = attrs.Factory(list)
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk26pn")
@attrs.define
class _IntId:
    n: int = 0
    id: int = redmodel.key_field(generated=False)


_HUGE = 10**5000  # beyond CPython's 4300-digit limit of int <-> str conversion


def _objects(client: redis.Redis) -> list[bytes]:
    """The object keys of _H stored (not the registry's)."""
    return sorted(k for k in client.keys("atk26ph:*") if b"%" not in k)


# F1: an int beyond 4300 digits in a hash model's int field (plain or indexed), or as an int
# id, makes save, save_many, update and get_many raise a bare ValueError ("Exceeds the
# limit (4300 digits) for integer string conversion") that names no key: str(int) in the
# field encoders and key builders (redmodel/_models/_compiled.py _INLINE_ENCODE[int] and
# key_text, the generic int encoder, the index entry's text), never checked by the field
# or id checker, which accepts any int. In a save_many of a list it comes after the
# earlier chunks were written.
def test_f1_an_int_beyond_4300_digits_is_stored_exactly_or_refused_naming_the_key(
        redis_url: str, redis_client: redis.Redis) -> None:
    """docs/models.md field table: "`int` | decimal text ... ints beyond 64 bits are stored
    as text too"; docs/failures.md / the project's standard: bad input gets a clear
    redmodel error (ValidationError) naming the key before the first write, never a bare
    ValueError."""
    store = redmodel.Store(redis.Redis.from_url(redis_url))
    store.save(_Idx(id="u"))
    calls = {"save": lambda: store.save(_H(id="a", i=_HUGE)),
             "save_many": lambda: store.save_many([_H(id="a", i=_HUGE)]),
             "indexed save": lambda: store.save(_Idx(id="a", n=_HUGE)),
             "update": lambda: store.update(_Idx, "u", n=_HUGE),
             "int id save": lambda: store.save(_IntId(id=_HUGE)),
             "int id get_many": lambda: store.get_many(_IntId, [1, _HUGE])}
    bad = {}
    for name, call in calls.items():
        try:
            call()
        except redmodel.ValidationError as e:
            if "atk26p" not in str(e):
                bad[name] = f"names no key: {e}"
        except Exception as e:
            bad[name] = f"{type(e).__name__}: {str(e)[:80]}"
        else:
            got = store.get(_H, "a") if name.startswith("save") else None
            if got is not None and got.i != _HUGE:
                bad[name] = "stored another value"
    assert bad == {}
    assert redis_client.keys("atk26p[hn]:*") == []
    assert redis_client.exists("atk26pi:a") == 0
    assert store.get(_Idx, "u") == _Idx(id="u")


# F2: a codec-encoded field whose value the codec cannot encode (json, an int beyond 4300
# digits in a list) is refused with a ValidationError whose text names neither the key nor
# the field ("codec 'json' cannot encode a value of type list: ValueError"); the blob
# layout's same refusal names the key (model B, key 'b:a'). Guess: the hash layout's
# codec-field encoder (redmodel/_layouts/_hash.py or _models/_compiled.py) does not wrap
# the codec's EncodeError with the field context the scalar checkers add.
def test_f2_a_codec_field_refused_by_its_codec_names_the_key_and_the_field(
        redis_url: str, redis_client: redis.Redis) -> None:
    """docs/models.md "Reading data that does not fit": errors name "the key and the field";
    the standards (BRIEF-COMMON.md, docs/failures.md): every exception leaving redmodel is a
    redmodel error naming the key. docs/codecs.md promises `int` "of any size" through
    every chain, so a refusal at least has to say where."""
    store = redmodel.Store(redis.Redis.from_url(redis_url))
    for call in (lambda: store.save(_H(id="k", xs=[_HUGE])),
                 lambda: store.save_many([_H(id="ok"), _H(id="k", xs=[_HUGE])])):
        with pytest.raises(redmodel.ValidationError) as got:
            call()
        assert "atk26ph:k" in str(got.value) and "xs" in str(got.value), str(got.value)
    assert redis_client.keys("atk26ph:*") == []


# F3: save_many of a list validates every object's fields up front but not what a codec
# field's codec refuses (json, an int beyond 4300 digits in a list): with chunk_size=1 the
# objects before the bad one are written, then the ValidationError comes (".. 2 were
# written"); the same for an indexed model. The up-front check (redmodel/_plans/_objects.py
# _check_all / _check_plain: spec.checker()) checks the field's type, the encode is left to
# the chunk.
@pytest.mark.parametrize("model", ["plain", "indexed"])
def test_f3_save_many_of_a_list_refuses_a_codec_refused_value_before_the_first_write(
        redis_url: str, redis_client: redis.Redis, model: str) -> None:
    """docs/store.md "Atomicity and failures": "A **sequence** (list, tuple) is validated
    whole before the first chunk (its fields, ids, index values ...): a bad object in it
    leaves nothing written"."""
    cls: Any = _H if model == "plain" else _IdxL
    store = redmodel.Store(redis.Redis.from_url(redis_url))
    with pytest.raises(redmodel.ValidationError) as got:
        store.save_many([cls(id="a"), cls(id="b"), cls(id="z", xs=[_HUGE])], chunk_size=1)
    assert [k for k in redis_client.keys("atk26p*") if b"%" not in k] == []
    # refused before any chunk was sent: not a batch error, whose .written is None
    # (redmodel.RedmodelError: "Both are None for any other error")
    assert got.value.written is None and got.value.not_written is None


@redmodel.model(prefix="atk26pv")
@attrs.define
class _Ver:                       # version 1: no index (an old pod)
    __qualname__ = "_Ver"
    n: int = 0
    r: int = 0
    id: str = redmodel.key_field(generated=False)


_Ver1 = _Ver


@redmodel.model(prefix="atk26pv")
@attrs.define
class _Ver:                       # version 2: the same model with two indexes
    __qualname__ = "_Ver"
    n: int = redmodel.field(index=True, default=0)
    r: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


# F4: an object an old pod (a version of the model without indexes) wrote after the new
# version's reindex is, after the NEW version saves it whole (save, save_many, a
# transaction) or updates it, listed in the all-ids index but still missing the entries of
# every field whose value the write did not change: find(n=5) and order_by("r") miss it
# while all() and a scan have it, verify reports "missing from the equality index". The
# page check of a record-less write (index_write.lua / index_lib.lua, the "no record,
# object exists" branch) lists the unlisted id but still takes the derived old entries
# (the assumption the write sends) as present, so the unchanged ones are never written;
# docs/performance.md ("What a record no longer says") describes only the id being added,
# though an id missing from its page is exactly what says the object has no entries.
@pytest.mark.parametrize("how", ["save", "save_many", "update", "transaction"])
def test_f4_a_new_version_write_of_an_unlisted_object_writes_every_entry(
        redis_url: str, redis_client: redis.Redis, how: str) -> None:
    """docs/migrations.md: a new index is `building` ... "Writes go on meanwhile and index
    themselves"; docs/performance.md (the page check): "a process still running a version
    of the model without any index writes unlisted objects after the build" (what the page
    check is for); the standard: queries answer exactly what a scan answers, and
    `store.verify` is clean after redmodel's own writes."""
    old = redmodel.Store(redis.Redis.from_url(redis_url))
    new = redmodel.Store(redis.Redis.from_url(redis_url))
    old.save(_Ver1(id="a", n=5, r=1))
    new.save(_Ver(id="b", n=5, r=2))
    new.reindex(_Ver)                                  # the deploy's build: ready
    old.save(_Ver1(id="x", n=5, r=3))                  # an old pod, still running
    x = _Ver(id="x", n=5, r=3)
    if how == "save":
        new.save(x)
    elif how == "save_many":
        new.save_many([x])
    elif how == "update":
        new.update(_Ver, "x", r=3)
    else:
        new.transaction(lambda tx: tx.save(x))()
    scan = sorted(o.id for o in new.scan(_Ver))
    assert scan == ["a", "b", "x"]
    assert sorted(o.id for o in new.find(_Ver).all()) == scan
    assert sorted(o.id for o in new.find(_Ver, n=5).all()) == scan
    assert sorted(o.id for o in new.find(_Ver).order_by("r").all()) == scan
    assert new.verify(_Ver) == []


# F5: save_many(chunk_size=0) and save_many(chunk_size=False) are taken for their
# truthiness (`chunk_size or self.chunk_size`, redmodel/_stores/_sync.py and _async.py
# save_many) and save with the store's chunk size, while chunk_size=-1 or True is refused
# with "chunk_size must be an int from 1 to 9223372036854775807".
@pytest.mark.parametrize("size", [0, False])
def test_f5_save_many_refuses_a_chunk_size_below_1_and_a_bool(
        redis_url: str, redis_client: redis.Redis, size: int) -> None:
    """docs/failures.md: "every numeric argument of a public method (... a count ...) is
    checked before anything is sent, and a NaN, an infinity, a wrong type or a value out of
    range raises `ValidationError` naming the argument"; "`chunk_size=` an int of at least
    1"; a bool is "never ... taken for its truthiness"."""
    store = redmodel.Store(redis.Redis.from_url(redis_url))
    with pytest.raises(redmodel.ValidationError, match="chunk_size"):
        store.save_many([_H(id="a")], chunk_size=size)

    async def run() -> None:
        astore = redmodel.AsyncStore(redis.asyncio.Redis.from_url(redis_url))
        try:
            with pytest.raises(redmodel.ValidationError, match="chunk_size"):
                await astore.save_many([_H(id="a")], chunk_size=size)
        finally:
            await astore.aclose()

    asyncio.run(run())
    assert redis_client.keys("atk26ph:*") == []


# F6: an AsyncStore on a client made with another `encoding=` than UTF-8 does not send the
# documented key bytes: with encoding="latin-1" a save of the id "é" writes the key
# b"atk26ph:\xe9" (the client's encoding of the str key), where a Store on the same kind of
# client writes and reads b"atk26ph:\xc3\xa9", so the two shells address different keys
# for one id (and which one the async shell sends depends on the batch: with an id of
# undecodable bytes in the same save_many, the UTF-8 one); with encoding="utf-16" every
# AsyncStore call fails with "ServerError: EVALSHA registry: Error compiling script" (the
# Lua source sent as UTF-16), where the Store works. Guess: the async transport
# (redmodel/_transport/_links.py, the asyncio link) leaves str keys and script text to the
# client's encoder, where the sync one sends bytes.
@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_f6_an_async_store_on_a_non_utf8_client_writes_the_documented_key_bytes(
        redis_url: str, redis_client: redis.Redis, encoding: str) -> None:
    """docs/models.md: "**The id part of a key is bytes** ... A `str` id is the str form of
    those bytes: the bytes decoded as UTF-8 with `surrogateescape`"; BRIEF-COMMON.md "One
    core, thin shells: sync and async ... share one plan" (the Store on the same client
    settings writes b"atk26ph:\xc3\xa9")."""
    obj = _H(id="é", s="é")
    sync = redmodel.Store(redis.Redis.from_url(redis_url, encoding=encoding))
    sync.save(obj)
    assert _objects(redis_client) == ["atk26ph:é".encode()]
    redis_client.flushdb()

    async def run() -> tuple[Any, Any]:
        astore = redmodel.AsyncStore(redis.asyncio.Redis.from_url(redis_url, encoding=encoding))
        try:
            await astore.save(obj)
            await astore.save_many([attrs.evolve(obj, id="ü")])
            return await astore.get(_H, "é"), await astore.get_many(_H, ["ü"])
        finally:
            await astore.aclose()

    got = asyncio.run(run())
    assert _objects(redis_client) == ["atk26ph:é".encode(), "atk26ph:ü".encode()]
    assert got == (obj, [attrs.evolve(obj, id="ü")])
    assert sync.get(_H, "é") == obj


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_OBJ = st.builds(
    _H, i=st.integers(min_value=-2**80, max_value=2**80),
    f=st.floats(allow_nan=False) | st.sampled_from([-0.0, float("inf"), float("-inf")]),
    s=_TEXT, b=st.binary(max_size=8),
    d=st.decimals(allow_nan=False, allow_infinity=False, places=3),
    t=st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    inner=st.builds(_In, a=st.integers(min_value=-2**70, max_value=2**70), b=_TEXT),
    xs=st.lists(st.integers(min_value=-2**70, max_value=2**70), max_size=3),
    o=st.none() | st.integers(), id=_TEXT.filter(bool) | st.text("ab:{}*%\\ \n", min_size=1))
def _stored(client: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    return {k: client.hgetall(k) for k in client.keys("atk26ph:*") if b"%" not in k}


_CLIENTS = [{}, {"encoding": "latin-1"}, {"protocol": 3}, {"encoding_errors": "surrogateescape"}]


@settings(max_examples=scaled(15, floor=5))
@given(objs=st.lists(_OBJ, min_size=1, max_size=4, unique_by=lambda o: o.id),
       at=st.integers(0, len(_CLIENTS) - 1))
def test_save_many_stores_what_one_at_a_time_saves_store_on_every_client(
        redis_url: str, redis_client: redis.Redis, objs: list[_H], at: int) -> None:
    """docs/store.md: save_many is a batch of saves: the stored bytes equal those of
    `save` one object at a time (the packed fast path on a UTF-8 client, the general path
    on other encodings and RESP3), and get_many gives the objects back equal."""
    redis_client.flushdb()
    store = redmodel.Store(redis.Redis.from_url(redis_url, **_CLIENTS[at]))
    for o in objs:
        store.save(o)
    one = _stored(redis_client)
    redis_client.flushdb()
    store.save_many(iter(objs), chunk_size=2)
    assert _stored(redis_client) == one
    ids = [o.id for o in objs]
    assert store.get_many(_H, [*ids, "\x00missing", ids[0]]) == [*objs, None, objs[0]]
