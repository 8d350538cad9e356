"""The model registry: which model owns each prefix, and the schema it stores there.

One hash per prefix, ``<prefix>:%schema`` (under the model's own prefix, so the key
patterns an ACL grants the app cover it, and one key is one slot on a cluster):

- ``schema``: the model's schema as canonical JSON (fields, types, layout, codecs by
  name, buckets, hash tag, delimiter, indexes; never a key);
- ``owner``: the module-qualified class name of the model that owns the prefix;
- ``index:<field>`` / ``index:%all`` / ``unique:<name>``: each index's state, ``ready``,
  ``building`` (added while objects were stored without it: ``store.reindex`` builds it)
  or ``stale`` (no longer declared, its entries still stored: ``store.drop_index``);
- ``was:<digest>``: one per schema the record held before and replaced, so that a version
  of the model that is still running during a rolling deploy is known as *older*: it is
  accepted without rewriting the record (see :func:`register_plan`);
- ``version``: a random token (:func:`new_version`) written with every change of the
  fields above (and of ``moving``, a bucket move's), so a query compares this one field
  with the version its store read (:meth:`Registry.step_check`); a record written before
  versions has none and is compared field by field. The index-state script writes its
  call's token followed by ``.`` and the count it changed, so that its resend answers
  that count again (registry_state.lua);
- ``indexkeys``: for a model with a blind index, the ids of the index keys its blind
  equality entries may be under (space-separated; see :meth:`Registry.register`, "Index
  keys", and registry_keys.lua);
- ``unregister``: the token of an :meth:`Registry.unregister` call between its two
  script calls: the record is asked to go. Any unregister's ``drop`` deletes a record
  that holds one (its own token or another's), and every write of the record's
  owner/schema (a registration, a bucket move's record) deletes the field in the same
  step, so a drop never deletes a registration made after the marks. A first use that
  finds a matching record with the field writes it again (instead of only reading it)
  for that reason. A call stopped between its two calls leaves the field: the next
  unregister's drop, or registration, ends it.

A store registers a model on its first use of it (one HGETALL when nothing changed; a
compare-and-set script when something did) and remembers it in memory: later operations
send nothing more. A model that another model's prefix belongs to, whose key space
overlaps that of another model the store uses, or whose change would misread stored
objects, is refused with :class:`SchemaConflictError`, nothing written.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs

from redmodel._args import page_count
from redmodel._errors import (
    CodecError,
    IndexNotReadyError,
    SchemaConflictError,
    ValidationError,
)
from redmodel._indexes._blind import configured_kids
from redmodel._models._keys import glob_escape
from redmodel._models._specs import FieldSpec, ModelSpec, model_class, spec_of
from redmodel._plan import Batch, Emit, IterPlan, Plan, script
from redmodel._plans._objects import scan_page

__all__ = ["Registry", "describe", "owner_of", "registry_key"]

SUFFIX = ":%schema"
READY, BUILDING, STALE = "ready", "building", "stale"
ALL = "index:%all"
WAS = "was:"
# the record's version: a new value (:func:`new_version`) at every write that changes what
# a query checks (the schema, an index state, ``moving``, a ``was:`` mark), never one it
# held before; absent from a record written before versions
VERSION = "version"
_NO_NEEDS: frozenset[str] = frozenset()
CONTAINER = "container:"  # a container key under the prefix (redmodel/_container_registry.py)
REGISTER = script("registry")
STATES = script("registry_state")
UNREGISTER = script("registry_unregister")
INDEX_KEYS = script("registry_keys")
#: the record's field of the key ids a model's blind entries may be under
INDEX_KEYS_FIELD = "indexkeys"
#: the field of an unregister's mark (registry_unregister.lua); a registration deletes it
UNREGISTER_FIELD = "unregister"
DROP_LINES = script("index_droplines")
ATTEMPTS = 20
G = TypeVar("G", bound=Generator[Any, Any, Any])


def registry_key(prefix: str) -> str:
    """The registry hash of a prefix: ``hat:%schema`` (always ``:``, whatever the model's
    delimiter, so that a delimiter change meets the same record)."""
    return prefix + SUFFIX


def module_name(module: str) -> str:
    """A class's module as other processes import it: a script run as ``__main__``
    (``python app.py``, ``python -m app``) is the module ``app``, so the model it declares
    has one owner whether the script runs or is imported."""
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        name = str(spec.name)
        return name[: -len(".__main__")] if name.endswith(".__main__") else name
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else module


def owner_of(cls: type) -> str:
    """``module.QualifiedName``: what the registry records as a prefix's owner."""
    return f"{module_name(cls.__module__)}.{cls.__qualname__}"


def type_name(tp: Any) -> str:
    """A type as the registry records it: ``int``, ``app.models.Hat``, ``list[str]``."""
    if isinstance(tp, type):
        return (tp.__name__ if tp.__module__ == "builtins"
                else f"{module_name(tp.__module__)}.{tp.__qualname__}")
    return repr(tp).replace("typing.", "")


def _field(f: FieldSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"stored": f.stored, "type": type_name(f.type), "kind": f.kind,
                           "default": f.has_default, "optional": f.optional}
    if f.codec is not None:
        out["codec"] = f.codec.name
    if f.old_stored:
        out["old"] = list(f.old_stored)
    if f.children:
        out["fields"] = {c.name: _field(c) for c in f.children}
    return out


def index_kinds(spec: ModelSpec) -> dict[str, str]:
    """Every index of the model by its state field: ``index:<field>`` -> its kind,
    ``index:%all`` (the all-ids index), ``unique:<name>``."""
    if spec.indexes is None:
        return {}
    out = {ALL: "all"}
    for name, f in spec.indexes.fields.items():
        kind = ("blind" if f.blind is not None else "range" if f.range
                else "contains" if f.many and f.eq else "eq" if f.eq else "")
        if kind:
            out[f"index:{name}"] = kind
    for u in spec.indexes.uniques:
        out[f"unique:{u.name}"] = "unique"
    return out


def describe(spec: ModelSpec) -> dict[str, Any]:
    """The model's schema as the registry records it (JSON-ready; names, never keys)."""
    return {
        "model": owner_of(spec.cls),
        "layout": spec.layout,
        "delimiter": spec.delimiter,
        "buckets": spec.buckets,
        "hash_tag": "function" if callable(spec.hash_tag) else bool(spec.hash_tag),
        "codec": None if spec.codec is None else spec.codec.name,
        "ttl": spec.ttl,
        "key": {"name": spec.key.name, "type": type_name(spec.key.type)},
        "fields": {f.name: _field(f) for f in spec.fields},
        "indexes": index_kinds(spec),
    }


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def was_field(text: str) -> str:
    """The registry field that says the schema ``text`` was recorded once and replaced."""
    return WAS + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _str(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


@attrs.frozen
class Record:
    """What the registry holds for one prefix."""

    key: str
    owner: str
    text: str  # the schema as stored
    schema: dict[str, Any]
    states: dict[str, str]  # index state field -> ready | building | stale
    moving: str = ""  # a bucket move under way (store.migrate_buckets): "from -> to"
    older: frozenset[str] = frozenset()  # the was:<digest> fields: schemas replaced
    # container keys recorded under the prefix (container:<key> fields, written by the
    # container registry): a model may not take the prefix while one is recorded
    containers: tuple[str, ...] = ()
    # the index state fields as stored (None: ``states`` are as stored; an older version's
    # record holds its view in ``states``)
    stored: dict[str, str] | None = None
    version: str = ""  # the record's version as read ('' for none: written before them)
    # an unregister's mark (the `unregister` field): its drop deletes the record unless a
    # registration (which deletes the field) comes first
    unregistering: bool = False
    # the key ids of ``indexkeys`` (None: the field is absent, or this store wrote the
    # record and did not read it)
    index_keys: tuple[str, ...] | None = None

    def pending(self) -> frozenset[str]:
        """The index state fields that are not ready."""
        return frozenset(n for n, s in self.states.items() if s != READY)


def new_version() -> str:
    """A new version of a registry record, made by the client that writes it (random: a
    script may not read the clock under the ACL rules docs/deploy.md gives, and a count
    in the record would start again once the record is deleted and made anew)."""
    return uuid.uuid4().hex


def parse(key: str, raw: Any) -> Record | None:
    """A registry hash (an HGETALL reply) as a Record; None when there is none. A record
    that redmodel cannot have written (a ``schema`` that is not the JSON object
    :func:`describe` produces, written by hand, by another tool or planted) raises
    :class:`SchemaConflictError` naming the key: read as it is it would be a guess, and
    written over it would lose what it said."""
    if not raw:
        return None
    items = {_str(k): _str(v) for k, v in (raw.items() if isinstance(raw, dict) else
                                             zip(raw[::2], raw[1::2], strict=True))}
    owner = items.get("owner", "")
    schema: dict[str, Any] = {}
    if "schema" in items:
        text = items["schema"]
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
            problem = "its schema field is not JSON"
        else:
            problem = _schema_problem(loaded)
        if not problem and not owner:  # redmodel writes a schema with its owner, always
            problem = ("it holds a schema but no owner" if "owner" not in items
                       else "it holds a schema but an empty owner")
        if problem:
            raise corrupt(key, owner, problem)
        schema = loaded
    states = {k: v for k, v in items.items() if k.startswith(("index:", "unique:"))}
    bad = sorted(k for k, v in states.items() if v not in (READY, BUILDING, STALE))
    if bad:
        raise corrupt(key, owner, f"the index state {bad[0]} is {states[bad[0]]!r}, not "
                                  "ready, building or stale")
    older = frozenset(k for k in items if k.startswith(WAS))
    containers = tuple(sorted(k[len(CONTAINER):] for k in items if k.startswith(CONTAINER)))
    return Record(key, owner, items.get("schema", ""), schema, states,
                  moving=items.get("moving", ""), older=older, containers=containers,
                  version=items.get(VERSION, ""), unregistering=UNREGISTER_FIELD in items,
                  index_keys=(tuple(items[INDEX_KEYS_FIELD].split())
                              if INDEX_KEYS_FIELD in items else None))


def corrupt(key: str, owner: str, problem: str) -> SchemaConflictError:
    """The error for a registry record redmodel cannot read."""
    return SchemaConflictError(
        f"the model registry record {key} is unreadable ({problem}): redmodel did not write "
        "it so. No store uses the prefix until it is fixed: delete it (DEL, or "
        "store.unregister) and let the model's next first use record it again, once you know "
        "the stored objects match the model",
        prefix=key[: -len(SUFFIX)] if key.endswith(SUFFIX) else key, key=key, owner=owner,
        model="", problems=(f"unreadable: {problem}",))


_TOP = {"layout": str, "delimiter": str, "fields": dict}
_OPTIONAL_TEXT = ("codec",)


def _schema_problem(schema: Any) -> str:
    """What makes ``schema`` something :func:`describe` never wrote ('' when nothing)."""
    if not isinstance(schema, dict):
        return f"its schema is a JSON {type(schema).__name__}, not an object"
    for name, kind in _TOP.items():
        if not isinstance(schema.get(name), kind):
            return f"its schema's {name!r} is missing or not a {kind.__name__}"
    buckets = schema.get("buckets")
    if buckets is not None and (isinstance(buckets, bool) or not isinstance(buckets, int)):
        return "its schema's 'buckets' is not an int or null"
    for name in _OPTIONAL_TEXT:
        if schema.get(name) is not None and not isinstance(schema[name], str):
            return f"its schema's {name!r} is not a string or null"
    indexes = schema.get("indexes", {})
    if not isinstance(indexes, dict) or not all(isinstance(v, str) for v in indexes.values()):
        return "its schema's 'indexes' is not an object of strings"
    return _fields_problem(schema["fields"], "")


def _fields_problem(fields: dict[str, Any], where: str) -> str:
    for name, f in fields.items():
        if not isinstance(f, dict):
            return f"its field {where}{name} is a JSON {type(f).__name__}, not an object"
        if not isinstance(f.get("stored"), str) or not isinstance(f.get("kind"), str):
            return f"its field {where}{name} lacks a 'stored' or 'kind' string"
        if f.get("codec") is not None and not isinstance(f["codec"], str):
            return f"its field {where}{name} has a 'codec' that is not a string"
        old = f.get("old", [])
        if not isinstance(old, list) or not all(isinstance(o, str) for o in old):
            return f"its field {where}{name} has an 'old' that is not a list of strings"
        children = f.get("fields")
        if children is not None:
            if not isinstance(children, dict):
                return f"its field {where}{name} has 'fields' that is not an object"
            problem = _fields_problem(children, f"{where}{name}.")
            if problem:
                return problem
    return ""


# ---- what changes are refused ---------------------------------------------------------------

def _fields_problems(old: dict[str, Any], new: dict[str, Any], where: str,
                     older: bool = False) -> list[str]:
    problems = []
    by_stored = {f.get("stored"): (n, f) for n, f in old.items()}
    renamed = {earlier: n for n, f in old.items() for earlier in f.get("old", ())}
    for name, f in new.items():
        found = by_stored.get(f["stored"])
        if found is None and older and f["stored"] in renamed:
            problems.append(
                f"field {where}{name} is stored as {old[renamed[f['stored']]]['stored']!r}"
                f" by the newest version (it renamed {f['stored']!r}): this older "
                "version would read its default for the objects the newest saved; "
                "finish the deploy (older processes cannot read renamed fields) or "
                "make this version the newest with store.adopt")
            continue
        for earlier in f.get("old", ()):  # a rename (old_names=): read from the old name
            found = found or by_stored.get(earlier)
        if found is None:
            # an older version lacking a default for a field the newest removed reads the
            # newest's objects as a DecodeError naming the field: loud, never a misread
            if not older and not f.get("default") and not f.get("optional"):
                problems.append(
                    f"new field {where}{name} has no default: the objects stored without it "
                    "would not load; give it a default (or a factory), make it optional, or "
                    "name the field it renames (old_names=)")
            continue
        _, before = found
        if (before.get("kind"), before.get("codec")) != (f.get("kind"), f.get("codec")):
            problems.append(
                f"field {where}{name} changed how it is stored, from "
                f"{before.get('kind')} {before.get('codec') or ''} to {f.get('kind')} "
                f"{f.get('codec') or ''}".rstrip()
                + ": the stored values would be misread; migrate them or use a new field")
        elif f.get("fields") or before.get("fields"):
            problems += _fields_problems(before.get("fields", {}), f.get("fields", {}),
                                         f"{where}{name}.", older)
    return problems


def problems_of(old: dict[str, Any], new: dict[str, Any], older: bool = False) -> list[str]:
    """Every difference between a recorded schema and a model's that would misread the
    stored objects (an empty list when the model may update the record). ``older``: the
    model is an older version still running: a field of it that the newest version removed
    needs no default (the older version reads such objects with a DecodeError naming the
    field: loud, never a misread)."""
    out = []
    if old.get("layout") != new["layout"]:
        out.append(f"layout changed from {old.get('layout')} to {new['layout']}: the stored "
                   "objects would be misread; migrate them (export, then import) or use "
                   "another prefix")
    if old.get("buckets") != new["buckets"]:
        out.append(f"buckets changed from {old.get('buckets')} to {new['buckets']}: the "
                   "stored objects live in the old buckets and would not be found; keep "
                   f"buckets={old.get('buckets')} or migrate the objects to the new count "
                   "(store.migrate_buckets: see docs/migrations.md)")
    if old.get("hash_tag") != new["hash_tag"]:
        out.append(f"hash_tag changed from {old.get('hash_tag')} to {new['hash_tag']}: the "
                   "stored objects' keys would not be found; migrate them")
    if old.get("delimiter") != new["delimiter"]:
        out.append(f"delimiter changed from {old.get('delimiter')!r} to "
                   f"{new['delimiter']!r}: the stored objects' keys would not be found; "
                   "migrate them")
    if old.get("codec") != new["codec"]:
        out.append(f"model codec changed from {old.get('codec')} to {new['codec']}: the "
                   "stored values would be misread; migrate them")
    out += _fields_problems(old.get("fields", {}), new["fields"], "", older)
    return out


# ---- registering -----------------------------------------------------------------------------

def read_plan(key: str) -> Plan[Record | None]:
    replies = yield Batch([("HGETALL", key)], keys=[key])
    return parse(key, replies[0])


def has_objects(spec: ModelSpec, targets: Sequence[Any]) -> Plan[bool]:
    """Whether any object of the model is stored (SCAN pages until one is found)."""

    for target in targets:
        cursor = 0
        while True:
            cursor, keys = yield from scan_page(spec, cursor, 1000, target)
            if keys:
                return True
            if cursor == 0:
                break
    return False


def register_plan(spec: ModelSpec, targets: Sequence[Any], adopt: bool = False
                  ) -> Plan[Record]:
    """Record the model in its prefix's registry, or refuse it: one HGETALL when the
    record already matches; else the compare-and-set script (after a SCAN for stored
    objects when the model adds an index), retried if another process changed the record
    meanwhile."""
    key = registry_key(spec.prefix)
    owner = owner_of(spec.cls)
    schema = describe(spec)
    text = schema_text(schema)
    wanted = schema["indexes"]
    stored: bool | None = None
    for _ in range(ATTEMPTS):
        record = yield from read_plan(key)
        if (record is not None and not adopt and record.text != text
                and was_field(text) in record.older):
            return (yield from older_plan(spec, record, schema, owner))
        space = key_space(spec.prefix, spec.delimiter)
        if record is not None:
            check(spec, record, schema, "" if adopt else owner)
            inside = tuple(k for k in record.containers if holds_container(space, k))
            if inside:
                raise containers_error(spec, attrs.evolve(record, containers=inside), owner)
        old_kinds = {} if record is None else record.schema.get("indexes", {})
        states = {} if record is None else record.states
        new = [n for n, kind in wanted.items()
               if old_kinds.get(n) != kind or states.get(n) not in (READY, BUILDING)]
        gone = [n for n in states if n not in wanted and states[n] != STALE]
        if (record is not None and record.text == text and not new and not gone
                and not record.unregistering):
            return record  # (a marked record is written again: the mark goes, 32G F2)
        if new and stored is None:
            stored = yield from has_objects(spec, targets)
        pairs: list[str] = []
        for n in new:
            pairs += [n, BUILDING if stored else READY]
        for n in gone:
            pairs += [n, "" if n == ALL or states[n] == BUILDING else STALE]
        if record is not None and record.text and record.text != text:
            pairs += [was_field(record.text), "1"]  # its processes may still run: older
        version = new_version()
        reply = yield Batch([REGISTER.call([key], ["" if record is None else record.text,
                                                   text, owner, space, *pairs, VERSION,
                                                   version])],
                            write=True, idempotent=True, keys=[key])
        if _str(reply[0]) in ("MOVING", "CONTAINER"):  # changed meanwhile: read, refuse
            continue
        if _str(reply[0]) == "OK":
            after = dict(states)
            after.update(dict(zip(pairs[::2], pairs[1::2], strict=True)))
            return Record(key, owner, text, schema,
                          {k: v for k, v in after.items() if v and not k.startswith(WAS)},
                          version=version)
    raise SchemaConflictError(
        f"{spec.name}: the registry {key} kept changing while this store registered the "
        "model (other processes registering other versions of it?); try again",
        prefix=spec.prefix, key=key, owner="", model=owner)


def key_space(prefix: str, delimiter: str) -> str:
    """What every key of a model starts with (its SCAN pattern, unescaped, before ``*``)."""
    return prefix + delimiter


def overlaps(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two models' key spaces, given as (prefix, delimiter), overlap: one's
    ``prefix + delimiter`` starts the other's (``au_ov`` with ``:`` and ``au_ov:sub`` with
    ``|``: ``au_ov:sub|i0`` is a key of both), so a SCAN of the one matches keys of the
    other. Two models of one prefix are the registry record's to judge (one owner)."""
    if a[0] == b[0]:
        return False
    x, y = key_space(*a), key_space(*b)
    return x.startswith(y) or y.startswith(x)


def container_space(key: str) -> str:
    """What every key of the container ``key`` but ``key`` itself starts with: its record
    and side keys (``<key>:{<key>}:%...``), a WindowCounter's counts
    (``<key>:<subject>:<start>+<window>``)."""
    return key + ":"


def holds_container(space: str, key: str) -> bool:
    """Whether a model's key space ``space`` (``prefix + delimiter``, :func:`key_space`)
    and the keys of the container ``key`` (``key`` and every key starting ``key:``) can
    share a key, whatever the model's delimiter: one of ``space`` and ``key:`` starts the
    other (``p|`` and ``p|x``; ``p:`` and ``p``, whose record ``p:{p}:%container`` the
    model's SCAN would match; ``c:x:`` and the counter ``c``). The one rule of every
    model/container overlap check (store, registry script, container registry)."""
    own = container_space(key)
    return own.startswith(space) or space.startswith(own)


def overlap_error(spec: ModelSpec, owner: str, other_prefix: str, other_delimiter: str,
                  other_owner: str) -> SchemaConflictError:
    key = registry_key(other_prefix)
    return SchemaConflictError(
        f"{owner}: prefix {spec.prefix!r} with delimiter {spec.delimiter!r} overlaps the "
        f"keys of {other_owner or 'another model'} (prefix {other_prefix!r}, delimiter "
        f"{other_delimiter!r}; registry {key}): every key starting "
        f"{key_space(spec.prefix, spec.delimiter)!r} or "
        f"{key_space(other_prefix, other_delimiter)!r} would be an object of both (scan, "
        "count, delete and migrations of one would take the other's objects); give one of "
        "them another prefix or delimiter",
        prefix=spec.prefix, key=key, owner=other_owner, model=owner,
        problems=(f"overlaps {other_owner} ({other_prefix!r}, {other_delimiter!r})",))


def older_plan(spec: ModelSpec, record: Record, schema: dict[str, Any], owner: str
               ) -> Plan[Record]:
    """Accept an older version of the model (one whose schema the record held before and
    replaced: its processes still run during a rolling deploy) without rewriting the
    record, or refuse it if the newest version would misread what it writes.

    Its saves leave out the entries of every index it does not declare as the newest
    version does: each such index that is ``ready`` becomes ``building`` again (in one
    script that changes only states still ``ready``), so no query of the newest version
    answers without the objects it saves; a reindex once its processes stopped makes them
    ready. An index it declares that the newest version does not (or declares as another
    kind) is ``stale`` for it: the newest version's saves leave it out, so this process's
    queries of it raise IndexNotReadyError. Answers the record as this process sees it."""
    check(spec, record, schema, owner, older=True)
    newest = record.schema.get("indexes", {})
    mine = schema["indexes"]
    args: list[str] = []
    for name, kind in newest.items():
        if mine.get(name) != kind and record.states.get(name) == READY:
            args += [name, READY, BUILDING]
    for name in mine:
        if name not in newest and name not in record.states:  # it adds entries again
            args += [name, "", STALE]
    if args:
        reply = yield Batch([STATES.call([record.key], [*args, new_version()])],
                            write=True, idempotent=True, keys=[record.key])
        if int(reply[0]) < 0:  # a bucket move began since the record was read
            moved = yield from read_plan(record.key)
            raise moving_error(spec, moved or record, owner)
    after = dict(record.states)
    after.update({n: BUILDING for n in args[::3] if n in newest})
    view = {name: (after.get(name, READY) if newest.get(name) == kind else STALE)
            for name, kind in mine.items()}
    return attrs.evolve(record, states=view, stored=after)


def check(spec: ModelSpec, record: Record, schema: dict[str, Any], owner: str,
          older: bool = False) -> None:
    """Raise SchemaConflictError if the record refuses this model."""
    if record.moving:
        raise moving_error(spec, record, owner or owner_of(spec.cls))
    if owner and record.owner and record.owner != owner:
        raise SchemaConflictError(
            f"prefix {spec.prefix!r} belongs to the model {record.owner} (registry "
            f"{record.key}); {owner} cannot store objects there too: give one of them "
            "another prefix (@redmodel.model(prefix=...))",
            prefix=spec.prefix, key=record.key, owner=record.owner, model=owner)
    problems = problems_of(record.schema, schema, older) if record.schema else []
    if problems:
        raise SchemaConflictError(
            f"{owner or owner_of(spec.cls)}"
            f"{' (an older version, still running?)' if older else ''} does not match "
            f"the objects stored under "
            f"prefix {spec.prefix!r} (registry {record.key}): " + "; ".join(problems),
            prefix=spec.prefix, key=record.key, owner=record.owner,
            model=owner or owner_of(spec.cls), problems=tuple(problems))


def containers_error(spec: ModelSpec, record: Record, owner: str,
                     where: str = "recorded by the container registry"
                     ) -> SchemaConflictError:
    """The refusal of a model whose key space holds recorded container keys (those of
    ``record.containers``)."""
    shown = ", ".join(repr(k) for k in record.containers[:3]) + (
        f" (and {len(record.containers) - 3} more)" if len(record.containers) > 3 else "")
    return SchemaConflictError(
        f"{owner}: prefix {spec.prefix!r} with delimiter {spec.delimiter!r} holds "
        f"containers {where} ({shown}; registry {record.key}): "
        f"its SCAN pattern {key_space(spec.prefix, spec.delimiter)}* matches their keys, "
        "so the model would take them for its objects (scan, count, delete); give the "
        "model another prefix, or clear() those containers first",
        prefix=spec.prefix, key=record.key, owner=record.owner, model=owner,
        problems=tuple(f"container {k}" for k in record.containers))


def moving_error(spec: ModelSpec, record: Record, owner: str, what: str = "use the model"
                 ) -> SchemaConflictError:
    """The refusal of anything but ``migrate_buckets`` while a bucket move is under way."""
    return SchemaConflictError(
        f"{owner}: the objects under prefix {spec.prefix!r} are being moved to another "
        f"bucket count ({record.moving}; registry {record.key}): no store may {what} "
        f"until store.migrate_buckets({spec.cls.__qualname__}, from_buckets=...) has "
        "finished (run it again to resume a move that stopped)",
        prefix=spec.prefix, key=record.key, owner=record.owner, model=owner,
        problems=(f"moving {record.moving}",))


def not_moving(spec: ModelSpec, what: str) -> Plan[Record | None]:
    """Read the prefix's record and raise SchemaConflictError if a bucket move is under
    way: the registry and index maintenance (``unregister``, ``drop_index``, ``reindex``,
    ``build_index``) must not change what the move is rebuilding. Answers the record."""
    key = registry_key(spec.prefix)
    record = yield from read_plan(key)
    if record is not None and record.moving:
        raise moving_error(spec, record, owner_of(spec.cls), what)
    return record


def unmoved(spec: ModelSpec, what: str, plan: G) -> G:
    """``plan``, after :func:`not_moving` (read before it sends anything)."""
    return cast("G", _before_sending(not_moving(spec, what), plan))


def _before_sending(first: Plan[Any], plan: G) -> Generator[Any, Any, Any]:
    """Run ``plan``, with ``first`` run before it sends anything but after it built its
    first batch: the plan validates its input before the registry is written, so bad input
    still leaves nothing written. A plan that sends nothing runs alone."""
    try:
        step = next(plan)
    except StopIteration as stop:
        return stop.value
    yield from first
    while True:
        try:
            got = yield step
        except GeneratorExit:
            plan.close()
            raise
        except BaseException as e:  # a batch's failure goes to the plan that sent it
            try:
                step = plan.throw(e)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            step = plan.send(got)
        except StopIteration as stop:
            return stop.value


# ---- index keys ------------------------------------------------------------------------------

_KID = re.compile(r"[A-Za-z0-9_-]{4}")  # a key id as made (_blind._kid): 3 bytes, base64
#: a blind model registered without checking its keys (rotate_index_key): no key ids equal
#: it, so the store's next use of the model registers it again and checks them
_UNCHECKED: tuple[str, ...] = ("",)


def has_blind(spec: ModelSpec) -> bool:
    """Whether the model has a blind index (its entries are made under index keys)."""
    return spec.indexes is not None and any(
        f.blind is not None for f in spec.indexes.fields.values())


def keys_plan(spec: ModelSpec, record: Record, kids: tuple[str, ...]) -> Plan[None]:
    """Check the index keys this process is configured with (``kids``, newest first)
    against the ids the record holds (``indexkeys``): nothing is sent when the record as
    read holds only configured ids and the newest; else one script call
    (registry_keys.lua) checks again and adds the newest. Raises :class:`CodecError`
    when a held id is not configured: this process would miss the entries under it (its
    blind lookups answer nothing) and could take a unique value they hold again."""
    held = record.index_keys
    if held is not None and kids[0] in held and set(held) <= set(kids):
        return
    replies = yield Batch([INDEX_KEYS.call([record.key], ["use", *kids])], write=True,
                          idempotent=True, keys=[record.key])
    status, text = (_str(r) for r in replies[0])
    if status == "MISSING":
        raise keys_error(spec, record.key, tuple(text.split()), kids)


def keys_error(spec: ModelSpec, key: str, held: tuple[str, ...], kids: tuple[str, ...]
               ) -> CodecError:
    """The refusal of a process whose index keys miss some the data is indexed under
    (key ids only: an id tells which key made an entry and nothing about the key). What
    the record holds that is no key id (written by hand: anything, a key even) is only
    counted, and at most 8 ids are named (38L F5: the field was repeated whole)."""
    missing = [k for k in held if k not in kids]
    ids = [k for k in missing if _KID.fullmatch(k)]
    named = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
    odd = len(missing) - len(ids)
    if odd:
        named += (f"{' and ' if ids else ''}{odd} entr{'y' if odd == 1 else 'ies'} that "
                  "are no key id (written outside redmodel)")
    return CodecError(
        f"{spec.name}: its blind index entries are under index key id(s) "
        f"{named} (recorded in {key}), which this process is not configured "
        f"with (its index keys have id(s) {', '.join(kids)}, newest first): its blind "
        "lookups would miss those entries and a unique value held under them could be "
        "taken again. Configure the keys the data was indexed under (newest first); if "
        "those ids are of keys that are lost or were never right, run "
        f"store.rotate_index_key({spec.name}) in a process configured with the right "
        "keys: it enters every object under its newest key and records that "
        "(docs/codecs.md, \"Which keys the data is under\")")


def rewrite_begins(spec: ModelSpec) -> Plan[tuple[str, tuple[str, ...]] | None]:
    """At the start of a run that enters every blind entry of the model under the newest
    index key (``rotate_index_key``; a ``reindex`` that does not take up a stopped run):
    the newest key's id is added to the record's ``indexkeys`` first (a run stopped
    midway leaves entries under it: 38L F1), and what the field held before is returned
    with the ids of the keys configured now (one script call, registry_keys.lua
    'begin'). None (nothing sent) for a model without a blind index, or a process
    without keys."""
    kids = configured_kids() if has_blind(spec) else None
    if kids is None:
        return None
    key = registry_key(spec.prefix)
    replies = yield Batch([INDEX_KEYS.call([key], ["begin", kids[0]])], write=True,
                          idempotent=True, keys=[key])
    assert replies is not None
    return (_str(replies[0][1]), kids)


def rewrite_ends(spec: ModelSpec, begun: tuple[str, tuple[str, ...]] | None) -> Plan[None]:
    """At the end of that run, whole and under the same keys: the record's ``indexkeys``
    becomes the newest key's id, and any id another process added meanwhile (one script
    call, registry_keys.lua 'rewritten'). A run whose keys changed meanwhile records
    nothing (the entries of its first pages are under the keys of then)."""
    if begun is None or configured_kids() != begun[1]:
        return
    key = registry_key(spec.prefix)
    yield Batch([INDEX_KEYS.call([key], ["rewritten", begun[1][0], begun[0]])],
                write=True, idempotent=True, keys=[key])


class _Checked(set[type]):
    """The models a store checked in the registry. A model with a blind index counts as
    checked only while the process's index keys have the ids it was checked with
    (``kids``; None: no keys were configured then): once they change (configured again, a
    key provider or file answering other keys), the next use registers it again, and so
    checks the new keys (:func:`keys_plan`)."""

    def __init__(self) -> None:
        super().__init__()
        self.kids: dict[type, tuple[str, ...] | None] = {}

    def __contains__(self, cls: object) -> bool:
        if not set.__contains__(self, cls):
            return False
        if not self.kids or cls not in self.kids:
            return True
        return self.kids[cls] == configured_kids()


class _Everything:
    """The checked set of a store without a registry: every model counts as checked."""

    def __contains__(self, item: object) -> bool:
        return True

    def add(self, item: object) -> None:
        pass


class Registry:
    """A store's view of the registry: the models it checked (in memory) and which of
    their indexes were not ready when it last looked."""

    def __init__(self, enabled: bool, targets: Callable[[], Sequence[Any]]) -> None:
        self.enabled = enabled
        self.checked: _Checked | _Everything = _Checked() if enabled else _Everything()
        self.pending: dict[type, frozenset[str]] = {}
        self.containers: set[Any] = set()  # container keys checked (_container_registry)
        # first uses under way (sent, not finished), each counted per concurrent use: a
        # model's (class -> count) and a container key's (key -> count). A first use is
        # checked against what this store used AND what it is first using, and counted
        # here in the same step, under ``_lock`` (32C F2: two overlapping first uses run by
        # threads on one Store, or tasks on one AsyncStore, each checked the other's set
        # before the other was in it). The lock is taken only around code that neither
        # awaits nor sends (plans run it between their batches): no task or thread waits
        # for it across a round trip.
        self._lock = threading.RLock()
        self._models_under_way: dict[type, int] = {}
        self._keys_under_way: dict[str, int] = {}
        self._targets = targets
        self._records: dict[type, Record] = {}
        self._checks: dict[tuple[type, frozenset[str]], tuple[str, str, str] | None] = {}

    def _learn(self, cls: type, record: Record | None,
               kids: tuple[str, ...] | None = _UNCHECKED) -> None:
        self.pending[cls] = frozenset() if record is None else record.pending()
        self.checked.add(cls)
        if isinstance(self.checked, _Checked) and has_blind(spec_of(cls)):
            self.checked.kids[cls] = kids
        if record is None:
            self._records.pop(cls, None)
        else:
            self._records[cls] = record
        for k in [k for k in self._checks if k[0] is cls]:
            del self._checks[k]

    def step_check(self, cls: type, needs: frozenset[str]) -> tuple[str, str, str] | None:
        """What a query step checks in the registry, in its own script call, before it
        reads an index: ``(registry key, version, "")`` for a record with a version (the
        one field the script compares: every write that changes a state, the schema or
        ``moving`` gives the record a new one), else ``(registry key, marker,
        expected)``, where ``marker`` is the ``was:<digest>`` field that appears once the
        schema this store read is replaced, and ``expected`` the needed state fields, each
        followed by the value this store read ('' for absent), joined by newlines. The
        script answers ``R`` when the version differs (or the record is there without
        one), or anything differs or ``moving`` is set (a record that is gone, deleted by
        ``unregister`` or FLUSHALL, records no state: the store's view holds): the plan
        registers again
        (raising IndexNotReadyError or SchemaConflictError as a first use would) and asks
        again. None without a registry (nothing to check); ``("", "", "")`` when this
        store cannot check in the script (it has not read the record, or the schema's
        marker is already in the record: a schema adopted back): the query reads the
        record first."""
        if not self.enabled:
            return None
        key = (cls, needs)
        out = self._checks.get(key)
        if out is not None:
            return out
        record = self._records.get(cls)
        out = ("", "", "")
        if record is not None and record.text:
            marker = was_field(record.text)
            if marker not in record.older and record.version:
                out = (record.key, record.version, "")
            elif marker not in record.older:
                stored = record.states if record.stored is None else record.stored
                out = (record.key, marker,
                       "\n".join(f"{n}\n{stored.get(n, '')}" for n in sorted(needs)))
        self._checks[key] = out
        return out

    def model_holding(self, key: str) -> ModelSpec | None:
        """A model this store uses, or is first using, whose key space shares keys with
        the container ``key`` (:func:`holds_container`), or None."""
        if not isinstance(self.checked, set):
            return None
        with self._lock:
            for cls in sorted({*self.checked, *self._models_under_way}, key=owner_of):
                spec = spec_of(cls)
                if holds_container(key_space(spec.prefix, spec.delimiter), key):
                    return spec
        return None

    def begin_container(self, key: str) -> ModelSpec | None:
        """A first use of the container ``key`` begins: the model this store uses or is
        first using that holds its keys (:meth:`model_holding`), or None; when None, in the
        same step (under the lock) the key counts as under way, so a model's first use from
        now on meets it (:meth:`register`), until :meth:`end_container`."""
        with self._lock:
            spec = self.model_holding(key)
            if spec is None:  # else the use is refused (or, clear(), never recorded)
                self._keys_under_way[key] = self._keys_under_way.get(key, 0) + 1
            return spec

    def end_container(self, key: str, mark: Any = None) -> None:
        """The first use of ``key`` ended; ``mark``: it succeeded, and the store knows the
        key as checked from now on (added in the same step it stops being under way)."""
        with self._lock:
            if mark is not None:
                self.containers.add(mark)
            left = self._keys_under_way.get(key, 0) - 1
            if left > 0:
                self._keys_under_way[key] = left
            else:
                self._keys_under_way.pop(key, None)

    def forget(self, cls: type) -> None:
        """Read the record again on the next use of ``cls``."""
        with self._lock:
            if isinstance(self.checked, _Checked):
                self.checked.discard(cls)
                self.checked.kids.pop(cls, None)
            self.pending.pop(cls, None)
            self._records.pop(cls, None)
            for k in [k for k in self._checks if k[0] is cls]:
                del self._checks[k]

    def _refuse_overlaps(self, spec: ModelSpec, checked: set[type]) -> None:
        """Raise SchemaConflictError if a model or container key this store uses, or is
        first using, shares keys with ``spec``'s (call under the lock)."""
        # a model this store uses already (or is first using), either way
        for cls in sorted({*checked, *self._models_under_way}, key=owner_of):
            other = spec_of(cls)
            if overlaps((spec.prefix, spec.delimiter), (other.prefix, other.delimiter)):
                raise overlap_error(spec, owner_of(spec.cls), other.prefix,
                                    other.delimiter, owner_of(cls))
        # a container key this store checked (or is first using), wherever its record's
        # marks are (the registry records meet only at the key's ':'-prefixes and the key
        # itself)
        space = key_space(spec.prefix, spec.delimiter)
        inside = tuple(sorted({k for k in (*(m[0] for m in self.containers),
                                           *self._keys_under_way)
                               if holds_container(space, k)}))
        if inside:
            raise containers_error(spec, Record(registry_key(spec.prefix), "", "", {},
                                                {}, containers=inside),
                                   owner_of(spec.cls), "this store uses")

    def register(self, spec: ModelSpec, adopt: bool = False, check_keys: bool = True
                 ) -> Plan[Record]:
        """Register ``spec``'s model (:func:`register_plan`) and remember it checked.

        **Index keys.** For a model with a blind index, the record holds the ids of the
        index keys its blind equality entries may be under (``indexkeys``). Unless
        ``check_keys`` is false (``rotate_index_key`` and ``reindex``, which enter every
        entry under the newest key and record it: how a record is repaired), a
        process configured with index keys is refused (:class:`CodecError`, nothing
        written) when an id there is not one of its keys, and adds its newest key's id
        otherwise (:func:`keys_plan`: nothing sent when the record already has it). A
        process with no index keys is not checked until it has some (its blind lookups
        and writes raise that they are missing). The check is made again at the next use
        after the process's keys change (:class:`_Checked`)."""
        if not isinstance(self.checked, _Checked):
            record = yield from register_plan(spec, self._targets(), adopt)
            self._learn(spec.cls, record)
            return record
        cls = spec.cls
        checked = self.checked
        with self._lock:  # check and count as under way in one step (32C F2)
            self._refuse_overlaps(spec, checked)
            self._models_under_way[cls] = self._models_under_way.get(cls, 0) + 1
        try:
            record = yield from register_plan(spec, self._targets(), adopt)
            kids: tuple[str, ...] | None = _UNCHECKED
            if check_keys and has_blind(spec):
                kids = configured_kids()
                if kids is not None:
                    yield from keys_plan(spec, record, kids)
            with self._lock:
                self._learn(cls, record, kids)
        finally:
            with self._lock:
                left = self._models_under_way.get(cls, 0) - 1
                if left > 0:
                    self._models_under_way[cls] = left
                else:
                    self._models_under_way.pop(cls, None)
        return record

    def use(self, cls: type, plan: G, check_keys: bool = True) -> G:
        """``plan`` (a plan or an iteration plan), after registering ``cls`` if this store
        has not yet (``check_keys``: see :meth:`register`). A model argument that is no
        class raises ModelDefinitionError (before it is hashed); a class that is no model,
        when the plan starts."""
        if not isinstance(cls, type):
            model_class(cls)
        if cls in self.checked:
            return plan
        return cast("G", self._first(cls, plan, check_keys))

    def _first(self, cls: type, plan: G, check_keys: bool = True
               ) -> Generator[Any, Any, Any]:
        return (yield from _before_sending(
            self.register(spec_of(cls), check_keys=check_keys), plan))

    def ready_for(self, objs: Sequence[Any]) -> Plan[None]:
        """Register every model of ``objs`` this store has not yet: run by a bulk call on
        each chunk before sending it (a streamed input's models are not known earlier)."""
        for cls in sorted({type(o) for o in objs if type(o) not in self.checked},
                          key=owner_of):
            yield from self.register(spec_of(cls))

    def known_ready(self, cls: type, needs: frozenset[str]) -> bool:
        """Whether this store already knows every index of ``needs`` ready (it checked
        ``cls`` and none of them is pending): :meth:`needing` then sends nothing first."""
        return cls in self.checked and not self.pending.get(cls, _NO_NEEDS) & needs

    def needing(self, spec: ModelSpec, needs: frozenset[str], plan: G,
                recheck: bool = False) -> G:
        """``plan`` (a plan or an iteration plan), after checking that every index it
        reads is ready: nothing is sent when this store already knows they are (unless
        ``recheck``: a query that cannot check the registry in its own script call, on a
        cluster, reads the record again first)."""
        cls = spec.cls
        if self.known_ready(cls, needs):
            if not recheck:
                return plan
            return cast("G", _before_sending(self.confirm(spec, needs), plan))
        return cast("G", self._needing_checked(spec, needs, plan))

    def confirm(self, spec: ModelSpec, needs: frozenset[str]) -> Plan[None]:
        """What a query step checks in its script (:meth:`step_check`), as a read of its
        own (one pipelined HGET per field): for a query that cannot check in its script
        call (on a cluster the record lives in another slot). The store registers again
        when the record differs from what it read; a record that is gone records no
        state."""
        check = self.step_check(spec.cls, needs)
        if check is None:
            return
        key, marker, expected = check
        if not key:  # nothing to compare with: read the record, as a first use does
            yield from self.recheck(spec, needs)
            return
        if not marker.startswith(WAS):  # the record's version (query.lua's rule)
            replies = yield Batch([("HGET", key, VERSION), ("HGET", key, "owner")],
                                  keys=[key, key])
            version = None if replies[0] is None else _str(replies[0])
            if version != marker and (version is not None or replies[1] is not None):
                yield from self.recheck(spec, needs)
            return
        parts = expected.split("\n")
        fields = ["owner", "moving", marker, *parts[::2]]
        # HGET per field, pipelined (the ACL rule of indexes and queries grants HGET)
        replies = yield Batch([("HGET", key, f) for f in fields], keys=[key] * len(fields))
        got = [None if v is None else _str(v) for v in replies]
        if got[0] is None:
            return
        if got[1] is not None or got[2] is not None or any(
                (v or "") != want for v, want in zip(got[3:], parts[1::2], strict=True)):
            yield from self.recheck(spec, needs)

    def recheck(self, spec: ModelSpec, needs: frozenset[str]) -> Plan[None]:
        """Register again (the record changed since this store read it): raises
        IndexNotReadyError for a needed index that is not ready, SchemaConflictError for
        a record that now refuses the model."""
        yield from self._needing(spec, needs, _nothing())

    def _needing(self, spec: ModelSpec, needs: frozenset[str], plan: G
                 ) -> Generator[Any, Any, Any]:
        # the first use, or another process may have built it since: look again (as a
        # first use does, so an older version sees the record as an older version)
        record = yield from self.register(spec)
        states = record.states
        for name in sorted(needs, key=lambda n: (n == ALL, n)):
            state = states.get(name, READY)
            if state != READY:
                raise not_ready(spec, name, state)
        return (yield from plan)

    def _needing_checked(self, spec: ModelSpec, needs: frozenset[str], plan: G
                         ) -> Generator[Any, Any, Any]:
        return (yield from _before_sending(self._needing(spec, needs, _nothing()), plan))

    def unregister(self, spec: ModelSpec) -> Plan[int]:
        """Delete the model's fields of the prefix's record (the container registry's marks
        stay), in two script calls of a per-call token (registry_unregister.lua): ``mark``
        answers whether there is a record and marks it with the token, ``drop`` deletes
        it if it still holds a mark (this call's or a racing unregister's: 32G F2; a
        registration since the marks deletes them, and then it stays). ``mark`` is resent
        after a lost reply and answers as its first run did (the token says it ran), so
        the answer is whether there was a record at the mark whatever reply was lost
        (32C F1); ``drop``'s answer is not used. Both refuse while a bucket move is under way
        (the record's ``moving`` keeps every store from using the prefix until the move
        ends). This store forgets every model of that prefix."""
        key = registry_key(spec.prefix)
        token = new_version()
        had = 0
        for step in ("mark", "drop"):
            replies = yield Batch([UNREGISTER.call([key], [step, token])], write=True,
                                  idempotent=True, keys=[key])
            if isinstance(replies[0], list):
                record = Record(key, "", "", {}, {}, moving=_str(replies[0][1]))
                raise moving_error(spec, record, owner_of(spec.cls), "unregister the model")
            if step == "mark":
                had = int(replies[0])
                if not had:
                    break
        if isinstance(self.checked, set):
            with self._lock:
                for cls in [c for c in self.checked if spec_of(c).prefix == spec.prefix]:
                    self.forget(cls)
        return had

    def mark_ready(self, spec: ModelSpec) -> Plan[int]:
        """After a complete reindex: every index of the model still building is ready."""
        if not self.enabled:
            return 0
        key = registry_key(spec.prefix)
        record = yield from read_plan(key)
        recorded = {} if record is None else record.schema.get("indexes", {})
        args: list[str] = []
        for name, kind in index_kinds(spec).items():
            if record is None or not record.schema or recorded.get(name) == kind:
                # an older version's reindex builds what it declares: never the newest's
                args += [name, BUILDING, READY]
        if record is not None and record.moving:
            raise moving_error(spec, record, owner_of(spec.cls), "mark its indexes ready")
        if not args:
            return 0
        replies = yield Batch([STATES.call([key], [*args, new_version()])], write=True,
                              idempotent=True, keys=[key])
        if int(replies[0]) < 0:  # a bucket move began since the read
            moved = yield from read_plan(key)
            raise moving_error(spec, moved or Record(key, "", "", {}, {}, moving="?"),
                               owner_of(spec.cls), "mark its indexes ready")
        self.pending[spec.cls] = self.pending.get(spec.cls, frozenset()) - set(args[::3])
        return int(replies[0])


def _nothing() -> Plan[None]:
    return None
    yield  # a generator


def not_ready(spec: ModelSpec, name: str, state: str) -> IndexNotReadyError:
    kind, _, field = name.partition(":")
    what = ("the all-ids index" if field == "%all" else
            f"the unique index {field!r}" if kind == "unique" else f"the index of {field!r}")
    build = ("store.reindex({m})" if field == "%all" or kind == "unique"
             else "store.build_index({m}, {f!r}) (or store.reindex({m}))")
    return IndexNotReadyError(
        f"{spec.name}: {what} is {state} (registry {registry_key(spec.prefix)}): it was "
        "added while objects were stored without it, so it would answer without them; "
        f"build it with {build.format(m=spec.name, f=field)} or `redmodel reindex -m "
        f"{module_name(spec.cls.__module__)}:{spec.cls.__qualname__}`",
        model=spec.name, index=name, state=state)


def check_declared(spec: ModelSpec, name: str) -> None:
    """Raise ValidationError unless ``name`` is a field index or unique constraint of the
    model."""
    kinds = index_kinds(spec)
    if f"index:{name}" not in kinds and f"unique:{name}" not in kinds:
        raise ValidationError(f"{spec.name} declares no index {name!r}", model=spec.name)


def query_needs(spec: ModelSpec, fields: Iterable[str]) -> frozenset[str]:
    """The index state fields a query over ``fields`` reads."""
    return frozenset([ALL, *(f"index:{n}" for n in fields)])


def get_by_needs(spec: ModelSpec, names: Iterable[str]) -> frozenset[str]:
    wanted = set(names)
    if spec.indexes is None:
        return frozenset()
    return frozenset(f"unique:{u.name}" for u in spec.indexes.uniques
                     if set(u.fields) == wanted)


# ---- dropping an index -----------------------------------------------------------------------

def drop_index_plan(spec: ModelSpec, name: str, targets: Sequence[Any], count: int = 500
                    ) -> Plan[int]:
    """Delete the entries of an index the model no longer declares (a field index by
    field name, or a unique constraint by its name: ``"sku"``, ``"color,style"``), the
    lines its entries left in each object's index record, and its registry state; for a
    model that declares no index any more, the all-ids index, the records and the expiry
    index too. Answers how many entry keys (sets, sorted sets, unique hashes) were
    deleted."""
    count = page_count(count, model=spec.name)
    d = spec.delimiter
    declared = index_kinds(spec)
    if f"index:{name}" in declared or f"unique:{name}" in declared:
        raise ValidationError(
            f"{spec.name} still declares the index {name!r}: remove it from the model "
            "first (its writes would only add the entries back)", model=spec.name)
    yield from not_moving(spec, "drop an index of the model")
    deleted = 0
    for tag in spec.tags():
        root = spec.index_root(tag)
        direct = [f"{root}rng{d}{name}", f"{root}uq{d}{name}"]
        replies = yield Batch([("DEL", k) for k in direct], write=True, idempotent=True,
                              keys=direct)
        deleted += sum(int(r) for r in replies)
    pattern = _eq_pattern(spec, name)
    for target in targets:
        cursor = 0
        while True:
            replies = yield Batch([("SCAN", cursor, "MATCH", pattern, "COUNT", count,
                                    "TYPE", "set")], target=target)
            cursor, raw = replies[0]
            if isinstance(cursor, dict):
                cursor = next(iter(cursor.values()))
            cursor = int(cursor)
            keys = [_str(k) for k in raw]
            if keys:
                replies = yield Batch([("DEL", k) for k in keys], write=True,
                                      idempotent=True, keys=keys)
                deleted += sum(int(r) for r in replies)
            if cursor == 0:
                break
    for tag in spec.tags():
        rec = spec.index_root(tag) + "rec"
        cursor = 0
        while True:
            replies = yield Batch([("HSCAN", rec, cursor, "COUNT", count)], keys=[rec])
            cursor, raw = replies[0]
            cursor = int(cursor)
            pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2],
                                                                  strict=True)
            marks = (f"e\x1f{name}\x1f", f"r\x1f{name}\x1f", f"u\x1f{name}\x1f")
            ids = [_str(i) for i, lines in pairs
                   if any(line.startswith(marks) for line in _str(lines).split("\n"))]
            if ids:
                yield Batch([DROP_LINES.call([rec], [name, *ids])], write=True,
                            idempotent=True, keys=[rec])
            if cursor == 0:
                break
    states = [f"index:{name}", f"unique:{name}"]
    if spec.indexes is None:  # its last index: the all-ids index and records go too
        for tag in spec.tags():
            root = spec.index_root(tag)
            yield from _drop_pages(root, d, count)
            keys = [root + "all", root + "rec", root + "exp", root + "ids", root + "idn"]
            yield Batch([("DEL", k) for k in keys], write=True, idempotent=True, keys=keys)
        states.append(ALL)
    key = registry_key(spec.prefix)
    # each state goes whatever it was ('*'), and the record gets a new version: a query of
    # a store that read the state sees the change (registry_state.lua)
    reply = yield Batch([STATES.call([key], [*(x for n in states for x in (n, "*", "")),
                                            new_version()])],
                        write=True, idempotent=True, keys=[key])
    if int(reply[0]) < 0:  # a bucket move began since not_moving read the record
        yield from not_moving(spec, "drop an index of the model")
    return deleted


def _drop_pages(root: str, d: str, count: int) -> Plan[None]:
    """Delete the all-ids pages of one bucket (redmodel/lua/ids_lib.lua: directory ``root
    ids``, the page of bound ``b`` at ``root ids d b``), ``count`` pages a step: each step
    deletes pages and their bounds from the directory together, so a drop stopped between
    two steps goes on where it was (the directory and the count go last, with the rest)."""
    directory = root + "ids"
    while True:
        replies = yield Batch([("ZRANGE", directory, 0, count - 1)], keys=[directory])
        bounds = [b if isinstance(b, bytes) else str(b).encode() for b in replies[0]]
        if not bounds:
            return
        head = (directory + d).encode("utf-8", "surrogateescape")  # bounds are ids: bytes
        pages = [head + b for b in bounds]
        yield Batch([("DEL", *pages), ("ZREM", directory, *bounds)], write=True,
                    idempotent=True, keys=[directory])  # the pages share its slot


def _eq_pattern(spec: ModelSpec, name: str) -> str:
    d = spec.delimiter
    tail = glob_escape(f"{d}%idx{d}eq{d}{name}{d}") + "*"
    if spec.buckets is None:
        return glob_escape(spec.prefix) + tail
    return glob_escape(f"{spec.prefix}{d}") + "{*}" + tail


# ---- listing ----------------------------------------------------------------------------

def list_plan(targets: Sequence[Any], count: int = 500) -> IterPlan:
    """Every registry record of the database: SCAN for ``*:%schema`` keys on every
    target, their TYPE, then HGETALL of each hash, emitted a page at a time (a record
    :func:`parse` cannot read, or a key of another type, is emitted as its
    SchemaConflictError, so one bad record hides none of the others)."""
    for target in targets:
        cursor = 0
        while True:
            replies = (yield Batch([("SCAN", cursor, "MATCH", "*" + glob_escape(SUFFIX),
                                     "COUNT", count)], target=target)) or []
            cursor, raw = replies[0]
            if isinstance(cursor, dict):
                cursor = next(iter(cursor.values()))
            cursor = int(cursor)
            found = sorted(_str(k) for k in raw)
            records: list[Record | SchemaConflictError] = []
            keys: list[str] = []
            if found:
                # a key of another type there breaks every store's first use of the
                # prefix (WRONGTYPE): listed as unreadable, not skipped
                types = (yield Batch([("TYPE", k) for k in found], keys=found)) or []
                for k, t in zip(found, types, strict=True):
                    kind = _str(t)
                    if kind == "hash":
                        keys.append(k)
                    elif kind != "none":  # "none": deleted since the SCAN
                        records.append(corrupt(k, "", f"the key is a {kind}, not the "
                                                      "registry's hash"))
            if keys:
                got = (yield Batch([("HGETALL", k) for k in keys], keys=keys)) or []
                for k, r in zip(keys, got, strict=True):
                    try:
                        record = parse(k, r)
                    except SchemaConflictError as e:  # listed as unreadable: the rest go on
                        records.append(e)
                        continue
                    if record is not None:
                        records.append(record)
            if records:
                yield Emit(records)
            if cursor == 0:
                break


def prefix_of(record: Record) -> str:
    return record.key[: -len(SUFFIX)]
