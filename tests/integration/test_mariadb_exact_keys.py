"""Keys are compared byte for byte on every database (issue 12, item 1).

DynamoDB keys `sp`, `sp ` and `sp  ` are three items. MySQL's and MariaDB's `utf8mb4_bin`
pads with spaces (`'sp' = 'sp '`), and the bookkeeping tables had the database's
case-insensitive default: on MariaDB the replica merged such keys and `Users`/`users`
shared a checkpoint. Against a real PostgreSQL, MariaDB and SQLite:

- three items whose keys differ only by trailing spaces are three rows, in document
  mode and typed mode, and a hard delete of one removes only that one;
- every bookkeeping identity (checkpoint, tombstone, dead-letter fingerprint, backfill
  segment) keeps values that differ only by case or trailing spaces apart;
- a database made by an earlier cdc (bookkeeping at revision 0002, a replica table with
  `utf8mb4_bin` and MariaDB's JSON_VALID check) is upgraded by `cdc migrate` (revision
  0003), again after an interruption, and, without `cdc migrate`, each replica table on
  first use (after which `cdc migrate` finds no difference from the mapping); a role
  that may not ALTER the table gets an error naming the fix, and nothing is written; a
  table that is not cdc's is left alone; `cdc migrate --sql` converts the bookkeeping
  tables with the collation of the server the URL names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Column, Engine, MetaData, String, Table, func, insert, select, text
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc.config import Settings, load_settings
from cdc.jobs.replicate import Replicator
from cdc.sql.bookkeeping import tables as bookkeeping_tables
from cdc.sql.engines import make_engine
from cdc.sql.migrations import alembic_config, ensure_bookkeeping
from cdc.sql.migrations import upgrade as migrate_upgrade
from cdc.sql.types import SequenceNumber, UtcDateTime
from tests.conftest import DATABASES, TestDatabase
from tests.factories import insert as insert_record
from tests.factories import remove

pytestmark = pytest.mark.postgres

BASE = 10**20
KEYS = ["sp", "sp ", "sp  ", "SP"]
MARIADB = [name for name in DATABASES if name in ("mysql", "mariadb")]


def write_mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(
        """
[tables.Docs]
deletes = "hard"

[tables.Typed]
keys = ["Id"]
deletes = "hard"

[tables.Typed.columns]
Id = "text"
v = "bigint"
"""
    )
    return path


def settings_for(engine: Engine, schema: str | None, mapping: Path) -> Settings:
    env = {
        "CDC_CONFIG": str(mapping),
        "CDC_DATABASE_URL": engine.url.render_as_string(hide_password=False),
    }
    if schema is not None:
        env["CDC_SCHEMA"] = schema
    return load_settings(env)


def rows(engine: Engine, schema: str | None, table: str) -> dict[str, Any]:
    reflected = Table(table, MetaData(), autoload_with=engine, schema=schema)
    with engine.connect() as conn:
        return {r[0]: r for r in conn.execute(select(reflected))}


def assert_keys_kept_apart(engine: Engine, schema: str | None, tmp_path: Path) -> None:
    replicator = Replicator(engine, settings_for(engine, schema, write_mapping(tmp_path)))
    records = [
        insert_record({"Id": key}, BASE + i, {"v": i}, table=table)
        for table in ("Docs", "Typed")
        for i, key in enumerate(KEYS)
    ]
    result = replicator.process(records)
    assert result.summary()["applied"] == 8, result.summary()
    assert result.failed == result.dead_lettered == 0
    for table in ("docs", "typed"):
        assert sorted(rows(engine, schema, table)) == sorted(KEYS), table
    assert {k: r.v for k, r in rows(engine, schema, "typed").items()} == {
        key: i for i, key in enumerate(KEYS)
    }

    # a hard delete of `sp ` removes that row only, and leaves one tombstone
    result = replicator.process(
        [remove({"Id": "sp "}, BASE + 10, table=table) for table in ("Docs", "Typed")]
    )
    assert result.failed == result.dead_lettered == 0
    for table in ("docs", "typed"):
        assert sorted(rows(engine, schema, table)) == sorted(["sp", "sp  ", "SP"]), table
    # a late older insert of `sp ` stays deleted; `sp` takes a newer version
    replicator.process(
        [
            insert_record({"Id": "sp "}, BASE + 5, {"v": 50}, table="Typed"),
            insert_record({"Id": "sp"}, BASE + 11, {"v": 60}, table="Typed"),
        ]
    )
    typed = rows(engine, schema, "typed")
    assert sorted(typed) == sorted(["sp", "sp  ", "SP"])
    assert (typed["sp"].v, typed["sp  "].v) == (60, 2)
    tombstones = bookkeeping_tables(schema)["cdc_tombstones"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tombstones)).scalar_one() == 2


# The test of `assert_keys_kept_apart` on every backend is in the backend contract
# (tests/integration/test_backend_contract.py).


def bookkeeping_pairs(engine: Engine, schema: str | None) -> None:
    """Two rows per bookkeeping table whose identities differ only by case or trailing
    spaces: both must be stored (a merge or a duplicate-key error would be wrong)."""
    ensure_bookkeeping(engine, schema)
    t = bookkeeping_tables(schema)
    now = datetime.now(UTC)
    arn = "arn:aws:dynamodb:eu-central-1:123456789012:table/{}/stream/2026-01-01T00:00:00.000"
    with engine.begin() as conn:
        for name in ("Users", "users"):
            conn.execute(
                insert(t["cdc_checkpoints"]).values(
                    stream_arn=arn.format(name),
                    shard_id="",
                    last_sequence=1,
                    records_applied=1,
                    records_stale=0,
                    records_dead_lettered=0,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(t["cdc_backfill_segments"]).values(
                    source_table=name,
                    segment=0,
                    total_segments=1,
                    items_written=0,
                    done=False,
                    started_at=now,
                    updated_at=now,
                )
            )
        for table_name, key_hash in (("orders", "ab"), ("Orders", "ab"), ("orders", "AB")):
            conn.execute(
                insert(t["cdc_tombstones"]).values(
                    table_name=table_name, key_hash=key_hash, key="[]", sequence=1, deleted_at=now
                )
            )
        for fingerprint in ("f", "f ", "F"):
            conn.execute(
                insert(t["cdc_dead_letters"]).values(
                    fingerprint=fingerprint,
                    status="pending",
                    source_table="Users",
                    error_class="x",
                    error_message="x",
                    raw_record="{}",
                    attempts=1,
                    first_failed_at=now,
                    last_failed_at=now,
                )
            )
    counts = {"cdc_checkpoints": 2, "cdc_backfill_segments": 2, "cdc_tombstones": 3}
    counts["cdc_dead_letters"] = 3
    with engine.connect() as conn:
        for name, expected in counts.items():
            assert conn.execute(select(func.count()).select_from(t[name])).scalar_one() == expected
        letters = t["cdc_dead_letters"]
        found = conn.execute(select(letters.c.fingerprint).where(letters.c.fingerprint == "f"))
        assert found.scalars().all() == ["f"]


def test_bookkeeping_identities_are_exact(database: TestDatabase) -> None:
    bookkeeping_pairs(database.engine, database.schema)


# --- upgrading what an earlier cdc made (MariaDB) ------------------------------------------


@pytest.fixture(params=MARIADB)
def maria(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    engine: Engine = request.getfixturevalue("mysql_engine")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(CreateSchema(schema))
    yield engine, schema
    with engine.begin() as conn:
        conn.execute(DropSchema(schema))


def old_replica_table(engine: Engine, schema: str) -> None:
    """`orders` as cdc made it before: utf8mb4_bin (PAD SPACE) and, on MariaDB, a JSON
    column with its JSON_VALID check; one row with the key `sp`."""
    table = Table(
        "orders",
        MetaData(),
        Column("id", String(384), primary_key=True),
        Column("item", mysql.JSON()),
        Column("_cdc_seq", SequenceNumber(), nullable=False),
        Column("_cdc_deleted", mysql.TINYINT(1), nullable=False),
        Column("_cdc_event_time", UtcDateTime()),
        Column("_cdc_applied_at", UtcDateTime(), nullable=False),
        schema=schema,
        comment="cdc replica of DynamoDB table Orders",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(
            insert(table).values(
                id="sp",
                item='{"Id":"sp","v":0}',
                _cdc_seq=BASE,
                _cdc_deleted=0,
                _cdc_applied_at=datetime.now(UTC),
            )
        )


def collations(engine: Engine, schema: str, table: str) -> dict[str, str | None]:
    query = text(
        "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t"
    )
    with engine.connect() as conn:
        return dict(conn.execute(query, {"s": schema, "t": table}).all())


def json_checks(engine: Engine, schema: str, table: str) -> list[str]:
    query = text(
        "SELECT CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS"
        " WHERE CONSTRAINT_SCHEMA = :s AND TABLE_NAME = :t"
    )
    with engine.connect() as conn:
        return list(conn.execute(query, {"s": schema, "t": table}).scalars())


def replicate_the_other_two(engine: Engine, schema: str) -> None:
    replicator = Replicator(engine, Settings(database_url=engine.url, schema=schema))
    result = replicator.process(
        [insert_record({"Id": key}, BASE + i, {"v": i}) for i, key in enumerate(KEYS) if i]
    )
    assert result.failed == result.dead_lettered == 0, result.summary()
    assert sorted(rows(engine, schema, "orders")) == sorted(KEYS)


EXACT = "utf8mb4_nopad_bin"


def test_cdc_migrate_upgrades_an_earlier_database(maria: tuple[Engine, str]) -> None:
    engine, schema = maria
    settings = Settings(database_url=engine.url, schema=schema)
    # GIVEN bookkeeping tables at revision 0002 and a replica table made by the old code
    command.upgrade(alembic_config(engine, settings), "0002")
    assert collations(engine, schema, "cdc_checkpoints")["stream_arn"] != EXACT
    old_replica_table(engine, schema)
    assert json_checks(engine, schema, "orders") == ["item"]
    # AND a migration interrupted after converting one table (MySQL DDL commits as it goes)
    from cdc.sql.backends.mysql import upgrade_table

    with engine.begin() as conn:
        upgrade_table(conn, schema, "cdc_checkpoints", ["stream_arn", "shard_id"], owned_only=False)

    # WHEN `cdc migrate` runs
    migrate_upgrade(engine, settings)

    # THEN every identity column compares exactly, the JSON check is gone, and the old
    # table keeps its row and takes the keys that differ by trailing spaces
    expected = {
        "cdc_dead_letters": ("fingerprint", "source_table", "target_table"),
        "cdc_checkpoints": ("stream_arn", "shard_id"),
        "cdc_tombstones": ("table_name", "key_hash"),
        "cdc_backfill_segments": ("source_table",),
        "orders": ("id",),
    }
    for table, columns in expected.items():
        found = collations(engine, schema, table)
        assert {c: found[c] for c in columns} == dict.fromkeys(columns, EXACT), table
    assert json_checks(engine, schema, "orders") == []
    with engine.connect() as conn:
        version = conn.execute(text(f"SELECT version_num FROM `{schema}`.alembic_version"))
        # cdc's head revision (0003 or a later one: the upgrade runs through 0003)
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert version.scalar_one() == head
    bookkeeping_pairs(engine, schema)
    replicate_the_other_two(engine, schema)


def test_an_earlier_replica_table_is_upgraded_on_first_use(maria: tuple[Engine, str]) -> None:
    engine, schema = maria
    # GIVEN current bookkeeping tables (no `cdc migrate` after the upgrade) and a replica
    # table made by the old code
    ensure_bookkeeping(engine, schema)
    old_replica_table(engine, schema)
    # WHEN records of keys that differ by trailing spaces arrive, THEN they are three rows
    replicate_the_other_two(engine, schema)
    assert collations(engine, schema, "orders")["id"] == EXACT
    assert json_checks(engine, schema, "orders") == []


def test_a_table_that_is_not_cdcs_is_left_alone(maria: tuple[Engine, str]) -> None:
    from cdc.sql.backends.mysql import upgrade_table

    engine, schema = maria
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE `{schema}`.theirs (id VARCHAR(10) PRIMARY KEY, doc JSON)"
                " COLLATE utf8mb4_bin"
            )
        )
        assert upgrade_table(conn, schema, "theirs") == []
    assert collations(engine, schema, "theirs")["id"] == "utf8mb4_bin"
    assert json_checks(engine, schema, "theirs") == ["doc"]


def test_cdc_migrate_finds_no_difference_after_a_first_use_upgrade(
    maria: tuple[Engine, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, schema = maria
    mapping = tmp_path / "typed.toml"
    mapping.write_text(
        '[tables.Typed]\nkeys = ["Id", "Sk"]\n\n[tables.Typed.columns]\n'
        'Id = "text"\nSk = "numeric(70,0)"\nDoc = "jsonb"\n'
    )
    settings = settings_for(engine, schema, mapping)
    # GIVEN a typed table with a text key and a key too wide for DECIMAL (kept as text)
    migrate_upgrade(engine, settings)
    result = Replicator(engine, settings).process(
        [insert_record({"Id": "a ", "Sk": 1}, BASE, {"Doc": {"x": 1}}, table="Typed")]
    )
    assert result.failed == result.dead_lettered == 0
    # WHEN `cdc migrate` runs again, THEN the key columns are what the mapping says
    capsys.readouterr()
    migrate_upgrade(engine, settings)
    assert "differs" not in capsys.readouterr().out
    found = collations(engine, schema, "typed")
    assert (found["id"], found["sk"]) == (EXACT, EXACT)


def test_a_role_that_cannot_alter_an_old_table_is_told_to_run_migrate(
    maria: tuple[Engine, str],
) -> None:
    engine, schema = maria
    ensure_bookkeeping(engine, schema)
    old_replica_table(engine, schema)
    user = f"cdc_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%'")
        conn.exec_driver_sql(
            f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `{schema}`.* TO '{user}'@'%%'"
        )
    limited = make_engine(engine.url.set(username=user, password=None, database=schema))
    try:
        # WHEN records reach the old table through a role without ALTER
        result = Replicator(limited, Settings(database_url=limited.url, schema=schema)).process(
            [insert_record({"Id": "sp "}, BASE + 1, {"v": 1})]
        )
    finally:
        limited.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
    # THEN nothing is written to the table that would merge the keys, nothing is
    # dead-lettered, and the error says what to do
    assert result.failed == 1 and result.dead_lettered == 0
    assert result.error is not None and "run `cdc migrate`" in result.error, result.error
    assert sorted(rows(engine, schema, "orders")) == ["sp"]


@pytest.mark.parametrize(
    ("scheme", "collation"),
    [("mariadb+pymysql", "utf8mb4_nopad_bin"), ("mysql+pymysql", "utf8mb4_0900_bin")],
)
def test_offline_sql_converts_the_bookkeeping_tables(
    scheme: str,
    collation: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cdc.app.cli import main

    for name in ("CDC_CONFIG", "CDC_SCHEMA", "CDC_DATABASE_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDC_DATABASE_URL", f"{scheme}://cdc@db.invalid:3306/replica")
    assert main(["migrate", "--sql"]) == 0
    sql = capsys.readouterr().out
    assert (
        "ALTER TABLE cdc_checkpoints MODIFY stream_arn VARCHAR(512) CHARACTER SET utf8mb4 "
        f"COLLATE {collation} NOT NULL;"
    ) in sql
