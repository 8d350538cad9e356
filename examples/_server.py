"""Where the examples run: ``$REDIS_URL`` if set, else a throwaway server they start.

A server that cannot be used (one that wants a password, one that is down, no server binary
for a throwaway one) ends the example with one line saying what to do, not a traceback."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator

import redis

import redmodel
from redmodel.testing import RedisServer, ServerNotFoundError, ServerStartError

# What redis-py says when a server wants a password and none was given: with RESP3 (the
# default) HELLO is refused, with RESP2 the first command is (NOAUTH).
_NO_PASSWORD_GIVEN = ("HELLO must be called with the client already authenticated",
                      "NOAUTH", "Authentication required")


def server_name(store: redmodel.Store) -> str:
    """What the store talks to, from INFO: ``Valkey 9.1.2`` or ``Redis 7.0.15``."""
    info = store.client.info("server")
    if info.get("valkey_version"):
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info['redis_version']}"


def where(url: str) -> str:
    """The URL without its user name and password: what may be printed."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", ""))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def connect(url: str) -> tuple[redmodel.Store, str]:
    """A store on ``url`` (with ``$REDIS_PASSWORD``/``$REDIS_USERNAME`` if set) and the
    server's name; a server that cannot be used ends the program with one line."""
    store = redmodel.Store.from_env()  # $REDIS_URL, and the REDIS_* secrets if set
    try:
        return store, server_name(store)
    except redis.AuthenticationError as e:  # before ConnectionError: it is one
        store.close()
        if any(marker in str(e) for marker in _NO_PASSWORD_GIVEN):
            raise SystemExit(
                f"error: the server at {where(url)} needs a password: put it in REDIS_URL "
                "(redis://:PASSWORD@host:port/0) or in REDIS_PASSWORD") from None
        raise SystemExit(f"error: the server at {where(url)} refused the login: "
                         f"{_one_line(e)}") from None
    except (redis.ConnectionError, redis.TimeoutError) as e:
        store.close()
        raise SystemExit(
            f"error: cannot reach the server at {where(url)}: {_one_line(e)} (is it "
            "running? unset REDIS_URL to run on a throwaway server)") from None


@contextlib.contextmanager
def example_store() -> Iterator[redmodel.Store]:
    """A Store on ``$REDIS_URL``, or on a throwaway server stopped (by PID) at the end."""
    url = os.environ.get("REDIS_URL")
    if url:
        store, name = connect(url)
        with store:
            print(f"using REDIS_URL={where(url)}: {name}")
            yield store
        return
    try:
        server = RedisServer().start()
    except (ServerNotFoundError, ServerStartError) as e:  # no binary, or one too old
        raise SystemExit(f"error: {e}") from None
    with server, redmodel.Store.from_url(server.url) as store:
        print(f"started a throwaway {server_name(store)} server at {server.url} "
              f"(pid {server.pid})")
        yield store
