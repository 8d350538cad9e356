"""Session 25, attack A: stop 24's merged changes other than the all-ids pages (ids are
bytes, pinned increments back off, flat save_many batched, URL parsing, WindowCounter keys).
One failing test per finding (``# F<n>:`` names it), each asserting what the docs promise;
the tests without a mark are sound areas the suite did not cover."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
import redis.asyncio

import redmodel
from redmodel.containers import WindowCounter
from redmodel.testing import FaultProxy
from tests.test_cli import redmodel_cli

ROOT = Path(__file__).resolve().parent.parent


@redmodel.model(prefix="atk25xb", layout="blob")
@attrs.define
class _Blob:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk25xh")
@attrs.define
class _Hash:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _cli(args: list[str], url: str) -> tuple[int, str]:
    """``redmodel ARGS`` with only REDIS_URL=url (in this process: tests/test_cli.py's
    redmodel_cli): its exit code and what it wrote."""
    done = redmodel_cli(*args, url=url, keys=None)
    return done.returncode, done.stdout + done.stderr


def _line(model: str, ident: str, n: int) -> str:
    return json.dumps({"v": 1, "model": f"tests.test_attack25a:{model}", "id": ident,
                       "pttl": None, "data": {"n": n}}) + "\n"


# F1: `redmodel import` checks a blob model's str id holding U+DC80..U+DCFF only when it
# writes: `--dry-run` says "all 4 lines are good", and the import writes the lines before it
# (one chunk each with --chunk 1) and stops on it with save_many's error: a partial import
# of a file the check passed (redmodel/cli/_lines.py: parse does not ask the layout).
def test_f1_import_refuses_a_blob_id_no_text_codec_holds_before_the_first_write(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    """docs/cli.md, import: "Every line is checked before the first write: ... the id ...
    If any line is bad, nothing is written and the bad lines are listed by number (exit
    1)"; docs/models.md: "saving such a `str` id in a blob model is refused with
    `ValidationError`" (so the database has nothing to say about it). Such a line is what
    `redmodel export` writes for a key another program made (`atk25xb:\\x80`)."""
    path = tmp_path / "dump.jsonl"
    path.write_text("".join(_line("_Blob", f"o{i}", i) for i in range(3))
                    + _line("_Blob", "\udc80", 9), encoding="utf-8")
    rc, out = _cli(["import", "-m", "tests.test_attack25a", "-i", str(path), "--dry-run"],
                   redis_url)
    assert rc == 1 and "4" in out, out                    # line 4 is bad
    rc, out = _cli(["import", "-m", "tests.test_attack25a", "-i", str(path), "--chunk", "1"],
                   redis_url)
    assert rc == 1, out
    assert redis_client.keys("atk25xb:o*") == []          # nothing written


# F2: `redmodel import` of a line whose id holds a lone surrogate no bytes stand for
# ("\ud800", which JSON can carry) crashes: exit 4, "internal error (a bug in redmodel):
# UnicodeEncodeError" and a traceback (redmodel/cli/_lines.py:287, parse encodes the id
# text strictly).
def test_f2_import_lists_a_line_whose_id_no_bytes_stand_for_as_bad(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    """docs/cli.md, import: every line's id is checked before the first write, bad lines
    are listed by number, exit 1; docs/models.md: a `str` id holding any other lone
    surrogate is refused with ValidationError before anything is sent."""
    path = tmp_path / "dump.jsonl"
    path.write_text(_line("_Hash", "ok", 1) + _line("_Hash", "a\ud800", 2), encoding="utf-8")
    for extra in (["--dry-run"], []):
        rc, out = _cli(["import", "-m", "tests.test_attack25a", "-i", str(path), *extra],
                       redis_url)
        assert rc == 1, out
        assert "internal error" not in out and "Traceback" not in out, out
    assert redis_client.keys("atk25xh:*") == []


# F3: two WindowCounters of different prefixes count into one key: the counter "p" with
# the subject ("x", "y") (a tuple subject: "A subject follows the key rules above", and a
# tuple is several key parts) and the counter ("p", "x") with the subject "y" both use
# p:x:y:<start>+60, so each sees the other's events (redmodel/containers: key_for joins a
# tuple subject's parts with ':' like the prefix's own).
def test_f3_two_window_counters_of_different_prefixes_never_share_a_count(
        store: redmodel.Store) -> None:
    """docs/containers.md, WindowCounter: "Each subject and window has one string key";
    "A counter of the *same* prefix and window is the same counter" (so counters of other
    prefixes are other counters); the container registry exists to keep one key from two
    owners (a key inside another's keys is refused, "Keys" and "The container registry")."""
    clock = lambda: 1_000.0  # noqa: E731
    try:
        outer = WindowCounter(store, "atk25w", window=60, clock=clock)
        inner = WindowCounter(store, ("atk25w", "x"), window=60, clock=clock)
    except redmodel.RedmodelError:
        return                                             # refused: sound
    try:
        outer.incr(("x", "y"), 5)
    except redmodel.ValidationError:
        return                                             # a tuple subject refused: sound
    assert inner.get("y") == 0, (outer.key_for(("x", "y")), inner.key_for("y"))


# F4: a `+` in a `?password=` value is read by redis-py's parse_qs as a space: the URL
# redis://host?username=u&password=a+b is accepted and logs in with the password "a b"
# (AuthenticationError for the user whose password is "a+b"; the userinfo form
# redis://u:a+b@host works). redmodel refuses the other characters redis-py reads otherwise
# (`&`, `#`, an item without `=`), but not this one.
def test_f4_a_plus_in_a_password_option_is_the_password_or_refused(
        redis_url: str, redis_client: redis.Redis) -> None:
    """docs/deploy.md: a URL redis-py cannot use is refused, "a password holding ... `&` or
    `#` in a `?password=` option, which must be percent-encoded"; anything else is taken as
    written (the userinfo form takes `a+b` as `a+b`). Redmodel refuses rather than guess."""
    redis_client.execute_command("ACL", "SETUSER", "atk25u", "reset", "on", ">a+b", "~*",
                                 "+@all")
    host = redis_url.split("://", 1)[1]
    try:
        try:
            store = redmodel.Store.from_url(f"redis://{host}?username=atk25u&password=a+b")
        except redmodel.ValidationError as e:
            assert "a+b" not in str(e)
            return
        try:
            assert store.client.ping()
        finally:
            store.close()
    finally:
        redis_client.execute_command("ACL", "DELUSER", "atk25u")


# F5: a URL query option with an empty value is accepted although redis-py drops it
# (parse_qs drops blank values): `?decode_responses=` (docs: "any decode_responses" is
# refused), `?db=` (not "a number from 0 to 2**31-1 in ASCII digits": the /db path is used
# instead), `?socket_timeout=`, `?max_connections=`, `?ssl=` on redis:// (TLS is asked for
# with rediss://). Each is the "item without `=`" case, which redmodel does refuse.
@pytest.mark.parametrize("option", ["decode_responses=", "db=", "socket_timeout=",
                                    "max_connections=", "ssl="])
def test_f5_a_query_option_with_an_empty_value_is_refused(option: str) -> None:
    """docs/deploy.md: refused before any client is made: "an item without `=` (redis-py
    drops it), any `decode_responses`", "a `socket_timeout` ... that is not a number of
    seconds above 0", "a `db` (0 to 2**31-1), `max_connections` ... out of its range",
    "Every number read from a URL ... is ASCII digits only", and `redis://...?ssl=true`."""
    with pytest.raises(redmodel.ValidationError):
        redmodel.Store.from_url(f"redis://localhost:7000/1?{option}").close()


def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REDIS_"):
            monkeypatch.delenv(name)


# F6: REDIS_URL=redis://... with REDIS_CA_FILE (or REDIS_CERT_FILE/KEY_FILE) is accepted by
# from_env, and the first command raises a bare TypeError ("AbstractConnection.__init__()
# got an unexpected keyword argument 'ssl_ca_certs'"): the TLS file is passed to a plain
# redis:// connection (redmodel/_stores/_config.py: the TLS files set kwargs and `tls`,
# but `tls` is used only when no URL is set).
@pytest.mark.parametrize("var", ["REDIS_CA_FILE", "REDIS_CERT_FILE", "REDIS_KEY_FILE"])
def test_f6_a_tls_file_with_a_redis_url_is_tls_or_refused_never_a_bare_type_error(
        redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str) -> None:
    """docs/deploy.md: "`REDIS_URL` ... when set, it wins over every part below except the
    secrets, TLS files and `REDIS_CLUSTER`"; "`REDIS_CA_FILE`, `REDIS_CERT_FILE`,
    `REDIS_KEY_FILE` ... (any of them also turns TLS on)"; a setting redmodel cannot use
    is a ValidationError before any client is made; every exception leaving redmodel is a
    redmodel or redis-py error. (The server here has no TLS: a TLS attempt fails with a
    redis-py ConnectionError, which is fine.)"""
    _clear_env(monkeypatch)
    pem = tmp_path / "file.pem"
    pem.write_text("not a certificate\n")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv(var, str(pem))
    try:
        store = redmodel.Store.from_env(registry=False)
    except redmodel.ValidationError:
        return
    try:
        store.client.ping()
    except (redmodel.RedmodelError, redis.RedisError):
        pass
    except Exception as e:
        pytest.fail(f"bare {type(e).__name__}: {e}")
    else:
        pytest.fail(f"{var} was ignored: a plaintext connection")
    finally:
        store.close()


# F7: REDIS_ENDPOINT is pasted into a URL unescaped, so an endpoint holding credentials
# (a connection string "user:secret@host", as some consoles show it) is misread: "u:PW@h"
# raises "REDIS_PORT must be a port number ... not 'PW@h'" (the secret in the message, and
# the wrong variable named: REDIS_PORT is not set), and "PW@h" logs in with the username
# "PW" (redmodel/_stores/_config.py: env_settings splits the endpoint at ':' and builds
# f"redis://{host}:{port}/{db}").
@pytest.mark.parametrize("endpoint", ["u:SECRETPW@127.0.0.1", "SECRETPW@127.0.0.1"])
def test_f7_an_endpoint_holding_credentials_is_refused_without_showing_them(
        monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """docs/deploy.md: REDIS_ENDPOINT is the "host name"; "The username, password and
    certificate paths travel as keyword arguments, never inside a URL that redmodel
    builds"; a setting that does not parse is a ValidationError naming the variable, with
    no secret in its message."""
    _clear_env(monkeypatch)
    monkeypatch.setenv("REDIS_ENDPOINT", endpoint)
    with pytest.raises(redmodel.ValidationError) as e:
        redmodel.Store.from_env(registry=False).close()
    assert "SECRETPW" not in str(e.value) and "REDIS_ENDPOINT" in str(e.value), str(e.value)


# F8: REDIS_ENDPOINT="host:1" with REDIS_PORT=7000 connects to port 7000: the endpoint's
# own port is dropped without a word (the "name:port" form is taken, undocumented, and
# REDIS_PORT silently wins a conflict); REDIS_ENDPOINT=":7000" (no host) is taken too, with
# host None (redis-py then connects to localhost).
@pytest.mark.parametrize("form", ["conflicting_port", "no_host"])
def test_f8_an_endpoint_that_is_not_a_host_name_is_refused(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    """docs/deploy.md: REDIS_ENDPOINT is the "host name (default `localhost`)", REDIS_PORT
    the port; settings that cannot be used as written are refused ("redmodel refuses them
    rather than guess"), before any client is made."""
    _clear_env(monkeypatch)
    if form == "conflicting_port":
        monkeypatch.setenv("REDIS_ENDPOINT", f"{redis_server.host}:1")
        monkeypatch.setenv("REDIS_PORT", str(redis_server.port))
    else:
        monkeypatch.setenv("REDIS_ENDPOINT", f":{redis_server.port}")
    with pytest.raises(redmodel.ValidationError):
        redmodel.Store.from_env(registry=False).close()


# F9: from_url(..., cluster=True) hands a URL a cluster client cannot use to redis-py: a
# unix:// URL or a /db other than 0 raise redis-py's RedisClusterException (not a
# RedisError) with redis-py's own message, from the client's constructor (the sync one also
# connects there: an unreachable node is the same bare RedisClusterException from
# from_url); the CLI reports `--cluster --url redis://h/3` as exit 3 ("cannot use the
# cluster"), not as a usage error.
@pytest.mark.parametrize("url", ["unix://u:SECRETPW@/tmp/atk25.sock",
                                 "redis://u:SECRETPW@127.0.0.1:7000/3"])
@pytest.mark.parametrize("factory", ["sync", "async"])
def test_f9_a_url_a_cluster_client_cannot_use_is_a_validation_error(
        url: str, factory: str) -> None:
    """docs/deploy.md: "a URL redis-py cannot use ... raises ValidationError ... All this
    before any client is made"; "The error says what is wrong in redmodel's own words
    (never redis-py's message, which may repeat part of the URL)"; `--cluster`: "the URL
    names a node of a Redis Cluster" (docs/cli.md), a URL that does not fit is exit 2."""
    make = redmodel.Store.from_url if factory == "sync" else redmodel.AsyncStore.from_url
    with pytest.raises(redmodel.ValidationError) as e:
        make(url, cluster=True)
    assert "SECRETPW" not in str(e.value)


@redmodel.model(prefix="atk25p")
@attrs.define
class _Plain:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


def _errors_over_an_undecodable_key(store: redmodel.Store,
                                    client: redis.Redis) -> list[BaseException]:
    client.set(b"atk25p:\x80", b"planted")                 # another type at the key
    calls = [lambda: store.save_many([_Plain(id="ok"), _Plain(id="\udc80"),
                                      _Plain(id="\udc81")]),
             lambda: store.incr(_Plain, "\udc80", "n", 1),
             lambda: store.get(_Plain, "\udc80"),
             lambda: store.update(_Plain, "\udc80", n=2)]
    out: list[BaseException] = []
    for call in calls:
        with pytest.raises(redmodel.RedmodelError) as e:
            call()
        out.append(e.value)
    return out


# F10: the text of an error over a key whose id bytes are not UTF-8 is not text: save_many's
# summary lists the keys raw ("2 were written (atk25p:ok, atk25p:\udc81) and 1 were not
# (atk25p:\udc80)") and incr's refusal quotes the key raw ("WRONGTYPE atk25p:\udc80 holds
# a string"): lone surrogates, so str(e).encode() raises UnicodeEncodeError and a
# logging.FileHandler(encoding="utf-8") drops the record ("--- Logging error ---"), while
# the same message's "(keys ['atk25p:\\udc80'])" part shows the key escaped
# (redmodel/_plans/_objects.py: the summary's shown(); the incr refusal's text).
def test_f10_an_error_naming_an_undecodable_key_is_text_and_names_that_key(
        store: redmodel.Store, redis_client: redis.Redis) -> None:
    """docs/models.md: the id part of a key is bytes, a str id stands for them with
    U+DC80..U+DCFF; ATTACK standards: every exception names the key, and formatting an
    error must not raise (the error parts that use repr(), "(keys ['atk25p:\\udc80'])",
    already do this)."""
    for err in _errors_over_an_undecodable_key(store, redis_client):
        text = str(err)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            pytest.fail(f"{type(err).__name__} text is not UTF-8 text: {text!r}")
        assert "\ufffd" not in text, text                  # names that very key


@redmodel.model(prefix="atk25v")
@attrs.define
class _Checked:
    color: str = redmodel.field(index=True, default="c")
    n: int = 0
    id: str = redmodel.key_field(generated=False)


# F11: `redmodel verify --json` (and `inspect --json`, and `registry --json` for a record
# key another program wrote, b"\x80x:%schema") print a key whose bytes are not UTF-8 as
# those raw bytes ("details": ["atk25v:\x81x: cannot be read ..."]): stdout is not UTF-8,
# so it is not a JSON document (json.loads of the bytes raises UnicodeDecodeError).
# `redmodel export` writes the same id as the JSON escape "\udc81x" (the text outputs of
# verify/inspect/registry also write the raw byte).
@pytest.mark.parametrize("command", ["verify", "registry"])
def test_f11_cli_json_over_an_undecodable_key_is_a_json_document(
        redis_url: str, redis_client: redis.Redis, store: redmodel.Store,
        command: str) -> None:
    """docs/cli.md: "`--json` | one JSON document on stdout instead of text, for
    scripts"; docs/models.md: a key another program wrote with undecodable id bytes is
    "read, scanned, counted, verified" (CHANGELOG) as the id "\\udc81x"."""
    store.save(_Checked(id="ok"))
    redis_client.hset(b"atk25v:\x81x", mapping={b"color": b"c", b"n": b"not an int"})
    redis_client.hset(b"\x80atk25:%schema", mapping={b"owner": b"m.X", b"schema": b"{}"})
    args = ["-m", "tests.test_attack25a:_Checked"] if command == "verify" else []
    if command == "verify":  # a real process: the bytes its stdout writes
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        env.update(PYTHONPATH=str(ROOT), REDIS_URL=redis_url)
        done = subprocess.run([sys.executable, "-m", "redmodel", command, "--json", *args],
                              env=env, capture_output=True, timeout=60, check=False)
        code, out, err = done.returncode, done.stdout, done.stderr
    else:  # in this process, over strict UTF-8 streams (text that is not UTF-8 raises)
        here = redmodel_cli(command, "--json", *args, url=redis_url, keys=None)
        code, out, err = here.returncode, here.stdout.encode(), here.stderr.encode()
    assert code == 1, err[-2000:]
    report = json.loads(out.decode("utf-8"))               # UTF-8, one document
    assert report["ok"] is False


@redmodel.model(prefix="atk25car")
@attrs.define
class Car:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


# F12: the CLI's text output runs model names through rich's emoji codes: a model
# `shop:Car` is printed "shop🚗 1 objects" (":Car:" is the emoji code :car:, matched
# case-insensitively), so are `Key`, `Book`, `Bell`, `Dog`, `Star`... (export, verify,
# reindex, repair: each prints "<module>:<Class>: ..."; rich.Console.print with emoji on).
def test_f12_the_cli_names_a_model_as_module_colon_class(
        redis_url: str, store: redmodel.Store, tmp_path: Path) -> None:
    """docs/cli.md: `--models MODULE:Class` names one model, and the example output
    names each model that way ("examples.hatshop:Hat: 3 objects")."""
    store.save(Car(id="1"))
    rc, out = _cli(["export", "-m", "tests.test_attack25a:Car", "-o",
                    str(tmp_path / "cars.jsonl")], redis_url)
    assert rc == 0, out
    assert "tests.test_attack25a:Car: 1 objects" in out, out


# F13: Store(client) and AsyncStore(client) take anything as the client: a URL string
# (Store("redis://...") instead of Store.from_url), None, a sync client in an AsyncStore,
# an asyncio client in a Store. The first call then raises a bare AttributeError ("'str'
# object has no attribute 'connection_pool'", "'coroutine' object has no attribute
# 'disconnect'") or TypeError ("object Connection can't be used in 'await' expression"),
# although the constructor already checks the client's decode_responses.
@pytest.mark.parametrize("case", ["url_string", "none", "sync_client_in_async_store",
                                  "async_client_in_sync_store"])
def test_f13_a_store_of_something_that_is_not_its_client_kind_is_refused_when_made(
        redis_server: Any, case: str) -> None:
    """docs/store.md: "`redmodel.Store(client, ...)` wraps a `redis.Redis` client";
    docs/deploy.md: `AsyncStore(redis.asyncio....)`; bad input gets a clear redmodel error
    before anything is sent, never a bare AttributeError/TypeError."""
    host, port = redis_server.host, redis_server.port
    if case == "url_string":
        make: Any = lambda: redmodel.Store(f"redis://{host}:{port}")  # noqa: E731
    elif case == "none":
        make = lambda: redmodel.Store(None)  # noqa: E731
    elif case == "sync_client_in_async_store":
        make = lambda: redmodel.AsyncStore(redis.Redis(host=host, port=port))  # noqa: E731
    else:
        make = lambda: redmodel.Store(redis.asyncio.Redis(host=host, port=port))  # noqa: E731
    try:
        store = make()
    except redmodel.ValidationError:
        return
    try:
        if isinstance(store, redmodel.AsyncStore):
            asyncio.run(store.get(_Plain, "a"))
        else:
            store.get(_Plain, "a")
    except (redmodel.RedmodelError, redis.RedisError):
        pass
    except Exception as e:
        pytest.fail(f"bare {type(e).__name__}: {e}")


# ---- sound areas, kept as coverage the suite lacked -------------------------------------

@redmodel.model(prefix="atk25k")
@attrs.define
class _Counted:
    n: int = redmodel.field(index=True, default=0)
    id: str = redmodel.key_field(generated=False)


def test_exactly_once_pinned_increments_under_lost_replies_land_once_each(
        redis_server: Any) -> None:
    """Threads and asyncio tasks increment one equality-indexed int of an id that stands
    for undecodable bytes, in exactly-once mode, while six EVALSHA replies are lost (the
    pinning calls, their resends, pinned answers): every call returns, each amount (a
    distinct power of two) is in the value once, and the entry is the value
    (docs/failures.md, exactly-once mode; docs/queries.md, "Concurrent increments")."""
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        base = redmodel.Store.from_url(redis_server.url)
        base.save(_Counted(id="\udc80"))
        amounts = iter([1 << i for i in range(60)])
        lock = threading.Lock()
        ok: list[int] = []
        bad: list[str] = []

        def take() -> int:
            with lock:
                return next(amounts)

        def done(amount: int, error: BaseException | None) -> None:
            with lock:
                (ok.append(amount) if error is None else bad.append(repr(error)))

        def sync_worker(url: str) -> None:
            store = redmodel.Store.from_url(url, exactly_once=True)
            for _ in range(6):
                a = take()
                try:
                    store.incr(_Counted, "\udc80", "n", a)
                    done(a, None)
                except Exception as e:
                    done(a, e)
            store.close()

        async def async_worker(url: str) -> None:
            store = redmodel.AsyncStore.from_url(url, exactly_once=True)

            async def one() -> None:
                a = take()
                try:
                    await store.incr(_Counted, "\udc80", "n", a)
                    done(a, None)
                except Exception as e:
                    done(a, e)

            await asyncio.gather(*[one() for _ in range(8)])
            await store.aclose()

        proxy.lose_reply("EVALSHA", times=6)
        threads = [threading.Thread(target=sync_worker, args=(u,))
                   for u in (proxy.url, proxy.url, redis_server.url)]
        threads.append(threading.Thread(target=lambda: asyncio.run(async_worker(proxy.url))))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bad == []
        assert len(proxy.events) == 6                     # every lost reply fired
        value = base.get(_Counted, "\udc80").n  # type: ignore[union-attr]
        assert value == sum(ok)
        assert base.find(_Counted, n=value).ids() == ["\udc80"] and base.verify(_Counted) == []
        base.close()
