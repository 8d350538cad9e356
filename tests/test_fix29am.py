"""Fix 29AM: documented features run under their documented ACL rules with nothing
refused (all-optional updates: no HLEN; sorted queries from a cursor: no ZRANK/ZREVRANK;
error paths that ask a key's TYPE); a refusal inside a script names its command on a
server whose text does not (Redis 7.0); transaction counters count a restart apart from
a conflict (Outcome, ConflictError, the RetryPolicy's budget, TxStats)."""

from __future__ import annotations

import secrets
from typing import Any

import attrs
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

import redmodel
from redmodel.testing import FaultProxy, has
from tests.acl import setuser_args
from tests.budget import scaled
from tests.faults import FAST_RESEND, store_through

FIXTURES = settings(max_examples=scaled(25), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@redmodel.model(prefix="fxopt")
@attrs.define
class FxOpt:
    note: str | None = None
    size: int | None = None
    tags: list[str] | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="fxix")
@attrs.define
class FxIdx:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    id: str = redmodel.key_field()


@redmodel.model(prefix="fxflat", layout="flat")
@attrs.define
class FxFlat:
    name: str
    n: int = 0
    id: str = redmodel.key_field()


@redmodel.model(prefix="fxtx")
@attrs.define
class FxCount:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _user(redis_client: Any, redis_url: str, feature: str, keys: tuple[str, ...],
          without: str | None = None, extra: tuple[str, ...] = ()) -> redmodel.Store:
    """A store logged in as a new user with exactly the feature's rule (tests/acl.py),
    less ``without``, plus the commands ``extra``."""
    name = f"fx{secrets.token_hex(4)}"
    redis_client.execute_command(*setuser_args(name, "pw", feature, keys, without),
                                 *(f"+{c}" for c in extra))
    host_port = redis_url.split("://", 1)[1].split("/", maxsplit=1)[0]
    return redmodel.Store.from_url(f"redis://{name}:pw@{host_port}",
                                   retry=Retry(NoBackoff(), 0))


# ---- F1: updates of an all-optional model under the hash models rule ----------------------

_VALUES = {"note": st.none() | st.text(max_size=3), "size": st.none() | st.integers(-3, 3),
           "tags": st.none() | st.lists(st.text(max_size=2), max_size=2)}


@FIXTURES
@given(first=st.fixed_dictionaries(_VALUES), ttl=st.booleans(),
       updates=st.lists(st.dictionaries(st.sampled_from(sorted(_VALUES)), st.booleans(),
                                        min_size=1, max_size=3), min_size=1, max_size=5))
def test_updates_to_none_and_back_under_the_hash_models_rule(
        redis_client: Any, redis_url: str, first: dict[str, Any], ttl: bool,
        updates: list[dict[str, Any]]) -> None:
    """Any sequence of updates (to None, to values, both) of a model whose fields may all
    be None runs as a user with exactly the hash models rule: nothing refused, the object
    reads back as updated, still exists with every field None, and keeps its expiry."""
    kinds = {"note": "x", "size": 1, "tags": ["t"]}
    with _user(redis_client, redis_url, "hash models", ("fxopt:*",)) as shop:
        o = FxOpt(**first)
        shop.save(o, ttl=60 if ttl else None)
        want = attrs.asdict(o)
        for drawn in updates:
            change = {k: (kinds[k] if v else None) for k, v in drawn.items()}
            assert shop.update(FxOpt, o.id, **change)
            want.update(change)
            assert shop.get(FxOpt, o.id) == FxOpt(**want)
            assert (shop.ttl(FxOpt, o.id) is not None) == ttl
        assert shop.delete(FxOpt, o.id)


# ---- F2: sorted queries paged by cursor under the indexes and queries rule ----------------

@FIXTURES
@given(prices=st.lists(st.integers(0, 4), min_size=1, max_size=12),
       size=st.integers(1, 4), desc=st.booleans(), only_red=st.booleans(),
       gone=st.booleans())
def test_sorted_pages_from_a_cursor_under_the_index_rule(
        redis_client: Any, redis_url: str, prices: list[int], size: int, desc: bool,
        only_red: bool, gone: bool) -> None:
    """A sorted query (ties included, either direction, filtered or not) walked page by
    page from each page's cursor, by pages() and by iteration, as a user with exactly the
    indexes and queries rule: nothing refused, and every object once, in order; also when
    the cursor's object is deleted between two pages."""
    redis_client.delete(*redis_client.keys("fxix:*") or ["fxix:none"])
    with _user(redis_client, redis_url, "indexes and queries", ("fxix:*",)) as shop:
        objs = [FxIdx("red" if i % 3 else "blue", float(p)) for i, p in enumerate(prices)]
        shop.save_many(objs)
        order = "-price" if desc else "price"
        q = shop.find(FxIdx, color="red") if only_red else shop.find(FxIdx)
        q = q.order_by(order)
        want = [o for o in objs if not only_red or o.color == "red"]
        want.sort(key=lambda o: (o.price, o.id), reverse=desc)
        seen: list[str] = []
        page = q.page(size)
        seen.extend(o.id for o in page.items)
        deleted: set[str] = set()
        while page.cursor is not None:
            if gone and page.items:  # the cursor's own object is gone: still no repeat/skip
                deleted.add(page.items[-1].id)
                shop.delete(FxIdx, page.items[-1].id)
            page = q.after(page.cursor).page(size)
            seen.extend(o.id for o in page.items)
        assert [i for i in seen if i not in deleted] == [
            o.id for o in want if o.id not in deleted]
        rest = [o.id for o in want if o.id not in deleted]
        assert [o.id for p in q.pages(size) for o in p] == rest
        assert [o.id for o in q] == rest


# ---- the kind: error paths that ask TYPE, under rules without +type ----------------------

def test_wrong_typed_keys_answer_wrongtype_not_an_acl_refusal(
        redis_client: Any, redis_url: str) -> None:
    """A flat object's key or a hash object's key holding another type, written or
    incremented by a user with the documented rule (hash models; plus the flat layout's
    `+get +mget +set +mset +incrby`, docs/deploy.md), which grants no TYPE: redmodel's own
    WRONGTYPE error naming the key, nothing written (not the server's ACL refusal)."""
    flat_extra = ("get", "mget", "set", "mset", "incrby")
    with _user(redis_client, redis_url, "hash models", ("fxflat:*", "fxopt:*"),
               extra=flat_extra) as shop:
        f = FxFlat("a", id="w1")
        redis_client.hset("fxflat:w1", "x", "1")  # a hash where the flat manifest goes
        with pytest.raises(redmodel.ServerError, match="WRONGTYPE") as caught:
            shop.save(f)
        assert "fxflat:w1" in str(caught.value) and "permission" not in str(caught.value)
        with pytest.raises(redmodel.ServerError, match="WRONGTYPE"):
            shop.incr(FxFlat, "w1", "n", 1)
        assert redis_client.hgetall("fxflat:w1") == {b"x": b"1"}
        redis_client.set("fxopt:w2", "text")  # a string where a hash object goes
        with pytest.raises(redmodel.ServerError, match="WRONGTYPE") as caught:
            shop.incr_fields(FxOpt, "w2", {"size": 1})
        assert "fxopt:w2" in str(caught.value) and "permission" not in str(caught.value)
        assert redis_client.get("fxopt:w2") == b"text"
    redis_client.delete("fxflat:w1", "fxopt:w2")


# ---- a refusal inside a script names its command, on every server -----------------------

@pytest.mark.parametrize(("feature", "without"), [
    ("indexes and queries", "zcount"), ("indexes and queries", "zrange"),
    ("containers", "zpopmin"),  # a script with a shebang line (#!lua flags=...)
])
def test_a_refusal_inside_a_script_names_the_command(
        redis_client: Any, redis_url: str, feature: str, without: str) -> None:
    """docs/deploy.md: a command refused before any write raises the server's refusal;
    Redis 7.0's text names no command ("The user executing the script can't run this
    command or subcommand script: <sha>, on @user_script:<line>"): redmodel's error names
    it (Valkey's own text does)."""
    keys = ("fxix:*",) if feature != "containers" else ("fxz:*",)
    with _user(redis_client, redis_url, feature, keys, without=without) as shop:
        with pytest.raises(redis.exceptions.ResponseError) as caught:
            if feature == "containers":
                z = redmodel.containers.SortedSet(shop, ("fxz", "s"), str)
                redis_client.zadd("fxz:s", {"a": 1.0})
                z.pop_min()
            else:
                redis_client.delete(*redis_client.keys("fxix:*") or ["fxix:none"])
                redmodel.Store(redis_client).save_many([FxIdx("red", float(i)) for i in range(3)])
                q = shop.find(FxIdx, color="red").order_by("price")
                q.after(q.page(1).cursor).page(1)
        assert f"'{without}'" in str(caught.value)
    redis_client.delete("fxz:s")


def test_refused_in_script_reads_only_redmodel_scripts() -> None:
    from redmodel._plan import SCRIPTS_BY_SHA, refused_in_script  # noqa: PLC0415

    query = next(s for s in SCRIPTS_BY_SHA.values() if s.name == "query")
    line = next(i for i, t in enumerate(query.source.splitlines(), 1) if "'ZCOUNT'" in t)
    text = ("The user executing the script can't run this command or subcommand script: "
            f"{query.sha}, on @user_script:{line}.")
    assert "'zcount'" in refused_in_script(text) and "query" in refused_in_script(text)
    assert refused_in_script(text.replace(query.sha, "0" * 40)) == ""
    assert refused_in_script(text.replace(f":{line}.", ":999999.")) == ""
    assert refused_in_script("ACL failure in script: ... the 'zrank' command") == ""
    assert "'zcount'" in str(redmodel.ServerError(text, command="EVALSHA query"))


# ---- F5: restarts and conflicts, in any order, against the counters ---------------------

@FIXTURES
@given(plan=st.lists(st.sampled_from(["drop", "conflict"]), max_size=6),
       budget=st.integers(1, 4))
def test_restarts_and_conflicts_counted_apart(
        proxy: FaultProxy, redis_client: Any, plan: list[str], budget: int) -> None:
    """docs/transactions.md: conflicts are retried under the RetryPolicy (the `attempts`-th
    conflict gives up, ConflictError.attempts: how many conflicted), restarts under the
    store's ResendPolicy and counted in `restarts`; Outcome: attempts == conflicts +
    restarts + 1; TxStats: attempts == conflicts + restarts + commits + errors."""
    proxy.clear()
    redmodel.Store(redis_client).save(FxCount(id="1", n=0))
    other = redmodel.Store(redis_client)
    policy = redmodel.transactions.RetryPolicy(attempts=budget, backoff_base=0.0001,
                                               backoff_max=0.0005)
    with store_through(proxy, resend=FAST_RESEND) as store:
        runs: list[int] = []

        @redmodel.transaction(store, policy=policy)
        def bump(tx: Any) -> None:
            step = plan[len(runs)] if len(runs) < len(plan) else "ok"
            runs.append(1)
            if step == "drop":
                proxy.drop_request("HGETALL", when=has("fxtx:1"), times=1)
            c = tx.get_or_raise(FxCount, "1")
            if step == "conflict":
                other.update(FxCount, "1", n=c.n + 100)
            tx.update(FxCount, "1", n=c.n + 1)

        # what the policies allow: stop at the budget-th conflict or the 5th restart
        conflicts = restarts = 0
        end = "ok"
        for step in plan:
            if step == "conflict":
                conflicts += 1
                if conflicts >= budget:
                    end = "exhausted"
                    break
            else:
                if restarts + 1 >= FAST_RESEND.attempts:
                    end = "gave up"
                    break
                restarts += 1
        if end == "ok":
            out = bump.outcome()
            assert (out.conflicts, out.restarts, out.attempts) == (
                conflicts, restarts, conflicts + restarts + 1)
        elif end == "exhausted":
            with pytest.raises(redmodel.ConflictError) as caught:
                bump()
            assert caught.value.attempts == conflicts == budget
            assert f"conflicted on all {budget} attempts" in str(caught.value)
        else:
            with pytest.raises(redis.exceptions.ConnectionError):
                bump()
        stats = bump.stats.snapshot()
        assert (stats["conflicts"], stats["restarts"]) == (conflicts, restarts)
        assert stats["exhausted"] == (end == "exhausted")
        assert stats["attempts"] == len(runs) == (
            stats["conflicts"] + stats["restarts"] + stats["commits"] + stats["errors"])
        assert stats["commits"] == (end == "ok") and stats["errors"] == (end == "gave up")
    proxy.clear()
