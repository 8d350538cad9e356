"""Key names: escaping ids and field names, SCAN patterns, generated ids."""

from __future__ import annotations

import os
import re
import threading
import time
from urllib.parse import unquote

__all__ = ["escape", "glob_escape", "new_id", "snake_case", "unescape"]

# Glob metacharacters, cluster hash-tag braces, newline and \x1e \x1f (separators in the flat
# manifest and in index records) and
# the escape character itself are always
# escaped; the model's delimiter is escaped too, so an escaped part never contains one.
_ALWAYS = "%*?[]\\{}\n\x1e\x1f"


def _table(delimiter: str) -> dict[int, str]:
    chars = set(_ALWAYS) | set(delimiter)
    return {ord(c): "".join(f"%{b:02X}" for b in c.encode()) for c in chars}


_TABLES: dict[str, dict[int, str]] = {}


def escape(part: str, delimiter: str = ":") -> str:
    """Escape one key part so it holds no delimiter, glob character or hash-tag brace.

    Readable ids stay as they are: ``escape("56854717") == "56854717"``.
    """
    table = _TABLES.get(delimiter)
    if table is None:
        table = _TABLES[delimiter] = _table(delimiter)
    return part.translate(table)


def unescape(part: str) -> str:
    """Inverse of :func:`escape`."""
    return unquote(part) if "%" in part else part


_GLOB = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """Escape ``text`` for a SCAN MATCH pattern so it matches only itself."""
    return _GLOB.sub(r"\\\1", text)


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_id_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def new_id() -> str:
    """A new unique id: 26 characters, sortable by creation time (ULID layout, lower case).

    48 bits of milliseconds and 80 random bits; ids made in the same millisecond by this
    process increase monotonically, so they never collide here and collide elsewhere with
    probability about n²/2⁸¹ per millisecond.
    """
    global _last_ms, _last_rand  # noqa: PLW0603 - monotonic state per process
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms == _last_ms:
            _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big")
        value = (ms << 80) | _last_rand
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``"PyHat" -> "py_hat"``, ``"HTTPRequest" -> "http_request"``."""
    return _CAMEL.sub("_", name).lower()
