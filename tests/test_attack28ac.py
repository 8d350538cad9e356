"""Attack 28AC (secrets, codecs, error hygiene): each test holds redmodel to a sentence of
its docs and FAILS on main as of this session. See /work/notes/s28/ATK-AC-FINDINGS.md."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import redmodel
from tests.keys import fresh_keys
from tests.test_cli import redmodel_cli

MAIL_A, MAIL_B = "ann@example.org", "bob@example.org"
SSN = "987-65-4321"


# --- F1: a nested class's own repr hides only what the first model that uses it hides ---

@attrs.define
class Info:
    notes: list[str] = attrs.Factory(list)        # encoded by the model's default chain
    pin: str = redmodel.field(codec="json|fernet", default="")


@redmodel.model(prefix="atk28ac_plain")             # default chain json: notes plain
@attrs.define
class PlainHolder:
    info: Info
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk28ac_sealed", codec="json|fernet")   # notes encrypted here
@attrs.define
class SealedHolder:
    info: Info
    id: str = redmodel.key_field(generated=False)


@attrs.define
class Info2:  # the same shape, used by the encrypting model only
    notes: list[str] = attrs.Factory(list)
    pin: str = redmodel.field(codec="json|fernet", default="")


@redmodel.model(prefix="atk28ac_sealed2", codec="json|fernet")
@attrs.define
class SealedHolder2:
    info: Info2
    id: str = redmodel.key_field(generated=False)


def test_f1_nested_repr_hides_what_the_encrypting_model_encrypts_whatever_was_declared_first(
        ) -> None:
    """docs/models.md "Encrypted fields are hidden in reprs": "A field stored through an
    encrypting chain (`codec="json|fernet"`, ...) shows as `<encrypted>` in the repr, and
    so the str, of a model instance, including inside nested objects"; the hiding is
    installed on "every nested attrs class that declares an encrypted field itself (its
    objects get logged on their own: `log.info("%s", member.card)`)".

    `SealedHolder` stores `info.notes` through its default chain `json|fernet`, so the
    notes are encrypted. Declared alone (`SealedHolder2`), `repr(obj.info)` hides them;
    because `PlainHolder` (which stores notes in plaintext) was declared first with the same
    nested class, `repr(sealed.info)` shows the encrypted notes in plaintext."""
    alone = SealedHolder2(Info2(["diagnosis: X"], "1234"), id="s")
    assert "diagnosis" not in repr(alone.info)          # holds: only one model installed
    sealed = SealedHolder(Info(["diagnosis: X"], "1234"), id="s")
    assert "diagnosis" not in repr(sealed)              # holds: the model's own repr
    assert "diagnosis" not in repr(sealed.info)         # FAILS: Info's repr is PlainHolder's
    assert "diagnosis" not in str(sealed.info)


# --- F2: import of an export whose encrypted values stay encrypted, blind index --------

@redmodel.model(prefix="atk28ac_mail")
@attrs.define
class Mailbox:
    name: str = redmodel.field(index=True, default="")
    mail: str = redmodel.field(codec="json|fernet", index="blind", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk28ac_ssn")
@attrs.define
class Person:
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True, default="")
    id: str = redmodel.key_field(generated=False)


def _keys(monkeypatch: pytest.MonkeyPatch) -> str:
    """One Fernet key and one index key, configured here and for the CLI (its env)."""
    return fresh_keys(monkeypatch)[0]


def _export_then_import(store: redmodel.Store, redis_url: str, tmp_path: Path,
                        fernet_key: str, model: str, ids: list[str],
                        cls: type) -> tuple[str, str]:
    out = tmp_path / "backup.jsonl"
    done = redmodel_cli("export", "-m", model, "-o", str(out), url=redis_url, keys=fernet_key)
    assert done.returncode == 0, done.stderr
    assert MAIL_A.encode() not in out.read_bytes() and SSN.encode() not in out.read_bytes()
    assert store.delete_many(cls, ids) == len(ids)
    done = redmodel_cli("import", "-m", model, "-i", str(out), url=redis_url, keys=fernet_key)
    return done.stdout, done.stderr + f" (exit {done.returncode})"


def test_f2_import_writes_back_a_blind_indexed_value_kept_encrypted(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md "import": "Encrypted values exported as ciphertext are written back as
    they were: no key needed, and they decrypt with the keys that wrote them"; "objects are
    written through the store, so index entries and unique values stay in step".

    An export (without --decrypt) of two objects with a blind-indexed encrypted field,
    imported back: the import exits 0, but each object's `mail` is now the field's default
    `""` (the exported ciphertext is overwritten), `find(mail="")` lists both and
    `find(mail=MAIL_A)` none."""
    key = _keys(monkeypatch)
    store.save_many([Mailbox("ann", MAIL_A, id="a"), Mailbox("bob", MAIL_B, id="b")])
    _out, err = _export_then_import(store, redis_url, tmp_path, key,
                                    "tests.test_attack28ac:Mailbox", ["a", "b"], Mailbox)
    assert "(exit 0)" in err, err
    got = store.get(Mailbox, "a")
    assert got is not None and got.mail == MAIL_A            # FAILS: ""
    assert store.find(Mailbox, mail=MAIL_A).ids() == ["a"]
    assert store.find(Mailbox, mail="").ids() == []
    assert store.verify(Mailbox) == []


def test_f2_import_of_a_blind_unique_value_kept_encrypted(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md "import" (as above), and docs/codecs.md "Blind indexes": "`get_by` and
    unique constraints work as with a plain index". After the round trip the stored SSN
    is `""`: `get_by(ssn="")` finds the person, `get_by(ssn=SSN)` does not."""
    key = _keys(monkeypatch)
    store.save(Person(SSN, id="p1"))
    _out, err = _export_then_import(store, redis_url, tmp_path, key,
                                    "tests.test_attack28ac:Person", ["p1"], Person)
    assert "(exit 0)" in err, err
    got = store.get(Person, "p1")
    assert got is not None and got.ssn == SSN                # FAILS: ""
    assert store.get_by(Person, ssn=SSN) == got
    assert store.get_by(Person, ssn="") is None
