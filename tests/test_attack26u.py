"""Session 26, attack U: stop 25's URL/environment refusals, error texts, WindowCounter keys,
client kinds and the command line's --json, attacked around the inputs
tests/test_attack25a.py and test_fix25g.py already cover. One failing test per finding
(``# F<n>:`` names it), each asserting what the docs promise; the test without a mark covers
a sound area the suite lacked. The URL tests build stores on a URL nothing listens on (a
store made on it never connects); F5, F8-F10, F15 and the sound test use the server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._keys import escape
from redmodel.containers import Set, WindowCounter
from tests.budget import scaled


def _made(url: str) -> dict[str, object] | None:
    """The client's connection arguments for a URL from_url takes; None if refused with a
    ValidationError that shows no piece of S3CRET (any other error propagates)."""
    try:
        store = redmodel.Store.from_url(url)
    except redmodel.ValidationError as e:
        assert "S3CRET" not in str(e), str(e)
        assert "S3CRET" not in repr(e), repr(e)
        return None
    try:
        return dict(store.client.connection_pool.connection_kwargs)
    finally:
        store.close()


# F1: a `?port=` option is passed to redis-py unchecked: `redis://h/0?port=x`, `?port=0`,
# `?port=65536`, `?port=\uff11` (fullwidth) and `?port=1_0` make a client whose port is that text
# (redis-py takes a query port as is when the URL has none in its authority); the first
# command then raises a bare ValueError (`int('x')`: `redmodel registry --url
# 'redis://127.0.0.1/0?port=x'` exits 4, "internal error (a bug in redmodel)", not the
# usage error 2) or connects to port 0 / 99999999999. docs/deploy.md: "Every number read
# from a URL or an environment variable is ASCII digits only ... redmodel refuses them
# rather than guess" and "a bad port or port 0 ... is refused".
@pytest.mark.parametrize("port", ["x", "0", "65536", "\uff11", "1_0", "-1", "99999999999"])
def test_f1_a_port_option_that_is_not_a_port_number_is_refused(port: str) -> None:
    made = _made(f"redis://127.0.0.1/0?port={port}")
    assert made is None, f"?port={port} was taken: the client's port is {made['port']!r}"


# F2: an empty port (`redis://h:/0`, `redis://[::1]:/0`) is taken: redis-py reads it as no
# port and connects to its default port, exactly what docs/deploy.md says port 0 is refused
# for (redis-py reads it as no port). The command line showed it: the registry command
# with such a --url exited 3 (a connection refused at the default port) instead of the
# usage error (exit 2) a bad --url is. (No test here connects: _made only reads the
# client's arguments.)
@pytest.mark.parametrize("url", ["redis://:S3CRET@127.0.0.1:/0", "redis://[::1]:/0",
                                 "rediss://h:/0", "redis://h:/0?db=1"])
def test_f2_an_empty_port_is_refused_not_read_as_the_default_port(url: str) -> None:
    made = _made(url)
    assert made is None, f"{url!r} was taken with no port: {made.get('port')!r}"


# F3: a tab, CR or LF anywhere in a URL is dropped without a word (urllib.parse removes
# them before redis-py reads the URL): `redis://h:1/1\n2` is database 12, `?db=1\t2` is
# database 12, and the password `pa\tSS` is sent as `paSS`. docs/deploy.md: every number
# read from a URL is ASCII digits only, "Python's int() and float() also take ... blanks,
# and redmodel refuses them rather than guess"; and a URL whose text redis-py would read
# otherwise than it is written is refused (the `+`, `%2541` and `#` rules).
@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/1\n2", "redis://127.0.0.1:1/0?db=1\t2",
                                 "redis://:pa\tS3CRET@127.0.0.1:1/0",
                                 "redis://127.0.0.1:1/0?password=pa\rS3CRET",
                                 "redis://127.0.0.1:1\n0/0"])
def test_f3_a_url_holding_a_tab_or_newline_is_refused_not_read_with_it_dropped(
        url: str) -> None:
    made = _made(url)
    assert made is None, (
        f"{url!r} was taken as db={made.get('db')!r} port={made.get('port')!r} "
        f"password intact={made.get('password') in (None, 'pa' + chr(9) + 'S3CRET')}")


# F4: a `?password=` written with its `=` percent-encoded (`password%3D...`, `%70assword%3D`)
# is shown whole in the error that refuses the URL (the item has no `=`, or an earlier
# option is unknown): 'redis://h:1/0?foo=1&password%3DS3CRET'. docs/deploy.md: the error
# "names the URL with its secrets as `***`: ... everything after `password=` (or
# `ssl_password=`, any case, even percent-encoded) to the end of the URL".
@pytest.mark.parametrize("written", ["password%3DS3CRET", "foo=1&password%3DS3CRET",
                                     "foo=1&%70assword%3dS3CRET", "ssl_password%3DS3CRET"])
def test_f4_a_percent_encoded_password_equals_is_masked(written: str) -> None:
    with pytest.raises(redmodel.ValidationError) as e:
        redmodel.Store.from_url(f"redis://127.0.0.1:1/0?{written}")
    assert "S3CRET" not in str(e.value), str(e.value)


# F5: a URL's password (or username) holding the escape of a byte that is not UTF-8
# (`%FF`) is taken and sent as U+FFFD's bytes (EF BF BD), not the byte written: the login
# fails with a wrong password. docs/deploy.md sends REDIS_PASSWORD "as the variable's own
# bytes, UTF-8 or not" and refuses a URL it would send otherwise than written; the
# password the URL says is the byte 0xFF: sent as such, or refused before a client.
@pytest.mark.parametrize("part", ["authority", "option"])
def test_f5_a_password_escape_of_a_non_utf8_byte_is_that_byte_or_refused(
        redis_url: str, redis_client: redis.Redis, part: str) -> None:
    redis_client.execute_command("ACL", "SETUSER", "atk26u", "on", b">S3\xffCRET", "~*",
                                 "+@all")
    host = redis_url.split("://", 1)[1].split("/", 1)[0]
    url = {"authority": f"redis://atk26u:S3%FFCRET@{host}/0",
           "option": f"redis://{host}/0?username=atk26u&password=S3%FFCRET"}[part]
    try:
        assert redis.Redis.from_url(redis_url, username="atk26u",       # the password
                                    password=b"S3\xffCRET").ping()     # set works
        try:
            store = redmodel.Store.from_url(url)
        except redmodel.ValidationError as e:
            assert "S3" not in str(e).replace("S3CRET", "")
            return
        try:
            assert store.client.ping()        # the password written: the login succeeds
        finally:
            store.close()
    finally:
        redis_client.execute_command("ACL", "DELUSER", "atk26u")


# F6: a port out of range or not in ASCII digits in the authority (`h:65536`, `h:+1`,
# `h: 1`, `h:\uff11`) is refused with "it does not parse: a password holding '/', '?', '#' or '@'
# must be percent-encoded", which sends the user to their password for a port mistake.
# docs/deploy.md: "The error says what is wrong in redmodel's own words" ("a bad port or
# port 0" is refused; port 0's error does name the port).
@pytest.mark.parametrize("port", ["65536", "+1", " 1", "\uff11", "99999999999"])
def test_f6_a_bad_port_is_refused_naming_the_port(port: str) -> None:
    with pytest.raises(redmodel.ValidationError) as e:
        redmodel.Store.from_url(f"redis://:S3CRET@127.0.0.1:{port}/0")
    assert "S3CRET" not in str(e.value)
    assert "port" in str(e.value), str(e.value)


# F7: an option given twice is taken with its first value, the second dropped without a
# word: `?password=A&password=B` logs in with A, `?db=1&db=2` is database 1. redis-py reads
# only the first of a repeated query item; docs/deploy.md refuses every other URL item
# redis-py drops ("an item without `=` (redis-py drops it)", "an option with an empty value
# (`?db=`: redis-py drops it)", "any `#`: redis-py drops what follows it").
@pytest.mark.parametrize("query", ["db=1&db=2", "password=S3CRETa&password=S3CRETb",
                                   "db=1&socket_timeout=2&db=1",
                                   "client_name=a&client_name=b"])
def test_f7_an_option_given_twice_is_refused(query: str) -> None:
    made = _made(f"redis://127.0.0.1:1/0?{query}")
    assert made is None, f"?{query} was taken as db={made.get('db')!r}"


def _first_use(cls: type, url: str, **kwargs: object) -> BaseException | None:
    """The error of from_url(url, **kwargs), else of the made store's first save."""
    try:
        store = cls.from_url(url, **kwargs)
    except Exception as e:
        return e
    try:
        if cls is redmodel.Store:
            store.save(_Obj(id="a"))
        else:
            asyncio.run(_save_async(store))
    except Exception as e:
        return e
    finally:
        if cls is redmodel.Store:
            store.close()
    return None


async def _save_async(store: redmodel.AsyncStore) -> None:
    try:
        await store.save(_Obj(id="a"))
    finally:
        await store.aclose()


@redmodel.model(prefix="atk26uo")
@attrs.define
class _Obj:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


# F8: a keyword password (or username, client_name) holding a lone surrogate is taken by
# from_url, and the store's first command raises a bare UnicodeEncodeError from redis-py's
# AUTH whose repr holds the WHOLE password: UnicodeEncodeError('utf-8', 'S3C\ud800RET', ...).
# docs/deploy.md: "The username, password and certificate paths travel as keyword
# arguments ... no secret appears in repr(store) or in the message of any error redmodel
# raises", "A URL holding a lone surrogate ... is refused too", and the standard: every
# exception leaving redmodel is a redmodel or redis-py error.
@pytest.mark.parametrize("cls", [redmodel.Store, redmodel.AsyncStore])
@pytest.mark.parametrize("kwargs", [{"password": "S3C\ud800RET"},
                                    {"username": "S3C\udc80RET", "password": "S3CRETpw"},
                                    {"password": "S3CRETpw", "client_name": "cn\udfff"}])
def test_f8_a_lone_surrogate_in_a_keyword_secret_is_refused_without_showing_it(
        redis_url: str, cls: type, kwargs: dict[str, str]) -> None:
    error = _first_use(cls, redis_url, **kwargs)
    assert isinstance(error, (redmodel.RedmodelError, redis.RedisError)), repr(error)
    assert "S3C" not in str(error) and "S3C" not in repr(error), repr(error)
    assert "S3C" not in "".join(map(str, error.args))


# F9: a keyword argument no redis-py connection takes (`ssl_password=` on a redis:// URL,
# a misspelt `socket_timout=`) is taken by from_url and fails at the store's first command
# with a bare TypeError ("AbstractConnection.__init__() got an unexpected keyword
# argument"). docs/deploy.md refuses the same option in a URL ("an option the scheme's
# connection class does not take (`redis://...?ssl=true` ...; a misspelt option)") before
# any client is made; docs/failures.md: "No builtin ... leaves redmodel: every exception is
# a redmodel error or a redis-py error".
@pytest.mark.parametrize("cls", [redmodel.Store, redmodel.AsyncStore])
@pytest.mark.parametrize("kwargs", [{"ssl_password": "x"}, {"socket_timout": 1}])
def test_f9_a_keyword_no_connection_takes_is_a_validation_error(
        redis_url: str, cls: type, kwargs: dict[str, object]) -> None:
    error = _first_use(cls, redis_url, **kwargs)
    assert isinstance(error, redmodel.ValidationError), repr(error)
    assert next(iter(kwargs)) in str(error)


# F10: WindowCounter.incr over a key that holds something else (a hash another program
# wrote, a string that is not an integer) raises (INCRBY fails inside the MULTI) but its
# PEXPIRE still runs: the raise leaves the foreign key with an expiry, and Redis deletes
# that data when the window ends. docs/failures.md: a `ServerError` means "the server
# refused a command (WRONGTYPE, ...)", and the project's standard: a failed write leaves
# nothing half-done (a wrong-typed key planted beforehand is refused, not damaged).
@pytest.mark.parametrize("planted", ["hash", "text"])
def test_f10_a_failed_incr_leaves_a_planted_key_without_an_expiry(
        store: redmodel.Store, redis_client: redis.Redis, planted: str) -> None:
    counter = WindowCounter(store, "atk26uw", window=60, clock=lambda: 1000.0)
    key = counter.key_for("x")
    if planted == "hash":
        redis_client.hset(key, "owner", "another program")
    else:
        redis_client.set(key, b"not a number")
    try:
        with pytest.raises((redmodel.RedmodelError, redis.RedisError)):
            counter.incr("x")
        assert redis_client.pttl(key) == -1, "the failed incr gave the planted key an expiry"
    finally:
        redis_client.delete(key)
        counter.forget()


# F11: REDIS_ENDPOINT holding an IPv6 address with a numeric zone (`fe80::1%12`, the
# interface index Windows writes; `%41`) is pasted into the URL as is and then
# percent-decoded by redis-py: the client's host is `fe80::1\x12` (`fe80::1A`), another
# address than the one set. docs/deploy.md: REDIS_ENDPOINT is a "host name or IP address
# ... anything else ... is refused"; an IP address it takes must be the one connected to.
@pytest.mark.parametrize("endpoint", ["fe80::1%12", "fe80::1%41", "[fe80::1%2541]:7000"])
def test_f11_an_ipv6_endpoint_with_a_zone_is_that_address_or_refused(
        monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in [n for n in os.environ if n.startswith("REDIS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REDIS_ENDPOINT", endpoint)
    try:
        store = redmodel.Store.from_env()
    except redmodel.ValidationError as e:
        assert "REDIS_ENDPOINT" in str(e)
        return
    try:
        host = store.client.connection_pool.connection_kwargs["host"]
        meant = endpoint.split("]", maxsplit=1)[0].lstrip("[")
        assert host == meant, f"{endpoint!r} connects to {host!r}"
    finally:
        store.close()


# F12: a URL that is only its scheme (`redis://`, `rediss://`, `unix://`, say a REDIS_URL
# cut short by a deploy template) raises a bare IndexError ("list index out of range")
# from from_url; `redmodel registry --url unix://` exits 4, "internal error (a bug in
# redmodel)". docs/deploy.md: a URL redis-py cannot use raises `redmodel.ValidationError`
# before any client is made, and the command line reports it as a usage error (exit 2);
# docs/failures.md: no builtin exception leaves redmodel.
@pytest.mark.parametrize("cls", [redmodel.Store, redmodel.AsyncStore])
@pytest.mark.parametrize("url", ["redis://", "rediss://", "unix://"])
def test_f12_a_url_of_only_a_scheme_is_a_validation_error(cls: type, url: str) -> None:
    with pytest.raises(redmodel.ValidationError):
        cls.from_url(url)


# F13: `unix://run/redis.sock` (a relative socket path written after `//`) is taken and
# connects to `/redis.sock`: redis-py drops the authority (`run`) of a unix:// URL
# without a word. docs/deploy.md refuses every part of a URL redis-py drops ("an item
# without `=` (redis-py drops it)", "an option with an empty value ... redis-py drops it",
# "any `#`: redis-py drops what follows it"); the socket the URL names is `run/redis.sock`.
@pytest.mark.parametrize("url", ["unix://run/redis.sock", "unix://./redis.sock",
                                 "unix://h:5/tmp/redis.sock"])
def test_f13_a_unix_url_whose_host_part_would_be_dropped_is_refused(url: str) -> None:
    made = _made(url)
    assert made is None, f"{url!r} was taken as the socket {made.get('path')!r}"


# F14: with `--json`, a usage error click finds (a bad option value `--timeout 0`, an
# unknown option) leaves stdout empty: no JSON document, and stderr gets click's
# multi-line "Usage: ... Error: ..." instead of the one `redmodel: error:` line
# (redmodel/cli/_app.py:run, the `click.ClickException` branch skips `_report`).
# docs/cli.md: "`--json` | one JSON document on stdout instead of text, for scripts";
# "a `--json` output [is] one JSON document"; errors "with `--json` stdout also gets
# {"ok": false, "exit_code": ..., "error": "..."}".
@pytest.mark.parametrize("args", [["registry", "--json", "--timeout", "0"],
                                  ["registry", "--json", "--no-such-option"],
                                  ["verify", "--timeout", "x", "--json", "-m", "tests"]])
def test_f14_a_usage_error_under_json_is_one_json_document(
        capfd: pytest.CaptureFixture[str], args: list[str]) -> None:
    from redmodel.cli._app import run  # noqa: PLC0415

    code = run(args)
    out = capfd.readouterr().out
    assert code == 2
    assert json.loads(out) == {"ok": False, "exit_code": 2, "error": json.loads(out)["error"]}


@redmodel.model(prefix="atk26uu")
@attrs.define
class _Uniq:
    email: str = redmodel.field(unique=True, default="x")
    id: str = redmodel.key_field(generated=False)


# F15: an import file whose two lines (two ids) share a unique value passes `--dry-run`
# (exit 0, "ok": true, no bad line), while the import itself refuses it as a whole (exit 1,
# "two objects in one save_many share the unique email", no line named): save_many's
# up-front check refuses the pair, the per-line check does not. docs/cli.md, import:
# "each object is checked by the very function a `save_many` runs before its first write
# ... If any line is bad, nothing is written and the bad lines are listed by number
# (exit 1); `--dry-run` runs exactly this check".
def test_f15_dry_run_agrees_with_the_import_on_a_file_sharing_a_unique_value(
        redis_url: str, redis_client: redis.Redis, capfd: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    from redmodel.cli._app import run  # noqa: PLC0415

    model = "tests.test_attack26u:_Uniq"
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"v": 1, "model": model, "id": ident, "pttl": None,
                                        "data": {"email": "same@x"}}) + "\n"
                            for ident in ("a", "b")), encoding="utf-8")
    args = ["import", "--json", "--url", redis_url, "-m", model, "-i", str(path)]
    try:
        dry = run([*args, "--dry-run"])
        dry_out = json.loads(capfd.readouterr().out)
        real = run(args)
        real_out = json.loads(capfd.readouterr().out)
        assert redis_client.exists("atk26uu:a", "atk26uu:b") == 0   # nothing written
        assert (dry, dry_out.get("bad_lines")) == (real, real_out.get("bad_lines")), (
            dry_out, real_out)
    finally:
        redis_client.delete("atk26uu:a", "atk26uu:b")


# ---- sound: every key a counter writes is refused to a container ---------------------


@settings(max_examples=scaled(30), deadline=None)
@given(window=st.sampled_from([1, 7, 60, 3600, 10**11]),
       now=st.sampled_from([-1.0, -0.5, 0.0, 59.999, 1000.0, 1e12, 1e18]),
       subject=st.sampled_from([("x",), ("x", "y"), ("x:y",), ("%3A",), ("a", "b", "c")]))
def test_every_key_a_counter_writes_is_refused_to_a_container(
        store: redmodel.Store, window: int, now: float, subject: tuple[str, ...]) -> None:
    """Any window, any instant (negative, at a boundary, beyond 2**53 ms): the container
    (prefix, subject's key, start+window) has the counter's key and is refused while the
    counter atk26uc exists (docs/containers.md: "in either order")."""
    counter = WindowCounter(store, "atk26uc", window=window, clock=lambda: now)
    try:
        counter.get(subject)
        key = counter.key_for(subject)
        start_window = key.rsplit(":", 1)[1]
        subject_key = ":".join(escape(part) for part in subject)
        container = Set(store, ("atk26uc", subject_key, start_window), int)
        assert container.key == key, (container.key, key)
        with pytest.raises(redmodel.SchemaConflictError, match="WindowCounter"):
            container.add(1)
    finally:
        counter.forget()

