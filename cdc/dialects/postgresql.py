"""PostgreSQL: the first-class target.

A batch's row versions for one table go to the server with binary COPY into a staging
table that lives for the transaction, then one `INSERT … SELECT … ON CONFLICT … DO
UPDATE … WHERE` applies them under the sequence guard. Binary COPY is the cheapest way
into PostgreSQL (no parameter escaping or parsing, one round trip for any number of
rows); measured in BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Table, Text, bindparam, cast, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, JSONB, NUMERIC
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema, CreateTable
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.convert import ColumnType
from cdc.dialects.base import _ROWCOUNT, OnConflictDialect
from cdc.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion, TableSpec
from cdc.types import JsonDocument

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_MODIFIERS = re.compile(r"\(.*?\)")
# Type names psycopg's COPY accepts for the DDL names SQLAlchemy renders.
_COPY_TYPES = {
    "timestamp with time zone": "timestamptz",
    "double precision": "float8",
    "varchar": "text",
}


class PostgresDialect(OnConflictDialect):
    names = ("postgresql",)
    max_identifier_bytes = 63

    def __init__(self) -> None:
        self._staging: dict[str, _Staging] = {}

    def insert(self, table: Table) -> Insert:
        return pg_insert(table)

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

    def _upsert(
        self,
        conn: Connection,
        spec: TableSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        names = (*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME)
        staging = self._staging_for(spec.table, names)
        staging.create(conn)
        with _driver_cursor(conn) as cursor, cursor.copy(staging.copy_sql) as copy:
            copy.set_types(staging.copy_types)
            write = copy.write_row
            if len(value_names) == 1:  # document mode: the `item` column alone
                (only,) = value_names
                for row in rows:
                    values = row.values
                    assert values is not None
                    write((*row.key, values[only], row.sequence, row.deleted, row.event_time))
            else:
                for row in rows:
                    values = row.values
                    cells = [values.get(n) for n in value_names] if values is not None else []
                    write((*row.key, *cells, row.sequence, row.deleted, row.event_time))
        if staging.upsert is None:
            staging.upsert = self._staged_upsert(spec, staging, names, value_names)
        result = conn.execute(
            staging.upsert, {"applied_at": applied_at}, execution_options=_ROWCOUNT
        )
        count: int = result.rowcount
        return count

    def _staged_upsert(
        self, spec: TableSpec, staging: _Staging, names: Sequence[str], value_names: Sequence[str]
    ) -> Insert:
        """INSERT INTO target SELECT … FROM staging ORDER BY key ON CONFLICT … WHERE
        target._cdc_seq < excluded._cdc_seq — built once per table and column set."""
        table = spec.table
        source = staging.table
        selected: list[Any] = [
            cast(source.c[n], JSONB) if isinstance(table.c[n].type, JsonDocument) else source.c[n]
            for n in names
        ]
        selected.append(bindparam("applied_at", type_=DateTime(timezone=True)))
        # Rows in key order: concurrent batches lock rows in one order, never a cycle.
        query = select(*selected).order_by(*(source.c[k] for k in spec.key_names))
        stmt = pg_insert(table).from_select([*names, APPLIED_AT], query)
        assigned = (*value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT)
        return self._on_conflict(
            stmt,
            table,
            assign=lambda new: {c: new[c] for c in assigned},
            guard=lambda new: table.c[SEQ] < new[SEQ],
        )

    def _staging_for(self, table: Table, names: Sequence[str]) -> _Staging:
        key = f"{table.fullname}|{','.join(names)}"
        staging = self._staging.get(key)
        if staging is None:
            staging = self._staging[key] = _Staging(table, names)
        return staging


class _Staging:
    """A temporary table shaped like the columns being written, dropped at commit (so
    it also works through PgBouncer or RDS Proxy in transaction mode)."""

    def __init__(self, target: Table, names: Sequence[str]) -> None:
        digest = hashlib.sha256(f"{target.fullname}|{','.join(names)}".encode()).hexdigest()[:12]
        columns = []
        for name in names:
            column_type = target.c[name].type
            if isinstance(column_type, JsonDocument):
                column_type = Text()  # our exact JSON text; cast to jsonb on the way in
            columns.append(Column(name, column_type))
        self.table = Table(
            f"cdc_stage_{digest}",
            MetaData(),
            *columns,
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        # DDL is never in SQLAlchemy's compiled cache: compile it once, here.
        self.create_sql = str(CreateTable(self.table, if_not_exists=True).compile(dialect=_DIALECT))
        quote = _DIALECT.identifier_preparer.quote
        self.copy_sql = "COPY {} ({}) FROM STDIN (FORMAT BINARY)".format(
            quote(self.table.name), ", ".join(quote(n) for n in names)
        )
        self.copy_types = [_copy_type(c.type) for c in self.table.columns]
        self.upsert: Insert | None = None

    def create(self, conn: Connection) -> None:
        conn.exec_driver_sql(self.create_sql)


def _copy_type(column_type: TypeEngine[Any]) -> str:
    rendered = column_type.compile(dialect=_DIALECT).lower()
    array = rendered.endswith("[]")
    base = _MODIFIERS.sub("", rendered.removesuffix("[]")).strip()
    base = _COPY_TYPES.get(base, base)
    return base + ("[]" if array else "")


@contextmanager
def _driver_cursor(conn: Connection) -> Iterator[Any]:
    """A psycopg cursor on the SQLAlchemy connection's own driver connection, so COPY
    runs inside the batch's transaction."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    finally:
        cursor.close()
