"""Attack 31F: typing for the user. User code written from the docs, checked with mypy
--strict and the plugin ``redmodel.mypy`` (the project's configuration), once per module in
a subprocess, as tests/test_attack29al.py does. Each test holds the typing to a sentence of
the docs and FAILS on main as of this attack (/work/notes/s31/ATK-F-FINDINGS.md).

A line of the user code ending in ``# Fn E: text`` must get an error containing ``text``;
``# Fn N: text`` a note containing ``text`` (a ``reveal_type``); ``# Fn ok`` no error.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

import redmodel
from tests import user_mypy

ROOT = Path(__file__).resolve().parent.parent

_USER_CODE = '''\
from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar

import attrs

import redmodel
from redmodel import AsyncStore, Store
from redmodel.containers import Queue, Set
from redmodel.transactions import AsyncTransaction, Transaction


@redmodel.model(prefix="atk31f")
@attrs.define
class Hat:
    rate: ClassVar[int] = 3
    markup = 2
    color: str = ""
    price: float = 0.0
    quantity: int = 0
    later: int = attrs.field(init=False, default=0)
    id: str = redmodel.key_field()


@redmodel.model(prefix="atk31fn")
@attrs.define
class Num:
    n: int = 0
    id: int = redmodel.key_field(generated=False)


@attrs.define
class Plain:
    id: str = "x"


def f1(store: Store) -> None:
    store.incr(Hat, "h", "rate")  # F1 E: [redmodel]
    store.incr(Hat, "h", "markup")  # F1 E: [redmodel]
    store.incr(Hat, "h", "later")  # F1 E: [redmodel]
    store.incr_fields(Hat, "h", {"rate": 1})  # F1 E: [redmodel]


def f2(store: Store) -> None:
    with Transaction(store) as tx:
        reveal_type(tx.incr(Hat, "h", "quantity"))  # F2 N: Pending[int]"
        reveal_type(tx.incr(Hat, "h", "price", 0.5))  # F2 N: Pending[float]"
        tx.incr(Hat, "h", "color")  # F2 E: [redmodel]
        tx.incr(Hat, "h", "colour")  # F2 E: [redmodel]
        tx.incr(Hat, "h", "quantity", 1.5)  # F2 E: [redmodel]
        tx.incr_fields(Hat, "h", {"colour": 1})  # F2 E: [redmodel]


async def f2_async(astore: AsyncStore) -> None:
    async with AsyncTransaction(astore) as tx:
        reveal_type(tx.incr(Hat, "h", "quantity"))  # F2 N: Pending[int]"
        tx.incr(Hat, "h", "color")  # F2 E: [redmodel]


def f3(store: Store) -> None:
    with Transaction(store) as tx:
        reveal_type(tx.get_field(Hat, "h", "quantity"))  # F3 N: "int | None"
        tx.get_field(Hat, "h", "colour")  # F3 E: colour


def f4(store: Store) -> None:
    ips = Queue(store, "atk31f:ips", IPv4Address | IPv6Address)  # F4 ok
    ips.push(IPv6Address("::1"))  # F4 ok
    reveal_type(ips.pop())  # F4 N: IPv4Address | ipaddress.IPv6Address | None"


async def f5(astore: AsyncStore) -> None:
    jobs = Queue(astore, "atk31f:jobs", int)
    seen = Set(astore, "atk31f:seen", str)
    query = astore.find(Hat)
    reveal_type(await asyncio.gather(jobs.push(1), jobs.pop()))  # F5 N: "tuple[int, int | None]"
    reveal_type(await asyncio.gather(jobs.length(), seen.members()))  # F5 N: "tuple[int, set[str]]"
    got = await asyncio.gather(query.all(), query.first())
    reveal_type(got)  # F5 N: "tuple[list[usercode.Hat], usercode.Hat | None]"
    pushed, popped = await asyncio.gather(jobs.push(1), jobs.pop())
    pushed.upper()  # F5 E: has no attribute "upper"


async def f6(store: Store, astore: AsyncStore) -> None:
    store.get_many(Hat, "h1")  # F6 E:
    store.delete_many(Hat, "h1")  # F6 E:
    store.save_many(b"h1")  # F6 E:
    await astore.get_many(Hat, "h1")  # F6 E:
    with Transaction(store) as tx:
        tx.get_many(Hat, "h1")  # F6 E:
        tx.delete_many(Hat, "h1")  # F6 E:


def f7(store: Store) -> None:
    store.get(Plain, "x")  # F7 E:
    store.save(Plain())  # F7 E:
    store.get(Num, "1")  # F7 E:
    store.update(Num, 1, n="three")  # F7 E:


def f8() -> None:
    chain = redmodel.codecs.codec("json")
    reveal_type(chain.decode(chain.encode([1, 2]), list[int]))  # F8 N: "list[int]"
'''

@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    path = tmp_path_factory.mktemp("atk31f") / "usercode.py"
    path.write_text(_USER_CODE)
    return user_mypy.mypy_report(path)


def _unmet(report: dict[int, list[str]], finding: str) -> list[str]:
    return user_mypy.unmet(_USER_CODE, report, finding)


def test_mypy_f1_incr_of_a_class_attribute_that_is_not_a_stored_field(
        mypy_report: dict[int, list[str]]) -> None:
    """docs/models.md, Type checking (mypy): "what the store would refuse is an error with
    code `redmodel` ...: a field that does not exist"; and "A model stores only the fields
    its constructor takes". A ClassVar, an unannotated class attribute and an
    ``init=False`` attribute are no stored fields (the store raises ValidationError "unknown
    field 'rate'"), but the plugin types ``store.incr(Hat, id, "rate")`` as ``int``."""
    assert _unmet(mypy_report, "F1") == []


def test_mypy_f2_transaction_incr_is_typed_as_the_store_incr(
        mypy_report: dict[int, list[str]]) -> None:
    """docs/transactions.md: "Writes are queued ...: `tx.incr`, `tx.incr_fields` ... Each
    returns a `Pending` whose `.value` is what the Store method of the same name returns";
    docs/models.md: `store.incr(Hat, id, "quantity")` is an `int`, and "what the store
    would refuse is an error with code `redmodel`". ``tx.incr`` is ``Pending[Any]`` and its
    refusals (a str field, an unknown one, a float amount for an int) pass mypy."""
    assert _unmet(mypy_report, "F2") == []


def test_mypy_f3_transaction_get_field_is_typed_by_the_field(
        mypy_report: dict[int, list[str]]) -> None:
    """docs/transactions.md: "`tx.get_field(Model, id, "field")` (one `HGET`, decoded by
    the field's type)"; its docstring: "decoded by its type; None if absent". mypy sees
    ``Any`` for every field, and a field the model does not have passes."""
    assert _unmet(mypy_report, "F3") == []


def test_mypy_f4_a_queue_of_ipv4_or_ipv6_addresses_type_checks(
        mypy_report: dict[int, list[str]], store: redmodel.Store) -> None:
    """docs/containers.md, Members: "`IPv4Address` / `IPv6Address` (or `IPv4Address |
    IPv6Address`) are stored as their text". Such a queue works at run time, but mypy
    --strict refuses the constructor (``UnionType`` is no ``type[T]``), types the queue
    as ``Queue[IPv4Address]`` and then refuses an IPv6Address pushed to it."""
    ips = redmodel.containers.Queue(store, "atk31f:ips", IPv4Address | IPv6Address)
    ips.push(IPv6Address("::1"))
    assert ips.pop() == IPv6Address("::1")
    assert _unmet(mypy_report, "F4") == []


def test_mypy_f5_gathered_async_container_and_query_calls_keep_their_types(
        mypy_report: dict[int, list[str]]) -> None:
    """README: "queries and containers bound to an `AsyncStore` return coroutines, and are
    typed that way"; docs/design.md: a method's return is "a `Coroutine[Any, Any, ...]`"
    of its value. Awaited one at a time they are, but ``asyncio.gather`` of two different
    such methods (``jobs.push(1), jobs.pop()``; ``query.all(), query.first()``) is
    ``Any``: the self-typed overloads defeat mypy's inference in gather's overloads, and
    every value gathered is unchecked."""
    assert _unmet(mypy_report, "F5") == []


def test_mypy_f6_a_str_where_an_iterable_of_ids_or_objects_is(
        mypy_report: dict[int, list[str]]) -> None:
    """docs/failures.md: "the ids of `get_many`/`delete_many` and the objects of
    `save_many` are an iterable ... but never a `str` or `bytes` (one id: its characters
    are not ids)" (ValidationError at run time). Fix 30V made mypy refuse the same
    mistake for ``read_command(watch=)``; ``Iterable[Any]`` still takes a str here."""
    assert _unmet(mypy_report, "F6") == []


def test_mypy_f7_a_class_that_is_no_model_or_an_id_of_the_wrong_type(
        mypy_report: dict[int, list[str]]) -> None:
    """redmodel.ModelDefinitionError: raised "when a class that is not a model at all is
    saved or read as one"; a `get` of a str id for an int key field raises ValidationError
    ("expected int, got str"), an `update` of a str into an int field too. README: "Typed
    models". Each passes mypy --strict (``model: type``, ``id: Any``, ``**values: Any``)."""
    assert _unmet(mypy_report, "F7") == []


def test_mypy_f8_codec_decode_returns_the_type_it_is_given(
        mypy_report: dict[int, list[str]]) -> None:
    """docs/codecs.md: ``c.decode(stored, dict[str, list[int]]) == {"a": [1, 2, 3]}``;
    ``Codec.decode``: "Decode one value of type ``tp``". It returns ``Any``."""
    assert _unmet(mypy_report, "F8") == []
