"""``AsyncStore``: the asyncio shell over the same plans as ``Store``.

Each method is one line that awaits the plan ``Store`` runs; the logic lives in
:mod:`redmodel._plans._objects`.
"""

from __future__ import annotations

import datetime as dt
import inspect
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from typing_extensions import Self

from redmodel import _rebucket
from redmodel._args import flag
from redmodel._indexes import _registry, _repair
from redmodel._indexes._query import Q, Query
from redmodel._indexes._rotate import Progress, rotate_index_key
from redmodel._models._specs import model_spec
from redmodel._plan import Batch, IterPlan, Plan, gather, iterate_async, run_async
from redmodel._plans import _atomic, _single
from redmodel._plans import _objects as _ops
from redmodel._plans._objects import DEFAULT
from redmodel._stores._config import (
    ShellConfig,
    check_kind,
    env_exactly_once,
    env_settings,
    store_args,
    url_options,
)
from redmodel._transport._blocking import aclose_blocking_clients
from redmodel._transport._links import AsyncLink
from redmodel._transport._wire import ResendPolicy
from redmodel.transactions._handles import AsyncStore as _TxAsyncStore  # as transaction()
from redmodel.transactions._handles import AsyncTransaction
from redmodel.transactions._policy import RetryPolicy
from redmodel.transactions._run import (
    AsyncTransactionFunction,
    TransactionDecorator,
    run_transaction_async,
    transaction,
)

__all__ = ["AsyncStore"]

M = TypeVar("M")
R = TypeVar("R")
P = ParamSpec("P")


class AsyncStore(ShellConfig):
    """The :class:`Store` API for asyncio, over ``redis.asyncio.Redis`` or
    ``redis.asyncio.RedisCluster``: the same methods, sending the same Redis commands,
    awaited. ``scan`` and ``scan_keys`` are async iterators.

    >>> store = AsyncStore.from_url("redis://localhost:6379/0")   # doctest: +SKIP
    >>> await store.save(Hat(color="black", price=49.99))         # doctest: +SKIP
    """

    client: Any

    def __init__(
        self, client: aredis.Redis | AsyncRedisCluster, *, chunk_size: int = 500,
        exactly_once: bool = False, resend: ResendPolicy | None = None,
        registry: bool = True,
    ) -> None:
        check_kind(client, (aredis.Redis, AsyncRedisCluster), "AsyncStore",
                   "a URL makes a store with AsyncStore.from_url(url), "
                   "a sync client with Store(client)")
        super().__init__(client, chunk_size, exactly_once, resend, registry)
        self._link = AsyncLink(client, cluster=self.cluster, policy=self.resend,
                               exactly_once=self.exactly_once)
        self._execute = self._link.execute  # type: ignore[method-assign]  # one call less

    @classmethod
    def from_url(
        cls, url: str | None = None, *, db: int | None = None, cluster: bool = False,
        exactly_once: bool = False, resend: ResendPolicy | None = None,
        registry: bool = True, chunk_size: int = 500, **kwargs: Any,
    ) -> Self:
        """As :meth:`Store.from_url`, with an asyncio client.

        Redis: as Store.from_url"""
        store_args(cluster=cluster, exactly_once=exactly_once, registry=registry,
                   chunk_size=chunk_size, db=db)  # before a cluster client connects
        url, options = url_options(url, db, kwargs, cluster)
        client = (AsyncRedisCluster.from_url(url, **options) if cluster
                  else aredis.Redis.from_url(url, **options))
        return cls(client, chunk_size=chunk_size, exactly_once=exactly_once, resend=resend,
                   registry=registry)

    @classmethod
    def from_env(cls, prefix: str = "REDIS_", *, exactly_once: bool | None = None,
                 resend: ResendPolicy | None = None, registry: bool = True,
                 chunk_size: int = 500, **kwargs: Any) -> Self:
        """As :meth:`Store.from_env`, with an asyncio client.

        Redis: as Store.from_env"""
        flag(exactly_once, "exactly_once", none=True)
        url, settings, cluster = env_settings(prefix=prefix)
        once = env_exactly_once(prefix) if exactly_once is None else exactly_once
        return cls.from_url(url, cluster=cluster, exactly_once=once, resend=resend,
                            registry=registry, chunk_size=chunk_size, **{**settings, **kwargs})

    async def aclose(self) -> None:
        """Close the client's connections, and those its blocking pops opened.

        Redis: none (closes the client's connections)."""
        try:
            await self.client.aclose()
        finally:
            await aclose_blocking_clients(self.client)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- execution ----------------------------------------------------------------

    async def _execute(self, batch: Batch) -> list[Any]:
        return await self._link.execute(batch)

    async def _one(self, one: _single.Answer) -> Any:
        """A single call of a plain hash model or a flat one (redmodel._plans._single):
        as Store._one."""
        batch, answer = one
        got = answer((await self._execute(batch))[0])
        return await self.run(got.plan) if got.__class__ is _single.Then else got

    async def _counted(self, batch: Batch, answer: Callable[[Any], int | None],
                       plan: Callable[[], Plan[int]]) -> int:
        """As Store._counted."""
        await self._link.ready()  # as run does
        total = answer((await self._execute(batch))[0])
        return await self.run(plan()) if total is None else total

    async def run(self, plan: Plan[R]) -> R:
        """Run a plan (the model registry: as :meth:`Store.run` says).

        Redis: as Store.run"""
        await self._link.ready()  # before the plan starts: see _iterate
        return await run_async(plan, self._execute, self.client)

    async def _iterate(self, plan: IterPlan) -> AsyncIterator[Any]:
        """Drive an iteration plan, after making a cluster client ready: a plan may walk
        the store's targets (every primary) before its first round trip, and an asyncio
        cluster client knows its primaries only once it has reached the cluster (see
        redmodel._stores._config.Targets). Every plan this store runs starts here or in
        :meth:`run`."""
        await self._link.ready()
        async for item in iterate_async(plan, self._execute, self.client):
            yield item

    async def run_many(self, *plans: Plan[Any]) -> list[Any]:
        """See :meth:`Store.run_many`.

        Redis: as Store.run_many"""
        return await self.run(gather(plans))

    # ---- the Store API, awaited (see Store for what each sends) ---------------------

    async def save(self, obj: Any, *, ttl: float | dt.timedelta | None = DEFAULT,
                   force: bool = False) -> str:
        """See :meth:`Store.save`.

        Redis: as Store.save"""
        one = _single.save(obj, ttl, force, self._registry.checked, self.client)
        if one is not None:
            return await self._one(one)  # type: ignore[no-any-return]
        return await self.run(self._use(type(obj), _ops.save(obj, ttl, force)))

    async def save_many(
        self, objs: Iterable[Any], *, ttl: float | dt.timedelta | None = DEFAULT,
        chunk_size: int | None = None,
    ) -> int:
        """See :meth:`Store.save_many`.

        Redis: as Store.save_many"""
        plan = _ops.save_many(objs, ttl, self._chunk(chunk_size),
                              ready=self._registry.ready_for)
        return await self.run(plan)

    async def update(self, model: type, id: Any, /, **values: Any) -> bool:
        """See :meth:`Store.update`.

        Redis: as Store.update"""
        one = _single.update(model, id, values, self._registry.checked)
        if one is not None:
            return await self._one(one)  # type: ignore[no-any-return]
        return await self.run(self._use(model, _ops.update(model, id, values)))

    async def incr(self, model: type, id: Any, field: str, amount: float = 1) -> int | float:
        """See :meth:`Store.incr`.

        Redis: as Store.incr"""
        one = _single.incr(model, id, field, amount, self._registry.checked)
        if one is not None:
            new = await self._one(one)
            if new is not None:
                return new  # type: ignore[no-any-return]
            # refused by the short script, nothing written: the counter script says why
            return (await self.run(_atomic.incr_fields(  # type: ignore[no-any-return]
                model, id, {field: amount})))[field]
        return await self.run(self._use(model, _ops.incr(model, id, field, amount)))

    async def incr_fields(
        self, model: type, id: Any, changes: Mapping[str, float], *,
        floor: Mapping[str, float] | None = None, ceiling: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """See :meth:`Store.incr_fields`.

        Redis: as Store.incr_fields"""
        return await self.run(self._use(model, _atomic.incr_fields(
            model, id, changes, floor=floor, ceiling=ceiling)))

    async def delete(self, model: type, id: Any) -> bool:
        """See :meth:`Store.delete`.

        Redis: as Store.delete"""
        one = _single.delete(model, id, self._registry.checked)
        if one is not None:
            return await self._one(one)  # type: ignore[no-any-return]
        return await self.run(self._use(model, _ops.delete(model, id)))

    async def delete_many(self, model: type, ids: Iterable[Any]) -> int:
        """See :meth:`Store.delete_many`.

        Redis: as Store.delete_many"""
        return await self.run(self._use(model, _ops.delete_many(model, ids, self.chunk_size)))

    async def expire(self, model: type, id: Any, ttl: float | dt.timedelta) -> bool:
        """See :meth:`Store.expire`.

        Redis: as Store.expire"""
        return await self.run(self._use(model, _ops.expire(model, id, ttl)))

    async def persist(self, model: type, id: Any) -> bool:
        """See :meth:`Store.persist`.

        Redis: as Store.persist"""
        return await self.run(self._use(model, _ops.persist(model, id)))

    async def get(self, model: type[M], id: Any) -> M | None:
        """See :meth:`Store.get`.

        Redis: as Store.get"""
        one = _single.get(model, id, self._registry.checked)
        if one is not None:
            return await self._one(one)  # type: ignore[no-any-return]
        return await self.run(self._use(model, _ops.get(model, id)))

    async def get_or_raise(self, model: type[M], id: Any) -> M:
        """See :meth:`Store.get_or_raise`.

        Redis: as Store.get_or_raise"""
        return await self.run(self._use(model, _ops.get_or_raise(model, id)))

    async def get_many(self, model: type[M], ids: Iterable[Any]) -> list[M | None]:
        """See :meth:`Store.get_many`.

        Redis: as Store.get_many"""
        return await self.run(self._use(model, _ops.get_many(model, ids, self.chunk_size)))

    async def exists(self, model: type, id: Any) -> bool:
        """See :meth:`Store.exists`.

        Redis: as Store.exists"""
        one = _single.exists(model, id, self._registry.checked)
        if one is not None:
            return await self._one(one)  # type: ignore[no-any-return]
        return await self.run(self._use(model, _ops.exists(model, id)))

    async def pttl(self, model: type, id: Any) -> int | None:
        """See :meth:`Store.pttl`.

        Redis: as Store.pttl"""
        return await self.run(self._use(model, _ops.pttl(model, id)))

    async def ttl(self, model: type, id: Any) -> float | None:
        """See :meth:`Store.ttl`.

        Redis: as Store.ttl"""
        ms = await self.pttl(model, id)
        return None if ms is None else ms / 1000

    def scan_keys(self, model: type, *, count: int = 500) -> AsyncIterator[str]:
        """See :meth:`Store.scan_keys`; an async iterator.

        Redis: as Store.scan_keys"""
        return self._iterate(self._use(model, _ops.scan_keys(model, count, self._targets())))

    def scan(self, model: type[M], *, count: int = 500) -> AsyncIterator[M]:
        """See :meth:`Store.scan`; an async iterator.

        Redis: as Store.scan"""
        return self._iterate(self._use(model, _ops.scan(model, count, self._targets())))

    async def rotate_keys(self, model: type, *, count: int = 500) -> int:
        """See :meth:`Store.rotate_keys`.

        Redis: as Store.rotate_keys"""
        plan = self._use(model, _ops.rotate_keys(model, count, self._targets()))
        return sum([n async for n in self._iterate(plan)])

    async def rotate_index_key(self, model: type, *, count: int = 500,
                               progress: bool | None = None) -> int:
        """See :meth:`Store.rotate_index_key`.

        Redis: as Store.rotate_index_key"""
        shown = Progress(model, progress)
        plan = self._use(model, rotate_index_key(model, count), check_keys=False)
        async for page in self._iterate(plan):
            shown.step(page)
        return shown.finish()

    @overload
    def transaction(
        self, fn: Callable[Concatenate[AsyncTransaction, P], Awaitable[R]], *,
        policy: RetryPolicy | None = None,
    ) -> AsyncTransactionFunction[P, R]: ...
    @overload
    def transaction(
        self, fn: None = None, *, policy: RetryPolicy | None = None
    ) -> TransactionDecorator[_TxAsyncStore]: ...
    def transaction(self, fn: Any = None, *, policy: RetryPolicy | None = None) -> Any:
        """``@astore.transaction`` on an ``async def``: the same as
        ``@redmodel.transaction(astore, ...)``; see docs/transactions.md.

        Redis: as Store.transaction"""
        decorate = transaction(self, policy=policy)
        return decorate(fn) if fn is not None else decorate

    async def transact(self, fn: Callable[Concatenate[AsyncTransaction, P], Awaitable[R]], /,
                       *args: P.args, **kwargs: P.kwargs) -> R:
        """Deprecated alias: ``await astore.transaction(fn)(*args, **kwargs)`` says the
        same. Awaits ``fn(tx, *args, **kwargs)`` as an optimistic transaction with the
        default retry policy and returns its result; warns (DeprecationWarning).

        Redis: as Store.transact"""
        warnings.warn("AsyncStore.transact is deprecated: use "
                      "await astore.transaction(fn)(*args)", DeprecationWarning, stacklevel=2)
        outcome = await run_transaction_async(self, fn, args, kwargs)
        return outcome.value

    def find(self, model: type[M], /, *where: Q, **filters: Any) -> Query[M, AsyncStore]:
        """See :meth:`Store.find`; the query's run methods return coroutines (typed as such:
        ``Query[M, AsyncStore]``).

        Redis: as Store.find"""
        return Query(self, model, Q(*where, **filters))

    async def get_by(self, model: type[M], /, **unique: Any) -> M | None:
        """See :meth:`Store.get_by`.

        Redis: as Store.get_by"""
        return await self.run(self._registry.needing(
            model_spec(model), _registry.get_by_needs(model_spec(model), unique),
            _repair.get_by_plan(model, unique)))

    async def sweep(self, model: type) -> int:
        """See :meth:`Store.sweep`.

        Redis: as Store.sweep"""
        return await self.run(self._use(model, _repair.sweep_plan(model)))

    async def reindex(self, model: type, *, count: int = 500, progress: bool | None = None,
                      restart: bool = False) -> int:
        """See :meth:`Store.reindex`.

        Redis: as Store.reindex"""
        plan = self._use(model, _registry.unmoved(
            model_spec(model), "reindex the model",
            _repair.reindex_plan(model, count, self._targets(), restart)),
            check_keys=False)  # (it enters every blind entry under the newest key)
        line = _repair.ProgressLine(model, progress)
        async for item in self._iterate(plan):
            line.feed(item)
        done = line.finish()
        await self.run(self._registry.mark_ready(model_spec(model)))
        return done

    async def migrate_buckets(self, model: type, *, from_buckets: int | None,
                              count: int = 500, progress: _rebucket.ProgressArg = None) -> int:
        """See :meth:`Store.migrate_buckets`.

        Redis: as Store.migrate_buckets"""
        feed = _rebucket.Feed(model, progress)
        plan = _rebucket.migrate_plan(model, from_buckets, count, self._targets(),
                                      self.cluster, self._registry.enabled)
        async for item in self._iterate(plan):
            answer = feed.feed(item)
            if inspect.isawaitable(answer):
                await answer
        return feed.result

    async def build_index(self, model: type, field: str, *, count: int = 500,
                          progress: bool | None = None) -> int:
        """See :meth:`Store.build_index`.

        Redis: as Store.build_index"""
        _registry.check_declared(model_spec(model), field)
        return await self.reindex(model, count=count, progress=progress)

    async def unregister(self, model: type) -> bool:
        """See :meth:`Store.unregister`.

        Redis: as Store.unregister"""
        return bool(await self.run(self._registry.unregister(model_spec(model))))

    async def adopt(self, model: type) -> None:
        """See :meth:`Store.adopt`.

        Redis: as Store.adopt"""
        if not self._registry.enabled:
            return
        await self.run(self._registry.register(model_spec(model), adopt=True))

    async def drop_index(self, model: type, name: str, *, count: int = 500) -> int:
        """See :meth:`Store.drop_index`.

        Redis: as Store.drop_index"""
        spec = model_spec(model)
        return await self.run(self._use(model, _registry.drop_index_plan(
            spec, name, self._targets(), count)))

    async def verify(self, model: type, *, count: int = 500) -> list[str]:
        """See :meth:`Store.verify`.

        Redis: as Store.verify"""
        plan = self._use(model, _repair.verify_plan(model, count, self._targets()))
        return [p async for p in self._iterate(plan)]

    async def count(self, model: type) -> int:
        """See :meth:`Store.count`.

        Redis: as Store.count"""
        return len([k async for k in self.scan_keys(model)])
