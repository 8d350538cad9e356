"""Server commands per indexed hat for each kind of write (issue 17, item 4 part 2).

INFO commandstats before and after each kind of write of ``bench_queries.Hat`` (the
contest's indexed hat), on a fresh server: ``EVALSHA`` and every command the scripts run,
per hat. ``python -m benchmarks.bench_index_commands [--n 500]``. Counts, not times:
they do not depend on the machine's load (docs/performance.md, "Derived record").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import redis

import redmodel
from benchmarks.bench_queries import Hat
from redmodel.testing import RedisServer


def _calls(r: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in r.info("commandstats").items()}


def _delta(r: redis.Redis, fn: Callable[[], Any]) -> dict[str, int]:
    before = _calls(r)
    fn()
    after = _calls(r)
    out = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    out.pop("info", None)
    return out


def _hats(tag: str, n: int, color: str = "") -> list[Hat]:
    return [Hat(color=color or f"c{i % 7}", style=f"s{i % 3}", price=float(i), quantity=i,
                id=f"{tag}{i}") for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    n = parser.parse_args().n
    with RedisServer() as server:
        r = redis.Redis(host=server.host, port=server.port)
        store = redmodel.Store(r)
        store.save(Hat(color="x", style="y", price=1.0, quantity=1, id="warm"))
        hats = _hats("a", n)
        rows: dict[str, Callable[[], Any]] = {
            "save of a new hat": lambda: [store.save(h) for h in hats],
            "re-save, unchanged (tracked)": lambda: [store.save(h) for h in hats],
            "save changed, not loaded": lambda: [store.save(h) for h in _hats("a", n, "z")],
            "delete by id": lambda: [store.delete(Hat, h.id) for h in hats],
            "save_many of new hats": lambda: store.save_many(_hats("b", n)),
            "save_many of hats already indexed": lambda: store.save_many(_hats("b", n)),
        }
        print("| write | commands per hat | of which |")
        print("|---|---:|---|")
        for name, fn in rows.items():
            d = _delta(r, fn)
            detail = ", ".join(f"{k} {v / n:g}" for k, v in sorted(d.items()))
            print(f"| {name} | {sum(d.values()) / n:.1f} | {detail} |")


if __name__ == "__main__":
    main()
