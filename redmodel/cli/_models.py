"""Finding the models a command works on, from ``--models`` import paths."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

from redmodel._models._specs import spec_of

__all__ = ["ModelsError", "is_model", "load_models"]


class ModelsError(Exception):
    """A ``--models`` path that does not name models; the message says why, in one line."""


def is_model(obj: Any) -> bool:
    """A class declared with ``@redmodel.model`` (its own spec, not a base class')."""
    if not isinstance(obj, type):
        return False
    try:
        spec_of(obj)
    except TypeError:
        return False
    return True


def _import(module_name: str, path: str) -> Any:
    if os.getcwd() not in sys.path and "" not in sys.path:
        # as `python -m` does: the project an operator runs the command in is importable
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except Exception as e:  # anything a models module raises while it is imported
        raise ModelsError(f"--models {path}: cannot import {module_name!r}: "
                          f"{type(e).__name__}: {e}") from None


def _models_in(path: str) -> list[type]:
    module_name, _, attr = path.partition(":")
    if not module_name:
        raise ModelsError(f"--models {path}: expected MODULE or MODULE:CLASS")
    module = _import(module_name, path)
    if attr:
        found: Any = module
        for part in attr.split("."):
            found = getattr(found, part, None)
        if found is None:
            raise ModelsError(f"--models {path}: {module_name} has no {attr!r}")
        if not is_model(found):
            raise ModelsError(f"--models {path}: {attr} is not a redmodel model "
                              "(declare it with @redmodel.model)")
        return [found]
    models = [obj for obj in vars(module).values() if is_model(obj)]
    if not models:
        raise ModelsError(f"--models {path}: no redmodel models in {module_name}")
    # declaration order, as the module lists them
    return models


def load_models(paths: Iterable[str]) -> list[type]:
    """Every model the paths name, each once, in the order given."""
    seen: dict[int, type] = {}
    for path in paths:
        for cls in _models_in(path.strip()):
            seen.setdefault(id(cls), cls)
    return list(seen.values())
