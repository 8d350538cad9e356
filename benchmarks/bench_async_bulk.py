"""Bulk calls per deployment shape: hand-written redis-py beside redmodel, in one run.

Four shapes, each a pair of contestants doing the same work on the same servers: the sync
client on one server (a ``pipeline(transaction=False)`` per chunk against ``Store``),
asyncio on one server (``redis.asyncio`` pipeline against ``AsyncStore``), the sync cluster
client on a three-primary cluster (``RedisCluster.pipeline()`` against a cluster ``Store``)
and the asyncio cluster client (its pipeline against a cluster ``AsyncStore``). Each does
``save_many`` (HSET per hat) then ``get_many`` (HGETALL per hat, decoded into the attrs
hat) of N tutorial hats in chunks; a cell is a ratio of throughputs, redmodel over
hand-written, in the same shape (higher is better for redmodel).

Every repetition runs every contestant once, the order rotating, so machine noise hits all
alike; a cell is the median over the repetitions. Runnable alone::

    python -m benchmarks.bench_async_bulk [--n 20000] [--reps 5] [--chunk 1000] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

import redmodel
from benchmarks._common import Context, Section, table
from benchmarks._models import HatHash, hat
from benchmarks.bench_mapper import hash_key, hat_from_hash, hat_mapping
from redmodel.testing import RedisClusterServer, RedisServer

__all__ = ["measure", "run"]

SHAPES = ("sync, one server", "asyncio, one server", "sync, cluster (3 primaries)",
          "asyncio, cluster (3 primaries)")


def _chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


class _Hand:
    """Hand-written redis-py: one non-transactional pipeline per chunk (the cluster
    clients' pipelines split it by node)."""

    def __init__(self, client: Any, chunk: int) -> None:
        self.client, self.chunk = client, chunk

    def save_many(self, hats: Sequence[Any]) -> None:
        for part in _chunks(hats, self.chunk):
            pipe = self.client.pipeline(transaction=False)
            for h in part:
                pipe.hset(hash_key(h.id), mapping=hat_mapping(h))
            pipe.execute()

    def get_many(self, ids: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        for part in _chunks(ids, self.chunk):
            pipe = self.client.pipeline(transaction=False)
            for i in part:
                pipe.hgetall(hash_key(i))
            out.extend(hat_from_hash(HatHash, i, d)
                       for i, d in zip(part, pipe.execute(), strict=True))
        return out


class _AsyncHand(_Hand):
    async def save_many(self, hats: Sequence[Any]) -> None:  # type: ignore[override]
        for part in _chunks(hats, self.chunk):
            pipe = self.client.pipeline(transaction=False)
            for h in part:
                pipe.hset(hash_key(h.id), mapping=hat_mapping(h))
            await pipe.execute()

    async def get_many(self, ids: Sequence[str]) -> list[Any]:  # type: ignore[override]
        out: list[Any] = []
        for part in _chunks(ids, self.chunk):
            pipe = self.client.pipeline(transaction=False)
            for i in part:
                pipe.hgetall(hash_key(i))
            out.extend(hat_from_hash(HatHash, i, d)
                       for i, d in zip(part, await pipe.execute(), strict=True))
        return out


class _Model:
    """redmodel: ``save_many`` / ``get_many`` with the same chunk size."""

    def __init__(self, store: Any, chunk: int) -> None:
        self.store, self.chunk = store, chunk

    def save_many(self, hats: Sequence[Any]) -> Any:
        return self.store.save_many(hats, chunk_size=self.chunk)

    def get_many(self, ids: Sequence[str]) -> Any:
        return self.store.get_many(HatHash, ids)


def _timed(loop: asyncio.AbstractEventLoop | None, side: Any, hats: Sequence[Any],
           ids: Sequence[str]) -> tuple[float, float, list[Any]]:
    def call(result: Any) -> Any:
        return loop.run_until_complete(result) if loop is not None else result

    t0 = time.perf_counter()
    call(side.save_many(hats))
    t1 = time.perf_counter()
    got = call(side.get_many(ids))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, got


def measure(url: str, n: int, reps: int, chunk: int) -> dict[str, dict[str, float]]:
    """{shape: {"save hand", "save redmodel", "get hand", "get redmodel": objects/s}}."""
    hats = [hat(HatHash, i) for i in range(n)]
    ids = [h.id for h in hats]
    loop = asyncio.new_event_loop()
    with RedisClusterServer() as cluster:
        host, port = cluster.addresses[0]

        def aclient() -> Any:
            return AsyncRedisCluster(host=host, port=port)

        # the store's chunk_size also sets get_many's chunks
        clients: list[tuple[str, str, Any, bool]] = [
            (SHAPES[0], "hand", _Hand(redis.Redis.from_url(url, db=1), chunk), False),
            (SHAPES[0], "redmodel", _Model(redmodel.Store.from_url(url, db=2),
                                           chunk), False),
            (SHAPES[1], "hand", _AsyncHand(aredis.Redis.from_url(url, db=3), chunk), True),
            (SHAPES[1], "redmodel", _Model(redmodel.AsyncStore.from_url(url, db=4),
                                           chunk), True),
            (SHAPES[2], "hand", _Hand(RedisCluster(host=host, port=port), chunk), False),
            (SHAPES[2], "redmodel", _Model(redmodel.Store(RedisCluster(
                host=host, port=port)), chunk), False),
            (SHAPES[3], "hand", _AsyncHand(aclient(), chunk), True),
            (SHAPES[3], "redmodel", _Model(redmodel.AsyncStore(aclient()), chunk), True),
        ]
        for _, _, side, _ in clients:
            if isinstance(side, _Model):
                side.store.chunk_size = chunk
        flush(url, cluster)
        times: dict[tuple[str, str], tuple[list[float], list[float]]] = {
            (s, w): ([], []) for s, w, _, _ in clients}
        try:
            # round 0 warms up and checks the answers; later rounds overwrite the same keys
            for round_ in range(reps + 1):
                for k in range(len(clients)):
                    shape, who, side, is_async = clients[(k + round_) % len(clients)]
                    save, get, got = _timed(loop if is_async else None, side, hats, ids)
                    if round_ == 0:
                        assert got == hats, f"{shape} {who}: get_many differs"
                        continue
                    times[shape, who][0].append(save)
                    times[shape, who][1].append(get)
        finally:
            for _, who, side, is_async in clients:
                client = side.store.client if who == "redmodel" else side.client
                if is_async:
                    loop.run_until_complete(client.aclose())
                else:
                    client.close()
            flush(url, cluster)
            loop.close()
    out: dict[str, dict[str, float]] = {}
    for (shape, who), (saves, gets) in times.items():
        row = out.setdefault(shape, {})
        row[f"save {who}"] = n / statistics.median(saves)
        row[f"get {who}"] = n / statistics.median(gets)
    return out


def flush(url: str, cluster: RedisClusterServer) -> None:
    with redis.Redis.from_url(url) as r:
        for db in (1, 2, 3, 4):
            r.execute_command("SELECT", db)
            r.flushdb()
    with cluster.client() as rc:
        rc.flushall()


def render(found: dict[str, dict[str, float]], n: int, chunk: int) -> str:
    rows = []
    for shape in SHAPES:
        r = found[shape]
        rows.append([shape, f"{r['save hand']:,.0f}", f"{r['save redmodel']:,.0f}",
                     f"{r['save redmodel'] / r['save hand']:.2f}x",
                     f"{r['get hand']:,.0f}", f"{r['get redmodel']:,.0f}",
                     f"{r['get redmodel'] / r['get hand']:.2f}x"])
    return table([f"{n:,} hats, chunks of {chunk:,}", "save_many hand-written /s",
                  "redmodel /s", "ratio", "get_many hand-written /s", "redmodel /s",
                  "ratio"], rows)


def run(ctx: Context) -> Section:
    """Section: bulk calls per deployment shape, hand-written vs redmodel."""
    n, reps, chunk = 20_000, 5, 1000
    section = Section("13. Bulk calls per deployment shape: hand-written redis-py vs redmodel")
    if ctx.quick:
        section.blocks.append("Full mode only (it starts a cluster; alone: "
                              "`python -m benchmarks.bench_async_bulk`).")
        return section
    found = measure(ctx.url, n, reps, chunk)
    section.blocks.append(render(found, n, chunk))
    section.blocks.append(
        "Each shape compares redmodel with hand-written redis-py on the same client kind "
        "(a ratio above 1 means redmodel is faster). The cluster has three local primaries "
        "started here; both sides send a chunk's commands to every node before reading any "
        "node's replies (redis-py's cluster pipelines do the same).")
    section.data["async_bulk"] = found
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--url", default=None)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()

    def runner(url: str) -> dict[str, dict[str, float]]:
        return measure(url, args.n, args.reps, args.chunk)

    if args.url:
        found = runner(args.url)
    else:
        with RedisServer() as server:
            found = runner(server.url)
    print(render(found, args.n, args.chunk))
    print(f"\n_{time.perf_counter() - t0:.1f} s, --n {args.n} --reps {args.reps}_")
    return 0


if __name__ == "__main__":
    sys.exit(main())
