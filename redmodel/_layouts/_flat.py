"""The flat layout: one string key per leaf, ``prefix:id:address:street:line1``.

The object's own key ``prefix:id`` is its manifest: line one is the tree's skeleton (JSON:
``1`` for a leaf, ``null`` for None, ``{...}`` for an object, ``["l", [...]]`` for a
sequence, ``["d", [[key, ...], ...]]`` for a dict), the other lines the leaf key suffixes in
skeleton order. One GET of the manifest says exactly which keys exist, so a read needs no
SCAN, a save can delete leaves that no longer exist, and a delete removes every leaf.

Save, get, delete and expiry are each one Lua script: atomic, one round trip. Every key a
script touches is in its KEYS (Redis' scripting contract, which proxies and clusters rely
on): the client declares the leaves it can name (those of the object it saves, and every
leaf the model's shape fixes: fields of nested classes, not the items of lists and
dicts); a script whose manifest names a leaf that was not declared answers
``{'KEYS', missing...}`` without touching anything, and the plan sends it again with them
(one more round trip, only then: :func:`read_batch`, and ``run_writes`` for the
:class:`FlatWrite` s). Inside a transaction a write first reads the manifest (WATCHing it)
and declares its leaves, as there is no second try after EXEC.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import attrs

from redmodel._errors import (
    ConditionFailedError,
    ConflictError,
    DecodeError,
    NotFoundError,
    RedmodelError,
    ServerError,
    ValidationError,
)
from redmodel._indexes._writes import KEY_ROUNDS, Write, needed_keys, refusal, status
from redmodel._layouts._hash import (
    CAS_STRING,
    check_increment,
    codec_precheck,
    keyed_leaves,
    refused,
)
from redmodel._models._compiled import build
from redmodel._models._keys import escape, unescape
from redmodel._models._specs import FieldSpec, ModelSpec
from redmodel._models._tree import _set_key, _stored_name, make_tree_converter, structure_error
from redmodel._models._types import ID_STR, BadValueError, optional_inner, scalar
from redmodel._plan import Batch, Command, LuaScript, Plan, script
from redmodel.codecs._base import Codec
from redmodel.codecs._strict import field_names

__all__ = ["FlatLayout", "FlatWrite", "read_batch", "send_write"]

_SAVE = script("flat_save")

_SAVE_MANY = script("flat_save_many")

_GET = script("flat_get")

_DELETE = script("flat_delete")

_EXPIRE = script("flat_expire")

_INCR = script("flat_incr")

_CONVERTER = make_tree_converter()

_READS = frozenset({_GET.sha})

_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps makes one per call otherwise

_WRONGTYPE = (b"WRONGTYPE", "WRONGTYPE")  # the read script's answer for a key of another type

_MAX_SHAPES = 64  # manifests (object shapes) remembered per model for the generated code


@attrs.define(eq=False)
class FlatWrite(Write):
    """One call of a flat write script (save, delete, expiry) for the object at ``key``:
    the manifest, then the leaves declared; more are declared when the script asks, or
    (in a transaction) from the manifest read first. ``run_writes`` drives it."""

    lua: LuaScript = attrs.field(kw_only=True)

    def command(self) -> Command:
        return self.lua.call(self.keys, self.args)

    def prefetch(self) -> Command:
        return ("GET", self.key)

    def declare_read(self, raw: Any) -> None:
        self.declare(manifest_leaves(self.key, self.spec.delimiter, raw))

    def touched(self) -> list[str]:
        return self.keys[1:]

    def group(self) -> tuple[str, ...] | None:
        """Saves go together when their keys share a slot: the objects of one hash tag,
        or those without one (all in one slot only on a single server; a cluster refuses
        them, as it refuses each of their saves: the flat layout needs hash_tag=True
        there)."""
        if self.lua is not _SAVE:
            return None
        return ("flat save", _tag(self.key))

    def many(self, writes: Sequence[Write]) -> Command:
        """One call of flat_save_many.lua for these saves (each with its own keys). What
        many objects share (ttl, delimiter, manifest, number of leaves and of keys: their
        shape) is sent once, each object naming its shape. Saves of one model share no key unless
        they share their manifest (an escaped id holds no delimiter); of several models
        they may (prefixes `a` and `a:b`), and the script is told to follow every key."""
        spec = self.spec
        keys: list[str] = []
        shapes: dict[tuple[Any, ...], int] = {}
        table: list[Any] = []
        each: list[Any] = []
        for w in writes:
            a = w.args
            shape = (a[0], a[1], a[2], len(a) - 3, len(w.keys))
            at = shapes.get(shape)
            if at is None:
                at = shapes[shape] = len(shapes) + 1
                table += shape
            keys += w.keys
            each += [at, *a[3:]]
        return _SAVE_MANY.call(keys, [len(writes),
                                      "0" if all(w.spec is spec for w in writes) else "1",
                                      len(shapes), *table, *each])


def _tag(key: str) -> str:
    """The hash tag a key's slot is computed from ('' for none)."""
    if "{" in key:
        start = key.find("{")
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return ""


_UNSENT: Any = object()  # send_write's ``first``: nothing sent yet


def write_batch(w: FlatWrite, fragile: bool) -> Batch:
    """The batch that sends ``w`` once (:func:`send_write`)."""
    return Batch([w.command()], write=True, idempotent=True, keys=(w.key,),
                 fragile=fragile)


def send_write(w: FlatWrite, what: str, fragile: bool = False,
               first: Any = _UNSENT) -> Plan[Any]:
    """One flat write outside a transaction (what ``run_writes`` does for it, without
    its batching): sent, and sent again with the leaves it asks for, at most KEY_ROUNDS
    times more; its reply, or its refusal raised (a ConflictError when it kept asking).
    ``fragile``: see :attr:`Batch.fragile`. ``first``: the reply of its first send
    (:func:`write_batch`), when the caller sent it (a store's single call,
    redmodel._plans._single): the plan goes on from that reply."""
    reply: Any = None
    for n in range(KEY_ROUNDS + 1):
        reply = (yield write_batch(w, fragile))[0] if n or first is _UNSENT else first
        need = needed_keys(reply)
        if need is None or not w.declare(need):
            break
    error = refusal(w.spec, w.key, reply, what)
    if error is not None:
        raise error
    return reply


def manifest_leaves(key: str, delim: str, manifest: Any) -> list[str]:
    """The leaf keys a manifest names (none for a missing one)."""
    if not manifest:
        return []
    text = manifest.decode("utf-8", "surrogateescape") if isinstance(manifest, bytes) \
        else str(manifest)
    return [key + delim + line for line in text.split("\n")[1:] if line]


def _with_keys(command: Command, more: list[str]) -> Command:
    """A script call with ``more`` keys declared after its own."""
    n = int(command[2])
    return (command[0], command[1], n + len(more), *command[3 : 3 + n], *more,
            *command[3 + n :])


def read_batch(batch: Batch, first: list[Any] | None = None) -> Plan[list[Any]]:
    """Send a batch of reads; a flat read whose manifest names leaves it did not declare
    (it answers ``{'KEYS', missing...}`` and reads nothing) is sent again with them, all
    such reads in one more round trip. Other commands are sent once, as they are.
    ``first``: the batch's replies, when the caller sent it (a store's single call,
    redmodel._plans._single): the plan goes on from them."""
    commands = list(batch.commands)
    replies = list((yield batch) if first is None else first)
    todo = list(range(len(commands)))
    for _ in range(KEY_ROUNDS):
        again = []
        for i in todo:
            need = needed_keys(replies[i]) if _is_flat_read(commands[i]) else None
            if need:
                commands[i] = _with_keys(commands[i], need)
                again.append(i)
        if not again:
            return replies
        more = yield attrs.evolve(batch, commands=[commands[i] for i in again])
        for i, reply in zip(again, more, strict=True):
            replies[i] = reply
        todo = again
    key = str(commands[todo[0]][3])
    raise ConflictError(f"get {key}: the leaves of {key} kept changing while it was being "
                        "read (concurrent saves)", attempts=KEY_ROUNDS, keys=(key,))


def _is_flat_read(command: Command) -> bool:
    return len(command) > 1 and command[0] == "EVALSHA" and command[1] in _READS


class FlatLayout:
    """Commands and decoding for one model stored as flat keys. Built once per model."""

    scan_type = "string"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.delim = spec.delimiter
        self.unstructure = _CONVERTER.get_unstructure_hook(spec.cls)
        self.structure = _CONVERTER.get_structure_hook(spec.cls)
        key_attr = next(f for f in attrs.fields(spec.cls) if f.name == spec.key.name)
        opts = key_attr.metadata.get("redmodel")
        self.key_name = getattr(opts, "name", None) or key_attr.name
        self.fixed = [p for p in self._fixed_leaves(spec.cls, "") if p != self.key_name]
        self._fixed_keys = [self.delim + p for p in self.fixed]
        try:
            self._encode: Callable[[Any, list[bytes]], int | None] | None = _encoder(
                spec.cls, spec.key.name)
        except _Decline:
            self._encode = None
        # what a codec-encoded field's codec refuses, named by key and field (None: the
        # model has none)
        self.precheck = codec_precheck(spec)
        # shape number -> (manifest, its leaf key suffixes, the other fixed ones)
        self._shapes: dict[int, tuple[str, list[str]]] = {}
        # the manifest a read expects (the last one read), its leaves', the other fixed
        # ones' suffixes: the read script answers with one MGET when it is the stored one
        self._expect: tuple[bytes, list[str], list[str]] | None = None
        # manifest -> (generated decode, number of values) or None (the generic decode)
        self._readers: dict[bytes, tuple[Callable[..., Any], int] | None] = {}
        # per key suffix of a leaf declared with a key-holding chain, the chain (built
        # on the first rotation)
        self._keyed: dict[str, Codec] | None = None

    def _fixed_leaves(self, cls: type, path: str) -> list[str]:
        """The leaf suffixes every object of ``cls`` may have whatever its values: scalar
        and encoded fields, through nested classes (optional ones too), but not the items
        of lists and dicts. Declared up front, so that a read or write of an object of a
        fixed shape needs no second round trip."""
        attrs.resolve_types(cls)
        out = []
        for f in attrs.fields(cls):
            name = path + escape(_stored_name(f), self.delim)
            inner, _ = optional_inner(f.type)
            if getattr(f.metadata.get("redmodel"), "codec", None) is not None or (
                    scalar(inner) is not None):
                out.append(name)
            elif isinstance(inner, type) and attrs.has(inner) and inner is not cls:
                out += self._fixed_leaves(inner, name + self.delim)
        return out

    def _declared(self, key: str, have: list[str] | None = None) -> list[str]:
        """The object key, then ``have``, then the other fixed leaves."""
        if not have:
            return [key, *[key + s for s in self._fixed_keys]]
        keys = [key, *(have or ())]
        seen = set(keys)
        keys += [k for k in (f"{key}{self.delim}{p}" for p in self.fixed) if k not in seen]
        return keys

    # ---- tree <-> skeleton + leaves ------------------------------------------------

    def _flatten(self, node: Any, path: str, leaves: list[tuple[str, bytes]]) -> Any:
        if node is None:
            return None
        if isinstance(node, bytes):
            leaves.append((path, node))
            return 1
        sep = path + self.delim if path else ""
        if isinstance(node, dict):
            if all(isinstance(k, str) for k in node):  # an attrs object: field names
                return {k: self._flatten(v, sep + escape(k, self.delim), leaves)
                        for k, v in node.items()}
            pairs = []
            for k, v in node.items():
                text = k.decode("utf-8", "surrogateescape")
                pairs.append([text, self._flatten(v, sep + escape(text, self.delim), leaves)])
            return ["d", pairs]
        # a set comes as a list in a canonical order (the converter's set hook,
        # _tree._set_unstructure), not its iteration order (insertion order, the hash
        # seed): equal sets make equal leaves in every process (30AU F1); one that came
        # as a set is put in the same order
        items = sorted(node, key=_set_key) if isinstance(node, AbstractSet) else list(node)
        return ["l", [self._flatten(v, f"{sep}{i}", leaves) for i, v in enumerate(items)]]

    def _tree(self, key: str, manifest: Any, values: Sequence[Any],
              missing_ok: bool = False) -> Any:
        """The tree a stored object's manifest and leaf values (one per leaf line, in its
        order) make, or a DecodeError naming the key: a manifest that is not one this
        layout writes (its skeleton not an object of nodes of the documented forms, or
        its leaf lines not one per leaf), or (unless ``missing_ok``: the leaf is None in
        the tree) a leaf key missing or of another type, named with its field path."""
        first, *lines = _text(manifest).split("\n")
        try:
            skeleton = json.loads(first)
        except ValueError:
            skeleton = None
        if type(skeleton) is not dict:
            raise self._corrupt(key, "its skeleton is not an object")
        if _JSON.encode(skeleton) != first:  # the one text the layout writes for it: no
            # space, no escape or key spelled another way, nothing before or after it
            raise self._corrupt(key, "its skeleton is not written as the layout writes it")
        at = 0
        n = len(values)
        delim = self.delim

        def walk(node: Any, path: str) -> Any:
            nonlocal at
            if node is None:
                return None
            kind = type(node)
            if kind is int and node == 1:
                if at >= n:
                    raise self._corrupt(key, "its skeleton has more leaves than it names keys")
                if at >= len(lines) or lines[at] != path:
                    # each leaf line is the key suffix the skeleton gives that leaf: a
                    # line cut short or changed would read another key's value (30AW F3)
                    raise self._corrupt(key, f"its leaf line {at + 1} is not the key of "
                                             "the leaf its skeleton puts there")
                value = values[at]
                if value is None and not missing_ok:
                    raise _Missing(at)
                at += 1
                return value
            sep = path + delim if path else ""
            if kind is dict:
                return {k: walk(v, sep + escape(k, delim)) for k, v in node.items()}
            if kind is list and len(node) == 2 and type(node[1]) is list:
                tag, items = node
                if tag == "l":
                    return [walk(v, f"{sep}{i}") for i, v in enumerate(items)]
                if tag == "d" and all(type(p) is list and len(p) == 2 and type(p[0]) is str
                                      for p in items):
                    return {k.encode("utf-8", "surrogateescape"): walk(v, sep + escape(k, delim))
                            for k, v in items}
            raise self._corrupt(key, "its skeleton has a node of an unknown form")

        try:
            tree = walk(skeleton, "")
        except _Missing as missing:
            lines = [line for line in _text(manifest).split("\n")[1:] if line]
            raise DecodeError(
                f"the leaf key {key}{self.delim}{lines[missing.at]} is missing or not a "
                "string", model=self.spec.name, key=key,
                field=_leaf_field(skeleton, missing.at)) from None
        if at != n or len(lines) != n:  # (a line more: one the read did not count, as
            # an empty one, or a newline appended)
            raise self._corrupt(key, "its skeleton has fewer leaves than it names keys")
        return tree

    def _corrupt(self, key: str, why: str) -> DecodeError:
        return DecodeError(f"manifest is corrupt ({why}): not one redmodel's flat layout "
                           "writes", model=self.spec.name, key=key)

    # ---- writing ------------------------------------------------------------------

    def save(self, key: str, obj: Any, ttl_ms: int | None) -> FlatWrite:
        """The save script: the manifest, the object's leaves (their values in ARGV), then
        the fixed leaves it does not have (which it may have had)."""
        try:
            return self._save(key, obj, ttl_ms)
        except RedmodelError as e:  # a codec's refusal: named by key and field
            raise refused(self.precheck, key, obj, e) from None

    def _save(self, key: str, obj: Any, ttl_ms: int | None) -> FlatWrite:
        ttl = "" if ttl_ms is None else str(ttl_ms)
        if self._encode is not None:
            values: list[bytes] = []
            sig = self._encode(obj, values)
            if sig is not None:
                shape = self._shapes.get(sig) or self._shape(obj, sig)
                manifest, suffixes = shape
                return FlatWrite(self.spec, key, [key + s for s in suffixes],
                                 [ttl, self.delim, manifest, *values], lua=_SAVE, reader=self)
        manifest, leaves = self._manifest(obj)
        keys = self._declared(key, [f"{key}{self.delim}{p}" for p, _ in leaves])
        return FlatWrite(self.spec, key, keys,
                         [ttl, self.delim, manifest, *(v for _, v in leaves)], lua=_SAVE,
                         reader=self)

    def _manifest(self, obj: Any) -> tuple[str, list[tuple[str, bytes]]]:
        """The generic encoding: the manifest, and (leaf suffix, value) of every leaf."""
        try:
            tree = self.unstructure(obj)
        except UnicodeEncodeError:  # a str id holding U+DC80..U+DCFF (the values were
            # checked): the id is no leaf, so the tree of a copy with an empty one will do
            tree = self.unstructure(attrs.evolve(obj, **{self.spec.key.init_name: ""}))
        tree.pop(self.key_name, None)
        leaves: list[tuple[str, bytes]] = []
        skeleton = self._flatten(tree, "", leaves)
        return "\n".join([_JSON.encode(skeleton), *(p for p, _ in leaves)]), leaves

    def _shape(self, obj: Any, sig: int) -> tuple[str, list[str]]:
        """What the generic code makes of an object of this shape (the generated encoder
        saw it first): its manifest, and the suffixes of its keys: '' (the manifest), its
        leaves', the other fixed leaves'."""
        manifest, leaves = self._manifest(obj)
        have = [p for p, _ in leaves]
        absent = [p for p in self.fixed if p not in set(have)]
        shape = (manifest, ["", *(self.delim + p for p in have),
                             *(self.delim + p for p in absent)])
        if len(self._shapes) < _MAX_SHAPES:
            self._shapes[sig] = shape
        return shape

    def delete(self, key: str) -> FlatWrite:
        return FlatWrite(self.spec, key, self._declared(key), [self.delim], lua=_DELETE,
                         reader=self)

    def expire(self, key: str, ttl_ms: int | None) -> FlatWrite:
        return FlatWrite(self.spec, key, self._declared(key),
                         [self.delim, "persist" if ttl_ms is None else ttl_ms], lua=_EXPIRE,
                         reader=self)

    def update(self, key: str, values: Any) -> Command:
        raise ValidationError(
            "partial update needs the hash layout; load, change and save the object "
            "(in a transaction to make it atomic)", model=self.spec.name, key=key,
        )

    def incr(self, key: str, path: str, amount: float) -> tuple[Command, str]:
        """The flat increment script (INCRBY / INCRBYFLOAT on the leaf, checked first);
        its reply is read by :func:`counter_result`."""
        chain = self.spec.path(path)
        command, arg, kind = check_increment(self.spec, key, chain, path, amount)
        leaf = key + self.delim + self.delim.join(f.stored for f in chain)
        olds = [key + self.delim + self.delim.join(p) for p in itertools.product(
            *[(f.stored, *f.old_stored) for f in chain])][1:]
        cmd = _INCR.call([key, leaf, *olds], [command, arg])
        return cmd, kind

    def cas(self, target: tuple[str, bytes | None], old: bytes, new: bytes) -> Command:
        return CAS_STRING.call([target[0]], [old, new])

    def check_readable(self, key: str, id_text: str, reply: Any) -> None:
        """Raise DecodeError naming the key if this stored object cannot be read as ``get``
        reads it. An object missing a leaf is checked as far as it is stored: its manifest
        and every present leaf of a codec-encoded field (an encrypted one: plaintext,
        another chain's value, a token under no configured key) must decode, and then it
        passes, so a rotation rewrites what is left of it (its ``get`` keeps naming the
        missing leaf). Only the missing-leaf error is excused (31C F2: any DecodeError of
        an object missing a leaf was, so plaintext beside it stayed unrotated)."""
        try:
            self.decode(key, id_text, reply)
        except DecodeError:
            if not (reply and None in reply[1:]):
                raise
            self._refuse_wrong_type(key, reply)
            manifest, *values = reply
            tree = self._tree(key, manifest, values, missing_ok=True)
            self._check_encoded(key, tree, self.spec.fields, "")

    def _check_encoded(self, key: str, node: Any, fields: Sequence[FieldSpec],
                       path: str) -> None:
        """Decode every present leaf of a codec-encoded field of ``node`` (a tree of the
        object, or of a nested one: field stored names to leaves), as ``get`` would;
        a DecodeError names the key and the field."""
        if not isinstance(node, dict):
            return
        for f in fields:
            for name in (f.stored, *f.old_stored):
                raw = node.get(unescape(name))
                if raw is not None:
                    break
            if raw is None:
                continue
            if f.kind == "struct":
                self._check_encoded(key, raw, f.children, f"{path}{f.name}.")
            elif f.kind == "encoded" and isinstance(raw, bytes) and f.decode is not None \
                    and f.upgrade is None:  # (an upgrade= reads what the chain does not)
                try:
                    f.decode(raw)
                except BadValueError as e:
                    raise DecodeError(f"stored value is {e}", model=self.spec.name, key=key,
                                      field=path + f.name) from None
                except DecodeError as e:
                    inner = f"{path}{f.name}.{e.field}" if e.field else path + f.name
                    raise DecodeError(e.reason, model=self.spec.name, key=key, field=inner,
                                      codec=e.codec) from None

    def keyed_values(self, key: str, reply: Any
                     ) -> list[tuple[tuple[str, bytes | None], bytes, Codec]]:
        """The stored leaves of the fields declared with a key-holding chain, each with its
        key and its field's chain, from a :meth:`read` reply: what a key rotation
        re-encrypts. Leaves are matched by their key suffix (nested fields, old names
        too); any other leaf is left alone, whatever its bytes start with."""
        if not reply:
            return []
        self._refuse_wrong_type(key, reply)
        manifest, *values = reply
        self._tree(key, manifest, values, missing_ok=True)  # a corrupt one: DecodeError
        keyed = self._keyed
        if keyed is None:
            keyed = self._keyed = {}
            delim = self.delim
            keyed_leaves(self.spec.fields, [""], delim,
                         lambda n: escape(unescape(n), delim), keyed)
        suffixes = [line for line in _text(manifest).split("\n")[1:] if line]
        return [((f"{key}{self.delim}{s}", None), v, keyed[s])
                for s, v in zip(suffixes, values, strict=True)
                if v is not None and s in keyed]

    # ---- reading ------------------------------------------------------------------

    def read(self, key: str) -> Command:
        """The get script, with the fixed leaves declared: send it with
        :func:`read_batch`, which declares the others when the script asks."""
        expect = self._expect
        if expect is None:
            return _GET.call(self._declared(key), [self.delim])
        manifest, have, absent = expect
        return _GET.call([key, *[key + s for s in have], *[key + s for s in absent]],
                         [self.delim, manifest, len(have)])

    def decode(self, key: str, id_text: str, reply: Any) -> Any:
        if not reply:
            return None
        self._refuse_wrong_type(key, reply)
        manifest, *values = reply
        if self._encode is not None and type(manifest) is bytes:
            try:
                fast = self._readers[manifest]
            except KeyError:
                fast = self._reader(manifest)
            if fast is not None and (self._expect is None or self._expect[0] != manifest):
                self._expect = self._expected(manifest)
            if fast is not None and len(values) == fast[1] and None not in values:
                try:
                    return fast[0](values, id_text.encode("utf-8"))
                except Exception:  # the generic decode below decides
                    pass
        tree = self._tree(key, manifest, values)
        try:
            tree[self.key_name] = id_text.encode("utf-8")
        except UnicodeEncodeError:  # undecodable id bytes: see _odd_id
            return self._odd_id(key, id_text, tree)
        try:
            return self.structure(tree, self.spec.cls)
        except Exception as e:
            raise structure_error(e, model=self.spec.name, key=key) from None

    def _odd_id(self, key: str, id_text: str, tree: dict[str, Any]) -> Any:
        """The object of an id whose bytes are not UTF-8 (its text holds U+DC80..U+DCFF):
        a ``bytes`` id is those bytes; a ``str`` id is that text, which the tree's strict
        str leaves cannot hold, so the object is made with an empty id, then given it."""
        raw = id_text.encode("utf-8", "surrogateescape")
        text_id = self.spec.key.decode is ID_STR[1]
        tree[self.key_name] = b"" if text_id else raw
        try:
            obj = self.structure(tree, self.spec.cls)
            return attrs.evolve(obj, **{self.spec.key.init_name: id_text}) if text_id else obj
        except Exception as e:
            raise structure_error(e, model=self.spec.name, key=key) from None


    def _refuse_wrong_type(self, key: str, reply: Any) -> None:
        """The read script's answer for an object key of another type (a manifest is
        never that: its first line is a JSON object), raised as a ServerError naming it."""
        if len(reply) == 4 and reply[0] in _WRONGTYPE and _text(reply[1]) == key:
            raise ServerError(f"WRONGTYPE {key} holds a {_text(reply[2])}, not a string",
                              keys=(key,), command=f"get {self.spec.name}")

    def _expected(self, manifest: bytes) -> tuple[bytes, list[str], list[str]] | None:
        """What :meth:`read` sends to expect this manifest (None: too many leaves)."""
        lines = manifest.decode("utf-8", "surrogateescape").split("\n")[1:]
        if len(lines) > 500:
            return None
        absent = [p for p in self.fixed if p not in set(lines)]
        return manifest, [self.delim + p for p in lines], [self.delim + p for p in absent]

    def _reader(self, manifest: bytes) -> tuple[Callable[..., Any], int] | None:
        """The generated decode for objects stored with this manifest (None: the generic
        decode), remembered for up to _MAX_SHAPES manifests."""
        first, *lines = _text(manifest).split("\n")
        try:
            skeleton = json.loads(first)
            found: tuple[Callable[..., Any], int] | None = _decoder(
                self.spec.cls, self.key_name, skeleton)
        except (_Decline, ValueError):
            found = None
        # only a manifest the layout writes: its skeleton's one text, then each leaf's key
        # suffix as the skeleton gives it (another one is the generic code's to refuse)
        if found is not None and (_JSON.encode(skeleton) != first
                                  or lines != _paths(skeleton, self.delim)):
            found = None
        if len(self._readers) < _MAX_SHAPES:
            self._readers[manifest] = found
        return found


def counter_result(spec: ModelSpec, key: str, path: str, kind: str, amount: float,
                   reply: Any) -> Any:
    """The new value from the flat increment script's reply (exact text), or its refusal
    raised: NotFoundError, DecodeError, ConditionFailedError at the 64-bit or float limit,
    ServerError for a wrong-typed key."""
    if reply is None:
        raise NotFoundError(spec.name, key)
    word = status(reply)
    parse = int if kind == "int" else float
    if word == "OK":
        return parse(reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1]))
    if word == "LIMIT":
        side = reply[3].decode() if isinstance(reply[3], bytes) else str(reply[3])
        limit = "64-bit counter" if kind == "int" else "finite float"
        bounds = (-(2**63), 2**63 - 1) if kind == "int" else (-math.inf, math.inf)
        raise ConditionFailedError(
            model=spec.name, key=key, field=path, kind=side,
            bound=bounds[0] if side == "floor" else bounds[1],
            current=parse(reply[4].decode()), change=amount, limit=limit)
    if word == "RENAMED":
        raise DecodeError(
            f"the value is stored under an earlier name ({_text(reply[1])}, old_names=): "
            "a flat model's incr does not move it; save the object once (load and save) "
            "before incrementing it; nothing was changed", model=spec.name, key=key,
            field=path)
    if word == "NOTNUM":
        raise DecodeError("stored value is not a number Redis can add to; nothing was changed",
                          model=spec.name, key=key, field=path)
    error = refusal(spec, key, reply, f"incr {spec.name}")
    if error is not None:
        raise error
    raise AssertionError(f"unexpected reply {reply!r}")  # pragma: no cover


def _paths(skeleton: Any, delim: str) -> list[str] | None:
    """The leaf key suffixes the layout writes for a skeleton, in its order, as
    :meth:`FlatLayout._flatten` makes them (None: a node of an unknown form)."""
    out: list[str] = []

    def walk(node: Any, path: str) -> bool:
        if node is None:
            return True
        if type(node) is int and node == 1:
            out.append(path)
            return True
        sep = path + delim if path else ""
        if type(node) is dict:
            return all(walk(v, sep + escape(k, delim)) for k, v in node.items())
        if type(node) is list and len(node) == 2 and type(node[1]) is list:
            if node[0] == "l":
                return all(walk(v, f"{sep}{i}") for i, v in enumerate(node[1]))
            if node[0] == "d" and all(type(p) is list and len(p) == 2 and type(p[0]) is str
                                      for p in node[1]):
                return all(walk(v, sep + escape(k, delim)) for k, v in node[1])
        return False

    return out if walk(skeleton, "") else None


class _Missing(Exception):  # noqa: N818 - a signal: leaf number ``at`` is missing
    def __init__(self, at: int) -> None:
        self.at = at


def _leaf_field(skeleton: Any, at: int) -> str | None:
    """The field path of leaf number ``at`` of a (checked) skeleton: ``address.city``,
    ``scores[2]``; a dict's entry is named by the dict (its key, which is data, is in the
    leaf key the message names)."""
    count = itertools.count()

    def find(node: Any, field: str) -> str | None:
        if type(node) is int:
            return field if next(count) == at else None
        pairs: Any = ()
        if type(node) is dict:
            pairs = ((v, f"{field}.{k}" if field else k) for k, v in node.items())
        elif node is not None and node[0] == "l":
            pairs = ((v, f"{field}[{i}]") for i, v in enumerate(node[1]))
        elif node is not None:
            pairs = ((v, field) for _, v in node[1])
        for child, path in pairs:
            found = find(child, path)
            if found is not None:
                return found
        return None

    return find(skeleton, "") or None


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


# ---- generated code for models of a fixed shape ---------------------------------------------
#
# A model whose tree has a fixed shape (scalar and codec leaves, through nested classes,
# optional ones too; no lists, dicts or sets) gets straight-line Python for its save and
# get, written once per model (and once per stored shape for reading), the way cattrs
# writes its own functions. They call exactly the hooks the generic code calls (read from
# cattrs' generated functions), so what they store and build is the generic code's by
# construction; anything they are not sure of (a value of another type, a leaf missing,
# a manifest of another shape, an error) is handed to the generic code, which decides
# (and raises the error it always raised).


class _Decline(Exception):  # noqa: N818 - a signal: this model keeps the generic code
    pass


def _hooks(fn: Any, prefix: str) -> dict[str, Any]:
    """The default values of a cattrs-generated function's ``prefix*`` parameters."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        raise _Decline from None
    return {n[len(prefix):]: p.default for n, p in params.items()
            if n.startswith(prefix) and p.default is not inspect.Parameter.empty}


def _kind(f: attrs.Attribute[Any], seen: frozenset[type]) -> tuple[str, Any, bool]:
    """("leaf" | "node", inner type, optional) of a field of a fixed-shape tree."""
    inner, optional = optional_inner(f.type)
    if getattr(f.metadata.get("redmodel"), "codec", None) is not None or (
            scalar(inner) is not None):
        return "leaf", inner, optional
    if isinstance(inner, type) and attrs.has(inner) and inner not in seen:
        return "node", inner, optional
    raise _Decline


def _compile(name: str, lines: list[str], env: dict[str, Any]) -> Callable[..., Any]:
    """The generated function ``name`` (built as the hash layout's generated code is:
    :func:`redmodel._models._compiled.build`, its source kept for tracebacks)."""
    return build(name, "\n".join(lines) + "\n", env)


def _encoder(cls: type, key_field: str) -> Callable[[Any, list[bytes]], int | None]:
    """``encode(obj, out) -> shape``: appends the object's leaf values to ``out`` in the
    order the generic ``_flatten`` gives them; the shape is a number with one bit per leaf
    or optional node that is None (which fixes the skeleton). None: not sure, use the
    generic code."""
    env: dict[str, Any] = {}
    lines = ["def encode(o, out):", "    sig = 0"]
    bits = itertools.count()
    names = itertools.count()

    def walk(c: type, obj: str, pad: str, seen: frozenset[type], top: bool) -> None:
        hooks = _hooks(_CONVERTER.get_unstructure_hook(c), "__c_unstr_")
        attrs.resolve_types(c)
        for f in attrs.fields(c):
            if top and f.name == key_field:
                continue
            kind, inner, optional = _kind(f, seen)
            if kind == "leaf":
                if f.name not in hooks:
                    raise _Decline
                h = f"_h{next(names)}"
                env[h] = hooks[f.name]
                lines.extend([f"{pad}x = {h}({obj}.{f.name})",
                              f"{pad}if x is None: sig |= {1 << next(bits)}",
                              f"{pad}elif type(x) is bytes: out.append(x)",
                              f"{pad}else: return None"])
                continue
            var = f"n{next(names)}"
            lines.append(f"{pad}{var} = {obj}.{f.name}")
            if optional:
                lines.extend([f"{pad}if {var} is None: sig |= {1 << next(bits)}",
                              f"{pad}else:", f"{pad}    pass"])
                walk(inner, var, pad + "    ", seen | {inner}, False)
            else:
                walk(inner, var, pad, seen | {inner}, False)

    walk(cls, "o", "    ", frozenset({cls}), True)
    lines.append("    return sig")
    return _compile("encode", lines, env)


def _decoder(cls: type, key_name: str, skeleton: Any) -> tuple[Callable[..., Any], int]:
    """``decode(values, id bytes) -> obj`` for objects stored with this skeleton (the
    constructor calls of cattrs' structure functions, with their hooks), and the number
    of leaf values it takes. Raises _Decline when the skeleton is not the model's shape."""
    env: dict[str, Any] = {}
    at = itertools.count()
    names = itertools.count()

    def build(c: type, skel: Any, seen: frozenset[type], top: bool) -> str:
        hooks = _hooks(_CONVERTER.get_structure_hook(c), "__c")
        if "l" not in hooks or not isinstance(skel, dict):
            raise _Decline
        ctor = f"_c{next(names)}"
        env[ctor] = hooks["l"]
        stored: list[str] = []  # in the class's order: the values arrive in the skeleton's
        args = []
        for f in attrs.fields(c):
            if not f.init or f.alias != f.name:
                raise _Decline
            name, _ = field_names(f)
            h, t = f"_s{next(names)}", f"_t{next(names)}"
            env[h], env[t] = hooks.get(f"_structure_{f.name}"), hooks.get(f"_type_{f.name}")
            if env[h] is None:
                raise _Decline
            if top and name == key_name:
                args.append(f"{f.name}={h}(kid, {t})")
                continue
            stored.append(name)
            if name not in skel:
                raise _Decline
            kind, inner, _ = _kind(f, seen)
            node = skel[name]
            if node is None:
                args.append(f"{f.name}={h}(None, {t})")
            elif kind == "leaf" and node == 1 and type(node) is int:
                args.append(f"{f.name}={h}(v[{next(at)}], {t})")
            elif kind == "node" and isinstance(node, dict):
                args.append(f"{f.name}={build(inner, node, seen | {inner}, False)}")
            else:
                raise _Decline
        # the leaves are numbered in the class's field order and the values come in the
        # manifest's: another order (a model version that declares its fields in another
        # order, a manifest rewritten in another order) goes by the general code, which
        # matches leaves by name (attack 30AZ F1: x and y were read swapped)
        if stored != list(skel):
            raise _Decline
        return f"{ctor}({', '.join(args)})"

    expr = build(cls, skeleton, frozenset({cls}), True)
    fn = _compile("decode", ["def decode(v, kid):", f"    return {expr}"], env)
    return fn, next(at)
