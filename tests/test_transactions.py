"""Optimistic transactions (WATCH / MULTI / EXEC with retries) and the Lua conditional update."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel import (
    ConditionFailedError,
    ConflictError,
    NotFoundError,
    ReadAfterWriteError,
    TransactionError,
    ValidationError,
    transaction,
)
from redmodel.transactions import Pending, RetryPolicy, Transaction, current_transaction
from redmodel.transactions._core import TxCore

FAST = RetryPolicy(attempts=3, backoff_base=0.0, backoff_max=0.0)


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    id: str = redmodel.key_field(generated=False)
    color: str = ""
    price: float = 0.0
    quantity: int = 0
    npurchased: int = 0


@redmodel.model(prefix="customer")
@attrs.define
class Customer:
    id: str = redmodel.key_field(generated=False)
    name: str = ""
    balance: float = 0.0
    hats: int = 0


class OutOfStockError(Exception):
    """The hat is sold out."""


@pytest.fixture
def store(redis_client: redis.Redis) -> redmodel.Store:
    return redmodel.Store(redis_client)


@pytest.fixture
def hat(store: redmodel.Store) -> Hat:
    h = Hat(color="black", price=49.99, quantity=3, id="1")
    store.save(h)
    return h


def make_buy(store: redmodel.Store, policy: RetryPolicy = FAST) -> Any:
    @transaction(store, policy=policy)
    def buy(tx: Transaction, hat_id: str) -> Pending[int]:
        qty = tx.get_field(Hat, hat_id, "quantity")
        if qty is None or qty <= 0:
            raise OutOfStockError(hat_id)
        left = tx.incr(Hat, hat_id, "quantity", -1)
        tx.incr(Hat, hat_id, "npurchased", 1)
        return left

    return buy


# ---- the basic flow ---------------------------------------------------------------------


def test_buy_commits_and_pending_value_is_available_after_commit(store, hat):
    left = make_buy(store)("1")
    assert left.done and left.value == 2
    got = store.get(Hat, "1")
    assert (got.quantity, got.npurchased) == (2, 1)


def test_pending_value_before_commit_raises_clear_error(store, hat):
    seen: list[str] = []

    @transaction(store)
    def fn(tx: Transaction) -> Pending[bool]:
        p = tx.update(Hat, "1", color="red")
        with pytest.raises(TransactionError, match="only after the transaction commits"):
            _ = p.value
        seen.append(repr(p))
        return p

    assert fn().value is True
    assert "waiting" in seen[0]
    assert store.get(Hat, "1").color == "red"


def test_reads_see_the_current_value(store, hat):
    store.update(Hat, "1", quantity=7)

    @transaction(store)
    def read(tx: Transaction) -> tuple[Any, ...]:
        return (tx.get(Hat, "1").quantity, tx.get_field(Hat, "1", "quantity"),
                tx.exists(Hat, "1"), tx.exists(Hat, "nope"), tx.get(Hat, "nope"),
                [h and h.id for h in tx.get_many(Hat, ["1", "nope"])])

    assert read() == (7, 7, True, False, None, ["1", None])


def test_return_value_and_outcome_attempts(store, hat):
    buy = make_buy(store)
    outcome = buy.outcome("1")
    assert outcome.attempts == 1 and outcome.conflicts == 0
    assert outcome.keys == ("hat:1",)
    assert outcome.value.value == 2
    assert buy.stats.snapshot() == {"calls": 1, "joined": 0, "attempts": 1, "commits": 1,
                                    "conflicts": 0, "exhausted": 0, "errors": 0,
                                    "restarts": 0}


# ---- errors inside the function ---------------------------------------------------------


def test_out_of_stock_raises_unchanged_and_writes_nothing(store):
    store.save(Hat(color="grey", price=1.0, quantity=0, id="1"))
    error = OutOfStockError("1")

    @transaction(store)
    def buy(tx: Transaction) -> None:
        if tx.get_field(Hat, "1", "quantity") <= 0:
            raise error

    with pytest.raises(OutOfStockError) as info:
        buy()
    assert info.value is error
    assert buy.stats.errors == 1 and buy.stats.commits == 0


def test_write_queued_then_function_raises_writes_nothing(store, hat, redis_client):
    @transaction(store)
    def fn(tx: Transaction) -> None:
        tx.get(Hat, "1")
        tx.incr(Hat, "1", "quantity", -1)
        tx.save(Customer(name="ann", id="a"))
        tx.command("SET", "flag", "1")
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        fn()
    assert store.get(Hat, "1").quantity == 3
    assert redis_client.exists("customer:a", "flag") == 0


def test_read_after_write_is_refused(store, hat):
    @transaction(store)
    def fn(tx: Transaction) -> None:
        tx.update(Hat, "1", color="red")
        tx.get(Hat, "1")

    with pytest.raises(ReadAfterWriteError, match=r"cannot get Hat '1' after update Hat"):
        fn()
    assert store.get(Hat, "1").color == "black"


def test_validation_error_raised_at_queue_time(store, hat):
    @transaction(store)
    def fn(tx: Transaction) -> None:
        tx.command("SET", "flag", "1")
        tx.incr(Hat, "1", "quantity", 1.5)

    with pytest.raises(ValidationError, match="quantity"):
        fn()
    assert store.client.exists("flag") == 0


def test_failed_command_at_exec_raises_after_the_rest_committed(store, hat):
    """Redis has no rollback: a write that fails inside EXEC does not undo the others."""

    @transaction(store)
    def fn(tx: Transaction) -> tuple[Pending[Any], Pending[Any]]:
        return tx.incr(Hat, "1", "quantity", -1), tx.incr(Hat, "gone", "quantity", -1)

    with pytest.raises(NotFoundError, match="hat:gone"):
        fn()
    assert store.get(Hat, "1").quantity == 2


# ---- conflicts and retries --------------------------------------------------------------


def test_conflict_is_retried_and_counted(store, hat, redis_client, caplog):
    calls = 0

    @transaction(store, policy=FAST)
    def buy(tx: Transaction) -> int:
        nonlocal calls
        calls += 1
        qty = tx.get_field(Hat, "1", "quantity")
        if calls == 1:  # another client buys meanwhile
            redis_client.hincrby("hat:1", "quantity", -1)
        tx.update(Hat, "1", quantity=qty - 1)
        return qty

    with caplog.at_level(logging.WARNING, logger="redmodel.tx"):
        outcome = buy.outcome()
    assert outcome.attempts == 2 and outcome.value == 2
    assert store.get(Hat, "1").quantity == 1  # no lost update
    assert buy.stats.conflicts == 1 and buy.stats.commits == 1
    [record] = caplog.records
    assert "attempt 1 of 3" in record.getMessage() and "hat:1" in record.getMessage()


def test_retry_exhaustion_raises_conflict_error(store, hat, redis_client, caplog):
    @transaction(store, policy=FAST)
    def buy(tx: Transaction) -> None:
        qty = tx.get_field(Hat, "1", "quantity")
        redis_client.hset("hat:1", "color", "changed by someone else")
        tx.update(Hat, "1", quantity=qty - 1)

    with caplog.at_level(logging.INFO, logger="redmodel.tx"), \
            pytest.raises(ConflictError) as info:
        buy()
    assert info.value.attempts == 3
    assert info.value.keys == ("hat:1",)
    assert "conflicted on all 3 attempts" in str(info.value)
    assert store.get(Hat, "1").quantity == 3
    assert [re.search(r"WATCH conflict on attempt \d of \d", r.getMessage())[0]
            for r in caplog.records] == [
        "WATCH conflict on attempt 1 of 3", "WATCH conflict on attempt 2 of 3",
        "WATCH conflict on attempt 3 of 3"]
    assert "giving up" in caplog.records[-1].getMessage()
    assert buy.stats.snapshot()["exhausted"] == 1 and buy.stats.conflicts == 3


def test_deadline_stops_retrying(store, hat, redis_client):
    policy = RetryPolicy(attempts=1000, backoff_base=0.01, backoff_max=0.01, deadline=0.05)

    @transaction(store, policy=policy)
    def fn(tx: Transaction) -> None:
        tx.get(Hat, "1")
        redis_client.hset("hat:1", "color", "x")
        tx.update(Hat, "1", color="y")

    with pytest.raises(ConflictError, match="within its deadline") as info:
        fn()
    assert 1 <= info.value.attempts < 1000


def test_read_only_transaction_retries_an_inconsistent_snapshot(store, hat, redis_client):
    store.save(Customer(name="ann", id="a"))
    attempts = 0

    @transaction(store, policy=FAST)
    def both(tx: Transaction) -> tuple[int, int]:
        nonlocal attempts
        attempts += 1
        hat = tx.get(Hat, "1")
        if attempts == 1:
            redis_client.hset("customer:a", "hats", "5")
            redis_client.hset("hat:1", "quantity", "9")
        return hat.quantity, tx.get(Customer, "a").hats

    assert both() == (9, 5)
    assert attempts == 2


def test_retry_policy_backoff_is_full_jitter_and_bounded():
    p = RetryPolicy(attempts=5, backoff_base=0.01, backoff_max=0.05)
    assert p.backoff(1, lambda: 1.0) == pytest.approx(0.01)
    assert p.backoff(3, lambda: 1.0) == pytest.approx(0.04)
    assert p.backoff(10, lambda: 1.0) == pytest.approx(0.05)
    assert p.backoff(10, lambda: 0.0) == 0.0
    assert p.next_delay(4, 0.0, lambda: 0.5) == pytest.approx(0.025)
    assert p.next_delay(5, 0.0) is None
    assert RetryPolicy(deadline=1.0).next_delay(1, 0.999, lambda: 1.0) is None
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="backoff_base"):
        RetryPolicy(backoff_base=-1)


def test_stats_are_thread_safe(store, hat):
    store.update(Hat, "1", quantity=1000)
    buy = make_buy(store, RetryPolicy(attempts=100, backoff_base=0.0005, backoff_max=0.005))

    def worker() -> None:
        for _ in range(10):
            buy("1")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = buy.stats.snapshot()
    assert snap["calls"] == snap["commits"] == 80
    assert snap["attempts"] == 80 + snap["conflicts"]
    got = store.get(Hat, "1")
    assert (got.quantity, got.npurchased) == (920, 80)


# ---- connection errors ------------------------------------------------------------------


@pytest.mark.parametrize("client_retry", ["redis-py default", "none"])
def test_a_connection_lost_before_exec_runs_the_attempt_again_then_raises(
        redis_server, hat, redis_client, client_retry):
    kwargs: dict[str, Any] = {} if client_retry == "redis-py default" else {"retry": None}
    client = redis.Redis.from_url(redis_server.url, **kwargs)
    store = redmodel.Store(client, resend=redmodel.ResendPolicy(attempts=3, backoff_base=0))
    calls = 0

    @transaction(store, policy=RetryPolicy(attempts=5, backoff_base=0))
    def fn(tx: Transaction) -> None:
        nonlocal calls
        calls += 1
        tx.get(Hat, "1")
        conn_id = tx.read_command("CLIENT", "ID", watch=())  # the WATCH connection
        redis_client.client_kill_filter(_id=conn_id)
        tx.incr(Hat, "1", "quantity", -1)

    try:
        with pytest.raises(redis.ConnectionError) as raised:
            fn()
    finally:
        client.close()
    # nothing was applied by any attempt, so each ran again, up to the store's ResendPolicy
    assert not isinstance(raised.value, redmodel.OutcomeUnknownError)
    assert calls == 3
    # restarts: the attempts run again (2); the third gave up: an error, not a restart
    # (attack 29AH F2: this test said 3, the docs' "attempts run again" says 2)
    assert fn.stats.errors == 1 and fn.stats.conflicts == 0 and fn.stats.restarts == 2
    assert redis_client.hget("hat:1", "quantity") == b"3"


def test_a_connection_lost_once_before_exec_commits_on_the_next_attempt(
        store, hat, redis_client):
    calls = 0

    @transaction(store)
    def fn(tx: Transaction) -> None:
        nonlocal calls
        calls += 1
        tx.get(Hat, "1")
        if calls == 1:
            conn_id = tx.read_command("CLIENT", "ID", watch=())
            redis_client.client_kill_filter(_id=conn_id)
        tx.incr(Hat, "1", "quantity", -1)

    fn()
    assert calls == 2 and fn.stats.restarts == 1 and fn.stats.commits == 1
    assert redis_client.hget("hat:1", "quantity") == b"2"  # applied once


def test_a_single_attempt_raises_the_connection_error(store, hat, redis_client):
    with pytest.raises(redis.ConnectionError) as raised, Transaction(store) as tx:
        tx.get(Hat, "1")
        redis_client.client_kill_filter(_id=tx.read_command("CLIENT", "ID", watch=()))
        tx.incr(Hat, "1", "quantity", -1)
    assert not isinstance(raised.value, redmodel.OutcomeUnknownError)
    assert redis_client.hget("hat:1", "quantity") == b"3"


# ---- several models, raw commands ------------------------------------------------------


def test_several_models_in_one_transaction(store, hat):
    store.save(Customer(name="ann", balance=60.0, id="a"))

    @transaction(store)
    def buy_for(tx: Transaction, customer_id: str, hat_id: str) -> tuple[Any, ...]:
        customer = tx.get_or_raise(Customer, customer_id)
        h = tx.get_or_raise(Hat, hat_id)
        if customer.balance < h.price:
            raise ValueError("not enough money")
        return (tx.incr(Customer, customer_id, "balance", -h.price),
                tx.incr(Customer, customer_id, "hats", 1),
                tx.update(Hat, hat_id, quantity=h.quantity - 1, npurchased=h.npurchased + 1),
                tx.watched)

    balance, hats, updated, watched = buy_for("a", "1")
    assert watched == ("customer:a", "hat:1")
    assert balance.value == pytest.approx(10.01) and hats.value == 1 and updated.value is True
    assert store.get(Hat, "1").quantity == 2
    with pytest.raises(ValueError, match="money"):
        buy_for("a", "1")
    assert store.get(Customer, "a").hats == 1


def test_raw_commands_save_many_delete_expire(store, hat, redis_client):
    @transaction(store)
    def fn(tx: Transaction) -> list[Pending[Any]]:
        tx.watch("counter")
        n = int(tx.read_command("GET", "counter", watch=("counter",)) or 0)
        return [tx.command("SET", "counter", n + 1),
                tx.save_many([Customer(name="x", id="x"), Customer(name="y", id="y")]),
                tx.save(Customer(name="z", id="z"), ttl=60),
                tx.expire(Hat, "1", 30),
                tx.delete(Customer, "x"),
                tx.delete_many(Customer, ["y", "nope"]),
                tx.incr_fields(Hat, "1", {"quantity": -1}, floor={"quantity": 0})]

    results = [p.value for p in fn()]
    assert results == [True, 2, "customer:z", True, True, 1, {"quantity": 2}]
    assert redis_client.get("counter") == b"1"
    assert 0 < store.ttl(Hat, "1") <= 30
    assert store.get(Customer, "z") is not None


# ---- nesting ----------------------------------------------------------------------------


def test_nested_call_joins_the_outer_transaction(store, hat, redis_client):
    inner_calls = 0

    @transaction(store)
    def take_one(tx: Transaction, hat_id: str) -> int:
        nonlocal inner_calls
        inner_calls += 1
        assert current_transaction() is tx
        return tx.get_field(Hat, hat_id, "quantity")

    @transaction(store, policy=FAST)
    def outer(tx: Transaction) -> int:
        qty = take_one("1")  # joins: same tx, its read is watched by the outer one
        if inner_calls == 1:
            redis_client.hset("hat:1", "quantity", "10")  # conflicts with the inner read
        outcome = take_one.outcome("1")
        assert outcome.joined and outcome.attempts == 0
        tx.update(Hat, "1", quantity=qty - 1)
        return qty

    assert outer.outcome().attempts == 2  # the outer transaction retried, as a whole
    assert store.get(Hat, "1").quantity == 9
    assert take_one.stats.joined == 4 and take_one.stats.calls == 0


def test_nested_failure_caught_by_outer_drops_only_the_inner_writes(store, hat):
    @transaction  # unbound: runs only inside another transaction, or after .bind(store)
    def risky(tx: Transaction) -> None:
        tx.update(Hat, "1", color="inner")
        raise OutOfStockError("1")

    @transaction(store)
    def outer(tx: Transaction) -> Pending[bool]:
        first = tx.update(Hat, "1", price=1.0)
        with pytest.raises(OutOfStockError):
            risky()
        return first

    assert outer().value is True
    got = store.get(Hat, "1")
    assert (got.price, got.color) == (1.0, "black")


def test_nested_context_manager_joins_and_errors_roll_back(store, hat):
    with Transaction(store) as outer:
        outer.get(Hat, "1")
        with Transaction(store) as inner:
            assert inner is outer
            inner.update(Hat, "1", color="kept")
        with pytest.raises(KeyError), Transaction(store) as inner2:
            inner2.update(Hat, "1", price=0.5)
            raise KeyError
    got = store.get(Hat, "1")
    assert (got.color, got.price) == ("kept", 49.99)


def test_nested_call_on_another_store_is_an_error(store, hat, redis_server):
    other = redmodel.Store(redis_server.client())

    @transaction(other)
    def elsewhere(tx: Transaction) -> None:
        tx.get(Hat, "1")

    @transaction(store)
    def outer(tx: Transaction) -> None:
        elsewhere()

    with pytest.raises(TransactionError, match="another store"):
        outer()
    other.close()


def test_unbound_function_outside_a_transaction_is_an_error(store, hat):
    @transaction()
    def fn(tx: Transaction) -> int:
        return tx.get_field(Hat, "1", "quantity")

    with pytest.raises(TransactionError, match=r"bind\(store\)"):
        fn()
    assert fn.bind(store)() == 3
    assert transaction(store)(fn.fn)() == 3


# ---- the context manager ----------------------------------------------------------------


def test_context_manager_commits_once_and_conflict_raises(store, hat, redis_client):
    with Transaction(store) as tx:
        qty = tx.get_field(Hat, "1", "quantity")
        left = tx.incr(Hat, "1", "quantity", -1)
    assert left.value == qty - 1 == 2

    with pytest.raises(ConflictError, match="1 attempt") as info, Transaction(store) as tx:
        tx.get(Hat, "1")
        redis_client.hset("hat:1", "quantity", "0")
        tx.incr(Hat, "1", "quantity", -1)
    assert info.value.attempts == 1
    assert redis_client.hget("hat:1", "quantity") == b"0"
    assert current_transaction() is None


def test_core_decides_without_io():
    core = TxCore()
    assert core.read(["a", "b", "a"], "read") == ["a", "b"]
    assert core.read(["b", "c"], "read") == ["c"]

    def plan() -> Any:
        replies = yield redmodel._plan.Batch([("SET", "a", 1)], write=True)
        return replies[0]

    gen = plan()
    pending = core.queue(next(gen), gen, "set a")
    with pytest.raises(ReadAfterWriteError):
        core.read(["d"], "read d")
    assert core.exec_commands() == [("SET", "a", 1)]
    assert core.finish([True]) is None and pending.value is True


# ---- the Lua path -----------------------------------------------------------------------


def test_incr_fields_applies_every_change_and_returns_typed_values(store, hat):
    new = store.incr_fields(Hat, "1", {"quantity": -1, "npurchased": 1, "price": 0.5},
                                floor={"quantity": 0})
    assert new == {"quantity": 2, "npurchased": 1, "price": pytest.approx(50.49)}
    assert type(new["quantity"]) is int and type(new["price"]) is float


def test_incr_fields_below_floor_changes_nothing(store, hat):
    store.update(Hat, "1", quantity=0)
    with pytest.raises(ConditionFailedError) as info:
        store.incr_fields(Hat, "1", {"quantity": -1, "npurchased": 1},
                              floor={"quantity": 0})
    e = info.value
    assert (e.model, e.key, e.field, e.kind, e.bound, e.current, e.change) == (
        "Hat", "hat:1", "quantity", "floor", 0, 0, -1)
    assert "below its floor 0" in str(e)
    assert store.get(Hat, "1").npurchased == 0


def test_incr_fields_ceiling_missing_object_and_validation(store, hat, redis_client):
    with pytest.raises(ConditionFailedError, match=r"above its ceiling 0\.5"):
        store.incr_fields(Hat, "1", {"npurchased": 1}, ceiling={"quantity": 5,
                                                                      "npurchased": 0.5})
    with pytest.raises(ConditionFailedError, match="npurchased"):
        store.incr_fields(Hat, "1", {"quantity": 1}, ceiling={"npurchased": -1})
    with pytest.raises(NotFoundError, match="hat:2"):
        store.incr_fields(Hat, "2", {"quantity": -1})
    with pytest.raises(ValidationError, match="int field must be an int"):
        store.incr_fields(Hat, "1", {"quantity": 0.5})
    with pytest.raises(ValidationError, match="only int and float"):
        store.incr_fields(Hat, "1", {"color": 1})
    redis_client.hset("hat:1", "quantity", "lots")
    with pytest.raises(redmodel.DecodeError, match="quantity"):
        store.incr_fields(Hat, "1", {"quantity": -1})
    assert store.get(Customer, "1") is None
