"""The databases the suite runs against: where each contender's tables live, how cdc
is pointed at them, each database's floor, and how final states are read.

Each handler contender gets a schema of its own (`cdc_bench_…`: a PostgreSQL schema, a
MariaDB database, an SQLite file), created at the start and dropped at the end; the
other contenders' tables are made in it as copies of the table cdc created.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from typing import Any, Protocol

import psycopg
from psycopg import sql

from bench.baselines import CopyFloor, MariaDBFloor, Method, SqliteFloor, mysql_connect
from bench.encode import State, state_of
from bench.workload import REPLICA_TABLE

_STATE_COLUMNS = "id, item, _cdc_seq, _cdc_deleted, _cdc_event_time"


class Database(Protocol):
    kind: str  # "postgresql", "mariadb", "sqlite"
    label: str  # for the report

    def create(self, schema: str) -> None: ...
    def cdc_target(self, schema: str) -> tuple[str, str | None]:
        """(CDC_DATABASE_URL, CDC_SCHEMA) that point cdc at `schema`."""
        ...

    def clone(self, schema: str, table: str) -> None:
        """A table of the layout cdc made for its replica table, in the same schema."""
        ...

    def empty(self, schema: str) -> None:
        """Delete the rows of cdc's replica table (the warm-up row)."""
        ...

    def floor(self, schema: str, table: str) -> Method: ...
    def state(self, schema: str, table: str) -> State: ...
    def drop(self, schema: str) -> None: ...
    def version(self) -> str: ...
    def close(self) -> None: ...


def psycopg_conninfo(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://…`) as a libpq URI."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_port(url: str, host: str, port: int) -> str:
    """The same SQLAlchemy URL, to another host and port (the latency proxy)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


class Postgres:
    kind = "postgresql"

    def __init__(self, url: str, label: str = "PostgreSQL") -> None:
        self.url = url
        self.label = label
        self.conninfo = psycopg_conninfo(url)
        self._admin = psycopg.connect(self.conninfo, autocommit=True, application_name="cdc-bench")

    def create(self, schema: str) -> None:
        self._admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))

    def cdc_target(self, schema: str) -> tuple[str, str | None]:
        return self.url, schema

    def clone(self, schema: str, table: str) -> None:
        self._admin.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(schema, table), sql.Identifier(schema, REPLICA_TABLE)
            )
        )

    def empty(self, schema: str) -> None:
        self._admin.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, REPLICA_TABLE)))

    def floor(self, schema: str, table: str) -> Method:
        return CopyFloor(self.conninfo, schema, table)

    def state(self, schema: str, table: str) -> State:
        query = sql.SQL(
            "SELECT id, item::text, _cdc_seq, _cdc_deleted, _cdc_event_time FROM {}"
        ).format(sql.Identifier(schema, table))
        return state_of(self._admin.execute(query).fetchall())

    def drop(self, schema: str) -> None:
        self._admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )

    def version(self) -> str:
        row = self._admin.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"

    def close(self) -> None:
        self._admin.close()


class MariaDB:
    kind = "mariadb"

    def __init__(self, url: str, label: str = "MariaDB") -> None:
        self.url = url
        self.label = label
        self._admin = mysql_connect(url)
        self._admin.autocommit(True)

    def _run(self, statement: str) -> list[Any]:
        with self._admin.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall())

    def create(self, schema: str) -> None:
        self._run(f"CREATE DATABASE `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

    def cdc_target(self, schema: str) -> tuple[str, str | None]:
        return self.url, schema

    def clone(self, schema: str, table: str) -> None:
        self._run(f"CREATE TABLE `{schema}`.`{table}` LIKE `{schema}`.`{REPLICA_TABLE}`")

    def empty(self, schema: str) -> None:
        self._run(f"DELETE FROM `{schema}`.`{REPLICA_TABLE}`")

    def floor(self, schema: str, table: str) -> Method:
        return MariaDBFloor(self.url, schema, table)

    def state(self, schema: str, table: str) -> State:
        return state_of(self._run(f"SELECT {_STATE_COLUMNS} FROM `{schema}`.`{table}`"))

    def drop(self, schema: str) -> None:
        self._run(f"DROP DATABASE IF EXISTS `{schema}`")

    def version(self) -> str:
        return f"MariaDB {self._run('SELECT VERSION()')[0][0]}"

    def close(self) -> None:
        self._admin.close()


class Sqlite:
    """A file per schema, in a temporary directory (the local disk: SQLite's fsyncs
    are part of what is measured, for cdc and the floor alike)."""

    kind = "sqlite"

    def __init__(self, directory: str | None = None, label: str = "SQLite") -> None:
        self.label = label
        self._own = directory is None
        self._dir = directory or tempfile.mkdtemp(prefix="cdc-bench-sqlite-")

    def path(self, schema: str) -> str:
        return os.path.join(self._dir, f"{schema}.db")

    def create(self, schema: str) -> None:
        sqlite3.connect(self.path(schema)).close()

    def cdc_target(self, schema: str) -> tuple[str, str | None]:
        return f"sqlite:///{self.path(schema)}", None

    def clone(self, schema: str, table: str) -> None:
        with sqlite3.connect(self.path(schema)) as conn:
            row = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (REPLICA_TABLE,)
            ).fetchone()
            ddl = str(row[0])
            rest = ddl.split("(", 1)[1]
            conn.execute(f'CREATE TABLE "{table}" ({rest}')

    def empty(self, schema: str) -> None:
        with sqlite3.connect(self.path(schema)) as conn:
            conn.execute(f'DELETE FROM "{REPLICA_TABLE}"')

    def floor(self, schema: str, table: str) -> Method:
        return SqliteFloor(self.path(schema), table)

    def state(self, schema: str, table: str) -> State:
        with sqlite3.connect(self.path(schema)) as conn:
            return state_of(conn.execute(f'SELECT {_STATE_COLUMNS} FROM "{table}"').fetchall())

    def drop(self, schema: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            path = self.path(schema) + suffix
            if os.path.exists(path):
                os.remove(path)

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self._dir, ignore_errors=True)
