"""backfill progress: one row per Scan segment

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdc.types
from cdc.sql.migrations import create_table

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    """CDC_SCHEMA, which env.py also gives alembic for its version table."""
    schema: str | None = op.get_context().opts.get("version_table_schema")
    return schema


def upgrade() -> None:
    create_table(
        "cdc_backfill_segments",
        sa.Column("source_table", sa.String(255), primary_key=True),
        sa.Column("segment", sa.Integer(), primary_key=True),
        sa.Column("total_segments", sa.Integer(), nullable=False),
        sa.Column("last_evaluated_key", sa.Text()),
        sa.Column("items_written", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("started_at", cdc.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", cdc.types.UtcDateTime(), nullable=False),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_table("cdc_backfill_segments", schema=_schema())
