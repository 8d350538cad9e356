"""PyHats.com from the redis-py tutorial, written with redmodel."""

from __future__ import annotations

import attrs

import redmodel


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str
    price: float
    style: str
    quantity: int = 0
    npurchased: int = 0
    id: str = redmodel.key_field()


def stock() -> list[Hat]:
    """The tutorial's three limited-edition hats."""
    return [
        Hat(color="black", price=49.99, style="fitted", quantity=1000),
        Hat(color="maroon", price=59.99, style="hipster", quantity=500),
        Hat(color="green", price=99.99, style="baseball", quantity=200),
    ]
