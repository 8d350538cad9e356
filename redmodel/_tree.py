"""A model instance as a tree whose leaves are Redis strings, through cattrs.

The flat layout stores one key per leaf of this tree. Scalars become the same strings the
hash layout stores (``b"199"``), containers become dicts and lists, and the stored names
of fields (``redmodel.field(name=...)``) are the dict keys.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from redmodel._errors import DecodeError
from redmodel._types import _SCALARS, BadValueError, scalar

__all__ = ["make_tree_converter", "structure_error"]


def _stored_name(f: attrs.Attribute[Any]) -> str:
    opts = f.metadata.get("redmodel")
    return getattr(opts, "name", None) or f.name


def _scalar_hooks(conv: cattrs.Converter, tp: Any) -> None:
    found = scalar(tp)
    assert found is not None
    enc, dec, _ = found
    conv.register_unstructure_hook(tp, enc)
    conv.register_structure_hook(tp, lambda v, _: dec(v))


def _field_codec_hooks(conv: cattrs.Converter, cls: type) -> dict[str, Any]:
    """Overrides for one attrs class: stored names, and fields with their own codec."""
    attrs.resolve_types(cls)
    overrides: dict[str, Any] = {}
    for f in attrs.fields(cls):
        opts = f.metadata.get("redmodel")
        chain = getattr(opts, "codec", None)
        hooks: dict[str, Any] = {"rename": _stored_name(f)}
        if chain is not None:
            from redmodel._types import optional_inner  # noqa: PLC0415
            from redmodel.codecs import codec as resolve  # noqa: PLC0415

            inner, optional = optional_inner(f.type)
            encode = resolve(chain).encoder(inner)
            decode = resolve(chain).decoder(inner)
            if optional:
                hooks["unstruct_hook"] = lambda v, e=encode: None if v is None else e(v)
                hooks["struct_hook"] = lambda v, _, d=decode: None if v is None else d(v)
            else:
                hooks["unstruct_hook"] = encode
                hooks["struct_hook"] = lambda v, _, d=decode: d(v)
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
    conv.register_structure_hook_factory(
        attrs.has, lambda cls: make_dict_structure_fn(cls, conv, **_field_codec_hooks(conv, cls))
    )
    return conv


def structure_error(e: Exception, *, model: str, key: str) -> DecodeError:
    """A DecodeError naming model, key and the failing paths (never the values)."""
    if isinstance(e, DecodeError):
        return e.with_context(model=model, key=key)

    def fmt(exc: BaseException, tp: type | None) -> str:
        if isinstance(exc, KeyError):
            return "field is missing"
        if isinstance(exc, BadValueError):
            return f"stored value is {exc}"
        if isinstance(exc, DecodeError):
            return f"{exc.reason} (codec {exc.codec!r})" if exc.codec else exc.reason
        return f"stored value does not fit ({type(exc).__name__})"

    if isinstance(e, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        reasons = "; ".join(cattrs.transform_error(e, format_exception=fmt))
    else:
        reasons = fmt(e, None)
    return DecodeError(reasons, model=model, key=key)
