"""Build DynamoDB stream records and Lambda events for tests."""

from __future__ import annotations

import base64
import itertools
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

_serializer = TypeSerializer()
_event_ids = itertools.count(1)

REGION = "eu-central-1"
ACCOUNT = "123456789012"
LABEL = "2026-01-01T00:00:00.000"


def stream_arn(table: str, region: str = REGION) -> str:
    return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}/stream/{LABEL}"


def av(value: Any) -> dict[str, Any]:
    """A Python value (int/Decimal for numbers, bytes, sets) as a DynamoDB AttributeValue,
    in the wire form a stream delivers (binary as base64 text, as in Lambda events)."""
    return _wire(_serializer.serialize(_numbers(value)))


def _numbers(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, set) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return {Decimal(v) for v in value}
    return value


def _wire(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def image(item: dict[str, Any]) -> dict[str, Any]:
    return {k: av(v) for k, v in item.items()}


def record(
    event_name: str,
    keys: dict[str, Any],
    seq: int | str,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    table: str = "Orders",
    event_time: float | None = 1_700_000_000,
    ttl: bool = False,
    raw_keys: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One stream record. `new`/`old` are plain Python items, serialized here."""
    dynamodb: dict[str, Any] = {
        "Keys": raw_keys if raw_keys is not None else image(keys),
        "SequenceNumber": str(seq),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if event_time is not None:
        dynamodb["ApproximateCreationDateTime"] = event_time
    if new is not None:
        dynamodb["NewImage"] = image(new)
    if old is not None:
        dynamodb["OldImage"] = image(old)
    rec: dict[str, Any] = {
        "eventID": f"{next(_event_ids):032x}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn(table),
    }
    if ttl:
        rec["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return rec


def insert(
    keys: dict[str, Any], seq: int | str, item: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return record("INSERT", keys, seq, new={**keys, **(item or {})}, **kw)


def modify(
    keys: dict[str, Any], seq: int | str, item: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return record("MODIFY", keys, seq, new={**keys, **(item or {})}, **kw)


def remove(
    keys: dict[str, Any], seq: int | str, old: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return record("REMOVE", keys, seq, old=None if old is None else {**keys, **old}, **kw)


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


class FakeContext:
    """What the handler reads of Lambda's context object."""

    def __init__(self, remaining_ms: int = 60_000) -> None:
        import time

        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int((self._deadline - time.monotonic()) * 1000))


def record_from_item(
    item: dict[str, Any], key_names: tuple[str, ...], arn: str, seq: int | str = "1"
) -> dict[str, Any]:
    """An INSERT stream record of an item in boto3 client form (binary as bytes), as the
    stream of table ARN `arn` would deliver it; callers change its event and sequence."""
    from cdc.aws.wire import image_to_wire

    wire = image_to_wire(item)
    return {
        "eventID": f"{next(_event_ids):032x}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": arn.split(":")[3],
        "eventSourceARN": arn,
        "dynamodb": {
            "Keys": {name: wire[name] for name in key_names if name in wire},
            "NewImage": wire,
            "SequenceNumber": str(seq),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def create_pk_sk_table(ddb: Any, name: str) -> None:
    """A single-table design's DynamoDB table (boto3 client, moto): keys PK and SK,
    both strings, on demand."""
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
