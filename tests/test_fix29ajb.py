"""Fix 29AJ-B (attack 29AJ F4-F8): what a model declares and what a transaction decorator
is given type-check as they run, and what cannot run is refused when declared.

The typing tests write user code to files and check them with mypy --strict and the
plugin ``redmodel.mypy`` (the project's configuration), in one subprocess for the module,
as tests/test_typing.py does: a line ending in ``# E: code`` must get exactly errors of
those codes, every other line none. Right code passes, wrong code fails with the code.

- F4: a ``default=`` of the wrong type, ``None`` included, on ``field`` and
  ``key_field(generated=False)``; every scalar type, Optional, ``factory=``,
  ``attrs.Factory``, ``kw_only``, in a model, a frozen model and a plain attrs class.
- F5: a ``key_field()`` in a plain attrs base (one or two levels up, ``attrs.define``,
  ``attrs.frozen``, ``attr.s``, also read from mypy's cache) is defaulted, as at run time;
  a required field after it is an error, as at run time (each case also runs).
- F6: an ``async def`` given to a ``Store``'s transaction, in each form, is an
  ``arg-type`` error; the right pairings pass.
- F7: a generated key field whose type is not ``str`` is a ModelDefinitionError.
- F8: IndexNotReadyError's ``redmodel reindex -m`` hint works for a script's model.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import itertools
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest

import redmodel
from redmodel._models._keys import new_id
from tests import user_mypy
from tests.conftest import seeded_mypy_cache

ROOT = Path(__file__).resolve().parent.parent
#: ``# E: a, b|c``: two errors, one of code a, one of b or c
EXPECTED = re.compile(r"#\s*E:\s*([a-z|-]+(?:\s*,\s*[a-z|-]+)*)\s*$")

HEADER = """\
from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any, Optional

import attr
import attrs

import redmodel
from redmodel import AsyncStore, Store
from redmodel.transactions import AsyncTransaction, RetryPolicy, Transaction
from redmodel.transactions._run import transact


class Color(enum.Enum):
    RED = "red"


@attrs.define
class Inner:
    a: int = 0

"""

# ---- the cases --------------------------------------------------------------------------

#: declared type -> (right defaults, wrong defaults); a wrong one is one error, of code
#: ``assignment`` or ``arg-type`` (as mypy infers ``field``'s type variable from the
#: value or from the declared type) unless it names another after ``::``
DEFAULTS: dict[str, tuple[list[str], list[str]]] = {
    "int": (["0", "-3"], ["None", '"0"', "1.5", 'b"0"', "[0]"]),
    "float": (["0.5"], ["None", '"0.5"', 'b"0"']),
    "str": (['"x"'], ["None", "0", 'b"x"']),
    "bool": (["False"], ["None", '"no"', "0"]),
    "bytes": (['b"x"'], ["None", '"x"']),
    "dt.datetime": (["dt.datetime(2024, 1, 1)"], ["None", '"2024-01-01"', "dt.date(2024, 1, 1)"]),
    "decimal.Decimal": (['decimal.Decimal("1.5")'], ["None", "1.5"]),
    "uuid.UUID": (["uuid.UUID(int=0)"], ["None", '"0"']),
    "Color": (["Color.RED"], ["None", '"red"']),
    "Inner": (["attrs.Factory(Inner)"],
              ["None", "Color.RED", "attrs.Factory(Color)::arg-type,assignment"]),
    "int | None": (["None", "0"], ['"0"']),
    "Optional[str]": (["None", '"x"'], ["0"]),
    "list[int]": (["attrs.Factory(list)"],
                  ["None", "attrs.Factory(dict)", '["x"]::list-item', "3"]),
    "dict[str, int]": (["attrs.Factory(dict)"], ["None", "attrs.Factory(list)"]),
    "tuple[int, ...]": (["(1, 2)", "()"], ["None", '("x",)', "[1]"]),
}
#: declared type -> (right factory=, wrong factory=), as DEFAULTS
FACTORIES: dict[str, tuple[list[str], list[str]]] = {
    "list[int]": (["list", "lambda: [1]"],
                  ["dict", "lambda: None::arg-type,return-value", 'lambda: ["x"]::list-item']),
    "int": (["int", "lambda: 1"], ["str", "lambda: None"]),
    "str | None": (["str", "lambda: None"], ["int"]),
}
#: how the class holding the field is declared
CONTAINERS = {
    "model": '@redmodel.model(prefix="{p}")\n@attrs.define\n',
    "frozen_model": '@redmodel.model(prefix="{p}")\n@attrs.frozen\n',
    "plain_attrs": "@attrs.define\n",
}
#: what else the field() call passes
EXTRAS = {"model": "", "frozen_model": ", index=True", "plain_attrs": ", kw_only=True"}


def _class(name: str, container: str, body: list[str]) -> str:
    key = ["    id: str = redmodel.key_field()"] if container != "plain_attrs" else []
    return (CONTAINERS[container].format(p=name.lower()) + f"class {name}:\n"
            + "\n".join([*body, *key]) + "\n\n\n")


def _default_cases() -> dict[str, str]:
    cases: dict[str, str] = {}
    for number, (declared, (right, wrong)) in enumerate(DEFAULTS.items()):
        for container, extra in EXTRAS.items():
            body = [f"    ok{i}: {declared} = redmodel.field(default={v}{extra})"
                    for i, v in enumerate(right)]
            body += [f"    bad{i}: {declared} = redmodel.field(default={v}{extra})  # E: "
                     f"{code or 'assignment|arg-type'}"
                     for i, (v, _, code) in enumerate(w.partition("::") for w in wrong)]
            cases[f"default-{number}-{declared}-{container}"] = _class(
                f"D{number}{container.title().replace('_', '')}", container, body)
    for number, (declared, (right, wrong)) in enumerate(FACTORIES.items()):
        body = [f"    ok{i}: {declared} = redmodel.field(factory={v})"
                for i, v in enumerate(right)]
        body += [f"    bad{i}: {declared} = redmodel.field(factory={v})  # E: "
                 f"{code or 'assignment|arg-type'}"
                 for i, (v, _, code) in enumerate(w.partition("::") for w in wrong)]
        cases[f"factory-{number}-{declared}"] = _class(f"F{number}", "model", body)
    return cases


#: key_field declarations: (declared type, arguments, expected error code or "")
KEY_FIELDS = [
    ("str", "", ""),
    ("int", "", "assignment"),  # a generated id is a str (F7 at run time)
    ("uuid.UUID", "", "assignment"),
    ("str", "generated=True", ""),
    ("int", "generated=True", "assignment"),
    ("str", "generated=False", ""),
    ("int", "generated=False", ""),
    ("uuid.UUID", "generated=False", ""),
    ("str", 'generated=False, default="x"', ""),
    ("str", "generated=False, default=None", "assignment"),
    ("str", "generated=False, default=5", "assignment"),
    ("int", "generated=False, default=5", ""),
    ("int", 'generated=False, default="5"', "assignment"),
    ("int", "generated=False, default=None", "assignment"),
    ("uuid.UUID", 'generated=False, default="0"', "assignment"),
    ("str", "generated=False, factory=str", ""),
    ("str", "generated=False, factory=int", "assignment|arg-type"),
    ("str", "generated=False, kw_only=False, default=None", "assignment"),
]


def _key_field_cases() -> dict[str, str]:
    cases = {}
    for number, (declared, args, code) in enumerate(KEY_FIELDS):
        for container in ("model", "plain_attrs"):
            line = f"    id: {declared} = redmodel.key_field({args})" + (
                f"  # E: {code}" if code else "")
            head = CONTAINERS[container].format(p=f"k{number}{container}")
            cases[f"key_field-{number}-{declared}-{args or 'bare'}-{container}"] = (
                f"{head}class K{number}:\n{line}\n\n\n")
    return cases


#: F5: (declarations, the calls after them, what running them raises or None)
INHERITED: dict[str, tuple[str, str, type[BaseException] | None]] = {
    "define-base": ("""
        @attrs.define
        class WithId:
            name: str
            id: str = redmodel.key_field()

        @redmodel.model(prefix="i1")
        @attrs.define
        class Owned(WithId):
            extra: int = 0
        """, 'Owned("bob")\nOwned("bob", "given-id", 3)\n', None),
    "define-base-missing": ("""
        @attrs.define
        class WithId:
            name: str
            id: str = redmodel.key_field()

        @redmodel.model(prefix="i2")
        @attrs.define
        class Owned(WithId):
            extra: int = 0
        """, "Owned()  # E: call-arg\n", TypeError),
    "two-levels": ("""
        @attrs.define
        class WithId:
            id: str = redmodel.key_field()

        @attrs.define
        class Named(WithId):
            name: str = ""

        @redmodel.model(prefix="i3")
        @attrs.define
        class Owned(Named):
            extra: int = 0
        """, 'Owned()\nOwned(name="x", extra=1)\n', None),
    "frozen-base": ("""
        @attrs.frozen
        class WithId:
            id: str = redmodel.key_field()

        @redmodel.model(prefix="i4")
        @attrs.frozen
        class Owned(WithId):
            extra: int = 0
        """, "Owned()\n", None),
    "attr-s-base": ("""
        @attr.s(auto_attribs=True)
        class WithId:
            id: str = redmodel.key_field()

        @redmodel.model(prefix="i5")
        @attr.s(auto_attribs=True)
        class Owned(WithId):
            extra: int = 0
        """, "Owned()\n", None),
    "not-generated-base": ("""
        @attrs.define
        class WithId:
            id: str = redmodel.key_field(generated=False)

        @redmodel.model(prefix="i6")
        @attrs.define
        class Owned(WithId):
            extra: int
        """, 'Owned(3, id="a")\n', None),
    "not-generated-base-missing": ("""
        @attrs.define
        class WithId:
            id: str = redmodel.key_field(generated=False)

        @redmodel.model(prefix="i7")
        @attrs.define
        class Owned(WithId):
            extra: int
        """, "Owned(3)  # E: call-arg\n", TypeError),
    "required-after-generated": ("""
        @attrs.define
        class WithId:
            id: str = redmodel.key_field()

        @redmodel.model(prefix="i8")
        @attrs.define
        class Owned(WithId):
            extra: int  # E: misc
        """, "", ValueError),
    "required-after-generated-two-levels": ("""
        @attrs.define
        class WithId:
            id: str = redmodel.key_field()

        @attrs.define
        class Named(WithId):
            pass

        @redmodel.model(prefix="i9")
        @attrs.define
        class Owned(Named):
            extra: int  # E: misc
        """, "", ValueError),
    "model-base": ("""
        @redmodel.model(prefix="i10")
        @attrs.define
        class Base:
            id: str = redmodel.key_field()

        @redmodel.model(prefix="i11")
        @attrs.define
        class Owned(Base):
            extra: int = 0
        """, "Owned()\n", None),
}

#: F6: how a function is given to a transaction, for a sync Store
TX_FORMS = {
    "store.transaction": "@store.transaction\n",
    "store.transaction(policy)": "@store.transaction(policy=RetryPolicy(attempts=2))\n",
    "transaction(store)": "@redmodel.transaction(store)\n",
    "transaction(store, policy)": "@redmodel.transaction(store, policy=RetryPolicy(attempts=2))\n",
    "subclass.transaction": "@mine.transaction\n",
}


def _transaction_cases() -> dict[str, str]:
    cases = {}
    for name, form in TX_FORMS.items():
        cases[f"tx-{name}"] = f"""
class MyStore(Store):
    pass


def wire(store: Store, mine: MyStore) -> None:
    {form.strip()}  # E: arg-type
    async def wrong(tx: Transaction) -> None:
        pass

    {form.strip()}
    def right(tx: Transaction, n: int) -> int:
        return n

    {form.strip()}  # E: arg-type
    async def wrong_handle(tx: AsyncTransaction) -> None:
        pass
"""
    cases["tx-by-name"] = """
async def coro(tx: Transaction) -> None:
    pass


def sync(tx: Transaction) -> int:
    return 1


def wire(store: Store) -> None:
    store.transaction(coro)  # E: arg-type
    redmodel.transaction(store)(coro)  # E: arg-type
    transact(store, coro)  # E: arg-type,unused-coroutine
    store.transaction(sync)
    redmodel.transaction(store)(sync)
    transact(store, sync)
"""
    cases["store-subclass-incr"] = """
class MyStore(Store):
    pass


@redmodel.model(prefix="sub")
@attrs.define
class Hat:
    quantity: int = 0
    id: str = redmodel.key_field()


def wire(mine: MyStore) -> int:
    mine.incr(Hat, "x", "nosuch")  # E: redmodel
    mine.incr(Hat, "x", "quantity", 0.5)  # E: redmodel
    return mine.incr(Hat, "x", "quantity")
"""
    cases["tx-right-pairings"] = """
def wire(store: Store, astore: AsyncStore) -> None:
    @astore.transaction
    async def a(tx: AsyncTransaction) -> None:
        pass

    @astore.transaction(policy=RetryPolicy(attempts=2))
    async def b(tx: AsyncTransaction) -> None:
        pass

    @redmodel.transaction(astore)
    async def c(tx: AsyncTransaction) -> None:
        pass

    @redmodel.transaction
    async def d(tx: AsyncTransaction) -> None:
        pass

    @redmodel.transaction
    def e(tx: Transaction) -> None:
        pass

    @astore.transaction(policy=RetryPolicy(attempts=2))  # E: arg-type
    def f(tx: Transaction) -> None:
        pass

    @store.transaction(policy=RetryPolicy(attempts=2))  # E: redmodel
    def g(tx: Transaction) -> Any:
        yield 1
"""
    return cases


def _all_cases() -> dict[str, str]:
    cases = {**_default_cases(), **_key_field_cases(), **_transaction_cases()}
    for name, (declared, calls, _) in INHERITED.items():
        cases[f"inherited-{name}"] = textwrap.dedent(declared) + "\n" + calls
    return cases


CASES = _all_cases()


def _module(name: str) -> str:
    return "ajb_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _expected(source: str) -> set[tuple[int, str]]:
    """(line, code) pairs; a code may be alternatives ``a|b``."""
    found = set()
    for number, line in enumerate(source.splitlines(), 1):
        match = EXPECTED.search(line)
        if match:
            found |= {(number, code.strip()) for code in match[1].split(",")}
    return found


def _matches(expected: set[tuple[int, str]], reported: set[tuple[int, str]]) -> bool:
    """Each line gets as many errors as expected, each of an expected code."""
    lines = {n for n, _ in expected | reported}
    for n in lines:
        want = sorted(c for m, c in expected if m == n)
        got = sorted(c for m, c in reported if m == n)
        if len(want) != len(got) or not any(
                all(g in w.split("|") for g, w in zip(got, order, strict=True))
                for order in itertools.permutations(want)):
            return False
    return True


def _run_mypy(files: list[Path], cache: Path, *options: str
              ) -> tuple[dict[str, set[tuple[int, str]]], str]:
    """Per module: the (line, error code)s mypy reports; and its log (stderr)."""
    found, log = user_mypy.run_mypy(files, cache, *options)
    reported: dict[str, set[tuple[int, str]]] = {}
    for match in found:
        if match["kind"] == "error" and match["code"]:
            reported.setdefault(Path(match["path"]).stem, set()).add(
                (int(match["line"]), match["code"]))
    return reported, log


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    where = tmp_path_factory.mktemp("ajb_user")
    files = []
    for name, body in CASES.items():
        path = where / f"{_module(name)}.py"
        path.write_text(HEADER + body)
        files.append(path)
    return _run_mypy(files, seeded_mypy_cache(where / ".mypy_cache"))[0]


@pytest.mark.parametrize("case", list(CASES))
def test_mypy_reports_what_run_time_refuses(
    case: str, checked: dict[str, set[tuple[int, str]]]
) -> None:
    """The case's wrong lines get exactly their error codes, its right lines none."""
    source = HEADER + CASES[case]
    expected = _expected(source)
    reported = checked.get(_module(case), set())
    shown = {n: source.splitlines()[n - 1].strip() for n, _ in expected ^ reported}
    assert _matches(expected, reported), f"missing: {expected - reported}\n" \
        f"unexpected: {reported - expected}\n{shown}"


@pytest.mark.parametrize("case", list(INHERITED))
def test_inherited_key_field_runs_as_mypy_says(case: str) -> None:
    """F5 at run time: each inherited-key-field case runs (or raises) as its mypy
    expectation says (an error line is what fails)."""
    declared, calls, raises = INHERITED[case]
    source = HEADER + textwrap.dedent(declared) + "\n" + calls
    module = type(sys)(f"ajb_rt_{case.replace('-', '_')}")
    sys.modules[module.__name__] = module  # attrs resolves the annotations there
    try:
        if raises is None:
            exec(compile(source, case, "exec"), module.__dict__)  # the user's code
            assert isinstance(module.Owned, type)
        else:
            with pytest.raises(raises):
                exec(compile(source, case, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


def test_a_key_field_of_a_base_read_from_mypy_cache(tmp_path: Path) -> None:
    """F5 with the base class in another module that mypy reads from its cache on the
    second run (only the user module changed): still defaulted / still an error."""
    (tmp_path / "ajb_base.py").write_text(textwrap.dedent("""
        import attrs
        import redmodel

        @attrs.define
        class WithId:
            name: str
            id: str = redmodel.key_field()

        @attrs.define
        class Keyed:
            id: str = redmodel.key_field(generated=False)
        """))
    user = tmp_path / "ajb_user.py"
    body = textwrap.dedent("""
        import attrs
        import redmodel
        from ajb_base import Keyed, WithId

        @redmodel.model(prefix="c1")
        @attrs.define
        class Owned(WithId):
            extra: int = 0

        @redmodel.model(prefix="c2")
        @attrs.define
        class Late(WithId):
            extra: int  # E: misc

        @redmodel.model(prefix="c3")
        @attrs.define
        class Given(Keyed):
            extra: int

        Owned("bob")
        Given(1, id="x")
        Given(1)  # E: call-arg
        """)
    files = [tmp_path / "ajb_base.py", user]
    cache = seeded_mypy_cache(tmp_path / ".mypy_cache")
    for run in range(2):
        user.write_text(body + f"RUN = {run}\n")
        reported, log = _run_mypy(files, cache, "--verbose")
        assert _matches(_expected(body), reported.get("ajb_user", set())), f"run {run}: {reported}"
    assert "Metadata fresh for ajb_base" in log and "(ajb_base)" not in log, \
        "ajb_base was analysed again, not read from mypy's cache"


# ---- F7: a generated key field that cannot hold a generated id ------------------------------

class Shade(enum.Enum):
    DARK = "dark"


@pytest.mark.parametrize("declared", [int, float, bool, bytes, uuid.UUID, decimal.Decimal,
                                      dt.datetime, dt.date, Shade], ids=lambda t: t.__name__)
@pytest.mark.parametrize("how", ["key_field", "field_factory", "inherited"])
def test_a_generated_key_field_must_be_a_str(declared: type, how: str) -> None:
    """F7: docs/models.md "Errors": ModelDefinitionError "at declaration: unsupported
    type, ... bad option"; "Generated ids are 26 lower-case characters". A generated id
    field of another type would hold a str and fail every save."""
    def declare() -> type:
        x = attrs.field(default=0, type=int)
        if how == "inherited":
            base = attrs.make_class("Base", {"id": redmodel.key_field(type=declared)})
            cls = attrs.make_class("Gen", {"x": x}, bases=(base,))
        else:
            made = redmodel.key_field(type=declared) if how == "key_field" else \
                redmodel.field(key=True, factory=new_id, type=declared)
            cls = attrs.make_class("Gen", {"x": x, "id": made})
        return redmodel.model(prefix=f"ajbgen{how}")(cls)

    with pytest.raises(redmodel.ModelDefinitionError) as caught:
        declare()
    message = str(caught.value)
    assert "'id'" in message and "generated=False" in message and ": str" in message, message


@pytest.mark.parametrize("declared", [int, str, uuid.UUID])
def test_a_given_key_field_of_any_scalar_and_a_generated_str_still_work(declared: type) -> None:
    given: Any = redmodel.model(prefix="ajbgiven")(attrs.make_class(
        "Given", {"id": redmodel.key_field(generated=False, type=declared)}))
    generated: Any = redmodel.model(prefix="ajbgen")(attrs.make_class(
        "Gen", {"id": redmodel.key_field(type=str)}))
    assert given(id=declared(1) if declared is not uuid.UUID else uuid.uuid4()).id
    assert len(generated().id) == 26


@pytest.mark.parametrize("given", ["default", "factory"])
def test_a_generated_key_field_takes_no_default_of_its_own(given: str) -> None:
    """key_field(default=x) dropped x without a word (the id was generated anyway), and
    key_field(factory=f) was a TypeError from inside redmodel."""
    with pytest.raises(redmodel.ModelDefinitionError, match="generated=False"):
        if given == "default":
            redmodel.key_field(default="x")
        else:
            redmodel.key_field(factory=lambda: "x")


# ---- F8: the reindex hint, for a model in a script ---------------------------------------

SCRIPT = """
import sys, attrs, redmodel
store = redmodel.Store.from_env()
if sys.argv[1:] == ["old"]:
    @redmodel.model(prefix="ajbcat")
    @attrs.define
    class Product:
        name: str
        id: str = redmodel.key_field()
    store.save(Product("hat"))
else:
    @redmodel.model(prefix="ajbcat")
    @attrs.define
    class Product:
        name: str = redmodel.field(index=True)
        id: str = redmodel.key_field()
    try:
        store.find(Product, name="hat").count()
    except redmodel.IndexNotReadyError as e:
        print(str(e).rsplit("`redmodel ", 1)[1].rstrip("`"))
"""


@pytest.mark.parametrize("run_as", ["path", "-m"])
def test_index_not_ready_hint_works_for_a_script(
    redis_url: str, tmp_path: Path, run_as: str
) -> None:
    """F8: docs/migrations.md: IndexNotReadyError names the index "and how to build it";
    for a model of a script (``python shopapp.py`` or ``python -m shopapp``) the
    command it names must run."""
    (tmp_path / "shopapp.py").write_text(SCRIPT)
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    run = [sys.executable, "shopapp.py"] if run_as == "path" else [sys.executable, "-m", "shopapp"]
    subprocess.run([*run, "old"], env=env, cwd=tmp_path, check=True, timeout=60)
    hint = subprocess.run([*run, "new"], env=env, cwd=tmp_path, check=True, timeout=60,
                          capture_output=True, text=True).stdout.strip()
    assert hint == "reindex -m shopapp:Product", hint
    done = subprocess.run([sys.executable, "-m", "redmodel", *hint.split()], env=env,
                          cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"redmodel {hint}: {done.stderr}"
