"""``redmodel rotate-keys``: re-encrypt stored values under the newest Fernet key."""

from __future__ import annotations

import click

from redmodel._models._specs import spec_of
from redmodel.cli._common import Env, common_options, each_model
from redmodel.cli._describe import holds_keys

__all__ = ["command"]


@click.command("rotate-keys")
@common_options
def command(env: Env) -> int:
    """Re-encrypt every value written under an older Fernet key with the newest one
    (Store.rotate_keys). Keys come from REDMODEL_FERNET_KEYS (newest first), from
    --fernet-keys-env, or from what the models module configures. Objects stay readable
    throughout; values already under the newest key are left alone."""
    store = env.store()
    return each_model(
        env, "rotate-keys",
        lambda cls: None if holds_keys(spec_of(cls)) else "nothing encrypted",
        store.rotate_keys, "rewritten", "values re-encrypted")
