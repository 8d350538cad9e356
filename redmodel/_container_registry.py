"""The container registry: what each container key holds, so that two programs that read
one key differently are refused instead of misreading each other.

A container (Queue, Set, SortedSet, WindowCounter) records at a store's first use of its
key a hash ``<key>:{<key>}:%container`` (:func:`redmodel._models._keys.slot_prefix`: in the
key's cluster hash slot, and under the key's own name, so the ACL and SCAN patterns of the
key cover it): ``kind`` (the class), ``type`` (the member type), ``codec`` (the member
encoding: ``native`` or a codec chain's name) and, for a WindowCounter, ``window``. A
later first use with another kind, type, encoding or window raises
:class:`SchemaConflictError` naming both, before anything is written.

A container and a model never share a key (:func:`redmodel._indexes._registry.
holds_container`: one of the model's ``prefix + delimiter`` and the container's ``key:``
starts the other, whatever the delimiter). A store checks that against every model and
container key it used, in either order, with no round trip. Across processes the
registry records of the key's ``:``-prefixes are where the two meet: a container's first
use reads each one's ``owner`` and ``schema`` (for the delimiter), and the key's own, and
refuses a model there whose key space holds its keys; a new key marks each ``:``-prefix's
record (a WindowCounter its own key's too) with a field ``container:<key>``, which a
model's first registration of that prefix reads (with the HGETALL it sends anyway) and
refuses when its key space holds the key's; the registration script refuses such a mark
too, and the container reads the owner again after marking, so of a model and a
container racing for a prefix one always sees the other. Every step is idempotent and a
first use that finds the record (as it wants it) without its marks writes them, so a
first use ends in one registry state whatever fails between claim and marks (a lost
reply resent, a cut, a stall, the resends running out, a process stopped): 31J F1.
A model whose prefix is none of those records (``p`` with ``|`` for the key
``p|x``), or is a Queue's, Set's or SortedSet's own key and came second, only a store
that uses both refuses: meeting it across processes would take a record at every
character of the key (outside the keys an ACL user is granted), or one more hash per key.

The cost: one round trip on a store's first use of a container key (HGETALL of the
record, pipelined with two HGETs per ``:``-prefix of the key and the key itself), plus one
EVALSHA the first time the key is ever used (it creates the record) and, for a key with
``:`` or a WindowCounter, one pipeline of HSET/HGET marking those records (the first
read also HGETs the key's mark in each of them: a missing one is written again);
remembered by
the store, nothing after. A
record never expires: ``clear()`` deletes it with the key (and the marks), ``expire()``
expires the key only (a key emptied and filled again loses its expiry; a record that
expired with the old key would leave the new data unchecked). ``Store(...,
registry=False)`` records and checks nothing.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Generator
from typing import Any, TypeVar, cast

from redmodel._errors import SchemaConflictError
from redmodel._indexes._registry import (
    _before_sending,
    _str,
    holds_container,
    owner_of,
    registry_key,
    type_name,
)
from redmodel._models._keys import slot_prefix
from redmodel._plan import Batch, Plan, script

__all__ = ["first_use", "forget", "guard_plans", "guarded", "record_key", "unmark_commands"]

SUFFIX = ":%container"
CLAIM = script("container_registry")
CONTAINER_FIELD = "container:"
G = TypeVar("G", bound=Generator[Any, Any, Any])
C = TypeVar("C", bound=type)


def record_key(key: str) -> str:
    """The record of a container key: ``jobs`` -> ``jobs:{jobs}:%container``."""
    return slot_prefix(key) + SUFFIX


def describe(container: Any) -> dict[str, str]:
    """What the record holds for ``container``."""
    kind = type(container).__name__
    if hasattr(container, "window"):  # a WindowCounter: counts, no members
        return {"kind": kind, "type": "int", "codec": "native",
                "window": str(container.window)}
    return {"kind": kind, "type": type_name(container.type),
            "codec": container.encoding.name}


def _said(record: dict[str, str]) -> str:
    what = f"{record.get('kind', '?')} of {record.get('type', '?')}"
    if record.get("codec") not in (None, "native"):
        what += f" (codec {record['codec']})"
    if "window" in record:
        what = f"{record.get('kind', '?')} (window {record['window']} s)"
    return what


def _prefixes(key: str) -> list[str]:
    """The registry records a container key's first use reads: each ``:``-prefix of the
    key (``a``, ``a:b`` of ``a:b:c``) and the key itself (a model there with delimiter
    ``:`` SCANs the key's record ``<key>:{<key>}:%container``; a WindowCounter's counts)."""
    parts = key.split(":")
    return [":".join(parts[:i]) for i in range(1, len(parts))] + [key]


def _marked(key: str, counter: bool) -> list[str]:
    """The registry records a new container key marks: each ``:``-prefix, and a
    WindowCounter's own key (its counts lie under it). A Queue, Set or SortedSet does not
    mark its own key: that would be one more hash per key, for a model of the key's own
    name, whose keys share nothing with the container's but its SCAN pattern (the
    record's ``%container`` is no id to it); a store that uses both refuses it."""
    return _prefixes(key) if counter else _prefixes(key)[:-1]


def _delimiter(schema: Any) -> str:
    """The delimiter a model registry record's ``schema`` names (``:`` when it names none
    or cannot be read: the registry refuses such a record to models anyway)."""
    if schema is None:
        return ":"
    try:
        found = json.loads(_str(schema)).get("delimiter")
    except (ValueError, AttributeError):
        return ":"
    return found if isinstance(found, str) and found else ":"


def check_plan(key: str, wanted: dict[str, str], local: Any = None,
               clearing: bool = False, mark: Any = None) -> Plan[bool]:
    """Check ``key``'s record against ``wanted`` and create it when there is none; raise
    SchemaConflictError (nothing written) on a difference. Answers whether the key is
    recorded now: a server out of memory (maxmemory) refuses to create a record, and the
    container still works (pops free memory), unchecked until a later first use.
    ``local``: the store's registry (:class:`redmodel._indexes._registry.Registry`), whose
    models are checked first, with no round trip. ``clearing``: the check of ``clear()``,
    which a model's key space holding the key's refuses only while the key holds a value
    (it may be the model's object); an empty key is cleared (its record, side keys and
    marks go), unrecorded. ``mark``: what ``local`` remembers once the key is checked
    (added when this answers True, in the step the key stops being under way)."""
    held: tuple[str, str, Any] | None = None
    if local is not None:
        # checked against the models this store uses or is first using, and (when none
        # holds it) counted as under way in the same step: of a model and a container
        # whose first uses overlap in time, one always meets the other (32C F2)
        spec = local.begin_container(key)
        if spec is None:
            return (yield from _ended(local, key, mark, _check(
                key, wanted, None, clearing)))
        held = (spec.prefix, spec.delimiter, owner_of(spec.cls))
        if not clearing:
            raise _inside(key, wanted, *held, store=True)
    return (yield from _check(key, wanted, held, clearing))


def _ended(local: Any, key: str, mark: Any, plan: Plan[bool]) -> Plan[bool]:
    """``plan``, then the key is no longer under way in the store ``local``; when ``plan``
    answered True, ``mark`` (if any) is added to the keys it checked in the same step."""
    done = False
    try:
        done = yield from plan
    finally:
        local.end_container(key, mark if done else None)
    return done


def _check(key: str, wanted: dict[str, str], held: tuple[str, str, Any] | None,
           clearing: bool) -> Plan[bool]:
    record = record_key(key)
    prefixes = _prefixes(key)
    counter = "window" in wanted
    marked = _marked(key, counter)
    mark = container_field(key)
    schemas = [registry_key(p) for p in prefixes]
    asks, names_of = _first_reads(key, record, prefixes, schemas, space=counter_of(key),
                                  counter=counter, marked=marked)
    if clearing:
        asks.append(("EXISTS", key))
    replies = yield Batch(asks, keys=[record, *schemas, *([key] if clearing else [])])
    if clearing:
        *replies, exists = replies
        if held is not None:
            if exists:
                raise _inside(key, wanted, *held, store=True)
            return False
    read = _grouped(names_of, replies[1:])
    model = _model_at(key, wanted, prefixes, read)
    if model is not None:
        if clearing and not exists:
            return False
        raise _inside(key, wanted, *model)
    found = _fields(replies[0])
    claimed_now = False
    if not found:
        args = [x for pair in sorted(wanted.items()) for x in pair]
        # early: a transaction's plan (tx.queue(q.push_plan(x))) sends it before MULTI
        claimed = yield Batch([CLAIM.call([record], args)], write=True, idempotent=True,
                              keys=[record], errors=True, early=True)
        if isinstance(claimed[0], Exception):
            if "maxmemory" in str(claimed[0]) or "OOM" in str(claimed[0]):
                return False
            raise claimed[0]
        # {}: this call wrote the record. Else what the record holds: another process's
        # first use, or this call's own first run whose reply was lost (the resend finds
        # what it wrote): which of the two cannot be told, and need not be (below)
        found = _fields(claimed[0])
        claimed_now = not found
    if found and found != wanted:
        problems = tuple(f"{name} {found.get(name)!r} recorded, {wanted.get(name)!r} here"
                         for name in sorted(set(found) | set(wanted))
                         if found.get(name) != wanted.get(name))
        raise SchemaConflictError(
            f"{key!r} holds a {_said(found)} (recorded by its first user in {record}); this "
            f"{_said(wanted)} would misread it: " + "; ".join(problems) + ". Use another "
            "key, or clear() the container (its key and record) if the old data may go",
            prefix=key, key=record, owner=_said(found), model=_said(wanted),
            problems=problems)
    # the marks: written by the first use that created the record, and completed by any
    # first use that finds the record (as this store wants it) without them (its creator
    # lost the reply of the claim, its marks failed, or it stopped between the two: 31J
    # F1); idempotent, so every way a first use can fail ends in the same registry state
    unmarked = any(_str_or_none(r.get(mark)) != _said(wanted)
                   for p, r in zip(prefixes, read, strict=True) if p in marked)
    if marked and (claimed_now or (unmarked and not clearing)):
        yield from _mark_prefixes(key, record, marked, wanted)
    return True


def _first_reads(key: str, record: str, prefixes: list[str], schemas: list[str], *,
                 space: str | None, counter: bool, marked: list[str]
                 ) -> tuple[list[Any], list[list[str] | None]]:
    """The reads of a store's first use of ``key``: HGETALL of its record, then per
    prefix the fields read of its model registry record (HGET each: the commands an ACL
    rule grants), or None for a WindowCounter's own key (HGETALL): its owner and schema;
    the mark of the counter whose keys this key has the shape of (``space``); this key's
    own mark in each record it marks (``marked``: a first use that finds the record
    without them completes them, 31J F1). Answers the commands and the fields per
    prefix."""
    asks: list[Any] = [("HGETALL", record)]
    names_of: list[list[str] | None] = []
    for prefix, k in zip(prefixes, schemas, strict=True):
        if counter and prefix == key:
            asks.append(("HGETALL", k))
            names_of.append(None)
            continue
        names = ["owner", "schema"]
        if prefix == space:
            names.append(container_field(prefix))
        if prefix in marked:
            names.append(container_field(key))
        asks += [("HGET", k, f) for f in names]
        names_of.append(names)
    return asks, names_of


def _grouped(names_of: list[list[str] | None], replies: list[Any]) -> list[dict[str, Any]]:
    """Per prefix, field -> value of what :func:`_first_reads` asked (its replies after
    the record's)."""
    read: list[dict[str, Any]] = []
    at = 0
    for asked in names_of:
        if asked is None:
            read.append(dict(_fields(replies[at])))
            at += 1
        else:
            read.append(dict(zip(asked, replies[at:at + len(asked)], strict=True)))
            at += len(asked)
    return read


def _str_or_none(raw: Any) -> str | None:
    return None if raw is None else _str(raw)


def _model_at(key: str, wanted: dict[str, str], prefixes: list[str],
              read: list[dict[str, Any]]) -> tuple[str, str, Any] | None:
    """From what was read of each prefix's model registry record (field -> value): (prefix,
    delimiter, owner) of a model whose key space holds this key's (it would take the
    container for one of its objects: the record's owner and its schema's delimiter say),
    or None. Raises for a container inside a WindowCounter's keys (or a counter around
    one)."""
    counter = "window" in wanted
    space = counter_of(key)
    for prefix, fields in zip(prefixes, read, strict=True):
        owner: Any = fields.get("owner")
        schema: Any = fields.get("schema")
        if counter and prefix == key:  # its own prefix: a model, or a key of its space
            inside = sorted(f[len(CONTAINER_FIELD):] for f in fields
                            if f.startswith(CONTAINER_FIELD)
                            and counter_of(f[len(CONTAINER_FIELD):]) == key)
            if owner is None and inside:
                raise _counts_into(key, wanted, inside[0], fields[CONTAINER_FIELD + inside[0]])
        elif prefix == space:
            other = fields.get(container_field(prefix))
            if owner is None and other is not None:
                raise _counts_into(prefix, {"kind": _str(other)}, key, _said(wanted))
        if owner is not None and holds_container(prefix + _delimiter(schema), key):
            return prefix, _delimiter(schema), owner
    return None


def container_field(key: str) -> str:
    """The field of a model registry hash (``<prefix>:%schema``) that says the container
    ``key`` lies under the prefix: a model's first registration there is refused."""
    return CONTAINER_FIELD + key


def _mark_prefixes(key: str, record: str, prefixes: list[str], wanted: dict[str, str]
                   ) -> Plan[None]:
    """A new container key: the model registry hash of each of its ``:``-prefixes (and
    a WindowCounter's own key) gets a ``container:<key>`` field (so a model's first registration
    there, reading that hash, refuses it if its key space holds the key's: no SCAN),
    then its ``owner`` and ``schema`` are read again. A model that registered there
    meanwhile, whose key space holds the key's, wins (its registration script refuses a
    hash with such a field, so one of the two always sees the other): the container is
    refused and its marks removed."""
    schemas = [registry_key(p) for p in prefixes]
    cmds: list[Any] = []
    for k in schemas:
        cmds += [("HSET", k, container_field(key), _said(wanted)),
                 ("HGET", k, "owner"), ("HGET", k, "schema")]
    replies = yield Batch(cmds, write=True, idempotent=True, keys=schemas, early=True)
    for prefix, owner, schema in zip(prefixes, replies[1::3], replies[2::3], strict=True):
        if owner is not None and holds_container(prefix + _delimiter(schema), key):
            yield Batch([*(("HDEL", k, container_field(key)) for k in schemas),
                         ("DEL", record)], write=True,
                        idempotent=True, keys=[*schemas, record], early=True)
            raise _inside(key, wanted, prefix, _delimiter(schema), owner)


def unmark_commands(key: str, counter: bool = False) -> list[Any]:
    """The HDELs that remove a container key's marks from its prefixes' registry hashes
    (``clear()``, ``forget()``); ``counter``: a WindowCounter's, which marks its own key
    as a prefix too."""
    return [("HDEL", registry_key(p), container_field(key)) for p in _marked(key, counter)]


_WINDOW = re.compile(r"-?[0-9]+\+[0-9]+")


def counter_of(key: str) -> str | None:
    """The key of the WindowCounter whose keys ``key`` has the shape of
    (``<counter>:<subject>:<start>+<window>``, the subject one escaped part), or None."""
    parts = key.split(":")
    if len(parts) >= 3 and _WINDOW.fullmatch(parts[-1]):
        return ":".join(parts[:-2])
    return None


def _counts_into(counter: str, wanted: dict[str, str], key: str, what: Any
                 ) -> SchemaConflictError:
    """The WindowCounter ``counter`` and the container ``key`` (``what``) inside its keys:
    the counter would count into the container's key, or the container hold a count."""
    return SchemaConflictError(
        f"the container {key!r} ({_str(what)}) lies inside the keys of the WindowCounter "
        f"{counter!r} ({counter}:<subject>:<start>+<window>): one of its counts would be "
        "that key; give one of them another key",
        prefix=counter, key=registry_key(counter), owner=_str(what), model=_said(wanted))


def _inside(key: str, wanted: dict[str, str], prefix: str, delimiter: str, owner: Any,
            store: bool = False) -> SchemaConflictError:
    where = "used by this store" if store else f"registry {registry_key(prefix)}"
    return SchemaConflictError(
        f"{_said(wanted)} {key!r} is inside the prefix {prefix!r} of the model "
        f"{_str(owner)} (delimiter {delimiter!r}; {where}): its SCAN pattern "
        f"{prefix}{delimiter}* matches the container's keys ({key}, {key}:...), so the "
        "model would take the container for one of its objects (scan, count, delete); "
        "give the container another key",
        prefix=key, key=registry_key(prefix), owner=_str(owner), model=_said(wanted))


def _fields(raw: Any) -> dict[str, str]:
    if not raw:
        return {}
    pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    return {_str(k): _str(v) for k, v in pairs}


def first_use(container: Any, clearing: bool = False) -> Plan[None] | None:
    """The plan that checks and records the container's key for its store, or None when
    the store checked it already (or has no registry); ``clearing``: for ``clear()``
    (:func:`check_plan`)."""
    registry = getattr(container.store, "_registry", None)
    if registry is None or not registry.enabled:
        return None
    mark = container.__dict__.get("_registry_mark")
    if mark is None:  # once per container object
        wanted = describe(container)
        mark = container._registry_mark = (container.key, tuple(sorted(wanted.items())))
    seen = registry.containers
    if mark in seen:
        return None
    wanted = dict(mark[1])

    def first() -> Plan[None]:
        yield from check_plan(container.key, wanted, registry, clearing, mark)

    return first()


def forget(container: Any) -> None:
    """The store no longer knows the container's key as checked (its record was deleted)."""
    registry = getattr(container.store, "_registry", None)
    if registry is not None and registry.enabled:
        for mark in [m for m in registry.containers if m[0] == container.key]:
            registry.containers.discard(mark)


def guarded(container: Any, plan: G, clearing: bool = False) -> G:
    """``plan``, after the container's store checked its key (once per store and key)."""
    first = first_use(container, clearing)
    return plan if first is None else cast("G", _before_sending(first, plan))


def guard_plans(cls: C) -> C:
    """Make every public ``*_plan`` method of ``cls`` check the container's key first (the
    methods run those plans, so they do too). The unchecked method stays reachable as
    ``__wrapped__`` (a transaction checks at commit, outside MULTI)."""
    for name in dir(cls):
        fn = getattr(cls, name)
        if (name.endswith("_plan") and not name.startswith("_") and callable(fn)
                and not hasattr(fn, "__wrapped__")):
            setattr(cls, name, _guarding(fn))
    return cls


def _guarding(fn: Callable[..., Any]) -> Callable[..., Any]:
    clearing = fn.__name__ == "clear_plan"

    @functools.wraps(fn)
    def plan(self: Any, *args: Any, **kwargs: Any) -> Any:
        return guarded(self, fn(self, *args, **kwargs), clearing)

    return plan
