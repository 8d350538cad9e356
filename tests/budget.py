"""Hypothesis example counts, scaled from the active profile (tests/conftest.py:
HYPOTHESIS_PROFILE=default has max_examples 60, "thorough" 600), so a test never hard-codes its own
count and "thorough" draws ten times as many everywhere."""

from __future__ import annotations

from hypothesis import settings


def scaled(per_100: int, *, floor: int = 1) -> int:
    """``per_100`` examples for every 100 the active profile's ``max_examples`` asks for
    (at least ``floor``): ``scaled(300)`` is 180 under "default", 1800 under "thorough"."""
    return max(floor, settings.default.max_examples * per_100 // 100)
