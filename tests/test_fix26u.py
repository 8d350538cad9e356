"""Session 26, fixes of attack 26U (tests/test_attack26u.py holds one test per finding):
the URL parser as a whole, by a property. A URL built from hostile parts (ports, databases,
options, passwords of every ASCII byte and of bytes that are not UTF-8, written
percent-encoded or raw, blanks/tabs/CR/LF, IPv6 addresses with zones, options given twice)
is either refused with a ValidationError that shows no piece of its password, or makes a
client of exactly the host, port, database and credentials it says (the oracle below is
docs/deploy.md's rules, written out). No server: a store made by from_url never connects
before its first command."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled

# the port redis-py takes when a URL names none (read from redis-py, never written here:
# no test of this file connects; they compare the client's arguments)
DEFAULT_PORT = inspect.signature(redis.connection.Connection.__init__).parameters[
    "port"].default

_MARK = "Zq7"  # every password starts with it: a message holding it shows the password

_HOSTS = [("localhost", "localhost"), ("cache-1.example", "cache-1.example"),
          ("10.0.0.7", "10.0.0.7"), ("[::1]", "::1"), ("[fe80::1%25eth0]", "fe80::1%eth0"),
          ("[fe80::1%2512]", "fe80::1%12")]
# (":port" as written, the port it means or None when the URL must be refused)
_PORTS = [("", DEFAULT_PORT), (":1", 1), (":6380", 6380), (":65535", 65535), (":", None),
          (":0", None), (":65536", None), (":+1", None), (":\uff11", None), (":1_0", None),
          (":-1", None), (":99999999999", None), (":x", None)]
_DBS = [("", 0), ("/", 0), ("/0", 0), ("/7", 7), ("/2147483647", 2**31 - 1),
        ("/2147483648", None), ("/x", None), ("/1_0", None), ("/\uff11", None)]
_BLANKS = [" ", "\t", "\r", "\n", "\x00", "\x7f"]


def _as_sent(raw: bytes) -> str | bytes:
    """A secret as the client gets it: text when it is UTF-8, else its bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


@st.composite
def _urls(draw: st.DrawFn
          ) -> tuple[str, int | None, dict[str, Any] | None, bool, list[str]]:
    """(url, from_url's db=, the connection arguments it says or None when it must be
    refused, whether a refusal is allowed although it says them (a password written raw,
    which the rules may refuse), the forms of the password that must never be shown)."""
    scheme = draw(st.sampled_from(["redis", "rediss"]))
    host, host_means = draw(st.sampled_from(_HOSTS))
    port, port_means = draw(st.sampled_from(_PORTS))
    path, db_means = draw(st.sampled_from(_DBS))
    refuse = port_means is None or db_means is None
    may_refuse = False
    secret = _MARK + draw(st.text(st.characters(max_codepoint=127), min_size=3, max_size=12))
    where = draw(st.sampled_from(["authority", "option", "none"]))
    user = draw(st.sampled_from(["", "app", "a%3Ab"]))  # a%3Ab: the user "a:b"
    if draw(st.booleans()):  # written as it is: taken as URLs read it, or refused
        written = secret
        means = _as_sent(unquote_to_bytes(secret))
        may_refuse = True
    else:  # percent-encoded, maybe with a byte that is not UTF-8: every rule is kept
        raw = secret.encode() + (b"\xff" if draw(st.booleans()) else b"")
        written = "".join(chr(b) if chr(b).isalnum() and b < 128 else f"%{b:02X}"
                          for b in raw)
        means = _as_sent(raw)
        # an option's value holding an escape once decoded is refused (docs/deploy.md:
        # "an escape redis-py decodes twice")
        refuse = refuse or (where == "option" and unquote(secret) != secret)
    options: list[tuple[str, str]] = []
    if draw(st.booleans()):
        db_text, db_option = draw(st.sampled_from([("3", 3), ("0", 0), ("x", None),
                                                   ("-1", None)]))
        options.append(("db", db_text))
        refuse = refuse or db_option is None
        db_means = db_option if db_means is not None else None  # ?db= wins over the path
    if draw(st.booleans()):
        timeout, seconds = draw(st.sampled_from([("1.5", 1.5), ("0", None), ("nan", None)]))
        options.append(("socket_timeout", timeout))
        refuse = refuse or seconds is None
    if where == "option":
        options.append(("password", written))
    if options and draw(st.booleans()):  # an option given twice: ambiguous, refused
        options.append(draw(st.sampled_from(options)))
        refuse = True
    if draw(st.booleans()):  # ?port= besides a port in the host part: refused
        options.append(("port", "6390"))
        refuse = refuse or bool(port)
        port_means = 6390 if not port else port_means
    draw(st.randoms()).shuffle(options)
    userinfo = f"{user}:{written}@" if where == "authority" else f"{user}@" if user else ""
    query = "&".join(f"{name}={value}" for name, value in options)
    url = f"{scheme}://{userinfo}{host}{port}{path}" + (f"?{query}" if query else "")
    if draw(st.booleans()):  # a blank anywhere after the scheme: refused
        at = draw(st.integers(len(scheme) + 3, len(url)))
        url = url[:at] + draw(st.sampled_from(_BLANKS)) + url[at:]
        refuse = True
    db_keyword = draw(st.sampled_from([None, 5]))  # wins over the URL's, checked all the same
    expected = None if refuse else {
        "host": host_means, "port": port_means, "db": db_keyword or db_means,
        "password": means if where != "none" else None,
        "username": user.replace("%3A", ":") or None}
    return url, db_keyword, expected, may_refuse, [secret, written]


@settings(max_examples=scaled(50), deadline=None)
@given(case=_urls())
def test_a_url_is_refused_without_its_password_or_says_exactly_what_it_connects_to(
        case: tuple[str, int | None, dict[str, Any] | None, bool, list[str]]) -> None:
    url, db, expected, may_refuse, secrets = case
    try:
        store = redmodel.Store.from_url(url, db=db)
    except redmodel.ValidationError as e:
        for text in (str(e), repr(e)):
            assert not any(s in text for s in secrets), text
            assert _MARK not in text, text
        assert expected is None or may_refuse, f"{url!r} refused: {e}"
        return
    try:
        got = store.client.connection_pool.connection_kwargs
        assert expected is not None, f"{url!r} was taken: {got!r}"
        made = {"host": got.get("host"), "port": int(got.get("port", DEFAULT_PORT)),
                "db": int(got.get("db", 0)), "password": got.get("password"),
                "username": got.get("username")}
        assert made == expected, url
    finally:
        store.close()


@pytest.mark.parametrize("url", ["redis://", "rediss://", "unix://", "redis:///0",
                                 "redis://:p@/0", "unix://h/x.sock", "unix://:5/x.sock"])
def test_a_url_without_its_host_or_socket_path_is_refused(url: str) -> None:
    with pytest.raises(redmodel.ValidationError, match=r"host|socket"):
        redmodel.Store.from_url(url)


def test_a_unix_url_with_credentials_and_a_path_is_taken() -> None:
    store = redmodel.Store.from_url("unix://:pw%FF@/run/redis.sock?db=2")
    try:
        got = store.client.connection_pool.connection_kwargs
        assert (got["path"], got["db"], got["password"]) == ("/run/redis.sock", 2, b"pw\xff")
    finally:
        store.close()


def test_import_names_the_lines_of_two_ids_sharing_a_unique_value(
        capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The whole file's unique values are checked apart: the second line of a value (of
    another id) is bad and names the first; the same id twice is not (it is replaced)."""
    from redmodel.cli._app import run  # noqa: PLC0415

    model = "tests.test_attack26u:_Uniq"
    rows = [("a", "one@x"), ("b", "two@x"), ("a", "one@x"), ("c", "two@x"), ("d", "one@x")]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"v": 1, "model": model, "id": ident, "pttl": None,
                                        "data": {"email": email}}) + "\n"
                            for ident, email in rows), encoding="utf-8")
    code = run(["import", "--json", "--dry-run", "-m", model, "-i", str(path)])
    out = json.loads(capfd.readouterr().out)
    assert (code, out["bad_lines"]) == (1, 2), out
    errors = {e["line"]: e["error"] for e in out["errors"]}
    assert sorted(errors) == [4, 5], errors
    assert "email" in errors[4] and "line 2" in errors[4] and "line 1" in errors[5], errors


def test_an_empty_url_is_refused_not_read_as_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(redmodel.ValidationError, match="scheme"):
        redmodel.Store.from_url("")
