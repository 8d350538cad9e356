"""The hat shop's migrations: ``redmodel migrate plan|apply|status --migrations
examples.hatshop.migrations`` (docs/cli.md, docs/migrations.md)."""

from examples.hatshop import Hat
from redmodel.migrations import Migrations, rewrite

migrations = Migrations("hatshop")
migrations.add("0001_hat_current_form", rewrite(Hat))
