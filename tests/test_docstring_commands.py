"""Docstrings name the commands their methods really send (issue 18, item 5).

Every public method of Store, AsyncStore, Query, the containers, the consumers and the
transaction handles has a ``Redis:`` paragraph (docs/design.md, "Docstrings name the
commands"). This test enumerates those methods by introspection, so a new method without
the paragraph fails, calls each one in a representative case on a real server, records
what the server executes with MONITOR (the helper of tests/test_keys_audit.py), and checks
that every command sent is one the paragraph names; a script call (EVALSHA, EVAL, FCALL)
must also name its script file (``hash_save.lua``). ``Redis: none`` means nothing is sent.
AsyncStore's and AsyncConsumer's paragraphs may say ``as Store.x``: the async method is
then checked against that line.

Not counted: a new connection's handshake (HELLO, CLIENT SETINFO, AUTH, SELECT), the
first use of a model or a container key by a store (the registry checks, done here before
recording), and the
commands a script runs itself (MONITOR's ``lua`` client).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel import AsyncStore, Store
from redmodel._indexes._query import Query
from redmodel.containers._base import Container
from redmodel.containers._consumer import AsyncConsumer, Consumer
from redmodel.containers._counter import WindowCounter
from redmodel.containers._queue import Queue
from redmodel.containers._sets import Set, SortedSet
from redmodel.testing import RedisServer
from redmodel.transactions import (
    AsyncTransaction,
    AsyncTransactionFunction,
    Transaction,
    TransactionFunction,
)
from redmodel.transactions import (
    _run as tx_run,
)
from tests.keys import forget_keys
from tests.test_keys_audit import Monitor, script_name

# ---- the convention ----------------------------------------------------------------------

CLASSES: list[type] = [Store, AsyncStore, Query, Container, Queue, Set, SortedSet, WindowCounter,
                       Consumer, AsyncConsumer, Transaction, AsyncTransaction,
                       TransactionFunction, AsyncTransactionFunction]
# module-level functions that talk to a store, and where they live (transact: the
# deprecated alias's implementation, read from its module so the check warns of nothing)
FUNCTIONS = {"pop_blocking": redmodel.containers, "transact": tx_run, "transaction": redmodel}
HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT", "READONLY"}
SCRIPT_CALLS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"}
REDIS_LINE = re.compile(r"^Redis:\s*(.*?)(?:\n\s*\n|\Z)", re.S | re.M)
AS_OTHER = re.compile(r"^as\s+:?(?:meth:)?`?~?(?:redmodel\.)?(\w+)\.(\w+)`?", re.I)


def public_methods(cls: type) -> list[str]:
    """Every public method or property of ``cls`` (inherited ones too); ``*_plan``
    methods return a plan and send nothing themselves, so they are not listed."""
    names = []
    for name in dir(cls):
        if name.startswith("_") or name.endswith("_plan"):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if callable(value) or isinstance(value, property):
            names.append(name)
    return names


def owner(cls: type, name: str) -> type:
    return next(k for k in cls.__mro__ if name in vars(k))


def redis_line(cls: type | None, name: str, seen: frozenset[tuple[type, str]] = frozenset()
               ) -> str:
    """The method's (``cls`` None: redmodel's function's) ``Redis:`` paragraph, following
    ``as Store.x``."""
    value = inspect.getattr_static(FUNCTIONS[name] if cls is None else cls, name)
    value = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
    doc = inspect.cleandoc(value.__doc__ or "")
    found = REDIS_LINE.search(doc)
    owner_name = getattr(cls, "__name__", "redmodel")
    assert found, f"{owner_name}.{name}: its docstring has no 'Redis:' paragraph"
    text = " ".join(found.group(1).split())
    other = AS_OTHER.match(text)
    if other:
        target = {c.__name__: c for c in CLASSES}[other.group(1)]
        assert (target, other.group(2)) not in seen, f"{cls.__name__}.{name}: a loop"
        return redis_line(target, other.group(2), seen | {(target, other.group(2))})
    return text


def named(line: str) -> tuple[set[str], set[str]]:
    """(commands, script files) a ``Redis:`` line names."""
    commands = set(re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", line))
    scripts = set(re.findall(r"\b(\w+)\.lua\b", line))
    return commands, scripts


def test_every_public_method_has_a_redis_line() -> None:
    missing = [f"{cls.__name__}.{name}" for cls in CLASSES for name in public_methods(cls)
               if not REDIS_LINE.search(inspect.cleandoc(getattr(
                   _func(inspect.getattr_static(cls, name)), "__doc__", None) or ""))]
    missing += [f"{owner.__name__}.{name}" for name, owner in FUNCTIONS.items()
                if not REDIS_LINE.search(inspect.cleandoc(getattr(owner, name).__doc__ or ""))]
    assert not missing, f"no 'Redis:' paragraph: {missing}"


def _func(value: Any) -> Any:
    return value.fget if isinstance(value, property) else getattr(value, "__func__", value)


def test_the_line_parser() -> None:
    assert named("EVALSHA (hash_save.lua), or HSET + PEXPIRE inside MULTI/EXEC") == (
        {"EVALSHA", "HSET", "PEXPIRE", "MULTI", "EXEC"}, {"hash_save"})
    assert named("none") == (set(), set())
    assert redis_line(AsyncStore, "save") == redis_line(Store, "save")


TX_FRAME = frozenset({"MULTI", "EXEC", "UNWATCH", "DISCARD"})


def check(line: str, sent: list[list[bytes]], where: str,
          frame: frozenset[str] = frozenset(), lead: bool = True) -> None:
    """Every command sent is one ``line`` names (or of the transaction's ``frame``)."""
    commands, scripts = named(line)
    commands = commands | frame
    any_command = "any command" in line.lower()
    any_script = "*.lua" in line
    got = [args[0].decode().upper() for args in sent]
    if line.strip().lower().startswith("none"):
        assert not got, f"{where}: says it sends nothing, sent {got}"
        return
    assert got, f"{where}: sent nothing, its line says {line!r}"
    first = next((w for w in re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", line) if w not in frame),
                 None)
    assert not lead or any_command or first is None or first in got, (
        f"{where}: its line leads with {first}, which the representative case did not send "
        f"(sent {got})")
    for args, name in zip(sent, got, strict=True):
        if name == "SCRIPT" and commands & SCRIPT_CALLS:
            continue  # loading a script before EVALSHA (or MULTI) is part of a script call
        if name in SCRIPT_CALLS:
            assert any_command or commands & SCRIPT_CALLS, (
                f"{where}: sent {name}, its line names no script call")
            # a script under a memo (docs/failures.md, "Resent maintenance calls") is that
            # script: its line names it, and says so
            script = script_name(args).removesuffix("+memo")
            assert any_command or any_script or script in scripts, (
                f"{where}: ran {script}.lua, its line names {scripts}")
            continue
        assert any_command or name in commands, f"{where}: sent {name}, its line says {line!r}"


# ---- the cases ---------------------------------------------------------------------------


@redmodel.model(prefix="dcplain")
@attrs.define
class Plain:
    name: str
    n: int = 0
    id: str = redmodel.key_field()


@redmodel.model(prefix="dcidx")
@attrs.define
class Idx:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=0.0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field()


@redmodel.model(prefix="dcbuck", buckets=4)
@attrs.define
class Buck:
    color: str = redmodel.field(index=True)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field()


@redmodel.model(prefix="dcflat", layout="flat")
@attrs.define
class Flat:
    name: str
    n: int = 0
    id: str = redmodel.key_field()


@redmodel.model(prefix="dcblob", layout="blob")
@attrs.define
class Blob:
    name: str
    id: str = redmodel.key_field()


@redmodel.model(prefix="dcsecret")
@attrs.define
class Secret:
    ssn: str = redmodel.field(codec="json|fernet", index="blind")
    id: str = redmodel.key_field()


FERNET_OLD, FERNET_NEW = (redmodel.codecs.FernetTransform.generate_key() for _ in range(2))
INDEX_OLD, INDEX_NEW = (redmodel.generate_index_key() for _ in range(2))


@pytest.fixture(autouse=True)
def crypto_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    forget_keys(monkeypatch)


def _old_keys() -> None:
    redmodel.codecs.configure_fernet(keys=[FERNET_OLD])
    redmodel.configure_index_keys(keys=[INDEX_OLD])


def _new_keys(e: Env) -> None:
    redmodel.codecs.configure_fernet(keys=[FERNET_NEW, FERNET_OLD])
    redmodel.configure_index_keys(keys=[INDEX_NEW, INDEX_OLD])
    # new index keys: the store's next use of a blind model checks them against its
    # registry record (a first use again: not recorded)
    _run(e, e.s.exists(Secret, "warm-up"))


def _moving(buckets: int | None) -> type:
    """Two versions of one model (one owner: the same qualified name) that differ only in
    their bucket count, for migrate_buckets."""

    @redmodel.model(prefix="dcmoved", buckets=buckets)
    @attrs.define
    class Moved:
        name: str
        id: str = redmodel.key_field(generated=False)

    return Moved


MOVED_FROM, MOVED_TO = _moving(None), _moving(4)


@dataclass
class Env:
    s: Any  # Store or AsyncStore
    url: str
    loop: asyncio.AbstractEventLoop | None

    @property
    def q(self) -> Queue[int, Any]:
        return Queue(self.s, "dcq", int)

    @property
    def set(self) -> Set[str, Any]:
        return Set(self.s, "dcset", str)

    @property
    def zs(self) -> SortedSet[str, Any]:
        return SortedSet(self.s, "dczs", str)

    @property
    def wc(self) -> WindowCounter[Any]:
        return WindowCounter(self.s, "dcwc", window=60)

    def find(self) -> Query[Idx, Any]:
        return self.s.find(Idx, color="red")  # type: ignore[no-any-return]


def _run(e: Env, value: Any) -> Any:
    """Finish what a call started: await a coroutine, drain an iterator."""
    if inspect.isawaitable(value):
        assert e.loop is not None
        return _run(e, e.loop.run_until_complete(value))
    if hasattr(value, "__aiter__") and not isinstance(value, (AsyncConsumer, Query)):
        async def drain() -> list[Any]:
            return [x async for x in value]
        assert e.loop is not None
        return e.loop.run_until_complete(drain())
    if isinstance(value, Iterator):
        return list(value)
    return value


def _tx(fn: Callable[[Any, Env], Any]) -> Callable[[Env, Any], Any]:
    """A transaction whose function does one call on the handle."""
    def run(e: Env, _: Any) -> Any:
        if isinstance(e.s, AsyncStore):
            async def afn(tx: AsyncTransaction) -> None:
                value = fn(tx, e)
                if inspect.isawaitable(value):
                    await value
            return e.s.transaction(afn)()

        def sfn(tx: Transaction) -> None:
            fn(tx, e)
        return e.s.transaction(sfn)()
    return run


def _consumer(e: Env) -> Any:
    """A consumer holding one item (its iterator kept alive: dropping it would clean up)."""
    _run(e, e.q.push(1))
    c = e.q.consume(max_items=2, visibility_timeout=30, signals=())
    if e.loop is None:
        it: Any = iter(c)
        next(it)
    else:
        it = c.__aiter__()
        e.loop.run_until_complete(it.__anext__())
    return c, it


def _from_env(e: Env) -> Any:
    saved = os.environ.get("DC_URL")
    os.environ["DC_URL"] = e.url
    try:
        return type(e.s).from_env("DC_")
    finally:
        os.environ.pop("DC_URL") if saved is None else os.environ.update(DC_URL=saved)


def _unbucketed(e: Env) -> Any:
    return _run(e, e.s.save(MOVED_FROM("a", id="m1")))


def _nothing(e: Env) -> None:
    return None


def _empty_tx_fn(e: Env) -> Callable[[Any], Any]:
    """A transaction function of the store's kind (a sync one is refused by an AsyncStore
    when decorated)."""
    async def afn(tx: Any) -> None:
        return None

    return afn if inspect.iscoroutinefunction(e.s.run) else (lambda tx: None)


Case = tuple[Callable[[Env], Any], Callable[[Env, Any], Any]]


def _c(call: Callable[[Env], Any], setup: Callable[[Env], Any] = _nothing) -> Case:
    return setup, lambda e, _: call(e)


STORE: dict[str, Case] = {
    "adopt": _c(lambda e: e.s.adopt(Plain)),
    "build_index": _c(lambda e: e.s.build_index(Idx, "color", progress=False)),
    "close": _c(lambda e: e.s.close()),
    "count": _c(lambda e: e.s.count(Plain)),
    "delete": _c(lambda e: e.s.delete(Plain, "p2")),
    "delete_many": _c(lambda e: e.s.delete_many(Plain, ["p2", "p3"])),
    "drop_index": _c(lambda e: e.s.drop_index(Idx, "gone")),
    "exists": _c(lambda e: e.s.exists(Plain, "p1")),
    "expire": _c(lambda e: e.s.expire(Plain, "p1", 100)),
    "find": _c(lambda e: e.s.find(Idx, color="red")),
    "from_env": _c(_from_env),
    "from_url": _c(lambda e: type(e.s).from_url(e.url)),
    "get": _c(lambda e: e.s.get(Plain, "p1")),
    "get_by": _c(lambda e: e.s.get_by(Idx, sku="s1")),
    "get_many": _c(lambda e: e.s.get_many(Plain, ["p1", "p9"])),
    "get_or_raise": _c(lambda e: e.s.get_or_raise(Plain, "p1")),
    "incr": _c(lambda e: e.s.incr(Plain, "p1", "n", 2)),
    "incr_fields": _c(lambda e: e.s.incr_fields(Plain, "p1", {"n": 1}, floor={"n": 0})),
    "migrate_buckets": _c(lambda e: e.s.migrate_buckets(MOVED_TO, from_buckets=None,
                                                         progress=False), _unbucketed),
    "persist": _c(lambda e: e.s.persist(Plain, "p1")),
    "pttl": _c(lambda e: e.s.pttl(Plain, "p1")),
    "reindex": _c(lambda e: e.s.reindex(Idx, progress=False)),
    "rotate_index_key": _c(lambda e: e.s.rotate_index_key(Secret, progress=False), _new_keys),
    "rotate_keys": _c(lambda e: e.s.rotate_keys(Secret), _new_keys),
    "run": _c(lambda e: e.s.run(e.q.length_plan())),
    "run_many": _c(lambda e: e.s.run_many(e.q.length_plan(), e.set.cardinality_plan())),
    "save": _c(lambda e: e.s.save(Plain("x", id="p1"))),
    "save_many": _c(lambda e: e.s.save_many([Plain("x", id="p1"), Plain("y", id="p4")])),
    "scan": _c(lambda e: e.s.scan(Plain)),
    "scan_keys": _c(lambda e: e.s.scan_keys(Plain)),
    "sweep": _c(lambda e: e.s.sweep(Idx)),
    "transact": _c(lambda e: _tx(lambda tx, e: tx.get(Plain, "p1"))(e, None)),
    "transaction": _c(lambda e: e.s.transaction(_empty_tx_fn(e))),
    "ttl": _c(lambda e: e.s.ttl(Plain, "p1")),
    "unregister": _c(lambda e: e.s.unregister(Plain)),
    "update": _c(lambda e: e.s.update(Plain, "p1", name="z")),
    "verify": _c(lambda e: e.s.verify(Idx)),
    "aclose": _c(lambda e: e.s.aclose()),
}

QUERY: dict[str, Case] = {
    "after": _c(lambda e: e.find().after(None)),
    "all": _c(lambda e: e.find().all()),
    "apages": _c(lambda e: e.find().apages(10)),
    "count": _c(lambda e: e.find().count()),
    "exists": _c(lambda e: e.find().exists()),
    "explain": _c(lambda e: e.find().explain()),
    "first": _c(lambda e: e.find().first()),
    "ids": _c(lambda e: e.find().ids()),
    "limit": _c(lambda e: e.find().limit(2)),
    "offset": _c(lambda e: e.find().offset(1)),
    "order_by": _c(lambda e: e.find().order_by("price")),
    "page": _c(lambda e: e.find().page(10)),
    "pages": _c(lambda e: e.find().pages(10)),
}

CONTAINER: dict[str, Case] = {
    "clear": _c(lambda e: e.set.clear()),
    "exists": _c(lambda e: e.q.exists()),
    "expire": _c(lambda e: e.q.expire(100)),
    "in_tx": _c(lambda e: e.q.in_tx(Transaction(e.s) if isinstance(e.s, Store)
                                    else AsyncTransaction(e.s))),
}
QUEUE: dict[str, Case] = {
    "consume": _c(lambda e: e.q.consume(max_items=1)),
    "in_flight": _c(lambda e: e.q.in_flight()),
    "length": _c(lambda e: e.q.length()),
    "pop": _c(lambda e: e.q.pop()),
    "pop_blocking": _c(lambda e: e.q.pop_blocking(0.1)),
    "pop_right": _c(lambda e: e.q.pop_right()),
    "push": _c(lambda e: e.q.push(1, 2)),
    "push_left": _c(lambda e: e.q.push_left(0)),
    "range": _c(lambda e: e.q.range()),
    "recover": _c(lambda e: e.q.recover()),
    "trim": _c(lambda e: e.q.trim(0, 99)),
}
SET: dict[str, Case] = {
    "add": _c(lambda e: e.set.add("a", "b")),
    "cardinality": _c(lambda e: e.set.cardinality()),
    "contains": _c(lambda e: e.set.contains("a")),
    "difference": _c(lambda e: e.set.difference(Set(e.s, "dcset2", str))),
    "intersection": _c(lambda e: e.set.intersection(Set(e.s, "dcset2", str))),
    "members": _c(lambda e: e.set.members()),
    "members_list": _c(lambda e: e.set.members_list()),
    "pop": _c(lambda e: e.set.pop()),
    "remove": _c(lambda e: e.set.remove("b")),
    "union": _c(lambda e: e.set.union(Set(e.s, "dcset2", str))),
}
SORTED: dict[str, Case] = {
    "add": _c(lambda e: e.zs.add("a", 1.5)),
    "add_many": _c(lambda e: e.zs.add_many({"b": 2.0, "c": 3.0}, nx=True)),
    "cardinality": _c(lambda e: e.zs.cardinality()),
    "incr": _c(lambda e: e.zs.incr("a", 1)),
    "pop_max": _c(lambda e: e.zs.pop_max()),
    "pop_min": _c(lambda e: e.zs.pop_min()),
    "range": _c(lambda e: e.zs.range()),
    "range_by_score": _c(lambda e: e.zs.range_by_score(0, 9)),
    "range_by_score_with_scores": _c(lambda e: e.zs.range_by_score_with_scores(count=2)),
    "range_with_scores": _c(lambda e: e.zs.range_with_scores()),
    "rank": _c(lambda e: e.zs.rank("a")),
    "remove": _c(lambda e: e.zs.remove("c")),
    "score": _c(lambda e: e.zs.score("a")),
}
WINDOW: dict[str, Case] = {
    "forget": _c(lambda e: e.wc.forget(), lambda e: _run(e, e.wc.incr("ip"))),
    "get": _c(lambda e: e.wc.get("ip")),
    "in_tx": _c(lambda e: e.wc.in_tx(Transaction(e.s) if isinstance(e.s, Store)
                                     else AsyncTransaction(e.s))),
    "incr": _c(lambda e: e.wc.incr("ip")),
    "key_for": _c(lambda e: e.wc.key_for("ip")),
    "reset": _c(lambda e: e.wc.reset("ip")),
    "window_start": _c(lambda e: e.wc.window_start()),
}
CONSUMER: dict[str, Case] = {
    "ack": (_consumer, lambda e, c: c[0].ack()),
    "redelivered": (_consumer, lambda e, c: c[0].redelivered),
    "stop": (_consumer, lambda e, c: c[0].stop()),
    "aclose": (_consumer, lambda e, c: c[0].aclose()),
}
TX: dict[str, Case] = {
    "command": (_nothing, _tx(lambda tx, e: tx.command("SET", "dcraw", "1"))),
    "delete": (_nothing, _tx(lambda tx, e: tx.delete(Plain, "p2"))),
    "delete_many": (_nothing, _tx(lambda tx, e: tx.delete_many(Plain, ["p2", "p3"]))),
    "exists": (_nothing, _tx(lambda tx, e: tx.exists(Plain, "p1"))),
    "expire": (_nothing, _tx(lambda tx, e: tx.expire(Plain, "p1", 100))),
    "get": (_nothing, _tx(lambda tx, e: tx.get(Plain, "p1"))),
    "get_field": (_nothing, _tx(lambda tx, e: tx.get_field(Plain, "p1", "n"))),
    "get_many": (_nothing, _tx(lambda tx, e: tx.get_many(Plain, ["p1", "p9"]))),
    "get_or_raise": (_nothing, _tx(lambda tx, e: tx.get_or_raise(Plain, "p1"))),
    "incr": (_nothing, _tx(lambda tx, e: tx.incr(Plain, "p1", "n", 1))),
    "incr_fields": (_nothing, _tx(lambda tx, e: tx.incr_fields(Plain, "p1", {"n": 1}))),
    "persist": (_nothing, _tx(lambda tx, e: tx.persist(Plain, "p1"))),
    "query": (_nothing, _tx(lambda tx, e: tx.query(e.q.length_plan()))),
    "queue": (_nothing, _tx(lambda tx, e: tx.queue(e.q.push_plan(5)))),
    "read_command": (_nothing, _tx(lambda tx, e: tx.read_command("GET", "dcraw",
                                                                 watch=["dcraw"]))),
    "save": (_nothing, _tx(lambda tx, e: tx.save(Plain("t", id="p1")))),
    "save_many": (_nothing, _tx(lambda tx, e: tx.save_many([Plain("t", id="p1")]))),
    "update": (_nothing, _tx(lambda tx, e: tx.update(Plain, "p1", name="u"))),
    "watch": (_nothing, _tx(lambda tx, e: tx.watch("dcraw"))),
    "watched": (_nothing, _tx(lambda tx, e: tx.watched)),
}
def _tx_function(e: Env) -> Any:
    if isinstance(e.s, AsyncStore):
        async def afn(tx: AsyncTransaction) -> Any:
            return await tx.get(Plain, "p1")
        return redmodel.transaction(e.s)(afn)

    def sfn(tx: Transaction) -> Any:
        return tx.get(Plain, "p1")
    return redmodel.transaction(e.s)(sfn)


TX_FUNCTION: dict[str, Case] = {
    "outcome": (_tx_function, lambda e, f: f.outcome()),
    "bind": (_tx_function, lambda e, f: f.bind(e.s)),
}
MODULE: dict[str, Case] = {
    "pop_blocking": _c(lambda e: redmodel.containers.pop_blocking(e.q, Queue(e.s, "dcq2", int),
                                                       timeout=0.1)),
    "transact": _c(lambda e: tx_run.transact(e.s, lambda tx: tx.get(Plain, "p1"))),
    "transaction": _c(lambda e: redmodel.transaction(e.s)),
}


CASES: dict[type, dict[str, Case]] = {
    Store: STORE, AsyncStore: STORE, Query: QUERY, Container: CONTAINER,
    Queue: QUEUE | CONTAINER, Set: SET | CONTAINER, SortedSet: SORTED | CONTAINER,
    WindowCounter: WINDOW, Consumer: CONSUMER, AsyncConsumer: CONSUMER,
    Transaction: TX, AsyncTransaction: TX,
    TransactionFunction: TX_FUNCTION, AsyncTransactionFunction: TX_FUNCTION,
}


def _loaded(e: Env) -> Any:
    obj = _run(e, e.s.get(Plain, "p1"))
    obj.name = "changed"
    return obj


def _bad_member(key: str) -> Callable[[Env], None]:
    def plant(e: Env) -> None:
        client = redis.Redis.from_url(e.url)
        client.delete(key)
        client.sadd(key, b"not an int") if key.endswith("set") else client.rpush(key, b"x")
        client.close()
    return plant


def _refused(call: Callable[[Env], Any]) -> Callable[[Env], Any]:
    def run(e: Env) -> Any:
        try:
            return _run(e, call(e))
        except redmodel.DecodeError:
            return None
    return run


# the conditional alternatives a line names, in cases of their own (each checked only for
# "every command sent is named")
EXTRA: list[tuple[type, str, Case]] = [
    (Store, "save", _c(lambda e: e.s.save(Plain("x", id="p1"), ttl=60))),
    (Store, "save", (_loaded, lambda e, obj: e.s.save(obj))),
    (Store, "save", _c(lambda e: e.s.save(Idx("blue", 3.0, sku="s9", id="i1")))),
    (Store, "save", _c(lambda e: e.s.save(Buck("blue", sku="b9", id="b1")))),
    (Store, "save", _c(lambda e: e.s.save(Flat("g", id="f1")))),
    (Store, "save", _c(lambda e: e.s.save(Blob("g", id="o1")))),
    (Store, "save_many", _c(lambda e: e.s.save_many([Buck("x", sku="b8", id="b2"),
                                                      Flat("x", id="f2")]))),
    (Store, "get", _c(lambda e: e.s.get(Flat, "f1"))),
    (Store, "get", _c(lambda e: e.s.get(Blob, "o1"))),
    (Store, "get_many", _c(lambda e: e.s.get_many(Flat, ["f1", "f9"]))),
    (Store, "get_by", _c(lambda e: e.s.get_by(Buck, sku="b1"))),
    (Store, "delete", _c(lambda e: e.s.delete(Idx, "i1"))),
    (Store, "delete", _c(lambda e: e.s.delete(Buck, "b1"))),
    (Store, "delete", _c(lambda e: e.s.delete(Flat, "f1"))),
    (Store, "delete_many", _c(lambda e: e.s.delete_many(Buck, ["b1", "b2"]))),
    (Store, "delete_many", _c(lambda e: e.s.delete_many(Flat, ["f1"]))),
    (Store, "update", _c(lambda e: e.s.update(Idx, "i1", color="green"))),
    (Store, "update", _c(lambda e: e.s.update(Buck, "b1", sku="b7"))),
    (Store, "expire", _c(lambda e: e.s.expire(Idx, "i1", 100))),
    (Store, "expire", _c(lambda e: e.s.expire(Flat, "f1", 100))),
    (Store, "persist", _c(lambda e: e.s.persist(Flat, "f1"))),
    (Store, "persist", _c(lambda e: e.s.persist(Idx, "i1"))),
    (Store, "incr", _c(lambda e: e.s.incr(Idx, "i1", "price", 1))),
    (Store, "incr", _c(lambda e: e.s.incr(Flat, "f1", "n", 1))),
    (Store, "incr_fields", _c(lambda e: e.s.incr_fields(Idx, "i1", {"price": 1}))),
    (Store, "scan", _c(lambda e: e.s.scan(Flat))),
    (Store, "scan", _c(lambda e: e.s.scan(Blob))),
    (Store, "rotate_keys", _c(lambda e: e.s.rotate_keys(Plain))),
    (Store, "sweep", _c(lambda e: e.s.sweep(Buck))),
    (Query, "all", _c(lambda e: e.s.find(Buck, color="red").all())),
    (Queue, "pop", (_bad_member("dcbadq"), lambda e, _: _refused(
        lambda e: Queue(e.s, "dcbadq", int).pop())(e))),
    (Set, "pop", (_bad_member("dcbadset"), lambda e, _: _refused(
        lambda e: Set(e.s, "dcbadset", int).pop())(e))),
    (SortedSet, "pop_min", _c(lambda e: e.zs.pop_min(5))),
    (Transaction, "save", (_nothing, _tx(lambda tx, e: tx.save(Idx("t", id="i1"))))),
    (Transaction, "save", (_nothing, _tx(lambda tx, e: tx.save(Buck("t", sku="b5", id="b1"))))),
    (Transaction, "delete", (_nothing, _tx(lambda tx, e: tx.delete(Buck, "b1")))),
    (Transaction, "update", (_nothing, _tx(lambda tx, e: tx.update(Idx, "i1", color="c")))),
    (Transaction, "incr", (_nothing, _tx(lambda tx, e: tx.incr(Idx, "i1", "price", 1)))),
    (Transaction, "get", (_nothing, _tx(lambda tx, e: tx.get(Flat, "f1")))),
    (Transaction, "expire", (_nothing, _tx(lambda tx, e: tx.expire(Flat, "f1", 100)))),
]


def test_every_public_method_has_a_case() -> None:
    missing = [f"{cls.__name__}.{name}" for cls in CLASSES for name in public_methods(cls)
               if name not in CASES[cls]]
    missing += [f"redmodel.{name}" for name in FUNCTIONS if name not in MODULE]
    assert not missing, f"add a case for {missing}"


# ---- recording ---------------------------------------------------------------------------


#: Each server's populated keys, as (key, PTTL, DUMP), taken after the first populate: the
#: later cases restore them in one round trip instead of saving through a store again.
_POPULATED: dict[tuple[str, int], list[tuple[bytes, int, bytes]]] = {}


def _populate(client: redis.Redis) -> None:
    _old_keys()
    kwargs = client.connection_pool.connection_kwargs
    where = (kwargs["host"], kwargs["port"])
    dumped = _POPULATED.get(where)
    if dumped is not None:
        with client.pipeline(transaction=False) as pipe:
            pipe.flushall()
            for key, ttl, value in dumped:
                pipe.restore(key, max(ttl, 0), value)
            pipe.execute()
        return
    client.flushall()
    _save_the_objects(client)
    keys = sorted(client.keys("*"))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.pttl(key)
            pipe.dump(key)
        replies = pipe.execute()
    _POPULATED[where] = [(key, replies[2 * n], replies[2 * n + 1])
                         for n, key in enumerate(keys)]


def _save_the_objects(client: redis.Redis) -> None:
    store = Store(client)
    store.save(Secret("123-45-6789", id="s1"))
    store.save_many([Buck("red", sku="b1", id="b1"), Flat("f", 1, id="f1"), Blob("b", id="o1")])
    store.save_many([Plain("a", 1, id="p1"), Plain("b", id="p2"), Plain("c", id="p3")])
    store.save_many([Idx("red", 1.0, sku="s1", id="i1"), Idx("red", 2.0, id="i2")])
    client.rpush("dcq", b"1", b"2")
    client.sadd("dcset", b"a")
    client.zadd("dczs", {b"a": 1.0, b"c": 2.0})


def record(server: RedisServer, e: Env, case: Case) -> list[list[bytes]]:
    setup, call = case
    obj = _run(e, setup(e))
    monitor = Monitor(server.host, server.port)
    try:
        _run(e, call(e, obj))
    finally:
        lines = monitor.finish()
        if isinstance(obj, tuple) and isinstance(obj[0], AsyncConsumer):
            _run(e, obj[0].aclose())  # in its loop: the GC would finalize it in none
        elif isinstance(obj, tuple) and isinstance(obj[0], Consumer):
            obj[1].close()
    return [args for client, args in lines
            if client != "lua" and args[0].decode().upper() not in HANDSHAKE]


def _all_cases(classes: list[type]) -> list[tuple[type, str]]:
    return [(cls, name) for cls in classes for name in public_methods(cls)]


SYNC = [c for c in CLASSES
        if c not in (AsyncStore, AsyncConsumer, AsyncTransaction, AsyncTransactionFunction)]
ASYNC = [AsyncStore, Query, Container, Queue, Set, SortedSet, WindowCounter, AsyncConsumer,
         AsyncTransactionFunction,
         AsyncTransaction]
SYNC_ONLY = {"pages"}
ASYNC_ONLY = {"apages", "aclose"}


def _sides(kind: str) -> list[tuple[type, str]]:
    if kind == "sync":
        return [(c, n) for c, n in _all_cases(SYNC) if n not in ASYNC_ONLY]
    return [(c, n) for c, n in _all_cases(ASYNC) if n not in SYNC_ONLY
            and not (c is AsyncConsumer and n in ("close",))]


def _show(kind: str, where: str, sent: list[list[bytes]]) -> None:
    """With DC_SHOW=1 (and -s), print what each case sent: handy when writing a line."""
    if os.environ.get("DC_SHOW"):
        print(f"SENT {kind} {where}:", " ".join(
            a[0].decode().upper()
            + (f"({script_name(a)})" if a[0].upper().startswith((b"EVAL", b"FCALL")) else "")
            for a in sent))


def _check_all(kind: str, cases: list[tuple[type | None, str, Case]], server: RedisServer,
               url: str, lead: bool) -> None:
    """Each case on a freshly populated server, with a fresh store; every failure listed."""
    client = redis.Redis(host=server.host, port=server.port)
    failures = []
    loop = asyncio.new_event_loop() if kind == "async" else None
    try:
        for number, (cls, name, case) in enumerate(cases):
            _populate(client)
            store: Any = Store(client) if loop is None else AsyncStore.from_url(url)
            e = Env(store, url, loop)
            for model in (Plain, Idx, Secret, Buck, Flat, Blob):  # the registry check of a
                _run(e, store.exists(model, "warm-up"))          # first use: not recorded
            for plan in (e.q.length_plan(), e.set.cardinality_plan(), e.zs.cardinality_plan(),
                         e.wc.get_plan("warm-up"), Queue(e.s, "dcq2", int).length_plan(),
                         Queue(e.s, "dcbadq", int).length_plan(),
                         Set(e.s, "dcbadset", int).cardinality_plan()):
                # a container key's first use: the same
                _run(e, store.run(plan))
            where = f"{getattr(cls, '__name__', 'redmodel')}.{name} #{number} ({kind})"
            try:
                sent = record(server, e, case)
                _show(kind, where, sent)
                frame = TX_FRAME if cls in (Transaction, AsyncTransaction) else frozenset()
                check(redis_line(cls, name), sent, where, frame, lead=lead)
            except AssertionError as error:
                failures.append(str(error))
            finally:
                if loop is not None:
                    loop.run_until_complete(store.aclose())
    finally:
        if loop is not None:
            loop.close()
        client.close()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_docstrings_name_the_commands_sent(kind: str, redis_server: RedisServer,
                                           redis_url: str) -> None:
    cases: list[tuple[type | None, str, Case]] = [
        (cls, name, CASES[cls][name]) for cls, name in _sides(kind)]
    cases += [(None, name, MODULE[name]) for name in FUNCTIONS
              if kind == "sync" or name != "transact"]  # transact takes a Store
    _check_all(kind, cases, redis_server, redis_url, lead=True)


def _twin(cls: type, kind: str) -> type:
    twins = {Store: AsyncStore, Transaction: AsyncTransaction, Consumer: AsyncConsumer}
    return twins.get(cls, cls) if kind == "async" else cls


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_docstrings_name_the_conditional_alternatives(kind: str, redis_server: RedisServer,
                                                      redis_url: str) -> None:
    cases: list[tuple[type | None, str, Case]] = [
        (_twin(cls, kind), name, case) for cls, name, case in EXTRA]
    _check_all(kind, cases, redis_server, redis_url, lead=False)
