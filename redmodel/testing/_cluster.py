"""A throwaway Redis Cluster: :class:`RedisClusterServer`."""

from __future__ import annotations

import atexit
import time
import types
from collections.abc import Sequence
from typing import Any

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from redmodel._args import MAX_BLOCK_SECONDS, integer, seconds
from redmodel._errors import ValidationError
from redmodel.testing._binaries import HOST as _HOST
from redmodel.testing._binaries import (
    ServerStartError,
    ServerStateError,
    find_server_binary,
)
from redmodel.testing._server import (
    RedisServer,
    _as_text,
    _own_args_refused,
    execute,
    info_dict,
)

__all__ = ["RedisClusterServer"]

_SLOTS = 16384
#: The most nodes one RedisClusterServer starts (Redis advises at most 1000 per cluster).
_MAX_NODES = 1000


def _roles(nodes: dict[str, dict[str, Any]]) -> dict[tuple[str, int], tuple[str, str | None]]:
    """address -> (role, ``host:port`` of its primary), from redis-py's parsed
    ``CLUSTER NODES`` (``{"host:port": {"node_id", "flags", "master_id", ...}}``)."""
    by_id = {info["node_id"]: address.split("@")[0] for address, info in nodes.items()}
    view: dict[tuple[str, int], tuple[str, str | None]] = {}
    for address, info in nodes.items():
        flags = str(info.get("flags", "")).split(",")
        host, _, port = address.split("@")[0].rpartition(":")
        if "handshake" in flags or "noaddr" in flags or not port.isdigit():
            continue
        role = "primary" if "master" in flags else "replica"
        view[(host, int(port))] = (role, by_id.get(info.get("master_id", "-")))
    return view


class _ClusterNode(RedisServer):
    _cluster_node = True

    def _more_args(self, port: int) -> list[str]:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "5000",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--masterauth", self.password]
        return args


class RedisClusterServer:
    """A throwaway Redis Cluster: three primaries (and, on request, replicas) on free
    loopback ports.

    Args:
        binary: as for :class:`RedisServer`.
        primaries: the number of primaries (default 3).
        replicas: replicas per primary (default 0). With replicas, :meth:`failover` promotes
            a replica on demand, as an operator's ``CLUSTER FAILOVER`` does.
        password: ``--requirepass`` (and ``--masterauth``) on every node.
        extra_args: more command-line arguments for every node.
        startup_timeout: seconds to wait for each node to start, and then for the cluster to
            reach ``cluster_state:ok`` on every node.

    :meth:`start` starts the nodes in the foreground (each in its own temp dir, with its
    cluster bus port, port+10000, free too), assigns the slots evenly with
    ``CLUSTER ADDSLOTSRANGE`` (Redis 7.0+), joins them with ``CLUSTER MEET``,
    and waits until every node reports ``cluster_state:ok`` and sees all 16384 slots and
    every node. :meth:`stop` stops every node by its PID. Use it as a context manager::

        with RedisClusterServer() as cluster:
            rc = cluster.client()
            rc.set("hat:{1}", "red")
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        primaries: int = 3,
        replicas: int = 0,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        # every argument is checked here, before a binary is looked for or anything starts
        self.primaries = integer(primaries, "primaries", least=1, most=_MAX_NODES)
        self.replicas = integer(replicas, "replicas", least=0, most=_MAX_NODES)
        if self.primaries * (1 + self.replicas) > _MAX_NODES:
            raise ValidationError(f"a cluster of {self.primaries} primaries with "
                                  f"{self.replicas} replicas each is more than {_MAX_NODES} "
                                  "nodes")
        if password is not None and not isinstance(password, str):
            raise ValidationError(f"password must be a str or None, got "
                                  f"{type(password).__name__}")
        seconds(startup_timeout, "startup_timeout", most=MAX_BLOCK_SECONDS)
        self.extra_args: tuple[str, ...] = _own_args_refused(extra_args)
        self._binary = find_server_binary(binary)
        self.password = password
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = [
            _ClusterNode(
                self._binary,
                password=password,
                extra_args=self.extra_args,
                startup_timeout=min(startup_timeout, 10.0),
            )
            for _ in range(primaries * (1 + replicas))
        ]
        self._started_flag = False

    def start(self) -> RedisClusterServer:
        """Start every node, form the cluster and wait for ``cluster_state:ok``; return
        ``self``.

        Raises:
            ServerStartError: a node did not start, or the cluster did not become ok in time.
        """
        if self._started_flag:
            raise ServerStartError(f"{self!r} is already started")
        self._started_flag = True
        atexit.register(self.stop)
        try:
            for node in self.nodes:
                node.start()
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self) -> None:
        count = self.primaries
        clients = [node.client(retry=Retry(NoBackoff(), 0)) for node in self.nodes]
        try:
            for i, client in enumerate(clients[:count]):
                first, last = i * _SLOTS // count, (i + 1) * _SLOTS // count - 1
                execute(client, "CLUSTER ADDSLOTSRANGE", first, last)
            # Every node meets every other one: gossip alone takes seconds to spread news.
            for i, client in enumerate(clients):
                for node in self.nodes[i + 1 :]:
                    execute(client, "CLUSTER MEET", _HOST, node.port)
            if self.replicas:
                self._replicate(clients)
            self._wait_ok(clients)
        finally:
            for client in clients:
                client.close()

    def _replicate(self, clients: list[redis.Redis]) -> None:
        """Make node ``primaries + k`` a replica of primary ``k % primaries``, once every
        node knows every other one, and wait for their replication links."""
        deadline = time.monotonic() + self.startup_timeout
        ids = [_as_text(execute(c, "CLUSTER MYID")) for c in clients]
        for k, client in enumerate(clients[self.primaries :]):
            primary = ids[k % self.primaries]
            while True:  # the replica must know its primary by its real id (no handshake)
                nodes = execute(client, "CLUSTER NODES")  # redis-py parses it into a dict
                known = [info for info in nodes.values() if info.get("node_id") == primary]
                flags = known[0].get("flags", "") if known else "handshake"
                if "handshake" not in flags and "noaddr" not in flags:
                    try:
                        execute(client, "CLUSTER REPLICATE", primary)
                        break
                    except redis.ResponseError:  # "Unknown node" for a moment more
                        pass
                self._check_deadline(deadline, "every replica to know its primary")
                time.sleep(0.05)
        for client in clients[self.primaries :]:
            while info_dict(client.info("replication")).get("master_link_status") != "up":
                self._check_deadline(deadline, "the replicas to sync with their primaries")
                time.sleep(0.05)

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise ServerStartError(f"the cluster did not get {what} within "
                                   f"{self.startup_timeout} s; log of the first node:\n"
                                   f"{self.nodes[0]._log_text()}")
        for node in self.nodes:
            if not node.running:
                raise ServerStartError(
                    f"cluster node on port {node._port} exited; its log:\n{node._log_text()}")

    # ---- roles and failover --------------------------------------------------------------

    def _view(self, node: RedisServer) -> dict[tuple[str, int], tuple[str, str | None]]:
        """What ``node`` believes: address -> (role, ``host:port`` of its primary)."""
        client = node.client(retry=Retry(NoBackoff(), 0), socket_timeout=2)
        try:
            return _roles(execute(client, "CLUSTER NODES"))
        finally:
            client.close()

    def roles(self) -> dict[tuple[str, int], str]:
        """``(host, port) -> "primary" | "replica"`` for every node, as the first running
        node sees it."""
        node = self._running_node()
        return {address: role for address, (role, _) in self._view(node).items()}

    def primary_nodes(self) -> list[RedisServer]:
        """The nodes that are primaries now (they change with :meth:`failover`)."""
        roles = self.roles()
        return [n for n in self.nodes if roles.get((_HOST, n.port)) == "primary"]

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The nodes replicating ``primary`` now."""
        node = self._running_node()
        view = self._view(node)
        name = f"{_HOST}:{primary.port}"
        return [n for n in self.nodes if view.get((_HOST, n.port), ("", None))[1] == name]

    def failover(self, primary: RedisServer | int | tuple[str, int],
                 timeout: float = 30.0) -> RedisServer:
        """Promote a replica of ``primary`` (a node, its port, or its address) with
        ``CLUSTER FAILOVER`` (the coordinated manual failover: the primary stops taking
        writes until its replica has them all, then they swap roles), wait until every
        node agrees on the new roles and ``cluster_state:ok``, and return the new primary.
        Clients see MOVED for the moved slots from then on."""
        seconds(timeout, "timeout", most=MAX_BLOCK_SECONDS)
        self._check_started("failover()")
        old = self._node(primary)
        replicas = self.replicas_of(old)
        if not replicas:
            raise ServerStateError(f"{old!r} has no replica to fail over to (replicas=0?)")
        new = replicas[0]
        client = new.client(retry=Retry(NoBackoff(), 0))
        try:
            execute(client, "CLUSTER FAILOVER")
        finally:
            client.close()
        deadline = time.monotonic() + timeout
        want_new, want_old = (_HOST, new.port), (_HOST, old.port)
        clients = [n.client(retry=Retry(NoBackoff(), 0), socket_timeout=2) for n in self.nodes]
        try:
            while True:
                views = [self._view(n) for n in self.nodes]
                states = [info_dict(execute(c, "CLUSTER INFO")) for c in clients]
                if all(v.get(want_new, ("", None))[0] == "primary"
                       and v.get(want_old, ("", None))[0] == "replica" for v in views) and \
                        all(s.get("cluster_state") == "ok" for s in states):
                    return new
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"failover of {old!r} to {new!r} not agreed by every node within "
                        f"{timeout} s")
                time.sleep(0.05)
        finally:
            for c in clients:
                c.close()

    def _running_node(self) -> RedisServer:
        for node in self.nodes:
            if node.running:
                return node
        raise ServerStateError(f"no node of {type(self).__name__} is running; call start() "
                               "first")

    def _check_started(self, what: str) -> None:
        if not self._started_flag:
            raise ServerStateError(f"{type(self).__name__} is not started; call start() "
                                   f"before {what}")

    def _node(self, which: RedisServer | int | tuple[str, int]) -> RedisServer:
        if isinstance(which, RedisServer):
            if which not in self.nodes:
                raise ValidationError(f"{which!r} is not a node of this cluster")
            return which
        port: Any = which
        if isinstance(which, tuple) and len(which) == 2:  # (host, port)
            port = which[1]
        if isinstance(port, bool) or not isinstance(port, int):
            raise ValidationError(f"a node is a RedisServer of this cluster, its port or its "
                                  f"(host, port) address, got {which!r}")
        for node in self.nodes:
            if node._proc is not None and node._port == port:
                return node
        raise ValidationError(f"no running node of this cluster at port {port}")

    def _wait_ok(self, clients: list[redis.Redis]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        count = len(self.nodes)
        while True:
            states = []
            for client in clients:
                info = info_dict(execute(client, "CLUSTER INFO"))
                states.append(info)
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_assigned") == str(_SLOTS)
                and info.get("cluster_slots_ok") == str(_SLOTS)
                and info.get("cluster_known_nodes") == str(count)
                for info in states
            ):
                return
            for node in self.nodes:
                if not node.running:
                    raise ServerStartError(
                        f"cluster node on port {node._port} exited; its log:\n{node._log_text()}"
                    )
            if time.monotonic() > deadline:
                summary = "; ".join(
                    f"{node._port}: state={info.get('cluster_state')} "
                    f"slots={info.get('cluster_slots_ok')} "
                    f"known_nodes={info.get('cluster_known_nodes')}"
                    for node, info in zip(self.nodes, states, strict=True)
                )
                raise ServerStartError(
                    f"the cluster did not reach cluster_state:ok within "
                    f"{self.startup_timeout} s ({summary}); log of the first node:\n"
                    f"{self.nodes[0]._log_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node by its PID and remove their temp dirs. Idempotent."""
        for node in self.nodes:
            node.stop()
        self._started_flag = False
        atexit.unregister(self.stop)

    def __enter__(self) -> RedisClusterServer:
        if not self._started_flag:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        ports = [node._port for node in self.nodes] if self.running else "stopped"
        return f"<{type(self).__name__} {self._binary} {ports}>"

    @property
    def running(self) -> bool:
        """Whether every node started here is alive."""
        return self._started_flag and all(node.running for node in self.nodes)

    @property
    def binary(self) -> str:
        """Path of the server binary."""
        return self._binary

    @property
    def pids(self) -> list[int]:
        """PIDs of the node processes."""
        return [node.pid for node in self.nodes]

    @property
    def host(self) -> str:
        """Always ``"127.0.0.1"``."""
        return _HOST

    @property
    def ports(self) -> list[int]:
        """Ports of the nodes."""
        return [node.port for node in self.nodes]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node."""
        return [(_HOST, port) for port in self.ports]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """A fresh list of ``redis.cluster.ClusterNode``, one per node, for
        ``RedisCluster(startup_nodes=...)``. (Fresh because redis-py stores connections on
        these objects.)"""
        return [
            redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in self.addresses
        ]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first node (with the password if any);
        ``RedisCluster.from_url`` discovers the others."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        """The URL of every node."""
        return [node.url for node in self.nodes]

    @property
    def version(self) -> str:
        """The server version, as :attr:`RedisServer.version`."""
        return self.nodes[0].version

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A new ``redis.cluster.RedisCluster`` for this cluster. ``kwargs`` go to
        ``RedisCluster`` (redis-py defaults otherwise). The caller closes it."""
        options: dict[str, Any] = {"startup_nodes": self.startup_nodes}
        if self.password is not None:
            options["password"] = self.password
        options.update(kwargs)
        return redis.cluster.RedisCluster(**options)

    def node_clients(self, **kwargs: Any) -> list[redis.Redis]:
        """One plain ``redis.Redis`` per node (e.g. to inspect where a key landed)."""
        return [node.client(**kwargs) for node in self.nodes]
