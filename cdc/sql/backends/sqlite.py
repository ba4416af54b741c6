"""SQLite: the embedded default for local runs."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from cdc.sql.backends.base import OnConflictDialect


class SqliteDialect(OnConflictDialect):
    names = ("sqlite",)
    max_identifier_bytes = 63  # SQLite has no limit; match Postgres so names agree
    supports_schemas = False

    def insert(self, table: Table) -> Insert:
        return sqlite_insert(table)
