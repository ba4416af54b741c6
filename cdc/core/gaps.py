"""Gaps: stretches of a table's changes that the stream can no longer deliver (README:
Gaps and repair). Pure: what a gap is and when one is found; cdc/sql/gaps.py records
them, `cdc status` shows them and `cdc repair` closes them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cdc.core.versions import label_time

# DynamoDB Streams keep records 24 hours.
RETENTION = timedelta(hours=24)
# A batch that far behind its records' creation is a stream being caught up after an
# outage, not the first write to a table that was merely idle for a day.
LATE_LAG = timedelta(hours=1)

TRIMMED = "trimmed"  # a checkpoint older than the trim horizon (cdc tail)
SHARD_GONE = "shard_gone"  # a shard gone before it was read to its end (cdc tail)
NEW_STREAM = "new_stream"  # a new stream generation: the time between the two streams
LATE_BATCH = "late_batch"  # a batch arriving more than the retention after the last one
KINDS = (TRIMMED, SHARD_GONE, NEW_STREAM, LATE_BATCH)


@dataclass(frozen=True)
class Gap:
    source_table: str
    stream_arn: str  # the stream read after the gap
    kind: str
    generation: int  # of that stream (cdc/core/versions.py)
    shard_id: str = ""
    started: datetime | None = None  # the last event applied before the gap, if known
    ended: datetime | None = None  # where what follows the gap starts, if known
    detail: str = ""

    def fingerprint(self) -> str:
        """One row per gap, whichever process finds it (several Lambda instances see a
        new stream at once)."""
        identity = "|".join(
            (self.kind, self.source_table, self.stream_arn, self.shard_id, self.detail)
        )
        return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def new_stream_gap(
    source_table: str,
    stream_arn: str,
    generation: int,
    known: Mapping[str, tuple[int, datetime | None]],
) -> Gap | None:
    """The gap between two streams of a table, found when a stream of `generation` is
    seen and the table has a checkpoint of another (`known`: ARN → (generation, last
    event time)): the changes made between the older stream's end and the newer one's
    start were in neither. Found whichever is seen first: a late batch of the old stream
    names the same gap (the one before the next newer stream). Streams of generation 0
    (no timestamp label: a backfill's) take no part."""
    if generation <= 0:
        return None
    streams = {arn: v for arn, v in known.items() if v[0] > 0 and arn != stream_arn}
    older = {arn: v for arn, v in streams.items() if v[0] < generation}
    newer = {arn: v for arn, v in streams.items() if v[0] > generation}
    if newer:
        # This stream is the old one: the gap is before the next newer stream.
        after, (after_generation, _) = min(newer.items(), key=lambda item: item[1][0])
        return Gap(
            source_table,
            after,
            NEW_STREAM,
            after_generation,
            ended=label_time(after_generation),
            detail=f"after {stream_arn}",
        )
    if not older:
        return None
    previous, (_, last_event) = max(older.items(), key=lambda item: item[1][0])
    return Gap(
        source_table,
        stream_arn,
        NEW_STREAM,
        generation,
        started=last_event,
        ended=label_time(generation),
        detail=f"after {previous}",
    )


def late_batch_gap(
    source_table: str,
    stream_arn: str,
    generation: int,
    last_applied: datetime | None,
    oldest_in_batch: datetime | None,
    now: datetime,
) -> Gap | None:
    """The gap a batch reveals when the table's last applied event is older than the
    stream's retention and the batch's records are late (older than LATE_LAG) but
    within the retention, as a mapping catching up at the trim horizon delivers them:
    the stream may have dropped records between the two before they were read."""
    if last_applied is None or oldest_in_batch is None:
        return None
    if now - last_applied <= RETENTION:
        return None
    age = now - oldest_in_batch
    if age <= LATE_LAG or age > RETENTION + LATE_LAG:
        # Fresh (an idle table's next write), or older than any stream keeps records:
        # a replay or a redrive, which says nothing about the stream.
        return None
    return Gap(
        source_table,
        stream_arn,
        LATE_BATCH,
        generation,
        started=last_applied,
        ended=oldest_in_batch,
        detail=f"last applied event {last_applied.isoformat()}",
    )
