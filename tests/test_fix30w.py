"""Session 30 fix W: attack 30AW F1-F3 (the findings' own tests: tests/test_attack30aw.py).

- F1, the kind: a rotation step (rotate_index_key, steps 2 and 4) meeting an index record
  whose object is gone (a raw DEL, an expiry not swept yet, a key of another type written
  over it) before the step, after its sweep, between its check and its read of the object,
  or between the steps. The step drops that object's record, entries and unique values
  (as reindex's pass 2 does) and counts it; when a run answers 0 no entry names the old
  key id; a key of another type is never a WRONGTYPE stop, and is left alone.
- F2, the kind: a unique value whose holder's key is gone or holds another type, with or
  without an index record, on a model without buckets (and, to show both agree, one with):
  every writer that wants it (save, save_many, update, a transaction's save or update)
  takes it over; get_by of it before finds nothing; a value a live object holds is still
  refused.
- F3, the kind: a flat object's stored manifest cut short at any byte, with any bytes
  appended, a leaf line changed, swapped, dropped or repeated, its skeleton respelled:
  get and get_many raise DecodeError naming the key, never another value (generic and
  generated readers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes import _repair, _rotate
from redmodel._indexes._blind import _kid, _raw_key
from redmodel._models._specs import spec_of
from tests import strategies as S
from tests.budget import scaled
from tests.keys import use_keys

TYPES = ("string", "list", "set", "zset", "stream")


def _key(model: type, id_value: str) -> str:
    return spec_of(model).key_for(id_value)


def _plant(store: redmodel.Store, model: type, id_value: str, kind: str) -> None:
    """The object gone: its expiry passed (not swept yet), or behind redmodel's back (a
    raw DEL, a key of another type written over it)."""
    client, key = store.client, _key(model, id_value)
    if kind == "expire":
        store.expire(model, id_value, 0.001)
        time.sleep(0.005)
        assert not client.exists(key)
        return
    client.delete(key)
    if kind == "del":
        return
    {"string": lambda: client.set(key, "x"), "list": lambda: client.rpush(key, "x"),
     "set": lambda: client.sadd(key, "x"), "zset": lambda: client.zadd(key, {"x": 1}),
     "stream": lambda: client.xadd(key, {"x": "1"})}[kind]()


def _left(client: Any, key: str, kind: str) -> None:
    """A key of another type is not redmodel's: left as it was."""
    if kind in TYPES:
        assert client.type(key) in (kind, kind.encode())
    else:
        assert not client.exists(key)


# ---- F1 ---------------------------------------------------------------------------------


@redmodel.model(prefix="fx30wp")
@attrs.define
class Patient:
    name: str
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx30wq", buckets=2)
@attrs.define
class BucketedPatient:
    name: str
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    id: str = redmodel.key_field(generated=False)


def _under(store: redmodel.Store, model: type, key: str) -> set[str]:
    """Every index record line, unique entry and claim of ``model`` that names the key id
    of index key ``key``."""
    kid = _kid(_raw_key(key.encode())).encode()
    c = store.client
    found = set()
    for k in c.scan_iter(f"{spec_of(model).prefix}*%idx*"):
        if c.type(k) != b"hash":
            continue
        for f, v in c.hgetall(k).items():
            if f.startswith(kid + b".") or (k.endswith(b"rec") and kid + b"." in v):
                found.add(f"{k!r} {f!r}")
    return found


WHEN = ("before", "after-sweep", "after-check", "between")


@settings(max_examples=scaled(100, floor=10))
@given(model=st.sampled_from([Patient, BucketedPatient]), n=st.integers(1, 6),
       data=st.data(), count=st.integers(1, 4), when=st.sampled_from(WHEN))
def test_a_rotation_drops_a_gone_objects_entries_and_is_done_only_when_none_names_the_old_key(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, model: type, n: int,
        data: Any, count: int, when: str) -> None:
    """F1 as a kind: whatever made the object gone and whenever, the steps drop its
    record, entries and unique values and count it; the last run answers 0 and then no
    entry names the old key id, verify is [], the survivors are found, the gone objects'
    values are free, and a key of another type is left alone."""
    store.client.flushall()
    old, new = redmodel.generate_index_key(), redmodel.generate_index_key()
    use_keys(monkeypatch, index=[old])
    ids = [f"p{i}" for i in range(n)]
    pats = [model(f"n{i}", f"{i:03d}-00", id=ids[i]) for i in range(n)]
    store.save_many(pats)
    victims = data.draw(st.sets(st.sampled_from(ids), min_size=1))
    kinds = {v: data.draw(st.sampled_from(("del", "expire", *TYPES))) for v in sorted(victims)}
    planted: list[bool] = []

    def plant() -> None:
        if not planted:
            planted.append(True)
            for v, kind in kinds.items():
                _plant(store, model, v, kind)

    def after(gen: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any) -> Any:
            out = yield from gen(*args)
            plant()
            return out
        return wrapped

    if when == "before":
        plant()
    elif when == "after-sweep":  # gone after the step's sweep (an expiry not swept)
        monkeypatch.setattr(_rotate, "sweep_plan", after(_repair.sweep_plan))
    elif when == "after-check":  # gone between the check of its key and its read
        monkeypatch.setattr(_repair._Repair, "gone_page", after(_repair._Repair.gone_page))
    redmodel.configure_index_keys(keys=[new, old])
    done = store.rotate_index_key(model, count=count, progress=False)          # step 2
    if when == "between":
        assert done == n
        plant()
    else:
        assert planted
        # every stale object counted: rebuilt, or dropped (the expired ones the sweep
        # dropped before the step, when it saw them gone, are not)
        swept = sum(1 for k in kinds.values() if k == "expire") if when == "before" else 0
        assert done == n - swept
    redmodel.configure_index_keys(keys=[new])
    step4 = store.rotate_index_key(model, count=count, progress=False)         # step 4
    if when == "between":  # rebuilt at step 2, then gone: dropped (the expired ones by
        # the step's sweep, which it does not count)
        assert step4 >= sum(1 for k in kinds.values() if k != "expire")
    assert store.rotate_index_key(model, count=count, progress=False) == 0
    assert _under(store, model, old) == set()
    assert store.verify(model) == []
    for p in pats:
        got = store.get_by(model, ssn=p.ssn)
        assert (got.id if got is not None else None) == (None if p.id in victims else p.id)
        assert store.find(model, ssn=p.ssn).ids() == ([] if p.id in victims else [p.id])
    for v, kind in kinds.items():
        _left(store.client, _key(model, v), kind)
    for p in pats:
        if p.id in victims:  # its value is free
            store.save(model("new", p.ssn, id=f"n{p.id}"))
            assert store.get_by(model, ssn=p.ssn).id == f"n{p.id}"


# ---- F2 ---------------------------------------------------------------------------------


@redmodel.model(prefix="fx30wt")
@attrs.define
class Thing:
    color: str = redmodel.field(index=True)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx30wb", buckets=2)
@attrs.define
class BucketedThing:
    color: str = redmodel.field(index=True)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


CALLS = ("save", "save_many", "update", "tx_save", "tx_update")


def _write(store: redmodel.Store, model: type, call: str, obj: Any) -> None:
    if call == "save":
        store.save(obj)
    elif call == "save_many":
        store.save_many([obj])
    elif call == "update":
        assert store.update(model, obj.id, sku=obj.sku)
    elif call == "tx_save":
        store.transaction(lambda tx: tx.save(obj))()
    else:
        store.transaction(lambda tx: tx.update(model, obj.id, sku=obj.sku))()


@settings(max_examples=scaled(300, floor=30))
@given(model=st.sampled_from([Thing, BucketedThing]), kind=st.sampled_from(("del", *TYPES)),
       recorded=st.booleans(), call=st.sampled_from(CALLS), control=st.booleans())
def test_a_unique_value_whose_holder_is_no_object_goes_to_the_writer_that_wants_it(
        store: redmodel.Store, model: type, kind: str, recorded: bool, call: str,
        control: bool) -> None:
    """F2 as a kind: the holder's key gone or of another type (with an index record: an
    expiry; or without), on a model without buckets as on one with them: get_by finds no
    holder, every writer that wants the value takes it, the key of another type is left
    alone; a value a live object holds is still refused (``control``)."""
    store.client.flushall()
    store.save_many([model("red", "A", id="1"), model("red", "B", id="3"),
                     model("red", None, id="2")])
    if recorded:
        store.expire(model, "1", 3600)  # it keeps an index record
    _plant(store, model, "1", kind)
    assert store.get_by(model, sku="A") is None
    if control:  # held by a live object: refused, nothing written
        with pytest.raises(redmodel.UniqueViolationError):
            _write(store, model, call, model("green", "B", id="2"))
        assert store.get(model, "2") == model("red", None, id="2")
    obj = model("green" if call.endswith("save") or call == "save_many" else "red", "A", id="2")
    _write(store, model, call, obj)
    assert store.get(model, "2") == obj
    assert store.get_by(model, sku="A") == obj
    assert store.get_by(model, sku="B").id == "3"
    _left(store.client, _key(model, "1"), kind)
    store.reindex(model)
    assert store.verify(model) == []
    assert store.get_by(model, sku="A") == obj


# ---- F3 ---------------------------------------------------------------------------------


@attrs.define
class Sub:
    a: int = 0
    b: str = ""


@redmodel.model(prefix="fx30wf", layout="flat")
@attrs.define
class Flat:
    n: int = 0
    nn: int = 0
    tags: list[str] = attrs.field(factory=list)
    d: dict[str, int] = attrs.field(factory=dict)
    sub: Sub | None = None
    subs: list[Sub] = attrs.field(factory=list)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx30wg", layout="flat")
@attrs.define
class Fixed:
    """A fixed shape: read by the generated code."""

    n: int
    nn: int
    sub: Sub
    opt: Sub | None = None
    s: str | None = None
    id: str = redmodel.key_field(generated=False)


_KEYS = st.sampled_from(["a", "ab", "b", "a:b", "1", "10", "%", ""])
FLATS = S.instances(Flat, id=st.just("1"), tags=st.lists(st.sampled_from(["t", "u"]),
                                                             max_size=14),
                    d=st.dictionaries(_KEYS, st.integers(-3, 3), max_size=5),
                    subs=st.lists(S.instances(Sub), max_size=3))
FIXEDS = S.instances(Fixed, id=st.just("1"))
APPENDS = st.one_of(st.sampled_from([b"\n", b" ", b"0", b"1", b"\n\n", b"\nn", b":0", b"\t",
                                     b"}", b"\x00"]), st.binary(min_size=1, max_size=6))


@st.composite
def _spoiled(draw: Any) -> tuple[Any, Callable[[bytes], bytes]]:
    obj = draw(st.one_of(FLATS, FIXEDS))
    how = draw(st.sampled_from(["cut", "append", "line", "swap", "drop", "repeat", "space"]))
    cut, extra = draw(st.integers(1, 10**6)), draw(APPENDS)
    pick = draw(st.integers(0, 10**6))
    other = draw(st.integers(0, 10**6))

    def spoil(m: bytes) -> bytes:
        first, *lines = m.split(b"\n")
        if how == "cut" or (how != "append" and how != "space" and not lines):
            return m[: cut % len(m)]
        if how == "append":
            return m + extra
        if how == "space":
            return b"\n".join([first.replace(b":", b": ", 1), *lines])
        i, j = pick % len(lines), other % len(lines)
        if how == "line":  # a line changed: cut, extended, or another leaf's
            lines[i] = [lines[i][:-1], lines[i] + extra.replace(b"\n", b""), lines[j]][
                other % 3]
        elif how == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "drop":
            del lines[i]
        else:
            lines.insert(i, lines[j])
        return b"\n".join([first, *lines])

    return obj, spoil


@settings(max_examples=scaled(300, floor=30))
@given(case=_spoiled())
def test_a_flat_manifest_not_as_the_layout_wrote_it_is_refused_never_read_as_another_value(
        store: redmodel.Store, case: tuple[Any, Callable[[bytes], bytes]]) -> None:
    """F3 as a kind: a manifest cut at any byte, with bytes appended, a leaf line changed,
    swapped, dropped or repeated, or its skeleton respelled: get and get_many raise
    DecodeError naming the object key; the stored manifest reads as the object."""
    obj, spoil = case
    model = type(obj)
    key = _key(model, "1")
    store.client.flushall()
    store.save(obj)
    assert store.get(model, "1") == obj  # (the generated reader has seen this manifest)
    manifest = store.client.get(key)
    bad = spoil(manifest)
    if bad == manifest:
        return  # (swapping a line with itself, ...)
    store.client.set(key, bad)
    with pytest.raises(redmodel.DecodeError) as e:
        store.get(model, "1")
    assert e.value.key == key and key in str(e.value)
    with pytest.raises(redmodel.DecodeError) as e:
        store.get_many(model, ["1"])
    assert e.value.key == key
    store.client.set(key, manifest)
    assert store.get(model, "1") == obj
