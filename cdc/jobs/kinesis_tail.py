"""`cdc tail` of a Kinesis data stream fed by DynamoDB: cdc/jobs/tail.py's `Tail`, with
the records' positions read from `kinesis.sequenceNumber` and the checkpoints from
`cdc_checkpoints.last_position` (Kinesis sequence numbers have up to 128 digits)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cdc.jobs.tail import Tail
from cdc.sources.kinesis.reader import kinesis_sequence


class KinesisTail(Tail):
    def _position(self, record: dict[str, Any]) -> int:
        return kinesis_sequence(record)

    def _position_text(self, record: dict[str, Any]) -> str:
        return str(record["kinesis"]["sequenceNumber"])

    def _load_checkpoints(self) -> dict[str, int]:
        from cdc.sql.bookkeeping import tables
        from cdc.sql.migrations import ensure_bookkeeping

        replicator = self.replicator
        ensure_bookkeeping(replicator.engine, replicator.schema)
        t = tables(replicator.schema)["cdc_checkpoints"]
        query = select(t.c.shard_id, t.c.last_position).where(
            t.c.stream_arn == self.arn, t.c.shard_id != "", t.c.last_position.is_not(None)
        )
        with replicator.engine.connect() as conn:
            return {row.shard_id: int(row.last_position) for row in conn.execute(query)}
