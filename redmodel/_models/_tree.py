"""A model instance as a tree whose leaves are Redis strings, through cattrs.

The flat layout stores one key per leaf of this tree. Scalars become the same strings the
hash layout stores (``b"199"``), containers become dicts and lists (a set or frozenset a
list in a canonical order: :func:`_set_key`), and the stored names of fields
(``redmodel.field(name=...)``) are the dict keys.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from redmodel._errors import DecodeError
from redmodel._models._types import _SCALARS, BadValueError, optional_inner, scalar
from redmodel.codecs import codec as resolve
from redmodel.codecs._chains import stored_primitive
from redmodel.codecs._strict import (
    configure_containers,
    describe,
    field_names,
    object_structurer,
    upgrading,
)

__all__ = ["make_tree_converter", "structure_error"]


class _SetItems(list[Any]):
    """The members of a set, unstructured, in :func:`_set_key` order: a list to the flat
    layout (a sequence node), still a set to :func:`_set_key` when it is itself a member."""

    __slots__ = ()


def _set_key(node: Any) -> tuple[Any, ...]:
    """A total order on the tree converter's nodes (bytes leaves, None, sets, sequences,
    dicts) that no hash seed or insertion order changes."""
    if isinstance(node, bytes):
        return ("b", node)
    if node is None:
        return ("n",)
    if isinstance(node, _SetItems):  # already in this order
        return ("s", tuple(_set_key(v) for v in node))
    if isinstance(node, AbstractSet):
        return ("s", tuple(sorted(_set_key(v) for v in node)))
    if isinstance(node, dict):
        # an attrs object's fields (str keys, in field order) or a dict's entries (bytes
        # keys, in insertion order): sorted, so that neither order moves a set's member
        return ("d", tuple(sorted((_set_key(k) if isinstance(k, bytes) else ("k", str(k)),
                                   _set_key(v)) for k, v in node.items())))
    if isinstance(node, (list, tuple)):
        return ("l", tuple(_set_key(v) for v in node))
    return ("r", type(node).__name__, repr(node))


def _is_set_type(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, AbstractSet)


def _set_unstructure(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any], list[Any]]]:
    """Sets and frozensets as lists in :func:`_set_key` order, not as sets: a set's
    members may unstructure to unhashable nodes (an attrs object is a dict, a tuple or
    frozenset of them holds dicts), and equal sets must make equal leaves in every
    process, whatever their iteration order (insertion order, the hash seed: 30AU F1)."""

    def factory(tp: Any) -> Callable[[Any], list[Any]]:
        args = typing.get_args(tp)
        element = conv.get_unstructure_hook(args[0]) if args else conv.unstructure

        def unstructure(value: Any) -> list[Any]:
            items = _SetItems(element(v) for v in value)
            if len(items) > 1:
                items.sort(key=_set_key)
            return items

        return unstructure

    return factory


def _stored_name(f: attrs.Attribute[Any]) -> str:
    opts = f.metadata.get("redmodel")
    return getattr(opts, "name", None) or f.name


def _leaf(dec: Any, tp: Any) -> Any:
    """The structure hook of scalar type ``tp``. cattrs picks it by singledispatch, so it
    is also the hook of tp's subclasses: an IntEnum or a str-valued enum is read by the
    enum's own decoder (not as a plain int / str)."""
    subs: dict[Any, Any] = {}

    def structure(value: Any, t: Any) -> Any:
        if type(value) is not bytes:
            raise BadValueError("not a single value (the field's type changed?)")
        if t is tp:
            return dec(value)
        own = subs.get(t)
        if own is None:
            found = scalar(t)
            own = subs[t] = dec if found is None else found[1]
        return own(value)

    return structure


def _scalar_hooks(conv: cattrs.Converter, tp: Any) -> None:
    found = scalar(tp)
    assert found is not None
    enc, dec, _ = found
    conv.register_unstructure_hook(tp, enc)
    conv.register_structure_hook(tp, _leaf(dec, tp))


def _plain(node: Any) -> Any:
    """A subtree as ``upgrade=`` sees it: each leaf as its text (or its codec's primitive),
    dict keys as text."""
    if isinstance(node, bytes):
        return stored_primitive(node)
    if isinstance(node, dict):
        return {(k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k):
                _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _structure_fn(conv: cattrs.Converter, cls: type) -> Any:
    """Structure under stored names; a field's old names (and attribute name) are read when
    its stored name holds nothing, and ``upgrade=`` takes what does not decode."""
    overrides = _field_codec_hooks(conv, cls)
    aliases: list[tuple[str, tuple[str, ...]]] = []
    for f in attrs.fields(cls):
        stored, olds = field_names(f)
        if olds:
            aliases.append((stored, olds))
        upgrade = getattr(f.metadata.get("redmodel"), "upgrade", None)
        if upgrade is not None:
            hook = overrides[f.name].struct_hook or conv.get_structure_hook(f.type)
            chain = getattr(f.metadata.get("redmodel"), "codec", None)  # the flat layout
            overrides[f.name] = override(rename=stored, unstruct_hook=overrides[
                f.name].unstruct_hook, struct_hook=upgrading(
                    hook, f.type, upgrade, f"{cls.__name__}.{f.name}", _plain,
                    sealed=chain is not None and resolve(chain).encrypts))
    generated: Any = make_dict_structure_fn(cls, conv, **overrides)
    # Only an object node (str keys): a list node or a dict's entries (bytes keys) would
    # make an object of defaults (33A F5). (An empty dict's node is an object whose fields
    # all take defaults, as {} is in a JSON value.)
    return object_structurer(generated, cls, aliases, str_keys=True)


def _field_codec_hooks(conv: cattrs.Converter, cls: type) -> dict[str, Any]:
    """Overrides for one attrs class: stored names, and fields with their own codec."""
    attrs.resolve_types(cls)
    overrides: dict[str, Any] = {}
    for f in attrs.fields(cls):
        opts = f.metadata.get("redmodel")
        chain = getattr(opts, "codec", None)
        hooks: dict[str, Any] = {"rename": _stored_name(f)}
        if chain is not None:

            inner, optional = optional_inner(f.type)
            encode = resolve(chain).encoder(inner)
            decode = resolve(chain).decoder(inner)
            if optional:
                hooks["unstruct_hook"] = lambda v, e=encode: None if v is None else e(v)
                hooks["struct_hook"] = lambda v, _, d=decode: None if v is None else d(
                    v if type(v) is bytes else b"")
            else:
                hooks["unstruct_hook"] = encode
                hooks["struct_hook"] = lambda v, _, d=decode: d(v if type(v) is bytes else b"")
        overrides[f.name] = override(**hooks)
    return overrides


def _enum_structure(tp: type[enum.Enum]) -> Any:
    found = scalar(tp)
    assert found is not None
    decode = found[1]
    return lambda v, _: decode(v)


def make_tree_converter() -> cattrs.Converter:
    """A converter whose unstructured leaves are bytes in the hash layout's string forms."""
    conv = cattrs.Converter(detailed_validation=True)
    for tp in _SCALARS:
        _scalar_hooks(conv, tp)
    conv.register_unstructure_hook_factory(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum),
        lambda t: scalar(t)[0],  # type: ignore[index]
    )
    conv.register_structure_hook_factory(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum_structure
    )
    conv.register_unstructure_hook_factory(
        attrs.has, lambda cls: make_dict_unstructure_fn(cls, conv, **_field_codec_hooks(conv, cls))
    )
    conv.register_unstructure_hook_factory(_is_set_type, _set_unstructure(conv))
    # A leaf where a container is declared (or the reverse) is a changed type, not an
    # empty list: containers are structured only from containers.
    configure_containers(conv, text_keys=False)
    conv.register_structure_hook_factory(attrs.has, lambda cls: _structure_fn(conv, cls))
    return conv


def structure_error(e: Exception, *, model: str, key: str) -> DecodeError:
    """A DecodeError naming model, key and the failing field paths (never the values)."""
    if isinstance(e, DecodeError):
        return e.with_context(model=model, key=key)
    reason, field = describe(e)
    return DecodeError(reason, model=model, key=key, field=field)
