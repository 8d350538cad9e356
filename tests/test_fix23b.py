"""Properties behind the fixes of attack 23B (tests/test_attack23b.py holds one example of
each finding): each draws the whole kind of input the finding was one case of."""

from __future__ import annotations

import enum
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled


@redmodel.model(prefix="fx23c")
@attrs.define
class Row:
    color: str = redmodel.field(index=True, default="red")
    price: float = redmodel.field(index="range", default=1.0)
    id: str = redmodel.key_field(generated=False)


# any character (lone surrogates too), the ones the escaping is about, and escapes good and bad
PIECES = st.one_of(st.characters(), st.characters(categories=["Cs"]),
                   st.sampled_from([*list("%|{}*?[]\\:\x1e\x1f\n"), "%4A", "%zz", "%C3%A9"]))


# F2: any forged cursor is either accepted (and then runs) or a QueryError before any
# command is sent, whatever its id part holds.
@given(eid=st.lists(PIECES, max_size=6).map("".join),
       order=st.sampled_from([None, "price", "-price"]),
       filtered=st.booleans())
@settings(max_examples=scaled(50, floor=10))
def test_a_forged_cursor_is_a_query_error_or_runs(
        store: redmodel.Store, eid: str, order: str | None, filtered: bool) -> None:
    sent: list[Any] = []
    execute = store._execute

    def recording(batch: Any) -> list[Any]:
        sent.append(batch)
        return execute(batch)

    store._execute = recording  # type: ignore[method-assign]
    base = store.find(Row, color="red") if filtered else store.find(Row)
    query = base if order is None else base.order_by(order)
    cursor = f"||{eid}" if order is None else f"{order}|1|{eid}"
    try:
        after = query.after(cursor)
        ids = after.ids()
    except redmodel.QueryError:
        assert sent == []
    else:
        assert ids == []
        eid.encode("utf-8", "surrogateescape")      # only text the index can hold was sent


# F5: an enum of any int and str values is accepted exactly when no two members share a
# stored text (a hash field, an index entry and a unique claim all hold that text).
@given(values=st.lists(st.one_of(st.integers(-3, 12), st.integers(),
                                 st.sampled_from(["1", "01", "-0", "0", "a", "", "10", " 1"]),
                                 st.text(max_size=3)),
                       min_size=1, max_size=6, unique_by=lambda v: (type(v), v)),
       option=st.sampled_from([{}, {"index": True}, {"unique": True}]))
@settings(max_examples=scaled(50, floor=10))
def test_an_enum_is_accepted_iff_its_member_texts_differ(
        values: list[Any], option: dict[str, Any]) -> None:
    kind = enum.Enum("Kind", {f"M{i}": v for i, v in enumerate(values)})  # type: ignore[misc]
    texts = [str(v) for v in values]
    body = {"__annotations__": {"kind": kind, "id": str},
            "kind": redmodel.field(**option), "id": redmodel.key_field(generated=False)}
    try:
        redmodel.model(prefix="fx23e")(attrs.define(type("Tagged", (), body)))
    except redmodel.ModelDefinitionError as e:
        assert len(set(texts)) < len(texts)
        assert "enum Kind: members" in str(e)
    else:
        assert len(set(texts)) == len(texts)
