"""The ``exposure admin`` tree, assembled from the modules of each part."""

from __future__ import annotations

from exposure.cli.admin import admin_app
from exposure.cli.import_admin import import_source_app, mirror_app
from exposure.cli.keys_admin import auditor_key_app, keys_app
from exposure.cli.keyserver_admin import app_app, export_config_app, health_authority_app
from exposure.cli.staff_admin import staff_app

admin_app.add_typer(health_authority_app, name="health-authority")
admin_app.add_typer(app_app, name="app")
admin_app.add_typer(export_config_app, name="export-config")
admin_app.add_typer(import_source_app, name="import-source")
admin_app.add_typer(mirror_app, name="mirror")
admin_app.add_typer(keys_app, name="keys")
admin_app.add_typer(auditor_key_app, name="auditor-key")
admin_app.add_typer(staff_app, name="staff")

__all__ = ["admin_app"]
