"""The bulk upsert of MariaDB/MySQL and SQLite (issue 14): one statement per table,
compiled once, the rows sent as executemany parameters.

- the statement is built and compiled once per table and column set: every batch sends
  the same one-row `INSERT … VALUES (…)` text with the rows as parameters (pymysql
  rewrites it into multi-row statements itself; sqlite3 steps it per row);
- what is stored does not change: every column kind of a typed mapping and the
  document of document mode are stored byte for byte as the multi-row VALUES statement
  that cdc sent before stores them, inserted and updated alike;
- the applied/stale counts stay exact (sqlite3 sums each row's changes; MySQL counts
  what its locked read of the stored sequence numbers found older).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, event, select
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc.config import Settings, load_settings, parse_database_url
from cdc.core.mapping import APPLIED_AT, DELETED, EVENT_TIME, SEQ, RowVersion
from cdc.jobs.replicate import Replicator
from cdc.sql.backends.base import Backend, row_dict
from cdc.sql.engines import make_engine
from cdc.sql.replica import ReplicaSpec as TableSpec
from tests.conftest import servers
from tests.factories import record

pytestmark = pytest.mark.postgres

BASE = 10**20  # sequence numbers are 21-40 digit decimal strings
BIG38 = "12345678901234567890123456789012345678"

MAPPING = """
[tables.Things]
keys = ["Id"]

[tables.Things.columns]
Id = "text"
Name = { type = "text", required = true }
Amount = "numeric"
Price = "numeric(12,2)"
Wide = "numeric(38,2)"
Big = "bigint"
Count = "integer"
Small = "smallint"
Flag = "boolean"
Ratio = "double"
At = "timestamptz"
AtMs = { type = "timestamptz", format = "epoch_ms" }
Day = "date"
Doc = "jsonb"
Blob = "bytea"
Tags = "text[]"
Nums = "numeric[]"
"Address.City" = { type = "text", column = "city" }
"""


def attributes(i: int) -> dict[str, Any]:
    """Every attribute type, every typed column kind, varied by `i`; None for some."""
    attrs: dict[str, Any] = {
        "Name": {"S": f"näme {i} ✓ 漢字 🚀"},
        "Amount": {"N": ["1E-130", BIG38, "-0." + BIG38, "9.99E+125", "0.5"][i % 5]},
        "Price": {"N": ["9999999999.99", "-0.5", "12.3000"][i % 3]},
        "Wide": {"N": BIG38[:36] + ".78"},
        "Big": {"N": str(2**63 - 1 - i)},
        "Count": {"N": str(-(2**31) + i)},
        "Small": {"N": str(32767 - i)},
        "Flag": {"BOOL": i % 2 == 0},
        "Ratio": {"N": ["3.14159", "-1.5E+125", "0.1"][i % 3]},
        "At": {"S": ["2024-03-01T14:34:56.250+02:00", "2024-02-29T00:00:00Z"][i % 2]},
        "AtMs": {"N": f"{1_709_296_496_000 + i}"},
        "Day": {"S": "2024-02-29"},
        "Doc": {
            "M": {
                "big": {"N": BIG38},
                "tiny": {"N": "1E-130"},
                "list": {"L": [{"N": "1"}, {"S": "x"}, {"NULL": True}, {"BOOL": False}]},
                "bytes": {"B": "AAH+/w=="},
                "set": {"SS": ["b", "a"]},
            }
        },
        "Blob": {"B": "AAH+/yBiaW5hcnkggA=="},
        "Tags": {"SS": ["z", "a", f"t{i}"]},
        "Nums": {"NS": ["1E-130", BIG38, "2.50"]},
        "Address": {"M": {"City": {"S": f"Zürich {i}"}, "Zip": {"N": "8000"}}},
        "Unmapped": {"L": [{"NS": ["1", "2"]}, {"BS": ["AQ=="]}]},
    }
    if i % 4 == 3:  # NULLs and missing attributes too
        attrs["Amount"] = {"NULL": True}
        del attrs["Blob"], attrs["Doc"]
    return attrs


def put(event_name: str, i: int, seq: int, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    rec = record(event_name, {"Id": f"k{i}"}, BASE + seq, new={"Id": f"k{i}"}, table="Things")
    rec["dynamodb"]["NewImage"].update(attributes(i) if attrs is None else attrs)
    return rec


def delete(i: int, seq: int, *, image: bool) -> dict[str, Any]:
    """A REMOVE; without an image it writes only the bookkeeping columns (document mode:
    a typed table's required column makes MySQL refuse such a row)."""
    rec = record("REMOVE", {"Id": f"k{i}"}, BASE + seq, table="Things")
    if image:
        rec["dynamodb"]["OldImage"] = {"Id": {"S": f"k{i}"}, **attributes(i)}
    return rec


# --- where the replica lives ------------------------------------------------------------


@dataclass
class Target:
    engine: Engine
    schema: str | None
    url: str

    def settings(self, tmp_path: Path, typed: bool) -> Settings:
        env = {"CDC_DATABASE_URL": self.url}
        if self.schema is not None:
            env["CDC_SCHEMA"] = self.schema
        if typed:
            config = tmp_path / "mapping.toml"
            config.write_text(MAPPING, encoding="utf-8")
            env["CDC_CONFIG"] = str(config)
        return load_settings(env)


@pytest.fixture(params=servers("mysql", "sqlite"))
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "mysql":
        engine = request.getfixturevalue("mysql_engine")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(CreateSchema(schema))
        try:
            yield Target(engine, schema, engine.url.render_as_string(hide_password=False))
        finally:
            with engine.begin() as conn:
                conn.execute(DropSchema(schema))
        return
    url = f"sqlite:///{tmp_path}/replica.db"
    engine = make_engine(parse_database_url(url, "test"))
    yield Target(engine, None, url)
    engine.dispose()


# --- the reference: the multi-row VALUES statement cdc sent before ----------------------


class Reference:
    """Watches a replicator's upserts and writes the same rows, as cdc did before this
    change (one multi-row `INSERT … VALUES (…), (…)` built with the rows inline, the same
    guard and assignments), into a copy of the replica table."""

    def __init__(self, replicator: Replicator) -> None:
        self.dialect: Backend = replicator.backend
        self.copies: dict[str, Table] = {}
        self.metadata = MetaData()
        original = self.dialect._upsert

        def watched(
            conn: Connection,
            spec: TableSpec,
            rows: Sequence[RowVersion],
            value_names: Sequence[str],
            applied_at: datetime,
        ) -> int:
            self.write(conn, spec, rows, value_names, applied_at)
            return original(conn, spec, rows, value_names, applied_at)

        self.dialect._upsert = watched  # type: ignore[method-assign]

    def copy_of(self, conn: Connection, table: Table) -> Table:
        copy = self.copies.get(table.name)
        if copy is None:
            copy = table.to_metadata(self.metadata, name=f"{table.name}_before")
            copy.create(conn)
            self.copies[table.name] = copy
        return copy

    def write(
        self,
        conn: Connection,
        spec: TableSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> None:
        copy = self.copy_of(conn, spec.table)
        dicts = [row_dict(spec, r, value_names, applied_at) for r in rows]
        assigned = (*value_names, SEQ, DELETED, EVENT_TIME, APPLIED_AT)
        stmt = self.dialect.merge(
            copy,
            dicts,
            assign=lambda new: {c: new[c] for c in assigned},
            guard=lambda new: copy.c[SEQ] < new[SEQ],
        )
        conn.execute(stmt)


def stored(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    """Every row as the driver returns it (no result processing: the stored bytes)."""
    preparer = engine.dialect.identifier_preparer
    with engine.connect() as conn:
        query = f"SELECT * FROM {preparer.format_table(table)}"  # our own table's name
        rows = conn.exec_driver_sql(query).all()
    return sorted(tuple(r) for r in rows)


def batches(typed: bool) -> list[list[dict[str, Any]]]:
    """Inserts; then updates, stale versions, deletes (soft: an image-less upsert) and
    new keys mixed; then a resurrection."""
    first = [put("INSERT", i, 10 + i) for i in range(12)]
    second = [
        *(put("MODIFY", i, 100 + i, attributes(i + 1)) for i in range(0, 12, 2)),  # newer
        *(put("MODIFY", i, 1) for i in range(1, 12, 4)),  # stale
        delete(3, 200, image=typed),
        delete(7, 5, image=typed),  # stale
        *(put("INSERT", i, 10 + i) for i in range(12, 20)),
    ]
    third = [put("INSERT", 3, 300, attributes(5))]
    return [first, second, third]


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "document"])
def test_stored_rows_are_what_the_multi_row_statement_stored(
    target: Target, tmp_path: Path, typed: bool
) -> None:
    replicator = Replicator(target.engine, target.settings(tmp_path, typed))
    reference = Reference(replicator)
    for records in batches(typed):
        result = replicator.process(records)
        assert (result.failed, result.dead_lettered) == (0, 0), result.summary()
    [copy] = reference.copies.values()
    replica = Table(copy.name.removesuffix("_before"), MetaData(), schema=copy.schema)
    before, after = stored(target.engine, copy), stored(target.engine, replica)
    assert len(after) == 20
    assert after == before
    if typed:  # every column kind was written, not only NULLs
        assert len(copy.columns) >= 22
        assert all(any(v is not None for v in column) for column in zip(*after, strict=True))


def test_applied_and_stale_counts_are_exact(target: Target, tmp_path: Path) -> None:
    replicator = Replicator(target.engine, target.settings(tmp_path, typed=True))
    first = replicator.process([put("INSERT", i, 10 + i) for i in range(10)])
    assert (first.applied, first.stale, first.failed) == (10, 0, 0)
    # 4 newer, 3 stale, one equal (stale: already applied), 2 new keys.
    again = [
        *(put("MODIFY", i, 50 + i, attributes(i + 2)) for i in range(4)),
        *(put("MODIFY", i, 1) for i in range(4, 7)),
        put("INSERT", 7, 17),
        put("INSERT", 10, 60),
        put("INSERT", 11, 61),
    ]
    second = replicator.process(again)
    assert (second.applied, second.stale, second.failed) == (6, 4, 0), second.error
    # Sent once more: every version is now stored, so all are stale.
    third = replicator.process(again)
    assert (third.applied, third.stale, third.failed) == (0, 10, 0)


class Statements:
    """The SQL text and parameter rows of every INSERT into `name` the driver is given."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.sent: list[tuple[str, int, bool]] = []
        self.name = name
        event.listen(engine, "before_cursor_execute", self.saw)

    def saw(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT") and f"{self.name} " in statement:
            rows = len(parameters) if executemany else 1
            self.sent.append((statement, rows, executemany))


def test_the_upsert_is_compiled_once_and_sent_with_the_rows_as_parameters(
    target: Target, tmp_path: Path
) -> None:
    replicator = Replicator(target.engine, target.settings(tmp_path, typed=True))
    statements = Statements(target.engine, "things")

    try:
        sizes = [3, 7, 5]
        start = 0
        for size in sizes:
            batch = [put("INSERT", i, 10 + i) for i in range(start, start + size)]
            assert replicator.process(batch).applied == size
            start += size
    finally:
        event.remove(target.engine, "before_cursor_execute", statements.saw)
    texts = {text for text, _, _ in statements.sent}
    # One statement text for every batch, whatever its size, with one row of placeholders.
    assert len(texts) == 1, statements.sent
    [text] = texts
    assert text.upper().count("VALUES (") == 1 and "), (" not in text
    assert [(rows, many) for _, rows, many in statements.sent] == [(n, True) for n in sizes]


def test_the_statement_is_kept_per_set_of_columns(target: Target, tmp_path: Path) -> None:
    """Deletes without an image write only the bookkeeping columns: a statement of its
    own, which must not replace the one of full rows (nor be confused with it)."""
    replicator = Replicator(target.engine, target.settings(tmp_path, typed=False))
    assert replicator.process([put("INSERT", i, 10 + i) for i in range(4)]).applied == 4
    for seq in (50, 60):  # twice: each statement is taken from the cache the second time
        result = replicator.process(
            [delete(0, seq, image=False), put("MODIFY", 1, seq + 1, attributes(seq))]
        )
        assert (result.applied, result.stale, result.failed) == (2, 0, 0), result.summary()
    table = Table("things", MetaData(), autoload_with=target.engine, schema=target.schema)
    with target.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(table))}
    assert rows["k0"]._cdc_deleted and "näme 0 ✓" in rows["k0"].item
    assert "näme 60 ✓" in rows["k1"].item and not rows["k1"]._cdc_deleted


# --- MySQL: no ROLLBACK after a COMMIT when the pool takes a connection back ---------------


@pytest.fixture(params=servers("mysql"))
def one_connection(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A MySQL engine of one pooled connection, so its session counters are ours (not
    collected unless CDC_TEST_DATABASES lists mysql)."""
    mysql_url: str = request.getfixturevalue("mysql_url")
    engine = make_engine(
        parse_database_url(mysql_url, "CDC_TEST_MYSQL_URL"), pool_size=1, max_overflow=0
    )
    yield engine
    engine.dispose()


def rollbacks(engine: Engine) -> int:
    """The ROLLBACKs the server has seen on the pool's one connection (read in a
    transaction that commits, as a batch does)."""
    with engine.begin() as conn:
        return int(conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_rollback'").one()[1])


def test_a_committed_connection_returns_to_the_pool_without_a_rollback(
    one_connection: Engine,
) -> None:
    engine = one_connection
    first = rollbacks(engine)
    for _ in range(3):
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
    assert rollbacks(engine) == first


@pytest.mark.parametrize("how", ["statement after commit", "raw DBAPI", "rolled back"])
def test_a_connection_returned_mid_transaction_is_still_rolled_back(
    one_connection: Engine, how: str
) -> None:
    """Locks and uncommitted rows never outlive a connection's use."""
    engine = one_connection
    name = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} (id INT PRIMARY KEY) ENGINE=InnoDB")
    try:
        before = rollbacks(engine)
        if how == "statement after commit":
            with engine.connect() as conn:
                conn.exec_driver_sql(f"INSERT INTO {name} VALUES (1)")
                conn.commit()
                conn.exec_driver_sql(f"INSERT INTO {name} VALUES (2)")
            expected = [(1,)]
        elif how == "raw DBAPI":  # SQLAlchemy sees none of its statements
            raw = engine.raw_connection()
            raw.cursor().execute(f"INSERT INTO {name} VALUES (3)")
            raw.close()
            expected = []
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"INSERT INTO {name} VALUES (4)")
                conn.exec_driver_sql(f"INSERT INTO {name} VALUES (5)")
                conn.get_transaction().rollback()  # type: ignore[union-attr]
            expected = []
        assert rollbacks(engine) == before + 1  # one, not one more by the pool
        with engine.begin() as conn:
            assert conn.exec_driver_sql(f"SELECT id FROM {name}").all() == expected
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {name}")
