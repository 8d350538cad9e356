"""The transport: its decisions without I/O (redmodel._transport._wire), error replies as
ServerError, and what exactly-once mode leaves on the server."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import attrs
import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    TryAgainError,
)
from redis.retry import Retry

import redmodel
from redmodel._plan import SCRIPTS_BY_SHA, Batch, gather, script
from redmodel._transport import _wire
from redmodel._transport._wire import (
    ONCE_PREFIX,
    Call,
    Exchange,
    Link,
    command_keys,
    key_slot,
    once_key,
    slot_tag,
    wrap,
)
from redmodel.containers import Queue, SortedSet
from redmodel.testing import FaultProxy, RedisServer, has
from tests.budget import sized

INCR = script("hash_update")
POLICY = redmodel.ResendPolicy(attempts=3, backoff_base=0.0, backoff_max=0.0, deadline=5.0)


@redmodel.model(prefix="wire_hat")
@attrs.define
class Hat:
    id: str = redmodel.key_field(generated=False)
    quantity: int = 0


def answer(ex: Exchange, *replies: Any, failure: BaseException | None = None,
           sent: bool = True) -> tuple[list[Call], float]:
    """Play one round: the exchange's calls get ``replies`` (then ``failure``)."""
    calls = ex.calls()
    assert calls is not None
    call = calls[0]
    call.sent = sent
    call.replies = list(replies)
    call.failure = failure
    return calls, ex.settle(calls)


# ---- decisions, without a server -----------------------------------------------------------


def test_a_lost_reply_to_a_write_that_must_not_run_twice_is_outcome_unknown() -> None:
    ex = Exchange(Batch([("INCRBY", "n", 1)], write=True, keys=("n",)), Link(policy=POLICY))
    with pytest.raises(redmodel.OutcomeUnknownError) as raised:
        answer(ex, failure=redis.ConnectionError("reset"))
    assert raised.value.keys == ("n",) and isinstance(raised.value, redis.ConnectionError)


def test_a_lost_reply_to_a_read_is_sent_again_then_answered() -> None:
    ex = Exchange(Batch([("GET", "a"), ("GET", "b")]), Link(policy=POLICY))
    calls, pause = answer(ex, b"1", failure=redis.TimeoutError("slow"))
    assert pause == 0.0
    calls = ex.calls()
    assert calls is not None and calls[0].wire == [("GET", "b")]  # only what was lost
    calls[0].sent, calls[0].replies = True, [b"2"]
    ex.settle(calls)
    assert ex.calls() is None and ex.result() == [b"1", b"2"]


def _save(key: str = "h") -> Exchange:
    return Exchange(Batch([("HSET", key, "f", "v")], write=True, idempotent=True,
                          keys=(key,)), Link(policy=POLICY))


def _lost(ex: Exchange, conn_id: int | None = 7) -> float:
    """A round whose reply is lost, on a connection of server-side id ``conn_id``."""
    calls = ex.calls()
    assert calls is not None and calls[0].learn  # the shell learns its connection's id
    calls[0].sent, calls[0].conn_id = True, conn_id
    calls[0].failure = redis.TimeoutError("slow")
    return ex.settle(calls)


def test_a_resendable_write_is_sent_again_only_after_its_first_copy_is_fenced() -> None:
    ex = _save()
    _lost(ex)
    calls = ex.calls()
    assert calls is not None and [c.wire for c in calls] == [[("CLIENT", "KILL", "ID", 7)]]
    calls[0].sent, calls[0].replies = True, [1]  # killed: the first copy ran or never will
    ex.settle(calls)
    calls = ex.calls()
    assert calls is not None and calls[0].wire == [("HSET", "h", "f", "v")]  # now resent
    calls[0].sent, calls[0].replies = True, [1]
    ex.settle(calls)
    assert ex.calls() is None and ex.result() == [1]


def test_a_read_is_sent_again_with_no_fence() -> None:
    ex = Exchange(Batch([("GET", "a")]), Link(policy=POLICY))
    calls = ex.calls()
    assert calls is not None and not calls[0].learn
    calls[0].sent, calls[0].failure = True, redis.TimeoutError("slow")
    ex.settle(calls)
    calls = ex.calls()
    assert calls is not None and calls[0].wire == [("GET", "a")]


def test_a_write_whose_first_copy_cannot_be_fenced_is_outcome_unknown() -> None:
    ex = _save()
    _lost(ex)
    calls = ex.calls()
    assert calls is not None
    calls[0].sent = True
    calls[0].replies = [NoPermissionError("NOPERM this user has no permissions to run "
                                          "the 'client|kill' command")]
    with pytest.raises(redmodel.OutcomeUnknownError) as raised:
        ex.settle(calls)
    assert raised.value.keys == ("h",) and "CLIENT KILL" in str(raised.value)


def test_a_write_on_a_connection_of_unknown_id_is_outcome_unknown() -> None:
    with pytest.raises(redmodel.OutcomeUnknownError) as raised:
        _lost(_save(), conn_id=None)  # CLIENT ID refused, or its reply lost
    assert raised.value.keys == ("h",)


def test_a_fence_that_never_answers_is_outcome_unknown_within_the_policy() -> None:
    ex = _save()
    _lost(ex)
    with pytest.raises(redmodel.OutcomeUnknownError):
        for _ in range(POLICY.attempts):
            calls = ex.calls()
            assert calls is not None and calls[0].wire[0][:3] == ("CLIENT", "KILL", "ID")
            calls[0].sent, calls[0].failure = True, redis.TimeoutError("paused")
            ex.settle(calls)


def test_a_resendable_write_given_up_is_fenced_before_the_plain_error() -> None:
    ex = Exchange(Batch([("HSET", "h", "f", "v")], write=True, idempotent=True, keys=("h",)),
                  Link(policy=redmodel.ResendPolicy(attempts=1)))
    _lost(ex)
    calls = ex.calls()  # the caller may call again once it has the error: fence first
    assert calls is not None and calls[0].wire == [("CLIENT", "KILL", "ID", 7)]
    calls[0].sent, calls[0].replies = True, [0]
    with pytest.raises(redis.TimeoutError) as raised:
        ex.settle(calls)
    assert not isinstance(raised.value, redmodel.OutcomeUnknownError)


def test_nothing_sent_is_always_tried_again_then_raises_the_plain_error() -> None:
    ex = Exchange(Batch([("INCRBY", "n", 1)], write=True), Link(policy=POLICY))
    refused = redis.ConnectionError("refused")
    answer(ex, failure=refused, sent=False)
    answer(ex, failure=refused, sent=False)
    with pytest.raises(redis.ConnectionError) as raised:
        answer(ex, failure=refused, sent=False)
    assert raised.value is refused  # a plain ConnectionError: nothing was applied


@pytest.mark.parametrize("reply", [NoScriptError("NOSCRIPT"), BusyLoadingError("LOADING"),
                                   TryAgainError("TRYAGAIN"),
                                   MovedError("3999 127.0.0.1:7001")])
def test_replies_that_prove_nothing_ran_are_sent_again(reply: Exception) -> None:
    ex = Exchange(Batch([INCR.call(["k"], ["HINCRBY", "f", 1])], write=True),
                  Link(policy=POLICY))
    ex.link.loaded[None] = {INCR.sha}
    _, pause = answer(ex, reply)
    calls = ex.calls()
    assert calls is not None
    if isinstance(reply, NoScriptError):  # the script is loaded again first
        assert calls[0].wire[0] == ("SCRIPT", "LOAD", INCR.source)
    if isinstance(reply, MovedError):
        assert ex.moved == [] and pause == 0.0  # the shell refreshed the map after settle
    assert calls[0].wire[-1][0] == "EVALSHA"


def test_an_atomic_batch_aborted_by_a_queued_noscript_is_sent_again_whole() -> None:
    batch = Batch([("INCRBY", "n", 1), INCR.call(["n2"], ["HINCRBY", "f", 1])], atomic=True,
                  write=True)
    ex = Exchange(batch, Link(policy=POLICY))
    ex.link.loaded[None] = {INCR.sha}
    # every script of a MULTI is also loaded inside it (F11 of FINDINGS-18a): its reply
    # comes first in EXEC's
    calls, _ = answer(ex, b"OK", b"QUEUED", b"QUEUED", NoScriptError("NOSCRIPT"),
                      redis.exceptions.ExecAbortError("EXECABORT"))
    calls = ex.calls()
    assert calls is not None
    assert [c[0] for c in calls[0].wire] == ["SCRIPT", "MULTI", "SCRIPT", "INCRBY", "EVALSHA",
                                             "EXEC"]
    calls[0].sent, calls[0].replies = True, [INCR.sha, b"OK", b"QUEUED", b"QUEUED", b"QUEUED",
                                             [INCR.sha, 1, 5]]
    ex.settle(calls)
    assert ex.result() == [1, 5]


def test_gather_marks_only_the_commands_that_must_not_run_twice() -> None:
    def read() -> Any:
        return (yield Batch([("GET", "a")]))

    def incr() -> Any:
        return (yield Batch([("INCRBY", "n", 1), ("PEXPIRE", "n", 10)], write=True))

    plan = gather([read(), incr()])
    batch = next(plan)
    assert batch.unsafe == (1, 2) and not batch.may_resend


def test_write_ids_live_in_the_slot_of_their_write_whatever_braces_it_holds() -> None:
    for key in ["plain", "hat:{7}:1", "a{b", "{}x}", "x}y{z}", "{odd"]:
        slot = key_slot(key)
        found = once_key(slot, "abc.0")
        assert found.startswith(ONCE_PREFIX + "{") and key_slot(found) == slot, key
    assert {len(slot_tag(s)) for s in range(16384)} <= {1, 2, 3, 4}


def test_wrap_puts_the_write_id_first_in_keys_and_its_expiry_first_in_args() -> None:
    wrapped = wrap(("RPUSH", "q", b"1", b"2"), "redmodel:once:x", 60000)
    assert wrapped is not None
    # (then the client's protocol, 3 unless given: the script answers in it)
    assert wrapped[2:] == (2, "redmodel:once:x", "q", 60000, "3", "RPUSH", b"1", b"2")
    assert wrap(("RPUSH", "q", b"1"), "k", 1, resp=2)[2:] == (2, "k", "q", 1, "2", "RPUSH",  # type: ignore[index]
                                                              b"1")
    assert SCRIPTS_BY_SHA[wrapped[1]].name == "once_command"
    call = INCR.call(["hat:1"], ["HINCRBY", b"quantity", "1"])
    wrapped = wrap(call, "redmodel:once:y", 60000)
    assert wrapped is not None and SCRIPTS_BY_SHA[wrapped[1]].name == "hash_update+once"
    assert wrapped[2:] == (2, "redmodel:once:y", "hat:1", 60000, "HINCRBY", b"quantity", "1")
    assert wrap(("EVALSHA", "0" * 40, 0), "k", 1) is None  # an unknown script stays as is
    assert command_keys(("MSET", "a", 1, "b", 2)) == (("a", "b"), None)
    assert wrap(("MSET", "a", 1), "k", 1) is None  # keys not leading: not wrapped


# ---- error replies ---------------------------------------------------------------------


def test_an_error_reply_is_a_server_error_naming_the_key(store: redmodel.Store,
                                                        redis_client: redis.Redis) -> None:
    redis_client.set("wire_hat:1", "a string, not a hash")
    with pytest.raises(redmodel.ServerError, match="WRONGTYPE") as raised:
        store.incr(Hat, "1", "quantity", 1)
    assert "wire_hat:1" in raised.value.keys
    assert isinstance(raised.value, redis.ResponseError)
    q = Queue(store, "wire_q", int)
    redis_client.set("wire_q", "x")
    with pytest.raises(redmodel.ServerError, match=r"WRONGTYPE.*wire_q"):
        q.push(1)


def test_oom_and_noperm_keep_redis_py_classes_and_name_the_keys() -> None:
    with RedisServer(extra_args=("--maxmemory", "1mb", "--maxmemory-policy",
                                 "noeviction")) as server:
        store = redmodel.Store(server.client())
        blob = Queue(store, "wire_big", bytes)
        with pytest.raises(OutOfMemoryError) as raised:
            for _ in range(200):
                blob.push(b"x" * 100_000)
        assert isinstance(raised.value, redmodel.ServerError)
        assert raised.value.keys == ("wire_big",)
        admin = server.client()
        admin.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["wire_*"],
                          commands=["+get", "+hgetall", "+ping", "+hello", "+client"])
        # a user who may not write the model registry's record opts out of it
        limited = redmodel.Store(server.client(username="reader", password="pw"),
                                 registry=False)
        with pytest.raises(NoPermissionError) as denied:
            limited.save(Hat(id="2"))
        assert isinstance(denied.value, redmodel.ServerError)
        assert denied.value.keys == ("wire_hat:2",)
        store.close()
        limited.close()
        admin.close()


def test_busy_server_is_a_server_error() -> None:
    with RedisServer(extra_args=("--busy-reply-threshold", "50")) as server:
        admin = server.client()
        blocker = server.client(socket_timeout=5)
        store = redmodel.Store(server.client(retry=Retry(NoBackoff(), 0)),
                               registry=False)  # the push is the first command it sends
        spin = threading.Thread(target=lambda: blocker.eval(
            "local t = tonumber(redis.call('TIME')[1]) + 2 "
            "while tonumber(redis.call('TIME')[1]) < t do end", 0))
        spin.start()
        time.sleep(0.3)
        try:
            with pytest.raises(redmodel.ServerError, match="BUSY") as raised:
                Queue(store, "wire_busy", int).push(1)
            assert raised.value.keys == ("wire_busy",)
        finally:
            spin.join()
        assert admin.llen("wire_busy") == 0  # refused, not applied
        for c in (admin, blocker):
            c.close()
        store.close()


# ---- exactly-once mode on a server -----------------------------------------------------


def _once_store(proxy: FaultProxy, **policy: Any) -> redmodel.Store:
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=1)
    resend = redmodel.ResendPolicy(**{"attempts": 3, "backoff_base": 0.0, "deadline": 5.0,
                                      **policy})
    return redmodel.Store(client, exactly_once=True, resend=resend)


def test_a_write_id_is_kept_with_its_first_reply_for_a_short_while(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    store = _once_store(proxy, write_id_ttl=30.0)
    store.save(Hat(id="1", quantity=1))
    started = time.monotonic()
    assert store.incr(Hat, "1", "quantity", 1) == 2
    keys = redis_client.keys(ONCE_PREFIX + "*")
    assert len(keys) == 1
    assert redis_client.get(keys[0]).startswith(b"R")  # its recorded reply
    left = redis_client.pttl(keys[0])
    # write_id_ttl less the time since the incr (measured: a fixed margin fails on a slow
    # machine)
    assert 30_000 - (time.monotonic() - started) * 1000 - 2 <= left <= 30_000
    store.close()


def test_when_every_resend_is_lost_the_fence_says_applied(proxy: FaultProxy,
                                                         redis_client: redis.Redis) -> None:
    store = _once_store(proxy)
    store.save(Hat(id="1", quantity=10))
    proxy.lose_reply("EVALSHA", times=3, when=has("wire_hat:1"))  # every resend too
    assert store.incr(Hat, "1", "quantity", 1) == 11  # the fence found it recorded
    assert [e.kind for e in proxy.events] == ["lose_reply"] * 3
    assert redis_client.hget("wire_hat:1", "quantity") == b"11"
    store.close()


def test_when_every_resend_is_dropped_the_fence_says_not_applied(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    store = _once_store(proxy)
    store.save(Hat(id="1", quantity=10))
    proxy.drop_request("EVALSHA", times=3, when=has("wire_hat:1"))
    with pytest.raises(redis.ConnectionError) as raised:
        store.incr(Hat, "1", "quantity", 1)
    assert not isinstance(raised.value, redmodel.OutcomeUnknownError)  # safe to call again
    fenced = [k for k in redis_client.keys(ONCE_PREFIX + "*") if redis_client.get(k) == b"F"]
    assert len(fenced) == 1  # a copy still on its way could never apply now
    assert redis_client.hget("wire_hat:1", "quantity") == b"10"
    assert store.incr(Hat, "1", "quantity", 1) == 11  # a new call, a new write id
    store.close()


def test_when_the_fence_cannot_reach_the_server_the_outcome_is_unknown(
        proxy: FaultProxy) -> None:
    store = _once_store(proxy)
    store.save(Hat(id="1", quantity=10))
    proxy.lose_reply("EVALSHA", times=100)  # the fence's replies are lost too
    with pytest.raises(redmodel.OutcomeUnknownError) as raised:
        store.incr(Hat, "1", "quantity", 1)
    assert raised.value.write_id is not None and raised.value.keys == ("wire_hat:1",)
    store.close()


def test_a_recorded_error_is_answered_again_not_applied_again(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    store = _once_store(proxy)
    redis_client.set("wire_z", "not a sorted set")
    proxy.lose_reply("EVALSHA", when=has("wire_z"))
    with pytest.raises(redmodel.ServerError, match="WRONGTYPE"):
        SortedSet(store, "wire_z", str).incr("a", 1)
    store.close()


def test_a_push_longer_than_luas_argument_limit_is_applied_whole_and_once(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    store = _once_store(proxy)
    q = Queue(store, "wire_long", int)
    proxy.lose_reply("EVALSHA", when=has("wire_long"))
    assert q.push(*range(9_000)) == 9_000
    assert q.range() == list(range(9_000))
    assert SortedSet(store, "wire_long_z", int).add_many({i: i for i in range(5_000)}) == 5_000
    store.close()


def test_idempotent_writes_carry_no_write_id(proxy: FaultProxy,
                                            redis_client: redis.Redis) -> None:
    """A save with a ttl sets the whole object and its expiry anew: sent again plainly, no
    write id. A save with no ttl, an update and an expiry are fragile (fix 32D,
    docs/failures.md "Resent writes and missing objects"): they carry one."""
    store = _once_store(proxy)
    store.save(Hat(id="1"), ttl=100)
    store.save(Hat(id="2"), ttl=100)
    assert redis_client.keys(ONCE_PREFIX + "*") == []
    for write in (lambda: store.save(Hat(id="1")), lambda: store.update(Hat, "1", quantity=3),
                  lambda: store.expire(Hat, "1", 100)):
        write()
        assert len(redis_client.keys(ONCE_PREFIX + "*")) == 1  # (the earlier one's tidied)
    store.close()


def test_exactly_once_is_a_store_option_everywhere(redis_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    policy = redmodel.ResendPolicy(attempts=2)
    made = [redmodel.Store.from_url(redis_url, exactly_once=True, resend=policy),
            redmodel.AsyncStore.from_url(redis_url, exactly_once=True, resend=policy)]
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_EXACTLY_ONCE", "1")
    made += [redmodel.Store.from_env(), redmodel.AsyncStore.from_env()]
    assert all(s.exactly_once for s in made)
    assert made[0].resend is policy and made[2].resend == redmodel.ResendPolicy()
    assert not redmodel.Store.from_env(exactly_once=False).exactly_once
    with pytest.raises(ValueError, match="write_id_ttl"):
        redmodel.ResendPolicy(deadline=30, write_id_ttl=20)
    with pytest.raises(redmodel.ValidationError, match="ResendPolicy"):
        redmodel.Store.from_url(redis_url, resend=3)  # type: ignore[arg-type]
    for store in made[::2]:
        store.close()


# ---- what exactly-once mode leaves behind (docs/failures.md, "Its cost") ---------------------


def _records(client: Any, prefix: str = ONCE_PREFIX) -> dict[bytes, bytes]:
    return {k: client.get(k) for k in client.keys(prefix + "*")}


def test_a_record_is_deleted_with_the_next_call_once_its_reply_came(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """A write answered on its first send has no copy left anywhere: the store deletes its
    record with its next call to the server (no round trip of its own), so what is kept is
    the last write's record, not every write's for write_id_ttl."""
    store = _once_store(proxy)
    store.save(Hat(id="1"))
    q = Queue(store, "wire_q", str)
    q.push("x" * 50_000)
    assert q.pop() == "x" * 50_000
    first = _records(redis_client)
    assert len(first) == 1 and b"x" * 50_000 in next(iter(first.values()))  # the pop's
    for _ in range(5):
        store.incr(Hat, "1", "quantity", 1)
    kept = _records(redis_client)
    assert len(kept) == 1 and not set(kept) & set(first), "only the last write's record"
    assert sum(len(v) for v in kept.values()) < 100
    store.get(Hat, "1")  # a read carries the tidying too
    assert _records(redis_client) == {}
    store.close()


def test_a_resent_write_leaves_a_bare_mark_that_a_late_copy_cannot_pass(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """A write sent twice (its first copy stalled past the socket timeout) may still have a
    copy on its way when its caller has the reply: its record becomes 'D', its expiry
    kept, and the stalled copy that lands after it applies nothing."""
    store = _once_store(proxy, write_id_ttl=30.0)
    store.save(Hat(id="1", quantity=10))
    proxy.stall("EVALSHA", 2.5, when=has("wire_hat:1"))  # socket_timeout is 1 s
    assert store.incr(Hat, "1", "quantity", 1) == 11
    store.get(Hat, "1")  # the next call: the record becomes a bare mark
    marks = _records(redis_client)
    assert list(marks.values()) == [b"D"]
    assert 20_000 < redis_client.pttl(next(iter(marks))) <= 30_000
    assert proxy.quiet(10), "the stalled copy reached the server"
    time.sleep(0.1)
    assert redis_client.hget("wire_hat:1", "quantity") == b"11"
    store.close()


def test_each_store_may_keep_its_records_under_its_own_prefix(
        proxy: FaultProxy, redis_client: redis.Redis) -> None:
    """ResendPolicy.write_id_prefix: records of this store only under that prefix (an ACL
    user gets ~<prefix>*), on one server and in the fence."""
    store = _once_store(proxy, write_id_prefix="redmodel:once:shop:")
    store.save(Hat(id="1", quantity=10))
    proxy.drop_request("EVALSHA", times=3, when=has("wire_hat:1"))  # fenced under it
    with pytest.raises(redis.ConnectionError):
        store.incr(Hat, "1", "quantity", 1)
    assert store.incr(Hat, "1", "quantity", 1) == 11
    keys = redis_client.keys(ONCE_PREFIX + "*")
    assert keys and all(k.startswith(b"redmodel:once:shop:") for k in keys), keys
    store.close()
    for bad in ("", "app:{x}:", 3):
        with pytest.raises(ValueError, match="write_id_prefix"):
            redmodel.ResendPolicy(write_id_prefix=bad)  # type: ignore[arg-type]


def test_records_on_a_cluster_are_tidied_on_their_own_nodes(
        redis_cluster: Any, redis_cluster_client: Any) -> None:
    """Each record is deleted with the store's next call to the node that holds it: after
    writes spread over every node, at most the last one per node is left."""
    store = redmodel.Store(redis_cluster.client(), exactly_once=True)
    ids = [str(i) for i in range(30)]
    store.save_many([Hat(id=i) for i in ids])
    for _ in range(2):
        for i in ids:
            store.incr(Hat, i, "quantity", 1)
    kept = [k for node in redis_cluster_client.get_primaries()
            for k in redis_cluster_client.get_redis_connection(node).keys(ONCE_PREFIX + "*")]
    assert 1 <= len(kept) <= len(redis_cluster_client.get_primaries())
    assert all(h.quantity == 2 for h in store.get_many(Hat, ids))
    store.close()


def _ask_for_tags(threads: int) -> list[object]:
    """``slot_tag`` asked over and over by ``threads`` threads while the table is built:
    every tag they got, or the error they met."""
    start, done = threading.Barrier(threads), threading.Event()
    got: list[object] = []

    def ask(n: int) -> None:
        start.wait()
        if n == 0:  # the builder
            got.append(_wire.slot_tag(16383))
            done.set()
            return
        while not done.is_set():  # readers arriving while it fills the table
            try:
                if _wire._TAGS:
                    got.append(_wire.slot_tag(16383))
            except Exception as e:
                got.append(e)
                return

    workers = [threading.Thread(target=ask, args=(n,)) for n in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    return got


def test_the_slot_tag_table_is_whole_for_every_thread() -> None:
    """Threads that ask for a write id's hash tag while the table is being built see it
    empty (and wait for the builder) or whole, never half-filled (an IndexError escaped
    from a cluster write in exactly-once mode)."""
    for _ in range(sized(2, 5)):
        _wire._TAGS.clear()
        got = _ask_for_tags(4)
        assert got and all(isinstance(g, str) for g in got) and len(set(got)) == 1, (
            [g for g in got if not isinstance(g, str)][:3])
