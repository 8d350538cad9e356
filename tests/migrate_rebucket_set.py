"""Two versions of one indexed model that differ in their bucket count, and the migration
sets of tests/test_migrate_rebucket.py (the CLI runs them as ``--migrations
tests.migrate_rebucket_set:<name>``).

Both versions are ``tests.migrate_rebucket_set.Thing`` to the model registry (their
``__qualname__`` is ``Thing``): v1 keeps plain keys, v2 spreads its objects over 4
buckets. ``moved`` is the set a deploy would ship: the move, then a rewrite of the new
version (a later step of the same model runs after the move, not before it)."""

from __future__ import annotations

from typing import Any

import attrs

import redmodel
from redmodel.migrations import Migrations, rebucket, rewrite

PREFIX = "rb_thing"


def _version(buckets: int | None) -> Any:
    @redmodel.model(prefix=PREFIX, buckets=buckets)
    @attrs.define
    class Thing:
        color: str = redmodel.field(index=True)
        size: int = redmodel.field(index="range", default=0)
        id: str = redmodel.key_field(generated=False)

    Thing.__qualname__ = "Thing"
    return Thing


ThingV1: Any = _version(None)
ThingV2: Any = _version(4)
ThingV8: Any = _version(8)
ThingB2: Any = _version(2)  # an indexed model needs buckets on a cluster: from 2 to 4 there

COLORS = ("red", "green", "blue")


def v1_things(n: int, model: Any = ThingV1) -> list[Any]:
    return [model(color=COLORS[i % 3], size=i, id=f"t{i}") for i in range(n)]


moved = Migrations("rb_set")
moved.add("0001_thing_buckets", rebucket(ThingV2, from_buckets=None))
moved.add("0002_thing_current", rewrite(ThingV2))

# written for a database whose objects were stored with 8 buckets: not this one
mismatch = Migrations("rb_wrong")
mismatch.add("0001_thing_buckets", rebucket(ThingV2, from_buckets=8))
