"""Child tables of list attributes (README: "Single-table designs"): after a batch has
written an entity table, each parent row whose stored version is the one just written
gets its children replaced as a whole; a parent that lost its guard (a stale version)
leaves them alone, so a stale parent never leaves or brings back stale children. A
parent deleted or moved away loses its children."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select
from sqlalchemy.engine import Connection

from cdc.core.mapping import DELETED, SEQ, RowVersion
from cdc.sql.errors import ErrorKind, classify, describe
from cdc.sql.replica import ReplicaSpec, keys_in

LOOKUP_CHUNK = 500  # parent keys per read


def sync_children(
    conn: Connection, spec: ReplicaSpec, rows: Sequence[RowVersion]
) -> list[tuple[RowVersion, str, str]]:
    """Replace the children of `rows` (the versions just written to `spec`'s table, one
    per key) where they won; returns the rows whose children the database refused,
    with why (their parent row stands; the record is dead-lettered)."""
    if not spec.children or not rows:
        return []
    stored = _stored_versions(conn, spec, rows)
    changed = []
    for row in rows:
        found = stored.get(row.key)
        if found is None or found[0] == row.sequence:  # gone, or this version won
            changed.append((row, None if found is None or found[1] else row.children))
    if not changed:
        return []
    try:
        with conn.begin_nested():
            _replace(conn, spec, changed)
        return []
    except Exception as exc:
        if classify(exc) is not ErrorKind.ROW:
            raise
    refused = []
    for row, children in changed:  # one parent at a time, to find the refused ones
        try:
            with conn.begin_nested():
                _replace(conn, spec, [(row, children)])
        except Exception as exc:
            if classify(exc) is not ErrorKind.ROW:
                raise
            kind, message = describe(exc)
            with conn.begin_nested():
                _replace(conn, spec, [(row, None)])  # no stale children either
            refused.append((row, kind, f"the database rejected a child row: {message}"))
    return refused


def _stored_versions(
    conn: Connection, spec: ReplicaSpec, rows: Sequence[RowVersion]
) -> dict[tuple[Any, ...], tuple[int, bool]]:
    table = spec.table
    keys = [table.c[name] for name in spec.key_names]
    found: dict[tuple[Any, ...], tuple[int, bool]] = {}
    for start in range(0, len(rows), LOOKUP_CHUNK):
        chunk = [r.key for r in rows[start : start + LOOKUP_CHUNK]]
        query = select(*keys, table.c[SEQ], table.c[DELETED]).where(keys_in(keys, chunk))
        for record in conn.execute(query):
            values = tuple(record)
            found[values[: len(keys)]] = (int(values[-2]), bool(values[-1]))
    return found


def _replace(
    conn: Connection,
    spec: ReplicaSpec,
    changed: Sequence[tuple[RowVersion, dict[str, list[dict[str, Any]]] | None]],
) -> None:
    for child in spec.children:
        table = child.table
        match = and_(*(table.c[k] == bindparam(f"k_{i}") for i, k in enumerate(child.parent_keys)))
        conn.execute(
            delete(table).where(match),
            [{f"k_{i}": v for i, v in enumerate(row.key)} for row, _ in changed],
        )
        new = [
            {**dict(zip(child.parent_keys, row.key, strict=True)), **element}
            for row, children in changed
            if children
            for element in children.get(child.qualified_name, ())
        ]
        if new:
            conn.execute(insert(table), new)
