"""Section 5: how the costs grow with the number of objects and with the size of one object.

- N: save_many / get_many of N hats (1k → 100k), redmodel vs hand-written redis-py, and
  bytes per object (used_memory delta), so the point where a curve bends shows.
- Fields: save / get of one object of 5 → 1,000 fields (hash layout), redmodel vs
  hand-written, with the hash encoding Redis chose (listpack up to
  ``hash-max-listpack-entries`` fields, then hashtable) and MEMORY USAGE per object.
"""

from __future__ import annotations

import time
from typing import Any

import redis

import redmodel
from benchmarks._common import Context, Section, delete_prefix, interleaved, pyplot, table
from benchmarks._models import HatHash, hat, wide, wide_model
from benchmarks.bench_mapper import HandWritten
from benchmarks.bench_memory import used_memory


def _per_object_times(ctx: Context, store: redmodel.Store, hw: HandWritten, n: int
                      ) -> tuple[list[float], float]:
    """[save_many rm, hw, get_many rm, hw] seconds per object, and bytes per object."""
    objs = [hat(HatHash, i) for i in range(n)]
    ids = [h.id for h in objs]
    meter = ctx.client()
    delete_prefix(meter, "rmbench_hat:*")
    time.sleep(0.2)
    before = used_memory(meter)
    store.save_many(objs)
    after = used_memory(meter)
    samples = ctx.pick(3, 5 if n >= 100_000 else 11)
    t = interleaved([lambda: store.save_many(objs), lambda: hw.save_many(objs),
                     lambda: store.get_many(HatHash, ids), lambda: hw.get_many(ids)],
                    samples, 1, warmup=1)
    delete_prefix(meter, "rmbench_hat:*")
    meter.close()
    return [x / n for x in t], (after - before) / n


def _wide_hand(r: redis.Redis, cls: type, nfields: int) -> tuple[Any, Any]:
    names = [f"f{j}" for j in range(nfields)]
    convs = [(n, n.encode(), int if j % 2 == 0 else bytes.decode)
             for j, n in enumerate(names)]
    prefix = f"rmbench_wide{nfields}:"

    def save(obj: Any) -> None:
        r.hset(prefix + obj.id, mapping={n: getattr(obj, n) for n in names})

    def get(id_: str) -> Any:
        d = r.hgetall(prefix + id_)
        if not d:
            return None
        return cls(id=id_, **{n: conv(d[b]) for n, b, conv in convs})

    return save, get


def run(ctx: Context) -> Section:
    section = Section("5. Scaling: with the number of objects and with object size")
    store = ctx.store()
    client = ctx.client()
    hw = HandWritten(client)
    try:
        ns = ctx.pick([1000, 5000], [1000, 10_000, 100_000])
        n_rows, n_results = [], []
        for n in ns:
            t, mem = _per_object_times(ctx, store, hw, n)
            n_results.append((n, t, mem))
            n_rows.append([f"{n:,}", f"{t[0] * 1e6:.1f}", f"{t[1] * 1e6:.1f}",
                           f"**{t[1] / t[0]:.2f}x**", f"{t[2] * 1e6:.1f}", f"{t[3] * 1e6:.1f}",
                           f"**{t[3] / t[2]:.2f}x**", f"{mem:,.0f}"])
        section.blocks.append(table(
            ["N hats", "save_many µs/obj redmodel", "hand-written", "ratio",
             "get_many µs/obj redmodel", "hand-written", "ratio", "used_memory B/obj"],
            n_rows))

        widths = ctx.pick([5, 50, 1000], [5, 20, 50, 100, 200, 500, 1000])
        f_rows, f_results = [], []
        for nf in widths:
            cls = wide_model(nf)
            obj = wide(cls, nf, 1)
            h_save, h_get = _wide_hand(client, cls, nf)
            inner = ctx.pick(5, 20 if nf <= 100 else 5)
            t = interleaved([lambda obj=obj: store.save(obj), lambda obj=obj, f=h_save: f(obj),
                             lambda cls=cls: store.get(cls, "1"), lambda f=h_get: f("1")],
                            ctx.pick(5, 31), inner)
            assert store.get(cls, "1") == h_get("1") == obj
            key = f"rmbench_wide{nf}:1"
            enc = client.object("ENCODING", key)
            usage = int(client.memory_usage(key, samples=0) or 0)
            client.delete(key)
            f_results.append((nf, t, usage, enc.decode() if isinstance(enc, bytes) else enc))
            f_rows.append([nf, f"{t[0] * 1e6:.1f}", f"{t[1] * 1e6:.1f}", f"**{t[1] / t[0]:.2f}x**",
                           f"{t[2] * 1e6:.1f}", f"{t[3] * 1e6:.1f}", f"**{t[3] / t[2]:.2f}x**",
                           f"{usage:,}", f_results[-1][3]])
        section.blocks.append(table(
            ["fields", "save µs redmodel", "hand-written", "ratio", "get µs redmodel",
             "hand-written", "ratio", "MEMORY USAGE B", "encoding"], f_rows))
        limit = client.config_get("hash-max-listpack-entries").get("hash-max-listpack-entries")
        section.blocks.append(
            "Ratios are hand-written time / redmodel time (> 1: redmodel faster). Wide models "
            "alternate int and str fields. A hash is a listpack up to "
            f"`hash-max-listpack-entries` fields ({limit} on this server; values up to "
            "`hash-max-listpack-value` bytes), a hashtable beyond.")
        section.data = {"n": n_results, "fields": f_results}
        section.plots.append(_plot(ctx, n_results, f_results))
    finally:
        store.close()
        client.close()
    return section


def _plot(ctx: Context, n_results: list[Any], f_results: list[Any]) -> Any:
    plt = pyplot()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 4.2))
    ns = [r[0] for r in n_results]
    for i, label in enumerate(["save_many redmodel", "save_many hand-written",
                               "get_many redmodel", "get_many hand-written"]):
        a1.plot(ns, [r[1][i] * 1e6 for r in n_results], marker="o",
                linestyle="-" if "redmodel" in label else "--", label=label)
    a1.set_xscale("log")
    a1.set_xlabel("N objects")
    a1.set_ylabel("µs per object")
    a1.set_title("Bulk cost per object vs N")
    a1.legend(fontsize=7)
    a1b = a1.twinx()
    a1b.plot(ns, [r[2] for r in n_results], color="grey", marker="x", linestyle=":")
    a1b.set_ylabel("used_memory B/object (grey)")
    fs = [r[0] for r in f_results]
    for i, label in enumerate(["save redmodel", "save hand-written", "get redmodel",
                               "get hand-written"]):
        a2.plot(fs, [r[1][i] * 1e6 for r in f_results], marker="o",
                linestyle="-" if "redmodel" in label else "--", label=label)
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("fields per object")
    a2.set_ylabel("µs per call")
    a2.set_title("One object vs its number of fields")
    a2.legend(fontsize=7)
    a3.plot(fs, [r[2] / r[0] for r in f_results], marker="o")
    for nf, _t, _u, enc in f_results:
        a3.annotate(enc, (nf, _u / nf), fontsize=7)
    a3.set_xscale("log")
    a3.set_xlabel("fields per object")
    a3.set_ylabel("MEMORY USAGE bytes per field")
    a3.set_title("Hash memory per field (listpack → hashtable)")
    fig.tight_layout()
    path = ctx.out / "scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
