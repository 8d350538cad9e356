"""The tutorial's ``buyitem()`` as a redmodel transaction, with concurrent buyers.

``python -m examples.hatshop.buy`` runs against ``$REDIS_URL`` when it is set (writing only
the ``hat:*`` keys of its three hats, deleted at the end), else against a throwaway server
it starts and stops itself.

The tutorial's loop (WATCH, HGET, MULTI, HINCRBY x2, EXEC, retry forever on WatchError)
becomes a decorated function: reads WATCH, writes are queued, conflicts are retried under
a bounded RetryPolicy and counted.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter

import redmodel
from examples._server import example_store
from examples.hatshop import Hat, stock
from redmodel import transaction
from redmodel.transactions import RetryPolicy, Transaction


class OutOfStockError(Exception):
    """Raised when PyHats.com is all out of today's hottest hat."""


@transaction(policy=RetryPolicy(attempts=50, backoff_base=0.001, backoff_max=0.05,
                                log_level=logging.DEBUG))
def buyitem(tx: Transaction, hat_id: str) -> None:
    """WATCH hat:ID, HGETALL hat:ID; then MULTI, HINCRBY x2, EXEC."""
    hat = tx.get_or_raise(Hat, hat_id)
    if hat.quantity <= 0:
        raise OutOfStockError(f"Sorry, {hat_id} is out of stock!")
    tx.incr(Hat, hat_id, "quantity", -1)
    tx.incr(Hat, hat_id, "npurchased", 1)


def main(store: redmodel.Store, *, buyers: int = 12, tries_each: int = 8,
         seed: int = 7, written: list[str] | None = None) -> dict[str, int]:
    """Three hats with little stock, ``buyers`` threads each trying ``tries_each`` buys of
    a random hat; prints and returns the tally (sold, retries, out of stock). The ids of
    the hats it saves are added to ``written``, for the caller to delete."""
    hats = stock()
    for hat, quantity in zip(hats, (30, 20, 10), strict=True):
        hat.quantity = quantity
    if written is not None:
        written += [h.id for h in hats]
    store.save_many(hats)
    ids = [h.id for h in hats]
    buy = buyitem.bind(store)
    tally: Counter[str] = Counter()
    lock = threading.Lock()

    def shopper(n: int) -> None:
        rng = random.Random(seed + n)
        for _ in range(tries_each):
            hat_id = rng.choice(ids)
            try:
                buy(hat_id)
                result = "sold"
            except OutOfStockError:
                result = "out of stock"
            with lock:
                tally[result] += 1

    threads = [threading.Thread(target=shopper, args=(n,)) for n in range(buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stats = buy.stats.snapshot()
    result = {"sold": tally["sold"], "retries": stats["conflicts"],
              "out of stock": tally["out of stock"]}
    print(f"{buyers} buyers x {tries_each} tries on 3 hats ({sum((30, 20, 10))} in stock):")
    for name, value in result.items():
        print(f"  {name:<13}{value}")
    for hat in store.get_many(Hat, ids):
        assert hat is not None
        print(f"  {hat.color:<7} quantity={hat.quantity:<3} npurchased={hat.npurchased}")
        assert hat.quantity >= 0 and hat.quantity + hat.npurchased == {
            h.id: h.quantity for h in hats}[hat.id]
    return result


if __name__ == "__main__":
    with example_store() as store:
        saved: list[str] = []
        try:
            main(store, written=saved)
        finally:
            store.delete_many(Hat, saved)
