"""Attack 30AW (this session's fixes: repair, rotation, sorted counts, codecs' ends): one
failing test per finding. Each test holds the code to a sentence of the docs (quoted in its
docstring); notes in /work/notes/s30/ATK-AW-FINDINGS.md."""

from __future__ import annotations

import attrs
import pytest

import redmodel
from redmodel._indexes._blind import _kid, _raw_key
from tests.keys import use_keys


@redmodel.model(prefix="aw30p")
@attrs.define
class Patient:
    name: str
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="aw30t")
@attrs.define
class Thing:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range", default=1.0)
    sku: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


def _under(store: redmodel.Store, key: str) -> set[str]:
    """Every index record line and unique entry of Patient that names the key id of ``key``."""
    kid = _kid(_raw_key(key.encode())).encode()
    c = store.client
    found = {f"rec {i!r}" for i, r in c.hgetall("aw30p:%idx:rec").items() if kid + b"." in r}
    for k in c.scan_iter("aw30p:%idx:*"):
        if c.type(k) == b"hash":
            found |= {f"{k!r} {f!r}" for f in c.hkeys(k) if f.startswith(kid + b".")}
    return found


# ---- F1 -------------------------------------------------------------------------------


@pytest.mark.parametrize("gone", ["del", "foreign"])
def test_f1_rotate_index_key_looks_done_while_a_gone_objects_entries_name_the_old_key(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, gone: str) -> None:
    """docs/codecs.md, "Rotating the index key", step 4: "Run `store.rotate_index_key(Model)`
    again: it drops the old key's unique entries, so no entry names the old key id any
    more." (and the example's `assert store.rotate_index_key(Patient) == 0` as the sign the
    rotation is done); "An object it cannot read stops the step ... so the step is not
    done". docs/queries.md: "An object is a hash at its key: a key of another type there
    ... is no object".

    An object deleted behind redmodel's back (a raw DEL; or its hash replaced by a key of
    another type) keeps its index record and its blind unique entry under the old key id.
    Step 2 and step 4 pass over it and answer 0 (done) every run after, while its HMAC
    token under the retired key stays in the unique index (the "foreign" case instead
    stops every step with a WRONGTYPE of HGETALL, though such a key is no object)."""
    old, new = redmodel.generate_index_key(), redmodel.generate_index_key()
    use_keys(monkeypatch, index=[old])
    store.save_many([Patient("ann", "111", id="1"), Patient("bob", "222", id="2")])
    store.client.delete("aw30p:2")                     # behind redmodel's back
    if gone == "foreign":
        store.client.set("aw30p:2", "x")
    redmodel.configure_index_keys(keys=[new, old])
    store.rotate_index_key(Patient, progress=False)                 # step 2
    redmodel.configure_index_keys(keys=[new])
    store.rotate_index_key(Patient, progress=False)                 # step 4
    done = store.rotate_index_key(Patient, progress=False)          # FAILS (foreign): WRONGTYPE
    assert done == 0
    assert _under(store, old) == set()                  # FAILS (del): rec '2' + its uq token


# ---- F2 -------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["save", "save_many"])
def test_f2_a_unique_value_held_by_a_key_of_another_type_blocks_every_writer(
        store: redmodel.Store, call: str) -> None:
    """docs/queries.md, "How entries stay right": objects deleted behind redmodel's back:
    "Their unique values are not blocked: a writer that wants one checks that its holder
    still exists and holds it. "Holds" means in its stored fields, as `get_by` sees it";
    "Checking and repairing an index": "An object is a hash at its key: a key of another
    type there (a string, list, set, zset or stream written over the object by raw
    commands) is no object".

    The holder's hash was replaced by a string: there is no holder, yet every writer that
    wants the value fails with `ServerError: HGETALL: WRONGTYPE` (the client reads the
    holder). A bucketed model (claims) gives the value to the writer, as documented; a
    model without buckets blocks it until someone runs reindex."""
    store.save(Thing("red", sku="A", id="1"))
    store.client.delete("aw30t:1")
    store.client.set("aw30t:1", "not an object")        # raw commands
    obj = Thing("green", sku="A", id="2")
    if call == "save":
        store.save(obj)                                 # FAILS: ServerError WRONGTYPE
    else:
        store.save_many([obj])                          # FAILS: ServerError WRONGTYPE
    assert store.get(Thing, "2") == obj
    assert store.client.get("aw30t:1") == b"not an object"   # the foreign key left alone


# ---- F3 -------------------------------------------------------------------------------


@redmodel.model(prefix="aw30f", layout="flat")
@attrs.define
class Flat:
    n: int = 0
    nn: int = 0
    tags: list[str] = attrs.field(factory=list)
    d: dict[str, int] = attrs.field(factory=dict)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="aw30g", layout="flat")
@attrs.define
class Fixed:
    """A fixed shape: read by the generated code."""

    n: int
    nn: int
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("end", ["cut", "appended"])
@pytest.mark.parametrize("case", ["list", "dict", "fixed"])
def test_f3_a_flat_manifest_cut_short_reads_another_objects_value(
        store: redmodel.Store, case: str, end: str) -> None:
    """docs/layouts.md, flat: "What the layout did not write is refused, never guessed at:
    ... A manifest that is not one the layout writes (its first line not JSON, not an
    object, a node not of the forms above, fewer or more leaf lines than the skeleton has
    leaves) is a `DecodeError` naming the object key"; docs/codecs.md: "a value cut
    short, or with bytes appended, is a `DecodeError` naming the key and the field, never
    another value".

    The manifest's leaf lines are read as given, never checked against the paths its
    skeleton implies: cut by one byte, `tags:10` becomes `tags:1` (the 11th tag reads
    "t1"), `d:ab` becomes `d:a` (d["ab"] reads d["a"]'s 1), `nn` becomes `n` (nn reads
    n's 1). No error, another value. A newline appended is read as if not there."""
    obj = {"list": lambda: Flat(tags=[f"t{i}" for i in range(11)], id="1"),
           "dict": lambda: Flat(d={"a": 1, "ab": 2}, id="1"),
           "fixed": lambda: Fixed(1, 22, id="1")}[case]()
    model = type(obj)
    store.save(obj)
    key = "aw30g:1" if case == "fixed" else "aw30f:1"
    manifest = store.client.get(key)
    # the manifest cut by one byte, or a newline appended
    store.client.set(key, manifest[:-1] if end == "cut" else manifest + b"\n")
    with pytest.raises(redmodel.DecodeError):
        store.get(model, "1")                          # FAILS: no error (cut: another value)
