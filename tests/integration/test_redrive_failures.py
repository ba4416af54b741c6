"""`cdc redrive-failures`: on-failure invocation records → records re-read and applied.

moto emulates DynamoDB, DynamoDB Streams and SQS; the replica is the real PostgreSQL of
tests/conftest.py. The message body is the documented invocation record shape (Lambda
developer guide, "Retain discarded records for a DynamoDB event source").
"""

from __future__ import annotations

import argparse
import json

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from cdc.app import cli
from cdc.app.commands import redrive_failures as command
from cdc.aws.clients import Clients
from cdc.sources.dynamodb_streams.on_failure import batch_info

REGION = "eu-central-1"


@pytest.fixture
def stream(clients):
    """A table with a stream holding 4 records; returns (stream ARN, shard, sequences)."""
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Orders",
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = ddb.describe_table(TableName="Orders")["Table"]["LatestStreamArn"]
    for i in range(1, 4):
        ddb.put_item(TableName="Orders", Item={"Id": {"N": str(i)}, "v": {"S": f"v{i}"}})
    ddb.put_item(TableName="Orders", Item={"Id": {"N": "2"}, "v": {"S": "v2b"}})
    streams = clients.streams()
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    return arn, shard, [r["dynamodb"]["SequenceNumber"] for r in records]


def invocation_record(arn, shard, first, last, size) -> str:
    return json.dumps(
        {
            "requestContext": {
                "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
                "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:cdc",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 3,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": "2026-11-14T00:13:49.717Z",
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": first,
                "endSequenceNumber": last,
                "approximateArrivalOfFirstRecord": "2026-11-14T00:13:19Z",
                "approximateArrivalOfLastRecord": "2026-11-14T00:13:19Z",
                "batchSize": size,
                "streamArn": arn,
            },
        }
    )


def queue(clients, *bodies) -> str:
    sqs = clients.sqs()
    url = sqs.create_queue(QueueName="cdc-on-failure")["QueueUrl"]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    return url


def messages_left(clients, url) -> int:
    attributes = clients.sqs().get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def args_for(url, *argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args([url, "--wait-seconds", "0", *argv])


def replica(pg_engine, schema):
    with pg_engine.connect() as c:
        rows = c.execute(text(f'select id, item::text from "{schema}".orders')).all()
    return {int(r[0]): json.loads(r[1]) for r in rows}


def test_failed_batch_is_reread_applied_and_its_message_deleted(
    clients, stream, pg_engine, pg_settings, pg_schema, capsys
):
    # GIVEN Lambda gave up on the batch of records 2..4 (Id 2, Id 3, Id 2 again)
    arn, shard, seqs = stream
    url = queue(clients, invocation_record(arn, shard, seqs[1], seqs[3], 3))
    # WHEN the queue is redriven
    code = command.run(pg_settings, args_for(url), clients=clients)
    # THEN exactly those records are applied, and the message is gone
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 records: 2 applied, 1 stale, 0 dead-lettered; message deleted" in out
    assert replica(pg_engine, pg_schema) == {2: {"Id": 2, "v": "v2b"}, 3: {"Id": 3, "v": "v3"}}
    assert messages_left(clients, url) == 0


def test_dry_run_changes_nothing(clients, stream, pg_engine, pg_settings, capsys):
    arn, shard, seqs = stream
    url = queue(clients, invocation_record(arn, shard, seqs[0], seqs[0], 1))
    assert command.run(pg_settings, args_for(url, "--dry-run"), clients=clients) == 0
    assert "would redrive" in capsys.readouterr().out
    assert messages_left(clients, url) == 1


class TrimmedStreams:
    """A streams client whose records are past the 24-hour retention."""

    def get_shard_iterator(self, **kwargs):
        raise ClientError(
            {"Error": {"Code": "TrimmedDataAccessException", "Message": "trimmed"}},
            "GetShardIterator",
        )


class ExpiredClients(Clients):
    def streams(self, region=None):
        return TrimmedStreams()


def test_expired_records_are_reported_and_the_message_kept(
    clients, stream, pg_engine, pg_settings, capsys
):
    # GIVEN an invocation record whose records the stream no longer has, a message that
    # is not an invocation record, and one that can be redriven
    arn, shard, seqs = stream
    url = queue(
        clients,
        invocation_record(arn, shard, seqs[0], seqs[1], 2),
        "not json",
    )
    expired = ExpiredClients(REGION)
    expired._clients = clients._clients  # the same moto SQS
    # WHEN redriven
    code = command.run(pg_settings, args_for(url), clients=expired)
    out = capsys.readouterr().out
    # THEN both are reported, kept, and the exit code says so
    assert code == 1
    assert "past the stream's 24-hour retention" in out
    assert "the message body is not JSON" in out
    assert "redrove 0 of 2 messages (0 records); 2 kept" in out
    assert messages_left(clients, url) == 2


class Flaky:
    """Wraps a client: each named call first fails with `failures` network errors."""

    def __init__(self, client, failures, *names):
        self.client = client
        self.left = dict.fromkeys(names, failures)

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if name not in self.left:
            return method

        def call(**kwargs):
            from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

            if self.left[name]:
                self.left[name] -= 1
                kind = EndpointConnectionError if self.left[name] % 2 else ConnectionClosedError
                raise kind(endpoint_url="https://sqs.eu-central-1.amazonaws.com")
            return method(**kwargs)

        call.__name__ = name
        return call


class FlakyClients(Clients):
    def __init__(self, clients):
        super().__init__(REGION)
        self.real = clients

    def sqs(self, region=None):
        return Flaky(self.real.sqs(region), 2, "receive_message", "delete_message")

    def streams(self, region=None):
        return Flaky(self.real.streams(region), 2, "get_shard_iterator", "get_records")


def test_network_errors_are_retried_with_backoff(
    clients, stream, pg_engine, pg_settings, pg_schema, capsys
):
    arn, shard, seqs = stream
    url = queue(clients, invocation_record(arn, shard, seqs[1], seqs[3], 3))
    code = command.run(pg_settings, args_for(url), clients=FlakyClients(clients))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 records: 2 applied, 1 stale, 0 dead-lettered; message deleted" in out
    assert messages_left(clients, url) == 0


def test_batch_info_accepts_sns_envelopes_and_rejects_other_shapes():
    body = invocation_record("arn:aws:dynamodb:r:1:table/T/stream/L", "shardId-1", "10", "12", 3)
    assert batch_info(body)["endSequenceNumber"] == "12"
    wrapped = json.dumps({"Type": "Notification", "Message": body})
    assert batch_info(wrapped)["shardId"] == "shardId-1"
    with pytest.raises(ValueError, match="no DDBStreamBatchInfo"):
        batch_info(json.dumps({"requestContext": {}}))
    with pytest.raises(ValueError, match="not a sequence number"):
        batch_info(body.replace('"12"', '"x"'))


def test_cli_redrive_failures_through_environment(
    clients, stream, pg_engine, pg_schema, monkeypatch, capsys
):
    arn, shard, seqs = stream
    url = queue(clients, invocation_record(arn, shard, seqs[0], seqs[0], 1))
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    assert cli.main(["redrive-failures", url, "--wait-seconds", "0"]) == 0
    assert "redrove 1 of 1 messages (1 records); 0 kept" in capsys.readouterr().out
    assert replica(pg_engine, pg_schema) == {1: {"Id": 1, "v": "v1"}}


def test_redrive_failures_help():
    with pytest.raises(SystemExit) as exit_:
        cli.main(["redrive-failures", "--help"])
    assert exit_.value.code == 0
