"""Attack 27z: raw commands of transactions against the docs (docs/transactions.md "Raw
commands" and "Indexed models"; docs/failures.md "What an error from redmodel means").

Each test asserts a documented promise and fails on main at e5b5b0f; the findings are in
/work/notes/s27/ATK-Z-FINDINGS.md (F1-F3).
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled


@redmodel.model(prefix="az27z")
@attrs.define
class Z:
    u: str | None = redmodel.field(unique=True, default=None)
    n: int = redmodel.field(index=True, default=0)
    note: str = ""
    id: str = redmodel.key_field(generated=False)


KEY_A, KEY_B = "az27z:a", "az27z:b"
ALLOWED = (redmodel.RedmodelError, redis.RedisError)


def _outcome(call: Any) -> BaseException | None:
    try:
        call()
    except Exception as e:
        return e
    return None


def _async_outcome(redis_url: str, fn: Any) -> BaseException | None:
    async def main() -> BaseException | None:
        astore = redmodel.AsyncStore.from_url(redis_url)
        try:
            await astore.transaction(fn)()
        except Exception as e:
            return e
        finally:
            await astore.aclose()
        return None
    return asyncio.run(main())


# F1: an error reply to a raw command whose arguments redmodel cannot parse as keys
# (EVAL's numkeys "x", ZUNION's numkeys "x", a float numkeys) leaves as a bare ValueError
# from redmodel/_transport/_wire.py:command_keys, raised while naming the keys of the
# error, after EXEC applied the other queued writes: the caller cannot tell it committed.
BAD_NUMKEYS = [("EVAL", "return 1", "x"), ("EVAL", "return 1", 1.5), ("ZUNION", "x", "k")]


@pytest.mark.parametrize("raw", BAD_NUMKEYS, ids=lambda r: " ".join(map(str, r)))
def test_f1_error_reply_to_a_raw_command_is_a_server_error_after_the_commit(
        store: redmodel.Store, raw: tuple[Any, ...]) -> None:
    """docs/transactions.md, "Errors and guarantees": "a command fails *inside* EXEC ...
    the other commands **are** applied; the call raises that command's error
    (`NotFoundError`, `redmodel.ServerError`, a `redis.ResponseError`) after the commit";
    docs/failures.md: "every exception is a redmodel error or a redis-py error"."""
    store.save(Z(id="a", n=1))

    def work(tx: Any) -> Any:
        tx.update(Z, "a", n=2)
        return tx.command(*raw)

    error = _outcome(store.transaction(work))
    assert store.get(Z, "a").n == 2  # EXEC ran: the update is applied
    assert isinstance(error, redis.ResponseError), repr(error)


@pytest.mark.parametrize("raw", BAD_NUMKEYS[:1] + BAD_NUMKEYS[2:], ids=lambda r: r[0])
def test_f1_read_command_error_reply_is_a_server_error(
        store: redmodel.Store, raw: tuple[Any, ...]) -> None:
    """docs/transactions.md: `tx.read_command(...)` runs a command at once; docs/failures.md:
    "No builtin `OSError`/`ConnectionResetError` leaves redmodel: every exception is a
    redmodel error or a redis-py error"; an error reply is a `ServerError`."""
    error = _outcome(store.transaction(
        lambda tx: tx.read_command(*raw, watch=())))
    assert isinstance(error, redis.ResponseError), repr(error)


def test_f1_exactly_once_raw_command_with_bad_numkeys_is_no_bare_error(
        store: redmodel.Store) -> None:
    """docs/failures.md: "every exception is a redmodel error or a redis-py error". In
    exactly-once mode the commit wraps each queued write and reads its keys first: a raw
    `ZUNION x k` raises a bare ValueError there (nothing sent)."""
    once = redmodel.Store(store.client, exactly_once=True)
    error = _outcome(once.transaction(lambda tx: tx.command("ZUNION", "x", "k")))
    assert error is None or isinstance(error, ALLOWED), repr(error)


def test_f1_async_error_reply_to_a_raw_command(store: redmodel.Store, redis_url: str) -> None:
    """As test_f1_error_reply_..., through an AsyncStore."""
    store.save(Z(id="a", n=1))

    async def work(tx: Any) -> Any:
        tx.update(Z, "a", n=2)
        return tx.command("EVAL", "return 1", "x")

    error = _async_outcome(redis_url, work)
    assert store.get(Z, "a").n == 2
    assert isinstance(error, redis.ResponseError), repr(error)


# F2: a raw command name given as bytes that are not UTF-8 passes checked_raw (which
# decodes with surrogateescape) and then leaves a bare UnicodeDecodeError from
# redmodel/_transport/_wire.py:_name (a strict decode), at commit or at read_command.
@pytest.mark.parametrize("name", [b"\xff", b"\xe9VAL", bytearray(b"\xffSET")],
                         ids=["ff", "e9VAL", "bytearray"])
@pytest.mark.parametrize("how", ["command", "read_command", "exactly_once", "async"])
def test_f2_a_name_utf8_cannot_carry_is_a_validation_error(
        store: redmodel.Store, redis_url: str, name: Any, how: str) -> None:
    """docs/transactions.md, "Raw commands": "An empty name, or one UTF-8 cannot carry, is
    refused with a `ValidationError`, nothing sent"; docs/failures.md: "every exception is
    a redmodel error or a redis-py error"."""
    store.save(Z(id="a", n=1))
    if how == "read_command":
        error = _outcome(store.transaction(
            lambda tx: tx.read_command(name, "k", watch=())))
    elif how == "async":
        async def work(tx: Any) -> Any:
            tx.update(Z, "a", n=2)
            return tx.command(name, "k")
        error = _async_outcome(redis_url, work)
    else:
        s = redmodel.Store(store.client, exactly_once=how == "exactly_once")

        def work_sync(tx: Any) -> Any:
            tx.update(Z, "a", n=2)
            return tx.command(name, "k")
        error = _outcome(s.transaction(work_sync))
    assert store.get(Z, "a").n == 1  # nothing sent
    assert isinstance(error, ALLOWED), repr(error)


# F3: a raw command naming an object's key elsewhere than first (COPY src key, RENAME src
# key, EVAL with the key in KEYS[2]) after a tx.delete of that object is not judged: the
# later update/expire/persist commits and the indexes are left wrong (a unique value held
# by two objects, entries of values nobody holds). redmodel/_indexes/_writes.py:
# _unknown_raw returns early when hints.exists says the object is gone.
RAW_BLIND = [("COPY", KEY_B, KEY_A),
             ("RENAME", KEY_B, KEY_A),
             ("EVAL", "return redis.call('COPY', KEYS[1], KEYS[2])", 2, KEY_B, KEY_A)]
LATER = {"update": lambda tx: tx.update(Z, "a", n=3),
         "expire": lambda tx: tx.expire(Z, "a", 100),
         "persist": lambda tx: tx.persist(Z, "a")}


@pytest.mark.parametrize("raw", RAW_BLIND, ids=lambda r: r[0])
@pytest.mark.parametrize("later", sorted(LATER))
@pytest.mark.parametrize("shell", ["sync", "async"])
def test_f3_a_write_after_delete_and_a_blind_raw_command_is_refused(
        store: redmodel.Store, redis_url: str, raw: tuple[Any, ...], later: str,
        shell: str) -> None:
    """docs/transactions.md, "Indexed models": "A raw command that names the object's key
    elsewhere than first (`COPY src key REPLACE`, `RENAME src key`, ...) may change the
    object in a way the transaction cannot know before `MULTI`: a later `save`, `update`,
    `incr`, `expire` or `persist` of that object ... (before another redmodel write of it)
    is refused at commit with a `TransactionError` naming the key, nothing written"."""
    store.save_many([Z(id="a", n=1, u="x"), Z(id="b", n=5, u="y", note="bee")])
    before = {k: store.client.dump(k) for k in sorted(store.client.keys("az27z:*"))}
    if shell == "sync":
        def work(tx: Any) -> None:
            tx.delete(Z, "a")
            tx.command(*raw)
            LATER[later](tx)
        error = _outcome(store.transaction(work))
    else:
        async def awork(tx: Any) -> None:
            tx.delete(Z, "a")
            tx.command(*raw)
            LATER[later](tx)
        error = _async_outcome(redis_url, awork)
    problems = store.verify(Z)
    after = {k: store.client.dump(k) for k in sorted(store.client.keys("az27z:*"))}
    assert isinstance(error, redmodel.TransactionError), (repr(error), problems)
    assert KEY_A in str(error)
    assert after == before  # nothing written


# the kinds behind F1 and F2, drawn whole: any numkeys argument of any key-counting
# command, any bytes as a command name; every outcome a redmodel or redis-py error
_NUMKEYS_CMDS = ["EVAL", "EVALSHA", "EVAL_RO", "FCALL", "ZUNION", "ZINTER", "ZDIFF",
                 "SINTERCARD", "LMPOP", "ZMPOP", "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]
_ARG = st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=6),
                 st.binary(max_size=6), st.sampled_from(["01", "+1", " 1", "1 ", "٣", "-0"]))


@settings(max_examples=scaled(200, floor=30), deadline=None)
@given(name=st.sampled_from(_NUMKEYS_CMDS), args=st.lists(_ARG, max_size=4))
def test_naming_the_keys_of_any_raw_command_never_raises(name: str, args: list[Any]) -> None:
    """Property (no I/O): the keys of a command and its exactly-once wrapping are found
    for any arguments (the server judges them), never a bare ValueError."""
    from redmodel._transport._wire import command_keys, wrap  # noqa: PLC0415
    command = (name, *args)
    keys, _ = command_keys(command)
    assert all(k in command[1:] for k in keys)
    wrap(command, "once:key", 1000)


@settings(max_examples=scaled(40, floor=10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.binary(min_size=1, max_size=8), numkeys=_ARG, read=st.booleans())
def test_any_raw_command_leaves_as_a_redmodel_or_redis_error(
        store: redmodel.Store, name: bytes, numkeys: Any, read: bool) -> None:
    """docs/failures.md: every exception is a redmodel error or a redis-py error; a
    name UTF-8 cannot carry is refused with nothing sent."""
    for key in store.client.scan_iter(match=b"az27z*"):
        if not key.endswith(b"%schema"):
            store.client.delete(key)
    store.save(Z(id="a", n=1))

    def work(tx: Any) -> Any:
        if read:
            return tx.read_command(name, numkeys, "k", watch=())
        tx.update(Z, "a", note="w")
        return tx.command(name, numkeys, "k")

    got = _outcome(store.transaction(work))
    assert got is None or isinstance(got, ALLOWED), repr(got)
    words = name.split() if b" " in name else [name]  # redis-py's split of a spaced name
    try:
        if words:
            words[0].decode()
    except UnicodeDecodeError:
        assert isinstance(got, redmodel.ValidationError), repr(got)
        assert store.get(Z, "a") == Z(id="a", n=1)  # nothing sent
    assert store.verify(Z) == []


# a command that fails inside EXEC: the caller can tell the others were applied
@redmodel.model(prefix="az27c")
@attrs.define
class C:
    n: int = 0
    note: str = ""
    id: str = redmodel.key_field(generated=False)


@settings(max_examples=scaled(20, floor=6), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["bound", "missing", "wrongtype", "unique"]),
       before=st.booleans())
def test_an_error_after_exec_is_marked_committed_one_before_multi_is_not(
        store: redmodel.Store, kind: str, before: bool) -> None:
    """docs/transactions.md "Errors and guarantees": a command failing inside EXEC raises
    its error after the commit, marked ``committed``; an error raised before MULTI is not
    marked and nothing was written."""
    for key in store.client.scan_iter(match=b"az27*"):
        if not key.endswith(b"%schema"):
            store.client.delete(key)
    store.save(C(id="a", n=1))
    store.save(Z(id="b", u="taken"))
    store.save(Z(id="c"))

    def work(tx: Any) -> None:
        if before:
            tx.update(C, "a", note="applied")
        if kind == "bound":
            tx.incr_fields(C, "a", {"n": -5}, floor={"n": 0})
        elif kind == "missing":
            tx.incr(C, "gone", "n", 1)
        elif kind == "wrongtype":
            tx.command("LPUSH", "az27c:a", "x")
        else:
            tx.update(Z, "c", u="taken")
        if not before:
            tx.update(C, "a", note="applied")

    got = _outcome(store.transaction(work))
    assert isinstance(got, ALLOWED), repr(got)
    applied = store.get_or_raise(C, "a").note == "applied"
    assert getattr(got, "committed", False) is applied, (kind, repr(got))
    assert applied is (kind != "unique")
