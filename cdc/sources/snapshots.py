"""Items read by a Scan (backfill, verify) presented as changes: sequence 0, below every
real stream sequence number, so a snapshot never overwrites a streamed version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc.aws import clients as aws
from cdc.aws import wire as aws_wire

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
