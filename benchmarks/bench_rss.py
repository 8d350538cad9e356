"""Section 10: the client's peak memory (RSS) in one bulk call of many small objects.

Each case runs in a fresh process (``python -m benchmarks.bench_rss CASE URL DB COUNT``),
which reads its resident set size after its imports (the baseline), builds its input, makes
one call, and reports the high-water mark (``getrusage`` ``ru_maxrss``) as JSON. The
objects' own size is the RSS growth of building them as a list. Full mode only: 1,000,000
tutorial hats, about 200 MB of objects.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from benchmarks._common import Context, Section, table

DB = 1  # empty when this section starts (the contest section flushes it), flushed at the end
COUNT = 1_000_000
CHUNK = 1000
ROOT = Path(__file__).resolve().parent.parent


def rss_now() -> int:
    """Resident bytes now (Linux /proc; elsewhere the high-water mark)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return rss_peak()


def rss_peak() -> int:
    """The process's resident high-water mark in bytes (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---- the cases, run in the child -------------------------------------------------------


def _hats(count: int) -> Iterator[Any]:
    from benchmarks._models import HatHash, hat  # noqa: PLC0415

    return (hat(HatHash, i) for i in range(count))


def _indexed_hats(count: int) -> Iterator[Any]:
    from benchmarks.bench_queries import make_hats  # noqa: PLC0415

    step = 10_000  # make_hats draws a list: made in slices, so a generator stays small
    for start in range(0, count, step):
        yield from make_hats(min(step, count - start), seed=start, prefix=f"h{start}-")


def _hand_save(r: redis.Redis, hats: list[Any]) -> None:
    from benchmarks.bench_mapper import HandWritten  # noqa: PLC0415

    hw = HandWritten(r)
    for i in range(0, len(hats), CHUNK):
        hw.save_many(hats[i:i + CHUNK])


def _hand_get(r: redis.Redis, ids: list[str]) -> list[Any]:
    from benchmarks.bench_mapper import HandWritten  # noqa: PLC0415

    hw = HandWritten(r)
    out: list[Any] = []
    for i in range(0, len(ids), CHUNK):
        out += hw.get_many(ids[i:i + CHUNK])
    return out


# case -> (input: "list" of hats, "generator" of hats or "ids", the call)
CASES: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "redmodel `save_many(list)`": ("list", lambda store, xs: store.save_many(xs)),
    "redmodel `get_many(ids)`": ("ids", lambda store, ids: store.get_many(_hat_cls(), ids)),
    "redmodel `save_many(generator)`": ("generator", lambda store, xs: store.save_many(xs)),
    "redmodel `get_many(generator of ids)`": (
        "id generator", lambda store, ids: store.get_many(_hat_cls(), ids)),
    "redmodel indexed `save_many(list)`": ("indexed list", lambda store, xs: store.save_many(xs)),
    "redmodel indexed `save_many(generator)`": (
        "indexed generator", lambda store, xs: store.save_many(xs)),
    f"hand-written: a pipeline per {CHUNK:,} (list)": (
        "list", lambda store, xs: _hand_save(store.client, xs)),
    f"hand-written: HGETALL pipeline per {CHUNK:,}": (
        "ids", lambda store, ids: _hand_get(store.client, ids)),
}


def _hat_cls() -> type:
    from benchmarks._models import HatHash  # noqa: PLC0415

    return HatHash


def child(case: str, url: str, db: int, count: int) -> dict[str, Any]:
    """Run one case in this process and return its measurements."""
    import redmodel  # noqa: PLC0415
    from benchmarks import _models, bench_mapper  # noqa: F401, PLC0415  (before the baseline)

    kind, call = CASES[case]
    store = redmodel.Store.from_url(url, db=db)
    ids = [str(i) for i in range(count)] if kind == "ids" else None
    baseline = rss_now()
    objects = 0
    if kind == "list":
        arg: Any = list(_hats(count))
        objects = rss_now() - baseline
    elif kind == "indexed list":
        arg = list(_indexed_hats(count))
        objects = rss_now() - baseline
    elif kind == "generator":
        arg = _hats(count)
    elif kind == "indexed generator":
        arg = _indexed_hats(count)
    elif kind == "id generator":
        arg = (str(i) for i in range(count))
    else:
        arg = ids
    t0 = time.perf_counter()
    out = call(store, arg)
    elapsed = time.perf_counter() - t0
    peak = rss_peak()
    if kind in ("ids", "id generator"):
        assert out is not None and len(out) == count and all(h is not None for h in out)
    store.close()
    return {"case": case, "count": count, "baseline": baseline, "objects": objects,
            "peak": peak, "seconds": elapsed}


# ---- the parent ------------------------------------------------------------------------


def measure(case: str, url: str, db: int, count: int) -> dict[str, Any]:
    """Run ``case`` in a fresh Python process and return its measurements."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_rss", case, url, str(db), str(count)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{case}: exit {done.returncode}\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_all(url: str, count: int, db: int = DB) -> list[dict[str, Any]]:
    """Every case in order (the saves before the reads), then flush the database."""
    r = redis.Redis.from_url(url, db=db)
    try:
        if r.dbsize():
            raise RuntimeError(f"database {db} is not empty: the RSS section writes into it "
                               "and flushes it")
        return [measure(case, url, db, count) for case in CASES]
    finally:
        r.flushdb()
        r.close()


def rss_table(results: list[dict[str, Any]]) -> str:
    mb = 1024 * 1024
    objects = max(r["objects"] for r in results)
    rows = []
    for r in results:
        grew = r["peak"] - r["baseline"]
        rows.append([r["case"], f"{r['count']:,}", f"{r['baseline'] / mb:,.0f}",
                     f"{r['objects'] / mb:,.0f}" if r["objects"] else "—",
                     f"{grew / mb:,.0f}", f"{grew / objects:.2f}x" if objects else "—",
                     f"{r['seconds']:.1f} s", f"{r['count'] / r['seconds']:,.0f}"])
    return table(["call", "objects", "RSS after imports (MB)", "objects' own size (MB)",
                  "peak RSS - baseline (MB)", "peak / objects' size", "time",
                  "objects/s"], rows, "lrrrrrrr")


def run(ctx: Context) -> Section:
    section = Section("11. Client memory: peak RSS of one bulk call")
    if ctx.quick:
        section.blocks.append(f"Full mode only ({COUNT:,} objects, one process per call).")
        return section
    results = measure_all(ctx.url, COUNT)
    section.blocks.append(rss_table(results))
    section.blocks.append(
        "One fresh process per row. Objects: the tutorial hat (`_models.HatHash`). "
        "*Baseline*: RSS after the imports (and, for reads, after building the list of "
        "ids). *Objects' own size*: RSS growth of building the list of hats. *Peak*: "
        "`ru_maxrss` after the call; for reads it includes the returned objects, which "
        "are as large as the list of hats. The generator row never holds every hat "
        "unless the call does.")
    section.data = {"results": results}
    return section


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "--table":  # python -m benchmarks.bench_rss --table [COUNT]: alone
        from redmodel.testing import RedisServer

        with RedisServer() as server:
            print(rss_table(measure_all(server.url, int(sys.argv[2]) if sys.argv[2:]
                                        else COUNT)))
    else:
        case_, url_, db_, count_ = sys.argv[1:5]
        print(json.dumps(child(case_, url_, int(db_), int(count_))))
