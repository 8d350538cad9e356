"""Attack 30AQ (codecs, encryption, key rotation): each test holds redmodel to a sentence
of its docs and FAILS on main as of this session. See /work/notes/s30/ATK-AQ-FINDINGS.md."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import redmodel
from redmodel._indexes._blind import _kid, _raw_key
from tests.keys import use_keys
from tests.plaintext import dump

# --- F1: a json value that is a number, cut short, reads back as another number ----------


@redmodel.model(prefix="atk30aq_tally")
@attrs.define
class Tally:
    n: int = redmodel.field(codec="json")
    f: float | None = redmodel.field(codec="json", default=None)
    id: str = redmodel.key_field(generated=False)


@given(n=st.integers(min_value=10), f=st.floats(allow_nan=False, allow_infinity=False)
       .filter(lambda x: len(repr(x)) > 3))
def test_f1_a_json_value_cut_short_never_parses_codec(n: int, f: float) -> None:
    """docs/codecs.md, "Built-in codecs": "JSON and msgpack know where a value ends, so a
    value cut short never parses." A top-level JSON number does not know where it ends:
    ``12345`` cut by one byte is ``1234``, a valid value, read back with no error."""
    c = redmodel.codecs.codec("json")
    for value, tp in ((n, int), (f, float)):
        stored = c.encode(value, tp)
        with pytest.raises(redmodel.DecodeError):
            c.decode(stored[:-1], tp)


def test_f1_a_json_number_cut_short_is_read_as_another_number(store: redmodel.Store) -> None:
    """docs/codecs.md: "JSON and msgpack know where a value ends, so a value cut short
    never parses"; docs/containers.md: "A stored member that does not decode raises
    redmodel.DecodeError naming the key". A model field and a queue member coded with
    ``json`` (a number), cut by one byte, are read as a different number."""
    store.save(Tally(12345, 2.75, id="t"))
    stored = store.client.hget("atk30aq_tally:t", "n")
    store.client.hset("atk30aq_tally:t", "n", stored[:-1])
    store.client.hdel("atk30aq_tally:t", "f")
    with pytest.raises(redmodel.DecodeError, match="atk30aq_tally:t"):
        got = store.get(Tally, "t")
        print(got)  # Tally(n=1234, ...): a silently different value
    q = redmodel.containers.Queue(store, "atk30aq_q", int, codec="json")
    q.push(4096)
    member = store.client.lindex("atk30aq_q", 0)
    store.client.lset("atk30aq_q", 0, member[:-1])
    with pytest.raises(redmodel.DecodeError, match="atk30aq_q"):
        print(q.pop())  # 409
    q.clear()
    store.delete(Tally, "t")


# --- F2: rotate_index_key skips an object it cannot decode, returns normally -------------


@redmodel.model(prefix="atk30aq_pat")
@attrs.define
class Patient:
    name: str
    ssn: str = redmodel.field(codec="json|fernet", index="blind", unique=True)
    note: str = redmodel.field(codec="json|fernet", default="")   # encrypted, not indexed
    id: str = redmodel.key_field(generated=False)


def _flip_last_byte(store: redmodel.Store, key: str, field: str) -> None:
    raw = store.client.hget(key, field)
    store.client.hset(key, field, raw[:-1] + bytes([raw[-1] ^ 1]))


def test_f2_rotate_index_key_leaves_an_unreadable_objects_old_entries(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/codecs.md, "Rotating the index key": step 2 "finds the objects whose entries
    name an older key id ..., decrypts their values and rewrites their index entries";
    step 4 "drops the old key's unique entries, so no entry names the old key id any
    more"; "uniqueness holds throughout a rotation". Here one object's *unindexed*
    encrypted field (``note``) no longer verifies (its Fernet key was dropped, or a byte
    changed): every rotation step returns normally (only a WARNING log line), the
    object's ssn entries stay under the old key, and after the old key is dropped its ssn
    is not found and another object takes it. (``rotate_keys`` raises DecodeError naming
    the key for such an object: docs/store.md.)"""
    old, new = redmodel.generate_index_key(), redmodel.generate_index_key()
    use_keys(monkeypatch, index=[old])
    store.save_many([Patient("ann", "987-65-4321", "n", id="p1"),
                     Patient("bob", "123-45-6789", "n", id="p2")])
    _flip_last_byte(store, "atk30aq_pat:p1", "note")
    redmodel.configure_index_keys(keys=[new, old])
    try:
        store.rotate_index_key(Patient)                      # step 2
        redmodel.configure_index_keys(keys=[new])            # step 3
        store.rotate_index_key(Patient)                      # step 4
    except redmodel.RedmodelError:
        return  # refusing to claim the rotation done would hold the promise
    old_kid = _kid(_raw_key(old.encode())).encode()
    left = [line for line in dump(store.client).split(b"\n") if old_kid + b"." in line]
    try:
        assert left == [], "entries still under the dropped index key"
        assert store.find(Patient, ssn="987-65-4321").ids() == ["p1"]
        with pytest.raises(redmodel.UniqueViolationError):
            store.save(Patient("eve", "987-65-4321", id="p3"))
    finally:
        store.delete_many(Patient, ["p1", "p2", "p3"])


# --- F3: rotate_keys passes over a value of an encrypted field that no chain decodes ------


@pytest.mark.parametrize("stored", [b"987-65-4321", b'\xa7\x04json"987-65-4321"'])
def test_f3_rotate_keys_passes_over_a_value_no_chain_decodes(
        store: redmodel.Store, monkeypatch: pytest.MonkeyPatch, stored: bytes) -> None:
    """docs/store.md, `rotate_keys`: "an object it cannot read (a value no chain decodes,
    a corrupt flat manifest) raises `DecodeError` naming its key, with nothing of its page
    rewritten". An encrypted field holding a plaintext value (no header, or written by
    ``json``) cannot be read (``get`` raises DecodeError), yet ``rotate_keys`` returns 0
    and says nothing: the plaintext stays in Redis after a rotation that reports success."""
    use_keys(monkeypatch)
    store.save(Patient("ann", "987-65-4321", "n", id="p1"))
    store.client.hset("atk30aq_pat:p1", "note", stored)
    with pytest.raises(redmodel.DecodeError, match="atk30aq_pat:p1"):
        store.get(Patient, "p1")
    try:
        with pytest.raises(redmodel.DecodeError, match="atk30aq_pat:p1"):
            store.rotate_keys(Patient)
    finally:
        store.delete(Patient, "p1")

