"""The contenders the suite compares, and the tables they write.

* `HandlerMethod`: the project's Lambda handler, end to end (decoding included), on any
  of the three databases, through `cdc.handler.handler` itself;
* the floors, one per database, "rows already encoded, nothing but the database's own
  bulk path" (decoding and JSON encoding happen in `prepare`, before the clock starts):
  - `CopyFloor` (PostgreSQL): binary COPY into a temporary staging table and one
    guarded `INSERT … SELECT … ON CONFLICT … DO UPDATE … WHERE`, one commit;
  - `MariaDBFloor`: one multi-row `INSERT … ON DUPLICATE KEY UPDATE` with the guard in
    every assignment, executed by the driver (pymysql) with parameters, one commit
    (statements split only to stay under max_allowed_packet);
  - `SqliteFloor`: `executemany` of one guarded `INSERT … ON CONFLICT` in one transaction;
* `NaiveMethod` (PostgreSQL, `--naive`): boto3's `TypeDeserializer`, then one guarded
  upsert and one commit per record with psycopg: what a first version usually looks like;
* `PeerMethod` (`bench/peers.py`, in a venv of its own): a Powertools `BatchProcessor`.

Each contender writes to its own table of the replica layout (README: Replica tables), so
all see the same batches against the same table state, and their final states can be
compared. The timed part of a contender is `apply`; `prepare` is outside the clock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from bench.encode import canonical_number, plain_json
from bench.workload import FakeContext, event, single_batch

NAIVE_TABLE = "naive_items"
FLOOR_TABLE = "floor_items"
PEER_TABLE = "peer_items"
COLUMNS = ("id", "item", "_cdc_seq", "_cdc_deleted", "_cdc_event_time", "_cdc_applied_at")


def psycopg_conninfo(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://…`) as a libpq URI."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Method(Protocol):
    def prepare(self, records: list[dict[str, Any]]) -> Any:
        """Work done before the clock starts."""

    def apply(self, prepared: Any) -> float | None:
        """The timed part: apply one batch and commit it. Returns its own measure of
        the time taken when the work happens elsewhere (another process), else None."""

    def close(self) -> None: ...


class BenchFailure(RuntimeError):
    """A method did not apply a batch as it should: the figures would be meaningless."""


# --- the project's handler --------------------------------------------------------------


class HandlerMethod:
    """`cdc.handler.handler(event, context)` with a replicator of its own: the handler
    builds it from the environment (CDC_DATABASE_URL, CDC_SCHEMA) as in Lambda, and it
    is put in place before each call, so several handlers (one per database or RTT)
    can take turns in one process."""

    def __init__(self, database_url: str, schema: str | None) -> None:
        # The module that holds the container's state (`cdc.handler` re-exports its
        # handler under the published name; the same function).
        import cdc.app.handler

        self._module = cdc.app.handler
        os.environ["CDC_DATABASE_URL"] = database_url
        if schema is None:
            os.environ.pop("CDC_SCHEMA", None)
        else:
            os.environ["CDC_SCHEMA"] = schema
        self._module._replicator = None
        self.replicator = self._module.replicator()
        # The handler writes its log line and metrics to stdout (Lambda ships stdout to
        # CloudWatch): still written, and timed, but not into the suite's table.
        self._stdout = open(os.devnull, "w")  # noqa: SIM115 (closed in close())

    def activate(self) -> None:
        """Make this the container's replicator (the probes in bench.hotspots ask the
        handler module for it)."""
        self._module._replicator = self.replicator

    def warm_container(self, kind: str) -> None:
        """The first invocation of a container: engine, bookkeeping tables and the
        replica table are created here, never in a timed batch."""
        self.apply(event(single_batch(1, base=1, kind=kind)))

    def prepare(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        # cdc pings a pooled connection that sat idle for more than 300 s before using it
        # (cdc.sql.engines); in the suite's lockstep every contender waits seconds for its turn,
        # while a Lambda under a steady stream gets its batches back to back. The
        # connection is checked out and in here, before the clock, so the timed call
        # sees the steady state (no ping round trip).
        self.replicator.engine.connect().close()
        return event(records)

    def apply(self, prepared: dict[str, Any]) -> None:
        self.activate()
        with contextlib.redirect_stdout(self._stdout):
            response = self._module.handler(prepared, FakeContext())
        failures = response.get("batchItemFailures")
        if failures:
            raise BenchFailure(f"the handler reported {len(failures)} failed records")

    def close(self) -> None:
        self.replicator.engine.dispose()
        self._module._replicator = None
        self._stdout.close()


# --- the naive per-record baseline ------------------------------------------------------


def _naive_default(value: object) -> object:
    """What a first version does with boto3's Decimals: int, else float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "value") and isinstance(value.value, bytes):  # boto3's Binary
        return base64.b64encode(value.value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(str(_naive_default(v)) if hasattr(v, "value") else v for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def naive_json(item: dict[str, Any]) -> str:
    return json.dumps(item, default=_naive_default, separators=(",", ":"))


def _upsert_sql(schema: str, table: str, source: sql.Composable) -> sql.Composed:
    target = sql.Identifier(schema, table)
    updated = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in COLUMNS[1:]
    )
    return sql.SQL(
        "INSERT INTO {target} AS t ({columns}) {source} "
        "ON CONFLICT (id) DO UPDATE SET {updated} WHERE t._cdc_seq < excluded._cdc_seq"
    ).format(
        target=target,
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
        source=source,
        updated=updated,
    )


class NaiveMethod:
    def __init__(self, conninfo: str, schema: str, table: str = NAIVE_TABLE) -> None:
        from boto3.dynamodb.types import TypeDeserializer

        self._deserializer = TypeDeserializer()
        self._conn = psycopg.connect(conninfo, application_name="cdc-bench-naive")
        self._sql = _upsert_sql(
            schema, table, sql.SQL("VALUES (%s, %s::jsonb, %s, false, %s, now())")
        ).as_string(self._conn)

    def prepare(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records

    def apply(self, prepared: list[dict[str, Any]]) -> None:
        deserialize = self._deserializer.deserialize
        conn = self._conn
        for record in prepared:
            ddb = record["dynamodb"]
            key = deserialize(ddb["Keys"]["id"])
            item = {name: deserialize(value) for name, value in ddb["NewImage"].items()}
            event_time = datetime.fromtimestamp(ddb["ApproximateCreationDateTime"], UTC)
            conn.execute(self._sql, (key, naive_json(item), int(ddb["SequenceNumber"]), event_time))
            conn.commit()

    def close(self) -> None:
        self._conn.close()


# --- the floors ---------------------------------------------------------------------

Row = tuple[Any, ...]


def _encoded(records: list[dict[str, Any]]) -> list[tuple[Decimal, str, int, datetime]]:
    """(key, plain-JSON item, sequence number, event time) of each record: the part of
    the floors' pre-encoding every database shares."""
    rows = []
    for record in records:
        ddb = record["dynamodb"]
        rows.append(
            (
                Decimal(ddb["Keys"]["id"]["N"]),
                plain_json(ddb["NewImage"]),
                int(ddb["SequenceNumber"]),
                datetime.fromtimestamp(ddb["ApproximateCreationDateTime"], UTC),
            )
        )
    return rows


_STAGE_TYPES = ["numeric", "text", "numeric", "bool", "timestamptz"]


class CopyFloor:
    """Binary COPY into a temporary staging table (created once per connection, emptied
    at each commit), then one guarded `INSERT … SELECT … ON CONFLICT … DO UPDATE … WHERE`
    and one commit."""

    def __init__(self, conninfo: str, schema: str, table: str = FLOOR_TABLE) -> None:
        self._conn = psycopg.connect(conninfo, application_name="cdc-bench-copy")
        self._conn.execute(
            "CREATE TEMPORARY TABLE cdc_bench_stage (id numeric, item text, seq numeric, "
            "deleted boolean, event_time timestamptz) ON COMMIT DELETE ROWS"
        )
        self._conn.commit()
        select = sql.SQL(
            "SELECT id, item::jsonb, seq, deleted, event_time, now() FROM cdc_bench_stage"
        )
        self._upsert = _upsert_sql(schema, table, select).as_string(self._conn)

    def prepare(self, records: list[dict[str, Any]]) -> list[Row]:
        return [(key, item, Decimal(seq), False, at) for key, item, seq, at in _encoded(records)]

    def apply(self, prepared: list[Row]) -> None:
        with self._conn.cursor() as cur:
            with cur.copy(
                "COPY cdc_bench_stage (id, item, seq, deleted, event_time) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_STAGE_TYPES)
                for row in prepared:
                    copy.write_row(row)
            cur.execute(self._upsert)
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


def mysql_connect(url: str, database: str | None = None) -> Any:
    """A pymysql connection for a SQLAlchemy URL, as cdc's engine makes it (utf8mb4,
    READ COMMITTED)."""
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = pymysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=database if database is not None else u.database,
        charset="utf8mb4",
        autocommit=False,
    )
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    conn.commit()
    return conn


# Keep each statement well under max_allowed_packet (16 MiB by default); a batch whose
# rows fit (up to ~5,000 rows of the all-types workload) is one statement.
MYSQL_STATEMENT_BYTES = 8 * 1024 * 1024


class MariaDBFloor:
    """One multi-row `INSERT … VALUES (…), (…) … ON DUPLICATE KEY UPDATE` of pre-encoded
    rows, the guard in every assignment (`IF(_cdc_seq < VALUES(_cdc_seq), new, old)`,
    the sequence assigned last, as ON DUPLICATE KEY assignments see the ones before
    them), sent by pymysql with parameters, and one commit."""

    def __init__(self, url: str, database: str, table: str = FLOOR_TABLE) -> None:
        self._conn = mysql_connect(url, database)
        target = f"`{database}`.`{table}`"
        guard = "`_cdc_seq` < VALUES(`_cdc_seq`)"
        assigned = [c for c in COLUMNS[1:] if c != "_cdc_seq"] + ["_cdc_seq"]
        updates = ", ".join(f"`{c}` = IF({guard}, VALUES(`{c}`), `{c}`)" for c in assigned)
        columns = ", ".join(f"`{c}`" for c in COLUMNS)
        self._head = f"INSERT INTO {target} ({columns}) VALUES "
        self._tail = f" ON DUPLICATE KEY UPDATE {updates}"
        self._sql: dict[int, str] = {}  # rows per statement → its text (built once)

    def _statement(self, rows: int) -> str:
        if rows not in self._sql:
            values = ", ".join(["(%s, %s, %s, %s, %s, UTC_TIMESTAMP(6))"] * rows)
            self._sql[rows] = self._head + values + self._tail
        return self._sql[rows]

    def prepare(self, records: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
        statements: list[tuple[str, list[Any]]] = []
        params: list[Any] = []
        size = rows = 0
        for key, item, seq, at in _encoded(records):
            if rows and size + len(item) > MYSQL_STATEMENT_BYTES:
                statements.append((self._statement(rows), params))
                params, size, rows = [], 0, 0
            params += (canonical_number(key), item, seq, 0, at.replace(tzinfo=None))
            size += len(item) + 100
            rows += 1
        if rows:
            statements.append((self._statement(rows), params))
        return statements

    def apply(self, prepared: list[tuple[str, list[Any]]]) -> None:
        with self._conn.cursor() as cur:
            for statement, params in prepared:
                cur.execute(statement, params)
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


def sqlite_datetime(moment: datetime) -> str:
    """A UTC instant as SQLAlchemy's SQLite DateTime stores it (cdc's UtcDateTime)."""
    return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


class SqliteFloor:
    """`executemany` of one guarded `INSERT … ON CONFLICT (id) DO UPDATE … WHERE` over
    the pre-encoded rows, in one transaction (BEGIN IMMEDIATE … COMMIT, as cdc's
    engine begins)."""

    def __init__(self, path: str, table: str = FLOOR_TABLE) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        quoted = f'"{table}"'
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        self._sql = (
            f"INSERT INTO {quoted} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (id) DO UPDATE SET {updates} "
            f"WHERE {quoted}._cdc_seq < excluded._cdc_seq"
        )

    def prepare(self, records: list[dict[str, Any]]) -> list[Row]:
        applied = sqlite_datetime(datetime.now(UTC))
        return [
            (canonical_number(key), item, f"{seq:040d}", 0, sqlite_datetime(at), applied)
            for key, item, seq, at in _encoded(records)
        ]

    def apply(self, prepared: list[Row]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(self._sql, prepared)
        conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


# --- the peer: a Powertools BatchProcessor, in a venv of its own -------------------------

PEERS_SCRIPT = Path(__file__).resolve().with_name("peers.py")


def peers_python() -> Path | None:
    """The bench venv's interpreter (bench/README.md says how to make it), if any."""
    configured = os.environ.get("CDC_BENCH_PEERS_PYTHON")
    candidate = (
        Path(configured) if configured else Path(__file__).resolve().parent / ".venv/bin/python"
    )
    return candidate if candidate.exists() else None


class PeerMethod:
    """A worker process (bench/peers.py, run by the bench venv's Python) applies each
    batch with Powertools' `BatchProcessor` and reports the time it took; the batch is
    handed over (JSON on its stdin) before the clock starts."""

    def __init__(self, python: Path, database_url: str, schema: str, table: str) -> None:
        self._proc = subprocess.Popen(
            [str(python), str(PEERS_SCRIPT), database_url, schema, table],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = self._reply()
        if not hello.get("ready"):
            raise BenchFailure(f"the peers worker did not start: {hello}")
        self.versions: str = hello.get("versions", "?")

    def _reply(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise BenchFailure(f"the peers worker exited (code {self._proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def prepare(self, records: list[dict[str, Any]]) -> str:
        return json.dumps({"Records": records}) + "\n"

    def apply(self, prepared: str) -> float:
        assert self._proc.stdin is not None
        self._proc.stdin.write(prepared)
        self._proc.stdin.flush()
        reply = self._reply()
        if reply.get("failures"):
            raise BenchFailure(f"the Powertools peer reported {reply['failures']} failed records")
        return float(reply["seconds"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


Counter = Callable[[], int]


def count_mysql_commands() -> tuple[Counter, Callable[[], None]]:
    """Count the commands pymysql sends (each waits for its reply: one round trip),
    for every pymysql connection of this process; returns (read, undo)."""
    from pymysql.connections import Connection

    original = Connection._execute_command
    sent = [0]

    def counted(self: Any, command: int, sql: Any) -> Any:
        sent[0] += 1
        return original(self, command, sql)

    Connection._execute_command = counted

    def undo() -> None:
        Connection._execute_command = original

    return (lambda: sent[0]), undo


__all__ = ["sys"]
