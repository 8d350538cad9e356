"""Attack 31I: run_many / gather after fixes 31B and 31G (internal gathers, resendable
writes in a shared round).

Root of every finding here: ``redmodel._plan._plan_part`` decides "plain" for a plan none
of whose commands is *unsafe* (every write of it may be sent twice: a claim, a claim's
confirmation or release, a capping LTRIM) whenever the shared round's error is an
OutcomeUnknownError, i.e. it hands a plain ConnectionError/TimeoutError ("not applied, or
fenced: no copy can land later") to a plan whose write was sent, not answered and never
fenced. Alone, the same plan's batch is fenced and resent, or raises
OutcomeUnknownError when the fence cannot be made. Internal gathers (save_many's claims
and their confirmation, delete_many's releases) then raise that plain error out of the
public call.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel._indexes._specs import CLAIM, CONFIRM, RELEASE
from redmodel.containers import Queue
from redmodel.testing import FaultProxy

PLAIN = (redis.ConnectionError, redis.TimeoutError)


@redmodel.model(prefix="a31i_bu", buckets=4)
@attrs.define
class BU:
    sku: str = redmodel.field(unique=True)
    id: str = redmodel.key_field(generated=False)


def _plain(e: Any) -> bool:
    return isinstance(e, PLAIN) and not isinstance(e, redmodel.OutcomeUnknownError)


def script_is(script: Any) -> Any:
    return lambda args: len(args) > 1 and args[1] == script.sha.encode()


def nokill_store(redis_client: Any, proxy: FaultProxy) -> redmodel.Store:
    """A store whose ACL user may not run CLIENT KILL (docs/failures.md: "without them a
    lost reply to such a write is OutcomeUnknownError")."""
    redis_client.acl_setuser("a31inokill", enabled=True, passwords=["+pw"], keys=["*"],
                             commands=["+@all", "-client|kill"])
    return redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port,
                                      username="a31inokill", password="pw"))


def _ids(client: Any, oid: str) -> list[Any]:
    return client.keys(f"a31i_bu:{{*}}:{oid}")


def test_f1_delete_many_raises_plain_after_deleting(redis_client: Any,
                                                    proxy: FaultProxy) -> None:
    """F1. redmodel/_errors.py RedmodelError: "a plain ``redis.ConnectionError`` ... from
    ``delete_many`` it means nothing was deleted"; docs/failures.md: plain "A call of
    several writes (`delete_many`, ...) raises it only when none of its writes that must
    not run twice was applied"; queries.md: a follow-up whose fence could not be made
    raises OutcomeUnknownError (store.delete_many of ONE object does). Two objects of a
    bucketed unique model: both deleted, then a release's reply is lost (no CLIENT KILL):
    plain ConnectionError ("Connection closed by server.", no key)."""
    store = nokill_store(redis_client, proxy)
    store.save_many([BU("x0", id="p0"), BU("y0", id="q0")])
    proxy.lose_reply("EVALSHA", when=script_is(RELEASE))
    error: Exception | None = None
    try:
        store.delete_many(BU, ["p0", "q0"])
    except Exception as e:
        error = e
    proxy.clear()
    assert not _ids(redis_client, "p0") and not _ids(redis_client, "q0")  # deleted
    assert not _plain(error), f"plain {error!r} from delete_many after it deleted both"


@pytest.mark.parametrize("step", ["claim", "confirm"])
def test_f2_save_many_claims_unknown_become_plain(redis_client: Any, proxy: FaultProxy,
                                                  step: str) -> None:
    """F2. docs/queries.md: "A stale copy of a claim that lands later all the same (the
    fence could not be made, and the call raised `OutcomeUnknownError`)"; store.md /
    Batch.follow_up: a follow-up's OutcomeUnknownError "is raised, its message saying it
    is the follow-up's"; failures.md: plain = "not applied, or ... whose first copy was
    fenced (no copy of it can land later)". save_many of ONE bucketed-unique object does
    raise OutcomeUnknownError here; of TWO, a plain ConnectionError with no key."""
    store = nokill_store(redis_client, proxy)
    store.save_many([BU("x0", id="p0"), BU("y0", id="q0")])
    proxy.lose_reply("EVALSHA", when=script_is(CLAIM if step == "claim" else CONFIRM))
    error: Exception | None = None
    try:
        store.save_many([BU("x1", id="p0"), BU("y1", id="q0")])
    except Exception as e:
        error = e
    proxy.clear()
    assert store.verify(BU) == []
    assert error is not None and not _plain(error), (
        f"save_many's {step} outcome unknown (no fence) but it raised {error!r}")


def test_f3_a_resendable_write_in_a_shared_round_is_reported_plain_and_lands_later(
        redis_client: Any, proxy: FaultProxy) -> None:
    """F3. store.md run_many: "each plan gets what it would have got alone about its own
    commands"; failures.md: plain = "not applied, or a write that may be applied twice
    harmlessly ... and whose first copy was fenced (no copy of it can land later)".
    ``trim_plan(0, 0)`` (a cap: resent, fenced first) alone returns, applied once. Beside
    a push whose round stalls past the socket timeout, its entry in ``results`` is a plain
    TimeoutError, the list is untouched when run_many returns, and the LTRIM lands later
    (never fenced)."""
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.5))
    qa, qb = Queue(store, "a31i_sa", int), Queue(store, "a31i_sb", int)
    qa.push(1, 2, 3)
    qb.push(1)
    proxy.stall("RPUSH", 1.5, when=lambda a: b"a31i_sb" in a)
    with pytest.raises(redmodel.OutcomeUnknownError) as caught:
        store.run_many(qb.push_plan(5), qa.trim_plan(0, 0))
    trim = caught.value.results[1]  # type: ignore[attr-defined]
    now = redis_client.lrange("a31i_sa", 0, -1)
    time.sleep(1.7)
    later = redis_client.lrange("a31i_sa", 0, -1)
    store.close()
    assert not (_plain(trim) and later != now), (
        f"trim's outcome {trim!r} says not applied / fenced; list {now} then {later}")


def test_f3b_two_resendable_writes_unfenced_raise_plain(redis_client: Any,
                                                        proxy: FaultProxy) -> None:
    """F3b. As F3: ``store.run(qb.trim_plan(0, 1))`` with its reply lost and no CLIENT
    KILL raises OutcomeUnknownError ("could not make sure that the first copy can no
    longer be applied later"); in ``run_many`` beside another trim the same lost reply
    makes it (and the call) a plain ConnectionError, while the LTRIM was applied."""
    store = nokill_store(redis_client, proxy)
    qa, qb = Queue(store, "a31i_qa", int), Queue(store, "a31i_qb", int)
    qa.push(1, 2, 3)
    qb.push(1, 2, 3)
    proxy.lose_reply("LTRIM", when=lambda a: b"a31i_qb" in a)
    error: Exception | None = None
    try:
        store.run_many(qa.trim_plan(0, 9), qb.trim_plan(0, 1))
    except Exception as e:
        error = e
    proxy.clear()
    assert redis_client.lrange("a31i_qb", 0, -1) == [b"1", b"2"]  # applied
    assert error is not None
    mine = error.results[1]  # type: ignore[attr-defined]
    assert not _plain(mine) and not _plain(error), (
        f"applied, unfenced LTRIM reported plain: {mine!r}; raised {error!r}")
