"""Deployment shapes: one server vs a three-primary Redis Cluster for bulk save_many /
get_many, and the sync Store vs AsyncStore with many concurrent tasks for single-object
calls.

``run(url, quick)`` returns Markdown tables. ``url`` is the single server; the cluster is a
throwaway :class:`redmodel.testing.RedisClusterServer` started and stopped here. Also
runnable alone::

    python benchmarks/bench_deploy.py [--quick] [--url URL]

Timings are medians of several repetitions in one run on one machine: compare rows with
each other, not with another machine. Every server is local, so the network is loopback
and what is measured is client CPU, server CPU and round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

import redmodel
from redmodel.testing import RedisClusterServer, RedisServer

__all__ = ["run"]

PREFIX = "rmbench_deploy"


@redmodel.model(prefix=f"{PREFIX}_hat")
@attrs.define
class Hat:
    """The tutorial's hat, hash layout (no tag: each object is one key, one slot)."""

    color: str
    price: float
    style: str
    quantity: int = 0
    npurchased: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix=f"{PREFIX}_taghat", hash_tag=True)
@attrs.define
class TaggedHat:
    """The same hat with ``hash_tag=True``: keys ``..._taghat:{id}``."""

    color: str
    price: float
    style: str
    quantity: int = 0
    npurchased: int = 0
    id: str = redmodel.key_field(generated=False)


def make(cls: type[Any], n: int, start: int = 0) -> list[Any]:
    return [cls(color=("black", "maroon", "green")[i % 3], price=49.99 + i % 50,
                style=("fitted", "hipster", "baseball")[i % 3], quantity=1000 + i % 7,
                npurchased=i % 11, id=str(i)) for i in range(start, start + n)]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|---|" + "|".join("---:" for _ in header[1:]) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def wipe(store: redmodel.Store, *models: type[Any]) -> None:
    for model in models:
        store.delete_many(model, [key.split(":")[-1] for key in store.scan_keys(model)])


# ---- bulk: one server vs the cluster --------------------------------------------------------


def bulk(single: redmodel.Store, cluster: redmodel.Store, n: int, repeats: int) -> str:
    cases = [("one server", single, Hat), ("one server, hash_tag=True", single, TaggedHat),
             ("cluster (3 primaries)", cluster, Hat),
             ("cluster (3 primaries), hash_tag=True", cluster, TaggedHat)]
    data = [make(model, n) for _, _, model in cases]
    saves: list[list[float]] = [[] for _ in cases]
    gets: list[list[float]] = [[] for _ in cases]
    for _, store, model in cases:
        wipe(store, model)
    # rounds interleave the cases, each round starting one case later (A B C D, B C D A, ...)
    # so drift and what the previous case left the servers doing hit all; round 0 warms up
    for round_ in range(repeats + 1):
        for k in range(len(cases)):
            i = (k + round_) % len(cases)
            name, store, model = cases[i]
            hats = data[i]
            ids = [h.id for h in hats]
            t0 = time.perf_counter()
            store.save_many(hats)
            t1 = time.perf_counter()
            got = store.get_many(model, ids)
            t2 = time.perf_counter()
            store.delete_many(model, ids)
            if round_ == 0:
                assert got == hats, f"{name}: get_many differs from what save_many stored"
                continue
            saves[i].append(t1 - t0)
            gets[i].append(t2 - t1)
    save = [statistics.median(t) for t in saves]
    get = [statistics.median(t) for t in gets]
    rows = [[name, rate(n, save[i]), f"{save[0] / save[i]:.2f}x", rate(n, get[i]),
             f"{get[0] / get[i]:.2f}x"] for i, (name, _, _) in enumerate(cases)]
    return table([f"{n:,} hats, chunks of 500", "save_many objects/s", "vs one server",
                  "get_many objects/s", "vs one server"], rows)


# ---- single-object calls: sync vs asyncio with concurrent tasks ------------------------------


def sync_calls(store: redmodel.Store, hats: list[Any]) -> None:
    for h in hats:
        store.save(h)
        store.get(Hat, h.id)


async def async_calls(store: redmodel.AsyncStore, hats: list[Any], tasks: int) -> None:
    async def worker(part: list[Any]) -> None:
        for h in part:
            await store.save(h)
            await store.get(Hat, h.id)

    await asyncio.gather(*(worker(hats[i::tasks]) for i in range(tasks)))


def concurrency(url: str, cluster: RedisClusterServer, single: redmodel.Store,
                cluster_store: redmodel.Store, calls: int, repeats: int) -> str:
    hats = make(Hat, calls // 2)

    def timed_async(make_store: Callable[[], redmodel.AsyncStore], tasks: int
                    ) -> Callable[[], float]:
        async def main() -> float:
            async with make_store() as store:
                # warm-up: one task first (redis-py 8.1's asyncio RedisCluster fails with
                # AttributeError when many tasks send the first commands of a new client at
                # once; awaiting client.initialize() first avoids it too), then connections
                await async_calls(store, hats[:10], 1)
                await async_calls(store, hats[:100], tasks)
                t0 = time.perf_counter()
                await async_calls(store, hats, tasks)
                return time.perf_counter() - t0

        return lambda: asyncio.run(main())

    def timed_sync(store: redmodel.Store) -> Callable[[], float]:
        def once() -> float:
            sync_calls(store, hats[:100])
            t0 = time.perf_counter()
            sync_calls(store, hats)
            return time.perf_counter() - t0

        return once

    host, port = cluster.addresses[0]
    cases: list[tuple[str, Callable[[], float]]] = [
        ("sync Store, 1 caller, one server", timed_sync(single)),
        ("AsyncStore, 1 task, one server",
         timed_async(lambda: redmodel.AsyncStore.from_url(url), 1)),
        ("AsyncStore, 50 tasks, one server",
         timed_async(lambda: redmodel.AsyncStore.from_url(url), 50)),
        ("sync Store, 1 caller, cluster", timed_sync(cluster_store)),
        ("AsyncStore, 1 task, cluster", timed_async(
            lambda: redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port)), 1)),
        ("AsyncStore, 50 tasks, cluster", timed_async(
            lambda: redmodel.AsyncStore(AsyncRedisCluster(host=host, port=port)), 50)),
    ]
    times: list[list[float]] = [[] for _ in cases]
    for round_ in range(repeats):  # interleaved, each round starting one case later
        for k in range(len(cases)):
            i = (k + round_) % len(cases)
            times[i].append(cases[i][1]())
    medians = [statistics.median(t) for t in times]
    wipe(single, Hat)
    wipe(cluster_store, Hat)
    base = medians[0]
    rows = [[name, rate(calls, t), f"{base / t:.2f}x", f"{t / calls * 1e6:.0f} µs"]
            for (name, _), t in zip(cases, medians, strict=True)]
    return table([f"{calls:,} calls (save then get of one hat, alternating)", "calls/s",
                  "vs sync", "wall time per call"], rows)


# ---- entry points -------------------------------------------------------------------------


def run(url: str, quick: bool) -> str:
    """Markdown: the bulk table and the concurrency table."""
    n = 300 if quick else 20_000
    calls = 300 if quick else 20_000
    repeats = 1 if quick else 5
    with RedisClusterServer() as cluster:
        single = redmodel.Store.from_url(url)
        cluster_store = redmodel.Store(cluster.client())
        try:
            server = single.client.info("server")
            version = server.get("valkey_version") or server.get("redis_version")
            parts = [
                f"Single server: `{url.rsplit('@', maxsplit=1)[-1]}` ({version}); cluster: "
                f"three local primaries started here ({cluster.version}). "
                f"redis-py {redis.__version__}, RESP3, hiredis if installed. Client and all "
                f"four servers share this machine's {os.cpu_count()} logical cores.",
                "### Bulk: save_many / get_many, one server vs the cluster",
                bulk(single, cluster_store, n, repeats),
                "Each row stores then reads the same hats; the cluster store splits each "
                "chunk of 500 by node and writes every node's part before reading any "
                "node's replies. The hash layout needs no hash tag; "
                "`hash_tag=True` only changes the key (`..._taghat:{id}`), not the work.",
                "### Single-object calls: sync vs asyncio",
                concurrency(url, cluster, single, cluster_store, calls, repeats),
                "Each row makes the same number of single-object calls (`save` then `get` "
                "of one hat, repeated), each one round trip. `1 caller` / `1 task` wait "
                "for every reply before the next call; `50 tasks` are 50 coroutines on one "
                "event loop sharing one AsyncStore (its connection pool opens up to 50 "
                "connections), so round trips overlap. Wall time per call is total time "
                "divided by calls, not latency.",
            ]
        finally:
            single.close()
            cluster_store.close()
    return "\n\n".join(parts)


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 objects (~15 s)")
    parser.add_argument("--url", default=None,
                        help="the single server (default: a throwaway one started here)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with _server(args.url) as url:
        print(run(url, args.quick))
    print(f"\n_{time.perf_counter() - t0:.1f} s_")
    return 0


if __name__ == "__main__":
    sys.exit(main())
