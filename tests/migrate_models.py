"""Two versions of one model for the migration tests (tests/test_migrate_online.py,
tests/test_migrations.py), and the writer processes of the online test.

Both versions are the class ``tests.migrate_models.Item`` to the model registry (their
``__qualname__`` is set to ``Item``), as the old and the new deploy of one class are: the
registry takes v2 as a new version of v1, not as another model on its prefix.

v1 -> v2: ``price`` (float, e.g. ``12.25``) becomes ``price_cents`` (int): a rename and a
type change (``old_names=`` and ``upgrade=``); ``fragile`` ("yes"/"no" text) becomes a
bool (``upgrade=``); ``legacy`` is removed; ``color`` gets an equality index.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import attrs

import redmodel

PREFIX = "mig_item"


def _cents(v: Any) -> int:
    return round(float(v) * 100)


def _fragile(v: Any) -> bool:
    if v in ("yes", "no"):
        return v == "yes"
    raise ValueError("not yes/no")


def _v1() -> type:
    @redmodel.model(prefix=PREFIX)
    @attrs.define
    class Item:
        price: float
        color: str
        fragile: str = "no"
        legacy: str = "old"
        id: str = redmodel.key_field(generated=False)

    return Item


def _v2() -> type:
    @redmodel.model(prefix=PREFIX)
    @attrs.define
    class Item:
        price_cents: int = redmodel.field(old_names=("price",), upgrade=_cents)
        color: str = redmodel.field(index=True, default="")
        fragile: bool = redmodel.field(default=False, upgrade=_fragile)
        id: str = redmodel.key_field(generated=False)

    return Item


ItemV1: Any = _v1()
ItemV2: Any = _v2()
for _cls in (ItemV1, ItemV2):
    _cls.__qualname__ = "Item"

COLORS = ("red", "green", "blue", "black", "white")


def v1_objects(n: int, start: int = 0) -> list[Any]:
    """n v1 objects, ids ``o<i>``; every price has cents (``i + 0.25``), so no stored
    price reads as an int without the upgrade."""
    return [ItemV1(price=i + 0.25, color=COLORS[i % len(COLORS)],
                   fragile="yes" if i % 3 == 0 else "no", id=f"o{i}")
            for i in range(start, start + n)]


def writer(url: str, me: int, writers: int, n: int, migrating: Any, stop: Any,
           out: str, pause: float, wrote: Any = None) -> None:
    """One writer process (v2 model): until ``stop``, updates the existing objects whose
    number is ``me`` modulo ``writers`` and creates new ones (``w<me>-<k>``), in a mix of
    blind updates, read-modify-save and whole saves of new objects. Writes, as JSON to
    ``out``, the last value it wrote per id and its write latencies (seconds) before and
    during the migration. ``wrote`` (a semaphore) is released after its first write before
    and its first write since ``migrating``, so the test waits for writes, not for time."""
    store = redmodel.Store.from_url(url)
    rng = random.Random(me)
    mine = [f"o{i}" for i in range(me, n, writers)]
    last: dict[str, list[Any]] = {}
    before: list[float] = []
    during: list[float] = []
    created = 0
    counter = 0
    try:
        while not stop.is_set():
            counter += 1
            value = me * 10_000_000 + counter
            color = COLORS[rng.randrange(len(COLORS))]
            op = rng.random()
            phase = during if migrating.is_set() else before
            started = time.perf_counter()
            if op < 0.2:
                oid = f"w{me}-{created}"
                created += 1
                store.save(ItemV2(price_cents=value, color=color, fragile=True, id=oid))
            elif op < 0.6:
                oid = rng.choice(mine)
                store.update(ItemV2, oid, price_cents=value, color=color)
            else:
                oid = rng.choice(mine)
                obj = store.get(ItemV2, oid)
                assert obj is not None
                obj.price_cents = value
                obj.color = color
                store.save(obj)
            phase.append(time.perf_counter() - started)
            if wrote is not None and len(phase) == 1:
                wrote.release()
            last[oid] = [value, color]
            if pause:
                time.sleep(pause)
    finally:
        store.close()
        with open(out, "w") as f:
            json.dump({"last": last, "before": before, "during": during}, f)


def _plain(layout: str, version: int) -> type:
    """Unindexed v1/v2 pairs in each layout (for every shell, cluster included)."""
    tag = layout == "flat"  # a flat object's leaves share its slot on a cluster
    if version == 1:
        @redmodel.model(prefix=f"mig_{layout}", layout=layout, hash_tag=tag)
        @attrs.define
        class Plain:
            qty: float
            note: str = ""
            id: str = redmodel.key_field(generated=False)

        return Plain

    @redmodel.model(prefix=f"mig_{layout}", layout=layout, hash_tag=tag)
    @attrs.define
    class Plain:  # type: ignore[no-redef]
        quantity: int = redmodel.field(old_names=("qty",), upgrade=lambda v: round(float(v)))
        tag: str = ""
        id: str = redmodel.key_field(generated=False)

    return Plain


PLAIN: dict[str, tuple[Any, Any]] = {}
for _layout in ("hash", "flat", "blob"):
    PLAIN[_layout] = (_plain(_layout, 1), _plain(_layout, 2))
    for _cls in PLAIN[_layout]:
        _cls.__qualname__ = f"Plain_{_layout}"
