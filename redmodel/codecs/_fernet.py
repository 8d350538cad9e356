"""Fernet encryption (AES-128-CBC + HMAC-SHA256) with MultiFernet key rotation.

Keys always come from the application: a list, a callable, an environment variable or a
file.
They are never defaulted, never stored outside the ``cryptography`` key objects, and never
appear in a repr, an error message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from redmodel._errors import CodecError, DecodeError
from redmodel.codecs._base import Transform
from redmodel.codecs._deps import missing_extra
from redmodel.codecs._keysource import Key, KeySource

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

__all__ = ["DEFAULT_KEYS_ENV", "FernetTransform", "configure_fernet"]

DEFAULT_KEYS_ENV = "REDMODEL_FERNET_KEYS"

# version byte + timestamp + IV + one AES block + HMAC; ciphertext grows in AES blocks.
_MIN_TOKEN = 1 + 8 + 16 + 16 + 32
_OVERHEAD = 1 + 8 + 16 + 32


def _require_cryptography(name: str) -> None:
    try:
        import cryptography.fernet  # noqa: F401, PLC0415 - optional dependency
    except ImportError:
        raise missing_extra(name, "cryptography", "crypto") from None


def _strict_raw(key: bytes) -> bytes | None:
    """The 32 bytes of a well-formed key, or None (no stray character is skipped)."""
    try:
        raw = base64.b64decode(key, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    return raw if len(raw) == 32 else None


# Every Fernet key set of the process (the ``fernet`` name's and any named one, such as a
# ``FernetTransform(..., name="fernet-pii")`` registered as a codec): an index key must be
# none of their keys, whichever is configured first (decided in session 23). ``generation``
# changes whenever one of them builds a keyring, so the blind-index keyring's cache knows
# to compare again.
_transforms: weakref.WeakSet[FernetTransform] = weakref.WeakSet()
_generation = [0]
index_raw_keys: Callable[[], tuple[bytes, ...]] = tuple
"""Set by the blind-index module: the raw index keys known now (to refuse a Fernet key
that is one of them)."""


def generation() -> int:
    """Changes whenever a Fernet key set of the process reads or is given new keys."""
    return _generation[0]


def configured_raw_keys() -> tuple[bytes, ...]:
    """The raw bytes of the keys every Fernet key set of the process encrypts with now
    (the ``fernet`` name's configuration and every other ``FernetTransform``), skipping
    any that has no usable keys (blind indexes check that their keys differ from these)."""
    found: list[bytes] = []
    with contextlib.suppress(Exception):  # no usable configuration: nothing to compare
        found.extend(_current()._keyring().raws)
    for t in list(_transforms):
        with contextlib.suppress(Exception):  # no usable keys: nothing to compare
            found.extend(t._keyring().raws)
    return tuple(found)


def _check_apart(raws: tuple[bytes, ...], name: str, source: str) -> None:
    """CodecError when a Fernet key is also a configured index key (never naming it)."""
    if set(raws) & set(index_raw_keys()):
        raise CodecError(
            f"{name}: a key from {source} is also a blind-index key; an encryption key must "
            "be separate from the index keys (generate one with "
            "FernetTransform.generate_key())"
        )


class _Keyring:
    """The Fernet objects for one list of keys; the newest key encrypts."""

    __slots__ = ("multi", "newest", "raws")

    def __init__(self, keys: tuple[bytes, ...], source: str) -> None:
        from cryptography.fernet import Fernet, MultiFernet  # noqa: PLC0415

        if not keys:
            raise CodecError(f"fernet: {source} gave no keys")
        fernets: list[Fernet] = []
        raws: list[bytes] = []
        for i, key in enumerate(keys):
            raw = _strict_raw(key)  # Fernet() itself skips spaces and stray characters
            if raw is None:
                raise CodecError(
                    f"fernet: key {i + 1} of {len(keys)} from {source} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes, see FernetTransform.generate_key())"
                )
            fernets.append(Fernet(key))
            raws.append(raw)
        self.newest: Fernet = fernets[0]
        self.multi: MultiFernet = MultiFernet(fernets)
        self.raws: tuple[bytes, ...] = tuple(raws)


class FernetTransform(Transform):
    """``fernet``: authenticated encryption; any change to a stored value is detected.

    Give the keys in exactly one way, newest first (the first key encrypts, every key
    decrypts):

    * ``FernetTransform(keys=[newest, older])``;
    * ``FernetTransform(key_provider=fn)``: ``fn()`` returns the list, called on every
      encode/decode, so keys can change while the process runs (cache it if it is slow);
    * ``FernetTransform(env="APP_KEYS")``: the variable holds comma-separated keys, read on
      every use;
    * ``FernetTransform(file="/run/secrets/fernet")``: the file holds the keys, separated by
      commas or newlines (``#`` starts a comment line); re-read when it changes, as a
      mounted secret does.

    The stored form is the Fernet token's raw bytes (not its base64 text): 25% smaller, and
    there is exactly one byte string per token, so any flipped byte fails verification.

    Raises :class:`CodecError` for missing or malformed keys (without the key) and
    :class:`DecodeError` for a value that does not verify under any configured key.

    >>> t = FernetTransform(keys=[FernetTransform.generate_key()])
    >>> t.decode(t.encode(b"4111 1111 1111 1111"))
    b'4111 1111 1111 1111'
    """

    def __init__(
        self,
        keys: Key | Iterable[Key] | None = None,
        *,
        key_provider: Callable[[], Key | Iterable[Key]] | None = None,
        env: str | None = None,
        file: str | os.PathLike[str] | None = None,
        name: str = "fernet",
    ) -> None:
        self._source = KeySource("fernet", "Fernet keys", keys, key_provider=key_provider,
                                 env=env, file=file)
        _require_cryptography(name)
        self.name = name
        self._static: _Keyring | None = None
        if self._source.static is not None:
            self._static = self._new_ring(self._source.static)
        self._cached: tuple[tuple[bytes, ...], _Keyring] | None = None
        self._lock = threading.Lock()
        _transforms.add(self)

    def _new_ring(self, keys: tuple[bytes, ...]) -> _Keyring:
        ring = _Keyring(keys, self._source.source)
        _check_apart(ring.raws, self.name, self._source.source)
        _generation[0] += 1
        return ring

    encrypts = True

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, as text (put it in your secret store, not in code).

        Raises :class:`CodecError` naming the extra to install when ``cryptography`` is
        missing."""
        _require_cryptography("fernet")
        from cryptography.fernet import Fernet  # noqa: PLC0415

        return Fernet.generate_key().decode("ascii")

    def __repr__(self) -> str:
        return f"FernetTransform({self._source.describe()})"

    __str__ = __repr__

    def encode(self, data: bytes) -> bytes:
        return base64.urlsafe_b64decode(self._keyring().multi.encrypt(data))

    def decode(self, data: bytes) -> bytes:
        from cryptography.fernet import InvalidToken  # noqa: PLC0415

        ring = self._keyring()
        try:
            return ring.multi.decrypt(base64.urlsafe_b64encode(data))
        except InvalidToken:
            raise DecodeError(self._reason(data)) from None

    def rotate(self, data: bytes) -> bytes | None:
        """``data`` re-encrypted under the newest key, or ``None`` if it already is.

        The token keeps its original timestamp (``MultiFernet.rotate``).
        """
        from cryptography.fernet import InvalidToken  # noqa: PLC0415

        ring = self._keyring()
        token = base64.urlsafe_b64encode(data)
        try:
            ring.newest.decrypt(token)
            return None
        except InvalidToken:
            pass
        try:
            return base64.urlsafe_b64decode(ring.multi.rotate(token))
        except InvalidToken:
            raise DecodeError(self._reason(data)) from None

    def _reason(self, data: bytes) -> str:
        if len(data) < _MIN_TOKEN or data[0] != 0x80 or (len(data) - _OVERHEAD) % 16:
            return f"{self.name} layer: not a Fernet token (corrupt or truncated)"
        return (
            f"{self.name} layer: token does not verify under any configured key "
            "(encrypted under another key, or tampered with)"
        )

    def _keyring(self) -> _Keyring:
        if self._static is not None:
            return self._static
        keys = self._source.read()
        cached = self._cached
        if cached is not None and cached[0] == keys:
            return cached[1]
        ring = self._new_ring(keys)
        with self._lock:
            self._cached = (keys, ring)
        return ring


class _ConfiguredFernet(Transform):
    """The transform behind the name ``fernet``: whatever :func:`configure_fernet` set.

    It looks the configuration up on every use, so models declared (and chains built)
    before the application configures its keys use those keys.
    """

    name = "fernet"
    encrypts = True

    def __repr__(self) -> str:
        return f"fernet -> {_current()!r}"

    def encode(self, data: bytes) -> bytes:
        return _current().encode(data)

    def decode(self, data: bytes) -> bytes:
        return _current().decode(data)

    def rotate(self, data: bytes) -> bytes | None:
        return _current().rotate(data)


_configured: FernetTransform | None = None
_from_env: FernetTransform | None = None


def _current() -> FernetTransform:
    global _from_env  # noqa: PLW0603 - one lazily built default
    if _configured is not None:
        return _configured
    if _from_env is None:
        _from_env = FernetTransform(env=DEFAULT_KEYS_ENV)
    return _from_env


def configured_fernet() -> Transform:
    """Factory registered as ``fernet``; raises CodecError if cryptography is missing."""
    _require_cryptography("fernet")
    return _ConfiguredFernet()


def configure_fernet(
    keys: Key | Iterable[Key] | None = None,
    *,
    key_provider: Callable[[], Key | Iterable[Key]] | None = None,
    env: str | None = None,
    file: str | os.PathLike[str] | None = None,
) -> FernetTransform:
    """Set the keys of every chain that names ``fernet``, including chains built already.

    Exactly one of ``keys`` (newest first), ``key_provider`` (a callable returning them),
    ``env`` (a variable of comma-separated keys) or ``file`` (a file of keys separated by
    commas or newlines, re-read when it changes). Until this is called, ``fernet`` reads
    ``REDMODEL_FERNET_KEYS`` when it is used and raises :class:`CodecError` if it is unset.
    Call it again to add a new key in front: values under older keys still decode, and
    ``Codec.rotate`` moves them to the new one.

    >>> _ = configure_fernet(keys=[FernetTransform.generate_key()])
    """
    global _configured  # noqa: PLW0603 - the process-wide key configuration
    transform = FernetTransform(keys, key_provider=key_provider, env=env, file=file)
    _configured = transform
    return transform
