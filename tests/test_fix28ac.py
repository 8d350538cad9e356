"""Fix 28AC: attack 28AC's findings (F1 nested reprs, F2 import of values kept encrypted)
and the decode holes it noted, as properties. See /work/notes/s28/FIX-AC-NOTES.md."""

from __future__ import annotations

import base64
import bz2
import itertools
import json
import lzma
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel.codecs import codec
from tests.keys import fresh_keys
from tests.test_cli import redmodel_cli

_NAMES = itertools.count()


# ---- F1: a nested class's repr hides the union of what every model encrypts in it -------

@st.composite
def _declarations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """2-3 models, in declaration order: each stores the shared Leaf directly, through
    Mid (2 deep), or both, with a default chain that encrypts or not."""
    n = draw(st.integers(2, 3))
    return [{"codec": draw(st.sampled_from(["json", "json|fernet"])),
             "holds": draw(st.sampled_from(["leaf", "mid", "both"]))} for _ in range(n)]


def _classes(pin_encrypted: bool) -> tuple[type, type]:
    """A fresh Leaf and Mid (a repr installed on a class is per class)."""
    pin_field = (redmodel.field(codec="json|fernet", default="") if pin_encrypted
                 else attrs.field(default=""))

    @attrs.define
    class Leaf:
        tags: list[str] = attrs.Factory(list)  # encoded: the model's default chain
        pin: str = pin_field
        label: str = ""  # a plain scalar: never encrypted

    # (built with its annotation a class, not a name: the module's annotations are text)
    mid = attrs.define(type("Mid", (), {
        "__annotations__": {"leaf": Leaf, "notes": list[str], "name": str},
        "notes": attrs.Factory(list),  # encoded: the model's default chain
        "name": ""}))

    return Leaf, mid


def _declare(leaf: type, mid: type, how: dict[str, Any]) -> type:
    annotations: dict[str, Any] = {}
    if how["holds"] in ("leaf", "both"):
        annotations["leaf"] = leaf
    if how["holds"] in ("mid", "both"):
        annotations["mid"] = mid
    annotations["id"] = str
    body: dict[str, Any] = {"__annotations__": annotations,
                            "id": redmodel.key_field(generated=False)}
    cls = attrs.define(type(f"M{next(_NAMES)}", (), body))
    return redmodel.model(prefix=f"fix28ac_repr{next(_NAMES)}", codec=how["codec"])(cls)


def _secret(where: str) -> str:
    return f"S3CRET-{where}-{next(_NAMES)}"


def _instance(model: type, leaf: type, mid: type, how: dict[str, Any], pin_encrypted: bool
              ) -> tuple[Any, list[str]]:
    """An instance with a distinct secret in every field, and the secrets this model
    stores encrypted."""
    encrypts_encoded = how["codec"] == "json|fernet"
    hidden: list[str] = []

    def make_leaf(where: str) -> Any:
        tag, pin, label = _secret(where + ".tags"), _secret(where + ".pin"), _secret("label")
        hidden.extend([tag] if encrypts_encoded else [])
        hidden.extend([pin] if pin_encrypted else [])
        return leaf([tag], pin, label)

    kwargs: dict[str, Any] = {}
    if how["holds"] in ("leaf", "both"):
        kwargs["leaf"] = make_leaf("leaf")
    if how["holds"] in ("mid", "both"):
        note = _secret("mid.notes")
        hidden.extend([note] if encrypts_encoded else [])
        kwargs["mid"] = mid(make_leaf("mid.leaf"), [note], _secret("name"))
    return model(id="x", **kwargs), hidden


def _shown(obj: Any) -> list[str]:
    """repr and str of the object and of every nested object in it."""
    out = [repr(obj), str(obj)]
    for name in ("leaf", "mid"):
        inner = getattr(obj, name, None)
        if inner is not None:
            out += _shown(inner)
    return out


@given(_declarations(), st.booleans())
def test_f1_no_encrypted_value_shows_in_any_repr_whatever_the_declaration_order(
        declarations: list[dict[str, Any]], pin_encrypted: bool) -> None:
    """docs/models.md "Encrypted fields are hidden in reprs" and _hidden.hide_encrypted:
    any order of declaring 2-3 models sharing nested classes (fields encrypted by their
    own codec or by the model's default chain, nested 1-2 deep): no encrypted field's value
    appears in the repr or str of any model instance or nested object, also for models
    declared before a later one widened what the shared class hides."""
    leaf, mid = _classes(pin_encrypted)
    models = [_declare(leaf, mid, how) for how in declarations]
    for model, how in zip(models, declarations, strict=True):
        obj, hidden = _instance(model, leaf, mid, how, pin_encrypted)
        for text in _shown(obj):
            for secret in hidden:
                assert secret not in text, (how, text)


def test_f1_a_repr_written_by_hand_is_kept_when_a_later_model_encrypts_more() -> None:
    """docs/models.md: "a `__repr__` you write yourself is left alone"; the union rule
    widens only a repr redmodel installed."""

    @attrs.define(repr=False)
    class Own:
        tags: list[str] = attrs.Factory(list)
        pin: str = redmodel.field(codec="json|fernet", default="")

        def __repr__(self) -> str:
            return "Own(...)"

    @attrs.define
    class Shared:
        tags: list[str] = attrs.Factory(list)
        pin: str = redmodel.field(codec="json|fernet", default="")

    for chain in ("json", "json|fernet"):
        _declare_holding(Own, chain)
        _declare_holding(Shared, chain)
    assert repr(Own(["t"], "p")) == "Own(...)"
    assert repr(Shared(["t"], "p")) == "Shared(tags=<encrypted>, pin=<encrypted>)"


def _declare_holding(inner: type, chain: str) -> type:
    body: dict[str, Any] = {"__annotations__": {"inner": inner, "id": str},
                            "id": redmodel.key_field(generated=False)}
    cls = attrs.define(type(f"H{next(_NAMES)}", (), body))
    return redmodel.model(prefix=f"fix28ac_own{next(_NAMES)}", codec=chain)(cls)


# ---- F2: export (values kept encrypted) -> delete -> import round-trips every object ---

@redmodel.model(prefix="fix28ac_blind")
@attrs.define
class Blind:
    name: str = redmodel.field(index=True, default="")                 # plain index
    mail: str = redmodel.field(codec="json|fernet", index="blind", default="")
    alt: str | None = redmodel.field(codec="json|fernet", index="blind", default=None)
    notes: list[str] = redmodel.field(codec="json|fernet", factory=list)  # not indexed
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix28ac_uq")
@attrs.define
class BlindUnique:
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix28ac_cpd", unique=[("org", "code")])
@attrs.define
class Compound:
    org: str = redmodel.field(index=True)
    code: str = redmodel.field(codec="json|fernet", index="blind")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix28ac_plain")
@attrs.define
class PlainIndexed:
    size: int = redmodel.field(index="range")
    color: str = redmodel.field(index=True)
    secret: str = redmodel.field(codec="json|fernet", default="")
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fix28ac_blob", layout="blob", codec="json|fernet")
@attrs.define
class Blob:
    body: str
    data: bytes = b""
    id: str = redmodel.key_field(generated=False)


_MODELS = [Blind, BlindUnique, Compound, PlainIndexed, Blob]
_LABELS = [f"tests.test_fix28ac:{m.__name__}" for m in _MODELS]
_TEXT = st.text(st.characters(codec="utf-8"), max_size=6)
_TTL = st.none() | st.integers(60_000, 10**8)  # milliseconds


@st.composite
def _objects(draw: st.DrawFn) -> list[tuple[Any, int | None]]:
    """Objects of every model with a TTL or none; unique values distinct per model."""
    n = draw(st.integers(1, 3))
    ids = [f"o{i}" for i in range(n)]
    uniq = draw(st.lists(_TEXT, min_size=n, max_size=n, unique=True))
    out: list[tuple[Any, int | None]] = []
    for i, ident in enumerate(ids):
        same = st.sampled_from(["", "a@x", "b@x"])  # shared values: one entry, many ids
        out += [
            (Blind(draw(_TEXT), draw(same), draw(st.none() | same),
                   draw(st.lists(_TEXT, max_size=2)), id=ident), draw(_TTL)),
            (BlindUnique(uniq[i], id=ident), draw(_TTL)),
            (Compound(draw(st.sampled_from(["o1", "o2"])), uniq[i], id=ident), draw(_TTL)),
            (PlainIndexed(draw(st.integers(-5, 5)), draw(same), draw(_TEXT), id=ident),
             draw(_TTL)),
            (Blob(draw(_TEXT), draw(st.binary(max_size=8)), id=ident), draw(_TTL)),
        ]
    return out


def _key(model: type, ident: str) -> str:
    return spec_of(model).key_for(ident)


def _raw(store: redmodel.Store, model: type, ident: str) -> Any:
    client = store.client
    return client.get(_key(model, ident)) if model is Blob else client.hgetall(_key(model, ident))


_keys = fresh_keys


def _export(store: redmodel.Store, url: str, path: Path, key: str | None) -> None:
    args = [x for label in _LABELS for x in ("-m", label)]
    done = redmodel_cli("export", *args, "-o", str(path), url=url, keys=key)
    assert done.returncode == 0, done.stderr


def _import(url: str, path: Path, key: str | None, *labels: str) -> Any:
    args = [x for label in (labels or _LABELS) for x in ("-m", label)]
    return redmodel_cli("import", *args, "-i", str(path), url=url, keys=key)


def test_f2_round_trip_of_every_object_with_values_kept_encrypted(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md "import": values kept encrypted "are written back as they were"; "index
    entries and unique values stay in step". Export (no --decrypt) -> delete -> import:
    every object's raw HGETALL / GET is byte-for-byte what it was (no re-encryption: the
    exported ciphertext is written as is), every find / get_by of its real values answers
    it, a TTL is kept, and verify is empty, for blind, blind-unique, compound-unique with a
    blind part and plain indexes, hash and blob layouts."""
    fernet_key, _ = _keys(monkeypatch)
    out = tmp_path / "backup.jsonl"

    @settings(max_examples=max(5, settings().max_examples // 4))
    @given(_objects())
    def round_trip(objects: list[tuple[Any, int | None]]) -> None:
        for model in _MODELS:  # what a failed example left
            store.delete_many(model, ["o0", "o1", "o2"])
        for obj, ttl in objects:
            store.save(obj, ttl=None if ttl is None else ttl / 1000)
        before = {(type(o), o.id): _raw(store, type(o), o.id) for o, _ in objects}
        _export(store, redis_url, out, fernet_key)
        for model in _MODELS:
            store.delete_many(model, [o.id for o, _ in objects if type(o) is model])
        done = _import(redis_url, out, fernet_key)
        assert done.returncode == 0, done.stderr
        for (model, ident), raw in before.items():
            assert _raw(store, model, ident) == raw, (model, ident)
        for obj, ttl in objects:
            model = type(obj)
            assert store.get(model, obj.id) == obj
            left = store.client.pttl(_key(model, obj.id))
            assert (left == -1) if ttl is None else (0 < left <= ttl), (obj, ttl, left)
            if model is Blind:
                assert obj.id in store.find(Blind, mail=obj.mail).ids()
                if obj.alt is not None:  # (None is in no index)
                    assert obj.id in store.find(Blind, alt=obj.alt).ids()
                assert obj.id in store.find(Blind, name=obj.name).ids()
            elif model is BlindUnique:
                assert store.get_by(BlindUnique, ssn=obj.ssn) == obj
            elif model is Compound:
                assert store.get_by(Compound, org=obj.org, code=obj.code) == obj
            elif model is PlainIndexed:
                assert obj.id in store.find(PlainIndexed, color=obj.color).ids()
        for model in _MODELS:
            assert store.verify(model) == [], model
        for model in _MODELS:  # leave nothing for the next example
            store.delete_many(model, [o.id for o, _ in objects if type(o) is model])

    round_trip()


def test_f2_default_values_are_not_what_gets_indexed(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A blind field's default is indexed only for an object holding it: after the round
    trip, find(mail="") answers only the object whose mail is "" (attack 28AC F2)."""
    fernet_key, _ = _keys(monkeypatch)
    store.save_many([Blind("ann", "a@x", id="a"), Blind("bob", "", id="b")])
    out = tmp_path / "b.jsonl"
    _export(store, redis_url, out, fernet_key)
    store.delete_many(Blind, ["a", "b"])
    assert _import(redis_url, out, fernet_key).returncode == 0
    assert store.find(Blind, mail="").ids() == ["b"]
    assert store.find(Blind, mail="a@x").ids() == ["a"]


def _all_keys(store: redmodel.Store) -> set[bytes]:
    return set(store.client.scan_iter(match="fix28ac_*", count=1000))


@pytest.mark.parametrize("missing", ["fernet", "index"])
def test_f2_missing_keys_stop_the_import_before_its_first_write(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """docs/cli.md: a model with a blind index on a field kept encrypted needs the Fernet
    and index keys on import; without them the import exits 2 naming the model and field,
    before its first write (also with --dry-run), and nothing is written."""
    fernet_key, _ = _keys(monkeypatch)
    store.save_many([PlainIndexed(1, "red", "s", id="p"), BlindUnique("123", id="u")])
    out = tmp_path / "b.jsonl"
    _export(store, redis_url, out, fernet_key)
    store.delete_many(PlainIndexed, ["p"])
    store.delete_many(BlindUnique, ["u"])
    before = _all_keys(store)
    if missing == "index":
        monkeypatch.delenv("REDMODEL_INDEX_KEYS")
    key = None if missing == "fernet" else fernet_key
    for extra in ([], ["--dry-run"]):
        done = redmodel_cli("import", "-m", _LABELS[3], "-m", _LABELS[1], "-i", str(out),
                            *extra, url=redis_url, keys=key)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "BlindUnique.ssn" in done.stderr and "nothing was imported" in done.stderr
        assert "123" not in done.stderr
    assert _all_keys(store) == before


def test_f2_a_model_without_blind_index_still_needs_no_key(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md: "values kept encrypted can be imported without keys" (a model whose
    encrypted fields have no blind index, and a blob)."""
    fernet_key, _ = _keys(monkeypatch)
    store.save_many([PlainIndexed(1, "red", "s", id="p"), Blob("b", b"\0", id="b")])
    out = tmp_path / "b.jsonl"
    _export(store, redis_url, out, fernet_key)
    raw = (_raw(store, PlainIndexed, "p"), _raw(store, Blob, "b"))
    store.delete_many(PlainIndexed, ["p"])
    store.delete_many(Blob, ["b"])
    monkeypatch.delenv("REDMODEL_INDEX_KEYS")
    done = _import(redis_url, out, None, _LABELS[3], _LABELS[4])
    assert done.returncode == 0, done.stderr
    assert (_raw(store, PlainIndexed, "p"), _raw(store, Blob, "b")) == raw
    assert store.find(PlainIndexed, color="red").ids() == ["p"]
    assert store.verify(PlainIndexed) == []


def test_f2_the_whole_file_unique_check_covers_values_kept_encrypted(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md "import" step 1: two lines of two ids sharing a unique value are
    refused by the check, naming the first's line, and nothing is written: also when the
    value is a blind-unique one kept encrypted (the same ciphertext under another id, and
    a compound unique with a blind part)."""
    fernet_key, _ = _keys(monkeypatch)
    store.save(BlindUnique("123", id="u1"))
    store.save(Compound("o1", "c", id="c1"))
    out = tmp_path / "b.jsonl"
    _export(store, redis_url, out, fernet_key)
    store.delete_many(BlindUnique, ["u1"])
    store.delete_many(Compound, ["c1"])
    before = _all_keys(store)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    twins = [dict(line, id=line["id"] + "-twin") for line in lines]
    out.write_text("".join(json.dumps(x) + "\n" for x in lines + twins))
    done = _import(redis_url, out, fernet_key, _LABELS[1], _LABELS[2])
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("shares the unique") == 2, done.stdout
    assert "123" not in done.stdout
    assert _all_keys(store) == before


def test_f2_a_value_under_an_unknown_key_is_a_bad_line_and_nothing_is_written(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed import leaves nothing half-done (docs/cli.md step 1): a blind-indexed
    value that the configured keys cannot decrypt is a bad line; nothing is written."""
    old_key, _ = _keys(monkeypatch)
    store.save_many([BlindUnique("1", id="a"), BlindUnique("2", id="b")])
    out = tmp_path / "b.jsonl"
    _export(store, redis_url, out, old_key)
    store.delete_many(BlindUnique, ["a", "b"])
    before = _all_keys(store)
    other = redmodel.codecs.FernetTransform.generate_key()
    done = _import(redis_url, out, other, _LABELS[1])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "line 1" in done.stdout and "line 2" in done.stdout
    assert _all_keys(store) == before


# ---- decode holes: a corrupt stored value is a DecodeError, never another value ---------

_JSON, _YAML = codec("json"), codec("yaml")


def _head(c: Any) -> bytes:
    # the chain's header (0xA7, its name's length, its name): what precedes the last
    # layer's output (fix 30Q: was "encode(0) less dumps(0)", right for a bare chain only,
    # and for a compressed one an arbitrary cut, empty once json's 0 became "0\n")
    return c.encode(0, int)[: 2 + len(c.name.encode("ascii"))]


_B85 = ("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        "!#$%&()*+-;<=>?@^_`{|}~")


@given(st.text(alphabet=_B85, max_size=12) | st.binary(max_size=9).map(
    lambda b: base64.b85encode(b).decode()))
def test_json_bytes_decode_only_the_base85_an_encode_writes(text: str) -> None:
    """A json bytes value is the base85 of its bytes: any other text (one that reads as
    fewer or other bytes, "9" -> b"") raises DecodeError."""
    data = _head(_JSON) + json.dumps(text).encode()
    try:
        raw = base64.b85decode(text)
        canonical = base64.b85encode(raw).decode() == text
    except ValueError:
        canonical = False
    if canonical:
        assert _JSON.decode(data, bytes) == raw
    else:
        with pytest.raises(redmodel.DecodeError):
            _JSON.decode(data, bytes)


@given(st.binary(max_size=40))
def test_json_and_yaml_bytes_round_trip(value: bytes) -> None:
    for c in (_JSON, _YAML):
        assert c.decode(c.encode(value, bytes), bytes) == value


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="'"),
               max_size=12))  # (YAML refuses control characters in a document anyway)
def test_yaml_binary_decodes_only_valid_base64(text: str) -> None:
    """`!!binary` holds base64: any other text raises DecodeError (PyYAML's own reader
    drops what is not base64: `!!binary '!!!'` read as b"")."""
    data = _head(_YAML) + f"!!binary '{text}'\n...\n".encode()
    try:
        raw: bytes | None = base64.b64decode("".join(text.split()), validate=True)
    except ValueError:
        raw = None
    if raw is not None:
        assert _YAML.decode(data, bytes) == raw
    else:
        with pytest.raises(redmodel.DecodeError):
            _YAML.decode(data, bytes)


_SURROGATE = st.integers(0xD800, 0xDFFF)


@given(_TEXT, _SURROGATE, _TEXT, st.sampled_from(["str", "list", "key"]))
def test_json_lone_surrogate_is_a_decode_error(before: str, point: int, after: str,
                                               where: str) -> None:
    """A json-escaped lone surrogate (which dumps never writes: save refuses the text)
    raises DecodeError wherever it is: a str, a list member, a mapping key."""
    text = f"{before}\\u{point:04x}{after}"
    body = json.dumps(before)[:-1] + f"\\u{point:04x}" + json.dumps(after)[1:]
    tp: Any = str
    if where == "list":
        body, tp = f"[{body}]", list[str]
    elif where == "key":
        body, tp = "{" + body + ":1}", dict[str, int]
    with pytest.raises(redmodel.DecodeError):
        _JSON.decode(_head(_JSON) + body.encode(), tp)
    assert text  # (the escaped form, for the failure report)


def test_json_surrogate_pairs_still_decode() -> None:
    assert _JSON.decode(_head(_JSON) + b'"\\ud83d\\ude00"', str) == "\U0001F600"


@pytest.mark.parametrize("chain", ["json|bz2", "json|lzma", "json|zlib"])
@given(value=_TEXT, garbage=st.binary(min_size=1, max_size=8))
def test_compressed_value_with_trailing_bytes_is_a_decode_error(
        chain: str, value: str, garbage: bytes) -> None:
    c = codec(chain)
    data = c.encode(value, str)
    assert c.decode(data, str) == value
    with pytest.raises(redmodel.DecodeError):
        c.decode(data + garbage, str)
    with pytest.raises(redmodel.DecodeError):
        c.decode(data + data[len(_head(c)):], str)  # a second stream after the first


@redmodel.model(prefix="fix28ac_hole")
@attrs.define
class Holes:
    data: bytes = redmodel.field(codec="json", default=b"")
    ydata: bytes = redmodel.field(codec="yaml", default=b"")
    text: str = redmodel.field(codec="json", default="")
    packed: str = redmodel.field(codec="json|bz2", default="")
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize(("field", "stored"), [
    ("data", b'"9"'), ("ydata", b"!!binary '!!!'\n...\n"), ("text", b'"\\ud800"'),
    ("packed", None)])
def test_a_corrupt_stored_value_is_a_decode_error_naming_the_key(
        store: redmodel.Store, field: str, stored: bytes | None) -> None:
    """docs: a stored value that does not decode raises DecodeError naming the key."""
    store.save(Holes(id="h"))
    key = _key(Holes, "h")
    f = attrs.fields_dict(Holes)[field]
    c = codec(f.metadata["redmodel"].codec)
    raw = c.encode("x", str) + b"junk" if stored is None else _head(c) + stored
    store.client.hset(key, field, raw)
    with pytest.raises(redmodel.DecodeError) as e:
        store.get(Holes, "h")
    assert e.value.key == key and e.value.field == field


def test_bz2_and_lzma_payloads_are_checked_against_the_stdlib() -> None:
    """(the suite's own check of what the transforms refuse: the stdlib's one-shot
    readers join streams and skip trailing bytes that our single-stream reader refuses)"""
    assert bz2.decompress(bz2.compress(b"a") + b"junk") == b"a"
    assert lzma.decompress(lzma.compress(b"a") * 2) == b"aa"


def test_f2_import_over_objects_that_exist_with_other_values(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md "import": "An object that exists is saved over ... (an object with
    values kept encrypted is replaced whole)": its old entries go, unique values it held
    are free again, and verify is empty; "An object exported without expiry keeps an
    expiry its key already had" (attack 28AE F1)."""
    fernet_key, _ = _keys(monkeypatch)
    olds = [Blind("ann", "a@x", "b@x", id="o"), BlindUnique("111", id="o"),
            Compound("o1", "c", id="o"), PlainIndexed(1, "red", "s", id="o")]
    store.save_many(olds)
    out = tmp_path / "b.jsonl"
    _export(store, redis_url, out, fernet_key)
    news = [Blind("bob", "c@x", None, id="o"), BlindUnique("222", id="o"),
            Compound("o2", "d", id="o"), PlainIndexed(2, "blue", "t", id="o")]
    store.save_many(news, ttl=100)
    done = _import(redis_url, out, fernet_key)
    assert done.returncode == 0, done.stderr
    for old in olds:
        model = type(old)
        assert store.get(model, "o") == old
        # exported without expiry: the TTL the key had since stays (docs/cli.md, Limits)
        assert 0 < store.client.pttl(_key(model, "o")) <= 100_000
        assert store.verify(model) == [], model
    assert store.find(Blind, mail="c@x").ids() == [] and store.find(Blind, name="bob").ids() == []
    assert store.find(Blind, mail="a@x").ids() == ["o"]
    assert store.get_by(BlindUnique, ssn="222") is None
    assert store.get_by(BlindUnique, ssn="111") == olds[1]
    assert store.get_by(Compound, org="o2", code="d") is None
    assert store.find(PlainIndexed, color="blue").ids() == []
    store.save(BlindUnique("222", id="other"))  # free again


@redmodel.model(prefix="fix28ac_kblind", buckets=4)
@attrs.define
class BucketBlind:
    mail: str = redmodel.field(codec="json|fernet", index="blind")
    id: str = redmodel.key_field(generated=False)


def test_f2_round_trip_on_a_cluster(redis_cluster: Any, redis_cluster_client: Any,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on a cluster (one transaction per object): bytes as exported, blind
    entries in their buckets, verify empty."""
    fernet_key, _ = _keys(monkeypatch)
    store = redmodel.Store(redis_cluster_client)
    objs = [BucketBlind(f"m{i % 3}", id=str(i)) for i in range(12)]
    store.save_many(objs)
    before = {o.id: redis_cluster_client.hgetall(_key(BucketBlind, o.id)) for o in objs}
    host, port = redis_cluster.addresses[0]
    url = f"redis://{host}:{port}/0"
    label = "tests.test_fix28ac:BucketBlind"
    out = tmp_path / "k.jsonl"
    done = redmodel_cli("export", "-m", label, "--cluster", "-o", str(out), url=url,
                        keys=fernet_key)
    assert done.returncode == 0, done.stderr
    redis_cluster_client.flushall(target_nodes=redis_cluster_client.PRIMARIES)
    done = redmodel_cli("import", "-m", label, "--cluster", "-i", str(out), url=url,
                        keys=fernet_key)
    assert done.returncode == 0, done.stderr
    assert {o.id: redis_cluster_client.hgetall(_key(BucketBlind, o.id)) for o in objs} == before
    assert sorted(store.find(BucketBlind, mail="m1").ids(), key=int) == ["1", "4", "7", "10"]
    assert store.verify(BucketBlind) == []
