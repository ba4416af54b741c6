"""One failing (table, key, item version, error) is one pending dead letter, whichever
path found it (issue 12, item 13): `cdc backfill` used to dead-letter again every item
the stream had already dead-lettered (8 bad items became 16 pending letters).

The stream side runs as `cdc tail` does (the library's Tail over moto's in-process
DynamoDB Streams), the backfill as `cdc backfill` does; the replica is each database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc.core.dead_letters import DeadLetter
from cdc.sources.dynamodb_streams.records import parse_record
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import insert, modify
from tests.integration.test_backfill import backfill, item, make_table, tail_once

BAD = range(100, 108)  # eight items cdc cannot apply


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def put_bad_items(clients: Any) -> None:
    """Items with U+0000 in a string: dead-lettered under the default nul = "reject"."""
    ddb = clients.dynamodb()
    for i in BAD:
        ddb.put_item(TableName="Orders", Item=item(i, name={"S": f"bad\x00{i}"}))


@pytest.mark.parametrize(
    "stream_first", [True, False], ids=["stream-then-backfill", "backfill-then-stream"]
)
def test_an_item_found_bad_by_the_stream_and_by_backfill_is_one_pending_letter(
    clients: Any, database: Database, stream_first: bool
) -> None:
    # GIVEN a table with its stream on, five good items and eight bad ones written since
    stream_arn = make_table(clients, count=5)
    put_bad_items(clients)

    # WHEN the stream is applied and the table backfilled, in either order
    def stream() -> None:
        tail_once(clients, database.engine, database.settings, stream_arn)

    def scan() -> None:
        report = backfill(clients, database.engine, database.settings, segments=2)
        assert report.complete and report.dead_lettered == len(BAD)

    for step in (stream, scan) if stream_first else (scan, stream):
        step()

    # THEN each bad item is one pending letter, found twice, holding the stream's record
    # (its real sequence number), not the backfill's copy
    letters = database.dead_letters()
    assert len(letters) == len(BAD)
    assert {d["keys"] for d in letters} == {f'{{"Id":{i}}}' for i in BAD}
    for letter in letters:
        assert (letter["status"], letter["attempts"], letter["error_class"]) == (
            "pending",
            2,
            "nul",
        )
        assert int(letter["sequence_number"]) > 0
        assert letter["stream_arn"] == stream_arn
        assert '"eventID":"backfill"' not in letter["raw_record"]


def test_an_item_changed_since_is_another_version_and_another_letter(
    clients: Any, database: Database
) -> None:
    # GIVEN bad items dead-lettered by the stream, then one of them changed (still bad)
    stream_arn = make_table(clients, count=1)
    put_bad_items(clients)
    tail_once(clients, database.engine, database.settings, stream_arn)
    clients.dynamodb().put_item(TableName="Orders", Item=item(100, name={"S": "worse\x00"}))
    tail_once(clients, database.engine, database.settings, stream_arn)
    # WHEN the table is backfilled
    backfill(clients, database.engine, database.settings, segments=1)
    # THEN the changed item has two letters, one per version; the backfill's copy (the
    # current version) counts on the newer one
    letters = database.dead_letters()
    assert len(letters) == len(BAD) + 1
    first, second = sorted(
        (d for d in letters if d["keys"] == '{"Id":100}'), key=lambda d: int(d["sequence_number"])
    )
    assert (first["attempts"], second["attempts"]) == (1, 2)
    assert "worse" in second["raw_record"]


def letter(rec: dict[str, Any], error_class: str = "nul") -> DeadLetter:
    return DeadLetter(0, rec, error_class, "why", parse_record(rec, 0))


def test_the_fingerprint_is_the_table_key_item_version_and_error() -> None:
    # GIVEN records of one item version, as a stream record and as a backfill copy
    a = insert({"Id": 1}, 1001, {"v": 1, "tags": {"x", "y"}})
    copy = insert({"Id": 1}, 0, {"v": 1, "tags": {"x", "y"}})
    copy["eventID"] = "backfill"
    copy["dynamodb"]["NewImage"] = dict(reversed(copy["dynamodb"]["NewImage"].items()))
    copy["dynamodb"]["NewImage"]["tags"] = {"SS": ["y", "x"]}
    same = letter(a).fingerprint()
    # THEN the same (table, key, item, error) has one fingerprint whatever the path,
    # the attributes' order or the spelling of its numbers
    assert letter(copy).fingerprint() == same
    assert letter(insert({"Id": 1}, 1001, {"v": 1, "tags": {"x", "y"}})).fingerprint() == same
    respelled = insert({"Id": 1}, 1001, {"v": 1, "tags": {"x", "y"}})
    respelled["dynamodb"]["Keys"]["Id"] = {"N": "1.0"}
    respelled["dynamodb"]["NewImage"]["v"] = {"N": "1.00"}
    assert letter(respelled).fingerprint() == same
    # AND any other table, key, item content or error is another letter
    others = [
        letter(a, "conversion"),
        letter(insert({"Id": 1}, 1001, {"v": 2, "tags": {"x", "y"}})),
        letter(insert({"Id": 2}, 1001, {"v": 1, "tags": {"x", "y"}})),
        letter(insert({"Id": 1}, 1001, {"v": 1, "tags": {"x", "y"}}, table="Other")),
        letter(modify({"Id": "1"}, 1001, {"v": 1, "tags": {"x", "y"}})),  # an S key
    ]
    assert len({same, *(o.fingerprint() for o in others)}) == 1 + len(others)


def test_a_replayed_batch_counts_attempts_and_keeps_the_newest_record(
    database: Database,
) -> None:
    # GIVEN two records of one key with the same bad content (U+0000), and another key
    old = insert({"Id": 1}, 1001, {"v": "a\x00"})
    new = modify({"Id": 1}, 1005, {"v": "a\x00"})
    other = insert({"Id": 2}, 1002, {"v": "b\x00"})
    # WHEN the newer record is processed, then a batch replaying all three
    assert database.process([new]).dead_lettered == 1
    result = database.process([old, other, new])
    # THEN one letter per (key, item version): the one of key 1 holds the newest record
    # and counts both deliveries; nothing is reported
    assert result.response() == {"batchItemFailures": []}
    letters = {d["keys"]: d for d in database.dead_letters()}
    assert set(letters) == {'{"Id":1}', '{"Id":2}'}
    assert letters['{"Id":1}']["sequence_number"] == "1005"
    assert letters['{"Id":1}']["event_name"] == "MODIFY"
    assert letters['{"Id":1}']["attempts"] == 2
    assert letters['{"Id":2}']["attempts"] == 1
