"""Every codec chain in every layout, against the real server: any object round-trips."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import attrs
import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

import redmodel
from tests.models import LAYOUTS, Address, Everything, Point, Size, Street, Style
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
    redmodel.codecs.configure_fernet(keys=[Fernet.generate_key()])


def chained(layout: str, chain: str) -> type:
    """Everything with ``chain`` as model codec (blob, hash encoded fields; the flat layout
    takes none) and as the codec of an extra field (so flat uses it too)."""
    name = f"ch_{layout}_{chain.replace('|', '_')}"

    @redmodel.model(prefix=name, layout=layout, codec=None if layout == "flat" else chain)
    @attrs.define
    class Chained(Everything):
        extra: dict[str, list[int]] | None = redmodel.field(codec=chain, default=None)

    return Chained


MODELS = {(layout, chain): chained(layout, chain) for layout in LAYOUTS for chain in CHAINS}


COMBINATIONS = sorted(MODELS)

# One object with every field away from its default, trickiest text included: the
# deterministic floor under the property, for every layout x chain on every run.
FULL = Everything(
    sku="a:b*{c}%[d]\\ é", text="x:y|z\x00", number=-(2**70), real=-1.5e-300, flag=True,
    blob=bytes(range(256)), when=dt.datetime(2024, 2, 29, 23, 59, 59, 999999,
                                             tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    day=dt.date(1, 1, 1), clock=dt.time(12, 30, 1, 5), money=decimal.Decimal("-1.000000001"),
    uid=uuid.UUID(int=2**128 - 1), style=Style.BASEBALL, size=Size.L, maybe_text="",
    maybe_number=0, address=Address(Street("11 E 30th St", "fl 2"), "New York", "NY", 10016),
    maybe_point=Point(0.5, -0.0), tags=["", ":", "*"], scores={"a|b": 1e308, "": -0.0},
    points=(Point(1, 2), Point(3, 4)), labels=frozenset({"x", "y"}),
    stamps=[dt.datetime(1970, 1, 1), dt.datetime(2038, 1, 19, 3, 14, 8)],
)


@pytest.mark.parametrize(("layout", "chain"), COMBINATIONS)
def test_a_full_object_round_trips_in_every_chain_and_layout(
    store: redmodel.Store, layout: str, chain: str
) -> None:
    cls = MODELS[(layout, chain)]
    obj = cls(**attrs.asdict(FULL, recurse=False), extra={"k:*": [1, 2], "": []})
    store.save(obj)
    assert store.get(cls, obj.sku) == obj


# Layout and chain are drawn with the object, so the profile's example count (default or
# thorough) spreads over every combination instead of being spent on each one.
@given(combination=st.sampled_from(COMBINATIONS), data=instances(Everything, sku=ids),
       extra=instances(Everything).map(
           lambda e: {k: [len(k), e.number % 1000] for k in e.tags} or None))
def test_any_object_round_trips_in_any_chain_and_layout(
    store: redmodel.Store, combination: tuple[str, str], data: Everything,
    extra: dict[str, list[int]] | None,
) -> None:
    cls = MODELS[combination]
    obj = cls(**attrs.asdict(data, recurse=False), extra=extra)
    store.save(obj)
    assert store.get(cls, obj.sku) == obj
