"""Lazy values (cdc/sql/writer.py `Settling`, cdc/core/mapping.py
`TableSpec.materialize`), against a real PostgreSQL and MariaDB/MySQL (the `db`
fixture), and SQLite where it is cheap.

Row values are built chunk by chunk while the batch is written (on PostgreSQL chunk k+1
is built while the server applies chunk k). The result must be exactly that of decoding
every record first:

- a key whose newest version cannot be built gets its next-newest valid one; every
  unbuildable version is dead-lettered, superseded ones too, never counted stale; a key
  with no valid version is not written;
- batches of thousands of records spanning several PostgreSQL chunks, with unbuildable
  records, multi-version keys, image-less deletes and rows the database rejects (in late
  chunks), in document and typed mode, end in the newest valid version per key computed
  here without cdc; applied + stale + dead-lettered = records, and the checkpoints agree;
- a redelivery changes nothing and adds no dead letter; a shuffled replay converges;
- a connection killed before the 2nd or 3rd chunk's upsert: retried, converged.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, select

from cdc.config import Settings
from cdc.core.outcomes import BatchResult
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.databases import DATABASES, TestDatabase, open_database
from tests.factories import insert, modify, remove, stream_arn
from tests.integration.test_dead_letters import (
    CHECK_VIOLATION,
    SETUP_ID,
    create_checked_orders,
    dead_letters,
    deadline,
    replica,
    seq_of,
    settings_from_toml,
)
from tests.integration.test_faults import Killer, checkpoints

pytestmark = pytest.mark.postgres

BASE = 10**20  # sequence numbers are 21-40 digit decimal strings
NO_FAILURES = {"batchItemFailures": []}
# (a value no image may hold, the dead letter's error class), used in turn
SPOILERS = [
    ({"N": "12abc"}, "decode"),
    ({"BOOL": "yes"}, "decode"),
    ({"S": "a\x00b"}, "nul"),  # the default nul = "reject"
    ({"B": "not base64!"}, "decode"),
]


# --- helpers -------------------------------------------------------------------------


def spoil(rec: dict[str, Any], turn: int = 0) -> dict[str, Any]:
    """Make `rec`'s image unbuildable: attribute `bad` gets a malformed value."""
    where = "OldImage" if rec["eventName"] == "REMOVE" else "NewImage"
    rec["dynamodb"][where]["bad"] = SPOILERS[turn % len(SPOILERS)][0]
    return rec


def spoiled_as(rec: dict[str, Any], turn: int) -> tuple[str, str]:
    """(error class, attribute path) the dead letter of `spoil(rec, turn)` must show."""
    where = "OldImage" if rec["eventName"] == "REMOVE" else "NewImage"
    return SPOILERS[turn % len(SPOILERS)][1], f"{where}.bad"


def counts(result: BatchResult) -> tuple[int, int, int, int]:
    return result.applied, result.stale, result.dead_lettered, result.failed


def letters_by_seq(engine: Engine, schema: str | None, table: str) -> dict[str, dict[str, Any]]:
    arn = stream_arn(table)
    return {d["sequence_number"]: d for d in dead_letters(engine, schema) if d["stream_arn"] == arn}


def checkpoint(engine: Engine, schema: str | None, table: str) -> tuple[int, int, int]:
    """(records applied, stale, dead-lettered) of `table`'s stream, over every batch."""
    rows = [c for c in checkpoints(engine, schema) if c["stream_arn"] == stream_arn(table)]
    return (
        sum(c["records_applied"] for c in rows),
        sum(c["records_stale"] for c in rows),
        sum(c["records_dead_lettered"] for c in rows),
    )


def minus(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


@pytest.fixture(params=DATABASES)
def anydb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """Every database under test (SQLite with schema None) for the small tests."""
    yield from open_database(request, tmp_path)


@pytest.fixture
def upserts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements sent to psycopg (the Postgres path sends its chunk upserts there
    directly, in pipeline mode)."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counted(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and query.startswith("INSERT INTO "):
            sent.append(query)
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    return sent


def chunk_upserts(sent: list[str], schema: str, table: str) -> int:
    return sum(1 for s in sent if s.startswith(f"INSERT INTO {schema}.{table} "))


# --- 1. the newest version unbuildable: the next-newest valid one is applied ------------


def test_unbuildable_newest_versions_fall_back_to_the_next_newest_valid_one(
    anydb: TestDatabase,
) -> None:
    db = anydb
    replicator = db.replicator()
    # GIVEN stored rows for keys c and f
    stored = [insert({"Id": k}, BASE + n, {"v": "stored"}) for k, n in (("c", 1), ("f", 50))]
    assert counts(replicator.process(stored, deadline())) == (2, 0, 0, 0)
    # AND a batch, versions scattered, where the newest version of a is unbuildable; the
    # newest two of b (a MODIFY, a REMOVE with a bad OldImage); every version of c; the
    # newest of e, whose two valid ones arrive oldest last; the newest of f, whose valid
    # one is older than the stored row
    a1, a2 = insert({"Id": "a"}, BASE + 10, {"v": "a1"}), modify({"Id": "a"}, BASE + 11)
    b1 = insert({"Id": "b"}, BASE + 20, {"v": "b1"})
    b2 = modify({"Id": "b"}, BASE + 21, {"v": "b2"})
    b3 = remove({"Id": "b"}, BASE + 22, {"v": "b3"})
    c2 = modify({"Id": "c"}, BASE + 30, {"v": "c2"})
    c3 = modify({"Id": "c"}, BASE + 31, {"v": "c3"})
    e1, e2 = insert({"Id": "e"}, BASE + 40, {"v": "e1"}), modify({"Id": "e"}, BASE + 41)
    e3 = modify({"Id": "e"}, BASE + 42, {"v": "e3"})
    f1, f2 = insert({"Id": "f"}, BASE + 45, {"v": "f1"}), modify({"Id": "f"}, BASE + 55)
    spoiled = (a2, b2, b3, c2, c3, e3, f2)
    bad = {seq_of(spoil(r, t)): spoiled_as(r, t) for t, r in enumerate(spoiled)}
    batch = [a2, e3, b3, f1, c3, a1, e1, b2, c2, f2, b1, e2]

    # WHEN it is processed
    result = replicator.process(batch, deadline())

    # THEN a, b and e hold their newest valid versions, c and f the rows stored before;
    # e1 lost to e2 and f1 to the stored row (stale)
    assert result.response() == NO_FAILURES
    assert counts(result) == (3, 2, 7, 0)
    assert replica(db.engine, db.schema, "orders") == {
        "a": (BASE + 10, False, {"Id": "a", "v": "a1"}),
        "b": (BASE + 20, False, {"Id": "b", "v": "b1"}),
        "c": (BASE + 1, False, {"Id": "c", "v": "stored"}),
        "e": (BASE + 41, False, {"Id": "e"}),
        "f": (BASE + 50, False, {"Id": "f", "v": "stored"}),
    }
    # AND each unbuildable version is dead-lettered, naming the attribute
    letters = letters_by_seq(db.engine, db.schema, "Orders")
    assert set(letters) == set(bad)
    for rec in spoiled:
        letter = letters[seq_of(rec)]
        error_class, path = bad[seq_of(rec)]
        assert letter["error_class"] == error_class, letter
        assert path in letter["error_message"], letter
        assert letter["attempts"] == 1
        assert json.loads(letter["keys"]) == {"Id": rec["dynamodb"]["Keys"]["Id"]["S"]}
        assert letter["target_table"].endswith("orders")
    assert checkpoint(db.engine, db.schema, "Orders") == (5, 2, 7)


# --- 2. superseded unbuildable versions are dead letters, not stale ---------------------


def test_superseded_unbuildable_versions_are_dead_lettered_while_the_newest_applies(
    anydb: TestDatabase,
) -> None:
    db = anydb
    # GIVEN a batch where a's older version is unbuildable; b's middle one is (delivered
    # twice); c's older REMOVE has a bad OldImage; d's first is, and its newest is a
    # REMOVE without an image
    a1, a2 = insert({"Id": "a"}, BASE + 10, {"v": "a1"}), modify({"Id": "a"}, BASE + 11)
    b1 = insert({"Id": "b"}, BASE + 20, {"v": "b1"})
    b2 = modify({"Id": "b"}, BASE + 21, {"v": "b2"})
    b3 = modify({"Id": "b"}, BASE + 22, {"v": "b3"})
    c1 = remove({"Id": "c"}, BASE + 30, {"v": "c1"})
    c2 = insert({"Id": "c"}, BASE + 31, {"v": "c2"})
    d1 = insert({"Id": "d"}, BASE + 40, {"v": "d1"})
    d2, d3 = modify({"Id": "d"}, BASE + 41, {"v": "d2"}), remove({"Id": "d"}, BASE + 42)
    bad = {seq_of(spoil(r, t)): spoiled_as(r, t) for t, r in enumerate((a1, b2, c1, d1))}
    batch = [b3, a1, d3, b2, c2, a2, d2, c1, b1, b2, d1]

    # WHEN it is processed
    result = db.replicator().process(batch, deadline())

    # THEN the newest version of each key applies; b1 and d2 lost to valid newer ones
    # (stale); the four unbuildable records (b2 twice) are dead-lettered, not stale
    assert result.response() == NO_FAILURES
    assert counts(result) == (4, 2, 5, 0)
    assert replica(db.engine, db.schema, "orders") == {
        "a": (BASE + 11, False, {"Id": "a"}),
        "b": (BASE + 22, False, {"Id": "b", "v": "b3"}),
        "c": (BASE + 31, False, {"Id": "c", "v": "c2"}),
        "d": (BASE + 42, True, None),
    }
    letters = letters_by_seq(db.engine, db.schema, "Orders")
    assert set(letters) == set(bad)  # one dead letter for the record delivered twice
    for seq, (error_class, path) in bad.items():
        assert letters[seq]["error_class"] == error_class
        assert path in letters[seq]["error_message"]
    assert checkpoint(db.engine, db.schema, "Orders") == (4, 2, 5)


# --- 3. large batches over several chunks -----------------------------------------------

FIRST_ID = 2000  # keys 2000…: clear of create_checked_orders' row and forbidden ids
# Each key's records, oldest first: I(nsert), M(odify), R(emove with OldImage),
# D(elete without image); lower case: its image is unbuildable.
PATTERNS = ("I", "IMm", "Im", "Imm", "im", "iM", "ID", "IR", "Mr", "ImD")


@dataclass
class Batch:
    records: list[dict[str, Any]]
    spoiled: dict[str, tuple[str, str]]  # sequence → (error class, attribute path)

    @property
    def arn(self) -> str:
        return str(self.records[0]["eventSourceARN"])

    def counts_in(self, result: BatchResult) -> tuple[int, ...]:
        """(records, applied, stale, dead-lettered, failed) of this batch's table."""
        s = result.by_table[(self.arn, self.arn.split("/")[1])]
        return s.records, s.applied, s.stale, s.dead_lettered, s.failed


def make_batch(
    keys: int, table: str = "Orders", poison: frozenset[int] = frozenset(), seed: int = 7
) -> Batch:
    """~2.2 records per key, shuffled, so a key's versions straddle the whole batch;
    key i follows PATTERNS[i % 10]; keys in `poison` carry an item the CHECK refuses."""
    records, spoiled = [], {}
    for i in range(keys):
        key = {"Id": FIRST_ID + i}
        for j, letter in enumerate(PATTERNS[i % len(PATTERNS)]):
            seq = BASE + 10**6 + 10 * i + j
            item: dict[str, Any] = {"v": f"{i}.{j}", "n": i * j}
            if i in poison:
                item["poison"] = "yes"
            kind = letter.upper()
            if kind in "IM":
                rec = (insert if kind == "I" else modify)(key, seq, item, table=table)
            else:
                rec = remove(key, seq, item if kind == "R" else None, table=table)
            if letter.islower():
                spoiled[seq_of(spoil(rec, i + j))] = spoiled_as(rec, i + j)
            records.append(rec)
    random.Random(seed).shuffle(records)
    return Batch(records, spoiled)


def setup_rows(db: TestDatabase, keys: int, table: str = "Orders") -> None:
    """Every third key stored before the batch, at a lower sequence."""
    stored = [
        insert({"Id": FIRST_ID + i}, BASE + i, {"v": f"stored {i}"}, table=table)
        for i in range(0, keys, 3)
    ]
    assert db.replicator().process(stored, deadline()).response() == NO_FAILURES


def plain(image: dict[str, Any]) -> dict[str, Any]:
    """The plain JSON of an image of S and N (integer) attributes, without cdc."""
    return {k: int(v["N"]) if "N" in v else v["S"] for k, v in image.items()}


def expect(
    batch: Batch, before: dict[str, Any], rejected: frozenset[int] = frozenset()
) -> tuple[dict[str, Any], int, set[str]]:
    """What decoding every record first gives: (replica state, rows applied, dead-lettered
    sequences): per key its newest valid version, unless the database refuses it (every
    version in a batch is newer than the rows `setup_rows` stored)."""
    newest: dict[str, dict[str, Any]] = {}
    for rec in batch.records:
        key = rec["dynamodb"]["Keys"]["Id"]["N"]
        if seq_of(rec) not in batch.spoiled and (
            key not in newest or int(seq_of(rec)) > int(seq_of(newest[key]))
        ):
            newest[key] = rec
    state, dead, applied = dict(before), set(batch.spoiled), 0
    for key, rec in newest.items():
        if int(key) - FIRST_ID in rejected:
            dead.add(seq_of(rec))
            continue
        deleted = rec["eventName"] == "REMOVE"
        image = rec["dynamodb"].get("OldImage" if deleted else "NewImage")
        item = plain(image) if image is not None else state.get(key, (0, False, None))[2]
        state[key] = (int(seq_of(rec)), deleted, item)
        applied += 1
    return state, applied, dead


def check_outcome(
    db: TestDatabase, batch: Batch, before: dict[str, Any], result: BatchResult, **kw: Any
) -> tuple[int, int, int]:
    """The replica, the counts and the dead letters are what `expect` says; returns the
    expected (applied, stale, dead-lettered)."""
    state, applied, dead = expect(batch, before, **kw)
    assert result.response() == NO_FAILURES, result.error
    assert replica(db.engine, db.schema, "orders") == state
    expected = (applied, len(batch.records) - applied - len(dead), len(dead))
    assert counts(result) == (*expected, 0)
    assert batch.counts_in(result) == (len(batch.records), *expected, 0)
    letters = letters_by_seq(db.engine, db.schema, "Orders")
    assert set(letters) == dead
    for seq, (error_class, path) in batch.spoiled.items():
        assert letters[seq]["error_class"] == error_class, letters[seq]
        assert path in letters[seq]["error_message"], letters[seq]
    return expected


def test_large_mixed_batch_over_several_chunks_applies_the_newest_valid_versions(
    db: TestDatabase, upserts: list[str]
) -> None:
    # GIVEN stored rows for every third key, and a batch of ~2,200 records over 1,000 keys
    # (5 PostgreSQL chunks) with unbuildable records in every chunk, keys of up to three
    # versions, image-less and imaged soft deletes
    setup_rows(db, 1000)
    before = replica(db.engine, db.schema, "orders")
    progress = checkpoint(db.engine, db.schema, "Orders")
    batch = make_batch(1000)
    assert len(batch.records) == 2200 and len(batch.spoiled) == 900
    upserts.clear()

    # WHEN it is processed
    result = db.replicator().process(batch.records, deadline())

    # THEN it ends as decoding every record first would have
    expected = check_outcome(db, batch, before, result)
    assert minus(checkpoint(db.engine, db.schema, "Orders"), progress) == expected
    (row,) = [c for c in checkpoints(db.engine, db.schema) if c["stream_arn"] == batch.arn]
    assert sequence_of(int(row["last_sequence"])) == max(int(seq_of(r)) for r in batch.records)
    if db.name == "postgresql":  # 5 chunk upserts, and the image-less deletes
        assert chunk_upserts(upserts, db.schema, "orders") == 6


def test_rows_the_database_rejects_in_late_chunks_are_isolated(db: TestDatabase) -> None:
    # GIVEN a replica table whose CHECK refuses items with a `poison` attribute, stored
    # rows, and a large batch where keys in the 4th and 5th chunks carry poison (two of
    # them in the fallback of an unbuildable newest version)
    create_checked_orders(db)
    setup_rows(db, 1000)
    before = replica(db.engine, db.schema, "orders")
    progress = checkpoint(db.engine, db.schema, "Orders")
    poison = frozenset({702, 952, 960})
    batch = make_batch(1000, poison=poison, seed=11)

    # WHEN it is processed
    result = db.replicator().process(batch.records, deadline())

    # THEN the refused rows are dead letters, everything else as decoding first gives
    expected = check_outcome(db, batch, before, result, rejected=poison)
    assert minus(checkpoint(db.engine, db.schema, "Orders"), progress) == expected
    letters = letters_by_seq(db.engine, db.schema, "Orders")
    refused = [d for s, d in letters.items() if s not in batch.spoiled]
    assert len(refused) == 3
    for letter in refused:
        assert CHECK_VIOLATION[db.name] in letter["error_class"]
        assert "item_has_no_poison" in letter["error_message"]
    assert replica(db.engine, db.schema, "orders")[str(SETUP_ID)][0] == BASE + SETUP_ID


TYPED = """
[tables.Things]
keys = ["Id"]
[tables.Things.columns]
Id = "text"
Name = { type = "text", required = true }
Qty = "integer"
Price = "numeric(12,2)"
"""


def thing(i: int, seq: int, qty: str = "1", price: str = "1.50", event: str = "INSERT") -> Any:
    keys = {"Id": f"k{i:04d}"}
    rec = (insert if event == "INSERT" else modify)(keys, BASE + seq, table="Things")
    rec["dynamodb"]["NewImage"].update(
        Name={"S": f"name {i}.{seq}"}, Qty={"N": qty}, Price={"N": price}
    )
    return rec


def test_typed_table_over_several_chunks_with_conversion_failures(
    db: TestDatabase, tmp_path: Path, upserts: list[str]
) -> None:
    # GIVEN a typed mapping, and a batch of 1,000 keys (5 PostgreSQL chunks), every 5th
    # key modified, where a value does not fit its column: in the newest version of k0300
    # (its insert applies instead), in k0700's superseded insert, in every version of k0850
    settings = settings_from_toml(db.engine, db.schema, tmp_path / "cdc.toml", TYPED)
    records = [thing(i, 10 * i, qty=str(i)) for i in range(1000)]
    records += [thing(i, 10 * i + 1, qty=str(-i), event="MODIFY") for i in range(0, 1000, 5)]
    records[300] = thing(300, 3000, qty=str(300), price="2.25")
    records[700] = thing(700, 7000, price="1.005")  # three decimal places
    records[850] = thing(850, 8500, qty="2147483648")  # over integer
    records[1000 + 300 // 5] = thing(300, 3001, qty="2147483648", event="MODIFY")
    records[1000 + 850 // 5] = thing(850, 8501, qty="1.5", event="MODIFY")
    random.Random(3).shuffle(records)
    bad = {str(BASE + s) for s in (3001, 7000, 8500, 8501)}

    # WHEN it is processed
    result = Replicator(db.engine, settings).process(records, deadline())

    # THEN each key holds its newest convertible version, k0850 nothing
    assert result.response() == NO_FAILURES, result.error
    assert counts(result) == (999, len(records) - 999 - 4, 4, 0)
    want = {
        f"k{i:04d}": (BASE + 10 * i + 1, -i) if i % 5 == 0 else (BASE + 10 * i, i)
        for i in range(1000)
    }
    want["k0300"] = (BASE + 3000, 300)
    del want["k0850"]
    things = db.table("things")
    with db.engine.connect() as conn:
        rows = conn.execute(select(things)).mappings().all()
    assert {r["id"]: (sequence_of(int(r["_cdc_seq"])), r["qty"]) for r in rows} == want
    assert {r["id"]: r["name"] for r in rows} == {
        k: f"name {int(k[1:])}.{seq - BASE}" for k, (seq, _) in want.items()
    }
    prices = {r["id"]: r["price"] for r in rows}
    assert prices["k0300"] == Decimal("2.25")
    assert set(prices.values()) == {Decimal("1.50"), Decimal("2.25")}
    letters = letters_by_seq(db.engine, db.schema, "Things")
    assert set(letters) == bad
    assert {d["error_class"] for d in letters.values()} == {"conversion"}
    assert "'qty'" in letters[str(BASE + 3001)]["error_message"]
    assert "'price'" in letters[str(BASE + 7000)]["error_message"]
    if db.name == "postgresql":
        assert chunk_upserts(upserts, db.schema, "things") == 5


# --- 4. redelivery and a shuffled replay ----------------------------------------------


def test_redelivered_and_shuffled_large_batches_change_nothing_more(db: TestDatabase) -> None:
    # GIVEN a large mixed batch, applied once
    setup_rows(db, 1000)
    before = replica(db.engine, db.schema, "orders")
    batch = make_batch(1000)
    replicator = db.replicator()
    expected = check_outcome(db, batch, before, replicator.process(batch.records, deadline()))
    rows = sorted(db.rows("orders"), key=lambda r: r["id"])
    letters = dead_letters(db.engine, db.schema)
    progress = checkpoint(db.engine, db.schema, "Orders")

    # WHEN Lambda delivers it again
    again = replicator.process(batch.records, deadline())

    # THEN nothing changes: every valid record is stale, every bad one re-seen
    applied, stale, dead = expected
    assert again.response() == NO_FAILURES
    assert counts(again) == (0, applied + stale, dead, 0)
    assert sorted(db.rows("orders"), key=lambda r: r["id"]) == rows
    seen = dead_letters(db.engine, db.schema)
    assert [d["id"] for d in seen] == [d["id"] for d in letters]  # no duplicate letters
    assert {d["attempts"] for d in seen} == {2}
    assert minus(checkpoint(db.engine, db.schema, "Orders"), progress) == (0, applied + stale, dead)

    # WHEN the same records reach a fresh table, shuffled anew, in one batch with a third
    # delivery of the first
    setup_rows(db, 1000, table="Replayed")
    replay = make_batch(1000, table="Replayed")
    records = replay.records + batch.records
    random.Random(99).shuffle(records)
    result = db.replicator().process(records, deadline())

    # THEN the fresh table converges to the same rows and dead letters, counted the same;
    # the first table still changes nothing
    assert result.response() == NO_FAILURES
    assert replay.counts_in(result) == (len(replay.records), *expected, 0)
    assert batch.counts_in(result) == (len(batch.records), 0, applied + stale, dead, 0)
    assert replica(db.engine, db.schema, "replayed") == replica(db.engine, db.schema, "orders")
    assert set(letters_by_seq(db.engine, db.schema, "Replayed")) == set(
        letters_by_seq(db.engine, db.schema, "Orders")
    )
    assert sorted(db.rows("orders"), key=lambda r: r["id"]) == rows


# --- 5. the connection killed between chunks (PostgreSQL) -----------------------------


@pytest.fixture
def own_engine(pg_engine: Engine) -> Iterator[Engine]:
    engine = make_engine(pg_engine.url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("nth", [2, 3])
def test_connection_killed_before_a_later_chunk_upsert_is_retried_and_converges(
    pg_engine: Engine,
    own_engine: Engine,
    pg_settings: Settings,
    pg_schema: str,
    nth: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = TestDatabase("postgresql", own_engine, pg_schema)
    # GIVEN stored rows, a large mixed batch, and a listener that terminates the batch's
    # backend (from another session) just before the nth chunk's upsert is sent
    setup_rows(db, 1000)
    before = replica(pg_engine, pg_schema, "orders")
    progress = checkpoint(pg_engine, pg_schema, "Orders")
    batch = make_batch(1000, seed=5)
    killer = Killer(pg_engine)
    sent: list[int] = []
    execute = psycopg.Cursor.execute

    def killing(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and query.startswith(f"INSERT INTO {pg_schema}.orders "):
            sent.append(1)
            if len(sent) == nth and not killer.fired:
                killer.kill(cursor.connection.info.backend_pid)
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", killing)

    # WHEN it is processed
    result = Replicator(own_engine, pg_settings).process(batch.records, deadline())

    # THEN the backend was killed once, the batch retried whole, nothing reported
    assert killer.fired == 1 and killer.terminated == [True]
    assert len(sent) == nth + 6  # the killed attempt's upserts, then all 6 again
    assert result.error is None
    # AND the replica, dead letters (one attempt each) and checkpoints are as if the
    # batch had run once
    expected = check_outcome(db, batch, before, result)
    assert {d["attempts"] for d in dead_letters(pg_engine, pg_schema)} == {1}
    assert minus(checkpoint(pg_engine, pg_schema, "Orders"), progress) == expected
