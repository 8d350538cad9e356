"""Where the examples run: ``$REDIS_URL`` if set, else a throwaway server they start."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import redmodel
from redmodel.testing import RedisServer


@contextlib.contextmanager
def example_store() -> Iterator[redmodel.Store]:
    """A Store on ``$REDIS_URL``, or on a throwaway server stopped (by PID) at the end."""
    url = os.environ.get("REDIS_URL")
    if url:
        print(f"using REDIS_URL={url}")
        with redmodel.Store.from_url(url) as store:
            yield store
        return
    with RedisServer() as server:
        print(f"started a throwaway {server.version} server at {server.url} (pid {server.pid})")
        with redmodel.Store.from_url(server.url) as store:
            yield store
