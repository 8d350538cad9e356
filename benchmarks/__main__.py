"""``python -m benchmarks --quick | --full [--url URL] [--out DIR]``

Runs every section against one server (``--url``, else ``$REDIS_URL``, else a throwaway
``redmodel.testing.RedisServer`` started and stopped here), prints the machine and one
Markdown table per section on stdout, and writes the PNG plots and ``results.md`` (the same
Markdown, with the command and the machine) into the results folder.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import (
    bench_async_bulk,
    bench_codecs,
    bench_contest,
    bench_deploy,
    bench_encrypted,
    bench_mapper,
    bench_memory,
    bench_once,
    bench_parsers,
    bench_profile,
    bench_queries,
    bench_rss,
    bench_scaling,
    bench_transactions,
)
from benchmarks._common import Context, Section, machine, table
from redmodel.testing import RedisServer

RESULTS = Path(__file__).resolve().parent / "results"


def transactions(ctx: Context) -> Section:
    """Section 6: benchmarks/bench_transactions.py's table, unchanged."""
    section = Section("6. Transactions on one hot key: WATCH decorator vs Lua incr_fields")
    section.blocks.append(bench_transactions.run(ctx.url, ctx.quick))
    section.blocks.append("Threads of one process share one Store; purchases per second and "
                          "WATCH conflicts (retries) per purchase.")
    return section


def deploy(ctx: Context) -> Section:
    """Section 8: one server vs a three-primary cluster, sync vs asyncio tasks."""
    section = Section("8. Deployment shapes: one server vs cluster, sync vs asyncio")
    section.blocks.append(bench_deploy.run(ctx.url, ctx.quick))
    return section


SECTIONS: dict[str, Callable[[Context], Section]] = {
    "contest": bench_contest.run,
    "parsers": bench_parsers.run,
    "mapper": bench_mapper.run,
    "codecs": bench_codecs.run,
    "memory": bench_memory.run,
    "scaling": bench_scaling.run,
    "transactions": transactions,
    "deploy": deploy,
    "queries": bench_queries.section,
    "profile": bench_profile.run,
    "encrypted": bench_encrypted.run,
    "rss": bench_rss.run,
    "exactly_once": bench_once.run,
    "async_bulk": bench_async_bulk.run,
}


@contextlib.contextmanager
def server(url: str | None) -> Iterator[tuple[str, str]]:
    """(url, where it came from): the given one, or a throwaway server stopped at the end."""
    if url:
        yield url, "given with --url / $REDIS_URL"
        return
    with RedisServer() as s:
        yield s.url, f"throwaway server started by the benchmark (pid {s.pid})"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI: every table in well under a "
                      "minute (the default)")
    mode.add_argument("--full", action="store_true", help="the checked-in run (~10 minutes)")
    p.add_argument("--url", default=os.environ.get("REDIS_URL"),
                   help="an existing server (default $REDIS_URL, else start a throwaway one)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default benchmarks/results/quick or .../full)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    quick = not args.full
    out: Path = args.out or RESULTS / ("quick" if quick else "full")
    out.mkdir(parents=True, exist_ok=True)
    names = list(SECTIONS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown sections: {unknown}; known: {list(SECTIONS)}", file=sys.stderr)
        return 2
    command = "python -m benchmarks " + ("--quick" if quick else "--full")
    if args.only:
        command += f" --only {args.only}"
    started = time.perf_counter()
    with server(args.url) as (url, origin):
        ctx = Context(url=url, quick=quick, out=out)
        client = ctx.client()
        info = machine(client)
        client.close()
        head = [f"# redmodel benchmarks ({'quick' if quick else 'full'})",
                f"Command: `{command}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
                f"server: {origin}.",
                table(["machine", ""], [[k, v] for k, v in info.items()], "ll")]
        print("\n\n".join(head), flush=True)
        parts = ["\n\n".join(head)]
        for name in names:
            t0 = time.perf_counter()
            section = SECTIONS[name](ctx)
            text = section.markdown()
            print("\n" + text, flush=True)
            print(f"<!-- {name}: {time.perf_counter() - t0:.1f} s -->", file=sys.stderr,
                  flush=True)
            parts.append(text)
    total = time.perf_counter() - started
    parts.append(f"_Total run time: {total:.0f} s._")
    (out / "results.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"\n_Total run time: {total:.0f} s; plots and results.md in {out}_", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
