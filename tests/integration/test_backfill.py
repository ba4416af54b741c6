"""`cdc backfill`: a parallel Scan written through the apply path with sequence 0.

moto emulates DynamoDB and DynamoDB Streams in-process; the replica is a real
PostgreSQL (tests/conftest.py). The stream side of the races is applied with `cdc tail`
(the library's `Tail`), as it would be in production by Lambda or by `cdc tail`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from cdc.app import cli
from cdc.app.commands import backfill as backfill_command
from cdc.app.progress import LineProgress
from cdc.aws.clients import Clients, describe_table
from cdc.aws.scans import RateLimiter
from cdc.core.jsontext import loads
from cdc.jobs.backfill import Backfill, BackfillError, BackfillOptions
from cdc.jobs.replicate import Replicator
from cdc.jobs.tail import Tail
from cdc.jobs.verify import Verifier
from cdc.sources.dynamodb_streams.reader import StreamReader
from cdc.sql.bookkeeping import tables
from tests.factories import record_from_item

REGION = "eu-central-1"
BIG = "12345678901234567890123456789012345678"  # 38 significant digits: exact or bust


def item(i: int, **extra) -> dict:
    """An item using every AttributeValue type."""
    base = {
        "Id": {"N": str(i)},
        "name": {"S": f"item {i}"},
        "price": {"N": f"{i}.50"},
        "big": {"N": BIG},
        "blob": {"B": bytes([i % 256, 0, 255])},
        "tags": {"SS": ["b", "a"]},
        "scores": {"NS": ["10", "9.5"]},
        "files": {"BS": [b"\x01", b"\x00"]},
        "nested": {"M": {"list": {"L": [{"N": "1"}, {"BOOL": True}, {"NULL": True}]}}},
        "flag": {"BOOL": i % 2 == 0},
    }
    base.update(extra)
    return base


def make_table(clients: Clients, name: str = "Orders", count: int = 30, stream: bool = True) -> str:
    """A table with `count` items written before its stream was enabled (as in a real
    cut-over); returns the stream ARN (or "")."""
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(count):
        ddb.put_item(TableName=name, Item=item(i))
    if not stream:
        return ""
    ddb.update_table(
        TableName=name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]


def tail_once(clients, pg_engine, pg_settings, stream_arn):
    reader = StreamReader(clients.streams(), stream_arn)
    tail = Tail(
        reader, Replicator(pg_engine, pg_settings), poll_interval=0, call_interval=0, idle_pages=1
    )
    stats = tail.run(once=True)
    assert stats.failed_batches == 0
    return stats


def verify(clients, pg_engine, pg_settings, table="Orders"):
    source = describe_table(clients.dynamodb(), table)
    return Verifier(clients.dynamodb(), source, pg_engine, pg_settings, settle=0).run()


def backfill(clients, pg_engine, pg_settings, table="Orders", **kw):
    hook = kw.pop("before_write", None)
    source = describe_table(clients.dynamodb(), table)
    options = BackfillOptions(**kw)
    return Backfill(
        clients.dynamodb(), source, pg_engine, pg_settings, options, before_write=hook
    ).run()


def replica(pg_engine, schema, table="orders"):
    with pg_engine.connect() as c:
        rows = c.execute(
            text(
                "select id, item::text, mod(_cdc_seq, 1e40) _cdc_seq, _cdc_deleted "
                f'from "{schema}".{table}'
            )
        ).all()
    return {int(r[0]): (loads(r[1]) if r[1] else None, int(r[2]), r[3]) for r in rows}


def args_for(table="Orders", **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    backfill_command.add_arguments(parser)
    argv = [table]
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return parser.parse_args(argv)


# --- scenarios --------------------------------------------------------------------------


def test_backfill_copies_every_type_exactly_in_parallel(clients, pg_engine, pg_settings, pg_schema):
    # GIVEN a table of 30 items of every type, written before the stream existed
    make_table(clients)
    # WHEN it is backfilled with 3 segments of small pages
    report = backfill(clients, pg_engine, pg_settings, segments=3, page_size=4)
    # THEN every item is in the replica with sequence 0, exactly as in the source
    assert report.complete and report.errors == []
    assert (report.items_read, report.applied, report.segments_done) == (30, 30, 3)
    rows = replica(pg_engine, pg_schema)
    assert sorted(rows) == list(range(30))
    doc, seq, deleted = rows[7]
    assert (seq, deleted) == (0, False)
    assert doc["big"] == Decimal(BIG)
    assert doc["price"] == Decimal("7.50")
    assert doc["tags"] == ["a", "b"] and doc["scores"] == [Decimal("9.5"), Decimal("10")]
    assert doc["blob"] == "BwD/"  # base64, as the plain-JSON form says
    assert doc["files"] == ["AA==", "AQ=="]
    assert doc["nested"] == {"list": [Decimal(1), True, None]}
    assert verify(clients, pg_engine, pg_settings).identical


def test_backfill_racing_with_stream_changes_ends_identical(
    clients, pg_engine, pg_settings, pg_schema
):
    # GIVEN 30 items written before the stream was enabled, and the stream applied
    # continuously (here: on demand, between the backfill's pages)
    stream_arn = make_table(clients)
    ddb = clients.dynamodb()
    pages: list[list[int]] = []
    planted: dict[str, int] = {}

    def during_scan(segment: int, records: list[dict]) -> None:
        ids = [int(r["Item"]["Id"]["N"]) for r in records]
        pages.append(ids)
        if len(pages) == 1:
            # The page was read; before it is written, the source changes under it:
            # an update and a delete of keys in this page (so the page now carries
            # stale versions), and of keys the scan has not reached yet, and a new item.
            later = sorted(set(range(30)) - set(ids))
            planted.update(stale=ids[0], gone=ids[1], ahead=later[0], ahead_gone=later[1])
            ddb.put_item(TableName="Orders", Item=item(ids[0], name={"S": "changed during scan"}))
            ddb.delete_item(TableName="Orders", Key={"Id": {"N": str(ids[1])}})
            ddb.put_item(TableName="Orders", Item=item(later[0], name={"S": "changed ahead"}))
            ddb.delete_item(TableName="Orders", Key={"Id": {"N": str(later[1])}})
            ddb.put_item(TableName="Orders", Item=item(1000))
            tail_once(clients, pg_engine, pg_settings, stream_arn)  # the stream wins the race
        elif len(pages) == 2:
            # A key written by the backfill's first page changes: the stream must win.
            planted["after"] = pages[0][2]
            ddb.put_item(TableName="Orders", Item=item(pages[0][2], name={"S": "changed after"}))
            tail_once(clients, pg_engine, pg_settings, stream_arn)

    # WHEN the backfill runs page by page, racing with those stream changes
    report = backfill(
        clients, pg_engine, pg_settings, segments=1, page_size=7, before_write=during_scan
    )
    tail_once(clients, pg_engine, pg_settings, stream_arn)

    # THEN the replica is identical to the source, and no stale page overwrote the stream
    assert report.complete and len(pages) >= 3
    result = verify(clients, pg_engine, pg_settings)
    assert result.identical, result.as_json()
    rows = replica(pg_engine, pg_schema)
    stale_doc, stale_seq, stale_deleted = rows[planted["stale"]]
    assert stale_doc["name"] == "changed during scan" and stale_seq > 0 and not stale_deleted
    assert rows[planted["gone"]][2] is True  # soft-deleted by the stream, not resurrected
    assert rows[planted["ahead"]][0]["name"] == "changed ahead"
    assert rows[planted["ahead_gone"]][2] is True
    assert rows[planted["after"]][0]["name"] == "changed after"
    assert rows[1000][1] > 0
    assert report.stale >= 2  # the two stale versions were refused by the guard


def test_backfill_crashed_after_a_page_resumes_where_it_stopped(
    clients, pg_engine, pg_settings, pg_schema
):
    # GIVEN a backfill that crashes after its first committed page
    make_table(clients, count=25)
    calls = []

    def crash_on_second_page(segment, records):
        calls.append(segment)
        if len(calls) == 2:
            raise RuntimeError("boom")

    report = backfill(
        clients, pg_engine, pg_settings, segments=1, page_size=10, before_write=crash_on_second_page
    )
    assert not report.complete and "boom" in report.errors[0]
    assert report.items_total == 10
    t = tables(pg_schema)["cdc_backfill_segments"]
    with pg_engine.connect() as c:
        row = c.execute(select(t)).one()
    assert (row.items_written, row.done) == (10, False) and row.last_evaluated_key

    # WHEN it is run again
    again = backfill(clients, pg_engine, pg_settings, segments=1, page_size=10)

    # THEN it continues after the saved key: the first page is not read again
    assert again.complete and again.items_read == 15 and again.items_total == 25
    assert len(replica(pg_engine, pg_schema)) == 25
    # and a third run has nothing left to do
    assert backfill(clients, pg_engine, pg_settings, segments=1).already_complete
    # unless asked to start over
    restarted = backfill(clients, pg_engine, pg_settings, segments=2, restart=True)
    assert restarted.complete and restarted.items_read == 25 and restarted.applied == 0


def test_backfill_interrupted_by_ctrl_c_exits_130_and_resumes(
    clients, pg_engine, pg_settings, pg_schema, capsys
):
    # GIVEN `cdc backfill` receiving SIGINT (Ctrl-C) while it writes its first page
    make_table(clients, count=20)
    pages = []

    def ctrl_c(segment, records):
        pages.append(len(records))
        if len(pages) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    # WHEN it stops, and is run again
    code = backfill_command.run(
        pg_settings, args_for(segments=1, page_size=5), clients=clients, before_write=ctrl_c
    )
    first = capsys.readouterr()
    code_again = backfill_command.run(
        pg_settings, args_for(segments=1, page_size=5), clients=clients
    )
    second = capsys.readouterr()

    # THEN the first run finished its page, said so, and exited 130; the second finished
    assert code == 130 and "INTERRUPTED" in first.out and "to resume" in first.err
    assert "5 items read this run" in first.out
    assert code_again == 0 and "complete: 15 items read this run (20 in all)" in second.out
    assert len(replica(pg_engine, pg_schema)) == 20


def test_resuming_with_another_segment_count_is_refused(clients, pg_engine, pg_settings):
    make_table(clients, count=12)
    backfill(
        clients,
        pg_engine,
        pg_settings,
        segments=2,
        page_size=3,
        before_write=lambda s, r: (_ for _ in ()).throw(RuntimeError("stop")),
    )
    with pytest.raises(BackfillError, match="--segments 2"):
        backfill(clients, pg_engine, pg_settings, segments=4)


def test_backfill_never_overwrites_a_row_the_stream_applied(
    clients, pg_engine, pg_settings, pg_schema
):
    # GIVEN the stream applied a newer version (and a delete) before the backfill ran
    make_table(clients, count=3)
    source = describe_table(clients.dynamodb(), "Orders")
    # the records of the table's own stream: a backfill sits below them (README: Stream
    # generations)
    stream = source.stream_arn or source.synthetic_stream_arn("2026-01-01T00:00:00.000")
    newer = record_from_item(item(1, name={"S": "from the stream"}), source.key_names, stream)
    newer["dynamodb"]["SequenceNumber"] = "100000000000000000001"
    newer["eventName"] = "MODIFY"
    removed = record_from_item(item(2), source.key_names, stream)
    removed["eventName"], removed["dynamodb"]["SequenceNumber"] = "REMOVE", "100000000000000000002"
    removed["dynamodb"]["OldImage"] = removed["dynamodb"].pop("NewImage")
    assert Replicator(pg_engine, pg_settings).process([newer, removed]).failed == 0
    # WHEN the (older) source items are backfilled
    report = backfill(clients, pg_engine, pg_settings, segments=1)
    # THEN only the missing row was written
    rows = replica(pg_engine, pg_schema)
    assert (report.applied, report.stale) == (1, 2)
    assert rows[0][1] == 0
    assert rows[1][0]["name"] == "from the stream"
    assert rows[2][2] is True


def test_rate_limiter_holds_from_the_first_item():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(100, clock=lambda: now[0], sleep=sleep)
    started = []
    for _ in range(10):
        assert limiter.acquire(50)  # pages of 50 items
        started.append(now[0])
    # page k (from 1) is sent once its 50 items are paid for at 100/s: never a burst
    assert started == pytest.approx([0.5 * k for k in range(1, 11)])
    # no credit for time already past: a page that came back short gives back only
    # what is still reserved ahead
    limiter.refund(30)
    assert limiter.acquire(30)
    assert now[0] == pytest.approx(5.3)
    stopped = threading.Event()
    stopped.set()
    assert not limiter.acquire(100, stopped)  # reserved up to 6.3, then stopped
    limiter.refund(100)  # e.g. the page was empty
    assert limiter.acquire(50)
    assert now[0] == pytest.approx(5.8)


def test_rate_holds_from_the_first_item_across_segments(clients, pg_engine, pg_settings):
    """--rate 50 with 4 segments: never more than 50 items per elapsed second, the first
    page of every segment included (it used to let 4 pages through at once)."""
    make_table(clients, count=160, stream=False)
    seen: list[tuple[float, int]] = []
    lock = threading.Lock()
    started = time.monotonic()

    def note(segment, records):
        with lock:
            total = (seen[-1][1] if seen else 0) + len(records)
            seen.append((time.monotonic() - started, total))

    report = backfill(clients, pg_engine, pg_settings, segments=4, rate=50, before_write=note)
    assert report.complete and report.items_read == 160
    assert BackfillOptions(rate=50).scan_limit() == 50
    assert BackfillOptions(rate=50, page_size=500).scan_limit() == 50  # capped to the rate
    for elapsed, total in seen:
        assert total <= 50 * elapsed + 1, seen
    assert seen[-1][0] >= 160 / 50 - 0.1


def test_a_completed_backfill_is_complete_whatever_the_segments(
    clients, pg_engine, pg_schema, monkeypatch, capsys
):
    make_table(clients, count=8, stream=False)
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    assert cli.main(["backfill", "Orders", "--segments", "4"]) == 0
    capsys.readouterr()
    assert cli.main(["backfill", "Orders", "--segments", "2"]) == 0
    out, err = capsys.readouterr()
    assert "already complete (8 items)" in out and "--restart" in out
    assert "resume" not in out + err
    assert cli.main(["backfill", "Orders", "--segments", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is True and report["already_complete"] is True
    # --restart starts over cleanly with the new count
    assert cli.main(["backfill", "Orders", "--segments", "2", "--restart", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is True and report["segments"] == 2 and report["items_read"] == 8


class Unreachable:
    """A DynamoDB client whose first `failures` Scans cannot reach AWS."""

    def __init__(self, client, failures):
        self.client = client
        self.failures = failures

    def scan(self, **kwargs):
        from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

        if self.failures:
            self.failures -= 1
            kind = ReadTimeoutError if self.failures % 2 else EndpointConnectionError
            raise kind(endpoint_url="https://dynamodb.eu-central-1.amazonaws.com")
        return self.client.scan(**kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_backfill_and_verify_ride_out_network_errors(clients, pg_engine, pg_settings):
    make_table(clients, count=10, stream=False)
    client = Unreachable(clients.dynamodb(), failures=3)
    source = describe_table(client, "Orders")
    report = Backfill(client, source, pg_engine, pg_settings, BackfillOptions(segments=1)).run()
    assert report.complete and report.items_read == 10 and not report.errors
    client.failures = 3
    result = Verifier(client, source, pg_engine, pg_settings, settle=0).run()
    assert result.identical and result.source_items == 10


def test_backfill_with_rate_limit_and_line_progress(clients, pg_engine, pg_settings):
    make_table(clients, count=6)
    out = io.StringIO()
    source = describe_table(clients.dynamodb(), "Orders")
    progress = LineProgress("Orders", interval=3600, out=out)
    options = BackfillOptions(segments=2, rate=1000, consistent=True)
    assert options.scan_limit() == 1000
    report = Backfill(
        clients.dynamodb(), source, pg_engine, pg_settings, options, progress=progress
    ).run()
    assert report.complete
    assert "backfill Orders: 6 items" in out.getvalue() and "2/2 segments done" in out.getvalue()


def test_backfill_stops_between_pages_when_asked(clients, pg_engine, pg_settings):
    make_table(clients, count=10)
    stop = threading.Event()
    source = describe_table(clients.dynamodb(), "Orders")
    report = Backfill(
        clients.dynamodb(),
        source,
        pg_engine,
        pg_settings,
        BackfillOptions(segments=1, page_size=2),
        stop=stop,
        before_write=lambda s, r: stop.set(),
    ).run()
    assert report.interrupted and not report.complete and report.items_total == 2


def test_cli_backfill_through_environment(clients, pg_engine, pg_schema, monkeypatch, capsys):
    make_table(clients, count=4)
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    assert cli.main(["backfill", "Orders", "--segments", "2", "--json"]) == 0
    assert '"complete": true' in capsys.readouterr().out
    assert len(replica(pg_engine, pg_schema)) == 4
    # a table that does not exist is a clear error, exit 2
    assert cli.main(["backfill", "Nope"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_backfill_help():
    with pytest.raises(SystemExit) as exit_:
        cli.main(["backfill", "--help"])
    assert exit_.value.code == 0


def test_each_unappliable_item_gets_its_own_dead_letter(clients, pg_engine, pg_settings, pg_schema):
    # GIVEN two items PostgreSQL cannot store (U+0000, and the table's nul = "reject")
    make_table(clients, count=2, stream=False)
    ddb = clients.dynamodb()
    for i in (0, 1):
        ddb.put_item(TableName="Orders", Item=item(i, name={"S": f"bad\x00{i}"}))
    # WHEN backfilled
    report = backfill(clients, pg_engine, pg_settings, segments=1)
    # THEN each is dead-lettered, under its own key
    assert report.dead_lettered == 2
    letters = tables(pg_schema)["cdc_dead_letters"]
    with pg_engine.connect() as c:
        keys = sorted(c.execute(select(letters.c["keys"])).scalars())
    assert keys == ['{"Id":0}', '{"Id":1}']


def test_a_backfill_dead_letter_is_redriven_after_the_fix(
    clients, pg_engine, pg_settings, pg_schema
):
    # GIVEN an item the backfill dead-lettered (U+0000, the table rejects it) ...
    from cdc.app.commands.dlq import redrive
    from cdc.config import Settings
    from cdc.core.mapping import TableConfig, TableOptions

    make_table(clients, count=2, stream=False)
    ddb = clients.dynamodb()
    ddb.put_item(TableName="Orders", Item=item(1, name={"S": "bad\x00one"}))
    assert backfill(clients, pg_engine, pg_settings, segments=1).dead_lettered == 1
    letters = tables(pg_schema)["cdc_dead_letters"]
    with pg_engine.connect() as c:
        (raw,) = c.execute(select(letters.c.raw_record)).scalars()
    # ... whose raw record is the snapshot item itself, not a made-up stream record
    assert loads(raw)["eventSource"] == "cdc:snapshot"
    # WHEN the table is told to strip U+0000 and the letter is redriven
    strip = TableConfig("Orders", options=TableOptions(nul="strip"))
    fixed = Settings(
        database_url=pg_settings.database_url, schema=pg_settings.schema, tables={"Orders": strip}
    )
    assert redrive(pg_engine, fixed, ids=[], all_=True, table=None) == 0
    # THEN the item is in the replica, at the snapshot's version, and the letter resolved
    doc, seq, deleted = replica(pg_engine, pg_schema)[1]
    assert (doc["name"], seq, deleted) == ("badone", 0, False)
    with pg_engine.connect() as c:
        assert list(c.execute(select(letters.c.status)).scalars()) == ["resolved"]


def test_a_tombstone_keeps_a_hard_deleted_row_from_coming_back(
    clients, pg_engine, pg_settings, pg_schema
):
    # GIVEN a table with hard deletes whose item 1 the stream deleted after the backfill
    # scanned it (the backfill's page still carries it)
    from cdc.config import Settings
    from cdc.core.mapping import TableConfig, TableOptions

    hard = TableConfig("Orders", options=TableOptions(deletes="hard"))
    settings = Settings(
        database_url=pg_settings.database_url, schema=pg_settings.schema, tables={"Orders": hard}
    )
    make_table(clients, count=3)
    source = describe_table(clients.dynamodb(), "Orders")
    # the records of the table's own stream: a backfill sits below them (README: Stream
    # generations)
    stream = source.stream_arn or source.synthetic_stream_arn("2026-01-01T00:00:00.000")
    removed = record_from_item(item(1), source.key_names, stream)
    removed["eventName"], removed["dynamodb"]["SequenceNumber"] = "REMOVE", "100000000000000000001"
    removed["dynamodb"]["OldImage"] = removed["dynamodb"].pop("NewImage")
    assert Replicator(pg_engine, settings).process([removed]).failed == 0
    # WHEN the backfill writes its (stale) copy of item 1
    report = backfill(clients, pg_engine, settings, segments=1)
    # THEN the tombstone wins: item 1 stays deleted
    assert report.complete and (report.applied, report.stale) == (2, 1)
    assert sorted(replica(pg_engine, pg_schema)) == [0, 2]


class Denied:
    """A DynamoDB client that may describe the table but not Scan it."""

    def __init__(self, client):
        self.client = client

    def scan(self, **kwargs):
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized: Scan"}},
            "Scan",
        )

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_setup_mistake_in_the_segments_is_raised_once_for_the_cli(
    clients, pg_engine, pg_settings
):
    from botocore.exceptions import ClientError

    make_table(clients, count=4, stream=False)
    client = Denied(clients.dynamodb())
    source = describe_table(client, "Orders")
    with pytest.raises(ClientError) as raised:
        Backfill(client, source, pg_engine, pg_settings, BackfillOptions(segments=4)).run()
    from cdc.aws.errors import explain

    assert (explain(raised.value) or "").startswith("AWS denied Scan")
