"""The cdc_backfill_segments table: where each parallel Scan segment of `cdc backfill`
stopped, so an interrupted backfill resumes instead of starting over."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, insert, select, update

from cdc.sql.bookkeeping import tables

if TYPE_CHECKING:
    pass


@dataclass
class SegmentRow:
    segment: int
    total_segments: int
    last_key: dict[str, Any] | None
    items_written: int
    done: bool


class SegmentStore:
    """`cdc_backfill_segments`: where each segment of a table's backfill stopped."""

    def __init__(self, engine: Engine, schema: str | None, source_table: str) -> None:
        self.engine = engine
        self.source_table = source_table
        self.table = tables(schema)["cdc_backfill_segments"]

    def load(self) -> dict[int, SegmentRow]:
        t = self.table
        query = select(t).where(t.c.source_table == self.source_table).order_by(t.c.segment)
        with self.engine.connect() as conn:
            return {
                row.segment: SegmentRow(
                    row.segment,
                    row.total_segments,
                    None if row.last_evaluated_key is None else json.loads(row.last_evaluated_key),
                    row.items_written,
                    row.done,
                )
                for row in conn.execute(query)
            }

    def reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(self.table).where(self.table.c.source_table == self.source_table))

    def create(self, segments: int) -> dict[int, SegmentRow]:
        now = datetime.now(UTC)
        rows = [
            {
                "source_table": self.source_table,
                "segment": segment,
                "total_segments": segments,
                "last_evaluated_key": None,
                "items_written": 0,
                "done": False,
                "started_at": now,
                "updated_at": now,
            }
            for segment in range(segments)
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(self.table), rows)
        return {s: SegmentRow(s, segments, None, 0, False) for s in range(segments)}

    def save(self, segment: int, last_key: dict[str, Any] | None, items: int) -> None:
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.source_table == self.source_table, t.c.segment == segment)
                .values(
                    last_evaluated_key=None
                    if last_key is None
                    else json.dumps(last_key, sort_keys=True),
                    items_written=t.c.items_written + items,
                    done=last_key is None,
                    updated_at=datetime.now(UTC),
                )
            )
