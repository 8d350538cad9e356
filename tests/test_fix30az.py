"""Fix for attack 30AZ F1: a fixed-shape flat model's generated reader numbered the leaf
values in the class's field order, while the values arrive in the order the stored
manifest names them; a model version that declares its fields (or a nested class's) in
another order read them swapped. The generated reader now serves a manifest only when its
order is the class's; any other goes by the general code, which matches leaves by name.

Property: for any two declaration orders of the same fields (top level and nested), an
object saved by one version reads back by the other with every field by name, through
``get`` and ``get_many``, whichever version read first (the generated readers are cached
per manifest)."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled

TOP = ("a", "b", "c", "d")
INNER = ("p", "q", "r")


def _version(top: list[str], inner: list[str], n: int) -> Any:
    spot = attrs.make_class(f"Spot{n}", {name: attrs.field(type=str, default="")
                                         for name in inner})
    fields: dict[str, Any] = {name: attrs.field(type=str, default="") for name in top}
    fields["at"] = attrs.field(type=spot, factory=spot)
    fields["id"] = redmodel.field(key=True, default="")
    cls = attrs.make_class("Shape", fields)
    cls.__annotations__ = {**{name: str for name in top}, "at": spot, "id": str}
    return redmodel.model(prefix="fx30az", layout="flat")(cls), spot


@settings(max_examples=scaled(40))
@given(top1=st.permutations(TOP), top2=st.permutations(TOP),
       inner1=st.permutations(INNER), inner2=st.permutations(INNER),
       values=st.lists(st.text(max_size=3), min_size=len(TOP) + len(INNER),
                       max_size=len(TOP) + len(INNER)),
       writer_reads_first=st.booleans())
def test_a_flat_object_reads_by_name_under_any_declaration_order(
        redis_client: Any, top1: list[str], top2: list[str], inner1: list[str],
        inner2: list[str], values: list[str], writer_reads_first: bool) -> None:
    redis_client.flushall()
    store = redmodel.Store(redis_client, registry=False)
    v1, spot1 = _version(top1, inner1, 1)
    v2, spot2 = _version(top2, inner2, 2)
    top_values = dict(zip(TOP, values, strict=False))
    inner_values = dict(zip(INNER, values[len(TOP):], strict=True))
    store.save(v1(at=spot1(**inner_values), id="o", **top_values))
    if writer_reads_first:  # the writer's generated reader is made and cached first
        assert store.get(v1, "o") == v1(at=spot1(**inner_values), id="o", **top_values)
    want = v2(at=spot2(**inner_values), id="o", **top_values)
    assert store.get(v2, "o") == want
    assert store.get_many(v2, ["o"]) == [want]
