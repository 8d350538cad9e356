"""A scan of an OR is exact while objects change between its steps (fix 28ad, F1 and F2).

For OR / one_of queries over a multi-valued field (tags) and a scalar one (color), term
sets of any size (a handful, up to 128 members: a listpack; numeric ids, up to 512: an
intset, which SSCAN answers whole whatever COUNT; and larger ones), a tiny per-call budget
of the query script (so a pass takes many steps) and another client's writes between
steps that add and remove a term of an object that keeps matching through a term it
holds throughout: every object matching throughout appears exactly once in ``.all()``,
``.ids()`` and ``pages()``, ``count()`` counts it once, and no ``EVALSHA`` looks up more
than 3 x STEP_BUDGET members (MONITOR, as tests/test_attack28ad.py counts them).

Not drawn: an object that moves from one term of an OR to another (green -> red) while it
matches through no other term: a scan pass may miss it, the documented limit (docs/
queries.md, "Pages and cursors").
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
import redmodel._indexes._query as query_module
from redmodel import Q, one_of
from tests.test_attack28ad import lookups_per_script_call

EXAMPLES = max(8, settings.default.max_examples // 4)


@redmodel.model(prefix="s28q")
@attrs.define
class Scan28:
    color: str = redmodel.field(index=True)
    tags: list[str] = redmodel.field(index=True, factory=list)
    rank: float = redmodel.field(index="range", default=0.0)
    id: str = redmodel.key_field(generated=False)


# query, the term a mover keeps throughout, and how a write changes a mover
Change = Callable[[Scan28, int], dict[str, Any]]


def toggle(tag: str) -> Change:
    def change(obj: Scan28, k: int) -> dict[str, Any]:
        tags = [t for t in obj.tags if t != tag]
        return {"tags": sorted(tags if k % 2 == 0 else [*tags, tag])}
    return change


def recolor(obj: Scan28, k: int) -> dict[str, Any]:
    return {"color": ["blue", "green", "red"][k % 3]}


KINDS: dict[str, tuple[Q, Callable[[Scan28], bool], Callable[[Scan28], Scan28], Change]] = {
    # X holds "b" throughout and gains / loses "a" (the attack's case)
    "a | b, keep b": (Q(tags="a") | Q(tags="b"),
                      lambda o: "a" in o.tags or "b" in o.tags,
                      lambda o: attrs.evolve(o, tags=sorted({*o.tags, "b"})), toggle("a")),
    "a | b, keep a": (Q(tags="a") | Q(tags="b"),
                      lambda o: "a" in o.tags or "b" in o.tags,
                      lambda o: attrs.evolve(o, tags=sorted({*o.tags, "a"})), toggle("b")),
    "one_of(a, b, c), keep c": (
        Q(tags=one_of(["a", "b", "c"])), lambda o: bool({"a", "b", "c"} & set(o.tags)),
        lambda o: attrs.evolve(o, tags=sorted({*o.tags, "c"})), toggle("a")),
    # a scalar field's terms: X keeps matching through tag "a" while its color moves
    "color one_of(red, green) | a, keep a": (
        Q(color=one_of(["red", "green"])) | Q(tags="a"),
        lambda o: o.color in ("red", "green") or "a" in o.tags,
        lambda o: attrs.evolve(o, tags=sorted({*o.tags, "a"})), recolor),
    # one_of on the scalar field alone: writes change only what the query does not read
    "color one_of(red, green), keep color": (
        Q(color=one_of(["red", "green"])), lambda o: o.color in ("red", "green"),
        lambda o: attrs.evolve(o, color="red"), toggle("z")),
}

SIZES = [0, 1, 5, 60, 128, 300, 512, 700]
_ASK = query_module.Query._ask


def _between_steps(monkeypatch: pytest.MonkeyPatch, at: set[int], write: Callable[[], None]
                   ) -> list[int]:
    """Make ``write`` (another client's) after the script steps numbered in ``at``
    (counted over every run of the example)."""
    original = _ASK  # not the attribute: an earlier example's wrapper must not run
    calls = [0]

    def ask(self: Any, buckets: Any, build: Any) -> Generator[Any, Any, Any]:
        replies = yield from original(self, buckets, build)
        calls[0] += 1
        if calls[0] in at:
            write()
        return replies

    monkeypatch.setattr(query_module.Query, "_ask", ask)
    return calls


@given(data=st.data())
@settings(max_examples=EXAMPLES)
def test_an_or_scan_shows_each_object_matching_throughout_once(
        redis_client: redis.Redis, redis_url: str, data: st.DataObject,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the fixture's monkeypatch lasts for every example: each example undoes its own
    with monkeypatch.context() as patch:
        check_scan(redis_client, redis_url, data, patch)


def check_scan(redis_client: redis.Redis, redis_url: str, data: st.DataObject,
               monkeypatch: pytest.MonkeyPatch) -> None:
    redis_client.flushall()
    store = redmodel.Store(redis_client)
    other = redmodel.Store(redis.Redis.from_url(redis_url))
    kind = data.draw(st.sampled_from(sorted(KINDS)), label="kind")
    where, matches, hold, change = KINDS[kind]
    numeric = data.draw(st.booleans(), label="numeric ids")
    size = data.draw(st.sampled_from(SIZES), label="matching objects")
    # passes of many steps either way; the tiniest budgets with the smaller sets only
    budget = data.draw(st.sampled_from([12, 30, 90] if size <= 128 else [90, 300]),
                       label="STEP_BUDGET")
    monkeypatch.setattr(query_module, "STEP_BUDGET", budget)
    filler = data.draw(st.sampled_from([0, 1500]), label="objects matching no term")
    colors = st.sampled_from(["red", "green", "blue"])
    tags = st.lists(st.sampled_from(["a", "b", "c", "z"]), unique=True, max_size=3)
    seeds = data.draw(st.lists(st.tuples(colors, tags), min_size=size, max_size=size),
                      label="objects") if size <= 60 else [
        (["red", "green", "blue"][k % 3], [["a"], ["b"], ["a", "b"], ["c"], []][k % 5])
        for k in range(size)]
    def name(k: int) -> str:
        return str(k) if numeric else f"o{k:04d}"

    rows = [Scan28(c, sorted(t), float(k % 7), id=name(k)) for k, (c, t) in enumerate(seeds)]
    rows += [Scan28("blue", ["z"], 0.0, id=name(10_000 + k)) for k in range(filler)]
    movers = data.draw(st.lists(st.integers(0, size - 1), unique=True, max_size=4),
                       label="movers") if size else []
    for k in movers:
        rows[k] = hold(rows[k])
    store.save_many(rows)
    expected = {o.id for o in rows if matches(o)}
    for k in movers:
        assert rows[k].id in expected
    at = set(data.draw(st.lists(st.integers(1, 60), max_size=6), label="writes after steps"))
    version = [0]

    def write() -> None:
        version[0] += 1
        for k in movers:
            other.update(Scan28, rows[k].id, **change(rows[k], version[0]))

    order = data.draw(st.sampled_from(["", "rank", "-rank"]), label="order_by")
    query = store.find(Scan28, where)
    if order:
        query = query.order_by(order)
    page_size = data.draw(st.sampled_from([1, 7, 50, 1000]), label="page size")
    _between_steps(monkeypatch, at, write)
    got: dict[str, Any] = {}

    def run() -> None:
        got["all"] = [o.id for o in query.all()]
        got["ids"] = list(query.ids())
        got["pages"] = [o.id for page in query.pages(page_size) for o in page]
        got["count"] = query.count()

    calls = lookups_per_script_call(redis_url, run)
    other.close()
    for how in ("all", "ids", "pages"):
        ids = got[how]
        assert len(ids) == len(set(ids)), f"{how}: an object twice"
        assert set(ids) == expected, (
            f"{how}: missing {sorted(expected - set(ids))[:5]}, "
            f"extra {sorted(set(ids) - expected)[:5]}")
    assert got["count"] == len(expected)
    assert max(calls, default=0) <= 3 * budget, (
        f"an EVALSHA looked up {max(calls)} members (budget {budget})")
