"""Every ```python block in README.md and docs/*.md runs as written: each page in a fresh
interpreter (tests/run_doc.py in a subprocess), its blocks in order, nothing predefined.
A page gets its server as a user's program does, from ``REDIS_URL``: here the session's
throwaway server, emptied before each page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_documentation_examples_run(
    path: Path, redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["REDIS_URL"] = redis_url
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "run_doc.py"), str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
