"""The PyHats buy flow under real concurrency: several processes, many threads, one hat.

Each of 6 spawned processes makes its own Store from the server URL and runs 20 buyer
threads at once on a hat with 30 in stock. The WATCH decorator and the Lua path must both
sell exactly the stock: every buyer either bought (and saw a distinct stock level) or got
OutOfStockError.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Any

import attrs
import redis

import redmodel
from redmodel import ConditionFailedError, transaction
from redmodel.transactions import RetryPolicy, Transaction
from tests import forked
from tests.budget import sized

PROCESSES = sized(3, 6)  # 60 buyers for 30 hats under make test, 120 under make test-long
BUYERS = 20  # threads per process
STOCK = 30
# Only a purchase writes the hat, so a buyer can conflict at most STOCK times: more
# attempts than that can never be exhausted.
POLICY = RetryPolicy(attempts=STOCK + 10, backoff_base=0.0005, backoff_max=0.02)


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    id: str = redmodel.key_field(generated=False)
    color: str = ""
    quantity: int = 0
    npurchased: int = 0


class OutOfStockError(Exception):
    """The hat is sold out."""


@transaction(policy=POLICY)
def buy(tx: Transaction, hat_id: str, pause: float) -> tuple[Any, Any]:
    hat = tx.get_or_raise(Hat, hat_id)  # WATCH hat:…; HGETALL hat:…
    if hat.quantity <= 0:
        raise OutOfStockError(hat_id)
    time.sleep(pause)  # widen the window between read and write: more conflicts
    return (tx.incr(Hat, hat_id, "quantity", -1), tx.incr(Hat, hat_id, "npurchased", 1))


def buy_lua(store: redmodel.Store, hat_id: str) -> tuple[int, int]:
    try:
        new = store.incr_fields(Hat, hat_id, {"quantity": -1, "npurchased": 1},
                                    floor={"quantity": 0})
    except ConditionFailedError:
        raise OutOfStockError(hat_id) from None
    return new["quantity"], new["npurchased"]


def _one_buyer(store: redmodel.Store, mode: str, bound: Any, out: list[Any]) -> None:
    try:
        if mode == "watch":
            left, purchased = bound("1", 0.002)
            out.append(("bought", left.value, purchased.value))
        else:
            out.append(("bought", *buy_lua(store, "1")))
    except OutOfStockError:
        out.append(("out", None, None))


def shop_process(url: str, mode: str, barrier: Any, results: Any) -> None:
    """One process: its own Store, BUYERS threads released together."""
    try:
        store = redmodel.Store.from_url(url, max_connections=2 * BUYERS + 4)
        bound = buy.bind(store)
        out: list[Any] = []
        threads = [threading.Thread(target=_one_buyer, args=(store, mode, bound, out))
                   for _ in range(BUYERS)]
        barrier.wait(timeout=20)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.put({"outcomes": out, "stats": bound.stats.snapshot()})
        store.close()
    except BaseException:
        results.put({"error": traceback.format_exc()})


def run_shop(url: str, mode: str) -> tuple[list[Any], dict[str, int]]:
    # racing processes forked from a fork server that imported this module once (a
    # "spawn" child re-imported redmodel and the module: ~0.5 s of CPU each)
    ctx = forked.forkserver(__name__)
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=shop_process, args=(url, mode, barrier, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes: list[Any] = []
    stats: dict[str, int] = {}
    try:
        for _ in procs:
            got = results.get(timeout=25)
            assert "error" not in got, got["error"]
            outcomes += got["outcomes"]
            for name, n in got["stats"].items():
                stats[name] = stats.get(name, 0) + n
    except queue.Empty:
        raise AssertionError("a buyer process did not report within 25 s") from None
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return outcomes, stats


def check_sales(redis_client: redis.Redis, outcomes: list[Any]) -> None:
    assert len(outcomes) == PROCESSES * BUYERS
    bought = [o for o in outcomes if o[0] == "bought"]
    assert len(bought) == STOCK
    assert sum(1 for o in outcomes if o[0] == "out") == PROCESSES * BUYERS - STOCK
    # every purchase saw its own stock level: no lost update, never below zero
    assert sorted(left for _, left, _ in bought) == list(range(STOCK))
    assert all(left + purchased == STOCK for _, left, purchased in bought)
    stored = redis_client.hmget("hat:1", ["quantity", "npurchased"])
    assert stored == [b"0", str(STOCK).encode()]


def test_watch_decorator_sells_exactly_the_stock_under_contention(redis_server, redis_client):
    redmodel.Store(redis_client).save(Hat(id="1", color="black", quantity=STOCK))
    started = time.monotonic()
    outcomes, stats = run_shop(redis_server.url, "watch")
    check_sales(redis_client, outcomes)
    print(f"\nWATCH stress, {PROCESSES} processes x {BUYERS} buyers: {stats}")
    assert stats["conflicts"] > 0, "no WATCH conflict happened: the test proved nothing"
    assert stats["exhausted"] == 0
    assert stats["commits"] == STOCK
    assert stats["attempts"] == stats["commits"] + stats["conflicts"] + stats["errors"]
    assert time.monotonic() - started < 30


def test_lua_path_sells_exactly_the_stock_without_retries(redis_server, redis_client):
    redmodel.Store(redis_client).save(Hat(id="1", color="black", quantity=STOCK))
    outcomes, stats = run_shop(redis_server.url, "lua")
    check_sales(redis_client, outcomes)
    assert stats.get("attempts", 0) == 0  # one script call per buyer, nothing to retry
