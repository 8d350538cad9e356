"""Encrypted fields: plain indexes on them are refused, blind indexes answer equality and
uniqueness through a keyed hash on every shell, their key rotates without a gap, and
encrypted values stay out of reprs, errors and Redis."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

import redmodel
from redmodel._indexes import _blind
from redmodel._indexes._blind import MAC_BYTES, kid_of
from redmodel._models._specs import spec_of
from tests.keys import use_keys
from tests.plaintext import dump, leaked

FERNET = redmodel.codecs.FernetTransform.generate_key()
IDX_A, IDX_B = redmodel.generate_index_key(), redmodel.generate_index_key()
SSN = ["987-65-4321 Ünïcødé", "123-45-6789 ßtraße", "555-12-3456 ☃☃☃"]
EMAIL = ["ann.o'connor@example.org", "björn@exämple.se"]


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, fernet=[FERNET], index=[IDX_A])


def declare(buckets: int | None) -> type:
    @redmodel.model(prefix="person" if buckets is None else "bperson", buckets=buckets,
                    unique=[("ssn", "country")])
    @attrs.define
    class Person:
        name: str = redmodel.field(index=True)
        country: str = "NO"
        ssn: str | None = redmodel.field(codec="json|fernet", index="blind", default=None)
        email: str | None = redmodel.field(codec="json|fernet", index="blind", unique=True,
                                           default=None)
        tags: list[str] = redmodel.field(codec="json|fernet", index="blind", factory=list)
        note: str = redmodel.field(codec="json|fernet", default="")
        id: str = redmodel.key_field(generated=False)

    return Person


PEOPLE = {False: declare(None), True: declare(4)}


@pytest.fixture
def store(any_store: redmodel.Store) -> redmodel.Store:
    """Sync and asyncio stores, on one server and on a three-primary cluster (where the
    model spreads over 4 buckets and claims unique values in their own buckets)."""
    return any_store


@pytest.fixture
def Person(store: redmodel.Store) -> type:
    return PEOPLE[store.cluster]


def people(Person: type) -> list[Any]:
    return [Person("ann", "NO", SSN[0], EMAIL[0], ["vip ∆ secret tag"], "n0 plaintext", id="p0"),
            Person("bob", "SE", SSN[0], EMAIL[1], [], "n1 plaintext", id="p1"),
            Person("cid", "NO", SSN[1], None, ["vip ∆ secret tag"], "", id="p2")]


def everything(Person: type) -> list[str]:
    return [*SSN, *EMAIL, "vip ∆ secret tag", "n0 plaintext", "n1 plaintext"]


# ---- declarations ----------------------------------------------------------------------


@pytest.mark.parametrize("option", [{"index": True}, {"index": "eq"}, {"index": "range"},
                                    {"unique": True}])
def test_a_plain_index_on_an_encrypted_field_is_refused(option: dict[str, Any]) -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Bad\.ssn is encrypted.*"
                                                             r"index='blind'"):
        @redmodel.model
        @attrs.define
        class Bad:
            ssn: str = redmodel.field(codec="json|fernet", **option)
            id: str = redmodel.key_field()


def test_an_encrypted_field_in_a_model_level_unique_needs_a_blind_index() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Bad\.ssn is encrypted"):
        @redmodel.model(unique=[("ssn", "country")])
        @attrs.define
        class Bad:
            country: str
            ssn: str = redmodel.field(codec="json|fernet")
            id: str = redmodel.key_field()


def test_the_models_default_chain_counts_for_encoded_fields() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Bad\.tags is encrypted"):
        @redmodel.model(codec="json|fernet")
        @attrs.define
        class Bad:
            tags: list[str] = redmodel.field(index=True)
            id: str = redmodel.key_field()


def test_a_range_index_on_an_encrypted_field_says_why_it_cannot_be_blind() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match="keeps no order"):
        @redmodel.model
        @attrs.define
        class Bad:
            born: int = redmodel.field(codec="json|fernet", index="range")
            id: str = redmodel.key_field()


def test_a_blind_index_on_a_plaintext_or_bool_field_is_refused() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Bad\.name: index='blind' is "
                                                             "for encrypted fields"):
        @redmodel.model
        @attrs.define
        class Bad:
            name: str = redmodel.field(index="blind")
            id: str = redmodel.key_field()
    with pytest.raises(redmodel.ModelDefinitionError, match="on a bool"):
        @redmodel.model
        @attrs.define
        class Worse:
            flag: bool = redmodel.field(codec="json|fernet", index="blind")
            id: str = redmodel.key_field()


@attrs.define
class Secretive:
    number: str = redmodel.field(codec="json|fernet")


def test_an_encrypting_chain_that_would_be_ignored_is_refused() -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Secretive\.number declares "
                       r"codec 'json\|fernet', which would be ignored: Holder\.cards"):
        @redmodel.model
        @attrs.define
        class Holder:
            cards: list[Secretive]  # encoded whole by json: the inner chain never runs
            id: str = redmodel.key_field()
    with pytest.raises(redmodel.ModelDefinitionError, match="the blob layout ignores"):
        @redmodel.model(layout="blob", codec="msgpack")
        @attrs.define
        class Blob:
            pin: str = redmodel.field(codec="json|fernet")
            id: str = redmodel.key_field()

    @redmodel.model
    @attrs.define
    class Fine:  # flattened, or inside a chain that encrypts: the secret is encrypted
        card: Secretive
        cards: list[Secretive] = redmodel.field(codec="json|fernet", factory=list)
        id: str = redmodel.key_field()

    assert repr(Fine(Secretive("x"), [Secretive("y")], id="f")) == (
        "Fine(card=Secretive(number=<encrypted>), cards=<encrypted>, id='f')")


# ---- tokens ------------------------------------------------------------------------------


def test_tokens_are_keyed_bound_to_their_field_and_carry_the_key_id() -> None:
    spec = spec_of(PEOPLE[False])
    assert spec.indexes is not None
    ssn, email = spec.indexes.fields["ssn"], spec.indexes.fields["email"]
    token = ssn.text(SSN[0])
    kid, mac = token.split(".")
    assert len(kid) == 4 and len(base64.urlsafe_b64decode(mac + "==")) == MAC_BYTES
    assert ssn.text(SSN[0]) == token, "deterministic"
    assert ssn.text(SSN[1]) != token
    assert email.text(SSN[0]).split(".")[1] != mac, "another field, another token"
    other = spec_of(PEOPLE[True]).indexes
    assert other is not None and other.fields["ssn"].text(SSN[0]) != token, "another model"
    redmodel.configure_index_keys(keys=[IDX_B, IDX_A])
    assert ssn.lookup_texts(SSN[0])[1] == token and ssn.text(SSN[0]) != token
    assert kid_of(ssn.text(SSN[0])) != kid == kid_of(token)


# ---- through the store -------------------------------------------------------------------


def test_find_get_by_and_unique_work_and_redis_holds_no_plaintext(
        store: redmodel.Store, Person: type) -> None:
    saved = people(Person)
    store.save_many(saved)
    assert sorted(store.find(Person, ssn=SSN[0]).ids()) == ["p0", "p1"]
    assert store.find(Person, ssn=SSN[0], name="bob").ids() == ["p1"]
    assert sorted(store.find(Person, tags="vip ∆ secret tag").ids()) == ["p0", "p2"]
    assert store.find(Person, ssn=SSN[2]).count() == 0
    assert store.get_by(Person, email=EMAIL[1]) == saved[1]
    assert store.get_by(Person, ssn=SSN[1], country="NO") == saved[2]
    assert store.get_by(Person, email="nobody@example.org") is None
    with pytest.raises(redmodel.UniqueViolationError) as info:
        store.save(Person("dan", "SE", SSN[2], EMAIL[0], id="p3"))
    assert (info.value.fields, repr(info.value.value)) == (("email",), "<encrypted>")
    with pytest.raises(redmodel.UniqueViolationError) as info:
        store.update(Person, "p2", ssn=SSN[0], country="SE")
    assert repr(info.value.value) == "(<encrypted>, 'SE')", "the plain part is shown"
    assert store.get(Person, "p3") is None and store.get(Person, "p2") == saved[2]
    store.update(Person, "p0", email=None)
    store.save(Person("dan", "SE", SSN[2], EMAIL[0], id="p3"))
    assert store.get_by(Person, email=EMAIL[0]).id == "p3"  # type: ignore[union-attr]
    assert store.verify(Person) == []
    assert leaked(everything(Person), dump(store.client)) == []


def test_rotating_the_index_key_keeps_queries_and_uniqueness_working(
        store: redmodel.Store, Person: type) -> None:
    saved = people(Person)
    store.save_many(saved)
    redmodel.configure_index_keys(keys=[IDX_B, IDX_A])  # a new key in front
    assert sorted(store.find(Person, ssn=SSN[0]).ids()) == ["p0", "p1"], "old entries found"
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(Person("dan", "SE", None, EMAIL[0], id="p3"))  # claimed under the old key
    store.save(Person("eve", "DK", SSN[0], "eve@example.org", id="p4"))
    assert sorted(store.find(Person, ssn=SSN[0]).ids()) == ["p0", "p1", "p4"]
    assert store.rotate_index_key(Person, count=2) == 3
    assert store.rotate_index_key(Person) == 0, "nothing left to do"
    redmodel.configure_index_keys(keys=[IDX_B])  # the old key dropped
    assert sorted(store.find(Person, ssn=SSN[0]).ids()) == ["p0", "p1", "p4"]
    assert store.get_by(Person, email=EMAIL[1]) == saved[1]
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(Person("dan", "SE", None, EMAIL[0], id="p3"))
    assert store.rotate_index_key(Person) == 4, "drops the old key's unique entries"
    old = kid_of(_blind.IndexKeyring([IDX_A.encode()], "test").kids[0])
    assert old.encode() not in dump(store.client)
    assert store.verify(Person) == []


def test_rotation_shows_progress(store: redmodel.Store, Person: type,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    store.save_many(people(Person))
    redmodel.configure_index_keys(keys=[IDX_B, IDX_A])
    assert store.rotate_index_key(Person, progress=True) == 3
    assert "rotate_index_key Person: 3 objects looked at, 3 rebuilt" in capsys.readouterr().err


# ---- hidden values -----------------------------------------------------------------------


@attrs.define
class Card:
    number: str = redmodel.field(codec="json|fernet")
    holder: str = ""


@redmodel.model(prefix="wallet")
@attrs.define(str=True)
class Wallet:
    owner: str
    card: Card
    backup: Card | None = redmodel.field(codec="json|fernet", default=None)
    pin: str = redmodel.field(codec="json|fernet", default="", repr=False)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="vault", layout="blob", codec="json|fernet")
@attrs.define
class Vault:
    secret: str
    id: str = redmodel.key_field(generated=False)


def test_encrypted_values_are_hidden_in_repr_and_str() -> None:
    w = Wallet("ann", Card("4111 1111 1111 1111", "Ann"), Card("5500 0000 0000 0004"), "1234",
               id="w1")
    # backup stores a Card encrypted whole, holder included: Card's repr hides holder too,
    # wherever a Card shows (attack 28AE F2)
    expected = ("Wallet(owner='ann', card=Card(number=<encrypted>, holder=<encrypted>), "
                "backup=<encrypted>, id='w1')")
    assert repr(w) == str(w) == expected
    assert repr(Wallet("bob", Card("x"), id="w2")).count("backup=None") == 1
    assert repr(Vault("the whole thing", id="v1")) == "Vault(secret=<encrypted>, id='v1')"
    assert repr([w]) == f"[{expected}]"


def test_a_hand_written_repr_is_left_alone() -> None:
    @redmodel.model
    @attrs.define
    class Own:
        secret: str = redmodel.field(codec="json|fernet")
        id: str = redmodel.key_field()

        def __repr__(self) -> str:
            return "Own(...)"

    assert repr(Own("x")) == "Own(...)"


# ---- keys --------------------------------------------------------------------------------

BAD_KEY = base64.urlsafe_b64encode(b"k" * 31).decode()  # 31 bytes: well formed, too short


def no_part_of(key: str, message: str) -> bool:
    return not any(key[i:i + 6] in message for i in range(len(key) - 5))


@pytest.mark.parametrize("how", ["keys", "key_provider", "env", "file"])
def test_a_bad_key_gets_a_clear_error_without_the_key(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# newest first\n{FERNET}\n{BAD_KEY}\n")
    monkeypatch.setenv("APP_KEYS", f"{FERNET},{BAD_KEY}")
    source: dict[str, Any] = {"keys": {"keys": [FERNET, BAD_KEY]},
                              "key_provider": {"key_provider": lambda: [FERNET, BAD_KEY]},
                              "env": {"env": "APP_KEYS"}, "file": {"file": path}}[how]
    for configure, what in ((redmodel.codecs.configure_fernet, "not a Fernet key"),
                            (redmodel.configure_index_keys, "not an index key")):
        with pytest.raises(redmodel.CodecError) as info:
            configure(**source)
            if configure is redmodel.codecs.configure_fernet:
                redmodel.codecs.codec("json|fernet").encode("x")
            else:
                spec_of(PEOPLE[False]).indexes.fields["ssn"].text("x")  # type: ignore[union-attr]
        message = str(info.value)
        assert "key 2 of 2 from" in message and what in message
        assert no_part_of(BAD_KEY, message) and no_part_of(FERNET, message)


def test_keys_from_a_file_are_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "index-keys"
    path.write_text(IDX_A)
    redmodel.configure_index_keys(file=path)
    field = spec_of(PEOPLE[False]).indexes.fields["ssn"]  # type: ignore[union-attr]
    under_a = field.text(SSN[0])
    path.write_text(f"{IDX_B},\n{IDX_A}\n")
    assert field.lookup_texts(SSN[0])[1] == under_a != field.lookup_texts(SSN[0])[0]
    path.write_text("")
    with pytest.raises(redmodel.CodecError, match="holds no keys"):
        field.text(SSN[0])
    path.unlink()
    with pytest.raises(redmodel.CodecError, match=r"cannot be read \(FileNotFoundError\)"):
        field.text(SSN[0])


def test_fernet_keys_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "fernet-keys"
    path.write_text(FERNET + "\n")
    redmodel.codecs.configure_fernet(file=path)
    c = redmodel.codecs.codec("json|fernet")
    assert c.decode(c.encode("secret"), str) == "secret"
    assert repr(redmodel.codecs.FernetTransform(file=path)) == \
        f"FernetTransform(file={str(path)!r})"


def test_index_keys_come_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(_blind, "_configured", None)
    field = spec_of(PEOPLE[False]).indexes.fields["ssn"]  # type: ignore[union-attr]
    monkeypatch.delenv("REDMODEL_INDEX_KEYS", raising=False)
    with pytest.raises(redmodel.CodecError, match="REDMODEL_INDEX_KEYS is not set"):
        field.text(SSN[0])
    monkeypatch.setenv("REDMODEL_INDEX_KEYS", IDX_A)
    redmodel.configure_index_keys(keys=[IDX_A])
    expected = field.text(SSN[0])
    monkeypatch.setattr(_blind, "_configured", None)
    assert field.text(SSN[0]) == expected


def test_the_same_index_key_twice_is_refused() -> None:
    with pytest.raises(redmodel.CodecError, match="keys 1 and 2 of 2 from keys= have the "
                                                  "same key id"):
        redmodel.configure_index_keys(keys=[IDX_A, IDX_A])


def test_generate_key_without_the_crypto_extra_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(redmodel.CodecError, match=r"pip install 'redmodel-attrs\[crypto\]'"):
        redmodel.codecs.FernetTransform.generate_key()


def test_reindex_after_a_new_index_key_claims_the_new_unique_entries(
        store: redmodel.Store, Person: type) -> None:
    saved = people(Person)
    store.save_many(saved)
    redmodel.configure_index_keys(keys=[IDX_B, IDX_A])
    assert store.reindex(Person) == 3
    assert store.verify(Person) == []
    redmodel.configure_index_keys(keys=[IDX_B])
    assert store.get_by(Person, email=EMAIL[0]) == saved[0]
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(Person("dan", "SE", None, EMAIL[0], id="p3"))
