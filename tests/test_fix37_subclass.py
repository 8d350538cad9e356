"""Session 37: an object of a strict subclass held where its base class is declared is
refused before anything is written, wherever it sits and whatever writes it (docs/models.md,
"A subclass where its base is declared").

Before, a `Wheel(Part)` given for a `part: Part` field (or a `list[Part]` item, ...) was
stored as a `Part` and read back as one: its own fields and its class silently lost. The
property draws a holding shape (0-3 of Optional / list / tuple / a fixed tuple's position
/ set / frozenset / dict value / a nested attrs class, in any order), a layout, an entry
point (save, save_many, update, a transaction's save or update, a Queue push; sync and
asyncio) and a value whose leaves are each a `Part` or an object of a subclass: one adding
a field (`Wheel`), one adding nothing (`Bare`: only its class differs, and attrs' `==`
compares classes), one that is no attrs class itself (`Plain`)."""

from __future__ import annotations

import abc
import itertools
from typing import Any, Optional

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled
from tests.strategies import text

_N = itertools.count()


@attrs.frozen
class Part:
    name: str


@attrs.frozen
class Wheel(Part):
    size: int = 0


@attrs.frozen
class Bare(Part):
    pass


class Plain(Part):  # not decorated: an attrs class by inheritance only
    pass


LEAVES = (Part, Part, Wheel, Bare, Plain)
KINDS = ("optional", "list", "tuple", "pair", "set", "frozenset", "dict", "nested")
HASHABLE = ("optional", "tuple", "pair", "frozenset", "nested")  # below a set
ORDERED = ("list", "tuple")


@st.composite
def shapes(draw: st.DrawFn) -> tuple[str, ...]:
    """0 to 3 levels around the leaf, outermost first; below a set every level is
    hashable (a set's members are)."""
    out: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        hashable = any(k in ("set", "frozenset") for k in out)
        out.append(draw(st.sampled_from(HASHABLE if hashable else KINDS)))
    return tuple(out)


def _wrap_class(inner: Any) -> type:
    return attrs.make_class(f"Wrap{next(_N)}", {"w": attrs.field(type=inner)}, frozen=True)


def build_type(shape: tuple[str, ...]) -> tuple[Any, dict[int, type]]:
    """The declared type of the shape, and the wrapper class made for each nested level."""
    tp: Any = Part
    wraps: dict[int, type] = {}
    for level in reversed(range(len(shape))):
        kind = shape[level]
        if kind == "nested":
            wraps[level] = _wrap_class(tp)
            tp = wraps[level]
        else:
            tp = {"optional": lambda t: Optional[t],  # noqa: UP045
                  "list": lambda t: list[t], "tuple": lambda t: tuple[t, ...],
                  "pair": lambda t: tuple[int, t], "set": lambda t: set[t],
                  "frozenset": lambda t: frozenset[t],
                  "dict": lambda t: dict[str, t]}[kind](tp)
    return tp, wraps


def leaves() -> st.SearchStrategy[Any]:
    return st.sampled_from(LEAVES).flatmap(
        lambda cls: st.builds(cls, name=text, **({"size": st.integers(-9, 2**70)}
                                                  if cls is Wheel else {})))


def values(shape: tuple[str, ...], wraps: dict[int, type], level: int = 0
           ) -> st.SearchStrategy[Any]:
    if level == len(shape):
        return leaves()
    inner = values(shape, wraps, level + 1)
    kind = shape[level]
    if kind == "optional":
        return st.one_of(st.none(), inner)
    if kind in ("list", "tuple"):
        return st.lists(inner, max_size=3).map(list if kind == "list" else tuple)
    if kind == "pair":
        return st.tuples(st.integers(-5, 5), inner)
    if kind in ("set", "frozenset"):
        return st.frozensets(inner, max_size=3).map(set if kind == "set" else frozenset)
    if kind == "dict":
        return st.dictionaries(text, inner, max_size=3)
    return inner.map(wraps[level])


def first_bad(value: Any, shape: tuple[str, ...]) -> tuple[str, type] | None:
    """(path, class) of the first leaf that is not a Part itself, in the order a check
    walks the value (items in order, a set in its iteration order, a dict's values in
    its keys' order); None when every leaf is a Part."""
    if not shape:
        return None if type(value) is Part else ("", type(value))
    kind, rest = shape[0], shape[1:]
    if kind == "optional":
        return None if value is None else first_bad(value, rest)
    if kind == "pair":
        found = first_bad(value[1], rest)
        return None if found is None else ("[1]" + found[0], found[1])
    if kind == "nested":
        found = first_bad(value.w, rest)
        return None if found is None else (".w" + found[0], found[1])
    items = list(value.values()) if kind == "dict" else list(value)
    for i, item in enumerate(items):
        found = first_bad(item, rest)
        if found is not None:
            at = (f"[{i}]" if kind in ORDERED else "[<member>]" if kind != "dict"
                  else f"[<key {i}>]")
            return at + found[0], found[1]
    return None


def purified(value: Any, shape: tuple[str, ...], wraps: dict[int, type], level: int = 0
             ) -> Any:
    """``value`` with every leaf a Part of the same name."""
    if level == len(shape):
        return Part(value.name)
    kind = shape[level]

    def again(v: Any) -> Any:
        return purified(v, shape, wraps, level + 1)

    if kind == "optional":
        return None if value is None else again(value)
    if kind == "pair":
        return (value[0], again(value[1]))
    if kind == "nested":
        return wraps[level](again(value.w))
    if kind == "dict":
        return {k: again(v) for k, v in value.items()}
    return type(value)(again(v) for v in value)


def snapshot(client: Any) -> dict[bytes, bytes]:
    """Every key on the server and its DUMP."""
    return {key: client.dump(key) for key in client.scan_iter(count=500)}


ENTRIES = ("save", "save_many", "update", "tx save", "tx update", "queue")


def _write(store: Any, holder: Any, entry: str, value: Any, good: Any, queue_of: Any
           ) -> None:
    """``value`` written into ``holder`` "a"'s field ``c`` through ``entry`` (save_many: a
    good object first; a queue: pushed into ``queue_of``)."""
    sync = isinstance(store, redmodel.Store)
    if entry == "save":
        store.save(holder(id="a", c=value))
    elif entry == "save_many":
        store.save_many([holder(id="b", c=good), holder(id="a", c=value)])
    elif entry == "update":
        store.update(holder, "a", c=value)
    elif entry == "queue":
        queue_of.push(value)
    else:
        def queue(tx: Any) -> None:
            if entry == "tx save":
                tx.save(holder(id="a", c=value))
            else:
                tx.update(holder, "a", c=value)

        async def queue_async(tx: Any) -> None:
            queue(tx)

        store.transaction(queue if sync else queue_async)()


@settings(max_examples=scaled(500))
@given(data=st.data(), shape=shapes(), layout=st.sampled_from(["hash", "flat", "blob"]),
       entry=st.sampled_from(ENTRIES))
def test_a_subclass_object_where_its_base_is_declared_is_refused_naming_its_path(
        one_server_store: Any, data: st.DataObject, shape: tuple[str, ...], layout: str,
        entry: str) -> None:
    """Every value whose leaves are all Parts round-trips equal; one holding an object of
    a subclass anywhere raises ValidationError naming the model, the field, the path
    inside it, both classes and what would be lost, and leaves every key on the server
    as it was (DUMP of each)."""
    store = one_server_store
    sync = isinstance(store, redmodel.Store)
    if entry == "queue" and (not sync or shape[:1] == ("optional",)):
        # (a container over an AsyncStore is its own test's subject; a Queue's members
        # admit no None: tests/test_container_none_members.py)
        entry = "save"
    if "update" in entry and layout != "hash":
        entry = entry.replace("update", "save")  # update is the hash layout's alone
    n = next(_N)
    tp, wraps = build_type(shape)
    value = data.draw(values(shape, wraps), label="value")
    good = purified(value, shape, wraps)
    queue = redmodel.containers.Queue(store, f"fx37_q{n}", tp) if entry == "queue" else None
    store.client.flushall()

    holder = redmodel.model(prefix=f"fx37_h{n}", key="id", layout=layout)(attrs.make_class(
        f"Holder{n}", {"id": attrs.field(type=str), "c": attrs.field(type=tp)}))
    store.save(holder(id="a", c=good))
    assert store.get(holder, "a") == holder(id="a", c=good)  # exact classes round-trip
    before = snapshot(store.client)

    bad = first_bad(value, shape)
    event(f"{'accepted' if bad is None else 'refused'} {entry}")
    if bad is None:
        _write(store, holder, entry, value, good, queue)
        if queue is not None and entry == "queue":
            assert queue.pop() == value
        else:
            assert store.get(holder, "a") == holder(id="a", c=value)
        return
    path, cls = bad
    with pytest.raises(redmodel.ValidationError) as info:
        _write(store, holder, entry, value, good, queue)
    message = str(info.value)
    where = f"{path.removeprefix('.')}: " if path else ""
    if entry != "queue":
        where = f"Holder{n}.c{path}: "
        assert info.value.model == f"Holder{n}" and info.value.field == "c"
    assert f"{where}a {cls.__name__} where Part is declared" in message, message
    lost = "without its field size" if cls is Wheel else "attrs' == compares classes"
    assert lost in message, message
    assert snapshot(store.client) == before  # nothing written, nothing removed


class Shape(abc.ABC):  # noqa: B024  (an ABC for its register(), no abstract method)
    pass


@attrs.frozen
class Disc(Shape):
    name: str


class Registered:  # no attrs class, no subclass of Disc: registered with it (an ABC)
    name = "r"



class Impostor:  # an attrs-less object that says it is a Part
    name = "i"

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return Part


@attrs.frozen
class Axle(Part):  # a subclass whose name takes "an"
    length: int = 0


@redmodel.model(prefix="fx37_imp")
@attrs.define
class Holder:
    id: str
    part: Part
    parts: list[Part] = attrs.Factory(list)


@redmodel.model(prefix="fx37_reg")
@attrs.define
class ShapeHolder:
    id: str
    disc: Disc
    discs: list[Disc] = attrs.Factory(list)


def test_an_object_that_only_passes_isinstance_is_refused_as_no_part(redis_client: Any) -> None:
    """isinstance takes a class registered with an ABC, or an object whose __class__
    property answers the declared class, for one of it: neither is a subclass of the
    declared class, and each is refused as what it is (before: attrs'
    NotAnAttrsClassError, naming no model, key or field, out of every writer)."""
    Disc.register(Registered)
    assert isinstance(Impostor(), Part) and isinstance(Registered(), Disc)
    store = redmodel.Store(redis_client)
    cases: list[tuple[Any, dict[str, Any], str]] = [
        (Holder, {"part": Impostor()}, "expected Part, got Impostor"),
        (Holder, {"part": Part("p"), "parts": [Impostor()]}, "expected Part, got Impostor"),
        (ShapeHolder, {"disc": Registered()}, "expected Disc, got Registered"),
        (ShapeHolder, {"disc": Disc("d"), "discs": [Registered()]},
         "expected Disc, got Registered"),
    ]
    for model, fields, said in cases:
        with pytest.raises(redmodel.ValidationError) as info:
            store.save(model(id="a", **fields))
        assert said in str(info.value) and ":a'" in str(info.value)
    assert redis_client.exists("fx37_imp:a", "fx37_reg:a") == 0
    with pytest.raises(redmodel.ValidationError, match=r"Holder.part: an Axle where Part is "
                       r"declared would be stored as a Part .* without its field length"):
        store.save(Holder(id="a", part=Axle("x", 3)))
    assert redis_client.exists("fx37_imp:a") == 0


def test_another_class_of_the_same_name_is_named_with_its_module(redis_client: Any) -> None:
    """A class declared again under the declared class's name is refused, and the message
    says which is which (before: "expected Part, got Part")."""

    @attrs.frozen
    class Part:  # another class than the module's Part, of the same name
        name: str

    store = redmodel.Store(redis_client)
    with pytest.raises(redmodel.ValidationError,
                       match=r"expected tests\.test_fix37_subclass\.Part, got another class "
                             r"of that name \(tests\.test_fix37_subclass\.test_another"):
        store.save(Holder(id="a", part=Part("x")))  # type: ignore[arg-type]
    assert redis_client.exists("fx37_imp:a") == 0
