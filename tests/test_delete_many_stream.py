"""delete_many reads a generator chunk by chunk (memory bounded by the chunk size, like
save_many and get_many), and checks a collection's ids whole before its first DEL.

Attack 31D noticed that ``delete_many(Model, generator)`` read the whole generator before
its first DEL: a generator of ten million ids was held as ten million keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.strategies import ids as id_texts


@redmodel.model(prefix="dms")
@attrs.define
class Plain:
    id: str = redmodel.key_field(generated=False)
    n: int = 0


@redmodel.model(prefix="dmsi")
@attrs.define
class Indexed:
    id: str = redmodel.key_field(generated=False)
    n: int = redmodel.field(index="eq", default=0)


BAD_IDS = (5, None, "", b"x", 1.5)


class Counted:
    """A generator of ids that records how far it was read."""

    def __init__(self, items: list[Any]) -> None:
        self.items, self.read = items, 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.read += 1
            yield item


@settings(max_examples=scaled(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("model", [Plain, Indexed])
def test_a_generator_is_deleted_chunk_by_chunk_and_a_bad_id_stops_before_its_chunk(
        one_server_store: Any, model: type, data: st.DataObject) -> None:
    store = one_server_store
    store.client.flushdb()
    names = data.draw(st.lists(id_texts, min_size=1, max_size=12, unique=True), "ids")
    store.save_many([model(id=i) for i in names])
    chunk = data.draw(st.integers(1, 5), "chunk_size")
    store.chunk_size = chunk
    bad_at = data.draw(st.none() | st.integers(0, len(names)), "bad at")
    items: list[Any] = list(names)
    if bad_at is not None:
        items.insert(bad_at, data.draw(st.sampled_from(BAD_IDS), "bad id"))
    as_generator = data.draw(st.booleans(), "a generator")
    source = Counted(items)
    if bad_at is None:
        assert store.delete_many(model, iter(source) if as_generator else items) == len(names)
        assert [store.get(model, i) for i in names] == [None] * len(names)
        return
    with pytest.raises(redmodel.ValidationError) as raised:
        store.delete_many(model, iter(source) if as_generator else list(source))
    # a list is checked whole: nothing deleted; a generator: the chunks before the bad
    # id's chunk are deleted, the error names them, and nothing after that chunk was read
    first_of_bad_chunk = (bad_at // chunk) * chunk if as_generator else 0
    deleted = names[:first_of_bad_chunk]
    assert [i for i in names if store.get(model, i) is None] == deleted
    # (a list's error is raised before anything is sent: it lists nothing)
    assert (raised.value.written or ()) == tuple(spec_of(model).key_for(i) for i in deleted)
    if as_generator:
        assert source.read <= min(len(items), first_of_bad_chunk + chunk)
    if model is Indexed:
        assert store.verify(model) == []


def test_a_generator_of_many_ids_is_not_read_ahead(one_server_store: Any) -> None:
    """When the first chunk is deleted, no more than two chunks of the generator were
    read (the one sent and, at most, the next one being made)."""
    store = one_server_store
    store.chunk_size = 100
    store.save_many([Plain(id=str(i)) for i in range(300)])
    seen_at_first_delete: list[int] = []
    source = Counted([str(i) for i in range(300)])

    def ids() -> Iterator[str]:
        for i in source:
            if not seen_at_first_delete and store.client.exists("dms:0") == 0:
                seen_at_first_delete.append(source.read)
            yield i

    assert store.delete_many(Plain, ids()) == 300
    assert seen_at_first_delete and seen_at_first_delete[0] <= 201
