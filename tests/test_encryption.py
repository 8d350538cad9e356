"""Fernet through models: ciphertext only on the server, tampering and wrong keys fail
clearly, and rotating keys keeps every object readable."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest
import redis
from cryptography.fernet import Fernet

import redmodel
from redmodel._models._specs import spec_of
from tests.models import LAYOUTS

KEY_A, KEY_B = Fernet.generate_key(), Fernet.generate_key()


@attrs.define
class CardInfo:
    cardnum: int
    exp: tuple[int, int]
    cv2: int


def card_model(layout: str, tagged: bool) -> type:
    chain = "json|fernet"

    @redmodel.model(prefix=f"user_{layout}", layout=layout, hash_tag=tagged,
                    codec=chain if layout == "blob" else None)
    @attrs.define
    class User:
        name: str
        card: CardInfo = redmodel.field(codec=None if layout == "blob" else chain)
        id: str = redmodel.key_field()

    return User


USERS = {tagged: {layout: card_model(layout, tagged) for layout in LAYOUTS}
         for tagged in (False, True)}


@pytest.fixture
def store(any_store: redmodel.Store) -> redmodel.Store:
    """Sync and asyncio stores, on one server and on a three-primary cluster."""
    return any_store
SECRET = 2211849528391929


@pytest.fixture(autouse=True)
def keys() -> Iterator[None]:
    redmodel.codecs.configure_fernet(keys=[KEY_A])
    yield
    redmodel.codecs.configure_fernet(keys=[KEY_A])


def every_stored_byte(client: redis.Redis) -> bytes:
    out = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"hash":
            out.extend(k + v for k, v in client.hgetall(key).items())
        else:
            out.append(client.get(key) or b"")
    return b"".join(out)


def users(cls: type, n: int = 12) -> list[object]:
    return [cls(f"user{i}", CardInfo(SECRET + i, (2030, 9), 842)) for i in range(n)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ciphertext_never_contains_the_plaintext(store: redmodel.Store, layout: str) -> None:
    cls = USERS[store.cluster][layout]
    saved = users(cls)
    store.save_many(saved)
    raw = every_stored_byte(store.client)
    assert str(SECRET).encode() not in raw
    assert b"2211849528391" not in raw
    assert store.get_many(cls, [u.id for u in saved]) == saved  # type: ignore[attr-defined]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rotating_keys_keeps_every_object_readable(store: redmodel.Store, layout: str) -> None:
    cls = USERS[store.cluster][layout]
    saved = users(cls)
    store.save_many(saved)
    redmodel.codecs.configure_fernet(keys=[KEY_B, KEY_A])
    assert [store.get(cls, u.id) for u in saved] == saved  # type: ignore[attr-defined]
    assert store.rotate_keys(cls, count=5) == len(saved)
    assert store.rotate_keys(cls) == 0, "nothing left under the old key"
    redmodel.codecs.configure_fernet(keys=[KEY_B])
    assert [store.get(cls, u.id) for u in saved] == saved  # type: ignore[attr-defined]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_wrong_key_raises_decode_error_without_secrets(store: redmodel.Store, layout: str
                                                       ) -> None:
    cls = USERS[store.cluster][layout]
    user = users(cls, 1)[0]
    store.save(user)
    redmodel.codecs.configure_fernet(keys=[KEY_B])
    with pytest.raises(redmodel.DecodeError) as info:
        store.get(cls, user.id)  # type: ignore[attr-defined]
    message = str(info.value)
    assert repr(spec_of(cls).key_for(user.id)) in message and "json|fernet" in message
    assert KEY_A.decode() not in message and KEY_B.decode() not in message
    assert str(SECRET) not in message


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tampered_ciphertext_is_rejected(store: redmodel.Store, layout: str) -> None:
    cls = USERS[store.cluster][layout]
    user = users(cls, 1)[0]
    store.save(user)
    client = store.client
    for key in client.scan_iter():
        if key.endswith(b":%schema"):  # the model registry's record
            continue
        if client.type(key) == b"hash":
            value = client.hget(key, "card")
            assert value is not None
            client.hset(key, "card", value[:-5] + bytes([value[-5] ^ 1]) + value[-4:])
        else:
            value = client.get(key)
            if value and value.startswith(b"\xa7"):
                client.set(key, value[:-5] + bytes([value[-5] ^ 1]) + value[-4:])
    with pytest.raises(redmodel.DecodeError, match=r"does not verify|not a Fernet token"):
        store.get(cls, user.id)  # type: ignore[attr-defined]


def test_reading_with_the_wrong_chain_names_both(store: redmodel.Store) -> None:
    @redmodel.model(prefix="doc", layout="blob", codec="msgpack|bz2")
    @attrs.define
    class Doc:
        body: str
        id: str = redmodel.key_field()

    @redmodel.model(prefix="doc", layout="blob", codec="json|zlib")
    @attrs.define
    class DocJson:
        body: str
        id: str = redmodel.key_field()

    doc = Doc("hello")
    store.save(doc)
    with pytest.raises(redmodel.SchemaConflictError, match=r"belongs to the model \S+\.Doc "):
        store.get(DocJson, doc.id)  # the model registry refuses it before reading
    unchecked = redmodel.Store(store.client, registry=False)
    with pytest.raises(redmodel.DecodeError, match=r"written with codec 'msgpack\|bz2'.*"
                                                   r"read with 'json\|zlib'"):
        unchecked.get(DocJson, doc.id)
