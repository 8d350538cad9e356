"""The one exception hierarchy of redmodel.

Every error carries what it is about (model, key, field, codec) as attributes and in its
message, and never a secret or a stored plaintext value.
"""

from __future__ import annotations

__all__ = [
    "RedmodelError",
    "ModelDefinitionError",
    "ValidationError",
    "NotFoundError",
    "DecodeError",
    "CodecError",
    "ConflictError",
    "CrossSlotError",
]


class RedmodelError(Exception):
    """Base class of every error redmodel raises itself.

    Errors from redis-py (connection, timeout, permission) are passed through unwrapped.
    """


class ModelDefinitionError(RedmodelError, TypeError):
    """A model declaration cannot be used: unsupported field type, no key field, bad option.

    Raised once, when the class is declared, never later on a save.
    """


def _context(model: str | None, key: str | None, field: str | None) -> str:
    parts = []
    if model:
        parts.append(f"model {model}")
    if key is not None:
        parts.append(f"key {key!r}")
    if field:
        parts.append(f"field {field!r}")
    return ", ".join(parts)


class ValidationError(RedmodelError, ValueError):
    """A value cannot be written: wrong type, empty id, non-numeric increment.

    Raised before any command is sent, so nothing of the object is written.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        key: str | None = None,
        field: str | None = None,
    ) -> None:
        self.model = model
        self.key = key
        self.field = field
        ctx = _context(model, key, field)
        super().__init__(f"{message} ({ctx})" if ctx else message)


class NotFoundError(RedmodelError, LookupError):
    """The caller asked for an object that must exist and it does not (``get_or_raise``)."""

    def __init__(self, model: str, key: str) -> None:
        self.model = model
        self.key = key
        super().__init__(f"no {model} stored at key {key!r}")


class DecodeError(RedmodelError, ValueError):
    """Stored data does not fit the model or its codec: missing field, bad number, wrong codec
    chain, tampered ciphertext, unknown encryption key.

    The message names the key, model, field and codec involved; it never contains the stored
    value, a plaintext or a key.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        key: str | None = None,
        field: str | None = None,
        codec: str | None = None,
    ) -> None:
        self.reason = message
        self.model = model
        self.key = key
        self.field = field
        self.codec = codec
        ctx = _context(model, key, field)
        if codec:
            ctx = f"{ctx}, codec {codec!r}" if ctx else f"codec {codec!r}"
        super().__init__(f"{message} ({ctx})" if ctx else message)

    def with_context(
        self,
        *,
        model: str | None = None,
        key: str | None = None,
        field: str | None = None,
        codec: str | None = None,
    ) -> DecodeError:
        """A copy of this error with the missing context filled in (own values win)."""
        return DecodeError(
            self.reason,
            model=self.model or model,
            key=self.key if self.key is not None else key,
            field=self.field or field,
            codec=self.codec or codec,
        )


class CodecError(RedmodelError, ValueError):
    """A codec chain cannot be built: unknown name, missing optional dependency, no key."""


class ConflictError(RedmodelError):
    """An optimistic transaction conflicted on every attempt its retry policy allowed."""

    def __init__(self, message: str, *, attempts: int, keys: tuple[str, ...] = ()) -> None:
        self.attempts = attempts
        self.keys = keys
        super().__init__(message)


class CrossSlotError(RedmodelError):
    """An atomic operation would need keys in different Redis Cluster hash slots."""
