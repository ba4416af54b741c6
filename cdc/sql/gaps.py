"""Gaps in the database (`cdc_gaps`): recorded when found, counted for the
`ReplicationGaps` metric, listed by `cdc status`, closed by `cdc repair` (README: Gaps
and repair). `GapWatch` finds the gaps a batch reveals, in the batch's transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from cdc.core.change import Change
from cdc.core.gaps import Gap, late_batch_gap, new_stream_gap
from cdc.core.versions import stream_generation, table_of
from cdc.sql.backends.base import Backend
from cdc.sql.bookkeeping import tables

OPEN_COUNT_TTL = 60.0  # seconds a process trusts its count of open gaps per table


def record_gaps(
    conn: Connection, dialect: Backend, schema: str | None, gaps: Sequence[Gap], now: datetime
) -> None:
    """Insert the gaps; one found again (another process, a restarted `tail`) is left
    as it is."""
    if not gaps:
        return
    table = tables(schema)["cdc_gaps"]
    rows = {
        g.fingerprint(): {
            "fingerprint": g.fingerprint(),
            "source_table": g.source_table,
            "stream_arn": g.stream_arn,
            "shard_id": g.shard_id,
            "kind": g.kind,
            "generation": g.generation,
            "started": g.started,
            "ended": g.ended,
            "detail": g.detail,
            "detected_at": now,
            "closed_at": None,
            "closed_by": None,
        }
        for g in gaps
    }
    stmt = dialect.merge(
        table,
        [rows[f] for f in sorted(rows)],
        assign=lambda new: {"fingerprint": table.c.fingerprint},
        conflict=["fingerprint"],
    )
    conn.execute(stmt)


@dataclass(frozen=True)
class OpenGap:
    id: int
    source_table: str
    stream_arn: str
    shard_id: str
    kind: str
    generation: int
    started: datetime | None
    ended: datetime | None
    detail: str
    detected_at: datetime


def open_gaps(conn: Connection, schema: str | None, source: str | None = None) -> list[OpenGap]:
    t = tables(schema)["cdc_gaps"]
    query = select(*(t.c[f] for f in OpenGap.__dataclass_fields__)).where(t.c.closed_at.is_(None))
    if source is not None:
        query = query.where(t.c.source_table == source)
    return [OpenGap(**row._mapping) for row in conn.execute(query.order_by(t.c.id))]


def close_gaps(
    conn: Connection, schema: str | None, ids: Sequence[int], now: datetime, by: str
) -> int:
    t = tables(schema)["cdc_gaps"]
    stmt = (
        update(t)
        .where(t.c.id.in_(list(ids)), t.c.closed_at.is_(None))
        .values(closed_at=now, closed_by=by[:255])
    )
    return int(conn.execute(stmt).rowcount)


def open_counts(conn: Connection, schema: str | None) -> dict[str, int]:
    t = tables(schema)["cdc_gaps"]
    query = (
        select(t.c.source_table, func.count())
        .where(t.c.closed_at.is_(None))
        .group_by(t.c.source_table)
    )
    return {source: int(count) for source, count in conn.execute(query)}


class GapWatch:
    """What one process knows of its tables' streams, to find gaps without a query per
    batch: a stream is looked up in `cdc_checkpoints` the first time the process sees
    it (a new generation?), and again only when its table's last applied event looks
    older than the retention (a late batch?). Shared by the threads of a replicator."""

    def __init__(self, dialect: Backend, schema: str | None) -> None:
        self.dialect = dialect
        self.schema = schema
        self._lock = threading.Lock()
        self._streams: set[str] = set()  # streams checked for a new generation
        self._last_event: dict[str, datetime] = {}  # source table → last applied event
        self._open: dict[str, int] = {}
        self._open_at = float("-inf")

    def detect(self, conn: Connection, changes: Sequence[Change], now: datetime) -> list[Gap]:
        """The gaps this batch's changes reveal, recorded in `conn`'s transaction (so
        they are recorded exactly when the batch is committed)."""
        streams: dict[str, None] = {}
        oldest: dict[str, datetime] = {}
        newest: dict[str, datetime] = {}
        for change in changes:
            arn, moment = change.stream_arn, change.event_time
            streams[arn] = None
            if moment is None:
                continue
            if arn not in oldest or moment < oldest[arn]:
                oldest[arn] = moment
            if arn not in newest or moment > newest[arn]:
                newest[arn] = moment
        gaps: list[Gap] = []
        for arn in streams:
            first = oldest.get(arn)
            generation = stream_generation(arn)
            source = table_of(arn)
            if generation <= 0 or source is None:
                continue  # no label (a backfill's stream): nothing to compare
            gap = None
            if arn not in self._streams:
                known = self._known(conn, source)
                gap = new_stream_gap(source, arn, generation, known)
                last = max((t for _, t in known.values() if t is not None), default=None)
                with self._lock:
                    self._streams.add(arn)
                    if last is not None:
                        self._last_event[source] = max(last, self._last_event.get(source, last))
            if gap is None:
                last = self._last_event.get(source)
                if late_batch_gap(source, arn, generation, last, first, now) is not None:
                    # Another process may have applied the table since: ask the database.
                    fresh = [t for _, t in self._known(conn, source).values() if t is not None]
                    gap = late_batch_gap(
                        source, arn, generation, max(fresh, default=None), first, now
                    )
            if gap is not None:
                gaps.append(gap)
            if arn in newest:
                with self._lock:
                    seen = self._last_event.get(source)
                    if seen is None or newest[arn] > seen:
                        self._last_event[source] = newest[arn]
        if gaps:
            record_gaps(conn, self.dialect, self.schema, gaps, now)
            with self._lock:
                self._open_at = float("-inf")  # count again
        return gaps

    def _known(self, conn: Connection, source: str) -> dict[str, tuple[int, datetime | None]]:
        """The table's streams with a checkpoint: ARN → (generation, last event time)."""
        t = tables(self.schema)["cdc_checkpoints"]
        query = (
            select(t.c.stream_arn, func.max(t.c.last_event_time))
            .where(t.c.stream_arn.like(f"%:table/{source}/stream/%"))
            .group_by(t.c.stream_arn)
        )
        found: dict[str, tuple[int, datetime | None]] = {}
        for arn, last in conn.execute(query):
            if table_of(arn) == source:  # LIKE's `_` matched any character
                found[arn] = (stream_generation(arn), aware(last))
        return found

    def open_counts(self, conn: Connection) -> dict[str, int]:
        """Open gaps per source table, counted again at most every OPEN_COUNT_TTL s."""
        if time.monotonic() - self._open_at > OPEN_COUNT_TTL:
            counts = open_counts(conn, self.schema)
            with self._lock:
                self._open, self._open_at = counts, time.monotonic()
        return self._open


def aware(moment: Any) -> datetime | None:
    """A time read back from the database as a timezone-aware UTC datetime (SQLite's
    MAX() of a time column is text)."""
    if moment is None:
        return None
    if isinstance(moment, str):  # SQLite's MAX() of the text column
        moment = datetime.fromisoformat(moment)
    from datetime import UTC

    value: datetime = moment
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
