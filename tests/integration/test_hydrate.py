"""Hydration for KEYS_ONLY and OLD_IMAGE streams (README: How it works; issue 6 item 4).

moto emulates DynamoDB in-process; the replicas are real databases (the parametrised
`db` fixture: PostgreSQL and MariaDB). A table with `hydrate = true` gets the items of
its image-less INSERT/MODIFY records with consistent `BatchGetItem` reads:

- the replica holds the items read back, exactly (38-digit numbers, binary, nested);
- an item gone from DynamoDB is counted stale and no row is written: the REMOVE that
  follows in the stream deletes it;
- unprocessed keys are asked for again; more than 100 keys are read in chunks of 100;
- DynamoDB throttled or unreachable for good: those records are reported for
  redelivery (never dead-lettered) and the rest of the batch applies;
- a table without hydration dead-letters the image-less record with a reason;
- boto3 is imported only when a hydrating table sees such a record.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from cdc.aws.clients import Clients
from cdc.aws.hydrate import Hydrator
from cdc.aws.reads import BATCH_GET_LIMIT
from cdc.config import Settings
from cdc.core.deadline import Deadline
from cdc.core.jsontext import loads
from cdc.core.mapping import TableConfig, TableOptions
from cdc.core.outcomes import Outcome
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from tests.conftest import TestDatabase
from tests.factories import REGION, insert, record, stream_arn

BASE = 10**20  # sequence numbers are 21-40 digit decimal strings
BIG = "12345678901234567890123456789012345678"  # 38 significant digits
REPO = Path(__file__).resolve().parents[2]


# --- DynamoDB (moto) and clients the hydrator is given ---------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB, reached through a plain `Clients` (the hydrator's own kind)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",  # the records' ARN must decide: eu-central-1
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield Clients(REGION).dynamodb(REGION)


class Recording:
    """Wraps a DynamoDB client: records every BatchGetItem request (deep copies)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests: list[dict[str, Any]] = []

    def batch_get_item(self, **kwargs: Any) -> Any:
        self.requests.append(copy.deepcopy(kwargs))
        return self.respond(**kwargs)

    def respond(self, **kwargs: Any) -> Any:
        return self.client.batch_get_item(**kwargs)

    def keys_asked(self, table: str = "Orders") -> list[list[dict[str, Any]]]:
        return [
            r["RequestItems"][table]["Keys"] for r in self.requests if table in r["RequestItems"]
        ]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class UnprocessedFirst(Recording):
    """The first BatchGetItem answers only the first `answered` keys and returns the rest
    in UnprocessedKeys, as DynamoDB does when it is throttled."""

    def __init__(self, client: Any, answered: int) -> None:
        super().__init__(client)
        self.answered = answered

    def respond(self, **kwargs: Any) -> Any:
        if len(self.requests) > 1:
            return self.client.batch_get_item(**kwargs)
        ((table, spec),) = kwargs["RequestItems"].items()
        keys = spec["Keys"]
        response = self.client.batch_get_item(
            RequestItems={table: {**spec, "Keys": keys[: self.answered]}}
        )
        response["UnprocessedKeys"] = {table: {**spec, "Keys": keys[self.answered :]}}
        return response


class UnprocessedForever(Recording):
    """DynamoDB never gets round to any key."""

    def respond(self, **kwargs: Any) -> Any:
        return {"Responses": {}, "UnprocessedKeys": copy.deepcopy(kwargs["RequestItems"])}


class Throttled(Recording):
    """Every call is refused with ProvisionedThroughputExceededException."""

    def respond(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        raise ClientError(
            {
                "Error": {
                    "Code": "ProvisionedThroughputExceededException",
                    "Message": "The level of configured provisioned throughput was exceeded.",
                },
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "BatchGetItem",
        )


class FixedClients(Clients):
    """A `Clients` whose DynamoDB client is the given (wrapped or fake) one; remembers
    which regions were asked for."""

    def __init__(self, client: Any) -> None:
        super().__init__(REGION)
        self.fixed = client
        self.regions: list[str | None] = []

    def dynamodb(self, region: str | None = None) -> Any:
        self.regions.append(region)
        return self.fixed


def hydrating(
    db: TestDatabase, client: Any, sleeps: list[float] | None = None, **tables: TableOptions
) -> tuple[Replicator, FixedClients]:
    """A replicator on `db` whose hydrator reads through `client`; Orders hydrates."""
    settings = db.settings_with(**({"Orders": TableOptions(hydrate=True)} | tables))
    clients = FixedClients(client)
    sink = sleeps if sleeps is not None else []
    hydrator = Hydrator(clients=clients, sleep=sink.append)
    return Replicator(db.engine, settings, hydrator=hydrator), clients


# --- tables, items and records ---------------------------------------------------------


def create_table(client: Any, name: str = "Orders", key: str = "Id", key_type: str = "N") -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": key_type}],
        BillingMode="PAY_PER_REQUEST",
    )


def rich_item(i: int) -> dict[str, Any]:
    """An item with every AttributeValue type, as botocore takes it (binary as bytes)."""
    return {
        "Id": {"N": str(i)},
        "name": {"S": f"Zoë ☃ {i}"},
        "big": {"N": BIG},
        "tiny": {"N": "1E-130"},
        "huge": {"N": "9.99E+125"},
        "price": {"N": "-19.90"},
        "blob": {"B": b"\x00\xff binary " + bytes([i])},
        "flag": {"BOOL": True},
        "nothing": {"NULL": True},
        "tags": {"SS": ["b", "c", "a"]},
        "scores": {"NS": ["10", "9.5", "-1"]},
        "files": {"BS": [b"\x02", b"\x01"]},
        "nested": {
            "M": {
                "lines": {
                    "L": [
                        {"M": {"sku": {"S": "A-1"}, "qty": {"N": "3"}, "raw": {"B": b"\x01\x02"}}},
                        {"N": "0.000000000000000000000000000001"},
                        {"BOOL": False},
                    ]
                },
                "empty": {"M": {}},
            }
        },
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def rich_plain(i: int) -> dict[str, Any]:
    """`rich_item(i)` in the plain JSON form (README: Replica tables)."""
    return {
        "Id": Decimal(i),
        "name": f"Zoë ☃ {i}",
        "big": Decimal(BIG),
        "tiny": Decimal("1E-130"),
        "huge": Decimal("9.99E+125"),
        "price": Decimal("-19.90"),
        "blob": b64(b"\x00\xff binary " + bytes([i])),
        "flag": True,
        "nothing": None,
        "tags": ["a", "b", "c"],
        "scores": [Decimal(-1), Decimal("9.5"), Decimal(10)],
        "files": [b64(b"\x01"), b64(b"\x02")],
        "nested": {
            "lines": [
                {"sku": "A-1", "qty": Decimal(3), "raw": b64(b"\x01\x02")},
                Decimal("0.000000000000000000000000000001"),
                False,
            ],
            "empty": {},
        },
    }


def imageless(
    event_name: str,
    id_: int,
    seq: int,
    *,
    table: str = "Orders",
    view: str = "KEYS_ONLY",
    old: dict[str, Any] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """An INSERT/MODIFY/REMOVE as a KEYS_ONLY (or OLD_IMAGE) stream delivers it."""
    rec = record(event_name, {"Id": id_}, BASE + seq, table=table, old=old, **kw)
    rec["dynamodb"]["StreamViewType"] = view
    assert "NewImage" not in rec["dynamodb"]
    return rec


def same(actual: Any, expected: Any, path: str = "item") -> None:
    """Deep equality that tells True from 1 and 1 from "1" (plain == does not)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        assert set(actual) == set(expected), (
            f"{path}: members {sorted(actual)} != {sorted(expected)}"
        )
        for name in expected:
            same(actual[name], expected[name], f"{path}.{name}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not an array"
        assert len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, f"{path}[{n}]")
    elif isinstance(expected, bool) or expected is None:
        assert actual is expected, f"{path}: {actual!r} is not {expected!r}"
    elif isinstance(expected, Decimal):
        assert isinstance(actual, Decimal), f"{path}: {actual!r} is not a number"
        assert actual == expected, f"{path}: {actual} != {expected} (not exact)"
    else:
        assert type(actual) is type(expected) and actual == expected, (
            f"{path}: {actual!r} != {expected!r}"
        )


def replica(db: TestDatabase, table: str = "orders") -> dict[int, dict[str, Any]]:
    """{id: {"seq", "deleted", "item"}} of a document-mode table keyed by Id (N)."""
    found = {}
    for row in db.rows(table):
        found[int(row["id"])] = {
            "seq": sequence_of(int(row["_cdc_seq"])),
            "deleted": bool(row["_cdc_deleted"]),
            "item": None if row["item"] is None else loads(row["item"]),
        }
    return found


def table_exists(db: TestDatabase, table: str) -> bool:
    from sqlalchemy import inspect

    return inspect(db.engine).has_table(table, schema=db.schema)


def dead_letters(db: TestDatabase) -> list[dict[str, Any]]:
    if not table_exists(db, "cdc_dead_letters"):
        return []
    return db.rows("cdc_dead_letters")


def checkpoints(db: TestDatabase) -> dict[str, dict[str, Any]]:
    return {row["stream_arn"]: row for row in db.rows("cdc_checkpoints")}


def seq_of(rec: dict[str, Any]) -> str:
    return str(rec["dynamodb"]["SequenceNumber"])


# --- the items read back -----------------------------------------------------------------


def test_hydrated_items_are_exact(db: TestDatabase, aws: Any) -> None:
    create_table(aws)
    for i in (1, 2, 3):
        aws.put_item(TableName="Orders", Item=rich_item(i))
    client = Recording(aws)
    rep, clients = hydrating(db, client)
    records = [
        imageless("INSERT", 1, 1),
        # OLD_IMAGE stream: the old image is not the item to store
        imageless("MODIFY", 2, 2, view="OLD_IMAGE", old={"Id": 2, "name": "old name"}),
        # KEYS_ONLY INSERT then MODIFY of one key: one row, the higher sequence
        imageless("INSERT", 3, 3),
        imageless("MODIFY", 3, 4),
        # A record that carries its image is applied from it, never read back
        insert({"Id": 4}, BASE + 5, {"name": "from the image"}),
    ]
    result = rep.process(records)

    assert result.outcomes == [Outcome.SETTLED] * len(records), result.summary()
    assert result.item_failures == []
    assert result.dead_lettered == 0
    assert result.applied == 4
    rows = replica(db)
    assert set(rows) == {1, 2, 3, 4}
    for i, seq in ((1, 1), (2, 2), (3, 4)):
        assert rows[i]["seq"] == BASE + seq
        assert rows[i]["deleted"] is False
        same(rows[i]["item"], rich_plain(i), f"item {i}")
    same(rows[4]["item"], {"Id": Decimal(4), "name": "from the image"})
    assert rows[4]["seq"] == BASE + 5

    # One consistent read of the three distinct keys that lacked an image, in the
    # records' region (from the stream ARN, not the environment's us-east-1).
    assert len(client.requests) == 1
    (request,) = client.requests
    assert request["RequestItems"]["Orders"]["ConsistentRead"] is True
    asked = sorted(int(k["Id"]["N"]) for k in request["RequestItems"]["Orders"]["Keys"])
    assert asked == [1, 2, 3]
    assert set(clients.regions) == {REGION}
    assert dead_letters(db) == []


def test_binary_and_string_keys_are_hydrated(db: TestDatabase, aws: Any) -> None:
    """Keys are sent back to DynamoDB in botocore's form (bytes for B) and the items
    found are matched to their records whatever the key type."""
    create_table(aws, "Blobs", "K", "B")
    create_table(aws, "Users", "user-ID", "S")
    aws.put_item(TableName="Blobs", Item={"K": {"B": b"\x00\x01key"}, "v": {"N": "1"}})
    aws.put_item(TableName="Users", Item={"user-ID": {"S": "ü-1"}, "v": {"N": "2"}})
    rep, _ = hydrating(
        db, Recording(aws), Blobs=TableOptions(hydrate=True), Users=TableOptions(hydrate=True)
    )
    blob = record("INSERT", {"K": b"\x00\x01key"}, BASE + 1, table="Blobs")
    user = record("MODIFY", {"user-ID": "ü-1"}, BASE + 2, table="Users")
    result = rep.process([blob, user])

    assert result.outcomes == [Outcome.SETTLED, Outcome.SETTLED], result.summary()
    assert result.applied == 2
    (b,) = db.rows("blobs")
    assert bytes(b["k"]) == b"\x00\x01key"
    same(loads(b["item"]), {"K": b64(b"\x00\x01key"), "v": Decimal(1)})
    (u,) = db.rows("users")
    assert u["user_id"] == "ü-1"
    same(loads(u["item"]), {"user-ID": "ü-1", "v": Decimal(2)})


# --- an item gone by the time it is read ---------------------------------------------------


def test_vanished_item_is_stale_and_left_to_its_remove(db: TestDatabase, aws: Any) -> None:
    create_table(aws)
    aws.put_item(TableName="Orders", Item=rich_item(1))
    aws.put_item(TableName="Orders", Item=rich_item(2))
    aws.delete_item(TableName="Orders", Key={"Id": {"N": "2"}})  # deleted since
    client = Recording(aws)
    rep, _ = hydrating(db, client)
    first = [
        imageless("INSERT", 1, 1),
        imageless("INSERT", 2, 2),
        imageless("MODIFY", 2, 3),
        imageless("INSERT", 5, 4),  # never existed as far as the read can tell
    ]
    result = rep.process(first)

    assert result.outcomes == [Outcome.SETTLED] * 4, result.summary()
    assert result.item_failures == []
    assert (result.applied, result.stale, result.dead_lettered) == (1, 3, 0)
    stats = result.by_table[(stream_arn("Orders"), "Orders")]
    assert (stats.records, stats.applied, stats.stale, stats.dead_lettered, stats.failed) == (
        4,
        1,
        3,
        0,
        0,
    )
    rows = replica(db)
    assert set(rows) == {1}, "no row may be written for an item that is gone"
    assert dead_letters(db) == []
    point = checkpoints(db)[stream_arn("Orders")]
    assert (point["records_applied"], point["records_stale"], point["records_dead_lettered"]) == (
        1,
        3,
        0,
    )

    # The REMOVEs that follow in the stream (KEYS_ONLY: no OldImage) are not read back;
    # they leave the keys soft-deleted at their sequence numbers.
    asked_before = len(client.requests)
    removes = [imageless("REMOVE", 2, 5), imageless("REMOVE", 5, 6)]
    result = rep.process(removes)
    assert result.outcomes == [Outcome.SETTLED] * 2, result.summary()
    assert result.applied == 2
    assert len(client.requests) == asked_before, "a REMOVE needs no read"
    rows = replica(db)
    assert rows[2]["deleted"] is True and rows[2]["seq"] == BASE + 5
    assert rows[5]["deleted"] is True and rows[5]["seq"] == BASE + 6
    assert rows[1]["deleted"] is False and rows[1]["seq"] == BASE + 1

    # Lambda redelivering the first batch changes nothing.
    result = rep.process(first)
    assert result.item_failures == [] and result.applied == 0 and result.stale == 4
    assert replica(db) == rows


# --- unprocessed keys and chunks of 100 ------------------------------------------------------


def test_unprocessed_keys_are_asked_for_again(db: TestDatabase, aws: Any) -> None:
    create_table(aws)
    for i in range(1, 9):
        aws.put_item(TableName="Orders", Item=rich_item(i))
    client = UnprocessedFirst(aws, answered=3)
    sleeps: list[float] = []
    rep, _ = hydrating(db, client, sleeps)
    records = [imageless("INSERT", i, i) for i in range(1, 9)]
    result = rep.process(records)

    assert result.outcomes == [Outcome.SETTLED] * 8, result.summary()
    assert result.item_failures == [] and result.applied == 8 and result.stale == 0
    first, second = client.keys_asked()
    assert len(client.requests) == 2
    assert len(first) == 8
    assert second == first[3:], "the retry asks for exactly the unprocessed keys"
    assert client.requests[1]["RequestItems"]["Orders"]["ConsistentRead"] is True
    assert len(sleeps) == 1 and sleeps[0] > 0, "backs off before asking again"
    rows = replica(db)
    assert sorted(rows) == list(range(1, 9))
    for i in range(1, 9):
        same(rows[i]["item"], rich_plain(i), f"item {i}")


class Unreachable(Recording):
    """The first `failures` calls cannot reach DynamoDB (refused, timed out, cut)."""

    def __init__(self, client: Any, failures: int) -> None:
        super().__init__(client)
        self.failures = failures

    def respond(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

        if len(self.requests) <= self.failures:
            kind = EndpointConnectionError if len(self.requests) % 2 else ConnectionClosedError
            raise kind(endpoint_url="https://dynamodb.eu-central-1.amazonaws.com")
        return self.client.batch_get_item(**kwargs)


def test_network_errors_are_retried_with_backoff(db: TestDatabase, aws: Any) -> None:
    create_table(aws)
    for i in (1, 2):
        aws.put_item(TableName="Orders", Item=rich_item(i))
    client = Unreachable(aws, failures=3)
    sleeps: list[float] = []
    rep, _ = hydrating(db, client, sleeps)
    result = rep.process([imageless("INSERT", 1, 1), imageless("INSERT", 2, 2)])

    assert result.outcomes == [Outcome.SETTLED] * 2, result.summary()
    assert len(client.requests) == 4
    assert len(sleeps) == 3, "backs off before each new attempt"
    rows = replica(db)
    for i in (1, 2):
        same(rows[i]["item"], rich_plain(i), f"item {i}")


def test_more_than_100_keys_are_read_in_chunks_of_100(db: TestDatabase, aws: Any) -> None:
    create_table(aws)
    count = 2 * BATCH_GET_LIMIT + 50
    with_items = [i for i in range(1, count + 1) if i % 50 != 0]  # 5 vanished
    for i in with_items:
        aws.put_item(TableName="Orders", Item={"Id": {"N": str(i)}, "n": {"S": f"item {i}"}})
    client = Recording(aws)
    rep, _ = hydrating(db, client)
    records = [imageless("INSERT", i, i) for i in range(1, count + 1)]
    records += [imageless("MODIFY", 7, count + 1)]  # a key twice: read once
    result = rep.process(records)

    assert result.item_failures == [], result.summary()
    assert result.applied == len(with_items)
    assert result.stale == len(records) - len(with_items)
    sizes = [len(keys) for keys in client.keys_asked()]
    assert sizes == [100, 100, 50], sizes
    asked = [int(k["Id"]["N"]) for keys in client.keys_asked() for k in keys]
    assert sorted(asked) == list(range(1, count + 1)), "every key once"
    assert all(r["RequestItems"]["Orders"]["ConsistentRead"] is True for r in client.requests)
    rows = replica(db)
    assert sorted(rows) == with_items
    assert rows[7]["seq"] == BASE + count + 1
    assert all(rows[i]["item"] == {"Id": Decimal(i), "n": f"item {i}"} for i in with_items)


# --- DynamoDB throttled or unreachable for good ----------------------------------------------


def unreadable_batch() -> list[dict[str, Any]]:
    return [
        insert({"Id": 10}, BASE + 1, {"note": "has its image"}),
        insert({"Id": 20}, BASE + 2, table="Customers"),
        imageless("INSERT", 1, 3),
        insert({"Id": 21}, BASE + 4, table="Customers"),
        imageless("MODIFY", 2, 5, view="OLD_IMAGE", old={"Id": 2, "was": "old"}),
    ]


def countdown(budget_ms: int) -> Deadline:
    """Lambda's deadline: `budget_ms` from now."""
    started = time.monotonic()
    return Deadline(lambda: max(0, int(budget_ms - (time.monotonic() - started) * 1000)))


def failing_client(failure: str, aws: Any) -> Recording:
    return Throttled(aws) if failure == "throttled" else UnprocessedForever(aws)


@pytest.mark.parametrize("failure", ["throttled", "unprocessed_forever"])
def test_dynamodb_unreadable_reports_records_and_applies_the_rest(
    db: TestDatabase, aws: Any, failure: str
) -> None:
    create_table(aws)
    aws.put_item(TableName="Orders", Item=rich_item(1))
    client = failing_client(failure, aws)
    rep, _ = hydrating(db, client)
    records = unreadable_batch()
    result = rep.process(records, countdown(60_000))

    unreadable = [records[2], records[4]]
    assert result.outcomes == [
        Outcome.SETTLED,
        Outcome.SETTLED,
        Outcome.FAILED,
        Outcome.SETTLED,
        Outcome.FAILED,
    ], result.summary()
    assert result.item_failures == [seq_of(r) for r in unreadable]
    assert result.response() == {
        "batchItemFailures": [{"itemIdentifier": seq_of(r)} for r in unreadable]
    }
    assert result.dead_lettered == 0
    assert dead_letters(db) == [], "an outage of DynamoDB is never dead-lettered"
    assert result.error and "DynamoDB" in result.error
    assert set(replica(db)) == {10}
    assert set(replica(db, "customers")) == {20, 21}
    orders = result.by_table[(stream_arn("Orders"), "Orders")]
    assert (orders.records, orders.applied, orders.stale, orders.failed, orders.dead_lettered) == (
        3,
        1,
        0,
        2,
        0,
    )
    customers = result.by_table[(stream_arn("Customers"), "Customers")]
    assert (customers.records, customers.applied, customers.failed) == (2, 2, 0)
    assert len(client.requests) >= 2, "retried before giving up"

    # DynamoDB answers again: the redelivered records apply.
    rep2, _ = hydrating(db, Recording(aws))
    aws.put_item(TableName="Orders", Item=rich_item(2))
    again = rep2.process(unreadable)
    assert again.outcomes == [Outcome.SETTLED] * 2 and again.applied == 2
    rows = replica(db)
    same(rows[1]["item"], rich_plain(1))
    same(rows[2]["item"], rich_plain(2))


def test_checkpoint_does_not_pass_records_reported_for_redelivery(
    db: TestDatabase, aws: Any
) -> None:
    """cdc_checkpoints holds the last sequence *applied* per stream (README: Replica
    tables, "Bookkeeping tables"): records reported because their items could not be
    read were not applied."""
    rep, _ = hydrating(db, UnprocessedForever(aws))
    records = unreadable_batch()
    result = rep.process(records)
    assert result.item_failures == [seq_of(records[2]), seq_of(records[4])]
    point = checkpoints(db)[stream_arn("Orders")]
    assert sequence_of(int(point["last_sequence"])) == BASE + 1, (
        f"checkpoint claims sequence {point['last_sequence']} applied, but records "
        f"{result.item_failures} were reported for redelivery"
    )
    assert (point["records_applied"], point["records_stale"], point["records_dead_lettered"]) == (
        1,
        0,
        0,
    )
    assert sequence_of(int(checkpoints(db)[stream_arn("Customers")]["last_sequence"])) == BASE + 4


def pg_hydrating(pg_engine: Any, pg_schema: str, hydrator: Hydrator) -> Replicator:
    settings = Settings(
        database_url=pg_engine.url,
        schema=pg_schema,
        tables={"Orders": TableConfig("Orders", options=TableOptions(hydrate=True))},
    )
    return Replicator(pg_engine, settings, hydrator=hydrator)


def test_giving_up_takes_no_time_when_sleep_is_injected(pg_engine: Any, pg_schema: str) -> None:
    """`Hydrator(sleep=...)` governs every wait of the hydrator, the throttling retries
    included: with a no-op sleep, a DynamoDB that throttles for good is given up on at
    once."""
    client = Throttled(None)
    sleeps: list[float] = []
    rep = pg_hydrating(
        pg_engine, pg_schema, Hydrator(clients=FixedClients(client), sleep=sleeps.append)
    )
    started = time.monotonic()
    result = rep.process([imageless("INSERT", 1, 1)], countdown(60_000))
    elapsed = time.monotonic() - started
    assert result.outcomes == [Outcome.FAILED], result.summary()
    assert len(client.requests) >= 2, "throttling is retried before giving up"
    assert elapsed < 2.0, f"took {elapsed:.1f}s to give up with sleep disabled"


def test_throttling_never_outlives_the_invocation(pg_engine: Any, pg_schema: str) -> None:
    """The default hydrator (real sleeps) facing a DynamoDB that throttles for good
    still answers before Lambda's deadline, with the records reported (a timed-out
    invocation fails the whole batch, README: Failure handling)."""
    rep = pg_hydrating(pg_engine, pg_schema, Hydrator(clients=FixedClients(Throttled(None))))
    records = [imageless("INSERT", 1, 1), insert({"Id": 2}, BASE + 2, table="Customers")]
    budget_s = 4.0
    started = time.monotonic()
    result = rep.process(records, countdown(int(budget_s * 1000)))
    elapsed = time.monotonic() - started
    assert result.outcomes == [Outcome.FAILED, Outcome.SETTLED], result.summary()
    assert elapsed < budget_s, f"answered after {elapsed:.1f}s, the deadline was {budget_s}s"


# --- a table that does not hydrate -------------------------------------------------------------


def test_table_without_hydrate_dead_letters_missing_image(db: TestDatabase) -> None:
    class Untouchable:
        def items_for(self, changes: Any) -> Any:
            raise AssertionError("a table without hydrate must not read DynamoDB")

    rep = Replicator(
        db.engine,
        db.settings_with(Other=TableOptions(hydrate=True)),
        hydrator=Untouchable(),
    )
    records = [
        imageless("INSERT", 1, 1),
        imageless("MODIFY", 2, 2, view="OLD_IMAGE", old={"Id": 2, "x": 1}),
        insert({"Id": 3}, BASE + 3),
    ]
    result = rep.process(records)

    assert result.outcomes == [Outcome.DEAD_LETTERED, Outcome.DEAD_LETTERED, Outcome.SETTLED]
    assert result.item_failures == []
    assert result.dead_lettered == 2
    assert set(replica(db)) == {3}
    letters = {row["sequence_number"]: row for row in dead_letters(db)}
    assert set(letters) == {seq_of(records[0]), seq_of(records[1])}
    for rec in records[:2]:
        letter = letters[seq_of(rec)]
        assert letter["error_class"] == "missing_image"
        assert letter["source_table"] == "Orders"
        assert letter["status"] == "pending"
        assert json.loads(letter["raw_record"]) == rec
        message = letter["error_message"]
        assert "NewImage" in message
        assert "hydrate" in message, message
        assert "NEW_IMAGE" in message or "view type" in message, message


# --- boto3 only when needed ----------------------------------------------------------------------


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CDC_", "AWS_", "PYTHON"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_the_handler_does_not_import_boto3(tmp_path: Path) -> None:
    done = run_python(
        """
        import sys
        import cdc.handler
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "moto"))
        assert not loaded, loaded
        assert "cdc.aws.hydrate" not in sys.modules
        print("ok")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_boto3_is_imported_only_when_a_hydrating_table_needs_an_item(tmp_path: Path) -> None:
    """Run in a fresh interpreter: records with images (hydrating table or not) and an
    image-less record of a table without hydration never import boto3; the first
    image-less record of a hydrating table does, from the hydration path."""
    done = run_python(
        f"""
        import sys, traceback
        sys.path.insert(0, {str(REPO)!r})
        from cdc.core.outcomes import Outcome
        from cdc.jobs.replicate import Replicator
        from cdc.config import Settings, parse_database_url
        from cdc.sql.engines import make_engine
        from cdc.core.mapping import TableConfig, TableOptions
        from tests.factories import insert, record

        attempts = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("boto3", "botocore"):
                    attempts.append((name, traceback.extract_stack()))
                    raise ImportError("boto3 blocked by the test")
                return None

        def loaded():
            return sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))

        # tests.factories uses boto3's serializer: forget it, then watch.
        for name in loaded():
            del sys.modules[name]
        sys.meta_path.insert(0, Watch())

        url = parse_database_url("sqlite:///{tmp_path}/cdc.db", "test")
        settings = Settings(
            database_url=url,
            tables={{"Orders": TableConfig("Orders", options=TableOptions(hydrate=True))}},
        )
        rep = Replicator(make_engine(url), settings)
        result = rep.process([
            insert({{"Id": 1}}, 10**20 + 1),                      # hydrating, has its image
            record("REMOVE", {{"Id": 2}}, 10**20 + 2),              # REMOVE: nothing to read
            record("INSERT", {{"Id": 3}}, 10**20 + 3, table="Plain"),  # no hydrate: dead letter
        ])
        expected = [Outcome.SETTLED, Outcome.SETTLED, Outcome.DEAD_LETTERED]
        assert result.outcomes == expected, result.outcomes
        assert not attempts and not loaded(), (attempts, loaded())
        assert "cdc.aws.hydrate" not in sys.modules

        result = rep.process([record("INSERT", {{"Id": 4}}, 10**20 + 4)])
        assert attempts, "hydration never imported boto3"
        name, stack = attempts[0]
        files = [frame.filename.replace("\\\\", "/") for frame in stack]
        assert any(f.endswith("cdc/aws/hydrate.py") for f in files), files
        # No boto3, no read: the record is reported, never applied or dead-lettered.
        assert result.outcomes == [Outcome.FAILED], result.outcomes
        print("ok")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
