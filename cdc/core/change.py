"""The source-neutral change: one item version of one table, with its key, images,
sequence number and event time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 4x as much to build
class Change:
    """One stream record, validated. Images are still raw AttributeValue maps."""

    index: int  # position in the batch; outcomes are reported per index
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
