"""Codec chains: every serializer and transform round-trips typed values, and every failure
to decode is a DecodeError that names the chains and never carries data or keys."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import itertools
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any, Optional

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redmodel._errors import CodecError, DecodeError, ValidationError
from redmodel.codecs import (
    Codec,
    FernetTransform,
    JsonSerializer,
    MsgpackSerializer,
    YamlSerializer,
    ZlibTransform,
    _base,
    _fernet,
    codec,
    codec_from_config,
    codec_from_env,
    configure_fernet,
    register_codec,
)
from tests.budget import scaled

SERIALIZERS = ["json", "yaml", "msgpack"]
TRANSFORMS = ["bz2", "zlib", "lzma", "fernet"]
STACKED = ["msgpack|bz2|fernet", "yaml|zlib|fernet", "json|lzma|fernet", "msgpack|zlib|bz2"]
CHAINS = [
    *SERIALIZERS,
    *(f"{s}|{t}" for s in SERIALIZERS for t in TRANSFORMS),
    *STACKED,
]
FERNET_LAST = [c for c in CHAINS if c.endswith("|fernet")]
TRANSFORMED = [c for c in CHAINS if "|" in c]

KEY_A = FernetTransform.generate_key()
KEY_B = FernetTransform.generate_key()

# The autouse fixture only resets fernet keys per test, which no example changes.
QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
EXAMPLES = settings(max_examples=scaled(100), deadline=None, suppress_health_check=QUIET)


@pytest.fixture(autouse=True)
def fernet_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with key A configured and the env default unset."""
    monkeypatch.delenv("REDMODEL_FERNET_KEYS", raising=False)
    monkeypatch.setattr(_fernet, "_from_env", None)
    monkeypatch.setattr(_fernet, "_configured", None)
    configure_fernet(keys=[KEY_A])


# -- strategies: a type, and values of exactly that type ---------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green:*?"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2**40


class Mode(str, enum.Enum):
    READ = "r"
    WRITE = "[w]"


GLOB_TEXT = st.text(alphabet=":*?[]{}|\\/ -_\t\n'\"#&!%@`,^~.", max_size=12)
TRICKY = st.sampled_from(
    [
        "",
        ":",
        "*",
        "?",
        "[]",
        "a:b:c",
        "user:*",
        "h?t",
        "[abc]",
        "null",
        "~",
        "yes",
        "no",
        "1.0",
        "0x10",
        "1_000",
        "2020-01-01",
        "12:30",
        "-",
        " lead",
        "trail ",
        "\n",
        "\r\n",
        "\x85",
        "\u2028",
        "\ufeff",
        "\x00",
        "é",
        "日本",
        "\U0001f600",
        "!!binary",
        "&a *a",
    ]
)
TEXT = st.one_of(st.text(max_size=20), GLOB_TEXT, TRICKY)
INTS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 0, -1]),
)
OFFSETS = st.timedeltas(
    min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
).map(dt.timezone)
DATETIMES = st.one_of(st.datetimes(), st.datetimes(timezones=OFFSETS))
TIMES = st.one_of(st.times(), st.times(timezones=OFFSETS))

Spec = tuple[Any, st.SearchStrategy[Any]]

LEAVES: list[Spec] = [
    (int, INTS),
    (float, st.floats(allow_nan=False)),
    (str, TEXT),
    (bytes, st.binary(max_size=20)),
    (bool, st.booleans()),
    (dt.datetime, DATETIMES),
    (dt.date, st.dates()),
    (dt.time, TIMES),
    (Decimal, st.decimals(allow_nan=False, allow_infinity=False)),
    (uuid.UUID, st.uuids()),
    (Color, st.sampled_from(Color)),
    (Level, st.sampled_from(Level)),
    (Mode, st.sampled_from(Mode)),
]
LEAF = st.sampled_from(LEAVES)
_class_ids = itertools.count()


def _model(fields: list[Spec]) -> Spec:
    cls = attrs.make_class(
        f"Model{next(_class_ids)}",
        {f"f{i}": attrs.field(type=tp) for i, (tp, _) in enumerate(fields)},
    )
    return cls, st.builds(cls, *(values for _, values in fields))


def _containers(children: st.SearchStrategy[Spec]) -> st.SearchStrategy[Spec]:
    return st.one_of(
        children.map(lambda s: (list[s[0]], st.lists(s[1], max_size=3))),
        children.map(lambda s: (dict[str, s[0]], st.dictionaries(TEXT, s[1], max_size=3))),
        children.map(lambda s: (dict[int, s[0]], st.dictionaries(INTS, s[1], max_size=3))),
        children.map(lambda s: (tuple[s[0], ...], st.lists(s[1], max_size=3).map(tuple))),
        st.tuples(children, children).map(
            lambda ab: (tuple[ab[0][0], ab[1][0]], st.tuples(ab[0][1], ab[1][1]))
        ),
        children.map(lambda s: (Optional[s[0]], st.none() | s[1])),  # noqa: UP045
        LEAF.map(lambda s: (set[s[0]], st.sets(s[1], max_size=3))),
        LEAF.map(lambda s: (frozenset[s[0]], st.frozensets(s[1], max_size=3))),
        st.lists(children, min_size=1, max_size=4).map(_model),
    )


TYPES: st.SearchStrategy[Spec] = st.recursive(LEAF, _containers, max_leaves=6)


@attrs.define
class Address:
    street: str
    city: str
    zip: Optional[str] = None  # noqa: UP045


@attrs.define
class Card:
    holder: str
    number: str
    expires: dt.date
    issued_at: dt.datetime
    limit: Decimal
    id: uuid.UUID
    color: Color
    address: Address
    tags: list[str] = attrs.Factory(list)
    scores: dict[str, float] = attrs.Factory(dict)
    blob: bytes = b""
    seen: Optional[dt.datetime] = None  # noqa: UP045


CARDS = st.builds(
    Card,
    holder=TEXT,
    number=st.text(alphabet="0123456789", min_size=16, max_size=16),
    expires=st.dates(),
    issued_at=DATETIMES,
    limit=st.decimals(allow_nan=False, allow_infinity=False),
    id=st.uuids(),
    color=st.sampled_from(Color),
    address=st.builds(Address, TEXT, TEXT, st.none() | TEXT),
    tags=st.lists(TEXT, max_size=3),
    scores=st.dictionaries(TEXT, st.floats(allow_nan=False), max_size=3),
    blob=st.binary(max_size=40),
    seen=st.none() | DATETIMES,
)
A_CARD = Card(
    holder="Ada Lovelace",
    number="4111111111111111",
    expires=dt.date(2030, 1, 31),
    issued_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    limit=Decimal("2500.00"),
    id=uuid.UUID(int=7),
    color=Color.GREEN,
    address=Address("1 Main St", "London"),
)


def assert_same(a: Any, b: Any) -> None:
    """Equal, and of the same type all the way down (datetimes keep naive/offset)."""
    assert type(a) is type(b), f"{type(a)} != {type(b)}"
    if attrs.has(type(a)):
        for f in attrs.fields(type(a)):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        assert sorted(map(repr, map(type, a))) == sorted(map(repr, map(type, b)))
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (set, frozenset)):
        assert a == b
        assert {type(x) for x in a} == {type(x) for x in b}
    elif isinstance(a, (dt.datetime, dt.time)):
        assert a == b
        assert a.replace(tzinfo=None) == b.replace(tzinfo=None)
        assert a.utcoffset() == b.utcoffset()
    else:
        assert a == b


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("chain", CHAINS)
@EXAMPLES
@given(data=st.data())
def test_every_chain_round_trips_values_of_generated_types(chain: str, data: st.DataObject) -> None:
    tp, values = data.draw(TYPES, label="type")
    value = data.draw(values, label="value")
    c = codec(chain)
    assert_same(value, c.decode(c.encode(value, tp), tp))


@pytest.mark.parametrize("chain", CHAINS)
@settings(max_examples=scaled(30), deadline=None, suppress_health_check=QUIET)
@given(card=CARDS)
def test_every_chain_round_trips_a_nested_model(chain: str, card: Card) -> None:
    c = codec(chain)
    assert_same(card, c.decode(c.encode(card), Card))


@pytest.mark.parametrize("chain", SERIALIZERS)
def test_naive_datetimes_stay_naive_and_offsets_are_kept(chain: str) -> None:
    c = codec(chain)
    naive = dt.datetime(2024, 1, 2, 3, 4, 5, 678)
    odd = dt.datetime(2024, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-9, minutes=-30)))
    assert c.decode(c.encode(naive), dt.datetime).tzinfo is None
    assert c.decode(c.encode(odd), dt.datetime).utcoffset() == odd.utcoffset()


@pytest.mark.parametrize("chain", SERIALIZERS)
def test_big_ints_floats_and_bytes_round_trip(chain: str) -> None:
    c = codec(chain)
    for value, tp in [
        (2**64 + 1, int),
        (-(2**100), int),
        (0.1, float),
        (-0.0, float),
        (1e308, float),
        (float("inf"), float),
        (b"\x00\xff", bytes),
        (b"", bytes),
    ]:
        assert_same(value, c.decode(c.encode(value, tp), tp))


# -- tampering, truncation, wrong chains -------------------------------------------------


@pytest.mark.parametrize("chain", FERNET_LAST)
@EXAMPLES
@given(card=CARDS, data=st.data())
def test_a_flipped_byte_anywhere_is_rejected(chain: str, card: Card, data: st.DataObject) -> None:
    c = codec(chain)
    stored = bytearray(c.encode(card))
    pos = data.draw(st.integers(0, len(stored) - 1), label="position")
    stored[pos] ^= data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(DecodeError) as e:
        c.decode(bytes(stored), Card)
    assert card.number not in str(e.value)


@pytest.mark.parametrize("chain", TRANSFORMED)
@EXAMPLES
@given(card=CARDS, data=st.data())
def test_a_truncated_value_is_rejected(chain: str, card: Card, data: st.DataObject) -> None:
    c = codec(chain)
    stored = c.encode(card)
    cut = data.draw(st.integers(0, len(stored) - 1), label="length")
    with pytest.raises(DecodeError):
        c.decode(stored[:cut], Card)


def test_a_value_read_through_another_chain_names_both_chains() -> None:
    for written, read in itertools.permutations(CHAINS, 2):
        stored = codec(written).encode(A_CARD)
        with pytest.raises(DecodeError) as e:
            codec(read).decode(stored, Card)
        assert f"written with codec {written!r}, read with {read!r}" in str(e.value)
        assert e.value.codec == read


def test_a_damaged_header_never_echoes_stored_bytes() -> None:
    stored = bytearray(codec("json").encode("json-secret-plaintext", str))
    stored[1] = 12  # the name length now runs into the JSON payload
    with pytest.raises(DecodeError) as e:
        codec("json").decode(bytes(stored), str)
    assert "secret" not in str(e.value)
    assert "unknown codec chain" in str(e.value)


def test_a_corrupt_payload_error_has_no_data_in_it() -> None:
    c = codec("json")
    stored = c.encode(A_CARD)
    with pytest.raises(DecodeError) as e:
        c.decode(stored[:-5], Card)
    assert A_CARD.number not in str(e.value) and "London" not in str(e.value)
    assert "does not decode as Card" in str(e.value)


@pytest.mark.parametrize("chain", ["json|zlib", "msgpack|bz2", "yaml|lzma"])
def test_a_corrupt_compressed_layer_names_the_layer_and_the_chain(chain: str) -> None:
    c = codec(chain)
    stored = c.encode(A_CARD)
    with pytest.raises(DecodeError) as e:
        c.decode(stored[:-3], Card)
    layer = chain.split("|")[1]
    assert str(e.value) == (
        f"{layer} layer: compressed data is corrupt or truncated (codec {chain!r})"
    )


def test_yaml_loads_only_safe_yaml() -> None:
    c = codec("yaml")
    header = c.encode("x", str)[: 2 + len("yaml")]
    evil = header + b"!!python/object/apply:os.system ['echo pwned']"
    with pytest.raises(DecodeError):
        c.decode(evil, str)


@pytest.mark.parametrize("chain", SERIALIZERS)
def test_a_value_of_the_wrong_shape_is_a_validation_error_on_encode(chain: str) -> None:
    with pytest.raises(ValidationError, match=f"codec '{chain}' cannot encode"):
        codec(chain).encode(object(), int)


# -- fernet: ciphertext, keys, rotation ----------------------------------------------------


@pytest.mark.parametrize("chain", FERNET_LAST)
@settings(max_examples=scaled(50), deadline=None, suppress_health_check=QUIET)
@given(secret=st.text(min_size=12, max_size=40))
def test_the_ciphertext_never_contains_the_plaintext(chain: str, secret: str) -> None:
    c = codec(chain)
    card = attrs.evolve(A_CARD, holder=secret, tags=[secret])
    stored = c.encode(card)
    payload = stored[len(chain) + 2 :]
    plaintext = c.serializer.dumps(c.serializer.converter.unstructure(card))
    assert secret.encode() not in payload
    assert plaintext not in payload
    assert A_CARD.number.encode() not in payload


def test_a_wrong_key_is_a_decode_error_without_any_key_in_it() -> None:
    c = codec("msgpack|bz2|fernet")
    stored = c.encode(A_CARD)
    configure_fernet(keys=[KEY_B])
    with pytest.raises(DecodeError) as e:
        c.decode(stored, Card)
    text = f"{e.value} {e.value!r} {e.value.args} {e.value.__cause__}"
    for key in (KEY_A, KEY_B):
        assert key not in text
        assert repr(base64.urlsafe_b64decode(key)) not in text
    assert "does not verify under any configured key" in str(e.value)
    assert e.value.codec == "msgpack|bz2|fernet"


@pytest.mark.parametrize("chain", [*FERNET_LAST, "json|fernet|zlib"])
def test_rotation_moves_a_value_to_the_newest_key(chain: str) -> None:
    c = codec(chain)
    stored = c.encode(A_CARD)  # under key A
    configure_fernet(keys=[KEY_B, KEY_A])
    assert_same(A_CARD, c.decode(stored, Card))
    rotated = c.rotate(stored)
    assert rotated is not None and rotated.startswith(stored[: len(chain) + 2])
    assert c.rotate(rotated) is None  # already under B
    configure_fernet(keys=[KEY_B])
    assert_same(A_CARD, c.decode(rotated, Card))
    with pytest.raises(DecodeError):
        c.decode(stored, Card)


def test_rotation_needs_no_structuring_and_rejects_tampering() -> None:
    c = codec("json|fernet")
    stored = c.encode(A_CARD)
    configure_fernet(keys=[KEY_B, KEY_A])
    assert c.rotate(stored) is not None  # raw bytes: no type given
    with pytest.raises(DecodeError):
        c.rotate(stored[:-1])
    with pytest.raises(DecodeError, match=r"written with codec 'yaml\|fernet'"):
        c.rotate(codec("yaml|fernet").encode(A_CARD))


def test_chains_without_keys_have_nothing_to_rotate() -> None:
    c = codec("msgpack|bz2")
    assert c.rotate(c.encode(A_CARD)) is None


def test_fernet_reprs_show_how_many_keys_never_which() -> None:
    t = FernetTransform(keys=[KEY_A, KEY_B])
    assert repr(t) == str(t) == "FernetTransform(<2 keys>)"
    assert KEY_A not in repr(vars(t))
    assert repr(FernetTransform(env="APP_KEYS")) == "FernetTransform(env='APP_KEYS')"
    configure_fernet(keys=[KEY_A])
    assert KEY_A not in repr(codec("json|fernet").transforms)


def test_the_default_fernet_reads_its_keys_from_the_environment_when_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fernet, "_configured", None)
    c = codec("json|fernet")  # builds without keys
    with pytest.raises(CodecError, match="REDMODEL_FERNET_KEYS is not set"):
        c.encode(A_CARD)
    monkeypatch.setenv("REDMODEL_FERNET_KEYS", f" {KEY_B} , {KEY_A} ")
    stored = c.encode(A_CARD)
    monkeypatch.setenv("REDMODEL_FERNET_KEYS", KEY_B)
    assert_same(A_CARD, c.decode(stored, Card))


def test_configure_fernet_applies_to_chains_built_before_it() -> None:
    c = codec("msgpack|fernet")
    configure_fernet(keys=[KEY_B])
    stored = c.encode(A_CARD)
    FernetTransform(keys=[KEY_B]).decode(stored[len(c.name) + 2 :])  # encrypted under B
    assert_same(A_CARD, c.decode(stored, Card))


def test_a_key_provider_is_asked_on_every_use() -> None:
    keys = [KEY_A]
    configure_fernet(key_provider=lambda: keys)
    c = codec("json|fernet")
    stored = c.encode(A_CARD)
    keys.insert(0, KEY_B)
    rotated = c.rotate(stored)
    assert rotated is not None
    del keys[1]
    assert_same(A_CARD, c.decode(rotated, Card))


def test_an_env_transform_takes_comma_separated_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_KEYS", f"{KEY_B},{KEY_A}")
    old = FernetTransform(keys=[KEY_A]).encode(b"data")
    t = FernetTransform(env="APP_KEYS")
    assert t.decode(old) == b"data"
    monkeypatch.setenv("APP_KEYS", "sécret-not-a-key")
    with pytest.raises(CodecError, match="key 1 of 1 from environment variable APP_KEYS") as e:
        t.decode(old)
    assert "sécret" not in str(e.value)


def test_a_registered_fernet_replaces_the_name_for_new_chains() -> None:
    register_codec("fernet-b", lambda: FernetTransform(keys=[KEY_B], name="fernet-b"))
    c = codec("json|fernet-b")
    assert c.name == "json|fernet-b"
    assert_same(A_CARD, c.decode(c.encode(A_CARD), Card))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"keys": [KEY_A], "env": "X"}, "exactly one of"),
        ({"keys": []}, "gave no keys"),
        ({"keys": [KEY_A, "not-a-valid-key-but-secret"]}, "key 2 of 2 from keys= is not a"),
        ({"keys": [KEY_A[:-4]]}, "key 1 of 1 from keys= is not a"),
        ({"keys": [42]}, "as str or bytes"),
    ],
)
def test_bad_key_configuration_is_a_codec_error_without_the_key(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CodecError, match=message) as e:
        FernetTransform(**kwargs)
    assert "secret" not in str(e.value) and KEY_A[:-4] not in str(e.value)


def test_a_bad_key_from_a_provider_fails_on_use() -> None:
    t = FernetTransform(key_provider=lambda: ["short-secret"])
    with pytest.raises(CodecError, match="key 1 of 1 from key_provider") as e:
        t.encode(b"x")
    assert "short-secret" not in str(e.value)


# -- configuration -------------------------------------------------------------------------


def test_codec_from_config_accepts_strings_mappings_and_codecs() -> None:
    built = codec("msgpack|bz2|fernet")
    assert codec_from_config("msgpack | bz2 | fernet") is built
    assert codec_from_config({"serializer": "msgpack", "transforms": ["bz2", "fernet"]}) is built
    assert codec_from_config({"serializer": "msgpack", "transforms": "bz2|fernet"}) is built
    assert codec_from_config(built) is built
    assert codec_from_config({"serializer": "yaml"}).name == "yaml"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("msgpack|gzip", "unknown codec 'gzip'"),
        ("bz2|json", "must start with a serializer, not 'bz2'"),
        ("json|yaml", "'yaml' in codec chain 'json|yaml' is not a byte transform"),
        ("json||bz2", "empty name at position 2"),
        (
            {"serializer": "msgpack", "transform": ["bz2"]},
            "unknown codec config key(s) 'transform'",
        ),
        ({"transforms": ["bz2"]}, "'serializer' must be one name"),
        ({"serializer": "json|bz2"}, "'serializer' must be one name"),
        ({"serializer": "json", "transforms": [1]}, r"'transforms'\[0\] must be one name"),
        ({"serializer": "json", "transforms": {"bz2": 1}}, "must be a list of names"),
        ({"serializer": "json", "transforms": ["bz3"]}, "unknown codec 'bz3'"),
        (42, "chain string or a mapping, not int"),
    ],
)
def test_bad_codec_config_names_the_bad_part(config: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message.replace("|", r"\|").replace("(s)", r"\(s\)")):
        codec_from_config(config)


def test_codec_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_CODEC", raising=False)
    assert codec_from_env("APP_CODEC", "json|zlib").name == "json|zlib"
    with pytest.raises(CodecError, match="APP_CODEC is not set"):
        codec_from_env("APP_CODEC")
    monkeypatch.setenv("APP_CODEC", "yaml|lzma")
    assert codec_from_env("APP_CODEC", "json").name == "yaml|lzma"
    monkeypatch.setenv("APP_CODEC", "yaml|lzma|rot13")
    with pytest.raises(CodecError, match="environment variable APP_CODEC: unknown codec 'rot13'"):
        codec_from_env("APP_CODEC")


def test_codecs_built_in_code_compare_by_chain_name() -> None:
    assert Codec(JsonSerializer(), [ZlibTransform()]) == codec("json|zlib")
    assert repr(codec("json|zlib")) == "Codec('json|zlib')"


# -- optional dependencies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "build", "extra"),
    [
        ("yaml", YamlSerializer, "yaml"),
        ("msgpack", MsgpackSerializer, "msgpack"),
        ("cryptography.fernet", lambda: FernetTransform(keys=[KEY_A]), "crypto"),
    ],
)
def test_a_missing_optional_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, build: Any, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(CodecError, match=rf"pip install 'redmodel-attrs\[{extra}\]'"):
        build()


def test_a_missing_dependency_fails_when_the_chain_is_built_not_at_import() -> None:
    script = (
        "import sys\n"
        "for m in ('yaml', 'msgpack', 'cryptography.fernet'): sys.modules[m] = None\n"
        "from redmodel.codecs import codec\n"
        "from redmodel._errors import CodecError\n"
        "assert codec('json|zlib').name == 'json|zlib'\n"
        "needs = [('yaml', 'yaml'), ('msgpack', 'msgpack'), ('json|fernet', 'crypto')]\n"
        "for chain, extra in needs:\n"
        "    try:\n"
        "        codec(chain)\n"
        "    except CodecError as e:\n"
        "        assert f'redmodel-attrs[{extra}]' in str(e), e\n"
        "    else:\n"
        "        raise AssertionError(chain)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_registering_a_name_again_rebuilds_chains_that_use_it() -> None:
    before = codec("json|zlib")
    register_codec("zlib", lambda: ZlibTransform(level=1))
    try:
        after = codec("json|zlib")
        assert after is not before and after.transforms[0].level == 1  # type: ignore[attr-defined]
    finally:
        register_codec("zlib", ZlibTransform)
        _base._CACHE.pop("json|zlib", None)
