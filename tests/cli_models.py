"""Models the CLI tests load with ``--models tests.cli_models`` (in a subprocess)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid

import attrs

import redmodel


class Tier(enum.Enum):
    FREE = "free"
    PAID = "paid"


@redmodel.model(prefix="chat")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    sku: str = redmodel.field(unique=True)
    quantity: int = 0
    id: str = redmodel.key_field()


@attrs.define
class Card:
    number: int = attrs.field(repr=False)
    exp: tuple[int, int]


@attrs.define
class Address:
    city: str
    zip: int
    secret: str = redmodel.field(codec="json|fernet", default="")


@redmodel.model(prefix="cuser")
@attrs.define
class User:
    """Indexed and encrypted: a field, and a field inside a nested object."""

    name: str = redmodel.field(index=True)
    card: Card = redmodel.field(codec="json|fernet")
    address: Address
    note: str | None = None
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="cnote", layout="blob", codec="json|fernet")
@attrs.define
class Note:
    text: str
    id: str = redmodel.key_field()


@attrs.define
class Place:
    city: str
    zip: int


@redmodel.model(prefix="cdoc", layout="flat")
@attrs.define
class Doc:
    title: str
    place: Place
    tags: list[str] = attrs.Factory(list)
    id: int = redmodel.key_field(generated=False)


@redmodel.model(prefix="cflat", layout="flat")
@attrs.define
class FlatSecret:
    secret: str = redmodel.field(codec="json|fernet")
    id: str = redmodel.key_field()


@redmodel.model(prefix="csession", ttl=3600)
@attrs.define
class Session:
    user: str
    id: str = redmodel.key_field()


@redmodel.model(prefix="cevery")
@attrs.define
class Every:
    """Values whose JSON form is not their Python form."""

    when: dt.datetime
    day: dt.date
    money: decimal.Decimal
    uid: uuid.UUID
    tier: Tier
    raw: bytes
    ratio: float
    flags: set[str]
    by_code: dict[int, str]
    pair: tuple[int, str]
    maybe: int | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="kuser", buckets=4)
@attrs.define
class BucketUser:
    """Indexed and encrypted on a cluster: objects and index entries in 4 buckets."""

    name: str = redmodel.field(index=True)
    card: Card = redmodel.field(codec="json|fernet")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="cleak", layout="blob")
@attrs.define
class BlobFieldCodec:
    """A blob stores the whole object through the model's chain: the field's own codec is
    not applied (``inspect`` warns; an encrypting one is refused at declaration)."""

    secret: str = redmodel.field(codec="json|zlib")
    id: str = redmodel.key_field()


@attrs.define
class Box:
    width: int = 0


@redmodel.model(prefix="cmoved")
@attrs.define
class Moved:
    """Fields renamed (old_names=) and retyped (upgrade=) since some objects were stored;
    one encrypted field, so that export reads it as stored (without --decrypt)."""

    quantity: int = redmodel.field(old_names=("qty",), upgrade=lambda v: round(float(v)))
    box: Box = redmodel.field(old_names=("crate",), factory=Box)
    secret: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="cmovedp")
@attrs.define
class MovedPlain:
    """Moved without an encrypted field: export reads it through the model."""

    quantity: int = redmodel.field(old_names=("qty",), upgrade=lambda v: round(float(v)))
    id: str = redmodel.key_field(generated=False)
