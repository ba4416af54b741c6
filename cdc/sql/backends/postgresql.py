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
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    DateTime,
    Table,
    Text,
    bindparam,
    case,
    cast,
    func,
    null,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, JSONB, NUMERIC
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
from cdc.core.jsontext import dumps
from cdc.core.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion
from cdc.core.plan import split_by_values
from cdc.sql.backends.base import OnConflictBackend
from cdc.sql.errors import ErrorKind
from cdc.sql.replica import ReplicaSpec
from cdc.sql.types import JsonDocument, JsonIn, JsonOut, only_argument

log = logging.getLogger("cdc")
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
CHUNK_MIN_ROWS = 200
CHUNK_MAX_ROWS = 2000
_MODIFIERS = re.compile(r"\(.*?\)")
_PLACEHOLDER = re.compile(r"(?<!%)%\((c[0-9]+)\)s")
# psycopg's type names for the DDL names SQLAlchemy renders.
# conn.info key: the pipeline `batch_pipeline` opened, until a table's write syncs it.
_BATCH_PIPELINE = "cdc_batch_pipeline"
_TYPE_NAMES = {
    "timestamp with time zone": "timestamptz",
    "double precision": "float8",
    "varchar": "text",
}


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
    driver_modules = ("psycopg",)
    default_port = 5432
    system_ca = True  # libpq's sslrootcert=system
    connect_database_key = "dbname"
    max_identifier_bytes = 63
    sequences_as_text = False
    binds_aware_datetimes = True

    def __init__(self) -> None:
        self._unnest: dict[str, _Unnest] = {}

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
        if spec.options.deletes == "hard":  # tombstones: the general path
            _end_batch_pipeline(conn)  # SQLAlchemy reads its results at once
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
        _register_arrays(driver)
        full = self._unnest_for(spec, value_names, conn)
        cursors: list[Any] = []
        bare: list[RowVersion] = []
        try:
            with ExitStack() as pipeline:
                batch = conn.info.pop(_BATCH_PIPELINE, None)
                # Syncing the batch's pipeline sends BEGIN and the statement timeout with
                # this table's rows; else a pipeline of this table's own.
                pipeline.enter_context(batch if batch is not None else driver.pipeline())
                for chunk in chunks:
                    rows, without_values = split_by_values(chunk) if value_names else (chunk, [])
                    bare.extend(without_values)
                    if rows:
                        cursors.append(_send(driver, full, rows, value_names, applied_at))
                if bare:
                    only_bookkeeping = self._unnest_for(spec, (), conn)
                    cursors.append(_send(driver, only_bookkeeping, bare, (), applied_at))
            return sum(max(0, cursor.rowcount) for cursor in cursors)
        finally:
            for cursor in cursors:
                cursor.close()

    def _unnest_for(
        self, spec: ReplicaSpec, value_names: Sequence[str], conn: Connection
    ) -> _Unnest:
        names = (*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME)
        key = f"{spec.table.fullname}|{','.join(names)}"
        unnest = self._unnest.get(key)
        if unnest is None:
            unnest = self._unnest[key] = _Unnest(self, spec, names, value_names, conn)
        return unnest


def _type_name(column_type: TypeEngine[Any]) -> str:
    rendered = column_type.compile(dialect=_DIALECT).lower()
    array = rendered.endswith("[]")
    base = _MODIFIERS.sub("", rendered.removesuffix("[]")).strip()
    base = _TYPE_NAMES.get(base, base)
    return base + ("[]" if array else "")


class _Unnest:
    """`INSERT INTO target (…) SELECT … FROM unnest(%(c0)b, …) ORDER BY key ON CONFLICT
    … DO UPDATE … WHERE target._cdc_seq < excluded._cdc_seq` for one table and column
    set: built and compiled once, for the driver (pipeline mode is below SQLAlchemy).
    Each parameter is a column of the chunk, one binary array of the column's type."""

    def __init__(
        self,
        dialect: PostgresBackend,
        spec: ReplicaSpec,
        names: Sequence[str],
        value_names: Sequence[str],
        conn: Connection,
    ) -> None:
        table = spec.table
        driver: Any = conn.connection.driver_connection
        arrays: list[Any] = []
        self.array_oids: list[int] = []
        self.as_json: list[int] = []  # indexes of the array columns, sent as JSON text
        for index, name in enumerate(names):
            column_type = table.c[name].type
            if isinstance(column_type, JsonDocument | ARRAY):
                # Our exact JSON text, cast on the way in. An array column's values go
                # as JSON too: `unnest` would flatten an array of arrays (nor can one
                # hold arrays of different lengths).
                if isinstance(column_type, ARRAY):
                    self.as_json.append(index)
                column_type = Text()
            arrays.append(cast(bindparam(f"c{index}"), ARRAY(column_type)))
            info = driver.adapters.types.get(_type_name(column_type))
            if info is None or not info.array_oid:
                raise TypeError(f"no PostgreSQL array type for column {name!r}")
            self.array_oids.append(info.array_oid)
        source = func.unnest(*arrays).table_valued(*names).render_derived(name="cdc_rows")
        selected = [_from_text(source.c[n], table.c[n].type) for n in names]
        selected.append(bindparam("applied_at", type_=DateTime(timezone=True)))
        # Rows in key order: concurrent batches lock rows in one order, never a cycle.
        query = select(*selected).order_by(*(source.c[k] for k in spec.key_names))
        stmt = pg_insert(table).from_select([*names, APPLIED_AT], query)
        assigned = (*value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT)
        upsert = dialect._on_conflict(
            stmt,
            table,
            assign=lambda new: {c: new[c] for c in assigned},
            guard=lambda new: table.c[SEQ] < new[SEQ],
        )
        compiled = upsert.compile(dialect=conn.dialect)
        arguments = [f"c{index}" for index in range(len(names))]
        # The driver gets the parameters as they are: none may need SQLAlchemy's
        # processing (the arrays are dumped by `_ArrayDumper`, a datetime is plain).
        assert set(compiled.params) == {*arguments, "applied_at"}, compiled.params
        # Binary format: %(c0)b. A placeholder is never preceded by a `%` (the compiler
        # doubles every literal one, as in a quoted identifier).
        self.sql = _PLACEHOLDER.sub(r"%(\1)b", str(compiled))
        self.arguments = arguments
        self.document = value_names[0] if len(value_names) == 1 else None

    def params(
        self, rows: Sequence[RowVersion], value_names: Sequence[str], applied_at: datetime
    ) -> dict[str, Any]:
        only = self.document
        if only is not None:  # document mode: the `item` column alone
            tuples = [
                (*row.key, row.values[only], row.sequence, row.deleted, row.event_time)  # type: ignore[index]
                for row in rows
            ]
        else:
            tuples = []
            for row in rows:
                values = row.values
                cells = [values.get(n) for n in value_names] if values is not None else []
                tuples.append((*row.key, *cells, row.sequence, row.deleted, row.event_time))
        columns = [list(column) for column in zip(*tuples, strict=True)]
        for index in self.as_json:
            columns[index] = [None if v is None else dumps(v) for v in columns[index]]
        params: dict[str, Any] = {
            argument: _Array(column, oid)
            for argument, oid, column in zip(self.arguments, self.array_oids, columns, strict=True)
        }
        params["applied_at"] = applied_at
        return params


def _from_text(column: Any, target: TypeEngine[Any]) -> Any:
    """A column of `unnest` as its target column takes it: JSON text cast to jsonb, a
    JSON array (exact numbers) made a PostgreSQL array of the column's element type."""
    if isinstance(target, JsonDocument):
        return cast(column, JSONB)
    if not isinstance(target, ARRAY):
        return column
    elements: Any = func.jsonb_array_elements_text(cast(column, JSONB))
    if not isinstance(target.item_type, Text):
        elements = cast(elements, target.item_type)
    correlated = select(elements).correlate(column.table).scalar_subquery()
    built = func.array(correlated)  # ARRAY((SELECT …)): its elements, in order
    return cast(case((column.is_(None), null()), else_=built), target)


def _send(
    driver: Any,
    unnest: _Unnest,
    rows: Sequence[RowVersion],
    value_names: Sequence[str],
    applied_at: datetime,
) -> Any:
    """Queue one chunk's upsert in the pipeline; its cursor holds the row count after
    the sync."""
    cursor = driver.cursor()
    try:
        cursor.execute(unnest.sql, unnest.params(rows, value_names, applied_at))
    except BaseException:
        cursor.close()
        raise
    return cursor


class _Array:
    """A column of a chunk, sent as a binary array of the type `oid` (whatever Python
    types its values have: an int or a Decimal to numeric, like COPY's set_types)."""

    __slots__ = ("oid", "values")

    def __init__(self, values: list[Any], oid: int) -> None:
        self.values = values
        self.oid = oid


@cache
def _array_dumper() -> type[Any]:
    """The psycopg dumper of `_Array`, made on first use: importing psycopg costs a
    Lambda's cold start ~0.1 s, and the engine imports it anyway when it first connects
    (README: Performance)."""
    import psycopg
    from psycopg.adapt import Dumper, PyFormat, Transformer

    class ArrayDumper(Dumper):
        format = psycopg.pq.Format.BINARY

        def __init__(self, cls: type, context: Any = None) -> None:
            super().__init__(cls, context)
            self._array: Any = None

        def get_key(self, obj: Any, format: PyFormat) -> Any:
            return (self.cls, obj.oid)

        def upgrade(self, obj: Any, format: PyFormat) -> Dumper:
            dumper = ArrayDumper(self.cls, self.connection)
            dumper.oid = obj.oid
            # The array dumper psycopg has for that oid (COPY's set_types uses the same).
            array = Transformer(self.connection).adapters.get_dumper_by_oid(
                obj.oid, psycopg.pq.Format.BINARY
            )
            dumper._array = array(type(None), self.connection)
            return dumper

        def dump(self, obj: Any) -> Any:
            return self._array.dump(obj.values)

    return ArrayDumper


def _register_arrays(driver: Any) -> None:
    import psycopg
    from psycopg.adapt import PyFormat

    try:
        driver.adapters.get_dumper(_Array, PyFormat.BINARY)
    except psycopg.ProgrammingError:
        driver.adapters.register_dumper(_Array, _array_dumper())


@contextmanager
def batch_pipeline(conn: Connection) -> Iterator[None]:
    """Pipeline mode from the start of a batch's transaction: BEGIN and whatever runs
    before the first table's rows (the statement timeout) are queued, and reach the
    server with that table's rows, at its sync. A write that needs its results at once
    (SQLAlchemy's statements) ends it first (`_end_batch_pipeline`); the caller
    ends it, if no table did, before anything that reads a result."""
    driver: Any = conn.connection.driver_connection
    stack = ExitStack()
    stack.enter_context(driver.pipeline())
    conn.info[_BATCH_PIPELINE] = stack
    try:
        yield
    except BaseException:
        pending = conn.info.pop(_BATCH_PIPELINE, None)
        if pending is not None:  # leave pipeline mode; the transaction is lost anyway
            pending.__exit__(*sys.exc_info())
        raise
    _end_batch_pipeline(conn)


def _end_batch_pipeline(conn: Connection) -> None:
    pending = conn.info.pop(_BATCH_PIPELINE, None)
    if pending is not None:
        pending.close()  # the sync: the queued statements' errors, if any


# JSON documents: jsonb, the bound text cast on the way in and read back as text.
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
