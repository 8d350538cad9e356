"""Fix 30V (attack 30AV F2): ``tx.read_command(..., watch=)`` takes the keys it reads as a
tuple, a list or a set; one key given as a ``str`` (or ``bytes``) is refused by mypy, as
the call refuses it at run time (it would WATCH the key's characters)."""

from redmodel import AsyncStore, Store
from redmodel.transactions import AsyncTransaction, Transaction


def sync(store: Store, key: str) -> None:
    def body(tx: Transaction) -> None:
        tx.read_command("GET", key, watch=(key,))
        tx.read_command("GET", key, watch=[key])
        tx.read_command("GET", key, watch={key})
        tx.read_command("GET", key, watch=frozenset({key}))
        tx.read_command("GET", key, watch={key: 1}.keys())
        tx.read_command("CLIENT", "ID", watch=())
        tx.read_command("GET", key, watch=key)  # E: Argument "watch" to "read_command" of "Transaction" has incompatible type "str"; expected "tuple[str, ...] | list[str] | AbstractSet[str]"  [arg-type]
        tx.read_command("GET", key, watch=b"k")  # E: Argument "watch" to "read_command" of "Transaction" has incompatible type "bytes"; expected "tuple[str, ...] | list[str] | AbstractSet[str]"  [arg-type]

    store.transaction(body)()


async def asyncio_(store: AsyncStore, key: str) -> None:
    async def body(tx: AsyncTransaction) -> None:
        await tx.read_command("GET", key, watch=(key,))
        await tx.read_command("GET", key, watch=[key])
        await tx.read_command("GET", key, watch=key)  # E: Argument "watch" to "read_command" of "AsyncTransaction" has incompatible type "str"; expected "tuple[str, ...] | list[str] | AbstractSet[str]"  [arg-type]

    await store.transaction(body)()
