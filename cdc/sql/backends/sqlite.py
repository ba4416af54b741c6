"""SQLite: the embedded default for local runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Integer, Table, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.core.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion
from cdc.sql.backends.base import OnConflictBackend
from cdc.sql.backends.bound import BoundUpsert, bound_upsert
from cdc.sql.drift import Capacity
from cdc.sql.errors import ErrorKind
from cdc.sql.replica import ReplicaSpec


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

    def _upsert(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        """The general executemany upsert, its parameters built by `_parameters`."""
        if not rows:
            return 0
        stmt = self._upsert_statement(spec.table, value_names)
        columns = {*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT}
        bound = bound_upsert(spec.table, tuple(value_names), stmt, conn.dialect, columns)
        if bound is None or bound.keys is not None:  # not the positional upsert
            return super()._upsert(conn, spec, rows, value_names, applied_at)
        params = _parameters(bound, spec, rows, value_names, applied_at)
        return int(conn.exec_driver_sql(bound.sql, params, _ROWCOUNT).rowcount)

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


_ROWCOUNT = {"preserve_rowcount": True}
# Columns whose few distinct values repeat through a batch (its records share a few
# seconds of event time): each distinct value goes through its bind processor once.
_REPEATING = frozenset({DELETED, EVENT_TIME})


def _parameters(
    bound: BoundUpsert,
    spec: ReplicaSpec,
    rows: Sequence[RowVersion],
    value_names: Sequence[str],
    applied_at: datetime,
) -> list[tuple[Any, ...]]:
    """What `BoundUpsert.parameters` gives, without a dict per row: each row's cells in
    one tuple (keys, values, sequence, deleted, event time), each bound by its column's
    processor, in the statement's order. The processors of the repeating columns, and
    the batch's one applied_at, run once per distinct value."""
    source = (*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME)
    applied = applied_at
    plan: list[tuple[int, Callable[[Any], Any] | None, dict[Any, Any] | None]] = []
    for name, process in zip(bound.names, bound.processors, strict=True):
        if name == APPLIED_AT:
            applied = process(applied_at) if process is not None else applied_at
            plan.append((-1, None, None))
        else:
            plan.append((source.index(name), process, {} if name in _REPEATING else None))
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if value_names:
            values = row.values
            assert values is not None
            cells = (
                *row.key,
                *[values.get(n) for n in value_names],
                row.sequence,
                row.deleted,
                row.event_time,
            )
        else:
            cells = (*row.key, row.sequence, row.deleted, row.event_time)
        bound_row = []
        for index, processor, memo in plan:
            if index < 0:
                bound_row.append(applied)
                continue
            value = cells[index]
            if processor is not None:
                if memo is None:
                    value = processor(value)
                else:
                    done = memo.get(value, _MISSING)
                    if done is _MISSING:
                        done = memo[value] = processor(value)
                    value = done
            bound_row.append(value)
        out.append(tuple(bound_row))
    return out


_MISSING = object()


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
