"""The writes of one batch's transaction: chunks of row versions built as they go
(`Settling`), the optimistic pass, the careful pass that isolates the rows the database
rejects (bisection in savepoints), the dead letters, and the statement time limit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Engine, Table
from sqlalchemy.engine import Connection

from cdc.core.dead_letters import DeadLetter
from cdc.core.deadline import Deadline
from cdc.core.mapping import RowVersion
from cdc.core.plan import TablePlan
from cdc.sql.backends.base import Backend
from cdc.sql.bookkeeping import write_dead_letters
from cdc.sql.errors import ErrorKind, classify, describe
from cdc.sql.replica import ReplicaSpec

log = logging.getLogger("cdc")


class RowRejected(Exception):
    """The database refused a row's data in the optimistic pass."""


class Settling:
    """One table's row versions through one write attempt, values built as they are
    written: each key's newest version, or if its values cannot be built (a bad image,
    a value its column cannot take) the next-newest valid one; then the versions that
    lost, which are only checked, so that a bad one is dead-lettered like any other.
    The result is the same as building every version first; the work just moves to
    where the Postgres path overlaps it with the server's."""

    def __init__(self, table_plan: TablePlan) -> None:
        self.plan = table_plan
        self.unbuildable: list[tuple[RowVersion, str, str]] = []  # → dead letters
        self.written: list[RowVersion] = []  # the version taken for each key

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
                    self.written.append(row)
            if chunk:
                yield chunk
        # Runs while the backend's last chunk is still on the server.
        for row in self.plan.superseded:
            if id(row) not in tried and not spec.materialize(row):
                assert row.error is not None
                self.unbuildable.append((row, *row.error))


class Writer:
    """Writes to one database: `backend`'s statements, the bookkeeping tables in
    `schema`, hard deletes' tombstones in `tombstones`."""

    def __init__(
        self, engine: Engine, backend: Backend, schema: str | None, tombstones: Table
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.schema = schema
        self.tombstones = tombstones

    def limit_statement_time(self, conn: Connection, deadline: Deadline) -> None:
        """A statement must not outlive the invocation: cap it at the time left (lock
        waits included: a row someone else holds must not make Lambda time out)."""
        remaining = deadline.remaining()
        if remaining is None:
            return
        self.backend.limit_statement_time(conn, remaining)

    def write_plainly(
        self, conn: Connection, spec: ReplicaSpec, chunks: Iterator[list[RowVersion]], now: datetime
    ) -> tuple[int, list[tuple[RowVersion, str, str]]]:
        try:
            return self.backend.write_chunks(conn, spec, chunks, now, self.tombstones), []
        except Exception as exc:
            if classify(exc) is ErrorKind.ROW:
                raise RowRejected from exc  # the transaction is lost: redo it carefully
            raise

    def write_isolated(
        self, conn: Connection, spec: ReplicaSpec, rows: list[RowVersion], now: datetime
    ) -> tuple[int, list[tuple[RowVersion, str, str]]]:
        """Write `rows` in a savepoint; if the database rejects a row's data, bisect
        to find the bad rows, write every good one and dead-letter the bad ones."""
        try:
            with conn.begin_nested():
                return self.backend.write_rows(conn, spec, rows, now, self.tombstones), []
        except Exception as exc:
            if classify(exc) is not ErrorKind.ROW:
                raise
            if len(rows) == 1:
                kind, message = describe(exc)
                return 0, [(rows[0], kind, f"the database rejected the row: {message}")]
        middle = len(rows) // 2
        left, bad_left = self.write_isolated(conn, spec, rows[:middle], now)
        right, bad_right = self.write_isolated(conn, spec, rows[middle:], now)
        return left + right, bad_left + bad_right

    def write_letters(
        self, conn: Connection, letters: list[DeadLetter], now: datetime
    ) -> tuple[list[DeadLetter], str | None]:
        """Store dead letters in a savepoint, bisecting on failure so that only the
        letters that cannot be stored are reported (with the first reason)."""
        try:
            with conn.begin_nested():
                write_dead_letters(conn, self.backend, self.schema, letters, now)
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
        left, left_reason = self.write_letters(conn, letters[:middle], now)
        right, right_reason = self.write_letters(conn, letters[middle:], now)
        return left + right, left_reason or right_reason
