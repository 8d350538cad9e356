"""Every codec chain in every layout, against the real server: any object round-trips."""

from __future__ import annotations

import attrs
import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings

import redmodel
from tests.models import LAYOUTS, Everything
from tests.strategies import ids, instances

SERIALIZERS = ("json", "yaml", "msgpack")
TRANSFORMS = ("bz2", "zlib", "lzma", "fernet")
CHAINS = [
    *SERIALIZERS,
    *(f"{s}|{t}" for s in SERIALIZERS for t in TRANSFORMS),
    "json|zlib|fernet",
    "msgpack|bz2|fernet",
    "yaml|lzma|fernet",
    "msgpack|zlib|bz2",
]


@pytest.fixture(autouse=True, scope="module")
def fernet_keys() -> None:
    redmodel.configure_fernet(keys=[Fernet.generate_key()])


def chained(layout: str, chain: str) -> type:
    """Everything with ``chain`` as model codec (blob, hash encoded fields) and as the codec
    of an extra field (so flat uses it too)."""
    name = f"ch_{layout}_{chain.replace('|', '_')}"

    @redmodel.model(prefix=name, layout=layout, codec=chain)
    @attrs.define
    class Chained(Everything):
        extra: dict[str, list[int]] | None = redmodel.field(codec=chain, default=None)

    return Chained


MODELS = {(layout, chain): chained(layout, chain) for layout in LAYOUTS for chain in CHAINS}


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=200)
@given(data=instances(Everything, sku=ids), extra=instances(Everything).map(
    lambda e: {k: [len(k), e.number % 1000] for k in e.tags} or None))
def test_any_object_round_trips_in_every_chain_and_layout(
    store: redmodel.Store, layout: str, chain: str, data: Everything,
    extra: dict[str, list[int]] | None,
) -> None:
    cls = MODELS[(layout, chain)]
    obj = cls(**attrs.asdict(data, recurse=False), extra=extra)
    store.save(obj)
    assert store.get(cls, obj.sku) == obj
