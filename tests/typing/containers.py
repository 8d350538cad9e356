"""Containers are typed by their store: on a Store every method returns its value, on an
AsyncStore a coroutine of it (``await``), as they behave at run time. The store type is
inferred from the constructor; ``Queue[int]`` means ``Queue[int, Store]``."""

import datetime as dt
from collections.abc import Coroutine
from ipaddress import IPv4Address
from typing import Any

import redmodel
from redmodel import AsyncStore, Store


def on_a_store(store: Store) -> None:
    jobs = redmodel.containers.Queue(store, "jobs", int)
    reveal_type(jobs)  # N: Revealed type is "redmodel.containers._queue.Queue[int, redmodel._stores._sync.Store]"
    reveal_type(jobs.push(1, 2))  # N: Revealed type is "int"
    reveal_type(jobs.push_left(0))  # N: Revealed type is "int"
    reveal_type(jobs.pop())  # N: Revealed type is "int | None"
    reveal_type(jobs.pop_right())  # N: Revealed type is "int | None"
    reveal_type(jobs.pop_blocking(0.1))  # N: Revealed type is "int | None"
    reveal_type(jobs.range())  # N: Revealed type is "list[int]"
    reveal_type(jobs.length())  # N: Revealed type is "int"
    reveal_type(jobs.trim(0, 99))  # N: Revealed type is "None"
    reveal_type(jobs.recover())  # N: Revealed type is "int"
    reveal_type(jobs.in_flight())  # N: Revealed type is "dict[str, list[int]]"
    reveal_type(jobs.clear())  # N: Revealed type is "bool"
    reveal_type(jobs.exists())  # N: Revealed type is "bool"
    reveal_type(jobs.expire(dt.timedelta(days=1)))  # N: Revealed type is "bool"
    reveal_type(jobs.consume(max_items=1))  # N: Revealed type is "redmodel.containers._consumer.Consumer[int]"
    for job in jobs.consume(max_items=1):
        reveal_type(job)  # N: Revealed type is "int"
    reveal_type(redmodel.containers.pop_blocking(jobs, redmodel.containers.Queue(store, "more", int), timeout=1))  # N: Revealed type is "tuple[redmodel.containers._queue.Queue[int, redmodel._stores._sync.Store], int] | None"

    seen = redmodel.containers.Set(store, "seen", IPv4Address)
    addr = IPv4Address("10.0.0.1")
    reveal_type(seen.add(addr))  # N: Revealed type is "int"
    reveal_type(seen.remove(addr))  # N: Revealed type is "int"
    reveal_type(seen.members())  # N: Revealed type is "set[ipaddress.IPv4Address]"
    reveal_type(seen.members_list())  # N: Revealed type is "list[ipaddress.IPv4Address]"
    reveal_type(seen.contains(addr))  # N: Revealed type is "bool"
    reveal_type(addr in seen)  # N: Revealed type is "bool"
    reveal_type(seen.cardinality())  # N: Revealed type is "int"
    reveal_type(seen.pop())  # N: Revealed type is "ipaddress.IPv4Address | None"
    reveal_type(seen.union(seen))  # N: Revealed type is "set[ipaddress.IPv4Address]"
    reveal_type(seen.intersection(seen))  # N: Revealed type is "set[ipaddress.IPv4Address]"
    reveal_type(seen.difference(seen))  # N: Revealed type is "set[ipaddress.IPv4Address]"

    board = redmodel.containers.SortedSet(store, "board", str)
    reveal_type(board.add("ada", 3.5))  # N: Revealed type is "int"
    reveal_type(board.add_many({"bob": 1.0}, nx=True))  # N: Revealed type is "int"
    reveal_type(board.incr("ada"))  # N: Revealed type is "float"
    reveal_type(board.remove("bob"))  # N: Revealed type is "int"
    reveal_type(board.score("ada"))  # N: Revealed type is "float | None"
    reveal_type(board.rank("ada", reverse=True))  # N: Revealed type is "int | None"
    reveal_type(board.cardinality())  # N: Revealed type is "int"
    reveal_type(board.range())  # N: Revealed type is "list[str]"
    reveal_type(board.range_with_scores(0, 9))  # N: Revealed type is "list[tuple[str, float]]"
    reveal_type(board.range_by_score(1, "(5"))  # N: Revealed type is "list[str]"
    reveal_type(board.range_by_score_with_scores(count=3))  # N: Revealed type is "list[tuple[str, float]]"
    reveal_type(board.pop_min())  # N: Revealed type is "list[tuple[str, float]]"
    reveal_type(board.pop_max(2))  # N: Revealed type is "list[tuple[str, float]]"

    visits = redmodel.containers.WindowCounter(store, "visits", window=60)
    reveal_type(visits)  # N: Revealed type is "redmodel.containers._counter.WindowCounter[redmodel._stores._sync.Store]"
    reveal_type(visits.incr(addr))  # N: Revealed type is "int"
    reveal_type(visits.get(addr))  # N: Revealed type is "int"
    reveal_type(visits.reset(addr))  # N: Revealed type is "bool"

    annotated: redmodel.containers.Queue[int] = jobs  # the default store type is Store
    counter: redmodel.containers.WindowCounter = visits
    print(annotated, counter)


async def on_an_async_store(astore: AsyncStore) -> None:
    jobs = redmodel.containers.Queue(astore, "jobs", int)
    reveal_type(jobs)  # N: Revealed type is "redmodel.containers._queue.Queue[int, redmodel._stores._async.AsyncStore]"
    pending: Coroutine[Any, Any, int] = jobs.push(1, 2)  # nothing is sent yet
    reveal_type(await pending)  # N: Revealed type is "int"
    length: int = await jobs.push(3)
    reveal_type(await jobs.push_left(0))  # N: Revealed type is "int"
    reveal_type(await jobs.pop())  # N: Revealed type is "int | None"
    reveal_type(await jobs.pop_right())  # N: Revealed type is "int | None"
    reveal_type(await jobs.pop_blocking(0.1))  # N: Revealed type is "int | None"
    reveal_type(await jobs.range())  # N: Revealed type is "list[int]"
    reveal_type(await jobs.length())  # N: Revealed type is "int"
    reveal_type(await jobs.trim(0, 99))  # N: Revealed type is "None"
    reveal_type(await jobs.recover())  # N: Revealed type is "int"
    reveal_type(await jobs.in_flight())  # N: Revealed type is "dict[str, list[int]]"
    reveal_type(await jobs.clear())  # N: Revealed type is "bool"
    reveal_type(await jobs.exists())  # N: Revealed type is "bool"
    reveal_type(await jobs.expire(60))  # N: Revealed type is "bool"
    reveal_type(jobs.consume(max_items=1))  # N: Revealed type is "redmodel.containers._consumer.AsyncConsumer[int]"
    async with jobs.consume(name="w", idle_timeout=1) as consumer:
        async for job in consumer:
            reveal_type(job)  # N: Revealed type is "int"
    reveal_type(await redmodel.containers.pop_blocking(jobs, timeout=1))  # N: Revealed type is "tuple[redmodel.containers._queue.Queue[int, redmodel._stores._async.AsyncStore], int] | None"

    seen = redmodel.containers.Set(astore, "seen", IPv4Address)
    addr = IPv4Address("10.0.0.1")
    reveal_type(await seen.add(addr))  # N: Revealed type is "int"
    reveal_type(await seen.remove(addr))  # N: Revealed type is "int"
    reveal_type(await seen.members())  # N: Revealed type is "set[ipaddress.IPv4Address]"
    reveal_type(await seen.members_list())  # N: Revealed type is "list[ipaddress.IPv4Address]"
    reveal_type(await seen.contains(addr))  # N: Revealed type is "bool"
    reveal_type(await seen.cardinality())  # N: Revealed type is "int"
    reveal_type(await seen.pop())  # N: Revealed type is "ipaddress.IPv4Address | None"
    reveal_type(await seen.union(seen))  # N: Revealed type is "set[ipaddress.IPv4Address]"
    reveal_type(await seen.intersection(seen))  # N: Revealed type is "set[ipaddress.IPv4Address]"
    reveal_type(await seen.difference(seen))  # N: Revealed type is "set[ipaddress.IPv4Address]"

    board = redmodel.containers.SortedSet(astore, "board", str)
    reveal_type(await board.add("ada", 3.5))  # N: Revealed type is "int"
    reveal_type(await board.add_many([("bob", 1.0)], gt=True))  # N: Revealed type is "int"
    reveal_type(await board.incr("ada", 2))  # N: Revealed type is "float"
    reveal_type(await board.remove("bob"))  # N: Revealed type is "int"
    reveal_type(await board.score("ada"))  # N: Revealed type is "float | None"
    reveal_type(await board.rank("ada"))  # N: Revealed type is "int | None"
    reveal_type(await board.cardinality())  # N: Revealed type is "int"
    reveal_type(await board.range(reverse=True))  # N: Revealed type is "list[str]"
    reveal_type(await board.range_with_scores())  # N: Revealed type is "list[tuple[str, float]]"
    reveal_type(await board.range_by_score("-inf", 10))  # N: Revealed type is "list[str]"
    reveal_type(await board.range_by_score_with_scores(offset=1, count=3))  # N: Revealed type is "list[tuple[str, float]]"
    reveal_type(await board.pop_min())  # N: Revealed type is "list[tuple[str, float]]"
    reveal_type(await board.pop_max(2))  # N: Revealed type is "list[tuple[str, float]]"

    visits = redmodel.containers.WindowCounter(astore, "visits", window=60)
    reveal_type(visits)  # N: Revealed type is "redmodel.containers._counter.WindowCounter[redmodel._stores._async.AsyncStore]"
    reveal_type(await visits.incr(addr))  # N: Revealed type is "int"
    reveal_type(await visits.get(addr))  # N: Revealed type is "int"
    reveal_type(await visits.reset(addr))  # N: Revealed type is "bool"

    annotated: redmodel.containers.Queue[int, AsyncStore] = jobs
    print(length, annotated)


class MyStore(Store):
    """A subclass of Store is a Store: its containers take the sync signatures."""


def on_a_subclass(store: MyStore) -> None:
    jobs = redmodel.containers.Queue(store, "jobs", int)
    reveal_type(jobs.pop())  # N: Revealed type is "int | None"


async def wrong(store: Store, astore: AsyncStore) -> None:
    jobs = redmodel.containers.Queue(astore, "jobs", int)
    forgot: int = jobs.push(1)  # E: Incompatible types in assignment (expression has type "Coroutine[object, object, int]", variable has type "int")  [assignment] # N: Maybe you forgot to use "await"?
    jobs.push(1)  # E: Value of type "Coroutine[object, object, int]" must be used  [unused-coroutine] # N: Are you missing an await?
    await redmodel.containers.Queue(store, "jobs", int).push(1)  # E: Incompatible types in "await" (actual type "int", expected type "Awaitable[Any]")  [misc]
    sync_jobs: redmodel.containers.Queue[int] = jobs  # E: Incompatible types in assignment (expression has type "Queue[int, AsyncStore]", variable has type "Queue[int, Store]")  [assignment]
    await jobs.push("one")  # E: Argument 1 to "push" of "Queue" has incompatible type "str"; expected "int"  [arg-type]
    seen = redmodel.containers.Set(astore, "seen", str)
    print("x" in seen)  # E: Invalid self argument "redmodel.containers._sets.Set[str, AsyncStore]" to attribute function "__contains__" with type "Callable[[redmodel.containers._sets.Set[T, Store], object], bool]"  [misc]
    for job in jobs.consume():  # E: "AsyncConsumer[int]" has no attribute "__iter__"; maybe "__aiter__" or "__aenter__"? (not iterable)  [attr-defined]
        print(job)
    redmodel.containers.pop_blocking(jobs, redmodel.containers.Queue(store, "other", int), timeout=1)  # E: Argument 1 to "pop_blocking" has incompatible type "Queue[int, AsyncStore]"; expected "Queue[int, Store]"  [arg-type]
    print(forgot, sync_jobs)
