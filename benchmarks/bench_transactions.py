"""One hot key, many buyers: the WATCH decorator against the one-script Lua path.

Clients are THREADS of this process, each buying from the same hat in a loop for a fixed
time (one shared Store, so one connection pool). Prints a Markdown table of purchases per
second and retries (WATCH conflicts) per purchase under 1, 4 and 16 concurrent clients.

    python benchmarks/bench_transactions.py [--url redis://...] [--quick]

Without ``--url`` (or ``$REDIS_URL``) it starts a throwaway server. ``--quick`` runs each
cell for 0.3 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable

import attrs

import redmodel
from redmodel import transaction
from redmodel.testing import RedisServer
from redmodel.transactions import RetryPolicy, Transaction, TxStats

CLIENTS = (1, 4, 16)
# conflicts are the measurement here, not news: log them at DEBUG
POLICY = RetryPolicy(attempts=1000, backoff_base=0.001, backoff_max=0.05, log_level=logging.DEBUG)


@redmodel.model(prefix="bench_hat")
@attrs.define
class Hat:
    id: str = redmodel.key_field(generated=False)
    quantity: int = 0
    npurchased: int = 0


@transaction(policy=POLICY)
def buy(tx: Transaction, hat_id: str) -> None:
    hat = tx.get_or_raise(Hat, hat_id)  # WATCH, HGETALL
    if hat.quantity <= 0:
        raise RuntimeError("sold out")
    tx.incr(Hat, hat_id, "quantity", -1)  # MULTI, HINCRBY, HINCRBY, EXEC
    tx.incr(Hat, hat_id, "npurchased", 1)


def _measure(clients: int, seconds: float, one_buy: Callable[[], None]) -> tuple[int, float]:
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            one_buy()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.monotonic() - started


def _cell(store: redmodel.Store, path: str, clients: int, seconds: float
          ) -> tuple[float, float]:
    store.save(Hat(id="1", quantity=10**12))
    stats = TxStats()
    if path == "watch":
        bound = buy.bind(store)
        stats = bound.stats

        def one() -> None:
            bound("1")
    else:
        plan = {"quantity": -1, "npurchased": 1}

        def one() -> None:
            store.incr_fields(Hat, "1", plan, floor={"quantity": 0})

    purchases, elapsed = _measure(clients, seconds, one)
    stored = store.get(Hat, "1")
    assert stored is not None and stored.npurchased == purchases, "lost update"
    return purchases / elapsed, stats.conflicts / max(1, purchases)


def run(url: str, quick: bool) -> str:
    """Measure every cell and return the Markdown table."""
    seconds = 0.3 if quick else 3.0
    store = redmodel.Store.from_url(url, max_connections=2 * max(CLIENTS) + 4)
    rows = ["| clients (threads) | WATCH decorator: buys/s | retries per buy "
            "| Lua incr_fields: buys/s | retries per buy |",
            "|---:|---:|---:|---:|---:|"]
    try:
        for clients in CLIENTS:
            w_rate, w_retries = _cell(store, "watch", clients, seconds)
            l_rate, l_retries = _cell(store, "lua", clients, seconds)
            rows.append(f"| {clients} | {w_rate:,.0f} | {w_retries:.2f} "
                        f"| {l_rate:,.0f} | {l_retries:.2f} |")
        store.client.delete("bench_hat:1")
    finally:
        store.close()
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--quick", action="store_true", help="0.3 s per cell")
    args = parser.parse_args()
    if args.url:
        print(run(args.url, args.quick))
        return
    with RedisServer() as server:
        print(f"<!-- {server.version} at {server.url}, {os.cpu_count()} CPUs -->")
        print(run(server.url, args.quick))


if __name__ == "__main__":
    main()
