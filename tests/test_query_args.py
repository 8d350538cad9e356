"""Every bad query argument raises QueryError before any command is sent, and the
cross-slot advice for an indexed model names what the library accepts (buckets=N)."""

from __future__ import annotations

import decimal
import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis.cluster

import redmodel
from redmodel import Q, Range, between, ge, gt, le, lt, one_of
from redmodel._indexes._query import MAX_TERMS


@redmodel.model(prefix="arghat")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=0.0)
    quantity: int = redmodel.field(index="range", default=0)
    cost: decimal.Decimal = redmodel.field(index="range", default=decimal.Decimal(0))
    tags: list[str] = redmodel.field(index=True, factory=list)
    id: str = redmodel.key_field(generated=False)


@pytest.fixture
def counted(store: redmodel.Store) -> tuple[redmodel.Store, list[Any]]:
    """A Store that records every batch it would send."""
    sent: list[Any] = []
    execute = store._execute

    def recording(batch: Any) -> list[Any]:
        sent.append(batch)
        return execute(batch)

    store._execute = recording  # type: ignore[method-assign]
    return store, sent


def cases(store: redmodel.Store) -> list[tuple[Callable[[], Any], str]]:
    find = store.find
    return [
        (lambda: lt(None), r"lt\(None\)"),
        (lambda: find(Hat, price=ge(None)), r"ge\(None\)"),
        (lambda: between(None, 5), r"between\(None\)"),
        (lambda: gt(float("nan")), "NaN"),
        (lambda: le(decimal.Decimal("NaN")), "NaN"),
        (lambda: find(Hat, price=Range(float("nan"))), "NaN"),
        (lambda: find(Hat, price=float("nan")), "NaN"),
        (lambda: find(Hat, price=lt(math.inf)), "finite"),
        (lambda: find(Hat, price=ge(-math.inf)), "finite"),
        (lambda: find(Hat, cost=lt(decimal.Decimal("Infinity"))), "finite"),
        (lambda: find(Hat, cost=decimal.Decimal("sNaN")), "NaN"),
        (lambda: find(Hat, quantity=gt(2**60)), r"2\*\*53"),
        (lambda: find(Hat, quantity=-(2**53) - 1), r"2\*\*53"),
        (lambda: find(Hat, color=None), "None is not indexed"),
        (lambda: find(Hat, color=b"red"), "expected str"),
        (lambda: find(Hat, tags=one_of(["a", None])), "None is not indexed"),
        (lambda: one_of("red"), "not a str"),
        (lambda: one_of(b"red"), "not a bytes"),
        (lambda: one_of({"red": 1}), "not a dict"),
        (lambda: one_of(7), "list of values"),  # type: ignore[arg-type]
        (lambda: Q("color"), "Q expressions"),  # type: ignore[arg-type]
        (lambda: find(Hat).page(0), "at least one"),
        (lambda: find(Hat).page(-1), "at least one"),
        (lambda: find(Hat).page(True), "at least one"),
        (lambda: find(Hat).page(2.5), "at least one"),  # type: ignore[arg-type]
        (lambda: find(Hat).pages(0), "at least one"),
        (lambda: find(Hat).limit(-1), "limit"),
        (lambda: find(Hat).limit("3"), "limit"),  # type: ignore[arg-type]
        (lambda: find(Hat).offset(-1), "offset"),
        (lambda: find(Hat).order_by(5), "field name"),  # type: ignore[arg-type]
        (lambda: find(Hat).after("garbage"), "malformed cursor"),
        (lambda: find(Hat).after(("0.5", "h1")), "not tuple"),  # type: ignore[arg-type]
        (lambda: find(Hat).after(b"|0.5|h1"), "not bytes"),  # type: ignore[arg-type]
        (lambda: find(Hat).after("price|abc|h1"), "not a score"),
        (lambda: find(Hat).after("price|nan|h1"), "not a score"),
        (lambda: find(Hat).after("price|inf|h1"), "not a score"),
        (lambda: find(Hat).after("price| 1.5|h1"), "not a score"),
        (lambda: find(Hat).after("price|1_5|h1"), "not a score"),
        (lambda: find(Hat).after("|1.5|h1"), "no score"),
        (lambda: find(Hat).after("||"), "not an escaped id"),
        (lambda: find(Hat).after("||h*1"), "not an escaped id"),
        (lambda: find(Hat).after("||h:1"), "not an escaped id"),
        (lambda: find(Hat).after("||h%zz"), "not an escaped id"),
        (lambda: find(Hat).order_by("price").after("||h1").all(), "ordered by 'id'"),
        (lambda: find(Hat).after("-price|1.5|h1").page(3), "ordered by '-price'"),
        (lambda: find(Hat).order_by("price").after("-price|1.5|h1").ids(), "ordered by"),
        # issue 13 attack, F16: every one of these is checked on the client
        (lambda: between(1, 2, inclusive=True), "two bools"),  # type: ignore[arg-type]
        (lambda: between(1, 2, inclusive=(True, False, True)),  # type: ignore[arg-type]
         "two bools"),
        (lambda: between(1, 2, inclusive=(1, 0)), "two bools"),  # type: ignore[arg-type]
        (lambda: find(Hat, price=Range(1, 2, "yes", True)), "bools"),
        (lambda: find(Hat).order_by("--price"), "single '-'"),
        (lambda: find(Hat).order_by(""), "field name"),
        (lambda: find(Hat).order_by("+price"), "single '-'"),
        (lambda: find(Hat).after("price|\uff11|h1"), "not a score"),
        (lambda: find(Hat).after("price|1\u0662|h1"), "not a score"),
        (lambda: find(Hat, functools.reduce(operator.or_, [Q(color=f"c{i}")
                                                            for i in range(MAX_TERMS + 1)])),
         f"at most {MAX_TERMS}"),
        (lambda: find(Hat, color=one_of([f"c{i}" for i in range(MAX_TERMS + 1)])),
         f"at most {MAX_TERMS}"),
        (lambda: find(Hat, functools.reduce(lambda q, i: ~(q & Q(color=f"c{i}")), range(40),
                                            Q(color="a"))), "levels deep"),
    ]


def test_bad_arguments_raise_before_anything_is_sent(
        counted: tuple[redmodel.Store, list[Any]]) -> None:
    store, sent = counted
    for make, message in cases(store):
        with pytest.raises(redmodel.QueryError, match=message):
            make()
    assert sent == [], "a bad query sent commands"


def test_good_edge_arguments_still_work(store: redmodel.Store) -> None:
    store.save_many([Hat("red", 0.1 + 0.2, 2**53, id="a"), Hat("blue", 0.3, -(2**53), id="b"),
                     Hat("green", -0.0, 0, tags=["x"], id="c")])
    assert store.find(Hat, color=one_of([])).all() == []
    assert store.find(Hat, color=one_of(("red", "red"))).ids() == ["a"]
    assert store.find(Hat, color=one_of({"red", "blue"})).count() == 2
    assert store.find(Hat, price=Range()).count() == 3, "Range() is every value"
    assert store.find(Hat, quantity=2**53).ids() == ["a"]
    assert store.find(Hat, quantity=le(-(2**53))).ids() == ["b"]
    assert store.find(Hat, price=0.0).ids() == ["c"], "-0.0 == 0.0"
    assert store.find(Hat, price=gt(0.3)).ids() == ["a"]
    page = store.find(Hat).order_by("-price").page(1)
    assert page.cursor is not None
    assert float(page.cursor.split("|")[1]) == 0.1 + 0.2 and page.cursor.endswith("|a")
    assert [h.id for h in store.find(Hat).order_by("-price").after(page.cursor).all()] == [
        "b", "c"]


def test_a_cursor_of_an_id_with_escapes_reads_back(store: redmodel.Store) -> None:
    store.save_many([Hat("red", id=i) for i in ("a:b", "a%b", "{t}", "é")])
    query = store.find(Hat)
    first = query.page(2)
    assert first.cursor is not None
    rest = query.after(first.cursor).ids()
    assert sorted([h.id for h in first.items] + rest) == sorted(["a:b", "a%b", "{t}", "é"])


def test_cross_slot_error_of_an_indexed_model_advises_buckets(
        redis_cluster_client: redis.cluster.RedisCluster) -> None:
    store = redmodel.Store(redis_cluster_client)
    with pytest.raises(redmodel.CrossSlotError, match=r"buckets=N") as info:
        store.save(Hat("red", id="h1"))  # no buckets: its index keys are in other slots
    assert "hash_tag=True" not in str(info.value)


def test_chains_of_one_operator_are_flat_and_run(store: redmodel.Store) -> None:
    """An OR of MAX_TERMS terms built with | is one level (no recursion), within the
    limits."""
    store.save(Hat(f"c{MAX_TERMS - 1}", id="a"))
    q = functools.reduce(operator.or_, [Q(color=f"c{i}") for i in range(MAX_TERMS)])
    assert q.op == "OR" and len(q.terms) == MAX_TERMS
    assert store.find(Hat, q).ids() == ["a"]
    assert (Q(color="a") & Q(price=lt(1)) & Q(quantity=0)).op == "AND"


def test_limit_offset_and_cursor_agree_everywhere(store: redmodel.Store) -> None:
    """F13 and F20 (issue 13 attack), decided: count()/exists()/first() describe what ids()
    gives; a cursor supersedes an earlier offset; an offset after after() skips after the
    cursor."""
    store.save_many([Hat("red", float(i), id=f"h{i}") for i in range(6)])
    q = store.find(Hat).order_by("price")
    assert q.limit(0).ids() == [] and q.limit(0).count() == 0
    assert q.limit(0).exists() is False and q.limit(0).first() is None
    assert q.offset(4).count() == 2 and q.offset(6).exists() is False
    assert q.offset(1).limit(3).count() == 3 and q.limit(10).count() == 6
    page = q.offset(2).page(2)
    assert [h.id for h in page.items] == ["h2", "h3"]
    after = q.offset(2).after(page.cursor)
    assert after.ids() == ["h4", "h5"] and after.count() == 2 and after.exists()
    assert after.offset(1).ids() == ["h5"]
    assert q.after(after.page(2).cursor or "price|5.0|h5").exists() is False
