"""The I/O edge: apply a batch of records to the database.

parse → map → plan are pure; the replicator owns the engine and the transaction and
hands the rest to its rooms: hydration to cdc/core/hydration.py, the writes and the
isolation of bad rows to cdc/sql/writer.py, the replica and bookkeeping tables (creation,
ownership, key and drift checks, first-run migrations) to cdc/sql/replica_tables.py, the
outcome of every record, and the counts and checkpoints derived from it, to
cdc/core/outcomes.py, dead letters and checkpoints to cdc/sql/bookkeeping.py. One batch
is one transaction, retried whole on transient errors (the sequence guard makes a retry,
a replay or a redelivery harmless), so a batch is either committed or reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, MetaData
from tenacity import RetryCallState

from cdc.config import Settings
from cdc.core.change import Change, RecordFormat
from cdc.core.dead_letters import DeadLetter
from cdc.core.deadline import Deadline
from cdc.core.entities import Routing
from cdc.core.errors import RecordError
from cdc.core.hydration import Hydration, ItemReader
from cdc.core.mapping import RowVersion
from cdc.core.outcomes import BatchResult, Outcome, Prepared
from cdc.core.plan import TablePlan, plan
from cdc.sql.backends.registry import backend_for
from cdc.sql.bookkeeping import tables as bookkeeping_tables
from cdc.sql.bookkeeping import write_checkpoints
from cdc.sql.children import sync_children
from cdc.sql.errors import ErrorKind, classify, describe
from cdc.sql.gaps import GapWatch
from cdc.sql.replica import DocumentTables, ReplicaSpec, entity_specs, typed_spec
from cdc.sql.replica_tables import ReplicaTables
from cdc.sql.retry import WRITE_BATCH, RetryPolicy
from cdc.sql.writer import RowRejected, Settling, Writer

log = logging.getLogger("cdc")


class Replicator:
    """Applies batches to one database. Build one per process and reuse it: it caches
    the table specs and which tables are known to exist.

    `records` is the format of the records `process` takes (the source seam: it turns
    each into a Change and names the failed ones); `hydrator` (or `new_hydrator`, called
    the first time a table asks for hydration) reads back items whose record carries no
    image. cdc/jobs/replicate.py wires in the DynamoDB ones."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        policy: RetryPolicy = WRITE_BATCH,
        hydrator: ItemReader | None = None,
        *,
        records: RecordFormat,
        new_hydrator: Callable[[], ItemReader] | None = None,
    ) -> None:
        self.engine = engine
        self.records = records
        self.settings = settings
        self.policy = policy
        self.backend = backend_for(engine.dialect.name)
        self.schema = settings.schema
        self.metadata = MetaData()
        self.documents = DocumentTables(
            metadata=self.metadata,
            schema=self.schema,
            max_identifier_bytes=self.backend.max_identifier_bytes,
            key_type=self.backend.key_type,
            options_for=settings.options_for,
            names_for=settings.names_for,
            table_options=self.backend.table_options(),
        )
        self._tombstones = bookkeeping_tables(self.schema)["cdc_tombstones"]
        self.writer = Writer(engine, self.backend, self.schema, self._tombstones)
        self._specs_lock = threading.Lock()
        self._specs: dict[str, ReplicaSpec] = {
            source: typed_spec(config, self.metadata, self.schema, self.backend)
            for source, config in settings.tables.items()
            if config.typed
        }
        # Entity routing (README: "Single-table designs"), per source table.
        self._routing: dict[str, Routing[ReplicaSpec]] = {
            source: Routing(
                source,
                config.entities,
                entity_specs(config, self.metadata, self.schema, self.backend),
                config.unmatched,
                self.spec_for,
                config.options,
                where=f"[tables.{source}]",
            )
            for source, config in settings.tables.items()
            if config.entities
        }
        self.replica_tables = ReplicaTables(engine, self.backend, settings)
        self.hydration = Hydration(hydrator, new_hydrator)
        self.gaps = GapWatch(self.backend, self.schema)  # README: Gaps and repair

    # --- the pure part ------------------------------------------------------------------

    def routing_for(self, source_table: str) -> Routing[ReplicaSpec] | None:
        """How a source table with entities reaches its tables; None without entities."""
        return self._routing.get(source_table)

    def spec_for(self, change: Change) -> ReplicaSpec:
        spec = self._specs.get(change.source_table)
        if spec is None:
            # Built once, under a lock: threads sharing a replicator share its MetaData,
            # where SQLAlchemy cannot build one table twice at the same moment.
            with self._specs_lock:
                spec = self._specs.get(change.source_table)
                if spec is None:
                    spec = self.documents.spec_for(change)
                    # The document table of an entity source's unmatched items shares
                    # the guard of its entity tables (cdc/core/entities.py).
                    spec.routed = change.source_table in self._routing
                    self._specs[change.source_table] = spec
        return spec

    def _letter(
        self,
        index: int,
        record: Any,
        exc: Exception,
        change: Change | None,
        spec: ReplicaSpec | None,
    ) -> DeadLetter:
        """The dead letter of a record `prepare` could not take. A `RecordError` keeps
        its kind; anything else is a bug of ours, logged with its traceback (call this
        inside the `except`), and the record is kept as "internal" rather than stall
        the shard."""
        if isinstance(exc, RecordError):
            kind, message = exc.kind, str(exc)
        else:
            log.exception("unexpected error preparing record %d", index)
            kind, message = "internal", f"{type(exc).__name__}: {exc}"
        personal = None
        if spec is None:  # redacted as its table's records are, if that can be told
            table = (
                change.source_table if change else self.records.hints(record).get("source_table")
            )
            options = self.settings.options_for(table) if table else self.settings.defaults
            personal = options.personal
        return DeadLetter(index, record, kind, message, change, spec, self.records, personal)

    def prepare(self, records: Sequence[Any], deadline: Deadline | None = None) -> Prepared:
        versions: list[tuple[ReplicaSpec, RowVersion]] = []
        dead: list[DeadLetter] = []
        ignored: list[Change] = []
        changes: list[Change] = []
        unreadable: list[int] = []
        parsed: list[tuple[int, Change, ReplicaSpec]] = []
        for index, record in enumerate(records):
            change: Change | None = None
            spec: ReplicaSpec | None = None
            try:
                change = self.records.parse(record, index)
                changes.append(change)
                spec = self.spec_for(change)
            except Exception as exc:
                dead.append(self._letter(index, record, exc, change, spec))
                continue
            parsed.append((index, change, spec))

        hydrated = self.hydration.items([(c, s) for _, c, s in parsed], deadline)
        for index, change, spec in parsed:
            if index in hydrated:
                item = hydrated[index]
                if isinstance(item, Exception):
                    unreadable.append(index)
                    continue
                if item is None:  # deleted since: its REMOVE follows in the stream
                    ignored.append(change)
                    continue
                change = replace(change, new_image=item)
            routing = self._routing.get(change.source_table)
            try:
                if routing is not None:  # entities: every table the key could be in
                    routed = routing.versions(change)
                else:
                    version = spec.row_version(change, lazy=True)
                    routed = [] if version is None else [(spec, version)]
            except Exception as exc:
                dead.append(self._letter(index, records[index], exc, change, spec))
                continue
            if routed:
                versions.extend(routed)
            else:
                ignored.append(change)
        return Prepared(plan(versions), dead, ignored, changes, records, unreadable)

    # --- the I/O part -------------------------------------------------------------------

    def process(
        self, records: Sequence[Any], deadline: Deadline | None = None, *, shard_id: str = ""
    ) -> BatchResult:
        """Apply a batch; never raises for a record's or the database's sake.

        `shard_id` names the shard in `cdc_checkpoints` when the caller knows it (`cdc
        tail`); Lambda events do not say, so the handler's checkpoints use "".
        """
        started = time.monotonic()
        deadline = deadline or Deadline()
        prepared = self.prepare(records, deadline)
        now = datetime.now(UTC)

        def on_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if error is not None and classify(error) is ErrorKind.SYSTEMIC:
                self.replica_tables.forget()  # maybe a table was dropped under us
            log.warning(
                "batch attempt %d failed, retrying in %.2fs: %s",
                state.attempt_number,
                state.upcoming_sleep,
                describe(error)[1] if error else "?",
            )

        try:
            for attempt in self.policy.retrying(deadline, on_retry):
                with attempt:
                    result = self._write(prepared, deadline, shard_id)
        except Exception as exc:
            # Out of time or attempts, or not retryable: nothing was committed.
            kind, message = describe(exc)
            error = f"{classify(exc).value} error, batch not committed: {kind}: {message}"
            log.error("batch of %d records not committed: %s", len(records), error)
            result = prepared.failed(error)
        return replace(
            result,
            tables=[p.spec.qualified_name for p in prepared.plans],
            seconds=time.monotonic() - started,
            measured_at=now,
            source=self.records,
        )

    def _write(self, prepared: Prepared, deadline: Deadline, shard_id: str) -> BatchResult:
        """One transaction. Optimistic first: no savepoints, which cost two round trips
        per table; if the database rejects a row's data, the transaction is rolled back
        and written again carefully, each table in a savepoint, bad rows bisected out."""
        try:
            return self._write_once(prepared, deadline, shard_id, careful=False)
        except RowRejected:
            return self._write_once(prepared, deadline, shard_id, careful=True)

    def _write_once(
        self, prepared: Prepared, deadline: Deadline, shard_id: str, *, careful: bool
    ) -> BatchResult:
        plans, dead, held = self.replica_tables.admit(prepared)
        now = datetime.now(UTC)
        wrote: list[tuple[TablePlan, int]] = []
        settled: list[tuple[TablePlan, Settling]] = []
        with self.engine.begin() as conn, ExitStack() as pipelined:
            if not careful:
                # The careful pass needs each savepoint's outcome at once.
                pipelined.enter_context(self.backend.batch_context(conn))
            self.writer.limit_statement_time(conn, deadline)
            for table_plan in plans:
                spec = table_plan.spec
                settling = Settling(table_plan)
                if careful:
                    rows = [row for chunk in settling.chunks(len(table_plan.rows)) for row in chunk]
                    changed, rejected = (
                        self.writer.write_isolated(conn, spec, rows, now) if rows else (0, [])
                    )
                else:
                    chunks = settling.chunks(self.backend.chunk_rows(len(table_plan.rows)))
                    changed, rejected = self.writer.write_plainly(conn, spec, chunks, now)
                dead.extend(
                    prepared.dead_letter(row, spec, kind, message)
                    for row, kind, message in (*settling.unbuildable, *rejected)
                )
                wrote.append((table_plan, changed))
                settled.append((table_plan, settling))
            pipelined.close()  # the dead letters and checkpoints read their results
            for table_plan, settling in settled:  # child tables, under their parent's guard
                dead.extend(
                    prepared.dead_letter(row, table_plan.spec, kind, message)
                    for row, kind, message in sync_children(conn, table_plan.spec, settling.written)
                )
            unstored, dead_letter_error = (
                self.writer.write_letters(conn, dead, now) if dead else ([], None)
            )
            result = prepared.settle(
                wrote, dead, unstored=unstored, held=held, dead_letter_error=dead_letter_error
            )
            # Gaps (README: Gaps and repair) are judged on what this transaction handled,
            # before its checkpoints move: not the records reported for redelivery.
            handled = [
                c for c in prepared.changes if result.outcomes[c.index] is not Outcome.FAILED
            ]
            self.gaps.detect(conn, handled, now)
            result = replace(result, open_gaps=self.gaps.open_counts(conn))
            progress = result.checkpoints(shard_id)
            if progress:
                write_checkpoints(conn, self.backend, self.schema, progress, now)
        return result
