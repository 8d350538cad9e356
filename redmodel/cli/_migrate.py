"""``redmodel migrate plan|apply|status``: a :class:`redmodel.migrations.Migrations` set,
named by ``--migrations MODULE[:ATTR]``, against the server."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from redmodel.cli._common import (
    ENV_KEY,
    OK,
    PROBLEMS,
    USAGE,
    CliError,
    Env,
    cluster_option,
    json_option,
    progress_option,
    timeout_option,
    url_option,
)
from redmodel.codecs import configure_fernet
from redmodel.migrations import (
    MigrationLockedError,
    MigrationProgress,
    Migrations,
    MigrationStatus,
    MigrationStepError,
    StepState,
)

__all__ = ["LOCKED", "command"]

LOCKED = 5  # apply: another apply holds the migrations lease

F = TypeVar("F", bound=Callable[..., Any])


def load_migrations(path: str) -> Migrations:
    """The Migrations set at ``MODULE:ATTR``, or the only one in ``MODULE``."""
    module_name, _, attr = path.partition(":")
    if not module_name:
        raise CliError(f"--migrations {path}: expected MODULE or MODULE:ATTR", USAGE)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # anything the module raises while it is imported
        raise CliError(f"--migrations {path}: cannot import {module_name!r}: "
                       f"{type(e).__name__}: {e}", USAGE) from None
    if attr:
        found: Any = module
        for part in attr.split("."):
            found = getattr(found, part, None)
        if not isinstance(found, Migrations):
            raise CliError(f"--migrations {path}: {attr!r} is not a redmodel.migrations."
                           "Migrations", USAGE)
        return found
    sets = {n: v for n, v in vars(module).items() if isinstance(v, Migrations)}
    if len(sets) != 1:
        what = "no Migrations set" if not sets else f"several Migrations sets ({', '.join(sets)})"
        raise CliError(f"--migrations {path}: {module_name} has {what}; name one as "
                       f"{module_name}:ATTR", USAGE)
    return next(iter(sets.values()))


def migrate_options(fn: F) -> F:
    """The options of each ``migrate`` command: the common ones of the other commands
    (without --models) and ``--migrations``."""

    @click.option("--migrations", "migrations_path", required=True,
                  metavar="MODULE[:ATTR]", envvar="REDMODEL_MIGRATIONS",
                  help="The Migrations set: MODULE:ATTR, or MODULE holding exactly one "
                       "(default $REDMODEL_MIGRATIONS). The current directory is importable.")
    @url_option
    @cluster_option
    @json_option
    @progress_option
    @timeout_option
    @click.option("--fernet-keys-env", metavar="NAME", default=None,
                  help="Read the Fernet keys (comma-separated, newest first) from this "
                       "environment variable instead of REDMODEL_FERNET_KEYS.")
    @click.pass_context
    def wrapper(ctx: click.Context, /, migrations_path: str, url: str | None, cluster: bool,
                as_json: bool, progress: bool | None, timeout: float,
                fernet_keys_env: str | None, **kwargs: Any) -> Any:
        env = Env(url, cluster, (), as_json, progress, timeout, fernet_keys_env)
        ctx.meta[ENV_KEY] = env
        ctx.call_on_close(env.close)
        migrations = load_migrations(migrations_path)  # a usage error before connecting
        if fernet_keys_env:
            configure_fernet(env=fernet_keys_env)
        return fn(env, migrations, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    own = getattr(fn, "__click_params__", [])
    wrapper.__click_params__ = own + wrapper.__click_params__  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@click.group("migrate")
def command() -> None:
    """Versioned migrations of stored objects (redmodel.migrations): plan what the
    pending steps change, apply them online (an offline rebucket step needs its model's
    writers stopped), see which are applied. Exit codes: status 1 when steps are pending;
    plan 1 when a step's model would be refused, a rebucket step does not match the
    registry's bucket count, or steps are out of order; apply 1 when a step fails its
    check, an object does not decode or a step's function raises, 5 when another apply
    holds the lease; any of them 1 when the set's records hold a field this version cannot
    read."""


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _line(out: Console, s: StepState) -> None:
    out.print(f"  {s.state:<8} {s.id}  {s.description}", markup=False)
    if s.record is not None:
        r = s.record
        out.print(f"           applied {_when(r.applied_at)}: {r.visited} visited, "
                  f"{r.changed} changed, {r.seconds:.1f} s, verified", markup=False)
    if s.cursor is not None:
        out.print(f"           stopped after {s.cursor.visited} objects ({s.cursor.changed} "
                  "changed): apply continues from there", markup=False)
    if s.offline and s.state != "applied":
        out.print("           OFFLINE: stop every process that uses the model before apply "
                  "(the registry refuses its stores while it runs)", markup=False)
    if s.objects is not None:
        what = "to move" if s.offline else "to visit"
        out.print(f"           {s.objects} objects {what}", markup=False)
    for name, value in s.changes.items():
        if value not in ({}, [], None):
            out.print(f"           {name}: {value}", markup=False)
    for problem in s.problems:
        why = "refused" if s.offline else "refused by the registry"
        out.print(f"           {why}: {problem}", markup=False)


def _summary(out: Console, status: MigrationStatus) -> None:
    pending = len(status.pending)
    out.print(f"migrations {status.name} ({status.key}): {len(status.applied)} applied, "
              f"{pending} pending" + (f"; lease held by {status.lease}" if status.lease
                                      else ""), markup=False)
    for s in status.steps:
        _line(out, s)
    for r in status.unknown:
        out.print(f"  unknown  {r.id}  applied {_when(r.applied_at)}, no longer in the set",
                  markup=False)
    if status.out_of_order:
        out.print(f"  out of order: {', '.join(status.out_of_order)} come before applied "
                  "steps", markup=False)


@command.command("status")
@migrate_options
def status_command(env: Env, migrations: Migrations) -> int:
    """Each step: applied (when, objects visited and changed), partial (where it stopped)
    or pending; records of steps no longer in the set. Exit 1 when a step is pending."""
    status = migrations.status(env.store(registry=False))
    ok = not status.pending
    env.emit({"ok": ok, **status.to_json()}, lambda out: _summary(out, status))
    return OK if ok else PROBLEMS


@command.command("plan")
@click.option("--count", type=click.IntRange(min=1), default=500, show_default=True,
              help="SCAN page size while counting.")
@migrate_options
def plan_command(env: Env, migrations: Migrations, count: int) -> int:
    """What each pending step will change and how many objects it visits (a rebucket
    step: moves; marked OFFLINE), for review. Reads only. Exit 1 when a step's model would
    be refused by the model registry, a rebucket step's from_buckets is not the count the
    registry records, or steps are out of order."""
    plan = migrations.plan(env.store(registry=False), count=count)
    ok = not plan.out_of_order and not any(s.problems for s in plan.steps)
    env.emit({"ok": ok, **plan.to_json()}, lambda out: _summary(out, plan))
    return OK if ok else PROBLEMS


@command.command("apply")
@click.option("--count", type=click.IntRange(min=1), default=500, show_default=True,
              help="Objects per batch (one transaction per batch and slot).")
@click.option("--out-of-order", is_flag=True, default=False,
              help="Also run pending steps that come before applied ones.")
@click.option("--traceback", "show_traceback", is_flag=True, default=False,
              help="When a step's function raises, also print its traceback.")
@migrate_options
def apply_command(env: Env, migrations: Migrations, count: int, out_of_order: bool,
                  show_traceback: bool) -> int:
    """Run the pending steps in order, online, in batches; each is verified and recorded.
    Safe to stop (Ctrl-C) and run again: it continues where it stopped. Exit 1 when a step
    fails its check, an object does not decode or a step's function raises (the step, the
    object's key and the exception are named; --traceback prints its traceback); 5 when
    another apply holds the lease."""
    store = env.store()
    tasks: dict[str, Any] = {}
    with env.progress_bar(total=1) as bar:
        def tick(p: MigrationProgress) -> None:
            label = f"{p.step} {p.phase}"
            task = tasks.get(p.step)
            if task is None:
                task = tasks[p.step] = bar.add_task(label, total=p.total)
            bar.update(task, description=label, completed=p.done, total=p.total)

        try:
            records = migrations.apply(store, count=count, progress=tick,
                                       out_of_order=out_of_order)
        except MigrationLockedError as e:
            raise CliError(str(e), LOCKED) from None
        except MigrationStepError as e:  # the application's function: its error, not ours
            if show_traceback and e.__cause__ is not None:
                traceback.print_exception(e.__cause__, file=sys.stderr)
            raise CliError(str(e), PROBLEMS) from None
    status = migrations.status(store)

    def human(out: Console) -> None:
        if not records:
            out.print("nothing to apply", markup=False)
        for r in records:
            out.print(f"{r.id}: {r.visited} visited, {r.changed} changed in "
                      f"{r.seconds:.1f} s, verified", markup=False)
        _summary(out, status)

    env.emit({"ok": True, "applied": [r.to_json() for r in records],
              **status.to_json()}, human)
    return OK
