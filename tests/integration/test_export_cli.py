"""`cdc backfill --from-export` / `--export-to` as a user runs them: separate `cdc`
processes, AWS a `moto_server` reached through `AWS_ENDPOINT_URL`, the replica a real
PostgreSQL or MariaDB.

* several processes running the same command share the export's files, and each exits
  0 when the whole export is loaded;
* a process killed mid-file (SIGKILL: it releases nothing) has its file taken over from
  its last committed line when its lease expires;
* an export that cannot be loaded (not finished, another table's, ION, a damaged file)
  and a table without point-in-time recovery are one clear line, no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from sqlalchemy import MetaData, Table, func, select
from sqlalchemy.exc import ProgrammingError

from cdc.aws.wire import image_to_wire
from cdc.sql.bookkeeping import tables
from tests.exports import write_export
from tests.moto_server import (
    MotoServer,
    cdc_env,
    database_url,
    moto_server,  # noqa: F401 - the fixture
    run_cdc,
    start_cdc,
)

BUCKET = "exports"


@pytest.fixture
def aws(moto_server: MotoServer) -> MotoServer:  # noqa: F811 - the imported fixture
    moto_server.reset()
    return moto_server


def make_export(server: MotoServer, items: int, files: int, **kw) -> str:
    ddb = server.client("dynamodb")
    ddb.create_table(
        TableName="Orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    arn = ddb.describe_table(TableName="Orders")["Table"]["TableArn"]
    rows = [
        image_to_wire({"id": {"S": f"k{i:05}"}, "n": {"N": str(i)}, "b": {"B": b"\x00\x01"}})
        for i in range(items)
    ]
    parts = [rows[n::files] for n in range(files)]
    return write_export(server.client("s3"), BUCKET, arn, parts, **kw)


def count(engine, schema: str, name: str = "orders") -> int:
    t = Table(name, MetaData(), autoload_with=engine, schema=schema)
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


def file_rows(engine, schema: str) -> list[dict]:
    t = tables(schema)["cdc_export_files"]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.file_no)).mappings()]


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cdc: error: "), lines[0]
    return str(lines[0])


def test_processes_share_an_export_and_each_exits_0(aws, db, tmp_path):
    # GIVEN an export of 4000 items in 12 files, loaded in small batches (so one process
    # cannot finish it before the other has started)
    url = make_export(aws, 4000, 12)
    env = cdc_env(aws.url, database_url(db.engine), db.schema)
    argv = ["backfill", "Orders", "--from-export", url, "--workers", "2", "--batch-size", "20"]
    # WHEN two processes run the same command at once
    procs = [start_cdc(*argv, "--json", env=env, log=tmp_path / f"{n}.log") for n in range(2)]
    codes = [p.wait(180) for p in procs]
    # THEN both exit 0 with the export loaded, and they read it once between them
    outputs = [(tmp_path / f"{n}.log").read_text() for n in range(2)]
    assert codes == [0, 0], outputs
    reports = [json.loads(o.strip().splitlines()[-2]) for o in outputs]
    assert all(r["complete"] and r["files_done"] == 12 for r in reports)
    assert sum(r["items_read"] for r in reports) == 4000
    assert all(r["items_read"] > 0 for r in reports)  # both did share the work
    assert count(db.engine, db.schema) == 4000
    # WHEN run again: a no-op
    again = run_cdc(*argv, env=env)
    assert again.returncode == 0 and "already loaded" in again.stdout, again.stderr


def test_a_killed_process_is_taken_over_from_its_last_line(aws, pg_engine, pg_schema, tmp_path):
    # GIVEN one big file, loaded in small batches by a process with a short lease
    url = make_export(aws, 3000, 1)
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    argv = ["backfill", "Orders", "--from-export", url, "--batch-size", "10", "--lease", "2"]
    first = start_cdc(*argv, env=env, log=tmp_path / "first.log")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            rows = file_rows(pg_engine, pg_schema)
        except ProgrammingError:  # not made yet
            rows = []
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        if rows and rows[0]["lines_done"] >= 200:
            break
        time.sleep(0.05)
    # WHEN it is killed mid-file
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    saved = file_rows(pg_engine, pg_schema)[0]
    assert saved["worker"] and not saved["done"] and 0 < saved["lines_done"] < 3000
    # THEN another process waits out the lease, takes the file over from the saved line
    second = run_cdc(*argv, "--json", env=env)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout.strip().splitlines()[-1])
    assert report["complete"] and report["items_read"] <= 3000 - saved["lines_done"]
    assert count(pg_engine, pg_schema) == 3000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"finished": False}, "is not finished: it has no manifest-summary.json yet"),
        ({"output_format": "CSV"}, "is in CSV format; cdc loads DYNAMODB_JSON, ION"),
    ],
)
def test_an_export_that_cannot_be_loaded_is_one_line(aws, pg_engine, pg_schema, change, message):
    url = make_export(aws, 5, 2, **change)
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    assert message in one_line_error(run_cdc("backfill", "Orders", "--from-export", url, env=env))


def test_another_tables_export_is_one_line(aws, pg_engine, pg_schema):
    url = make_export(aws, 5, 2)
    aws.client("dynamodb").create_table(
        TableName="Other",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    line = one_line_error(run_cdc("backfill", "Other", "--from-export", url, env=env))
    assert "table/Orders, not of" in line


def test_a_damaged_file_stops_with_exit_1_and_keeps_the_rest(aws, pg_engine, pg_schema):
    url = make_export(aws, 40, 4, md5s={3: "AAAAAAAAAAAAAAAAAAAAAA=="})
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    result = run_cdc("backfill", "Orders", "--from-export", url, "--workers", "1", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "MD5" in result.stderr and "nothing of it was written" in result.stderr
    assert count(pg_engine, pg_schema) == 30


def test_export_to_without_point_in_time_recovery_says_how_to_turn_it_on(aws, pg_engine, pg_schema):
    make_export(aws, 1, 1)
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    line = one_line_error(
        run_cdc("backfill", "Orders", "--export-to", f"s3://{BUCKET}/new", env=env)
    )
    assert "point-in-time recovery is off for table Orders" in line
    assert "update-continuous-backups" in line


def test_a_url_that_is_not_an_export_folder_is_one_line(aws, pg_engine, pg_schema):
    make_export(aws, 1, 1)
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)
    line = one_line_error(
        run_cdc("backfill", "Orders", "--from-export", f"s3://{BUCKET}/x", env=env)
    )
    assert "expected s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID" in line
