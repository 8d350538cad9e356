"""Every ```python block in README.md and docs/*.md runs, in order, one namespace per file,
against the throwaway server (``redis_url`` and a ``store`` on it are defined)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

import redmodel

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_documentation_examples_run(
    path: Path, redis_client: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = BLOCK.findall(path.read_text())
    monkeypatch.setenv("REDIS_URL", redis_url)
    namespace: dict[str, object] = {
        "redis_url": redis_url,
        "store": redmodel.Store(redis_client),
        "__name__": f"docs_{path.stem}",
    }
    for number, code in enumerate(blocks, 1):
        try:
            code_obj = compile(code, f"{path.name} block {number}", "exec", dont_inherit=True)
            exec(code_obj, namespace)
        except Exception as e:
            raise AssertionError(f"{path.name}, python block {number} failed: {e!r}") from e
