"""Arguments of the kinds attack 23a found unchecked, drawn whole: page sizes (``count=``),
field names and the mappings of an increment, the iterable of a bulk call, bool settings
and flags, a consumer's sentinel, what a transaction decorates. Each is refused with
ValidationError naming the argument before anything is sent (proved on stores whose client
points at a port where nothing listens: any send would raise a connection error instead),
through the sync and the asyncio shell; what the docs accept is still accepted on a real
server. And the exactly-once OutcomeUnknownError says how many copies went out."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.containers import Queue, SortedSet
from redmodel.testing import FaultProxy, RedisServer
from redmodel.transactions import RetryPolicy
from tests.budget import scaled

DEAD = 1  # a port where nothing listens: a store that sends anything fails to connect


@redmodel.model(prefix="f23a")
@attrs.define
class Acct:
    n: int = 0
    f: float = 0.0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="f23i")
@attrs.define
class Tagged:
    color: str = redmodel.field(index=True, default="")
    id: str = redmodel.key_field(generated=False)


def _dead(kind: str) -> Any:
    if kind == "sync":
        return redmodel.Store(redis.Redis(host="127.0.0.1", port=DEAD))
    return redmodel.AsyncStore(redis.asyncio.Redis(host="127.0.0.1", port=DEAD))


async def _drain(result: Any) -> Any:
    if inspect.isawaitable(result):
        return await result
    if hasattr(result, "__aiter__"):
        return [x async for x in result]
    return result


def _call(kind: str, call: Callable[[Any], Any]) -> Any:
    """``call(store)`` on a store whose server does not exist, run to the end (an
    iterator drawn, a coroutine awaited)."""
    if kind == "sync":
        result = call(_dead(kind))
        return list(result) if inspect.isgenerator(result) or hasattr(
            result, "__next__") else result

    async def go() -> Any:
        return await _drain(call(_dead(kind)))
    return asyncio.run(go())


def _refused(kind: str, call: Callable[[Any], Any], argument: str) -> None:
    with pytest.raises(redmodel.ValidationError, match=argument):
        _call(kind, call)


KINDS = st.sampled_from(["sync", "async"])

# ---- page sizes ---------------------------------------------------------------------------

BAD_COUNTS = st.one_of(
    st.integers(max_value=0), st.integers(min_value=2**31), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
    st.decimals(allow_nan=False, allow_infinity=False), st.lists(st.integers(1, 9), max_size=2),
)

PAGED: dict[str, Callable[[Any, Any], Any]] = {
    "scan": lambda s, c: s.scan(Tagged, count=c),
    "scan_keys": lambda s, c: s.scan_keys(Tagged, count=c),
    "rotate_keys": lambda s, c: s.rotate_keys(Tagged, count=c),
    "rotate_index_key": lambda s, c: s.rotate_index_key(Tagged, count=c),
    "reindex": lambda s, c: s.reindex(Tagged, count=c),
    "verify": lambda s, c: s.verify(Tagged, count=c),
    "drop_index": lambda s, c: s.drop_index(Tagged, "gone", count=c),
    "migrate_buckets": lambda s, c: s.migrate_buckets(Tagged, from_buckets=4, count=c),
}


@settings(max_examples=scaled(60, floor=20), deadline=None)
@given(kind=KINDS, method=st.sampled_from(sorted(PAGED)), count=BAD_COUNTS)
def test_every_page_size_is_checked_before_anything_is_sent(kind: str, method: str,
                                                            count: Any) -> None:
    """Every ``count=`` of a SCAN-paged method is an int from 1 to 2**31-1: anything else
    (0, negative, past 2**31-1, a bool, a float even if whole, NaN, a str, None...) is a
    ValidationError naming ``count`` and the model, raised before anything is sent."""
    with pytest.raises(redmodel.ValidationError, match="count") as caught:
        _call(kind, lambda s: PAGED[method](s, count))
    assert caught.value.model == "Tagged"


@settings(max_examples=scaled(15, floor=5), deadline=None)
@given(count=st.one_of(st.integers(1, 3), st.integers(1, 2**31 - 1)))
def test_every_valid_page_size_is_accepted(store: redmodel.Store, count: int) -> None:
    """The whole documented range works: scan, scan_keys and verify with any count from
    1 to 2**31-1 find every object."""
    store.save_many([Tagged(color="x", id=str(i)) for i in range(4)])
    assert sorted(o.id for o in store.scan(Tagged, count=count)) == ["0", "1", "2", "3"]
    assert len(list(store.scan_keys(Tagged, count=count))) == 4
    assert store.verify(Tagged, count=count) == []


# ---- increments -----------------------------------------------------------------------------

NOT_STR = st.one_of(st.integers(), st.none(), st.floats(), st.binary(max_size=3),
                    st.lists(st.text(max_size=2), max_size=2), st.tuples(st.text(max_size=2)),
                    st.booleans())
NOT_MAPPING = st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.binary(max_size=3),
                        st.lists(st.tuples(st.just("n"), st.integers()), max_size=2),
                        st.frozensets(st.text(max_size=2), max_size=2))


@settings(max_examples=scaled(60, floor=20), deadline=None)
@given(kind=KINDS, field=NOT_STR, changes=NOT_MAPPING,
       bound=st.sampled_from(["floor", "ceiling"]), key=st.one_of(st.integers(), st.none()))
def test_wrong_typed_increment_arguments_are_refused_before_sending(
        kind: str, field: Any, changes: Any, bound: str, key: Any) -> None:
    """incr's field is a str; incr_fields' changes a mapping of str -> number, its floor
    and ceiling mappings (or None): anything else is ValidationError naming the key,
    before anything is sent."""
    _refused(kind, lambda s: s.incr(Acct, "a", field, 1), "field")
    _refused(kind, lambda s: s.incr_fields(Acct, "a", changes), "changes")
    _refused(kind, lambda s: s.incr_fields(Acct, "a", {"n": 1}, **{bound: changes}), bound)
    _refused(kind, lambda s: s.incr_fields(Acct, "a", {key: 1}), "field")
    _refused(kind, lambda s: s.incr_fields(Acct, "a", {"n": 1}, **{bound: {key: 1}}), "field")
    with pytest.raises(redmodel.ValidationError) as caught:
        _call(kind, lambda s: s.incr_fields(Acct, "a", changes))
    assert caught.value.key == "f23a:a"


# ---- the iterable of a bulk call ------------------------------------------------------------

NOT_IDS = st.one_of(st.text(max_size=4), st.binary(max_size=4), st.integers(), st.none(),
                    st.floats(), st.builds(Acct, id=st.just("z")))


@settings(max_examples=scaled(50, floor=20), deadline=None)
@given(kind=KINDS, given_ids=NOT_IDS)
def test_bulk_calls_refuse_one_id_or_a_non_iterable(kind: str, given_ids: Any) -> None:
    """get_many/delete_many take an iterable of ids and save_many one of objects: a str
    or bytes (one id: iterating it would name its characters' objects) and anything not
    iterable are ValidationError asking for a list, before anything is sent."""
    _refused(kind, lambda s: s.get_many(Acct, given_ids), "ids")
    _refused(kind, lambda s: s.delete_many(Acct, given_ids), "ids")
    _refused(kind, lambda s: s.save_many(given_ids), "objs")


@settings(max_examples=scaled(10, floor=5), deadline=None)
@given(ids=st.lists(st.text(alphabet="ab:{}*%\\", min_size=1, max_size=3), max_size=6),
       shape=st.sampled_from([list, tuple, "generator", "dict", "keys"]))
def test_bulk_calls_take_any_iterable(store: redmodel.Store, ids: list[str],
                                      shape: Any) -> None:
    """What is not refused still works: a list, a tuple, a generator, a dict (its keys)."""
    store.client.flushall()
    store.save_many([Acct(n=len(i), id=i) for i in ids])

    def shaped() -> Any:
        if shape == "generator":
            return (i for i in ids)
        if shape in ("dict", "keys"):
            d = dict.fromkeys(ids)
            return d if shape == "dict" else d.keys()
        return shape(ids)
    unique = list(dict.fromkeys(ids))
    expected = [Acct(n=len(i), id=i) for i in (unique if shape in ("dict", "keys") else ids)]
    assert store.get_many(Acct, shaped()) == expected
    assert store.delete_many(Acct, shaped()) == len(unique)


@pytest.mark.parametrize("call", [
    pytest.param(lambda tx: tx.delete_many(Acct, "ab"), id="delete_many"),
    pytest.param(lambda tx: tx.get_many(Acct, "ab"), id="get_many"),
    pytest.param(lambda tx: tx.save_many(None), id="save_many"),
])
def test_a_transaction_refuses_one_id_too(store: redmodel.Store, call: Any) -> None:
    store.save_many([Acct(id="a"), Acct(id="b"), Acct(id="ab")])
    with pytest.raises(redmodel.ValidationError, match="pass a list"):
        store.transaction(call)()
    assert [o is not None for o in store.get_many(Acct, ["a", "b", "ab"])] == [True] * 3


# ---- bool settings and flags ----------------------------------------------------------------

NOT_BOOL = st.one_of(st.text(max_size=5), st.integers(), st.floats(), st.none(),
                     st.lists(st.booleans(), max_size=1))


@settings(max_examples=scaled(50, floor=20), deadline=None)
@given(kind=KINDS, value=NOT_BOOL)
def test_bool_settings_take_only_a_bool(kind: str, value: Any) -> None:
    """ResendPolicy.allow_eviction, Store/AsyncStore exactly_once and registry take only
    True or False: a "no" or a 0 read from a config file is ValidationError, never a risk
    turned on or a setting silently read as its truthiness; resend= is a ResendPolicy."""
    with pytest.raises(redmodel.ValidationError, match="allow_eviction"):
        redmodel.ResendPolicy(allow_eviction=value)
    cls = redmodel.Store if kind == "sync" else redmodel.AsyncStore
    client = (redis.Redis(port=DEAD) if kind == "sync" else redis.asyncio.Redis(port=DEAD))
    for name in ("exactly_once", "registry"):
        with pytest.raises(redmodel.ValidationError, match=name):
            cls(client, **{name: value})
    if value is not None:
        with pytest.raises(redmodel.ValidationError, match="resend"):
            cls(client, resend=value)
        with pytest.raises(redmodel.ValidationError, match="log_level"):
            RetryPolicy(log_level=value if not isinstance(value, int) else -1)


FLAGGED: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "save": ("force", lambda s, v: s.save(Acct(id="a"), force=v)),
    "reindex": ("restart", lambda s, v: s.reindex(Tagged, restart=v)),
    "add": ("nx", lambda s, v: SortedSet(s, "z", str).add("m", 1.0, nx=v)),
    "add_many": ("lt", lambda s, v: SortedSet(s, "z", str).add_many({"m": 1.0}, lt=v)),
    "rank": ("reverse", lambda s, v: SortedSet(s, "z", str).rank("m", reverse=v)),
    "range": ("reverse", lambda s, v: SortedSet(s, "z", str).range(reverse=v)),
    "range_by_score": ("reverse",
                       lambda s, v: SortedSet(s, "z", str).range_by_score(reverse=v)),
    "pop_blocking": ("right", lambda s, v: Queue(s, "q", str).pop_blocking(1, right=v)),
    "consume": ("reliable", lambda s, v: [Queue(s, "q", str).consume(reliable=v)]),  # not run
}


@settings(max_examples=scaled(60, floor=20), deadline=None)
@given(kind=KINDS, method=st.sampled_from(sorted(FLAGGED)),
       value=NOT_BOOL.filter(lambda v: v is not None))
def test_flags_take_only_a_bool(kind: str, method: str, value: Any) -> None:
    """A method's bool flag given anything but a bool is ValidationError naming it, before
    anything is sent."""
    name, call = FLAGGED[method]
    _refused(kind, lambda s: call(s, value), name)


@settings(max_examples=scaled(30, floor=10), deadline=None)
@given(kind=KINDS, sentinel=st.one_of(st.text(max_size=3), st.floats(), st.binary(max_size=3),
                                      st.lists(st.integers(), max_size=2)),
       fn=st.one_of(st.integers(), st.text(max_size=3), st.none()))
def test_consumer_and_transaction_arguments_are_checked_at_creation(
        kind: str, sentinel: Any, fn: Any) -> None:
    """A sentinel the queue cannot hold (it would never stop the consumer) and a
    transaction decorating something that is not a function are ValidationError when
    they are made."""
    store = _dead(kind)
    with pytest.raises(redmodel.ValidationError, match="sentinel"):
        Queue(store, "q", int).consume(sentinel=sentinel)
    with pytest.raises(redmodel.ValidationError, match="function"):
        redmodel.transaction(store)(fn)
    if fn is not None:
        with pytest.raises(redmodel.ValidationError, match="policy"):
            redmodel.transaction(store, policy=fn)


# ---- the exactly-once unknown outcome says what happened ------------------------------------

def test_exactly_once_unknown_outcome_counts_its_copies(redis_server: RedisServer,
                                                         redis_client: redis.Redis) -> None:
    """Every EVALSHA reply lost (the increment's three copies and the fence): the error
    says the write was sent 3 times under its write id, never that it was not resent;
    the increment is applied once. The same fault without exactly-once says it was not
    sent again."""
    policy = redmodel.ResendPolicy(attempts=3, backoff_base=0.01, backoff_max=0.02,
                                   deadline=3.0, write_id_ttl=30.0)
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        for once in (True, False):
            store = redmodel.Store(redis.Redis.from_url(proxy.url, socket_timeout=0.3),
                                   exactly_once=once, resend=policy)
            try:
                store.save(Acct(id="w"))
                store.incr(Acct, "w", "n", 1)          # scripts loaded, eviction checked
                proxy.lose_reply("EVALSHA", times=50)
                with pytest.raises(redmodel.OutcomeUnknownError) as caught:
                    store.incr(Acct, "w", "n", 1)
                proxy.clear()
            finally:
                store.close()
            text = str(caught.value)
            if once:
                assert caught.value.write_id and caught.value.write_id in text
                assert "sent 3 times under write id" in text, text
                assert "did not send it again" not in text
                assert redis_client.hget("f23a:w", "n") == b"2"
            else:
                assert caught.value.write_id is None
                assert "did not send it again" in text, text
                assert "sent 3 times" not in text
            assert caught.value.keys == ("f23a:w",)
