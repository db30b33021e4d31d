"""dbt-duckdb plugin that attaches a DuckLake warehouse through :mod:`hqms.warehouse_attach`.

Why a plugin and not dbt-duckdb's own ``attach:``: a lake needs its extensions LOADed from the
PyPI wheels by path (dbt-duckdb would ``INSTALL`` them by name, which downloads) and an S3 secret
made from the object-store configuration; the plugin's ``configure_connection`` runs before
dbt-duckdb's attachments, so the profile's ``attach:`` entry (kept for dbt-duckdb's DuckLake
hint and its ``database`` check) finds the catalog already attached and does nothing.
"""
from __future__ import annotations

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

from hqms import config as hqms_config
from hqms import warehouse_attach


class Plugin(BasePlugin):
    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        warehouse_attach.attach(conn, hqms_config.load())
