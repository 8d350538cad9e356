"""``python -m benchmarks --quick`` runs end to end against the test server.

Only that every section prints its table and every plot is written: timings on a shared
machine prove nothing, so nothing here asserts on them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = (
    "1. Reply parsers",
    "2. Mapper overhead",
    "3. Codecs",
    "4. Memory",
    "5. Scaling",
    "6. Transactions",
    "7. Where the time goes",
    "9. Exactly-once mode",
)
PLOTS = ("parsers_ratio.png", "mapper_ops.png", "codecs.png", "memory_per_object.png",
         "scaling.png")


def test_quick_run_prints_every_section_table_and_writes_every_plot(
    redis_url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--url", redis_url,
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| CPU |" in out and "| server |" in out and "| redis-py |" in out
    chunks = out.split("\n## ")[1:]
    titles = [c.splitlines()[0] for c in chunks]
    for title in SECTIONS:
        matching = [c for c in chunks if c.startswith(title)]
        assert matching, f"section {title!r} missing; printed: {titles}"
        assert "\n|---" in matching[0], f"section {title!r} printed no table"
    assert "_RESP2Parser | _RESP2Parser" in out and "_RESP3Parser | _RESP3Parser" in out
    for name in PLOTS:
        plot = tmp_path / name
        assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    results = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "python -m benchmarks --quick" in results
    assert all(f"## {title}" in results for title in SECTIONS)
