"""Lambda events of either source: the RecordFormat that picks each record's format by
its `eventSource` (`aws:dynamodb`: DynamoDB Streams, `aws:kinesis`: Kinesis Data
Streams for DynamoDB), so one handler serves event source mappings of both kinds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cdc.core.change import Change, RecordFormat
from cdc.core.errors import MalformedRecord
from cdc.sources.dynamodb_streams.records import LAMBDA_RECORDS
from cdc.sources.kinesis.records import EVENT_SOURCE as KINESIS
from cdc.sources.kinesis.records import KINESIS_RECORDS, shard_of

FORMATS: dict[str, RecordFormat] = {"aws:dynamodb": LAMBDA_RECORDS, KINESIS: KINESIS_RECORDS}


def format_of(record: Any) -> RecordFormat:
    source = record.get("eventSource") if isinstance(record, dict) else None
    return FORMATS.get(source, LAMBDA_RECORDS) if isinstance(source, str) else LAMBDA_RECORDS


def batch_format(records: Sequence[Any]) -> RecordFormat:
    """The format of a batch: an event source mapping delivers records of one source."""
    for record in records:
        source = record.get("eventSource") if isinstance(record, dict) else None
        if isinstance(source, str) and source in FORMATS:
            return FORMATS[source]
    return LAMBDA_RECORDS


def batch_shard(records: Sequence[Any]) -> str:
    """The shard a Kinesis batch came from (Lambda delivers one shard per batch); ""
    for DynamoDB Streams, whose Lambda records do not say."""
    if batch_format(records) is KINESIS_RECORDS:
        for record in records:
            shard = shard_of(record)
            if shard:
                return shard
    return ""


class EventRecords:
    """DynamoDB Streams and Kinesis records: the replicator's RecordFormat for the
    handler, `cdc replay`, `cdc tail` and the dead-letter commands."""

    @staticmethod
    def parse(record: Any, index: int) -> Change:
        source = record.get("eventSource") if isinstance(record, dict) else None
        if isinstance(record, dict) and source not in FORMATS:
            raise MalformedRecord(
                f"eventSource is {source!r}, expected 'aws:dynamodb' or {KINESIS!r}"
            )
        return format_of(record).parse(record, index)

    @staticmethod
    def sequence_of(record: Any) -> str | None:
        return format_of(record).sequence_of(record)

    @staticmethod
    def hints(record: Any) -> dict[str, str]:
        return format_of(record).hints(record)

    @staticmethod
    def failure_identifiers(records: Sequence[Any], failed: Iterable[int]) -> list[str]:
        return batch_format(records).failure_identifiers(records, failed)


EVENT_RECORDS = EventRecords()
