"""The tutorial's card data, encrypted with Fernet before it reaches the server.

``python -m examples.cardinfo``. Keys come from ``$REDMODEL_FERNET_KEYS`` (comma-separated,
newest first); without it the example makes throwaway keys, as a real app never should.
"""

from __future__ import annotations

import os

import attrs
from cryptography.fernet import Fernet

import redmodel
from examples._server import example_store


@attrs.define
class CardInfo:
    cardnum: int = attrs.field(repr=False)  # never in a repr or a log line
    exp: tuple[int, int]
    cv2: int = attrs.field(repr=False)


@redmodel.model(prefix="user")
@attrs.define
class User:
    name: str
    card: CardInfo = redmodel.field(codec="json|fernet")
    id: str = redmodel.key_field(generated=False)


def main(store: redmodel.Store) -> None:
    keys = [k for k in os.environ.get("REDMODEL_FERNET_KEYS", "").split(",") if k]
    if not keys:
        print("REDMODEL_FERNET_KEYS is unset: using a throwaway key for this demo")
        keys = [Fernet.generate_key().decode()]
    redmodel.codecs.configure_fernet(keys=keys)
    user = User("dan", CardInfo(2211849528391929, (2020, 9), 842), id="1000")
    store.save(user)
    stored = store.client.hget("user:1000", "card") or b""
    print(f"HGET user:1000 card -> {stored[:40]!r}... ({len(stored)} bytes)")
    assert b"2211849528391929" not in stored
    print("plaintext card number on the server:", b"2211849528391929" in stored)
    loaded = store.get(User, "1000")
    assert loaded == user
    print("read back:", loaded)

    redmodel.codecs.configure_fernet(keys=[Fernet.generate_key().decode(), *keys])  # newest first
    print("rotated to a new key:", store.rotate_keys(User), "value(s) re-encrypted")
    assert store.get(User, "1000") == user


if __name__ == "__main__":
    with example_store() as store:
        main(store)
