"""A query checks the model registry in its own script call (issue 17, item 5).

A store reads the registry record on its first use of a model and keeps what it read; each
query step then compares the index states it needs (and the schema's replacement marker,
and ``moving``) with that, in the same script call that reads the indexes. So a change
made by another process (a rolling deploy turning an index back to ``building``, a
``drop_index``, a newer schema, an ``unregister``) is seen by the next query of a store
that has been running all along: it raises IndexNotReadyError (or answers exactly, once
rebuilt), never an answer without the objects the index misses. Every test here uses a
long-running store next to other processes' stores."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import IndexNotReadyError
from tests.budget import scaled
from tests.test_registry import declare
from tests.test_registry import registry as registry_of
from tests.test_registry_deploy import V1, V2, fresh, registry


def runs(query: Any) -> list[Any]:
    """Every way a query runs, each a thunk."""
    return [query.ids, query.all, query.count, query.exists, query.first,
            lambda: query.page(5), lambda: list(query)]


def test_a_long_running_store_sees_an_index_turned_back_to_building(store: Any) -> None:
    v1, v2 = declare(V1), declare(V2)
    fresh(store).save(v1("hat", 1, id="a"))
    fresh(store).save(v2("cap", 2, id="b"))               # index:name building
    fresh(store).reindex(v2)                              # ready
    pod = fresh(store)                                    # a v2 pod, running all along
    assert pod.find(v2, name="hat").ids() == ["a"]
    assert pod.find(v2, name="hat").count() == 1
    fresh(store).save(v1("hat", 3, id="c"))               # a v1 pod starts: building
    assert registry(store.client)["index:name"] == "building"
    for run in runs(pod.find(v2, name="hat")):
        with pytest.raises(IndexNotReadyError):
            run()
    assert pod.find(v2, qty=3).ids() == ["c"]             # an index both maintain: ready
    fresh(store).reindex(v2)                              # the deploy ended
    assert sorted(pod.find(v2, name="hat").ids()) == ["a", "c"]
    assert pod.find(v2, name="hat").count() == 2


def test_a_long_running_store_sees_an_index_made_stale_then_dropped(store: Any) -> None:
    v2 = declare(V2)
    v3 = declare(V2.replace("default=0, index=True", "default=0"))  # drops the qty index
    pod = fresh(store)
    pod.save(v2("hat", 1, id="a"))
    assert pod.find(v2, qty=1).count() == 1
    fresh(store).save(v3("cap", 1, id="b"))              # v3 leaves qty out: stale
    for run in runs(pod.find(v2, qty=1)):
        with pytest.raises(IndexNotReadyError, match="stale"):
            run()
    fresh(store).drop_index(v3, "qty")                    # its entries and state deleted
    with pytest.raises(IndexNotReadyError):
        pod.find(v2, qty=1).ids()
    with pytest.raises(IndexNotReadyError):
        pod.find(v2, qty=1).count()


KINDS = """
@redmodel.model(prefix="kind")
@attrs.define
class Item:
    size: int = redmodel.field(default=0, index={kind!r})
    id: str = redmodel.key_field(generated=False)
"""


def test_a_long_running_store_sees_its_schema_replaced(store: Any) -> None:
    old = declare(KINDS.format(kind=True))
    new = declare(KINDS.format(kind="range"))             # the same field, a range index
    pod = fresh(store)
    assert pod.find(old, size=3).count() == 0             # registered, nothing stored
    fresh(store).save(new(3, id="a"))                     # recorded first: ready at once
    assert registry_of(store.client, "kind")["index:size"] == "ready"
    # the old index holds nothing of what the new version saves: never an empty answer
    for run in runs(pod.find(old, size=3)):
        with pytest.raises(IndexNotReadyError):
            run()


def test_a_record_gone_is_no_state_change(store: Any) -> None:
    """A record deleted under a running store (another process's unregister, a FLUSHALL)
    records no state: the store answers from what it read, as it did before, and its query
    writes nothing; the next process to use the model records it again."""
    v2 = declare(V2)
    pod = fresh(store)
    pod.save(v2("hat", 1, id="a"))
    assert pod.find(v2, name="hat").ids() == ["a"]
    fresh(store).unregister(v2)
    assert not store.client.exists("dep:%schema")
    assert pod.find(v2, name="hat").ids() == ["a"]
    assert pod.find(v2, name="hat").count() == 1
    assert not store.client.exists("dep:%schema")
    with pytest.raises(IndexNotReadyError):             # a new process: objects stored
        fresh(store).find(v2, name="hat").ids()


def test_a_store_without_a_registry_sends_no_check(store: Any) -> None:
    v2 = declare(V2)
    bare = redmodel.Store(store.client, registry=False)
    bare.save(v2("hat", 1, id="a"))
    assert bare.find(v2, name="hat").count() == 1
    assert not store.client.exists("dep:%schema")


def test_a_planted_registry_key_of_another_type_is_named(store: Any) -> None:
    v2 = declare(V2)
    pod = fresh(store)
    pod.save(v2("hat", 1, id="a"))
    assert pod.find(v2, name="hat").count() == 1
    store.client.delete("dep:%schema")
    store.client.rpush("dep:%schema", "x")
    with pytest.raises(redis.ResponseError, match="dep:%schema"):
        pod.find(v2, name="hat").count()
    with pytest.raises(redis.ResponseError, match="dep:%schema"):
        pod.find(v2, name="hat").ids()


# ---- the property --------------------------------------------------------------------------

OPS = st.lists(st.one_of(
    st.tuples(st.just("save1"), st.sampled_from("abc"), st.sampled_from(["hat", "cap"])),
    st.tuples(st.just("save2"), st.sampled_from("abc"), st.sampled_from(["hat", "cap"])),
    st.tuples(st.just("delete"), st.sampled_from("abc")),
    st.tuples(st.just("reindex"), st.sampled_from([1, 2])),
    st.tuples(st.just("query"), st.sampled_from(["hat", "cap"]),
              st.sampled_from(["ids", "count", "all", "page"])),
), max_size=12)


@settings(max_examples=scaled(25, floor=8))
@given(ops=OPS)
def test_a_long_running_stores_query_is_exact_or_refused(store: Any, ops: list[Any]) -> None:
    """A v2 store that runs all along (registered once, at the start) queries between
    saves of v1 and v2 processes, deletes and reindexes by others: each query answers
    exactly the stored objects or raises IndexNotReadyError, and is refused only while the
    record says the index is not ready."""
    store.client.flushdb()
    v1, v2 = declare(V1), declare(V2)
    pod = fresh(store)
    pod.count(v2)
    truth: dict[str, str] = {}
    for op in ops:
        if op[0] in ("save1", "save2"):
            model = v1 if op[0] == "save1" else v2
            fresh(store).save(model(op[2], id=op[1]))
            truth[op[1]] = op[2]
        elif op[0] == "delete":
            fresh(store).delete(v2, op[1])
            truth.pop(op[1], None)
        elif op[0] == "reindex":
            fresh(store).reindex((v1, v2)[op[1] - 1])
        else:
            _, name, how = op
            query = pod.find(v2, name=name)
            expected = sorted(i for i, n in truth.items() if n == name)
            state = registry(store.client).get("index:name")
            try:
                if how == "ids":
                    got = sorted(query.ids())
                elif how == "count":
                    got = ["?"] * query.count()
                    expected = ["?"] * len(expected)
                elif how == "all":
                    got = sorted(o.id for o in query.all())
                else:
                    got = sorted(o.id for o in query.page(2).items)
                    expected = expected[:2]
            except IndexNotReadyError:
                assert state != "ready", op
                continue
            assert state == "ready", (op, state)
            assert got == expected, op


def test_a_long_running_cluster_store_sees_an_index_turned_back_to_building(
        redis_cluster_client: Any) -> None:
    """On a cluster the record lives in another slot than the index keys: the same check
    is one HMGET of the record before each query."""
    buckets = ', buckets=4)\n@attrs.define\nclass Item:'
    v1 = declare(V1.replace(')\n@attrs.define\nclass Item:', buckets))
    v2 = declare(V2.replace(')\n@attrs.define\nclass Item:', buckets))

    def other() -> redmodel.Store:
        return redmodel.Store(redis_cluster_client)

    other().save(v1("cap", 1, id="a"))                     # before the deploy
    other().save(v2("cap", 2, id="b"))                     # index:name building
    other().reindex(v2)                                    # ready
    pod = other()                                          # a v2 pod, running all along
    assert sorted(pod.find(v2, name="cap").ids()) == ["a", "b"]
    other().save(v1("cap", 3, id="c"))                     # a v1 pod starts: building
    for run in runs(pod.find(v2, name="cap")):
        with pytest.raises(IndexNotReadyError):
            run()
    other().reindex(v2)
    assert sorted(pod.find(v2, name="cap").ids()) == ["a", "b", "c"]
    assert pod.find(v2, name="cap").count() == 3
