"""``Store``: the synchronous shell over the plans in :mod:`redmodel._plans` (and the
indexes', containers' and transactions' plans): each method builds a plan and runs it
through the store's link (:mod:`redmodel._transport._links`)."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

import redis
from redis.cluster import RedisCluster
from typing_extensions import Self

from redmodel import _rebucket
from redmodel._args import flag
from redmodel._indexes import _registry, _repair
from redmodel._indexes._query import Q, Query
from redmodel._indexes._rotate import Progress, rotate_index_key
from redmodel._models._specs import model_spec
from redmodel._plan import Batch, Plan, gather, iterate_sync, run_sync
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
from redmodel._transport._blocking import close_blocking_clients
from redmodel._transport._links import SyncLink
from redmodel._transport._wire import ResendPolicy
from redmodel.transactions._handles import Store as _TxStore  # transaction()'s protocol
from redmodel.transactions._handles import Transaction
from redmodel.transactions._policy import RetryPolicy
from redmodel.transactions._run import (
    TransactionDecorator,
    TransactionFunction,
    run_transaction,
    transaction,
)

__all__ = ["Store"]

M = TypeVar("M")
R = TypeVar("R")
P = ParamSpec("P")


class Store(ShellConfig):
    """Saves and loads models through a ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    Every method names the Redis commands it sends. Ids are the values of the model's key
    field; keys look like ``hat:56854717``.

    On its first use of a model a store records the model in the model registry
    (``<prefix>:%schema``: one HGETALL when the record matches) and refuses, with
    :class:`SchemaConflictError`, a model whose prefix another model owns or whose change
    would misread the stored objects; later uses send nothing more (docs/migrations.md).
    ``registry=False`` turns this off, for a user the ACL does not grant that key.

    >>> store = Store(redis.Redis(port=...))            # doctest: +SKIP
    >>> store.save(Hat(color="black", price=49.99))     # doctest: +SKIP
    'hat:01jd...'
    """

    client: Any

    def __init__(self, client: redis.Redis | RedisCluster, *, chunk_size: int = 500,
                 exactly_once: bool = False, resend: ResendPolicy | None = None,
                 registry: bool = True) -> None:
        check_kind(client, (redis.Redis, RedisCluster), "Store",
                   "a URL makes a store with Store.from_url(url), "
                   "an asyncio client with AsyncStore(client)")
        super().__init__(client, chunk_size, exactly_once, resend, registry)
        self._link = SyncLink(client, cluster=self.cluster, policy=self.resend,
                              exactly_once=self.exactly_once)
        self._execute = self._link.execute  # type: ignore[method-assign]  # one call less

    @classmethod
    def from_url(
        cls, url: str | None = None, *, db: int | None = None, cluster: bool = False,
        exactly_once: bool = False, resend: ResendPolicy | None = None,
        registry: bool = True, chunk_size: int = 500, **kwargs: Any,
    ) -> Self:
        """A store on ``redis://``, ``rediss://`` or ``unix://`` ``url``; default ``$REDIS_URL``,
        else ``redis://localhost:6379/0``. ``db`` selects the database, and wins over one the
        URL names (its ``/db`` path or ``?db=``). ``cluster=True`` makes a ``RedisCluster`` client
        (the URL names one node). ``exactly_once`` and ``resend`` are the store's options
        (docs/failures.md); ``chunk_size`` and ``registry`` as for the constructor. Extra
        keyword arguments go to redis-py (``username=``, ``password=``, ``ssl_ca_certs=``,
        ``ssl_certfile=``, ``ssl_keyfile=``, ...). A URL redis-py cannot use (scheme, port,
        IPv6 address, query value, a database path that is not a number) raises
        :class:`~redmodel.ValidationError` naming it with its password masked.

        Redis: none (connects lazily)."""
        store_args(cluster=cluster, exactly_once=exactly_once, registry=registry,
                   chunk_size=chunk_size, db=db)  # before a cluster client connects
        url, options = url_options(url, db, kwargs, cluster)
        client = (RedisCluster.from_url(url, **options) if cluster
                  else redis.Redis.from_url(url, **options))
        return cls(client, chunk_size=chunk_size, exactly_once=exactly_once, resend=resend,
                   registry=registry)

    @classmethod
    def from_env(cls, prefix: str = "REDIS_", *, exactly_once: bool | None = None,
                 resend: ResendPolicy | None = None, registry: bool = True,
                 chunk_size: int = 500, **kwargs: Any) -> Self:
        """A store configured by environment variables, as managed services hand them out:
        ``REDIS_URL``, or ``REDIS_ENDPOINT``/``REDIS_PORT``/``REDIS_DB``,
        ``REDIS_USERNAME``/``REDIS_PASSWORD``, ``REDIS_TLS`` and ``REDIS_CA_FILE``/
        ``REDIS_CERT_FILE``/``REDIS_KEY_FILE``, ``REDIS_CLUSTER`` and
        ``REDIS_EXACTLY_ONCE``. See docs/deploy.md and docs/failures.md. A switch that is
        not 1/true/yes/on or 0/false/no/off/empty, a port or database that is not a number
        raises :class:`~redmodel.ValidationError` naming the variable.

        Redis: none (connects lazily)."""
        flag(exactly_once, "exactly_once", none=True)
        url, settings, cluster = env_settings(prefix=prefix)
        once = env_exactly_once(prefix) if exactly_once is None else exactly_once
        return cls.from_url(url, cluster=cluster, exactly_once=once, resend=resend,
                            registry=registry, chunk_size=chunk_size, **{**settings, **kwargs})

    def close(self) -> None:
        """Close the client's connections, and those its blocking pops opened.

        Redis: none (closes the client's connections)."""
        try:
            self.client.close()
        finally:
            close_blocking_clients(self.client)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- execution ----------------------------------------------------------------

    def _execute(self, batch: Batch) -> list[Any]:
        return self._link.execute(batch)

    def _one(self, one: _single.Answer) -> Any:
        """A single call of a plain hash model or a flat one (redmodel._plans._single):
        its one batch, sent as the plan would send it, and the answer its reply gives (or
        what the rest of the plan it names gives)."""
        batch, answer = one
        got = answer(self._execute(batch)[0])
        return self.run(got.plan) if got.__class__ is _single.Then else got

    def _counted(self, batch: Batch, answer: Callable[[Any], int | None],
                 plan: Callable[[], Plan[int]]) -> int:
        """A query count Redis answers in one script call (Query._native_count): the
        plan's first batch, sent alone; when its reply is no native count, the plan runs
        from its start."""
        total = answer(self._execute(batch)[0])
        return self.run(plan()) if total is None else total

    def run(self, plan: Plan[R]) -> R:
        """Run a plan (used by the methods below, and by extensions).

        The plans of redmodel's public ``*_plan`` methods (a query's ``count_plan``,
        ``ids_plan``...; a container's) check the model registry themselves, as the
        methods do: the first one of a model registers it (or raises
        SchemaConflictError), and a query plan raises IndexNotReadyError for an index
        that is not ready. A plan a program builds from redmodel's private operations
        (``redmodel._plans``) does not name its model, so it bypasses the registry: use the
        store's methods, or run any of them once first (``store.count(Model)``); so does a
        query plan run by a transaction's ``tx.query``. Something that is no plan (None, a
        str), or a plan yielding something that is no batch, raises ValidationError; that
        is not sent.

        Redis: any command the plan's batches hold (each batch one round trip, pipelined).
        """
        return run_sync(plan, self._execute, self.client)

    def run_many(self, *plans: Plan[Any]) -> list[Any]:
        """Run several plans (the ``*_plan`` methods of containers, queries' plans)
        pipelined: each round trip carries every plan's next commands. Returns their
        results in order. A plan that fails does not stop the others: each runs to its
        end, then the first OutcomeUnknownError among the failures, else the first
        failure, is raised, its ``results`` what each plan came to (its result or its
        exception, in plan order; never shown nor pickled). A round that fails for one
        plan gives each other plan what it would get alone about its own commands: its
        replies when they all answered, an OutcomeUnknownError naming its own keys when
        one of its writes may or may not have run (a write that may be sent twice
        counts when its reply was lost and its connection could not be fenced: a copy
        may land later; writes under write ids beside it are still sent again or fenced
        and answer as alone), else a plain connection error (nothing of its writes ran
        or can land later). A read whose reply was lost is sent again as alone (no fence,
        whatever writes share its round) and fails only plainly, when it would alone.
        The raised error is plain only when no write of any plan that must not run twice
        was applied (else an OutcomeUnknownError naming the keys the failed plans write:
        never a read's). Every argument must be a plan, checked before any starts
        (ValidationError, nothing sent)::

            store.run_many(ips.push_plan(addr), visits.incr_plan(addr), seen.add_plan(day))

        Redis: any command the plans' batches hold, pipelined together (LLEN, SCARD, RPUSH,
        INCRBY, EVALSHA of a script, ...).
        """
        return self.run(gather(plans))

    # ---- writes -------------------------------------------------------------------

    def save(self, obj: Any, *, ttl: float | dt.timedelta | None = DEFAULT,
             force: bool = False) -> str:
        """Store ``obj`` whole and return its key.

        Sends HSET alone when that is all it takes; else one EVALSHA of a script that runs
        HSET, HDEL of the fields that are None and PEXPIRE (when a TTL applies) atomically.
        ``ttl`` defaults to the model's; ``None`` sends no expiry command, so an expiry the
        key already has is kept.
        Raises :class:`ValidationError` before sending anything if a value does not fit.

        A model with ``track_changes`` (every indexed model) saves an object loaded by
        ``get`` by sending only the fields whose value changed since (HSET of those, HDEL
        of those that became None; stored bytes that are another text of the object's
        value, such as a set's member order, are no change; a TTL is set by the same
        script), so two writers of different fields both keep theirs;
        ``force=True`` saves it whole, and so does a save to another key than it was
        loaded from (its id changed) or through a store with another client (another
        database or server, an AsyncStore; two stores built on one client count as
        one). An indexed model's save is one call of the index write script that also
        updates its index entries and checks unique values (UniqueViolationError,
        nothing written); a bucketed model's unique values are claimed by separate
        scripts around it.

        Redis: hash layout: HSET alone, or EVALSHA hash_save.lua (HSET, HDEL of the None
        fields, PEXPIRE of a TTL); an object loaded by get and changed since: EVALSHA
        hash_update.lua of the changed fields and PEXPIRE of a TTL (then the whole save if
        it was deleted meanwhile). Indexed model: EVALSHA index_write.lua (sent again with
        more KEYS when its first answer names keys it needs); with unique fields on a
        bucketed model, EVALSHA claim.lua before it and claim_confirm.lua,
        claim_release.lua or claim_restore.lua after it. Flat layout: EVALSHA
        flat_save.lua. Blob layout: SET (PX or KEEPTTL)."""
        one = _single.save(obj, ttl, force, self._registry.checked, self.client)
        if one is not None:
            return self._one(one)  # type: ignore[no-any-return]
        return self.run(self._use(type(obj), _ops.save(obj, ttl, force)))

    def save_many(
        self,
        objs: Iterable[Any],
        *,
        ttl: float | dt.timedelta | None = DEFAULT,
        chunk_size: int | None = None,
    ) -> int:
        """Store many objects (of any models), pipelined: one round trip per chunk of
        ``chunk_size`` objects (default the store's, 500); returns the count saved.

        The input is read, encoded and sent chunk by chunk, so memory stays bounded by the
        chunk size for any number of objects. A sequence (list, tuple) is validated whole
        before the first chunk is sent: one bad object in it and nothing is written. Any
        other iterable (a generator) is validated chunk by chunk: a bad object refuses its
        chunk after the earlier chunks were written, and the error's ``.written`` lists
        those, ``.not_written`` its chunk (the objects after it are not read). A refusal by
        the server stops the call after its chunk, with the same two lists.

        Redis: as save, pipelined, one round trip per chunk: hash layout: HSET alone, or
        EVALSHA hash_save.lua (HSET, HDEL of the None fields, PEXPIRE of a TTL). Indexed
        model: the objects of one bucket in one EVALSHA index_write_many.lua per chunk
        (an object alone in its bucket, or that call answers KEYS or LATER for: EVALSHA
        index_write.lua, sent again with more KEYS when its first answer names keys it
        needs); with unique fields on a bucketed model, EVALSHA claim.lua before it and
        claim_confirm.lua, claim_release.lua or claim_restore.lua after it. Flat layout:
        the objects of one slot in one EVALSHA flat_save_many.lua per chunk (those it
        answers KEYS or LATER for are sent again, together, or alone as EVALSHA
        flat_save.lua). Blob layout: SET (PX or KEEPTTL)."""
        plan = _ops.save_many(objs, ttl, self._chunk(chunk_size),
                              ready=self._registry.ready_for)
        return self.run(plan)

    def update(self, model: type, id: Any, /, **values: Any) -> bool:
        """Set some fields of a stored object without reading it; ``None`` removes a field.

        One script call (HSET/HDEL inside it, only if the key exists; on an indexed model
        the index write script, which also moves the entries). Returns False and writes
        nothing when there is no such object.

        Redis: hash layout: EVALSHA hash_update.lua; indexed model: EXISTS first when it has
        unique claims, then EVALSHA index_write.lua (sent again with more KEYS when its
        first answer names keys it needs) and a bucketed model's claim.lua,
        claim_confirm.lua, claim_release.lua or claim_restore.lua."""
        one = _single.update(model, id, values, self._registry.checked)
        if one is not None:
            return self._one(one)  # type: ignore[no-any-return]
        return self.run(self._use(model, _ops.update(model, id, values)))

    def incr(self, model: type, id: Any, field: str, amount: float = 1) -> int | float:
        """Add ``amount`` to an int or float field atomically; returns the new value.

        One script call: on the hash layout HINCRBY (int) or HINCRBYFLOAT (float) if the
        object exists. An int field of an unindexed model goes by a short script
        (HINCRBY, then HGET of the exact new value); anything it refuses, having written
        nothing, and every other field go by the same script as :meth:`incr_fields`.
        ``field`` may be a dotted path into a nested object (``"address.zip"``).
        Raises ValidationError for a non-numeric field, NotFoundError if the object is
        missing.

        Redis: hash layout: EVALSHA incr_one.lua for an int field, then EVALSHA
        incr_fields.lua if it refused (missing object, a stored value that is no 64-bit
        int, a sum beyond 64 bits); EVALSHA incr_fields.lua (HINCRBY or HINCRBYFLOAT
        inside) for a float or renamed field; indexed model: EVALSHA index_write.lua
        (sent again with more KEYS when its first answer names keys it needs); flat
        layout: EVALSHA flat_incr.lua."""
        one = _single.incr(model, id, field, amount, self._registry.checked)
        if one is not None:
            new = self._one(one)
            if new is not None:
                return new  # type: ignore[no-any-return]
            # refused by the short script, nothing written: the counter script says why
            return self.run(_atomic.incr_fields(model, id, {field: amount}))[field]  # type: ignore[no-any-return]
        return self.run(self._use(model, _ops.incr(model, id, field, amount)))

    def incr_fields(
        self,
        model: type,
        id: Any,
        changes: Mapping[str, float],
        *,
        floor: Mapping[str, float] | None = None,
        ceiling: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Add ``changes`` to several numeric fields at once, all or nothing, with bounds:
        the hot-key alternative to an optimistic transaction (no retries)::

            store.incr_fields(Hat, id, {"quantity": -1, "npurchased": 1},
                              floor={"quantity": 0})

        One script call: the script checks the object exists and that every bounded field
        stays within ``floor``/``ceiling`` after the change, then runs HINCRBY /
        HINCRBYFLOAT for each (on an indexed model the index write script does it and
        moves the entries too). Returns the new values. Raises
        :class:`ConditionFailedError` (nothing changed) when a bound would be crossed,
        :class:`NotFoundError` when the object is missing. Hash layout only.

        Redis: hash layout: EVALSHA incr_fields.lua; indexed model: HMGET of its
        equality-indexed ints among the fields (when there are some), then EVALSHA
        index_write.lua (sent again with more KEYS when its first answer names keys it
        needs)."""
        return self.run(self._use(model, _atomic.incr_fields(model, id, changes, floor=floor,
                                                             ceiling=ceiling)))

    @overload
    def transaction(
        self, fn: Callable[Concatenate[Transaction, P], R], *, policy: RetryPolicy | None = None
    ) -> TransactionFunction[P, R]: ...
    @overload
    def transaction(
        self, fn: None = None, *, policy: RetryPolicy | None = None
    ) -> TransactionDecorator[_TxStore]: ...
    def transaction(
        self, fn: Callable[..., Any] | None = None, *, policy: RetryPolicy | None = None
    ) -> Any:
        """``@store.transaction`` / ``@store.transaction(policy=...)``: the same as
        ``@redmodel.transaction(store, ...)``; see docs/transactions.md.

        Redis: none (decorates; the function sends when called, as transact)."""
        decorate = transaction(self, policy=policy)
        return decorate(fn) if fn is not None else decorate

    def transact(self, fn: Callable[Concatenate[Transaction, P], R], /, *args: P.args,
                 **kwargs: P.kwargs) -> R:
        """Deprecated alias: ``store.transaction(fn)(*args, **kwargs)`` says the same (one
        name per idea). Runs ``fn(tx, *args, **kwargs)`` as an optimistic transaction with
        the default retry policy and returns its result; warns (DeprecationWarning).

        Redis: WATCH and the function's reads (HGETALL, EXISTS, HGET, ...), then MULTI, its
        queued writes (HSET, DEL, EVALSHA of a write script, *.lua, ...) and EXEC; UNWATCH
        when it gives up. Each :class:`Transaction` method names its own commands."""
        warnings.warn("Store.transact is deprecated: use store.transaction(fn)(*args)",
                      DeprecationWarning, stacklevel=2)
        return run_transaction(self, fn, args, kwargs).value

    def delete(self, model: type, id: Any) -> bool:
        """Delete the object (and its index entries); True if it existed.

        Redis: DEL (hash and blob layouts); EVALSHA flat_delete.lua (flat layout); indexed
        model: EVALSHA index_write.lua (sent again with more KEYS when its first answer
        names keys it needs), then EVALSHA claim_release.lua of a bucketed model's unique
        claims."""
        one = _single.delete(model, id, self._registry.checked)
        if one is not None:
            return self._one(one)  # type: ignore[no-any-return]
        return self.run(self._use(model, _ops.delete(model, id)))

    def delete_many(self, model: type, ids: Iterable[Any]) -> int:
        """Delete many objects: one command per object (DEL, or the layout's or the index's
        delete script; an indexed model's objects of one bucket in one call of the batch
        index script), pipelined, one round trip per chunk of the store's ``chunk_size``;
        returns how many existed. When the connection fails after part of the call was
        deleted (an earlier chunk, another node's part), the error is
        :class:`OutcomeUnknownError` with ``.written``/``.not_written`` per object, never
        a plain ``redis.ConnectionError`` (which means nothing was deleted). A list, tuple
        or set of ids is checked whole (a bad id: ValidationError, nothing deleted); a
        generator is read a chunk at a time (memory bounded by ``chunk_size``), each
        chunk checked before it is sent, so a bad id stops the call after the earlier
        chunks were deleted (ValidationError; ``.written`` names them).

        Redis: one command per object, pipelined, one round trip per chunk: DEL, EVALSHA
        flat_delete.lua, or for an indexed model EVALSHA index_write_many.lua per bucket
        and chunk (again with more KEYS when asked; EVALSHA index_write.lua for an object
        alone in its bucket or answered LATER) and claim_release.lua of a bucketed model's
        claims."""
        return self.run(self._use(model, _ops.delete_many(model, ids, self.chunk_size)))

    def expire(self, model: type, id: Any, ttl: float | dt.timedelta) -> bool:
        """The object expires in ``ttl`` seconds; False if it does not exist.

        Redis: PEXPIRE (hash and blob layouts); EVALSHA flat_expire.lua (flat layout);
        indexed model: EVALSHA index_write.lua (sent again with more KEYS when its first
        answer names keys it needs)."""
        return self.run(self._use(model, _ops.expire(model, id, ttl)))

    def persist(self, model: type, id: Any) -> bool:
        """Remove the object's expiry; False if it had none or does not exist.

        Redis: PERSIST (hash and blob layouts); EVALSHA flat_expire.lua (flat layout);
        indexed model: EVALSHA index_write.lua (sent again with more KEYS when its first
        answer names keys it needs)."""
        return self.run(self._use(model, _ops.persist(model, id)))

    # ---- reads --------------------------------------------------------------------

    def get(self, model: type[M], id: Any) -> M | None:
        """The object, or None if there is none.

        Raises :class:`DecodeError`, naming key and field, if stored data does not fit.

        Redis: HGETALL (hash layout), EVALSHA flat_get.lua (flat layout) or GET (blob
        layout)."""
        one = _single.get(model, id, self._registry.checked)
        if one is not None:
            return self._one(one)  # type: ignore[no-any-return]
        return self.run(self._use(model, _ops.get(model, id)))  # type: ignore[no-any-return]

    def get_or_raise(self, model: type[M], id: Any) -> M:
        """Like :meth:`get`, but raises :class:`NotFoundError` when missing.

        Redis: HGETALL (hash layout), EVALSHA flat_get.lua (flat layout) or GET (blob
        layout)."""
        return self.run(self._use(model, _ops.get_or_raise(model, id)))  # type: ignore[no-any-return]

    def get_many(self, model: type[M], ids: Iterable[Any]) -> list[M | None]:
        """The objects, one read per id, pipelined in chunks; None where one is missing.
        ``ids`` is read a chunk at a time (a generator is not drawn whole first).

        Redis: HGETALL (hash layout), EVALSHA flat_get.lua (flat layout) or GET (blob
        layout) per id, pipelined, one round trip per chunk."""
        return self.run(self._use(model, _ops.get_many(model, ids, self.chunk_size)))

    def exists(self, model: type, id: Any) -> bool:
        """EXISTS.

        Redis: EXISTS."""
        one = _single.exists(model, id, self._registry.checked)
        if one is not None:
            return self._one(one)  # type: ignore[no-any-return]
        return self.run(self._use(model, _ops.exists(model, id)))

    def pttl(self, model: type, id: Any) -> int | None:
        """PTTL: milliseconds until the object expires, None if it never does.
        Raises NotFoundError if it does not exist.

        Redis: PTTL."""
        return self.run(self._use(model, _ops.pttl(model, id)))

    def ttl(self, model: type, id: Any) -> float | None:
        """Seconds (with millisecond precision, from PTTL) until expiry; None if never.

        Redis: PTTL."""
        ms = self.pttl(model, id)
        return None if ms is None else ms / 1000

    # ---- iteration ----------------------------------------------------------------

    def scan_keys(self, model: type, *, count: int = 500) -> Iterator[str]:
        """Every key of the model's objects: SCAN with MATCH ``prefix:*`` and TYPE on the
        server (on every primary of a cluster), never KEYS. Like SCAN, may yield a key
        twice if the keyspace is rehashed meanwhile.

        Redis: SCAN with MATCH and TYPE, page by page (on every primary of a cluster)."""
        return iterate_sync(self._use(model, _ops.scan_keys(model, count, self._targets())),
                            self._execute, self.client)

    def scan(self, model: type[M], *, count: int = 500) -> Iterator[M]:
        """Every stored object of the model: SCAN pages, each followed by one pipelined
        round trip of reads (HGETALL, GET, or the flat read script). Objects deleted
        meanwhile are skipped.

        Redis: SCAN with MATCH and TYPE, each page followed by one pipelined round trip of
        HGETALL (hash layout), EVALSHA flat_get.lua (flat layout) or GET (blob layout)."""
        return iterate_sync(self._use(model, _ops.scan(model, count, self._targets())),
                            self._execute, self.client)

    def rotate_keys(self, model: type, *, count: int = 500) -> int:
        """Re-encrypt every stored value of the model that a ``fernet`` chain wrote under an
        older key; returns how many values were rewritten. Objects stay readable throughout
        (every configured key decrypts).

        Per SCAN page: one pipelined read (HGETALL / GET / the flat read script) and one
        pipelined compare-and-set script per changed value, so a value written meanwhile
        by someone else is left alone (it is already under the newest key).

        Redis: SCAN pages; for a model with fernet chains, per page one pipelined read
        (HGETALL, GET or EVALSHA flat_get.lua) and one EVALSHA hash_cas_field.lua or
        string_cas.lua per changed value."""
        plan = self._use(model, _ops.rotate_keys(model, count, self._targets()))
        return sum(iterate_sync(plan, self._execute, self.client))

    def rotate_index_key(self, model: type, *, count: int = 500,
                         progress: bool | None = None) -> int:
        """Move the model's blind-index entries to the newest index key (see
        ``configure_index_keys``); returns how many objects were rebuilt, or dropped
        because they are gone (no key, or a key of another type, which is left alone):
        0 only when no entry names a key id it should not. Lookups try every configured
        key meanwhile, so queries keep working; run it again after dropping an old key to
        drop that key's entries too.

        First it sweeps expired objects' entries (as :meth:`sweep`). Then per bucket: HSCAN
        of the index records (COUNT ``count``); for the objects with an
        entry under another key, one pipelined read (HGETALL), one index write script
        each (entries only, the object is not rewritten), written only if the object's
        indexed fields still hold what was read (else read again: as :meth:`reindex`).
        Safe to stop and run again. ``progress`` prints a counter on
        stderr (default: when stderr is a terminal). A whole run under one key
        configuration records in the model's registry record that every entry is under
        the newest key, so a process without the older keys is no longer refused
        (docs/codecs.md, "Which keys the data is under"); this is also how a record
        naming keys that are lost is repaired, so this call is not refused for them.

        Redis: EVALSHA registry_keys.lua (the newest key's id recorded first), then
        EVALSHA index_sweep.lua per bucket (as sweep), then HSCAN of the index
        records per bucket; for the objects with an entry under another key, one pipelined
        TYPE and HGET of its record, then (hashes) one pipelined HGETALL with the HGET of
        its record and its PTTL, EVALSHA index_write.lua each (again after another
        HGETALL, HGET and PTTL for an object changed meanwhile), and (the others)
        EVALSHA index_write.lua forgetting it. A bucketed model: then HSCAN of each claim
        hash of a blind unique constraint, claim_drop.lua for a gone owner's claims under
        a key id no longer configured; EVALSHA registry_keys.lua at the end. Nothing for
        a model without blind indexes."""
        shown = Progress(model, progress)
        plan = self._use(model, rotate_index_key(model, count), check_keys=False)
        for page in iterate_sync(plan, self._execute, self.client):
            shown.step(page)
        return shown.finish()

    # ---- queries and indexes (docs/queries.md) ------------------------------------------

    def find(self, model: type[M], /, *where: Q, **filters: Any) -> Query[M, Store]:
        """A query over the model's indexes: ``find(Hat, color="black", price=lt(50))``,
        ``find(Hat, Q(color="black") | Q(style="fitted"))``. Nothing is sent until it
        runs (``.all()``, ``.count()``, ...); bad queries raise QueryError here.

        Redis: none (the query sends when it runs)."""
        return Query(self, model, Q(*where, **filters))

    def get_by(self, model: type[M], /, **unique: Any) -> M | None:
        """The object holding these unique values (one unique constraint, all its
        fields): HGET of the unique index (or claim), then HGETALL of its owner, which
        must still hold the values (a stale entry finds None, as does an owner whose key
        now holds another type: no object).

        Redis: HGET of the unique index HASH, then HGETALL of its owner (indexes need the
        hash layout)."""
        return self.run(self._registry.needing(
            model_spec(model), _registry.get_by_needs(model_spec(model), unique),
            _repair.get_by_plan(model, unique)))

    def sweep(self, model: type) -> int:
        """Drop the index entries of expired objects now (queries also do it): per
        bucket, one EVALSHA naming the expired ids, one dropping their entries (every key
        declared), repeated per 200 ids; returns how many objects' entries were dropped,
        also when a reply was lost and the call resent (the dropping call keeps its reply
        in a memo its resend answers from: docs/failures.md, "Resent maintenance calls").

        Redis: EVALSHA index_sweep.lua per bucket, again per 200 expired ids (the dropping
        call under a memo: GET/SET of ``<index root>memo:<token>``)."""
        return self.run(self._use(model, _repair.sweep_plan(model)))

    def reindex(self, model: type, *, count: int = 500, progress: bool | None = None,
                restart: bool = False) -> int:
        """Rebuild the model's index from its stored objects, and return how many objects
        the index holds when it ends. Objects are never rewritten. Four passes, each a
        SCAN (or HSCAN/ZSCAN) a page of ``count`` at a time: convert an index from the
        format of older versions; rebuild every object's entries and its unique claims;
        drop what the index holds of objects that are gone (a raw DEL, a restore from an
        older snapshot); drop entries no object holds (a stale member of an equality set,
        a wrong score). Writes may go on meanwhile: every fix is a script that checks
        again first, and an object's entries are written only if its indexed fields still
        hold what was read (one a writer changed in between is read again, up to 4 times,
        then left to its writers, logged); a deleted or expired object gets nothing back
        (docs/queries.md says exactly what holds).

        Its progress is kept in Redis (``<prefix>:%idx:reindex``, for a week): after a run
        that stopped, the next goes through every pass again but takes up the interrupted
        pass where it stopped (docs/queries.md says what that misses); ``restart=True``
        starts over. ``progress`` prints a counter on stderr (default: when stderr is a
        terminal). What it cannot fix (two objects with one unique value, a value no index
        can hold, a wrong-typed index key) is logged on the ``redmodel.index`` logger, and
        :meth:`verify` lists it; so is what it set right. Its repair calls (index_fix,
        ids_convert's fix, mend and drop, claim_drop) keep their replies in a memo that a
        resend after a lost reply answers from, so the lines logged and the count are those
        of a run without the fault (docs/failures.md, "Resent maintenance calls").

        Refused with :class:`SchemaConflictError` while a bucket move
        (:meth:`migrate_buckets`) is under way.

        Redis: HGETALL of the registry's record, TYPE of the index keys and GET/SET/DEL of
        its progress key, SCAN, HSCAN,
        SSCAN and ZSCAN pages, HGETALL, HGET, PTTL, EXISTS, ZSCORE, SISMEMBER, GET reads,
        EVALSHA ids_convert.lua, ids_read.lua, index_write.lua, index_fix.lua, index_sweep.lua and
        claim_drop.lua (the repairs under a memo: TYPE, GET and SET of
        ``<index root>memo:<token>``), and EVALSHA registry_state.lua at the end. A model
        with a blind index: EVALSHA registry_keys.lua first (the newest key's id recorded
        beside the others) and again at the end, when the run takes up no stopped one and
        passed over no object (it records that every entry is under the newest key).
        Like :meth:`rotate_index_key`, not refused for the index keys the model's record
        names (docs/codecs.md, "Which keys the data is under")."""
        plan = self._use(model, _registry.unmoved(
            model_spec(model), "reindex the model",
            _repair.reindex_plan(model, count, self._targets(), restart)),
            check_keys=False)  # (it enters every blind entry under the newest key)
        line = _repair.ProgressLine(model, progress)
        for item in iterate_sync(plan, self._execute, self.client):
            line.feed(item)
        done = line.finish()
        self.run(self._registry.mark_ready(model_spec(model)))
        return done

    def migrate_buckets(self, model: type, *, from_buckets: int | None, count: int = 500,
                        progress: _rebucket.ProgressArg = None) -> int:
        """Move the model's objects stored with ``from_buckets`` buckets (None: plain keys)
        to the bucket count the model declares now (None turns buckets off), and return
        how many objects were moved. An offline step: stop every process that uses the
        model first; while it runs the model registry marks the prefix ``moving`` and a
        store's first use of the model raises :class:`SchemaConflictError`.

        A page of ``count`` objects at a time (SCAN): on one server one script per page
        renames every key of each object (TTLs kept), each object whole; on a cluster each
        object is copied (DUMP/RESTORE), then its old keys deleted by a script that checks
        they did not change. Then the old buckets' index keys are deleted, the indexes
        rebuilt in the new buckets (a :meth:`reindex`), and the registry records the new
        count. Its progress is kept in Redis (``<prefix>:%rebucket``) after each page: run
        it again after a stop and it goes on, doing at most one page again. ``progress``
        is called with ``(done, total)`` after each page (or True/None: a counter on
        stderr, as for :meth:`reindex`). Bad input (``from_buckets`` equal to the model's
        or not what the registry records, nothing stored) raises before any write. The
        count is exact also when a page's reply was lost and resent: each move keeps its
        reply in a memo its resend answers from (docs/failures.md, "Resent maintenance
        calls"). See docs/migrations.md.

        Redis: TYPE and GET of the progress key, HGETALL of the registry's record, HSET of its
        ``moving`` and ``version`` fields; SCAN pages, EVALSHA rebucket.lua per page (a
        cluster: DUMP, PTTL and RESTORE of each object first; under a memo: TYPE, GET and
        SET of ``<prefix>:%idx:memo:<token>``), SET of the progress after
        each; at the end (for an indexed model after DEL of the old buckets' index keys
        and the commands of :meth:`reindex`) MULTI, HSET/HDEL of the record (the new
        count and version, ``moving`` removed), EXEC, and DEL of the progress key."""
        feed = _rebucket.Feed(model, progress)
        plan = _rebucket.migrate_plan(model, from_buckets, count, self._targets(),
                                      self.cluster, self._registry.enabled)
        for item in iterate_sync(plan, self._execute, self.client):
            feed.feed(item)
        return feed.result

    def build_index(self, model: type, field: str, *, count: int = 500,
                    progress: bool | None = None) -> int:
        """Build an index the model registry records as ``building`` (one added to a model
        whose objects were stored before it; queries that need it raise
        :class:`IndexNotReadyError` until then): a :meth:`reindex` of the model, which
        builds every index it declares, then marks them ready in the registry (the
        compare-and-set script on ``<prefix>:%schema``). ``field`` names a field index or a
        unique constraint (``"color,style"``) of the model. Returns how many objects were
        indexed. Writes may go on meanwhile, as for :meth:`reindex`. See
        docs/migrations.md.

        Redis: as reindex (TYPE, GET, SET, DEL, SCAN, HSCAN, SSCAN, ZSCAN, HGETALL,
        HGET, PTTL, EXISTS, ZSCORE, SISMEMBER, EVALSHA ids_convert.lua, ids_read.lua,
        index_write.lua, index_fix.lua, index_sweep.lua, claim_drop.lua), then EVALSHA
        registry_state.lua marking the index ready."""
        _registry.check_declared(model_spec(model), field)
        return self.reindex(model, count=count, progress=progress)

    def unregister(self, model: type) -> bool:
        """Delete the model's record from the model registry (DEL ``<prefix>:%schema``; the
        container registry's ``container:<key>`` fields stay), for a model whose objects are
        all gone (a test's or an example's tear-down); this store forgets it checked the
        model, and the next first use records it again. Returns whether there was a record,
        at its mark, whatever reply was lost: the record is first marked with a token of
        this call (answering whether there was one; a resend after a lost or cut reply
        finds the token and answers as its first run did), then deleted if it is still
        marked, by this call or another ``unregister`` (a registration since the marks
        clears them and stays). Two ``unregister`` calls racing on one prefix may both
        return True; one whose mark was resent after the other deleted the record returns
        False (docs/migrations.md).

        Refused with :class:`SchemaConflictError` while a bucket move
        (:meth:`migrate_buckets`) is under way: its ``moving`` mark keeps the prefix refused.

        Redis: EVALSHA registry_unregister.lua twice (HSET of the call's token in
        <prefix>:%schema, then its DEL while it holds a token, unless it holds
        ``moving``)."""
        return bool(self.run(self._registry.unregister(model_spec(model))))

    def adopt(self, model: type) -> None:
        """Make ``model`` the owner of its prefix in the model registry, replacing the
        model recorded there: for a model class that was renamed or moved to another module
        (the registry knows a model by its module-qualified name). Changes that would
        misread the stored objects are still refused (SchemaConflictError), and so is any
        change while a bucket move (:meth:`migrate_buckets`) is under way. Sends the
        registry's HGETALL and, if anything changes, its compare-and-set script.

        Redis: HGETALL of <prefix>:%schema; EVALSHA registry.lua when the record changes."""
        if not self._registry.enabled:
            return
        self.run(self._registry.register(model_spec(model), adopt=True))

    def drop_index(self, model: type, name: str, *, count: int = 500) -> int:
        """Delete an index the model no longer declares: its entry keys (DEL of the range
        ZSET and unique HASH per bucket, SCAN with TYPE set for its equality SETs, then DEL),
        its lines in each object's index record (HSCAN of the records, one EVALSHA per page
        rewriting the records that hold some) and its state in the model registry (HDEL);
        when the model declares no index any more, also its all-ids index, records and
        expiry index (DEL).
        ``name`` is a field name or a unique constraint's (``"color,style"``). Raises
        :class:`ValidationError` while the model still declares it, and
        :class:`SchemaConflictError` while a bucket move (:meth:`migrate_buckets`) is
        under way. Returns how many entry keys were deleted. See docs/migrations.md.

        Redis: HGETALL of the registry's record, DEL of the range ZSET and unique HASH per
        bucket, SCAN with MATCH and TYPE
        for the equality SETs then DEL, HSCAN of the records and EVALSHA index_droplines.lua
        per page, then EVALSHA registry_state.lua deleting its state from the registry
        (and giving the record a new version) (HGETALL, EVALSHA registry_state.lua when
        other states change)."""
        spec = model_spec(model)
        return self.run(self._use(model, _registry.drop_index_plan(spec, name, self._targets(),
                                                                   count)))

    def verify(self, model: type, *, count: int = 500) -> list[str]:
        """Every disagreement between the stored objects and their index, in words (an
        empty list when all agree), both ways: each object's entries exist and match
        (equality, range, unique, record, all-ids), and every entry points at an existing
        object that holds it. Reads only: the same passes as :meth:`reindex`.

        Redis: reads only: TYPE of the index keys, SCAN, HSCAN, SSCAN, ZSCAN pages, HGETALL,
        HGET, PTTL, EXISTS, ZSCORE, SISMEMBER, GET, and the read-only scripts of the all-ids pages
        (EVALSHA ids_read.lua: membership and walks; ids_convert.lua in its ``count`` mode:
        the count against the pages' sizes)."""
        return list(iterate_sync(
            self._use(model, _repair.verify_plan(model, count, self._targets())),
            self._execute, self.client))

    def count(self, model: type) -> int:
        """How many objects the model has: a full SCAN, O(N) in the keyspace.

        Redis: SCAN with MATCH and TYPE, page by page (on every primary of a cluster)."""
        return sum(1 for _ in self.scan_keys(model))
