"""The tutorial's 260,000-byte message, compressed; and what every chain stores.

``python -m examples.message`` prints the measured compression ratio of the message under
bz2, then the stored size (bytes in Redis, header included) of the message and of the
nested restaurant under every codec chain.
"""

from __future__ import annotations

import attrs
from cryptography.fernet import Fernet

import redmodel
from examples._server import example_store
from examples.restaurant import Address, Street

CHAINS = [
    "json", "yaml", "msgpack",
    "json|bz2", "json|zlib", "json|lzma", "json|fernet",
    "msgpack|bz2", "msgpack|zlib", "msgpack|lzma", "msgpack|fernet",
    "yaml|bz2", "msgpack|bz2|fernet", "json|zlib|fernet",
]


@attrs.define
class Message:
    body: str
    id: str = redmodel.key_field(generated=False)


@attrs.define
class Restaurant:
    name: str
    type: str
    address: Address
    id: int = redmodel.field(key=True)


def as_blob(cls: type, chain: str) -> type:
    """``cls`` stored as one key through ``chain``."""
    prefix = f"{cls.__name__.lower()}_{chain.replace('|', '_')}"

    @redmodel.model(prefix=prefix, layout="blob", codec=chain)
    @attrs.define
    class Stored(cls):  # type: ignore[valid-type, misc]
        pass

    return Stored


def stored_size(store: redmodel.Store, obj: object, chain: str) -> int:
    cls = as_blob(type(obj), chain)
    copy = cls(**attrs.asdict(obj, recurse=False))
    key = store.save(copy)
    assert store.get(cls, copy.id) == copy  # type: ignore[attr-defined]
    return int(store.client.strlen(key))


def main(store: redmodel.Store) -> dict[str, tuple[int, int]]:
    redmodel.codecs.configure_fernet(keys=[Fernet.generate_key()])
    blob = "i have a lot to talk about" * 10000
    message = Message(blob, id="500")
    restaurant = Restaurant("Ravagh", "Persian",
                            Address(Street("11 E 30th St", "APT 1"), "New York", "NY", 10016),
                            id=484272)
    raw = len(blob.encode("utf-8"))
    compressed = stored_size(store, message, "json|bz2")
    print(f"message: {raw:,} bytes of text; stored with json|bz2: {compressed} bytes "
          f"(ratio {raw / compressed:,.0f}x)")
    sizes = {c: (stored_size(store, restaurant, c), stored_size(store, message, c))
             for c in CHAINS}
    print("\n| chain | restaurant (bytes) | 260,000-byte message (bytes) |")
    print("| --- | ---: | ---: |")
    for chain, (r, m) in sizes.items():
        print(f"| `{chain}` | {r:,} | {m:,} |")
    return sizes


if __name__ == "__main__":
    with example_store() as store:
        main(store)
