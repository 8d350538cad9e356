"""Attack 31C (flat layout, manifests, overlap checks, rotations): one failing test per
finding. Each test holds the code to a sentence of the docs (quoted in its docstring);
notes in /work/notes/s31/ATK-C-FINDINGS.md."""

from __future__ import annotations

import attrs
import pytest

import redmodel
from redmodel.containers import Set, WindowCounter
from tests.keys import use_keys

# --- F1: a container inside the key space of a model whose delimiter is not ":" ----------


@redmodel.model(prefix="atk31c_pipe", delimiter="|")
@attrs.define
class Pipe:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk31c_fpipe", layout="flat", delimiter="|")
@attrs.define
class FPipe:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _clear(store: redmodel.Store, *containers: object) -> None:
    for c in containers:
        c.clear()  # type: ignore[attr-defined]


def test_f1_a_set_inside_a_models_key_space_is_refused(store: redmodel.Store) -> None:
    """docs/containers.md, "The container registry": "A key inside a model's prefix
    (`("item", "x")` while a model stores its objects under `item`) is refused too: the
    model would take the container for one of its objects." and "In the other order (the
    container first, the model later) the model is refused". docs/models.md: "no id can
    make a SCAN of one model match another model's keys".

    A model with ``delimiter="|"`` stores its objects under ``atk31c_pipe|<id>``; the
    check splits a container key at ``:`` only, so ``Set(store, "atk31c_pipe|x")`` is
    accepted, and ``store.delete(Pipe, "x")`` then deletes the set and its members."""
    store.save(Pipe(1, id="a"))
    s = Set(store, "atk31c_pipe|x", str)
    try:
        with pytest.raises(redmodel.SchemaConflictError):
            s.add("member")
        # were it accepted: the model takes it for its object "x" and deletes it
        assert not store.delete(Pipe, "x"), "Pipe's delete of id 'x' removed the Set"
    finally:
        store.client.delete("atk31c_pipe|x")
        _clear(store, s)
        store.delete(Pipe, "a")


def test_f1_a_window_counter_inside_a_flat_models_key_space_is_refused(
        store: redmodel.Store) -> None:
    """docs/containers.md, "The container registry": "So is a `WindowCounter` whose key
    prefix is a model's prefix (its keys `<key>:<subject>:<start>+<window>` lie inside
    it)."; docs/layouts.md: `scan` is "`SCAN MATCH prefix:* TYPE string`, keeping only
    object keys".

    The counter ``atk31c_fpipe|visits`` of a flat model with delimiter ``|`` is accepted;
    its count keys are strings inside the model's key space, so ``count(FPipe)`` counts
    them and ``scan(FPipe)`` stops with "manifest is corrupt" on the counter's key."""
    store.save(FPipe(1, id="a"))
    w = WindowCounter(store, "atk31c_fpipe|visits")
    try:
        with pytest.raises(redmodel.SchemaConflictError):
            w.incr("1.2.3.4")
        assert store.count(FPipe) == 1
        assert [o.id for o in store.scan(FPipe)] == ["a"]
    finally:
        for k in store.client.scan_iter("atk31c_fpipe|visits*"):
            store.client.delete(k)
        w.forget()
        store.delete(FPipe, "a")


# --- F2: rotate_keys passes over plaintext in a flat object that also misses a leaf -------


@redmodel.model(prefix="atk31c_fsec", layout="flat")
@attrs.define
class FSecret:
    name: str
    secret: str = redmodel.field(codec="json|fernet")
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("stored", [b"987-65-4321", b'\xa7\x04json"987-65-4321"'])
def test_f2_rotate_keys_refuses_a_flat_value_no_chain_decodes_beside_a_missing_leaf(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, stored: bytes) -> None:
    """docs/store.md, `rotate_keys`: "every object of the page is decoded as `get`
    decodes it first: an object it cannot read (a value no chain of its field decodes —
    plaintext, another chain's header, a token under no configured key — a corrupt flat
    manifest) raises `DecodeError` naming its key, with nothing of its page rewritten; a
    flat object missing a leaf is rotated as far as it is stored".

    A flat object missing one leaf (``name``) whose encrypted leaf holds plaintext: the
    missing leaf's DecodeError is taken for the whole object's, the plaintext leaf is
    passed over (no chain "wrote" it) and the rotation returns 0, as done, with the
    plaintext still in Redis (the 30AQ F3 fix, narrower than its kind)."""
    use_keys(monkeypatch)
    store.save(FSecret("ann", "987-65-4321", id="p1"))
    store.client.delete("atk31c_fsec:p1:name")
    store.client.set("atk31c_fsec:p1:secret", stored)
    try:
        with pytest.raises(redmodel.DecodeError, match="atk31c_fsec:p1"):
            store.rotate_keys(FSecret)
    finally:
        store.delete(FSecret, "p1")
