"""MySQL and MariaDB.

Three differences from ON CONFLICT databases shape this file:

* the guarded upsert is `INSERT … ON DUPLICATE KEY UPDATE`, whose assignments run left
  to right and see the columns already assigned, so every assignment is
  `IF(guard, new, old)` and the columns the guard reads are assigned last;
* its affected-rows count cannot tell an updated row from a stale one, so the stored
  sequence numbers of the batch's keys are read first (`SELECT … FOR UPDATE`, which also
  takes the row locks in key order) and only newer versions are written;
* text comparison is case- and accent-insensitive by default: replica tables use the
  binary collation, so keys `a` and `A` stay two rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, String, Table, case, select, tuple_
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.convert import ColumnType
from cdc.dialects.base import Assign, Dialect, Guard
from cdc.mapping import SEQ, RowVersion, TableSpec
from cdc.types import ExactNumber

# InnoDB keys hold at most 3072 bytes: two utf8mb4 key columns of 384 characters.
KEY_CHARS = 384
# Keep one statement well under max_allowed_packet (16 MB by default).
MAX_STATEMENT_BYTES = 4 * 1024 * 1024
MAX_ROWS = 1000
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


class MySQLDialect(Dialect):
    names = ("mysql", "mariadb")
    max_identifier_bytes = 64

    def key_type(self, tag: str) -> TypeEngine[Any]:
        types: dict[str, TypeEngine[Any]] = {
            "S": String(KEY_CHARS),
            "N": ExactNumber(key=True),
            "B": mysql.VARBINARY(KEY_CHARS),
        }
        return types[tag]

    def column_type(self, ctype: ColumnType, key: bool) -> TypeEngine[Any]:
        if ctype.kind == "text":
            return String(KEY_CHARS) if key else mysql.LONGTEXT()
        if ctype.kind == "bytea":
            return mysql.VARBINARY(KEY_CHARS) if key else mysql.LONGBLOB()
        return super().column_type(ctype, key)

    def table_options(self) -> dict[str, str]:
        return dict(TABLE_OPTIONS)

    def insert(self, table: Table) -> Insert:
        return mysql_insert(table)

    def ensure_schema(self, conn: Connection, schema: str) -> None:
        conn.execute(CreateSchema(schema, if_not_exists=True))

    def merge(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]] | None,
        assign: Assign,
        guard: Guard | None = None,
        conflict: Sequence[str] | None = None,
    ) -> Insert:
        # ON DUPLICATE KEY fires on any unique key: `conflict` needs no spelling here.
        stmt = mysql_insert(table) if rows is None else mysql_insert(table).values(list(rows))
        new = stmt.inserted
        assignments = dict(assign(new))
        if guard is None:
            return stmt.on_duplicate_key_update(assignments)
        condition = guard(new)
        read_by_guard = {
            element.name
            for element in visitors.iterate(condition)
            if isinstance(element, Column) and element.table is table
        }
        ordered = sorted(assignments.items(), key=lambda item: item[0] in read_by_guard)
        return stmt.on_duplicate_key_update(
            [(name, case((condition, value), else_=table.c[name])) for name, value in ordered]
        )

    def _upsert(
        self,
        conn: Connection,
        spec: TableSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        stored = self._stored_sequences(conn, spec, rows)
        newer = [r for r in rows if stored.get(r.key, -1) < r.sequence]
        for chunk in _chunks(newer, value_names):
            super()._upsert(conn, spec, chunk, value_names, applied_at)
        return len(newer)

    def _stored_sequences(
        self, conn: Connection, spec: TableSpec, rows: Sequence[RowVersion]
    ) -> dict[tuple[Any, ...], int]:
        """The stored `_cdc_seq` of the rows' keys, locking those rows in key order."""
        table = spec.table
        key_columns = [table.c[name] for name in spec.key_names]
        found: dict[tuple[Any, ...], int] = {}
        for start in range(0, len(rows), MAX_ROWS):
            keys = [r.key for r in rows[start : start + MAX_ROWS]]
            if len(key_columns) == 1:
                where = key_columns[0].in_([k[0] for k in keys])
            else:
                where = tuple_(*key_columns).in_(keys)
            query = (
                select(*key_columns, table.c[SEQ])
                .where(where)
                .order_by(*key_columns)
                .with_for_update()
            )
            for row in conn.execute(query):
                found[tuple(row[:-1])] = int(row[-1])
        return found

    def rows_per_statement(self, table: Table) -> int:
        return min(MAX_ROWS, super().rows_per_statement(table))


def _chunks(rows: Sequence[RowVersion], value_names: Sequence[str]) -> Iterator[list[RowVersion]]:
    """Split rows so one statement stays under the packet limit (items reach 400 KB)."""
    chunk: list[RowVersion] = []
    size = 0
    for row in rows:
        row_size = 200 + sum(
            len(v) if isinstance(v, str | bytes) else 16
            for v in (row.values or {}).values()
            if v is not None
        )
        if chunk and (size + row_size > MAX_STATEMENT_BYTES or len(chunk) >= MAX_ROWS):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    if chunk:
        yield chunk
