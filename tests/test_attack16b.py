"""Second attack on issue 16 (findings in /work/notes/FINDINGS-16b.md): each test states a
promise of docs/migrations.md, docs/containers.md or docs/cli.md about the round-1 fixes."""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import pytest

import redmodel
from redmodel.migrations import Migrations, rebucket, update
from redmodel.testing import FaultProxy


def _model(buckets: int | None) -> Any:
    @redmodel.model(prefix="a16b_rb", buckets=buckets)
    @attrs.define
    class Rb:
        n: int = 0
        id: str = redmodel.key_field(generated=False)

    return Rb


Rb0 = _model(None)
Rb8 = _model(8)


def inc(obj: Any) -> Any:
    obj.n += 1
    return obj


class Stop(Exception):
    pass


IDS = [f"o{i}" for i in range(12)] + ["a:b", "{t}", "x*y", "p%q", "b\\s", "{a}:*%\\"]


def _ns(store: redmodel.Store, model: Any) -> list[int]:
    return sorted(store.get(model, i).n for i in IDS)  # type: ignore[union-attr]


def test_rebucket_then_custom_step_in_one_set_applies_once(redis_client: Any) -> None:
    """migrations.md: "Later steps of the same model in the set (a rewrite, a build_index)
    are checked against the registry as the move will leave it ... a set can hold the
    move and what follows it"; a custom step reaches each object "exactly once when the
    step completes"."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_set")
    m.add("0001_rb", rebucket(Rb8, from_buckets=None))
    m.add("0002_inc", update(Rb8, inc))
    m.apply(redmodel.Store(redis_client), count=5)
    assert _ns(redmodel.Store(redis_client), Rb8) == [1] * len(IDS)


def test_rebucket_stopped_mid_move_then_resumed_with_the_custom_step(redis_client: Any) -> None:
    """migrations.md: "a killed apply leaves the step partial and the prefix moving, and the
    next apply resumes the move where it stopped"; changed counts "objects moved, across
    runs"."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_set2")
    m.add("0001_rb", rebucket(Rb8, from_buckets=None))
    m.add("0002_inc", update(Rb8, inc))
    plan = m.plan(redmodel.Store(redis_client))
    to_move = plan.steps[0].objects

    def stop(p: Any) -> None:
        if p.done > 0:
            raise Stop

    with pytest.raises(Stop):
        m.apply(redmodel.Store(redis_client), count=5, progress=stop)
    assert m.status(redmodel.Store(redis_client)).steps[0].state == "partial"
    recs = m.apply(redmodel.Store(redis_client), count=5)
    assert [r.changed for r in recs] == [to_move, len(IDS)]
    assert _ns(redmodel.Store(redis_client), Rb8) == [1] * len(IDS)


@pytest.mark.parametrize("command", ["EXEC", "HMGET", "UNLINK", "EVALSHA"])
def test_lost_replies_with_odd_ids_apply_a_custom_step_once(redis_server: Any,
                                                            redis_client: Any,
                                                            command: str) -> None:
    """migrations.md: "a custom step is applied at most once to each object, and exactly
    once when the step completes"; lost replies "are resolved by reading"; marker hashes
    "once the step is recorded they are deleted (UNLINK), and a run stopped before that
    deletes them the next time"."""
    redmodel.Store(redis_client).save_many([Rb0(0, id=i) for i in IDS])
    m = Migrations("a16b_lost")
    m.add("0001_inc", update(Rb0, inc))
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        store = redmodel.Store.from_url(proxy.url)
        store.count(Rb0)
        proxy.lose_reply(command, times=2)
        for _ in range(3):
            with contextlib.suppress(redmodel.RedmodelError, ConnectionError, OSError):
                if m.status(store).steps[0].state == "applied":
                    break
                m.apply(store, count=4)
        store.close()
    s = redmodel.Store(redis_client)
    assert m.status(s).steps[0].state == "applied"
    assert _ns(s, Rb0) == [1] * len(IDS)
    m.apply(s)
    assert [k for k in redis_client.scan_iter("a16b_lost*")] == [m.key.encode()]
