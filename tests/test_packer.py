"""Properties of save_many's fused pass over a plain hash model (issue 17): the model's
generated packer (redmodel._models._compiled.hash_packer) checks, keys, encodes and packs
each object at once, and a list's first chunk is made by its check. What it must keep:

- it answers only for objects the validator accepts, and then exactly the key, the HSET
  and the RESP bytes the one-at-a-time path builds and the client would pack;
- a list holding one bad object anywhere sends nothing (validated whole first);
- what save_many stores is, byte for byte, what one-at-a-time saves store, for a list or
  a generator, chunked any way, on a plain and an exactly-once store (whose write ids
  wrap the commands: the packed bytes must not be sent then).

Drawn over fields of every kind (inline scalars and bound encoders, nested, enum, bytes,
collections: tests.models.Everything with its Optional ones set, and more), ids that need
escaping or hold undecodable bytes, an int id, and an alphanumeric delimiter that escapes
field names into ``%`` text."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer

import redmodel
from redmodel._layouts._hash import HashLayout
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from redmodel._plan import SCRIPTS_BY_SHA, Batch, Plan
from redmodel._plans._objects import _packer
from redmodel._transport._wire import Exchange, Link, ResendPolicy
from tests.budget import scaled
from tests.models import Address, Everything, Point, Street, Style
from tests.strategies import instances
from tests.test_compiled import same

_PY_PACK = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode).pack
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # the store packs with redis-py's packer then
    _hiredis_pack = None


def packed(command: tuple[Any, ...]) -> bytes:
    """What a UTF-8 client packs ``command`` into (redis-py's packer; hiredis's agrees)."""
    out = b"".join(_PY_PACK(*command))
    assert _hiredis_pack is None or _hiredis_pack(command) == out
    return out


@attrs.define
class Spot:
    x: int
    y: float


@redmodel.model(prefix="pk_dense")
@attrs.define
class Dense:
    """Every field required: a whole save is HSET alone."""

    id: str = redmodel.key_field(generated=False)
    text: str
    number: int
    real: float
    flag: bool
    blob: bytes
    when: dt.datetime
    money: decimal.Decimal
    style: Style
    spot: Spot
    tags: list[str]


@redmodel.model(prefix="pk_d", delimiter="x")
@attrs.define
class XDelim:
    """An alphanumeric delimiter: an id holding it is escaped, so is the field name."""

    xcount: int
    name: str
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="pk_int")
@attrs.define
class ByInt:
    name: str
    id: int = redmodel.key_field(generated=False)


IDS = st.one_of(st.sampled_from(["a", "b", "1", "x", "a:b", "x%y", "é", "\udc80", "{t}"]),
                st.text(alphabet="abx1:%", min_size=1, max_size=3))
EVERYTHING = instances(Everything, sku=IDS, maybe_text=st.text(), maybe_number=st.integers(),
                       maybe_point=st.builds(Point, st.floats(), st.floats()))
OBJECTS = st.one_of(instances(Dense, id=IDS), instances(XDelim, id=IDS),
                    instances(ByInt, id=st.integers(-(2**70), 2**70)), EVERYTHING)
# (field, value) a validator refuses, for each model
BAD = {
    Dense: [("number", "1"), ("text", 5), ("real", "1.5"), ("spot", None), ("id", ""),
            ("id", "\ud800"), ("style", "fitted"), ("tags", "ab"), ("blob", "x")],
    XDelim: [("xcount", 1.5), ("name", None), ("id", 3), ("id", "")],
    ByInt: [("name", b"x"), ("id", "1"), ("id", True)],
    Everything: [("number", 1.5), ("real", "x"), ("when", dt.date(2000, 1, 1)),
                 ("size", 7), ("maybe_text", "\ud800"), ("sku", "")],
}


def layout(model: type) -> HashLayout:
    found = layout_of(spec_of(model))
    assert isinstance(found, HashLayout)
    return found


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except redmodel.ValidationError as e:
        return ("error", str(e))


@settings(max_examples=scaled(60))
@given(obj=OBJECTS, data=st.data())
def test_the_packer_answers_what_the_one_at_a_time_path_sends(obj: Any, data: Any) -> None:
    model = type(obj)
    if data.draw(st.booleans()):  # sometimes a bad value
        name, value = data.draw(st.sampled_from(BAD[model]))
        object.__setattr__(obj, name, value)
    spec = spec_of(model)
    packer = _packer(spec)
    assert packer is not None
    made = packer(obj)
    checked = outcome(spec.check, obj)
    keyed = outcome(spec.key_for, getattr(obj, spec.key.name))
    if made is None:  # the general path decides (and refuses a bad object)
        return
    assert checked == ("ok", None) and keyed[0] == "ok"
    key, command, resp = made
    assert key == keyed[1]
    assert command == layout(model).save_plain(key, obj, None)
    assert resp == packed(command)


def test_the_packer_takes_the_common_objects() -> None:
    """Not vacuous: an ASCII id and plain values take the packer."""
    spot = Spot(1, 2.5)
    objs = [Dense(id="h1", text="t", number=-3, real=0.1, flag=True, blob=b"\x00",
                  when=dt.datetime(2020, 1, 1), money=decimal.Decimal("1.5"),
                  style=Style.FITTED, spot=spot, tags=["a"]),
            XDelim(xcount=1, name="n", id="axb"), ByInt(name="n", id=-7),
            Everything(sku="e1", maybe_text="m", maybe_number=1, maybe_point=Point(1.0, 2.0),
                       address=Address(Street("l1", "l2"), "c", "s", 1))]
    for obj in objs:
        packer = _packer(spec_of(type(obj)))
        assert packer is not None and packer(obj) is not None


def _bad_list(data: Any) -> tuple[list[Any], Any]:
    model = data.draw(st.sampled_from([Dense, XDelim, ByInt, Everything]))
    ids = st.integers(0, 10**6) if model is ByInt else st.text("ab1", min_size=1, max_size=4)
    name = spec_of(model).key.name
    objs = data.draw(st.lists(instances(model, **{name: ids}), min_size=1, max_size=7))
    at = data.draw(st.integers(0, len(objs) - 1))
    name, value = data.draw(st.sampled_from(BAD[model]))
    object.__setattr__(objs[at], name, value)
    return objs, model


@settings(max_examples=scaled(25))
@given(data=st.data(), chunk=st.integers(1, 4))
def test_a_bad_object_anywhere_in_a_list_sends_nothing(store: redmodel.Store,
                                                       redis_client: redis.Redis,
                                                       data: Any, chunk: int) -> None:
    redis_client.flushdb()
    objs, _ = _bad_list(data)
    with pytest.raises(redmodel.ValidationError):
        store.save_many(objs, chunk_size=chunk)
    assert redis_client.dbsize() == 0


def _stored(client: redis.Redis, keys: list[str]) -> list[dict[bytes, bytes]]:
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.hgetall(k.encode("utf-8", "surrogateescape"))
    return pipe.execute()


def _saved(store: redmodel.Store, objs: list[Any], form: str, chunk: int) -> None:
    given_objs: Any = objs if form == "list" else (o for o in objs)
    assert store.save_many(given_objs, chunk_size=chunk) == len(objs)


@pytest.fixture
def stores(redis_client: redis.Redis) -> Iterator[dict[bool, redmodel.Store]]:
    made = {False: redmodel.Store(redis_client),
            True: redmodel.Store(redis_client, exactly_once=True)}
    yield made


@settings(max_examples=scaled(25))
@given(objs=st.lists(OBJECTS, min_size=1, max_size=8), chunk=st.integers(1, 5),
       form=st.sampled_from(["list", "generator"]), once=st.booleans())
def test_save_many_stores_the_bytes_of_one_at_a_time_saves(
        stores: dict[bool, redmodel.Store], redis_client: redis.Redis, objs: list[Any],
        chunk: int, form: str, once: bool) -> None:
    store = stores[once]
    redis_client.flushdb()
    keys = [spec_of(type(o)).key_for(getattr(o, spec_of(type(o)).key.name)) for o in objs]
    _saved(store, objs, form, chunk)
    bulk = _stored(redis_client, keys)
    redis_client.flushdb()
    for obj in objs:
        store.save(obj)
    assert bulk == _stored(redis_client, keys)
    for obj, key in zip(objs, keys, strict=True):  # and a read gives the last one saved
        model = type(obj)
        last = [o for o, k in zip(objs, keys, strict=True) if k == key][-1]
        assert same(store.get(model, getattr(obj, spec_of(model).key.name)), last)


def _sent(batch: Batch) -> Plan[list[Any]]:
    replies = yield batch
    return replies


def test_packed_bytes_go_out_only_for_the_batch_own_commands(redis_client: redis.Redis
                                                             ) -> None:
    """Batch.packed (what the packer made) is sent as it is when a round sends the batch's
    commands unchanged, and never when the exchange rewrites them (an exactly-once store
    wraps a write that may not be sent twice under a write id). Decoy bytes that set other
    keys show which of the two went out."""
    commands = [("SET", "pk:a", "1"), ("SET", "pk:b", "2")]
    decoy = [packed(("SET", "pk:decoy-a", "1")), packed(("SET", "pk:decoy-b", "2"))]
    redmodel.Store(redis_client).run(_sent(Batch(commands, write=True, idempotent=True,
                                                 packed=decoy)))
    assert redis_client.exists("pk:decoy-a", "pk:decoy-b") == 2
    assert not redis_client.exists("pk:a", "pk:b")
    redis_client.flushdb()
    once = redmodel.Store(redis_client, exactly_once=True)
    once.run(_sent(Batch(commands, write=True, packed=decoy)))  # never resent: wrapped
    assert redis_client.exists("pk:a", "pk:b") == 2
    assert not redis_client.exists("pk:decoy-a", "pk:decoy-b")


def test_a_round_of_rewritten_commands_packs_them_again() -> None:
    """The exchange's own rule, where no store round reaches it alone (a wrapped write
    goes out after its script's load or its records' tidying): a round sending the
    batch's commands under write ids, with nothing before them, has no packed bytes; one
    sending them unchanged has them (a part of them: those of its commands)."""
    batch = Batch([("SET", "pk:a", "1"), ("SET", "pk:b", "2")], write=True,
                  packed=[b"decoy-a", b"decoy-b"])
    link = Link(policy=ResendPolicy(), exactly_once=True, cluster=False)
    link.loaded[None] = set(SCRIPTS_BY_SHA)  # every script loaded: nothing goes first
    wrapped = Exchange(batch, link)
    assert wrapped.wire is not batch.commands
    call = wrapped._call(None, [0, 1])
    assert call.wire == wrapped.wire and call.packed is None
    plain = Exchange(batch, Link(policy=ResendPolicy(), exactly_once=False, cluster=False))
    assert plain._call(None, [0, 1]).packed == [b"decoy-a", b"decoy-b"]
    assert plain._call(None, [1]).packed == [b"decoy-b"]
