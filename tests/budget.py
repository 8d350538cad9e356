"""Hypothesis example counts, scaled from the active profile (tests/conftest.py:
HYPOTHESIS_PROFILE=default has max_examples 10, "ci" 60, "thorough" 600), so a test never
hard-codes its own count and "thorough" draws sixty times as many everywhere."""

from __future__ import annotations

import os

from hypothesis import settings

#: ``make test-long`` sets ``REDMODEL_TEST_LONG=1``: a test with a long variant (``sized``)
#: runs it there; ``make test`` runs the fast one, which checks the same property.
LONG = os.environ.get("REDMODEL_TEST_LONG", "") == "1"


def scaled(per_100: int, *, floor: int = 1) -> int:
    """``per_100`` examples for every 100 the active profile's ``max_examples`` asks for
    (at least ``floor``): ``scaled(300)`` is 30 under "default", 180 under "ci", 1800
    under "thorough"."""
    return max(floor, settings.default.max_examples * per_100 // 100)


def sized(fast: int, long: int) -> int:
    """``long`` under ``make test-long`` (``REDMODEL_TEST_LONG=1``), else ``fast``: a size
    for which the property holds as well, small enough for ``make test``'s time budget."""
    return long if LONG else fast
