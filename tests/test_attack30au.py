"""Attack 30AU: migrations and the registry's lifecycle (docs/migrations.md, docs/models.md).

Each test holds the code to a sentence of the docs (quoted in its docstring) and fails on
main now; /work/notes/s30/ATK-AU-FINDINGS.md has the details."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import redmodel
from redmodel.migrations import (
    MigrationError,
    Migrations,
    MigrationVerifyError,
    build_index,
    drop_index,
    rewrite,
    update,
)
from tests.test_registry import declare

# Two ints whose order in a frozenset depends on the order they were added in (their
# hashes share a slot of an 8-slot table): the encoded list comes out in one order, the
# set decoded from it iterates in the other.
FLIPPING = frozenset({355687428095999, -13900793})


@pytest.mark.parametrize("layout", ["hash", "blob"])
def test_a_rewrite_leaves_an_object_with_a_set_as_it_is_and_verifies(
        store: redmodel.Store, layout: str) -> None:
    """docs/migrations.md, "Migrations" table: `rewrite(Model)` "saves whole, in its current
    form, every stored object whose stored form is older than the model ...; objects already
    current are not written | afterwards it checks: every object decodes and is stored in
    the current form". An object just saved by the same model (a `frozenset[int]` field)
    is rewritten, and the step never verifies: each rewrite stores the set's other order."""

    @redmodel.model(prefix=f"au_fs_{layout}", layout=layout)
    @attrs.define
    class Tagged:
        tags: frozenset[int] = frozenset()
        id: str = redmodel.key_field(generated=False)

    plain = redmodel.Store(store.client, registry=False)
    plain.save(Tagged(FLIPPING, id="x"))
    m = Migrations(f"au_fs_{layout}_set")
    m.add("0001_rewrite", rewrite(Tagged))
    for _ in range(2):                      # nothing to do, whatever the number of runs
        try:
            records = m.apply(plain)
        except MigrationVerifyError as e:
            pytest.fail(f"a current object fails the rewrite's check: {e}")
        assert [r.changed for r in records] in ([0], [])
    assert plain.get(Tagged, "x") == Tagged(FLIPPING, id="x")


@pytest.mark.parametrize("lease", ["tok \u0663\u0663", "tok \uff11\uff12",
                                   "tok 99999999999999\u0663"])
def test_a_lease_field_with_non_ascii_digits_is_an_error_and_nothing_is_written(
        store: redmodel.Store, lease: str) -> None:
    """docs/migrations.md, "Records, ordering and errors": "a `step:<id>`, `cursor:<id>` or
    `lease` field that does not parse, or parses with a value of the wrong type or out of
    range (a record written by hand or by another tool), is a `MigrationError` naming the
    key and the field from `status`, `plan` and `apply`, and nothing is written". A lease
    whose expiry is written in Arabic-Indic or full-width digits passes the client's check
    (Python's `\\d`), the script does not parse it (Lua's `%d`) and takes it over: apply
    runs the step and overwrites the field."""

    @redmodel.model(prefix="au_lease")
    @attrs.define
    class Tally:
        n: int = 0
        id: str = redmodel.key_field(generated=False)

    def bump(t: Tally) -> Tally:
        t.n += 1
        return t

    store.save_many([Tally(0, id=f"t{i}") for i in range(3)])
    m = Migrations("au_lease_set")
    m.add("0001_bump", update(Tally, bump))
    store.client.hset(m.key, "lease", lease)
    for method in (m.status, m.plan, m.apply):
        with pytest.raises(MigrationError, match="lease"):
            method(store)
    assert store.client.hgetall(m.key) == {b"lease": lease.encode()}
    assert [t.n for t in store.get_many(Tally, ["t0", "t1", "t2"])] == [0, 0, 0]


OLD_INDEX = """
@redmodel.model(prefix="au_bd")
@attrs.define
class Item:
    old: str = redmodel.field(default="", index=True)
    id: str = redmodel.key_field(generated=False)
"""
NEW_INDEX = """
@redmodel.model(prefix="au_bd")
@attrs.define
class Item:
    zone: str = redmodel.field(default="z", index=True)
    id: str = redmodel.key_field(generated=False)
"""


def test_a_build_index_step_verifies_while_a_removed_index_is_still_stale(
        store: redmodel.Store) -> None:
    """docs/migrations.md: "An index removed from the model is recorded as `stale`: its
    entries are still stored" ("Dropping an index"); the "Migrations" table:
    `build_index(Model, name)` "indexes every object whose index record is missing or does
    not match ..., then marks the index `ready`", and "A step that fails its check ... is
    not recorded: the next `apply` runs it again (it only writes what is still old)".
    A version that removes one index and adds another, with the set "build the new index,
    drop the old one" in that order: the build step's check counts the stale index's
    entries as its own problem, so the step fails every run and the drop never runs
    (while `plan` showed no problem)."""
    old = declare(OLD_INDEX)
    store.save_many([old("o", id=f"i{i}") for i in range(3)])
    new = declare(NEW_INDEX)
    app = redmodel.Store(store.client)
    m = Migrations("au_bd_set")
    m.add("0001_zone", build_index(new, "zone"))
    m.add("0002_drop_old", drop_index(new, "old"))
    assert all(not s.problems for s in m.plan(app).steps)
    m.apply(app)
    assert [s.state for s in m.status(app).steps] == ["applied", "applied"]
    assert app.verify(new) == []


P_SOURCE = """
@redmodel.model(prefix="au_ov")
@attrs.define
class Parcel:
    n: int = 0
    id: str = redmodel.key_field(generated=False)
"""
SUB_SOURCE = """
@redmodel.model(prefix="au_ov:sub", delimiter="|")
@attrs.define
class SubParcel:
    n: int = 0
    id: str = redmodel.key_field(generated=False)
"""


def test_a_migration_of_one_model_never_touches_another_models_objects(
        store: redmodel.Store) -> None:
    """docs/models.md, "Keys": "no id can make a SCAN of one model match another model's
    keys"; docs/migrations.md: "A model whose prefix another model owns is refused ...:
    two models would merge their hashes, count and delete each other's objects", and a
    custom step "calls `fn(obj)` for every stored object" (of its model). Two models whose
    key spaces overlap (prefix `au_ov` with `:`, prefix `au_ov:sub` with `|`: the id
    `sub|i0` of the first is the key `au_ov:sub|i0` of the second's `i0`) are both
    accepted; the first one's count, scan and a custom step take the second's objects as
    its own, and the step changes them."""
    parcel, sub = declare(P_SOURCE), declare(SUB_SOURCE, module="app.subs")
    store.save_many([parcel(0, id=f"i{i}") for i in range(3)])
    # Fix 30U: the overlap is refused at the second model's first use, naming both
    # (docs/migrations.md, "Refused: a second owner": "A model whose key space overlaps
    # another model's ... is refused with SchemaConflictError, naming both"), nothing
    # written; was `store.save_many([sub(...)])` accepted.
    with pytest.raises(redmodel.SchemaConflictError, match="Parcel"):
        store.save_many([sub(0, id=f"i{i}") for i in range(3)])

    def bump(p: Any) -> Any:
        p.n += 1
        return p

    m = Migrations("au_ov_set")
    m.add("0001_bump", update(parcel, bump))
    m.apply(store)
    assert store.client.keys("au_ov:sub|*") == []  # fix 30U: was get_many(sub) == [0, 0, 0]
    assert store.count(parcel) == 3
