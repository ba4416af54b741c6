"""Snapshot items (backfill, verify) become Changes directly, and their dead letters'
raw records read back to the same Change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdc.core.errors import DecodeError, MalformedRecord
from cdc.sources.formats import ANY_RECORDS
from cdc.sources.snapshots import (
    SNAPSHOT_RECORDS,
    Snapshot,
    export_version_for,
    snapshot_version_for,
)

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/backfill"
SNAPSHOT = Snapshot("Orders", ("pk", "sk"), ARN)
ITEM = {"pk": {"S": "user#1"}, "sk": {"N": "007"}, "blob": {"B": "AAE="}}


def test_an_item_is_an_insert_at_the_snapshot_version() -> None:
    change = SNAPSHOT.change(ITEM, 3)
    assert (change.index, change.event_name, change.sequence) == (3, "INSERT", 0)
    assert change.keys == {"pk": {"S": "user#1"}, "sk": {"N": "007"}}
    assert change.key_values == {"pk": "user#1", "sk": 7}
    assert change.new_image == ITEM and change.old_image is None
    assert (change.source_table, change.stream_arn) == ("Orders", ARN)


def test_the_snapshot_version_is_its_own() -> None:
    later = Snapshot("Orders", ("pk", "sk"), ARN, sequence=10**45)
    assert later.change(ITEM).sequence == 10**45
    assert later.change(ITEM).sequence_number == "0"  # no position of its own


def test_a_record_reads_back_to_the_same_change_by_either_format() -> None:
    record = SNAPSHOT.record(ITEM)
    assert record["eventSource"] == "cdc:snapshot"
    direct = SNAPSHOT.change(ITEM, 1)
    assert SNAPSHOT_RECORDS.parse(record, 1) == direct
    assert ANY_RECORDS.parse(record, 1) == direct
    assert SNAPSHOT_RECORDS.sequence_of(record) == "0"
    assert SNAPSHOT_RECORDS.hints(record) == {
        "event_name": "INSERT",
        "source_table": "Orders",
        "stream_arn": ARN,
    }
    assert SNAPSHOT_RECORDS.failure_identifiers([record], [0]) == []


def test_an_item_without_its_key_is_malformed_and_says_which() -> None:
    with pytest.raises(MalformedRecord, match=r"no key attribute 'sk'.*pk, sk"):
        SNAPSHOT.change({"pk": {"S": "a"}})


def test_a_key_of_a_wrong_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="S, N or B"):
        SNAPSHOT.change({"pk": {"S": "a"}, "sk": {"BOOL": True}})


def test_a_broken_envelope_is_malformed() -> None:
    record = SNAPSHOT.record(ITEM)
    del record["keyNames"]
    with pytest.raises(MalformedRecord, match="keyNames"):
        SNAPSHOT_RECORDS.parse(record, 0)


def test_any_records_dispatches_on_event_source_and_names_the_known_ones() -> None:
    with pytest.raises(MalformedRecord, match=r"'aws:dynamodb'.*'cdc:snapshot'"):
        ANY_RECORDS.parse({"eventSource": "aws:sqs"}, 0)


def test_a_snapshot_sits_at_its_stream_s_generation() -> None:
    stream = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/2026-11-20T08:15:00.123"
    generation = 1_795_162_500_123  # 2026-11-20T08:15:00.123Z in milliseconds
    assert snapshot_version_for(stream) == generation * 10**40
    assert snapshot_version_for(None) == 0  # a table that never had a stream


def test_an_export_sits_at_its_stream_s_generation_only_if_the_stream_is_older() -> None:
    stream = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/2026-11-20T08:15:00.123"
    after = datetime(2026, 11, 21, tzinfo=UTC)
    before = datetime(2026, 11, 19, tzinfo=UTC)
    assert export_version_for(stream, after) == snapshot_version_for(stream)
    # taken before this stream began: the older stream's later records are unknown, so
    # the export goes below everything (it fills keys nothing wrote, overwrites nothing)
    assert export_version_for(stream, before) == 0
    assert export_version_for(None, after) == 0
