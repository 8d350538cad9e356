"""Models and migration sets for tests/test_attack16b.py (also imported by the CLI
subprocess as ``--migrations tests.attack16b_set:ATTR``)."""

from __future__ import annotations

import time

import attrs

import redmodel
from redmodel.migrations import Migrations, rebucket, update


@redmodel.model(prefix="a16b_cli")
@attrs.define
class Cn:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a16b_cli", buckets=4)
@attrs.define
class Cn4:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _inc(obj: Cn) -> Cn:
    obj.n += 1
    return obj


def _boom(obj: Cn) -> Cn:
    raise KeyError("user bug")


inc = Migrations("a16b_inc")
inc.add("0001_inc", update(Cn, _inc))

boom = Migrations("a16b_boom")
boom.add("0001_boom", update(Cn, _boom))

move = Migrations("a16b_move")
move.add("0001_rb", rebucket(Cn4, from_buckets=None))


def _slow_inc(obj: Cn) -> Cn:
    time.sleep(0.01)
    obj.n += 1
    return obj


slow = Migrations("a16b_slow", lease=0.5)
slow.add("0001_slow", update(Cn, _slow_inc))

wrong = Migrations("a16b_wrongrb")
wrong.add("0001_rb", rebucket(Cn4, from_buckets=8))
