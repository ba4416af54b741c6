"""Statements on the bookkeeping tables: dead letters and checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import MetaData, Table, and_, case, func, literal_column, or_
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from cdc.core.dead_letters import DeadLetter
from cdc.core.outcomes import StreamProgress
from cdc.sql import schema as bk
from cdc.sql.backends.base import Backend


@cache
def tables(schema: str | None) -> dict[str, Table]:
    """The bookkeeping tables, placed in `schema` (CDC_SCHEMA) when there is one."""
    if schema is None:
        return dict(bk.metadata.tables)
    metadata = MetaData()
    return {name: t.to_metadata(metadata, schema=schema) for name, t in bk.metadata.tables.items()}


def write_dead_letters(
    conn: Connection,
    backend: Backend,
    schema: str | None,
    letters: Sequence[DeadLetter],
    now: datetime,
) -> None:
    table = tables(schema)["cdc_dead_letters"]
    # One row per fingerprint: the same failure twice in one batch is one dead letter,
    # holding the newest version.
    newest: dict[str, dict[str, Any]] = {}
    for row in (d.row(now) for d in letters):
        seen = newest.get(row["fingerprint"])
        if seen is None or not _older(row, seen):
            newest[row["fingerprint"]] = row
    unique = [newest[f] for f in sorted(newest)]
    c = table.c

    def assign(new: Any) -> dict[str, Any]:
        # A letter holds the newest record of its failure: an older one found again (a
        # replayed batch, a snapshot's copy of the item) only counts an attempt. Newer
        # is by version (stream generation, then sequence: a record of a later stream
        # is newer whatever its sequence number); a letter written before versions were
        # kept (NULL) compares by sequence number, decimal text without leading zeros
        # (as Lambda delivers them) compared as a number: the longer is the larger.
        old_seq, new_seq = c.sequence_number, new["sequence_number"]
        by_sequence = or_(
            old_seq.is_(None),
            new_seq.is_(None),
            func.length(new_seq) > func.length(old_seq),
            and_(func.length(new_seq) == func.length(old_seq), new_seq >= old_seq),
        )
        old_version, new_version = c.version, new["version"]
        newer = case(
            (and_(old_version.is_not(None), new_version.is_not(None)), new_version >= old_version),
            else_=by_sequence,
        )

        def pick(name: str) -> Any:
            return case((newer, new[name]), else_=c[name])

        # MySQL applies these in the table's column order, later ones seeing earlier
        # results: `newer` gives the same answer after sequence_number and version are
        # updated (each becomes the larger of the two), so the order does not matter.
        return {
            **{
                name: pick(name)
                for name in (
                    "status",
                    "source_table",
                    "target_table",
                    "keys",
                    "stream_arn",
                    "event_name",
                    "error_class",
                    "error_message",
                    "raw_record",
                    "resolved_at",
                    "sequence_number",
                    "version",
                )
            },
            # Inline, not a bound parameter: PyMySQL's executemany refuses parameters
            # after VALUES (and would send the letters one statement each).
            "attempts": c.attempts + literal_column("1"),
            "last_failed_at": new["last_failed_at"],
        }

    stmt = backend.merge(table, None, assign=assign, conflict=["fingerprint"])
    conn.execute(stmt, unique)


def _older(row: dict[str, Any], than: dict[str, Any]) -> bool:
    if row["version"] is not None and than["version"] is not None:
        return bool(row["version"] < than["version"])
    sequence, other = row["sequence_number"], than["sequence_number"]
    if sequence is None or other is None:
        return False
    return (len(sequence), sequence) < (len(other), other)


def write_checkpoints(
    conn: Connection,
    backend: Backend,
    schema: str | None,
    progress: Sequence[StreamProgress],
    now: datetime,
) -> None:
    rows = [
        {
            "stream_arn": p.stream_arn,
            "shard_id": p.shard_id,
            "last_sequence": p.last_sequence,
            "last_position": p.last_position,
            "last_event_time": p.last_event_time,
            "records_applied": p.applied,
            "records_stale": p.stale,
            "records_dead_lettered": p.dead_lettered,
            "updated_at": now,
        }
        for p in sorted(progress, key=lambda p: (p.stream_arn, p.shard_id))
    ]
    conn.execute(_checkpoint_upsert(backend, schema), rows)


@lru_cache(maxsize=64)
def _checkpoint_upsert(backend: Backend, schema: str | None) -> Insert:
    """Built once per backend and schema: building it costs more than running it."""
    table = tables(schema)["cdc_checkpoints"]
    c = table.c
    return backend.merge(
        table,
        None,
        assign=lambda new: {
            # Several shards of one stream share the Lambda row: keep the highest.
            "last_sequence": case(
                (new["last_sequence"] > c.last_sequence, new["last_sequence"]),
                else_=c.last_sequence,
            ),
            # Text of digits without leading zeros: the longer is the larger.
            "last_position": case(
                (c.last_position.is_(None), new["last_position"]),
                (new["last_position"].is_(None), c.last_position),
                (
                    func.length(new["last_position"]) > func.length(c.last_position),
                    new["last_position"],
                ),
                (
                    and_(
                        func.length(new["last_position"]) == func.length(c.last_position),
                        new["last_position"] > c.last_position,
                    ),
                    new["last_position"],
                ),
                else_=c.last_position,
            ),
            "last_event_time": case(
                (new["last_event_time"] > c.last_event_time, new["last_event_time"]),
                else_=func.coalesce(c.last_event_time, new["last_event_time"]),
            ),
            "records_applied": c.records_applied + new["records_applied"],
            "records_stale": c.records_stale + new["records_stale"],
            "records_dead_lettered": c.records_dead_lettered + new["records_dead_lettered"],
            "updated_at": new["updated_at"],
        },
    )
