"""`cdc tail` of a Kinesis data stream fed by DynamoDB (README: Kinesis Data Streams):
against moto's Kinesis in-process and, as a user runs it, `cdc` as a separate process
against `moto_server`; resharding (split and merge) order with a scripted client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from cdc.app import cli
from cdc.jobs.kinesis_tail import KinesisTail
from cdc.jobs.replicate import Replicator
from cdc.sources.dynamodb_streams.reader import Shard, ready_shards
from cdc.sources.kinesis.reader import KinesisReader
from tests.kinesis_factories import BASE_MS, change_json
from tests.moto_server import (
    MotoServer,
    cdc_env,
    database_url,
    moto_server,  # noqa: F401 - the fixture
    run_cdc,
)


def put_change(client: Any, arn: str, key: int, created: int, value: str) -> None:
    change = change_json("MODIFY", {"id": key}, created, new={"id": key, "v": value})
    client.put_record(StreamARN=arn, Data=json.dumps(change).encode(), PartitionKey=str(key))


def make_stream(client: Any, name: str = "orders-changes") -> str:
    client.create_stream(StreamName=name, ShardCount=1)
    summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return str(summary["StreamARN"])


def replica(engine: Engine, schema: str | None) -> dict[int, tuple[str, int]]:
    prefix = f'"{schema}".' if schema else ""
    with engine.connect() as conn:
        rows = conn.execute(text(f"select id, item, _cdc_seq from {prefix}orders")).all()
    return {
        int(r[0]): ((r[1] if isinstance(r[1], dict) else json.loads(r[1]))["v"], int(r[2]))
        for r in rows
    }


def test_cli_tail_once_applies_a_kinesis_stream_and_resumes(
    clients: Any, pg_engine: Engine, pg_schema: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # GIVEN a Kinesis stream holding a table's changes, one key changed twice out of order
    kinesis = clients.kinesis()
    arn = make_stream(kinesis)
    put_change(kinesis, arn, 1, BASE_MS + 2, "new")
    put_change(kinesis, arn, 1, BASE_MS + 1, "old")
    put_change(kinesis, arn, 2, BASE_MS, "x")
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    # WHEN `cdc tail ARN --once` runs
    assert cli.main(["tail", arn, "--once", "--poll-interval", "0", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    # THEN the latest change of each key is applied, and the shard's position kept
    assert stats["records"] == 3 and stats["failed_batches"] == 0
    assert replica(pg_engine, pg_schema) == {
        1: ("new", (BASE_MS + 2) * 1000),
        2: ("x", BASE_MS * 1000),
    }
    with pg_engine.connect() as conn:
        (row,) = conn.execute(
            text(f'select shard_id, last_position from "{pg_schema}".cdc_checkpoints')
        ).all()
    assert row[0] == "shardId-000000000000" and row[1] is not None
    # WHEN it runs again after one more change: it continues from its checkpoint
    put_change(kinesis, arn, 3, BASE_MS, "y")
    assert cli.main(["tail", arn, "--once", "--poll-interval", "0"]) == 0
    assert "1 records in 1 batches: 1 applied" in capsys.readouterr().out
    assert 3 in replica(pg_engine, pg_schema)


def test_cli_tail_names_a_missing_kinesis_stream(
    clients: Any, capsys: Any, pg_engine: Engine, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    arn = "arn:aws:kinesis:eu-central-1:123456789012:stream/nope"
    assert cli.main(["tail", arn, "--once"]) == 2
    err = capsys.readouterr().err
    assert "Kinesis stream" in err and "does not exist" in err and "Traceback" not in err


# --- resharding ------------------------------------------------------------------------------


def test_a_merged_shard_waits_for_both_parents() -> None:
    parent_a = Shard("shardId-000000000001", None, "1", "10")
    parent_b = Shard("shardId-000000000002", None, "2", "11")
    child = Shard(
        "shardId-000000000003", "shardId-000000000001", "12", None, "shardId-000000000002"
    )
    shards = [parent_a, parent_b, child]
    assert [s.shard_id for s in ready_shards(shards, set())] == [
        parent_a.shard_id,
        parent_b.shard_id,
    ]
    assert child not in ready_shards(shards, {parent_a.shard_id})
    assert ready_shards(shards, {parent_a.shard_id, parent_b.shard_id}) == [child]


class ScriptedKinesis:
    """A Kinesis client with a split shard: the parent (closed) holds the older change
    of key 1, its child the newer; the child is listed first."""

    def __init__(self, arn: str) -> None:
        self.arn = arn
        old = change_json("MODIFY", {"id": 1}, BASE_MS + 1, new={"id": 1, "v": "parent"})
        new = change_json("MODIFY", {"id": 1}, BASE_MS + 2, new={"id": 1, "v": "child"})
        self.data = {
            "shardId-000000000001": [("30", new)],
            "shardId-000000000000": [("10", old)],
        }
        self.reads: list[str] = []

    def list_shards(self, **kwargs: Any) -> Any:
        return {
            "Shards": [
                {
                    "ShardId": "shardId-000000000001",
                    "ParentShardId": "shardId-000000000000",
                    "SequenceNumberRange": {"StartingSequenceNumber": "30"},
                },
                {
                    "ShardId": "shardId-000000000000",
                    "SequenceNumberRange": {
                        "StartingSequenceNumber": "10",
                        "EndingSequenceNumber": "20",
                    },
                },
            ]
        }

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        return {"ShardIterator": f"{kwargs['ShardId']}|{kwargs['ShardIteratorType']}"}

    def get_records(self, **kwargs: Any) -> Any:
        shard, kind = kwargs["ShardIterator"].split("|")
        self.reads.append(shard)
        if kind == "DONE":
            return {
                "Records": [],
                "NextShardIterator": None if shard.endswith("0") else kwargs["ShardIterator"],
            }
        records = [
            {"SequenceNumber": seq, "Data": json.dumps(c).encode(), "PartitionKey": "1"}
            for seq, c in self.data[shard]
        ]
        return {"Records": records, "NextShardIterator": f"{shard}|DONE"}


def test_a_child_shard_is_read_after_its_parent(tmp_path: Path) -> None:
    from cdc.config import Settings, parse_database_url
    from cdc.sql.engines import make_engine

    url = parse_database_url(f"sqlite:///{tmp_path}/cdc.db", "test")
    engine = make_engine(url)
    arn = "arn:aws:kinesis:eu-central-1:123456789012:stream/orders-changes"
    client = ScriptedKinesis(arn)
    tail = KinesisTail(
        KinesisReader(client, arn),  # type: ignore[arg-type]
        Replicator(engine, Settings(database_url=url)),
        poll_interval=0,
        call_interval=0,
        idle_pages=1,
    )
    stats = tail.run(once=True, max_seconds=20)
    assert stats.failed_batches == 0
    assert client.reads.index("shardId-000000000000") < client.reads.index("shardId-000000000001")
    assert replica(engine, None) == {1: ("child", (BASE_MS + 2) * 1000)}
    with engine.connect() as conn:
        from cdc.sql.bookkeeping import tables

        t = tables(None)["cdc_checkpoints"]
        positions = dict(conn.execute(select(t.c.shard_id, t.c.last_position)).all())
    assert positions == {"shardId-000000000000": "10", "shardId-000000000001": "30"}
    engine.dispose()


# --- as a user runs it: a separate process against moto_server -------------------------------


def test_cdc_tail_process_against_moto_server(
    moto_server: MotoServer,  # noqa: F811 - the imported fixture
    pg_engine: Engine,
    pg_schema: str,
) -> None:
    moto_server.reset()
    kinesis = moto_server.client("kinesis")
    arn = make_stream(kinesis)
    put_change(kinesis, arn, 1, BASE_MS, "a")
    put_change(kinesis, arn, 2, BASE_MS, "b")
    env = cdc_env(moto_server.url, database_url(pg_engine), pg_schema)
    done = run_cdc("tail", arn, "--once", "--poll-interval", "0", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["applied"] == 2
    assert replica(pg_engine, pg_schema) == {1: ("a", BASE_MS * 1000), 2: ("b", BASE_MS * 1000)}
    bad = run_cdc(
        "tail", "arn:aws:kinesis:eu-central-1:123456789012:stream/none", "--once", env=env
    )
    assert bad.returncode == 2
    assert "does not exist" in bad.stderr and "Traceback" not in bad.stderr


# --- cdc redrive-failures of a Kinesis mapping's on-failure message -------------------------


def test_redrive_failures_rereads_a_kinesis_batch(
    clients: Any, pg_engine: Engine, pg_settings: Any, pg_schema: str, capsys: Any
) -> None:
    import argparse

    from cdc.app.commands import redrive_failures as command

    # GIVEN a Kinesis stream of three changes, and Lambda gave up on the last two
    kinesis = clients.kinesis()
    arn = make_stream(kinesis)
    for key, value in ((1, "a"), (2, "b"), (3, "c")):
        put_change(kinesis, arn, key, BASE_MS, value)
    shard = kinesis.list_shards(StreamARN=arn)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamARN=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    sequences = [
        r["SequenceNumber"]
        for r in kinesis.get_records(ShardIterator=iterator, StreamARN=arn)["Records"]
    ]
    body = {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-14T00:13:49.717Z",
        "KinesisBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequences[1],
            "endSequenceNumber": sequences[2],
            "approximateArrivalOfFirstRecord": "2026-11-14T00:13:19Z",
            "approximateArrivalOfLastRecord": "2026-11-14T00:13:19Z",
            "batchSize": 2,
            "streamArn": arn,
        },
    }
    sqs = clients.sqs()
    url = sqs.create_queue(QueueName="cdc-kinesis-on-failure")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    # WHEN the queue is redriven
    code = command.run(
        pg_settings, parser.parse_args([url, "--wait-seconds", "0"]), clients=clients
    )
    # THEN exactly those records are read back from the stream and applied
    assert code == 0, capsys.readouterr().out
    assert replica(pg_engine, pg_schema) == {2: ("b", BASE_MS * 1000), 3: ("c", BASE_MS * 1000)}
