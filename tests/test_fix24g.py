"""Session 24, helper G: the guarantee fixes left open at stop 23, each tested as a kind.

1. Every flag of the store factories and constructors takes only a bool, every count and
   duration (theirs and redis-py's keyword arguments) only a number in range: a
   ValidationError naming the argument, before any client is made.
2. Every number read from a URL (path, query option) or an environment variable is ASCII
   digits in range (db 0..2**31-1), else a ValidationError with the password masked.
3. No piece of a password (holding ``& # @ : / % ? =``) appears in an error, a repr or a
   log, whether it is in the user part or a ``?password=`` option.
4. A flat delete whose reply is lost names in ``OutcomeUnknownError.keys`` every key it may
   have touched (docs/failures.md: the keys it was sent with; a script touches no other).
5. Every exception leaving a public ``Codec`` method is a redmodel error naming the codec;
   a compression level is checked when the layer is made.
"""

from __future__ import annotations

import contextlib
import io
import logging
import lzma
import math
import os
import re
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._stores._config import redact_url
from redmodel.cli import _app
from redmodel.codecs import (
    Bz2Transform,
    Codec,
    FernetTransform,
    JsonSerializer,
    LzmaTransform,
    ZlibTransform,
    codec,
)
from redmodel.containers import Consumer, Queue
from redmodel.testing import FaultProxy, RedisServer, has
from redmodel.transactions import RetryPolicy
from tests.budget import scaled

URL = "redis://127.0.0.1:1/0"  # nothing listens: a store made on it never connects here


# ---- 1. flags, counts and durations of the factories and constructors -------------------

NOT_BOOLS = st.one_of(
    st.integers(-2, 2), st.integers(min_value=2**63), st.floats(allow_nan=True),
    st.sampled_from(["no", "false", "0", "", "True", "yes", b"1"]), st.none(),
    st.lists(st.booleans(), max_size=1))


def _client() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=1)


FLAG_CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "from_url cluster": ("cluster", lambda v: redmodel.Store.from_url(URL, cluster=v)),
    "async from_url cluster": ("cluster",
                               lambda v: redmodel.AsyncStore.from_url(URL, cluster=v)),
    "from_url exactly_once": ("exactly_once",
                              lambda v: redmodel.Store.from_url(URL, exactly_once=v)),
    "from_url registry": ("registry", lambda v: redmodel.Store.from_url(URL, registry=v)),
    "async from_url registry": ("registry",
                                lambda v: redmodel.AsyncStore.from_url(URL, registry=v)),
    "from_env exactly_once": ("exactly_once",  # None means "read REDIS_EXACTLY_ONCE"
                              lambda v: redmodel.Store.from_env(exactly_once=v)),
    "Store exactly_once": ("exactly_once", lambda v: redmodel.Store(_client(), exactly_once=v)),
    "Store registry": ("registry", lambda v: redmodel.Store(_client(), registry=v)),
    "from_url socket_keepalive": (
        "socket_keepalive", lambda v: redmodel.Store.from_url(URL, socket_keepalive=v)),
    "from_url retry_on_timeout": (
        "retry_on_timeout", lambda v: redmodel.Store.from_url(URL, retry_on_timeout=v)),
}


@settings(max_examples=scaled(60))
@given(call=st.sampled_from(sorted(FLAG_CALLS)), value=NOT_BOOLS)
def test_every_factory_flag_takes_only_a_bool(call: str, value: Any) -> None:
    name, make = FLAG_CALLS[call]
    if value is None and call == "from_env exactly_once":
        value = "no"
    with pytest.raises(redmodel.ValidationError, match=name):
        make(value)


def _out_of(least: float, most: float, *, whole: bool, none_ok: bool) -> st.SearchStrategy[Any]:
    """Every kind of value that is not a number from ``least`` to ``most`` (an int when
    ``whole``): below, above (beyond 2**63 too), NaN, infinities, bools, text, bytes,
    and None unless ``none_ok``."""
    kinds = [st.integers(max_value=math.ceil(least) - 1),
             st.integers(min_value=math.floor(most) + 1),
             st.integers(min_value=2**63, max_value=2**70),
             st.sampled_from([math.nan, math.inf, -math.inf, -0.0 if least > 0 else -1.0]),
             st.booleans(), st.sampled_from(["1", "\uff15", "1_0", " 1", "nan"]), st.just(b"1")]
    if whole:
        kinds.append(st.floats(float(least), float(most)).filter(lambda x: not x.is_integer()))
        kinds.append(st.floats(float(max(least, 1)), 1e6).map(math.floor).map(float))  # 5.0
    else:
        kinds.append(st.floats(min_value=most * 2, allow_infinity=False))
    if not none_ok:
        kinds.append(st.none())
    return st.one_of(kinds)


_BLOCK = 1e9
NUMBER_CALLS: list[tuple[str, Callable[[Any], Any], st.SearchStrategy[Any]]] = [
    ("db", lambda v: redmodel.Store.from_url(URL, db=v),
     _out_of(0, 2**31 - 1, whole=True, none_ok=True)),
    ("db", lambda v: redmodel.AsyncStore.from_url(URL, db=v),
     _out_of(0, 2**31 - 1, whole=True, none_ok=True)),
    ("chunk_size", lambda v: redmodel.Store.from_url(URL, chunk_size=v),
     _out_of(1, 2**63 - 1, whole=True, none_ok=False)),
    ("chunk_size", lambda v: redmodel.Store(_client(), chunk_size=v),
     _out_of(1, 2**63 - 1, whole=True, none_ok=False)),
    ("socket_timeout", lambda v: redmodel.Store.from_url(URL, socket_timeout=v),
     _out_of(math.ulp(0), _BLOCK, whole=False, none_ok=True)),
    ("socket_connect_timeout",
     lambda v: redmodel.AsyncStore.from_url(URL, socket_connect_timeout=v),
     _out_of(math.ulp(0), _BLOCK, whole=False, none_ok=True)),
    ("max_connections", lambda v: redmodel.Store.from_url(URL, max_connections=v),
     _out_of(1, 2**31 - 1, whole=True, none_ok=True)),
    ("socket_read_size", lambda v: redmodel.Store.from_url(URL, socket_read_size=v),
     _out_of(1, 2**31 - 1, whole=True, none_ok=False)),
    ("health_check_interval", lambda v: redmodel.Store.from_url(URL, health_check_interval=v),
     _out_of(0, _BLOCK, whole=False, none_ok=False)),
    ("port", lambda v: redmodel.Store.from_url(URL, port=v),
     _out_of(1, 65535, whole=True, none_ok=False)),
    ("backoff_base", lambda v: RetryPolicy(backoff_base=v),
     _out_of(0, 1e11, whole=False, none_ok=False)),
    ("backoff_max", lambda v: RetryPolicy(backoff_max=v),
     _out_of(0, 1e11, whole=False, none_ok=False)),
    ("poll", lambda v: Consumer(Queue(redmodel.Store(_client()), "g24q", int), poll=v),
     _out_of(math.ulp(0), _BLOCK, whole=False, none_ok=False)),
]


@settings(max_examples=scaled(80))
@given(data=st.data(), at=st.integers(0, len(NUMBER_CALLS) - 1))
def test_every_factory_count_and_duration_is_checked_before_a_client_is_made(
        data: st.DataObject, at: int) -> None:
    name, make, bad = NUMBER_CALLS[at]
    value = data.draw(bad, label=name)
    with pytest.raises(redmodel.ValidationError, match=name):
        make(value)


_PROXY = FaultProxy("127.0.0.1", 1)  # never started: arming checks its arguments only
TESTING_CALLS: list[tuple[str, Callable[[Any], Any], st.SearchStrategy[Any]]] = [
    ("target_port", lambda v: FaultProxy("127.0.0.1", v),
     _out_of(1, 65535, whole=True, none_ok=False)),
    ("times", lambda v: _PROXY.lose_reply("GET", times=v),
     _out_of(0, 2**63 - 1, whole=True, none_ok=False)),
    ("seconds", lambda v: _PROXY.stall("GET", v), _out_of(math.ulp(0), _BLOCK, whole=False,
                                                         none_ok=False)),
    ("count", _PROXY.refuse_connections,
     _out_of(0, 2**63 - 1, whole=True, none_ok=False)),
    ("timeout", lambda v: _PROXY.wait_fired(0, timeout=v),
     _out_of(math.ulp(0), _BLOCK, whole=False, none_ok=False)),
    ("startup_timeout", lambda v: RedisServer(startup_timeout=v),
     _out_of(math.ulp(0), _BLOCK, whole=False, none_ok=False)),
    ("tls", lambda v: RedisServer(tls=v), NOT_BOOLS),
]


@settings(max_examples=scaled(50))
@given(data=st.data(), at=st.integers(0, len(TESTING_CALLS) - 1))
def test_the_testing_helpers_check_their_arguments(data: st.DataObject, at: int) -> None:
    """redmodel.testing is public API too: a fault proxy armed with ``times=-1`` or
    ``seconds=nan`` (or a wait of ``timeout=inf``) fired never or waited forever."""
    name, make, bad = TESTING_CALLS[at]
    value = data.draw(bad, label=name)
    with pytest.raises(redmodel.ValidationError, match=name):
        make(value)
    assert _PROXY.armed == 0


def test_factory_numbers_at_their_limits_are_accepted() -> None:
    for store in (redmodel.Store.from_url(URL, db=2**31 - 1, socket_timeout=_BLOCK,
                                          max_connections=2**31 - 1, health_check_interval=0.5,
                                          socket_keepalive=True, protocol=3, cluster=False),
                  redmodel.Store.from_url(URL, db=0, socket_timeout=None, port=65535)):
        store.close()
    with pytest.raises(redmodel.ValidationError, match="prefix"):
        redmodel.Store.from_env(prefix=5)  # type: ignore[arg-type]
    with pytest.raises(redmodel.ValidationError, match="protocol"):
        redmodel.Store.from_url(URL, protocol=True)
    with pytest.raises(redmodel.ValidationError, match="transaction"):
        redmodel.transaction(5)  # type: ignore[call-overload]


# ---- 2. numbers in URLs and environment variables -----------------------------------------

SECRET = "Pw0rdSecret"

#: text that Python's int()/float() read as a number but is not ASCII digits in range
BAD_NUMBER_TEXT = st.one_of(
    st.characters(categories=["Nd"]).filter(lambda c: not c.isascii()).map(lambda c: c * 2),
    st.integers(min_value=2**31).map(str),
    st.integers(max_value=-1).map(str),
    st.integers(0, 99).map(lambda n: f"{n}_0"),
    st.integers(0, 99).map(lambda n: f"+{n}"),
    st.sampled_from(["1e3", "0x10", "1.0", "\u0663", "\uff11", "nan"]),
)


def _place(where: str, text: str) -> tuple[str, dict[str, str]]:
    """(url, environment) putting ``text`` where a number goes."""
    base = f"redis://u:{SECRET}@127.0.0.1:1"
    return {
        "path": (f"{base}/{text}", {}),
        "port": (f"redis://u:{SECRET}@127.0.0.1:{text}/0", {}),
        "path under ?db=": (f"{base}/{text}?db=0", {}),
        "?db=": (f"{base}/0?db={text}", {}),
        "?max_connections=": (f"{base}/0?max_connections={text}", {}),
        "?socket_read_size=": (f"{base}/0?socket_read_size={text}", {}),
        "?health_check_interval=": (f"{base}/0?health_check_interval={text}", {}),
        "REDIS_DB": ("", {"DB": text, "PASSWORD": SECRET}),
        "REDIS_PORT": ("", {"PORT": text, "PASSWORD": SECRET}),
    }[where]


WHERE = ["path", "port", "path under ?db=", "?db=", "?max_connections=", "?socket_read_size=",
         "?health_check_interval=", "REDIS_DB", "REDIS_PORT"]


def _make(url: str, env: dict[str, str]) -> None:
    if url:
        redmodel.Store.from_url(url).close()
        return
    names = {f"G24ENV_{k}": v for k, v in env.items()}
    os.environ.update(names)
    try:
        redmodel.Store.from_env(prefix="G24ENV_").close()
    finally:
        for k in names:
            del os.environ[k]


@settings(max_examples=scaled(80))
@given(where=st.sampled_from(WHERE), text=BAD_NUMBER_TEXT)
def test_a_number_that_is_not_ascii_digits_in_range_is_refused(where: str, text: str) -> None:
    url, env = _place(where, text)
    with pytest.raises(redmodel.ValidationError) as caught:
        _make(url, env)
    assert SECRET not in str(caught.value) and SECRET[2:-2] not in str(caught.value)


@settings(max_examples=scaled(40))
@given(where=st.sampled_from(WHERE), number=st.integers(1, 2**31 - 1))
def test_ascii_digits_in_range_are_accepted(where: str, number: int) -> None:
    if where in ("REDIS_PORT", "port"):
        number = number % 65535 + 1
    if where == "?health_check_interval=":
        number = number % 10**9
    _make(*_place(where, str(number)))


def test_port_0_in_a_url_is_refused() -> None:
    # redis-py reads port 0 as "no port given" and connects to 6379
    with pytest.raises(redmodel.ValidationError, match="port"):
        redmodel.Store.from_url(f"redis://u:{SECRET}@127.0.0.1:0/0")


def test_url_switches_mean_what_redis_py_reads() -> None:
    # redis-py's to_bool takes "off" and " no" as on: a URL may not say them
    for value in ("off", "OFF", "%20no", "no%20", "f"):
        with pytest.raises(redmodel.ValidationError, match="socket_keepalive"):
            redmodel.Store.from_url(f"{URL}?socket_keepalive={value}")
    for value, meant in (("no", False), ("FALSE", False), ("0", False), ("on", True),
                         ("yes", True)):
        with redmodel.Store.from_url(f"{URL}?socket_keepalive={value}") as store:
            kwargs = store.client.connection_pool.connection_kwargs
            assert kwargs["socket_keepalive"] is meant


# ---- 3. no piece of a password is shown ---------------------------------------------------

PASSWORD = st.text(
    st.one_of(st.sampled_from("&#@:/%?=+;"),
              st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))),
    min_size=4, max_size=16)

TEMPLATES = [
    "redis://u:{pw}@127.0.0.1:1/0",
    "redis://u:{pw}@127.0.0.1:1/0?socket_timeout=nan",
    "redis://u:{pw}@127.0.0.1:1/0?db=1x",
    "redis://127.0.0.1:1/0?password={pw}",
    "redis://127.0.0.1:1/0?password={pw}&db=1",
    "redis://127.0.0.1:1/0?db=1&PASSWORD={pw}&socket_timeout=1",
    "redis://127.0.0.1:1/0?pass%77ord={pw}",
    "rediss://127.0.0.1:1/0?ssl_password={pw}&nonsense=1",
    "redis://127.0.0.1:1/zero?password={pw}",
]


class _Log(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _shown(url: str) -> str:
    """All that from_url, AsyncStore.from_url, from_env and the CLI show of ``url``: errors
    (text, repr, traceback), the store's and its client's reprs, what they log and print."""
    log = _Log()
    root = logging.getLogger()
    level = root.level
    root.addHandler(log)
    root.setLevel(logging.DEBUG)
    texts: list[str] = []
    os.environ["G24PW_URL"] = url
    try:
        for make in (lambda: redmodel.Store.from_url(url),
                     lambda: redmodel.AsyncStore.from_url(url),
                     lambda: redmodel.Store.from_env(prefix="G24PW_")):
            try:
                store = make()
            except redmodel.ValidationError as e:
                texts.append(str(e) + repr(e) + "".join(traceback.format_exception(e)))
            else:
                texts.append(repr(store) + repr(store.client))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _app.run(["inspect", "--models", "examples.hatshop:Hat", "--timeout", "1",
                             "--url", url])
        assert code in (2, 3), out.getvalue() + err.getvalue()  # usage, or no connection
        texts += [out.getvalue(), err.getvalue()]
    finally:
        del os.environ["G24PW_URL"]
        root.removeHandler(log)
        root.setLevel(level)
    # object addresses in reprs (0x7f3a...) differ from run to run: not the password's
    return re.sub(r"0x[0-9a-fA-F]+", "0x?", "\n".join(texts + log.lines))


@settings(max_examples=scaled(60))
@given(password=PASSWORD, template=st.sampled_from(TEMPLATES))
@example(password="0 ke", template="redis://u:{pw}@127.0.0.1:1/0")  # ' ke' of "keeps"
@example(password=" no[", template="redis://u:{pw}@127.0.0.1:1/0")  # ' no' of "not"
def test_no_piece_of_a_password_is_shown(password: str, template: str) -> None:
    url = template.format(pw=password)
    masked = redact_url(url)
    rest = template.replace("{pw}", "\0")
    pieces = {password[i:i + 3] for i in range(len(password) - 2)}
    if "{pw}@" in template:
        assert masked == "redis://u:***@" + template.split("@", 1)[1]
    else:  # a query secret is masked to the end of the URL: & and # do not end it
        assert masked.endswith("***")
        assert not [p for p in pieces if p in masked and p not in rest], masked
    shown = _shown(url)
    # the reference: the same URL with each letter and digit of the password replaced
    # (blanks and punctuation kept, so the same refusal, whose fixed words may hold a
    # piece of the password, e.g. ' ke' of "keeps" or ' no' of "not", is compared)
    other = _shown(template.format(pw="".join(
        "\u03a9" if c.isalnum() else c for c in password)))
    leaks = sorted(p for p in pieces if p in shown and p not in rest and p not in other)
    assert not leaks, (url, shown)


# ---- 4. a flat delete's lost reply names every key it may have touched ---------------------

@attrs.define
class Item:
    name: str = ""
    n: int = 0


@redmodel.model(prefix="g24f", layout="flat")
@attrs.define
class Bag:
    items: list[Item] = attrs.Factory(list)
    tags: dict[str, int] = attrs.Factory(dict)
    note: str = ""
    id: str = redmodel.key_field(generated=False)


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


@settings(max_examples=scaled(20, floor=8))
@given(items=st.lists(st.builds(Item, st.text(max_size=3), st.integers(-5, 5)), max_size=4),
       tags=st.dictionaries(st.text("ab:{}*%", max_size=3), st.integers(0, 3), max_size=3),
       second=st.booleans())
def test_a_flat_delete_whose_reply_is_lost_names_every_key_it_may_have_touched(
        proxy: FaultProxy, redis_client: redis.Redis, items: list[Item],
        tags: dict[str, int], second: bool) -> None:
    """docs/failures.md: ``.keys`` names the keys the lost command was sent with, every key
    the write may have touched; the object's key is among them; a flat write is all or
    nothing. ``second``: lose the reply of the call sent again with the undeclared items'
    leaves (when there are any) rather than the first."""
    store = redmodel.Store(redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.5))
    try:
        store.save(Bag(items=items, tags=tags, note="x", id="b"))
        keys = sorted(k.decode() for k in redis_client.keys("g24f:b*"))
        before = {k: redis_client.dump(k) for k in keys}
        undeclared = [k for k in keys if k.startswith(("g24f:b:items:", "g24f:b:tags:"))]
        lose_second = second and bool(undeclared)
        proxy.lose_reply("EVALSHA", when=has(undeclared[0]) if lose_second else has("g24f:b"))
        with pytest.raises(redmodel.OutcomeUnknownError) as caught:
            store.delete(Bag, "b")
        proxy.clear()
        named = set(caught.value.keys)
        changed = {k for k in keys if redis_client.dump(k) != before[k]}
        assert "g24f:b" in named
        assert changed <= named, (changed - named, named)
        assert changed in (set(), set(keys)), changed  # all or nothing
        if lose_second:
            assert set(keys) <= named
    finally:
        store.close()
        redis_client.delete(*redis_client.keys("g24f:b*") or ["g24f:none"])


# ---- 5. codecs: only redmodel errors, naming the codec ------------------------------------

CHAINS = ["json", "msgpack", "yaml", "json|zlib", "msgpack|bz2", "yaml|lzma", "json|fernet",
          "msgpack|zlib|fernet"]
_FERNET_KEY = b"ZmVybmV0LWtleS1mb3ItdGVzdF9maXgyNGctMDEyMzQ="  # 32 bytes, urlsafe base64


def _chain(name: str) -> Codec:
    """The chain ``name``; its fernet layer with a key of its own (the process-wide
    configuration is left alone)."""
    if not name.endswith("|fernet"):
        return codec(name)
    inner = codec(name.removesuffix("|fernet"))
    return Codec(inner.serializer, [*inner.transforms, FernetTransform([_FERNET_KEY])])

TYPES: list[Any] = [int, float, str, bytes, bool, list[int], dict[str, int], tuple[int, int],
                    set[int], int | None, Item, 5, "int", object, complex, None, Any]

VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.text(st.characters(codec=None), max_size=4), st.binary(max_size=4), st.none(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                          max_size=2),
    st.tuples(st.integers()), st.frozensets(st.integers(), max_size=2),
    st.complex_numbers(), st.builds(object), st.builds(Item))

DATA = st.one_of(st.binary(max_size=8), st.text(max_size=4), st.none(), st.integers(),
                 st.builds(memoryview, st.binary(max_size=4)))


def _only_redmodel(chain: str, fn: Callable[[], Any]) -> None:
    try:
        fn()
    except redmodel.RedmodelError as e:
        assert chain in str(e), (chain, str(e))
    # anything else fails the test as itself


@settings(max_examples=scaled(150))
@given(chain=st.sampled_from(CHAINS), tp=st.sampled_from(TYPES), value=VALUES, data=DATA,
       method=st.sampled_from(["fingerprint", "encode", "encoder", "decoder", "loader",
                               "structurer", "decode", "wrote", "rotate"]))
def test_every_error_of_a_codec_method_is_a_redmodel_error_naming_the_codec(
        chain: str, tp: Any, value: Any, data: Any, method: str) -> None:
    c = _chain(chain)
    calls: dict[str, Callable[[], Any]] = {
        "fingerprint": lambda: c.fingerprint(tp)(value),
        "encode": lambda: c.encode(value, tp),
        "encoder": lambda: c.encoder(tp)(value),
        "decoder": lambda: c.decoder(tp)(data),
        "loader": lambda: c.loader(tp)(data),
        "structurer": lambda: c.structurer(tp)(value),
        "decode": lambda: c.decode(c.encode(value, tp), tp),
        "wrote": lambda: c.wrote(data),
        "rotate": lambda: c.rotate(data),
    }
    _only_redmodel(chain, calls[method])


# lzma's presets: 0-9, each optionally | lzma.PRESET_EXTREME (2**31: the first int the
# draw of large ints gives is the valid preset 0 | PRESET_EXTREME)
LZMA_PRESETS = frozenset([*range(10), *(p | lzma.PRESET_EXTREME for p in range(10))])


@settings(max_examples=scaled(40))
@given(layer=st.sampled_from([(ZlibTransform, range(-1, 10)), (Bz2Transform, range(1, 10)),
                              (LzmaTransform, LZMA_PRESETS)]),
       level=st.one_of(st.integers(-20, 20), st.integers(min_value=2**31), st.booleans(),
                       st.floats(), st.text(max_size=2), st.none()))
def test_a_compression_level_is_checked_when_the_layer_is_made(layer: Any, level: Any) -> None:
    make, allowed = layer
    if type(level) is int and level in allowed:
        t = make(level)
        assert t.decode(t.encode(b"abc" * 10)) == b"abc" * 10
    else:
        with pytest.raises(redmodel.ValidationError, match=r"level|preset"):
            make(level)


def test_a_codec_chain_of_wrong_parts_is_a_codec_error() -> None:
    for args in ((5,), (JsonSerializer(), 5), (JsonSerializer(), [5]), (JsonSerializer(), "ab")):
        with pytest.raises(redmodel.CodecError):
            Codec(*args)
    assert Codec(JsonSerializer(), [ZlibTransform()]).name == "json|zlib"
