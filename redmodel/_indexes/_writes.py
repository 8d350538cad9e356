"""Writes of indexed models, as plans: every key declared, refusals turned into errors.

One script (``lua/index_write.lua``) writes an object and its index entries. It touches
only keys passed in KEYS: the client declares every key it can name (the object, its
bucket's record, all-ids and expiry sets, the index keys of the entries it writes and of
the entries it knows the object had) and, when the script needs a key the client could not
know (the entries of an object it did not load, the object owning a unique value), the
script answers ``{'KEYS', ...}`` without writing and :func:`run_writes` resends with them.
Inside a transaction no resend is possible after EXEC, so the plan first reads the
object's record (WATCHing the object) and declares what it holds. The flat layout's
writes (:class:`redmodel._layouts._flat.FlatWrite`: the leaves its manifest names) follow the same
contract through the same plans.

Unique values of a bucketed model (``claims``) live in their value's own bucket: they are
claimed before the write, confirmed after it, and released when given up (:func:`claim`,
:func:`settle`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs
from redis.exceptions import NoPermissionError

from redmodel._errors import (
    CONNECTION_ERRORS,
    ConflictError,
    DecodeError,
    NotFoundError,
    OutcomeUnknownError,
    ServerError,
    TransactionError,
    key_text,
)
from redmodel._indexes._specs import (
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
from redmodel._models._hidden import unique_violation
from redmodel._models._keys import unescape
from redmodel._models._specs import ModelSpec
from redmodel._plan import Batch, Command, Plan, script
from redmodel._transport._wire import _server_error_class, outcome_of

__all__ = ["Abandoned", "TxHints", "Write", "claim", "refusal", "run_writes", "settle", "undo"]

FIX = script("index_fix")
MANY = script("index_write_many")

PIN_WAIT = 2.5
"""Seconds an increment whose field another increment pinned keeps being sent again, from
its first "pinned" answer (a pin lasts one round trip of its holder, or 2 s by the server's
clock if that client died between its two round trips: a budget of time, not of round
trips, which a fast server spends long before the 2 s are up)."""
PIN_PAUSES = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05)
"""Seconds waited before each resend of a pinned increment (the last one repeats): the
first goes at once (the holder's own resend is usually one round trip away), later ones
back off, so waiting out a dead client's 2 s pin costs ~50 round trips, not thousands
(attack 24a F4: ~18,000 EVALSHA in 2 s)."""
KEY_ROUNDS = 8
"""How often one write may answer "these keys too" before the plan gives up: each answer
means the object's entries changed between two round trips (a concurrent writer). Every
answer writes nothing and the keys declared accumulate, so trying again is safe, and an
increment declares a widening window of values each time (see _atomic)."""


FIXED_KEYS = 6
"""How many keys an index write declares first, whatever it writes (see :class:`Write`)."""


class ObjectReader(Protocol):
    """How to read one object back: a layout is one. Index maintenance reads objects to
    judge who holds a unique value; the layout that made the write (or the caller, who
    knows the model's layout) passes itself down, so this module never imports layouts."""

    def read(self, key: str) -> Command: ...

    def decode(self, key: str, id_text: str, reply: Any) -> Any: ...


@attrs.define(eq=False)
class Write:
    """One call of the index write script for the object at ``key``: its KEYS (the
    :data:`FIXED_KEYS` fixed keys first: object, record, all-ids state, expiry, the all-ids
    pages' directory and count) and ARGV. ``declare`` adds keys before a (re)send."""

    spec: ModelSpec
    key: str
    keys: list[str]
    args: list[Any]
    root: str = ""
    eid: str = ""
    fields: frozenset[str] = frozenset()  # the indexed fields it may change
    values: dict[str, Any] | None = None  # indexed values it writes (for TxHints)
    spread: Callable[[list[str], int], Iterable[str]] | None = None  # more keys to
    # declare with the ones a KEYS answer names (round 1, 2, ...): see _atomic
    reader: ObjectReader | None = None  # the layout that made it (reads its owners back)
    assumed: frozenset[str] | None = None  # the indexed fields its assumption names (None:
    # every one; see the layout's restate)
    restate: Callable[..., None] | None = None  # the layout's: assume other stored bytes
    # (a STORED answer, a transaction's read), declaring their lines' keys; None: the
    # write assumes nothing (its model keeps records, or its mode needs no assumption)
    derive: Callable[[Any], list[str]] | None = None  # the layout's: stored bytes -> entry
    # lines (None: its model keeps records)
    stored_names: tuple[bytes, ...] = ()  # the indexed fields' stored names (with derive)
    lister: Callable[[], Write] | None = None  # an increment's: the layout's write that
    # indexes the object first when it answers UNLISTED (see HashLayout.listing)
    written: tuple[Sequence[bytes], Sequence[bytes], bool] | None = None  # a save's or
    # update's (pairs, fields it deletes, whole): the indexed fields' bytes it leaves, for
    # a transaction's later writes of the object (read only there: _follow_fields)

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
        return self.keys[FIXED_KEYS:]

    def group(self) -> tuple[str, ...] | None:
        """Writes of one group go together in one call of :meth:`many` (save_many,
        delete_many: see :func:`_batches`); None: this one alone. Index writes: whole
        saves and deletes of the objects of one bucket (see :func:`_batchable`)."""
        return tuple(self.keys[1:4]) if _batchable(self) else None

    def many(self, writes: Sequence[Write]) -> Command:
        """One call for ``writes`` (this one first), which answers each one's reply."""
        return _many(writes)


class Abandoned(Exception):  # noqa: N818 - a signal thrown into plans, not an error
    """Thrown into a plan whose transaction will not commit after it has sent writes before
    MULTI (claims of unique values): it undoes them (releases) and re-raises."""


class TxHints:
    """What one transaction knows of the objects it writes, as they will be after the
    writes queued so far: a model of what its scripts will do inside EXEC, built at
    commit (before MULTI) in queue order from WATCHed reads. With it every write
    declares every key it will touch (a later write of an object, what the earlier ones
    leave; an increment, its next value's entry) and refusals that can be known before
    MULTI are raised then, with nothing written (a unique value another object holds).
    Shared by the plans a transaction queues; plans outside transactions get None."""

    def __init__(self) -> None:
        self.keys: dict[str, set[str]] = {}  # object key -> index keys declared for it
        self.exists: dict[str, bool] = {}  # object key -> exists after the earlier writes
        self.lines: dict[str, set[str]] = {}  # object key -> its record's entries then
        self.ints: dict[tuple[str, str], int | None] = {}  # (object key, equality-indexed
        # int field) -> its value then (None: not a number)
        self.owners: dict[tuple[str, str], str | None] = {}  # (unique hash, value text)
        # -> the id holding it then
        self.held: Counter[tuple[str, str, str]] = Counter()  # (claim key, value, id):
        # claims of bucketed unique values held by writes not settled yet
        self.typed: set[str] = set()  # keys whose type was checked before MULTI
        self.fields: dict[str, dict[bytes, bytes | None]] = {}  # object key -> its
        # indexed fields' bytes as EXEC will find them after the writes queued so far
        # (objects without a record: what a later write of it assumes)
        self.unknown: dict[str, set[bytes]] = {}  # object key -> indexed fields whose
        # bytes it cannot follow (a range-only score an increment moves)
        self.raw: set[str] = set()  # keys a raw command (tx.command) queued before the
        # write now prepared writes: an index write of such an object takes its entries as
        # read before MULTI (what is indexed then) and those the writes queued before it
        # leave, unchecked (see raw_turn: in queue order, like every other hint)
        self.raw_last: dict[str, set[str] | None] = {}  # keys of those whose last write
        # queued so far is a raw command -> the hash fields the raw commands since the
        # last index write of the object write (None: any): a holder of a unique value
        # the transaction may not follow (see _raw_holders)
        self.raw_blind: set[str] = set()  # keys a raw command queued since their last
        # index write names elsewhere than first (see raw_turn)
        self.ever: dict[str, set[str]] = {}  # object key -> every entry line it had
        # before MULTI or after a write queued so far (what a gone one may have left)
        self.raw_fields: dict[str, set[str] | None] = {}  # object key -> the hash fields
        # raw commands of this transaction write there (None: any; see note_raw): known
        # from the command's queueing on (an increment refuses a field one writes)
        self.unindexed: set[str] = set()  # object keys whose first write here assumes
        # none of their entries are in the index yet (a migration building an index)
        self.made: dict[tuple[str, str, str], str] = {}  # (claim key, value, id) -> the
        # object key, for claims made (not refreshed) in this transaction
        self.seen: dict[str, dict[bytes, bytes] | None] = {}  # hash key -> its fields as
        # EXEC will find them (None: missing): read WATCHed in this attempt (HGETALL) and
        # changed only by the plain writes queued since (see _plans._objects.plain_incr);
        # any other queued write forgets them (TxCore.queue, rollback_to)
        self.fixes: list[Command] = []  # fixes the next write queues before itself: a
        # unique value's holder gives it up (its stored fields no longer hold it)

    def note_raw(self, key: str, command: str, args: Sequence[Any]) -> None:
        """A raw command (tx.command) on ``key``, when it is queued: the hash fields it
        writes (the field names of the hash commands that name them; any field for
        another command). What it does to the object is :meth:`raw_turn`'s, at its turn."""
        self.raw_fields[key] = _raw_written(self.raw_fields.get(key, set()), command, args)

    def raw_turn(self, key: str, command: str, args: Sequence[Any], exists: bool | None,
                 blind: bool = False) -> None:
        """A raw command on ``key``, at its turn at commit (after the writes queued before
        it were prepared, before those queued after it): what it writes, whether the
        object exists after it (None: unknown, as before it), and that the writes after
        it cannot follow it. ``blind``: it names the key elsewhere than first (COPY src
        key, RENAME src key, a value that happens to be the key): a later write (not a
        delete) of the object is refused before MULTI (:func:`_unknown_raw`)."""
        self.raw.add(key)
        if blind:  # it may make the object again (COPY src key after a DEL of key): not
            # known gone any more (attack 27z F3); a DEL after it makes it so again
            self.raw_blind.add(key)
            self.exists.pop(key, None)
        self.raw_last[key] = _raw_written(self.raw_last.get(key, set()), command, args)
        if exists is not None:
            self.exists[key] = exists

    def predict_int(self, key: str, field: str, read: Any) -> int | None:
        """An equality-indexed int of the object at ``key`` when the write now prepared
        runs: as earlier writes of this transaction leave it, else as read (absent: 0)."""
        if (key, field) in self.ints:
            return self.ints[key, field]
        try:
            return int(read or b"0")
        except ValueError:
            return None  # not a number: the script refuses it


# raw hash commands whose written field names are known: every step-th argument after
# the key, from the first
_RAW_FIELD_ARGS = {"HSET": 2, "HMSET": 2, "HSETNX": 2, "HINCRBY": 2, "HINCRBYFLOAT": 2,
                   "HDEL": 1}


def _raw_written(have: set[str] | None, command: str, args: Sequence[Any]
                 ) -> set[str] | None:
    """``have`` (hash fields raw commands write; None: any) with those of this one."""
    step = _RAW_FIELD_ARGS.get(command)
    if step is None or have is None:
        return None
    return have | {_text(a) for a in args[::step]}


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


def status(reply: Any) -> str | None:
    """The status word a script answered (``KEYS``, ``UNIQUE``, ...), or None."""
    if isinstance(reply, list) and reply and isinstance(reply[0], (bytes, str)):
        return _text(reply[0])
    return None


IN_EXEC = ("this write was not applied; Redis has no rollback inside EXEC, so any other "
           "write queued in the transaction was applied")


def no_permission(reply: str, keys: tuple[str, ...] = (), command: str = "") -> ServerError:
    """A :class:`ServerError` that is also redis-py's ``NoPermissionError``, as the server's
    own NOPERM reply becomes (a refusal a script answered instead of raising)."""
    return _server_error_class(NoPermissionError)(reply, keys=keys, command=command)


def refusal(spec: ModelSpec, key: str, reply: Any, what: str,
            fields: dict[str, str] | None = None, tx: bool = False) -> Exception | None:
    """The error for a refusal the script answered instead of writing; None otherwise.
    ``fields`` maps stored hash-field names to field paths (for counters). ``tx``: the
    write ran inside a transaction's EXEC (the other writes of it were applied)."""
    nothing = IN_EXEC if tx else "nothing was written"
    word = status(reply)
    if word == "UNIQUE":
        error = unique_violation(spec, _text(reply[1]), _text(reply[2]), key)
        if tx:  # refused by the script inside EXEC (the commit could not know it before
            # MULTI: a raw command it cannot follow): say what was applied
            error.args = (str(error).replace("nothing was written", nothing), *error.args[1:])
        return error
    if word == "WRONGTYPE":
        where, actual, want = _text(reply[1]), _text(reply[2]), _text(reply[3])
        advice = ""
        if where.endswith("%idx" + spec.delimiter + "all") and actual == "set":
            advice = (f": it is the all-ids index in the format of an older redmodel; run "
                      f"store.reindex({spec.cls.__name__}) to convert it")
        elif "%idx" in where:
            advice = (f": an index key of model {spec.name} was overwritten outside "
                      "redmodel; delete it and run store.reindex()")
        return ServerError(f"WRONGTYPE {key_text(where)} holds a {actual}, not a {want}{advice}; "
                           f"{nothing}", keys=(where, key), command=what)
    if word == "MISSING":
        return NotFoundError(spec.name, key)
    if word == "NOTNUM":
        field = _text(reply[1])
        return DecodeError("stored value is not a number Redis can add to (a 64-bit "
                           "integer, a finite float); nothing was changed",
                           model=spec.name, key=key, field=(fields or {}).get(field, field))
    if word == "NOPERM":  # the ACL refuses a command its writes need (acl_lib.lua)
        return no_permission(f"this user has no permissions to run the '{_text(reply[1])}' "
                             f"command on the key {key_text(_text(reply[2]))}, which this "
                             f"write of {key} needs: {nothing}", (key, _text(reply[2])), what)
    if word == "FAILED":  # a command of its checks failed (index_write_many.lua)
        text = _text(reply[1])
        kind = no_permission if "permission" in text or "ACL" in text else ServerError
        return kind(f"{text}; {nothing}", keys=(key,), command=what)
    if word == "BADARG":
        return ServerError(f"the index script refused its arguments ({_text(reply[1])}); "
                           f"{nothing}", keys=(key,), command=what)
    if word == "STORED":  # the fields kept moving (outside a transaction), or in one
        # a raw command of it moved them: the same as keys that kept changing
        word = "KEYS"
        reply = ["KEYS", *[reply[i] for i in range(1, len(reply), 3)]]
    if word == "UNLISTED":  # (asked again until the rounds ran out: as keys that kept
        # changing; in a transaction the prefetch assumes every field, so never there)
        word, reply = "KEYS", ["KEYS"]
    if word == "KEYS" and tx:  # a WATCH conflict aborts EXEC: this is not one
        return TransactionError(
            f"{what}: the script of {key} needed index keys the transaction did not name "
            f"before MULTI ({', '.join(_text(k) for k in reply[1:6])}"
            f"{', ...' if len(reply) > 6 else ''}); {IN_EXEC}. It knows what its own "
            "queued writes leave; this happens when a raw command (tx.command) of the same "
            "transaction changed an indexed field")
    if word == "PINNED":
        stored = _text(reply[1]) if len(reply) > 1 else "?"
        return ConflictError(
            f"{what}: the field {(fields or {}).get(stored, stored)!r} of {key} stayed pinned "
            f"by another increment (one whose reply was lost, resent by its client) for "
            f"{PIN_WAIT} s, longer than any such resend takes; nothing of this object was "
            "written, so calling again is safe", attempts=KEY_ROUNDS, keys=(key,))
    if word == "KEYS":
        return ConflictError(
            f"{what}: the keys of {key} (its index entries, or its leaves in the flat "
            f"layout) kept changing while it was being written (other clients wrote it "
            f"between each of {KEY_ROUNDS} tries, or a reindex ran); nothing of this object "
            "was written, so calling again is safe",
            attempts=KEY_ROUNDS, keys=(key,))
    return None


def needed_keys(reply: Any) -> list[str] | None:
    if status(reply) != "KEYS":
        return None
    return [_text(k) for k in reply[1:]]


def prefetch(writes: Sequence[Write], hints: TxHints) -> Plan[None]:
    """In a transaction, before MULTI: read what these writes' scripts will find (the
    object, its record, the holders of the unique values they take; all WATCHed, so
    EXEC runs on exactly this), declare every key each will touch, and refuse before
    anything is sent what the script would refuse: a unique value held by a live object.
    Then record in ``hints`` what each leaves, for the writes queued after it. A layout's
    own writes (the flat layout's :class:`FlatWrite`) read what their :meth:`Write.prefetch`
    names and declare its keys, and what earlier writes of the object touched."""
    hints.fixes = []  # none left by a refused write's prefetch
    if not writes:
        return
    own = [w for w in writes if type(w).prefetch is not Write.prefetch]
    if own:
        replies = yield Batch([w.prefetch() for w in own], keys=[w.key for w in own])
        for w, raw in zip(own, replies, strict=True):
            w.declare_read(raw)
            w.declare(hints.keys.get(w.key, ()))
            hints.keys.setdefault(w.key, set()).update(w.touched())
    writes = [w for w in writes if type(w).prefetch is Write.prefetch]
    if not writes:
        return
    # the types of the keys the scripts will touch, known so far, in the same round trip
    # as the reads: a wrong-typed one refuses the transaction here, before MULTI, with
    # nothing written (its error replies come back as values: the type check speaks first)
    typing = _types_to_check(writes, hints, [k for w in writes for k in
                                             [*w.keys, *(k for k, _ in _unique_takes(w))]])
    cmds: list[Command] = [("TYPE", k) for k in typing]
    watch: list[str] = []
    for w in writes:
        cmds += _object_reads(w)
        watch.append(w.key)
        for k, value in _unique_takes(w):
            cmds.append(("HGET", k, value))
            watch.append(k)
    replies = yield Batch(cmds, keys=watch, errors=True)
    _types_checked(typing, replies[: len(typing)], hints)
    replies = replies[len(typing):]
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    at = 0
    for w in writes:
        _unknown_raw(w, hints)
        exists_now, raw = bool(replies[at]), replies[at + 1]
        at += 2
        first = w.key not in hints.fields and w.key not in hints.lines \
            and w.key not in hints.raw and w.key not in hints.unindexed
        derived, at = _derived(w, hints, raw, exists_now, replies, at)
        w.declare_lines(record_lines(raw) or derived)
        w.declare(hints.keys.get(w.key, ()))
        exists = hints.exists.get(w.key, exists_now)
        old = hints.lines.get(w.key)
        if old is None:
            old = set(record_lines(raw) or derived)
        for k, value in _unique_takes(w):
            if (k, value) not in hints.owners:
                found = replies[at]
                hints.owners[k, value] = None if found is None else _text(found)
            at += 1
        yield from _judge(w, hints, exists, old,
                          first and raw is None and exists_now and w.derive is not None)
        hints.keys.setdefault(w.key, set()).update(w.keys[FIXED_KEYS:])
    # the entry keys the records named (old entries the scripts remove)
    yield from _check_types(writes, hints, [k for w in writes for k in w.keys])


def _judge(w: Write, hints: TxHints, exists: bool, old: set[str],
           maybe_unlisted: bool) -> Plan[None]:
    """:func:`prefetch`'s judgement of one write, before MULTI: refuse a unique value
    another live object holds, then record in ``hints`` what the write leaves.
    ``old``: the object's entries as read (its record's, or what its fields compute to);
    ``maybe_unlisted``: its first write here, of an object that exists without a record."""
    new = _after(w, exists, old)
    if new is None:  # it writes nothing (an update or incr of a missing object): the
        # entries the object had before stay what a gone one may have left (a raw DEL,
        # then this, then a save: found by FW26's property)
        hints.ever.setdefault(w.key, set()).update(old)
        return
    judged = old if exists else set()
    if maybe_unlisted:
        # an object without a record may be unlisted (stored by a version of the model
        # without an index): the script then indexes it whole and takes every unique
        # value it keeps, refused inside EXEC if another object holds one. Each is
        # judged as new here (its holder read, WATCHed): a listed object holds its own
        # (attack 26X F1)
        judged = {line for line in judged if not line.startswith(f"u{SEP}")}
        yield from _read_owners(w, new - judged, hints)
    # (a gone object keeps none of its old entries: every value it takes is checked, as
    # the script checks it: attack 26t F4)
    yield from _check_unique(w, judged, new, hints)
    _record(w, exists, old, new, hints)
    _follow_fields(w, hints)


def _read_owners(w: Write, lines: Iterable[str], hints: TxHints) -> Plan[None]:
    """Read (WATCHed) the holders of the unique values among entry ``lines`` that this
    transaction has not read yet, into ``hints.owners``."""
    if w.spec.claims:
        return
    d = w.spec.delimiter
    todo: list[tuple[str, str]] = []
    for line in sorted(lines):
        kind, name, value = line.split(SEP, 2)
        k = f"{w.root}uq{d}{name}"
        if kind == "u" and (k, value) not in hints.owners and (k, value) not in todo:
            todo.append((k, value))
    if not todo:
        return
    replies = yield Batch([("HGET", k, value) for k, value in todo],
                          keys=[k for k, _ in todo])
    for (k, value), found in zip(todo, replies, strict=True):
        hints.owners[k, value] = None if found is None else _text(found)


def _object_reads(w: Write) -> list[Command]:
    """A transaction's reads (before MULTI) of the object one write writes: whether it
    exists, its record, and without one its indexed fields."""
    cmds: list[Command] = [("EXISTS", w.key), ("HGET", w.keys[1], w.eid)]
    if w.derive is not None:  # no record: its entries are what these compute to
        cmds.append(("HMGET", w.key, *w.stored_names))
    return cmds


def _derived(w: Write, hints: TxHints, raw: Any, exists_now: bool, replies: Sequence[Any],
             at: int) -> tuple[list[str], int]:
    """The entries of the object without a record as its fields read (``replies[at]``:
    :func:`_object_reads` after its record ``raw``) compute to, and where the replies of
    the next reads start. A transaction's increment (no pin token) sends them (after an
    empty token): the script writes them should the object be unlisted."""
    derived: list[str] = []
    later = w.key in hints.fields
    if w.derive is not None:
        derived = _assume_read(w, hints, raw, exists_now, replies[at])
        at += 1
    if w.lister is not None and raw is None and exists_now and not later \
            and w.key not in hints.raw:
        # an increment, the object's first write here, without a record: should it be
        # missing from the all-ids pages (stored by a version of the model without an
        # index), the script indexes it whole from these lines (its fields WATCHed)
        w.args += ["", "\n".join(derived)]  # (no pin token in a transaction)
    return derived, at


def _assume_read(w: Write, hints: TxHints, raw: Any, exists_now: bool, read: Any
                 ) -> list[str]:
    """A transaction's write of a model without stored records: its object's entries as
    its fields (read WATCHed: ``read``) compute to when it has no record (else []), and
    its assumption made what EXEC will find (those bytes, or for a later write of the
    object in this transaction, the lines the earlier ones leave, trusted)."""
    assert w.derive is not None
    fields = dict(zip(w.stored_names, read, strict=True))
    derived = w.derive(fields) if raw is None and exists_now else []
    later = w.key in hints.fields  # an earlier write of it in this transaction
    if not later:
        hints.fields[w.key] = fields
    if w.restate is not None and w.key in hints.raw:  # bytes it cannot know: trusted
        if later:
            lines = hints.lines.get(w.key, set())
            if hints.exists.get(w.key) is False:  # gone (a raw DEL): every entry the
                # writes before may have left (one of them may have failed inside EXEC,
                # unchecked here), all removed; what it writes is all written (F2)
                lines = hints.ever.get(w.key, lines)
            w.restate(w, {}, trusted=True, lines=sorted(lines), full=True)
        else:
            w.restate(w, {}, trusted=True, lines=derived, full=True, fresh=True)
    elif w.restate is not None:
        if later:  # the bytes the earlier writes leave (a write of them that fails inside
            # EXEC leaves others: then this one finds them and is refused, STORED)
            w.restate(w, hints.fields[w.key], full=True,
                      unknown=hints.unknown.get(w.key, set()))
        elif w.key in hints.unindexed:  # none of its entries there yet: all written
            w.restate(w, fields, lines=[], full=True, fresh=True)
            derived = []
        elif raw is None and exists_now:  # WATCHed: EXEC finds these bytes
            # of every indexed field, as an update of some fields outside a transaction
            # assumes them when it answers UNLISTED: should the object be unlisted, the
            # script indexes it whole (attack 26X F4)
            w.assumed = None
            w.restate(w, fields, lines=derived, full=True)
    return derived


def _follow_fields(w: Write, hints: TxHints) -> None:
    """What this write leaves in the object's indexed fields, for the later writes of it
    in the transaction (:func:`_assume_read`)."""
    if w.derive is None:
        return
    mode = _mode(w)
    now = hints.fields.setdefault(w.key, {})
    if mode == "delete":
        hints.fields[w.key] = {}
        hints.unknown.pop(w.key, None)
    elif mode in ("save", "update") and w.written is not None:
        pairs, nones, whole = w.written
        names = set(w.stored_names)
        after: dict[bytes, bytes | None] = dict.fromkeys(names) if whole else \
            {f: None for f in nones if f in names}
        after.update((f, v) for f, v in zip(pairs[::2], pairs[1::2], strict=True)
                     if f in names)
        now.update(after)
        hints.unknown.get(w.key, set()).difference_update(after)
    elif mode == "incr" and w.spec.indexes is not None:
        for name in w.fields:
            f = w.spec.by_name[name]
            stored = f.stored.encode()
            if now.get(stored) is None:  # a value under an old name is moved (the first
                # holding one, as the counter script reads it)
                for old in f.old_stored:
                    if now.get(old.encode()) is not None:
                        now[old.encode()] = None
                        break
            if w.values is not None and name in w.values:  # a predicted int
                now[stored] = str(int(w.values[name])).encode()
                hints.unknown.get(w.key, set()).discard(stored)
            else:
                hints.unknown.setdefault(w.key, set()).add(stored)


def _want_type(w: Write, key: str) -> str | None:
    """The type the index script needs ``key`` to have (None: not checked here)."""
    d = w.spec.delimiter
    if key in (w.key, w.keys[1]):
        return "hash"
    if key in (w.keys[2], w.keys[3], w.keys[4]):
        return "zset"
    if key == w.keys[5]:
        return "string"
    if key.startswith(f"{w.root}eq{d}"):
        return "set"
    if key.startswith(f"{w.root}rng{d}"):
        return "zset"
    if key.startswith(f"{w.root}uq{d}"):
        return "hash"
    return None


def _check_types(writes: Sequence[Write], hints: TxHints, keys: Sequence[str]
                 ) -> Plan[None]:
    """TYPE of each key not checked yet in this transaction (not WATCHed: index keys change
    with every write of other objects); ServerError, nothing written, for a wrong one.
    The last thing a write asks before MULTI: a :attr:`Batch.check`, which a transaction
    sends with the other queued writes' checks."""
    owner = _types_to_check(writes, hints, keys)
    if not owner:
        return
    replies = yield Batch([("TYPE", k) for k in owner], check=True)
    _types_checked(owner, replies, hints)


def _types_to_check(writes: Sequence[Write], hints: TxHints, keys: Sequence[str]
                    ) -> dict[str, tuple[Write, str]]:
    """The keys of :func:`_check_types` not checked yet, with the write and type each
    must have, in order."""
    owner: dict[str, tuple[Write, str]] = {}
    for k in keys:
        if k in hints.typed or k in owner:
            continue
        for w in writes:
            want = _want_type(w, k)
            if want is not None:
                owner[k] = (w, want)
                break
    return owner


def _types_checked(owner: dict[str, tuple[Write, str]], replies: Sequence[Any],
                   hints: TxHints) -> None:
    """Refuse a wrong type among TYPE replies (ServerError); note the others as checked."""
    for k, raw in zip(owner, replies, strict=True):
        if isinstance(raw, Exception):
            raise raw
        actual = _text(raw)
        w, want = owner[k]
        if actual not in ("none", want):
            error = refusal(w.spec, w.key, ["WRONGTYPE", k, actual, want],
                            f"transaction {w.spec.name}")
            assert error is not None
            error.args = (str(error).replace("nothing was written",
                                             "nothing of the transaction was written"),
                          *error.args[1:])
            raise error
        hints.typed.add(k)


def _mode(w: Write) -> str:
    return str(w.args[0]).split(":", 1)[0]


def _unique_takes(w: Write) -> list[tuple[str, str]]:
    """(unique hash key, value text) of the unique values this write may take (unbucketed
    models; claims are checked by the claim script before MULTI)."""
    if w.spec.claims or _mode(w) not in ("save", "update"):
        return []
    d = w.spec.delimiter
    out = []
    for line in record_lines(w.args[7]):
        kind, name, value = line.split(SEP, 2)
        if kind == "u":
            out.append((f"{w.root}uq{d}{name}", value))
    return out


def _after(w: Write, exists: bool, old: set[str]) -> set[str] | None:
    """The entries of the object after this write, as the script computes them; None
    when it changes none (an update, expire or increment of a missing object)."""
    mode = _mode(w)
    given = set(record_lines(w.args[7]))
    if mode == "save":
        return given
    if mode == "delete":
        return set()
    if exists and mode == "expire":  # entries unchanged (a persist may drop its record):
        return set(old)  # followed, for a later write of it (attack 26t F2)
    if not exists or mode not in ("update", "incr"):
        return None
    names = set(str(w.args[6]).split(SEP)) if mode == "update" else set(w.fields)
    if mode == "update" and w.args[6] == "*":
        return given
    kept = {line for line in old if line.split(SEP, 2)[1] not in names}
    if mode == "incr":  # the new entries of the ints it predicted (see _atomic)
        f = w.spec.indexes.fields if w.spec.indexes is not None else {}
        given = {f"e{SEP}{n}{SEP}{f[n].text(v)}" for n, v in (w.values or {}).items()
                 if n in f and f[n].eq and v is not None}
        # a score it moves, which the client does not follow: a range entry is removed
        # by id whatever its value, so a later write of the object in the transaction
        # that assumes these lines (see index_lib.lua, '*') names it with any value
        given |= {f"r{SEP}{n}{SEP}*" for n in names if n in f and f[n].range}
    return kept | given


def _check_unique(w: Write, old: set[str], new: set[str], hints: TxHints) -> Plan[None]:
    """Declare the holder of each unique value this write takes from another object, and
    raise UniqueViolationError now (before MULTI) when that holder is alive and holds it:
    the script would refuse it inside EXEC, after the transaction's other writes."""
    d = w.spec.delimiter
    taken = []
    for line in sorted(new - old):
        kind, name, value = line.split(SEP, 2)
        if kind != "u" or w.spec.claims:
            continue
        owner = hints.owners.get((f"{w.root}uq{d}{name}", value))
        if owner is not None and owner != w.eid:
            taken.append((line, name, value, owner))
    if not taken:
        return
    prefix = w.key[: len(w.key) - len(w.eid)]
    w.declare(prefix + owner for _, _, _, owner in taken)
    taken = _raw_holders(w, taken, prefix, hints)
    # a holder no write of this transaction queued before this one followed (a raw
    # command's does not count: it says only whether the object is there) is read now
    unknown = [o for o in dict.fromkeys(t[3] for t in taken) if prefix + o not in hints.lines]
    state: dict[str, tuple[bool, set[str] | None]] = {}
    if unknown:
        cmds: list[Command] = []
        for o in unknown:
            cmds += [("TYPE", prefix + o), ("HGET", w.keys[1], o)]
        replies = yield Batch(cmds, keys=[prefix + o for o in unknown])
        for i, o in enumerate(unknown):
            # an owner without a record holds the value (as the script judges it); one a
            # raw command queued before makes (a hash command) is there inside EXEC; a
            # key of another type is no owner, as the script judges it (30AW F2)
            raw = replies[2 * i + 1]
            alive = _text(replies[2 * i]) == "hash"
            state[o] = (alive or hints.exists.get(prefix + o) is True,
                        None if raw is None else set(record_lines(raw)))
    held = []
    for line, name, value, owner in taken:
        alive, lines = state.get(owner) or (hints.exists[prefix + owner],
                                            hints.lines.get(prefix + owner, set()))
        if alive and (lines is None or line in lines):
            if owner not in state:  # written earlier here: held as those writes leave it
                raise unique_violation(w.spec, name, value, w.key)
            held.append((line, name, value, owner))
    if not held:
        return
    # the script judges a holder by its record (or, without one, by being there); the
    # other writes judge it by its stored fields, as get_by sees it (free_unheld): read
    # them (WATCHed) and, where they no longer hold the value, queue the fix that gives
    # it up just before this write, inside EXEC
    layout = w.reader
    assert layout is not None, "an index write is made by its layout"
    keys = [prefix + owner for *_, owner in held]
    objects = yield Batch([layout.read(k) for k in keys], keys=keys)
    indexes = w.spec.indexes
    assert indexes is not None
    for (line, name, value, owner), key, reply in zip(held, keys, objects, strict=True):
        try:
            obj = layout.decode(key, unescape(owner), reply)
        except DecodeError:
            obj = None
        if obj is None or line in indexes.entries(
                {n: getattr(obj, n) for n in indexes.fields}, problems=[]):
            raise unique_violation(w.spec, name, value, w.key)
        uq = f"{w.root}uq{d}{name}"
        hints.fixes.append(_unheld_fix(w, name, value, uq, owner, key, reply))
        hints.owners[uq, value] = None
        hints.lines.get(key, set()).discard(line)


def _unknown_raw(w: Write, hints: TxHints) -> None:
    """Refuse (before MULTI, nothing written) a write (not a delete) of an object that a
    raw command queued before it (since its last redmodel write) names elsewhere than
    first, other than a DEL/UNLINK of several keys (COPY src key REPLACE, RENAME src key,
    a value that happens to be the key): its fields inside EXEC cannot be known, so
    neither can the entries to write (attack 26w F2)."""
    if w.key not in hints.raw_blind or hints.exists.get(w.key) is False \
            or _mode(w) == "delete":
        return
    raise TransactionError(
        f"{_mode(w)} {w.spec.name}: a raw command (tx.command) queued before it names "
        f"{key_text(w.key)} elsewhere than as its first argument and may change it in a "
        "way the transaction cannot follow before MULTI: the transaction was refused and "
        "nothing was written. Write "
        "the object with tx.update/tx.save only, or in another transaction")


def _raw_holders(w: Write, taken: list[tuple[str, str, str, str]], prefix: str,
                 hints: TxHints) -> list[tuple[str, str, str, str]]:
    """The unique values ``taken`` whose holder's last write queued before this one is a
    raw command (tx.command): one that deleted it (DEL, UNLINK) gives the value up (the
    script takes it over); one that may have written the holder's unique field (a hash
    command naming it, or any other command on its key) leaves a holder the transaction
    cannot judge before MULTI, and the script would judge it only inside EXEC, after the
    other writes: the transaction is refused now, nothing written (attack 26t F1). A raw
    command naming only other fields leaves the holder as read (kept in the answer)."""
    indexes = w.spec.indexes
    assert indexes is not None
    out = []
    for t in taken:
        key = prefix + t[3]
        if key not in hints.raw_last:
            out.append(t)
            continue
        if hints.exists.get(key) is False:
            continue  # gone inside EXEC when this write runs: taken over
        written = hints.raw_last[key]
        u = next(u for u in indexes.uniques if u.name == t[1])
        stored = {_text(indexes.fields[n].stored) for n in u.fields}
        if written is None or written & stored:
            raise TransactionError(
                f"{_mode(w)} {w.spec.name}: {key_text(w.key)} takes the unique value of "
                f"{t[1]!r} that {key_text(key)} holds, and a raw command (tx.command) "
                "queued before it writes that object (maybe that field): the transaction "
                "cannot know before MULTI whether it still holds the value, so it was "
                "refused and nothing was written. Write the holder with tx.update (or "
                "tx.save) instead of the raw command, or in another transaction")
        out.append(t)
    return out


def _record(w: Write, exists: bool, old: set[str], new: set[str], hints: TxHints) -> None:
    """What this write leaves, for the writes queued after it."""
    mode = _mode(w)
    hints.raw_last.pop(w.key, None)
    hints.raw_blind.discard(w.key)
    hints.exists[w.key] = mode != "delete" and (exists or mode == "save")
    hints.lines[w.key] = new
    hints.ever.setdefault(w.key, set()).update(old, new)
    d = w.spec.delimiter
    if not w.spec.claims:
        for line in old - new:
            kind, name, value = line.split(SEP, 2)
            k = f"{w.root}uq{d}{name}"
            # the script drops the unique entry only if this object holds it (unknown
            # holders are read again by the write that wants the value)
            if kind == "u" and hints.owners.get((k, value)) == w.eid:
                hints.owners[k, value] = None
        for line in new - old:
            kind, name, value = line.split(SEP, 2)
            if kind == "u":
                hints.owners[f"{w.root}uq{d}{name}", value] = w.eid
    indexes = w.spec.indexes
    if indexes is None:
        return
    if mode == "delete":
        for gone in [i for i in hints.ints if i[0] == w.key]:
            del hints.ints[gone]
    elif mode in ("save", "update") and w.values is not None:
        # only the fields it writes: a save of a loaded object sends the changed ones,
        # and its other (maybe stale) values stay as read or as earlier writes left them
        sent = None
        if w.written is not None and not w.written[2]:
            sent = {*w.written[0][::2], *w.written[1]}
        for n, v in w.values.items():
            f = indexes.fields.get(n)
            if sent is not None and f is not None and w.spec.by_name[n].stored.encode() \
                    not in sent:
                continue
            if f is not None and f.eq and f.tp is int and not f.many:
                hints.ints[w.key, n] = 0 if v is None else int(v)


def run_writes(items: Sequence[Write | Command], *, idempotent: bool,
               hints: TxHints | None, what: str, errors: bool = False,
               batched: bool = False,
               meanwhile: Callable[[], None] | None = None,
               fragile: bool = False, first: list[Any] | None = None) -> Plan[list[Any]]:
    """Send the writes (index writes, or any other write command) in one round trip;
    resend the index writes that asked for more keys, with them (again one round trip for
    all). Returns each reply (refusals are left to the caller: see :func:`check`).

    Outside a transaction, a write refused because a unique value is taken is sent once
    more when the object the unique index names no longer holds that value in its stored
    fields (changed by raw commands: its record, which the script checks, is stale); that
    object gives the value up first (:func:`free_unheld`). ``errors``: see
    :attr:`Batch.errors` (error replies come back as ServerError values). ``batched``
    (save_many, delete_many): whole saves and deletes of the objects of one bucket go
    together in one call of ``index_write_many.lua`` (see :func:`_batchable`).
    ``meanwhile``: the first round's :attr:`Batch.meanwhile`. ``fragile``: see
    :attr:`Batch.fragile` (saves keeping an expiry, updates, expiries). ``first``: the
    replies of the first round, which the caller sent itself (one write outside a
    transaction, not batched: :func:`single_batch`); the plan goes on from them."""
    if batched and hints is None:
        _follow_earlier(items)
    replies = yield from _send_writes(items, idempotent=idempotent, hints=hints, what=what,
                                      errors=errors, batched=batched, meanwhile=meanwhile,
                                      fragile=fragile, first=first)
    if hints is not None:
        return replies
    refused = [i for i, (item, reply) in enumerate(zip(items, replies, strict=True))
               if type(reply) is not int and isinstance(item, Write)
               and not item.spec.claims and status(reply) == "UNIQUE"
               and not _owner_later(items, i, reply)]
    if refused and (yield from free_unheld([(items[i], replies[i])  # type: ignore[misc]
                                            for i in refused])):
        again = yield from _send_writes([items[i] for i in refused], idempotent=idempotent,
                                        hints=None, what=what, errors=errors,
                                        fragile=fragile)
        for i, reply in zip(refused, again, strict=True):
            replies[i] = reply
    return replies


def _owner_later(items: Sequence[Write | Command], at: int, reply: Any) -> bool:
    """Whether the object holding the unique value that refused ``items[at]`` (the
    script names it) is written later in the same call: the refusal stands, as it would
    have saving one object after the other (that later write may give the value up, and
    sending the refused write again after it would reorder the call)."""
    owner = _text(reply[3]) if len(reply) > 3 else None
    return owner is not None and any(
        isinstance(w, Write) and w.spec is items[at].spec and str(w.args[1]) == owner  # type: ignore[union-attr]
        for w in items[at + 1:])


def free_unheld(refused: Sequence[tuple[Write, Any]]) -> Plan[bool]:
    """For writes refused with ``{'UNIQUE', name, value}``: the object the unique index
    names gives the value up when its stored fields no longer hold it (decided on the
    object as ``get_by`` sees it, and done by a script that checks those fields did not
    change since). True when any value was given up (or was free already): worth
    sending the refused writes again. The fix answers by state (the value free, or the
    writer's, after it ran), so a copy sent again after a lost reply answers as the
    first did (32F)."""
    looked = []
    for w, reply in refused:
        spec, d = w.spec, w.spec.delimiter
        name, text = _text(reply[1]), _text(reply[2])
        looked.append((w, name, text, f"{w.root}uq{d}{name}"))
    owners = yield Batch([("HGET", uq, text) for _, _, text, uq in looked])
    found = []
    for (w, name, text, uq), raw in zip(looked, owners, strict=True):
        if raw is None:
            return True  # given up meanwhile
        owner = _text(raw)
        if owner != w.eid:
            spec = w.spec
            found.append((w, name, text, uq, owner,
                          spec.object_prefix(spec.tag_of(unescape(owner))) + owner))
    if not found:
        return False
    layout = found[0][0].reader
    assert layout is not None, "an index write is made by its layout"
    objects = yield Batch([layout.read(k) for *_, k in found], keys=[k for *_, k in found],
                          errors=True)
    fixes: list[Command] = []
    for (w, name, text, uq, owner, key), reply in zip(found, objects, strict=True):
        spec = w.spec
        indexes = spec.indexes
        assert indexes is not None
        if isinstance(reply, Exception):
            if "WRONGTYPE" not in str(reply):
                raise reply
            return True  # another type there meanwhile: no object, the script takes it over
        try:
            obj = layout.decode(key, unescape(owner), reply)
        except DecodeError:
            continue  # it cannot be judged: the refusal stands
        if obj is None:
            return True  # gone meanwhile: the script takes the value over
        values = {n: getattr(obj, n) for n in indexes.fields}
        if f"u{SEP}{name}{SEP}{text}" in indexes.entries(values, problems=[]):
            continue  # it does hold it
        fixes.append(_unheld_fix(w, name, text, uq, owner, key, reply))
    if not fixes:
        return False
    done = yield Batch(fixes, write=True, idempotent=True)
    return any(status(r) == "FIXED" and int(r[1]) > 0 for r in done)


def _unheld_fix(w: Write, name: str, text: str, uq: str, owner: str, key: str, reply: Any
                ) -> Command:
    """The fix that makes ``owner`` (at ``key``, read as ``reply``) give up the unique
    value ``text`` of constraint ``name``, if its stored fields are still as read."""
    indexes = w.spec.indexes
    assert indexes is not None
    u = next(u for u in indexes.uniques if u.name == name)
    stored = _fields_of(reply)
    guard: list[Any] = []
    for n in u.fields:
        field = indexes.fields[n].stored
        raw_value = stored.get(field)
        guard += [field, "1" if raw_value is not None else "0",
                  raw_value if raw_value is not None else ""]
    return FIX.call([uq, w.root + "rec", key], ["unheld", name, text, owner, len(u.fields),
                                                *guard, w.eid])


def _fields_of(reply: Any) -> dict[bytes, Any]:
    """An HGETALL reply as {field name (bytes): value}, whatever shape redis-py gave."""
    def b(x: Any) -> bytes:
        return x if isinstance(x, bytes) else str(x).encode()
    if isinstance(reply, dict):
        return {b(k): v for k, v in reply.items()}
    items = list(reply or [])
    return {b(k): v for k, v in zip(items[::2], items[1::2], strict=True)}


def _batchable(item: Write | Command) -> bool:
    """A whole save or a delete by the index write script (not a layout's own write):
    the batch script does exactly what the index write script does for it."""
    return type(item) is Write and _mode(item) in ("save", "delete")


def _batches(items: Sequence[Write | Command], todo: Sequence[int], single: set[int],
             hints: TxHints | None = None
             ) -> tuple[list[Command], list[str], list[list[int]]]:
    """This round's commands: the batchable writes of each bucket (same record, all-ids and
    expiry keys) as one call of the batch script, in their order, then every other item
    alone. Returns the commands, their keys and the items each answers for. A
    transaction's fixes its prefetch found (``hints.fixes``: see :func:`_check_unique`)
    come first, answering for no item."""
    groups: dict[tuple[str, ...], list[int]] = {}
    alone: list[int] = []
    for i in todo:
        item = items[i]
        group = None if i in single or not isinstance(item, Write) else item.group()
        if group is None:
            alone.append(i)
        else:
            groups.setdefault(group, []).append(i)
    cmds: list[Command] = []
    keys: list[str] = []
    owners: list[list[int]] = []
    if hints is not None and hints.fixes:
        cmds += hints.fixes
        keys += [str(fix[3]) for fix in hints.fixes]  # the unique index's hash
        owners += [[] for _ in hints.fixes]
        hints.fixes = []
    for members in groups.values():
        if len(members) == 1:
            alone.append(members[0])
            continue
        first = items[members[0]]
        assert isinstance(first, Write)
        cmds.append(first.many([items[i] for i in members]))  # type: ignore[misc]
        keys.append(_key(items[members[0]]))
        owners.append(members)
    alone.sort()
    for i in alone:
        cmds.append(_command(items[i]))
        keys.append(_key(items[i]))
        owners.append([i])
    return cmds, keys, owners


def _many(writes: Sequence[Write]) -> Command:
    """One call of index_write_many.lua for these writes (each declares its own keys;
    the call declares them all, once)."""
    at: dict[str, int] = {}
    for w in writes:
        for k in w.keys:
            at.setdefault(k, len(at) + 1)
    # what the objects share (rec, all, exp, mode, root, d, objprefix, ttl, changed) goes
    # in a header, sent again only when it changes; each object sends its obj's position,
    # its id, entries and data
    args: list[Any] = [len(writes)]
    head: tuple[Any, ...] = ()
    for w in writes:
        a = w.args
        h = (at[w.keys[1]], at[w.keys[2]], at[w.keys[3]], a[0], a[2], a[3], a[4], a[5], a[6])
        if h != head:
            args += ["h", *h]
            head = h
        args += [at[w.keys[0]], len(a) - 6, a[1], *a[7:]]
    return MANY.call(list(at), args)


def _send_writes(items: Sequence[Write | Command], *, idempotent: bool,
                 hints: TxHints | None, what: str, errors: bool = False,
                 batched: bool = False,
                 meanwhile: Callable[[], None] | None = None,
                 fragile: bool = False, first: list[Any] | None = None) -> Plan[list[Any]]:
    writes = [w for w in items if isinstance(w, Write)]
    assert first is None or (hints is None and not batched and len(items) == 1)
    if hints is not None:
        yield from prefetch(writes, hints)
        batched = False  # a transaction declares every key before MULTI, one write each
    replies: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    asked = [0] * len(items)  # KEYS and STORED answers of each item so far
    single: set[int] = set() if batched else set(todo)  # items sent alone from now on
    # an item sent alone after its batch call answered LATER waits for every earlier such
    # item to be settled: sent together, one that needs another round (a KEYS answer)
    # would land after a later one it conflicts with (the same id, a unique value one
    # gives up and the other takes), and the chunk would not be saved in order
    rounds = 0  # rounds not spent waiting on a pin
    pinned_until: float | None = None  # when waiting on pins stops (time.monotonic())
    waits = 0  # pinned rounds in a row (the pause before the next send: PIN_PAUSES)
    # the tries are counted per object (``asked``: KEY_ROUNDS each); every round settles
    # the first pending object or counts one of its tries, so this bound only guards
    while rounds < (KEY_ROUNDS + 1) * len(items) + 1:
        pins: dict[int, Any] = {}  # this round's PINNED answers (each names its field)
        sent, held_back = _this_round(todo, single, batched)
        cmds, keys, owners = _batches(items, sent, single, hints)
        got = yield from _send_round(
            Batch(cmds, write=True, idempotent=idempotent, keys=keys, errors=errors,
                  pause=PIN_PAUSES[min(waits, len(PIN_PAUSES) - 1)], meanwhile=meanwhile,
                  fragile=fragile,
                  objects=[[_key(items[i]) for i in m] for m in owners] if fragile else None),
            _Round(items, replies, todo, held_back, owners, idempotent, what), first)
        meanwhile = first = None
        again = list(held_back)
        for members, reply in zip(owners, got, strict=True):
            each = (reply if len(members) > 1 and isinstance(reply, list)
                    and status(reply) != "BADARG"
                    else [reply] * len(members))  # one write's, or an error for them all
            for i, r in zip(members, each, strict=True):
                if type(r) is int:  # a write's 1 (or 0): no status word to look at
                    replies[i] = r
                    continue
                item = items[i]
                if status(r) == "LATER":  # after an object of its call that was not written
                    if _judged_alone(item):
                        single.add(i)
                    again.append(i)
                    continue
                if status(r) == "PINNED" and hints is None:
                    pins[i] = r
                    again.append(i)  # another increment's resend is about to land: wait
                    continue
                if batched and status(r) == "STORED" and _judged_alone(item):
                    # sent alone from now on, after the earlier objects the batch left to
                    # be sent alone (as LATER): it may give up a unique value one of them
                    # takes (the batch answers STORED before it judges that)
                    single.add(i)
                if hints is None and isinstance(item, Write) and asked[i] < KEY_ROUNDS \
                        and ((yield from _listed(item, r, what))
                             or _ask_again(item, r, asked[i] + 1)):
                    asked[i] += 1
                    again.append(i)
                    continue
                replies[i] = r
        if not again:
            return replies
        todo = sorted(again)
        waits = waits + 1 if pins else 0
        if pins:
            pinned_until = pinned_until or time.monotonic() + PIN_WAIT
            if time.monotonic() >= pinned_until:  # pinned longer than any pin lasts
                break
        else:
            rounds += 1
    for i in todo:  # still asking: its reply (a KEYS refusal, or the field still pinned
        # when waiting on pins stopped) says nothing was written
        replies[i] = pins.get(i, ["KEYS"])
    return replies


def single_batch(w: Write, *, idempotent: bool, fragile: bool) -> Batch:
    """The batch the first round of ``run_writes([w], hints=None, ...)`` sends, built as
    :func:`_send_writes` builds it: a caller that sends it itself (redmodel._plans._single)
    hands its reply to ``run_writes(..., first=[reply])``, which goes on from there."""
    key = w.key
    return Batch([w.command()], write=True, idempotent=idempotent, keys=[key],
                 fragile=fragile, objects=[[key]] if fragile else None)


def _this_round(todo: list[int], single: set[int], batched: bool
                ) -> tuple[list[int], list[int]]:
    """(the pending items a round of :func:`_send_writes` sends, those it holds back).
    In call order: the pending objects before the first one sent alone go in the round's
    batch call; that one goes (alone) only when none is left before it; every later one
    waits. (An object answered KEYS stays in the batch: sent in one round with a later
    object of its id answered LATER, the two could land in the wrong order, the earlier
    one's write the last: a hypothesis draw of test_save_many_repeats found it.)"""
    alone = [i for i in todo if i in single]
    if not (batched and alone):
        return todo, []
    sent = [i for i in todo if i < alone[0]] or [alone[0]]
    return sent, [i for i in todo if i not in sent]


def _judged_alone(item: Write | Command) -> bool:
    """Whether a batched write that answered LATER or STORED is sent alone from then on
    (each after the earlier such ones are settled): a write of a model with unique values
    (the batch script leaves the judging of a value's holder to index_write.lua, and
    answers STORED before it judges what the write gives up). Any other write is sent
    again in the next round's batch call with the others pending, which keeps the call's
    order itself (an object after an unwritten one of its id answers LATER)."""
    indexes = item.spec.indexes if isinstance(item, Write) else None
    return indexes is None or bool(indexes.uniques)


def _follow_earlier(items: Sequence[Write | Command]) -> None:
    """save_many outside a transaction: a later whole save of an object saved earlier in
    the same call assumes the indexed fields' bytes the earlier save leaves, as a
    transaction's later write does (:func:`_follow_fields`), not what it writes itself,
    so repeating an id costs no round trip when no other client writes it. (Until the
    earlier one is written, the batch script answers LATER for it; when the earlier one
    is refused, it finds other bytes and answers STORED, as any assumption.)"""
    keys = [_key(item) for item in items]
    if len(set(keys)) == len(keys):
        return  # (the common call: each id once)
    left: dict[str, dict[bytes, bytes | None]] = {}
    for item in items:
        if type(item) is not Write or item.derive is None:
            continue
        before = left.get(item.key)
        if item.written is None or _mode(item) != "save" or not item.written[2]:
            left.pop(item.key, None)  # what it leaves is not followed here
            continue
        pairs, _, _ = item.written
        names = set(item.stored_names)
        after: dict[bytes, bytes | None] = dict.fromkeys(names)
        after.update((f, v) for f, v in zip(pairs[::2], pairs[1::2], strict=True)
                     if f in names)
        if before is not None and item.restate is not None:
            item.restate(item, before, full=True)
        left[item.key] = after


def _listed(item: Write, r: Any, what: str) -> Plan[bool]:
    """Whether ``r`` is an increment's (outside a transaction) UNLISTED answer: its object
    has no record and is missing from the all-ids pages (stored by a version of the model
    without an index). Then the object is indexed first (the layout's listing write) and
    the increment is to be sent again."""
    if status(r) != "UNLISTED" or item.lister is None:
        return False
    got = yield from _send_writes([item.lister()], idempotent=True, hints=None, what=what)
    error = refusal(item.spec, item.key, got[0], what)
    if error is not None:
        raise error
    return True


def _ask_again(item: Write, r: Any, round_: int) -> bool:
    """Whether an answer of ``item`` outside a transaction is a question it can answer
    and send again: keys it did not declare (declared now), or STORED (its fields are
    not as it assumed: it assumes them as they are, declaring their lines' keys)."""
    if status(r) == "STORED" and item.restate is not None:
        item.restate(item, _stored_of(r))
        return True
    if status(r) == "UNLISTED" and item.restate is not None and item.assumed is not None:
        # an update of some fields of an object without a record that is missing from the
        # all-ids pages (stored by a version of the model without an index): it has no
        # entries, so those of its other indexed fields are written too; it assumes every
        # indexed field as unknown (the script answers their bytes: STORED)
        item.assumed = None
        item.restate(item, None)
        return True
    need = needed_keys(r)
    if need is None:
        return False
    more = item.spread(need, round_) if item.spread is not None else ()
    return item.declare([*need, *more])


def _stored_of(reply: Any) -> dict[bytes, bytes | None]:
    """A STORED answer's fields: {stored name: bytes, or None when absent}."""
    def b(x: Any) -> bytes:
        return x if isinstance(x, bytes) else str(x).encode()
    return {b(reply[i]): (b(reply[i + 2]) if _text(reply[i + 1]) == "1" else None)
            for i in range(1, len(reply) - 2, 3)}


def _command(item: Write | Command) -> Command:
    return item.command() if isinstance(item, Write) else item


@attrs.frozen
class _Round:
    """What :func:`_given_up` needs of a round of :func:`_send_writes`."""

    items: Sequence[Write | Command]
    replies: Sequence[Any]
    todo: Sequence[int]
    held_back: Sequence[int]
    owners: Sequence[Sequence[int]]
    idempotent: bool
    what: str


def _send_round(batch: Batch, round_: _Round, first: list[Any] | None = None
                ) -> Plan[list[Any]]:
    """One round of :func:`_send_writes` (``first``: its replies, the batch having been
    sent without the plan: :func:`single_batch`). When it ends in a connection error (given up,
    or its outcome unknown: a lost reply), the error says what of the items is known
    (:func:`_given_up`): ``unsent`` holds the positions (in the writes sent) of the
    objects certainly not written (held back by this round: each answered in an earlier
    round without being written, LATER, STORED, and was not sent again; or never run),
    ``wrote`` those written (save_many and delete_many say so: ``.written`` and
    ``.not_written``)."""
    if first is not None:
        return first
    try:
        return (yield batch)
    except CONNECTION_ERRORS as e:
        error = _given_up(e, round_)
        raise error from (e.__cause__ if error is e else e)


def send_each(batch: Batch, what: str) -> Plan[list[Any]]:
    """``batch`` (one write command per object) sent as one round of :func:`_send_writes`
    would be: an error it ends in says which objects were written (:func:`_given_up`)."""
    try:
        return (yield batch)
    except CONNECTION_ERRORS as e:
        n = len(batch.commands)
        error = _given_up(e, _Round(batch.commands, [None] * n, range(n), (),
                                    [[i] for i in range(n)], bool(batch.idempotent), what))
        raise error from (e.__cause__ if error is e else e)


# answers of a write that wrote nothing and asks to be sent again (see _send_writes)
_AGAIN = frozenset({"LATER", "PINNED", "KEYS", "STORED", "UNLISTED"})


def _given_up(error: Exception, round_: _Round) -> Exception:
    """The error of :func:`_send_writes` when a round ends in a connection error, told per
    item what is known (positions in ``items``): ``wrote`` (written: settled in an
    earlier round or answered in this one, not refused) and ``unsent`` (certainly not
    written: held back, answered without writing, or never run: the round's
    :class:`~redmodel._transport._wire.BatchOutcome`); the others may or may not be.
    A plain error once some of the writes that must not run twice were written
    (``idempotent`` False) becomes OutcomeUnknownError naming the keys of the others: a
    plain one reads as "nothing applied, safe to call again" (docs/failures.md,
    "Several writes in one batch"), and calling a counted delete again miscounts."""
    items, replies, owners, what = round_.items, round_.replies, round_.owners, round_.what
    outcome = outcome_of(error)
    pending = set(round_.todo)
    settled = {i: replies[i] for i in range(len(items)) if i not in pending}
    unsent = set(round_.held_back)
    if outcome is None:  # nothing known of the round: lost if unknown, else not run
        if not isinstance(error, OutcomeUnknownError):
            unsent.update(i for members in owners for i in members)
    else:
        for j, members in enumerate(owners):
            if j in outcome.not_ran:
                unsent.update(members)
                continue
            if j not in outcome.ran:
                continue
            reply = outcome.ran[j]
            each = (reply if len(members) > 1 and isinstance(reply, list)
                    and status(reply) != "BADARG" else [reply] * len(members))
            for i, r in zip(members, each, strict=True):
                if type(r) is not int and status(r) in _AGAIN:
                    unsent.add(i)
                else:
                    settled[i] = r
    wrote = sorted(i for i, r in settled.items() if not _refused(items[i], r, what))
    unsent.update(i for i in settled if i not in wrote)
    error.unsent = tuple(sorted(unsent))  # type: ignore[attr-defined]
    error.wrote = tuple(wrote)  # type: ignore[attr-defined]
    if isinstance(error, OutcomeUnknownError) or round_.idempotent or not wrote:
        return error
    keys = tuple(dict.fromkeys(_key(items[i]) for i in range(len(items)) if i not in wrote))
    done = [_key(items[i]) for i in wrote]
    unknown = OutcomeUnknownError(
        f"{what}: part of it was applied (keys {done[:5]}) and then the connection failed "
        f"before the rest (keys {list(keys[:5])}) was applied ({type(error).__name__}: "
        f"{error}): not applied, and it will not be", keys=keys)
    unknown.unsent = error.unsent  # type: ignore[attr-defined]
    unknown.wrote = error.wrote  # type: ignore[attr-defined]
    return unknown


def _refused(item: Write | Command, reply: Any, what: str) -> bool:
    """Whether a settled reply of ``item`` is a refusal (nothing written)."""
    if isinstance(reply, Exception):
        return True
    if type(reply) is int or not isinstance(item, Write):
        return False
    return refusal(item.spec, item.key, reply, what) is not None


def _key(item: Write | Command) -> str:
    return item.key if isinstance(item, Write) else str(item[1])


def check(spec: ModelSpec, key: str, reply: Any, what: str, tx: bool = False) -> Any:
    """The reply of a write, or its refusal raised."""
    error = refusal(spec, key, reply, what, tx=tx)
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


def claim(spec: ModelSpec, key: str, values: dict[str, Any], hints: TxHints | None = None,
          *, reader: ObjectReader, taken_by: list[str] | None = None) -> Plan[Claims]:
    """Claim these unique values for the object at ``key`` in their own buckets, before
    its write (sent at once in a transaction, before MULTI). Raises UniqueViolationError,
    having released the claims just made, when a live object holding one owns it (its
    escaped id appended to ``taken_by``). In a transaction the claims held are noted in
    ``hints`` (see :func:`settle`)."""
    free = None
    if hints is not None:
        def free(k: str, t: str, owner: str, name: str) -> bool:
            # a claim an earlier write of this transaction made, whose object the writes
            # queued since leave without the value: nobody held it before the transaction
            held_by = hints.made.get((k, t, owner))
            return held_by is not None and \
                f"u{SEP}{name}{SEP}{t}" not in hints.lines.get(held_by, set())
    out = yield from _claim(spec, key, values, reader, free, taken_by)
    if hints is not None:
        for k, t in out.ours:
            hints.held[k, t, out.eid] += 1
        for k, t in out.made:
            hints.made[k, t, out.eid] = key
    return out


def _claim(spec: ModelSpec, key: str, values: dict[str, Any], reader: ObjectReader,
           free: Callable[[str, str, str, str], bool] | None = None,
           taken_by: list[str] | None = None) -> Plan[Claims]:
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
    # in a transaction, a claim an earlier write of it made and a later one gave up is
    # taken over at once (a grace of 0 makes it stale for the claim script)
    mine = [(w, owner) for w, owner, _ in taken
            if free is not None and free(w[0], w[1], owner, w[2])]
    stale = [(w, owner) for w, owner, age in taken if (age < 0 or age >= CLAIM_GRACE_MS)
             and (w, owner) not in mine]
    retry = [(w, o, "0") for w, o in mine]
    if stale:  # an old claim is taken over when its owner no longer holds the value
        gone = yield from owners_gone(spec, reader, [(owner, name, text) for (_, text, name), owner
                                             in stale])
        retry += [(w, o, grace) for (w, o), g in zip(stale, gone, strict=True) if g]
    if retry:
        again = yield Batch([CLAIM.call([k], [t, eid, g, o]) for (k, t, _), o, g in retry],
                            write=True, early=True, idempotent=True)
        won = {(w[0], w[1]) for (w, _, _), r in zip(retry, again, strict=True)
               if _held(out, w[0], w[1], r)}
        yield from _claim_refusal(spec, key, again, out)
        taken = [t for t in taken if (t[0][0], t[0][1]) not in won]
    if taken:
        yield from undo(out)
        (_, text, name), holder, _ = taken[0]
        if taken_by is not None:
            taken_by.append(holder)
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


def owners_gone(spec: ModelSpec, reader: ObjectReader, owners: Sequence[tuple[str, str, str]]
                ) -> Plan[list[bool]]:
    """For each (owner id, constraint, value text): whether that owner is gone or no longer
    holds the value, so its claim may be taken over. "Holds" is judged on the object as
    stored (as :func:`get_by` sees it), not on its index record, which is stale when the
    object was changed with raw commands; an object that cannot be decoded holds it. A key
    of another type at the owner's key is no object: the owner is gone (30AR F1)."""
    if not owners:
        return []
    layout = reader
    indexes = spec.indexes
    assert indexes is not None
    keys = [spec.object_prefix(spec.tag_of(unescape(owner))) + owner for owner, _, _ in owners]
    replies = yield Batch([layout.read(k) for k in keys], keys=keys, errors=True)
    out = []
    for key, (owner, name, text), reply in zip(keys, owners, replies, strict=True):
        if isinstance(reply, Exception):
            if "WRONGTYPE" not in str(reply):
                raise reply
            out.append(True)
            continue
        try:
            obj = layout.decode(key, unescape(owner), reply)
        except DecodeError:
            out.append(False)
            continue
        if obj is None:
            out.append(True)
            continue
        values = {n: getattr(obj, n) for n in indexes.fields}
        out.append(f"u{SEP}{name}{SEP}{text}" not in indexes.entries(values, problems=[]))
    return out


def release(claims: Sequence[tuple[str, str]], eid: str) -> Plan[None]:
    """Give up claims this object holds (each only if it still holds it). A
    :attr:`~redmodel._plan.Batch.follow_up`: when it fails plainly the claims stay, and
    the next claimer takes them over (the owner no longer holds the values)."""
    if claims:
        yield Batch([RELEASE.call([k], [t, eid]) for k, t in claims], write=True,
                    idempotent=True, follow_up=True)


def _unhold(claims: Claims | None, hints: TxHints | None) -> None:
    if claims is not None and hints is not None:
        for k, t in claims.ours:
            hints.held[k, t, claims.eid] -= 1


def undo(claims: Claims | None, hints: TxHints | None = None) -> Plan[None]:
    """For a write that did not happen: release its new claims and give the ones it
    refreshed their earlier text back (one round trip). A
    :attr:`~redmodel._plan.Batch.follow_up`: when it fails plainly the claims stay
    unconfirmed, as a crash between claim and write leaves them (taken over once older
    than ``CLAIM_GRACE_MS``), and the call ends as it would have (its refusal, or its
    result)."""
    _unhold(claims, hints)
    if claims is None or not (claims.made or claims.refreshed):
        return
    eid = claims.eid
    yield Batch([RELEASE.call([k], [t, eid]) for k, t in claims.made] +
                [RESTORE.call([k], [t, eid, prev]) for k, t, prev in claims.refreshed],
                write=True, idempotent=True, follow_up=True)


def released_lines(spec: ModelSpec, lines: Iterable[Any]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        _, name, text = _text(line).split(SEP, 2)
        out.append((spec.claim_key(name, text), text))
    return out


def settle(spec: ModelSpec, key: str, reply: Any, claims: Claims | None,
           hints: TxHints | None = None) -> Plan[Any]:
    """After a write with claims: release the unique values it gave up, confirm the ones
    it holds (or release the new ones if it wrote nothing). Returns the write's result.

    In a transaction (``hints``) the writes settle in queue order after EXEC, and a value
    one write gives up that a later write of the same object holds again (a delete, then
    a save with the same value) is not released: the later one confirms it. The net
    effect is what the transaction leaves, not each write's own view.

    Every batch here is a :attr:`~redmodel._plan.Batch.follow_up`: the write ran, and a
    plain connection error or timeout of its settle leaves claims the data stay right
    with (unconfirmed while the object holds the value; of an owner that gave it up,
    taken over by the next claimer), so the call returns the write's result instead of
    an error reading "not applied" (attack 30AX F2)."""
    _unhold(claims, hints)
    result = reply
    gone: list[tuple[str, str]] = []
    if status(reply) == "RELEASE":
        result = reply[1]
        gone = released_lines(spec, reply[2:])
    eid = eid_of(spec, key)
    if hints is not None:
        gone = [(k, t) for k, t in gone if hints.held[k, t, eid] <= 0]
    if result == 0:
        yield from undo(claims)
    elif claims is not None and claims.ours:
        yield Batch([CONFIRM.call([k], [t, eid]) for k, t in claims.ours], write=True,
                    idempotent=True, follow_up=True)
    yield from release(gone, eid)
    return result
