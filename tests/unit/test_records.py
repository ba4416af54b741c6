"""A stream record (Lambda event shape) → a validated Change (README: Failure handling)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdc.core.change import Change
from cdc.core.dead_letters import DeadLetter
from cdc.core.errors import DecodeError, MalformedRecord, RecordError
from cdc.core.outcomes import BatchResult, Outcome
from cdc.core.versions import sequence_of as sequence_in
from cdc.sources.dynamodb_streams.records import (
    LAMBDA_RECORDS,
    parse_record,
    sequence_of,
    table_from_stream_arn,
)
from tests.factories import insert, record, remove, stream_arn

EVENTS = Path(__file__).resolve().parents[1] / "events"
DEVGUIDE_ARN = (
    "arn:aws:dynamodb:us-west-2:123456789012:table/ExampleTableWithStream/"
    "stream/2015-06-27T00:48:05.899"
)
APRIL_9_2015 = datetime(2015, 4, 9, tzinfo=UTC)  # 1428537600
MAY_1_2024 = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)  # 1714552200


def load_event(name: str) -> list[dict[str, Any]]:
    return json.loads((EVENTS / name).read_text())["Records"]


def parse_all(records: list[dict[str, Any]]) -> list[Change]:
    return [parse_record(r, i) for i, r in enumerate(records)]


# --- the AWS sample events --------------------------------------------------------------


def test_devguide_sample_parses_without_event_time():
    # GIVEN the developer guide's sample: 3-digit sequence numbers, no event time
    records = load_event("stream-sample-devguide.json")
    # WHEN each record is parsed
    insert_, modify = parse_all(records)
    # THEN both are valid changes of table ExampleTableWithStream
    assert (insert_.index, insert_.event_name, sequence_in(insert_.sequence)) == (0, "INSERT", 111)
    assert (modify.index, modify.event_name, sequence_in(modify.sequence)) == (1, "MODIFY", 222)
    assert insert_.sequence_number == "111"
    for change in (insert_, modify):
        assert change.source_table == "ExampleTableWithStream"
        assert change.stream_arn == DEVGUIDE_ARN
        assert change.keys == {"Id": {"N": "101"}}
        assert change.event_time is None
        assert change.is_ttl_expiry is False
        assert change.is_remove is False
    assert insert_.old_image is None
    assert insert_.new_image == {"Message": {"S": "New item!"}, "Id": {"N": "101"}}
    assert modify.old_image == {"Message": {"S": "New item!"}, "Id": {"N": "101"}}
    assert modify.new_image == {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}}


def test_powertools_sample_parses_with_event_time_and_no_ttl():
    # GIVEN the Powertools sample: INSERT (with a Service userIdentity), MODIFY, REMOVE
    records = load_event("stream-sample-powertools.json")
    # WHEN each record is parsed
    changes = parse_all(records)
    # THEN sequence numbers are exact integers and the event time is UTC
    assert [c.event_name for c in changes] == ["INSERT", "MODIFY", "REMOVE"]
    assert [sequence_in(c.sequence) for c in changes] == [
        4421584500000000017450439091,
        4421584500000000017450439092,
        4421584500000000017450439093,
    ]
    assert all(c.event_time == APRIL_9_2015 for c in changes)
    # AND the INSERT is not a TTL expiry even though its identity is DynamoDB's
    assert [c.is_ttl_expiry for c in changes] == [False, False, False]
    # AND the REMOVE carries its old image and no new one
    assert changes[2].is_remove
    assert changes[2].new_image is None
    assert changes[2].old_image == {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}}


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("duplicate_records.json", 5),
        ("out_of_order.json", 5),
        ("ttl_expiry.json", 5),
        ("keys_only_stream.json", 3),
        ("binary_and_sets.json", 3),
        ("multiple_tables.json", 5),
        ("nul_characters.json", 3),
        ("name_collisions.json", 4),
        ("event_time_units.json", 4),
    ],
)
def test_every_well_formed_scenario_record_parses(name, count):
    # GIVEN a scenario file of well-formed stream records
    records = load_event(name)
    # WHEN every record is parsed
    changes = parse_all(records)
    # THEN each becomes a change that keeps the delivered sequence number text
    assert len(changes) == count
    for change, raw in zip(changes, records, strict=True):
        assert change.sequence_number == raw["dynamodb"]["SequenceNumber"]
        assert sequence_in(change.sequence) == int(raw["dynamodb"]["SequenceNumber"])
        assert change.stream_arn == raw["eventSourceARN"]
        assert sequence_of(raw) == change.sequence_number


def test_keys_only_records_have_no_images():
    # GIVEN a KEYS_ONLY stream WHEN its records are parsed
    changes = parse_all(load_event("keys_only_stream.json"))
    # THEN they are valid changes without images (the mapping decides what to do)
    assert [(c.new_image, c.old_image) for c in changes] == [(None, None)] * 3
    assert changes[0].keys == {"Warehouse": {"S": "BER-1"}, "Sku": {"S": "SKU-0001"}}


def test_multiple_tables_are_told_apart_by_their_stream_arn():
    # GIVEN one batch with records of three tables
    changes = parse_all(load_event("multiple_tables.json"))
    # WHEN parsed THEN each change names its source table
    assert [c.source_table for c in changes] == [
        "Orders",
        "audit-log.v2",
        "Customers",
        "Orders",
        "audit-log.v2",
    ]


# --- malformed records ------------------------------------------------------------------


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(rec: dict[str, Any]) -> None:
        target = rec
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(rec: dict[str, Any]) -> None:
        target = rec
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


GOOD_ARN = stream_arn("Orders")
MALFORMED = [
    # (id, mutation, fragments the message must contain)
    (
        "kinesis source",
        _set("eventSource", value="aws:kinesis"),
        ["eventSource", "'aws:kinesis'", "'aws:dynamodb'"],
    ),
    ("no source", _delete("eventSource"), ["eventSource is None"]),
    (
        "unknown eventName",
        _set("eventName", value="UPSERT"),
        ["eventName 'UPSERT'", "INSERT, MODIFY or REMOVE"],
    ),
    ("lowercase eventName", _set("eventName", value="insert"), ["eventName 'insert'"]),
    ("no eventName", _delete("eventName"), ["eventName None"]),
    ("no dynamodb", _delete("dynamodb"), ["'dynamodb'"]),
    ("dynamodb not an object", _set("dynamodb", value=[]), ["'dynamodb'"]),
    (
        "no SequenceNumber",
        _delete("dynamodb", "SequenceNumber"),
        ["SequenceNumber None", "decimal string"],
    ),
    (
        "letter in SequenceNumber",
        _set("dynamodb", "SequenceNumber", value="12a"),
        ["SequenceNumber '12a'"],
    ),
    (
        "numeric SequenceNumber",
        _set("dynamodb", "SequenceNumber", value=12345),
        ["SequenceNumber 12345"],
    ),
    ("empty SequenceNumber", _set("dynamodb", "SequenceNumber", value=""), ["SequenceNumber ''"]),
    (
        "negative SequenceNumber",
        _set("dynamodb", "SequenceNumber", value="-1"),
        ["SequenceNumber '-1'"],
    ),
    (
        "spaced SequenceNumber",
        _set("dynamodb", "SequenceNumber", value=" 123"),
        ["SequenceNumber ' 123'"],
    ),
    (
        "41 digits",
        _set("dynamodb", "SequenceNumber", value="1" * 41),
        ["SequenceNumber", "1-40 digits"],
    ),
    ("no Keys", _delete("dynamodb", "Keys"), ["dynamodb.Keys is missing or empty"]),
    ("empty Keys", _set("dynamodb", "Keys", value={}), ["dynamodb.Keys is missing or empty"]),
    ("Keys not an object", _set("dynamodb", "Keys", value=[{"Id": {"S": "x"}}]), ["dynamodb.Keys"]),
    ("no ARN", _delete("eventSourceARN"), ["eventSourceARN None", "not a DynamoDB stream ARN"]),
    (
        "table ARN",
        _set("eventSourceARN", value="arn:aws:dynamodb:eu-central-1:123456789012:table/Orders"),
        ["not a DynamoDB stream ARN"],
    ),
    (
        "kinesis ARN",
        _set("eventSourceARN", value="arn:aws:kinesis:eu-central-1:123456789012:stream/Orders"),
        ["not a DynamoDB stream ARN"],
    ),
    (
        "short account",
        _set("eventSourceARN", value="arn:aws:dynamodb:eu-central-1:1234:table/Orders/stream/2024"),
        ["not a DynamoDB stream ARN"],
    ),
    (
        "ARN with suffix",
        _set("eventSourceARN", value=GOOD_ARN + "/extra"),
        ["not a DynamoDB stream ARN"],
    ),
    ("ARN not a string", _set("eventSourceARN", value=42), ["eventSourceARN 42"]),
    ("no NewImage object", _set("dynamodb", "NewImage", value="x"), ["dynamodb.NewImage is a str"]),
    (
        "no OldImage object",
        _set("dynamodb", "OldImage", value=[1]),
        ["dynamodb.OldImage is a list"],
    ),
    (
        "time as text",
        _set("dynamodb", "ApproximateCreationDateTime", value="1428537600"),
        ["ApproximateCreationDateTime '1428537600' is not a number"],
    ),
    (
        "time as bool",
        _set("dynamodb", "ApproximateCreationDateTime", value=True),
        ["ApproximateCreationDateTime True"],
    ),
    (
        "time infinite",
        _set("dynamodb", "ApproximateCreationDateTime", value=float("inf")),
        ["ApproximateCreationDateTime inf"],
    ),
    (
        "time NaN",
        _set("dynamodb", "ApproximateCreationDateTime", value=float("nan")),
        ["ApproximateCreationDateTime nan"],
    ),
    (
        "time huge",
        _set("dynamodb", "ApproximateCreationDateTime", value=1e300),
        ["ApproximateCreationDateTime", "not a valid time"],
    ),
    (
        "time list",
        _set("dynamodb", "ApproximateCreationDateTime", value=[1]),
        ["ApproximateCreationDateTime [1]"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [pytest.param(m, f, id=i) for i, m, f in MALFORMED],
)
def test_malformed_records_raise_a_message_a_person_can_act_on(mutate, fragments):
    # GIVEN a good INSERT with one thing wrong
    rec = insert({"Id": 1}, "4421584500000000017450439091", {"a": "x"})
    rec["dynamodb"]["OldImage"] = {"Id": {"N": "1"}}
    mutate(rec)
    # WHEN it is parsed
    with pytest.raises(MalformedRecord) as info:
        parse_record(rec, 0)
    # THEN MalformedRecord (dead-lettered as "malformed") says which field is wrong and how
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert info.value.kind == "malformed"


@pytest.mark.parametrize("rec", [None, [], "record", 42])
def test_a_record_that_is_not_an_object_is_malformed(rec):
    # GIVEN something that is not a JSON object WHEN parsed THEN MalformedRecord says so
    with pytest.raises(MalformedRecord, match="not an object"):
        parse_record(rec, 3)


@pytest.mark.parametrize(
    ("keys", "fragments"),
    [
        ({"Id": {"BOOL": True}}, ["Keys.Id", "S, N or B", "'BOOL'"]),
        ({"Id": {"SS": ["a"]}}, ["Keys.Id", "'SS'"]),
        ({"Id": {"M": {}}}, ["Keys.Id", "'M'"]),
        ({"Id": {"NULL": True}}, ["Keys.Id", "'NULL'"]),
        ({"Id": {"X": "1"}}, ["Keys.Id", "'X'"]),
        ({"Id": {"S": ""}}, ["Keys.Id", "non-empty string"]),
        ({"Id": {"S": 1}}, ["Keys.Id", "S key value 1"]),
        ({"Id": {"N": "abc"}}, ["Keys.Id", "'abc' is not a number"]),
        ({"Id": {"N": "1" * 39}}, ["Keys.Id", "significant digits"]),
        ({"Id": {"N": "1E+99999999999999999999"}}, ["Keys.Id", "range"]),
        ({"Id": {"B": "!!"}}, ["Keys.Id", "base64"]),
        # DynamoDB requires S and B key values to be non-empty
        ({"Id": {"B": ""}}, ["Keys.Id"]),
        ({"Id": "101"}, ["Keys.Id", "one type descriptor"]),
        ({"Id": {"S": "a", "N": "1"}}, ["Keys.Id", "one type descriptor"]),
        ({"pk": {"S": "a"}, "sk": {"BOOL": False}}, ["Keys.sk", "'BOOL'"]),
    ],
    ids=lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else "",
)
def test_keys_of_a_type_dynamodb_keys_cannot_have_are_rejected(keys, fragments):
    # GIVEN a record whose Keys hold a value no DynamoDB key can hold
    rec = record("INSERT", {}, "4421584500000000017450439091", raw_keys=keys)
    # WHEN it is parsed
    with pytest.raises(DecodeError) as info:
        parse_record(rec, 0)
    # THEN DecodeError names the key attribute and the problem
    for fragment in fragments:
        assert fragment in str(info.value)
    assert isinstance(info.value, RecordError)


@pytest.mark.parametrize(
    ("table", "ok"),
    [
        ("Orders", True),
        ("abc", True),
        ("a" * 255, True),
        ("My-Table_1.v2", True),
        ("ab", False),
        ("a", False),
        ("a" * 256, False),
        ("a;b", False),
        ("x y", False),
        ("Orders;DROP TABLE orders", False),
        ("tbl$", False),
        ('"quoted"', False),
        ("名前表", False),
        ("Orders\n", False),
    ],
)
def test_stream_arn_must_name_a_table_dynamodb_would_allow(table, ok):
    # GIVEN a stream ARN naming a table
    arn = stream_arn(table)
    rec = insert({"Id": 1}, "4421584500000000017450439091", table=table)
    # WHEN the ARN is read
    if ok:
        # THEN a name of 3-255 characters of [A-Za-z0-9_.-] is the source table
        assert table_from_stream_arn(arn) == table
        assert parse_record(rec, 0).source_table == table
    else:
        # THEN anything else is malformed: it is untrusted input, never guessed at
        with pytest.raises(MalformedRecord, match="which DynamoDB would not allow"):
            table_from_stream_arn(arn)
        with pytest.raises(MalformedRecord) as info:
            parse_record(rec, 0)
        assert repr(table) in str(info.value)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024-05-01T08:30:00.000",
        "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/Orders/stream/2024-05-01T08:30:00.000",
        "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/Orders/stream/2024-05-01T08:30:00.000",
    ],
)
def test_stream_arns_of_every_partition_are_accepted(arn):
    # GIVEN a DynamoDB stream ARN in the commercial, China or GovCloud partition
    # WHEN it is read THEN its table is found
    assert table_from_stream_arn(arn) == "Orders"


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders",
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/",
        "arn:aws:dynamodb:us-east-1:123456789012:table//stream/2024",
        "arn:aws:sqs:us-east-1:123456789012:table/Orders/stream/2024",
        "arn:aws:dynamodb:us-east-1:12345678901:table/Orders/stream/2024",
        "ARN:AWS:DYNAMODB:us-east-1:123456789012:table/Orders/stream/2024",
        " arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024",
        "",
        None,
        # the label is printable ASCII (a timestamp): the ARN is stored as checkpoint text
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024\ud800",
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024\x00",
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024 01",
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024-\u0661",
        "arn:aws:dynamodb:us-east-1:\u0661\u0662\u0663456789012:table/Orders/stream/2024",
    ],
)
def test_anything_but_a_dynamodb_stream_arn_is_malformed(arn):
    # GIVEN something that is not a DynamoDB stream ARN
    # WHEN it is read THEN MalformedRecord quotes it
    with pytest.raises(MalformedRecord, match="is not a DynamoDB stream ARN"):
        table_from_stream_arn(arn)


def test_malformed_mixed_scenario_fails_exactly_the_broken_envelopes():
    # GIVEN a batch where some records are not DynamoDB stream records
    records = load_event("malformed_mixed.json")
    # WHEN each record is parsed
    outcomes: list[str] = []
    for i, rec in enumerate(records):
        try:
            parse_record(rec, i)
        except RecordError as exc:
            outcomes.append(exc.kind)
        else:
            outcomes.append("ok")
    # THEN exactly the broken envelopes and keys fail; bad image values are found later,
    # when the table's mapping decodes the image (test_plan covers those)
    assert outcomes == [
        "ok",  # 0
        "malformed",  # 1 eventSource aws:kinesis
        "ok",  # 2
        "malformed",  # 3 eventName UPSERT
        "malformed",  # 4 letter in SequenceNumber
        "malformed",  # 5 no Keys
        "malformed",  # 6 table ARN
        "malformed",  # 7 table name with ; and spaces
        "ok",  # 8 BOOL "yes" in NewImage
        "ok",  # 9 N "12abc" in NewImage
        "ok",  # 10 bad base64 in NewImage
        "decode",  # 11 BOOL key
        "ok",  # 12 unknown descriptor in NewImage
        "malformed",  # 13 41-digit SequenceNumber
        "ok",  # 14
    ]


# --- sequence numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["1", "111", "4421584500000000017450439091", "9" * 40, "0" * 40, "0001"]
)
def test_sequence_numbers_of_up_to_40_digits_are_exact_integers(text):
    # GIVEN a SequenceNumber of 1-40 decimal digits
    rec = insert({"Id": 1}, text)
    # WHEN parsed
    change = parse_record(rec, 0)
    # THEN it is kept both as delivered (Lambda's itemIdentifier) and as an exact integer
    assert change.sequence_number == text
    assert sequence_in(change.sequence) == int(text)
    assert sequence_of(rec) == text


@pytest.mark.parametrize(
    "rec",
    [
        None,
        {},
        {"dynamodb": None},
        {"dynamodb": {}},
        {"dynamodb": {"SequenceNumber": 123}},
        {"dynamodb": {"SequenceNumber": "12a"}},
        {"dynamodb": {"SequenceNumber": "1" * 41}},
    ],
)
def test_sequence_of_returns_none_when_there_is_no_usable_sequence_number(rec):
    # GIVEN a record without a usable SequenceNumber
    # WHEN its sequence is looked up for reporting THEN there is none to report
    assert sequence_of(rec) is None


# --- TTL expiries ---------------------------------------------------------------------

SERVICE = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


@pytest.mark.parametrize(
    ("event_name", "identity", "is_ttl"),
    [
        ("REMOVE", SERVICE, True),
        ("INSERT", SERVICE, False),
        ("MODIFY", SERVICE, False),
        ("REMOVE", None, False),
        ("REMOVE", {"type": "Service", "principalId": "lambda.amazonaws.com"}, False),
        ("REMOVE", {"type": "User", "principalId": "dynamodb.amazonaws.com"}, False),
        ("REMOVE", {"type": "Service"}, False),
        ("REMOVE", "Service", False),
    ],
)
def test_ttl_expiry_is_a_remove_by_the_dynamodb_service(event_name, identity, is_ttl):
    # GIVEN a record with (or without) a userIdentity
    rec = record(event_name, {"Id": 1}, "4421584500000000017450439091", new={"Id": 1})
    if identity is not None:
        rec["userIdentity"] = identity
    # WHEN parsed
    change = parse_record(rec, 0)
    # THEN only a REMOVE by Service dynamodb.amazonaws.com is a TTL expiry
    assert change.is_ttl_expiry is is_ttl


def test_ttl_scenario_marks_only_the_expiry():
    # GIVEN a batch with inserts, one TTL expiry and one user delete
    changes = parse_all(load_event("ttl_expiry.json"))
    # WHEN parsed THEN only record 2 is a TTL expiry; both removes are removes
    assert [c.is_ttl_expiry for c in changes] == [False, False, True, False, False]
    assert [c.is_remove for c in changes] == [False, False, True, True, False]


# --- event time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1428537600, APRIL_9_2015),
        (1428537600.0, APRIL_9_2015),
        (1428537600.5, APRIL_9_2015 + timedelta(milliseconds=500)),
        (1428537600000, APRIL_9_2015),  # milliseconds
        (1428537600123, APRIL_9_2015 + timedelta(milliseconds=123)),
        (1428537600000000, APRIL_9_2015),  # microseconds
        (None, None),
    ],
)
def test_event_time_is_read_in_seconds_or_milliseconds(value, expected):
    # GIVEN an ApproximateCreationDateTime in seconds (Lambda) or ms (other producers)
    rec = insert({"Id": 1}, "4421584500000000017450439091", event_time=value)
    # WHEN parsed
    change = parse_record(rec, 0)
    # THEN the event time is the same UTC instant, or None when the producer omits it
    assert change.event_time == expected
    if expected is not None:
        assert change.event_time.tzinfo is not None


def test_event_time_scenario():
    # GIVEN records with seconds, milliseconds, fractional seconds and no event time
    changes = parse_all(load_event("event_time_units.json"))
    # WHEN parsed THEN all mean the same moment (or None)
    assert [c.event_time for c in changes] == [
        MAY_1_2024,
        MAY_1_2024,
        MAY_1_2024 + timedelta(milliseconds=500),
        None,
    ]


def test_remove_without_old_image_is_valid():
    # GIVEN a REMOVE from a KEYS_ONLY or NEW_IMAGE stream (no OldImage)
    rec = remove({"Id": 1}, "4421584500000000017450439091")
    # WHEN parsed THEN it is a valid remove with no images
    change = parse_record(rec, 7)
    assert change.is_remove
    assert (change.new_image, change.old_image, change.index) == (None, None, 7)


def test_parse_record_does_not_modify_the_record():
    # GIVEN a record WHEN it is parsed THEN the raw record (kept for dead letters) is intact
    rec = insert({"Id": 1}, "4421584500000000017450439091", {"Tags": {"a", "b"}})
    before = copy.deepcopy(rec)
    parse_record(rec, 0)
    assert rec == before


@pytest.mark.parametrize("count", [3, 4])
def test_more_than_two_key_attributes_are_malformed(count):
    # GIVEN a record with more key attributes than DynamoDB allows (a partition key and
    # an optional sort key)
    keys = {f"k{i}": f"v{i}" for i in range(count)}
    rec = insert(keys, "4421584500000000017450439091")
    # WHEN it is parsed THEN it is malformed, naming the attributes
    with pytest.raises(MalformedRecord) as info:
        parse_record(rec, 0)
    assert f"has {count} attributes" in str(info.value)
    assert "'k0', 'k1', 'k2'" in str(info.value)
    # AND one or two are fine
    assert len(parse_record(insert({"k0": "a", "k1": 1}, "1"), 0).key_values) == 2


# --- the source seam: what the replicator asks of a record format -------------------


def test_lambda_records_is_the_record_format_of_dynamodb_stream_records():
    rec = insert({"Id": 1}, "123")
    assert LAMBDA_RECORDS.parse(rec, 0) == parse_record(rec, 0)
    assert LAMBDA_RECORDS.sequence_of(rec) == "123"
    assert LAMBDA_RECORDS.failure_identifiers([rec], [0]) == ["123"]
    assert LAMBDA_RECORDS.hints({"eventName": "INSERT"}) == {"event_name": "INSERT"}


def test_failures_and_dead_letters_name_records_through_their_source():
    rec = insert({"Id": 1}, "123")
    failed = BatchResult([Outcome.FAILED], [rec], source=LAMBDA_RECORDS)
    assert failed.item_failures == ["123"]
    # Without a source nothing can name the failed record: the whole batch comes again.
    assert BatchResult([Outcome.FAILED], [rec]).item_failures == [""]
    assert BatchResult([Outcome.SETTLED], [rec]).item_failures == []
    letter = DeadLetter(0, rec, "malformed", "why", source=LAMBDA_RECORDS)
    assert letter.sequence_number == "123"
    assert DeadLetter(0, rec, "malformed", "why").sequence_number is None
