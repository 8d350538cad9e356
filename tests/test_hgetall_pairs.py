"""An HGETALL reply becomes the dict of its pairs (redmodel._layouts._hash._as_dict pairs
them from one iterator, issue 17 item 5: a query decodes thousands): the same dict as
zipping the two halves, for any fields and values, RESP3's dict as it is, and a reply
that is not pairs refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redmodel._layouts._hash import _as_dict

PAIRS = st.dictionaries(st.binary(max_size=8), st.binary(max_size=8), max_size=20)


@given(pairs=PAIRS)
def test_a_flat_reply_is_its_pairs(pairs: dict[bytes, bytes]) -> None:
    flat = [x for kv in pairs.items() for x in kv]
    assert _as_dict(flat) == pairs == dict(zip(flat[::2], flat[1::2], strict=True))
    assert _as_dict(pairs) is pairs


@given(pairs=PAIRS, extra=st.binary(max_size=4))
def test_an_odd_reply_is_refused(pairs: dict[bytes, bytes], extra: bytes) -> None:
    with pytest.raises(ValueError, match="not field/value pairs"):
        _as_dict([*[x for kv in pairs.items() for x in kv], extra])
