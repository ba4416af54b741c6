"""Migration 0006_kinesis on a database made by the previous revision, holding data:
Kinesis positions fit afterwards, nothing is lost, and running it again is a no-op
(PostgreSQL, MariaDB, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select

from cdc.sql.bookkeeping import tables
from cdc.sql.migrations import alembic_config, upgrade
from tests.every_database import EVERY_DATABASE, Database, open_database

POSITION = "49590338271490256608559692538361571095921575989136588898"  # 56 digits


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def test_upgrade_from_0003_keeps_the_data_and_fits_kinesis_positions(database: Database) -> None:
    # GIVEN a database at revision 0003 with a dead letter and a checkpoint
    config = alembic_config(database.engine, database.settings)
    command.upgrade(config, "0003")
    now = datetime.now(UTC)
    letters = tables(database.schema)["cdc_dead_letters"]
    checkpoints = tables(database.schema)["cdc_checkpoints"]
    with database.engine.begin() as conn:
        conn.execute(
            letters.insert().values(
                fingerprint="f" * 64,
                status="pending",
                sequence_number="1" * 40,
                error_class="malformed",
                error_message="m",
                raw_record="{}",
                attempts=1,
                first_failed_at=now,
                last_failed_at=now,
            )
        )
        conn.execute(
            checkpoints.insert().values(
                stream_arn="arn:aws:dynamodb:eu-central-1:123456789012:table/T/stream/L",
                shard_id="",
                last_sequence=123,
                records_applied=1,
                records_stale=0,
                records_dead_lettered=0,
                updated_at=now,
            )
        )
    # WHEN cdc migrates it (twice: the second run finds nothing to do)
    assert upgrade(database.engine, database.settings) == []
    assert upgrade(database.engine, database.settings) == []
    # THEN the rows are kept, a 56-digit position fits, and the new table exists
    with database.engine.begin() as conn:
        assert conn.execute(select(letters.c.sequence_number)).scalar_one() == "1" * 40
        conn.execute(letters.update().values(sequence_number=POSITION))
        assert conn.execute(select(letters.c.sequence_number)).scalar_one() == POSITION
        conn.execute(checkpoints.update().values(last_position=POSITION))
        row = conn.execute(select(checkpoints.c.last_sequence, checkpoints.c.last_position)).one()
    assert (int(row[0]), row[1]) == (123, POSITION)
    assert "cdc_replica_sources" in inspect(database.engine).get_table_names(schema=database.schema)
