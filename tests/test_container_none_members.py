"""A Queue or Set whose member type admits None is refused when it is made: its pops
answer None for "empty", so a None member taken out of it could not be told from an empty
container (`pop()`, `pop_right()`, `pop_blocking()` after its timeout, a transaction's
`pop()`), and the member would be gone (found by an attacker, session 37)."""

from __future__ import annotations

from typing import Any, Optional

import attrs
import pytest

import redmodel
from redmodel.containers import Queue, Set, SortedSet


@attrs.frozen
class Maybe:
    value: int | None = None


@pytest.mark.parametrize("container", [Queue, Set])
@pytest.mark.parametrize("member", [int | None, Optional[str],  # noqa: UP045
                                    Optional[list[int]], Optional[Maybe]])  # noqa: UP045
def test_a_member_type_admitting_none_is_refused(redis_client: Any, container: Any,
                                                 member: Any) -> None:
    store = redmodel.Store(redis_client)
    with pytest.raises(redmodel.ModelDefinitionError) as info:
        container(store, "cnmq", member)
    assert "'cnmq'" in str(info.value) and "ambiguous" in str(info.value)
    assert redis_client.exists("cnmq") == 0


def test_a_class_holding_an_optional_value_is_the_way(redis_client: Any) -> None:
    """The refusal's advice works: a None held inside a member is told from an empty
    queue; a sorted set (whose pops answer pairs) still takes an Optional member type."""
    store = redmodel.Store(redis_client)
    queue = Queue(store, "cnmok", Maybe)
    queue.push(Maybe(None), Maybe(3))
    assert queue.pop() == Maybe(None)
    assert queue.pop() == Maybe(3)
    assert queue.pop() is None
    SortedSet(store, "cnmz", Optional[str])  # noqa: UP045
