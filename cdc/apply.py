"""The I/O edge: apply a batch of stream records to the database.

decode → map → plan are pure; this module owns the engine, the transaction, the bulk
writes, the isolation of bad rows, dead letters and checkpoints. One batch is one
transaction, retried whole on transient errors (the sequence guard makes a retry, a
replay or a redelivery harmless), so a batch is either committed or reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import Engine, MetaData, inspect
from sqlalchemy.engine import Connection
from tenacity import RetryCallState

from cdc.bookkeeping import DeadLetter, StreamProgress, write_checkpoints, write_dead_letters
from cdc.bookkeeping import tables as bookkeeping_tables
from cdc.config import Settings
from cdc.db import mysql_session_limits, set_session
from cdc.dberrors import ErrorKind, classify, describe
from cdc.dialects import dialect_for
from cdc.dialects.postgresql import batch_pipeline
from cdc.errors import RecordError
from cdc.mapping import (
    BOOKKEEPING_COLUMNS,
    DocumentTables,
    RowVersion,
    TableSpec,
    is_reserved_table,
    typed_spec,
)
from cdc.migrate import column_problems
from cdc.plan import TablePlan, plan
from cdc.records import Change, failure_identifiers, parse_record
from cdc.retry import WRITE_BATCH, Deadline, RetryPolicy

log = logging.getLogger("cdc")


class _RowRejected(Exception):
    """The database refused a row's data in the optimistic pass."""


@dataclass(frozen=True)
class _TableProblem:
    """Why a table's records cannot be written: dead-lettered (a problem of those
    records' source: a name collision, a key that differs), or, `report`, reported for
    redelivery (a configuration problem a person fixes: the database differs from the
    mapping)."""

    kind: str
    message: str
    report: bool = False


class Outcome(Enum):
    APPLIED = "applied"  # written, or found stale / superseded: nothing left to do
    DEAD_LETTERED = "dead_lettered"
    FAILED = "failed"  # not committed: reported to Lambda for redelivery


@dataclass
class TableStats:
    """Outcomes of one source table's records in one batch (metric dimensions)."""

    records: int = 0
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    failed: int = 0
    max_lag_s: float | None = None


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    records: Sequence[Any]
    applied: int = 0  # rows the batch changed
    stale: int = 0  # records that changed nothing: older, duplicate, superseded, ignored
    dead_lettered: int = 0
    tables: list[str] = field(default_factory=list)
    error: str | None = None  # why the batch (or part of it) was reported
    seconds: float = 0.0
    max_lag_s: float | None = None
    # (stream ARN, source table) → outcomes; ("", "") for records too broken to tell
    by_table: dict[tuple[str, str], TableStats] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o is Outcome.FAILED)

    @property
    def item_failures(self) -> list[str]:
        """Lambda's itemIdentifiers: the SequenceNumber of each record not handled (see
        `failure_identifiers` for a record without a usable one)."""
        failed = (i for i, o in enumerate(self.outcomes) if o is Outcome.FAILED)
        return failure_identifiers(self.records, failed)

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.item_failures]}

    def summary(self) -> dict[str, Any]:
        return {
            "records": len(self.outcomes),
            "applied": self.applied,
            "stale": self.stale,
            "dead_lettered": self.dead_lettered,
            "failed": self.failed,
            "tables": self.tables,
            "seconds": round(self.seconds, 4),
            "max_lag_s": None if self.max_lag_s is None else round(self.max_lag_s, 3),
            **({"error": self.error} if self.error else {}),
        }

    def _tally(self, prepared: Prepared, written: Written | None, now: datetime) -> None:
        """Fill `by_table` from the outcomes (the handler's log line and metrics)."""
        groups: dict[tuple[str, str], TableStats] = {}
        group_of: dict[int, tuple[str, str]] = {}
        earliest: dict[tuple[str, str], datetime] = {}
        for change in prepared.changes:
            key = (change.stream_arn, change.source_table)
            group_of[change.index] = key
            stats = groups.get(key)
            if stats is None:
                stats = groups[key] = TableStats()
            stats.records += 1
            moment = change.event_time
            if moment is not None and (key not in earliest or moment < earliest[key]):
                earliest[key] = moment
        unparsed = len(self.outcomes) - len(prepared.changes)
        if unparsed:  # records too broken to name their table
            groups.setdefault(("", ""), TableStats()).records += unparsed
        for index, outcome in enumerate(self.outcomes):
            if outcome is Outcome.APPLIED:
                continue
            stats = groups[group_of.get(index, ("", ""))]
            if outcome is Outcome.FAILED:
                stats.failed += 1
            else:
                stats.dead_lettered += 1
        for key, moment in earliest.items():
            groups[key].max_lag_s = max(0.0, (now - moment).total_seconds())
        lags = [s.max_lag_s for s in groups.values() if s.max_lag_s is not None]
        self.max_lag_s = max(lags) if lags else None
        if written is not None:
            for key, (applied, stale) in written.per_table.items():
                groups.setdefault(key, TableStats())
                groups[key].applied += applied
                groups[key].stale += stale
        self.by_table = groups


@dataclass
class Prepared:
    """The pure part of a batch: what to write, what is already known to be bad."""

    plans: list[TablePlan]
    dead: list[DeadLetter]
    ignored: list[Change]  # e.g. TTL expiries the table ignores
    changes: list[Change]
    records: Sequence[Any]
    unreadable: list[int] = field(default_factory=list)  # hydration failed: report them

    def dead_letter(self, row: RowVersion, spec: TableSpec, kind: str, message: str) -> DeadLetter:
        change = row.change
        return DeadLetter(change.index, self.records[change.index], kind, message, change, spec)


@dataclass
class Written:
    """What one successful attempt committed."""

    applied: int
    stale: int
    dead: list[DeadLetter]
    dead_letter_error: str | None
    per_table: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    unwritten: list[DeadLetter] = field(default_factory=list)  # dead letters not stored
    # Records of tables the database cannot take as the mapping says: reported, with why.
    reported: dict[int, str] = field(default_factory=dict)


class _Settling:
    """One table's row versions through one write attempt, values built as they are
    written: each key's newest version, or if its values cannot be built (a bad image,
    a value its column cannot take) the next-newest valid one; then the versions that
    lost, which are only checked, so that a bad one is dead-lettered like any other.
    The result is the same as building every version first; the work just moves to
    where the Postgres path overlaps it with the server's."""

    def __init__(self, table_plan: TablePlan) -> None:
        self.plan = table_plan
        self.unbuildable: list[tuple[RowVersion, str, str]] = []  # → dead letters
        self.sent = 0  # versions handed to the dialect
        self.stale = 0  # valid versions that lost to a newer one of their key

    def chunks(self, size: int) -> Iterator[list[RowVersion]]:
        spec, rows = self.plan.spec, self.plan.rows
        tried: set[int] = set()  # superseded versions tried in place of a newer one
        for start in range(0, len(rows), max(1, size)):
            chunk = []
            for newest in rows[start : start + size]:
                row: RowVersion | None = newest
                while row is not None and not spec.materialize(row):
                    assert row.error is not None
                    self.unbuildable.append((row, *row.error))
                    row = row.older
                    if row is not None:
                        tried.add(id(row))
                if row is not None:
                    chunk.append(row)
            self.sent += len(chunk)
            if chunk:
                yield chunk
        # Runs while the dialect's last chunk is still on the server.
        for row in self.plan.superseded:
            if id(row) in tried:
                continue
            if spec.materialize(row):
                self.stale += 1
            else:
                assert row.error is not None
                self.unbuildable.append((row, *row.error))


class Replicator:
    """Applies batches to one database. Build one per process and reuse it: it caches
    the table specs and which tables are known to exist."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        policy: RetryPolicy = WRITE_BATCH,
        hydrator: Any = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.policy = policy
        self.dialect = dialect_for(engine.dialect.name)
        self.schema = settings.schema
        self.metadata = MetaData()
        self.documents = DocumentTables(
            metadata=self.metadata,
            schema=self.schema,
            max_identifier_bytes=self.dialect.max_identifier_bytes,
            key_type=self.dialect.key_type,
            options_for=settings.options_for,
            names_for=settings.names_for,
            table_options=self.dialect.table_options(),
        )
        self._tombstones = bookkeeping_tables(self.schema)["cdc_tombstones"]
        self._specs_lock = threading.Lock()
        self._specs: dict[str, TableSpec] = {
            source: typed_spec(
                config,
                self.metadata,
                self.schema,
                self.dialect.max_identifier_bytes,
                self.dialect.column_type,
                self.dialect.table_options(),
            )
            for source, config in settings.tables.items()
            if config.typed
        }
        self._ready: set[str] = set()
        self._bookkeeping_ready = False
        self._hydrator: Any = hydrator

    # --- the pure part ------------------------------------------------------------------

    def spec_for(self, change: Change) -> TableSpec:
        spec = self._specs.get(change.source_table)
        if spec is None:
            # Built once, under a lock: threads sharing a replicator share its MetaData,
            # where SQLAlchemy cannot build one table twice at the same moment.
            with self._specs_lock:
                spec = self._specs.get(change.source_table)
                if spec is None:
                    spec = self.documents.spec_for(change)
                    self._specs[change.source_table] = spec
        return spec

    def prepare(self, records: Sequence[Any], deadline: Deadline | None = None) -> Prepared:
        versions: list[tuple[TableSpec, RowVersion]] = []
        dead: list[DeadLetter] = []
        ignored: list[Change] = []
        changes: list[Change] = []
        unreadable: list[int] = []
        parsed: list[tuple[int, Change, TableSpec]] = []
        for index, record in enumerate(records):
            change: Change | None = None
            spec: TableSpec | None = None
            try:
                change = parse_record(record, index)
                changes.append(change)
                spec = self.spec_for(change)
            except RecordError as exc:
                dead.append(DeadLetter(index, record, exc.kind, str(exc), change, spec))
                continue
            except Exception as exc:  # a bug of ours: keep the record, do not stall the shard
                log.exception("unexpected error preparing record %d", index)
                dead.append(
                    DeadLetter(
                        index, record, "internal", f"{type(exc).__name__}: {exc}", change, spec
                    )
                )
                continue
            parsed.append((index, change, spec))

        hydrated = self._hydrate([(c, s) for _, c, s in parsed], deadline)
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
            try:
                version = spec.row_version(change, lazy=True)
            except RecordError as exc:
                dead.append(DeadLetter(index, records[index], exc.kind, str(exc), change, spec))
                continue
            except Exception as exc:
                log.exception("unexpected error preparing record %d", index)
                dead.append(
                    DeadLetter(
                        index,
                        records[index],
                        "internal",
                        f"{type(exc).__name__}: {exc}",
                        change,
                        spec,
                    )
                )
                continue
            if version is None:
                ignored.append(change)
            else:
                versions.append((spec, version))
        return Prepared(plan(versions), dead, ignored, changes, records, unreadable)

    def _hydrate(
        self, parsed: Sequence[tuple[Change, TableSpec]], deadline: Deadline | None
    ) -> dict[int, Any]:
        """Items read back from DynamoDB for image-less INSERT/MODIFY records of tables
        that enable hydration: index → item, None (gone) or the error that stopped it."""
        wanted = [
            c
            for c, spec in parsed
            if spec.options.hydrate and not c.is_remove and c.new_image is None
        ]
        if not wanted:
            return {}
        if self._hydrator is None:
            from cdc.hydrate import Hydrator  # boto3 only when a table asks for it

            self._hydrator = Hydrator()
        try:
            return dict(self._hydrator.items_for(wanted, deadline))
        except Exception as exc:  # throttled or unreachable: report, never dead-letter
            log.error("hydration failed, %d records will be redelivered: %s", len(wanted), exc)
            return {c.index: exc for c in wanted}

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
        result = BatchResult([Outcome.APPLIED] * len(records), records)
        result.tables = [p.spec.qualified_name for p in prepared.plans]
        now = datetime.now(UTC)

        def on_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if error is not None and classify(error) is ErrorKind.SYSTEMIC:
                self._forget_tables()  # maybe a table was dropped under us
            log.warning(
                "batch attempt %d failed, retrying in %.2fs: %s",
                state.attempt_number,
                state.upcoming_sleep,
                describe(error)[1] if error else "?",
            )

        try:
            for attempt in self.policy.retrying(deadline, on_retry):
                with attempt:
                    written = self._write(prepared, deadline, shard_id)
        except Exception as exc:
            # Out of time or attempts, or not retryable: nothing was committed.
            kind, message = describe(exc)
            result.outcomes = [Outcome.FAILED] * len(records)
            result.error = f"{classify(exc).value} error, batch not committed: {kind}: {message}"
            log.error("batch of %d records not committed: %s", len(records), result.error)
            result.seconds = time.monotonic() - started
            result._tally(prepared, None, now)
            return result

        for index in prepared.unreadable:
            result.outcomes[index] = Outcome.FAILED
            result.error = "items could not be read from DynamoDB for hydration"
        for index, why in written.reported.items():
            result.outcomes[index] = Outcome.FAILED
            result.error = why
        unwritten = {id(letter) for letter in written.unwritten}
        for letter in written.dead:
            failed = id(letter) in unwritten
            result.outcomes[letter.index] = Outcome.FAILED if failed else Outcome.DEAD_LETTERED
        if written.dead_letter_error is not None:
            result.error = f"dead letters not written: {written.dead_letter_error}"
        result.applied = written.applied
        result.stale = written.stale
        result.dead_lettered = sum(1 for o in result.outcomes if o is Outcome.DEAD_LETTERED)
        result.seconds = time.monotonic() - started
        result._tally(prepared, written, now)
        return result

    def _write(self, prepared: Prepared, deadline: Deadline, shard_id: str) -> Written:
        """One transaction. Optimistic first: no savepoints, which cost two round trips
        per table; if the database rejects a row's data, the transaction is rolled back
        and written again carefully, each table in a savepoint, bad rows bisected out."""
        try:
            return self._write_once(prepared, deadline, shard_id, careful=False)
        except _RowRejected:
            return self._write_once(prepared, deadline, shard_id, careful=True)

    def _write_once(
        self, prepared: Prepared, deadline: Deadline, shard_id: str, *, careful: bool
    ) -> Written:
        self._ensure_bookkeeping()
        dead = list(prepared.dead)
        plans: list[TablePlan] = []
        held: dict[int, str] = {}  # record index → why it is reported, not written
        for table_plan in prepared.plans:
            problem = self._ensure_table(table_plan.spec)
            if problem is None:
                plans.append(table_plan)
                continue
            for row in (*table_plan.rows, *table_plan.superseded):
                if problem.report:
                    held[row.change.index] = problem.message
                else:
                    dead.append(
                        prepared.dead_letter(row, table_plan.spec, problem.kind, problem.message)
                    )
            if problem.report:
                log.error("%s", problem.message)

        now = datetime.now(UTC)
        applied = stale = 0
        per_table: dict[tuple[str, str], tuple[int, int]] = {}
        progress: dict[str, StreamProgress] = {}
        with self.engine.begin() as conn, ExitStack() as pipelined:
            if not careful and self.engine.dialect.name == "postgresql":
                # BEGIN and the statement timeout go with the first table's rows; the
                # careful pass needs each savepoint's outcome at once.
                pipelined.enter_context(batch_pipeline(conn))
            self._limit_statement_time(conn, deadline)
            for table_plan in plans:
                spec = table_plan.spec
                settling = _Settling(table_plan)
                if careful:
                    rows = [row for chunk in settling.chunks(len(table_plan.rows)) for row in chunk]
                    changed, rejected = (
                        self._write_isolated(conn, spec, rows, now) if rows else (0, [])
                    )
                else:
                    chunks = settling.chunks(self.dialect.chunk_rows(len(table_plan.rows)))
                    changed, rejected = self._write_plainly(conn, spec, chunks, now)
                dead.extend(
                    prepared.dead_letter(row, spec, kind, message)
                    for row, kind, message in (*settling.unbuildable, *rejected)
                )
                applied += changed
                table_stale = settling.stale + settling.sent - len(rejected) - changed
                stale += table_stale
                stream = table_plan.rows[0].change.stream_arn if table_plan.rows else None
                if stream is not None:
                    per_table[(stream, spec.source_table)] = (changed, table_stale)
                    entry = progress.setdefault(stream, StreamProgress(stream, shard_id))
                    entry.applied += changed
                    entry.stale += table_stale
            pipelined.close()  # the dead letters and checkpoints read their results
            stale += len(prepared.ignored)
            for change in prepared.ignored:
                key = (change.stream_arn, change.source_table)
                done, old = per_table.get(key, (0, 0))
                per_table[key] = (done, old + 1)
            unwritten, dead_letter_error = (
                self._write_letters(conn, dead, now) if dead else ([], None)
            )
            # The checkpoint counts what this transaction handled: not the records
            # reported for redelivery (hydration failed, dead letter not stored).
            reported = set(prepared.unreadable) | {letter.index for letter in unwritten} | set(held)
            for change in prepared.changes:
                if change.index not in reported:
                    progress.setdefault(
                        change.stream_arn, StreamProgress(change.stream_arn, shard_id)
                    ).saw(change)
            for change in prepared.ignored:
                progress[change.stream_arn].stale += 1
            for letter in dead:
                if letter.change is not None and letter.index not in reported:
                    progress[letter.change.stream_arn].dead_lettered += 1
            if progress:
                write_checkpoints(conn, self.dialect, self.schema, list(progress.values()), now)
        return Written(applied, stale, dead, dead_letter_error, per_table, unwritten, held)

    def _write_letters(
        self, conn: Connection, letters: list[DeadLetter], now: datetime
    ) -> tuple[list[DeadLetter], str | None]:
        """Store dead letters in a savepoint, bisecting on failure so that only the
        letters that cannot be stored are reported (with the first reason)."""
        try:
            with conn.begin_nested():
                write_dead_letters(conn, self.dialect, self.schema, letters, now)
            return [], None
        except Exception as exc:
            if classify(exc) is ErrorKind.TRANSIENT:
                raise
            if len(letters) == 1:
                reason = "{}: {}".format(*describe(exc))
                log.error(
                    "could not write the dead letter of record %d: %s", letters[0].index, reason
                )
                return letters, reason
        middle = len(letters) // 2
        left, left_reason = self._write_letters(conn, letters[:middle], now)
        right, right_reason = self._write_letters(conn, letters[middle:], now)
        return left + right, left_reason or right_reason

    def _write_plainly(
        self, conn: Connection, spec: TableSpec, chunks: Iterator[list[RowVersion]], now: datetime
    ) -> tuple[int, list[tuple[RowVersion, str, str]]]:
        try:
            return self.dialect.write_chunks(conn, spec, chunks, now, self._tombstones), []
        except Exception as exc:
            if classify(exc) is ErrorKind.ROW:
                raise _RowRejected from exc  # the transaction is lost: redo it carefully
            raise

    def _write_isolated(
        self, conn: Connection, spec: TableSpec, rows: list[RowVersion], now: datetime
    ) -> tuple[int, list[tuple[RowVersion, str, str]]]:
        """Write `rows` in a savepoint; if the database rejects a row's data, bisect
        to find the bad rows, write every good one and dead-letter the bad ones."""
        try:
            with conn.begin_nested():
                return self.dialect.write_rows(conn, spec, rows, now, self._tombstones), []
        except Exception as exc:
            if classify(exc) is not ErrorKind.ROW:
                raise
            if len(rows) == 1:
                kind, message = describe(exc)
                return 0, [(rows[0], kind, f"the database rejected the row: {message}")]
        middle = len(rows) // 2
        left, bad_left = self._write_isolated(conn, spec, rows[:middle], now)
        right, bad_right = self._write_isolated(conn, spec, rows[middle:], now)
        return left + right, bad_left + bad_right

    def _limit_statement_time(self, conn: Connection, deadline: Deadline) -> None:
        """A statement must not outlive the invocation: cap it at the time left (lock
        waits included: a row someone else holds must not make Lambda time out)."""
        remaining = deadline.remaining()
        if remaining is None:
            return
        name = self.engine.dialect.name
        if name in ("mysql", "mariadb"):
            mariadb = bool(getattr(self.engine.dialect, "is_mariadb", False))
            set_session(conn, mysql_session_limits(remaining, mariadb))
            return
        if name != "postgresql":
            return
        budget_ms = max(100, int((remaining - 1.0) * 1000))
        # Driver SQL: a SQLAlchemy construct would cost more to build than to run.
        conn.exec_driver_sql("SELECT set_config('statement_timeout', %s, true)", (str(budget_ms),))

    def _upgrade_table(self, spec: TableSpec) -> None:
        """A replica table an earlier cdc made is brought up to date on first use (MySQL:
        exact key comparison, no JSON nesting limit; README "Databases")."""
        if not self.dialect.upgrades_tables:
            return
        with self.engine.begin() as conn:
            changed = self.dialect.upgrade_table(conn, spec.table)
        if changed:
            log.warning("upgraded replica table %s: %s", spec.qualified_name, "; ".join(changed))

    def _ensure_bookkeeping(self) -> None:
        if self._bookkeeping_ready:
            return
        from cdc.migrate import ensure_bookkeeping

        ensure_bookkeeping(self.engine, self.schema, self.settings)
        self._bookkeeping_ready = True

    def _ensure_table(self, spec: TableSpec) -> _TableProblem | None:
        """Create the replica table on first sight; check that an existing one is cdc's
        replica of this source table, has the key the records carry, and that its live
        columns can hold what the mapping promises (README, Replica tables). Reflected
        once per table and process: a table found fine is not looked at again until an
        error makes the replicator forget what it knows."""
        name = spec.qualified_name
        if name in self._ready:
            return None
        table = spec.table
        if is_reserved_table(table.name):
            return _TableProblem(
                "name_collision",
                f"source table {spec.source_table!r} maps to replica table {name!r}, a name "
                "cdc reserves for its bookkeeping tables (cdc_*, alembic_version); set "
                f"`table` for {spec.source_table!r} in the mapping",
            )
        with self.engine.begin() as conn:
            inspector = inspect(conn)
            # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the
            # database, which a least-privilege role does not have.
            if (
                table.schema is not None
                and self.dialect.supports_schemas
                and not inspector.has_schema(table.schema)
            ):
                self.dialect.ensure_schema(conn, table.schema)
                inspector = inspect(conn)
            exists = inspector.has_table(table.name, schema=table.schema)
            if not exists and not spec.options.auto_create:
                return _TableProblem(
                    "table_missing",
                    f"replica table {name!r} does not exist and auto_create is off for "
                    f"{spec.source_table!r}; run `cdc migrate`",
                )
            if not exists:
                table.comment = source_comment(spec.source_table)
            if not exists:
                try:
                    with conn.begin_nested():
                        table.create(conn, checkfirst=True)
                except Exception:
                    # Another invocation may have created it at the same moment.
                    if not inspect(conn).has_table(table.name, schema=table.schema):
                        raise
                inspector = inspect(conn)
            key = inspector.get_pk_constraint(table.name, schema=table.schema)
            actual = list(key.get("constrained_columns") or [])
            comment = _comment_of(inspector, table.name, table.schema)
            live = inspector.get_columns(table.name, schema=table.schema)
            problems = column_problems(table, live, conn.dialect)
        owner = _owner(comment)
        if owner is not None and owner != spec.source_table:
            return _TableProblem(
                "name_collision",
                f"source table {spec.source_table!r} maps to replica table {name!r}, which "
                f"already replicates {owner!r}; set `table` for one of them in the mapping",
            )
        foreign = _not_cdcs(comment, {c["name"] for c in live})
        if foreign is not None:
            return _TableProblem(
                "name_collision",
                f"source table {spec.source_table!r} maps to replica table {name!r}, but "
                f"the existing table {name!r} is not a cdc replica ({foreign}); set `table` "
                f"for {spec.source_table!r} in the mapping, or rename the existing table",
            )
        if sorted(actual) != sorted(spec.key_names):
            return _TableProblem(
                "table_mismatch",
                f"replica table {name!r} has primary key ({', '.join(actual)}) but records "
                f"of {spec.source_table!r} carry keys ({', '.join(spec.key_names)})",
            )
        if problems:
            config = self.settings.tables.get(spec.source_table)
            typed = config is not None and config.typed
            return _TableProblem(
                "schema_drift" if typed else "table_mismatch",
                f"replica table {name!r} cannot hold what the mapping promises for "
                f"{spec.source_table!r}: {'; '.join(problems)}. Nothing is written to it, "
                "never rounded or cut: "
                + (
                    'write a revision with `cdc revision -m "..."` and run `cdc migrate`'
                    if typed
                    else "the table does not have the columns of a document-mode replica"
                ),
                report=typed,
            )
        self._upgrade_table(spec)
        self._ready.add(name)
        return None

    def _forget_tables(self) -> None:
        self._ready.clear()
        self._bookkeeping_ready = False


SOURCE_COMMENT = "cdc replica of DynamoDB table "


def source_comment(source_table: str) -> str:
    """The table comment that records which source table a replica table belongs to,
    so two source names that land on one table are caught across processes too."""
    return SOURCE_COMMENT + source_table


def _comment_of(inspector: Any, name: str, schema: str | None) -> str | None:
    try:
        comment = inspector.get_table_comment(name, schema=schema).get("text")
    except NotImplementedError:  # SQLite keeps no comments
        return None
    return comment if isinstance(comment, str) and comment else None


def _owner(comment: str | None) -> str | None:
    """The source table a replica's comment names (see `source_comment`)."""
    if comment is not None and comment.startswith(SOURCE_COMMENT):
        return comment[len(SOURCE_COMMENT) :]
    return None


def _not_cdcs(comment: str | None, columns: set[str]) -> str | None:
    """Why an existing table is not a cdc replica, or None if it is one. cdc's replicas
    carry its `_cdc_` columns, and its source comment where the database keeps
    comments; a table without a comment but with cdc's columns is adopted (a replica
    made by a hand-written revision)."""
    missing = [c for c in BOOKKEEPING_COLUMNS if c not in columns]
    if missing:
        return f"it has no column {', '.join(missing)}"
    if comment is not None and _owner(comment) is None:
        return f"its comment is {comment!r}"
    return None
