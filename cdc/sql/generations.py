"""Stream generations in the database: which generation each source table's stream is
at (from `cdc_checkpoints`), where each replica table is and which source table it
replicates, and the upgrade of version columns written before generations existed
(migration 0005; README: Stream generations)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import column, func, inspect, select, table, text, update
from sqlalchemy.engine import Connection

from cdc.core.mapping import APPLIED_AT, DELETED, SEQ
from cdc.core.naming import fit, snake
from cdc.core.versions import (
    GENERATION_BASE,
    SEQUENCE_DIGITS,
    VERSION_DIGITS,
    stream_generation,
    table_of,
)
from cdc.sql.backends.registry import backend_class
from cdc.sql.bookkeeping import tables
from cdc.sql.replica_tables import SOURCE_COMMENT

if TYPE_CHECKING:
    from cdc.config import Settings

log = logging.getLogger("cdc")


@dataclass(frozen=True)
class ReplicaTable:
    schema: str | None
    name: str
    source: str | None  # None: cdc cannot tell which source table it replicates

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def stream_generations(conn: Connection, schema: str | None) -> dict[str, dict[str, int]]:
    """source table → {stream ARN: generation} of every stream with a checkpoint."""
    checkpoints = tables(schema)["cdc_checkpoints"]
    found: dict[str, dict[str, int]] = {}
    for (arn,) in conn.execute(select(checkpoints.c.stream_arn).distinct()):
        source = table_of(arn)
        if source is not None:
            found.setdefault(source, {})[arn] = stream_generation(arn)
    return found


def current_generations(conn: Connection, schema: str | None) -> dict[str, int]:
    """source table → the newest generation among its streams' checkpoints."""
    return {
        source: max(streams.values())
        for source, streams in stream_generations(conn, schema).items()
    }


def replica_name(
    settings: Settings, source: str, max_identifier_bytes: int
) -> tuple[str | None, str]:
    """(schema, table) of the replica of `source`, as the replicator names it."""
    configured_name, configured_schema = settings.names_for(source)
    config = settings.tables.get(source)
    name = configured_name or (config.table if config is not None else None) or snake(source)
    return configured_schema or settings.schema, fit(name, max_identifier_bytes, source)


def replica_tables(
    conn: Connection, settings: Settings, sources: Iterable[str] = ()
) -> list[ReplicaTable]:
    """The replica tables cdc made, in CDC_SCHEMA and the schemas of typed tables: the
    tables with cdc's bookkeeping columns. Their source table is the one their comment
    names (PostgreSQL, MySQL); where the database keeps no comments (SQLite), the one
    of `sources` (and of the mapping) whose replica has that name."""
    inspector = inspect(conn)
    schemas = [settings.schema]
    schemas += sorted({c.schema for c in settings.tables.values() if c.schema} - {settings.schema})
    backend = backend_class(conn.dialect.name)
    max_bytes = backend.max_identifier_bytes
    by_name = {
        replica_name(settings, source, max_bytes): source for source in {*sources, *settings.tables}
    }
    found = []
    for schema in schemas:
        if schema is not None and backend.supports_schemas and not inspector.has_schema(schema):
            continue
        for name in sorted(inspector.get_table_names(schema=schema)):
            if name.startswith(("cdc_", "alembic_")):
                continue
            columns = {c["name"] for c in inspector.get_columns(name, schema=schema)}
            if not {SEQ, DELETED, APPLIED_AT} <= columns:
                continue
            source = _commented_source(inspector, name, schema) or by_name.get((schema, name))
            found.append(ReplicaTable(schema, name, source))
    return found


def _commented_source(inspector: Any, name: str, schema: str | None) -> str | None:
    try:
        comment = inspector.get_table_comment(name, schema=schema).get("text")
    except NotImplementedError:  # SQLite keeps no comments
        return None
    if isinstance(comment, str) and comment.startswith(SOURCE_COMMENT):
        return comment[len(SOURCE_COMMENT) :]
    return None


# --- migration 0005: widen the version columns, re-base the stored versions ---------------


def widen(conn: Connection, schema: str | None, name: str, column_name: str) -> bool:
    """Make `column_name` hold 65-digit versions; False if it already does. PostgreSQL:
    NUMERIC(40,0) → NUMERIC(65,0), which raises the precision at an unchanged scale and
    so changes the catalog only (no table rewrite). MySQL/MariaDB: DECIMAL(65,0), a
    table copy. SQLite: the declared VARCHAR(65), by alembic's batch mode (a table copy;
    the padding of the values is `rebase`'s)."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    op = Operations(MigrationContext.configure(conn))
    live = {c["name"]: c for c in inspect(conn).get_columns(name, schema=schema)}
    found = live[column_name]["type"]
    if backend_class(conn.dialect.name).sequences_as_text:
        if getattr(found, "length", None) == VERSION_DIGITS:
            return False
        from cdc.sql.types import SequenceNumber

        with op.batch_alter_table(name, schema=schema) as batch:
            batch.alter_column(
                column_name,
                type_=SequenceNumber(),
                existing_nullable=live[column_name]["nullable"],
            )
        return True
    if getattr(found, "precision", None) == VERSION_DIGITS:
        return False
    from cdc.sql.types import SequenceNumber

    op.alter_column(
        name,
        column_name,
        type_=SequenceNumber(),
        existing_type=found,
        existing_nullable=live[column_name]["nullable"],
        schema=schema,
    )
    return True


def rebase(
    conn: Connection,
    schema: str | None,
    name: str,
    column_name: str,
    generation: int,
    match: dict[str, str] | None = None,
) -> int:
    """Move the versions of `column_name` stored before generations existed (below
    10^40) into `generation`: version = generation * 10^40 + old. Runs again harmlessly
    (versions already moved are ≥ 10^40). On SQLite the values are zero-padded text: the
    old 40 characters get the generation's 25 in front, which is the same arithmetic."""
    match = match or {}
    target = table(name, column(column_name), *(column(c) for c in match), schema=schema)
    col = target.c[column_name]
    if backend_class(conn.dialect.name).sequences_as_text:
        prefix = f"{generation:0{VERSION_DIGITS - SEQUENCE_DIGITS}d}"
        stmt = (
            update(target)
            .where(func.length(col) == SEQUENCE_DIGITS)
            .values({column_name: text(":prefix || " + _quoted(conn, column_name))})
        )
        params: dict[str, Any] = {"prefix": prefix}
    else:
        stmt = (
            update(target)
            .where(col < text(str(GENERATION_BASE)))
            .values({column_name: col + text(str(generation * GENERATION_BASE))})
        )
        params = {}
    for name_, value in match.items():
        stmt = stmt.where(target.c[name_] == value)
    return int(conn.execute(stmt, params).rowcount)


def _quoted(conn: Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))


def upgrade_versions(
    conn: Connection, settings: Settings, *, narrow_only: bool = False
) -> list[str]:
    """Migration 0005's work on the existing tables; returns what it did, for the log.

    Checkpoints move into their own stream's generation. A replica table's rows, and
    its tombstones, move into the newest generation of its source table's streams (the
    stream being consumed): a late redelivery of a record of that stream then still
    compares by sequence number, as before, and cannot win over a newer stored version.
    Rows last written by an earlier stream are moved up with them: they compared with
    the current stream by bare sequence number before the upgrade, and still do. A
    table without any checkpoint stays at generation 0, below every real stream."""
    schema = settings.schema
    done = []
    for name, column_name in (("cdc_checkpoints", "last_sequence"), ("cdc_tombstones", "sequence")):
        if widen(conn, schema, name, column_name):
            done.append(f"{name}.{column_name} widened to {VERSION_DIGITS} digits")
    streams = stream_generations(conn, schema)
    for per_stream in streams.values():
        for arn, generation in per_stream.items():
            rebase(
                conn,
                schema,
                "cdc_checkpoints",
                "last_sequence",
                generation,
                {"stream_arn": arn},
            )
    current = {source: max(s.values()) for source, s in streams.items()}
    for replica in replica_tables(conn, settings, current):
        if widen(conn, replica.schema, replica.name, SEQ):
            done.append(f"{replica.qualified}.{SEQ} widened to {VERSION_DIGITS} digits")
        elif narrow_only:
            continue
        generation = current.get(replica.source or "", 0)
        moved = rebase(conn, replica.schema, replica.name, SEQ, generation)
        rebase(
            conn,
            schema,
            "cdc_tombstones",
            "sequence",
            generation,
            {"table_name": replica.qualified},
        )
        if moved:
            done.append(f"{replica.qualified}: {moved} versions moved to generation {generation}")
    # Tombstones of tables no longer there: generation 0 (only the padding, on SQLite).
    rebase(conn, schema, "cdc_tombstones", "sequence", 0)
    return done
