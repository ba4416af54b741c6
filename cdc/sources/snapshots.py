"""Items read by a Scan (backfill, verify, repair) presented as changes, placed at the
snapshot version of the table's current stream (cdc/core/versions.py): below every record
of that stream, above every record of each earlier stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc.aws import clients as aws
from cdc.aws import wire as aws_wire
from cdc.core.change import Change
from cdc.core.versions import snapshot_version, stream_generation
from cdc.sources.dynamodb_streams.records import LambdaRecords, parse_record

if TYPE_CHECKING:
    pass


STREAM_LABEL = "backfill"  # the synthetic stream label of backfilled records


BACKFILL_SEQUENCE = "0"  # below every real sequence number: never overwrites


def backfill_record(
    item: dict[str, Any], source: aws.SourceTable, stream_arn: str
) -> dict[str, Any]:
    """A scanned item as the INSERT record Lambda would deliver, with sequence 0."""
    image = aws_wire.image_to_wire(item)
    return {
        "eventID": "backfill",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": source.region,
        "eventSourceARN": stream_arn,
        "dynamodb": {
            # Scan returns whole items, keys included; a record missing one is
            # dead-lettered by the apply path like any malformed record.
            "Keys": {name: image[name] for name in source.key_names if name in image},
            "NewImage": image,
            "SequenceNumber": BACKFILL_SEQUENCE,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def snapshot_version_of(source: aws.SourceTable) -> int:
    """The version of a snapshot of `source` taken now: its latest stream's generation
    (0 when the table never had a stream) * 10^40."""
    return snapshot_version(stream_generation(source.stream_arn or ""))


class SnapshotRecords(LambdaRecords):
    """The Lambda record format for snapshot records: each change gets `version`
    (`snapshot_version_of`) instead of the version its synthetic ARN would give."""

    def __init__(self, version: int) -> None:
        self.version = version

    def parse(self, record: Any, index: int) -> Change:
        change = parse_record(record, index)
        change.sequence = self.version
        return change
