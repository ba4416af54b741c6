"""A batch's outcomes are counted once (`BatchResult`): the response, the totals of the
summary, the per-(stream, table) counts of the log line and the metrics, and the
checkpoints are views of each record's outcome and the rows written. Plain data, no
database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import MetaData

from cdc.core.change import Change
from cdc.core.mapping import TableOptions
from cdc.core.outcomes import (
    UNNAMED,
    BatchResult,
    DeadLetter,
    Outcome,
    Prepared,
    StreamProgress,
    TableCounts,
)
from cdc.core.plan import plan
from cdc.core.versions import stream_generation, stream_version
from cdc.sources.dynamodb_streams.records import LAMBDA_RECORDS, parse_record
from cdc.sql.backends.registry import backend_for
from cdc.sql.replica import DocumentTables
from tests.factories import insert, modify, remove, stream_arn

SETTLED, DEAD, FAILED = Outcome.SETTLED, Outcome.DEAD_LETTERED, Outcome.FAILED
ORDERS = (stream_arn("Orders"), "Orders")
CUSTOMERS = (stream_arn("Customers"), "Customers")
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()


def broken() -> dict[str, Any]:
    rec = insert({"Id": 99}, 99)
    rec["eventSource"] = "aws:kinesis"  # no table can be told
    return rec


def batch() -> tuple[list[dict[str, Any]], list[Change]]:
    """Orders 0-3 (event times 30 s to 10 s ago), Customers 4-5 (no event time), a
    record that does not parse (6)."""
    records = [
        insert({"Id": 1}, 101, event_time=T - 30),
        modify({"Id": 1}, 102, event_time=T - 20),
        insert({"Id": 2}, 103, event_time=T - 10),
        insert({"Id": 3}, 104, event_time=T - 25),
        insert({"Id": 1}, 201, table="Customers", event_time=None),
        remove({"Id": 2}, 202, table="Customers", event_time=None),
        broken(),
    ]
    return records, [parse_record(r, i) for i, r in enumerate(records[:6])]


def result_of(
    outcomes: list[Outcome], written: dict[tuple[str, str], int], **kw: Any
) -> BatchResult:
    records, changes = batch()
    return BatchResult(outcomes, records, changes, written, measured_at=NOW, **kw)


# --- totals and the counts per (stream, table) -------------------------------------------


def test_totals_are_views_of_the_outcomes_and_the_rows_written() -> None:
    # GIVEN Orders: 3 settled of which 2 rows written, 1 failed; Customers: 1 written,
    # 1 dead-lettered; the broken record dead-lettered
    outcomes = [SETTLED, SETTLED, SETTLED, FAILED, SETTLED, DEAD, DEAD]
    result = result_of(outcomes, {ORDERS: 2, CUSTOMERS: 1})
    # THEN applied counts rows written, stale the settled records that changed nothing
    assert (result.applied, result.stale, result.dead_lettered, result.failed) == (3, 1, 2, 1)
    # AND every record is in exactly one of the four states
    total = result.applied + result.stale + result.dead_lettered + result.failed
    assert total == len(outcomes)


def test_counts_per_stream_and_table_add_up_to_the_totals() -> None:
    outcomes = [SETTLED, SETTLED, SETTLED, FAILED, SETTLED, DEAD, DEAD]
    result = result_of(outcomes, {ORDERS: 2, CUSTOMERS: 1})
    counts = result.by_table
    assert list(counts) == sorted([ORDERS, CUSTOMERS, UNNAMED])
    orders, customers, unnamed = counts[ORDERS], counts[CUSTOMERS], counts[UNNAMED]
    assert (orders.records, orders.applied, orders.stale, orders.dead_lettered, orders.failed) == (
        4,
        2,
        1,
        0,
        1,
    )
    assert (customers.records, customers.applied, customers.stale) == (2, 1, 0)
    assert (customers.dead_lettered, customers.failed) == (1, 0)
    assert (unnamed.records, unnamed.dead_lettered) == (1, 1)
    summary = result.summary()
    for name in ("records", "applied", "stale", "dead_lettered", "failed"):
        assert sum(getattr(c, name) for c in counts.values()) == summary[name], name


def test_lag_is_per_table_from_the_oldest_event_time_failed_records_included() -> None:
    # GIVEN Orders' oldest record (30 s ago) failed and the others carry no event time
    result = result_of([FAILED, SETTLED, SETTLED, SETTLED, SETTLED, SETTLED, DEAD], {})
    # THEN the lag still counts it: it is how far behind the stream the batch is
    assert result.by_table[ORDERS].max_lag_s == 30.0
    assert result.by_table[CUSTOMERS].max_lag_s is None
    assert result.by_table[UNNAMED].max_lag_s is None
    assert result.max_lag_s == 30.0
    assert result.summary()["max_lag_s"] == 30.0
    # AND a result not measured at a moment has no lag
    records, changes = batch()
    assert BatchResult([SETTLED] * 7, records, changes).max_lag_s is None


def test_lag_is_never_negative() -> None:
    records, changes = batch()
    early = BatchResult([SETTLED] * 7, records, changes, measured_at=NOW - timedelta(hours=1))
    assert early.by_table[ORDERS].max_lag_s == 0.0


def test_summary_keeps_its_keys_and_order() -> None:
    result = result_of([SETTLED] * 6 + [DEAD], {ORDERS: 4, CUSTOMERS: 2}, error="why")
    summary = result.summary()
    assert list(summary) == [
        "records",
        "applied",
        "stale",
        "dead_lettered",
        "failed",
        "tables",
        "seconds",
        "max_lag_s",
        "error",
    ]
    assert summary["error"] == "why"
    assert "error" not in result_of([SETTLED] * 7, {}).summary()


# --- the response ------------------------------------------------------------------------


def test_the_response_names_exactly_the_failed_records() -> None:
    records, changes = batch()
    outcomes = [SETTLED, FAILED, SETTLED, DEAD, SETTLED, FAILED, SETTLED]
    result = BatchResult(outcomes, records, changes, source=LAMBDA_RECORDS)
    assert result.response() == {
        "batchItemFailures": [{"itemIdentifier": "102"}, {"itemIdentifier": "202"}]
    }
    assert BatchResult([SETTLED, DEAD], records[:2], source=LAMBDA_RECORDS).response() == {
        "batchItemFailures": []
    }


# --- the checkpoints ---------------------------------------------------------------------


def test_checkpoints_count_only_what_was_committed() -> None:
    # GIVEN Orders' newest record (104) failed, and the broken record dead-lettered
    outcomes = [SETTLED, SETTLED, DEAD, FAILED, SETTLED, SETTLED, DEAD]
    result = result_of(outcomes, {ORDERS: 1, CUSTOMERS: 2})
    # THEN each stream's checkpoint moves to its highest committed sequence, counts its
    # records by outcome, and the record that names no stream counts nowhere
    assert result.checkpoints("shard-1") == [
        StreamProgress(
            stream_arn("Customers"),
            "shard-1",
            last_sequence=stream_version(stream_generation(stream_arn("Customers")), 202),
            last_event_time=None,
            applied=2,
            stale=0,
            dead_lettered=0,
        ),
        StreamProgress(
            stream_arn("Orders"),
            "shard-1",
            last_sequence=stream_version(stream_generation(stream_arn("Orders")), 103),
            last_event_time=datetime.fromtimestamp(T - 10, UTC),
            applied=1,
            stale=1,
            dead_lettered=1,
        ),
    ]


def test_a_stream_with_nothing_committed_has_no_checkpoint() -> None:
    result = result_of([FAILED] * 4 + [SETTLED, SETTLED, FAILED], {CUSTOMERS: 1})
    assert [p.stream_arn for p in result.checkpoints()] == [stream_arn("Customers")]
    assert result_of([FAILED] * 7, {}).checkpoints() == []


# --- settling a prepared batch -----------------------------------------------------------


def prepared_of(records: list[dict[str, Any]]) -> Prepared:
    """What `Replicator.prepare` makes of `records` (no hydration), without an engine."""
    tables = DocumentTables(
        metadata=MetaData(),
        schema=None,
        max_identifier_bytes=63,
        key_type=backend_for("postgresql").key_type,
        options_for=lambda source: TableOptions(),
    )
    specs: dict[str, Any] = {}
    changes, versions, dead = [], [], []
    for index, rec in enumerate(records):
        try:
            change = parse_record(rec, index)
        except Exception as exc:
            dead.append(DeadLetter(index, rec, "malformed", str(exc)))
            continue
        changes.append(change)
        spec = specs.get(change.source_table) or tables.spec_for(change)
        specs[change.source_table] = spec
        version = spec.row_version(change, lazy=True)
        assert version is not None
        versions.append((spec, version))
    return Prepared(plan(versions), dead, [], changes, records)


def test_settle_gives_each_record_one_outcome_and_the_error_that_matters_most() -> None:
    records, _ = batch()
    prepared = prepared_of(records)
    prepared.unreadable.append(0)
    customers_plan, orders_plan = prepared.plans  # in table name order
    rejected = prepared.dead_letter(customers_plan.rows[1], customers_plan.spec, "data", "no")
    # WHEN Orders wrote 2 rows, Customers' second row was rejected and its letter not
    # stored, and record 3 is held back (its table cannot take it)
    result = prepared.settle(
        [(orders_plan, 2), (customers_plan, 1)],
        [*prepared.dead, rejected],
        unstored=[rejected],
        held={3: "table orders is not cdc's"},
    )
    assert result.outcomes == [FAILED, SETTLED, SETTLED, FAILED, SETTLED, FAILED, DEAD]
    assert result.written == {ORDERS: 2, CUSTOMERS: 1}
    assert (result.applied, result.stale, result.dead_lettered, result.failed) == (3, 0, 1, 3)
    assert result.error == "table orders is not cdc's"
    # AND a dead letter the database could not store is the error to report above all
    worse = prepared.settle([], [rejected], unstored=[rejected], dead_letter_error="too long")
    assert worse.error == "dead letters not written: too long"
    unread = prepared.settle([], [])
    assert unread.error == "items could not be read from DynamoDB for hydration"
    assert prepared_of(records[1:3]).settle([], []).error is None


def test_a_failed_batch_reports_every_record_and_keeps_their_tables() -> None:
    records, _ = batch()
    result = prepared_of(records).failed("outage")
    assert result.outcomes == [FAILED] * 7
    assert (result.applied, result.stale, result.failed, result.error) == (0, 0, 7, "outage")
    assert {g: c.failed for g, c in result.by_table.items()} == {
        ORDERS: 4,
        CUSTOMERS: 2,
        UNNAMED: 1,
    }
    assert result.checkpoints() == []


def test_rows_written_for_a_table_fed_by_two_streams_are_shared_out_in_stream_order() -> None:
    # GIVEN one table's records from its old and its new stream (a replay mixing them)
    old, new = stream_arn("Orders", "eu-west-1"), stream_arn("Orders")
    records = [insert({"Id": i}, 10 + i) for i in range(5)]
    for rec in records[:2]:
        rec["eventSourceARN"] = old
    prepared = prepared_of(records)
    (table_plan,) = prepared.plans
    # WHEN its statement changed 4 rows (it says how many, not which)
    result = prepared.settle([(table_plan, 4)], [])
    # THEN they are shared out in stream order, no stream given more rows than it
    # settled records (eu-central-1's stream sorts first), and the total stands
    assert result.written == {(new, "Orders"): 3, (old, "Orders"): 1}
    assert result.applied == 4
    assert [p.applied for p in result.checkpoints()] == [3, 1]
    counts = result.by_table
    assert (counts[(new, "Orders")].stale, counts[(old, "Orders")].stale) == (0, 1)


def test_a_database_count_above_the_records_settled_still_stands() -> None:
    prepared = prepared_of([insert({"Id": 1}, 1)])
    (table_plan,) = prepared.plans
    assert prepared.settle([(table_plan, 2)], []).applied == 2


# --- properties --------------------------------------------------------------------------


@given(
    st.lists(st.sampled_from(list(Outcome)), min_size=6, max_size=6),
    st.sampled_from([DEAD, FAILED]),  # a record that does not parse is never settled
    st.data(),
)
def test_every_view_agrees_with_every_other(
    parsed: list[Outcome], unparsed: Outcome, data: Any
) -> None:
    outcomes = [*parsed, unparsed]
    records, changes = batch()
    settled = {
        g: sum(
            1
            for c in changes
            if (c.stream_arn, c.source_table) == g and outcomes[c.index] is SETTLED
        )
        for g in (ORDERS, CUSTOMERS)
    }
    written = {g: data.draw(st.integers(0, n)) for g, n in settled.items()}
    result = BatchResult(outcomes, records, changes, written, measured_at=NOW)
    counts = result.by_table.values()
    assert sum(c.records for c in counts) == len(records)
    for name in ("applied", "stale", "dead_lettered", "failed"):
        assert sum(getattr(c, name) for c in counts) == getattr(result, name), name
    assert all(c.stale >= 0 for c in counts)
    progress = result.checkpoints()
    assert sum(p.applied for p in progress) == result.applied
    assert sum(p.stale for p in progress) == result.stale
    named = [result.by_table.get(g, TableCounts()) for g in (ORDERS, CUSTOMERS)]
    assert sum(p.dead_lettered for p in progress) == sum(c.dead_lettered for c in named)
    assert len(result.item_failures) == (1 if result.failed else 0)  # no source: the batch
