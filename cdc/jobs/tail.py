"""`cdc tail`: read a DynamoDB stream's shards in order, apply each batch with the
replicator and keep going, resuming from the checkpoints."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cdc.aws import errors as aws_errors
from cdc.core.gaps import SHARD_GONE, TRIMMED
from cdc.core.versions import sequence_of
from cdc.sources.dynamodb_streams.reader import (
    MAX_RECORDS_PER_CALL,
    IteratorExpired,
    Position,
    RecordsTrimmed,
    Shard,
    ShardNotFound,
    StartAt,
    StreamReader,
    _as_int,
    jittered_backoff,
    ready_shards,
    sequence_int,
)

if TYPE_CHECKING:
    from cdc.core.outcomes import BatchResult
    from cdc.sql.replicator import Replicator

log = logging.getLogger("cdc.streams")


@dataclass
class TailStats:
    batches: int = 0
    records: int = 0
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    failed_batches: int = 0
    shards_finished: int = 0
    gaps: int = 0  # shards whose checkpoint was past retention: records were lost
    lag_s: float | None = None  # of the last batch applied
    shards_active: int = 0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.records += len(result.outcomes)
        self.applied += result.applied
        self.stale += result.stale
        self.dead_lettered += result.dead_lettered
        if result.max_lag_s is not None:
            self.lag_s = result.max_lag_s

    def line(self) -> str:
        lag = "" if self.lag_s is None else f", lag {self.lag_s:.1f}s"
        return (
            f"{self.records} records in {self.batches} batches: {self.applied} applied, "
            f"{self.stale} stale, {self.dead_lettered} dead-lettered; "
            f"{self.failed_batches} batches not committed; {self.shards_active} shards "
            f"open for reading, {self.shards_finished} finished{lag}"
            + (f"; {self.gaps} GAPS (records expired unread)" if self.gaps else "")
        )


@dataclass
class _ShardState:
    shard: Shard
    position: Position  # where to get an iterator when there is none
    iterator: str | None = None
    empty_pages: int = 0
    failures: int = 0
    not_before: float = 0.0


@dataclass
class Tail:
    """Follows one stream: shards in lineage order, each from its checkpoint.

    Single-threaded and round-robin: one GetRecords per ready shard per round. A DynamoDB
    stream has few open shards at a time (about one per table partition), and the
    database write, not the read, is the slow part.
    """

    reader: StreamReader
    replicator: Replicator
    start: StartAt = "trim_horizon"
    batch_size: int = MAX_RECORDS_PER_CALL
    poll_interval: float = 1.0  # after an empty page
    call_interval: float = 0.25  # between calls on one shard (Lambda polls 4/s)
    refresh_interval: float = 60.0  # re-describe the stream to find new shards
    idle_pages: int = 3  # --once: empty pages in a row that mean "caught up"
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    status_interval: float | None = None
    on_status: Callable[[TailStats], None] | None = None
    # The first DescribeStream is the first contact with AWS: a network error is
    # retried this often, then reported as a setup mistake (an endpoint that cannot be
    # reached). Once the stream was read, network errors are retried for as long as
    # they last, with backoff: an outage of AWS is ridden out like one of the database.
    startup_attempts: int = 3
    on_started: Callable[[], None] | None = None  # after the first DescribeStream
    backoff: Callable[[int], float] = field(default=jittered_backoff)  # failures -> seconds

    def __post_init__(self) -> None:
        self.stats = TailStats()
        self._active: dict[str, _ShardState] = {}
        self._finished: set[str] = set()
        self._checkpoints: dict[str, int] = {}
        self._first_describe = True
        self._last_describe = 0.0
        self._must_describe = True
        self._describe_failures = 0
        self._describe_not_before = 0.0

    @property
    def arn(self) -> str:
        return self.reader.arn

    def run(self, *, once: bool = False, max_seconds: float | None = None) -> TailStats:
        """Apply the stream until stopped (`stop` set, e.g. by Ctrl-C), until
        `max_seconds` have passed, or with `once` until every shard is read to its end
        or caught up. Returns the statistics; a batch that could not be committed is
        retried from its first record (the guard makes the replay harmless)."""
        started = self.clock()
        until = None if max_seconds is None else started + max_seconds
        next_status = None if self.status_interval is None else started + self.status_interval
        self._checkpoints = self._load_checkpoints()
        while not self.stop.is_set():
            now = self.clock()
            if until is not None and now >= until:
                break
            if self._describe_due(now):
                self._describe_or_wait(now)
            # (Not caught up while the stream is to be described again: a shard read
            # to its end may have children not listed yet.)
            if once and (
                self.stats.failed_batches or (not self._must_describe and self._caught_up())
            ):
                break
            if next_status is not None and now >= next_status and self.on_status:
                self.on_status(self._status())
                next_status = now + (self.status_interval or 0)
            ready = [s for s in self._active.values() if s.not_before <= now]
            if not ready:
                wake = min((s.not_before for s in self._active.values()), default=now + 1)
                wake = min(wake, self._next_describe(now))
                if until is not None:
                    wake = min(wake, until)
                self.stop.wait(max(0.0, wake - now))
                continue
            for state in ready:
                if self.stop.is_set():
                    break
                self._step(state)
        return self._status()

    def _status(self) -> TailStats:
        self.stats.shards_active = len(self._active)
        return self.stats

    def _caught_up(self) -> bool:
        return all(
            not s.shard.closed and s.empty_pages >= self.idle_pages for s in self._active.values()
        )

    def _position(self, record: dict[str, Any]) -> int:
        """A record's position in its shard (a Kinesis tail reads it elsewhere)."""
        return sequence_int(record)

    def _position_text(self, record: dict[str, Any]) -> str:
        return str(record["dynamodb"]["SequenceNumber"])

    def _load_checkpoints(self) -> dict[str, int]:
        from cdc.sql.bookkeeping import tables
        from cdc.sql.migrations import ensure_bookkeeping

        replicator = self.replicator
        ensure_bookkeeping(replicator.engine, replicator.schema)
        t = tables(replicator.schema)["cdc_checkpoints"]
        query = select(t.c.shard_id, t.c.last_sequence).where(
            t.c.stream_arn == self.arn, t.c.shard_id != ""
        )
        with replicator.engine.connect() as conn:
            # Checkpoints hold versions (cdc/core/versions.py); the API takes the
            # sequence number inside.
            return {
                row.shard_id: sequence_of(int(row.last_sequence)) for row in conn.execute(query)
            }

    def _next_describe(self, now: float) -> float:
        due = now if self._must_describe else self._last_describe + self.refresh_interval
        return max(due, self._describe_not_before)

    def _describe_due(self, now: float) -> bool:
        return self._next_describe(now) <= now

    def _describe_or_wait(self, now: float) -> None:
        """Describe the stream; once it was described, a throttled or unreachable
        DescribeStream is retried later (the shards already known go on being read)."""
        if self._first_describe:
            self._describe(self.startup_attempts)
            if self.on_started is not None:
                self.on_started()
            return
        try:
            self._describe()
        except Exception as exc:
            if not aws_errors.is_transient(exc):
                raise
            self._describe_failures += 1
            delay = self.backoff(self._describe_failures)
            log.warning("describing stream %s: %s; retrying in %.1fs", self.arn, exc, delay)
            self._describe_not_before = now + delay
            return
        self._describe_failures = 0

    def _describe(self, attempts: int | None = None) -> None:
        info = self.reader.describe(attempts)
        self._last_describe = self.clock()
        self._must_describe = False
        for shard in info.shards:
            if shard.shard_id in self._finished or shard.shard_id in self._active:
                continue
            if not shard.closed:
                continue
            checkpoint = self._checkpoints.get(shard.shard_id)
            if checkpoint is not None:
                # Applied up to its last record in an earlier run.
                done = checkpoint >= _as_int(shard.ending_sequence)
            else:
                # --from latest: nothing new will ever arrive in a shard closed already.
                done = self._first_describe and self.start == "latest"
            if done:
                self._finished.add(shard.shard_id)
        for shard in ready_shards(info.shards, self._finished):
            if shard.shard_id in self._active:
                continue
            checkpoint = self._checkpoints.get(shard.shard_id)
            if checkpoint is not None:
                position = Position("AFTER_SEQUENCE_NUMBER", shard.sequence_text(checkpoint))
            elif self._first_describe:
                position = Position.start(self.start)
            else:
                # A shard born while we follow the stream (a child of one we finished):
                # all of it is new, whatever --from said.
                position = Position("TRIM_HORIZON")
            log.info("reading shard %s from %s", shard.shard_id, position)
            self._active[shard.shard_id] = _ShardState(shard, position)
        self._first_describe = False

    def _record_gap(self, state: _ShardState, kind: str, detail: str) -> None:
        from datetime import UTC, datetime

        from cdc.core.gaps import Gap
        from cdc.core.versions import stream_generation, table_of
        from cdc.sql.gaps import record_gaps

        source = table_of(self.arn) or ""
        gap = Gap(
            source,
            self.arn,
            kind,
            stream_generation(self.arn),
            shard_id=state.shard.shard_id,
            detail=detail,
        )
        replicator = self.replicator
        with replicator.engine.begin() as conn:
            record_gaps(conn, replicator.backend, replicator.schema, [gap], datetime.now(UTC))

    def _finish(self, state: _ShardState) -> None:
        log.info("shard %s read to its end", state.shard.shard_id)
        del self._active[state.shard.shard_id]
        self._finished.add(state.shard.shard_id)
        self.stats.shards_finished += 1
        self._must_describe = True  # its children may now be read

    def _backoff(self, state: _ShardState) -> float:
        state.failures += 1
        return self.backoff(state.failures)

    def _step(self, state: _ShardState) -> None:
        shard_id = state.shard.shard_id
        now = self.clock()
        try:
            if state.iterator is None:
                state.iterator = self.reader.iterator(shard_id, state.position)
            records, next_iterator = self.reader.get_records(state.iterator, self.batch_size)
        except IteratorExpired:
            log.info("iterator of shard %s expired; resuming from %s", shard_id, state.position)
            state.iterator = None
            return
        except RecordsTrimmed:
            # Recorded before reading on: every row applied after the gap was found is
            # written after it (README: Gaps and repair).
            self._record_gap(state, TRIMMED, f"records after {state.position} expired")
            log.error(
                "shard %s: records after %s are past the stream's 24-hour retention and "
                "were never applied; continuing from the oldest record kept. The gap is "
                "recorded: `cdc status` shows it, `cdc repair TABLE` closes it.",
                shard_id,
                state.position,
            )
            self.stats.gaps += 1
            state.position, state.iterator = Position("TRIM_HORIZON"), None
            return
        except ShardNotFound:
            if state.position.sequence is not None:
                # Gone before it was read to its end: what it held after our position
                # is lost.
                self._record_gap(state, SHARD_GONE, f"shard gone after {state.position}")
                self.stats.gaps += 1
            log.warning("shard %s no longer exists; skipping it", shard_id)
            self._finish(state)
            return
        except Exception as exc:
            if not aws_errors.is_transient(exc):
                raise
            delay = self._backoff(state)
            log.warning("shard %s: %s; retrying in %.1fs", shard_id, exc, delay)
            state.not_before = now + delay
            return

        if records:
            result = self.replicator.process(records, shard_id=shard_id)
            if result.failed:
                self.stats.failed_batches += 1
                delay = self._backoff(state)
                first = self._position_text(min(records, key=self._position))
                log.error(
                    "shard %s: batch of %d records not committed (%s); retrying from "
                    "sequence %s in %.1fs",
                    shard_id,
                    len(records),
                    result.error,
                    first,
                    delay,
                )
                state.position = Position("AT_SEQUENCE_NUMBER", first)
                state.iterator = None
                state.not_before = self.clock() + delay
                return
            self.stats.add(result)
            last = self._position_text(max(records, key=self._position))
            state.position = Position("AFTER_SEQUENCE_NUMBER", last)
            state.failures = 0
            state.empty_pages = 0
            state.not_before = self.clock() + self.call_interval
        else:
            state.empty_pages += 1
            state.not_before = now + self.poll_interval
        state.iterator = next_iterator
        if next_iterator is None:
            self._finish(state)
