"""mypy --strict with the project's configuration (and so the plugin ``redmodel.mypy``) over
user code, as a user runs it: the one runner every typing test shares.

A test writes its user code to a file, runs mypy on it once (a module fixture), and reads
the report by line: ``{line: ["error: <text>  [<code>]", "note: <text>", ...]}``. Code
marked ``# F3 E: <text>`` (an error containing the text), ``# F3 N: <text>`` (a note) or
``# F3 ok`` (neither) is compared with the report by :func:`unmet`; :func:`import_user_code`
imports the same file, so a test can run the calls mypy judged against a real server.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import redmodel
from tests.conftest import seeded_mypy_cache

__all__ = ["MARK", "import_user_code", "mypy_errors", "mypy_report", "refused", "run_mypy", "unmet",
           "user_code"]

ROOT = Path(__file__).resolve().parent.parent
REPORTED = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*?)"
    r"(?:  \[(?P<code>[a-z-]+)\])?$")
# "# F3 E: text" / "# F3 N: text" / "# F3 ok" at a line's end (the colon may be left out)
MARK = re.compile(r"#\s*(F\d+)\s+(E|N|ok)\b:?\s*(.*)$")


def run_mypy(files: Sequence[Path], cache: Path, *options: str
             ) -> tuple[list[re.Match[str]], str]:
    """mypy over ``files`` with ``--cache-dir cache`` (seeded: ``seeded_mypy_cache``): every
    error and note it reports (matches of :data:`REPORTED`: path, line, kind, text, code),
    and its log (stderr). Fails the test if mypy itself failed (exit code 2)."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--show-error-codes", "--no-error-summary", "--no-pretty",
         "--cache-dir", str(seeded_mypy_cache(cache)), *options, *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    found = [m for m in map(REPORTED.match, done.stdout.splitlines()) if m]
    return found, done.stderr


def mypy_report(path: Path, cache: Path | None = None) -> dict[int, list[str]]:
    """mypy's errors and notes on ``path``'s own lines: ``{line: ["error: text  [code]",
    "note: text"]}`` (what it says of other files is left out)."""
    found, _ = run_mypy([path], cache if cache is not None else path.parent / ".cache")
    report: dict[int, list[str]] = {}
    for m in found:
        if Path(m["path"]).name == path.name:
            code = f"  [{m['code']}]" if m["code"] else ""
            report.setdefault(int(m["line"]), []).append(f"{m['kind']}: {m['text']}{code}")
    return report


def mypy_errors(path: Path, cache: Path | None = None) -> dict[int, list[str]]:
    """Only the errors of :func:`mypy_report`: ``{line: ["error: text  [code]"]}``."""
    report = mypy_report(path, cache)
    errors = {n: [g for g in got if g.startswith("error")] for n, got in report.items()}
    return {n: got for n, got in errors.items() if got}


def import_user_code(path: Path) -> ModuleType:
    """Import the user-code file ``path`` as the module of its stem (kept in sys.modules:
    attrs and the models registry look classes up by module)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def user_code(tmp_path_factory: pytest.TempPathFactory, name: str, source: str
              ) -> tuple[dict[int, list[str]], ModuleType]:
    """``source`` written to ``<tmp>/<name>.py``, checked by mypy, then imported: the report
    by line and the module."""
    path = tmp_path_factory.mktemp(name) / f"{name}.py"
    path.write_text(source)
    return mypy_report(path), import_user_code(path)


def unmet(source: str, report: dict[int, list[str]], finding: str) -> list[str]:
    """The expectations of ``finding``'s marked lines (:data:`MARK`) in ``source`` that the
    report does not meet: ``E`` wants an error containing the text, ``N`` a note, ``ok``
    no error."""
    missed = []
    for number, text in enumerate(source.splitlines(), 1):
        match = MARK.search(text)
        if match is None or match[1] != finding:
            continue
        got = report.get(number, [])
        errors = [g for g in got if g.startswith("error")]
        notes = [g for g in got if g.startswith("note")]
        kind, want = match[2], match[3]
        ok = (not errors if kind == "ok" else
              any(want in e for e in errors) if kind == "E" else
              any(want in n for n in notes))
        if not ok:
            missed.append(f"line {number}: {text.strip()}\n    mypy: {got}")
    return missed


def refused(module: ModuleType, store: Any, prefix: str) -> None:
    """Every function ``<prefix>_bad*`` of the user module is refused by the store at run
    time (ValidationError): what mypy is expected to flag."""
    bad = [getattr(module, n) for n in dir(module) if n.startswith(prefix + "_bad")]
    assert bad
    for fn in bad:
        with pytest.raises(redmodel.ValidationError):
            fn(store)
