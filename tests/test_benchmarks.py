"""``python -m benchmarks --quick`` runs end to end against the test server (and the CLI
benchmark, ``benchmarks.bench_cli``, small). `make test-long` runs this file (the Makefile).

Only that every section prints its table, the contest table has every cell filled or
explained, and every plot is written: timings on a shared machine prove nothing, so nothing
here asserts on them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_contest, bench_rss

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = (
    "0. Every contestant",
    "1. Reply parsers",
    "2. Mapper overhead",
    "3. Codecs",
    "4. Memory",
    "5. Scaling",
    "6. Transactions",
    "7. Where the time goes",
    "10. Encrypted fields",
    "12. Exactly-once mode",
)
PLOTS = ("contest.png", "parsers_ratio.png", "mapper_ops.png", "codecs.png",
         "memory_per_object.png", "scaling.png")
CONTESTANTS = ("hand-written redis-py", "redmodel", "walrus", "rom", "pydantic-redis",
               "redis-om")
# a measured cell: "12,345/s", "533 B", "2.13 ms", or a ratio then one of those in brackets,
# optionally followed by a footnote about the idiom used; or n/a with its footnote
AMOUNT = r"[0-9,.]+ ?(/s|B|s|ms|µs)"
CELL = re.compile(rf"^(({AMOUNT})|([0-9.]+x \({AMOUNT}\)))( \[\d+\])?$|^n/a \[\d+\]$")


@pytest.fixture(scope="module")
def quick_run(redis_url: str, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[str, Path]:
    """(stdout, results folder) of one ``python -m benchmarks --quick`` on the test server."""
    out_dir = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--url", redis_url,
         "--out", str(out_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, out_dir


def test_quick_run_prints_every_section_table_and_writes_every_plot(
    quick_run: tuple[str, Path]
) -> None:
    out, out_dir = quick_run
    assert "| CPU |" in out and "| server |" in out and "| redis-py |" in out
    chunks = out.split("\n## ")[1:]
    titles = [c.splitlines()[0] for c in chunks]
    for title in SECTIONS:
        matching = [c for c in chunks if c.startswith(title)]
        assert matching, f"section {title!r} missing; printed: {titles}"
        assert "\n|---" in matching[0], f"section {title!r} printed no table"
    assert "_RESP2Parser | _RESP2Parser" in out and "_RESP3Parser | _RESP3Parser" in out
    for name in PLOTS:
        plot = out_dir / name
        assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    results = (out_dir / "results.md").read_text(encoding="utf-8")
    assert "python -m benchmarks --quick" in results
    assert all(f"## {title}" in results for title in SECTIONS)
    assert "## 11. Client memory" in out and "Full mode only" in out


def contest_table(out: str) -> tuple[list[str], list[list[str]], str]:
    """(header, rows, footnotes) of the contest section's table."""
    chunk = out.split("\n## 0. Every contestant")[1].split("\n## ", maxsplit=1)[0]
    lines = [ln for ln in chunk.splitlines() if ln.startswith("| ")]
    split = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]
    return split[0], split[1:], chunk


def test_contest_table_has_every_row_and_every_cell_filled_or_explained(
    quick_run: tuple[str, Path]
) -> None:
    header, rows, chunk = contest_table(quick_run[0])
    assert header[1:1 + len(CONTESTANTS)] == list(CONTESTANTS)
    p = bench_contest.params(quick=True)
    assert [r[0] for r in rows] == [row.label.format(chunk=p.chunk) for row in bench_contest.ROWS]
    notes = set(re.findall(r"^\[(\d+)\] ", chunk, flags=re.M))
    labels = {row.label.format(chunk=p.chunk): row for row in bench_contest.ROWS}
    for row in rows:
        cells = row[1:1 + len(CONTESTANTS)]
        for name, cell in zip(CONTESTANTS, cells, strict=True):
            assert CELL.match(cell), (row[0], name, cell)
            for mark in re.findall(r"\[(\d+)\]", cell):
                assert mark in notes, (row[0], name, cell)
        # hand-written and redmodel can do every row: their cells are measurements
        assert not cells[0].startswith("n/a") and not cells[1].startswith("n/a"), row
        assert cells[0][0].isdigit() and "x (" not in cells[0], row  # the reference itself
        goal = labels[row[0]].goal
        assert row[-1] in (("met", "**not met**") if goal is not None else ("—",)), row
    # what the others cannot do is said, not left blank: flat rows are redmodel's alone
    flat = [r for r in rows if r[0].startswith("flat layout")]
    assert flat and all(c.startswith("n/a") for r in flat for c in r[3:1 + len(CONTESTANTS)])


def test_rss_child_reports_the_peak_above_the_objects_it_built(redis_url: str) -> None:
    result = bench_rss.measure(next(iter(bench_rss.CASES)), redis_url, 14, 5000)
    try:
        assert result["count"] == 5000
        assert 0 < result["objects"] <= result["peak"] - result["baseline"]
        assert result["seconds"] > 0
    finally:
        import redis  # noqa: PLC0415

        r = redis.Redis.from_url(redis_url, db=14)
        assert r.dbsize() >= 5000  # the call really stored the hats
        r.flushdb()
        r.close()


def test_the_throughput_benchmark_runs(redis_url: str, redis_client: object, tmp_path: Path
                                      ) -> None:
    out = tmp_path / "cli.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_cli", "--n", "200",
                           "--repeat", "1", "--url", redis_url, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows] == ["| model", "| Plain", "| Indexed",
                                                  "| Secret"]
