"""Reading a DynamoDB stream without Lambda, and `Tail`, which follows one and applies it.

What Lambda's event source mapping does for us, done here by hand:

* a stream is a set of shards; a shard is open for about four hours, then closed, and
  its writes continue in one or two child shards (`ParentShardId`). Records of one key
  stay in order only if a child is read after its parent is read to its end;
* a shard iterator points into one shard and expires after 15 minutes unused; a shard's
  records are kept 24 hours (`TrimmedDataAccessException` after that);
* `GetRecords` on a closed shard ends with no `NextShardIterator`; on an open shard it
  can return empty pages, even before records that exist further on;
* records from `GetRecords` lack `eventSourceARN`, carry `ApproximateCreationDateTime`
  as a number that botocore turns into a datetime, and binary values that botocore
  decodes to bytes: `lambda_record` makes them what a Lambda event would carry.

Every batch goes through `Replicator.process(records, shard_id=...)`, the same path as
Lambda, which writes the shard's checkpoint (`cdc_checkpoints`) in the batch's own
transaction: the checkpoint never runs ahead of the data.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from cdc import aws
from cdc.errors import CdcError

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

    from cdc.apply import BatchResult, Replicator

log = logging.getLogger("cdc.streams")

IteratorType = Literal["TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]
StartAt = Literal["trim_horizon", "latest"]
MAX_RECORDS_PER_CALL = 1000  # GetRecords' upper limit


class StreamError(CdcError):
    """Reading the stream failed in a way the caller must handle."""


class IteratorExpired(StreamError):
    """The shard iterator is older than 15 minutes: get a new one from a position."""


class RecordsTrimmed(StreamError):
    """The records asked for are older than the stream's 24-hour retention."""


class ShardNotFound(StreamError):
    """The stream or shard no longer exists (disabled stream, shard past retention)."""


class StreamNotFound(StreamError):
    """DescribeStream says the stream does not exist: a wrong ARN, or a disabled stream."""


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_id: str | None
    starting_sequence: str | None
    ending_sequence: str | None  # None: the shard is open

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Shard:
        numbers = raw.get("SequenceNumberRange") or {}
        return cls(
            shard_id=str(raw["ShardId"]),
            parent_id=raw.get("ParentShardId") or None,
            starting_sequence=numbers.get("StartingSequenceNumber"),
            ending_sequence=numbers.get("EndingSequenceNumber"),
        )

    def sequence_text(self, sequence: int) -> str:
        """A checkpointed sequence (stored as a number) as the API wants it back.

        Sequence numbers are compared as integers everywhere, but the API takes the
        string; if this shard spells its numbers with leading zeros, pad like it does.
        """
        text = str(sequence)
        start = self.starting_sequence
        if start and len(start) > len(text) and start.startswith("0"):
            return text.rjust(len(start), "0")
        return text


@dataclass(frozen=True, slots=True)
class StreamInfo:
    arn: str
    table: str | None
    status: str | None
    view_type: str | None
    shards: tuple[Shard, ...]


@dataclass(frozen=True, slots=True)
class Position:
    """Where to get a shard iterator: the API's ShardIteratorType and its sequence."""

    kind: IteratorType
    sequence: str | None = None

    @classmethod
    def start(cls, at: StartAt) -> Position:
        return cls("LATEST" if at == "latest" else "TRIM_HORIZON")


def ready_shards(shards: Sequence[Shard], finished: set[str]) -> list[Shard]:
    """Shards that may be read now, oldest first: not finished, and whose parent is
    finished or no longer listed (a parent past the 24-hour retention is gone, and
    with it anything to wait for)."""
    listed = {s.shard_id for s in shards}
    ready = [
        s
        for s in shards
        if s.shard_id not in finished
        and (s.parent_id is None or s.parent_id not in listed or s.parent_id in finished)
    ]
    return sorted(ready, key=lambda s: (_as_int(s.starting_sequence), s.shard_id))


def _as_int(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record in the shape a Lambda event carries it."""
    dynamodb = dict(raw.get("dynamodb") or {})
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = aws.epoch_seconds(created)
    for name in ("Keys", "NewImage", "OldImage"):
        image = dynamodb.get(name)
        if isinstance(image, Mapping):
            dynamodb[name] = aws.image_to_wire(image)
    record: dict[str, Any] = {
        key: raw[key]
        for key in ("eventID", "eventName", "eventVersion", "eventSource", "awsRegion")
        if key in raw
    }
    record["dynamodb"] = dynamodb
    record["eventSourceARN"] = stream_arn
    identity = raw.get("userIdentity")
    if isinstance(identity, Mapping):
        # The API spells these PrincipalId / Type; Lambda events principalId / type.
        record["userIdentity"] = {
            "type": identity.get("type", identity.get("Type")),
            "principalId": identity.get("principalId", identity.get("PrincipalId")),
        }
    return record


def sequence_int(record: Mapping[str, Any]) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


class StreamReader:
    """DynamoDB Streams calls for one stream, with throttling retried (tenacity) and
    the errors a reader must act on turned into `StreamError`s."""

    def __init__(
        self,
        client: DynamoDBStreamsClient,
        stream_arn: str,
        *,
        attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.arn = stream_arn
        self._attempts = attempts
        self._sleep = sleep

    def _call(
        self, operation: Callable[..., Any], attempts: int | None = None, **kwargs: Any
    ) -> Any:
        # GetRecords allows 5 calls per second per shard, shared with every other
        # reader (a Lambda mapping on the same stream): throttling and network errors
        # are retried with backoff; the errors a reader must act on become StreamErrors.
        try:
            return aws.call(
                operation,
                attempts=attempts or self._attempts,
                sleep=self._sleep,
                quiet=attempts is not None,
                **kwargs,
            )
        except Exception as exc:
            code = aws.error_code(exc)
            if code == "ExpiredIteratorException":
                raise IteratorExpired(str(exc)) from exc
            if code == "TrimmedDataAccessException":
                raise RecordsTrimmed(str(exc)) from exc
            if code == "ResourceNotFoundException":
                raise ShardNotFound(str(exc)) from exc
            raise

    def describe(self, attempts: int | None = None) -> StreamInfo:
        """The stream and all its shards (DescribeStream pages 100 shards at a time).

        `attempts` bounds the retries of throttling and network errors (default: the
        reader's); a stream that does not exist is a `StreamNotFound` naming the ARN."""
        shards: list[Shard] = []
        start: str | None = None
        description: Mapping[str, Any] = {}
        while True:
            kwargs: dict[str, Any] = {"StreamArn": self.arn}
            if start is not None:
                kwargs["ExclusiveStartShardId"] = start
            try:
                response = self._call(self.client.describe_stream, attempts, **kwargs)
            except ShardNotFound:
                raise StreamNotFound(
                    f"DynamoDB stream {self.arn} does not exist (region "
                    f"{aws.region_of(self.arn) or '?'}): check the ARN (the table's "
                    "LatestStreamArn) and that the table's stream is enabled"
                ) from None
            description = response["StreamDescription"]
            shards.extend(Shard.parse(s) for s in description.get("Shards", []))
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        return StreamInfo(
            arn=self.arn,
            table=description.get("TableName"),
            status=description.get("StreamStatus"),
            view_type=description.get("StreamViewType"),
            shards=tuple(shards),
        )

    def iterator(self, shard_id: str, position: Position) -> str:
        kwargs: dict[str, Any] = {
            "StreamArn": self.arn,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.sequence is not None:
            kwargs["SequenceNumber"] = position.sequence
        response = self._call(self.client.get_shard_iterator, **kwargs)
        return str(response["ShardIterator"])

    def get_records(
        self, iterator: str, limit: int = MAX_RECORDS_PER_CALL
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page: Lambda-shaped records and the next iterator (None: the shard is
        closed and read to its end)."""
        response = self._call(self.client.get_records, ShardIterator=iterator, Limit=limit)
        records = [lambda_record(r, self.arn) for r in response.get("Records", [])]
        return records, response.get("NextShardIterator") or None

    def read_range(
        self,
        shard_id: str,
        first: str,
        last: str,
        *,
        limit: int = MAX_RECORDS_PER_CALL,
        max_empty_pages: int = 20,
    ) -> list[dict[str, Any]]:
        """The records of one shard with first <= sequence <= last (a failed Lambda
        batch), read while the stream still retains them."""
        low, high = int(first), int(last)
        found: list[dict[str, Any]] = []
        iterator: str | None = self.iterator(shard_id, Position("AT_SEQUENCE_NUMBER", first))
        empty = 0
        while iterator is not None:
            records, iterator = self.get_records(iterator, limit)
            if not records:
                empty += 1
                if empty >= max_empty_pages:
                    raise StreamError(
                        f"shard {shard_id} returned {empty} empty pages before sequence "
                        f"{last}; try again later"
                    )
                self._sleep(0.2)
                continue
            empty = 0
            for record in records:
                sequence = sequence_int(record)
                if sequence > high:
                    return found
                if sequence >= low:
                    found.append(record)
            if sequence_int(records[-1]) >= high:
                return found
        return found  # the shard closed before `last`: that was all of it


def jittered_backoff(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: doubling from about a second
    up to a minute, with jitter so several readers do not retry in step."""
    return float(random.uniform(0.5, 1.0) * min(60.0, 0.5 * 2**failures))  # noqa: S311


# --- stopping cleanly ---------------------------------------------------------------


@contextmanager
def stop_on_signals(stop: threading.Event, what: str = "the current batch") -> Iterator[None]:
    """Make SIGINT (Ctrl-C) and SIGTERM (docker stop, Kubernetes) set `stop`, so a loop
    finishes `what` and returns cleanly; a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print(
            f"cdc: stopping after {what} (Ctrl-C again to interrupt at once)",
            file=sys.stderr,
        )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- tail -----------------------------------------------------------------------------


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

    def _load_checkpoints(self) -> dict[str, int]:
        from cdc.bookkeeping import tables
        from cdc.migrate import ensure_bookkeeping

        replicator = self.replicator
        ensure_bookkeeping(replicator.engine, replicator.schema)
        t = tables(replicator.schema)["cdc_checkpoints"]
        query = select(t.c.shard_id, t.c.last_sequence).where(
            t.c.stream_arn == self.arn, t.c.shard_id != ""
        )
        with replicator.engine.connect() as conn:
            return {row.shard_id: int(row.last_sequence) for row in conn.execute(query)}

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
            if not aws.is_transient(exc):
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
            log.error(
                "shard %s: records after %s are past the stream's 24-hour retention and "
                "were never applied; continuing from the oldest record kept. Run `cdc "
                "backfill` and `cdc verify` to repair the replica.",
                shard_id,
                state.position,
            )
            self.stats.gaps += 1
            state.position, state.iterator = Position("TRIM_HORIZON"), None
            return
        except ShardNotFound:
            log.warning("shard %s no longer exists; skipping it", shard_id)
            self._finish(state)
            return
        except Exception as exc:
            if not aws.is_transient(exc):
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
                first = min(records, key=sequence_int)["dynamodb"]["SequenceNumber"]
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
            last = max(records, key=sequence_int)["dynamodb"]["SequenceNumber"]
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
