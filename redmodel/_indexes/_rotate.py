"""Rotating the blind-index key, as a plan (so sync, asyncio and cluster stores share it).

Every blind entry carries the id of the key that made it (``<kid>.<mac>``), so the objects
whose entries are not yet under the newest key are found from the index records alone:
per bucket, ``HSCAN <root>rec`` a page at a time; for each object with an older entry,
read it, and rewrite its index entries (never its data) as ``reindex`` does
(:meth:`_Repair.object_page`): the index write script in ``reindex`` mode, which writes
nothing for an object whose indexed fields a writer changed since that read (the object
is read again). Each step only fixes what differs, so the command is safe to stop and
run again.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from redmodel._args import flag, page_count
from redmodel._indexes._blind import IndexKeyring, current_keyring, kid_of
from redmodel._indexes._registry import rewrite_begins, rewrite_ends
from redmodel._indexes._repair import REREADS, _Repair, sweep_plan
from redmodel._indexes._specs import JOIN
from redmodel._models._specs import ModelSpec, model_class, spec_of
from redmodel._plan import Batch, Emit, IterPlan, Plan

__all__ = ["Progress", "rebuild", "rotate_index_key"]

def _blind(spec: ModelSpec) -> set[str]:
    if spec.indexes is None:
        return set()
    return {n for n, f in spec.indexes.fields.items() if f.blind is not None}


def _stale(spec: ModelSpec, blind: set[str], record: str, ring: IndexKeyring) -> bool:
    """Whether an object's index record (its entry lines) has a blind entry that is not
    what a write under the current keys makes: equality entries under the newest key
    only, unique entries under every configured key."""
    uniques: dict[str, set[str]] = {}
    for line in record.split("\n"):
        parts = line.split("\x1f", 2)
        if len(parts) != 3:
            continue
        kind, name, text = parts
        if kind == "e" and name in blind and kid_of(text) != ring.kids[0]:
            return True
        if kind == "u":
            fields = name.split(",")
            at = next((i for i, n in enumerate(fields) if n in blind), None)
            if at is not None:
                uniques.setdefault(name, set()).add(kid_of(text.split("\x1e")[at]))
    return any(kids != set(ring.kids) for kids in uniques.values())


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


def _hscan(reply: Any) -> tuple[int, list[tuple[str, str]]]:
    cursor, items = reply
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = list(zip(items[::2], items[1::2], strict=True))
    return int(cursor), [(_text(k), _text(v)) for k, v in pairs]


def rotate_index_key(model: type, count: int) -> IterPlan:
    """Emits ``(objects looked at, objects rebuilt)`` per page of index records. The
    newest key's id is added to the registry record's ``indexkeys`` (the ids the blind
    entries may be under: _registry.keys_plan) as it starts, and is all it holds at the
    end of a whole run under one key configuration (_registry.rewrite_begins/_ends)."""
    spec = spec_of(model)
    count = page_count(count, model=spec.name)
    blind = _blind(spec)
    if not blind:
        return
    begun = yield from rewrite_begins(spec)
    yield from sweep_plan(model)  # expired objects' records would never be rebuilt
    for tag in spec.tags():
        rec = spec.index_root(tag) + "rec"
        cursor = 0
        while True:
            replies = yield Batch([("HSCAN", rec, cursor, "COUNT", count)])
            assert replies is not None
            cursor, records = _hscan(replies[0])
            ring = current_keyring()
            ids = [eid for eid, record in records if _stale(spec, blind, record, ring)]
            done = yield from rebuild(spec, tag, ids)
            yield Emit([(len(records), done)])
            if cursor == 0:
                break
    if spec.claims:
        done = yield from old_claims(spec, blind, count)
        if done:
            yield Emit([(0, done)])
    yield from rewrite_ends(spec, begun)


def old_claims(spec: ModelSpec, blind: set[str], count: int) -> Plan[int]:
    """A bucketed model's claims of blind unique values under a key id no longer
    configured, whose owner is gone (the sweep leaves a gone owner's claims to the next
    claimer, and its record, which the HSCAN above finds the others by, is gone): dropped
    as reindex drops them (claim_drop.lua: one an owner takes back meanwhile stays).
    Returns how many it dropped plus how many such claims it left (their owner holds the
    value: its record is rebuilt above; or the claim is in its grace period), so that a
    run answers 0 only when no claim names an older key (30AW F1)."""
    assert spec.indexes is not None
    kids = set(current_keyring().kids)
    repair = _Repair(spec, fix=True, strict=True)
    dropped = 0
    for u in spec.indexes.uniques:
        at = next((i for i, n in enumerate(u.fields) if n in blind), None)
        if at is None:
            continue

        def old(text: str, at: int = at) -> bool:
            parts = text.split(JOIN)
            return at < len(parts) and kid_of(parts[at]) not in kids

        for tag in spec.tags():
            key = f"{spec.index_root(tag)}uq{spec.delimiter}{u.name}"
            dropped += yield from repair.claims_key(key, u.name, count, only=old)
    return dropped + repair.claims_left


def rebuild(spec: ModelSpec, tag: str | None, ids: Sequence[str]) -> Plan[int]:
    """Rewrite the index entries of the objects with these ids (of bucket ``tag``) from
    their stored values, as ``reindex`` does (unique values claimed first where a model
    claims them in their own buckets; each fix checked again by its script, so a
    concurrent write is never undone; the object itself is not rewritten), and drop
    those of an object that is gone (no key, or a key of another type: no object), as
    reindex's pass 2 does: its record, entries and unique values, under whatever index key
    they were made (30AW F1: they stayed, naming the older key, while the rotation
    answered done). Returns how many objects it rebuilt or dropped; 0 only when none of
    these ids is left with entries under an older key.
    An object it cannot read raises DecodeError naming its key, with nothing of this page
    written (30AQ F2: logged and passed over, its entries stayed under the older key while
    the rotation returned as done)."""
    if not ids:
        return 0
    prefix = spec.object_prefix(tag)
    repair = _Repair(spec, fix=True, strict=True)
    done = 0
    for _ in range(REREADS + 1):
        # a key that is not a hash: forgotten; the others read and rebuilt (one gone
        # between the two is checked again in the next round)
        yield from repair.gone_page(tag, ids)
        done += len(repair.forgotten)
        alive = [prefix + e for e in ids if prefix + e not in repair.forgotten]
        repair.forgotten.clear()
        repair.vanished.clear()
        done += (yield from repair.object_page(alive)) if alive else 0
        if not repair.vanished:
            return done
        ids = [k[len(prefix):] for k in repair.vanished]
    # gone and made again between each read: counted, so the step does not look done
    # (the next run finds their records again)
    return done + len(ids)
class Progress:
    """The ``rotate_index_key`` counter on a terminal (stderr by default)."""

    def __init__(self, model: type, show: bool | None, out: TextIO | None = None) -> None:
        flag(show, "progress", none=True)
        self.out = out or sys.stderr
        self.show = self.out.isatty() if show is None else show
        self.name = model_class(model).__name__  # the store checks it again, as a model
        self.scanned = 0
        self.rebuilt = 0

    def step(self, page: tuple[int, int]) -> None:
        self.scanned += page[0]
        self.rebuilt += page[1]
        if self.show:
            print(f"\rrotate_index_key {self.name}: {self.scanned} objects looked at, "
                  f"{self.rebuilt} rebuilt under the newest key", end="", file=self.out,
                  flush=True)

    def finish(self) -> int:
        if self.show:
            print(file=self.out)
        return self.rebuilt
