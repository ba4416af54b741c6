"""Drift columns in the database (`drift = "add_columns"`; the pure part and the why are
in cdc/core/drift_columns.py): finding them in a live table, proposing new ones from
what waits in `extra` (for `cdc revision`), and moving those values into them (for
`cdc migrate`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Column, Engine, Table, Text, and_, cast, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from cdc.core.convert import ColumnType, parse_type
from cdc.core.drift_columns import DriftColumn, parse_comment, plain_to_av
from cdc.core.errors import RecordError
from cdc.core.infer import observe, propose
from cdc.core.jsontext import dumps, loads
from cdc.core.mapping import BOOKKEEPING_COLUMNS, EXTRA, SEQ, TableConfig
from cdc.core.naming import fit, snake
from cdc.sql.backends.registry import backend_class, backends
from cdc.sql.replica import ReplicaSpec

log = logging.getLogger("cdc")

ColumnTypeOf = Callable[[ColumnType, bool], TypeEngine[Any]]

# SQLite keeps no column comments; cdc writes its drift comment into the column's DDL
# (`ADD COLUMN coupon TEXT /* cdc drift {...} */`), which sqlite_master keeps verbatim.
_SQLITE_COMMENT = re.compile(
    r'("(?:[^"]|"")+"|[A-Za-z_]\w*)\s[^,/]*?/\*\s*(cdc drift \{.*?\})\s*\*/'
)
DISCOVER_ROWS = 100_000  # rows of `extra` read to propose drift columns


def live_columns(conn: Connection, table: Table) -> list[DriftColumn]:
    """The drift columns of the live table, from their comments."""
    if not backend_class(conn.dialect.name).keeps_column_comments:
        query = text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name")
        ddl = conn.execute(query, {"name": table.name}).scalar()
        found = []
        for name, comment in _SQLITE_COMMENT.findall(ddl or ""):
            column = name[1:-1].replace('""', '"') if name.startswith('"') else name
            parsed = parse_comment(column, comment)
            if parsed is not None:
                found.append(parsed)
        return found
    reflected = inspect(conn).get_columns(table.name, schema=table.schema)
    return [
        parsed
        for c in reflected
        if (parsed := parse_comment(c["name"], c.get("comment"))) is not None
    ]


def sql_column(column: DriftColumn, column_type: ColumnTypeOf) -> Column[Any]:
    return Column(
        column.column, column_type(column.type, False), nullable=True, comment=column.comment()
    )


def adopt(spec: ReplicaSpec, found: Iterable[DriftColumn], column_type: ColumnTypeOf) -> None:
    """Make the drift columns found in the live table part of `spec`: its table gets the
    column, its values the attribute (cdc/core/mapping.py `_drift_values`)."""
    if spec.drift is None:
        return
    # A column the mapping declares (a drift column moved into the mapping) is not one.
    declared = set(spec.key_names) | (set(spec.value_names) - set(spec.drift.columns))
    new = spec.drift.learn([c for c in found if c.column not in declared])
    for column in new:
        if column.column not in spec.table.c:
            spec.table.append_column(sql_column(column, column_type))
        if column.column not in spec.value_names:
            spec.value_names = (*spec.value_names, column.column)
        log.info(
            "replica table %s: attribute %s now has the drift column %s (%s)",
            spec.qualified_name,
            column.attribute,
            column.column,
            column.type,
        )


def refresh(engine: Engine, spec: ReplicaSpec, column_type: ColumnTypeOf) -> None:
    """Learn the drift columns the live table has now (one catalog query)."""
    if spec.drift is None:
        return
    table = spec.table
    with engine.connect() as conn:
        if backend_class(conn.dialect.name).keeps_column_comments and not inspect(conn).has_table(
            table.name, schema=table.schema
        ):
            return
        found = live_columns(conn, table)
    adopt(spec, found, column_type)


def discover(
    conn: Connection, config: TableConfig, table: Table, max_identifier_bytes: int
) -> list[DriftColumn]:
    """New drift columns for the attributes that wait in `extra` of a live table, each
    of one type in every row that holds it (cdc/core/infer.py)."""
    live = {c["name"] for c in inspect(conn).get_columns(table.name, schema=table.schema)}
    if EXTRA not in live:
        return []
    taken = live | set(BOOKKEEPING_COLUMNS) | {EXTRA} | {c.name for c in table.columns}
    query = select(cast(table.c[EXTRA], Text)).where(table.c[EXTRA].is_not(None))
    texts = conn.execute(query.limit(DISCOVER_ROWS)).scalars()
    items = [v for v in (loads(t) for t in texts if t) if isinstance(v, dict)]
    _, seen = observe(items, plain=True)
    declared = {c.attribute.split(".")[0] for c in config.columns}
    found = []
    for name in sorted(seen):
        if name in declared:
            continue
        proposal = propose(seen[name], plain=True)
        column = fit(snake(name), max_identifier_bytes, name)
        if proposal.type is None or column in taken:
            continue
        taken.add(column)
        found.append(DriftColumn(name, column, parse_type(proposal.type)))
    return found


def fill(engine: Engine, spec: ReplicaSpec) -> int:
    """Move the values that wait in `extra` into the table's drift columns, row by row,
    each only if the row is still the version read (its `_cdc_seq`): a newer version
    written meanwhile is left as its writer made it. Returns the rows changed. Run by
    `cdc migrate`; safe to run again at any time."""
    if spec.drift is None or not spec.drift.by_attribute or EXTRA not in spec.table.c:
        return 0
    table = spec.table
    keys = [table.c[name] for name in spec.key_names]
    known = spec.drift.by_attribute
    changed = 0
    with engine.connect() as conn:
        rows = conn.execute(
            select(*keys, table.c[SEQ], cast(table.c[EXTRA], Text)).where(
                table.c[EXTRA].is_not(None)
            )
        ).all()
    for row in rows:
        *key, seq, extra_text = row
        extra = loads(extra_text) if extra_text else None
        if not isinstance(extra, dict) or not known.keys() & extra.keys():
            continue
        values: dict[str, Any] = {}
        for name in [n for n in extra if n in known]:
            column, convert = known[name]
            if extra[name] is None:
                continue
            try:
                value = convert(plain_to_av(extra[name]), f"extra.{name}")
            except RecordError:
                continue  # stays in `extra`
            values[column.column] = value
            del extra[name]
        if not values:
            continue
        values[EXTRA] = dumps(extra) if extra else None
        where = and_(*(k == v for k, v in zip(keys, key, strict=True)), table.c[SEQ] == seq)
        with engine.begin() as conn:
            changed += conn.execute(update(table).where(where).values(values)).rowcount
    return changed


def register_sqlite_comments() -> None:
    """alembic's ADD COLUMN on SQLite, with the column's comment kept in its DDL."""
    from alembic.ddl.base import AddColumn, add_column, alter_table
    from sqlalchemy.ext.compiler import compiles

    if getattr(register_sqlite_comments, "done", False):
        return

    def _add_column(element: AddColumn, compiler: Any, **kw: Any) -> str:
        table = alter_table(compiler, element.table_name, element.schema)
        ddl = f"{table} {add_column(compiler, element.column, **kw)}"
        comment = element.column.comment
        if comment and comment.startswith("cdc drift "):
            ddl += " /* " + comment.replace("*/", "*\\/") + " */"
        return ddl

    for backend in backends():
        if not backend.keeps_column_comments:
            compiles(AddColumn, backend.name)(_add_column)
    register_sqlite_comments.done = True  # type: ignore[attr-defined]
