"""Plans: the sans-I/O core.

Every store operation is a generator that yields :class:`Batch` es of commands and receives
their replies, then returns its result. Only the stores (sync, asyncio, transaction) do I/O,
so the logic exists once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import attrs

__all__ = ["Batch", "Command", "LuaScript", "Plan", "run_sync"]

R = TypeVar("R")
Command = tuple[Any, ...]


@attrs.frozen(slots=True)
class Batch:
    """Commands sent in one round trip; ``atomic`` wraps them in MULTI/EXEC.

    ``write`` marks batches that change data (a transaction queues those, and sends the
    others at once). ``keys`` are the keys the batch reads, for WATCH.
    """

    commands: Sequence[Command]
    atomic: bool = False
    write: bool = False
    keys: Sequence[str] = ()


Plan = Generator[Batch, list[Any], R]


def run_sync(plan: Plan[R], execute: Any) -> R:
    """Drive ``plan`` with ``execute(batch) -> replies``."""
    try:
        batch = next(plan)
        while True:
            batch = plan.send(execute(batch))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


@attrs.frozen
class LuaScript:
    """A Lua script sent as EVALSHA, and as EVAL where the server does not know it yet."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    def call(self, keys: Sequence[str], args: Sequence[Any]) -> Command:
        """An EVALSHA command; stores fall back to EVAL on NOSCRIPT."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


SCRIPTS_BY_SHA: dict[str, LuaScript] = {}


def script(source: str) -> LuaScript:
    """Declare a script once at import; stores can map its sha back to its source."""
    s = LuaScript(source)
    SCRIPTS_BY_SHA[s.sha] = s
    return s


def as_eval(command: Command) -> Command:
    """EVALSHA of a known script -> the same call as EVAL; anything else unchanged."""
    if command and command[0] == "EVALSHA":
        found = SCRIPTS_BY_SHA.get(command[1])
        if found is not None:
            return ("EVAL", found.source, *command[2:])
    return command
