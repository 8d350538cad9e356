"""Attack 32L: conditional resends' type probes (e54c93d) and memo slots (aa886b6)."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import attrs
import pytest

import redmodel

_COUNT = itertools.count()


@pytest.mark.parametrize("brace", ["a{}b", "{}"])
def test_f1_bucketed_indexed_model_with_empty_braces_in_prefix_on_a_cluster(
        redis_cluster: Any, redis_cluster_client: Any, brace: str) -> None:
    """docs/queries.md "Redis Cluster: buckets": "`@redmodel.model(buckets=16)` spreads
    objects over 16 hash-tagged buckets: `hat:{7}:56854717`, with the bucket's index keys
    beside them (`hat:{7}:%idx:eq:color:black`), so every write is one slot and stays
    atomic." A prefix holding an empty `{}` (accepted at declaration, like `a{b`, `a}b`,
    `{x}`, which work) makes Redis hash each whole key, not the bucket's `{N}`: a plain
    `save` raises CrossSlotError."""
    ns = f"{brace}l{next(_COUNT)}"
    # decided (the lead, stop 32): such a prefix is refused at declaration, naming it,
    # rather than accepted and failing at the first save on a cluster
    with pytest.raises(redmodel.ModelDefinitionError, match="empty"):

        @redmodel.model(prefix=ns, buckets=3)
        @attrs.define
        class Thing:
            id: str = redmodel.key_field(generated=False)
            n: int = redmodel.field(default=0, index=True)

    @redmodel.model(prefix=ns.replace("{}", ""), buckets=3)
    @attrs.define
    class Fine:
        id: str = redmodel.key_field(generated=False)
        n: int = redmodel.field(default=0, index=True)

    store = redmodel.Store(redis_cluster_client)
    try:
        for i in range(4):
            store.save(Fine(id=f"m{i}", n=i % 2))
        assert sorted(t.id for t in store.find(Fine, n=1)) == ["m1", "m3"]
        assert store.verify(Fine) == []
    finally:
        for i in range(4):
            with contextlib.suppress(redmodel.RedmodelError):
                store.delete(Fine, f"m{i}")
