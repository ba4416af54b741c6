"""`cdc status` and `cdc repair` as a user runs them: separate processes, AWS a
`moto_server` reached through AWS_ENDPOINT_URL, the replica the real PostgreSQL.

- a table whose stream was re-enabled has an open gap: `cdc status` shows it (exit 3,
  `--json` too), `cdc repair TABLE` re-bootstraps it from a scan, deletes what the
  source no longer has, closes the gap, and `cdc status` is clean again (exit 0);
- a second repair, `--from-export`, and a table that does not exist are one-line errors.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import Engine, text

from cdc.jobs.replicate import Replicator
from tests.factories import ACCOUNT, insert
from tests.integration.test_cli_moto_server import aws, make_table, put, replica_ids  # noqa: F401
from tests.moto_server import MotoServer, cdc_env, database_url, moto_server, run_cdc  # noqa: F401

OLD = "2026-11-20T08:15:00.123"


def test_status_and_repair_close_a_gap_of_a_re_enabled_stream(
    aws: MotoServer,  # noqa: F811 - the imported fixture
    pg_engine: Engine,
    pg_schema: str,
    pg_settings,
) -> None:
    # GIVEN the replica of an older stream of Orders (a, b and x; x was deleted in the
    # table while no stream was on) and the first record of the table's current stream
    stream = make_table(aws)
    put(aws, "a", "b", "c")
    old = f"arn:aws:dynamodb:eu-central-1:{ACCOUNT}:table/Orders/stream/{OLD}"
    now = int(time.time())
    records = [insert({"id": i}, 900 + n, {"n": 0}, event_time=now) for n, i in enumerate("abx")]
    for rec in records:
        rec["eventSourceARN"] = old
    current = insert({"id": "c"}, 5, {"n": 1}, event_time=now)
    current["eventSourceARN"] = stream
    replicator = Replicator(pg_engine, pg_settings)
    assert not replicator.process(records).failed
    assert not replicator.process([current]).failed
    env = cdc_env(aws.url, database_url(pg_engine), pg_schema)

    # WHEN `cdc status` runs, THEN it shows the gap (exit 3)
    shown = run_cdc("status", env=env)
    assert shown.returncode == 3, shown.stderr
    assert "OPEN GAPS: 1" in shown.stdout and "new_stream" in shown.stdout
    assert "cdc repair Orders" in shown.stdout
    as_json = run_cdc("status", "--json", env=env)
    (orders,) = json.loads(as_json.stdout)
    assert orders["source_table"] == "Orders"
    assert orders["stream"]["stream_arn"] == stream
    assert [g["kind"] for g in orders["open_gaps"]] == ["new_stream"]

    # WHEN `cdc repair Orders` runs
    repaired = run_cdc("repair", "Orders", env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert "1 gaps closed" in repaired.stdout and "1 deleted" in repaired.stdout

    # THEN the replica is the table and the gap is closed
    assert replica_ids(pg_engine, pg_schema) == {"a", "b", "c"}
    with pg_engine.connect() as conn:
        items = dict(conn.execute(text(f"select id, item->>'n' from \"{pg_schema}\".orders")).all())
    assert items["a"] == "1" and items["c"] == "1"  # the table's items ("n": 1)
    clean = run_cdc("status", env=env)
    assert clean.returncode == 0 and "open gaps: none" in clean.stdout

    # a second repair, an export and a missing table are one-line errors, exit 2
    for args, message in [
        (("repair", "Orders"), "has no open gap"),
        (("repair", "Orders", "--from-export", "s3://b/p"), "not available yet"),
        (("repair", "Missing"), "does not exist"),
    ]:
        failed = run_cdc(*args, env=env)
        assert failed.returncode == 2, (args, failed.stderr)
        assert message in failed.stderr and "Traceback" not in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
