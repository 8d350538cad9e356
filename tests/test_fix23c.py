"""Fixes of attack 23 area C (secrets, codecs, query expressions), each as a property over
the whole kind of input: recursive nested classes (refused at declaration), yaml values cut
anywhere (DecodeError, never a shorter value), codec encode refusals (ValidationError,
never the converter's own error), query expressions and their errors (never a value), and
index keys shared with any Fernet key set (refused whichever comes first)."""

from __future__ import annotations

import datetime as dt
import decimal
import string
import traceback
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes import _blind
from tests.budget import scaled

pytest.importorskip("cryptography")
pytest.importorskip("yaml")


pytestmark = pytest.mark.usefixtures("fresh_keys")


# ---- F1: recursive nested classes -----------------------------------------------------


@attrs.define
class Node:
    value: int
    next: Node | None = None


@attrs.define
class Tree:
    kids: list[Tree] = attrs.Factory(list)


@attrs.define
class Left:
    right: dict[str, Right] | None = None


@attrs.define
class Right:
    left: tuple[int, Left | None] = (0, None)


@attrs.define
class Leaf:
    x: int = 0


@attrs.define
class Twice:
    """Not recursive: one class twice side by side is a finite shape."""
    a: Leaf = attrs.Factory(Leaf)
    b: Leaf | None = None
    c: list[Leaf] = attrs.Factory(list)


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
@pytest.mark.parametrize(("tp", "cycle"), [
    (Node | None, "Node -> Node"),
    (Node, "Node -> Node"),
    (list[Tree], "Tree -> Tree"),
    (dict[str, Left], "Left -> Right -> Left"),
    (tuple[Right, ...], "Right -> Left -> Right"),
])
def test_a_recursive_nested_class_is_refused_naming_field_and_cycle(
        layout: str, tp: Any, cycle: str) -> None:
    cls = attrs.make_class("Holder", {"head": attrs.field(type=tp, default=None),
                                      "id": redmodel.key_field()})
    with pytest.raises(redmodel.ModelDefinitionError) as e:
        redmodel.model(prefix=f"f23crec{layout}", layout=layout)(cls)
    assert "Holder.head" in str(e.value) and f"({cycle})" in str(e.value), str(e.value)


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
def test_a_class_used_twice_side_by_side_is_not_recursive(
        store: redmodel.Store, layout: str) -> None:
    @attrs.define
    class Pair:
        t: Twice = attrs.Factory(Twice)
        u: Leaf | None = None
        id: str = redmodel.key_field(generated=False)

    model = redmodel.model(prefix=f"f23ctw{layout}", layout=layout)(Pair)
    obj = model(Twice(Leaf(1), Leaf(2), [Leaf(3)]), Leaf(4), id="p")
    store.save(obj)
    assert store.get(model, "p") == obj


# ---- F3: yaml values cut anywhere --------------------------------------------------------

_TEXT = st.text(max_size=12) | st.sampled_from(
    ["...", "\n...\n", "---", "- x", "...\n", "a: b", "", " ", "#", "\n"])
_SCALAR = (st.none() | st.booleans() | st.integers() | st.integers(2**63, 2**70)
           | st.floats(allow_nan=False) | _TEXT)
_YAML_VALUES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (list[float], st.lists(st.floats(allow_nan=False), max_size=6)),
    (list[str], st.lists(_TEXT, max_size=6)),
    (dict[str, list[int]], st.dictionaries(_TEXT, st.lists(st.integers(), max_size=3),
                                           max_size=4)),
    (tuple[str, ...], st.lists(_TEXT, max_size=4).map(tuple)),
    (str, _TEXT),
    (int, st.integers() | st.integers(2**63, 2**70)),
    (float, st.floats(allow_nan=False)),
    (bytes, st.binary(max_size=40)),
    (dict[str, Any], st.dictionaries(_TEXT, _SCALAR, max_size=4)),
]


@settings(max_examples=scaled(100))
@given(data=st.data(), which=st.integers(0, len(_YAML_VALUES) - 1),
       chain=st.sampled_from(["yaml", "yaml|zlib"]))
def test_a_yaml_value_cut_anywhere_is_a_decode_error(data: st.DataObject, which: int,
                                                      chain: str) -> None:
    """Property: a yaml value reads back equal when whole, and every prefix of it (a cut at
    any byte, at a line end in particular) is a DecodeError, never another value."""
    tp, values = _YAML_VALUES[which]
    value = data.draw(values)
    c = redmodel.codecs.codec(chain)
    stored = c.encode(value, tp)
    back = c.decode(stored, tp)
    assert back == value and type(back) is type(value)
    for cut in range(len(stored)):
        with pytest.raises(redmodel.DecodeError):
            c.decode(stored[:cut], tp)


def test_a_yaml_value_without_the_end_marker_names_why() -> None:
    """A value written before the marker (the old bytes) is refused with a message that
    says how to carry it over, and never the value."""
    c = redmodel.codecs.codec("yaml")
    old = c.encode(["s3cret", "x"], list[str])[: -len(b"...\n")]  # the earlier bytes
    with pytest.raises(redmodel.DecodeError, match="document end marker") as e:
        c.decode(old, list[str])
    assert "s3cret" not in str(e.value) and "re-save" in str(e.value)
    assert c.decode(old + b"...\n", list[str]) == ["s3cret", "x"]  # the CHANGELOG's fix


# ---- F5: encode refusals -----------------------------------------------------------------


class _Opaque:
    pass


_ANY_VALUE = st.recursive(
    _SCALAR | st.binary(max_size=5) | st.builds(_Opaque) | st.just(1j)
    | st.decimals(allow_nan=False) | st.just(dt.date(2020, 1, 1)),
    lambda kids: st.lists(kids, max_size=3) | st.lists(kids, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=3) | st.integers(), kids, max_size=3)
    | st.frozensets(st.integers(), max_size=3),
    max_leaves=8)
_TYPES = [int, str, float, bytes, bool, tuple[int, int], tuple[str, ...], list[int],
          dict[str, int], dict[int, str], set[int], list[tuple[int, str]], Node,
          decimal.Decimal, dt.date, Leaf | None]


@settings(max_examples=scaled(100))
@given(value=_ANY_VALUE, tp=st.sampled_from(_TYPES),
       chain=st.sampled_from(["json", "msgpack", "yaml", "yaml|zlib|fernet", "msgpack|bz2"]))
def test_encode_refuses_only_with_validation_error(value: Any, tp: Any, chain: str) -> None:
    """Property: ``Codec.encode`` of any value as any type either gives bytes or raises
    ValidationError (a redmodel error naming the value's type, never the value)."""
    c = redmodel.codecs.codec(chain)
    try:
        stored = c.encode(value, tp)
    except redmodel.ValidationError as e:
        assert f"cannot encode a value of type {type(value).__name__}" in str(e)
        assert e.__context__ is None or isinstance(e.__context__, redmodel.RedmodelError)
    else:
        assert isinstance(stored, bytes)


# ---- F6/F7: query expressions and errors never show a value -----------------------------

_SECRET = st.text(string.ascii_letters + string.digits + "-:{}*%\\\n\u00e9\U0001f600",
                  min_size=1, max_size=12).map(lambda t: "\u2603" + t)
_SECRET_VALUE = _SECRET | st.integers(10**15, 2**70) | st.binary(min_size=1).map(
    lambda b: b"\xe2\x98\x83" + b)


def _expressions(v: Any) -> st.SearchStrategy[Any]:
    leaf = st.sampled_from([
        redmodel.Q(ssn=v), redmodel.Q(ssn=redmodel.one_of([v, v])),
        redmodel.Q(tags=redmodel.contains(v)), redmodel.one_of([v]), redmodel.contains(v),
        redmodel.Q(n=redmodel.between(v, v)), redmodel.Q(n=redmodel.lt(v)),
        redmodel.Q(name="x", ssn=v),
    ])
    return st.recursive(leaf, lambda kids: st.one_of(
        st.tuples(kids, kids).map(lambda p: _q(p[0]) | _q(p[1])),
        st.tuples(kids, kids).map(lambda p: _q(p[0]) & _q(p[1])),
        kids.map(lambda k: ~_q(k))), max_leaves=6)


def _q(x: Any) -> redmodel.Q:
    return x if isinstance(x, redmodel.Q) else redmodel.Q(f=x)


def _shows(v: Any, text: str) -> bool:
    if isinstance(v, bytes):
        return repr(v)[2:-1] in text or v.decode("utf-8", "replace") in text
    return str(v) in text or repr(v) in text or "\u2603" in text


@settings(max_examples=scaled(100))
@given(data=st.data(), v=_SECRET_VALUE)
def test_no_query_expression_shows_a_value(data: st.DataObject, v: Any) -> None:
    """Property: repr and str of any expression built from a value (Q, one_of, contains,
    ranges, &, |, ~) show its type, never the value."""
    expr = data.draw(_expressions(v))
    for text in (repr(expr), str(expr)):
        assert not _shows(v, text), text
        assert f"<{type(v).__name__}>" in text, text


@settings(max_examples=scaled(100))
@given(v=_SECRET_VALUE, make=st.sampled_from([
    redmodel.one_of,
    redmodel.Q,
    lambda v: redmodel.Q(a=1) | v,
    lambda v: redmodel.Q(a=1) & v,
    lambda v: redmodel.between(1, 2, inclusive=v),
    lambda v: redmodel.between(1, 2, inclusive=(v, v)),
]))
def test_no_query_error_shows_a_value(v: Any, make: Any) -> None:
    """Property: every QueryError raised while building an expression from a value (each
    of these is refused) names the value's type at most, in its message and in its whole
    traceback text."""
    with pytest.raises(redmodel.QueryError) as e:
        make(v)
    text = "".join(traceback.format_exception(e.value))
    assert not _shows(v, text), str(e.value)


@redmodel.model(prefix="f23cq")
@attrs.define
class Member:
    ssn: str = redmodel.field(codec="json|fernet", index="blind")
    n: int = redmodel.field(index="range", default=0)
    tags: list[str] = redmodel.field(index=True, factory=list)
    id: str = redmodel.key_field(generated=False)


@settings(max_examples=scaled(40))
@given(v=_SECRET_VALUE | st.integers(2**53 + 1, 2**80) | st.integers(-(2**80), -(2**53) - 1))
def test_no_query_error_of_a_bound_query_shows_a_value(store: redmodel.Store, v: Any) -> None:
    """Property: the QueryErrors of a query on a model (a value of the wrong type for the
    blind field, an int past the range index's window) never show the value."""
    refused = 0
    for filters in ({"ssn": v}, {"n": v}, {"n": redmodel.ge(v)},
                    {"tags": redmodel.one_of([v])}):
        try:
            store.find(Member, **filters).ids()
        except redmodel.QueryError as e:
            refused += 1
            text = "".join(traceback.format_exception(e))
            assert not _shows(v, text), str(e)
    assert refused >= 2  # a value of any kind is refused by some field


# ---- F9: an index key shared with any Fernet key set ------------------------------------


def test_a_named_fernet_key_set_after_the_index_keys_is_refused() -> None:
    """Whichever is configured first: a named key set (or configure_fernet) whose key is
    an index key is refused at once, a provider's when its keys are first read."""
    shared = redmodel.generate_index_key()
    redmodel.configure_index_keys(keys=[redmodel.generate_index_key(), shared])
    with pytest.raises(redmodel.CodecError, match="separate") as e:
        redmodel.codecs.FernetTransform(keys=[shared], name="fernet-f23c")
    assert shared[:12] not in str(e.value)
    with pytest.raises(redmodel.CodecError, match="separate"):
        redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key(),
                                               shared])
    late = redmodel.codecs.FernetTransform(key_provider=lambda: [shared], name="fernet-f23l")
    with pytest.raises(redmodel.CodecError, match="separate"):
        late.encode(b"x")


def test_an_index_provider_sharing_a_named_fernet_key_is_refused_at_first_use(
        store: redmodel.Store) -> None:
    shared = redmodel.codecs.FernetTransform.generate_key()
    pii = redmodel.codecs.FernetTransform(keys=[shared], name="fernet-f23p")
    redmodel.codecs.register_codec("fernet-f23p", lambda: pii)
    redmodel.configure_index_keys(key_provider=lambda: [shared])
    with pytest.raises(redmodel.CodecError, match="separate"):
        store.find(Member, ssn="x").ids()
    with pytest.raises(redmodel.CodecError, match="separate"):
        store.save(Member("987-65-4321", id="m1"))
    assert store.client.keys("f23cq:*") == []


def test_a_replaced_index_key_may_become_a_fernet_key() -> None:
    """Only the keys in use count: an index key rotated out may be reused (a replaced
    configuration is not compared)."""
    old = redmodel.generate_index_key()
    redmodel.configure_index_keys(keys=[old])
    _blind.current_keyring()
    redmodel.configure_index_keys(keys=[redmodel.generate_index_key()])
    assert redmodel.codecs.FernetTransform(keys=[old]).decode(
        redmodel.codecs.FernetTransform(keys=[old]).encode(b"x")) == b"x"
