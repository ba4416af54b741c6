"""`cdc replay` and `cdc migrate` (README: Commands, Migrations; issue 2 "Done when").

With no configuration `cdc replay FILE...` writes to `sqlite:///cdc.db` in the current
directory, prints a summary (applied, stale, dead-lettered, failed) and exits 0, or 1
if a record failed; a file that is not an event is exit 2 with a clear message.
`cdc migrate` creates the bookkeeping tables through alembic, idempotently; `--sql`
prints the SQL without touching the database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

import cdc.app.cli
from cdc.core.jsontext import loads
from cdc.core.versions import sequence_of

EVENTS = Path(__file__).resolve().parents[1] / "events"
DEVGUIDE = "tests/events/stream-sample-devguide.json"
POWERTOOLS = "tests/events/stream-sample-powertools.json"
TABLE = "example_table_with_stream"
CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:1/x"
BOOKKEEPING = {"cdc_dead_letters", "cdc_checkpoints", "cdc_tombstones", "alembic_version"}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    return {**env, **(extra or {})}


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty directory holding tests/events/, as cwd, with no CDC_* configuration."""
    for name in list(os.environ):
        if name.startswith("CDC_"):
            monkeypatch.delenv(name)
    (tmp_path / "tests").mkdir()
    shutil.copytree(EVENTS, tmp_path / "tests" / "events")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_module(workdir: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """`python -m cdc ARGS` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        cwd=workdir,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_main(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`cdc ARGS` in this process, through `cdc.app.cli.main`."""
    capfd.readouterr()
    code = cdc.app.cli.main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


_COUNTS = re.compile(
    r"(?P<applied>\d+) applied\W+(?P<stale>\d+) stale\W+"
    r"(?P<dead_lettered>\d+) dead-lettered\W+(?P<failed>\d+) failed"
)


def counts(output: str, file: str | None = None) -> dict[str, int]:
    """The counts of the summary line (of `file`, if given)."""
    for line in output.splitlines():
        match = _COUNTS.search(line)
        if match and (file is None or file in line):
            return {k: int(v) for k, v in match.groupdict().items()}
    raise AssertionError(f"no summary line with applied/stale/dead-lettered/failed in {output!r}")


def table_contents(db: Path, table: str = TABLE) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f'select * from "{table}" order by id')]
    finally:
        conn.close()


def only_row(db: Path) -> dict[str, Any]:
    rows = table_contents(db)
    assert len(rows) == 1, rows
    row = rows[0]
    return {
        "id": Decimal(str(row["id"])),
        "item": loads(row["item"]),
        "seq": sequence_of(int(row["_cdc_seq"])),
        "deleted": bool(row["_cdc_deleted"]),
    }


# --- replay with no configuration ---------------------------------------------------------


def test_python_m_cdc_replay_devguide_writes_cdc_db(workdir: Path) -> None:
    proc = run_module(workdir, "replay", DEVGUIDE)
    assert proc.returncode == 0, proc.stderr
    assert (workdir / "cdc.db").is_file()
    assert only_row(workdir / "cdc.db") == {
        "id": Decimal(101),
        "item": {"Id": Decimal(101), "Message": "This item has changed"},
        "seq": 222,
        "deleted": False,
    }
    summary = counts(proc.stdout, DEVGUIDE)
    assert summary["failed"] == 0 and summary["dead_lettered"] == 0
    assert summary["applied"] >= 1
    assert summary["applied"] + summary["stale"] == 2


def test_main_replay_devguide_writes_cdc_db(
    workdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capfd, "replay", DEVGUIDE)
    assert code == 0, err
    assert only_row(workdir / "cdc.db")["item"] == {
        "Id": Decimal(101),
        "Message": "This item has changed",
    }
    assert counts(out, DEVGUIDE)["failed"] == 0


def test_replay_powertools_ends_soft_deleted(
    workdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capfd, "replay", POWERTOOLS)
    assert code == 0, err
    old_image = json.loads((EVENTS / "stream-sample-powertools.json").read_text())["Records"][2][
        "dynamodb"
    ]["OldImage"]
    assert old_image == {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}}
    assert only_row(workdir / "cdc.db") == {
        "id": Decimal(101),
        "item": {"Id": Decimal(101), "Message": "This item has changed"},
        "seq": 4421584500000000017450439093,
        "deleted": True,
    }
    summary = counts(out, POWERTOOLS)
    assert summary["failed"] == 0 and summary["dead_lettered"] == 0
    assert summary["applied"] + summary["stale"] == 3


@pytest.mark.parametrize("file", [DEVGUIDE, POWERTOOLS])
def test_replaying_twice_changes_nothing(
    workdir: Path, capfd: pytest.CaptureFixture[str], file: str
) -> None:
    code, _out, err = run_main(capfd, "replay", file)
    assert code == 0, err
    before = table_contents(workdir / "cdc.db")
    records = len(json.loads((workdir / file).read_text())["Records"])
    time.sleep(0.01)  # a rewrite would show in _cdc_applied_at
    code, out, err = run_main(capfd, "replay", file)
    assert code == 0, err
    assert table_contents(workdir / "cdc.db") == before  # _cdc_applied_at included
    assert counts(out, file) == {"applied": 0, "stale": records, "dead_lettered": 0, "failed": 0}


def test_replay_files_in_any_order_converges(
    workdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Both samples describe item 101 of ExampleTableWithStream; the powertools REMOVE
    has the highest sequence number (28 digits against 3), whatever the order."""
    code, out, err = run_main(capfd, "replay", POWERTOOLS, DEVGUIDE)
    assert code == 0, err
    row = only_row(workdir / "cdc.db")
    assert row["deleted"] is True
    assert row["seq"] == 4421584500000000017450439093
    assert counts(out, DEVGUIDE) == {"applied": 0, "stale": 2, "dead_lettered": 0, "failed": 0}


# --- failures -----------------------------------------------------------------------------

# `python -m cdc` exactly (runpy), with the retry backoff's sleeps skipped so an
# unreachable database fails in well under a second instead of after ~10 s of backoff.
_NO_SLEEP_MAIN = textwrap.dedent(
    """
    import runpy, sys, time
    time.sleep = lambda seconds: None
    sys.argv = ["cdc", *sys.argv[1:]]
    runpy.run_module("cdc", run_name="__main__", alter_sys=True)
    """
)


def test_failed_records_exit_1_python_m_cdc(workdir: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _NO_SLEEP_MAIN, "replay", DEVGUIDE],
        cwd=workdir,
        env=clean_env({"CDC_DATABASE_URL": CLOSED_PORT_URL}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert counts(proc.stdout, DEVGUIDE) == {
        "applied": 0,
        "stale": 0,
        "dead_lettered": 0,
        "failed": 2,
    }
    assert not (workdir / "cdc.db").exists()
    assert time.monotonic() - started < 30


def test_failed_records_exit_1_main(
    workdir: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_DATABASE_URL", CLOSED_PORT_URL)
    monkeypatch.setattr(time, "sleep", lambda _seconds: None)
    code, out, _err = run_main(capfd, "replay", POWERTOOLS, DEVGUIDE)
    assert code == 1
    assert counts(out, POWERTOOLS)["failed"] == 3
    assert counts(out, DEVGUIDE)["failed"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not json", "not JSON"),
        ("", "not JSON"),
        ('{"records": []}', "Records"),
        ('{"Records": {"a": 1}}', "Records"),
        ('[{"eventName": "INSERT"}]', "Records"),
        ("42", "Records"),
    ],
    ids=["text", "empty", "lowercase-key", "records-not-a-list", "top-level-list", "number"],
)
def test_not_an_event_file_exits_2(
    workdir: Path, capfd: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    (workdir / "bad.json").write_text(content, encoding="utf-8")
    # The good file first: nothing is written unless every file is an event.
    code, _out, err = run_main(capfd, "replay", DEVGUIDE, "bad.json")
    assert code == 2
    assert "bad.json" in err and message in err
    assert "Traceback" not in err
    assert not (workdir / "cdc.db").exists()


def test_not_an_event_file_exits_2_python_m_cdc(workdir: Path) -> None:
    (workdir / "notes.txt").write_text("hello", encoding="utf-8")
    proc = run_module(workdir, "replay", "notes.txt")
    assert proc.returncode == 2
    assert "notes.txt" in proc.stderr and "not JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workdir / "cdc.db").exists()


def test_missing_file_exits_2(workdir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_main(capfd, "replay", "no-such-file.json")
    assert code == 2
    assert "no-such-file.json" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://cdc:Sup3rS3cretPw@db.internal:notaport/cdc",
        "oracle://cdc:Sup3rS3cretPw@db.internal/cdc",
        "postgresql+nosuchdriver://cdc:Sup3rS3cretPw@db.internal/cdc",
    ],
    ids=["bad-port", "unsupported-backend", "unknown-driver"],
)
def test_bad_database_url_exits_2_naming_the_variable(
    workdir: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("CDC_DATABASE_URL", url)
    try:
        code, out, err = run_main(capfd, "replay", DEVGUIDE)
    except Exception as exc:  # report what escaped, not a bare traceback
        pytest.fail(f"`cdc replay` raised {type(exc).__name__}: {exc} instead of exiting 2")
    assert code == 2
    assert "CDC_DATABASE_URL" in err
    assert "Sup3rS3cretPw" not in out + err
    assert not (workdir / "cdc.db").exists()


# --- migrate ------------------------------------------------------------------------------


def _tables(engine: Engine, schema: str) -> set[str]:
    return set(inspect(engine).get_table_names(schema=schema))


def test_migrate_creates_bookkeeping_tables_idempotently(
    workdir: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    pg_engine: Engine,
    pg_schema: str,
) -> None:
    monkeypatch.setenv("CDC_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    assert _tables(pg_engine, pg_schema) == set()
    code, _out, err = run_main(capfd, "migrate")
    assert code == 0, err
    tables = _tables(pg_engine, pg_schema)
    assert tables >= BOOKKEEPING
    with pg_engine.connect() as conn:
        version = conn.execute(text(f'select version_num from "{pg_schema}".alembic_version')).all()
    assert len(version) == 1

    code, _out, err = run_main(capfd, "migrate")
    assert code == 0, err
    assert _tables(pg_engine, pg_schema) == tables
    with pg_engine.connect() as conn:
        again = conn.execute(text(f'select version_num from "{pg_schema}".alembic_version')).all()
    assert again == version


def test_migrate_then_replay_into_postgres(
    workdir: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    pg_engine: Engine,
    pg_schema: str,
) -> None:
    monkeypatch.setenv("CDC_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    assert run_main(capfd, "migrate")[0] == 0
    code, out, err = run_main(capfd, "replay", DEVGUIDE)
    assert code == 0, err
    assert counts(out, DEVGUIDE)["failed"] == 0
    with pg_engine.connect() as conn:
        row = conn.execute(text(f'select item::text, _cdc_seq from "{pg_schema}".{TABLE}')).one()
    assert loads(row[0]) == {"Id": Decimal(101), "Message": "This item has changed"}
    assert sequence_of(int(row[1])) == 222
    assert not (workdir / "cdc.db").exists()


def test_migrate_sql_prints_sql_without_connecting(workdir: Path) -> None:
    # The database does not exist (closed port): offline mode must not need it.
    proc = run_module(workdir, "migrate", "--sql", env={"CDC_DATABASE_URL": CLOSED_PORT_URL})
    assert proc.returncode == 0, proc.stderr
    sql = proc.stdout
    assert "CREATE TABLE" in sql.upper()
    for table in BOOKKEEPING:
        assert table in sql
    assert not (workdir / "cdc.db").exists()


def test_migrate_sql_leaves_the_database_untouched(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    pg_engine: Engine,
    pg_schema: str,
) -> None:
    proc = run_module(
        workdir,
        "migrate",
        "--sql",
        env={"CDC_DATABASE_URL": postgres_url, "CDC_SCHEMA": pg_schema},
    )
    assert proc.returncode == 0, proc.stderr
    assert "cdc_dead_letters" in proc.stdout
    assert pg_schema in proc.stdout  # the SQL targets the configured schema
    assert _tables(pg_engine, pg_schema) == set()


# --- a byte-order mark, and the raw record kept as the file has it (issue 12) --------------

BOM = b"\xef\xbb\xbf"


def dead_letter_rows(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("select * from cdc_dead_letters order by id")]
    finally:
        conn.close()


def test_replay_accepts_a_file_starting_with_a_byte_order_mark(
    workdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a sample event saved by a Windows tool: UTF-8 with a byte-order mark
    with_bom = workdir / "bom.json"
    with_bom.write_bytes(BOM + (workdir / DEVGUIDE).read_bytes())
    # WHEN it is replayed THEN it is read like the same file without the mark
    code, out, err = run_main(capfd, "replay", str(with_bom))
    assert code == 0, err
    assert counts(out, "bom.json") == {"applied": 1, "stale": 1, "dead_lettered": 0, "failed": 0}
    assert only_row(workdir / "cdc.db")["seq"] == 222


def test_replay_accepts_a_byte_order_mark_on_stdin(workdir: Path) -> None:
    # GIVEN the same event, with a byte-order mark, piped to `cdc replay -`
    data = BOM + (workdir / DEVGUIDE).read_bytes()
    # WHEN it is replayed from stdin
    proc = subprocess.run(
        [sys.executable, "-m", "cdc", "replay", "-"],
        cwd=workdir,
        env=clean_env({"PYTHONIOENCODING": "latin-1"}),  # stdin is read as bytes
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )
    # THEN it is applied
    assert proc.returncode == 0, proc.stderr
    assert counts(proc.stdout.decode()) == {
        "applied": 1,
        "stale": 1,
        "dead_lettered": 0,
        "failed": 0,
    }
    assert only_row(workdir / "cdc.db")["seq"] == 222


def test_replay_of_a_file_that_is_not_utf8_is_a_clear_error(workdir: Path) -> None:
    # GIVEN an event file in UTF-16 (as some editors save JSON)
    utf16 = workdir / "utf16.json"
    utf16.write_bytes((workdir / DEVGUIDE).read_text().encode("utf-16"))
    # WHEN it is replayed THEN one line says so, exit 2, no traceback
    proc = run_module(workdir, "replay", str(utf16))
    assert proc.returncode == 2, proc.stderr
    assert "is not UTF-8 text" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_dead_letter_keeps_the_numbers_of_the_file_as_written(
    workdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an event whose record has numbers a float cannot keep as written: an
    # event time of 1e400 (infinite as a float, so the record is malformed) and 1.10
    text = (workdir / DEVGUIDE).read_text()
    event = json.loads(text)
    record = event["Records"][0]
    record["dynamodb"]["ApproximateCreationDateTime"] = "__TIME__"
    record["dynamodb"]["SizeBytes"] = "__SIZE__"
    raw = json.dumps(event).replace('"__TIME__"', "1e400").replace('"__SIZE__"', "1.10")
    path = workdir / "numbers.json"
    path.write_text(raw, encoding="utf-8")
    # WHEN it is replayed
    code, out, err = run_main(capfd, "replay", str(path))
    # THEN the record is dead-lettered, and its raw record has the numbers as the file
    # has them: 1e400 (not null) and 1.10 (not 1.1)
    assert code == 0, err
    assert counts(out)["dead_lettered"] == 1
    (letter,) = dead_letter_rows(workdir / "cdc.db")
    assert '"ApproximateCreationDateTime":1e400' in letter["raw_record"]
    assert '"SizeBytes":1.10' in letter["raw_record"]
    kept = json.loads(letter["raw_record"])
    assert kept["dynamodb"]["ApproximateCreationDateTime"] == float("inf")
    assert kept["eventSourceARN"] == record["eventSourceARN"]
