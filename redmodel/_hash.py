"""The hash layout: one Redis hash per object at ``prefix:id``.

Scalars are plain Redis strings (``b"199"``), so HINCRBY and redis-cli see what users expect.
A nested attrs field is flattened into ``address:street:line1`` hash fields; an Optional
nested object, a list, a dict, a set or a field with its own codec is one hash field
encoded by the field's codec chain (json by default). ``None`` is stored as an absent field.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from redmodel._errors import DecodeError, ValidationError
from redmodel._index import WRITE
from redmodel._plan import Command, script
from redmodel._schema import FieldSpec, ModelSpec
from redmodel._types import BadValueError

__all__ = ["HashLayout"]

# A hash cannot exist without fields; an object whose every field is None keeps this one.
MARKER = b"\x00"

_SAVE = script("hash_save")

_UPDATE = script("hash_update")

_INCR = script("hash_incr")


_CAS_FIELD = script("hash_cas_field")

CAS_STRING = script("string_cas")


_SNAPSHOTS: dict[int, tuple[weakref.ref[Any], dict[bytes, bytes]]] = {}


def remember(obj: Any, stored: dict[bytes, bytes]) -> None:
    """Keep what ``obj`` was loaded from (or saved as), for a save of what changed."""
    key = id(obj)

    def gone(_: weakref.ref[Any]) -> None:
        _SNAPSHOTS.pop(key, None)

    try:
        ref = weakref.ref(obj, gone)
    except TypeError:  # a class without weakref support: always saved whole
        return
    _SNAPSHOTS[key] = (ref, stored)


def recall(obj: Any) -> dict[bytes, bytes] | None:
    found = _SNAPSHOTS.get(id(obj))
    if found is not None and found[0]() is obj:
        return found[1]
    return None


def forget(obj: Any) -> None:
    _SNAPSHOTS.pop(id(obj), None)


def _as_dict(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _may_be_empty(fields: tuple[FieldSpec, ...]) -> bool:
    for f in fields:
        if f.kind == "struct":
            if not _may_be_empty(f.children):
                return False
        elif not f.optional:
            return False
    return True


class HashLayout:
    """Commands and decoding for one model stored as hashes. Built once per model."""

    scan_type = "hash"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.delim = spec.delimiter.encode()
        self.may_be_empty = _may_be_empty(spec.fields)

    # ---- writing ------------------------------------------------------------------

    def _encode(
        self,
        fields: tuple[FieldSpec, ...],
        obj: Any,
        prefix: bytes,
        out: list[bytes],
        nones: list[bytes],
    ) -> None:
        for f in fields:
            name = prefix + f.stored.encode()
            value = getattr(obj, f.name)
            if f.kind == "struct":
                self._encode(f.children, value, name + self.delim, out, nones)
            elif value is None:
                nones.append(name)
            else:
                assert f.encode is not None
                out.append(name)
                out.append(f.encode(value))

    def encode(self, obj: Any) -> tuple[list[bytes], list[bytes]]:
        """(field, value, field, value, ...) to HSET, and the fields to HDEL."""
        out: list[bytes] = []
        nones: list[bytes] = []
        self._encode(self.spec.fields, obj, b"", out, nones)
        return out, nones

    def encode_state(self, obj: Any) -> dict[bytes, bytes]:
        """The stored fields of ``obj`` as a dict (what a tracked save compares against)."""
        pairs, _ = self.encode(obj)
        return dict(zip(pairs[::2], pairs[1::2], strict=True))

    def save(self, key: str, obj: Any, ttl_ms: int | None) -> Command:
        """One command that stores ``obj`` (already validated) whole at ``key``: HSET, or a
        script running HSET, HDEL of None fields and PEXPIRE, atomically."""
        return self.save_changes(key, obj, ttl_ms, force=True)[0]  # type: ignore[return-value]

    def save_changes(
        self, key: str, obj: Any, ttl_ms: int | None, force: bool
    ) -> tuple[Command | None, dict[bytes, bytes], bool]:
        """(the command, the stored state after it, whether it is a save of only what
        changed since ``obj`` was loaded). The command is None when nothing changed and no
        TTL is asked for. A partial save answers 0 when the object is gone meanwhile; the
        caller then saves it whole."""
        pairs, nones = self.encode(obj)
        state = dict(zip(pairs[::2], pairs[1::2], strict=True))
        snapshot = None if force or not self.spec.track_changes else recall(obj)
        if snapshot is not None and ttl_ms is not None and self.spec.indexes is None:
            snapshot = None  # the partial-save script sets no TTL: save whole
        if snapshot is not None:
            pairs = [x for f, v in state.items() if snapshot.get(f) != v for x in (f, v)]
            nones = [f for f in nones if f in snapshot]
            if not pairs and not nones and ttl_ms is None:
                return None, state, True
        indexes = self.spec.indexes
        if indexes is not None:
            return self._indexed(key, obj, pairs, nones, ttl_ms, snapshot), state, bool(snapshot)
        if snapshot is not None:
            args = [len(pairs) // 2, "1" if self.may_be_empty else "0", MARKER, *pairs, *nones]
            return _UPDATE.call([key], args), state, True
        if pairs:
            if self.may_be_empty:
                nones.append(MARKER)
        else:
            pairs = [MARKER, b""]
        if not nones and ttl_ms is None:
            return ("HSET", key, *pairs), state, False
        ttl = "" if ttl_ms is None else ttl_ms
        return _SAVE.call([key], [ttl, len(nones), *nones, *pairs]), state, False

    # ---- indexed writes -------------------------------------------------------------

    def index_keys(self, key: str) -> tuple[list[str], list[Any]]:
        """KEYS and the first ARGV of the index write script for the object at ``key``."""
        spec = self.spec
        text = spec.id_of_key(key)
        assert text is not None
        tag = spec.tag_of(text)
        root = spec.index_root(tag)
        eid = key[len(spec.object_prefix(tag)):]
        keys = [key, root + "rec", root + "all", root + "exp"]
        return keys, [eid, root, spec.delimiter, spec.object_prefix(tag)]

    def _changed(self, names: set[str]) -> str:
        indexes = self.spec.indexes
        assert indexes is not None
        names = indexes.unique_fields(list(names))
        names |= {u.name for u in indexes.uniques if names.intersection(u.fields)}
        return "\x1f".join(sorted(names))

    def _indexed(self, key: str, obj: Any, pairs: list[bytes], nones: list[bytes],
                 ttl_ms: int | None, snapshot: dict[bytes, bytes] | None) -> Command:
        indexes = self.spec.indexes
        assert indexes is not None
        values = {name: getattr(obj, name) for name in indexes.fields}
        if snapshot is None:
            mode, changed, entries = "save", "*", indexes.entries(values)
        else:
            touched = {f.name for f in self.spec.fields
                       if f.stored.encode() in set(pairs[::2]) | set(nones)}
            mode, changed = "update", self._changed(touched)
            only = set(changed.split("\x1f")) if changed else set()
            entries = indexes.entries(values, only=sorted(only))
        keys, head = self.index_keys(key)
        ttl = "" if ttl_ms is None else str(ttl_ms)
        args = [self._mode(mode), *head, ttl, changed, "\n".join(entries), len(pairs) // 2,
                *pairs, *nones]
        return WRITE.call(keys, args)

    def _mode(self, mode: str) -> str:
        return mode + ":c" if self.spec.claims else mode

    def update(self, key: str, values: Mapping[str, Any]) -> Command:
        """One script call that sets some fields if the object exists (returns 1, else 0)."""
        spec = self.spec
        pairs: list[bytes] = []
        nones: list[bytes] = []
        for name, value in values.items():
            f = spec.by_name.get(name)
            if f is None:
                raise ValidationError(f"unknown field {name!r}", model=spec.name, key=key)
            if (err := f.check(value)) is not None:
                raise ValidationError(err, model=spec.name, key=key, field=name)
            self._encode((f,), _One(f.name, value), b"", pairs, nones)
        if spec.indexes is not None:
            return self._indexed_update(key, values, pairs, nones)
        args = [len(pairs) // 2, "1" if self.may_be_empty else "0", MARKER, *pairs, *nones]
        return _UPDATE.call([key], args)

    def _indexed_update(self, key: str, values: Mapping[str, Any], pairs: list[bytes],
                        nones: list[bytes]) -> Command:
        indexes = self.spec.indexes
        assert indexes is not None
        changed = self._changed(set(values))
        need = indexes.unique_fields(list(values)) - set(values)
        if need:
            raise ValidationError(
                f"updating {sorted(values)} needs {sorted(need)} too: they are unique "
                "together", model=self.spec.name, key=key)
        only = [n for n in changed.split("\x1f") if n]
        entries = indexes.entries(dict(values), only=only)
        keys, head = self.index_keys(key)
        args = [self._mode("update"), *head, "", changed, "\n".join(entries), len(pairs) // 2,
                *pairs, *nones]
        return WRITE.call(keys, args)

    def incr(self, key: str, path: str, amount: float) -> tuple[Command, str]:
        """A script call: HINCRBY / HINCRBYFLOAT if the object exists; and the number kind."""
        chain = self.spec.path(path)
        command, arg, kind = check_increment(self.spec, key, chain, path, amount)
        name = self.delim.join(f.stored.encode() for f in chain)
        indexes = self.spec.indexes
        field = indexes.fields.get(path) if indexes is not None else None
        if field is None:
            return _INCR.call([key], ["H" + command, name, arg]), kind
        assert indexes is not None
        if indexes.unique_fields([path]) != {path} or (field.eq and kind == "float"):
            raise ValidationError(
                "a unique field, or a float with an equality index, is changed with update()",
                model=self.spec.name, key=key, field=path)
        keys, head = self.index_keys(key)
        args = ["incr", *head, "", path, "", "H" + command, name, arg, path,
                "1" if field.eq else "0", "1" if field.range else "0"]
        return WRITE.call(keys, args), kind

    def delete(self, key: str) -> Command:
        if self.spec.indexes is None:
            return ("DEL", key)
        keys, head = self.index_keys(key)
        return WRITE.call(keys, [self._mode("delete"), *head, "", "", ""])

    def expire(self, key: str, ttl_ms: int | None) -> Command:
        if self.spec.indexes is None:
            return ("PERSIST", key) if ttl_ms is None else ("PEXPIRE", key, ttl_ms)
        keys, head = self.index_keys(key)
        ttl = "persist" if ttl_ms is None else str(ttl_ms)
        return WRITE.call(keys, ["expire", *head, ttl, "", ""])

    def cas(self, target: tuple[str, bytes | None], old: bytes, new: bytes) -> Command:
        """Replace one stored value only if it is still ``old``."""
        key, field = target
        return _CAS_FIELD.call([key], [field, old, new])

    def raw_values(self, key: str, reply: Any) -> list[tuple[tuple[str, bytes | None], bytes]]:
        """Every stored value of the object with where it lives, from a :meth:`read` reply."""
        data = _as_dict(reply)
        return [((key, name), value) for name, value in data.items()]

    # ---- reading ------------------------------------------------------------------

    def read(self, key: str) -> Command:
        return ("HGETALL", key)

    def decode(self, key: str, id_text: str, reply: Any) -> Any:
        """The object from an HGETALL reply, or None if the key holds nothing."""
        if not reply:
            return None
        data = _as_dict(reply)
        spec = self.spec
        kwargs = self._decode(spec.fields, data, b"", key, "")
        kwargs[spec.key.init_name] = self._decode_id(key, id_text)
        obj = spec.cls(**kwargs)
        if spec.track_changes:
            remember(obj, data)
        return obj

    def _decode_id(self, key: str, id_text: str) -> Any:
        spec = self.spec
        assert spec.key.decode is not None
        try:
            return spec.key.decode(id_text.encode("utf-8"))
        except BadValueError as e:
            raise DecodeError(f"id: {e}", model=spec.name, key=key, field=spec.key.name) from None

    def _decode(
        self,
        fields: tuple[FieldSpec, ...],
        data: Mapping[bytes, bytes],
        prefix: bytes,
        key: str,
        path: str,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for f in fields:
            name = prefix + f.stored.encode()
            if f.kind == "struct":
                assert f.cls is not None
                sub = self._decode(f.children, data, name + self.delim, key, f"{path}{f.name}.")
                kwargs[f.init_name] = f.cls(**sub)
                continue
            raw = data.get(name)
            if raw is None:
                if f.optional:
                    kwargs[f.init_name] = None
                elif not f.has_default:
                    raise DecodeError(
                        "field is missing", model=self.spec.name, key=key, field=path + f.name
                    )
                continue
            assert f.decode is not None
            try:
                kwargs[f.init_name] = f.decode(raw)
            except BadValueError as e:
                raise DecodeError(
                    f"stored value is {e}", model=self.spec.name, key=key, field=path + f.name
                ) from None
            except DecodeError as e:
                raise e.with_context(
                    model=self.spec.name, key=key, field=path + f.name
                ) from None
        return kwargs


def check_increment(
    spec: ModelSpec, key: str, chain: tuple[FieldSpec, ...], path: str, amount: float
) -> tuple[str, str, str]:
    """("INCRBY" | "INCRBYFLOAT", amount as text, "int" | "float"), or ValidationError."""
    leaf = chain[-1]
    where = {"model": spec.name, "key": key, "field": path}
    if leaf.numeric is None or any(f.kind == "encoded" for f in chain):
        raise ValidationError("only int and float fields can be incremented", **where)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValidationError("amount must be a number", **where)
    if leaf.numeric == "int":
        if not isinstance(amount, int):
            raise ValidationError(
                f"an int field is incremented by an int, not {type(amount).__name__}", **where
            )
        return "INCRBY", str(amount), "int"
    return "INCRBYFLOAT", repr(float(amount)), "float"


class _One:
    """An object with one attribute, to encode a single field through ``_encode``."""

    def __init__(self, name: str, value: Any) -> None:
        setattr(self, name, value)
