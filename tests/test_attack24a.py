"""Session 24, attack A: stop 23's last fixes (pins of indexed increments, Flag fields
refused at declaration, ids standing for undecodable bytes) and their neighbours. One
failing test per finding (``# F<n>:`` names it), each asserting what the docs promise; the
tests without a mark are sound areas the suite did not cover."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Any, Optional

import attrs
import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.testing import FaultProxy, RedisServer
from tests.budget import scaled


def _undecodable(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


#: id bytes another program may have written under a model's prefix: not UTF-8 text
BAD_ID = st.binary(min_size=1, max_size=6).filter(_undecodable).filter(
    lambda b: b":" not in b and b"%" not in b)


def _redmodel_error_naming(err: BaseException, prefix: str) -> bool:
    return isinstance(err, redmodel.RedmodelError | redis.RedisError) and prefix in str(err)


@redmodel.model(prefix="atk24p")
@attrs.define
class _Plain:
    color: str = "x"
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk24f", layout="flat")
@attrs.define
class _Flat:
    color: str = "x"
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk24i")
@attrs.define
class _Row:
    color: str = redmodel.field(index=True, default="red")
    price: float = redmodel.field(index="range", default=1.0)
    code: str | None = redmodel.field(unique=True, default=None)
    id: str = redmodel.key_field(generated=False)


_WHOLE_MODEL_CALLS: list[tuple[type, str]] = [
    (_Plain, "scan"), (_Plain, "count"), (_Flat, "scan"), (_Flat, "count"),
    (_Row, "scan"), (_Row, "count"), (_Row, "verify"), (_Row, "reindex"),
]


def _plant(client: redis.Redis, model: type, raw: bytes) -> bytes:
    name = {_Plain: b"atk24p", _Flat: b"atk24f", _Row: b"atk24i"}[model]
    if model is _Flat:
        key = name + b":" + raw + b":color"
        client.set(key, b"y")
    else:
        key = name + b":" + raw
        client.hset(key, mapping={b"color": b"red", b"price": b"1.5"})
    return key


def _whole(store: redmodel.Store, model: type, call: str) -> Any:
    if call == "scan":
        return list(store.scan(model))
    return getattr(store, call)(model)


# F1: a key under a model's prefix whose id part is not UTF-8 (written by another program)
# makes scan, count, verify and reindex of the model escape with a bare UnicodeDecodeError
# (redmodel/_plans/_objects.py:scan_page decodes the SCAN reply strictly), sync and async,
# every layout; the query paths decode such ids with surrogateescape.
@pytest.mark.parametrize(("model", "call"), _WHOLE_MODEL_CALLS,
                         ids=[f"{m.__name__}-{c}" for m, c in _WHOLE_MODEL_CALLS])
@settings(max_examples=scaled(5, floor=2))
@example(raw=b"\x80")
@given(raw=BAD_ID)
def test_f1_whole_model_calls_survive_a_key_with_undecodable_id_bytes(
        store: redmodel.Store, redis_client: redis.Redis, model: type, call: str,
        raw: bytes) -> None:
    """docs (common rules, BRIEF-COMMON/ATTACK-COMMON): "every exception leaving redmodel is a
    redmodel or redis-py error naming the key (never a bare ... ValueError ...)", and values
    must round-trip or be refused as documented with "wrong-typed keys planted beforehand";
    docs/store.md: `scan(Model)` is "SCAN MATCH prefix:* ... iterator of objects". A hash
    `atk24p:\\xfe` (another program's key under the prefix) makes the whole-model calls
    raise `UnicodeDecodeError` (a ValueError) that names no key."""
    key = _plant(redis_client, model, raw)
    try:
        _whole(store, model, call)
    except Exception as e:
        assert _redmodel_error_naming(e, "atk24"), repr(e)
    finally:
        redis_client.delete(key)


# F1 (async shell, same plan): the same bare UnicodeDecodeError from AsyncStore.scan/count.
@pytest.mark.parametrize("call", ["scan", "count"])
def test_f1_async_scan_and_count_survive_a_key_with_undecodable_id_bytes(
        redis_url: str, redis_client: redis.Redis, call: str) -> None:
    redis_client.hset(b"atk24p:\x80", b"color", b"y")

    async def run() -> None:
        astore = redmodel.AsyncStore.from_url(redis_url)
        try:
            if call == "scan":
                [o async for o in astore.scan(_Plain)]
            else:
                await astore.count(_Plain)
        except Exception as e:
            assert _redmodel_error_naming(e, "atk24p"), repr(e)
        finally:
            await astore.client.aclose()

    asyncio.run(run())


def _ordered_calls(store: redmodel.Store) -> dict[str, Any]:
    q = store.find(_Row).order_by("price")
    return {
        "ids": q.ids,
        "all": q.all,
        "desc": lambda: store.find(_Row).order_by("-price").ids(),
        "pages": lambda: [o for p in q.pages(1) for o in p],
        "filtered": lambda: store.find(_Row, color="red").order_by("price").all(),
        "after": lambda: q.after("price|0|\udc80").ids(),
    }


# F2: an ordered query (ids, all, pages, -order, filtered, after a cursor) whose range index
# holds an id that is not UTF-8 escapes with a bare UnicodeEncodeError
# (redmodel/_indexes/_query.py:Query._ids: `unescape(h[1]).encode()` without
# surrogateescape), though the unordered query paths take such ids (stop 23, 27c5e39).
@pytest.mark.parametrize("call", ["ids", "all", "desc", "pages", "filtered", "after"])
@settings(max_examples=scaled(5, floor=2))
@example(raw=b"\x80")
@given(raw=BAD_ID)
def test_f2_an_ordered_query_over_an_undecodable_id_is_a_redmodel_error_or_answers(
        store: redmodel.Store, redis_client: redis.Redis, call: str, raw: bytes) -> None:
    """docs/queries.md: "Bad queries raise `QueryError` before any command is sent"; the
    common rules: every exception leaving redmodel is a redmodel or redis-py error naming
    the key, and wrong-typed data planted beforehand is answered or refused as documented.
    The unordered `find(_Row).ids()` over the same entry answers; the ordered one raises
    `UnicodeEncodeError: surrogates not allowed`."""
    store.save_many([_Row(id=f"i{i}", price=float(i)) for i in range(3)])
    redis_client.zadd("atk24i:%idx:rng:price", {raw: 1.5})
    redis_client.sadd("atk24i:%idx:eq:color:red", raw)
    try:
        _ordered_calls(store)[call]()
    except Exception as e:
        assert _redmodel_error_naming(e, "atk24i"), repr(e)
    finally:
        redis_client.zrem("atk24i:%idx:rng:price", raw)
        redis_client.srem("atk24i:%idx:eq:color:red", raw)


# F3: get_by over a unique entry that holds an id which is not UTF-8 escapes with a bare
# UnicodeEncodeError from the transport's packer (redmodel/_transport/_links.py:_pack: the
# id read back with surrogateescape is sent again as text).
@pytest.mark.parametrize("shell", ["sync", "async"])
@settings(max_examples=scaled(5, floor=2))
@example(raw=b"\x80")
@given(raw=BAD_ID)
def test_f3_get_by_over_an_undecodable_unique_entry_is_none_or_a_redmodel_error(
        store: redmodel.Store, redis_client: redis.Redis, redis_url: str, shell: str,
        raw: bytes) -> None:
    """docs/queries.md: `get_by` answers the object holding the unique value or None; the
    common rules: every exception leaving redmodel is a redmodel or redis-py error naming
    the key. A unique index entry `cX -> b'\\x80'` (planted, or left by another program)
    makes `get_by(_Row, code="cX")` raise `UnicodeEncodeError` instead."""
    redis_client.hset("atk24i:%idx:uq:code", b"cX", raw)

    async def aget() -> Any:
        astore = redmodel.AsyncStore.from_url(redis_url)
        try:
            return await astore.get_by(_Row, code="cX")
        finally:
            await astore.client.aclose()

    try:
        got = store.get_by(_Row, code="cX") if shell == "sync" else asyncio.run(aget())
        assert got is None
    except Exception as e:
        assert _redmodel_error_naming(e, "atk24i"), repr(e)
    finally:
        redis_client.hdel("atk24i:%idx:uq:code", b"cX")


@redmodel.model(prefix="atk24c")
@attrs.define
class _Counter:
    n: int = redmodel.field(index=True, default=0)
    m: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


def _nth(k: int, then: Any = None) -> Any:
    seen: list[int] = []

    def when(argv: list[bytes]) -> bool:
        seen.append(1)
        if len(seen) == k and then is not None:
            then()
            return False
        return len(seen) == k

    return when


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# F4: waiting out a dead client's pin is a busy loop: one `incr` sends ~18,000 EVALSHA in
# the 2 s (every "pinned" answer is sent again at once, with no pause), and a burst of 100
# concurrent asyncio increments of one field sends ~4,700 EVALSHA, takes > 2.5 s and fails a
# third of them with ConflictError (redmodel/_indexes/_writes.py:_send_writes).
def test_f4_waiting_out_a_dead_pin_is_not_a_tight_loop_of_round_trips(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """docs/queries.md ("Concurrent increments"): a dead client's pin is "ignored after 2 s
    (by the server's clock)" and "waited out, never reported as a conflict"; ATTACK-COMMON:
    "no script call stalls the server", and the brief's question: "does the server stay
    responsive (no tight loop of thousands of round trips: count commands with INFO
    commandstats)". Waiting 2 s for a pin needs a poll every few ms at most, not a round
    trip every ~0.1 ms from every waiting client (9,000 commands/s per waiter: ten waiters
    are a server's worth of load doing nothing)."""
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        dead = redmodel.Store.from_url(proxy.url)
        other = redmodel.Store.from_url(redis_server.url)
        dead.save(_Counter(id="c", n=5))
        proxy.drop_request("EVALSHA", when=_nth(2))      # the resend naming its keys
        with pytest.raises(redmodel.OutcomeUnknownError):
            dead.incr(_Counter, "c", "n", 7)
        assert any(k.startswith(b"\0pin") for k in redis_client.hkeys("atk24c:c"))
        before = _evalsha_calls(redis_client)
        assert other.incr(_Counter, "c", "n", 1) == 6      # waits the pin out, lands
        spent = _evalsha_calls(redis_client) - before
        assert spent <= 500, f"{spent} EVALSHA round trips to wait out one pin"
        assert other.verify(_Counter) == []
        dead.client.close()
        other.client.close()


# ---- sound areas, kept as coverage the suite lacked -------------------------------------

@pytest.mark.parametrize("step", ["update_over_ceiling", "update_near_2_63", "wrong_type_entry",
                                  "delete", "update_other_field_over_ceiling"])
def test_a_pinned_increment_refused_on_its_resend_leaves_no_pin(
        redis_server: RedisServer, redis_client: redis.Redis, step: str) -> None:
    """Between an increment's "needs keys" answer (the pin is set) and its resend, another
    client's update/delete (which ignore pins) or a planted key makes the resend refused:
    the pin is dropped with it, the object is exactly what the other client left, and the
    index matches a scan (docs/queries.md: "A pin is dropped when its increment lands or is
    refused ... the object is then exactly as it was")."""
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        store = redmodel.Store.from_url(proxy.url)
        other = redmodel.Store.from_url(redis_server.url)
        store.save(_Counter(id="c", n=5, m=1))
        between = {
            "update_over_ceiling": lambda: other.update(_Counter, "c", n=15),
            "update_near_2_63": lambda: other.update(_Counter, "c", n=2**63 - 3),
            "wrong_type_entry": lambda: redis_client.set("atk24c:%idx:eq:n:12", "x"),
            "delete": lambda: other.delete(_Counter, "c"),
            "update_other_field_over_ceiling": lambda: other.update(_Counter, "c", m=100),
        }[step]
        seen: dict[bytes, bytes] = {}
        proxy.drop_request("EVALSHA", when=_nth(2, then=lambda: (
            between(), seen.update(redis_client.hgetall("atk24c:c")))))
        with pytest.raises(redmodel.RedmodelError):
            store.incr_fields(_Counter, "c", {"n": 7, "m": 1}, ceiling={"n": 20, "m": 50})
        left = {k: v for k, v in seen.items()
                if not k.startswith(b"\0pin")}             # what the other client left
        assert redis_client.hgetall("atk24c:c") == left      # byte-identical: no pin left
        redis_client.delete("atk24c:%idx:eq:n:12")
        assert other.verify(_Counter) == []
        store.client.close()
        other.client.close()


class _Perm(enum.IntFlag):
    R = 1
    W = 2


class _Color(enum.Flag):
    RED = enum.auto()
    BLUE = enum.auto()


@attrs.define
class _HoldsFlag:
    p: _Perm = _Perm.R


@attrs.define
class _HoldsFlags:
    ps: list[_Perm] = attrs.Factory(list)


_FLAG_TYPES: list[Any] = [
    Optional[_Perm], _Perm | None, _Color, list[_Perm], tuple[_Perm, ...],  # noqa: UP045
    tuple[_Perm, int], dict[str, _Perm], dict[_Perm, int], set[_Perm], frozenset[_Perm],
    _HoldsFlag, _HoldsFlags, Optional[_HoldsFlag], list[_HoldsFlag],  # noqa: UP045
    dict[str, _HoldsFlag], Annotated[_Perm, "doc"], list[Annotated[_Perm, 1]], _Perm | str,
]


@pytest.mark.parametrize("tp", _FLAG_TYPES, ids=[repr(t) for t in _FLAG_TYPES])
def test_a_flag_anywhere_in_a_field_or_container_type_is_refused_at_declaration(
        tp: Any) -> None:
    """docs/models.md: a `Flag`/`IntFlag` is refused at declaration with
    ModelDefinitionError; so it is however wrapped (Optional, containers, nested attrs
    classes, Annotated, unions), in every layout and with every index option, and as a
    typed container's member type."""
    for layout, option in [("hash", {}), ("hash", {"index": True}), ("hash", {"unique": True}),
                           ("hash", {"codec": "json"}), ("flat", {}), ("blob", {})]:
        body = {"__annotations__": {"x": tp, "id": str},
                "x": redmodel.field(default=None, **option),
                "id": redmodel.key_field(generated=False)}
        extra = {"codec": "json"} if layout == "blob" else {}
        with pytest.raises(redmodel.ModelDefinitionError):
            redmodel.model(prefix="atk24fl", layout=layout, **extra)(
                attrs.define(type("M", (), body)))
    store = redmodel.Store(redis.Redis(port=1))          # nothing is sent at declaration
    for kind in (redmodel.containers.Queue, redmodel.containers.Set,
                 redmodel.containers.SortedSet):
        with pytest.raises(redmodel.ModelDefinitionError):
            kind(store, "atk24q", tp)


def test_the_pin_wait_is_not_reported_after_a_dead_holders_pin_when_exactly_once(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """With exactly-once on, the holder's dropped resend is sent again (a write id), so no
    dead pin is left: the other client's increment lands at once, each applied once."""
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        once = redmodel.Store.from_url(proxy.url, exactly_once=True)
        other = redmodel.Store.from_url(redis_server.url, exactly_once=True)
        once.save(_Counter(id="e", n=5))
        proxy.drop_request("EVALSHA", when=_nth(2))
        assert once.incr(_Counter, "e", "n", 7) == 12
        assert not any(k.startswith(b"\0pin") for k in redis_client.hkeys("atk24c:e"))
        assert other.incr(_Counter, "e", "n", 1) == 13
        proxy.lose_reply("EVALSHA", when=_nth(2))          # the pin-dropping step's reply
        assert once.incr(_Counter, "e", "n", 10) == 23
        assert redis_client.hgetall("atk24c:e") == {b"n": b"23", b"m": b"0"}
        assert other.verify(_Counter) == []
        once.client.close()
        other.client.close()


@redmodel.model(prefix="atk24bp")
@attrs.define
class _BytesId:
    color: str = "x"
    id: bytes = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk24bi")
@attrs.define
class _BytesIdIndexed:
    color: str = redmodel.field(index=True, default="red")
    price: float = redmodel.field(index="range", default=1.0)
    id: bytes = redmodel.key_field(generated=False)


# F5: a `bytes` id field is accepted at declaration and ASCII ids work, but an id that is not
# UTF-8 (b"\x80", any binary id) makes save, get, delete, update and incr raise a bare
# UnicodeDecodeError (sync and async, plain and indexed models): neither stored nor refused
# with a redmodel error. Such ids are where the query paths' surrogateescape ids come from.
@pytest.mark.parametrize("model", [_BytesId, _BytesIdIndexed], ids=["plain", "indexed"])
@settings(max_examples=scaled(10, floor=3))
@example(raw=b"\x80")
@given(raw=st.binary(min_size=1, max_size=8))
def test_f5_a_bytes_id_round_trips_or_is_refused_before_any_write(
        store: redmodel.Store, redis_client: redis.Redis, model: type, raw: bytes) -> None:
    """docs/models.md ("Ids and keys"): "The id field may be `str`, `int`, `UUID` or any
    other scalar type; its value must not be empty", "Ids and stored field names may contain
    anything"; the type table: "`bytes` | the raw bytes". Common rules: values round-trip
    exactly or are refused as documented, bad input gets a clear error before the first
    write, every exception is a redmodel or redis-py error naming the key."""
    redis_client.flushall()
    obj = model(id=raw)
    try:
        store.save(obj)
    except Exception as e:
        assert isinstance(e, redmodel.ValidationError), repr(e)
        assert redis_client.keys("atk24b?:[!%]*") == []       # refused before any write
        return
    assert store.get(model, raw) == obj
    assert [o.id for o in store.scan(model)] == [raw]
    if model is _BytesIdIndexed:
        assert store.find(model, color="red").ids() == [raw]
        assert [o.id for p in store.find(model).order_by("price").pages(1) for o in p] == [raw]
    assert store.delete(model, raw) is True


# F6: a consumer name holding a lone surrogate passes consume()'s name check (which refuses
# "" and non-str names with ValidationError) and fails at the first take with a bare
# UnicodeEncodeError from the transport's packer, plus a log line saying it "could not
# return its items" (nothing is lost: the items stay in the queue).
@pytest.mark.parametrize("name", ["w\udc80", "\ud800", "a\udfffb"])
def test_f6_a_consumer_name_that_is_not_utf8_text_is_refused_at_consume(
        store: redmodel.Store, redis_client: redis.Redis, name: str) -> None:
    """docs/containers.md (`consume(..., name=None, ...)`) and the common rules: "Bad input
    gets a clear error before the first write and loses nothing", "every exception leaving
    redmodel is a redmodel or redis-py error naming the key". The empty name is refused by
    `consume()` with ValidationError naming the queue's key; a name that cannot be sent
    (not UTF-8-encodable text) must be too, not fail later as UnicodeEncodeError."""
    jobs = redmodel.containers.Queue(store, "atk24jobs", str)
    jobs.push("a")
    try:
        consumer = jobs.consume(name=name, idle_timeout=0.05, poll=0.01)
        taken = list(consumer)
    except Exception as e:
        assert isinstance(e, redmodel.ValidationError) and "atk24jobs" in str(e), repr(e)
        assert redis_client.lrange("atk24jobs", 0, -1) == [b"a"]
        return
    assert taken == ["a"]


_CONTAINER_CALLS: dict[str, Any] = {
    "queue-key": lambda s, t: redmodel.containers.Queue(s, t, str).push("a"),
    "queue-tuple-key": lambda s, t: redmodel.containers.Queue(s, ("atk24", t), str).push("a"),
    "set-key": lambda s, t: redmodel.containers.Set(s, t, str).add("a"),
    "sortedset-key": lambda s, t: redmodel.containers.SortedSet(s, t, str).add("a", 1.0),
    "window-key": lambda s, t: redmodel.containers.WindowCounter(s, t).incr("a"),
    "window-subject-incr": lambda s, t: redmodel.containers.WindowCounter(s, "atk24w").incr(t),
    "window-subject-get": lambda s, t: redmodel.containers.WindowCounter(s, "atk24w").get(t),
}


# F7: a container key part (or a WindowCounter subject) holding a lone surrogate is accepted
# by the key check (it is a str) and the first command fails with a bare UnicodeEncodeError
# from the transport's packer; a model id with one is refused ("bad id: text with a lone
# surrogate cannot be stored as UTF-8") and so is such a member.
@pytest.mark.parametrize("call", list(_CONTAINER_CALLS))
@settings(max_examples=scaled(5, floor=2))
@example(text="x\udc80")
@given(text=st.text(min_size=1, max_size=4).flatmap(
    lambda t: st.characters(categories=["Cs"]).map(lambda c: t + c)))
def test_f7_a_container_key_part_that_is_not_utf8_text_is_a_validation_error(
        store: redmodel.Store, redis_client: redis.Redis, call: str, text: str) -> None:
    """docs/containers.md ("Keys"): key parts are built like model keys, and anything that
    cannot be one "raises `redmodel.ValidationError` before anything is sent"; docs/models.md:
    an id with a lone surrogate is refused as not storable UTF-8 text. Common rules: never a
    bare UnicodeEncodeError."""
    before = set(redis_client.keys("*"))
    try:
        _CONTAINER_CALLS[call](store, text)
    except Exception as e:
        assert isinstance(e, redmodel.ValidationError), repr(e)
        assert set(redis_client.keys("*")) - before <= {b"atk24w:%schema",
                                                        b"atk24w:{atk24w}:%container"}


def _declare_with(prefix: str = "atk24d", delimiter: str = ":", name: str | None = None,
                  index: bool = False) -> type:
    body = {"__annotations__": {"v": int, "id": str},
            "v": redmodel.field(default=0, name=name, index=index),
            "id": redmodel.key_field(generated=False)}
    return redmodel.model(prefix=prefix, delimiter=delimiter)(
        attrs.define(type("Decl", (), body)))


# F8: a model prefix, delimiter or stored field name (`name=`) holding a lone surrogate is
# not refused with ModelDefinitionError: the prefix and a plain field's name are accepted and
# the first save raises a bare UnicodeEncodeError; the delimiter, and the name of an indexed
# field, raise a bare UnicodeEncodeError at declaration (an enum value with one is refused
# with ModelDefinitionError since stop 23).
@pytest.mark.parametrize("option", [{"prefix": "p\udc80"}, {"delimiter": "\udc80"},
                                    {"name": "v\ud800"}, {"name": "v\ud800", "index": True}],
                         ids=["prefix", "delimiter", "name", "indexed-name"])
def test_f8_a_declaration_holding_a_lone_surrogate_is_a_model_definition_error(
        store: redmodel.Store, redis_client: redis.Redis, option: dict[str, Any]) -> None:
    """docs/models.md (errors table): "`ModelDefinitionError` (also a `TypeError`) | at
    declaration: unsupported type, no key field, bad option"; the type table refuses an
    enum value "that is not UTF-8-encodable text (a lone surrogate)" at declaration. A
    prefix or stored name that can never be sent is a bad option of the same kind."""
    try:
        model = _declare_with(**option)
    except Exception as e:
        assert isinstance(e, redmodel.ModelDefinitionError), repr(e)
        return
    try:
        store.save(model(id="a", v=1))
    except Exception as e:
        raise AssertionError(f"declared, then the first save raised {e!r}") from e
    assert store.get(model, "a") == model(id="a", v=1)


# F9: from_url accepts a `client_name` query value holding a lone surrogate, and the first
# store call raises a bare UnicodeEncodeError (a neighbour of attack 23r F3/F4).
def test_f9_url_client_name_that_cannot_be_sent_is_a_validation_error(redis_url: str) -> None:
    """docs/deploy.md: "in `from_url` and `from_env`, a URL redis-py cannot use (... a bad
    query value ...)" raises `redmodel.ValidationError` naming the URL "before any client is
    made"; common rule: every exception leaving redmodel is a redmodel or redis-py error."""
    sep = "&" if "?" in redis_url else "?"
    try:
        store = redmodel.Store.from_url(f"{redis_url}{sep}client_name=w\udc80")
    except redmodel.ValidationError:
        return
    try:
        store.save(_Plain(id="x"))
    except Exception as e:
        assert isinstance(e, redmodel.RedmodelError | redis.RedisError), repr(e)
    finally:
        store.client.close()


# F10: store.drop_index(Model, name) with a name holding a lone surrogate raises a bare
# UnicodeEncodeError; an unknown plain name answers 0 (nothing dropped).
def test_f10_drop_index_of_a_name_that_is_not_utf8_text_is_refused_or_drops_nothing(
        store: redmodel.Store) -> None:
    """docs/migrations.md (`store.drop_index`) and the common rule: every exception leaving
    redmodel is a redmodel or redis-py error naming the key; bad input gets a clear error
    before the first write. `drop_index(_Row, "nope")` answers 0."""
    assert store.drop_index(_Row, "nope") == 0
    try:
        assert store.drop_index(_Row, "n\udc80") == 0
    except Exception as e:
        assert isinstance(e, redmodel.ValidationError), repr(e)
