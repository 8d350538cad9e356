"""The model registry (issue 16, items 1 and 3): each prefix's owner and schema recorded in
Redis at a store's first use of a model; models that share a prefix, changes that would
misread stored objects, new indexes on stored objects and dropped indexes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

import pytest
import redis

import redmodel
from redmodel import IndexNotReadyError, SchemaConflictError
from redmodel._indexes._registry import register_plan
from redmodel._models._specs import spec_of
from redmodel._plan import Batch
from tests.test_cli import redmodel_cli

ROOT = Path(__file__).resolve().parent.parent


def declare(source: str, module: str = "app.models") -> Any:
    """The model declared by ``source`` as if written in module ``module`` (the registry
    knows a model by its module-qualified name, so two versions of one model can be
    declared in one test)."""
    namespace = types.ModuleType(module).__dict__
    code = compile("import attrs, redmodel\n" + textwrap.dedent(source), module, "exec",
                   dont_inherit=True)
    exec(code, namespace)
    return [v for v in namespace.values() if hasattr(v, "__redmodel__")][-1]


ITEM = """
@redmodel.model(prefix="item"{options})
@attrs.define
class Item:
    name: str{name_options}
    price: float = 0.0
    id: str = redmodel.key_field()
"""


def item(options: str = "", name_options: str = "", module: str = "app.models",
         extra: str = "", price: str = "") -> Any:
    source = ITEM.format(options=options, name_options=name_options)
    if extra:
        source = source.replace("    price: float", f"    {extra}\n    price: float")
    if price:
        source = source.replace("    price: float = 0.0", f"    {price}")
    return declare(source, module)


def registry(client: Any, prefix: str = "item") -> dict[str, str]:
    raw = client.hgetall(f"{prefix}:%schema")
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                         else v) for k, v in raw.items()}


# ---- models that share a prefix ----------------------------------------------------------

def test_a_second_model_on_a_prefix_is_refused_naming_both(any_store: Any) -> None:
    first = item()
    other = declare(ITEM.format(options="", name_options="").replace("class Item",
                                                                     "class Product"))
    kept = first("kept")
    any_store.save(kept)
    with pytest.raises(SchemaConflictError) as refused:
        any_store.save(other("merged?", id=kept.id))
    text = str(refused.value)
    assert "app.models.Item" in text and "app.models.Product" in text and "'item'" in text
    assert refused.value.owner == "app.models.Item"
    assert refused.value.model == "app.models.Product"
    # nothing was merged, counted or deleted across models
    assert any_store.get(first, kept.id) == kept and any_store.count(first) == 1
    for use in (lambda: any_store.count(other), lambda: any_store.delete(other, kept.id),
                lambda: any_store.get(other, kept.id)):
        with pytest.raises(SchemaConflictError):
            use()
    assert any_store.get(first, kept.id) == kept


def test_two_classes_named_alike_in_two_modules_cannot_share_a_prefix(store: Any) -> None:
    billing, shop = item(module="app.billing"), item(module="app.shop")
    store.save(billing("a"))
    later = redmodel.Store(store.client)  # another process: the record is in Redis
    with pytest.raises(SchemaConflictError, match=r"app\.billing\.Item.*app\.shop\.Item"):
        later.save(shop("b"))
    assert registry(store.client)["owner"] == "app.billing.Item"


def test_a_renamed_or_moved_model_adopts_its_prefix(store: Any) -> None:
    old, moved = item(module="app.old"), item(module="app.new")
    kept = old("a")
    store.save(kept)
    with pytest.raises(SchemaConflictError):
        store.get(moved, kept.id)
    store.adopt(moved)
    assert store.get(moved, kept.id) == moved("a", id=kept.id)
    assert registry(store.client)["owner"] == "app.new.Item"
    with pytest.raises(SchemaConflictError, match="buckets"):  # adopting checks the rest
        redmodel.Store(store.client).adopt(item(options=", buckets=4", module="app.new"))


# ---- changes that would misread stored objects ------------------------------------------

@pytest.mark.parametrize(("options", "name_options", "extra", "why"), [
    (", buckets=8", "", "", "buckets changed from None to 8"),
    (", layout='blob'", "", "", "layout changed from hash to blob"),
    (", delimiter='/'", "", "", "delimiter changed from ':' to '/'"),
    (", hash_tag=True", "", "", "hash_tag changed from False to True"),
    ("", " = redmodel.field(codec='json')", "", "field name changed how it is stored"),
    ("", "", "stock: int", "new field stock has no default"),
])
def test_a_change_that_would_misread_stored_objects_is_refused(
        store: Any, options: str, name_options: str, extra: str, why: str) -> None:
    before = item()
    kept = before("a", 2.0)
    store.save(kept)
    after = item(options=options, name_options=name_options, extra=extra)
    schema = registry(store.client)["schema"]
    with pytest.raises(SchemaConflictError, match=why) as refused:
        redmodel.Store(store.client).get(after, kept.id)
    assert refused.value.problems and "app.models.Item" in str(refused.value)
    assert registry(store.client)["schema"] == schema  # nothing written
    assert store.get(before, kept.id) == kept


def test_a_bucket_count_change_is_refused_and_says_to_migrate(any_store: Any) -> None:
    """Issue 16: buckets 4 -> 8 found 10 of 20 objects and saved second copies."""
    four = item(options=", buckets=4", name_options=" = redmodel.field(index=True)")
    objs = [four(f"n{i}") for i in range(20)]
    any_store.save_many(objs)
    eight = item(options=", buckets=8", name_options=" = redmodel.field(index=True)")
    for use in (lambda: any_store.get(eight, objs[0].id), lambda: any_store.save(eight("x")),
                lambda: any_store.find(eight, name="n1").count()):
        with pytest.raises(SchemaConflictError, match=r"buckets changed from 4 to 8.*migrate"):
            use()
    assert any_store.count(four) == 20


def test_compatible_changes_update_the_record(store: Any) -> None:
    store.save(item()("a"))
    grown = item(extra="stock: int = 0", options=", ttl=60")
    fresh = redmodel.Store(store.client)
    fresh.save(grown("b"))
    assert '"stock"' in registry(store.client)["schema"]
    assert len(list(fresh.scan(grown))) == 2


# ---- racing registrations -----------------------------------------------------------------

def test_of_two_racing_registrations_one_wins_and_the_other_sees_it(store: Any) -> None:
    """The registry is written by a compare-and-set script: a registration that read the
    record before another wrote it reads again and decides on what is there now."""
    mine, theirs = item(module="app.mine"), item(module="app.theirs")
    racing = register_plan(spec_of(mine), [None])
    batch = next(racing)  # HGETALL: nothing recorded yet
    batch = racing.send(store._execute(batch))
    assert "EVALSHA" in batch.commands[0][0]  # about to create the record...
    store.run(register_plan(spec_of(theirs), [None]))  # ...when another process does
    with pytest.raises(SchemaConflictError, match=r"app\.theirs\.Item"):
        _finish(store, racing, batch)  # 'CHANGED': it reads the winner's record
    assert registry(store.client)["owner"] == "app.theirs.Item"
    store.client.delete("item:%schema")

    same = register_plan(spec_of(theirs), [None])  # the same model racing: both succeed
    batch = same.send(store._execute(next(same)))
    won = store.run(register_plan(spec_of(theirs), [None]))
    assert _finish(store, same, batch) == won


def _finish(store: Any, plan: Any, batch: Batch) -> Any:
    try:
        while True:
            batch = plan.send(store._execute(batch))
    except StopIteration as stop:
        return stop.value


def test_processes_racing_to_register_agree_on_one_owner(redis_client: redis.Redis) -> None:
    models = [item(module=f"app.m{i}") for i in range(4)]
    start = threading.Barrier(8)
    outcome: dict[int, str] = {}

    def register(i: int) -> None:
        store = redmodel.Store(redis.Redis(port=redis_client.connection_pool.connection_kwargs[
            "port"]))
        start.wait()
        try:
            store.exists(models[i % 4], "x")
            outcome[i] = "ok"
        except SchemaConflictError as e:
            outcome[i] = e.owner
        finally:
            store.close()

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owner = registry(redis_client)["owner"]
    winners = {i for i, o in outcome.items() if o == "ok"}
    assert winners == {i for i in range(8) if f"app.m{i % 4}.Item" == owner}
    assert all(o == owner for i, o in outcome.items() if i not in winners)


# ---- cheap: nothing more after the first use -----------------------------------------------

def test_after_the_first_use_nothing_more_is_sent(store: Any) -> None:
    model = item()
    sent: list[Batch] = []
    execute = store._execute

    def counting(batch: Batch) -> list[Any]:
        sent.append(batch)
        return execute(batch)

    store._execute = counting
    obj = model("a")
    store.save(obj)
    first = [c for b in sent for c in b.commands]
    assert first[0] == ("HGETALL", "item:%schema") and len(sent) == 3  # read, record, save
    sent.clear()
    store.save(obj)
    store.get(model, obj.id)
    assert len(sent) == 2 and not any("%schema" in str(b.commands) for b in sent)


def test_bad_input_is_refused_before_the_registry_is_written(store: Any) -> None:
    with pytest.raises(redmodel.ValidationError):
        store.save(item()(name=3))  # type: ignore[arg-type]
    assert store.client.dbsize() == 0


def test_without_the_registry_nothing_is_recorded_or_refused(redis_client: redis.Redis
                                                              ) -> None:
    store = redmodel.Store(redis_client, registry=False)
    store.save(item(module="app.a")("a"))
    store.save(item(module="app.b")("b"))
    assert redis_client.exists("item:%schema") == 0
    assert store.count(item(module="app.c")) == 2


def test_the_registry_key_is_no_object(store: Any) -> None:
    model = item()
    store.save(model("a"))
    assert store.client.exists("item:%schema")
    assert len(list(store.scan_keys(model))) == store.count(model) == 1


# ---- the index lifecycle --------------------------------------------------------------------

INDEXED = ", buckets=4"


def test_a_new_index_on_stored_objects_is_building_until_it_is_built(any_store: Any
                                                                      ) -> None:
    """Issue 16: a new index answered count() == 0 until someone thought of reindex."""
    plain = item(options=INDEXED)
    any_store.save_many([plain(f"n{i % 3}") for i in range(12)])
    indexed = item(options=INDEXED, name_options=" = redmodel.field(index=True)")
    any_store.save(indexed("n1"))  # writes go on, and index themselves
    for query, index, how in (
            (lambda: any_store.find(indexed, name="n1").count(), "index:name",
             "store.build_index(Item, 'name')"),
            (lambda: list(any_store.find(indexed, name="n1")), "index:name",
             "store.build_index(Item, 'name')"),
            (lambda: any_store.find(indexed).all(), "index:%all", "store.reindex(Item)")):
        with pytest.raises(IndexNotReadyError) as refused:
            query()
        assert how in str(refused.value) and "redmodel reindex -m app.models:Item" in str(
            refused.value)
        assert refused.value.index == index and refused.value.state == "building"
    assert isinstance(refused.value, redmodel.QueryError)
    assert registry(any_store.client)["index:name"] == "building"
    other = redmodel.Store(any_store.client)  # another process, which saw it building
    with pytest.raises(IndexNotReadyError):
        other.find(indexed, name="n1").count()
    assert any_store.build_index(indexed, "name") == 13
    assert any_store.find(indexed, name="n1").count() == 5
    assert any_store.find(indexed).count() == 13
    assert other.find(indexed, name="n1").count() == 5  # it reads the record again
    assert registry(any_store.client)["index:name"] == "ready"


def test_a_new_unique_constraint_on_stored_objects_is_building(store: Any) -> None:
    plain = item()
    kept = plain("a")
    store.save(kept)
    unique = item(name_options=" = redmodel.field(unique=True)")
    with pytest.raises(IndexNotReadyError, match="unique index 'name'"):
        store.get_by(unique, name="a")
    store.reindex(unique)
    assert store.get_by(unique, name="a") == unique("a", id=kept.id)


def test_a_new_index_without_stored_objects_is_ready(any_store: Any) -> None:
    any_store.exists(item(options=INDEXED), "nothing")  # registered, nothing stored
    indexed = item(options=INDEXED, name_options=" = redmodel.field(index=True)")
    assert any_store.find(indexed, name="a").count() == 0
    assert registry(any_store.client)["index:name"] == "ready"


def test_build_index_names_a_declared_index(store: Any) -> None:
    with pytest.raises(redmodel.ValidationError, match="no index 'price'"):
        store.build_index(item(name_options=" = redmodel.field(index=True)"), "price")


def test_drop_index_removes_its_entries_records_and_state(any_store: Any) -> None:
    price = "price: float = redmodel.field(default=0.0, index='range')"
    both = item(options=INDEXED, name_options=" = redmodel.field(index=True)", price=price)
    objs = [both(f"n{i % 3}", float(i)) for i in range(9)]
    any_store.save_many(objs[3:])
    any_store.save_many(objs[:3], ttl=600)  # these keep an index record (the others need not)
    client = any_store.client
    priced = item(options=INDEXED, price=price)  # the index on name removed from the model
    with pytest.raises(redmodel.ValidationError, match="still declares"):
        any_store.drop_index(priced, "price")
    assert any_store.count(priced) == 9
    assert registry(client)["index:name"] == "stale"
    assert _all_keys(client, "item*eq:name:*")
    assert any_store.drop_index(priced, "name") >= 3  # a set per value and bucket
    assert _all_keys(client, "item*eq:name:*") == []
    records = [v for k in _all_keys(client, "item*%idx:rec") for v in client.hvals(k)]
    # the records that exist lose the field's lines (an object without one has none to lose)
    assert len(records) >= 3 and not any(b"\x1fname\x1f" in v for v in records)
    assert all(b"\x1fprice\x1f" in v for v in records)
    assert "index:name" not in registry(client)
    assert any_store.verify(priced) == []
    assert any_store.find(priced, price=redmodel.lt(3)).count() == 3

    plain = item(options=INDEXED)  # its last index removed
    assert any_store.drop_index(plain, "price") == 4  # one sorted set per bucket
    assert _all_keys(client, "item*%idx*") == []  # the all-ids index and records too
    assert not [k for k in registry(client) if k.startswith("index:")]
    assert any_store.count(plain) == 9


def _all_keys(client: Any, pattern: str) -> list[Any]:
    if isinstance(client, redis.RedisCluster):
        return list(client.scan_iter(pattern, target_nodes=redis.RedisCluster.PRIMARIES))
    return list(client.scan_iter(pattern))


# ---- the command line -----------------------------------------------------------------------

def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return redmodel_cli(*args, url=url, keys=None)


def test_cli_shows_owners_and_index_states(store: Any, redis_url: str) -> None:
    import json  # noqa: PLC0415

    from tests import registry_models as rm  # noqa: PLC0415

    unindexed = declare("""
        @redmodel.model(prefix="gadget")
        @attrs.define
        class Gadget:
            color: str
            id: str = redmodel.key_field()
        """, module="tests.registry_models")
    store.save_many([unindexed("black"), unindexed("white")])
    shown = _cli(redis_url, "inspect", "-m", "tests.registry_models:Gadget", "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)["models"][0]["registry"]
    assert found["owner"] == "tests.registry_models.Gadget" and found["this_model"]
    assert found["indexes"] == {}  # inspect never registers the new version
    assert _cli(redis_url, "reindex", "-m", "tests.registry_models:Gadget").returncode == 0
    listed = json.loads(_cli(redis_url, "registry", "--json").stdout)["prefixes"]
    assert [(p["prefix"], p["owner"], p["indexes"]) for p in listed] == [
        ("gadget", "tests.registry_models.Gadget",
         {"index:%all": "ready", "index:color": "ready"})]
    assert "gadget: tests.registry_models.Gadget" in _cli(redis_url, "registry").stdout
    refused = _cli(redis_url, "inspect", "-m", "tests.registry_models:Gizmo")
    assert refused.returncode == 1
    assert "registry refuses this model: the prefix belongs to " \
           "tests.registry_models.Gadget" in refused.stdout
    assert store.find(rm.Gadget, color="black").count() == 1


def test_a_transaction_registers_its_models_before_it_sends_anything(store: Any) -> None:
    owner, intruder = item(module="app.owner"), item(module="app.intruder")
    store.save(owner("a"))
    with (pytest.raises(SchemaConflictError, match=r"app\.intruder\.Item"),
          redmodel.transactions.Transaction(store) as tx):
        tx.save(intruder("b"))
    with pytest.raises(SchemaConflictError), redmodel.transactions.Transaction(store) as tx:
        tx.get(intruder, "x")
    assert store.count(owner) == 1
    fresh = item(module="app.owner", name_options=" = redmodel.field(index=True)")
    with redmodel.transactions.Transaction(redmodel.Store(store.client)) as tx:  # a new version
        tx.save(fresh("c"))
    assert registry(store.client)["index:name"] == "building"  # "a" has no entry yet


def test_a_rename_with_old_names_is_compatible_and_a_bare_one_is_not(store: Any) -> None:
    store.save(item()("a", 2.0))
    bare = declare(ITEM.format(options="", name_options="").replace("price: float = 0.0",
                                                                     "cost: float"))
    with pytest.raises(SchemaConflictError, match="new field cost has no default"):
        redmodel.Store(store.client).count(bare)
    renamed = declare(ITEM.format(options="", name_options="").replace(
        "price: float = 0.0", "cost: float = redmodel.field(old_names=('price',))"))
    assert [o.cost for o in redmodel.Store(store.client).scan(renamed)] == [2.0]


def test_a_script_and_its_import_are_one_owner(redis_url: str, redis_client: redis.Redis,
                                               tmp_path: Path) -> None:
    """A model declared in a script is owned as ``<file stem>.<Class>`` whether the script
    runs (``python app.py``: its module is ``__main__``) or another program imports it, so
    a worker importing the web app's script is not refused; ``python -m app`` agrees."""
    (tmp_path / "shopapp.py").write_text(textwrap.dedent("""
        import os, sys
        import attrs, redmodel

        @redmodel.model(prefix="scriptowned")
        @attrs.define
        class Item:
            name: str
            id: str = redmodel.key_field(generated=False)

        if __name__ == "__main__":
            with redmodel.Store.from_url(os.environ["REDIS_URL"]) as store:
                store.save(Item("made by " + sys.argv[1], id=sys.argv[1]))
    """))
    (tmp_path / "worker.py").write_text(textwrap.dedent("""
        import os
        import redmodel
        from shopapp import Item

        with redmodel.Store.from_url(os.environ["REDIS_URL"]) as store:
            store.save(Item("made by the worker", id="w"))
    """))
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(tmp_path)}
    for argv in (["shopapp.py", "script"], ["worker.py"], ["-m", "shopapp", "module"]):
        done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    assert redis_client.hget("scriptowned:%schema", "owner") == b"shopapp.Item"
    assert sorted(k for k in redis_client.keys("scriptowned:*") if b"%" not in k) == [
        b"scriptowned:module", b"scriptowned:script", b"scriptowned:w"]
