"""`cdc.app.export_handler.handler`: the Lambda side of the state machine's fan-out.
Driven here as the state machine drives it: plan, then each file invoked until it
answers done, looping on "not done" (continue from the saved line) and "busy"."""

from __future__ import annotations

import pytest

from cdc.app import export_handler
from cdc.core.errors import InvalidInvocation
from cdc.sql.export_files import ExportFileStore
from tests.every_database import open_database
from tests.exports import wire_item, write_export
from tests.factories import FakeContext


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    yield from open_database(request, tmp_path)


@pytest.fixture
def lambda_env(database, monkeypatch):
    monkeypatch.setenv("CDC_DATABASE_URL", database.engine.url.render_as_string(False))
    if database.schema:
        monkeypatch.setenv("CDC_SCHEMA", database.schema)
    else:
        monkeypatch.delenv("CDC_SCHEMA", raising=False)
    monkeypatch.delenv("CDC_CONFIG", raising=False)
    export_handler.reset()
    yield
    export_handler.reset()


def make_export(clients, items: int, files: int) -> tuple[str, str]:
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Orders",
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    arn = ddb.describe_table(TableName="Orders")["Table"]["TableArn"]
    rows = [wire_item({"Id": {"N": str(i)}, "v": {"S": "x" * i}}) for i in range(items)]
    url = write_export(clients.s3(), "bucket", arn, [rows[n::files] for n in range(files)])
    return url, arn


def test_the_state_machine_loop_loads_every_file_across_invocations(
    clients, database, lambda_env, monkeypatch
):
    # GIVEN an export of 3 files, and invocations that run out of time after each batch
    url, _ = make_export(clients, 30, 3)
    monkeypatch.setattr(export_handler, "BATCH_LINES", 4)
    monkeypatch.setattr(export_handler, "RESERVE_S", 10_000.0)
    # WHEN the plan runs, then each file is invoked until it answers done
    event = {"action": "plan", "exportUrl": url, "maxConcurrency": "4"}
    plan = export_handler.handler(event, FakeContext())
    assert plan == {"exportUrl": url, "files": [0, 1, 2], "items": 30, "maxConcurrency": 4}
    invocations = 0
    for file_no in plan["files"]:
        answer = {"done": False}
        while not answer["done"]:
            event = {"action": "load", "exportUrl": url, "fileNo": file_no}
            answer = export_handler.handler(event, FakeContext(30_000))
            invocations += 1
            assert not answer["busy"]
            assert invocations < 50
    # THEN each invocation continued where the last stopped, and everything is loaded
    assert invocations >= 3 * 3
    assert len(database.items("orders")) == 30
    # ... and invoking a finished file again answers done and writes nothing
    again = export_handler.handler(
        {"action": "load", "exportUrl": url, "fileNo": 1}, FakeContext(30_000)
    )
    assert again["done"] and again["linesDone"] == 10


def test_a_file_another_worker_holds_is_busy(clients, database, lambda_env):
    url, _ = make_export(clients, 6, 2)
    plan = export_handler.handler({"action": "plan", "exportUrl": url}, FakeContext())
    export, _ = export_handler._export(url)
    store = ExportFileStore(database.engine, database.schema, export.summary.export_arn)
    assert store.claim("a cdc backfill process", 60.0, file_no=plan["files"][0])
    answer = export_handler.handler(
        {"action": "load", "exportUrl": url, "fileNo": 0}, FakeContext(30_000)
    )
    assert answer["busy"] and not answer["done"]


def test_a_bad_event_is_refused(lambda_env):
    with pytest.raises(InvalidInvocation):
        export_handler.handler({"Records": []}, FakeContext())
