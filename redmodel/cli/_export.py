"""``redmodel export``: every object of the models as JSON lines, streamed."""

from __future__ import annotations

import gzip
import io
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import click
from rich.console import Console

from redmodel._errors import RedmodelError
from redmodel._stores._sync import Store
from redmodel.cli._common import (
    OK,
    PROBLEMS,
    USAGE,
    CliError,
    Env,
    common_options,
    reads,
)
from redmodel.cli._lines import ModelLines

__all__ = ["command"]

SHOWN = 10  # objects that failed to read, listed in text output


@contextmanager
def _open_output(path: str) -> Iterator[IO[str]]:
    """stdout for ``-``; a gzip stream for ``*.gz``; else a UTF-8 text file."""
    if path == "-":
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n",
                               line_buffering=False)
        try:
            yield out
        finally:
            out.flush()
            out.detach()
        return
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="\n") as out:
        yield out


def _batches(keys: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _pttls(store: Store, keys: Sequence[str], first: Sequence[tuple[Any, ...]] = ()
           ) -> list[Any]:
    """The replies of ``first`` (if any), then PTTL of every key, in one round trip."""
    return reads(store, [*first, *(("PTTL", k) for k in keys)])


def _ttl(reply: Any) -> int | bool | None:
    """PTTL as a line carries it: ms, None (no expiry), or False (the key is gone)."""
    ms = int(reply)
    return False if ms == -2 else (None if ms == -1 else max(1, ms))


class _Failures:
    def __init__(self) -> None:
        self.count = 0
        self.first: list[dict[str, str]] = []

    def add(self, key: str, error: Exception) -> None:
        self.count += 1
        if len(self.first) < SHOWN:
            self.first.append({"key": key, "error": " ".join(str(error).split())})


def _typed_lines(store: Store, lines: ModelLines, keys: list[str], failed: _Failures
                 ) -> list[str]:
    """Objects read through the model (get_many), each with its PTTL."""
    ids = []
    readable = []
    for key in keys:
        try:
            ids.append(lines.id_of(key))
        except RedmodelError as e:  # a key whose id does not decode: skipped, listed
            failed.add(key, e)
            continue
        readable.append(key)
    keys = readable
    try:
        objs = store.get_many(lines.cls, ids)
    except RedmodelError:  # find which object does not decode, one at a time
        objs = []
        for key, id_value in zip(keys, ids, strict=True):
            try:
                objs.append(store.get(lines.cls, id_value))
            except RedmodelError as e:
                failed.add(key, e)
                objs.append(None)
    out: list[str] = []
    for key, obj, reply in zip(keys, objs, _pttls(store, keys), strict=True):
        ttl = _ttl(reply)
        if obj is not None and ttl is not False:
            try:
                out.append(lines.from_object(obj, ttl))
            except RedmodelError as e:  # a line its import would refuse: skipped, listed
                failed.add(key, e)
    return out


def _stored_lines(store: Store, lines: ModelLines, keys: list[str], failed: _Failures
                  ) -> list[str]:
    """Objects read as stored, their encrypted values kept as ciphertext."""
    read = "GET" if lines.spec.layout == "blob" else "HGETALL"
    replies = _pttls(store, keys, [(read, k) for k in keys])
    n = len(keys)
    out: list[str] = []
    for key, reply, ttl_reply in zip(keys, replies[:n], replies[n:], strict=True):
        ttl = _ttl(ttl_reply)
        if ttl is False:
            continue
        try:
            line = lines.from_stored(key, reply, ttl)
        except RedmodelError as e:
            failed.add(key, e)
            continue
        if line is not None:
            out.append(line)
    return out


@click.command("export")
@common_options
@click.option("--output", "-o", default="-", metavar="PATH", show_default=True,
              help="Where the lines go: a file (gzip-compressed when it ends in .gz) or - "
                   "for stdout.")
@click.option("--decrypt", is_flag=True, default=False,
              help="Write encrypted fields decrypted (needs the Fernet keys). Without it "
                   "they are exported as their stored ciphertext.")
@click.option("--count", "page", type=click.IntRange(1, 100_000), default=500,
              show_default=True, help="Objects per SCAN page and per read round trip.")
def command(env: Env, output: str, decrypt: bool, page: int) -> int:
    """Write every object of the models as JSON lines (one object per line: format
    version, model, id, remaining TTL, fields; see docs/cli.md), streaming: memory stays
    bounded whatever the size. Like SCAN, an object written during the export may be
    missed or appear twice (import is idempotent).

    Exits 1 when some objects could not be read (they are listed and skipped)."""
    models = [ModelLines(cls, decrypt) for cls in env.models()]
    for lines in models:
        if lines.sealed and lines.spec.layout == "flat":
            raise CliError(f"{lines.label} (flat layout) holds encrypted values: export it "
                           "with --decrypt (keys needed)", USAGE)
    store = env.store(registry=False)
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    with _open_output(output) as out, env.progress_bar() as bar:
        for lines in models:
            failed = _Failures()
            task = bar.add_task(f"export {lines.cls.__name__}", total=None)
            written = 0
            t0 = time.perf_counter()
            read = _stored_lines if lines.sealed else _typed_lines
            for keys in _batches(store.scan_keys(lines.cls, count=page), page):
                chunk = read(store, lines, keys, failed)
                out.write("".join(chunk))
                written += len(chunk)
                bar.update(task, completed=written)
            out.flush()
            results.append({"model": lines.label, "exported": written,
                            "encrypted_values": "ciphertext" if lines.sealed else
                            ("decrypted" if lines.encrypted else "none"),
                            "failed": failed.count, "failures": failed.first,
                            "seconds": round(time.perf_counter() - t0, 3)})
    total = sum(r["exported"] for r in results)
    failures = sum(r["failed"] for r in results)
    seconds = time.perf_counter() - started
    summary = {"ok": failures == 0, "output": output, "exported": total,
               "failed": failures, "seconds": round(seconds, 3), "models": results}

    def human(con: Console) -> None:
        for r in results:
            con.print(f"{r['model']}: {r['exported']:,} objects"
                      + (f", {r['failed']} could not be read" if r["failed"] else ""),
                      markup=False)
            for f in r["failures"]:
                con.print(f"  {f['key']}: {f['error']}", markup=False)
        con.print(f"exported {total:,} objects to {output} in {seconds:.1f} s",
                  markup=False)

    # the summary goes where the data does not
    env.emit(summary, human, stream=sys.stderr if output == "-" else None)
    if output != "-":  # the objects skipped are named on stderr too, as problems are
        for r in results:
            for f in r["failures"]:
                env.warn(f"{r['model']}: skipped {f['key']}: {f['error']}")
            if r["failed"] > len(r["failures"]):
                env.warn(f"{r['model']}: and {r['failed'] - len(r['failures'])} more "
                         "skipped")
    return PROBLEMS if failures else OK
