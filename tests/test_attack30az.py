"""Attack 30AZ: flat manifests whose skeleton lists an object's fields in another order.

F1: a fixed-shape flat model's generated reader takes leaf values by the model's field
order, not by the names its manifest gives them. A manifest whose skeleton lists the
fields in another order (written by the same model before its fields were reordered in a
deploy, or by another program: the flat layout is for "data whose leaves other programs
read or change with plain GET/SET") reads with the fields' values swapped; the generic
reader reads the same manifest right. docs/layouts.md: "it stores and builds exactly what
the general code does"; "a manifest rewritten whole into another consistent one (a
skeleton and its own lines): that reads as what it says"."""

from __future__ import annotations

from typing import Any

import attrs

import redmodel


@attrs.define
class Spot:
    lat: str = ""
    lon: str = ""


def _pair(order: str) -> Any:
    """The model ``Pair`` (same module and name, so one registry owner) with its fields in
    ``order``: version 1 ("xy") and version 2 ("yx") of one deployed model."""
    if order == "xy":
        @attrs.define
        class Pair:
            x: str = ""
            y: str = ""
            at: Spot = attrs.Factory(Spot)
            id: str = redmodel.field(key=True, default="")
    else:
        @attrs.define
        class Pair:  # type: ignore[no-redef]
            y: str = ""
            x: str = ""
            at: Spot = attrs.Factory(Spot)
            id: str = redmodel.field(key=True, default="")
    Pair.__qualname__ = "Pair"
    return redmodel.model(prefix="atk30az", layout="flat")(Pair)


def test_f1_a_hand_written_manifest_with_fields_in_another_order_reads_as_it_says(
        store: redmodel.Store) -> None:
    """docs/layouts.md: "What this cannot catch is a manifest rewritten whole into another
    consistent one (a skeleton and its own lines): that reads as what it says" and the
    generated reader "stores and builds exactly what the general code does"."""
    Pair = _pair("xy")
    store.save(Pair(x="X", y="Y", at=Spot(lat="N", lon="E"), id="a"))
    # the same leaves, the manifest naming them in another (consistent) order
    store.client.set("atk30az:a", b'{"y":1,"x":1,"at":{"lon":1,"lat":1}}\ny\nx\nat:lon\nat:lat')
    got = store.get(Pair, "a")
    assert got is not None
    assert (got.x, got.y, got.at.lat, got.at.lon) == ("X", "Y", "N", "E"), got


def test_f1_reordering_a_flat_models_fields_in_a_deploy_swaps_their_values(
        redis_client: Any) -> None:
    """The same, written by redmodel itself: version 1 of a model saves, version 2 (the
    same fields and types, declared in another order) reads. docs/layouts.md: the
    generated code "stores and builds exactly what the general code does, which still
    decides anything else (... a stored shape it does not know ...)"."""
    old = _pair("xy")
    redmodel.Store(redis_client).save(old(x="X", y="Y", at=Spot(lat="N", lon="E"), id="a"))
    new = _pair("yx")
    store = redmodel.Store(redis_client)
    got = store.get(new, "a")
    assert got is not None
    assert (got.x, got.y) == ("X", "Y"), got
    many = store.get_many(new, ["a"])
    assert [(o.x, o.y) for o in many] == [("X", "Y")], many
    # a re-save of what was read would write the swapped values for good
    assert store.get(new, "a") == new(x="X", y="Y", at=Spot(lat="N", lon="E"), id="a")
