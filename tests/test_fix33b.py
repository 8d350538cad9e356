"""Fix 33B: a secret class's object is accepted exactly where nothing of it reaches Redis in
plaintext (docs/codecs.md, "Never skipped"), the same on save, on read through `upgrade=`,
in a container, and in every layout (attack 33A F1, F2, F6). Since session 37 an object of
any strict subclass is refused where its base is declared (it would be read back as the
base): the shapes below accept only the declared class itself, and refuse the rest with
nothing written.

The property draws a holding shape (flattened wrappers 0-2 deep, then 0-2 of Optional /
list / dict / tuple around the held class, or a Queue of that type), the chains (a
blob's, a hash model's default chain, the held field's own chain, the Queue's codec;
encrypting or not) and the class of the object given: the plain declared class, a
subclass secret beyond it (a blob model whose chain encrypts; a hash model whose chain
an encoded field takes; a plain subclass declaring an encrypting chain on a field) or a
hash model whose chain encrypts but takes no field (nothing secret: F6)."""

from __future__ import annotations

import itertools
from typing import Any, Optional

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled
from tests.plaintext import dump

SECRET = "SECRET-33B-4321"
_N = itertools.count()


@attrs.define
class Inner:
    number: str


@redmodel.model(prefix="fix33b_blobsub", key="number", layout="blob", codec="json|fernet")
@attrs.define
class BlobSub(Inner):
    """Secret: its blob chain encrypts the whole object."""


@redmodel.model(prefix="fix33b_nothing", key="number", codec="json|fernet")
@attrs.define
class NothingSub(Inner):
    """Not secret (F6): a hash model whose chain encrypts but takes no field."""


@redmodel.model(prefix="fix33b_hashsub", key="number", codec="json|fernet")
@attrs.define
class HashSub(NothingSub):
    """Secret: a subclass of NothingSub declared a model adding a field its chain takes."""

    tags: list[str] = attrs.Factory(lambda: [SECRET])


@attrs.define
class FieldSub(Inner):
    """Secret: a plain subclass declaring an encrypting chain on its field."""

    number: str = redmodel.field(codec="json|fernet")


SECRET_CLASSES = (BlobSub, HashSub, FieldSub)
CLASSES = (Inner, NothingSub, *SECRET_CLASSES)
CHAINS = (None, "json", "json|fernet")


def _encrypts(chain: str | None) -> bool:
    return chain is not None and "fernet" in chain


@attrs.frozen
class Shape:
    layout: str            # blob, hash, flat, queue
    depth: int             # flattened wrappers around the held field (not for a queue)
    around: tuple[str, ...]  # containers around Inner, outermost first; () = Inner itself
    model_chain: str | None  # blob: its chain; hash: its default chain; queue: its codec
    field_chain: str | None  # the held field's own chain (hash, flat, blob)
    cls: type

    def encrypted_whole(self) -> bool:
        """Whether the held value is encoded whole by a chain that encrypts."""
        if self.layout in ("blob", "queue"):
            return _encrypts(self.model_chain)
        if not self.around and self.field_chain is None:
            return False  # Inner itself, stored field by field: its number in plaintext
        if self.layout == "flat":
            return _encrypts(self.field_chain)
        return _encrypts(self.field_chain or self.model_chain)

    def refused_at_declaration(self) -> bool:
        """A blob whose chain does not encrypt ignores a field's encrypting chain."""
        return self.layout == "blob" and not _encrypts(self.model_chain) \
            and _encrypts(self.field_chain)

    def accepted(self) -> bool:
        """Only the declared class itself: since session 37 an object of a strict subclass
        is refused wherever its base is declared, encrypted whole or not (it would be read
        back as the base: docs/models.md, "A subclass where its base is declared")."""
        return self.cls is Inner


def _type(around: tuple[str, ...]) -> Any:
    tp: Any = Inner
    for kind in reversed(around):
        tp = {"optional": lambda t: Optional[t],  # noqa: UP045
              "list": lambda t: list[t], "dict": lambda t: dict[str, t],
              "tuple": lambda t: tuple[t, ...]}[kind](tp)
    return tp


def _value(around: tuple[str, ...], obj: Any) -> Any:
    value = obj
    for kind in reversed(around):
        value = {"optional": lambda v: v, "list": lambda v: [v],
                 "dict": lambda v: {"k": v}, "tuple": lambda v: (v,)}[kind](value)
    return value


def _held(around: tuple[str, ...], value: Any) -> Any:
    """The object of the drawn class inside a value read back."""
    for kind in around:
        value = {"optional": lambda v: v, "list": lambda v: v[-1],
                 "dict": lambda v: v["k"], "tuple": lambda v: v[0]}[kind](value)
    return value


def _obj(cls: type) -> Any:
    return cls(number=SECRET)


def _model(shape: Shape, n: int, field_type: Any, meta: dict[str, Any]) -> Any:
    """The holder: ``c`` (``field_type``, metadata ``meta``) inside ``shape.depth``
    flattened wrappers; the same name and prefix for every version of example ``n``."""
    leaf: tuple[str, Any] = ("c", attrs.field(type=field_type, metadata=meta))
    for level in range(shape.depth):
        wrap = attrs.make_class(f"W{n}_{level}", {leaf[0]: leaf[1]})
        leaf = ("w", attrs.field(type=wrap))
    cls = attrs.make_class(f"Fix33b{n}", {"id": attrs.field(type=str), leaf[0]: leaf[1]})
    return redmodel.model(
        prefix=f"fix33b_h{n}", key="id", layout=shape.layout,
        codec=shape.model_chain if shape.layout != "flat" else None)(cls)


def _build(m: Any, shape: Shape, value: Any) -> Any:
    inner: Any = value
    for level in reversed(range(shape.depth)):
        wrap = _wrapper(m, level)
        inner = wrap(**{"c" if level == shape.depth - 1 else "w": inner})
    return m(id="a", **{"w" if shape.depth else "c": inner})


def _wrapper(m: Any, level: int) -> Any:
    cls = m
    for _ in range(level + 1):
        cls = attrs.fields_dict(cls)["w"].type
    return cls


def _read(obj: Any, depth: int) -> Any:
    for _ in range(depth):
        obj = obj.w
    return obj.c


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    layout = draw(st.sampled_from(["blob", "hash", "flat", "queue"]))
    around = tuple(draw(st.lists(st.sampled_from(["optional", "list", "dict", "tuple"]),
                                 max_size=2)))
    if layout == "queue":
        if around[:1] == ("optional",):  # a Queue's members admit no None (session 37)
            around = ("list", *around[1:])
        chain = draw(st.sampled_from(["json", "json|fernet"]))
        return Shape(layout, 0, around, chain, None, draw(st.sampled_from(CLASSES)))
    model_chain = {"blob": draw(st.sampled_from(["json", "json|fernet"])),
                   "hash": draw(st.sampled_from([None, "json|fernet"])),
                   "flat": None}[layout]
    return Shape(layout, draw(st.integers(0, 2)), around, model_chain,
                 draw(st.sampled_from(CHAINS)), draw(st.sampled_from(CLASSES)))


def _save_agrees(store: redmodel.Store, shape: Shape, n: int) -> None:
    value = _value(shape.around, _obj(shape.cls))
    if shape.layout == "queue":
        queue = redmodel.containers.Queue(store, f"fix33b_q{n}", _type(shape.around),
                                          codec=shape.model_chain)
        if not shape.accepted():
            with pytest.raises(redmodel.ValidationError):
                queue.push(value)
            assert store.client.exists(f"fix33b_q{n}") == 0
            return
        queue.push(value)
        if shape.cls in SECRET_CLASSES:
            assert SECRET.encode() not in dump(store.client)
        assert _held(shape.around, queue.pop()).number == SECRET
        return
    meta = redmodel.field(codec=shape.field_chain).metadata if shape.field_chain else {}
    if shape.refused_at_declaration():
        with pytest.raises(redmodel.ModelDefinitionError):
            _model(shape, n, _type(shape.around), meta)
        return
    m = _model(shape, n, _type(shape.around), meta)
    obj = _build(m, shape, value)
    if not shape.accepted():
        with pytest.raises(redmodel.ValidationError):
            store.save(obj)
        assert store.get(m, "a") is None  # nothing written
        return
    store.save(obj)
    if shape.cls in SECRET_CLASSES:
        assert SECRET.encode() not in dump(store.client)
    got = store.get(m, "a")
    assert _held(shape.around, _read(got, shape.depth)).number == SECRET


def _upgrade_agrees(store: redmodel.Store, shape: Shape, n: int) -> None:
    """An older list of ints in the held field, read through ``upgrade=`` returning the drawn
    value: read iff a save of it is accepted (else DecodeError), read back whole."""
    meta = redmodel.field(codec=shape.field_chain).metadata if shape.field_chain else {}
    old = _model(shape, n, list[int], meta)
    store.save(_build(old, shape, [7]))
    value = _value(shape.around, _obj(shape.cls))
    upgraded = redmodel.field(codec=shape.field_chain, upgrade=lambda _: value).metadata
    new = _model(shape, n, _type(shape.around), upgraded)
    if not shape.accepted():
        with pytest.raises(redmodel.DecodeError):
            store.get(new, "a")
        return
    got = store.get(new, "a")
    assert _held(shape.around, _read(got, shape.depth)).number == SECRET


@settings(max_examples=scaled(400))
@given(shape=shapes())
def test_an_object_is_accepted_only_as_its_declared_class_refused_writes_nothing(
        store: redmodel.Store, fresh_keys: None, shape: Shape) -> None:
    """The save (or Queue push) is accepted iff the object is an Inner itself (before
    session 37: also a subclass not secret beyond Inner, or one encoded whole by an
    encrypting chain there); accepted, no key name or value on the server holds the
    secret and it reads back; refused, nothing is written."""
    store.client.flushall()
    _save_agrees(store, shape, next(_N))


@settings(max_examples=scaled(300))
@given(shape=shapes().filter(lambda s: s.layout != "queue" and bool(s.around)
                             and not s.refused_at_declaration()))
def test_a_value_read_through_upgrade_is_checked_as_a_save_of_it(
        store: redmodel.Store, fresh_keys: None, shape: Shape) -> None:
    """`upgrade=` returning the drawn value: the read is accepted iff a save of that
    value is (the same rule in blob, hash and flat, at every depth)."""
    store.client.flushall()
    _upgrade_agrees(store, shape, next(_N))


def test_f6_a_hash_model_whose_chain_takes_no_field_is_not_secret_but_its_subclass_is(
        store: redmodel.Store, fresh_keys: None) -> None:
    """No false negative for F6: NothingSub is held in the open (nothing of it is
    encrypted anywhere), HashSub, declared a model on it adding a field its chain takes,
    is refused there."""
    m = _model(Shape("hash", 0, (), None, None, Inner), next(_N), Inner, {})
    # both refused since session 37 (a subclass where its base is declared), NothingSub
    # for its class alone, HashSub for its secret too
    with pytest.raises(redmodel.ValidationError, match="NothingSub") as e:
        store.save(m(id="a", c=NothingSub(number="shown")))
    assert "plaintext" not in str(e.value)
    with pytest.raises(redmodel.ValidationError, match=r"HashSub.*plaintext"):
        store.save(m(id="b", c=HashSub(number="x")))
    with pytest.raises(redmodel.ModelDefinitionError, match=r"plaintext|encrypt"):
        redmodel.containers.Queue(store, "fix33b_f6q", list[HashSub])
    redmodel.containers.Queue(store, "fix33b_f6q", list[NothingSub])


@pytest.mark.parametrize("holding", ["flattened", "optional", "queue"])
@pytest.mark.parametrize("fields", ["scalars", "an encoded field"])
def test_a_class_held_in_the_open_is_declared_a_hash_model_whose_chain_encrypts(
        store: redmodel.Store, holding: str, fields: str) -> None:
    """Declared after a holding in the open, a hash model whose chain encrypts is refused
    iff an encoded field takes that chain (its values would stay in plaintext there); with
    scalars only its chain encrypts nothing (F6)."""
    n = next(_N)
    extra = {"tags": attrs.field(type=list[str], factory=list)} \
        if fields == "an encoded field" else {}
    card = attrs.make_class(f"Card{n}", {"number": attrs.field(type=str), **extra})
    if holding == "queue":
        redmodel.containers.Queue(store, f"fix33b_lq{n}", card)
    else:
        tp = card if holding == "flattened" else Optional[card]  # noqa: UP045
        redmodel.model(prefix=f"fix33b_l{n}", key="id")(attrs.make_class(
            f"Holder{n}", {"id": attrs.field(type=str), "card": attrs.field(type=tp)}))
    declare = redmodel.model(prefix=f"fix33b_card{n}", key="number", codec="json|fernet")
    if fields == "scalars":
        declare(card)
        return
    with pytest.raises(redmodel.ModelDefinitionError, match="encrypt"):
        declare(card)
