"""`cdc tail`: following a stream without Lambda.

moto cannot split shards, so lineage is tested against `FakeStreams`, a small stand-in
for the DynamoDB Streams API (it fakes AWS, not the database: the replica is the real
PostgreSQL of tests/conftest.py). The end-to-end test runs against moto.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from sqlalchemy import select, text

from cdc.app import cli
from cdc.core.jsontext import loads
from cdc.core.outcomes import BatchResult, Outcome
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.jobs.tail import Tail
from cdc.sources.dynamodb_streams.reader import Shard, StreamReader, lambda_record, ready_shards
from cdc.sql.bookkeeping import tables

REGION = "eu-central-1"
ARN = f"arn:aws:dynamodb:{REGION}:123456789012:table/Orders/stream/2026-01-01T00:00:00.000"


def raw(event: str, key: int, seq: int, **attrs) -> dict:
    """A record as GetRecords returns it through boto3 (datetime, bytes, no ARN)."""
    dynamodb = {
        "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
        "Keys": {"Id": {"N": str(key)}},
        "SequenceNumber": str(seq),
        "SizeBytes": 10,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    image = {"Id": {"N": str(key)}, **attrs}
    if event == "REMOVE":
        dynamodb["OldImage"] = image
    else:
        dynamodb["NewImage"] = image
    return {
        "eventID": f"e{seq}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": dynamodb,
    }


def err(code: str, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, op)


class FakeStreams:
    """DescribeStream (paged), GetShardIterator and GetRecords over canned shards.

    `shards`: (shard_id, parent_id, ending sequence or None) in listing order;
    `records`: shard_id -> raw records. `fail`: queued exceptions per operation.
    """

    def __init__(self, shards, records, page=2, describe_page=2):
        self.shards = shards
        self.records = records
        self.page = page
        self.describe_page = describe_page
        self.calls: list[tuple] = []
        self.describe_starts: list[str | None] = []
        self.fail: dict[str, list[Exception]] = {}

    def _maybe_fail(self, op):
        queue = self.fail.get(op)
        if queue:
            raise queue.pop(0)

    def describe_stream(self, StreamArn, ExclusiveStartShardId=None, Limit=None):
        self._maybe_fail("describe_stream")
        self.describe_starts.append(ExclusiveStartShardId)
        ids = [s[0] for s in self.shards]
        start = 0 if ExclusiveStartShardId is None else ids.index(ExclusiveStartShardId) + 1
        chosen = self.shards[start : start + self.describe_page]
        shards = []
        for shard_id, parent, ending in chosen:
            numbers = {
                "StartingSequenceNumber": str(
                    min(
                        (
                            int(r["dynamodb"]["SequenceNumber"])
                            for r in self.records.get(shard_id, [])
                        ),
                        default=1,
                    )
                )
            }
            if ending is not None:
                numbers["EndingSequenceNumber"] = str(ending)
            shard = {"ShardId": shard_id, "SequenceNumberRange": numbers}
            if parent:
                shard["ParentShardId"] = parent
            shards.append(shard)
        description = {"StreamArn": StreamArn, "TableName": "Orders", "Shards": shards}
        if start + self.describe_page < len(self.shards):
            description["LastEvaluatedShardId"] = chosen[-1][0]
        return {"StreamDescription": description}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        self.calls.append(("iterator", ShardId, ShardIteratorType, SequenceNumber))
        self._maybe_fail("get_shard_iterator")
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in self.records.get(ShardId, [])]
        if ShardIteratorType == "TRIM_HORIZON":
            index = 0
        elif ShardIteratorType == "LATEST":
            index = len(seqs)
        elif ShardIteratorType == "AT_SEQUENCE_NUMBER":
            index = next((i for i, s in enumerate(seqs) if s >= int(SequenceNumber)), len(seqs))
        else:
            index = next((i for i, s in enumerate(seqs) if s > int(SequenceNumber)), len(seqs))
        return {"ShardIterator": json.dumps([ShardId, index])}

    def get_records(self, ShardIterator, Limit=1000):
        shard_id, index = json.loads(ShardIterator)
        self._maybe_fail("get_records")
        records = self.records.get(shard_id, [])
        batch = records[index : index + min(Limit, self.page)]
        self.calls.append(("records", shard_id, len(batch)))
        closed = next(s[2] for s in self.shards if s[0] == shard_id) is not None
        end = index + len(batch)
        response = {"Records": batch}
        if not (closed and end >= len(records)):
            response["NextShardIterator"] = json.dumps([shard_id, end])
        return response


def lineage():
    """P (closed) splits into A (closed, then splits into G) and B (open); listed
    children first, to show that the listing order is not the reading order."""
    shards = [
        ("shardId-G", "shardId-A", None),
        ("shardId-B", "shardId-P", None),
        ("shardId-A", "shardId-P", 299),
        ("shardId-P", None, 104),
    ]
    records = {
        "shardId-P": [
            raw("INSERT", 1, 100, v={"S": "p1"}),
            raw("INSERT", 2, 101, v={"S": "p1"}, b={"B": b"\x00\xff"}),
            raw("INSERT", 3, 102, v={"S": "p1"}),
            raw("MODIFY", 1, 103, v={"S": "p2"}),
            raw("INSERT", 4, 104, v={"S": "p1"}),
        ],
        "shardId-A": [raw("MODIFY", 1, 200, v={"S": "a1"}), raw("REMOVE", 2, 201)],
        "shardId-B": [raw("MODIFY", 3, 210, v={"S": "b1"}), raw("MODIFY", 4, 211, v={"S": "b1"})],
        "shardId-G": [raw("MODIFY", 1, 300, v={"N": "1.50"})],
    }
    return FakeStreams(shards, records)


def make_tail(fake, replicator, **kw):
    reader = StreamReader(fake, ARN, sleep=lambda s: None)
    options = {"poll_interval": 0, "call_interval": 0, "idle_pages": 1, **kw}
    return Tail(reader, replicator, **options)


def rows(pg_engine, schema):
    with pg_engine.connect() as c:
        result = c.execute(
            text(
                "select id, item::text, mod(_cdc_seq, 1e40) _cdc_seq, _cdc_deleted "
                f'from "{schema}".orders'
            )
        ).all()
    return {int(r[0]): (loads(r[1]), int(r[2]), r[3]) for r in result}


def checkpoints(pg_engine, schema):
    t = tables(schema)["cdc_checkpoints"]
    with pg_engine.connect() as c:
        return {r.shard_id: sequence_of(int(r.last_sequence)) for r in c.execute(select(t))}


# --- pure parts ---------------------------------------------------------------------------


def test_lambda_record_matches_what_lambda_delivers():
    record = lambda_record(
        {
            **raw(
                "REMOVE",
                7,
                500,
                b={"B": b"\x01"},
                s={"BS": [b"\x02"]},
                m={"M": {"x": {"B": b"\x03"}}},
            ),
            "userIdentity": {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},
        },
        ARN,
    )
    assert record["eventSourceARN"] == ARN
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1767225600
    assert record["dynamodb"]["OldImage"]["b"] == {"B": "AQ=="}
    assert record["dynamodb"]["OldImage"]["s"] == {"BS": ["Ag=="]}
    assert record["dynamodb"]["OldImage"]["m"] == {"M": {"x": {"B": "Aw=="}}}
    assert record["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def test_ready_shards_follow_lineage():
    shards = [
        Shard("c", "p", "200", None),
        Shard("p", "gone", "100", "150"),  # its parent is past retention: not listed
        Shard("g", "c", "300", None),
    ]
    assert [s.shard_id for s in ready_shards(shards, set())] == ["p"]
    assert [s.shard_id for s in ready_shards(shards, {"p"})] == ["c"]
    assert [s.shard_id for s in ready_shards(shards, {"p", "c"})] == ["g"]


def test_checkpoint_text_keeps_the_shards_leading_zeros():
    assert (
        Shard("s", None, "000000000000000000100", None).sequence_text(123)
        == "000000000000000000123"
    )
    assert Shard("s", None, "4421584500000000017450439091", None).sequence_text(7) == "7"


# --- lineage, checkpoints, resume ----------------------------------------------------------


def test_tail_reads_parents_to_their_end_before_children(replicator, pg_engine, pg_schema):
    # GIVEN a stream whose first shard closed and split, and one child split again
    fake = lineage()
    # WHEN tail runs until caught up
    stats = make_tail(fake, replicator).run(once=True)
    # THEN no child was read before its parent was read to its end (no next iterator)
    reads = [c for c in fake.calls if c[0] == "records"]
    last_read = {shard: i for i, (_, shard, _) in enumerate(reads)}
    first_read = {}
    for i, (_, shard, _) in enumerate(reads):
        first_read.setdefault(shard, i)
    assert last_read["shardId-P"] < first_read["shardId-A"]
    assert last_read["shardId-P"] < first_read["shardId-B"]
    assert last_read["shardId-A"] < first_read["shardId-G"]
    # AND the replica holds the final state, with one checkpoint per shard
    assert stats.records == 10 and stats.failed_batches == 0
    assert stats.shards_finished == 2  # P and A; B and G are open
    state = rows(pg_engine, pg_schema)
    assert state[1][0] == {"Id": 1, "v": Decimal("1.50")} and state[1][1] == 300
    assert state[2][2] is True  # removed in A
    assert state[3][0]["v"] == "b1" and state[4][0]["v"] == "b1"
    assert checkpoints(pg_engine, pg_schema) == {
        "shardId-P": 104,
        "shardId-A": 201,
        "shardId-B": 211,
        "shardId-G": 300,
    }
    # DescribeStream was paged (2 shards a page), and re-read as shards finished
    assert fake.describe_starts[:2] == [None, "shardId-B"]
    assert stats.shards_active == 2


def test_tail_resumes_from_its_checkpoints(replicator, pg_engine, pg_settings, pg_schema):
    fake = lineage()
    make_tail(fake, replicator).run(once=True)
    # GIVEN new records in the open shards since the last run
    fake.records["shardId-B"].append(raw("MODIFY", 3, 212, v={"S": "b2"}))
    fake.records["shardId-G"].append(raw("INSERT", 9, 301, v={"S": "g"}))
    fake.calls.clear()
    # WHEN a new tail process starts
    stats = make_tail(fake, Replicator(pg_engine, pg_settings)).run(once=True)
    # THEN it reads only what is new: P is known finished (checkpoint = its end), A is
    # re-read after its checkpoint to find its end, B and G resume after theirs
    iterators = {c[1]: (c[2], c[3]) for c in fake.calls if c[0] == "iterator"}
    assert "shardId-P" not in iterators
    assert iterators == {
        "shardId-A": ("AFTER_SEQUENCE_NUMBER", "201"),
        "shardId-B": ("AFTER_SEQUENCE_NUMBER", "211"),
        "shardId-G": ("AFTER_SEQUENCE_NUMBER", "300"),
    }
    assert stats.records == 2
    state = rows(pg_engine, pg_schema)
    assert state[3][0]["v"] == "b2" and state[9][0]["v"] == "g"


def test_tail_from_latest_skips_history_but_follows_new_shards(replicator, pg_engine, pg_schema):
    fake = lineage()
    stats = make_tail(fake, replicator, start="latest").run(once=True)
    assert stats.records == 0
    iterators = {c[1]: c[2] for c in fake.calls if c[0] == "iterator"}
    assert iterators == {"shardId-B": "LATEST", "shardId-G": "LATEST"}


# --- failures -------------------------------------------------------------------------------


def test_tail_rides_out_throttling_and_expired_iterators(replicator, pg_engine, pg_schema):
    fake = lineage()
    fake.fail["get_records"] = [
        err("ProvisionedThroughputExceededException", "GetRecords"),
        err("LimitExceededException", "GetRecords"),
    ]
    fake.fail["describe_stream"] = [err("ThrottlingException", "DescribeStream")]
    tail = make_tail(fake, replicator)
    original = fake.get_records
    expired = []

    def get_records(ShardIterator, Limit=1000):
        shard_id, index = json.loads(ShardIterator)
        if shard_id == "shardId-P" and index == 2 and not expired:
            expired.append(True)
            raise err("ExpiredIteratorException", "GetRecords")
        return original(ShardIterator, Limit)

    fake.get_records = get_records
    stats = tail.run(once=True)
    assert stats.records == 10 and stats.failed_batches == 0
    # the expired iterator was replaced by one after the last record applied
    assert ("iterator", "shardId-P", "AFTER_SEQUENCE_NUMBER", "101") in fake.calls
    assert rows(pg_engine, pg_schema)[1][1] == 300


def test_tail_rides_out_network_errors_on_every_call(replicator, pg_engine, pg_schema):
    """DynamoDB Streams unreachable (refused, timed out, cut) on each kind of call, more
    often than one call retries, after the stream was first described."""
    fake = lineage()
    down = lambda: EndpointConnectionError(endpoint_url="https://streams.dynamodb")  # noqa: E731
    fake.fail["get_records"] = [down() for _ in range(12)] + [
        ReadTimeoutError(endpoint_url="https://streams.dynamodb"),
        ConnectionClosedError(endpoint_url="https://streams.dynamodb"),
    ]
    fake.fail["get_shard_iterator"] = [
        ConnectTimeoutError(endpoint_url="https://streams.dynamodb") for _ in range(9)
    ]
    describes = 0
    original_describe = fake.describe_stream

    def describe_stream(**kwargs):
        nonlocal describes
        describes += 1
        if 2 < describes < 14:  # after the first (paged) listing: 11 failures in a row
            raise down()
        return original_describe(**kwargs)

    fake.describe_stream = describe_stream
    tail = make_tail(fake, replicator, backoff=lambda failures: 0.0)
    stats = tail.run(once=True, max_seconds=60)
    assert stats.records == 10 and stats.failed_batches == 0
    assert rows(pg_engine, pg_schema)[1][1] == 300


class FlakyReplicator(Replicator):
    """Reports its first batch as not committed (as after a database outage)."""

    failures = 1
    applied = 0
    when_applied = (0, None)  # (records, event to set once that many are applied)

    def process(self, records, deadline=None, *, shard_id=""):
        if self.failures:
            self.failures -= 1
            return BatchResult([Outcome.FAILED] * len(records), records, error="outage")
        result = super().process(records, deadline, shard_id=shard_id)
        self.applied += len(records)
        count, event = self.when_applied
        if event is not None and self.applied >= count:
            event.set()
        return result


def test_a_batch_not_committed_is_read_again_not_skipped(pg_engine, pg_settings, pg_schema):
    fake = lineage()
    flaky = FlakyReplicator(pg_engine, pg_settings)
    # --once gives up at the failed batch, without advancing the checkpoint
    stats = make_tail(fake, flaky).run(once=True)
    assert stats.failed_batches == 1 and stats.records == 0
    assert checkpoints(pg_engine, pg_schema) == {}
    # a service retries it in-process from the batch's first record
    flaky.failures = 1
    fake.calls.clear()
    tail = make_tail(fake, flaky)
    tail._backoff = lambda state: 0.0  # no need to wait in a test
    flaky.when_applied = (10, tail.stop)  # as Ctrl-C would, once all is applied
    stats = tail.run(max_seconds=10)
    assert ("iterator", "shardId-P", "AT_SEQUENCE_NUMBER", "100") in fake.calls
    assert stats.records == 10
    assert rows(pg_engine, pg_schema)[1][1] == 300


def test_records_past_retention_are_a_reported_gap(replicator, pg_engine, pg_schema):
    fake = lineage()
    make_tail(fake, replicator).run(once=True)
    fake.records["shardId-B"].append(raw("MODIFY", 3, 212, v={"S": "b2"}))
    fake.fail["get_shard_iterator"] = [err("TrimmedDataAccessException", "GetShardIterator")]
    stats = make_tail(fake, replicator).run(once=True)
    assert stats.gaps == 1
    assert "GAPS" in stats.line()


def test_an_access_error_stops_tail_loudly(replicator):
    fake = lineage()
    fake.fail["get_shard_iterator"] = [err("AccessDeniedException", "GetShardIterator")]
    with pytest.raises(ClientError, match="AccessDenied"):
        make_tail(fake, replicator).run(once=True)


# --- end to end against moto -----------------------------------------------------------


def test_cli_tail_once_against_moto(clients, pg_engine, pg_schema, monkeypatch, capsys):
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Orders",
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = ddb.describe_table(TableName="Orders")["Table"]["LatestStreamArn"]
    ddb.put_item(
        TableName="Orders", Item={"Id": {"N": "1"}, "b": {"B": b"\x00"}, "n": {"N": "1.10"}}
    )
    ddb.put_item(TableName="Orders", Item={"Id": {"N": "2"}, "v": {"S": "x"}})
    ddb.update_item(
        TableName="Orders",
        Key={"Id": {"N": "2"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "y"}},
    )
    ddb.delete_item(TableName="Orders", Key={"Id": {"N": "1"}})
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)

    assert cli.main(["tail", arn, "--once", "--poll-interval", "0", "--json"]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    # where it writes, as every command says (password masked)
    assert captured.err.startswith("database: postgresql+psycopg://")
    assert stats["records"] == 4 and stats["failed_batches"] == 0
    state = rows(pg_engine, pg_schema)
    assert state[1][2] is True and state[1][0] == {"Id": 1, "b": "AA==", "n": Decimal("1.1")}
    assert state[2][0] == {"Id": 2, "v": "y"}
    (shard,) = checkpoints(pg_engine, pg_schema)

    # a second run continues from the checkpoint
    ddb.put_item(TableName="Orders", Item={"Id": {"N": "3"}})
    assert cli.main(["tail", arn, "--once", "--poll-interval", "0"]) == 0
    assert "1 records in 1 batches: 1 applied" in capsys.readouterr().out
    assert 3 in rows(pg_engine, pg_schema)
    assert list(checkpoints(pg_engine, pg_schema)) == [shard]


def test_cli_tail_rejects_what_is_not_a_stream_arn(capsys):
    assert cli.main(["tail", "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders"]) == 2
    assert "is not a DynamoDB stream ARN" in capsys.readouterr().err


def test_tail_help():
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tail", "--help"])
    assert exit_.value.code == 0
