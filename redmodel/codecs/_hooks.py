"""cattrs hooks shared by every serializer: types a format has no native form for."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import cattrs


def configure_text_scalars(converter: cattrs.Converter) -> None:
    """Decimal, UUID and time as strings; datetime/date as ISO 8601 strings (offset kept)."""
    converter.register_unstructure_hook(decimal.Decimal, str)
    converter.register_structure_hook(decimal.Decimal, lambda v, _: decimal.Decimal(v))
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, lambda v, _: uuid.UUID(v))
    converter.register_unstructure_hook(dt.time, dt.time.isoformat)
    converter.register_structure_hook(dt.time, lambda v, _: dt.time.fromisoformat(v))
    converter.register_unstructure_hook(dt.datetime, dt.datetime.isoformat)
    converter.register_structure_hook(dt.datetime, lambda v, _: dt.datetime.fromisoformat(v))
    converter.register_unstructure_hook(dt.date, dt.date.isoformat)
    converter.register_structure_hook(dt.date, lambda v, _: dt.date.fromisoformat(v))
