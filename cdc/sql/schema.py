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
    # The record's own position: a DynamoDB Streams SequenceNumber (up to 40 digits) or
    # a Kinesis sequenceNumber (up to 128; migration 0006 widened it).
    Column("sequence_number", String(128)),
    # The record's version (stream generation and sequence, cdc/core/versions.py), which
    # orders letters of one item across streams; NULL before migration 0005 and for
    # records too broken to have one.
    Column("version", SequenceNumber()),
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
    # The source's own position of the last record applied, as delivered: a Kinesis
    # sequenceNumber (up to 128 digits, compared by length, then text); `last_sequence`
    # then holds the newest version (creation time in µs). Added by migration 0006.
    Column("last_position", String(128)),
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

replica_sources = Table(
    "cdc_replica_sources",
    metadata,
    # Which source feeds each replica: versions of DynamoDB Streams and of Kinesis Data
    # Streams do not compare, so one table takes one source (README: Kinesis Data
    # Streams, "Switching sources"). Added by migration 0006.
    Column("source_table", ExactString(255), primary_key=True),
    Column("source", String(32), nullable=False),  # dynamodb_streams | kinesis
    Column("stream_arn", String(512)),  # the first stream seen
    Column("registered_at", UtcDateTime(), nullable=False),
)
# --- export loads (`cdc backfill --from-export`; migration 0004) ---------------------------
export_files = Table(
    "cdc_export_files",
    metadata,
    # One row per data file of a DynamoDB export being loaded: the unit of work that
    # workers (threads, processes, Lambda invocations) claim, and where each stopped.
    Column("export_arn", ExactString(512), primary_key=True),
    Column("file_no", Integer, primary_key=True),  # its line in manifest-files.json, from 0
    Column("source_table", ExactString(255), nullable=False),
    Column("data_key", Text, nullable=False),  # dataFileS3Key
    Column("item_count", BigInteger, nullable=False),  # the manifest's itemCount
    Column("lines_done", BigInteger, nullable=False),  # lines committed: resume after them
    Column("items_done", BigInteger, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("error", Text),  # why the file stopped a load; cleared when a load starts again
    Column("worker", String(200)),  # who holds the lease: host:pid:thread:random
    Column("lease_until", UtcDateTime()),  # a claim older than this is taken over
    Column("updated_at", UtcDateTime(), nullable=False),
)
# --- end export loads ------------------------------------------------------------------
gaps = Table(
    "cdc_gaps",
    metadata,
    # Stretches of a table's changes the stream can no longer deliver (README: Gaps and
    # repair): open until `cdc repair` closes them.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fingerprint", ExactString(64), nullable=False),  # cdc.core.gaps.Gap.fingerprint
    Column("source_table", ExactString(255), nullable=False),
    Column("stream_arn", ExactString(512), nullable=False),  # the stream read after the gap
    Column("shard_id", ExactString(128), nullable=False),
    Column("kind", String(32), nullable=False),  # trimmed | shard_gone | new_stream | late_batch
    Column("generation", BigInteger, nullable=False),  # of stream_arn (cdc/core/versions.py)
    Column("started", UtcDateTime()),  # the last event applied before the gap, if known
    Column("ended", UtcDateTime()),  # where what follows the gap starts, if known
    Column("detail", Text, nullable=False),
    Column("detected_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime()),
    Column("closed_by", String(255)),
    UniqueConstraint("fingerprint", name="cdc_gaps_fingerprint_key"),
    Index("ix_cdc_gaps_table_closed", "source_table", "closed_at"),
)

BOOKKEEPING_TABLES = (
    "cdc_dead_letters",
    "cdc_checkpoints",
    "cdc_tombstones",
    "cdc_backfill_segments",
    "cdc_replica_sources",
    "cdc_export_files",
    # A database without it (made by an earlier cdc) runs the migrations on first use,
    # as a new one does: migration 0005 (generations) must run before records are
    # written as versions.
    "cdc_gaps",
)
