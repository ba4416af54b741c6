"""export loads: one row per data file of a DynamoDB export being loaded

`cdc backfill --from-export` shares an export's data files between workers (threads,
processes on any machines, Lambda invocations) through this table: a worker claims a
file with a lease, saves the lines it has committed, and marks it done.

Revision ID: 0004_export_loads
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cdc.types
from cdc.sql.migrations import create_table

revision: str = "0004_export_loads"
down_revision: str | Sequence[str] | None = "0006_kinesis"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str | None:
    """CDC_SCHEMA, which env.py also gives alembic for its version table."""
    schema: str | None = op.get_context().opts.get("version_table_schema")
    return schema


def upgrade() -> None:
    create_table(
        "cdc_export_files",
        sa.Column("export_arn", cdc.types.ExactString(512), primary_key=True),
        sa.Column("file_no", sa.Integer(), primary_key=True),
        sa.Column("source_table", cdc.types.ExactString(255), nullable=False),
        sa.Column("data_key", sa.Text(), nullable=False),
        sa.Column("item_count", sa.BigInteger(), nullable=False),
        sa.Column("lines_done", sa.BigInteger(), nullable=False),
        sa.Column("items_done", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("worker", sa.String(200)),
        sa.Column("lease_until", cdc.types.UtcDateTime()),
        sa.Column("updated_at", cdc.types.UtcDateTime(), nullable=False),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_table("cdc_export_files", schema=_schema())
