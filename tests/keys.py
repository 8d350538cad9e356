"""The process-wide Fernet and index keys, set per test: the key tests configure their own
keys through these, and monkeypatch restores what was configured before."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import redmodel
from redmodel._indexes import _blind
from redmodel.codecs import _fernet


def forget_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Fernet key and no index key configured (and no cached index key) for this test."""
    monkeypatch.setattr(_fernet, "_configured", None)
    monkeypatch.setattr(_blind, "_configured", None)
    monkeypatch.setattr(_blind, "_cache", None)


def use_keys(monkeypatch: pytest.MonkeyPatch, fernet: Sequence[str | bytes] | None = None,
             index: Sequence[str | bytes] | None = None) -> None:
    """Only these Fernet keys and index keys configured for this test (one newly generated
    key of each kind when not given)."""
    forget_keys(monkeypatch)
    redmodel.codecs.configure_fernet(
        keys=list(fernet) if fernet is not None
        else [redmodel.codecs.FernetTransform.generate_key()])
    redmodel.configure_index_keys(
        keys=list(index) if index is not None else [redmodel.generate_index_key()])


def fresh_keys(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """One new Fernet key and one new index key, configured in this process and put in
    the environment for a CLI subprocess (``REDMODEL_INDEX_KEYS``); returns both (the
    Fernet key goes to the CLI by its own option)."""
    fernet_key = redmodel.codecs.FernetTransform.generate_key()
    index_key = redmodel.generate_index_key()
    use_keys(monkeypatch, fernet=[fernet_key], index=[index_key])
    monkeypatch.setenv("REDMODEL_INDEX_KEYS", index_key)
    return fernet_key, index_key
