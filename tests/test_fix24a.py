"""Properties behind the fixes of attack 24A F1, F3, F5 (tests/test_attack24a.py holds one
example of each): an id is bytes. A ``bytes`` id is its raw bytes, any bytes; a ``str`` id
is the str form of those bytes (UTF-8 with ``surrogateescape``, U+DC80..U+DCFF standing for
undecodable bytes), so a key another program wrote with undecodable id bytes is read,
scanned and written back as that very key; a str id holding any other lone surrogate is
refused before anything is sent (docs/models.md, "Ids and keys")."""

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled
from tests.conftest import dbsize
from tests.test_cli import redmodel_cli


@redmodel.model(prefix="fx24sh")
@attrs.define
class StrHash:
    color: str = "c"
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx24sf", layout="flat", hash_tag=True)  # a cluster needs one
@attrs.define
class StrFlat:
    color: str = "c"
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx24bh")
@attrs.define
class BytesHash:
    color: str = "c"
    n: int = 0
    id: bytes = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx24bf", layout="flat", hash_tag=True)
@attrs.define
class BytesFlat:
    color: str = "c"
    n: int = 0
    id: bytes = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx24si")
@attrs.define
class StrIndexed:
    color: str = redmodel.field(index=True, default="c")
    code: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx24bi")
@attrs.define
class BytesIndexed:
    color: str = redmodel.field(index=True, default="c")
    code: str | None = redmodel.field(unique=True, default=None)
    id: bytes = redmodel.key_field(generated=False)


MODELS = [StrHash, StrFlat, BytesHash, BytesFlat]
PREFIX = {StrHash: b"fx24sh", StrFlat: b"fx24sf", BytesHash: b"fx24bh", BytesFlat: b"fx24bf",
          StrIndexed: b"fx24si", BytesIndexed: b"fx24bi"}

# what escaping is about, NUL, undecodable bytes, an encoded surrogate, escapes good and bad
SPECIAL = st.sampled_from([b":", b"{", b"}", b"*", b"?", b"[", b"]", b"%", b"\\", b"\n",
                           b"\x1e", b"\x1f", b"\x00", b"\x80", b"\xff", b"\xc3", b"\xed\xa0\x80",
                           b"\xed\xb2\x80", b"%41", b"%zz", b"%C3%A9", "é".encode()])
ID_BYTES = st.lists(st.one_of(SPECIAL, st.binary(max_size=3),
                              st.integers(0x80, 0xFF).map(lambda i: bytes([i])),
                              st.text(max_size=2).map(str.encode)),
                    max_size=5).map(b"".join)

_ESCAPED = frozenset(b"%*?[]\\{}\n\x1e\x1f:")


def key_of(prefix: bytes, raw: bytes, tagged: bool = False) -> bytes:
    """The documented key of an id's bytes: ``prefix:`` then the bytes, the delimiter, glob
    characters, braces, ``%``, newline, \\x1e and \\x1f percent-escaped (docs/models.md);
    ``prefix:{...}`` with ``hash_tag=True``."""
    part = b"".join(b"%%%02X" % c if c in _ESCAPED else bytes([c]) for c in raw)
    return prefix + b":" + (b"{" + part + b"}" if tagged else part)


def id_of(model: type, raw: bytes) -> Any:
    """The id standing for ``raw``: the bytes, or their str form (os.fsdecode's convention)."""
    return raw if spec_type(model) is bytes else raw.decode("utf-8", "surrogateescape")


def spec_type(model: type) -> type:
    return next(f.type for f in attrs.fields(model) if f.name == "id")  # type: ignore[misc]


def stored(model: type, raw: bytes) -> bytes:
    """A key that exists while the object does (the flat layout: its leaf ``color``)."""
    if model in (StrFlat, BytesFlat):
        return key_of(PREFIX[model], raw, tagged=True) + b":color"
    return key_of(PREFIX[model], raw)


def _clear(store: Any, model: type) -> None:
    for obj in list(store.scan(model)):
        store.delete(model, obj.id)


# F1, F5: save -> get -> scan -> (update, incr) -> delete of any id bytes, through every
# shell (sync, asyncio, cluster, asyncio cluster), hash and flat layouts; the key holds the
# id's own bytes. Half the examples plant the key as another program would (no escapable
# byte in the id: the key is then exactly prefix:bytes; hash layout) and read it through
# the model.
@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
@settings(max_examples=scaled(20, floor=5))
@example(raw=b"\x80", plant=True, many=False)
@example(raw=b"\xed\xa0\x80", plant=False, many=True)
@example(raw=b"", plant=False, many=False)
@given(raw=ID_BYTES, plant=st.booleans(), many=st.booleans())
def test_any_id_bytes_round_trip_through_every_shell(
        any_store: Any, model: type, raw: bytes, plant: bool, many: bool) -> None:
    store, client = any_store, any_store.client
    _clear(store, model)
    ident = id_of(model, raw)
    key = stored(model, raw)
    obj = model(id=ident, color="c", n=3)
    if not raw:
        before = dbsize(client)
        with pytest.raises(redmodel.ValidationError):
            store.save_many([obj]) if many else store.save(obj)
        assert dbsize(client) == before               # refused before any write
        return
    if plant and model in (StrHash, BytesHash) and not any(c in _ESCAPED for c in raw):
        client.hset(key, mapping={b"color": b"c", b"n": b"3"})  # another program's key
    elif many:
        store.save_many([obj])
    else:
        store.save(obj)
    assert client.exists(key) == 1                       # the key is the id's very bytes
    assert store.get(model, ident) == obj
    assert store.get_many(model, [ident, ident]) == [obj, obj]
    assert [o.id for o in store.scan(model)] == [ident]
    assert store.count(model) == 1
    assert store.incr(model, ident, "n", 2) == 5
    if model in (StrHash, BytesHash):
        store.update(model, ident, color="u")
        assert client.hget(key, b"color") == b"u"
    assert store.delete(model, ident) is True
    assert client.exists(key) == 0
    assert store.get(model, ident) is None


# F1, F3: indexed models (one server: an indexed model on a cluster needs buckets): the
# index entries hold the id's bytes; equality queries, get_by (a unique entry read back and
# sent again), verify and delete agree with the object's key.
@pytest.mark.parametrize("any_store", ["sync", "async"], indirect=True)
@pytest.mark.parametrize("model", [StrIndexed, BytesIndexed], ids=["str", "bytes"])
@settings(max_examples=scaled(20, floor=5))
@example(raw=b"\x80")
@example(raw=b"a\xff:{x}%zz")
@given(raw=ID_BYTES.filter(bool))
def test_any_id_bytes_round_trip_through_the_indexes(
        any_store: Any, model: type, raw: bytes) -> None:
    store, client = any_store, any_store.client
    _clear(store, model)
    ident = id_of(model, raw)
    obj = model(id=ident, color="red", code="k1")
    store.save(obj)
    assert client.exists(key_of(PREFIX[model], raw)) == 1
    assert store.get(model, ident) == obj
    assert store.find(model, color="red").all() == [obj]
    assert store.find(model, color="red").count() == 1
    assert store.get_by(model, code="k1") == obj
    assert [o.id for o in store.scan(model)] == [ident]
    assert store.verify(model) == []
    assert store.delete(model, ident) is True
    assert store.find(model, color="red").all() == []
    assert store.get_by(model, code="k1") is None
    assert store.verify(model) == []


@redmodel.model(prefix="fx24k", buckets=3)
@attrs.define
class Bucketed:
    color: str = redmodel.field(index=True, default="c")
    price: float = redmodel.field(index="range", default=1.0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx24kb", buckets=3)
@attrs.define
class BucketedBytes:
    color: str = redmodel.field(index=True, default="c")
    price: float = redmodel.field(index="range", default=1.0)
    id: bytes = redmodel.key_field(generated=False)


# Query ids and bucketed models: Query._ids and bucket_of encode an id's text with
# surrogateescape, as every other path does.
@pytest.mark.parametrize("model", [StrIndexed, BytesIndexed, Bucketed, BucketedBytes],
                         ids=["str", "bytes", "bucketed", "bucketed-bytes"])
def test_query_ids_and_buckets_take_any_id_bytes(store: redmodel.Store, model: type) -> None:
    _clear(store, model)
    raws = [b"\x80", b"a\xff:{x}%zz", b"\xed\xa0\x80", b"plain"]
    objs = [model(id=id_of(model, raw), color="red") for raw in raws]
    store.save_many(objs)
    want = sorted(o.id for o in objs)
    assert sorted(store.find(model, color="red").ids()) == want
    assert sorted(store.find(model).ids()) == want
    if model in (Bucketed, BucketedBytes):
        assert sorted(store.find(model).order_by("price").ids()) == want
        assert sorted(o.id for o in store.scan(model)) == want and store.verify(model) == []
    assert store.delete_many(model, [o.id for o in objs]) == len(objs)


# the str ids no bytes stand for: any lone surrogate but U+DC80..U+DCFF
OTHER_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF).filter(
    lambda c: not 0xDC80 <= ord(c) <= 0xDCFF)


@pytest.mark.parametrize("model", [StrHash, StrFlat, StrIndexed],
                         ids=["hash", "flat", "indexed"])
@settings(max_examples=scaled(20, floor=5))
@example(text="\ud800")
@example(text="a\udc7fb")
@given(text=st.tuples(st.text(max_size=2), OTHER_SURROGATES, st.text(max_size=2)).map(
    "".join))
def test_a_str_id_no_bytes_stand_for_is_refused_before_anything_is_sent(
        store: redmodel.Store, redis_client: redis.Redis, model: type, text: str) -> None:
    before = redis_client.dbsize()
    calls = [lambda: store.save(model(id=text)), lambda: store.get(model, text),
             lambda: store.delete(model, text), lambda: store.get_many(model, ["a", text]),
             lambda: store.save_many([model(id="a"), model(id=text)])]
    if model is not StrIndexed:
        calls.append(lambda: store.incr(model, text, "n", 1))
    for call in calls:
        with pytest.raises(redmodel.ValidationError, match=re.escape("U+DC80..U+DCFF")):
            call()
    assert redis_client.dbsize() == before


# the CLI's export writes such an id as a \udcXX escape (its output is UTF-8) and its import
# reads it back as the same key
def test_export_then_import_keeps_ids_that_are_not_utf8(
        redis_url: str, store: redmodel.Store, redis_client: redis.Redis, tmp_path: Any) -> None:
    objs = [StrHash(id="\udc80x:", n=1), StrHash(id="plain", n=2), BytesHash(id=b"\xff\x00"),
            StrFlat(id="\udcff", color="f"), BytesFlat(id=b"\xed\xa0\x80")]
    store.save_many(objs)
    # the objects' keys (Redis globs negate with ^: [!%] would match '!' and '%', the
    # registry records, whose version is new at each write)
    before = {k: redis_client.dump(k) for k in redis_client.keys("fx24[sb][hf]:[^%]*")}
    assert len(before) >= len(objs)
    path = tmp_path / "dump.jsonl"
    for args in (["export", "-m", "tests.test_fix24a", "-o", str(path)],
                 ["import", "-m", "tests.test_fix24a", "-i", str(path)]):
        done = redmodel_cli(*args, url=redis_url, keys=None)
        assert done.returncode == 0, done.stderr[-2000:]
        if args[0] == "export":
            path.read_bytes().decode("utf-8")           # UTF-8 text, whatever the ids
            redis_client.delete(*before)
    assert {k: redis_client.dump(k) for k in redis_client.keys("fx24[sb][hf]:[^%]*")} == before
    assert [store.get(type(o), o.id) for o in objs] == objs


# from_env: a user name or password whose bytes are not UTF-8 (os.environ holds them as
# U+DC80..U+DCFF, os.fsdecode's convention) is sent as those bytes
def test_from_env_sends_credentials_as_their_environment_bytes(
        redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_client.execute_command("ACL", "SETUSER", b"fx24\xffu", "on", b">p\x80w\xed\xa0\x80",
                                 "~fx24*", "+@all")
    try:
        monkeypatch.setenv("REDIS_URL", redis_url)
        monkeypatch.setenv("REDIS_USERNAME", "fx24\udcffu")
        monkeypatch.setenv("REDIS_PASSWORD", "p\udc80w\udced\udca0\udc80")
        store = redmodel.Store.from_env(registry=False)
        try:
            store.save(StrHash(id="\udc80", n=7))
            assert store.get(StrHash, "\udc80") == StrHash(id="\udc80", n=7)
            assert store.delete(StrHash, "\udc80")
        finally:
            store.close()
        monkeypatch.setenv("REDIS_PASSWORD", "p\udc80w")             # a wrong password
        wrong = redmodel.Store.from_env(registry=False)
        try:
            with pytest.raises(redis.AuthenticationError):
                wrong.get(StrHash, "a")
        finally:
            wrong.close()
    finally:
        redis_client.execute_command("ACL", "DELUSER", b"fx24\xffu")
