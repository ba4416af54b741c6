"""Records → row versions (document mode) → per-table plans, collapsed per key
(docs/architecture.md §2 and §3)."""

from __future__ import annotations

import base64
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import MetaData

from cdc.core.errors import RecordError
from cdc.core.jsontext import loads
from cdc.core.mapping import BOOKKEEPING_COLUMNS, ITEM, RowVersion, TableOptions, TableSpec
from cdc.core.plan import TablePlan, plan
from cdc.core.versions import sequence_of
from cdc.sources.dynamodb_streams.records import parse_record
from cdc.sql.backends.registry import backend_for
from cdc.sql.replica import DocumentTables
from tests.factories import av, insert, modify, record, remove

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load_event(name: str) -> list[dict[str, Any]]:
    return json.loads((EVENTS / name).read_text())["Records"]


class Pipeline:
    """What `Replicator.prepare` does, without an engine: parse → spec → row version."""

    def __init__(self, schema: str | None = None, **options: TableOptions) -> None:
        self.tables = DocumentTables(
            metadata=MetaData(),
            schema=schema,
            max_identifier_bytes=63,
            key_type=backend_for("postgresql").key_type,
            options_for=lambda source: options.get(source, TableOptions()),
        )
        self.specs: dict[str, TableSpec] = {}
        self.errors: dict[int, RecordError] = {}

    def spec_for(self, rec: dict[str, Any]) -> TableSpec:
        change = parse_record(rec, 0)
        spec = self.specs.get(change.source_table)
        if spec is None:
            spec = self.specs[change.source_table] = self.tables.spec_for(change)
        return spec

    def version(self, rec: dict[str, Any], index: int = 0) -> RowVersion | None:
        change = parse_record(rec, index)
        return self.spec_for(rec).row_version(change)

    def outcomes(self, records: list[dict[str, Any]]) -> list[str]:
        """Per record: "ok", "ignored" or the RecordError's kind."""
        result = []
        for index, rec in enumerate(records):
            try:
                version = self.version(rec, index)
            except RecordError as exc:
                self.errors[index] = exc
                result.append(exc.kind)
            else:
                result.append("ignored" if version is None else "ok")
        return result

    def plan(self, records: list[dict[str, Any]]) -> list[TablePlan]:
        versions = []
        for index, rec in enumerate(records):
            try:
                version = self.version(rec, index)
            except RecordError as exc:
                self.errors[index] = exc
                continue
            if version is not None:
                versions.append((self.spec_for(rec), version))
        return plan(versions)


def raw_keys(keys: dict[str, Any]) -> dict[str, Any]:
    """Keys as a stream record carries them: binary as base64 text."""
    return {
        name: {"B": base64.b64encode(v).decode()} if isinstance(v, bytes) else av(v)
        for name, v in keys.items()
    }


def item_of(version: RowVersion) -> Any:
    assert version.values is not None
    return loads(version.values[ITEM])


def only(plans: list[TablePlan]) -> TablePlan:
    assert len(plans) == 1, [p.spec.qualified_name for p in plans]
    return plans[0]


# --- collapse per key -------------------------------------------------------------------


def test_out_of_order_records_collapse_to_the_highest_sequence_number():
    # GIVEN records of two keys delivered newest-first, with sequence numbers of
    # different lengths (23 and 24 digits)
    records = load_event("out_of_order.json")
    # WHEN the batch is planned
    accounts = only(Pipeline().plan(records))
    # THEN each key has one row: the version with the highest sequence as an integer
    assert accounts.spec.qualified_name == "accounts"
    # (the version's sequence part: cdc/core/versions.py)
    assert [(r.key, sequence_of(r.sequence), r.deleted) for r in accounts.rows] == [
        ((Decimal(7),), 100000000000000000000003, False),
        ((Decimal(8),), 100000000000000000000005, True),
    ]
    assert item_of(accounts.rows[0])["Balance"] == Decimal(30)
    # AND the older INSERT of account 8 does not resurrect it; its REMOVE keeps the image
    assert item_of(accounts.rows[1]) == {
        "AccountId": Decimal(8),
        "Owner": "owner-8",
        "Balance": Decimal(5),
    }
    # AND the versions that lost are listed as superseded
    assert sorted(sequence_of(v.sequence) for v in accounts.superseded) == [
        99999999999999999999999,
        100000000000000000000002,
        100000000000000000000004,
    ]


@pytest.mark.parametrize(
    ("sequences", "winner"),
    [
        (["999", "1000"], "1000"),
        (["1000", "999"], "1000"),
        (["99999999999999999999999", "100000000000000000000000"], "100000000000000000000000"),
        (["100000000000000000000000", "99999999999999999999999"], "100000000000000000000000"),
        (["9" * 39, "1" + "0" * 39, "5" * 40], "5" * 40),
        (["2", "10", "1"], "10"),
    ],
)
def test_sequence_numbers_are_compared_as_integers_not_text(sequences, winner):
    # GIVEN MODIFYs of one key whose sequence numbers sort differently as text
    records = [modify({"Id": 1}, seq, {"v": seq}) for seq in sequences]
    # WHEN planned
    orders = only(Pipeline().plan(records))
    # THEN the integer-highest one wins
    assert len(orders.rows) == 1
    assert sequence_of(orders.rows[0].sequence) == int(winner)
    assert item_of(orders.rows[0])["v"] == winner
    assert len(orders.superseded) == len(sequences) - 1


def test_equal_numbers_written_differently_are_one_key():
    # GIVEN two records whose N key is the same number written two ways
    records = [
        record("INSERT", {}, 1, raw_keys={"Id": {"N": "100"}}, new={"v": "first"}),
        record("MODIFY", {}, 2, raw_keys={"Id": {"N": "1E+2"}}, new={"v": "second"}),
    ]
    # WHEN planned THEN they collapse to one row: DynamoDB compares numbers by value
    orders = only(Pipeline().plan(records))
    assert [(r.key, sequence_of(r.sequence)) for r in orders.rows] == [((Decimal(100),), 2)]


def test_exact_duplicates_in_one_batch_become_one_row():
    # GIVEN a batch where two records were delivered twice (same eventID and sequence)
    records = load_event("duplicate_records.json")
    assert records[2] == records[0]
    assert records[4] == records[3]
    # WHEN planned
    orders = only(Pipeline().plan(records))
    # THEN each key appears once (a multi-row upsert must never touch a row twice)
    assert [(r.key, sequence_of(r.sequence)) for r in orders.rows] == [
        (("ord-1001",), 4421584500000000017450439093),
        (("ord-1002",), 4421584500000000017450439092),
    ]
    assert item_of(orders.rows[0])["Status"] == "SHIPPED"
    assert item_of(orders.rows[1])["Status"] == "PLACED"
    # AND the duplicates and the older version are superseded, not lost silently
    assert sorted(sequence_of(v.sequence) for v in orders.superseded) == [
        4421584500000000017450439091,
        4421584500000000017450439091,
        4421584500000000017450439093,
    ]


@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 10**40 - 1), st.booleans()),
        max_size=30,
    )
)
def test_plan_keeps_exactly_the_newest_version_of_every_key(batch):
    # GIVEN any batch of inserts and removes (hypothesis), in any order, with repeats
    records = [
        remove({"Id": key}, seq) if is_remove else insert({"Id": key}, seq, {"s": str(seq)})
        for key, seq, is_remove in batch
    ]
    # WHEN it is planned
    plans = Pipeline().plan(records)
    # THEN every key has one row: its highest sequence number; nothing else is dropped
    newest: dict[int, int] = {}
    for key, seq, _ in batch:
        newest[key] = max(seq, newest.get(key, 0))
    rows = [r for p in plans for r in p.rows]
    assert [(int(r.key[0]), sequence_of(r.sequence)) for r in rows] == sorted(newest.items())
    superseded = [v for p in plans for v in p.superseded]
    assert len(rows) + len(superseded) == len(batch)
    assert all(sequence_of(v.sequence) <= newest[int(v.key[0])] for v in superseded)


def test_an_empty_batch_plans_nothing():
    # GIVEN no row versions WHEN planned THEN there is no table plan
    assert plan([]) == []


# --- ordering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        # N keys sort numerically (as text: 1, 10, 100, 9)
        ([{"Id": 10}, {"Id": 9}, {"Id": 100}, {"Id": 1}], [(1,), (9,), (10,), (100,)]),
        ([{"Id": Decimal("-1.5")}, {"Id": 0}, {"Id": Decimal("0.25")}], [(-1.5,), (0,), (0.25,)]),
        # S keys sort by code point
        ([{"Id": "b"}, {"Id": "a"}, {"Id": "C"}], [("C",), ("a",), ("b",)]),
        # B keys sort by bytes
        ([{"Id": b"\xff"}, {"Id": b"\x00"}, {"Id": b"\x10"}], [(b"\x00",), (b"\x10",), (b"\xff",)]),
        # composite keys sort by (partition, sort), attributes in name order
        (
            [
                {"pk": "b", "sk": 1},
                {"pk": "a", "sk": 2},
                {"pk": "a", "sk": 10},
                {"pk": "a", "sk": 1},
            ],
            [("a", 1), ("a", 2), ("a", 10), ("b", 1)],
        ),
    ],
)
def test_rows_are_sorted_by_key(keys, expected):
    # GIVEN inserts of several keys in no particular order
    records = [
        record("INSERT", {}, 100 + i, raw_keys=raw_keys(k), new={"x": 1})
        for i, k in enumerate(keys)
    ]
    # WHEN planned
    orders = only(Pipeline().plan(records))
    # THEN rows come in key order (concurrent writers lock rows in one stable order)
    assert [r.key for r in orders.rows] == [
        tuple(Decimal(str(v)) if isinstance(v, int | float) else v for v in key) for key in expected
    ]


def test_tables_are_planned_in_name_order():
    # GIVEN one batch with records of three tables, interleaved
    records = load_event("multiple_tables.json")
    # WHEN planned
    plans = Pipeline().plan(records)
    # THEN there is one plan per replica table, sorted by table name
    assert [p.spec.qualified_name for p in plans] == ["audit_log_v2", "customers", "orders"]
    assert [len(p.rows) for p in plans] == [2, 1, 1]
    assert plans[0].spec.key_names == ("pk", "sk")
    assert [r.key for r in plans[0].rows] == [
        ("ORDER#ord-3001", Decimal(1714552201)),
        ("ORDER#ord-3001", Decimal(1714552204)),
    ]
    assert item_of(plans[2].rows[0])["Status"] == "PAID"
    assert [len(p.superseded) for p in plans] == [0, 0, 1]


def test_tables_in_a_schema_are_sorted_by_qualified_name():
    # GIVEN a target schema WHEN a multi-table batch is planned
    plans = Pipeline(schema="replica").plan(load_event("multiple_tables.json"))
    # THEN the plans name schema-qualified tables, still in order
    assert [p.spec.qualified_name for p in plans] == [
        "replica.audit_log_v2",
        "replica.customers",
        "replica.orders",
    ]


def test_rows_split_into_those_with_and_without_values():
    # GIVEN an insert, a remove with an OldImage and a remove without one
    records = [
        insert({"Id": 1}, 10, {"a": "x"}),
        remove({"Id": 2}, 11, {"a": "y"}),
        remove({"Id": 3}, 12),
    ]
    # WHEN planned
    orders = only(Pipeline().plan(records))
    # THEN only the image-less delete has no values (its stored item is kept as is)
    assert [r.key for r in orders.with_values] == [(Decimal(1),), (Decimal(2),)]
    assert [r.key for r in orders.without_values] == [(Decimal(3),)]
    assert [r.deleted for r in orders.rows] == [False, True, True]


# --- the AWS samples and scenarios, end to end ----------------------------------------


def test_devguide_sample_plans_the_modify():
    # GIVEN the developer guide's sample (INSERT 111, MODIFY 222, no event time)
    orders = only(Pipeline().plan(load_event("stream-sample-devguide.json")))
    # WHEN planned THEN table example_table_with_stream gets the MODIFY
    assert orders.spec.qualified_name == "example_table_with_stream"
    assert orders.spec.key_names == ("id",)
    (row,) = orders.rows
    assert (row.key, sequence_of(row.sequence), row.deleted) == ((Decimal(101),), 222, False)
    assert row.event_time is None
    assert item_of(row) == {"Message": "This item has changed", "Id": Decimal(101)}


def test_powertools_sample_plans_the_remove_as_a_soft_delete():
    # GIVEN the Powertools sample (INSERT, MODIFY, REMOVE of id 101)
    orders = only(Pipeline().plan(load_event("stream-sample-powertools.json")))
    # WHEN planned THEN the REMOVE wins, with the OldImage as its item
    (row,) = orders.rows
    assert (sequence_of(row.sequence), row.deleted) == (4421584500000000017450439093, True)
    assert item_of(row) == {"Message": "This item has changed", "Id": Decimal(101)}


def test_binary_keys_and_sets_plan_to_exact_plain_items():
    # GIVEN items with a binary key, every set type and extreme numbers
    records = load_event("binary_and_sets.json")
    # WHEN planned
    attachments = only(Pipeline().plan(records))
    # THEN the key is raw bytes and rows are sorted by them
    digests = [hashlib.sha256(name).digest() for name in (b"invoice-2024-001.pdf", b"photo.png")]
    assert [r.key for r in attachments.rows] == [(d,) for d in sorted(digests)]
    invoice = next(r for r in attachments.rows if r.key == (digests[0],))
    assert sequence_of(invoice.sequence) == 8800000000000000000000000003
    # AND the item is the plain JSON form, numbers exact
    item = item_of(invoice)
    assert item["Digest"] == base64.b64encode(digests[0]).decode()
    assert item["Tags"] == ["Urgent", "invoice", "paid"]
    assert item["Ratings"] == [Decimal("-1.5"), Decimal("0.25"), 9, 10, 100]
    assert item["Chunks"] == ["/w==", "AAEC", "ZmZmZg=="]
    assert item["Precise"] == Decimal("1234567890.1234567890123456789012345678")
    assert str(item["Precise"]) == "1234567890.1234567890123456789012345678"
    assert item["Tiny"] == Decimal("1E-130")
    assert item["Huge"] == Decimal("9.9999999999999999999999999999999999999E+125")
    assert (item["Archived"], item["DeletedAt"], item["Empty"]) == (False, None, "")
    assert item["Meta"] == {
        "Author": "Zoë",
        "Pages": [1, 2, None, True, ["a", "b"]],
        "Checksums": {"crc32": "3q2+7w=="},
    }


def test_malformed_mixed_batch_keeps_the_healthy_records():
    # GIVEN a batch of healthy records among malformed ones
    records = load_event("malformed_mixed.json")
    pipeline = Pipeline()
    # WHEN each record is prepared
    outcomes = pipeline.outcomes(records)
    # THEN every broken record is a record error of the right kind (to dead-letter)...
    assert outcomes == [
        "ok",
        "malformed",
        "ok",
        "malformed",
        "malformed",
        "malformed",
        "malformed",
        "malformed",
        "decode",
        "decode",
        "decode",
        "decode",
        "decode",
        "malformed",
        "ok",
    ]
    # ...whose message names the attribute
    assert str(pipeline.errors[8]).startswith("NewImage.Paid: ")
    assert str(pipeline.errors[9]).startswith("NewImage.Total: ")
    assert str(pipeline.errors[10]).startswith("NewImage.Receipt: ")
    assert str(pipeline.errors[11]).startswith("Keys.OrderId: ")
    assert str(pipeline.errors[12]).startswith("NewImage.Notes: ")
    # AND the healthy records are planned
    orders = only(Pipeline().plan(records))
    assert [(r.key, sequence_of(r.sequence)) for r in orders.rows] == [
        (("ord-2001",), 7700000000000000000000000015),
        (("ord-2002",), 7700000000000000000000000003),
    ]
    assert item_of(orders.rows[0])["Status"] == "PAID"


# --- TableSpec.row_version ----------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_keys_only_insert_or_modify_needs_an_image(index):
    # GIVEN an INSERT / MODIFY from a KEYS_ONLY stream (no NewImage) and no hydration
    rec = load_event("keys_only_stream.json")[index]
    # WHEN it becomes a row version
    with pytest.raises(RecordError) as info:
        Pipeline().version(rec)
    # THEN it is a "missing_image" record error that says why and what to do
    assert info.value.kind == "missing_image"
    message = str(info.value)
    assert "no NewImage" in message
    assert "KEYS_ONLY" in message
    assert "hydrate = true" in message
    assert "'Inventory'" in message
    assert "NEW_AND_OLD_IMAGES" in message


def test_keys_only_scenario():
    # GIVEN a KEYS_ONLY stream's INSERT, MODIFY and REMOVE
    records = load_event("keys_only_stream.json")
    pipeline = Pipeline()
    # WHEN prepared THEN only the REMOVE becomes a row version: a delete with no values
    assert pipeline.outcomes(records) == ["missing_image", "missing_image", "ok"]
    (row,) = only(pipeline.plan(records)).rows
    assert (row.key, row.deleted, row.values) == (("SKU-0002", "BER-1"), True, None)


def test_remove_without_old_image_is_a_delete_without_values():
    # GIVEN a REMOVE with no OldImage (KEYS_ONLY or NEW_IMAGE stream)
    # WHEN it becomes a row version
    version = Pipeline().version(remove({"Id": 5}, 42))
    # THEN it deletes the key at its sequence and leaves stored values alone
    assert version is not None
    assert (version.key, sequence_of(version.sequence), version.deleted, version.values) == (
        (Decimal(5),),
        42,
        True,
        None,
    )


def test_remove_with_old_image_keeps_the_last_item():
    # GIVEN a REMOVE with an OldImage WHEN it becomes a row version
    version = Pipeline().version(remove({"Id": 5}, 42, {"name": "last"}))
    # THEN the item is the old image (a soft-deleted row keeps what it was)
    assert version is not None
    assert version.deleted
    assert item_of(version) == {"Id": Decimal(5), "name": "last"}


@pytest.mark.parametrize(
    ("ttl_deletes", "ttl", "outcome"),
    [
        ("delete", True, "deleted"),
        ("ignore", True, None),
        ("delete", False, "deleted"),
        ("ignore", False, "deleted"),  # a user's delete is never ignored
    ],
)
def test_ttl_expiries_follow_the_ttl_deletes_option(ttl_deletes, ttl, outcome):
    # GIVEN a table with ttl_deletes set, and a REMOVE that is (or is not) a TTL expiry
    pipeline = Pipeline(Orders=TableOptions(ttl_deletes=ttl_deletes))
    rec = remove({"Id": 1}, 10, {"a": "x"}, ttl=ttl)
    # WHEN it becomes a row version
    version = pipeline.version(rec)
    # THEN a TTL expiry is ignored only when the table says so
    assert (None if version is None else "deleted" if version.deleted else "live") == outcome


@pytest.mark.parametrize(
    ("ttl_deletes", "expected"),
    [
        ("delete", [("sess-a", True), ("sess-b", True), ("sess-c", False)]),
        ("ignore", [("sess-a", False), ("sess-b", True), ("sess-c", False)]),
    ],
)
def test_ttl_scenario(ttl_deletes, expected):
    # GIVEN inserts, a TTL expiry of sess-a and a user delete of sess-b
    records = load_event("ttl_expiry.json")
    pipeline = Pipeline(Sessions=TableOptions(ttl_deletes=ttl_deletes))
    # WHEN planned
    sessions = only(pipeline.plan(records))
    # THEN sess-a survives only when TTL deletes are ignored
    assert [(r.key[0], r.deleted) for r in sessions.rows] == expected


@pytest.mark.parametrize(
    ("first_keys", "second_keys"),
    [
        ({"Id": {"N": "1"}}, {"Id": {"S": "1"}}),
        ({"Id": {"N": "1"}}, {"id": {"N": "1"}}),
        ({"Id": {"N": "1"}}, {"Id": {"N": "1"}, "Sk": {"S": "a"}}),
        ({"pk": {"S": "a"}, "sk": {"S": "b"}}, {"pk": {"S": "a"}}),
    ],
)
def test_a_record_whose_keys_do_not_match_the_table_is_rejected(first_keys, second_keys):
    # GIVEN a table whose key was set by its first record
    pipeline = Pipeline()
    pipeline.version(record("INSERT", {}, 1, raw_keys=first_keys, new={"x": 1}))
    # WHEN a record of the same table arrives with other key attributes or types
    with pytest.raises(RecordError) as info:
        pipeline.version(record("INSERT", {}, 2, raw_keys=second_keys, new={"x": 1}))
    # THEN it is a key_mismatch record error that shows both keys
    assert info.value.kind == "key_mismatch"
    message = str(info.value)
    for name, value in {**first_keys, **second_keys}.items():
        assert f"{name} {next(iter(value))}" in message
    assert "'orders'" in message


@pytest.mark.parametrize(
    ("policy", "body", "tags"),
    [
        ("strip", "line1line2", ["badtag", "ok"]),
        ("replace", "line1\ufffdline2", ["bad\ufffdtag", "ok"]),
    ],
)
def test_u0000_in_an_attribute_is_stripped_or_replaced_when_the_table_says_so(policy, body, tags):
    # GIVEN a table with nul = strip / replace and an item with U+0000 in text
    rec = load_event("nul_characters.json")[0]
    pipeline = Pipeline(Notes=TableOptions(nul=policy))
    # WHEN it becomes a row version
    version = pipeline.version(rec)
    # THEN every U+0000 is removed or replaced, and nothing else changes
    assert version is not None
    assert item_of(version) == {"NoteId": "note-1", "Body": body, "Tags": tags}
    assert "\\u0000" not in version.values[ITEM]


def test_u0000_in_an_attribute_is_rejected_by_default():
    # GIVEN an item with U+0000 in Body, and the default nul = reject
    rec = load_event("nul_characters.json")[0]
    # WHEN it becomes a row version
    with pytest.raises(RecordError) as info:
        Pipeline().version(rec)
    # THEN the record error names the attribute and the option that would accept it
    assert info.value.kind == "nul"
    assert str(info.value).startswith("NewImage.Body contains U+0000")
    assert 'nul = "strip"' in str(info.value)


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"Meta": {"inner": ["ok", "x\x00"]}}, "NewImage.Meta.inner[1]"),
        ({"Meta": {"k\x00": "v"}}, "NewImage.Meta.'k\\x00'"),
    ],
)
def test_u0000_deep_inside_an_item_is_found(item, path):
    # GIVEN an item with U+0000 nested in a map or list, or in an attribute name
    # WHEN it becomes a row version under nul = reject
    with pytest.raises(RecordError) as info:
        Pipeline().version(insert({"Id": 1}, 10, item))
    # THEN the error names where it is
    assert str(info.value).startswith(f"{path} contains U+0000")


@pytest.mark.parametrize("policy", ["reject", "strip", "replace"])
def test_u0000_in_a_key_is_always_rejected(policy):
    # GIVEN a record whose S key holds U+0000, whatever the table's nul option
    rec = load_event("nul_characters.json")[1]
    pipeline = Pipeline(Notes=TableOptions(nul=policy))
    # WHEN it becomes a row version
    with pytest.raises(RecordError) as info:
        pipeline.version(rec)
    # THEN it is rejected: altering a key could merge two distinct items
    assert info.value.kind == "nul"
    assert "'NoteId'" in str(info.value)


def test_nul_scenario_with_defaults():
    # GIVEN the nul_characters batch WHEN prepared with default options
    # THEN the two records holding U+0000 fail and the clean one is planned
    pipeline = Pipeline()
    records = load_event("nul_characters.json")
    assert pipeline.outcomes(records) == ["nul", "nul", "ok"]
    assert [r.key for r in only(Pipeline().plan(records)).rows] == [("note-3",)]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"Id": {"N": "101"}}, (Decimal(101),)),
        ({"Id": {"N": "1E+2"}}, (Decimal(100),)),
        ({"Id": {"S": "abc"}}, ("abc",)),
        ({"Id": {"B": "AAE="}}, (b"\x00\x01",)),
        ({"Sk": {"N": "2"}, "Pk": {"S": "a"}}, ("a", Decimal(2))),  # attribute name order
    ],
)
def test_key_values_are_typed_python_values(keys, expected):
    # GIVEN a record's Keys WHEN it becomes a row version
    version = Pipeline().version(record("INSERT", {}, 1, raw_keys=keys, new={"x": 1}))
    # THEN the key is a tuple of Python values in the key columns' order
    assert version is not None
    assert version.key == expected
    assert [type(v) for v in version.key] == [type(v) for v in expected]


# --- identifiers --------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ["item", "Item", "ITEM"])
def test_a_key_attribute_named_like_the_item_column_is_a_name_collision(attribute):
    # GIVEN a table whose key attribute conforms to "item", the document column
    rec = insert({attribute: "w-1"}, 1, table="Widgets")
    # WHEN its replica table is described
    with pytest.raises(RecordError) as info:
        Pipeline().version(rec)
    # THEN it is a name collision naming the attribute, not a silent merge
    assert info.value.kind == "name_collision"
    assert repr(attribute) in str(info.value)
    assert "'item'" in str(info.value)


@pytest.mark.parametrize(
    "attribute", ["_cdc_seq", "_cdc_deleted", "_cdc_event_time", "_cdc_applied_at", "cdc_seq"]
)
def test_a_key_attribute_named_like_a_bookkeeping_column_never_merges_with_it(attribute):
    # GIVEN a key attribute spelled like a bookkeeping column
    rec = insert({attribute: "k"}, 1)
    pipeline = Pipeline()
    # WHEN its replica table is described
    version = pipeline.version(rec)
    spec = pipeline.spec_for(rec)
    # THEN the key gets a column of its own (snake drops the leading underscore),
    # distinct from every bookkeeping column: nothing is merged
    assert version is not None
    (key_column,) = spec.key_names
    assert key_column == attribute.lstrip("_")
    assert key_column not in (ITEM, *BOOKKEEPING_COLUMNS)
    assert sorted(spec.table.columns.keys()) == sorted([key_column, ITEM, *BOOKKEEPING_COLUMNS])


def test_two_key_attributes_that_conform_to_one_column_collide():
    # GIVEN a table keyed by "userId" and "user_id" (both conform to user_id)
    rec = load_event("name_collisions.json")[3]
    # WHEN its replica table is described
    with pytest.raises(RecordError) as info:
        Pipeline().version(rec)
    # THEN the error names both attributes
    assert info.value.kind == "name_collision"
    assert "'userId'" in str(info.value)
    assert "'user_id'" in str(info.value)


def test_two_source_tables_that_conform_to_one_table_collide():
    # GIVEN "Orders" already replicated to table orders
    pipeline = Pipeline()
    pipeline.version(insert({"Id": 1}, 1, table="Orders"))
    # WHEN a record of source table "orders" arrives
    with pytest.raises(RecordError) as info:
        pipeline.version(insert({"Id": 2}, 2, table="orders"))
    # THEN it is a name collision naming both source tables
    assert info.value.kind == "name_collision"
    assert "'Orders'" in str(info.value)
    assert "'orders'" in str(info.value)


def test_name_collisions_scenario():
    # GIVEN the name_collisions batch WHEN prepared
    # THEN only the first record is planned; the others are name collisions
    assert Pipeline().outcomes(load_event("name_collisions.json")) == [
        "ok",
        "name_collision",
        "name_collision",
        "name_collision",
    ]


def test_long_table_and_attribute_names_fit_postgres_identifiers():
    # GIVEN two tables with 255-character names sharing a 250-character prefix,
    # and a 255-character key attribute
    pipeline = Pipeline()
    long_attribute = "attribute" + "X" * 246
    first = pipeline.spec_for(insert({long_attribute: "a"}, 1, table="T" * 250 + "first"))
    second = pipeline.spec_for(insert({long_attribute: "a"}, 2, table="T" * 250 + "secnd"))
    # WHEN their replica tables are described
    # THEN every identifier fits in 63 bytes and the two tables stay distinct
    for spec in (first, second):
        assert len(spec.table.name.encode()) <= 63
        assert all(len(c.name.encode()) <= 63 for c in spec.table.columns)
    assert first.table.name != second.table.name
