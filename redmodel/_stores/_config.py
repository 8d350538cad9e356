"""Shared by Store and AsyncStore: client checks, URL and environment configuration, and
the cluster-aware pieces of batch execution that involve no I/O."""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

from redis.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.exceptions import ClusterDownError

from redmodel._args import flag, integer
from redmodel._errors import ValidationError
from redmodel._indexes._registry import Registry
from redmodel._transport._wire import DEFAULT_POLICY, ResendPolicy

__all__ = ["DEFAULT_URL", "ShellConfig", "Targets", "check_client", "check_url",
           "env_settings", "redact_url"]

DEFAULT_URL = "redis://localhost:6379/0"


def check_client(client: Any) -> None:
    """Refuse clients that decode replies: stored bytes fields would be corrupted."""
    kwargs: Mapping[str, Any] = {}
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        kwargs = getattr(pool, "connection_kwargs", None) or {}
    elif hasattr(client, "get_default_node"):  # a cluster client
        node = client.get_default_node()
        conn = getattr(node, "redis_connection", None)
        inner = getattr(conn, "connection_pool", None)
        kwargs = getattr(inner, "connection_kwargs", None) or getattr(node, "connection_kwargs", {})
    encoder = client.get_encoder() if hasattr(client, "get_encoder") else None
    if kwargs.get("decode_responses") or getattr(encoder, "decode_responses", False):
        raise ValidationError(
            "redmodel needs a client with decode_responses=False: it decodes every field "
            "itself, by its declared type"
        )


def url_options(url: str | None, db: int | None, kwargs: dict[str, Any]
                ) -> tuple[str, dict[str, Any]]:
    """The URL (default ``$REDIS_URL``, else localhost) and client options of from_url.

    ``db`` wins over the URL's database (its ``/db`` path or ``?db=``): redis-py lets the
    URL win, so the database is taken out of the URL when ``db`` is given."""
    url = url or os.environ.get("REDIS_URL") or DEFAULT_URL
    options = dict(kwargs)
    if db is not None:
        url = without_db(url)
        options["db"] = db
    options.setdefault("decode_responses", False)
    check_url(url)
    return url, options


_NUMBER = re.compile(r"[0-9]+")
# a secret given as a query option (redis-py reads ?password=): its value up to the next
# "&" or "#" is masked
_QUERY_SECRET = re.compile(r"(?i)((?:^|[?&;])(?:password|ssl_password)=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``, for messages. Works on any text, even a
    URL nothing can parse (a bad port, a broken IPv6 address, a password holding an
    unencoded ``/``, ``?``, ``#`` or ``@``): everything between ``://`` and the LAST ``@`` of
    the text is the user part, shown as ``name:***@`` (``***@`` when it has no ``:`` or its
    name holds ``/``, ``?`` or ``#``); the value of a ``password=`` or ``ssl_password=``
    query option is ``***`` too. Text without ``://`` is not shown at all: nothing tells
    where a secret in it would be (a password pasted where the URL belongs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<text without ://, not shown>" if url else url
    hidden = [False] * len(rest)
    if "@" in rest:
        user = rest[:rest.rindex("@")]
        name, colon, _ = user.partition(":")
        keep = len(name) + 1 if colon and not set(name) & set("/?#") else 0
        hidden[keep:len(user)] = [True] * (len(user) - keep)
    for match in _QUERY_SECRET.finditer(rest):  # found in the text as written
        hidden[match.end(1):match.end()] = [True] * (match.end() - match.end(1))
    shown = "".join("***" if hide and (i == 0 or not hidden[i - 1]) else "" if hide else c
                    for i, (c, hide) in enumerate(zip(rest, hidden, strict=True)))
    return scheme + sep + shown


_CONNECTION_CLASSES = {"redis": Connection, "rediss": SSLConnection,
                       "unix": UnixDomainSocketConnection}
_POOL_OPTIONS = frozenset({"max_connections"})  # ConnectionPool's own, from the URL


@functools.cache
def _accepted(scheme: str) -> frozenset[str]:
    """The keyword arguments the connection class of ``scheme`` (and its bases) take."""
    names: set[str] = set(_POOL_OPTIONS)
    for klass in _CONNECTION_CLASSES[scheme].__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                names.add(param.name)
    names.discard("self")
    return frozenset(names)


_TIMEOUTS = ("socket_timeout", "socket_connect_timeout")
_COUNTS = {"db": 0, "socket_read_size": 1, "max_connections": 1, "health_check_interval": 0}
_BOOLS = ("socket_keepalive", "retry_on_timeout", "ssl_check_hostname", "legacy_responses")
# passed by redis-py as text although it means a switch or an object: text is always true
_NOT_AS_TEXT = ("decode_responses", "ssl_validate_ocsp", "ssl_validate_ocsp_stapled",
                "socket_keepalive_options", "retry", "retry_on_error", "credential_provider",
                "parser_class", "redis_connect_func", "event_dispatcher", "command_packer",
                "driver_info", "ssl_ocsp_context", "ssl_ocsp_expected_cert",
                "maint_notifications_config", "socket_type", "ssl_include_verify_flags",
                "ssl_exclude_verify_flags")


def _query_problem(scheme: str, name: str, value: str) -> str | None:
    """What is wrong with the query option ``name=value`` (our own words: never the value,
    which may be a secret), or None."""
    if name == "decode_responses":
        return ("the option decode_responses: redmodel needs replies as bytes (it decodes "
                "every field itself, by its declared type)")
    if name not in _accepted(scheme):
        hint = (" (TLS is asked for with a rediss:// URL)"
                if name.startswith("ssl") and scheme == "redis" else "")
        return (f"the option {name!r} is not one redis-py's {scheme}:// connection "
                f"takes{hint}")
    if name in _NOT_AS_TEXT:
        return f"the option {name!r} cannot be given in a URL (pass it as a keyword argument)"
    if name in _TIMEOUTS:
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            return f"the option {name} must be a finite number of seconds above 0"
    if name in _COUNTS:
        least = _COUNTS[name]
        if not (_NUMBER.fullmatch(value.strip()) and int(value) >= least):
            return f"the option {name} must be a whole number of at least {least}"
    if name == "protocol" and value.strip() not in ("2", "3"):
        return "the option protocol must be 2 or 3"
    if name in _BOOLS and value.strip().lower() not in TRUE_VALUES + FALSE_VALUES:
        return (f"the option {name} must be one of {'/'.join(TRUE_VALUES)} or "
                f"{'/'.join(v for v in FALSE_VALUES if v)}")
    return None


def _url_problem(url: str) -> str | None:
    """What is wrong with ``url`` for redis-py and redmodel, in our own words (never a piece
    of the URL: it may hold a secret), or None."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in _CONNECTION_CLASSES:
        return "the scheme must be redis://, rediss:// or unix://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a bad port
    except ValueError:
        parts = None
    misplaced_at = parts is None or "@" in parts.path + parts.fragment + "".join(
        k for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    if misplaced_at and "@" in url.partition("://")[2]:
        return ("it does not parse: a password holding '/', '?', '#' or '@' must be "
                    "percent-encoded (%2F, %3F, %23, %40)")
    if parts is None:
        return ("it does not parse: a port must be a number from 0 to 65535, an IPv6 "
                "address must be written in [brackets]")
    options = parse_qs(parts.query)
    if scheme in ("redis", "rediss") and "db" not in options:
        db = unquote(parts.path).strip("/")
        if db and not _NUMBER.fullmatch(db):
            return "the database path is not a number"
    for name, values in options.items():
        problem = _query_problem(scheme, name, values[0])
        if problem:
            return problem
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # redis-py's parser, as from_url
    except ValueError:
        return "redis-py cannot parse it"
    return None


def check_url(url: str) -> None:
    """Refuse, with :class:`ValidationError` naming ``url`` (secrets masked) and saying what
    is wrong in redmodel's words (redis-py's message may repeat part of the URL), a URL
    redmodel cannot use: another scheme than ``redis``/``rediss``/``unix``, a port that is
    not a number from 0 to 65535, a broken IPv6 address, a database path that is not a
    number (redis-py would silently use database 0), a password holding an unencoded
    ``/ ? # @``; a query option the connection class of the scheme does not take
    (``ssl=true`` on ``redis://``), ``decode_responses`` (redmodel needs bytes), a timeout
    that is not a finite number above 0, a count below its least (``max_connections`` 1),
    a switch that is not 1/true/yes/on or 0/false/no/off."""
    problem = _url_problem(url)
    if problem:
        raise ValidationError(f"cannot use the URL {redact_url(url)!r}: {problem}")


def without_db(url: str) -> str:
    """``url`` without the database it names: no ``?db=``, and for ``redis://`` and
    ``rediss://`` no ``/db`` path (a ``unix://`` path is the socket's). Everything else is
    kept as written, percent-escapes included."""
    parts = urlsplit(url)
    path = "" if parts.scheme in ("redis", "rediss") else parts.path
    query = "&".join(item for item in parts.query.split("&")
                     if item and unquote(item.split("=", 1)[0]) != "db")
    return (f"{parts.scheme}://{parts.netloc}{path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def is_cluster(client: Any) -> bool:
    return hasattr(client, "get_primaries")


TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("", "0", "false", "no", "off")


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """The switch ``name`` of ``env``: one of TRUE_VALUES or FALSE_VALUES (any case,
    surrounding blanks ignored; unset is false). Any other value is refused with
    :class:`ValidationError` naming the variable: ``REDIS_TLS=enabled`` must never mean a
    plain connection, nor ``REDIS_EXACTLY_ONCE=enabled`` the ordinary mode."""
    value = env.get(name)
    word = (value or "").strip().lower()
    if word in TRUE_VALUES:
        return True
    if word in FALSE_VALUES:
        return False
    raise ValidationError(
        f"{name} must be one of {'/'.join(TRUE_VALUES)} (on) or "
        f"{'/'.join(v for v in FALSE_VALUES if v)} or empty (off), not {value!r}")


def env_settings(
    env: Mapping[str, str] | None = None, prefix: str = "REDIS_"
) -> tuple[str, dict[str, Any], bool]:
    """(url, client keyword arguments, cluster) from environment variables.

    ``{prefix}URL`` wins when set. Otherwise ``{prefix}ENDPOINT`` (or ``HOST``), ``PORT``
    (6379, or 6380 with TLS), ``DB``, ``USERNAME``, ``PASSWORD``, ``TLS`` (1/true),
    ``CA_FILE``, ``CERT_FILE``, ``KEY_FILE`` build one. ``{prefix}CLUSTER=1`` makes a
    cluster client. Secrets stay out of the URL: they travel as keyword arguments.
    A switch (``TLS``, ``SSL``, ``CLUSTER``) with a value :func:`env_flag` does not know,
    a ``PORT`` that is not a number from 1 to 65535 or a ``DB`` that is not a number is a
    :class:`ValidationError` naming the variable, raised before any client is made.
    """
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(prefix + name)
        return value if value else None

    kwargs: dict[str, Any] = {}
    tls = env_flag(env, prefix + "TLS") | env_flag(env, prefix + "SSL")
    cluster = env_flag(env, prefix + "CLUSTER")
    for name, arg in (("USERNAME", "username"), ("PASSWORD", "password")):
        if get(name):
            kwargs[arg] = get(name)
    for name, arg in (("CA_FILE", "ssl_ca_certs"), ("CERT_FILE", "ssl_certfile"),
                      ("KEY_FILE", "ssl_keyfile")):
        if get(name):
            kwargs[arg] = get(name)
            tls = True
    url = get("URL")
    if url is None:
        host = get("ENDPOINT") or get("HOST") or "localhost"
        port = get("PORT")
        if host.count(":") == 1:  # "name:port", as some consoles hand endpoints out
            host, port = host.split(":")[0], port or host.split(":")[1]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address in a URL
        port = (port or ("6380" if tls else "6379")).strip()
        db = (get("DB") or "0").strip()
        if not (_NUMBER.fullmatch(port) and 1 <= int(port) <= 65535):
            raise ValidationError(f"{prefix}PORT must be a port number (1 to 65535), "
                                  f"not {port!r}")
        if not _NUMBER.fullmatch(db):
            raise ValidationError(f"{prefix}DB must be a database number, not {db!r}")
        url = f"{'rediss' if tls else 'redis'}://{host}:{port}/{db}"
    return url, kwargs, cluster


def env_exactly_once(prefix: str = "REDIS_", env: Mapping[str, str] | None = None) -> bool:
    """``{prefix}EXACTLY_ONCE`` (1/true/yes/on) switches a store from ``from_env`` to
    exactly-once mode (docs/failures.md)."""
    env = os.environ if env is None else env
    return env_flag(env, prefix + "EXACTLY_ONCE")


class Targets(Sequence[Any]):
    """Where a model-wide SCAN runs: every primary of a cluster, or the one server
    (``None``), asked of the client each time a plan walks it, never when the plan is
    built.

    A plan walks its targets after its first round trip or after the shell made the
    client ready (an asyncio cluster client knows no primaries before it has sent
    something: a list taken when the plan was built was empty, and a count of a stored
    model answered 0). Each pass over the targets sees the topology of that moment, so a
    pass that starts after a failover or after a node was added visits the new primaries.
    A cluster client that knows no primaries at all is an error, never an empty answer."""

    __slots__ = ("_client", "_cluster")

    def __init__(self, client: Any, cluster: bool) -> None:
        self._client = client
        self._cluster = cluster

    def _now(self) -> list[Any]:
        if not self._cluster:
            return [None]
        # one node per slot range: the owner of each slot in the client's slot table, not
        # every node it ever saw as a primary (after a failover the demoted primary, now a
        # replica holding the same keys, may still be listed as one: walking both would
        # count its objects twice)
        cache = getattr(getattr(self._client, "nodes_manager", None), "slots_cache", None)
        owners = {id(nodes[0]): nodes[0] for nodes in (cache or {}).values() if nodes}
        primaries = list(owners.values()) or list(self._client.get_primaries())
        if not primaries:
            raise ClusterDownError(
                "the cluster client knows no primaries (it has not reached the cluster): "
                "refusing to answer as if the model had no objects")
        return primaries

    def __iter__(self) -> Iterator[Any]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._now()[index]

    def __repr__(self) -> str:
        return "Targets(every primary)" if self._cluster else "Targets(the server)"


class ShellConfig:
    """What Store and AsyncStore hold besides the client: no I/O here."""

    def __init__(self, client: Any, chunk_size: int, exactly_once: bool = False,
                 resend: ResendPolicy | None = None, registry: bool = True) -> None:
        check_client(client)
        integer(chunk_size, "chunk_size", least=1)
        if resend is not None and not isinstance(resend, ResendPolicy):
            raise ValidationError(f"resend must be a redmodel.ResendPolicy or None, got "
                                  f"{type(resend).__name__}")
        self.client = client
        self.chunk_size = chunk_size
        self.cluster = is_cluster(client)
        self.exactly_once = flag(exactly_once, "exactly_once")
        self.resend = resend or DEFAULT_POLICY

        self._registry = Registry(flag(registry, "registry"), self._targets)
        self._use = self._registry.use

    def _targets(self) -> Targets:
        """Where a model-wide SCAN runs: every primary of a cluster, or the one server,
        asked when a plan walks them (see :class:`Targets`)."""
        return Targets(self.client, self.cluster)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"
