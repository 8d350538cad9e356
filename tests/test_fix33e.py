"""Fix 33E: a query step's work is bounded whatever the number of its index terms.

Found by the lead: a ``one_of`` of 999 values took 5-7 ms per EVALSHA step (10 ms at the
most) on Redis 7.0.15, against docs/queries.md's "a script call holds the server for about
half a millisecond": every step type-checked (TYPE) and counted (SCARD / ZCOUNT) every term
and parsed them all, none of it counted in STEP_BUDGET. Now a step counts what it sends (a
command: 3 units on top of its members) and parses (a term: 2 units), checks a key's type
where it reads it, counts only the terms it needs, and a query names at most MAX_TERMS
(100) terms, so that the fixed part of a step and one candidate's check fit in a budget.

Speed is not asserted (shared machine): WORK is, seen by MONITOR (which shows, after each
EVALSHA, the commands its script ran): the commands one script call sends and the members
it looks up stay under a bound that does not grow with the query's terms."""

from __future__ import annotations

import functools
import operator
import threading
from collections.abc import Callable
from typing import Any

import attrs
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redmodel
import redmodel._indexes._query as query_module
from redmodel import Q, one_of
from tests.budget import scaled
from tests.test_attack28ad import Stamp

N = 300
COLORS = 150  # two objects a color


@redmodel.model(prefix="f33e")
@attrs.define
class Thing:
    color: str = redmodel.field(index=True)
    tag: str = redmodel.field(index=True)
    qty: int = redmodel.field(index="range")
    rank: int = redmodel.field(index="range")
    id: str = redmodel.key_field(generated=False)


def rows() -> list[Thing]:
    return [Thing(f"c{i % COLORS}", "ab"[i % 2], i % COLORS, (i * 37) % 101, id=f"t{i:04d}")
            for i in range(N)]


def work_per_script_call(url: str, run: Callable[[], Any]) -> list[tuple[int, int]]:
    """Run ``run`` while MONITOR watches the server: for each EVALSHA, (commands its
    script sent, members it looked up with SMISMEMBER / ZMSCORE)."""
    lines: list[tuple[str, str]] = []
    ready = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(url).monitor() as monitor:
            for event in monitor.listen():
                command = event["command"]
                if command == "ECHO f33e-ready":
                    ready.set()
                elif command == "ECHO f33e-stop":
                    return
                elif ready.is_set():
                    lines.append((str(event.get("client_type", "")), command))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    client = redis.Redis.from_url(url)
    while not ready.is_set():
        client.echo("f33e-ready")
        ready.wait(0.05)
    try:
        run()
    finally:
        client.echo("f33e-stop")
        thread.join(30)
        client.close()
    calls: list[list[int]] = []
    for source, line in lines:
        name = line.split(" ", 1)[0].upper()
        if name == "EVALSHA":
            calls.append([0, 0])
        elif calls and source == "lua":  # a command the script sent
            calls[-1][0] += 1
            if name in ("SMISMEMBER", "ZMSCORE"):
                calls[-1][1] += len(line.split(" ")) - 2  # the name and the key
    return [(c, m) for c, m in calls]


def commands_bound() -> int:
    """Commands one step may send: what the budget pays for (3 units each), one candidate's
    check after it is spent (a command per term), and the step's own reads (registry,
    expiry, the all-ids pages). The same for 1 term and for MAX_TERMS."""
    return query_module.STEP_BUDGET // 3 + query_module.MAX_TERMS + 40


SHAPES = ("one_of", "one_of_range", "or_chain", "and_one_of", "not_one_of", "and_nots",
          "and_eq_or")


def build(shape: str, values: list[int]) -> tuple[Q, Callable[[Thing], bool]]:
    """A query of len(values) terms (one per value, plus a tag term for the ANDs), and
    what it matches."""
    colors = [f"c{v}" for v in values]
    inside = set(colors)
    if shape == "one_of":
        return Q(color=one_of(colors)), lambda t: t.color in inside
    if shape == "one_of_range":
        qs = set(values)
        return Q(qty=one_of(values)), lambda t: t.qty in qs
    if shape == "or_chain":  # terms of two fields, ORed one by one
        half = values[: len(values) // 2]
        rest = values[len(values) // 2:]
        q = functools.reduce(operator.or_, [Q(color=f"c{v}") for v in half]
                             + [Q(qty=v) for v in rest])
        a, b = {f"c{v}" for v in half}, set(rest)
        return q, lambda t: t.color in a or t.qty in b
    if shape == "and_one_of":
        return (Q(tag="a") & Q(color=one_of(colors[:-1] or colors)),
                lambda t: t.tag == "a" and t.color in set(colors[:-1] or colors))
    if shape == "not_one_of":
        return ~Q(color=one_of(colors)), lambda t: t.color not in inside
    if shape == "and_nots":
        q = functools.reduce(operator.and_, [~Q(color=c) for c in colors])
        return q, lambda t: t.color not in inside
    # an AND of an equality and an OR of many: scanned or walked as the counts say
    return (Q(tag="b") & functools.reduce(operator.or_, [Q(color=c) for c in colors[:-1]]
                                          or [Q(color=colors[0])]),
            lambda t: t.tag == "b" and t.color in set(colors[:-1] or colors[:1]))


def test_a_step_sends_a_bounded_number_of_commands_whatever_the_terms(
        store: redmodel.Store, redis_url: str) -> None:
    """Property: query shapes of 1 to MAX_TERMS terms (one_of of equalities or of ranges,
    ORs, ANDs, NOTs, ANDs of NOTs), read as counts, ids, a page (sorted or not, with an
    offset) or first(): the answer is exact, and no script call sends more than
    commands_bound() commands or looks up more than 3 x STEP_BUDGET members."""
    data = rows()
    store.save_many(data)
    budget = query_module.STEP_BUDGET
    most = query_module.MAX_TERMS

    @settings(max_examples=scaled(100), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(shape=st.sampled_from(SHAPES),
           n=st.one_of(st.just(most), st.integers(1, most)),
           how=st.sampled_from(["count", "ids", "page", "first"]),
           order=st.sampled_from(["", "rank", "-rank"]),
           offset=st.sampled_from([0, 0, 3]),
           seed=st.randoms(use_true_random=False))
    def check(shape: str, n: int, how: str, order: str, offset: int, seed: Any) -> None:
        # an AND adds a term of its own: n terms in all
        terms = n - 1 if shape in ("and_one_of", "and_eq_or") and n > 1 else n
        values = seed.sample(range(COLORS + most), terms)  # some match no object
        q, match = build(shape, values)
        query = store.find(Thing, q)
        hits = [t for t in data if match(t)]
        if order:
            query = query.order_by(order)
            hits.sort(key=lambda t: (t.rank, t.id), reverse=order.startswith("-"))
        else:
            hits.sort(key=lambda t: t.id)
        expected = [t.id for t in hits]
        got: dict[str, Any] = {}

        def run() -> None:
            if how == "count":
                got["v"] = query.count()
            elif how == "ids":
                got["v"] = list(query.offset(offset).ids())
            elif how == "page":
                got["v"] = [t.id for t in query.offset(offset).page(20).items]
            else:
                first = query.offset(offset).first()
                got["v"] = first.id if first else None

        calls = work_per_script_call(redis_url, run)
        if how == "count":
            assert got["v"] == len(expected)
        elif how == "ids":
            assert got["v"] == expected[offset:]
        elif how == "page":
            assert got["v"] == expected[offset:offset + 20]
        else:
            assert got["v"] == (expected[offset] if len(expected) > offset else None)
        assert calls, "no script call seen"
        worst = max(c for c, _ in calls)
        assert worst <= commands_bound(), (
            f"{shape} of {n} terms, {how}: a step sent {worst} commands "
            f"(bound {commands_bound()}, {len(calls)} steps)")
        assert max(m for _, m in calls) <= 3 * budget

    check()


def test_f2_of_attack28ad_at_the_limit(store: redmodel.Store, redis_url: str) -> None:
    """Attack 28ad F2 at the new limit: 512 numeric ids (an intset, which SSCAN answers
    whole) ANDed with a one_of of MAX_TERMS - 1 values: no step looks up more than about
    its budget, nor sends more than the bound of commands."""
    most = query_module.MAX_TERMS
    rows_ = [Stamp("red", "none", id=str(i)) for i in range(512)]
    rows_ += [Stamp("blue", f"t{j}", id=f"x{j}") for j in range(most - 1)]
    store.save_many(rows_)
    query = store.find(Stamp, Q(color="red") & Q(tag=one_of([f"t{j}" for j in range(most - 1)])))
    got: list[str] = []
    calls = work_per_script_call(redis_url, lambda: got.extend(query.ids()))
    assert got == []
    assert calls
    assert max(c for c, _ in calls) <= commands_bound()
    assert max(m for _, m in calls) <= 3 * query_module.STEP_BUDGET


def test_a_query_of_more_terms_is_refused_before_anything_is_sent(
        store: redmodel.Store) -> None:
    """MAX_TERMS + 1 terms: QueryError naming the limit (docs/queries.md)."""
    most = query_module.MAX_TERMS
    for q in (Q(color=one_of([f"c{i}" for i in range(most + 1)])),
              Q(tag="a") & Q(color=one_of([f"c{i}" for i in range(most)]))):
        try:
            store.find(Thing, q).count()
        except redmodel.QueryError as e:
            assert f"at most {most}" in str(e)
        else:
            raise AssertionError("not refused")
