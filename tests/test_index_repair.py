"""``reindex`` repairs and ``verify`` reports, both ways (issue 13, item 4): objects deleted
behind redmodel's back, stale or wrong entries, an index in the format of an older version,
a restore from an older snapshot; reindex resumes where a stopped run was and shows its
progress. Through every shell: sync, asyncio, cluster (buckets), asyncio cluster."""

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest

import redmodel
from redmodel._indexes import _repair
from redmodel._models._specs import spec_of
from redmodel._plan import iterate_sync
from tests.index_helpers import dump


def declare(buckets: int | None) -> type:
    @redmodel.model(prefix="rhat", buckets=buckets)
    @attrs.define
    class Hat:
        color: str = redmodel.field(index=True)
        price: float = redmodel.field(index="range", default=0.0)
        sku: str | None = redmodel.field(unique=True, default=None)
        id: str = redmodel.key_field(generated=False)

    return Hat


HATS = {False: declare(None), True: declare(4)}


@pytest.fixture
def Hat(any_store: Any) -> type:
    return HATS[any_store.cluster]


def key(Hat: type, id: str) -> str:
    return spec_of(Hat).key_for(id)


def root(Hat: type, id: str) -> str:
    spec = spec_of(Hat)
    return spec.index_root(spec.tag_of(id))


def test_a_raw_del_is_reported_and_repaired(any_store: Any, Hat: type) -> None:
    store = any_store
    store.save_many([Hat("black", 1.0, sku="A", id="1"), Hat("red", 2.0, sku="B", id="2")])
    store.client.delete(key(Hat, "1"))
    assert store.find(Hat).count() == 2, "the index still counts it"
    problems = store.verify(Hat)
    assert problems == [f"{key(Hat, '1')}: indexed, but the object does not exist (deleted "
                        "outside redmodel, restored from an older snapshot, or expired and "
                        "not swept yet)"]
    store.save(Hat("white", sku="A", id="3"))  # its unique value is not blocked meanwhile
    assert store.reindex(Hat, progress=False) == 2
    assert store.verify(Hat) == []
    assert store.find(Hat).count() == 2
    assert store.find(Hat, color="black").ids() == []
    assert store.get_by(Hat, sku="A").id == "3"


def test_a_stale_equality_member_is_reported_and_dropped(any_store: Any, Hat: type) -> None:
    store = any_store
    store.save_many([Hat("black", id="1"), Hat("red", id="2")])
    store.client.sadd(root(Hat, "1") + "eq:color:red", "1")
    assert sorted(store.find(Hat, color="red").ids()) == ["1", "2"], "a black hat, found"
    assert store.verify(Hat) == [
        f"the equality index color='red' lists {key(Hat, '1')}, whose color is not 'red'"]
    store.reindex(Hat, progress=False)
    assert store.find(Hat, color="red").ids() == ["2"]
    assert store.verify(Hat) == []


def test_wrong_and_missing_entries_are_reported_and_fixed(any_store: Any, Hat: type) -> None:
    store = any_store
    store.save_many([Hat("black", 1.5, sku="A", id="1"), Hat("red", 2.5, sku="B", id="2")])
    client = store.client
    client.zadd(root(Hat, "1") + "rng:price", {"1": 9.0})
    client.srem(root(Hat, "2") + "eq:color:red", "2")
    client.hset(spec_of(Hat).claim_key("sku", "B"), "B", "1" if not store.cluster else "1\x1fC")
    problems = store.verify(Hat)
    assert f"{key(Hat, '1')}: the range index price holds 9.0, but the object has 1.5" in problems
    assert f"{key(Hat, '2')}: missing from the equality index color='red'" in problems
    assert f"{key(Hat, '2')}: the unique index sku='B' points at id '1'" in problems
    store.reindex(Hat, progress=False)
    assert store.verify(Hat) == []
    assert store.find(Hat).order_by("price").ids() == ["1", "2"]
    assert store.get_by(Hat, sku="B").id == "2"


def old_format(client: Any, root: str, kind: str) -> None:
    """A bucket's all-ids index as an older redmodel wrote it: its ids in ``root all`` (a
    ZSET, or the older SET), no pages, directory or count."""
    members = list(client.zrange(root + "all", 0, -1)) if client.exists(root + "all") else []
    for bound in client.zrange(root + "ids", 0, -1):
        page = root.encode() + b"ids:" + bound
        members += client.zrange(page, 0, -1)
        client.delete(page)
    client.delete(root + "all", root + "ids", root + "idn")
    if members and kind == "set":
        client.sadd(root + "all", *members)
    elif members:
        client.zadd(root + "all", dict.fromkeys(members, 0))


@pytest.mark.parametrize("kind", ["set", "zset"])
def test_the_all_ids_index_of_an_older_version_is_converted(any_store: Any, Hat: type,
                                                            kind: str) -> None:
    store = any_store
    store.save_many([Hat("black", id=str(i)) for i in range(30)])
    spec = spec_of(Hat)
    client = store.client
    for tag in spec.tags():  # what an older redmodel wrote
        old_format(client, spec.index_root(tag), kind)
    some = spec.index_root(spec.tag_of("0")) + "all"
    if kind == "set":  # writes refuse it (a ZSET is written through)
        with pytest.raises(redmodel.ServerError, match=r"older redmodel; run store\.reindex"):
            store.save(Hat("red", id="0"))
    with pytest.raises(redmodel.IndexNotReadyError, match=r"store\.reindex\(Hat\)"):
        store.find(Hat).count()
    assert any(f"{some} is a {kind}, the all-ids index in the format of an older redmodel"
               in p for p in store.verify(Hat))
    assert store.reindex(Hat, count=7, progress=False) == 30
    assert client.exists(some) == 0
    assert store.verify(Hat) == []
    assert store.find(Hat).count() == 30
    assert sorted(store.find(Hat).ids()) == sorted(str(i) for i in range(30))
    store.save(Hat("red", id="0"))
    assert store.find(Hat, color="red").ids() == ["0"]


def test_a_restore_from_an_older_snapshot_is_repaired(any_store: Any, Hat: type) -> None:
    """The object comes back as it was (DUMP/RESTORE), its index entries stay as they are
    now: reindex makes them agree with the object."""
    store = any_store
    store.save(Hat("black", 1.0, sku="A", id="1"))
    snapshot = store.client.dump(key(Hat, "1"))
    store.update(Hat, "1", color="red", price=2.0, sku="B")
    store.client.restore(key(Hat, "1"), 0, snapshot, replace=True)
    problems = store.verify(Hat)
    assert f"{key(Hat, '1')}: missing from the equality index color='black'" in problems
    assert f"the equality index color='red' lists {key(Hat, '1')}, whose color is not 'red'" \
        in problems
    store.reindex(Hat, progress=False)
    assert store.verify(Hat) == []
    assert store.find(Hat, color="black").ids() == ["1"]
    assert store.get_by(Hat, sku="A").id == "1"
    assert store.get_by(Hat, sku="B") is None


def test_reindex_resumes_where_a_stopped_run_was(store: redmodel.Store) -> None:
    Hat = HATS[False]
    store.save_many([Hat("black", float(i), id=str(i)) for i in range(40)])
    store.client.delete(*[k for k in store.client.keys("rhat:%idx:*")])
    plan = _repair.reindex_plan(Hat, 10, [None])
    seen = []
    for item in iterate_sync(plan, store._execute):
        seen.append(item)
        if isinstance(item, _repair.Progress) and item.phase == "objects":
            break  # the process stops after its first page of objects
    plan.close()
    state = store.client.get(_repair.state_key(spec_of(Hat)))
    assert state is not None and b'"phase": 1' in state
    done = seen[-1].done
    assert 0 < done < 40
    assert store.reindex(Hat, count=10, progress=False) == 40, "the first page counts too"
    assert store.client.get(_repair.state_key(spec_of(Hat))) is None
    assert store.verify(Hat) == []
    assert store.reindex(Hat, progress=False, restart=True) == 40


def test_a_resumed_reindex_repairs_what_changed_in_the_passes_before_its_stop(
        store: redmodel.Store) -> None:
    """F10 (issue 13 attack), decided: a run stopped in pass 3 left its progress; a raw DEL
    and a stray entry happen; the next run goes through passes 1 and 2 again (taking up
    pass 3 where it stopped), so the DEL is repaired, and it returns the objects its index
    holds, each once."""
    Hat = HATS[False]
    store.save_many([Hat("black", float(i), sku=f"S{i}", id=str(i)) for i in range(30)])
    plan = _repair.reindex_plan(Hat, 10, [None])
    for item in iterate_sync(plan, store._execute):
        if isinstance(item, _repair.Progress) and item.phase == "entries":
            break  # stopped after its first page of pass 3
    plan.close()
    assert b'"phase": 3' in (store.client.get(_repair.state_key(spec_of(Hat))) or b"")
    store.client.delete(key(Hat, "7"))
    assert store.reindex(Hat, count=10, progress=False) == 29
    assert store.verify(Hat) == []
    assert store.find(Hat).count() == 29
    store.save(Hat("red", sku="S7", id="new"))  # the deleted object's value is free


def test_reindex_shows_its_progress(store: redmodel.Store,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    Hat = HATS[False]
    store.save_many([Hat("black", id=str(i)) for i in range(5)])
    store.reindex(Hat, progress=True)
    err = capsys.readouterr().err
    assert "reindex Hat: objects 5" in err and "entries" in err
    store.reindex(Hat, progress=False)
    assert capsys.readouterr().err == ""


def test_verify_and_reindex_of_a_clean_index_change_nothing(any_store: Any,
                                                            Hat: type) -> None:
    store = any_store
    store.save_many([Hat("black", float(i), sku=f"S{i}", id=str(i)) for i in range(12)])
    store.save(Hat("red", id="t"), ttl=100)
    before = dump(store.client)
    assert store.verify(Hat) == []
    assert store.reindex(Hat, count=5, progress=False) == 13
    assert dump(store.client) == before


def test_the_sweep_drops_expired_objects_entries(any_store: Any, Hat: type) -> None:
    import time  # noqa: PLC0415

    store = any_store
    store.save_many([Hat("black", id=str(i)) for i in range(5)])
    for i in range(3):
        store.expire(Hat, str(i), 0.05)
    time.sleep(0.15)
    assert store.sweep(Hat) == 3
    assert store.sweep(Hat) == 0
    assert store.verify(Hat) == []
    assert sorted(store.find(Hat, color="black").ids()) == ["3", "4"]


def test_a_wrong_typed_key_of_an_expired_object_blocks_only_the_queries_that_read_it(
        any_store: Any, Hat: type) -> None:
    """F21 (issue 13 attack), decided: the sweep drops an expired object's entries and
    leaves an entry key of the wrong type alone (it holds none of them), so queries that
    do not read that key run; one that reads it raises ServerError naming it; verify
    reports it; deleting it and reindexing leaves everything right."""
    import time  # noqa: PLC0415

    store = any_store
    store.save_many([Hat("black", id="1"), Hat("black", id="2")])
    store.save(Hat("zzz", id="x"), ttl=0.1)
    bad = root(Hat, "x") + "eq:color:zzz"
    store.client.delete(bad)
    store.client.set(bad, "overwritten")
    time.sleep(0.25)
    assert sorted(store.find(Hat, color="black").ids()) == ["1", "2"]
    assert store.find(Hat).count() == 2
    assert store.sweep(Hat) == 0, "swept already, by the query"
    with pytest.raises(redmodel.ServerError, match=re.escape(bad)) as info:
        store.find(Hat, color="zzz").ids()
    assert "delete it and run store.reindex" in str(info.value)
    assert any(bad in p for p in store.verify(Hat))
    store.client.delete(bad)
    store.reindex(Hat, progress=False)
    assert store.verify(Hat) == []


@pytest.mark.parametrize("change", ["hset", "hdel"])
def test_a_unique_value_its_holder_no_longer_stores_is_free(any_store: Any, Hat: type,
                                                            change: str) -> None:
    """F9 (issue 13 attack): the holder's stored field was changed or removed with a raw
    command (its index record still says it holds the value). get_by finds nobody, and a
    writer takes the value; the holder keeps what it stores."""
    store = any_store
    store.save(Hat("red", sku="S5", id="5"))
    if change == "hset":
        store.client.hset(key(Hat, "5"), "sku", "Z")
    else:
        store.client.hdel(key(Hat, "5"), "sku")
    assert store.get_by(Hat, sku="S5") is None
    store.save(Hat("blue", sku="S5", id="n5"))
    assert store.get_by(Hat, sku="S5").id == "n5"
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(Hat("green", sku="S5", id="other"))  # a real holder still blocks
    store.reindex(Hat, progress=False)
    assert store.verify(Hat) == []
    assert store.get_by(Hat, sku="S5").id == "n5"


def test_a_wrong_typed_progress_key_and_unknown_index_keys_are_reported(
        store: redmodel.Store) -> None:
    """F18 (issue 13 attack): verify reports a progress key of the wrong type (reindex
    refuses it with advice, restart=True replaces it) and keys under %idx redmodel does
    not keep."""
    Hat = HATS[False]
    store.save(Hat("black", id="1"))
    state = _repair.state_key(spec_of(Hat))
    store.client.hset(state, "x", "y")
    store.client.set("rhat:%idx:junk", "1")
    problems = store.verify(Hat)
    assert any(p.startswith(f"{state} is a hash, not the string") for p in problems)
    assert any(p.startswith("rhat:%idx:junk: not a key redmodel keeps") for p in problems)
    with pytest.raises(redmodel.ServerError, match="restart=True"):
        store.reindex(Hat, progress=False)
    assert store.reindex(Hat, progress=False, restart=True) == 1
    store.client.delete("rhat:%idx:junk")
    assert store.verify(Hat) == []
