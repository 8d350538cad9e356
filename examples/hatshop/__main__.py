"""The hat shop end to end: ``make demo`` (or ``python -m examples.hatshop``).

Runs against ``$REDIS_URL`` when it is set (writing only ``hat:*`` keys), else against a
throwaway server it starts and stops itself.
"""

from __future__ import annotations

import importlib.util

import redmodel
from examples._server import example_store
from examples.hatshop import Hat, stock


def show_stock(store: redmodel.Store) -> None:
    for hat in sorted(store.scan(Hat), key=lambda h: h.price):
        print(f"  {hat.id}  {hat.color:<7} {hat.style:<9} ${hat.price:>6.2f}"
              f"  quantity={hat.quantity:<5} npurchased={hat.npurchased}")


def main(store: redmodel.Store) -> list[Hat]:
    hats = stock()
    print(f"saving {len(hats)} hats in one pipelined round trip")
    store.save_many(hats)

    black = hats[0]
    key = f"hat:{black.id}"
    print(f"\nHGETALL {key} (what redis-cli sees):")
    for field, value in store.client.hgetall(key).items():
        print(f"  {field.decode():<11} {value!r}")

    print("\nread back as typed objects:")
    show_stock(store)
    loaded = store.get(Hat, black.id)
    assert loaded == black, (loaded, black)
    print(f"\nstore.get(Hat, {black.id!r}) == the saved hat: {loaded == black}")

    print("\none sale by hand, atomically (HINCRBY inside one script call):")
    print("  quantity   ->", store.incr(Hat, black.id, "quantity", -1))
    print("  npurchased ->", store.incr(Hat, black.id, "npurchased", 1))
    print("store.get(Hat, 'no-such-hat') ->", store.get(Hat, "no-such-hat"))

    if importlib.util.find_spec("examples.hatshop.buy") is not None:
        from examples.hatshop import buy  # noqa: PLC0415 - the concurrent buy flow

        print("\nconcurrent buyers through the transaction decorator:")
        buy.main(store)

    print("\nfinal stock:")
    show_stock(store)
    return list(store.scan(Hat))


if __name__ == "__main__":
    with example_store() as store:
        main(store)
