"""The hash layout: one Redis hash per object at ``prefix:id``.

Scalars are plain Redis strings (``b"199"``), so HINCRBY and redis-cli see what users expect.
A nested attrs field is flattened into ``address:street:line1`` hash fields; an Optional
nested object, a list, a dict, a set or a field with its own codec is one hash field
encoded by the field's codec chain (json by default). ``None`` is stored as an absent field.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from redmodel._args import shown
from redmodel._errors import CodecError, DecodeError, RedmodelError, ValidationError
from redmodel._indexes._specs import SEP, IndexValueError, entry_key
from redmodel._indexes._writes import Write
from redmodel._layouts._same import same_value
from redmodel._models._compiled import FALLBACK, field_encoder, hash_decoder, hash_encoder
from redmodel._models._specs import FieldSpec, ModelSpec, increment_kind
from redmodel._models._types import BadValueError, located, optional_inner
from redmodel._plan import Command, origin, script
from redmodel.codecs._base import Codec
from redmodel.codecs._chains import stored_primitive
from redmodel.codecs._strict import upgrade_value

__all__ = ["HashLayout"]

# A hash cannot exist without fields; an object whose every field is None keeps this one.
MARKER = b"\x00"

_SAVE = script("hash_save")

_UPDATE = script("hash_update")

_CAS_FIELD = script("hash_cas_field")

CAS_STRING = script("string_cas")


Prints = dict[bytes, bytes]  # stored field name -> fingerprint of an encrypted value
# id(obj) -> (the object, its stored state, its fingerprints, the key it was loaded from or
# saved at, the client of the store that did it: None when unknown)
_SNAPSHOTS: dict[int, tuple[weakref.ref[Any], dict[bytes, bytes], Prints, str,
                            weakref.ref[Any] | None]] = {}


def remember(obj: Any, stored: dict[bytes, bytes], key: str,
             prints: Prints | None = None) -> None:
    """Keep what ``obj`` was loaded from (or saved as), for a save of what changed; with
    the fingerprints of its encrypted values (their ciphertext differs at every write, so
    it cannot tell whether the value changed), and where that is: ``key`` on the server
    of the store running now (its client: :func:`redmodel._plan.origin`). The snapshot
    describes that key of that server only: a save anywhere else is whole (:func:`recall`)."""
    ident = id(obj)

    def gone(_: weakref.ref[Any]) -> None:
        _SNAPSHOTS.pop(ident, None)

    try:
        ref = weakref.ref(obj, gone)
    except TypeError:  # a class without weakref support: always saved whole
        return
    client = origin()
    where = None
    if client is not None:
        with contextlib.suppress(TypeError):  # a client without weakrefs: unknown
            where = weakref.ref(client)
    _SNAPSHOTS[ident] = (ref, stored, prints or {}, key, where)


def recall(obj: Any, key: str | None = None) -> dict[bytes, bytes] | None:
    """The stored state ``obj`` was loaded with (or saved as), when it describes what
    ``key`` holds on the server of the store running now: loaded from (or saved at) that
    key through the same client; else None (the caller saves whole). ``key=None``: the
    snapshot wherever it was taken (tests)."""
    found = _SNAPSHOTS.get(id(obj))
    if found is None or found[0]() is not obj:
        return None
    if key is not None:
        where = found[4]
        if found[3] != key or where is None:
            return None
        client = where()
        if client is None or client is not origin():
            return None
    return found[1]


def recall_prints(obj: Any) -> Prints:
    found = _SNAPSHOTS.get(id(obj))
    if found is not None and found[0]() is obj:
        return found[2]
    return {}


def forget(obj: Any) -> None:
    _SNAPSHOTS.pop(id(obj), None)


# Stored fields an object was read with that its model does not have (removed fields, and
# values read under an old name): (ref, every such field, those read under an old name).
_STALE: dict[int, tuple[weakref.ref[Any], list[bytes], list[bytes]]] = {}


def _note_stale(obj: Any, stale: list[bytes], moved: list[bytes]) -> None:
    key = id(obj)

    def gone(_: weakref.ref[Any]) -> None:
        _STALE.pop(key, None)

    with contextlib.suppress(TypeError):  # no weakref support: the fields stay
        _STALE[key] = (weakref.ref(obj, gone), stale, moved)


_ENTRY_KEYS = 4096  # entry keys kept per layout (then forgotten at once)

_NO_STALE: tuple[list[bytes], list[bytes]] = ([], [])  # never appended to


def stale_fields(obj: Any) -> tuple[list[bytes], list[bytes]]:
    """(fields a whole save drops, fields a partial save drops) for an object read from
    stored data holding fields its model no longer has or values under old names."""
    found = _STALE.get(id(obj))
    if found is not None and found[0]() is obj:
        return found[1], found[2]
    return [], []


def stale_any() -> bool:
    """Whether some object in memory was read with fields its model no longer has."""
    return bool(_STALE)


def saved(obj: Any) -> None:
    """``obj`` was saved: what it was read with is gone (or rewritten)."""
    if _STALE:
        _STALE.pop(id(obj), None)


def _as_dict(reply: Any) -> dict[bytes, bytes]:
    """An HGETALL reply (RESP2: field, value, ...; RESP3: a dict) as a dict. Paired from
    one iterator (half the time of zipping two slices, a query reads thousands)."""
    if isinstance(reply, dict):
        return reply
    if len(reply) % 2:
        raise ValueError(f"an HGETALL reply of {len(reply)} items: not field/value pairs")
    pairs = iter(reply)
    return dict(zip(pairs, pairs, strict=False))  # the length was checked


def _has_encrypted(fields: tuple[FieldSpec, ...]) -> bool:
    return any((f.codec is not None and f.codec.encrypts) or _has_encrypted(f.children)
               for f in fields)


def _leaf_names(fields: tuple[FieldSpec, ...], prefix: bytes, delim: bytes) -> list[bytes]:
    """The stored names of every leaf (hash field) under ``prefix``."""
    out: list[bytes] = []
    for f in fields:
        name = prefix + f.stored.encode()
        if f.kind == "struct":
            out.extend(_leaf_names(f.children, name + delim, delim))
        else:
            out.append(name)
    return out


def _field_names(f: FieldSpec, prefix: bytes, delim: bytes) -> list[bytes]:
    """Every stored name of each leaf (hash field) of ``f``: under its stored name and
    under each old one (old_names= at any level of a nested object), in the order a read
    tries them per leaf (redmodel._plans._atomic._names)."""
    out: list[bytes] = []
    for name in (f.stored, *f.old_stored):
        here = prefix + name.encode()
        if f.kind == "struct":
            for c in f.children:
                out.extend(_field_names(c, here + delim, delim))
        else:
            out.append(here)
    return out


def _old_names(f: FieldSpec, delim: bytes) -> list[bytes]:
    """The stored names of ``f``'s leaves under an old name (old_names= at any level):
    what a save or an update of ``f`` removes (HDEL), so that what it writes is what is
    read (a None it writes is not read back through an old name) and an index write of
    an object without a record finds them absent."""
    now = set(_leaf_names((f,), b"", delim))
    return [n for n in dict.fromkeys(_field_names(f, b"", delim)) if n not in now]


def _old_leaf_map(fields: tuple[FieldSpec, ...], now: bytes, olds: Sequence[bytes],
                  delim: bytes, out: dict[bytes, list[bytes]]) -> None:
    """Per current stored name of each leaf under ``now`` (its old prefixes ``olds``),
    its names under an old name (old_names= at any level), in the order a read tries
    them (HashLayout._read_old: prefix by prefix, each prefix's names in turn)."""
    for f in fields:
        here = now + f.stored.encode()
        names = [p + n.encode() for p in (now, *olds) for n in (f.stored, *f.old_stored)]
        names = [n for n in names if n != here]
        if f.kind == "struct":
            _old_leaf_map(f.children, here + delim, [n + delim for n in names], delim, out)
        elif names:
            out[here] = names


def _leaf_map(fields: tuple[FieldSpec, ...], prefix: bytes, path: tuple[str, ...],
              delim: bytes, out: dict[bytes, tuple[FieldSpec, tuple[str, ...]]]) -> None:
    """Per leaf (hash field) under ``prefix``: its stored name -> (its spec, the attribute
    names leading to its value from the object)."""
    for f in fields:
        name = prefix + f.stored.encode()
        if f.kind == "struct":
            _leaf_map(f.children, name + delim, (*path, f.name), delim, out)
        else:
            out[name] = (f, (*path, f.name))


def keyed_leaves(fields: tuple[FieldSpec, ...], prefixes: Sequence[Any], delim: Any,
                 name: Callable[[str], Any], out: dict[Any, Codec]) -> None:
    """Per stored name of each leaf declared with a key-holding chain (``fernet``; nested
    classes' fields too, under their current and old names at every level), that chain:
    the values a key rotation re-encrypts (31J F2: never another field's, whatever its
    bytes start with). ``prefixes``: the names the leaves of ``fields`` start with;
    ``name``: a field's stored name as it appears there (bytes for a hash field, an
    escaped key part for a flat leaf)."""
    for f in fields:
        names = [p + name(n) for p in prefixes for n in (f.stored, *f.old_stored)]
        if f.kind == "struct":
            keyed_leaves(f.children, [n + delim for n in names], delim, name, out)
        elif f.kind == "encoded" and f.codec is not None and f.codec.holds_keys:
            for n in names:
                out.setdefault(n, f.codec)


def _renamed(fields: tuple[FieldSpec, ...]) -> bool:
    return any(f.old_stored or _renamed(f.children) for f in fields)


def _may_be_empty(fields: tuple[FieldSpec, ...]) -> bool:
    for f in fields:
        if f.kind == "struct":
            if not _may_be_empty(f.children):
                return False
        elif not f.optional:
            return False
    return True


WRITTEN: Mapping[bytes, bytes | None] = {}
"""An index write's assumption: the indexed fields hold what the write writes to them (a
blind save or update; sent as their names only, see index_lib.lua)."""


def block_size(args: Sequence[Any]) -> int:
    """The length of the assumption block at ``args[8]`` of an index write."""
    na = str(args[8])
    if na == "*":
        return 3
    if na.startswith("w"):
        return 3 + int(na[1:])
    return 3 + 3 * int(na)


def _encoded_leaves(fields: tuple[FieldSpec, ...], path: str
                    ) -> list[tuple[str, FieldSpec]]:
    """(dotted path, spec) of each codec-encoded leaf, depth first."""
    out: list[tuple[str, FieldSpec]] = []
    for f in fields:
        if f.kind == "struct":
            out += _encoded_leaves(f.children, f"{path}{f.name}.")
        elif f.kind == "encoded":
            out.append((path + f.name, f))
    return out


def codec_precheck(spec: ModelSpec) -> Callable[[str, Any], None] | None:
    """``precheck(key, obj)`` of a field-by-field layout (hash, flat): refuse, before
    anything is written, what a codec-encoded field's codec refuses of a valid object
    (a value its serializer cannot write: json's int of too many digits, a yaml or
    msgpack refusal, any exception of a codec of the application's): the error names the
    model, the key and the field (a transform's failure stays a CodecError, with them
    added). Every such leaf is encoded (the bytes are dropped: save_many checks a whole
    sequence this way before its first chunk, keeping one chunk in memory). None for a
    model without encoded fields (nothing a valid object's fields can refuse)."""
    leaves = _encoded_leaves(spec.fields, "")
    if not leaves:
        return None
    name = spec.name

    def precheck(key: str, obj: Any) -> None:
        for dotted, f in leaves:
            value = obj
            for part in dotted.split("."):
                value = getattr(value, part, None)
                if value is None:
                    break
            if value is None:
                continue
            assert f.encode is not None
            try:
                f.encode(value)
            except (CodecError, ValidationError) as e:
                raise named(e, name, key, dotted) from None
            except Exception as e:  # a codec of the application's
                raise ValidationError(
                    f"codec {f.codec.name if f.codec else '?'!r} cannot encode a value of "
                    f"type {type(value).__name__}: {type(e).__name__}", model=name,
                    key=key, field=dotted) from None

    return precheck


def named(error: RedmodelError, model: str, key: str, field: str) -> RedmodelError:
    """A codec's refusal of one field's value named by ``model``, ``key`` and ``field``:
    a ValidationError that names no key again with them, a CodecError with them added to
    its text; any other error as it is."""
    if isinstance(error, ValidationError) and error.key is None:
        return ValidationError(str(error), model=model, key=key, field=field)
    if isinstance(error, CodecError):
        return CodecError(f"{error} (model {model}, key {key!r}, field {field!r})")
    return error


def refused(precheck: Callable[[str, Any], None] | None, key: str, obj: Any,
            error: Exception) -> Exception:
    """The error of an encode that failed (``error``): the one ``precheck`` raises, which
    names the key and the field; else ``error`` itself."""
    if precheck is not None:
        try:
            precheck(key, obj)
        except RedmodelError as e:
            return e
    return error


class HashLayout:
    """Commands and decoding for one model stored as hashes. Built once per model."""

    scan_type = "hash"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.delim = spec.delimiter.encode()
        self.may_be_empty = _may_be_empty(spec.fields)
        self._constant: dict[str, list[str]] = {}  # index root -> value-free index keys
        self._entry_keys: dict[tuple[str, str], str] = {}  # (root, entry line) -> its key
        self._all_fields = frozenset(spec.indexes.fields if spec.indexes else ())
        # per indexed field, the stored names its value is read from: its stored name,
        # then its old ones (old_names=), as a read tries them (an indexed field's default
        # is never a Factory(takes_self=True): _indexes._specs refuses it)
        reads: dict[str, tuple[bytes, ...]] = {
            name: tuple(_field_names(spec.by_name[name], b"", self.delim))
            for name in sorted(self._all_fields)}
        self._indexed_stored = tuple(dict.fromkeys(n for ns in reads.values() for n in ns))
        # the stored names an index write's assumption names, per indexed field (None: the
        # model keeps records, its writes assume nothing: see _indexes/_writes.py): every
        # name its value is read from, so that the script checks each one the old entries
        # were derived from (a writer of an old name meanwhile is caught: STORED)
        self._assumed: dict[str, tuple[bytes, ...]] | None = None \
            if spec.indexes is None or spec.indexes.keeps_records else {
                name: reads[name] for name in spec.indexes.fields}
        self._written_block: list[Any] = [] if self._assumed is None else [
            f"w{len(self._indexed_stored)}", "1", "=", *self._indexed_stored]
        # the stored names of every leaf under an old name: a whole save removes them
        self._old_leaves = [n for g in spec.fields for n in _old_names(g, self.delim)]
        # per leaf that has some, its current stored name -> its old ones (a read's order):
        # a tracked partial save moves only the leaves it writes (see _partial)
        self._olds_of: dict[bytes, list[bytes]] = {}
        _old_leaf_map(spec.fields, b"", (), self.delim, self._olds_of)
        self.encrypted = _has_encrypted(spec.fields)
        # per leaf's current stored name, its spec and the attribute path to its value: a
        # tracked save compares a leaf whose bytes differ by value (_same_as_stored)
        self._leaves: dict[bytes, tuple[FieldSpec, tuple[str, ...]]] = {}
        _leaf_map(spec.fields, b"", (), self.delim, self._leaves)
        self.known = frozenset([MARKER, *_leaf_names(spec.fields, b"", self.delim)])
        self.renamed = _renamed(spec.fields)
        # per stored name of a leaf declared with a key-holding chain, the chain
        self._keyed: dict[bytes, Codec] = {}
        keyed_leaves(spec.fields, [b""], self.delim, str.encode, self._keyed)
        # generated once per model (redmodel._models._compiled): every path encodes and
        # decodes through these; the generic walks below are their reference and the
        # decode of what the fast one leaves (errors, defaults, old names, upgrades)
        self.encode = hash_encoder(spec, self.encode_generic)
        self._fast_decode = hash_decoder(spec)
        # field name -> (its check, its encoder, its leaves' old names), for update: one
        # lookup per field
        self._updaters: dict[str, tuple[Any, Any, list[bytes]]] = {}
        self._keep = "1" if self.may_be_empty else "0"  # hash_update.lua's ARGV[2]
        # what a codec-encoded field's codec refuses, named by key and field (None: the
        # model has none, save_many's up-front check has nothing more to do)
        self.precheck = codec_precheck(spec)
        # a save is one command and nothing else: no index, no snapshot to keep
        self.plain = spec.indexes is None and not spec.track_changes

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

    encode: Callable[[Any], tuple[list[bytes], list[bytes]]]
    """(field, value, field, value, ...) to HSET, and the fields to HDEL (generated)."""

    def encode_generic(self, obj: Any) -> tuple[list[bytes], list[bytes]]:
        """The reference walk of :attr:`encode` (tests compare the two)."""
        out: list[bytes] = []
        nones: list[bytes] = []
        self._encode(self.spec.fields, obj, b"", out, nones)
        return out, nones

    def encode_state(self, obj: Any) -> dict[bytes, bytes]:
        """The stored fields of ``obj`` as a dict (what a tracked save compares against)."""
        pairs, _ = self.encode(obj)
        return dict(zip(pairs[::2], pairs[1::2], strict=True))

    def _prints(self, fields: tuple[FieldSpec, ...], obj: Any, prefix: bytes, out: Prints
                ) -> None:
        for f in fields:
            name = prefix + f.stored.encode()
            value = getattr(obj, f.name)
            if f.kind == "struct":
                self._prints(f.children, value, name + self.delim, out)
            elif value is not None and f.codec is not None and f.codec.encrypts:
                out[name] = f.codec.fingerprint(optional_inner(f.type)[0])(value)

    def prints(self, obj: Any) -> Prints:
        """Fingerprints of ``obj``'s encrypted values (empty for a model without any)."""
        out: Prints = {}
        if self.encrypted:
            self._prints(self.spec.fields, obj, b"", out)
        return out

    def remember(self, obj: Any, stored: dict[bytes, bytes], key: str) -> None:
        """Keep ``obj``'s stored state at ``key`` (and its encrypted values' fingerprints)."""
        remember(obj, stored, key, self.prints(obj) if self.encrypted else None)

    def _changed_pairs(self, obj: Any, state: dict[bytes, bytes],
                       snapshot: dict[bytes, bytes]) -> list[bytes]:
        """(field, value, ...) of ``state`` whose value differs from the snapshot's: equal
        bytes are one value; other bytes are compared by value (:meth:`_same_as_stored`:
        another writer's text of an equal value is no change); an encrypted value by
        fingerprint. A leaf of equal value and other bytes gets its stored bytes in
        ``state`` (what the key still holds after the save)."""
        now, then = self.prints(obj), recall_prints(obj)
        out: list[bytes] = []
        kept: list[tuple[bytes, bytes]] = []  # same value, other bytes: not sent
        for f, v in state.items():
            if f in now:
                if now[f] == then.get(f):
                    continue
            elif (old := snapshot.get(f)) == v:
                continue
            elif self._same_as_stored(obj, f, old):
                assert old is not None
                kept.append((f, old))
                continue
            out += (f, v)
        for f, old in kept:  # the key keeps these bytes: the object remembers them
            state[f] = old
        return out

    def _same_as_stored(self, obj: Any, name: bytes, stored: bytes | None) -> bool:
        """Whether leaf ``name`` of ``obj`` holds the value its ``stored`` bytes decode to,
        exactly (redmodel._layouts._same): bytes other than this process's encoding of the
        value (a set's member order, HINCRBYFLOAT's ``1`` for ``1.0``, JSON's spacing)
        that a read gives the same value from. False when the leaf held nothing, or its
        bytes do not decode strictly (an ``upgrade=``'s value is written, as documented)."""
        found = self._leaves.get(name)
        if stored is None or found is None:
            return False
        f, path = found
        if f.decode is None:
            return False
        value = obj
        for part in path:
            value = getattr(value, part)
        try:
            then = f.decode(stored)
        except Exception:  # not this type's value (or a codec's own error): changed
            return False
        return same_value(value, then)

    def _partial(self, obj: Any, state: dict[bytes, bytes], snapshot: dict[bytes, bytes],
                 nones: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        """(field, value, ...) and the fields to remove of a tracked partial save: the
        leaves that changed since the object was loaded, compared with what it was read
        with (a leaf read under an old name: that value), and the None leaves it held a
        value for. It moves a value read under an old name only for the leaves it writes
        (their old names are removed, so what it writes is what is read); every other
        leaf stays where it is, as another writer may have changed it meanwhile (a value
        the writer did not change is never written, whatever its stored text).
        ``state`` becomes what the key holds after the save as far as this writer knows:
        a leaf not sent keeps the bytes it was read with (what the object remembers)."""
        view = snapshot
        if self._olds_of:
            view = dict(snapshot)
            for now, olds in self._olds_of.items():
                if now not in view:
                    got = next((snapshot[o] for o in olds if o in snapshot), None)
                    if got is not None:
                        view[now] = got
        pairs = self._changed_pairs(obj, state, view)
        nones = [f for f in nones if f in view and f in self.known]
        if self._olds_of:
            written = pairs[::2] + nones
            nones += [o for f in written for o in self._olds_of.get(f, ())]
        return pairs, nones

    def save(self, key: str, obj: Any, ttl_ms: int | None) -> Command | Write:
        """What stores ``obj`` (already validated) whole at ``key``: HSET, or a script
        running HSET, HDEL of None fields and PEXPIRE atomically; for an indexed model the
        index write script (a :class:`Write`)."""
        return self.save_changes(key, obj, ttl_ms, force=True)[0]

    def save_changes(
        self, key: str, obj: Any, ttl_ms: int | None, force: bool,
        entries: list[str] | None = None,
    ) -> tuple[Command | Write, dict[bytes, bytes], bool]:
        """(what to send, the stored state after it, whether it is a save of only what
        changed since ``obj`` was loaded). A partial save answers 0 when the object is gone
        meanwhile (also one with nothing changed, which sends only that check); the caller
        then saves it whole. ``entries``: the object's index entries, when the caller
        computed them already (save_many's check of its first chunk)."""
        try:
            pairs, nones = self.encode(obj)
        except RedmodelError as e:  # a codec's refusal: named by key and field
            raise refused(self.precheck, key, obj, e) from None
        if self._old_leaves:  # a value under an old name is moved (a None stays None)
            nones.extend(self._old_leaves)
        # the stored state after it: what a tracked object remembers (no one else reads it)
        state = dict(zip(pairs[::2], pairs[1::2], strict=True)) \
            if self.spec.track_changes else {}
        stale, moved = stale_fields(obj) if _STALE else _NO_STALE
        # only a snapshot of this key through this store's client describes what it holds
        snapshot = None if not self.spec.track_changes else recall(obj, key)
        indexes = self.spec.indexes
        if indexes is not None:
            return self._indexed(key, obj, pairs, nones, ttl_ms, snapshot, force,
                                 stale, moved, state, entries), state, \
                bool(snapshot) and not force
        if snapshot is not None and not force:
            pairs, nones = self._partial(obj, state, snapshot, nones)
            # hash_update.lua's ARGV[2]: whether the hash may be empty, then the TTL it
            # sets in the same script (PEXPIRE after its writes), as a whole save does
            flags = self._keep if ttl_ms is None else f"{self._keep} {ttl_ms}"
            args = [len(pairs) // 2, flags, MARKER, *pairs, *nones]
            return _UPDATE.call([key], args), state, True
        nones.extend(stale)
        return self._whole(key, pairs, nones, ttl_ms), state, False

    def save_plain(self, key: str, obj: Any, ttl_ms: int | None) -> Command:
        """:meth:`save` of a :attr:`plain` model's object (no snapshot, no index): the
        same command, without the rest of :meth:`save_changes`."""
        try:
            pairs, nones = self.encode(obj)
        except RedmodelError as e:  # a codec's refusal: named by key and field
            raise refused(self.precheck, key, obj, e) from None
        if self._old_leaves:
            nones.extend(self._old_leaves)
        if _STALE:
            nones.extend(stale_fields(obj)[0])
        return self._whole(key, pairs, nones, ttl_ms)

    def _whole(self, key: str, pairs: list[bytes], nones: list[bytes], ttl_ms: int | None
               ) -> Command:
        """HSET alone, or hash_save.lua (HSET, HDEL of ``nones``, PEXPIRE of a TTL)."""
        if pairs:
            if self.may_be_empty:
                nones.append(MARKER)
        else:
            pairs = [MARKER, b""]
        if not nones and ttl_ms is None:
            return ("HSET", key, *pairs)
        ttl = "" if ttl_ms is None else ttl_ms
        return _SAVE.call([key], [ttl, len(nones), *nones, *pairs])

    # ---- indexed writes -------------------------------------------------------------

    def index_keys(self, key: str, tag: str | None = None) -> tuple[list[str], list[Any]]:
        """KEYS and the first ARGV of the index write script for the object at ``key``;
        ``tag``: the bucket (default: the id's own; repair names the bucket whose index
        keys hold a stray id of another bucket, to forget it there and only there)."""
        spec = self.spec
        text = spec.id_of_key(key)
        assert text is not None
        if tag is None:
            tag = spec.tag_of(text)
        root = spec.index_root(tag)
        eid = key[len(spec.object_prefix(tag)):]
        # the fixed keys (FIXED_KEYS of _writes): the object, its bucket's record, all-ids
        # state, expiry set, and the all-ids pages' directory and count (ids_lib.lua)
        keys = [key, root + "rec", root + "all", root + "exp", root + "ids", root + "idn"]
        return keys, [eid, root, spec.delimiter, spec.object_prefix(tag)]

    def write(self, key: str, mode: str, ttl: str = "", changed: str = "",
              entries: Sequence[str] = (), data: Sequence[Any] = (),
              only: Sequence[str] | None = None,
              assume: Mapping[bytes, bytes | None] | None = None,
              olds: Sequence[str] | None = None, tag: str | None = None) -> Write:
        """One index write script call, declaring the keys of ``entries`` and the index
        keys whose names do not depend on a value (of every field, or of ``only``).

        A save, update, delete or expire carries an assumption (index_lib.lua, "the
        derived record"): the stored bytes of the indexed fields concerned (every one, or
        those of ``only``) the object is assumed to hold (``assume``: absent from it, or
        None, unknown) and ``olds``, the entry lines they compute to (None: ``entries``);
        ``tag`` as for :meth:`index_keys`."""
        spec = self.spec
        indexes = spec.indexes
        assert indexes is not None
        flags = ":k" if indexes.keeps_records else ""
        assumes = mode in ("save", "update", "delete", "expire")
        # the others concern every field; so does an update that gives the object an
        # expiry (it keeps a record after it, written whole: REC-CONTRACT section 1)
        concerned = only if mode == "update" and (
            ttl in ("", "persist") or indexes.keeps_records) else None
        if assumes:
            data = [*self._assumption(concerned, assume, olds), *data]
        keys, head = self.index_keys(key, tag)
        root, d, claims = head[1], spec.delimiter, spec.claims
        if only is None:
            found = self._constant.get(root)
            if found is None:
                found = self._constant[root] = indexes.constant_keys(root, d, claims)
            extra = dict.fromkeys(found)
            fields = self._all_fields
        else:
            extra = dict.fromkeys(indexes.constant_keys(root, d, claims, only))
            fields = frozenset(only)
        cache = self._entry_keys
        for line in entries:
            k = cache.get((root, line))
            if k is None:
                k = entry_key(root, d, line, claims)
                if k is None:
                    continue
                if line[0] != "r":  # an equality or unique value's key: few, and seen again
                    if len(cache) >= _ENTRY_KEYS:
                        cache.clear()
                    cache[root, line] = k
            extra[k] = None
        keys.extend(extra)
        w = Write(spec, key, keys, [mode + flags + (":c" if claims else ""), *head, ttl,
                                    changed, "\n".join(entries), *data],
                  root=root, eid=head[0], fields=fields, reader=self)
        if self._assumed is not None:
            w.derive = lambda stored: self.derive(stored, key)
            w.stored_names = self._indexed_stored
            if assumes:
                w.assumed = None if concerned is None else frozenset(concerned)
                w.restate = self.restate
            elif mode == "incr":
                w.lister = lambda: self.listing(key, tag)
        return w

    def listing(self, key: str, tag: str | None = None) -> Write:
        """The write that indexes an object without a record missing from the all-ids
        pages (stored by a version of the model without an index) as its stored fields
        compute to, changing none of them: an update of no field assuming every indexed
        field unknown (the script answers their bytes, STORED, then writes every entry
        and the id). An increment of such an object answers UNLISTED and is sent again
        after it (lua/index_write.lua)."""
        w = self.write(key, "update", "", "", (), [0], only=None, assume=None, tag=tag)
        w.assumed = None
        return w

    def _assumption(self, only: Sequence[str] | None,
                    assume: Mapping[bytes, bytes | None] | None,
                    olds: Sequence[str] | None, full: bool | None = None) -> list[Any]:
        """An index write's assumption block (see :meth:`write`); ``full``: it names every
        indexed field (default: ``only`` is None)."""
        if self._assumed is None:
            return [0, "0", ""]
        names = self._indexed_stored if only is None else list(dict.fromkeys(
            x for n in only if n in self._assumed for x in self._assumed[n]))
        if assume is WRITTEN:  # what the write writes (the script reads its pairs)
            if only is None:
                return self._written_block
            return [f"w{len(names)}", "0", "=" if olds is None else "\n".join(olds), *names]
        out: list[Any] = [0, "1" if (only is None if full is None else full) else "0",
                          "=" if olds is None else "\n".join(olds)]
        n = 0
        for name in names:
            n += 1
            if assume is None:
                out += [name, "?", ""]
            else:
                raw = assume.get(name)
                out += [name, "0", ""] if raw is None else [name, "1", raw]
        out[0] = n
        return out

    def derive(self, stored: Mapping[bytes, bytes | None], key: str) -> list[str]:
        """The entry lines of the indexed fields' stored bytes (an object without a
        record is indexed as its fields compute to; [] when one does not decode)."""
        values = self.stored_values({k: v for k, v in stored.items() if v is not None}, key)
        assert self.spec.indexes is not None
        return [] if values is None else self.spec.indexes.entries(values, problems=[])

    def restate(self, w: Write, stored: Mapping[bytes, bytes | None] | None,
                trusted: bool = False,
                lines: Sequence[str] | None = None, full: bool = False,
                fresh: bool = False, unknown: Collection[bytes] = ()) -> None:
        """Make ``w`` assume ``stored`` (the indexed fields' bytes as a STORED answer or a
        transaction's WATCHed read gave them) and the entry lines they compute to (or
        ``lines``), and declare those lines' keys. ``trusted``: the lines are taken as
        sent (a transaction's later write of the object: see index_lib.lua). ``fresh``: the
        object may not be indexed at all yet (all its entries and its place among all the
        ids are written). ``unknown``: stored fields whose bytes are not known (range-only
        scores an increment of the transaction moved): not assumed, their old entry named
        with any value (a range entry is removed by id)."""
        only = None if w.assumed is None else sorted(w.assumed)
        if stored is None:  # unknown: the script answers what they are (STORED)
            block = self._assumption(only, None, [], only is None)
            w.args[8:8 + block_size(w.args)] = block
            return
        if lines is None:
            known = {k: v for k, v in stored.items() if v is not None and k not in unknown}
            assert self.spec.indexes is not None and self._assumed is not None
            of = only
            if unknown:  # (their lines are named below, with any value)
                of = [n for n in (self.spec.indexes.fields if only is None else only)
                      if self._assumed[n][0] not in unknown]
            values = self.stored_values(known, w.key, of)
            lines = [] if values is None else \
                self.spec.indexes.entries(values, only=of, problems=[])
        block = self._assumption(only, stored, lines, full or only is None)
        if unknown:
            assert self._assumed is not None
            names = {v[0]: k for k, v in self._assumed.items()}
            keep = [block[i:i + 3] for i in range(3, len(block), 3)
                    if block[i] not in unknown]
            block = [len(keep), block[1], "\n".join(
                [*lines, *(f"r{SEP}{names[u]}{SEP}*" for u in sorted(unknown) if u in names)]),
                *(x for t in keep for x in t)]
        if trusted:
            block = block[:3]
            block[0] = "*"
        if fresh:
            block[1] = "n"
        w.args[8:8 + block_size(w.args)] = block
        w.declare_lines(lines)

    def entries(self, key: str, values: dict[str, Any], only: Sequence[str] | None = None
                ) -> list[str]:
        """The index entries of these values; ValidationError (naming model, key and
        field) for a value no index can hold."""
        indexes = self.spec.indexes
        assert indexes is not None
        try:
            return indexes.entries(values, only=only)
        except IndexValueError as e:
            raise ValidationError(e.reason, model=self.spec.name, key=key,
                                  field=e.field) from None

    def stored_values(self, stored: Mapping[bytes, bytes], key: str,
                      only: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The indexed fields' values in a stored state (HGETALL reply, snapshot, the
        bytes of the names an assumption reads) of the object at ``key``, as a read of it
        gives them (what reindex, build_index and verify index): the value under its
        stored name, else under the first old name holding one (old_names=); a value that
        does not decode strictly through ``upgrade=``; a field stored nowhere, None when
        it is optional, else its default (a Factory's value).
        None when one does not decode (nor upgrade), or is required and stored nowhere:
        a read of the object fails, so it has no entries. ``only``: of these fields only
        (an assumption of some fields names only theirs)."""
        indexes = self.spec.indexes
        assert indexes is not None
        values: dict[str, Any] = {}
        for name in indexes.fields if only is None else only:
            f = self.spec.by_name[name]
            try:
                values[name] = self._stored_value(f, stored, key)
            except (BadValueError, DecodeError):
                return None
        return values

    def _stored_value(self, f: FieldSpec, stored: Mapping[bytes, bytes], key: str) -> Any:
        """One field's value in ``stored`` (see :meth:`stored_values`); BadValueError or
        DecodeError when it does not decode."""
        if f.kind == "struct":  # (not indexable; read as get reads it)
            sub = self._decode((f,), stored, b"", key, "", [] if self.renamed else None)
            return sub[f.init_name]
        raw = stored.get(f.stored.encode())
        for old in f.old_stored if raw is None else ():
            raw = stored.get(old.encode())  # the first old name holding one
            if raw is not None:
                break
        if raw is None:
            if f.optional:
                return None
            if not f.has_default:
                raise BadValueError("missing")
            factory: Any = attrs.Factory
            if isinstance(f.default, factory):
                assert not f.default.takes_self  # (refused for an indexed field)
                return f.default.factory()
            return f.default
        assert f.decode is not None
        try:
            return f.decode(raw)
        except (BadValueError, DecodeError):
            if f.upgrade is None:
                raise
            return self._upgrade(f, raw, key, "")

    def indexed_state(self, reply: Any) -> list[Any]:
        """The stored fields the indexed values decode from (every indexed field's stored
        name and its old names), as ``n, (field, '1' | '0' present, text) * n`` from a
        :meth:`read` reply: what a reindex write checks the object still holds."""
        indexes = self.spec.indexes
        assert indexes is not None
        data = _as_dict(reply)
        names: list[bytes] = []
        for name in indexes.fields:
            f = self.spec.by_name[name]
            names.append(f.stored.encode())
            names.extend(old.encode() for old in f.old_stored)
        out: list[Any] = [len(names)]
        for n in names:
            raw = data.get(n)
            out += [n, "0", ""] if raw is None else [n, "1", raw]
        return out

    def stored_entries(self, stored: Mapping[bytes, bytes], key: str) -> list[str]:
        """The entries a stored state has (what it was indexed as when it was written)."""
        values = self.stored_values(stored, key)
        if values is None:
            return []
        assert self.spec.indexes is not None
        return self.spec.indexes.entries(values, problems=[])

    def _changed(self, names: set[str]) -> str:
        indexes = self.spec.indexes
        assert indexes is not None
        names = indexes.unique_fields(list(names))
        names |= {u.name for u in indexes.uniques if names.intersection(u.fields)}
        return "\x1f".join(sorted(names))

    def _indexed(self, key: str, obj: Any, pairs: list[bytes], nones: list[bytes],
                 ttl_ms: int | None, snapshot: dict[bytes, bytes] | None, force: bool,
                 stale: Sequence[bytes], moved: Sequence[bytes], state: dict[bytes, bytes],
                 entries: list[str] | None) -> Write:
        indexes = self.spec.indexes
        assert indexes is not None
        values = {name: getattr(obj, name) for name in indexes.fields}
        ttl = "" if ttl_ms is None else str(ttl_ms)
        shifted = snapshot is not None and self._index_moved(state, snapshot)
        if snapshot is None or force:
            # assumed: the snapshot's fields when loaded (their own lines if they differ
            # from what this save writes), else the ones it writes now (a re-save of
            # unchanged indexed values costs no round trip)
            assume: Mapping[bytes, bytes | None] | None = \
                snapshot if snapshot is not None else WRITTEN
            olds = self._olds(snapshot, None, key) if shifted else None
            if shifted and olds is None:
                assume = None  # a snapshot that does not decode: unknown
            w = self.write(key, "save", ttl, "*",
                           self.entries(key, values) if entries is None else entries,
                           [len(pairs) // 2, *pairs, *nones, *stale], assume=assume,
                           olds=olds)
            w.written = (pairs, nones, True)
        else:
            pairs, nones = self._partial(obj, state, snapshot, nones)
            written = set(pairs[::2]) | set(nones)
            touched = {f.name for f in self.spec.fields if f.stored.encode() in written}
            changed = self._changed(touched)
            only = sorted(n for n in changed.split("\x1f") if n in indexes.fields)
            # with a TTL the assumption names every indexed field (see write): its lines
            # are the snapshot's, always sent
            whole = ttl != "" and not indexes.keeps_records
            olds = self._olds(snapshot, None if whole else only, key) if shifted or whole \
                else None
            w = self.write(key, "update", ttl, changed, self.entries(key, values, only),
                           [len(pairs) // 2, *pairs, *nones], only=only,
                           assume=None if (shifted or whole) and olds is None else snapshot,
                           olds=olds)
            w.written = (pairs, nones, False)
        if snapshot is not None and shifted:
            w.declare_lines(self.stored_entries(snapshot, key))
        w.values = values
        return w

    def save_stored(self, key: str, pairs: Sequence[bytes], values: dict[str, Any],
                    ttl_ms: int | None) -> Write:
        """The index write of a whole save of stored bytes (``pairs``: field, value, ...,
        as an export kept them, encrypted values as written) whose indexed fields hold
        ``values``: the pairs are written as given, the entries are those of ``values``
        (an import of values kept encrypted: redmodel.cli._import)."""
        ttl = "" if ttl_ms is None else str(ttl_ms)
        pairs = list(pairs)
        w = self.write(key, "save", ttl, "*", self.entries(key, values),
                       [len(pairs) // 2, *pairs], assume=WRITTEN, olds=None)
        w.written = (pairs, [], True)
        w.values = values
        return w

    def _olds(self, snapshot: Mapping[bytes, bytes] | None, only: Sequence[str] | None,
              key: str) -> list[str] | None:
        """The entry lines of a snapshot (of ``only``), as the object was indexed when it
        was loaded; None (assume unknown) when it does not decode."""
        if snapshot is None or self._assumed is None:
            return None
        values = self.stored_values(snapshot, key, only)
        assert self.spec.indexes is not None
        if values is None:
            return None
        return self.spec.indexes.entries(values, only=only, problems=[])

    def _index_moved(self, state: Mapping[bytes, bytes], snapshot: Mapping[bytes, bytes]
                     ) -> bool:
        """Whether the entries the snapshot was indexed as may differ from the ones this
        state gives (whose keys the write declares already): some indexed field's stored
        bytes differ. Equal bytes decode to equal values, whose entries are equal (an
        encrypted value's bytes differ at every save: always moved)."""
        return any(state.get(stored) != snapshot.get(stored) for stored in self._indexed_stored)

    def update(self, key: str, values: Mapping[str, Any]) -> Command | Write:
        """One script call that sets some fields if the object exists (returns 1, else 0)."""
        spec = self.spec
        pairs: list[bytes] = []
        nones: list[bytes] = []
        updaters = self._updaters
        for name, value in values.items():
            found = updaters.get(name)
            if found is None:
                f = spec.by_name.get(name)
                if f is None:
                    raise ValidationError(f"unknown field {name!r}", model=spec.name, key=key)
                found = updaters[name] = (f.check, field_encoder(spec, f),
                                          _old_names(f, self.delim))
            check, enc, olds = found
            if (err := check(value)) is not None:
                raise ValidationError(located(err, f"{spec.name}.{name}"),
                                      model=spec.name, key=key, field=name)
            try:
                enc(value, pairs, nones)
            except RedmodelError as e:  # a codec's refusal: named by key and field
                error = named(e, spec.name, key, name)
                if error is e:
                    raise
                raise error from None
            if olds:  # moved, as a save moves it (what it writes is what is read)
                nones.extend(olds)
        if spec.indexes is not None:
            return self._indexed_update(key, values, pairs, nones)
        # _UPDATE.call([key], [len(pairs) // 2, keep, MARKER, *pairs, *nones]), built at once
        return ("EVALSHA", _UPDATE.sha, 1, key, len(pairs) // 2, self._keep, MARKER, *pairs,
                *nones)

    def _indexed_update(self, key: str, values: Mapping[str, Any], pairs: list[bytes],
                        nones: list[bytes]) -> Write:
        indexes = self.spec.indexes
        assert indexes is not None
        changed = self._changed(set(values))
        need = indexes.unique_fields(list(values)) - set(values)
        if need:
            raise ValidationError(
                f"updating {sorted(values)} needs {sorted(need)} too: they are unique "
                "together", model=self.spec.name, key=key)
        only = sorted(n for n in changed.split("\x1f") if n in indexes.fields)
        entries = self.entries(key, dict(values), only)
        w = self.write(key, "update", "", changed, entries,
                       [len(pairs) // 2, *pairs, *nones], only=only, assume=WRITTEN)
        w.written = (pairs, nones, False)
        if self._assumed is not None and only and all(
                self._range_only(n) for n in only):
            # an update of range-only fields by id (its value usually changes): their
            # old entries' values do not matter (ZREM by id), so it assumes nothing and
            # stays one round trip: the script removes and adds them
            w.args[8:8 + block_size(w.args)] = ["*", "0", "\n".join(
                f"r{SEP}{n}{SEP}*" for n in only)]
        w.values = {n: v for n, v in values.items() if n in indexes.fields}
        return w

    def _range_only(self, name: str) -> bool:
        """An indexed field whose only entry is its range score (no equality index, in no
        unique constraint): its old entry is removed by id whatever its value."""
        indexes = self.spec.indexes
        assert indexes is not None
        f = indexes.fields[name]
        return f.range and not f.eq and not any(name in u.fields for u in indexes.uniques)

    def delete(self, key: str) -> Command | Write:
        if self.spec.indexes is None:
            return ("DEL", key)
        return self.write(key, "delete")

    def expire(self, key: str, ttl_ms: int | None) -> Command | Write:
        if self.spec.indexes is None:
            return ("PERSIST", key) if ttl_ms is None else ("PEXPIRE", key, ttl_ms)
        w = self.write(key, "expire", "persist" if ttl_ms is None else str(ttl_ms), only=[])
        return w

    def cas(self, target: tuple[str, bytes | None], old: bytes, new: bytes) -> Command:
        """Replace one stored value only if it is still ``old``."""
        key, field = target
        return _CAS_FIELD.call([key], [field, old, new])

    def check_readable(self, key: str, id_text: str, reply: Any) -> None:
        """Raise DecodeError naming the key if this stored object cannot be read as ``get``
        reads it (what a rotation checks before it rewrites a page)."""
        self.decode(key, id_text, reply)

    def keyed_values(self, key: str, reply: Any
                     ) -> list[tuple[tuple[str, bytes | None], bytes, Codec]]:
        """The stored values of the fields declared with a key-holding chain, each with
        where it lives and its field's chain, from a :meth:`read` reply: what a key
        rotation re-encrypts. Fields are matched by stored name (nested ones, old names
        too); any other field's value is left alone, whatever its bytes start with."""
        if not self._keyed:
            return []
        out: list[tuple[tuple[str, bytes | None], bytes, Codec]] = []
        for name, value in _as_dict(reply).items():
            raw = name if isinstance(name, bytes) else str(name).encode(
                "utf-8", "surrogateescape")
            chain = self._keyed.get(raw)
            if chain is not None:
                out.append(((key, name), value, chain))
        return out

    # ---- reading ------------------------------------------------------------------

    def read(self, key: str) -> Command:
        return ("HGETALL", key)

    def decode(self, key: str, id_text: str, reply: Any) -> Any:
        """The object from an HGETALL reply, or None if the key holds nothing."""
        if not reply:
            return None
        data = _as_dict(reply)
        spec = self.spec
        # a name the model does not store (a removed field, or one whose shape changed:
        # a value where a nested object is now stored field by field, or the reverse)
        # goes by the generic decode, which tells the two apart (33A F5)
        if self._fast_decode is not None and self.known.issuperset(data):
            obj = self._fast_decode(data, id_text)
            if obj is not FALLBACK:
                if spec.track_changes:
                    self.remember(obj, data, key)
                return obj
        return self.decode_generic(key, id_text, data)

    def decode_many(self, part: Sequence[tuple[str, str]], replies: Sequence[Any]
                    ) -> list[Any]:
        """:meth:`decode` of each (key, id text) of ``part`` and its HGETALL reply (a
        get_many chunk): a RESP3 reply holding only the model's fields goes straight to
        the generated decoder, whatever that does not decode goes by :meth:`decode`."""
        fast = self._fast_decode
        if fast is None or self.spec.track_changes:
            decode = self.decode
            return [decode(k, t, r) for (k, t), r in zip(part, replies, strict=True)]
        known = self.known.issuperset
        out: list[Any] = []
        for (k, t), r in zip(part, replies, strict=True):
            if r.__class__ is dict and r:
                obj = fast(r, t)
                if obj is not FALLBACK and known(r):
                    out.append(obj)
                    continue
            out.append(self.decode(k, t, r))
        return out

    def decode_generic(self, key: str, id_text: str, data: dict[bytes, bytes]) -> Any:
        """The reference decode (and the one of what the generated decoder leaves)."""
        spec = self.spec
        moved: list[bytes] | None = [] if self.renamed else None
        kwargs = self._decode(spec.fields, data, b"", key, "", moved)
        kwargs[spec.key.init_name] = self._decode_id(key, id_text)
        obj = spec.cls(**kwargs)
        if spec.track_changes:
            self.remember(obj, data, key)
        if moved or not self.known.issuperset(data):
            _note_stale(obj, [f for f in data if f not in self.known], moved or [])
        return obj

    def _decode_id(self, key: str, id_text: str) -> Any:
        spec = self.spec
        assert spec.key.decode is not None
        try:
            return spec.key.decode(id_text.encode("utf-8", "surrogateescape"))
        except BadValueError as e:
            raise DecodeError(f"id: {e}", model=spec.name, key=key, field=spec.key.name) from None

    def _decode(
        self,
        fields: tuple[FieldSpec, ...],
        data: Mapping[bytes, bytes],
        prefix: bytes | Sequence[bytes],
        key: str,
        path: str,
        moved: list[bytes] | None,
    ) -> dict[str, Any]:
        """The constructor's keyword arguments of ``fields`` read from ``data`` under
        ``prefix``: one, or (inside a renamed nested object) the prefixes its leaves may
        be stored under, the current one first. Each leaf is read on its own (the current
        stored name wins, else the first old one holding a value, in the order
        redmodel._plans._atomic._names gives): an increment moves one leaf of a renamed
        nested object, and the others stay readable. ``moved``: the stored names read
        under an old name (None: the model renames nothing)."""
        prefixes = (prefix,) if isinstance(prefix, bytes) else prefix
        kwargs: dict[str, Any] = {}
        heads: set[bytes] | None = None  # the names under prefixes[0] holding leaves
        for f in fields:
            if f.kind == "struct":
                assert f.cls is not None
                if any(p + n.encode() in data for p in prefixes
                       for n in (f.stored, *f.old_stored)):
                    # one value where the class is stored field by field: the field's
                    # type changed (a str, a list, an object stored whole); its leaves
                    # would all be missing and the object made of defaults (33A F5)
                    raise DecodeError(
                        f"stored value is one value, where the nested {f.cls.__name__} "
                        "is stored field by field (the field's type changed?)",
                        model=self.spec.name, key=key, field=path + f.name)
                subs = [p + n.encode() + self.delim for p in prefixes
                        for n in (f.stored, *f.old_stored)]
                sub = self._decode(f.children, data, subs[0] if len(subs) == 1 else subs,
                                   key, f"{path}{f.name}.", moved)
                kwargs[f.init_name] = f.cls(**sub)
                continue
            name = prefixes[0] + f.stored.encode()
            raw = data.get(name)
            if raw is None and moved is not None and (f.old_stored or len(prefixes) > 1):
                raw = self._read_old(f, data, prefixes, moved)
            if raw is None:
                if heads is None:
                    heads = self._heads(data, prefixes[0])
                if f.stored.encode() in heads:
                    # no value, but leaves under its name: a nested object stored field
                    # by field before its type changed (to Optional, a list, a scalar)
                    raise DecodeError(
                        "stored value is a nested object stored field by field, where "
                        "one value is declared (the field's type changed?)",
                        model=self.spec.name, key=key, field=path + f.name)
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
                if f.upgrade is None:
                    raise DecodeError(
                        f"stored value is {e}", model=self.spec.name, key=key,
                        field=path + f.name) from None
                kwargs[f.init_name] = self._upgrade(f, raw, key, path)
            except DecodeError as e:
                if f.upgrade is None:
                    inner = f"{path}{f.name}.{e.field}" if e.field else path + f.name
                    raise DecodeError(e.reason, model=self.spec.name, key=key, field=inner,
                                      codec=e.codec) from None
                kwargs[f.init_name] = self._upgrade(f, raw, key, path)
        return kwargs

    def _heads(self, data: Mapping[bytes, bytes], prefix: bytes) -> set[bytes]:
        """The first name after ``prefix`` of every stored name below it that holds a
        leaf of a nested object (``address`` of ``address:street``)."""
        delim, n = self.delim, len(prefix)
        return {k[n:].split(delim, 1)[0] for k in data
                if k.startswith(prefix) and delim in k[n:]}

    def _read_old(self, f: FieldSpec, data: Mapping[bytes, bytes], prefixes: Sequence[bytes],
                  moved: list[bytes]) -> bytes | None:
        """A leaf's value under an old name (the current one holds none): the first of its
        names after the current one that holds one, noted in ``moved``."""
        first = True
        for p in prefixes:
            for n in (f.stored, *f.old_stored):
                if first:
                    first = False
                    continue
                name = p + n.encode()
                raw = data.get(name)
                if raw is not None:
                    moved.append(name)
                    return raw
        return None

    def _upgrade(self, f: FieldSpec, raw: bytes, key: str, path: str) -> Any:
        """``f.upgrade`` of a stored value that does not decode strictly: the text of a
        plain string, the serializer's primitive of an encoded value (whichever the field
        was before)."""
        assert f.upgrade is not None
        where = {"model": self.spec.name, "key": key, "field": path + f.name}
        try:
            return upgrade_value(f.upgrade, stored_primitive(raw), f.check)
        except DecodeError as e:
            raise e.with_context(**where) from None


def check_increment(
    spec: ModelSpec, key: str, chain: tuple[FieldSpec, ...], path: str, amount: float
) -> tuple[str, str, str]:
    """("INCRBY" | "INCRBYFLOAT", amount as text, "int" | "float"), or ValidationError."""
    where = {"model": spec.name, "key": key, "field": path}
    kind = increment_kind(chain)
    if kind is None:
        raise ValidationError("only int and float fields can be incremented", **where)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValidationError("amount must be a number", **where)
    if kind == "int":
        if not isinstance(amount, int):
            raise ValidationError(
                f"an int field is incremented by an int, not {type(amount).__name__}", **where
            )
        return "INCRBY", int_text(amount, "amount", where), "int"
    return "INCRBYFLOAT", float_text(amount, "amount", where), "float"


INT64 = (-(2**63), 2**63 - 1)


def int_text(value: int, what: str, where: dict[str, Any]) -> str:
    """An int's exact text, or ValidationError when it does not fit a 64-bit counter."""
    if not INT64[0] <= value <= INT64[1]:
        raise ValidationError(f"{what} {shown(value)} does not fit a 64-bit integer (Redis' "
                              "counters)", **where)
    return str(int(value))


def float_text(value: float, what: str, where: dict[str, Any]) -> str:
    """A finite number's shortest exact text, or ValidationError (NaN, infinite)."""
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise ValidationError(f"{what} must be a finite number, got {shown(value)}", **where)
    if isinstance(value, int) and f != value:
        raise ValidationError(f"{what} {shown(value)} has no exact float (beyond 2**53 only some "
                              "ints do)", **where)
    return repr(f)
