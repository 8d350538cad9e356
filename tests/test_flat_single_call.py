"""A flat model's single save and get take the single-call path (redmodel._plans._single):
its first batch sent without a plan, and the plan's own rest (``send_write`` /
``read_batch`` given that first reply) only when the script asks for leaves it was not
given (``KEYS``). These tests hold it to the plan it replaces:

- a property over sequences of saves, gets and planted wrong-typed keys (objects of a
  fixed shape and of a varying one, so shapes shrink and grow and manifests go stale):
  the single-call store (database 0) and the plan run directly (database 1) send the same
  batches in the same order, answer the same (result or error), and leave the same keys,
  bytes and expiries; a call whose first reply was no ``KEYS`` runs no plan at all;
- a shrinking object and a stale read continue with the plan (two batches), sync and
  asyncio;
- a lost reply to a flat save is resent after the fence and answers the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._layouts._flat import FlatLayout
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from redmodel._plan import Batch
from redmodel._plans import _objects as _ops
from redmodel.testing import FaultProxy, has
from tests.budget import scaled
from tests.strategies import instances
from tests.test_flat_fast import IDS, MODELS, TTLS, Listy, _dump, _same, objects

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")


class Recording(redmodel.Store):
    """A Store that notes every batch it sends and every plan it runs."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, registry=False)  # every model counts as checked
        self.sent: list[list[Any]] = []
        self.plans = 0
        send = self._execute  # (the store's own attribute: its link's execute)

        def execute(batch: Batch) -> list[Any]:
            self.sent.append(list(batch.commands))
            return send(batch)

        self._execute = execute  # type: ignore[method-assign]

    def run(self, plan: Any) -> Any:
        self.plans += 1
        return super().run(plan)


@pytest.fixture
def pair(redis_url: str, redis_client: redis.Redis) -> Iterator[tuple[Recording, Recording]]:
    """(the single-call store on database 0, a store running the plans on database 1)."""
    other = redis.Redis.from_url(redis_url, db=1)
    other.flushdb()
    fast, slow = Recording(redis_client), Recording(other)
    yield fast, slow
    other.flushdb()
    other.close()


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except redmodel.RedmodelError as e:
        return e


def _same_outcome(a: Any, b: Any) -> bool:
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and str(a) == str(b)
    return _same(a, b)


# few ids, so that objects of one id follow each other in other shapes (KEYS answers)
FEW = st.one_of(st.sampled_from(["a", "x:y", "é"]), IDS)
STEP = st.one_of(
    st.tuples(st.just("save"), st.tuples(objects(), FEW).map(
        lambda t: attrs.evolve(t[0], id=t[1])), TTLS),
    # a varying shape under two ids: its leaves grow and shrink
    st.tuples(st.just("save"), instances(Listy, id=st.sampled_from(["a", "é"]),
                                         tags=st.lists(st.sampled_from(["x", "y"]),
                                                       max_size=4)), TTLS),
    st.tuples(st.just("get"), st.sampled_from(MODELS), FEW),
    st.tuples(st.just("plant"), st.sampled_from(MODELS), FEW,
              st.sampled_from(["", ":text", ":tags:0", ":inner:s"])),
)


@settings(max_examples=scaled(300))
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_single_flat_calls_send_and_answer_what_the_plan_does(
        pair: tuple[Recording, Recording], steps: list[Any]) -> None:
    fast, slow = pair
    fast.client.flushdb()
    slow.client.flushdb()
    for step in steps:
        if step[0] == "plant":  # a wrong-typed key where an object or a leaf goes
            _, model, id_, suffix = step
            key = spec_of(model).key_for(id_) + suffix
            for r in (fast.client, slow.client):
                r.delete(key)
                r.hset(key, "planted", "1")
            continue
        fast.sent.clear()
        slow.sent.clear()
        plans = fast.plans
        if step[0] == "save":
            _, obj, ttl = step
            got = _outcome(fast.save, obj, ttl=ttl)
            want = _outcome(slow.run, _ops.save(obj, ttl, False))
        else:
            _, model, id_ = step
            layout = layout_of(spec_of(model))
            assert isinstance(layout, FlatLayout)
            expect = layout._expect  # what a read declares: the same for both
            got = _outcome(fast.get, model, id_)
            layout._expect = expect
            want = _outcome(slow.run, _ops.get(model, id_))
        assert _same_outcome(got, want), (got, want)
        assert fast.sent == slow.sent  # the same commands, in the same batches
        assert fast.sent or isinstance(got, redmodel.ValidationError)
        if len(fast.sent) == 1:  # no KEYS answer: no plan ran
            assert fast.plans == plans
        assert _dump(fast.client) == _dump(slow.client)


def test_a_shrinking_object_and_a_stale_read_go_on_with_the_plan(
        one_server_store: Any, redis_client: redis.Redis) -> None:
    store = one_server_store  # a Store, or an AsyncStore behind the sync facade
    try:
        assert store.save(Listy(id="s", tags=["a", "b", "c"])) == "fl:s"
        # the stored manifest names 3 tags: the save of 1 tag is told of the other two
        assert store.save(Listy(id="s", tags=["z"])) == "fl:s"
        assert redis_client.exists("fl:s:tags:1", "fl:s:tags:2") == 0
        assert store.get(Listy, "s") == Listy(id="s", tags=["z"])
        # another shape stored behind the read's back: the read expects the last one
        redmodel.Store(redis_client, registry=False).save(
            Listy(id="s", tags=["p", "q", "r", "t"]))
        assert store.get(Listy, "s") == Listy(id="s", tags=["p", "q", "r", "t"])
        assert store.save(Listy(id="s", tags=[])) == "fl:s"
        assert redis_client.keys("fl:s:*") == []
    finally:
        redis_client.delete(*redis_client.keys("fl:s*") or ["fl:s"])


def test_a_lost_reply_to_a_flat_save_is_resent_after_the_fence(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2),
                           resend=redmodel.ResendPolicy(attempts=5, backoff_base=0.01,
                                                        backoff_max=0.05, deadline=8.0))
    try:
        store.save(Listy(id="warm"))  # registry checked, script loaded, id learnt
        proxy.lose_reply("EVALSHA", when=has("fl:lost"))
        assert store.save(Listy(id="lost", tags=["a", "b"])) == "fl:lost"
        assert [e.kind for e in proxy.events if e.kind == "lose_reply"] == ["lose_reply"]
        assert store.get(Listy, "lost") == Listy(id="lost", tags=["a", "b"])
    finally:
        store.close()
        redis_client.delete(*redis_client.keys("fl:*") or ["fl:x"])
