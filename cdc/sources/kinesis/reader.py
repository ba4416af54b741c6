"""Reading a Kinesis data stream fed by DynamoDB, without Lambda (`cdc tail
arn:aws:kinesis:…:stream/NAME`).

The DynamoDB Streams reader's contract (cdc/sources/dynamodb_streams/reader.py) holds
here too, with Kinesis's calls: shards from ListShards (a shard made by a split has a
parent, one made by a merge two: a child is read only after its parents are read to
their end, so a key's changes are applied in the order the stream holds them), iterators
from GetShardIterator (expire after 5 minutes), pages from GetRecords, whose records
are turned into the `aws:kinesis` records a Lambda event carries (`kinesis_record`).
A Kinesis stream keeps records for 24 hours to 365 days.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cdc.aws import clients as aws
from cdc.sources.dynamodb_streams.reader import (
    MAX_RECORDS_PER_CALL,
    Position,
    Shard,
    ShardNotFound,
    StreamInfo,
    StreamNotFound,
    StreamReader,
)
from cdc.sources.kinesis.records import EVENT_SOURCE

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient


def kinesis_record(raw: Mapping[str, Any], stream_arn: str, shard_id: str) -> dict[str, Any]:
    """A GetRecords record in the shape a Lambda event carries it (botocore gives the
    data as bytes and the arrival time as a datetime)."""
    data = raw.get("Data", b"")
    if isinstance(data, str):
        data = data.encode("utf-8")
    arrived = raw.get("ApproximateArrivalTimestamp")
    sequence = str(raw["SequenceNumber"])
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": raw.get("PartitionKey"),
            "sequenceNumber": sequence,
            "data": base64.b64encode(bytes(data)).decode("ascii"),
            "approximateArrivalTimestamp": (
                arrived.timestamp() if isinstance(arrived, datetime) else arrived
            ),
        },
        "eventSource": EVENT_SOURCE,
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "awsRegion": aws.region_of(stream_arn),
        "eventSourceARN": stream_arn,
    }


def kinesis_sequence(record: Mapping[str, Any]) -> int:
    return int(record["kinesis"]["sequenceNumber"])


class KinesisReader(StreamReader):
    """Kinesis calls for one stream, with the StreamReader's retries and errors."""

    position_of = staticmethod(kinesis_sequence)

    def __init__(self, client: KinesisClient, stream_arn: str, **kwargs: Any) -> None:
        super().__init__(client, stream_arn, **kwargs)  # type: ignore[arg-type]
        self.kinesis = client
        # Records name their shard (eventID) and GetRecords does not: each iterator's
        # shard, as handed out.
        self._shard_of: dict[str, str] = {}

    def describe(self, attempts: int | None = None) -> StreamInfo:
        shards: list[Shard] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"NextToken": token} if token else {"StreamARN": self.arn}
            try:
                response = self._call(self.kinesis.list_shards, attempts, **kwargs)
            except ShardNotFound:
                raise StreamNotFound(
                    f"Kinesis stream {self.arn} does not exist (region "
                    f"{aws.region_of(self.arn) or '?'}): check the ARN (the stream the "
                    "table's Kinesis streaming destination writes to)"
                ) from None
            shards.extend(Shard.parse(s) for s in response.get("Shards", []))
            token = response.get("NextToken")
            if not token:
                break
        return StreamInfo(self.arn, None, "ACTIVE", None, tuple(shards))

    def iterator(self, shard_id: str, position: Position) -> str:
        kwargs: dict[str, Any] = {
            "StreamARN": self.arn,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.sequence is not None:
            kwargs["StartingSequenceNumber"] = position.sequence
        response = self._call(self.kinesis.get_shard_iterator, **kwargs)
        iterator = str(response["ShardIterator"])
        self._shard_of[iterator] = shard_id
        return iterator

    def get_records(
        self, iterator: str, limit: int = MAX_RECORDS_PER_CALL
    ) -> tuple[list[dict[str, Any]], str | None]:
        response = self._call(
            self.kinesis.get_records, ShardIterator=iterator, Limit=limit, StreamARN=self.arn
        )
        shard = self._shard_of.pop(iterator, "")
        records = [kinesis_record(r, self.arn, shard) for r in response.get("Records", [])]
        following = response.get("NextShardIterator") or None
        if following is not None:
            self._shard_of[following] = shard
        return records, following
