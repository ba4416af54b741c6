"""`cdc dlq list | show | redrive` (issue 3; README: Failure handling), against a real PostgreSQL.

The command runs in-process through `cdc.app.cli.main`, configured the way a user configures
it: CDC_DATABASE_URL, CDC_SCHEMA and a CDC_CONFIG TOML file.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from cdc.app.cli import main
from cdc.config import load_settings
from cdc.core.deadline import Deadline
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from tests.factories import FakeContext, insert, modify

pytestmark = pytest.mark.postgres

BASE = 10**20


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Letters:
    """The dead letters seeded for a test, by what they are."""

    nul_1: int  # Orders Id 1: U+0000 in `note` (fixable with nul = "strip")
    nul_2: int  # Orders Id 2: idem
    bool_3: int  # Customers Id 3: {"BOOL": "yes"} (not fixable by configuration)
    malformed_4: int  # an UPSERT event: malformed


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pg_engine: Engine,
    pg_schema: str,
    tmp_path: Path,
) -> Callable[..., Run]:
    """Run `cdc ARGS...` in-process against the test's schema; returns code and output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    monkeypatch.delenv("CDC_CONFIG", raising=False)

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def fix_orders_nul(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fix the cause of the nul dead letters: let the Orders table strip U+0000."""
    path = tmp_path / "cdc.toml"
    path.write_text('[tables.Orders]\nnul = "strip"\n', encoding="utf-8")
    monkeypatch.setenv("CDC_CONFIG", str(path))


def process(records: list[Any]) -> Any:
    """Apply a batch the way the service does, with the environment's settings."""
    settings = load_settings()
    from cdc.sql.engines import make_engine

    assert settings.database_url is not None
    engine = make_engine(settings.database_url)
    try:
        return Replicator(engine, settings).process(
            records, Deadline.from_context(FakeContext(30_000))
        )
    finally:
        engine.dispose()


def rows(engine: Engine, schema: str) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(text(f'select * from "{schema}".cdc_dead_letters order by id'))
        return {r["id"]: dict(r) for r in found.mappings()}


def orders(engine: Engine, schema: str) -> dict[str, tuple[int, dict[str, Any]]]:
    with engine.connect() as conn:
        found = conn.execute(text(f'select id::text, _cdc_seq, item::text from "{schema}".orders'))
        return {r[0]: (sequence_of(int(r[1])), json.loads(r[2])) for r in found}


NUL_1 = insert({"Id": 1}, BASE + 1, {"note": "a\x00b"})
NUL_2 = insert({"Id": 2}, BASE + 2, {"note": "c\x00d"})
BOOL_3 = insert({"Id": 3}, BASE + 3, {"flag": True}, table="Customers")
BOOL_3["dynamodb"]["NewImage"]["flag"] = {"BOOL": "yes"}
MALFORMED_4 = insert({"Id": 4}, BASE + 4)
MALFORMED_4["eventName"] = "UPSERT"
GOOD = insert({"Id": 9}, BASE + 9, {"note": "fine"})


@pytest.fixture
def letters(cli: Callable[..., Run], pg_engine: Engine, pg_schema: str) -> Letters:
    """GIVEN four dead letters (two nul on Orders, a decode error on Customers, a
    malformed record) left by a batch whose good record was applied."""
    result = process([NUL_1, GOOD, NUL_2, BOOL_3, MALFORMED_4])
    assert result.response() == {"batchItemFailures": []}
    by_seq = {r["sequence_number"]: i for i, r in rows(pg_engine, pg_schema).items()}
    by_raw = {r["raw_record"]: i for i, r in rows(pg_engine, pg_schema).items()}
    malformed = [i for raw, i in by_raw.items() if json.loads(raw) == MALFORMED_4]
    assert len(by_seq) == 4
    assert len(malformed) == 1
    return Letters(
        nul_1=by_seq[str(BASE + 1)],
        nul_2=by_seq[str(BASE + 2)],
        bool_3=by_seq[str(BASE + 3)],
        malformed_4=malformed[0],
    )


def listed_ids(output: str) -> list[int]:
    """IDs at the start of the table's lines (the header line has none)."""
    ids = []
    for line in output.splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if first.isdigit():
            ids.append(int(first))
    return ids


def line_of(output: str, letter_id: int) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.split(maxsplit=1)[:1] == [str(letter_id)]]
    return line


# --- list -----------------------------------------------------------------------------


def test_list_shows_pending_dead_letters_with_their_reason(
    cli: Callable[..., Run], letters: Letters
) -> None:
    # WHEN `cdc dlq list` runs
    run = cli("dlq", "list")
    # THEN it lists the four pending letters under a header, each with its table, status,
    # attempts and error class and message
    assert run.code == 0, run.err
    header = run.out.splitlines()[0]
    for column in ("ID", "STATUS", "TABLE", "ERROR"):
        assert column in header
    assert listed_ids(run.out) == sorted(
        [letters.nul_1, letters.nul_2, letters.bool_3, letters.malformed_4]
    )
    nul = line_of(run.out, letters.nul_1)
    assert "pending" in nul
    assert "Orders" in nul
    assert "nul" in nul
    assert "U+0000" in nul
    assert "Customers" in line_of(run.out, letters.bool_3)
    assert "decode" in line_of(run.out, letters.bool_3)
    assert "UPSERT" in line_of(run.out, letters.malformed_4)


def test_list_filters_by_table_time_and_status(
    cli: Callable[..., Run], letters: Letters, pg_engine: Engine, pg_schema: str
) -> None:
    # GIVEN one letter that last failed three days ago
    with pg_engine.begin() as conn:
        conn.execute(
            text(
                f'update "{pg_schema}".cdc_dead_letters '
                "set first_failed_at = now() - interval '3 days', "
                "last_failed_at = now() - interval '3 days' where id = :id"
            ),
            {"id": letters.nul_2},
        )
    everything = sorted([letters.nul_1, letters.nul_2, letters.bool_3, letters.malformed_4])

    # WHEN / THEN --table keeps that source table's letters only
    assert listed_ids(cli("dlq", "list", "--table", "Customers").out) == [letters.bool_3]
    assert listed_ids(cli("dlq", "list", "--table", "Orders").out) == sorted(
        [letters.nul_1, letters.nul_2, letters.malformed_4]
    )
    # AND --since keeps the letters that failed within that time
    assert letters.nul_2 not in listed_ids(cli("dlq", "list", "--since", "24h").out)
    assert listed_ids(cli("dlq", "list", "--since", "24h").out) == sorted(
        [letters.nul_1, letters.bool_3, letters.malformed_4]
    )
    assert listed_ids(cli("dlq", "list", "--since", "4d").out) == everything
    # AND filters combine
    assert listed_ids(cli("dlq", "list", "--table", "Orders", "--since", "24h").out) == sorted(
        [letters.nul_1, letters.malformed_4]
    )
    # AND --status selects resolved letters (none yet: said so plainly) or all
    none = cli("dlq", "list", "--status", "resolved")
    assert none.code == 0
    assert listed_ids(none.out) == []
    assert "no dead letters" in none.out
    assert listed_ids(cli("dlq", "list", "--status", "all").out) == everything
    # AND a table with no letters says so instead of printing an empty table
    empty = cli("dlq", "list", "--table", "Nothing")
    assert empty.code == 0
    assert "no dead letters" in empty.out


def test_list_json_is_one_object_per_line(cli: Callable[..., Run], letters: Letters) -> None:
    # WHEN `cdc dlq list --json --table Orders` runs
    run = cli("dlq", "list", "--json", "--table", "Orders")
    # THEN every line is one JSON object describing one letter
    assert run.code == 0, run.err
    objects = [json.loads(line) for line in run.out.splitlines() if line.strip()]
    assert sorted(o["id"] for o in objects) == sorted(
        [letters.nul_1, letters.nul_2, letters.malformed_4]
    )
    nul = next(o for o in objects if o["id"] == letters.nul_1)
    assert nul["status"] == "pending"
    assert nul["source_table"] == "Orders"
    assert nul["sequence_number"] == str(BASE + 1)
    assert nul["error_class"] == "nul"
    assert "NewImage.note" in nul["error_message"]
    assert nul["attempts"] == 1
    assert isinstance(nul["last_failed_at"], str)
    assert nul["last_failed_at"][:2] == "20"
    # the keys are an object, as in the record, not JSON text inside JSON
    assert nul["keys"] == {"Id": 1}
    malformed = next(o for o in objects if o["id"] == letters.malformed_4)
    assert malformed["keys"] is None


def display_width(text: str) -> int:
    """Columns a terminal gives `text` (wide CJK two, combining marks none)."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def test_list_columns_line_up_whatever_the_keys(cli: Callable[..., Run], letters: Letters) -> None:
    # GIVEN letters whose keys take two columns a character (CJK), none (a combining
    # accent), or hold a tab
    wide = [
        insert({"City": "東京タワー"}, BASE + 11, {"note": "x\x00"}, table="Places"),
        insert({"City": "Cafe\u0301"}, BASE + 12, {"note": "y\x00"}, table="Places"),
        insert({"City": "tab\there"}, BASE + 13, {"note": "z\x00"}, table="Places"),
    ]
    assert process(wide).dead_lettered == 3
    # WHEN they are listed
    lines = cli("dlq", "list").out.splitlines()
    # THEN every column starts where its header does, on the screen
    header = lines[0]
    for column in ("STATUS", "TABLE", "KEYS", "LAST FAILED", "ERROR"):
        start = display_width(header[: header.index(column)])
        for line in lines[1:]:
            words = line.split("  ")
            assert "\t" not in line
            before = {
                "STATUS": "pending",
                "TABLE": "Places" if "City" in line else None,
                "KEYS": '{"City"' if "City" in line else None,
                "LAST FAILED": "20",
                "ERROR": "nul: " if "City" in line else None,
            }[column]
            if before is None:
                continue
            assert before in line, (column, line)
            assert display_width(line[: line.index(before)]) == start, (column, line, words)


# --- show -----------------------------------------------------------------------------


def test_show_prints_one_letter_with_its_raw_record(
    cli: Callable[..., Run], letters: Letters
) -> None:
    # WHEN `cdc dlq show ID` runs
    run = cli("dlq", "show", str(letters.nul_1))
    # THEN it shows the letter's fields and the raw record as delivered
    assert run.code == 0, run.err
    assert "NewImage.note" in run.out
    assert "U+0000" in run.out
    assert str(BASE + 1) in run.out
    assert NUL_1["eventSourceARN"] in run.out
    assert "pending" in run.out
    raw = run.out[run.out.index("raw_record") :]
    raw = raw[raw.index("{") :]
    assert json.loads(raw) == NUL_1


def test_show_unknown_id_is_a_clear_error(cli: Callable[..., Run], letters: Letters) -> None:
    # WHEN `cdc dlq show` names an id that does not exist
    run = cli("dlq", "show", "999999")
    # THEN exit code 2 and a message naming it, no traceback
    assert run.code == 2
    assert "999999" in run.err
    assert "Traceback" not in run.err + run.out


# --- redrive --------------------------------------------------------------------------


def test_redrive_before_the_fix_keeps_the_letter_pending(
    cli: Callable[..., Run], letters: Letters, pg_engine: Engine, pg_schema: str
) -> None:
    # WHEN a letter whose cause is not fixed is redriven
    run = cli("dlq", "redrive", str(letters.nul_1))
    # THEN it fails again: a non-zero exit, still pending, one more attempt, no new row
    assert run.code == 1
    assert "failed again" in run.out or "1 failed" in run.out
    after = rows(pg_engine, pg_schema)
    assert len(after) == 4
    assert after[letters.nul_1]["status"] == "pending"
    assert after[letters.nul_1]["attempts"] == 2
    assert after[letters.nul_1]["resolved_at"] is None
    assert "1" not in orders(pg_engine, pg_schema)


def test_redrive_after_the_fix_applies_and_marks_resolved(
    cli: Callable[..., Run],
    letters: Letters,
    pg_engine: Engine,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # GIVEN the cause fixed: Orders now strips U+0000 (CDC_CONFIG)
    fix_orders_nul(monkeypatch, tmp_path)
    before = rows(pg_engine, pg_schema)

    # WHEN the letter is redriven
    run = cli("dlq", "redrive", str(letters.nul_1))

    # THEN it is applied through the normal path and reported as resolved
    assert run.code == 0, run.out + run.err
    assert "1 resolved" in run.out
    assert orders(pg_engine, pg_schema)["1"] == (BASE + 1, {"Id": 1, "note": "ab"})
    # AND the letter is kept, marked resolved with a time; the others are untouched
    after = rows(pg_engine, pg_schema)
    assert set(after) == set(before)
    assert after[letters.nul_1]["status"] == "resolved"
    assert after[letters.nul_1]["resolved_at"] is not None
    for other in (letters.nul_2, letters.bool_3, letters.malformed_4):
        assert after[other] == before[other]
    # AND it now lists as resolved, not pending
    assert letters.nul_1 not in listed_ids(cli("dlq", "list").out)
    assert listed_ids(cli("dlq", "list", "--status", "resolved").out) == [letters.nul_1]


def test_redrive_of_an_older_letter_keeps_the_newer_row(
    cli: Callable[..., Run],
    letters: Letters,
    pg_engine: Engine,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # GIVEN a newer change of Orders Id 2 applied after its letter was written
    newer = modify({"Id": 2}, BASE + 50, {"note": "newer"})
    assert process([newer]).response() == {"batchItemFailures": []}
    fix_orders_nul(monkeypatch, tmp_path)

    # WHEN the older letter is redriven
    run = cli("dlq", "redrive", str(letters.nul_2))

    # THEN the sequence guard keeps the newer row, and the letter is resolved all the same
    assert run.code == 0, run.out + run.err
    assert orders(pg_engine, pg_schema)["2"] == (BASE + 50, {"Id": 2, "note": "newer"})
    letter = rows(pg_engine, pg_schema)[letters.nul_2]
    assert letter["status"] == "resolved"
    assert letter["resolved_at"] is not None


def test_redrive_all_resolves_what_applies_and_keeps_the_rest_pending(
    cli: Callable[..., Run],
    letters: Letters,
    pg_engine: Engine,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # GIVEN the nul cause fixed, the other two causes not
    fix_orders_nul(monkeypatch, tmp_path)

    # WHEN every pending letter is redriven
    run = cli("dlq", "redrive", "--all")

    # THEN the two nul letters are resolved and applied; the two others fail again, stay
    # pending with one more attempt; the exit code says not everything was resolved
    assert run.code == 1
    assert "redrove 4" in run.out
    assert "2 resolved" in run.out
    after = rows(pg_engine, pg_schema)
    assert len(after) == 4
    assert {i for i, r in after.items() if r["status"] == "resolved"} == {
        letters.nul_1,
        letters.nul_2,
    }
    assert after[letters.bool_3]["status"] == "pending"
    assert after[letters.bool_3]["attempts"] == 2
    assert after[letters.malformed_4]["status"] == "pending"
    assert after[letters.malformed_4]["attempts"] == 2
    assert set(orders(pg_engine, pg_schema)) == {"1", "2", "9"}

    # WHEN redriven again with --all
    again = cli("dlq", "redrive", "--all", "--table", "Orders")
    # THEN resolved letters are not redriven a second time
    assert "redrove 1" in again.out
    assert rows(pg_engine, pg_schema)[letters.nul_1]["attempts"] == 1


def test_redrive_all_with_table_redrives_that_table_only(
    cli: Callable[..., Run], letters: Letters, pg_engine: Engine, pg_schema: str
) -> None:
    # WHEN `redrive --all --table Customers` runs
    run = cli("dlq", "redrive", "--all", "--table", "Customers")
    # THEN only the Customers letter was tried
    assert "redrove 1" in run.out
    after = rows(pg_engine, pg_schema)
    assert after[letters.bool_3]["attempts"] == 2
    assert {after[i]["attempts"] for i in (letters.nul_1, letters.nul_2, letters.malformed_4)} == {
        1
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["redrive", "999999"], "999999"),
        (["redrive"], "--all"),
        (["redrive", "--all", "1"], "--all"),
    ],
    ids=["unknown id", "nothing named", "both ids and --all"],
)
def test_redrive_usage_errors_exit_2_with_a_message(
    cli: Callable[..., Run],
    letters: Letters,
    pg_engine: Engine,
    pg_schema: str,
    args: list[str],
    fragment: str,
) -> None:
    before = rows(pg_engine, pg_schema)
    # WHEN redrive is asked for something it cannot do
    run = cli("dlq", *args)
    # THEN exit code 2, a message saying why, and nothing touched
    assert run.code == 2
    assert fragment in run.err
    assert "Traceback" not in run.err
    assert rows(pg_engine, pg_schema) == before
