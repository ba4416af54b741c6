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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from cdc.aws import clients as aws
from cdc.aws import errors as aws_errors
from cdc.aws import wire as aws_wire
from cdc.core.errors import CdcError

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient


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
    # A Kinesis shard made by merging two has a second parent (DynamoDB Streams: never).
    adjacent_parent_id: str | None = None

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
            adjacent_parent_id=raw.get("AdjacentParentShardId") or None,
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

    def done(parent: str | None) -> bool:
        return parent is None or parent not in listed or parent in finished

    ready = [
        s
        for s in shards
        if s.shard_id not in finished and done(s.parent_id) and done(s.adjacent_parent_id)
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
        dynamodb["ApproximateCreationDateTime"] = aws_wire.epoch_seconds(created)
    for name in ("Keys", "NewImage", "OldImage"):
        image = dynamodb.get(name)
        if isinstance(image, Mapping):
            dynamodb[name] = aws_wire.image_to_wire(image)
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

    # A record's position in its shard, as an integer (`read_range` compares them);
    # a subclass for another source's records overrides it.
    position_of = staticmethod(sequence_int)

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
            code = aws_errors.error_code(exc)
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
                sequence = self.position_of(record)
                if sequence > high:
                    return found
                if sequence >= low:
                    found.append(record)
            if self.position_of(records[-1]) >= high:
                return found
        return found  # the shard closed before `last`: that was all of it


def jittered_backoff(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: doubling from about a second
    up to a minute, with jitter so several readers do not retry in step."""
    return float(random.uniform(0.5, 1.0) * min(60.0, 0.5 * 2**failures))  # noqa: S311


# --- stopping cleanly ---------------------------------------------------------------


# --- tail -----------------------------------------------------------------------------
