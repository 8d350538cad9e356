"""``redmodel reindex`` (alias ``repair``): rebuild index entries from the stored objects."""

from __future__ import annotations

import click

from redmodel._models._specs import spec_of
from redmodel.cli._common import Env, common_options, each_model

__all__ = ["command"]


@click.command("reindex")
@common_options
def command(env: Env) -> int:
    """Rebuild the index entries of every stored object of the indexed models
    (Store.reindex); objects are not rewritten. Safe to stop and run again.
    Alias: repair."""
    store = env.store()
    return each_model(
        env, "reindex",
        lambda cls: "no indexes" if spec_of(cls).indexes is None else None,
        lambda cls: store.reindex(cls, progress=False), "reindexed", "objects reindexed")
