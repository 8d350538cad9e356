"""What the flat layout does with what it did not write, and with enums (docs/layouts.md).

- an object key of another type: save, save_many, get, get_many, delete, expire and
  persist raise a ServerError naming that key and its type (never Redis' script error
  text), and write nothing (session 23, F11);
- a leaf key missing or of another type: get names that leaf key and its field (F4);
- IntEnum and str-valued enum fields (top level, nested, optional, list items, dict keys
  and values) come back as enum members of their own type, through the generated reader
  of a fixed-shape model and the general one, get, get_many and scan alike (F10);
- rotate_keys of an object whose manifest is corrupt raises DecodeError naming the key
  and rewrites nothing; it never reports 0 and leaves the old token (F8).
The corrupt-manifest property (F2) is tests/test_attack23c.py's.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled

cryptography = pytest.importorskip("cryptography")

_NODE_SETTINGS = settings(max_examples=scaled(25), deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])


class Big(enum.IntEnum):
    """Values past 2**53, 2**63 and 2**64, negative and zero."""
    NEG = -(2**70)
    ZERO = 0
    ONE = 1
    HUGE = 2**64 + 1


class Tone(str, enum.Enum):
    """Values with the delimiter, braces, glob and escape characters, empty, NUL, newline."""
    EMPTY = ""
    ODD = ": { } * % \\"
    LINES = "a\nb"
    NUL = "\x00"
    WARM = "warm"


class Plain(enum.Enum):
    A = "a"
    B = 2


@attrs.define
class Inner:
    big: Big = Big.ZERO
    tone: Tone | None = None


@redmodel.model(prefix="c1fe", layout="flat")
@attrs.define
class FlatEnums:
    """General shape (lists, dicts): the general reader."""
    big: Big = Big.ZERO
    tone: Tone = Tone.WARM
    plain: Plain = Plain.A
    maybe: Big | None = None
    inner: Inner = attrs.Factory(Inner)
    bigs: list[Big] = attrs.Factory(list)
    by_tone: dict[Tone, Big | None] = attrs.Factory(dict)
    by_big: dict[Big, list[Tone]] = attrs.Factory(dict)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="c1fx", layout="flat")
@attrs.define
class FixedEnums:
    """Fixed shape (no list, dict or set): the generated reader."""
    big: Big = Big.ZERO
    tone: Tone = Tone.WARM
    plain: Plain = Plain.A
    maybe: Big | None = None
    inner: Inner | None = None
    id: str = redmodel.key_field(generated=False)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down (an IntEnum is == its int)."""
    if type(a) is not type(b):
        return False
    if attrs.has(type(a)):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(ka, kb) and _same(a[ka], b[kb])
                                          for ka, kb in zip(a, b, strict=True))
    return bool(a == b)


_BIG, _TONE, _PLAIN = st.sampled_from(Big), st.sampled_from(Tone), st.sampled_from(Plain)
_INNER = st.builds(Inner, _BIG, st.none() | _TONE)


@_NODE_SETTINGS
@given(general=st.builds(
    FlatEnums, _BIG, _TONE, _PLAIN, st.none() | _BIG, _INNER, st.lists(_BIG, max_size=4),
    st.dictionaries(_TONE, st.none() | _BIG, max_size=3),
    st.dictionaries(_BIG, st.lists(_TONE, max_size=2), max_size=3), id=st.just("g")),
    fixed=st.builds(FixedEnums, _BIG, _TONE, _PLAIN, st.none() | _BIG, st.none() | _INNER,
                    id=st.just("f")))
def test_flat_enums_come_back_as_their_enum(store: redmodel.Store, general: FlatEnums,
                                            fixed: FixedEnums) -> None:
    for obj in (general, fixed):
        cls = type(obj)
        store.save(obj)
        store.save_many([obj])
        for back in (store.get(cls, obj.id), *store.get_many(cls, [obj.id]),
                     *store.scan(cls)):
            assert _same(back, obj), (back, obj)


# ---- a leaf key missing or of another type: named, with its field -----------------------


@attrs.define
class Sub:
    x: int = 0
    y: str = ""


@redmodel.model(prefix="c1fl", layout="flat")
@attrs.define
class Leafy:
    n: int = 0
    sub: Sub | None = attrs.Factory(Sub)
    xs: list[int] = attrs.Factory(list)
    d: dict[str, Sub] = attrs.Factory(dict)
    enc: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


_PLANTS = st.sampled_from(["missing", "hash", "list", "set", "zset"])


def _plant(client: Any, key: str, kind: str) -> None:
    client.delete(key)
    if kind == "hash":
        client.hset(key, "planted", "1")
    elif kind == "list":
        client.rpush(key, "1")
    elif kind == "set":
        client.sadd(key, "1")
    elif kind == "zset":
        client.zadd(key, {"1": 1})


@pytest.fixture
def fernet() -> None:
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key()])


@_NODE_SETTINGS
@given(obj=st.builds(Leafy, st.integers(-(2**70), 2**70), st.none() | st.builds(Sub),
                     st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.sampled_from(["", ":", "{a}", "*%\\"]),
                                     st.builds(Sub), max_size=2),
                     st.text(max_size=5).filter(lambda s: s.encode("utf-8", "replace")),
                     id=st.just("l")),
       pick=st.integers(0, 10**6), kind=_PLANTS)
def test_a_lost_leaf_is_named_with_its_field(store: redmodel.Store, fernet: None, obj: Leafy,
                                             pick: int, kind: str) -> None:
    client = store.client
    store.save(obj)
    lines = [line for line in client.get("c1fl:l").decode().split("\n")[1:] if line]
    leaf = "c1fl:l:" + lines[pick % len(lines)]
    _plant(client, leaf, kind)
    for call in (lambda: store.get(Leafy, "l"), lambda: store.get_many(Leafy, ["l"]),
                 lambda: list(store.scan(Leafy))):
        with pytest.raises(redmodel.DecodeError) as e:
            call()
        assert e.value.key == "c1fl:l"
        assert e.value.field, str(e.value)
        assert f"leaf key {leaf} is missing" in str(e.value)
    client.delete("c1fl:l")


# ---- an object key of another type -----------------------------------------------------


@_NODE_SETTINGS
@given(kind=_PLANTS.filter(lambda k: k != "missing"),
       call=st.sampled_from(["save", "save_many", "get", "get_many", "delete",
                             "delete_many", "expire", "persist"]))
def test_a_wrong_typed_object_key_is_named_and_nothing_is_written(
        store: redmodel.Store, fernet: None, kind: str, call: str) -> None:
    client = store.client
    old = Leafy(1, Sub(2, "b"), [3, 4], {"k": Sub()}, "secret", id="w")
    store.save(old)
    leaves = {k: client.get(k) for k in client.keys("c1fl:w:*")}
    _plant(client, "c1fl:w", kind)
    new = Leafy(9, None, [], {}, "other", id="w")
    calls = {"save": lambda: store.save(new, ttl=100), "save_many": lambda: store.save_many([new]),
             "get": lambda: store.get(Leafy, "w"),
             "get_many": lambda: store.get_many(Leafy, ["w"]),
             "delete": lambda: store.delete(Leafy, "w"),
             "delete_many": lambda: store.delete_many(Leafy, ["w"]),
             "expire": lambda: store.expire(Leafy, "w", 100),
             "persist": lambda: store.persist(Leafy, "w")}
    with pytest.raises(redmodel.ServerError) as e:
        calls[call]()
    message = str(e.value)
    assert f"WRONGTYPE c1fl:w holds a {kind}, not a string" in message, message
    assert "user_script" not in message and "script:" not in message, message
    assert "c1fl:w" in e.value.keys
    assert client.type("c1fl:w").decode() == kind
    assert {k: client.get(k) for k in client.keys("c1fl:w:*")} == leaves
    assert all(client.pttl(k) == -1 for k in leaves)
    client.delete("c1fl:w", *leaves)


# ---- rotate_keys and a corrupt manifest ------------------------------------------------


@pytest.mark.parametrize("manifest", [b"1", b"[]", b'{"n":1}', b'["l",5]', b"{}\nn\nenc",
                                      b'{"n":1,"enc":1}\nn', b"not json"])
def test_rotate_keys_raises_on_a_corrupt_manifest(store: redmodel.Store,
                                                  manifest: bytes) -> None:
    old = redmodel.codecs.FernetTransform.generate_key()
    redmodel.codecs.configure_fernet(keys=[old])
    store.save(Leafy(1, enc="secret", id="r"))
    token = store.client.get("c1fl:r:enc")
    store.client.set("c1fl:r", manifest)
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key(), old])
    with pytest.raises(redmodel.DecodeError) as e:
        store.rotate_keys(Leafy)
    assert e.value.key == "c1fl:r"
    assert "manifest is corrupt" in str(e.value)
    assert store.client.get("c1fl:r:enc") == token


def test_rotate_keys_rewrites_what_is_left_of_an_object_missing_a_leaf(
        store: redmodel.Store) -> None:
    """A missing leaf is not a corrupt manifest: the object's other tokens are rotated
    (its get still raises DecodeError naming the missing leaf)."""
    old = redmodel.codecs.FernetTransform.generate_key()
    redmodel.codecs.configure_fernet(keys=[old])
    store.save(Leafy(1, enc="secret", id="r"))
    token = store.client.get("c1fl:r:enc")
    store.client.delete("c1fl:r:n")
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key(), old])
    assert store.rotate_keys(Leafy) == 1
    assert store.client.get("c1fl:r:enc") != token
    with pytest.raises(redmodel.DecodeError, match="leaf key c1fl:r:n is missing"):
        store.get(Leafy, "r")
