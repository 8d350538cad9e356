"""Session 25, fix G: the kinds of input attack 25A found one example of (its tests are
tests/test_attack25a.py). Each property draws the whole kind: ids of any bytes (and lone
surrogates no bytes stand for) through import's check and save_many's; error texts over
any key; WindowCounter keys of any prefix, subject and window; URL option values written
with any escapes; environment endpoints holding anything; clients of every other kind."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import attrs
import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._container_registry import counter_of
from redmodel._errors import as_text, key_text
from redmodel._plans._objects import check_whole
from redmodel.cli._common import model_label
from redmodel.cli._lines import BadLineError, Models
from redmodel.containers import Set, WindowCounter
from tests.budget import scaled
from tests.test_cli import redmodel_cli

URL = "redis://127.0.0.1:1/0"  # nothing listens: a store made on it never connects


@redmodel.model(prefix="fx25b", layout="blob")
@attrs.define
class _Blob:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx25h")
@attrs.define
class _Hash:
    n: int = 0
    id: str = redmodel.key_field(generated=False)


# ids: any bytes as their str form (U+DC80..U+DCFF for the undecodable ones), plus text
# holding a lone surrogate no bytes stand for, and the key characters `: { } * % \`
IDS = st.one_of(
    st.binary(min_size=1, max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(alphabet=st.sampled_from("ab:{}*%\\\ud800\udbff\udfff\udc80\udcff\u00e9"),
            min_size=1, max_size=6))


def _bytes_stand_for(ident: str) -> bool:
    try:
        ident.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


# ---- F1, F2: import's check is save_many's ----------------------------------------------


@settings(max_examples=scaled(50), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(IDS, min_size=1, max_size=4, unique=True), blob=st.booleans())
def test_import_refuses_a_line_exactly_when_save_many_would_refuse_its_object(
        store: redmodel.Store, ids: list[str], blob: bool) -> None:
    """A line is bad in import's check (never an exception of another kind) exactly when
    save_many's up-front check refuses the object it stands for; a save_many of the
    objects either writes them all or nothing (refused before the first write, even one
    object per chunk); what it writes reads back under the same id."""
    cls = _Blob if blob else _Hash
    ids = list(dict.fromkeys(json.loads(json.dumps(i)) for i in ids))  # "\ud800\udc80"
    models = Models([cls], decrypt=False)                  # is a pair to JSON: U+10000
    objs, bad = [], []
    for i, ident in enumerate(ids):
        line = json.dumps({"v": 1, "model": model_label(cls), "id": ident, "pttl": None,
                           "data": {"n": i}})
        try:
            models.parse(line, {})
        except BadLineError as e:
            str(e).encode("utf-8")                      # the listed reason is text
            bad.append(ident)
            with pytest.raises(redmodel.ValidationError):
                check_whole(cls(n=i, id=ident))
            continue
        assert _bytes_stand_for(ident)
        check_whole(cls(n=i, id=ident))
        objs.append(cls(n=i, id=ident))
    # the lone surrogates no bytes stand for are always bad; a blob's undecodable id too
    assert all(_bytes_stand_for(i) and (not blob or i.isascii() or _text(i))
               for i in ids if i not in bad)
    every = [cls(n=i, id=ident) for i, ident in enumerate(ids)]
    try:
        store.save_many(every, chunk_size=1)
    except redmodel.ValidationError as e:
        assert bad, e
        assert e.written in (None, ()), e.written
        assert all(store.get(cls, o.id) is None for o in objs)
        str(e).encode("utf-8")
    else:
        assert not bad
        assert [store.get(cls, o.id) for o in objs] == objs
    store.delete_many(cls, [o.id for o in objs])


def _text(ident: str) -> bool:
    try:
        ident.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---- F10: an error's text is text and names the key ------------------------------------


@settings(max_examples=scaled(100))
@given(st.text(alphabet=st.characters(codec=None), max_size=20))
def test_every_error_text_is_utf8_text(message: str) -> None:
    """Whatever text a message is built of (lone surrogates included), str(error) is
    UTF-8-encodable, and unchanged when it was text already."""
    for cls in (redmodel.RedmodelError, redmodel.ValidationError, redmodel.ServerError,
                redmodel.ConflictError):
        error = cls(message, attempts=1) if cls is redmodel.ConflictError else cls(message)
        text = str(error)
        text.encode("utf-8")
        if _text(message):
            assert message in text
    as_text(message).encode("utf-8")
    key_text(message).encode("utf-8")


@settings(max_examples=scaled(30), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=1, max_size=6))
def test_an_error_over_a_key_of_any_bytes_is_text_and_names_it(
        store: redmodel.Store, redis_client: redis.Redis, raw: bytes) -> None:
    """A string planted at a hash model's key of any id bytes: incr's WRONGTYPE refusal and
    save_many's summary are UTF-8 text, and name that key as key_text does (its repr when
    the bytes are not UTF-8: unambiguous, and the escape export writes)."""
    ident = raw.decode("utf-8", "surrogateescape")
    redis_client.set(b"fx25h:" + _escaped(raw), b"planted")
    try:
        for call in (lambda: store.incr(_Hash, ident, "n", 1),
                     lambda: store.save_many([_Hash(id="fx25ok"), _Hash(id=ident)])):
            with pytest.raises(redmodel.RedmodelError) as e:
                call()
            text = str(e.value)
            text.encode("utf-8")
            assert "\ufffd" not in text
            assert key_text(_key_text_of(ident)) in text, text
    finally:
        redis_client.delete(b"fx25h:" + _escaped(raw), b"fx25h:fx25ok")


def _escaped(raw: bytes) -> bytes:
    from redmodel._models._keys import escape  # noqa: PLC0415
    return escape(raw.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def _key_text_of(ident: str) -> str:
    from redmodel._models._specs import spec_of  # noqa: PLC0415
    return spec_of(_Hash).key_for(ident)


# ---- F3: WindowCounter keys are injective -----------------------------------------------

PART = st.one_of(st.text(alphabet=st.sampled_from("ab:%{}*+1\\"), min_size=1, max_size=4),
                 st.integers(-3, 3))
NAME = st.one_of(PART, st.lists(PART, min_size=1, max_size=3).map(tuple))


def _norm(name: Any) -> tuple[str, ...]:
    return tuple(map(str, name)) if isinstance(name, tuple) else (str(name),)


@settings(max_examples=scaled(300))
@given(a=st.tuples(NAME, NAME, st.sampled_from([1, 60, 3600])),
       b=st.tuples(NAME, NAME, st.sampled_from([1, 60, 3600])))
def test_no_two_counters_share_a_key_and_the_registry_knows_the_counter(
        a: tuple[Any, Any, int], b: tuple[Any, Any, int]) -> None:
    """Two (prefix, subject, window) share a key only if they are the same (a 1-tuple is
    its part); the registry's shape test finds the prefix of every counter key."""
    store = redmodel.Store.from_url(URL, registry=False)
    try:
        keys = []
        for prefix, subject, window in (a, b):
            counter = WindowCounter(store, prefix, window=window, clock=lambda: 1000.0)
            key = counter.key_for(subject)
            assert counter_of(key) == counter.key
            keys.append(key)
        same = all(_norm(x) == _norm(y) for x, y in zip(a[:2], b[:2], strict=True)) \
            and a[2] == b[2]
        assert (keys[0] == keys[1]) == same, (a, b, keys)
    finally:
        store.close()


def test_a_container_inside_a_counters_keys_is_refused_in_either_order(
        store: redmodel.Store) -> None:
    """Set(("fx25c", "x", "960+60")) has the shape of the counter fx25c's key for the
    subject x: refused after the counter, and the counter after the set."""
    counter = WindowCounter(store, "fx25c", window=60, clock=lambda: 1000.0)
    counter.incr("x")
    with pytest.raises(redmodel.SchemaConflictError, match="WindowCounter"):
        Set(store, ("fx25c", "y", "960+60"), int).add(1)
    inside = Set(store, ("fx25d", "y", "0+5"), int)
    inside.add(1)
    with pytest.raises(redmodel.SchemaConflictError, match="WindowCounter"):
        WindowCounter(store, "fx25d", window=5).get("z")
    Set(store, ("fx25c", "y", "z"), int).add(1)           # not a counter's key: fine
    WindowCounter(store, ("fx25c", "x"), window=60).get("y")  # another counter's keys
    inside.clear()
    counter.forget()


# ---- F4, F5: URL option values are the value or refused ---------------------------------

SECRET = st.text(alphabet=st.sampled_from("ab+ %&=#?@/:2B5A41"), min_size=0, max_size=8)


@settings(max_examples=scaled(200))
@given(password=SECRET, encode=st.sets(st.sampled_from("+ %&=#?@/:")))
@example(password="%A1", encode=set())  # an escape of a byte that is not UTF-8
def test_a_password_option_is_the_password_or_refused_without_it(
        password: str, encode: set[str]) -> None:
    """?password=<written> with any of its characters percent-encoded or not: refused
    (ValidationError, the text not shown) or the client gets exactly the password the
    text says by RFC 3986 (one decoding, '+' is '+')."""
    written = "".join(quote(c, safe="") if c in encode else c for c in password)
    url = f"redis://127.0.0.1:1/0?password={written}"
    try:
        store = redmodel.Store.from_url(url)
    except redmodel.ValidationError as e:
        assert len(written) < 3 or written not in str(e)
        return
    try:
        raw = unquote_to_bytes(written)  # one decoding; bytes that are not UTF-8 are
        try:                             # sent as those bytes (attack 26U F5)
            meant: str | bytes = raw.decode("utf-8")
        except UnicodeDecodeError:
            meant = raw
        assert store.client.connection_pool.connection_kwargs.get("password") == meant
    finally:
        store.close()


@pytest.mark.parametrize("option", ["db", "socket_timeout", "max_connections", "password",
                                    "username", "client_name", "health_check_interval"])
def test_an_option_without_a_value_is_refused(option: str) -> None:
    with pytest.raises(redmodel.ValidationError, match="no value"):
        redmodel.Store.from_url(f"redis://127.0.0.1:1/0?{option}=")


# ---- F6-F9: environment and cluster URLs --------------------------------------------------


@settings(max_examples=scaled(150))
@given(user=st.text(alphabet="uxyz", min_size=0, max_size=3),
       secret=st.text(alphabet="SECRT:@/%+", min_size=4, max_size=8),
       host=st.sampled_from(["127.0.0.1", "h", "[::1]", "::1", ""]))
def test_an_endpoint_holding_anything_but_a_host_is_refused_without_showing_it(
        user: str, secret: str, host: str) -> None:
    """REDIS_ENDPOINT = [user:]secret@host (credentials), or no host: ValidationError
    naming the variable, never a piece of the secret."""
    endpoint = f"{user + ':' if user else ''}{secret}@{host}"
    env = {"REDIS_ENDPOINT": endpoint}
    with pytest.raises(redmodel.ValidationError, match="REDIS_ENDPOINT") as e:
        redmodel._stores._config.env_settings(env)
    assert secret not in str(e.value)


@pytest.mark.parametrize(("endpoint", "port", "ok"), [
    ("h", None, ("h", "6379")), ("h:7000", None, ("h", "7000")),
    ("h:7000", "7000", ("h", "7000")), ("h:1", "7000", None), (":7000", None, None),
    ("::1", "7000", ("[::1]", "7000")), ("[::1]:7000", None, ("[::1]", "7000")),
    ("h/x", None, None), ("h x", None, None), ("h:0", None, None)])
def test_an_endpoint_is_a_host_with_an_optional_port_that_agrees(
        endpoint: str, port: str | None, ok: tuple[str, str] | None) -> None:
    env = {"REDIS_ENDPOINT": endpoint, **({"REDIS_PORT": port} if port else {})}
    if ok is None:
        with pytest.raises(redmodel.ValidationError, match="REDIS_ENDPOINT"):
            redmodel._stores._config.env_settings(env)
    else:
        url, _, _ = redmodel._stores._config.env_settings(env)
        assert url == f"redis://{ok[0]}:{ok[1]}/0"


@pytest.mark.parametrize("scheme", ["redis", "unix"])
@pytest.mark.parametrize("var", ["REDIS_TLS", "REDIS_CA_FILE", "REDIS_CERT_FILE",
                                 "REDIS_KEY_FILE"])
def test_tls_settings_with_a_url_without_tls_are_refused(scheme: str, var: str) -> None:
    url = "redis://u:SECRETPW@h:7000/0" if scheme == "redis" else "unix:///tmp/x.sock"
    env = {"REDIS_URL": url, var: "1" if var == "REDIS_TLS" else "/tmp/ca.pem"}
    with pytest.raises(redmodel.ValidationError, match=var) as e:
        redmodel._stores._config.env_settings(env)
    assert "SECRETPW" not in str(e.value)
    env["REDIS_URL"] = "rediss://h:7000/0"                  # asks for TLS: fine
    assert redmodel._stores._config.env_settings(env)[0] == "rediss://h:7000/0"


@pytest.mark.parametrize("url", ["unix://:SECRETPW@/tmp/x.sock", "redis://:SECRETPW@h:1/2",
                                 "redis://:SECRETPW@h:1/0?db=5", "redis://:SECRETPW@h:1"])
@pytest.mark.parametrize("cls", [redmodel.Store, redmodel.AsyncStore])
def test_a_cluster_url_of_a_socket_or_a_database_is_refused_before_a_client(
        url: str, cls: Any) -> None:
    db = 3 if url.endswith("h:1") else None
    with pytest.raises(redmodel.ValidationError, match="cluster") as e:
        cls.from_url(url, cluster=True, db=db)
    assert "SECRETPW" not in str(e.value)


# ---- F13: a store of another client kind -------------------------------------------------


@pytest.mark.parametrize("cls", [redmodel.Store, redmodel.AsyncStore])
@pytest.mark.parametrize("client", [
    lambda: URL, lambda: None, lambda: b"redis://h", lambda: 6379, object,
    lambda: redis.Redis(port=1), lambda: redis.asyncio.Redis(port=1),
    lambda: redis.ConnectionPool(port=1)])
def test_a_store_takes_only_its_client_kind(cls: Any, client: Any) -> None:
    made = client()
    fits = isinstance(made, redis.Redis if cls is redmodel.Store else redis.asyncio.Redis)
    if fits:
        cls(made)
        return
    with pytest.raises(redmodel.ValidationError, match=cls.__name__) as e:
        cls(made)
    assert "from_url" in str(e.value)


# ---- F11, F12: the command line's outputs over undecodable keys --------------------------


@redmodel.model(prefix="fx25v")
@attrs.define
class Star:
    color: str = redmodel.field(index=True, default="c")
    n: int = 0
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("command", [["inspect", "--json"], ["verify"], ["registry"]])
def test_cli_outputs_over_an_undecodable_key_are_utf8_and_literal(
        redis_url: str, redis_client: redis.Redis, store: redmodel.Store,
        command: list[str]) -> None:
    """inspect --json, and the text outputs of verify and registry, over a key of the
    model and a registry record whose bytes are not UTF-8: stdout is UTF-8 (a --json one
    JSON document), names the key by its escape, and prints the model Star (:star: is an
    emoji code) as module:Star."""
    store.save(Star(id="ok"))
    redis_client.hset(b"fx25v:\x81x", mapping={b"color": b"c", b"n": b"not an int"})
    redis_client.hset(b"\x80fx25:%schema", mapping={b"owner": b"m.X", b"schema": b"{}"})
    models = [] if command[0] == "registry" else ["-m", "tests.test_fix25g:Star"]
    # in this process over strict UTF-8 streams: text that is not UTF-8 raises (exit 4);
    # tests/test_attack25a.py f11 reads a real process's stdout bytes
    done = redmodel_cli(*command, *models, url=redis_url, keys=None)
    out = done.stdout
    assert done.returncode == 1, done.stderr[-2000:]
    if "--json" in command:
        assert json.loads(out)["ok"] is False
    else:
        assert "\\udc8" in out, out                       # the key, by its escape
    if command[0] != "registry":
        assert "tests.test_fix25g:Star" in out, out
    redis_client.delete(b"fx25v:\x81x", b"\x80fx25:%schema")
