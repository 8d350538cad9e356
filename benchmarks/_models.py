"""The models the benchmarks store: the tutorial's hat and restaurant, and wide models."""

from __future__ import annotations

from typing import Any

import attrs

import redmodel


@attrs.define
class Hat:
    """PyHats.com's hat from the redis-py tutorial (plain attrs; layouts are declared below)."""

    id: str = redmodel.key_field(generated=False)
    color: str
    price: float
    style: str
    quantity: int = 0
    npurchased: int = 0


@redmodel.model(prefix="rmbench_hat")
@attrs.define
class HatHash(Hat):
    pass


@redmodel.model(prefix="rmbench_hatflat", layout="flat")
@attrs.define
class HatFlat(Hat):
    pass


@redmodel.model(prefix="rmbench_hatblob", layout="blob")
@attrs.define
class HatBlob(Hat):
    pass


HAT_BY_LAYOUT: dict[str, type[Hat]] = {"hash": HatHash, "flat": HatFlat, "blob": HatBlob}
HAT_FIELDS = ("color", "price", "style", "quantity", "npurchased")


def hat(cls: type[Hat], i: int) -> Hat:
    return cls(color=("black", "maroon", "green")[i % 3], price=49.99 + i % 50,
               style=("fitted", "hipster", "baseball")[i % 3], quantity=1000 + i % 7,
               npurchased=i % 11, id=str(i))


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


@attrs.define
class Restaurant:
    name: str
    type: str
    address: Address
    id: int = redmodel.field(key=True)


def restaurant_484272() -> Restaurant:
    """The tutorial's nested restaurant."""
    return Restaurant("Ravagh", "Persian",
                      Address(Street("11 E 30th St", "APT 1"), "New York", "NY", 10016),
                      id=484272)


LARGE_MESSAGE = "i have a lot to talk about" * 10000


_WIDE: dict[int, type] = {}
_KEY_METADATA = dict(attrs.fields(HatHash).id.metadata)


def wide_model(nfields: int) -> type:
    """A hash model with ``nfields`` fields (alternating int and str), built once per width."""
    cls = _WIDE.get(nfields)
    if cls is None:
        these: dict[str, Any] = {"id": attrs.field(type=str, metadata=_KEY_METADATA)}
        these.update({f"f{i}": attrs.field(type=int if i % 2 == 0 else str)
                      for i in range(nfields)})
        base = attrs.make_class(f"Wide{nfields}", these)
        cls = redmodel.model(prefix=f"rmbench_wide{nfields}")(base)
        _WIDE[nfields] = cls
    return cls


def wide(cls: type, nfields: int, i: int) -> Any:
    values = {f"f{j}": (i + j if j % 2 == 0 else f"value-{j}") for j in range(nfields)}
    return cls(**values, id=str(i))
