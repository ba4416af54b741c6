"""The three ways of applying a batch that the suite compares, and their tables.

* `HandlerMethod`: the project's Lambda handler, end to end (decoding included);
* `NaiveMethod`: boto3's `TypeDeserializer`, then one guarded upsert and one commit per
  record with psycopg: what a first version of such a Lambda usually looks like;
* `CopyFloor`: rows decoded and JSON-encoded before the clock starts, then a binary
  COPY into a temporary staging table and one guarded `INSERT … SELECT … ON CONFLICT`:
  SQL alone, the fastest way we know to get a batch into PostgreSQL.

Each method writes to its own table of the replica layout (README: Replica tables), so all three see
the same batches against the same table state, and their final states can be compared.
The timed part of a method is `apply`; `prepare` is outside the clock.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg import sql

from bench.workload import REPLICA_TABLE, FakeContext, event, single_batch

NAIVE_TABLE = "naive_items"
COPY_TABLE = "copy_items"
COLUMNS = ("id", "item", "_cdc_seq", "_cdc_deleted", "_cdc_event_time", "_cdc_applied_at")


def psycopg_conninfo(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://…`) as a libpq URI."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Method(Protocol):
    name: str

    def prepare(self, records: list[dict[str, Any]]) -> Any:
        """Work done before the clock starts."""

    def apply(self, prepared: Any) -> None:
        """The timed part: apply one batch and commit it."""


class BenchFailure(RuntimeError):
    """A method did not apply a batch as it should: the figures would be meaningless."""


# --- the project's handler --------------------------------------------------------------


class HandlerMethod:
    name = "handler"

    def __init__(self, database_url: str, schema: str) -> None:
        os.environ["CDC_DATABASE_URL"] = database_url
        os.environ["CDC_SCHEMA"] = schema
        import cdc.handler

        self._module = cdc.handler
        cdc.handler.reset()  # rebuild from the environment just set
        # The handler writes its log line and metrics to stdout (Lambda ships stdout to
        # CloudWatch): still written, and timed, but not into the suite's table.
        self._stdout = open(os.devnull, "w")  # noqa: SIM115 (closed in close())

    def warm_container(self) -> None:
        """The first invocation of a container: engine, bookkeeping tables and the
        replica table are created here, never in a timed batch."""
        self.apply(event(single_batch(1, base=1)))

    def prepare(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return event(records)

    def apply(self, prepared: dict[str, Any]) -> None:
        with contextlib.redirect_stdout(self._stdout):
            response = self._module.handler(prepared, FakeContext())
        failures = response.get("batchItemFailures")
        if failures:
            raise BenchFailure(f"the handler reported {len(failures)} failed records")

    def close(self) -> None:
        self._module.reset()
        self._stdout.close()


# --- the naive per-record baseline ------------------------------------------------------


def _naive_default(value: object) -> object:
    """What a first version does with boto3's Decimals: int, else float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
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
    name = "naive"

    def __init__(self, conninfo: str, schema: str) -> None:
        from boto3.dynamodb.types import TypeDeserializer

        self._deserializer = TypeDeserializer()
        self._conn = psycopg.connect(conninfo, application_name="cdc-bench-naive")
        self._sql = _upsert_sql(
            schema, NAIVE_TABLE, sql.SQL("VALUES (%s, %s::jsonb, %s, false, %s, now())")
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


# --- the COPY floor ---------------------------------------------------------------------

Row = tuple[Decimal, str, Decimal, bool, datetime]
_STAGE_TYPES = ["numeric", "text", "numeric", "bool", "timestamptz"]


class CopyFloor:
    """Binary COPY into a temporary staging table (created once per connection, emptied
    at each commit), then one guarded `INSERT … SELECT … ON CONFLICT … DO UPDATE … WHERE`
    and one commit."""

    name = "copy"

    def __init__(self, conninfo: str, schema: str) -> None:
        from boto3.dynamodb.types import TypeDeserializer

        self._deserializer = TypeDeserializer()
        self._conn = psycopg.connect(conninfo, application_name="cdc-bench-copy")
        self._conn.execute(
            "CREATE TEMPORARY TABLE cdc_bench_stage (id numeric, item text, seq numeric, "
            "deleted boolean, event_time timestamptz) ON COMMIT DELETE ROWS"
        )
        self._conn.commit()
        select = sql.SQL(
            "SELECT id, item::jsonb, seq, deleted, event_time, now() FROM cdc_bench_stage"
        )
        self._upsert = _upsert_sql(schema, COPY_TABLE, select).as_string(self._conn)

    def prepare(self, records: list[dict[str, Any]]) -> list[Row]:
        deserialize = self._deserializer.deserialize
        rows: list[Row] = []
        for record in records:
            ddb = record["dynamodb"]
            item = {name: deserialize(value) for name, value in ddb["NewImage"].items()}
            rows.append(
                (
                    deserialize(ddb["Keys"]["id"]),
                    naive_json(item),
                    Decimal(ddb["SequenceNumber"]),
                    False,
                    datetime.fromtimestamp(ddb["ApproximateCreationDateTime"], UTC),
                )
            )
        return rows

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


# --- the schema the suite works in ------------------------------------------------------


class BenchSchema:
    """A schema of its own, created at the start and dropped at the end."""

    def __init__(self, conninfo: str, name: str) -> None:
        self.name = name
        self._conn = psycopg.connect(conninfo, autocommit=True, application_name="cdc-bench")
        self._conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))

    def clone_replica_tables(self) -> None:
        """The baselines' tables: the layout the handler created for its own."""
        source = sql.Identifier(self.name, REPLICA_TABLE)
        self._conn.execute(sql.SQL("DELETE FROM {}").format(source))  # the warm-up row
        for table in (NAIVE_TABLE, COPY_TABLE):
            self._conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier(self.name, table), source
                )
            )

    def differences(self, table: str, other: str = REPLICA_TABLE) -> tuple[int, int, int]:
        """(rows in `table`, rows in `other`, keys whose replicated state differs).

        Items compare as jsonb (numbers by value: the naive encoder writes 1.5 where
        the exact one writes 1.50)."""
        query = sql.SQL(
            "SELECT (SELECT count(*) FROM {a}), (SELECT count(*) FROM {b}), "
            "(SELECT count(*) FROM {a} a FULL JOIN {b} b USING (id) "
            " WHERE a.item IS DISTINCT FROM b.item OR a._cdc_seq IS DISTINCT FROM b._cdc_seq "
            " OR a._cdc_deleted IS DISTINCT FROM b._cdc_deleted "
            " OR a._cdc_event_time IS DISTINCT FROM b._cdc_event_time)"
        ).format(a=sql.Identifier(self.name, table), b=sql.Identifier(self.name, other))
        row = self._conn.execute(query).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def drop(self) -> None:
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.name))
        self._conn.execute(drop)
        self._conn.close()
