"""Drift columns in the user's revisions (`cdc revision`; cdc/core/drift_columns.py says
why). alembic autogenerates `add_column` for each; cdc writes it as
`add_drift_column(table, column, attribute, type)` instead: readable, and idempotent
(a column already there is left alone), so the same drift revision may run on a
database where an earlier run, or another environment's revision, made the column.
Imports alembic: for the migrations only, never the replicator's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import renderers
from alembic.operations import ops
from sqlalchemy import inspect

from cdc.core.convert import parse_type
from cdc.core.drift_columns import COMMENT_PREFIX, DriftColumn, parse_comment

CALL = "add_drift_column"


class AddDriftColumnOp(ops.MigrateOperation):
    def __init__(self, table: str, schema: str | None, drift: DriftColumn) -> None:
        self.table = table
        self.schema = schema
        self.drift = drift


@renderers.dispatch_for(AddDriftColumnOp)
def _render(autogen_context: Any, op: AddDriftColumnOp) -> str:
    autogen_context.imports.add(f"from cdc.sql.drift_revisions import {CALL}")
    drift = op.drift
    return (
        f"{CALL}({op.table!r}, {drift.column!r}, attribute={drift.attribute!r}, "
        f"type={str(drift.type)!r}, schema={op.schema!r})"
    )


def drift_directives(context: Any, revision: Any, directives: list[Any]) -> None:
    """alembic's `process_revision_directives`: drift columns' `add_column` become
    `add_drift_column`, each on its own line (no batch block)."""
    if not directives:
        return
    script = directives[0]
    rewritten: list[Any] = []
    for op in script.upgrade_ops.ops:
        if not isinstance(op, ops.ModifyTableOps):
            rewritten.append(op)
            continue
        kept = []
        for sub in op.ops:
            drift = (
                parse_comment(sub.column.name, sub.column.comment)
                if isinstance(sub, ops.AddColumnOp)
                else None
            )
            if drift is None or not isinstance(sub, ops.AddColumnOp):
                kept.append(sub)
            else:
                rewritten.append(AddDriftColumnOp(sub.table_name, sub.schema, drift))
        op.ops = kept
        if kept:
            rewritten.append(op)
    script.upgrade_ops.ops = rewritten


def add_drift_column(
    table: str, column: str, *, attribute: str, type: str, schema: str | None = None
) -> None:
    """Add a nullable drift column unless the table has it already."""
    from alembic import op

    from cdc.sql.backends.registry import backend_for
    from cdc.sql.drift_columns import register_sqlite_comments, sql_column

    register_sqlite_comments()
    context = op.get_context()
    drift = DriftColumn(attribute, column, parse_type(type))
    dialect = backend_for(context.dialect.name)
    if not context.as_sql:
        inspector = inspect(op.get_bind())
        if not inspector.has_table(table, schema=schema):
            return  # a new environment: the table is made later, as the mapping is
        if any(c["name"] == column for c in inspector.get_columns(table, schema=schema)):
            return
    op.add_column(table, sql_column(drift, dialect.column_type), schema=schema)


def drift_only(path: str | Path) -> bool:
    """Whether a revision file only adds drift columns."""
    text = Path(path).read_text(encoding="utf-8")
    if "def upgrade()" not in text:
        return False
    body = text.split("def upgrade()", 1)[1].split("\ndef ", 1)[0].splitlines()[1:]
    lines = [line.strip() for line in body if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and all(line.startswith(f"{CALL}(") for line in lines)


__all__ = ["COMMENT_PREFIX", "add_drift_column", "drift_directives", "drift_only"]
