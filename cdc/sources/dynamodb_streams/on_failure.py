"""Lambda's on-failure destination messages: which shard and sequence range a failed
batch covered, and, in an S3 destination's objects, the records themselves.

The invocation record (Lambda developer guide, "Retain discarded records for a DynamoDB
event source in Lambda") has `requestContext`, `responseContext`, `version`,
`timestamp` and `DDBStreamBatchInfo`; for an S3 destination Lambda adds `payload`, "the
original invocation record as an escaped JSON string": the `{"Records": [...]}` event
the function was given. Its objects are keyed
`aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def batch_info(body: str) -> dict[str, Any]:
    """The `DDBStreamBatchInfo` of an invocation record (sent to SQS directly, or
    through an SNS topic, which wraps it in a notification)."""
    try:
        document = json.loads(body)
    except ValueError:
        raise ValueError("the message body is not JSON") from None
    return _batch_info(document)


def _batch_info(document: Any) -> dict[str, Any]:
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


@dataclass(frozen=True)
class FailedBatch:
    """An S3 destination's object: where the batch was (`info`) and its records, or
    None when the object has no `payload` (then they must be read back from the stream,
    as for an SQS message)."""

    info: dict[str, Any]
    records: list[Any] | None


def failed_batch(body: bytes) -> FailedBatch:
    """Parse an on-failure destination object. Raises ValueError saying what is wrong
    with it; the records themselves are not checked here (a malformed record is the
    replicator's to dead-letter, as in a Lambda batch)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the object is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError("the object is not JSON") from None
    info = _batch_info(document)
    if "payload" not in document:
        return FailedBatch(info, None)
    payload = document["payload"]
    if isinstance(payload, str):  # documented: the event as an escaped JSON string
        try:
            payload = json.loads(payload)
        except ValueError:
            raise ValueError("its payload is not a JSON document") from None
    # An object rather than a string is accepted too (emulators write it so).
    records = payload.get("Records") if isinstance(payload, dict) else None
    if not isinstance(records, list):
        raise ValueError("its payload is not a Lambda event (no 'Records' list)")
    return FailedBatch(info, records)
