"""``redmodel import``: JSON lines back into Redis, every line checked before any write."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import attrs
import click
import redis
from rich.console import Console

from redmodel._errors import RedmodelError, ServerError
from redmodel._indexes._writes import unique_lines
from redmodel._layouts._blob import BlobLayout
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of
from redmodel._plan import Batch, Plan, script
from redmodel._plans._objects import save_stored
from redmodel._stores._sync import Store
from redmodel.cli._common import (
    CONNECTION,
    OK,
    PROBLEMS,
    USAGE,
    CliError,
    Env,
    common_options,
    model_label,
)
from redmodel.cli._lines import BadLineError, MissingKeysError, Models, SealedItem, TypedItem
from redmodel.transactions._handles import Transaction

__all__ = ["command"]

SHOWN = 20  # bad lines listed (all are counted)


@contextmanager
def _spooled(path: str) -> Iterator[IO[bytes]]:
    """The input as a seekable binary file: a path as is, stdin copied to a temporary file
    (so it too is checked whole before the first write)."""
    if path != "-":
        with open(path, "rb") as f:
            yield f
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.seek(0)
        yield spool


def _lines(raw: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, line) of the input, gzip or not; blank lines are skipped."""
    raw.seek(0)
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
    for number, line in enumerate(stream, 1):
        if line.strip():
            try:
                yield number, line.decode("utf-8")
            except UnicodeDecodeError:
                yield number, ""  # reported as "not JSON" with its number


# How a line is written (its "way"): save_many (objects without expiry, the packed fast
# path), the blob script (blob objects without expiry: SETs that refuse a key of another
# type), the store's save one at a time (models claiming unique values in other slots), or
# MULTI/EXEC (objects with a TTL, or values kept encrypted).
_MANY, _BLOBS, _SAVE, _MULTI = "save_many", "blobs", "save", "multi"


@attrs.define
class _Line:
    label: str  # the model's label, for the count
    key: str
    item: TypedItem | SealedItem
    new: bool  # the first line of its object in the file (an object is counted once)
    way: str


def _way(item: TypedItem | SealedItem) -> str:
    spec = spec_of(item.cls)
    if isinstance(item, TypedItem):
        if spec.claims:  # unique values claimed in other slots: the store's own path
            return _SAVE
        if item.pttl is None:
            return _BLOBS if spec.layout == "blob" else _MANY
    return _MULTI


def _ordered(item: TypedItem | SealedItem) -> bool:
    """Whether the line's model holds unique values: its lines move values between
    objects, so they must apply in file order (other objects' lines touch disjoint keys)."""
    indexes = spec_of(item.cls).indexes
    return indexes is not None and bool(indexes.uniques)


class _Writer:
    """Lines written in chunks of ``chunk`` lines, in file order: a chunk is split into
    writes by way (see _way), consecutive lines of one way together. A chunk with no line
    of a model holding unique values is written as one write per way (save_many, the blob
    script, MULTI), since then no line's outcome depends on another's order (a repeated
    object flushes the chunk first). One MULTI (or one blob script) per object on a
    cluster, where a chunk spans slots."""

    def __init__(self, store: Store, chunk: int) -> None:
        self.store = store
        self.chunk = chunk
        self.pending: list[_Line] = []
        self.pending_keys: set[str] = set()
        self.ordered = False  # a line of a model with unique values is pending
        self.written: dict[str, int] = {}

    def add(self, item: TypedItem | SealedItem, label: str, new: bool = True) -> None:
        key = _key(item)
        if key in self.pending_keys:
            # an object repeated in the file: its lines apply in order
            try:
                self.flush()
            except _StoppedError as stop:
                stop.unsent.append(key)
                raise
        self.pending.append(_Line(label, key, item, new, _way(item)))
        self.pending_keys.add(key)
        self.ordered = self.ordered or _ordered(item)
        if len(self.pending) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Write the lines added since the last flush, write after write. An error (one
        the database answers: a unique value another object holds, a key of another type;
        or a lost connection) stops the import: raised as _StoppedError, saying which
        lines were written, which may have been (the write in flight) and which were
        never sent."""
        writes = self._writes()
        self.pending, self.pending_keys, self.ordered = [], set(), False
        for at, lines in enumerate(writes):
            try:
                self._write(lines)
            except (RedmodelError, redis.RedisError) as e:
                stop = _StoppedError(e)
                self._settle(stop, lines, e)
                stop.unsent += [line.key for later in writes[at + 1:] for line in later]
                raise stop from None
            self._done(lines)

    def _writes(self) -> list[list[_Line]]:
        """The pending lines as writes: runs of consecutive lines of one way, in file
        order; without a line whose order matters, one write per way."""
        runs: list[list[_Line]] = []
        if not self.ordered:
            for way in (_MANY, _BLOBS, _SAVE, _MULTI):
                lines = [line for line in self.pending if line.way == way]
                runs += [lines] if lines and self._together(way) else [[x] for x in lines]
            return runs
        for line in self.pending:
            if runs and runs[-1][0].way == line.way and self._together(line.way):
                runs[-1].append(line)
            else:
                runs.append([line])
        return runs

    def _together(self, way: str) -> bool:
        """Whether lines of this way go in one write (else one object per write: the
        store's save; a MULTI on a cluster, where a chunk spans slots)."""
        return way != _SAVE and not (way == _MULTI and self.store.cluster)

    def _write(self, lines: list[_Line]) -> None:
        way = lines[0].way
        if way == _MANY:
            objs = [line.item.obj for line in lines]  # type: ignore[union-attr]
            self.store.save_many(objs, ttl=None, chunk_size=len(objs))
        elif way == _BLOBS:
            self.store.run(_blobs(self.store, [line.item for line in lines]))
        elif way == _SAVE:
            (line,) = lines
            assert isinstance(line.item, TypedItem)
            self.store.save(line.item.obj, ttl=_seconds(line.item.pttl))
        else:
            self.store.transaction(_write)([line.item for line in lines])

    def _settle(self, stop: _StoppedError, lines: list[_Line], error: Exception) -> None:
        """What of the write ``lines`` stopped in was written (counted), may have been
        (``stop.unknown``) or was not (``stop.unsent``)."""
        keys = [line.key for line in lines]
        written = getattr(error, "written", None)
        not_written = getattr(error, "not_written", None)
        if written is not None and not_written is not None:  # save_many says which
            done = set(written)
            self._done([line for line in lines if line.key in done])
            stop.unsent += list(not_written)
            stop.unknown += [k for k in keys if k not in done and k not in not_written]
        elif isinstance(error, redis.ConnectionError | redis.TimeoutError) or getattr(
                error, "committed", False):
            # a lost connection (an outcome not known: sent again only when harmless, and
            # the resend failed too), or a command that failed inside EXEC (the
            # transaction's other commands were applied): the write may have been applied
            # in part (a save is safe to send again: importing again settles it)
            stop.unknown += keys
        else:  # refused before anything of it was written (a check, a script's refusal)
            stop.unsent += keys

    def _done(self, lines: list[_Line]) -> None:
        """Count these lines' objects as written (each once, by its model's label)."""
        for line in lines:
            if line.new:
                self.written[line.label] = self.written.get(line.label, 0) + 1
                line.new = False  # counted once, whatever settles it again

    def stopped(self, stop: _StoppedError, rest: list[str]) -> str:
        """The message of an import stopped by ``stop``; ``rest``: the keys of the lines
        after the one it stopped at (never sent)."""
        count = sum(self.written.values())
        unsent = stop.unsent + rest
        text = (f"import stopped while writing: {_one_line(stop.error)}; {count:,} objects "
                f"were written")
        if unsent:
            text += f", these {len(unsent):,} were not: {_shown(unsent)}"
        if stop.unknown:
            text += (f"; these {len(stop.unknown):,} (the write it stopped in) may have "
                     f"been: {_shown(stop.unknown)}")
        return (f"{text}. Fix what stopped it and import again (objects that exist are "
                "saved over)")


class _StoppedError(Exception):
    """An import stopped while writing: ``error``, what stopped it; ``unknown``, the keys
    that may have been written; ``unsent``, the keys of the lines not written."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error
        self.unknown: list[str] = []
        self.unsent: list[str] = []


def _shown(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN:,} more" if len(keys) > SHOWN else ""
    return ", ".join(repr(k) for k in keys[:SHOWN]) + more


_BLOB_SET = script("blob_set_checked")


def _blobs(store: Store, items: list[TypedItem | SealedItem]) -> Plan[None]:
    """Plan: blob objects without expiry saved whole (SET KEEPTTL, as save_many), each
    key's type checked first by the script: a key of another type refuses the write with
    nothing of it written. One call for them all (one per object on a cluster, where they
    span slots: then those before a refused one in the call's order may be written)."""
    yield from store._registry.ready_for([item.obj for item in items
                                          if isinstance(item, TypedItem)])
    keys, values = [], []
    for item in items:
        assert isinstance(item, TypedItem)
        key = _key(item)
        layout = layout_of(spec_of(item.cls))
        assert isinstance(layout, BlobLayout)
        keys.append(key)
        values.append(layout.save(key, item.obj, None)[2])
    calls = ([_BLOB_SET.call([k], [v]) for k, v in zip(keys, values, strict=True)]
             if store.cluster else [_BLOB_SET.call(keys, values)])
    replies = yield Batch(calls, write=True, idempotent=True, errors=True)
    if store.cluster:  # one call per object: each written or refused alone
        written = [k for k, r in zip(keys, replies, strict=True) if isinstance(r, int)]
    else:
        written = keys if isinstance(replies[0], int) else []
    refused = [reply for reply in replies if not isinstance(reply, int)]
    if not refused:
        return
    error = refused[0]
    if not isinstance(error, Exception):  # [key, type]: a key of another type
        key, held = (x.decode() if isinstance(x, bytes) else str(x) for x in error)
        error = ServerError(f"WRONGTYPE {key} holds a {held}, not a string: another "
                            "program's key at this object's key; nothing of "
                            + ("this object" if store.cluster else "this write")
                            + " was written", keys=(key,), command="import")
    done = set(written)
    error.written = tuple(written)
    error.not_written = tuple(k for k in keys if k not in done)
    raise error


def _key(item: TypedItem | SealedItem) -> str:
    if isinstance(item, SealedItem):
        return item.key
    spec = spec_of(item.cls)
    return spec.key_for(getattr(item.obj, spec.key.name))


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _seconds(pttl: int | None) -> float | None:
    return None if pttl is None else pttl / 1000


_HOLDS = {"hash": "hash", "blob": "string"}  # what an object's key holds, by layout


def _held(items: list[TypedItem | SealedItem]
          ) -> Plan[tuple[list[tuple[str, str, Any]], dict[str, int]]]:
    """Plan: TYPE of each hash or blob object's key (with the type it should hold), then
    PTTL of each hash kept encrypted and exported without expiry, in one batch (one round
    trip, its keys WATCHed first)."""
    typed = [(_key(item), _HOLDS[layout]) for item in items
             if (layout := spec_of(item.cls).layout) in _HOLDS]
    timed = [item.key for item in items
             if isinstance(item, SealedItem) and item.value is None and item.pttl is None]
    keys = tuple(dict.fromkeys([*(key for key, _ in typed), *timed]))
    if not keys:
        return [], {}
    replies = yield Batch([*(("TYPE", key) for key, _ in typed),
                           *(("PTTL", key) for key in timed)], keys=keys)
    types, pttls = replies[:len(typed)], replies[len(typed):]
    held = [(key, want, reply) for (key, want), reply in zip(typed, types, strict=True)]
    return held, {key: int(reply) for key, reply in zip(timed, pttls, strict=True)}


def _write(tx: Transaction, items: list[TypedItem | SealedItem]) -> None:
    # Read first (WATCHed: a transaction reads before its first write): a key of another
    # type at an object's key refuses the chunk before anything is written (inside EXEC
    # it would fail alone and the rest be applied; a DEL would delete it), and a hash
    # exported without expiry keeps the one its key has, as a save would. The flat layout
    # is not read: its save script checks its keys itself.
    types, kept = tx.query(_held(items), "read the keys of an import chunk")
    for key, want, reply in types:
        held = reply.decode() if isinstance(reply, bytes) else str(reply)
        if held not in ("none", want):
            raise ServerError(f"WRONGTYPE {key} holds a {held}, not a {want}: another "
                              "program's key at this object's key; nothing of this chunk "
                              "was written", keys=(key,), command="import")
    for item in items:
        if isinstance(item, TypedItem):
            tx.save(item.obj, ttl=_seconds(item.pttl))
        elif item.value is not None:  # a blob, as stored; an expiry it had stays, as save
            ttl = ("KEEPTTL",) if item.pttl is None else ("PX", item.pttl)
            tx.command("SET", item.key, item.value, *ttl)
        else:  # a hash whose encrypted values stay as stored: replace it whole
            pttl = item.pttl
            if pttl is None and kept[item.key] > 0:
                pttl = kept[item.key]
            tx.command("DEL", item.key)
            if spec_of(item.cls).indexes is None:
                tx.command("HSET", item.key, *item.pairs)
                if pttl is not None:
                    tx.expire(item.cls, item.id, pttl / 1000)
                continue
            # the index write script of a whole save, with the bytes as exported (never
            # encoded again) and the entries of the values they hold (index_values: a
            # blind field's decrypted by the check), its record kept as a save keeps it
            tx.queue(save_stored(item.cls, item.key, item.pairs, dict(item.index_values),
                                 pttl, hints=tx._core.hints),
                     f"save {item.cls.__name__}")


@click.command("import")
@common_options
@click.option("--input", "-i", "source", default="-", metavar="PATH", show_default=True,
              help="An export (plain or gzip), or - for stdin.")
@click.option("--decrypt", is_flag=True, default=False,
              help="Decrypt values exported as ciphertext (needs their keys) and save them "
                   "re-encrypted under the newest key. Without it they are written as "
                   "exported.")
@click.option("--dry-run", is_flag=True, default=False,
              help="Check every line and write nothing.")
@click.option("--chunk", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Objects per write round trip.")
def command(env: Env, source: str, decrypt: bool, dry_run: bool, chunk: int) -> int:
    """Read an export back: every line is checked first (JSON, format version, model,
    field types, encrypted values' codec) and nothing is written if one is bad, with the
    line numbers of the bad ones. Then objects are saved through the store (indexes and
    unique values kept in step), with the TTL they had left; an object that exists is
    replaced. Lines are written in file order, so the outcome does not depend on
    --chunk. Memory holds one chunk and a 64-bit digest of each object's key (to count an
    object on several lines once); stdin is spooled to a temporary file.

    Exits 1 when a line is bad."""
    models = Models(env.models(), decrypt)
    with _spooled(source) as raw:
        size = os.fstat(raw.fileno()).st_size
        checked_as = _identity(raw)
        try:
            errors, checked, ignored, repeats = _check(env, models, raw, size)
        except MissingKeysError as e:  # found by the check: nothing written
            raise CliError(f"{e}: nothing was imported", USAGE) from None
        written: dict[str, int] = {}
        seconds = 0.0
        if not errors and not dry_run:
            if _identity(raw) != checked_as:
                raise CliError(f"{source} changed while it was checked: nothing was "
                               "imported", PROBLEMS)
            store = env.store()
            started = time.perf_counter()
            written = _import(env, store, models, raw, size, chunk, repeats)
            seconds = time.perf_counter() - started
    summary = {"ok": not errors, "input": source, "lines": checked, "bad_lines": len(errors),
               "errors": [{"line": n, "error": e} for n, e in errors[:SHOWN]],
               "dry_run": dry_run, "imported": sum(written.values()), "models": written,
               "ignored_fields": ignored, "seconds": round(seconds, 3)}

    def human(out: Console) -> None:
        for number, error in errors[:SHOWN]:
            out.print(f"line {number}: {error}", markup=False)
        if len(errors) > SHOWN:
            out.print(f"... and {len(errors) - SHOWN} more bad lines", markup=False)
        if errors:
            out.print(f"{len(errors)} of {checked:,} lines are bad: nothing was imported",
                      markup=False)
            return
        for name, count in sorted(ignored.items()):
            out.print(f"ignored field {name} (not in the model) in {count:,} lines",
                      markup=False)
        if dry_run:
            out.print(f"all {checked:,} lines are good (dry run: nothing written)",
                      markup=False)
            return
        for label, count in written.items():
            out.print(f"{label}: {count:,} objects", markup=False)
        out.print(f"imported {sum(written.values()):,} objects in {seconds:.1f} s",
                  markup=False)

    env.emit(summary, human)
    return PROBLEMS if errors else OK


def _identity(raw: IO[bytes]) -> tuple[int, int, int]:
    """What tells that the input file changed: size, modification time, inode."""
    st = os.fstat(raw.fileno())
    return st.st_size, st.st_mtime_ns, st.st_ino


class _Uniques:
    """The unique values of the whole file, so that two lines (two ids) sharing one are
    refused by the check, with their line numbers, and not by a save_many half-way
    through the import (it refuses two objects of one chunk sharing one; across chunks the
    second save would find the value taken). Kept as a 16-byte digest per value."""

    def __init__(self) -> None:
        self.seen: dict[bytes, tuple[bytes, int]] = {}

    def problem(self, item: TypedItem | SealedItem, number: int) -> str | None:
        spec = spec_of(item.cls)
        if spec.indexes is None or not spec.indexes.uniques:
            return None
        if isinstance(item, TypedItem):
            values = {n: getattr(item.obj, n) for n in spec.indexes.fields}
            key = spec.key_for(getattr(item.obj, spec.key.name))
        else:  # values kept encrypted: the indexed values it holds (blind ones decrypted)
            values, key = dict(item.index_values), item.key
        ident = _digest(spec.name, repr(key))
        for name, text in unique_lines(spec, values):
            mark = _digest(spec.name, name, text)
            other, line = self.seen.setdefault(mark, (ident, number))
            if other != ident:
                return (f"shares the unique {name} of {spec.name} with line {line} (another "
                        "id): one value can be claimed by one object only")
        return None


def _digest(*parts: str, size: int = 16) -> bytes:
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogatepass"),
                           digest_size=size).digest()


def _check(env: Env, models: Models, raw: IO[bytes], size: int
           ) -> tuple[list[tuple[int, str]], int, dict[str, int], set[int]]:
    """Every line parsed and validated, and the unique values of the whole file apart;
    (bad lines, lines read, ignored fields, numbers of the lines repeating an object of
    an earlier line: an object is counted once however many lines it has). Each key is
    kept as an 8-byte digest until the check ends."""
    errors: list[tuple[int, str]] = []
    ignored: dict[str, int] = {}
    uniques = _Uniques()
    seen: set[int] = set()
    repeats: set[int] = set()
    checked = 0
    with env.progress_bar(total=size) as bar:
        task = bar.add_task("check", total=size)
        for number, line in _lines(raw):
            checked += 1
            try:
                item = models.parse(line, ignored)
                mark = int.from_bytes(_digest(_key(item), size=8), "big")
                if mark in seen:
                    repeats.add(number)
                seen.add(mark)
                problem = uniques.problem(item, number)
            except BadLineError as e:
                problem = str(e)
            if problem:
                errors.append((number, problem))
            if checked % 1000 == 0:
                bar.update(task, completed=raw.tell())
        bar.update(task, completed=size)
    return errors, checked, ignored, repeats


def _import(env: Env, store: Store, models: Models, raw: IO[bytes], size: int, chunk: int,
            repeats: set[int]) -> dict[str, int]:
    writer = _Writer(store, chunk)
    with env.progress_bar(total=size) as bar:
        task = bar.add_task("import", total=size)
        scratch: dict[str, int] = {}
        lines = _lines(raw)
        try:
            for number, line in lines:
                # checked in the first pass (and the file has not changed since): the
                # store's save validates each object again before it writes
                item = models.parse(line, scratch, validate=False)
                writer.add(item, model_label(item.cls), number not in repeats)
                if number % 1000 == 0:
                    bar.update(task, completed=raw.tell())
            writer.flush()
        except _StoppedError as stop:  # exit 3: what was written, and every key that was not
            rest = [_key(models.parse(line, scratch, validate=False)) for _, line in lines]
            raise CliError(writer.stopped(stop, rest), CONNECTION) from None
        bar.update(task, completed=size)
    return writer.written
