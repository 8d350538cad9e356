"""Models that change after their data exists (issue 16, items 2 and 6), in every layout,
through every shell (sync and asyncio, one server and a cluster).

A test writes with the model as it was (``old``) and reads with the model as it is now
(``new``): both are declared on one prefix, as two versions of an app's code would be.
Being two classes, they are two models to the model registry, which would refuse the
second before it reads anything (and refuses some of these changes outright, such as a
new required field): these tests run with stores that opt out of it (``no_registry``);
tests/test_registry.py tests how the registry takes each change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from tests.budget import scaled

# "encoded" is the hash layout with every changed field encoded by a codec chain (json):
# the values that decoded leniently before strict decoding applied to every chain.
LAYOUTS = ("hash", "flat", "blob", "encoded")
_count = [0]


def make(layout: str, prefix: str, *, codec: str | None = None,
         **fields: Any) -> type:
    """A model on ``prefix`` with these attrs fields (keyword-only) and a required str id;
    hash-tagged, so a flat object's leaves share a slot on a cluster."""
    _count[0] += 1
    body = dict(fields)
    body["id"] = redmodel.key_field(generated=False, type=str)
    cls = attrs.make_class(f"M{_count[0]}_{prefix}", body, kw_only=True, slots=True)
    real = "hash" if layout == "encoded" else layout
    return redmodel.model(prefix=prefix, layout=real, codec=codec,
                          hash_tag=True)(cls)


def value(layout: str, tp: Any, **kw: Any) -> Any:
    """A field of type ``tp``: encoded by json in the "encoded" layout."""
    if layout == "encoded":
        kw.setdefault("codec", "json")
    return redmodel.field(type=tp, **kw)


def key(cls: type, id_: str) -> str:
    return spec_of(cls).key_for(id_)


def stored_names(store: Any, cls: type, id_: str) -> set[str]:
    """The names the object's fields are stored under, read raw from Redis."""
    k = key(cls, id_)
    layout = spec_of(cls).layout
    if layout == "hash":
        return {n.decode().split(":")[0] for n in store.client.hgetall(k)} - {"\x00"}
    if layout == "flat":
        manifest = store.client.get(k).decode().split("\n")
        return {line.split(":")[0] for line in manifest[1:]}
    raw = store.client.get(k)
    return set(json.loads(raw[2 + raw[1]:])) - {"id"}


pytestmark = pytest.mark.no_registry


@pytest.fixture
def store(any_store: Any) -> Any:
    return any_store


# ---- strict decoding: a changed type is a DecodeError, the same in every layout ----------

CHANGES = [  # (old type, stored value, new type)
    (str, "no", bool),
    (int, 41, bool),
    (float, 41.9, int),
    (str, "abc", list[str]),
    (str, "41x", int),
    (float, 2.5, bool),
    (list[int], [1, 2], dict[str, int]),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("old_tp", "stored", "new_tp"), CHANGES,
                         ids=lambda x: getattr(x, "__name__", None) or repr(x))
def test_a_changed_type_is_a_decode_error_naming_key_and_field_in_every_layout(
        store: Any, layout: str, old_tp: Any, stored: Any, new_tp: Any) -> None:
    old = make(layout, "chg", x=value(layout, old_tp))
    new = make(layout, "chg", x=value(layout, new_tp))
    store.save(old(x=stored, id="1"))
    with pytest.raises(redmodel.DecodeError) as e:
        store.get(new, "1")
    assert e.value.key == key(new, "1")
    assert e.value.field is not None and e.value.field.split(".")[0] == "x"
    assert key(new, "1") in str(e.value)


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
def test_an_encrypted_fields_changed_type_is_reported_without_its_value(
        store: Any, layout: str) -> None:
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key()])
    chain = "json|fernet"
    model_codec = chain if layout == "blob" else None
    field_codec = None if layout == "blob" else chain
    old = make(layout, "sec", codec=model_codec,
               pin=redmodel.field(type=str, codec=field_codec))
    new = make(layout, "sec", codec=model_codec,
               pin=redmodel.field(type=int, codec=field_codec))
    store.save(old(pin="topsecret-4711", id="1"))
    with pytest.raises(redmodel.DecodeError) as e:
        store.get(new, "1")
    assert e.value.field == "pin"
    text = f"{e.value!s} {e.value!r} {e.value.__context__!r} {e.value.__cause__!r}"
    assert "topsecret" not in text and "4711" not in text


# ---- added fields -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_added_fields_take_their_default_or_factory_on_read(store: Any, layout: str) -> None:
    old = make(layout, "add", a=value(layout, int))
    new = make(layout, "add", a=value(layout, int),
               b=value(layout, str, default="fresh"),
               c=value(layout, list[int], factory=lambda: [7]),
               d=value(layout, int | None, default=None))
    store.save(old(a=1, id="1"))
    assert store.get(new, "1") == new(a=1, b="fresh", c=[7], d=None, id="1")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_added_required_field_missing_from_stored_data_is_a_decode_error_naming_it(
        store: Any, layout: str) -> None:
    old = make(layout, "req", a=value(layout, int))
    new = make(layout, "req", a=value(layout, int), b=value(layout, str))
    store.save(old(a=1, id="1"))
    with pytest.raises(redmodel.DecodeError, match="missing") as e:
        store.get(new, "1")
    assert e.value.field == "b" and e.value.key == key(new, "1")


# ---- removed fields ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_removed_fields_are_ignored_on_read_and_dropped_by_the_next_whole_save(
        store: Any, layout: str) -> None:
    old = make(layout, "rm", a=value(layout, int), gone=value(layout, str),
               tags=value(layout, list[str]))
    new = make(layout, "rm", a=value(layout, int))
    store.save(old(a=1, gone="bye", tags=["x", "y"], id="1"))
    obj = store.get(new, "1")
    assert obj == new(a=1, id="1")
    assert {"gone", "tags"} <= stored_names(store, new, "1")
    obj.a = 2
    store.save(obj)
    assert stored_names(store, new, "1") == {"a"}
    assert store.get(new, "1") == new(a=2, id="1")
    if layout == "flat":  # the removed leaves are deleted, not only unlisted
        assert store.client.exists(key(new, "1") + ":tags:0") == 0


def test_a_tracked_partial_save_keeps_fields_it_does_not_know(store: Any) -> None:
    """Another version of the app may still own them: a partial save writes only what
    changed, so it never removes what it does not know (a whole save does)."""
    newer = make("hash", "part", a=redmodel.field(type=int),
                 extra=redmodel.field(type=str, default=""))
    older = redmodel.model(prefix="part", hash_tag=True, track_changes=True)(
        attrs.make_class("Older", {"a": redmodel.field(type=int),
                                   "id": redmodel.key_field(generated=False, type=str)},
                         kw_only=True, slots=True))
    store.save(newer(a=1, extra="theirs", id="1"))
    obj = store.get(older, "1")
    obj.a = 2
    store.save(obj)
    assert store.get(newer, "1") == newer(a=2, extra="theirs", id="1")


# ---- renamed fields ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_value_under_an_old_name_is_read_and_moved_on_the_next_save(
        store: Any, layout: str) -> None:
    old = make(layout, "ren", qty=value(layout, int))
    new = make(layout, "ren", quantity=value(layout, int, old_names=("q", "qty")))
    store.save(old(qty=5, id="1"))
    obj = store.get(new, "1")
    assert obj == new(quantity=5, id="1")
    store.save(obj)
    assert stored_names(store, new, "1") == {"quantity"}
    assert store.get(new, "1") == new(quantity=5, id="1")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_current_name_wins_over_an_old_name(store: Any, layout: str) -> None:
    both = make(layout, "win", qty=value(layout, int), quantity=value(layout, int))
    new = make(layout, "win", quantity=value(layout, int, old_names=("qty",)))
    store.save(both(qty=1, quantity=2, id="1"))
    assert store.get(new, "1").quantity == 2


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
def test_a_nested_object_under_an_old_name_is_read(store: Any, layout: str) -> None:
    @attrs.define
    class Place:
        city: str
        zip: int = redmodel.field(old_names=("postcode",))

    @attrs.define
    class OldPlace:
        city: str
        postcode: int

    old = make(layout, "nest", addr=redmodel.field(type=OldPlace))
    new = make(layout, "nest", address=redmodel.field(type=Place, old_names=("addr",)))
    store.save(old(addr=OldPlace("Oslo", 150), id="1"))
    obj = store.get(new, "1")
    assert obj == new(address=Place("Oslo", 150), id="1")
    store.save(obj)
    assert stored_names(store, new, "1") == {"address"}


def test_a_tracked_partial_save_moves_a_renamed_value_it_writes(store: Any) -> None:
    old = make("hash", "tmove", qty=redmodel.field(type=int), note=redmodel.field(type=str))
    new = redmodel.model(prefix="tmove", hash_tag=True, track_changes=True)(
        attrs.make_class("TNew", {
            "quantity": redmodel.field(type=int, old_names=("qty",)),
            "note": redmodel.field(type=str),
            "id": redmodel.key_field(generated=False, type=str)}, kw_only=True, slots=True))
    store.save(old(qty=5, note="a", id="1"))
    obj = store.get(new, "1")
    obj.note = "b"
    store.save(obj)
    # only what it writes moves: the value it did not change stays under the old name
    # (another writer may have changed it meanwhile: attack 29AL F2)
    assert stored_names(store, new, "1") == {"qty", "note"}
    assert store.get(new, "1") == new(quantity=5, note="b", id="1")
    obj.quantity = 6
    store.save(obj)
    assert stored_names(store, new, "1") == {"quantity", "note"}
    assert store.get(new, "1") == new(quantity=6, note="b", id="1")


# ---- type changes with upgrade= ---------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_upgrade_turns_a_value_of_the_old_type_into_the_new_one(
        store: Any, layout: str) -> None:
    seen: list[Any] = []

    def to_int(v: Any) -> int:
        seen.append(v)
        return round(float(v))

    old = make(layout, "upg", price=value(layout, float), flag=value(layout, str))
    new = make(layout, "upg", price=value(layout, int, upgrade=to_int),
               flag=value(layout, bool, upgrade=lambda v: v in ("yes", "1", 1, True)))
    store.save(old(price=41.9, flag="no", id="1"))
    store.save(old(price=3.0, flag="yes", id="2"))
    assert store.get(new, "1") == new(price=42, flag=False, id="1")
    assert store.get(new, "2") == new(price=3, flag=True, id="2")
    # plain strings give their text, encoded values their primitive
    assert seen[0] == ("41.9" if layout in ("hash", "flat") else 41.9)
    store.save(new(price=5, flag=True, id="3"))  # a value of the new type skips upgrade
    assert store.get(new, "3") == new(price=5, flag=True, id="3")
    assert len(seen) == 2


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("upgrade", [lambda v: "not an int", lambda v: 1 // 0],
                         ids=["bad result", "raises"])
def test_an_upgrade_that_fails_is_a_decode_error_without_the_value(
        store: Any, layout: str, upgrade: Callable[[Any], Any]) -> None:
    old = make(layout, "upf", n=value(layout, str))
    new = make(layout, "upf", n=value(layout, int, upgrade=upgrade))
    store.save(old(n="s3cr3t", id="1"))
    with pytest.raises(redmodel.DecodeError, match="upgrade") as e:
        store.get(new, "1")
    assert e.value.field == "n" and "s3cr3t" not in str(e.value)


def test_upgrade_on_a_field_stored_field_by_field_is_refused_at_declaration() -> None:
    @attrs.define
    class Place:
        city: str

    with pytest.raises(redmodel.ModelDefinitionError, match="upgrade"):
        make("hash", "bad", place=redmodel.field(type=Place, upgrade=lambda v: v))
    with pytest.raises(redmodel.ModelDefinitionError, match="old_names"):
        redmodel.model(attrs.make_class("K", {
            "id": redmodel.field(key=True, type=str, old_names=("pk",))}))
    with pytest.raises(redmodel.ModelDefinitionError, match="old name"):
        make("hash", "bad", a=redmodel.field(type=int), b=redmodel.field(
            type=int, old_names=("a",)))


# ---- blob: the key's id, stored names ---------------------------------------------------


@pytest.mark.parametrize("command", ["COPY", "RENAME"])
def test_a_blob_copied_or_renamed_in_redis_is_the_object_at_its_new_key(
        store: Any, command: str) -> None:
    m = redmodel.model(prefix="cp", layout="blob", hash_tag=lambda _: "t")(  # one slot
        attrs.make_class("Cp", {"color": redmodel.field(type=str),
                                "id": redmodel.key_field(generated=False, type=str)},
                         kw_only=True, slots=True))
    store.save(m(color="red", id="a"))
    src, dst = key(m, "a"), key(m, "b")
    store.client.execute_command(command, src, dst)
    copy = store.get(m, "b")
    assert copy == m(color="red", id="b")
    copy.color = "blue"
    store.save(copy)
    assert store.get(m, "b") == m(color="blue", id="b")
    if command == "COPY":
        assert store.get(m, "a") == m(color="red", id="a"), "the original is untouched"


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
def test_a_rename_by_stored_name_reads_the_old_data_in_every_layout(
        store: Any, layout: str) -> None:
    old = make(layout, "sn", qty=redmodel.field(type=int))
    new = make(layout, "sn", quantity=redmodel.field(type=int, name="qty"))
    store.save(old(qty=3, id="1"))
    assert store.get(new, "1") == new(quantity=3, id="1")
    store.save(new(quantity=4, id="2"))
    assert stored_names(store, new, "2") == {"qty"}


def test_a_blob_written_under_attribute_names_before_still_reads(store: Any) -> None:
    m = make("blob", "legacy", quantity=redmodel.field(type=int, name="q"))
    store.client.set(key(m, "1"), b'\xa7\x04json{"quantity":3,"id":"1"}')
    assert store.get(m, "1") == m(quantity=3, id="1")


# ---- inheritance (item 6) ---------------------------------------------------------------


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
def test_a_decorated_subclass_inherits_its_bases_options_but_not_its_prefix(
        store: Any, layout: str) -> None:
    @redmodel.model(prefix="basehat", ttl=3600, layout=layout, hash_tag=True)
    @attrs.define
    class BaseHat:
        color: str
        id: str = redmodel.key_field()

    @redmodel.model
    @attrs.define
    class VipHat(BaseHat):
        perk: str = "lounge"

    spec = spec_of(VipHat)
    assert (spec.layout, spec.ttl, spec.prefix) == (layout, 3600, "vip_hat")
    hat = VipHat("red", id="v1")
    store.save(hat)
    assert 0 < store.ttl(VipHat, "v1") <= 3600, "the subclass's objects expire too"
    assert store.get(VipHat, "v1") == hat
    assert store.get(BaseHat, "v1") is None, "the base does not see the subclass's keys"

    @redmodel.model(ttl=60)
    @attrs.define
    class ShortHat(BaseHat):
        pass

    assert (spec_of(ShortHat).ttl, spec_of(ShortHat).layout) == (60, layout)


def test_an_undecorated_subclass_is_refused_naming_its_base_and_the_fix(store: Any) -> None:
    @redmodel.model(prefix="plainbase", ttl=3600)
    @attrs.define
    class Base:
        color: str
        id: str = redmodel.key_field()

    @attrs.define
    class Sub(Base):
        pass

    for call in (lambda: store.save(Sub("red")), lambda: store.get(Sub, "1"),
                 lambda: store.count(Sub), lambda: store.save_many([Sub("red")]),
                 lambda: store.exists(Sub, "1")):
        with pytest.raises(redmodel.ModelDefinitionError,
                           match=r"subclass of the model Base.*@redmodel.model"):
            call()


# ---- property: any evolution reads as the new model says, wrong data always raises ------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6).map(lambda s: "s" + s)
VALUES: dict[Any, st.SearchStrategy[Any]] = {
    int: st.integers(-(2**40), 2**40),
    float: st.floats(allow_nan=False, allow_infinity=False),
    str: TEXT,  # never text of a number: "s…" is no int, float or bool in any layout
    bool: st.booleans(),
    list[int]: st.lists(st.integers(-99, 99), max_size=3),
}
# Type changes whose old values never decode strictly as the new type, in any layout, and
# the upgrade for each: it sees text or the serializer's primitive, so it must take both.
UPGRADES: dict[tuple[Any, Any], Callable[[Any], Any]] = {
    (float, int): lambda v: round(float(v)),
    (str, int): len,
    (str, float): lambda v: float(len(v)),
    (str, bool): lambda v: v.startswith("sa"),
    (list[int], str): lambda v: ",".join(str(x) for x in v),
    (str, list[int]): lambda v: [len(v)],
}
EVOLUTIONS = ("keep", "add", "add_required", "remove", "rename", "upgrade", "no_upgrade",
              "widen")


@st.composite
def evolutions(draw: st.DrawFn) -> list[tuple[str, str, Any, Any]]:
    """(field name, evolution, old type, new type) per field."""
    out = []
    for name in draw(st.lists(st.sampled_from("abcde"), min_size=1, max_size=4, unique=True)):
        how = draw(st.sampled_from(EVOLUTIONS))
        if how in ("upgrade", "no_upgrade"):
            old_tp, new_tp = draw(st.sampled_from(sorted(UPGRADES, key=repr)))
        elif how == "widen":
            old_tp, new_tp = int, float
        else:
            old_tp = new_tp = draw(st.sampled_from(sorted(VALUES, key=repr)))
        out.append((name, how, old_tp, new_tp))
    return out


def _expected(how: str, old_tp: Any, new_tp: Any, old: Any, default: Any) -> Any:
    if how in ("add", "add_required"):
        return default
    if how == "upgrade":
        return UPGRADES[(old_tp, new_tp)](old)
    if how == "widen":
        return float(old)
    return old


@settings(max_examples=scaled(40, floor=10))
@given(layout=st.sampled_from(LAYOUTS), plan=evolutions(), data=st.data())
def test_data_of_the_old_model_reads_as_the_new_model_says_or_raises(
        store: Any, layout: str, plan: list[tuple[str, str, Any, Any]],
        data: st.DataObject) -> None:
    _count[0] += 1
    prefix = f"prop{_count[0]}"
    old_fields: dict[str, Any] = {}
    new_fields: dict[str, Any] = {}
    old_values: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    fails = False
    for name, how, old_tp, new_tp in plan:
        if how not in ("add", "add_required"):
            old_fields[name] = value(layout, old_tp)
            old_values[name] = data.draw(VALUES[old_tp])
        if how == "remove":
            continue
        new_name = f"new_{name}" if how == "rename" else name
        default = data.draw(VALUES[new_tp]) if how == "add" else None
        if how == "add":
            new_fields[new_name] = value(layout, new_tp, default=default)
        elif how == "rename":
            new_fields[new_name] = value(layout, new_tp, old_names=(name,))
        elif how == "upgrade":
            new_fields[new_name] = value(layout, new_tp, upgrade=UPGRADES[(old_tp, new_tp)])
        else:
            new_fields[new_name] = value(layout, new_tp)
        fails |= how in ("no_upgrade", "add_required")
        expected[new_name] = _expected(how, old_tp, new_tp, old_values.get(name), default)
    old = make(layout, prefix, **old_fields)
    new = make(layout, prefix, **new_fields)
    store.save(old(**old_values, id="1"))
    if fails:
        with pytest.raises(redmodel.DecodeError) as e:
            store.get(new, "1")
        assert e.value.key == key(new, "1")
        return
    obj = store.get(new, "1")
    assert attrs.asdict(obj) == {**expected, "id": "1"}
    store.save(obj)  # renamed values move, removed fields go
    assert stored_names(store, new, "1") <= set(new_fields)
    assert store.get(new, "1") == obj
    store.delete(new, "1")


def test_a_whole_save_after_a_partial_one_still_drops_removed_fields(store: Any) -> None:
    older = make("hash", "later", a=redmodel.field(type=int), gone=redmodel.field(type=str))
    new = redmodel.model(prefix="later", hash_tag=True, track_changes=True)(
        attrs.make_class("Later", {"a": redmodel.field(type=int),
                                   "id": redmodel.key_field(generated=False, type=str)},
                         kw_only=True, slots=True))
    store.save(older(a=1, gone="x", id="1"))
    obj = store.get(new, "1")
    obj.a = 2
    store.save(obj)  # partial: "gone" stays
    assert stored_names(store, new, "1") == {"a", "gone"}
    obj.a = 3
    store.save(obj, force=True)  # whole
    assert stored_names(store, new, "1") == {"a"}
