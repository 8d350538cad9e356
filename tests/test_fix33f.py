"""Fix 33F (attack 33D F1-F3).

F1/F2: a NaN (float or Decimal) is unequal to itself, so a set holding one (as a member,
or inside a member: a tuple, a nested object) or a dict keyed by one cannot be read back
equal, nor keep two NaNs apart (json and yaml give every NaN as one object; a Redis key
name or set member is one text). The save refuses it (ValidationError naming key and
field, nothing written); every other value holding NaNs (a list item, a dict value, a
plain float field) is accepted and reads back (NaN for NaN). Drawn over set/dict-key
positions at any depth, in every layout and codec, and in the containers.

F3: a CLI import report never quotes an encrypted field's dict keys or items: its paths
go into an encrypted value by attribute names only.
"""

from __future__ import annotations

import decimal
import itertools
import json
import math
import string
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.cli._app import run
from redmodel.containers import Queue, Set, SortedSet
from tests.budget import scaled
from tests.keys import use_keys
from tests.strategies import SCALARS

pytestmark = pytest.mark.no_registry

_made = itertools.count()
Dec = decimal.Decimal


@attrs.frozen
class Point:
    x: float
    tag: str = ""


@attrs.define
class Inner:
    s: set[float] = attrs.Factory(set)
    d: dict[float, int] = attrs.Factory(dict)
    k: dict[Dec, list[float]] = attrs.Factory(dict)


# every position a NaN may take: set members (direct, in a tuple, in a frozen object,
# Optional), dict keys (float, Decimal), and plain positions (list items, dict values)
TYPES: list[Any] = [
    set[float],
    frozenset[float | None],
    set[tuple[float, ...]],
    frozenset[tuple[str, Dec]],
    set[Point],
    list[set[float]],
    dict[str, frozenset[float]],
    dict[float, int],
    dict[Dec, str],
    dict[float, list[float]] | None,
    Inner,
    list[Inner],
    list[float],
    dict[str, float],
    float,
]

LAYOUTS = [("hash", "json"), ("hash", "yaml"), ("hash", "msgpack"), ("flat", None),
           ("blob", "json"), ("blob", "yaml"), ("blob", "msgpack")]


def _model(layout: str, codec: str | None) -> type:
    kw = {"codec": codec} if codec else {}
    notes: dict[str, Any] = {"id": str, **{f"f{i}": tp | None for i, tp in enumerate(TYPES)}}
    body: dict[str, Any] = {f"f{i}": None for i in range(len(TYPES))}
    body.update(__annotations__=notes, __module__=__name__,
                id=redmodel.key_field(generated=False))
    cls = attrs.define(type(f"Nan33f{next(_made)}", (), body))
    return redmodel.model(prefix=f"fx33f{next(_made)}", layout=layout, **kw)(cls)


MODELS = {f"{layout}-{codec}": _model(layout, codec) for layout, codec in LAYOUTS}

nan = st.builds(lambda: float("nan"))  # a new object each time, as a computation gives
dnan = st.sampled_from(["NaN", "-NaN"]).map(Dec)


def nan_values(tp: Any) -> st.SearchStrategy[Any]:
    """Any value of ``tp`` whose floats and Decimals are now and then NaN."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is float:
        return st.one_of(nan, SCALARS[float])
    if tp is Dec:
        return st.one_of(dnan, SCALARS[Dec])
    if tp in SCALARS:
        return SCALARS[tp] if tp is not str else st.text(string.ascii_letters, max_size=3)
    if attrs.has(tp):
        return st.builds(tp, **{f.name: nan_values(f.type) for f in attrs.fields(tp)})
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return st.one_of(*(st.none() if a is type(None) else nan_values(a) for a in args))
    if origin is list:
        return st.lists(nan_values(args[0]), max_size=3)
    if origin in (set, frozenset):
        return st.frozensets(nan_values(args[0]), max_size=3).map(origin)
    if origin is tuple and args[-1] is Ellipsis:
        return st.lists(nan_values(args[0]), max_size=3).map(tuple)
    if origin is tuple:
        return st.tuples(*(nan_values(a) for a in args))
    assert origin is dict
    return st.dictionaries(nan_values(args[0]), nan_values(args[1]), max_size=3)


def _is_nan(v: Any) -> bool:
    return (isinstance(v, float) and math.isnan(v)) or (isinstance(v, Dec) and v.is_nan())


def _any_nan(v: Any) -> bool:
    if _is_nan(v):
        return True
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(_any_nan(x) for x in v)
    if isinstance(v, dict):
        return any(_any_nan(k) or _any_nan(x) for k, x in v.items())
    if attrs.has(type(v)):
        return any(_any_nan(getattr(v, a.name)) for a in attrs.fields(type(v)))
    return False


def nan_where_equality_matters(v: Any) -> bool:
    """The test's own oracle: a NaN in (or inside) a set member, or as a dict key."""
    if isinstance(v, (set, frozenset)):
        return any(_any_nan(x) for x in v)
    if isinstance(v, (list, tuple)):
        return any(nan_where_equality_matters(x) for x in v)
    if isinstance(v, dict):
        return any(_is_nan(k) or nan_where_equality_matters(x) for k, x in v.items())
    if attrs.has(type(v)):
        return any(nan_where_equality_matters(getattr(v, a.name))
                   for a in attrs.fields(type(v)) if a.name != "id")
    return False


def canon(v: Any) -> Any:
    """``v`` comparable with ``==`` when it holds NaNs only at plain positions."""
    if _is_nan(v):
        return ("NaN", type(v).__name__)
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [canon(x) for x in v])
    if isinstance(v, dict):
        return ("dict", {k: canon(x) for k, x in v.items()})
    if attrs.has(type(v)):
        return (type(v).__name__, {a.name: canon(getattr(v, a.name))
                                   for a in attrs.fields(type(v))})
    return (type(v).__name__, v)


@settings(max_examples=scaled(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), which=st.sampled_from(sorted(MODELS)))
def test_a_nan_at_a_set_or_key_position_is_refused_before_any_write(
        store: redmodel.Store, data: st.DataObject, which: str) -> None:
    """Every layout and codec: a value holding a NaN in a set (at any depth) or as a dict
    key is refused (ValidationError naming the key and the field) and the object saved
    before is unchanged; any other value, NaNs at plain positions too, reads back equal."""
    M = MODELS[which]
    before = M(id="1")
    store.save(before)
    i = data.draw(st.integers(0, len(TYPES) - 1), label="field")
    value = data.draw(nan_values(TYPES[i]), label="value")
    obj = M(id="1", **{f"f{i}": value})
    bad = nan_where_equality_matters(value)
    try:
        store.save(obj)
    except redmodel.ValidationError as e:
        assert bad, f"refused a value with no NaN at a set/key position: {e}"
        assert e.key is not None and "1" in e.key and f"f{i}" in str(e), str(e)
        assert "NaN" in str(e)
        assert canon(store.get(M, "1")) == canon(before)  # nothing written
        return
    assert not bad, "accepted a set/dict holding a NaN where equality is its meaning"
    assert canon(store.get(M, "1")) == canon(obj)


CONTAINER_TYPES: list[Any] = [float, Dec, tuple[float, ...], Point, set[float],
                              dict[float, int], list[float]]


@settings(max_examples=scaled(200), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["Set", "SortedSet", "Queue"]),
       codec=st.sampled_from(["json", "msgpack", "yaml"]))
def test_a_container_refuses_a_nan_where_equality_is_its_meaning(
        store: redmodel.Store, data: st.DataObject, kind: str, codec: str) -> None:
    """A Set's or SortedSet's member is one text in Redis: a NaN anywhere in it is
    refused (every NaN would be one member). A Queue item is refused for a NaN in a set
    or as a dict key inside it, as a field is; the container is left unchanged."""
    tp = data.draw(st.sampled_from(CONTAINER_TYPES), label="type")
    if kind != "Queue" and tp in (set[float], dict[float, int], list[float]):
        tp = Point  # unhashable members: not what a Set holds
    member = data.draw(nan_values(tp), label="member")
    key = f"fx33f_c{next(_made)}"
    cls: Any = {"Set": Set, "SortedSet": SortedSet, "Queue": Queue}[kind]
    c = cls(store, key, tp, codec=codec)
    bad = _any_nan(member) if kind != "Queue" else nan_where_equality_matters(member)
    try:
        if kind == "Set":
            c.add(member)
        elif kind == "SortedSet":
            c.add(member, 1.0)
        else:
            c.push(member)
    except redmodel.ValidationError as e:
        assert bad, f"refused a member with no NaN where equality matters: {e}"
        assert e.key == key and "NaN" in str(e)
        assert store.client.exists(key) == 0
        return
    assert not bad
    if kind == "Set":
        assert c.members() == {member}
    elif kind == "SortedSet":
        assert c.range() == [member]
    else:
        assert canon(c.pop()) == canon(member)


# ---- F3: import reports hold no plaintext of an encrypted value -----------------------

THIS = "tests.test_fix33f"


@attrs.define
class Card:
    labels: dict[str, int] = attrs.Factory(dict)
    owner: str = ""


@redmodel.model(prefix="fx33fcli")
@attrs.define
class Patient:
    notes: dict[str, int] = redmodel.field(codec="json|fernet", factory=dict)
    scores: dict[str, float] = redmodel.field(codec="json|fernet", factory=dict)
    rows: list[dict[str, int]] = redmodel.field(codec="json|fernet", factory=list)
    card: Card = redmodel.field(codec="json|fernet", factory=Card)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx33fvault", layout="blob", codec="json|fernet")
@attrs.define
class Vault:
    notes: dict[str, int] = attrs.Factory(dict)
    scores: dict[str, float] = attrs.Factory(dict)
    rows: list[dict[str, int]] = attrs.Factory(list)
    card: Card = attrs.Factory(Card)
    id: str = redmodel.key_field(generated=False)


secret_text = st.text(string.ascii_letters + string.digits, min_size=6, max_size=12).map(
    lambda t: "SeC" + t)
# values an int (or float) position cannot take: each a secret or carrying one
bad_for_int = st.one_of(secret_text, st.just(1.5), st.just(2**70 + 0.5),
                        secret_text.map(lambda t: [t]), secret_text.map(lambda t: {t: 1}),
                        st.just(True), st.just(None))
bad_for_float = st.one_of(secret_text, st.just(2**53 + 1), secret_text.map(lambda t: {t: t}))


@st.composite
def bad_data(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A line's 'data' with one bad entry inside an encrypted dict/list; the secrets."""
    key = draw(secret_text)
    where = draw(st.sampled_from(["notes", "scores", "rows", "card"]))
    good = {draw(secret_text): 1}
    if where == "scores":
        bad = draw(bad_for_float)
        data: dict[str, Any] = {"scores": {**good, key: bad}}
    else:
        bad = draw(bad_for_int)
        entry = {**good, key: bad}
        data = {"notes": entry} if where == "notes" else {"rows": [good, entry]} \
            if where == "rows" else {"card": {"labels": entry, "owner": draw(secret_text)}}
    secrets = [key, *good, *(s for s in [json.dumps(bad)] if "SeC" in s)]
    return data, secrets


@settings(max_examples=scaled(150), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drawn=bad_data(), model=st.sampled_from(["Patient", "Vault"]))
def test_an_import_report_holds_no_plaintext_of_an_encrypted_value(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str,
        tmp_path: Path, drawn: tuple[dict[str, Any], list[str]], model: str) -> None:
    """docs/codecs.md "Hidden in errors": a bad line of an encrypted dict (a key's value
    of the wrong type, a value the import would convert) is reported at the field, by
    attribute names, never by the dict's keys or with its items."""
    data, secrets = drawn
    use_keys(monkeypatch)
    path = tmp_path / "lines.jsonl"
    path.write_text(json.dumps({"v": 1, "model": f"{THIS}:{model}", "id": "a", "pttl": None,
                                "data": data}) + "\n")
    with monkeypatch.context() as m:
        m.setenv("REDIS_URL", redis_url)
        m.setenv("REDIS_CLUSTER", "")
        code = run(["import", "-m", THIS, "-i", str(path), "--decrypt", "--dry-run",
                    "--url", redis_url])
    out = capsys.readouterr()
    report = out.out + out.err
    assert code == 1, report
    for s in [*secrets, "SeC"]:
        assert s not in report, report
    assert f"$.{next(iter(data))}" in report, report  # still names the field


def test_a_plain_dict_keeps_its_key_in_the_report(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str,
        tmp_path: Path) -> None:
    """Outside encrypted values the report still points at the bad entry."""
    path = tmp_path / "lines.jsonl"
    path.write_text(json.dumps({"v": 1, "model": f"{THIS}:Plain", "id": "a", "pttl": None,
                                "data": {"notes": {"here": "x"}}}) + "\n")
    code = run(["import", "-m", THIS, "-i", str(path), "--dry-run", "--url", redis_url])
    report = capsys.readouterr().out
    assert code == 1 and "here" in report, report


@redmodel.model(prefix="fx33fplain")
@attrs.define
class Plain:
    notes: dict[str, int] = attrs.Factory(dict)
    id: str = redmodel.key_field(generated=False)
