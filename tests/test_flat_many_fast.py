"""save_many's chunk path for one unindexed flat model stores and refuses what the general
chunk path does.

The referee is the general path itself (``_flat_chunk`` turned off), run on a second
database of the same server: after every step both hold the same keys, types, bytes and
expiries, and each call returns the same count or raises the same error (type, text,
``.written``/``.not_written``). Steps plant wrong-typed keys where an object or one of its
leaves goes, and save lists and generators of one model's objects (valid or not, NaN,
huge and surrogate texts, ids with ``: { } * % \\``) in chunks of 1 to 4, with a TTL, none,
or a refused one. A lost reply to the fast chunk is
tests/test_flat_fast.py::test_a_lost_reply_to_a_batched_save_many_never_leaves_half_an_object
(a list of one flat model: this path).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel._plans import _objects
from tests.budget import scaled
from tests.strategies import instances
from tests.test_flat_fast import IDS, Fixed, Listy, _dump, fixed, texts

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

MODELS = (Fixed, Listy)


def _of(model: type) -> st.SearchStrategy[Any]:
    if model is Fixed:
        return fixed()
    return instances(Listy, id=IDS, tags=st.lists(texts, max_size=4))


STEP = st.one_of(
    st.tuples(st.just("plant"), st.sampled_from(MODELS), IDS,
              st.sampled_from(["", ":text", ":number", ":tags:0", ":inner:s"])),
    st.tuples(st.just("many"),
              st.sampled_from(MODELS).flatmap(lambda m: st.lists(_of(m), max_size=6)),
              st.sampled_from([None, 100, -1]), st.booleans(), st.integers(1, 4)),
)


def _outcome(store: redmodel.Store, objs: list[Any], ttl: int | None, listed: bool,
             chunk: int) -> tuple[Any, ...]:
    arg = list(objs) if listed else iter(objs)
    try:
        return ("saved", store.save_many(arg, ttl=ttl, chunk_size=chunk))
    except redmodel.RedmodelError as e:
        return (type(e), str(e), getattr(e, "written", None), getattr(e, "not_written", None),
                getattr(e, "keys", None))


@pytest.fixture
def pair(redis_url: str, redis_client: redis.Redis) -> Iterator[Any]:
    """(store on db 0, client on db 0, store on db 2, client on db 2)."""
    ref = redis.Redis.from_url(redis_url, db=2)
    yield (redmodel.Store(redis_client), redis_client,
           redmodel.Store(redis.Redis.from_url(redis_url, db=2)), ref)
    ref.flushdb()
    ref.close()


@settings(max_examples=scaled(50))
@given(steps=st.lists(STEP, min_size=1, max_size=4))
def test_the_flat_chunk_path_stores_and_refuses_what_the_general_path_does(
        pair: Any, steps: list[Any]) -> None:
    fast, fast_r, general, general_r = pair
    fast_r.flushdb()
    general_r.flushdb()
    for step in steps:
        if step[0] == "plant":  # a wrong-typed key where an object or a leaf goes
            _, model, id_, suffix = step
            key = spec_of(model).key_for(id_) + suffix
            for r in (fast_r, general_r):
                r.delete(key)
                r.hset(key, "planted", "1")
            continue
        _, objs, ttl, listed, chunk = step
        with mock.patch.object(_objects, "_flat_chunk", lambda part: None):
            want = _outcome(general, objs, ttl, listed, chunk)
        got = _outcome(fast, objs, ttl, listed, chunk)
        assert got == want
        assert _dump(fast_r) == _dump(general_r)


def test_the_flat_chunk_path_takes_one_unindexed_flat_model_only() -> None:
    """Which chunks it takes: one flat model's objects; not a mix, not another layout."""
    a, b = Fixed(id="a"), Listy(id="b")
    assert _objects._flat_chunk([a, Fixed(id="c")]) is not None
    assert _objects._flat_chunk([a, b]) is None
    assert _objects._flat_chunk([]) is None
    assert _objects._flat_chunk([object()]) is None
