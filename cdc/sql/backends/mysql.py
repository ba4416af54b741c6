"""MySQL and MariaDB.

Three differences from ON CONFLICT databases shape this file:

* the guarded upsert is `INSERT … ON DUPLICATE KEY UPDATE`, whose assignments run left
  to right and see the columns already assigned, so every assignment is
  `IF(guard, new, old)` and the columns the guard reads are assigned last;
* its affected-rows count cannot tell an updated row from a stale one, so the stored
  sequence numbers of the batch's keys are read first (`SELECT … FOR UPDATE`, which also
  takes the row locks in key order) and only newer versions are written;
* text comparison is case- and accent-insensitive by default, and `utf8mb4_bin` pads
  with spaces (`'a' = 'a '`): key columns use the server's NO PAD binary collation
  (`cdc.types.ExactString`), so keys `a`, `A` and `a ` stay three rows. Tables made
  before that are converted on first use (`upgrade_table`), and by `cdc migrate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, case, select, text, tuple_
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.core.convert import ColumnType
from cdc.core.mapping import SEQ, RowVersion
from cdc.sql.backends.base import Assign, Dialect, Guard
from cdc.sql.engines import set_session
from cdc.sql.errors import ErrorKind, classify, describe
from cdc.sql.replica import ReplicaSpec
from cdc.sql.types import ExactNumber, ExactString, exact_collation

# InnoDB keys hold at most 3072 bytes: two utf8mb4 key columns of 384 characters.
KEY_CHARS = 384
# Keep one statement well under max_allowed_packet (16 MB by default).
MAX_STATEMENT_BYTES = 4 * 1024 * 1024
MAX_ROWS = 1000
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


class MySQLDialect(Dialect):
    names = ("mysql", "mariadb")
    max_identifier_bytes = 64
    upgrades_tables = True

    def key_type(self, tag: str) -> TypeEngine[Any]:
        types: dict[str, TypeEngine[Any]] = {
            "S": ExactString(KEY_CHARS),
            "N": ExactNumber(key=True),
            "B": mysql.VARBINARY(KEY_CHARS),
        }
        return types[tag]

    def column_type(self, ctype: ColumnType, key: bool) -> TypeEngine[Any]:
        if ctype.kind == "text":
            return ExactString(KEY_CHARS) if key else mysql.LONGTEXT()
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
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        stored = self._stored_sequences(conn, spec, rows)
        newer = [r for r in rows if stored.get(r.key, -1) < r.sequence]
        # Each chunk is one executemany of the compiled one-row upsert; pymysql rewrites
        # it into multi-row `INSERT … VALUES (…), (…) ON DUPLICATE KEY UPDATE` statements
        # of at most its max_stmt_length (1 MB) each.
        for chunk in _chunks(newer, value_names):
            super()._upsert(conn, spec, chunk, value_names, applied_at)
        return len(newer)

    def _stored_sequences(
        self, conn: Connection, spec: ReplicaSpec, rows: Sequence[RowVersion]
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

    def upgrade_table(self, conn: Connection, table: Table) -> list[str]:
        try:
            return upgrade_table(conn, table.schema, table.name, lock_wait_s=UPGRADE_LOCK_WAIT_S)
        except Exception as exc:
            if classify(exc) is ErrorKind.TRANSIENT:
                raise
            # Most likely a role without ALTER: say what is wrong and how to fix it.
            raise UpgradeNeeded(
                f"replica table {table.fullname!r} was made by an earlier cdc and compares "
                "keys with a PAD SPACE collation (`sp` = `sp `); converting it failed: "
                f"{describe(exc)[1]}; run `cdc migrate` as a user allowed to ALTER it"
            ) from exc


class UpgradeNeeded(Exception):
    """A replica table must be upgraded before cdc writes to it, and cdc could not."""


# How long a replica table's upgrade on first use waits for its metadata lock (held by
# any open transaction on the table): busy, the batch fails and is retried, rather than
# queueing every writer of the table behind it.
UPGRADE_LOCK_WAIT_S = 5
SOURCE_COMMENT = "cdc replica of DynamoDB table "  # cdc.sql.replica_tables.source_comment's prefix

_COLUMNS = text(
    "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.CHARACTER_MAXIMUM_LENGTH, c.COLLATION_NAME,"
    " c.CHARACTER_SET_NAME,"
    " c.IS_NULLABLE, c.COLUMN_KEY, t.TABLE_COMMENT"
    " FROM information_schema.COLUMNS c JOIN information_schema.TABLES t"
    " ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME"
    " WHERE c.TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND c.TABLE_NAME = :name"
    " ORDER BY c.ORDINAL_POSITION"
)
# MariaDB's JSON columns carry CHECK (json_valid(col)), which refuses items nested
# deeper than 32 levels (see cdc.types.JsonDocument).
_JSON_CHECKS = text(
    "SELECT CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS"
    " WHERE CONSTRAINT_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :name"
    " AND CHECK_CLAUSE LIKE 'json_valid(%'"
    " ORDER BY CONSTRAINT_NAME"
)
_OWNED_TABLES = text(
    "SELECT TABLE_NAME FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_COMMENT LIKE :prefix"
    " ORDER BY TABLE_NAME"
)


def upgrade_table(
    conn: Connection,
    schema: str | None,
    name: str,
    columns: Sequence[str] | None = None,
    *,
    owned_only: bool = True,
    lock_wait_s: int | None = None,
) -> list[str]:
    """Make a table made by an earlier cdc compare its keys exactly: `columns` (default:
    the primary key) get the server's NO PAD binary collation, and MariaDB's JSON_VALID
    checks are dropped. One ALTER TABLE, only for what is still old, so running it again
    after an interruption (MySQL DDL is not transactional) just finishes the job.
    With `owned_only`, a table without cdc's comment is left alone (it is not ours).
    Returns what was changed, for the log."""
    found = conn.execute(_COLUMNS, {"schema": schema, "name": name}).all()
    if not found or (owned_only and not str(found[0].TABLE_COMMENT).startswith(SOURCE_COMMENT)):
        return []
    collation = exact_collation(conn.dialect)
    wanted = set(columns) if columns is not None else None
    preparer = conn.dialect.identifier_preparer
    clauses: list[str] = []
    changed: list[str] = []
    for column in found:
        is_key = column.COLUMN_KEY == "PRI" if wanted is None else column.COLUMN_NAME in wanted
        if (
            is_key
            and column.DATA_TYPE == "varchar"  # cdc's text keys (CHAR pads whatever it is)
            and column.COLLATION_NAME not in (None, collation)
        ):
            nullable = "NULL" if column.IS_NULLABLE == "YES" else "NOT NULL"
            clauses.append(
                f"MODIFY {preparer.quote(column.COLUMN_NAME)} "
                f"VARCHAR({int(column.CHARACTER_MAXIMUM_LENGTH)}) "
                f"CHARACTER SET utf8mb4 COLLATE {collation} {nullable}"
            )
            changed.append(f"{column.COLUMN_NAME}: {column.COLLATION_NAME} -> {collation}")
    if getattr(conn.dialect, "is_mariadb", False):
        by_name = {column.COLUMN_NAME: column for column in found}
        for (check,) in conn.execute(_JSON_CHECKS, {"schema": schema, "name": name}):
            own = by_name.get(check)
            if own is not None and own.DATA_TYPE == "longtext":
                # A column's own check (what JSON makes) goes with a MODIFY of the column.
                clauses.append(
                    f"MODIFY {preparer.quote(check)} LONGTEXT CHARACTER SET "
                    f"{_word(own.CHARACTER_SET_NAME)} COLLATE {_word(own.COLLATION_NAME)} "
                    + ("NULL" if own.IS_NULLABLE == "YES" else "NOT NULL")
                )
            else:
                clauses.append(f"DROP CONSTRAINT {preparer.quote(check)}")
            changed.append(f"dropped CHECK {check} (JSON_VALID allows 32 levels of nesting)")
    if not clauses:
        return []
    target = preparer.quote(name)
    if schema is not None:
        target = f"{preparer.quote_schema(schema)}.{target}"
    if lock_wait_s is not None:
        set_session(conn, {"lock_wait_timeout": max(1, int(lock_wait_s))})
    conn.exec_driver_sql(f"ALTER TABLE {target} {', '.join(clauses)}")
    return changed


def _word(name: str) -> str:
    """A character set or collation name read from the catalog, checked to be one."""
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"unexpected character set or collation name {name!r}")
    return name


def owned_tables(conn: Connection, schema: str | None) -> list[str]:
    """The tables of `schema` (default: the connection's database) that cdc created:
    replica tables carry their source table in their comment
    (cdc.sql.replica_tables.source_comment)."""
    prefix = SOURCE_COMMENT + "%"  # no LIKE wildcards in it
    return [row[0] for row in conn.execute(_OWNED_TABLES, {"schema": schema, "prefix": prefix})]


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
