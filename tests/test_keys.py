from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from redmodel._models._keys import escape, new_id, snake_case, unescape
from tests.strategies import text


@given(text, st.sampled_from([":", "|", "::", "/"]))
def test_escape_round_trips_and_hides_delimiter_and_globs(part: str, delimiter: str) -> None:
    escaped = escape(part, delimiter)
    assert unescape(escaped) == part
    assert delimiter not in escaped
    assert not set("*?[]\\{}") & set(escaped)


def test_plain_ids_stay_readable() -> None:
    assert escape("56854717") == "56854717"
    assert escape("black-hat_2") == "black-hat_2"


def test_new_ids_are_unique_and_sortable() -> None:
    made = [new_id() for _ in range(50_000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert all(len(i) == 26 for i in made)


def test_snake_case() -> None:
    assert snake_case("Hat") == "hat"
    assert snake_case("PyHat") == "py_hat"
    assert snake_case("HTTPRequest") == "http_request"
