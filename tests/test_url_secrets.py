"""No secret of a URL leaks: whatever a password holds (``/ ? # @ % + =``, unicode), in a
URL redmodel can use or one it refuses, from_url, from_env and the CLI never show it (nor a
4+ character piece of it found nowhere else in the URL) in an error's text, its traceback
or a store's repr. And a URL query redmodel cannot use is refused before any client is made
(docs/deploy.md)."""

from __future__ import annotations

import contextlib
import io
import os
import traceback

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel.cli import _app
from tests.budget import scaled

_PASSWORD = st.text(
    st.one_of(st.sampled_from("/?#@%+=:&"),
              st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))),
    min_size=4, max_size=20)

# {pw}: the password as written in the user part; {pq}: as a ?password= query value
_TEMPLATES = [
    "redis://u:{pw}@127.0.0.1:1/0",
    "rediss://:{pw}@cache.example.net:6380x/0",
    "redis://u:{pw}@cache.example.net:6380/zero",
    "redis://u:{pw}@[::1/0",
    "http://u:{pw}@cache.example.net/0",
    "redis://u:{pw}@127.0.0.1:1/0?decode_responses=true",
    "redis://u:{pw}@127.0.0.1:1/0?ssl=true",
    "redis://u:{pw}@127.0.0.1:1/0?socket_timeout=nan",
    "unix://u:{pw}@/nonexistent/redmodel.sock?max_connections=0",
    "redis://127.0.0.1:1/0?password={pq}",
    "redis://127.0.0.1:1/0?password={pq}&socket_timeout=-1",
    "redis://127.0.0.1:1x/0?password={pq}",
]


def _leaks(password: str, template: str, text: str) -> list[str]:
    """The pieces of ``password`` (4+ characters, found nowhere in the URL's ``template``)
    in ``text``."""
    rest = template.format(pw="\0", pq="\0")
    pieces = {password[i:i + 4] for i in range(len(password) - 3)}
    return sorted(p for p in pieces if p not in rest and p in text)


def _shown(e: BaseException) -> str:
    return str(e) + repr(e) + "".join(traceback.format_exception(e))


def _texts(url: str) -> str:
    """All that from_url, AsyncStore.from_url, from_env and the CLI show of ``url``."""
    texts = []
    for make in (lambda: redmodel.Store.from_url(url),
                 lambda: redmodel.AsyncStore.from_url(url)):
        try:
            store = make()
        except redmodel.ValidationError as e:
            texts.append(_shown(e))
        else:
            texts.append(repr(store) + repr(store.client))
    os.environ["R1URLPROP_URL"] = url
    try:
        redmodel.Store.from_env(prefix="R1URLPROP_")
    except redmodel.ValidationError as e:
        texts.append(_shown(e))
    finally:
        del os.environ["R1URLPROP_URL"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = _app.run(["inspect", "--models", "examples.hatshop:Hat", "--timeout", "1",
                         "--url", url])
    assert code in (2, 3), out.getvalue() + err.getvalue()
    return "\n".join([*texts, out.getvalue(), err.getvalue()])


@settings(max_examples=scaled(40), deadline=None)
@given(password=_PASSWORD, template=st.sampled_from(_TEMPLATES))
def test_no_piece_of_a_password_is_shown_whatever_it_holds(password: str,
                                                           template: str) -> None:
    pq = password.replace("&", "").replace("#", "")  # a query value ends at & or #
    if len(pq) < 4:
        pq = "s3cr" + pq
    url = template.format(pw=password, pq=pq)
    secret = pq if "{pq}" in template else password
    text = _texts(url)
    # a piece counts when it is there because of the password: with the password's
    # characters all replaced (same length) the same calls do not show it
    other = _texts(template.format(pw="\u03a9" * len(password), pq="\u03a9" * len(pq)))
    leaks = [piece for piece in _leaks(secret, template, text) if piece not in other]
    assert not leaks, (url, text)


@pytest.mark.parametrize("query", [
    "decode_responses=false", "ssl=true", "ssl_certfile=x.pem", "timeout=1", "nonsense=1",
    "socket_timeout=nan", "socket_timeout=inf", "socket_timeout=0", "socket_timeout=-1",
    "socket_connect_timeout=-inf", "max_connections=0", "max_connections=-1",
    "socket_keepalive=maybe", "retry_on_timeout=enabled", "protocol=4", "db=-1",
    "ssl_validate_ocsp=false", "health_check_interval=x"])
def test_a_query_redmodel_cannot_use_is_refused_naming_the_option(query: str) -> None:
    url = f"redis://u:pw1234@127.0.0.1:1/0?{query}"
    with pytest.raises(redmodel.ValidationError) as e:
        redmodel.Store.from_url(url)
    name = query.split("=", maxsplit=1)[0]
    assert name in str(e.value) and "pw1234" not in str(e.value)


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:1/0?socket_timeout=2.5&socket_connect_timeout=1&max_connections=3"
    "&health_check_interval=0&socket_keepalive=true&retry_on_timeout=no&client_name=me",
    "rediss://127.0.0.1:1/0?ssl_cert_reqs=none&ssl_check_hostname=false&ssl_ca_certs=ca.pem",
    "unix:///nonexistent/redmodel.sock?db=2&socket_timeout=1",
    "redis://u:p%2Fw%3F%23%40@127.0.0.1:1/0?protocol=2",
])
def test_a_query_redmodel_can_use_is_accepted(url: str) -> None:
    redmodel.Store.from_url(url).close()
