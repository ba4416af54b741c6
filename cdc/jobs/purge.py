"""`cdc purge`'s work, without the terminal: remove the tombstones of hard deletes and,
if asked, the soft-deleted rows of every replica table, applied before a cutoff (they
only guard against older records, which the stream no longer holds). One transaction;
the counts are reported through callbacks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, MetaData, Table, delete, func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from cdc.core.mapping import APPLIED_AT, DELETED, SEQ
from cdc.sql.bookkeeping import tables


def purge(
    engine: Engine,
    schema: str | None,
    cutoff: datetime,
    *,
    soft_deleted: bool,
    dry_run: bool,
    on_tombstones: Callable[[int], None],
    on_table: Callable[[str, int], None],
) -> None:
    """Delete (or, `dry_run`, count) the tombstones older than `cutoff`, then, with
    `soft_deleted`, each replica table's soft-deleted rows applied before it."""
    tombstones = tables(schema)["cdc_tombstones"]
    with engine.begin() as conn:
        on_tombstones(_purge(conn, tombstones, tombstones.c.deleted_at < cutoff, dry_run))
        if not soft_deleted:
            return
        # Every replica table carries the cdc bookkeeping columns: find them by that.
        inspector = inspect(conn)
        metadata = MetaData()
        for name in sorted(inspector.get_table_names(schema=schema)):
            columns = {c["name"] for c in inspector.get_columns(name, schema=schema)}
            if not {SEQ, DELETED, APPLIED_AT} <= columns:
                continue
            table = Table(name, metadata, autoload_with=conn, schema=schema)
            condition = (table.c[DELETED].is_(True)) & (table.c[APPLIED_AT] < cutoff)
            on_table(table.fullname, _purge(conn, table, condition, dry_run))


def _purge(conn: Connection, table: Table, condition: ColumnElement[bool], dry_run: bool) -> int:
    if dry_run:
        count: int = conn.execute(
            select(func.count()).select_from(table).where(condition)
        ).scalar_one()
        return count
    return int(conn.execute(delete(table).where(condition)).rowcount)
