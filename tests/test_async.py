"""The asyncio shell: transactions through ``async def`` and the buy stress test as many
concurrent tasks. (Every Store behaviour test also runs through AsyncStore, parametrized,
via the ``any_store`` fixture.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from typing import Any, TypeVar

import attrs
import pytest
import redis

import redmodel
from redmodel import AsyncStore
from redmodel.transactions import AsyncTransaction, RetryPolicy

T = TypeVar("T")


@redmodel.model(prefix="ahat", hash_tag=True)
@attrs.define
class Hat:
    color: str
    quantity: int = 0
    npurchased: int = 0
    id: str = redmodel.key_field()


class OutOfStockError(Exception):
    pass


def run(make: Callable[[AsyncStore], Awaitable[T]], url: str, cluster: bool = False) -> T:
    async def main() -> T:
        async with AsyncStore.from_url(url, cluster=cluster) as store:
            return await make(store)

    return asyncio.run(main())


@pytest.fixture(params=["server", "cluster"])
def target(request: pytest.FixtureRequest) -> tuple[str, bool]:
    if request.param == "server":
        request.getfixturevalue("redis_client")
        return request.getfixturevalue("redis_url"), False
    request.getfixturevalue("redis_cluster_client")
    return request.getfixturevalue("redis_cluster").url, True


def buyer(store: AsyncStore, policy: RetryPolicy) -> Any:
    @redmodel.transaction(store, policy=policy)
    async def buy(tx: AsyncTransaction, hat_id: str) -> int:
        hat = await tx.get_or_raise(Hat, hat_id)
        if hat.quantity <= 0:
            raise OutOfStockError(hat_id)
        await asyncio.sleep(0)  # let other tasks read the same stock: real contention
        tx.incr(Hat, hat_id, "quantity", -1)
        tx.incr(Hat, hat_id, "npurchased", 1)
        return hat.quantity - 1

    return buy


def test_concurrent_async_buyers_never_oversell(target: tuple[str, bool]) -> None:
    url, cluster = target
    stock, tasks = 25, 80  # under redis-py's default pool of 100: each open transaction holds one

    async def scenario(store: AsyncStore) -> tuple[list[Any], dict[str, int], Hat | None]:
        hat = Hat("black", quantity=stock)
        await store.save(hat)
        buy = buyer(store, RetryPolicy(attempts=200, backoff_base=0.0005, backoff_max=0.005))

        async def one() -> Any:
            try:
                return await buy(hat.id)
            except OutOfStockError as e:
                return e

        results = await asyncio.gather(*(one() for _ in range(tasks)))
        return results, buy.stats.snapshot(), await store.get(Hat, hat.id)

    results, stats, final = run(scenario, url, cluster)
    sold = [r for r in results if isinstance(r, int)]
    assert len(sold) == stock
    assert sorted(sold) == list(range(stock)), "every sale saw a distinct stock level"
    assert sum(isinstance(r, OutOfStockError) for r in results) == tasks - stock
    assert final is not None and final.quantity == 0 and final.npurchased == stock
    assert stats["conflicts"] > 0, "the test must really contend"
    assert stats["exhausted"] == 0


def test_async_exception_propagates_and_writes_nothing(target: tuple[str, bool]) -> None:
    url, cluster = target

    async def scenario(store: AsyncStore) -> Hat | None:
        hat = Hat("green", quantity=0)
        await store.save(hat)
        with pytest.raises(OutOfStockError):
            await buyer(store, RetryPolicy())(hat.id)

        @store.transaction
        async def write_then_fail(tx: AsyncTransaction) -> None:
            await tx.get(Hat, hat.id)
            tx.update(Hat, hat.id, color="red")
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            await write_then_fail()
        return await store.get(Hat, hat.id)

    final = run(scenario, url, cluster)
    assert final is not None and (final.color, final.quantity) == ("green", 0)


def test_async_retry_exhaustion_says_how_many_attempts(redis_url: str,
                                                       redis_client: redis.Redis) -> None:
    async def scenario(store: AsyncStore) -> None:
        hat = Hat("maroon", quantity=5)
        key = await store.save(hat)

        @redmodel.transaction(store, policy=RetryPolicy(attempts=3, backoff_base=0.0001))
        async def always_conflicts(tx: AsyncTransaction) -> None:
            await tx.get(Hat, hat.id)
            redis_client.hincrby(key, "quantity", 1)  # another client changes it
            tx.incr(Hat, hat.id, "npurchased", 1)

        with pytest.raises(redmodel.ConflictError, match="all 3 attempts") as info:
            await always_conflicts()
        assert info.value.attempts == 3
        assert always_conflicts.stats.conflicts == 3
        got = await store.get(Hat, hat.id)
        assert got is not None and got.npurchased == 0

    run(scenario, redis_url)


def test_async_pending_results_nesting_and_read_after_write(redis_url: str,
                                                            redis_client: redis.Redis) -> None:
    async def scenario(store: AsyncStore) -> None:
        hat = Hat("white", quantity=3)
        await store.save(hat)

        @redmodel.transaction()
        async def take_one(tx: AsyncTransaction, hat_id: str) -> redmodel.transactions.Pending[Any]:
            await tx.get_or_raise(Hat, hat_id)
            return tx.incr(Hat, hat_id, "quantity", -1)

        @store.transaction
        async def take_two(tx: AsyncTransaction) -> tuple[Any, Any]:
            first = await take_one(hat.id)  # joins this transaction
            with pytest.raises(redmodel.ReadAfterWriteError):
                await tx.get(Hat, hat.id)
            second = tx.incr(Hat, hat.id, "quantity", -1)
            with pytest.raises(redmodel.TransactionError):
                _ = second.value  # not committed yet
            return first, second

        outcome = await take_two.outcome()
        first, second = outcome.value
        assert (first.value, second.value) == (2, 1)
        assert outcome.attempts == 1
        with pytest.raises(redmodel.TransactionError, match="no store"):
            await take_one(hat.id)

        async with AsyncTransaction(store) as tx:
            current = await tx.get_or_raise(Hat, hat.id)
            tx.update(Hat, hat.id, quantity=current.quantity + 10)
        got = await store.get(Hat, hat.id)
        assert got is not None and got.quantity == 11

    run(scenario, redis_url)


def test_sync_transaction_function_refuses_an_async_store(redis_url: str) -> None:
    async def scenario(store: AsyncStore) -> None:
        # refused when decorated (FINDINGS-18a F3), before it could be called
        with pytest.raises(redmodel.TransactionError, match=r"sync function.*needs a Store"):
            @redmodel.transaction(store)
            def not_async(tx: redmodel.transactions.Transaction) -> None:
                tx.get(Hat, "x")

    run(scenario, redis_url)


def test_async_transaction_function_refuses_a_sync_store(store: redmodel.Store) -> None:
    # refused when decorated (FINDINGS-18a F3), before it could be called
    with pytest.raises(redmodel.TransactionError, match=r"async def.*needs an AsyncStore"):
        @redmodel.transaction(store)
        async def is_async(tx: AsyncTransaction) -> None:
            await tx.get(Hat, "x")


def test_containers_work_through_an_async_store(redis_url: str) -> None:
    async def scenario(store: AsyncStore) -> None:
        queue = redmodel.containers.Queue(store, "ips", IPv4Address)
        assert await queue.push(IPv4Address("51.218.112.236"), IPv4Address("90.213.45.98")) == 2
        assert await queue.pop() == IPv4Address("51.218.112.236")
        assert await queue.length() == 1
        visitors = redmodel.containers.Set(store, ("visitors", "2019-03-10"), str)
        await visitors.add("dan", "jon", "alex")
        assert await visitors.members() == {"dan", "jon", "alex"}

        async def push_later() -> None:
            await asyncio.sleep(0.2)
            await queue.push(IPv4Address("104.174.118.18"))

        await queue.pop()  # empty it
        pusher = asyncio.create_task(push_later())
        got = await queue.pop_blocking(timeout=3)  # the event loop keeps running meanwhile
        await pusher
        assert got == IPv4Address("104.174.118.18")
        assert await queue.pop_blocking(timeout=0.2) is None

    run(scenario, redis_url)


def test_indexed_writes_inside_an_async_transaction(redis_url: str) -> None:
    @redmodel.model(prefix="aihat")
    @attrs.define
    class IHat:
        color: str = redmodel.field(index=True)
        quantity: int = redmodel.field(index="range", default=0)
        id: str = redmodel.key_field(generated=False)

    async def scenario(store: AsyncStore) -> None:
        await store.save(IHat("black", 2, id="t"))

        @store.transaction
        async def recolor(tx: AsyncTransaction) -> None:
            hat = await tx.get_or_raise(IHat, "t")
            tx.update(IHat, "t", color="green", quantity=hat.quantity + 1)

        await recolor()
        assert await store.find(IHat, color="green", quantity=3).ids() == ["t"]
        assert await store.find(IHat, color="black").count() == 0
        assert await store.verify(IHat) == []

    run(scenario, redis_url)


# ---- the seams between sync and async transactions (issue 18) -------------------------------


def test_a_sync_function_cannot_join_an_async_transaction(target: tuple[str, bool]) -> None:
    """Joined, its reads would return un-awaited coroutines: refused, nothing written."""
    @redmodel.transaction
    def sync_inner(tx: redmodel.transactions.Transaction, hat_id: str) -> Any:
        return tx.get(Hat, hat_id)

    async def scenario(store: AsyncStore) -> None:
        await store.save(Hat("black", quantity=3, id="j1"))

        @redmodel.transaction(store)
        async def outer(tx: AsyncTransaction, hat_id: str) -> Any:
            tx.incr(Hat, hat_id, "quantity", -1)
            return sync_inner(hat_id)

        with pytest.raises(redmodel.TransactionError, match="cannot join the open asyncio"):
            await outer("j1")
        hat = await store.get(Hat, "j1")
        assert hat is not None and hat.quantity == 3

    run(scenario, *target)


def test_an_async_transaction_runs_a_raw_read_at_once_and_watches_it(
        target: tuple[str, bool]) -> None:
    """``read_command`` is answered before the MULTI (as on a sync Transaction), and a
    change of the watched key by another client makes the function run again."""
    async def scenario(store: AsyncStore) -> None:
        await store.save(Hat("black", quantity=1, id="r1"))
        key = "ahat:{r1}:counter"  # the slot of the object it writes
        calls = []

        @redmodel.transaction(store)
        async def copy(tx: AsyncTransaction) -> Any:
            seen = await tx.read_command("GET", key, watch=[key])
            calls.append(seen)
            if len(calls) == 1:  # another client changes the watched key: a conflict
                async with AsyncStore.from_url(*target[:1], cluster=target[1]) as other:
                    await other.client.set(key, "7")
            tx.update(Hat, "r1", color=f"seen {seen!r}")
            return seen

        assert await copy() in (b"7", "7")
        assert len(calls) == 2 and calls[0] is None
        hat = await store.get(Hat, "r1")
        assert hat is not None and hat.color in ("seen b'7'", "seen '7'")

    run(scenario, *target)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_generator_function_is_refused_as_a_transaction(kind: str) -> None:
    """Its body would never run before the commit: refused when decorated."""
    if kind == "sync":
        def body(tx: Any) -> Any:
            yield tx
    else:
        async def body(tx: Any) -> Any:  # type: ignore[misc]
            yield tx
    with pytest.raises(redmodel.TransactionError, match="is a generator function"):
        redmodel.transaction(body)
    with pytest.raises(redmodel.TransactionError, match="is a generator function"):
        redmodel.transaction(policy=RetryPolicy(attempts=2))(body)


def test_in_on_an_async_set_refuses_instead_of_always_true(redis_url: str) -> None:
    """``in`` cannot await: on an AsyncStore it raises instead of testing a coroutine's
    truth (always True)."""
    async def scenario(store: AsyncStore) -> None:
        visitors = redmodel.containers.Set(store, "visitors", str)
        await visitors.add("dan")
        with pytest.raises(TypeError, match=r"await s\.contains"):
            "jon" in visitors  # type: ignore[operator]  # noqa: B015
        assert await visitors.contains("dan") and not await visitors.contains("jon")

    run(scenario, redis_url)
