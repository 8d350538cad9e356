"""Fix 31F: the plugin checks every method that takes a model by its parameters (Store,
AsyncStore, Transaction, AsyncTransaction alike), as run time checks them; unions given as
types; asyncio.gather of container and query calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar, TypeVar

import attrs

import redmodel
from redmodel import AsyncStore, Store
from redmodel.containers import Queue, Set, SortedSet
from redmodel.transactions import AsyncTransaction, Transaction

M = TypeVar("M")


@attrs.define
class Address:
    zip: int = 0
    city: str = ""


@attrs.define
class Address2(Address):
    floor: int = 0


@attrs.define
class Keyed:
    code: int = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx31f")
@attrs.define
class Hat:
    rate: ClassVar[int] = 3
    markup = 2
    color: str = ""
    price: float = 0.0
    quantity: int = 0
    stock: int | None = None
    flag: bool = False
    tag: str = redmodel.field(name="t", default="")
    address: Address = attrs.Factory(Address)
    later: int = attrs.field(init=False, default=0)
    id: str = redmodel.key_field()


@redmodel.model(prefix="fx31fc")
@attrs.define
class Coded(Keyed):
    n: int = 0


@redmodel.model(prefix="fx31fs")
@attrs.define
class SubHat(Hat):
    extra: int = 0


@attrs.define
class NotDecorated(Hat):
    pass


@attrs.define
class Plain:
    id: str = "x"


class Ids:
    def __iter__(self) -> Iterator[str]:
        return iter(["a"])


def accepted(store: Store, hats: list[Hat], ids: Any, some: object) -> None:
    store.get_many(Hat, ["a", "b"])
    store.get_many(Hat, ("a",))
    store.get_many(Hat, {"a"})
    store.get_many(Hat, (i for i in "ab"))
    store.get_many(Hat, [str(i) for i in range(3)])
    store.get_many(Hat, {"a": 1}.keys())
    store.get_many(Hat, Ids())
    store.get_many(Hat, ids)
    store.delete_many(Hat, frozenset({"a"}))
    store.save_many(hats)
    store.save_many(h for h in hats)
    store.save_many([SubHat()])
    store.save(some)
    store.save(ids)
    store.get(Coded, 3)
    store.get(SubHat, "x")
    store.update(Hat, "x", tag="a", stock=None, price=2, flag=True)
    store.update(Hat, "x", address=Address(1, "b"))
    store.update(SubHat, "x", address=Address())
    store.update(Hat, "x", **{"anything": 1})
    reveal_type(store.incr(Hat, "x", "address.zip"))  # N: Revealed type is "int"
    reveal_type(store.incr(SubHat, "x", "extra"))  # N: Revealed type is "int"
    reveal_type(store.incr(Coded, 3, "n"))  # N: Revealed type is "int"


def generic(store: Store, model: type[M], cls: type) -> M | None:
    store.count(cls)
    return store.get(model, "x")


def refused(store: Store) -> None:
    store.incr(Hat, "x", "rate")  # E: "Hat" has no field "rate" to increment  [redmodel]
    store.incr(Hat, "x", "markup")  # E: "Hat" has no field "markup" to increment  [redmodel]
    store.incr(Hat, "x", "later")  # E: "Hat" has no field "later" to increment  [redmodel]
    store.incr(Hat, "x", "t")  # E: "Hat" has no field "t" to increment  [redmodel]
    store.incr(Hat, "x", "address.street")  # E: "Hat" has no field "address.street" to increment  [redmodel]
    store.incr_fields(Hat, "x", {"later": 1}, floor={"rate": 0})  # E: "Hat" has no field "later" to increment  [redmodel] # E: "Hat" has no field "rate" to increment  [redmodel]
    store.get(Plain, "x")  # E: "Plain" is not a redmodel model (decorate the attrs class with @redmodel.model)  [redmodel]
    store.get(NotDecorated, "x")  # E: "NotDecorated" is not a redmodel model (decorate the attrs class with @redmodel.model)  [redmodel]
    store.count(Plain)  # E: "Plain" is not a redmodel model (decorate the attrs class with @redmodel.model)  [redmodel]
    store.save(Plain())  # E: "Plain" is not a redmodel model (decorate the attrs class with @redmodel.model); only a model's objects are saved  [redmodel]
    store.save_many([Plain()])  # E: "Plain" is not a redmodel model (decorate the attrs class with @redmodel.model); only a model's objects are saved  [redmodel]
    store.get(Hat, 1)  # E: the id of "Hat" is "str", not "int"  [redmodel]
    store.get(Hat, b"x")  # E: the id of "Hat" is "str", not "bytes"  [redmodel]
    store.get(Coded, "3")  # E: the id of "Coded" is "int", not "str"  [redmodel]
    store.get(Coded, True)  # E: the id of "Coded" is "int", not "bool"  [redmodel]
    store.delete(Coded, 3.0)  # E: the id of "Coded" is "int", not "float"  [redmodel]
    store.exists(Hat, 1)  # E: the id of "Hat" is "str", not "int"  [redmodel]
    store.get_many(Hat, (i for i in [1]))  # E: the id of "Hat" is "str", not "int"  [redmodel]
    store.get_many(Hat, [1])  # E: the id of "Hat" is "str", not "int"  [redmodel]
    store.get_many(Hat, "ab")  # E: "ids" must be an iterable such as a list, not "str" (one id: its characters are not ids); wrap it: [id]  [redmodel]
    store.delete_many(Hat, b"ab")  # E: "ids" must be an iterable such as a list, not "bytes" (one id: its characters are not ids); wrap it: [id]  [redmodel]
    store.save_many("ab")  # E: "objs" must be an iterable such as a list, not "str" (one object: its characters are not objects); wrap it: [object]  [redmodel]
    store.update(Hat, "x", t="a")  # E: "Hat" has no field "t" to update  [redmodel]
    store.update(Hat, "x", later=1)  # E: "Hat" has no field "later" to update  [redmodel]
    store.update(Hat, "x", rate=1)  # E: "Hat" has no field "rate" to update  [redmodel]
    store.update(Hat, "x", id="y")  # E: "Hat.id" is the id: it cannot be updated  [redmodel]
    store.update(Hat, "x", quantity="1")  # E: "quantity" of "Hat" is "int", not "str"  [redmodel]
    store.update(Hat, "x", quantity=True)  # E: "quantity" of "Hat" is "int", not "bool"  [redmodel]
    store.update(Hat, "x", price=None)  # E: "price" of "Hat" is "float", not "None"  [redmodel]
    store.update(Hat, "x", address=Address2())  # E: "address" of "Hat" is "Address", not "Address2"  [redmodel]
    store.update(Hat, "x")  # E: update of "Hat" with nothing to update: pass field=value  [redmodel]


async def shells(astore: AsyncStore, store: Store) -> None:
    await astore.get(Plain, "x")  # E: "Plain" is not a redmodel model (decorate the attrs class with @redmodel.model)  [redmodel]
    await astore.get(Coded, "3")  # E: the id of "Coded" is "int", not "str"  [redmodel]
    await astore.delete_many(Hat, "ab")  # E: "ids" must be an iterable such as a list, not "str" (one id: its characters are not ids); wrap it: [id]  [redmodel]
    await astore.update(Hat, "x", colour="red")  # E: "Hat" has no field "colour" to update  [redmodel]
    reveal_type(await astore.incr(Hat, "x", "price"))  # N: Revealed type is "float"
    with Transaction(store) as tx:
        reveal_type(tx.get_field(Hat, "x", "stock"))  # N: Revealed type is "int | None"
        reveal_type(tx.get_field(Hat, "x", "address.city"))  # N: Revealed type is "str | None"
        reveal_type(tx.incr_fields(Hat, "x", {"quantity": 1}))  # N: Revealed type is "redmodel.transactions._policy.Pending[dict[str, Any]]"
        tx.get_field(Hat, "x", "address")  # E: get_field reads one stored value; "Hat.address" is a nested object, read whole with get()  [redmodel]
        tx.get_field(Hat, "x", "later")  # E: "Hat" has no field "later" to read  [redmodel]
        tx.save(Plain())  # E: "Plain" is not a redmodel model (decorate the attrs class with @redmodel.model); only a model's objects are saved  [redmodel]
        tx.save_many(b"x")  # E: "objs" must be an iterable such as a list, not "bytes" (one object: its characters are not objects); wrap it: [object]  [redmodel]
        tx.update(Coded, "3", n=1)  # E: the id of "Coded" is "int", not "str"  [redmodel]
        tx.delete(Plain, "x")  # E: "Plain" is not a redmodel model (decorate the attrs class with @redmodel.model)  [redmodel]
    async with AsyncTransaction(astore) as atx:
        reveal_type(await atx.get_field(Hat, "x", "quantity"))  # N: Revealed type is "int | None"
        reveal_type(atx.incr(Hat, "x", "price", 1))  # N: Revealed type is "redmodel.transactions._policy.Pending[float]"
        await atx.get_field(Hat, "x", "rate")  # E: "Hat" has no field "rate" to read  [redmodel]
        atx.incr_fields(Hat, "x", {"markup": 1})  # E: "Hat" has no field "markup" to increment  [redmodel]
        await atx.get_many(Hat, "x")  # E: "ids" must be an iterable such as a list, not "str" (one id: its characters are not ids); wrap it: [id]  [redmodel]
        atx.update(Hat, "x", later=2)  # E: "Hat" has no field "later" to update  [redmodel]


async def unions(store: Store, astore: AsyncStore) -> None:
    ips = Queue(store, "fx31f:ips", IPv4Address | IPv6Address)
    ips.push(IPv4Address("1.2.3.4"), IPv6Address("::1"))
    reveal_type(ips)  # N: Revealed type is "redmodel.containers._queue.Queue[ipaddress.IPv4Address | ipaddress.IPv6Address, redmodel._stores._sync.Store]"
    ips.push("1.2.3.4")  # E: Argument 1 to "push" of "Queue" has incompatible type "str"; expected "IPv4Address | IPv6Address"  [arg-type]
    reveal_type(Set(astore, "fx31f:s", int | str))  # N: Revealed type is "redmodel.containers._sets.Set[int | str, redmodel._stores._async.AsyncStore]"
    reveal_type(SortedSet(store, "fx31f:z", list[int] | None))  # N: Revealed type is "redmodel.containers._sets.SortedSet[list[int] | None, redmodel._stores._sync.Store]"
    chain = redmodel.codecs.codec("json")
    data = chain.encode([1])
    reveal_type(chain.decode(data, list[int]))  # N: Revealed type is "list[int]"
    reveal_type(chain.decode(data, Hat))  # N: Revealed type is "tests.typing.fix31f_model_methods.Hat"
    reveal_type(chain.decode(data, int | None))  # N: Revealed type is "int | None"
    jobs = Queue(astore, "fx31f:jobs", int)
    seen = Set(astore, "fx31f:seen", str)
    reveal_type(await asyncio.gather(jobs.push(1), jobs.pop(), seen.members()))  # N: Revealed type is "tuple[int, int | None, set[str]]"
    reveal_type(await asyncio.gather(astore.find(Hat).count(), astore.get(Hat, "x")))  # N: Revealed type is "tuple[int, tests.typing.fix31f_model_methods.Hat | None]"
