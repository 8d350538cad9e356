"""``redmodel registry``: every prefix the model registry knows, with its owner and indexes."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from redmodel._errors import SchemaConflictError
from redmodel._indexes import _registry as registry
from redmodel._plan import iterate_sync
from redmodel.cli._common import (
    OK,
    PROBLEMS,
    Env,
    cluster_option,
    json_option,
    timeout_option,
    url_option,
)

__all__ = ["command"]


@click.command("registry")
@url_option
@cluster_option
@json_option
@timeout_option
@click.pass_context
def command(ctx: click.Context, url: str | None, cluster: bool, as_json: bool,
            timeout: float) -> int:
    """List every prefix recorded in the model registry (the <prefix>:%schema hashes, found
    by SCAN on every primary): the model that owns it, its layout and buckets, and the
    state of each index (ready, building, stale), and a bucket move under way. A record
    redmodel cannot read is listed as unreadable, naming its key (exit 1). Needs no
    --models. Reads only."""
    from redmodel.cli._common import ENV_KEY  # noqa: PLC0415

    env = Env(url, cluster, (), as_json, False, timeout, None)
    ctx.meta[ENV_KEY] = env
    ctx.call_on_close(env.close)
    store = env.store(registry=False)
    rows: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    for record in iterate_sync(registry.list_plan(store._targets()), store._execute):
        if isinstance(record, SchemaConflictError):
            unreadable.append({"prefix": record.prefix, "key": record.key,
                               "owner": record.owner, "problem": str(record)})
            continue
        if not (record.owner or record.schema or record.moving):
            continue  # only container registry marks: no model there
        schema = record.schema
        rows.append({"prefix": registry.prefix_of(record), "key": record.key,
                     "owner": record.owner, "layout": schema.get("layout"),
                     "buckets": schema.get("buckets"),
                     "fields": sorted(schema.get("fields", {})),
                     "indexes": dict(sorted(record.states.items())),
                     "moving": record.moving or None})
    rows.sort(key=lambda r: r["prefix"])
    unreadable.sort(key=lambda r: r["prefix"])

    def human(out: Console) -> None:
        if not rows and not unreadable:
            out.print("no registered prefixes", markup=False)
        for r in rows:
            states = ", ".join(f"{n.split(':', 1)[1]} {v}" if n.startswith("index:")
                               else f"{n} {v}" for n, v in r["indexes"].items())
            moving = f"; moving {r['moving']}" if r["moving"] else ""
            out.print(f"{r['prefix']}: {r['owner']} (layout {r['layout']}, buckets "
                      f"{r['buckets'] or '-'}); indexes: {states or '-'}{moving}",
                      markup=False)
        for r in unreadable:
            out.print(f"{r['prefix']}: UNREADABLE: {r['problem']}", markup=False)

    env.emit({"ok": not unreadable, "prefixes": rows, "unreadable": unreadable}, human)
    return PROBLEMS if unreadable else OK
