"""The hat shop end to end: ``make demo`` (or ``python -m examples.hatshop``).

Runs against ``$REDIS_URL`` when it is set, else against a throwaway server it starts and
stops itself. It writes only the ``hat:*`` keys of the hats it creates (and the model
registry's record ``hat:%schema``, if there was none), and deletes them again before it
ends, so a run on your own server leaves it as it was.
"""

from __future__ import annotations

import redmodel
from examples._server import example_store
from examples.hatshop import Hat, stock


def show_stock(store: redmodel.Store, ids: list[str]) -> None:
    hats = [hat for hat in store.get_many(Hat, ids) if hat is not None]
    for hat in sorted(hats, key=lambda h: h.price):
        print(f"  {hat.id}  {hat.color:<7} {hat.style:<9} ${hat.price:>6.2f}"
              f"  quantity={hat.quantity:<5} npurchased={hat.npurchased}")


def main(store: redmodel.Store) -> list[Hat]:
    """The tour; returns the hats as they were at the end (before the clean-up)."""
    written: list[str] = []  # every hat this run saves, deleted again at the end
    # the model registry's record of the prefix (docs/migrations.md), unless it was there
    recorded = store.client.exists("hat:%schema")
    try:
        return tour(store, written)
    finally:
        removed = store.delete_many(Hat, written)
        if not recorded:
            store.unregister(Hat)
        print(f"\ncleaned up: deleted the {removed} hats this run saved")


def tour(store: redmodel.Store, written: list[str]) -> list[Hat]:
    hats = stock()
    written += [h.id for h in hats]
    print(f"saving {len(hats)} hats in one pipelined round trip")
    store.save_many(hats)

    black = hats[0]
    key = f"hat:{black.id}"
    print(f"\nHGETALL {key} (what redis-cli sees):")
    for field, value in store.client.hgetall(key).items():
        print(f"  {field.decode():<11} {value!r}")

    print("\nread back as typed objects:")
    show_stock(store, written)
    loaded = store.get(Hat, black.id)
    assert loaded == black, (loaded, black)
    print(f"\nstore.get(Hat, {black.id!r}) == the saved hat: {loaded == black}")

    print("\none sale, atomically: one script call checks the stock and moves both counters")
    sold = store.incr_fields(Hat, black.id, {"quantity": -1, "npurchased": 1},
                             floor={"quantity": 0})
    print(f"  incr_fields(..., floor={{'quantity': 0}}) -> {sold}")
    print("store.get(Hat, 'no-such-hat') ->", store.get(Hat, "no-such-hat"))

    from examples.hatshop import buy  # noqa: PLC0415 - the concurrent buy flow

    print("\nconcurrent buyers through the transaction decorator:")
    buy.main(store, written=written)

    print("\nfinal stock:")
    show_stock(store, written)
    return [hat for hat in store.get_many(Hat, written) if hat is not None]


if __name__ == "__main__":
    with example_store() as store:
        main(store)
