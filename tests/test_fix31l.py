"""Ints too long for text (more digits than ``sys.get_int_max_str_digits()``, Python
3.11+) as container key parts, windows, or inside a tuple of parts beside another bad
part: a ValidationError, never the builtin ValueError ``str()``/``repr()`` of such an int
raises (attack 31L)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.containers import Queue, Set, SortedSet, WindowCounter, container_key
from tests.budget import scaled

LIMIT = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
huge = st.integers(LIMIT + 1, LIMIT + 50).map(lambda d: 10**d) | st.integers(
    LIMIT + 1, LIMIT + 50).map(lambda d: -(10**d))
fine = st.sampled_from(["a", 7, "x:y"])
bad = st.sampled_from([1.5, None, b"x", [1]])
parts = st.lists(huge | fine | bad, min_size=1, max_size=4).filter(
    lambda ps: any(not isinstance(p, (str, int)) or isinstance(p, bool) or (
        isinstance(p, int) and abs(p) > 10**LIMIT) for p in ps))


@pytest.mark.skipif(not LIMIT, reason="this interpreter converts ints of any size to text")
@settings(max_examples=scaled(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=huge | parts.map(tuple), window=st.none() | huge)
def test_a_key_or_window_that_cannot_be_text_is_a_validation_error(
        store: redmodel.Store, key: Any, window: Any) -> None:
    with pytest.raises(redmodel.ValidationError):
        container_key(key)
    for make in (lambda: Queue(store, key, int), lambda: Set(store, key, int),
                 lambda: SortedSet(store, key, str), lambda: WindowCounter(store, key)):
        with pytest.raises(redmodel.ValidationError, match="container key part"):
            make()
    if window is not None:
        with pytest.raises(redmodel.ValidationError):
            WindowCounter(store, "visits", window=window)
    assert store.client.dbsize() == 0  # nothing written
