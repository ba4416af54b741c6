"""PostgreSQL's fast path (the PostgreSQL backend's `write_chunks`): a chunk of row
versions as one `INSERT … SELECT … FROM unnest(…) ON CONFLICT … DO UPDATE … WHERE`
whose parameters are the chunk's columns as binary arrays, sent in pipeline mode, and
the batch pipeline that carries BEGIN and the statement timeout with the first table's
rows. Measured in BENCHMARKS.md: change no statement here without measuring."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    DateTime,
    Text,
    bindparam,
    case,
    cast,
    func,
    null,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from cdc.core.jsontext import dumps
from cdc.core.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion
from cdc.sql.backends.base import OnConflictBackend
from cdc.sql.replica import ReplicaSpec
from cdc.sql.types import JsonDocument

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_MODIFIERS = re.compile(r"\(.*?\)")
_PLACEHOLDER = re.compile(r"(?<!%)%\((c[0-9]+)\)s")
# psycopg's type names for the DDL names SQLAlchemy renders.
# conn.info key: the pipeline `batch_pipeline` opened, until a table's write syncs it.
BATCH_PIPELINE = "cdc_batch_pipeline"
_TYPE_NAMES = {
    "timestamp with time zone": "timestamptz",
    "double precision": "float8",
    "varchar": "text",
}


def _type_name(column_type: TypeEngine[Any]) -> str:
    rendered = column_type.compile(dialect=_DIALECT).lower()
    array = rendered.endswith("[]")
    base = _MODIFIERS.sub("", rendered.removesuffix("[]")).strip()
    base = _TYPE_NAMES.get(base, base)
    return base + ("[]" if array else "")


class Unnest:
    """`INSERT INTO target (…) SELECT … FROM unnest(%(c0)b, …) ORDER BY key ON CONFLICT
    … DO UPDATE … WHERE target._cdc_seq < excluded._cdc_seq` for one table and column
    set: built and compiled once, for the driver (pipeline mode is below SQLAlchemy).
    Each parameter is a column of the chunk, one binary array of the column's type."""

    def __init__(
        self,
        backend: OnConflictBackend,
        spec: ReplicaSpec,
        names: Sequence[str],
        value_names: Sequence[str],
        conn: Connection,
    ) -> None:
        table = spec.table
        driver: Any = conn.connection.driver_connection
        arrays: list[Any] = []
        self.array_oids: list[int] = []
        self.as_json: list[int] = []  # indexes of the array columns, sent as JSON text
        for index, name in enumerate(names):
            column_type = table.c[name].type
            if isinstance(column_type, JsonDocument | ARRAY):
                # Our exact JSON text, cast on the way in. An array column's values go
                # as JSON too: `unnest` would flatten an array of arrays (nor can one
                # hold arrays of different lengths).
                if isinstance(column_type, ARRAY):
                    self.as_json.append(index)
                column_type = Text()
            arrays.append(cast(bindparam(f"c{index}"), ARRAY(column_type)))
            info = driver.adapters.types.get(_type_name(column_type))
            if info is None or not info.array_oid:
                raise TypeError(f"no PostgreSQL array type for column {name!r}")
            self.array_oids.append(info.array_oid)
        source = func.unnest(*arrays).table_valued(*names).render_derived(name="cdc_rows")
        selected = [_from_text(source.c[n], table.c[n].type) for n in names]
        selected.append(bindparam("applied_at", type_=DateTime(timezone=True)))
        # Rows in key order: concurrent batches lock rows in one order, never a cycle.
        query = select(*selected).order_by(*(source.c[k] for k in spec.key_names))
        stmt = pg_insert(table).from_select([*names, APPLIED_AT], query)
        assigned = (*value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT)
        upsert = backend._on_conflict(
            stmt,
            table,
            assign=lambda new: {c: new[c] for c in assigned},
            guard=lambda new: table.c[SEQ] < new[SEQ],
        )
        compiled = upsert.compile(dialect=conn.dialect)
        arguments = [f"c{index}" for index in range(len(names))]
        # The driver gets the parameters as they are: none may need SQLAlchemy's
        # processing (the arrays are dumped by `_ArrayDumper`, a datetime is plain).
        assert set(compiled.params) == {*arguments, "applied_at"}, compiled.params
        # Binary format: %(c0)b. A placeholder is never preceded by a `%` (the compiler
        # doubles every literal one, as in a quoted identifier).
        self.sql = _PLACEHOLDER.sub(r"%(\1)b", str(compiled))
        self.arguments = arguments
        self.document = value_names[0] if len(value_names) == 1 else None

    def params(
        self, rows: Sequence[RowVersion], value_names: Sequence[str], applied_at: datetime
    ) -> dict[str, Any]:
        only = self.document
        if only is not None:  # document mode: the `item` column alone
            tuples = [
                (*row.key, row.values[only], row.sequence, row.deleted, row.event_time)  # type: ignore[index]
                for row in rows
            ]
        else:
            tuples = []
            for row in rows:
                values = row.values
                cells = [values.get(n) for n in value_names] if values is not None else []
                tuples.append((*row.key, *cells, row.sequence, row.deleted, row.event_time))
        columns = [list(column) for column in zip(*tuples, strict=True)]
        for index in self.as_json:
            columns[index] = [None if v is None else dumps(v) for v in columns[index]]
        params: dict[str, Any] = {
            argument: _Array(column, oid)
            for argument, oid, column in zip(self.arguments, self.array_oids, columns, strict=True)
        }
        params["applied_at"] = applied_at
        return params


def _from_text(column: Any, target: TypeEngine[Any]) -> Any:
    """A column of `unnest` as its target column takes it: JSON text cast to jsonb, a
    JSON array (exact numbers) made a PostgreSQL array of the column's element type."""
    if isinstance(target, JsonDocument):
        return cast(column, JSONB)
    if not isinstance(target, ARRAY):
        return column
    elements: Any = func.jsonb_array_elements_text(cast(column, JSONB))
    if not isinstance(target.item_type, Text):
        elements = cast(elements, target.item_type)
    correlated = select(elements).correlate(column.table).scalar_subquery()
    built = func.array(correlated)  # ARRAY((SELECT …)): its elements, in order
    return cast(case((column.is_(None), null()), else_=built), target)


def send(
    driver: Any,
    unnest: Unnest,
    rows: Sequence[RowVersion],
    value_names: Sequence[str],
    applied_at: datetime,
) -> Any:
    """Queue one chunk's upsert in the pipeline; its cursor holds the row count after
    the sync."""
    cursor = driver.cursor()
    try:
        cursor.execute(unnest.sql, unnest.params(rows, value_names, applied_at))
    except BaseException:
        cursor.close()
        raise
    return cursor


class _Array:
    """A column of a chunk, sent as a binary array of the type `oid` (whatever Python
    types its values have: an int or a Decimal to numeric, like COPY's set_types)."""

    __slots__ = ("oid", "values")

    def __init__(self, values: list[Any], oid: int) -> None:
        self.values = values
        self.oid = oid


@cache
def _array_dumper() -> type[Any]:
    """The psycopg dumper of `_Array`, made on first use: importing psycopg costs a
    Lambda's cold start ~0.1 s, and the engine imports it anyway when it first connects
    (README: Performance)."""
    import psycopg
    from psycopg.adapt import Dumper, PyFormat, Transformer

    class ArrayDumper(Dumper):
        format = psycopg.pq.Format.BINARY

        def __init__(self, cls: type, context: Any = None) -> None:
            super().__init__(cls, context)
            self._array: Any = None

        def get_key(self, obj: Any, format: PyFormat) -> Any:
            return (self.cls, obj.oid)

        def upgrade(self, obj: Any, format: PyFormat) -> Dumper:
            dumper = ArrayDumper(self.cls, self.connection)
            dumper.oid = obj.oid
            # The array dumper psycopg has for that oid (COPY's set_types uses the same).
            array = Transformer(self.connection).adapters.get_dumper_by_oid(
                obj.oid, psycopg.pq.Format.BINARY
            )
            dumper._array = array(type(None), self.connection)
            return dumper

        def dump(self, obj: Any) -> Any:
            return self._array.dump(obj.values)

    return ArrayDumper


def register_arrays(driver: Any) -> None:
    import psycopg
    from psycopg.adapt import PyFormat

    try:
        driver.adapters.get_dumper(_Array, PyFormat.BINARY)
    except psycopg.ProgrammingError:
        driver.adapters.register_dumper(_Array, _array_dumper())


@contextmanager
def batch_pipeline(conn: Connection) -> Iterator[None]:
    """Pipeline mode from the start of a batch's transaction: BEGIN and whatever runs
    before the first table's rows (the statement timeout) are queued, and reach the
    server with that table's rows, at its sync. A write that needs its results at once
    (SQLAlchemy's statements) ends it first (`_end_batch_pipeline`); the caller
    ends it, if no table did, before anything that reads a result."""
    driver: Any = conn.connection.driver_connection
    stack = ExitStack()
    stack.enter_context(driver.pipeline())
    conn.info[BATCH_PIPELINE] = stack
    try:
        yield
    except BaseException:
        pending = conn.info.pop(BATCH_PIPELINE, None)
        if pending is not None:  # leave pipeline mode; the transaction is lost anyway
            pending.__exit__(*sys.exc_info())
        raise
    end_batch_pipeline(conn)


def end_batch_pipeline(conn: Connection) -> None:
    pending = conn.info.pop(BATCH_PIPELINE, None)
    if pending is not None:
        pending.close()  # the sync: the queued statements' errors, if any


# JSON documents: jsonb, the bound text cast on the way in and read back as text.
