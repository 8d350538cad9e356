"""Model declarations: options, defaults, and errors raised at declaration time."""

from __future__ import annotations

import typing
from typing import Any

import attrs
import pytest

import redmodel
from redmodel._models._specs import spec_of
from tests.models import Everything, Hat, Restaurant


def test_prefix_defaults_to_snake_case_class_name() -> None:
    @redmodel.model
    @attrs.define
    class PyHat:
        id: str

    assert spec_of(PyHat).prefix == "py_hat"
    assert spec_of(PyHat).key.name == "id"


def test_models_stay_plain_attrs_classes() -> None:
    a = Hat(color="black", price=49.99, style="fitted", id="1")
    b = Hat(color="black", price=49.99, style="fitted", id="1")
    assert a == b
    assert "Hat(color='black'" in repr(a)
    assert attrs.evolve(a, color="green").color == "green"
    assert attrs.has(Hat)
    assert "__slots__" in Hat.__dict__


def test_generated_ids_differ_and_explicit_keys_are_required() -> None:
    assert Hat("a", 1.0, "s").id != Hat("a", 1.0, "s").id
    with pytest.raises(TypeError):
        Restaurant(name="x", type="y", address=None)  # type: ignore[call-arg, arg-type]


def test_key_for_escapes_the_id() -> None:
    assert spec_of(Hat).key_for("56854717") == "hat:56854717"
    assert spec_of(Hat).key_for("a:b*") == "hat:a%3Ab%2A"
    assert spec_of(Restaurant).key_for(484272) == "rest:484272"


def test_empty_and_mistyped_ids_are_rejected() -> None:
    with pytest.raises(redmodel.ValidationError, match="id is empty"):
        spec_of(Hat).key_for("")
    with pytest.raises(redmodel.ValidationError, match="bad id"):
        spec_of(Restaurant).key_for("484272")


def test_no_key_field_is_a_declaration_error() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match="no key field"):

        @redmodel.model
        @attrs.define
        class NoKey:
            name: str


def test_two_key_fields_are_a_declaration_error() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match="more than one key"):

        @redmodel.model
        @attrs.define
        class TwoKeys:
            a: str = redmodel.field(key=True)
            b: str = redmodel.field(key=True)


@pytest.mark.parametrize(
    "tp",
    [typing.Any, object, list, dict[list[int], int], set[typing.Callable[[], None]], complex],
)
def test_unsupported_field_types_fail_at_declaration(tp: object) -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Bad\.value"):
        redmodel.model(attrs.make_class("Bad", {"id": attrs.field(type=str), "value":
                                                 attrs.field(type=tp)}))


def test_non_attrs_class_is_rejected() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match="attrs class"):

        @redmodel.model
        class Plain:
            id: str


def test_stored_names_must_be_unique() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match="stored as 'q'"):

        @redmodel.model
        @attrs.define
        class Clash:
            id: str
            a: int = redmodel.field(name="q")
            q: int = 0


def test_bad_ttl_and_layout_and_prefix() -> None:
    for kwargs in ({"ttl": 0}, {"layout": "tree"}, {"prefix": "a:b"}, {"prefix": ""}):
        with pytest.raises(redmodel.ModelDefinitionError):

            @redmodel.model(**kwargs)  # type: ignore[call-overload]
            @attrs.define
            class M:
                id: str


def test_every_supported_type_is_accepted() -> None:
    spec = spec_of(Everything)
    kinds = {f.name: f.kind for f in spec.fields}
    assert kinds["address"] == "struct"
    assert kinds["maybe_point"] == "encoded"
    assert kinds["tags"] == "encoded"
    assert kinds["number"] == "scalar"
    assert spec.by_name["number"].numeric == "int"
    assert spec.by_name["real"].numeric == "float"
    assert spec.by_name["money"].numeric is None


_NESTED_OPTIONS = [{"index": True}, {"index": "range"}, {"unique": True}, {"key": True}]
_HOLDERS = ["{}", "list[{}]", "dict[str, {}]", "{} | None", "tuple[int, list[{}]]"]


@pytest.mark.parametrize("options", _NESTED_OPTIONS, ids=str)
@pytest.mark.parametrize("holder", _HOLDERS)
@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
def test_an_index_option_on_a_field_of_a_nested_class_is_refused(
        options: dict[str, Any], holder: str, layout: str) -> None:
    """index=/unique=/key= on a field of a nested (non-model) attrs class would do nothing
    (a model indexes its own top-level fields): a ModelDefinitionError at declaration
    naming the field path (attack 29AI's note: it was silently ignored)."""
    inner = attrs.make_class("Inner", {"city": attrs.field(
        type=str, metadata=redmodel.field(**options).metadata)})
    tp = eval(holder.format("inner"), {"inner": inner})
    outer = attrs.make_class("Outer", {"addr": attrs.field(type=tp), "id": attrs.field(
        type=str, default=attrs.Factory(redmodel.new_id), metadata=redmodel.key_field().metadata)})
    with pytest.raises(redmodel.ModelDefinitionError,
                       match=r"Outer\.addr\.city: .* nested class Inner"):
        redmodel.model(prefix="nested_opt", layout=layout)(outer)


@redmodel.model(prefix="nested_own")
@attrs.define
class _Place:
    city: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


@redmodel.model(prefix="nested_holder")
@attrs.define
class _Holder:
    place: _Place
    id: str = redmodel.key_field()


def test_a_nested_model_keeps_its_own_index_options() -> None:
    """A nested class that is a model itself keeps its options (for its own objects):
    nesting it in another model is accepted, and only its own model indexes it."""
    assert _Holder(_Place("Oslo")).place.city == "Oslo"
    assert spec_of(_Place).indexes is not None
    assert spec_of(_Holder).indexes is None
