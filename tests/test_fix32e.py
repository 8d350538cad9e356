"""Fix 32E: a class whose own declaration makes its values secret (a model whose chain
encrypts: a blob model's chain, a hash model's default chain for encoded fields; a
subclass of one; a class whose fields declare encrypting chains) is never stored in
plaintext by a model or container holding it, at any depth and in any shape: the holding
is refused at declaration unless the chain that encodes it whole there encrypts
(docs/codecs.md, "Never skipped")."""

import itertools
import typing
from collections.abc import Callable, Iterator
from typing import Any, Optional

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled
from tests.plaintext import dump, leaked

_N = itertools.count()

SHAPES: dict[str, Callable[[Any], Any]] = {
    "flattened": lambda t: t,
    "optional": lambda t: Optional[t],  # noqa: UP045 - the typing form is part of the kind
    "list": lambda t: list[t],
    "List": lambda t: typing.List[t],  # noqa: UP006
    "tuple": lambda t: tuple[t, ...],
    "set": lambda t: set[t],
    "frozenset": lambda t: frozenset[t],
    "FrozenSet": lambda t: typing.FrozenSet[t],  # noqa: UP006
    "dict": lambda t: dict[str, t],
    "Dict": lambda t: typing.Dict[str, t],  # noqa: UP006
}
HASHABLE = ["flattened", "optional", "tuple", "frozenset", "FrozenSet"]
# What makes the inner class secret: its own model chain (blob, or a hash model's codec),
# inherited by an undecorated or a decorated subclass; or its fields' own chains.
KINDS = ["blob", "hash_codec", "blob_sub", "hash_sub", "decorated_sub", "fields"]
# An object of a secret subclass held where its plain base class is declared: the
# declaration is the base's, so the save is refused, not it (encrypted whole or not,
# since session 37: it would be read back as the base).
OBJECT = {"object_blob", "object_fields"}
KINDS += sorted(OBJECT)
OWN_CHAIN = {"blob", "hash_codec", "blob_sub", "hash_sub", "decorated_sub"}
UNDECORATED = {"blob_sub", "hash_sub"}  # subclasses of a model without @redmodel.model
ENCRYPTING = {"json|fernet", "msgpack|fernet"}


def _inner(kind: str, hashable: bool) -> tuple[type, Callable[[Iterator[str]], Any]]:
    """A secret class of this kind, and a function building one object of it from
    secrets. Hashable (frozen, no dict) when it is held in a set."""
    n = next(_N)
    define: Any = attrs.frozen if hashable else attrs.define
    many: Any = tuple[str, ...]
    if kind in ("blob", "blob_sub"):
        @redmodel.model(prefix=f"fx32e_b{n}", layout="blob", codec="json|fernet")
        @define
        class BCard:
            number: str
            numbers: many
            extra: dict[str, str] = attrs.field(factory=dict, hash=False)
            id: str = redmodel.key_field()
        cls: type = BCard
    elif kind in OBJECT:
        @define
        class PCard:
            number: str
            numbers: many
            extra: dict[str, str] = attrs.field(factory=dict, hash=False)
        cls = PCard
        if kind == "object_blob":
            @redmodel.model(prefix=f"fx32e_s{n}", layout="blob", codec="json|fernet")
            @define
            class SecretPCard(PCard):
                id: str = redmodel.key_field()
            made: type = SecretPCard
        else:
            @define
            class FieldPCard(PCard):
                number: str = redmodel.field(codec="json|fernet")
                numbers: many = redmodel.field(codec="json|fernet")
                extra: dict[str, str] = redmodel.field(codec="json|fernet", factory=dict,
                                                       hash=False)
            made = FieldPCard
    elif kind == "fields":
        @define
        class FCard:
            number: str = redmodel.field(codec="json|fernet")
            numbers: many = redmodel.field(codec="msgpack|fernet")
            extra: dict[str, str] = redmodel.field(codec="json|fernet", factory=dict,
                                                   hash=False)
        cls = FCard
    else:
        @redmodel.model(prefix=f"fx32e_h{n}", codec="json|fernet")
        @define
        class HCard:
            number: str  # a scalar: plain in Redis even on its own, so holds no secret
            numbers: many
            extra: dict[str, str] = attrs.field(factory=dict, hash=False)
            id: str = redmodel.key_field()
        cls = HCard
    if kind in ("blob_sub", "hash_sub"):
        @define
        class SubCard(cls):  # type: ignore[valid-type,misc]
            pass
        cls = SubCard
    elif kind == "decorated_sub":
        @redmodel.model(prefix=f"fx32e_d{n}")  # inherits codec="json|fernet"
        @define
        class DecoratedCard(cls):  # type: ignore[valid-type,misc]
            pass
        cls = DecoratedCard
    plain_number = kind in ("hash_codec", "hash_sub", "decorated_sub")
    if kind not in OBJECT:
        made = cls

    def make(secrets: Iterator[str]) -> Any:
        extra = {} if hashable else {next(secrets): next(secrets)}
        return made(number="n" if plain_number else next(secrets),
                   numbers=(next(secrets), next(secrets)), extra=extra)

    return cls, make


def _wrapper(ann: Any, hashable: bool) -> type:
    define: Any = attrs.frozen if hashable else attrs.define

    @define
    class Wrap:
        w: ann  # type: ignore[valid-type]

    return Wrap


def _value(shape: str, make: Callable[[], Any]) -> Any:
    if shape in ("flattened", "optional"):
        return make()
    if shape in ("list", "List"):
        return [make(), make()]
    if shape == "tuple":
        return (make(), make())
    if shape == "set":
        return {make(), make()}
    if shape in ("frozenset", "FrozenSet"):
        return frozenset({make(), make()})
    return {"a": make(), "b": make()}


@st.composite
def _shapes(draw: st.DrawFn) -> list[str]:
    """1 to 3 levels, outermost first (the holder's field, then wrapper fields): below a
    set every level is hashable."""
    out: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        hashable = any(s in ("set", "frozenset", "FrozenSet") for s in out)
        out.append(draw(st.sampled_from(HASHABLE if hashable else list(SHAPES))))
    return out


def _accepted(holder: str, model_codec: str | None, field_codec: str | None,
              shapes: list[str], kind: str) -> bool:
    """Whether the holding is declared (the decision of docs/codecs.md "Never skipped"):
    the secret class is encoded whole by an encrypting chain on the way down, or held
    field by field all the way and secret only through its fields' own chains."""
    if kind in OBJECT:
        return True  # the declared class is plain: refused at the save, if at all
    if holder in ("queue", "set"):
        return holder == "queue" and model_codec in ENCRYPTING
    if kind in UNDECORATED:
        return False  # a model refuses it anyhow: its inherited key= would be ignored
    if holder == "blob":
        return model_codec in ENCRYPTING
    if field_codec is not None:
        return field_codec in ENCRYPTING
    if any(s != "flattened" for s in shapes):  # encoded whole by the holder's default
        return holder == "hash" and model_codec in ENCRYPTING
    return kind not in OWN_CHAIN


secret_texts = st.lists(
    st.one_of(st.text(), st.text(max_size=4).map(lambda s: s * 1000)), min_size=1,
    max_size=4)


@settings(max_examples=scaled(300))
@given(
    kind=st.sampled_from(KINDS),
    shapes=_shapes(),
    holder=st.sampled_from(["hash", "flat", "blob", "queue", "set"]),
    model_codec=st.sampled_from([None, "json", "json|fernet"]),
    field_codec=st.sampled_from([None, "json", "json|fernet", "msgpack|fernet"]),
    texts=secret_texts,
)
def test_a_secret_class_held_anywhere_is_refused_or_stored_encrypted(
        store: redmodel.Store, fresh_keys: None, kind: str, shapes: list[str], holder: str,
        model_codec: str | None, field_codec: str | None, texts: list[str]) -> None:
    """docs/codecs.md, "Never skipped": a class whose own declaration encrypts its values,
    held by a model (hash, flat, blob) or a container (Queue, Set) in any shape, 1 to 3
    levels deep, is refused at declaration naming the holding field and the class, unless
    the chain encoding it whole there encrypts; then a save of drawn secrets (any text,
    empty, huge) leaves none of them in any key name or value, and reads back equal."""
    store.client.flushall()
    if holder == "flat":
        model_codec = None  # the flat layout takes no model codec (refused on its own)
    if holder not in ("hash", "flat"):
        field_codec = None  # a blob ignores field chains; a container has its own
    if holder == "set" and model_codec in ENCRYPTING:
        model_codec = "json"  # a Set refuses fernet on its own (equal members would differ)
    if holder in ("queue", "set") and shapes[0] == "optional":
        # a Queue or Set refuses a member type admitting None (pops answer None for empty)
        shapes = ["tuple", *shapes[1:]]
    below_set = [any(s in ("set", "frozenset", "FrozenSet") for s in shapes[:i + 1])
                 for i in range(len(shapes))]
    if holder == "set":
        below_set = [True] * len(shapes)
        shapes = [s if s in HASHABLE else "tuple" for s in shapes]
    inner, make_inner = _inner(kind, hashable=below_set[-1])
    secrets = (f"~s{i}~{texts[i % len(texts)]}" for i in itertools.count())
    tp: Any = inner
    make: Callable[[], Any] = lambda: make_inner(secrets)  # noqa: E731
    for level in range(len(shapes) - 1, 0, -1):  # wrappers, innermost first
        wrap = _wrapper(SHAPES[shapes[level]](tp), below_set[level - 1])
        make = _maker(shapes[level], wrap, make)
        tp = wrap
    top = SHAPES[shapes[0]](tp)
    n = next(_N)
    expected = _accepted(holder, model_codec, field_codec, shapes, kind)
    event("accepted" if expected else "refused")
    try:
        if holder in ("queue", "set"):
            box: Any = (redmodel.containers.Queue if holder == "queue"
                        else redmodel.containers.Set)(store, f"fx32e_c{n}", top,
                                                      codec=model_codec)
        else:
            options: dict[str, Any] = {"prefix": f"fx32e_o{n}", "layout": holder}
            if model_codec is not None:
                options["codec"] = model_codec
            held = redmodel.field(codec=field_codec) if field_codec else attrs.field()

            @redmodel.model(**options)
            @attrs.define
            class Holder:
                card: top = held  # type: ignore[valid-type]
                id: str = redmodel.key_field(generated=False)

            box = Holder
    except redmodel.ModelDefinitionError as e:
        assert not expected, f"refused, though encrypted whole: {e}"
        assert "encrypt" in str(e) or (kind in UNDECORATED and "key=" in str(e)), e
        if holder != "set" or model_codec not in ENCRYPTING:
            assert inner.__name__ in str(e), e
        if holder in ("hash", "flat", "blob"):
            assert "Holder.card" in str(e), e
        return
    assert expected, f"declared, though {kind} {inner.__name__} is not encrypted whole"
    value = _value(shapes[0], make)
    all_secrets = list(itertools.islice(
        (f"~s{i}~{texts[i % len(texts)]}" for i in itertools.count()), 200))
    # an object of a subclass held where its base is declared: refused wherever it is
    # held, encrypted whole or not (session 37: it would be read back as the base)
    saved = kind not in OBJECT
    try:
        if holder == "queue":
            box.push(value)
        elif holder == "set":
            box.add(value)
        else:
            obj = box(value, id="o1")
            store.save(obj)
    except redmodel.ValidationError as e:
        assert not saved, f"refused, though encrypted whole: {e}"
        assert not leaked(all_secrets, str(e)), e
        assert f"where {inner.__name__} is declared" in str(e), e
        assert store.client.dbsize() == 0, "a refused save wrote something"
        return
    assert saved, f"saved a {kind} object, though not encrypted whole"
    found = leaked(all_secrets, dump(store.client))
    assert not found, f"secrets in Redis in plaintext: {holder} {model_codec} {shapes} {kind}"
    if holder == "queue":
        assert box.range() == [value]
    elif holder == "set":
        assert box.members() == {value}
    else:
        assert store.get(box, "o1") == obj


def _maker(shape: str, cls: type, make: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: cls(_value(shape, make))


@pytest.mark.parametrize("kind", sorted(OWN_CHAIN - UNDECORATED))
@pytest.mark.parametrize("layout", ["hash", "flat"])
def test_the_refusal_names_the_field_the_class_and_what_to_do(kind: str, layout: str) -> None:
    """The error of a flattened holding names the holding field path, the secret class and
    the declaration that stores it whole and encrypted."""
    inner, _ = _inner(kind, hashable=False)

    @attrs.define
    class Mid:
        card: inner  # type: ignore[valid-type]

    with pytest.raises(redmodel.ModelDefinitionError) as e:
        @redmodel.model(prefix=f"fx32e_r{next(_N)}", layout=layout)
        @attrs.define
        class Outer:
            mid: Mid
            id: str = redmodel.key_field()
    text = str(e.value)
    assert "Outer.mid.card" in text and "encrypt" in text and inner.__name__ in text, text
    assert "redmodel.field(codec='json|fernet')" in text, text


@pytest.mark.parametrize("kind", sorted(UNDECORATED))
def test_a_container_of_an_undecorated_subclass_of_a_secret_model_is_refused(
        store: redmodel.Store, kind: str) -> None:
    """The subclass has no declaration of its own: it inherits its base model's, chain
    included, so a Queue encoding it with plain json is refused like one of the base."""
    inner, _ = _inner(kind, hashable=False)
    with pytest.raises(redmodel.ModelDefinitionError, match="encrypt") as e:
        redmodel.containers.Queue(store, "fx32e_sub", list[inner])  # type: ignore[valid-type]
    assert inner.__name__ in str(e.value)


@pytest.mark.parametrize("layout", ["hash", "blob"])
@pytest.mark.parametrize("holding", ["flattened", "optional", "list_in_wrapper", "blob",
                                     "flat", "queue", "encrypted_field", "encrypted_blob",
                                     "encrypted_queue"])
def test_a_class_held_in_the_open_cannot_be_declared_secret_afterwards(
        store: redmodel.Store, holding: str, layout: str) -> None:
    """The order of declarations does not decide: a class some model or container already
    stores in the open (field by field, or through a chain that does not encrypt) is
    refused as a model whose chain encrypts, naming where it is held; held only encrypted
    whole, it may be declared so."""
    n = next(_N)

    @attrs.define
    class Card:
        number: str
        id: str = "c"

    @attrs.define
    class Wrap:
        cards: list[Card]

    if holding in ("queue", "encrypted_queue"):
        redmodel.containers.Queue(store, f"fx32e_late{n}", Card,
                                  codec="json|fernet" if holding == "encrypted_queue"
                                  else None)
        where = f"Queue 'fx32e_late{n}'"
    else:
        ann: Any = {"optional": Optional[Card],  # noqa: UP045
                    "list_in_wrapper": Wrap}.get(holding, Card)
        held = (redmodel.field(codec="json|fernet") if holding == "encrypted_field"
                else attrs.field())
        options: dict[str, Any] = {
            "blob": {"layout": "blob"}, "flat": {"layout": "flat"},
            "encrypted_blob": {"layout": "blob", "codec": "json|fernet"}}.get(holding, {})

        @redmodel.model(prefix=f"fx32e_late{n}", **options)
        @attrs.define
        class Holder:
            card: ann = held  # type: ignore[valid-type]
            key: str = redmodel.key_field()

        where = "Holder.card"
    declare = redmodel.model(prefix=f"fx32e_card{n}", layout=layout, codec="json|fernet")
    if holding.startswith("encrypted") or layout == "hash":
        # held only encrypted whole: nothing in the open; or (fix 33B, attack 33A F6) a
        # hash Card, whose chain takes none of its fields (scalars): nothing of it is
        # encrypted, so nothing is secret (docs/codecs.md: a hash model's chain is "the
        # default chain for its encoded fields"; one with none encrypts nothing);
        # tests/test_fix33b.py holds a hash model whose chain takes a field
        declare(Card)
        return
    with pytest.raises(redmodel.ModelDefinitionError, match="encrypt") as e:
        declare(Card)
    assert where in str(e.value) and "Card" in str(e.value), e.value
    assert "__redmodel__" not in Card.__dict__  # refused: not a model
