"""An upsert compiled once per database, bound without SQLAlchemy's per-row work
(cdc/sql/backends/base.py's executemany path)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect as SQLDialect
from sqlalchemy.sql.dml import Insert

from cdc.core.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion
from cdc.sql.replica import ReplicaSpec

# Table.info key: those statements compiled, by assigned columns and database.
_BOUND = "cdc_bound_upserts"


class BoundUpsert:
    """An upsert compiled for one database: its SQL text, and the columns it binds in
    the driver's order, each with the bind processor SQLAlchemy itself applies to a value
    of that column's type (`TypeEngine.dialect_impl(dialect).bind_processor(dialect)`),
    so the driver gets exactly what `conn.execute(stmt, rows)` would give it, without
    SQLAlchemy's per-row parameter handling (about half of SQLite's write of a batch
    once the statement is compiled once)."""

    def __init__(self, stmt: Insert, dialect: SQLDialect, columns: set[str]) -> None:
        # As `conn.execute(stmt, rows)` compiles it: for the columns the rows have.
        compiled = stmt.compile(dialect=dialect, column_keys=sorted(columns))
        self.sql = compiled.string
        names = list(compiled.positiontup or ()) if dialect.positional else list(compiled.binds)
        self.names = tuple(names)
        self.keys: tuple[str, ...] | None = (
            None
            if dialect.positional
            else tuple(compiled.escaped_bind_names.get(n, n) for n in names)
        )
        self.processors = tuple(
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
        )

    def parameters(
        self,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> list[Any]:
        columns = list(zip(self.names, self.processors, strict=True))
        # The same for every row: processed once.
        fixed = dict(columns)[APPLIED_AT]
        applied = fixed(applied_at) if fixed is not None else applied_at
        out: list[Any] = []
        for row in rows:
            values = row_dict(spec, row, value_names, applied_at)
            values[APPLIED_AT] = applied
            bound = [
                process(values[name])
                if process is not None and name != APPLIED_AT
                else values[name]
                for name, process in columns
            ]
            out.append(
                tuple(bound) if self.keys is None else dict(zip(self.keys, bound, strict=True))
            )
        return out


def bound_upsert(
    table: Table, names: tuple[str, ...], stmt: Insert, dialect: SQLDialect, columns: set[str]
) -> BoundUpsert | None:
    """`stmt` (the upsert of `names`) compiled for `dialect`, kept with the table; None
    when what it binds is not exactly `columns`, one each (SQLAlchemy binds the rows)."""
    cache: dict[tuple[Any, ...], BoundUpsert | None] = table.info.setdefault(_BOUND, {})
    key = (names, dialect)
    if key not in cache:
        bound = BoundUpsert(stmt, dialect, columns)
        cache[key] = bound if sorted(bound.names) == sorted(columns) else None
    return cache[key]


def row_dict(
    spec: ReplicaSpec, row: RowVersion, value_names: Sequence[str], applied_at: datetime
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
