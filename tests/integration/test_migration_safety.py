"""cdc's own migrations are safe to interrupt at any statement and to run again
(issue 12, item 5). MySQL and MariaDB commit each DDL statement on its own: a first run
cut short used to leave `cdc_dead_letters` made and `alembic_version` empty, and every
later run failed with "1050 Table 'cdc_dead_letters' already exists", for good.

On PostgreSQL and SQLite the same interruptions must change nothing either."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, event, inspect

from cdc.app.cli import main
from cdc.config import Settings, parse_database_url
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from cdc.sql.migrations import alembic_config, upgrade
from tests.factories import insert
from tests.places import Place, place_fixture  # noqa: F401

pytestmark = pytest.mark.postgres
BASE = 10**20
BOOKKEEPING = {
    "alembic_version",
    "cdc_dead_letters",
    "cdc_checkpoints",
    "cdc_tombstones",
    "cdc_backfill_segments",
}
DDL = re.compile(r"\s*(CREATE|DROP|ALTER|INSERT INTO \S*alembic_version|UPDATE \S*alembic_version)")


def cdc_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def settings_of(place: Place, engine: Engine | None = None) -> Settings:
    return Settings(database_url=(engine or place.engine).url, schema=place.schema)


def own_engine(place: Place) -> Engine:
    return make_engine(parse_database_url(place.url, "test"))


def shape(place: Place) -> dict[str, Any]:
    """Tables with their columns, keys and indexes; the revisions stamped."""
    inspector = inspect(place.engine)
    found: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names(schema=place.schema)):
        found[table] = (
            sorted(place.columns(table).items()),
            inspector.get_pk_constraint(table, schema=place.schema)["constrained_columns"],
            sorted(str(i["name"]) for i in inspector.get_indexes(table, schema=place.schema)),
        )
    found["revisions"] = place.revisions() if "alembic_version" in found else set()
    return found


def drop_everything(place: Place) -> None:
    metadata = MetaData()
    metadata.reflect(place.engine, schema=place.schema)
    metadata.drop_all(place.engine)


def test_a_first_run_cut_short_is_finished_by_the_next_invocation(
    place: Place, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's repro: `alembic_version` empty, a half-made `cdc_dead_letters`."""
    place.execute("create table {t}alembic_version (version_num varchar(32) primary key)")
    place.execute("create table {t}cdc_dead_letters (id bigint primary key)")

    rec = insert({"Id": 1}, BASE + 1, {"Name": "one"}, table="Things")
    result = Replicator(place.engine, settings_of(place)).process([rec])

    assert (result.failed, result.applied, result.error) == (0, 1, None)
    assert place.tables() >= BOOKKEEPING
    assert {"fingerprint", "raw_record", "error_class"} <= set(place.columns("cdc_dead_letters"))
    assert place.revisions() == cdc_heads()
    for name, value in place.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CDC_CONFIG", raising=False)
    assert main(["migrate"]) == 0, capsys.readouterr()


def test_a_migration_interrupted_at_any_statement_runs_again(place: Place) -> None:
    engine = own_engine(place)
    try:
        upgrade(engine, settings_of(place, engine))
        reference = shape(place)
        interrupted = 0
        for stop_at in range(1, 100):
            drop_everything(place)
            if not _upgrade_stopping_at(engine, settings_of(place, engine), stop_at):
                break  # the run got through: every statement has been a stopping point
            interrupted += 1
            upgrade(engine, settings_of(place, engine))  # the next run
            assert shape(place) == reference, f"interrupted before DDL statement {stop_at}"
        assert interrupted >= 8  # every table, index and version stamp of 0001 and 0002
    finally:
        engine.dispose()


def _upgrade_stopping_at(engine: Engine, settings: Settings, stop_at: int) -> bool:
    """Run the migrations, the connection "lost" before the `stop_at`-th DDL statement.
    True if it was."""
    seen = 0

    def lose_connection(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal seen
        if DDL.match(statement.upper()):
            seen += 1
            if seen == stop_at:
                raise ConnectionResetError("connection lost (injected by the test)")

    event.listen(engine, "before_cursor_execute", lose_connection)
    try:
        upgrade(engine, settings)
    except Exception as exc:
        error: BaseException = exc
    else:
        return False
    finally:
        event.remove(engine, "before_cursor_execute", lose_connection)
        engine.dispose()  # a real lost connection ends its session (and its locks)
    assert "injected by the test" in repr(error) + repr(error.__context__), error
    return True


def test_a_table_in_the_way_that_holds_rows_stops_the_migration_clearly(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    place.execute("create table {t}cdc_dead_letters (id bigint primary key, note text)")
    place.execute("insert into {t}cdc_dead_letters (id, note) values (1, 'keep me')")
    for name, value in place.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CDC_CONFIG", raising=False)

    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "cdc_dead_letters" in err and "holds rows" in err and "will not drop it" in err
    assert place.rows("cdc_dead_letters") == [{"id": 1, "note": "keep me"}]
