"""A user's subclass of Store / AsyncStore keeps its own type through the constructors and
the context managers (``from_url``, ``from_env``, ``with``, ``async with`` return ``Self``),
so its own methods type-check; the base classes still give the base type."""

from redmodel import AsyncStore, Store


class ShopStore(Store):
    def shop(self) -> str:
        return "hats"


class AsyncShopStore(AsyncStore):
    def shop(self) -> str:
        return "hats"


def subclassed() -> None:
    store: ShopStore = ShopStore.from_url()
    reveal_type(ShopStore.from_url())  # N: Revealed type is "tests.typing.store_subclass.ShopStore"
    reveal_type(ShopStore.from_env())  # N: Revealed type is "tests.typing.store_subclass.ShopStore"
    reveal_type(Store.from_url())  # N: Revealed type is "redmodel._stores._sync.Store"
    with ShopStore.from_url() as same:
        reveal_type(same)  # N: Revealed type is "tests.typing.store_subclass.ShopStore"
        same.shop()
    with Store.from_url() as base:
        base.shop()  # E: "Store" has no attribute "shop"  [attr-defined]
    store.shop()
    ShopStore.from_env().shop()


async def asubclassed() -> None:
    astore: AsyncShopStore = AsyncShopStore.from_url()
    reveal_type(AsyncShopStore.from_url())  # N: Revealed type is "tests.typing.store_subclass.AsyncShopStore"
    reveal_type(AsyncShopStore.from_env())  # N: Revealed type is "tests.typing.store_subclass.AsyncShopStore"
    reveal_type(AsyncStore.from_env())  # N: Revealed type is "redmodel._stores._async.AsyncStore"
    async with AsyncShopStore.from_url() as same:
        reveal_type(same)  # N: Revealed type is "tests.typing.store_subclass.AsyncShopStore"
        same.shop()
    astore.shop()
    AsyncShopStore.from_env().shop()
