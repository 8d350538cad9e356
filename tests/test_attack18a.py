"""Attack on issue 18 (one sync/async pattern, the transaction seams, the front door): one
test per finding of /work/notes/FINDINGS-18a.md, each failing on the code it was written
against. The promises are docs/design.md's ("Sync and async: one pattern", "Where things
live") and the issue's four transaction bugs with their near variants."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import pickle
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

import redmodel
import redmodel.migrations
import redmodel.testing
from redmodel import Store
from redmodel.containers import Queue
from tests import user_mypy

ROOT = Path(__file__).resolve().parent.parent


@redmodel.model(prefix="atk18")
@attrs.define
class Hat:
    color: str = "black"
    quantity: int = 0
    id: str = redmodel.key_field()


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An ordinary user decorator (logging, metrics): it hides what kind of function it wraps
    from ``inspect.isgeneratorfunction`` / ``iscoroutinefunction``."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return wrapper


# ---- bug 3 of the issue ("@transaction on a generator function commits an empty
# transaction") and its near variants ------------------------------------------------------


def test_deprecated_store_transact_refuses_a_generator_function(store: Store) -> None:
    """``store.transact`` still works for one release (docs/design.md: a deprecated alias of
    ``transaction(store)(fn)(*args)``), so it must refuse what the new path refuses."""
    store.save(Hat(id="g1", quantity=5))

    def restock(tx: Any) -> Iterator[int]:
        tx.incr(Hat, "g1", "quantity", 1)
        yield 1

    with pytest.raises(redmodel.TransactionError, match="generator"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        store.transact(restock)


def test_a_transaction_whose_function_returns_a_generator_does_not_commit_empty(
        store: Store) -> None:
    """A callable object whose ``__call__`` is a generator (or a generator function behind a
    ``functools.wraps`` decorator) passes the decoration check; the run must then refuse the
    generator it gets back instead of committing an empty transaction and returning it."""
    store.save(Hat(id="g2", quantity=5))

    class Restock:
        def __call__(self, tx: Any) -> Iterator[int]:
            tx.incr(Hat, "g2", "quantity", 1)
            yield 1

    with pytest.raises(redmodel.TransactionError):
        result = redmodel.transaction(store)(Restock())()
        assert not inspect.isgenerator(result), "an empty transaction was committed"


# ---- bug 2 of the issue, reversed: an async body run by a sync transaction -------------


def test_a_sync_transaction_refuses_a_coroutine_returned_by_its_function(store: Store) -> None:
    """``astore.transaction(sync_fn)`` is refused (the function's kind is checked); the mirror,
    an ``async def`` behind a decorator given to a Store's transaction, commits an empty
    transaction and hands back an un-awaited coroutine (its writes never happen)."""
    store.save(Hat(id="c1", quantity=5))

    async def restock(tx: Any) -> int:
        tx.incr(Hat, "c1", "quantity", 1)
        return 1

    fn = redmodel.transaction(store)(logged(restock))
    result: Any = None
    try:
        with pytest.raises(redmodel.TransactionError):
            result = fn()
    finally:
        if inspect.iscoroutine(result):
            result.close()


# ---- a container joined into a transaction on another store ------------------------------


def test_a_container_of_another_store_cannot_join_a_transaction(
        store: Store, redis_url: str) -> None:
    """A transaction function of one store called inside a transaction of another is refused
    ("was called inside a transaction on another store"). A container bound to the second
    store, joined with ``in_tx``, silently writes its key into the first store's database."""
    other = Store.from_url(redis_url + "/1")
    other.client.flushdb()
    jobs = Queue(other, "jobs18a", int)

    @redmodel.transaction(store)
    def enqueue(tx: Any) -> None:
        jobs.in_tx(tx).push(1)

    try:
        with pytest.raises(redmodel.TransactionError):
            enqueue()
    finally:
        written_here = store.client.exists("jobs18a")
        other.client.flushdb()
        other.close()
    assert not written_here, "the queue of the other store was written into this store"


# ---- typing: wrong code that mypy --strict accepts --------------------------------------


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """mypy --strict with the project's configuration (the plugin), as tests/test_typing.py
    runs it, on one user file (USER_CODE): the errors by line. Run once for the module."""
    path = tmp_path_factory.mktemp("typing18a") / "user18a.py"
    path.write_text(USER_CODE)
    # not shared with test_typing
    errors = user_mypy.mypy_errors(path, ROOT / ".mypy_cache" / "attack18a")
    assert 24 in errors, errors  # the control line: mypy ran and was read
    return errors


USER_CODE = """\
from collections.abc import AsyncIterator, Iterator
import redmodel
from redmodel import AsyncStore, Store
from redmodel.containers import Queue
from redmodel.transactions import AsyncTransaction, Transaction


def sync(store: Store) -> None:
    @redmodel.transaction(store)
    def gen(tx: Transaction) -> Iterator[int]:  # line 10: refused at run time
        yield 1

    @store.transaction
    def gen2(tx: Transaction) -> Iterator[int]:  # line 14: refused at run time
        yield 1


async def asyncio_side(store: Store, astore: AsyncStore) -> None:
    @redmodel.transaction(astore)
    async def body(tx: AsyncTransaction) -> None:
        Queue(store, "jobs", int).in_tx(tx).push(1)  # line 21: a sync store's queue


control: int = "not an int"  # line 24: proves mypy ran and was read


class ShopStore(Store):
    def shop(self) -> str:
        return "hats"


class AsyncShopStore(AsyncStore):
    def shop(self) -> str:
        return "hats"


def subclassed() -> None:
    store: ShopStore = ShopStore.from_url()  # line 38
    with ShopStore.from_url() as same:
        same.shop()  # line 40
    ShopStore.from_env().shop()  # line 41


async def asubclassed() -> None:
    astore: AsyncShopStore = AsyncShopStore.from_url()  # line 45
    async with AsyncShopStore.from_url() as same:
        same.shop()  # line 47
    AsyncShopStore.from_env().shop()  # line 48
"""


def test_mypy_rejects_what_the_runtime_refuses(mypy_errors: dict[int, list[str]]) -> None:
    """docs/design.md: "mistakes are type errors". A generator function given to a bound
    transaction decorator (refused at run time: "is a generator function") and a Store's
    container joined into an AsyncStore's transaction type-check without a word."""
    missing = [line for line in (9, 13, 21) if not any(
        line <= n <= line + 1 for n in mypy_errors)]
    assert not missing, f"mypy --strict accepts lines {missing}; it reported {mypy_errors}"


def test_mypy_accepts_a_store_subclass_built_by_its_constructors(
        mypy_errors: dict[int, list[str]]) -> None:
    """docs/design.md: "a subclass of Store gets the sync signatures". At run time
    ``ShopStore.from_url()``, ``from_env()`` and ``with``/``async with`` give a ShopStore, but
    they are typed to return ``Store`` / ``AsyncStore`` (not ``Self``), so correct code that
    uses the subclass's own methods is rejected ("Store" has no attribute "shop",
    incompatible assignment)."""
    wrong = {n: e for n, e in mypy_errors.items() if 37 <= n <= 48}
    assert not wrong


# ---- front door: public types with private __module__ ------------------------------------


def test_every_public_name_of_redmodel_testing_has_its_public_module() -> None:
    """Issue 18, item 4: every public type is exported "with __module__ set as httpx does";
    docs/design.md: "Every public name's __module__ is the public module". The codecs,
    containers, transactions and migrations do it; redmodel.testing (FaultProxy, RedisServer,
    the errors it raises) does not, so reprs and tracebacks name private modules."""
    private = {name: obj.__module__ for name in redmodel.testing.__all__
               if callable(obj := getattr(redmodel.testing, name))
               and obj.__module__ != "redmodel.testing"}
    assert not private



# ---- errors do not survive pickling -------------------------------------------------------

ERRORS = [
    redmodel.NotFoundError("Hat", "hat:1"),
    redmodel.ConflictError("gave up", attempts=3, keys=("hat:1",)),
    redmodel.ReadAfterWriteError("get", "save"),
    redmodel.UniqueViolationError("Hat", ("sku",), "x", "hat:1"),
    redmodel.IndexNotReadyError("not ready", model="Hat", index="color", state="building"),
    redmodel.SchemaConflictError("taken", prefix="hat", key="hat:%schema", owner="A",
                                 model="B"),
    redmodel.OutcomeUnknownError("lost", keys=("hat:1",)),
    redmodel.ServerError("ERR x", keys=("hat:1",), command="SET"),
    redmodel.EvictionPolicyError("allkeys-lru"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling(error: Exception) -> None:
    """An error raised in a worker process (multiprocessing, ProcessPoolExecutor, celery)
    crosses back pickled: it must come back as the same error with the same message and
    attributes (the key it names). Today six of these fail to unpickle (TypeError: missing
    arguments, so the pool reports a broken worker instead) and three come back with their
    message doubled and their ``keys`` emptied."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)


# ---- joined transaction functions run concurrently (asyncio.gather) share one connection --


def test_joined_async_transactions_gathered_do_not_corrupt_the_connection(
        redis_url: str) -> None:
    """``await asyncio.gather(take("a"), take("b"), ...)`` inside an async transaction is the
    natural asyncio way to read several objects; each ``take`` joins the open transaction, and
    their WATCH/HGETALL go concurrently over the transaction's one pinned connection, which
    breaks: many attempts end with "Connection closed by server." and the retry
    loop hides it ("attempt 1 could not go on ...; running it again"), but each broken
    connection stays checked out of the pool: after some 50 calls the transaction raises
    redis-py's MaxConnectionsError. Either the joined reads are serialised or the join is
    refused; an attempt must not fail by itself."""
    ids = [f"g{i}" for i in range(20)]

    async def scenario() -> tuple[int, int]:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save_many([Hat(id=i, quantity=100) for i in ids])

            @redmodel.transaction(astore)
            async def take(tx: Any, hat_id: str) -> int:
                return (await tx.get_or_raise(Hat, hat_id)).quantity

            @redmodel.transaction(astore)
            async def outer(tx: Any) -> list[int]:
                return list(await asyncio.gather(*(take(i) for i in ids)))

            for _ in range(50):
                try:
                    assert await outer() == [100] * len(ids)
                except redmodel.TransactionError:
                    return 0, 0  # refused: fine
            return outer.stats.restarts, outer.stats.attempts - outer.stats.calls

    restarts, extra = asyncio.run(scenario())
    assert (restarts, extra) == (0, 0)


# ---- front door: `from redmodel import Queue` warns twice --------------------------------


@pytest.mark.parametrize("name", ["Queue", "JsonSerializer", "RetryPolicy", "transact"])
def test_an_old_from_import_warns_exactly_once(name: str) -> None:
    """docs/design.md: the old paths resolve "with a DeprecationWarning naming the new one".
    ``from redmodel import Queue`` goes through the module ``__getattr__`` twice (the import
    machinery's ``hasattr`` on a package's fromlist, then the IMPORT_FROM itself), so every
    old ``from`` import warns twice: seen twice under ``-W always`` and in pytest's summary."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(f"from redmodel import {name}", {})
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]


# ---- a type public functions return is not exported --------------------------------------

PUBLIC_MODULES = (redmodel, redmodel.codecs, redmodel.containers, redmodel.transactions,
                  redmodel.migrations, redmodel.testing, redmodel.plans)


def _redmodel_classes(hint: Any) -> Iterator[type]:
    for arg in typing.get_args(hint):
        yield from _redmodel_classes(arg)
    origin = typing.get_origin(hint) or hint
    if isinstance(origin, type) and origin.__module__.startswith("redmodel"):
        yield origin


@pytest.mark.parametrize("function", [
    Store.run, redmodel.AsyncStore.run, Queue.length_plan, redmodel.Query.all_plan,
    redmodel.containers.WindowCounter.get_plan, redmodel.transactions.Transaction.query,
], ids=lambda f: f.__qualname__)
def test_the_types_of_the_documented_plans_are_exported(function: Callable[..., Any]) -> None:
    """Issue 18, item 4: "Every type that a public function returns is exported". The plans
    are public API (docs/containers.md: ``tx.query(s.members_plan())``,
    ``store.run_many(ips.length_plan(), ...)``; docs/migrations.md lists a query's
    ``count_plan()``, ``ids_plan()`` ...), and their type is ``Generator[Batch, list[Any], R]``
    with ``redmodel._plan.Batch``, which no public module exports (nor the ``Plan`` alias):
    a user typing a helper that builds or runs a plan must import a private module."""
    exported = {id(getattr(m, n)) for m in PUBLIC_MODULES for n in m.__all__}
    hints = typing.get_type_hints(function)
    hidden = {f"{c.__module__}.{c.__qualname__}" for hint in hints.values()
              for c in _redmodel_classes(hint) if id(c) not in exported}
    assert not hidden


# ---- scripts "loaded before a MULTI": a stale script cache makes EXEC half-apply ----------


@redmodel.model(prefix="atk18f", layout="flat")
@attrs.define
class FlatHat:
    color: str = "black"
    tags: list[str] = attrs.Factory(list)
    id: str = redmodel.key_field()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_transaction_after_script_flush_is_all_or_nothing(
        kind: str, store: Store, redis_url: str) -> None:
    """Issue 18 item 2: "Scripts are loaded before a MULTI rather than sent as source inside
    it". The store remembers which scripts it loaded; after SCRIPT FLUSH (a restart, a
    failover to a replica, an operator) that memory is stale, the EVALSHA queued inside MULTI
    answers NOSCRIPT inside EXEC, and EXEC still applies every other queued command: the
    transaction raises ServerError and is half applied. The rule: "a failed write leaves
    nothing half-done" (and a transaction is all or nothing)."""
    async def scenario() -> None:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save(FlatHat(id="f1"))
            await astore.client.script_flush()

            @redmodel.transaction(astore)
            async def recolor(tx: Any) -> None:
                tx.command("SET", "marker18a", "1")
                tx.save(FlatHat("green", id="f1"))

            with contextlib.suppress(redis.RedisError):
                await recolor()

    if kind == "sync":
        store.save(FlatHat(id="f1"))  # loads flat_save.lua; the store remembers it
        store.client.script_flush()

        @redmodel.transaction(store)
        def recolor(tx: Any) -> None:
            tx.command("SET", "marker18a", "1")
            tx.save(FlatHat("green", id="f1"))

        with contextlib.suppress(redis.RedisError):
            recolor()
    else:
        asyncio.run(scenario())
    hat = store.get(FlatHat, "f1")
    assert hat is not None
    marker = store.client.get("marker18a")
    assert (marker, hat.color) in ((None, "black"), (b"1", "green")), (marker, hat.color)
