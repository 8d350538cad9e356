"""Strict decoding of scalar text (docs/migrations.md "Strict decoding"; attack 17 F1):
a stored text is read only if it is exactly the text redmodel (or Redis' own HINCRBY /
HINCRBYFLOAT) writes for the value it reads; anything else (``1_000``, `` 1``, ``+1``,
``2020-01-01`` for a datetime, ``1e999``) is refused, so a field's ``upgrade=`` or a
DecodeError decides. The decoders are the ones every layout and the generated per-model
code use (redmodel._models._types._SCALARS)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

import redmodel
from redmodel._models._types import _SCALARS, BadValueError

VALUES: dict[type, st.SearchStrategy[Any]] = {
    int: st.integers() | st.integers(min_value=-(2**70), max_value=2**70),
    float: st.floats(allow_nan=True, allow_infinity=True),
    # a fixed UTC offset (what the text keeps; a zone's name is not stored)
    dt.datetime: st.datetimes(timezones=st.none() | st.builds(
        dt.timezone, st.integers(-1439, 1439).map(lambda m: dt.timedelta(minutes=m)))),
    dt.date: st.dates(),
    dt.time: st.times(),
    decimal.Decimal: st.decimals(allow_nan=False, allow_infinity=False),
    uuid.UUID: st.uuids(),
}

# text around a value's own text: Python syntax the parsers accept, other forms
NOISE = st.sampled_from(["", " ", "+", "0", "_", "\n", "T", "Z", "-", "e999", "00"])


def decode(tp: type, raw: bytes) -> Any:
    return _SCALARS[tp][1](raw)


def encode(tp: type, value: Any) -> bytes:
    return _SCALARS[tp][0](value)  # type: ignore[no-any-return]


@pytest.mark.parametrize("tp", list(VALUES))
@given(data=st.data())
def test_a_values_own_text_reads_back_as_the_value(tp: type, data: st.DataObject) -> None:
    value = data.draw(VALUES[tp])
    got = decode(tp, encode(tp, value))
    if tp is float and math.isnan(value):
        assert math.isnan(got)
    else:
        assert got == value and type(got) is type(value)
        if tp is float:
            assert math.copysign(1, got) == math.copysign(1, value)  # -0.0 stays


@pytest.mark.parametrize("tp", [int, dt.datetime, dt.date, dt.time, decimal.Decimal,
                                uuid.UUID])
@given(data=st.data())
def test_only_a_values_own_text_is_read(tp: type, data: st.DataObject) -> None:
    """Accepted text is exactly the text the value it reads is written as."""
    own = encode(tp, data.draw(VALUES[tp])).decode()
    at = data.draw(st.integers(0, len(own)))
    text = own[:at] + data.draw(NOISE) + own[at:]
    if data.draw(st.booleans()):
        text = text.upper() if data.draw(st.booleans()) else text.replace("-", "")
    try:
        got = decode(tp, text.encode())
    except BadValueError:
        return
    assert encode(tp, got).decode() == text


@given(value=st.floats(allow_nan=False, allow_infinity=False), noise=NOISE,
       at=st.integers(0, 30))
def test_a_float_text_with_python_only_syntax_is_refused(value: float, noise: str,
                                                         at: int) -> None:
    """Accepted float text is decimal text (repr's, HINCRBYFLOAT's, an int's): no ``_``,
    spaces, ``+``; inf and nan only from their own text."""
    own = repr(value)
    text = own[:at] + noise + own[at:]
    try:
        got = decode(float, text.encode())
    except BadValueError:
        return
    assert "_" not in text and text.strip() == text and not text.startswith("+")
    assert math.isfinite(got) or text in ("nan", "inf", "-inf")
    assert got == float(text)


@pytest.mark.parametrize(("tp", "raw"), [
    (int, b"1_000"), (int, b" 1"), (int, b"+1"), (int, b"01"), (int, b"-0"), (int, b"1\n"),
    (float, b"1_0.5"), (float, b"1e999"), (float, b"-1e999"), (float, b"Infinity"),
    (float, b"NaN"), (float, b" 1.5"), (float, b"+1.5"), (float, b""),
    (dt.datetime, b"2020-01-01"), (dt.datetime, b"20200101T000000"),
    (dt.datetime, b"2020-01-01 00:00:00"), (dt.date, b"20200101"),
    (uuid.UUID, b"{12345678-1234-5678-1234-567812345678}"),
    (decimal.Decimal, b"1_000"), (decimal.Decimal, b" 1"),
])
def test_the_attacks_texts_are_refused(tp: type, raw: bytes) -> None:
    with pytest.raises(BadValueError):
        decode(tp, raw)


@pytest.mark.parametrize(("tp", "raw", "value"), [
    (float, b"41", 41.0), (float, b"10.5", 10.5), (float, b"1.5e+20", 1.5e20),
    (float, b"-0.0", -0.0), (int, b"-12", -12), (int, str(2**70).encode(), 2**70),
])
def test_text_redis_writes_is_read(tp: type, raw: bytes, value: Any) -> None:
    """HINCRBY / HINCRBYFLOAT's text and an int's text in a float field still read."""
    assert decode(tp, raw) == value


@redmodel.model(prefix="strict_blob", layout="blob", codec="json")
@attrs.define
class Stamp:
    when: dt.datetime
    price: decimal.Decimal
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize(("field", "raw"), [("when", "2020-01-01"),
                                            ("when", "2020-01-01 00:00:00"),
                                            ("price", "1_000")])
def test_a_blobs_text_scalars_are_as_strict(redis_client: redis.Redis, field: str,
                                            raw: str) -> None:
    """The codec chains (a blob's JSON here) read datetime, date, time, Decimal and UUID
    text as strictly as hash fields do: a DecodeError naming the key."""
    store = redmodel.Store(redis_client)
    store.save(Stamp(dt.datetime(2020, 1, 1, 5), decimal.Decimal("1.50"), id="s"))
    assert store.get(Stamp, "s") == Stamp(dt.datetime(2020, 1, 1, 5),
                                          decimal.Decimal("1.50"), id="s")
    blob = redis_client.get("strict_blob:s") or b""
    head = 2 + blob[1]  # the codec header: 0xA7, len(name), name (docs/codecs.md)
    stored = json.loads(blob[head:])
    stored[field] = raw
    redis_client.set("strict_blob:s", blob[:head] + json.dumps(stored).encode())
    with pytest.raises(redmodel.DecodeError, match="strict_blob:s"):
        store.get(Stamp, "s")
