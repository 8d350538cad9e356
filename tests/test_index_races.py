"""Secondary indexes under real concurrency: spawned processes, each with its own Store.

- Writers of different fields of the same objects (saves of what changed since ``get``,
  ``update`` and ``incr``) lose no update, and the indexes end up agreeing with the data.
- Processes racing to claim the same unique values: exactly one owner per value, and a
  refused claim writes nothing.
"""

from __future__ import annotations

import queue
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs
import redis

import redmodel
from redmodel import UniqueViolationError, between
from tests import forked
from tests.budget import sized

OBJECTS = [f"h{i}" for i in range(8)]
ROUNDS = sized(30, 60)  # make test-long: 60
COLORS = ["black", "red", "green", "white"]
STYLES = ["fedora", "cap", "beret"]
PRICES = [-1.5, 0.0, 2.25, 9.5, 40.0]
SKUS = [f"S{i}" for i in range(5)]
CLAIMERS = 6
CLAIM_ROUNDS = 8


@redmodel.model(prefix="racehat")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True, default="black")
    style: str = redmodel.field(index=True, default="cap")
    price: float = redmodel.field(index="range", default=0.0)
    quantity: int = redmodel.field(index="range", default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    color_writes: int = 0
    style_writes: int = 0
    id: str = redmodel.key_field(generated=False)


# ---- the processes --------------------------------------------------------------------------


def write_color(store: redmodel.Store, rng: random.Random) -> dict[str, Any]:
    """get, change color and this writer's counter, save(): only those two are sent."""
    last: dict[str, Any] = {}
    for _ in range(ROUNDS):
        for id in OBJECTS:
            hat = store.get(Hat, id)
            assert hat is not None
            hat.color = rng.choice(COLORS)
            hat.color_writes += 1
            store.save(hat)
            last[id] = {"color": hat.color, "color_writes": hat.color_writes}
    return last


def write_style(store: redmodel.Store, rng: random.Random) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for _ in range(ROUNDS):
        for id in OBJECTS:
            hat = store.get(Hat, id)
            assert hat is not None
            hat.style = rng.choice(STYLES)
            hat.style_writes += 1
            store.save(hat)
            last[id] = {"style": hat.style, "style_writes": hat.style_writes}
    return last


def write_price(store: redmodel.Store, rng: random.Random) -> dict[str, Any]:
    """update() without reading."""
    last: dict[str, Any] = {}
    for _ in range(ROUNDS):
        for id in OBJECTS:
            price = rng.choice(PRICES)
            assert store.update(Hat, id, price=price)
            last[id] = {"price": price}
    return last


def add_quantity(store: redmodel.Store, rng: random.Random) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for _ in range(ROUNDS):
        for id in OBJECTS:
            last[id] = {"quantity": store.incr(Hat, id, "quantity", 1)}
    return last


WRITERS: dict[str, Callable[[redmodel.Store, random.Random], dict[str, Any]]] = {
    "color": write_color, "style": write_style, "price": write_price,
    "quantity": add_quantity,
}


def writer_process(url: str, name: str, seed: int, barrier: Any, results: Any) -> None:
    try:
        store = redmodel.Store.from_url(url)
        barrier.wait(timeout=20)
        results.put({"name": name, "last": WRITERS[name](store, random.Random(seed))})
        store.close()
    except BaseException:
        results.put({"error": traceback.format_exc()})


def claimer_process(url: str, n: int, barrier: Any, results: Any) -> None:
    """Claim every sku, round after round, each time with a new object of this process."""
    try:
        store = redmodel.Store.from_url(url)
        rng = random.Random(n)
        won: list[tuple[str, str]] = []
        lost: list[str] = []
        barrier.wait(timeout=20)
        for r in range(CLAIM_ROUNDS):
            for sku in rng.sample(SKUS, len(SKUS)):
                id = f"p{n}-r{r}-{sku}"
                try:
                    store.save(Hat(id=id, sku=sku, color=rng.choice(COLORS)))
                except UniqueViolationError:
                    lost.append(id)
                else:
                    won.append((id, sku))
        results.put({"won": won, "lost": lost})
        store.close()
    except BaseException:
        results.put({"error": traceback.format_exc()})


def run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Start one spawned process per args (each gets a barrier and a queue after them) and
    collect what each reports."""
    # racing processes forked from a fork server that imported this module once (a
    # "spawn" child re-imported redmodel and the module: ~0.5 s of CPU each)
    ctx = forked.forkserver(__name__)
    barrier = ctx.Barrier(len(args))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in procs:
            got = results.get(timeout=25)
            assert "error" not in got, got["error"]
            reports.append(got)
    except queue.Empty:
        raise AssertionError("a process did not report within 25 s") from None
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return reports


# ---- the tests ------------------------------------------------------------------------------


def test_writers_of_different_fields_lose_no_update(redis_server, redis_client: redis.Redis
                                                     ) -> None:
    started = time.monotonic()
    store = redmodel.Store(redis_client)
    for id in OBJECTS:
        store.save(Hat(id=id))
    args = [(redis_server.url, name, seed) for seed, name in enumerate(WRITERS)]
    reports = run_processes(writer_process, args)

    assert store.verify(Hat) == []
    expected = {id: Hat(id=id) for id in OBJECTS}
    for report in reports:
        for id, values in report["last"].items():
            for name, value in values.items():
                setattr(expected[id], name, value)
    for id in OBJECTS:
        assert store.get(Hat, id) == expected[id]
        assert expected[id].color_writes == expected[id].style_writes == ROUNDS
        assert expected[id].quantity == ROUNDS
    for color in COLORS:
        want = sorted(id for id, h in expected.items() if h.color == color)
        assert store.find(Hat, color=color).ids() == want
    for style in STYLES:
        want = sorted(id for id, h in expected.items() if h.style == style)
        assert store.find(Hat, style=style).ids() == want
    want = sorted(id for id, h in expected.items() if 0 <= h.price <= 9.5)
    assert store.find(Hat, price=between(0.0, 9.5)).ids() == want
    assert store.find(Hat, quantity=ROUNDS).count() == len(OBJECTS)
    assert time.monotonic() - started < 30


def test_racing_claims_leave_one_owner_per_unique_value(redis_server, redis_client: redis.Redis
                                                        ) -> None:
    started = time.monotonic()
    store = redmodel.Store(redis_client)
    reports = run_processes(claimer_process, [(redis_server.url, n) for n in range(CLAIMERS)])

    won = [w for r in reports for w in r["won"]]
    lost = [id for r in reports for id in r["lost"]]
    assert len(won) + len(lost) == CLAIMERS * CLAIM_ROUNDS * len(SKUS)
    assert sorted(sku for _, sku in won) == SKUS  # every sku claimed once, and once only
    for id, sku in won:
        assert store.find(Hat, sku=sku).ids() == [id]
        owner = store.get_by(Hat, sku=sku)
        assert owner is not None and owner.id == id
    for id in lost:  # a refused claim wrote nothing
        assert store.get(Hat, id) is None
    assert store.find(Hat).count() == len(SKUS)
    assert store.count(Hat) == len(SKUS)
    assert store.verify(Hat) == []
    assert time.monotonic() - started < 30
