"""Session 30 fix R: repair and rotation (attacks 30AR F1, 30AQ F2 and F3; the findings'
own tests: tests/test_attack30ar.py, tests/test_attack30aq.py).

- 30AR F1, the kind: verify, reindex and the sweep decided that an object is alive with a
  check a key of any type passes (EXISTS; a TTL). An object is a hash at its key: a key of
  another type there (string, list, set, zset, stream written over it by raw commands) is
  no object. verify reports it, reindex drops its id and entries (and leaves that key
  alone: it is not redmodel's), the sweep drops the entries of an expired object whose key
  now holds another type; queries and get_by then agree with the data. Drawn: which
  objects, which types, with and without an index record (an expiry, a blind index), a
  plain and a bucketed model (claims), planted before the run or between reindex's passes.
  (Indexes need the hash layout: a flat or blob model has no index to repair.)
- 30AQ F2: rotate_index_key over an object it cannot read raises DecodeError naming its
  key, with nothing of its page written, at step 2 and at step 4 alike; the object's
  entries stay as they were (under the older key, which therefore still counts), so the
  rotation never looks done. Drawn: damaged objects at random positions, page sizes 1-4.
- 30AQ F3: rotate_keys over a value no chain of its field decodes (plaintext, another
  chain's header, a flipped byte) raises DecodeError naming its key; the damaged values
  are left as they were; hash and blob layouts.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import lt
from redmodel._indexes import _repair
from redmodel._indexes._blind import _kid, _raw_key
from redmodel._models._specs import spec_of
from redmodel._plan import iterate_sync
from tests.budget import scaled
from tests.keys import use_keys


@redmodel.model(prefix="fx30r")
@attrs.define
class Plain:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=1.0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx30rb", buckets=2)
@attrs.define
class Bucketed:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=1.0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx30rk")
@attrs.define
class Blind:
    """Every object keeps an index record (a blind index)."""

    color: str = redmodel.field(codec="json|fernet", index="blind")
    price: float = redmodel.field(index="range", default=1.0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


MODELS: tuple[type, ...] = (Plain, Bucketed, Blind)
TYPES = ("string", "list", "set", "zset", "stream")


def _key(model: type, id_value: str) -> str:
    return spec_of(model).key_for(id_value)


def _plant(client: Any, key: str, kind: str) -> None:
    """A key of another type at an object's key, written by raw commands."""
    client.delete(key)
    {"string": lambda: client.set(key, "x"), "list": lambda: client.rpush(key, "x"),
     "set": lambda: client.sadd(key, "x"), "zset": lambda: client.zadd(key, {"x": 1}),
     "stream": lambda: client.xadd(key, {"x": "1"})}[kind]()


def _reindex(store: redmodel.Store, model: type, plant: Any = None) -> int:
    """store.reindex, driven here so that ``plant`` runs when pass 1 (the objects) has
    emitted its progress (one page: every object read and indexed), before pass 2."""
    plan = _repair.reindex_plan(model, 500, store._targets())
    line = _repair.ProgressLine(model, False)
    for item in iterate_sync(plan, store._execute):
        if plant is not None and isinstance(item, _repair.Progress) and item.phase != "convert":
            plant()
            plant = None
        line.feed(item)
    return line.finish()


def _agrees(store: redmodel.Store, model: type, alive: dict[str, Any]) -> None:
    """Queries, counts and get_by answer as the stored objects say."""
    for color in ("red", "blue"):
        want = sorted(i for i, o in alive.items() if o.color == color)
        assert sorted(store.find(model, color=color).ids()) == want
    assert store.find(model).count() == len(alive)
    assert sorted(store.find(model, price=lt(100.0)).ids()) == sorted(alive)
    assert sorted(o.id for o in store.find(model).all()) == sorted(alive)


@st.composite
def _damage(draw: Any) -> tuple[type, list[Any], dict[str, str], set[str], str]:
    model = draw(st.sampled_from(MODELS))
    n = draw(st.integers(2, 6))
    objs = [model(draw(st.sampled_from(["red", "blue"])), float(draw(st.integers(0, 3))),
                  draw(st.sampled_from([None, f"S{i}"])), id=str(i)) for i in range(n)]
    victims = draw(st.sets(st.sampled_from([o.id for o in objs]), min_size=1))
    kinds = {v: draw(st.sampled_from(TYPES)) for v in sorted(victims)}
    expiring = draw(st.sets(st.sampled_from([o.id for o in objs])))
    when = draw(st.sampled_from(["before", "between"]))
    return model, objs, kinds, expiring, when


@settings(max_examples=scaled(100, floor=10))
@given(case=_damage())
def test_a_key_of_another_type_at_an_indexed_objects_key_is_no_object(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch,
        case: tuple[type, list[Any], dict[str, str], set[str], str]) -> None:
    """30AR F1 as a kind: verify reports every such key, reindex drops its id and entries
    (its unique value is free again) and leaves the key itself alone; then verify is []
    and the queries agree with the data."""
    model, objs, kinds, expiring, when = case
    store.client.flushall()
    use_keys(monkeypatch)
    store.save_many(objs)
    for i in sorted(expiring):
        store.expire(model, i, 3600)  # an expiry: the object keeps an index record
    keys = {v: _key(model, v) for v in kinds}

    def plant() -> None:
        for v, kind in kinds.items():
            _plant(store.client, keys[v], kind)

    alive = {o.id: o for o in objs if o.id not in kinds}
    if when == "before":
        plant()
        problems = store.verify(model)
        for v in kinds:
            assert any(keys[v] in p for p in problems), (keys[v], problems)
        assert _reindex(store, model) == len(alive)
    else:  # planted after reindex's pass 1 indexed the objects, before its pass 2
        assert store.verify(model) == []
        assert _reindex(store, model, plant) == len(alive)
    assert store.verify(model) == []
    _agrees(store, model, alive)
    for v, kind in kinds.items():  # not redmodel's: left as it was
        assert store.client.type(keys[v]) in (kind, kind.encode())
    for o in objs:
        if o.sku is not None:
            got = store.get_by(model, sku=o.sku)
            assert (got.id if got is not None else None) == (o.id if o.id in alive else None)
    freed = [o for o in objs if o.id in kinds and o.sku is not None]
    for o in freed:  # the gone object's unique value is free
        store.save(model("red", 2.0, o.sku, id=f"n{o.id}"))
        alive[f"n{o.id}"] = store.get(model, f"n{o.id}")
    assert store.verify(model) == []
    _agrees(store, model, alive)


@settings(max_examples=scaled(50, floor=5))
@given(model=st.sampled_from(MODELS), n=st.integers(1, 4),
       kinds=st.lists(st.sampled_from(TYPES), min_size=1, max_size=4))
def test_the_sweep_drops_an_expired_objects_entries_when_its_key_holds_another_type(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, model: type, n: int,
        kinds: list[str]) -> None:
    """30AR F1, the sweep: an object with an expiry whose key a raw command replaced by a
    key of another type (no expiry) is gone when its expiry passes: the sweep drops its
    entries (before: PEXPIRETIME of the other key said "alive, no expiry", so the id left
    the expiry set and its entries stayed for good) and leaves the key alone."""
    store.client.flushall()
    use_keys(monkeypatch)
    objs = [model("red", float(i), f"S{i}", id=str(i)) for i in range(n + 1)]
    store.save_many(objs)
    victims = {str(i): kinds[i % len(kinds)] for i in range(n)}
    for v in victims:
        store.expire(model, v, 0.05)
    for v, kind in victims.items():
        _plant(store.client, _key(model, v), kind)
    time.sleep(0.1)
    assert store.sweep(model) == n
    alive = {str(n): objs[n]}
    assert store.verify(model) == []
    _agrees(store, model, alive)
    for v, kind in victims.items():
        assert store.client.type(_key(model, v)) in (kind, kind.encode())
        store.save(model("blue", 1.0, f"S{v}", id=f"n{v}"))  # its unique value is free


# ---- 30AQ F2 and F3: rotations over objects they cannot read ------------------------------


@redmodel.model(prefix="fx30rp")
@attrs.define
class Patient:
    name: str
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    note: str = redmodel.field(codec="json|fernet", default="")   # encrypted, not indexed
    tag: str = redmodel.field(codec="msgpack|fernet", default="")  # another chain
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx30rl", layout="blob", codec="json|fernet")
@attrs.define
class Letter:
    body: str
    id: str = redmodel.key_field(generated=False)


def _flip(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def _spoil(store: redmodel.Store, key: str, field: str | None, how: str) -> None:
    """Make one stored value unreadable: a flipped byte, plaintext (no header), or a value
    of another chain (``json``, or the ``msgpack|fernet`` of another field)."""
    c = store.client
    raw = c.get(key) if field is None else c.hget(key, field)
    # a value of the model's other key-holding chain (note: json|fernet, tag: msgpack|fernet)
    other = c.hget(key, "note" if field == "tag" else "tag") if field is not None else None
    new = {"flip": _flip(raw), "plain": b"987-65-4321", "json": b'\xa7\x04json"x"',
           "chain": other if other is not None else b'\xa7\x04json"x"'}[how]
    if field is None:
        c.set(key, new, keepttl=True)
    else:
        c.hset(key, field, new)


SPOILS = ("flip", "plain", "json", "chain")


@settings(max_examples=scaled(60, floor=8))
@given(n=st.integers(2, 8), data=st.data(), count=st.integers(1, 4))
def test_rotate_index_key_raises_for_an_object_it_cannot_read_and_never_looks_done(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, n: int, data: Any,
        count: int) -> None:
    """30AQ F2 as a kind: steps 2 and 4 raise DecodeError naming a damaged object's key;
    each damaged object's entries stay under the older key (so it still counts: its ssn
    stays taken while both keys are configured); once the objects are repaired the
    rotation completes and no entry names the old key id."""
    store.client.flushall()
    old, new = redmodel.generate_index_key(), redmodel.generate_index_key()
    use_keys(monkeypatch, index=[old])
    ids = [f"p{i}" for i in range(n)]
    pats = [Patient(f"n{i}", f"{i:03d}-00-0000", "n", "t", id=ids[i]) for i in range(n)]
    store.save_many(pats)
    bad = data.draw(st.sets(st.sampled_from(ids), min_size=1))
    for b in sorted(bad):
        _spoil(store, _key(Patient, b), data.draw(st.sampled_from(["ssn", "note"])),
               data.draw(st.sampled_from(SPOILS)))
    bad_keys = {_key(Patient, b) for b in bad}
    old_kid = _kid(_raw_key(old.encode())).encode()

    def left_under_old() -> set[str]:
        """The objects whose index record still names the old key id."""
        records = store.client.hgetall("fx30rp:%idx:rec")
        return {i for i in ids if old_kid + b"." in records.get(i.encode(), b"")}

    redmodel.configure_index_keys(keys=[new, old])
    with pytest.raises(redmodel.DecodeError) as e:
        store.rotate_index_key(Patient, count=count, progress=False)          # step 2
    assert e.value.key in bad_keys and e.value.key in str(e.value)
    assert bad <= left_under_old()
    for b in bad:  # its value stays taken while the older key is configured
        with pytest.raises(redmodel.UniqueViolationError):
            store.save(Patient("eve", pats[ids.index(b)].ssn, id="eve"))
    redmodel.configure_index_keys(keys=[new])
    with pytest.raises(redmodel.DecodeError) as e:
        store.rotate_index_key(Patient, count=count, progress=False)          # step 4
    assert e.value.key in bad_keys
    assert bad <= left_under_old()
    # repaired (saved again whole): the rotation completes, nothing under the old key
    redmodel.configure_index_keys(keys=[new, old])
    store.save_many([p for p in pats if p.id in bad])
    store.rotate_index_key(Patient, count=count, progress=False)
    redmodel.configure_index_keys(keys=[new])
    store.rotate_index_key(Patient, count=count, progress=False)
    assert left_under_old() == set()
    assert store.verify(Patient) == []
    for p in pats:
        assert store.find(Patient, ssn=p.ssn).ids() == [p.id]


@settings(max_examples=scaled(60, floor=8))
@given(n=st.integers(2, 8), data=st.data(), count=st.integers(1, 4),
       blob=st.booleans())
def test_rotate_keys_raises_for_a_value_no_chain_of_its_field_decodes(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, n: int, data: Any,
        count: int, blob: bool) -> None:
    """30AQ F3 as a kind: rotate_keys raises DecodeError naming a damaged object's key (a
    plaintext value, one of another chain, a flipped byte), and leaves the damaged values
    as they were; the readable objects decode under the newest key once the damaged ones
    are deleted and the rotation runs again."""
    store.client.flushall()
    oldf = redmodel.codecs.FernetTransform.generate_key()
    newf = redmodel.codecs.FernetTransform.generate_key()
    use_keys(monkeypatch, fernet=[oldf])
    ids = [f"r{i}" for i in range(n)]
    model: type = Letter if blob else Patient
    objs = [Letter(f"b{i}", id=i_) if blob else Patient(f"n{i}", f"{i:03d}-00-0000", "n",
                                                         "t", id=i_)
            for i, i_ in enumerate(ids)]
    store.save_many(objs)
    bad = data.draw(st.sets(st.sampled_from(ids), min_size=1))
    for b in sorted(bad):
        field = None if blob else data.draw(st.sampled_from(["ssn", "note", "tag"]))
        _spoil(store, _key(model, b), field, data.draw(st.sampled_from(SPOILS)))
    bad_keys = {_key(model, b) for b in bad}

    def raw(key: str) -> Any:
        return store.client.get(key) if blob else store.client.hgetall(key)

    before = {k: raw(k) for k in bad_keys}
    redmodel.codecs.configure_fernet(keys=[newf, oldf])
    with pytest.raises(redmodel.DecodeError) as e:
        store.rotate_keys(model, count=count)
    assert e.value.key in bad_keys and e.value.key in str(e.value)
    assert {k: raw(k) for k in bad_keys} == before
    store.delete_many(model, sorted(bad))
    store.rotate_keys(model, count=count)
    redmodel.codecs.configure_fernet(keys=[newf])
    assert sorted(o.id for o in store.get_many(model, [o.id for o in objs if o.id not in bad])
                  if o is not None) == sorted(set(ids) - bad)
