"""Transactions: ``@redmodel.transaction`` (and ``@store.transaction``) on a function makes a
TransactionFunction, on an ``async def`` an AsyncTransactionFunction; an
AsyncTransaction's reads are awaited, its writes queued (a Pending); containers join
with ``in_tx``."""

import attrs

import redmodel
from redmodel import AsyncStore, Store
from redmodel.transactions import AsyncTransaction, Transaction


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str
    quantity: int = 0
    id: str = redmodel.key_field()


def sync(store: Store) -> None:
    @redmodel.transaction(store)
    def buy(tx: Transaction, hat_id: str) -> int:
        hat = tx.get_or_raise(Hat, hat_id)
        reveal_type(tx.get(Hat, hat_id))  # N: Revealed type is "tests.typing.transactions.Hat | None"
        reveal_type(tx.incr(Hat, hat_id, "quantity", -1))  # N: Revealed type is "redmodel.transactions._policy.Pending[int]"
        redmodel.containers.Queue(store, "sold", str).in_tx(tx).push(hat_id)
        return hat.quantity - 1

    reveal_type(buy)  # N: Revealed type is "redmodel.transactions._run.TransactionFunction[[hat_id: str], int]"
    reveal_type(buy("h1"))  # N: Revealed type is "int"
    reveal_type(buy.outcome("h1"))  # N: Revealed type is "redmodel.transactions._policy.Outcome[int]"

    @store.transaction
    def restock(tx: Transaction, hat_id: str, n: int) -> None:
        tx.incr(Hat, hat_id, "quantity", n)

    reveal_type(restock)  # N: Revealed type is "redmodel.transactions._run.TransactionFunction[[hat_id: str, n: int], None]"

    @store.transaction(policy=redmodel.transactions.RetryPolicy(attempts=3))
    def count(tx: Transaction) -> int:
        return len(tx.get_many(Hat, ["h1", "h2"]))

    reveal_type(count())  # N: Revealed type is "int"
    reveal_type(redmodel.transaction(store)(buy.fn)("h1"))  # N: Revealed type is "int"


async def in_asyncio(astore: AsyncStore) -> None:
    @redmodel.transaction(astore)
    async def buy(tx: AsyncTransaction, hat_id: str) -> int:
        hat = await tx.get_or_raise(Hat, hat_id)
        reveal_type(await tx.get(Hat, hat_id))  # N: Revealed type is "tests.typing.transactions.Hat | None"
        reveal_type(await tx.exists(Hat, hat_id))  # N: Revealed type is "bool"
        reveal_type(await tx.get_many(Hat, [hat_id]))  # N: Revealed type is "list[tests.typing.transactions.Hat | None]"
        reveal_type(tx.incr(Hat, hat_id, "quantity", -1))  # N: Revealed type is "redmodel.transactions._policy.Pending[int]"
        await redmodel.containers.Queue(astore, "sold", str).in_tx(tx).length()
        return hat.quantity - 1

    reveal_type(buy)  # N: Revealed type is "redmodel.transactions._run.AsyncTransactionFunction[[hat_id: str], int]"
    reveal_type(await buy("h1"))  # N: Revealed type is "int"
    reveal_type(await buy.outcome("h1"))  # N: Revealed type is "redmodel.transactions._policy.Outcome[int]"

    @astore.transaction
    async def restock(tx: AsyncTransaction, hat_id: str, n: int) -> None:
        tx.incr(Hat, hat_id, "quantity", n)

    reveal_type(restock)  # N: Revealed type is "redmodel.transactions._run.AsyncTransactionFunction[[hat_id: str, n: int], None]"

    @astore.transaction(policy=redmodel.transactions.RetryPolicy(attempts=3))
    async def colors(tx: AsyncTransaction) -> list[str]:
        return [h.color for h in await tx.get_many(Hat, ["h1"]) if h is not None]

    reveal_type(await colors())  # N: Revealed type is "list[str]"

    @redmodel.transaction
    async def unbound(tx: AsyncTransaction) -> None:
        await tx.watch("k")

    reveal_type(unbound.bind(astore))  # N: Revealed type is "redmodel.transactions._run.AsyncTransactionFunction[[], None]"
    async with AsyncTransaction(astore) as tx:
        reveal_type(await tx.get(Hat, "h1"))  # N: Revealed type is "tests.typing.transactions.Hat | None"


async def wrong(store: Store, astore: AsyncStore) -> None:
    @redmodel.transaction(astore)
    async def forgets(tx: AsyncTransaction, hat_id: str) -> int:
        hat: Hat | None = tx.get(Hat, hat_id)  # E: Incompatible types in assignment (expression has type "Coroutine[Any, Any, Hat | None]", variable has type "Hat | None")  [assignment] # N: Maybe you forgot to use "await"?
        return 0 if hat is None else hat.quantity

    left: int = forgets("h1")  # E: Incompatible types in assignment (expression has type "Coroutine[Any, Any, int]", variable has type "int")  [assignment] # N: Maybe you forgot to use "await"?

    @astore.transaction  # E: Argument 1 to "transaction" of "AsyncStore" has incompatible type "Callable[[Transaction], None]"; expected "Callable[[AsyncTransaction], Awaitable[Never]]"  [arg-type] # N: This is likely because "not_async" has named arguments: "tx". Consider marking them positional-only
    def not_async(tx: Transaction) -> None:
        pass

    @store.transaction  # E: Argument 1 to "transaction" of "Store" has incompatible type "Callable[[AsyncTransaction], Coroutine[Any, Any, None]]"; expected "Callable[[Transaction], Coroutine[Any, Any, None]]"  [arg-type] # N: This is likely because "not_sync" has named arguments: "tx". Consider marking them positional-only
    async def not_sync(tx: AsyncTransaction) -> None:
        pass

    print(left)
