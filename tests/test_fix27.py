"""Session 27 fixes outside transactions.

- An object key found by SCAN names an id only when it is the key that id is stored
  under: a foreign key whose id part is not one escape() makes (``p:%80``, ``p:a%3ab``,
  ``p:50%``) used to be read as an id whose own key is another key (U+FFFD for ``%80``),
  so ``scan`` returned an object that ``get`` of its id could not find.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from tests.budget import scaled


@redmodel.model(prefix="fx27")
@attrs.define
class P:
    note: str = ""
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx27s", delimiter="/")
@attrs.define
class PS:
    note: str = ""
    id: str = redmodel.key_field(generated=False)


_IDS = st.one_of(st.text(min_size=1, max_size=8),
                 st.binary(min_size=1, max_size=6).map(
                     lambda b: b.decode("utf-8", "surrogateescape")),
                 st.sampled_from(["a:b", "%", "%25", "50%", "{x}", "*", "\\", "%3A", "a/b"]))
_PARTS = st.text(st.sampled_from("%3aAf0:/8{}x\x80é"), min_size=1, max_size=8)


@settings(max_examples=scaled(300))
@given(text=_IDS, model=st.sampled_from([P, PS]))
def test_every_id_round_trips_through_its_key(text: str, model: type) -> None:
    """Property (no I/O): the id read back from an id's key is that id."""
    spec = spec_of(model)
    assert spec.id_of_key(spec.key_of_text(text)) == text


@settings(max_examples=scaled(300))
@given(part=_PARTS, model=st.sampled_from([P, PS]))
def test_a_key_names_an_id_only_if_it_is_that_id_s_key(part: str, model: type) -> None:
    """Property (no I/O): any key under the model's prefix is read as an id only when
    that id's key is the very key (else None: not one of the model's objects)."""
    spec = spec_of(model)
    key = spec.key_of_text("x")[: -1] + part
    text = spec.id_of_key(key)
    assert text is None or spec.key_of_text(text) == key


def test_scan_skips_foreign_keys_whose_id_is_not_theirs(store: redmodel.Store) -> None:
    store.save(P(id="ok", note="mine"))
    for foreign in (b"fx27:%80", b"fx27:a%3ab", b"fx27:50%", b"fx27:%e9"):
        store.client.hset(foreign, "note", "foreign")
    found: list[Any] = list(store.scan(P))
    assert found == [P(id="ok", note="mine")]
    for obj in found:
        assert store.get(P, obj.id) == obj
