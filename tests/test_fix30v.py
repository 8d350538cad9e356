"""Fix 30V (attack 30AV F1): a bulk write given up after part of it ran says exactly what
was written. docs/failures.md, "Several writes in one batch": when the policy gives up
after some writes were applied and others not, the call raises OutcomeUnknownError naming
the keys of those not applied; a plain ``redis.ConnectionError`` from a call of writes
that must not run twice means nothing of it was applied. docs/store.md: ``.written`` and
``.not_written`` hold one key per object, in call order; the keys of objects whose outcome
is unknown are in neither list (and in ``.keys``).

Property, drawn over the kind: delete_many of a drawn number of objects (plain hash and
indexed models), a drawn chunk size, one drawn object's round met by a drawn fault (its
request dropped, its reply lost or cut; once, or at every resend until the policy gives
up), exactly-once mode on and off, on the sync and asyncio shells, one server and a
cluster: what the error reports equals what the server holds. save_many (a whole save may
be applied twice harmlessly, so its plain error may follow a part written) is held to its
lists the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

import redmodel
from redmodel._models._specs import spec_of
from redmodel.testing import ClusterFaultProxy, FaultProxy, RedisClusterServer, has
from tests.budget import scaled
from tests.faults import FAST_RESEND


@redmodel.model(prefix="fix30v")
@attrs.define
class Plain:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


@redmodel.model(prefix="fix30vx", buckets=4)
@attrs.define
class Indexed:
    color: str = redmodel.field(index=True)
    id: str = redmodel.key_field(generated=False)


MODELS = {"plain": Plain, "indexed": Indexed}
FAULTS = ["drop_request", "lose_reply", "cut_reply"]
WRITES = ("DEL", "UNLINK", "EVALSHA", "EVAL", "HSET")


def _obj(model: type, i: int) -> Any:
    return Plain(id=f"o{i}", n=i) if model is Plain else Indexed(f"c{i % 3}", id=f"o{i}")


def _key(model: type, i: int) -> str:
    return spec_of(model).key_for(f"o{i}")


def _call(shell: str, make: Any, method: str, *args: Any) -> tuple[Any, BaseException | None]:
    """store.<method>(*args) on a store made by ``make()`` (sync, or asyncio run on a
    loop of its own); (its result, the exception it raised)."""
    if shell == "sync":
        store = make()
        try:
            return getattr(store, method)(*args), None
        except Exception as e:  # the property inspects it
            return None, e
        finally:
            store.close()

    async def main() -> tuple[Any, BaseException | None]:
        store = make()
        try:
            return await getattr(store, method)(*args), None
        except Exception as e:  # the property inspects it
            return None, e
        finally:
            await store.aclose()
    return asyncio.run(main())


def _check_delete(direct: redis.Redis | RedisCluster, keys: list[str], result: Any,
                  error: BaseException | None) -> None:
    gone = [k for k in keys if not direct.exists(k)]
    if error is None:
        assert result == len(keys) and gone == keys
        return
    assert isinstance(error, redis.ConnectionError), repr(error)
    if not isinstance(error, redmodel.OutcomeUnknownError):
        # plain: nothing of the call was deleted, calling again is safe and counts right
        assert gone == [], (gone, repr(error))
        return
    written, not_written = error.written, error.not_written
    assert written is not None and not_written is not None, repr(error)
    neither = [k for k in keys if k not in written and k not in not_written]
    assert [k for k in keys if k in written or k in not_written or k in neither] == keys
    assert not set(written) & set(not_written)
    assert [k for k in keys if k in written] == list(written)  # call order
    assert set(written) <= set(gone), (written, gone)  # what it says was deleted, was
    assert not set(not_written) & set(gone), (not_written, gone)  # and the others not
    assert set(neither) <= set(error.keys), (neither, error.keys)
    assert not set(written) & set(error.keys), (written, error.keys)


def _check_save(direct: redis.Redis | RedisCluster, keys: list[str],
                error: BaseException | None) -> None:
    held = [k for k in keys if direct.exists(k)]
    if error is None:
        assert held == keys
        return
    assert isinstance(error, redis.ConnectionError), repr(error)
    written = getattr(error, "written", None)
    not_written = getattr(error, "not_written", None)
    if written is None:  # a plain error: safe to call again (each save is whole)
        assert not isinstance(error, redmodel.OutcomeUnknownError)
        return
    assert not_written is not None
    assert set(written) <= set(held), (written, held)
    assert not set(not_written) & set(held), (not_written, held)
    assert not set(written) & set(error.keys)


_draws = dict(
    model=st.sampled_from(sorted(MODELS)), n=st.integers(2, 14), chunk=st.integers(1, 6),
    at=st.integers(0, 13), fault=st.sampled_from(FAULTS), times=st.sampled_from([1, 50]),
    once=st.booleans(), shell=st.sampled_from(["sync", "async"]),
    method=st.sampled_from(["delete_many", "delete_many", "save_many"]))


@settings(max_examples=scaled(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(**_draws)
def test_one_server_bulk_error_says_what_the_server_holds(
        proxy: FaultProxy, redis_client: Any, model: str, n: int, chunk: int, at: int,
        fault: str, times: int, once: bool, shell: str, method: str) -> None:
    kind = MODELS[model]
    direct = redmodel.Store(redis_client)
    redis_client.flushall()
    objs = [_obj(kind, i) for i in range(n)]
    keys = [_key(kind, i) for i in range(n)]
    if method == "delete_many":
        direct.save_many(objs)
    proxy.clear()
    getattr(proxy, fault)(lambda c: c in WRITES, times=times,
                          when=has(keys[min(at, n - 1)]))
    options: dict[str, Any] = dict(exactly_once=once, resend=FAST_RESEND, chunk_size=chunk)

    def make() -> Any:
        if shell == "sync":
            return redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port), **options)
        return redmodel.AsyncStore(aredis.Redis(host=proxy.host, port=proxy.port), **options)

    args = (kind, [o.id for o in objs]) if method == "delete_many" else (objs,)
    result, error = _call(shell, make, method, *args)
    proxy.clear()
    if method == "delete_many":
        _check_delete(redis_client, keys, result, error)
    else:
        _check_save(redis_client, keys, error)


@pytest.fixture
def cluster_proxies(redis_cluster: RedisClusterServer) -> Iterator[ClusterFaultProxy]:
    proxies = ClusterFaultProxy(redis_cluster.addresses).start()
    try:
        yield proxies
    finally:
        proxies.stop()


@settings(max_examples=scaled(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(**_draws)
def test_cluster_bulk_error_says_what_the_server_holds(
        cluster_proxies: ClusterFaultProxy, redis_cluster_client: RedisCluster, model: str,
        n: int, chunk: int, at: int, fault: str, times: int, once: bool, shell: str,
        method: str) -> None:
    """The same over a cluster's nodes: a chunk goes to every node at once, each node's
    part settled alone; the fault on the node of the drawn object."""
    kind = MODELS[model]
    direct = redmodel.Store(redis_cluster_client)
    objs = [_obj(kind, i) for i in range(n)]
    keys = [_key(kind, i) for i in range(n)]
    direct.delete_many(kind, [o.id for o in objs])
    if method == "delete_many":
        direct.save_many(objs)
    proxies = cluster_proxies
    proxies.clear()
    for p in proxies.proxies.values():
        getattr(p, fault)(lambda c: c in WRITES, times=times, when=has(keys[min(at, n - 1)]))
    host, port = proxies.startup_nodes[0]
    options: dict[str, Any] = dict(exactly_once=once, resend=FAST_RESEND, chunk_size=chunk)
    client_options: dict[str, Any] = dict(host=host, port=port,
                                          address_remap=proxies.address_remap)

    def make() -> Any:
        if shell == "sync":
            return redmodel.Store(RedisCluster(**client_options), **options)
        return redmodel.AsyncStore(AsyncRedisCluster(**client_options), **options)

    args = (kind, [o.id for o in objs]) if method == "delete_many" else (objs,)
    result, error = _call(shell, make, method, *args)
    proxies.clear()
    if method == "delete_many":
        _check_delete(redis_cluster_client, keys, result, error)
    else:
        _check_save(redis_cluster_client, keys, error)
