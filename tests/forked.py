"""Run a Python program as ``python tests/run_doc.py PAGE`` or ``python -m MODULE`` would,
in a process forked from a fork server that has imported redmodel once.

A new interpreter spends ~0.4 s of CPU importing redmodel and redis-py before it runs a
line of the program; the suite runs dozens (docs/*.md pages, examples). A child forked
from the fork server (multiprocessing's "forkserver": a single-threaded process started
once per test process, which imported only what is preloaded here) starts with those
modules imported and nothing else done: no model declared, no key configured, no
connection made (redmodel reads REDIS_URL and its key variables when asked, not at
import). The child then takes the given environment and working directory, sends its
stdout and stderr to files, and runs the program as ``__main__``; its exit status is the
program's (an uncaught exception: 1, as python's).
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["redmodel", "redmodel.testing", "tests.run_doc"]


def forkserver(*modules: str) -> multiprocessing.context.ForkServerContext:
    """multiprocessing's "forkserver" context, its server preloading :data:`PRELOAD` and
    ``modules``: a child starts with them imported and its own process, connections and
    all. (The first use in a process starts the server; modules named later are imported
    by each child that needs them.)"""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, *modules])
    return ctx


@dataclass
class Done:
    """What subprocess.run(..., capture_output=True, text=True) gives back."""

    returncode: int | None
    stdout: str
    stderr: str


def _child(kind: str, what: str, argv: list[str], cwd: str, env: dict[str, str],
           out: str, err: str) -> None:
    with open(out, "wb") as o, open(err, "wb") as e:
        os.dup2(o.fileno(), 1)
        os.dup2(e.fileno(), 2)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [what, *argv]
    if kind == "doc":
        from tests.run_doc import main  # noqa: PLC0415 (preloaded)

        code = main(Path(what))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # as `python -m` puts the working directory first
    try:
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
        sys.stdout.flush()
        if isinstance(code, str):
            print(code, file=sys.stderr)
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
    except BaseException:  # as python reports an uncaught exception
        sys.stdout.flush()
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run(kind: str, what: str, *, cwd: str | Path, env: dict[str, str],
        argv: list[str] | None = None, timeout: float = 300) -> Done:
    """Run a docs page (``kind="doc"``, ``what`` its path) or a module (``kind="module"``,
    ``what`` its dotted name, as ``python -m``) in a forked child; its exit status and
    output. A child still running after ``timeout`` seconds is killed (returncode None)."""
    ctx = forkserver()
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        child = ctx.Process(target=_child, args=(kind, str(what), argv or [], str(cwd),
                                                 dict(env), out, err))
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            code = None
        else:
            code = child.exitcode
        return Done(code, Path(out).read_text(errors="replace"),
                    Path(err).read_text(errors="replace"))
