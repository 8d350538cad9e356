"""Session 23, attack D: ``incr`` calls mypy (with the plugin) passes but that fail at run
time with ValidationError. docs/models.md: "a field that does not exist or is not a number
is an error with code `redmodel`". Each expected error below is missing today (the exact
wording is the fixer's; what matters is a [redmodel] error on the line)."""

import attrs

import redmodel
from redmodel import AsyncStore, Store


@redmodel.model(prefix="atk23d")
@attrs.define
class Hat:
    quantity: int = 0
    secret: int = redmodel.field(default=0, codec="json|fernet")
    id: str = redmodel.key_field()


@redmodel.model(prefix="atk23dn")
@attrs.define
class Num:
    n: int = 0
    id: int = redmodel.key_field(generated=False)


def sync(store: Store) -> None:
    store.incr(Hat, "x", "quantity")
    store.incr(Num, 1, "n")
    # F1: an encrypted int field is not a number in Redis; run time: "only int and float fields can be incremented"
    store.incr(Hat, "x", "secret")  # E: incr needs an int or float field; "Hat.secret" is not one (it has a codec)  [redmodel]
    # F2: the key field is not a stored field; run time: "unknown field 'id' (model Num)"
    store.incr(Num, 1, "id")  # E: "Num" has no field "id" to increment  [redmodel]
    # F3: a float amount on an int field; run time: "an int field is incremented by an int, not float"
    store.incr(Hat, "x", "quantity", 1.5)  # E: incr of the int field "Hat.quantity" needs an int amount, not "float"  [redmodel]


async def in_asyncio(astore: AsyncStore) -> None:
    # F1 on AsyncStore
    await astore.incr(Hat, "x", "secret")  # E: incr needs an int or float field; "Hat.secret" is not one (it has a codec)  [redmodel]
    # F2 on AsyncStore
    await astore.incr(Num, 1, "id")  # E: "Num" has no field "id" to increment  [redmodel]
