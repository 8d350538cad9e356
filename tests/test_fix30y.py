"""Fix 30Y (attack 30AY F1-F3): a tracked partial save sends only the fields whose VALUE
changed since the object was loaded, whatever text the stored value had; and a tracked
save with a TTL (the model's ``ttl=`` or ``save(obj, ttl=...)``) is partial too, its
expiry set in the same script.

The property draws the kind: an object stored by redmodel, then some of its fields
rewritten by raw HSET in other texts of an equal value (what another program, another
process's hash seed, HINCRBYFLOAT or an older version writes: a set's member order, a
float's ``1``/``1e0``/``1.50``/``-0`` text, JSON's spacing and escapes, YAML's flow style,
msgpack's member order), loaded by two writers, then rewritten again in other texts; each
writer changes its own fields (disjoint) by a tracked save, ``update``, ``incr`` or a raw
HINCRBYFLOAT, in either order. Both changes survive, every other field reads as it was
(docs/queries.md "Only what changed"), an indexed model's verify finds nothing wrong, and
a TTL save leaves the key expiring."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import subprocess
import sys
import textwrap
from typing import Any

import attrs
import msgpack
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._layouts._same import same_value
from redmodel._models._specs import spec_of
from redmodel.codecs import codec
from tests.budget import scaled


@attrs.define
class Inner:
    level: float = 0.0
    labels: set[str] = attrs.Factory(set)


@redmodel.model(prefix="fix30y_h", track_changes=True)
@attrs.define
class Tracked:
    x: int = 0
    score: float = 0.0
    tags: set[str] = attrs.Factory(set)
    nums: frozenset[int] = redmodel.field(default=frozenset(), codec="msgpack")
    ratios: list[float] = attrs.Factory(list)
    meta: dict[str, float] = redmodel.field(factory=dict, codec="yaml")
    inner: Inner = attrs.Factory(Inner)
    note: Inner | None = None
    dec: decimal.Decimal = decimal.Decimal("0")
    when: dt.datetime = dt.datetime(2020, 1, 1)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix30y_t", track_changes=True, ttl=60)
@attrs.define
class Expiring:
    x: int = 0
    score: float = 0.0
    tags: set[str] = attrs.Factory(set)
    note: Inner | None = None
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix30y_i")
@attrs.define
class Indexed:  # indexed: tracks changes
    x: int = 0
    email: str = redmodel.field(default="", unique=True)
    level: float = redmodel.field(default=0.0, index=True)
    color: str = redmodel.field(default="", index=True)
    tags: set[str] = attrs.Factory(set)
    score: float = 0.0
    id: str = redmodel.key_field(generated=False)


MODELS = [Tracked, Expiring, Indexed]

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=5)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_counter = iter(range(10**9))


def _field_values(model: type, name: str, oid: str) -> st.SearchStrategy[Any]:
    """New values of one field (an email unique per object and draw)."""
    tp = attrs.fields_dict(model)[name].type
    if name == "email":
        return st.integers(0, 10**6).map(lambda n: f"{oid}-{n}")
    if name == "x":
        return st.integers(-(2**40), 2**40)
    if name in ("score", "level"):
        return _finite
    if name == "tags":
        return st.sets(_text, max_size=6)
    if name == "nums":
        return st.frozensets(st.integers(-(2**40), 2**40), max_size=6)
    if name == "ratios":
        return st.lists(_finite, max_size=4)
    if name == "meta":
        return st.dictionaries(_text, _finite, max_size=4)
    if name == "inner":
        return st.builds(Inner, _finite, st.sets(_text, max_size=4))
    if name == "note":
        return st.none() | st.builds(Inner, _finite, st.sets(_text, max_size=4))
    if name == "dec":
        return st.decimals(allow_nan=False, allow_infinity=False, places=3)
    if name == "when":
        return st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)).map(
            lambda d: d.replace(fold=0))  # (fold is not stored: isoformat has none)
    if name == "color":
        return st.sampled_from(["red", "green", "blue"])
    raise AssertionError(tp)


def _fields(model: type) -> list[str]:
    return [f.name for f in attrs.fields(model) if f.name != "id"]


# ---- other texts of an equal value ---------------------------------------------------


def _float_texts(v: float) -> list[str]:
    """Texts a float's decoder reads as exactly ``v`` other than repr's (HINCRBYFLOAT's
    int text, exponents, trailing zeros, ``-0``)."""
    out = [repr(v), f"{v:.17e}", f"{v:.17g}", f"{v:.20g}"]
    r = repr(v)
    if "." in r and "e" not in r:
        out += [r + "0", r + "000"]
    if v.is_integer() and abs(v) < 1e16:
        out.append(str(int(v)) if v or math.copysign(1, v) > 0 else "-0")
    return [t for t in dict.fromkeys(out)
            if not t.startswith("+") and float(t) == v
            and math.copysign(1, float(t)) == math.copysign(1, v)]


def _json_text(prim: Any, draw: Any) -> str:
    """JSON of ``prim`` as another program may write it: spacing, escapes, float texts,
    lists (a set's members) in any order."""
    sep = draw(st.sampled_from([",", ", ", " ,\n "]))
    if isinstance(prim, bool) or prim is None or isinstance(prim, int):
        return json.dumps(prim)
    if isinstance(prim, float):
        # (JSON reads "-0" as the int 0: another value of a float field, 0.0)
        return draw(st.sampled_from([t for t in _float_texts(prim)
                                     if same_value(float(json.loads(t)), prim)]))
    if isinstance(prim, str):
        return json.dumps(prim, ensure_ascii=draw(st.booleans()))
    if isinstance(prim, list):
        return "[" + sep.join(_json_text(x, draw) for x in prim) + "]"
    assert isinstance(prim, dict)
    colon = draw(st.sampled_from([":", ": ", " : "]))
    return "{" + sep.join(_json_text(k, draw) + colon + _json_text(v, draw)
                          for k, v in prim.items()) + "}"


def _shuffled(prim: Any, draw: Any) -> Any:
    """``prim`` with every list in another order: only applied to a set's members."""
    if isinstance(prim, list):
        return draw(st.permutations([_shuffled(x, draw) for x in prim]))
    return prim


def _other_text(model: type, name: str, raw: bytes, draw: Any) -> bytes:
    """Other stored bytes of the value ``raw`` holds (one stored leaf)."""
    if raw[:1] == b"\xa7":  # a codec's header, then its serializer's bytes
        head, body = raw[:2 + raw[1]], raw[2 + raw[1]:]
        kind = head[2:].decode()
        if kind == "json":
            prim = json.loads(body)
            if name in ("tags", "note") or name.endswith("labels"):
                if isinstance(prim, dict) and "labels" in prim:
                    prim["labels"] = _shuffled(prim["labels"], draw)
                elif isinstance(prim, list):
                    prim = _shuffled(prim, draw)
            return head + _json_text(prim, draw).encode()
        if kind == "msgpack":
            return head + msgpack.packb(_shuffled(msgpack.unpackb(body), draw))
        assert kind == "yaml"
        prim = yaml.safe_load(body)
        text = yaml.safe_dump(prim, default_flow_style=draw(st.booleans()),
                              allow_unicode=draw(st.booleans()),
                              sort_keys=draw(st.booleans()), explicit_end=True)
        # (PyYAML's allow_unicode writes U+0085 and the like raw, and reads them back as
        # line breaks: another value, not another text of this one)
        return head + (text.encode() if yaml.safe_load(text) == prim else body)
    if name in ("score", "level", "inner:level"):
        return draw(st.sampled_from(_float_texts(float(raw)))).encode()
    return raw


def _rewrite(client: Any, model: type, key: str, names: list[str], draw: Any) -> None:
    """Raw HSETs of other texts of the values these stored leaves hold."""
    data = client.hgetall(key)
    for f, raw in data.items():
        name = f.decode()
        if name.split(":")[0] in names:
            client.hset(key, f, _other_text(model, name, raw, draw))


# ---- the property --------------------------------------------------------------------


def _writer_b(store: redmodel.Store, model: type, oid: str, b: Any, changes: dict[str, Any],
              how: str, client: Any) -> None:
    if not changes:
        return
    if how == "save":
        for k, v in changes.items():
            setattr(b, k, v)
        store.save(b)
    elif how == "update":
        assert store.update(model, oid, **changes)
    else:  # an increment of one numeric field (others by update)
        rest = dict(changes)
        for k in ("score", "x"):
            if k in rest:
                old = getattr(store.get(model, oid), k)
                new = rest.pop(k)
                if k == "x":
                    store.incr(model, oid, "x", new - old)
                elif how == "incr":
                    if math.isfinite(new - old):
                        store.incr(model, oid, "score", new - old)
                    # the increment's result may round: the expected value is read back
                    changes["score"] = store.get(model, oid).score
                else:  # a raw HINCRBYFLOAT (another program)
                    if model is not Indexed and math.isfinite(new - old):
                        client.hincrbyfloat(spec_of(model).key_for(oid), "score", new - old)
                    got = client.hget(spec_of(model).key_for(oid), "score")
                    changes["score"] = float(got)
                break
        if rest:
            assert store.update(model, oid, **rest)


def _equal(a: Any, b: Any) -> bool:
    """One value, a dict's order aside (a raw rewrite in another key order, by a third
    writer after the loads, is kept: neither writer changed that field)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return same_value(dict(sorted(a.items())), dict(sorted(b.items())))
    return same_value(a, b)


@settings(max_examples=scaled(150))
@given(data=st.data(), model=st.sampled_from(MODELS))
def test_two_writers_of_disjoint_fields_both_keep_theirs(
        store: redmodel.Store, redis_client: Any, data: Any, model: type) -> None:
    draw = data.draw
    oid = str(next(_counter))
    names = _fields(model)
    first = {n: draw(_field_values(model, n, oid)) for n in names}
    if model is Indexed:
        first["email"] = f"{oid}-first"
    key = store.save(model(id=oid, **first))
    _rewrite(redis_client, model, key, draw(st.lists(st.sampled_from(names), unique=True)),
             draw)
    ttl = draw(st.sampled_from([None, 3600])) if model is not Expiring else None
    a = store.get(model, oid)
    b = store.get(model, oid)
    assert a is not None and b is not None
    loaded = {n: getattr(a, n) for n in names}
    mine = draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
    theirs = draw(st.lists(st.sampled_from([n for n in names if n not in mine]),
                           unique=True, max_size=3))
    # the changes, different from what was loaded (else "whose change survives" is moot)
    a_new = {n: draw(_field_values(model, n, oid).filter(
        lambda v, n=n: not same_value(v, loaded[n]))) for n in mine}
    b_new = {n: draw(_field_values(model, n, oid).filter(
        lambda v, n=n: not same_value(v, loaded[n]))) for n in theirs}
    how = draw(st.sampled_from(["save", "update", "incr", "hincrbyfloat"]))
    # other texts of the values neither writer changes, between the loads and the saves
    _rewrite(redis_client, model, key, [n for n in names if n not in mine and n not in theirs
                                        and draw(st.booleans())], draw)
    a_first = draw(st.booleans())
    if not a_first:
        _writer_b(store, model, oid, b, b_new, how, redis_client)
    for k, v in a_new.items():
        setattr(a, k, v)
    store.save(a, ttl=ttl) if ttl is not None else store.save(a)
    if a_first:
        _writer_b(store, model, oid, b, b_new, how, redis_client)
    got = store.get(model, oid)
    assert got is not None
    for n in names:
        want = a_new[n] if n in mine else b_new[n] if n in theirs else loaded[n]
        assert _equal(getattr(got, n), want), \
            (n, getattr(got, n), want, "mine" if n in mine else
             "theirs" if n in theirs else "neither")
    if model is Indexed:
        assert store.verify(Indexed) == []
        if "email" in mine or "email" in theirs:
            assert store.get_by(Indexed, email=got.email) == got
    if model is Expiring or ttl is not None:
        assert 0 < redis_client.pttl(key) <= (60_000 if model is Expiring else 3_600_000)


# ---- named cases -----------------------------------------------------------------------


def test_a_float_stored_as_hincrbyfloat_writes_it_is_not_sent(
        store: redmodel.Store, redis_client: Any) -> None:
    """F3's kind: ``1``, ``1e3``, ``1.50`` and ``-0`` are texts of a float that a read gives
    the same value from: a partial save does not send the field."""
    for text, value in ((b"1", 1.0), (b"1e3", 1000.0), (b"1.50", 1.5), (b"-0", -0.0)):
        key = store.save(Tracked(id="f3"))
        redis_client.hset(key, "score", text)
        a = store.get(Tracked, "f3")
        assert a is not None and same_value(a.score, value)
        a.x += 1
        store.save(a)
        assert redis_client.hget(key, "score") == text
        a.score = 0.0 if value else 2.0  # a change is sent (-0.0 is not 0.0)
        store.save(a)
        assert float(redis_client.hget(key, "score")) == a.score


def test_minus_zero_is_a_change_of_zero(store: redmodel.Store, redis_client: Any) -> None:
    key = store.save(Tracked(id="z", score=0.0))
    a = store.get(Tracked, "z")
    assert a is not None
    a.score = -0.0
    store.save(a)
    assert redis_client.hget(key, "score") == b"-0.0"


def test_a_partial_save_with_a_ttl_sets_it_in_the_same_script(
        store: redmodel.Store, redis_client: Any) -> None:
    """F2: a tracked save with a TTL is partial (another writer's field is kept) and sets
    the TTL; a save that changed nothing still renews the expiry."""
    key = store.save(Expiring(id="1", x=1))
    redis_client.persist(key)
    a = store.get(Expiring, "1")
    assert a is not None
    store.save(a)  # nothing changed: the expiry is set again
    assert 0 < redis_client.pttl(key) <= 60_000
    assert store.update(Expiring, "1", tags={"other writer"})  # between load and save
    a.score = 2.0
    store.save(a, ttl=5)  # partial: the other writer's tags are kept
    assert 0 < redis_client.pttl(key) <= 5000
    got = store.get(Expiring, "1")
    assert got is not None and (got.x, got.score, got.tags) == (1, 2.0, {"other writer"})
    assert store.save(a, ttl=None) == key  # no TTL: the expiry is kept, as a whole save
    assert 0 < redis_client.pttl(key) <= 5000


def test_same_value_is_exact() -> None:
    assert same_value({"a", "b"}, {"b", "a"})
    assert not same_value(1, 1.0) and not same_value(1, True) and not same_value(1.0, True)
    assert not same_value(0.0, -0.0) and same_value(math.nan, float("nan"))
    assert not same_value(decimal.Decimal("1.1"), decimal.Decimal("1.10"))
    utc = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    assert not same_value(utc, utc.astimezone(dt.timezone(dt.timedelta(hours=1))))
    assert not same_value({"a": 1, "b": 2}, {"b": 2, "a": 1})  # order is part of a dict's
    assert not same_value([1], (1,)) and same_value(Inner(1.0, {"x"}), Inner(1.0, {"x"}))
    assert not same_value(Inner(1.0), Inner(1))
    assert not same_value(object(), object())  # a type not known here: never the same


_OTHER_PROCESS = textwrap.dedent("""
    import sys, attrs, redis, redmodel
    from redmodel.codecs import codec

    @redmodel.model(prefix="fix30y_p", track_changes=True)
    @attrs.define
    class Tagged:
        x: int = 0
        y: int = 0
        tags: set[str] = attrs.Factory(set)
        id: str = redmodel.key_field(generated=False)

    client = redis.Redis.from_url(sys.argv[1])
    store = redmodel.Store(client, registry=False)
    if sys.argv[2] == "create":  # an older version's or another program's text of the set:
        key = store.save(Tagged(id="1"))  # its members in this process's hash order
        tags = {f"m{i}" for i in range(40)}
        client.hset(key, "tags", codec("json").encode(list(tags)))
    else:  # load, wait for the word, change y only, save
        o = store.get(Tagged, "1")
        print("loaded", flush=True)
        sys.stdin.readline()
        o.y = 7
        store.save(o)
""")


@redmodel.model(prefix="fix30y_p", track_changes=True)
@attrs.define
class Tagged:
    x: int = 0
    y: int = 0
    tags: set[str] = attrs.Factory(set)
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_another_process_with_another_hash_seed(
        redis_url: str, redis_client: Any, seed: str, tmp_path: Any) -> None:
    """The set is stored in the member order of a process of another PYTHONHASHSEED; this
    process and that one load the object, a third writer changes the tags, then each
    changes its own field by a tracked save: all three changes survive."""
    store = redmodel.Store(redis_client, registry=False)
    script = tmp_path / "other.py"
    script.write_text(_OTHER_PROCESS)
    env = {**os.environ, "PYTHONHASHSEED": seed,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, str(script), redis_url, "create"], env=env, check=True,
                   timeout=120)
    stored = redis_client.hget("fix30y_p:1", "tags")
    a = store.get(Tagged, "1")
    assert a is not None and a.tags == {f"m{i}" for i in range(40)}
    assert stored != codec("json").encode(a.tags)  # the case: the texts differ
    with subprocess.Popen([sys.executable, str(script), redis_url, "change-y"], env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as other:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline() == "loaded\n"
        assert store.update(Tagged, "1", tags={"third writer"})
        other.stdin.write("go\n")
        other.stdin.close()
        assert other.wait(timeout=120) == 0
    a.x = 5
    store.save(a)
    got = store.get(Tagged, "1")
    assert got is not None and (got.x, got.y, got.tags) == (5, 7, {"third writer"})


def test_a_ttl_the_user_may_not_set_refuses_the_partial_save_before_it_writes(
        redis_client: Any, redis_url: str) -> None:
    """hash_update.lua checks the PEXPIRE it runs after its writes before its first write
    (a script is never rolled back): refused, nothing written."""
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    from tests.acl import setuser_args  # noqa: PLC0415

    owner = redmodel.Store(redis_client, registry=False)
    key = owner.save(Expiring(id="acl", x=1))
    redis_client.execute_command(*setuser_args("fix30y", "pw", "hash models", ("fix30y_t:*",),
                                               without="pexpire"))
    try:
        url = redis_url.replace("redis://", "redis://fix30y:pw@", 1)
        with redmodel.Store.from_url(url, retry=Retry(NoBackoff(), 0), registry=False) as s:
            a = s.get(Expiring, "acl")
            assert a is not None
            a.x = 2
            with pytest.raises(redmodel.RedmodelError, match="pexpire") as e:
                s.save(a)
            assert "nothing was written" in str(e.value)
    finally:
        redis_client.execute_command("ACL", "DELUSER", "fix30y")
    assert redis_client.hget(key, "x") == b"1"
