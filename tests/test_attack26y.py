"""Attack 26y: raw commands of transactions, what the server gets and what is refused.

docs/transactions.md ("Raw commands"): ``tx.command`` and ``tx.read_command`` send a
command as redis-py's ``execute_command`` would (a name holding whitespace split into its
words, on every packer), and refuse, nothing sent, the commands of ``REFUSED_RAW`` (those
that end the MULTI, change the connection, or drop the scripts the queued writes run:
``SCRIPT``), in any case and spelling; ``CLIENT``'s read-only subcommands are allowed.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel.transactions._handles import REFUSED_RAW
from tests.budget import scaled
from tests.conftest import AsyncFacade
from tests.test_attack26t import Tx, _dump, _setup, check
from tests.test_attack26w import CASES, FORMS, _spelled

SPEC = spec_of(Tx)
_SETTINGS = settings(max_examples=scaled(25, floor=8), deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


class _Stop(Exception):
    pass


def _calls(store: redmodel.Store) -> dict[str, int]:
    return {k: v.get("calls", 0) for k, v in store.client.info("commandstats").items()}


# F1: a raw SCRIPT FLUSH queued after an indexed write drops the script its EVALSHA runs
# inside EXEC: the writes before it applied, the index write failed with NOSCRIPT
@given(sub=st.sampled_from(["FLUSH", "FLUSH SYNC", "LOAD", "EXISTS", "KILL"]), case=CASES,
       form=FORMS, read=st.booleans())
@_SETTINGS
def test_script_is_refused_in_a_transaction_nothing_sent(
        store: redmodel.Store, sub: str, case: str, form: str, read: bool) -> None:
    _setup(store, [])
    store.save(Tx(id="b", n=5, u="u5"))
    before = _dump(store)
    calls = _calls(store)
    args = [_spelled("SCRIPT", case, form), *sub.split()]
    if sub == "LOAD":
        args.append("return 1")

    def work(tx: Any) -> None:
        if read:
            with pytest.raises(redmodel.ValidationError, match="SCRIPT"):
                tx.read_command(*args, watch=())
        else:
            tx.update(Tx, "b", n=6)
            with pytest.raises(redmodel.ValidationError, match="SCRIPT"):
                tx.command(*args)
        raise _Stop

    with pytest.raises(_Stop):
        store.transaction(work)()
    assert _dump(store) == before
    after = _calls(store)
    for word in ("cmdstat_script", "cmdstat_multi", "cmdstat_exec"):
        assert after.get(word, 0) == calls.get(word, 0), word
    # the scripts are still there: an indexed write in a transaction commits
    store.transaction(lambda tx: tx.update(Tx, "b", n=7))()
    assert store.get(Tx, "b") == Tx(id="b", n=7, u="u5")
    check(store, f"SCRIPT {sub}")


# F2: a command name holding whitespace ("HSET key") was sent as one word on the hiredis
# packer (the server answered "unknown command"), and the rules took the wrong key
WS = st.sampled_from([" ", "  ", "\t", " \t ", "\n"])


@given(ws=WS, form=st.sampled_from(["str", "bytes", "memoryview", "bytearray"]),
       lead=st.sampled_from(["", " "]), then_update=st.booleans())
@_SETTINGS
def test_a_command_name_holding_whitespace_is_sent_as_its_words(
        store: redmodel.Store, ws: str, form: str, lead: str, then_update: bool) -> None:
    _setup(store, [])
    store.save(Tx(id="b", n=5, note="old"))
    key = SPEC.key_for("b")
    if form != "str" and " " not in ws:
        ws = " " + ws  # redis-py splits a bytes name only when it holds a space
    head_text = f"{lead}HSET{ws}{key}"
    head: Any = {"str": head_text, "bytes": head_text.encode(),
                 "memoryview": memoryview(head_text.encode()),
                 "bytearray": bytearray(head_text.encode())}[form]

    def work(tx: Any) -> Any:
        reply = tx.command(head, "note", "raw")
        if then_update:
            tx.update(Tx, "b", n=9)
        return reply

    reply = store.transaction(work)()
    assert reply.value == 0  # HSET of an existing field: 0 fields added
    want = Tx(id="b", n=9 if then_update else 5, note="raw")
    assert store.get(Tx, "b") == want
    check(store, f"{head_text!r} update={then_update}")


@given(ws=WS)
@_SETTINGS
def test_a_read_command_name_holding_whitespace_reads_as_execute_command(
        store: redmodel.Store, ws: str) -> None:
    _setup(store, [])
    store.save(Tx(id="b", n=5, note="x"))
    key = SPEC.key_for("b")
    want = store.client.execute_command(f"HGET{ws}{key}", "note")

    def work(tx: Any) -> Any:
        return tx.read_command(f"HGET{ws}{key}", "note", watch=[key])

    assert store.transaction(work)() == want == b"x"
    # "CONFIG GET" keeps redis-py's reply shape (its callback for the two words)
    got = store.transaction(
        lambda tx: tx.read_command("CONFIG GET", "maxmemory", watch=()))()
    assert got == store.client.execute_command("CONFIG GET", "maxmemory")


def test_an_empty_or_unencodable_command_name_is_refused(store: redmodel.Store) -> None:
    _setup(store, [])
    for args in [("",), ("   ",), (" ", ""), ("\ud800", "k")]:
        def work(tx: Any, args: Any = args) -> None:
            with pytest.raises(redmodel.ValidationError, match="nothing was sent"):
                tx.command(*args)
            with pytest.raises(redmodel.ValidationError, match="nothing was sent"):
                tx.read_command(*args, watch=())
            raise _Stop

        with pytest.raises(_Stop):
            store.transaction(work)()


# F3: tx.read_command skipped REFUSED_RAW: UNWATCH dropped the transaction's WATCH (a lost
# update), SELECT moved the pooled connection to another database
@given(name=st.sampled_from(sorted(REFUSED_RAW)), case=CASES, form=FORMS,
       extra=st.lists(st.sampled_from(["1", b"x", 0, "SETNAME"]), max_size=2))
@_SETTINGS
def test_read_command_refuses_what_command_refuses(
        store: redmodel.Store, name: str, case: str, form: str, extra: list[Any]) -> None:
    _setup(store, [])
    store.save(Tx(id="b", n=5))
    state = _dump(store)
    calls = _calls(store)

    def work(tx: Any) -> None:
        tx.get(Tx, "b")
        with pytest.raises(redmodel.ValidationError, match=name.upper()):
            tx.read_command(_spelled(name, case, form), *extra, watch=())
        raise _Stop

    with pytest.raises(_Stop):
        store.transaction(work)()
    assert _dump(store) == state
    assert store.get(Tx, "b") == Tx(id="b", n=5)
    after = _calls(store)
    # (not UNWATCH: the aborted attempt sends its own, as every attempt that read does)
    for word in ("select", "multi", "exec", "client", "auth", "hello", "reset",
                 "script", "subscribe", "quit"):
        assert after.get(f"cmdstat_{word}", 0) == calls.get(f"cmdstat_{word}", 0), word


def test_read_command_unwatch_cannot_lose_an_update(store: redmodel.Store) -> None:
    """The lost update F3 made: read, UNWATCH, another client writes, commit."""
    _setup(store, [])
    store.save(Tx(id="b", cnt=0))
    tries = 0

    def work(tx: Any) -> None:
        nonlocal tries
        tries += 1
        cnt = tx.get_or_raise(Tx, "b").cnt
        with pytest.raises(redmodel.ValidationError, match="UNWATCH"):
            tx.read_command("unwatch", watch=())
        if tries == 1:
            store.update(Tx, "b", cnt=100)  # a concurrent writer
        tx.update(Tx, "b", cnt=cnt + 1)

    store.transaction(work)()
    assert tries == 2
    assert store.get_or_raise(Tx, "b").cnt == 101


@pytest.mark.parametrize("sub", ["ID", "id", "INFO", "GETNAME", "LIST"])
def test_client_read_only_subcommands_are_allowed(store: redmodel.Store, sub: str) -> None:
    _setup(store, [])

    def work(tx: Any) -> tuple[Any, Any]:
        now = tx.read_command("CLIENT", sub, watch=())
        queued = tx.command("CLIENT", sub)
        return now, queued

    now, queued = store.transaction(work)()
    if sub.upper() == "ID":
        assert isinstance(now, int) and now == queued.value  # one connection
    elif sub == "GETNAME":
        assert now is None and queued.value is None  # the pooled connection has no name
    else:
        assert now and queued.value


# one core: the async handle checks and splits the same way
def test_async_transactions_share_the_raw_rules(redis_url: str,
                                                store: redmodel.Store) -> None:
    shell = AsyncFacade(redmodel.AsyncStore.from_url(redis_url), store.client)
    try:
        _setup(store, [])
        store.save(Tx(id="b", n=5, note="old"))
        key = SPEC.key_for("b")

        async def work(tx: Any) -> Any:
            with pytest.raises(redmodel.ValidationError, match="SELECT"):
                await tx.read_command("select", 1, watch=())
            with pytest.raises(redmodel.ValidationError, match="SCRIPT"):
                tx.command(b"script flush")
            got = await tx.read_command(f"HGET\t{key}", "note", watch=[key])
            tx.command(f"HSET {key}", "note", "raw")
            tx.update(Tx, "b", n=6)
            return got

        assert shell.transaction(work)() == b"old"
        assert store.get(Tx, "b") == Tx(id="b", n=6, note="raw")
        check(store, "async")
    finally:
        shell.close()
