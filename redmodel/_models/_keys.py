"""Key names: escaping ids and field names, SCAN patterns, generated ids."""

from __future__ import annotations

import os
import re
import threading
import time
from urllib.parse import unquote

from redis.crc import key_slot

__all__ = ["escape", "glob_escape", "new_id", "slot_prefix", "snake_case", "unescape"]

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
_RANDOM_MAX = (1 << 80) - 1
_id_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_pid = os.getpid()


def _fresh_id_state() -> None:
    """Forget the last id: the next one draws new random bits. Run in a forked child, which
    would otherwise continue its parent's sequence (and every sibling would too)."""
    global _id_lock, _last_ms, _last_rand, _pid  # noqa: PLW0603 - per-process state
    _id_lock = threading.Lock()  # another thread may have held it at the fork
    _last_ms = 0
    _last_rand = 0
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_id_state)


def new_id() -> str:
    """A new unique id: 26 characters, sortable by creation time (ULID layout, lower case).

    48 bits of milliseconds since the epoch and 80 bits that start random in each
    millisecond and count up by one for each further id this process makes in it. So ids
    of one process increase strictly, even when the wall clock steps back (they keep the
    last millisecond until the clock catches up), and ids of different processes or
    machines collide only if their counts overlap from random starts: about n/2**79 for
    n ids made in the same millisecond. A forked child starts afresh (``os.fork`` hook,
    and a pid check for forks that bypass it), so it never repeats its parent's sequence.
    """
    global _last_ms, _last_rand  # noqa: PLW0603 - monotonic state per process
    if os.getpid() != _pid:
        _fresh_id_state()
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand += 1
            if _last_rand > _RANDOM_MAX:  # 2**80 ids in one millisecond: borrow the next
                ms += 1
                _last_rand = int.from_bytes(os.urandom(10), "big")
        else:
            _last_rand = int.from_bytes(os.urandom(10), "big")
        _last_ms = ms
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


# ---- keys that share another key's cluster hash slot -----------------------------------

_slot_tags: dict[int, str] = {}


def _tag_for_slot(slot: int) -> str:
    """The shortest decimal number whose hash slot is ``slot`` (found once, then cached)."""
    found = _slot_tags.get(slot)
    n = 0
    while found is None:
        if key_slot(str(n).encode()) == slot:
            found = _slot_tags[slot] = str(n)
        n += 1
    return found


def slot_prefix(key: str) -> str:
    """A prefix for keys that must share ``key``'s cluster hash slot, starting with ``key``
    where it can, so that ACL key patterns and SCAN patterns for the queue's keys (such as
    ``~jobs*``) cover them too.

    ``jobs`` -> ``jobs:{jobs}`` (a hash tag of the whole key); a key with a hash tag of its
    own (``jobs:{7}``) -> itself, since appending to it keeps its tag. A key whose braces
    make no tag (``a}b``, ``a{}b``: Redis hashes the whole key) -> a tag of a short number
    in the same slot, then the key: ``{1234}a}b``. (Container keys escape their braces, so
    only the first two forms occur for them.)
    """
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key
    if key and "{" not in key and "}" not in key:
        return f"{key}:{{{key}}}"
    return "{" + _tag_for_slot(key_slot(key.encode())) + "}" + key
