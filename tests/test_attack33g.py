"""Attack 33G (NaN in sets / dict keys after fix 33F; CLI reports). No finding held up in
the 20-minute box: these are guards (they PASS on main) for what was tried.

docs/codecs.md "Hidden in errors": "`redmodel import` names a bad line's place inside an
encrypted field (a blob's whole value) by attribute names only (`$.notes`,
`$.card.labels`), never by a dict key or list position". Tried here beyond fix 33F's
tests: a hash model's *default* chain encrypting its encoded fields, an encrypted field of
a nested class flattened in the hash and flat layouts, Optional and tuple encrypted
fields, with and without --decrypt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

import redmodel
from redmodel.cli._app import run
from tests.keys import use_keys

pytestmark = pytest.mark.no_registry
THIS = "tests.test_attack33g"


@redmodel.model(prefix="g4h", codec="json|fernet")
@attrs.define
class H:
    id: str = redmodel.key_field(generated=False)
    notes: dict[str, int] = attrs.Factory(dict)
    rows: list[dict[str, float]] = attrs.Factory(list)


@attrs.define
class Addr:
    secret: dict[str, int] = redmodel.field(codec="json|fernet", factory=dict)
    plain: str = ""


@redmodel.model(prefix="g4f", layout="flat")
@attrs.define
class Fl:
    id: str = redmodel.key_field(generated=False)
    addr: Addr = attrs.Factory(Addr)


@redmodel.model(prefix="g4n")
@attrs.define
class Nh:
    id: str = redmodel.key_field(generated=False)
    addr: Addr = attrs.Factory(Addr)
    opt: dict[str, int] | None = redmodel.field(codec="json|fernet", default=None)
    tup: tuple[int, ...] = redmodel.field(codec="json|fernet", default=())


CASES = [
    ("H", {"notes": {"SeCk": "x"}}),
    ("H", {"notes": {"SeCk": 1.5}}),
    ("H", {"rows": [{"SeCk": 2**53 + 1}]}),
    ("H", {"rows": [{"SeCk": "SeCv"}]}),
    ("Fl", {"addr": {"secret": {"SeCk": "x"}}}),
    ("Fl", {"addr": {"secret": {"SeCk": 1.5}}}),
    ("Nh", {"addr": {"secret": {"SeCk": "x"}}}),
    ("Nh", {"addr": {"secret": {"SeCk": 1.5}}}),
    ("Nh", {"opt": {"SeCk": "x"}}),
    ("Nh", {"opt": {"SeCk": 1.5}}),
    ("Nh", {"tup": ["SeCv"]}),
    ("Nh", {"tup": [1, 2.5]}),
    ("Nh", {"addr": {"secret": {"SeCk": 1}, "plain": 5}}),
    ("Nh", {"addr": {"secret": {"SeCk": 1}, "zz": 5}}),
    ("Nh", {"addr": {"secret": []}}),
    ("Nh", {"addr": {"secret": "SeCv"}}),
    ("Nh", {"opt": "SeCv"}),
]


@pytest.mark.parametrize("model,data", CASES, ids=[f"{m}-{json.dumps(c)}" for m, c in CASES])
@pytest.mark.parametrize("dec", [True, False])
def test_an_import_report_never_quotes_an_encrypted_key_or_item(
    capsys, monkeypatch, redis_url, tmp_path: Path, model, data: dict[str, Any], dec
):
    use_keys(monkeypatch)
    path = tmp_path / "l.jsonl"
    path.write_text(
        json.dumps({"v": 1, "model": f"{THIS}:{model}", "id": "a", "pttl": None, "data": data})
        + "\n"
    )
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_CLUSTER", "")
    code = run(
        ["import", "-m", THIS, "-i", str(path), "--dry-run", "--url", redis_url]
        + (["--decrypt"] if dec else [])
    )
    out = capsys.readouterr()
    rep = (out.out + out.err).strip()
    assert code == 0 or rep, "a refused line gives a report"
    assert "SeC" not in rep, rep
