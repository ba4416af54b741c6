"""A Kinesis record carrying a DynamoDB change (Lambda event shape) → a validated
`Change`. Pure.

What differs from a DynamoDB Streams record (README: Kinesis Data Streams):

* the change is JSON, base64-encoded in `kinesis.data`: `tableName`, `eventName`,
  `userIdentity` (null, or the TTL service principal), `recordFormat`
  (`application/json`) and `dynamodb` with `Keys`, `NewImage`, `OldImage`,
  `SizeBytes` and `ApproximateCreationDateTime`;
* there is no DynamoDB SequenceNumber: a key's changes are ordered by
  `ApproximateCreationDateTime`, in milliseconds or (a destination enabled with
  `ApproximateCreationDateTimePrecision = MICROSECOND`) microseconds. The version is
  that time in microseconds (milliseconds times 1000). The precision is the record's
  `ApproximateCreationDateTimePrecision` when it says, else told by magnitude: below
  10^14 is milliseconds (until the year 5138), above is microseconds (after 1973);
* binary values (`B`, `BS`) arrive base64-encoded twice (the JSON carries the base64
  of the base64 text DynamoDB uses on the wire): they are decoded once here, so the
  image is what a DynamoDB Streams record would carry;
* the record's own position is `kinesis.sequenceNumber` (up to 128 digits): Lambda's
  itemIdentifier, and the shard is the prefix of `eventID` (`shardId-…:<seq>`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cdc.core.change import Change, is_ttl_removal
from cdc.core.errors import DecodeError, MalformedRecord, RecordError
from cdc.core.keys import check_keys
from cdc.sources.dynamodb_streams.records import (
    EVENT_NAMES,
    _image,
)

EVENT_SOURCE = "aws:kinesis"
MAX_SEQUENCE_DIGITS = 128
_SEQUENCE = re.compile(r"[0-9]{1,128}")
# arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME (names: 1-128 of A-Z a-z 0-9 _ . -)
_STREAM_ARN = re.compile(
    r"arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[A-Za-z0-9_.-]{1,128}"
)
_SHARD = re.compile(r"(shardId-[0-9]{1,20}):")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
MICROSECONDS_ABOVE = 10**14  # a creation time at or above this is in microseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_stream_arn(arn: object) -> bool:
    return isinstance(arn, str) and _STREAM_ARN.fullmatch(arn) is not None


def stream_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def sequence_of(record: object) -> str | None:
    """The record's kinesis.sequenceNumber if it has a usable one."""
    if isinstance(record, dict):
        kinesis = record.get("kinesis")
        if isinstance(kinesis, dict):
            seq = kinesis.get("sequenceNumber")
            if isinstance(seq, str) and _SEQUENCE.fullmatch(seq):
                return seq
    return None


def shard_of(record: object) -> str:
    """The shard named by the record's eventID (`shardId-000000000000:<seq>`), or ""."""
    if isinstance(record, dict):
        event_id = record.get("eventID")
        if isinstance(event_id, str):
            match = _SHARD.match(event_id)
            if match is not None:
                return match.group(1)
    return ""


def failure_identifiers(records: Sequence[object], failed: Iterable[int]) -> list[str]:
    """Lambda's itemIdentifiers (kinesis.sequenceNumber) for the records at `failed`.
    As for DynamoDB Streams (cdc/sources/dynamodb_streams/records.py), a record without
    a usable one is covered by the nearest record before it that has one, and "" (retry
    the whole batch) when there is none."""
    identifiers: dict[str, None] = {}
    for index in failed:
        identifier = ""
        for earlier in range(index, -1, -1):
            sequence = sequence_of(records[earlier])
            if sequence is not None:
                identifier = sequence
                break
        identifiers[identifier] = None
    return list(identifiers)


def version_of(value: object, precision: object = None) -> int:
    """ApproximateCreationDateTime as the version: microseconds since the epoch."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or value <= 0:
        raise MalformedRecord(
            f"dynamodb.ApproximateCreationDateTime {value!r} is not a positive whole number "
            "of milliseconds or microseconds"
        )
    if precision == "MICROSECOND":
        return value
    if precision == "MILLISECOND" or value < MICROSECONDS_ABOVE:
        return value * 1000
    return value


def event_time(version: int) -> datetime | None:
    try:
        return _EPOCH + timedelta(microseconds=version)
    except OverflowError:
        return None


def decode_data(record: dict[str, Any]) -> dict[str, Any]:
    """The change JSON inside `kinesis.data`."""
    return _decode(record)[0]


def _decode(record: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    kinesis = record.get("kinesis")
    if not isinstance(kinesis, dict):
        raise MalformedRecord("record has no 'kinesis' object")
    data = kinesis.get("data")
    if not isinstance(data, str):
        raise MalformedRecord("kinesis.data is missing or not a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRecord("kinesis.data is not valid base64") from None
    try:
        change = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedRecord(
            "kinesis.data is not a JSON change record (is this stream fed by a DynamoDB "
            "table's Kinesis streaming destination?)"
        ) from None
    if not isinstance(change, dict):
        raise MalformedRecord(f"kinesis.data holds a {type(change).__name__}, not an object")
    return change, raw


def _unwrap_binary(av: Any, path: str) -> Any:
    """One AttributeValue with its binary payloads decoded once (see the module doc)."""
    if type(av) is not dict or len(av) != 1:
        return av  # the decoder reports it, naming the attribute
    ((tag, payload),) = av.items()
    if tag == "B":
        return {"B": _once(payload, path)}
    if tag == "BS" and isinstance(payload, list):
        return {"BS": [_once(p, path) for p in payload]}
    if tag == "M" and isinstance(payload, dict):
        return {"M": {k: _unwrap_binary(v, f"{path}.{k}") for k, v in payload.items()}}
    if tag == "L" and isinstance(payload, list):
        return {"L": [_unwrap_binary(v, f"{path}[{i}]") for i, v in enumerate(payload)]}
    return av


def _once(payload: object, path: str) -> object:
    if not isinstance(payload, str):
        return payload
    try:
        inner = base64.b64decode(payload, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise DecodeError(
            path,
            "binary value is not base64 of base64 text, as Kinesis Data Streams for "
            "DynamoDB writes binary values",
        ) from None
    return inner


def _unwrap_image(image: Any, where: str) -> Any:
    if not isinstance(image, dict):
        return image
    return {name: _unwrap_binary(av, f"{where}.{name}") for name, av in image.items()}


def parse_record(record: object, index: int) -> Change:
    if not isinstance(record, dict):
        raise MalformedRecord(f"record is a {type(record).__name__}, not an object")
    source = record.get("eventSource")
    if source != EVENT_SOURCE:
        raise MalformedRecord(f"eventSource is {source!r}, expected {EVENT_SOURCE!r}")
    arn = record.get("eventSourceARN")
    if not is_stream_arn(arn):
        raise MalformedRecord(f"eventSourceARN {arn!r} is not a Kinesis stream ARN")
    sequence_number = sequence_of(record)
    if sequence_number is None:
        seq = (record.get("kinesis") or {}).get("sequenceNumber")
        raise MalformedRecord(
            f"kinesis.sequenceNumber {seq!r} is not a decimal string of 1-128 digits"
        )
    change, raw = _decode(record)
    fmt = change.get("recordFormat", "application/json")
    if fmt not in (None, "application/json"):
        raise MalformedRecord(f"recordFormat {fmt!r} is not 'application/json'")
    table = change.get("tableName")
    if not isinstance(table, str) or _TABLE_NAME.fullmatch(table) is None:
        raise MalformedRecord(
            f"tableName {table!r} is not a DynamoDB table name "
            "(3-255 characters of A-Z a-z 0-9 _ . -)"
        )
    event_name = change.get("eventName")
    if type(event_name) is not str or event_name not in EVENT_NAMES:
        raise MalformedRecord(f"eventName {event_name!r} is not INSERT, MODIFY or REMOVE")
    dynamodb = change.get("dynamodb")
    if not isinstance(dynamodb, dict):
        raise MalformedRecord("change has no 'dynamodb' object")
    version = version_of(
        dynamodb.get("ApproximateCreationDateTime"),
        dynamodb.get("ApproximateCreationDateTimePrecision"),
    )
    binary = b'"B' in raw  # "B" or "BS" somewhere: walk the images
    keys = dynamodb.get("Keys")
    keys, key_types, key_values = _check_keys(_unwrap_image(keys, "Keys") if binary else keys)
    new_image = _image(dynamodb, "NewImage")
    old_image = _image(dynamodb, "OldImage")
    if binary:
        new_image = _unwrap_image(new_image, "NewImage")
        old_image = _unwrap_image(old_image, "OldImage")
    is_ttl = is_ttl_removal(event_name, change.get("userIdentity"))
    return Change(
        index=index,
        sequence=version,
        sequence_number=sequence_number,
        stream_arn=str(arn),
        source_table=table,
        event_name=event_name,
        keys=keys,
        key_types=key_types,
        key_values=key_values,
        new_image=new_image,
        old_image=old_image,
        event_time=event_time(version),
        is_ttl_expiry=is_ttl,
    )


def _check_keys(keys: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The keys, and the type and value of each key attribute, validated as a DynamoDB
    Streams record's (cdc/core/keys.py)."""
    key_types, key_values = check_keys(keys)
    return keys, key_types, key_values


def hints(record: Any) -> dict[str, str]:
    """What can still be read off a record that did not parse."""
    if not isinstance(record, dict):
        return {}
    found: dict[str, str] = {}
    arn = record.get("eventSourceARN")
    if isinstance(arn, str):
        found["stream_arn"] = arn
    with contextlib.suppress(RecordError, AttributeError):
        change = decode_data(record)
        table, name = change.get("tableName"), change.get("eventName")
        if isinstance(table, str):
            found["source_table"] = table
        if isinstance(name, str):
            found["event_name"] = name
    return found


class KinesisRecords:
    """Kinesis records of DynamoDB changes as Lambda delivers them (and `cdc tail`
    builds them): a RecordFormat (cdc/core/change.py)."""

    parse = staticmethod(parse_record)
    sequence_of = staticmethod(sequence_of)
    hints = staticmethod(hints)
    failure_identifiers = staticmethod(failure_identifiers)


KINESIS_RECORDS = KinesisRecords()
