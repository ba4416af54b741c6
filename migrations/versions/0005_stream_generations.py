"""stream generations: 65-digit versions, re-based stored versions, the gaps table

A record's version is now (stream generation, sequence number) as one integer
(cdc/core/versions.py: generation_ms * 10^40 + sequence). This widens every version
column from 40 to 65 digits (the `_cdc_seq` of every replica table cdc made, document
and typed alike; `cdc_tombstones.sequence`; `cdc_checkpoints.last_sequence`), moves the
versions stored before into the generation of their table's current stream (from
`cdc_checkpoints`) so that a late redelivery of an older record cannot win, adds
`cdc_dead_letters.version`, and creates `cdc_gaps` (README: Stream generations, Gaps
and repair).

PostgreSQL changes the column types in the catalog only (a higher NUMERIC precision at
the same scale needs no table rewrite); the re-basing UPDATE rewrites the rows it moves.
MySQL/MariaDB copy each table for the wider DECIMAL. SQLite copies a table to change a
declared type and re-pads the values to 65 characters.

Every step checks before it changes (MySQL DDL is not transactional): running this
again after an interruption finishes what is left.

Revision ID: 0005_stream_generations
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

import cdc.types
from cdc.sql.migrations import create_index, create_table

revision: str = "0005_stream_generations"
down_revision: str | Sequence[str] | None = "0004_export_loads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("cdc")


def _schema() -> str | None:
    """CDC_SCHEMA, which env.py also gives alembic for its version table."""
    schema: str | None = op.get_context().opts.get("version_table_schema")
    return schema


def upgrade() -> None:
    schema = _schema()
    create_table(
        "cdc_gaps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("fingerprint", cdc.types.ExactString(64), nullable=False),
        sa.Column("source_table", cdc.types.ExactString(255), nullable=False),
        sa.Column("stream_arn", cdc.types.ExactString(512), nullable=False),
        sa.Column("shard_id", cdc.types.ExactString(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("started", cdc.types.UtcDateTime()),
        sa.Column("ended", cdc.types.UtcDateTime()),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("detected_at", cdc.types.UtcDateTime(), nullable=False),
        sa.Column("closed_at", cdc.types.UtcDateTime()),
        sa.Column("closed_by", sa.String(255)),
        sa.UniqueConstraint("fingerprint", name="cdc_gaps_fingerprint_key"),
        schema=schema,
    )
    create_index(
        "ix_cdc_gaps_table_closed", "cdc_gaps", ["source_table", "closed_at"], schema=schema
    )
    if context.is_offline_mode():
        # `cdc migrate --sql`: the tables cannot be inspected; the version columns of
        # the bookkeeping tables are widened unconditionally, replica tables and stored
        # versions are left to an online `cdc migrate`.
        op.add_column(
            "cdc_dead_letters", sa.Column("version", cdc.types.SequenceNumber()), schema=schema
        )
        for table, column in (("cdc_checkpoints", "last_sequence"), ("cdc_tombstones", "sequence")):
            op.alter_column(
                table,
                column,
                type_=cdc.types.SequenceNumber(),
                existing_nullable=False,
                schema=schema,
            )
        return
    from cdc.config import Settings
    from cdc.sql.generations import upgrade_versions

    bind = op.get_bind()
    columns = {c["name"] for c in sa.inspect(bind).get_columns("cdc_dead_letters", schema=schema)}
    if "version" not in columns:
        op.add_column(
            "cdc_dead_letters", sa.Column("version", cdc.types.SequenceNumber()), schema=schema
        )
    settings = context.config.attributes.get("settings")
    if settings is None:
        settings = Settings(database_url=bind.engine.url, schema=schema)
    for line in upgrade_versions(bind, settings):
        log.warning("migration 0005: %s", line)


def downgrade() -> None:
    # Versions of later streams do not fit 40 digits: there is no way back.
    pass
