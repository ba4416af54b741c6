"""Stream generations and the upgrade of existing replicas (README: Stream generations),
on PostgreSQL, MariaDB/MySQL and SQLite.

- a record of a later stream of a table wins over every record of an earlier stream,
  whatever the sequence numbers and the delivery order, soft and hard deletes alike;
- a backfill's snapshot sits below the records of the stream being consumed and above an
  earlier stream's;
- dead letters of one item keep the newest record across streams;
- `cdc migrate` upgrades a replica made before generations in place: version columns
  widened (PostgreSQL without rewriting the table), stored versions moved into the
  current stream's generation, so a late redelivery of an older record still loses and a
  new stream's record still wins; document and typed tables, tombstones, checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Table, inspect, select, text

from cdc.config import Settings, load_settings
from cdc.core.versions import GENERATION_BASE, snapshot_version, stream_generation, stream_version
from cdc.sources.snapshots import SNAPSHOT_RECORDS, Snapshot, snapshot_version_for
from cdc.sql.migrations import upgrade
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import ACCOUNT, REGION, insert, modify, remove

OLD = "2026-11-20T08:15:00.123"
NEW = "2026-11-21T09:00:00.000"


def arn(label: str, table: str = "Orders") -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/{label}"


def on(label: str, record: dict[str, Any], table: str = "Orders") -> dict[str, Any]:
    record["eventSourceARN"] = arn(label, table)
    return record


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def with_options(database: Database, **options: str) -> Settings:
    from cdc.core.mapping import TableOptions

    return Settings(
        database_url=database.engine.url,
        schema=database.schema,
        defaults=TableOptions(**options),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("deletes", ["soft", "hard"])
@pytest.mark.parametrize("order", ["old first", "new first"])
def test_a_later_stream_wins_whatever_the_sequence_numbers(database, deletes, order):
    # GIVEN a key written in the old stream with a large sequence number, then deleted
    # and written again in a new stream whose sequence numbers are smaller
    old = [
        on(OLD, insert({"id": 1}, 900_000, {"v": "old"})),
        on(OLD, modify({"id": 1}, 900_100, {"v": "old-2"})),
        on(OLD, insert({"id": 2}, 900_200, {"v": "old"})),
    ]
    new = [on(NEW, modify({"id": 1}, 5, {"v": "new"})), on(NEW, remove({"id": 2}, 6))]
    replicator = database.replicator(with_options(database, deletes=deletes))
    # WHEN they are delivered in either order, and the old ones again afterwards
    for batch in [old, new] if order == "old first" else [new, old]:
        assert not replicator.process(batch).failed
    assert not replicator.process(old).failed
    # THEN the new stream's versions hold
    items = database.versions("orders")
    assert items["1"][0]["v"] == "new"
    assert items["1"][1] == stream_version(stream_generation(arn(NEW)), 5)
    if deletes == "hard":
        assert "2" not in items
    else:
        t = database.table("orders")
        with database.engine.connect() as conn:
            assert conn.execute(select(t.c._cdc_deleted).where(t.c.id == 2)).scalar_one()


def test_a_snapshot_sits_between_the_streams(database):
    from cdc.aws.clients import SourceTable

    source = SourceTable(
        "Orders", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Orders", (("id", "N"),), 3, arn(NEW)
    )
    replicator = database.replicator()
    # the old stream wrote keys 1 and 2, the new stream key 2 only
    replicator.process([on(OLD, insert({"id": 1}, 900, {"v": "old"}))])
    replicator.process([on(OLD, insert({"id": 2}, 901, {"v": "old"}))])
    replicator.process([on(NEW, modify({"id": 2}, 3, {"v": "new"}))])
    # WHEN a snapshot taken while the new stream is consumed is applied
    version = snapshot_version(stream_generation(arn(NEW)))
    assert snapshot_version_for(source.stream_arn) == version
    replicator.records = SNAPSHOT_RECORDS
    scanned = [{"id": {"N": str(i)}, "v": {"S": "scan"}} for i in (1, 2, 3)]
    snapshot = Snapshot("Orders", ("id",), source.synthetic_stream_arn("backfill"), version)
    assert not replicator.process([snapshot.record(i) for i in scanned]).failed
    # THEN it beats the old stream's version, loses to the new stream's
    items = database.versions("orders")
    assert items["1"] == ({"id": 1, "v": "scan"}, version)
    assert items["2"][0]["v"] == "new"
    assert items["3"] == ({"id": 3, "v": "scan"}, version)


def test_a_dead_letter_keeps_the_newest_stream_s_record(database):
    # the same bad item (a NUL character) from the old stream (high sequence) and from
    # the new one (low sequence): one letter, holding the new stream's record
    bad = {"v": "a\x00b"}
    replicator = database.replicator()
    replicator.process([on(NEW, insert({"id": 1}, 7, bad))])
    replicator.process([on(OLD, insert({"id": 1}, 900_000, bad))])
    letters = database.dead_letters()
    assert len(letters) == 1
    assert letters[0]["sequence_number"] == "7" and letters[0]["stream_arn"] == arn(NEW)
    assert letters[0]["attempts"] == 2
    assert int(letters[0]["version"]) == stream_version(stream_generation(arn(NEW)), 7)


# --- the upgrade of a replica made before generations ---------------------------------


def typed_settings(database: Database, tmp_path: Any) -> Settings:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[tables.Typed]\nkeys = ["id"]\ndeletes = "hard"\n\n[tables.Typed.columns]\n'
        'id = "bigint"\nv = "text"\n',
        encoding="utf-8",
    )
    env = {
        "CDC_DATABASE_URL": database.engine.url.render_as_string(False),
        "CDC_CONFIG": str(mapping),
    }
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    return load_settings(env)


VERSION_COLUMNS = [
    ("orders", "_cdc_seq"),
    ("typed", "_cdc_seq"),
    ("cdc_checkpoints", "last_sequence"),
    ("cdc_tombstones", "sequence"),
]


def to_layout_before_generations(database: Database, *, replicas_only: bool = False) -> None:
    """What a database of cdc before migration 0005 holds: 40-digit version columns
    with bare sequence numbers, no gaps table, no dead letter versions, stamped 0003.
    `replicas_only`: only the replica tables are so (`cdc migrate --sql` applied 0005:
    it could not see them)."""
    engine, schema = database.engine, database.schema
    prefix = f"{schema}." if schema else ""
    with engine.begin() as conn:
        for table, column in VERSION_COLUMNS[:2] if replicas_only else VERSION_COLUMNS:
            name = f"{prefix}{table}"
            if database.name == "sqlite":
                conn.execute(text(f"UPDATE {name} SET {column} = substr({column}, 26)"))
                continue
            conn.execute(text(f"UPDATE {name} SET {column} = MOD({column}, {GENERATION_BASE})"))
            if database.name == "postgresql":
                conn.execute(text(f"ALTER TABLE {name} ALTER COLUMN {column} TYPE NUMERIC(40, 0)"))
            else:
                conn.execute(text(f"ALTER TABLE {name} MODIFY {column} DECIMAL(40, 0) NOT NULL"))
        if replicas_only:
            pass
        else:
            conn.execute(text(f"DROP TABLE {prefix}cdc_gaps"))
        if not replicas_only:
            conn.execute(text(f"ALTER TABLE {prefix}cdc_dead_letters DROP COLUMN version"))
            conn.execute(text(f"UPDATE {prefix}alembic_version SET version_num = '0003'"))
    if database.name == "sqlite":
        # SQLite keeps the declared VARCHAR(65): declare VARCHAR(40), as 0001 did.
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA writable_schema = ON")
            conn.exec_driver_sql(
                "UPDATE sqlite_master SET sql = replace(sql, 'VARCHAR(65)', 'VARCHAR(40)')"
                + (" WHERE name IN ('orders', 'typed')" if replicas_only else "")
            )
            conn.exec_driver_sql("PRAGMA writable_schema = OFF")
        engine.dispose()


def declared(database: Database, table: str, column: str) -> str:
    columns = inspect(database.engine).get_columns(table, schema=database.schema)
    found = next(c for c in columns if c["name"] == column)
    return str(found["type"].compile(dialect=database.engine.dialect))


def relfilenode(database: Database, table: str) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT pg_relation_filenode(:t)"), {"t": f"{database.schema}.{table}"}
            ).scalar_one()
        )


def test_migrate_upgrades_an_old_replica_in_place(database, tmp_path):
    settings = typed_settings(database, tmp_path)
    replicator = database.replicator(settings)
    # GIVEN a replica of the old stream, made before generations: a document table, a
    # typed table with hard deletes (a tombstone), checkpoints
    assert not replicator.process(
        [
            on(OLD, insert({"id": 1}, 500, {"v": "a"})),
            on(OLD, modify({"id": 1}, 700, {"v": "b"})),
            on(OLD, insert({"id": 1}, 600, {"v": "t"}), table="Typed"),
            on(OLD, insert({"id": 2}, 610, {"v": "t"}), table="Typed"),
            on(OLD, remove({"id": 2}, 620), table="Typed"),
        ]
    ).failed
    to_layout_before_generations(database)
    assert declared(database, "orders", "_cdc_seq") in (
        "NUMERIC(40, 0)",
        "DECIMAL(40, 0)",
        "VARCHAR(40)",
    )
    assert database.versions("orders")["1"][1] == 700
    if database.name == "postgresql":
        before = relfilenode(database, "typed")

    # WHEN `cdc migrate` runs
    assert upgrade(database.engine, settings) == []

    # THEN the columns hold versions and the stored ones are in the old stream's generation
    wanted = {"postgresql": "NUMERIC(65, 0)", "sqlite": "VARCHAR(65)"}.get(
        database.name, "DECIMAL(65, 0)"
    )
    for table, column in VERSION_COLUMNS:
        assert declared(database, table, column) == wanted, table
    if database.name == "postgresql":
        assert relfilenode(database, "typed") == before  # widened without a rewrite
    g = stream_generation(arn(OLD))
    assert database.versions("orders")["1"][1] == stream_version(g, 700)
    tombstones, checkpoints_table = (
        database.table("cdc_tombstones"),
        database.table("cdc_checkpoints"),
    )
    with database.engine.connect() as conn:
        stones = conn.execute(select(tombstones.c.sequence)).scalars().all()
        checkpoints = conn.execute(select(checkpoints_table.c.last_sequence)).scalars().all()
    assert [int(s) for s in stones] == [stream_version(g, 620)]
    assert {int(s) for s in checkpoints} == {stream_version(g, 700), stream_version(g, 620)}
    # and running it again changes nothing
    assert upgrade(database.engine, settings) == []
    assert database.versions("orders")["1"][1] == stream_version(g, 700)

    # THEN a late redelivery of an older record of the old stream still loses, a newer one
    # and a new stream's record (with a smaller sequence number) win, the tombstone holds
    replicator = database.replicator(settings)
    replicator.process([on(OLD, modify({"id": 1}, 600, {"v": "late"}))])
    assert database.versions("orders")["1"][0]["v"] == "b"
    replicator.process([on(OLD, insert({"id": 2}, 615, {"v": "late"}), table="Typed")])
    typed: Table = database.table("typed")
    with database.engine.connect() as conn:
        assert conn.execute(select(typed.c.id)).scalars().all() == [1]
    replicator.process([on(NEW, modify({"id": 1}, 3, {"v": "new"}))])
    assert database.versions("orders")["1"][0]["v"] == "new"


def test_migrate_finishes_replicas_the_sql_of_cdc_migrate_could_not_see(database, tmp_path):
    # GIVEN a database at cdc's head whose replica tables still hold 40-digit versions
    # (`cdc migrate --sql` applied migration 0005: it cannot inspect the tables)
    settings = typed_settings(database, tmp_path)
    replicator = database.replicator(settings)
    replicator.process([on(OLD, insert({"id": 1}, 500, {"v": "a"}))])
    replicator.process([on(OLD, insert({"id": 1}, 600, {"v": "t"}), table="Typed")])
    to_layout_before_generations(database, replicas_only=True)
    assert database.versions("orders")["1"][1] == 500
    # WHEN `cdc migrate` runs online
    upgrade(database.engine, settings)
    # THEN the replicas are widened and re-based
    wanted = {"postgresql": "NUMERIC(65, 0)", "sqlite": "VARCHAR(65)"}.get(
        database.name, "DECIMAL(65, 0)"
    )
    assert (
        declared(database, "orders", "_cdc_seq")
        == declared(database, "typed", "_cdc_seq")
        == wanted
    )
    assert database.versions("orders")["1"][1] == stream_version(stream_generation(arn(OLD)), 500)
