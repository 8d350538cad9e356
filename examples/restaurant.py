"""The tutorial's nested restaurant, stored flat (one key per leaf) and as one blob.

``python -m examples.restaurant``: against ``$REDIS_URL`` if set (writing only
``restaurant:*`` and ``restaurant_blob:*`` keys), else a throwaway server.
"""

from __future__ import annotations

import attrs

import redmodel
from examples._server import example_store


@attrs.define
class Street:
    line1: str
    line2: str | None = None


@attrs.define
class Address:
    street: Street
    city: str
    state: str
    zip: int


@redmodel.model(prefix="restaurant", layout="flat")
@attrs.define
class Restaurant:
    name: str
    type: str
    address: Address
    id: int = redmodel.field(key=True)


@redmodel.model(prefix="restaurant_blob", layout="blob", codec="json")
@attrs.define
class RestaurantBlob:
    name: str
    type: str
    address: Address
    id: int = redmodel.field(key=True)


def ravagh() -> dict[str, object]:
    return {
        "name": "Ravagh",
        "type": "Persian",
        "address": Address(Street("11 E 30th St", "APT 1"), "New York", "NY", 10016),
        "id": 484272,
    }


def main(store: redmodel.Store) -> None:
    flat = Restaurant(**ravagh())  # type: ignore[arg-type]
    store.save(flat)
    print("flat layout: one key per leaf (and the manifest at restaurant:484272)")
    for key in sorted(store.client.scan_iter(match="restaurant:484272:*")):
        print(f"  {key.decode():<38} {store.client.get(key)!r}")
    print("GET restaurant:484272:address:street:line1 ->",
          store.client.get("restaurant:484272:address:street:line1"))
    assert store.get(Restaurant, 484272) == flat
    print("read back equal:", store.get(Restaurant, 484272) == flat)

    blob = RestaurantBlob(**ravagh())  # type: ignore[arg-type]
    store.save(blob)
    raw = store.client.get("restaurant_blob:484272")
    print(f"\nblob layout: one key, {len(raw or b'')} bytes: {raw!r}")
    assert store.get(RestaurantBlob, 484272) == blob
    print("read back equal:", store.get(RestaurantBlob, 484272) == blob)


if __name__ == "__main__":
    with example_store() as store:
        main(store)
