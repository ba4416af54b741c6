"""`cdc replay` of saved Kinesis events, as a user runs it (`python -m cdc` in a fresh
process, no configuration: it writes `sqlite:///cdc.db`), then `cdc dlq` on what it
dead-lettered (README: Kinesis Data Streams)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[1] / "events"


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rows(workdir: Path, query: str) -> list[Any]:
    with sqlite3.connect(workdir / "cdc.db") as conn:
        return conn.execute(query).fetchall()


def test_replay_of_the_real_sample(tmp_path: Path) -> None:
    done = run(tmp_path, "replay", str(EVENTS / "kinesis-sample-businfo.json"))
    assert done.returncode == 0, done.stderr
    assert "1 applied" in done.stdout or '"applied": 1' in done.stdout, done.stdout
    (row,) = rows(tmp_path, "select route_id, timestamp, item, _cdc_seq from dynamodb_businfo")
    assert row[0] == "222000076" and row[1] == "1649930048"
    assert json.loads(row[2])["PlateNo"] == "경기74아3844"
    assert int(row[3]) == 1649930048474000


def test_replay_in_any_order_converges_with_binary_values(tmp_path: Path) -> None:
    event = json.loads((EVENTS / "kinesis_binary_out_of_order.json").read_text())
    reversed_file = tmp_path / "reversed.json"
    reversed_file.write_text(json.dumps({"Records": event["Records"][::-1]}))
    for path in (str(EVENTS / "kinesis_binary_out_of_order.json"), str(reversed_file)):
        done = run(tmp_path, "replay", path)
        assert done.returncode == 0, done.stderr
    found = {
        digest: (json.loads(item), bool(deleted), int(seq))
        for digest, item, deleted, seq in rows(
            tmp_path, "select digest, item, _cdc_deleted, _cdc_seq from attachments"
        )
    }
    assert found[bytes([0x12, 0x02, 0x08, 0x7B])] == (
        {"Digest": "EgIIew==", "Blob": "AQ==", "Name": "second"},
        False,
        1_700_000_000_123_457,
    )
    assert found[b"\x01"][1] is True  # the TTL expiry deleted it


def test_a_replayed_tie_is_dead_lettered_and_listed(tmp_path: Path) -> None:
    done = run(tmp_path, "replay", str(EVENTS / "kinesis_millisecond_tie.json"))
    assert done.returncode == 0, done.stderr
    assert rows(tmp_path, "select order_id from orders") == [("ord-2",)]
    letters = rows(tmp_path, "select error_class, sequence_number from cdc_dead_letters")
    assert {c for c, _ in letters} == {"tie"}
    assert all(len(s) == 56 for _, s in letters)  # the Kinesis positions, whole
    listed = run(tmp_path, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "tie" in listed.stdout


def test_switching_a_table_from_streams_to_kinesis_as_the_readme_says(tmp_path: Path) -> None:
    # GIVEN Orders replicated from DynamoDB Streams
    streams = run(tmp_path, "replay", str(EVENTS / "duplicate_records.json"))
    assert streams.returncode == 0, streams.stderr
    # WHEN Kinesis records of Orders arrive: refused, naming both sources and the way out
    kinesis = run(tmp_path, "replay", str(EVENTS / "kinesis_millisecond_tie.json"))
    assert kinesis.returncode == 0, kinesis.stderr
    letters = rows(tmp_path, "select error_class, error_message from cdc_dead_letters")
    assert {c for c, _ in letters} == {"source_mix"}
    assert all("Switching sources" in m for _, m in letters)
    assert ("ord-2",) not in rows(tmp_path, "select order_id from orders")
    # WHEN the way out is followed: forget the source, drop the replica, redrive
    with sqlite3.connect(tmp_path / "cdc.db") as conn:
        conn.execute("delete from cdc_replica_sources where source_table = 'Orders'")
        conn.execute("drop table orders")
    redrive = run(tmp_path, "dlq", "redrive", "--all", "--table", "Orders")
    # THEN the Kinesis records apply (ord-1's tie is now found, and dead-lettered as such)
    assert rows(tmp_path, "select order_id from orders") == [("ord-2",)], redrive.stdout
    assert rows(tmp_path, "select source from cdc_replica_sources") == [("kinesis",)]
    pending = rows(
        tmp_path, "select error_class, keys from cdc_dead_letters where status = 'pending'"
    )
    assert "tie" in {c for c, _ in pending}
    assert all("ord-1" in keys for _, keys in pending)  # ord-2's letter is resolved
