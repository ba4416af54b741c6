"""Statements on the bookkeeping tables: dead letters and checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import MetaData, Table, case, func
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from cdc import schema as bk
from cdc.decode import dumps, to_plain
from cdc.dialects import Dialect
from cdc.errors import RecordError
from cdc.mapping import TableSpec
from cdc.records import Change, sequence_of, table_from_stream_arn


@cache
def tables(schema: str | None) -> dict[str, Table]:
    """The bookkeeping tables, placed in `schema` (CDC_SCHEMA) when there is one."""
    if schema is None:
        return dict(bk.metadata.tables)
    metadata = MetaData()
    return {name: t.to_metadata(metadata, schema=schema) for name, t in bk.metadata.tables.items()}


@dataclass
class DeadLetter:
    index: int
    record: Any
    error_class: str
    message: str
    change: Change | None = None
    spec: TableSpec | None = None

    @property
    def sequence_number(self) -> str | None:
        return self.change.sequence_number if self.change else sequence_of(self.record)

    def fingerprint(self) -> str:
        arn = self.change.stream_arn if self.change else None
        seq = self.sequence_number
        identity = f"{arn}|{seq}" if arn and seq else "raw|" + raw_json(self.record)
        if self.change is not None and self.change.sequence == 0:
            # Synthetic records (`cdc backfill`) all carry sequence 0: the key tells them apart.
            identity += "|" + raw_json(dict(sorted(self.change.keys.items())))
        return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()

    def row(self, now: datetime) -> dict[str, Any]:
        change = self.change
        keys = None
        if change is not None:
            try:
                keys = dumps({k: to_plain(v, f"Keys.{k}") for k, v in change.keys.items()})
            except (RecordError, TypeError):  # the keys are what is wrong: see raw_record
                keys = None
        hints = _hints(self.record) if change is None else {}
        source = change.source_table if change else hints.get("source_table")
        return {
            "fingerprint": self.fingerprint(),
            "status": "pending",
            "source_table": source,
            "target_table": self.spec.qualified_name if self.spec else None,
            "keys": keys,
            "sequence_number": self.sequence_number,
            "stream_arn": change.stream_arn[:512] if change else hints.get("stream_arn"),
            "event_name": change.event_name if change else hints.get("event_name"),
            "error_class": self.error_class[:64],
            "error_message": self.message,
            "raw_record": raw_json(self.record),
            "attempts": 1,
            "first_failed_at": now,
            "last_failed_at": now,
            "resolved_at": None,
        }


def _hints(record: Any) -> dict[str, str]:
    """What can still be read off a malformed record, to help a person find it."""
    if not isinstance(record, dict):
        return {}
    hints: dict[str, str] = {}
    arn = record.get("eventSourceARN")
    if isinstance(arn, str):
        hints["stream_arn"] = arn[:512]
        with contextlib.suppress(RecordError):
            hints["source_table"] = table_from_stream_arn(arn)
    name = record.get("eventName")
    if isinstance(name, str):
        hints["event_name"] = name[:16]
    return hints


def raw_json(record: Any) -> str:
    """The record as delivered, as JSON text; never fails (it must reach the table)."""
    try:
        return dumps(record)
    except TypeError:
        # Not plain JSON (a lone surrogate, a foreign object): escape everything so the
        # text is storable, and keep it readable.
        return json.dumps(record, default=repr, sort_keys=True, ensure_ascii=True)


def write_dead_letters(
    conn: Connection,
    dialect: Dialect,
    schema: str | None,
    letters: Sequence[DeadLetter],
    now: datetime,
) -> None:
    table = tables(schema)["cdc_dead_letters"]
    rows = sorted((d.row(now) for d in letters), key=lambda r: r["fingerprint"])
    # One row per fingerprint: the same bad record twice in one batch is one dead letter.
    unique = list({r["fingerprint"]: r for r in rows}.values())
    c = table.c
    stmt = dialect.merge(
        table,
        None,
        assign=lambda new: {
            "status": new["status"],
            "target_table": new["target_table"],
            "keys": new["keys"],
            "error_class": new["error_class"],
            "error_message": new["error_message"],
            "raw_record": new["raw_record"],
            "attempts": c.attempts + 1,
            "last_failed_at": new["last_failed_at"],
            "resolved_at": new["resolved_at"],
        },
        conflict=["fingerprint"],
    )
    conn.execute(stmt, unique)


@dataclass
class StreamProgress:
    stream_arn: str
    shard_id: str = ""
    last_sequence: int = 0
    last_event_time: datetime | None = None
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0

    def saw(self, change: Change) -> None:
        self.last_sequence = max(self.last_sequence, change.sequence)
        if change.event_time is not None and (
            self.last_event_time is None or change.event_time > self.last_event_time
        ):
            self.last_event_time = change.event_time


def write_checkpoints(
    conn: Connection,
    dialect: Dialect,
    schema: str | None,
    progress: Sequence[StreamProgress],
    now: datetime,
) -> None:
    rows = [
        {
            "stream_arn": p.stream_arn,
            "shard_id": p.shard_id,
            "last_sequence": p.last_sequence,
            "last_event_time": p.last_event_time,
            "records_applied": p.applied,
            "records_stale": p.stale,
            "records_dead_lettered": p.dead_lettered,
            "updated_at": now,
        }
        for p in sorted(progress, key=lambda p: (p.stream_arn, p.shard_id))
    ]
    conn.execute(_checkpoint_upsert(dialect, schema), rows)


@lru_cache(maxsize=64)
def _checkpoint_upsert(dialect: Dialect, schema: str | None) -> Insert:
    """Built once per dialect and schema: building it costs more than running it."""
    table = tables(schema)["cdc_checkpoints"]
    c = table.c
    return dialect.merge(
        table,
        None,
        assign=lambda new: {
            # Several shards of one stream share the Lambda row: keep the highest.
            "last_sequence": case(
                (new["last_sequence"] > c.last_sequence, new["last_sequence"]),
                else_=c.last_sequence,
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
