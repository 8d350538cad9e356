"""Models for test_registry's command-line test: ``Gizmo`` claims ``Gadget``'s prefix."""

from __future__ import annotations

import attrs

import redmodel


@redmodel.model(prefix="gadget")
@attrs.define
class Gadget:
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


@redmodel.model(prefix="gadget")
@attrs.define
class Gizmo:
    color: str
    id: str = redmodel.key_field()
