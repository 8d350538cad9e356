"""Store.incr (and its AsyncStore mirror) returns the type of the field it adds to."""

import attrs

import redmodel


@attrs.define
class Address:
    city: str
    zip: int


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str
    price: float
    address: Address
    quantity: int = 0
    rating: float | None = None
    id: str = redmodel.key_field()


store = redmodel.Store.from_env()
reveal_type(store.incr(Hat, "x", "quantity"))  # N: Revealed type is "int"
reveal_type(store.incr(Hat, "x", "quantity", -1))  # N: Revealed type is "int"
reveal_type(store.incr(Hat, "x", "price", 0.5))  # N: Revealed type is "float"
reveal_type(store.incr(Hat, "x", "price", 1))  # N: Revealed type is "float"
reveal_type(store.incr(Hat, "x", "rating"))  # N: Revealed type is "float"
reveal_type(store.incr(Hat, "x", "address.zip"))  # N: Revealed type is "int"
left: int = store.incr(Hat, "x", "quantity", -1)
store.incr(Hat, "x", "color")  # E: incr needs an int or float field; "Hat.color" is not one  [redmodel]
store.incr(Hat, "x", "colour")  # E: "Hat" has no field "colour" to increment  [redmodel]
store.incr(Hat, "x", "address.street")  # E: "Hat" has no field "address.street" to increment  [redmodel]


def by_name(name: str, model: type[Hat]) -> None:
    reveal_type(store.incr(Hat, "x", name))  # N: Revealed type is "int | float"
    reveal_type(store.incr(model, "x", "quantity"))  # N: Revealed type is "int"


async def in_asyncio(astore: redmodel.AsyncStore) -> None:
    reveal_type(await astore.incr(Hat, "x", "quantity"))  # N: Revealed type is "int"
    reveal_type(await astore.incr(Hat, "x", "price", 2))  # N: Revealed type is "float"
