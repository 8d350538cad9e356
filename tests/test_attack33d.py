"""Attack 33D (after fixes 33A, 33B, 33C): values redmodel saves without complaint that it
cannot read back as saved.

docs/codecs.md lists `float` "(including `inf`; `nan` works in json and msgpack but is not
promised)"; docs/migrations.md "Strict decoding": "A `set` or `frozenset` is read only from
a list without repeats (`["a", "a"]`, or `[1, 1.0]` for a `set[float]`, would lose a
member), a `dict` only when no two stored keys read as one key". A Python set or dict may
hold several NaN members/keys (each NaN is unequal to every other); the save accepts them,
and the read either refuses the whole object (the json/yaml parser gives every NaN as one
object, so the members now repeat) or silently keeps one key. Either the save refuses
such a value (ValidationError, nothing written) or the read gives it back: what the tests
below hold the code to is that a save that was accepted reads back with every member.

F3: `redmodel import` quotes the keys of an encrypted dict field in its bad-line report.
"""

import itertools
import json
import math
from pathlib import Path
from typing import Any

import attrs
import pytest

import redmodel
from redmodel.cli._app import run
from tests.keys import use_keys

pytestmark = pytest.mark.no_registry

LAYOUTS = [
    pytest.param("hash", None, id="hash"),
    pytest.param("blob", "json", id="blob-json"),
    pytest.param("blob", "yaml", id="blob-yaml"),
    pytest.param("flat", None, id="flat"),
]

_made = itertools.count()


def _model(layout: str, codec: str | None, tp: Any) -> type:
    kw = {"codec": codec} if codec else {}

    @redmodel.model(prefix=f"atk33d{next(_made)}", layout=layout, **kw)
    @attrs.define
    class M:
        c: tp  # type: ignore[valid-type]
        id: str = redmodel.key_field(generated=False)

    return M


def _save_or_refused(store: redmodel.Store, obj: Any) -> bool:
    """True if the save was accepted; a refusal must write nothing."""
    try:
        store.save(obj)
    except redmodel.ValidationError:
        assert store.get(type(obj), obj.id) is None
        return False
    return True


@pytest.mark.parametrize(("layout", "codec"), LAYOUTS[:3])
@pytest.mark.parametrize("tp", [set[float], frozenset[float]], ids=["set", "frozenset"])
def test_f1_a_saved_set_of_two_nans_cannot_be_read(
        store: redmodel.Store, layout: str, codec: str | None, tp: Any) -> None:
    """docs/migrations.md "Strict decoding": a set "is read only from a list without
    repeats (... would lose a member)"; docs/codecs.md: these types "come back equal and
    of the same type through every chain" (`nan` "works in json"). `{float("nan"),
    float("nan")}` is a set of two members; the save stores `[NaN, NaN]`, and every later
    read of the object raises DecodeError ("a list with repeated members"): the whole
    object is lost to get/find, though redmodel wrote it. The save should refuse it, or
    the read give two members back."""
    M = _model(layout, codec, tp)
    a, b = float("nan"), float("nan")
    value = tp((a, b))
    assert len(value) == 2
    if not _save_or_refused(store, M(c=value, id="1")):
        return
    got = store.get(M, "1")  # DecodeError here on main
    assert len(got.c) == 2


@pytest.mark.parametrize(("layout", "codec"), LAYOUTS)
def test_f2_a_saved_dict_with_two_nan_keys_reads_back_with_one(
        store: redmodel.Store, layout: str, codec: str | None) -> None:
    """docs/migrations.md "Strict decoding": a `dict` is read "only when no two stored keys
    read as one key" (no member lost silently); docs/codecs.md: values "come back equal".
    `{nan: 1, nan: 2}` (two NaN keys) is accepted by the save, stored as a JSON object
    with the key `NaN` twice (a flat model: the key name `...:c:nan` written twice), and
    read back as `{nan: 2}` without any error: a member is lost silently."""
    M = _model(layout, codec, dict[float, int])
    value = {float("nan"): 1, float("nan"): 2}
    if not _save_or_refused(store, M(c=value, id="1")):
        return
    got = store.get(M, "1")
    assert sorted(got.c.values()) == [1, 2]
    assert all(math.isnan(k) for k in got.c)


# ---- F3: the import's bad-line report quotes an encrypted dict's keys ---------------------

SECRET = "S3CR3T-atk33d-key"
THIS = "tests.test_attack33d"


@redmodel.model(prefix="atk33dcli")
@attrs.define
class Patient:
    notes: dict[str, int] = redmodel.field(codec="json|fernet", factory=dict)
    scores: dict[str, float] = redmodel.field(codec="json|fernet", factory=dict)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk33dvault", layout="blob", codec="json|fernet")
@attrs.define
class Vault:
    notes: dict[str, int] = attrs.Factory(dict)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize(("model", "data"), [
    pytest.param("Patient", {"notes": {SECRET: "x"}}, id="hash-field-structure"),
    pytest.param("Patient", {"notes": {SECRET: 1.5}}, id="hash-field-not-int"),
    pytest.param("Patient", {"scores": {SECRET: 2**53 + 1}}, id="hash-field-converted"),
    pytest.param("Vault", {"notes": {SECRET: "x"}}, id="blob-model"),
])
def test_f3_the_import_report_quotes_the_keys_of_an_encrypted_dict(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str,
        redis_client: Any, tmp_path: Path, model: str, data: dict[str, Any]) -> None:
    """docs/codecs.md "Hidden in errors": "No redmodel error carries a stored value or a
    plaintext"; "A value refused by validation is described, never quoted". A dict's keys
    are part of an encrypted field's value (stored only inside its ciphertext). `redmodel
    import --decrypt` (the documented way to carry decrypted exports, docs/cli.md) of a
    line whose encrypted dict holds a bad value reports `line 1: unknown error (not an
    integer) @ $.notes['<the key>']` (cattrs' path) or `$.scores.<the key>: the value does
    not fit ...` (the import's own path): the secret key goes to the terminal or CI log,
    while the library's own check of the same value says only `expected int, got str`."""
    use_keys(monkeypatch)
    path = tmp_path / "lines.jsonl"
    path.write_text(json.dumps({"v": 1, "model": f"{THIS}:{model}", "id": "a", "pttl": None,
                                "data": data}) + "\n")
    with monkeypatch.context() as m:
        m.setenv("REDIS_URL", redis_url)
        m.setenv("REDIS_CLUSTER", "")
        code = run(["import", "-m", THIS, "-i", str(path), "--decrypt", "--dry-run",
                    "--url", redis_url])
    out = capsys.readouterr()
    assert code == 1  # the line is bad: refused, nothing written
    assert SECRET not in out.out + out.err, out.out + out.err
