"""``redmodel verify``: the store's index check, with an exit code CI can use."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import click
from rich.console import Console

from redmodel.cli._common import OK, PROBLEMS, Env, common_options, model_label

__all__ = ["command", "problems_of"]

SHOWN = 20  # problems printed per model in text output (--json lists them all)


def problems_of(report: Any) -> list[str]:
    """The problems in what ``Store.verify`` returned: a list of lines today; a report
    with ``problems`` (or iterable of problems) as the store's verify grows."""
    found = getattr(report, "problems", report)
    if isinstance(found, (str, bytes)) or not isinstance(found, Iterable):
        return [str(found)] if found else []
    return [str(p) for p in found]


@click.command("verify")
@common_options
def command(env: Env) -> int:
    """Check that every stored object and its index entries agree, both ways (Store.verify).

    Exits 1 when problems are found; `redmodel reindex` repairs them."""
    store = env.store(registry=False)
    results: list[dict[str, Any]] = []
    with env.progress_bar() as bar:
        for cls in env.models():
            task = bar.add_task(f"verify {cls.__name__}", total=None)
            started = time.perf_counter()
            problems = problems_of(store.verify(cls))
            bar.update(task, description=f"verify {cls.__name__}: {len(problems)} problems")
            bar.stop_task(task)
            results.append({"model": model_label(cls), "problems": len(problems),
                            "details": problems,
                            "seconds": round(time.perf_counter() - started, 3)})
    total = sum(r["problems"] for r in results)

    def human(out: Console) -> None:
        for r in results:
            if not r["problems"]:
                out.print(f"{r['model']}: ok", markup=False)
                continue
            out.print(f"{r['model']}: {r['problems']} problems", markup=False)
            for line in r["details"][:SHOWN]:
                out.print(f"  {line}", markup=False)
            if r["problems"] > SHOWN:
                out.print(f"  ... and {r['problems'] - SHOWN} more (--json lists all)",
                          markup=False)
        if total:
            out.print("run `redmodel reindex` to repair", markup=False)

    env.emit({"ok": total == 0, "problems": total, "models": results}, human)
    return PROBLEMS if total else OK
