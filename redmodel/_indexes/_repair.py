"""Keeping indexes right after the fact: the sweep of expired objects, unique lookups that
check what they find, and ``reindex`` / ``verify``, which compare the index with the
stored objects in both directions.

``verify`` and ``reindex`` walk the same three passes:

1. **objects** (a SCAN of the model's object keys on every primary): each object's entries,
   computed from its stored values, against the index keys and its record where it has
   one (a missing record is damage only for an object that must keep one: it has an
   expiry, or its model a blind index; REC-CONTRACT section 1);
2. **records** (per bucket: the record hash, the all-ids pages and expiry set): ids the index
   knows whose object does not exist (a raw ``DEL``, a restore from an old snapshot, an
   expiry not swept yet);
3. **entries** (a SCAN of the index keys): members of equality sets, range sets and unique
   hashes that their object does not produce: judged by its record where it has one
   (authoritative), else by what its stored fields compute to (a gone object produces
   none), never by "no record, so stale".

An object without a record that was deleted behind redmodel's back leaves entries no
record names: pass 2 finds its id (in the all-ids pages) and pass 3 its entries, by the
id they hold (the decided trade: ``store.delete`` of such an id cannot name them).

``verify`` reports each disagreement in words; ``reindex`` fixes it (each fix a script
that checks again before it writes, so a concurrent write is never undone), converts the
all-ids index from the format of older versions (``<root>all``, a ZSET or the older SET)
into the pages of ids_lib.lua first (and checks their count), and keeps its progress in
Redis (``<root>reindex``): a run after one that stopped goes through every pass again,
taking up the interrupted pass where it stopped.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import attrs

from redmodel._args import flag, page_count
from redmodel._errors import DecodeError, QueryError, ServerError, as_text, key_text
from redmodel._indexes._registry import rewrite_begins, rewrite_ends
from redmodel._indexes._specs import (
    CLAIM_GRACE_MS,
    SEP,
    IndexSpec,
    entry_key,
    record_lines,
)
from redmodel._indexes._writes import (
    Write,
    check,
    claim,
    free_unheld,
    owners_gone,
    refusal,
    release,
    released_lines,
    run_writes,
    settle,
    status,
    undo,
)
from redmodel._layouts._pick import layout_of
from redmodel._models._keys import glob_escape, unescape
from redmodel._models._specs import ModelSpec, model_class, spec_of
from redmodel._plan import Batch, Emit, IterPlan, Plan, gather, script
from redmodel._plans._objects import _caught, scan_page

__all__ = ["get_by_plan", "reindex_plan", "sweep_plan", "verify_plan"]

M = TypeVar("M")
log = logging.getLogger("redmodel.index")

SWEEP = script("index_sweep")
FIX = script("index_fix")
CONVERT = script("ids_convert")
IDS = script("ids_read")
DROP_CLAIM = script("claim_drop")

MEND_STEP = 1000
"""Members one step of mending the all-ids pages reads at most (docs/queries.md: no call
reads more than about 1,000 members)."""
SWEEP_STEP = 200
"""Expired ids one sweep call handles: each call's work stays bounded."""

STATE_TTL_MS = 7 * 24 * 3600 * 1000
"""A reindex's saved progress is forgotten after a week without a step."""

REREADS = 4
"""How often reindex reads an object again whose indexed fields a writer changed between
its read and its index write, before it leaves that object to its writers."""

# Pass 3 judges an index key's members by the entries their objects compute to, reading
# each object per index key that lists it; an object listed by many keys (a list field's
# contains index with thousands of values) was read, and its entries computed, once per
# key: quadratic in its entries (attacker, session 37: 8,000 tags, verify 176 s). Such an
# object's entries of one index (KEEP_AT or more) are kept for the rest of the call, up
# to KEEP_MAX entries and KEEP_MAX_TEXT characters (the entries' and the kept fields'
# text) in all; a fix whose object changed since reads it again.
KEEP_AT = 16
KEEP_MAX = 1_000_000
KEEP_MAX_TEXT = 32 * 2**20

PHASES = ("convert", "objects", "records", "entries")


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


def _layout(spec: ModelSpec) -> Any:
    return layout_of(spec)


def _indexes(spec: ModelSpec) -> IndexSpec:
    assert spec.indexes is not None
    return spec.indexes


# ---- unique lookups ---------------------------------------------------------------------------


def get_by_plan(model: type[M], values: dict[str, Any]) -> Plan[M | None]:
    """The object holding these unique values: the owner from the unique index (or the
    claim), then the object, which must still hold them (a stale entry finds nothing)."""
    spec = spec_of(model)
    indexes = spec.indexes
    wanted = tuple(values)
    match = next((u for u in (indexes.uniques if indexes else ()) if set(u.fields) ==
                  set(wanted)), None)
    if indexes is None or match is None:
        raise QueryError(f"{spec.name} has no unique constraint on {sorted(wanted)}")
    for name in match.fields:
        f = indexes.fields[name]
        err = f.check(values[name])
        if err is not None:
            raise QueryError(f"{name}: {err}")
    # one text, or with a blind field one per index key (a rotation may be under way)
    texts = indexes.unique_texts(match, [values[n] for n in match.fields])
    replies = yield Batch([("HGET", spec.claim_key(match.name, t), t) for t in texts])
    found = next(((t, r) for t, r in zip(texts, replies, strict=True) if r is not None),
                 None)
    if found is None:
        return None
    text, owner = found
    eid = _text(owner).split(SEP)[0]
    key = spec.object_prefix(spec.tag_of(unescape(eid))) + eid
    layout = _layout(spec)
    replies = yield Batch([layout.read(key)], keys=(key,), errors=True)
    if isinstance(replies[0], Exception):
        if "WRONGTYPE" not in str(replies[0]):
            raise replies[0]
        return None  # a key of another type there is no object: no holder (30AW F2)
    obj = layout.decode(key, unescape(eid), replies[0])
    if obj is None:
        return None
    line = f"u{SEP}{match.name}{SEP}{text}"
    own = indexes.entries({n: getattr(obj, n) for n in indexes.fields}, problems=[])
    return obj if line in own else None


# ---- the sweep of expired objects ----------------------------------------------------------


def sweep_plan(model: type) -> Plan[int]:
    """Drop the index entries of every expired object; returns how many. Per round, per
    bucket (pipelined): one call that names the expired ids and their records, then one
    that drops their entries with every key declared; each call handles at most
    ``SWEEP_STEP`` ids."""
    spec = spec_of(model)
    if spec.indexes is None:
        return 0
    todo = list(spec.tags())
    dropped = 0
    for _ in range(10_000):
        if not todo:
            break
        results = yield from gather([sweep_step(spec, t) for t in todo])
        dropped += sum(n for n, _ in results)
        todo = [t for t, (_, more) in zip(todo, results, strict=True) if more]
    return dropped


def sweep_step(spec: ModelSpec, tag: str | None, limit: int = SWEEP_STEP
               ) -> Plan[tuple[int, bool]]:
    """One bounded sweep of one bucket: (entries of how many objects were dropped, whether
    more expired ids may be waiting)."""
    root, d = spec.index_root(tag), spec.delimiter
    prefix = spec.object_prefix(tag)
    mode = ":c" if spec.claims else ""
    replies = yield Batch([SWEEP.call([root + "rec", root + "exp"], ["due" + mode, limit])],
                          keys=(root + "exp",))
    due = replies[0]
    check(spec, root + "exp", due, f"sweep {spec.name}")
    ids = [_text(x) for x in due[1::2]]
    if not ids:
        return 0, False
    keys = [root + "rec", root + "all", root + "exp", root + "ids", root + "idn"]
    for eid, raw in zip(ids, due[2::2], strict=True):
        keys.append(prefix + eid)
        for line in record_lines(raw):
            k = entry_key(root, d, line, spec.claims)
            if k is not None:
                keys.append(k)
    keys = keys[:5] + sorted(set(keys[5:]))
    # under a memo: a resend after a lost reply answers the first run's count
    replies = yield Batch([SWEEP.memo_call(root, d, keys, ["apply" + mode, root, d, prefix,
                                                           *ids])],
                          write=True, idempotent=True, keys=(root + "exp",))
    done = replies[0]
    if status(done) == "KEYS":  # a record changed between the two calls: next round
        return 0, True
    check(spec, root + "exp", done, f"sweep {spec.name}")
    for bad in done[2:]:
        log.warning("sweep %s: %s is not of its index type (overwritten outside redmodel) "
                    "and was left alone; delete it and run store.reindex(%s)", spec.name,
                    key_text(_text(bad)), spec.cls.__name__)
    return int(done[1]), len(ids) >= limit


# ---- reindex and verify -------------------------------------------------------------------------


@attrs.define
class Progress:
    """What a reindex or verify run has done: emitted after each page."""

    phase: str
    done: int


def whole(value: Any) -> int:
    """A JSON number of a state record that must be an int: ``int()`` would also take
    ``3.7``, ``True``, ``"3"``, ``" 3"``, ``"3_0"`` and other scripts' digits (``"\u0663"``),
    none of which this module writes. Raises TypeError (the record reads as not ours)."""
    if type(value) is not int:
        raise TypeError("not an int")
    return value


def number(value: Any) -> float:
    """A JSON number of a state record (an int or a float, never text or a bool)."""
    if type(value) not in (int, float):
        raise TypeError("not a number")
    return float(value)


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits only: ``str.isdigit`` also takes other scripts'
    digits and superscripts ("\u0663", "\u00b2"), which no Lua script reads as a number."""
    return text.isascii() and text.isdigit()


def cursor_text(text: str) -> bool:
    """Whether ``text`` is a saved SCAN cursor: ``done`` or a non-negative integer that
    SCAN takes (below 2**64)."""
    return text == "done" or (ascii_digits(text) and int(text) < 2**64)


def id_cursor(text: str) -> bool:
    """Whether ``text`` is a saved cursor of a walk of the all-ids pages: ``done``, or
    ``x`` and the hex of the last id read (``x`` alone: from the start)."""
    if text == "done":
        return True
    try:
        return text.startswith("x") and bytes.fromhex(text[1:]) is not None
    except ValueError:
        return False


def _cursor_ok(name: str, text: str) -> bool:
    return id_cursor(text) if name.endswith(":ids") else cursor_text(text)


@attrs.define
class _State:
    """Where a reindex is: its phase and, per SCAN target or bucket, the cursor to resume
    from (saved in Redis after each page). ``held``: for a pass a stopped run had done in
    part, the cursors it stopped at; a resumed run goes through every pass again, and
    takes up each held pass where it stopped (see :func:`reindex_plan`)."""

    phase: int = 0
    cursors: dict[str, str] = attrs.field(factory=dict)
    objects: int = 0
    started: float = attrs.field(factory=time.time)
    held: dict[str, dict[str, str]] = attrs.field(factory=dict)

    def dump(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def load(cls, raw: Any) -> _State | None:
        try:
            data = json.loads(_text(raw))
            held = {str(p): {str(k): str(v) for k, v in c.items()}
                    for p, c in data.get("held", {}).items() if p in PHASES}
            state = cls(whole(data["phase"]),
                        {str(k): str(v) for k, v in data["cursors"].items()},
                        whole(data["objects"]), number(data["started"]), held)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            return None
        cursors = [*state.cursors.items(), *(c for h in held.values() for c in h.items())]
        if not all(_cursor_ok(n, c) for n, c in cursors):
            return None  # a cursor no run wrote: the run starts over (a reindex from scratch)
        return state if 0 <= state.phase <= len(PHASES) else None

    def resumed(self) -> _State:
        """The state a new run starts from: every pass again from the first, except that
        the pass this one was in (and any it held) goes on from its cursors."""
        held = dict(self.held)
        if self.phase < len(PHASES) and self.cursors:
            held[PHASES[self.phase]] = dict(self.cursors)
        return _State(0, {}, 0, self.started, held)


def state_key(spec: ModelSpec) -> str:
    """Where a reindex of this model keeps its progress (beside the first bucket's index)."""
    return spec.index_root(spec.tags()[0]) + "reindex"


def _target_name(target: Any) -> str:
    return str(getattr(target, "name", None) or "server")


Step = Generator["Batch | Emit", "list[Any] | None", Any]


def reindex_plan(model: type, count: int, targets: Sequence[Any], restart: bool = False
                 ) -> IterPlan:
    """Rebuild a model's index from its stored objects; emits :class:`Progress` after each
    page and, at the end, ``Emit([n])`` with how many objects the index holds then.

    A run that stopped (a crash, an error it raised) left its state in Redis; unless
    ``restart``, the next run goes through every pass again, from the first, but takes up
    the pass the stopped run was in where it stopped (that part of it is not read again).
    So whatever changed before the new run in the other passes' reach (a raw DEL of an
    object, say: pass 2) is repaired, at the cost of the earlier passes once more."""
    spec = spec_of(model)
    count = page_count(count, model=spec.name)
    flag(restart, "restart")
    if spec.indexes is None:
        yield Emit([0])
        return
    key = state_key(spec)
    state = None
    if not restart:
        replies = yield from _ask(Batch([("TYPE", key)], keys=(key,)))
        kind = _text(replies[0])
        if kind not in ("string", "none"):
            cls = spec.cls.__name__
            raise ServerError(f"WRONGTYPE {key} is a {kind}, not the string where reindex "
                              f"keeps its progress (overwritten outside redmodel): delete "
                              f"it, or run store.reindex({cls}, restart=True), which "
                              "replaces it", keys=(key,), command=f"reindex {cls}")
        replies = yield from _ask(Batch([("GET", key)], keys=(key,)))
        loaded = _State.load(replies[0]) if replies[0] is not None else None
        state = loaded.resumed() if loaded is not None else None
    # a run that takes up none may record that every blind entry is under the newest key
    begun = None if state is not None else (yield from rewrite_begins(spec))
    state = state or _State()
    fixer = _Repair(spec, fix=True)

    def save_state() -> Step:
        yield Batch([("SET", key, state.dump(), "PX", STATE_TTL_MS)], write=True,
                    idempotent=True, keys=(key,))

    passes = (fixer.convert, fixer.objects, fixer.records, fixer.entries)
    while state.phase < len(passes):
        name = PHASES[state.phase]
        if name == "entries" and fixer.unnamed and "entries" in state.held:
            # pass 2 of this run dropped objects gone without a record: their entries may
            # be in the part of pass 3 the stopped run did, so pass 3 is done whole
            del state.held["entries"]
            log.warning("reindex %s: %d objects were deleted outside redmodel without an "
                        "index record; their entries are found by the entries pass, which "
                        "runs whole again", spec.name, fixer.unnamed)
        if not state.cursors and name in state.held:
            state.cursors = state.held.pop(name)
        done = [0]

        def on_page(page: list[Any], name: str = name, done: list[int] = done) -> Step:
            for cursor_name, cursor, n in page:
                state.cursors[cursor_name] = cursor
                done[0] += n
                if name == "objects":
                    state.objects += n
            yield from save_state()
            yield Emit([Progress(name, state.objects if name == "objects" else done[0])])

        yield from _drive(passes[state.phase](count, targets, state.cursors), on_page)
        state.phase += 1
        state.cursors = {}
        yield from save_state()
    # (an object it passed over keeps its entries under the keys of before: 38L F2)
    yield from rewrite_ends(spec, None if fixer.unindexed or fixer.skipped else begun)
    yield Batch([("DEL", key)], write=True, idempotent=True, keys=(key,))
    yield Emit([(yield from _held_count(spec))])


def _held_count(spec: ModelSpec) -> Plan[int]:
    """How many objects the index holds now (read from its counts, not the pages': a
    resumed run, or objects counted in a page that was redone, must not count any
    twice)."""
    counts = [spec.index_root(tag) + "idn" for tag in spec.tags()]
    sizes = yield Batch([("GET", k) for k in counts], keys=counts)
    total = 0
    for k, raw in zip(counts, sizes or [], strict=True):
        text = _text(raw) if raw is not None else "0"
        if not ascii_digits(text):
            raise ServerError(f"{k} holds {text[:20]!r}, not the count of the all-ids index "
                              "(overwritten outside redmodel while reindex ran): run "
                              f"store.reindex({spec.cls.__name__}) again", keys=(k,),
                              command=f"reindex {spec.cls.__name__}")
        total += int(text)
    return total


def verify_plan(model: type, count: int, targets: Sequence[Any], *,
                scope: Callable[[str], bool] | None = None) -> IterPlan:
    """Every disagreement between the stored objects and their index, in words; emits
    lists of messages (one per page with any). With ``scope`` (a migration step's check):
    a disagreement about one index (named) counts only when ``scope(name)`` is true;
    one about an object or the all-ids index always counts."""
    spec = spec_of(model)
    count = page_count(count, model=spec.name)
    if spec.indexes is None:
        return
    checker = _Repair(spec, fix=False)
    checker.scope = scope

    def on_page(page: list[Any]) -> Step:
        if checker.problems:
            yield Emit(list(checker.problems))
            checker.problems.clear()

    for phase in (checker.convert, checker.objects, checker.records, checker.entries):
        yield from _drive(phase(count, targets, {}), on_page)


def _ask(batch: Batch) -> Plan[list[Any]]:
    """One batch as a sub-plan (its replies typed as a plan's)."""
    replies = yield batch
    return replies


def _drive(steps: Step, on_page: Callable[[list[Any]], Step]) -> Step:
    """Run a pass (a generator of batches and of Emits of (cursor name, cursor, count)):
    its batches go up to the store; each Emit runs ``on_page`` (which may send and emit
    too) before the pass goes on."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Emit):
                yield from on_page(list(step.items))
                step = steps.send(None)
            else:
                step = steps.send((yield step))
    except StopIteration:
        return
    finally:  # ended early (closed, failed): the plan it drives too
        steps.close()


def _text_size(entries: set[str], state: list[Any] | str) -> int:
    """Characters (bytes) of a kept object's entries and of the field values it keeps."""
    held = [state] if isinstance(state, str) else state
    return sum(map(len, entries)) + sum(len(x) for x in held if isinstance(x, (str, bytes)))


class _Repair:
    """The three passes, checking (``fix=False``: problems collected in words) or
    fixing (``fix=True``)."""

    def __init__(self, spec: ModelSpec, fix: bool, strict: bool = False) -> None:
        self.spec = spec
        self.fix = fix
        # a rotation's rebuild: an object it cannot read raises (DecodeError naming its
        # key, before anything of its page is written) instead of being logged and passed
        # over, so the rotation never returns as done while its entries name an older key
        self.strict = strict
        self.indexes = _indexes(spec)
        self.layout = _layout(spec)
        self.problems: list[str] = []
        # verify: which indexes' disagreements count (None: all of them)
        self.scope: Callable[[str], bool] | None = None
        self.d = spec.delimiter
        # root -> (key, type) of the all-ids index in an older format, not converted yet
        # (verify: an id is in the all-ids index when in the pages or in one of them)
        self.old_all: dict[str, list[tuple[str, str]]] = {}
        self.gone: set[str] = set()  # keys reported gone already
        self.bad: set[str] = set()  # keys of the wrong type (reported once, then skipped)
        self.skipped = 0  # objects left to their writers (changed on every read)
        self.unindexed = 0  # objects it could not make entries of (unreadable, a value)
        # (root, id) -> an object's own entries, where its record disagrees (verify pass 3
        # then judges entries by the object, not by the record)
        self.truth: dict[tuple[str, str], set[str]] = {}
        # key -> whether the object had an expiry, and whether it had a record (perhaps
        # of no line), when pass 1 read it (the page's objects)
        self.expiring: dict[str, bool] = {}
        self.recorded: dict[str, bool] = {}
        # objects pass 2 found gone without a record (their entries are pass 3's to find)
        self.unnamed = 0
        # the keys of the objects gone_page found gone (a rotation's rebuild counts them),
        # and of those _read_objects found gone since they were listed (a rotation's
        # rebuild forgets them too: otherwise their records, naming an older index key,
        # would stay while the rotation answered done: 30AW F1)
        self.forgotten: set[str] = set()
        self.vanished: list[str] = []
        self.claims_left = 0  # see claims_key's ``only``
        # (object key, fields) -> what _owners computed from the object, for objects of
        # many entries (KEEP_AT), KEEP_MAX entries and KEEP_MAX_TEXT characters in all;
        # ``kept_size`` and ``kept_text`` count them
        self.kept: dict[tuple[str, tuple[str, ...]], tuple[set[str], list[Any] | str]] = {}
        self.kept_size = 0
        self.kept_text = 0

    def wrong_type(self, key: str, actual: str, want: str) -> None:
        """A key of the wrong type: verify reports it (once) and skips it; reindex stops,
        as no write could touch it."""
        if key in self.bad:
            return
        self.bad.add(key)
        cls = self.spec.cls.__name__
        text = (f"{key} is a {actual}, not a {want} (overwritten outside redmodel): delete "
                f"it and run store.reindex({cls})")
        if self.fix:
            raise ServerError(f"WRONGTYPE {text}", keys=(key,), command=f"reindex {cls}")
        self.problems.append(text)

    def types(self, wanted: dict[str, str]) -> Plan[None]:
        """Check the types of these keys (key -> the type it must have)."""
        keys = sorted(k for k in wanted if k not in self.bad)
        if not keys:
            return
        replies = yield Batch([("TYPE", k) for k in keys])
        for k, t in zip(keys, replies, strict=True):
            actual = _text(t)
            ok = wanted[k] in (actual, "set|zset" if actual in ("set", "zset") else "")
            if actual != "none" and not ok:
                self.wrong_type(k, actual, wanted[k])

    def report(self, text: str, index: str | None = None) -> None:
        """A disagreement; ``index`` names the one index it is about, if any."""
        if self.fix:
            log.warning("reindex %s: %s", self.spec.name, as_text(text))  # a log is text
        elif index is None or self.scope is None or self.scope(index):
            self.problems.append(text)

    # ---- pass 0: the format of older versions ---------------------------------------------

    def convert(self, count: int, targets: Sequence[Any], cursors: dict[str, str]) -> Step:
        if not self.fix:  # reindex checks its progress key itself, before it starts
            key = state_key(self.spec)
            replies = yield from _ask(Batch([("TYPE", key)], keys=(key,)))
            kind = _text(replies[0])
            if kind not in ("string", "none"):
                self.bad.add(key)
                self.problems.append(
                    f"{key} is a {kind}, not the string where reindex keeps its progress "
                    "(overwritten outside redmodel), so no reindex can run: delete it, or "
                    f"run store.reindex({self.spec.cls.__name__}, restart=True)")
        cls = self.spec.cls.__name__
        for tag in self.spec.tags():
            root = self.spec.index_root(tag)
            keys = self.ids_keys(root)
            yield from self.types({root + "rec": "hash", root + "exp": "zset",
                                   root + "all": "set|zset", keys[1]: "set",
                                   keys[2]: "zset", keys[3]: "string"})
            if not self.fix:
                replies = yield from _ask(Batch([("TYPE", keys[0]), ("TYPE", keys[1])],
                                                keys=keys[:2]))
                old = [(k, _text(t)) for k, t in zip(keys[:2], replies, strict=True)
                       if _text(t) in ("set", "zset")]
                if old:
                    self.old_all[root] = old
                    for k, t in old:
                        self.report(f"{k} is a {t}, the all-ids index in the format of an "
                                    f"older redmodel, not converted to pages yet (queries "
                                    f"answer IndexNotReadyError): run store.reindex({cls}) "
                                    "to convert it")
                if keys[3] not in self.bad and keys[2] not in self.bad:
                    yield from self.mend_pages(root, count)
                if keys[3] not in self.bad and keys[2] not in self.bad:
                    counted = yield from self.count_ids(root, "count")
                    if counted is not None and str(counted[0]) != counted[1]:
                        self.report(f"{keys[3]} holds {counted[1]!r}, but the all-ids pages "
                                    f"hold {counted[0]} ids (count() of every object "
                                    f"answers it): run store.reindex({cls})")
                yield Emit([(str(tag), "", 0)])
                continue
            left = 1
            while left:
                replies = yield from _ask(Batch(
                    [CONVERT.call(keys, ["move", self.d, count])],
                    write=True, idempotent=True, keys=(keys[0],)))
                reply = check(self.spec, keys[0], replies[0], "reindex (convert)")
                left = int(reply[1])
            yield from self.mend_pages(root, count)
            counted = yield from self.count_ids(root, "fix")
            if counted is not None and str(counted[0]) != counted[1]:
                self.report(f"{keys[3]} held {counted[1]!r} where the all-ids pages hold "
                            f"{counted[0]} ids: set right")
            yield Emit([(str(tag), "", 0)])

    def mend_pages(self, root: str, count: int) -> Plan[None]:
        """The pages of a bucket against their directory, a bounded step at a time
        (ids_mend of ids_lib.lua): verify reports each damage, reindex mends it (bounds
        without a page, ids outside their page's bounds or in two pages, oversized pages,
        scores other than 0)."""
        keys = self.ids_keys(root)
        mode = "mend" if self.fix else "check"
        budget = max(64, min(count, MEND_STEP))
        start = "-"
        cls = self.spec.cls.__name__
        tail = ": set right" if self.fix else f": run store.reindex({cls})"
        while True:
            replies = yield from _ask(Batch(
                [CONVERT.memo_call(root, self.d, keys, [mode, self.d, start, budget])
                 if self.fix else CONVERT.call(keys, [mode, self.d, start, budget])],
                write=self.fix, idempotent=True, keys=(keys[2],)))
            reply = replies[0]
            if status(reply) == "WRONGTYPE":
                if self.fix:
                    check(self.spec, _text(reply[1]), reply, "reindex (pages)")
                self.wrong_type(_text(reply[1]), _text(reply[2]), _text(reply[3]))
                return
            reply = check(self.spec, keys[2], reply, f"{mode} (pages)")
            found = reply[3:]
            for at in range(0, len(found), 4):
                kind, key = _text(found[at]), _text(found[at + 1])
                n, sample = int(found[at + 2]), _text(found[at + 3])
                self.report(_damage(kind, key, n, sample) + tail)
            if int(reply[1]) == 1:
                return
            start = _text(reply[2])

    def ids_keys(self, root: str) -> list[str]:
        """The keys of ids_convert.lua: the old all-ids index, the spare key an interrupted
        conversion of an older version left, the directory of the pages, their count."""
        return [root + "all", root + "all" + self.d + "old", root + "ids", root + "idn"]

    def count_ids(self, root: str, mode: str) -> Plan[tuple[int, str] | None]:
        """(ids the pages hold, the count's text) of a bucket; ``fix`` also sets the
        count right (over a count holding no integer >= 0 too). None when verify found a
        key of the wrong type (reported)."""
        keys = self.ids_keys(root)
        call = (CONVERT.memo_call(root, self.d, keys, [mode, self.d]) if mode == "fix"
                else CONVERT.call(keys, [mode, self.d]))
        replies = yield from _ask(Batch([call],
                                        write=mode == "fix", idempotent=True,
                                        keys=(keys[3],)))
        reply = replies[0]
        if status(reply) == "WRONGTYPE":
            if self.fix:
                check(self.spec, keys[3], reply, "reindex (count)")
            self.wrong_type(_text(reply[1]), _text(reply[2]), _text(reply[3]))
            return None
        return int(reply[1]), _text(reply[2])

    # ---- pass 1: every object against its entries -------------------------------------------

    def objects(self, count: int, targets: Sequence[Any], cursors: dict[str, str]) -> Step:

        for target in targets:
            name = _target_name(target)
            if cursors.get(name) == "done":  # before int(): "done" is no number
                continue
            cursor = int(cursors.get(name, "0"))
            while True:
                cursor, keys = yield from scan_page(self.spec, cursor, count, target)
                n = (yield from self.object_page(keys)) if keys else 0
                yield Emit([(name, str(cursor) if cursor else "done", n)])
                if cursor == 0:
                    break

    def object_page(self, keys: Sequence[str]) -> Plan[int]:
        """Check (verify) or rebuild (reindex) the entries of the objects at ``keys``;
        returns how many exist. A rebuild writes an object's entries only if its indexed
        fields are still as read (the script checks them); one a writer changed meanwhile
        is read again, up to ``REREADS`` times, and then left to its writers (logged)."""
        self.expiring.clear()
        self.recorded.clear()
        found, states = yield from self._read_objects(keys)
        n = len(found)
        if not self.fix:
            yield from self.check_objects(found)
            return n
        for _ in range(REREADS):
            changed = yield from self.rebuild(found, states)
            if not changed:
                return n
            found, states = yield from self._read_objects(changed)
        changed = yield from self.rebuild(found, states)
        for key in changed:
            log.warning("reindex %s: %s: its indexed fields changed between each of %d "
                        "reads and its index write; left as its writers keep it (each of "
                        "their writes maintains its entries)", self.spec.name, key_text(key),
                        REREADS + 1)
        self.skipped += len(changed)
        return n

    def _read_objects(self, keys: Sequence[str]
                      ) -> Plan[tuple[list[tuple[str, Any, list[str], list[str], list[str]]],
                                      list[list[Any]]]]:
        """(key, object, its entries, its record's lines, its index keys) of each object
        at ``keys`` that exists and decodes, and (reindex) the stored fields its entries
        come from (:meth:`HashLayout.indexed_state`)."""
        heads = [self.layout.index_keys(k) for k in keys]
        cmds: list[Any] = [self.layout.read(k) for k in keys]
        cmds += [("HGET", ks[1], head[0]) if ks[1] not in self.bad else ("EXISTS", ks[1])
                 for ks, head in heads]
        cmds += [("PTTL", k) for k in keys]
        replies = yield Batch(cmds, keys=list(keys), errors=True)
        for i, reply in enumerate(replies):
            # a key of another type written over an object since it was listed is no
            # object: gone, as a DEL leaves it (30AW F1); any other error stops the read
            if isinstance(reply, Exception) and (i >= len(keys) or "WRONGTYPE" not in
                                                 str(reply)):
                raise reply
        found: list[tuple[str, Any, list[str], list[str], list[str]]] = []
        states: list[list[Any]] = []
        for i, key in enumerate(keys):
            raw, record = replies[i], replies[len(keys) + i]
            if isinstance(raw, Exception):
                self.vanished.append(key)
                continue
            # an object with an expiry keeps a record (the sweep undoes its entries from
            # it once its hash is gone), as does every object of a model with a blind index
            self.expiring[key] = int(replies[2 * len(keys) + i]) >= 0
            eid = heads[i][1][0]
            try:
                obj = self.layout.decode(key, unescape(eid), raw)
            except DecodeError as e:
                if self.strict:
                    raise DecodeError(
                        f"cannot be read, so its index entries cannot be rewritten under "
                        f"the newest index key ({e.reason}); the rotation is not done: "
                        f"repair or delete the object, then run it again",
                        model=self.spec.name, key=key, field=e.field, codec=e.codec,
                    ) from None
                self.report(f"{key}: cannot be read, so it cannot be indexed ({e})")
                self.unindexed += 1
                continue
            if obj is None:
                self.vanished.append(key)
                continue  # deleted since the SCAN
            problems: list[tuple[str, str]] = []
            entries = self.indexes.entries({n: getattr(obj, n) for n in self.indexes.fields},
                                           problems=problems)
            for field, why in problems:
                self.report(f"{key}: {field} cannot be indexed ({why})")
            self.unindexed += bool(problems)
            unread = heads[i][0][1] in self.bad  # the record hash is of the wrong type
            if not isinstance(record, (bytes, str)):
                record = None  # (reported: judged without it)
            # (a record may hold no line; one that could not be read is not reported missing)
            self.recorded[key] = record is not None or unread
            found.append((key, obj, entries, record_lines(record), heads[i][0]))
            if self.fix:
                states.append(self.layout.indexed_state(raw))
        return found, states

    def rebuild(self, found: Sequence[tuple[str, Any, list[str], list[str], list[str]]],
                states: Sequence[list[Any]]) -> Plan[list[str]]:
        """Write each object's entries (and claim its unique values); returns the keys of
        the objects whose indexed fields changed since they were read (nothing written)."""
        spec = self.spec
        writes: list[Write] = []
        for (key, _, entries, record, _), state in zip(found, states, strict=True):
            w = self.layout.write(key, "reindex", "", "*", entries, state)
            w.declare_lines(record)
            writes.append(w)
        claims: list[Any] = [None] * len(found)
        if spec.claims:
            got = yield from gather([_caught(claim(spec, key, {n: getattr(obj, n) for n in
                                                             self.indexes.fields},
                                                   reader=self.layout))
                                     for key, obj, _, _, _ in found])
            for i, (c, (key, _, _, _, _)) in enumerate(zip(got, found, strict=True)):
                if isinstance(c, Exception):
                    self.report(f"{key}: {c}")
                else:
                    claims[i] = c
        replies = yield from run_writes(writes, idempotent=True, hints=None,
                                        what=f"reindex {spec.name}")
        after = []
        changed = []
        for (key, _, _, _, _), w, reply, c in zip(found, writes, replies, claims, strict=True):
            if status(reply) == "CHANGED":
                changed.append(key)
                if c is not None:
                    after.append(undo(c))
                continue
            error = refusal(spec, key, reply, f"reindex {spec.name}")
            if error is not None:
                raise error
            if status(reply) == "REINDEX":
                n = int(reply[1])
                held = []
                for line in reply[2 : 2 + n]:
                    _, name, value = _text(line).split(SEP, 2)
                    held.append((name, value))
                if held:
                    freed = yield from self._free(key, w, held)
                    if freed:
                        changed.append(key)  # written again, with the values given up
                gone = released_lines(spec, reply[2 + n:])
                if c is not None or gone:
                    after.append(self._after(key, w, c, gone))
            elif c is not None:
                after.append(settle(spec, key, reply, c))
        if after:
            yield from gather(after)
        return changed

    def _free(self, key: str, w: Write, held: Sequence[tuple[str, str]]) -> Plan[bool]:
        """Unique values the index names another object as holding, which this object
        holds too: each is given up by that object when its stored fields do not hold it
        (judged on the object as ``get_by`` sees it, by a script that checks those fields
        did not change meanwhile: the script's judgment by a record, or by the owner
        merely existing when it keeps none, is not the last word). True when any was
        given up (this object is then written again); the others are reported."""
        freed = False
        for name, value in held:
            given = yield from free_unheld([(w, ["UNIQUE", name, value])])
            if given:
                freed = True
            else:
                self.report(f"{key}: {name}={_shown(self.spec, name, value)} is held by "
                            "another object too; that object keeps it", name)
        return freed

    def _after(self, key: str, w: Write, c: Any, gone: list[tuple[str, str]]) -> Plan[None]:
        if c is not None:
            yield from settle(self.spec, key, 1, c)
        yield from release(gone, w.eid)

    def _membership(self, found: Sequence[tuple[str, Any, list[str], list[str], list[str]]]
                    ) -> list[tuple[int, str, str, tuple[Any, ...], str]]:
        """(object index, entry line or "all", id, the command reading it, the type its
        key must have) for every entry of these objects; the all-ids index: the pages
        (ids_read.lua, one call per bucket for every id of the page), and the keys of an
        older format not converted yet."""
        spec, d = self.spec, self.d
        planned: list[tuple[int, str, str, tuple[Any, ...], str]] = []
        per_root: dict[str, list[tuple[int, str]]] = {}
        for i, (key, _, entries, _, ks) in enumerate(found):
            eid = self.layout.index_keys(key)[1][0]
            root = ks[1][: -len("rec")]
            per_root.setdefault(root, []).append((i, eid))
            for old, kind in self.old_all.get(root, []):
                planned.append((i, "all?", eid, ("SISMEMBER" if kind == "set" else "ZSCORE",
                                                 old, eid), kind))
            for line in entries:
                kind, name, value = line.split(SEP, 2)
                if kind == "e":
                    cmd: tuple[Any, ...] = ("SISMEMBER", f"{root}eq{d}{name}{d}{value}", eid)
                    tp = "set"
                elif kind == "r":
                    cmd, tp = ("ZSCORE", f"{root}rng{d}{name}", eid), "zset"
                else:
                    cmd, tp = ("HGET", spec.claim_key(name, value), value), "hash"
                planned.append((i, line, eid, cmd, tp))
        for root, ids in per_root.items():
            call = IDS.call([root + "ids", root + "idn"], ["has", d, *[e for _, e in ids]])
            planned.append((-1, "ids", root, call, "zset"))
            for i, eid in ids:
                planned.append((i, "all", eid, ("IDS", root + "ids"), "zset"))
        return planned

    def _listed(self, found: Sequence[tuple[str, Any, list[str], list[str], list[str]]],
                planned: list[tuple[int, str, str, tuple[Any, ...], str]],
                calls: list[tuple[int, str, str, tuple[Any, ...], str]],
                what: list[tuple[int, str, str]], replies: list[Any],
                per: list[list[str]], present: list[int]) -> set[int]:
        """The all-ids membership of each object checked: in the pages (the replies of the
        ids script's calls, after those of ``what``), or in a key of an older format.
        Returns the objects whose membership could not be read (a directory, page or
        count of the wrong type, reported), which are judged on the rest only."""
        listed: dict[tuple[str, str], bool] = {}
        unread: set[int] = set()
        for (_, _, root, _, _), reply in zip(calls, replies[len(what):], strict=True):
            if status(reply) == "WRONGTYPE":
                self.wrong_type(_text(reply[1]), _text(reply[2]), _text(reply[3]))
                continue
            eids = [e for _, line, e, cmd, _ in planned if line == "all" and
                    cmd[1] == root + "ids"]
            for eid, has in zip(eids, reply[1:], strict=True):
                listed[(root, eid)] = bool(int(has))
        for (i, line, eid), reply in zip(what, replies[: len(what)], strict=True):
            # SISMEMBER answers 0 for no; ZSCORE None (its score of a member is 0.0)
            if line == "all?" and reply is not None and (reply != 0 or isinstance(reply, float)):
                listed[(found[i][4][1][: -len("rec")], eid)] = True
        for i, line, eid, cmd, _ in planned:
            if line != "all":
                continue
            root = cmd[1][: -len("ids")]
            if (root, eid) not in listed:
                unread.add(i)  # a directory, page or count of the wrong type (reported)
                continue
            if listed[(root, eid)]:
                present[i] += 1
            else:
                per[i].append(f"{found[i][0]}: missing from the all-ids index (unfiltered "
                              "queries and counts miss it)")
        return unread

    @staticmethod
    def _key_of(cmd: Any) -> str:
        """The key a planned command reads (a script call: its first key)."""
        if isinstance(cmd, tuple) and cmd and cmd[0] in ("EVALSHA", "EVAL"):
            return str(cmd[3])
        return str(cmd[1])

    def check_objects(self, found: Sequence[tuple[str, Any, list[str], list[str], list[str]]]
                      ) -> Plan[None]:
        spec = self.spec
        planned = self._membership(found)
        yield from self.types({self._key_of(p[3]): p[4] for p in planned})
        skipped = {i for i, _, _, cmd, _ in planned if cmd[1] in self.bad}
        # the ids script's calls carry the directory as their first key (after the script)
        live = [p for p in planned if p[3][0] != "IDS" and self._key_of(p[3]) not in self.bad]
        cmds = [p[3] for p in live if p[0] >= 0]
        what = [p[:3] for p in live if p[0] >= 0]
        calls = [p for p in live if p[0] < 0]
        if not cmds and not calls:
            return
        replies = yield Batch(cmds + [p[3] for p in calls])
        per: list[list[str]] = [[] for _ in found]
        present = [0] * len(found)
        skipped |= self._listed(found, planned, calls, what, replies, per, present)
        for (i, line, eid), reply in zip(what, replies[: len(what)], strict=True):
            key = found[i][0]
            if line == "all?":
                continue
            kind, name, value = line.split(SEP, 2)
            shown = _shown(spec, name, value)
            if kind == "e" and not reply:
                per[i].append(f"{key}: missing from the equality index {name}={shown}")
            elif kind == "r" and reply is None:
                per[i].append(f"{key}: missing from the range index {name} (it should be "
                              f"{value})")
            elif kind == "r" and float(reply) != float(value):
                per[i].append(f"{key}: the range index {name} holds {_text(reply)}, but "
                              f"the object has {value}")
            elif kind == "u" and (_text(reply).split(SEP)[0] if reply is not None
                                  else None) != eid:
                owner = _text(reply).split(SEP)[0] if reply is not None else None
                held = "nothing" if owner is None else f"id {unescape(owner)!r}"
                per[i].append(f"{key}: the unique index {name}={shown} points at {held}")
            else:
                present[i] += 1
        cls = spec.cls.__name__
        for i, (key, _, entries, record, _) in enumerate(found):
            if not record and not present[i] and i not in skipped:
                self.report(f"{key}: not indexed at all (no index record, none of its "
                            f"{len(entries)} entries, not in the all-ids index): run "
                            f"store.reindex({cls})")
                continue
            ks = self.layout.index_keys(key)
            has = self.recorded.get(key, False)
            if has and set(entries) != set(record):
                # a record, where present, is authoritative: the next write would take it
                # for the object's old entries
                self.truth[(ks[1][1], ks[1][0])] = set(entries)
                self.report(f"{key}: its record of index entries does not match its values "
                            "(the next write would leave wrong entries behind)")
            elif not has and self.keeps(key):
                self.truth[(ks[1][1], ks[1][0])] = set(entries)
                why = ("its model has a blind index: a key rotation finds its entries "
                       "there" if self.indexes.keeps_records else "it has an expiry: the "
                       "sweep drops its entries from the record once it is gone")
                self.report(f"{key}: has no index record, which it must keep ({why}): run "
                            f"store.reindex({cls})")
            for text in per[i]:
                self.report(text)

    def keeps(self, key: str) -> bool:
        """Whether the object at ``key`` (read by pass 1) must keep a stored index record:
        its model has a blind index, or it has an expiry (REC-CONTRACT section 1). Any
        other object's entries are what its stored fields compute to; a record it still
        has (written by an older version) is used by its next write and dropped then."""
        return self.indexes.keeps_records or self.expiring.get(key, False)

    # ---- pass 2: ids the index knows whose object is gone -----------------------------------

    def records(self, count: int, targets: Sequence[Any], cursors: dict[str, str]) -> Step:
        spec = self.spec
        for tag in spec.tags():
            root = spec.index_root(tag)
            old = {k[len(root):]: t for k, t in self.old_all.get(root, [])}
            for source in ("rec", "ids", "exp", *old):
                name = f"{tag}:{source}"
                if cursors.get(name) == "done" or root + source in self.bad:
                    continue
                start = "x" if source == "ids" else "0"
                cursor = cursors.get(name, start)
                while True:
                    cursor, ids = yield from self._ids_page(root, source, cursor, count,
                                                            old.get(source))
                    n = (yield from self.gone_page(tag, ids)) if ids else 0
                    yield Emit([(name, cursor if cursor != "0" else "done", n)])
                    if cursor in ("0", "done"):
                        break

    def _ids_page(self, root: str, source: str, cursor: str, count: int,
                  kind: str | None = None) -> Plan[tuple[str, list[str]]]:
        """One page of the ids a source of a bucket lists, and the cursor after it ("0" or
        "done" at the end): the record hash, the all-ids pages (read by id through
        ids_read.lua: the cursor is ``x`` and the hex of the last id), the expiry set, or
        (verify) a key of the older format (``kind``: its type)."""
        if source == "ids":
            dir_key = root + "ids"
            after = bytes.fromhex(cursor[1:])
            replies = yield Batch([IDS.call([dir_key, root + "idn"],
                                            ["after", self.d, after, count])],
                                  keys=(dir_key,))
            reply = replies[0]
            if status(reply) == "WRONGTYPE":
                self.wrong_type(_text(reply[1]), _text(reply[2]), _text(reply[3]))
                return "done", []
            raw = [r if isinstance(r, bytes) else str(r).encode("utf-8", "surrogateescape")
                   for r in reply[2:]]
            done = int(reply[1]) == 1 or not raw
            return ("done" if done else "x" + raw[-1].hex()), [_text(m) for m in raw]
        if kind == "set":
            replies = yield Batch([("SSCAN", root + source, cursor, "COUNT", count)],
                                  keys=(root + source,))
            next_cursor, items = replies[0]
            return _text(next_cursor), [_text(m) for m in items]
        cmd = ("HSCAN" if source == "rec" else "ZSCAN", root + source, cursor, "COUNT", count)
        replies = yield Batch([cmd], keys=(root + source,))
        next_cursor, items = replies[0]
        return _text(next_cursor), [_text(m) for m, _ in _pairs(items)]

    def gone_page(self, tag: str | None, ids: Sequence[str]) -> Plan[int]:
        spec = self.spec
        prefix, root = spec.object_prefix(tag), spec.index_root(tag)
        rec = root + "rec"
        # an object is a hash at its key: a key of another type there (a raw SET, RPUSH,
        # ... over a deleted object) is no object, so its id is gone like one never
        # written (30AR F1: EXISTS is true for a key of any type, so such an id was kept)
        replies = yield Batch([("TYPE", prefix + e) for e in ids] +
                              [("HGET", rec, e) if rec not in self.bad else ("EXISTS", rec)
                               for e in ids])
        kinds = [_text(t) for t in replies[: len(ids)]]
        gone = [(e, record_lines(r), kind) for e, kind, r in
                zip(ids, kinds, replies[len(ids):], strict=True) if kind != "hash"]
        if not gone:
            return 0
        self.forgotten.update(prefix + e for e, _, _ in gone)
        if not self.fix:
            for e, _, kind in gone:
                if prefix + e not in self.gone:
                    self.gone.add(prefix + e)
                    self.report(f"{prefix}{e}: indexed, but the object does not exist " + (
                        "(deleted outside redmodel, restored from an older snapshot, or "
                        "expired and not swept yet)" if kind == "none" else
                        f"(its key holds a {kind}, not an object: overwritten outside "
                        "redmodel; reindex drops its entries and leaves that key alone)"))
            return len(gone)
        # their entries no record names: pass 3 finds them (a resumed run redoes it whole)
        self.unnamed += sum(1 for kind, r in zip(kinds, replies[len(ids):], strict=True)
                            if kind != "hash" and r is None)
        writes = []
        for e, record, _ in gone:
            # forgotten in this bucket (tag), where it was found: an id of another bucket
            # planted here leaves this bucket's keys only, never its own bucket's
            w = self.layout.write(prefix + e, "forget", tag=tag)
            w.declare_lines(record)
            writes.append(w)
        replies = yield from run_writes(writes, idempotent=True, hints=None,
                                        what=f"reindex {spec.name}")
        releases = []
        for w, reply in zip(writes, replies, strict=True):
            check(spec, w.key, reply, f"reindex {spec.name}")
            if status(reply) == "RELEASE":
                releases.append(release(released_lines(spec, reply[2:]), w.eid))
        if releases:
            yield from gather(releases)
        return len(gone)

    # ---- pass 3: entries no record holds ----------------------------------------------------

    def entries(self, count: int, targets: Sequence[Any], cursors: dict[str, str]) -> Step:
        spec, d = self.spec, self.d
        tagged = "{*}" + glob_escape(d) if spec.buckets is not None else ""
        pattern = f"{glob_escape(spec.prefix)}{glob_escape(d)}{tagged}%idx{glob_escape(d)}*"
        for target in targets:
            name = _target_name(target)
            if cursors.get(name) == "done":
                continue
            cursor = int(cursors.get(name, "0"))
            while True:
                replies = yield from _ask(Batch(
                    [("SCAN", cursor, "MATCH", pattern, "COUNT", count)], target=target))
                next_cursor, raw = replies[0]
                if isinstance(next_cursor, dict):
                    next_cursor = next(iter(next_cursor.values()))
                cursor = int(next_cursor)
                n = 0
                for key in sorted(_text(k) for k in raw):
                    n += yield from self.index_key(key, count)
                yield Emit([(name, str(cursor) if cursor else "done", n)])
                if cursor == 0:
                    break

    def _parse(self, key: str) -> tuple[str, str, str, str] | None:
        """(root, kind, field or constraint, value text) of an index key; None for the
        record, all-ids, expiry and state keys."""
        d = self.d
        marker = "%idx" + d
        at = key.find(marker)
        if at < 0:
            return None
        root, rest = key[: at + len(marker)], key[at + len(marker):]
        if rest.startswith("eq" + d):
            body = rest[2 + len(d):]
            for name, f in self.indexes.fields.items():
                if f.eq and body.startswith(name + d) and d not in body[len(name) + len(d):]:
                    return root, "eq", name, body[len(name) + len(d):]
            return root, "eq?", body, ""
        if rest.startswith("rng" + d):
            return root, "rng", rest[3 + len(d):], ""
        if rest.startswith("uq" + d):
            return root, "uq", rest[2 + len(d):], ""
        return None

    def unknown(self, key: str) -> bool:
        """Whether ``key``, under an index root, is none of the keys redmodel keeps there."""
        d = self.d
        marker = "%idx" + d
        at = key.find(marker)
        if at < 0:
            return False
        rest = key[at + len(marker):]
        return rest not in ("rec", "all", "exp", "reindex", "all" + d + "old", "ids",
                            "idn") and not rest.startswith("memo" + d)  # a call's memo

    def page_key(self, key: str) -> Plan[int]:
        """A key named like a page of the all-ids index (``<root>ids<d><bound>``): one the
        directory lists is a page (read by the records pass); any other is reported as not
        a key redmodel keeps (a page never listed is never read)."""
        d = self.d
        marker = "%idx" + d
        at = key.find(marker)
        root = key[: at + len(marker)]
        bound = key[len(root) + len("ids" + d):]
        dir_key = root + "ids"
        if dir_key in self.bad:
            return 0
        replies = yield Batch([("TYPE", dir_key)], keys=(dir_key,))
        kind = _text(replies[0])
        if kind not in ("zset", "none"):
            self.wrong_type(dir_key, kind, "zset")
            return 0
        replies = yield Batch([("ZSCORE", dir_key, bound)], keys=(dir_key,))
        if replies[0] is not None or (bound == "" and not self.fix):
            return 0  # the first page, lookups read it even unlisted (pass 0 reports it)
        if not self.fix:
            self.report(f"{key}: named like a page of the all-ids index, but the index's "
                        f"directory {dir_key} does not list it (written outside redmodel?; "
                        "no lookup or walk reads it): delete it if nothing else uses it, "
                        f"or run store.reindex({self.spec.cls.__name__})")
            return 0
        # reindex: nothing reads it, and the objects pass put every existing object's id
        # into the pages the directory lists: deleted (if still not listed)
        keys = self.ids_keys(root)
        replies = yield Batch([CONVERT.memo_call(root, d, keys, ["drop", d, bound])], write=True,
                              idempotent=True, keys=(dir_key,))
        reply = check(self.spec, key, replies[0], "reindex (pages)")
        if int(reply[1]):
            self.report(f"{key}: a page the directory {dir_key} does not list: deleted")
        return int(reply[1])

    def index_key(self, key: str, count: int) -> Plan[int]:
        parsed = self._parse(key)
        d = self.d
        rest = key[key.find("%idx" + d) + len("%idx" + d):]
        if parsed is None and "%idx" + d in key and rest.startswith("ids" + d):
            return (yield from self.page_key(key))
        if parsed is None and self.unknown(key):
            self.report(f"{key}: not a key redmodel keeps under an index root (written "
                        "outside redmodel?): delete it if nothing else uses it")
            return 0
        if parsed is None or parsed[0] + "rec" in self.bad:
            return 0
        root, kind, name, value = parsed
        want = {"eq": "set", "eq?": "set", "rng": "zset", "uq": "hash"}[kind]
        replies = yield Batch([("TYPE", key)], keys=(key,))
        actual = _text(replies[0])
        if actual == "none":
            return 0
        if actual != want:
            self.wrong_type(key, actual, want)
            return 0
        known = (kind == "rng" and name in self.indexes.fields and self.indexes.fields[name].range
                 ) or (kind == "uq" and any(u.name == name for u in self.indexes.uniques)
                       ) or kind == "eq"
        if not known:
            self.report(f"{key}: the index of a field {self.spec.name} does not declare "
                        "(dropped from the model?): delete it if no other version uses it",
                        name)
            return 0
        if kind == "uq" and self.spec.claims:
            return (yield from self.claims_key(key, name, count))
        fixed = 0
        cursor = "0"
        while True:
            cmd = {"eq": "SSCAN", "rng": "ZSCAN", "uq": "HSCAN"}[kind]
            replies = yield Batch([(cmd, key, cursor, "COUNT", count)], keys=(key,))
            next_cursor, items = replies[0]
            cursor = _text(next_cursor)
            fixed += yield from self.members(root, kind, name, value, key, items)
            if cursor == "0":
                return fixed

    def members(self, root: str, kind: str, name: str, value: str, key: str,
                items: Any) -> Plan[int]:
        """Check (verify) or fix (reindex) one page of an index key's members against the
        entries of their objects: the record where one exists, else what the object's
        stored fields compute to (a gone object produces none). A fix whose object a
        writer changed since it was read is judged again, up to ``REREADS`` times."""
        if kind == "eq":
            pairs = [(_text(m), None) for m in items]
        else:
            pairs = [(_text(m), v) for m, v in _pairs(items)]
        fixed = 0
        for attempt in range(REREADS + 1):
            if not pairs:
                return fixed
            owners = [_text(v) if kind == "uq" else m for m, v in pairs]
            fields = next((u.fields for u in self.indexes.uniques if u.name == name), ()) \
                if kind == "uq" else (name,)
            own = yield from self._owners(root, owners, fields, fresh=attempt > 0)
            bad: list[tuple[str, Any, str]] = []
            for (member, extra), owner in zip(pairs, owners, strict=True):
                lines, _ = own[owner]
                if lines is None:
                    continue  # its object cannot be decoded (pass 1 reports it): left alone
                if kind == "eq":
                    ok = f"e{SEP}{name}{SEP}{value}" in lines
                elif kind == "rng":
                    mine = [ln for ln in lines if ln.startswith(f"r{SEP}{name}{SEP}")]
                    ok = any(float(ln.split(SEP, 2)[2]) == float(_text(extra)) for ln in mine)
                else:
                    ok = f"u{SEP}{name}{SEP}{member}" in lines
                if not ok:
                    bad.append((member, extra, owner))
            if not bad:
                return fixed
            if not self.fix:
                yield from self._report_members(root, kind, name, value, bad, own)
                return len(bad)
            done, again = yield from self._fix_members(root, kind, name, value, key, bad, own)
            fixed += done
            pairs = [(m, x) for m, x, o in bad if (o if kind != "uq" else m) in again]
        for member, _ in pairs:
            log.warning("reindex %s: %s: the object behind %r changed between each of %d "
                        "reads and its fix; left as its writers keep it", self.spec.name,
                        key, member, REREADS + 1)
        return fixed

    def _owners(self, root: str, ids: Sequence[str], only: Sequence[str], *,
                fresh: bool = False) -> Plan[dict[str, tuple[set[str] | None, list[Any] | str]]]:
        """id -> (the entries of ``only`` its object has, how a fix script judges it): its
        record (``'r'``) where it has one; else the entries its stored fields compute to
        and those fields (:meth:`HashLayout.indexed_state`), or no entries and ``'g'``
        when the object is gone, or None when it cannot be decoded. The records and the
        objects are read in one round trip; an object of many entries whose entries
        this call computed already (``kept``, see KEEP_AT) is not read again unless
        ``fresh`` (a fix's object changed since). verify's pass 1 found the record of
        some objects wrong or missing (``truth``): their own entries count."""
        prefix = root[: -len("%idx" + self.d)]
        unique = list(dict.fromkeys(ids))
        keys = [prefix + i for i in unique]
        fields = tuple(only)
        if fresh:
            for k in keys:
                if (gone := self.kept.pop((k, fields), None)) is not None:
                    self.kept_size -= len(gone[0])
                    self.kept_text -= _text_size(*gone)
        kept = [self.kept.get((k, fields)) for k in keys]
        reading = [k for k, known in zip(keys, kept, strict=True) if known is None]
        # (an object key of the wrong type answers an error: that object is left alone)
        replies = yield Batch([("HGET", root + "rec", i) for i in unique] +
                              [self.layout.read(k) for k in reading], keys=keys, errors=True)
        read = iter(replies[len(unique):])
        out: dict[str, tuple[set[str] | None, list[Any] | str]] = {}
        for i, k, r, known in zip(unique, keys, replies[: len(unique)], kept, strict=True):
            raw = next(read) if known is None else None
            if isinstance(r, Exception):
                raise r
            if (root, i) in self.truth:
                out[i] = (self.truth[(root, i)], "r" if r is not None else "g")
                continue
            if r is not None:
                out[i] = (set(record_lines(r)), "r")
                continue
            if known is not None:
                out[i] = known
                continue
            if isinstance(raw, Exception):
                # a key of another type is no object: it produces no entry (30AR F1); any
                # other error leaves its members alone
                out[i] = (set() if "WRONGTYPE" in str(raw) else None, "g")
                continue
            try:
                obj = self.layout.decode(k, unescape(i), raw)
            except DecodeError:
                out[i] = (None, "g")
                continue
            if obj is None:
                out[i] = (set(), "g")
                continue
            values = {n: getattr(obj, n) for n in self.indexes.fields}
            entries = set(self.indexes.entries(values, only=only, problems=[]))
            state = self.layout.indexed_state(raw)
            out[i] = (entries, state)
            if len(entries) >= KEEP_AT and self.kept_size + len(entries) <= KEEP_MAX:
                text = _text_size(entries, state)
                if self.kept_text + text <= KEEP_MAX_TEXT:
                    self.kept[(k, fields)] = (entries, state)
                    self.kept_size += len(entries)
                    self.kept_text += text
        return out

    def _report_members(self, root: str, kind: str, name: str, value: str,
                        bad: Sequence[tuple[str, Any, str]],
                        own: dict[str, tuple[set[str] | None, list[Any] | str]]
                        ) -> Plan[None]:
        prefix = root[: -len("%idx" + self.d)]
        owners = [o for _, _, o in bad]
        # an object is a hash at its key; a key of another type there is none (30AR F1)
        kinds = yield Batch([("TYPE", prefix + o) for o in owners])
        for (member, extra, owner), t in zip(bad, kinds, strict=True):
            obj = f"{prefix}{owner}"
            kind_now = _text(t)
            live = kind_now == "hash"
            if not live and obj in self.gone:
                continue  # pass 2 reported it gone (a raw DEL): what it left goes with it
            none = "which does not exist" if kind_now == "none" else \
                f"which does not exist (its key holds a {kind_now}, not an object)"
            if kind == "eq":
                why = f"whose {name} is not {_shown(self.spec, name, value)}" if live else none
                self.report(f"the equality index {name}={_shown(self.spec, name, value)} lists "
                            f"{obj}, "
                            f"{why}", name)
            elif kind == "rng":
                why = f"whose {name} is not {_text(extra)}" if live else none
                self.report(f"the range index {name} lists {obj} at {_text(extra)}, {why}",
                            name)
            else:
                why = "which does not hold that value" if live else none
                self.report(f"the unique index {name}={_shown(self.spec, name, member)} points at "
                            f"{obj}, {why}", name)

    def _fix_members(self, root: str, kind: str, name: str, value: str, key: str,
                     bad: Sequence[tuple[str, Any, str]],
                     own: dict[str, tuple[set[str] | None, list[Any] | str]]
                     ) -> Plan[tuple[int, set[str]]]:
        """One index_fix.lua call for these members: (how many it changed, the members
        left because their object changed since it was read: ids, values for ``uq``)."""
        prefix = root[: -len("%idx" + self.d)]
        objs: dict[str, None] = {}
        args: list[Any] = []
        for member, _, owner in bad:
            lines, state = own[owner]
            if state != "r":
                objs[prefix + owner] = None
            if kind == "eq":
                args.append(member)
            elif kind == "rng":
                score = next((ln.split(SEP, 2)[2] for ln in (lines or ())
                              if ln.startswith(f"r{SEP}{name}{SEP}")), "")
                args += [member, score if isinstance(state, list) else ""]
            else:
                args += [member, owner]
            args += [state] if isinstance(state, str) else state
        head = {"eq": ["eq", name, value, prefix], "rng": ["rng", name, prefix],
                "uq": ["uq", name, prefix]}[kind]
        replies = yield Batch([FIX.memo_call(root, self.d, [key, root + "rec", *objs],
                                             [*head, *args])],
                              write=True, idempotent=True, keys=(key,))
        reply = check(self.spec, key, replies[0], f"reindex {self.spec.name}")
        return int(reply[1]), {_text(x) for x in reply[2:]}

    def claims_key(self, key: str, name: str, count: int,
                   only: Callable[[str], bool] | None = None) -> Plan[int]:
        """Claims (bucketed models): a claim confirmed, or older than the grace period,
        whose owner no longer holds the value (or is gone) is dropped by reindex (compared
        whole, so a claim refreshed meanwhile stays). ``only``: the claims of the values it
        is true for (the others are not looked at); those of them left (their owner holds
        the value, or the claim is in its grace period) are counted in ``claims_left``."""
        if not self.fix:
            return 0
        fixed, cursor = 0, "0"
        now = time.time() * 1000
        while True:
            replies = yield Batch([("HSCAN", key, cursor, "COUNT", count)], keys=(key,))
            next_cursor, items = replies[0]
            cursor = _text(next_cursor)
            pairs = _pairs(items)
            if only is not None:
                pairs = [(v, raw) for v, raw in pairs if only(_text(v))]
                self.claims_left += len(pairs)
            old = []
            for value, raw in pairs:
                owner, _, at = _text(raw).rpartition(SEP)
                if at == "C" or (ascii_digits(at) and now - int(at) >= CLAIM_GRACE_MS):
                    old.append((_text(value), _text(raw), owner))
            gone = yield from owners_gone(self.spec, self.layout, [(o, name, v) for v, _, o in old])
            stale = [(v, raw, o) for (v, raw, o), g in zip(old, gone, strict=True) if g]
            # verify does not report these: such a claim blocks nobody (the next claimer
            # takes it over); reindex tidies them away, in three steps so that an owner
            # that took the value back meanwhile keeps its claim (claim_drop.lua)
            if stale:
                stale = yield from self._drop_claims(key, name, stale)
            fixed += len(stale)
            if only is not None:
                self.claims_left -= len(stale)
            if cursor == "0":
                return fixed

    def _drop_claims(self, key: str, name: str, stale: list[tuple[str, str, str]]
                     ) -> Plan[list[tuple[str, str, str]]]:
        """Drop these claims (value, text as read, owner) whose owners did not hold the
        value when read: mark each (if its text is still as read), read the owners
        again, then drop the marked claims of owners that still do not hold it and put the
        text back for the others. Any claim of the value by its owner after the mark
        rewrites it (with the time of that claim), so a claim taken back meanwhile is
        never dropped. Returns the claims dropped."""
        d = self.d
        root = key[: key.find("%idx" + d) + len("%idx" + d)]  # the claim hash's index root

        def run(calls: list[list[str]]) -> Plan[list[Any]]:
            replies = yield Batch([DROP_CLAIM.memo_call(root, d, [key], args)
                                   for args in calls],
                                  write=True, idempotent=True, keys=(key,))
            for reply in replies:
                if status(reply) == "WRONGTYPE":
                    raise ServerError(f"WRONGTYPE {key}", keys=(key,))
            return list(replies)

        marks = [f"{o}{SEP}0" for _, _, o in stale]
        done = yield from run([[v, raw, m] for (v, raw, _), m in zip(stale, marks, strict=True)])
        marked = [(c, m) for c, m, r in zip(stale, marks, done, strict=True) if int(r)]
        if not marked:
            return []
        gone = yield from owners_gone(self.spec, self.layout,
                                      [(o, name, v) for (v, _, o), _ in marked])
        yield from run([[v, m] if g else [v, m, raw]
                        for ((v, raw, _), m), g in zip(marked, gone, strict=True)])
        return [c for (c, _), g in zip(marked, gone, strict=True) if g]


def _damage(kind: str, key: str, n: int, sample: str) -> str:
    """A damage of the all-ids pages (ids_mend of ids_lib.lua) in words."""
    if kind == "score":
        return (f"{key}: {n} member(s) with a score other than 0 (e.g. {sample!r}; written "
                "outside redmodel): the byte order of the ids needs every score 0")
    if kind == "nofirst":
        where = f"it starts at {sample!r}" if sample else "it is empty, the first page is not"
        return (f"{key} does not list the first page's bound '' ({where}; written outside "
                "redmodel)")
    if kind == "nopage":
        return (f"{key} lists the bound {sample!r}, but its page does not exist (written "
                "outside redmodel): the ids of its range are looked for where they are not")
    if kind == "outside":
        return (f"{key} holds {n} id(s) outside its bounds (e.g. {sample!r}; a directory or "
                "page written outside redmodel): lookups miss them, walks answer them out "
                "of order or twice, count() counts them twice")
    return (f"{key} holds {n} ids, more than a page's 64 (written outside redmodel): "
            "writes into it move its ids by thousands")


def _pairs(items: Any) -> list[tuple[Any, Any]]:
    """(member, score or value) of an HSCAN / ZSCAN page, whatever shape redis-py gives it
    (a dict, a list of pairs, or a flat list)."""
    if isinstance(items, dict):
        return list(items.items())
    if items and isinstance(items[0], (tuple, list)):
        return [(m, v) for m, v in items]
    return list(zip(items[::2], items[1::2], strict=True))


class ProgressLine:
    """Shows a reindex's progress on stderr (a counter per pass, rewritten in place) and
    keeps its result; used by both stores."""

    def __init__(self, model: type, show: bool | None) -> None:
        flag(show, "progress", none=True)
        self.name = model_class(model).__name__
        self.show = sys.stderr.isatty() if show is None else show
        self.result = 0
        self.shown = False

    def feed(self, item: Any) -> None:
        if isinstance(item, Progress):
            if self.show:
                print(f"\rreindex {self.name}: {item.phase} {item.done}\x1b[K", end="",
                      file=sys.stderr)
                self.shown = True
        else:
            self.result = int(item)

    def finish(self) -> int:
        if self.shown:
            print(file=sys.stderr)
        return self.result


def _shown(spec: ModelSpec, name: str, text: str) -> str:
    """An index entry's value (escaped ``text`` of index or constraint ``name``) for a
    report: ``<encrypted>`` when a blind field is part of it (its text is a keyed hash of
    an encrypted value: never shown, as in UniqueViolationError), else its repr."""
    fields = spec.indexes.fields if spec.indexes is not None else {}
    if any(getattr(fields.get(n), "blind", None) is not None for n in name.split(",")):
        return "<encrypted>"
    return repr(unescape(text))
