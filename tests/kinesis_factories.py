"""Build Kinesis records of DynamoDB changes (Lambda's `aws:kinesis` shape) for tests,
as a table's Kinesis streaming destination writes them: the change as JSON, base64 in
`kinesis.data`, binary values base64-encoded twice."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

from tests.factories import ACCOUNT, REGION, image

_sequence = itertools.count(1)
STREAM = "orders-changes"
BASE_MS = 1_700_000_000_000  # a creation time in milliseconds


def kinesis_arn(name: str = STREAM, region: str = REGION) -> str:
    return f"arn:aws:kinesis:{region}:{ACCOUNT}:stream/{name}"


def next_sequence() -> str:
    """A 56-digit Kinesis sequence number, increasing."""
    return f"4959033827149025660855969253836157109592157598913{next(_sequence):07d}"


def _twice(av: Any) -> Any:
    """Binary payloads base64-encoded once more, as Kinesis delivers them."""
    if isinstance(av, dict) and len(av) == 1:
        ((tag, payload),) = av.items()
        if tag == "B":
            return {"B": base64.b64encode(payload.encode("ascii")).decode("ascii")}
        if tag == "BS":
            return {"BS": [base64.b64encode(p.encode("ascii")).decode("ascii") for p in payload]}
        if tag == "M":
            return {"M": {k: _twice(v) for k, v in payload.items()}}
        if tag == "L":
            return {"L": [_twice(v) for v in payload]}
    return av


def change_json(
    event_name: str,
    keys: dict[str, Any],
    created: int,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    table: str = "Orders",
    ttl: bool = False,
    precision: str | None = None,
) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": {k: _twice(v) for k, v in image(keys).items()},
        "SizeBytes": 100,
    }
    if precision is not None:
        dynamodb["ApproximateCreationDateTimePrecision"] = precision
    if new is not None:
        dynamodb["NewImage"] = {k: _twice(v) for k, v in image(new).items()}
    if old is not None:
        dynamodb["OldImage"] = {k: _twice(v) for k, v in image(old).items()}
    return {
        "awsRegion": REGION,
        "eventID": "6f773704-d244-414f-9590-5e9e9045409d",
        "eventName": event_name,
        "userIdentity": (
            {"type": "Service", "principalId": "dynamodb.amazonaws.com"} if ttl else None
        ),
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": dynamodb,
        "eventSource": "aws:dynamodb",
    }


def wrap(
    change: dict[str, Any] | bytes,
    *,
    stream: str = STREAM,
    shard: str = "shardId-000000000000",
    sequence: str | None = None,
) -> dict[str, Any]:
    """A change as the `aws:kinesis` record Lambda delivers."""
    data = change if isinstance(change, bytes) else json.dumps(change).encode()
    seq = sequence or next_sequence()
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "0AB18464EFEE6043E48DD4475DABA453",
            "sequenceNumber": seq,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": 1700000000.123,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/cdc",
        "awsRegion": REGION,
        "eventSourceARN": kinesis_arn(stream),
    }


def krecord(event_name: str, keys: dict[str, Any], created: int, **kw: Any) -> dict[str, Any]:
    wrap_kw = {k: kw.pop(k) for k in ("stream", "shard", "sequence") if k in kw}
    return wrap(change_json(event_name, keys, created, **kw), **wrap_kw)


def kinsert(
    keys: dict[str, Any], created: int, item: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return krecord("INSERT", keys, created, new={**keys, **(item or {})}, **kw)


def kmodify(
    keys: dict[str, Any], created: int, item: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return krecord("MODIFY", keys, created, new={**keys, **(item or {})}, **kw)


def kremove(keys: dict[str, Any], created: int, **kw: Any) -> dict[str, Any]:
    return krecord("REMOVE", keys, created, old=keys, **kw)
