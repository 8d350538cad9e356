"""Writes of indexed models are all or nothing (issue 13, item 1).

For random models (a random choice of indexed fields: equality, range, unique, lists) and
random values (NaN, infinities, -0.0, floats a hair apart, ints beyond 2**53 and 2**63,
empty, huge and non-UTF-8 text, ids full of ``: { } * % \\``), with a key of the wrong
type planted beforehand where a write may touch it (the object's key, an equality set,
the range set, the record, all-ids and expiry sets, a unique hash), every write either
applies fully (the object and every entry)
or changes nothing (a dump of the whole keyspace, types, values and TTLs, is unchanged);
when it applies, ``verify`` finds no problem it did not find before.
Through every shell: sync, asyncio, cluster (bucketed models), asyncio cluster.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import attrs
from hypothesis import event, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._errors import RedmodelError
from redmodel._schema import spec_of
from tests.index_helpers import dump, flush, plant
from tests.strategies import ids as any_ids

# name -> (type, index option)
PALETTE: dict[str, tuple[Any, Any]] = {
    "i_eq": (int, True),
    "i_rng": (int, "range"),
    "i_uq": (int, "unique"),
    "f_eq": (float, True),
    "f_rng": (float, "range"),
    "s_eq": (str, True),
    "s_uq": (str, "unique"),
    "tags": (list[str], True),
    "b_eq": (bool, True),
    "d_rng": (decimal.Decimal, "range"),
    "t_rng": (dt.datetime, "range"),
    "n": (int, False),
}
INTS = [f for f, (tp, _) in PALETTE.items() if tp is int]

_MODELS: dict[tuple[tuple[str, ...], bool], type] = {}


def model_of(fields: tuple[str, ...], buckets: bool) -> type:
    """One model per choice of fields (every field optional, default None)."""
    found = _MODELS.get((fields, buckets))
    if found is None:
        attrs_: dict[str, Any] = {}
        for name in fields:
            tp, option = PALETTE[name]
            if option == "unique":
                f = redmodel.field(unique=True, type=tp | None, default=None)
            elif option:
                f = redmodel.field(index=option, type=tp | None, default=None)
            else:
                f = attrs.field(type=tp | None, default=None)
            attrs_[name] = f
        attrs_["id"] = redmodel.key_field(generated=False, type=str)
        name = f"M{len(_MODELS)}"
        cls = attrs.make_class(name, attrs_)
        found = redmodel.model(prefix=name.lower(), buckets=4 if buckets else None)(cls)
        _MODELS[(fields, buckets)] = found
    return found


models = st.tuples(st.sampled_from(sorted(set(PALETTE) - {"n"})),
                   st.sets(st.sampled_from(sorted(PALETTE)), max_size=4)).map(
    lambda t: tuple(sorted({t[0], *t[1]})))

huge_ints = st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, -(2**63),
                             -(2**63) - 1, 2**64, 0])
ints = st.one_of(st.integers(-(2**65), 2**65), huge_ints, st.integers(-5, 5))
floats = st.one_of(st.floats(), st.sampled_from([0.1 + 0.2, 0.3, -0.0, 5e-324,
                                                 1.7976931348623157e308, 1 / 3]))
surrogates = st.characters(categories=["Cs"])
texts = st.one_of(
    st.text(alphabet=st.characters() | surrogates, max_size=6),
    st.sampled_from(["", ":", "{a}", "*", "%", "\\", "x" * 100_000]),
)
VALUES: dict[Any, st.SearchStrategy[Any]] = {
    int: ints,
    float: floats,
    str: texts,
    list[str]: st.lists(texts, max_size=3),
    bool: st.booleans(),
    decimal.Decimal: st.decimals() | st.sampled_from([decimal.Decimal("1e400")]),
    dt.datetime: st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
}
obj_ids = st.one_of(any_ids, st.sampled_from(["a:b", "{x}", "*", "%", "\\", "a}b{c"]))


def values_for(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={f: st.none() | VALUES[PALETTE[f][0]] for f in fields})


def make(cls: type, id: str, values: dict[str, Any]) -> Any:
    return cls(id=id, **values)


def try_save(store: Any, obj: Any) -> bool:
    try:
        store.save(obj)
    except RedmodelError:
        return False
    return True


def index_keys_of(store: Any, cls: type, obj: Any) -> list[str]:
    """Index keys a write of ``obj`` may touch (where a planted key hurts)."""
    spec = spec_of(cls)
    key = spec.key_for(obj.id)
    tag = spec.tag_of(spec.id_text(obj.id))
    root = spec.index_root(tag)
    d = spec.delimiter
    out = [key, root + "rec", root + "all", root + "exp"]
    assert spec.indexes is not None
    for line in spec.indexes.entries({n: getattr(obj, n) for n in spec.indexes.fields},
                                     problems=[]):
        kind, name, value = line.split("\x1f", 2)
        if kind == "e":
            out.append(f"{root}eq{d}{name}{d}{value}")
        elif kind == "r":
            out.append(f"{root}rng{d}{name}")
        else:
            out.append(spec.claim_key(name, value))
    return out


operations = st.sampled_from(["save", "save_tracked", "update", "incr", "incr_fields",
                              "delete", "expire", "persist", "save_many"])


@settings(max_examples=max(10, settings.default.max_examples // 3), report_multiple_bugs=False)
@given(data=st.data(), fields=models, op=operations)
def test_a_write_applies_fully_or_changes_nothing(any_store: Any, data: st.DataObject,
                                                  fields: tuple[str, ...], op: str) -> None:
    store = any_store
    if "n" not in fields and op in ("incr", "incr_fields"):
        fields = tuple(sorted({*fields, "n"}))
    cls = model_of(fields, store.cluster)
    client = store.client
    flush(client)
    target = data.draw(obj_ids, label="id")
    seeded = data.draw(values_for(fields), label="stored")
    exists = try_save(store, make(cls, target, seeded))
    other = make(cls, target + "-2", data.draw(values_for(fields), label="other"))
    try_save(store, other)
    new_values = data.draw(values_for(fields), label="new")
    new = make(cls, target, new_values)
    planted = None
    if data.draw(st.booleans(), label="plant?"):
        candidates = index_keys_of(store, cls, new) + index_keys_of(store, cls, other)
        planted = data.draw(st.sampled_from(candidates), label="planted key")
        kind = "set" if planted.endswith("all") else data.draw(
            st.sampled_from(["string", "list"]), label="planted type")
        plant(client, planted, kind)
    before = dump(client)
    # what verify says before (a planted key hides or breaks what was there)
    problems_before = set(store.verify(cls))

    def run() -> Any:
        if op == "save":
            return store.save(new)
        if op == "save_tracked":
            loaded = store.get(cls, target) if exists and planted is None else None
            if loaded is None:
                return store.save(new)
            for name, value in new_values.items():
                setattr(loaded, name, value)
            return store.save(loaded)
        if op == "update":
            if not new_values:
                return None
            return store.update(cls, target, **new_values)
        if op == "incr":
            field = data.draw(st.sampled_from([f for f in fields if f in INTS]), label="field")
            return store.incr(cls, target, field, data.draw(ints, label="amount"))
        if op == "incr_fields":
            changes = data.draw(st.dictionaries(st.sampled_from([f for f in fields if f in
                                INTS]), ints, min_size=1), label="changes")
            return store.incr_fields(cls, target, changes)
        if op == "delete":
            return store.delete(cls, target)
        if op == "expire":
            return store.expire(cls, target, 100)
        if op == "persist":
            return store.persist(cls, target)
        return store.save_many(batch)

    batch = [new]
    if op == "save_many" and planted is None:
        batch += [make(cls, f"{target}-{i}", data.draw(values_for(fields), label="many"))
                  for i in range(3)]
    try:
        run()
        event(f"{op}: applied")
    except RedmodelError as e:
        event(f"{op}: refused ({type(e).__name__})")
        if planted is not None and isinstance(e, redmodel.ServerError):
            assert planted in str(e), "the error names the wrong-typed key"
        after = dump(client)
        if len(batch) == 1:
            assert after == before, f"{op} raised {e!r} and changed the keyspace"
            return
        # save_many: one atomic write per object; a refusal by the server (here a unique
        # value another object of the batch still held when it came) leaves the others
        # of its chunk written: each object is written whole or not at all
        if isinstance(e, redmodel.ValidationError):
            assert after == before, "a bad object anywhere: nothing is sent"
        spec = spec_of(cls)
        for obj in batch:
            key = spec.key_for(obj.id).encode()
            assert store.get(cls, obj.id) == obj or after.get(key) == before.get(key)
        assert [p for p in store.verify(cls) if p not in problems_before] == []
        return
    problems = [p for p in store.verify(cls) if p not in problems_before]
    assert problems == [], f"{op} applied, but its index is not in step: {problems}"
    if op in ("save", "save_many"):
        assert store.get(cls, target) == new
