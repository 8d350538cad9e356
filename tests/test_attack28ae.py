"""Attack 28AE: this stop's changes (query scans, import/export of encrypted models, reprs and
decoding, update/incr of plain hashes, one_of counts, RedisServer.client). Each test holds
the code to a sentence of the docs and FAILS on main as of this attack."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import redmodel
from redmodel._models._specs import spec_of
from tests.keys import fresh_keys
from tests.test_cli import redmodel_cli


@redmodel.model(prefix="atk28ae_enc")
@attrs.define
class EncPlain:
    name: str
    secret: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk28ae_blob", layout="blob", codec="json|fernet")
@attrs.define
class EncBlob:
    name: str
    id: str = redmodel.key_field(generated=False)


def _fernet(monkeypatch: pytest.MonkeyPatch) -> str:
    """One Fernet key and one index key, configured here and for the CLI (its env)."""
    return fresh_keys(monkeypatch)[0]


@pytest.mark.parametrize("model", [EncPlain, EncBlob])
def test_f1_import_kept_encrypted_keeps_an_expiry_the_key_had(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, model: type) -> None:
    """docs/cli.md, import, Limits: "An object exported without expiry keeps an expiry its
    key already had when the import replaces it without one." (docs/store.md, TTL:
    "ttl=None on a save ... sends no expiry command: an expiry the key already has is
    kept"). An export kept encrypted (no --decrypt) imported over the object, which got a
    TTL since, drops that TTL: the import replaces a hash whole (DEL + HSET) and a blob by a SET
    without KEEPTTL. The same import of a model without encrypted fields keeps it."""
    key = _fernet(monkeypatch)
    label = f"tests.test_attack28ae:{model.__name__}"
    store.save(model("ann", id="o"))
    out = tmp_path / "x.jsonl"
    done = redmodel_cli("export", "-m", label, "-o", str(out), url=redis_url, keys=key)
    assert done.returncode == 0, done.stderr
    store.save(model("bob", id="o"), ttl=1000)
    done = redmodel_cli("import", "-m", label, "-i", str(out), url=redis_url, keys=key)
    assert done.returncode == 0, done.stderr
    assert store.get(model, "o") == model("ann", id="o")
    left = store.client.pttl(spec_of(model).key_for("o"))
    assert 0 < left <= 1_000_000, f"the expiry the key had is gone (PTTL {left})"


@attrs.define
class Card:
    number: str = redmodel.field(codec="json|fernet")
    holder: str = ""


@attrs.define
class Addr:
    street: str = ""
    zip: str = ""


@redmodel.model(prefix="atk28ae_mem")
@attrs.define
class Member:
    card: Card  # flattened: number encrypted, holder plain
    addr: Addr = attrs.Factory(Addr)  # plain
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk28ae_vault")
@attrs.define
class Vault:
    card: Card = redmodel.field(codec="json|fernet")  # the whole card encrypted
    addr: Addr = redmodel.field(codec="json|fernet", factory=Addr)  # the whole address
    id: str = redmodel.key_field(generated=False)


def test_f2_nested_class_encrypted_whole_by_a_model_shows_in_its_own_repr() -> None:
    """docs/models.md "Encrypted fields are hidden in reprs": "A nested class gets such a
    repr of its own (its objects get logged on their own: log.info("%s", member.card));
    one stored by several models hides what any of them encrypts in it, whatever the
    order they were declared in." Vault stores a Card (and an Addr) whole through
    json|fernet, so it encrypts holder (street, zip) too; Member stores them plain. Logging
    vault.card on its own shows holder='Ann', and vault.addr shows the street: only the
    attributes a field codec marks are hidden, never what a model encrypts by encrypting
    the whole nested value."""
    vault = Vault(Card("4111 1111 1111 1111", "Ann Secret"), Addr("1 Hidden Lane", "99999"),
                  id="v")
    assert "Ann Secret" not in repr(vault) and "Hidden" not in repr(vault)  # holds
    assert "Ann Secret" not in repr(vault.card), repr(vault.card)
    assert "Hidden Lane" not in repr(vault.addr), repr(vault.addr)


@redmodel.model(prefix="atk28ae_bk")
@attrs.define
class BlindUnique:
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    id: str = redmodel.key_field(generated=False)


def test_f3_import_partial_by_a_unique_value_in_the_database_exits_3(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md "import": "What only the database can tell (a unique value another
    object holds, ...) is found only while writing, so such an import is partial: it
    exits 3 and its message counts the objects written and names the keys not written";
    exit codes: "1 ... `import` found bad lines (and wrote nothing)". An export kept
    encrypted of a blind-unique model, imported (--chunk 1) where another object holds one
    line's ssn: the first line is written, the second refused, and the import exits 1
    with the store's own error ("nothing was written") instead of 3 and the counts."""
    key = _fernet(monkeypatch)
    label = "tests.test_attack28ae:BlindUnique"
    store.save_many([BlindUnique("333", id="q"), BlindUnique("111", id="a")])
    out = tmp_path / "x.jsonl"
    done = redmodel_cli("export", "-m", label, "-o", str(out), url=redis_url, keys=key)
    assert done.returncode == 0, done.stderr
    lines = sorted(out.read_text().splitlines(), key=lambda line: '"id":"a"' in line)
    out.write_text("\n".join(lines) + "\n")  # q's line first, then a's
    store.client.flushall()
    store.save(BlindUnique("111", id="x"))
    done = redmodel_cli("import", "-m", label, "-i", str(out), "--chunk", "1",
                        url=redis_url, keys=key)
    assert store.get(BlindUnique, "q") == BlindUnique("333", id="q")  # written
    assert store.get(BlindUnique, "a") is None and store.verify(BlindUnique) == []
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
