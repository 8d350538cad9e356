"""The cost of loading every script of a MULTI inside it (docs/transactions.md, "Scripts
inside MULTI"): one process, one thread, commits alternated with and without the
``SCRIPT LOAD``s (the transport's ``Exchange._atomic_scripts`` switched off for "without"),
median of rounds; prints microseconds per commit (wall clock, and the CPU time of this
process and of the server, which a loaded machine inflates less) and the ratios.

    python benchmarks/bench_multi_scripts.py [--url redis://...] [--rounds 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import attrs

import redmodel
from redmodel._transport import _wire
from redmodel.testing import RedisServer


@redmodel.model(prefix="bench_ms")
@attrs.define
class Hat:
    quantity: int = 0
    sold: int = 0
    id: str = redmodel.key_field()


@redmodel.model(prefix="bench_msi")
@attrs.define
class IndexedHat:
    color: str = redmodel.field(index=True, default="black")
    quantity: int = 0
    id: str = redmodel.key_field()


def _without(self: Any, node: Any, commands: Any) -> tuple[Any, list[str]]:
    return commands, []


def run(url: str, rounds: int = 8, per_round: int = 400) -> str:
    store = redmodel.Store.from_url(url)
    store.save_many([Hat(id="h", quantity=10**9), IndexedHat(id="i")])

    @redmodel.transaction(store)
    def buy(tx: Any) -> None:  # WATCH+HGETALL, MULTI, 2 x EVALSHA incr_fields, EXEC
        tx.get_or_raise(Hat, "h")
        tx.incr(Hat, "h", "quantity", -1)
        tx.incr(Hat, "h", "sold", 1)

    @redmodel.transaction(store)
    def indexed(tx: Any) -> None:  # the index reads, MULTI, EVALSHA index_write, EXEC
        tx.get_or_raise(IndexedHat, "i")
        tx.incr(IndexedHat, "i", "quantity", 1)

    with_loads = _wire.Exchange._atomic_scripts
    lines = ["| transaction | wall without / with (us) | ratio | client CPU ratio | "
             "server CPU without / with (us) | ratio |", "|---|---|---|---|---|---|"]

    def server_cpu() -> float:
        info = store.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    cases: list[tuple[str, Callable[[], None]]] = [
        ("buy (incr_fields.lua)", buy), ("indexed incr (index_write.lua)", indexed)]
    try:
        for name, fn in cases:
            times: dict[bool, list[float]] = {False: [], True: []}
            cpu: dict[bool, list[float]] = {False: [], True: []}
            srv: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(rounds):
                for on in (False, True):
                    _wire.Exchange._atomic_scripts = with_loads if on else _without  # type: ignore[method-assign]
                    s0, c0, start = server_cpu(), time.process_time(), time.perf_counter()
                    for _ in range(per_round):
                        fn()
                    times[on].append((time.perf_counter() - start) / per_round * 1e6)
                    cpu[on].append((time.process_time() - c0) / per_round * 1e6)
                    srv[on].append((server_cpu() - s0) / per_round * 1e6)
            m = {k: {on: statistics.median(v[on]) for on in (False, True)}
                 for k, v in (("t", times), ("c", cpu), ("s", srv))}
            lines.append(
                f"| {name} | {m['t'][False]:.0f} / {m['t'][True]:.0f} | "
                f"{m['t'][True] / m['t'][False]:.3f} | {m['c'][True] / m['c'][False]:.3f} | "
                f"{m['s'][False]:.0f} / {m['s'][True]:.0f} | "
                f"{m['s'][True] / max(m['s'][False], 1e-9):.3f} |")
    finally:
        _wire.Exchange._atomic_scripts = with_loads  # type: ignore[method-assign]
        store.close()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    if args.url:
        print(run(args.url, args.rounds))
        return
    with RedisServer() as server:
        print(run(server.url, args.rounds))


if __name__ == "__main__":
    main()
