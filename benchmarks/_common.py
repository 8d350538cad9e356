"""Timing, tables, plots and the machine description shared by every section."""

from __future__ import annotations

import gc
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs
import matplotlib
import redis

import redmodel

__all__ = ["Context", "Section", "interleaved", "machine", "ratio", "table"]


@attrs.define
class Context:
    """What every section gets: the server URL, the mode and where plots go."""

    url: str
    quick: bool
    out: Path
    prefix: str = "rmbench"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=False, **kwargs)

    def store(self, **kwargs: Any) -> redmodel.Store:
        return redmodel.Store(self.client(**kwargs))

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


@attrs.define
class Section:
    """One section's output: a title, Markdown blocks (tables and notes) and plot files."""

    title: str
    blocks: list[str] = attrs.Factory(list)
    plots: list[Path] = attrs.Factory(list)
    data: dict[str, Any] = attrs.Factory(dict)

    def markdown(self, link_base: Path | None = None) -> str:
        parts = [f"## {self.title}", *self.blocks]
        for p in self.plots:
            target = p.name if link_base is None else os.path.relpath(p, link_base)
            parts.append(f"![{p.stem}]({target})")
        return "\n\n".join(parts)


def interleaved(
    cases: Sequence[Callable[[], Any]], samples: int, inner: int = 1, warmup: int = 2
) -> list[float]:
    """Median seconds per call of each case, sampled A B C A B C ... so drift hits all.

    Each sample times ``inner`` back-to-back calls (to rise above timer resolution). The GC
    is collected before and disabled during sampling, as ``timeit`` does."""
    for _ in range(warmup):
        for case in cases:
            case()
    times: list[list[float]] = [[] for _ in cases]
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        clock = time.perf_counter
        for _ in range(samples):
            for i, case in enumerate(cases):
                t0 = clock()
                for _ in range(inner):
                    case()
                times[i].append((clock() - t0) / inner)
    finally:
        if was_enabled:
            gc.enable()
    return [statistics.median(t) for t in times]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
          ) -> str:
    """A Markdown table; ``align`` is one char per column, ``l`` or ``r`` (default r but
    the first column)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(client: redis.Redis) -> dict[str, str]:
    """CPU, cores, Python, library and server versions."""
    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    info = client.info("server")
    server = info.get("redis_version", "?")
    if "valkey_version" in info:
        server = f"Valkey {info['valkey_version']} (redis_version {server})"
    else:
        server = f"Redis {server}"
    return {
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "redis-py": v("redis"),
        "hiredis": v("hiredis"),
        "attrs / cattrs": f"{v('attrs')} / {v('cattrs')}",
        "msgpack / PyYAML / cryptography": f"{v('msgpack')} / {v('PyYAML')} / "
                                           f"{v('cryptography')}",
        "redmodel": redmodel.__version__,
        "server": server,
        "client default": "RESP3 with hiredis (redis-py 8 defaults) unless a section says "
                          "otherwise",
    }


def delete_prefix(client: redis.Redis, pattern: str) -> None:
    """UNLINK every key matching ``pattern`` (SCAN, never KEYS)."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
