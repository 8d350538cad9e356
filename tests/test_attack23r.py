"""Session 23, re-attack (R) of the session's fixes: one failing test per finding (``# F<n>:``
names it), each asserting what the docs promise."""

from __future__ import annotations

import contextlib
import enum
import os

import attrs
import pytest
import redis

import redmodel
from redmodel.testing import RedisServer
from tests.faults import proxied_store
from tests.test_cli import redmodel_cli


def _declare(tp: object, **option: object) -> type:
    body = {"__annotations__": {"kind": tp, "id": str},
            "kind": redmodel.field(**option), "id": redmodel.key_field(generated=False)}
    return redmodel.model(prefix="atk23r")(attrs.define(type("Tagged", (), body)))


# F1: an enum with a value that is not storable text (a lone surrogate) escapes the
# declaration check as a bare UnicodeEncodeError, not ModelDefinitionError.
@pytest.mark.parametrize("option", [{}, {"index": True}, {"unique": True}])
def test_f1_enum_with_a_surrogate_value_is_a_model_definition_error(
        option: dict[str, object]) -> None:
    """The fix of attack 23B F5 refuses at declaration an enum redmodel cannot store (its
    members' stored texts); a member whose value is a lone surrogate cannot be stored as
    UTF-8 either, and must be refused the same way (a redmodel error naming the enum),
    never a bare UnicodeEncodeError out of the decorator."""
    kind = enum.Enum("Kind", {"A": "\ud800", "B": "b"})  # type: ignore[misc]
    with pytest.raises(redmodel.ModelDefinitionError, match="Kind"):
        _declare(kind, **option)
    with pytest.raises(redmodel.ModelDefinitionError, match="Kind"):
        _declare(list[kind])  # type: ignore[valid-type]


# F2: a URL whose query asks for decode_responses raises a bare ValueError, not the
# ValidationError with the password masked that every unusable URL gets.
def test_f2_url_with_decode_responses_is_a_validation_error() -> None:
    """docs/deploy.md: "in `from_url` and `from_env`, a URL redis-py cannot use (... a bad
    query value ...) raises `redmodel.ValidationError` ... the error names the URL with its
    password as `***`, before any client is made"; the common rule: every exception leaving
    redmodel is a redmodel error. `?decode_responses=true` is a URL redmodel cannot use."""
    url = "redis://u:topsecret@127.0.0.1:1/0?decode_responses=true"
    with pytest.raises(redmodel.ValidationError) as e:
        redmodel.Store.from_url(url)
    assert "topsecret" not in str(e.value) and "***" in str(e.value)


# F3: `redis://...?ssl=true` (or any query option redis-py's plain connection does not take)
# is accepted by from_url; the first call then fails with a bare TypeError from deep in
# redis-py, and the user who wrote ssl=true never gets the TLS he asked for.
@pytest.mark.parametrize("query", ["ssl=true", "ssl_cert_reqs=required", "ssl=maybe"])
def test_f3_url_query_a_plain_connection_cannot_take_is_refused_up_front(
        redis_url: str, query: str) -> None:
    """docs/deploy.md: a URL redis-py cannot use ("a bad query value") is a ValidationError
    naming the URL with its password masked, "before any client is made"; and "a misspelt
    `REDIS_TLS` never means a plain connection" (the same must hold for a URL asking for TLS
    the wrong way). Today: from_url accepts it and `store.get` raises
    `TypeError: AbstractConnection.__init__() got an unexpected keyword argument 'ssl'`."""
    sep = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{sep}{query}"
    try:
        store = redmodel.Store.from_url(url)
    except redmodel.ValidationError:
        return                                              # the documented refusal
    with pytest.raises((redmodel.RedmodelError, redis.RedisError)):
        store.get(_Plain, "x")
    pytest.fail(f"from_url accepted {query!r} on a plain redis:// URL")


@redmodel.model(prefix="atk23rp")
@attrs.define
class _Plain:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


# F4: a URL query value redis-py parses but cannot use (a NaN, negative or infinite timeout,
# a negative pool size) is accepted by from_url; the first store call then raises a bare
# ValueError/OverflowError out of redis-py's connection code.
@pytest.mark.parametrize("query", ["socket_timeout=nan", "socket_timeout=-1",
                                   "socket_timeout=inf", "socket_connect_timeout=nan",
                                   "max_connections=-1"])
def test_f4_url_query_value_that_cannot_work_is_a_validation_error(
        redis_url: str, query: str) -> None:
    """docs/deploy.md: "in `from_url` and `from_env`, a URL redis-py cannot use (... a bad
    query value ...)" raises `redmodel.ValidationError` naming the URL "before any client is
    made"; the common rule: every exception leaving redmodel is a redmodel or redis-py error.
    Today from_url returns a store and `store.save` raises `ValueError: Invalid value NaN`,
    `ValueError: Timeout value out of range`, `OverflowError: timestamp out of range` or
    `ValueError: "max_connections" must be a positive integer`."""
    sep = "&" if "?" in redis_url else "?"
    try:
        store = redmodel.Store.from_url(f"{redis_url}{sep}{query}")
    except redmodel.ValidationError:
        return                                              # the documented refusal
    with contextlib.suppress(redmodel.RedmodelError, redis.RedisError):
        store.save(_Plain(id="x"))                          # a redmodel/redis-py error at use
    store.client.close()


@redmodel.model(prefix="atk23rc")
@attrs.define
class _Counter:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


# F5: a connection lost between an indexed increment's "needs keys" answer and its resend
# leaves the pin (documented: ignored after 2 s), but every other client's increment of the
# field then fails within ~0.25 s with a ConflictError claiming "other clients wrote it
# between each of 8 tries": the 5,000 pinned rounds are spent long before the pin's 2 s.
def test_f5_a_dead_pin_holder_makes_other_increments_fail_not_wait(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """docs/queries.md ("Concurrent increments"): a pin is "ignored after 2 s (by the
    server's clock) when its client died between the two round trips"; other increments
    "answer 'pinned', write nothing and are sent again at once". The pin is meant to delay
    others, not to fail them: here nobody wrote the field, the dead holder's increment never
    ran (its resend was dropped before the server saw it), yet a second store's plain
    `incr` raises ConflictError whose message blames concurrent writers, well before the
    pin's 2 s are up; so does the first client's own retry after its OutcomeUnknownError
    (the documented way to settle an unknown outcome is to read and call again)."""
    with proxied_store(redis_server) as (proxy, store):
        other = redmodel.Store.from_url(redis_server.url)
        store.save(_Counter(id="c", n=5))
        assert other.get(_Counter, "c") == _Counter(id="c", n=5)
        scripts: list[int] = []

        def second(argv: list[bytes]) -> bool:      # the resend naming the keys it needs
            scripts.append(len(argv))
            return len(scripts) == 2

        proxy.drop_request("EVALSHA", when=second)
        with pytest.raises(redmodel.OutcomeUnknownError):
            store.incr(_Counter, "c", "n", 7)
        assert redis_client.hget("atk23rc:c", "n") == b"5"     # the resend never ran
        assert other.incr(_Counter, "c", "n", 1) == 6          # waits out the pin, lands
        assert store.incr(_Counter, "c", "n", 1) == 7
        assert other.verify(_Counter) == []
        store.client.close()
        other.client.close()


class _Perm(enum.IntFlag):
    R = 1
    W = 2


# F6: a Flag/IntFlag enum is accepted at declaration, but a combined member (R|W) or the
# empty one (0), ordinary values of such an enum, is either refused at save with a bare
# KeyError (hash layout, its index and unique claims) or, worse, written and then unreadable
# (a DecodeError on every get: flat layout, blob layout, lists, dict keys, codec fields).
@pytest.mark.parametrize(("layout", "tp", "value"), [
    ("hash", _Perm, _Perm.R | _Perm.W),
    ("hash", _Perm, _Perm(0)),
    ("hash", list[_Perm], [_Perm.R | _Perm.W]),
    ("hash", dict[_Perm, int], {_Perm.R | _Perm.W: 1}),
    ("flat", _Perm, _Perm.R | _Perm.W),
    ("blob", _Perm, _Perm.R | _Perm.W),
])
def test_f6_flag_enum_values_round_trip_or_are_refused_up_front(
        store: redmodel.Store, layout: str, tp: object, value: object) -> None:
    """docs/models.md (the type table): an `Enum` "(str or int values)" is stored as "the
    member's value as text", and an enum that could not round-trip is "refused at
    declaration with ModelDefinitionError"; the common rules: values round-trip exactly or
    are refused as documented, bad input is refused before the first write with a redmodel
    error. `_Perm.R | _Perm.W` is a member of `_Perm` (isinstance holds, `_Perm(3)` builds
    it) but not one of those iteration lists, so it has no stored text."""
    body = {"__annotations__": {"x": tp, "id": str}, "x": redmodel.field(),
            "id": redmodel.key_field(generated=False)}
    codec = {"codec": "json"} if layout == "blob" else {}
    try:
        model = redmodel.model(prefix=f"atk23rf{layout}", layout=layout, **codec)(
            attrs.define(type("Flags", (), body)))
    except redmodel.ModelDefinitionError:
        return                                              # refused at declaration: fine
    try:
        store.save(model(x=value, id="1"))
    except redmodel.ValidationError:
        assert store.get(model, "1") is None                # refused before any write: fine
        return
    back = store.get(model, "1")
    assert back is not None and back.x == value


# F7: the CLI reports a --url whose query redmodel cannot use (F2, F3) as exit 4 "internal
# error (a bug in redmodel)" with a traceback, not as the usage error (exit 2) it is.
@pytest.mark.parametrize("query", ["ssl=true", "decode_responses=true"])
def test_f7_cli_url_with_unusable_query_is_a_usage_error(query: str) -> None:
    """docs/cli.md "Exit codes": 2 is "usage: a bad option (a `--url` or `REDIS_*` variable
    that does not parse, named with its password masked)"; 4 is "a bug in redmodel". Nothing
    listens on port 1: the URL is refused before any connection or it is not."""
    done = redmodel_cli("inspect", "--models", "examples.hatshop:Hat",
                        "--url", f"redis://u:topsecret@127.0.0.1:1/0?{query}", keys=None)
    assert "topsecret" not in done.stdout + done.stderr
    assert done.returncode == 2, done.stderr[-300:]


# F8: a password holding an unencoded "/", "?" or "#" (an Azure access key is base64 and
# holds "/" and "+") is shown in plaintext in the ValidationError of a malformed URL: the
# redaction takes the authority to end at the first "/", "?" or "#", so it finds no "@".
# So is a password given as redis-py's `?password=` query option.
@pytest.mark.parametrize("url", [
    "redis://u:Ab3/s3cretKey+x=@cache.example.net:6380x/0",        # a typo in the port
    "rediss://:Ab3/s3cretKey+x=@cache.example.net:notaport/0",
    "redis://u:Ab3?s3cretKey@cache.example.net:6380/zero",
    "redis://u:Ab3#s3cretKey@[::1/0",
    "http://u:Ab3/s3cretKey@cache.example.net/0",
    "redis://cache.example.net:6380x/0?password=s3cretKey",         # redis-py's password=
    "redis://cache.example.net:6380/0?password=s3cretKey&db=zero",
])
def test_f8_malformed_url_never_shows_a_password_holding_a_slash(
        clean_env: pytest.MonkeyPatch, url: str) -> None:
    """docs/deploy.md: a URL redis-py cannot use raises ValidationError and "the error names
    the URL with its password as `***`"; "no secret appears ... in the message of any error
    redmodel raises". Today the message holds 's3cretKey' (and, for a path, redis-py's
    detail repeats it: "the database 's3cretKey@...' is not a number")."""
    with pytest.raises(redmodel.ValidationError) as e:
        redmodel.Store.from_url(url)
    assert "s3cretKey" not in str(e.value)
    clean_env.setenv("REDIS_URL", url)
    with pytest.raises(redmodel.ValidationError) as e:
        redmodel.Store.from_env()
    assert "s3cretKey" not in str(e.value)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("REDIS_"):
            monkeypatch.delenv(name)
    return monkeypatch
