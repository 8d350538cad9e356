"""A stored value of another shape than the declared type is never made into a value
silently (fix 33C, attack 33A F5): docs/migrations.md, "type changed, no `upgrade=` |
`DecodeError` naming the key and the field", "`upgrade=` is called only for values that
do not decode strictly".

The property draws a declared type (scalars, nested classes whose fields have defaults,
Optional, list, set, frozenset, tuples, dicts with str/int/float/bool keys) and a stored
JSON value: one of that type, one of another drawn type, or any JSON. The value is
written raw (bypassing redmodel) where the field's value is, in each layout (a blob, a
hash field and a flat leaf with the json chain), and read back. Its referee is
:func:`strict`, this file's own statement of what strict decoding of the type means: the
read gives exactly that value, or (when the referee refuses) a DecodeError naming key
and field, or, if the field declares ``upgrade=``, what ``upgrade`` returned for the
stored primitive: never an object of defaults, a set or dict that lost members, a bool
read as an int.

Shapes stored field by field (a hash's nested object, the flat layout's tree) are in
``test_a_value_of_another_shape_in_the_tree_or_a_hash_is_a_decode_error``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

import attrs
import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel.codecs import codec
from tests.budget import scaled
from tests.strategies import values

pytestmark = pytest.mark.no_registry


@attrs.define(frozen=True)
class Inner:
    number: str = ""


@attrs.define(frozen=True)
class Pair:
    count: int = 0
    tags: tuple[str, ...] = ()


SCALAR_TYPES = [str, int, float, bool]
KEY_TYPES = [str, int, float, bool]


def _hashable(tp: Any) -> bool:
    return tp in SCALAR_TYPES or tp in (Inner, Pair) or (
        getattr(tp, "__origin__", None) is tuple)


def declared(depth: int = 2) -> st.SearchStrategy[Any]:
    leaf = st.sampled_from([*SCALAR_TYPES, Inner, Pair, Inner, Pair])  # classes: half
    if depth == 0:
        return leaf
    inner = declared(depth - 1)
    hashable = inner.filter(_hashable)
    return st.one_of(
        leaf,
        inner.map(lambda t: Optional[t]),  # noqa: UP045 - the runtime form is the same
        inner.map(lambda t: list[t]),  # type: ignore[valid-type]
        hashable.map(lambda t: set[t]),  # type: ignore[valid-type]
        hashable.map(lambda t: frozenset[t]),  # type: ignore[valid-type]
        st.tuples(inner, inner).map(lambda ts: tuple[ts[0], ts[1]]),  # type: ignore[misc]
        hashable.map(lambda t: tuple[t, ...]),  # type: ignore[valid-type]
        st.tuples(st.sampled_from(KEY_TYPES), inner).map(
            lambda kv: dict[kv[0], kv[1]]),  # type: ignore[misc]
    )


JSON_KEYS = st.one_of(st.text(max_size=3), st.sampled_from(
    ["number", "count", "tags", "1", "01", " 1", "1.0", "1e0", "-0", "true", "false",
     "True", "Infinity", "1_0"]))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
              st.floats(allow_nan=False, allow_infinity=False, width=32),
              st.sampled_from([0.0, 1.0, -0.0, 2.5]), st.text(max_size=3)),
    lambda kids: st.one_of(st.lists(kids, max_size=3),
                           st.dictionaries(JSON_KEYS, kids, max_size=3)),
    max_leaves=8)


class Refused(Exception):
    pass


def _key(tp: Any, text: str) -> Any:
    if tp is str:
        return text
    if tp is bool:
        if text in ("true", "false"):
            return text == "true"
        raise Refused
    try:
        parsed = tp(text)
    except ValueError:
        raise Refused from None
    if tp is int and text == str(parsed):
        return parsed
    if tp is float and (text == json.dumps(parsed) or text == str(_int(text))):
        return parsed
    raise Refused


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def strict(tp: Any, v: Any) -> Any:
    """What strict decoding of ``tp`` makes of the JSON primitive ``v`` (Refused: it
    must not decode): written from docs/migrations.md "Strict decoding", not redmodel."""
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if tp is str or tp is bool:
        if type(v) is tp:
            return v
        raise Refused
    if tp is int:
        if type(v) is int:
            return v
        raise Refused
    if tp is float:
        if type(v) in (int, float):
            return float(v)
        raise Refused
    if attrs.has(tp):
        if type(v) is not dict:
            raise Refused
        kw = {f.name: strict(f.type, v[f.name]) for f in attrs.fields(tp) if f.name in v}
        return tp(**kw)  # a key no field has is a removed field: ignored
    if origin is not None and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return None if v is None else strict(inner, v)
    if type(v) is not (dict if origin is dict else list):
        raise Refused
    if origin is list:
        return [strict(args[0], x) for x in v]
    if origin in (set, frozenset):
        members = origin(strict(args[0], x) for x in v)
        if len(members) != len(v):
            raise Refused
        return members
    if origin is tuple and args[-1] is Ellipsis:
        return tuple(strict(args[0], x) for x in v)
    if origin is tuple:
        if len(v) != len(args):
            raise Refused
        return tuple(strict(a, x) for a, x in zip(args, v, strict=True))
    assert origin is dict
    out = {_key(args[0], k): strict(args[1], x) for k, x in v.items()}
    if len(out) != len(v):
        raise Refused
    return out


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (set, frozenset)):
        return a == b and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(
            any(same(k, j) and same(a[k], b[j]) for j in b) for k in a)
    if attrs.has(type(a)):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    return bool(a == b)


_count = [0]
_HEADER = b"\xa7\x04json"


def _model(layout: str, tp: Any, upgrade: Any) -> type:
    _count[0] += 1
    opts: dict[str, Any] = {"type": tp}
    if layout != "blob":
        opts["codec"] = "json"
    if upgrade is not None:
        opts["upgrade"] = upgrade
    cls = attrs.make_class(f"Shape{_count[0]}", {
        "c": redmodel.field(**opts),
        "id": redmodel.key_field(generated=False, type=str)}, kw_only=True)
    return redmodel.model(prefix=f"shape{_count[0]}", layout=layout)(cls)


def _write_raw(client: redis.Redis, model: type, layout: str, primitive: Any) -> None:
    """The stored value of the object's field ``c`` replaced by the json chain's bytes of
    ``primitive``, in Redis directly."""
    spec = spec_of(model)
    key = spec.key_for("1")
    data = _HEADER + codec("json").serializer.dumps(primitive)
    if layout == "hash":
        client.hset(key, "c", data)
    elif layout == "flat":
        leaf = key + spec.delimiter + "c"
        assert client.exists(leaf)
        client.set(leaf, data)
    else:
        stored = client.get(key)
        assert stored is not None and stored.startswith(_HEADER)
        whole = json.loads(stored[len(_HEADER):])
        whole["c"] = primitive
        client.set(key, _HEADER + codec("json").serializer.dumps(whole))


def _primitive(draw: st.DrawFn, tp: Any) -> Any:
    """The json chain's primitive of a value of ``tp``."""
    raw = codec("json").encoder(tp)(draw(values(tp)))
    return json.loads(raw[len(_HEADER):])


KEY_TEXTS = {str: ["k", "1", ""], int: ["1", "01", " 1", "1_0", "-0"],
             float: ["1", "1.0", "1e0", "-0.0", "Infinity"], bool: ["true", "false", "True"]}


def shaped(draw: st.DrawFn, tp: Any) -> Any:
    """A primitive shaped like ``tp``'s, in which any node may be of another drawn type,
    a list may repeat an item and a dict's keys may be texts that read as one another."""
    if draw(st.integers(0, 4)) == 0:
        return _primitive(draw, draw(declared(1)))
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if attrs.has(tp):
        out = {f.name: shaped(draw, f.type) for f in attrs.fields(tp) if draw(st.booleans())}
        if draw(st.booleans()):
            out["gone"] = 1  # a removed field: ignored
        return out
    if origin is not None and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return None if draw(st.booleans()) else shaped(draw, inner)
    if origin in (list, set, frozenset) or (origin is tuple and args[-1] is Ellipsis):
        items = [shaped(draw, args[0]) for _ in range(draw(st.integers(0, 2)))]
        return items + items[:1] if draw(st.booleans()) else items
    if origin is tuple:
        return [shaped(draw, a) for a in args]
    if origin is dict:
        keys = draw(st.lists(st.sampled_from(KEY_TEXTS[args[0]]), max_size=2, unique=True))
        return {k: shaped(draw, args[1]) for k in keys}
    return _primitive(draw, tp)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, Any, Any]:
    """(declared type, a valid value of it, the stored primitive)."""
    tp = draw(declared())
    valid = draw(values(tp).filter(lambda v: v is not None))
    how = draw(st.sampled_from(["own", "shaped", "shaped", "shaped", "any"]))
    if how == "any":
        return tp, valid, draw(JSON)
    return tp, valid, _primitive(draw, tp) if how == "own" else shaped(draw, tp)


@settings(max_examples=scaled(500, floor=50))
@given(layout=st.sampled_from(["blob", "hash", "flat"]), case=cases(),
       with_upgrade=st.booleans())
# the finding's inputs and their kind, always run (each read as defaults, as a smaller
# set or dict, or as the wrong key, before fix 33C)
@example(layout="blob", case=(Inner, Inner("v"), "x"), with_upgrade=False)
@example(layout="hash", case=(Optional[Inner], Inner("v"), ["x"]),  # noqa: UP045
         with_upgrade=True)
@example(layout="flat", case=(list[Pair], [Pair()], [[1]]), with_upgrade=False)
@example(layout="flat", case=(set[str], {"v"}, ["a", "a"]), with_upgrade=False)
@example(layout="blob", case=(dict[int, str], {1: "v"}, {"01": "a"}), with_upgrade=False)
@example(layout="hash", case=(dict[float, int], {1.0: 1}, {"1": 1, "1.0": 2}),
         with_upgrade=True)
def test_a_stored_value_decodes_strictly_or_raises_or_goes_to_upgrade(
        redis_client: redis.Redis, layout: str, case: tuple[Any, Any, Any],
        with_upgrade: bool) -> None:
    tp, valid, primitive = case
    store = redmodel.Store(redis_client, registry=False)
    seen: list[Any] = []

    def upgrade(v: Any) -> Any:
        seen.append(v)
        return valid

    try:
        model = _model(layout, tp, upgrade if with_upgrade else None)
    except redmodel.ModelDefinitionError:  # upgrade= on a blob's nested class: refused
        model = _model(layout, tp, None)
        with_upgrade = False
    store.save(model(c=valid, id="1"))
    _write_raw(redis_client, model, layout, primitive)
    try:
        expected = strict(tp, primitive)
    except Refused:
        expected = Refused
    if primitive is None and layout != "blob":
        # a hash or flat layout stores None as no value: the json chain's `null` is no
        # value it writes there; it is read as None, or refused (to upgrade= if declared)
        try:
            got = store.get(model, "1").c
        except redmodel.DecodeError as e:
            assert e.field == "c" and not with_upgrade
            return
        assert got is None or (with_upgrade and seen == [None] and got is valid)
        return
    if expected is Refused and not with_upgrade:
        with pytest.raises(redmodel.DecodeError) as e:
            store.get(model, "1")
        assert e.value.key == spec_of(model).key_for("1")
        assert e.value.field is not None and e.value.field.split(".")[0] == "c"
        return
    got = store.get(model, "1").c
    if expected is Refused:
        assert seen == [primitive] and got is valid
    else:
        assert not seen, "upgrade= was called for a value that decodes strictly"
        assert same(got, expected), (got, expected)


def test_the_referee_refuses_what_the_finding_read_as_defaults() -> None:
    """:func:`strict` itself: the finding's inputs are refusals, and a fitting value is
    read as itself (so the property above checks something)."""
    for tp, v in ((Inner, "x"), (Optional[Inner], ["x"]), (set[str], ["a", "a"]),  # noqa: UP045
                  (dict[int, str], {"01": "a"}), (dict[float, int], {"1": 1, "1.0": 2}),
                  (int, True), (tuple[int, int], [1])):
        with pytest.raises(Refused):
            strict(tp, v)
    assert strict(Inner, {"number": "n", "gone": 1}) == Inner("n")
    assert same(strict(dict[float, bool], {"1": True, "2.5": False}), {1.0: True, 2.5: False})


# ---- shapes stored field by field: the hash layout's nested objects, the flat tree ------

BOTH = ("hash", "flat")
OLD_NEW = [  # (layouts, old type, value, new type): stored by one model, read by the next
    (BOTH, str, "x", Inner),
    (BOTH, list[str], ["x"], Inner),
    (BOTH, int, 5, Inner),
    (BOTH, list[str], ["x"], Optional[Inner]),  # noqa: UP045
    (BOTH, Inner, Inner("w"), list[Inner]),
    (BOTH, Inner, Inner("w"), str),
    (BOTH, list[str], ["a", "a"], set[str]),
    (BOTH, list[float], [1.0, 1], frozenset[float]),
    (BOTH, dict[str, int], {"1": 1, "1.0": 2}, dict[float, int]),
    # a dict's entries are no object in the tree (a hash stores both as one json value,
    # where {"number": "y"} is an Inner's, as in a blob: read as Inner("y"))
    (("flat",), dict[str, str], {"number": "y"}, Inner),
    (("flat",), dict[str, str], {"number": "y"}, Optional[Inner]),  # noqa: UP045
    # a hash stores a nested object field by field and an Optional one whole (the flat
    # layout stores both as the same tree: read as the object)
    (("hash",), Optional[Inner], Inner("z"), Inner),  # noqa: UP045
    (("hash",), Inner, Inner("w"), Optional[Inner]),  # noqa: UP045
]


@pytest.mark.parametrize(("layout", "old_tp", "stored", "new_tp"), [
    (layout, *rest) for layouts, *rest in OLD_NEW for layout in layouts],
    ids=lambda x: getattr(x, "__name__", None) or repr(x))
def test_a_value_of_another_shape_in_the_tree_or_a_hash_is_a_decode_error(
        redis_client: redis.Redis, layout: str, old_tp: Any, stored: Any,
        new_tp: Any) -> None:
    """No codec: the hash layout stores a nested class field by field (``c:number``) and
    anything else as one value (``c``); the flat layout stores a tree of leaves. A value
    of one shape read where the other is declared was an object of defaults (or None)."""
    store = redmodel.Store(redis_client, registry=False)
    _count[0] += 1
    prefix = f"shapeno{_count[0]}"
    made = []
    for tp in (old_tp, new_tp):
        cls = attrs.make_class(f"No{_count[0]}", {
            "c": redmodel.field(type=tp),
            "id": redmodel.key_field(generated=False, type=str)}, kw_only=True)
        made.append(redmodel.model(prefix=prefix, layout=layout)(cls))
    old, new = made
    store.save(old(c=stored, id="1"))
    with pytest.raises(redmodel.DecodeError) as e:
        print(store.get(new, "1"))
    assert e.value.key == spec_of(new).key_for("1")
    assert e.value.field is not None and e.value.field.split(".")[0] == "c"
