"""An increment adds only to a stored text that a read takes as that number: a text the
read refuses (strict decoding: `+7`, ` 7`, `1_0`, `07` for an int, ...) is refused by
incr too, with nothing written (before: a float field's `+7` was added to and rewritten
`8.0`, while `get` refused it; on a field with `upgrade=`, whose read took `+7` through
the upgrade as 700.0, the increment answered 8.0 and dropped the upgrade: found by an
attacker, session 37). Property over stored texts of every kind, for an int and a float
field, on an unindexed and an indexed hash model (different scripts: incr_one.lua,
incr_fields.lua, index_write.lua; the one counter check of counter_lib.lua)."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled


@redmodel.model(prefix="ist")
@attrs.define
class Plain:
    f: float = 0.0
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="isti")
@attrs.define
class Indexed:
    f: float = 0.0
    n: int = 0
    tag: str = redmodel.field(index=True, default="t")
    id: str = redmodel.key_field(generated=False)


NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["+7", "+1.5", "+0", "-0", "-0.0", " 7", "7 ", "1_0", "07", "00.5",
                     ".5", "5.", "1E5", "1e+5", "1e-400", "1e400", "0x10", "7.5x", "",
                     "+", "-", "e5", "5e", "inf", "-inf", "nan", "Infinity", "+inf",
                     "9223372036854775807", "9223372036854775808", "+9", "1.0", "\uff17"]),
)


def _read(store: Any, model: type, field: str) -> tuple[str, Any]:
    try:
        return "ok", getattr(store.get(model, "x"), field)
    except redmodel.DecodeError:
        return "refused", None


@settings(max_examples=scaled(120, floor=30))
@given(text=NUMBERS, model=st.sampled_from([Plain, Indexed]), field=st.sampled_from("fn"))
@example(text="+7", model=Plain, field="f")
@example(text="+7", model=Indexed, field="f")
@example(text="+7", model=Plain, field="n")
def test_incr_adds_only_to_what_a_read_takes_as_that_number(
        redis_client: Any, text: str, model: type, field: str) -> None:
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    store.save(model(id="x"))
    key = f"{'isti' if model is Indexed else 'ist'}:x"
    redis_client.hset(key, field, text)
    outcome, before = _read(store, model, field)
    try:
        after = store.incr(model, "x", field, 1)
    except (redmodel.DecodeError, redmodel.ValidationError, redmodel.ConditionFailedError) as e:
        assert key in str(e)  # (a sum past 64 bits: ConditionFailedError)
        assert redis_client.hget(key, field) == text.encode()  # nothing written
        return
    # added to: the read took the text, and the sum is that number plus one
    assert outcome == "ok", f"incr added to {text!r}, which a read refuses"
    if field == "n":
        assert after == before + 1
    else:
        assert math.isfinite(before) and after == before + 1.0
    assert _read(store, model, field) == ("ok", after)


def test_a_plus_signed_float_on_an_upgrade_field_is_not_counted_from_its_raw_text(
        redis_client: Any) -> None:
    """The attacker's case: the read takes `+7` through `upgrade=` (as 700.0); an increment
    refuses it rather than answer 8.0 and store it (the upgrade lost)."""

    @redmodel.model(prefix="istu")
    @attrs.define
    class Old:
        g: float = redmodel.field(default=0.0, upgrade=lambda v: float(v) * 100)
        id: str = redmodel.key_field(generated=False)

    redis_client.flushall()
    store = redmodel.Store(redis_client)
    store.save(Old(id="x"))
    redis_client.hset("istu:x", "g", "+7")
    assert store.get(Old, "x").g == 700.0
    with pytest.raises(redmodel.DecodeError):
        store.incr(Old, "x", "g", 1)
    assert redis_client.hget("istu:x", "g") == b"+7"
