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

import click
import redis
from rich.console import Console

from redmodel._errors import OutcomeUnknownError, RedmodelError, ServerError
from redmodel._indexes._writes import unique_lines
from redmodel._models._specs import spec_of
from redmodel._plan import Batch, Plan
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


class _Writer:
    """Items written in chunks: plain objects with save_many (the packed fast path),
    objects with a TTL or with values kept encrypted in one MULTI/EXEC per chunk (one per
    object on a cluster, where a chunk spans slots)."""

    def __init__(self, store: Store, chunk: int) -> None:
        self.store = store
        self.chunk = chunk
        self.plain: list[Any] = []
        self.other: list[TypedItem | SealedItem] = []
        self.pending: list[tuple[str, str]] = []  # (model label, key) of the unwritten
        self.pending_keys: set[str] = set()
        self.plain_keys: list[str] = []
        self.written: dict[str, int] = {}

    def add(self, item: TypedItem | SealedItem, label: str) -> None:
        key = _key(item)
        if key in self.pending_keys:
            # an object repeated in the file: its lines apply in order (a chunk writes its
            # plain objects first, and reads the expiries it keeps before its writes)
            self.flush()
        self.pending.append((label, key))
        self.pending_keys.add(key)
        if isinstance(item, TypedItem) and item.pttl is None:
            self.plain.append(item.obj)
            self.plain_keys.append(key)
        else:
            self.other.append(item)
        if len(self.plain) + len(self.other) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Write what was added since the last flush. An error the database answers
        (a unique value another object holds, a key of another type) may leave some
        objects written: raised as _StoppedError, which the import reports (exit 3)
        counting them and naming the rest."""
        try:
            self._flush()
        except (RedmodelError, redis.ResponseError) as e:
            raise _StoppedError(e) from None
        self._done([key for _, key in self.pending])

    def _flush(self) -> None:
        if self.plain:
            plain, keys = self.plain, self.plain_keys
            self.plain, self.plain_keys = [], []
            self.store.save_many(plain, ttl=None)
            self._done(keys)
        items, self.other = self.other, []
        rest: list[TypedItem | SealedItem] = []
        for item in items:
            if isinstance(item, TypedItem) and spec_of(item.cls).claims:
                # unique values claimed in other slots than the object: the store's own path
                self.store.save(item.obj, ttl=_seconds(item.pttl))
                self._done([_key(item)])
            else:
                rest.append(item)
        if self.store.cluster:
            for item in rest:
                self.store.transaction(_write)([item])
                self._done([_key(item)])
        elif rest:
            self.store.transaction(_write)(rest)

    def _done(self, keys: list[str]) -> None:
        """Count these keys' objects as written (each once, by its model's label)."""
        done = set(keys)
        for label, key in self.pending:
            if key in done:
                self.written[label] = self.written.get(label, 0) + 1
        self.pending = [p for p in self.pending if p[1] not in done]
        self.pending_keys -= done

    def stopped(self, error: Exception, rest: list[str]) -> str:
        """The message of an import stopped by ``error``; ``rest``: the keys of the lines
        after the chunk it stopped in (never sent)."""
        written = getattr(error, "written", None)
        if written:  # a save_many chunk stopped part-way says which it wrote
            self._done(list(written))
        keys = [key for _, key in self.pending] + rest
        shown = ", ".join(repr(k) for k in keys[:SHOWN])
        more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
        count = sum(self.written.values())
        # a lost reply, or a command that failed inside EXEC (the transaction's other
        # commands were applied: error.committed): the chunk it was in may have been
        # written in part (a save is safe to send again: importing again settles it)
        were = ("were not written, or (the chunk it stopped in) may have been"
                if isinstance(error, OutcomeUnknownError) or getattr(error, "committed", False)
                else "were not")
        return (f"import stopped while writing: {_one_line(error)}; {count:,} objects were "
                f"written, these {len(keys):,} {were}: {shown}{more}. Fix what stopped it "
                "and import again (objects that exist are saved over)")


class _StoppedError(Exception):
    """An error the database answered while an import was writing (some objects written)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


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
    replaced. Memory stays bounded; stdin is spooled to a temporary file.

    Exits 1 when a line is bad."""
    models = Models(env.models(), decrypt)
    with _spooled(source) as raw:
        size = os.fstat(raw.fileno()).st_size
        checked_as = _identity(raw)
        try:
            errors, checked, ignored = _check(env, models, raw, size)
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
            written = _import(env, store, models, raw, size, chunk)
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


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogatepass"),
                           digest_size=16).digest()


def _check(env: Env, models: Models, raw: IO[bytes], size: int
           ) -> tuple[list[tuple[int, str]], int, dict[str, int]]:
    """Every line parsed and validated, and the unique values of the whole file apart;
    (bad lines, lines read, ignored fields)."""
    errors: list[tuple[int, str]] = []
    ignored: dict[str, int] = {}
    uniques = _Uniques()
    checked = 0
    with env.progress_bar(total=size) as bar:
        task = bar.add_task("check", total=size)
        for number, line in _lines(raw):
            checked += 1
            try:
                problem = uniques.problem(models.parse(line, ignored), number)
            except BadLineError as e:
                problem = str(e)
            if problem:
                errors.append((number, problem))
            if checked % 1000 == 0:
                bar.update(task, completed=raw.tell())
        bar.update(task, completed=size)
    return errors, checked, ignored


def _import(env: Env, store: Store, models: Models, raw: IO[bytes], size: int, chunk: int
            ) -> dict[str, int]:
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
                writer.add(item, model_label(item.cls))
                if number % 1000 == 0:
                    bar.update(task, completed=raw.tell())
            writer.flush()
        except _StoppedError as stop:  # exit 3: what was written, and every key that was not
            rest = [_key(models.parse(line, scratch, validate=False)) for _, line in lines]
            raise CliError(writer.stopped(stop.error, rest), CONNECTION) from None
        bar.update(task, completed=size)
    return writer.written
