"""Attack 31B (containers' two-command pops, consume, set-asides after fixes 30C/30AP):
one test per finding, each asserting what the docs promise, so each fails until the
library is fixed. Notes: /work/notes/s31/ATK-B-FINDINGS.md."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

import redmodel
from redmodel.containers import Queue, Set, pop_blocking
from redmodel.testing import has
from tests.faults import FAST_RESEND, store_through

KEY = "pk"
REJECTED = "pk:{pk}:%rejected"
BAD = b"bad"  # no int's text: does not decode as int


@pytest.fixture
def shell(one_server_store: Any) -> Any:
    return one_server_store


@pytest.mark.parametrize("kind", ["queue", "set"])
def test_f1_run_many_pops_put_back_what_a_refused_set_aside_could_not_keep(
        shell: Any, kind: str) -> None:
    """CHANGELOG Fixed (fix 30C): "A pop whose set-aside the server refuses puts the member
    back"; docs/containers.md: "If the server refuses the push (`%rejected` holds another
    type ...), the pop puts the value back at the end it took it from ... nothing is lost";
    "Every method has a `*_plan` twin; `store.run_many(...)` runs several of them together".
    Two pops run together by run_many: their set-asides are merged in one round, where the
    plan's ``errors=True`` no longer holds, so the refusal is raised as a plain ServerError
    and the put-back never runs: the member is gone."""
    client = shell.client
    client.set(REJECTED, "other program")
    if kind == "queue":
        client.rpush(KEY, BAD, b"2")
        client.rpush("q2", b"bad2", b"3")
        plans = [Queue(shell, KEY, int).pop_plan(), Queue(shell, "q2", int).pop_plan()]
    else:
        client.sadd(KEY, BAD)
        client.sadd("q2", b"bad2")
        plans = [Set(shell, KEY, int).pop_plan(), Set(shell, "q2", int).pop_plan()]
    with pytest.raises(redmodel.RedmodelError):
        shell.run_many(*plans)
    held = client.lrange(KEY, 0, -1) if kind == "queue" else list(client.smembers(KEY))
    assert BAD in held, f"the member the pop took is lost: {KEY!r} holds {held}"
    assert client.get(REJECTED) == b"other program"


def _pop(store: Any, how: str) -> Any:
    queue = Queue(store, KEY, int)
    if how == "pop":
        return queue.pop()
    if how == "set":
        return Set(store, KEY, int).pop()
    return pop_blocking(queue, timeout=0.2)


@pytest.mark.parametrize("how", ["pop", "set", "pop_blocking"])
@pytest.mark.parametrize("second", ["set-aside", "put-back"])
def test_f2_exactly_once_pop_never_ends_in_a_plain_connection_error_after_it_popped(
        redis_client: Any, proxy: Any, how: str, second: str) -> None:
    """docs/containers.md: "A dropped reply is never hidden: the pop raises
    `redmodel.OutcomeUnknownError` naming the queue (never a plain `ConnectionError`, which
    means nothing was applied)"; docs/failures.md: a plain ConnectionError is "not applied
    (... safe to call again)", and `Queue.pop`, `Set.pop` in exactly-once mode: "returns,
    once"; "A pop never destroys such a member". In exactly-once mode the pop's second
    command (the set-aside of a member that does not decode, or the put-back after a
    refused set-aside) whose every copy is lost is fenced: not applied. The pop then
    raises the plain redis-py ConnectionError although its LPOP/SPOP ran, and the member is
    in neither the container nor %rejected: lost, while the fence proved a put-back safe."""
    store = store_through(proxy, exactly_once=True, resend=FAST_RESEND, socket_timeout=1.0)
    if second == "put-back":
        redis_client.set(REJECTED, "other program")
    if how == "set":
        redis_client.sadd(KEY, BAD)
    else:
        redis_client.rpush(KEY, BAD, b"2")
    Queue(store, KEY, int).exists() if how != "set" else Set(store, KEY, int).exists()
    if second == "set-aside":
        proxy.drop_request(lambda c: True, when=has(REJECTED), times=50)
    else:
        proxy.drop_request(lambda c: True, when=lambda a: any(
            x.upper() in (b"LPUSH", b"SADD") for x in a) and not has(REJECTED)(a), times=50)
    try:
        _pop(store, how)
    except redmodel.RedmodelError:
        pass  # OutcomeUnknownError, DecodeError or ServerError: all say what happened
    except (redis.ConnectionError, redis.TimeoutError) as e:
        pytest.fail(f"a pop that popped ended in the plain {type(e).__name__} ({e}), which "
                    f"means nothing was applied")
    finally:
        proxy.clear()
        store.close()
    held = (list(redis_client.smembers(KEY)) if how == "set"
            else redis_client.lrange(KEY, 0, -1))
    kinds = redis_client.type(REJECTED)
    aside = redis_client.lrange(REJECTED, 0, -1) if kinds == b"list" else (
        list(redis_client.smembers(REJECTED)) if kinds == b"set" else [])
    assert BAD in held + aside, f"the member is lost: {KEY!r} {held}, %rejected {aside}"


def test_f2_async_exactly_once_pop_never_ends_in_a_plain_connection_error(
        redis_client: Any, proxy: Any) -> None:
    """As test_f2, on an AsyncStore (sync and async parity)."""
    redis_client.rpush(KEY, BAD, b"2")

    async def run() -> None:
        astore = redmodel.AsyncStore(
            redis.asyncio.Redis(host=proxy.host, port=proxy.port, socket_timeout=1.0),
            exactly_once=True, resend=FAST_RESEND)
        queue = Queue(astore, KEY, int)
        await queue.exists()
        proxy.drop_request(lambda c: True, when=has(REJECTED), times=50)
        try:
            await queue.pop()
        except redmodel.RedmodelError:
            pass
        except (redis.ConnectionError, redis.TimeoutError) as e:
            pytest.fail(f"plain {type(e).__name__} after the pop popped: {e}")
        finally:
            proxy.clear()
            await astore.aclose()

    asyncio.run(run())
    assert BAD in redis_client.lrange(KEY, 0, -1) + redis_client.lrange(REJECTED, 0, -1)


@pytest.mark.parametrize("how", ["pop", "set"])
def test_f3_a_lost_set_aside_names_the_container_it_popped(
        redis_client: Any, proxy: Any, how: str) -> None:
    """docs/containers.md: "A dropped reply is never hidden: the pop raises
    `redmodel.OutcomeUnknownError` naming the queue"; docs/failures.md: "`.keys` names its
    keys". When the reply of the set-aside (the pop's second command) is lost, the pop's
    OutcomeUnknownError names only ``%rejected`` and speaks of an RPUSH/SADD "that may or
    may not have been applied": the queue it popped from, whose member may now be gone, is
    not among its keys."""
    store = store_through(proxy)
    if how == "set":
        redis_client.sadd(KEY, BAD)
    else:
        redis_client.rpush(KEY, BAD)
    Queue(store, KEY, int).exists() if how != "set" else Set(store, KEY, int).exists()
    proxy.lose_reply(lambda c: True, when=has(REJECTED))
    with pytest.raises(redmodel.OutcomeUnknownError) as caught:
        _pop(store, how)
    store.close()
    assert KEY in caught.value.keys, caught.value.keys


@pytest.mark.parametrize("tp,sentinel", [(float, float("nan")), (list[float], [float("nan")])],
                         ids=["nan", "nested-nan"])
def test_f4_a_sentinel_that_can_never_stop_the_loop_is_refused(
        store: Any, tp: Any, sentinel: Any) -> None:
    """docs/containers.md (the consumer loop): "`sentinel`: a value equal to it is taken
    (acknowledged, not yielded); it must be a value the queue can hold (`consume` raises
    `ValidationError` for one of another type, which would never stop the loop)". A NaN
    sentinel (alone or nested) is accepted, yet pushing that very sentinel never stops the
    loop: the consumer yields it as an item and runs on (until idle here)."""
    queue = Queue(store, KEY, tp)
    try:
        consumer = queue.consume(sentinel=sentinel, idle_timeout=0.3, poll=0.1, signals=())
    except redmodel.ValidationError:
        return
    queue.push(sentinel, sentinel)
    got = list(consumer)
    assert consumer.stopped_by == "sentinel", (got, consumer.stopped_by)
