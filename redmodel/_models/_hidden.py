"""Encrypted values stay out of reprs and error messages, and encryption is never skipped.

A field is *encrypted* when its codec chain encrypts (``fernet``): its own chain, the
model's default for encoded fields, or the whole object's chain in the blob layout. Such a
value shows as ``<encrypted>`` in the repr (and so the str) of a model instance, and in a
:class:`UniqueViolationError`. The hiding is installed once, at declaration, on the
class and on every subclass of it, made before or after (hooks on the making of subclasses).

A field's own chain applies only where the field is stored on its own: inside a value
encoded whole (a list or an optional of a nested class, every field of a blob) it is not
used, so an encrypting chain declared there would leave the plaintext in Redis. Such a
declaration is refused.

A model's own chain (a blob model's chain, a hash model's default chain for its encoded
fields) applies only where that model is saved itself. Held by another model or by a
container, its values are stored by the holder's chains instead: field by field for a
nested field, whole through the holding field's (or container's) chain otherwise. So a
class whose own model chain encrypts (or which derives from such a model without a
declaration of its own) is refused wherever it is held, unless the chain that encodes it
whole there encrypts: ``redmodel.field(codec="json|fernet")`` on the holding field, an
encrypting model chain of the holder for its encoded fields or blob, or an encrypting
container codec. A hash model's chain counts only where an encoded field takes it
(:func:`model_secret`). Where a value is checked, on save and on an ``upgrade=``'s
result, it is checked where it is stored: a field of a nested class flattened field by
field by its own spec's checker (its own or the default chain), a value inside what an
encrypting chain decodes as encrypted whole.
"""

from __future__ import annotations

import functools
import typing
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from redmodel._errors import ModelDefinitionError, UniqueViolationError
from redmodel._models._keys import unescape
from redmodel.codecs import codec as resolve_codec

if TYPE_CHECKING:
    from redmodel._models._specs import FieldSpec, ModelSpec

__all__ = [
    "HIDDEN", "adds_secrecy", "check_encryption_applies", "check_members_encrypted",
    "check_not_held", "encrypted_fields", "hide_encrypted", "model_secret",
    "note_held", "secret_chain", "unique_violation",
]


class _Hidden:
    """Stands for an encrypted value wherever one would be shown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<encrypted>"

    __str__ = __repr__

    def __reduce__(self) -> str:
        return "HIDDEN"


HIDDEN: Final[Any] = _Hidden()


def _encrypted(f: FieldSpec) -> bool:
    return f.codec is not None and f.codec.encrypts


def _has_encrypted(f: FieldSpec) -> bool:
    return _encrypted(f) or any(_has_encrypted(c) for c in f.children)


def encrypted_fields(spec: ModelSpec) -> list[str]:
    """Dotted paths of the model's encrypted fields (every field but the id for a blob
    through an encrypting chain)."""
    if spec.layout == "blob" and spec.codec is not None and spec.codec.encrypts:
        return [f.name for f in spec.fields]
    out: list[str] = []

    def walk(fields: Sequence[FieldSpec], path: str) -> None:
        for f in fields:
            if _encrypted(f):
                out.append(path + f.name)
            elif f.children:
                walk(f.children, f"{path}{f.name}.")

    walk(spec.fields, "")
    return out


Show = Callable[[Any], str]


@attrs.define
class _View:
    """What a class's installed repr hides, merged over every model that stores the class:
    the attributes shown as ``<encrypted>``, and the nested attrs classes (by attribute)
    whose values are rendered through their own merged view."""

    hide: set[str] = attrs.Factory(set)
    nest: dict[str, type] = attrs.Factory(dict)


# Per class, the union of what any model declared so far stores encrypted in it. A repr
# redmodel installed reads its class's view when called, so a model declared later that
# encrypts more of a shared nested class widens that class's repr too, whatever the order.
_VIEWS: weakref.WeakKeyDictionary[type, _View] = weakref.WeakKeyDictionary()
_MARK: Final = "__redmodel_hides__"  # set on a repr redmodel installed
_GUARD: Final = "__redmodel_guards__"  # set on a class whose subclasses get that repr too


def _hide(value: Any) -> str:
    return "None" if value is None else "<encrypted>"


def _view(cls: type) -> _View:
    """What ``cls``'s repr hides: the views of every class in its MRO merged (a subclass,
    decorated or not, hides whatever a base of it hides; the nearest class's nesting
    wins), read when a repr is made, so a view widened later applies at once."""
    merged = _View()
    for c in reversed(cls.__mro__):
        view = _VIEWS.get(c)
        if view is not None:
            merged.hide |= view.hide
            merged.nest.update(view.nest)
    return merged


def _shows(cls: type) -> list[tuple[str, Show]]:
    """(attribute, how to show its value) for each attribute the attrs repr shows, by the
    merged view of ``cls`` and its bases."""
    view = _view(cls)
    out: list[tuple[str, Show]] = []
    for a in attrs.fields(cls):
        if a.repr is False:
            continue
        if a.name in view.hide:
            out.append((a.name, _hide))
        elif a.name in view.nest:
            out.append((a.name, functools.partial(_nested, view.nest[a.name])))
        else:
            out.append((a.name, a.repr if callable(a.repr) else repr))
    return out


def _nested(cls: type, obj: Any) -> str:
    if not isinstance(obj, cls):  # None, or a value of another type put there by hand
        return repr(obj)
    return _render(obj, _shows(type(obj)))  # a subclass object: its fields, cls's view too


def _render(obj: Any, shows: list[tuple[str, Show]]) -> str:
    name = type(obj).__qualname__.rsplit(">.", 1)[-1]
    body = ", ".join(f"{attr}={show(getattr(obj, attr))}" for attr, show in shows)
    return f"{name}({body})"


def hide_encrypted(spec: ModelSpec) -> None:
    """Give the model a repr that shows its encrypted fields as ``<encrypted>``, and the
    same to every nested attrs class that declares an encrypted field itself (its objects
    get logged on their own: ``log.info("%s", member.card)``), and to every attrs class a
    model stores inside a value it encrypts whole (a field through an encrypting chain, a
    blob model's chain, a list of them): that class hides all its attributes.

    A nested class stored by several models hides the union of what any of them stores
    encrypted in it, whatever the order the models were declared in: each class's hidden
    attributes are kept in one view that its installed repr reads when called.

    Only a repr that attrs generated is replaced (or one redmodel installed, recognised by
    a mark): with ``repr=False`` on the class nothing shows values anyway, and a
    ``__repr__`` written by hand is the author's to keep clean. Every subclass of such a
    class, made before or after, gets it too (:func:`_install`). attrs' ``str=True`` calls
    the repr, so it is covered too. A ``__rich_repr__`` is installed beside it: pretty
    printers that render attrs classes field by field (rich) ask it first."""
    if not encrypted_fields(spec):
        return
    hide_all = spec.layout == "blob" and spec.codec is not None and spec.codec.encrypts
    _register(spec.cls, spec.fields, hide_all, model=True)


def _register(cls: type, fields: Sequence[FieldSpec], hide_all: bool, model: bool) -> None:
    """Merge into ``cls``'s view what this model stores encrypted in it, recursively, and
    install the hiding repr on it if it is a model or hides an attribute itself."""
    view = _VIEWS.get(cls)
    if view is None:
        view = _VIEWS[cls] = _View()
    for f in fields:
        if hide_all or _encrypted(f):
            view.hide.add(f.name)
            _hide_whole(f.type, set())
        elif f.cls is not None and _has_encrypted(f):
            view.nest[f.name] = f.cls
            _register(f.cls, f.children, False, model=False)
    if model or view.hide:
        _install(cls)


def _hide_whole(tp: Any, seen: set[type]) -> None:
    """Every attrs class a value of ``tp`` may hold (``Addr``, ``list[Addr]``,
    ``Addr | None``, and the classes inside those), stored encrypted whole by some model,
    hides every attribute in its own repr: its objects get logged on their own too."""
    if isinstance(tp, type) and attrs.has(tp):
        if tp in seen:
            return
        seen.add(tp)
        view = _VIEWS.get(tp)
        if view is None:
            view = _VIEWS[tp] = _View()
        for a in attrs.fields(tp):
            view.hide.add(a.name)
            _hide_whole(a.type, seen)
        _install(tp)
        return
    for arg in typing.get_args(tp):
        _hide_whole(arg, seen)


def _install(cls: type) -> None:
    """Install the hiding repr on ``cls`` and on every subclass of it, made before or after
    (decorated or not, by ``attrs.define``, ``attrs.make_class`` or a plain ``class``):
    attrs gives each attrs subclass a fresh repr of its own, which would show the values
    ``cls`` hides (attack 33A F4)."""
    _guard_subclasses(cls)
    _replace_repr(cls)
    stack: list[type] = list(type.__subclasses__(cls))
    seen: set[type] = set()
    while stack:
        sub = stack.pop()
        if sub not in seen:
            seen.add(sub)
            _replace_repr(sub)
            stack.extend(type.__subclasses__(sub))


def _replace_repr(cls: type, *, missing: bool = False) -> None:
    """Give ``cls`` the hiding repr if its own repr is one attrs generated (or, with
    ``missing``, if it has none of its own yet and would inherit redmodel's or attrs':
    a subclass being made, which ``attrs.define`` then leaves as it is). A repr written
    by hand is the author's to keep clean (a class inheriting it keeps it too); one
    redmodel installed reads the views when called."""
    current = cls.__dict__.get("__repr__")
    if getattr(current, _MARK, False):
        return  # ours: it reads the (now wider) view when called
    if current is None and missing:
        current = getattr(cls, "__repr__", None)  # inherited: ours or attrs', not by hand
        if not getattr(current, _MARK, False) and not _generated(current):
            return
    elif not _generated(current):
        return

    def __repr__(self: Any) -> str:  # noqa: N807 - installed as the class's repr
        return _render(self, _shows(type(self)))

    def __rich_repr__(self: Any) -> Any:  # noqa: N807 - rich's protocol
        for attr, show in _shows(type(self)):
            value = getattr(self, attr)
            yield attr, HIDDEN if show is _hide and value is not None else value

    __repr__.__qualname__ = f"{cls.__qualname__}.__repr__"
    __rich_repr__.__qualname__ = f"{cls.__qualname__}.__rich_repr__"
    setattr(__repr__, _MARK, True)
    setattr(cls, "__repr__", __repr__)  # noqa: B010 - replacing a method on the class
    setattr(cls, "__rich_repr__", __rich_repr__)  # noqa: B010


def _generated(method: Any) -> bool:
    code = getattr(method, "__code__", None)
    return code is not None and code.co_filename.startswith("<attrs generated")


def _guard_subclasses(cls: type) -> None:
    """Hook the making of ``cls``'s subclasses: ``__init_subclass__`` (Python calls it as
    the subclass is made; a slotted attrs class is made again with its generated repr, and
    ``attrs.define`` keeps a repr the class already has) and ``__attrs_init_subclass__``
    (attrs 24.1+ calls it once the subclass is built, whatever API built it: the hook that
    also covers a dict class that attrs gives its generated repr afterwards). A hook the
    class declared itself is called from ours."""
    if cls.__dict__.get(_GUARD, False):
        return
    own_init = cls.__dict__.get("__init_subclass__")
    own_attrs = cls.__dict__.get("__attrs_init_subclass__")

    def __init_subclass__(sub: type, /, **kwargs: Any) -> None:  # noqa: N807
        if own_init is not None:
            own_init.__get__(None, sub)(**kwargs)
        else:
            super(cls, sub).__init_subclass__(**kwargs)  # type: ignore[arg-type]
        _replace_repr(sub, missing=True)

    def __attrs_init_subclass__(sub: type) -> None:  # noqa: N807
        if own_attrs is not None:
            own_attrs.__get__(None, sub)()
        else:
            parent = getattr(super(cls, sub), "__attrs_init_subclass__", None)
            if parent is not None:
                parent()
        _replace_repr(sub)

    setattr(cls, "__init_subclass__", classmethod(__init_subclass__))  # noqa: B010
    setattr(cls, "__attrs_init_subclass__", classmethod(__attrs_init_subclass__))  # noqa: B010
    setattr(cls, _GUARD, True)


def unique_violation(spec: ModelSpec, name: str, text: str, key: str) -> UniqueViolationError:
    """The error for a unique value (entry text ``text`` of constraint ``name``) held by
    another object; a blind field's part is shown as ``<encrypted>``, never its token."""
    fields = tuple(name.split(","))
    indexes = spec.indexes
    parts = tuple(
        HIDDEN if indexes is not None and getattr(indexes.fields.get(n), "blind", None)
        else unescape(p)
        for n, p in zip(fields, text.split("\x1e"), strict=True)
    )
    return UniqueViolationError(spec.name, fields, parts[0] if len(parts) == 1 else parts, key)


def _declared(a: attrs.Attribute[Any]) -> str | None:
    """The name of the encrypting chain an attribute declares, if it declares one."""

    chain = getattr(a.metadata.get("redmodel"), "codec", None)
    if chain is None:
        return None
    found = resolve_codec(chain)
    return found.name if found.encrypts else None


def model_secret(spec: ModelSpec) -> Any:
    """The model's own chain if it encrypts some of the model's values: a blob model's
    chain (it encrypts the whole object), a hash model's default chain when some encoded
    field (a nested one's too) takes it, not declaring a chain of its own; else None.

    A hash model whose chain encrypts but which has no such field (scalars, nested
    classes of scalars, fields with chains of their own) stores every value as it would
    without the chain: nothing of it is secret by that chain (attack 33A F6). A subclass
    adding such a field is secret once declared a model (its own spec), and a plain
    subclass is stored as its model, without the field."""
    chain = getattr(spec, "codec", None)
    if getattr(chain, "encrypts", False) is not True:
        return None
    if spec.layout == "blob":
        return chain
    if spec.layout != "hash":
        return None

    def takes(cls: type, fields: Sequence[FieldSpec]) -> bool:
        declared = attrs.fields_dict(cls)
        for f in fields:
            if f.kind == "struct" and f.cls is not None:
                if takes(f.cls, f.children):
                    return True
            elif f.kind == "encoded" and getattr(
                    declared[f.name].metadata.get("redmodel"), "codec", None) is None:
                return True
        return False

    return chain if takes(spec.cls, spec.fields) else None


def secret_chain(cls: type) -> Any:
    """The encrypting chain ``cls``'s own model declaration puts on its values
    (:func:`model_secret`: a blob model's chain, a hash model's default chain where an
    encoded field takes it), or that of the model it derives from when it has no
    declaration of its own; None if there is none."""
    for c in cls.__mro__:
        spec = c.__dict__.get("__redmodel__")
        if spec is not None:
            return model_secret(spec)
    return None


def adds_secrecy(base: type, sub: type) -> str | None:
    """What makes an object of ``sub``, a subclass of ``base`` held where ``base`` is
    declared, secret beyond ``base`` (its model's encrypting chain, a field it declares
    with an encrypting chain), said in a few words; None for nothing. Such an object is
    stored as a ``base``: neither is applied."""
    own = secret_chain(sub)
    if own is not None and secret_chain(base) is None:
        return f"{sub.__name__} is stored through its model's chain {own.name!r}"
    already = {a.name: _declared(a) for a in attrs.fields(base)}
    for a in attrs.fields(sub):
        chain = _declared(a)
        if chain is not None and already.get(a.name) is None:
            return f"{sub.__name__}.{a.name} declares codec {chain!r}"
    return None


def _inside(tp: Any, where: str, outer: str, seen: set[type]) -> None:
    """Refuse an encrypting chain declared anywhere inside ``tp``, a type encoded whole
    by the chain ``outer``, which does not encrypt."""
    if isinstance(tp, type) and attrs.has(tp):
        if tp in seen:
            return
        seen.add(tp)
        own = secret_chain(tp)
        if own is not None:
            raise ModelDefinitionError(
                f"{tp.__name__} is stored through its model's chain {own.name!r}, which "
                f"would be ignored: {where} stores it inside a value encoded whole by "
                f"{outer!r}, which does not encrypt, so it would reach Redis in plaintext. "
                f"Give {where} an encrypting chain (such as 'json|fernet') instead"
            )
        for a in attrs.fields(tp):
            chain = _declared(a)
            if chain is not None:
                raise ModelDefinitionError(
                    f"{tp.__name__}.{a.name} declares codec {chain!r}, which would be "
                    f"ignored: {where} stores it inside a value encoded whole by {outer!r}, "
                    "which does not encrypt, so it would reach Redis in plaintext. Give "
                    f"{where} an encrypting chain (such as 'json|fernet') instead"
                )
            _inside(a.type, where, outer, seen)
        return
    for arg in typing.get_args(tp):
        _inside(arg, where, outer, seen)


def check_members_encrypted(tp: Any, chain: Any, where: str) -> None:
    """Refuse container members (values encoded whole by ``chain``) that declare an
    encrypting chain ``chain`` would ignore; else remember the classes they hold in the
    open (:func:`check_not_held`)."""
    if not chain.encrypts:
        _inside(tp, where, chain.name, set())
        _note_whole(tp, where)


# Every attrs class some model or container declared so far stores without encrypting it
# whole (field by field, or inside a value through a chain that does not encrypt), with
# where: a class declared a model whose chain encrypts only afterwards is refused.
_HELD: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def _note_whole(tp: Any, where: str) -> None:
    if isinstance(tp, type) and attrs.has(tp):
        if tp in _HELD:
            return
        _HELD[tp] = where
        for a in attrs.fields(tp):
            if _declared(a) is None:
                _note_whole(a.type, where)
        return
    for arg in typing.get_args(tp):
        _note_whole(arg, where)


def note_held(spec: ModelSpec) -> None:
    """Remember the classes a model just declared stores in the open (see ``_HELD``)."""
    if spec.codec is not None and spec.codec.encrypts and spec.layout == "blob":
        return

    def walk(fields: Sequence[FieldSpec], path: str) -> None:
        for f in fields:
            where = f"{path}.{f.name}"
            if f.kind == "struct" and f.cls is not None:
                _HELD.setdefault(f.cls, where)
                walk(f.children, where)
            elif f.kind == "encoded" and f.codec is not None and not f.codec.encrypts:
                _note_whole(f.type, where)

    walk(spec.fields, spec.name)


def check_not_held(spec: ModelSpec) -> None:
    """Refuse declaring a model whose chain encrypts on a class that a model or container
    declared before already stores in the open: that holding would keep storing its
    values in plaintext (the order of declarations must not decide)."""
    own = model_secret(spec)
    where = _HELD.get(spec.cls)
    if own is None or where is None:
        return
    raise ModelDefinitionError(
        f"{spec.name}: its chain {own.name!r} would be ignored where {where}, declared "
        f"before, holds {spec.name} (field by field, or inside a value through a chain that "
        "does not encrypt): its values would reach Redis in plaintext there. Declare the "
        f"model {spec.name} before what holds it, which is then refused unless it encrypts "
        f"the {spec.name} whole"
    )


def check_encryption_applies(name: str, layout: str, model_codec: Any,
                             fields: Sequence[FieldSpec]) -> None:
    """Refuse a declaration whose encryption would be skipped (see the module doc)."""
    if layout == "blob":
        outer = model_codec.name if model_codec is not None else "json"
        if model_codec is not None and model_codec.encrypts:
            return
        for f in fields:
            if f.codec is not None and f.codec.encrypts:
                raise ModelDefinitionError(
                    f"{name}.{f.name} declares codec {f.codec.name!r}, which the blob layout "
                    f"ignores: the whole object is encoded by {outer!r}, which does not "
                    "encrypt, so it would reach Redis in plaintext. Give the model an "
                    "encrypting chain (codec='json|fernet')"
                )
            _inside(f.type, f"{name}.{f.name}", outer, set())
        return
    for f in fields:
        where = f"{name}.{f.name}"
        if f.kind == "encoded" and f.codec is not None and not f.codec.encrypts:
            _inside(f.type, where, f.codec.name, set())
        elif f.kind == "struct" and f.cls is not None:
            own = secret_chain(f.cls)
            if own is not None:
                raise ModelDefinitionError(
                    f"{f.cls.__name__} is stored through its model's chain {own.name!r}, "
                    f"which {where} would not apply: it stores the {f.cls.__name__} field "
                    "by field, so its values would reach Redis in plaintext. Declare "
                    f"{where} with an encrypting chain, redmodel.field(codec='json|fernet'), "
                    f"to store the {f.cls.__name__} whole and encrypted"
                )
            check_encryption_applies(where, layout, None, f.children)
