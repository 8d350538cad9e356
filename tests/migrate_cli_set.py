"""The migration set ``redmodel migrate`` runs in tests/test_cli_migrate.py."""

from redmodel.migrations import Migrations, build_index, rewrite
from tests.migrate_models import ItemV2

migrations = Migrations("cli_shop")
migrations.add("0001_item_v2", rewrite(ItemV2))
migrations.add("0002_item_color", build_index(ItemV2, "color"))
