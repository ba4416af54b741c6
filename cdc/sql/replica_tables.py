"""Replica tables in the database: created on first sight, checked to be cdc's replica
of their source table (its comment), with the key the records carry and columns that
can hold what the mapping promises; brought up to date on first use (MySQL). And before
a batch's first write, the bookkeeping tables (migrated on a new database)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table, inspect
from sqlalchemy.engine import Connection

from cdc.config import Settings
from cdc.core.dead_letters import DeadLetter
from cdc.core.mapping import BOOKKEEPING_COLUMNS, is_reserved_table
from cdc.core.outcomes import Prepared
from cdc.core.plan import TablePlan
from cdc.sql.backends.base import Backend
from cdc.sql.drift import column_problems
from cdc.sql.drift_columns import refresh
from cdc.sql.replica import ReplicaSpec

log = logging.getLogger("cdc")


@dataclass(frozen=True)
class TableProblem:
    """Why a table's records cannot be written: dead-lettered (a problem of those
    records' source: a name collision, a key that differs), or, `report`, reported for
    redelivery (a configuration problem a person fixes: the database differs from the
    mapping)."""

    kind: str
    message: str
    report: bool = False


class ReplicaTables:
    """What one process knows of the tables of one database: the replica tables found
    fine and whether the bookkeeping tables are there, not looked at again until
    `forget`."""

    def __init__(self, engine: Engine, backend: Backend, settings: Settings) -> None:
        self.engine = engine
        self.backend = backend
        self.settings = settings
        self._ready: set[str] = set()
        self._bookkeeping_ready = False

    def admit(self, prepared: Prepared) -> tuple[list[TablePlan], list[DeadLetter], dict[int, str]]:
        """Ready the database for a batch: the bookkeeping tables, then each table of
        its plans (`ensure`). Returns the plans to write, the batch's dead letters so
        far (with the records of tables that cannot take them), and the records held
        back for redelivery, each with why (a table the database has differently from
        the mapping: a person fixes it, and the records come again)."""
        self.ensure_bookkeeping()
        plans: list[TablePlan] = []
        dead = list(prepared.dead)
        held: dict[int, str] = {}
        for table_plan in prepared.plans:
            problem = self.ensure(table_plan.spec)
            if problem is None:
                plans.append(table_plan)
                continue
            for row in (*table_plan.rows, *table_plan.superseded):
                if problem.report:
                    held[row.change.index] = problem.message
                else:
                    dead.append(
                        prepared.dead_letter(row, table_plan.spec, problem.kind, problem.message)
                    )
            if problem.report:
                log.error("%s", problem.message)
        return plans, dead, held

    def ensure_bookkeeping(self) -> None:
        if self._bookkeeping_ready:
            return
        from cdc.sql.migrations import ensure_bookkeeping

        ensure_bookkeeping(self.engine, self.settings.schema, self.settings)
        self._bookkeeping_ready = True

    def ensure(self, spec: ReplicaSpec) -> TableProblem | None:
        """Create the replica table on first sight; check that an existing one is cdc's
        replica of this source table, has the key the records carry, and that its live
        columns can hold what the mapping promises (README, Replica tables). Reflected
        once per table and process: a table found fine is not looked at again until an
        error makes the replicator forget what it knows."""
        name = spec.qualified_name
        if name in self._ready:
            if spec.drift is not None and spec.drift.due():  # columns `cdc migrate` made since
                refresh(self.engine, spec, self.backend.column_type)
            return None
        table = spec.table
        if is_reserved_table(table.name):
            return TableProblem(
                "name_collision",
                f"source table {spec.source_table!r} maps to replica table {name!r}, a name "
                "cdc reserves for its bookkeeping tables (cdc_*, alembic_version); set "
                f"`table` for {spec.source_table!r} in the mapping",
            )
        with self.engine.begin() as conn:
            inspector = inspect(conn)
            # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the
            # database, which a least-privilege role does not have.
            if (
                table.schema is not None
                and self.backend.supports_schemas
                and not inspector.has_schema(table.schema)
            ):
                self.backend.ensure_schema(conn, table.schema)
                inspector = inspect(conn)
            exists = inspector.has_table(table.name, schema=table.schema)
            if not exists and not spec.options.auto_create:
                return TableProblem(
                    "table_missing",
                    f"replica table {name!r} does not exist and auto_create is off for "
                    f"{spec.source_table!r}; run `cdc migrate`",
                )
            if not exists:
                table.comment = source_comment(spec.source_table)
            if not exists:
                _create(conn, table)
                inspector = inspect(conn)
            key = inspector.get_pk_constraint(table.name, schema=table.schema)
            actual = list(key.get("constrained_columns") or [])
            comment = _comment_of(inspector, table.name, table.schema)
            live = inspector.get_columns(table.name, schema=table.schema)
            problems = column_problems(table, live, conn.dialect)
        owner = _owner(comment)
        if owner is not None and owner != spec.source_table:
            return TableProblem(
                "name_collision",
                f"source table {spec.source_table!r} maps to replica table {name!r}, which "
                f"already replicates {owner!r}; set `table` for one of them in the mapping",
            )
        foreign = _not_cdcs(comment, {c["name"] for c in live})
        if foreign is not None:
            return TableProblem(
                "name_collision",
                f"source table {spec.source_table!r} maps to replica table {name!r}, but "
                f"the existing table {name!r} is not a cdc replica ({foreign}); set `table` "
                f"for {spec.source_table!r} in the mapping, or rename the existing table",
            )
        if sorted(actual) != sorted(spec.key_names):
            return TableProblem(
                "table_mismatch",
                f"replica table {name!r} has primary key ({', '.join(actual)}) but records "
                f"of {spec.source_table!r} carry keys ({', '.join(spec.key_names)})",
            )
        if problems:
            config = self.settings.tables.get(spec.source_table)
            typed = config is not None and (config.typed or bool(config.entities))
            return TableProblem(
                "schema_drift" if typed else "table_mismatch",
                f"replica table {name!r} cannot hold what the mapping promises for "
                f"{spec.source_table!r}: {'; '.join(problems)}. Nothing is written to it, "
                "never rounded or cut: "
                + (
                    'write a revision with `cdc revision -m "..."` and run `cdc migrate`'
                    if typed
                    else "the table does not have the columns of a document-mode replica"
                ),
                report=typed,
            )
        missing = self._ensure_children(spec)
        if missing is not None:
            return missing
        self._upgrade(spec)
        refresh(self.engine, spec, self.backend.column_type)
        self._ready.add(name)
        return None

    def _ensure_children(self, spec: ReplicaSpec) -> TableProblem | None:
        """The child tables of an entity's list attributes, created with their parent."""
        for child in spec.children:
            table = child.table
            with self.engine.begin() as conn:
                if inspect(conn).has_table(table.name, schema=table.schema):
                    continue
                if not spec.options.auto_create:
                    return TableProblem(
                        "table_missing",
                        f"child table {child.qualified_name!r} does not exist and auto_create "
                        f"is off for {spec.source_table!r}; run `cdc migrate`",
                    )
                _create(conn, table)
        return None

    def _upgrade(self, spec: ReplicaSpec) -> None:
        """A replica table an earlier cdc made is brought up to date on first use (MySQL:
        exact key comparison, no JSON nesting limit; README "Databases")."""
        if not self.backend.upgrades_tables:
            return
        with self.engine.begin() as conn:
            changed = self.backend.upgrade_table(conn, spec.table)
        if changed:
            log.warning("upgraded replica table %s: %s", spec.qualified_name, "; ".join(changed))

    def forget(self) -> None:
        """After an error that may mean a table was dropped under us."""
        self._ready.clear()
        self._bookkeeping_ready = False


def _create(conn: Connection, table: Table) -> None:
    """Create `table`, unless another invocation created it at the same moment."""
    try:
        with conn.begin_nested():
            table.create(conn, checkfirst=True)
    except Exception:
        if not inspect(conn).has_table(table.name, schema=table.schema):
            raise


SOURCE_COMMENT = "cdc replica of DynamoDB table "


def source_comment(source_table: str) -> str:
    """The table comment that records which source table a replica table belongs to,
    so two source names that land on one table are caught across processes too."""
    return SOURCE_COMMENT + source_table


def _comment_of(inspector: Any, name: str, schema: str | None) -> str | None:
    try:
        comment = inspector.get_table_comment(name, schema=schema).get("text")
    except NotImplementedError:  # SQLite keeps no comments
        return None
    return comment if isinstance(comment, str) and comment else None


def _owner(comment: str | None) -> str | None:
    """The source table a replica's comment names (see `source_comment`)."""
    if comment is not None and comment.startswith(SOURCE_COMMENT):
        return comment[len(SOURCE_COMMENT) :]
    return None


def _not_cdcs(comment: str | None, columns: set[str]) -> str | None:
    """Why an existing table is not a cdc replica, or None if it is one. cdc's replicas
    carry its `_cdc_` columns, and its source comment where the database keeps
    comments; a table without a comment but with cdc's columns is adopted (a replica
    made by a hand-written revision)."""
    missing = [c for c in BOOKKEEPING_COLUMNS if c not in columns]
    if missing:
        return f"it has no column {', '.join(missing)}"
    if comment is not None and _owner(comment) is None:
        return f"its comment is {comment!r}"
    return None
