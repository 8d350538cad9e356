"""Attack 32E (secrets end to end): each test holds redmodel to a sentence of its docs and
FAILS on main as of this session. See /work/notes/s32/ATK-E-FINDINGS.md."""

from typing import Any, Optional

import attrs
import pytest

import redmodel
from tests.plaintext import dump, leaked

SECRET = "987-65-4321-atke"


# A model whose own chain encrypts its values: a blob model (every field), and a hash
# model whose model-level codec (the default chain of its encoded fields) encrypts.


@redmodel.model(prefix="atk32e_bcard", layout="blob", codec="json|fernet")
@attrs.define
class BCard:
    number: str
    id: str = redmodel.key_field()


@redmodel.model(prefix="atk32e_hcard", codec="json|fernet")
@attrs.define
class HCard:
    numbers: list[str]
    extra: dict[str, str] = attrs.field(factory=dict)
    id: str = redmodel.key_field()


def _outer(inner: Any, layout: str, shape: str) -> type:
    ann: Any = {"flattened": inner, "optional": Optional[inner],  # noqa: UP045
                "list": list[inner]}[shape]

    @redmodel.model(prefix=f"atk32e_{inner.__name__.lower()}_{layout}_{shape}", layout=layout)
    @attrs.define
    class Outer:
        card: ann  # type: ignore[valid-type]
        id: str = redmodel.key_field(generated=False)

    return Outer


def _save_and_check(store: redmodel.Store, inner: Any, layout: str, shape: str,
                    card: Any) -> None:
    try:
        outer = _outer(inner, layout, shape)
    except redmodel.ModelDefinitionError as e:
        assert "encrypt" in str(e), e
        return  # refused at declaration: what the docs do for a chain that would be skipped
    obj = outer([card] if shape == "list" else card, id="o1")
    assert "<encrypted>" in repr(obj) and SECRET not in repr(obj)  # redmodel calls it encrypted
    store.save(obj)
    found = leaked([SECRET], dump(store.client))
    store.delete(outer, "o1")
    assert not found, f"{SECRET!r} stored in plaintext by {outer.__name__} ({layout}, {shape})"


@pytest.mark.parametrize("layout", ["hash", "flat"])
def test_f1_a_blob_model_that_encrypts_nested_in_another_model_is_stored_in_plaintext(
        store: redmodel.Store, fresh_keys: None, layout: str) -> None:
    """docs/codecs.md, "Encrypted fields": "A field is encrypted when its codec chain
    encrypts (...), or, in the blob layout, the whole object's chain. redmodel keeps such
    values to itself"; "Never skipped. ... a codec="json|fernet" declared on Card.number
    would be ignored and the number stored in plaintext, so that declaration is refused at
    declaration"; docs/models.md: nested fields of a class "that is a model itself (then
    they are its own model's options)". A blob model whose chain is ``json|fernet`` (its
    repr shows ``number=<encrypted>``), held by a hash or flat model as a nested field, is
    flattened field by field: the number reaches Redis in plaintext, with no refusal.
    (Held whole, ``Optional[BCard]`` or ``list[BCard]`` through a plain chain, it is
    refused, as the docs say.)"""
    _save_and_check(store, BCard, layout, "flattened", BCard(SECRET))


@pytest.mark.parametrize("layout", ["hash", "flat", "blob"])
@pytest.mark.parametrize("shape", ["flattened", "optional", "list"])
def test_f2_a_hash_model_whose_codec_encrypts_nested_in_another_model_is_stored_in_plaintext(
        store: redmodel.Store, fresh_keys: None, layout: str, shape: str) -> None:
    """docs/codecs.md, "Encrypted fields": "A field is encrypted when its codec chain
    encrypts (`fernet`, ...): its own chain, the model's default chain for encoded fields,
    or ..."; "redmodel keeps such values to itself"; "Never skipped" (a chain that would be
    ignored "is refused at declaration"). ``HCard`` (hash layout, ``codec="json|fernet"``)
    has encrypted encoded fields (repr ``numbers=<encrypted>``). Held by another model
    (flattened, ``Optional[HCard]`` or ``list[HCard]``, in any layout) they are encoded by
    the outer model's plain ``json`` chain or flattened as leaves: the values (in the flat
    layout even the dict keys, in key names) reach Redis in plaintext; nothing refuses."""
    _save_and_check(store, HCard, layout, shape, HCard([SECRET], {SECRET: SECRET}))
