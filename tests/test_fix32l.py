"""Fix 32L: a prefix whose braces would keep a bucket's (or an id's) hash tag from being
read is refused at declaration; any other prefix keeps every key of an object and of its
bucket's index in one cluster slot (attack 32L: `a{}b` made each whole key hashed)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

import redmodel
from redmodel._models._schema import spec_of
from tests.budget import scaled

PREFIX = st.text(alphabet="ab{}:", min_size=1, max_size=8)
IDS = st.text(alphabet="xyz0{}:", min_size=1, max_size=6)


def _slot(key: str) -> int:
    return key_slot(key.encode("utf-8", "surrogateescape"))


@settings(max_examples=scaled(300), deadline=None)
@given(prefix=PREFIX, buckets=st.integers(1, 64), ids=st.lists(IDS, min_size=1, max_size=4))
def test_a_bucketed_prefix_is_refused_or_keeps_each_bucket_in_one_slot(
        prefix: str, buckets: int, ids: list[str]) -> None:
    """Property: a bucketed indexed model's prefix is refused at declaration (naming the
    empty braces) exactly when Redis Cluster would not read the bucket's hash tag; accepted,
    every object's key is in the slot of its bucket's index root."""
    brace = prefix.find("{")
    empty = brace >= 0 and prefix[brace + 1:brace + 2] == "}"
    try:

        @redmodel.model(prefix=prefix, buckets=buckets)
        @attrs.define
        class Thing:
            id: str = redmodel.key_field(generated=False)
            n: int = redmodel.field(default=0, index=True)

    except redmodel.ModelDefinitionError as e:
        if "empty '{}'" not in str(e):
            return  # refused for another reason (a prefix holding the delimiter)
        assert empty, str(e)
        assert repr(prefix) in str(e)
        return
    assert not empty, f"{prefix!r} accepted"
    spec = spec_of(Thing)
    for i in ids:
        key = spec.key_for(i)
        tags = {str(b) for b in range(buckets) if key.startswith(spec.object_prefix(str(b)))}
        assert len(tags) == 1, (key, tags)
        root = spec.index_root(tags.pop())
        assert _slot(key) == _slot(root + "eq:n:0") == _slot(root + "ids"), (key, root)


@pytest.mark.parametrize("prefix", ["a{}b", "{}", "{}x{y}"])
def test_hash_tag_models_refuse_an_empty_brace_prefix_too(prefix: str) -> None:
    with pytest.raises(redmodel.ModelDefinitionError, match="id's hash tag"):

        @redmodel.model(prefix=prefix, hash_tag=True)
        @attrs.define
        class Thing:
            id: str = redmodel.key_field(generated=False)
