"""A batch of row versions → per-table write plans. Pure.

Records of one key collapse to the highest sequence number before any SQL runs: a
multi-row upsert must never touch one row twice, and only the newest version can win
the sequence guard anyway. The versions that lost stay linked from the newest down
(`RowVersion.older`), so that if the newest turns out unbuildable (its values are built
lazily, see `TableSpec.materialize`) the next-newest valid one is applied instead.

Rows are sorted by key and tables by name so concurrent writers take row locks in one
stable order and cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cdc.core.mapping import RowVersion, TableSpec


@dataclass
class TablePlan:
    spec: TableSpec[Any]
    rows: list[RowVersion] = field(default_factory=list)  # one per key, sorted by key
    superseded: list[RowVersion] = field(default_factory=list)  # lost to a newer version

    @property
    def with_values(self) -> list[RowVersion]:
        return split_by_values(self.rows)[0]

    @property
    def without_values(self) -> list[RowVersion]:
        """Deletes that carry no image: only the bookkeeping columns change."""
        return split_by_values(self.rows)[1]


def split_by_values(
    rows: Iterable[RowVersion],
) -> tuple[list[RowVersion], list[RowVersion]]:
    """(rows that carry column values, deletes that carry no image): the second kind
    updates only the bookkeeping columns, so the two are written by two statements."""
    with_values: list[RowVersion] = []
    without_values: list[RowVersion] = []
    for row in rows:
        (without_values if row.values is None and row.image is None else with_values).append(row)
    return with_values, without_values


def plan(versions: Iterable[tuple[TableSpec[Any], RowVersion]]) -> list[TablePlan]:
    by_table: dict[str, TablePlan] = {}
    newest: dict[str, dict[tuple[Any, ...], RowVersion]] = {}
    for spec, version in versions:
        name = spec.qualified_name
        table_plan = by_table.get(name)
        if table_plan is None:
            table_plan = by_table[name] = TablePlan(spec)
            newest[name] = {}
        keyed = newest[name]
        current = keyed.get(version.key)
        if current is None:
            keyed[version.key] = version
        elif version.sequence > current.sequence:
            keyed[version.key] = version
            version.older = current
            table_plan.superseded.append(current)
        else:  # older, or an exact duplicate delivered twice in one batch
            _link_older(current, version)
            table_plan.superseded.append(version)
    plans = []
    for name in sorted(by_table):
        table_plan = by_table[name]
        table_plan.rows = [newest[name][k] for k in sorted(newest[name])]
        plans.append(table_plan)
    return plans


def _link_older(newest: RowVersion, version: RowVersion) -> None:
    """Insert `version` into the chain of older versions below `newest`, newest first
    (a duplicate after the copy delivered before it)."""
    node = newest
    while node.older is not None and node.older.sequence >= version.sequence:
        node = node.older
    version.older, node.older = node.older, version
