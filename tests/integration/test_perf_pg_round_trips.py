"""PostgreSQL round trips per batch (issue 14): a constant number whatever the batch's size.

Counted from libpq's own protocol trace of the batch's connection: a round trip is a run
of messages to the server answered by a message from it (what bench/proxy.py counts on
the wire). The optimistic pass of a one-table batch is three: BEGIN, the statement
timeout and every chunk's upsert in one pipeline, then the checkpoint, then COMMIT.
A connection idle for a few seconds is not pinged first (a dead one is a transient
error the retry handles on a new connection); one idle for long still is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, text

from cdc.config import Settings, load_settings
from cdc.core.deadline import Deadline
from cdc.core.mapping import TableConfig, TableOptions
from cdc.jobs.replicate import Replicator
from cdc.sql import engines as cdc_db
from cdc.sql.engines import make_engine
from tests.factories import FakeContext, insert, modify, remove

pytestmark = pytest.mark.postgres


class RoundTrips:
    """Traces every connection of `engine` (libpq's PQtrace) into one file; `take`
    counts the round trips and the simple-protocol queries since the last call."""

    def __init__(self, engine: Engine, path: Path) -> None:
        self._file = path.open("w+b")
        self._offset = 0

        @event.listens_for(engine, "connect")
        def traced(dbapi_connection: Any, _record: Any) -> None:
            pgconn = dbapi_connection.pgconn
            pgconn.trace(self._file.fileno())
            flags = psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
            pgconn.set_trace_flags(flags)

    def take(self) -> tuple[int, list[str]]:
        self._file.flush()
        lines = Path(self._file.name).read_bytes()[self._offset :]
        self._offset += len(lines)
        trips, last = 0, ""
        texts: list[str] = []
        for line in lines.decode(errors="replace").splitlines():
            direction, _, rest = line.partition("\t")
            if direction == "B" and last == "F":
                trips += 1
            if direction in ("F", "B"):
                last = direction
            fields = rest.split("\t")
            if direction == "F" and len(fields) > 2 and fields[1] in ("Query", "Parse"):
                texts.append(fields[-1])
        return trips, texts

    def close(self) -> None:
        self._file.close()


@pytest.fixture
def traced(pg_engine: Engine, tmp_path: Path) -> Iterator[tuple[Engine, RoundTrips]]:
    engine = make_engine(pg_engine.url, pool_size=1)
    trips = RoundTrips(engine, tmp_path / "libpq.trace")
    yield engine, trips
    engine.dispose()
    trips.close()


def batch(size: int, first: int, seq: int) -> list[dict[str, Any]]:
    """`size` records of distinct keys: inserts, modifies and (one in ten) removes."""
    records: list[dict[str, Any]] = []
    for n in range(size):
        key = {"Id": first + n}
        if n % 10 == 9:
            records.append(remove(key, seq + n, {"v": n}))
        elif n % 2:
            records.append(modify(key, seq + n, {"v": n, "s": f"value {n}", "f": Decimal(n) / 4}))
        else:
            records.append(insert(key, seq + n, {"v": n, "tags": ["a", "b"], "m": {"n": n}}))
    return records


def deadline() -> Deadline:
    return Deadline.from_context(FakeContext(60_000))


def test_a_batch_costs_the_same_round_trips_whatever_its_size(
    traced: tuple[Engine, RoundTrips], pg_settings: Settings
) -> None:
    engine, trips = traced
    replicator = Replicator(engine, pg_settings)
    # GIVEN a warm replicator (its tables made, its statements seen once)
    assert replicator.process(batch(50, 0, 1000), deadline()).failed == 0
    trips.take()

    # WHEN batches of 100, 1,000 and 3,000 records (1, 5 and 8 chunks) are applied
    counts: dict[int, int] = {}
    seq = 10_000
    for size in (100, 1000, 3000):
        records = batch(size, 0, seq)
        seq += 10_000
        result = replicator.process(records, deadline())
        assert result.failed == 0
        # every record changes its row: the counts stay exact
        assert (result.applied, result.stale) == (size, 0)
        counts[size], _ = trips.take()

    # THEN each costs the same three round trips: the pipeline (BEGIN, the statement
    # timeout, every chunk), the checkpoint, COMMIT
    assert counts == {100: 3, 1000: 3, 3000: 3}


def test_a_connection_idle_for_seconds_is_not_pinged(
    traced: tuple[Engine, RoundTrips], pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, trips = traced
    replicator = Replicator(engine, pg_settings)
    assert replicator.process(batch(20, 0, 1000), deadline()).failed == 0
    trips.take()

    # GIVEN a pooled connection idle for 10 seconds (a quiet stream)
    real = time.monotonic
    monkeypatch.setattr(cdc_db.time, "monotonic", lambda: real() + 10.0)

    # WHEN the next batch arrives
    result = replicator.process(batch(20, 0, 2000), deadline())

    # THEN it is applied without a ping first: the same three round trips
    assert result.failed == 0 and result.applied == 20
    count, texts = trips.take()
    assert not [t for t in texts if "SELECT 1" in t.upper()], texts
    assert count == 3


def test_a_connection_idle_for_long_is_checked_before_use(
    traced: tuple[Engine, RoundTrips],
    pg_engine: Engine,
    pg_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, _ = traced
    replicator = Replicator(engine, pg_settings)
    pids: list[int] = []

    @event.listens_for(engine, "checkout")
    def remember(dbapi_connection: Any, *_: Any) -> None:
        pids.append(dbapi_connection.info.backend_pid)

    assert replicator.process(batch(20, 0, 1000), deadline()).failed == 0
    # GIVEN a pooled connection that died while idle for an hour
    with pg_engine.connect() as conn:
        conn.execute(text("select pg_terminate_backend(:pid, 5000)"), {"pid": pids[-1]})
    real = time.monotonic
    monkeypatch.setattr(cdc_db.time, "monotonic", lambda: real() + cdc_db.IDLE_PING_S + 1)

    # WHEN the next batch arrives
    with caplog.at_level(logging.WARNING, logger="cdc"):
        result = replicator.process(batch(20, 0, 2000), deadline())

    # THEN the ping replaced the connection: applied at the first attempt
    assert result.failed == 0 and result.applied == 20
    assert "batch attempt" not in caplog.text


def test_the_statement_timeout_still_bounds_a_pipelined_batch(
    traced: tuple[Engine, RoundTrips], pg_engine: Engine, pg_settings: Settings, pg_schema: str
) -> None:
    engine, _ = traced
    replicator = Replicator(engine, pg_settings)
    assert replicator.process(batch(20, 0, 1000), deadline()).failed == 0
    # GIVEN another session holding the lock of a row the next batch changes
    holder = pg_engine.connect()
    holder.execute(text(f"SELECT 1 FROM {pg_schema}.orders WHERE id = 3 FOR UPDATE"))
    release = threading.Timer(20.0, holder.close)  # never hang the suite
    release.start()
    try:
        # WHEN the batch runs with 3 seconds left before Lambda's deadline
        started = time.monotonic()
        result = replicator.process(batch(20, 0, 2000), Deadline.from_context(FakeContext(3000)))
        elapsed = time.monotonic() - started
    finally:
        release.cancel()
        holder.close()

    # THEN the lock wait is cut by the statement timeout, and the batch is reported
    # before the deadline, not left to Lambda's timeout
    assert result.failed == 20
    assert elapsed < 3.0, elapsed


TYPED = """
[tables.Things]
keys = ["Id"]

[tables.Things.columns]
Id = "text"
Amount = "numeric"
Price = "numeric(12,2)"
Big = "bigint"
Count = "integer"
Small = "smallint"
Flag = "boolean"
Ratio = "double"
At = "timestamptz"
Day = "date"
Doc = "jsonb"
Blob = "bytea"
Tags = "text[]"
Nums = "numeric[]"
"""
BIG38 = "12345678901234567890123456789012345678"


def thing(id_: str, seq: int, attrs: dict[str, Any]) -> dict[str, Any]:
    rec = insert({"Id": id_}, seq, table="Things")
    rec["dynamodb"]["NewImage"].update(attrs)
    return rec


def test_every_column_kind_goes_through_the_pipeline_exactly(
    traced: tuple[Engine, RoundTrips], pg_engine: Engine, pg_schema: str, tmp_path: Path
) -> None:
    engine, trips = traced
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(TYPED)
    settings = load_settings(
        {
            "CDC_CONFIG": str(mapping),
            "CDC_DATABASE_URL": pg_engine.url.render_as_string(hide_password=False),
            "CDC_SCHEMA": pg_schema,
        }
    )
    replicator = Replicator(engine, settings)
    full = {
        "Amount": {"N": BIG38},
        "Price": {"N": "12.5"},
        "Big": {"N": str(2**62)},
        "Count": {"N": "-7"},
        "Small": {"N": "12"},
        "Flag": {"BOOL": True},
        "Ratio": {"N": "0.25"},
        "At": {"S": "2024-03-01T12:34:56Z"},
        "Day": {"S": "2024-03-01"},
        "Doc": {"M": {"n": {"N": "1.50"}, "s": {"S": "x"}}},
        "Blob": {"B": "AAH+/w=="},
        "Tags": {"L": [{"S": "z"}, {"S": 'a "quoted", {braced}'}, {"S": "z"}]},
        "Nums": {"L": [{"N": "3"}, {"N": "1.50"}, {"N": "1E-130"}, {"N": BIG38}]},
    }
    assert replicator.process([thing("warm", 1, {})], deadline()).failed == 0
    trips.take()

    # WHEN a batch of every kind, of NULLs and of empty arrays is applied
    nulls = {k: {"NULL": True} for k in full}
    empty = {"Tags": {"L": []}, "Nums": {"L": []}}
    result = replicator.process(
        [thing("full", 10, full), thing("nulls", 11, nulls), thing("empty", 12, empty)],
        deadline(),
    )

    # THEN every value is stored exactly, in the three round trips of the pipeline
    assert result.failed == 0 and result.applied == 3
    assert trips.take()[0] == 3
    with pg_engine.connect() as conn:
        rows = {
            r["id"]: dict(r)
            for r in conn.execute(
                text(
                    "SELECT id, amount::text AS amount, price, big, count, small, flag, ratio,"
                    " at, day, doc::text AS doc, blob, tags, nums::text[] AS nums"
                    f" FROM {pg_schema}.things"
                )
            ).mappings()
        }
    assert rows["full"] == {
        "id": "full",
        "amount": BIG38,
        "price": Decimal("12.50"),
        "big": 2**62,
        "count": -7,
        "small": 12,
        "flag": True,
        "ratio": 0.25,
        "at": datetime(2024, 3, 1, 12, 34, 56, tzinfo=UTC),
        "day": date(2024, 3, 1),
        "doc": '{"n": 1.50, "s": "x"}',
        "blob": b"\x00\x01\xfe\xff",
        "tags": ["z", 'a "quoted", {braced}', "z"],
        "nums": ["3", "1.50", "0." + "0" * 129 + "1", BIG38],
    }
    assert {k for k, v in rows["nulls"].items() if v is not None} == {"id"}
    assert (rows["empty"]["tags"], rows["empty"]["nums"]) == ([], [])


@pytest.mark.parametrize("hard_first", [True, False])
def test_a_batch_over_a_hard_delete_table_and_others_leaves_the_pipeline_correctly(
    traced: tuple[Engine, RoundTrips], pg_engine: Engine, pg_settings: Settings, hard_first: bool
) -> None:
    engine, _ = traced
    # GIVEN a table with hard deletes (its SQLAlchemy statements read their results at
    # once) and two of the usual kind, in one batch, with a row the database rejects
    # (the careful pass: each table in a savepoint, the bad row bisected out)
    gone_config = TableConfig("Gone", options=TableOptions(deletes="hard"))
    settings = replace(pg_settings, tables={"Gone": gone_config})
    replicator = Replicator(engine, settings)
    warm = [insert({"Id": 1000}, 1, table=name) for name in ("Gone", "Others", "Orders")]
    assert replicator.process(warm, deadline()).failed == 0
    schema = pg_settings.schema
    with pg_engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {schema}.others ADD CHECK (NOT item ? 'poison')"))
    gone = [insert({"Id": n}, 100 + n, {"v": n}, table="Gone") for n in range(6)]
    gone.append(remove({"Id": 0}, 200, table="Gone"))
    orders = batch(300, 0, 1000)
    others = [insert({"Id": n}, 300 + n, {"v": n}, table="Others") for n in range(5)]
    others.append(insert({"Id": 99}, 400, {"poison": True}, table="Others"))
    records = [*gone, *orders, *others] if hard_first else [*orders, *others, *gone]

    # WHEN it is applied
    result = replicator.process(records, deadline())

    # THEN every table is written, the bad row alone dead-lettered, the counts exact
    assert result.failed == 0, result.error
    assert result.dead_lettered == 1
    assert (result.applied, result.stale) == (6 + 300 + 5, 1)  # the insert the REMOVE beat
    with pg_engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {schema}.gone")).scalar() == 1 + 5
        assert conn.execute(text(f"SELECT count(*) FROM {schema}.orders")).scalar() == 1 + 300
        assert conn.execute(text(f"SELECT count(*) FROM {schema}.others")).scalar() == 1 + 5
        letters = conn.execute(text(f"SELECT error_message FROM {schema}.cdc_dead_letters"))
        assert ["the database rejected the row" in m for (m,) in letters] == [True]
