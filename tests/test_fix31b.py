"""Fix 31B: a container's two-command pops (the pop, then the set-aside of a member that
does not decode, then the put-back when the set-aside is refused or certainly not applied)
end in exactly one of: the member returned; set aside in ``%rejected`` (DecodeError); put
back where it was taken (an error naming both keys); or OutcomeUnknownError naming the
container and ``%rejected`` (the member in one of them, or lost). Never a plain
ConnectionError/TimeoutError once the pop took the member, never a member lost otherwise
(attack 31B F1-F3). ``run_many``/``gather``: a plan's failure no longer stops the others
mid-way (a pop's put-back runs), a batch that asked for ``errors=True`` gets its errors
as values there too, and the raised error's ``results`` hold what every plan came to (a
member another pop returned). A sentinel no value read back equals is refused (F4).

Property: draw the pop (queue left/right, set, blocking), plan or call, alone or in
run_many with other pops and a push, sync or async, exactly-once on or off, which
command faults (pop / set-aside / put-back), the fault (lost reply, cut reply, dropped
request once or always, stall past the socket timeout, refused reconnections) and what
``%rejected`` holds (nothing, or another type); assert each member is exactly once in
container + ``%rejected`` + returned, unless the plan's error is OutcomeUnknownError
naming its container (then at most once)."""

from __future__ import annotations

import asyncio
import decimal
import pickle
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._plan import Batch, PlanResults
from redmodel.containers import Queue, Set, pop_blocking
from tests.budget import scaled
from tests.faults import FAST_RESEND, FAULTS, arm_fault

KEY, OTHER, PUSHED = "pk", "q2", "q3"
BAD, BAD2 = b"bad", b"bad2"
POPS = {b"LPOP", b"RPOP", b"SPOP", b"BLPOP", b"BRPOP"}
PUTS = {b"LPUSH", b"RPUSH", b"SADD"}


def rejected(key: str) -> str:
    return f"{key}:{{{key}}}:%rejected"


def _upper(argv: list[bytes]) -> set[bytes]:
    return {x.upper() for x in argv}


def _which(command: str) -> Any:
    """A ``when=`` predicate for the pop's 1st, 2nd or 3rd command on KEY (a wrapped
    command of exactly-once mode carries the name and keys among its arguments)."""
    rej = rejected(KEY).encode()
    if command == "pop":
        return lambda a: bool(_upper(a) & POPS) and KEY.encode() in a
    if command == "set-aside":
        return lambda a: rej in a
    return lambda a: bool(_upper(a) & PUTS) and KEY.encode() in a and rej not in a


def _arm(proxy: Any, fault: str, command: str) -> None:
    when = _which(command)
    if fault in FAULTS:
        arm_fault(proxy, fault, when)
    else:  # the server goes away at that command: it is dropped, reconnections refused
        proxy.drop_request(lambda c: True, when=when)
        proxy.refuse_connections(3)


def _members(client: Any, key: str) -> list[bytes]:
    kind = client.type(key)
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    if kind == b"set":
        return list(client.smembers(key))
    return []


def _encoded(value: Any) -> bytes | None:
    return None if value is None else str(value).encode()


def _check(client: Any, key: str, members: list[bytes], outcome: Any) -> None:
    """The oracle for one pop's container: each member once in key + %rejected + what the
    pop returned, or at most once when it raised OutcomeUnknownError naming ``key``."""
    held = _members(client, key) + _members(client, rejected(key))
    returned = [] if isinstance(outcome, BaseException) else [_encoded(outcome)]
    if isinstance(outcome, (redis.ConnectionError, redis.TimeoutError)):
        assert isinstance(outcome, redmodel.RedmodelError) or sorted(held) == sorted(
            members), f"a plain {type(outcome).__name__} after the pop took a member"
    for m in members:
        count = held.count(m) + returned.count(m)
        if isinstance(outcome, redmodel.OutcomeUnknownError):
            assert key in outcome.keys, (outcome, outcome.keys)
            assert count <= 1, (m, held, outcome)
        else:
            assert count == 1, (m, held, returned, repr(outcome))
    if isinstance(outcome, redmodel.OutcomeUnknownError) and BAD in members and \
            "did not decode" in str(outcome):
        assert outcome.keys[:2] == (key, rejected(key)), outcome.keys


def _plans(store: Any, how: str, with_others: str) -> list[Any]:
    container: Any = Set(store, KEY, int) if how == "set" else Queue(store, KEY, int)
    plan = container.pop_right_plan() if how == "right" else container.pop_plan()
    plans = [plan]
    if with_others in ("pop", "both"):
        plans.append(Queue(store, OTHER, int).pop_plan())
    if with_others in ("push", "both"):
        plans.append(Queue(store, PUSHED, int).push_plan(7))
    return plans


def _call(store: Any, how: str, via: str, with_others: str) -> list[Any]:
    """Each plan's outcome (its result, or the exception it ended in), in plan order."""
    try:
        if how.startswith("blocking"):
            got = pop_blocking(Queue(store, KEY, int), timeout=0.3,
                               right=how == "blocking-right")
            return [None if got is None else got[1]]
        plans = _plans(store, how, with_others)
        if via == "run_many":
            return list(store.run_many(*plans))
        if via == "plan":
            return [store.run(plans[0])]
        container: Any = Set(store, KEY, int) if how == "set" else Queue(store, KEY, int)
        return [container.pop_right() if how == "right" else container.pop()]
    except Exception as e:
        results = getattr(e, "results", None)
        return list(results) if results is not None else [e]


async def _call_async(store: Any, how: str, via: str, with_others: str) -> list[Any]:
    try:
        if how.startswith("blocking"):
            got = await pop_blocking(Queue(store, KEY, int), timeout=0.3,
                                     right=how == "blocking-right")
            return [None if got is None else got[1]]
        plans = _plans(store, how, with_others)
        if via == "run_many":
            return list(await store.run_many(*plans))
        if via == "plan":
            return [await store.run(plans[0])]
        container: Any = Set(store, KEY, int) if how == "set" else Queue(store, KEY, int)
        return [await (container.pop_right() if how == "right" else container.pop())]
    except Exception as e:
        results = getattr(e, "results", None)
        return list(results) if results is not None else [e]


@settings(max_examples=scaled(150), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(how=st.sampled_from(["left", "right", "set", "blocking-left", "blocking-right"]),
       via=st.sampled_from(["call", "plan", "run_many"]),
       with_others=st.sampled_from(["none", "pop", "push", "both"]),
       shell=st.sampled_from(["sync", "async"]),
       once=st.booleans(),
       command=st.sampled_from(["none", "pop", "set-aside", "put-back"]),
       fault=st.sampled_from(["lose", "cut", "drop", "drop-always", "stall", "refuse"]),
       planted=st.sampled_from([None, "string", "hash"]),
       other_bad=st.booleans())
def test_a_pop_that_took_a_member_never_loses_it_nor_hides_that_it_took_it(
        redis_client: Any, proxy: Any, how: str, via: str, with_others: str, shell: str,
        once: bool, command: str, fault: str, planted: str | None, other_bad: bool) -> None:
    redis_client.flushall()
    if planted == "string":
        redis_client.set(rejected(KEY), "other program")
    elif planted == "hash":
        redis_client.hset(rejected(KEY), "f", "v")
    if how == "set":
        redis_client.sadd(KEY, BAD)
        members = [BAD]
    else:
        members = [BAD, b"2"] if how != "blocking-right" else [b"2", BAD]
        redis_client.rpush(KEY, *members)
    others = [BAD2, b"3"] if other_bad else [b"3"]
    redis_client.rpush(OTHER, *others)
    options: dict[str, Any] = {"exactly_once": once, "resend": FAST_RESEND}
    if shell == "sync":
        store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                           socket_timeout=1.0), **options)
        for k in (KEY, OTHER, PUSHED):
            store.run(Queue(store, k, int).exists_plan()) if k != KEY or how != "set" \
                else Set(store, k, int).exists()
        if command != "none":
            _arm(proxy, fault, command)
        try:
            outcomes = _call(store, how, via, with_others)
        finally:
            store.close()
    else:
        async def run() -> list[Any]:
            astore = redmodel.AsyncStore(redis.asyncio.Redis(
                host=proxy.host, port=proxy.port, socket_timeout=1.0), **options)
            try:
                for k in (KEY, OTHER, PUSHED):
                    await (Set(astore, k, int) if k == KEY and how == "set"
                           else Queue(astore, k, int)).exists()
                if command != "none":
                    _arm(proxy, fault, command)
                return await _call_async(astore, how, via, with_others)
            finally:
                await astore.aclose()
        outcomes = asyncio.run(run())
    proxy.clear()
    assert proxy.quiet()  # a stalled command has landed
    _check(redis_client, KEY, members, outcomes[0])
    if via == "run_many" and with_others in ("pop", "both") and not how.startswith("block"):
        _check(redis_client, OTHER, others, outcomes[1])


@pytest.fixture
def shell(one_server_store: Any) -> Any:
    return one_server_store


@pytest.mark.parametrize("second", ["good", "bad", "push-refused"])
def test_run_many_keeps_every_plan_running_and_gives_back_what_each_came_to(
        shell: Any, second: str) -> None:
    """F1's mechanism: one plan's failure (a pop's DecodeError, a refused push) no longer
    stops the others, and the error's ``results`` hold the member a pop returned; the
    ``results`` are never shown nor pickled."""
    client = shell.client
    client.rpush(KEY, BAD, b"2")
    client.rpush(OTHER, b"5")
    if second == "push-refused":
        client.set(PUSHED, "a string")
        other = Queue(shell, PUSHED, int).push_plan(1)
    elif second == "bad":
        client.delete(OTHER)
        client.rpush(OTHER, BAD2)
        other = Queue(shell, OTHER, int).pop_plan()
    else:
        other = Queue(shell, OTHER, int).pop_plan()
    with pytest.raises(redmodel.RedmodelError) as caught:
        shell.run_many(Queue(shell, KEY, int).pop_plan(), other)
    results = caught.value.results  # type: ignore[attr-defined]
    assert isinstance(results, PlanResults) and len(results) == 2
    assert isinstance(results[0], redmodel.DecodeError)
    assert client.lrange(rejected(KEY), 0, -1) == [BAD]
    if second == "good":
        assert results[1] == 5
    elif second == "bad":
        assert isinstance(results[1], redmodel.DecodeError)
        assert client.lrange(rejected(OTHER), 0, -1) == [BAD2]
    else:
        assert isinstance(results[1], redmodel.ServerError)
    assert "5" not in repr(results) and "results" not in repr(caught.value)
    assert "results" not in pickle.loads(pickle.dumps(caught.value)).__dict__ or \
        list(pickle.loads(pickle.dumps(caught.value)).results) == []


def _asks_errors(key: str) -> Any:
    """A plan as the ``errors=True`` users write them (save_many, delete_many, a
    container's registry claim, the index writes): it reads its own error replies."""
    replies = yield Batch([("INCR", key), ("GET", key)], write=True, keys=(key,),
                          errors=True)
    return [type(r).__name__ if isinstance(r, Exception) else r for r in replies]


def _plain(key: str) -> Any:
    replies = yield Batch([("INCR", key)], write=True, keys=(key,))
    return replies[0]


def test_errors_batches_inside_run_many_are_answered_as_alone(shell: Any) -> None:
    """Every ``errors=True`` user (save_many, delete_many, the container registry's
    claim, the index writes and repairs) gets its error replies as values inside
    run_many, merged with other plans, exactly as alone (before, the merged batch raised
    the first error reply and the plan never saw it)."""
    client = shell.client
    client.set("s", "text")  # INCR refused: WRONGTYPE/not an integer
    alone = shell.run(_asks_errors("s"))
    assert alone == ["ServerError", b"text"]
    assert shell.run_many(_asks_errors("s"), _plain("n")) == [alone, 1]
    with pytest.raises(redmodel.ServerError) as caught:  # a plain plan's error reply
        shell.run_many(_asks_errors("s"), _plain("s"))
    assert caught.value.results[0] == alone  # type: ignore[attr-defined]


@pytest.mark.parametrize("sentinel", [float("nan"), [float("nan")], {"a": float("nan")}],
                         ids=["nan", "list", "dict"])
def test_a_sentinel_that_no_value_read_back_equals_is_refused(store: Any, sentinel: Any
                                                              ) -> None:
    tp = float if isinstance(sentinel, float) else (
        list[float] if isinstance(sentinel, list) else dict[str, float])
    with pytest.raises(redmodel.ValidationError, match="sentinel must equal itself"):
        Queue(store, KEY, tp).consume(sentinel=sentinel, idle_timeout=0.1, signals=())


def test_a_decimal_nan_sentinel_is_refused(store: Any) -> None:
    with pytest.raises(redmodel.ValidationError, match="sentinel"):
        Queue(store, KEY, decimal.Decimal).consume(sentinel=decimal.Decimal("NaN"),
                                                   idle_timeout=0.1, signals=())
    consumer = Queue(store, KEY, float).consume(sentinel=1.5, idle_timeout=0.1, signals=())
    Queue(store, KEY, float).push(1.5)
    assert list(consumer) == [] and consumer.stopped_by == "sentinel"
