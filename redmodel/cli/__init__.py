"""The ``redmodel`` command: operator tools for the data of redmodel models (docs/cli.md).

Installed as a console script with the ``cli`` extra (``pip install 'redmodel-attrs[cli]'``,
which brings click and rich); ``python -m redmodel`` runs the same thing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(args: Sequence[str] | None = None) -> None:
    """Run the command line ``args`` (default ``sys.argv[1:]``) and exit with its code."""
    try:
        from redmodel.cli._app import main as run_main  # noqa: PLC0415
    except ImportError as e:
        if e.name not in ("click", "rich"):
            raise
        print(f"redmodel: the command needs {e.name}: pip install 'redmodel-attrs[cli]'",
              file=sys.stderr)
        sys.exit(2)
    run_main(args)
