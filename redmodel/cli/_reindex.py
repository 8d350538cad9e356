"""``redmodel reindex`` (alias ``repair``): rebuild index entries from the stored objects."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console

from redmodel._models._specs import spec_of
from redmodel.cli._common import OK, Env, common_options, model_label

__all__ = ["command"]


@click.command("reindex")
@common_options
def command(env: Env) -> int:
    """Rebuild the index entries of every stored object of the indexed models
    (Store.reindex); objects are not rewritten. Safe to stop and run again.
    Alias: repair."""
    store = env.store()
    results: list[dict[str, Any]] = []
    with env.progress_bar() as bar:
        for cls in env.models():
            if spec_of(cls).indexes is None:
                results.append({"model": model_label(cls), "skipped": "no indexes"})
                continue
            task = bar.add_task(f"reindex {cls.__name__}", total=None)
            started = time.perf_counter()
            done = store.reindex(cls, progress=False)
            bar.update(task, completed=done)
            bar.stop_task(task)
            results.append({"model": model_label(cls), "reindexed": done,
                            "seconds": round(time.perf_counter() - started, 3)})

    def human(out: Console) -> None:
        for r in results:
            if "skipped" in r:
                out.print(f"{r['model']}: skipped ({r['skipped']})", markup=False)
            else:
                out.print(f"{r['model']}: {r['reindexed']} objects reindexed in "
                          f"{r['seconds']:.1f} s", markup=False)

    env.emit({"ok": True, "models": results}, human)
    return OK
