"""Attack 33A: secrets held by other models after 84687e8 and fix 32E (docs/codecs.md,
"Encrypted fields: hidden values and blind indexes", "Never skipped")."""

import datetime as dt
import itertools
from typing import Optional

import attrs
import pytest

import redmodel
from redmodel.migrations import MigrationError, Migrations, update
from tests.plaintext import dump

SECRET = "SECRET-987-65-4321"
_N = itertools.count()


def _secret_sub(n: int) -> tuple[type, type]:
    """A plain attrs class and a subclass of it declared a blob model whose chain
    encrypts: its objects are secret beyond the base."""

    @attrs.define
    class Inner:
        number: str

    @redmodel.model(prefix=f"atka_s{n}", key="number", layout="blob", codec="json|fernet")
    @attrs.define
    class Sub(Inner):
        pass

    return Inner, Sub


# --- F1: a value read through upgrade= is checked as if it were stored in the open --------

@pytest.mark.parametrize("layout", ["blob", "flat"])
def test_f1_upgrade_refuses_a_secret_subclass_where_the_field_encrypts_it_whole(
        store: redmodel.Store, fresh_keys: None, layout: str) -> None:
    """docs/codecs.md, "Never skipped": an object of a secret subclass given where its
    plain base is declared is refused "unless that value is encrypted whole there"; and
    docs/migrations.md: "What `fn` returns must be a valid value of the new type".

    A field encrypted whole (a blob model whose chain encrypts; a flat or hash field with
    codec="json|fernet") holding `Optional[Inner]`: saving `Sub(...)` (a blob|fernet
    subclass of Inner) there is accepted and stored encrypted, but the same value returned
    by the field's `upgrade=` is refused on read (DecodeError "give the holding field an
    encrypting chain", which it has) in the blob and flat layouts; the hash layout reads
    it (control)."""
    n = next(_N)
    inner, sub = _secret_sub(n)
    prefix = f"atka_u{n}"
    enc = {} if layout == "blob" else {"codec": "json|fernet"}
    codec = "json|fernet" if layout == "blob" else None

    # the old model and the new one share their name (the registry's owner)
    @redmodel.model(prefix=prefix, key="id", layout=layout, codec=codec)
    @attrs.define
    class M:
        id: str
        c: Optional[list[str]] = redmodel.field(default=None, **enc)  # noqa: UP045
    store.save(M(id="old", c=["x"]))

    @redmodel.model(prefix=prefix, key="id", layout=layout, codec=codec)  # type: ignore[no-redef]
    @attrs.define
    class M:
        id: str
        c: Optional[inner] = redmodel.field(  # type: ignore[valid-type]  # noqa: UP045
            default=None, upgrade=lambda v: sub(number=SECRET), **enc)

    # Since session 37 an object of a strict subclass is refused wherever its base is
    # declared, encrypted whole or not (it would be read back as an Inner): the save is
    # refused, and so is the same value returned by upgrade= on read.
    with pytest.raises(redmodel.ValidationError, match="where Inner is declared"):
        store.save(M(id="new", c=sub(number=SECRET)))
    assert SECRET.encode() not in dump(store.client)
    with pytest.raises(redmodel.DecodeError):
        store.get(M, "old")


# --- F2: a nested field that encrypts whole refuses a secret subclass object -----------

# (the flat layout has no model chain: that pair is not drawn)
@pytest.mark.parametrize(("layout", "where"), [
    ("hash", "field chain"), ("hash", "model chain"), ("flat", "field chain")])
@pytest.mark.parametrize("shape", ["optional", "list"])
def test_f2_a_flattened_wrapper_whose_field_encrypts_refuses_a_secret_subclass(
        store: redmodel.Store, fresh_keys: None, layout: str, where: str, shape: str) -> None:
    """docs/codecs.md, "Never skipped": "An object of a subclass that is secret beyond the
    declared class ... given where its plain base class is declared would be stored as the
    base, in plaintext: the save raises ValidationError before anything is written, unless
    that value is encrypted whole there."

    `H.w: Wrap` is flattened; `Wrap.card: Optional[Inner]` (or `list[Inner]`) is encoded
    whole by an encrypting chain: its own `codec="json|fernet"`, or the hash holder's model
    chain for encoded fields. A `Sub(Inner)` there is encrypted whole, as it is accepted in
    `H.card` directly, yet the save is refused ("give the holding field an encrypting
    chain"): the nested class's checker is built unsealed, whatever its fields' chains."""
    n = next(_N)
    inner, sub = _secret_sub(n)
    enc = {"codec": "json|fernet"} if where == "field chain" else {}
    tp = Optional[inner] if shape == "optional" else list[inner]  # noqa: UP045

    @attrs.define
    class Wrap:
        card: tp = redmodel.field(  # type: ignore[valid-type]
            factory=lambda: None if shape == "optional" else [], **enc)

    value = sub(number=SECRET)
    cls = attrs.make_class(f"H{n}", {"id": attrs.field(type=str),
                                     "w": attrs.field(type=Wrap),
                                     # (fix 33B: a list's default is [], not None)
                                     "card": attrs.field(type=tp, default=None
                                                         if shape == "optional"
                                                         else attrs.Factory(list),
                                                         metadata=redmodel.field(**enc).metadata
                                                         if enc else {})})
    h = redmodel.model(prefix=f"atka_h{n}", key="id", layout=layout,
                       codec="json|fernet" if where == "model chain" else None)(cls)
    one = value if shape == "optional" else [value]
    # Since session 37 an object of a strict subclass is refused wherever its base is
    # declared, encrypted whole or not (it would be read back as an Inner): both saves.
    for obj in (h(id="direct", w=Wrap(), card=one), h(id="nested", w=Wrap(card=one))):
        with pytest.raises(redmodel.ValidationError, match="where Inner is declared"):
            store.save(obj)
    assert SECRET.encode() not in dump(store.client)
    assert store.get(h, "direct") is None and store.get(h, "nested") is None


# --- F3: a migration step's error quotes what its function returned -------------------

@pytest.mark.parametrize("returned", ["the field", "a dict", "a tuple", "a subclass"])
def test_f3_a_migration_error_quotes_the_plaintext_the_step_returned(
        store: redmodel.Store, fresh_keys: None, returned: str) -> None:
    """docs/codecs.md: "Hidden in errors. No redmodel error carries a stored value or a
    plaintext".

    `update(P, fn)` whose `fn` returns something other than the P (a slip: `o.ssn`,
    `attrs.asdict(o)`, a tuple, an object of an undecorated subclass): the MigrationError
    quotes `{new!r:.80}`, the decrypted value of the encrypted field."""
    n = next(_N)

    @redmodel.model(prefix=f"atka_m{n}", key="id")
    @attrs.define
    class P:
        id: str
        ssn: str = redmodel.field(codec="json|fernet")

    @attrs.define
    class PSub(P):
        pass

    store.save(P(id="a", ssn=SECRET))
    fn = {"the field": lambda o: o.ssn, "a dict": attrs.asdict,
          "a tuple": lambda o: (o.id, o.ssn),
          "a subclass": lambda o: PSub(id=o.id, ssn=o.ssn)}[returned]
    steps = Migrations(f"atka_mig{n}")
    steps.add("0001", update(P, fn))
    with pytest.raises(MigrationError) as info:
        steps.apply(store)
    assert SECRET not in str(info.value)                    # FAILS: quoted


# --- F4: a plain subclass of a class whose values are hidden shows them in its repr ----

@pytest.mark.parametrize("kind", ["secret model", "nested field chain", "held encrypted whole"])
def test_f4_the_repr_of_a_plain_subclass_shows_what_its_base_hides(kind: str) -> None:
    """docs/codecs.md: a class whose model chain encrypts, "or one inherited from such a
    model by a subclass, decorated or not) *keeps such values to itself*", and "redmodel
    keeps such values to itself: Hidden in reprs"; docs/models.md: "A nested class gets
    such a repr of its own (its objects get logged on their own ...); ... a class some
    model stores inside a value it encrypts whole ... hides all its attributes in its own
    repr".

    The hiding repr is installed on the declared class only; attrs generates a fresh
    `__repr__` for every attrs subclass, so a plain subclass shows the plaintext: of an
    undecorated subclass of a blob|fernet model (a decorated one hides it), of a nested
    class declaring `number` with codec="json|fernet" held by a model, and of a class a
    model stores in a `list` through an encrypting chain (such objects are accepted
    there and stored encrypted, so they are exactly the ones held and logged)."""
    n = next(_N)
    if kind == "secret model":
        @redmodel.model(prefix=f"atka_r{n}", key="id", layout="blob", codec="json|fernet")
        @attrs.define
        class Base:
            number: str
            id: str = "a"
    else:
        @attrs.define
        class Base:  # type: ignore[no-redef]
            number: str = redmodel.field(**({"codec": "json|fernet"}
                                            if kind == "nested field chain" else {}))

        tp = Base if kind == "nested field chain" else list[Base]
        enc = {} if kind == "nested field chain" else {"codec": "json|fernet"}
        redmodel.model(prefix=f"atka_r{n}", key="id")(attrs.make_class(f"R{n}", {
            "id": attrs.field(type=str),
            "c": attrs.field(type=tp, default=None,
                             metadata=redmodel.field(**enc).metadata if enc else {})}))

    @attrs.define
    class Plain(Base):
        pass

    assert SECRET not in repr(Base(number=SECRET))          # holds
    assert SECRET not in repr(Plain(number=SECRET))         # FAILS


# --- F5: a string or a list stored before decodes as a nested class made of defaults ----

@pytest.mark.parametrize("layout", ["blob", "hash", "flat"])
@pytest.mark.parametrize("old", ["x", ["x"]], ids=["str", "list"])
def test_f5_an_older_string_or_list_decodes_silently_as_a_class_of_defaults(
        store: redmodel.Store, layout: str, old: object) -> None:
    """docs/migrations.md, schema evolution table: "type changed, no `upgrade=` |
    `DecodeError` naming the key and the field"; "`upgrade=` is called only for values
    that do not decode strictly".

    `c: Optional[str]` (or `Optional[list[str]]`) retyped `Optional[Inner]`, `Inner` an
    attrs class whose fields have defaults: the stored `"x"` / `["x"]` reads back as
    `Inner(number='')`, no DecodeError, the old value silently lost (a field with
    `upgrade=` never sees it either). The structure hook tests `"number" in value`, which
    a str or a list answers False."""
    n = next(_N)

    @attrs.define
    class Inner:
        number: str = ""

    prefix = f"atka_z{n}"
    before = str if isinstance(old, str) else list[str]

    @redmodel.model(prefix=prefix, key="id", layout=layout)
    @attrs.define
    class M:
        id: str
        c: Optional[before] = redmodel.field(default=None, codec="json")  # type: ignore[valid-type]  # noqa: UP045
    store.save(M(id="old", c=old))

    @redmodel.model(prefix=prefix, key="id", layout=layout)  # type: ignore[no-redef]
    @attrs.define
    class M:
        id: str
        c: Optional[Inner] = redmodel.field(default=None, codec="json")  # noqa: UP045
    with pytest.raises(redmodel.DecodeError):
        got = store.get(M, "old")                           # FAILS: M(c=Inner(number=''))
        print(got)


# --- F6: a hash model whose chain encrypts but which has no encoded field is refused ---

@pytest.mark.parametrize("holder", ["model", "queue"])
def test_f6_a_hash_model_with_an_encrypting_chain_and_no_encoded_field_is_refused(
        store: redmodel.Store, fresh_keys: None, holder: str) -> None:
    """docs/codecs.md: "A field is **encrypted** when its codec chain encrypts: its own
    chain, the model's default chain for encoded fields, ..."; "A class whose model chain
    encrypts (..., a hash model's default chain for its encoded fields, ...) *keeps such
    values to itself*: no model or container that holds it stores them in plaintext" and
    the holding is "accepted only where the chain that encodes it whole there encrypts".

    `Card` is a hash model with codec="json|fernet" and only scalar fields: nothing of it
    is encrypted (saved on its own `number` is a plain hash field; its repr shows it;
    `encrypted_fields` is empty), so there are no "such values" to keep. Yet a `Card`
    given where its plain base is declared is refused ("Card is stored through its
    model's chain 'json|fernet' ... in plaintext"), and a Queue of Card is refused at its
    creation: refusals of a holding that hides nothing, with a reason that is not true."""
    n = next(_N)

    @attrs.define
    class Base:
        number: str

    @redmodel.model(prefix=f"atka_c{n}", key="id", codec="json|fernet")
    @attrs.define
    class Card(Base):
        id: str = "c1"

    store.save(Card(number="4111-on-its-own"))
    assert b"4111-on-its-own" in dump(store.client)          # stored in the open by Card
    assert "4111" in repr(Card(number="4111"))               # and shown: nothing hidden
    if holder == "queue":
        redmodel.containers.Queue(store, f"atka_cq{n}", Card)     # FAILS: refused
    else:
        cls = attrs.make_class(f"CH{n}", {"id": attrs.field(type=str),
                                          "c": attrs.field(type=Base)})
        h = redmodel.model(prefix=f"atka_ch{n}", key="id")(cls)
        # refused since session 37 for what it would lose (its field id, its class), not
        # for a secret it does not have
        with pytest.raises(redmodel.ValidationError, match="without its field id") as e:
            store.save(h(id="a", c=Card(number="4111")))
        assert "plaintext" not in str(e.value)


# --- F7: a validation error quotes the value of an encrypted field --------------------

_BIG = 2**53 + 1
_ODD_TZ = dt.timezone(dt.timedelta(hours=5, minutes=7, seconds=3, microseconds=17))


@pytest.mark.parametrize("holder", ["hash field chain", "blob model chain", "queue codec"])
@pytest.mark.parametrize("what", ["float", "list of floats", "datetime"])
def test_f7_a_validation_error_quotes_the_value_of_an_encrypted_field(
        store: redmodel.Store, fresh_keys: None, holder: str, what: str) -> None:
    """docs/codecs.md: "Hidden in errors. No redmodel error carries a stored value or a
    plaintext"; docs/models.md: "Error messages never carry encrypted values either".

    An encrypted float given an int with no exact float (2**53 + 1), or an encrypted
    datetime whose UTC offset has a fraction of a second: the ValidationError quotes the
    value ("the int 9007199254740993 has no exact float", "a UTC offset with a fraction
    of a second (5:07:03.000017)") -- _types._check_float / _check_offset."""
    n = next(_N)
    tp, value, secret = {
        "float": (float, _BIG, str(_BIG)),
        "list of floats": (list[float], [1.5, _BIG], str(_BIG)),
        "datetime": (dt.datetime, dt.datetime(2020, 1, 2, tzinfo=_ODD_TZ), "5:07:03.000017"),
    }[what]
    with pytest.raises(redmodel.ValidationError) as info:
        if holder == "queue codec":
            redmodel.containers.Queue(store, f"atka_eq{n}", tp, codec="json|fernet").push(value)
        else:
            blob = holder == "blob model chain"
            meta = {} if blob else redmodel.field(codec="json|fernet").metadata
            cls = attrs.make_class(f"E{n}", {"id": attrs.field(type=str),
                                             "v": attrs.field(type=tp, metadata=meta)})
            m = redmodel.model(prefix=f"atka_e{n}", key="id", layout="blob" if blob else "hash",
                               codec="json|fernet" if blob else None)(cls)
            store.save(m(id="a", v=value))
    assert secret not in str(info.value)                    # FAILS: quoted
