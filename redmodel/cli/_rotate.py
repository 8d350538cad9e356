"""``redmodel rotate-keys``: re-encrypt stored values under the newest Fernet key."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console

from redmodel._models._specs import spec_of
from redmodel.cli._common import OK, Env, common_options, model_label
from redmodel.cli._describe import holds_keys

__all__ = ["command"]


@click.command("rotate-keys")
@common_options
def command(env: Env) -> int:
    """Re-encrypt every value written under an older Fernet key with the newest one
    (Store.rotate_keys). Keys come from REDMODEL_FERNET_KEYS (newest first), from
    --fernet-keys-env, or from what the models module configures. Objects stay readable
    throughout; values already under the newest key are left alone."""
    store = env.store()
    results: list[dict[str, Any]] = []
    with env.progress_bar() as bar:
        for cls in env.models():
            if not holds_keys(spec_of(cls)):
                results.append({"model": model_label(cls), "skipped": "nothing encrypted"})
                continue
            task = bar.add_task(f"rotate-keys {cls.__name__}", total=None)
            started = time.perf_counter()
            done = store.rotate_keys(cls)
            bar.update(task, completed=done)
            bar.stop_task(task)
            results.append({"model": model_label(cls), "rewritten": done,
                            "seconds": round(time.perf_counter() - started, 3)})

    def human(out: Console) -> None:
        for r in results:
            if "skipped" in r:
                out.print(f"{r['model']}: skipped ({r['skipped']})", markup=False)
            else:
                out.print(f"{r['model']}: {r['rewritten']} values re-encrypted in "
                          f"{r['seconds']:.1f} s", markup=False)

    env.emit({"ok": True, "models": results}, human)
    return OK
