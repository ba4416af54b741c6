"""Backfill: copy a table's current items into the replica with a parallel Scan.

A stream only holds 24 hours of changes, so a new replica starts empty. Each scanned
item becomes a snapshot change (cdc/sources/snapshots.py) placed below every stream
record in the version order, and goes through the same apply path as the stream
(`Replicator.process`). The guard writes a row version only where its version is greater
than the stored one:
a backfilled item lands only where no row exists (and no tombstone), so it can never
overwrite a change the stream applied, whatever the interleaving. The stream, started
before the backfill, then brings every row to its latest version.

Resumable: after each page is committed, the segment's LastEvaluatedKey is saved in
`cdc_backfill_segments`. Saving after the commit (not in the same transaction) is safe:
a crash in between only means that page is scanned and written again, a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine

from cdc.aws import clients as aws
from cdc.aws import errors as aws_errors
from cdc.aws import wire as aws_wire
from cdc.aws.reads import scan_pages
from cdc.aws.scans import RateLimiter, scan_limit
from cdc.config import Settings
from cdc.core.errors import CdcError
from cdc.sources.snapshots import SNAPSHOT_RECORDS, STREAM_LABEL, Snapshot, snapshot_version_for
from cdc.sql.segments import SegmentRow, SegmentStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from cdc.core.outcomes import BatchResult

log = logging.getLogger("cdc.backfill")


# Called with (segment, records) after a page is scanned and before it is written;
# tests use it to interleave stream changes or to interrupt the backfill.
PageHook = Callable[[int, list[dict[str, Any]]], None]


class BackfillError(CdcError):
    """A backfill cannot start or could not finish; the message says what to do."""


@dataclass(frozen=True)
class BackfillOptions:
    segments: int = 4
    rate: float | None = None  # items per second, all segments together
    consistent: bool = False
    page_size: int | None = None  # Scan's Limit
    restart: bool = False
    workers: int = 8  # threads; segments beyond this wait their turn

    def scan_limit(self) -> int | None:
        return scan_limit(self.page_size, self.rate)


# --- progress -------------------------------------------------------------------------


class Progress(Protocol):
    def start(self, items_before: int, segments_done: int, segments: int) -> None: ...

    def advance(self, items: int, segment_done: bool) -> None: ...

    def close(self) -> None: ...


# --- the progress table ---------------------------------------------------------------


# --- the backfill ------------------------------------------------------------------------


@dataclass
class BackfillReport:
    table: str
    segments: int
    items_read: int = 0  # this run
    items_total: int = 0  # over every run of this backfill
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    segments_done: int = 0
    already_complete: bool = False
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.segments_done == self.segments and not self.errors

    def add(self, result: BatchResult) -> None:
        self.applied += result.applied
        self.stale += result.stale
        self.dead_lettered += result.dead_lettered


class Backfill:
    """One backfill of one table: segments scanned in parallel threads, each page
    applied through its own `Replicator` (one per thread: a Replicator caches table
    metadata and is not meant to be shared between threads; the engine is)."""

    def __init__(
        self,
        client: DynamoDBClient,
        source: aws.SourceTable,
        engine: Engine,
        settings: Settings,
        options: BackfillOptions,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        before_write: PageHook | None = None,
    ) -> None:
        if options.segments < 1:
            raise BackfillError("--segments must be at least 1")
        self.client = client
        self.source = source
        self.engine = engine
        self.settings = settings
        self.options = options
        self.progress = progress
        self.stop = stop or threading.Event()
        self.before_write = before_write
        self.stream_arn = source.synthetic_stream_arn(STREAM_LABEL)
        # Placed below the records of the stream consumed now (README: Stream generations).
        self.version = snapshot_version_for(source.stream_arn)
        self.snapshot = Snapshot(source.name, source.key_names, self.stream_arn, self.version)
        self.store = SegmentStore(engine, settings.schema, source.name)
        self.limiter = RateLimiter(options.rate) if options.rate else None
        self._lock = threading.Lock()

    def run(self) -> BackfillReport:
        from cdc.sql.migrations import ensure_bookkeeping

        started = time.monotonic()
        ensure_bookkeeping(self.engine, self.settings.schema)
        report = BackfillReport(self.source.name, self.options.segments)
        rows = self._prepare()
        report.segments = len(rows)  # a completed backfill's own count, whatever was asked
        report.items_total = sum(r.items_written for r in rows.values())
        report.segments_done = sum(1 for r in rows.values() if r.done)
        pending = sorted(s for s, r in rows.items() if not r.done)
        if not pending:
            report.already_complete = True
            return report
        if self.progress is not None:
            self.progress.start(report.items_total, report.segments_done, len(rows))
        workers = max(1, min(len(pending), self.options.workers))
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="backfill") as pool:
                futures: dict[Future[None], int] = {
                    pool.submit(self._segment, rows[s], report): s for s in pending
                }
                try:
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    if any(f.exception() is not None for f in done):
                        self.stop.set()  # let the others finish their page and stop
                    wait(futures)
                except BaseException:
                    self.stop.set()  # a second Ctrl-C: stop at the next page boundary
                    for future in futures:
                        future.cancel()
                    raise
                failed = [
                    (segment, error)
                    for future, segment in sorted(futures.items(), key=lambda f: f[1])
                    if not future.cancelled() and (error := future.exception()) is not None
                ]
                for segment, error in failed:
                    if aws_errors.classify(error) is aws_errors.AwsErrorKind.SETUP:
                        # A missing permission or a bad credential is the same for every
                        # segment: one error for the CLI to explain in one line.
                        raise error
                    report.errors.append(f"segment {segment}: {error}")
        finally:
            if self.progress is not None:
                self.progress.close()
            report.seconds = time.monotonic() - started
        report.interrupted = (
            self.stop.is_set() and not report.errors and report.segments_done < report.segments
        )
        return report

    def _prepare(self) -> dict[int, SegmentRow]:
        segments = self.options.segments
        if self.options.restart:
            self.store.reset()
        rows = self.store.load()
        if not rows:
            return self.store.create(segments)
        if all(r.done for r in rows.values()):
            # Complete: whatever --segments says now, there is nothing to resume, and
            # the report says so (--restart scans again).
            return rows
        totals = {r.total_segments for r in rows.values()}
        if totals != {segments} or len(rows) != segments:
            found = ", ".join(str(t) for t in sorted(totals))
            raise BackfillError(
                f"a backfill of {self.source.name!r} with {found} segments was started "
                f"before; rerun with --segments {found} to resume it, or with --restart to "
                "start over"
            )
        return rows

    def _segment(self, row: SegmentRow, report: BackfillReport) -> None:
        from cdc.jobs.replicate import Replicator

        replicator = Replicator(self.engine, self.settings, records=SNAPSHOT_RECORDS)
        start = row.last_key
        pages = scan_pages(
            self.client,
            self.source.name,
            segment=(row.segment, row.total_segments),
            start_key=None if start is None else aws_wire.image_from_wire(start),
            consistent=self.options.consistent,
            limit=self.options.scan_limit(),
            limiter=self.limiter,
            stop=self.stop,
        )
        for page in pages:
            items = page.items
            records = [self.snapshot.record(aws_wire.image_to_wire(item)) for item in items]
            if self.before_write is not None:
                self.before_write(row.segment, records)
            if records:
                result = replicator.process(records)
                if result.failed:
                    raise BackfillError(
                        f"{result.failed} of {len(records)} records not committed "
                        f"({result.error}); rerun to resume from the last committed page"
                    )
                with self._lock:
                    report.add(result)
            last_key = None if page.last_key is None else aws_wire.image_to_wire(page.last_key)
            self.store.save(row.segment, last_key, len(items))
            with self._lock:
                report.items_read += len(items)
                report.items_total += len(items)
                report.segments_done += int(last_key is None)
            if self.progress is not None:
                self.progress.advance(len(items), last_key is None)
            if last_key is None:
                return
