"""The shared DynamoDB readers (cdc/aws/reads.py) against moto: one Scan pager for
backfill and verify, one BatchGetItem that gives up instead of looping forever."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cdc.aws.reads import UNPROCESSED_ATTEMPTS, UnprocessedKeys, batch_get, scan_pages


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(
            TableName="T",
            KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(25):
            client.put_item(TableName="T", Item={"Id": {"N": str(i)}})
        yield client


def test_scan_pages_reads_every_item_once_page_by_page(ddb: Any) -> None:
    pages = list(scan_pages(ddb, "T", limit=10))
    assert [len(p.items) for p in pages][:2] == [10, 10]
    assert pages[-1].last_key is None and all(p.last_key for p in pages[:-1])
    ids = sorted(int(i["Id"]["N"]) for p in pages for i in p.items)
    assert ids == list(range(25))


def test_scan_pages_resumes_after_a_saved_key(ddb: Any) -> None:
    first = next(scan_pages(ddb, "T", limit=10))
    rest = list(scan_pages(ddb, "T", start_key=first.last_key, limit=10))
    ids = [int(i["Id"]["N"]) for p in [first, *rest] for i in p.items]
    assert sorted(ids) == list(range(25)) and len(ids) == 25


def test_scan_pages_stops_before_the_next_page_once_told(ddb: Any) -> None:
    stop = threading.Event()
    seen = []
    for page in scan_pages(ddb, "T", limit=5, stop=stop):
        seen.append(page)
        stop.set()
    assert len(seen) == 1


def test_batch_get_reads_more_than_100_keys_in_chunks(ddb: Any) -> None:
    keys = [{"Id": {"N": str(i)}} for i in range(250)]  # 25 exist
    items = batch_get(ddb, "T", keys)
    assert sorted(int(i["Id"]["N"]) for i in items) == list(range(25))


class UnprocessedForever:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0

    def batch_get_item(self, **kwargs: Any) -> Any:
        self.calls += 1
        return {"Responses": {}, "UnprocessedKeys": copy.deepcopy(kwargs["RequestItems"])}


def test_batch_get_gives_up_on_keys_dynamodb_never_processes(ddb: Any) -> None:
    client = UnprocessedForever(ddb)
    sleeps: list[float] = []
    with pytest.raises(UnprocessedKeys, match="1 keys of 'T' unprocessed after 8 attempts"):
        batch_get(client, "T", [{"Id": {"N": "1"}}], sleep=sleeps.append)  # type: ignore[arg-type]
    assert client.calls == UNPROCESSED_ATTEMPTS
    assert len(sleeps) == UNPROCESSED_ATTEMPTS - 1 and all(s > 0 for s in sleeps)
