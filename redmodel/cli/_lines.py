"""The export line format (version 1): one object per line of JSON, and back.

::

    {"v": 1, "model": "app.models:User", "id": "1000", "pttl": null,
     "data": {"name": "dan"}, "enc": {"card": "pxNqc29u..."}}

- ``v``: the format version (this module reads and writes 1).
- ``model``: ``module:Class`` of the model; an import matches it exactly, else by the
  class name alone when exactly one loaded model has it (a model that moved module).
- ``id``: the id as it appears in the key (its text).
- ``pttl``: milliseconds the object had left when it was exported, or ``null``.
- ``data``: every field but the id, by attribute name, as redmodel's ``json`` codec
  writes values (datetimes ISO 8601, Decimal and UUID as strings, bytes as base85).
- ``enc`` (only when some value stays encrypted): dotted field path -> the stored bytes
  (codec header and Fernet token) in standard base64; ``"$"`` is a blob's whole value.
  Those paths are absent from ``data``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Collection, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.v import format_exception

from redmodel._args import MAX_TTL_SECONDS, unsendable
from redmodel._errors import CodecError, DecodeError, RedmodelError, ValidationError, key_text
from redmodel._indexes._specs import IndexValueError
from redmodel._layouts._blob import BlobLayout
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import FieldSpec, ModelSpec, spec_of
from redmodel._models._types import BadValueError, optional_inner
from redmodel._plans._objects import check_whole
from redmodel.cli._common import model_label
from redmodel.cli._describe import encrypted_paths
from redmodel.codecs import JsonSerializer
from redmodel.codecs._chains import stored_primitive
from redmodel.codecs._strict import upgrade_value

MAX_PTTL = MAX_TTL_SECONDS * 1000
"""The largest ``pttl`` a line may hold: the store's TTL bound in milliseconds (a save or
expire with more is refused, and PEXPIRE overflows far beyond it)."""

__all__ = ["BadLineError", "FORMAT_VERSION", "MissingKeysError", "ModelLines", "Models",
           "SealedItem", "TypedItem"]

FORMAT_VERSION = 1
_CONVERTER = JsonSerializer().converter


class BadLineError(Exception):
    """A line that cannot be imported; the message says why, never with a secret."""


class MissingKeysError(Exception):
    """Keys the import needs are not configured (or cannot be used): the whole import
    stops before its first write; the message names the model and field."""


@attrs.frozen
class TypedItem:
    """A validated object, saved through the store."""

    cls: type
    obj: Any
    pttl: int | None


@attrs.frozen
class SealedItem:
    """An object whose encrypted values stay as exported: written as stored."""

    cls: type
    key: str
    id: Any
    pttl: int | None
    pairs: tuple[bytes, ...] = ()  # hash layout: field, value, ...
    value: bytes | None = None  # blob layout: the whole stored value
    index_values: Mapping[str, Any] = attrs.field(factory=dict)


def dumps(line: Mapping[str, Any]) -> str:
    text = json.dumps(line, ensure_ascii=False, separators=(",", ":"))
    if unsendable(text):  # an id's undecodable bytes (U+DC80..U+DCFF): as \udcXX escapes,
        # which UTF-8 output can hold and loads() reads back as that id
        text = json.dumps(line, separators=(",", ":"))
    return text + "\n"


def _canon(value: Any) -> Any:
    """An unstructured value as JSON would carry it: tuples and sets as lists, dict keys
    as text (what json.loads of the line gave)."""
    if isinstance(value, dict):
        return {_key_text(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_canon(v) for v in value]
    return value


def _key_text(key: Any) -> Any:
    if isinstance(key, str):
        return key
    return json.dumps(key) if isinstance(key, (bool, type(None))) else str(key)


def _first_difference(given: Any, back: Any, path: str) -> str | None:
    """Where ``given`` (the line's value) differs from what the model made of it: a
    coercion the import refuses (``41.9`` into an int, ``"no"`` into a bool)."""
    if isinstance(given, dict) and isinstance(back, dict):
        for name in given.keys() & back.keys():
            found = _first_difference(given[name], back[name], f"{path}.{name}")
            if found is not None:
                return found
        return None
    if isinstance(given, list) and isinstance(back, list):
        if len(given) != len(back):
            return path
        if all(_first_difference(a, b, path) is None for a, b in zip(given, back, strict=True)):
            return None
        key = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731 - sets come back reordered
        same = all(_first_difference(a, b, path) is None for a, b in
                   zip(sorted(given, key=key), sorted(back, key=key), strict=True))
        return None if same else path
    if isinstance(given, bool) or isinstance(back, bool):
        return None if given is back else path
    if isinstance(given, (int, float)) and isinstance(back, (int, float)):
        if isinstance(given, float) and math.isnan(given):
            return None if isinstance(back, float) and math.isnan(back) else path
        return None if given == back else path  # 1.0 into an int is 1: nothing lost
    return None if type(given) is type(back) and given == back else path


def _secret(attr: str | None, hidden: Collection[str]) -> bool:
    """Whether the value at the attribute path ``attr`` ("" for the whole object; None:
    inside a list or dict, whose own path says) is (part of) an encrypted value: its dict
    keys, items and their text are then plaintext of a secret, which no report may quote
    (attack 33D F3).
    ``hidden``: the model's encrypted paths (``"$"``: a blob's whole value)."""
    return "$" in hidden or (attr is not None and any(
        attr == h or attr.startswith(h + ".") for h in hidden))


def _differs(given: Any, back: Any, path: str, tp: Any, hidden: Collection[str],
             attr: str) -> str | None:
    """:func:`_first_difference`, with a path that goes into an encrypted value only by
    attribute names (which the class declares): a difference inside a dict or list there
    is reported at that dict or list, never at one of its keys or positions."""
    inner, _ = optional_inner(tp)
    if attrs.has(inner) and isinstance(given, dict) and isinstance(back, dict):
        types = {f.name: f.type for f in attrs.fields(inner)}
        for name in given.keys() & back.keys():
            child = f"{attr}.{name}" if attr else name
            found = _differs(given[name], back[name], f"{path}.{name}",
                             types.get(name), hidden, child)
            if found is not None:
                return found
        return None
    found = _first_difference(given, back, path)
    if found is None or not _secret(attr, hidden):
        return found
    return path


def _strict(value: Any, tp: Any, where: str, validate: bool = True,
            hidden: Collection[str] = ()) -> Any:
    """``value`` (parsed JSON) structured as ``tp``, refused when that would change it;
    ``validate=False`` only structures (a line checked already). ``hidden``: the paths
    (below ``where``, the whole object's ``$``) of encrypted values, whose dict keys and
    items no message names (see :func:`_secret`)."""
    try:
        typed = _CONVERTER.structure(value, tp)
    except Exception as e:  # cattrs raises many kinds; the line is bad either way
        raise BadLineError(_structure_message(e, where, hidden)) from None
    if not validate:
        return typed
    try:
        back = _canon(_CONVERTER.unstructure(typed, tp))
    except (TypeError, ValueError):
        raise BadLineError(f"{where}: does not fit {_type_name(tp)}") from None
    diff = _differs(value, back, where, tp, hidden, "")
    if diff is not None:
        raise BadLineError(f"{diff}: the value does not fit its declared type (it would be "
                      "converted, not kept)")
    return typed


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _structure_message(e: Exception, where: str, hidden: Collection[str] = ()) -> str:
    parts = list(dict.fromkeys(_error_paths(e, where, "", hidden, False)))
    return "; ".join(parts[:3]) + (f" (and {len(parts) - 3} more)" if len(parts) > 3 else "")


def _error_paths(e: BaseException, path: str, attr: str | None, hidden: Collection[str],
                 within: bool) -> list[str]:
    """cattrs' ``transform_error`` of a structuring error, except inside an encrypted
    value (:func:`_secret`): there a path stops at the dict or list (no key, no position)
    and the message says only which type was expected, never the error's own text (which
    may quote the value: ``invalid literal for int(): 'x'``). ``attr``: the attribute
    path of ``e``'s value (None inside a list or dict); ``within``: a value around it is
    encrypted."""
    secret = within or _secret(attr, hidden)
    out: list[str] = []
    if isinstance(e, cattrs.IterableValidationError):
        items, without = e.group_exceptions()
        for sub, note in items:
            p = path if secret else f"{path}[{note.index!r}]"
            out += _error_paths(sub, p, None, hidden, secret) if _nested(sub) else [
                f"{_described(sub, note.type, secret)} @ {p}"]
        out += [f"{_described(sub, None, secret)} @ {path}" for sub in without]
    elif isinstance(e, cattrs.ClassValidationError):
        attributes, without = e.group_exceptions()
        for sub, named in attributes:
            p = f"{path}.{named.name}"
            child = None if attr is None else f"{attr}.{named.name}" if attr else named.name
            inside = secret or _secret(child, hidden)
            out += _error_paths(sub, p, child, hidden, inside) if _nested(sub) else [
                f"{_described(sub, named.type, inside)} @ {p}"]
        out += [f"{_described(sub, None, secret)} @ {path}" for sub in without]
    else:
        out.append(f"{path}: does not fit its declared type ({type(e).__name__})" if secret
                   else f"{format_exception(e, None)} @ {path}")
    return out


def _nested(e: BaseException) -> bool:
    return isinstance(e, (cattrs.ClassValidationError, cattrs.IterableValidationError))


def _described(e: BaseException, tp: Any, secret: bool) -> str:
    if not secret:
        return format_exception(e, tp)
    if isinstance(e, KeyError):
        return "required field missing"
    if tp is not None:
        return f"invalid value for type, expected {_type_name(tp)}"
    return f"invalid value ({type(e).__name__})"


def _default(field: attrs.Attribute[Any]) -> Any:
    """The value attrs gives a field that was not passed."""
    default = field.default
    factory = getattr(default, "factory", None)
    if callable(factory):
        if getattr(default, "takes_self", False):
            raise BadLineError(f"$.{field.name}: required (its default depends on the object)")
        return factory()
    return default


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class ModelLines:
    """Lines of one model, both ways."""

    def __init__(self, cls: type, decrypt: bool) -> None:
        self.cls = cls
        self.spec: ModelSpec = spec_of(cls)
        self.label = model_label(cls)
        self.decrypt = decrypt
        self.encrypted = encrypted_paths(self.spec)
        self.names = {f.name for f in self.spec.fields}

    @property
    def sealed(self) -> bool:
        """Exported with its encrypted values as stored (no --decrypt)."""
        return bool(self.encrypted) and not self.decrypt

    # ---- export -----------------------------------------------------------------------

    def _line(self, id_text: str, pttl: int | None, data: dict[str, Any],
              enc: dict[str, str] | None = None) -> str:
        line: dict[str, Any] = {"v": FORMAT_VERSION, "model": self.label, "id": id_text,
                                "pttl": pttl, "data": data}
        if enc:
            line["enc"] = enc
        return dumps(line)

    def id_of(self, key: str) -> Any:
        """The id of an object's key, as the model reads it. A key under the model's
        prefix whose id does not decode (``prefix:abc`` of an int id; a key of another
        program), or that is not the key of the id it decodes to (an upper-case UUID),
        is an object that cannot be read: DecodeError naming the key and the id field, as
        ``get``, ``scan``, ``verify`` and ``inspect`` report it (and an import would
        refuse its line)."""
        spec = self.spec
        text = spec.id_of_key(key)
        assert text is not None and spec.key.decode is not None
        try:
            value = spec.key.decode(text.encode("utf-8", "surrogateescape"))
            own = spec.key_for(value)
        except (BadValueError, ValidationError) as e:
            raise DecodeError(f"id: {e}", model=spec.name,
                              key=key, field=spec.key.name) from None
        if own != key:
            raise DecodeError(f"id: not as the model spells it (its key is {key_text(own)})",
                              model=spec.name, key=key, field=spec.key.name)
        return value

    def from_object(self, obj: Any, pttl: int | None) -> str:
        """The line of an object read through the model."""
        spec = self.spec
        id_value = getattr(obj, spec.key.name)
        id_text = spec.id_text(id_value)
        if spec.layout == "blob" and unsendable(id_text):
            # a key's bytes that are not UTF-8 in a str id: what the blob's codec cannot
            # hold is refused by the import's check (the layout's own), so here too
            layout = layout_of(spec)
            assert isinstance(layout, BlobLayout)
            layout.precheck(spec.key_for(id_value), obj)
        data = _CONVERTER.unstructure(obj, self.cls)
        data.pop(spec.key.name, None)
        return self._line(id_text, pttl, data)

    def from_stored(self, key: str, reply: Any, pttl: int | None) -> str | None:
        """The line of an object from its stored form (HGETALL / GET reply), with its
        encrypted values as stored; None when the key holds nothing any more. Raises
        DecodeError for a plain value that does not fit."""
        spec = self.spec
        id_text = spec.id_of_key(key)
        assert id_text is not None
        if not reply:
            return None
        self.id_of(key)  # a key whose id does not decode: refused (its line would be)
        if spec.layout == "blob":
            return self._line(id_text, pttl, {}, {"$": _b64(reply)})
        stored = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2],
                                                                 strict=True))
        data: dict[str, Any] = {}
        enc: dict[str, str] = {}
        self._read(spec.fields, stored, b"", "", data, enc, key)
        return self._line(id_text, pttl, data, enc)

    def _read(self, fields: tuple[FieldSpec, ...], stored: Mapping[bytes, bytes],
              prefix: bytes, path: str, out: dict[str, Any], enc: dict[str, str],
              key: str) -> None:
        delim = self.spec.delimiter.encode()
        for f in fields:
            # read as the model does: under an old name (old_names=) when the current one
            # holds nothing, so an export taken mid-migration is complete
            names = [prefix + n.encode() for n in (f.stored, *f.old_stored)]
            where = path + f.name
            if f.kind == "struct":
                subs = [n + delim for n in names]
                sub_prefix = next((p for p in subs if any(k.startswith(p) for k in stored)),
                                  subs[0])
                sub: dict[str, Any] = {}
                self._read(f.children, stored, sub_prefix, where + ".", sub, enc, key)
                out[f.name] = sub
                continue
            raw = next((stored[n] for n in names if n in stored), None)
            if raw is None:
                if f.optional:
                    out[f.name] = None
                elif not f.has_default:  # else left out: the default applies on import
                    raise DecodeError("field is missing", model=self.spec.name, key=key,
                                      field=where)
            elif where in self.encrypted:
                enc[where] = _b64(raw)
            else:
                out[f.name] = _CONVERTER.unstructure(self._value(f, raw, key, where), f.type)

    def _value(self, f: FieldSpec, raw: bytes, key: str, where: str) -> Any:
        """A stored plain value as the model reads it: strictly, else through upgrade=."""
        assert f.decode is not None
        context = {"model": self.spec.name, "key": key, "field": where}
        try:
            return f.decode(raw)
        except BadValueError as e:
            if f.upgrade is None:
                raise DecodeError(f"stored value is {e}", **context) from None
        except DecodeError as e:
            if f.upgrade is None:
                raise e.with_context(**context) from None
        try:
            return upgrade_value(f.upgrade, stored_primitive(raw), f.check)
        except DecodeError as e:
            raise e.with_context(**context) from None

    # ---- import -----------------------------------------------------------------------

    def parse(self, line: Mapping[str, Any], ignored: dict[str, int], validate: bool = True
              ) -> TypedItem | SealedItem:
        """A validated item from a parsed line of this model; BadLineError says what is
        wrong. Fields the model does not declare are counted in ``ignored`` and left out.
        ``validate=False`` skips the checks a store write repeats or a first pass made
        (strict types, Model.check)."""
        spec = self.spec
        id_text = line.get("id")
        if not isinstance(id_text, str) or not id_text:
            raise BadLineError("'id' must be a non-empty string")
        assert spec.key.decode is not None
        try:
            raw_id = id_text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # "\ud800": JSON carries it, no bytes stand for it
            raise BadLineError(f"id {key_text(id_text)} holds a lone surrogate other than "
                               "U+DC80..U+DCFF (which stand for bytes that are not UTF-8): "
                               "no key is those bytes") from None
        try:
            id_value = spec.key.decode(raw_id)
            key = spec.key_for(id_value)
        except BadValueError as e:
            raise BadLineError(f"id {id_text!r} does not fit {spec.key.name}: {e}") from None
        except ValidationError as e:
            raise BadLineError(str(e)) from None
        pttl = line.get("pttl")
        if pttl is not None and (isinstance(pttl, bool) or not isinstance(pttl, int)
                                 or not 0 < pttl <= MAX_PTTL):
            raise BadLineError(f"'pttl' must be a positive number of milliseconds up to "
                               f"{MAX_PTTL} (the store's TTL bound, {MAX_TTL_SECONDS:g} s) "
                               "or null")
        data = line.get("data")
        if not isinstance(data, dict):
            raise BadLineError("'data' must be an object")
        enc = line.get("enc") or {}
        if not isinstance(enc, dict):
            raise BadLineError("'enc' must be an object")
        for name in data.keys() - self.names:
            ignored[f"{self.spec.name}.{name}"] = ignored.get(f"{self.spec.name}.{name}", 0) + 1
        data = {k: v for k, v in data.items() if k in self.names}
        stored = {path: self._ciphertext(path, text) for path, text in enc.items()}
        if stored and self.decrypt:
            return self._typed(self._decrypted(data, stored), id_value, pttl, validate)
        if not stored:
            return self._typed(data, id_value, pttl, validate)
        return self._sealed(data, stored, id_value, key, pttl, validate)

    def _ciphertext(self, path: Any, text: Any) -> bytes:
        if path not in self.encrypted:
            raise BadLineError(f"'enc' names {path!r}, which {self.spec.name} does not encrypt")
        if not isinstance(text, str):
            raise BadLineError(f"enc {path!r}: expected base64 text")
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise BadLineError(f"enc {path!r}: not base64") from None
        chain = self._chain(path)
        if not chain.wrote(raw):
            raise BadLineError(f"enc {path!r}: not a value written by codec {chain.name!r}")
        return raw

    def _chain(self, path: str) -> Any:
        if path == "$":
            return self.spec.codec
        return self.spec.path(path)[-1].codec

    def _decrypted(self, data: dict[str, Any], stored: dict[str, bytes]) -> dict[str, Any]:
        """``data`` with the encrypted values decrypted into it (--decrypt)."""
        if "$" in stored:  # a blob: the whole object
            try:
                obj = self.spec.codec.decoder(self.cls)(stored["$"])  # type: ignore[union-attr]
            except DecodeError as e:
                raise BadLineError(f"enc '$': {e.reason}") from None
            whole: dict[str, Any] = _canon(_CONVERTER.unstructure(obj, self.cls))
            whole.pop(self.spec.key.name, None)  # the id is the line's (its key's)
            return whole
        out = _canon(data)  # a copy to fill in
        for path, raw in stored.items():
            f = self.spec.path(path)[-1]
            assert f.decode is not None
            try:
                value = f.decode(raw)
            except DecodeError as e:
                raise BadLineError(f"enc {path!r}: {e.reason}") from None
            node = out
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = _canon(_CONVERTER.unstructure(value, f.type))
        return dict(out)

    def _typed(self, data: dict[str, Any], id_value: Any, pttl: int | None, validate: bool
               ) -> TypedItem:
        spec = self.spec
        full = {**data, spec.key.name: _CONVERTER.unstructure(id_value, spec.key.type)}
        obj = _strict(full, self.cls, "$", validate, self.encrypted)
        if validate:  # save_many's own up-front check of one object (one function)
            try:
                check_whole(obj)
            except ValidationError as e:
                raise BadLineError(str(e)) from None
        return TypedItem(self.cls, obj, pttl)

    def _indexable(self, values: dict[str, Any]) -> None:
        """BadLineError for a value the model's index cannot hold (a NaN or infinite range
        score, an int beyond 2**53), which the store's save refuses."""
        if self.spec.indexes is None or not values:
            return
        try:
            self.spec.indexes.entries(values)
        except CodecError as e:  # a blind field's token, with no index keys configured
            field = next(iter(self.blind_sealed), "?")
            raise MissingKeysError(self._keys_needed(field, e)) from None
        except IndexValueError as e:
            raise BadLineError(f"{self.spec.name}.{e.field}: {e.reason}" if e.field
                               else f"{self.spec.name}: {e.reason}") from None

    def _sealed(self, data: dict[str, Any], stored: dict[str, bytes], id_value: Any,
                key: str, pttl: int | None, validate: bool) -> SealedItem:
        spec = self.spec
        if spec.layout == "blob":
            return SealedItem(self.cls, key, id_value, pttl, value=stored["$"])
        if spec.layout != "hash":
            raise BadLineError(f"{spec.name} ({spec.layout} layout) holds encrypted values: "
                          "import it with --decrypt (keys needed)")
        if spec.claims:
            raise BadLineError(f"{spec.name} claims unique values across buckets: import it "
                          "with --decrypt (keys needed)")
        pairs: list[bytes] = []
        top: dict[str, Any] = {}
        self._encode(spec.fields, data, stored, b"", "", pairs, top, validate)
        index_values: dict[str, Any] = {}
        if spec.indexes is not None:
            defaults = attrs.fields_dict(self.cls)
            for name in spec.indexes.fields:
                if name in top:
                    index_values[name] = top[name]
                elif name in stored:  # blind-indexed, kept encrypted: its entry is a token
                    # of the plaintext (keyed by the index key), so the value is decrypted
                    # to index it; the stored bytes are written back as exported
                    index_values[name] = self._blind_value(name, stored[name])
                else:  # absent from the line: the default, as a read gives
                    index_values[name] = _default(defaults[name])
        if validate:
            self._indexable(index_values)
        return SealedItem(self.cls, key, id_value, pttl, pairs=tuple(pairs),
                          index_values=index_values)

    @property
    def blind_sealed(self) -> list[str]:
        """The blind-indexed fields whose values this import reads kept encrypted: to
        index them it needs the Fernet keys that wrote them and the index keys."""
        indexes = self.spec.indexes
        if not self.sealed or indexes is None:
            return []
        return [n for n, f in indexes.fields.items() if f.blind is not None]

    def _blind_value(self, name: str, raw: bytes) -> Any:
        f = self.spec.by_name[name]
        assert f.decode is not None
        try:
            return f.decode(raw)
        except CodecError as e:  # no keys (or bad ones): a setting, not a line, to fix
            raise MissingKeysError(self._keys_needed(name, e)) from None
        except DecodeError as e:
            raise BadLineError(f"enc {name!r}: {e.reason}") from None

    def _keys_needed(self, name: str, e: CodecError) -> str:
        return (f"{self.spec.name}.{name} is blind-indexed and its values were exported "
                "encrypted: importing them (even without --decrypt) decrypts them to compute "
                "their index entries, so it needs the Fernet keys that wrote them and the "
                f"index keys: {e}")

    def _encode(self, fields: tuple[FieldSpec, ...], data: Mapping[str, Any],
                stored: Mapping[str, bytes], prefix: bytes, path: str, pairs: list[bytes],
                top: dict[str, Any], validate: bool) -> None:
        """The hash fields of an object whose encrypted values stay as stored: each plain
        value checked and encoded as the hash layout stores it."""
        delim = self.spec.delimiter.encode()
        for f in fields:
            name = prefix + f.stored.encode()
            where = path + f.name
            if f.kind == "struct":
                sub = data.get(f.name)
                if not isinstance(sub, dict):
                    raise BadLineError(f"$.{where}: expected an object")
                self._encode(f.children, sub, stored, name + delim, where + ".", pairs, top,
                             validate)
                continue
            if where in stored:
                pairs += [name, stored[where]]
                continue
            if where in self.encrypted:
                # an export leaves out a value the hash does not hold: None (in 'data' as
                # null) or the default (absent); either reads back as that, unstored
                if f.optional and f.name in data and data[f.name] is None:
                    if not path:
                        top[f.name] = None
                    continue
                if f.name not in data and f.has_default:
                    continue
                raise BadLineError(f"$.{where}: an encrypted value is missing from 'enc'")
            if f.name not in data:
                if not (f.optional or f.has_default):
                    raise BadLineError(f"$.{where}: required field missing")
                continue  # absent: None, or the default, when read
            value = _strict(data[f.name], f.type, f"$.{where}", validate)
            if validate and (err := f.check(value)) is not None:
                raise BadLineError(f"$.{where}: {err}")
            if not path:
                top[f.name] = value
            if value is not None:
                assert f.encode is not None
                try:
                    pairs += [name, f.encode(value)]
                except RedmodelError as e:
                    raise BadLineError(f"$.{where}: {e}") from None


class Models:
    """The loaded models by the names lines give them."""

    def __init__(self, models: list[type], decrypt: bool) -> None:
        self.by_label = {model_label(c): ModelLines(c, decrypt) for c in models}
        by_name: dict[str, list[ModelLines]] = {}
        for lines in self.by_label.values():
            by_name.setdefault(lines.cls.__qualname__, []).append(lines)
        self.by_name = by_name

    def find(self, label: Any) -> ModelLines:
        if not isinstance(label, str):
            raise BadLineError("'model' must be a string")
        found = self.by_label.get(label)
        if found is not None:
            return found
        same = self.by_name.get(label.rpartition(":")[2], [])
        if len(same) == 1:
            return same[0]
        if same:
            raise BadLineError(f"model {label!r} is not loaded, and its class name is ambiguous")
        raise BadLineError(f"model {label!r} is not among the --models given")

    def parse(self, text: str | bytes, ignored: dict[str, int], validate: bool = True
              ) -> TypedItem | SealedItem:
        """One line of an export, validated; BadLineError says what is wrong."""
        try:
            line = json.loads(text)
        except ValueError as e:
            raise BadLineError(f"not JSON: {e}") from None
        if not isinstance(line, dict):
            raise BadLineError("not a JSON object")
        version = line.get("v")
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise BadLineError(f"format version {version!r} is not supported (this redmodel "
                          f"reads {FORMAT_VERSION})")
        return self.find(line.get("model")).parse(line, ignored, validate)
