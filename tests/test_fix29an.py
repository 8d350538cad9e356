"""A transaction holding a command the server refuses while queueing it (wrong number of
arguments, unknown command) raises that command's error: it names the command and its
keys, wherever it stands among the others (attack 29AN F3). Plainly nothing is applied; in
exactly-once mode each command runs inside a script, so the server refuses it only when
EXEC runs it: the others are applied and the error is marked ``committed``
(docs/transactions.md)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import RedisServer
from tests.budget import scaled

_GOOD = [("SET", "an:a", "1"), ("HSET", "an:h", "f", "v"), ("RPUSH", "an:l", "x"),
         ("INCR", "an:n"), ("SADD", "an:s", "m")]
_BAD = [(("GET", "an:bad", "extra"), "get"), (("NOSUCHCMD", "an:bad"), "nosuchcmd"),
        (("HSET", "an:bad", "f"), "hset"), (("LPUSH", "an:bad"), "lpush")]


@settings(max_examples=scaled(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.lists(st.sampled_from(_GOOD), max_size=4), bad=st.sampled_from(_BAD),
       at=st.integers(0, 4), once=st.booleans())
def test_a_command_refused_while_queued_is_named_by_its_own_error(
        redis_server: RedisServer, good: list[tuple[str, ...]],
        bad: tuple[tuple[str, ...], str], at: int, once: bool) -> None:
    """Property: the refused command's error is raised (its name, its key ``an:bad``), and
    none of the other commands was applied."""
    command, name = bad
    commands = [*good[:at], command, *good[at:]]
    with redis_server.client() as admin:
        admin.flushall()
        with redmodel.Store(redis_server.client(), exactly_once=once) as store:
            def fn(tx: Any) -> None:
                for c in commands:
                    tx.command(*c)

            with pytest.raises(redmodel.ServerError) as raised:
                store.transaction(fn)()
        assert name in str(raised.value).lower(), raised.value
        assert "an:bad" in raised.value.keys, raised.value.keys
        if once:  # each command runs in a script: refused only when EXEC runs it
            assert getattr(raised.value, "committed", False) is True
            assert admin.exists("an:bad") == 0
        else:
            assert admin.keys("an:*") == []  # nothing applied
