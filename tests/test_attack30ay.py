"""Attack 30AY: tracked (partial) saves after fix 30T.

Each test holds the code to a documented promise and fails on main (s30, 2b2f9ba):

- F1: a ``set``/``frozenset`` field (codec-encoded as a list in iteration order) that the
  writer did not change is sent by a tracked partial save whenever the stored order is not
  the order this process's decoded set iterates in (another process's hash seed, or a set
  with another history), so another writer's change of that field is overwritten.
- F2: a tracked hash model with a TTL (the model's ``ttl=``) never saves partially: every
  save is whole, so of two writers of different fields only the last keeps its change.
- F3: a ``float`` field stored as HINCRBYFLOAT writes it (``1`` for 1.0) counts as changed
  by every tracked partial save (its bytes are not ``repr``'s), so another writer's
  increment of it is overwritten.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

import redmodel
from redmodel.codecs import codec


@redmodel.model(prefix="atk30ay_s", track_changes=True)
@attrs.define
class Tagged:
    x: int = 0
    tags: set[str] = attrs.Factory(set)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk30ay_t", track_changes=True, ttl=60)
@attrs.define
class Expiring:
    x: int = 0
    y: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk30ay_f", track_changes=True)
@attrs.define
class Scored:
    x: int = 0
    score: float = 0.0
    id: str = redmodel.key_field(generated=False)


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6)
_counter = iter(range(10**9))


@given(members=st.sets(_text, min_size=2, max_size=8))
def test_f1_a_set_field_not_changed_is_not_sent(store: redmodel.Store, members: set[str]
                                                 ) -> None:
    """docs/queries.md, "Only what changed": "`save` of an object loaded by `get` sends only
    the fields that changed since (HSET of those, HDEL of those that became `None`), and
    ... two writers who change different fields of one object both keep their change."
    track_changes (redmodel.model docstring): "sends only the fields that changed (two
    writers of different fields both keep theirs)".

    The set is stored in an order another process (another PYTHONHASHSEED) iterates it
    in: the reverse of the order a set of these members iterates in here."""
    oid = str(next(_counter))
    key = store.save(Tagged(id=oid))
    here = list(set(members))  # the order the decoded set iterates in, in this process
    store.client.hset(key, "tags", codec("json").encode(here[::-1]))  # another writer's
    loaded = store.get(Tagged, oid)
    assert loaded is not None and loaded.tags == members
    assert store.update(Tagged, oid, tags={"other writer"})  # another writer: tags only
    loaded.x = 1  # this writer: x only
    store.save(loaded)
    got = store.get(Tagged, oid)
    assert got is not None and got.x == 1
    assert got.tags == {"other writer"}, "the other writer's tags were overwritten"


def test_f2_a_model_with_a_ttl_keeps_both_writers_fields(store: redmodel.Store) -> None:
    """redmodel.model docstring, track_changes: "remember what ``get`` loaded (and from
    which key, through which store's client), so ``save`` to that key through that client
    sends only the fields that changed (two writers of different fields both keep
    theirs); a save anywhere else is whole." Store.save names the exceptions (force=True,
    another key, another client): a TTL is not one of them."""
    store.save(Expiring(id="1"))
    a = store.get(Expiring, "1")
    b = store.get(Expiring, "1")
    assert a is not None and b is not None
    a.x = 1
    store.save(a)
    b.y = 2
    store.save(b)
    got = store.get(Expiring, "1")
    assert got is not None
    assert (got.x, got.y) == (1, 2), "the first writer's x was overwritten"
    assert store.client.pttl("atk30ay_t:1") > 0


@given(first=st.integers(1, 10**6), second=st.integers(1, 10**6))
def test_f3_a_float_incremented_by_another_writer_is_kept(
        store: redmodel.Store, redis_client: Any, first: int, second: int) -> None:
    """docs/migrations.md, "Strict decoding": "a `float` field reads any decimal text, as
    HINCRBYFLOAT writes it". docs/queries.md, "Only what changed": "sends only the fields
    that changed since ... so two writers who change different fields of one object both
    keep their change." The float field was not changed by this writer."""
    oid = str(next(_counter))
    key = store.save(Scored(id=oid))
    redis_client.hincrbyfloat(key, "score", first)  # stored as "<first>", not "<first>.0"
    loaded = store.get(Scored, oid)
    assert loaded is not None and loaded.score == float(first)
    redis_client.hincrbyfloat(key, "score", second)  # another writer: score only
    loaded.x = 1  # this writer: x only
    store.save(loaded)
    got = store.get(Scored, oid)
    assert got is not None and got.x == 1
    assert got.score == float(first + second), "the other writer's increment was undone"
