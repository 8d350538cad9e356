"""``Store``: the synchronous shell over the plans in ``_ops``."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import redis
from redis.exceptions import NoScriptError

from redmodel import _atomic, _ops, _tx
from redmodel._ops import DEFAULT
from redmodel._plan import Batch, Plan, as_eval, run_sync
from redmodel._schema import spec_of
from redmodel._tx import RetryPolicy

__all__ = ["Store"]

M = TypeVar("M")
R = TypeVar("R")

DEFAULT_URL = "redis://localhost:6379/0"


def check_client(client: Any) -> None:
    """Refuse clients that decode replies: stored bytes fields would be corrupted."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if kwargs.get("decode_responses") or (getattr(client, "get_encoder", None) and getattr(
        client.get_encoder(), "decode_responses", False
    )):
        raise ValueError(
            "redmodel needs a client with decode_responses=False: it decodes every field "
            "itself, by its declared type"
        )


class Store:
    """Saves and loads models through a ``redis.Redis`` client.

    Every method names the Redis commands it sends. Ids are the values of the model's key
    field; keys look like ``hat:56854717``.

    >>> store = Store(redis.Redis(port=...))            # doctest: +SKIP
    >>> store.save(Hat(color="black", price=49.99))     # doctest: +SKIP
    'hat:01jd...'
    """

    def __init__(self, client: redis.Redis, *, chunk_size: int = 500) -> None:
        check_client(client)
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.client = client
        self.chunk_size = chunk_size

    @classmethod
    def from_url(cls, url: str | None = None, *, db: int | None = None, **kwargs: Any) -> Store:
        """A store on ``redis://``, ``rediss://`` or ``unix://`` ``url``; default ``$REDIS_URL``,
        else ``redis://localhost:6379/0``. Extra keyword arguments go to redis-py
        (``password=``, ``username=``, ``ssl_ca_certs=``, ...)."""
        url = url or os.environ.get("REDIS_URL") or DEFAULT_URL
        if db is not None:
            kwargs["db"] = db
        kwargs.setdefault("decode_responses", False)
        return cls(redis.Redis.from_url(url, **kwargs))

    def __repr__(self) -> str:
        return f"Store({self.client!r})"

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- execution ----------------------------------------------------------------

    def _execute(self, batch: Batch) -> list[Any]:
        cmds = batch.commands
        if len(cmds) == 1 and not batch.atomic:
            execute: Any = self.client.execute_command
            try:
                return [execute(*cmds[0])]
            except NoScriptError:
                return [execute(*as_eval(cmds[0]))]
        with self.client.pipeline(transaction=batch.atomic) as pipe:
            queue: Any = pipe.execute_command
            for cmd in cmds:
                queue(*as_eval(cmd))
            return pipe.execute()

    def run(self, plan: Plan[R]) -> R:
        """Run a plan (used by the methods below, and by extensions)."""
        return run_sync(plan, self._execute)

    # ---- writes -------------------------------------------------------------------

    def save(self, obj: Any, *, ttl: float | dt.timedelta | None = DEFAULT) -> str:
        """Store ``obj`` whole and return its key.

        Sends HSET (and HDEL of fields that are None, and PEXPIRE when a TTL applies), in
        one MULTI/EXEC when there is more than one command. ``ttl`` defaults to the model's;
        ``None`` sends no expiry command, so an expiry the key already has is kept.
        Raises :class:`ValidationError` before sending anything if a value does not fit.
        """
        return self.run(_ops.save(obj, ttl))

    def save_many(
        self,
        objs: Iterable[Any],
        *,
        ttl: float | dt.timedelta | None = DEFAULT,
        chunk_size: int | None = None,
    ) -> int:
        """Store many objects (of any models), pipelined: one round trip per chunk of
        ``chunk_size`` objects (default the store's, 500). Every object is validated before
        the first chunk is sent. Same commands as :meth:`save`; returns the count saved."""
        return self.run(_ops.save_many(objs, ttl, chunk_size or self.chunk_size))

    def update(self, model: type, id: Any, /, **values: Any) -> bool:
        """Set some fields of a stored object without reading it; ``None`` removes a field.

        One EVALSHA (HSET/HDEL inside the script, only if the key exists). Returns False
        and writes nothing when there is no such object."""
        return self.run(_ops.update(model, id, values))

    def incr(self, model: type, id: Any, field: str, amount: float = 1) -> Any:
        """Add ``amount`` to an int or float field atomically; returns the new value.

        One EVALSHA running HINCRBY (int) or HINCRBYFLOAT (float) if the object exists.
        ``field`` may be a dotted path into a nested object (``"address.zip"``).
        Raises ValidationError for a non-numeric field, NotFoundError if the object is
        missing."""
        return self.run(_ops.incr(model, id, field, amount))

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

        One EVALSHA: the script checks the object exists and that every bounded field
        stays within ``floor``/``ceiling`` after the change, then runs HINCRBY /
        HINCRBYFLOAT for each. Returns the new values. Raises
        :class:`ConditionFailedError` (nothing changed) when a bound would be crossed,
        :class:`NotFoundError` when the object is missing. Hash layout only."""
        return self.run(_atomic.incr_fields(model, id, changes, floor=floor, ceiling=ceiling))

    def transaction(
        self, fn: Callable[..., Any] | None = None, *, policy: RetryPolicy | None = None
    ) -> Any:
        """``@store.transaction`` / ``@store.transaction(policy=...)``: the same as
        ``@redmodel.transaction(store, ...)``; see docs/transactions.md."""
        decorate = _tx.transaction(self, policy=policy)
        return decorate(fn) if fn is not None else decorate

    def transact(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run ``fn(tx, *args, **kwargs)`` as an optimistic transaction with the default
        retry policy and return its result (WATCH, reads, MULTI, queued writes, EXEC)."""
        return _tx.transact(self, fn, *args, **kwargs)

    def delete(self, model: type, id: Any) -> bool:
        """DEL the object; True if it existed."""
        return self.run(_ops.delete(model, id))

    def delete_many(self, model: type, ids: Iterable[Any]) -> int:
        """DEL many objects, one DEL per chunk; returns how many existed."""
        return self.run(_ops.delete_many(model, ids, self.chunk_size))

    def expire(self, model: type, id: Any, ttl: float | dt.timedelta) -> bool:
        """PEXPIRE: the object expires in ``ttl`` seconds; False if it does not exist."""
        return self.run(_ops.expire(model, id, ttl))

    def persist(self, model: type, id: Any) -> bool:
        """PERSIST: remove the object's expiry; False if it had none or does not exist."""
        return self.run(_ops.persist(model, id))

    # ---- reads --------------------------------------------------------------------

    def get(self, model: type[M], id: Any) -> M | None:
        """HGETALL: the object, or None if there is none (as Redis answers nil).

        Raises :class:`DecodeError`, naming key and field, if stored data does not fit."""
        return self.run(_ops.get(model, id))  # type: ignore[no-any-return]

    def get_or_raise(self, model: type[M], id: Any) -> M:
        """Like :meth:`get`, but raises :class:`NotFoundError` when missing."""
        return self.run(_ops.get_or_raise(model, id))  # type: ignore[no-any-return]

    def get_many(self, model: type[M], ids: Iterable[Any]) -> list[M | None]:
        """HGETALL per id, pipelined in chunks; None where an object is missing."""
        return self.run(_ops.get_many(model, ids, self.chunk_size))

    def exists(self, model: type, id: Any) -> bool:
        """EXISTS."""
        return self.run(_ops.exists(model, id))

    def pttl(self, model: type, id: Any) -> int | None:
        """PTTL: milliseconds until the object expires, None if it never does.
        Raises NotFoundError if it does not exist."""
        return self.run(_ops.pttl(model, id))

    def ttl(self, model: type, id: Any) -> float | None:
        """Seconds (with millisecond precision, from PTTL) until expiry; None if never."""
        ms = self.pttl(model, id)
        return None if ms is None else ms / 1000

    # ---- iteration ----------------------------------------------------------------

    def scan_keys(self, model: type, *, count: int = 500) -> Iterator[str]:
        """Every key of the model's objects: SCAN with MATCH ``prefix:*`` and TYPE (never
        KEYS). Like SCAN, may yield a key twice if the keyspace is rehashed meanwhile."""
        spec = spec_of(model)
        cursor = 0
        while True:
            cursor, keys = self.run(_ops.scan_page(spec, cursor, count))
            yield from keys
            if cursor == 0:
                return

    def scan(self, model: type[M], *, count: int = 500) -> Iterator[M]:
        """Every stored object of the model: SCAN pages, each followed by one pipelined
        round trip of HGETALLs. Objects deleted meanwhile are skipped."""
        spec = spec_of(model)
        cursor = 0
        while True:
            cursor, keys = self.run(_ops.scan_page(spec, cursor, count))
            if keys:
                yield from self.run(_ops.get_by_keys(spec, keys))
            if cursor == 0:
                return

    def rotate_keys(self, model: type, *, count: int = 500) -> int:
        """Re-encrypt every stored value of the model that a ``fernet`` chain wrote under an
        older key; returns how many values were rewritten. Objects stay readable throughout
        (every configured key decrypts).

        Per SCAN page: one pipelined read (HGETALL / GET / the flat read script) and one
        pipelined compare-and-set script per changed value, so a value written meanwhile
        by someone else is left alone (it is already under the newest key)."""
        spec = spec_of(model)
        rotated = 0
        cursor = 0
        while True:
            cursor, keys = self.run(_ops.scan_page(spec, cursor, count))
            rotated += self.run(_ops.rotate_page(spec, keys))
            if cursor == 0:
                return rotated

    def count(self, model: type) -> int:
        """How many objects the model has: a full SCAN, O(N) in the keyspace."""
        return sum(1 for _ in self.scan_keys(model))


