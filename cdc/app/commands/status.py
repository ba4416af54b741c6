"""`cdc status`: per table, where replication stands and what needs a person."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from cdc.config import Settings

NAME = "status"
HELP = "per table: stream and generation, lag, last applied, open gaps, dead letters, loads"
DESCRIPTION = (
    "Shows, for every source table cdc has seen: its current stream and generation, the "
    "replication lag, the last record applied, open gaps (records the stream no longer "
    "holds: run `cdc repair TABLE`), pending dead letters and backfill progress. Exit "
    "code 0; 3 when a table has an open gap."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON, one object per table")
    parser.add_argument("--table", metavar="TABLE", help="only this source table")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from cdc.app.engines import engine_for
    from cdc.jobs.status import status
    from cdc.sql.migrations import ensure_bookkeeping

    engine = engine_for(settings)
    ensure_bookkeeping(engine, settings.schema, settings)
    now = datetime.now(UTC)
    found = status(engine, settings.schema, now)
    if args.table is not None:
        found = [t for t in found if t.source_table == args.table]
    if args.json:
        print(json.dumps([t.as_json() for t in found], indent=2))
    else:
        if not found:
            print("no tables replicated yet")
        for table in found:
            print(_describe(table))
    return 3 if any(t.open_gaps for t in found) else 0


def _describe(table: object) -> str:
    from cdc.jobs.status import TableStatus

    assert isinstance(table, TableStatus)
    lines = [table.source_table]
    stream = table.stream
    if stream is None:
        lines.append("  stream: none applied yet")
    else:
        lag = "" if table.lag_s is None else f", lag {table.lag_s:.0f}s"
        lines.append(f"  stream: {stream.label} (generation {stream.generation}){lag}")
        when = (
            "-"
            if stream.last_event_time is None
            else f"{stream.last_event_time:%Y-%m-%d %H:%M:%S} UTC"
        )
        lines.append(
            f"  last applied: sequence {stream.last_sequence}, event time {when}; "
            f"{stream.records_applied} applied, {stream.records_stale} stale, "
            f"{stream.records_dead_lettered} dead-lettered"
        )
        older = [s.label for s in table.streams if s is not stream]
        if older:
            lines.append(f"  other streams: {', '.join(older)}")
    if table.open_gaps:
        lines.append(f"  OPEN GAPS: {len(table.open_gaps)} (run `cdc repair {table.source_table}`)")
        for gap in table.open_gaps:
            span = ""
            if gap.started is not None or gap.ended is not None:
                span = f" from {_time(gap.started)} to {_time(gap.ended)}"
            shard = f" shard {gap.shard_id}" if gap.shard_id else ""
            lines.append(
                f"    #{gap.id} {gap.kind}{shard}{span}: detected {_time(gap.detected_at)}"
            )
    else:
        lines.append("  open gaps: none")
    lines.append(f"  pending dead letters: {table.pending_dead_letters}")
    if table.load is not None:
        load = table.load
        state = "complete" if load.complete else "in progress"
        lines.append(
            f"  backfill: {state}, {load.segments_done}/{load.segments} segments, "
            f"{load.items_written} items"
        )
    return "\n".join(lines)


def _time(moment: datetime | None) -> str:
    return "?" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"
