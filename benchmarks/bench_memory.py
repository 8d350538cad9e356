"""Section 4: bytes per object in Redis for each layout, against hand-written equivalents.

Every variant is written into its own, empty logical database (the same key names in each),
so the main dictionary starts from the same size every time (after one warm-up run in
database 15); ``used_memory`` is read from
INFO before and after N objects, and MEMORY USAGE (SAMPLES 0: exact) of a few objects is
summed over every key of the object.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

import redmodel
from benchmarks._common import Context, Section, delete_prefix, pyplot, table
from benchmarks._models import HAT_BY_LAYOUT, hat
from benchmarks.bench_mapper import HandWritten, blob_key, flat_keys, hash_key

FIRST_DB = 9
SAMPLE = 20


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def fresh_db(ctx: Context, offset: int) -> redis.Redis:
    """A client on logical database FIRST_DB + offset, which must be empty."""
    r = ctx.client(db=FIRST_DB + offset)
    if r.dbsize():
        raise RuntimeError(f"database {FIRST_DB + offset} is not empty: the memory section "
                           "needs empty databases 9-15 (or pass a server it may use)")
    return r


def measure(ctx: Context, meter: redis.Redis, db: int, n: int,
            make: Callable[[redis.Redis], tuple[Any, Any]],
            keys_of: Callable[[int], list[str]], encoding_key: Callable[[int], str]
            ) -> tuple[float, float, str]:
    """(used_memory delta per object, MEMORY USAGE per object, OBJECT ENCODING).

    The objects are written through their own connection, closed before the second reading,
    so its query and reply buffers are not counted as data."""
    before = used_memory(meter)
    writer = ctx.client(db=db)
    _owner, write = make(writer)
    for start in range(0, n, 1000):
        write(list(range(start, min(n, start + 1000))))
    writer.close()
    time.sleep(0.2)
    after = used_memory(meter)
    step = max(1, n // SAMPLE)
    usage = [sum(int(meter.memory_usage(k, samples=0) or 0) for k in keys_of(i))
             for i in range(0, n, step)]
    encoding = meter.object("ENCODING", encoding_key(0))
    enc = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
    return (after - before) / n, statistics.median(usage), enc


def variants(ctx: Context) -> list[tuple[str, str, Callable[[redis.Redis], tuple[Any, Any]],
                                         Callable[[int], list[str]], Callable[[int], str]]]:
    """(layout, writer, make write(ids) for a client, keys of object i, key to ENCODING)."""
    def rm(layout: str) -> Callable[[redis.Redis], tuple[Any, Any]]:
        cls = HAT_BY_LAYOUT[layout]

        def make(r: redis.Redis) -> tuple[Any, Any]:
            store = redmodel.Store(r)
            return store, lambda ids: store.save_many([hat(cls, i) for i in ids])
        return make

    def hand(method: str) -> Callable[[redis.Redis], tuple[Any, Any]]:
        def make(r: redis.Redis) -> tuple[Any, Any]:
            hw = HandWritten(r)
            cls = HAT_BY_LAYOUT[{"save_many": "hash", "save_many_flat": "flat",
                                 "save_many_blob": "blob"}[method]]
            return hw, lambda ids: getattr(hw, method)([hat(cls, i) for i in ids])
        return make

    def flat_all(i: int) -> list[str]:
        return [f"rmbench_hatflat:{i}", *flat_keys(str(i))]

    return [
        ("hash", "redmodel", rm("hash"), lambda i: [hash_key(str(i))],
         lambda i: hash_key(str(i))),
        ("hash", "hand-written HSET", hand("save_many"), lambda i: [hash_key(str(i))],
         lambda i: hash_key(str(i))),
        ("flat", "redmodel (manifest + leaves)", rm("flat"), flat_all,
         lambda i: flat_keys(str(i))[0]),
        ("flat", "hand-written MSET of leaves", hand("save_many_flat"),
         lambda i: flat_keys(str(i)), lambda i: flat_keys(str(i))[0]),
        ("blob", "redmodel (json + header)", rm("blob"), lambda i: [f"rmbench_hatblob:{i}"],
         lambda i: f"rmbench_hatblob:{i}"),
        ("blob", "hand-written SET json.dumps", hand("save_many_blob"),
         lambda i: [blob_key(str(i))], lambda i: blob_key(str(i))),
    ]


def run(ctx: Context) -> Section:
    n = ctx.pick(2000, 20_000)
    section = Section("4. Memory: bytes per object in Redis")
    rows = []
    results = []
    # the first variant measured paid one-off server allocations: warm up in database 15
    todo = [(6, variants(ctx)[0]), *enumerate(variants(ctx))]
    meters = []
    try:
        for offset, (layout, who, make, keys_of, enc_key) in todo:
            r = fresh_db(ctx, offset)
            meters.append(r)
            delta, usage, enc = measure(ctx, r, FIRST_DB + offset, n, make, keys_of, enc_key)
            if offset < 6:
                results.append((layout, who, delta, usage, enc))
    finally:
        # deleting only at the end: a shrinking dictionary would free memory mid-measurement
        for r in meters:
            for pattern in ("rmbench_hat:*", "rmbench_hatflat:*", "rmbench_hatblob:*",
                            "rmbench_hwblob:*"):
                delete_prefix(r, pattern)
            r.close()
    base = {layout: delta for layout, who, delta, *_ in results if who.startswith("hand")}
    for layout, who, delta, usage, enc in results:
        rows.append([layout, who, f"{delta:,.0f}", f"{usage:,.0f}", enc,
                     f"{delta / base[layout]:.3f}x"])
    section.blocks.append(table(
        ["layout", "written by", "used_memory Δ / object (B)", "MEMORY USAGE / object (B)",
         "encoding", "vs hand-written (used_memory)"], rows, "llrrlr"))
    hash_rm = next(r for r in results if r[0] == "hash" and r[1] == "redmodel")
    hash_hw = next(r for r in results if r[0] == "hash" and r[1] != "redmodel")
    verdict = "met" if hash_rm[2] <= 1.10 * hash_hw[2] else "**not met**"
    section.blocks.append(
        f"N = {n:,} hats per variant, each in its own empty database. Target: hash memory "
        f"per object within 10% of hand-written HSET — {verdict} "
        f"({hash_rm[2] / hash_hw[2]:.3f}x). MEMORY USAGE sums every key of one object "
        "(flat: the manifest key and each leaf key); the encoding is that of the object's "
        "(first) key.")
    section.data = {"results": results, "n": n}
    section.plots.append(_plot(ctx, results))
    return section


def _plot(ctx: Context, results: list[tuple[str, str, float, float, str]]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{layout}\n{who}" for layout, who, *_ in results]
    xs = range(len(results))
    ax.bar([x - 0.2 for x in xs], [r[2] for r in results], width=0.4,
           label="used_memory Δ / object")
    ax.bar([x + 0.2 for x in xs], [r[3] for r in results], width=0.4,
           label="MEMORY USAGE / object")
    ax.set_xticks(list(xs), labels, fontsize=6)
    ax.set_ylabel("bytes per object")
    ax.set_title("Bytes per hat in Redis, per layout")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = ctx.out / "memory_per_object.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
