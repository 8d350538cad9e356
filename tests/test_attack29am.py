"""Attack 29AM: this session's fixes to ACL refusals, exactly-once replies, import/export.

Each test asserts what the docs promise and fails now (findings in
/work/notes/s29/ATK-AM-FINDINGS.md)."""

from __future__ import annotations

import secrets
from typing import Any

import attrs
import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

import redmodel
from redmodel.testing import FaultProxy, RedisServer, has
from tests.acl import setuser_args
from tests.faults import FAST_RESEND, store_through


@redmodel.model(prefix="amopt")
@attrs.define
class AmOpt:  # every stored field optional: the hash may be empty (hash_update's marker)
    note: str | None = None
    size: int | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="amix")
@attrs.define
class AmIdx:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    id: str = redmodel.key_field()


@redmodel.model(prefix="amtx")
@attrs.define
class AmCount:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _user(redis_client: Any, redis_url: str, feature: str, keys: tuple[str, ...]
          ) -> redmodel.Store:
    """A store logged in as a new user with exactly the feature's rule (tests/acl.py)."""
    name = f"am{secrets.token_hex(4)}"
    redis_client.execute_command(*setuser_args(name, "pw", feature, keys))
    host_port = redis_url.split("://", 1)[1].split("/", maxsplit=1)[0]
    return redmodel.Store.from_url(f"redis://{name}:pw@{host_port}",
                                   retry=Retry(NoBackoff(), 0))


# ---- F1, F2: the documented ACL rules miss a command a feature calls --------------------

def test_f1_update_of_a_model_whose_fields_are_all_optional_with_the_hash_rule(
        redis_client: Any, redis_url: str) -> None:
    """docs/deploy.md "ACL users": "every feature's methods run as a user with exactly
    that rule and nothing is refused"; Hash models: `save`, `get`, `update`, ... .
    hash_update.lua calls HLEN for a model whose hash may be empty (every field
    optional), and the hash models rule has no +hlen: every such update is refused."""
    with _user(redis_client, redis_url, "hash models", ("amopt:*",)) as shop:
        o = AmOpt(note="a", size=1)
        shop.save(o)
        assert shop.update(AmOpt, o.id, note=None, size=2)
        assert shop.get(AmOpt, o.id) == AmOpt(note=None, size=2, id=o.id)


@pytest.mark.parametrize("order", ["price", "-price"])
def test_f2_sorted_query_pages_after_a_cursor_with_the_index_rule(
        redis_client: Any, redis_url: str, order: str) -> None:
    """docs/deploy.md "ACL users": Indexes and queries (`find`, ...): "every feature's
    methods run as a user with exactly that rule and nothing is refused". A sorted query
    resumed from a cursor (`after(cursor)`, `.pages()`, iteration) runs ZRANK / ZREVRANK
    in query.lua, which the rule does not grant."""
    with _user(redis_client, redis_url, "indexes and queries", ("amix:*",)) as shop:
        shop.save_many([AmIdx("red", float(i)) for i in range(5)])
        q = shop.find(AmIdx, color="red").order_by(order)
        first = q.page(2)
        rest = q.after(first.cursor).page(2)
        assert len(rest.items) == 2
        assert sum(len(p) for p in shop.find(AmIdx).order_by(order).pages(2)) == 5


# ---- F3, F4: exactly-once mode changes what tx.command answers -------------------------

def _both(redis_server: RedisServer, commands: list[tuple[str, ...]]) -> dict[bool, Any]:
    """The values of the transaction's raw commands, plain and in exactly-once mode, each
    on an empty server."""
    out: dict[bool, Any] = {}
    for once in (False, True):
        with redis_server.client() as admin:
            admin.flushall()
        with redmodel.Store(redis_server.client(), exactly_once=once) as store:
            pending: list[Any] = []

            def fn(tx: Any, pending: list[Any] = pending) -> None:
                pending.clear()
                pending.extend(tx.command(*c) for c in commands)

            store.transaction(fn)()
            out[once] = [p.value for p in pending]
    return out


@pytest.mark.parametrize("commands", [
    [("ZADD", "z", "1", "a", "2", "b"), ("ZPOPMIN", "z", "2")],
    [("ZADD", "z", "1", "a", "2", "b"), ("ZPOPMAX", "z", "2")],
    [("HSET", "h", "a", "1", "b", "2"), ("HGETALL", "h")],
    [("ZADD", "z", "0.1", "a"), ("ZINCRBY", "z", "0.2", "a")],
    [("ZADD", "z", "1", "a", "2", "b"), ("ZRANGE", "z", "0", "-1", "WITHSCORES")],
], ids=["zpopmin", "zpopmax", "hgetall", "zincrby", "zrange-withscores"])
def test_f3_exactly_once_tx_command_answers_what_redis_py_answers(
        redis_server: RedisServer, commands: list[tuple[str, ...]]) -> None:
    """redmodel/transactions/_handles.py, Transaction.command: "value: its reply, as
    redis-py's ``execute_command`` would return it (its response callback applied)".
    In exactly-once mode the command runs inside once_command.lua, whose reply is RESP2's
    (flat arrays, scores as text) while the client parses it as RESP3: ZPOPMIN/ZPOPMAX of
    2 answer one pair (the other popped member is lost to the caller), HGETALL a list,
    ZINCRBY bytes."""
    out = _both(redis_server, commands)
    assert out[True] == out[False]


def test_f4_exactly_once_bitfield_answers_64_bit_values_exactly(
        redis_server: RedisServer) -> None:
    """CHANGELOG "Exactly-once mode answers a counter's value exactly over 64 bits" and
    Transaction.command's docstring ("its reply, as redis-py's execute_command would
    return it"): BITFIELD's integer replies pass through a Lua double inside
    once_command.lua, so 2**62+3 is answered as 2**62 (the stored value is right)."""
    n = 2**62 + 3
    out = _both(redis_server, [("BITFIELD", "b", "INCRBY", "i64", "0", str(n)),
                               ("BITFIELD", "b", "GET", "i64", "0")])
    assert out[False] == [[n], [n]]
    assert out[True] == [[n], [n]]


# ---- F5: a restarted attempt is counted as a conflict -----------------------------------

def test_f5_a_restart_is_not_a_conflict(proxy: FaultProxy, redis_client: Any) -> None:
    """docs/transactions.md "How many attempts did it take?": `Outcome` has `.conflicts`;
    `restarts` are "attempts run again because they could not go on, nothing applied";
    "the call raises `ConflictError` with `.attempts` (how many attempts conflicted)".
    An attempt restarted after a dropped request makes Outcome.conflicts 1 (stats say 0
    conflicts), and a ConflictError after one restart and one conflict says .attempts == 2
    ("conflicted on all 2 attempts")."""
    redmodel.Store(redis_client).save(AmCount(id="1", n=1))
    store = store_through(proxy, resend=FAST_RESEND)
    other = redmodel.Store(redis_client)

    @redmodel.transaction(store)
    def bump(tx: Any) -> None:
        c = tx.get_or_raise(AmCount, "1")
        tx.update(AmCount, "1", n=c.n + 1)

    proxy.drop_request("HGETALL", when=has("amtx:1"), times=1)
    out = bump.outcome()
    stats = bump.stats.snapshot()
    assert (stats["restarts"], stats["conflicts"]) == (1, 0)
    runs: list[int] = []
    policy = redmodel.transactions.RetryPolicy(attempts=2, backoff_base=0.0001,
                                               backoff_max=0.001)

    @redmodel.transaction(store, policy=policy)
    def clash(tx: Any) -> None:
        runs.append(1)
        c = tx.get_or_raise(AmCount, "1")
        if len(runs) >= 2:
            other.update(AmCount, "1", n=c.n + 100)  # a WATCH conflict
        tx.update(AmCount, "1", n=c.n + 1)

    proxy.drop_request("HGETALL", when=has("amtx:1"), times=1)
    with pytest.raises(redmodel.ConflictError) as caught:
        clash()
    # the restart does not use up a conflict retry (transactions.md "Retry policy": WATCH
    # conflicts under the RetryPolicy, restarts under the store's ResendPolicy): a restart,
    # then both attempts=2 conflicts
    assert len(runs) == 3 and clash.stats.snapshot()["conflicts"] == 2
    assert (out.conflicts, caught.value.attempts) == (0, 2)
    assert "conflicted on all 2 attempts" in str(caught.value)
