"""A DynamoDB stream record (Lambda event shape) → a validated `Change`. Pure.

Validation follows the failure rules (README: Failure handling): anything that is not a
DynamoDB stream record raises `MalformedRecord` with a message that says what is wrong,
so the record can be dead-lettered and a person can act on it. Images are validated
later, when the table's mapping decodes them, because only then is it known which
attributes matter.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from cdc.core.change import Change, is_ttl_removal
from cdc.core.errors import MalformedRecord, RecordError
from cdc.core.keys import check_keys
from cdc.core.versions import stream_generation, stream_version

EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
MAX_SEQUENCE_DIGITS = 40
_SEQUENCE = re.compile(r"[0-9]{1,40}")
# arn:PARTITION:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL, in printable ASCII (the
# label is a timestamp): the ARN is stored in checkpoints, so it must be storable text.
_STREAM_ARN = re.compile(
    r"arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/([^/]+)/stream/([!-.0-~]+)"
)
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


def table_from_stream_arn(arn: object) -> str:
    """The table name inside a DynamoDB stream ARN, validated (cached: a batch carries
    one or a few ARNs, a thousand times)."""
    if isinstance(arn, str):
        table = _ARN_TABLES.get(arn)
        if table is not None:
            return table
    table = _table_from_stream_arn(arn)
    if len(_ARN_TABLES) < 10_000:
        _ARN_TABLES[str(arn)] = table
    return table


_ARN_TABLES: dict[str, str] = {}


def _table_from_stream_arn(arn: object) -> str:
    match = _STREAM_ARN.fullmatch(arn) if isinstance(arn, str) else None
    if match is None:
        raise MalformedRecord(f"eventSourceARN {arn!r} is not a DynamoDB stream ARN")
    table = match.group(1)
    if _TABLE_NAME.fullmatch(table) is None:
        raise MalformedRecord(
            f"eventSourceARN names table {table!r}, which DynamoDB would not allow "
            "(3-255 characters of A-Z a-z 0-9 _ . -)"
        )
    return table


def sequence_of(record: object) -> str | None:
    """The record's SequenceNumber if it has a usable one (for reporting failures)."""
    if isinstance(record, dict):
        dynamodb = record.get("dynamodb")
        if isinstance(dynamodb, dict):
            seq = dynamodb.get("SequenceNumber")
            if isinstance(seq, str) and _SEQUENCE.fullmatch(seq):
                return seq
    return None


def failure_identifiers(records: Sequence[object], failed: Iterable[int]) -> list[str]:
    """Lambda's itemIdentifiers for the records at the indexes `failed` (not handled:
    to be delivered again). A dead-lettered record is handled and needs none.

    Lambda retries a shard's batch from the lowest sequence number reported. A failed
    record without a usable SequenceNumber is covered by the nearest record before it
    that has one (retrying a record already applied is harmless: the guard finds it
    stale); with none before it, "" makes Lambda retry the whole batch, the only way
    left not to lose it.
    """
    identifiers: dict[str, None] = {}  # in order, each once
    for index in failed:
        identifier = ""
        for earlier in range(index, -1, -1):
            sequence = sequence_of(records[earlier])
            if sequence is not None:
                identifier = sequence
                break
        identifiers[identifier] = None
    return list(identifiers)


def parse_record(record: object, index: int) -> Change:
    if not isinstance(record, dict):
        raise MalformedRecord(f"record is a {type(record).__name__}, not an object")
    source = record.get("eventSource")
    if source != "aws:dynamodb":
        raise MalformedRecord(f"eventSource is {source!r}, expected 'aws:dynamodb'")
    event_name = record.get("eventName")
    if type(event_name) is not str or event_name not in EVENT_NAMES:  # (a list is unhashable)
        raise MalformedRecord(f"eventName {event_name!r} is not INSERT, MODIFY or REMOVE")
    arn = record.get("eventSourceARN")
    stream = _STREAMS.get(arn) if type(arn) is str else None
    if stream is None:
        stream = _stream_of(arn)
    arn_text, table, generation_base = stream
    dynamodb = record.get("dynamodb")
    if not isinstance(dynamodb, dict):
        raise MalformedRecord("record has no 'dynamodb' object")

    seq_text = dynamodb.get("SequenceNumber")
    if not (
        type(seq_text) is str
        and 0 < len(seq_text) <= MAX_SEQUENCE_DIGITS
        and seq_text.isdigit()
        and seq_text.isascii()
    ):
        raise MalformedRecord(
            f"dynamodb.SequenceNumber {seq_text!r} is not a decimal string of 1-40 digits"
        )

    keys = dynamodb.get("Keys")
    key_types, key_values = check_keys(keys)

    new_image = dynamodb.get("NewImage")
    if new_image is not None and not isinstance(new_image, dict):
        raise _not_an_object("NewImage", new_image)
    old_image = dynamodb.get("OldImage")
    if old_image is not None and not isinstance(old_image, dict):
        raise _not_an_object("OldImage", old_image)
    moment = dynamodb.get("ApproximateCreationDateTime")
    if moment is not None:
        cached = _EVENT_TIMES.get(moment) if type(moment) is int else None
        moment = cached if cached is not None else _event_time(moment)
    return Change(
        index=index,
        # The version: (stream generation, sequence number) as one integer (README:
        # Stream generations); `generation_base` is the generation times 10^40.
        sequence=generation_base + int(seq_text),
        sequence_number=seq_text,
        stream_arn=arn_text,
        source_table=table,
        event_name=event_name,
        keys=dynamodb["Keys"],  # check_keys made sure it is there, a dict
        key_types=key_types,
        key_values=key_values,
        new_image=new_image,
        old_image=old_image,
        event_time=moment,
        is_ttl_expiry=event_name == "REMOVE"
        and is_ttl_removal(event_name, record.get("userIdentity")),
    )


# What a record's eventSourceARN gives, by ARN: (the ARN, its table, its stream
# generation * 10^40, `stream_version`'s term), worked out once per ARN instead of per
# record (a batch carries one or a few).
_STREAMS: dict[str, tuple[str, str, int]] = {}


def _stream_of(arn: object) -> tuple[str, str, int]:
    table = table_from_stream_arn(arn)  # MalformedRecord unless a stream ARN (a str)
    text = str(arn)
    stream = (text, table, stream_version(stream_generation(text), 0))
    if len(_STREAMS) < 10_000:
        _STREAMS[text] = stream
    return stream


def _image(dynamodb: dict[str, Any], name: str) -> dict[str, Any] | None:
    image = dynamodb.get(name)
    if image is None:
        return None
    if not isinstance(image, dict):
        raise _not_an_object(name, image)
    return image


def _not_an_object(name: str, image: object) -> MalformedRecord:
    return MalformedRecord(f"dynamodb.{name} is a {type(image).__name__}, not an object")


_EVENT_TIMES: dict[object, datetime] = {}


def _event_time(value: object) -> datetime | None:
    """ApproximateCreationDateTime: epoch seconds in Lambda events (milliseconds or
    microseconds in some other producers, told apart by magnitude). Optional. Cached:
    a batch's records share a few distinct seconds."""
    if value is None:
        return None
    cached = _EVENT_TIMES.get(value) if type(value) is int else None
    if cached is not None:
        return cached
    moment = _parse_event_time(value)
    if type(value) is int and len(_EVENT_TIMES) < 4096:
        _EVENT_TIMES[value] = moment
    return moment


def _parse_event_time(value: object) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRecord(f"dynamodb.ApproximateCreationDateTime {value!r} is not a number")
    seconds = float(value)
    if seconds > 1e14:
        seconds /= 1e6
    elif seconds > 1e11:
        seconds /= 1e3
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedRecord(
            f"dynamodb.ApproximateCreationDateTime {value!r} is not a valid time"
        ) from None


def hints(record: Any) -> dict[str, str]:
    """What can still be read off a malformed record, to help a person find it."""
    if not isinstance(record, dict):
        return {}
    hints: dict[str, str] = {}
    arn = record.get("eventSourceARN")
    if isinstance(arn, str):
        hints["stream_arn"] = arn
        with contextlib.suppress(RecordError):
            hints["source_table"] = table_from_stream_arn(arn)
    name = record.get("eventName")
    if isinstance(name, str):
        hints["event_name"] = name
    return hints


class LambdaRecords:
    """DynamoDB stream records as Lambda delivers them: the replicator's RecordFormat
    for the handler, `cdc replay`, `cdc tail` (which builds the same shape) and the
    redrive and DLQ commands."""

    parse = staticmethod(parse_record)
    sequence_of = staticmethod(sequence_of)
    hints = staticmethod(hints)
    failure_identifiers = staticmethod(failure_identifiers)


LAMBDA_RECORDS = LambdaRecords()
