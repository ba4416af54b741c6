"""SQLite: the embedded default for local runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, Integer, Table, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.sql.backends.base import OnConflictBackend
from cdc.sql.drift import Capacity
from cdc.sql.errors import ErrorKind


class SqliteBackend(OnConflictBackend):
    name = "sqlite"
    label = "SQLite"
    names = ("sqlite",)
    driver = "sqlite"
    url_drivers = {"sqlite": "sqlite"}
    driver_modules = ("sqlite3",)
    network = False
    max_identifier_bytes = 63  # SQLite has no limit; match Postgres so names agree
    supports_schemas = False
    keeps_column_comments = False
    single_writer = True
    alters_in_batches = True

    def insert(self, table: Table) -> Insert:
        return sqlite_insert(table)

    @classmethod
    def autoincrement_type(cls) -> TypeEngine[int] | None:
        return Integer()  # SQLite only autoincrements INTEGER PRIMARY KEY

    @classmethod
    def connect_defaults(cls) -> dict[str, Any]:
        return {"timeout": 30}

    @classmethod
    def prepare_engine(cls, engine: Engine, options: Mapping[str, Any]) -> None:
        """pysqlite opens transactions lazily and breaks SAVEPOINT; take control of BEGIN
        (as SQLAlchemy's docs advise) and take the write lock up front, so two writers wait
        on each other instead of failing to upgrade a read lock."""

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    @classmethod
    def column_capacity(cls, ddl: str) -> Capacity | None:
        return Capacity(_affinity(ddl))

    @classmethod
    def classify_error(cls, error: BaseException) -> ErrorKind:
        if isinstance(error, sqlite3.OperationalError):
            message = str(error).lower()
            if "locked" in message or "busy" in message or "disk i/o" in message:
                return ErrorKind.TRANSIENT
            return ErrorKind.SYSTEMIC
        if isinstance(error, sqlite3.IntegrityError | sqlite3.DataError):
            return ErrorKind.ROW
        return ErrorKind.SYSTEMIC


def _affinity(declared: str) -> str:
    """SQLite keeps what a column's affinity makes of a value (sqlite.org/datatype3):
    TEXT '007' in an INTEGER column becomes 7. Types there differ only by affinity."""
    if "INT" in declared:
        return "INTEGER affinity"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT affinity"
    if "BLOB" in declared or not declared:
        return "BLOB affinity"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL affinity"
    return "NUMERIC affinity"


BACKEND = SqliteBackend
