"""Fix 31F (attack 31F F1-F8): user code type-checks as it runs. The property: for any call
of a method that takes a model (Store, Transaction), mypy --strict with the plugin
``redmodel.mypy`` reports an error on the call exactly when the run time refuses it with
ValidationError or ModelDefinitionError (a reason the types show: a stored field or not,
its type, the key field's type, a model or not, a str where ids are). The calls are drawn
(Hypothesis: method, shell, model, id, field, value), written as user code, checked by
mypy once per example (one subprocess, seeded cache, as tests/test_typing.py), and each is
run against the server. The fixture tests/typing/fix31f_model_methods.py holds the
hand-written cases (positive and negative) of every kind, F4/F5/F8 included.

Fix 32B (attack 32B F1-F3, F2): each example also declares fields of drawn container
types (nested lists, tuples, fixed tuples, sets, frozensets, dicts and Optionals of int,
float, bool, date, datetime, str) and updates them with drawn display values (mostly of
the field's shape, with wrong leaves and containers mixed in), judged item by item as the
run time's checker judges them; and reads and increments below an Optional nested object.

Fix 32K (attack 32K F2): those displays may hold starred parts (``*[...]``, ``**{...}``, a
module variable ``*g0`` / ``**wd_str``), judged as the run time judges the value they
build; a set or dict display with a starred variable is exact one way only (mypy refuses
=> run time refuses), as which of its items are equal is not known.

Fix 33D (attack 33B F1-F7): a display may also hold (or be given to ``list``/``tuple``)
a set-like part whose equal items are one: ``*{a, b}``, ``*set([a, b])``, ``*{a: 0}`` (a
dict gives its keys), ``list({a: 0, b: 1})``, ``tuple({a, b})``, with items drawn to
collide (``1``, ``True``, ``1.0``, ``0``, ``False``); a fixed tuple may be spelled out by
starred parts (``(*[a], *[b])``, ``tuple([a, b])``); the ids of ``get_many``/
``delete_many`` are drawn as such displays too; ``incr_fields``' changes (and a floor) as
dict displays whose key is given again (``{f: a, f: b}``, ``{f: a, **{f: b}}``, ``{f: a,
**ovi}``, ``{**ovi, f: a}``). Exact agreement everywhere, except a set-like part inside a
fixed tuple (a set's order is not its display's) and a ``**`` of a variable whose values
the types do not show (``**ovf``): one way only there.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests import user_mypy
from tests.budget import scaled, sized

ROOT = Path(__file__).resolve().parent.parent

MODULE = '''\
from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import attrs

import redmodel
from redmodel import Store
from redmodel.transactions import Transaction


@attrs.define
class Address:
    zip: int = 0
    city: str = ""


@redmodel.model(prefix="{prefix}")
@attrs.define
class Thing:
    rate: ClassVar[int] = 3
    markup = 2
    count: int = 0
    price: float = 0.0
    name: str = ""
    flag: bool = False
    stock: int | None = None
    tag: str = redmodel.field(name="t", default="")
    address: Address = attrs.Factory(Address)
    later: int = attrs.field(init=False, default=0)
    maybe: Address | None = None
    {key}: {key_type} = redmodel.key_field(generated=False)
{containers}


@attrs.define
class Plain:
    {key}: {key_type} = {good_id}
'''

#: every name a call may give as a field: stored ones, a ClassVar, an unannotated class
#: attribute, an init=False attribute, a renamed field's stored name, an unknown name,
#: dotted paths into the nested class, the key field (added per example)
FIELDS = ("count", "price", "name", "flag", "stock", "tag", "address", "rate", "markup",
          "later", "t", "nope", "address.zip", "address.city", "address.street", "maybe",
          "maybe.zip", "maybe.city")
VALUES = ("1", "0.5", '"s"', "True", "None", 'b"x"')
AMOUNTS = ("1", "0.5", "True")
KEYS = {"str": ('"k1"', ('1', 'b"k1"', "True")),
        "int": ("1", ('"1"', "True", "1.5", 'b"1"'))}
ITERABLES = ("[{id}]", "({id},)", "{{{id}}}", "(i for i in [{id}])", '"ab"', 'b"ab"',
             # fix 33D: starred parts, set displays (equal ids are one), dict keys
             "[*[{id}]]", "({id}, *[{two}])", "{{*{{{id}}}}}", "{{{id}, {two}}}",
             "[*{{{id}, {two}}}]", "list({{{id}: 0, {two}: 1}})", "{{{id}: 0}}",
             "(*{{{two}: 0, {id}: 1}},)", "[*set([{id}, {two}])]", "frozenset([{id}, {two}])")
#: fix 33D: incr_fields' changes given as a dict display with the key given again
CHANGES = ("{{{f!r}: {a}}}", "{{{f!r}: {a}, {f!r}: {b}}}", "{{{f!r}: {a}, **{{{f!r}: {b}}}}}",
           "{{{f!r}: {a}, **ovi}}", "{{**ovi, {f!r}: {a}}}", "{{{f!r}: {a}, **ovf}}")


#: container field types (fix 32B): a tree of ("int",) ... ("list", T), ("tuple", T) (of any
#: length), ("fixed", T, U), ("set", T), ("frozenset", T), ("dict", K, V), ("opt", T)
SCALARS = {"int": ("1", "2"), "float": ("1.5", "2"), "bool": ("True", "False"),
           "date": ("dt.date(2020, 1, 2)",), "datetime": ("dt.datetime(2020, 1, 2)",),
           "str": ('"s"',)}
#: any leaf where the field wants another: a value of the wrong kind (hashable ones in a
#: set or as a key)
WRONG = (*itertools.chain(*SCALARS.values()), "None", "(1, True)")
WRONG_UNHASHABLE = ("[]", "[True]", "{}")
#: fix 33D: leaves drawn (one in three) in a set-like part, so that its items collide
EQUALS = ("1", "True", "1.0", "0", "False", "0.0")


def _hashable(tp: tuple[Any, ...]) -> bool:
    kind, *args = tp
    return kind in SCALARS or kind == "frozenset" or (
        kind in ("opt", "fixed") and all(_hashable(a) for a in args))


@st.composite
def _set_part(draw: st.DrawFn, tp: tuple[Any, ...], uncertain: list[str]) -> str:
    """Fix 33D: a set-like display of items of ``tp`` (or colliding leaves): a set display,
    ``set([...])``, or a dict display (its keys); as what a starred part or a ``list``/
    ``tuple`` call is given."""
    leaves = st.one_of(_value(tp, True, uncertain=uncertain), st.sampled_from(EQUALS))
    items = draw(st.lists(leaves, min_size=1, max_size=3))
    shape = draw(st.sampled_from(("set", "set()", "dict")))
    if shape == "set":
        return f"{{{', '.join(items)}}}"
    if shape == "set()":
        return f"set([{', '.join(items)}])"
    return "{" + ", ".join(f"{item}: {n}" for n, item in enumerate(items)) + "}"


def _types(hashable: bool) -> st.SearchStrategy[tuple[Any, ...]]:
    scalars = st.sampled_from([(name,) for name in SCALARS])
    if hashable:
        return st.one_of(scalars, st.tuples(st.just("opt"), scalars),
                         st.tuples(st.just("fixed"), scalars, scalars),
                         st.tuples(st.just("frozenset"), scalars))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.tuples(st.sampled_from(("list", "tuple", "opt")), inner),
        st.tuples(st.just("fixed"), inner, inner),
        st.tuples(st.sampled_from(("set", "frozenset")), _types(True)),
        st.tuples(st.just("dict"), scalars, inner)), max_leaves=4)


def _written(tp: tuple[Any, ...]) -> str:
    kind, *args = tp
    inner = [_written(a) for a in args]
    return {"list": "list[{}]", "tuple": "tuple[{}, ...]", "fixed": "tuple[{}, {}]",
            "set": "set[{}]", "frozenset": "frozenset[{}]", "dict": "dict[{}, {}]",
            "opt": "{} | None"}.get(kind, "dt.date" if kind == "date" else
                                     "dt.datetime" if kind == "datetime" else kind
                                     ).format(*inner)


def _default(tp: tuple[Any, ...]) -> str:
    kind, *args = tp
    return {"int": "0", "float": "0.0", "bool": "False", "date": "dt.date(2020, 1, 1)",
            "datetime": "dt.datetime(2020, 1, 1)", "str": '""', "list": "[]", "tuple": "()",
            "set": "set()", "frozenset": "frozenset()", "dict": "{}", "opt": "None"}.get(
        kind) or f"({_default(args[0])}, {_default(args[1])})"


@st.composite
def _value(draw: st.DrawFn, tp: tuple[Any, ...], hashable: bool = False,
           top: int | None = None, uncertain: list[str] | None = None,
           fixed: bool = False) -> str:
    """A display of ``tp``'s shape, or (one draw in six, at any depth) a wrong leaf. A list,
    tuple, set or dict display may hold starred parts (fix 32K): ``*<display>`` /
    ``**<display>`` of the same shape at any depth, and at the top (field ``c<top>``) a
    module variable of the field's item type (``*g<top>``, ``**g<top>``) or of a scalar
    kind (``*w_int``, ``**wd_str``), see :data:`VARIABLES`. Fix 33D: set-like parts
    (:func:`_set_part`) spread or given to ``list``/``tuple``, fixed tuples of starred
    parts; ``uncertain`` gets a note when one lands inside a fixed tuple (``fixed``)."""
    uncertain = [] if uncertain is None else uncertain
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(WRONG if hashable else (*WRONG, *WRONG_UNHASHABLE)))
    kind, *args = tp
    if kind in SCALARS:
        return draw(st.sampled_from(SCALARS[kind]))
    if kind == "opt":
        return "None" if draw(st.booleans()) else draw(
            _value(args[0], hashable, uncertain=uncertain, fixed=fixed))
    if kind == "fixed":
        one, two = (draw(_value(a, hashable, uncertain=uncertain, fixed=True)) for a in args)
        shape = draw(st.integers(0, 5))
        if shape == 0 and not hashable:  # fix 33D: spelled-out starred parts
            return draw(st.sampled_from((f"(*[{one}], *[{two}])", f"tuple([{one}, {two}])",
                                         f"(*[{one}, {two}],)", f"({one}, *[{two}, {two}])",
                                         f"(*[{one}],)", f"tuple([{one}])")))
        if shape == 1 and not hashable and _hashable(args[0]) and _hashable(args[1]):
            uncertain.append("a set-like part in a fixed tuple")
            part = draw(st.sampled_from((f"{{{one}, {two}}}", f"{{{one}: 0, {two}: 1}}",
                                         f"set([{one}, {two}])", f"{{{one}}}")))
            return draw(st.sampled_from((f"(*{part},)", f"tuple({part})")))
        return f"({one}, {two})"
    items = draw(st.lists(_value(args[-1], kind in ("set", "frozenset"), uncertain=uncertain,
                                 fixed=fixed), max_size=3))
    if kind == "dict":
        keys = draw(st.lists(_value(args[0], True, uncertain=uncertain, fixed=fixed),
                             min_size=len(items), max_size=len(items)))
        items = [f"{k}: {v}" for k, v in zip(keys, items, strict=True)]
    star = "**" if kind == "dict" else "*"
    if draw(st.integers(0, 3)) == 0:  # fix 32K: a starred display, spelled out
        items.insert(draw(st.integers(0, len(items))), star + draw(
            _value(tp, uncertain=uncertain, fixed=fixed)))
    if kind != "dict" and _hashable(args[0]) and draw(st.integers(0, 2)) == 0:
        # fix 33D: a set-like part, spread (a set's or a dict's keys), or the whole value
        part = draw(_set_part(args[0], uncertain))
        if fixed:
            uncertain.append("a set-like part in a fixed tuple")
        if kind in ("list", "tuple") and draw(st.booleans()):
            return f"{kind}({part})"
        items.insert(draw(st.integers(0, len(items))), "*" + part)
    if top is not None and draw(st.integers(0, 2)) == 0:  # a starred variable
        named = draw(st.sampled_from((f"g{top}", *(
            f"wd_{k}" if kind == "dict" else f"w_{k}" for k in (*SCALARS, "none")))))
        items.insert(draw(st.integers(0, len(items))), star + named)
    shown = ", ".join(items)
    return {"list": f"[{shown}]", "tuple": f"({shown}{',' if len(items) == 1 else ''})",
            "dict": f"{{{shown}}}",
            "set": f"{{{shown}}}" if items else "set()",
            "frozenset": f"frozenset({{{shown}}})" if items else "frozenset()"}[kind]


#: fix 32K: module variables a starred part may name: ``w_<kind>`` a non-empty list of a
#: scalar kind (``w_none``: ``[None]``), ``wd_<kind>`` a dict of one ``"w"`` key to a
#: value of that kind; per container field ``c<i>``, ``g<i>`` holds one item of the
#: field's item type (a dict field: one key and value), its default
VARIABLES = "\n".join(
    f"w_{kind}: list[{_written((kind,))}] = [{SCALARS[kind][0]}]\n"
    f"wd_{kind}: dict[str, {_written((kind,))}] = {{\"w\": {SCALARS[kind][0]}}}"
    for kind in SCALARS) + '\nw_none: list[None] = [None]\n' \
    'wd_none: dict[str, None] = {"w": None}\n' \
    '# fix 33D: a "**" part of incr_fields\' changes: an int and a float for "count"\n' \
    'ovi: dict[str, int] = {"count": 2}\novf: dict[str, float] = {"count": 2.5}\n'


def _variable(i: int, tp: tuple[Any, ...]) -> str:
    """``g<i>`` for a container field ``c<i>`` of type ``tp`` (none for other kinds)."""
    kind, *args = tp
    if kind == "dict":
        return (f"g{i}: dict[{_written(args[0])}, {_written(args[1])}] = "
                f"{{{_default(args[0])}: {_default(args[1])}}}\n")
    if kind in ("list", "tuple", "set", "frozenset"):
        return f"g{i}: list[{_written(args[0])}] = [{_default(args[0])}]\n"
    return ""


#: a set or dict display with a starred variable: which items (keys) are equal is not
#: known, so the plugin refuses only when certain (fix 32B's equal-item rules): such a call
#: may be refused at run time with no mypy error (never the other way round)
UNCERTAIN = "  # uncertain"
STARRED_VARIABLE = re.compile(r"\*(g\d|wd?_)")


@st.composite
def calls(draw: st.DrawFn, key: str, key_type: str,
          containers: tuple[tuple[Any, ...], ...] = ()) -> str:
    good, bad = KEYS[key_type]
    id_ = draw(st.sampled_from((good, *bad)) if draw(st.booleans()) else st.just(good))
    model = draw(st.sampled_from(("Thing", "Thing", "Thing", "Plain")))
    field = draw(st.sampled_from((*FIELDS, key)))
    kind = draw(st.sampled_from(("incr", "incr_fields", "update", "one", "many",
                                 "tx.incr", "tx.get_field", "tx.update", "tx.many",
                                 "container", "container", "tx.container")))
    shell = "tx" if kind.startswith("tx.") else "store"
    kind = kind.removeprefix("tx.")
    if kind == "incr":
        call = f"incr({model}, {id_}, {field!r}, {draw(st.sampled_from(AMOUNTS))})"
    elif kind == "incr_fields":
        amounts = [draw(st.sampled_from(AMOUNTS)) for _ in range(4)]
        changes = draw(st.sampled_from(CHANGES)).format(f=field, a=amounts[0], b=amounts[1])
        floor = draw(st.sampled_from(("", *CHANGES[:4])))
        if floor:
            floor = ", floor=" + floor.format(f=field, a=amounts[2], b=amounts[3])
        note = UNCERTAIN if "ovf" in changes else ""  # ovf's values are not in its type
        call = f"incr_fields({model}, {id_}, {changes}{floor}){note}"
    elif kind == "get_field":
        call = f"get_field({model}, {id_}, {field!r})"
    elif kind == "update":
        names = [f for f in (*FIELDS, key) if "." not in f]
        given = draw(st.lists(st.sampled_from(names), unique=True, max_size=2))
        values = ", ".join(f"{n}={draw(st.sampled_from(VALUES))}" for n in given)
        call = f"update({model}, {id_}{', ' if values else ''}{values})"
    elif kind == "container":  # fix 32B: a drawn display for a field of a drawn type
        at = draw(st.integers(0, len(containers) - 1))
        notes: list[str] = []
        value = draw(_value(containers[at], top=at, uncertain=notes))
        uncertain = bool(notes) or (containers[at][0] in ("set", "frozenset", "dict") and bool(
            STARRED_VARIABLE.search(value)))
        call = f"update({model}, {id_}, c{at}={value}){UNCERTAIN if uncertain else ''}"
    elif kind == "one":
        call = f"{draw(st.sampled_from(('get', 'exists', 'delete')))}({model}, {id_})"
    else:
        two = draw(st.sampled_from((good, *bad)))
        ids = draw(st.sampled_from(ITERABLES)).format(id=id_, two=two)
        call = f"{draw(st.sampled_from(('get_many', 'delete_many')))}({model}, {ids})"
    return f"{shell}.{call}"


def _write(where: Path, prefix: str, key: str, key_type: str, drawn: list[str],
           containers: tuple[tuple[Any, ...], ...] = ()) -> tuple[Path, dict[int, int]]:
    """The user-code module, and each call's line -> its index."""
    good = KEYS[key_type][0]
    fields = "\n".join(f"    c{i}: {_written(tp)} = attrs.field(factory=lambda: {_default(tp)})"
                       for i, tp in enumerate(containers))
    text = MODULE.format(prefix=prefix, key=key, key_type=key_type, good_id=good,
                         containers=fields)
    text += "\n\n" + VARIABLES + "".join(_variable(i, tp) for i, tp in enumerate(containers))
    lines = {}
    for i, call in enumerate(drawn):
        text += f"\n\ndef call_{i}(store: Store) -> Any:\n"
        if call.startswith("tx."):
            text += "    with Transaction(store) as tx:\n"
            lines[text.count("\n") + 1] = i
            text += f"        return {call}\n"
        else:
            lines[text.count("\n") + 1] = i
            text += f"    return {call}\n"
    path = where / f"{prefix}.py"
    path.write_text(text)
    return path, lines


def _mypy_errors(path: Path) -> set[int]:
    found, _ = user_mypy.run_mypy([path], path.parent / ".cache")
    return {int(m["line"]) for m in found if m["kind"] == "error"}


def _refused(fn: Any, store: redmodel.Store) -> bool:
    """Whether the run time refuses the call for a reason the types show."""
    try:
        fn(store)
    except (redmodel.ValidationError, TypeError):  # ModelDefinitionError is a TypeError;
        return True  # a plain TypeError: the call's signature (mypy: call-arg)
    except redmodel.RedmodelError:  # NotFoundError and the like: the call was well typed
        return False
    return False


_examples = itertools.count()


# one mypy run per example (~10 s on a loaded machine): few examples of many calls each,
# within pytest-timeout's 300 s under HYPOTHESIS_PROFILE=ci
@settings(max_examples=scaled(10, floor=1))
@given(st.tuples(st.sampled_from((("id", "str"), ("code", "int"))),
                 st.lists(_types(False), min_size=1, max_size=4).map(tuple)).flatmap(
    lambda kt: st.tuples(st.just(kt), st.lists(calls(*kt[0], kt[1]), min_size=1,
                                               max_size=sized(40, 200)))))
def test_mypy_refuses_a_model_call_exactly_when_the_run_time_does(
        tmp_path_factory: pytest.TempPathFactory, store: redmodel.Store,
        drawn: tuple[tuple[tuple[str, str], tuple[tuple[Any, ...], ...]], list[str]]) -> None:
    ((key, key_type), containers), calls_ = drawn
    prefix = f"fx31fp{next(_examples)}"
    where = tmp_path_factory.mktemp("fix31f")
    path, lines = _write(where, prefix, key, key_type, calls_, containers)
    errors = {lines[n] for n in _mypy_errors(path) if n in lines}
    spec = importlib.util.spec_from_file_location(prefix, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[prefix] = module
    try:
        spec.loader.exec_module(module)
        good: Any = "k1" if key_type == "str" else 1  # KEYS' right literal
        store.save(module.Thing(**{key: good}))
        refused = {i for i in range(len(calls_)) if _refused(getattr(module, f"call_{i}"), store)}
        store.delete(module.Thing, good)
        store.unregister(module.Thing)
    finally:
        del sys.modules[prefix]
    wrong = {calls_[i]: ("run time refuses, mypy passes" if i in refused else
                         "mypy refuses, run time runs it") for i in refused ^ errors
             if not (i in refused and calls_[i].endswith(UNCERTAIN))}
    assert wrong == {}
