"""Section 1: redis-py's pure-Python reply parser against hiredis, under RESP2 and RESP3.

Each client gets its parser forced with ``ConnectionPool(parser_class=...)``; the pure-Python
parsers are paired with their own protocol (redis-py swaps a mismatched one silently), and
the parser a pooled connection really uses is read back and printed.
"""

from __future__ import annotations

from typing import Any

import redis
from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

import redmodel
from benchmarks._common import Context, Section, delete_prefix, fmt_time, interleaved, pyplot, table
from benchmarks._models import HatHash, hat

PYTHON_PARSER = {2: _RESP2Parser, 3: _RESP3Parser}
K = "rmbench:parsers"


def client(ctx: Context, parser: type, protocol: int) -> tuple[redis.Redis, str]:
    """A client whose pool uses ``parser``, and the parser class name it really runs."""
    pool = redis.ConnectionPool.from_url(ctx.url, parser_class=parser, protocol=protocol)
    conn = pool.get_connection()
    try:
        conn.connect()
        used = type(conn._parser).__name__
    finally:
        pool.release(conn)
    return redis.Redis(connection_pool=pool), used


def _fill(r: redis.Redis, sizes: dict[str, list[int]]) -> None:
    pipe = r.pipeline(transaction=False)
    for n in sizes["lrange"]:
        key = f"{K}:list:{n}"
        pipe.delete(key)
        for start in range(0, n, 10_000):
            pipe.rpush(key, *(f"element-{i}" for i in range(start, min(n, start + 10_000))))
    for n in sizes["hgetall"]:
        key = f"{K}:hash:{n}"
        pipe.delete(key)
        for start in range(0, n, 10_000):
            pipe.hset(key, mapping={f"field-{i}": i for i in range(start, min(n, start + 10_000))})
    pipe.mset({f"{K}:str:{i}": f"value-{i}" for i in range(1000)})
    pipe.execute()
    redmodel.Store(r).save_many([hat(HatHash, i) for i in range(1000)])


def _cases(sizes: dict[str, list[int]]) -> list[tuple[str, str, int, Any]]:
    """(case, kind, reply elements, call(client, store))."""
    out: list[tuple[str, str, int, Any]] = []
    for n in sizes["lrange"]:
        out.append((f"LRANGE {n:,}", "LRANGE", n,
                    lambda r, s, n=n: r.lrange(f"{K}:list:{n}", 0, -1)))
    for n in sizes["hgetall"]:
        out.append((f"HGETALL {n:,} fields", "HGETALL", n,
                    lambda r, s, n=n: r.hgetall(f"{K}:hash:{n}")))
    mget_keys = [f"{K}:str:{i}" for i in range(1000)]
    out.append(("MGET 1,000 keys", "MGET", 1000, lambda r, s: r.mget(mget_keys)))
    ids = [str(i) for i in range(1000)]
    out.append(("redmodel get_many 1,000 hats", "get_many", 1000,
                lambda r, s: s.get_many(HatHash, ids)))
    return out


def _samples(ctx: Context, elements: int) -> tuple[int, int]:
    """(samples, calls per sample), sized so a case takes about the same time."""
    if ctx.quick:
        return (5, 1) if elements >= 10_000 else (7, 3 if elements >= 1000 else 30)
    if elements >= 100_000:
        return 15, 1
    if elements >= 10_000:
        return 31, 2
    if elements >= 1000:
        return 41, 10
    return 51, 200


def run(ctx: Context) -> Section:
    sizes = {
        "lrange": ctx.pick([10, 1000, 10_000], [10, 1000, 10_000, 100_000]),
        "hgetall": [10, 1000, 10_000],
    }
    section = Section("1. Reply parsers: pure Python vs hiredis")
    used_rows = []
    results: dict[int, list[tuple[str, str, int, float, float]]] = {}
    pairs = {}
    for protocol in (2, 3):
        py, py_used = client(ctx, PYTHON_PARSER[protocol], protocol)
        hi, hi_used = client(ctx, _HiredisParser, protocol)
        used_rows.append([f"RESP{protocol}", PYTHON_PARSER[protocol].__name__, py_used,
                          _HiredisParser.__name__, hi_used])
        pairs[protocol] = (py, hi)
    _fill(pairs[2][1], sizes)
    for protocol, (py, hi) in pairs.items():
        py_store, hi_store = redmodel.Store(py), redmodel.Store(hi)
        rows = []
        for name, kind, n, call in _cases(sizes):
            samples, inner = _samples(ctx, n)
            t_py, t_hi = interleaved(
                [lambda call=call, c=py, s=py_store: call(c, s),
                 lambda call=call, c=hi, s=hi_store: call(c, s)],
                samples, inner)
            rows.append((name, kind, n, t_py, t_hi))
        results[protocol] = rows
        py.close()
        hi.close()

    section.blocks.append("Parser each pooled connection really uses "
                          "(`type(conn._parser).__name__`):\n\n" + table(
        ["protocol", "python: asked", "python: runs", "hiredis: asked", "hiredis: runs"],
        used_rows))
    rows_md = []
    for name, _kind, _n, _tp, _th in results[2]:
        row = [name]
        for protocol in (2, 3):
            hit = next(r for r in results[protocol] if r[0] == name)
            row += [fmt_time(hit[3]), fmt_time(hit[4]), f"**{hit[3] / hit[4]:.2f}x**"]
        rows_md.append(row)
    section.blocks.append(table(
        ["case", "RESP2 python", "RESP2 hiredis", "RESP2 python/hiredis",
         "RESP3 python", "RESP3 hiredis", "RESP3 python/hiredis"], rows_md))
    section.blocks.append("Medians of interleaved samples (python, hiredis, python, ...); "
                          "the ratio is how many times slower the pure-Python parser is.")
    section.data = {"results": results}
    section.plots.append(_plot(ctx, results))
    cleaner = ctx.client()
    delete_prefix(cleaner, f"{K}:*")
    delete_prefix(cleaner, "rmbench_hat:*")
    cleaner.close()
    return section


def _plot(ctx: Context, results: dict[int, list[tuple[str, str, int, float, float]]]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for protocol, rows in results.items():
        for kind, marker in (("LRANGE", "o"), ("HGETALL", "s")):
            pts = [(n, tp / th) for _name, k, n, tp, th in rows if k == kind]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                    linestyle="-" if protocol == 2 else "--",
                    label=f"{kind} RESP{protocol}")
        for kind, marker in (("MGET", "^"), ("get_many", "D")):
            pts = [(n, tp / th) for _name, k, n, tp, th in rows if k == kind]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                       label=f"{kind} 1,000 RESP{protocol}")
    ax.set_xscale("log")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("elements in the reply")
    ax.set_ylabel("pure-Python time / hiredis time")
    ax.set_title("Parser cost: pure Python vs hiredis (higher = hiredis wins more)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = ctx.out / "parsers_ratio.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
