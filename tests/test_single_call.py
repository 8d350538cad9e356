"""A store's single calls (save, get, update, incr, delete, exists of a plain hash model)
take the link's one-command round (redmodel._transport._links.SyncLink._one) and incr's
short script (lua/incr_one.lua); these tests show they keep every guarantee of the full
path, through redmodel.testing's fault proxy and planted keys:

- a lost reply to incr (never resent) is OutcomeUnknownError, and it was applied once;
- a lost reply to a save is resent after the fence, and the save returns;
- a key of another type planted beforehand: ServerError naming the key, nothing written;
- the model registry still refuses a conflicting model after the first use of another;
- the short incr script answers exactly what incr_fields.lua answers (a property over
  stored values it must refuse: beyond 64 bits, not canonical, not numbers, overflow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio as aredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

import redmodel
from redmodel.testing import FaultProxy, has
from tests.budget import scaled


@redmodel.model(prefix="sc")
@attrs.define
class Item:
    name: str
    n: int = 0
    real: float = 0.0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="sc")  # the same prefix, other fields: the registry refuses it
@attrs.define
class Impostor:
    other: bytes
    id: str = redmodel.key_field(generated=False)


POLICY = redmodel.ResendPolicy(attempts=5, backoff_base=0.01, backoff_max=0.05,
                               deadline=8.0)


@pytest.fixture
def faulty(proxy: FaultProxy) -> Iterator[redmodel.Store]:
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2,
                         retry=Retry(NoBackoff(), 0))
    store = redmodel.Store(client, resend=POLICY)
    store.save(Item("warm", id="warm"))  # registry checked, script loaded, id learnt
    yield store
    store.close()


def test_a_lost_reply_to_incr_is_outcome_unknown_and_applied_once(
        faulty: redmodel.Store, proxy: FaultProxy, redis_client: redis.Redis) -> None:
    faulty.save(Item("a", n=5, id="a"))
    proxy.lose_reply("EVALSHA", when=has("sc:a"))
    with pytest.raises(redmodel.OutcomeUnknownError):
        faulty.incr(Item, "a", "n", 2)
    assert redis_client.hget("sc:a", "n") == b"7"  # applied once, never resent
    assert faulty.incr(Item, "a", "n", 1) == 8


def test_a_lost_reply_to_save_is_resent_after_the_fence(
        faulty: redmodel.Store, proxy: FaultProxy, redis_client: redis.Redis) -> None:
    proxy.lose_reply("HSET", when=has("sc:b"))
    assert faulty.save(Item("b", n=3, id="b")) == "sc:b"
    assert [e.kind for e in proxy.events if e.kind == "lose_reply"] == ["lose_reply"]
    assert redis_client.hgetall("sc:b") == {b"name": b"b", b"n": b"3", b"real": b"0.0"}


def test_a_lost_reply_to_get_is_read_again(faulty: redmodel.Store, proxy: FaultProxy) -> None:
    faulty.save(Item("c", id="c"))
    proxy.lose_reply("HGETALL", when=has("sc:c"))
    assert faulty.get(Item, "c") == Item("c", id="c")


@pytest.mark.parametrize("call", ["save", "get", "update", "incr", "exists", "delete"])
def test_a_key_of_another_type_is_refused_naming_it_and_kept(
        store: redmodel.Store, redis_client: redis.Redis, call: str) -> None:
    store.save(Item("warm", id="warm"))
    redis_client.set("sc:x", b"planted")
    act = {
        "save": lambda: store.save(Item("x", id="x")),
        "get": lambda: store.get(Item, "x"),
        "update": lambda: store.update(Item, "x", name="y"),
        "incr": lambda: store.incr(Item, "x", "n", 1),
        "exists": lambda: store.exists(Item, "x"),
        "delete": lambda: store.delete(Item, "x"),
    }[call]
    if call in ("exists", "delete"):  # any type: EXISTS answers, DEL removes it
        assert act() is True
        return
    with pytest.raises((redmodel.RedmodelError, redis.ResponseError)) as caught:
        act()
    assert "sc:x" in str(caught.value)
    assert redis_client.get("sc:x") == b"planted"


def test_the_registry_still_refuses_a_conflicting_model(store: redmodel.Store) -> None:
    for i in range(3):  # the first use registers; the next ones take the short path
        store.save(Item("r", id=str(i)))
    with pytest.raises(redmodel.SchemaConflictError):
        store.save(Impostor(b"x", id="9"))
    with pytest.raises(redmodel.SchemaConflictError):
        store.get(Impostor, "0")
    assert store.get(Item, "0") == Item("r", id="0")


def test_calls_on_a_transaction_handle_are_queued(store: redmodel.Store,
                                                  redis_client: redis.Redis) -> None:
    store.save(Item("t", n=1, id="t"))
    with redmodel.transactions.Transaction(store) as tx:
        tx.incr(Item, "t", "n", 5)
        tx.save(Item("u", id="u"))
        assert redis_client.hget("sc:t", "n") == b"1"  # queued, not sent
        assert not redis_client.exists("sc:u")
    assert redis_client.hget("sc:t", "n") == b"6"
    assert store.get(Item, "u") == Item("u", id="u")


STORED = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda i: str(i).encode()),
    st.integers(-(2**70), 2**70).map(lambda i: str(i).encode()),
    st.sampled_from([b"05", b"-0", b"+1", b" 1", b"1 ", b"1.5", b"nan", b"", b"x",
                     b"9223372036854775807", b"-9223372036854775808",
                     b"9223372036854775808", b"00"]),
)
AMOUNTS = st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1),
                    st.sampled_from([2**63 - 1, -(2**63), 2**53 + 1]))


def _outcome(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except Exception as e:  # compared between the two paths
        return ("error", type(e).__name__, str(e).replace("sc:two", "sc:one"))


@settings(max_examples=scaled(40))
@given(stored=st.one_of(st.none(), STORED), amount=AMOUNTS, missing=st.booleans())
def test_the_short_incr_answers_as_the_counter_script(
        store: redmodel.Store, redis_client: redis.Redis, stored: bytes | None,
        amount: int, missing: bool) -> None:
    """incr (incr_one.lua, then incr_fields.lua if it refused) and incr_fields.lua alone
    give the same value or error and leave the same hash."""
    for k in ("one", "two"):
        redis_client.delete(f"sc:{k}")
        if not missing:
            redis_client.hset(f"sc:{k}", mapping={"name": "z", "real": "0.0"})
            if stored is not None:
                redis_client.hset(f"sc:{k}", "n", stored)
    fast = _outcome(lambda: store.incr(Item, "one", "n", amount))
    slow = _outcome(lambda: store.incr_fields(Item, "two", {"n": amount})["n"])
    assert fast == slow
    assert redis_client.hgetall("sc:one") == redis_client.hgetall("sc:two")


@pytest.mark.parametrize("start", [2**53 - 3, -(2**53) + 3, 2**63 - 4, -(2**63) + 4])
def test_the_short_incr_answers_exactly_on_both_sides_of_2_53(
        store: redmodel.Store, redis_client: redis.Redis, start: int) -> None:
    """incr_one.lua answers HINCRBY's number below 2**53 in magnitude and the stored text
    beyond: either way the exact new value, as a plain int, and what is stored."""
    redis_client.delete("sc:big")
    redis_client.hset("sc:big", mapping={"name": "z", "n": str(start)})
    step = 1 if start < 0 else -1  # towards zero near 2**63, away from it near 2**53
    if abs(start) < 2**60:
        step = -step
    value = start
    for _ in range(6):
        value += step
        got = store.incr(Item, "big", "n", step)
        assert type(got) is int and got == value
        assert redis_client.hget("sc:big", "n") == str(value).encode()
    assert store.update(Item, "missing", name="x") is False
    assert not redis_client.exists("sc:missing")


@redmodel.model(prefix="sct", track_changes=True)  # the general chunk path (a snapshot)
@attrs.define
class TrackedItem:
    name: str
    n: int = 0
    real: float = 0.0
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("as_list", [True, False])
@pytest.mark.parametrize("planted", [0, 3, 4])
def test_a_plain_chunk_reports_a_refusal_as_the_general_path(
        store: redmodel.Store, redis_client: redis.Redis, as_list: bool,
        planted: int) -> None:
    """save_many of a plain model (one batch per chunk) and of a tracked one (the general
    path): a key of another type planted in one chunk gives the same error, the same
    .written and .not_written, and the same stored objects."""
    seen = []
    for model, prefix in ((Item, "sc"), (TrackedItem, "sct")):
        redis_client.set(f"{prefix}:{planted}", b"planted")
        objs = [model(str(i), n=i, id=str(i)) for i in range(7)]
        with pytest.raises(redis.ResponseError) as caught:
            store.save_many(objs if as_list else iter(objs), chunk_size=3)
        e = caught.value
        strip = lambda ks: tuple(k.split(":", 1)[1] for k in ks)  # noqa: E731
        seen.append((type(e).__name__, strip(e.written), strip(e.not_written),  # type: ignore[attr-defined]
                     sorted(k.decode().split(":", 1)[1]
                            for k in redis_client.keys(f"{prefix}:*")
                            if redis_client.type(k) == b"hash")))
        assert f"{prefix}:{planted}" in str(e)
    assert seen[0] == seen[1]


def test_async_single_calls_keep_the_guarantees(proxy: FaultProxy,
                                                redis_client: redis.Redis) -> None:
    """AsyncStore's single calls take the same batches (redmodel._plans._single): a lost
    reply to incr is OutcomeUnknownError applied once, a lost reply to save is resent, a
    planted key of another type is refused naming it and kept, and the answers are the
    sync store's."""
    async def main() -> None:
        client = aredis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2,
                              retry=None)
        store = redmodel.AsyncStore(client, resend=POLICY)
        try:
            await store.save(Item("warm", id="warm"))  # registry checked: the fast calls
            await store.save(Item("a", n=5, id="aa"))
            proxy.lose_reply("EVALSHA", when=has("sc:aa"))
            with pytest.raises(redmodel.OutcomeUnknownError):
                await store.incr(Item, "aa", "n", 2)
            assert redis_client.hget("sc:aa", "n") == b"7"
            assert await store.incr(Item, "aa", "n", 1) == 8
            proxy.lose_reply("HSET", when=has("sc:ab"))
            assert await store.save(Item("b", n=3, id="ab")) == "sc:ab"
            assert await store.get(Item, "ab") == Item("b", n=3, id="ab")
            assert await store.update(Item, "ab", n=4) is True
            assert await store.exists(Item, "ab") is True
            assert await store.delete(Item, "ab") is True
            assert await store.get(Item, "ab") is None
            redis_client.set("sc:ax", b"planted")
            with pytest.raises(redmodel.ServerError, match="sc:ax"):
                await store.save(Item("x", id="ax"))
            assert redis_client.get("sc:ax") == b"planted"
        finally:
            await store.aclose()

    asyncio.run(main())


def test_async_incr_refusals_are_the_counter_scripts(redis_url: str) -> None:
    """What the short incr script refuses (a missing object, a field that is no int)
    AsyncStore hands to the counter script, as Store does: the same errors, nothing
    written."""

    async def main() -> None:
        store = redmodel.AsyncStore.from_url(redis_url)
        try:
            await store.save(Item("warm", id="warm2"))
            with pytest.raises(redmodel.NotFoundError):
                await store.incr(Item, "ghost", "n")
            await store.client.hset("sc:odd", mapping={"name": "o", "n": "x", "real": "0"})
            with pytest.raises(redmodel.RedmodelError, match="sc:odd"):
                await store.incr(Item, "odd", "n")
            assert await store.client.exists("sc:ghost") == 0
            assert await store.client.hget("sc:odd", "n") == b"x"
        finally:
            await store.aclose()

    asyncio.run(main())
