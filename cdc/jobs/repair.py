"""`cdc repair`'s work: re-bootstrap a table that has an open gap from a scan of its
source, sweep what the source no longer holds, close the gap (README: Gaps and repair;
the ordering argument is docs/architecture.md, section 3, "Repairs").

A row is *before the gap* when its stored version is below the repair's base B (the
snapshot version of the newest generation involved) or it was applied before the gap
was detected; otherwise a record from after the gap wrote it, and every later record of
its key will follow in the stream. Per scanned item, under a row lock:

- no row and no tombstone: the item is written at version B;
- a row or tombstone from before the gap: the item replaces it at version
  max(stored, B), so it beats every record before the gap and loses to every record
  after it (per key, later records have greater versions);
- a row from after the gap: left alone (the stream brings its key up to date).

Then every live row still from before the gap was not in the scan: the source deleted
it during the gap. It is deleted (soft or hard, per the table's options) at version
max(stored, B). The gaps are closed last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, case, delete, literal, or_, select, update
from sqlalchemy.engine import Connection

from cdc.aws import clients as aws
from cdc.aws import wire as aws_wire
from cdc.config import Settings
from cdc.core.errors import CdcError
from cdc.core.mapping import APPLIED_AT, DELETED, SEQ, RowVersion, key_hash
from cdc.core.versions import snapshot_version, stream_generation
from cdc.sources.snapshots import SNAPSHOT_RECORDS, Snapshot
from cdc.sql.gaps import OpenGap, close_gaps, open_gaps
from cdc.sql.replica import ReplicaSpec, keys_in
from cdc.sql.types import SequenceNumber

log = logging.getLogger("cdc")

REPAIR_LABEL = "repair"  # the synthetic stream label of a repair's records
SWEEP_CHUNK = 1000


class RepairError(CdcError):
    """A repair cannot proceed (no open gap, a replica table that cannot be written)."""


@dataclass
class RepairReport:
    source_table: str
    gaps: list[OpenGap]
    base_version: int = 0
    items_read: int = 0
    rows_repaired: int = 0  # written from the scan
    rows_kept: int = 0  # written after the gap: the stream keeps them up to date
    rows_swept: int = 0  # deleted: gone from the source during the gap
    dead_lettered: int = 0
    gaps_closed: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.source_table,
            "gaps": [g.id for g in self.gaps],
            "base_version": str(self.base_version),
            "items_read": self.items_read,
            "rows_repaired": self.rows_repaired,
            "rows_kept": self.rows_kept,
            "rows_swept": self.rows_swept,
            "dead_lettered": self.dead_lettered,
            "gaps_closed": self.gaps_closed,
            "seconds": round(self.seconds, 3),
        }


class Repair:
    """One repair of one source table. `pages` are the items of a Scan of the source
    (AttributeValue maps, as boto3's client returns them), read after `start`."""

    def __init__(self, engine: Engine, settings: Settings, source: aws.SourceTable) -> None:
        from cdc.jobs.replicate import Replicator

        self.engine = engine
        self.settings = settings
        self.source = source
        self.replicator = Replicator(engine, settings, records=SNAPSHOT_RECORDS)
        self.stream_arn = source.synthetic_stream_arn(REPAIR_LABEL)
        self.gaps: list[OpenGap] = []
        self.base = 0
        self.snapshot = Snapshot(source.name, source.key_names, self.stream_arn, 0)
        self.cutoff = datetime.min.replace(tzinfo=UTC)
        self.spec: ReplicaSpec | None = None

    def start(self) -> RepairReport:
        """Find the open gaps (RepairError without one) and fix the repair's base."""
        from cdc.sql.migrations import ensure_bookkeeping

        ensure_bookkeeping(self.engine, self.settings.schema, self.settings)
        with self.engine.connect() as conn:
            self.gaps = open_gaps(conn, self.settings.schema, self.source.name)
        if not self.gaps:
            raise RepairError(
                f"table {self.source.name!r} has no open gap: nothing to repair "
                "(`cdc status` lists the gaps; `cdc verify` compares a table)"
            )
        generation = max(
            [g.generation for g in self.gaps] + [stream_generation(self.source.stream_arn or "")]
        )
        self.base = snapshot_version(generation)
        source = self.source
        self.cutoff = max(g.detected_at for g in self.gaps)
        self.snapshot = Snapshot(source.name, source.key_names, self.stream_arn, self.base)
        return RepairReport(self.source.name, self.gaps, self.base)

    def apply_page(self, items: Sequence[dict[str, Any]], report: RepairReport) -> None:
        report.items_read += len(items)
        if not items:
            return
        records = [self.snapshot.record(aws_wire.image_to_wire(item)) for item in items]
        prepared = self.replicator.prepare(records)
        now = max(datetime.now(UTC), self.cutoff)
        dead = list(prepared.dead)
        for plan in prepared.plans:
            self._ready(plan.spec)  # in a transaction of its own (SQLite has one writer)
        with self.engine.begin() as conn:
            for plan in prepared.plans:
                spec = plan.spec
                rows = []
                for row in plan.rows:
                    if spec.materialize(row):
                        rows.append(row)
                    else:
                        assert row.error is not None
                        dead.append(prepared.dead_letter(row, spec, *row.error))
                chosen, kept = self._place(conn, spec, rows)
                report.rows_kept += kept
                if chosen:
                    changed, rejected = self.replicator.writer.write_isolated(
                        conn, spec, chosen, now
                    )
                    report.rows_repaired += changed
                    dead.extend(
                        prepared.dead_letter(row, spec, kind, message)
                        for row, kind, message in rejected
                    )
            if dead:
                unwritten, error = self.replicator.writer.write_letters(conn, dead, now)
                if unwritten:
                    raise RepairError(f"dead letters could not be written: {error}")
                report.dead_lettered += len(dead)

    def _ready(self, spec: ReplicaSpec) -> ReplicaSpec:
        problem = self.replicator.replica_tables.ensure(spec)
        if problem is not None:
            raise RepairError(problem.message)
        self.spec = spec
        return spec

    def _before_gap(self, version: int, applied_at: datetime | None) -> bool:
        return version < self.base or applied_at is None or _aware(applied_at) < self.cutoff

    def _place(
        self, conn: Connection, spec: ReplicaSpec, rows: list[RowVersion]
    ) -> tuple[list[RowVersion], int]:
        """Give each scanned row its version, clearing the stored row or tombstone it
        replaces; leave out the keys written after the gap. Returns (rows, kept)."""
        table = spec.table
        keys = [table.c[name] for name in spec.key_names]
        stored: dict[str, tuple[int, datetime | None]] = {}
        for start in range(0, len(rows), SWEEP_CHUNK):
            chunk = rows[start : start + SWEEP_CHUNK]
            query = (
                select(*keys, table.c[SEQ], table.c[APPLIED_AT])
                .where(keys_in(keys, [r.key for r in chunk]))
                .with_for_update()
            )
            for found in conn.execute(query):
                stored[_key(found[: len(keys)])] = (int(found[-2]), found[-1])
        tombstones = self.replicator.writer.tombstones
        hashes = {id(r): key_hash(r.key)[0] for r in rows}
        buried: dict[str, tuple[int, datetime | None]] = {}
        for start in range(0, len(rows), SWEEP_CHUNK):
            digests = [hashes[id(r)] for r in rows[start : start + SWEEP_CHUNK]]
            marks = select(
                tombstones.c.key_hash, tombstones.c.sequence, tombstones.c.deleted_at
            ).where(
                tombstones.c.table_name == spec.qualified_name, tombstones.c.key_hash.in_(digests)
            )
            for tomb in conn.execute(marks.with_for_update()):
                buried[str(tomb[0])] = (int(tomb[1]), tomb[2])
        chosen: list[RowVersion] = []
        replaced: list[RowVersion] = []
        kept = 0
        for row in rows:
            mark = stored.get(_key(row.key)) or buried.get(hashes[id(row)])
            if mark is None:
                row.sequence = self.base
            elif self._before_gap(*mark):
                row.sequence = max(mark[0], self.base)
                replaced.append(row)
            else:
                kept += 1
                continue
            chosen.append(row)
        for start in range(0, len(replaced), SWEEP_CHUNK):
            chunk = replaced[start : start + SWEEP_CHUNK]
            conn.execute(delete(table).where(keys_in(keys, [r.key for r in chunk])))
            conn.execute(
                delete(tombstones).where(
                    tombstones.c.table_name == spec.qualified_name,
                    tombstones.c.key_hash.in_([hashes[id(r)] for r in chunk]),
                )
            )
        return chosen, kept

    def finish(self, report: RepairReport, *, complete: bool = True) -> RepairReport:
        """Sweep the rows the scan did not see, then close the gaps: only after a
        complete scan (a partial one would delete the rows it did not reach) whose items
        were all written (a dead-lettered item's key would be swept as gone from the
        source: the gap stays open until the cause is fixed and the repair run again,
        which keeps what this run wrote)."""
        if not complete or report.dead_lettered:
            return report
        spec = self.spec or self._spec_without_items()
        now = max(datetime.now(UTC), self.cutoff)
        with self.engine.begin() as conn:
            if spec is not None:
                report.rows_swept = self._sweep(conn, spec, now)
            report.gaps_closed = close_gaps(
                conn, self.settings.schema, [g.id for g in self.gaps], now, "cdc repair"
            )
        return report

    def _spec_without_items(self) -> ReplicaSpec | None:
        """The replica's spec when the scan found no item (the source is empty): made
        from a key-only record, so the sweep can empty the replica."""
        from sqlalchemy import inspect

        dummy = {"N": "0", "S": "a", "B": "YQ=="}
        key = {name: {tag: dummy[tag]} for name, tag in self.source.keys}
        change = Snapshot(self.source.name, self.source.key_names, self.stream_arn).change(key)
        spec = self.replicator.spec_for(change)
        if not inspect(self.engine).has_table(spec.table.name, schema=spec.table.schema):
            return None
        return spec

    def _sweep(self, conn: Connection, spec: ReplicaSpec, now: datetime) -> int:
        table = spec.table
        before = or_(table.c[SEQ] < self.base, table.c[APPLIED_AT] < self.cutoff)
        live = and_(before, table.c[DELETED].is_(False))
        base = literal(self.base, SequenceNumber())
        floor = case((table.c[SEQ] < base, base), else_=table.c[SEQ])
        if spec.options.deletes != "hard":
            stmt = update(table).where(live).values({SEQ: floor, DELETED: True, APPLIED_AT: now})
            return int(conn.execute(stmt).rowcount)
        keys = [table.c[name] for name in spec.key_names]
        found = conn.execute(select(*keys, table.c[SEQ]).where(live).with_for_update()).all()
        tombstones = self.replicator.writer.tombstones
        dialect = self.replicator.backend
        marks = []
        for row in found:
            digest, text = key_hash(tuple(row[: len(keys)]))
            marks.append(
                {
                    "table_name": spec.qualified_name,
                    "key_hash": digest,
                    "key": text,
                    "sequence": max(int(row[-1]), self.base),
                    "deleted_at": now,
                }
            )
        for start in range(0, len(marks), SWEEP_CHUNK):
            merge = dialect.merge(
                tombstones,
                marks[start : start + SWEEP_CHUNK],
                assign=lambda new: {"sequence": new["sequence"], "deleted_at": new["deleted_at"]},
                guard=lambda new: tombstones.c.sequence < new["sequence"],
            )
            conn.execute(merge)
        for start in range(0, len(found), SWEEP_CHUNK):
            chunk = [tuple(r[: len(keys)]) for r in found[start : start + SWEEP_CHUNK]]
            conn.execute(delete(table).where(keys_in(keys, chunk), before))
        return len(found)


def repair(
    engine: Engine,
    settings: Settings,
    source: aws.SourceTable,
    pages: Iterable[Sequence[dict[str, Any]]],
) -> RepairReport:
    """Repair `source`'s replica from `pages` (a full scan, read after this call
    starts): see the module's docstring."""
    started = time.monotonic()
    job = Repair(engine, settings, source)
    report = job.start()
    for items in pages:
        job.apply_page(items, report)
    job.finish(report)
    report.seconds = time.monotonic() - started
    return report


def scan_pages(
    client: Any, table: str, *, consistent: bool = True, page_size: int | None = None
) -> Iterable[list[dict[str, Any]]]:
    """A whole-table Scan, page by page (strongly consistent by default: a repair must
    not read an item older than a record already applied)."""
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": consistent}
    if page_size is not None:
        kwargs["Limit"] = page_size
    while True:
        page = aws.call(client.scan, **kwargs)
        yield list(page.get("Items", []))
        last = page.get("LastEvaluatedKey")
        if last is None:
            return
        kwargs["ExclusiveStartKey"] = last


def _key(values: Sequence[Any]) -> str:
    """A key as a dictionary key, whatever its numbers' spelling (1 and 1.0)."""
    return key_hash(tuple(values))[0]


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
