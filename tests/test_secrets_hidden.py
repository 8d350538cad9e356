"""Encrypted values never show in errors (nor in their hidden __context__ chains), in the
reprs of nested objects, or to pretty printers that render attrs fields themselves.

Found by an attack on issue 14 with only the docs in hand; each docstring states the
documented promise the test checks."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel._indexes import _blind
from tests.plaintext import dump, leaked

pytestmark = pytest.mark.usefixtures("fresh_keys")


@attrs.define
class Card:
    number: str = redmodel.field(codec="json|fernet")
    holder: str = ""


@attrs.frozen
class FrozenCard:
    number: str = redmodel.field(codec="json|fernet")


@redmodel.model(prefix="a14member")
@attrs.define
class Member:
    name: str
    card: Card
    pin: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a14blob", layout="blob", codec="json|fernet")
@attrs.define
class Vault:
    secret: str
    id: str = redmodel.key_field(generated=False)


CARD_NUMBER = "4111-1111-1111-1111-attack14"
PIN = "PIN-attack14-9876"
VAULT = "VAULT-SECRET-attack14"


# --- containers refuse members whose encryption their chain would skip ----------------------

@pytest.mark.parametrize("make", [
    pytest.param(lambda s: (redmodel.containers.Queue(s, "q", Card), Card(CARD_NUMBER, "Ann")),
                 id="queue-card"),
    pytest.param(lambda s: (redmodel.containers.Set(s, "s", FrozenCard), FrozenCard(CARD_NUMBER)),
                 id="set-card"),
    pytest.param(lambda s: (redmodel.containers.SortedSet(s, "z", FrozenCard),
                            FrozenCard(CARD_NUMBER)),
                 id="sortedset-card"),
    pytest.param(lambda s: (redmodel.containers.Queue(s, "qm", Member),
                            Member("ann", Card(CARD_NUMBER), PIN, id="m1")), id="queue-model"),
    pytest.param(lambda s: (redmodel.containers.Queue(s, "qv", Vault), Vault(VAULT, id="v1")),
                 id="queue-blob-model"),
])
def test_a_container_never_stores_a_declared_encrypted_field_in_plaintext(
        store: redmodel.Store, redis_client: redis.Redis, make: Any) -> None:
    """docs/codecs.md, "Never skipped": a `codec="json|fernet"` declared on `Card.number`
    inside a value encoded whole would be ignored and the number stored in plaintext, so
    that declaration is refused. A container's members are values encoded whole (`json`
    by default), yet `Queue(store, key, Card)` (and Set, SortedSet, a model with encrypted
    fields, a blob model whose chain encrypts) is accepted and stores the card number,
    the pin and the blob's secret in plaintext."""
    try:
        container, value = make(store)
        if isinstance(container, redmodel.containers.Queue):
            container.push(value)
        elif isinstance(container, redmodel.containers.Set):
            container.add(value)
        else:
            container.add(value, 1)
    except (redmodel.ModelDefinitionError, redmodel.ValidationError):
        return                                   # refused: nothing can leak
    assert leaked([CARD_NUMBER, PIN, VAULT], dump(redis_client)) == []


# --- 3. A query value that cannot be encoded escapes as a raw error carrying it --------------

@redmodel.model(prefix="a14q")
@attrs.define
class Patient:
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    tags: list[str] = redmodel.field(codec="json|fernet", index="blind", factory=list)
    id: str = redmodel.key_field(generated=False)


SURROGATE_SSN = "987-65-4321-attack14-\ud800-tail-of-the-secret"


@pytest.mark.parametrize("query", [
    pytest.param(lambda s: s.find(Patient, ssn=SURROGATE_SSN).ids(), id="find"),
    pytest.param(lambda s: s.find(Patient, ssn=redmodel.one_of(["x", SURROGATE_SSN])).ids(),
                 id="one_of"),
    pytest.param(lambda s: s.find(Patient, tags=redmodel.contains(SURROGATE_SSN)).ids(),
                 id="contains"),
    pytest.param(lambda s: s.get_by(Patient, ssn=SURROGATE_SSN), id="get_by"),
])
def test_a_blind_lookup_value_that_cannot_be_encoded_is_a_query_error_without_the_value(
        store: redmodel.Store, query: Any) -> None:
    """docs/queries.md: bad queries raise QueryError (a value of the wrong type, ...);
    docs/codecs.md: no redmodel error carries a plaintext. A blind lookup with a string
    holding a lone surrogate (as JSON input can: "\\ud800") raises a raw
    UnicodeEncodeError whose args, `.object` and repr are the whole searched SSN."""
    with pytest.raises(redmodel.RedmodelError) as info:
        query(store)
    e = info.value
    text = repr(e) + str(e) + repr(e.args) + repr(vars(e))
    assert "tail-of-the-secret" not in text and "987-65-4321" not in text


# --- 5. The repr of a nested class that declares an encrypted field --------------------------

def test_a_nested_object_with_an_encrypted_field_hides_it_in_its_own_repr() -> None:
    """docs/models.md: an encrypted field shows as `<encrypted>` in reprs, including
    inside nested objects; the issue: encrypted values are hidden by default in repr,
    str and logs. `repr(member)` hides the card number, but `repr(member.card)` (what
    `log.info("card %s", member.card)` writes) shows it: Card declares
    `codec="json|fernet"` on `number` and is stored encrypted, yet keeps attrs' repr."""
    m = Member("ann", Card(CARD_NUMBER, "Ann"), PIN, id="m1")
    assert CARD_NUMBER not in repr(m)
    assert CARD_NUMBER not in repr(m.card)
    assert CARD_NUMBER not in str(m.card)


# --- 6. Plaintexts kept in the (suppressed) context chain of redmodel errors -----------------

def _chain(e: BaseException | None) -> str:
    out = []
    while e is not None:
        out.append(repr(e) + repr(getattr(e, "args", ())))
        e = e.__cause__ or e.__context__
    return "\n".join(out)


def test_a_decode_error_does_not_carry_the_decrypted_value_in_its_context(
        store: redmodel.Store) -> None:
    """docs/codecs.md: no redmodel error carries a stored value or a plaintext. Reading an
    encrypted field whose decrypted value does not fit the type (the type changed between
    versions of the model) raises DecodeError `from None`, but its `__context__` chain
    still holds cattrs/int()'s ValueError("invalid literal for int() with base 10:
    '<the plaintext>'"); any code that walks the chain (error reporters, a handler
    logging `e.__context__`) gets the plaintext."""
    @redmodel.model(prefix="a14dec")
    @attrs.define
    class Written:
        x: str = redmodel.field(codec="json|fernet")
        id: str = redmodel.key_field(generated=False)

    @redmodel.model(prefix="a14dec")
    @attrs.define
    class Read:
        x: int = redmodel.field(codec="json|fernet")
        id: str = redmodel.key_field(generated=False)

    store.save(Written("DECRYPTED-SECRET-attack14", id="1"))
    with pytest.raises(redmodel.DecodeError) as info:  # past the model registry's check
        redmodel.Store(store.client, registry=False).get(Read, "1")
    assert "DECRYPTED-SECRET-attack14" not in _chain(info.value)


# --- 7. attrs field metadata still says "show this field" -----------------------------------

def _render_like_rich(obj: Any) -> str:
    """How rich.pretty (rich.print, rich tracebacks with show_locals, RichHandler) renders
    an attrs instance: `__rich_repr__` if the class has one, else field by field, skipping
    fields whose attrs `repr` flag is False and calling a `repr` callable."""
    if hasattr(obj, "__rich_repr__"):
        return f"{type(obj).__name__}({list(obj.__rich_repr__())!r})"
    parts = []
    for a in attrs.fields(type(obj)):
        if a.repr is False:
            continue
        value = getattr(obj, a.name)
        parts.append(f"{a.name}={a.repr(value) if callable(a.repr) else repr(value)}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def test_tools_that_render_attrs_fields_do_not_see_encrypted_values() -> None:
    """The issue: encrypted values are hidden by default in reprs and logs, "nothing has
    to be marked repr=False" (docs/models.md). redmodel replaces `__repr__` only; the
    attrs fields keep `repr=True`, so rich (whose pretty printer renders attrs instances
    field by field from that flag: `rich.print(member)`, tracebacks with locals) prints
    `pin='PIN-...'`. Checked here with rich's algorithm, so rich need not be installed."""
    m = Member("ann", Card(CARD_NUMBER, "Ann"), PIN, id="m1")
    assert PIN not in _render_like_rich(m)


# --- values that cannot be encoded are refused without the value ----------------------------

def test_a_str_with_a_lone_surrogate_is_a_validation_error_without_the_value(
        store: redmodel.Store, redis_client: redis.Redis) -> None:
    """A lone surrogate is not valid Unicode text: saving it (plain or encrypted field) is
    refused before any write, and nothing in the error or its chain carries the value."""
    before = redis_client.dbsize()
    for obj in (Patient(SURROGATE_SSN, id="p1"),
                Member(SURROGATE_SSN, Card("1", "x"), id="m1"),
                Member("ann", Card(SURROGATE_SSN, "x"), id="m2")):
        with pytest.raises(redmodel.ValidationError) as info:
            store.save(obj)
        assert "tail-of-the-secret" not in _chain(info.value)
    assert redis_client.dbsize() == before


def test_a_key_file_that_is_not_text_is_refused_without_its_bytes(tmp_path: Any) -> None:
    path = tmp_path / "keys"
    secret = b"\xff\xfeNOT-A-KEY-attack14"
    path.write_bytes(secret)
    with pytest.raises(redmodel.CodecError) as info:
        redmodel.configure_index_keys(file=path)
        redmodel.generate_index_key()
        _blind.current_keyring()
    assert "NOT-A-KEY" not in _chain(info.value)


def test_a_key_with_a_lone_surrogate_is_refused_without_it() -> None:
    with pytest.raises(redmodel.CodecError) as info:
        redmodel.configure_index_keys(keys=["KEY-attack14-\ud800-rest"])
    assert "KEY-attack14" not in _chain(info.value)


def test_a_container_with_an_encrypting_chain_keeps_such_members_encrypted(
        store: redmodel.Store, redis_client: redis.Redis) -> None:
    """The refusal's advice works: with an encrypting chain the members round-trip and
    no plaintext reaches Redis."""
    queue = redmodel.containers.Queue(store, "qe", Card, codec="json|fernet")
    queue.push(Card(CARD_NUMBER, "Ann"))
    assert leaked([CARD_NUMBER], dump(redis_client)) == []
    assert queue.pop() == Card(CARD_NUMBER, "Ann")


def test_a_refused_container_names_the_field_and_the_way_out(store: redmodel.Store) -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match=r"Card\.number.*json\|fernet"):
        redmodel.containers.Queue(store, "q", Card)


@attrs.define
class Leaf:
    leaf: str
    n: int = 0


def test_the_flat_layout_refuses_a_model_codec() -> None:
    """Every leaf of a flat object is its own key: an encrypting model chain would leave
    lists, dicts and dict keys in plaintext (while the repr called them encrypted), so a
    model chain is refused; field chains are how the flat layout encrypts."""
    with pytest.raises(redmodel.ModelDefinitionError, match="flat layout"):
        @redmodel.model(prefix="a14flat", layout="flat", codec="json|fernet")
        @attrs.define
        class FlatSecret:
            d: dict[str, str] = attrs.Factory(dict)
            id: str = redmodel.key_field(generated=False)


def test_a_flat_field_chain_keeps_its_value_encrypted(
        store: redmodel.Store, redis_client: redis.Redis) -> None:
    @redmodel.model(prefix="a14flatf", layout="flat")
    @attrs.define
    class FlatField:
        d: dict[str, str] = redmodel.field(codec="json|fernet", factory=dict)
        items: list[Leaf] = redmodel.field(codec="json|fernet", factory=list)
        id: str = redmodel.key_field(generated=False)

    obj = FlatField({"DICT-KEY-a14": "DICT-VALUE-a14"}, [Leaf("LEAF-a14")], id="1")
    store.save(obj)
    assert store.get(FlatField, "1") == obj
    assert leaked(["DICT-KEY-a14", "DICT-VALUE-a14", "LEAF-a14"], dump(redis_client)) == []


# --- a tracked save sends an encrypted field only when its value changed ----------------------

@redmodel.model(prefix="a14lu")
@attrs.define
class Account:
    name: str = redmodel.field(index=True, default="")
    ssn: str = redmodel.field(codec="json|fernet", index="blind", default="")
    note: str = redmodel.field(codec="json|fernet", default="")
    plain_note: str = ""
    id: str = redmodel.key_field(generated=False)


def test_saving_a_loaded_object_keeps_another_writers_change_to_an_encrypted_field(
        store: redmodel.Store) -> None:
    """docs/queries.md, "Only what changed": save of an object loaded by get sends only
    the fields that changed since, so two writers who change different fields of one
    object both keep their change. A plain field keeps the other writer's change; an
    encrypted field (blind-indexed or not) is sent again with the stale value and the
    other writer's change is lost."""
    store.save(Account("ann", "111-11-1111", "note 1", "plain 1", id="1"))
    mine = store.get(Account, "1")
    assert mine is not None
    store.update(Account, "1", ssn="222-22-2222", note="note 2", plain_note="plain 2")
    mine.name = "ann2"                                 # I change only the name
    store.save(mine)
    got = store.get(Account, "1")
    assert got is not None
    assert (got.name, got.plain_note) == ("ann2", "plain 2")
    assert (got.ssn, got.note) == ("222-22-2222", "note 2")
    assert store.find(Account, ssn="222-22-2222").ids() == ["1"]


def test_a_tracked_save_sends_a_changed_encrypted_field(store: redmodel.Store) -> None:
    store.save(Account("ann", "111-11-1111", "note 1", "plain 1", id="2"))
    mine = store.get(Account, "2")
    assert mine is not None
    mine.note = "note 3"
    store.save(mine)
    again = store.get(Account, "2")
    assert again is not None and again.note == "note 3" and again.ssn == "111-11-1111"


def test_a_fernet_key_with_stray_characters_is_refused_as_an_index_key_would_be() -> None:
    key = redmodel.codecs.FernetTransform.generate_key()
    for bad in (key[:10] + " " + key[10:], key + "junk", key + "\n!"):
        with pytest.raises(redmodel.CodecError) as info:
            redmodel.codecs.FernetTransform(keys=[bad]).encode(b"x")
        assert key[:12] not in str(info.value)


def test_an_index_key_that_is_also_the_encryption_key_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    shared = redmodel.codecs.FernetTransform.generate_key()
    redmodel.codecs.configure_fernet(keys=[shared])
    # keys given as such are refused when configured (session 23: earlier than first use)
    with pytest.raises(redmodel.CodecError, match="separate") as info:
        redmodel.configure_index_keys(keys=[shared])
    assert shared[:12] not in str(info.value)
    # keys read later (a provider, a file, a variable) are refused at first use
    redmodel.configure_index_keys(key_provider=lambda: [shared])
    with pytest.raises(redmodel.CodecError, match="separate") as info:
        _blind.current_keyring()
    assert shared[:12] not in str(info.value)
