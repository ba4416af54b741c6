"""Lambda's on-failure destination messages: which shard and sequence range a failed
batch covered."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


def batch_info(body: str) -> dict[str, Any]:
    """The `DDBStreamBatchInfo` of an invocation record (sent to SQS directly, or
    through an SNS topic, which wraps it in a notification)."""
    try:
        document = json.loads(body)
    except ValueError:
        raise ValueError("the message body is not JSON") from None
    if (
        isinstance(document, dict)
        and "DDBStreamBatchInfo" not in document
        and "KinesisBatchInfo" not in document
        and document.get("Type") == "Notification"
        and isinstance(document.get("Message"), str)
    ):
        return batch_info(document["Message"])
    # A Kinesis mapping's record names its batch the same way (README: Kinesis Data
    # Streams), under KinesisBatchInfo.
    kind = "DDBStreamBatchInfo"
    if isinstance(document, dict) and "DDBStreamBatchInfo" not in document:
        kind = "KinesisBatchInfo" if "KinesisBatchInfo" in document else kind
    info = document.get(kind) if isinstance(document, dict) else None
    if not isinstance(info, dict):
        raise ValueError(
            "not a DynamoDB stream or Kinesis invocation record (no DDBStreamBatchInfo or "
            "KinesisBatchInfo)"
        )
    for name in ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber"):
        if not isinstance(info.get(name), str) or not info[name]:
            raise ValueError(f"{kind} has no {name}")
    for name in ("startSequenceNumber", "endSequenceNumber"):
        if not (info[name].isascii() and info[name].isdigit()):  # ASCII digits only
            raise ValueError(f"{kind}.{name} {info[name]!r} is not a sequence number")
    return info
