"""The CLI as a user meets it: each `cdc` a separate process, AWS a `moto_server`
reached through `AWS_ENDPOINT_URL` (with real boto3 clients), the replica the real
PostgreSQL of tests/conftest.py.

* `cdc tail` rides out an AWS outage (connections refused and cut by a proxy in front
  of moto) and goes on replicating;
* AWS setup mistakes (no region, no credentials, an endpoint nobody answers, a table,
  stream or queue that does not exist) are one line saying what to fix, exit 2, and
  no traceback unless -v.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.moto_server import (
    MotoServer,
    PausableProxy,
    cdc_env,
    database_url,
    free_port,
    moto_server,  # noqa: F401 - the fixture
    run_cdc,
    start_cdc,
)


@pytest.fixture
def aws(moto_server: MotoServer) -> MotoServer:  # noqa: F811 - the imported fixture
    moto_server.reset()
    return moto_server


def make_table(server: MotoServer, name: str = "Orders") -> str:
    """A table with a stream; returns the stream ARN."""
    ddb = server.client("dynamodb")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"])


def put(server: MotoServer, *ids: str, table: str = "Orders") -> None:
    ddb = server.client("dynamodb")
    for item_id in ids:
        ddb.put_item(TableName=table, Item={"id": {"S": item_id}, "n": {"N": "1"}})


def replica_ids(engine: Engine, schema: str, table: str = "orders") -> set[str]:
    with engine.connect() as conn:
        exists = conn.execute(
            text(
                "select count(*) from information_schema.tables "
                "where table_schema = :s and table_name = :t"
            ),
            {"s": schema, "t": table},
        ).scalar_one()
        if not exists:
            return set()
        return {
            row[0]
            for row in conn.execute(
                text(f'select id from "{schema}"."{table}" where not _cdc_deleted')
            )
        }


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def proxy(aws: MotoServer) -> Iterator[PausableProxy]:
    proxy = PausableProxy(aws.port)
    yield proxy
    proxy.close()


# --- item 9: an AWS outage during `cdc tail` ------------------------------------------------


def test_tail_rides_out_an_aws_outage_and_keeps_replicating(
    aws: MotoServer, proxy: PausableProxy, pg_engine: Engine, pg_schema: str, tmp_path: Path
) -> None:
    arn = make_table(aws)
    put(aws, "a", "b", "c")
    env = cdc_env(proxy.url, database_url(pg_engine), pg_schema)
    log = tmp_path / "tail.log"
    tail = start_cdc(
        "tail", arn, "--poll-interval", "0.2", "--status-interval", "0", env=env, log=log
    )
    try:
        wait_until(lambda: replica_ids(pg_engine, pg_schema) == {"a", "b", "c"}, 60, "a, b, c")

        proxy.refuse()  # DynamoDB Streams unreachable: refused, open connections cut
        time.sleep(6)
        assert tail.poll() is None, log.read_text()
        put(aws, "d", "e")  # written during the outage
        proxy.accept()

        wait_until(
            lambda: replica_ids(pg_engine, pg_schema) == {"a", "b", "c", "d", "e"},
            90,
            "d and e after the outage",
        )
        put(aws, "f")
        wait_until(lambda: "f" in replica_ids(pg_engine, pg_schema), 60, "f")
        assert tail.poll() is None
    finally:
        tail.terminate()  # SIGTERM: stops after the current batch
        code = tail.wait(30)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output
    assert "retrying" in output  # the outage was seen and retried, not ignored
    assert "database: postgresql" in output  # tail says where it writes, like the others


# --- item 10: setup mistakes ------------------------------------------------------------------


def one_line_error(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cdc: error: "), lines[0]
    return str(lines[0])


@pytest.mark.parametrize("command", ["verify", "backfill"])
def test_no_region_is_one_line_naming_the_variable(
    aws: MotoServer, command: str, pg_engine: Engine, pg_schema: str
) -> None:
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema, region=None)
    line = one_line_error(run_cdc(command, "Orders", env=env))
    assert "no AWS region" in line
    assert "AWS_REGION" in line


@pytest.mark.parametrize("command", ["verify", "backfill", "tail"])
def test_no_credentials_is_one_line_naming_the_variables(
    aws: MotoServer, command: str, pg_engine: Engine, pg_schema: str
) -> None:
    arn = make_table(aws)
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema, credentials=False)
    target = arn if command == "tail" else "Orders"
    line = one_line_error(run_cdc(command, target, env=env))
    assert "AWS credentials" in line
    assert "AWS_ACCESS_KEY_ID" in line


@pytest.mark.parametrize("command", ["verify", "backfill", "tail"])
def test_an_unreachable_endpoint_is_one_line_naming_it(
    command: str, pg_engine: Engine, pg_schema: str
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = cdc_env(endpoint, database_url(pg_engine), pg_schema)
    arn = "arn:aws:dynamodb:eu-central-1:123456789012:table/Orders/stream/2026-01-01T00:00:00.000"
    target = arn if command == "tail" else "Orders"
    started = time.monotonic()
    line = one_line_error(run_cdc(command, target, env=env))
    assert f"cannot reach AWS at {endpoint}" in line
    assert "AWS_ENDPOINT_URL" in line
    assert time.monotonic() - started < 60  # a few retries, not a hang


def test_a_stream_that_does_not_exist_is_named(
    aws: MotoServer, pg_engine: Engine, pg_schema: str
) -> None:
    make_table(aws)
    arn = "arn:aws:dynamodb:eu-central-1:123456789012:table/Gone/stream/2001-01-01T00:00:00.000"
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    line = one_line_error(run_cdc("tail", arn, "--once", env=env))
    assert f"DynamoDB stream {arn} does not exist" in line
    assert "ResourceNotFoundException" not in line


@pytest.mark.parametrize("command", ["verify", "backfill"])
def test_a_table_that_does_not_exist_is_named_with_its_region(
    aws: MotoServer, command: str, pg_engine: Engine, pg_schema: str
) -> None:
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    line = one_line_error(run_cdc(command, "NoSuchTable", env=env))
    assert "DynamoDB table 'NoSuchTable' does not exist in region eu-central-1" in line


def test_a_queue_that_does_not_exist_is_named(
    aws: MotoServer, pg_engine: Engine, pg_schema: str
) -> None:
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    url = f"{aws.url}/123456789012/no-such-queue"
    line = one_line_error(run_cdc("redrive-failures", url, env=env))
    assert f"SQS queue {url} does not exist" in line


def test_verbose_shows_the_traceback(aws: MotoServer, pg_engine: Engine, pg_schema: str) -> None:
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema, region=None)
    for argv in (["-v", "verify", "Orders"], ["verify", "Orders", "-v"]):
        result = run_cdc(*argv, env=env)
        assert result.returncode == 2
        assert "Traceback" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1].startswith("cdc: error: no AWS region")
