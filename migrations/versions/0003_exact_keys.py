"""exact key comparison on MySQL/MariaDB: NO PAD binary collations, no JSON_VALID checks

On MySQL and MariaDB the bookkeeping tables were made with the database's default
collation (case-insensitive) and replica tables with `utf8mb4_bin`, which pads with
spaces: `Users` and `users` shared a checkpoint, and the keys `sp`, `sp ` and `sp  ` one
row. This converts the identity columns of the bookkeeping tables and the primary key of
every replica table cdc made (the tables whose comment names their DynamoDB table) to
the server's NO PAD binary collation, and drops MariaDB's JSON_VALID checks, which
refuse items nested deeper than 32 levels. Nothing to do on PostgreSQL and SQLite.

Each table is checked before it is altered (MySQL DDL is not transactional): running
this again after an interruption finishes what is left.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The bookkeeping columns that identify a row or select rows by name (cdc/sql/schema.py).
BOOKKEEPING: dict[str, tuple[str, ...]] = {
    "cdc_dead_letters": ("fingerprint", "source_table", "target_table"),
    "cdc_checkpoints": ("stream_arn", "shard_id"),
    "cdc_tombstones": ("table_name", "key_hash"),
    "cdc_backfill_segments": ("source_table",),
}


def _schema() -> str | None:
    """CDC_SCHEMA, which env.py also gives alembic for its version table."""
    schema: str | None = op.get_context().opts.get("version_table_schema")
    return schema


def _replica_schemas(schema: str | None) -> list[str | None]:
    """Where cdc's replica tables live: CDC_SCHEMA, and the schemas of typed tables."""
    settings = context.config.attributes.get("settings")
    others = {c.schema for c in getattr(settings, "tables", {}).values() if c.schema}
    return [schema, *sorted(others - {schema})]


def upgrade() -> None:
    if op.get_context().dialect.name not in ("mysql", "mariadb"):
        return
    if context.is_offline_mode():
        _offline()
        return
    from cdc.sql.backends.mysql import owned_tables, upgrade_table

    conn = op.get_bind()
    schema = _schema()
    for table, columns in BOOKKEEPING.items():
        upgrade_table(conn, schema, table, columns, owned_only=False)
    for replica_schema in _replica_schemas(schema):
        for name in owned_tables(conn, replica_schema):
            upgrade_table(conn, replica_schema, name)


def _offline() -> None:
    """`cdc migrate --sql`: the tables cannot be inspected, so the SQL converts the
    bookkeeping columns unconditionally (the collation follows the URL: `mariadb://`
    for MariaDB). Replica tables are converted by the service on first use."""
    from cdc.sql.schema import metadata
    from cdc.sql.types import ExactString

    for table, columns in BOOKKEEPING.items():
        for name in columns:
            column = metadata.tables[table].c[name]
            op.alter_column(
                table,
                name,
                type_=ExactString(column.type.length),
                existing_nullable=column.nullable,
                schema=_schema(),
            )


def downgrade() -> None:
    # Going back to PAD SPACE collations could merge rows that are now distinct.
    pass
