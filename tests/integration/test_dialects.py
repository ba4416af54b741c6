"""The same scenarios on every database under test (the `db` fixture)."""

from __future__ import annotations

import json
from decimal import Decimal

from cdc.core.mapping import TableOptions
from cdc.core.versions import sequence_of
from tests.factories import event, insert, modify, remove


def test_guarded_upsert_counts_and_final_state(db):
    # GIVEN a batch with an insert, a newer modify and a duplicate of the modify
    replicator = db.replicator()
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
    rows = {str(r["id"]): r for r in db.rows("orders")}
    assert json.loads(rows["1"]["item"]) == {"Id": 1, "v": "b"}
    assert sequence_of(int(rows["1"]["_cdc_seq"])) == 11


def test_older_record_arriving_late_is_stale(db):
    replicator = db.replicator()
    replicator.process([modify({"Id": 1}, 20, {"v": "new"})])
    result = replicator.process([insert({"Id": 1}, 19, {"v": "old"})])
    assert (result.applied, result.stale) == (0, 1)
    (row,) = db.rows("orders")
    assert json.loads(row["item"])["v"] == "new"


def test_sequence_numbers_compare_as_integers(db):
    # 999... (21 digits) < 1000... (22 digits), though "9" > "1" as text
    replicator = db.replicator()
    replicator.process([insert({"Id": 1}, 10**21, {"v": "newer"})])
    result = replicator.process([insert({"Id": 1}, 10**21 - 1, {"v": "older"})])
    assert result.stale == 1
    (row,) = db.rows("orders")
    assert json.loads(row["item"])["v"] == "newer"


def test_soft_delete_is_not_resurrected_by_older_insert(db):
    replicator = db.replicator()
    replicator.process(
        event(insert({"Id": 1}, 1, {"v": "a"}), remove({"Id": 1}, 3, {"v": "a"}))["Records"]
    )
    replicator.process([modify({"Id": 1}, 2, {"v": "b"})])
    (row,) = db.rows("orders")
    assert row["_cdc_deleted"] in (True, 1)
    assert sequence_of(int(row["_cdc_seq"])) == 3


def test_keys_differing_only_in_case_are_two_rows(db):
    # MySQL compares text case-insensitively by default: replica tables must not
    replicator = db.replicator()
    result = replicator.process(
        [insert({"Name": "a"}, 1, table="People"), insert({"Name": "A"}, 2, table="People")]
    )
    assert result.applied == 2
    assert db.count("people") == 2


def test_exact_numbers_survive_the_item_column(db):
    value = Decimal("1234567890.1234567890123456789012345678")
    db.replicator().process([insert({"Id": 1}, 1, {"n": value, "tiny": Decimal("1E-130")})])
    (row,) = db.rows("orders")
    from cdc.core.jsontext import loads

    item = loads(row["item"])
    assert item["n"] == value and item["tiny"] == Decimal("1E-130")


def test_hard_delete_with_tombstone(db):
    replicator = db.replicator(db.settings_with(Orders=TableOptions(deletes="hard")))
    replicator.process([insert({"Id": 1}, 1, {"v": "a"}), remove({"Id": 2}, 5)])
    replicator.process([remove({"Id": 1}, 3)])
    assert db.count("orders") == 0
    late = replicator.process([modify({"Id": 1}, 2, {"v": "late"}), insert({"Id": 2}, 4)])
    assert (late.applied, late.stale) == (0, 2)
    assert db.count("orders") == 0
    assert db.count("cdc_tombstones") == 2
    newer = replicator.process([modify({"Id": 1}, 6, {"v": "back"})])
    assert newer.applied == 1
    assert db.count("orders") == 1 and db.count("cdc_tombstones") == 1


def test_threads_sharing_a_replicator_build_each_table_once(db):
    # GIVEN one replicator shared by 8 threads, and 40 tables none of them has seen
    import threading

    replicator = db.replicator()
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
