"""An upsert compiled once per database, bound without SQLAlchemy's per-row work
(cdc/sql/backends/base.py's executemany path)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        """Each row's parameters in the statement's order (a tuple, or a dict for a
        driver of named parameters), each cell bound by its column's processor. No dict
        per row on the way: cells are taken by position. The batch's one applied_at, and
        each distinct value of the columns whose few values repeat through a batch, go
        through their processor once."""
        source = (*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME)
        applied = applied_at
        plan: list[tuple[int, Callable[[Any], Any] | None, dict[Any, Any] | None]] = []
        for name, process in zip(self.names, self.processors, strict=True):
            if name == APPLIED_AT:
                applied = process(applied_at) if process is not None else applied_at
                plan.append((-1, None, None))
            else:
                plan.append((source.index(name), process, {} if name in _REPEATING else None))
        out: list[Any] = []
        for row in rows:
            if value_names:
                values = row.values
                assert values is not None
                cells = (
                    *row.key,
                    *[values.get(n) for n in value_names],
                    row.sequence,
                    row.deleted,
                    row.event_time,
                )
            else:
                cells = (*row.key, row.sequence, row.deleted, row.event_time)
            bound = []
            for index, processor, memo in plan:
                if index < 0:
                    bound.append(applied)
                    continue
                value = cells[index]
                if processor is not None:
                    if memo is None:
                        value = processor(value)
                    else:
                        done = memo.get(value, _MISSING)
                        if done is _MISSING:
                            done = memo[value] = processor(value)
                        value = done
                bound.append(value)
            out.append(
                tuple(bound) if self.keys is None else dict(zip(self.keys, bound, strict=True))
            )
        return out


# Columns whose few distinct values repeat through a batch (its records share a few
# seconds of event time): each distinct value goes through its bind processor once.
_REPEATING = frozenset({DELETED, EVENT_TIME})
_MISSING = object()


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
