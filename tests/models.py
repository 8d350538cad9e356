"""Models shared by the tests."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid

import attrs

import redmodel


class Style(enum.Enum):
    FITTED = "fitted"
    HIPSTER = "hipster"
    BASEBALL = "baseball"


class Size(enum.IntEnum):
    S = 1
    M = 2
    L = 3


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str
    price: float
    style: str
    quantity: int = 0
    npurchased: int = 0
    id: str = redmodel.key_field()


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


@attrs.frozen
class Point:
    x: float
    y: float


@redmodel.model
@attrs.define
class Everything:
    """Every supported field type, for round-trip properties."""

    sku: str = redmodel.field(key=True)
    text: str = ""
    number: int = 0
    real: float = 0.0
    flag: bool = False
    blob: bytes = b""
    when: dt.datetime = dt.datetime(2000, 1, 1)
    day: dt.date = dt.date(2000, 1, 1)
    clock: dt.time = dt.time(0, 0)
    money: decimal.Decimal = decimal.Decimal(0)
    uid: uuid.UUID = attrs.field(factory=lambda: uuid.UUID(int=0))
    style: Style = Style.FITTED
    size: Size = Size.S
    maybe_text: str | None = None
    maybe_number: int | None = None
    address: Address = attrs.Factory(lambda: Address(Street("l1"), "c", "s", 1))
    maybe_point: Point | None = None
    tags: list[str] = attrs.Factory(list)
    scores: dict[str, float] = attrs.Factory(dict)
    points: tuple[Point, ...] = ()
    labels: frozenset[str] = frozenset()
    stamps: list[dt.datetime] = attrs.Factory(list)


@redmodel.model(prefix="rest")
@attrs.define
class Restaurant:
    name: str
    type: str
    address: Address
    id: int = redmodel.field(key=True)


@redmodel.model(prefix="session", ttl=60)
@attrs.define
class Session:
    user: str
    id: str = redmodel.key_field()


@redmodel.model(prefix="opt")
@attrs.define
class AllOptional:
    a: str | None = None
    b: int | None = None
    id: str = redmodel.key_field()


def variant(base: type, layout: str, codec: str | None = None, prefix: str | None = None,
            hash_tag: bool = False) -> type:
    """``base`` (an attrs model) re-declared with another layout, model codec, hash tag."""
    name = prefix or f"{base.__name__.lower()}_{layout}_{(codec or 'json').replace('|', '_')}"

    @redmodel.model(prefix=name, layout=layout, codec=codec, hash_tag=hash_tag)
    @attrs.define
    class Variant(base):  # type: ignore[valid-type, misc]
        pass

    Variant.__name__ = Variant.__qualname__ = f"{base.__name__}_{layout}"
    return Variant


LAYOUTS = ("hash", "flat", "blob")
