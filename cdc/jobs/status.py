"""`cdc status`'s work, without the terminal: per source table, its streams and their
generations, lag, the last record applied, open gaps, pending dead letters and load
progress, read from the bookkeeping tables (README: `cdc status`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from cdc.core.versions import label_of, sequence_of, stream_generation, table_of
from cdc.sql.bookkeeping import tables
from cdc.sql.gaps import OpenGap, aware, open_gaps


@dataclass
class StreamStatus:
    stream_arn: str
    label: str
    generation: int  # 0: a stream without a timestamp label (a backfill's)
    shards: int
    last_sequence: str | None  # the sequence number inside the newest version applied
    last_event_time: datetime | None
    updated_at: datetime | None
    records_applied: int
    records_stale: int
    records_dead_lettered: int


@dataclass
class LoadStatus:
    segments: int
    segments_done: int
    items_written: int
    updated_at: datetime | None

    @property
    def complete(self) -> bool:
        return self.segments_done == self.segments


@dataclass
class TableStatus:
    source_table: str
    stream: StreamStatus | None = None  # the current stream: the newest generation
    lag_s: float | None = None  # now - the last applied record's event time
    streams: list[StreamStatus] = field(default_factory=list)
    open_gaps: list[OpenGap] = field(default_factory=list)
    pending_dead_letters: int = 0
    load: LoadStatus | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["load"] = (
            None if self.load is None else {**asdict(self.load), "complete": self.load.complete}
        )
        plain: dict[str, Any] = _plain(data)
        return plain


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def status(engine: Engine, schema: str | None, now: datetime) -> list[TableStatus]:
    t = tables(schema)
    found: dict[str, TableStatus] = {}

    def entry(source: str) -> TableStatus:
        return found.setdefault(source, TableStatus(source))

    cp = t["cdc_checkpoints"]
    streams_query = select(
        cp.c.stream_arn,
        func.count(),
        func.max(cp.c.last_sequence),
        func.max(cp.c.last_event_time),
        func.max(cp.c.updated_at),
        func.sum(cp.c.records_applied),
        func.sum(cp.c.records_stale),
        func.sum(cp.c.records_dead_lettered),
    ).group_by(cp.c.stream_arn)
    dl = t["cdc_dead_letters"]
    letters_query = (
        select(dl.c.source_table, func.count())
        .where(dl.c.status == "pending")
        .group_by(dl.c.source_table)
    )
    seg = t["cdc_backfill_segments"]
    loads_query = select(
        seg.c.source_table,
        func.count(),
        func.sum(seg.c.items_written),
        func.max(seg.c.updated_at),
    ).group_by(seg.c.source_table)
    done_query = (
        select(seg.c.source_table, func.count())
        .where(seg.c.done.is_(True))
        .group_by(seg.c.source_table)
    )
    with engine.connect() as conn:
        for arn, shards, last, event, updated, applied, stale, dead in conn.execute(streams_query):
            source = table_of(arn)
            if source is None:
                continue
            entry(source).streams.append(
                StreamStatus(
                    arn,
                    label_of(arn),
                    stream_generation(arn),
                    int(shards),
                    None if last is None else str(sequence_of(int(last))),
                    aware(event),
                    aware(updated),
                    int(applied or 0),
                    int(stale or 0),
                    int(dead or 0),
                )
            )
        for gap in open_gaps(conn, schema):
            entry(gap.source_table).open_gaps.append(gap)
        for source, count in conn.execute(letters_query):
            if source:
                entry(source).pending_dead_letters = int(count)
        done = {source: int(count) for source, count in conn.execute(done_query)}
        for source, segments, items, updated in conn.execute(loads_query):
            entry(source).load = LoadStatus(
                int(segments), done.get(source, 0), int(items or 0), aware(updated)
            )
    for table in found.values():
        table.streams.sort(key=lambda s: (s.generation, s.stream_arn))
        real = [s for s in table.streams if s.generation > 0] or table.streams
        if real:
            table.stream = real[-1]
            if table.stream.last_event_time is not None:
                table.lag_s = max(0.0, (now - table.stream.last_event_time).total_seconds())
    return [found[name] for name in sorted(found)]
