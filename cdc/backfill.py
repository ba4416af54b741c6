"""Backfill: copy a table's current items into the replica with a parallel Scan.

A stream only holds 24 hours of changes, so a new replica starts empty. Each scanned
item becomes an INSERT record with sequence number 0 and goes through the same apply
path as the stream (`Replicator.process`). The sequence guard writes a row version only
where its sequence is greater than the stored one, and no stream record has sequence 0:
a backfilled item lands only where no row exists (and no tombstone), so it can never
overwrite a change the stream applied, whatever the interleaving. The stream, started
before the backfill, then brings every row to its latest version.

Resumable: after each page is committed, the segment's LastEvaluatedKey is saved in
`cdc_backfill_segments`. Saving after the commit (not in the same transaction) is safe:
a crash in between only means that page is scanned and written again, a no-op.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from sqlalchemy import Engine, delete, insert, select, update

from cdc import aws
from cdc.bookkeeping import tables
from cdc.config import Settings
from cdc.errors import CdcError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from cdc.apply import BatchResult

log = logging.getLogger("cdc.backfill")

STREAM_LABEL = "backfill"  # the synthetic stream label of backfilled records
BACKFILL_SEQUENCE = "0"  # below every real sequence number: never overwrites

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


def scan_limit(page_size: int | None, rate: float | None) -> int | None:
    """Scan's Limit: the page size asked for, at most a second's worth at `rate` (a
    page is reserved whole before it is read, so it must fit the rate)."""
    if rate is None:
        return page_size
    return max(1, min(page_size or 1000, int(rate)))


def backfill_record(
    item: dict[str, Any], source: aws.SourceTable, stream_arn: str
) -> dict[str, Any]:
    """A scanned item as the INSERT record Lambda would deliver, with sequence 0."""
    image = aws.image_to_wire(item)
    return {
        "eventID": "backfill",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": source.region,
        "eventSourceARN": stream_arn,
        "dynamodb": {
            # Scan returns whole items, keys included; a record missing one is
            # dead-lettered by the apply path like any malformed record.
            "Keys": {name: image[name] for name in source.key_names if name in image},
            "NewImage": image,
            "SequenceNumber": BACKFILL_SEQUENCE,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


class RateLimiter:
    """At most `rate` items per second, all segments (threads) together, from the first
    item on: by any time t after the limiter was made, at most rate * t items have been
    asked for.

    A request reserves its items before it is sent (`acquire`, with the page size,
    which `BackfillOptions.scan_limit` caps to one second's worth) and waits until that
    many items' worth of time has passed since the previous reservation ended; a page
    that brings fewer items than reserved gives the rest back (`refund`). No burst is
    saved up while idle: the rate holds over every interval, not just on average.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()  # when the items reserved so far are paid for
        self._lock = threading.Lock()

    def acquire(self, items: int, stop: threading.Event | None = None) -> bool:
        """Wait until `items` may be read; False if `stop` was set meanwhile."""
        with self._lock:
            self._next = max(self._clock(), self._next) + items / self.rate
            wake = self._next
        while True:
            delay = wake - self._clock()
            if delay <= 0:
                return True
            if stop is not None:
                if stop.wait(delay):
                    return False
            else:
                self._sleep(delay)

    def refund(self, items: int) -> None:
        """Give back what a request reserved and did not get (a short page)."""
        if items > 0:
            with self._lock:
                self._next -= items / self.rate


# --- progress -------------------------------------------------------------------------


class Progress(Protocol):
    def start(self, items_before: int, segments_done: int, segments: int) -> None: ...

    def advance(self, items: int, segment_done: bool) -> None: ...

    def close(self) -> None: ...


class LineProgress:
    """Plain lines every `interval` seconds: for logs and CI, where a bar is noise."""

    def __init__(self, table: str, interval: float = 10.0, out: TextIO | None = None) -> None:
        self.table = table
        self.interval = interval
        self.out = out or sys.stderr
        self._lock = threading.Lock()
        self.items = self.done = self.segments = self._items_this_run = 0
        self._started = self._last = time.monotonic()

    def start(self, items_before: int, segments_done: int, segments: int) -> None:
        self.items, self.done, self.segments = items_before, segments_done, segments
        self._started = self._last = time.monotonic()

    def advance(self, items: int, segment_done: bool) -> None:
        with self._lock:
            self.items += items
            self._items_this_run += items
            self.done += int(segment_done)
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._print(now)

    def _print(self, now: float) -> None:
        rate = self._items_this_run / max(now - self._started, 1e-9)
        print(
            f"backfill {self.table}: {self.items:,} items ({rate:,.0f}/s), "
            f"{self.done}/{self.segments} segments done",
            file=self.out,
            flush=True,
        )

    def close(self) -> None:
        with self._lock:
            self._print(time.monotonic())


class BarProgress:
    """A tqdm bar on a terminal: items, items/s and segments done."""

    def __init__(self, table: str, total: int | None) -> None:
        self.table = table
        self.total = total or None  # DynamoDB's ItemCount: an estimate, may be 0
        self._bar: Any = None
        self._lock = threading.Lock()
        self.done = self.segments = 0

    def start(self, items_before: int, segments_done: int, segments: int) -> None:
        from tqdm import tqdm

        self.done, self.segments = segments_done, segments
        self._bar = tqdm(
            total=self.total,
            initial=items_before,
            unit=" items",
            desc=f"backfill {self.table}",
            dynamic_ncols=True,
        )
        self._bar.set_postfix_str(f"segments {self.done}/{self.segments}")

    def advance(self, items: int, segment_done: bool) -> None:
        with self._lock:
            self.done += int(segment_done)
            if segment_done:
                self._bar.set_postfix_str(f"segments {self.done}/{self.segments}", refresh=False)
            self._bar.update(items)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --- the progress table ---------------------------------------------------------------


@dataclass
class SegmentRow:
    segment: int
    total_segments: int
    last_key: dict[str, Any] | None
    items_written: int
    done: bool


class SegmentStore:
    """`cdc_backfill_segments`: where each segment of a table's backfill stopped."""

    def __init__(self, engine: Engine, schema: str | None, source_table: str) -> None:
        self.engine = engine
        self.source_table = source_table
        self.table = tables(schema)["cdc_backfill_segments"]

    def load(self) -> dict[int, SegmentRow]:
        t = self.table
        query = select(t).where(t.c.source_table == self.source_table).order_by(t.c.segment)
        with self.engine.connect() as conn:
            return {
                row.segment: SegmentRow(
                    row.segment,
                    row.total_segments,
                    None if row.last_evaluated_key is None else json.loads(row.last_evaluated_key),
                    row.items_written,
                    row.done,
                )
                for row in conn.execute(query)
            }

    def reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(self.table).where(self.table.c.source_table == self.source_table))

    def create(self, segments: int) -> dict[int, SegmentRow]:
        now = datetime.now(UTC)
        rows = [
            {
                "source_table": self.source_table,
                "segment": segment,
                "total_segments": segments,
                "last_evaluated_key": None,
                "items_written": 0,
                "done": False,
                "started_at": now,
                "updated_at": now,
            }
            for segment in range(segments)
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(self.table), rows)
        return {s: SegmentRow(s, segments, None, 0, False) for s in range(segments)}

    def save(self, segment: int, last_key: dict[str, Any] | None, items: int) -> None:
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.source_table == self.source_table, t.c.segment == segment)
                .values(
                    last_evaluated_key=None
                    if last_key is None
                    else json.dumps(last_key, sort_keys=True),
                    items_written=t.c.items_written + items,
                    done=last_key is None,
                    updated_at=datetime.now(UTC),
                )
            )


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
        self.store = SegmentStore(engine, settings.schema, source.name)
        self.limiter = RateLimiter(options.rate) if options.rate else None
        self._lock = threading.Lock()

    def run(self) -> BackfillReport:
        from cdc.migrate import ensure_bookkeeping

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
                    if aws.classify(error) is aws.AwsErrorKind.SETUP:
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
        from cdc.apply import Replicator

        replicator = Replicator(self.engine, self.settings)
        last_key = row.last_key
        limit = self.options.scan_limit()
        while not self.stop.is_set():
            if (
                self.limiter is not None
                and limit is not None
                and not self.limiter.acquire(limit, self.stop)
            ):
                return
            kwargs: dict[str, Any] = {
                "TableName": self.source.name,
                "Segment": row.segment,
                "TotalSegments": row.total_segments,
                "ConsistentRead": self.options.consistent,
            }
            if last_key is not None:
                kwargs["ExclusiveStartKey"] = aws.image_from_wire(last_key)
            if limit is not None:
                kwargs["Limit"] = limit
            page = aws.call(self.client.scan, **kwargs)
            items: Sequence[dict[str, Any]] = page.get("Items", [])
            if self.limiter is not None and limit is not None:
                self.limiter.refund(limit - len(items))
            records = [backfill_record(item, self.source, self.stream_arn) for item in items]
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
            next_key = page.get("LastEvaluatedKey")
            last_key = None if next_key is None else aws.image_to_wire(next_key)
            self.store.save(row.segment, last_key, len(items))
            with self._lock:
                report.items_read += len(items)
                report.items_total += len(items)
                report.segments_done += int(last_key is None)
            if self.progress is not None:
                self.progress.advance(len(items), last_key is None)
            if last_key is None:
                return
