"""Store operations as plans: generators that yield batches of commands and return results.

``Store`` and ``AsyncStore`` only drive these; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from redmodel._args import MAX_TTL_SECONDS, flag, integer, many, page_count, shown
from redmodel._errors import (
    CONNECTION_ERRORS,
    CrossSlotError,
    DecodeError,
    NotFoundError,
    OutcomeUnknownError,
    RedmodelError,
    ServerError,
    ValidationError,
    key_text,
)
from redmodel._indexes._specs import IndexValueError
from redmodel._indexes._writes import (
    IN_EXEC,
    Abandoned,
    Claims,
    TxHints,
    Write,
    claim,
    eid_of,
    refusal,
    run_writes,
    send_each,
    settle,
    status,
    undo,
    unique_lines,
)
from redmodel._layouts._flat import (
    FlatLayout,
    FlatWrite,
    counter_result,
    read_batch,
    send_write,
)
from redmodel._layouts._hash import (
    INT64,
    HashLayout,
    check_increment,
    refused,
    saved,
    stale_any,
)
from redmodel._layouts._pick import layout_of
from redmodel._models._compiled import hash_packer
from redmodel._models._keys import glob_escape
from redmodel._models._specs import FieldSpec, ModelSpec, increment_kind, spec_of
from redmodel._models._types import optional_inner
from redmodel._plan import Batch, Command, Emit, IterPlan, Plan, gather, script
from redmodel._plans._atomic import default_text, incr_fields, takes_self
from redmodel.codecs import Codec
from redmodel.codecs import codec as resolve_codec

__all__ = ["DEFAULT"]

_INCR_ONE = script("incr_one")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final[Any] = _Default()
"""Sentinel: use the model's own setting (for example its default TTL)."""

def ttl_ms(spec: ModelSpec, ttl: Any, key: str | None = None) -> int | None:
    """Milliseconds of expiry for a save, from the call's ``ttl`` or the model's default;
    a bad ``ttl`` is a ValidationError naming the argument and ``key`` (the call's key, or
    the first object's in a batch: docs/failures.md)."""
    if ttl is DEFAULT:
        ttl = spec.ttl
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, dt.timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            0 < seconds <= MAX_TTL_SECONDS):
        raise ValidationError(f"ttl must be a positive number of seconds up to "
                              f"{MAX_TTL_SECONDS:.0e}, got {shown(ttl)}", model=spec.name,
                              key=key)
    return max(1, round(seconds * 1000))


def _part_ttl_ms(spec: ModelSpec, ttl: Any, part: Sequence[Any]) -> int | None:
    """:func:`ttl_ms` for a chunk of a batch: a bad ttl names the chunk's first key."""
    try:
        return ttl_ms(spec, ttl)
    except ValidationError:
        key = spec.key_for(_id_of(spec, part[0])) if part else None
        return ttl_ms(spec, ttl, key)


def _id_of(spec: ModelSpec, obj: Any) -> Any:
    return getattr(obj, spec.key.name)


def id_str(spec: ModelSpec, id_value: Any) -> tuple[str, str]:
    """(key, id text) for an id; raises ValidationError for an empty or mistyped id."""
    return spec.key_text(id_value)


# ---- writes -----------------------------------------------------------------------------


def save_command(obj: Any, ttl: Any, checked: bool = False) -> tuple[str, Command | Write]:
    """Validate ``obj`` (unless ``checked`` already) and return its key and what stores it
    whole (one command, or an index write)."""
    key, cmd, _ = _save_state(obj, ttl, checked)
    return key, cmd


def _save_state(obj: Any, ttl: Any, checked: bool, entries: list[str] | None = None
                ) -> tuple[str, Command | Write, dict[bytes, bytes] | None]:
    """:func:`save_command`, with the stored state it leaves (hash layout; else None).
    ``entries``: the object's index entries if known already (see :func:`check_whole`)."""
    spec = spec_of(obj)
    key = spec.key_for(_id_of(spec, obj))
    if not checked:
        spec.check(obj)
    layout = layout_of(spec)
    if isinstance(layout, HashLayout):
        cmd, state, _ = layout.save_changes(key, obj, ttl_ms(spec, ttl, key), True, entries)
        return key, cmd, state
    return key, layout.save(key, obj, ttl_ms(spec, ttl, key)), None


def _values(spec: ModelSpec, obj: Any) -> dict[str, Any]:
    assert spec.indexes is not None
    return {n: getattr(obj, n) for n in spec.indexes.fields}


def _indexed_write(spec: ModelSpec, w: Write, claims: Claims | None, hints: TxHints | None,
                   what: str, idempotent: bool, fragile: bool = False,
                   first: list[Any] | None = None) -> Plan[Any]:
    """Send one index write and return its reply; raise its refusal, having released the
    claims made for it (also when its transaction is abandoned). ``fragile``: see
    :attr:`Batch.fragile`; ``first``: see :func:`run_writes`."""
    try:
        replies = yield from run_writes([w], idempotent=idempotent, hints=hints, what=what,
                                        fragile=fragile, first=first)
    except Abandoned:
        yield from undo(claims, hints)
        raise
    error = refusal(spec, w.key, replies[0], what, tx=hints is not None)
    if error is not None:
        yield from undo(claims, hints)
        raise error
    return replies[0]


def _result_of(reply: Any) -> Any:
    return reply[1] if status(reply) == "RELEASE" else reply


def save(obj: Any, ttl: Any = DEFAULT, force: bool = False,
         hints: TxHints | None = None) -> Plan[str]:
    """Whole, or (for a tracked object loaded earlier) only what changed; a partial save
    of an object deleted meanwhile becomes a whole one (also one with nothing changed).
    ``hints``: given by a transaction (the plan then reads before it writes)."""
    flag(force, "force")
    spec = spec_of(obj)
    key = spec.key_for(_id_of(spec, obj))
    spec.check(obj)
    layout = layout_of(spec)
    ms = ttl_ms(spec, ttl, key)
    # no ttl keeps the expiry the object has: a copy sent again after it expired would
    # revive it without one (Batch.fragile); an explicit ttl sets it anew
    fragile = ms is None
    if not isinstance(layout, HashLayout):
        whole: Command | Write = layout.save(key, obj, ms)
        if isinstance(whole, FlatWrite) and hints is None:  # the flat layout
            yield from send_write(whole, f"save {spec.name}", fragile)
        elif isinstance(whole, Write):  # in a transaction: its leaves read first
            yield from _indexed_write(spec, whole, None, hints, f"save {spec.name}", True,
                                      fragile)
        else:
            yield Batch([whole], write=True, idempotent=True, keys=(key,), fragile=fragile)
        return key
    cmd, state, partial = layout.save_changes(key, obj, ms, force)
    if partial and hints is not None:  # after EXEC there is no second try: look now
        found = yield Batch([("EXISTS", key)], keys=(key,))
        if not hints.exists.get(key, bool(found[0])):  # as earlier writes leave it
            cmd, state, partial = layout.save_changes(key, obj, ms, True)
    if isinstance(cmd, Write):
        what = f"save {spec.name}"
        claims = None
        if spec.claims:
            claims = yield from claim(spec, key, _values(spec, obj), hints,
                                           reader=layout_of(spec))
        reply = yield from _indexed_write(spec, cmd, claims, hints, what, True,
                                          fragile or partial)
        if partial and _result_of(reply) == 0:
            whole = layout.save_changes(key, obj, ms, True)[0]
            assert isinstance(whole, Write)
            reply = yield from _indexed_write(spec, whole, claims, hints, what, True,
                                              fragile)
        if spec.claims:
            yield from settle(spec, key, reply, claims, hints)
    else:
        # a partial save answers "missing" (0) for a gone object: its resend too
        replies = yield Batch([cmd], write=True, idempotent=True, keys=(key,),
                              fragile=fragile or partial)
        if partial and replies[0] == 0:
            whole = layout.save_changes(key, obj, ms, True)[0]
            yield Batch([whole], write=True, idempotent=True, keys=(key,),  # type: ignore[list-item]
                        fragile=fragile)
    if partial:  # it kept the fields its model does not know
        if spec.track_changes:
            layout.remember(obj, state, key)
        return key
    return saved_whole(layout, obj, key, state)


def saved_whole(layout: HashLayout, obj: Any, key: str, state: dict[bytes, bytes]) -> str:
    """What a whole save of a hash object does after its write: the fields it was read
    with are gone, and a tracked object remembers ``state`` (at ``key``, through the
    client running it: :func:`redmodel._layouts._hash.remember`). Returns ``key``."""
    saved(obj)
    if layout.spec.track_changes:
        layout.remember(obj, state, key)
    return key


def indexed_rest(layout: HashLayout, obj: Any, key: str, w: Write, state: dict[bytes, bytes],
                 fragile: bool, reply: Any) -> Plan[str]:
    """The rest of :func:`save`'s plan for a whole save of an indexed object without
    claims, outside a transaction, whose first batch (``single_batch(w, ...)``) was sent
    without the plan and answered ``reply`` (redmodel._plans._single): the same commands,
    in the same order, as the plan sends after it."""
    spec = layout.spec
    yield from _indexed_write(spec, w, None, None, f"save {spec.name}", True, fragile,
                              first=[reply])
    return saved_whole(layout, obj, key, state)


def save_stored(model: type, key: str, pairs: Sequence[bytes], values: dict[str, Any],
                ttl_ms: int | None, hints: TxHints | None = None) -> Plan[str]:
    """A whole save of an indexed hash model's object from its stored bytes (``pairs``,
    written as given: values kept encrypted stay the bytes that were exported), indexed
    by ``values``, the values its indexed fields hold (``redmodel import``)."""
    spec = spec_of(model)
    layout = layout_of(spec)
    assert isinstance(layout, HashLayout) and spec.indexes is not None and not spec.claims
    w = layout.save_stored(key, pairs, values, ttl_ms)
    yield from _indexed_write(spec, w, None, hints, f"save {spec.name}", True)
    return key


def save_many(objs: Iterable[Any], ttl: Any, chunk_size: int,
              hints: TxHints | None = None,
              ready: Callable[[Sequence[Any]], Plan[None]] | None = None) -> Plan[int]:
    """Objects are read, validated, encoded and sent chunk by chunk, so memory is bounded
    by the chunk size whatever the input's size. A sequence (list, tuple) is validated
    whole before the first chunk is sent, so a bad object in it leaves nothing written;
    any other iterable (a generator) is validated chunk by chunk, so a bad object is
    refused before its own chunk is sent, after the earlier chunks were written.
    Each chunk is one pipelined round trip: the indexed objects of each bucket in one call
    of the batch index script (objects it cannot do alone, alone after it), every other
    object one atomic command (plus the claims of a bucketed model's unique values before
    and after). Objects are saved whole. A refusal (by the client or the server) stops
    after the chunk it is in, and its error says which objects were written (see
    _batch_error). ``ready``: run on each chunk before it is sent (the store's registry
    check of the chunk's models)."""
    chunk_size = integer(chunk_size, "chunk_size", least=1)
    seq = given if isinstance(given := many(objs, "objs", "objects"), Sequence) else None
    whole = seq is not None
    # everything refusable is refused before the first write; a sequence of one plain
    # hash model has its first chunk's commands made by that check (one pass over it)
    first_chunk = None if seq is None or hints is not None else _check_plain(seq, ttl, chunk_size)
    early = {} if seq is None or first_chunk is not None else _check_all(seq, chunk_size)
    done: list[str] = []  # keys written by earlier chunks (an iterator only: see below)
    count = 0
    def known(chunk_keys: Sequence[str]) -> list[str]:
        # the keys of the earlier chunks and these: a sequence's are derived again (no list
        # of them is kept), an iterator's were kept as they were written
        if seq is not None:
            return [save_key(o) for o in seq[:count]] + list(chunk_keys)
        return done + list(chunk_keys)

    def every(chunk_keys: Sequence[str]) -> list[str]:
        # the call's keys: all of a sequence's; an iterator's read so far
        if seq is not None:
            return [save_key(o) for o in seq]
        return done + list(chunk_keys)

    pending: list[list[Any]] = []  # parts of a chunk split by _LaterError, to send first
    # a sequence's next chunk is encoded while the server runs this one (Batch.meanwhile)
    ahead = _Ahead(seq, chunk_size, ttl) if seq is not None and hints is None else None
    for part in _parts(objs, chunk_size, pending):
        fast = (_fast_chunk(part, ttl, whole, ready, every, known, first_chunk)
                if hints is None else None)
        first_chunk = None
        if fast is not None:  # one plain hash model, or one unindexed flat model
            keys = yield from fast
            if not whole:
                done += keys
            count += len(part)
            continue
        try:
            made = (ahead.take(part) if ahead is not None else None) or \
                [_save_state(obj, ttl, whole, early.get(id(obj))) for obj in part]
            early.clear()
            chunk = [(k, c) for k, c, _ in made]
            if not whole:
                _unique_within(part)
        except RedmodelError as e:  # nothing of this chunk was written
            raise _batch_error(e, "save_many", every(_keys_or_none(part)), known([]),
                               hints is not None, unread=not whole) from None
        keys = [k for k, _ in chunk]
        claims = yield from _chunk_claims(part, chunk, hints, ready, pending, (every, known),
                                            whole)
        if claims is None:  # split in two parts: the earlier one first
            continue
        try:
            replies = yield from run_writes([c for _, c in chunk], idempotent=True,
                                            hints=hints, what="save many",
                                            errors=hints is None, batched=True,
                                            fragile=_keeps_expiry(part, ttl),
                                            meanwhile=None if ahead is None or pending
                                            else ahead.after(part, count + len(part)))
        except Abandoned:  # its transaction will not commit: nothing written, undo claims
            yield from gather([undo(c, hints) for c in claims if c is not None])
            raise
        except RedmodelError as e:  # the chunk's outcome is unknown (a lost reply)
            raise _batch_error(e, "save_many", every(keys), known([]), hints is not None,
                               unknown=keys, unread=not whole) from None
        _, refused = yield from _settle_all(chunk, replies, claims, "save many", hints)
        if refused:
            key, first = next(iter(refused.values()))
            raise _batch_error(first, "save_many", every(keys),
                               known([keys[at] for at in _kept(keys, refused)]),
                               hints is not None, key, unread=not whole,
                               chunk_done=_kept(keys, refused))
        _saved_all(part, made)
        if not whole:
            done += keys
        count += len(part)
    return count


class _Ahead:
    """save_many's :attr:`Batch.meanwhile` for a sequence (checked whole already): while
    the server runs one chunk, the states of the chunk after it are made, and taken at
    its turn if it is the same objects. Not when that chunk holds an object of the one
    sent (its snapshot changes when that one is written); anything the making raises is
    left for the chunk's own turn (made again then, raised there)."""

    def __init__(self, seq: Sequence[Any], size: int, ttl: Any) -> None:
        self.seq, self.size, self.ttl = seq, size, ttl
        self.objs: list[Any] = []
        self.made: list[tuple[str, Command | Write, dict[bytes, bytes] | None]] = []

    def after(self, current: Sequence[Any], start: int) -> Callable[[], None]:
        """The work to do while ``current`` is written: the chunk at ``start``."""
        def make() -> None:
            self.objs, self.made = [], []
            nxt = list(self.seq[start:start + self.size])
            mine = {id(obj) for obj in current}
            if not nxt or any(id(obj) in mine for obj in nxt):
                return
            try:
                made = [_save_state(obj, self.ttl, True) for obj in nxt]
            except Exception:
                return
            self.objs, self.made = nxt, made
        return make

    def take(self, part: Sequence[Any]
             ) -> list[tuple[str, Command | Write, dict[bytes, bytes] | None]] | None:
        """The states made ahead, if they are ``part``'s (the same objects)."""
        objs, made = self.objs, self.made
        self.objs, self.made = [], []
        if not objs or len(objs) != len(part) or any(
                a is not b for a, b in zip(objs, part, strict=True)):
            return None
        return made


def _kept(chunk: Sequence[Any], refused: Collection[int]) -> list[int]:
    """The positions in a chunk of its objects written (not refused)."""
    return [at for at in range(len(chunk)) if at not in refused]


def _saved_all(part: Sequence[Any],
               made: Sequence[tuple[str, Command | Write, dict[bytes, bytes] | None]]) -> None:
    """A chunk was written: what each object remembers (stale fields; the snapshot of a
    tracked hash object, from the (key, command, state) its one encode made)."""
    for obj, (key, _, state) in zip(part, made, strict=True):
        spec = spec_of(obj)
        layout = layout_of(spec)
        saved(obj)
        if spec.track_changes and state is not None and isinstance(layout, HashLayout):
            layout.remember(obj, state, key)  # partial saves: hash only


def _check_all(seq: Sequence[Any], chunk_size: int) -> dict[int, list[str]]:
    """Refuse what a save_many of ``seq`` would refuse, before anything is written; the
    index entries of its first chunk's objects (by id(obj)), which their writes reuse
    (only the first chunk's: memory stays bounded by the chunk size)."""
    spec = _one_model(seq)
    if spec is not None and spec.indexes is None:  # one unindexed model: id and fields
        key_text, check, name = spec.key_builder(), spec.checker(), spec.key.name
        precheck = getattr(layout_of(spec), "precheck", None)
        for obj in seq:
            key = key_text(getattr(obj, name))[0]
            check(obj)
            if precheck is not None:
                precheck(key, obj)
        return {}
    early: dict[int, list[str]] = {}
    for at, obj in enumerate(seq):
        found = check_whole(obj)
        if at < chunk_size and found is not None:
            early[id(obj)] = found
    if any(spec.indexes is not None and spec.indexes.uniques
           for spec in {type(o): spec_of(o) for o in seq}.values()):
        _unique_within(seq)
    return early


_Saves = tuple[list[str], list[Command], list[bytes] | None]


def _check_plain(seq: Sequence[Any], ttl: Any, chunk_size: int) -> _Saves | None:
    """save_many's check of a sequence of one plain hash model whose saves are HSET alone
    (no TTL, no stale fields, a model that cannot be empty), fused with the making of its
    first chunk (bounded memory: one chunk): what :func:`_plain_saves` gives that chunk,
    made by the model's generated packer while it checks. The rest of the sequence is
    checked as :func:`_check_all` checks it (the id's key, the fields). None for any other
    sequence, or when an object of the first chunk needs the general path (a bad one
    among them): then :func:`_check_all` checks it all, raising the error it always did."""
    layout = _plain_chunk(seq)
    if layout is None or layout.may_be_empty or stale_any():
        return None
    spec = layout.spec
    try:
        if ttl_ms(spec, ttl) is not None:
            return None
    except ValidationError:  # refused where it always was: by the first chunk's save
        return None
    packer = _packer(spec)
    if packer is None:
        return None
    keys: list[str] = []
    commands: list[Command] = []
    packed: list[bytes] = []
    for obj in seq[:chunk_size]:
        made = packer(obj)
        if made is None:
            return None
        keys.append(made[0])
        commands.append(made[1])
        packed.append(made[2])
    if len(seq) > chunk_size:
        key_text, check, name = spec.key_builder(), spec.checker(), spec.key.name
        precheck = layout.precheck  # what a codec refuses (None: no codec field)
        for obj in seq[chunk_size:]:
            key = key_text(getattr(obj, name))[0]
            check(obj)
            if precheck is not None:
                precheck(key, obj)
    return keys, commands, packed


_NO_PACKER: Final[Any] = object()


def _packer(spec: ModelSpec) -> Callable[[Any], tuple[str, Command, bytes] | None] | None:
    """The model's generated whole-save packer (``_compiled.hash_packer``), made once."""
    found = spec.compiled.get("packed", _NO_PACKER)
    if found is _NO_PACKER:
        found = spec.compiled["packed"] = hash_packer(spec)
    return found  # type: ignore[no-any-return]


def _save_plain_chunk(layout: HashLayout, part: Sequence[Any], ttl: Any, whole: bool,
                      ready: Callable[[Sequence[Any]], Plan[None]] | None,
                      every: Callable[[Sequence[str]], list[str]],
                      known: Callable[[Sequence[str]], list[str]],
                      made: _Saves | None = None) -> Plan[list[str]]:
    """save_many's chunk of one plain hash model (outside a transaction): one command per
    object in one batch, and the same errors as the general chunk (``every``/``known``:
    the call's keys, the keys written before this chunk and these). ``made``: the chunk's
    saves made already (by :func:`_check_plain`)."""
    try:
        keys, commands, packed = (made if made is not None and len(made[0]) == len(part)
                                  else _plain_saves(layout, part, ttl, whole))
        if ready is not None:
            yield from ready(part)
    except RedmodelError as e:  # nothing of this chunk was written
        raise _batch_error(e, "save_many", every(_keys_or_none(part)), known([]), False,
                           unread=not whole) from None
    try:
        replies = yield from send_each(Batch(commands, write=True, idempotent=True,
                                             keys=keys, errors=True, packed=packed,
                                             fragile=_keeps_expiry(part, ttl)),
                                       "save many")
    except RedmodelError as e:  # the chunk's outcome is unknown (a lost reply)
        raise _batch_error(e, "save_many", every(keys), known([]), False, unknown=keys,
                           unread=not whole) from None
    for at, reply in enumerate(replies):
        if isinstance(reply, ServerError):  # the others of the chunk are written
            wrote = [i for i, r in enumerate(replies) if not isinstance(r, ServerError)]
            raise _batch_error(reply, "save_many", every(keys), known(
                [keys[i] for i in wrote]), False, keys[at], unread=not whole,
                chunk_done=wrote)
    for obj in part:
        saved(obj)
    return keys


def _one_model(part: Sequence[Any]) -> ModelSpec | None:
    """The spec of a chunk whose objects are all of one model class (not a subclass of
    it: each class has its own spec), else None."""
    if not part:
        return None
    cls = type(part[0])
    spec = cls.__dict__.get("__redmodel__")
    if not isinstance(spec, ModelSpec):
        return None
    for obj in part:
        if type(obj) is not cls:
            return None
    return spec


def _plain_chunk(part: Sequence[Any]) -> HashLayout | None:
    """The layout of a chunk whose objects are all of one plain hash model (no indexes,
    no ``track_changes``): its saves are one command each and nothing else."""
    spec = _one_model(part)
    if spec is None:
        return None
    layout = layout_of(spec)
    if not isinstance(layout, HashLayout) or not layout.plain:
        return None
    return layout


def _keeps_expiry(part: Sequence[Any], ttl: Any) -> bool:
    """Whether a save_many chunk saves some object with no ttl (one that keeps the expiry
    it has: :attr:`Batch.fragile`); its ttl was checked before the chunk was made."""
    if ttl is not DEFAULT:
        return ttl is None
    return any(spec_of(cls).ttl is None for cls in {type(o) for o in part})


def _fast_chunk(part: Sequence[Any], ttl: Any, whole: bool,
                ready: Callable[[Sequence[Any]], Plan[None]] | None,
                every: Callable[[Sequence[str]], list[str]],
                known: Callable[[Sequence[str]], list[str]],
                made: _Saves | None = None) -> Plan[list[str]] | None:
    """The plan of a save_many chunk (outside a transaction) that needs none of the
    general chunk's per-object work: of one plain hash model, or of one unindexed flat
    model; None for any other chunk. ``made``: the saves of a plain chunk made already."""
    plain = _plain_chunk(part)
    if plain is not None:
        return _save_plain_chunk(plain, part, ttl, whole, ready, every, known, made)
    flat = _flat_chunk(part)
    if flat is not None:
        return _save_flat_chunk(flat, part, ttl, whole, ready, every, known)
    return None


def _flat_chunk(part: Sequence[Any]) -> FlatLayout | None:
    """The layout of a chunk whose objects are all of one flat model without indexes
    (so without claims): each save is one :class:`FlatWrite` and nothing else, and the
    flat layout remembers nothing per object (no snapshot, whatever ``track_changes``)."""
    spec = _one_model(part)
    if spec is None or spec.indexes is not None or spec.claims:
        return None
    layout = layout_of(spec)
    return layout if isinstance(layout, FlatLayout) else None


def _save_flat_chunk(layout: FlatLayout, part: Sequence[Any], ttl: Any, whole: bool,
                     ready: Callable[[Sequence[Any]], Plan[None]] | None,
                     every: Callable[[Sequence[str]], list[str]],
                     known: Callable[[Sequence[str]], list[str]]) -> Plan[list[str]]:
    """save_many's chunk of one unindexed flat model (outside a transaction): what the
    general chunk does for it (the same writes, sent and settled by the same
    ``run_writes`` and :func:`_settle_all`, the same errors), with the model's lookups
    made once per chunk instead of once per object (``every``/``known``: see
    :func:`_save_plain_chunk`)."""
    spec = layout.spec
    try:
        key_text, name, check = spec.key_builder(), spec.key.name, spec.checker()
        ms: Any = DEFAULT  # the ttl is refused after the first object's id and fields
        save = layout.save
        chunk: list[tuple[str, Command | Write]] = []
        for obj in part:
            key = key_text(getattr(obj, name))[0]
            if not whole:
                check(obj)
            if ms is DEFAULT:
                ms = ttl_ms(spec, ttl, key)
            chunk.append((key, save(key, obj, ms)))
        if ready is not None:
            yield from ready(part)
    except RedmodelError as e:  # nothing of this chunk was written
        raise _batch_error(e, "save_many", every(_keys_or_none(part)), known([]), False,
                           unread=not whole) from None
    keys = [k for k, _ in chunk]
    try:
        replies = yield from run_writes([c for _, c in chunk], idempotent=True, hints=None,
                                        what="save many", errors=True, batched=True,
                                        fragile=ms is None)
    except RedmodelError as e:  # the chunk's outcome is unknown (a lost reply)
        raise _batch_error(e, "save_many", every(keys), known([]), False, unknown=keys,
                           unread=not whole) from None
    _, refused = yield from _settle_all(chunk, replies, [None] * len(chunk), "save many",
                                        None, unclaimed=True)
    if refused:
        key, first = next(iter(refused.values()))
        wrote = _kept(keys, refused)
        raise _batch_error(first, "save_many", every(keys),
                           known([keys[at] for at in wrote]),
                           False, key, unread=not whole, chunk_done=wrote)
    for obj in part:
        saved(obj)
    return keys


def _plain_saves(layout: HashLayout, part: Sequence[Any], ttl: Any, checked: bool
                 ) -> _Saves:
    """The keys and the commands of a chunk of one plain hash model (what save_command
    gives each, without its per-object lookups), and their RESP when the model's
    generated packer made every one (an HSET alone each), else None."""
    spec = layout.spec
    ms = _part_ttl_ms(spec, ttl, part)
    hset = ms is None and not layout.may_be_empty  # HSET alone unless a field is None
    keys: list[str] = []
    commands: list[Command] = []
    packer = _packer(spec) if hset and not stale_any() else None
    if packer is not None:
        packed: list[bytes] = []
        for at, obj in enumerate(part):
            made = packer(obj)
            if made is None:  # the general path checks it (and refuses a bad one)
                rest = _plain_general(layout, part[at:], ms, hset, checked)
                return keys + rest[0], commands + rest[1], None
            keys.append(made[0])
            commands.append(made[1])
            packed.append(made[2])
        return keys, commands, packed
    keys, commands = _plain_general(layout, part, ms, hset, checked)
    return keys, commands, None


def _plain_general(layout: HashLayout, part: Sequence[Any], ms: int | None, hset: bool,
                   checked: bool) -> tuple[list[str], list[Command]]:
    """:func:`_plain_saves` without the packer: each object checked (unless ``checked``)
    and encoded by the model's generated checker and encoder."""
    spec = layout.spec
    key_text = spec.key_builder()
    name = spec.key.name
    check = spec.checker()
    save = layout.save_plain
    encode = layout.encode
    keys: list[str] = []
    commands: list[Command] = []
    for obj in part:
        key = key_text(getattr(obj, name))[0]
        if not checked:
            check(obj)
        keys.append(key)
        if hset and not stale_any():
            try:
                pairs, nones = encode(obj)
            except RedmodelError as e:  # a codec's refusal: named by key and field
                raise refused(layout.precheck, key, obj, e) from None
            if pairs and not nones:  # what save_plain gives it, without its frames
                commands.append(("HSET", key, *pairs))
                continue
        commands.append(save(key, obj, ms))
    return keys, commands


def _parts(objs: Iterable[Any], size: int, pending: list[list[Any]]) -> Iterable[list[Any]]:
    """The chunks of the input, each one after the parts put in ``pending`` (a chunk whose
    claims wait for an earlier object of it is sent as two parts: see _LaterError)."""
    for chunk in _chunks(objs, size):
        pending.append(chunk)
        while pending:
            yield pending.pop(0)


def _chunks(objs: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """The input in lists of ``size``, read lazily (a sequence is sliced)."""
    if isinstance(objs, Sequence):
        for start in range(0, len(objs), size):
            yield list(objs[start : start + size])
        return
    it = iter(objs)
    while part := list(itertools.islice(it, size)):
        yield part


def check_whole(obj: Any) -> list[str] | None:
    """What :func:`save_command` refuses, without building the command (a sequence is
    checked whole first, then encoded chunk by chunk): its id, its fields, what its layout
    refuses of them (a blob's str id no text codec holds), its index entries (a NaN or
    infinite range value, an int beyond 2**53). Returns the entries (None for a model
    without indexes). ``redmodel import`` checks each line's object with it."""
    spec = spec_of(obj)
    key = spec.key_for(getattr(obj, spec.key.name))
    spec.check(obj)
    precheck = getattr(layout_of(spec), "precheck", None)
    if precheck is not None:  # what the layout refuses of valid fields (a blob's id)
        precheck(key, obj)
    if spec.indexes is not None:
        try:
            return spec.indexes.entries(_values(spec, obj))
        except IndexValueError as e:
            raise ValidationError(e.reason, model=spec.name, key=key, field=e.field) from None
    return None


def save_key(obj: Any) -> str:
    spec = spec_of(obj)
    return spec.key_for(_id_of(spec, obj))


def _keys_or_none(part: Sequence[Any]) -> list[str]:
    """The keys of a refused chunk's objects, as far as they have one."""
    out = []
    for obj in part:
        try:
            out.append(save_key(obj))
        except Exception:  # a bad object: it has no key to name
            continue
    return out


def _after_earlier(error: Exception, part: Sequence[str]) -> RedmodelError:
    """``error`` as a redmodel error: a plain connection error of a chunk sent after
    earlier chunks were applied (the chunk itself was not: a write that must not run
    twice is never given up on plainly once part of its batch ran) becomes
    OutcomeUnknownError naming the chunk's keys: a plain one reads as "nothing applied,
    call again", and calling a counted delete again would miscount
    (docs/failures.md, "Several writes in one batch")."""
    if isinstance(error, RedmodelError):
        return error
    unknown = OutcomeUnknownError(
        f"the connection failed and this chunk was not applied ({type(error).__name__}: "
        f"{error}); the earlier chunks were", keys=tuple(dict.fromkeys(part)))
    unknown.unsent = tuple(range(len(part)))  # type: ignore[attr-defined]
    unknown.__cause__ = error
    return unknown


def _batch_error(error: Exception, what: str, keys: Sequence[str], written: Sequence[str],
                 tx: bool, refused: str | None = None, unknown: Sequence[str] = (),
                 unread: bool = False, chunk_done: Sequence[int] | None = None
                 ) -> Exception:
    """The error of one refused object of a save_many / delete_many, saying what of the
    call was written: the objects of earlier chunks, and the others of its chunk (each
    object is its own atomic write, so they land whatever their neighbours do).
    Accounted by object, not by key (an id can be given more than once): ``keys``: the
    call's keys known, in call order (``unread``: the input is an iterator, read no
    further than the refused chunk, so the objects after it are in neither list);
    ``written``: the keys of the objects written, in call order: those of the earlier
    chunks (the first ones of ``keys``), then, with ``chunk_done`` (the positions in the
    refused chunk of its objects written; the chunk follows the earlier ones), theirs.
    ``unknown``: the keys of a chunk (following the earlier ones) whose outcome nobody
    knows (a lost reply, :class:`OutcomeUnknownError`); they are in neither list."""
    if not isinstance(error, RedmodelError):
        return error
    if isinstance(error, CrossSlotError):  # refused before anything was sent
        unknown = ()
    # objects of the chunk whose outcome is known after all (positions in the chunk; see
    # _indexes._writes._given_up): written (settled, or answered by the round given up:
    # another node, an earlier reply of the chunk) and not written (held back, answered
    # unwritten, never run or fenced): in their lists, not in neither
    wrote = [at for at in getattr(error, "wrote", ()) if at < len(unknown)]
    if wrote and chunk_done is None:
        written = [*written, *(unknown[at] for at in wrote)]
        chunk_done = wrote
    start = len(written) - (len(chunk_done) if chunk_done is not None else 0)
    unsent = set(getattr(error, "unsent", ())).union(wrote)
    sent = [at for at in range(len(unknown)) if at not in unsent]
    unknown = [unknown[at] for at in sent]
    done = set(range(start)).union(start + at for at in chunk_done or ()).union(
        start + at for at in sent)
    rest = [k for at, k in enumerate(keys) if at not in done]
    key = refused or getattr(error, "key", None) or "one object"
    text = str(error).replace(IN_EXEC, "nothing was written").replace(
        "nothing was written", f"{key_text(key)} was not written")

    def shown(ks: Sequence[str]) -> str:
        return (", ".join(map(key_text, ks[:10]))
                + (f" and {len(ks) - 10} more" if len(ks) > 10 else ""))

    verb = "deleted" if what == "delete_many" else "written"
    maybe = (f", {len(unknown)} may or may not have been ({shown(list(unknown))}: in "
             "neither list)" if unknown else "")
    whose = "the objects it read" if unread else f"this {what}'s {len(keys)} objects"
    summary = (f"; of {whose} {len(written)} were {verb}"
               + (f" ({shown(list(written))})" if written else "") + maybe
               + f" and {len(rest)} were not ({shown(rest)}): see .written and "
               ".not_written")
    if unread:
        summary += ("; the input was read no further than this chunk, so the objects "
                    "after it were neither read nor " + verb)
    if tx:
        summary += "; any other write queued in the transaction was applied (no rollback in EXEC)"
    error.args = (text + summary, *error.args[1:])
    error.written, error.not_written = tuple(written), tuple(rest)
    return error


def _chunk_claims(part: list[Any], chunk: Sequence[tuple[str, Any]], hints: TxHints | None,
                  ready: Callable[[Sequence[Any]], Plan[None]] | None,
                  pending: list[list[Any]],
                  keys_of: tuple[Callable[[Sequence[str]], list[str]], ...], whole: bool
                  ) -> Plan[list[Claims | None] | None]:
    """save_many's registry check (``ready``) and claims of a chunk, before anything of it
    is written: None when the chunk is to be sent as two parts, put first in ``pending``
    (_LaterError); a refusal raised as save_many's error saying nothing of the chunk was
    written (``keys_of``: save_many's every and known; ``whole``: its input a sequence)."""
    try:
        if ready is not None:
            yield from ready(part)
        return (yield from _claim_all([(spec_of(o), k, o) for (k, _), o in
                                       zip(chunk, part, strict=True)], hints))
    except _LaterError as later:
        pending[:0] = [part[:later.at], part[later.at:]]
        return None
    except RedmodelError as e:
        every, known = keys_of
        raise _batch_error(e, "save_many", every([k for k, _ in chunk]), known([]),
                           hints is not None, unread=not whole) from None


class _LaterError(Exception):
    """A chunk's claims found a value held by an earlier object of the same chunk (which
    gives it up): nothing was written or kept claimed; the objects from ``at`` on are to be
    claimed after the earlier ones are written, as one-at-a-time saves would."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


def _claim_all(items: Sequence[tuple[ModelSpec, str, Any]], hints: TxHints | None = None
               ) -> Plan[list[Claims | None]]:
    """The claims of every object that needs them, pipelined; on a refusal every claim
    just made is released and the first refusal raised, or, outside a transaction, _LaterError
    when a refused value's holder is an earlier object of ``items`` (in a transaction the
    earlier write is only queued: the value is not free yet, as for one-at-a-time saves)."""
    holders: list[list[str]] = [[] for _ in items]
    plans = [(i, _caught(claim(spec, key, _values(spec, obj), hints,
                               reader=layout_of(spec), taken_by=holders[i])))
             for i, (spec, key, obj) in enumerate(items) if spec.claims]
    out: list[Claims | None] = [None] * len(items)
    if not plans:
        return out
    results = yield from gather([p for _, p in plans])
    errors = [r for r in results if isinstance(r, Exception)]
    for (i, _), r in zip(plans, results, strict=True):
        if not isinstance(r, Exception):
            out[i] = r
    if errors:
        yield from gather([undo(c, hints) for c in out if c is not None])
        if hints is None:
            earlier: dict[tuple[str, str], int] = {}
            for i, (spec, key, _) in enumerate(items):
                if any((spec.name, h) in earlier for h in holders[i]):
                    raise _LaterError(i)
                earlier.setdefault((spec.name, eid_of(spec, key)), i)
        raise errors[0]
    return out


def _caught(plan: Plan[Any]) -> Plan[Any]:
    """The plan's result, or the exception it raised (so siblings in a gather finish)."""
    try:
        return (yield from plan)
    except Exception as e:
        return e


def _settle_all(chunk: Sequence[tuple[str, Command | Write]], replies: Sequence[Any],
                claims: Sequence[Claims | None], what: str, hints: TxHints | None,
                unclaimed: bool = False
                ) -> Plan[tuple[list[Any], dict[int, tuple[str, Exception]]]]:
    """Results of a chunk of writes: claims confirmed or released (pipelined), and the
    refusals by position in the chunk, with their keys (the other objects of the chunk
    are written; a key can be in a chunk twice). ``unclaimed``: the caller knows no
    write of the chunk has claims (one model without them)."""
    tx = hints is not None
    refused: dict[int, tuple[str, Exception]] = {}
    if unclaimed or not any(isinstance(item, Write) and item.spec.claims for _, item in chunk):
        out = []
        for at, ((key, item), reply) in enumerate(zip(chunk, replies, strict=True)):  # no I/O
            error = (None if type(reply) is int  # a write's count: no refusal
                     else reply if isinstance(reply, ServerError)  # an error reply (Batch.errors)
                     else refusal(item.spec, key, reply, what, tx=tx) if isinstance(item, Write)
                     else None)
            if error is not None:
                refused[at] = (key, error)
            out.append(_result_of(reply))
        return out, refused
    # a value one write gives up that a later write of the same object in this chunk holds
    # is not released (that one confirms it): the claims each write holds are counted, as
    # a transaction counts them (TxHints.held), and settled in chunk order
    held = hints
    if held is None:
        held = TxHints()
        for c in claims:
            for k, t in (c.ours if c is not None else ()):
                held.held[k, t, c.eid] += 1  # type: ignore[union-attr]
    plans = []
    for at, ((key, item), reply, c) in enumerate(zip(chunk, replies, claims, strict=True)):
        if not isinstance(item, Write):
            if isinstance(reply, ServerError):
                refused[at] = (key, reply)
            plans.append(_done(reply))
            continue
        error = reply if isinstance(reply, ServerError) else refusal(item.spec, key, reply,
                                                                     what, tx=tx)
        if error is not None:
            refused[at] = (key, error)
            plans.append(undo(c, held))
        else:
            plans.append(settle(item.spec, key, reply, c, held) if item.spec.claims else
                         _done(_result_of(reply)))
    results = yield from gather(plans)
    return results, refused


def _done(value: Any) -> Plan[Any]:
    return value
    yield  # a plan that sends nothing


def _unique_within(objs: Sequence[Any]) -> None:
    """Two objects of one save_many claiming one unique value: refused before sending."""
    seen: dict[tuple[type, str, str], Any] = {}
    for obj in objs:
        spec = spec_of(obj)
        if spec.indexes is None or not spec.indexes.uniques:
            continue
        for name, text in unique_lines(spec, _values(spec, obj)):
            mark = (spec.cls, name, text)
            other = seen.setdefault(mark, obj)
            if other is not obj and _id_of(spec, other) != _id_of(spec, obj):
                raise ValidationError(
                    f"two objects in one save_many share the unique {name}",
                    model=spec.name, field=name)


def delete(model: type, id_value: Any, hints: TxHints | None = None) -> Plan[bool]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    w = layout_of(spec).delete(key)
    if isinstance(w, Write):
        reply = yield from _indexed_write(spec, w, None, hints, f"delete {spec.name}", False)
        if not spec.claims:
            return bool(reply)
        return bool((yield from settle(spec, key, reply, None, hints)))
    replies = yield Batch([w], write=True, keys=(key,))
    return bool(replies[0])


def delete_many(model: type, ids: Iterable[Any], chunk_size: int,
                hints: TxHints | None = None) -> Plan[int]:
    """A collection of ids (list, tuple, set) has every key made (every id checked) before
    the first DEL; any other iterable (a generator) is read chunk by chunk, each chunk's
    ids checked before it is sent, so memory is bounded by the chunk size (and the keys
    deleted so far, which its errors name) and a bad id is refused after the earlier
    chunks were deleted (the error's ``written`` says which)."""
    chunk_size = integer(chunk_size, "chunk_size", least=1)
    spec = spec_of(model)
    layout = layout_of(spec)
    given = many(ids, "ids", "ids", model=spec.name)
    whole = isinstance(given, Collection)
    keys: list[str] = [spec.key_for(i) for i in given] if whole else []
    removed = 0
    done: list[str] = []
    for id_part in _chunks(keys if whole else given, chunk_size):
        if whole:
            part = id_part
        else:
            try:
                part = [spec.key_for(i) for i in id_part]
            except RedmodelError as e:  # nothing of this chunk was sent
                raise _batch_error(e, "delete_many", done, done, hints is not None,
                                   unread=True) from None
            keys = done + part
        # one command per object: a cluster pipeline routes each to its slot
        chunk = [(k, layout.delete(k)) for k in part]
        try:
            replies = yield from run_writes([c for _, c in chunk], idempotent=False,
                                            hints=hints, what=f"delete many {spec.name}",
                                            errors=hints is None, batched=True)
        except CONNECTION_ERRORS as e:
            if not isinstance(e, RedmodelError) and (not done or hints is not None):
                raise  # nothing of the call was deleted: safe to call again
            # the chunk's outcome is unknown (a lost reply), or known in part (given up
            # after part of it ran: see _given_up), or this chunk was not applied after
            # earlier ones were: the caller learns which objects were deleted
            raise _batch_error(_after_earlier(e, part), "delete_many", keys, done,
                               hints is not None, unknown=part, unread=not whole) from None
        except RedmodelError as e:
            raise _batch_error(e, "delete_many", keys, done, hints is not None,
                               unknown=part, unread=not whole) from None
        results, refused = yield from _settle_all(chunk, replies, [None] * len(chunk),
                                                  f"delete many {spec.name}", hints)
        wrote = _kept(chunk, refused)
        done += [chunk[at][0] for at in wrote]
        if refused:
            key, first = next(iter(refused.values()))
            raise _batch_error(first, "delete_many", keys, done, hints is not None, key,
                               chunk_done=wrote, unread=not whole)
        removed += sum(int(bool(r)) for r in results)
    return removed


def update(model: type, id_value: Any, values: Mapping[str, Any],
           hints: TxHints | None = None) -> Plan[bool]:
    spec = spec_of(model)
    key = update_checked(spec, id_value, values)
    cmd = layout_of(spec).update(key, values)
    if not isinstance(cmd, Write):  # fragile: a copy after the object expired answers False
        replies = yield Batch([cmd], write=True, idempotent=True, keys=(key,), fragile=True)
        return bool(replies[0])
    claims = None
    if spec.claims:
        found = yield Batch([("EXISTS", key)], keys=(key,))
        # in a transaction, as the writes queued before this one leave it (a save of it)
        exists = bool(found[0]) if hints is None else hints.exists.get(key, bool(found[0]))
        if not exists:
            return False  # as the write would answer; no claim for a missing object
        claims = yield from claim(spec, key, dict(values), hints, reader=layout_of(spec))
    reply = yield from _indexed_write(spec, cmd, claims, hints, f"update {spec.name}", True,
                                      True)
    if not spec.claims:
        return bool(reply)
    return bool((yield from settle(spec, key, reply, claims, hints)))


def update_checked(spec: ModelSpec, id_value: Any, values: Mapping[str, Any]) -> str:
    """The key of an update, once the call's own checks pass (the values' own are the
    layout's)."""
    key = spec.key_for(id_value)
    if not values:
        raise ValidationError("nothing to update", model=spec.name, key=key)
    if spec.key.name in values:
        raise ValidationError("the id cannot be updated", model=spec.name, key=key,
                              field=spec.key.name)
    return key


def short_incr(spec: ModelSpec, key: str, field: str, amount: Any) -> Command | None:
    """Validate an increment (ValidationError) and give the short script's call
    (lua/incr_one.lua) when it applies: an int field, not renamed, of an unindexed hash
    model; None when only the counter script (incr_fields.lua) can do it. The short script
    sends the same HINCRBY the counter script would; anything it refuses (it answers 0,
    nothing written) goes on to the counter script, which decides it and says why."""
    if type(field) is not str:
        _field_name(spec, key, field)
    stored = spec.compiled.get(("incr", field))
    if stored is None:  # once per model and field: its stored name, or False
        chain = spec.path(field)
        fits = increment_kind(chain) == "int" and spec.indexes is None and not any(
            f.old_stored for f in chain) and not _counts_from_default(chain[-1])
        stored = spec.compiled["incr", field] = fits and spec.delimiter.join(
            f.stored for f in chain)
    if stored and type(amount) is int and INT64[0] <= amount <= INT64[1]:
        return _INCR_ONE.call([key], [stored, str(amount)])  # what check_increment passes
    chain = spec.path(field)
    text = check_increment(spec, key, chain, field, amount)[1]
    if not stored:
        return None
    return _INCR_ONE.call([key], [stored, text])


def _counts_from_default(leaf: FieldSpec) -> bool:
    """Whether an increment of ``leaf`` stored nowhere counts from something else than
    0 (its default: HINCRBY would count from 0; see _atomic.default_text)."""
    return takes_self(leaf) or default_text(leaf) not in (None, "0", "0.0")


def _field_name(spec: ModelSpec, key: str, field: Any) -> None:
    """ValidationError for an increment's field that is not a str (an int, a list: the
    latter would be a bare TypeError as a dict key)."""
    if not isinstance(field, str):
        raise ValidationError(f"field must be a str (dotted for a nested one), got "
                              f"{field!r}", model=spec.name, key=key)


def short_incr_result(reply: Any) -> int | None:
    """The new value from the short script's reply (an integer below 2**53 in magnitude,
    else its text); None: refused, nothing written."""
    if type(reply) is int:
        return reply
    return int(reply) if isinstance(reply, bytes) else None


def incr(model: type, id_value: Any, field: str, amount: float,
         hints: TxHints | None = None) -> Plan[int | float]:
    """Add ``amount`` to one number: on the hash layout, ``incr_fields`` with one change
    (exact, all or nothing, index entries in step)."""
    spec = spec_of(model)
    key = spec.key_for(id_value)
    layout = layout_of(spec)
    if isinstance(layout, HashLayout):
        short = short_incr(spec, key, field, amount)  # validates the increment
        plain = None if hints is None else plain_incr(spec, key, field, amount, hints)
        if plain is not None:
            replies = yield Batch([plain], write=True, keys=(key,))
            return int(replies[0])
        if short is not None and hints is None:
            replies = yield Batch([short], write=True, keys=(key,))
            done = short_incr_result(replies[0])
            if done is not None:
                return done
        if hints is not None:
            hints.seen.pop(key, None)  # the script's outcome is not modelled
        values = yield from incr_fields(model, id_value, {field: amount}, hints=hints)
        new: int | float = values[field]
        return new
    _field_name(spec, key, field)
    cmd, kind = layout.incr(key, field, amount)
    replies = yield Batch([cmd], write=True, keys=(key,))
    result: int | float = counter_result(spec, key, field, kind, amount, replies[0])
    return result


_CANONICAL_INT = re.compile(rb"-?[1-9][0-9]{0,18}|0")


def plain_incr(spec: ModelSpec, key: str, field: str, amount: Any, hints: TxHints
               ) -> Command | None:
    """In a transaction, a plain ``HINCRBY`` for an increment the counter script
    (lua/incr_fields.lua) would apply as that same HINCRBY, or None (send the script).

    It is plain only when the transaction knows, from its own WATCHed read of the object
    (``hints.seen``: an HGETALL in this attempt, changed only by the plain increments
    queued since), that at EXEC the object exists, the field holds a canonical 64-bit int
    (or nothing: 0) under its current name (no ``old_names`` value to move), and the sum
    stays within 64 bits: then the script's checks all pass and its only write is that
    HINCRBY, and any change to the object between the read and EXEC aborts EXEC (WATCH).
    Only unindexed models (no index entries to move) and int fields."""
    if spec.indexes is not None or isinstance(amount, bool) or not isinstance(amount, int):
        return None
    amount = int(amount)  # an int subclass (IntEnum) goes to the wire as a plain int
    state = hints.seen.get(key)
    if state is None:
        return None
    names = plain_field(spec, field)
    if names is None:
        return None
    stored, olds = names
    for o in olds:
        if o in state:
            return None
    raw = state.get(stored, b"0")
    if not _CANONICAL_INT.fullmatch(raw):
        return None
    new = int(raw) + amount
    if not (INT64[0] <= int(raw) <= INT64[1] and INT64[0] <= new <= INT64[1]):
        return None
    state[stored] = str(new).encode()
    return ("HINCRBY", key, stored, amount)


_PlainNames = tuple[bytes, tuple[bytes, ...]]
_PLAIN_FIELDS: dict[type, tuple[ModelSpec, dict[str, _PlainNames | None]]] = {}


def plain_field(spec: ModelSpec, field: str) -> _PlainNames | None:
    """(stored name, old stored names) of an int field of an unindexed hash model whose
    increment ``check_increment`` accepts (no encoded object on its path), or None: what
    :func:`plain_incr` needs, worked out once per model and field (an unknown field is
    None and not remembered: the general path raises)."""
    entry = _PLAIN_FIELDS.get(spec.cls)
    if entry is None or entry[0] is not spec:
        entry = _PLAIN_FIELDS[spec.cls] = (spec, {})
    known = entry[1]
    if field in known:
        return known[field]
    names: _PlainNames | None = None
    if spec.indexes is None and spec.layout == "hash":
        try:
            chain = spec.path(field)
        except ValidationError:
            return None
        if increment_kind(chain) == "int" and not _counts_from_default(chain[-1]):
            d = spec.delimiter
            names = (d.join(f.stored for f in chain).encode(), tuple(
                d.join(p).encode() for p in itertools.product(
                    *[(f.stored, *f.old_stored) for f in chain]))[1:])
    known[field] = names
    return names


def expire(model: type, id_value: Any, ttl: float | dt.timedelta,
           hints: TxHints | None = None) -> Plan[bool]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    if ttl is None or ttl is DEFAULT:
        raise ValidationError("expire needs a ttl; use persist() to remove an expiry",
                              model=spec.name, key=key)
    ms = ttl_ms(spec, ttl, key)
    return (yield from _expiry(spec, key, ms, hints))


def persist(model: type, id_value: Any, hints: TxHints | None = None) -> Plan[bool]:
    spec = spec_of(model)
    key = spec.key_for(id_value)
    return (yield from _expiry(spec, key, None, hints))


def _expiry(spec: ModelSpec, key: str, ms: int | None, hints: TxHints | None) -> Plan[bool]:
    # an expiry answers the same when sent twice; a persist does not (a second PERSIST
    # answers False, "had no expiry"), so it is never resent after a lost reply
    # fragile: a copy sent after the object expired (its first copy's own expiry) or was
    # deleted answers False, "missing" (the indexed layout's script answers True from the
    # object's expiry record after an expiry, but False after a delete: fragile too)
    again = ms is not None
    layout = layout_of(spec)
    w = layout.expire(key, ms)
    if isinstance(w, Write):
        what = f"{'persist' if ms is None else 'expire'} {spec.name}"
        return bool((yield from _indexed_write(spec, w, None, hints, what, again, again)))
    # (a PEXPIRE copy checks the object key's type too: another client's key of another
    # type there, after the object expired, is not given this expiry: Batch.holds)
    replies = yield Batch([w], write=True, idempotent=again, keys=(key,), fragile=again,
                          holds=layout.scan_type)
    return bool(replies[0])


# ---- reads ------------------------------------------------------------------------------


def get(model: type, id_value: Any) -> Plan[Any]:
    spec = spec_of(model)
    key, text = id_str(spec, id_value)
    layout = layout_of(spec)
    replies = yield from read_batch(Batch([layout.read(key)], keys=(key,)))
    return layout.decode(key, text, replies[0])


def get_or_raise(model: type, id_value: Any) -> Plan[Any]:
    found = yield from get(model, id_value)
    if found is None:
        spec = spec_of(model)
        raise NotFoundError(spec.name, spec.key_for(id_value))
    return found


def get_many(model: type, ids: Iterable[Any], chunk_size: int) -> Plan[list[Any]]:
    """One pipelined round trip of reads per chunk; the ids are read from ``ids`` chunk by
    chunk (a generator is not drawn whole first), so beyond the objects returned memory
    is bounded by the chunk size."""
    spec = spec_of(model)
    many(ids, "ids", "ids", model=spec.name)
    layout = layout_of(spec)
    key_text = spec.key_builder()
    decode = layout.decode
    out: list[Any] = []
    for ids_part in _chunks(ids, chunk_size):
        part = [key_text(i) for i in ids_part]
        keys = [k for k, _ in part]
        if isinstance(layout, HashLayout):  # HGETALL each: nothing to ask again
            replies = yield Batch([("HGETALL", k) for k in keys], keys=keys)
            out += layout.decode_many(part, replies)
            continue
        replies = yield from read_batch(Batch([layout.read(k) for k in keys], keys=keys))
        out.extend([decode(k, t, r) for (k, t), r in zip(part, replies, strict=True)])
    return out


def get_by_keys(spec: ModelSpec, keys: Sequence[str]) -> Plan[list[Any]]:
    """Objects at these keys of one model, skipping keys that vanished."""
    layout = layout_of(spec)
    replies = yield from read_batch(Batch([layout.read(k) for k in keys], keys=keys))
    found = (layout.decode(k, spec.id_of_key(k) or "", r)
             for k, r in zip(keys, replies, strict=True))
    return [obj for obj in found if obj is not None]


def exists(model: type, id_value: Any) -> Plan[bool]:
    key = spec_of(model).key_for(id_value)
    replies = yield Batch([("EXISTS", key)], keys=(key,))
    return bool(replies[0])


def pttl(model: type, id_value: Any) -> Plan[int | None]:
    """Milliseconds left; None when the object has no expiry; NotFoundError when missing."""
    spec = spec_of(model)
    key = spec.key_for(id_value)
    replies = yield Batch([("PTTL", key)], keys=(key,))
    ms = int(replies[0])
    if ms == -2:
        raise NotFoundError(spec.name, key)
    return None if ms == -1 else ms


# ---- iteration ------------------------------------------------------------------------


def scan_pattern(spec: ModelSpec) -> str:
    return f"{glob_escape(spec.prefix)}{glob_escape(spec.delimiter)}*"


def scan_page(spec: ModelSpec, cursor: int, count: int, target: Any = None
              ) -> Plan[tuple[int, list[str]]]:
    """One SCAN page: the next cursor and the keys of this model's objects in it."""
    cmd = ("SCAN", cursor, "MATCH", scan_pattern(spec), "COUNT", count,
           "TYPE", layout_of(spec).scan_type)
    replies = yield Batch([cmd], target=target)
    next_cursor, raw_keys = replies[0]
    if isinstance(next_cursor, dict):  # a cluster client answers {node: cursor}
        next_cursor = next(iter(next_cursor.values()))
    keys = []
    for raw in raw_keys:
        # an id is bytes: its str form is them decoded with surrogateescape (models.md)
        key = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        if spec.id_of_key(key) is not None:
            keys.append(key)
    return int(next_cursor), keys


def scan_keys(model: type, count: int, targets: Sequence[Any] = (None,)) -> IterPlan:
    """Every object key of the model, a page at a time: SCAN on each target (every primary
    of a cluster, or the one server)."""
    spec = spec_of(model)
    count = page_count(count, model=spec.name)
    for target in targets:
        cursor = 0
        while True:
            cursor, keys = yield from scan_page(spec, cursor, count, target)
            if keys:
                yield Emit(keys)
            if cursor == 0:
                break


def each_page(
    model: type, count: int, targets: Sequence[Any],
    per_page: Callable[[ModelSpec, Sequence[str]], Plan[Any]],
) -> IterPlan:
    """Run ``per_page`` on every page of keys and emit what it returns."""
    spec = spec_of(model)
    pages = scan_keys(model, count, targets)
    try:
        step = next(pages)
        while True:
            if isinstance(step, Emit):
                result = yield from per_page(spec, step.items)
                yield Emit(result)
                step = pages.send(None)
            else:
                step = pages.send((yield step))
    except StopIteration:
        return
    finally:  # ended early (closed, failed): the plan it drives too
        pages.close()


def scan(model: type, count: int, targets: Sequence[Any] = (None,)) -> IterPlan:
    """Every stored object: each SCAN page, then its objects in one pipelined read."""
    return each_page(model, count, targets, get_by_keys)


def _rotated(spec: ModelSpec, keys: Sequence[str]) -> Plan[list[int]]:
    done = yield from rotate_page(spec, keys)
    return [done]


def rotate_keys(model: type, count: int, targets: Sequence[Any] = (None,)) -> IterPlan:
    """Emits, per SCAN page, how many stored values were re-encrypted."""
    return each_page(model, count, targets, _rotated)


# ---- key rotation -----------------------------------------------------------------------


def _chains(spec: ModelSpec) -> list[Codec]:
    found: dict[str, Codec] = {}
    if spec.codec is not None:
        found[spec.codec.name] = spec.codec

    def walk(cls: type) -> None:
        for f in attrs.fields(cls):
            chain = getattr(f.metadata.get("redmodel"), "codec", None)
            if chain is not None:
                c = resolve_codec(chain)
                found[c.name] = c
            inner, _ = optional_inner(f.type)
            if isinstance(inner, type) and attrs.has(inner) and inner is not cls:
                walk(inner)

    walk(spec.cls)
    return [c for c in found.values() if c.holds_keys]


def rotate_page(spec: ModelSpec, keys: Sequence[str]) -> Plan[int]:
    """Re-encrypt under the newest key every stored value of these objects that belongs to
    a field declared with a key-holding chain (a field's ``codec=``, nested classes'
    fields, the model's chain for encoded fields and blobs; hash fields and flat leaves
    matched by stored name, old names too); one read round trip, one compare-and-set
    round trip. A value of any other field (a plain ``bytes``/``str`` field) is never
    rewritten or decoded by it, whatever its bytes start with (31J F2).

    Every object of the page is first decoded as ``get`` decodes it: one it cannot read
    (a value no chain of its field decodes: plaintext, another chain's header, a token
    under no configured key; a corrupt flat manifest) raises DecodeError naming its key
    before anything of the page is written (docs/store.md; 30AQ F3: a value whose header
    names no key-holding chain was passed over, and the rotation reported success). A
    flat object missing a leaf is the exception: its other values are rotated."""
    chains = _chains(spec)
    if not chains or not keys:
        return 0
    layout = layout_of(spec)
    replies = yield from read_batch(Batch([layout.read(k) for k in keys]))
    for key, reply in zip(keys, replies, strict=True):
        try:
            layout.check_readable(key, spec.id_of_key(key) or "", reply)
        except DecodeError as e:
            raise e.with_context(model=spec.name, key=key) from None
    writes: list[Command] = []
    for key, reply in zip(keys, replies, strict=True):
        # only the values of fields declared with a key-holding chain, by field (31J F2:
        # picked by header, a plain bytes field holding a token was re-encrypted, or
        # one holding a chain's header then other bytes made the rotation fail); one its
        # field's chain did not write: another key-holding chain of the model's, or none
        for target, old, declared in layout.keyed_values(key, reply):
            chain = declared if declared.wrote(old) else next(
                (c for c in chains if c.wrote(old)), None)
            if chain is None:
                continue
            try:
                new = chain.rotate(old)
            except DecodeError as e:
                raise e.with_context(model=spec.name, key=key) from None
            if new is not None:
                writes.append(layout.cas(target, old, new))
    if not writes:
        return 0
    done = yield Batch(writes, write=True)
    return sum(int(r) for r in done)
