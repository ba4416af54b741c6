"""Kinesis records of DynamoDB changes → Changes (cdc/sources/kinesis/records.py), pure:
the real sample, versions from ms and µs creation times, binary values decoded twice,
and every way a record can be malformed, with a message a person can act on."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from cdc.core.errors import DecodeError, MalformedRecord, RecordError
from cdc.core.versions import sequence_of
from cdc.sources.formats import EVENT_RECORDS, batch_shard
from cdc.sources.kinesis.records import KINESIS_RECORDS, parse_record, version_of
from tests.factories import insert
from tests.kinesis_factories import BASE_MS, change_json, kinsert, kremove, wrap

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load(name: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads((EVENTS / name).read_text())["Records"]
    return records


def test_the_real_sample_parses() -> None:
    # GIVEN a record as AWS delivered it (milliseconds, userIdentity null)
    (record,) = load("kinesis-sample-businfo.json")
    change = EVENT_RECORDS.parse(record, 0)
    # THEN the table comes from tableName, the version is the creation time in µs
    assert change.source_table == "dynamodb-businfo"
    assert change.event_name == "INSERT"
    assert change.sequence == 1649930048474 * 1000
    assert change.sequence_number == record["kinesis"]["sequenceNumber"]
    assert change.stream_arn == "arn:aws:kinesis:ap-northeast-2:677146750822:stream/businfo"
    assert change.key_values == {"Timestamp": "1649930048", "RouteId": "222000076"}
    assert change.new_image is not None and change.new_image["PlateNo"] == {"S": "경기74아3844"}
    assert change.event_time is not None and change.event_time.isoformat().startswith(
        "2022-04-14T09:54:08.474"
    )
    assert not change.is_ttl_expiry
    assert batch_shard([record]) == "shardId-000000000003"


@pytest.mark.parametrize(
    ("value", "precision", "micros"),
    [
        (1_649_930_048_474, None, 1_649_930_048_474_000),  # milliseconds, by magnitude
        (1_719_347_890_250_647, None, 1_719_347_890_250_647),  # microseconds
        (1_649_930_048_474, "MILLISECOND", 1_649_930_048_474_000),
        (1_719_347_890_250_647, "MICROSECOND", 1_719_347_890_250_647),
        (1_649_930_048_474.0, None, 1_649_930_048_474_000),  # a whole float
    ],
)
def test_versions_are_microseconds(value: Any, precision: Any, micros: int) -> None:
    assert version_of(value, precision) == micros


@pytest.mark.parametrize("value", [None, "1649930048474", 0, -5, 1.5, True, [1]])
def test_a_creation_time_that_is_not_a_whole_positive_number_is_malformed(value: Any) -> None:
    with pytest.raises(MalformedRecord, match="ApproximateCreationDateTime"):
        version_of(value)


def test_binary_values_are_decoded_twice() -> None:
    # GIVEN the item of amazon-kinesis-client issue 959: bytes 12 02 08 7b arrive as
    # "RWdJSWV3PT0=" (the base64 of "EgIIew==")
    records = load("kinesis_binary_out_of_order.json")
    change = parse_record(records[2], 2)
    assert change.key_values == {"Digest": bytes([0x12, 0x02, 0x08, 0x7B])}
    assert change.new_image is not None
    assert change.new_image["Blob"] == {"B": "AP8="}
    assert sorted(change.new_image["Parts"]["BS"]) == ["YQ==", "Yg=="]
    raw = json.loads(base64.b64decode(records[2]["kinesis"]["data"]))
    assert raw["dynamodb"]["Keys"]["Digest"] == {"B": "RWdJSWV3PT0="}


def test_a_binary_value_encoded_once_is_a_decode_error() -> None:
    change = change_json("INSERT", {"id": 1}, BASE_MS, new={"id": 1})
    change["dynamodb"]["NewImage"]["b"] = {"B": "AP8="}  # bytes 00 ff: not base64 text
    with pytest.raises(DecodeError, match=r"NewImage\.b.*base64 of base64"):
        parse_record(wrap(change), 0)


def test_ttl_expiries_are_recognised() -> None:
    change = parse_record(kremove({"id": 1}, BASE_MS, ttl=True), 0)
    assert change.is_remove and change.is_ttl_expiry


def _with(record: dict[str, Any], **change: Any) -> dict[str, Any]:
    data = json.loads(base64.b64decode(record["kinesis"]["data"]))
    for key, value in change.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return wrap(data)


GOOD = kinsert({"id": 1}, BASE_MS, {"v": "x"})


@pytest.mark.parametrize(
    ("record", "words"),
    [
        (
            {**GOOD, "eventSourceARN": "arn:aws:kinesis:eu-central-1:1:stream/x"},
            "Kinesis stream ARN",
        ),
        ({**GOOD, "kinesis": {**GOOD["kinesis"], "sequenceNumber": "12a"}}, "sequenceNumber"),
        ({**GOOD, "kinesis": {**GOOD["kinesis"], "sequenceNumber": "1" * 129}}, "1-128 digits"),
        ({**GOOD, "kinesis": {**GOOD["kinesis"], "data": "***"}}, "not valid base64"),
        (wrap(b"hello"), "not a JSON change record"),
        (wrap(b"[1, 2]"), "holds a list"),
        (_with(GOOD, tableName=None), "tableName None"),
        (_with(GOOD, tableName="Orders;DROP"), "tableName 'Orders;DROP'"),
        (_with(GOOD, eventName="UPSERT"), "eventName 'UPSERT'"),
        (_with(GOOD, recordFormat="application/x-protobuf"), "recordFormat"),
        (_with(GOOD, dynamodb=None), "no 'dynamodb' object"),
        (_with(GOOD, dynamodb={"Keys": {"id": {"N": "1"}}}), "ApproximateCreationDateTime"),
        (_with(GOOD, dynamodb={"ApproximateCreationDateTime": BASE_MS}), "Keys"),
    ],
)
def test_malformed_records_say_what_is_wrong(record: dict[str, Any], words: str) -> None:
    with pytest.raises(RecordError, match=words.replace("(", r"\(")):
        EVENT_RECORDS.parse(record, 0)


def test_an_unknown_event_source_names_both() -> None:
    with pytest.raises(MalformedRecord, match="expected 'aws:dynamodb' or 'aws:kinesis'"):
        EVENT_RECORDS.parse({**GOOD, "eventSource": "aws:sqs"}, 0)


def test_hints_read_the_table_off_a_record_that_did_not_parse() -> None:
    broken = _with(GOOD, eventName="UPSERT")
    assert EVENT_RECORDS.hints(broken) == {
        "stream_arn": GOOD["eventSourceARN"],
        "source_table": "Orders",
        "event_name": "UPSERT",
    }


def test_failure_identifiers_are_kinesis_sequence_numbers() -> None:
    records = [GOOD, {"eventSource": "aws:kinesis"}, kinsert({"id": 2}, BASE_MS)]
    first = GOOD["kinesis"]["sequenceNumber"]
    # a record without a usable one is covered by the one before it
    assert KINESIS_RECORDS.failure_identifiers(records, [1]) == [first]
    assert EVENT_RECORDS.failure_identifiers(records, [2, 0]) == [
        records[2]["kinesis"]["sequenceNumber"],
        first,
    ]
    assert EVENT_RECORDS.failure_identifiers([{"eventSource": "aws:kinesis"}], [0]) == [""]


def test_streams_batches_are_unchanged() -> None:
    record = insert({"id": 1}, 111)
    assert sequence_of(EVENT_RECORDS.parse(record, 0).sequence) == 111
    assert EVENT_RECORDS.failure_identifiers([record], [0]) == ["111"]
    assert batch_shard([record]) == ""
