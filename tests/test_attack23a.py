"""Attack 23a (exact outcomes under faults): single calls of plain, indexed, flat and blob
models, bulk calls, transactions, queues/consumers and typed containers, with replies lost,
cut, dropped and stalled through redmodel.testing's FaultProxy. Each test asserts what the
docs promise and fails on the code it was written against (one finding each, marked
``# F<n>``). The fault outcomes themselves held (see the report); what broke is the edge
the docs draw around every call: arguments checked before anything is sent, every
exception a redmodel or redis-py error, and the proxy's own event log."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import FaultProxy, has
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through

POLICY = FAST_RESEND


@redmodel.model(prefix="a23a")
@attrs.define
class Acct:
    n: int = 0
    f: float = 0.0
    id: str = redmodel.key_field(generated=False)


def _redmodel_or_redis(e: BaseException) -> bool:
    return isinstance(e, (redmodel.RedmodelError, redis.RedisError))


# ---- F1: scan / scan_keys send any `count` to the server ---------------------------------

BAD_COUNTS = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not x.is_integer()
                                                          if math.isfinite(x) else True),
    st.floats(min_value=1, max_value=1e6).filter(lambda x: x.is_integer()),  # 5.0: not an int
    st.text(max_size=3),
    st.none(),
    st.booleans(),
)


@settings(max_examples=scaled(40, floor=10))
@given(count=BAD_COUNTS)
def test_f1_scan_count_is_checked_before_anything_is_sent(store: redmodel.Store,
                                                          count: Any) -> None:
    # F1: scan(Model, count=) / scan_keys(Model, count=) take 0, -1, NaN, 5.5, 2**70, "5",
    # None: they are sent (ServerError "SCAN: syntax error" with keys [], a redis-py
    # DataError, or a silent scan for "5") instead of ValidationError naming the argument.
    """docs/failures.md: "every numeric argument of a public method (a timeout, a ttl, a
    score, a count, an index, ...) is checked before anything is sent, and a NaN, an
    infinity, a wrong type or a value out of range raises ValidationError naming the
    argument and the key"; store.md lists ``scan(Model, count=500)`` and ``scan_keys``."""
    store.save(Acct(id="x"))
    for method in (store.scan, store.scan_keys):
        with pytest.raises(redmodel.ValidationError, match="count"):
            list(method(Acct, count=count))


# ---- F2: incr_fields / incr given a wrong-typed argument raise bare builtin errors -------

@pytest.mark.parametrize("call", [
    pytest.param(lambda s: s.incr_fields(Acct, "a", {"n": 1}, ceiling=8), id="ceiling-int"),
    pytest.param(lambda s: s.incr_fields(Acct, "a", {"n": 1}, floor=[("n", 0)]),
                 id="floor-list"),
    pytest.param(lambda s: s.incr_fields(Acct, "a", [("n", 1)]), id="changes-list"),
    pytest.param(lambda s: s.incr_fields(Acct, "a", {1: 5}), id="changes-int-key"),
    pytest.param(lambda s: s.incr(Acct, "a", 3, 1), id="incr-int-field"),
])
def test_f2_incr_wrong_typed_arguments_are_validation_errors(store: redmodel.Store,
                                                             call: Any) -> None:
    # F2: store.incr_fields(..., ceiling=8) (a number, not a mapping), floor=[...],
    # changes as a list, a change keyed by an int, and store.incr(Model, id, 3, 1) raise a
    # bare AttributeError ("'int' object has no attribute 'items'/'split'").
    """docs/failures.md: "No builtin ... ValueError for a bad argument ... a wrong type ...
    raises ValidationError naming the argument and the key"; ATTACK standard: every
    exception leaving redmodel is a redmodel or redis-py error naming the key."""
    store.save(Acct(n=5, id="a"))
    with pytest.raises(redmodel.ValidationError):
        call(store)
    assert store.get(Acct, "a") == Acct(n=5, id="a")


# ---- F3: delete_many / get_many take a str of ids as its characters -----------------------

def test_f3_delete_many_given_one_id_string_deletes_nothing_else(store: redmodel.Store) -> None:
    # F3: store.delete_many(Acct, "ab") iterates the string and deletes the objects "a" and
    # "b" (returns 2); get_many(Acct, "ab") reads them. A single id passed where the list
    # of ids goes destroys other objects with no error.
    """docs/store.md: ``delete_many(Model, ids)``; "Bad input gets a clear error before the
    first write and loses nothing" (the project's standard). A str is an id, not ids."""
    store.save_many([Acct(id="a"), Acct(id="b"), Acct(id="ab")])
    with pytest.raises(redmodel.ValidationError):
        store.delete_many(Acct, "ab")
    assert store.exists(Acct, "a") and store.exists(Acct, "b") and store.exists(Acct, "ab")
    with pytest.raises(redmodel.ValidationError):
        store.get_many(Acct, "ab")


@pytest.mark.parametrize("call", [
    pytest.param(lambda s: s.get_many(Acct, None), id="get_many-None"),
    pytest.param(lambda s: s.delete_many(Acct, None), id="delete_many-None"),
    pytest.param(lambda s: s.save_many(5), id="save_many-int"),
])
def test_f3_bulk_calls_refuse_a_non_iterable_with_a_redmodel_error(store: redmodel.Store,
                                                                   call: Any) -> None:
    # F3: get_many(Model, None), delete_many(Model, None), save_many(5): bare TypeError
    # ("'NoneType' object is not iterable").
    """The standard: every exception leaving redmodel is a redmodel or redis-py error."""
    with pytest.raises(Exception) as caught:
        call(store)
    assert _redmodel_or_redis(caught.value), repr(caught.value)


# ---- F4: FaultProxy.events does not say which command a lost or cut reply belonged to -----

@pytest.mark.parametrize("kind", ["lose_reply", "cut_reply"])
def test_f4_fault_events_name_the_command_they_fired_on(proxy: FaultProxy, kind: str) -> None:
    # F4: a lose_reply / cut_reply event is recorded with command '' (drop_request and
    # stall record the command's name), so a test cannot tell which command lost its reply.
    """docs/testing.md: "``events`` lists what fired"; FaultEvent's docstring: "A fault that
    fired: its kind, the command it fired on, and when"."""
    store = store_through(proxy, socket_timeout=0.3, resend=POLICY)
    try:
        store.save(Acct(n=1, id="e"))
        getattr(proxy, kind)("EVALSHA", when=has("a23a:e"))
        with pytest.raises(redmodel.OutcomeUnknownError):
            store.incr(Acct, "e", "n", 1)
        assert [(e.kind, e.command) for e in proxy.events] == [(kind, "EVALSHA")]
    finally:
        store.close()


# ---- F5: the exactly-once safety switch takes any truthy value; a bad `resend=` is a bare
# TypeError --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["no", "false", "0", 1, None])
def test_f5_allow_eviction_takes_only_a_bool(value: Any) -> None:
    # F5: ResendPolicy(allow_eviction="no") (a setting read from an env var or a config
    # file) is accepted as allow_eviction=True: the store then writes ids to a server that
    # may evict them, the one risk docs/failures.md says the store refuses by default.
    """docs/failures.md: "every numeric argument ... (a ``ResendPolicy``/``RetryPolicy``
    setting) is checked before anything is sent, and ... a wrong type ... raises
    ValidationError naming the argument"; "``ResendPolicy(allow_eviction=True)`` accepts
    the risk" (True, not any truthy value)."""
    with pytest.raises(redmodel.ValidationError, match="allow_eviction"):
        redmodel.ResendPolicy(allow_eviction=value)


def test_f5_a_wrong_typed_resend_policy_is_a_redmodel_error() -> None:
    # F5: Store(client, resend=3) raises a bare TypeError.
    """The standard: every exception leaving redmodel is a redmodel or redis-py error."""
    client = redis.Redis(host="127.0.0.1", port=1)
    with pytest.raises(redmodel.RedmodelError):
        redmodel.Store(client, resend=3)  # type: ignore[arg-type]
    client.close()


# ---- F6: exactly-once mode's OutcomeUnknownError says the write was not sent again --------

def test_f6_exactly_once_unknown_outcome_does_not_claim_it_was_never_resent(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    # F6: in exactly-once mode an incr whose every reply is lost (its resends and the fence
    # too) raises OutcomeUnknownError (right, with its write_id) whose message says
    # "redmodel did not send it again, as it must not be applied twice": it was sent three
    # times under its write id. A caller reading the message is misled about what happened.
    """docs/failures.md, exactly-once mode: "the store resends such writes itself ... Only
    when even the fence cannot reach the server is the result OutcomeUnknownError, with its
    write_id"."""
    policy = redmodel.ResendPolicy(attempts=3, backoff_base=0.01, backoff_max=0.02,
                                   deadline=3.0, write_id_ttl=30.0)
    store = redmodel.Store(redis.Redis.from_url(proxy.url, socket_timeout=0.3),  # no retry
                           exactly_once=True, resend=policy)
    try:
        store.save(Acct(id="w"))
        store.incr(Acct, "w", "n", 1)          # the eviction check and the script, loaded
        proxy.lose_reply(lambda name: name not in ("CLIENT", "INFO"), times=20)
        with pytest.raises(redmodel.OutcomeUnknownError) as caught:
            store.incr(Acct, "w", "n", 1)
        proxy.clear()
        assert caught.value.write_id
        assert len(proxy.events) > 1            # the write did go again (under its id)
        assert "did not send it again" not in str(caught.value), str(caught.value)
    finally:
        store.close()
    assert redis_client.hget("a23a:w", "n") == b"2"   # applied once, as promised
