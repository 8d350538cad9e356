"""Property (fix of attack 23R F1): any str enum value is either storable or refused at
declaration with ModelDefinitionError naming the enum, never a bare UnicodeEncodeError."""
from __future__ import annotations

import enum

import attrs
from hypothesis import example, given
from hypothesis import strategies as st

import redmodel

_CHARS = st.sampled_from(["a", "\u00e9", "\ud800", "\udfff", ":", "{", "*"]) | st.characters(
    exclude_categories=())


@example(["\ud800", "b"])
@given(st.lists(st.text(_CHARS, max_size=5), min_size=1, max_size=4, unique=True))
def test_enum_str_values_are_storable_or_refused_by_name(values: list[str]) -> None:
    kind = enum.Enum("Kind", {f"M{i}": v for i, v in enumerate(values)})  # type: ignore[misc]
    body = {"__annotations__": {"kind": kind, "id": str},
            "kind": redmodel.field(), "id": redmodel.key_field(generated=False)}
    try:
        redmodel.model(prefix="prop23r")(attrs.define(type("Tagged", (), body)))
    except redmodel.ModelDefinitionError as e:
        assert "Kind" in str(e)
        assert any(not _utf8(v) for v in values)
    else:
        assert all(_utf8(v) for v in values)


def _utf8(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
