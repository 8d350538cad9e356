"""``python -m benchmarks.bench_rebucket [--n 20000] [--count 500] [--url URL]``:
throughput of ``store.migrate_buckets`` (docs/migrations.md, "Changing the bucket count").

For each model below, N objects are saved with no buckets and moved to 16 buckets; the
table gives objects moved per second. Without ``--url`` a throwaway server is started
(``REDMODEL_SERVER`` picks its binary). The server is flushed: never point it at data.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import attrs
import redis

import redmodel
from benchmarks._common import machine, table
from redmodel.testing import RedisServer


def version(kind: str, buckets: int | None) -> type:
    if kind == "indexed":
        @redmodel.model(prefix="bench_rb", buckets=buckets)
        @attrs.define
        class Item:
            color: str = redmodel.field(index=True)
            size: int = redmodel.field(index="range", default=0)
            sku: str = redmodel.field(unique=True, default="")
            id: str = redmodel.key_field(generated=False)
    else:
        @redmodel.model(prefix="bench_rb", buckets=buckets, layout=kind)  # type: ignore[no-redef]
        @attrs.define
        class Item:
            color: str
            size: int = 0
            sku: str = ""
            id: str = redmodel.key_field(generated=False)
    return Item


@contextlib.contextmanager
def server(url: str | None) -> Iterator[redis.Redis]:
    if url:
        yield redis.Redis.from_url(url)
        return
    with RedisServer() as s:
        yield s.client()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--url")
    args = parser.parse_args()
    rows = []
    with server(args.url) as client:
        for kind in ("hash", "blob", "flat", "indexed"):
            client.flushall()
            store = redmodel.Store(client)
            old, new = version(kind, None), version(kind, 16)
            for i in range(0, args.n, 1000):
                store.save_many([old(["red", "blue"][j % 2], j, f"s{j}", id=f"id{j}")
                                 for j in range(i, min(args.n, i + 1000))])
            start = time.perf_counter()
            moved = store.migrate_buckets(new, from_buckets=None, count=args.count)
            took = time.perf_counter() - start
            rows.append((kind, f"{moved:,}", f"{took:.2f} s", f"{moved / took:,.0f}/s"))
        client.flushall()
        print(table(["layout", "objects moved", "time", "throughput"], rows))
        print(f"\nno buckets -> 16, count={args.count}")
        for name, value in machine(client).items():
            print(f"- {name}: {value}")


if __name__ == "__main__":
    main()
