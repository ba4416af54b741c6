"""MariaDB under interruptions (issue 12, items 6 and 8), against a real MariaDB.

- a row locked by someone else for longer than the invocation has left: the batch
  answers before the deadline (lock waits and statements are bounded by the time left)
  and its records are reported as failed, not dead-lettered; the limits set for one
  batch are gone when the pooled connection is used next;
- a query killed (KILL QUERY: 1317), a statement over max_statement_time (1969), and the
  PendingRollbackError of a statement on a connection that died mid-transaction are
  transient: the batch is retried and applied, also when the connection dies while the
  replica table or the bookkeeping tables are being created.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError, PendingRollbackError
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc.config import Settings
from cdc.core.deadline import Deadline
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from cdc.sql.errors import ErrorKind, classify
from tests.conftest import DATABASES
from tests.factories import FakeContext, insert

pytestmark = pytest.mark.postgres

BASE = 10**20
MARIADB = [name for name in DATABASES if name in ("mysql", "mariadb")]


@pytest.fixture(params=MARIADB)
def maria(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    """The shared engine (for the test's own statements) and a fresh schema."""
    engine: Engine = request.getfixturevalue("mysql_engine")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(CreateSchema(schema))
    yield engine, schema
    with engine.begin() as conn:
        conn.execute(DropSchema(schema))


@pytest.fixture
def own_engine(maria: tuple[Engine, str]) -> Iterator[Engine]:
    """An engine of the replicator's own, with one pooled connection."""
    engine = make_engine(maria[0].url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def settings(engine: Engine, schema: str) -> Settings:
    return Settings(database_url=engine.url, schema=schema)


def orders(engine: Engine, schema: str) -> dict[str, int]:
    with engine.connect() as conn:
        found = conn.execute(text(f"SELECT id, JSON_VALUE(item, '$.v') FROM `{schema}`.orders"))
        return {k: int(v) for k, v in found}


@pytest.fixture
def locked(maria: tuple[Engine, str], own_engine: Engine) -> Iterator[Callable[[], None]]:
    """Row `a` of `orders` exists and another connection holds its lock; calling the
    fixture releases it (at the end of the test at the latest)."""
    engine, schema = maria
    result = Replicator(own_engine, settings(own_engine, schema)).process(
        [insert({"Id": "a"}, BASE, {"v": 1})]
    )
    assert result.failed == 0
    locker = engine.connect()
    transaction = locker.begin()
    locker.execute(text(f"SELECT * FROM `{schema}`.orders WHERE id = 'a' FOR UPDATE"))
    lock = threading.Lock()

    def release() -> None:
        with lock:
            if transaction.is_active:
                transaction.rollback()

    yield release
    release()
    locker.close()


def test_session_limits_follow_the_time_left() -> None:
    from cdc.sql.backends.mysql.session import mysql_session_limits

    assert mysql_session_limits(3.0, True) == {
        "max_statement_time": 2.0,
        "innodb_lock_wait_timeout": 2,
        "lock_wait_timeout": 2,
    }
    assert mysql_session_limits(1.2, False) == {
        "max_execution_time": 200,
        "innodb_lock_wait_timeout": 1,
        "lock_wait_timeout": 1,
    }
    assert mysql_session_limits(0.0, True)["max_statement_time"] == 0.1


def test_a_locked_row_is_answered_before_the_deadline(
    maria: tuple[Engine, str], own_engine: Engine, locked: Callable[[], None]
) -> None:
    engine, schema = maria
    # GIVEN a row locked by someone else for 8 s (released then, whatever happens)
    timer = threading.Timer(8.0, locked)
    timer.start()
    try:
        replicator = Replicator(own_engine, settings(own_engine, schema))
        # WHEN a batch that writes the row arrives with 3 s left
        started = time.monotonic()
        result = replicator.process(
            [insert({"Id": "a"}, BASE + 1, {"v": 2}), insert({"Id": "b"}, BASE + 2, {"v": 3})],
            Deadline.from_context(FakeContext(3_000)),
        )
        elapsed = time.monotonic() - started
    finally:
        timer.cancel()
        locked()
    # THEN it answers within the deadline, reporting both records for redelivery
    assert elapsed < 3.0, elapsed
    assert result.failed == 2 and result.dead_lettered == 0
    assert result.error is not None and "transient" in result.error
    assert orders(engine, schema) == {"a": 1}
    # AND the pooled connection is back to the server's limits for its next user
    with own_engine.connect() as conn:
        same = conn.execute(
            text(
                "SELECT @@session.innodb_lock_wait_timeout = @@global.innodb_lock_wait_timeout,"
                " @@session.lock_wait_timeout = @@global.lock_wait_timeout,"
                " @@session.max_statement_time = @@global.max_statement_time"
            )
        ).one()
    assert tuple(same) == (1, 1, 1)
    # AND the redelivery applies once the lock is gone
    again = replicator.process(
        [insert({"Id": "a"}, BASE + 1, {"v": 2}), insert({"Id": "b"}, BASE + 2, {"v": 3})],
        Deadline.from_context(FakeContext(3_000)),
    )
    assert again.failed == 0
    assert orders(engine, schema) == {"a": 2, "b": 3}


# --- classification of real errors ---------------------------------------------------------


def connection_id(conn: Any) -> int:
    return int(conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())


def test_real_interruptions_are_transient(maria: tuple[Engine, str], own_engine: Engine) -> None:
    engine, _ = maria
    # 1969: a statement over max_statement_time
    with own_engine.connect() as conn, pytest.raises(OperationalError) as timed_out:
        conn.exec_driver_sql("SET STATEMENT max_statement_time = 0.1 FOR SELECT SLEEP(2)")
    assert timed_out.value.orig.args[0] == 1969
    assert classify(timed_out.value) is ErrorKind.TRANSIENT

    # PendingRollbackError: the connection died in a transaction, and the clean-up ran
    # another statement on it
    pending: PendingRollbackError | None = None
    lost: OperationalError | None = None
    with own_engine.connect() as conn:
        conn.begin()
        victim = connection_id(conn)
        with engine.connect() as killer:
            killer.exec_driver_sql(f"KILL CONNECTION {victim}")
        try:
            conn.exec_driver_sql("SELECT 1")
        except OperationalError as exc:
            lost = exc
            try:
                conn.exec_driver_sql("SELECT 1")
            except PendingRollbackError as again:
                pending = again
    assert lost is not None and classify(lost) is ErrorKind.TRANSIENT
    assert pending is not None
    assert classify(pending) is ErrorKind.TRANSIENT
    assert classify(PendingRollbackError("no cause at hand")) is ErrorKind.TRANSIENT


def kill_when_waiting(
    engine: Engine, schema: str, times: int, release: Callable[[], None]
) -> threading.Thread:
    """KILL QUERY the batch's `SELECT … FOR UPDATE` each time it waits on the lock,
    `times` times, then release the lock."""

    def run() -> None:
        killed: set[tuple[int, float]] = set()
        deadline = time.monotonic() + 20
        with engine.connect() as conn:
            while len(killed) < times and time.monotonic() < deadline:
                waiting = conn.execute(
                    text(
                        "SELECT ID, TIME_MS FROM information_schema.PROCESSLIST"
                        " WHERE INFO LIKE :pattern AND ID <> CONNECTION_ID()"
                    ),
                    {"pattern": f"%{schema}%FOR UPDATE%"},
                ).all()
                for victim, _ in waiting:
                    conn.exec_driver_sql(f"KILL QUERY {int(victim)}")
                    killed.add((int(victim), time.monotonic()))
                    time.sleep(0.3)  # let the batch see it and retry
                    break
                conn.commit()
                time.sleep(0.05)
        release()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_killed_query_is_retried_and_applied(
    maria: tuple[Engine, str], own_engine: Engine, locked: Callable[[], None]
) -> None:
    engine, schema = maria
    # GIVEN the batch's locking read is killed twice (KILL QUERY: error 1317), then the
    # row is released
    killer = kill_when_waiting(engine, schema, 2, locked)
    replicator = Replicator(own_engine, settings(own_engine, schema))
    # WHEN the batch is processed
    result = replicator.process(
        [insert({"Id": "a"}, BASE + 1, {"v": 2}), insert({"Id": "b"}, BASE + 2, {"v": 3})],
        Deadline.from_context(FakeContext(30_000)),
    )
    killer.join(25)
    # THEN it was retried until applied: nothing reported, nothing dead-lettered
    assert result.failed == 0 and result.dead_lettered == 0, result.summary()
    assert orders(engine, schema) == {"a": 2, "b": 3}


def kill_before(own_engine: Engine, engine: Engine, table: str, times: int) -> list[str]:
    """Kill the replicator's own connection (KILL CONNECTION from another one) just
    before each of the first `times` statements that create `table`."""
    fired: list[str] = []
    creates = re.compile(rf"CREATE TABLE (`?\w+`?\.)?`?{table}`? \(")

    @event.listens_for(own_engine, "before_cursor_execute")
    def _kill(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if len(fired) < times and creates.match(statement.strip()):
            fired.append(statement.strip().splitlines()[0])
            victim = conn.connection.dbapi_connection.thread_id()
            with engine.connect() as killer:
                killer.exec_driver_sql(f"KILL CONNECTION {int(victim)}")

    return fired


@pytest.mark.parametrize("table", ["orders", "cdc_dead_letters"])
def test_connection_killed_while_creating_tables_is_retried(
    maria: tuple[Engine, str], own_engine: Engine, table: str
) -> None:
    engine, schema = maria
    # GIVEN the replicator's connection dies twice while it creates the replica table
    # (or, on the first run, the bookkeeping tables)
    fired = kill_before(own_engine, engine, table, 2)
    replicator = Replicator(own_engine, settings(own_engine, schema))
    # WHEN a batch arrives
    result = replicator.process(
        [insert({"Id": "a"}, BASE, {"v": 1})], Deadline.from_context(FakeContext(30_000))
    )
    # THEN the connection really died twice, and the batch was retried until applied
    assert len(fired) == 2, fired
    assert result.failed == 0 and result.dead_lettered == 0, result.summary()
    assert orders(engine, schema) == {"a": 1}
