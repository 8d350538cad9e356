"""Second round of attacks on issue 17 (strict decoding, save_many chunk paths, index
header, Query.count, chunk_size from URL, Consumer idle_timeout). Each test states a
promise of docs/*.md; failing ones are findings (`# F<n>:`), the others held and are kept
for regression value."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import threading
import time
import uuid
from typing import Any

import attrs
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel import Q, between, one_of
from redmodel.cli import main
from redmodel.transactions import Transaction
from tests.budget import scaled
from tests.faults import proxied_store

redmodel.codecs.configure_fernet(keys=[Fernet.generate_key()])


@attrs.define
class Inner:
    f: float
    d: dt.datetime


def _fields(codec: str | None) -> dict[str, Any]:
    def fld(**kw: Any) -> Any:
        if codec is not None:
            kw["codec"] = codec
        return redmodel.field(**kw)
    return {
        "f": fld(),
        "i": fld(),
        "when": fld(),
        "day": fld(),
        "tm": fld(),
        "dec": fld(),
        "u": fld(),
        "inner": fld(),
        "of": fld(default=None),
        "fl": fld(factory=list),
    }


ANN = {"f": float, "i": int, "when": dt.datetime, "day": dt.date, "tm": dt.time,
       "dec": decimal.Decimal, "u": uuid.UUID, "inner": Inner, "of": float | None,
       "fl": list[float]}


def _make(name: str, prefix: str, fcodec: str | None = None, **model_kw: Any) -> Any:
    ns: dict[str, Any] = {"__annotations__": dict(ANN, id=str)}
    ns.update(_fields(fcodec))
    ns["id"] = redmodel.key_field(generated=False)
    cls = type(name, (), ns)
    return redmodel.model(prefix=prefix, **model_kw)(attrs.define(cls))


MODELS = [
    _make("HashM", "a17c_h"),
    _make("FlatM", "a17c_f", layout="flat"),
    _make("BlobJ", "a17c_bj", layout="blob", codec="json"),
    _make("BlobM", "a17c_bm", layout="blob", codec="msgpack"),
    _make("BlobY", "a17c_by", layout="blob", codec="yaml"),
    _make("BlobMZF", "a17c_bz", layout="blob", codec="msgpack|zlib|fernet"),
    _make("HashJ", "a17c_hj", fcodec="json"),
    _make("HashM2", "a17c_hm", fcodec="msgpack"),
    _make("HashY", "a17c_hy", fcodec="yaml"),
    _make("HashF", "a17c_hf", fcodec="json|fernet"),
]
HashM, FlatM, BlobJ, BlobM = MODELS[:4]       # by name, for the CLI's --models

floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 5e-324, 2.2250738585072014e-308, 1e-310, 1.7976931348623157e308, 1e16, 1e22,
     123456789012345680.0, 0.1 + 0.2, 2.0**53, -2.0**63])
ints = st.integers(-(2**53), 2**53) | st.integers(-(2**80), 2**80)
tzs = st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=-12)),
                       dt.timezone(dt.timedelta(hours=5, minutes=45)),
                       dt.timezone(dt.timedelta(hours=23, minutes=59, seconds=59))])
whens = st.datetimes(timezones=tzs).map(lambda d: d.replace(fold=0))   # fold: not stored
times = st.times(timezones=tzs).map(lambda t: t.replace(fold=0))
decs = st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [decimal.Decimal("1E+3"), decimal.Decimal("1.00"), decimal.Decimal("-0"),
     decimal.Decimal("1E-30"), decimal.Decimal("0E-7"), decimal.Decimal("123.4560E+12")])


def objs(cls: Any) -> Any:
    return st.builds(cls, f=floats, i=ints, when=whens, day=st.dates(), tm=times, dec=decs,
                     u=st.uuids(), of=st.none() | floats,
                     inner=st.builds(Inner, f=floats, d=whens),
                     fl=st.lists(floats, max_size=3),
                     id=st.text(alphabet="ab:{}*%\\", min_size=1, max_size=5))


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0 and Decimal('1.0') from Decimal('1.00')."""
    return repr(a) == repr(b) and a == b


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=scaled(6), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_written_value_reads_back_strictly(store: redmodel.Store, model: Any,
                                                 data: Any) -> None:
    """migrations.md "Strict decoding": text is read only if it is exactly the text
    written for the value; whatever redmodel itself writes (save, save_many, every codec
    chain, flat leaves, blobs, encrypted fields) reads back, equal, on every read path."""
    obj = data.draw(objs(model))
    store.save(obj)
    got = store.get(model, obj.id)
    assert _same(got, obj), (got, obj)
    many = data.draw(st.lists(objs(model), max_size=3, unique_by=lambda o: o.id))
    store.save_many(many)
    back = store.get_many(model, [o.id for o in many])
    assert all(_same(a, b) for a, b in zip(back, many, strict=True))
    assert all(_same(a, b) for a, b in zip(store.get_many(model, [o.id for o in many]),
                                           many, strict=True))


@redmodel.model(prefix="a17c_n")
@attrs.define
class Num:
    x: float = 0.0
    n: int = 0
    inner: Inner = attrs.Factory(lambda: Inner(0.0, dt.datetime(2000, 1, 1)))
    ox: float | None = None
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c_nf", layout="flat")
@attrs.define
class NumFlat:
    x: float = 0.0
    n: int = 0
    id: str = redmodel.key_field(generated=False)


amounts = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300) \
    | st.sampled_from([-0.0, 5e-324, 1e-310, 0.1, 1e-7, 1e21, 1e16 + 1, -1e-300, 2.0**70])


@settings(max_examples=scaled(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=amounts, steps=st.lists(amounts, min_size=1, max_size=3),
       k=st.integers(-(2**63), 2**63 - 1))
def test_what_redis_writes_reads_back(store: redmodel.Store, start: float, steps: list[float],
                                      k: int) -> None:
    """migrations.md "Strict decoding": "a `float` field reads any decimal text, as
    HINCRBYFLOAT writes it"; models.md: an int field's "HINCRBY works". The values Redis
    itself writes with HINCRBYFLOAT / HINCRBY / INCRBYFLOAT (flat leaves are plain strings)
    read back as the float Redis holds."""
    c = store.client
    store.save(Num(x=start, id="a"))
    store.save(NumFlat(x=start, id="a"))
    ok = True
    for s in steps:
        try:
            c.hincrbyfloat("a17c_n:a", "x", s)
            c.hincrbyfloat("a17c_n:a", "inner:f", s)
            c.hincrbyfloat("a17c_n:a", "ox", s)
        except Exception:   # Redis refuses a sum it cannot hold (inf): not this test
            ok = False
            break
    c.hincrby("a17c_n:a", "n", k)
    if not ok:
        return
    raw = c.hget("a17c_n:a", "x")
    got = store.get(Num, "a")
    assert got is not None
    assert got.x == float(raw) and got.inner.f == float(c.hget("a17c_n:a", "inner:f"))
    assert got.ox == float(c.hget("a17c_n:a", "ox")) and got.n == k
    leaves = [k_ for k_ in c.keys("a17c_nf*") if b"%schema" not in k_]
    xleaf = next(k_ for k_ in leaves if k_.endswith(b"x"))
    try:
        for s in steps:
            c.incrbyfloat(xleaf, s)
    except Exception:
        return
    gf = store.get(NumFlat, "a")
    assert gf is not None and gf.x == float(c.get(xleaf))


@settings(max_examples=scaled(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=amounts, steps=st.lists(amounts, min_size=1, max_size=3),
       ints_=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=3),
       new=st.sampled_from([0.0, -0.0, 5e-324, 1e300, 0.1, 2.0**63]))
def test_what_redmodel_counters_and_update_write_reads_back(
        store: redmodel.Store, start: float, steps: list[float], ints_: list[int],
        new: float) -> None:
    """store.md: incr "the sum in double written as its shortest text (repr, as a save
    writes it)"; what incr, incr_fields and update write reads back as the value they
    returned, on get and get_many."""
    store.save(Num(x=start, id="b"))
    x = start
    for s in steps:
        with contextlib.suppress(redmodel.ConditionFailedError):
            x = store.incr(Num, "b", "x", s)
    n = 0
    for i in ints_:
        with contextlib.suppress(redmodel.ConditionFailedError):
            n = store.incr_fields(Num, "b", {"n": i, "inner.f": 0.5})["n"]
    got = store.get(Num, "b")
    assert got is not None and repr(got.x) == repr(x) and got.n == n
    store.update(Num, "b", x=new, ox=new)
    [g2] = store.get_many(Num, ["b"])
    assert g2 is not None and repr(g2.x) == repr(new) and repr(g2.ox) == repr(new)


# ---- (b) save_many chunk paths: same bytes, same errors -----------------------------------


@redmodel.model(prefix="a17c_sp")
@attrs.define
class SPlain:                      # no Optional, no TTL: the plain HSET chunk path
    s: str
    n: int
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c_so")
@attrs.define
class SOpt:                        # an Optional field: the hash_save.lua path
    s: str
    n: int
    o: str | None = None
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c_st", ttl=60)
@attrs.define
class STtl:
    s: str
    n: int
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c_sf", layout="flat")
@attrs.define
class SFlat:
    s: str
    n: int
    tags: list[str] = attrs.Factory(list)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c_sb", layout="blob")
@attrs.define
class SBlob:
    s: str
    n: int
    id: str = redmodel.key_field(generated=False)


SMODELS = [SPlain, SOpt, STtl, SFlat, SBlob]


def _keyset(c: Any) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for k in sorted(c.keys("a17c_s*")):
        if b"%schema" in k:
            continue
        t = c.type(k)
        out[k] = (t, c.hgetall(k) if t == b"hash" else c.get(k) if t == b"string"
                  else c.lrange(k, 0, -1) if t == b"list" else None, c.ttl(k) > 0)
    return out


@pytest.mark.parametrize("model", SMODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("ttl", [redmodel.DEFAULT if hasattr(redmodel, "DEFAULT") else None,
                                 30])
def test_save_many_writes_what_save_writes(store: redmodel.Store, model: Any, ttl: Any) -> None:
    """store.md: save_many is "the same command per object" as save: the same keys,
    bytes and TTLs whichever path wrote them, whatever the chunk size and input kind."""
    c = store.client
    objs = [model(s=s, n=n, id=i) for s, n, i in
            [("", 0, "a"), ("x\u00e9", 2**70, "b:{c}"), ("y", -(2**63), "%*\\"),
             ("z", 5, "d")]]
    kw = {} if ttl is None or not isinstance(ttl, int) else {"ttl": ttl}
    for o in objs:
        store.save(o, **kw)
    want = _keyset(c)
    for chunk in (1, 3, 500):
        c.delete(*want)
        store.save_many(objs, chunk_size=chunk, **kw)
        assert _keyset(c) == want
        c.delete(*want)
        store.save_many((o for o in objs), chunk_size=chunk, **kw)
        assert _keyset(c) == want


def _mixed() -> list[Any]:
    return [SPlain("p0", 0, id="m0"), SFlat("f1", 1, ["t"], id="m1"), SOpt("o2", 2, "x", id="m2"),
            SPlain("p3", 3, id="m3"), SBlob("b4", 4, id="m4"), STtl("t5", 5, id="m5"),
            SFlat("f6", 6, id="m6"), SPlain("p7", 7, id="m7")]


@pytest.mark.parametrize("planted", range(8))
@pytest.mark.parametrize("as_gen", [False, True])
def test_save_many_mixed_models_wrongtype_written_lists_are_exact(
        store: redmodel.Store, planted: int, as_gen: bool) -> None:
    """store.md: "An object the server refuses (a unique value taken, a wrong-typed key)
    stops the call after its chunk: the error says which objects were written and which
    not, and carries their keys (`.written`, `.not_written`)". Mixed models in one call,
    chunk_size=3: the objects of chunks after the refused one are not written, every
    object is in exactly one list, and each list tells the truth about Redis."""
    c = store.client
    objs = _mixed()
    for o in objs:                      # learn each object's keys, then start empty
        store.save(o)
    before = set(_keyset(c))
    c.delete(*before)
    victim = objs[planted]
    store.save(victim)
    vkeys = set(_keyset(c))
    c.delete(*vkeys)
    vkey = sorted(vkeys, key=len)[0]
    c.rpush(vkey, "planted")
    if isinstance(victim, SBlob):       # SET replaces a key of any type: nothing to refuse
        store.save_many(objs, chunk_size=3)
        assert store.get(SBlob, victim.id) == victim
        return
    with pytest.raises(redmodel.RedmodelError) as ei:
        store.save_many(iter(objs) if as_gen else objs, chunk_size=3)
    e = ei.value
    written = {k if isinstance(k, bytes) else k.encode() for k in e.written}  # type: ignore[attr-defined]
    not_written = {k if isinstance(k, bytes) else k.encode()
                   for k in e.not_written}  # type: ignore[attr-defined]
    assert not written & not_written
    chunk = planted // 3
    read = len(objs) if not as_gen else min(len(objs), 3 * (chunk + 1))  # a generator: no further
    assert len(written) + len(not_written) == read, (written, not_written)
    later = {i for i in range(len(objs)) if i // 3 > chunk}
    for i, o in enumerate(objs):
        got = store.get(type(o), o.id) if o is not victim else None
        if i in later:
            assert got is None, (i, o)
        if o is not victim and got is not None:
            assert got == o
    for k in not_written:
        if k not in vkeys:
            assert not c.exists(k), k                   # .not_written: really not written
    for k in written:
        assert c.exists(k), k
    assert c.type(vkey) == b"list" and c.lrange(vkey, 0, -1) == [b"planted"]


# ---- (c) index_write_many: objects of different TTLs and modes in one call --------------


@redmodel.model(prefix="a17c_ia")
@attrs.define
class IA:
    color: str = redmodel.field(index=True)
    n: int = redmodel.field(index="range", default=0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c_ib", ttl=60)
@attrs.define
class IB:
    color: str = redmodel.field(index=True)
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a17c_ie", ttl=1.0)
@attrs.define
class IE:
    color: str = redmodel.field(index=True)
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


def _scan_ids(store: redmodel.Store, model: Any, **eq: Any) -> set[str]:
    return {o.id for o in store.scan(model)
            if all(getattr(o, k) == v for k, v in eq.items())}


def _ix_scenario(store: redmodel.Store, kw: dict[str, Any], many: bool) -> dict[str, Any]:
    c = store.client
    for k in c.keys("a17c_i[ab]*"):
        c.delete(k)
    store.save_many([IA("red", i, sku=f"s{i}", id=f"a{i}") for i in range(4)]
                    + [IB("red", i, id=f"b{i}") for i in range(4)])
    store.expire(IA, "a1", 100)
    store.persist(IB, "b1")
    tracked = [store.get(IA, "a0"), store.get(IB, "b0"), store.get(IA, "a1"),
               store.get(IB, "b1")]
    for t in tracked:
        assert t is not None
        t.color = "blue"
        t.n += 10
    fresh = [IA("green", 7, sku="s9", id="a9"), IB("green", 8, id="b9"),
             IA("red", 2, sku=None, id="a2"), IB("blue", 3, id="b3")]
    mix = [tracked[0], fresh[0], tracked[1], fresh[1], tracked[2], fresh[2], tracked[3],
           fresh[3]]
    if many:
        assert store.save_many(mix, chunk_size=3, **kw) == len(mix)
    else:
        for o in mix:
            store.save(o, **kw)
    for model in (IA, IB):
        assert store.verify(model) == []
        for color in ("red", "blue", "green"):
            want = _scan_ids(store, model, color=color)
            assert set(store.find(model, color=color).ids()) == want
            assert store.find(model, color=color).count() == len(want)
    assert store.find(IA, sku="s9").ids() == ["a9"]
    out: dict[str, Any] = {}
    for model in (IA, IB):
        for o in store.scan(model):
            p = store.pttl(model, o.id)
            out[f"{model.__name__}:{o.id}"] = (o, p is not None and p > 0,
                                               p is not None and p > 30_000)
    return out


@pytest.mark.parametrize("ttl", ["default", None, 5, 20.25])
def test_index_write_many_mixed_ttls_and_modes_stay_right(store: redmodel.Store,
                                                          ttl: Any) -> None:
    """queries.md "How entries stay right" and store.md (save_many: "the same command per
    object"): save_many of indexed objects of different models (with and without a
    TTL), new and existing, some loaded by get (tracked) and changed, in chunks, leaves
    verify clean, queries equal to a scan, and every object as save leaves it (TTL kept,
    set or replaced alike). (A TTL with a fraction of a second is 20.25 s, not 0.2 s: the
    objects must outlive the checks, which took longer than 0.2 s on a loaded machine.)"""
    kw = {} if ttl == "default" else {"ttl": ttl}
    one = _ix_scenario(store, kw, many=False)
    assert _ix_scenario(store, kw, many=True) == one


def test_count_after_expiry_matches_scan(store: redmodel.Store) -> None:
    """queries.md: "an expired object never appears in a result or a count"; count's
    one-command path included (one term, no filter, a range)."""
    store.save_many([IE("red", i, id=f"e{i}") for i in range(5)])
    saved = time.monotonic()  # their expiry (the model's 1 s) counts from before this
    store.save_many([IE("red", i, id=f"k{i}") for i in range(3)], ttl=None)
    assert store.find(IE, color="red").count() == 8  # (0.15 s was too short a while for
    assert store.find(IE).count() == 8              # these on a slow machine)
    time.sleep(max(0.0, saved + 1.0 - time.monotonic()) + 0.05)
    assert store.find(IE, color="red").count() == 3
    assert store.find(IE).count() == 3
    assert store.find(IE, n=between(0, 10)).count() == 3
    assert store.find(IE, color="red").limit(2).count() == 2
    assert store.find(IE, color="red").offset(2).count() == 1
    assert store.find(IE, color="red").offset(5).count() == 0
    assert store.verify(IE) == []


# ---- (d) Query.count's one-command path under other stores ------------------------------


@redmodel.model(prefix="a17c_q")
@attrs.define
class QC:
    color: str = redmodel.field(index=True)
    n: int = redmodel.field(index="range", default=0)
    id: str = redmodel.key_field(generated=False)


def _qc_without(field: str) -> Any:
    ns: dict[str, Any] = {"__annotations__": {"color": str, "n": int, "id": str}}
    ns["color"] = redmodel.field(index=field != "color")
    ns["n"] = redmodel.field(index=False if field == "n" else "range", default=0)
    ns["id"] = redmodel.key_field(generated=False)
    cls = type("QC", (), ns)
    return redmodel.model(prefix="a17c_q")(attrs.define(cls))


COUNTS = {
    "color": [lambda s: s.find(QC, color="red"), lambda s: s.find(QC, color=one_of(["red", "x"])),
              lambda s: s.find(QC, ~Q(color="red")),
              lambda s: s.find(QC, color="red").limit(1),
              lambda s: s.find(QC, color="red").offset(1)],
    "n": [lambda s: s.find(QC, n=between(0, 9)), lambda s: s.find(QC, ~Q(n=between(0, 1)))],
}


@pytest.mark.parametrize("field", ["color", "n"])
@pytest.mark.parametrize("how", ["drop", "building"])
def test_count_notices_index_changed_by_another_store(redis_client: Any, field: str,
                                                      how: str) -> None:
    """queries.md: a running store sees "a rolling deploy turning an index back to
    `building`" or `drop_index` on its next query: IndexNotReadyError, not a count from
    its cached compiled query (count's one-command path included)."""
    a = redmodel.Store(redis_client)
    a.save_many([QC("red", i, id=f"a{i}") for i in range(3)])
    for mk in COUNTS[field]:
        mk(a).count()
        mk(a).count()                   # compiled and cached
    without = _qc_without(field)
    b = redmodel.Store(redis_client)
    b.get(without, "a0")
    b.drop_index(without, field)
    b.save(without("red", 1, id="b0"))  # in no `field` index
    if how == "building":
        redmodel.Store(redis_client).get(QC, "a0")   # the older version again: building
    for mk in COUNTS[field]:
        with pytest.raises(redmodel.IndexNotReadyError):
            mk(a).count()
        with pytest.raises(redmodel.IndexNotReadyError):
            mk(a).exists()


def test_count_exact_under_writers(redis_url: str, store: redmodel.Store) -> None:
    """queries.md: "count() is exact"; with writers adding and deleting objects, each count
    lies between the fewest and the most objects that ever matched, and equals a scan once
    they stop."""
    base = [QC("red", i, id=f"w{i}") for i in range(20)]
    store.save_many(base)
    stop = threading.Event()

    def writer() -> None:
        w = redmodel.Store.from_url(redis_url)
        i = 0
        while not stop.is_set():
            w.save(QC("red", 100 + i % 5, id=f"x{i % 5}"))
            w.delete(QC, f"x{(i + 2) % 5}")
            i += 1
        w.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(40):
            for q in (store.find(QC, color="red"), store.find(QC),
                      store.find(QC, n=between(0, 200))):
                assert 20 <= q.count() <= 25
    finally:
        stop.set()
        t.join()
    want = _scan_ids(store, QC, color="red")
    assert store.find(QC, color="red").count() == len(want)
    assert store.verify(QC) == []


# ---- (e) chunk_size from from_url / from_env ---------------------------------------------


def test_from_url_and_from_env_take_chunk_size(redis_url: str, monkeypatch: Any) -> None:
    """Store.from_url/from_env: "chunk_size and registry as for the constructor": the
    store's default chunk for save_many/get_many is that one (a generator with a bad
    object in its third element: the first chunk written, as the constructor's store)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    stores = [redmodel.Store(redmodel.Store.from_url(redis_url).client, chunk_size=2),
              redmodel.Store.from_url(redis_url, chunk_size=2),
              redmodel.Store.from_env(chunk_size=2)]
    results = []
    for s in stores:
        s.client.delete(*[f"a17c_sp:g{i}" for i in range(4)])
        objs = [SPlain("a", 1, id="g0"), SPlain("b", 2, id="g1"),
                SPlain("c", "bad", id="g2"),  # type: ignore[arg-type]
                SPlain("d", 4, id="g3")]
        with pytest.raises(redmodel.ValidationError) as ei:
            s.save_many(o for o in objs)
        results.append((sorted(ei.value.written), sorted(ei.value.not_written),  # type: ignore[attr-defined]
                        [s.get(SPlain, f"g{i}") is not None for i in range(4)]))
        s.close()
    assert results[0] == results[1] == results[2]
    assert results[0][2] == [True, True, False, False]
    with pytest.raises((ValueError, TypeError, redmodel.RedmodelError)):
        redmodel.Store.from_url(redis_url, chunk_size=0)


# ---- (f) a Consumer's idle_timeout counts waiting only --------------------------------------


@pytest.mark.parametrize("reliable", [True, False])
def test_idle_timeout_does_not_count_the_loop_body(store: redmodel.Store, reliable: bool) -> None:
    """containers.md: idle_timeout is "counted while the consumer waits and the server
    answers (neither the loop body's time nor an outage counts: a slow handler ... never
    ends the loop as "idle" while values wait in the queue)"."""
    q = redmodel.containers.Queue(store, ("a17c", "slow", str(reliable)), str)
    q.push("a", "b", "c")
    consumer = q.consume(idle_timeout=0.1, poll=0.03, reliable=reliable)
    got = []
    for item in consumer:
        got.append(item)
        time.sleep(0.15)
    assert got == ["a", "b", "c"] and consumer.stopped_by == "idle"
    assert q.length() == 0


def test_async_idle_timeout_does_not_count_the_loop_body(redis_url: str) -> None:

    async def run() -> tuple[list[str], Any]:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            q = redmodel.containers.Queue(astore, ("a17c", "aslow"), str)
            await q.push("a", "b", "c")
            got = []
            async with q.consume(idle_timeout=0.1, poll=0.03) as consumer:
                async for item in consumer:
                    got.append(item)
                    await asyncio.sleep(0.15)
            return got, consumer.stopped_by

    got, why = asyncio.run(run())
    assert got == ["a", "b", "c"] and why == "idle"


TAKES = ("EVALSHA", "EVAL", "BLMOVE", "BLPOP", "LMOVE", "LPOP", "BRPOPLPUSH", "RPOPLPUSH")


@pytest.mark.parametrize(("fault", "reliable"), [("stall", True), ("stall", False),
                                                ("drop", True)])
def test_idle_timeout_does_not_count_an_outage(redis_server: Any, redis_client: Any,
                                               fault: str, reliable: bool) -> None:
    """containers.md: an outage does not count toward idle_timeout: "a server restart
    never ends the loop as "idle" while values wait in the queue". (A dropped BLPOP of
    the at-most-once loop is OutcomeUnknownError by design, so not drawn here.)"""
    key = ("a17c", "out", fault, str(reliable))
    with proxied_store(redis_server) as (proxy, store):
        q = redmodel.containers.Queue(store, key, str)
        q.push("a", "b", "c")
        consumer = q.consume(idle_timeout=0.15, poll=0.03, reliable=reliable)
        got = []
        for item in consumer:
            got.append(item)
            if len(got) == 1:
                if fault == "stall":
                    proxy.stall(lambda n: n.upper() in TAKES, 0.4)
                else:
                    proxy.drop_request(lambda n: n.upper() in TAKES)
        store.close()
    assert set(got) == {"a", "b", "c"} and consumer.stopped_by == "idle", (got,
                                                                               proxy.events)


@settings(max_examples=scaled(10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_update_transaction_and_async_writes_read_back_strictly(
        redis_url: str, store: redmodel.Store, data: Any) -> None:
    """migrations.md "Strict decoding" on what update, a transaction's save and an
    AsyncStore's save write: every value reads back equal on every path."""
    model = MODELS[0]
    a, b = data.draw(objs(model)), data.draw(objs(model))
    store.save(a)
    changes = {k: getattr(b, k) for k in ("f", "i", "when", "day", "tm", "dec", "u", "of")}
    assert store.update(model, a.id, **changes)
    want = attrs.evolve(a, **changes)
    assert _same(store.get(model, a.id), want)
    with Transaction(store) as tx:
        tx.save(b)
    assert _same(store.get(model, b.id), b)

    async def run() -> Any:
        async with redmodel.AsyncStore.from_url(redis_url) as astore:
            await astore.save(a)
            return await astore.get(model, a.id)

    assert _same(asyncio.run(run()), a)
    assert _same(store.get(model, a.id), a)


def test_export_import_round_trips_every_value(redis_url: str, store: redmodel.Store,
                                               tmp_path: Any) -> None:
    """cli.md export/import: "values as redmodel's json codec writes them", and import
    checks "every field against its declared type, strictly": what export writes is read
    back by import, equal (hash and blob models, extreme values)."""
    tz = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    vals = dict(f=-0.0, i=2**80, when=dt.datetime(1, 1, 1, tzinfo=tz),
                day=dt.date(9999, 12, 31), tm=dt.time(23, 59, 59, 999999, tzinfo=tz),
                dec=decimal.Decimal("123.4560E+12"), u=uuid.UUID(int=0),
                inner=Inner(5e-324, dt.datetime(2000, 2, 29, 12)), of=1.7976931348623157e308,
                fl=[1e-310, -2.0**63, 0.1 + 0.2])
    objs_ = [m(**vals, id="x:{y}*%") for m in MODELS[:4]]
    store.save_many(objs_)
    out = tmp_path / "dump.jsonl"
    models = [f"--models=tests.test_attack17c:{m.__name__}" for m in MODELS[:4]]
    with pytest.raises(SystemExit) as ei:
        main(["export", "--url", redis_url, *models, "-o", str(out)])
    assert ei.value.code in (0, None)
    store.client.flushall()
    with pytest.raises(SystemExit) as ei:
        main(["import", "--url", redis_url, *models, "-i", str(out)])
    assert ei.value.code in (0, None)
    for o in objs_:
        assert _same(store.get(type(o), o.id), o)
