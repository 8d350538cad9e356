"""Every redmodel error survives pickling (a worker process, a task queue) and copy.copy /
copy.deepcopy as itself: the same class, the same message (never the context added twice),
the same attributes (keys, key, field, ...). The classes are found by introspection over
every public module's ``__all__``, so a new error is covered without editing this file;
each is built from its own ``__init__`` signature with values drawn from its annotations.
No server is needed."""

from __future__ import annotations

import copy
import inspect
import pickle
import typing
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
import redmodel.codecs
import redmodel.containers
import redmodel.migrations
import redmodel.testing
import redmodel.transactions
from redmodel._models._hidden import HIDDEN
from tests.budget import scaled

PUBLIC = (redmodel, redmodel.codecs, redmodel.containers, redmodel.transactions,
          redmodel.migrations, redmodel.testing)

ERRORS = sorted(
    {obj for m in PUBLIC for n in m.__all__
     if isinstance(obj := getattr(m, n), type) and issubclass(obj, BaseException)},
    key=lambda c: f"{c.__module__}.{c.__qualname__}",
)

# Texts with what makes messages fragile: quotes, braces, newlines, surrogates, the empty one.
TEXT = st.text(st.characters(codec=None), max_size=30)
NUMBER = st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                   st.floats(allow_nan=True, allow_infinity=True))
ANY = st.one_of(TEXT, NUMBER, st.just(HIDDEN), st.tuples(TEXT, st.just(HIDDEN)))


def _strategy(hint: Any) -> st.SearchStrategy[Any]:
    if hint is Any or hint is object:
        return ANY
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, __import__("types").UnionType):
        return st.one_of(*(_strategy(a) for a in args))
    if origin is tuple or hint is tuple:
        return st.lists(TEXT, max_size=8).map(tuple)
    if origin is not None and args:  # Sequence[str] and the like
        return st.lists(_strategy(args[0]), max_size=8)
    if hint is type(None):
        return st.none()
    if hint is str:
        return TEXT
    if hint in (int, float):
        return NUMBER
    return st.from_type(hint)


def _builds(cls: type[BaseException]) -> st.SearchStrategy[BaseException]:
    try:
        signature = inspect.signature(cls)
    except ValueError:  # no __init__ of its own: Exception's (message, ...)
        return TEXT.map(cls)
    hints = typing.get_type_hints(cls.__init__)
    params = [p for p in signature.parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    drawn = {p.name: _strategy(hints.get(p.name, Any)) for p in params}
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]

    def build(values: dict[str, Any]) -> BaseException:
        args = [values.pop(n) for n in positional]
        return cls(*args, **values)
    return st.fixed_dictionaries(drawn).map(build)


def _same(a: BaseException, b: BaseException) -> None:
    assert type(b) is type(a)
    assert str(b) == str(a)
    assert repr(b.args) == repr(a.args)  # repr: NaN is not equal to itself
    assert repr(vars(b)) == repr(vars(a))
    assert {n for n, v in vars(b).items() if v is HIDDEN} == {
        n for n, v in vars(a).items() if v is HIDDEN}


TRIPS: dict[str, Callable[[BaseException], BaseException]] = {
    "pickle": lambda e: pickle.loads(pickle.dumps(e)),
    "pickle-0": lambda e: pickle.loads(pickle.dumps(e, protocol=0)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}


def test_every_public_module_exports_errors() -> None:
    assert redmodel.RedmodelError in ERRORS and redmodel.migrations.MigrationError in ERRORS
    assert all(issubclass(c, redmodel.RedmodelError) for c in ERRORS)


@pytest.mark.parametrize("trip", sorted(TRIPS))
@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__qualname__)
def test_an_error_comes_back_as_itself(cls: type[BaseException], trip: str) -> None:
    @settings(max_examples=scaled(10, floor=3), deadline=None)
    @given(_builds(cls))
    def check(error: BaseException) -> None:
        error.__notes__ = ["a note"]  # what add_note (3.11+) appends to; 3.10 has none
        if isinstance(error, redmodel.RedmodelError):
            error.written, error.not_written = ("k:1",), ("k:2",)
        _same(error, TRIPS[trip](error))

    check()


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__qualname__)
def test_a_pickled_error_holds_nothing_the_error_does_not_show(
        cls: type[BaseException]) -> None:
    """The cause, context and traceback of an error may hold what its message left out (a
    plaintext a codec failed on, a token): its pickle and copies carry none of them."""
    secret = "plaintext-4111111111111111"

    @settings(max_examples=scaled(5, floor=2), deadline=None)
    @given(_builds(cls))
    def check(error: BaseException) -> None:
        try:
            try:
                raise ValueError(secret)
            except ValueError as inner:
                raise error from inner
        except BaseException as raised:  # any error class is under test
            caught = raised
        assert secret not in str(caught) and secret not in repr(vars(caught))
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            assert secret.encode() not in pickle.dumps(caught, protocol=protocol)
        back = copy.deepcopy(caught)
        assert back.__cause__ is None and back.__traceback__ is None

    check()


def test_a_blind_unique_value_stays_hidden_across_a_pickle() -> None:
    error = redmodel.UniqueViolationError("Hat", ("sku", "size"), ("M", HIDDEN), "hat:1")
    back = pickle.loads(pickle.dumps(error))
    assert back.value[1] is HIDDEN and "<encrypted>" in str(back)
