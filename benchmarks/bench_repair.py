"""Time and server commands of ``verify`` and ``reindex`` of N indexed hats, with every
object's index record stored (as before issue 17 item 4 part 2) and with none (the records
deleted by hand: the state the derived-record writes leave), best of 3 each. (With the
derived-record writes, the "records" rows have none either: saves keep none.)

    python -m benchmarks.bench_repair --n 5000

Pass 3 judges a member of an object without a record by its stored fields: one HGETALL
of the object per index key that lists it (read in the same round trip as the records).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import attrs
import redis

import redmodel
from redmodel.testing import RedisServer


@redmodel.model(prefix="bv")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    size: int = redmodel.field(index=True, default=0)
    price: float = redmodel.field(index="range", default=0.0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


def calls(r: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in r.info("commandstats").values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    n = ap.parse_args().n
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        store = redmodel.Store(r)
        store.save_many([Hat(["black", "red", "white"][i % 3], i % 10, float(i),
                             sku=f"S{i}", id=f"h{i:06d}") for i in range(n)])
        for label in ("records", "no records"):
            for what in ("verify", "reindex"):
                best, per = float("inf"), 0.0
                for _ in range(3):
                    if label == "no records":
                        r.delete("bv:%idx:rec")
                    r.config_resetstat()
                    start = time.perf_counter()
                    out: Any = (store.verify(Hat) if what == "verify"
                                else store.reindex(Hat, progress=False))
                    best = min(best, time.perf_counter() - start)
                    per = calls(r) / n
                    assert out == ([] if what == "verify" else n), str(out)[:200]
                print(f"{label:<11}{what:<8} n={n}  best of 3: {best:.3f} s  "
                      f"{per:.1f} server commands per object")


if __name__ == "__main__":
    main()
