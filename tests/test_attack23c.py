"""Attack of session 23, area C (secrets, codecs, layouts): one failing test per finding,
each asserting what the docs promise (docs/codecs.md, docs/layouts.md, docs/models.md,
docs/queries.md). Found sound, and so not kept as tests: hidden reprs of models, pages and
queries; UniqueViolationError and ValidationError messages and their tracebacks; DEBUG logs;
no plaintext or chunk of it in any key, field, member or score (hash, flat and blob layouts,
list-valued and unique blind fields); Fernet rotation of hash, flat and blob models and
index-key rotation (no old token or old kid left, queries exact); every codec chain's round
trip of the documented scalar kinds (ints past 2**64, -0.0, +-inf, 5e-324, "", NUL, huge
strings, aware datetimes and times, Decimal, UUID, enums, int-keyed dicts); truncations and
byte flips of every checksummed chain (always DecodeError); planted wrong-typed and
ill-formed hash fields and flat leaves (DecodeError naming key and field); flat dict keys
holding `: { } * % \\`, "", newlines and NUL; stale leaves after a re-save; TTL kept on every
leaf; flat lists of 100,000 items; verify/reindex reports and their log lines (tokens only);
wrong-typed index keys of blind fields; blind and plain equality answering what a scan
answers (-0.0, ints past 2**64, Decimal, aware datetimes); Fernet/index key sources
(files with CRLF and comments, env, providers; never a key in a message); lone surrogates
refused before any write; redis passwords in reprs and connection errors."""

from __future__ import annotations

import enum
import json
import traceback
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from tests.budget import scaled

cryptography = pytest.importorskip("cryptography")

SECRET = "S3CRET-xyzzy-424242"


# ---- shared models ---------------------------------------------------------------------


@attrs.define
class Sub:
    x: int
    y: float


@redmodel.model(prefix="a23cfl", layout="flat")
@attrs.define
class Flat:
    n: int = 0
    f: float = 0.0
    b: bool = False
    sub: Sub | None = None
    xs: list[int] = attrs.Factory(list)
    enc: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a23cfx", layout="flat")
@attrs.define
class FixedFlat:
    """A fixed shape (no list, dict or set): read by the generated code (layouts.md)."""
    n: int = 0
    f: float = 0.0
    b: bool = False
    sub: Sub | None = None
    enc: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a23cy", codec="yaml")
@attrs.define
class Readings:
    xs: list[float] = attrs.Factory(list)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="a23cp")
@attrs.define
class Patient:
    name: str = redmodel.field(index=True)
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    id: str = redmodel.key_field(generated=False)


@attrs.define
class Node:
    """A linked list: a self-referential nested class."""
    value: int
    next: Node | None = None


def _keys() -> None:
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key()])
    redmodel.configure_index_keys(keys=[redmodel.generate_index_key()])


@pytest.fixture(autouse=True)
def _fresh_keys() -> None:
    _keys()


FLAT = Flat(1, 1.5, True, Sub(1, 2.0), [1, 2], "secret", id="x")


# ---- F1: a self-referential nested class -----------------------------------------------


def test_a_self_referential_nested_class_is_refused_or_stored(store: redmodel.Store) -> None:
    # F1: a recursive nested attrs class makes @redmodel.model raise a bare RecursionError
    """docs/models.md ("nested attrs classes" are a field type) and the project's rule
    "every exception leaving redmodel is a redmodel error": declaring a model whose nested
    class refers to itself (a linked list, a tree) raises a bare ``RecursionError`` from
    ``make_checker`` (redmodel/_models/_types.py, ``_struct_checker`` recursing without a
    memo), instead of a ``ModelDefinitionError`` naming the field (or supporting it)."""
    for layout in ("hash", "flat", "blob"):
        @attrs.define
        class Chain:
            head: Node | None = None
            id: str = redmodel.key_field()

        try:
            model = redmodel.model(prefix=f"a23crec{layout}", layout=layout)(Chain)
        except redmodel.RedmodelError:
            continue
        except RecursionError as e:
            pytest.fail(f"layout {layout}: bare RecursionError at declaration: {e!r}"[:300])
        obj = model(Node(1, Node(2, Node(3))), id="c")
        store.save(obj)
        assert store.get(model, "c") == obj


# ---- F2: a corrupt flat manifest --------------------------------------------------------

_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False)
    | st.sampled_from(["l", "d", "x", ""]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.sampled_from(["x", "y", "l", "d"]), kids, max_size=3),
    max_leaves=6)


@settings(max_examples=scaled(40))
@given(fixed=st.booleans(), field=st.sampled_from(["n", "f", "b", "sub", "xs", "enc", None]),
       entry=_JSONISH, drop_lines=st.integers(0, 3))
def test_a_corrupt_flat_manifest_is_a_decode_error(store: redmodel.Store, fixed: bool,
                                                   field: str | None, entry: Any,
                                                   drop_lines: int) -> None:
    # F2: a corrupt flat manifest: get/get_many/scan raise bare RuntimeError/TypeError/...
    """docs/layouts.md: the object key holds a manifest (skeleton JSON + leaf suffixes);
    the brief's standard and docs/codecs.md "Errors": a stored value written or damaged
    by another client is a ``DecodeError`` naming the key ("manifest is corrupt" is what a
    non-JSON manifest gets). A manifest whose skeleton is valid JSON of another shape
    (``1``, ``[]``, ``{"n": 1}``, ``{"n": "x", ...}``, ``["l", 5]``), or whose lines are
    fewer than its leaves, escapes as ``RuntimeError: generator raised StopIteration``,
    ``TypeError: cannot unpack non-iterable int object``, ``ValueError: not enough values
    to unpack`` from get, get_many and scan, on the general reader and on the generated
    fixed-shape one alike (redmodel/_layouts: the skeleton is walked without checking its
    shape)."""
    model: Any = FixedFlat if fixed else Flat
    obj = FixedFlat(1, 1.5, True, Sub(1, 2.0), "secret", id="x") if fixed else FLAT
    key = "a23cfx:x" if fixed else "a23cfl:x"
    client = store.client
    store.save(obj)
    good = client.get(key)
    skeleton_text, *lines = good.split(b"\n")
    skeleton = json.loads(skeleton_text)
    if field is None:
        skeleton = entry
    else:
        skeleton[field] = entry
    manifest = b"\n".join([json.dumps(skeleton).encode(), *lines[:len(lines) - drop_lines]])
    for call in (lambda: store.get(model, "x"), lambda: store.get_many(model, ["x"]),
                 lambda: list(store.scan(model))):
        store.save(obj)
        client.set(key, manifest)
        try:
            call()
        except redmodel.RedmodelError:
            pass
        except Exception as e:
            pytest.fail(f"manifest {manifest!r}: bare {type(e).__name__}: {e}")


# ---- F3: a truncated YAML value decodes to another value --------------------------------


@settings(max_examples=scaled(30))
@given(xs=st.lists(st.floats(allow_nan=False), min_size=2, max_size=6))
def test_a_truncated_yaml_value_is_a_decode_error(xs: list[float]) -> None:
    # F3: a truncated yaml-coded value decodes silently to a shorter list, no DecodeError
    """The brief's standard ("a stored value corrupted/truncated ... -> a DecodeError ...
    never a wrong value silently returned"), which json and msgpack meet for every cut
    (they know where a value ends) and docs/codecs.md's "Errors" table promises for a cut
    header and cut compressed data. A yaml value cut at a line end is still a valid YAML
    document: ``[0.5, -0.0]`` stored and cut after its first item reads back as ``[0.5]``
    (redmodel/codecs yaml serializer: no end-of-document marker or length is checked)."""
    c = redmodel.codecs.codec("yaml")
    stored = c.encode(xs, list[float])
    for cut in range(len(stored)):
        try:
            back = c.decode(stored[:cut], list[float])
        except redmodel.DecodeError:
            continue
        assert back == xs and [str(v) for v in back] == [str(v) for v in xs], (
            f"cut at {cut} of {len(stored)}: {back!r} read back for {xs!r}")


def test_a_truncated_yaml_field_through_the_store(store: redmodel.Store) -> None:
    # F3: (the same through a model) a cut yaml field is read back as another list
    """As above, for a model whose codec is yaml: another client's cut of the stored value
    (a proxy's or a SETRANGE's) reads back as a wrong value without an error."""
    store.save(Readings([0.5, 1.5, 2.5], id="r"))
    stored = store.client.hget("a23cy:r", "xs")
    store.client.hset("a23cy:r", "xs", stored[:stored.rindex(b"\n- ") + 1])
    with pytest.raises(redmodel.DecodeError):
        store.get(Readings, "r")


# ---- F4: a flat leaf missing or of another type: which field? --------------------------


@pytest.mark.parametrize("leaf", ["n", "sub:x", "xs:1", "enc"])
def test_a_missing_flat_leaf_error_names_the_field(store: redmodel.Store, leaf: str) -> None:
    # F4: flat "a leaf key is missing" DecodeError has field None and names no leaf
    """The brief's standard ("a DecodeError naming key and field") and docs/codecs.md
    ("``DecodeError`` has the attributes reason, codec, model, key, field; the store adds
    the model, key and field"); docs/layouts.md: a wrong-typed leaf "reads as a missing leaf
    (DecodeError)". The hash layout names the field of a bad value; the flat layout says
    only "a leaf key is missing (model Flat, key 'a23cfl:x')", with ``field`` None and no
    leaf key, so the operator cannot tell which of the object's keys was lost."""
    store.save(FLAT)
    store.client.delete(f"a23cfl:x:{leaf}")
    store.client.hset(f"a23cfl:x:{leaf}", "planted", "1")
    with pytest.raises(redmodel.DecodeError) as e:
        store.get(Flat, "x")
    assert e.value.field is not None or f"a23cfl:x:{leaf}" in str(e.value), str(e.value)


# ---- F5: Codec.encode of a value it cannot encode --------------------------------------


@pytest.mark.parametrize(("chain", "value", "tp"), [
    ("json", [1], tuple[int, int]),
    ("msgpack", [1], tuple[int, int]),
    ("yaml", [1], tuple[int, int]),
    ("yaml", [object()], list[str]),
    ("yaml", b"x", str),
    ("yaml|zlib|fernet", {"a": object()}, dict[str, str]),
])
def test_codec_encode_refuses_with_validation_error(chain: str, value: Any, tp: Any) -> None:
    # F5: Codec.encode raises bare IndexError (tuple of wrong length) / AttributeError (yaml)
    """docs/codecs.md "Errors": ``ValidationError`` for "a value the serializer cannot
    encode (raised before anything is written)" (``codec 'json' cannot encode a value of
    type object: TypeError``), and "All are redmodel errors". ``c.encode([1],
    tuple[int, int])`` raises ``IndexError: list index out of range`` in every serializer,
    and the yaml serializer raises ``AttributeError: 'object' object has no attribute
    'value'`` for an object it cannot represent (json and msgpack give ValidationError)."""
    _keys()
    with pytest.raises(redmodel.RedmodelError):
        redmodel.codecs.codec(chain).encode(value, tp)


# ---- F6/F7: a blind-field value in a redmodel error and in query reprs ------------------


def test_one_of_error_never_echoes_the_value() -> None:
    # F6: QueryError of one_of("...") echoes the (secret) value in its message
    """docs/codecs.md, "Hidden in errors": "No redmodel error carries a stored value or a
    plaintext", and "Errors": "All are redmodel errors; none ever contains a stored value,
    a plaintext or a key". ``store.find(Patient, ssn=one_of(ssn))`` (the slip queries.md
    describes) raises ``QueryError: one_of needs a list of values, not a str:
    one_of(['987-65-4321']) for a single value``: the SSN is in the message, the
    traceback and any log of it."""
    with pytest.raises(redmodel.QueryError) as e:
        redmodel.one_of(SECRET)  # type: ignore[arg-type]
    text = "".join(traceback.format_exception(e.value))
    assert "424242" not in str(e.value) and "424242" not in text, str(e.value)


def test_query_expressions_never_show_a_blind_value(store: redmodel.Store) -> None:
    # F7: repr(Q(ssn=...)) / repr(one_of([...])) show a blind-indexed field's plaintext
    """The brief's standard (no plaintext in "reprs/str of ... queries") and docs/models.md
    ("the repr hides encrypted fields"); a bound query does hide it (``repr(store.find(
    Patient, ssn=x))`` is ``<Query Patient EQ 4>``), but the Q expression handed to it shows
    ``Q(op='AND', terms=(('FIELD', 'ssn', '987-65-4321'),))``, and ``one_of``/``contains``
    show their values: logging the filter a query was built from logs the SSN. (A Q is not
    bound to a model, so it cannot know the field is encrypted: the fix is for Q reprs to
    show no values, or for the repr to be decided where the model is known.)"""
    _keys()
    store.save(Patient("ann", SECRET, id="p1"))
    q = redmodel.Q(ssn=SECRET) | redmodel.Q(ssn=redmodel.one_of([SECRET]))
    assert store.find(Patient, q).ids() == ["p1"]
    for obj in (q, redmodel.Q(ssn=SECRET), redmodel.one_of([SECRET])):
        assert "424242" not in repr(obj) and "424242" not in str(obj), repr(obj)


# ---- F8: rotate_keys skips a flat object it cannot read --------------------------------


def test_rotate_keys_never_skips_an_unreadable_flat_object(store: redmodel.Store) -> None:
    # F8: rotate_keys returns 0 for a flat object with a corrupt manifest, old token left
    """docs/codecs.md, "Rotation": re-encrypt with ``rotate_keys``, then "When nothing is
    left under old, drop it"; docs/store.md: ``rotate_keys`` -> "values rewritten". With a
    corrupt manifest (``get`` refuses the object) ``rotate_keys(Flat)`` reports 0 values
    rewritten and raises nothing: the encrypted leaf stays under the old key, which the
    operator then drops, and the value is lost. Hash and blob models with a corrupt value
    raise DecodeError naming the key, as this should."""
    old = redmodel.codecs.FernetTransform.generate_key()
    redmodel.codecs.configure_fernet(keys=[old])
    store.save(FLAT)
    before = store.client.get("a23cfl:x:enc")
    store.client.set("a23cfl:x", b"1")      # not the manifest of any object
    redmodel.codecs.configure_fernet(keys=[redmodel.codecs.FernetTransform.generate_key(), old])
    try:
        store.rotate_keys(Flat)
    except redmodel.DecodeError as e:
        assert e.key == "a23cfl:x"
        return
    assert store.client.get("a23cfl:x:enc") != before, "old token left, nothing reported"


# ---- F9: an index key that is also a (second key set's) Fernet key ---------------------


def test_an_index_key_that_is_a_named_fernet_key_is_refused(store: redmodel.Store) -> None:
    # F9: configure_index_keys accepts the key of a registered "fernet-pii" key set
    """docs/codecs.md, "Index keys are not encryption keys ... keep them apart from the
    Fernet keys (a key configured as both is refused with a CodecError)"; the same page's
    "A second, independent key set gets its own name" (``FernetTransform(...,
    name="fernet-pii")`` + ``register_codec``). The check compares index keys with the
    process-wide ``configure_fernet`` keys only: a blind field encrypted by ``fernet-pii``
    under key K and blind-indexed with index key K is saved and queried without an error,
    so the one secret is both the encryption key and the HMAC key of its own tokens."""
    pii_key = redmodel.codecs.FernetTransform.generate_key()
    pii = redmodel.codecs.FernetTransform(keys=[pii_key], name="fernet-a23c")
    redmodel.codecs.register_codec("fernet-a23c", lambda: pii)

    @redmodel.model(prefix="a23cpii")
    @attrs.define
    class Member:
        ssn: str = redmodel.field(codec="json|fernet-a23c", index="blind")
        id: str = redmodel.key_field(generated=False)

    try:
        with pytest.raises(redmodel.CodecError):
            redmodel.configure_index_keys(keys=[pii_key])
            store.save(Member("987-65-4321", id="m1"))
            store.find(Member, ssn="987-65-4321").ids()
    finally:
        _keys()   # no later test inherits the clashing index key


# ---- F10: IntEnum and str-valued enum fields of a flat model come back as int / str ----


class Level(enum.IntEnum):
    LOW = -1
    HIGH = 2**40


class Tone(str, enum.Enum):
    WARM = "warm"


@attrs.define
class Mood:
    level: Level = Level.LOW


@redmodel.model(prefix="a23cen", layout="flat")
@attrs.define
class FlatMood:
    level: Level = Level.LOW
    tone: Tone = Tone.WARM
    maybe: Level | None = Level.HIGH
    inner: Mood = attrs.Factory(Mood)
    levels: list[Level] = attrs.Factory(lambda: [Level.HIGH])
    id: str = redmodel.key_field(generated=False)


def test_flat_enum_fields_come_back_as_enums(store: redmodel.Store) -> None:
    # F10: a flat model reads IntEnum / str-enum fields back as plain int / str
    """docs/codecs.md: ``Enum``, ``IntEnum``, ``str``-valued enums "come back **equal and of
    the same type** through every chain"; docs/layouts.md (flat): "every leaf is a plain
    Redis string in the same form the hash layout uses", and the store API "is the same
    for all three" layouts. The hash layout gives ``Level.LOW`` back; the flat layout
    (its generated fixed-shape reader and its general one, get, get_many and scan alike)
    gives ``-1`` and ``'warm'``: equal (IntEnum/str mixins compare equal) but no longer
    enums, so ``obj.level.name`` raises AttributeError and a ``match Level.LOW:`` or an
    ``is`` check takes the wrong branch. A plain ``Enum`` comes back right."""
    obj = FlatMood(id="m")
    store.save(obj)
    for back in (store.get(FlatMood, "m"), *store.get_many(FlatMood, ["m"]),
                 *store.scan(FlatMood)):
        got = {"level": back.level, "tone": back.tone, "maybe": back.maybe,
               "inner.level": back.inner.level, "levels[0]": back.levels[0]}
        want = {"level": Level, "tone": Tone, "maybe": Level, "inner.level": Level,
                "levels[0]": Level}
        assert {k: type(v) for k, v in got.items()} == want, got


# ---- F11: a wrong-typed flat object key: the raw script error -------------------------


def test_a_wrong_typed_flat_object_key_error_is_redmodels_own(store: redmodel.Store) -> None:
    # F11: flat save/get/delete/expire on a wrong-typed object key show raw Lua error text
    """The brief's standard: every exception is a redmodel or redis-py error naming the key,
    "never ... Lua error text"; docs/layouts.md: "A key of another type where the object's
    key goes refuses its save and get (ServerError naming it, nothing written)". The flat
    layout's scripts let the server's script error through as the message: ``EVALSHA
    flat_save: WRONGTYPE Operation against a key holding the wrong kind of value script:
    on @user_script:60. (keys [...])``, which does not say which of the keys listed is of
    the wrong type, where ``incr`` on the same key says ``WRONGTYPE a23cfl:x holds a hash,
    not a string; nothing was written`` (and the index scripts do likewise)."""
    calls = {"save": lambda: store.save(FLAT), "save_many": lambda: store.save_many([FLAT]),
             "get": lambda: store.get(Flat, "x"), "delete": lambda: store.delete(Flat, "x"),
             "expire": lambda: store.expire(Flat, "x", 10)}
    messages = {}
    for name, call in calls.items():
        store.client.delete("a23cfl:x")
        store.client.hset("a23cfl:x", "planted", "1")
        with pytest.raises(redmodel.ServerError) as e:
            call()
        assert store.client.type("a23cfl:x") == b"hash"
        messages[name] = str(e.value)
    bad = {n: m for n, m in messages.items()
           if "user_script" in m or "a23cfl:x holds a hash" not in m}
    assert not bad, bad
