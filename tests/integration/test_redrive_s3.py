"""`cdc redrive-failures s3://BUCKET[/PREFIX]`: an S3 on-failure destination's objects →
their records applied, the objects deleted (or moved) only once committed.

The object is the documented one (Lambda developer guide, "Retain discarded records for
a DynamoDB event source in Lambda", "Example Amazon S3 invocation record": the SQS
fields plus `payload`, the original event as an escaped JSON string), under the
documented key `aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<UUID>`:
tests/events/on_failure_s3_object.json. Its records are past any stream's retention, so
nothing but the payload can supply them.

The CLI runs as a separate process against `moto_server` (S3), on PostgreSQL, MariaDB
and SQLite; the crash between commit and delete is injected in process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from cdc.app.commands import redrive_failures as command
from cdc.aws.clients import Clients
from cdc.sources.dynamodb_streams.on_failure import failed_batch
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.moto_server import (
    MotoServer,
    cdc_env,
    database_url,
    moto_server,  # noqa: F401 - the fixture
    run_cdc,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"
OBJECT = (EVENTS / "on_failure_s3_object.json").read_text()
BUCKET = "cdc-on-failure"
ESM = "aws/lambda/2b5c8f4e-9d1a-4c3b-8e7f-0a1b2c3d4e5f"
KEY = f"{ESM}/shardId-00000001714552000000-a1b2c3d4/2024/05/01/2024-05-01T14.30.04-7d3c2b1a"


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    yield from open_database(request, tmp_path)


@pytest.fixture
def aws(moto_server: MotoServer) -> MotoServer:  # noqa: F811 - the imported fixture
    moto_server.reset()
    moto_server.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    return moto_server


def put(s3: Any, key: str, body: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())


def keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def env_for(aws: MotoServer, database: Database) -> dict[str, str]:
    url = (
        database.engine.url.render_as_string(hide_password=False)
        if database.name == "sqlite"
        else database_url(database.engine)
    )
    return cdc_env(aws.url, url, database.schema)


SHIPPED = ({"OrderId": "ord-1", "Status": "SHIPPED", "Total": 19.9}, 400000000000000000000000003)
PLACED = ({"OrderId": "ord-2", "Status": "PLACED", "Total": 5}, 400000000000000000000000002)


# --- the documented shape ------------------------------------------------------------------


def test_the_documented_object_parses_to_its_records():
    batch = failed_batch(OBJECT.encode())
    assert batch.info["batchSize"] == 3
    assert [r["dynamodb"]["SequenceNumber"][-1] for r in batch.records or []] == ["1", "2", "3"]
    # The payload as an object rather than a string (what emulators write) is read too.
    document = json.loads(OBJECT)
    document["payload"] = json.loads(document["payload"])
    assert failed_batch(json.dumps(document).encode()).records == batch.records
    # Without a payload, the coordinates alone (as an SQS message has them).
    del document["payload"]
    assert failed_batch(json.dumps(document).encode()).records is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b'{"payload": "{}"}', "no DDBStreamBatchInfo"),
        (OBJECT.replace('"payload": "{', '"payload": "{{').encode(), "payload is not a JSON"),
        (OBJECT.replace('\\"Records\\"', '\\"Rows\\"').encode(), "no 'Records' list"),
    ],
)
def test_an_object_that_is_not_an_invocation_record_is_refused(body, message):
    with pytest.raises(ValueError, match=message):
        failed_batch(body)


# --- the CLI, a separate process --------------------------------------------------------------


def test_objects_are_applied_and_deleted_and_a_malformed_one_is_left_in_place(
    aws: MotoServer, database: Database
) -> None:
    # GIVEN the documented object, and one that is not an invocation record
    s3 = aws.client("s3")
    put(s3, KEY, OBJECT)
    bad = f"{ESM}/shardId-00000001714552000000-a1b2c3d4/2024/05/01/2024-05-01T14.31.00-0bad"
    put(s3, bad, '{"truncated": ')
    # WHEN the bucket's prefix is redriven, days after the stream dropped the records
    run = run_cdc("redrive-failures", f"s3://{BUCKET}/aws/lambda/", env=env_for(aws, database))
    # THEN the records are applied, their object deleted, the bad one reported and kept
    assert run.returncode == 1, run.stdout + run.stderr
    # (ord-1's INSERT is superseded by its MODIFY in the same batch: stale)
    assert (
        f"redrove s3://{BUCKET}/{KEY}: 3 records: 2 applied, 1 stale, 0 dead-lettered; "
        "object deleted" in run.stdout
    ), run.stdout
    assert (
        f"kept s3://{BUCKET}/{bad}: not an on-failure invocation record: the object is not "
        "JSON; left in place" in run.stdout
    )
    assert "redrove 1 of 2 objects (3 records); 1 kept" in run.stdout
    assert "Traceback" not in run.stderr
    assert database.items("orders", "order_id") == {"ord-1": SHIPPED, "ord-2": PLACED}
    assert keys(s3) == {bad}


def test_keep_moves_the_object_under_the_done_prefix(aws: MotoServer, database: Database) -> None:
    s3 = aws.client("s3")
    put(s3, KEY, OBJECT)
    env = env_for(aws, database)
    run = run_cdc("redrive-failures", f"s3://{BUCKET}", "--keep", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"moved to s3://{BUCKET}/done/{KEY}" in run.stdout
    assert keys(s3) == {f"done/{KEY}"}
    assert s3.get_object(Bucket=BUCKET, Key=f"done/{KEY}")["Body"].read().decode() == OBJECT
    # A second run does not read the done/ prefix again.
    again = run_cdc("redrive-failures", f"s3://{BUCKET}", "--keep", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "redrove 0 of 0 objects (0 records); 0 kept" in again.stdout
    # Unless asked for: then it is applied again (a no-op) and deleted.
    done = run_cdc("redrive-failures", f"s3://{BUCKET}/done/", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 records: 0 applied, 3 stale, 0 dead-lettered; object deleted" in done.stdout
    assert keys(s3) == set()


def test_dry_run_changes_nothing(aws: MotoServer, database: Database) -> None:
    s3 = aws.client("s3")
    put(s3, KEY, OBJECT)
    run = run_cdc("redrive-failures", f"s3://{BUCKET}", "--dry-run", env=env_for(aws, database))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"would redrive s3://{BUCKET}/{KEY}: 3 records" in run.stdout
    assert keys(s3) == {KEY}
    assert "orders" not in database.table_names()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_bucket_that_does_not_exist_is_one_line(aws: MotoServer, database: Database) -> None:
    run = run_cdc("redrive-failures", "s3://no-such-bucket/x", env=env_for(aws, database))
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "cdc: error: S3 bucket no-such-bucket does not exist: check the bucket (the event "
        "source mapping's on-failure destination) and --region"
    ]


# --- a crash between commit and delete --------------------------------------------------------


class Crash(Exception):
    """The process dying right after the commit (an interrupt, a lost instance)."""


class CrashOnDelete:
    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        if name == "delete_object":

            def crash(**kwargs: Any) -> None:
                raise Crash(kwargs["Key"])

            return crash
        return getattr(self.client, name)


class CrashingClients(Clients):
    def __init__(self, real: Clients) -> None:
        super().__init__(real.region)
        self.real = real

    def s3(self, region: str | None = None) -> Any:
        return CrashOnDelete(self.real.s3(region))


def in_process_bucket(clients: Clients) -> Any:
    s3 = clients.s3()
    s3.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    return s3


def args_for(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_crash_between_commit_and_delete_reapplies_idempotently(
    clients: Clients, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the object, and a run that dies after committing its records
    s3 = in_process_bucket(clients)
    put(s3, KEY, OBJECT)
    with pytest.raises(Crash):
        command.run(database.settings, args_for(f"s3://{BUCKET}"), clients=CrashingClients(clients))
    assert database.items("orders", "order_id") == {"ord-1": SHIPPED, "ord-2": PLACED}
    assert keys(s3) == {KEY}  # committed, not deleted
    # A newer change of ord-2 arrives meanwhile (the guard must keep it).
    newer = {"OrderId": {"S": "ord-2"}, "Status": {"S": "CANCELLED"}, "Total": {"N": "5"}}
    event = json.loads(json.loads(OBJECT)["payload"])
    record = json.loads(json.dumps(event["Records"][1]))
    record["eventName"] = "MODIFY"
    record["dynamodb"].update(SequenceNumber="400000000000000000000000009", NewImage=newer)
    assert database.process([record]).failed == 0
    capsys.readouterr()
    # WHEN the next run finds the object again
    assert command.run(database.settings, args_for(f"s3://{BUCKET}"), clients=clients) == 0
    # THEN it is applied again as a no-op and deleted; nothing went backwards
    out = capsys.readouterr().out
    assert f"redrove s3://{BUCKET}/{KEY}: 3 records: 0 applied, 3 stale" in out, out
    assert keys(s3) == set()
    items = database.items("orders", "order_id")
    assert items["ord-1"] == SHIPPED
    assert items["ord-2"][0]["Status"] == "CANCELLED"


def test_a_record_the_replica_cannot_take_is_dead_lettered_and_the_object_deleted(
    clients: Clients, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an object whose batch holds a malformed record among good ones
    document = json.loads(OBJECT)
    event = json.loads(document["payload"])
    event["Records"][1]["dynamodb"]["NewImage"]["Total"] = {"N": "12abc"}
    document["payload"] = json.dumps(event)
    s3 = in_process_bucket(clients)
    put(s3, KEY, json.dumps(document))
    # WHEN redriven THEN the good records are applied, the bad one dead-lettered (handled)
    assert command.run(database.settings, args_for(f"s3://{BUCKET}"), clients=clients) == 0
    assert "1 dead-lettered; object deleted" in capsys.readouterr().out
    assert database.items("orders", "order_id") == {"ord-1": SHIPPED}
    (letter,) = database.dead_letters()
    assert str(letter["sequence_number"]) == "400000000000000000000000002"
    assert "12abc" in str(letter["error_message"])
    assert keys(s3) == set()


def test_an_object_without_payload_is_read_back_from_the_stream(
    clients: Clients, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a table whose stream still holds the records, and an object that names them
    # without carrying them (as an SQS message does)
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Orders",
        KeySchema=[{"AttributeName": "OrderId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "OrderId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = ddb.describe_table(TableName="Orders")["Table"]["LatestStreamArn"]
    ddb.put_item(TableName="Orders", Item={"OrderId": {"S": "ord-7"}, "Status": {"S": "NEW"}})
    streams = clients.streams()
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (record,) = streams.get_records(ShardIterator=iterator)["Records"]
    sequence = record["dynamodb"]["SequenceNumber"]
    document = json.loads(OBJECT)
    del document["payload"]
    document["DDBStreamBatchInfo"].update(
        streamArn=arn, shardId=shard, startSequenceNumber=sequence, endSequenceNumber=sequence
    )
    s3 = in_process_bucket(clients)
    put(s3, KEY, json.dumps(document))
    # WHEN redriven THEN the record is read from the stream and applied
    assert command.run(database.settings, args_for(f"s3://{BUCKET}"), clients=clients) == 0
    assert "1 records: 1 applied" in capsys.readouterr().out
    assert database.items("orders", "order_id")["ord-7"][0] == {"OrderId": "ord-7", "Status": "NEW"}
    assert keys(s3) == set()


def test_keep_is_refused_for_a_queue(clients: Clients, database: Database) -> None:
    from cdc.core.errors import ConfigError

    url = clients.sqs().create_queue(QueueName="cdc-on-failure")["QueueUrl"]
    with pytest.raises(ConfigError, match="--keep applies to an s3:// destination"):
        command.run(database.settings, args_for(url, "--keep"), clients=clients)
