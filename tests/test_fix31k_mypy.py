"""Fix 31K (attack 31K F1-F7): the mypy plugin refuses a call only when the run time
certainly refuses it, and finds the key field as the run time does. The property: for a
model declared any of the ways docs/models.md allows (the key by ``key_field()``,
``field(key=True)``, the ``key=`` option, the option inherited by a decorated subclass, a
plain ``id`` field; the model decorator written directly, kept in a variable, or over a
``@dataclass_transform`` wrapper of attrs; an int, str or date key) and any drawn call
(right and wrong ids, ``bool`` for int, ``datetime`` for date, updates of the key and of
fields, incr of the key; the model class given as itself, as ``type[object]`` or as
``type[Protocol]``; ids given by ``*args``/``**kwargs``; objects typed by a plain mixin or
``object``), a mypy error on the call means the run time refuses it (ValidationError or
ModelDefinitionError: no false positive), and a call the plugin sees (the class itself, the
arguments one by one) is refused by mypy exactly when the run time refuses it.
"""

from __future__ import annotations

import datetime
import importlib.util
import itertools
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled, sized
from tests.test_fix31f import _mypy_errors, _refused

#: key type -> (its right id, wrong ids the store refuses)
KEYS = {"str": ('"k1"', ("1", 'b"k1"')),
        "int": ("1", ('"1"', "True", "1.5")),
        "dt.date": ("dt.date(2020, 1, 1)", ("dt.datetime(2020, 1, 1)", '"2020-01-01"'))}
KEY_STYLES = ("key_field", "field_key", "option", "inherited_option", "default_id")
DECORATIONS = ("direct", "variable", "transform")
#: update values for n (int) and on (date | None)
VALUES = {"n": ("2", "True", '"x"'), "on": ("dt.date(2020, 1, 2)", "dt.datetime(2020, 1, 2)",
                                             "None")}

HEAD = '''\
from __future__ import annotations

import datetime as dt
from typing import Any, Protocol, TypeVar, cast

import attrs
from typing_extensions import dataclass_transform

import redmodel
from redmodel import Store

T = TypeVar("T")


@dataclass_transform(field_specifiers=(attrs.field, redmodel.field, redmodel.key_field))
def entity(cls: type[T]) -> type[T]:
    return attrs.define(cls)


class HasN(Protocol):
    n: int


@attrs.define
class Mixin:
    def persist(self, store: Store) -> None:
        store.save(self)

'''


def _decorate(decoration: str, options: str, n: int) -> tuple[str, str]:
    """(lines before the class's decorators, its decorator lines)."""
    if decoration == "variable":
        return f"deco{n} = redmodel.model({options})\n\n", f"@deco{n}\n@attrs.define\n"
    attrs_line = "@entity\n" if decoration == "transform" else "@attrs.define\n"
    return "", f"@redmodel.model({options})\n{attrs_line}"


def _model(n: int, prefix: str, shape: tuple[str, str, str, str]) -> str:
    """Model ``Thing<n>`` (a base ``Base<n>`` too when the key option is inherited)."""
    style, decoration, key, key_type = shape
    good = KEYS[key_type][0]
    declare = {"key_field": f"redmodel.key_field(generated=False, default={good})",
               "field_key": f"redmodel.field(key=True, default={good})"}.get(style, good)
    option = f', key="{key}"' if style in ("option", "inherited_option") else ""
    if style == "inherited_option":  # the key option given to a decorated base
        before, decorators = _decorate(decoration, f'prefix="{prefix}{n}"', n)
        return (f'@redmodel.model(prefix="{prefix}{n}b"{option})\n@attrs.define\n'
                f"class Base{n}:\n    {key}: {key_type} = {declare}\n"
                f'    other: str = ""\n\n\n{before}{decorators}class Thing{n}(Base{n}, Mixin):\n'
                "    n: int = 0\n    on: dt.date | None = None\n\n\n")
    before, decorators = _decorate(decoration, f'prefix="{prefix}{n}"{option}', n)
    return (f"{before}{decorators}class Thing{n}(Mixin):\n    n: int = 0\n"
            f'    on: dt.date | None = None\n    other: str = ""\n'
            f"    {key}: {key_type} = {declare}\n\n\n")


@st.composite
def shapes(draw: st.DrawFn, style: str) -> tuple[str, str, str, str]:
    key = "id" if style == "default_id" else draw(st.sampled_from(("id", "code")))
    # not a subclass made attrs by the dataclass_transform wrapper over an attrs base: mypy
    # itself does not see the base's fields there (its own call-arg error on the
    # constructor, no redmodel error), so that shape says nothing of the plugin
    decorations = ("direct", "variable") if style == "inherited_option" else DECORATIONS
    return style, draw(st.sampled_from(decorations)), key, draw(st.sampled_from(tuple(KEYS)))


@st.composite
def calls(draw: st.DrawFn, models: list[tuple[str, str, str, str]]) -> tuple[str, bool]:
    """A call, and whether the plugin sees all of it (the class itself, each argument)."""
    n = draw(st.integers(0, len(models) - 1))
    _, _, key, key_type = models[n]
    thing = f"Thing{n}"
    good, bad = KEYS[key_type]
    id_ = draw(st.sampled_from((good, *bad)) if draw(st.booleans()) else st.just(good))
    model = draw(st.sampled_from((thing, thing, f'cast("type[object]", {thing})',
                                  f'cast("type[HasN]", {thing})')))
    seen = model == thing
    how = draw(st.sampled_from(("plain", "plain", "star", "star2")))
    kind = draw(st.sampled_from(("get", "exists", "update", "update_key", "incr", "incr_key",
                                 "get_many", "save")))
    if kind in ("get", "exists"):
        ids = {"plain": f"{id_}", "star": f"*({id_},)", "star2": f'**{{"id": {id_}}}'}[how]
        return f"store.{kind}({model}, {ids})", seen and how == "plain"
    if kind == "get_many":
        ids = f"[{id_}]" if how == "plain" else f"*[[{id_}]]"
        return f"store.get_many({model}, {ids})", seen and how == "plain"
    if kind == "save":
        obj = f"{thing}({key}={good})"
        shape = draw(st.sampled_from((f"store.save({obj})", f'store.save(cast("Mixin", {obj}))',
                                      f'store.save_many(cast("list[Mixin]", [{obj}]))',
                                      f"{obj}.persist(store)")))
        return shape, True
    if kind in ("incr", "incr_key"):
        field = "n" if kind == "incr" else key
        args = f"{id_}, {field!r}" if how == "plain" else f"*({id_}, {field!r})"
        return f"store.incr({model}, {args})", seen and how == "plain"
    if kind == "update_key":
        name, value = key, good
    else:
        name = draw(st.sampled_from(("n", "on")))
        value = draw(st.sampled_from(VALUES[name]))
    first = f"{id_}, " if how == "plain" else f"*({id_},), "
    return f"store.update({model}, {first}{name}={value})", seen and how == "plain"


_examples = itertools.count()


@st.composite
def examples(draw: st.DrawFn) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, bool]]]:
    # every way of declaring the key, each with a drawn decoration, key name and type
    models = list(draw(st.tuples(*(shapes(style) for style in KEY_STYLES))))
    return models, draw(st.lists(calls(models), min_size=20, max_size=sized(40, 200)))


# one mypy run per example (~10 s on a loaded machine): few examples of many models and
# calls each, within pytest-timeout's 300 s under HYPOTHESIS_PROFILE=ci
@settings(max_examples=scaled(10, floor=2))
@given(examples())
def test_mypy_refuses_only_what_the_run_time_refuses_and_finds_the_key_as_it_does(
        tmp_path_factory: pytest.TempPathFactory, store: redmodel.Store,
        drawn: tuple[list[tuple[str, str, str, str]], list[tuple[str, bool]]]) -> None:
    models, calls_ = drawn
    prefix = f"fx31kp{next(_examples)}"
    where = tmp_path_factory.mktemp("fix31k")
    text = HEAD + "".join(_model(n, prefix, shape) for n, shape in enumerate(models))
    lines = {}
    for i, (call, _) in enumerate(calls_):
        text += f"\n\ndef call_{i}(store: Store) -> Any:\n"
        lines[text.count("\n") + 1] = i
        text += f"    return {call}\n"
    path = where / f"{prefix}.py"
    path.write_text(text)
    errors = {lines[n] for n in _mypy_errors(path) if n in lines}
    spec = importlib.util.spec_from_file_location(prefix, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[prefix] = module
    saved = []
    try:
        spec.loader.exec_module(module)
        for n, (_, _, key, key_type) in enumerate(models):
            good = eval(KEYS[key_type][0], {"dt": datetime})
            store.save(getattr(module, f"Thing{n}")(**{key: good}))
            saved.append((getattr(module, f"Thing{n}"), good))
        refused = {i for i in range(len(calls_)) if _refused(getattr(module, f"call_{i}"), store)}
    finally:
        for model, good in saved:
            store.delete(model, good)
            store.unregister(model)
        del sys.modules[prefix]
    false_positives = {calls_[i][0] for i in errors - refused}
    missed = {calls_[i][0] for i in refused - errors if calls_[i][1]}
    assert (false_positives, missed) == (set(), set()), models
