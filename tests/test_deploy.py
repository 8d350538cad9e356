"""Deployment shapes against real throwaway servers (no mocks, never port 6379): TLS with a
throwaway CA and client certificates, password auth, ACL users limited to a key prefix,
configuration from the environment, and a cluster chosen by ``REDIS_CLUSTER=1``.

Every server started here is stopped here; the plugin's servers (``tls_redis_server``,
``redis_server``, ``redis_cluster``) are the plugin's to stop. See docs/deploy.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.retry import Retry

import redmodel
from redmodel._stores._config import redact_url
from redmodel.testing import SERVER_ENV_VAR, RedisClusterServer, RedisServer, find_server_binary
from tests.acl import RULES as ACL_RULES
from tests.budget import scaled

PASSWORD = "s3cret"
SHOP_PASSWORD = "pw"

# The minimal ACL rule for hash models and transactions under one prefix: tests/acl.py
# (verified feature by feature in tests/test_acl.py; docs/deploy.md shows it).
MINIMAL_RULE = ("on", f">{SHOP_PASSWORD}", "~hat:*", "resetchannels", "-@all",
                *(f"+{c}" for c in ACL_RULES["transactions"].all_commands()))
# The same by categories (also works): hash commands, key commands, scripts, MULTI/WATCH,
# minus what is dangerous (FLUSHDB, KEYS, ...).
CATEGORY_RULE = ("on", f">{SHOP_PASSWORD}", "~hat:*", "resetchannels", "+@hash",
                 "+@keyspace", "+@scripting", "+@transaction", "-@dangerous")
# The broad rule works too, but grants every command not marked dangerous.
BROAD_RULE = ("on", f">{SHOP_PASSWORD}", "~hat:*", "resetchannels", "+@all", "-@dangerous")
RULES = {"minimal": MINIMAL_RULE, "categories": CATEGORY_RULE, "broad": BROAD_RULE}


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str
    price: float
    style: str = "fitted"
    quantity: int = 0
    npurchased: int = 0
    note: str | None = None
    id: str = redmodel.key_field()


@redmodel.model(prefix="user")
@attrs.define
class User:
    name: str
    id: str = redmodel.key_field()


def no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No REDIS_* variable from the outside (REDIS_URL above all) leaks into from_env."""
    for name in list(os.environ):
        if name.startswith("REDIS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def binary(config: pytest.Config) -> str:
    """The binary the plugin's fixtures use (``--redmodel-server`` / $REDMODEL_SERVER)."""
    name = config.getoption("--redmodel-server", default=None) or os.environ.get(SERVER_ENV_VAR)
    return find_server_binary(name or None)


def roundtrip(store: redmodel.Store) -> Hat:
    hat = Hat("black", 49.99, quantity=3)
    key = store.save(hat)
    assert key == f"hat:{hat.id}"
    assert store.get(Hat, hat.id) == hat
    return hat


# ---- TLS ------------------------------------------------------------------------------------


def test_tls_with_the_ca_file(tls_redis_server: RedisServer) -> None:
    server = tls_redis_server
    assert server.url.startswith("rediss://")
    with redmodel.Store.from_url(server.url, ssl_ca_certs=server.ca_file) as store:
        hat = roundtrip(store)
        assert store.delete(Hat, hat.id)


def test_tls_with_a_client_certificate(tls_redis_server: RedisServer) -> None:
    server = tls_redis_server
    with redmodel.Store.from_url(server.url, ssl_ca_certs=server.ca_file,
                                 ssl_certfile=server.client_cert_file,
                                 ssl_keyfile=server.client_key_file) as store:
        hat = roundtrip(store)
        assert store.delete(Hat, hat.id)


def test_tls_from_env_endpoint_port_tls_ca_file(
    tls_redis_server: RedisServer, clean_env: pytest.MonkeyPatch
) -> None:
    server = tls_redis_server
    clean_env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    clean_env.setenv("REDIS_PORT", str(server.port))
    clean_env.setenv("REDIS_TLS", "1")
    clean_env.setenv("REDIS_CA_FILE", server.ca_file)
    with redmodel.Store.from_env() as store:
        assert type(store.client.connection_pool.get_connection()).__name__ == "SSLConnection"
        hat = roundtrip(store)
        assert store.delete(Hat, hat.id)


def test_tls_from_env_with_a_client_certificate(
    tls_redis_server: RedisServer, clean_env: pytest.MonkeyPatch
) -> None:
    server = tls_redis_server
    clean_env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    clean_env.setenv("REDIS_PORT", str(server.port))
    clean_env.setenv("REDIS_CA_FILE", server.ca_file)  # a CA file alone turns TLS on
    clean_env.setenv("REDIS_CERT_FILE", server.client_cert_file)
    clean_env.setenv("REDIS_KEY_FILE", server.client_key_file)
    with redmodel.Store.from_env() as store:
        hat = roundtrip(store)
        assert store.delete(Hat, hat.id)


def test_async_store_over_tls(tls_redis_server: RedisServer) -> None:
    server = tls_redis_server

    async def main() -> None:
        async with redmodel.AsyncStore.from_url(server.url, ssl_ca_certs=server.ca_file) as st:
            hat = Hat("maroon", 59.99, quantity=5)
            await st.save(hat)
            assert await st.get(Hat, hat.id) == hat
            assert await st.incr(Hat, hat.id, "quantity", -1) == 4
            assert hat.id in [h.id async for h in st.scan(Hat)]
            assert await st.delete(Hat, hat.id)

    asyncio.run(main())


def test_plaintext_client_on_the_tls_port_fails_fast(tls_redis_server: RedisServer) -> None:
    plain = f"redis://127.0.0.1:{tls_redis_server.port}"
    started = time.monotonic()
    with redmodel.Store.from_url(plain, socket_connect_timeout=2, socket_timeout=2,
                                 retry=no_retry()) as store, \
            pytest.raises(redis.ConnectionError):
        store.get(Hat, "anything")
    assert time.monotonic() - started < 5, "failed, but only after the timeouts: a hang"


def test_tls_without_the_ca_file_fails_certificate_verification(
    tls_redis_server: RedisServer
) -> None:
    with redmodel.Store.from_url(tls_redis_server.url, socket_connect_timeout=2,
                                 socket_timeout=2, retry=no_retry()) as store, \
            pytest.raises(redis.ConnectionError, match=r"(?i)certificate"):
        store.get(Hat, "anything")


# ---- password -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    with RedisServer(binary(pytestconfig), password=PASSWORD) as server:
        yield server


@pytest.fixture
def password_admin(password_server: RedisServer) -> Iterator[redis.Redis]:
    client = password_server.client()
    client.flushall()
    yield client
    client.close()


def plain_address(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}"


def password_stores(server: RedisServer, env: pytest.MonkeyPatch) -> list[redmodel.Store]:
    """The three ways to hand over the password: in the URL, as password=, by REDIS_PASSWORD."""
    env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    env.setenv("REDIS_PORT", str(server.port))
    env.setenv("REDIS_PASSWORD", PASSWORD)
    return [
        redmodel.Store.from_url(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"),
        redmodel.Store.from_url(plain_address(server), password=PASSWORD),
        redmodel.Store.from_env(),
    ]


def test_password_by_url_by_argument_and_by_env(
    password_server: RedisServer, password_admin: redis.Redis, clean_env: pytest.MonkeyPatch
) -> None:
    for store in password_stores(password_server, clean_env):
        with store:
            hat = roundtrip(store)
            assert password_admin.exists(f"hat:{hat.id}") == 1


def test_no_password_or_a_wrong_one_raises_authentication_error(
    password_server: RedisServer, clean_env: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{password_server.port}"
    with redmodel.Store.from_url(f"redis://:wrong@{address}", retry=no_retry()) as store, \
            pytest.raises(AuthenticationError) as wrong_url:
        store.get(Hat, "x")
    with redmodel.Store.from_url(f"redis://{address}", password="wrong",
                                 retry=no_retry()) as store, \
            pytest.raises(AuthenticationError):
        store.save(Hat("black", 1.0))
    clean_env.setenv("REDIS_URL", f"redis://{address}")
    clean_env.setenv("REDIS_PASSWORD", "wrong")
    with redmodel.Store.from_env(retry=no_retry()) as store, \
            pytest.raises(AuthenticationError):
        store.exists(Hat, "x")
    with redmodel.Store.from_url(f"redis://{address}", retry=no_retry()) as store, \
            pytest.raises(AuthenticationError):  # none at all: NOAUTH
        store.get(Hat, "x")
    assert PASSWORD not in str(wrong_url.value)


def test_the_password_never_shows_in_repr_str_or_redmodel_errors(
    password_server: RedisServer, password_admin: redis.Redis, clean_env: pytest.MonkeyPatch
) -> None:
    for store in password_stores(password_server, clean_env):
        with store:
            assert PASSWORD not in repr(store)
            assert PASSWORD not in str(store)
            assert PASSWORD not in repr(store.client)
            messages: list[Exception] = []
            with pytest.raises(redmodel.ValidationError) as invalid:
                store.save(Hat("black", "not a price"))  # type: ignore[arg-type]
            messages.append(invalid.value)
            with pytest.raises(redmodel.ValidationError) as not_numeric:
                store.incr(Hat, "x", "color")
            messages.append(not_numeric.value)
            password_admin.hset("hat:broken", mapping={"color": "red", "price": "cheap"})
            with pytest.raises(redmodel.DecodeError) as broken:
                store.get(Hat, "broken")
            messages.append(broken.value)
            with pytest.raises(redmodel.NotFoundError) as missing:
                store.incr(Hat, "missing", "quantity")
            messages.append(missing.value)
            for error in messages:
                assert isinstance(error, redmodel.RedmodelError)
                assert PASSWORD not in str(error)
                assert PASSWORD not in repr(error)


def test_async_store_with_a_password(
    password_server: RedisServer, password_admin: redis.Redis
) -> None:
    async def main() -> None:
        async with redmodel.AsyncStore.from_url(plain_address(password_server),
                                                password=PASSWORD) as store:
            assert PASSWORD not in repr(store)
            hat = Hat("green", 99.99)
            await store.save(hat)
            assert await store.get(Hat, hat.id) == hat

    asyncio.run(main())


# ---- ACL users ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    with RedisServer(binary(pytestconfig)) as server:
        yield server


@pytest.fixture(params=list(RULES))
def acl_admin(request: pytest.FixtureRequest, acl_server: RedisServer) -> Iterator[redis.Redis]:
    """The default user's client; user ``shop`` is (re)created with the rule under test."""
    rule = RULES[request.param]
    client = acl_server.client()
    client.flushall()
    client.acl_deluser("shop")
    reply = client.execute_command("ACL", "SETUSER", "shop", "reset", *rule)  # type: ignore[no-untyped-call]
    assert reply in (b"OK", "OK")
    yield client
    client.close()


def shop_stores(server: RedisServer) -> list[redmodel.Store]:
    return [
        redmodel.Store.from_url(f"redis://shop:{SHOP_PASSWORD}@127.0.0.1:{server.port}",
                                retry=no_retry()),
        redmodel.Store.from_url(f"redis://127.0.0.1:{server.port}", username="shop",
                                password=SHOP_PASSWORD, retry=no_retry()),
    ]


def test_acl_user_works_on_its_prefix(acl_server: RedisServer, acl_admin: redis.Redis) -> None:
    for store in shop_stores(acl_server):
        with store:
            hat = roundtrip(store)
            assert "shop" in {c["user"] for c in acl_admin.client_list()}
            assert store.save(Hat("white", 1.0), ttl=60)                  # EVALSHA + PEXPIRE
            assert store.update(Hat, hat.id, color="white", note=None)   # EVALSHA
            assert store.incr(Hat, hat.id, "quantity", 2) == 5          # HINCRBY
            assert store.incr(Hat, hat.id, "price", 0.5) == 50.49       # HINCRBYFLOAT
            assert store.incr_fields(Hat, hat.id, {"quantity": -1, "npurchased": 1},
                                     floor={"quantity": 0}) == {"quantity": 4, "npurchased": 1}
            assert store.save_many([Hat("green", 2.0) for _ in range(10)]) == 10
            assert store.get_many(Hat, [hat.id, "nope"])[1] is None
            assert store.exists(Hat, hat.id)
            assert store.expire(Hat, hat.id, 100)
            assert store.persist(Hat, hat.id)
            assert store.ttl(Hat, hat.id) is None

            def buy(tx: redmodel.transactions.Transaction, id: str) -> None:
                got = tx.get_or_raise(Hat, id)
                tx.update(Hat, id, quantity=got.quantity - 1)

            store.transaction(buy)(hat.id)                                       # WATCH/MULTI/EXEC
            assert store.get_or_raise(Hat, hat.id).quantity == 3
            assert store.count(Hat) == 12                                # SCAN
            assert len(list(store.scan(Hat))) == 12
            assert store.delete(Hat, hat.id)
            assert store.delete_many(Hat, [h.id for h in store.scan(Hat)]) == 11
        # what is left is the model registry's record of the prefix (under it: ~hat:*)
        assert list(acl_admin.scan_iter()) == [b"hat:%schema"]
        # the rule keeps the user away from what redmodel never needs
        with redis.Redis(port=acl_server.port, username="shop", password=SHOP_PASSWORD) as c:
            for forbidden in (c.flushdb, lambda c=c: c.keys("hat:*")):
                with pytest.raises(NoPermissionError):
                    forbidden()


def test_acl_user_gets_a_permission_error_outside_its_prefix(
    acl_server: RedisServer, acl_admin: redis.Redis
) -> None:
    acl_admin.hset("user:alice", mapping={"name": "alice"})
    for store in shop_stores(acl_server):
        with store:
            with pytest.raises(NoPermissionError, match=r"(?i)permission"):
                store.save(User("bob"))
            with pytest.raises(NoPermissionError):
                store.save_many([User("carol"), User("dave")])
            with pytest.raises(NoPermissionError):
                store.get(User, "alice")
            with pytest.raises(NoPermissionError):
                store.delete(User, "alice")
            with pytest.raises(NoPermissionError):
                store.update(User, "alice", name="mallory")
            # SCAN takes no key argument, so ACL key patterns do not filter it: key NAMES
            # outside the prefix are visible, their contents are not
            with pytest.raises(NoPermissionError):  # its registry record is outside too
                list(store.scan_keys(User))
            unchecked = redmodel.Store(store.client, registry=False)
            assert list(unchecked.scan_keys(User)) == ["user:alice"]
            with pytest.raises(NoPermissionError):
                list(unchecked.scan(User))
            roundtrip(store)                        # the connection is still fine
    assert sorted(acl_admin.scan_iter(match="user:*")) == [b"user:alice"]
    assert acl_admin.hgetall("user:alice") == {b"name": b"alice"}


def test_acl_user_wrong_password(acl_server: RedisServer, acl_admin: redis.Redis) -> None:
    url = f"redis://shop:nope@127.0.0.1:{acl_server.port}"
    with redmodel.Store.from_url(url, retry=no_retry()) as store, \
            pytest.raises(AuthenticationError):
        store.get(Hat, "x")


# ---- configuration from the environment -----------------------------------------------------


def test_redis_url_wins_over_the_parts(
    redis_url: str, redis_client: redis.Redis, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("REDIS_URL", redis_url)
    clean_env.setenv("REDIS_ENDPOINT", "no-such-host.invalid")
    clean_env.setenv("REDIS_PORT", "1")
    clean_env.setenv("REDIS_DB", "5")
    with redmodel.Store.from_env() as store:
        hat = roundtrip(store)
    assert redis_client.exists(f"hat:{hat.id}") == 1  # db 0 of redis_url, not db 5


def test_redis_db_selects_the_database(
    redis_server: RedisServer, redis_client: redis.Redis, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    clean_env.setenv("REDIS_PORT", str(redis_server.port))
    clean_env.setenv("REDIS_DB", "3")
    with redmodel.Store.from_env() as store:
        hat = roundtrip(store)
    assert redis_client.exists(f"hat:{hat.id}") == 0
    with redis_server.client(db=3) as db3:
        assert db3.exists(f"hat:{hat.id}") == 1
        db3.flushdb()


def test_from_url_db_argument(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    with redmodel.Store.from_url(redis_server.url, db=2) as store:
        hat = roundtrip(store)
    with redis_server.client(db=2) as db2:
        assert db2.exists(f"hat:{hat.id}") == 1
        db2.flushdb()


@pytest.mark.parametrize("tail", ["/0", "/4", "?db=0", "/4?db=0"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_from_url_db_argument_wins_over_the_urls_database(
    redis_server: RedisServer, kind: str, tail: str
) -> None:
    url = redis_server.url + tail
    if kind == "sync":
        with redmodel.Store.from_url(url, db=2) as store:
            hat = roundtrip(store)
    else:
        async def main() -> Hat:
            async with redmodel.AsyncStore.from_url(url, db=2) as astore:
                hat = Hat("black", 49.99)
                await astore.save(hat)
                return hat
        hat = asyncio.run(main())
    for db in (0, 4):
        with redis_server.client(db=db) as other:
            assert other.exists(f"hat:{hat.id}") == 0, f"db=2 was ignored for db {db}"
    with redis_server.client(db=2) as db2:
        assert db2.exists(f"hat:{hat.id}") == 1
        db2.flushdb()


@pytest.mark.parametrize(("url", "bare"), [
    ("redis://u:p%40x@h:1/0", "redis://u:p%40x@h:1"),
    ("rediss://h/3?ssl_cert_reqs=none&db=4", "rediss://h?ssl_cert_reqs=none"),
    ("unix:///run/redis.sock?db=2&password=a%26b", "unix:///run/redis.sock?password=a%26b"),
    ("redis://[::1]:5", "redis://[::1]:5"),
])
def test_the_urls_database_is_dropped_and_nothing_else(url: str, bare: str) -> None:
    from redmodel._stores._config import without_db  # noqa: PLC0415

    assert without_db(url) == bare


def test_redis_cluster_env_makes_a_cluster_store(
    redis_cluster: RedisClusterServer, clean_env: pytest.MonkeyPatch
) -> None:
    host, port = redis_cluster.addresses[0]
    clean_env.setenv("REDIS_ENDPOINT", host)
    clean_env.setenv("REDIS_PORT", str(port))
    clean_env.setenv("REDIS_CLUSTER", "1")
    with redmodel.Store.from_env() as store:
        assert store.cluster
        assert len(store.client.get_primaries()) == len(redis_cluster.addresses)
        hats = [Hat("black", float(i)) for i in range(30)]
        assert store.save_many(hats) == 30
        assert store.get_many(Hat, [h.id for h in hats]) == hats
        assert {h.id for h in store.scan(Hat)} >= {h.id for h in hats}
        assert store.delete_many(Hat, [h.id for h in hats]) == 30


def test_async_from_env_cluster(
    redis_cluster: RedisClusterServer, clean_env: pytest.MonkeyPatch
) -> None:
    host, port = redis_cluster.addresses[0]
    clean_env.setenv("REDIS_URL", f"redis://{host}:{port}")
    clean_env.setenv("REDIS_CLUSTER", "yes")

    async def main() -> None:
        async with redmodel.AsyncStore.from_env() as store:
            assert store.cluster
            hat = Hat("maroon", 1.0)
            await store.save(hat)
            assert await store.get(Hat, hat.id) == hat
            assert await store.delete(Hat, hat.id)

    asyncio.run(main())


def test_ipv6_endpoint_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_ENDPOINT", "::1")
    clean_env.setenv("REDIS_PORT", "7000")
    with redmodel.Store.from_env() as store:  # builds the client only: nothing is sent
        kwargs = store.client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"]) == ("::1", 7000)


def test_endpoint_with_port_and_bad_db_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_ENDPOINT", "demo.redis.cache.windows.net:6380")
    clean_env.setenv("REDIS_TLS", "1")
    with redmodel.Store.from_env() as store:  # builds the client only: nothing is sent
        kwargs = store.client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"]) == ("demo.redis.cache.windows.net", 6380)
    clean_env.setenv("REDIS_DB", "x")
    with pytest.raises(redmodel.ValidationError, match="REDIS_DB"):
        redmodel.Store.from_env()


@pytest.mark.parametrize("name", ["TLS", "SSL", "CLUSTER", "EXACTLY_ONCE"])
def test_env_switches_take_exactly_the_documented_words(clean_env: pytest.MonkeyPatch,
                                                        name: str) -> None:
    """docs/deploy.md: a switch is on for 1/true/yes/on, off for 0/false/no/off or empty
    (any case, blanks around ignored); anything else is refused naming the variable, never
    taken as off (REDIS_TLS=enabled must not send the password in plaintext)."""
    clean_env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    clean_env.setenv("REDIS_PASSWORD", PASSWORD)
    for word in ("0", "false", "No", " off ", ""):
        clean_env.setenv(f"REDIS_{name}", word)
        with redmodel.Store.from_env() as store:  # builds the client only: nothing is sent
            kwargs = store.client.connection_pool.connection_kwargs
            assert (kwargs["port"], kwargs.get("ssl", False)) == (6379, False)
            assert not store.exactly_once
    if name in ("TLS", "SSL"):
        for word in ("1", "TRUE", " yes", "on"):
            clean_env.setenv(f"REDIS_{name}", word)
            with redmodel.Store.from_env() as store:
                assert store.client.connection_pool.connection_kwargs["port"] == 6380
    for word in ("enabled", "2", "y", "tls", "1.0", "\u0661"):
        clean_env.setenv(f"REDIS_{name}", word)
        for cls in (redmodel.Store, redmodel.AsyncStore):
            with pytest.raises(redmodel.ValidationError, match=f"REDIS_{name}") as caught:
                cls.from_env()
            assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(("name", "value"), [
    ("PORT", "63 79"), ("PORT", "0"), ("PORT", "65536"), ("PORT", "99999999999"),
    ("PORT", "-1"), ("PORT", "\u00b2"), ("PORT", "\u0661"), ("PORT", "6379x"),
    ("DB", "-1"), ("DB", "\u0661"), ("DB", "0x1"), ("ENDPOINT", "host:port"),
])
def test_env_numbers_are_refused_naming_the_variable(clean_env: pytest.MonkeyPatch,
                                                     name: str, value: str) -> None:
    clean_env.setenv("REDIS_ENDPOINT", "127.0.0.1")
    clean_env.setenv("REDIS_PASSWORD", PASSWORD)
    clean_env.setenv(f"REDIS_{name}", value)
    wanted = f"REDIS_{name}"  # an endpoint's own ":port" is named as the endpoint's
    for cls in (redmodel.Store, redmodel.AsyncStore):
        with pytest.raises(redmodel.ValidationError, match=wanted) as caught:
            cls.from_env()
        assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("url", [
    "http://u:{pw}@127.0.0.1:1/0", "redis://u:{pw}@127.0.0.1:notaport/0",
    "redis://:{pw}@127.0.0.1:99999999/0", "redis://:{pw}@[::1/0", "rediss://:{pw}@h/x",
    "redis://:{pw}@h:7000/1x", "redis://:{pw}@h/0?socket_timeout=soon", "{pw}",
    "redis://:{pw}@h:-1/0",
])
def test_from_url_refuses_a_malformed_url_masking_its_password(url: str) -> None:
    """A URL redis-py cannot use (or whose database path it would silently ignore, using
    database 0) is a ValidationError naming the URL with its password masked, from every
    shell, before any client exists."""
    url = url.format(pw=PASSWORD)
    for make in (redmodel.Store.from_url, redmodel.AsyncStore.from_url,
                 lambda u: redmodel.Store.from_url(u, cluster=True)):
        with pytest.raises(redmodel.ValidationError, match="cannot use the URL") as caught:
            make(url)
        assert PASSWORD not in str(caught.value), caught.value


def test_from_url_and_from_env_take_the_stores_own_options(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``chunk_size`` (like ``registry``) is the store's, not redis-py's: from_url and
    from_env take it as the constructor does, refuse a bad one at once, and never hand it
    to redis-py (whose connection refused it at the first command)."""
    store = redmodel.Store.from_url(redis_server.url, chunk_size=3)
    assert store.chunk_size == 3
    assert store.save_many([Hat(f"c{i}", 1.0, id=f"cs{i}") for i in range(7)]) == 7
    store.close()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    assert redmodel.Store.from_env(chunk_size=2).chunk_size == 2
    assert redmodel.AsyncStore.from_url(redis_server.url, chunk_size=4).chunk_size == 4
    assert redmodel.AsyncStore.from_env(chunk_size=5).chunk_size == 5
    with pytest.raises(redmodel.ValidationError, match="chunk_size"):
        redmodel.Store.from_url(redis_server.url, chunk_size=0)


_NO_SPLIT = st.text(st.characters(blacklist_characters="/?#@:"), max_size=12)


@settings(max_examples=scaled(100))
@given(scheme=st.sampled_from(["redis", "rediss", "unix", "http", ""]), user=_NO_SPLIT,
       password=st.text(st.characters(blacklist_characters="/?#"), min_size=1),
       host=_NO_SPLIT, port=st.one_of(st.just(""), st.text(max_size=8).map(lambda p: ":" + p)
                                      .filter(lambda p: not set(p) & set("/?#@"))),
       tail=st.sampled_from(["", "/0", "/x?db=1", "?a=b#c", "/"]))
def test_redact_url_masks_the_password_of_any_text(scheme: str, user: str, password: str,
                                                    host: str, port: str, tail: str) -> None:
    """Whatever the URL holds (a bad port, a broken IPv6 host, an unknown scheme, an ``@``
    or ``:`` in the password, surrogates), what messages show of it has ``***`` where the
    password was and everything else as written."""
    url = f"{scheme}://{user}:{password}@{host}{port}{tail}"
    assert redact_url(url) == f"{scheme}://{user}:***@{host}{port}{tail}"
    # a password pasted where the URL belongs (it holds no "/", so no "://") is not shown
    assert redact_url(password) == "<text without ://, not shown>"
