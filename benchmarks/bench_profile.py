"""Section 7: where redmodel's time goes in its slowest operations (cProfile).

Each operation of section 2 that misses its target most is run under cProfile; the table lists
the functions with the most own time (``tottime``), as a share of the profiled total.
Profiling inflates Python-heavy code, so read the shares, not the absolute times.
"""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

from benchmarks._common import Context, Section, delete_prefix, table
from benchmarks.bench_mapper import HandWritten, _prepare, operations

PROFILED = (
    ("hash", "save many"),
    ("hash", "get many"),
    ("hash", "transaction buy"),
    ("hash", "partial update"),
    ("flat", "save many"),
)
TOP = 8


def _where(key: tuple[str, int, str]) -> str:
    path, line, func = key
    if path == "~":
        return func
    for anchor in ("site-packages/", "/work/main/", "lib/python3"):
        if anchor in path:
            path = path.split(anchor, 1)[1]
            break
    return f"`{path}:{line}({func})`"


def _stats(fn: Any, calls: int) -> dict[Any, Any]:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    return pstats.Stats(prof).stats  # type: ignore[attr-defined, no-any-return]


def profile(fn: Any, calls: int) -> tuple[list[list[str]], float]:
    """The top functions by own time, and Python function calls per operation."""
    entries = _stats(fn, calls)
    total = sum(v[2] for v in entries.values()) or 1.0
    top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:TOP]
    rows = [[_where(k), f"{v[1] / calls:,.0f}", f"{100 * v[2] / total:.1f}%",
             f"{100 * v[3] / total:.1f}%"] for k, v in top]
    return rows, sum(v[1] for v in entries.values()) / calls


def function_calls(fn: Any, calls: int) -> float:
    return sum(v[1] for v in _stats(fn, calls).values()) / calls


def run(ctx: Context) -> Section:
    store = ctx.store()
    hw = HandWritten(ctx.client())
    section = Section("7. Where the time goes: cProfile of the slowest operations")
    try:
        _prepare(store, hw)
        ops = operations(store, hw)
        summary = []
        for layout, name, pipelined, rm, hand in ops:
            calls = ctx.pick(2, 5) if pipelined else ctx.pick(20, 200)
            rm()
            hand()
            n_rm, n_hw = function_calls(rm, calls), function_calls(hand, calls)
            summary.append([layout, name, f"{n_rm:,.0f}", f"{n_hw:,.0f}",
                            f"{n_rm / n_hw:.2f}x"])
        section.blocks.append(
            "Python function calls per operation (cProfile's count, C functions included): "
            "the mapper's work that the hand-written code does not do.\n\n"
            + table(["layout", "operation", "redmodel", "hand-written", "redmodel / hand"],
                    summary, "llrrr"))
        for layout, prefix in PROFILED:
            op = next(o for o in ops if o[0] == layout and o[1].startswith(prefix))
            calls = ctx.pick(3, 20) if op[2] else ctx.pick(200, 3000)
            op[3]()
            rows, _n = profile(op[3], calls)
            section.blocks.append(f"**{layout}: {op[1]}** (redmodel side, {calls} calls; "
                                  "top functions by own time)\n\n"
                                  + table(["function", "calls per op", "own time",
                                           "cumulative"], rows))
    finally:
        for pattern in ("rmbench_hat:*", "rmbench_hatflat:*", "rmbench_hatblob:*",
                        "rmbench_hwblob:*"):
            delete_prefix(hw.r, pattern)
        store.close()
        hw.r.close()
    return section
