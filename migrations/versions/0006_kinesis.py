"""Kinesis Data Streams for DynamoDB: positions of up to 128 digits, one source per table

* `cdc_checkpoints.last_position`: the Kinesis sequenceNumber of the last record applied
  per stream and shard (up to 128 digits, text compared by length then text);
* `cdc_dead_letters.sequence_number` widened from 40 to 128 characters: a Kinesis
  record's position;
* `cdc_replica_sources`: which source (DynamoDB Streams or Kinesis) feeds each replica
  table; their versions do not compare, so a table takes one (README: Kinesis Data
  Streams).

Each step checks the database first: running it again after an interruption (MySQL
commits each DDL statement on its own) finishes what is left.

Revision ID: 0006_kinesis
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdc.types
from cdc.sql.migrations import create_table

revision: str = "0006_kinesis"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    """CDC_SCHEMA, which env.py also gives alembic for its version table."""
    schema: str | None = op.get_context().opts.get("version_table_schema")
    return schema


def _columns(table: str, schema: str | None) -> dict[str, dict[str, object]]:
    if op.get_context().as_sql:
        return {}
    inspector = sa.inspect(op.get_bind())
    return {c["name"]: dict(c) for c in inspector.get_columns(table, schema=schema)}


def upgrade() -> None:
    schema = _schema()
    dialect = op.get_context().dialect.name
    if "last_position" not in _columns("cdc_checkpoints", schema):
        op.add_column("cdc_checkpoints", sa.Column("last_position", sa.String(128)), schema=schema)
    if dialect != "sqlite":  # SQLite does not enforce a VARCHAR's length
        column = _columns("cdc_dead_letters", schema).get("sequence_number")
        length = getattr(column["type"], "length", None) if column else None
        if length is None or length < 128:
            op.alter_column(
                "cdc_dead_letters",
                "sequence_number",
                type_=sa.String(128),
                existing_type=sa.String(40),
                existing_nullable=True,
                schema=schema,
            )
    create_table(
        "cdc_replica_sources",
        sa.Column("source_table", cdc.types.ExactString(255), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("stream_arn", sa.String(512)),
        sa.Column("registered_at", cdc.types.UtcDateTime(), nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_table("cdc_replica_sources", schema=schema)
    op.drop_column("cdc_checkpoints", "last_position", schema=schema)
