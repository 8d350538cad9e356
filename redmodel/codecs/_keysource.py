"""Where secret keys come from: a list, a callable, an environment variable or a file.

Shared by Fernet encryption keys and blind-index keys. A source hands back the raw key
strings, newest first; whoever uses them checks their format. Nothing here ever puts a key,
or any part of one, in a message or a repr: errors name the source (``keys=``, the
variable, the file's path), never its content.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeAlias

from redmodel._errors import CodecError

__all__ = ["Key", "KeySource"]

Key: TypeAlias = str | bytes
"""A key as text (or its ASCII bytes): url-safe base64 of 32 random bytes."""


def _split(text: str) -> list[str]:
    """Keys separated by commas or newlines; blank entries and ``#`` comment lines dropped."""
    out: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        out.extend(k.strip() for k in line.split(",") if k.strip())
    return out


def as_key_tuple(keys: Key | Iterable[Key], what: str, source: str) -> tuple[bytes, ...]:
    """``keys`` as a tuple of bytes; CodecError (naming only the source) for other types."""
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    out: tuple[object, ...] | None = None
    # refused below, outside this block: a UnicodeError would hold the key
    with contextlib.suppress(TypeError, UnicodeError):
        out = tuple(k.encode("utf-8") if isinstance(k, str) else k for k in keys)
    if out is None or not all(isinstance(k, bytes) for k in out):
        raise CodecError(f"{what}: {source} must give keys as str or bytes")
    return out  # type: ignore[return-value]  # every item is bytes, checked above


def _kind(value: object) -> str:
    """What was given, for a message about a source argument: its type, never its text."""
    if isinstance(value, (str, bytes)):
        return "an empty str" if not value else f"a {type(value).__name__} holding NUL"
    return f"a {type(value).__name__}"


def path_arg(value: object, what: str, option: str) -> Path:
    """``value`` as a file path if it is one: a ``str``, ``bytes`` or ``os.PathLike``
    (not empty, without NUL); else :class:`CodecError` naming ``option`` and the type (no
    builtin TypeError from ``os.fspath``, no ValueError from a NUL on the first read)."""
    try:
        text = os.fspath(value)  # type: ignore[call-overload]
    except TypeError:
        text = None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not isinstance(text, str) or not text or "\0" in text:
        shown = _kind(value) if isinstance(value, (str, bytes)) or text is None else (
            f"a {type(value).__name__} whose path is empty or holds NUL")
        raise CodecError(f"{what}: {option} must be a path (a str or os.PathLike, not empty, "
                         f"without NUL), got {shown}")
    return Path(text)


class KeySource:
    """Exactly one of ``keys`` (newest first), ``key_provider`` (a callable returning them,
    asked on every use), ``env`` (a variable of comma-separated keys, read on every use) or
    ``file`` (a file of keys separated by commas or newlines, re-read when it changes, as a
    mounted secret is).

    ``what`` names the kind of key in messages (``"fernet"``, ``"index keys"``);
    ``noun`` says what a key is (``"Fernet keys"``).
    """

    def __init__(
        self,
        what: str,
        noun: str,
        keys: Key | Iterable[Key] | None = None,
        *,
        key_provider: Callable[[], Key | Iterable[Key]] | None = None,
        env: str | None = None,
        file: str | os.PathLike[str] | None = None,
    ) -> None:
        given = [x is not None for x in (keys, key_provider, env, file)]
        if sum(given) != 1:
            raise CodecError(f"{what}: give exactly one of keys=, key_provider=, env= or file=")
        self.what = what
        self.noun = noun
        if key_provider is not None and not callable(key_provider):
            raise CodecError(f"{what}: key_provider= must be a callable returning the keys, "
                             f"got {type(key_provider).__name__}")
        if env is not None and (not isinstance(env, str) or not env or "\0" in env):
            raise CodecError(f"{what}: env= must name an environment variable (a non-empty "
                             f"str without NUL), got {_kind(env)}")
        self._provider = key_provider
        self._env = env
        self._file = None if file is None else path_arg(file, what, "file=")
        self._file_cache: tuple[tuple[int, int, int], tuple[bytes, ...]] | None = None
        self._lock = threading.Lock()
        self.static: tuple[bytes, ...] | None = None
        if keys is not None:
            self.static = as_key_tuple(keys, what, "keys=")
            if not self.static:
                raise CodecError(f"{what}: keys= gave no keys")

    @property
    def source(self) -> str:
        """The source in words, for messages: ``keys=``, ``environment variable X``, ..."""
        if self.static is not None:
            return "keys="
        if self._env is not None:
            return f"environment variable {self._env}"
        if self._file is not None:
            return f"key file {str(self._file)!r}"
        return "key_provider"

    def describe(self) -> str:
        """For a repr: how many static keys, or which variable / file; never a key."""
        if self.static is not None:
            n = len(self.static)
            return f"<{n} key{'s' if n != 1 else ''}>"
        if self._env is not None:
            return f"env={self._env!r}"
        if self._file is not None:
            return f"file={str(self._file)!r}"
        return "key_provider=<callable>"

    def read(self) -> tuple[bytes, ...]:
        """The keys now, newest first; CodecError when the source gives none."""
        if self.static is not None:
            return self.static
        if self._env is not None:
            raw = os.environ.get(self._env, "")
            keys = as_key_tuple(_split(raw), self.what, self.source)
            if not keys:
                raise CodecError(
                    f"{self.what}: {self.source} is not set; it must hold comma-separated "
                    f"{self.noun}, newest first"
                )
            return keys
        if self._file is not None:
            return self._read_file(self._file)
        assert self._provider is not None
        keys = as_key_tuple(self._provider(), self.what, self.source)
        if not keys:
            raise CodecError(f"{self.what}: key_provider gave no keys")
        return keys

    def _read_file(self, path: Path) -> tuple[bytes, ...]:
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._file_cache
            if cached is not None and cached[0] == stamp:
                return cached[1]
            text = path.read_text("utf-8")
            failed = ""
        except (OSError, UnicodeError) as e:  # a UnicodeError holds the file's bytes
            failed = type(e).__name__
        if failed:
            raise CodecError(f"{self.what}: {self.source} cannot be read ({failed})")
        keys = as_key_tuple(_split(text), self.what, self.source)
        if not keys:
            raise CodecError(
                f"{self.what}: {self.source} holds no keys; it must hold {self.noun} "
                "separated by commas or newlines, newest first"
            )
        with self._lock:
            self._file_cache = (stamp, keys)
        return keys
