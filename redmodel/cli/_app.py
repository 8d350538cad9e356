"""The ``redmodel`` command group, and how errors become exit codes.

Each subcommand lives in its own module and is imported only when it runs; adding one
(``migrate``, say) is a module with a click command or group named ``command`` and one line
in ``COMMANDS``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click
import redis
from redis.exceptions import RedisClusterException

from redmodel import __version__
from redmodel._errors import CodecError, RedmodelError, as_text
from redmodel.cli._common import (
    CONNECTION,
    ENV_KEY,
    INTERNAL,
    INTERRUPTED,
    OK,
    PROBLEMS,
    USAGE,
    CliError,
    Env,
    text_streams,
)
from redmodel.cli._models import ModelsError

__all__ = ["COMMANDS", "cli", "main"]

BROKEN_PIPE = 141  # as a shell reports a process killed by SIGPIPE

# name -> module (under redmodel.cli) holding `command`; aliases map to the same module
COMMANDS: dict[str, str] = {
    "inspect": "_inspect",
    "verify": "_verify",
    "reindex": "_reindex",
    "rotate-keys": "_rotate",
    "export": "_export",
    "import": "_import",
    "registry": "_registry",
    "migrate": "_migrate",
}
ALIASES: dict[str, str] = {"repair": "reindex"}


class LazyGroup(click.Group):
    """Subcommands imported on first use, so ``--help`` and each command stay quick."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        module = COMMANDS.get(name)
        if module is None:
            return None
        found = importlib.import_module(f"redmodel.cli.{module}").command
        assert isinstance(found, click.Command)
        return found


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(__version__, prog_name="redmodel")
def cli() -> None:
    """Look after the data of redmodel models: inspect, verify, reindex, rotate keys,
    export and import; list the model registry; plan and apply migrations.

    Exit codes: 0 ok; 1 problems found (verify, inspect, bad import lines, migrations
    pending or not verified, a migration step's function raised); 2 usage (bad options,
    --models that do not import, missing keys); 3 the server cannot be reached or answers
    an error; 4 a bug in redmodel; 5 another migrate apply holds the lease.
    """


def _report(message: str, code: int, as_json: bool) -> int:
    """One line on stderr (and, with --json, a JSON error on stdout); the exit code."""
    print(f"redmodel: error: {message}", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps({"ok": False, "exit_code": code, "error": as_text(message)}),
              flush=True)
    return code


def _where(ctx: click.Context | None) -> str:
    env = ctx.meta.get(ENV_KEY) if ctx is not None else None
    return env.where if isinstance(env, Env) else "the server"


def run(args: Sequence[str] | None = None) -> int:
    """Run the command line ``args`` (default ``sys.argv[1:]``); returns the exit code."""
    as_json = "--json" in (sys.argv[1:] if args is None else list(args))
    text_streams()
    ctx: click.Context | None = None
    try:
        with cli.make_context("redmodel", list(sys.argv[1:] if args is None else args)) as ctx:
            result: Any = cli.invoke(ctx)
        return int(result) if isinstance(result, int) else OK
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:  # usage errors: bad option, unknown command
        code = USAGE if e.exit_code == 2 else e.exit_code
        if as_json:  # one JSON document on stdout, as every other error with --json
            return _report(" ".join(e.format_message().split()), code, as_json)
        e.show()
        return code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("redmodel: interrupted", file=sys.stderr)
        return INTERRUPTED
    except CliError as e:
        return _report(str(e), e.code, as_json)
    except ModelsError as e:
        return _report(str(e), USAGE, as_json)
    except CodecError as e:  # e.g. no Fernet keys configured: a setting to fix
        return _report(str(e), USAGE, as_json)
    except redis.AuthenticationError as e:
        return _report(_login_refused(_where(ctx), e), CONNECTION, as_json)
    except (redis.ConnectionError, redis.TimeoutError) as e:
        return _report(f"cannot reach {_where(ctx)}: {_one_line(e)}", CONNECTION, as_json)
    except RedisClusterException as e:
        return _report(f"cannot use the cluster at {_where(ctx)}: {_one_line(e)}",
                       CONNECTION, as_json)
    except redis.ResponseError as e:
        return _report(f"{_where(ctx)} answered an error: {_one_line(e)}", CONNECTION,
                       as_json)
    except RedmodelError as e:  # stored data that does not fit, found while working
        return _report(_one_line(e), PROBLEMS, as_json)
    except BrokenPipeError:  # `redmodel export | head`: the reader is gone; so are we
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except OSError as e:  # an input or output file that cannot be opened or written
        where = f": {e.filename}" if e.filename else ""
        return _report(f"{e.strerror or type(e).__name__}{where}", USAGE, as_json)
    except Exception as e:
        traceback.print_exc()
        return _report(f"internal error (a bug in redmodel): {type(e).__name__}: {e}",
                       INTERNAL, as_json)


# What redis-py reports when a server wants a password and none was given: with RESP3 (its
# default) HELLO is refused ("HELLO must be called with the client already authenticated,
# otherwise the HELLO AUTH <user> <pass> option can be used ..."), with RESP2 the first
# command (NOAUTH).
_NO_PASSWORD_GIVEN = ("HELLO must be called with the client already authenticated",
                      "NOAUTH", "Authentication required")


def _login_refused(where: str, e: BaseException) -> str:
    if any(marker in str(e) for marker in _NO_PASSWORD_GIVEN):
        return (f"{where} needs a password: give it in REDIS_PASSWORD (and REDIS_USERNAME "
                "for an ACL user) or in the URL (redis://:PASSWORD@host:port/db)")
    return f"{where} refused the login: {_one_line(e)}"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(args: Sequence[str] | None = None) -> None:
    """The console script ``redmodel`` and ``python -m redmodel``."""
    sys.exit(run(args))
