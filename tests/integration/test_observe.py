"""Observability (issue 6 item 5): the structured log line per batch, CloudWatch
metrics in the Embedded Metric Format, and `cdc_checkpoints` kept in the batch's
transaction. Real batches on a real PostgreSQL, no mocks.

- a mixed batch (applied, stale, dead-lettered records of two tables and a record too
  broken to name one): the counts per (stream, table) are right in the log line and in
  the EMF documents, and every EMF document is valid per the specification;
- ReplicationLag only where records carry ApproximateCreationDateTime;
- `emit` writes one JSON line per document, honours CDC_METRICS=off and
  CDC_METRICS_NAMESPACE;
- a batch lost to an outage reports RecordsFailed for every record;
- the Lambda handler prints the lines and its checkpoint counts match the batch, and
  the checkpoint commits or rolls back with the rows.
"""

from __future__ import annotations

import copy
import io
import json
import math
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from cdc import handler as lambda_handler
from cdc.app.observe import Invocation, emf_documents, emit, log_line, timestamp, trace_id
from cdc.config import Settings, parse_database_url
from cdc.core.deadline import Deadline
from cdc.core.mapping import TableConfig, TableOptions
from cdc.core.outcomes import BatchResult, Outcome
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from cdc.sql.retry import RetryPolicy
from tests.factories import FakeContext, insert, modify, record, remove, stream_arn
from tests.factories import event as lambda_event

pytestmark = pytest.mark.postgres

BASE = 10**20  # sequence numbers are 21-40 digit decimal strings
COUNTERS = ("RecordsApplied", "RecordsStale", "RecordsDeadLettered", "RecordsFailed")

# The EMF specification's units (MetricDefinition.Unit).
EMF_UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)


# --- helpers -------------------------------------------------------------------------


def assert_emf(doc: dict[str, Any], namespace: str | None = None) -> None:
    """`doc` is a valid embedded metric format document (CloudWatch's specification:
    root node, metadata object, MetricDirective, MetricDefinition, target members)."""
    # Plain JSON: no Decimal, no NaN, no datetime (emit must not need default=str).
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    meta = doc["_aws"]
    assert isinstance(meta, dict)
    assert set(meta) <= {"Timestamp", "CloudWatchMetrics"}, meta.keys()
    stamp = meta["Timestamp"]
    assert type(stamp) is int, f"Timestamp {stamp!r} is not an integer"
    now_ms = time.time() * 1000
    assert now_ms - 14 * 86_400_000 < stamp <= now_ms + 2 * 3_600_000, "Timestamp is not epoch ms"
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}, directive.keys()
        ns = directive["Namespace"]
        assert isinstance(ns, str) and 1 <= len(ns) <= 255
        if namespace is not None:
            assert ns == namespace
        dimension_sets = directive["Dimensions"]
        assert isinstance(dimension_sets, list)
        for dimension_set in dimension_sets:
            assert isinstance(dimension_set, list) and 1 <= len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(name, str)
                value = doc.get(name)
                assert isinstance(value, str), f"dimension {name!r} value {value!r} is not a string"
                assert 1 <= len(value) <= 1024, f"dimension {name!r} value length {len(value)}"
        metrics = directive["Metrics"]
        assert isinstance(metrics, list) and 1 <= len(metrics) <= 100
        names = [m["Name"] for m in metrics]
        assert len(set(names)) == len(names), f"a metric defined twice: {names}"
        for metric in metrics:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}, metric.keys()
            name = metric["Name"]
            assert isinstance(name, str) and 1 <= len(name) <= 1024
            assert name not in {d for s in dimension_sets for d in s}, f"{name} is also a dimension"
            if "Unit" in metric:
                assert metric["Unit"] in EMF_UNITS, metric["Unit"]
            if "StorageResolution" in metric:
                assert metric["StorageResolution"] in (1, 60)
            assert name in doc, f"metric {name} has no member in the document"
            value = doc[name]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            for v in values:
                assert isinstance(v, int | float) and not isinstance(v, bool), (
                    f"metric {name} value {v!r} is not a number"
                )
                assert math.isfinite(v)


def by_dimensions(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        key = (doc["Stream"], doc["Table"])
        assert key not in found, f"two EMF documents for {key}"
        found[key] = doc
    return found


def metric_names(doc: dict[str, Any]) -> set[str]:
    return {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def label(table: str) -> str:
    """What the Stream dimension must at least name: the table's stream."""
    return f"table/{table}/stream/"


def checkpoints(engine: Engine, schema: str) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text(f'select * from "{schema}".cdc_checkpoints')).mappings()
        return {r["stream_arn"]: dict(r) for r in rows}


def replica_ids(engine: Engine, schema: str, table: str) -> set[int]:
    with engine.connect() as conn:
        exists = conn.execute(
            text("select to_regclass(:t) is not null"), {"t": f'"{schema}"."{table}"'}
        ).scalar_one()
        if not exists:
            return set()
        return {int(r[0]) for r in conn.execute(text(f'select id from "{schema}"."{table}"'))}


def countdown(budget_ms: int) -> Deadline:
    started = time.monotonic()
    return Deadline(lambda: max(0, int(budget_ms - (time.monotonic() - started) * 1000)))


def mixed_settings(pg_engine: Engine, pg_schema: str) -> Settings:
    return Settings(
        database_url=pg_engine.url,
        schema=pg_schema,
        tables={"Customers": TableConfig("Customers", options=TableOptions(ttl_deletes="ignore"))},
    )


def mixed_batch(now: float) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, int]]]:
    """A batch of every outcome but failed, and the counts it must produce per
    (stream, table). Orders' records carry ApproximateCreationDateTime 30 s ago,
    Customers' carry none. Needs Orders Id 3 applied at BASE + 100 beforehand."""
    lagged = {"event_time": now - 30}
    bad_number = insert({"Id": 4}, BASE + 5, {"x": 1}, **lagged)
    bad_number["dynamodb"]["NewImage"]["x"] = {"N": "12abc"}
    bad_bool = insert({"Id": 4}, BASE + 13, {"flag": True}, table="Customers", event_time=None)
    bad_bool["dynamodb"]["NewImage"]["flag"] = {"BOOL": "yes"}
    first = insert({"Id": 1}, BASE + 1, {"n": 1}, **lagged)
    broken = insert({"Id": 9}, BASE + 20, **lagged)
    broken["eventSource"] = "aws:kinesis"
    records = [
        first,  # applied
        insert({"Id": 2}, BASE + 2, {"n": 2}, **lagged),  # superseded by the next: stale
        modify({"Id": 2}, BASE + 3, {"n": 3}, **lagged),  # applied
        modify({"Id": 3}, BASE + 4, {"n": 4}, **lagged),  # older than the row: stale
        bad_number,  # dead-lettered
        copy.deepcopy(first),  # a duplicate delivery: stale
        insert({"Id": 1}, BASE + 10, {"n": 10}, table="Customers", event_time=None),  # applied
        remove({"Id": 2}, BASE + 11, table="Customers", event_time=None),  # applied (soft)
        record(
            "REMOVE", {"Id": 3}, BASE + 12, table="Customers", ttl=True, event_time=None
        ),  # ignored
        bad_bool,  # dead-lettered
        broken,  # dead-lettered, no table can be told
    ]
    expected = {
        (stream_arn("Orders"), "Orders"): {
            "records": 6,
            "applied": 2,
            "stale": 3,
            "dead_lettered": 1,
            "failed": 0,
        },
        (stream_arn("Customers"), "Customers"): {
            "records": 4,
            "applied": 2,
            "stale": 1,
            "dead_lettered": 1,
            "failed": 0,
        },
        ("", ""): {"records": 1, "applied": 0, "stale": 0, "dead_lettered": 1, "failed": 0},
    }
    return records, expected


@pytest.fixture
def mixed(
    pg_engine: Engine, pg_schema: str
) -> tuple[BatchResult, dict[tuple[str, str], dict[str, int]]]:
    """A processed mixed batch and the counts it must show."""
    rep = Replicator(pg_engine, mixed_settings(pg_engine, pg_schema))
    assert rep.process([insert({"Id": 3}, BASE + 100)]).applied == 1
    records, expected = mixed_batch(time.time())
    result = rep.process(records)
    assert result.item_failures == [], result.summary()
    return result, expected


# --- counts ----------------------------------------------------------------------------


def test_counts_per_stream_and_table(mixed: Any) -> None:
    result, expected = mixed
    assert result.outcomes.count(Outcome.DEAD_LETTERED) == 3
    assert (result.applied, result.stale, result.dead_lettered, result.failed) == (4, 4, 3, 0)
    assert set(result.by_table) == set(expected)
    for key, counts in expected.items():
        stats = result.by_table[key]
        actual = {name: getattr(stats, name) for name in counts}
        assert actual == counts, f"{key}: {actual} != {counts}"


def test_log_line(mixed: Any) -> None:
    result, expected = mixed
    line = log_line(result)
    assert json.loads(json.dumps(line)) == line, "the log line is plain JSON"
    assert line["level"] == "INFO"
    assert isinstance(line["message"], str) and line["message"]
    assert (
        line["records"],
        line["applied"],
        line["stale"],
        line["dead_lettered"],
        line["failed"],
    ) == (
        11,
        4,
        4,
        3,
        0,
    )
    assert isinstance(line["seconds"], int | float) and 0 <= line["seconds"] < 60
    assert 29 <= line["max_lag_s"] < 120, "lag = now - the oldest ApproximateCreationDateTime"
    assert sorted(t.split(".")[-1].strip('"') for t in line["tables"]) == ["customers", "orders"]
    entries = {(e["stream"], e["table"]): e for e in line["by_table"]}
    assert set(entries) == set(expected)
    for key, counts in expected.items():
        assert {name: entries[key][name] for name in counts} == counts, key
    assert 29 <= entries[(stream_arn("Orders"), "Orders")]["max_lag_s"] < 120
    assert entries[(stream_arn("Customers"), "Customers")]["max_lag_s"] is None
    # The parts add up to the whole.
    for name in ("records", "applied", "stale", "dead_lettered", "failed"):
        assert sum(e[name] for e in line["by_table"]) == line[name], name


def test_emf_documents_are_valid_and_counted(mixed: Any) -> None:
    result, expected = mixed
    docs = list(emf_documents(result, "Shop/CDC"))
    for doc in docs:
        assert_emf(doc, "Shop/CDC")
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stream", "Table"]]
        units = {m["Name"]: m.get("Unit") for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        for name in COUNTERS:
            assert units[name] == "Count"
        assert units["BatchDuration"] == "Milliseconds"
        assert 0 <= doc["BatchDuration"] < 60_000
    found = by_dimensions(docs)
    assert len(found) == 3
    orders = next(d for (s, t), d in found.items() if t == "Orders")
    customers = next(d for (s, t), d in found.items() if t == "Customers")
    broken = next(d for d in docs if d is not orders and d is not customers)
    assert label("Orders") in orders["Stream"] and label("Customers") in customers["Stream"]
    assert broken["Stream"] and broken["Table"], "unknown dimensions are still named"
    for doc, key in (
        (orders, (stream_arn("Orders"), "Orders")),
        (customers, (stream_arn("Customers"), "Customers")),
        (broken, ("", "")),
    ):
        counts = expected[key]
        assert [doc[name] for name in COUNTERS] == [
            counts["applied"],
            counts["stale"],
            counts["dead_lettered"],
            counts["failed"],
        ], key
    # ReplicationLag only where records carry ApproximateCreationDateTime.
    assert "ReplicationLag" in metric_names(orders)
    assert 29 <= orders["ReplicationLag"] < 120
    units = {m["Name"]: m.get("Unit") for m in orders["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["ReplicationLag"] == "Seconds"
    for doc in (customers, broken):
        assert "ReplicationLag" not in metric_names(doc)
        assert "ReplicationLag" not in doc


def test_emf_timestamp(mixed: Any) -> None:
    result, _ = mixed
    before = int(time.time() * 1000)
    docs = list(emf_documents(result, "cdc"))
    after = int(time.time() * 1000)
    assert all(before <= d["_aws"]["Timestamp"] <= after for d in docs)
    fixed = list(emf_documents(result, "cdc", now_ms=1_700_000_000_123))
    assert {d["_aws"]["Timestamp"] for d in fixed} == {1_700_000_000_123}


# --- emit ----------------------------------------------------------------------------------


def test_emit_writes_one_json_line_per_document(mixed: Any) -> None:
    result, _ = mixed
    out = io.StringIO()
    now = time.time()
    emit(result, Settings(), out=out, now=now)
    text_out = out.getvalue()
    assert text_out.endswith("\n")
    lines = [json.loads(line) for line in text_out.splitlines()]
    assert len(lines) == 1 + 3
    log, *docs = lines
    assert log == json.loads(json.dumps(log_line(result, now=now, location=log["location"])))
    assert "_aws" not in log
    for doc in docs:
        assert_emf(doc)
    default_namespace = docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"]
    assert default_namespace == "cdc"
    expected = [
        {k: v for k, v in d.items() if k != "_aws"}
        for d in emf_documents(result, default_namespace)
    ]
    assert [{k: v for k, v in d.items() if k != "_aws"} for d in docs] == expected


def test_emit_honours_cdc_metrics_off(mixed: Any) -> None:
    result, _ = mixed
    out = io.StringIO()
    emit(result, Settings(metrics="off"), out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "_aws" not in json.loads(lines[0])
    assert json.loads(lines[0])["records"] == 11


def test_emit_honours_the_namespace(mixed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = mixed
    emit(result, Settings(metrics_namespace="Shop/Replication"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4
    for doc in lines[1:]:
        assert_emf(doc, "Shop/Replication")


# --- the log line in Powertools' Logger keys (issue 12 item 20) ----------------------------

POWERTOOLS_KEYS = [
    "level",
    "location",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "xray_trace_id",
]
BATCH_KEYS = {"records", "applied", "stale", "dead_lettered", "failed", "tables", "seconds"}
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


class LambdaContext:
    """The attributes of Lambda's Python context object that the log line reads."""

    def __init__(self, request_id: str, remaining_ms: int = 60_000) -> None:
        self.function_name = "cdc-replica"
        self.memory_limit_in_mb = "512"  # the runtime gives a string
        self.invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:cdc-replica"
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def test_log_line_has_powertools_keys_and_formats(mixed: Any) -> None:
    # GIVEN a batch result and the invocation it belongs to
    result, _ = mixed
    context = LambdaContext("52fdfc07-2182-154f-163f-5f0f9a621d72")
    invocation = Invocation.from_context(
        context, service="orders-replica", cold_start=True, trace_header=TRACE_HEADER
    )
    # WHEN it is printed at 2021-05-03 11:47:12.494 UTC
    out = io.StringIO()
    emit(result, Settings(metrics="off"), invocation, out=out, now=1620042432.494)
    line = sys._getframe().f_lineno - 1
    (log,) = [json.loads(x) for x in out.getvalue().splitlines()]
    # THEN Powertools' keys come first, in its order and formats
    assert list(log)[: len(POWERTOOLS_KEYS)] == POWERTOOLS_KEYS
    assert log["level"] == ("ERROR" if result.failed else "INFO")
    assert log["location"] == f"test_log_line_has_powertools_keys_and_formats:{line}"
    assert log["timestamp"] == "2021-05-03 11:47:12,494+0000"
    assert log["service"] == "orders-replica"
    assert log["cold_start"] is True
    assert log["function_name"] == "cdc-replica"
    assert log["function_memory_size"] == 512
    assert log["function_arn"] == context.invoked_function_arn
    assert log["function_request_id"] == "52fdfc07-2182-154f-163f-5f0f9a621d72"
    assert log["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    # AND the batch's own fields are all still there
    assert set(log) >= BATCH_KEYS
    assert log["by_table"] == json.loads(json.dumps(log_line(result)["by_table"]))


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "1970-01-01 00:00:00,000+0000"),
        (1620042432.494, "2021-05-03 11:47:12,494+0000"),
        (1700000000.0999, "2023-11-14 22:13:20,099+0000"),
        (1704067199.9999, "2023-12-31 23:59:59,999+0000"),
    ],
)
def test_timestamp_is_powertools_default_format_in_utc(seconds: float, expected: str) -> None:
    assert timestamp(seconds) == expected
    # The format Powertools documents, `%Y-%m-%d %H:%M:%S,%F%z` (%F: milliseconds)
    parsed = datetime.strptime(expected.replace(",", "."), "%Y-%m-%d %H:%M:%S.%f%z")
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACE_HEADER, "1-5759e988-bd862e3fe1be46a994272793"),
        ("Parent=53995c3f42cd8ad8;Root=1-abc;Sampled=0", "1-abc"),
        ("Root=1-abc", "1-abc"),
        ("Parent=53995c3f42cd8ad8", None),
        ("", None),
        (None, None),
    ],
)
def test_trace_id_is_the_root_of_the_header(header: str | None, expected: str | None) -> None:
    assert trace_id(header) == expected


def test_a_context_without_lambda_attributes_leaves_their_keys_out(mixed: Any) -> None:
    # GIVEN a context object that has only the deadline (a test, another runtime)
    result, _ = mixed
    invocation = Invocation.from_context(
        FakeContext(), service="cdc", cold_start=False, trace_header=None
    )
    # WHEN the line is built THEN the keys without a value are left out, as Powertools does
    log = log_line(result, invocation)
    assert [k for k in POWERTOOLS_KEYS if k in log] == [
        "level",
        "message",
        "timestamp",
        "service",
        "cold_start",
    ]
    assert log["cold_start"] is False


# --- an outage ---------------------------------------------------------------------------------


def test_outage_reports_every_record_failed(pg_schema: str) -> None:
    url = parse_database_url("postgresql+psycopg://postgres@127.0.0.1:1/x", "test")
    engine = make_engine(url)
    try:
        # Two quick attempts: what is reported is the point here; answering before
        # Lambda's deadline is tested by test_handler.py and test_faults.py.
        rep = Replicator(
            engine,
            Settings(database_url=url, schema=pg_schema),
            RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02),
        )
        now = time.time()
        broken = insert({"Id": 9}, BASE + 9)
        broken["eventSource"] = "aws:kinesis"
        records = [
            insert({"Id": 1}, BASE + 1, event_time=now - 5),
            modify({"Id": 1}, BASE + 2, event_time=now - 4),
            insert({"Id": 2}, BASE + 3, table="Customers", event_time=None),
            broken,
        ]
        result = rep.process(records)
    finally:
        engine.dispose()

    assert result.outcomes == [Outcome.FAILED] * 4
    assert result.item_failures == [str(r["dynamodb"]["SequenceNumber"]) for r in records]
    line = log_line(result)
    assert line["level"] == "ERROR"
    assert (
        line["records"],
        line["applied"],
        line["stale"],
        line["dead_lettered"],
        line["failed"],
    ) == (
        4,
        0,
        0,
        0,
        4,
    )
    assert line["error"]
    docs = list(emf_documents(result, "cdc"))
    for doc in docs:
        assert_emf(doc)
    found = {d["Table"]: d for d in docs}
    assert sum(d["RecordsFailed"] for d in docs) == len(records)
    assert found["Orders"]["RecordsFailed"] == 2
    assert found["Customers"]["RecordsFailed"] == 1
    for doc in docs:
        assert doc["RecordsApplied"] == doc["RecordsStale"] == doc["RecordsDeadLettered"] == 0
    assert "ReplicationLag" in metric_names(found["Orders"])
    assert "ReplicationLag" not in metric_names(found["Customers"])


# --- checkpoints in the batch's transaction ------------------------------------------------------


def fail_after_checkpoint(engine: Engine, times: int) -> list[str]:
    """Make the statement that writes cdc_checkpoints fail (a serialization failure,
    transient) right after it ran, `times` times; returns a log of the failures."""
    import psycopg.errors

    failures: list[str] = []

    @event.listens_for(engine, "after_cursor_execute")
    def _fail(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if (
            len(failures) < times
            and statement.lstrip().upper().startswith("INSERT")
            and "cdc_checkpoints" in statement
        ):
            failures.append(statement)
            raise psycopg.errors.SerializationFailure("injected after the checkpoint was written")

    return failures


def test_checkpoint_is_rolled_back_with_the_batch(pg_engine: Engine, pg_schema: str) -> None:
    """A batch whose transaction never commits leaves neither rows nor a checkpoint."""
    engine = make_engine(pg_engine.url)
    try:
        failures = fail_after_checkpoint(engine, times=10**6)
        rep = Replicator(engine, Settings(database_url=engine.url, schema=pg_schema))
        records = [insert({"Id": 1}, BASE + 1), insert({"Id": 2}, BASE + 2)]
        result = rep.process(records, countdown(2_500))
    finally:
        engine.dispose()
    assert failures, "the checkpoint statement never ran"
    assert result.outcomes == [Outcome.FAILED] * 2
    assert replica_ids(pg_engine, pg_schema, "orders") == set()
    assert checkpoints(pg_engine, pg_schema) == {}


@pytest.fixture
def lambda_env(
    monkeypatch: pytest.MonkeyPatch, pg_engine: Engine, pg_schema: str
) -> Iterator[None]:
    for name in ("CDC_CONFIG", "CDC_DATABASE_SECRET_ARN", "CDC_METRICS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    monkeypatch.setenv("CDC_METRICS_NAMESPACE", "Test/CDC")
    lambda_handler.reset()
    yield
    lambda_handler.reset()


def test_handler_prints_log_and_metrics_and_checkpoints_the_batch(
    lambda_env: None, pg_engine: Engine, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    lagged = {"event_time": now - 7}
    bad = insert({"Id": 5}, BASE + 6, {"x": 1}, **lagged)
    bad["dynamodb"]["NewImage"]["x"] = {"N": "1e"}
    records = [
        insert({"Id": 1}, BASE + 1, **lagged),
        insert({"Id": 2}, BASE + 2, **lagged),
        modify({"Id": 2}, BASE + 3, {"n": 1}, event_time=now - 6),
        bad,
        insert({"Id": 1}, BASE + 4, table="Customers", event_time=None),
    ]
    # Make the first attempt fail after its checkpoint was written: the retry must
    # count the batch once, so the checkpoint was part of the rolled-back transaction.
    failures = fail_after_checkpoint(lambda_handler.replicator().engine, times=1)
    capsys.readouterr()
    response = lambda_handler.handler(lambda_event(*records), FakeContext(60_000))

    assert response == {"batchItemFailures": []}
    assert len(failures) == 1, "the injected failure did not happen"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    logs = [line for line in lines if "_aws" not in line]
    docs = [line for line in lines if "_aws" in line]
    assert len(logs) == 1
    (log,) = logs
    assert (log["records"], log["applied"], log["stale"], log["dead_lettered"], log["failed"]) == (
        5,
        3,
        1,
        1,
        0,
    )
    assert 6 <= log["max_lag_s"] < 120
    assert len(docs) == 2
    for doc in docs:
        assert_emf(doc, "Test/CDC")
    found = {d["Table"]: d for d in docs}
    assert [found["Orders"][n] for n in COUNTERS] == [2, 1, 1, 0]
    assert [found["Customers"][n] for n in COUNTERS] == [1, 0, 0, 0]
    assert 6 <= found["Orders"]["ReplicationLag"] < 120
    assert "ReplicationLag" not in found["Customers"]

    points = checkpoints(pg_engine, pg_schema)
    assert set(points) == {stream_arn("Orders"), stream_arn("Customers")}
    orders = points[stream_arn("Orders")]
    assert orders["shard_id"] == ""
    assert (
        orders["records_applied"],
        orders["records_stale"],
        orders["records_dead_lettered"],
    ) == (
        found["Orders"]["RecordsApplied"],
        found["Orders"]["RecordsStale"],
        found["Orders"]["RecordsDeadLettered"],
    )
    assert sequence_of(int(orders["last_sequence"])) == BASE + 6
    assert abs(orders["last_event_time"].timestamp() - (now - 6)) < 0.01
    assert abs((datetime.now(UTC) - orders["updated_at"]).total_seconds()) < 60
    customers = points[stream_arn("Customers")]
    assert (
        customers["records_applied"],
        customers["records_stale"],
        customers["records_dead_lettered"],
    ) == (
        1,
        0,
        0,
    )
    assert sequence_of(int(customers["last_sequence"])) == BASE + 4
    assert customers["last_event_time"] is None
    assert replica_ids(pg_engine, pg_schema, "orders") == {1, 2}

    # The next invocation adds to the stream's counts and moves it on.
    response = lambda_handler.handler(
        lambda_event(modify({"Id": 1}, BASE + 7, {"n": 2}), insert({"Id": 2}, BASE + 2)),
        FakeContext(60_000),
    )
    assert response == {"batchItemFailures": []}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert sum(1 for line in lines if "_aws" not in line) == 1
    orders = checkpoints(pg_engine, pg_schema)[stream_arn("Orders")]
    assert (
        orders["records_applied"],
        orders["records_stale"],
        orders["records_dead_lettered"],
    ) == (3, 2, 1)
    assert sequence_of(int(orders["last_sequence"])) == BASE + 7


def test_the_handler_logs_the_invocation_in_powertools_keys(
    lambda_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a cold container with a service name, invoked by Lambda with a trace header
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders-replica")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE_HEADER)
    lambda_handler.reset()
    logs = []
    # WHEN it is invoked twice
    for n, request_id in enumerate(["req-1", "req-2"]):
        before = time.time()
        lambda_handler.handler(lambda_event(insert({"Id": n}, BASE + n)), LambdaContext(request_id))
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
        (log,) = [x for x in lines if "_aws" not in x]
        logs.append(log)
        stamp = datetime.strptime(log["timestamp"].replace(",", "."), "%Y-%m-%d %H:%M:%S.%f%z")
        assert before - 1 <= stamp.timestamp() <= time.time() + 1
    # THEN each line names its request, the first one a cold start, and where it was made
    assert [x["function_request_id"] for x in logs] == ["req-1", "req-2"]
    assert [x["cold_start"] for x in logs] == [True, False]
    for log in logs:
        assert list(log)[: len(POWERTOOLS_KEYS)] == POWERTOOLS_KEYS
        assert log["service"] == "orders-replica"
        assert log["function_name"] == "cdc-replica"
        assert log["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
        assert log["location"].startswith("handler:")
        assert log["records"] == log["applied"] == 1
