"""The cdc_export_files table: the data files of an export load, claimed by workers with
a lease (docs/architecture.md, "Export loads").

A worker claims a file by setting `worker` and `lease_until` on a row that is not done,
not failed and not leased (or whose lease has expired: its worker died or stalled).
Where the database can, the candidate row is read `FOR UPDATE SKIP LOCKED`, so workers
racing for files take different ones instead of queueing on one; the UPDATE repeats the
lease condition and its row count decides, so the claim is correct without SKIP LOCKED
too (SQLite, MySQL 5.7, MariaDB before 10.6), only slower under contention. Every write
of progress names the worker: one whose lease was taken over writes nothing more.

Leases compare the workers' clocks (UTC); they are assumed to agree within a small part
of the lease (NTP does much better).
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from cdc.sql.bookkeeping import tables


@dataclass(frozen=True)
class FileEntry:
    """A data file to register: its number in the manifest, key and item count."""

    number: int
    key: str
    item_count: int


@dataclass
class FileClaim:
    file_no: int
    data_key: str
    item_count: int
    lines_done: int
    items_done: int


@dataclass
class FileStatus:
    done: bool
    error: str | None
    lines_done: int


@dataclass
class LoadState:
    files: int
    done: int
    items_done: int
    items: int
    errors: list[str]
    leased: int  # files other workers hold now

    @property
    def complete(self) -> bool:
        return self.files > 0 and self.done == self.files


def worker_id() -> str:
    """Unique across threads, processes and machines; readable in the table."""
    host = socket.gethostname()[:100]
    import os

    return f"{host}:{os.getpid()}:{threading.get_ident() % 100000}:{uuid.uuid4().hex[:8]}"


class ExportFileStore:
    def __init__(self, engine: Engine, schema: str | None, export_arn: str) -> None:
        self.engine = engine
        self.export_arn = export_arn
        self.table = tables(schema)["cdc_export_files"]
        self.skip_locked = _skip_locked(engine)

    def register(self, source_table: str, files: Sequence[FileEntry]) -> bool:
        """The export's files, once: whoever comes second finds them there (one INSERT
        in one transaction: all of them or none). True if this call made them."""
        t = self.table
        with self.engine.connect() as conn:
            found = conn.execute(
                select(func.count()).select_from(t).where(t.c.export_arn == self.export_arn)
            ).scalar_one()
        if found:
            return False
        now = datetime.now(UTC)
        rows = [
            {
                "export_arn": self.export_arn,
                "file_no": f.number,
                "source_table": source_table,
                "data_key": f.key,
                "item_count": f.item_count,
                "lines_done": 0,
                "items_done": 0,
                "done": False,
                "error": None,
                "worker": None,
                "lease_until": None,
                "updated_at": now,
            }
            for f in files
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t), rows)
        except IntegrityError:
            return False  # another worker registered them meanwhile
        return True

    def clear_errors(self) -> None:
        """A new run retries the files an earlier one stopped on."""
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.export_arn == self.export_arn, t.c.error.is_not(None))
                .values(error=None, worker=None, lease_until=None)
            )

    def claim(self, worker: str, lease: float, file_no: int | None = None) -> FileClaim | None:
        """A file for `worker` (that one, with `file_no`), leased for `lease` seconds."""
        t = self.table
        for _ in range(20):  # lost races: another worker took the row between read and write
            now = datetime.now(UTC)
            free = and_(
                t.c.export_arn == self.export_arn,
                t.c.done.is_(False),
                t.c.error.is_(None),
                or_(t.c.lease_until.is_(None), t.c.lease_until < now, t.c.worker == worker),
            )
            query = select(
                t.c.file_no, t.c.data_key, t.c.item_count, t.c.lines_done, t.c.items_done
            ).where(free)
            if file_no is not None:
                query = query.where(t.c.file_no == file_no)
            query = query.order_by(t.c.file_no).limit(1)
            if self.skip_locked:
                query = query.with_for_update(skip_locked=True)
            with self.engine.begin() as conn:
                row = conn.execute(query).first()
                if row is None:
                    return None
                taken = conn.execute(
                    update(t)
                    .where(free, t.c.file_no == row.file_no)
                    .values(
                        worker=worker,
                        lease_until=now + timedelta(seconds=lease),
                        updated_at=now,
                    )
                ).rowcount
            if taken == 1:
                return FileClaim(
                    row.file_no, row.data_key, row.item_count, row.lines_done, row.items_done
                )
        return None

    def advance(self, claim: FileClaim, worker: str, lease: float, *, done: bool = False) -> bool:
        """Save a committed position (and renew the lease); False if the file is no
        longer this worker's (its lease expired and another took it over)."""
        t = self.table
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "lines_done": claim.lines_done,
            "items_done": claim.items_done,
            "done": done,
            "lease_until": None if done else now + timedelta(seconds=lease),
            "updated_at": now,
        }
        if done:
            values["worker"] = None
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t)
                .where(
                    t.c.export_arn == self.export_arn,
                    t.c.file_no == claim.file_no,
                    t.c.worker == worker,
                )
                .values(**values)
            )
        return bool(result.rowcount == 1)

    def release(self, file_no: int, worker: str, error: str | None = None) -> None:
        """Give a file back (a stop, or an error that stops the load)."""
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(
                    t.c.export_arn == self.export_arn,
                    t.c.file_no == file_no,
                    t.c.worker == worker,
                )
                .values(worker=None, lease_until=None, error=error, updated_at=datetime.now(UTC))
            )

    def file(self, file_no: int) -> FileStatus | None:
        t = self.table
        query = select(t.c.done, t.c.error, t.c.lines_done).where(
            t.c.export_arn == self.export_arn, t.c.file_no == file_no
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else FileStatus(bool(row.done), row.error, row.lines_done)

    def state(self) -> LoadState:
        t = self.table
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    t.c.file_no,
                    t.c.done,
                    t.c.items_done,
                    t.c.item_count,
                    t.c.error,
                    t.c.lease_until,
                ).where(t.c.export_arn == self.export_arn)
            ).all()
        return LoadState(
            files=len(rows),
            done=sum(1 for r in rows if r.done),
            items_done=sum(r.items_done for r in rows),
            items=sum(r.item_count for r in rows),
            errors=[r.error for r in sorted(rows, key=lambda r: r.file_no) if r.error],
            leased=sum(
                1 for r in rows if not r.done and r.lease_until is not None and r.lease_until >= now
            ),
        )


def _skip_locked(engine: Engine) -> bool:
    """Whether the server reads `FOR UPDATE SKIP LOCKED` (its backend says)."""
    from cdc.sql.backends.registry import backend_class

    return backend_class(engine.dialect.name).skips_locked_rows(engine)
