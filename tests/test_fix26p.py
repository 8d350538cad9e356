"""Session 26, the fixes of attack 26P's findings as kinds (tests/test_attack26p.py has one
case of each): F1 ints around the interpreter's digit limit (any limit), F2/F3 what any
codec refuses (named by key and field; a sequence refused before its first chunk, a
generator chunk by chunk), F5 every chunk_size that is no int of at least 1, F6 the key
bytes of str ids on clients of any encoding, Store and AsyncStore alike."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio
import redis.connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._args import int_too_long
from redmodel._transport._wire import pack_commands
from redmodel.codecs._json import JsonSerializer
from tests.budget import scaled


@pytest.fixture
def digit_limit() -> Iterator[Callable[[int], None]]:
    """``set(limit)``: sys.set_int_max_str_digits for the test; the limit it found is put
    back after it."""
    before = sys.get_int_max_str_digits()
    try:
        yield sys.set_int_max_str_digits
    finally:
        sys.set_int_max_str_digits(before)


_LIMITS = st.sampled_from([640, 641, 1000, 4300, 0])


def _near(limit: int) -> st.SearchStrategy[int]:
    """Ints of about ``limit`` digits (the edge of what converts), of either sign."""
    digits = st.integers(max(1, (limit or 4300) - 2), (limit or 4300) + 2)
    return st.builds(lambda d, lead, neg: (-1 if neg else 1) * (lead * 10 ** (d - 1) + 7),
                     digits, st.integers(1, 9), st.booleans())


@settings(max_examples=scaled(60, floor=20), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), limit=_LIMITS)
def test_int_too_long_says_exactly_which_ints_have_no_text(
        digit_limit: Callable[[int], None], data: st.DataObject, limit: int) -> None:
    """_args.int_too_long answers None exactly for the ints str() converts (and int()
    reads back) under the limit in force, whatever it is (0: none)."""
    digit_limit(limit)
    value = data.draw(_near(limit) | st.integers(-10**700, 10**700))
    try:
        converts = int(str(value)) == value
    except ValueError:
        converts = False
    assert (int_too_long(value) is None) == converts


@redmodel.model(prefix="fx26p")
@attrs.define
class _Plain:
    n: int = 0
    xs: list[int] = attrs.Factory(list)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx26pi")
@attrs.define
class _Indexed:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx26pn")
@attrs.define
class _IntId:
    n: int = 0
    id: int = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx26pf", layout="flat")
@attrs.define
class _Flat:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@settings(max_examples=scaled(12, floor=6), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=_LIMITS, data=st.data(),
       how=st.sampled_from(["save", "save_many", "update", "indexed", "flat", "xs", "id"]))
def test_an_int_near_the_digit_limit_is_stored_exactly_or_refused_naming_key_and_field(
        redis_url: str, redis_client: redis.Redis, digit_limit: Callable[[int], None],
        limit: int, data: st.DataObject, how: str) -> None:
    """docs/models.md "An int has decimal text up to the interpreter's digit limit": an
    int that converts is stored and read back equal; one that does not is refused with a
    ValidationError naming the key and the field, and nothing is written (a sequence:
    nothing of it)."""
    redis_client.flushdb()
    digit_limit(limit)
    value = data.draw(_near(limit))
    store = redmodel.Store(redis.Redis.from_url(redis_url), registry=False)
    store.save(_Indexed(id="u"))
    before = sorted(redis_client.keys("*"))
    calls: dict[str, tuple[Callable[[], Any], Callable[[], Any], str, Any]] = {
        "save": (lambda: store.save(_Plain(id="a", n=value)),
                 lambda: store.get(_Plain, "a").n, "fx26p:a", "'n'"),
        "save_many": (lambda: store.save_many([_Plain(id="b"), _Plain(id="a", n=value)],
                                              chunk_size=1),
                      lambda: store.get(_Plain, "a").n, "fx26p:a", "'n'"),
        "update": (lambda: store.update(_Indexed, "u", n=value),
                   lambda: store.find(_Indexed, n=value).first().n, "fx26pi:u", "'n'"),
        "indexed": (lambda: store.save(_Indexed(id="a", n=value)),
                    lambda: store.find(_Indexed, n=value).first().n, "fx26pi:a", "'n'"),
        "flat": (lambda: store.save(_Flat(id="a", n=value)),
                 lambda: store.get(_Flat, "a").n, "fx26pf:a", "'n'"),
        "xs": (lambda: store.save(_Plain(id="a", xs=[1, value])),
               lambda: store.get(_Plain, "a").xs[1], "fx26p:a", "'xs'"),
        "id": (lambda: store.save(_IntId(id=value, n=1)),
               lambda: store.get_many(_IntId, [value])[0].id, "fx26pn:", "'id'")}
    call, read, key, field = calls[how]
    if int_too_long(value) is None:
        call()
        assert read() == value
        return
    with pytest.raises(redmodel.ValidationError) as got:
        call()
    assert key in str(got.value) and field in str(got.value), str(got.value)
    assert "digits" in str(got.value)
    assert sorted(redis_client.keys("*")) == before
    if how == "id":
        with pytest.raises(redmodel.ValidationError, match="fx26pn:"):
            store.get_many(_IntId, [1, value])


def test_stored_int_text_beyond_the_limit_reads_as_a_decode_error_naming_key_and_field(
        redis_url: str, redis_client: redis.Redis, digit_limit: Callable[[int], None]
) -> None:
    """Text another process (with a higher limit) stored: DecodeError, key and field."""
    redis_client.hset("fx26p:a", mapping={"n": "9" * 700, "xs": b"\xa7\x04json[]"})
    digit_limit(640)
    store = redmodel.Store(redis.Redis.from_url(redis_url), registry=False)
    with pytest.raises(redmodel.DecodeError, match="700 digits") as got:
        store.get(_Plain, "a")
    assert "fx26p:a" in str(got.value) and "'n'" in str(got.value)


class _Picky(JsonSerializer):
    """json that refuses any value holding the text "bad" (a codec of an application)."""

    name = "fx26picky"

    def dumps(self, primitive: Any) -> bytes:
        if "bad" in repr(primitive):
            raise RuntimeError("refused")
        return super().dumps(primitive)


redmodel.codecs.register_codec("fx26picky", _Picky)


@redmodel.model(prefix="fx26c")
@attrs.define
class _CodecHash:
    tags: list[str] = redmodel.field(codec="fx26picky", default=attrs.Factory(list))
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx26ci")
@attrs.define
class _CodecIndexed:
    tags: list[str] = redmodel.field(codec="fx26picky", default=attrs.Factory(list))
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx26cf", layout="flat")
@attrs.define
class _CodecFlat:
    tags: list[str] = redmodel.field(codec="fx26picky", default=attrs.Factory(list))
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx26cb", layout="blob", codec="fx26picky")
@attrs.define
class _CodecBlob:
    tags: list[str] = attrs.Factory(list)
    id: str = redmodel.key_field(generated=False)


_CODEC_MODELS = [_CodecHash, _CodecIndexed, _CodecFlat, _CodecBlob]


@settings(max_examples=scaled(15, floor=8), deadline=None)
@given(model=st.sampled_from(_CODEC_MODELS), n=st.integers(1, 6), data=st.data(),
       chunk=st.integers(1, 4), shape=st.sampled_from(["list", "tuple", "generator"]))
def test_what_a_codec_refuses_is_refused_naming_key_and_field_before_its_chunk(
        redis_url: str, redis_client: redis.Redis, model: Any, n: int, data: st.DataObject,
        chunk: int, shape: str) -> None:
    """docs/store.md: a sequence is validated whole before the first chunk, what codecs
    refuse included; a generator chunk by chunk (the chunks before the bad object's are
    written, .written says which); docs/models.md: the refusal names the key and the
    field (the blob layout, whose codec encodes the whole object: the key)."""
    redis_client.flushdb()
    bad = data.draw(st.integers(0, n - 1))
    objs = [model(id=f"o{i}", tags=["bad" if i == bad else "ok"]) for i in range(n)]
    store = redmodel.Store(redis.Redis.from_url(redis_url), registry=False)
    given_objs: Any = {"list": objs, "tuple": tuple(objs), "generator": iter(objs)}[shape]
    with pytest.raises(redmodel.ValidationError) as got:
        store.save_many(given_objs, chunk_size=chunk)
    prefix = model.__redmodel__.prefix
    assert f"{prefix}:o{bad}" in str(got.value), str(got.value)
    if model is not _CodecBlob:
        assert "'tags'" in str(got.value), str(got.value)
    stored = sorted(k for k in redis_client.keys(f"{prefix}:*") if b"%" not in k
                    and k.count(b":") == 1)
    written = [f"{prefix}:o{i}".encode() for i in range(bad // chunk * chunk)]
    if shape == "generator":
        assert stored == sorted(written)
        assert sorted(got.value.written or ()) == sorted(w.decode() for w in written)
    else:
        assert stored == []
        assert got.value.written is None
    with pytest.raises(redmodel.ValidationError, match=f"{prefix}:o{bad}"):
        store.save(objs[bad])
    if model in (_CodecHash, _CodecIndexed):
        store.save(model(id="u"))
        with pytest.raises(redmodel.ValidationError, match="'tags'") as up:
            store.update(model, "u", tags=["bad"])
        assert f"{prefix}:u" in str(up.value)
        assert store.get(model, "u") == model(id="u")


@pytest.mark.parametrize("size", [0, False, True, -1, 1.5, "2", 2**63])
def test_every_chunk_size_that_is_no_int_of_at_least_1_is_refused_by_both_shells(
        redis_url: str, redis_client: redis.Redis, size: Any) -> None:
    """docs/failures.md: a count that is a bool, not an int or out of range raises
    ValidationError naming it, before anything is sent (0 and False never taken for their
    truthiness: the store's own chunk size is taken for None only)."""
    store = redmodel.Store(redis.Redis.from_url(redis_url), registry=False)
    with pytest.raises(redmodel.ValidationError, match="chunk_size"):
        store.save_many([_Plain(id="a")], chunk_size=size)
    assert store.save_many([_Plain(id="a")], chunk_size=None) == 1

    async def run() -> None:
        astore = redmodel.AsyncStore(redis.asyncio.Redis.from_url(redis_url), registry=False)
        try:
            with pytest.raises(redmodel.ValidationError, match="chunk_size"):
                await astore.save_many([_Plain(id="b")], chunk_size=size)
            assert await astore.save_many([_Plain(id="b")]) == 1
        finally:
            await astore.aclose()

    asyncio.run(run())
    assert sorted(redis_client.keys("fx26p:*")) == [b"fx26p:a", b"fx26p:b"]


@redmodel.model(prefix="fx26e")
@attrs.define
class _Text:
    s: str = ""
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx26ei")
@attrs.define
class _TextIndexed:
    s: str = redmodel.field(index=True, default="")
    id: str = redmodel.key_field(generated=False)


# str ids of the whole kind: any text without lone surrogates, the key syntax characters,
# and the str form of any bytes (U+DC80..U+DCFF for bytes that are not UTF-8)
_IDS = (st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6)
        | st.text(":{}*%\\ é", min_size=1, max_size=6)
        | st.binary(min_size=1, max_size=6).map(
            lambda b: b.decode("utf-8", "surrogateescape")))
_ENCODINGS = ["utf-8", "latin-1", "utf-16"]


@settings(max_examples=scaled(10, floor=5), deadline=None)
@given(ids=st.lists(_IDS, min_size=1, max_size=3, unique=True),
       encoding=st.sampled_from(_ENCODINGS), indexed=st.booleans())
def test_store_and_async_store_address_the_same_key_bytes_on_every_encoding(
        redis_url: str, redis_client: redis.Redis, ids: list[str], encoding: str,
        indexed: bool) -> None:
    """docs/models.md: a str id is the str form of the key's bytes (UTF-8 with
    surrogateescape), on a client of any encoding=, by both shells: the keys (and index
    entries) a Store writes are the ones an AsyncStore writes, and each reads the other's
    objects back."""
    model: Any = _TextIndexed if indexed else _Text
    objs = [model(id=i, s=i.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            for i in ids]
    redis_client.flushdb()
    sync = redmodel.Store(redis.Redis.from_url(redis_url, encoding=encoding), registry=False)
    sync.save(objs[0])
    sync.save_many(objs[1:])
    by_sync = set(redis_client.keys("*"))
    keys = [model.__redmodel__.key_for(i).encode("utf-8", "surrogateescape") for i in ids]
    assert set(keys) <= by_sync
    assert [redis_client.hget(k, "s") for k in keys] == [o.s.encode() for o in objs]
    redis_client.flushdb()

    async def run() -> list[Any]:
        astore = redmodel.AsyncStore(redis.asyncio.Redis.from_url(redis_url, encoding=encoding),
                                     registry=False)
        try:
            await astore.save(objs[0])
            await astore.save_many(objs[1:])
            return [await astore.get(model, ids[0]), *await astore.get_many(model, ids)]
        finally:
            await astore.aclose()

    got = asyncio.run(run())
    assert set(redis_client.keys("*")) == by_sync
    assert [redis_client.hget(k, "s") for k in keys] == [o.s.encode() for o in objs]
    assert got == [objs[0], *objs]
    assert sync.get_many(model, ids) == objs
    if indexed:
        assert sorted(o.id for o in sync.find(model, s=objs[0].s).all()) == sorted(
            o.id for o in objs if o.s == objs[0].s)


@settings(max_examples=scaled(30, floor=10), deadline=None)
@given(args=st.lists(_IDS | st.binary(max_size=4) | st.integers(-2**70, 2**70), max_size=4),
       encoding=st.sampled_from(_ENCODINGS), sync=st.booleans())
def test_redis_py_s_packer_sends_every_str_as_its_utf8_bytes_on_every_encoding(
        args: list[Any], encoding: str, sync: bool) -> None:
    """_wire.pack_commands (the path without hiredis, and the blocking commands'): the
    bytes of a command do not depend on the connection's encoding= (str as UTF-8 with
    surrogateescape, as hiredis packs them)."""
    if sync:
        conn: Any = redis.Connection(encoding=encoding)
        conn._command_packer = redis.connection.PythonRespSerializer(
            conn._buffer_cutoff, conn.encoder.encode)
    else:
        conn = redis.asyncio.Connection(encoding=encoding)
    command = ("SET", "k:é", *args)
    want = [b"*%d\r\n" % len(command)]
    for a in command:
        raw = a.encode("utf-8", "surrogateescape") if isinstance(a, str) else (
            a if isinstance(a, bytes) else str(a).encode())
        want.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    assert b"".join(pack_commands(conn, [command])) == b"".join(want)
