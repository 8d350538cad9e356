"""The error for a codec whose optional dependency is not installed."""

from __future__ import annotations

from redmodel._errors import CodecError


def missing_extra(codec: str, package: str, extra: str) -> CodecError:
    """A :class:`CodecError` telling which extra installs ``package`` for ``codec``."""
    return CodecError(
        f"codec {codec!r} needs {package}, which is not installed: "
        f"pip install 'redmodel-attrs[{extra}]'"
    )
