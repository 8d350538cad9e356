"""Memory and commands of the all-ids index: one ZSET (the current format, ``<root>all``)
against the paged format of redmodel/lua/ids_lib.lua (issue 17 item 4), for the same ids
(the contest's hat ids, ``h0000000``...), saved in increasing order (as the contest saves
them) and in random order.

    python -m benchmarks.bench_ids_pages --n 20000

Prints bytes per id by MEMORY USAGE (SAMPLES 0, every key of the index) and by
``used_memory`` (INFO, before and after, in an empty database), and the server commands
per added and per removed id (INFO commandstats, the script's own calls, without EVALSHA).
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import redis

from redmodel._plan import lua_source
from redmodel.testing import RedisServer

ROOT = "ihat:%idx:"
_DRIVER = """
local root, d, op = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local plan, bad
  if op == 'add' then plan, bad = ids_plan_add(root, d, ARGV[i])
  else plan, bad = ids_plan_remove(root, d, ARGV[i]) end
  if bad then return bad end
  ids_apply(plan)
end
return 'OK'
"""
SOURCE = lua_source("ids_lib") + _DRIVER
CHUNK = 500


def calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items()
               if k not in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_info",
                            "cmdstat_script|load", "cmdstat_script"))


def index_bytes(r: redis.Redis) -> int:
    return sum(r.memory_usage(k, samples=0) or 0 for k in r.scan_iter(match=ROOT + "*",
                                                                       count=5000))


def measure(r: redis.Redis, fmt: str, ids: list[str]) -> dict[str, float]:
    r.flushall()
    sha = r.script_load(SOURCE)
    base = int(r.info("memory")["used_memory"])
    c0 = calls(r)
    for i in range(0, len(ids), CHUNK):
        part = ids[i:i + CHUNK]
        if fmt == "zset":
            r.zadd(ROOT + "all", dict.fromkeys(part, 0))  # one member per id: as ZADD per write
        else:
            r.evalsha(sha, 0, ROOT, ":", "add", *part)
    added = calls(r) - c0
    used = int(r.info("memory")["used_memory"]) - base
    usage = index_bytes(r)
    pages = r.zcard(ROOT + "ids") if fmt == "pages" else 1
    gone = ids[: len(ids) // 2]
    c0 = calls(r)
    for i in range(0, len(gone), CHUNK):
        part = gone[i:i + CHUNK]
        if fmt == "zset":
            r.zrem(ROOT + "all", *part)
        else:
            r.evalsha(sha, 0, ROOT, ":", "remove", *part)
    removed = calls(r) - c0
    n = len(ids)
    return {"usage": usage / n, "used": used / n, "pages": pages,
            "add_cmds": added / n if fmt == "pages" else 1.0,
            "remove_cmds": removed / len(gone) if fmt == "pages" else 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--url", default="")
    args = ap.parse_args()
    ids = [f"h{i:07d}" for i in range(args.n)]
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    server = None if args.url else RedisServer()
    url = args.url or server.__enter__().url  # type: ignore[union-attr]
    try:
        r = redis.Redis.from_url(url)
        print(f"n={args.n}  server {r.info('server').get('redis_version')}")
        print(f"{'format':<8}{'order':<12}{'MEMORY USAGE B/id':>19}{'used_memory B/id':>18}"
              f"{'pages':>7}{'cmds/add':>10}{'cmds/remove':>13}")
        for fmt in ("zset", "pages"):
            for order, seq in (("increasing", ids), ("random", shuffled)):
                m: dict[str, Any] = measure(r, fmt, seq)
                print(f"{fmt:<8}{order:<12}{m['usage']:>19.1f}{m['used']:>18.1f}"
                      f"{m['pages']:>7}{m['add_cmds']:>10.2f}{m['remove_cmds']:>13.2f}")
    finally:
        if server is not None:
            server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
