"""Attack 32J: memos of fix 32F (docs/failures.md "Resent maintenance calls")."""

from __future__ import annotations

import itertools
from typing import Any

import attrs

import redmodel
from redmodel._models._specs import spec_of

_COUNT = itertools.count()


def test_f1_cluster_move_of_a_prefix_with_a_brace(redis_cluster: Any,
                                                  redis_cluster_client: Any) -> None:
    """docs/migrations.md: "A run whose reply to a page was lost and resent still counts
    that page's objects: ... each object's checked delete (a cluster) keeps its reply in a
    memo (`<prefix>:%idx:memo:<token>`, in the slot of the keys it moved ...)", and
    migrate_buckets returns the number of objects it moved. A prefix holding a brace (the
    model accepts it) puts the memo of a tagless key's drop in another slot."""
    client = redis_cluster_client
    ns = f"a}}j{next(_COUNT)}"

    def movable(buckets: int | None) -> type:
        @redmodel.model(prefix=ns, buckets=buckets)
        @attrs.define
        class Thing:
            n: int = 0
            id: str = redmodel.key_field(generated=False)
        return Thing

    old, new = movable(None), movable(3)
    ids = [f"m{i}" for i in range(6)]
    moving = sum(1 for i in ids if spec_of(old).key_for(i) != spec_of(new).key_for(i))
    plain = redmodel.Store(client)
    for i, id_ in enumerate(ids):
        plain.save(old(n=i, id=id_))
    assert plain.migrate_buckets(new, from_buckets=None, count=3) == moving
    for i, id_ in enumerate(ids):
        assert plain.get(new, id_) == new(n=i, id=id_)
