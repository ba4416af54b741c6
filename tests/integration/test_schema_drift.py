"""The database as it is, against what the mapping promises (issue 12, items 2 and 4).

- A typed table whose live columns cannot hold what the mapping promises (a narrower
  numeric, a shorter text, a smaller integer, a missing column, another type) is not
  written: its records are reported (a configuration problem, not the records'), the
  message names table, column, both types and the fix; other tables are applied;
  `cdc dlq redrive` leaves such letters pending; `cdc migrate` fails, naming each
  difference once.
- An existing table cdc did not make, or one of cdc's bookkeeping names, is a name
  collision for that source's records only: dead letters naming both tables.

On PostgreSQL, MariaDB (MySQL) and SQLite."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.app.cli import main
from cdc.config import Settings, load_settings
from cdc.core.errors import ConfigError
from cdc.core.outcomes import Outcome
from cdc.jobs.replicate import Replicator
from cdc.sql.drift import Capacity, capacity, holds
from tests.factories import insert
from tests.places import Place, place_fixture  # noqa: F401

pytestmark = pytest.mark.postgres
BASE = 10**20


def mapping(tmp_path: Path, columns: str, name: str = "mapping.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'[tables.Things]\nkeys = ["Id"]\n\n[tables.Things.columns]\nId = "text"\n{columns}\n',
        encoding="utf-8",
    )
    return path


def settings(place: Place, config: Path) -> Settings:
    return load_settings(place.env(config))


def thing(seq: int, **attrs: Any) -> dict[str, Any]:
    return insert({"Id": "a"}, BASE + seq, attrs, table="Things")


def other(seq: int) -> dict[str, Any]:
    return insert({"Id": seq}, BASE + seq, {"Note": "fine"}, table="Others")


def plain(place: Place) -> Settings:
    return Settings(database_url=place.engine.url, schema=place.schema)


def dead_letters(place: Place) -> list[dict[str, Any]]:
    return place.rows("cdc_dead_letters") if "cdc_dead_letters" in place.tables() else []


def env_for(monkeypatch: pytest.MonkeyPatch, place: Place, config: Path) -> None:
    for name, value in place.env(config).items():
        monkeypatch.setenv(name, value)


# --- item 2: a typed table the database holds differently ----------------------------------


def test_a_narrower_numeric_column_is_never_rounded(place: Place, tmp_path: Path) -> None:
    """The issue's repro: numeric(12,2) made, the mapping now says numeric(12,3)."""
    Replicator(place.engine, settings(place, mapping(tmp_path, 'V = "numeric(12,2)"'))).process(
        [other(1)]
    )
    first = Replicator(place.engine, settings(place, mapping(tmp_path, 'V = "numeric(12,2)"')))
    assert first.process([thing(1, V=0)]).applied == 1  # the table exists, as (12,2)

    replicator = Replicator(place.engine, settings(place, mapping(tmp_path, 'V = "numeric(12,3)"')))
    rec = thing(2, V=Decimal("12.345"))
    result = replicator.process([rec, other(2)])
    if place.name == "sqlite":
        # SQLite keeps exact numbers as canonical text: nothing to narrow, nothing rounded.
        assert result.outcomes == [Outcome.SETTLED, Outcome.SETTLED]
        assert [str(r["v"]) for r in place.rows("things")] == ["12.345"]
        return
    assert result.outcomes == [Outcome.FAILED, Outcome.SETTLED]
    assert result.dead_lettered == 0 and dead_letters(place) == []
    narrow, wide = (
        ("NUMERIC(12, 2)", "NUMERIC(12, 3)")
        if place.name == "postgresql"
        else ("DECIMAL(12, 2)", "DECIMAL(12, 3)")
    )
    assert result.error is not None
    for part in (place.qualified("things"), "'v'", narrow, wide, "cdc migrate", "never rounded"):
        assert part in result.error, result.error
    assert [str(r["v"]) for r in place.rows("things")] == ["0.00"]  # untouched
    assert len(place.rows("others")) == 2  # the other table's records were applied

    # Once the database holds what the mapping says, the same replicator applies it.
    place.execute(
        "alter table {t}things alter column v type numeric(12,3)"
        if place.name == "postgresql"
        else "alter table {t}things modify v decimal(12,3)"
    )
    again = replicator.process([rec, other(3)])
    assert again.outcomes == [Outcome.SETTLED, Outcome.SETTLED], again.error
    assert [str(r["v"]) for r in place.rows("things")] == ["12.345"]


def test_a_column_of_another_type_or_missing_is_not_written(place: Place, tmp_path: Path) -> None:
    """`Code` was a bigint and is now text; `Coupon` is new and not migrated. A text
    "007" in an integer column would be 7 on SQLite and MariaDB."""
    made = Replicator(place.engine, settings(place, mapping(tmp_path, 'Code = "bigint"')))
    assert made.process([thing(1, Code=7)]).applied == 1

    changed = settings(place, mapping(tmp_path, 'Code = "text"\nCoupon = "text"'))
    result = Replicator(place.engine, changed).process([thing(2, Code="007"), other(2)])

    assert result.outcomes == [Outcome.FAILED, Outcome.SETTLED]
    assert dead_letters(place) == []
    assert result.error is not None
    assert "column 'code' is" in result.error and "'coupon'" in result.error
    assert "missing" in result.error
    assert [int(r["code"]) for r in place.rows("things")] == [7]


def test_redrive_leaves_a_letter_pending_while_the_column_would_round_it(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue: `cdc dlq redrive` applied 12.345 as 12.35 and marked the letter
    resolved, after which it could never be redriven."""
    env_for(monkeypatch, place, mapping(tmp_path, 'V = "numeric(12,2)"'))
    assert main(["replay", _event_file(tmp_path, thing(1, V=Decimal("12.345")))]) == 0
    capsys.readouterr()
    letters = dead_letters(place)
    assert [(r["status"], r["error_class"]) for r in letters] == [("pending", "conversion")]

    env_for(monkeypatch, place, mapping(tmp_path, 'V = "numeric(12,3)"'))  # not migrated
    code = main(["dlq", "redrive", "--all"])
    output = capsys.readouterr()
    if place.name == "sqlite":  # exact text: nothing can be rounded
        assert code == 0, output
        assert [r["status"] for r in dead_letters(place)] == ["resolved"]
        assert [str(r["v"]) for r in place.rows("things")] == ["12.345"]
        return
    assert code == 1, output
    assert "1 not committed" in output.out and "cdc migrate" in output.out
    assert [r["status"] for r in dead_letters(place)] == ["pending"]
    assert place.rows("things") == []


def _event_file(tmp_path: Path, *records: dict[str, Any]) -> str:
    import json

    path = tmp_path / "event.json"
    path.write_text(json.dumps({"Records": list(records)}), encoding="utf-8")
    return str(path)


def test_migrate_fails_and_names_each_difference_once(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_for(monkeypatch, place, mapping(tmp_path, 'V = "numeric(12,2)"'))
    assert main(["migrate"]) == 0
    capsys.readouterr()
    env_for(monkeypatch, place, mapping(tmp_path, 'V = "numeric(12,3)"\nCoupon = "text"'))

    code = main(["migrate"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 1, text
    assert "differs from the mapping in" in out.err
    assert text.count("coupon") == 1 and "Column(" not in text and "modify_type" not in text
    lines = [line.strip() for line in out.err.splitlines() if line.startswith("  ")]
    table = f"table {place.qualified('things')}"
    assert any(line.startswith(f"{table}: column coupon") for line in lines), lines
    if place.name != "sqlite":  # SQLite stores exact numbers as text: no difference
        narrow, wide = ("NUMERIC", "NUMERIC") if place.name == "postgresql" else ("DECIMAL",) * 2
        assert (
            f"{table}: column v is {narrow}(12, 2) in the database, {wide}(12, 3) in the mapping"
            in lines
        )
    assert text.count("\n  table ") == len(lines)


# --- capacities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "actual", "expected", "fits"),
    [
        ("postgresql", "NUMERIC(12, 2)", "NUMERIC(12, 3)", False),  # a decimal fewer
        ("postgresql", "NUMERIC(12, 3)", "NUMERIC(12, 2)", False),  # a digit fewer before
        ("postgresql", "NUMERIC(13, 3)", "NUMERIC(12, 2)", True),
        ("postgresql", "NUMERIC", "NUMERIC(12, 2)", True),  # unconstrained
        ("postgresql", "NUMERIC(38, 0)", "NUMERIC", False),
        ("postgresql", "VARCHAR(20)", "TEXT", False),
        ("postgresql", "TEXT", "VARCHAR(20)", True),
        ("postgresql", "INTEGER", "BIGINT", False),
        ("postgresql", "BIGINT", "SMALLINT", True),
        ("postgresql", "REAL", "DOUBLE PRECISION", False),
        ("postgresql", "TEXT", "BIGINT", False),
        ("postgresql", "TIMESTAMP WITHOUT TIME ZONE", "TIMESTAMP WITH TIME ZONE", False),
        ("postgresql", "TIMESTAMP(3) WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE", False),
        ("postgresql", "TIMESTAMP(6) WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE", True),
        ("postgresql", "CHARACTER VARYING(20)", "VARCHAR(20)", True),
        ("postgresql", "TEXT[]", "TEXT[]", True),
        ("postgresql", "VARCHAR(5)[]", "TEXT[]", False),
        ("mysql", "DECIMAL(12, 2)", "DECIMAL(12, 3)", False),
        ("mysql", "VARCHAR(100) COLLATE utf8mb4_bin", "VARCHAR(384)", False),
        ("mysql", "VARCHAR(384) COLLATE utf8mb4_nopad_bin", "VARCHAR(384)", True),
        ("mysql", "TEXT", "LONGTEXT", False),
        ("mysql", "LONGTEXT", "JSON", True),  # MariaDB's JSON
        ("mysql", "MEDIUMTEXT", "JSON", False),
        ("mysql", "INTEGER(11)", "BIGINT", False),
        ("mysql", "BIGINT(20) UNSIGNED", "BIGINT", False),
        ("mysql", "TINYINT(1)", "BOOL", True),
        ("mysql", "DATETIME", "DATETIME(6)", False),  # microseconds cut
        ("mysql", "FLOAT", "DOUBLE", False),
        ("mysql", "BLOB", "LONGBLOB", False),
        ("sqlite", "INTEGER", "TEXT", False),  # "007" would become 7
        ("sqlite", "VARCHAR(3)", "TEXT", True),  # SQLite enforces no length
        ("sqlite", "BIGINT", "SMALLINT", True),
        ("sqlite", "NUMERIC(12, 2)", "TEXT", False),
    ],
)
def test_what_a_column_can_hold(dialect: str, actual: str, expected: str, fits: bool) -> None:
    assert holds(capacity(actual, dialect), capacity(expected, dialect)) is fits


def test_capacity_reads_types_it_does_not_know_as_their_own_family() -> None:
    assert capacity("GEOMETRY", "postgresql") == Capacity("GEOMETRY", None, 0)
    assert not holds(capacity("GEOMETRY", "postgresql"), capacity("TEXT", "postgresql"))


# --- item 4: tables cdc did not make, and its own names -----------------------------------


def test_a_table_cdc_did_not_make_is_a_collision_for_its_source_only(place: Place) -> None:
    """The issue's repro: `user_accounts (id bigint primary key, note text)` exists; a
    record of `UserAccounts` was adopted into it and failed the whole batch for ever."""
    place.execute("create table {t}user_accounts (id bigint primary key, note text)")
    replicator = Replicator(place.engine, plain(place))
    mine = insert({"Id": 1}, BASE + 1, {"Name": "x"}, table="UserAccounts")

    for attempt in (1, 2):  # the next batch too: dead-lettered, never systemic
        result = replicator.process([mine, other(attempt)])
        assert result.outcomes == [Outcome.DEAD_LETTERED, Outcome.SETTLED], result.error
    (letter,) = dead_letters(place)
    assert letter["error_class"] == "name_collision"
    assert "'UserAccounts'" in letter["error_message"]
    assert place.qualified("user_accounts") in letter["error_message"]
    assert "not a cdc replica" in letter["error_message"]
    assert place.rows("user_accounts") == []
    assert set(place.columns("user_accounts")) == {"id", "note"}
    assert len(place.rows("others")) == 2


@pytest.mark.parametrize(
    ("source", "keys"),
    [
        ("cdc_dead_letters", {"id": 1}),
        ("CdcCheckpoints", {"StreamArn": "s", "ShardId": "x"}),
        ("CdcTombstones", {"TableName": "t", "KeyHash": "h"}),
        ("cdc_backfill_segments", {"SourceTable": "t", "Segment": 0}),
        ("alembic_version", {"VersionNum": "0001"}),
        ("CdcFuture", {"Id": 1}),  # any cdc_* name, made or not yet
    ],
)
def test_bookkeeping_names_are_reserved(place: Place, source: str, keys: dict[str, Any]) -> None:
    replicator = Replicator(place.engine, plain(place))
    assert replicator.process([other(1)]).applied == 1  # the bookkeeping tables exist
    before = {name: place.columns(name) for name in place.tables()}

    result = replicator.process([insert(keys, BASE + 2, {"Note": "x"}, table=source), other(2)])

    assert result.outcomes == [Outcome.DEAD_LETTERED, Outcome.SETTLED], result.error
    (letter,) = dead_letters(place)
    assert letter["error_class"] == "name_collision"
    assert repr(source) in letter["error_message"] and "reserves" in letter["error_message"]
    assert {name: place.columns(name) for name in place.tables()} == before
    # Only checkpoints in cdc_checkpoints: one per stream, the colliding one's included.
    streams = sorted(r["stream_arn"].split("/")[1] for r in place.rows("cdc_checkpoints"))
    assert streams == sorted(["Others", source])


def test_a_mapping_cannot_name_a_bookkeeping_table(place: Place, tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(
        '[tables.Things]\ntable = "cdc_checkpoints"\nkeys = ["Id"]\n\n'
        '[tables.Things.columns]\nId = "text"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"\[tables.Things\].*'cdc_checkpoints'.*reserves"):
        Replicator(place.engine, settings(place, path))


def test_replicas_of_earlier_versions_keep_working(place: Place, tmp_path: Path) -> None:
    """Document and typed replicas made before (the source comment, cdc's columns)
    are cdc's own: adopted, not collisions."""
    config = mapping(tmp_path, 'V = "numeric(12,2)"')
    first = Replicator(place.engine, settings(place, config)).process([other(1), thing(1, V=1)])
    assert first.applied == 2
    again = Replicator(place.engine, settings(place, config)).process([other(2), thing(2, V=2)])
    assert again.outcomes == [Outcome.SETTLED, Outcome.SETTLED] and again.applied == 2
    assert dead_letters(place) == []


# What reflection sends: PostgreSQL's catalogs, MySQL's SHOW and information_schema,
# SQLite's PRAGMA and sqlite_master.
CATALOG = (
    "pg_catalog",
    "pg_class",
    "information_schema",
    "show ",
    "describe ",
    "pragma",
    "sqlite_",
)


def test_a_table_is_looked_at_once_per_process(place: Place, tmp_path: Path) -> None:
    """The check costs catalog queries on a table's first use only."""
    from sqlalchemy import event

    replicator = Replicator(place.engine, settings(place, mapping(tmp_path, 'V = "bigint"')))
    assert replicator.process([thing(1, V=1), other(1)]).applied == 2
    catalog: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        lowered = statement.lower()
        if any(word in lowered for word in CATALOG):
            catalog.append(statement)

    event.listen(place.engine, "before_cursor_execute", seen)
    try:
        result = replicator.process([thing(2, V=2), other(2)])
    finally:
        event.remove(place.engine, "before_cursor_execute", seen)
    assert result.applied == 2
    assert catalog == []
