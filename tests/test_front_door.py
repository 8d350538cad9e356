"""The front door: core names at the top, the rest one import away in documented
submodules, and every old path still working for one release with a DeprecationWarning
that names the new one (docs/design.md, "Where things live")."""

from __future__ import annotations

import collections.abc
import importlib
import pkgutil
import typing
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import redmodel
import redmodel.codecs
import redmodel.containers
import redmodel.migrations
import redmodel.plans
import redmodel.testing
import redmodel.transactions

PUBLIC = [redmodel, *(importlib.import_module(m.name) for m in pkgutil.walk_packages(
    redmodel.__path__, "redmodel.") if not any(p.startswith("_") for p in m.name.split(".")))]
"""Every public module: no part of its name starts with ``_`` (docs/design.md, "Where
things live"). Found by walking the package, so a new one is checked too."""


def test_the_public_modules_are_the_documented_ones() -> None:
    assert {m.__name__ for m in PUBLIC if hasattr(m, "__all__")} == {
        "redmodel", "redmodel.cli", "redmodel.codecs", "redmodel.containers",
        "redmodel.migrations", "redmodel.mypy", "redmodel.plans", "redmodel.testing",
        "redmodel.transactions"}


@pytest.mark.parametrize("name", sorted(redmodel.MOVED))
def test_a_moved_name_warns_naming_its_new_path_and_is_the_same_object(name: str) -> None:
    new = redmodel.MOVED[name]
    with pytest.warns(DeprecationWarning, match=rf"redmodel\.{name} moved to {new}\.{name}"):
        old = getattr(redmodel, name)
    assert old is getattr(importlib.import_module(new), name)
    assert name in importlib.import_module(new).__all__


def test_the_old_from_import_still_works_and_warns() -> None:
    with pytest.warns(DeprecationWarning, match="redmodel.containers"):
        from redmodel import Queue  # noqa: PLC0415
    assert Queue is redmodel.containers.Queue


@pytest.mark.parametrize("name", sorted(redmodel.MOVED.keys() | redmodel.DEPRECATED.keys()))
@pytest.mark.parametrize("form", ["from redmodel import {name}",
                                  "from redmodel import ({name} as renamed)",
                                  "import redmodel\nredmodel.{name}"])
def test_an_old_path_warns_exactly_once_at_the_users_line(name: str, form: str) -> None:
    """The import machinery looks a ``from`` name up twice (its fromlist probe, then the
    import itself): still one warning, and it names the user's file and line."""
    source = "x = 1\n" + form.format(name=name)
    code = compile(source, "user_code.py", "exec")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(code, {})  # the user code under test
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert [(w.filename, w.lineno) for w in ours] == [("user_code.py", source.count("\n") + 1)]
    assert name in str(ours[0].message)


def test_transact_is_a_deprecated_alias_of_transaction() -> None:
    with pytest.warns(DeprecationWarning, match=r"use redmodel\.transaction"):
        transact = redmodel.transact
    assert callable(transact)


@pytest.mark.parametrize("module", PUBLIC, ids=lambda m: m.__name__)
def test_the_public_names_do_not_warn_and_say_where_they_live(module: Any) -> None:
    public = [n for n in vars(module) if n.isidentifier() and not n.startswith("_")]
    assert hasattr(module, "__all__") or not public
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            is_alias = typing.get_origin(obj) is not None  # redmodel.plans.Plan: no module
            if (isinstance(obj, type) or callable(obj)) and not is_alias:
                assert obj.__module__ == module.__name__, name


def test_the_front_door_keeps_the_core_and_nothing_moved() -> None:
    core = {"model", "field", "key_field", "new_id", "Store", "AsyncStore", "transaction",
            "Q", "Query", "Page", "Range", "DEFAULT", "ResendPolicy", "between", "contains",
            "ge", "gt", "le", "lt", "one_of"}
    assert core <= set(redmodel.__all__)
    assert not set(redmodel.MOVED) & set(redmodel.__all__)
    errors = {n for n in dir(redmodel) if n.endswith("Error")}
    assert errors <= set(redmodel.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        redmodel.Nope  # noqa: B018


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(redmodel.__path__, "redmodel.")
            if m.name != "redmodel.__main__"]


def test_every_all_is_sorted() -> None:
    unsorted = [name for name in ["redmodel", *_modules()]
                if list(getattr(importlib.import_module(name), "__all__", ()))
                != sorted(getattr(importlib.import_module(name), "__all__", ()))]
    assert unsorted == []


def test_every_module_says_what_it_owns() -> None:
    assert [name for name in _modules() if not (importlib.import_module(name).__doc__ or "")
            .strip() or "placeholder" in importlib.import_module(name).__doc__] == []


# What a transaction needs of a store: protocols of redmodel.transactions._handles, named
# Store / AsyncStore in the signatures of Transaction(store) and TransactionFunction.bind.
# The argument is a redmodel.Store / AsyncStore (both exported); the protocols are the
# plumbing that keeps transactions from importing the stores (docs/design.md, "Where
# things live"), not a type a user names.
PLUMBING = {"redmodel.transactions._handles.Store", "redmodel.transactions._handles.AsyncStore"}
_RUN_DUNDERS = {"__init__", "__call__", "__enter__", "__aenter__", "__iter__", "__aiter__",
                "__next__", "__anext__"}


def _public_functions() -> list[tuple[str, Any]]:
    found = []
    for module in PUBLIC:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not isinstance(obj, type):
                if callable(obj) and typing.get_origin(obj) is None:  # not an alias
                    found.append((f"{module.__name__}.{name}", obj))
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr not in _RUN_DUNDERS:
                    continue
                value = getattr(member, "__func__", member)  # classmethod, staticmethod
                value = getattr(value, "fget", value)  # property
                if callable(value) and hasattr(value, "__annotations__"):
                    found.append((f"{module.__name__}.{name}.{attr}", value))
    return found


def _redmodel_classes(hint: Any) -> Iterator[type]:
    for arg in typing.get_args(hint):
        yield from _redmodel_classes(arg)
    origin = typing.get_origin(hint) or hint
    if isinstance(origin, type) and origin.__module__.startswith("redmodel"):
        yield origin


def test_every_type_in_a_public_signature_is_exported_and_resolves() -> None:
    """Issue 18, item 4: every type a public function takes or returns is exported by a
    public module, and ``typing.get_type_hints`` resolves every public signature (no name
    left behind a ``TYPE_CHECKING`` import). Found by introspection over every public
    module, so a new function is checked too."""
    exported = {id(getattr(m, n)) for m in PUBLIC for n in getattr(m, "__all__", ())}
    functions = _public_functions()
    assert len(functions) > 300  # the walk found the API
    unresolved, hidden = {}, {}
    for where, function in functions:
        try:
            hints = typing.get_type_hints(function)
        except NameError as error:
            unresolved[where] = str(error)
            continue
        for hint in hints.values():
            for cls in _redmodel_classes(hint):
                name = f"{cls.__module__}.{cls.__qualname__}"
                if id(cls) not in exported and name not in PLUMBING:
                    hidden.setdefault(name, []).append(where)
    assert unresolved == {}
    assert hidden == {}


def test_the_plan_types_are_public() -> None:
    plan = redmodel.plans.Plan[int]
    assert typing.get_origin(plan) is collections.abc.Generator
    assert typing.get_args(plan) == (redmodel.plans.Batch, list[Any], int)
    assert redmodel.plans.Batch.__module__ == "redmodel.plans"
