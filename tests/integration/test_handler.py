"""The Lambda edge, `cdc.handler.handler(event, context)` (README: Deployment,
Configuration, Failure handling).

Cheap import (no boto3, no network), the partial batch response, one engine per warm
container, broken invocations and configurations raise clearly without leaking secrets,
and the two public sample events replicate into Postgres.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.pool import Pool

import cdc.handler
from cdc.core.errors import CdcError, ConfigError
from cdc.core.jsontext import loads
from cdc.jobs.replicate import Replicator
from tests.factories import FakeContext, insert, modify, record
from tests.settings_cases import Bad, Good, attribute, bad_cases, good_cases

EVENTS = Path(__file__).resolve().parents[1] / "events"
CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:1/x"
PASSWORD = "Sup3rS3cretPw"


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def clear_cdc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDC_"):
            monkeypatch.delenv(name)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, postgres_url: str, pg_schema: str) -> Iterator[str]:
    """A warm-container environment: CDC_DATABASE_URL and CDC_SCHEMA only."""
    clear_cdc_env(monkeypatch)
    monkeypatch.setenv("CDC_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    cdc.handler.reset()
    yield pg_schema
    cdc.handler.reset()


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    clear_cdc_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    cdc.handler.reset()
    yield tmp_path
    cdc.handler.reset()


def rows(engine: Engine, schema: str, table: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "select id, item::text, mod(_cdc_seq, 1e40) _cdc_seq, _cdc_deleted, "
                "_cdc_event_time "
                f'from "{schema}"."{table}" order by id'
            )
        ).all()


# --- import -------------------------------------------------------------------------------

_IMPORT_PROBE = textwrap.dedent(
    """
    import json, socket, sys

    attempts = []

    def deny(*args, **kwargs):
        attempts.append(repr(args)[:200])
        raise OSError("network I/O while importing cdc.handler")

    socket.socket.connect = deny
    socket.socket.connect_ex = deny
    socket.create_connection = deny
    socket.getaddrinfo = deny

    import cdc.handler

    print(json.dumps({
        "aws": sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")),
        "attempts": attempts,
        "callable": callable(cdc.handler.handler),
    }))
    """
)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"CDC_DATABASE_URL": f"postgresql://cdc:{PASSWORD}@db.example.invalid:5432/cdc"},
        {"CDC_DATABASE_URL": CLOSED_PORT_URL, "CDC_SCHEMA": "replica"},
    ],
    ids=["unconfigured", "unresolvable-host", "closed-port"],
)
def test_import_is_cheap_no_boto3_no_network(env: dict[str, str], tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["aws"] == [], "importing cdc.handler imported boto3/botocore"
    assert report["attempts"] == [], "importing cdc.handler did network I/O"
    assert report["callable"] is True
    assert not (tmp_path / "cdc.db").exists()


# --- the partial batch response -----------------------------------------------------------


def test_all_handled_is_an_empty_failure_list(lambda_env: str, pg_engine: Engine) -> None:
    response = cdc.handler.handler(
        {"Records": [insert({"Id": 1}, 100, {"a": "x"}), modify({"Id": 1}, 101, {"a": "y"})]},
        FakeContext(),
    )
    assert response == {"batchItemFailures": []}
    assert json.loads(json.dumps(response)) == response  # what Lambda serialises
    (row,) = rows(pg_engine, lambda_env, "orders")
    assert loads(row.item) == {"Id": Decimal(1), "a": "y"}
    assert row._cdc_seq == 101


def test_empty_batch_is_handled(lambda_env: str) -> None:
    assert cdc.handler.handler({"Records": []}, FakeContext()) == {"batchItemFailures": []}


def test_dead_lettered_record_counts_as_handled(lambda_env: str, pg_engine: Engine) -> None:
    bad = insert({"Id": 2}, 201)
    bad["dynamodb"]["NewImage"]["n"] = {"N": "12abc"}
    response = cdc.handler.handler(
        {"Records": [insert({"Id": 1}, 200, {"a": "ok"}), bad]}, FakeContext()
    )
    assert response == {"batchItemFailures": []}
    assert [r.id for r in rows(pg_engine, lambda_env, "orders")] == [1]
    with pg_engine.connect() as conn:
        letters = conn.execute(
            text(f'select sequence_number from "{lambda_env}".cdc_dead_letters')
        ).scalars()
        assert list(letters) == ["201"]


def test_unreachable_database_reports_every_record_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch, unconfigured: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CDC_DATABASE_URL", f"postgresql://cdc:{PASSWORD}@127.0.0.1:1/x")
    records = [insert({"Id": 1}, 300), modify({"Id": 1}, 301), insert({"Id": 2}, 302)]
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        response = cdc.handler.handler({"Records": records}, FakeContext(remaining_ms=3000))
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"answered after the Lambda deadline ({elapsed:.1f}s)"
    assert set(response) == {"batchItemFailures"}
    failures = response["batchItemFailures"]
    assert all(set(f) == {"itemIdentifier"} for f in failures)
    assert sorted(f["itemIdentifier"] for f in failures) == ["300", "301", "302"]
    assert PASSWORD not in caplog.text
    assert PASSWORD not in json.dumps(response)


# --- one engine per warm container --------------------------------------------------------


def test_engine_is_built_once_per_container(lambda_env: str, pg_engine: Engine) -> None:
    opened: list[object] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        opened.append(dbapi_connection)

    event.listen(Pool, "connect", on_connect)
    try:
        first = cdc.handler.handler({"Records": [insert({"Id": 1}, 400)]}, FakeContext())
        container = cdc.handler.replicator()
        engine = container.engine
        after_first = len(opened)
        second = cdc.handler.handler({"Records": [modify({"Id": 1}, 401)]}, FakeContext())
        third = cdc.handler.handler({"Records": [insert({"Id": 2}, 402)]}, FakeContext())
    finally:
        event.remove(Pool, "connect", on_connect)
    assert first == second == third == {"batchItemFailures": []}
    assert after_first >= 1
    assert len(opened) == after_first, "a warm invocation opened new database connections"
    assert cdc.handler.replicator() is container
    assert cdc.handler.replicator().engine is engine
    assert [r._cdc_seq for r in rows(pg_engine, lambda_env, "orders")] == [401, 402]


# --- broken invocations and configurations raise -------------------------------------------


@pytest.mark.parametrize(
    "bad_event",
    [
        None,
        [],
        "Records",
        42,
        {},
        {"records": []},
        {"Records": None},
        {"Records": {}},
        {"Records": "x"},
    ],
)
def test_event_without_records_list_raises(lambda_env: str, bad_event: Any) -> None:
    with pytest.raises(CdcError, match="Records"):
        cdc.handler.handler(bad_event, FakeContext())


def test_no_database_configured_raises_naming_the_variable(unconfigured: Path) -> None:
    with pytest.raises(ConfigError, match="CDC_DATABASE_URL"):
        cdc.handler.handler(sample("stream-sample-devguide.json"), FakeContext())
    # The Lambda never falls back to the CLI's local SQLite file.
    assert list(unconfigured.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://cdc:{PASSWORD}@db.internal:notaport/cdc",
        f"postgresql://cdc:{PASSWORD}@[::1/cdc",
        f"cdc:{PASSWORD}@db.internal/cdc",
        f"oracle://cdc:{PASSWORD}@db.internal/cdc",
        f"postgresql+nosuchdriver://cdc:{PASSWORD}@db.internal/cdc",
    ],
    ids=["bad-port", "bad-ipv6", "no-scheme", "unsupported-backend", "unknown-driver"],
)
def test_bad_url_is_a_config_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
    unconfigured: Path,
    caplog: pytest.LogCaptureFixture,
    url: str,
) -> None:
    monkeypatch.setenv("CDC_DATABASE_URL", url)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as info:
        cdc.handler.handler(sample("stream-sample-devguide.json"), FakeContext())
    assert "CDC_DATABASE_URL" in str(info.value)
    shown = "".join(traceback.format_exception(info.value))
    assert PASSWORD not in shown
    assert PASSWORD not in repr(info.value)
    assert PASSWORD not in caplog.text


# --- the public sample events ------------------------------------------------------------


def test_devguide_sample(lambda_env: str, pg_engine: Engine) -> None:
    event_ = sample("stream-sample-devguide.json")
    assert cdc.handler.handler(event_, FakeContext()) == {"batchItemFailures": []}
    (row,) = rows(pg_engine, lambda_env, "example_table_with_stream")
    assert row.id == 101
    assert loads(row.item) == {"Id": Decimal(101), "Message": "This item has changed"}
    assert row._cdc_seq == 222
    assert row._cdc_deleted is False
    assert row._cdc_event_time is None  # the sample has no ApproximateCreationDateTime
    # Delivered again: nothing changes.
    before = rows(pg_engine, lambda_env, "example_table_with_stream")
    assert cdc.handler.handler(event_, FakeContext()) == {"batchItemFailures": []}
    assert rows(pg_engine, lambda_env, "example_table_with_stream") == before


def test_powertools_sample(lambda_env: str, pg_engine: Engine) -> None:
    event_ = sample("stream-sample-powertools.json")
    assert cdc.handler.handler(event_, FakeContext()) == {"batchItemFailures": []}
    (row,) = rows(pg_engine, lambda_env, "example_table_with_stream")
    assert row.id == 101
    # Soft-deleted, keeping the OldImage of the REMOVE.
    assert row._cdc_deleted is True
    assert loads(row.item) == {"Id": Decimal(101), "Message": "This item has changed"}
    assert row._cdc_seq == 4421584500000000017450439093
    assert row._cdc_event_time == datetime(2015, 4, 9, tzinfo=UTC)


def test_powertools_sample_records_one_by_one_in_reverse(
    lambda_env: str, pg_engine: Engine
) -> None:
    """Redelivery in the worst order: the REMOVE first, then the older records."""
    for rec in reversed(sample("stream-sample-powertools.json")["Records"]):
        assert cdc.handler.handler({"Records": [rec]}, FakeContext()) == {"batchItemFailures": []}
    (row,) = rows(pg_engine, lambda_env, "example_table_with_stream")
    assert row._cdc_deleted is True
    assert row._cdc_seq == 4421584500000000017450439093


def test_records_without_event_time_are_accepted(lambda_env: str, pg_engine: Engine) -> None:
    rec = record("INSERT", {"Id": 7}, 700, new={"Id": 7}, event_time=None)
    assert cdc.handler.handler({"Records": [rec]}, FakeContext()) == {"batchItemFailures": []}
    (row,) = rows(pg_engine, lambda_env, "orders")
    assert row._cdc_event_time is None


def test_a_bad_log_level_is_a_config_error_naming_the_variable():
    # GIVEN CDC_LOG_LEVEL set to something that is not a level
    env = {**os.environ, "CDC_LOG_LEVEL": "LOUD"}
    # WHEN the handler is imported (Lambda's init phase) and invoked
    code = (
        "import cdc.handler\n"
        "try:\n"
        "    cdc.handler.handler({'Records': []}, None)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    # THEN the import is cheap and fine, and the first invocation fails naming the
    # setting and the levels, with cdc's own error
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ConfigError CDC_LOG_LEVEL='LOUD'")
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in proc.stdout


# --- every setting, through the handler (issue 12 item 18) ---------------------------------


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("case", bad_cases())
def test_an_invalid_setting_fails_every_invocation_naming_it(
    lambda_env: str, pg_engine: Engine, monkeypatch: pytest.MonkeyPatch, case: Bad
) -> None:
    # GIVEN a cold container whose environment has one invalid setting
    set_env(monkeypatch, case.env)
    cdc.handler.reset()
    batch = {"Records": [insert({"Id": 1}, 100, {"a": "x"})]}
    # WHEN it is invoked, twice
    for _ in range(2):
        with pytest.raises(ConfigError) as info:
            cdc.handler.handler(batch, FakeContext())
        # THEN each invocation fails with one line naming the setting and what it accepts
        message = str(info.value)
        assert case.variable in message and case.accepts in message
        assert "\n" not in message
    # AND nothing was written
    with pg_engine.connect() as conn:
        tables = conn.execute(
            text("select count(*) from information_schema.tables where table_schema = :s"),
            {"s": lambda_env},
        ).scalar_one()
    assert tables == 0


@pytest.mark.parametrize("case", good_cases(handler=True))
def test_a_valid_setting_reaches_the_handler(
    lambda_env: str, pg_engine: Engine, monkeypatch: pytest.MonkeyPatch, case: Good
) -> None:
    # GIVEN a cold container whose environment has one setting in a valid spelling
    set_env(monkeypatch, case.env)
    cdc.handler.reset()
    # WHEN it is invoked
    response = cdc.handler.handler(
        {"Records": [insert({"Id": 1}, 100, {"a": "x"}, table="Probe")]}, FakeContext()
    )
    # THEN the batch is applied, and the handler runs with the validated value
    assert response == {"batchItemFailures": []}
    assert attribute(cdc.handler.replicator().settings, case.attribute) == case.expected
    assert [r.id for r in rows(pg_engine, lambda_env, "probe")] == [1]
    assert logging.getLogger("cdc").level == logging.getLevelName(
        cdc.handler.replicator().settings.log_level
    )


def test_garbage_collection_is_off_during_a_batch_and_restored_after(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a warm handler, and a probe of the collector's state while a batch is applied
    cdc.handler.handler({"Records": []}, FakeContext())  # build the replicator
    states: list[bool] = []
    process = Replicator.process

    def probed(self: Replicator, *args: Any, **kwargs: Any) -> Any:
        states.append(gc.isenabled())
        return process(self, *args, **kwargs)

    monkeypatch.setattr(Replicator, "process", probed)
    # WHEN a batch is applied with the collector on
    assert gc.isenabled()
    cdc.handler.handler({"Records": [insert({"Id": 1}, 100, {"a": "x"})]}, FakeContext())
    # THEN it was off during the batch and is on again after
    assert states == [False]
    assert gc.isenabled()

    # AND a batch that raises still turns it back on
    def broken(self: Replicator, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(Replicator, "process", broken)
    with pytest.raises(RuntimeError):
        cdc.handler.handler({"Records": []}, FakeContext())
    assert gc.isenabled()

    # AND a process that turned it off itself keeps it off
    monkeypatch.setattr(Replicator, "process", probed)
    gc.disable()
    try:
        cdc.handler.handler({"Records": [insert({"Id": 1}, 101, {"a": "y"})]}, FakeContext())
        assert not gc.isenabled()
    finally:
        gc.enable()
