"""The front door: core names at the top, the rest one import away in documented
submodules, and every old path still working for one release with a DeprecationWarning
that names the new one (docs/design.md, "Where things live")."""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from typing import Any

import pytest

import redmodel
import redmodel.codecs
import redmodel.containers
import redmodel.migrations
import redmodel.testing
import redmodel.transactions

PUBLIC = [redmodel, *(importlib.import_module(m.name) for m in pkgutil.walk_packages(
    redmodel.__path__, "redmodel.") if not any(p.startswith("_") for p in m.name.split(".")))]
"""Every public module: no part of its name starts with ``_`` (docs/design.md, "Where
things live"). Found by walking the package, so a new one is checked too."""


def test_the_public_modules_are_the_documented_ones() -> None:
    assert {m.__name__ for m in PUBLIC if hasattr(m, "__all__")} == {
        "redmodel", "redmodel.cli", "redmodel.codecs", "redmodel.containers",
        "redmodel.migrations", "redmodel.mypy", "redmodel.testing", "redmodel.transactions"}


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
            if isinstance(obj, type) or callable(obj):
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
