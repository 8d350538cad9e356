"""Server commands per indexed hat for each kind of write (issue 17, item 4 part 2).

INFO commandstats before and after each kind of write of ``bench_queries.Hat`` (the
contest's indexed hat), on a fresh server: ``EVALSHA`` and every command the scripts run,
per hat. ``python -m benchmarks.bench_index_commands [--n 500]``. The counts do not
depend on the machine's load (docs/performance.md, "Derived record"). The server's own
times (commandstats ``usec``) are per hat too: ``EVALSHA`` (the whole script run, its
commands included) and the commands it ran (every other command of the row: the
scripts' and any sent alone); the difference is the Lua itself. They vary with the load
less than a wall clock does (no client, no network), but still vary: compare runs
alternated with the base, several each.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import redis

import redmodel
from benchmarks.bench_queries import Hat
from redmodel.testing import RedisServer


def _stats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec) of INFO commandstats."""
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in r.info("commandstats").items()}


def _delta(r: redis.Redis, fn: Callable[[], Any]) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec) that fn cost the server."""
    before = _stats(r)
    fn()
    after = _stats(r)
    out = {}
    for k, (n, us) in after.items():
        n0, us0 = before.get(k, (0, 0))
        if n != n0:
            out[k] = (n - n0, us - us0)
    out.pop("info", None)
    return out


# the script runs (their usec includes the commands they run, which are counted apart too)
_SCRIPTS = ("evalsha", "eval", "script|load")


def _change(store: redmodel.Store, hat_id: str, color: str) -> None:
    """bench_contest's ichange: load a stored hat, give it another color, save it."""
    h = store.get(Hat, hat_id)
    h.color = color
    store.save(h)


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
            "load, change color, save": lambda: [_change(store, h.id, "w") for h in hats],
            "delete by id": lambda: [store.delete(Hat, h.id) for h in hats],
            "save_many of new hats": lambda: store.save_many(_hats("b", n)),
            "save_many of hats already indexed": lambda: store.save_many(_hats("b", n)),
        }
        print("| write | commands per hat | server µs per hat: EVALSHA | its commands | of which |")
        print("|---|---:|---:|---:|---|")
        for name, fn in rows.items():
            d = _delta(r, fn)
            detail = ", ".join(f"{k} {c / n:g}" for k, (c, _) in sorted(d.items()))
            calls = sum(c for c, _ in d.values())
            script_us = sum(us for k, (_, us) in d.items() if k in _SCRIPTS)
            other_us = sum(us for k, (_, us) in d.items() if k not in _SCRIPTS)
            print(f"| {name} | {calls / n:.1f} | {script_us / n:.1f} | {other_us / n:.1f} "
                  f"| {detail} |")


if __name__ == "__main__":
    main()
