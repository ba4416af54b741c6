"""Every record format cdc reads, chosen per record by its `eventSource`.

`EVENT_RECORDS` takes what Lambda delivers (`aws:dynamodb`: DynamoDB Streams,
`aws:kinesis`: Kinesis Data Streams for DynamoDB), so one handler serves event source
mappings of both kinds, and `cdc replay` and `cdc tail` use it too. `ANY_RECORDS` also
takes a backfill's snapshot items (`cdc:snapshot`), for `cdc dlq redrive`, which
re-applies what any path dead-lettered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cdc.core.change import Change, RecordFormat
from cdc.core.errors import MalformedRecord
from cdc.sources.dynamodb_streams.records import LAMBDA_RECORDS
from cdc.sources.kinesis.records import EVENT_SOURCE as KINESIS
from cdc.sources.kinesis.records import KINESIS_RECORDS, shard_of
from cdc.sources.snapshots import SNAPSHOT_RECORDS, SNAPSHOT_SOURCE

LAMBDA_FORMATS: dict[str, RecordFormat] = {
    "aws:dynamodb": LAMBDA_RECORDS,
    KINESIS: KINESIS_RECORDS,
}
FORMATS: dict[str, RecordFormat] = {**LAMBDA_FORMATS, SNAPSHOT_SOURCE: SNAPSHOT_RECORDS}


def _source(record: Any) -> Any:
    return record.get("eventSource") if isinstance(record, dict) else None


def batch_format(
    records: Sequence[Any], formats: Mapping[str, RecordFormat] = FORMATS
) -> RecordFormat:
    """The format of a batch: an event source mapping delivers records of one source."""
    for record in records:
        source = _source(record)
        if isinstance(source, str) and source in formats:
            return formats[source]
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


class Formats:
    """A RecordFormat that hands each record to the format its eventSource names; a
    record of another source is malformed (dead-lettered, naming the ones known)."""

    def __init__(self, formats: Mapping[str, RecordFormat]) -> None:
        self.formats = dict(formats)

    def _format(self, record: Any) -> RecordFormat:
        source = _source(record)
        found = self.formats.get(source) if isinstance(source, str) else None
        return LAMBDA_RECORDS if found is None else found

    def parse(self, record: Any, index: int) -> Change:
        source = _source(record)
        if isinstance(record, dict) and source not in self.formats:
            raise MalformedRecord(
                f"eventSource is {source!r}, expected {' or '.join(map(repr, self.formats))}"
            )
        return self._format(record).parse(record, index)

    def sequence_of(self, record: Any) -> str | None:
        return self._format(record).sequence_of(record)

    def hints(self, record: Any) -> dict[str, str]:
        return self._format(record).hints(record)

    def failure_identifiers(self, records: Sequence[Any], failed: Iterable[int]) -> list[str]:
        return batch_format(records, self.formats).failure_identifiers(records, failed)


EVENT_RECORDS = Formats(LAMBDA_FORMATS)
ANY_RECORDS = Formats(FORMATS)
