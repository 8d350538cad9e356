"""Run every ```python block of one Markdown page, in order, in one namespace, as a user
would paste them into a fresh interpreter: ``python tests/run_doc.py docs/store.md``.

Tracebacks point at the page's own lines. Nothing is predefined: a page gets its server
from ``REDIS_URL`` like any program (``Store.from_url()`` and ``Store.from_env()`` read it).
"""

from __future__ import annotations

import ast
import re
import sys
import traceback
import types
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, source) of every python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def main(path: Path) -> int:
    # The page is the program: its own __main__ module, as `python page.py` would have it
    # (attrs resolves a model's annotations through sys.modules[cls.__module__]).
    page = types.ModuleType("__main__")
    page.__file__ = str(path)
    sys.modules["__main__"] = page
    namespace = page.__dict__
    for number, (line, source) in enumerate(blocks(path.read_text()), 1):
        tree = ast.parse(source, str(path))
        ast.increment_lineno(tree, line - 1)
        try:
            exec(compile(tree, str(path), "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"{path}: python block {number} (line {line}) failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
