"""PostgreSQL: the first-class target.

A batch's row versions for one table go to the server chunk by chunk, each chunk one
`INSERT … SELECT … FROM unnest(…) ON CONFLICT … DO UPDATE … WHERE` whose parameters are
the chunk's columns as binary arrays (no staging table, nothing escaped), all of them
in one pipeline: the server applies a chunk while the next one is built, and the whole
table costs one round trip (the pipeline's sync) whatever the number of chunks. The
optimistic pass also queues BEGIN and the statement timeout in that pipeline
(`batch_pipeline`). Measured in BENCHMARKS.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from typing import Any

from sqlalchemy import Table, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, NUMERIC
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Dialect as SQLDialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql.compiler import SQLCompiler, TypeCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.config import DatabaseOptions
from cdc.core.convert import ColumnType
from cdc.core.mapping import DELETED, EVENT_TIME, SEQ, RowVersion
from cdc.core.plan import split_by_values
from cdc.sql.backends.base import OnConflictBackend
from cdc.sql.backends.postgresql.unnest import (
    BATCH_PIPELINE,
    Unnest,
    batch_pipeline,
    end_batch_pipeline,
    register_arrays,
    send,
)
from cdc.sql.errors import ErrorKind
from cdc.sql.replica import ReplicaSpec
from cdc.sql.types import JsonDocument, JsonIn, JsonOut, only_argument

log = logging.getLogger("cdc")
CHUNK_MIN_ROWS = 200
CHUNK_MAX_ROWS = 2000
CONNECT_TIMEOUT_S = 5
# Serialises concurrent first runs of the migrations (ten Lambda containers at once).
MIGRATION_LOCK_ID = 0x6364_6301
# SQLSTATE classes and codes.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources,
# operator intervention (admin shutdown 57P01, cannot connect now 57P03, query canceled
# by statement_timeout 57014), system error
_TRANSIENT_CODES = frozenset({"55P03", "55006"})  # lock not available, object in use
_ROW_CLASSES = ("22", "23")  # data exception, integrity constraint violation
# What the server says when the credentials are wrong (rotated password, expired
# token). libpq reports connection failures without a SQLSTATE, so the message decides.
_AUTH_SQLSTATES = frozenset({"28P01", "28000"})
_AUTH_MESSAGES = ("password authentication failed", "pam authentication failed")


class PostgresBackend(OnConflictBackend):
    name = "postgresql"
    label = "PostgreSQL"
    names = ("postgresql",)
    driver = "postgresql+psycopg"
    url_drivers = {"postgres": driver, "postgresql": driver}
    secret_engines = {"postgres": driver, "postgresql": driver, "aurora-postgresql": driver}
    secret_default = True  # cdc's first-class database
    driver_modules = ("psycopg",)
    default_port = 5432
    system_ca = True  # libpq's sslrootcert=system
    connect_database_key = "dbname"
    max_identifier_bytes = 63
    sequences_as_text = False

    @classmethod
    def skips_locked_rows(cls, engine: Any) -> bool:
        return True  # since 9.5

    binds_aware_datetimes = True

    def __init__(self) -> None:
        self._unnest: dict[str, Unnest] = {}

    @classmethod
    def connect_defaults(cls) -> dict[str, Any]:
        # Fail fast when the server is unreachable: the retry policy decides how long
        # to keep trying, not a 2-minute TCP timeout.
        return {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "cdc"}

    @classmethod
    def connect_args(cls, options: DatabaseOptions) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if options.sslmode is not None:
            args["sslmode"] = options.sslmode
        if options.sslrootcert is not None:
            args["sslrootcert"] = options.sslrootcert
        if options.disable_prepared:
            args["prepare_threshold"] = None  # psycopg: never PREPARE on the server
        return args

    @classmethod
    def is_auth_failure(cls, error: BaseException) -> bool:
        # By message for any driver's error: libpq's text may reach us wrapped.
        if getattr(error, "sqlstate", None) in _AUTH_SQLSTATES:
            return True
        message = str(error).lower()
        return any(m in message for m in _AUTH_MESSAGES)

    @classmethod
    def classify_error(cls, error: BaseException) -> ErrorKind:
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5:
            if sqlstate in _TRANSIENT_CODES or sqlstate.startswith(_TRANSIENT_CLASSES):
                return ErrorKind.TRANSIENT
            if sqlstate.startswith(_ROW_CLASSES):
                return ErrorKind.ROW
            return ErrorKind.SYSTEMIC
        # psycopg raises OperationalError with no SQLSTATE when it cannot connect.
        name = type(error).__name__
        if name in ("OperationalError", "InterfaceError"):
            return ErrorKind.TRANSIENT
        if name == "DataError":
            return ErrorKind.ROW
        return ErrorKind.SYSTEMIC

    def limit_statement_time(self, conn: Connection, remaining_s: float) -> None:
        budget_ms = max(100, int((remaining_s - 1.0) * 1000))
        # Driver SQL: a SQLAlchemy construct would cost more to build than to run.
        conn.exec_driver_sql("SELECT set_config('statement_timeout', %s, true)", (str(budget_ms),))

    @classmethod
    def lock_migrations(cls, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})

    @classmethod
    def unlock_migrations(cls, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})

    @classmethod
    def create_schema_for_migrations(cls, conn: Connection, schema: str) -> None:
        conn.execute(CreateSchema(schema, if_not_exists=True))

    @classmethod
    def sequence_type(cls, width: int) -> TypeEngine[Any]:
        return NUMERIC(width, 0)

    @classmethod
    def numbers_as_text(cls, precision: int | None) -> bool:
        return False

    @classmethod
    def exact_number_type(
        cls, dialect: SQLDialect, precision: int | None, scale: int | None, key: bool
    ) -> TypeEngine[Any]:
        return NUMERIC(precision, scale)

    def insert(self, table: Table) -> Insert:
        return pg_insert(table)

    def batch_context(self, conn: Connection) -> AbstractContextManager[None]:
        return batch_pipeline(conn)

    def ensure_schema(self, conn: Connection, schema: str) -> None:
        conn.execute(CreateSchema(schema, if_not_exists=True))

    def column_type(self, ctype: ColumnType, key: bool) -> TypeEngine[Any]:
        if ctype.kind == "text[]":
            return ARRAY(Text())
        if ctype.kind == "numeric[]":
            return ARRAY(NUMERIC())
        if ctype.kind == "double":
            return DOUBLE_PRECISION()
        return super().column_type(ctype, key)

    def chunk_rows(self, rows: int) -> int:
        # A chunk costs no round trip (they share the table's pipeline), but a
        # statement on the server; the last chunk's upsert is not overlapped with
        # building values. 5 chunks of 1,000 rows and 15 of 10,000 balance the two.
        return max(CHUNK_MIN_ROWS, min(CHUNK_MAX_ROWS, int((rows * 50) ** 0.5)))

    def write_chunks(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        chunks: Iterator[list[RowVersion]],
        applied_at: datetime,
        tombstones: Table,
    ) -> int:
        if spec.options.deletes == "hard" or spec.routed:  # tombstones: the general path
            end_batch_pipeline(conn)  # SQLAlchemy reads its results at once
            return super().write_chunks(conn, spec, chunks, applied_at, tombstones)
        return self._unnest_upsert(conn, spec, chunks, spec.value_names, applied_at)

    def _upsert(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        return self._unnest_upsert(conn, spec, iter([list(rows)]), value_names, applied_at)

    def _unnest_upsert(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        chunks: Iterator[list[RowVersion]],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        """Each chunk: one guarded upsert from `unnest` of its columns, sent as binary
        arrays without leaving pipeline mode, so the server applies it while the next
        chunk's values are built (taking the next chunk from `chunks` builds them).
        Deletes without an image change only the bookkeeping columns: they go last, in
        the same pipeline. One sync at the end: the row counts, or the first error."""
        driver: Any = conn.connection.driver_connection
        register_arrays(driver)
        full = self._unnest_for(spec, value_names, conn)
        cursors: list[Any] = []
        bare: list[RowVersion] = []
        try:
            with ExitStack() as pipeline:
                batch = conn.info.pop(BATCH_PIPELINE, None)
                # Syncing the batch's pipeline sends BEGIN and the statement timeout with
                # this table's rows; else a pipeline of this table's own.
                pipeline.enter_context(batch if batch is not None else driver.pipeline())
                for chunk in chunks:
                    rows, without_values = split_by_values(chunk) if value_names else (chunk, [])
                    bare.extend(without_values)
                    if rows:
                        cursors.append(send(driver, full, rows, value_names, applied_at))
                if bare:
                    only_bookkeeping = self._unnest_for(spec, (), conn)
                    cursors.append(send(driver, only_bookkeeping, bare, (), applied_at))
            return sum(max(0, cursor.rowcount) for cursor in cursors)
        finally:
            for cursor in cursors:
                cursor.close()

    def _unnest_for(
        self, spec: ReplicaSpec, value_names: Sequence[str], conn: Connection
    ) -> Unnest:
        names = (*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME)
        key = f"{spec.table.fullname}|{','.join(names)}"
        unnest = self._unnest.get(key)
        if unnest is None:
            unnest = self._unnest[key] = Unnest(self, spec, names, value_names, conn)
        return unnest


@compiles(JsonIn, "postgresql")
def _json_in(element: JsonIn, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({only_argument(element, compiler, **kw)} AS JSONB)"


@compiles(JsonOut, "postgresql")
def _json_out(element: JsonOut, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({only_argument(element, compiler, **kw)} AS TEXT)"


@compiles(JsonDocument, "postgresql")
def _json_ddl(type_: JsonDocument, compiler: TypeCompiler, **kw: Any) -> str:
    return "JSONB"


BACKEND = PostgresBackend
