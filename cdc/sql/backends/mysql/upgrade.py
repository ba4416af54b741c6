"""Replica and bookkeeping tables an earlier cdc made on MySQL/MariaDB, brought up to
exact key comparison (the MySQL backend's `upgrade_table`, and migration 0003)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import Connection

from cdc.sql.backends.mysql.session import exact_collation, set_session


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
