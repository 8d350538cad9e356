"""Which layout a model uses: :func:`layout_of` gives the layout object (hash, flat or blob)
of a model spec, built once per model and reused.

Everything that reads or writes objects (operations, index maintenance, queries, repair)
asks here, so the choice is made in one place and none of them imports another to find it.
"""

from __future__ import annotations

from redmodel._layouts._blob import BlobLayout
from redmodel._layouts._flat import FlatLayout
from redmodel._layouts._hash import HashLayout
from redmodel._models._schema import ModelSpec

__all__ = ["Layout", "layout_of"]

Layout = HashLayout | FlatLayout | BlobLayout
_KINDS: dict[str, type[Layout]] = {"hash": HashLayout, "flat": FlatLayout, "blob": BlobLayout}
_LAYOUTS: dict[type, Layout] = {}


def layout_of(spec: ModelSpec) -> Layout:
    """The layout object of a model, built on first use."""
    layout = _LAYOUTS.get(spec.cls)
    if layout is None or layout.spec is not spec:
        layout = _LAYOUTS[spec.cls] = _KINDS[spec.layout](spec)
    return layout
