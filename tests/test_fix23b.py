"""Properties behind the fixes of attack 23B (tests/test_attack23b.py holds one example of
each finding): each draws the whole kind of input the finding was one case of."""

from __future__ import annotations

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
