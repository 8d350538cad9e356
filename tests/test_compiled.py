"""Property: a model's generated code (redmodel._models._compiled) answers exactly what the
generic walks answer: the validator refuses the same objects with the same error, the
encoder gives the same HSET/HDEL arguments (the bytes Redis stores, read back raw), the
decoder builds the same object or leaves the same error. Drawn over every field type the
hash layout stores, valid values and the ones refused today (NaN, +-inf, -0.0, ints beyond
2**53 and 2**63, surrogates, huge and empty text, None where it is not allowed), nested,
encrypted and codec fields, and corrupted stored hashes."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._errors import RedmodelError
from redmodel._layouts._hash import HashLayout
from redmodel._layouts._pick import layout_of
from redmodel._models._compiled import field_encoder
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.models import Everything, Point
from tests.strategies import ids, instances, values

KEY = Fernet.generate_key()


@attrs.define
class Card:
    number: int
    holder: str


@redmodel.model(prefix="cg_secret")
@attrs.define
class Secretive:
    """Encrypted, codec'd, optional nested and defaulted fields beside plain ones."""

    card: Card = redmodel.field(codec="json|fernet")
    note: str | None = redmodel.field(codec="json|fernet", default=None)
    packed: dict[str, int] = redmodel.field(codec="msgpack", factory=dict)
    where: Point | None = None
    at: dt.datetime | None = None
    ratio: float = 0.0
    big: int = 0
    id: str = redmodel.key_field(generated=False)


@pytest.fixture(autouse=True)
def fernet_key() -> Iterator[None]:
    redmodel.codecs.configure_fernet(keys=[KEY])
    yield


NASTY = st.sampled_from([
    float("nan"), float("inf"), float("-inf"), -0.0, 2**53 + 1, 2**63, -(2**63) - 1, 2**64,
    "\ud800", "", "x" * 20_000, None, b"", True, 1.5, decimal.Decimal("NaN"),
    dt.datetime(2020, 1, 1, 0, 0, 0, 1), dt.datetime(2020, 1, 1, 0, 0, 0, 2),
])


def maybe_bad(cls: type, **fixed: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An instance whose fields are each a valid value or, sometimes, a nasty one."""
    attrs.resolve_types(cls)
    kwargs = {
        f.alias or f.name: fixed[f.name] if f.name in fixed
        else st.one_of(values(f.type), values(f.type), NASTY)
        for f in attrs.fields(cls) if f.init
    }
    return st.builds(cls, **kwargs)


SECRETIVE = instances(Secretive, id=ids, card=st.builds(Card, st.integers(), st.text()),
                      note=st.one_of(st.none(), st.text()),
                      packed=st.dictionaries(st.text(max_size=3),
                                             st.integers(-(2**63), 2**64 - 1), max_size=3))


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except (RedmodelError, ValueError, TypeError, AttributeError) as e:
        return ("error", type(e), str(e))


def same(a: Any, b: Any) -> bool:
    """``a == b``, but a NaN equals a NaN (a stored ``nan`` decodes to one on both paths,
    and NaN != NaN made equal decodes look different), looking into attrs instances,
    tuples, lists and dicts."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if type(a) is not type(b):
        return False
    if attrs.has(type(a)):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def layout(model: type) -> HashLayout:
    found = layout_of(spec_of(model))
    assert isinstance(found, HashLayout)
    return found


def plain_pairs(model: type, pairs: list[bytes]) -> dict[bytes, Any]:
    """The stored fields, an encrypted one as the value it decrypts to (its ciphertext
    differs at every write)."""
    spec = spec_of(model)
    out: dict[bytes, Any] = {}
    for name, value in zip(pairs[::2], pairs[1::2], strict=True):
        f = spec.by_name.get(name.decode())
        if f is not None and f.codec is not None and f.codec.encrypts:
            assert f.decode is not None
            out[name] = ("decrypted", f.decode(value))
        else:
            out[name] = value
    return out


@settings(max_examples=scaled(40))
@given(obj=st.one_of(maybe_bad(Everything, sku=ids), maybe_bad(Secretive, id=ids),
                     instances(Everything, sku=ids), SECRETIVE))
def test_generated_validator_and_encoder_answer_as_the_generic_walks(obj: Any) -> None:
    model = type(obj)
    spec = spec_of(model)
    checked = outcome(spec.check, obj)
    assert checked == outcome(spec.check_generic, obj)
    if checked[0] != "ok":
        return
    lay = layout(model)
    fast, generic = lay.encode(obj), lay.encode_generic(obj)
    assert [p for p in fast[0][::2]] == [p for p in generic[0][::2]]  # order too
    assert plain_pairs(model, fast[0]) == plain_pairs(model, generic[0])
    assert fast[1] == generic[1]
    for name, value in zip(fast[0][::2], fast[0][1::2], strict=True):
        f = spec.by_name.get(name.decode())
        if f is not None and f.codec is not None and f.codec.encrypts:
            assert b"number" not in value and b"holder" not in value  # never plaintext
    for f in spec.fields:  # one field's encoder (update) gives that field's part
        one: list[bytes] = []
        nones: list[bytes] = []
        field_encoder(spec, f)(getattr(obj, f.name), one, nones)
        mine = [n for n in generic[0][::2] if n.split(b":")[0] == f.stored.encode()]
        assert one[::2] == mine
        assert nones == [n for n in generic[1] if n.split(b":")[0] == f.stored.encode()]


CORRUPT = st.sampled_from([b"", b"\xff\xfe", b"nan", b"1e400", b"-0", b"2", b"x" * 1000,
                           b"\xa7\x04json[", b"9" * 40, b"1.5", b"012", b"00", b"0", b"1.",
                           b".5", b"9" * 400, b"1_0", b" 1", b"+1", b"-0.0", b"0.0"])


@settings(max_examples=scaled(40))
@given(obj=st.one_of(instances(Everything, sku=ids), SECRETIVE), data=st.data())
def test_generated_decoder_answers_as_the_generic_decode(obj: Any, data: Any) -> None:
    model = type(obj)
    lay = layout(model)
    pairs, _ = lay.encode_generic(obj)
    stored = dict(zip(pairs[::2], pairs[1::2], strict=True))
    names = sorted(stored)
    # corrupt some stored values, drop some fields, add an unknown one
    for name in data.draw(st.lists(st.sampled_from(names), max_size=3)) if names else []:
        if data.draw(st.booleans()):
            stored[name] = data.draw(CORRUPT)
        else:
            stored.pop(name, None)
    if data.draw(st.booleans()):
        stored[b"gone_field"] = b"1"
    id_text = spec_of(model).id_text(getattr(obj, spec_of(model).key.name))
    if not stored:
        return
    assert same(outcome(lay.decode, "k", id_text, dict(stored)),
                outcome(lay.decode_generic, "k", id_text, dict(stored)))


@settings(max_examples=scaled(40))
@given(obj=st.one_of(instances(Everything, sku=ids), SECRETIVE))
def test_stored_bytes_are_the_generic_encoding(store: redmodel.Store,
                                               redis_client: redis.Redis,
                                               obj: Any) -> None:
    """What a save leaves in Redis, read with raw redis-py, is the generic encoding (an
    encrypted value: the same plaintext), and a get of it is the object."""
    model = type(obj)
    key = store.save(obj)
    stored = redis_client.hgetall(key)
    lay = layout(model)
    pairs, _ = lay.encode_generic(obj)
    expect = plain_pairs(model, pairs) or {b"\x00": b""}
    got = plain_pairs(model, [x for kv in stored.items() for x in kv])
    assert got == expect
    assert store.get(model, getattr(obj, spec_of(model).key.name)) == obj


@redmodel.model(prefix="cg_int")
@attrs.define
class ByInt:
    name: str = ""
    id: int = redmodel.key_field(generated=False)


@settings(max_examples=scaled(60))
@given(model=st.sampled_from([Everything, Secretive, ByInt]),
       id_value=st.one_of(ids, st.text(), st.integers(), st.integers(-(2**70), 2**70),
                          st.sampled_from(["", "\ud800", "é:{x}*%", True, None, 1.5, b"x"])))
def test_generated_keys_are_the_generic_keys(model: type, id_value: Any) -> None:
    spec = spec_of(model)
    assert outcome(spec.key_text, id_value) == outcome(spec.key_text_generic, id_value)


@settings(max_examples=scaled(30))
@given(obj=instances(Everything, sku=ids), data=st.data())
def test_an_unvalidated_none_is_encoded_as_the_generic_walk(obj: Any, data: Any) -> None:
    """encode of an object holding None where its model allows none (never validated):
    the generated encoder hands it to the generic walk, which lists it among the Nones."""
    lay = layout(Everything)
    names = [f.name for f in spec_of(Everything).fields if not f.optional]
    for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
        setattr(obj, name, None)
    assert outcome(lay.encode, obj) == outcome(lay.encode_generic, obj)


@redmodel.model(prefix="cg_nums")
@attrs.define
class Nums:
    count: int
    ratio: float
    id: str = redmodel.key_field(generated=False)


NUMBER_TEXT = st.one_of(
    CORRUPT,
    st.integers(-(2**70), 2**70).map(lambda i: str(i).encode()),
    st.floats().map(lambda f: repr(f).encode()),
    st.from_regex(rb"\A[-+ 0_]{0,2}[0-9]{1,4}(\.[0-9]{0,3})?([eE][-+]?[0-9]{1,3})?[ _]?\Z"),
    st.tuples(st.integers(300, 320), st.sampled_from([b"", b".", b".5"])).map(
        lambda t: b"9" * t[0] + t[1]),  # digits only, beyond a float's range
)


@settings(max_examples=scaled(100))
@given(count=NUMBER_TEXT, ratio=NUMBER_TEXT)
def test_generated_number_decode_is_the_strict_decoders(count: bytes, ratio: bytes) -> None:
    """The generated decoder reads a required int or float inline (quick digits-only test
    first): it accepts exactly the texts _dec_int / _dec_float accept, as the same value."""
    lay = layout(Nums)
    stored = {b"count": count, b"ratio": ratio}
    assert same(outcome(lay.decode, "k", "i", dict(stored)),
                outcome(lay.decode_generic, "k", "i", dict(stored)))
