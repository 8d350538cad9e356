"""Queries and indexed writes: redmodel's indexes against a hand-written redis-py index,
walrus and rom, on the same server in the same run.

    python benchmarks/bench_queries.py [--quick] [--url redis://...] [--out DIR]

Hats have a color (8 values), a style (4), a price (cents, 1.00-199.99) and a quantity
(0-999). Each implementation writes into its own logical database (5: redmodel,
6: hand-written, 7: walrus, 8: rom), which must be empty; they are flushed between sizes
and at the end. Loading is interleaved chunk by chunk (so drift hits all), query samples
are interleaved A B C D A B C D ..., medians are reported. Without ``--url`` a throwaway
server is started and stopped.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import multiprocessing
import os
import pstats
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import redis

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redmodel
from benchmarks._common import Context, Section, fmt_time, interleaved, machine, pyplot, table
from benchmarks._mappers import HandWritten, Rom, Walrus
from redmodel import between, ge, gt, lt, one_of

COLORS = ("black", "white", "red", "green", "blue", "brown", "grey", "navy")
STYLES = ("fitted", "snapback", "trucker", "beanie")
DBS = {"redmodel": 5, "hand": 6, "walrus": 7, "rom": 8}
RESULTS = Path(__file__).resolve().parent / "results"
QUERY_TARGET = 1.2
SAVE_TARGET = 0.8
MEMORY_TARGET = 1.3


@redmodel.model(prefix="ihat")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    style: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    quantity: int = redmodel.field(index="range")
    id: str = redmodel.key_field()


def make_hats(n: int, seed: int, prefix: str = "h") -> list[Hat]:
    rng = random.Random(seed)
    return [Hat(color=rng.choice(COLORS), style=rng.choice(STYLES),
                price=rng.randrange(100, 20000) / 100, quantity=rng.randrange(1000),
                id=f"{prefix}{i:07d}") for i in range(n)]


# Parameters: Q1 ~ N/8, Q2 ~ 2.5% of N, Q3 ~ N/16, Q4 10, Q5 count of ~N/4, Q6 ~ N/64.
# Price bounds sit on half cents, so inclusive and exclusive ends select the same hats.
PARAMS: dict[str, tuple[Any, ...]] = {
    "q1": ("red",),
    "q2": (100.005, 104.995),
    "q3": ("red", 100.005),
    "q4": (10,),
    "q5": ("trucker",),
    "q6": ("red", "trucker", 499),
}
QUERIES = {
    "q1": "Q1 color = red",
    "q2": "Q2 100.005 ≤ price ≤ 104.995",
    "q3": "Q3 color = red AND price < 100.005",
    "q4": "Q4 top 10 by price desc",
    "q5": "Q5 count style = trucker",
    "q6": "Q6 color AND style AND quantity > 499",
}


class Redmodel:
    """redmodel's Store: ``save`` / ``save_many`` (chunk_size 1,000: a bulk call of up to
    1,000 objects is one round trip, as the hand-written code's one pipeline per call) and
    ``find``."""

    name = "redmodel"

    def __init__(self, url: str, db: int) -> None:
        self.store = redmodel.Store.from_url(url, db=db, chunk_size=1000)
        self.r = self.store.client

    def close(self) -> None:
        self.store.close()

    def save_one(self, h: Hat) -> None:
        self.store.save(h)

    def save_chunk(self, hats: Sequence[Hat]) -> None:
        self.store.save_many(hats)

    def change_color(self, hat_id: str, color: str) -> None:
        h = self.store.get(Hat, hat_id)
        h.color = color
        self.store.save(h)

    def q1(self, color: str) -> list[Hat]:
        return self.store.find(Hat, color=color).all()

    def q2(self, low: float, high: float) -> list[Hat]:
        return self.store.find(Hat, price=between(low, high)).all()

    def q3(self, color: str, below: float) -> list[Hat]:
        return self.store.find(Hat, color=color, price=lt(below)).all()

    def q4(self, n: int) -> list[Hat]:
        return self.store.find(Hat).order_by("-price").limit(n).all()

    def q5(self, style: str) -> int:
        return self.store.find(Hat, style=style).count()

    def q6(self, color: str, style: str, above: int) -> list[Hat]:
        return self.store.find(Hat, color=color, style=style, quantity=gt(above)).all()

    @staticmethod
    def ids(objs: Sequence[Any]) -> set[str]:
        return {o.id for o in objs}

    @staticmethod
    def object_key(hat_id: str, n: int) -> str:
        return f"ihat:{hat_id}"


def implementations(url: str) -> list[Any]:
    return [Redmodel(url, DBS["redmodel"]), HandWritten(url, DBS["hand"], Hat),
            Walrus(url, DBS["walrus"]), Rom(url, DBS["rom"])]


def db_client(url: str, db: int) -> redis.Redis:
    return redis.Redis.from_url(url, db=db, decode_responses=False)


# ---- measuring -----------------------------------------------------------------------------


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def load(impls: list[Any], hats: list[Hat], chunk: int, admin: redis.Redis
         ) -> tuple[list[float], list[int]]:
    """Save every hat with each implementation's bulk path, chunk by chunk, rotating
    which goes first. Returns (seconds, used_memory delta) per implementation."""
    secs = [0.0] * len(impls)
    mem = [0] * len(impls)
    for c, start in enumerate(range(0, len(hats), chunk)):
        part = hats[start:start + chunk]
        order = list(range(len(impls)))
        order = order[c % len(order):] + order[:c % len(order)]
        for i in order:
            before = used_memory(admin)
            t0 = time.perf_counter()
            impls[i].save_chunk(part)
            secs[i] += time.perf_counter() - t0
            mem[i] += used_memory(admin) - before
    return secs, mem


def memory_usage(impl: Any, r: redis.Redis, hats: list[Hat], rng: random.Random) -> float:
    """Bytes per object by MEMORY USAGE: a sample of object keys (times N) plus every
    other key of the implementation's database (sampled when there are many)."""
    n = len(hats)
    picks = rng.sample(range(n), min(300, n))
    objects = {impl.object_key(hats[i].id, i).encode() for i in picks}
    with r.pipeline(transaction=False) as pipe:
        for k in objects:
            pipe.memory_usage(k, samples=0)
        per_object = statistics.fmean(pipe.execute())
    every_object = {impl.object_key(h.id, i).encode() for i, h in enumerate(hats)}
    others = [k for k in r.scan_iter(count=5000) if k not in every_object]
    sample = others if len(others) <= 3000 else rng.sample(others, 3000)
    with r.pipeline(transaction=False) as pipe:
        for k in sample:
            pipe.memory_usage(k, samples=0)
        sizes = [s or 0 for s in pipe.execute()]
    index_total = sum(sizes) * len(others) / max(1, len(sample))
    return per_object + index_total / n


def check_results(impls: list[Any]) -> dict[str, int]:
    """Run each query once per implementation (untimed) and assert they agree; returns
    the result size per query."""
    sizes = {}
    for q, args in PARAMS.items():
        got = [getattr(impl, q)(*args) for impl in impls]
        if q == "q5":
            assert len(set(got)) == 1, (q, got)
            sizes[q] = got[0]
            continue
        if q == "q4":  # equal prices may tie in a different order: compare prices
            prices = [[round(o.price, 2) for o in g] for g in got]
            assert all(p == prices[0] for p in prices), (q, prices)
            assert prices[0] == sorted(prices[0], reverse=True), prices[0]
        else:
            idsets = [impl.ids(g) for impl, g in zip(impls, got, strict=True)]
            assert all(s == idsets[0] for s in idsets), (q, [len(s) for s in idsets])
        sizes[q] = len(got[0])
    return sizes


def server_time(r: redis.Redis, fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(wall seconds per call, server-side seconds per call from INFO commandstats)."""
    r.config_resetstat()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    wall = (time.perf_counter() - t0) / repeat
    return wall, sum(usec for usec, _, _ in top_level(r)) / 1e6 / repeat


def top_level(r: redis.Redis) -> list[tuple[int, str, int]]:
    """(usec, command, calls) from INFO commandstats, for the commands the client sent:
    when a script ran, the commands it called are counted inside EVALSHA too, so only
    EVALSHA and HGETALL (which the query script never calls) are kept."""
    stats = r.info("commandstats")
    rows = [(v["usec"], k.removeprefix("cmdstat_"), v["calls"]) for k, v in stats.items()
            if not k.startswith(("cmdstat_config", "cmdstat_info"))]
    if any(name.startswith(("evalsha", "eval")) for _, name, _ in rows):
        rows = [row for row in rows if row[1].startswith(("eval", "hgetall"))]
    return sorted(rows, reverse=True)


def server_breakdown(r: redis.Redis, fn: Callable[[], Any]) -> str:
    r.config_resetstat()
    fn()
    parts = top_level(r)
    return ", ".join(f"{name} x{calls} {fmt_time(usec / 1e6)}" for usec, name, calls in parts[:3])


def profile_top(fn: Callable[[], Any], lines: int = 8) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(lines)
    text = out.getvalue()
    start = text.find("ncalls")
    return text[start:].rstrip() if start >= 0 else text


# ---- one size --------------------------------------------------------------------------------


@attrs.define
class SizeResult:
    n: int
    names: list[str]
    sizes: dict[str, int]
    query_times: dict[str, list[float]]
    save_one: list[float]  # ops/s
    save_many: list[float]  # ops/s
    mem_delta: list[float]  # bytes per object (used_memory)
    mem_usage: list[float]  # bytes per object (MEMORY USAGE)
    server: dict[str, list[tuple[float, float]]]  # query -> [(wall, server)] rm, hand
    breakdown: dict[str, list[str]]


def measure_size(url: str, n: int, quick: bool, seed: int) -> SizeResult:
    admins = {name: db_client(url, db) for name, db in DBS.items()}
    for r in admins.values():
        r.flushdb()
    impls = implementations(url)
    try:
        hats = make_hats(n, seed)
        admin = admins["redmodel"]
        chunk = 500 if quick else 1000
        secs, mem = load(impls, hats, chunk, admin)
        rng = random.Random(seed + 1)
        usage = [memory_usage(impl, admins[key], hats, rng)
                 for impl, key in zip(impls, DBS, strict=True)]
        sizes = check_results(impls)
        samples = 5 if quick else (15 if n <= 20_000 else 5)
        warmup = 1
        query_times = {}
        for q, args in PARAMS.items():
            cases = [(lambda impl=impl, q=q, args=args: getattr(impl, q)(*args))
                     for impl in impls]
            query_times[q] = interleaved(cases, samples, warmup=warmup)
        # single saves of new hats (after the queries, so results above are untouched)
        fresh = make_hats(60 if quick else 300, seed + 2, prefix="s")
        counters = [iter(fresh) for _ in impls]
        one_cases = [(lambda impl=impl, it=it: impl.save_one(next(it)))
                     for impl, it in zip(impls, counters, strict=True)]
        one = interleaved(one_cases, len(fresh) - 2, warmup=1)
        server = {}
        breakdown = {}
        for q, args in PARAMS.items():
            pair = []
            texts = []
            for impl, key in zip(impls[:2], ("redmodel", "hand"), strict=True):
                def call(impl: Any = impl, q: str = q, args: tuple[Any, ...] = args) -> Any:
                    return getattr(impl, q)(*args)
                pair.append(server_time(admins[key], call, 3 if quick or n > 20_000 else 5))
                texts.append(server_breakdown(admins[key], call))
            server[q] = pair
            breakdown[q] = texts
        return SizeResult(
            n=n, names=[i.name for i in impls], sizes=sizes, query_times=query_times,
            save_one=[1 / t for t in one], save_many=[n / s for s in secs],
            mem_delta=[m / n for m in mem], mem_usage=usage, server=server,
            breakdown=breakdown)
    finally:
        for impl in impls:
            impl.close()
        for r in admins.values():
            r.flushdb()
            r.close()


# ---- large results: other clients' latency, paging ----------------------------------------

PAGING_SIZES = {True: 2_000, False: 200_000}
PING_TARGET = 0.005
PAGES_TARGET = 1.2
SLOW_CALL = 500  # µs: server calls at least this long are read back from SLOWLOG

# Queries every hat matches, one per plan shape: a walk of the all-ids index, of the sort
# field's index, a walk filtered by a range, a union of equality sets.
BIG_QUERIES: dict[str, Callable[[redmodel.Store], redmodel.Query[Any]]] = {
    "all, by id": lambda s: s.find(Hat),
    "all, by price": lambda s: s.find(Hat).order_by("price"),
    "price ≥ 0, by id": lambda s: s.find(Hat, price=ge(0)),
    "color in all 8, by -quantity": lambda s: s.find(
        Hat, color=one_of(COLORS)).order_by("-quantity"),
}


def _ping_loop(url: str, ready: Any, stop: Any, out: Any) -> None:
    """Another client (its own process, so no GIL is shared): PING, a short pause, again;
    sends back every round trip's seconds."""
    r = redis.Redis.from_url(url)
    r.ping()
    ready.set()
    lat = []
    while not stop.is_set():
        t0 = time.perf_counter()
        r.ping()
        lat.append(time.perf_counter() - t0)
        time.sleep(0.0005)
    r.close()
    out.put(lat)


def _pinged(url: str, fn: Callable[[], Any]) -> tuple[float, list[float]]:
    """(seconds fn took, PING round trips another process measured meanwhile)."""
    mp = multiprocessing.get_context("spawn")
    ready, stop, out = mp.Event(), mp.Event(), mp.Queue()
    proc = mp.Process(target=_ping_loop, args=(url, ready, stop, out), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the PING process did not start")
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        stop.set()
        lat: list[float] = out.get(timeout=30)
    finally:
        stop.set()
        proc.join(10)
    return took, lat


def _slow_calls(r: redis.Redis) -> list[int]:
    """µs of each server call at least SLOW_CALL long since the last reset."""
    return [int(e["duration"]) for e in r.slowlog_get(10_000)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _peak_memory(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def large_results(url: str, quick: bool) -> list[str]:
    """Tables: other clients' PING latency while each big query runs; the time of
    ``pages(1000)`` against ``.all()``; client memory of iterating against ``.all()``."""
    n = PAGING_SIZES[quick]
    admin = db_client(url, DBS["redmodel"])
    impl = Redmodel(url, DBS["redmodel"])
    store = impl.store
    saved = {k: admin.config_get(k)[k] for k in ("slowlog-log-slower-than", "slowlog-max-len")}
    try:
        admin.flushdb()
        hats = make_hats(n, seed=11)
        for start in range(0, n, 5000):
            store.save_many(hats[start:start + 5000])
        del hats
        admin.config_set("slowlog-log-slower-than", SLOW_CALL)
        admin.config_set("slowlog-max-len", 10_000)
        ping_rows, page_rows, p99s, ratios = [], [], [], []
        for name, make in BIG_QUERIES.items():
            query = make(store)
            admin.slowlog_reset()
            took, lat = _pinged(url, lambda q=query: q.all())
            slow = _slow_calls(admin)
            p99s.append(_percentile(lat, 0.99))
            ping_rows.append([name, f"{n:,}", fmt_time(took), f"{len(lat):,}",
                              fmt_time(statistics.median(lat)), fmt_time(p99s[-1]),
                              fmt_time(max(lat)),
                              f"{len(slow)}, longest {fmt_time(max(slow) / 1e6)}" if slow
                              else "none"])
            def paged(q: redmodel.Query[Any] = query) -> int:
                return sum(len(page) for page in q.pages(1000))
            whole, by_pages = interleaved([query.all, paged], 1 if quick else 3, warmup=0)
            ratios.append(by_pages / whole)
            page_rows.append([name, fmt_time(whole), fmt_time(by_pages),
                              f"{by_pages / whole:.2f}x"])
        query = BIG_QUERIES["all, by id"](store)
        iterating = _peak_memory(lambda: sum(1 for _ in query))
        gathering = _peak_memory(query.all)
    finally:
        admin.flushdb()
        for key, value in saved.items():
            admin.config_set(key, value)
        impl.close()
        admin.close()
    worst_ping, worst_pages = max(p99s), max(ratios)
    return [
        f"**Another client's PING while a query over {n:,} matches runs** (`.all()`; the "
        "PINGs come from another process, one every 0.5 ms; server calls of at least "
        f"{SLOW_CALL} µs read from SLOWLOG). Target: p99 under {fmt_time(PING_TARGET)} — "
        f"{'met' if worst_ping < PING_TARGET else '**not met**'} (worst p99 "
        f"{fmt_time(worst_ping)}).",
        table(["query (every hat matches)", "matches", ".all() took", "PINGs", "PING p50",
               "PING p99", "PING max", f"server calls ≥ {SLOW_CALL} µs"], ping_rows),
        f"**`pages(1000)` against `.all()` over {n:,} matches** (median of "
        f"{1 if quick else 3}, interleaved; every page's objects fetched). Target: at most "
        f"{PAGES_TARGET}x — {'met' if worst_pages <= PAGES_TARGET else '**not met**'} "
        f"(worst {worst_pages:.2f}x).",
        table(["query", ".all()", "pages(1000)", "pages / all"], page_rows),
        f"**Client memory** (tracemalloc peak, `all, by id`, {n:,} matches): iterating "
        f"(`for hat in query`, pages of {redmodel._indexes._query.PAGE_SIZE:,}) "
        f"{iterating / 1e6:.1f} MB; `.all()` {gathering / 1e6:.1f} MB.",
    ]


# ---- reporting -------------------------------------------------------------------------------


def x(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def size_tables(res: SizeResult) -> list[str]:
    names = res.names
    rows = []
    for q in PARAMS:
        t = res.query_times[q]
        rows.append([QUERIES[q], f"{res.sizes[q]:,}", *[fmt_time(v) for v in t],
                     *[x(t[0], v) for v in t[1:]]])
    blocks = [f"**{res.n:,} hats: query latency** (median per query, typed objects "
              "returned; ratio = redmodel time / other time, **lower is better**, < 1 "
              "means redmodel is faster)",
              table(["query", "results", *names, *[f"redmodel / {n}" for n in names[1:]]],
                    rows)]
    rows = []
    for i, name in enumerate(names):
        rows.append([name, f"{res.save_one[i]:,.0f}", f"{res.save_many[i]:,.0f}",
                     x(res.save_one[0], res.save_one[i]),
                     x(res.save_many[0], res.save_many[i]),
                     f"{res.mem_delta[i]:,.0f}", f"{res.mem_usage[i]:,.0f}",
                     x(res.mem_delta[0], res.mem_delta[i])])
    blocks.append(f"**{res.n:,} hats: indexed saves and memory** (save ratios = redmodel "
                  "ops/s / other ops/s, **higher is better**; memory ratio = redmodel bytes "
                  "/ other bytes, **lower is better**; memory counts objects and all their "
                  "index keys)")
    blocks.append(table(["implementation", "save one (ops/s)", "save many (ops/s)",
                         "redmodel / it (one)", "redmodel / it (many)",
                         "used_memory Δ / hat (B)", "MEMORY USAGE / hat (B)",
                         "redmodel / it (memory)"], rows))
    return blocks


def targets_table(results: list[SizeResult]) -> str:
    rows = []
    for res in results:
        t = res.query_times
        worst_hw = max(PARAMS, key=lambda q: t[q][0] / t[q][1])
        q_ok = all(t[q][0] / t[q][1] <= QUERY_TARGET for q in PARAMS)
        mappers_ok = all(t[q][0] < min(t[q][2], t[q][3]) for q in PARAMS)
        slower = [q.upper() for q in PARAMS if t[q][0] >= min(t[q][2], t[q][3])]
        rows.append([f"{res.n:,}", "every query ≤ 1.2x hand-written",
                     f"{'met' if q_ok else '**not met**'} (worst {worst_hw.upper()} "
                     f"{t[worst_hw][0] / t[worst_hw][1]:.2f}x)"])
        rows.append([f"{res.n:,}", "every query faster than walrus and rom",
                     "met" if mappers_ok else f"**not met** ({', '.join(slower)})"])
        one = res.save_one[0] / res.save_one[1]
        many = res.save_many[0] / res.save_many[1]
        rows.append([f"{res.n:,}", "indexed save ≥ 0.8x hand-written",
                     f"{'met' if min(one, many) >= SAVE_TARGET else '**not met**'} "
                     f"(one {one:.2f}x, many {many:.2f}x)"])
        mem = res.mem_delta[0] / res.mem_delta[1]
        rows.append([f"{res.n:,}", "memory per object ≤ 1.3x hand-written",
                     f"{'met' if mem <= MEMORY_TARGET else '**not met**'} ({mem:.2f}x by "
                     f"used_memory, {res.mem_usage[0] / res.mem_usage[1]:.2f}x by "
                     "MEMORY USAGE)"])
    return table(["hats", "target", "result"], rows, "lll")


def server_table(res: SizeResult) -> str:
    rows = []
    for q in PARAMS:
        (rw, rs), (hw, hs) = res.server[q]
        rows.append([QUERIES[q], fmt_time(rw), fmt_time(rs), f"{rs / rw:.0%}", fmt_time(hw),
                     fmt_time(hs), f"{hs / hw:.0%}", res.breakdown[q][0],
                     res.breakdown[q][1]])
    return table(["query", "redmodel wall", "redmodel server", "share", "hand wall",
                  "hand server", "share", "redmodel: top server commands (one run)",
                  "hand-written: top server commands"], rows, "lrrrrrrll")


def plot(results: list[SizeResult], out: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.2),
                             squeeze=False)
    labels = [q.upper() for q in PARAMS]
    for ax, res in zip(axes[0], results, strict=True):
        others = res.names[1:]
        width = 0.8 / len(others)
        for j, name in enumerate(others):
            vals = [res.query_times[q][0] / res.query_times[q][j + 1] for q in PARAMS]
            ax.bar([i + (j - (len(others) - 1) / 2) * width for i in range(len(labels))],
                   vals, width, label=f"vs {name}")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.axhline(QUERY_TARGET, color="red", lw=0.8, ls="--", label="target 1.2x (hand)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("redmodel time / other time (lower is better)")
        ax.set_title(f"{res.n:,} hats")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "queries.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ensure_empty(url: str) -> None:
    for name, db in DBS.items():
        r = db_client(url, db)
        try:
            if r.dbsize():
                raise RuntimeError(f"database {db} ({name}) is not empty: the query "
                                   "benchmark flushes databases 5-8")
        finally:
            r.close()


def run(url: str, quick: bool, out: Path | None = None) -> str:
    """Every table as Markdown; the plot goes to ``out`` (default results/quick|full)."""
    out = out or RESULTS / ("quick" if quick else "full")
    ensure_empty(url)
    ns = [500] if quick else [20_000, 200_000]
    results = [measure_size(url, n, quick, seed=7 + i) for i, n in enumerate(ns)]
    blocks: list[str] = []
    for res in results:
        blocks += size_tables(res)
    blocks.append("**Targets** (measured, not asserted)")
    blocks.append(targets_table(results))
    last = results[-1]
    blocks.append(f"**Where the time goes, {last.n:,} hats** (redmodel and hand-written run "
                  "alone, not interleaved; server time = sum of INFO commandstats usec over "
                  "the run, per query, of the commands the client sent)")
    blocks.append(server_table(last))
    slow = max(PARAMS, key=lambda q: last.query_times[q][0] / last.query_times[q][1])
    impl = Redmodel(url, DBS["redmodel"])
    try:
        hats = make_hats(min(last.n, 20_000), seed=99)
        impl.store.client.flushdb()
        impl.save_chunk(hats)
        prof = profile_top(lambda: getattr(impl, slow)(*PARAMS[slow]))
    finally:
        impl.store.client.flushdb()
        impl.close()
    blocks.append(f"**cProfile of redmodel's {slow.upper()} on {len(hats):,} hats** (client "
                  "side; top functions by own time)")
    blocks.append("```\n" + prof + "\n```")
    blocks.append(f"![queries]({plot(results, out).name})")
    blocks += large_results(url, quick)
    return "\n\n".join(blocks)


def section(ctx: Context) -> Section:
    """For ``python -m benchmarks``: the same tables as a Section."""
    s = Section("9. Queries and indexed writes: redmodel vs hand-written index, walrus, rom")
    s.blocks.append(run(ctx.url, ctx.quick, ctx.out))
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 hats, few samples (< 20 s)")
    p.add_argument("--url", default=os.environ.get("REDIS_URL"),
                   help="an existing server (default $REDIS_URL, else a throwaway one)")
    p.add_argument("--out", type=Path, default=None,
                   help="plot and queries.md folder (default benchmarks/results/quick|full)")
    args = p.parse_args(argv)
    out: Path = args.out or RESULTS / ("quick" if args.quick else "full")
    command = "python benchmarks/bench_queries.py" + (" --quick" if args.quick else "")
    started = time.perf_counter()

    def go(url: str, origin: str) -> str:
        client = db_client(url, 0)
        info = machine(client)
        client.close()
        head = [f"# Queries and indexed writes ({'quick' if args.quick else 'full'})",
                f"Command: `{command}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} "
                f"UTC; server: {origin}.",
                table(["machine", ""], [[k, v] for k, v in info.items()], "ll")]
        return "\n\n".join([*head, run(url, args.quick, out)])

    if args.url:
        text = go(args.url, "given with --url / $REDIS_URL")
    else:
        from redmodel.testing import RedisServer  # noqa: PLC0415

        with RedisServer() as server:
            text = go(server.url, f"throwaway server started by the benchmark (pid "
                                  f"{server.pid})")
    text += f"\n\n_Run time: {time.perf_counter() - started:.0f} s._\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "queries.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
