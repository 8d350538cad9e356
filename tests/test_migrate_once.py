"""A custom migration step is applied to each object at most once (exactly once when the
step completes), whatever replies are lost, wherever a run stops and whichever applier
runs; the set's records are read strictly; the lease and count are bounded; a user's
failing step and a misspelled `drop_index` are clear errors (docs/migrations.md, "How
`apply` stays online" and "Records, ordering and errors"). FINDINGS-16a F1-F4, F7, F9,
F13 are reproduced by tests/test_attack16a.py; these state the whole kind."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.migrations import (
    MigrationError,
    Migrations,
    MigrationStepError,
    drop_index,
    update,
)
from tests.budget import scaled
from tests.faults import proxied_store
from tests.test_cli import as_json, redmodel_cli
from tests.test_migrations import call

IDS = ["c0", "{t}1", "x:%*\\2", "c3", "{t}4", "c5", "é6", "c7", "c8", "{u}9", "c10", "c11"]


@redmodel.model(prefix="once_ctr")
@attrs.define
class Tally:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def bump(obj: Tally) -> Tally:
    obj.n += 1
    return obj


def leftovers(client: Any, m: Migrations) -> list[Any]:
    """Marker hashes left in the keyspace (every node of a cluster) and `done:` fields."""
    keys = list(client.scan_iter(match=m.key.replace("%", "\\%") + ":*"))
    fields = [f for f in client.hkeys(m.key) if f.startswith(b"done:")]
    return keys + fields


def test_lost_replies_never_apply_a_custom_step_twice(redis_server: Any,
                                                      redis_client: Any) -> None:
    """Any EXEC, script or UNLINK reply lost (drawn): each object is incremented exactly
    once, the step is recorded, and no marker outlives it (a lost reply is resolved by
    reading: the marker tells whether a transaction committed, the records hash whether a
    lease script ran)."""
    with proxied_store(redis_server) as (proxy, store):

        @settings(max_examples=scaled(12, floor=4))
        @given(lost=st.lists(st.integers(0, 40), max_size=4, unique=True),
               count=st.integers(1, 6))
        def check(lost: list[int], count: int) -> None:
            redis_client.flushall()
            redmodel.Store(redis_client).save_many([Tally(0, id=i) for i in IDS])
            store.count(Tally)
            m = Migrations("once_lost")
            m.add("0001_bump", update(Tally, bump))
            seen = [0]

            def pick(name: str) -> bool:
                if name in ("EXEC", "EVALSHA", "EVAL", "UNLINK"):
                    seen[0] += 1
                    return seen[0] - 1 in lost
                return False

            proxy.clear()
            proxy.lose_reply(pick, times=len(lost))
            try:
                m.apply(store, count=count)
            except (redmodel.RedmodelError, redis.ConnectionError):
                proxy.clear()                  # a run that stopped: apply again
                redis_client.hdel(m.key, "lease")   # as if its lease had run out
                m.apply(redmodel.Store(redis_client), count=count)
            proxy.clear()
            plain = redmodel.Store(redis_client)
            assert [o.n for o in plain.get_many(Tally, IDS)] == [1] * len(IDS)
            assert m.status(plain).steps[0].state == "applied"
            assert leftovers(redis_client, m) == []

        check()
        store.close()


def test_a_lost_cursor_never_applies_a_batch_twice(any_store: Any) -> None:
    """A run stopped after some batches committed but with no cursor saved (as a crash
    between EXEC and the cursor's script leaves it) walks the step again from the start:
    the markers skip what was done, in every shell and on a cluster (a marker hash per
    slot), and are all deleted once the step is recorded."""
    any_store.save_many([Tally(0, id=i) for i in IDS])
    m = Migrations("once_cursor")
    m.add("0001_bump", update(Tally, bump))

    class Stop(Exception):
        pass

    def stop(p: Any) -> None:
        if p.done > 0:  # the first batch that did something (a SCAN page may hold more)
            raise Stop

    with pytest.raises(Stop):
        call(any_store, m.apply, count=3, progress=stop)
    client = any_store.client
    assert any(f.startswith(b"done:") for f in client.hkeys(m.key))
    done_before = sum(o.n for o in any_store.get_many(Tally, IDS))
    assert done_before > 0
    client.hdel(m.key, "cursor:0001_bump")
    records = call(any_store, m.apply, count=3)
    assert [o.n for o in any_store.get_many(Tally, IDS)] == [1] * len(IDS)
    # only what the stopped run had not done
    assert records[0].changed == len(IDS) - done_before
    assert leftovers(client, m) == []


def test_markers_left_by_a_run_stopped_after_the_record_are_deleted(
        redis_server: Any, redis_client: Any) -> None:
    """A run stopped between a step's record and the deletion of its markers: the next
    apply (nothing pending) deletes them."""
    redmodel.Store(redis_client).save_many([Tally(0, id=i) for i in IDS])
    m = Migrations("once_left")
    m.add("0001_bump", update(Tally, bump))
    with proxied_store(redis_server) as (proxy, store):
        store.count(Tally)
        proxy.drop_request("UNLINK", times=100)
        with pytest.raises(redis.ConnectionError):
            m.apply(store, count=5)
        proxy.clear()
        store.close()
    plain = redmodel.Store(redis_client)
    assert m.status(plain).steps[0].state == "applied"
    assert leftovers(redis_client, m) != []
    redis_client.hdel(m.key, "lease")                     # the dead run's lease ran out
    assert m.apply(plain) == []
    assert leftovers(redis_client, m) == []
    assert [o.n for o in plain.get_many(Tally, IDS)] == [1] * len(IDS)


GOOD = ('{"applied_at":1.5,"changed":1,"id":"0001_bump","kind":"custom","model":"m",'
        '"position":0,"seconds":0.1,"verified":true,"visited":1}')


@pytest.mark.parametrize(("field", "value"), [
    ("step:0001_bump", "{not json"), ("step:0001_bump", "[]"), ("step:0001_bump", "null"),
    ("step:0001_bump", GOOD.replace('"visited":1', '"visited":"a"')),
    ("step:0001_bump", GOOD.replace("1.5", "1e300")),
    ("step:0001_bump", GOOD.replace("true", "1")),
    ("step:0001_bump", GOOD.replace('"id":"0001_bump"', '"id":"other"')),
    ("step:0001_bump", GOOD.replace('"changed":1,', "")),
    ("cursor:0001_bump", '{"scan": "abc"}'), ("cursor:0001_bump", "1e400"),
    ("cursor:0001_bump", '{"changed":0,"scan":-2,"seconds":0,"target":"","visited":0}'),
    ("lease", "garbage"), ("lease", "x 1e+20"), ("lease", ""),
])
def test_a_record_field_that_cannot_be_read_is_an_error_naming_it(
        store: redmodel.Store, field: str, value: str) -> None:
    store.save_many([Tally(0, id=i) for i in IDS[:3]])
    m = Migrations("once_bad")
    m.add("0001_bump", update(Tally, bump))
    store.client.hset(m.key, field, value)
    before = store.client.hgetall(m.key)
    for run in (m.status, m.plan, m.apply):
        with pytest.raises(MigrationError) as e:
            run(store)
        assert m.key in str(e.value) and field in str(e.value)
    assert store.client.hgetall(m.key) == before
    assert [o.n for o in store.get_many(Tally, IDS[:3])] == [0] * 3


def test_a_good_record_reads_back(store: redmodel.Store) -> None:
    m = Migrations("once_good")
    m.add("0001_bump", update(Tally, bump))
    store.client.hset(m.key, mapping={"step:0001_bump": GOOD, "other:field": "{bad"})
    status = m.status(store)
    assert status.steps[0].state == "applied" and status.steps[0].record.applied_at == 1.5


@pytest.mark.parametrize("lease", [float("inf"), float("-inf"), float("nan"), 0, -1, 0.0,
                                   1e11 * 1.0000001, 2**70, 1e300, True, "10", None])
def test_a_lease_out_of_range_is_refused(lease: Any) -> None:
    with pytest.raises(redmodel.ValidationError):
        Migrations("once_lease", lease=lease)


def test_the_largest_lease_works(store: redmodel.Store) -> None:
    store.save_many([Tally(0, id=i) for i in IDS[:3]])
    m = Migrations("once_lease_max", lease=1e11)
    m.add("0001_bump", update(Tally, bump))
    assert [r.changed for r in m.apply(store)] == [3]


@pytest.mark.parametrize("count", [0, -1, 2**31, 2**63, 2**70, True, 1.0, None])
def test_a_count_out_of_range_is_refused_up_front(store: redmodel.Store, count: Any) -> None:
    m = Migrations("once_count")
    m.add("0001_bump", update(Tally, bump))
    for run in (m.plan, m.apply):
        with pytest.raises(redmodel.ValidationError):
            run(store, count=count)
    assert not store.client.exists(m.key)


def test_a_failing_user_function_is_a_step_error(store: redmodel.Store) -> None:
    store.save_many([Tally(0, id=i) for i in IDS[:3]])

    def broken(obj: Tally) -> Tally:
        raise KeyError("no such thing")

    m = Migrations("once_user")
    m.add("0001_broken", update(Tally, broken))
    with pytest.raises(MigrationStepError) as e:
        m.apply(store)
    assert e.value.step == "0001_broken" and e.value.object_key.startswith("once_ctr:")
    assert isinstance(e.value.__cause__, KeyError)
    assert "KeyError" in str(e.value) and e.value.object_key in str(e.value)
    assert m.status(store).steps[0].state != "applied"


@redmodel.model(prefix="once_idx")
@attrs.define
class Painted:
    color: str = redmodel.field(index=True, default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="once_idx")
@attrs.define
class PaintedV2:
    color: str = ""
    id: str = redmodel.key_field(generated=False)


PaintedV2.__qualname__ = Painted.__qualname__


def test_a_misspelled_drop_index_is_refused(store: redmodel.Store) -> None:
    """A `drop_index` naming an index the registry record never held is not recorded as
    applied having dropped nothing: plan lists it as a problem, apply refuses."""
    store.save(Painted("red", id="p1"))
    v2 = redmodel.Store(store.client)
    v2.count(PaintedV2)
    m = Migrations("once_drop")
    m.add("0001_drop", drop_index(PaintedV2, "colr"))
    assert any("colr" in p for p in m.plan(v2).steps[0].problems)
    with pytest.raises(redmodel.ValidationError, match="colr"):
        m.apply(v2)
    assert m.status(v2).steps[0].state == "pending"
    right = Migrations("once_drop2")
    right.add("0001_drop", drop_index(PaintedV2, "color"))
    assert right.plan(v2).steps[0].problems == ()
    assert [r.id for r in right.apply(v2)] == ["0001_drop"]


def test_cli_a_failing_user_step(redis_url: str, redis_client: Any) -> None:
    """cli.md: exit 1 naming the step, the object and the exception; --traceback prints
    the function's traceback; never "a bug in redmodel"."""
    redmodel.Store(redis_client).save_many([attrs.evolve(_counter(), id="x")])
    done = redmodel_cli("migrate", "apply", "--migrations", "tests.attack16a_set:failing",
                        "--json", "--traceback", url=redis_url)
    assert done.returncode == 1, done.stderr
    body = as_json(done)
    assert body["exit_code"] == 1
    for word in ("0001_user_bug", "a16_cli:x", "KeyError"):
        assert word in body["error"]
    assert "Traceback" in done.stderr and "_user_bug" in done.stderr
    assert "bug in redmodel" not in done.stdout + done.stderr


def _counter() -> Any:
    from tests.attack16a_set import Counter  # noqa: PLC0415

    return Counter(1, id="x")
