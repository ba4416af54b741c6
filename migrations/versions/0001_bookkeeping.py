"""bookkeeping tables: dead letters, checkpoints, tombstones

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdc.types
from cdc.sql.migrations import create_index, create_table

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _schema() -> str | None:
    """CDC_SCHEMA, which env.py also gives alembic for its version table."""
    schema: str | None = op.get_context().opts.get("version_table_schema")
    return schema


def upgrade() -> None:
    # create_table / create_index: only what an interrupted run left missing (MySQL
    # commits each DDL statement on its own; see cdc/sql/migrations.py).
    schema = _schema()
    create_table(
        "cdc_dead_letters",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source_table", sa.String(255)),
        sa.Column("target_table", sa.String(255)),
        sa.Column("keys", sa.Text()),
        sa.Column("sequence_number", sa.String(40)),
        sa.Column("stream_arn", sa.String(512)),
        sa.Column("event_name", sa.String(16)),
        sa.Column("error_class", sa.String(64), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("raw_record", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", cdc.types.UtcDateTime(), nullable=False),
        sa.Column("last_failed_at", cdc.types.UtcDateTime(), nullable=False),
        sa.Column("resolved_at", cdc.types.UtcDateTime()),
        sa.UniqueConstraint("fingerprint", name="cdc_dead_letters_fingerprint_key"),
        schema=schema,
    )
    create_index(
        "ix_cdc_dead_letters_status_table",
        "cdc_dead_letters",
        ["status", "source_table"],
        schema=schema,
    )
    create_index(
        "ix_cdc_dead_letters_last_failed_at", "cdc_dead_letters", ["last_failed_at"], schema=schema
    )
    create_table(
        "cdc_checkpoints",
        sa.Column("stream_arn", sa.String(512), primary_key=True),
        sa.Column("shard_id", sa.String(128), primary_key=True),
        sa.Column("last_sequence", cdc.types.SequenceNumber(), nullable=False),
        sa.Column("last_event_time", cdc.types.UtcDateTime()),
        sa.Column("records_applied", sa.BigInteger(), nullable=False),
        sa.Column("records_stale", sa.BigInteger(), nullable=False),
        sa.Column("records_dead_lettered", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", cdc.types.UtcDateTime(), nullable=False),
        schema=schema,
    )
    create_table(
        "cdc_tombstones",
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("sequence", cdc.types.SequenceNumber(), nullable=False),
        sa.Column("deleted_at", cdc.types.UtcDateTime(), nullable=False),
        schema=schema,
    )
    create_index("ix_cdc_tombstones_deleted_at", "cdc_tombstones", ["deleted_at"], schema=schema)


def downgrade() -> None:
    schema = _schema()
    op.drop_table("cdc_tombstones", schema=schema)
    op.drop_table("cdc_checkpoints", schema=schema)
    op.drop_table("cdc_dead_letters", schema=schema)
