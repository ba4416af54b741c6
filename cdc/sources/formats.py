"""Every record format cdc reads, by the `eventSource` its records carry: for the
commands that meet records of any source again (`cdc dlq redrive` re-applies what
any path dead-lettered)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cdc.core.change import Change, RecordFormat
from cdc.core.errors import MalformedRecord
from cdc.sources.dynamodb_streams.records import LAMBDA_RECORDS
from cdc.sources.snapshots import SNAPSHOT_RECORDS, SNAPSHOT_SOURCE

FORMATS: dict[str, RecordFormat] = {
    "aws:dynamodb": LAMBDA_RECORDS,
    SNAPSHOT_SOURCE: SNAPSHOT_RECORDS,
}


def format_of(record: Any) -> RecordFormat | None:
    source = record.get("eventSource") if isinstance(record, dict) else None
    return FORMATS.get(source) if isinstance(source, str) else None


class AnyRecords:
    """A RecordFormat that hands each record to the format its eventSource names."""

    @staticmethod
    def parse(record: Any, index: int) -> Change:
        found = format_of(record)
        if found is None:
            source = record.get("eventSource") if isinstance(record, dict) else None
            raise MalformedRecord(
                f"eventSource is {source!r}, expected one of {', '.join(map(repr, FORMATS))}"
            )
        return found.parse(record, index)

    @staticmethod
    def sequence_of(record: Any) -> str | None:
        found = format_of(record)
        return found.sequence_of(record) if found is not None else None

    @staticmethod
    def hints(record: Any) -> dict[str, str]:
        found = format_of(record)
        return found.hints(record) if found is not None else LAMBDA_RECORDS.hints(record)

    @staticmethod
    def failure_identifiers(records: Sequence[Any], failed: Iterable[int]) -> list[str]:
        return LAMBDA_RECORDS.failure_identifiers(records, failed)


ANY_RECORDS = AnyRecords()
