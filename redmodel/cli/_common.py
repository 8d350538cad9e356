"""What every command shares: its options, the store and models they name, exit codes,
``--json`` output, progress bars, and one-line errors."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import IO, Any, NoReturn, TypeVar

import attrs
import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from redmodel._errors import ValidationError, as_text
from redmodel._plan import Batch, Plan
from redmodel._stores._config import redact_url
from redmodel._stores._sync import Store
from redmodel.cli._models import load_models
from redmodel.codecs import configure_fernet

__all__ = [
    "CONNECTION",
    "CliError",
    "ENV_KEY",
    "Env",
    "INTERNAL",
    "OK",
    "PROBLEMS",
    "USAGE",
    "cluster_option",
    "common_options",
    "each_model",
    "json_option",
    "pass_env",
    "progress_option",
    "reads",
    "timeout_option",
    "url_option",
]

# Exit codes (docs/cli.md): CI tells "the data has problems" from "the check could not run".
OK = 0
PROBLEMS = 1  # the command ran and found problems (verify, inspect, import's bad lines)
USAGE = 2  # bad options, a --models path that does not import, missing keys (click: 2)
CONNECTION = 3  # the server cannot be reached, refuses the login, or answers an error
INTERNAL = 4  # a bug in redmodel: the traceback is printed
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

F = TypeVar("F", bound=Callable[..., Any])
ENV_KEY = "redmodel.env"


class CliError(Exception):
    """An error the command reports in one line and exits with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def redact(url: str) -> str:
    """``url`` without its password, for messages (even a URL that does not parse)."""
    return redact_url(url)


@attrs.define
class Env:
    """The options every command takes, and what they build (lazily, once)."""

    url: str | None
    cluster: bool
    model_paths: tuple[str, ...]
    json: bool
    progress: bool | None
    timeout: float
    fernet_env: str | None
    _store: Store | None = None
    _models: list[type] | None = None
    err: Console = attrs.Factory(lambda: literal_console(stderr=True))
    out: Console = attrs.Factory(lambda: literal_console(soft_wrap=True))

    @property
    def where(self) -> str:
        """The server, as messages name it (never with its password)."""
        if self.url:
            return redact(self.url)
        return redact(os.environ.get("REDIS_URL") or "") or "the server named by REDIS_*"

    def models(self) -> list[type]:
        if self._models is None:
            self._models = load_models(self.model_paths)
            if self.fernet_env:  # after the import: the command line wins over the app
                configure_fernet(env=self.fernet_env)
        return self._models

    def store(self, *, registry: bool = True) -> Store:
        """A store on ``--url`` (else ``$REDIS_URL``), with the other ``REDIS_*`` variables
        of ``Store.from_env`` (password, TLS files, cluster) either way; checked with PING.
        ``registry=False`` for commands that only read: they never register a model (an
        operator inspecting a new model version must not change the record the running
        app checks)."""
        if self._store is None:
            if self.url:
                os.environ["REDIS_URL"] = self.url
            if self.cluster:
                os.environ["REDIS_CLUSTER"] = "1"
            try:
                store = Store.from_env(socket_connect_timeout=self.timeout,
                                       socket_timeout=self.timeout, registry=registry)
            except ValidationError as e:  # a malformed --url or REDIS_* variable
                raise CliError(str(e), USAGE) from None
            store.client.ping()
            self._store = store
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def show_progress(self) -> bool:
        return self.err.is_terminal if self.progress is None else self.progress

    @contextmanager
    def progress_bar(self, total: float | None = None) -> Iterator[Progress]:
        """A rich progress display on stderr (when it is a terminal, or ``--progress``);
        without a ``total`` it counts and shows the rate instead of a bar."""
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}", markup=False)]
        if total is None:
            columns += [TextColumn("{task.completed:,.0f}"), TimeElapsedColumn(),
                        _RateColumn()]
        else:
            columns += [BarColumn(), TaskProgressColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.err, disable=not self.show_progress(),
                      transient=False) as bar:
            yield bar

    def emit(self, result: dict[str, Any], human: Callable[[Console], None],
             stream: IO[str] | None = None) -> None:
        """The command's result: one JSON document with ``--json``, else ``human(console)``."""
        if self.json:
            text = as_text(json.dumps(result, ensure_ascii=False, default=str))
            print(text, file=stream or sys.stdout, flush=True)
        else:
            human(self.out if stream is None else literal_console(file=stream))

    def warn(self, message: str) -> None:
        self.err.print(message, markup=False)


def literal_console(**options: Any) -> Console:
    """Every console the command line prints through: what it prints comes from data
    (model names, keys, ids, values, errors) and is printed literally, so rich's markup
    (``[bold]``), emoji codes (a model ``shop:Car`` is not ``shop🚗``) and highlighting
    are off for the whole command line."""
    return Console(markup=False, emoji=False, highlight=False, **options)


def text_streams() -> None:
    """Make stdout and stderr write a lone surrogate (an undecodable key byte a text
    output names) as its ``\\udc80`` escape, never as a raw byte that is not UTF-8 nor
    an exception: the escape is the one ``--json`` documents and ``export`` use."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with suppress(ValueError, OSError):  # a stream that cannot change: left as is
                reconfigure(errors="backslashreplace")


class _RateColumn(ProgressColumn):
    """Items per second, for work whose total is unknown (a SCAN)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


pass_env = click.make_pass_decorator(Env)


# the options several commands take, each defined once (click builds a new Option per use)
url_option = click.option(  # registry and migrate (the model commands' own says more)
    "--url", metavar="URL", default=None,
    help="redis://, rediss:// or unix:// URL (default: $REDIS_URL, else the "
         "REDIS_* variables of Store.from_env).")
cluster_option = click.option(
    "--cluster", is_flag=True, default=False,
    help="The URL names a node of a Redis Cluster (also REDIS_CLUSTER=1).")
json_option = click.option(
    "--json", "as_json", is_flag=True, default=False,
    help="Print one JSON document for scripts instead of text.")
progress_option = click.option(
    "--progress/--no-progress", default=None,
    help="Progress bars on stderr (default: when stderr is a terminal).")
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
    help="Seconds to connect, and to wait for a reply.")


def _fail_usage(message: str) -> NoReturn:
    raise CliError(message, USAGE)


def common_options(fn: F) -> F:
    """The options of every command: where the server is, which models, how to report.

    They build the command's :class:`Env` (``@pass_env`` hands it over)."""

    @click.option("--url", metavar="URL", default=None,
                  help="redis://, rediss:// or unix:// URL (default: $REDIS_URL, else the "
                       "REDIS_ENDPOINT/PORT/DB/USERNAME/PASSWORD/TLS/CA_FILE variables of "
                       "Store.from_env, else redis://localhost:6379/0).")
    @cluster_option
    @click.option("--models", "-m", "model_paths", multiple=True, metavar="MODULE[:CLASS]",
                  envvar="REDMODEL_MODELS",
                  help="Where the models are: an import path (every model in it) or "
                       "module:Class. Repeatable; default $REDMODEL_MODELS "
                       "(space-separated). The current directory is importable.")
    @json_option
    @progress_option
    @timeout_option
    @click.option("--fernet-keys-env", metavar="NAME", default=None,
                  help="Read the Fernet keys (comma-separated, newest first) from this "
                       "environment variable instead of REDMODEL_FERNET_KEYS (or what the "
                       "models module configures).")
    @click.pass_context
    def wrapper(ctx: click.Context, /, url: str | None, cluster: bool,
                model_paths: tuple[str, ...], as_json: bool, progress: bool | None,
                timeout: float, fernet_keys_env: str | None, **kwargs: Any) -> Any:
        paths = tuple(p for value in model_paths for p in value.split())
        if not paths:
            _fail_usage("no models given: pass --models MODULE (or set REDMODEL_MODELS)")
        env = Env(url, cluster, paths, as_json, progress, timeout, fernet_keys_env)
        ctx.obj = env
        ctx.meta[ENV_KEY] = env  # shared by the whole context chain: run() names the server
        ctx.call_on_close(env.close)
        env.models()  # a bad --models path is a usage error, reported before connecting
        return fn(env, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    # the command's own options (declared under this decorator) come after these
    own = getattr(fn, "__click_params__", [])
    wrapper.__click_params__ = own + wrapper.__click_params__  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def reads(store: Store, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Replies to read-only commands sent in one round trip, through ``Store.run`` (the
    store's own transport: packed on one server, routed by key on a cluster)."""
    if not commands:
        return []

    def plan() -> Plan[list[Any]]:
        return (yield Batch(list(commands), keys=[c[1] for c in commands
                                                  if len(c) > 1 and isinstance(c[1], str)]))

    return store.run(plan())


def model_label(cls: type) -> str:
    """How output names a model: ``module:Class``, the form ``--models`` accepts."""
    return f"{cls.__module__}:{cls.__qualname__}"


def each_model(env: Env, verb: str, skipped: Callable[[type], str | None],
               run: Callable[[type], int], counted: str, done_text: str) -> int:
    """Run ``run(cls)`` (a count) on every model of ``--models`` that ``skipped(cls)`` does
    not give a reason to skip, with a progress bar named ``verb``, and emit per model
    ``{"model", counted, "seconds"}`` or ``{"model", "skipped"}`` (human form: ``<model>: <n>
    <done_text> in <s> s``). Shared by ``reindex`` and ``rotate-keys``."""
    results: list[dict[str, Any]] = []
    with env.progress_bar() as bar:
        for cls in env.models():
            reason = skipped(cls)
            if reason is not None:
                results.append({"model": model_label(cls), "skipped": reason})
                continue
            task = bar.add_task(f"{verb} {cls.__name__}", total=None)
            started = time.perf_counter()
            done = run(cls)
            bar.update(task, completed=done)
            bar.stop_task(task)
            results.append({"model": model_label(cls), counted: done,
                            "seconds": round(time.perf_counter() - started, 3)})

    def human(out: Console) -> None:
        for r in results:
            if "skipped" in r:
                out.print(f"{r['model']}: skipped ({r['skipped']})", markup=False)
            else:
                out.print(f"{r['model']}: {r[counted]} {done_text} in "
                          f"{r['seconds']:.1f} s", markup=False)

    env.emit({"ok": True, "models": results}, human)
    return OK
