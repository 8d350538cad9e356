"""A model and migration sets for tests/test_attack16a.py (imported by the test and, as
``--migrations tests.attack16a_set:ATTR``, by the CLI subprocess)."""

from __future__ import annotations

import time

import attrs

import redmodel
from redmodel.migrations import Migrations, update


@redmodel.model(prefix="a16_cli")
@attrs.define
class Counter:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _user_bug(obj: Counter) -> Counter:
    raise KeyError("a bug in the user's step")


failing = Migrations("a16_failing")
failing.add("0001_user_bug", update(Counter, _user_bug))


def _slow_increment(obj: Counter) -> Counter:
    time.sleep(0.02)
    obj.n += 1
    return obj


slow = Migrations("a16_slow", lease=5.0)
slow.add("0001_slow_inc", update(Counter, _slow_increment))
