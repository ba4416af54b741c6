"""The backend interface, and the parts PostgreSQL and SQLite share (ON CONFLICT).

A backend is everything cdc knows of one database, in one module (or package) of this
package: its capabilities and the hooks that are not about writing
(cdc/sql/backends/capabilities.py), and here the statements it builds and how it writes
row versions. Each hook's docstring says who overrides it. The registry
(cdc/sql/backends/registry.py) finds a backend by SQLAlchemy's name for the database;
docs/architecture.md §8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Date,
    Double,
    Integer,
    LargeBinary,
    SmallInteger,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    false,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.core.convert import ColumnType
from cdc.core.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion, key_hash
from cdc.core.plan import split_by_values
from cdc.sql.backends.bound import bound_upsert, row_dict
from cdc.sql.backends.capabilities import Capabilities
from cdc.sql.replica import ReplicaSpec
from cdc.sql.types import ExactNumber, JsonDocument, UtcDateTime

# SQLAlchemy only reports rowcount for UPDATE/DELETE unless asked; we count the rows
# an upsert changed (the others were stale).
_ROWCOUNT = {"preserve_rowcount": True}
# Bound values per IN list / multi-row VALUES statement: below every database's limit.
MAX_BINDS = 30000
# Table.info key: the table's upsert statements by assigned columns (_upsert_statement).
_UPSERTS = "cdc_upserts"


class Incoming(Protocol):
    """The values of the row being inserted, as the database names them in an upsert
    (`excluded.x` on Postgres and SQLite, an alias or `VALUES(x)` on MySQL)."""

    def __getitem__(self, name: str) -> ColumnElement[Any]: ...


Assign = Callable[[Incoming], Mapping[str, ColumnElement[Any]]]
Guard = Callable[[Incoming], ColumnElement[bool]]


class Backend(Capabilities):
    """One database. Subclasses set the capabilities and override the hooks they need;
    an instance holds no connection (the writer, cdc/sql/writer.py, executes what it
    builds) but may cache statements, so a replicator keeps one."""

    # --- types ------------------------------------------------------------------------

    def key_type(self, tag: str) -> TypeEngine[Any]:
        """Column type of a document-mode key attribute of DynamoDB type S, N or B."""
        types: dict[str, TypeEngine[Any]] = {
            "S": Text(),
            "N": ExactNumber(key=True),
            "B": LargeBinary(),
        }
        return types[tag]

    def column_type(self, ctype: ColumnType, key: bool) -> TypeEngine[Any]:
        """Column type of a typed mapping's column."""
        kind = ctype.kind
        simple: dict[str, TypeEngine[Any]] = {
            "text": Text(),
            "bigint": BigInteger(),
            "integer": Integer(),
            "smallint": SmallInteger(),
            "boolean": Boolean(),
            "double": Double(),
            "timestamptz": UtcDateTime(),
            "date": Date(),
            "jsonb": JsonDocument(),
            "bytea": LargeBinary(),
            "text[]": JsonDocument(),  # a JSON array where the database has no arrays
            "numeric[]": JsonDocument(),
        }
        if kind == "numeric":
            return ExactNumber(ctype.precision, ctype.scale, key=key)
        return simple[kind]

    def table_options(self) -> dict[str, str]:
        """Backend-specific `Table(...)` keyword arguments for replica tables."""
        return {}

    # --- statements -------------------------------------------------------------------

    def insert(self, table: Table) -> Insert:
        raise NotImplementedError

    def merge(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]] | None,
        assign: Assign,
        guard: Guard | None = None,
        conflict: Sequence[str] | None = None,
    ) -> Insert:
        """INSERT `rows`; on a conflict on `conflict` (default: the primary key), update
        as `assign` says, if `guard` holds.

        `assign` and `guard` see the stored row through `table.c` and the incoming one
        through their argument. With `rows=None` the statement has no inline values: execute
        it with the rows as parameters, and SQLAlchemy compiles it once (a statement with
        inline multi-row VALUES is compiled anew every time).
        """
        raise NotImplementedError

    def rows_per_statement(self, table: Table) -> int:
        """How many rows one multi-row VALUES statement may carry (bind limits)."""
        return max(1, MAX_BINDS // max(1, len(table.columns)))

    # --- writing row versions -----------------------------------------------------------

    def chunk_rows(self, rows: int) -> int:
        """How many of a table's `rows` versions `write_chunks` should get at a time;
        their values are built one chunk at a time. One chunk unless the backend can
        overlap building a chunk with writing the previous one (PostgreSQL)."""
        return rows

    def write_chunks(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        chunks: Iterator[list[RowVersion]],
        applied_at: datetime,
        tombstones: Table,
    ) -> int:
        """`write_rows` for row versions that arrive in chunks, in key order (each
        chunk's values are built when it is taken from `chunks`)."""
        rows = [row for chunk in chunks for row in chunk]
        return self.write_rows(conn, spec, rows, applied_at, tombstones) if rows else 0

    def write_rows(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        applied_at: datetime,
        tombstones: Table,
    ) -> int:
        """Apply row versions (one per key) under the sequence guard; returns how many
        rows changed (the rest were stale).

        Soft deletes are upserts like any other. With `deletes = "hard"` a delete removes
        the row and leaves a tombstone, and an upsert must be newer than the key's
        tombstone (and clears it), so a late older INSERT cannot bring the row back.
        """
        if spec.routed or spec.options.deletes == "hard":
            return self._write_with_tombstones(conn, spec, rows, applied_at, tombstones)
        return self._upsert_versions(conn, spec, rows, applied_at)

    def _write_with_tombstones(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        applied_at: datetime,
        tombstones: Table,
    ) -> int:
        """The writes of a table whose keys may be guarded by a tombstone rather than a
        row: one with `deletes = "hard"`, or any table of an entity source
        (cdc/core/entities.py), whose guard is the source key's, shared with the
        source's other tables. A version not newer than its key's tombstone is stale (a
        hard delete needs no look: its DELETE and tombstone are guarded themselves); a
        written one clears the tombstone. A "moved" version (the item is another entity
        now) deletes the row if there is one (soft or hard, per `deletes`) and leaves a
        tombstone. Returns the rows the records of this table changed: a move counts in
        the table the item moved to, a REMOVE without an image where it deleted a row."""
        hard = spec.options.deletes == "hard"
        name = spec.qualified_name
        hashes = {id(r): key_hash(r.key)[0] for r in rows if r.moved or not (hard and r.deleted)}
        buried = (
            self._tombstone_sequences(conn, tombstones, name, list(set(hashes.values())))
            if hashes
            else {}
        )
        live = [
            r for r in rows if id(r) not in hashes or buried.get(hashes[id(r)], -1) < r.sequence
        ]
        moved = [r for r in live if r.moved]
        own = [r for r in live if not r.moved]
        writes = [r for r in own if not (hard and r.deleted)]  # soft deletes are upserts
        changed = 0
        if writes:
            changed += self._upsert_versions(conn, spec, writes, applied_at)
            cleared = [hashes[id(r)] for r in writes if hashes[id(r)] in buried]
            self._clear_tombstones(conn, tombstones, name, cleared)
        if hard:
            deletes = [r for r in own if r.deleted]
            if deletes:
                changed += self._hard_delete(conn, spec, deletes, applied_at, tombstones)
            for group, counted in _by_counting(moved):
                deleted = self._hard_delete(
                    conn, spec, group, applied_at, tombstones, count_rows=True
                )
                changed += deleted if counted else 0
        else:
            for group, counted in _by_counting(moved):
                deleted = self._soft_delete_existing(conn, spec, group, applied_at)
                changed += deleted if counted else 0
            if moved:
                self._bury(conn, spec, moved, applied_at, tombstones)
        return changed

    def _soft_delete_existing(
        self, conn: Connection, spec: ReplicaSpec, rows: Sequence[RowVersion], applied_at: datetime
    ) -> int:
        """Mark the live rows of `rows`' keys deleted where they are older (a row deleted
        already keeps its version: the tombstone left with this guards the key)."""
        table = spec.table
        stmt = (
            update(table)
            .where(_older_row(spec), table.c[DELETED] == false())
            .values(
                {
                    SEQ: bindparam("seq"),
                    DELETED: True,
                    EVENT_TIME: bindparam("event_time"),
                    APPLIED_AT: bindparam("applied_at"),
                }
            )
        )
        params = [
            {**_older_row_parameters(r), "event_time": r.event_time, "applied_at": applied_at}
            for r in rows
        ]
        return int(conn.execute(stmt, params, execution_options=_ROWCOUNT).rowcount)

    def _upsert_versions(
        self, conn: Connection, spec: ReplicaSpec, rows: Sequence[RowVersion], applied_at: datetime
    ) -> int:
        count = 0
        with_values, without_values = split_by_values(rows)
        if with_values:
            count += self._upsert(conn, spec, with_values, spec.value_names, applied_at)
        if without_values:
            count += self._upsert(conn, spec, without_values, (), applied_at)
        return count

    def _upsert(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        """Guarded upsert setting `value_names` and the bookkeeping columns: one
        statement of one row, executed with every row as parameters (executemany)."""
        if not rows:
            return 0
        stmt = self._upsert_statement(spec.table, value_names)
        columns = {*spec.key_names, *value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT}
        bound = bound_upsert(spec.table, tuple(value_names), stmt, conn.dialect, columns)
        if bound is None:  # not a plain one-row INSERT: let SQLAlchemy bind the values
            dicts = [row_dict(spec, r, value_names, applied_at) for r in rows]
            return int(conn.execute(stmt, dicts, execution_options=_ROWCOUNT).rowcount)
        params = bound.parameters(spec, rows, value_names, applied_at)
        return int(conn.exec_driver_sql(bound.sql, params, execution_options=_ROWCOUNT).rowcount)

    def _upsert_statement(self, table: Table, value_names: Sequence[str]) -> Insert:
        """The guarded upsert of `value_names` and the bookkeeping columns, without
        inline values. Built once per table and column set and kept with the table, so
        SQLAlchemy compiles it once (its compiled cache finds the same statement) and
        the driver gets the rows as executemany parameters, each bound by the column
        types' processors. A multi-row VALUES statement, by contrast, is built and
        compiled anew for every batch: most of a batch's time on SQLite and MariaDB."""
        cache: dict[tuple[Any, ...], Insert] = table.info.setdefault(_UPSERTS, {})
        names = tuple(value_names)
        stmt = cache.get((type(self), names))
        if stmt is None:
            assigned = (*names, SEQ, DELETED, EVENT_TIME, APPLIED_AT)
            stmt = cache[(type(self), names)] = self.merge(
                table,
                None,
                assign=lambda new: {c: new[c] for c in assigned},
                guard=lambda new: table.c[SEQ] < new[SEQ],
            )
        return stmt

    def _hard_delete(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        applied_at: datetime,
        tombstones: Table,
        *,
        count_rows: bool = False,
    ) -> int:
        """Delete the older rows of `rows`' keys and leave their tombstones; returns the
        tombstones written or moved up, or with `count_rows` the rows deleted."""
        params = [_older_row_parameters(r) for r in rows]
        deleted = conn.execute(
            delete(spec.table).where(_older_row(spec)), params, execution_options=_ROWCOUNT
        )
        buried = self._bury(conn, spec, rows, applied_at, tombstones)
        return int(deleted.rowcount) if count_rows else buried

    def _bury(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        applied_at: datetime,
        tombstones: Table,
    ) -> int:
        """Leave (or move up) the tombstone of each of `rows`' keys: the version below
        which nothing may write the key again."""
        marks = []
        for r in rows:
            digest, text = key_hash(r.key)
            marks.append(
                {
                    "table_name": spec.qualified_name,
                    "key_hash": digest,
                    "key": text,
                    "sequence": r.sequence,
                    "deleted_at": applied_at,
                }
            )
        count = 0
        step = self.rows_per_statement(tombstones)
        for start in range(0, len(marks), step):
            stmt = self.merge(
                tombstones,
                marks[start : start + step],
                assign=lambda new: {"sequence": new["sequence"], "deleted_at": new["deleted_at"]},
                guard=lambda new: tombstones.c.sequence < new["sequence"],
            )
            count += conn.execute(stmt, execution_options=_ROWCOUNT).rowcount
        return count

    def _tombstone_sequences(
        self, conn: Connection, tombstones: Table, name: str, hashes: Sequence[str]
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(hashes), MAX_BINDS):
            chunk = hashes[start : start + MAX_BINDS]
            query = select(tombstones.c.key_hash, tombstones.c.sequence).where(
                tombstones.c.table_name == name, tombstones.c.key_hash.in_(chunk)
            )
            found.update({h: int(s) for h, s in conn.execute(query)})
        return found

    def _clear_tombstones(
        self, conn: Connection, tombstones: Table, name: str, hashes: Sequence[str]
    ) -> None:
        for start in range(0, len(hashes), MAX_BINDS):
            chunk = hashes[start : start + MAX_BINDS]
            conn.execute(
                delete(tombstones).where(
                    tombstones.c.table_name == name, tombstones.c.key_hash.in_(chunk)
                )
            )

    def ensure_schema(self, conn: Connection, schema: str) -> None:
        """Create `schema` if the database has schemas and it is missing."""

    def batch_context(self, conn: Connection) -> AbstractContextManager[None]:
        """Entered around the optimistic pass of a batch's writes, closed before its
        dead letters and checkpoints read results. PostgreSQL overrides it to pipeline
        the whole pass (BEGIN and the statement timeout travel with the first rows)."""
        return nullcontext()

    def upgrade_table(self, conn: Connection, table: Table) -> list[str]:
        """Bring a replica table an earlier cdc made up to what cdc makes now (README
        "Databases"); returns what changed. Nothing to do unless `upgrades_tables`."""
        return []


class OnConflictBackend(Backend):
    """Postgres and SQLite share `INSERT … ON CONFLICT (key) DO UPDATE … WHERE`."""

    def merge(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]] | None,
        assign: Assign,
        guard: Guard | None = None,
        conflict: Sequence[str] | None = None,
    ) -> Insert:
        stmt = self.insert(table) if rows is None else self.insert(table).values(list(rows))
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


def _older_row(spec: ReplicaSpec) -> ColumnElement[bool]:
    """The row of one key (`k_0`, `k_1`, …) whose version is older than `seq`: what a
    delete may touch."""
    table = spec.table
    return and_(
        *(table.c[name] == bindparam(f"k_{i}") for i, name in enumerate(spec.key_names)),
        table.c[SEQ] < bindparam("seq"),
    )


def _older_row_parameters(row: RowVersion) -> dict[str, Any]:
    return {**{f"k_{i}": value for i, value in enumerate(row.key)}, "seq": row.sequence}


def _by_counting(moved: Sequence[RowVersion]) -> list[tuple[list[RowVersion], bool]]:
    """Moved versions split by whether the rows they delete count as their record's
    work: a REMOVE without an image deletes the item wherever it is (it can be live in
    one table only); any other move is counted in the table the item moved to."""
    counted = [r for r in moved if r.change.is_remove and r.change.old_image is None]
    rest = [r for r in moved if not (r.change.is_remove and r.change.old_image is None)]
    return [(group, group is counted) for group in (counted, rest) if group]
