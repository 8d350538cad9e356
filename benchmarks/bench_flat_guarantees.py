"""What the flat layout's scripts cost, measured: redmodel as it is, and redmodel with each
flat script swapped for the plain command a hand-written program sends (one MSET of the
manifest and leaves for a save, one MSET per chunk for save_many, one MGET of the object
key and its leaves for a get), beside hand-written redis-py (bench_mapper's MSET/MGET),
interleaved, median of the ratios. The swapped variant keeps every other part of
redmodel (checks, encoding, plans, transport) and drops what the scripts guarantee:
stale leaves deleted, the object's expiry on every leaf, a wrong-typed object key
refused, leaves of a shape the client does not know read in one round trip.

    python -m benchmarks.bench_flat_guarantees [N] [REPS]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

import redmodel
from benchmarks._models import HatFlat, hat
from benchmarks.bench_mapper import HandWritten
from redmodel._layouts import _flat
from redmodel.testing import RedisServer

REAL = (_flat.FlatWrite.command, _flat.FlatWrite.many, _flat.FlatLayout.read)


def _plain_command(self: Any) -> tuple[Any, ...]:
    n = len(self.args) - 3
    pairs = [x for i in range(n) for x in (self.keys[1 + i], self.args[3 + i])]
    return ("MSET", self.keys[0], self.args[2], *pairs)


def _plain_many(self: Any, writes: Any) -> tuple[Any, ...]:
    out: list[Any] = ["MSET"]
    for w in writes:
        out += _plain_command(w)[1:]
    return tuple(out)


def _plain_read(self: Any, key: str) -> tuple[Any, ...]:
    return ("MGET", key, *[key + s for s in self._fixed_keys])


def _use(plain: bool) -> None:
    swap = (_plain_command, _plain_many, _plain_read) if plain else REAL
    _flat.FlatWrite.command, _flat.FlatWrite.many, _flat.FlatLayout.read = swap  # type: ignore[method-assign]


def main(n: int = 3000, reps: int = 9) -> None:
    with RedisServer() as server:
        store = redmodel.Store.from_url(server.url, db=2)
        hand = HandWritten(redis.Redis.from_url(server.url, db=1))
        hats = [hat(HatFlat, i) for i in range(n)]
        store.save_many(hats)
        hand.save_many_flat(hats)
        rows: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "save": (lambda: [hand.save_flat(h) for h in hats],
                     lambda: [store.save(h) for h in hats]),
            "save_many": (lambda: [hand.save_many_flat(hats[i:i + 1000])
                                   for i in range(0, n, 1000)],
                          lambda: [store.save_many(hats[i:i + 1000])
                                   for i in range(0, n, 1000)]),
            "get": (lambda: [hand.get_flat(h.id) for h in hats],
                    lambda: [store.get(HatFlat, h.id) for h in hats]),
        }
        ratios: dict[tuple[str, str], list[float]] = {
            (r, m): [] for r in rows for m in ("scripts", "plain")}
        for rep in range(reps):
            for row, (by_hand, by_redmodel) in rows.items():
                for m in (("scripts", "plain") if rep % 2 else ("plain", "scripts")):
                    _use(m == "plain")
                    t0 = time.perf_counter()
                    by_hand()
                    t1 = time.perf_counter()
                    by_redmodel()
                    t2 = time.perf_counter()
                    ratios[row, m].append((t1 - t0) / (t2 - t1))
                _use(False)
        for row in rows:
            print(f"{row:10} redmodel {statistics.median(ratios[row, 'scripts']):.2f}x, with "
                  f"plain MSET/MGET for its scripts {statistics.median(ratios[row, 'plain']):.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
