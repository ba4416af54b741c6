"""The source-neutral change (one item version of one table, with its key, images,
sequence number and event time) and the RecordFormat a source provides to make them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 4x as much to build
class Change:
    """One stream record, validated. Images are still raw AttributeValue maps."""

    index: int  # position in the batch; outcomes are reported per index
    # The version that orders the changes of one key (cdc/core/versions.py): for a
    # DynamoDB stream record, its stream generation and sequence number in one integer.
    sequence: int
    sequence_number: str  # as delivered: Lambda's itemIdentifier
    stream_arn: str
    source_table: str
    event_name: str
    keys: dict[str, Any]  # raw {"Id": {"N": "101"}}, types checked to be S/N/B
    key_types: dict[str, str]  # {"Id": "N"}
    key_values: dict[str, Any]  # {"Id": Decimal("101")}: str, Decimal or bytes
    new_image: dict[str, Any] | None
    old_image: dict[str, Any] | None
    event_time: datetime | None
    is_ttl_expiry: bool

    @property
    def is_remove(self) -> bool:
        return self.event_name == "REMOVE"


def is_ttl_removal(event_name: object, identity: object) -> bool:
    """A REMOVE made by DynamoDB's TTL (README: Apply rules, `ttl_deletes`): its
    `userIdentity` is the DynamoDB service. Both sources carry it alike."""
    return (
        event_name == "REMOVE"
        and isinstance(identity, dict)
        and identity.get("type") == "Service"
        and identity.get("principalId") == "dynamodb.amazonaws.com"
    )


class RecordFormat(Protocol):
    """The seam between a source and the replicator: how one source's raw records become
    Changes, and what the source needs to hear back about the ones that failed.
    cdc.sources.dynamodb_streams.records.LAMBDA_RECORDS is the DynamoDB Streams one."""

    def parse(self, record: Any, index: int) -> Change:
        """The record as a Change; a RecordError (dead-lettered) if it is not one."""
        ...

    def sequence_of(self, record: Any) -> str | None:
        """The record's position in its stream if it has a usable one."""
        ...

    def hints(self, record: Any) -> dict[str, str]:
        """What can still be read off a record that did not parse (source_table,
        stream_arn, event_name), to help a person find it."""
        ...

    def failure_identifiers(self, records: Sequence[Any], failed: Iterable[int]) -> list[str]:
        """What to report for the records at the indexes `failed` so the source
        delivers them again."""
        ...
