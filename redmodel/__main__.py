"""``python -m redmodel``: the ``redmodel`` command (docs/cli.md)."""

from redmodel.cli import main

if __name__ == "__main__":
    main()
