"""Attack 31D: outcomes under faults on every public write path (README + docs/*.md as a
new user reads them). No finding: every promise tried held (see
/work/notes/s31/ATK-D-FINDINGS.md). These tests keep the cheapest of the probes that
held: an indexed (non-bucketed) model with a unique and a range field, a lost reply to
each write's script, both modes. docs/failures.md, "What an error from redmodel means":
the result means "applied exactly once"; `OutcomeUnknownError` "may or may not" (mode
off only for non-resendable writes); and queries.md "How entries stay right": the index
agrees with the data (`verify` is empty)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import redmodel
from redmodel.testing import FaultProxy, has
from tests.faults import FAST_RESEND, store_through


@redmodel.model(prefix="atk31d")
@attrs.define
class Item:
    id: str = redmodel.key_field(generated=False)
    color: str = redmodel.field(index=True, default="red")
    sku: str | None = redmodel.field(unique=True, default=None)
    n: int = redmodel.field(index="range", default=0)


RESENT = {"save", "save_loaded", "save_many", "update", "expire"}


def _act(st: redmodel.Store, op: str) -> Any:
    if op == "save":
        return st.save(Item(id="x", color="blue", sku="B", n=2))
    if op == "save_loaded":
        loaded = st.get(Item, "x")
        assert loaded is not None
        loaded.color, loaded.sku = "blue", "B"
        return st.save(loaded)
    if op == "save_many":
        return st.save_many([Item(id="x", color="blue", sku="B", n=2),
                             Item(id="y", color="green", sku="Y2")])
    if op == "update":
        return st.update(Item, "x", color="blue", sku="B")
    if op == "incr":
        return st.incr(Item, "x", "n", 1)
    if op == "delete":
        return st.delete(Item, "x")
    if op == "delete_many":
        return st.delete_many(Item, ["x", "y"])
    if op == "expire":
        return st.expire(Item, "x", 50)
    return st.persist(Item, "x")


@pytest.mark.parametrize("once", [False, True])
@pytest.mark.parametrize("op", ["save", "save_loaded", "save_many", "update", "incr",
                                "delete", "delete_many", "expire", "persist"])
def test_indexed_writes_under_a_lost_reply_held(proxy: FaultProxy, store: redmodel.Store,
                                                op: str, once: bool) -> None:
    st = store_through(proxy, resend=FAST_RESEND, exactly_once=once)
    st.save(Item(id="x", color="red", sku="A", n=1), ttl=100)
    st.save(Item(id="y", color="red", sku="Y", n=1))
    if op == "save_loaded":
        st.get(Item, "x")
    proxy.lose_reply("EVALSHA", when=has("atk31d:x"))
    try:
        _act(st, op)
    except redmodel.OutcomeUnknownError:
        assert not once and op not in RESENT
    finally:
        st.close()
    assert store.verify(Item) == []
