"""User code type-checks as it runs: mypy --strict, with the plugin ``redmodel.mypy``, on the
fixture files in tests/typing/, must report exactly what each line's comment expects.

A fixture is any ``tests/typing/*.py`` (add a file and it is checked). Expectations are
comments on the line they are about, in mypy's own words (several may follow each other)::

    reveal_type(store.incr(Hat, "x", "quantity"))  # N: Revealed type is "int"
    Hat()  # E: Missing positional arguments "color", "price" in call to "Hat"  [call-arg]

A line without such a comment must get no error and no note. The fixtures are only
checked, never run. mypy runs once, in a subprocess, with the project's configuration
(pyproject.toml: strict, and the plugin).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "tests" / "typing").glob("*.py"))
EXPECTATION = re.compile(r"#\s*([EN]):\s*(.*?)\s*(?=#\s*[EN]:|$)")
REPORTED = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")

Expected = dict[tuple[str, int], list[str]]


def expectations(path: Path) -> Expected:
    found: Expected = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        _, hash_, comment = line.partition("  # ")
        if not hash_:
            continue
        for kind, text in EXPECTATION.findall("# " + comment):
            found.setdefault((path.name, number), []).append(f"{kind}: {text}")
    return found


@pytest.fixture(scope="module")
def reported() -> Expected:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--show-error-codes", "--no-error-summary", "--no-pretty",
         *(str(f.relative_to(ROOT)) for f in FIXTURES)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 2: mypy itself failed
    found: Expected = {}
    for line in done.stdout.splitlines():
        match = REPORTED.match(line)
        if match is None:
            continue
        kind = "E" if match["kind"] == "error" else "N"
        path = Path(match["path"])
        assert path.parent == Path("tests/typing"), f"mypy complains outside the fixtures: {line}"
        found.setdefault((path.name, int(match["line"])), []).append(f"{kind}: {match['text']}")
    return found


def test_there_are_fixtures() -> None:
    assert {f.name for f in FIXTURES} >= {"models.py", "store_incr.py"}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_mypy_reports_exactly_what_the_fixture_expects(fixture: Path, reported: Expected) -> None:
    expected = expectations(fixture)
    actual = {key: value for key, value in reported.items() if key[0] == fixture.name}
    missing = {k: v for k, v in expected.items() if actual.get(k) != v}
    unexpected = {k: v for k, v in actual.items() if expected.get(k) != v}
    assert not missing and not unexpected, (
        f"expected but not reported as such: {missing}\nreported but not expected: {unexpected}"
    )
