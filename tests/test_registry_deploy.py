"""Rolling deploys and the model registry (issue 16, gaps): two versions of a model run at
once against the same data. The record keeps the newest schema; a version it held before
(an older one, still running) is accepted without rewriting it; each index's state tells
whether every stored object is in it, whichever version saved it."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import IndexNotReadyError, SchemaConflictError
from redmodel.containers import Queue, Set, SortedSet, WindowCounter, pop_blocking
from tests.budget import scaled
from tests.index_helpers import all_ids
from tests.test_registry import declare
from tests.test_registry import registry as registry_of

V1 = """
@redmodel.model(prefix="dep")
@attrs.define
class Item:
    name: str
    qty: int = redmodel.field(default=0, index=True)
    id: str = redmodel.key_field(generated=False)
"""

# version 2: an index on name, a field added, an upgrade= for qty
V2 = """
@redmodel.model(prefix="dep")
@attrs.define
class Item:
    name: str = redmodel.field(index=True)
    qty: int = redmodel.field(default=0, index=True, upgrade=lambda v: round(float(v)))
    note: str = ""
    id: str = redmodel.key_field(generated=False)
"""


def registry(client: Any) -> dict[str, str]:
    return registry_of(client, "dep")


def versions() -> tuple[Any, Any]:
    return declare(V1), declare(V2)


def fresh(store: Any) -> redmodel.Store:
    """Another process (another pod): its own store, nothing registered yet."""
    return redmodel.Store(store.client)


def test_an_older_version_is_accepted_without_rewriting_the_record(store: Any) -> None:
    v1, v2 = versions()
    fresh(store).save(v1("hat", 1, id="a"))
    fresh(store).save(v2("cap", 2, id="b"))                # the deploy starts
    newest = registry(store.client)
    assert newest["index:name"] == "building" and '"note"' in newest["schema"]
    fresh(store).save(v1("hat", 3, id="c"))                # a v1 pod still runs
    assert registry(store.client) == newest                # nothing rewritten or flipped
    fresh(store).save(v2("bag", 4, id="d"))
    assert registry(store.client) == newest
    with pytest.raises(IndexNotReadyError):
        fresh(store).find(v2, name="hat").ids()
    assert fresh(store).reindex(v2) == 4                   # the deploy ended
    assert registry(store.client)["index:name"] == "ready"
    assert sorted(fresh(store).find(v2, name="hat").ids()) == ["a", "c"]
    # a v1 pod starting again (a rollback, a restart) is a writer the index misses
    fresh(store).get(v1, "a")
    assert registry(store.client)["index:name"] == "building"
    assert registry(store.client)["schema"] == newest["schema"]
    with pytest.raises(IndexNotReadyError):
        fresh(store).find(v2, name="hat").count()
    # the index both versions declare stays ready for both
    assert registry(store.client)["index:qty"] == "ready"
    assert fresh(store).find(v1, qty=3).ids() == ["c"]
    assert fresh(store).find(v2, qty=3).ids() == ["c"]


def test_an_older_versions_reindex_never_marks_the_newest_index_ready(store: Any) -> None:
    v1, v2 = versions()
    fresh(store).save(v1("hat", 1, id="a"))
    fresh(store).save(v2("cap", 2, id="b"))
    fresh(store).reindex(v1)
    assert registry(store.client)["index:name"] == "building"
    fresh(store).reindex(v2)
    assert registry(store.client)["index:name"] == "ready"


def test_an_index_only_the_older_version_declares_is_stale_for_it(store: Any) -> None:
    v2, v3 = declare(V2), declare(V2.replace("default=0, index=True", "default=0"))
    fresh(store).save(v2("hat", 1, id="a"))
    fresh(store).save(v3("cap", 2, id="b"))                # v3 drops the qty index
    assert registry(store.client)["index:qty"] == "stale"
    old = fresh(store)
    old.save(v2("bag", 2, id="c"))                          # v2 still writes its entries
    with pytest.raises(IndexNotReadyError, match="stale"):  # but v3's saves do not
        old.find(v2, qty=2).ids()
    fresh(store).drop_index(v3, "qty")
    fresh(store).get(v2, "a")                               # a v2 pod writes them again
    assert registry(store.client)["index:qty"] == "stale"
    assert registry(store.client)["schema"] == schema_of(store, v3)


def schema_of(store: Any, model: Any) -> str:
    from redmodel._indexes._registry import describe, schema_text  # noqa: PLC0415
    from redmodel._models._schema import spec_of  # noqa: PLC0415
    return schema_text(describe(spec_of(model)))


def test_an_older_version_the_newest_would_misread_is_refused(store: Any) -> None:
    v1 = declare(V1.replace("    name: str\n", "    name: str\n    tag: str = ''\n"))
    v2 = declare(V1)                                       # removes tag
    v3 = declare(V1.replace("    name: str\n",              # adds it back, encoded
                            "    name: str\n    tag: str = redmodel.field(default='', "
                            "codec='json')\n"))
    for model in (v1, v2, v3):
        fresh(store).save(model("hat", id="a"))
    with pytest.raises(SchemaConflictError, match=r"older version.*field tag changed how"):
        fresh(store).get(v1, "a")
    assert registry(store.client)["schema"] == schema_of(store, v3)


def test_an_older_version_is_refused_after_a_rename_it_would_misread(store: Any) -> None:
    v1 = declare(V1)
    v2 = declare(V1.replace("qty: int = redmodel.field(default=0,",
                            "quantity: int = redmodel.field(default=0, old_names=('qty',),"))
    fresh(store).save(v1("hat", 5, id="a"))
    fresh(store).save(v2("cap", 6, id="b"))
    assert fresh(store).get(v2, "a") == v2("hat", 5, id="a")   # the newest reads both
    with pytest.raises(SchemaConflictError, match=r"field qty is stored as 'quantity'"):
        fresh(store).get(v1, "b")                           # it would read qty=0


def test_adopt_makes_an_older_version_the_newest_again(store: Any) -> None:
    v1, v2 = versions()
    fresh(store).save(v1("hat", id="a"))
    fresh(store).save(v2("cap", id="b"))
    fresh(store).adopt(v1)                                 # the rollback is final
    assert registry(store.client)["schema"] == schema_of(store, v1)
    assert "index:name" not in registry(store.client)     # it was still building
    fresh(store).save(v2("bag", id="c"))                   # v2 is an older version now
    assert registry(store.client)["schema"] == schema_of(store, v1)
    assert registry(store.client)["index:name"] == "stale"  # v1 does not maintain it
    fresh(store).adopt(v2)                                 # until it is adopted again
    assert registry(store.client)["schema"] == schema_of(store, v2)
    assert registry(store.client)["index:name"] == "building"


# ---- the property --------------------------------------------------------------------------

def assert_ready_means_complete(client: Any, states: dict[str, str],
                                truth: dict[str, tuple[str, int]]) -> None:
    """Every index the record calls ready holds exactly the stored objects (read raw)."""
    if states.get("index:%all") == "ready":
        assert sorted(m.decode() for m in all_ids(client, "dep:%idx:")) == sorted(truth)
    for field, at in (("name", 0), ("qty", 1)):
        if states.get(f"index:{field}") == "ready":
            for value in ("hat", "cap") if field == "name" else ("0", "1", "2"):
                held = client.smembers(f"dep:%idx:eq:{field}:{value}")
                assert sorted(m.decode() for m in held) == sorted(
                    i for i, v in truth.items() if str(v[at]) == value), (field, value)


NAMES = st.sampled_from(["hat", "cap"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("save"), st.sampled_from([1, 2]), st.sampled_from("abc"), NAMES,
              st.integers(0, 2)),
    st.tuples(st.just("save_long"), st.integers(0, 1), st.sampled_from("abc"), NAMES,
              st.integers(0, 2)),
    st.tuples(st.just("delete"), st.sampled_from([1, 2]), st.sampled_from("abc")),
    st.tuples(st.just("reindex"), st.sampled_from([1, 2])),
    st.tuples(st.just("query"), st.sampled_from([1, 2]), NAMES, st.integers(0, 2)),
), max_size=14)


@settings(max_examples=scaled(40, floor=10))
@given(ops=OPS)
def test_no_index_claims_ready_while_it_misses_an_object(store: Any, ops: list[Any]) -> None:
    """Interleaved registrations, saves, deletes, reindexes and queries of two versions,
    each by a process of its own (a fresh store) or by a long-running v2 process: a query
    answers exactly the stored objects or raises IndexNotReadyError; the record keeps the
    newest schema once it was registered; an index state changes only on a registration of
    another version or a reindex of one that declares the index."""
    store.client.flushdb()
    v1, v2 = versions()
    fresh(store).count(v1)                                # before the deploy: v1 runs
    long_running = [fresh(store), fresh(store)]           # v2 pods
    truth: dict[str, tuple[str, int]] = {}
    newest = None
    for op in ops:
        before = registry(store.client)
        kind = op[0]
        version = 2 if kind == "save_long" else op[1]
        if kind in ("save", "save_long"):
            _, who, oid, name, qty = op
            s = long_running[who] if kind == "save_long" else fresh(store)
            model = v2 if kind == "save_long" else (v1, v2)[who - 1]
            s.save(model(name, qty, id=oid))
            truth[oid] = (name, qty)
        elif kind == "delete":
            fresh(store).delete((v1, v2)[op[1] - 1], op[2])
            truth.pop(op[2], None)
        elif kind == "reindex":
            fresh(store).reindex((v1, v2)[op[1] - 1])
        else:
            _, who, name, qty = op
            model = (v1, v2)[who - 1]
            asked = {"qty": qty} if who == 1 or qty else {"name": name}
            key, value = next(iter(asked.items()))
            expected = sorted(i for i, (n, q) in truth.items()
                              if (n if key == "name" else q) == value)
            with contextlib.suppress(IndexNotReadyError):  # refused, or exact
                assert sorted(fresh(store).find(model, **asked).ids()) == expected
            with contextlib.suppress(IndexNotReadyError):
                assert sorted(fresh(store).find(model).ids()) == sorted(truth)
        after = registry(store.client)
        assert_ready_means_complete(store.client, after, truth)
        was_newest, newest = newest, newest or (v2 if version == 2 else None)
        if newest is not None:
            assert after["schema"] == schema_of(store, v2)
        for field, state in after.items():  # no flip-flops
            if field.startswith("index:") and field in before and before[field] != state:
                if state == "ready":
                    assert kind == "reindex", (field, before[field], op)
                else:  # a v1 process appeared while v2 is the newest
                    assert version == 1 and was_newest, (field, before[field], op)
    # the deploy ends: the v2 processes reindex, and every index is ready and complete
    fresh(store).reindex(v2)
    if newest is not None:
        states = {k: v for k, v in registry(store.client).items() if k.startswith("index:")}
        assert set(states.values()) <= {"ready"}, states
        for name in ("hat", "cap"):
            assert sorted(fresh(store).find(v2, name=name).ids()) == sorted(
                i for i, (n, _) in truth.items() if n == name)


# ---- plans run by store.run -------------------------------------------------------------

def test_a_query_plan_run_by_the_store_checks_the_registry_first(store: Any) -> None:
    v1, v2 = versions()
    fresh(store).save(v1("hat", id="a"))
    fresh(store).save(v2("cap", id="b"))                   # index:name building
    s = fresh(store)
    query = s.find(v2, name="hat")
    for plan in (query.count_plan(), query.ids_plan(), query.all_plan(),
                 query.exists_plan(), query.first_plan(), query.page_plan(10),
                 query.size_plan()):
        with pytest.raises(IndexNotReadyError):
            s.run(plan)
    with pytest.raises(IndexNotReadyError):
        s.run_many(s.find(v2, qty=0).count_plan(), query.ids_plan())
    other = declare(V1.replace("class Item", "class Other"))  # the prefix is Item's
    with pytest.raises(SchemaConflictError):
        fresh(store).run(fresh(store).find(other, qty=0).count_plan())
    s.reindex(v2)
    assert s.run(query.ids_plan()) == ["a"]


# ---- the container registry -------------------------------------------------------------

def test_a_container_key_read_as_another_member_type_is_refused(store: Any) -> None:
    jobs = Queue(store, "jobs", int)
    jobs.push(1, 2)
    record = "jobs:{jobs}:%container"
    assert store.client.hgetall(record) == {b"kind": b"Queue", b"type": b"int",
                                            b"codec": b"native"}
    for wrong in (lambda s: Queue(s, "jobs", str).pop(),
                  lambda s: Set(s, "jobs", int).members(),
                  lambda s: Queue(s, "jobs", int, codec="json").length(),
                  lambda s: Queue(s, "jobs", str).pop_blocking(0.1),
                  lambda s: pop_blocking(Queue(s, "jobs", str), timeout=0.1),
                  lambda s: s.run(Queue(s, "jobs", str).push_plan("x")),
                  lambda s: list(Queue(s, "jobs", str).consume(
                      name="w", idle_timeout=0.1, poll=0.05, signals=()))):
        with pytest.raises(SchemaConflictError, match=r"'jobs' holds a Queue of int") as e:
            wrong(fresh(store))
        assert e.value.key == record and e.value.owner == "Queue of int"
    assert store.client.lrange("jobs", 0, -1) == [b"1", b"2"]   # nothing popped or pushed
    assert jobs.clear()                                  # the key and its record
    assert Queue(fresh(store), "jobs", str).push("x") == 1


def test_a_transaction_checks_its_containers_before_it_writes(store: Any) -> None:
    Set(store, "seen", str).add("a")
    other = fresh(store)
    seen, inbox = Set(other, "seen", int), Queue(other, "inbox", str)

    @redmodel.transaction(other)
    def queued(tx: Any) -> None:
        inbox.in_tx(tx).push("x")
        seen.in_tx(tx).add(1)

    @redmodel.transaction(other)
    def planned(tx: Any) -> None:
        tx.queue(inbox.push_plan("y"))
        tx.queue(seen.add_plan(2))

    for attempt in (queued, planned):
        with pytest.raises(SchemaConflictError, match="Set of str"):
            attempt()
        assert store.client.smembers("seen") == {b"a"} and not store.client.exists("inbox")


def test_a_window_counter_records_its_window(store: Any) -> None:
    # a fixed clock 30 s into the first minute of an hour (1_000_800 = 278 h): the minute
    # and the hour start at the same second, and their keys differ only by the window's
    # length (without it they were one key: a CI run at 20:00 UTC failed on that)
    def clock() -> float:
        return 1_000_830.0

    WindowCounter(store, "hits", window=60, clock=clock).incr("a")
    with pytest.raises(SchemaConflictError, match=r"window '60' recorded, '3600' here"):
        WindowCounter(fresh(store), "hits", window=3600, clock=clock).incr("a")
    assert WindowCounter(fresh(store), "hits", window=60, clock=clock).get("a") == 1
    assert WindowCounter(store, "hits", window=60, clock=clock).forget()
    assert WindowCounter(fresh(store), "hits", window=3600, clock=clock).get("a") == 0


def test_a_container_inside_a_models_prefix_is_refused(store: Any) -> None:
    v1 = declare(V1)
    fresh(store).save(v1("hat", id="a"))
    with pytest.raises(SchemaConflictError, match=r"inside the prefix 'dep' of the model "
                                                  r"app\.models\.Item"):
        Set(fresh(store), ("dep", "b"), str).add("x")
    assert not store.client.exists("dep:b") and fresh(store).count(v1) == 1
    assert Set(fresh(store), ("depot", "b"), str).add("x") == 1  # another prefix


def test_without_the_registry_containers_record_nothing(store: Any) -> None:
    off = redmodel.Store(store.client, registry=False)
    Queue(off, "jobs", int).push(1)
    assert store.client.keys("*") == [b"jobs"]


def test_after_its_first_use_a_container_sends_only_its_commands(store: Any) -> None:
    jobs = Queue(store, "jobs", int)
    jobs.push(1)
    calls = []
    execute = store._execute
    store._execute = lambda batch: calls.append(batch.commands) or execute(batch)
    jobs.push(2)
    store.run_many(jobs.length_plan(), jobs.range_plan())
    assert calls == [[("RPUSH", "jobs", b"2")], [("LLEN", "jobs"), ("LRANGE", "jobs", 0, -1)]]


@settings(max_examples=scaled(30, floor=10))
@given(key=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3))
def test_a_container_record_is_in_its_keys_cluster_slot(key: list[str]) -> None:
    from redis.crc import key_slot  # noqa: PLC0415

    from redmodel._container_registry import record_key  # noqa: PLC0415
    from redmodel.containers import container_key  # noqa: PLC0415

    k = container_key(tuple(key))
    assert record_key(k).startswith(k)          # the key's ACL and SCAN patterns cover it
    assert key_slot(record_key(k).encode()) == key_slot(k.encode())


def test_containers_are_checked_on_a_cluster(redis_cluster_client: Any) -> None:
    store = redmodel.Store(redis_cluster_client)
    for i in range(8):  # keys in several slots
        SortedSet(store, ("board", i), str).add("a", 1.0)
    with pytest.raises(SchemaConflictError, match="SortedSet of str"):
        SortedSet(redmodel.Store(redis_cluster_client), ("board", 3), int).cardinality()


def test_plans_in_a_transaction_work_on_a_stores_first_use(store: Any) -> None:
    """A query plan in tx.query runs unchecked, as before (its registration's writes
    cannot run inside); a container plan in tx.query / tx.queue records its key outside
    the transaction (the attempt whose WATCH that trips runs again)."""
    v1 = declare(V1)
    fresh(store).save(v1("hat", 2, id="a"))
    store.client.delete("dep:%schema")
    other = fresh(store)
    inbox, seen = Queue(other, "inbox", str), Set(other, "seen", str)

    @redmodel.transaction(other)
    def work(tx: Any) -> Any:
        found = tx.query(other.find(v1, qty=2).ids_plan())
        members = tx.query(seen.members_plan())
        tx.queue(inbox.push_plan("y"))
        return found, members

    assert work() == (["a"], set())
    assert store.client.lrange("inbox", 0, -1) == [b"y"]
    assert store.client.hget("seen:{seen}:%container", "kind") == b"Set"
    assert store.client.hget("inbox:{inbox}:%container", "kind") == b"Queue"


def test_inspect_reports_an_older_version_as_such(store: Any) -> None:
    from redmodel._models._schema import spec_of  # noqa: PLC0415
    from redmodel.cli._inspect import _registry_state  # noqa: PLC0415

    v1, v2 = versions()
    fresh(store).save(v1("hat", id="a"))
    fresh(store).save(v2("cap", id="b"))
    older = _registry_state(fresh(store), spec_of(v1))
    assert older["older_version"] and older["problems"] == [] and older["this_model"]
    assert not _registry_state(fresh(store), spec_of(v2))["older_version"]
