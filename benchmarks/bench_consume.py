"""What at-least-once consumption costs: ``Queue.consume()`` against at-most-once pops.

Each cell drains a queue of N small items (ints) with one or four consumer threads of
this process (one shared Store) and reports items per second, and the server commands and
script calls per item (from INFO commandstats). Cells are interleaved over several rounds
and the median is kept, so every ratio compares measurements of the same run.

Two workloads: *drain* (the queue is full when the consumers start: they never wait) and
*trickle* (the consumers wait on an empty queue, and one item is pushed at a time, the
next once the last was handled: every item wakes the waiting consumers; items/s is then
one over the push-to-handled latency).

- ``pop_blocking``: ``queue.pop_blocking(1)`` in a loop (BLPOP; at most once);
- ``consume(reliable=False)``: the consumer loop over BLPOP (at most once);
- ``consume()``: the default loop: one script per item that acknowledges the previous
  item, heartbeats and moves the next one into the in-flight list (at least once).

    python benchmarks/bench_consume.py [--url redis://...] [--quick]
                                        [--workload drain|trickle|both]

Without ``--url`` (or ``$REDIS_URL``) it starts a throwaway server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable

import redis

import redmodel
from redmodel.testing import RedisServer

KEY = "bench:consume"


class _Progress:
    """Items handled by all workers; the time the last one was handled. Workers stop once
    every item is handled, so no cell's time includes a final empty wait."""

    def __init__(self, items: int) -> None:
        self.items = items
        self.handled = 0
        self.finished_at = 0.0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.done = threading.Event()
        self.consumers: list[redmodel.containers.Consumer[int]] = []

    def wait_for(self, handled: int) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.handled >= handled, timeout=30)

    def one(self) -> None:
        with self.lock:
            self.handled += 1
            self.changed.notify_all()
            if self.handled == self.items:
                self.finished_at = time.perf_counter()
                self.done.set()
                for consumer in self.consumers:
                    consumer.stop()  # each stops at its next poll


def _drain_pop_blocking(q: redmodel.containers.Queue[int], progress: _Progress, name: str) -> None:
    while not progress.done.is_set():
        if q.pop_blocking(0.05) is not None:
            progress.one()


def _drain_consume(q: redmodel.containers.Queue[int], progress: _Progress, name: str, reliable: bool
                   ) -> None:
    consumer = q.consume(name=name, reliable=reliable, poll=0.05, signals=())
    with progress.lock:
        progress.consumers.append(consumer)
        if progress.done.is_set():
            return
    for _ in consumer:
        progress.one()


def _commands(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats")
    total = sum(int(v["calls"]) for v in stats.values())
    scripts = sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha",
                                                                  "cmdstat_eval"))
    return total, scripts


Drain = Callable[[redmodel.containers.Queue[int], _Progress, str], None]


def _cell(url: str, items: int, workers: int, drain: Drain, trickle: bool = False
          ) -> tuple[float, float, float]:
    """(items/s, server commands per item, script calls per item) of one drain."""
    store = redmodel.Store.from_url(url)
    q = redmodel.containers.Queue(store, KEY, int)
    q.clear()
    if not trickle:
        for start in range(0, items, 1000):
            q.push(*range(start, min(items, start + 1000)))
    progress = _Progress(items)
    threads = [threading.Thread(target=drain, args=(q, progress, f"w{i}"))
               for i in range(workers)]
    if trickle:
        for t in threads:
            t.start()
        time.sleep(0.3)  # every consumer is waiting on the empty queue
    before = _commands(store.client)
    started = time.perf_counter()
    if trickle:
        for n in range(items):
            q.push(n)
            progress.wait_for(n + 1)
    else:
        for t in threads:
            t.start()
    for t in threads:
        t.join()
    after = _commands(store.client)
    assert progress.handled == items and q.length() == 0, (progress.handled, items)
    store.close()
    return (items / (progress.finished_at - started), (after[0] - before[0]) / items,
            (after[1] - before[1]) / items)


KINDS: dict[str, Drain] = {
    "pop_blocking (BLPOP, at most once)": _drain_pop_blocking,
    "consume(reliable=False) (BLPOP, at most once)":
        lambda q, p, name: _drain_consume(q, p, name, False),
    "consume() (script + in-flight list, at least once)":
        lambda q, p, name: _drain_consume(q, p, name, True),
}


def run(url: str, quick: bool, trickle: bool = False) -> str:
    if trickle:
        items, rounds = (200, 3) if quick else (1_000, 5)
    else:
        items, rounds = (2_000, 3) if quick else (20_000, 5)
    rows = []
    for workers in (1, 4):
        results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in KINDS}
        for _ in range(rounds):
            for kind, drain in KINDS.items():  # interleaved: each round measures every kind
                results[kind].append(_cell(url, items, workers, drain, trickle))
        base = statistics.median(r[0] for r in results[next(iter(KINDS))])
        for kind, cells in results.items():
            rate = statistics.median(c[0] for c in cells)
            cmds = statistics.median(c[1] for c in cells)
            scripts = statistics.median(c[2] for c in cells)
            rows.append(f"| {workers} | {kind} | {rate:,.0f} | {rate / base:.2f} | "
                        f"{cmds:.2f} | {scripts:.2f} |")
    head = (f"| consumers | loop | items/s (median of {rounds}) | vs pop_blocking | "
            "server commands/item (incl. inside scripts) | script calls/item |\n"
            "|---|---|---|---|---|---|")
    what = ("trickle: one item at a time into an empty queue" if trickle
            else "drain: a full queue")
    return f"{what}, {items:,} items per cell.\n\n{head}\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", default=os.environ.get("REDIS_URL"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workload", choices=("drain", "trickle", "both"), default="both")
    args = p.parse_args(argv)

    def report(url: str) -> None:
        for workload in ("drain", "trickle"):
            if args.workload in (workload, "both"):
                print(run(url, args.quick, trickle=workload == "trickle"), end="\n\n")

    if args.url:
        report(args.url)
        return
    with RedisServer() as server:
        print(f"throwaway server {server.version} (pid {server.pid})\n")
        report(server.url)


if __name__ == "__main__":
    main()
