"""Section 0: every contestant in one table, one run: hand-written redis-py, redmodel, walrus,
rom, pydantic-redis and redis-om, each row an operation, each cell a ratio to hand-written.

Rows are issue 17's table (plus the project's flat, update and incr rows, and update and incr
against a hand-written script with redmodel's existence check: redmodel's own share of the
gap). Plain rows use the tutorial hat (``_models``) through ``_mappers``' plain
contestants; indexed rows use the query benchmark's hat, implementations, loader and memory
meter (``bench_queries``) for the four contestants that have secondary indexes on plain
Redis.

Every repetition runs every row; inside a row the contestants take turns (blocks of single
calls, or one chunk each for bulk rows), the order rotating, so machine noise hits them
alike. A cell is the median over the repetitions. Plain rows write into databases 1-4
(1 hand-written, 2 redmodel, 3 walrus and pydantic-redis, 4 rom and redis-om), indexed
rows into the query benchmark's 5-8; all must be empty and are flushed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import attrs
import redis

from benchmarks import bench_queries
from benchmarks._common import Context, Section, fmt_time, pyplot, table
from benchmarks._mappers import PLAIN
from benchmarks._models import HatHash, hat
from redmodel.testing import RedisServer

BUY_ID = "to-buy"
PLAIN_DBS = {"hand-written redis-py": 1, "redmodel": 2, "walrus": 3, "rom": 4,
             "pydantic-redis": 3, "redis-om": 4}
NO_INDEX = {
    "pydantic-redis": "no secondary indexes: it keeps only a ZSET of every key; a filter "
                      "reads every record",
    "redis-om": "its indexes and queries are RediSearch's (FT.CREATE / FT.SEARCH), which "
                "plain Redis does not have",
}
REDIS_OM_MISSING = (
    "redis-om is not installed here: it is not in the `bench` extra because it requires "
    "`types-redis<5`, a stub package that shadows redis-py 8's own type hints and breaks "
    "`mypy --strict redmodel`. Install it in a separate venv to fill this column (see "
    "docs/performance.md)"
)


@attrs.frozen
class Row:
    key: str
    label: str
    kind: str  # "calls" (ops/s), "bulk" (objects/s), "bytes" or "seconds" (lower is better)
    goal: float | None
    goal_note: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.kind in ("calls", "bulk")


ROWS = (
    Row("save", "save one (hash)", "calls", 1.0),
    Row("get", "get one", "calls", 1.0),
    Row("save_many", "save_many (hash, chunks of {chunk:,})", "bulk", 1.5),
    Row("get_many", "get_many (chunks of {chunk:,})", "bulk", 1.5),
    Row("buy", "buy through `@transaction` (WATCH path)", "calls", 1.0),
    Row("isave", "indexed save, one at a time", "calls", 1.0),
    Row("isave_many", "indexed save_many (chunks of {chunk:,})", "bulk", 1.0),
    Row("ichange", "indexed change of a stored object (get, new color, save)", "calls",
        None, "not in issue 17: the same guarantee on both sides"),
    Row("imem", "indexed memory per object (used_memory Δ)", "bytes", 1.1),
    Row("imem_usage", "indexed memory per object (MEMORY USAGE)", "bytes", 1.1),
    Row("q3", "query time Q3 (color AND price <)", "seconds", 1.0),
    Row("q5", "query time Q5 (count)", "seconds", 1.0),
    Row("q6", "query time Q6 (3 terms)", "seconds", 1.0),
    Row("save_flat", "flat layout: save one", "calls", 0.8),
    Row("save_many_flat", "flat layout: save_many (chunks of {chunk:,})", "bulk", 0.8),
    Row("get_flat", "flat layout: get one", "calls", 0.8),
    Row("update", "`update` (one field)", "calls", 1.0, "single call at par"),
    Row("update_guarded", "`update` (one field), hand-written with the same existence check",
        "calls", None, "not in issue 17: the guarantee on both sides, so the gap is redmodel's"),
    Row("incr", "`incr`", "calls", 1.0, "single call at par"),
    Row("incr_guarded", "`incr`, hand-written with the same existence check", "calls", None,
        "not in issue 17: the guarantee on both sides, so the gap is redmodel's"),
)
# rows whose hand-written side refuses a missing object as redmodel does (bench_mapper's
# UPDATE_EXISTING / INCR_EXISTING scripts, through register_script): the contestant's method
GUARDED = {"update_guarded": "update_guarded", "incr_guarded": "incr_guarded"}
GUARDED_ONLY = ("a reference for redmodel's own cost only: this mapper's call is measured in "
                "the row without the existence check")
ROW = {r.key: r for r in ROWS}
PLAIN_CALL_ROWS = ("save", "get", "buy", "update", "update_guarded", "incr", "incr_guarded",
                   "save_flat", "get_flat")
PLAIN_BULK_ROWS = ("save_many", "get_many", "save_many_flat")
QUERY_ROWS = ("q3", "q5", "q6")
INDEXED_ROWS = ("isave", "isave_many", "ichange", "imem", "imem_usage", *QUERY_ROWS)


@attrs.frozen
class Params:
    n: int  # hats stored per contestant (plain and indexed)
    reps: int
    chunk: int  # objects per bulk call
    calls: int  # calls per single-call row, per contestant, per repetition
    block: int  # calls a contestant makes before the next takes its turn
    query_calls: dict[str, int]  # per query, per contestant, per repetition


def params(quick: bool) -> Params:
    if quick:
        return Params(n=300, reps=2, chunk=150, calls=30, block=15,
                      query_calls={"q3": 2, "q5": 10, "q6": 2})
    return Params(n=20_000, reps=5, chunk=1000, calls=1000, block=50,
                  query_calls={"q3": 10, "q5": 200, "q6": 10})


# ---- timing ----------------------------------------------------------------------------


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the collector off while timing (as ``timeit`` does)."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def take_turns(fns: dict[str, Callable[[Any], Any]], args: Sequence[Any], block: int,
               turn: int) -> dict[str, float]:
    """Seconds each contestant spent calling its ``fn`` once per item of ``args``.

    The contestants take turns: each makes ``block`` calls, then the next; the order
    rotates every block (starting at ``turn``), so a burst of noise lands on all of them."""
    names = list(fns)
    secs = dict.fromkeys(names, 0.0)
    clock = time.perf_counter
    with gc_paused():
        for b, start in enumerate(range(0, len(args), block)):
            part = args[start:start + block]
            k = (turn + b) % len(names)
            for name in names[k:] + names[:k]:
                fn = fns[name]
                t0 = clock()
                for a in part:
                    fn(a)
                secs[name] += clock() - t0
    return secs


# ---- the run ---------------------------------------------------------------------------


@attrs.define
class Results:
    """Per row and contestant: the value of each repetition, or why there is none."""

    names: list[str]
    rows: frozenset[str] = frozenset(r.key for r in ROWS)  # the rows measured
    values: dict[str, dict[str, list[float]]] = attrs.Factory(dict)
    missing: dict[str, dict[str, str]] = attrs.Factory(dict)
    absent: dict[str, str] = attrs.Factory(dict)  # contestants not installed here
    how: dict[str, dict[str, str]] = attrs.Factory(dict)

    def add(self, row: str, name: str, value: float) -> None:
        self.values.setdefault(row, {}).setdefault(name, []).append(value)

    def lack(self, row: str, name: str, reason: str) -> None:
        self.missing.setdefault(row, {})[name] = reason

    def median(self, row: str, name: str) -> float | None:
        v = self.values.get(row, {}).get(name)
        return statistics.median(v) if v else None

    def ratio(self, row: str, name: str, base: str) -> float | None:
        """The median over repetitions of ``name``'s value / ``base``'s in the same
        repetition: each repetition compares contestants that took turns under the same
        load, so the pairs are what to compare (throughput ratio for calls and bulk rows,
        higher is better; time or bytes ratio for the others, lower is better)."""
        mine = self.values.get(row, {}).get(name)
        theirs = self.values.get(row, {}).get(base)
        if not mine or not theirs:
            return None
        return statistics.median(a / b for a, b in zip(mine, theirs, strict=True))


def _same_hat(got: Any, want: Any) -> bool:
    return (got is not None and got.color == want.color and got.style == want.style
            and abs(float(got.price) - want.price) < 1e-9 and int(got.quantity) == want.quantity)


class Plain:
    """The plain rows: every available plain contestant, its objects and its calls."""

    def __init__(self, url: str, p: Params, res: Results) -> None:
        self.p = p
        self.res = res
        self.hats = [hat(HatHash, i) for i in range(p.n)]
        self.ids = [h.id for h in self.hats]
        self.cs: dict[str, Any] = {}
        self.objs: dict[str, list[Any]] = {}
        self.flat: dict[str, list[Any]] = {}
        for name, (cls, module) in PLAIN.items():
            if name not in res.names:
                continue
            if module is not None:
                try:
                    importlib.import_module(module)
                except ImportError:
                    res.absent[name] = (REDIS_OM_MISSING if name == "redis-om"
                                        else f"{module} is not installed")
                    for row in (*PLAIN_CALL_ROWS, *PLAIN_BULK_ROWS):
                        res.lack(row, name, res.absent[name])
                    continue
            c = cls(url, PLAIN_DBS[name])
            self.cs[name] = c
            self.objs[name] = c.prepare(self.hats)
            if hasattr(c, "prepare_flat"):
                self.flat[name] = c.prepare_flat(self.hats)
            for row, why in c.na.items():
                res.lack(row, name, why)
            for row, meth in GUARDED.items():
                if not hasattr(c, meth):
                    res.lack(row, name, GUARDED_ONLY)
            for row, how in c.how.items():
                res.how.setdefault(row, {})[name] = how

    def close(self) -> None:
        for c in self.cs.values():
            c.close()

    def _fns(self, row: str) -> dict[str, Callable[[Any], Any]]:
        """Each able contestant's one-argument call for ``row``."""
        fns: dict[str, Callable[[Any], Any]] = {}
        for name, c in self.cs.items():
            if name in self.res.missing.get(row, {}):
                continue
            if row in ("update", "update_guarded"):
                up = getattr(c, GUARDED.get(row, row))
                fns[name] = lambda id_, up=up: up(id_, "white")
            elif row in ("incr", "incr_guarded"):
                inc = getattr(c, GUARDED.get(row, row))
                fns[name] = lambda id_, inc=inc: inc(id_, 1)
            else:
                fns[name] = getattr(c, row)
        return fns

    def _args(self, row: str, name: str, rep: int) -> list[Any]:
        p = self.p
        if row in PLAIN_BULK_ROWS:
            src = self.ids if row == "get_many" else (
                self.flat[name] if row == "save_many_flat" else self.objs[name])
            return [src[i:i + p.chunk] for i in range(0, p.n, p.chunk)]
        window = [(rep * p.calls + i) % p.n for i in range(p.calls)]
        if row == "buy":
            return [BUY_ID] * p.calls
        if row == "save":
            return [self.objs[name][i] for i in window]
        if row == "save_flat":
            return [self.flat[name][i] for i in window]
        return [self.ids[i] for i in window]

    def load(self) -> None:
        """Store every hat (and the hot hat to buy) with each contestant, check what comes
        back, and try each row once: a contestant whose call fails gets the error in its
        cell instead of a number."""
        for name, c in self.cs.items():
            for chunk in self._args("save_many", name, 0):
                c.save_many(chunk)
            if name in self.flat:
                for chunk in self._args("save_many_flat", name, 0):
                    c.save_many_flat(chunk)
            c.stock(BUY_ID)
            for i in (0, self.p.n // 2, self.p.n - 1):
                got = c.get(self.ids[i])
                assert _same_hat(got, self.hats[i]), (name, i, got, self.hats[i])
            got_many = c.get_many(self.ids[:self.p.chunk])
            assert len(got_many) == self.p.chunk, (name, len(got_many))
            assert all(_same_hat(g, h) for g, h in zip(got_many, self.hats, strict=False))
        for row in (*PLAIN_BULK_ROWS, *PLAIN_CALL_ROWS):
            for name, fn in self._fns(row).items():
                try:
                    fn(self._args(row, name, 0)[0])
                except Exception as e:  # a contestant that cannot do it: say so
                    self.res.lack(row, name, f"failed: {type(e).__name__}: {e}"[:200])

    def rep(self, rep: int) -> None:
        p = self.p
        for row in (*PLAIN_BULK_ROWS, *PLAIN_CALL_ROWS):
            if row not in self.res.rows:
                continue
            fns = self._fns(row)
            if not fns:
                continue
            args = {name: self._args(row, name, rep) for name in fns}
            # every contestant walks its own argument list in the same order
            index = list(range(len(next(iter(args.values())))))
            calls = {name: (lambda i, fn=fn, a=args[name]: fn(a[i])) for name, fn in fns.items()}
            block = 1 if row in PLAIN_BULK_ROWS else p.block
            secs = take_turns(calls, index, block, turn=rep)
            per = p.chunk if row in PLAIN_BULK_ROWS else 1
            for name, s in secs.items():
                self.res.add(row, name, len(index) * per / s)


class Indexed:
    """The indexed rows, on bench_queries' four implementations (databases 5-8)."""

    def __init__(self, url: str, p: Params, res: Results) -> None:
        self.p = p
        self.res = res
        self.url = url
        bench_queries.ensure_empty(url)
        impls = {impl.name: impl for impl in bench_queries.implementations(url)}
        self.impls = {name: impls[name] for name in res.names if name in impls}
        self.admins = {impl.name: bench_queries.db_client(url, bench_queries.DBS[key])
                       for key, impl in zip(bench_queries.DBS, impls.values(), strict=True)}
        self.hats = bench_queries.make_hats(p.n, seed=7)
        for name in res.names:
            if name not in self.impls:
                why = res.absent.get(name) or NO_INDEX.get(name, "no secondary indexes")
                for row in INDEXED_ROWS:
                    res.lack(row, name, why)

    def close(self) -> None:
        for impl in self.impls.values():
            impl.close()
        for r in self.admins.values():
            r.flushdb()
            r.close()

    def rep(self, rep: int) -> None:
        p, res = self.p, self.res
        for r in self.admins.values():
            flush_now(r)
        impls = list(self.impls.values())
        secs, mem = bench_queries.load(impls, self.hats, p.chunk,
                                       next(iter(self.admins.values())))
        for impl, s, m in zip(impls, secs, mem, strict=True):
            res.add("isave_many", impl.name, p.n / s)
            res.add("imem", impl.name, m / p.n)
        if rep == 0:
            bench_queries.check_results(impls)  # every implementation finds the same hats
            rng = random.Random(1)
            for impl in impls:
                res.add("imem_usage", impl.name, bench_queries.memory_usage(
                    impl, self.admins[impl.name], self.hats, rng))
        for q in QUERY_ROWS:
            if q not in res.rows:
                continue
            qargs = bench_queries.PARAMS[q]
            fns = {impl.name: (lambda _, impl=impl, q=q, a=qargs: getattr(impl, q)(*a))
                   for impl in impls}
            n = p.query_calls[q]
            for name, s in take_turns(fns, range(n), 1 if n < 20 else 10, rep).items():
                res.add(q, name, s / n)
        if "ichange" in res.rows:
            self.change(rep, impls)
        if "isave" not in res.rows:
            return
        fresh = bench_queries.make_hats(p.calls, seed=100 + rep, prefix=f"s{rep}-")
        fns = {impl.name: impl.save_one for impl in impls}
        for name, s in take_turns(fns, fresh, p.block, rep).items():
            res.add("isave", name, p.calls / s)

    def change(self, rep: int, impls: list[Any]) -> None:
        """The ``ichange`` row: each contestant loads a stored hat, gives it another color
        and saves it, so the old color's entry must go. Every contestant makes the same
        changes in the same order; on the first repetition the queries are compared
        again afterwards."""
        p, res = self.p, self.res
        able = [impl for impl in impls if hasattr(impl, "change_color")]
        for impl in impls:
            if impl not in able:
                res.lack("ichange", impl.name, impl.NO_CHANGE)
        rng = random.Random(200 + rep)
        changes = [(self.hats[rng.randrange(len(self.hats))].id,
                    rng.choice(bench_queries.COLORS)) for _ in range(p.calls)]
        fns = {impl.name: (lambda c, impl=impl: impl.change_color(*c)) for impl in able}
        for name, s in take_turns(fns, changes, p.block, rep).items():
            res.add("ichange", name, p.calls / s)
        if rep == 0:
            bench_queries.check_results(able)


def flush_now(r: redis.Redis) -> None:
    """FLUSHDB SYNC: the memory is free when it returns. (A server with
    ``lazyfree-lazy-user-flush yes``, Valkey's default, would otherwise free it in the
    background while the next load is being measured.)"""
    r.execute_command("FLUSHDB", "SYNC")


def _ensure_plain_empty(url: str) -> None:
    for db in sorted(set(PLAIN_DBS.values())):
        r = redis.Redis.from_url(url, db=db)
        try:
            if r.dbsize():
                raise RuntimeError(f"database {db} is not empty: the contest section writes "
                                   "into databases 1-8 and flushes them at the end")
        finally:
            r.close()


def _flush_plain(url: str) -> None:
    for db in sorted(set(PLAIN_DBS.values())):
        r = redis.Redis.from_url(url, db=db)
        r.flushdb()
        r.close()


def measure(url: str, p: Params, names: Sequence[str] | None = None,
            rows: Sequence[str] | None = None) -> Results:
    """Every row for every contestant (or only ``names``, hand-written first, and ``rows``)."""
    chosen = [n for n in PLAIN if names is None or n in names]
    res = Results(names=chosen, rows=frozenset(rows or ROW))
    _ensure_plain_empty(url)
    plain = indexed = None
    try:
        plain = Plain(url, p, res)
        plain.load()
        if res.rows & set(INDEXED_ROWS):
            indexed = Indexed(url, p, res)
        for rep in range(p.reps):
            t0 = time.perf_counter()
            plain.rep(rep)
            t1 = time.perf_counter()
            if indexed is not None:
                indexed.rep(rep)
            print(f"contest: repetition {rep + 1}/{p.reps}: plain rows {t1 - t0:.0f} s, "
                  f"indexed rows {time.perf_counter() - t1:.0f} s", file=sys.stderr,
                  flush=True)
    finally:
        if plain is not None:
            plain.close()
        if indexed is not None:
            indexed.close()
        _flush_plain(url)
    return res


# ---- reporting -------------------------------------------------------------------------


def _amount(row: Row, v: float) -> str:
    if row.kind == "bytes":
        return f"{v:,.0f} B"
    if row.kind == "seconds":
        return fmt_time(v)
    return f"{v:,.0f}/s"


def goal_text(row: Row) -> str:
    if row.goal is None:
        return row.goal_note or "—"
    sign = "≥" if row.higher_is_better else "≤"
    return f"{sign} {row.goal:.1f}x" + (f" ({row.goal_note})" if row.goal_note else "")


def met(row: Row, r: float | None) -> str:
    if r is None or row.goal is None:
        return "—"
    ok = r >= row.goal if row.higher_is_better else r <= row.goal
    return "met" if ok else "**not met**"


class Footnotes:
    """Numbered footnotes, one per distinct text, naming the contestants it is about."""

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {}

    def mark(self, text: str, who: str) -> str:
        names = self.texts.setdefault(text, [])
        if who not in names:
            names.append(who)
        return f"[{list(self.texts).index(text) + 1}]"

    def markdown(self) -> str:
        return "\n".join(f"[{i}] {', '.join(who)}: {text}."
                         for i, (text, who) in enumerate(self.texts.items(), start=1))


def contest_table(res: Results, p: Params) -> tuple[str, str, list[dict[str, Any]]]:
    """(the Markdown table, its footnotes, one dict per row for the plot and the test)."""
    notes = Footnotes()
    lines = []
    data = []
    base_name = res.names[0]
    for row in ROWS:
        if row.key not in res.rows:
            continue
        label = row.label.format(chunk=p.chunk)
        base = res.median(row.key, base_name)
        cells = []
        ratios: dict[str, float | None] = {}
        for name in res.names:
            v = res.median(row.key, name)
            why = res.missing.get(row.key, {}).get(name)
            if v is None or base is None:
                ratios[name] = None
                reason = why or f"no hand-written value ({base_name} missing)"
                cells.append("n/a " + notes.mark(reason, name))
                continue
            r = res.ratio(row.key, name, base_name)
            assert r is not None
            ratios[name] = r
            cell = _amount(row, v) if name == base_name else f"{r:.2f}x ({_amount(row, v)})"
            how = res.how.get(row.key, {}).get(name)
            if how:
                cell += " " + notes.mark(how, name)
            cells.append(cell)
        rm = ratios.get("redmodel")
        lines.append([label, *cells, goal_text(row), met(row, rm)])
        data.append({"row": row.key, "label": label, "higher_is_better": row.higher_is_better,
                     "goal": row.goal, "ratios": ratios,
                     "values": {n: res.median(row.key, n) for n in res.names}})
    header = ["operation", *res.names, "goal (redmodel)", "redmodel vs goal"]
    return table(header, lines, "l" + "r" * (len(header) - 2) + "l"), notes.markdown(), data


def versions() -> str:
    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    parts = [f"redis-py {v('redis')} + hiredis {v('hiredis')}", f"redmodel {v('redmodel')}",
             f"walrus {v('walrus')}", f"rom {v('rom')}",
             f"pydantic-redis {v('pydantic-redis')} (pydantic {v('pydantic')})",
             f"redis-om {v('redis-om')}"]
    return "Contestants: " + "; ".join(parts) + "."


def method(p: Params) -> str:
    return (
        f"N = {p.n:,} hats per contestant, {p.reps} repetitions. Each repetition "
        "runs every row; within a row the contestants take turns (single-call rows: "
        f"{p.block} calls each, {p.calls:,} per contestant per repetition; bulk rows: one "
        f"call of {p.chunk:,} objects each), the order rotating every turn. A cell gives "
        "the median over the repetitions of the contestant / hand-written ratio within "
        "each repetition, then the median absolute value in brackets. Throughput rows "
        "(ops/s, objects/s): **higher is better**; memory and query rows: **lower is "
        "better**. "
        "Every mapper uses its own model and idiom, on redis-py 8 (RESP3, hiredis), on "
        "the same server; objects are built before timing (walrus and rom build theirs "
        "inside `create(**fields)` / `Model(**fields).save()`, their way to save a new "
        "object). Bulk calls: the hand-written code sends one pipeline per call, and "
        "redmodel's stores use `chunk_size=1000`, so each sends one round trip per call "
        "(the default, 500, would send two). Plain rows: the redis-py tutorial's hat "
        "(5 fields), saved over existing "
        "hats (rom: new entities), read back as typed objects; `buy` is the tutorial's "
        "`buyitem()` on one hot hat; walrus, rom, pydantic-redis and redis-om run that very "
        "loop through their own clients, so their distance from 1.00x in that row is the "
        "noise of the run. Indexed rows: the query benchmark's hat with "
        "equality indexes on color and style and range indexes on price and quantity, "
        "loaded into empty databases every repetition; hand-written keeps the same "
        "indexes (a SET per value, a ZSET per number), so memory is like for like. Memory "
        "counts each object and all its index keys: the server's `used_memory` growth "
        "during the load, and MEMORY USAGE of a sample of keys (SAMPLES 0). Query times "
        "include decoding every hit into typed objects.")


def plot(ctx: Context, data: list[dict[str, Any]], names: list[str]) -> Any:
    """Two panels of grouped bars, one group per row, one bar per contestant: throughput
    ratios (higher is better) above, memory and query-time ratios (lower is better)
    below, log scale, redmodel's goal as a red tick, "n/a" where a contestant has none."""
    plt = pyplot()
    from matplotlib.patches import Patch  # noqa: PLC0415

    panels = [[d for d in data if d["higher_is_better"]],
              [d for d in data if not d["higher_is_better"]]]
    fig, axes = plt.subplots(2, 1, figsize=(15, 10), gridspec_kw={"height_ratios": [3, 2]})
    width = 0.8 / len(names)
    colors = [plt.get_cmap("tab10")(j % 10) for j in range(len(names))]
    rm = names.index("redmodel") if "redmodel" in names else None
    for ax, rows, title in zip(axes, panels, (
            "throughput / hand-written (higher is better)",
            "bytes or time / hand-written (lower is better)"), strict=True):
        for j, name in enumerate(names):
            xs, ys = [], []
            for i, d in enumerate(rows):
                x = i + (j - (len(names) - 1) / 2) * width
                r = d["ratios"].get(name)
                if r is None:
                    ax.text(x, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=6,
                            color=colors[j], transform=ax.get_xaxis_transform())
                else:
                    xs.append(x)
                    ys.append(r)
            if xs:
                ax.bar(xs, ys, width, color=colors[j])
        for i, d in enumerate(rows):
            if d["goal"] is not None and rm is not None:
                x = i + (rm - (len(names) - 1) / 2) * width
                ax.hlines(d["goal"], x - width, x + width, colors="red", lw=2)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)), [d["label"].replace("`", "") for d in rows],
                      rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(title, fontsize=9)
    axes[0].set_title("Every contestant against hand-written redis-py + hiredis "
                      "(red tick: redmodel's goal)")
    axes[0].legend([Patch(color=c) for c in colors], names, fontsize=8, ncol=len(names))
    fig.tight_layout()
    path = ctx.out / "contest.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(ctx: Context) -> Section:
    p = params(ctx.quick)
    res = measure(ctx.url, p)
    text, notes, data = contest_table(res, p)
    section = Section("0. Every contestant: hand-written redis-py, redmodel, walrus, rom, "
                      "pydantic-redis, redis-om")
    section.blocks += [text, notes, versions(), method(p)]
    section.plots.append(plot(ctx, data, res.names))
    raw = {"params": attrs.asdict(p), **attrs.asdict(res), "rows": data}
    (ctx.out / "contest.json").write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    section.data = {"rows": data, "names": res.names}
    return section


def main() -> None:
    """``python -m benchmarks.bench_contest [--names A,B] [--rows r1,r2] [--n N] [--reps R]``:
    some rows for some contestants, printed as the section's table (for work on one row;
    the published table comes from ``python -m benchmarks --full``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", default="hand-written redis-py,redmodel",
                    help="contestants, comma-separated (hand-written redis-py is the base)")
    ap.add_argument("--rows", default=None,
                    help="row keys, comma-separated: " + ",".join(ROW))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--url", default=None)
    args = ap.parse_args()
    names = [n.strip() for n in args.names.split(",")]
    if "hand-written redis-py" not in names:
        names.insert(0, "hand-written redis-py")
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else list(ROW)
    unknown = [r for r in rows if r not in ROW]
    if unknown:
        ap.error(f"unknown rows {unknown}; known: {list(ROW)}")
    full = params(False)
    p = attrs.evolve(full, n=args.n, reps=args.reps, calls=min(full.calls, args.n))

    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            url = stack.enter_context(RedisServer()).url
        res = measure(url, p, names, rows)
    text, notes, _ = contest_table(res, p)
    print(text)
    print(notes)


if __name__ == "__main__":
    main()
