"""Kinesis Data Streams for DynamoDB through the Lambda path (README: Kinesis Data
Streams), on PostgreSQL, MariaDB and SQLite:

- shuffled, duplicated deliveries converge to the latest change of each key (a
  property, at millisecond and microsecond precision);
- the handler answers with `kinesis.sequenceNumber`s and keeps checkpoints per stream
  and shard with the Kinesis position;
- ties (two different changes of one key at one creation time) are never resolved by
  delivery order: dead-lettered without hydration, settled by a consistent read with it;
- one source per table: DynamoDB Streams records of a Kinesis-fed table (and back) are
  dead-lettered with the way out.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cdc.aws.hydrate import Hydrator
from cdc.config import Settings
from cdc.core.mapping import TableConfig, TableOptions
from cdc.jobs.replicate import Replicator
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import insert
from tests.kinesis_factories import BASE_MS, kinsert, kmodify, krecord, kremove, wrap


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


# --- convergence ---------------------------------------------------------------------------

KEYS = (1, 2, 3)


@st.composite
def histories(draw: st.DrawFn) -> tuple[str | None, list[tuple[int, int, str, int]]]:
    """(precision the records state, [(key, created, event, value)]): each key's
    changes at strictly increasing creation times (different keys may share one), in
    milliseconds or microseconds; the records say which, or leave it to the magnitude."""
    precision = draw(st.sampled_from(["MILLISECOND", "MICROSECOND"]))
    said = draw(st.sampled_from([precision, None]))
    events = []
    for key in KEYS:
        count = draw(st.integers(0, 5))
        gaps = draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
        created = BASE_MS if precision == "MILLISECOND" else BASE_MS * 1000
        for gap in gaps:
            created += gap
            event = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
            events.append((key, created, event, draw(st.integers(0, 9))))
    return said, events


def _record(
    table: str, said: str | None, key: int, created: int, event: str, value: int
) -> dict[str, Any]:
    keys = {"id": key}
    if event == "REMOVE":
        return kremove(keys, created, table=table, precision=said)
    return krecord(event, keys, created, new={**keys, "v": value}, table=table, precision=said)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(), seed=st.integers(0, 2**32))
def test_shuffled_duplicated_deliveries_converge(
    database: Database, history: tuple[str, list[tuple[int, int, str, int]]], seed: int
) -> None:
    # GIVEN a history of changes as Kinesis delivers them: shuffled, some twice
    said, events = history
    table = f"Orders{uuid.uuid4().hex[:8]}"
    records = [_record(table, said, *e) for e in events]
    rng = random.Random(seed)
    # Delivered again: the same record (a retried batch) or the change at a new
    # position (DynamoDB wrote it to the stream twice).
    again = [
        r if rng.random() < 0.5 else wrap_again(r) for r in rng.sample(records, k=len(records) // 2)
    ]
    delivery = records + again
    rng.shuffle(delivery)
    # WHEN they are applied in random batches
    replicator = database.replicator()
    while delivery:
        size = rng.randint(1, 4)
        batch, delivery = delivery[:size], delivery[size:]
        result = replicator.process(batch)
        assert result.response() == {"batchItemFailures": []}, result.summary()
        assert result.dead_lettered == 0, result.summary()
    if not events:
        return
    # THEN every key holds its latest change, at its creation time in µs
    expected: dict[int, tuple[int, str, int]] = {}
    for key, created, event, value in events:
        if key not in expected or created > expected[key][0]:
            expected[key] = (created, event, value)
    t = database.table(table.lower())
    with database.engine.connect() as conn:
        rows = {int(r.id): r for r in conn.execute(select(t))}
    for key, (created, event, value) in expected.items():
        row = rows[key]
        micros = created * 1000 if created < 10**14 else created
        assert int(row._cdc_seq) == micros
        assert bool(row._cdc_deleted) == (event == "REMOVE")
        if event != "REMOVE":
            item = row.item if isinstance(row.item, dict) else json.loads(row.item)
            assert item == {"id": key, "v": value}


# --- the handler: identifiers, checkpoints -------------------------------------------------


def test_handler_applies_kinesis_batches_and_checkpoints_per_shard(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Kinesis batch of one shard, with a malformed record among healthy ones
    good = kinsert({"id": 1}, BASE_MS, {"b": b"\x00\xff"}, shard="shardId-000000000007")
    later = kmodify({"id": 1}, BASE_MS + 5, {"b": b"\x01"}, shard="shardId-000000000007")
    bad = wrap(b"not json", shard="shardId-000000000007")
    # WHEN the handler takes it
    response = database.handle(monkeypatch, [good, bad, later])
    # THEN everything is handled; the malformed record is dead-lettered with its position
    assert response == {"batchItemFailures": []}
    items = database.items("orders")
    assert items["1"] == ({"id": 1, "b": "AQ=="}, (BASE_MS + 5) * 1000)
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "malformed"
    assert letter["sequence_number"] == bad["kinesis"]["sequenceNumber"]
    assert letter["stream_arn"] == bad["eventSourceARN"]
    t = database.table("cdc_checkpoints")
    with database.engine.connect() as conn:
        (row,) = conn.execute(select(t)).mappings().all()
    assert row["stream_arn"] == good["eventSourceARN"]
    assert row["shard_id"] == "shardId-000000000007"
    assert row["last_position"] == later["kinesis"]["sequenceNumber"]
    assert int(row["last_sequence"]) == (BASE_MS + 5) * 1000


def test_failures_name_kinesis_sequence_numbers(database: Database) -> None:
    # GIVEN records Lambda must deliver again
    records = [kinsert({"id": 1}, BASE_MS), kinsert({"id": 2}, BASE_MS)]
    rep = database.replicator()
    # THEN Lambda hears the records' own kinesis.sequenceNumbers
    assert rep.records.failure_identifiers(records, [1, 0]) == [
        records[1]["kinesis"]["sequenceNumber"],
        records[0]["kinesis"]["sequenceNumber"],
    ]


# --- ties ------------------------------------------------------------------------------------


def test_a_tie_in_one_batch_is_dead_lettered_without_hydration(database: Database) -> None:
    # GIVEN two different changes of one key at the same millisecond
    a = kmodify({"id": 1}, BASE_MS, {"v": "a"})
    b = kmodify({"id": 1}, BASE_MS, {"v": "b"})
    # WHEN they arrive in one batch, in either order
    result = database.process([b, a])
    # THEN neither is applied: both are dead-lettered, saying why
    assert result.dead_lettered == 2
    assert "orders" not in database.table_names() or database.items("orders") == {}
    letters = database.dead_letters()
    assert {x["error_class"] for x in letters} == {"tie"}
    assert "hydrate = true" in letters[0]["error_message"]
    assert "MICROSECOND" in letters[0]["error_message"]


def test_a_tie_across_batches_is_dead_lettered_but_a_duplicate_is_not(
    database: Database,
) -> None:
    a = kmodify({"id": 1}, BASE_MS, {"v": "a"})
    b = kmodify({"id": 1}, BASE_MS, {"v": "b"})
    assert database.process([a]).applied == 1
    # WHEN the same change comes again: a duplicate, stale
    again = database.process([wrap_again(a)])
    assert again.stale == 1 and again.dead_lettered == 0
    # WHEN a different change of the same time comes: a tie, dead-lettered
    tie = database.process([b])
    assert tie.dead_lettered == 1
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "tie"
    assert "earlier batch" in letter["error_message"]


def wrap_again(record: dict[str, Any]) -> dict[str, Any]:
    """The same change delivered again at a later position."""
    change = json.loads(base64.b64decode(record["kinesis"]["data"]))
    return wrap(change)


@pytest.fixture
def dynamodb(clients: Any) -> Any:
    client = clients.dynamodb()
    client.create_table(
        TableName="Orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.mark.parametrize("order", ["ab", "ba", "a|b", "b|a"])
def test_ties_are_settled_by_a_consistent_read_with_hydration(
    database: Database, clients: Any, dynamodb: Any, order: str
) -> None:
    # GIVEN a table that hydrates, whose item is now "b"
    dynamodb.put_item(TableName="Orders", Item={"id": {"N": "1"}, "v": {"S": "b"}})
    settings = Settings(
        database_url=database.engine.url,
        schema=database.schema,
        tables={"Orders": TableConfig("Orders", options=TableOptions(hydrate=True))},
    )
    rep = Replicator(database.engine, settings, hydrator=Hydrator(clients=clients))
    records = {
        "a": kmodify({"id": 1}, BASE_MS, {"v": "a"}),
        "b": kmodify({"id": 1}, BASE_MS, {"v": "b"}),
    }
    # WHEN the tied changes arrive in any order, in one batch or two
    for batch in order.split("|"):
        result = rep.process([records[c] for c in batch])
        assert result.dead_lettered == 0, result.summary()
        assert result.response() == {"batchItemFailures": []}
    # THEN the replica holds what the consistent read found, one µs above the tie
    assert database.items("orders")["1"] == ({"id": 1, "v": "b"}, BASE_MS * 1000 + 1)


# --- one source per table --------------------------------------------------------------------


def test_streams_records_of_a_kinesis_table_are_refused(database: Database) -> None:
    assert database.process([kinsert({"id": 1}, BASE_MS, {"v": "k"})]).applied == 1
    result = database.process([insert({"id": 1}, 10**22, {"v": "s"})])
    assert result.dead_lettered == 1
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "source_mix"
    message = letter["error_message"]
    assert "'Orders'" in message and "Kinesis Data Streams" in message
    assert "DynamoDB Streams" in message and "Switching sources" in message
    assert database.items("orders")["1"][0] == {"id": 1, "v": "k"}


def test_kinesis_records_of_a_streams_table_are_refused(database: Database) -> None:
    assert database.process([insert({"id": 1}, 10**22, {"v": "s"})]).applied == 1
    result = database.process([kinsert({"id": 1}, BASE_MS, {"v": "k"})])
    assert result.dead_lettered == 1
    assert database.dead_letters()[0]["error_class"] == "source_mix"


def test_a_table_replicated_before_the_bookkeeping_is_recognised(database: Database) -> None:
    # GIVEN a Streams-fed replica whose source was never recorded (an older cdc)
    assert database.process([insert({"id": 1}, 10**22, {"v": "s"})]).applied == 1
    t = database.table("cdc_replica_sources")
    with database.engine.begin() as conn:
        conn.execute(t.delete())
    # WHEN a new process sees Kinesis records for it first
    result = database.process([kinsert({"id": 1}, BASE_MS, {"v": "k"})])
    # THEN its stored versions tell it was fed by Streams: refused
    assert result.dead_lettered == 1
    with database.engine.connect() as conn:
        assert conn.execute(select(t.c.source)).scalar_one() == "dynamodb_streams"


def test_an_unbuildable_newest_change_falls_back_to_the_next_newest(database: Database) -> None:
    # GIVEN a batch whose newest change of a key cannot be stored (U+0000, rejected)
    ok = kinsert({"id": 1}, BASE_MS, {"v": "ok"})
    bad = kmodify({"id": 1}, BASE_MS + 1, {"v": "bad\x00"})
    # WHEN it is applied (through the source and tie checks)
    result = database.process([bad, ok])
    # THEN the newest is dead-lettered and the one before it applied, as for Streams
    assert result.dead_lettered == 1, result.summary()
    assert database.items("orders")["1"] == ({"id": 1, "v": "ok"}, BASE_MS * 1000)


def test_a_change_tied_with_a_hard_delete_is_dead_lettered(database: Database) -> None:
    # GIVEN a table with hard deletes whose key was deleted at a millisecond
    settings = Settings(
        database_url=database.engine.url,
        schema=database.schema,
        tables={"Orders": TableConfig("Orders", options=TableOptions(deletes="hard"))},
    )
    rep = Replicator(database.engine, settings)
    assert rep.process([kinsert({"id": 1}, BASE_MS - 1, {"v": "a"})]).applied == 1
    assert rep.process([kremove({"id": 1}, BASE_MS)]).applied == 1
    # WHEN a different change of the same millisecond comes (no row left to compare)
    tie = rep.process([kmodify({"id": 1}, BASE_MS, {"v": "b"})])
    # THEN it is a tie against the tombstone, not a duplicate
    assert tie.dead_lettered == 1, tie.summary()
    assert "hard delete" in database.dead_letters()[0]["error_message"]
    # and a second REMOVE of that millisecond is a duplicate
    assert rep.process([kremove({"id": 1}, BASE_MS)]).dead_lettered == 0


def test_a_precision_switch_keeps_the_order(database: Database) -> None:
    # GIVEN the destination switched from milliseconds to microseconds between changes
    before = kmodify({"id": 1}, BASE_MS, {"v": "ms"})
    after = kmodify({"id": 1}, BASE_MS * 1000 + 1, {"v": "µs"})
    # WHEN they arrive newest first
    database.process([after])
    database.process([before])
    # THEN the later change stays: both versions are microseconds
    assert database.items("orders")["1"] == ({"id": 1, "v": "µs"}, BASE_MS * 1000 + 1)


def test_a_redelivered_change_of_a_typed_table_is_a_duplicate_not_a_tie(
    database: Database,
) -> None:
    # GIVEN a typed table (every column kind) holding a change
    from decimal import Decimal
    from pathlib import Path

    from cdc.config import load_settings

    env = {
        "CDC_CONFIG": str(Path(__file__).resolve().parents[1] / "mappings" / "all_types.toml"),
        "CDC_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
    }
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    rep = Replicator(database.engine, load_settings(env))
    item = {
        "Name": "thing",
        "Amount": Decimal("12.5"),
        "Price": Decimal("3.1"),
        "Wide": 10**30,
        "Big": 2**40,
        "Count": 7,
        "Small": 3,
        "Flag": True,
        "Ratio": Decimal("0.1"),
        "At": "2024-05-01T08:30:00.123456Z",
        "AtMs": 1714552200123,
        "Day": "2024-05-01",
        "Doc": {"a": [1, "x", {"b": None}]},
        "Blob": b"\x00\xffbytes",
        "Tags": {"b", "a"},
        "Nums": {1, 2},
        "Address": {"City": "Berlin"},
        "Other": "kept in extra",
    }
    first = kinsert({"Id": "t1"}, BASE_MS, item, table="Things")
    assert rep.process([first]).applied == 1
    # WHEN the same change is delivered again, in a later batch, at a new position
    again = rep.process([wrap_again(first)])
    # THEN it is a duplicate (stale), not a tie
    assert (again.stale, again.dead_lettered) == (1, 0), again.summary()
    # while a different change at that time is a tie
    other = rep.process([kmodify({"Id": "t1"}, BASE_MS, {**item, "Count": 8}, table="Things")])
    assert other.dead_lettered == 1, other.summary()


def test_an_outage_reports_every_record_by_its_kinesis_sequence_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cdc import handler
    from tests.factories import FakeContext

    # GIVEN a database nobody answers
    monkeypatch.setenv("CDC_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    for name in ("CDC_DATABASE_SECRET_ARN", "CDC_SCHEMA", "CDC_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    records = [kinsert({"id": i}, BASE_MS + i) for i in range(3)]
    handler.reset()
    try:
        # WHEN a Kinesis batch arrives with little time left
        response = handler.handler({"Records": records}, FakeContext(2_000))
    finally:
        handler.reset()
    # THEN Lambda hears every record's kinesis.sequenceNumber, to deliver them again
    assert response == {
        "batchItemFailures": [{"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in records]
    }
