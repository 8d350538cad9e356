"""Where the examples run: ``$REDIS_URL`` if set, else a throwaway server they start."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator

import redmodel
from redmodel.testing import RedisServer


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


@contextlib.contextmanager
def example_store() -> Iterator[redmodel.Store]:
    """A Store on ``$REDIS_URL``, or on a throwaway server stopped (by PID) at the end."""
    url = os.environ.get("REDIS_URL")
    if url:
        with redmodel.Store.from_url(url) as store:
            print(f"using REDIS_URL={where(url)}: {server_name(store)}")
            yield store
        return
    with RedisServer() as server, redmodel.Store.from_url(server.url) as store:
        print(f"started a throwaway {server_name(store)} server at {server.url} "
              f"(pid {server.pid})")
        yield store
