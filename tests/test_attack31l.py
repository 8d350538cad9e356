"""Attack 31L (fixes 31J registry first use / rotation by field, 31H argument checks):
one failing test per finding. Each test holds the code to a sentence of the docs (quoted
in its docstring); notes in /work/notes/s31/ATK-L-FINDINGS.md."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import redis

import redmodel
from redmodel.containers import Queue, Set, SortedSet, WindowCounter, container_key

HUGE = 10**5000  # an int past Python's int->str digit limit (4300): str()/repr() raise


def _only_redmodel_errors(call: Callable[[], Any]) -> None:
    with contextlib.suppress(redmodel.RedmodelError, redis.RedisError):
        call()


# --- F1: WindowCounter(window=<huge int>) raises a builtin ValueError ----------------------


def test_f1_a_huge_window_raises_validation_error_not_value_error(store: Any) -> None:
    """docs/failures.md: "Nor does a builtin `OverflowError`/`ValueError` for a bad
    argument: every numeric argument of a public method (a timeout, a ttl, a score, a
    count, an index, a window, ...) is checked before anything is sent, and a NaN, an
    infinity, a wrong type or a value out of range raises `ValidationError` naming the
    argument and the key. The ranges: ttls and windows up to 1e11 s".

    The range check refuses it, but its message formats the window with `{window!r}`:
    repr of an int past 4300 digits raises ValueError (31H fixed the same for the clock's
    value only)."""
    with pytest.raises(redmodel.ValidationError):
        WindowCounter(store, "atk31l_w", window=HUGE)


# --- F2: a huge int container key part raises a builtin ValueError ------------------------


@pytest.mark.parametrize("use", [
    "container_key", "container_key_tuple", "Queue", "Queue_tuple", "Set", "SortedSet",
    "WindowCounter_prefix", "WindowCounter_subject",
])
def test_f2_a_huge_int_key_part_raises_a_redmodel_error(store: Any, use: str) -> None:
    """containers.container_key docstring: "``42`` -> ``42`` ... Raises
    :class:`ValidationError` for anything else"; docs/failures.md: "every exception is a
    redmodel error or a redis-py error. Nor does a builtin `OverflowError`/`ValueError`
    for a bad argument".

    An int key part is spelled with str(); past 4300 digits that raises ValueError
    (model ids of the same size are handled: store.get(Model, 10**5000) raises a redmodel
    error). The same for a WindowCounter's subject (a key part of its keys)."""
    calls: dict[str, Callable[[], Any]] = {
        "container_key": lambda: container_key(HUGE),
        "container_key_tuple": lambda: container_key(("atk31l", HUGE)),
        "Queue": lambda: Queue(store, HUGE, int).length(),
        "Queue_tuple": lambda: Queue(store, ("atk31l_q", HUGE), int).push(1),
        "Set": lambda: Set(store, ("atk31l_s", HUGE), int).add(1),
        "SortedSet": lambda: SortedSet(store, ("atk31l_z", HUGE), str).add("m", 1.0),
        "WindowCounter_prefix": lambda: WindowCounter(store, HUGE).get("u"),
        "WindowCounter_subject": lambda: WindowCounter(store, "atk31l_w2").incr(HUGE),
    }
    _only_redmodel_errors(calls[use])
