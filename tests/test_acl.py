"""Each feature runs as an ACL user created with exactly its rule (tests/acl.py), on the
throwaway server: it works with no command or key refused, and every command of the rule
is needed. docs/deploy.md shows the same rules."""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import redmodel
from redmodel.testing import FaultProxy, RedisServer, has
from tests.acl import RULES, setuser_args

ROOT = Path(__file__).resolve().parent.parent


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str
    price: float
    quantity: int = 0
    npurchased: int = 0
    note: str | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="ohat")
@attrs.define
class OHat:  # every field optional: its hash may be left empty (hash_update's marker)
    color: str | None = None
    size: int | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="ihat")
@attrs.define
class IHat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    sku: str = redmodel.field(unique=True)
    quantity: int = redmodel.field(default=0, index="range")
    tags: list[str] = redmodel.field(factory=list, index=True)
    id: str = redmodel.key_field()


@redmodel.model(prefix="bhat", buckets=4)
@attrs.define
class BHat:
    color: str = redmodel.field(index=True)
    sku: str = redmodel.field(unique=True)
    id: str = redmodel.key_field()


def hash_models(store: redmodel.Store, server: redis.Redis) -> None:
    hat = Hat("black", 49.99, quantity=3)
    assert store.save(hat) == f"hat:{hat.id}"
    assert store.get(Hat, hat.id) == hat
    server.script_flush()  # as after a restart or a failover: EVAL, then EVALSHA again
    assert store.save(Hat("white", 1.0), ttl=60)
    assert store.update(Hat, hat.id, color="white", note=None)
    assert store.incr(Hat, hat.id, "quantity", 2) == 5
    assert store.incr(Hat, hat.id, "price", 0.5) == 50.49
    assert store.incr_fields(Hat, hat.id, {"quantity": -1, "npurchased": 1},
                             floor={"quantity": 0}) == {"quantity": 4, "npurchased": 1}
    assert store.save_many([Hat("green", 2.0) for _ in range(10)]) == 10
    assert store.get_many(Hat, [hat.id, "nope"])[1] is None
    assert store.exists(Hat, hat.id)
    assert store.expire(Hat, hat.id, 100)
    assert store.persist(Hat, hat.id)
    assert store.ttl(Hat, hat.id) is None
    assert store.get_or_raise(Hat, hat.id).quantity == 4
    assert store.count(Hat) == 12
    assert len(list(store.scan_keys(Hat))) == 12
    assert store.delete(Hat, hat.id)
    assert store.delete_many(Hat, [h.id for h in store.scan(Hat)]) == 11
    _resent_save(store)
    assert store.unregister(Hat)  # the model registry's record (read and written above)
    o = OHat("red", 1)
    store.save(o, ttl=60)
    assert store.update(OHat, o.id, color=None, size=2)  # a set and a removal
    assert store.update(OHat, o.id, size=None)  # removals only: the hash would be empty
    assert store.get(OHat, o.id) == OHat(id=o.id) and store.ttl(OHat, o.id) is not None
    assert store.update(OHat, o.id, color="blue")
    assert store.get(OHat, o.id) == OHat("blue", id=o.id)
    assert store.delete(OHat, o.id) and store.unregister(OHat)


@contextlib.contextmanager
def _proxied(store: redmodel.Store) -> Iterator[tuple[FaultProxy, redmodel.Store]]:
    """A store of the same user through a FaultProxy."""
    kwargs = store.client.connection_pool.connection_kwargs
    with FaultProxy(kwargs["host"], kwargs["port"]) as proxy:
        client = redis.Redis(host=proxy.host, port=proxy.port, username=kwargs["username"],
                             password=kwargs["password"], retry=Retry(NoBackoff(), 0))
        with redmodel.Store(client) as through:
            yield proxy, through


def _resent_save(store: redmodel.Store) -> None:
    """A save whose reply is lost: before it is sent again the store fences its first copy
    (CLIENT KILL ID of the connection that carried it); refused, the save would raise
    OutcomeUnknownError."""
    hat = Hat("red", 3.0)
    with _proxied(store) as (proxy, through):
        proxy.lose_reply(lambda _name: True, when=has(f"hat:{hat.id}"))
        through.save(hat)
        assert [e.kind for e in proxy.events] == ["lose_reply"]
    assert store.get(Hat, hat.id) == hat
    assert store.delete(Hat, hat.id)


def indexes_and_queries(store: redmodel.Store, server: redis.Redis) -> None:
    hash_models(store, server)
    a, b = IHat("black", 49.99, "B1", 5, ["x"]), IHat("green", 99.99, "G1", 1, ["y"])
    store.save(a)
    assert store.save_many([b, IHat("red", 10.0, "R1")]) == 2
    gone = IHat("blue", 5.0, "T1")
    store.save(gone, ttl=0.05)
    assert store.update(IHat, a.id, color="white")
    assert store.incr(IHat, a.id, "quantity", 1) == 6
    assert store.incr_fields(IHat, a.id, {"quantity": -1}, floor={"quantity": 0})
    deadline = time.monotonic() + 5
    while store.exists(IHat, gone.id) and time.monotonic() < deadline:
        time.sleep(0.01)  # expired, its index entries not yet swept: queries skip it
    assert [h.sku for h in store.find(IHat, color="white", price=redmodel.lt(50))] == ["B1"]
    assert store.find(IHat).order_by("-price").first() == store.get(IHat, b.id)
    assert store.find(IHat, tags=redmodel.contains("y")).ids() == [b.id]
    assert store.find(IHat, redmodel.Q(color="white") | redmodel.Q(color="green")).count() == 2
    assert store.find(IHat, color="white", sku="B1").count() == 1  # SINTERCARD
    cheap_first = store.find(IHat, price=redmodel.between(1, 100)).order_by("price")
    assert len(cheap_first.page(1).items) == 1
    for order in ("price", "-price"):  # sorted pages from a cursor, either direction
        sorted_q = store.find(IHat).order_by(order)
        first = sorted_q.page(1)
        assert len(sorted_q.after(first.cursor).page(1).items) == 1
        assert sum(len(page) for page in sorted_q.pages(1)) == 3
    assert sum(len(page) for page in store.find(IHat).pages(2)) == 3
    assert store.find(IHat, sku="R1").exists()
    assert store.get_by(IHat, sku="G1") == store.get(IHat, b.id)
    with pytest.raises(redmodel.UniqueViolationError):
        store.save(IHat("x", 1.0, "G1"))
    assert store.expire(IHat, a.id, 100) and store.persist(IHat, a.id)
    store.sweep(IHat)
    # the all-ids index as an older redmodel wrote it (a SET, no pages): reindex converts it
    root = "ihat:%idx:"
    pages = [f"{root}ids:{b.decode() if isinstance(b, bytes) else b}"
             for b in server.zrange(root + "ids", 0, -1)]
    ids = [m for page in pages for m in server.zrange(page, 0, -1)]
    server.delete(root + "ids", root + "idn", *pages)
    server.sadd(root + "all", *ids)
    assert store.reindex(IHat) == 3
    assert store.verify(IHat) == []
    assert store.build_index(IHat, "color") == 3  # a reindex, then the registry's state
    assert store.drop_index(IHat, "style") == 0  # an index IHat does not declare (any more)
    assert store.delete(IHat, b.id) and store.delete_many(IHat, [a.id]) == 1
    c = BHat("black", "S1")
    store.save(c)
    store.save_many([BHat("green", "S2")])
    assert [h.sku for h in store.find(BHat, color="black")] == ["S1"]
    assert store.get_by(BHat, sku="S2") is not None
    assert store.update(BHat, c.id, sku="S3")
    assert store.delete(BHat, c.id)
    assert store.reindex(BHat) == 1 and store.verify(BHat) == []


def transactions(store: redmodel.Store, server: redis.Redis) -> None:
    hash_models(store, server)
    hat = Hat("black", 49.99, quantity=3)
    store.save(hat)

    def buy(tx: redmodel.transactions.Transaction, id: str) -> None:
        got = tx.get_or_raise(Hat, id)
        tx.update(Hat, id, quantity=got.quantity - 1)
        tx.incr(Hat, id, "npurchased", 1)

    store.transaction(buy)(hat.id)

    @redmodel.transaction(store)
    def sell(tx: redmodel.transactions.Transaction, id: str) -> None:
        got = tx.get_or_raise(Hat, id)
        tx.save(attrs.evolve(got, quantity=got.quantity - 1))

    sell(hat.id)

    def give_up(tx: redmodel.transactions.Transaction, id: str) -> None:
        tx.get(Hat, id)
        raise LookupError("changed my mind")

    with pytest.raises(LookupError):
        store.transaction(give_up)(hat.id)
    got = store.get_or_raise(Hat, hat.id)
    assert (got.quantity, got.npurchased) == (1, 1)


def containers(store: redmodel.Store, server: redis.Redis) -> None:
    ips = redmodel.containers.Queue(store, ("shop", "ips"), IPv4Address)
    assert ips.push(IPv4Address("1.2.3.4"), IPv4Address("5.6.7.8")) == 2
    ips.push_left(IPv4Address("9.9.9.9"))
    assert ips.pop() == IPv4Address("9.9.9.9")
    assert ips.pop_right() == IPv4Address("5.6.7.8")
    assert ips.range() == [IPv4Address("1.2.3.4")] and ips.length() == 1
    ips.trim(0, 10)
    with _proxied(store) as (proxy, through):  # a cap whose reply is lost: fenced, resent
        proxy.lose_reply("LTRIM")
        redmodel.containers.Queue(through, ("shop", "ips"), IPv4Address).trim(0, 10)
        assert [e.kind for e in proxy.events] == ["lose_reply"]
    ips.push(IPv4Address("5.6.7.8"), IPv4Address("9.9.9.9"))
    # never waiting: what a rule grants does not depend on it, and the server's clock
    # (hz 10) would make each timeout cost 100 ms
    assert ips.pop_blocking(timeout=5) == IPv4Address("1.2.3.4")
    assert ips.pop_blocking(timeout=5, right=True) == IPv4Address("9.9.9.9")
    assert redmodel.containers.pop_blocking(ips, timeout=5) == (ips, IPv4Address("5.6.7.8"))
    ips.push(IPv4Address("1.2.3.4"), IPv4Address("5.6.7.8"))
    assert redmodel.containers.pop_blocking(ips, timeout=5, right=True) == (
        ips, IPv4Address("5.6.7.8"))
    at_most_once = ips.consume(reliable=False, idle_timeout=0.02, poll=0.01, signals=())
    assert list(at_most_once) == [IPv4Address("1.2.3.4")]  # the BLPOP loop
    ips.push(IPv4Address("1.2.3.4"))
    server.script_flush()  # as after a restart or a failover: EVAL, then EVALSHA again
    assert list(ips.consume(max_items=1, idle_timeout=0.02, poll=0.01, signals=())) == [
        IPv4Address("1.2.3.4")]
    ips.push(IPv4Address("1.2.3.4"))
    for _ in ips.consume(max_items=1, idle_timeout=0.02, poll=0.01, signals=()):
        break  # handed back unacknowledged: the next take is a redelivery
    again = ips.consume(max_items=1, idle_timeout=0.02, poll=0.01, signals=())
    assert list(again) == [IPv4Address("1.2.3.4")] and again.redelivered
    assert list(ips.consume(idle_timeout=0.02, poll=0.01, signals=())) == []  # BLMOVE
    # an item that arrives during the wait (a BLMOVE peek) is taken by a script after it
    pusher = threading.Timer(0.05, ips.push, (IPv4Address("7.7.7.7"),))
    pusher.start()
    try:
        assert list(ips.consume(max_items=1, idle_timeout=2, poll=1, signals=())) == [
            IPv4Address("7.7.7.7")]
    finally:
        pusher.join()
    ips.push(IPv4Address("1.2.3.4"))
    consumer = ips.consume(name="w1", max_items=1, idle_timeout=0.02, poll=0.01, signals=())
    for item in consumer:
        assert ips.in_flight() == {"w1": [item]}
        assert consumer.ack()
    consumer.stop()
    assert ips.recover() == 0
    seen = redmodel.containers.Set(store, ("shop", "visitors"), str)
    other = redmodel.containers.Set(store, ("shop", "other"), str)
    seen.add("a", "b")
    other.add("b")
    seen.remove("a")
    assert seen.members() == {"b"} and seen.members_list() == ["b"] and seen.contains("b")
    assert seen.cardinality() == 1 and seen.union(other) == {"b"}
    assert seen.intersection(other) == {"b"} and seen.difference(other) == set()
    assert seen.pop() == "b"
    assert other.exists() and other.expire(10) and other.clear()
    scores = redmodel.containers.SortedSet(store, ("shop", "scores"), str)
    scores.add_many({"a": 1.0, "b": 2.0})
    scores.add("c", 3.0, nx=True)
    assert scores.incr("a", 2) == 3.0
    scores.remove("b")
    assert scores.score("a") == 3.0 and scores.rank("a") == 0 and scores.cardinality() == 2
    assert scores.range() == ["a", "c"] and scores.range_with_scores(reverse=True)[0][0] == "c"
    assert scores.range_by_score(0, 10) == ["a", "c"]
    assert scores.range_by_score_with_scores(0, 10)[0] == ("a", 3.0)
    assert scores.rank("a", reverse=True) == 1 and scores.range(reverse=True) == ["c", "a"]
    assert scores.range_by_score(0, 10, reverse=True) == ["c", "a"]
    assert scores.range_by_score_with_scores(0, 10, reverse=True)[0] == ("c", 3.0)
    scores.add("c", 9.0, xx=True)
    scores.add("c", 1.0, gt=True)  # not greater: stays 9
    scores.add("c", 3.0, lt=True)
    scores.add_many({"d": 1.0}, nx=True)
    scores.add_many({"d": 2.0}, xx=True)
    scores.add_many({"d": 1.0}, gt=True)  # not greater: stays 2
    scores.add_many({"d": 0.5}, lt=True)
    assert (scores.score("c"), scores.score("d")) == (3.0, 0.5) and scores.remove("d") == 1
    assert scores.pop_min() == [("a", 3.0)] and scores.pop_max() == [("c", 3.0)]
    scores.add("e", 1.0)
    assert scores.exists() and scores.expire(10) and scores.clear()
    hits = redmodel.containers.WindowCounter(store, ("shop", "hits"), window=60)
    assert hits.incr("1.2.3.4") == 1 and hits.get("1.2.3.4") == 1
    assert hits.reset("1.2.3.4") and hits.forget()  # forget: DEL of its registry record
    server.rpush("shop:ips", b"not an address")  # a pop sets it aside (RPUSH)
    with pytest.raises(redmodel.DecodeError, match="rejected"):
        ips.pop()
    assert server.lrange("shop:ips:{shop:ips}:%rejected", 0, -1) == ["not an address"]
    ips.push(IPv4Address("1.2.3.4"))
    assert ips.exists() and ips.expire(10) and ips.clear()


def exactly_once(store: redmodel.Store, server: redis.Redis) -> None:
    hat = Hat("black", 49.99, quantity=3)
    store.save(hat)  # resendable: no write id
    assert store.incr(Hat, hat.id, "quantity", 1) == 4  # INFO first, then its record
    assert store.incr_fields(Hat, hat.id, {"quantity": -1, "npurchased": 1}) == {
        "quantity": 3, "npurchased": 1}  # the previous record deleted with it
    assert store.delete(Hat, hat.id)
    records = server.keys("redmodel:once:*")
    assert records and all(k.startswith("redmodel:once:app:") for k in records), records


SCENARIOS: dict[str, tuple[Callable[[redmodel.Store, redis.Redis], None], tuple[str, ...]]] = {
    # feature: (what it does as the user, with an admin client for what happens to the
    # server meanwhile; the key patterns of its own models and containers)
    "hash models": (hash_models, ("hat:*", "ohat:*")),
    "indexes and queries": (indexes_and_queries, ("hat:*", "ohat:*", "ihat:*", "bhat:*")),
    "transactions": (transactions, ("hat:*", "ohat:*")),
    "containers": (containers, ("shop:*",)),
    "exactly-once": (exactly_once, ("hat:*",)),
}
# store options of a scenario (beyond the URL and no client retry)
STORE_OPTIONS: dict[str, dict[str, Any]] = {
    "exactly-once": {"exactly_once": True,
                     "resend": redmodel.ResendPolicy(write_id_prefix="redmodel:once:app:")},
}


@pytest.fixture(scope="module")
def server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    from redmodel._pytest_plugin import _binary  # noqa: PLC0415

    with RedisServer(_binary(pytestconfig)) as started:
        yield started


def run_as_user(server: RedisServer, feature: str, without: str | None = None
                ) -> tuple[BaseException | None, list[Any]]:
    """Run the feature's scenario as a user with its rule; the error (if any) and what the
    server's ACL LOG recorded as refused (even where redmodel recovered)."""
    scenario, keys = SCENARIOS[feature]
    with server.client(decode_responses=True) as admin:
        admin.flushall()
        admin.acl_log_reset()
        admin.execute_command(*setuser_args("app", "pw", feature, keys, without))
        error: BaseException | None = None
        url = f"redis://app:pw@127.0.0.1:{server.port}"
        with redmodel.Store.from_url(url, retry=Retry(NoBackoff(), 0),
                                     **STORE_OPTIONS.get(feature, {})) as store:
            try:
                scenario(store, admin)
            except Exception as e:
                error = e
        # redis-py's CLIENT SETINFO on connect is refused under every rule and ignored by
        # redis-py (Redis 7.0 does not know the subcommand, so no rule can grant it).
        refused = [e for e in admin.acl_log() if e["object"] != "client|setinfo"]
        return error, refused


@pytest.mark.parametrize("feature", list(RULES))
def test_feature_works_as_a_user_with_exactly_its_rule(server: RedisServer, feature: str
                                                       ) -> None:
    error, refused = run_as_user(server, feature)
    assert error is None, f"{type(error).__name__}: {error}"
    assert refused == []


@pytest.mark.parametrize("feature", list(RULES))
def test_every_command_of_a_rule_is_needed(server: RedisServer, feature: str) -> None:
    unneeded = []
    for command in RULES[feature].commands:  # those it adds; included rules are checked alone
        error, refused = run_as_user(server, feature, without=command)
        if error is None and not refused:
            unneeded.append(command)
    assert unneeded == []


# The containers scenario must call every public method of every container (and each
# non-default value of its flags: rank(reverse=True) is ZREVRANK, not ZRANK), or a command
# missing from the rule goes unnoticed. Methods that send nothing of their own: in_tx
# (the transactions feature), key_for and window_start (no I/O).
CONTAINER_API: tuple[Any, ...] = (
    redmodel.containers.Queue, redmodel.containers.Set, redmodel.containers.SortedSet,
    redmodel.containers.WindowCounter, redmodel.containers.Consumer)
NO_COMMANDS = frozenset({"in_tx", "key_for", "window_start"})


def _public_methods(cls: type) -> list[str]:
    return sorted(name for name, value in inspect.getmembers(cls, inspect.isfunction)
                  if not name.startswith("_") and not name.endswith("_plan")
                  and name not in NO_COMMANDS)


def _variants(label: str, function: Callable[..., Any]) -> list[str]:
    """``label``, and ``label(flag=value)`` for the non-default value of each bool flag."""
    found = [label]
    for param in inspect.signature(function).parameters.values():
        if isinstance(param.default, bool):
            found.append(f"{label}({param.name}={not param.default})")
    return found


def _variants_called(label: str, function: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> list[str]:
    bound = inspect.signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    return [label, *(
        f"{label}({name}={value})"
        for name, value in bound.arguments.items()
        if isinstance(value, bool)
        and isinstance(inspect.signature(function).parameters[name].default, bool)
        and value != inspect.signature(function).parameters[name].default
    )]


def test_the_containers_scenario_calls_every_public_container_method(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: set[str] = set()
    wanted: set[str] = set()

    def record(owner: Any, name: str, label: str) -> None:
        function = getattr(owner, name)
        wanted.update(_variants(label, function))

        def recording(*args: Any, **kwargs: Any) -> Any:
            called.update(_variants_called(label, function, args, kwargs))
            return function(*args, **kwargs)

        monkeypatch.setattr(owner, name, recording)

    for cls in CONTAINER_API:
        for name in _public_methods(cls):
            record(cls, name, f"{cls.__name__}.{name}")
    record(redmodel.containers, "pop_blocking", "redmodel.containers.pop_blocking")
    error, refused = run_as_user(server, "containers")
    assert error is None, f"{type(error).__name__}: {error}"
    assert refused == []
    missing = sorted(wanted - called)
    assert missing == [], f"the containers scenario never calls: {missing}"


def test_the_rule_keeps_the_user_from_what_redmodel_never_needs(server: RedisServer) -> None:
    run_as_user(server, "transactions")
    with (redis.Redis(port=server.port, username="app", password="pw") as client):
        for forbidden in (client.flushdb, lambda: client.keys("hat:*"),
                          lambda: client.set("user:1", "x"), lambda: client.config_get("*")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()


def test_docs_show_exactly_these_rules() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    shown = dict(re.findall(r"<!-- acl: (.+?) -->\s*```text\n(.*?)```", text, re.S))
    assert set(shown) == set(RULES)
    for feature, block in shown.items():
        granted = re.findall(r"\+(\S+)", block)
        assert granted == list(RULES[feature].all_commands()), feature
