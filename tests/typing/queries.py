"""Queries are typed by their store: ``Store.find`` gives a ``Query[M, Store]`` whose run
methods return values, ``AsyncStore.find`` a ``Query[M, AsyncStore]`` whose run methods
return coroutines; ``for`` works on the first, ``async for`` on the second."""

from collections.abc import Coroutine
from typing import Any

import attrs

import redmodel
from redmodel import AsyncStore, Store


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=0.0)
    id: str = redmodel.key_field()


def sync(store: Store) -> None:
    query = store.find(Hat, color="black")
    reveal_type(query)  # N: Revealed type is "redmodel._indexes._query.Query[tests.typing.queries.Hat, redmodel._stores._sync.Store]"
    reveal_type(query.all())  # N: Revealed type is "list[tests.typing.queries.Hat]"
    reveal_type(query.first())  # N: Revealed type is "tests.typing.queries.Hat | None"
    reveal_type(query.count())  # N: Revealed type is "int"
    reveal_type(query.ids())  # N: Revealed type is "list[Any]"
    reveal_type(query.exists())  # N: Revealed type is "bool"
    reveal_type(query.page(10))  # N: Revealed type is "redmodel._indexes._query.Page[tests.typing.queries.Hat]"
    reveal_type(query.order_by("-price").limit(5).offset(1).after(None))  # N: Revealed type is "redmodel._indexes._query.Query[tests.typing.queries.Hat, redmodel._stores._sync.Store]"
    for hat in query:
        reveal_type(hat)  # N: Revealed type is "tests.typing.queries.Hat"
    for page in query.pages(100):
        reveal_type(page)  # N: Revealed type is "list[tests.typing.queries.Hat]"
    hats: list[Hat] = query.all()
    annotated: redmodel.Query[Hat] = query  # the default store type is Store
    print(hats, annotated)


async def in_asyncio(astore: AsyncStore) -> None:
    query = astore.find(Hat, color="black")
    reveal_type(query)  # N: Revealed type is "redmodel._indexes._query.Query[tests.typing.queries.Hat, redmodel._stores._async.AsyncStore]"
    running: Coroutine[Any, Any, list[Hat]] = query.all()  # nothing is sent yet
    reveal_type(await running)  # N: Revealed type is "list[tests.typing.queries.Hat]"
    reveal_type(await query.first())  # N: Revealed type is "tests.typing.queries.Hat | None"
    reveal_type(await query.count())  # N: Revealed type is "int"
    reveal_type(await query.ids())  # N: Revealed type is "list[Any]"
    reveal_type(await query.exists())  # N: Revealed type is "bool"
    reveal_type(await query.page(10))  # N: Revealed type is "redmodel._indexes._query.Page[tests.typing.queries.Hat]"
    reveal_type(query.order_by("price").limit(5))  # N: Revealed type is "redmodel._indexes._query.Query[tests.typing.queries.Hat, redmodel._stores._async.AsyncStore]"
    async for hat in query:
        reveal_type(hat)  # N: Revealed type is "tests.typing.queries.Hat"
    async for page in query.apages(100):
        reveal_type(page)  # N: Revealed type is "list[tests.typing.queries.Hat]"
    hats: list[Hat] = await astore.find(Hat, color="black").all()
    first: Hat | None = await astore.find(Hat).first()
    annotated: redmodel.Query[Hat, AsyncStore] = query
    print(hats, first, [h.color async for h in annotated])


async def wrong(store: Store, astore: AsyncStore) -> None:
    forgot: list[Hat] = astore.find(Hat).all()  # E: Incompatible types in assignment (expression has type "Coroutine[object, object, list[Hat]]", variable has type "list[Hat]")  [assignment] # N: Maybe you forgot to use "await"?
    astore.find(Hat).count()  # E: Value of type "Coroutine[object, object, int]" must be used  [unused-coroutine] # N: Are you missing an await?
    await store.find(Hat).all()  # E: Incompatible types in "await" (actual type "list[Hat]", expected type "Awaitable[Any]")  [misc]
    for hat in astore.find(Hat):  # E: Invalid self argument "Query[Hat, AsyncStore]" to attribute function "__iter__" with type "Callable[[Query[M, SyncRunner]], Iterator[M]]"  [misc]
        print(hat)
    async for other in store.find(Hat):  # E: Invalid self argument "Query[Hat, Store]" to attribute function "__aiter__" with type "Callable[[Query[M, AsyncRunner]], AsyncIterator[M]]"  [misc]
        print(other)
    astore.find(Hat).pages(10)  # E: Invalid self argument "Query[Hat, AsyncStore]" to attribute function "pages" with type "Callable[[Query[M, SyncRunner], int], Iterator[list[M]]]"  [misc]
    store.find(Hat).apages(10)  # E: Invalid self argument "Query[Hat, Store]" to attribute function "apages" with type "Callable[[Query[M, AsyncRunner], int], AsyncIterator[list[M]]]"  [misc]
    sync_query: redmodel.Query[Hat] = astore.find(Hat)  # E: Incompatible types in assignment (expression has type "Query[Hat, AsyncStore]", variable has type "Query[Hat, SyncRunner]")  [assignment]
    print(forgot, sync_query)
