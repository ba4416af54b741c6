"""PostgreSQL: the first-class target.

Row versions go to the server as one array per column and come out of `unnest()` in a
single `INSERT … SELECT … ON CONFLICT … DO UPDATE … WHERE` per table: one round trip
and one plan whatever the batch size, and no bind-parameter limit to chunk around.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, JSONB, NUMERIC, TIMESTAMP
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.convert import ColumnType
from cdc.dialects.base import _ROWCOUNT, OnConflictDialect
from cdc.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion, TableSpec
from cdc.types import ExactNumber, JsonDocument, SequenceNumber, UtcDateTime


class PostgresDialect(OnConflictDialect):
    names = ("postgresql",)
    max_identifier_bytes = 63

    def insert(self, table: Table) -> Insert:
        return pg_insert(table)

    def ensure_schema(self, conn: Connection, schema: str) -> None:
        conn.execute(CreateSchema(schema, if_not_exists=True))

    def column_type(self, ctype: ColumnType, key: bool) -> TypeEngine[Any]:
        if ctype.kind == "text[]":
            return ARRAY(Text())
        if ctype.kind == "numeric[]":
            return ARRAY(NUMERIC())
        if ctype.kind == "double":
            return DOUBLE_PRECISION()
        return super().column_type(ctype, key)

    def _upsert(
        self,
        conn: Connection,
        spec: TableSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        table = spec.table
        if any(isinstance(table.c[name].type, ARRAY) for name in value_names):
            # unnest() flattens arrays of arrays: array columns take the VALUES path.
            return super()._upsert(conn, spec, rows, value_names, applied_at)
        names = [*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME]
        columns: list[list[Any]] = [[] for _ in names]
        n_keys = len(spec.key_names)
        for row in rows:
            for i, value in enumerate(row.key):
                columns[i].append(value)
            if value_names:
                values = row.values
                assert values is not None
                for j, name in enumerate(value_names, start=n_keys):
                    columns[j].append(values.get(name))
            columns[-3].append(row.sequence)
            columns[-2].append(row.deleted)
            columns[-1].append(row.event_time)

        binds = []
        casts: list[TypeEngine[Any] | None] = []
        for i, name in enumerate(names):
            element, cast_to = _array_element(table.c[name].type)
            binds.append(bindparam(f"c{i}", columns[i], type_=ARRAY(element)))
            casts.append(cast_to)
        source = (
            func.unnest(*binds).table_valued(*(f"c{i}" for i in range(len(names)))).render_derived()
        )
        selected = [
            source.c[f"c{i}"] if cast_to is None else cast(source.c[f"c{i}"], cast_to)
            for i, cast_to in enumerate(casts)
        ]
        selected.append(literal(applied_at, DateTime(timezone=True)))
        stmt = pg_insert(table).from_select([*names, APPLIED_AT], select(*selected))
        assigned = (*value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT)
        upsert = self._on_conflict(
            stmt,
            table,
            assign=lambda new: {c: new[c] for c in assigned},
            guard=lambda new: table.c[SEQ] < new[SEQ],
        )
        return conn.execute(upsert, execution_options=_ROWCOUNT).rowcount


def _array_element(column_type: TypeEngine[Any]) -> tuple[TypeEngine[Any], TypeEngine[Any] | None]:
    """(array element type to bind, type to cast each element to, if any)."""
    if isinstance(column_type, JsonDocument):
        return Text(), JSONB()  # bound as our own exact JSON text, cast server-side
    if isinstance(column_type, SequenceNumber):
        return NUMERIC(40, 0), None
    if isinstance(column_type, ExactNumber):
        return NUMERIC(column_type.precision, column_type.scale), None
    if isinstance(column_type, Boolean):
        return Boolean(), None
    if isinstance(column_type, UtcDateTime):
        return TIMESTAMP(timezone=True), None
    return column_type, None
