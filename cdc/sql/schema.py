"""The bookkeeping tables (README: Replica tables, "Bookkeeping tables"). The alembic
migrations create them; this module is what the code reads and writes through."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from cdc.sql.backends.registry import backends
from cdc.sql.types import ExactString, SequenceNumber, UtcDateTime


def _id_type() -> TypeEngine[int]:
    """BIGINT autoincrement, or the type a backend autoincrements instead."""
    id_type: TypeEngine[int] = BigInteger()
    for backend in backends():
        own = backend.autoincrement_type()
        if own is not None:
            id_type = id_type.with_variant(own, *backend.names)
    return id_type


Id = _id_type()

metadata = MetaData()

# Names, ARNs and hashes that identify a row are ExactString: compared byte for byte on
# MySQL too (`Users` and `users` are two DynamoDB tables); migration 0003 converts them.

dead_letters = Table(
    "cdc_dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Identity of the record: stream ARN + sequence number, or a hash of the raw record
    # when those are unusable. A replayed bad record updates its row, not a new one.
    Column("fingerprint", ExactString(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | resolved
    Column("source_table", ExactString(255)),
    Column("target_table", ExactString(255)),
    Column("keys", Text),  # plain JSON
    Column("sequence_number", String(40)),
    Column("stream_arn", String(512)),
    Column("event_name", String(16)),
    Column("error_class", String(64), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("raw_record", Text, nullable=False),  # the record exactly as delivered, JSON
    Column("attempts", Integer, nullable=False),
    Column("first_failed_at", UtcDateTime(), nullable=False),
    Column("last_failed_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime()),
    UniqueConstraint("fingerprint", name="cdc_dead_letters_fingerprint_key"),
    Index("ix_cdc_dead_letters_status_table", "status", "source_table"),
    Index("ix_cdc_dead_letters_last_failed_at", "last_failed_at"),
)

checkpoints = Table(
    "cdc_checkpoints",
    metadata,
    Column("stream_arn", ExactString(512), primary_key=True),
    # Lambda events do not say which shard they came from: the handler writes "".
    # `cdc tail` keeps one row per shard.
    Column("shard_id", ExactString(128), primary_key=True),
    Column("last_sequence", SequenceNumber(), nullable=False),
    Column("last_event_time", UtcDateTime()),
    Column("records_applied", BigInteger, nullable=False),
    Column("records_stale", BigInteger, nullable=False),
    Column("records_dead_lettered", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

tombstones = Table(
    "cdc_tombstones",
    metadata,
    Column("table_name", ExactString(255), primary_key=True),  # schema-qualified target table
    Column("key_hash", ExactString(64), primary_key=True),  # sha256 of `key` below
    Column("key", Text, nullable=False),  # plain JSON array of the key values
    Column("sequence", SequenceNumber(), nullable=False),
    Column("deleted_at", UtcDateTime(), nullable=False),
    Index("ix_cdc_tombstones_deleted_at", "deleted_at"),
)

backfill_segments = Table(
    "cdc_backfill_segments",
    metadata,
    # One row per Scan segment of a backfill (`cdc backfill`), so an interrupted
    # backfill resumes where each segment stopped. Written after each page commits.
    Column("source_table", ExactString(255), primary_key=True),
    Column("segment", Integer, primary_key=True),
    Column("total_segments", Integer, nullable=False),
    # The Scan's LastEvaluatedKey as JSON (AttributeValues, binary as base64);
    # NULL: the segment has not read a page yet.
    Column("last_evaluated_key", Text),
    Column("items_written", BigInteger, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

BOOKKEEPING_TABLES = (
    "cdc_dead_letters",
    "cdc_checkpoints",
    "cdc_tombstones",
    "cdc_backfill_segments",
)
