"""Indexed bulk writes beside hand-written redis-py, in one run (issue 17, item 2).

``python -m benchmarks.bench_bulk_index [--n N] [--reps R] [--url URL]``: N tutorial hats
(bench_queries' indexed ``Hat``) saved with ``save_many`` in chunks of 1,000 and with the
hand-written bulk path (a pipeline per 500: HSET and one SADD/ZADD per index entry),
taking turns chunk by chunk, R repetitions on flushed databases; then ``delete_many`` of
them all. Prints objects per second, the ratio redmodel / hand-written per repetition and
their median, and the server commands per object (INFO commandstats, scripts' own
commands included).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import redis

from benchmarks import bench_queries
from benchmarks._mappers import HandWritten
from redmodel.testing import RedisServer

CHUNK = 1000


def _calls(r: redis.Redis) -> tuple[int, int]:
    """(commands, server microseconds) so far: every command, and the time of the top-level
    ones (a script's time includes its own commands, which are counted but not timed again)."""
    stats = {k: v for k, v in r.info("commandstats").items()
             if k not in ("cmdstat_info", "cmdstat_flushdb")}
    calls = sum(int(v["calls"]) for v in stats.values())
    if "cmdstat_evalsha" in stats:
        usec = int(stats["cmdstat_evalsha"]["usec"]) + int(stats.get("cmdstat_eval", {}).get(
            "usec", 0))
    else:
        usec = sum(int(v["usec"]) for v in stats.values())
    return calls, usec


def run(url: str, n: int, reps: int) -> None:
    mine = bench_queries.Redmodel(url, 5)
    hand = HandWritten(url, 6, bench_queries.Hat)
    ratios, per_obj = [], {}
    for rep in range(reps):
        for db in (5, 6):
            redis.Redis.from_url(url, db=db).execute_command("FLUSHDB", "SYNC")
        hats = bench_queries.make_hats(n, seed=rep)
        secs = {"redmodel": 0.0, "hand": 0.0}
        cmds = {"redmodel": 0, "hand": 0}
        usec = {"redmodel": 0, "hand": 0}
        for c, start in enumerate(range(0, n, CHUNK)):
            part = hats[start:start + CHUNK]
            order: list[tuple[str, Any]] = [("redmodel", mine.save_chunk),
                                            ("hand", hand.save_chunk)]
            for name, fn in order if c % 2 == 0 else order[::-1]:
                db = 5 if name == "redmodel" else 6
                stats = redis.Redis.from_url(url, db=db)
                stats.config_resetstat()
                t0 = time.perf_counter()
                fn(part)
                secs[name] += time.perf_counter() - t0
                calls, us = _calls(stats)
                cmds[name] += calls
                usec[name] += us
        ratio = secs["hand"] / secs["redmodel"]
        ratios.append(ratio)
        per_obj = {k: v / n for k, v in cmds.items()}
        print(f"       server time per object: redmodel {usec['redmodel'] / n:.1f} µs, "
              f"hand-written {usec['hand'] / n:.1f} µs", flush=True)
        print(f"rep {rep + 1}: redmodel {n / secs['redmodel']:,.0f}/s, hand-written "
              f"{n / secs['hand']:,.0f}/s, ratio {ratio:.2f}x", flush=True)
        t0 = time.perf_counter()
        mine.store.delete_many(bench_queries.Hat, [h.id for h in hats])
        print(f"       delete_many {n / (time.perf_counter() - t0):,.0f}/s", flush=True)
    print(f"indexed save_many, median of {reps}: {statistics.median(ratios):.2f}x "
          f"hand-written; server commands per object: redmodel {per_obj['redmodel']:.1f}, "
          f"hand-written {per_obj['hand']:.1f}")
    mine.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--url")
    a = ap.parse_args()
    if a.url:
        run(a.url, a.n, a.reps)
        return
    with RedisServer() as s:
        run(s.url, a.n, a.reps)


if __name__ == "__main__":
    main()
