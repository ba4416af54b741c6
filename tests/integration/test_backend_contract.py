"""The backend contract: what every registered backend must do, run on each database
under test (the `database` fixture: CDC_TEST_DATABASES, by default every backend in
cdc/sql/backends/registry.py). A new backend passes this file before anything else.

The sequence guard and its counts (applied, stale), sequence numbers compared as
integers (9 < 10, 40 digits), keys compared exactly (case, trailing spaces), soft and
hard deletes with tombstones, U+0000 by the table's `nul` option, identifiers cut to
the backend's limit.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import inspect

from cdc.config import load_settings
from cdc.core.mapping import TableOptions
from cdc.core.naming import fit, snake
from cdc.core.versions import sequence_of
from tests.databases import Database
from tests.factories import event, insert, modify, remove
from tests.integration.test_mariadb_exact_keys import assert_keys_kept_apart

BASE = 10**20  # sequence numbers are 21-40 digit decimal strings
NO_FAILURES = {"batchItemFailures": []}


def test_guarded_upsert_counts_and_final_state(database):
    # GIVEN a batch with an insert, a newer modify and a duplicate of the modify
    replicator = database.replicator()
    records = [
        insert({"Id": 1}, 10, {"v": "a"}),
        modify({"Id": 1}, 11, {"v": "b"}),
        modify({"Id": 2}, 5, {"v": "z"}),
    ]
    # WHEN it is applied twice
    first = replicator.process(records)
    second = replicator.process(records)
    # THEN the first time applies one row per key, the second finds everything stale
    assert (first.applied, first.stale, first.failed) == (2, 1, 0)
    assert (second.applied, second.stale, second.failed) == (0, 3, 0)
    rows = {str(r["id"]): r for r in database.rows("orders")}
    assert json.loads(rows["1"]["item"]) == {"Id": 1, "v": "b"}
    assert sequence_of(int(rows["1"]["_cdc_seq"])) == 11


def test_older_record_arriving_late_is_stale(database):
    replicator = database.replicator()
    replicator.process([modify({"Id": 1}, 20, {"v": "new"})])
    result = replicator.process([insert({"Id": 1}, 19, {"v": "old"})])
    assert (result.applied, result.stale) == (0, 1)
    (row,) = database.rows("orders")
    assert json.loads(row["item"])["v"] == "new"


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        (9, 10),  # "9" > "10" as text
        (10**21 - 1, 10**21),  # 21 digits < 22 digits
        (10**39 - 1, 10**39),  # 39 digits < 40 digits
        (10**40 - 3, 10**40 - 2),  # the widest: the next is 40 nines
    ],
)
def test_sequence_numbers_compare_as_integers(database, older, newer):
    # GIVEN a row at sequence `newer`
    replicator = database.replicator()
    replicator.process([insert({"Id": 1}, newer, {"v": "newer"})])
    # WHEN a version at `older` arrives, then the same `newer` again
    late = replicator.process([insert({"Id": 1}, older, {"v": "older"})])
    again = replicator.process([modify({"Id": 1}, newer, {"v": "replayed"})])
    # THEN both are stale, and the row keeps its newest version and sequence exactly
    assert (late.applied, late.stale, again.applied, again.stale) == (0, 1, 0, 1)
    (row,) = database.rows("orders")
    assert json.loads(row["item"])["v"] == "newer"
    assert sequence_of(int(row["_cdc_seq"])) == newer  # the version's sequence part
    # AND a version one above is applied
    assert replicator.process([modify({"Id": 1}, newer + 1, {"v": "next"})]).applied == 1


def test_soft_delete_is_not_resurrected_by_older_insert(database):
    replicator = database.replicator()
    replicator.process(
        event(insert({"Id": 1}, 1, {"v": "a"}), remove({"Id": 1}, 3, {"v": "a"}))["Records"]
    )
    replicator.process([modify({"Id": 1}, 2, {"v": "b"})])
    (row,) = database.rows("orders")
    assert row["_cdc_deleted"] in (True, 1)
    assert sequence_of(int(row["_cdc_seq"])) == 3


def test_keys_differing_by_trailing_spaces_are_distinct_items(database, tmp_path):
    # `sp`, `sp `, `sp  ` and `SP`: four rows in document and typed tables, hard
    # deletes and tombstones apart (MySQL's PAD SPACE collations would merge them)
    assert_keys_kept_apart(database.engine, database.schema, tmp_path)


def test_keys_differing_only_in_case_are_two_rows(database):
    # MySQL compares text case-insensitively by default: replica tables must not
    replicator = database.replicator()
    result = replicator.process(
        [insert({"Name": "a"}, 1, table="People"), insert({"Name": "A"}, 2, table="People")]
    )
    assert result.applied == 2
    assert database.count("people") == 2


def test_exact_numbers_survive_the_item_column(database):
    value = Decimal("1234567890.1234567890123456789012345678")
    database.replicator().process([insert({"Id": 1}, 1, {"n": value, "tiny": Decimal("1E-130")})])
    (row,) = database.rows("orders")
    from cdc.core.jsontext import loads

    item = loads(row["item"])
    assert item["n"] == value and item["tiny"] == Decimal("1E-130")


def test_hard_delete_with_tombstone(database):
    replicator = database.replicator(database.settings_with(Orders=TableOptions(deletes="hard")))
    replicator.process([insert({"Id": 1}, 1, {"v": "a"}), remove({"Id": 2}, 5)])
    replicator.process([remove({"Id": 1}, 3)])
    assert database.count("orders") == 0
    late = replicator.process([modify({"Id": 1}, 2, {"v": "late"}), insert({"Id": 2}, 4)])
    assert (late.applied, late.stale) == (0, 2)
    assert database.count("orders") == 0
    assert database.count("cdc_tombstones") == 2
    newer = replicator.process([modify({"Id": 1}, 6, {"v": "back"})])
    assert newer.applied == 1
    assert database.count("orders") == 1 and database.count("cdc_tombstones") == 1


def test_threads_sharing_a_replicator_build_each_table_once(database):
    # GIVEN one replicator shared by 8 threads, and 40 tables none of them has seen
    import threading

    replicator = database.replicator()
    barrier = threading.Barrier(8)
    problems: list[str] = []

    def first_sight(worker: int) -> None:
        for t in range(40):
            barrier.wait()  # every thread meets table t at the same moment
            prepared = replicator.prepare([insert({"Id": worker}, 1, table=f"Table{t:03d}")])
            problems.extend(f"{d.error_class}: {d.message}" for d in prepared.dead)

    # WHEN they all prepare a record of the same new table at once, table after table,
    # switching threads as often as the interpreter can (races show up, not hide)
    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=first_sight, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    # THEN no record is dead-lettered for it (a race would surface as an internal error)
    assert problems == []


# --- U+0000 and the table's `nul` option ----------------------------------------------


def settings_from_toml(database: Database, path: Path, toml: str):
    """Settings as the service reads them: environment plus a CDC_CONFIG file."""
    path.write_text(toml, encoding="utf-8")
    env = {"CDC_DATABASE_URL": database.url, "CDC_CONFIG": str(path)}
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    return load_settings(env)


def test_nul_in_a_string_is_dead_lettered_by_default_naming_the_attribute(database):
    # GIVEN a batch with U+0000 in a nested string attribute, and a good record
    poisoned = insert({"Id": 1}, BASE + 1, {"address": {"lines": ["ok", "a\x00b"]}})
    good = insert({"Id": 2}, BASE + 2, {"v": 2})
    # WHEN it is processed with the default options (nul = "reject")
    result = database.process([poisoned, good])
    # THEN the poisoned record is dead-lettered naming the attribute, the other applied
    assert result.response() == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "nul"
    assert "NewImage.address.lines[1]" in letter["error_message"]
    assert "U+0000" in letter["error_message"]
    assert letter["sequence_number"] == str(poisoned["dynamodb"]["SequenceNumber"])
    assert set(database.items("orders")) == {"2"}


@pytest.mark.parametrize(("policy", "expected"), [("strip", "ab"), ("replace", "a\ufffdb")])
def test_nul_in_a_string_is_applied_when_the_table_strips_or_replaces_it(
    database, tmp_path, policy, expected
):
    # GIVEN Orders configured with nul = strip | replace
    toml = f'[tables.Orders]\nnul = "{policy}"\n'
    settings = settings_from_toml(database, tmp_path / "cdc.toml", toml)
    # WHEN a record with U+0000 in a string (and in an attribute name) arrives
    rec = insert({"Id": 1}, BASE + 1, {"note": "a\x00b", "x\x00y": 1})
    result = database.process([rec], settings)
    # THEN it is applied with the character stripped or replaced, not dead-lettered
    assert result.response() == NO_FAILURES
    assert database.dead_letters() == []
    item = database.items("orders")["1"][0]
    assert item["note"] == expected
    assert item["x" + expected[1:-1] + "y"] == 1


def test_nul_in_a_key_is_dead_lettered_whatever_the_option(database, tmp_path):
    # GIVEN Orders configured to strip U+0000 (stripping a key could merge two keys)
    settings = settings_from_toml(
        database, tmp_path / "cdc.toml", '[tables.Orders]\nnul = "strip"\n'
    )
    # WHEN a record whose key holds U+0000 arrives with a good one
    rec = insert({"Id": "a\x00b"}, BASE + 1)
    result = database.process([rec, insert({"Id": "ab"}, BASE + 2)], settings)
    # THEN it is dead-lettered naming the key attribute; the good one is applied
    assert result.response() == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "nul"
    assert "'Id'" in letter["error_message"]
    assert set(database.items("orders")) == {"ab"}


# --- identifiers --------------------------------------------------------------------------


def test_identifiers_are_cut_to_the_backends_limit(database):
    # GIVEN a DynamoDB table name longer than any database's identifier limit
    limit = database.backend.max_identifier_bytes
    source = "Customer" + "Orders" * 20
    attribute = "attribute_é" * 12
    # WHEN a record of that table arrives, twice over (the name must be stable)
    first = database.process([insert({"Id": 1}, BASE + 1, {attribute: 1}, table=source)])
    again = database.process([modify({"Id": 1}, BASE + 2, {attribute: 2}, table=source)])
    # THEN the replica table's name is the source's cut to the backend's byte limit,
    # and the record is applied to it
    assert (first.applied, again.applied, first.failed, again.failed) == (1, 1, 0, 0)
    name = fit(snake(source), limit, source)
    assert len(name.encode("utf-8")) <= limit < len(snake(source).encode("utf-8"))
    assert name in inspect(database.engine).get_table_names(schema=database.schema)
    assert database.items(name)["1"] == ({"Id": 1, attribute: 2}, BASE + 2)
