"""Load a DynamoDB export to S3 into the replica, its data files shared by any number of
workers (docs/architecture.md, "Export loads"; README: `cdc backfill`).

Each data file is a unit of work in `cdc_export_files`. A worker (a thread of `cdc
backfill --from-export`, in any process on any machine, or one Lambda invocation of the
state machine) claims a file with a lease, downloads it and checks its MD5 against the
manifest, then applies its lines in batches through `Replicator.process`, exactly as a
Scan backfill applies its pages: every item is a snapshot record (see
cdc/sources/exports.py), so it lands only where the stream has written nothing for its
key. After each batch commits, the number of lines done is saved (and the lease
renewed); a crash in between only means that batch is applied again, which changes
nothing. A worker that dies stops renewing its lease, and another takes the file over
from its last saved line.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from cdc.aws import exports as s3x
from cdc.config import Settings
from cdc.core.errors import CdcError
from cdc.sources.exports import ExportFileError, line_record, read_lines
from cdc.sources.snapshots import SNAPSHOT_RECORDS, STREAM_LABEL, export_version_for
from cdc.sql.backends.registry import backend_class
from cdc.sql.export_files import ExportFileStore, FileClaim, FileEntry, worker_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cdc.aws.clients import SourceTable
    from cdc.core.deadline import Deadline
    from cdc.jobs.backfill import Progress
    from cdc.jobs.replicate import Replicator

log = logging.getLogger("cdc.export_load")

# Called with (file number, records) before a batch is written; tests interleave stream
# changes or interrupt a worker with it.
BatchHook = Callable[[int, list[dict[str, Any]]], None]


class ExportLoadError(CdcError):
    """An export load cannot start or could not finish; the message says what to do."""


@dataclass(frozen=True)
class LoadOptions:
    workers: int = 4
    batch_lines: int = 1000
    lease: float = 120.0  # seconds a claim lasts without a committed batch
    poll: float = 2.0  # seconds between looks when every file left is another's


@dataclass
class LoadReport:
    table: str
    export_arn: str
    export_url: str
    files: int = 0
    files_done: int = 0
    items_total: int = 0  # the manifest's
    items_done: int = 0  # over every worker and run
    items_read: int = 0  # this process
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    already_complete: bool = False
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.files_done == self.files and not self.errors


@dataclass
class Export:
    """A checked export: its location, summary and data files."""

    location: s3x.ExportLocation
    summary: s3x.ExportSummary
    files: list[s3x.DataFile]

    @classmethod
    def open(cls, s3: S3Client, url: str, table: str) -> Export:
        location = s3x.ExportLocation.parse(url)
        summary = s3x.read_summary(s3, location)
        s3x.check_export(summary, table, location)
        return cls(location, summary, s3x.read_data_files(s3, location, summary))


class ExportLoad:
    """One export of one table, loaded by this process's workers alongside any others."""

    def __init__(
        self,
        s3: S3Client,
        export: Export,
        source: SourceTable,
        engine: Engine,
        settings: Settings,
        options: LoadOptions | None = None,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        before_write: BatchHook | None = None,
    ) -> None:
        self.s3 = s3
        self.export = export
        self.source = source
        self.engine = engine
        self.settings = settings
        self.options = options or LoadOptions()
        self.progress = progress
        self.stop = stop or threading.Event()
        self.before_write = before_write
        self.stream_arn = source.synthetic_stream_arn(STREAM_LABEL)
        self.incremental = export.summary.export_type == s3x.INCREMENTAL
        # The export's place in the version order (README: Stream generations).
        self.version = export_version_for(source.stream_arn, export.summary.export_time)
        self.store = ExportFileStore(engine, settings.schema, export.summary.export_arn)
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """The bookkeeping tables and the export's rows in them (once, whoever is first)."""
        from cdc.sql.migrations import ensure_bookkeeping

        ensure_bookkeeping(self.engine, self.settings.schema, self.settings)
        entries = [FileEntry(f.number, f.key, f.item_count) for f in self.export.files]
        self.store.register(self.source.name, entries)

    def run(self) -> LoadReport:
        started = time.monotonic()
        self.prepare()
        report = LoadReport(
            self.source.name, self.export.summary.export_arn, self.export.location.url
        )
        state = self.store.state()
        if state.complete:
            report.already_complete = True
            self._fill(report)
            return report
        self.store.clear_errors()
        if self.progress is not None:
            self.progress.start(state.items_done, state.done, state.files)
        try:
            workers = max(1, min(self.options.workers, state.files - state.done))
            if backend_class(self.engine.dialect.name).single_writer:
                workers = 1  # one writer at a time: more threads would only wait on locks
            with ThreadPoolExecutor(workers, thread_name_prefix="export-load") as pool:
                futures = [pool.submit(self._worker, report) for _ in range(workers)]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    self.stop.set()
                    raise
        finally:
            if self.progress is not None:
                self.progress.close()
            report.seconds = time.monotonic() - started
        self._fill(report)
        report.interrupted = self.stop.is_set() and not report.errors and not report.complete
        return report

    def _fill(self, report: LoadReport) -> None:
        state = self.store.state()
        report.files, report.files_done = state.files, state.done
        report.items_total, report.items_done = state.items, state.items_done
        with self._lock:
            report.errors = list(dict.fromkeys([*report.errors, *state.errors]))

    def replicator(self) -> Replicator:
        """One per worker thread (a Replicator caches table metadata; the engine is
        shared), taking the records cdc/sources/exports.py makes."""
        from cdc.jobs.replicate import Replicator

        return Replicator(self.engine, self.settings, records=SNAPSHOT_RECORDS)

    def _worker(self, report: LoadReport) -> None:
        """Claim files until the export is loaded, waiting for the leases of files
        other workers hold (taking them over if they expire)."""
        replicator = self.replicator()
        me = worker_id()
        while not self.stop.is_set():
            claim = self.store.claim(me, self.options.lease)
            if claim is None:
                state = self.store.state()
                if state.complete or state.errors:
                    return
                self.stop.wait(self.options.poll)
                continue
            try:
                done = self.load_file(claim, replicator, me, report)
            except CdcError as exc:
                self.store.release(claim.file_no, me, error=str(exc))
                with self._lock:
                    report.errors.append(str(exc))
                self.stop.set()  # the others finish their batch and stop
                return
            except BaseException:
                self.store.release(claim.file_no, me)
                raise
            if not done:
                self.store.release(claim.file_no, me)
            if self.progress is not None and done:
                self.progress.advance(0, True)

    def load_file(
        self,
        claim: FileClaim,
        replicator: Replicator,
        worker: str,
        report: LoadReport | None = None,
        deadline: Deadline | None = None,
        reserve: float = 10.0,
    ) -> bool:
        """Apply one claimed file from its saved line; True when it is done. Stops
        early (False) on `stop`, when the lease was lost, or with less than `reserve`
        seconds left before `deadline` (a Lambda invocation)."""
        where = f"s3://{self.export.location.bucket}/{claim.data_key}"
        entry = self.export.files[claim.file_no]
        renewed = [time.monotonic()]

        def renew() -> None:  # a long download keeps its lease
            if time.monotonic() - renewed[0] > self.options.lease / 3:
                renewed[0] = time.monotonic()
                self.store.advance(claim, worker, self.options.lease)

        with tempfile.TemporaryFile(prefix="cdc-export-") as spool:
            s3x.download(self.s3, self.export.location.bucket, entry, spool, renew)
            if not self.store.advance(claim, worker, self.options.lease):
                return False  # the download outlasted the lease: another worker has it
            batch: list[dict[str, Any]] = []
            lines = claim.lines_done
            lines_of = read_lines(spool, where, claim.lines_done, self.export.summary.output_format)
            for number, line in lines_of:
                lines = number
                if line is not None:
                    record = line_record(
                        line,
                        self.source,
                        self.stream_arn,
                        incremental=self.incremental,
                        where=f"{where} line {number}",
                        version=self.version,
                    )
                    batch.append(record)
                if len(batch) >= self.options.batch_lines:
                    if not self._commit(claim, batch, lines, replicator, worker, report):
                        return False
                    batch = []
                    if self.stop.is_set() or _out_of_time(deadline, reserve):
                        return False
            if not self._commit(claim, batch, lines, replicator, worker, report):
                return False
        if claim.items_done != claim.item_count:
            raise ExportFileError(
                f"{where} holds {claim.items_done} items, the manifest says "
                f"{claim.item_count}: the export's files do not match its manifest"
            )
        return self.store.advance(claim, worker, self.options.lease, done=True)

    def _commit(
        self,
        claim: FileClaim,
        batch: list[dict[str, Any]],
        lines: int,
        replicator: Replicator,
        worker: str,
        report: LoadReport | None,
    ) -> bool:
        if self.before_write is not None:
            self.before_write(claim.file_no, batch)
        if batch:
            result = replicator.process(batch)
            if result.failed:
                raise ExportLoadError(
                    f"{result.failed} of {len(batch)} records not committed "
                    f"({result.error}); rerun to resume from the last committed line"
                )
            if report is not None:
                with self._lock:
                    report.applied += result.applied
                    report.stale += result.stale
                    report.dead_lettered += result.dead_lettered
                    report.items_read += len(batch)
        claim.lines_done = lines
        claim.items_done += len(batch)
        if self.progress is not None and batch:
            self.progress.advance(len(batch), False)
        return self.store.advance(claim, worker, self.options.lease)


def _out_of_time(deadline: Deadline | None, reserve: float) -> bool:
    if deadline is None:
        return False
    left = deadline.remaining()
    return left is not None and left < reserve
