"""Issue 18: ``redmodel.transaction(store)`` is checked against the store's kind (a sync
function for a Store, an ``async def`` for an AsyncStore, either unbound); a container's
``in_tx(tx)`` handle has the container's own signatures (writes return a Pending, reads the
value, in an AsyncTransaction a coroutine of it); ``store.transact`` checks the arguments;
``async for`` works wherever ``for`` does."""

import attrs

import redmodel
from redmodel import AsyncStore, Store
from redmodel.transactions import AsyncTransaction, Transaction


@redmodel.model(prefix="cap")
@attrs.define
class Cap:
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


def sync(store: Store) -> None:
    jobs = redmodel.containers.Queue(store, "jobs", int)
    seen = redmodel.containers.Set(store, "seen", str)
    board = redmodel.containers.SortedSet(store, "board", str)
    visits = redmodel.containers.WindowCounter(store, "visits", window=60)

    @redmodel.transaction(store)
    def work(tx: Transaction, n: int) -> int:
        q = jobs.in_tx(tx)
        reveal_type(q)  # N: Revealed type is "redmodel.containers._queue.QueueInTx[int]"
        reveal_type(q.length())  # N: Revealed type is "int"
        reveal_type(q.range(0, 9))  # N: Revealed type is "list[int]"
        reveal_type(q.push(n))  # N: Revealed type is "redmodel.transactions._policy.Pending[int]"
        reveal_type(q.pop())  # N: Revealed type is "redmodel.transactions._policy.Pending[int | None]"
        q.push("x")  # E: Argument 1 to "push" of "QueueInTx" has incompatible type "str"; expected "int"  [arg-type]
        q.pop_blocking(1)  # E: "QueueInTx[int]" has no attribute "pop_blocking"  [attr-defined]
        s = seen.in_tx(tx)
        reveal_type(s.contains("a"))  # N: Revealed type is "bool"
        reveal_type(s.add("a"))  # N: Revealed type is "redmodel.transactions._policy.Pending[int]"
        b = board.in_tx(tx)
        reveal_type(b.score("a"))  # N: Revealed type is "float | None"
        reveal_type(b.incr("a", 2.5))  # N: Revealed type is "redmodel.transactions._policy.Pending[float]"
        reveal_type(b.exists())  # N: Revealed type is "bool"
        reveal_type(b.clear())  # N: Revealed type is "redmodel.transactions._policy.Pending[bool]"
        v = visits.in_tx(tx)
        reveal_type(v.get("1.2.3.4"))  # N: Revealed type is "int"
        reveal_type(v.incr("1.2.3.4"))  # N: Revealed type is "redmodel.transactions._policy.Pending[int]"
        return n

    reveal_type(work)  # N: Revealed type is "redmodel.transactions._run.TransactionFunction[[n: int], int]"
    reveal_type(store.transact(work.fn, 3))  # N: Revealed type is "int"
    store.transact(work.fn, "3")  # E: Argument 2 to "transact" of "Store" has incompatible type "str"; expected "int"  [arg-type]

    @redmodel.transaction(store)  # E: Argument 1 to "__call__" of "TransactionDecorator" has incompatible type "Callable[[AsyncTransaction], Coroutine[Any, Any, None]]"; expected "Callable[[Transaction], Coroutine[Any, Any, None]]"  [arg-type] # N: This is likely because "not_sync" has named arguments: "tx". Consider marking them positional-only
    async def not_sync(tx: AsyncTransaction) -> None:
        pass

    @redmodel.transaction(policy=redmodel.transactions.RetryPolicy(attempts=2))
    def unbound(tx: Transaction) -> int:
        return 1

    reveal_type(unbound)  # N: Revealed type is "redmodel.transactions._run.TransactionFunction[[], int]"

    for cap in store.find(Cap, color="red"):
        reveal_type(cap)  # N: Revealed type is "tests.typing.issue18_tx_handles.Cap"
    for page in store.find(Cap).pages(10):
        reveal_type(page)  # N: Revealed type is "list[tests.typing.issue18_tx_handles.Cap]"
    for job in jobs.consume(max_items=1):
        reveal_type(job)  # N: Revealed type is "int"
    for stored in store.scan(Cap):
        reveal_type(stored)  # N: Revealed type is "tests.typing.issue18_tx_handles.Cap"
    for key in store.scan_keys(Cap):
        reveal_type(key)  # N: Revealed type is "str"


async def in_asyncio(astore: AsyncStore) -> None:
    jobs = redmodel.containers.Queue(astore, "jobs", int)
    board = redmodel.containers.SortedSet(astore, "board", str)
    visits = redmodel.containers.WindowCounter(astore, "visits", window=60)

    @redmodel.transaction(astore)
    async def work(tx: AsyncTransaction, n: int) -> int:
        q = jobs.in_tx(tx)
        reveal_type(q)  # N: Revealed type is "redmodel.containers._queue.QueueInAsyncTx[int]"
        reveal_type(await q.length())  # N: Revealed type is "int"
        reveal_type(q.push(n))  # N: Revealed type is "redmodel.transactions._policy.Pending[int]"
        length: int = q.length()  # E: Incompatible types in assignment (expression has type "Coroutine[object, object, int]", variable has type "int")  [assignment] # N: Maybe you forgot to use "await"?
        reveal_type(await board.in_tx(tx).range_with_scores())  # N: Revealed type is "list[tuple[str, float]]"
        reveal_type(await visits.in_tx(tx).get("a"))  # N: Revealed type is "int"
        return n + length

    reveal_type(work)  # N: Revealed type is "redmodel.transactions._run.AsyncTransactionFunction[[n: int], int]"
    reveal_type(await astore.transact(work.fn, 3))  # N: Revealed type is "int"

    @redmodel.transaction(astore)  # E: Argument 1 to "__call__" of "TransactionDecorator" has incompatible type "Callable[[Transaction], None]"; expected "Callable[[AsyncTransaction], Awaitable[Never]]"  [arg-type] # N: This is likely because "not_async" has named arguments: "tx". Consider marking them positional-only
    def not_async(tx: Transaction) -> None:
        pass

    async for cap in astore.find(Cap, color="red"):
        reveal_type(cap)  # N: Revealed type is "tests.typing.issue18_tx_handles.Cap"
    async for page in astore.find(Cap).apages(10):
        reveal_type(page)  # N: Revealed type is "list[tests.typing.issue18_tx_handles.Cap]"
    async for job in jobs.consume(max_items=1):
        reveal_type(job)  # N: Revealed type is "int"
    async for stored in astore.scan(Cap):
        reveal_type(stored)  # N: Revealed type is "tests.typing.issue18_tx_handles.Cap"
    async for key in astore.scan_keys(Cap):
        reveal_type(key)  # N: Revealed type is "str"
    async with AsyncTransaction(astore) as atx:
        reveal_type(redmodel.containers.Set(astore, "s", int).in_tx(atx).add(1))  # N: Revealed type is "redmodel.transactions._policy.Pending[int]"
        reveal_type(await redmodel.containers.Set(astore, "s", int).in_tx(atx).members())  # N: Revealed type is "set[int]"
        jobs.in_tx(atx).consume()  # E: "QueueInAsyncTx[int]" has no attribute "consume"  [attr-defined]
    for _cap in astore.find(Cap):  # E: Invalid self argument "Query[Cap, AsyncStore]" to attribute function "__iter__" with type "Callable[[Query[M, SyncRunner]], Iterator[M]]"  [misc]
        pass
