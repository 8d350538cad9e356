"""Secondary indexes and queries through every shell (sync, asyncio, cluster with buckets):
writes keep their entries in step, unique values are enforced atomically, expired objects
never appear, bad queries fail before anything is sent."""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest

import redmodel
from redmodel import Q, between, contains, ge, gt, le, lt, one_of
from tests.conftest import dbsize


def declare(buckets: int | None) -> type:
    @redmodel.model(prefix="ihat" if buckets is None else "bhat", buckets=buckets)
    @attrs.define
    class Hat:
        color: str = redmodel.field(index=True)
        style: str = redmodel.field(index=True, default="fitted")
        price: float = redmodel.field(index="range", default=0.0)
        quantity: int = redmodel.field(index="range", default=0)
        sku: str | None = redmodel.field(unique=True, default=None)
        tags: list[str] = redmodel.field(index=True, factory=list)
        note: str = ""
        id: str = redmodel.key_field(generated=False)

    return Hat


HATS = {False: declare(None), True: declare(4)}


@pytest.fixture
def store(any_store: redmodel.Store) -> redmodel.Store:
    """Sync and asyncio stores on one server, and on a three-primary cluster (where the
    model spreads over 4 hash-tagged buckets)."""
    return any_store


@pytest.fixture
def Hat(store: redmodel.Store) -> type:
    return HATS[store.cluster]


def shop(Hat: type) -> list[Any]:
    rows = [("black", "fitted", 49.99, 10, ["a", "b"]), ("black", "hipster", 29.0, 0, ["b"]),
            ("green", "fitted", 99.99, 5, []), ("maroon", "baseball", 59.99, 1, ["a"]),
            ("green", "baseball", 10.0, 7, ["c"]), ("white", "hipster", 75.5, 3, [])]
    return [Hat(c, s, p, q, f"S{i}", t, id=f"h{i}") for i, (c, s, p, q, t) in enumerate(rows)]


def ids(objs: Any) -> list[str]:
    return [o.id for o in objs]


def test_every_query_shape(store: redmodel.Store, Hat: type) -> None:
    hats = shop(Hat)
    store.save_many(hats)
    by = {h.id: h for h in hats}

    def expect(pred: Any) -> list[str]:
        return sorted(h.id for h in hats if pred(h))

    assert sorted(ids(store.find(Hat, color="black").all())) == expect(
        lambda h: h.color == "black")
    assert store.find(Hat, color="black").all()[0] == by["h0"], "typed objects back"
    assert sorted(ids(store.find(Hat, price=between(20, 60)).all())) == expect(
        lambda h: 20 <= h.price <= 60)
    assert sorted(store.find(Hat, price=gt(59.99)).ids()) == expect(lambda h: h.price > 59.99)
    assert sorted(store.find(Hat, price=ge(59.99)).ids()) == expect(lambda h: h.price >= 59.99)
    assert sorted(store.find(Hat, quantity=le(3)).ids()) == expect(lambda h: h.quantity <= 3)
    assert sorted(store.find(Hat, color="green", price=lt(50)).ids()) == ["h4"]
    assert sorted(store.find(Hat, Q(color="white") | Q(style="baseball")).ids()) == expect(
        lambda h: h.color == "white" or h.style == "baseball")
    assert sorted(store.find(Hat, ~Q(color="black")).ids()) == expect(
        lambda h: h.color != "black")
    assert sorted(store.find(Hat, color=one_of(["green", "white"])).ids()) == expect(
        lambda h: h.color in ("green", "white"))
    assert sorted(store.find(Hat, tags="a").ids()) == expect(lambda h: "a" in h.tags)
    assert sorted(store.find(Hat, tags=contains("b")).ids()) == ["h0", "h1"]
    assert store.find(Hat, quantity=5).ids() == ["h2"], "equality on a range index"
    top = store.find(Hat).order_by("-price").limit(3).all()
    assert ids(top) == ["h2", "h5", "h3"]
    assert ids(store.find(Hat, style="fitted").order_by("price").all()) == ["h0", "h2"]
    assert ids(store.find(Hat).order_by("price").offset(2).limit(2).all()) == ["h0", "h3"]
    assert store.find(Hat, style="hipster").count() == 2
    assert store.find(Hat).count() == len(hats)
    assert store.find(Hat, color="purple").exists() is False
    assert store.find(Hat, color="black").exists() is True
    first = store.find(Hat).order_by("quantity").first()
    assert first is not None and first.id == "h1"
    assert store.find(Hat, color="purple").first() is None
    assert store.get_by(Hat, sku="S3") == by["h3"]
    assert store.get_by(Hat, sku="nope") is None


def test_writes_keep_the_index_in_step(store: redmodel.Store, Hat: type) -> None:
    hats = shop(Hat)
    store.save_many(hats)
    assert store.update(Hat, "h0", color="white", price=5.0) is True
    assert "h0" in store.find(Hat, color="white").ids()
    assert "h0" not in store.find(Hat, color="black").ids()
    assert store.find(Hat).order_by("price").first().id == "h0"  # type: ignore[union-attr]
    assert store.incr(Hat, "h1", "quantity", 100) == 100
    assert store.find(Hat, quantity=gt(50)).ids() == ["h1"]
    assert store.delete(Hat, "h2") is True
    assert "h2" not in store.find(Hat, color="green").ids()
    assert store.find(Hat).count() == len(hats) - 1
    assert store.delete_many(Hat, ["h3", "h4"]) == 2
    assert sorted(store.find(Hat).ids()) == ["h0", "h1", "h5"]
    assert store.verify(Hat) == []


def test_unique_values_are_enforced_and_nothing_is_written(store: redmodel.Store,
                                                           Hat: type) -> None:
    store.save(Hat("black", sku="A1", id="a"))
    with pytest.raises(redmodel.UniqueViolationError) as info:
        store.save(Hat("green", sku="A1", id="b"))
    assert (info.value.model, info.value.fields, info.value.value) == ("Hat", ("sku",), "A1")
    assert store.get(Hat, "b") is None
    assert store.find(Hat, color="green").count() == 0
    store.save(Hat("green", sku="B2", id="b"))
    with pytest.raises(redmodel.UniqueViolationError):
        store.update(Hat, "b", sku="A1")
    assert store.get(Hat, "b").sku == "B2"  # type: ignore[union-attr]
    store.update(Hat, "a", sku=None)  # releases A1
    store.update(Hat, "b", sku="A1")
    assert store.get_by(Hat, sku="A1").id == "b"  # type: ignore[union-attr]
    assert store.verify(Hat) == []


def test_unique_together(store: redmodel.Store) -> None:
    @redmodel.model(prefix="pair", unique=[("color", "style")],
                    buckets=4 if store.cluster else None)
    @attrs.define
    class Pair:
        color: str
        style: str
        id: str = redmodel.key_field(generated=False)

    store.save(Pair("black", "fitted", id="1"))
    store.save(Pair("black", "hipster", id="2"))
    with pytest.raises(redmodel.UniqueViolationError) as info:
        store.save(Pair("black", "fitted", id="3"))
    assert info.value.value == ("black", "fitted")
    with pytest.raises(redmodel.ValidationError, match="unique together"):
        store.update(Pair, "2", style="fitted")
    assert store.get_by(Pair, color="black", style="hipster").id == "2"  # type: ignore[union-attr]


def test_two_writers_of_different_fields_both_keep_their_change(store: redmodel.Store,
                                                                 Hat: type) -> None:
    store.save(Hat("black", "fitted", 10.0, 1, id="x"))
    first = store.get(Hat, "x")
    second = store.get(Hat, "x")
    first.color = "green"
    second.style = "baseball"
    second.note = "restocked"
    store.save(first)
    store.save(second)
    final = store.get(Hat, "x")
    assert (final.color, final.style, final.note) == ("green", "baseball", "restocked")
    assert store.find(Hat, color="green", style="baseball").ids() == ["x"]
    assert store.find(Hat, color="black").count() == 0
    stale = attrs.evolve(final, color="white")  # never loaded: saved whole
    store.save(stale)
    assert store.verify(Hat) == []


def test_saving_a_tracked_object_deleted_meanwhile_saves_it_whole(store: redmodel.Store,
                                                                    Hat: type) -> None:
    store.save(Hat("black", "fitted", 10.0, 1, id="x"))
    hat = store.get(Hat, "x")
    store.delete(Hat, "x")
    hat.color = "green"
    store.save(hat)
    assert store.get(Hat, "x") == hat
    assert store.find(Hat, color="green").ids() == ["x"]


def test_expired_objects_never_appear_and_the_sweep_removes_them(
        store: redmodel.Store, Hat: type, monkeypatch: pytest.MonkeyPatch) -> None:
    # On a cluster, unique values are claimed in their own buckets; a claim whose owner
    # expired is taken over once it is older than the grace period (10 s; 0.3 s here).
    monkeypatch.setattr("redmodel._indexes._writes.CLAIM_GRACE_MS", 300)
    store.save_many(shop(Hat))
    # 1 s, not 0.15 s: on a loaded machine the object expired before the first count
    started = time.monotonic()
    store.save(Hat("purple", sku="P", tags=["z"], id="gone"), ttl=1.0)
    store.expire(Hat, "h0", 1.0)
    assert store.find(Hat, color="purple").count() == 1
    time.sleep(max(0.0, started + 1.3 - time.monotonic()))
    assert store.find(Hat, color="purple").count() == 0
    assert store.find(Hat, color="purple").all() == []
    assert "h0" not in store.find(Hat).ids()
    assert store.find(Hat).count() == 5
    assert store.get_by(Hat, sku="P") is None
    store.save(Hat("white", sku="P", id="new"))  # the expired object's unique value is free
    assert store.verify(Hat) == []
    client = store.client
    assert not any(b"purple" in k for k in client.scan_iter("*%idx*")), "entries removed"


def test_persist_keeps_an_object_indexed(store: redmodel.Store, Hat: type) -> None:
    store.save(Hat("black", id="k"), ttl=1.0)  # 0.2 s expired before persist under load
    assert store.persist(Hat, "k") is True
    time.sleep(1.1)
    assert store.find(Hat, color="black").ids() == ["k"]


def test_bad_queries_fail_before_anything_is_sent(store: redmodel.Store, Hat: type) -> None:
    cases = [
        ({"colour": "black"}, "not a field"),
        ({"note": "x"}, "not indexed"),
        ({"color": lt("m")}, "range needs index='range'"),
        ({"price": "cheap"}, "expected float"),
        ({"quantity": "many"}, "expected int"),
        ({"color": 7}, "expected str"),
        ({"color": contains("b")}, "not a list"),
    ]
    for filters, message in cases:
        with pytest.raises(redmodel.QueryError, match=message):
            store.find(Hat, **filters)
    with pytest.raises(redmodel.QueryError, match="needs index='range' to sort"):
        store.find(Hat).order_by("color")
    with pytest.raises(redmodel.QueryError, match="no unique constraint"):
        store.get_by(Hat, color="black")

    @redmodel.model(prefix="plain")
    @attrs.define
    class Plain:
        id: str

    with pytest.raises(redmodel.QueryError, match="declares no index"):
        store.find(Plain, id="x")


def test_pages_cover_every_result_once_in_order(store: redmodel.Store, Hat: type) -> None:
    many = [Hat("black", "fitted", float(i % 7), i, id=f"p{i:02d}") for i in range(23)]
    store.save_many(many)
    query = store.find(Hat, color="black").order_by("-price")
    pages = list(query.pages(5))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    flat = [h.id for page in pages for h in page]
    expected = [h.id for h in sorted(many, key=lambda h: (h.price, h.id), reverse=True)]
    assert flat == expected
    unordered = [h.id for page in store.find(Hat).pages(4) for h in page]
    assert unordered == sorted(h.id for h in many)


def test_explain_names_the_commands(store: redmodel.Store, Hat: type) -> None:
    lines = store.find(Hat, color="black", price=lt(50)).order_by("-price").limit(3).explain()
    text = "\n".join(lines)
    assert "EVALSHA" in text and "SMISMEMBER" in text and "eq:color:black" in text
    assert "rng:price" in text and "(50.0" in text and "HGETALL" in text
    assert "sort by price desc" in text


def test_indexed_writes_inside_a_transaction(redis_client: Any) -> None:
    store = redmodel.Store(redis_client)
    Hat = HATS[False]
    store.save(Hat("black", quantity=2, id="t"))

    @store.transaction
    def recolor(tx: redmodel.transactions.Transaction) -> None:
        hat = tx.get_or_raise(Hat, "t")
        tx.update(Hat, "t", color="green", quantity=hat.quantity + 1)

    recolor()
    assert store.find(Hat, color="green", quantity=3).ids() == ["t"]
    assert store.verify(Hat) == []


def test_reindex_existing_data_and_verify(store: redmodel.Store) -> None:
    buckets = 4 if store.cluster else None

    @redmodel.model(prefix="legacy", buckets=buckets)
    @attrs.define
    class Before:
        color: str
        price: float
        id: str = redmodel.key_field(generated=False)

    @redmodel.model(prefix="legacy", buckets=buckets)
    @attrs.define
    class After:
        color: str = redmodel.field(index=True)
        price: float = redmodel.field(index="range")
        id: str = redmodel.key_field(generated=False)

    store.save_many([Before(c, float(i), id=f"l{i}") for i, c in
                     enumerate(["black", "green", "black"] * 5)])
    store.adopt(After)  # a new version of the model (another class name here): two indexes
    with pytest.raises(redmodel.IndexNotReadyError, match="building"):
        store.find(After, color="black").count()  # never a silent 0: no entries yet
    problems = store.verify(After)
    # one line per object (verify now also checks records and the all-ids index, and says
    # "not indexed at all" once instead of once per missing entry)
    assert len(problems) == 15, problems
    assert all("not indexed at all" in p and "2 entries" in p for p in problems)
    assert store.reindex(After, count=4, progress=False) == 15
    assert store.find(After, color="black").count() == 10
    assert store.verify(After) == []
    assert store.reindex(After, progress=False) == 15, "running again is harmless"
    assert store.verify(After) == []


def test_declaration_errors() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match="range index needs"):
        redmodel.model(attrs.make_class("R1", {"id": attrs.field(type=str), "name":
                       redmodel.field(index="range", type=str)}))
    with pytest.raises(redmodel.ModelDefinitionError, match="hash layout"):
        redmodel.model(layout="flat")(attrs.make_class("R2", {"id": attrs.field(type=str),
                       "name": redmodel.field(index=True, type=str)}))
    with pytest.raises(redmodel.ModelDefinitionError, match="buckets=N instead"):
        redmodel.model(hash_tag=True)(attrs.make_class("R3", {"id": attrs.field(type=str),
                       "name": redmodel.field(index=True, type=str)}))
    with pytest.raises(redmodel.ModelDefinitionError, match="only scalar fields"):
        redmodel.model(attrs.make_class("R4", {"id": attrs.field(type=str), "d":
                       redmodel.field(index=True, type=dict[str, int])}))


def test_cluster_buckets_spread_objects_and_merge_sorted_results(
        redis_cluster_client: Any) -> None:
    store = redmodel.Store(redis_cluster_client)
    Hat = HATS[True]
    many = [Hat("black" if i % 2 else "green", price=float(i), id=f"c{i}") for i in range(40)]
    store.save_many(many)
    tags = {store.client.keyslot(redmodel._models._schema.spec_of(Hat).key_for(h.id)) for h in many}
    assert len(tags) == 4, "objects live in 4 bucket slots"
    top = store.find(Hat, color="black").order_by("-price").limit(5).ids()
    assert top == [f"c{i}" for i in (39, 37, 35, 33, 31)]
    assert store.find(Hat).count() == 40
    assert dbsize(redis_cluster_client) > 40
