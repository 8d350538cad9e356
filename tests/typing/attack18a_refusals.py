"""FINDINGS-18a F5: mypy (with the plugin) rejects what the runtime refuses: a generator
function given to a transaction decorator bound to a Store (``redmodel.transaction(store)``,
``store.transaction``, bare ``redmodel.transaction``), and a container of one kind of store
joined into the other kind's transaction (``Queue(store, ...).in_tx(async_tx)``)."""

from collections.abc import Generator, Iterator

import redmodel
from redmodel import AsyncStore, Store
from redmodel.containers import Queue, Set, SortedSet, WindowCounter
from redmodel.transactions import AsyncTransaction, Transaction


def sync(store: Store) -> None:
    @redmodel.transaction(store)  # E: transaction function gen is a generator function: a transaction runs it to its return and then commits, so its body would never run; return a value instead of yielding  [redmodel]
    def gen(tx: Transaction) -> Iterator[int]:
        yield 1

    @store.transaction  # E: transaction function gen2 is a generator function: a transaction runs it to its return and then commits, so its body would never run; return a value instead of yielding  [redmodel]
    def gen2(tx: Transaction) -> Iterator[int]:
        yield 1

    def gen4(tx: Transaction) -> Generator[int, None, None]:
        yield 1

    store.transaction(gen4)  # E: transaction function gen4 is a generator function: a transaction runs it to its return and then commits, so its body would never run; return a value instead of yielding  [redmodel]

    @redmodel.transaction(store)
    def fine(tx: Transaction) -> Iterator[int]:  # a plain function returning an iterator
        return iter([1])


async def asyncio_side(store: Store, astore: AsyncStore) -> None:
    @redmodel.transaction(astore)
    async def body(tx: AsyncTransaction) -> None:
        Queue(store, "jobs", int).in_tx(tx)  # E: Argument 1 to "in_tx" of "Queue" has incompatible type "AsyncTransaction"; expected "Transaction"  [arg-type]
        Set(store, "s", int).in_tx(tx)  # E: Argument 1 to "in_tx" of "Set" has incompatible type "AsyncTransaction"; expected "Transaction"  [arg-type]
        SortedSet(store, "z", int).in_tx(tx)  # E: Argument 1 to "in_tx" of "SortedSet" has incompatible type "AsyncTransaction"; expected "Transaction"  [arg-type]
        WindowCounter(store, "w", window=60).in_tx(tx)  # E: Argument 1 to "in_tx" of "WindowCounter" has incompatible type "AsyncTransaction"; expected "Transaction"  [arg-type]
        Queue(astore, "jobs", int).in_tx(tx)  # fine

    @redmodel.transaction(store)
    def sbody(tx: Transaction) -> None:
        Queue(astore, "jobs", int).in_tx(tx)  # E: Argument 1 to "in_tx" of "Queue" has incompatible type "Transaction"; expected "AsyncTransaction"  [arg-type]
        Queue(store, "jobs", int).in_tx(tx)  # fine
