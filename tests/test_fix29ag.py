"""Fix 29AG: `redmodel import` / `export` (docs/cli.md "import", "export"; findings in
tests/test_attack29ag.py). Property tests of each kind of finding:

- F1/F5: any file of lines (repeated objects, unique values moved between objects, TTL
  and no-TTL lines, plain and blob models mixed), any --chunk: the import ends as applying
  its lines one by one with ``store.save`` does (exit 0 and the same objects, unique
  owners and expiries; or exit 3 when that stops), and counts each object once;
- F2: a key of every other type planted at a blob's key refuses the blob write holding
  it, nothing of it written, exit 3, the key kept;
- F3/F6: a connection lost at any chunk (request dropped, or reply lost) counts the
  chunks before it, names that chunk's keys as "may have been" and the later ones as not
  written; blobs, plain hashes (save_many) and TTL lines (MULTI);
- F4: a key whose id does not decode (int, UUID, a blob's str id of bytes that are not
  UTF-8, an upper-case UUID, kept encrypted or not) is skipped and named (exit 1), and the
  file it leaves imports whole.

The CLI runs in this process (``redmodel.cli._app.run``), on the test server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import redmodel
from redmodel._models._specs import spec_of
from redmodel.cli._app import run
from redmodel.testing import FaultProxy, has
from tests.keys import use_keys

M = "tests.test_fix29ag"


@redmodel.model(prefix="fx29_u")
@attrs.define
class Uniq:
    sku: str = redmodel.field(unique=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_bu", buckets=4)
@attrs.define
class BUniq:
    sku: str = redmodel.field(unique=True)
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_h")
@attrs.define
class Plain:
    name: str
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_b", layout="blob")
@attrs.define
class Blob:
    name: str
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_n")
@attrs.define
class IntId:
    name: str
    id: int = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_q", layout="blob")
@attrs.define
class UuidId:
    name: str
    id: uuid.UUID = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_s", layout="blob")
@attrs.define
class StrBlob:
    name: str
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_e")
@attrs.define
class IntIdEnc:
    name: str
    secret: str = redmodel.field(codec="json|fernet", default="")
    id: int = redmodel.key_field(generated=False)


@redmodel.model(prefix="fx29_qe", layout="blob", codec="json|fernet")
@attrs.define
class UuidEnc:
    name: str
    id: uuid.UUID = redmodel.key_field(generated=False)


TTL_MS = 100_000_000


def _line(model: type, oid: str, data: dict[str, Any], pttl: int | None = None) -> str:
    return json.dumps({"v": 1, "model": f"{M}:{model.__name__}", "id": oid, "pttl": pttl,
                       "data": data}) + "\n"


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str,
         *args: str) -> tuple[int, str, str]:
    """The command run in this process: (exit code, stdout, stderr)."""
    with monkeypatch.context() as m:
        m.setenv("REDIS_URL", url)  # the command sets it: restored after
        # (set, not deleted: a delenv of an unset variable records nothing, and the
        # command of a cluster run sets it: it leaked to later tests' subprocesses)
        m.setenv("REDIS_CLUSTER", "")
        code = run([*args, "--url", url])
    out = capsys.readouterr()
    return code, out.out, out.err


def _import(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str,
            path: Path, *args: str) -> tuple[int, str]:
    code, out, err = _cli(capsys, monkeypatch, url, "import", "-m", M, "-i", str(path),
                          *args)
    return code, out + err


# ---- F1, F5: file order whatever the chunk; objects counted once --------------------------

_IDS = ["p", "q", "r", "s"]
_SKUS = ["a", "b", "c", "d", "e"]

_lines = st.lists(st.tuples(st.sampled_from(["u", "u", "h", "b"]), st.sampled_from(_IDS),
                            st.sampled_from(_SKUS), st.booleans()),
                  min_size=1, max_size=10)


def _state(store: redmodel.Store) -> tuple[Any, ...]:
    objs = {(cls.__name__, i): store.get(cls, i) for cls in (Uniq, Plain, Blob) for i in _IDS}
    owners = {}
    for sku in _SKUS:
        found = store.get_by(Uniq, sku=sku)
        owners[sku] = None if found is None else found.id
    expiring = {(cls.__name__, i): store.client.pttl(spec_of(cls).key_for(i)) > 0
                for cls in (Uniq, Plain, Blob) for i in _IDS}
    return objs, owners, expiring


@given(start=st.dictionaries(st.sampled_from(_IDS), st.sampled_from(_SKUS), max_size=4),
       lines=_lines, chunk=st.integers(1, 11))
def test_f1_f5_an_import_ends_as_its_lines_saved_one_by_one(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        start: dict[str, str], lines: list[tuple[str, str, str, bool]], chunk: int) -> None:
    """docs/cli.md "import": lines apply in file order, whatever --chunk: the outcome is
    that of saving each line's object in turn (store.save, its TTL or none), exit 0 and
    the same objects, unique owners and expiries; exit 3 exactly when such a save would
    be refused. "imported N objects" counts each object once (F5)."""
    owners: dict[str, str] = {}
    for kind, oid, sku, _ in lines:  # the check refuses two ids sharing a unique value
        if kind == "u":
            assume(owners.setdefault(sku, oid) == oid)
    assume(len(set(start.values())) == len(start))
    models = {"u": Uniq, "h": Plain, "b": Blob}

    def objects(kind: str, oid: str, sku: str) -> Any:
        return Uniq(sku, id=oid) if kind == "u" else models[kind](sku, id=oid)

    def initial() -> None:
        store.client.flushall()
        for oid, sku in start.items():
            store.save(Uniq(sku, id=oid))

    initial()  # the oracle: each line saved in turn
    refused = False
    for kind, oid, sku, ttl in lines:
        try:
            store.save(objects(kind, oid, sku), ttl=TTL_MS / 1000 if ttl else None)
        except redmodel.UniqueViolationError:
            refused = True
            break
    want = _state(store)
    initial()
    path = tmp_path / "x.jsonl"
    path.write_text("".join(_line(models[kind], oid, {"name" if kind != "u" else "sku": sku},
                                  TTL_MS if ttl else None)
                            for kind, oid, sku, ttl in lines))
    code, out = _import(capsys, monkeypatch, redis_url, path, "--chunk", str(chunk))
    assert code == (3 if refused else 0), out
    if not refused:
        assert _state(store) == want, out
        distinct = len({(kind, oid) for kind, oid, _, _ in lines})
        assert f"imported {distinct} objects" in out, out
    else:
        assert "is already taken" in out and "objects were written" in out, out


def test_f1_a_unique_value_moved_by_a_ttl_line_then_taken(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack's case, with plain and blob lines around it (several writes in one
    chunk, in file order): exit 0 at the default chunk."""
    store.save(Uniq("a", id="z"))
    path = tmp_path / "x.jsonl"
    path.write_text(_line(Plain, "p", {"name": "1"}) + _line(Blob, "b", {"name": "2"})
                    + _line(Uniq, "z", {"sku": "b"}, pttl=TTL_MS)
                    + _line(Uniq, "x", {"sku": "a"}) + _line(Blob, "c", {"name": "3"}))
    code, out = _import(capsys, monkeypatch, redis_url, path)
    assert code == 0, out
    assert store.get_by(Uniq, sku="a").id == "x" and store.get_by(Uniq, sku="b").id == "z"
    assert "imported 5 objects" in out


def test_f5_stopped_import_counts_a_repeated_object_once(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """x on lines 1 and 3 (its second line written too), then y refused: 1 object
    written; --json of a good file with x three times: "imported": 1."""
    store.save(Uniq("taken", id="w"))
    path = tmp_path / "x.jsonl"
    path.write_text(_line(Uniq, "x", {"sku": "a"}) + _line(Plain, "p", {"name": "1"})
                    + _line(Uniq, "x", {"sku": "b"}) + _line(Uniq, "y", {"sku": "taken"}))
    for chunk in ("1", "2", "500"):
        code, out = _import(capsys, monkeypatch, redis_url, path, "--chunk", chunk)
        assert code == 3, out
        assert " 2 objects were written" in out, (chunk, out)
        assert store.get(Uniq, "x").sku == "b"
    path.write_text(_line(Uniq, "x", {"sku": "a"}) * 3)
    code, out = _import(capsys, monkeypatch, redis_url, path, "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["imported"] == 1, out


# ---- F2: another program's key at a blob's key ------------------------------------------

_PLANT = {
    "hash": lambda c, k: c.hset(k, "owner", "another program"),
    "list": lambda c, k: c.rpush(k, "x"),
    "set": lambda c, k: c.sadd(k, "x"),
    "zset": lambda c, k: c.zadd(k, {"x": 1}),
    "stream": lambda c, k: c.xadd(k, {"f": "v"}),
}


@given(kind=st.sampled_from(sorted(_PLANT)), n=st.integers(1, 7), data=st.data(),
       chunk=st.integers(1, 4), ttl=st.booleans())
def test_f2_a_key_of_another_type_refuses_its_blob_write(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        kind: str, n: int, data: st.DataObject, chunk: int, ttl: bool) -> None:
    """docs/cli.md "import": a key of another type refuses the write holding it before
    anything in it is written (exit 3), never replaced: with and without a TTL. The
    chunks before it are written and counted; that chunk and the later ones are not."""
    store.client.flushall()
    at = data.draw(st.integers(0, n - 1))
    ids = [f"o{i}" for i in range(n)]
    planted = spec_of(Blob).key_for(ids[at])
    _PLANT[kind](store.client, planted)
    before = store.client.dump(planted)
    path = tmp_path / "x.jsonl"
    path.write_text("".join(_line(Blob, i, {"name": i}, TTL_MS if ttl else None)
                            for i in ids))
    code, out = _import(capsys, monkeypatch, redis_url, path, "--chunk", str(chunk))
    assert code == 3, out
    assert store.client.type(planted).decode() == kind and \
        store.client.dump(planted) == before
    done = at // chunk * chunk
    assert [store.client.exists(spec_of(Blob).key_for(i)) == 1 for i in ids[:done]] == \
        [True] * done
    assert not any(store.client.exists(spec_of(Blob).key_for(i)) for i in ids[done:]
                   if i != ids[at])
    assert f" {done} objects were written" in out and planted in out, out
    assert "may have been" not in out, out


def test_f2_store_save_of_a_blob_still_replaces_a_key_of_another_type(
        store: redmodel.Store) -> None:
    """docs/store.md: "the blob layout's SET replaces a key of any type, as SET does":
    the import's refusal is the import's, store.save is unchanged (decision, see the
    fix notes)."""
    key = spec_of(Blob).key_for("b")
    store.client.hset(key, "owner", "another program")
    store.save(Blob("x", id="b"))
    assert store.get(Blob, "b") == Blob("x", id="b")


# ---- F3, F6: a connection lost at any chunk --------------------------------------------

_WAYS = {
    "blob": (Blob, None),  # the blob script
    "plain": (Plain, None),  # save_many
    "ttl": (Blob, TTL_MS),  # MULTI/EXEC
}


@given(way=st.sampled_from(sorted(_WAYS)), fault=st.sampled_from(["drop_request",
                                                                   "lose_reply"]),
       n=st.integers(1, 6), chunk=st.integers(1, 3), data=st.data())
def test_f3_f6_a_lost_connection_counts_and_names_like_every_stop(
        store: redmodel.Store, proxy: FaultProxy, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        way: str, fault: str, n: int, chunk: int, data: st.DataObject) -> None:
    """docs/cli.md "import": a connection lost while writing exits 3, counts the objects
    written (the chunks before), names the keys of the write in flight as "may have
    been" (F3) and only those: the keys never sent are "not" written (F6)."""
    proxy.clear()
    store.client.flushall()
    model, pttl = _WAYS[way]
    ids = [f"o{i}" for i in range(n)]
    keys = [spec_of(model).key_for(i) for i in ids]
    starts = list(range(0, n, chunk))
    first = data.draw(st.sampled_from(starts))
    path = tmp_path / "x.jsonl"
    path.write_text("".join(_line(model, i, {"name": i}, pttl) for i in ids))
    getattr(proxy, fault)(lambda name: True, times=10_000, when=has(keys[first]))
    try:
        code, out = _import(capsys, monkeypatch, proxy.url, path, "--chunk", str(chunk),
                            "--timeout", "2")
    finally:
        proxy.clear()
    assert code == 3, out
    assert "cannot reach" not in out, out
    assert f" {first} objects were written" in out, out
    assert all(store.client.exists(k) for k in keys[:first])
    flight = keys[first:first + chunk]
    later = keys[first + chunk:]
    head, _, tail = out.partition("may have been:")
    # (the error's own text may name the keys in flight: a save with no ttl is fragile,
    # its lost write an OutcomeUnknownError naming them, fix 32D; the import's lists
    # follow its count)
    head = head.partition(" objects were written")[2]
    assert [k for k in keys if repr(k) in tail] == flight, out
    assert [k for k in keys if repr(k) in head] == later, out
    if fault == "drop_request":
        assert not any(store.client.exists(k) for k in keys[first:]), out


# ---- F4: keys whose id does not decode -------------------------------------------------


def _bad_keys(store: redmodel.Store, model: type) -> list[bytes]:
    """A good object, and keys under the model's prefix whose id the model cannot read."""
    c = store.client
    if model in (IntId, IntIdEnc):
        store.save(model("x", id=1))
        good = c.hgetall(spec_of(model).key_for(1))
        bad = [b"fx29_n:abc", b"fx29_n:01", b"fx29_n:\xff"] if model is IntId else \
            [b"fx29_e:abc", b"fx29_e:+1"]
        for k in bad:
            c.hset(k, mapping=good)
        return bad
    one = uuid.UUID(int=1) if model is not StrBlob else "1"
    store.save(model("x", id=one))
    good = c.get(spec_of(model).key_for(one))
    spec = spec_of(model)
    prefix = f"{spec.prefix}{spec.delimiter}".encode()
    if model is StrBlob:
        bad = [prefix + b"\xff", prefix + b"a\x80b"]
    else:
        bad = [prefix + b"abc", prefix + str(uuid.UUID(int=10)).upper().encode(),
               prefix + uuid.UUID(int=11).hex.encode()]
    for k in bad:
        c.set(k, good)
    return bad


@pytest.mark.parametrize("model", [IntId, UuidId, StrBlob, IntIdEnc, UuidEnc])
def test_f4_a_key_whose_id_does_not_decode_is_skipped_and_named(
        store: redmodel.Store, redis_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        model: type) -> None:
    """docs/cli.md "export": objects that cannot be read are skipped and listed (exit 1),
    never exit 4; and no line of the file is one its import refuses: the file imports
    whole into an empty server (exit 0), kept encrypted or not."""
    key = redmodel.codecs.FernetTransform.generate_key()
    use_keys(monkeypatch, fernet=[key])
    monkeypatch.setenv("REDMODEL_FERNET_KEYS", key)
    bad = _bad_keys(store, model)
    path = tmp_path / "x.jsonl"
    code, out, err = _cli(capsys, monkeypatch, redis_url, "export", "-m",
                          f"{M}:{model.__name__}", "-o", str(path))
    assert code == 1, (out, err)
    assert "internal error" not in err
    for k in bad:
        shown = k.decode("utf-8", "surrogateescape")
        assert repr(shown)[1:-1] in err or shown in err, (k, err)
    assert len(path.read_text().splitlines()) == 1, path.read_text()
    store.client.flushall()
    code, out = _import(capsys, monkeypatch, redis_url, path)
    assert code == 0, out
    assert "imported 1 objects" in out


# ---- a cluster: the blob script and MULTI once per object -------------------------------


def test_f1_f2_on_a_cluster(redis_cluster: Any, redis_cluster_client: Any, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """On a cluster the blob script goes once per object (its keys span slots): a good
    file of blobs, plain hashes, TTL lines and a moved unique value imports whole; a hash
    planted at one blob's key refuses that object alone (exit 3, the key kept): every
    other blob of its write is settled, written and counted or named."""
    host, port = redis_cluster.addresses[0]
    url = f"redis://{host}:{port}/0"
    store = redmodel.Store(redis_cluster_client)
    store.save(BUniq("a", id="z"))
    path = tmp_path / "x.jsonl"
    ids = [f"o{i}" for i in range(12)]
    path.write_text("".join(_line(Blob, i, {"name": i}) for i in ids)
                    + _line(BUniq, "z", {"sku": "b"}, pttl=TTL_MS)
                    + _line(BUniq, "x", {"sku": "a"}) + _line(Plain, "p", {"name": "p"})
                    + _line(Blob, "t", {"name": "t"}, pttl=TTL_MS))
    code, out = _import(capsys, monkeypatch, url, path, "--cluster")
    assert code == 0, out
    assert [store.get(Blob, i) for i in ids] == [Blob(i, id=i) for i in ids]
    assert store.get_by(BUniq, sku="a").id == "x" and store.get_by(BUniq, sku="b").id == "z"
    assert store.ttl(Blob, "t") is not None and "imported 16 objects" in out
    redis_cluster_client.flushall(target_nodes=redis_cluster_client.PRIMARIES)
    planted = spec_of(Blob).key_for(ids[5])
    redis_cluster_client.hset(planted, "owner", "another program")
    code, out = _import(capsys, monkeypatch, url, path, "--cluster", "--chunk", "12")
    assert code == 3, out
    assert redis_cluster_client.type(planted) == b"hash"
    written = [i for i in ids if i != ids[5] and store.get(Blob, i) is not None]
    assert written == [i for i in ids if i != ids[5]], out  # each blob settled alone
    assert f" {len(written)} objects were written" in out and planted in out, out
