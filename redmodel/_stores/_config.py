"""Shared by Store and AsyncStore: client checks, URL and environment configuration, and
the cluster-aware pieces of batch execution that involve no I/O."""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload
from urllib.parse import SplitResult, parse_qsl, unquote, unquote_to_bytes, urlsplit

from redis.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.exceptions import ClusterDownError

from redmodel._args import MAX_BLOCK_SECONDS, MAX_PAGE, flag, integer, unsendable
from redmodel._errors import ValidationError
from redmodel._indexes._registry import Registry
from redmodel._transport._wire import DEFAULT_POLICY, ResendPolicy

__all__ = ["DEFAULT_URL", "ShellConfig", "Targets", "check_client", "check_kind", "check_url",
           "env_settings", "redact_url"]

DEFAULT_URL = "redis://localhost:6379/0"


def check_kind(client: Any, kinds: tuple[type, ...], shell: str, use: str) -> None:
    """Refuse, when a store is made, a client that is not one of ``kinds`` (a URL text,
    None, an asyncio client in a Store, a sync one in an AsyncStore): its first call would
    fail with a bare AttributeError or TypeError. The message names what to use."""
    if not isinstance(client, kinds):
        names = " or a ".join(f"{k.__module__}.{k.__qualname__}" for k in kinds)
        got = type(client)
        raise ValidationError(f"{shell}(client) takes a {names}, got "
                              f"{got.__module__}.{got.__qualname__}: {use}")


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


MAX_DB = 2**31 - 1
"""The largest database number: the server parses SELECT's index as a 32-bit int (and
then refuses one its ``databases`` setting does not have, at connect)."""

# ASCII digits only: int() takes other scripts' digits, "_" and blanks too
_WHOLE = re.compile(r"[0-9]{1,19}")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def whole(text: str, least: int, most: int) -> int | None:
    """``text`` as an int when it is ASCII digits only (no sign, blank, ``_`` or other
    script's digits, all of which Python's int() takes) from ``least`` to ``most``."""
    if not _WHOLE.fullmatch(text):
        return None
    number = int(text)
    return number if least <= number <= most else None


def _seconds_text(text: str) -> float | None:
    """``text`` as seconds when it is an ASCII decimal number above 0 and at most
    MAX_BLOCK_SECONDS (not "nan", "inf", "1_0", nor a fullwidth digit)."""
    if not _DECIMAL.fullmatch(text):
        return None
    number = float(text)
    return number if 0 < number <= MAX_BLOCK_SECONDS else None


def store_args(*, cluster: Any = False, exactly_once: Any = False, registry: Any = True,
               chunk_size: Any = 500, db: Any = None) -> None:
    """Check the arguments of a store factory (from_url, from_env) before any client is
    made (a cluster client connects when it is made): ``cluster``, ``exactly_once`` and
    ``registry`` are bools, ``chunk_size`` an int of at least 1, ``db`` None or an int
    from 0 to MAX_DB. Else ValidationError naming the argument."""
    flag(cluster, "cluster")
    flag(exactly_once, "exactly_once")
    flag(registry, "registry")
    integer(chunk_size, "chunk_size", least=1)
    if db is not None:
        integer(db, "db", least=0, most=MAX_DB)


def _check_keywords(options: Mapping[str, Any]) -> None:
    """The keyword arguments for redis-py that are seconds, counts or switches, checked as
    their URL forms are: a timeout is None or a number of seconds above 0 and at most
    MAX_BLOCK_SECONDS, a count an int (not a bool) in its range, a switch a bool.
    Else ValidationError naming the argument (never its value: it may be a secret set by
    mistake in the wrong place). A text (``password=``, ``username=``, ``client_name=``,
    ...) holding a lone surrogate is refused as in a URL: redis-py would fail to encode
    it at the first command, with an error repeating it."""
    for name, value in options.items():
        if isinstance(value, str) and unsendable(value):
            raise ValidationError(f"{name} holds a lone surrogate (text that is not "
                                  "UTF-8-encodable; its value is not shown): pass bytes "
                                  "for a secret that is not UTF-8")
        if name == "health_check_interval":  # seconds; 0 (the default) checks never
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 <= value <= MAX_BLOCK_SECONDS):
                raise ValidationError(f"{name} must be a number of seconds from 0 to "
                                      f"{MAX_BLOCK_SECONDS:.0e}, got {type(value).__name__}")
        elif name in _TIMEOUTS and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 < value <= MAX_BLOCK_SECONDS):
                raise ValidationError(f"{name} must be None or a number of seconds above 0 "
                                      f"and at most {MAX_BLOCK_SECONDS:.0e}, got "
                                      f"{type(value).__name__}")
        elif name in _COUNTS and not (value is None and name == "max_connections"):
            least, most = _COUNTS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not (
                    least <= value <= most):
                raise ValidationError(f"{name} must be an int from {least} to {most}, got "
                                      f"{type(value).__name__}")
        elif name in _BOOLS and not isinstance(value, bool):
            raise ValidationError(f"{name} must be True or False, got "
                                  f"{type(value).__name__}")
        elif name == "protocol" and value is not None and (
                type(value) is not int or value not in (2, 3)):
            raise ValidationError(f"protocol must be 2 or 3, got {type(value).__name__}")


def url_options(url: str | None, db: int | None, kwargs: dict[str, Any],
                cluster: bool = False) -> tuple[str, dict[str, Any]]:
    """The URL (default ``$REDIS_URL``, else localhost) and client options of from_url.

    ``db`` wins over the URL's database (its ``/db`` path or ``?db=``): redis-py lets the
    URL win, so the database is taken out of the URL when ``db`` is given. For a
    ``cluster`` client, a URL or option it cannot use (a ``unix://`` socket, a database
    other than 0) is a ValidationError before the client is made (redis-py's
    RedisClusterException is not a RedisError, and its message may repeat the URL)."""
    if db is not None:
        integer(db, "db", least=0, most=MAX_DB)
    _check_keywords(kwargs)
    if url is None:  # an empty url is refused: it is no URL, not "the default"
        url = os.environ.get("REDIS_URL") or DEFAULT_URL
    if not isinstance(url, str):
        raise ValidationError(f"the URL must be a str, got {type(url).__name__}")
    check_url(url)  # as written: without_db reads it as urllib does (tabs dropped)
    options = dict(kwargs)
    if db is not None:
        url = without_db(url)
        options["db"] = db
    options.setdefault("decode_responses", False)
    _check_names(url.partition("://")[0], options, cluster)
    if cluster:
        _check_cluster_url(url, options)
    return _secrets_as_bytes(url, options), options


# what redis-py's from_url and its connection pools take besides a connection's arguments
_POOL_KEYWORDS = frozenset({"connection_class", "max_connections", "cache_factory", "cache",
                            "cache_config", "maint_notifications_config",
                            "single_connection_client", "auto_close_connection_pool"})


@functools.cache
def _keywords(scheme: str, cluster: bool) -> frozenset[str]:
    """The keyword arguments from_url passes on for ``scheme``: those the connection class
    of the scheme takes (sync or asyncio), its pool's, and a cluster client's own."""
    from redis.asyncio import cluster as async_cluster  # noqa: PLC0415
    from redis.asyncio import connection as async_connection  # noqa: PLC0415
    from redis.cluster import RedisCluster  # noqa: PLC0415

    other = {"redis": async_connection.Connection, "rediss": async_connection.SSLConnection,
             "unix": async_connection.UnixDomainSocketConnection}[scheme]
    names = set(_accepted(scheme)) | _init_names(other) | _POOL_KEYWORDS
    if cluster:
        names |= _init_names(RedisCluster) | _init_names(async_cluster.RedisCluster)
    return frozenset(names)


def _init_names(klass: type) -> set[str]:
    names: set[str] = set()
    for each in klass.__mro__:
        init = each.__dict__.get("__init__")
        if init is not None:
            names.update(p.name for p in inspect.signature(init).parameters.values()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    names.discard("self")
    return names


def _check_names(scheme: str, options: Mapping[str, Any], cluster: bool) -> None:
    """Refuse a keyword argument redis-py's client for ``scheme`` does not take (a
    misspelt ``socket_timout=``, ``ssl_password=`` on a redis:// URL): it would fail at
    the first command with a bare TypeError. A ``connection_class`` of the caller's own
    may take anything."""
    if "connection_class" in options:
        return
    for name in options:
        if name not in _keywords(scheme, cluster):
            hint = (" (TLS is asked for with a rediss:// URL)"
                    if name.startswith("ssl") and scheme == "redis" else "")
            raise ValidationError(f"the keyword argument {name!r} is not one redis-py's "
                                  f"{scheme}:// client takes{hint}")


def _secrets_as_bytes(url: str, options: dict[str, Any]) -> str:
    """``url`` without its username and password when one of them is the escape of bytes
    that are not UTF-8 (``%FF``): redis-py would decode them to U+FFFD, and send other
    bytes than written. They go in ``options`` as those bytes instead (the URL's
    credentials win over keyword arguments, as in redis-py). ``url`` as is otherwise."""
    parts = urlsplit(url)
    user, at, hostport = parts.netloc.rpartition("@")
    written: dict[str, str] = {}
    if at:
        name, _, password = user.partition(":")
        written.update({k: v for k, v in (("username", name), ("password", password)) if v})
    kept = []
    for item in parts.query.split("&") if parts.query else ():
        name = unquote(item.partition("=")[0])
        if name in ("username", "password"):  # never both in the URL (refused as twice)
            written[name] = item.partition("=")[2]
        else:
            kept.append(item)
    raw = {name: unquote_to_bytes(text) for name, text in written.items()}
    if all(_is_utf8(value) for value in raw.values()):
        return url
    options.update({name: value.decode() if _is_utf8(value) else value
                    for name, value in raw.items()})
    query = "&".join(kept)
    return f"{parts.scheme}://{hostport}{parts.path}" + (f"?{query}" if query else "")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_cluster_url(url: str, options: Mapping[str, Any]) -> None:
    """Refuse what a cluster client cannot use: a unix:// socket (a cluster is reached
    over TCP, its nodes announce host:port) or a database other than 0 (a cluster has
    only database 0), named with the URL's secrets masked."""
    problem = None
    if url.startswith("unix://"):
        problem = ("a cluster client connects to host:port nodes: a unix:// socket cannot "
                   "name a cluster node")
    else:
        parsed = parse_url(url)  # type: ignore[no-untyped-call]  # checked by check_url
        if options.get("db", parsed.get("db", 0)) not in (0, None):
            problem = "a Redis Cluster has only database 0 (drop the /db path or ?db=)"
    if problem:
        raise ValidationError(f"cannot use the URL {redact_url(url)!r} with cluster=True: "
                              f"{problem}")


# a query option's name (as written: it may be percent-encoded, "pass%77ord") and its "="
# (or "%3D": an item "password%3DS3CRET" is refused, and its tail masked as a password's)
_QUERY_NAME = re.compile(r"(?:^|[?&;])([^=&?#;]*?)(?:=|%3[dD])")
_SECRET_OPTIONS = ("password", "ssl_password")


def _hidden(rest: str) -> list[bool]:
    """Which characters of ``rest`` (a URL after its ``://``) may belong to a secret:
    everything up to the LAST ``@`` but the username (``***@`` when it has no ``:`` or
    its name holds ``/``, ``?`` or ``#``), and everything after the ``=`` of a
    ``password=`` or ``ssl_password=`` query option, whatever its name's case or
    percent-encoding or blanks, to the end of the text: a password holding an unencoded ``&`` or
    ``#`` does not end there (redis-py would cut it, but the rest is still the password
    as its owner wrote it)."""
    hidden = [False] * len(rest)
    if "@" in rest:
        user = rest[:rest.rindex("@")]
        name, colon, _ = user.partition(":")
        keep = len(name) + 1 if colon and not set(name) & set("/?#") else 0
        hidden[keep:len(user)] = [True] * (len(user) - keep)
    for match in _QUERY_NAME.finditer(rest):  # found in the text as written
        # without blanks or control characters: "pass\tword" is "password" once urllib
        # has dropped its tab, and "p assword" is refused but still masked
        name = _BLANK.sub("", unquote(match.group(1).replace("+", " "))).lower()
        if name in _SECRET_OPTIONS:
            hidden[match.end():] = [True] * (len(rest) - match.end())
            break
    return hidden


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``, for messages. Works on any text, even a
    URL nothing can parse (a bad port, a broken IPv6 address, a password holding an
    unencoded ``/``, ``?``, ``#``, ``&`` or ``@``): everything between ``://`` and the
    LAST ``@`` of the text is the user part, shown as ``name:***@`` (``***@`` when it has
    no ``:`` or its name holds ``/``, ``?`` or ``#``); everything after ``password=`` or
    ``ssl_password=`` in the query (any case, even percent-encoded) is ``***``, to the end
    of the text. Text without ``://`` is not shown at all: nothing tells where a secret
    in it would be (a password pasted where the URL belongs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<text without ://, not shown>" if url else url
    hidden = _hidden(rest)
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
# the least and the most of a count (health_check_interval is seconds, as an int)
_COUNTS = {"db": (0, MAX_DB), "socket_read_size": (1, MAX_PAGE),
           "max_connections": (1, MAX_PAGE), "health_check_interval": (0, MAX_BLOCK_SECONDS),
           "port": (1, 65535),
           "ssl_min_version": (0, MAX_PAGE)}
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
    if name in _TIMEOUTS and _seconds_text(value) is None:
        return (f"the option {name} must be a number of seconds above 0 and at most "
                f"{MAX_BLOCK_SECONDS:.0e}, in ASCII digits")
    if name in _COUNTS:
        least, most = _COUNTS[name]
        if whole(value, least, most) is None:
            return (f"the option {name} must be a whole number from {least} to {most}, in "
                    "ASCII digits")
    if name == "protocol" and value not in ("2", "3"):
        return "the option protocol must be 2 or 3"
    if name in _BOOLS and value.lower() not in URL_TRUE + URL_FALSE:
        return (f"the option {name} must be one of {'/'.join(URL_TRUE)} or "
                f"{'/'.join(URL_FALSE)}")
    return None


# the switches of a URL query: what redis-py's to_bool reads the same way ("off" and
# " no" are true to it, so they are refused)
URL_TRUE = ("1", "true", "yes", "on")
URL_FALSE = ("0", "false", "no")


def _url_problem(url: str) -> str | None:
    """What is wrong with ``url`` for redis-py and redmodel, in our own words (never a piece
    of the URL: it may hold a secret), or None."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in _CONNECTION_CLASSES:
        return "the scheme must be redis://, rediss:// or unix://"
    if unsendable(url):  # redis-py would fail to encode it at the first command
        return ("it holds a lone surrogate (text that is not UTF-8-encodable): no host, "
                "user name, password or option value can hold one")
    rest = url.partition("://")[2]
    parts: SplitResult | None
    try:
        parts = urlsplit(url)
    except ValueError:  # a broken [IPv6] address
        parts = None
    misplaced_at = parts is None or "@" in parts.path + parts.fragment + "".join(
        k for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    if misplaced_at and "@" in rest:
        return ("it does not parse: a password holding '/', '?', '#' or '@' must be "
                    "percent-encoded (%2F, %3F, %23, %40)")
    if parts is None:
        return "it does not parse: an IPv6 address must be written in [brackets]"
    if "#" in rest:
        return ("a '#' has no meaning in a redis URL (redis-py drops what follows it): a "
                "password holding '#' must be percent-encoded (%23)")
    problem = _authority_problem(scheme, parts)  # a port " 1" is named as a bad port
    if problem:
        return problem
    if _BLANK.search(url):  # urllib drops tabs and line breaks: "h:1\n0" is port 10
        return ("it holds a blank or a control character (space, tab, CR, LF, ...), which "
                "Python's URL parser drops or keeps unlike what is written: percent-encode "
                "one a password holds (%20, %09, %0A)")
    if scheme in ("redis", "rediss"):  # checked even when ?db= wins over it
        db = unquote(parts.path).strip("/")
        if db and whole(db, 0, MAX_DB) is None:
            return (f"the database path is not a number from 0 to {MAX_DB} in ASCII "
                    "digits")
    problem = _options_problem(scheme, rest, parts)
    if problem:
        return problem
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # redis-py's parser, as from_url
    except ValueError:
        return "redis-py cannot parse it"
    return None


# what urllib drops (tab, CR, LF) or reads otherwise than written: blanks, control bytes
_BLANK = re.compile(r"[\x00-\x20\x7f]")


def _host_port(netloc: str) -> tuple[str, str | None]:
    """(host, port text or None when no ``:``) of a URL's authority, as urllib splits it:
    after the last ``@``; an IPv6 address in brackets; the port after the first ``:``."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        return host, (after[1:] if after[:1] == ":" else after or None)
    host, colon, port = hostport.partition(":")
    return host, port if colon else None


def _authority_problem(scheme: str, parts: SplitResult) -> str | None:
    """What is wrong with the URL's host and port (or, for ``unix://``, its socket path),
    or None: parts redis-py would drop or fill in without a word are refused."""
    host, port = _host_port(parts.netloc)
    if scheme == "unix":
        if host or port is not None:  # redis-py drops them: unix://run/x.sock is /x.sock
            return ("a unix:// URL names its socket by a path after three slashes "
                    "(unix:///run/redis.sock); redis-py drops a host or port written "
                    "after unix://")
        if not parts.path:
            return "a unix:// URL must name its socket's path (unix:///run/redis.sock)"
        return None
    if not host:  # redis-py would connect to localhost
        return ("the URL names no host (redis://host:port/db; an IPv6 address is written "
                "in [brackets])")
    if port is not None and whole(port, 1, 65535) is None:
        return ("the port must be a number from 1 to 65535 in ASCII digits (redis-py reads "
                "an empty port or port 0 as no port, and connects to 6379)")
    return None


def _options_problem(scheme: str, rest: str, parts: SplitResult) -> str | None:
    """What is wrong with the URL's query options (``rest``: the URL after ``://``, whose
    tail is the query of ``parts``), or None. An option whose text may be part of a
    secret (after a ``password=`` option, or before the last ``@``) is not named: a
    password holding an unencoded ``&`` would otherwise show its tail as an option's
    name. An option given twice, or one the URL's authority also gives (``?port=`` with
    ``host:port``, ``?password=`` with ``:password@``, ``?host=``), is refused: redis-py
    would keep one of the two without a word."""
    query = parts.query
    if not query:
        return None
    hidden = _hidden(rest)
    host, port = _host_port(parts.netloc)
    # what the authority gives, which redis-py takes over the query's option
    given = {"host": bool(host), "port": port is not None, "username": bool(parts.username),
             "password": bool(parts.password), "path": bool(parts.path) and scheme == "unix"}
    seen: set[str] = set()
    at = len(rest) - len(query)
    for item in query.split("&"):
        start, at = at, at + len(item) + 1
        if not item and hidden[start - 1]:  # "?password=a&": is the "&" part of it?
            return ("a query option that may be part of a password cannot be used (not "
                    "shown): a password holding '&', '#', '?', '@' or '+' must be "
                    "percent-encoded (%26, %23, %3F, %40, %2B)")
        if not item:
            continue
        raw_name, eq, raw_value = item.partition("=")
        name = unquote(raw_name.replace("+", " "))  # as parse_qs reads them
        value = unquote(raw_value.replace("+", " "))
        if not eq:
            problem: str | None = "a query item has no '=' (redis-py drops it)"
        elif not raw_value:
            problem = f"the option {name!r} has no value (redis-py drops it)"
        elif "+" in item:  # parse_qs reads it as a space; the user part reads it as '+'
            problem = (f"the option {name!r} holds a '+', which redis-py reads as a space: "
                       "write a '+' as %2B (and a space as %20)")
        elif unquote(value) != value:  # redis-py unquotes what parse_qs unquoted
            problem = (f"the option {name!r} holds an escape such as %2541, which redis-py "
                       "decodes twice (to 'A', not '%41'): pass it as a keyword argument")
        elif name in seen:
            problem = (f"the option {name!r} is given twice (redis-py would keep one and "
                       "drop the other): give it once")
        elif given.get(name):
            problem = (f"the option {name!r} repeats what the URL's host part says "
                       "(redis-py would keep that one and drop the option): give it once")
        else:
            problem = _query_problem(scheme, name, value)
        seen.add(name)
        if problem and hidden[start]:
            return ("a query option that may be part of a password cannot be used (not "
                    "shown): a password holding '&', '#', '?', '@' or '+' must be "
                    "percent-encoded (%26, %23, %3F, %40, %2B)")
        if problem:
            return problem
    return None


def check_url(url: str) -> None:
    """Refuse, with :class:`ValidationError` naming ``url`` (secrets masked) and saying what
    is wrong in redmodel's words (redis-py's message may repeat part of the URL), a URL
    redmodel cannot use: another scheme than ``redis``/``rediss``/``unix``, a port that is
    not a number from 1 to 65535, a broken IPv6 address, a database path that is not a
    number from 0 to MAX_DB (redis-py would silently use database 0), a password holding
    an unencoded ``/ ? # @``, any ``#``; a query item without ``=``, an option the
    connection class of the scheme does not take (``ssl=true`` on ``redis://``),
    ``decode_responses`` (redmodel needs bytes), a timeout that is not a number of seconds
    above 0 and at most MAX_BLOCK_SECONDS, a count out of its range (``db`` 0 to MAX_DB,
    ``max_connections`` 1 to 2**31-1), a switch that is not 1/true/yes/on or 0/false/no
    (what redis-py reads the same way). Numbers are ASCII digits only. A URL is read as
    written or refused: a blank or control character anywhere (urllib drops tabs and line
    breaks), an empty port, a ``?port=`` that is not a port, no host, a ``unix://`` URL
    with a host part or without a path, an option given twice or repeating the host part
    (``?port=`` with ``host:port``) are refused."""
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
    if not isinstance(prefix, str):
        raise ValidationError(f"prefix must be a str, got {type(prefix).__name__}")
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(prefix + name)
        return value if value else None

    kwargs: dict[str, Any] = {}
    tls = env_flag(env, prefix + "TLS") | env_flag(env, prefix + "SSL")
    cluster = env_flag(env, prefix + "CLUSTER")
    for name, arg in (("USERNAME", "username"), ("PASSWORD", "password")):
        value = get(name)
        if value and unsendable(value):  # bytes that are not UTF-8 (os.environ holds them
            try:  # as U+DC80..U+DCFF): the secret is those bytes
                kwargs[arg] = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise ValidationError(f"{prefix}{name} holds a lone surrogate that no bytes "
                                      "stand for") from None
        elif value:
            kwargs[arg] = value
    for name, arg in (("CA_FILE", "ssl_ca_certs"), ("CERT_FILE", "ssl_certfile"),
                      ("KEY_FILE", "ssl_keyfile")):
        if get(name):
            kwargs[arg] = get(name)
            tls = True
    url = get("URL")
    if url is not None:
        tls_vars = [prefix + name for name in ("TLS", "SSL", "CA_FILE", "CERT_FILE",
                                               "KEY_FILE")
                    if (get(name) if name.endswith("FILE") else env_flag(env, prefix + name))]
        if tls_vars and not url.startswith("rediss://"):
            raise ValidationError(
                f"{' and '.join(tls_vars)} ask for TLS, but {prefix}URL is not a rediss:// "
                f"URL (a redis:// or unix:// URL says no TLS): write {prefix}URL as "
                f"rediss://... or unset {', '.join(tls_vars)}")
    else:
        host, port = _endpoint(prefix, get("ENDPOINT"), get("HOST"), get("PORT"))
        port = (port or ("6380" if tls else "6379")).strip()
        db = (get("DB") or "0").strip()
        if whole(port, 1, 65535) is None:
            raise ValidationError(f"{prefix}PORT must be a port number (1 to 65535) in "
                                  f"ASCII digits, not {port!r}")
        if whole(db, 0, MAX_DB) is None:
            raise ValidationError(f"{prefix}DB must be a database number (0 to {MAX_DB}) "
                                  f"in ASCII digits, not {db!r}")
        url = f"{'rediss' if tls else 'redis'}://{host}:{port}/{db}"
    return url, kwargs, cluster


# a host name (letters, digits, '.', '-', '_'), an IPv4 address, an IPv6 address bare or
# in [brackets]; then, for the first two and the bracketed one, an optional ":port"
_ENDPOINT = re.compile(r"(?P<name>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._-]+)?\])"
                       r"(?::(?P<port>[^:]*))?|(?P<v6>[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:"
                       r"[0-9A-Fa-f:.]*(?:%[A-Za-z0-9._-]+)?)")


def _endpoint(prefix: str, endpoint: str | None, host: str | None, port: str | None
              ) -> tuple[str, str | None]:
    """(host as a URL writes it, port or None) from ``{prefix}ENDPOINT`` (or ``HOST``) and
    ``{prefix}PORT``. The endpoint is a host name, an IPv4 or IPv6 address, with an
    optional ``:port`` (as some consoles hand endpoints out) that must then agree with
    ``{prefix}PORT``. Anything else is refused without showing it: an endpoint holding
    ``@`` is a connection string with credentials, which go in ``{prefix}USERNAME`` and
    ``{prefix}PASSWORD``."""
    name = prefix + ("ENDPOINT" if endpoint else "HOST")
    text = endpoint or host or "localhost"
    found = None if "@" in text else _ENDPOINT.fullmatch(text)
    if found is None:
        why = (f" (it holds '@': credentials go in {prefix}USERNAME and {prefix}PASSWORD)"
               if "@" in text else "")
        raise ValidationError(f"{name} must be a host name or an IP address, with an "
                              f"optional :port{why}; its value is not shown (it may hold "
                              "a secret)")
    if found.group("v6"):  # a zone's "%" is "%25" in a URL: redis-py decodes the host
        return f"[{text.replace('%', '%25')}]", port
    own = found.group("port")
    if own is not None:
        if whole(own, 1, 65535) is None:
            raise ValidationError(f"{name}'s :port must be a port number (1 to 65535) in "
                                  "ASCII digits; its value is not shown (it may hold a "
                                  "secret)")
        if port is not None and port.strip() != own:
            raise ValidationError(f"{name} names the port {own} and {prefix}PORT the port "
                                  f"{port.strip()!r}: set one of them, or the same port")
        port = own
    return found.group("name").replace("%", "%25"), port


def env_exactly_once(prefix: str = "REDIS_", env: Mapping[str, str] | None = None) -> bool:
    """``{prefix}EXACTLY_ONCE`` (1/true/yes/on) switches a store from ``from_env`` to
    exactly-once mode (docs/failures.md)."""
    if not isinstance(prefix, str):
        raise ValidationError(f"prefix must be a str, got {type(prefix).__name__}")
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

    def _chunk(self, chunk_size: Any) -> int:
        """A call's ``chunk_size=``: the store's when None, else checked as the store's
        (an int of at least 1; 0, False and any bool refused, never taken for its
        truthiness) before anything is sent."""
        if chunk_size is None:
            return self.chunk_size
        return integer(chunk_size, "chunk_size", least=1)

    def _targets(self) -> Targets:
        """Where a model-wide SCAN runs: every primary of a cluster, or the one server,
        asked when a plan walks them (see :class:`Targets`)."""
        return Targets(self.client, self.cluster)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"
