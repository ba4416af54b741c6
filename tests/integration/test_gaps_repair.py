"""Gaps and repair (README: Gaps and repair), on PostgreSQL, MariaDB/MySQL and SQLite.

- a new stream generation is a recorded gap (whichever stream a batch comes from first),
  counted in the `ReplicationGaps` metric of every batch until repaired;
- a batch arriving more than the retention after the table's last applied event, itself
  late, is a gap; a fresh write to a table idle for a day is not;
- `cdc tail` records a trimmed checkpoint as a gap;
- `cdc status` shows per table the stream and generation, lag, last applied, open gaps,
  pending dead letters and backfill progress;
- `cdc repair` places the scan so it beats what came before the gap and loses to what
  came after, sweeps what the source deleted during the gap (soft or hard), keeps rows
  written after the gap, and closes the gaps; a late record of the old stream then
  changes nothing;
- the CLI: `cdc status --json` and `cdc repair` as separate processes against moto.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Text, cast, select

from cdc.app.observe import emf_documents
from cdc.aws.clients import SourceTable
from cdc.config import Settings
from cdc.core.mapping import TableOptions
from cdc.core.versions import snapshot_version, stream_generation
from cdc.jobs.repair import RepairError, repair
from cdc.jobs.status import status
from cdc.sql.gaps import open_gaps
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import ACCOUNT, REGION, insert, modify

OLD = "2026-11-20T08:15:00.123"
NEW = "2026-11-21T09:00:00.000"


def arn(label: str, table: str = "Orders") -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/{label}"


def on(label: str, rec: dict[str, Any]) -> dict[str, Any]:
    """The record in the stream of `label`, created now unless the test says when (the
    factories' default time is years ago: every batch would be late)."""
    rec["eventSourceARN"] = arn(label)
    if rec["dynamodb"].get("ApproximateCreationDateTime") == 1_700_000_000:
        rec["dynamodb"]["ApproximateCreationDateTime"] = int(time.time())
    return rec


def source(stream_label: str | None = NEW) -> SourceTable:
    return SourceTable(
        "Orders",
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Orders",
        (("id", "N"),),
        None,
        None if stream_label is None else arn(stream_label),
    )


def scan(*items: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """One Scan page of items {id: int, v: str} as boto3's client returns them."""
    return [[{"id": {"N": str(i["id"])}, "v": {"S": i["v"]}} for i in items]]


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def settings(database: Database, deletes: str = "soft") -> Settings:
    return Settings(
        database_url=database.engine.url,
        schema=database.schema,
        defaults=TableOptions(deletes=deletes),  # type: ignore[arg-type]
    )


def gaps(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        return open_gaps(conn, database.schema)


def live(database: Database) -> dict[int, str]:
    t = database.table("orders")
    with database.engine.connect() as conn:
        query = select(t.c.id, cast(t.c.item, Text)).where(t.c._cdc_deleted.is_(False))
        rows = conn.execute(query).all()
    return {int(r[0]): json.loads(r[1])["v"] for r in rows}


def test_a_new_stream_is_a_gap_counted_until_repaired(database):
    replicator = database.replicator()
    result = replicator.process([on(OLD, insert({"id": 1}, 900, {"v": "a"}))])
    assert gaps(database) == [] and result.by_table[(arn(OLD), "Orders")].open_gaps == 0
    # WHEN the first batch of a new stream arrives
    result = replicator.process([on(NEW, insert({"id": 2}, 5, {"v": "b"}))])
    # THEN the gap between the streams is recorded and counted in the metric
    (gap,) = gaps(database)
    assert (gap.kind, gap.stream_arn, gap.generation) == (
        "new_stream",
        arn(NEW),
        stream_generation(arn(NEW)),
    )
    assert gap.ended == datetime(2026, 11, 21, 9, tzinfo=UTC)
    (doc,) = emf_documents(result, "cdc")
    assert (doc["ReplicationGaps"], doc["Table"]) == (1, "Orders")
    (gaps_directive,) = [
        d for d in doc["_aws"]["CloudWatchMetrics"] if d["Metrics"][0]["Name"] == "ReplicationGaps"
    ]
    assert gaps_directive["Dimensions"] == [["Table"]]
    # a late batch of the old stream, and another process, find the same gap
    database.replicator().process([on(OLD, modify({"id": 1}, 901, {"v": "a2"}))])
    assert len(gaps(database)) == 1


def test_the_old_stream_seen_after_the_new_one_is_the_same_gap(database):
    replicator = database.replicator()
    replicator.process([on(NEW, insert({"id": 2}, 5, {"v": "b"}))])
    assert gaps(database) == []
    replicator.process([on(OLD, insert({"id": 1}, 900, {"v": "a"}))])
    (gap,) = gaps(database)
    assert (gap.kind, gap.stream_arn) == ("new_stream", arn(NEW))


def test_a_batch_later_than_the_retention_is_a_gap_an_idle_table_is_not(database):
    now = datetime.now(UTC)
    two_days = (now - timedelta(hours=48)).timestamp()
    replicator = database.replicator()
    replicator.process([on(OLD, insert({"id": 1}, 100, {"v": "a"}, event_time=two_days))])
    # a fresh write after two idle days: no gap
    fresh = on(OLD, modify({"id": 1}, 200, {"v": "b"}, event_time=now.timestamp()))
    database.replicator().process([fresh])
    assert gaps(database) == []
    # the mapping was stuck: the next batch is 23 hours old, 2 days after the last one
    other = on(OLD, insert({"id": 7}, 100, {"v": "a"}, event_time=two_days, table="Other"))
    other["eventSourceARN"] = arn(OLD, "Other")
    replicator.process([other])
    late = on(
        OLD, insert({"id": 8}, 300, {"v": "x"}, event_time=(now - timedelta(hours=23)).timestamp())
    )
    late["eventSourceARN"] = arn(OLD, "Other")
    database.replicator().process([late])
    (gap,) = gaps(database)
    assert (gap.kind, gap.source_table) == ("late_batch", "Other")


def test_status_shows_stream_lag_gaps_dead_letters(database):
    replicator = database.replicator()
    moment = datetime.now(UTC).timestamp() - 5
    replicator.process([on(OLD, insert({"id": 1}, 900, {"v": "a"}, event_time=moment))])
    bad = insert({"id": 2}, 5, {"v": "a\x00"}, event_time=moment)  # a NUL: dead letter
    replicator.process([on(NEW, bad)])
    replicator.process([on(NEW, insert({"id": 3}, 6, {"v": "c"}, event_time=moment))])
    (orders,) = status(database.engine, database.schema, datetime.now(UTC))
    assert orders.source_table == "Orders"
    assert orders.stream is not None and orders.stream.label == NEW
    assert orders.stream.generation == stream_generation(arn(NEW))
    assert orders.stream.last_sequence == "6"
    assert orders.lag_s is not None and orders.lag_s > 0
    assert [s.label for s in orders.streams] == [OLD, NEW]
    assert [g.kind for g in orders.open_gaps] == ["new_stream"]
    assert orders.pending_dead_letters == 1
    assert orders.as_json()["open_gaps"][0]["kind"] == "new_stream"


@pytest.mark.parametrize("deletes", ["soft", "hard"])
def test_repair_after_a_new_stream_converges(database, deletes):
    options = settings(database, deletes)
    replicator = database.replicator(options)
    # GIVEN the old stream wrote keys 1, 2, 3 and 6; then the stream was off a while:
    # key 1 modified, 2 deleted, 4 created, none of it in any stream
    old = [on(OLD, insert({"id": i}, 900 + i, {"v": f"old{i}"})) for i in (1, 2, 3, 6)]
    replicator.process(old)
    # the new stream modified 3 (applied before the repair) and 6 (after it)
    replicator.process([on(NEW, modify({"id": 3}, 10, {"v": "new3"}))])
    assert len(gaps(database)) == 1
    # WHEN the table is repaired from a scan of the source
    report = repair(
        database.engine,
        options,
        source(NEW),
        scan(
            {"id": 1, "v": "gap1"},
            {"id": 3, "v": "new3"},
            {"id": 4, "v": "gap4"},
            {"id": 6, "v": "old6"},
        ),
    )
    # THEN it is the source, the row written after the gap kept, the gap closed
    assert live(database) == {1: "gap1", 3: "new3", 4: "gap4", 6: "old6"}
    assert (report.rows_repaired, report.rows_kept, report.rows_swept) == (3, 1, 1)
    assert report.gaps_closed == 1 and gaps(database) == []
    assert report.base_version == snapshot_version(stream_generation(arn(NEW)))
    # a record after the gap still wins, a late one of the old stream does not
    replicator = database.replicator(options)
    replicator.process([on(NEW, modify({"id": 6}, 11, {"v": "new6"}))])
    replicator.process([on(OLD, modify({"id": 1}, 999, {"v": "late"}))])
    replicator.process([on(OLD, insert({"id": 2}, 999, {"v": "late"}))])
    assert live(database) == {1: "gap1", 3: "new3", 4: "gap4", 6: "new6"}
    # nothing open: repair says so
    with pytest.raises(RepairError, match="no open gap"):
        repair(database.engine, options, source(NEW), scan())


@pytest.mark.parametrize("deletes", ["soft", "hard"])
def test_repair_of_a_trimmed_gap_in_one_stream(database, deletes):
    from cdc.core.gaps import TRIMMED, Gap
    from cdc.sql.gaps import record_gaps

    options = settings(database, deletes)
    replicator = database.replicator(options)
    replicator.process([on(OLD, insert({"id": i}, 100 + i, {"v": f"a{i}"})) for i in (1, 2, 3)])
    # GIVEN records 200-299 expired unread (key 1 modified, key 2 deleted in them), as
    # `cdc tail` finds and records it
    with database.engine.begin() as conn:
        gap = Gap("Orders", arn(OLD), TRIMMED, stream_generation(arn(OLD)), shard_id="s1")
        record_gaps(conn, replicator.backend, database.schema, [gap], datetime.now(UTC))
    # the records after the gap: key 3 (applied before the repair), key 1 (after it)
    replicator.process([on(OLD, modify({"id": 3}, 300, {"v": "c300"}))])
    report = repair(
        database.engine,
        options,
        source(OLD),
        scan({"id": 1, "v": "a250"}, {"id": 3, "v": "c300"}),
    )
    assert live(database) == {1: "a250", 3: "c300"}
    assert (report.rows_repaired, report.rows_kept, report.rows_swept) == (1, 1, 1)
    # a record after the gap (sequence above the stored one) wins over the repair
    database.replicator(options).process([on(OLD, modify({"id": 1}, 301, {"v": "a301"}))])
    assert live(database) == {1: "a301", 3: "c300"}
    # and a redelivery from before the gap cannot bring the deleted key back (the
    # records between 103 and 299 are the ones that expired: none can arrive)
    database.replicator(options).process([on(OLD, insert({"id": 2}, 101, {"v": "old"}))])
    assert 2 not in live(database)


def test_tail_records_a_trimmed_checkpoint_as_a_gap(replicator, pg_engine, pg_schema):
    from tests.integration.test_tail import ARN, err, lineage, make_tail, raw

    fake = lineage()
    make_tail(fake, replicator).run(once=True)
    fake.records["shardId-B"].append(raw("MODIFY", 3, 212, v={"S": "b2"}))
    fake.fail["get_shard_iterator"] = [err("TrimmedDataAccessException", "GetShardIterator")]
    make_tail(fake, replicator).run(once=True)
    with pg_engine.connect() as conn:
        found = open_gaps(conn, pg_schema)
    # (the canned records were created in January: their batches are late_batch gaps too)
    (gap,) = [g for g in found if g.kind == "trimmed"]
    assert gap.stream_arn == ARN and gap.shard_id.startswith("shardId-")


def test_a_repair_with_an_item_the_replica_cannot_take_leaves_the_gap_open(database):
    replicator = database.replicator()
    replicator.process([on(OLD, insert({"id": i}, 900 + i, {"v": "old"})) for i in (1, 2)])
    replicator.process([on(NEW, insert({"id": 3}, 5, {"v": "new"}))])
    # GIVEN a scan whose item 1 holds a NUL (dead-lettered by default) and no item 2
    report = repair(database.engine, database.settings, source(NEW), scan({"id": 1, "v": "a\x00"}))
    # THEN nothing is swept (item 1 would be), the gap stays open for another run
    assert (report.dead_lettered, report.rows_swept, report.gaps_closed) == (1, 0, 0)
    assert live(database) == {1: "old", 2: "old", 3: "new"}
    assert len(gaps(database)) == 1
    report = repair(database.engine, database.settings, source(NEW), scan({"id": 1, "v": "fixed"}))
    assert live(database) == {1: "fixed", 3: "new"} and gaps(database) == []
