"""The rule of what incr/incr_fields add to (redmodel._models._specs.increment_kind), as the
mypy plugin reports it. tests/test_incr_rules.py runs every function here against a real
server: each ``bad_*`` raises ValidationError before anything is written, each ``good_*``
works, so the plugin and the run-time check are held to the same rule."""

from __future__ import annotations

import attrs

import redmodel
from redmodel import AsyncStore, Store


@attrs.define
class Box:
    n: int = 0
    sealed: int = redmodel.field(default=0, codec="json")
    plain: int = redmodel.field(default=0, codec=None)


@redmodel.model(prefix="incrrule")
@attrs.define
class Base:
    count: int = 0
    hidden: float = redmodel.field(default=0.0, codec="json")
    box: Box = attrs.Factory(Box)
    maybe: Box | None = None
    flag: bool = False
    id: str = redmodel.field(key=True, factory=lambda: "x")


@redmodel.model(prefix="incrrulec")
@attrs.define
class Child(Base):
    ratio: float = 0.0


def good_sync(store: Store, id: str) -> None:
    store.incr(Child, id, "count", 2)
    store.incr(Child, id, "ratio", 1)
    store.incr(Child, id, "ratio", 0.5)
    store.incr(Child, id, "box.n")
    store.incr(Child, id, "box.plain", -1)
    store.incr_fields(Child, id, {"count": 1, "ratio": 0.5}, floor={"count": 0.5},
                      ceiling={"ratio": 10})


def bad_codec_inherited(store: Store, id: str) -> None:
    store.incr(Child, id, "hidden", 1.0)  # E: incr needs an int or float field; "Child.hidden" is not one (it has a codec)  [redmodel]


def bad_codec_nested(store: Store, id: str) -> None:
    store.incr(Child, id, "box.sealed")  # E: incr needs an int or float field; "Child.box.sealed" is not one (it has a codec)  [redmodel]


def bad_optional_nested(store: Store, id: str) -> None:
    store.incr(Child, id, "maybe.n")  # E: incr needs an int or float field; "Child.maybe.n" is not one ("maybe" is Optional: stored whole)  [redmodel]


def bad_key_by_field_key(store: Store, id: str) -> None:
    store.incr(Child, id, "id")  # E: "Child" has no field "id" to increment  [redmodel]


def bad_bool_field(store: Store, id: str) -> None:
    store.incr(Child, id, "flag")  # E: incr needs an int or float field; "Child.flag" is not one  [redmodel]


def bad_bool_amount(store: Store, id: str) -> None:
    store.incr(Child, id, "ratio", True)  # E: incr adds a number to "Child.ratio", not "bool"  [redmodel]


def bad_float_variable_on_int(store: Store, id: str) -> None:
    amount = 2.0
    store.incr(Child, id, "box.n", amount)  # E: incr of the int field "Child.box.n" needs an int amount, not "float"  [redmodel]


def bad_incr_fields_float_on_int(store: Store, id: str) -> None:
    store.incr_fields(Child, id, {"ratio": 1, "count": 0.5})  # E: incr of the int field "Child.count" needs an int amount, not "float"  [redmodel]


def bad_incr_fields_codec(store: Store, id: str) -> None:
    store.incr_fields(Child, id, {"count": 1}, floor={"hidden": 0})  # E: incr needs an int or float field; "Child.hidden" is not one (it has a codec)  [redmodel]


def bad_incr_fields_key(store: Store, id: str) -> None:
    store.incr_fields(Child, id, {"id": 1})  # E: "Child" has no field "id" to increment  [redmodel]


async def abad_codec(astore: AsyncStore, id: str) -> None:
    await astore.incr(Child, id, "hidden")  # E: incr needs an int or float field; "Child.hidden" is not one (it has a codec)  [redmodel]


async def abad_incr_fields_float_on_int(astore: AsyncStore, id: str) -> None:
    await astore.incr_fields(Child, id, {"count": 1.5})  # E: incr of the int field "Child.count" needs an int amount, not "float"  [redmodel]
