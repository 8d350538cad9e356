"""Fix 30U (attack 30AU F1-F4), each finding as a kind, drawn whole:

- F1: equal sets encode to equal bytes, whatever their iteration order (insertion order,
  the str hash seed of the process), in every serializer and layout: a rewrite of objects
  the model just saved changes nothing, a tracked fingerprint sees them equal;
- F2: stored text read as a number takes ASCII digits only, as the scripts read it (a
  lease, a move's/reindex's state record, a window counter);
- F3: a build_index step's check judges its own index (stale indexes of removed fields,
  of any kind, do not fail it);
- F4: two models whose key spaces overlap through prefix + delimiter are refused at the
  second one's first use, naming both, in one store and across stores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._repair import _State as ReindexState
from redmodel._models._specs import spec_of
from redmodel._rebucket import _State as MoveState
from redmodel.codecs import codec as resolve_codec
from redmodel.migrations import (
    MigrationError,
    Migrations,
    MigrationVerifyError,
    build_index,
    drop_index,
    rewrite,
)
from tests.budget import scaled
from tests.strategies import values
from tests.test_registry import declare

ROOT = Path(__file__).resolve().parent.parent
SERIALIZERS = ["json", "msgpack", "yaml"]


# ---- F1: sets in a canonical order --------------------------------------------------------


class _Ordered(frozenset[Any]):
    """A frozenset iterating in the order given: what another insertion order or hash seed
    gives an equal set."""

    _order: list[Any]

    def __new__(cls, items: list[Any]) -> _Ordered:
        made = super().__new__(cls, items)
        made._order = list(items)
        return made

    def __iter__(self) -> Any:
        return iter(self._order)


class _OrderedSet(set[Any]):
    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self._order = list(items)

    def __iter__(self) -> Any:
        return iter(self._order)


def _reordered(value: Any, rnd: Any) -> Any:
    """``value`` with every set (at any depth) iterating in a shuffled order."""
    if isinstance(value, (set, frozenset)):
        items = [_reordered(v, rnd) for v in value]
        rnd.shuffle(items)
        return _Ordered(items) if isinstance(value, frozenset) else _OrderedSet(items)
    if isinstance(value, dict):
        return {k: _reordered(v, rnd) for k, v in value.items()}
    if isinstance(value, list):
        return [_reordered(v, rnd) for v in value]
    if isinstance(value, tuple):
        return tuple(_reordered(v, rnd) for v in value)
    if attrs.has(type(value)):
        return attrs.evolve(value, **{f.name: _reordered(getattr(value, f.name), rnd)
                                      for f in attrs.fields(type(value)) if f.init})
    return value


@attrs.frozen
class Pair:
    a: str
    b: int


@attrs.define
class Holder:
    tags: frozenset[str]
    nums: set[int]
    pairs: frozenset[Pair]


SET_TYPES = [
    frozenset[int], set[str], frozenset[bytes], frozenset[frozenset[int]],
    dict[str, frozenset[str]], list[set[int]], tuple[frozenset[str], int],
    frozenset[int] | None, frozenset[Pair], frozenset[tuple[str, int]], Holder,
    frozenset[float],
]


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("tp", SET_TYPES, ids=str)
def test_equal_sets_encode_to_equal_bytes_and_fingerprints(tp: Any, serializer: str) -> None:
    chain = resolve_codec(serializer)
    encode, decode, print_ = chain.encoder(tp), chain.decoder(tp), chain.fingerprint(tp)

    @settings(max_examples=scaled(100), deadline=None)
    @given(values(tp), st.randoms(use_true_random=False))
    def check(value: Any, rnd: Any) -> None:
        variant = _reordered(value, rnd)
        assert variant == value
        data = encode(value)
        assert encode(variant) == data
        assert print_(variant) == print_(value)
        assert decode(data) == value
        assert encode(decode(data)) == data  # decoded and encoded again: the same bytes

    check()


_ENCODER = """
import json, sys
from redmodel.codecs import codec
sets = [frozenset(s) for s in json.loads(sys.argv[1])]
out = []
for name in ("json", "msgpack", "yaml"):
    c = codec(name)
    out.append([c.encode(s, frozenset[str]).hex() for s in sets])
    out.append([c.encode({"k": s}, dict[str, frozenset[str]]).hex() for s in sets])
import attrs, redmodel
from redmodel._layouts._pick import layout_of
from redmodel._models._specs import spec_of

@redmodel.model(prefix="fu_flat", layout="flat")
@attrs.define
class Flat:
    tags: frozenset[str]
    deep: dict[str, set[str]]
    id: str = redmodel.key_field(generated=False)

layout = layout_of(spec_of(Flat))
for s in sets:
    write = layout.save("fu_flat:x", Flat(s, {"k": set(s)}, id="x"), None)
    out.append([str(a) for a in write.args])
print(json.dumps(out))
"""


@settings(max_examples=scaled(5), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.frozensets(st.text(max_size=6), min_size=2, max_size=6),
                min_size=1, max_size=8))
def test_sets_of_str_encode_alike_in_processes_with_other_hash_seeds(
        sets: list[frozenset[str]]) -> None:
    arg = json.dumps([sorted(s) for s in sets])
    outs = set()
    for seed in ("1", "2", "3"):
        run = subprocess.run([sys.executable, "-c", _ENCODER, arg], cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout)
    assert len(outs) == 1


MODEL = """
@attrs.frozen
class Pair:
    a: str
    b: int

@redmodel.model(prefix="fu_set_{layout}_{codec}", layout="{layout}"{codec_opt})
@attrs.define
class Tagged:
    tags: frozenset[str] = frozenset()
    nums: set[int] = attrs.field(factory=set)
    pairs: frozenset[Pair] = frozenset()
    deep: dict[str, frozenset[int]] = attrs.field(factory=dict)
    id: str = redmodel.key_field(generated=False)
"""

OBJECTS = st.fixed_dictionaries({
    "tags": st.frozensets(st.text(max_size=5), max_size=6),
    "nums": st.sets(st.integers(), max_size=6),
    "pairs": st.frozensets(st.builds(lambda a, b: (a, b), st.text(max_size=3),
                                     st.integers(-5, 5)), max_size=4),
    "deep": st.dictionaries(st.text(max_size=3),
                            st.frozensets(st.integers(), max_size=4), max_size=3),
})


@pytest.mark.parametrize(("layout", "codec"), [
    *((layout, codec) for layout in ("hash", "blob") for codec in SERIALIZERS),
    ("flat", "json"),  # the flat layout applies no model codec: its leaves are plain text
])
def test_a_rewrite_of_objects_with_sets_just_saved_changes_nothing(
        store: redmodel.Store, layout: str, codec: str) -> None:
    cls = declare(MODEL.format(layout=layout, codec=codec, codec_opt="" if layout == "flat"
                               else f", codec={codec!r}"))
    pair_cls = typing.get_args(attrs.fields(cls).pairs.type)[0]

    @settings(max_examples=scaled(25, floor=3), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(OBJECTS, st.randoms(use_true_random=False))
    def check(drawn: dict[str, Any], rnd: Any) -> None:
        pairs = frozenset(pair_cls(a, b) for a, b in drawn["pairs"])
        obj = cls(drawn["tags"], drawn["nums"], pairs, drawn["deep"], id=uuid.uuid4().hex)
        store.save(_reordered(obj, rnd))
        before = _stored(store, cls)
        m = Migrations(f"fu_rw_{uuid.uuid4().hex}")
        m.add("0001_rewrite", rewrite(cls))
        records = m.apply(store)
        assert [r.changed for r in records] == [0]
        assert _stored(store, cls) == before
        assert store.get(cls, obj.id) == obj

    check()


def _stored(store: redmodel.Store, cls: Any) -> dict[bytes, Any]:
    pattern = f"{glob(spec_of(cls).prefix)}*"
    out: dict[bytes, Any] = {}
    for key in store.client.scan_iter(match=pattern):
        kind = store.client.type(key)
        out[key] = (store.client.hgetall(key) if kind == b"hash" else
                    store.client.get(key) if kind == b"string" else kind)
    return out


# ---- F2: ASCII digits only ------------------------------------------------------------------

NOT_ASCII_DIGIT = st.characters(categories=["Nd", "No"]).filter(lambda c: not "0" <= c <= "9")


@st.composite
def bad_numbers(draw: Any) -> str:
    """Text Python's int() or str.isdigit() takes but no script reads as ASCII digits."""
    digits = draw(st.lists(st.sampled_from("0123456789"), max_size=5))
    form = draw(st.sampled_from(["foreign", "underscore", "plus", "space"]))
    if form == "foreign":
        digits.insert(draw(st.integers(0, len(digits))), draw(NOT_ASCII_DIGIT))
        return "".join(digits)
    body = "".join(digits) or "1"
    if form == "underscore":
        return body[0] + "_" + body[1:] + ("0" if len(body) == 1 else "")
    if form == "plus":
        return "+" + body
    return draw(st.sampled_from([" ", "\t", "\u00a0"])) + body


def test_a_lease_whose_expiry_is_not_ascii_digits_is_refused_and_nothing_written(
        store: redmodel.Store) -> None:
    @redmodel.model(prefix="fu_lease")
    @attrs.define
    class Tally:
        n: int = 0
        id: str = redmodel.key_field(generated=False)

    store.save(Tally(0, id="t"))

    @settings(max_examples=scaled(50), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(bad_numbers())
    def check(expiry: str) -> None:
        m = Migrations(f"fu_lease_{uuid.uuid4().hex}")
        m.add("0001_rewrite", rewrite(Tally))
        lease = f"tok {expiry}"
        store.client.hset(m.key, "lease", lease)
        for method in (m.status, m.plan, m.apply):
            with pytest.raises(MigrationError, match="lease"):
                method(store)
        assert store.client.hgetall(m.key) == {b"lease": lease.encode()}

    check()


@settings(max_examples=scaled(100), deadline=None)
@given(st.sampled_from(["phase", "done", "total", "pass_start"]),
       st.one_of(bad_numbers(), st.sampled_from(["1", "0"]), st.booleans(),
                 st.floats(allow_nan=False)))
def test_a_bucket_moves_state_record_with_a_number_not_written_as_one_is_not_read(
        field: str, value: Any) -> None:
    good = MoveState(None, 4)
    data = json.loads(good.dump())
    assert MoveState.load(json.dumps(data)) == good
    data[field] = value  # 1.0 is no int either: this module writes ints
    assert MoveState.load(json.dumps(data)) is None


@settings(max_examples=scaled(100), deadline=None)
@given(st.sampled_from(["phase", "objects", "started"]),
       st.one_of(bad_numbers(), st.sampled_from(["1", "0"]), st.booleans()))
def test_a_reindex_state_record_with_a_number_not_written_as_one_is_not_read(
        field: str, value: Any) -> None:
    good = ReindexState()
    data = json.loads(good.dump())
    assert ReindexState.load(json.dumps(data)) is not None
    data[field] = value
    assert ReindexState.load(json.dumps(data)) is None


def test_a_window_counter_holding_what_incrby_would_not_read_is_a_decode_error(
        store: redmodel.Store) -> None:
    counter = redmodel.containers.WindowCounter(store, "fu_count", window=3600)

    @settings(max_examples=scaled(50), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(bad_numbers(), st.just("012"), st.just("-0"),
                     st.just(str(2**63))), st.integers(-(2**63), 2**63 - 1))
    def check(bad: str, good: int) -> None:
        key = counter.key_for("s")
        store.client.set(key, bad.encode())
        with pytest.raises(redmodel.DecodeError, match="not an integer") as e:
            counter.get("s")
        assert e.value.key == key
        store.client.set(key, str(good))
        assert counter.get("s") == good

    check()


# ---- F3: a build step's check is its own index's ---------------------------------------------

OLD = """
@redmodel.model(prefix="fu_bd_{n}")
@attrs.define
class Item:
    {fields}
    id: str = redmodel.key_field(generated=False)
"""
REMOVED = {
    "eq": 'old_eq: str = redmodel.field(default="o", index=True)',
    "range": 'old_rng: int = redmodel.field(default=5, index="range")',
    "unique": 'old_uq: str = redmodel.field(default="", unique=True)',
    "list": 'old_list: list[str] = redmodel.field(factory=lambda: ["a", "b"], index=True)',
}
NAMES = {"eq": "old_eq", "range": "old_rng", "unique": "old_uq", "list": "old_list"}


@pytest.mark.parametrize("removed", [["eq"], ["range"], ["unique"], ["list"],
                                     ["eq", "range", "unique", "list"]], ids=str)
def test_a_build_index_step_verifies_while_removed_indexes_of_any_kind_are_stale(
        store: redmodel.Store, removed: list[str]) -> None:
    n = uuid.uuid4().hex[:8]
    old = declare(OLD.format(n=n, fields="\n    ".join(REMOVED[k] for k in removed)))
    kwargs = [{"old_uq": f"u{i}"} if "unique" in removed else {} for i in range(4)]
    store.save_many([old(id=f"i{i}", **kw) for i, kw in enumerate(kwargs)])
    new = declare(OLD.format(n=n, fields='zone: str = redmodel.field(default="z", '
                                         'index=True)'))
    app = redmodel.Store(store.client)
    m = Migrations(f"fu_bd_set_{n}")
    m.add("0001_zone", build_index(new, "zone"))
    for i, k in enumerate(removed):
        m.add(f"000{i + 2}_drop", drop_index(new, NAMES[k]))
    m.apply(app)
    assert {s.state for s in m.status(app).steps} == {"applied"}
    assert app.verify(new) == []
    assert sorted(o.id for o in app.find(new, zone="z").all()) == [
        f"i{i}" for i in range(4)]


def test_a_build_index_step_still_fails_when_its_own_index_is_wrong(
        store: redmodel.Store) -> None:
    """The scope must not hide the step's own index: an entry of it planted by hand for an
    object that does not have the value is still a failure of the check."""
    n = uuid.uuid4().hex[:8]
    new = declare(OLD.format(n=n, fields='zone: str = redmodel.field(default="z", '
                                         'index=True)'))
    app = redmodel.Store(store.client)
    app.save_many([new(id=f"i{i}") for i in range(3)])
    root = f"fu_bd_{n}:%idx:eq:zone:"
    members = store.client.smembers(root + "z")
    store.client.sadd(root + "q", *members)  # entries of another value: wrong
    m = Migrations(f"fu_bd_bad_{n}")
    m.add("0001_zone", build_index(new, "zone"))
    with pytest.raises(MigrationVerifyError, match="zone"):
        m.apply(app)


# ---- F4: overlapping key spaces ---------------------------------------------------------------

SEGMENT = st.text(alphabet="abxy", min_size=1, max_size=3)
DELIMITERS = st.sampled_from([":", "|", "/", "::", "-"])


@st.composite
def model_pairs(draw: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two (prefix, delimiter) pairs, often overlapping: the second prefix is the first's
    + one of many joiners + more, or an unrelated one."""
    base, d1 = draw(SEGMENT), draw(DELIMITERS)
    # the first's delimiter (or one starting it) as often as anything else: an overlap
    joiner = draw(st.one_of(st.just(d1), st.just(d1 + d1),
                            st.sampled_from([":", "|", "/", "::", "-", "", "x"])))
    rest = draw(SEGMENT)
    second = draw(st.sampled_from([base + joiner + rest, draw(SEGMENT) + "q"]))
    d2 = draw(DELIMITERS)
    pairs = [(base, d1), (second, d2)]
    if draw(st.booleans()):
        pairs.reverse()
    (p1, e1), (p2, e2) = pairs
    if e1 in p1 or e2 in p2 or p1 == p2:
        return draw(model_pairs())
    return pairs[0], pairs[1]


SOURCE = """
@redmodel.model(prefix={prefix!r}, delimiter={delimiter!r})
@attrs.define
class {name}:
    n: int = 0
    id: str = redmodel.key_field(generated=False)
"""


def _overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """By brute force: a key of either model (prefix + delimiter + an id) that the SCAN
    pattern of the other (its prefix + delimiter, then anything) matches; as ids, every
    tail of either model's prefix + delimiter."""
    ids = {s[i:] for s in (a[0] + a[1], b[0] + b[1]) for i in range(len(s) + 1)}
    return any((p + d + i).startswith(q + e) for (p, d), (q, e) in ((a, b), (b, a))
               for i in ids)


def test_models_whose_key_spaces_overlap_are_refused_naming_both(
        store: redmodel.Store) -> None:
    @settings(max_examples=scaled(100), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(model_pairs(), st.booleans())
    def check(pairs: tuple[tuple[str, str], tuple[str, str]], one_store: bool) -> None:
        tag = "fo" + uuid.uuid4().hex[:6]
        (p1, d1), (p2, d2) = ((tag + p, d) for p, d in pairs)
        first = declare(SOURCE.format(prefix=p1, delimiter=d1, name="First"),
                        module=f"app.{tag}a")
        second = declare(SOURCE.format(prefix=p2, delimiter=d2, name="Second"),
                         module=f"app.{tag}b")
        a = redmodel.Store(store.client)
        b = a if one_store else redmodel.Store(store.client)
        a.save(first(1, id="x"))
        if _overlap((p1, d1), (p2, d2)):
            if not one_store:
                return  # two stores: each checks the models it uses (docs/migrations.md)
            before = sorted(store.client.keys(f"{tag}*"))
            with pytest.raises(redmodel.SchemaConflictError) as e:
                b.save(second(2, id="x"))
            assert "First" in str(e.value) and "Second" in str(e.value)
            assert sorted(store.client.keys(f"{tag}*")) == before  # nothing written
        else:
            b.save(second(2, id="x"))
            assert a.count(first) == 1 and b.count(second) == 1

    check()


def glob(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in text)
