"""Blind indexes: equality lookups on encrypted fields through a keyed hash of the value.

A blind-indexed field (``redmodel.field(codec="json|fernet", index="blind")``) never puts
its value in an index. Its entry text is a *token*::

    <kid>.<mac>      e.g.  Qx3a.Jq0lXh8aVnW2b1m4yZpG6A
    kid = base64url(HMAC-SHA256(index key, "redmodel blind index key id")[:3])   4 chars
    mac = base64url(HMAC-SHA256(field key, canonical value)[:16])               22 chars
    field key = HMAC-SHA256(index key, "redmodel blind index v1" 0 prefix 0 field)

The canonical value is the text the plain equality index would use (UTF-8 of a str, the
exact decimal digits of an int, ISO 8601 of a date...). The field key binds every token to
its model and field, so equal values in two fields (or two models) give unrelated tokens.

Index keys are a list, newest first, like MultiFernet's: the newest makes the equality
entries; a lookup tries every key, so queries keep working while
``Store.rotate_index_key`` moves entries to the newest key. A unique value gets one entry
per configured key, so a write under either key meets a value claimed under the other.

This module is pure (no I/O); the rotation plan lives in ``_rotate``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from redmodel._errors import CodecError, ModelDefinitionError
from redmodel._models._keys import escape, unescape
from redmodel._models._types import canonical_text
from redmodel.codecs import _fernet
from redmodel.codecs._fernet import configured_raw_keys
from redmodel.codecs._keysource import Key, KeySource

__all__ = [
    "BlindIndex",
    "DEFAULT_INDEX_KEYS_ENV",
    "configure_index_keys",
    "generate_index_key",
]

DEFAULT_INDEX_KEYS_ENV = "REDMODEL_INDEX_KEYS"

MAC_BYTES = 16
"""The HMAC-SHA256 output is cut to 128 bits: collisions between distinct values stay
negligible (about n²/2¹²⁹ for n distinct values; 2⁻⁶⁵ at four billion), so a blind index
behaves exactly like an equality index, with no false matches and no false unique
violations, while key names stay short (docs/codecs.md, "Blind indexes")."""

KID_LEN = 4  # characters of base64url: 3 bytes

_KID_LABEL = b"redmodel blind index key id"
_FIELD_LABEL = b"redmodel blind index v1\x00"
_KEY_BYTES = 32


def generate_index_key() -> str:
    """A new random blind-index key: 32 random bytes as url-safe base64 text (the format of
    a Fernet key, but keep index keys separate from encryption keys)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")


def _raw_key(key: bytes) -> bytes | None:
    try:
        raw = base64.b64decode(key, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _KEY_BYTES else None


def _kid(raw: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.digest(raw, _KID_LABEL, "sha256")[:3]).decode()


class IndexKeyring:
    """The index keys of one configuration, newest first, with their key ids and the
    per-field keys derived from them (computed once per field)."""

    __slots__ = ("_fields", "kids", "raws")

    def __init__(self, keys: Sequence[bytes], source: str) -> None:
        raws: list[bytes] = []
        for i, key in enumerate(keys):
            raw = _raw_key(key)
            if raw is None:
                raise CodecError(
                    f"index keys: key {i + 1} of {len(keys)} from {source} is not an index "
                    "key (32 url-safe base64-encoded bytes, see redmodel.generate_index_key())"
                )
            raws.append(raw)
        kids = [_kid(r) for r in raws]
        for i, kid in enumerate(kids):
            if kid in kids[:i]:
                raise CodecError(
                    f"index keys: keys {kids.index(kid) + 1} and {i + 1} of {len(keys)} from "
                    f"{source} have the same key id (the same key listed twice, or a rare "
                    "clash: generate another key)"
                )
        self.raws = tuple(raws)
        self.kids = tuple(kids)
        self._fields: dict[bytes, tuple[bytes, ...]] = {}

    def field_keys(self, label: bytes) -> tuple[bytes, ...]:
        """The keys of one field (``label`` names model and field), one per index key."""
        found = self._fields.get(label)
        if found is None:
            found = tuple(hmac.digest(raw, _FIELD_LABEL + label, "sha256")
                          for raw in self.raws)
            self._fields[label] = found
        return found


_configured: KeySource | None = None
_default: KeySource | None = None
_cache: tuple[KeySource, tuple[bytes, ...], IndexKeyring, int] | None = None
_lock = threading.Lock()


def _known_raw_keys() -> tuple[bytes, ...]:
    """The raw index keys known now, without reading a provider, file or variable: the
    configured static keys and the cached ring's (what a new Fernet key is compared with)."""
    found: list[bytes] = []
    source, cached = _configured, _cache
    if source is not None and source.static is not None:
        with contextlib.suppress(CodecError):  # a bad key is refused where it is used
            found.extend(IndexKeyring(source.static, source.source).raws)
    if cached is not None and cached[0] is (source or _default):  # not a replaced one's
        found.extend(cached[2].raws)
    return tuple(found)


_fernet.index_raw_keys = _known_raw_keys


def _check_apart(ring: IndexKeyring, source: str) -> None:
    if set(ring.raws) & set(configured_raw_keys()):
        raise CodecError(
            f"index keys: a key from {source} is also a Fernet encryption key; an "
            "index key must be separate from the encryption keys (generate one with "
            "redmodel.generate_index_key())"
        )


def configure_index_keys(
    keys: Key | Iterable[Key] | None = None,
    *,
    key_provider: Callable[[], Key | Iterable[Key]] | None = None,
    env: str | None = None,
    file: str | os.PathLike[str] | None = None,
) -> None:
    """Set the blind-index keys of every model, newest first.

    Exactly one of ``keys``, ``key_provider`` (a callable returning them, asked on every
    use), ``env`` (a variable of comma-separated keys) or ``file`` (keys separated by commas
    or newlines, re-read when the file changes). Until this is called, blind indexes read
    ``REDMODEL_INDEX_KEYS`` when they are used. The newest key makes new entries; every key
    is tried by lookups. Raises :class:`CodecError` for a malformed key (``keys=`` at once,
    the others at first use), without the key.

    >>> configure_index_keys(keys=[generate_index_key()])
    """
    global _configured  # noqa: PLW0603 - the process-wide index key configuration
    source = KeySource("index keys", "index keys", keys, key_provider=key_provider, env=env,
                       file=file)
    if source.static is not None:
        # refuse a bad key, or one that is also a Fernet key, now, not at first use
        _check_apart(IndexKeyring(source.static, source.source), source.source)
    _configured = source


def current_keyring() -> IndexKeyring:
    """The keyring of the current configuration; CodecError when there are no keys."""
    global _default, _cache  # noqa: PLW0603 - a lazily built default and one cached ring
    source = _configured
    if source is None:
        if _default is None:
            _default = KeySource("index keys", "index keys", env=DEFAULT_INDEX_KEYS_ENV)
        source = _default
    keys = source.read()
    cached = _cache
    if (cached is not None and cached[0] is source and cached[1] == keys
            and cached[3] == _fernet.generation()):
        return cached[2]
    # compared again whenever a Fernet key set of the process has new keys
    generation = _fernet.generation()
    ring = IndexKeyring(keys, source.source)
    _check_apart(ring, source.source)
    with _lock:
        _cache = (source, keys, ring, generation)
    return ring


def configured_kids() -> tuple[str, ...] | None:
    """The key ids of the index keys configured now, newest first; None when there are
    none, or they are malformed (the call that needs them raises that CodecError)."""
    try:
        return current_keyring().kids
    except CodecError:
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class BlindIndex:
    """The blind index of one field: its value's token under each index key.

    ``cls`` is the model; its key prefix is read at the first use (the spec is attached
    after the indexes are compiled), so tokens are bound to the stored model.
    """

    __slots__ = ("_canonical", "_cls", "_delimiter", "_label", "field")

    def __init__(self, cls: type, field: str, tp: Any, delimiter: str) -> None:
        canonical = canonical_text(tp)  # equal values (==), one token
        self._cls = cls
        self.field = field
        self._canonical: Callable[[Any], bytes] = (
            lambda v: canonical(v).encode("utf-8", "surrogateescape"))
        self._delimiter = delimiter
        self._label: bytes | None = None

    def __repr__(self) -> str:
        return f"<BlindIndex {self._cls.__name__}.{self.field}>"

    def label(self) -> bytes:
        label = self._label
        if label is None:
            spec = self._cls.__dict__.get("__redmodel__")
            prefix = getattr(spec, "prefix", None) or self._cls.__name__
            label = self._label = prefix.encode() + b"\x00" + self.field.encode()
        return label

    def token(self, ring: IndexKeyring, i: int, value: Any) -> str:
        """The escaped entry text of ``value`` under index key ``i`` of ``ring``."""
        mac = hmac.digest(ring.field_keys(self.label())[i], self._canonical(value), "sha256")
        return escape(f"{ring.kids[i]}.{_b64(mac[:MAC_BYTES])}", self._delimiter)

    def text(self, value: Any) -> str:
        """The entry text of ``value`` under the newest index key."""
        return self.token(current_keyring(), 0, value)

    def tokens(self, value: Any) -> list[str]:
        """The entry texts of ``value`` under every configured index key, newest first."""
        ring = current_keyring()
        return [self.token(ring, i, value) for i in range(len(ring.raws))]


def kid_of(text: str) -> str:
    """The key id of an (escaped) token."""
    return unescape(text)[:KID_LEN]


def unique_texts(blinds: Sequence[BlindIndex | None], texts: Sequence[Callable[[Any], str]],
                 parts: Sequence[Any]) -> list[str]:
    """The entry texts of one unique constraint's values (``\\x1e``-joined parts) when a
    part is blind: one per index key, newest first, every blind part under the same key."""
    ring = current_keyring()
    out = []
    for i in range(len(ring.raws)):
        out.append("\x1e".join(b.token(ring, i, p) if b is not None else text(p)
                               for b, text, p in zip(blinds, texts, parts, strict=True)))
    return out


def check_declaration(where: str, option: Any, unique: bool, encrypted: bool, tp: Any
                      ) -> None:
    """Refuse a plain index on an encrypted field and a blind index on anything else."""
    if encrypted and option != "blind":
        what = "a range index" if option == "range" else "an index or unique constraint"
        extra = (" A keyed hash keeps no order, so ranges and sorting on an encrypted "
                 "field are not possible." if option == "range" else "")
        raise ModelDefinitionError(
            f"{where} is encrypted: {what} would store its values in plaintext in Redis "
            "key names. Declare index='blind' (with unique=True for a unique value) to "
            "index a keyed hash of the value instead (a blind index, docs/codecs.md)."
            + extra
        )
    if option == "blind" and not encrypted:
        raise ModelDefinitionError(
            f"{where}: index='blind' is for encrypted fields (a codec chain with fernet); "
            "this field is stored in plaintext, so use index=True"
        )
    if option == "blind" and tp is bool:
        raise ModelDefinitionError(
            f"{where}: a blind index on a bool has two tokens, and their counts tell which "
            "is which: it would hide nothing. Leave it unindexed, or unencrypted"
        )
