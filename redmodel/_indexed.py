"""Writes of indexed models, as plans: every key declared, refusals turned into errors.

One script (``lua/index_write.lua``) writes an object and its index entries. It touches
only keys passed in KEYS: the client declares every key it can name (the object, its
bucket's record, all-ids and expiry sets, the index keys of the entries it writes and of
the entries it knows the object had) and, when the script needs a key the client could not
know (the entries of an object it did not load, the object owning a unique value), the
script answers ``{'KEYS', ...}`` without writing and :func:`run_writes` resends with them.
Inside a transaction no resend is possible after EXEC, so the plan first reads the
object's record (WATCHing the object) and declares what it holds. The flat layout's
writes (:class:`redmodel._flat.FlatWrite`: the leaves its manifest names) follow the same
contract through the same plans.

Unique values of a bucketed model (``claims``) live in their value's own bucket: they are
claimed before the write, confirmed after it, and released when given up (:func:`claim`,
:func:`settle`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from redmodel._errors import (
    ConflictError,
    DecodeError,
    NotFoundError,
    ServerError,
)
from redmodel._hidden import unique_violation
from redmodel._index import (
    CLAIM,
    CLAIM_GRACE_MS,
    CONFIRM,
    RELEASE,
    RESTORE,
    SEP,
    WRITE,
    entry_key,
    record_lines,
)
from redmodel._keys import unescape
from redmodel._plan import Batch, Command, Plan
from redmodel._schema import ModelSpec

__all__ = ["Abandoned", "TxHints", "Write", "claim", "refusal", "run_writes", "settle", "undo"]

KEY_ROUNDS = 5
"""How often one write may answer "these keys too" before the plan gives up: each answer
means the object's entries changed between two round trips (a concurrent writer)."""


@attrs.define(eq=False)
class Write:
    """One call of the index write script for the object at ``key``: its KEYS (the four
    fixed keys first) and ARGV. ``declare`` adds keys before a (re)send."""

    spec: ModelSpec
    key: str
    keys: list[str]
    args: list[Any]
    root: str = ""
    eid: str = ""
    fields: frozenset[str] = frozenset()  # the indexed fields it may change

    def command(self) -> Command:
        return WRITE.call(self.keys, self.args)

    def declare(self, more: Iterable[str]) -> bool:
        """Add keys to KEYS; False when every one was declared already."""
        have = set(self.keys)
        new = [k for k in dict.fromkeys(more) if k is not None and k not in have]
        self.keys.extend(new)
        return bool(new)

    def declare_lines(self, lines: Iterable[str]) -> None:
        """Declare the keys of these entry lines (those the object had, or will have)."""
        d, claims = self.spec.delimiter, self.spec.claims
        self.declare(k for k in (entry_key(self.root, d, line, claims) for line in lines)
                     if k is not None)

    def prefetch(self) -> Command:
        """The read a transaction sends first (WATCHing the object) to learn which keys the
        write will touch: the object's index record."""
        return ("HGET", self.keys[1], self.eid)

    def declare_read(self, raw: Any) -> None:
        """Declare the keys the :meth:`prefetch` reply names."""
        self.declare_lines(record_lines(raw))

    def touched(self) -> list[str]:
        """The keys beyond the fixed ones, which a later write of the same object in the
        same transaction may find (and must declare)."""
        return self.keys[4:]


class Abandoned(Exception):  # noqa: N818 - a signal thrown into plans, not an error
    """Thrown into a plan whose transaction will not commit after it has sent writes before
    MULTI (claims of unique values): it undoes them (releases) and re-raises."""


class TxHints:
    """What one transaction knows about the index keys of the objects it writes: a later
    write of an object declares what an earlier one in the same transaction may leave.
    Shared by the plans a transaction queues; plans outside transactions get None."""

    def __init__(self) -> None:
        self.keys: dict[str, set[str]] = {}  # object key -> index keys declared for it
        self.fields: dict[str, set[str]] = {}  # object key -> indexed fields written


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


def status(reply: Any) -> str | None:
    """The status word a script answered (``KEYS``, ``UNIQUE``, ...), or None."""
    if isinstance(reply, list) and reply and isinstance(reply[0], (bytes, str)):
        return _text(reply[0])
    return None


def refusal(spec: ModelSpec, key: str, reply: Any, what: str,
            fields: dict[str, str] | None = None) -> Exception | None:
    """The error for a refusal the script answered instead of writing; None otherwise.
    ``fields`` maps stored hash-field names to field paths (for counters)."""
    word = status(reply)
    if word == "UNIQUE":
        return unique_violation(spec, _text(reply[1]), _text(reply[2]), key)
    if word == "WRONGTYPE":
        where, actual, want = _text(reply[1]), _text(reply[2]), _text(reply[3])
        advice = ""
        if where.endswith("%idx" + spec.delimiter + "all") and actual == "set":
            advice = (f": it is the all-ids index in the format of an older redmodel; run "
                      f"store.reindex({spec.cls.__name__}) to convert it")
        elif "%idx" in where:
            advice = (f": an index key of model {spec.name} was overwritten outside "
                      "redmodel; delete it and run store.reindex()")
        return ServerError(f"WRONGTYPE {where} holds a {actual}, not a {want}{advice}; "
                           "nothing was written", keys=(where, key), command=what)
    if word == "MISSING":
        return NotFoundError(spec.name, key)
    if word == "NOTNUM":
        field = _text(reply[1])
        return DecodeError("stored value is not a number Redis can add to (a 64-bit "
                           "integer, a finite float); nothing was changed",
                           model=spec.name, key=key, field=(fields or {}).get(field, field))
    if word == "BADARG":
        return ServerError(f"the index script refused its arguments ({_text(reply[1])}); "
                           "nothing was written", keys=(key,), command=what)
    if word == "KEYS":
        return ConflictError(
            f"{what}: the keys of {key} (its index entries, or its leaves in the flat "
            "layout) kept changing while it was being written (a concurrent write or "
            "reindex); nothing of this object was written",
            attempts=KEY_ROUNDS, keys=(key,))
    return None


def needed_keys(reply: Any) -> list[str] | None:
    if status(reply) != "KEYS":
        return None
    return [_text(k) for k in reply[1:]]


def prefetch(writes: Sequence[Write], hints: TxHints) -> Plan[None]:
    """In a transaction: read the records of these objects (WATCHing the objects) and
    declare the keys of what they hold and of what earlier writes in it may leave."""
    if writes:
        replies = yield Batch([w.prefetch() for w in writes], keys=[w.key for w in writes])
        for w, raw in zip(writes, replies, strict=True):
            w.declare_read(raw)
    for w in writes:
        w.declare(hints.keys.get(w.key, ()))
        hints.keys.setdefault(w.key, set()).update(w.touched())
        hints.fields.setdefault(w.key, set()).update(w.fields)


def run_writes(items: Sequence[Write | Command], *, idempotent: bool,
               hints: TxHints | None, what: str) -> Plan[list[Any]]:
    """Send the writes (index writes, or any other write command) in one round trip;
    resend the index writes that asked for more keys, with them (again one round trip for
    all). Returns each reply (refusals are left to the caller: see :func:`check`)."""
    writes = [w for w in items if isinstance(w, Write)]
    if hints is not None:
        yield from prefetch(writes, hints)
    replies: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    for _ in range(KEY_ROUNDS):
        got = yield Batch([_command(items[i]) for i in todo], write=True,
                          idempotent=idempotent, keys=[_key(items[i]) for i in todo])
        again = []
        for i, reply in zip(todo, got, strict=True):
            item = items[i]
            need = needed_keys(reply) if isinstance(item, Write) else None
            if need is not None and hints is None and item.declare(need):  # type: ignore[union-attr]
                again.append(i)
                continue
            replies[i] = reply
        if not again:
            return replies
        todo = again
    for i in todo:  # still asking: its reply (a KEYS refusal) says nothing was written
        replies[i] = ["KEYS"]
    return replies


def _command(item: Write | Command) -> Command:
    return item.command() if isinstance(item, Write) else item


def _key(item: Write | Command) -> str:
    return item.key if isinstance(item, Write) else str(item[1])


def check(spec: ModelSpec, key: str, reply: Any, what: str) -> Any:
    """The reply of a write, or its refusal raised."""
    error = refusal(spec, key, reply, what)
    if error is not None:
        raise error
    return reply


# ---- claims of unique values in their own buckets -------------------------------------------


def eid_of(spec: ModelSpec, key: str) -> str:
    text = spec.id_of_key(key)
    assert text is not None
    return key[len(spec.object_prefix(spec.tag_of(text))):]


def unique_lines(spec: ModelSpec, values: dict[str, Any]) -> list[tuple[str, str]]:
    """(constraint name, value text) of every unique value in ``values``."""
    if spec.indexes is None:
        return []
    out = []
    for entry in spec.indexes.entries(values):
        kind, name, text = entry.split(SEP, 2)
        if kind == "u":
            out.append((name, text))
    return out


@attrs.define
class Claims:
    """Claims one write made: ``made`` are new (released if the write does not happen),
    ``refreshed`` ones it already held (their earlier text put back then), ``ours`` every
    claim it holds for its values (confirmed once it lands)."""

    eid: str
    made: list[tuple[str, str]] = attrs.field(factory=list)
    ours: list[tuple[str, str]] = attrs.field(factory=list)
    refreshed: list[tuple[str, str, str]] = attrs.field(factory=list)  # + earlier text


def claim(spec: ModelSpec, key: str, values: dict[str, Any]) -> Plan[Claims]:
    """Claim these unique values for the object at ``key`` in their own buckets, before
    its write (sent at once in a transaction, before MULTI). Raises UniqueViolationError,
    having released the claims just made, when a live object holding one owns it."""
    eid = eid_of(spec, key)
    wanted = [(spec.claim_key(name, text), text, name) for name, text in
              unique_lines(spec, values)]
    out = Claims(eid)
    if not wanted:
        return out
    grace = str(CLAIM_GRACE_MS)
    # idempotent per (value, id): a copy sent again after a lost reply finds the claim its
    # first copy made and answers OURS (kept as a refresh: see Claims and undo)
    replies = yield Batch([CLAIM.call([k], [t, eid, grace, ""]) for k, t, _ in wanted],
                          write=True, early=True, idempotent=True)
    taken = []
    for w, r in zip(wanted, replies, strict=True):
        if _held(out, w[0], w[1], r):
            continue
        if status(r) == "TAKEN":
            taken.append((w, _text(r[1]), int(r[2])))
    yield from _claim_refusal(spec, key, replies, out)
    stale = [(w, owner) for w, owner, age in taken if age < 0 or age >= CLAIM_GRACE_MS]
    if stale:  # an old claim is taken over when its owner no longer holds the value
        gone = yield from owners_gone(spec, [(owner, name, text) for (_, text, name), owner
                                             in stale])
        retry = [(w, o) for (w, o), g in zip(stale, gone, strict=True) if g]
        if retry:
            again = yield Batch([CLAIM.call([k], [t, eid, grace, o]) for (k, t, _), o in retry],
                                write=True, early=True, idempotent=True)
            won = {(w[0], w[1]) for (w, _), r in zip(retry, again, strict=True)
                   if _held(out, w[0], w[1], r)}
            yield from _claim_refusal(spec, key, again, out)
            taken = [t for t in taken if (t[0][0], t[0][1]) not in won]
    if taken:
        yield from undo(out)
        (_, text, name), _, _ = taken[0]
        raise unique_violation(spec, name, text, key)
    return out


def _held(out: Claims, key: str, text: str, reply: Any) -> bool:
    """Note a claim's reply in ``out``; whether this id now holds the value. 1: a claim
    made now. OURS: the id held it already (an earlier save, a copy of this very claim
    whose reply was lost, or a concurrent save of the same object): a refresh, whose
    earlier text :func:`undo` puts back, never a release that could rob a write in flight."""
    if reply == 1:
        out.made.append((key, text))
    elif status(reply) == "OURS":
        out.refreshed.append((key, text, _text(reply[1])))
    else:
        return False
    out.ours.append((key, text))
    return True


def _claim_refusal(spec: ModelSpec, key: str, replies: Sequence[Any], out: Claims
                   ) -> Plan[None]:
    """A claim hash of the wrong type: release the claims just made, raise ServerError."""
    for reply in replies:
        if status(reply) == "WRONGTYPE":
            yield from undo(out)
            check(spec, key, reply, f"claim a unique value of {spec.name}")


def owners_gone(spec: ModelSpec, owners: Sequence[tuple[str, str, str]]) -> Plan[list[bool]]:
    """For each (owner id, constraint, value text): whether that owner is gone or no longer
    holds the value (its record lacks the entry), so its claim may be taken over."""
    if not owners:
        return []
    cmds: list[Command] = []
    for owner, _, _ in owners:
        tag = spec.tag_of(unescape(owner))
        cmds.append(("EXISTS", spec.object_prefix(tag) + owner))
        cmds.append(("HGET", spec.index_root(tag) + "rec", owner))
    replies = yield Batch(cmds)
    out = []
    for i, (_, name, text) in enumerate(owners):
        alive, record = replies[2 * i], replies[2 * i + 1]
        holds = f"u{SEP}{name}{SEP}{text}" in record_lines(record)
        out.append(not alive or not holds)
    return out


def release(claims: Sequence[tuple[str, str]], eid: str) -> Plan[None]:
    """Give up claims this object holds (each only if it still holds it)."""
    if claims:
        yield Batch([RELEASE.call([k], [t, eid]) for k, t in claims], write=True,
                    idempotent=True)


def undo(claims: Claims | None) -> Plan[None]:
    """For a write that did not happen: release its new claims and give the ones it
    refreshed their earlier text back (one round trip)."""
    if claims is None or not (claims.made or claims.refreshed):
        return
    eid = claims.eid
    yield Batch([RELEASE.call([k], [t, eid]) for k, t in claims.made] +
                [RESTORE.call([k], [t, eid, prev]) for k, t, prev in claims.refreshed],
                write=True, idempotent=True)


def released_lines(spec: ModelSpec, lines: Iterable[Any]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        _, name, text = _text(line).split(SEP, 2)
        out.append((spec.claim_key(name, text), text))
    return out


def settle(spec: ModelSpec, key: str, reply: Any, claims: Claims | None) -> Plan[Any]:
    """After a write with claims: release the unique values it gave up, confirm the ones
    it holds (or release the new ones if it wrote nothing). Returns the write's result."""
    result = reply
    gone: list[tuple[str, str]] = []
    if status(reply) == "RELEASE":
        result = reply[1]
        gone = released_lines(spec, reply[2:])
    eid = eid_of(spec, key)
    if result == 0:
        yield from undo(claims)
    elif claims is not None and claims.ours:
        yield Batch([CONFIRM.call([k], [t, eid]) for k, t in claims.ours], write=True,
                    idempotent=True)
    yield from release(gone, eid)
    return result
