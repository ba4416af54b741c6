"""The dialect interface and the parts PostgreSQL and SQLite share (ON CONFLICT)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import Column, ColumnElement, LargeBinary, Table, Text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion, TableSpec
from cdc.types import KeyNumber


# SQLAlchemy only reports rowcount for UPDATE/DELETE unless asked; we count the rows
# an upsert changed (the others were stale).
_ROWCOUNT = {"preserve_rowcount": True}


class Incoming(Protocol):
    """The values of the row being inserted, as the database names them in an upsert
    (`excluded.x` on Postgres and SQLite, `VALUES(x)` / an alias on MySQL)."""

    def __getitem__(self, name: str) -> ColumnElement[Any]: ...


Assign = Callable[[Incoming], Mapping[str, ColumnElement[Any]]]
Guard = Callable[[Incoming], ColumnElement[bool]]


class Dialect:
    names: ClassVar[tuple[str, ...]] = ()
    max_identifier_bytes: ClassVar[int] = 63
    supports_schemas: ClassVar[bool] = True

    def key_type(self, tag: str) -> TypeEngine[Any]:
        """Column type of a key attribute with DynamoDB type `tag` (S, N or B)."""
        return {"S": Text(), "N": KeyNumber(), "B": LargeBinary()}[tag]

    # --- statements -----------------------------------------------------------------

    def insert(self, table: Table) -> Insert:
        raise NotImplementedError

    def merge(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        assign: Assign,
        guard: Guard | None = None,
        conflict: Sequence[str] | None = None,
    ) -> Insert:
        """INSERT `rows`; on a conflict on `conflict` (default: the primary key), update
        as `assign` says, if `guard` holds.

        `assign` and `guard` see the stored row through `table.c` and the incoming one
        through their argument.
        """
        raise NotImplementedError

    def write_rows(
        self,
        conn: Connection,
        spec: TableSpec,
        rows: Sequence[RowVersion],
        applied_at: datetime,
    ) -> int:
        """Guarded upsert of row versions (soft deletes included); returns how many rows
        it changed (the rest were stale)."""
        count = 0
        with_values = [r for r in rows if r.values is not None]
        without_values = [r for r in rows if r.values is None]
        if with_values:
            count += self._upsert(conn, spec, with_values, spec.value_names, applied_at)
        if without_values:
            count += self._upsert(conn, spec, without_values, (), applied_at)
        return count

    def _upsert(
        self,
        conn: Connection,
        spec: TableSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        """One guarded upsert statement setting `value_names` and the bookkeeping."""
        dicts = [row_dict(spec, r, value_names, applied_at) for r in rows]
        assigned = (*value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT)
        step = self.rows_per_statement(spec.table)
        count = 0
        for start in range(0, len(dicts), step):
            stmt = self.merge(
                spec.table,
                dicts[start : start + step],
                assign=lambda new: {c: new[c] for c in assigned},
                guard=lambda new: spec.table.c[SEQ] < new[SEQ],
            )
            count += conn.execute(stmt, execution_options=_ROWCOUNT).rowcount
        return count

    def rows_per_statement(self, table: Table) -> int:
        """How many rows one multi-row VALUES statement may carry (bind limits)."""
        return max(1, 30000 // max(1, len(table.columns)))

    def ensure_schema(self, conn: Connection, schema: str) -> None:
        """Create `schema` if the database has schemas and it is missing."""


def row_dict(
    spec: TableSpec, row: RowVersion, value_names: Sequence[str], applied_at: datetime
) -> dict[str, Any]:
    values: dict[str, Any] = dict(zip(spec.key_names, row.key, strict=True))
    if value_names:
        assert row.values is not None
        for name in value_names:
            values[name] = row.values.get(name)
    values[SEQ] = row.sequence
    values[DELETED] = row.deleted
    values[EVENT_TIME] = row.event_time
    values[APPLIED_AT] = applied_at
    return values


class OnConflictDialect(Dialect):
    """Postgres and SQLite share `INSERT … ON CONFLICT (key) DO UPDATE … WHERE`."""

    def merge(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        assign: Assign,
        guard: Guard | None = None,
        conflict: Sequence[str] | None = None,
    ) -> Insert:
        stmt = self.insert(table).values(list(rows))
        return self._on_conflict(stmt, table, assign, guard, conflict)

    def _on_conflict(
        self,
        stmt: Any,
        table: Table,
        assign: Assign,
        guard: Guard | None,
        conflict: Sequence[str] | None = None,
    ) -> Insert:
        excluded = stmt.excluded
        keys: list[Column[Any]] = (
            list(table.primary_key.columns) if conflict is None else [table.c[c] for c in conflict]
        )
        return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
            index_elements=keys,
            set_=dict(assign(excluded)),
            where=guard(excluded) if guard is not None else None,
        )
