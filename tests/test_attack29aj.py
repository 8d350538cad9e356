"""Attack 29AJ: what a new user meets first (docs as written, typing, set-up errors).

Each test holds the code to a sentence of the docs, and fails now. Findings and their
reproductions: /work/notes/s29/ATK-AJ-FINDINGS.md.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import redis
from mypy import api

import redmodel
from tests.acl import setuser_args

ROOT = Path(__file__).resolve().parent.parent


@redmodel.model(prefix="ajhat", ttl=3600)
@attrs.define
class AjHat:
    color: str
    price: float = 0.0
    note: str | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="ajihat")
@attrs.define
class AjIHat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    sku: str = redmodel.field(unique=True)
    id: str = redmodel.key_field()


@pytest.fixture
def user_without(redis_client: redis.Redis, redis_url: str) -> Iterator[object]:
    """A function (feature, command) -> a Store logged in as an ACL user with that feature's
    rule of docs/deploy.md (tests/acl.py) minus one command."""
    made: list[tuple[str, redmodel.Store]] = []

    def make(feature: str, without: str) -> redmodel.Store:
        name, password = f"aj-{secrets.token_hex(4)}", secrets.token_hex(16)
        redis_client.execute_command(
            *setuser_args(name, password, feature, ("ajhat*", "ajihat*"), without=without))
        user = redmodel.Store.from_url(redis_url, username=name, password=password)
        made.append((name, user))
        return user

    yield make
    for name, user in made:
        user.close()
        redis_client.execute_command("ACL", "DELUSER", name)


# ---- F1: a refused command inside a hash model's write script half-writes the object --------

@pytest.mark.parametrize("without", ["hdel", "pexpire"])
def test_acl_refusal_inside_a_save_script_leaves_the_object_as_it_was(
    store: redmodel.Store, user_without: object, without: str
) -> None:
    """docs/store.md, "Atomicity and failures": "Saving one object is one command (`HSET`,
    or one script), so a reader never sees half of a save". docs/deploy.md: ACLs are
    checked inside scripts, "else it fails with a `ResponseError`". A user whose rule lacks
    one command must get the error with the object untouched, not half of the save
    (-hdel: the new color next to the old note; -pexpire: a ttl=3600 object that never
    expires)."""
    old = AjHat("black", 1.0, note="keep?", id="h1")
    store.save(old)
    user = user_without("hash models", without)  # type: ignore[operator]
    with pytest.raises(redis.RedisError):
        if without == "hdel":  # a save over h1 that drops its note
            user.save(AjHat("white", 2.0, note=None, id="h1"))
        else:  # a new object of the ttl=3600 model
            user.save(AjHat("green", 3.0, id="h2"))
    assert store.get(AjHat, "h1") == old, "the refused save changed the object"
    assert not store.exists(AjHat, "h2"), "the refused save stored an object without its ttl"


# ---- F2: ... and, for an indexed model, leaves the index out of step with the data -----------

def test_acl_refusal_inside_an_index_write_leaves_data_and_index_in_step(
    store: redmodel.Store, user_without: object
) -> None:
    """docs/queries.md, "How entries stay right": "**All or nothing** ... The script then
    checks everything that can fail before its first write ... and only then writes the
    object and the difference between its old and new entries." README: "every write keeps
    its index entries in step atomically". A user lacking one command of the "indexes and
    queries" rule (+zadd on Redis 7.0, +sadd or +incrby on Valkey 9.1) gets an error, and
    the object is stored without (some of) its entries: verify() reports it."""
    broken = {}
    for without in ("zadd", "sadd", "incrby"):
        user = user_without("indexes and queries", without)  # type: ignore[operator]
        with pytest.raises(redis.RedisError):
            user.save(AjIHat("black", 1.0, f"S-{without}", id=f"i-{without}"))
        if store.verify(AjIHat):
            broken[without] = store.verify(AjIHat)
        store.client.delete(*store.client.scan_iter("ajihat:*"))
    assert broken == {}


# ---- F3: the save_many error says "not written" of an object that is in Redis ---------------

def test_save_many_error_does_not_list_a_written_object_as_not_written(
    store: redmodel.Store, user_without: object
) -> None:
    """docs/store.md: an object the server refuses "stops the call after its chunk: the
    error says which objects were written and which not, and carries their keys
    (`.written`, `.not_written`)". After an ACL refusal inside index_write_many the error
    lists ajihat:m1 in `.not_written`, yet its hash is in Redis."""
    user = user_without("indexes and queries", "zadd")  # type: ignore[operator]
    with pytest.raises(redmodel.RedmodelError) as caught:
        user.save_many([AjIHat("g", 3.0, "M1", id="m1"), AjIHat("g", 4.0, "M2", id="m2")])
    not_written = list(caught.value.not_written)  # type: ignore[attr-defined]
    assert not_written
    in_redis = [k for k in not_written if store.client.exists(k)]
    assert in_redis == [], f"listed as not written, but stored: {in_redis}"


# ---- F4..F6: mypy --strict with the plugin, on a new user's code ----------------------------

def _mypy(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """mypy --strict with the project's configuration (plugin redmodel.mypy), in process,
    on one file of user code; the lines it reports about that file."""
    path = tmp_path / "usercode.py"
    path.write_text(textwrap.dedent(source))
    monkeypatch.chdir(ROOT)
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                "--show-error-codes", "--no-error-summary", "--no-pretty",
                                str(path)])
    assert status in (0, 1), out + err
    return [line.split(":", 1)[1] for line in out.splitlines() if line.startswith(str(path))]


def test_mypy_flags_a_field_default_of_the_wrong_type_none_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/models.md, "Type checking (mypy)": with the plugin, "`redmodel.field(...)` is
    required unless it passes `default=` or `factory=` ...; a `default` of the wrong type
    is an error". `default="zero"` on an int is flagged; `default=None` on an int (or on a
    `key_field(generated=False)` str id) is not: field()'s first overload returns Any for
    default=None, and key_field() takes **kwargs. At run time the object then fails at
    save with ValidationError."""
    reported = _mypy(tmp_path, """
        import attrs
        import redmodel

        @redmodel.model(prefix="ajdef")
        @attrs.define
        class Item:
            count: int = redmodel.field(default=None)
            id: str = redmodel.key_field(generated=False, default=5)
        """, monkeypatch)
    lines = {int(r.split(":", 1)[0]) for r in reported if "error" in r}
    assert lines >= {8, 9}, reported


def test_mypy_sees_a_generated_key_field_of_an_attrs_base_as_defaulted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/models.md: "With it, mypy --strict sees each model's `__init__` as it is at run
    time: ... `redmodel.key_field()` has a default (a generated id)". When the key_field
    is declared in a plain attrs base class (a shared mixin) of a decorated model, the
    plugin does not rewrite it (its hook is @redmodel.model only), so mypy makes `id`
    required: right code `Owned("bob")`, which runs, is an error."""
    reported = _mypy(tmp_path, """
        import attrs
        import redmodel

        @attrs.define
        class WithId:
            name: str
            id: str = redmodel.key_field()

        @redmodel.model(prefix="ajowned")
        @attrs.define
        class Owned(WithId):
            extra: int = 0

        Owned("bob")
        """, monkeypatch)
    assert reported == []


def test_mypy_flags_an_async_def_given_to_a_store_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/design.md: "`redmodel.transaction(store)` returns a decorator typed by the store
    it was given: bound to a `Store` it accepts only a function of a `Transaction`, bound to
    an `AsyncStore` only an `async def` of an `AsyncTransaction` ...; a mismatch is an
    `arg-type` error at the decorator." docs/transactions.md: "An `async def` given to a
    `Store`'s transaction, or a sync function to an `AsyncStore`'s, is refused when
    decorated" (TransactionError at run time). mypy flags the second mismatch, not the
    first."""
    reported = _mypy(tmp_path, """
        import redmodel
        from redmodel import Store
        from redmodel.transactions import Transaction

        def wire(store: Store) -> None:
            @store.transaction
            async def a(tx: Transaction) -> None:
                pass

            @redmodel.transaction(store)
            async def b(tx: Transaction) -> None:
                pass
        """, monkeypatch)
    lines = {int(r.split(":", 1)[0]) for r in reported if "error" in r}
    assert lines >= {7, 11}, reported


# ---- F7: a generated key_field on a non-str id is accepted, then every save fails -----------

def test_generated_key_field_on_an_int_id_is_refused_at_declaration() -> None:
    """docs/models.md, "Errors": `ModelDefinitionError` "at declaration: unsupported type,
    no key field, bad option". `id: int = redmodel.key_field()` (or UUID) is accepted; each
    object made without an id holds a str id in an int field (mypy: int) and every save
    raises ValidationError ("expected int, got str")."""
    with pytest.raises(redmodel.ModelDefinitionError):
        @redmodel.model(prefix="ajintid")
        @attrs.define
        class IntId:
            x: int
            id: int = redmodel.key_field()


# ---- F8: IndexNotReadyError's hint, for a model in a script, names a command that fails -----

def test_index_not_ready_hint_names_a_command_that_works(redis_url: str, tmp_path: Path) -> None:
    """docs/migrations.md: a query on a `building` index "raises `IndexNotReadyError` ...,
    naming the index and how to build it"; the message ends "or `redmodel reindex -m
    <module>:<Model>`". For a model in a script run as `python shopapp.py` it says
    `-m __main__:Product`, which exits 2 ("__main__ has no 'Product'"); the registry
    names the owner `shopapp.Product`, so redmodel knows the module."""
    script = tmp_path / "shopapp.py"
    script.write_text(textwrap.dedent("""
        import sys, attrs, redmodel
        store = redmodel.Store.from_env()
        if sys.argv[1:] == ["old"]:
            @redmodel.model(prefix="ajcat")
            @attrs.define
            class Product:
                name: str
                id: str = redmodel.key_field()
            store.save(Product("hat"))
        else:
            @redmodel.model(prefix="ajcat")
            @attrs.define
            class Product:
                name: str = redmodel.field(index=True)
                id: str = redmodel.key_field()
            if sys.argv[1:] == ["new"]:
                try:
                    store.find(Product, name="hat").count()
                except redmodel.IndexNotReadyError as e:
                    print(str(e).rsplit("`redmodel ", 1)[1].rstrip("`"))
        """))
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, str(script)]
    subprocess.run([*run, "old"], env=env, cwd=tmp_path, check=True, timeout=60)
    hint = subprocess.run([*run, "new"], env=env, cwd=tmp_path, check=True, timeout=60,
                          capture_output=True, text=True).stdout.strip()
    assert hint.startswith("reindex -m "), hint
    done = subprocess.run([sys.executable, "-m", "redmodel", *hint.split()], env=env, check=False,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"redmodel {hint}: {done.stderr}"
