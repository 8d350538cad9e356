"""A transaction interrupted anywhere never stays the active one (attack 38K K1): a
KeyboardInterrupt, or the exception a timeout's signal handler raises, landing while the
transaction opened or closed, and an asyncio task cancelled while its transaction waited
to close, left the dead transaction active in that thread or task for good; the next
transaction joined it, returned normally and its write was never sent.

The property draws the point where the interrupt lands among every function call and
return of a whole transaction call (sys.setprofile counts them): afterwards no
transaction is open, the interrupted one was applied once or not at all, the next one
applies exactly once and is not joined, and every connection is back in the pool.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.containers import Queue
from redmodel.testing import FaultProxy, RedisServer, has
from redmodel.transactions import AsyncTransaction, Transaction, current_transaction
from tests.budget import scaled


@redmodel.model(prefix="txi")
@attrs.define
class Acc:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


OWN = str(Path(redmodel.__file__).parent)


class _Interrupt:
    """A profile function raising KeyboardInterrupt at the ``at``-th event (a Python call
    or return, a C call or return) in redmodel's code, of what runs under
    it; ``count`` events seen. (Not inside redis-py's: an interrupt in its connection
    handshake can leave that connection one reply behind in its pool, which is redis-py's
    to mend, and which redmodel cannot see.)"""

    def __init__(self, at: int) -> None:
        self.at = at
        self.count = 0
        self.fired = False

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if not frame.f_code.co_filename.startswith(OWN) or frame.f_code.co_filename.endswith(
                "_policy.py") or frame.f_code.co_name == "__del__" or (
                (event == "return" and frame.f_code.co_name in ("__enter__", "__aenter__"))
                or (event == "call" and frame.f_code.co_name in ("__exit__", "__aexit__"))):
            # (an exception at the very return of __enter__, or at the call of __exit__
            # before its first line, is the with statement's own gap: the transaction is
            # never closed (docs/transactions.md, "Interrupted"); and the call counters'
            # lock (_policy.TxStats), left held by an interrupt as it is taken: left alone)
            return
        self.count += 1
        if self.count == self.at:
            self.fired = True
            sys.setprofile(None)
            raise KeyboardInterrupt


def _interrupted(call: Callable[[], Any], at: int) -> tuple[bool, str]:
    """Run ``call`` with an interrupt at its ``at``-th event: (fired, where it landed)."""
    hook = _Interrupt(at)
    landed = ""
    sys.setprofile(hook)
    try:
        call()
    except KeyboardInterrupt:
        assert hook.fired  # (the test's own, not another)
        landed = traceback.format_exc(limit=-4)
    finally:
        sys.setprofile(None)
    return hook.fired, landed


def _in_use(client: Any) -> int:
    pool = client.connection_pool
    return len(pool._in_use_connections)


@pytest.fixture
def store(redis_client: Any) -> redmodel.Store:
    return redmodel.Store(redis_client)


def _bump_fn(store: redmodel.Store) -> Any:
    @redmodel.transaction(store)
    def bump(tx: Transaction) -> int:
        acc = tx.get_or_raise(Acc, "c")
        tx.incr(Acc, "c", "n", 1)
        return acc.n

    return bump


def _with_block(store: redmodel.Store) -> None:
    with Transaction(store) as tx:
        tx.get_or_raise(Acc, "c")
        tx.incr(Acc, "c", "n", 1)


def _check_after(store: redmodel.Store, bump: Any, before: int, landed: str = "") -> None:
    """No transaction open; the interrupted call applied at most once; the next applies
    exactly once, not joined; a blocking pop is not refused; no connection held."""
    assert current_transaction() is None, landed
    now = store.get(Acc, "c").n
    assert now in (before, before + 1)
    out = bump.outcome()
    assert not out.joined and out.attempts == 1
    assert store.get(Acc, "c").n == now + 1
    assert Queue(store, "txi_q", str).pop_blocking(0.01) is None
    gc.collect()  # (a session dropped holding its connection gives it back as it goes)
    # every connection back in the pool, but when the interrupt landed inside the pool's
    # own release: the one place it cannot be given back from (the session forgot it
    # first, so that it never touches a connection that may be another caller's)
    assert _in_use(store.client) <= (1 if ", in release\n" in landed else 0), landed
    if _in_use(store.client):
        store.client.connection_pool.reset()


def _events(call: Callable[[], Any]) -> int:
    hook = _Interrupt(0)
    sys.setprofile(hook)
    try:
        call()
    finally:
        sys.setprofile(None)
    return hook.count


@settings(max_examples=scaled(400, floor=20), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True), shape=st.sampled_from(["decorator", "with"]))
def test_an_interrupt_anywhere_in_a_transaction_leaves_none_open(
        store: redmodel.Store, where: float, shape: str) -> None:
    """The interrupt lands at a drawn fraction of the call's events (the open, the
    function's read, the commit, the close and everything between)."""
    store.save(Acc(id="c", n=0))
    bump = _bump_fn(store)
    call: Callable[[], Any] = bump if shape == "decorator" else lambda: _with_block(store)
    call()  # (a first call sends more: the registry's check; its connection made)
    total = _events(call)
    before = store.get(Acc, "c").n
    fired, landed = _interrupted(call, 1 + int(where * total))
    assert fired
    _check_after(store, bump, before, landed)


@pytest.mark.parametrize("shape", ["decorator", "with"])
@pytest.mark.parametrize("point", ["activation", "close"])
def test_an_interrupt_as_it_becomes_active_or_begins_to_close(
        store: redmodel.Store, shape: str, point: str) -> None:
    """The two points the attack found: just after the transaction is set as the active
    one (before the code that closes it), and as its close begins (after EXEC)."""
    store.save(Acc(id="c", n=0))
    bump = _bump_fn(store)
    call: Callable[[], Any] = bump if shape == "decorator" else lambda: _with_block(store)

    def hook(frame: Any, event: str, arg: Any) -> None:
        hit = (event == "c_return" and getattr(arg, "__name__", "") == "set"
               and frame.f_code.co_name == "_activate") if point == "activation" else (
            event == "call" and frame.f_code.co_name == "_close"
            and frame.f_code.co_filename.endswith("_handles.py"))
        if hit:
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(hook)
    with pytest.raises(KeyboardInterrupt):
        call()
    sys.setprofile(None)
    _check_after(store, bump, 0)


def test_a_task_cancelled_while_its_transaction_waits_to_close(
        redis_server: RedisServer, redis_client: Any) -> None:
    """An async transaction function gathers two reads; one fails at once while the
    other's reply is held back, so the attempt's close waits for that round trip; the
    task is cancelled during the wait (what asyncio.timeout does). The task's next
    transaction is not joined to the dead one and applies once; the held connection goes
    back to the pool."""
    redis_client.flushall()

    async def main() -> None:
        with FaultProxy(redis_server.host, redis_server.port) as proxy:
            client = redis.asyncio.Redis(host=proxy.host, port=proxy.port)
            store = redmodel.AsyncStore(client)
            await store.save(Acc(id="b"))

            @redmodel.transaction(store)
            async def move(tx: AsyncTransaction) -> None:
                await asyncio.gather(tx.get_or_raise(Acc, "missing"),
                                     tx.get_or_raise(Acc, "b"))
                tx.incr(Acc, "b", "n", 1)

            @redmodel.transaction(store)
            async def bump(tx: AsyncTransaction) -> None:
                await tx.get_or_raise(Acc, "b")
                tx.incr(Acc, "b", "n", 1)

            proxy.stall("HGETALL", 0.2, when=has(b"txi:b"))
            # this task cancelled after 0.1 s, as asyncio.timeout does (Python 3.11+)
            me = asyncio.current_task()
            assert me is not None
            timer = asyncio.get_running_loop().call_later(0.1, me.cancel)
            with pytest.raises(asyncio.CancelledError):
                await move()
            timer.cancel()
            assert current_transaction() is None
            await asyncio.sleep(0.3)  # the held reply comes; the close ends in its task
            proxy.clear()
            out = await bump.outcome()
            assert not out.joined and out.attempts == 1
            assert (await store.get(Acc, "b")).n == 1
            assert len(client.connection_pool._in_use_connections) == 0
            await store.aclose()

    asyncio.run(main())


def test_the_asyncio_transaction_opened_under_an_interrupt(redis_server: RedisServer,
                                                           redis_client: Any) -> None:
    """``async with AsyncTransaction(store)`` interrupted as it becomes active: the task
    has no open transaction after it, and its next one applies."""
    redis_client.flushall()

    async def main() -> None:
        store = redmodel.AsyncStore(redis.asyncio.Redis(host=redis_server.host,
                                                        port=redis_server.port))
        await store.save(Acc(id="c"))

        def hook(frame: Any, event: str, arg: Any) -> None:
            if (event == "c_return" and getattr(arg, "__name__", "") == "set"
                    and frame.f_code.co_name == "_activate"):
                sys.setprofile(None)
                raise KeyboardInterrupt

        sys.setprofile(hook)
        with pytest.raises(KeyboardInterrupt):
            async with AsyncTransaction(store) as tx:
                tx.incr(Acc, "c", "n", 1)
        sys.setprofile(None)
        assert current_transaction() is None
        async with AsyncTransaction(store) as tx:
            await tx.get_or_raise(Acc, "c")
            tx.incr(Acc, "c", "n", 1)
        assert (await store.get(Acc, "c")).n == 1
        await store.aclose()

    asyncio.run(main())

