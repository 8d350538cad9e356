"""Attack 31J (this session's fixes: flat sets, model/container key-space overlap,
rotate_keys after 31C F2): one failing test per finding. Each test holds the code to a
sentence of the docs (quoted in its docstring); notes in
/work/notes/s31/ATK-J-FINDINGS.md."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.codecs import FernetTransform, codec
from redmodel.containers import Queue, WindowCounter
from redmodel.testing import FaultProxy, has
from tests.faults import FAST_RESEND, store_through
from tests.keys import use_keys

_COUNT = itertools.count()


def _model(prefix: str) -> type:
    cls = type(f"Atk31j{next(_COUNT)}", (), {
        "__annotations__": {"n": int, "id": str}, "n": 0,
        "id": redmodel.key_field(generated=False)})
    return redmodel.model(prefix=prefix)(attrs.define(cls))


def _wipe(client: redis.Redis, prefix: str) -> None:
    for k in client.scan_iter(f"{prefix}*"):
        client.delete(k)


# --- F1: a lost reply to a container's first claim leaves its prefixes unmarked ----------


@pytest.mark.parametrize("kind", ["Queue", "WindowCounter"])
def test_f1_a_lost_claim_reply_leaves_the_key_unmarked_and_a_model_is_accepted_there(
        proxy: FaultProxy, redis_client: redis.Redis, kind: str) -> None:
    """docs/containers.md, "The container registry": "across stores and processes,
    through the registry, when the model's prefix is one of the key's `:`-prefixes (`item`
    for `item:x`, any delimiter) ...: the first use ever of a key marks each `:`-prefix's
    record ... which a model's first registration reads anyway"; "When one of `prefix +
    delimiter` and `<key>:` starts the other ... the second of the two to be used is
    refused with `SchemaConflictError`". docs/failures.md: a lost reply is resent.

    The container's first use ever runs the claim script; its reply is lost, the resend
    finds the record the first run wrote and takes it for "another process recorded it
    meanwhile", so the marks of the key's ':'-prefixes are never written (by this or any
    later first use: the record exists). A model under the prefix, first used by another
    store afterwards, is then accepted: it owns the container's key."""
    ns = f"atk31j_f1{next(_COUNT)}"
    _wipe(redis_client, ns)
    first = store_through(proxy, resend=FAST_RESEND)
    record = f"{ns}:x:{{{ns}:x}}:%container"
    if kind == "Queue":
        use: Any = lambda: Queue(first, (ns, "x"), int).push(1)  # noqa: E731
    else:
        use = lambda: WindowCounter(first, (ns, "x"), window=60).incr("s")  # noqa: E731
    proxy.lose_reply("EVALSHA", when=has(record))
    try:
        use()  # the resend makes the lost reply invisible to the caller
        assert proxy.events, "the fault fired"
        other = redmodel.Store(redis_client)  # another process
        model = _model(ns)
        with pytest.raises(redmodel.SchemaConflictError):
            other.save(model(1, id="a"))
    finally:
        _wipe(redis_client, ns)


# --- F2: rotate_keys rewrites (or chokes on) a plain bytes field -------------------------


@redmodel.model(prefix="atk31j_rot")
@attrs.define
class RotHash:
    secret: str = redmodel.field(codec="json|fernet")
    raw: bytes = b""
    id: str = redmodel.key_field(generated=False)


@redmodel.model(prefix="atk31j_rotf", layout="flat")
@attrs.define
class RotFlat:
    secret: str = redmodel.field(codec="json|fernet")
    raw: bytes = b""
    id: str = redmodel.key_field(generated=False)


@pytest.mark.parametrize("cls", [RotHash, RotFlat])
@pytest.mark.parametrize("payload", ["a token", "header then junk"])
def test_f2_rotate_keys_leaves_a_plain_bytes_field_alone(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, cls: type,
        payload: str) -> None:
    """docs/store.md, `rotate_keys(Model)`: "values rewritten; every object of the page is
    decoded as `get` decodes it first: an object it cannot read (...) raises `DecodeError`
    naming its key"; docs/cli.md, rotate-keys: "values written under an older Fernet key
    are re-encrypted under the newest one". redmodel/_plans/_objects.py rotate_page: "every
    stored value of these objects written by a key-holding chain of the model".

    A plain ``bytes`` field (no codec) holds bytes that start with the header of the
    model's ``json|fernet`` chain (here: a token the app forwards, or such a header then
    other bytes). ``get`` reads the object back equal. ``rotate_keys`` picks values by
    their header, not by field: it re-encrypts the plain field's bytes (``get`` then
    returns other bytes than were saved) or raises DecodeError for an object ``get``
    reads."""
    old, new = FernetTransform.generate_key(), FernetTransform.generate_key()
    use_keys(monkeypatch, fernet=[old])
    token = codec("json|fernet").encode("forward me", str)
    raw = token if payload == "a token" else token[:20] + b"junk"
    store = redmodel.Store(redis_client)
    store.save(cls(secret="s", raw=raw, id="a"))
    use_keys(monkeypatch, fernet=[new, old])
    try:
        assert store.get(cls, "a").raw == raw
        store.rotate_keys(cls)  # the secret: rotated; raw: not the chain's value
        assert store.get(cls, "a").raw == raw, "rotate_keys rewrote a plain bytes field"
    finally:
        store.delete(cls, "a")
