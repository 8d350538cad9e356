"""Fixes of /work/notes/FINDINGS-18b.md, checked deterministically (tests/test_attack18b.py
holds the attacker's repros): a foreign plan in tx.queue and a join from another thread or
event loop are refused before anything is sent; a generator function behind a wrapper is
still refused once it returns."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel import AsyncStore, Store
from redmodel.containers import Queue
from redmodel.plans import Plan


@redmodel.model(prefix="f18j")
@attrs.define
class Hat:
    quantity: int = 0
    id: str = redmodel.key_field()


def _twice(a: Plan[Any], b: Plan[Any]) -> Plan[tuple[Any, Any]]:
    return ((yield from a), (yield from b))


def test_a_foreign_plan_is_refused_before_anything_is_sent(
        store: Store, redis_client: redis.Redis) -> None:
    q = Queue(store, "f18jq", int)

    @redmodel.transaction(store)
    def composed(tx: Any) -> Any:
        tx.command("INCR", "f18j:ctr")
        return tx.queue(_twice(q.push_plan(1), q.push_plan(2)))

    with pytest.raises(redmodel.TransactionError, match=r"tx\.queue\(a\); tx\.queue\(b\)"):
        composed()
    assert redis_client.get("f18j:ctr") is None
    assert redis_client.lrange("f18jq", 0, -1) == []

    @redmodel.transaction(store)
    def separately(tx: Any) -> Any:
        tx.command("INCR", "f18j:ctr")
        return tx.queue(q.push_plan(1)), tx.queue(q.push_plan(2))

    separately()
    assert redis_client.get("f18j:ctr") == b"1"
    assert redis_client.lrange("f18jq", 0, -1) == [b"1", b"2"]


def test_a_join_from_another_thread_is_refused(store: Store) -> None:
    store.save(Hat(id="1", quantity=2))

    @redmodel.transaction(store)
    def take(tx: Any) -> int:
        return int(tx.get_or_raise(Hat, "1").quantity)

    @redmodel.transaction(store)
    def outer(tx: Any) -> int:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(contextvars.copy_context().run, take).result()

    with pytest.raises(redmodel.TransactionError, match="another thread"):
        outer()
    assert outer.stats.restarts == 0
    assert take() == 2  # on its own, in this thread


def test_a_join_from_another_event_loop_is_refused(redis_url: str) -> None:
    async def main() -> None:
        store = AsyncStore.from_url(redis_url)
        try:
            await store.save(Hat(id="2", quantity=3))

            @redmodel.transaction(store)
            async def take(tx: Any) -> int:
                return int((await tx.get_or_raise(Hat, "2")).quantity)

            @redmodel.transaction(store)
            async def outer(tx: Any) -> int:
                return await asyncio.to_thread(lambda: asyncio.run(take()))

            with pytest.raises(redmodel.TransactionError, match="another event loop"):
                await outer()
        finally:
            await store.client.aclose()

    asyncio.run(main())


def test_a_generator_function_behind_a_wrapper_is_still_refused(
        store: Store, redis_client: redis.Redis) -> None:
    def gen(tx: Any) -> Any:
        tx.command("SET", "f18j:never", "1")
        yield 1

    def wrapper(tx: Any) -> Any:  # hides the generator function from the decorator
        return gen(tx)

    refused = redmodel.transaction(store)(functools.partial(wrapper))
    with pytest.raises(redmodel.TransactionError, match="generator"):
        refused()
    assert redis_client.get("f18j:never") is None
