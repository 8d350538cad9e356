"""save_many of a sequence encodes its next chunk while the server runs the current one
(redmodel._plan.Batch.meanwhile): the states made ahead are the ones the chunk uses, and
the outcome is exactly that of saving the objects one at a time, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._plans import _objects
from redmodel.testing import FaultProxy, has
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through


@redmodel.model(prefix="ahead")
@attrs.define
class Tagged:
    color: str = redmodel.field(index=True)
    size: int = redmodel.field(index="range", default=0)
    note: str | None = None
    id: str = redmodel.key_field(generated=False)


def _count_taken(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    taken: list[int] = []
    original = _objects._Ahead.take

    def take(self: Any, part: Any) -> Any:
        made = original(self, part)
        if made is not None:
            taken.append(len(made))
        return made
    monkeypatch.setattr(_objects._Ahead, "take", take)
    return taken


def test_a_sequence_s_later_chunks_use_the_states_made_ahead(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks 2..n of a list are made while the one before is written (each is taken);
    a generator's are not pulled early (none taken)."""
    taken = _count_taken(monkeypatch)
    objs = [Tagged(f"c{i % 3}", i, id=str(i)) for i in range(10)]
    assert store.save_many(objs, chunk_size=3) == 10
    assert taken == [3, 3, 1]
    taken.clear()
    assert store.save_many((o for o in objs), chunk_size=3) == 10
    assert taken == []
    assert store.get_many(Tagged, [o.id for o in objs]) == objs
    assert store.verify(Tagged) == []


def test_the_async_store_uses_them_too(redis_url: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    taken = _count_taken(monkeypatch)
    objs = [Tagged(f"c{i % 3}", i, id=str(i)) for i in range(7)]

    async def run() -> Any:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save_many(objs, chunk_size=2)
            return await astore.get_many(Tagged, [o.id for o in objs])

    assert asyncio.run(run()) == objs
    assert taken == [2, 2, 1]


_ops = st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["a", "b", "c"]),
                          st.integers(-3, 3), st.booleans()), min_size=1, max_size=14)


@settings(max_examples=scaled(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops, chunk=st.integers(1, 5), loaded=st.booleans())
def test_save_many_ends_as_saving_one_at_a_time(
        store: redmodel.Store, ops: list[tuple[int, str, int, bool]], chunk: int,
        loaded: bool) -> None:
    """Property: a list with repeated ids (the same object again, or another one of the
    same id), tracked objects loaded by get and changed, any chunk size: the stored
    objects and the index are those of saving each in turn."""
    store.client.flushall()
    base = {i: Tagged("a", 0, id=str(i)) for i in range(5)}
    store.save_many(list(base.values()))
    mine: dict[int, Tagged] = {}
    seq: list[Tagged] = []
    for i, color, size, same in ops:
        if same and i in mine:
            obj = mine[i]  # the same object again, changed since its first place
        elif loaded:
            obj = store.get_or_raise(Tagged, str(i))
        else:
            obj = Tagged("a", 0, id=str(i))
        obj.color, obj.size = color, size
        mine[i] = obj
        seq.append(obj)
    expected = {o.id: (o.color, o.size) for o in seq}  # the last of each id, as it is now
    store.save_many(seq, chunk_size=chunk)
    for oid, (color, size) in expected.items():
        got = store.get_or_raise(Tagged, oid)
        assert (got.color, got.size) == (color, size), (oid, seq)
    assert store.verify(Tagged) == []
    for color in "abc":
        want = sorted(o for o, v in {**{str(i): "a" for i in range(5)},
                                     **{k: v[0] for k, v in expected.items()}}.items()
                      if v == color)
        assert sorted(store.find(Tagged, color=color).ids()) == want


@settings(max_examples=scaled(10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(4, 12), chunk=st.integers(2, 4), lost=st.integers(0, 11),
       fault=st.sampled_from(["lose_reply", "cut_reply", "drop_request"]))
def test_a_chunk_whose_reply_is_lost_while_the_next_is_made_ahead(
        store: redmodel.Store, proxy: FaultProxy, n: int, chunk: int, lost: int,
        fault: str) -> None:
    """Property: the reply of one chunk lost (or cut, or its request dropped) while the
    next chunk is made ahead: save_many ends as saving the objects in order (a whole save
    is resent after its first copy is fenced), or raises an error whose .written are
    stored and whose .not_written were not written; the index stays right."""
    store.client.flushall()
    objs = [Tagged(f"c{i % 3}", i, id=str(i)) for i in range(n)]
    victim = objs[min(lost, n - 1)]
    proxy.clear()
    getattr(proxy, fault)("EVALSHA", when=has(f"ahead:{victim.id}"))
    through = store_through(proxy, resend=FAST_RESEND)
    try:
        through.save_many(objs, chunk_size=chunk)
    except (redmodel.RedmodelError, redis.RedisError) as e:
        for key in getattr(e, "written", None) or ():
            assert store.client.exists(key), (key, e)
        for key in getattr(e, "not_written", None) or ():
            assert not store.client.exists(key), (key, e)
    else:
        assert store.get_many(Tagged, [o.id for o in objs]) == objs
    finally:
        through.close()
    assert proxy.armed == 0  # the fault was met
    assert store.verify(Tagged) == []
