"""Fault tests of issue 3 (README: Failure handling), against a real PostgreSQL, no mocks.

- a connection killed in the middle of a batch (`pg_terminate_backend` from another
  session): the batch is retried on a new connection and the replica converges;
- the database down for a while (a throwaway cluster stopped and started again): the
  records are reported before the deadline, a later delivery converges, nothing is
  dead-lettered;
- several threads applying overlapping batches to the same tables at once: no failure and
  no deadlock reaches the response, the replica holds the highest sequence per key (on
  every database of the `db` fixture: PostgreSQL and MariaDB/MySQL).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, MetaData, Table, Text, cast, event, select, text
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc import handler as lambda_handler
from cdc.config import Settings, parse_database_url
from cdc.core.deadline import Deadline
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.conftest import TestDatabase
from tests.factories import FakeContext, insert, modify, remove
from tests.factories import event as lambda_event
from tests.pgcluster import TempCluster

pytestmark = pytest.mark.postgres

BASE = 10**20  # sequence numbers are 21-40 digit decimal strings


# --- helpers -------------------------------------------------------------------------


def _table(engine: Engine, schema: str, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=engine, schema=schema)


def replica(engine: Engine, schema: str, table: str) -> dict[str, tuple[int, bool, dict[str, Any]]]:
    """{key as text: (_cdc_seq, _cdc_deleted, item)} of a document-mode table keyed by id,
    read the same way on every dialect (an N key is canonical text on MySQL)."""
    t = _table(engine, schema, table)
    query = select(cast(t.c.id, Text), t.c._cdc_seq, t.c._cdc_deleted, cast(t.c.item, Text))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {r[0]: (sequence_of(int(r[1])), bool(r[2]), json.loads(r[3])) for r in rows}


def dead_letters(engine: Engine, schema: str) -> list[dict[str, Any]]:
    t = _table(engine, schema, "cdc_dead_letters")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.id)).mappings()]


def checkpoints(engine: Engine, schema: str) -> list[dict[str, Any]]:
    t = _table(engine, schema, "cdc_checkpoints")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.stream_arn)).mappings()]


def expected_state(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[int, bool]]]:
    """Per snake table, per key: (highest sequence, deleted?) — what the guard must leave."""
    tables = {"Orders": "orders", "Customers": "customers", "Line.Items-v2": "line_items_v2"}
    state: dict[str, dict[str, tuple[int, bool]]] = {}
    for rec in records:
        table = tables[rec["eventSourceARN"].split("/")[1]]
        key = next(iter(rec["dynamodb"]["Keys"]["Id"].values()))
        seq = int(rec["dynamodb"]["SequenceNumber"])
        current = state.setdefault(table, {}).get(key)
        if current is None or seq > current[0]:
            state[table][key] = (seq, rec["eventName"] == "REMOVE")
    return state


def mixed_batch() -> list[dict[str, Any]]:
    """20 Orders inserts, 10 of them modified later in the batch, 5 Customers inserts."""
    records = [insert({"Id": i}, BASE + 10 * i, {"v": 10 * i}) for i in range(20)]
    records += [modify({"Id": i}, BASE + 10 * i + 5, {"v": 10 * i + 5}) for i in range(10)]
    records += [
        insert({"Id": i}, BASE + 1000 + i, {"name": f"c{i}"}, table="Customers") for i in range(5)
    ]
    return records


@pytest.fixture
def own_engine(pg_engine: Engine) -> Iterator[Engine]:
    """An engine of this test's own (listeners attached to it die with it)."""
    engine = make_engine(pg_engine.url)
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str | None], None]]:
    """Point the Lambda handler at a database (as its environment would) and forget
    the warm container's replicator before and after the test."""

    def configure(url: str, schema: str | None) -> None:
        monkeypatch.setenv("CDC_DATABASE_URL", url)
        if schema is None:
            monkeypatch.delenv("CDC_SCHEMA", raising=False)
        else:
            monkeypatch.setenv("CDC_SCHEMA", schema)
        monkeypatch.delenv("CDC_CONFIG", raising=False)
        lambda_handler.reset()

    yield configure
    lambda_handler.reset()


class Killer:
    """Kills the victim's backend, once, from another session, when `should_kill` says
    the victim is about to run the statement of interest."""

    def __init__(self, pg_engine: Engine) -> None:
        self.pg_engine = pg_engine  # another pool: never the victim's connection
        self.fired = 0
        self.terminated: list[bool] = []

    def kill(self, pid: int) -> None:
        self.fired += 1
        with self.pg_engine.connect() as conn:
            # The timeout makes pg_terminate_backend wait until the backend is gone.
            ok = conn.execute(text("select pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            self.terminated.append(bool(ok.scalar()))


def arm_kill(
    engine: Engine, killer: Killer, schema: str, target: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    """Register the listeners that kill the batch's connection at `target`; returns
    counters of how often each statement of interest ran. Statements run through
    SQLAlchemy are seen by its events; the Postgres upserts that cdc sends to psycopg
    directly (in pipeline mode) by a wrapper around psycopg's Cursor.execute."""
    seen = {"replica upsert": 0, "checkpoint": 0, "dead letter": 0, "commit": 0}
    markers = {
        "replica upsert": f"INSERT INTO {schema}.orders ",
        "checkpoint": f"INSERT INTO {schema}.cdc_checkpoints ",
        "dead letter": f"INSERT INTO {schema}.cdc_dead_letters ",
    }
    in_sqlalchemy = threading.local()

    def saw(statement: str, pid: int) -> bool:
        for name, marker in markers.items():
            if statement.startswith(marker):
                seen[name] += 1
                if name == target and not killer.fired:
                    killer.kill(pid)
                return True
        return False

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        in_sqlalchemy.active = True
        if saw(statement, cursor.connection.info.backend_pid):
            conn.info["cdc_test_batch"] = True

    @event.listens_for(engine, "after_cursor_execute")
    def after(*_: Any) -> None:
        in_sqlalchemy.active = False

    @event.listens_for(engine, "handle_error")
    def failed(*_: Any) -> None:
        in_sqlalchemy.active = False

    execute = psycopg.Cursor.execute

    def driver_execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and not getattr(in_sqlalchemy, "active", False):
            saw(query, cursor.connection.info.backend_pid)
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", driver_execute)

    @event.listens_for(engine, "commit")
    def on_commit(conn: Any) -> None:
        if conn.info.pop("cdc_test_batch", False):  # the batch's transaction, not DDL
            seen["commit"] += 1
            if target == "commit" and not killer.fired:
                killer.kill(conn.connection.dbapi_connection.info.backend_pid)

    return seen


# --- 1. a connection killed in the middle of a batch ---------------------------------


@pytest.mark.parametrize("target", ["replica upsert", "checkpoint", "dead letter", "commit"])
def test_connection_killed_mid_batch_is_retried_and_converges(
    pg_engine: Engine,
    own_engine: Engine,
    pg_settings: Settings,
    pg_schema: str,
    target: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a batch over two tables (with one malformed record when the kill hits the
    # dead-letter write), and a listener that terminates the batch's own backend from
    # another session just before `target` runs
    records = mixed_batch()
    if target == "dead letter":
        bad = insert({"Id": 99}, BASE + 9999, {"v": 0})
        bad["eventName"] = "UPSERT"
        records.append(bad)
    killer = Killer(pg_engine)
    seen = arm_kill(own_engine, killer, pg_schema, target, monkeypatch)
    replicator = Replicator(own_engine, pg_settings)

    # WHEN the batch is processed with a Lambda deadline
    result = replicator.process(records, Deadline.from_context(FakeContext(30_000)))

    # THEN the backend really was killed once, the batch was retried on a new connection,
    # and nothing was reported
    assert killer.fired == 1
    assert killer.terminated == [True]
    assert seen[target] == 2, seen  # the killed attempt and the retry
    assert result.response() == {"batchItemFailures": []}
    assert result.failed == 0
    assert result.error is None
    # AND the replica converged to the highest sequence per key
    expected = expected_state([r for r in records if r["eventName"] != "UPSERT"])
    for table, keys in expected.items():
        rows = replica(pg_engine, pg_schema, table)
        assert {k: (s, d) for k, (s, d, _) in rows.items()} == keys
    assert replica(pg_engine, pg_schema, "orders")["3"][2] == {"Id": 3, "v": 35}
    # AND no good record was dead-lettered; the malformed one once, by the retry alone
    letters = dead_letters(pg_engine, pg_schema)
    if target == "dead letter":
        assert [(d["sequence_number"], d["attempts"]) for d in letters] == [(str(BASE + 9999), 1)]
    else:
        assert letters == []
    # AND the killed attempt left no trace in the checkpoints (one transaction)
    assert sum(c["records_applied"] for c in checkpoints(pg_engine, pg_schema)) == 25


def test_connection_killed_mid_batch_through_the_handler(
    pg_engine: Engine,
    pg_schema: str,
    fresh_handler: Callable[[str, str | None], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the Lambda handler configured by its environment, and its engine armed to
    # kill the backend that runs the replica upsert
    fresh_handler(pg_engine.url.render_as_string(hide_password=False), pg_schema)
    killer = Killer(pg_engine)
    seen = arm_kill(
        lambda_handler.replicator().engine, killer, pg_schema, "replica upsert", monkeypatch
    )
    records = mixed_batch()

    # WHEN Lambda invokes it
    response = lambda_handler.handler(lambda_event(*records), FakeContext(30_000))

    # THEN it answers with no failures after a retry, and the replica converged
    assert killer.fired == 1
    assert seen["replica upsert"] == 2
    assert response == {"batchItemFailures": []}
    expected = expected_state(records)
    rows = replica(pg_engine, pg_schema, "orders")
    assert {k: (s, d) for k, (s, d, _) in rows.items()} == expected["orders"]
    assert dead_letters(pg_engine, pg_schema) == []


def test_pooled_connections_killed_between_invocations(
    pg_engine: Engine, own_engine: Engine, pg_settings: Settings, pg_schema: str
) -> None:
    # GIVEN a warm replicator whose pooled connections all died while the container was
    # frozen (only this engine's own backends are terminated)
    pids: set[int] = set()

    @event.listens_for(own_engine, "connect")
    def remember(dbapi_connection: Any, _record: Any) -> None:
        pids.add(dbapi_connection.info.backend_pid)

    replicator = Replicator(own_engine, pg_settings)
    first = replicator.process(mixed_batch()[:10], Deadline.from_context(FakeContext(30_000)))
    assert first.failed == 0
    assert pids
    with pg_engine.connect() as conn:
        for pid in sorted(pids):
            conn.execute(text("select pg_terminate_backend(:pid, 5000)"), {"pid": pid})

    # WHEN the next batch arrives
    records = mixed_batch()
    result = replicator.process(records, Deadline.from_context(FakeContext(30_000)))

    # THEN it is applied on fresh connections, nothing reported
    assert result.response() == {"batchItemFailures": []}
    rows = replica(pg_engine, pg_schema, "orders")
    assert {k: (s, d) for k, (s, d, _) in rows.items()} == expected_state(records)["orders"]


# --- 2. the database down for a while -------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[TempCluster]:
    """A throwaway PostgreSQL cluster of this test's own, which it may stop and start."""
    cluster = TempCluster().init()
    cluster.start()
    yield cluster
    cluster.destroy()


def outage_batch(base: int) -> list[dict[str, Any]]:
    records = [modify({"Id": i}, base + i, {"v": base + i}) for i in range(8)]
    records += [insert({"Id": i}, base + 100 + i, {"v": i}, table="Customers") for i in range(4)]
    records.append(remove({"Id": 0}, base + 200))
    return records


@pytest.mark.parametrize("container", ["warm", "cold"])
def test_database_down_records_reported_then_converge(
    cluster: TempCluster,
    fresh_handler: Callable[[str, str | None], None],
    caplog: pytest.LogCaptureFixture,
    container: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="cdc")
    fresh_handler(cluster.url, "replica")
    engine = make_engine(parse_database_url(cluster.url, "test"))
    try:
        # GIVEN a replica holding a first batch, then the database going down (while the
        # container is warm, or before a cold container's first invocation)
        first = [insert({"Id": i}, BASE + i, {"v": i}) for i in range(8)]
        assert lambda_handler.handler(lambda_event(*first), FakeContext(30_000)) == {
            "batchItemFailures": []
        }
        if container == "cold":
            lambda_handler.reset()
        cluster.stop()

        # WHEN a batch arrives while it is down, with 3 seconds left to run
        batch = outage_batch(BASE + 1000)
        context = FakeContext(3_000)
        started = time.monotonic()
        response = lambda_handler.handler(lambda_event(*batch), context)
        elapsed = time.monotonic() - started

        # THEN every record is reported by its SequenceNumber, in batch order, the call
        # answers before the deadline and after retrying, and nothing raised
        assert response == {
            "batchItemFailures": [
                {"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in batch
            ]
        }
        assert elapsed < 3.0, f"answered after {elapsed:.2f}s, past the 3s deadline"
        assert context.get_remaining_time_in_millis() > 0
        retries = [r for r in caplog.records if "batch attempt" in r.getMessage()]
        assert len(retries) >= 2, "a transient outage must be retried with backoff"

        # WHEN the database is back and Lambda delivers the same batch again
        cluster.start()
        response = lambda_handler.handler(lambda_event(*batch), FakeContext(30_000))

        # THEN it converges, and the outage was never dead-lettered
        assert response == {"batchItemFailures": []}
        orders = replica(engine, "replica", "orders")
        assert {k: (s, d) for k, (s, d, _) in orders.items()} == expected_state(first + batch)[
            "orders"
        ]
        assert orders["5"][2] == {"Id": 5, "v": BASE + 1005}
        customers = replica(engine, "replica", "customers")
        assert sorted(customers) == ["0", "1", "2", "3"]
        assert dead_letters(engine, "replica") == []
    finally:
        engine.dispose()


def test_database_back_within_the_deadline_needs_no_redelivery(
    cluster: TempCluster, fresh_handler: Callable[[str, str | None], None]
) -> None:
    fresh_handler(cluster.url, "replica")
    engine = make_engine(parse_database_url(cluster.url, "test"))
    restart = threading.Timer(1.0, cluster.start)
    try:
        # GIVEN a warm replica whose database goes down and comes back a second later
        first = [insert({"Id": i}, BASE + i, {"v": i}) for i in range(4)]
        assert lambda_handler.handler(lambda_event(*first), FakeContext(30_000)) == {
            "batchItemFailures": []
        }
        cluster.stop()
        restart.start()

        # WHEN a batch arrives during the outage, with time enough to wait for it
        batch = outage_batch(BASE + 1000)
        started = time.monotonic()
        response = lambda_handler.handler(lambda_event(*batch), FakeContext(20_000))

        # THEN the retries carry it through: nothing reported, the replica converged
        assert time.monotonic() - started >= 0.9
        assert response == {"batchItemFailures": []}
        orders = replica(engine, "replica", "orders")
        assert {k: (s, d) for k, (s, d, _) in orders.items()} == expected_state(first + batch)[
            "orders"
        ]
        assert dead_letters(engine, "replica") == []
    finally:
        restart.join()
        engine.dispose()


# --- 3. concurrency -------------------------------------------------------------------

THREADS = 6
ROUNDS = 3
TABLES = ("Orders", "Customers", "Line.Items-v2")


def overlapping_batches(rng: random.Random) -> tuple[list[list[dict[str, Any]]], list[Any]]:
    """Every key of three tables gets several versions (INSERT, MODIFY, REMOVE) with
    distinct sequence numbers; each thread gets an overlapping random subset in its own
    order, and every version goes to at least one thread."""
    sequences = rng.sample(range(1, 10**6), k=len(TABLES) * 25 * 5)
    versions = []
    for table in TABLES:
        for key in range(25):
            for _ in range(5):
                seq = BASE + sequences.pop()
                kind = rng.choice(["INSERT", "MODIFY", "MODIFY", "REMOVE"])
                keys = {"Id": f"k{key}"} if table == "Customers" else {"Id": key}
                if kind == "REMOVE":
                    versions.append(remove(keys, seq, {"v": seq}, table=table))
                elif kind == "INSERT":
                    versions.append(insert(keys, seq, {"v": seq}, table=table))
                else:
                    versions.append(modify(keys, seq, {"v": seq}, table=table))
    batches: list[list[dict[str, Any]]] = [[] for _ in range(THREADS)]
    for version in versions:
        chosen = [i for i in range(THREADS) if rng.random() < 0.6] or [rng.randrange(THREADS)]
        for i in chosen:
            batches[i].append(version)
    for batch in batches:
        rng.shuffle(batch)
    return batches, versions


def apply_at_once(
    batches: list[list[dict[str, Any]]], replicator_for_thread: Callable[[], Replicator]
) -> list[Any]:
    """Process each batch in its own thread, all released at the same moment."""
    barrier = threading.Barrier(len(batches))

    def work(batch: list[dict[str, Any]]) -> Any:
        replicator = replicator_for_thread()
        barrier.wait(timeout=30)
        return replicator.process(batch, Deadline.from_context(FakeContext(30_000)))

    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(work, batches))


@pytest.mark.parametrize("shared", [True, False], ids=["shared-replicator", "one-per-thread"])
def test_concurrent_overlapping_batches_converge_without_deadlock(
    db: TestDatabase, caplog: pytest.LogCaptureFixture, shared: bool
) -> None:
    engine = db.engine
    caplog.set_level(logging.WARNING, logger="cdc")
    for round_ in range(ROUNDS):
        # GIVEN a new database schema (tables appear on first sight, concurrently) and
        # six overlapping batches over three tables, each in its own order
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(CreateSchema(schema))
        try:
            settings = Settings(database_url=engine.url, schema=schema)
            rng = random.Random(f"{shared}-{round_}")
            batches, versions = overlapping_batches(rng)
            common = Replicator(engine, settings) if shared else None

            # WHEN they are applied at once against one engine
            results = apply_at_once(
                batches, lambda s=settings, c=common: c or Replicator(engine, s)
            )

            # THEN no response reports a failure and no error reached any of them
            for result in results:
                assert result.response() == {"batchItemFailures": []}, result.error
                assert result.error is None
                assert result.dead_lettered == 0
            # AND locks were taken in a stable order: no deadlock had to be retried
            deadlocks = [r for r in caplog.records if "deadlock" in r.getMessage().lower()]
            assert deadlocks == [], deadlocks[0].getMessage()
            # AND the replica holds the highest sequence of every key, whatever the order
            expected = expected_state(versions)
            for table, keys in expected.items():
                rows = replica(engine, schema, table)
                assert {k: (s, d) for k, (s, d, _) in rows.items()} == keys, table
                assert all(str(item["v"]) == str(s) for s, _, item in rows.values())
            assert dead_letters(engine, schema) == []
        finally:
            with engine.begin() as conn:
                conn.execute(DropSchema(schema, cascade=db.name == "postgresql"))


# --- a least-privileged database role -------------------------------------------------


@pytest.fixture
def schema_only_role(pg_role: Any, pg_engine: Engine, pg_schema: str) -> Engine:
    """An engine connecting as a role with only what replication needs in its schema
    (least privilege, README: Deployment): USAGE and CREATE on the schema, read/write on the
    bookkeeping tables (made beforehand by an administrator, as `cdc migrate` would),
    and nothing on the database itself."""
    admin = Replicator(pg_engine, Settings(database_url=pg_engine.url, schema=pg_schema))
    assert admin.process([], Deadline.from_context(FakeContext(30_000))).failed == 0
    engine: Engine = pg_role(
        'grant usage, create on schema "{schema}" to "{role}"',
        'grant select, insert, update, delete on all tables in schema "{schema}" to "{role}"',
        'grant usage on all sequences in schema "{schema}" to "{role}"',
    )
    return engine


def test_a_role_with_only_schema_privileges_replicates(
    schema_only_role: Engine, pg_engine: Engine, pg_schema: str
) -> None:
    # GIVEN a replicator connecting as a role without CREATE on the database
    replicator = Replicator(
        schema_only_role, Settings(database_url=schema_only_role.url, schema=pg_schema)
    )
    bad = insert({"Id": 99}, BASE + 99, {"v": 0})
    bad["eventName"] = "UPSERT"

    # WHEN a batch for a table it has not seen yet arrives
    result = replicator.process([*mixed_batch(), bad], Deadline.from_context(FakeContext(30_000)))

    # THEN the table is created in its schema, the good rows applied, the bad one
    # dead-lettered; nothing reported
    assert result.response() == {"batchItemFailures": []}, result.error
    assert len(replica(pg_engine, pg_schema, "orders")) == 20
    assert [d["sequence_number"] for d in dead_letters(pg_engine, pg_schema)] == [str(BASE + 99)]
