"""Columns a typed table with `drift = "add_columns"` gained for attributes the mapping
does not declare (README: The mapping file, "Drift"; docs/architecture.md, "Drift
columns"). Pure.

The replicator never alters a table: a new attribute waits in `extra`. `cdc revision`
proposes a nullable column for each attribute whose values in `extra` all have one
type, and records the attribute and the type in the column's comment
(`COMMENT_PREFIX {"attribute": ..., "type": ...}`); once `cdc migrate` has made it,
each process learns it from the live table and fills it, and `cdc migrate` moves the
values that wait in `extra` into it. A value that does not fit the column stays in
`extra`: nothing is ever lost.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdc.core.convert import ColumnType, Converter, converter, parse_type

COMMENT_PREFIX = "cdc drift "
RECHECK_SECONDS = 300.0  # how often a process looks for drift columns made since


@dataclass(frozen=True)
class DriftColumn:
    attribute: str
    column: str
    type: ColumnType

    def comment(self) -> str:
        """The column's comment: what a process needs to fill it. `*/` never appears
        (SQLite keeps it inside a /* */ comment of its DDL)."""
        text = json.dumps({"attribute": self.attribute, "type": str(self.type)})
        return COMMENT_PREFIX + text.replace("*/", "*\\/")


def parse_comment(column: str, comment: str | None) -> DriftColumn | None:
    """The drift column a comment describes, or None (not one of cdc's)."""
    if not comment or not comment.startswith(COMMENT_PREFIX):
        return None
    try:
        data = json.loads(comment[len(COMMENT_PREFIX) :])
        return DriftColumn(str(data["attribute"]), column, parse_type(str(data["type"])))
    except (ValueError, KeyError, TypeError):
        return None


class DriftColumns:
    """The drift columns one process knows of a table, by attribute (shared by the
    threads of a process: replaced whole, never changed in place)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_attribute: dict[str, tuple[DriftColumn, Converter]] = {}
        self._clock = clock
        self._checked: float | None = None
        self._lock = threading.Lock()

    def learn(self, found: list[DriftColumn]) -> list[DriftColumn]:
        """Take the table's drift columns as found; returns the new ones."""
        with self._lock:
            self._checked = self._clock()
            known = dict(self.by_attribute)
            new = [c for c in found if c.attribute not in known]
            for column in new:
                known[column.attribute] = (column, converter(column.column, column.type))
            self.by_attribute = known
            return new

    def due(self) -> bool:
        """Whether the live table should be looked at again for columns made since."""
        checked = self._checked
        return checked is None or self._clock() - checked >= RECHECK_SECONDS

    @property
    def columns(self) -> list[str]:
        return [c.column for c, _ in self.by_attribute.values()]


def plain_to_av(value: Any) -> Any:
    """A plain-JSON value (from `extra`) as the AttributeValue the converters take;
    maps and lists only as JSON (the converters of jsonb take any)."""
    from decimal import Decimal

    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, Decimal | int | float):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [plain_to_av(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {k: plain_to_av(v) for k, v in value.items()}}
    raise TypeError(f"not plain JSON: {type(value).__name__}")
