"""Session 28 fixes found by attack 28AE (the findings' own tests: tests/test_attack28ae.py).

- F1: `redmodel import` of values kept encrypted replaced a hash (DEL + HSET) or a blob
  (SET) without keeping the expiry the key had: an object exported without expiry now
  keeps it, as a save does (docs/cli.md, Limits).
- F2: a nested class that a model stores inside a value it encrypts whole showed that
  value in its own repr; every such class now hides all its attributes.
- F3: an import stopped by what only the database can tell (a unique value another object
  holds) exited 1 with the store's error; it exits 3 counting what was written and naming
  the keys that were not (docs/cli.md, import).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
import redmodel.testing
from redmodel._models._specs import spec_of
from tests.budget import scaled
from tests.test_attack28af import Enc, IdxEnc, Plain, _fernet
from tests.test_cli import redmodel_cli
from tests.test_fix28ac import (
    _LABELS,
    _MODELS,
    BlindUnique,
    PlainIndexed,
    _export,
    _import,
    _key,
    _keys,
    _objects,
)

_EXPORTED_TTL = 50_000  # ms
_LATER_TTL = 200_000


@settings(max_examples=scaled(10, floor=3))
@given(objs=_objects(), later=st.lists(st.booleans(), min_size=15, max_size=15))
def test_import_keeps_the_expiry_a_key_has_when_the_export_has_none(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, objs: list[tuple[Any, int | None]],
        later: list[bool]) -> None:
    """Property: export (values kept encrypted) of objects with and without a TTL; then
    some get a longer TTL; import: an object exported with a TTL has its exported TTL
    (at most), one exported without keeps the TTL its key got since, else none."""
    store.client.flushall()
    fernet_key, _ = _keys(monkeypatch)
    exported_ttl = [ttl is not None for _, ttl in objs]
    for (obj, _), has in zip(objs, exported_ttl, strict=True):
        store.save(obj, ttl=_EXPORTED_TTL / 1000 if has else None)
    out = tmp_path / "e.jsonl"
    _export(store, redis_url, out, fernet_key)
    got_later = [later[i % len(later)] for i in range(len(objs))]
    for (obj, _), set_later in zip(objs, got_later, strict=True):
        if set_later:
            store.client.pexpire(_key(type(obj), obj.id), _LATER_TTL)
    done = _import(redis_url, out, fernet_key)
    assert done.returncode == 0, done.stderr
    for (obj, _), has, set_later in zip(objs, exported_ttl, got_later, strict=True):
        left = store.client.pttl(_key(type(obj), obj.id))
        if has:
            assert 0 < left <= _EXPORTED_TTL, (obj, left)
        elif set_later:
            assert _EXPORTED_TTL < left <= _LATER_TTL, (obj, left)
        else:
            assert left == -1, (obj, left)
        assert store.get(type(obj), obj.id) == obj
    for model in _MODELS:
        assert store.verify(model) == [], model


@settings(max_examples=scaled(10, floor=3))
@given(n=st.integers(2, 6), taken=st.data(), chunk=st.integers(1, 3))
def test_an_import_stopped_by_a_value_the_database_holds_exits_3_and_counts(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, n: int, taken: st.DataObject, chunk: int) -> None:
    """Property: a blind-unique export kept encrypted, imported where another object holds
    one line's value: exit 3; the objects of the chunks before that line's are written, the
    rest are not, and the message counts the written and names every key not written;
    the index stays right."""
    store.client.flushall()
    fernet_key, _ = _keys(monkeypatch)
    objs = [BlindUnique(f"v{i}", id=f"o{i}") for i in range(n)]
    store.save_many(objs)
    out = tmp_path / "u.jsonl"
    done = redmodel_cli("export", "-m", _LABELS[1], "-o", str(out), url=redis_url,
                        keys=fernet_key)
    assert done.returncode == 0, done.stderr
    order = [line for line in out.read_text().splitlines() if line.strip()]
    header = [line for line in order if '"id"' not in line]
    lines = sorted((line for line in order if '"id"' in line),
                   key=lambda line: int(line.split('"id":"o')[1].split('"')[0]))
    out.write_text("\n".join(header + lines) + "\n")
    bad = taken.draw(st.integers(0, n - 1), label="line whose value is held")
    store.client.flushall()
    store.save(BlindUnique(f"v{bad}", id="holder"))
    done = redmodel_cli("import", "-m", _LABELS[1], "-i", str(out), "--chunk", str(chunk),
                        url=redis_url, keys=fernet_key)
    assert done.returncode == 3, (done.stdout, done.stderr)
    first_unwritten = bad - bad % chunk
    for i, obj in enumerate(objs):
        stored = store.get(BlindUnique, obj.id)
        assert stored == (obj if i < first_unwritten else None), (i, stored)
    assert f"{first_unwritten:,} objects were written" in done.stderr
    for i in range(first_unwritten, n):
        assert repr(_key(BlindUnique, f"o{i}")) in done.stderr
    assert "v" + str(bad) not in done.stderr.replace(f"o{bad}", "")  # no plaintext value
    assert store.verify(BlindUnique) == []


@attrs.define
class Inner:
    pin: str


@attrs.define
class Outer:
    name: str
    inner: Inner
    tags: list[str] = attrs.Factory(list)


_SEQ = itertools.count()


def _model(shape: str) -> type:
    """A model storing Outer (and so Inner) encrypted whole, in one of several ways."""
    n = next(_SEQ)
    if shape == "blob":
        body: dict[str, Any] = {"__annotations__": {"outer": Outer, "id": str},
                                "id": redmodel.key_field(generated=False)}
        cls = attrs.define(type(f"B{n}", (), body))
        return redmodel.model(prefix=f"fix28ae_b{n}", layout="blob", codec="json|fernet")(cls)
    tp: Any = {"field": Outer, "list": list[Outer], "optional": Outer | None}[shape]
    body = {"__annotations__": {"outer": tp, "id": str},
            "outer": redmodel.field(codec="json|fernet"),
            "id": redmodel.key_field(generated=False)}
    cls = attrs.define(type(f"M{n}", (), body))
    return redmodel.model(prefix=f"fix28ae_m{n}")(cls)


@pytest.mark.parametrize("shape", ["field", "list", "optional", "blob"])
def test_a_class_stored_encrypted_whole_hides_every_attribute_in_its_own_repr(
        shape: str) -> None:
    """A model storing Outer through an encrypting chain (a field's chain, a list or an
    optional of it, a blob model's chain): Outer's and Inner's own reprs show no value."""
    model = _model(shape)
    outer = Outer("Ann Secret", Inner("4242"), ["hidden-tag"])
    obj = model(outer=[outer] if shape == "list" else outer, id="x")
    for shown in (repr(obj), str(obj), repr(outer), str(outer), repr(outer.inner),
                  repr([outer])):
        for secret in ("Ann Secret", "4242", "hidden-tag"):
            assert secret not in shown, (shape, shown)



@settings(max_examples=scaled(15, floor=4))
@given(data=st.data())
def test_an_import_stopped_by_foreign_keys_counts_and_names_exactly(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, data: st.DataObject) -> None:
    """Property (attack 28AF F1-F3): objects exported with and without TTL (values kept
    encrypted or plain, indexed or not), strings of another program planted at some
    objects' keys, any chunk size: the import exits 3, never deletes a planted key, the
    message counts exactly the objects written and names exactly the keys not written (or
    says they may have been, for the chunk it stopped in), and the index stays right."""
    model = data.draw(st.sampled_from([Plain, Enc, IdxEnc]), label="model")
    n = data.draw(st.integers(2, 6), label="objects")
    chunk = data.draw(st.integers(1, 4), label="chunk")
    ttl = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="ttl")
    planted = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n),
                        label="foreign keys at")
    store.client.flushall()
    key = _fernet(monkeypatch)
    ids = [f"o{i}" for i in range(n)]
    for i, oid in enumerate(ids):
        obj = model(oid, id=oid) if model is Plain else model(oid, f"secret-{oid}", id=oid)
        store.save(obj, ttl=60 if ttl[i] else None)
    label = f"tests.test_attack28af:{model.__name__}"
    out = tmp_path / "f.jsonl"
    done = redmodel_cli("export", "-m", label, "-o", str(out), url=redis_url, keys=key)
    assert done.returncode == 0, done.stderr
    store.client.flushall()
    keys = {oid: spec_of(model).key_for(oid) for oid in ids}
    for i in planted:
        store.client.set(keys[ids[i]], "foreign")
    done = redmodel_cli("import", "-m", label, "-i", str(out), "--chunk", str(chunk),
                        url=redis_url, keys=key)
    assert done.returncode == 3, (done.stdout, done.stderr)
    for i in planted:
        assert store.client.get(keys[ids[i]]) == b"foreign"
    written = [oid for oid in ids if store.client.type(keys[oid]) == b"hash"]
    assert f" {len(written):,} objects were written" in done.stderr, done.stderr
    named = [oid for oid in ids if repr(keys[oid]) in done.stderr]
    assert sorted(named) == [oid for oid in ids if oid not in written], done.stderr
    assert "secret-" not in done.stderr
    if model is IdxEnc:
        assert store.verify(IdxEnc) == []


@pytest.mark.parametrize("command", ["INCR", "RPUSH", "LPOP"])
def test_the_testing_client_never_sends_a_write_again(
        redis_server: redmodel.testing.RedisServer, redis_client: Any,
        proxy: redmodel.testing.FaultProxy, command: str) -> None:
    """docs/testing.md: `client()` never sends a command again by itself. A write whose
    reply is lost raises a redis-py connection error and was applied once (redis-py's own
    constructor would retry it: an INCR applied twice, an RPUSH twice, an LPOP losing an
    item)."""
    redis_client.rpush("l", "a", "b")
    proxy.lose_reply("INCRBY" if command == "INCR" else command)  # redis-py's incr: INCRBY
    with redis_server.client(host=proxy.host, port=proxy.port) as client:
        call = {"INCR": lambda: client.incr("n"), "RPUSH": lambda: client.rpush("l", "c"),
                "LPOP": lambda: client.lpop("l")}[command]
        with pytest.raises(redis.ConnectionError):
            call()
    after = {"INCR": redis_client.get("n"), "RPUSH": redis_client.llen("l"),
             "LPOP": redis_client.llen("l")}[command]
    assert after == {"INCR": b"1", "RPUSH": 3, "LPOP": 1}[command]


@pytest.mark.parametrize("n", [1, 7, 40])
def test_an_import_chunk_reads_its_keys_in_one_round_trip(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The chunk's TYPE and PTTL reads (the foreign-key check and the kept expiry) go in
    one WATCHed round trip per chunk, not one per object: WATCH is called once per chunk
    and TYPE once per object (the reads were one round trip per object before)."""
    store.client.flushall()
    fernet_key, _ = _keys(monkeypatch)
    objs = [PlainIndexed(i, "red", f"s{i}", id=f"p{i}") for i in range(n)]
    store.save_many(objs)
    out = tmp_path / "e.jsonl"
    _export(store, redis_url, out, fernet_key)
    store.client.flushall()
    store.client.config_resetstat()
    done = _import(redis_url, out, fernet_key, _LABELS[3])
    assert done.returncode == 0, done.stderr
    stats = store.client.info("commandstats")
    assert stats["cmdstat_watch"]["calls"] == 1, stats.get("cmdstat_watch")
    assert stats["cmdstat_pttl"]["calls"] == n, {k: v["calls"] for k, v in stats.items()}
    assert [store.get(PlainIndexed, obj.id) for obj in objs] == objs
    assert store.verify(PlainIndexed) == []
