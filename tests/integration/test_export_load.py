"""`cdc backfill --from-export`: an export's data files applied through the snapshot path,
shared by workers that claim files in the database.

moto emulates DynamoDB, its stream and S3 in-process; exports are written into S3 in the
documented layout (tests/exports.py). The replica is a real PostgreSQL, MariaDB, or
SQLite (one worker).
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from cdc.aws.clients import describe_table
from cdc.aws.exports import ExportError
from cdc.jobs.export_load import Export, ExportLoad, LoadOptions
from cdc.jobs.tail import Tail
from cdc.jobs.verify import Verifier
from cdc.sources.dynamodb_streams.reader import StreamReader
from cdc.sql.bookkeeping import tables
from tests.conftest import servers
from tests.every_database import EVERY_DATABASE, open_database
from tests.exports import wire_item, write_export
from tests.factories import create_pk_sk_table

BUCKET = "exports-bucket"


@pytest.fixture(params=EVERY_DATABASE)
def database(request, tmp_path):
    yield from open_database(request, tmp_path)


def item(i: int, **extra) -> dict:
    base = {
        "Id": {"N": str(i)},
        "name": {"S": f"item {i}"},
        "big": {"N": "12345678901234567890123456789012345678"},
        "blob": {"B": bytes([i % 256, 0, 255])},
        "tags": {"SS": ["b", "a"]},
        "nested": {"M": {"list": {"L": [{"N": "1"}, {"BOOL": True}, {"NULL": True}]}}},
    }
    base.update(extra)
    return base


def make_table(clients, count: int = 40, name: str = "Orders") -> str:
    """A table of `count` items and its stream (enabled after them); the stream ARN."""
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(count):
        ddb.put_item(TableName=name, Item=item(i))
    ddb.update_table(
        TableName=name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]


def export_now(clients, files: int = 4, name: str = "Orders", **kw) -> str:
    """The table as it is now, exported into `files` data files (the last one empty,
    as an empty partition's is)."""
    ddb = clients.dynamodb()
    items = [wire_item(i) for i in ddb.scan(TableName=name)["Items"]]
    parts = [items[n :: files - 1] for n in range(files - 1)] + [[]]
    arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
    return write_export(clients.s3(), BUCKET, arn, parts, **kw)


def loader(clients, database, url, *, workers=1, table="Orders", stop=None, hook=None, **kw):
    source = describe_table(clients.dynamodb(), table)
    export = Export.open(clients.s3(), url, source.arn)
    options = LoadOptions(workers=workers, **kw)
    return ExportLoad(
        clients.s3(),
        export,
        source,
        database.engine,
        database.settings,
        options,
        stop=stop,
        before_write=hook,
    )


def tail_once(clients, database, stream_arn):
    reader = StreamReader(clients.streams(), stream_arn)
    tail = Tail(reader, database.replicator(), poll_interval=0, call_interval=0, idle_pages=1)
    assert tail.run(once=True).failed_batches == 0


def verify(clients, database, table="Orders"):
    source = describe_table(clients.dynamodb(), table)
    return Verifier(clients.dynamodb(), source, database.engine, database.settings, settle=0).run()


def file_rows(database):
    t = tables(database.schema)["cdc_export_files"]
    with database.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.file_no)).mappings()]


def test_an_export_loads_exactly_and_a_rerun_changes_nothing(clients, database):
    # GIVEN a table of 40 items exported into 4 files, one of them empty
    make_table(clients)
    url = export_now(clients) + "/"  # a trailing slash is the same folder
    # WHEN it is loaded with small batches
    report = loader(
        clients, database, url, workers=1 if database.name == "sqlite" else 3, batch_lines=7
    ).run()
    # THEN every item is in the replica, as in the source, at the snapshot's version
    assert report.complete and report.errors == []
    assert (report.files, report.files_done, report.items_done) == (4, 4, 40)
    assert (report.items_read, report.applied) == (40, 40)
    rows = database.items("orders")
    assert len(rows) == 40 and {seq for _, seq in rows.values()} == {0}
    assert rows["7"][0]["blob"] == "BwD/" and rows["7"][0]["tags"] == ["a", "b"]
    assert verify(clients, database).identical
    assert all(r["done"] and r["lines_done"] == r["item_count"] for r in file_rows(database))
    # WHEN the same command runs again
    again = loader(clients, database, url).run()
    # THEN it says the export is loaded and writes nothing
    assert again.already_complete and again.complete and again.items_read == 0
    assert database.items("orders") == rows


def test_stream_before_during_and_after_the_load_converges(clients, database):
    # GIVEN a table whose stream is consumed from before the export was taken
    stream_arn = make_table(clients)
    ddb = clients.dynamodb()
    ddb.put_item(TableName="Orders", Item=item(1, name={"S": "changed before export"}))
    url = export_now(clients, files=3)
    # ... and changed after the export: the stream applied before the load starts
    ddb.put_item(TableName="Orders", Item=item(2, name={"S": "changed after export"}))
    ddb.delete_item(TableName="Orders", Key={"Id": {"N": "3"}})
    tail_once(clients, database, stream_arn)
    batches: list[int] = []

    def during(file_no: int, records: list[dict]) -> None:
        batches.append(file_no)
        if len(batches) == 2:  # mid-load: more changes, applied by the stream at once
            ddb.put_item(TableName="Orders", Item=item(4, name={"S": "changed during load"}))
            ddb.delete_item(TableName="Orders", Key={"Id": {"N": "5"}})
            ddb.put_item(TableName="Orders", Item=item(500))
            tail_once(clients, database, stream_arn)

    # WHEN the export (holding the older versions, and keys 3 and 5) is loaded
    report = loader(clients, database, url, batch_lines=5, hook=during).run()
    # ... and the stream goes on after it
    ddb.put_item(TableName="Orders", Item=item(6, name={"S": "changed after load"}))
    tail_once(clients, database, stream_arn)

    # THEN the replica is the source: no loaded item overwrote the stream or revived a key
    assert report.complete and len(batches) > 2
    result = verify(clients, database)
    assert result.identical, result.as_json()
    rows = database.items("orders")
    assert rows["2"][0]["name"] == "changed after export" and rows["2"][1] > 0
    assert rows["4"][0]["name"] == "changed during load"
    assert report.stale >= 2


@pytest.mark.parametrize("database", servers("postgresql", "mysql"), indirect=True)
def test_workers_share_the_files_and_a_dead_workers_file_is_taken_over(clients, database):
    # GIVEN an export of 6 files, and a worker that dies mid-file: it stops without
    # releasing its claim (as a killed process does), after committing one batch
    make_table(clients, count=60)
    url = export_now(clients, files=7)
    died = threading.Event()

    class Killed(BaseException):
        pass

    def die_in_second_batch(file_no: int, records: list[dict]) -> None:
        if not died.is_set() and file_rows(database)[file_no]["lines_done"] > 0:
            died.set()
            raise Killed

    first = loader(clients, database, url, batch_lines=3, lease=1.0, hook=die_in_second_batch)
    first.store.release = lambda *a, **k: None  # a dead process releases nothing
    with pytest.raises(Killed):
        first.run()
    held = [r for r in file_rows(database) if r["worker"] and not r["done"]]
    assert len(held) == 1 and 0 < held[0]["lines_done"] < held[0]["item_count"]

    # WHEN two loads (several workers each) run the same export at once. Their own
    # leases are long: only the dead worker's (1 s) may expire, even on a loaded host
    # where a live worker's batch can take more than a second.
    reports = []
    threads = [
        threading.Thread(
            target=lambda: reports.append(
                loader(clients, database, url, workers=2, batch_lines=4, lease=30.0, poll=0.2).run()
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # THEN both finish complete, the dead worker's file was taken over from its saved
    # line, and no item was read twice
    assert len(reports) == 2 and all(r.complete for r in reports)
    assert sum(r.items_read for r in reports) == 60 - held[0]["lines_done"]
    assert verify(clients, database).identical
    assert all(r["done"] and r["worker"] is None for r in file_rows(database))


def test_a_wrong_checksum_stops_the_load_and_keeps_what_was_committed(clients, database):
    # GIVEN an export whose third file does not match its manifest's MD5
    make_table(clients, count=30)
    ddb = clients.dynamodb()
    items = [wire_item(i) for i in ddb.scan(TableName="Orders")["Items"]]
    arn = ddb.describe_table(TableName="Orders")["Table"]["TableArn"]
    parts = [items[:10], items[10:20], items[20:]]
    url = write_export(clients.s3(), BUCKET, arn, parts, md5s={2: "AAAAAAAAAAAAAAAAAAAAAA=="})
    # WHEN it is loaded by one worker
    report = loader(clients, database, url).run()
    # THEN the load stops with the reason, and the files before it stay committed
    assert not report.complete and len(report.errors) == 1
    assert "MD5" in report.errors[0] and "differs from the manifest" in report.errors[0]
    assert len(database.items("orders")) == 20
    rows = file_rows(database)
    assert [r["done"] for r in rows] == [True, True, False] and rows[2]["error"]


def test_a_truncated_file_stops_with_its_line_and_keeps_committed_lines(clients, database):
    # GIVEN an export whose one file is cut short (its manifest matching the damage)
    make_table(clients, count=30)
    ddb = clients.dynamodb()
    items = [wire_item(i) for i in ddb.scan(TableName="Orders")["Items"]]
    arn = ddb.describe_table(TableName="Orders")["Table"]["TableArn"]
    from tests.exports import gz_lines

    damaged = gz_lines([{"Item": i} for i in items])[:-60]
    import base64
    import hashlib

    url = write_export(
        clients.s3(),
        BUCKET,
        arn,
        [items],
        bodies={0: damaged},
        md5s={0: base64.b64encode(hashlib.md5(damaged).digest()).decode()},
    )
    # WHEN it is loaded in batches of 5
    report = loader(clients, database, url, batch_lines=5).run()
    # THEN the error names the file; the batches before the damage stay committed
    assert not report.complete and "not a complete gzip file" in report.errors[0]
    kept = file_rows(database)[0]["lines_done"]
    assert kept > 0 and kept % 5 == 0 and len(database.items("orders")) == kept


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"finished": False}, "is not finished"),
        ({"output_format": "CSV"}, "is in CSV format"),
    ],
)
def test_an_export_that_cannot_be_loaded_is_refused(clients, change, message):
    make_table(clients, count=2)
    url = export_now(clients, files=2, **change)
    with pytest.raises(ExportError, match=message):
        Export.open(clients.s3(), url, describe_table(clients.dynamodb(), "Orders").arn)


def test_an_export_of_another_table_is_refused(clients):
    make_table(clients, count=2)
    make_table(clients, count=2, name="Other")
    url = export_now(clients, files=2, name="Other")
    with pytest.raises(ExportError, match=r"is an export of .*table/Other, not of"):
        Export.open(clients.s3(), url, describe_table(clients.dynamodb(), "Orders").arn)


def test_stop_between_batches_then_resume(clients, database):
    make_table(clients, count=20)
    url = export_now(clients, files=2)
    stop = threading.Event()

    def stop_after_first(file_no, records):
        stop.set()

    report = loader(clients, database, url, batch_lines=4, stop=stop, hook=stop_after_first).run()
    assert report.interrupted and not report.complete and report.items_read == 4
    assert all(r["worker"] is None for r in file_rows(database))  # released on the way out
    again = loader(clients, database, url, batch_lines=4).run()
    assert again.complete and again.items_read == 16
    assert len(database.items("orders")) == 20


def test_export_to_requests_an_export_waits_for_it_and_loads_it(
    clients, database, monkeypatch, capsys
):
    # GIVEN a table with point-in-time recovery, and moto's export completed in the
    # documented layout (moto itself writes one data file and no manifests)
    import argparse

    from cdc.app.commands import backfill as backfill_command
    from cdc.aws.exports import export_location

    make_table(clients, count=12)
    ddb = clients.dynamodb()
    ddb.update_continuous_backups(
        TableName="Orders",
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )
    clients.s3().create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    polls: list[str] = []

    class Described:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            return getattr(self.client, name)

        def describe_export(self, **kw):
            described = self.client.describe_export(**kw)
            polls.append(described["ExportDescription"]["ExportStatus"])
            location = export_location(described["ExportDescription"])
            prefix, export_id = location.folder.split("/AWSDynamoDB/")
            if described["ExportDescription"]["ExportStatus"] == "COMPLETED":
                export_now(clients, files=3, prefix=prefix, export_id=export_id)
            return described

    class Wrapped(type(clients)):
        def dynamodb(self, region=None):
            return Described(clients.dynamodb(region))

        def s3(self, region=None):
            return clients.s3(region)

    parser = argparse.ArgumentParser()
    backfill_command.add_arguments(parser)
    args = parser.parse_args(
        ["Orders", "--export-to", f"s3://{BUCKET}/nightly/", "--poll-interval", "0.1"]
    )
    # WHEN `cdc backfill --export-to` runs
    code = backfill_command.run(database.settings, args, clients=Wrapped("eu-central-1"))
    # THEN it waited for the export, loaded it, and said so
    out = capsys.readouterr()
    assert code == 0, out.err
    assert polls and polls[-1] == "COMPLETED"
    assert "export requested: arn:" in out.err and "complete" in out.out
    assert len(database.items("orders")) == 12


def test_an_incremental_export_fills_what_the_stream_never_wrote_and_never_overrides_it(
    clients, database
):
    # GIVEN a replica loaded from a full export, with the stream consumed from before it
    stream_arn = make_table(clients, count=10)
    assert loader(clients, database, export_now(clients, files=2)).run().complete
    ddb = clients.dynamodb()
    ddb.put_item(TableName="Orders", Item=item(1, name={"S": "changed in the window"}))
    ddb.delete_item(TableName="Orders", Key={"Id": {"N": "2"}})
    tail_once(clients, database, stream_arn)
    arn = ddb.describe_table(TableName="Orders")["Table"]["TableArn"]
    meta = {"WriteTimestampMicros": {"N": "1764151200000000"}}
    # ... and an incremental export of the window: key 1 in an older state than the
    # stream's, key 2 deleted, key 100 that the stream never delivered (a gap), key 200
    # created and deleted within the window
    lines = [
        [
            {
                "Metadata": meta,
                "Keys": {"Id": {"N": "1"}},
                "NewImage": wire_item(item(1, name={"S": "older than the stream"})),
            },
            {"Metadata": meta, "Keys": {"Id": {"N": "2"}}, "OldImage": wire_item(item(2))},
        ],
        [
            {"Metadata": meta, "Keys": {"Id": {"N": "100"}}, "NewImage": wire_item(item(100))},
            {"Metadata": meta, "Keys": {"Id": {"N": "200"}}},
        ],
    ]
    url = write_export(clients.s3(), BUCKET, arn, [], lines=lines, export_type="INCREMENTAL_EXPORT")
    # WHEN it is loaded
    report = loader(clients, database, url).run()
    # THEN key 100 is filled in, the stream's versions stand, nothing deleted comes back
    assert report.complete and report.items_done == 4
    rows = database.items("orders")
    assert rows["100"][0]["name"] == "item 100" and rows["100"][1] == 0
    assert rows["1"][0]["name"] == "changed in the window" and rows["1"][1] > 0
    assert deleted(database) == {"2": True, "200": True} | {
        k: False for k in rows if k not in ("2", "200")
    }
    assert rows["2"][1] > 0  # the stream's delete stands
    # ... and loading it again changes nothing
    again = loader(clients, database, url).run()
    assert again.already_complete and database.items("orders") == rows


def deleted(database) -> dict[str, bool]:
    from sqlalchemy import Text, cast

    t = database.table("orders")
    with database.engine.connect() as conn:
        return {k: bool(d) for k, d in conn.execute(select(cast(t.c.id, Text), t.c._cdc_deleted))}


def test_an_ion_export_loads_the_same_items_as_a_json_one(clients, database):
    # GIVEN the same table exported in DYNAMODB_JSON and in ION (sets annotated
    # $dynamodb_SS, numbers as Ion decimals, binary as blobs)
    from tests.exports import ion_item_line

    make_table(clients, count=15)
    ddb = clients.dynamodb()
    items = [wire_item(i) for i in ddb.scan(TableName="Orders")["Items"]]
    items[0]["scores"] = {"NS": ["10", "9.5", "12345678901234567890.123456789"]}
    items[0]["files"] = {"BS": ["AAE=", "/w=="]}
    items[0]["nothing"] = {"NULL": True}
    items[0]["flag"] = {"BOOL": False}
    arn = ddb.describe_table(TableName="Orders")["Table"]["TableArn"]
    ion = [[ion_item_line(i) for i in items[:8]], [ion_item_line(i) for i in items[8:]], []]
    url = write_export(clients.s3(), BUCKET, arn, [], lines=ion, output_format="ION")
    # WHEN the ION export is loaded
    report = loader(clients, database, url, batch_lines=4).run()
    # THEN the replica holds exactly the JSON export's items
    assert report.complete and report.items_done == 15
    ion_rows = database.items("orders")
    first = ion_rows[items[0]["Id"]["N"]][0]
    assert first["files"] == ["/w==", "AAE="] and first["nothing"] is None
    json_url = write_export(clients.s3(), BUCKET, arn, [items[:8], items[8:], []])
    orders = database.table("orders")
    with database.engine.begin() as conn:
        conn.execute(orders.delete())
    assert loader(clients, database, json_url).run().complete
    assert database.items("orders") == ion_rows


def test_an_export_of_a_single_table_design_is_routed_to_its_entities(clients, database):
    """README "Single-table designs": an export load routes items like the stream."""
    from pathlib import Path

    from cdc.config import load_settings

    ddb = clients.dynamodb()
    create_pk_sk_table(ddb, "App")
    line = {"M": {"Sku": {"S": "TEA-1"}, "Qty": {"N": "2"}, "Price": {"N": "4.50"}}}
    items = [
        {
            "PK": {"S": "CUSTOMER#1"},
            "SK": {"S": "PROFILE"},
            "Type": {"S": "customer"},
            "Name": {"S": "Ada"},
        },
        {
            "PK": {"S": "CUSTOMER#1"},
            "SK": {"S": "ORDER#2026-11-26#7"},
            "Type": {"S": "order"},
            "Total": {"N": "9.00"},
            "Lines": {"L": [line, line]},
        },
        {
            "PK": {"S": "CUSTOMER#1"},
            "SK": {"S": "ORDER#2026-11-25#6"},
            "Type": {"S": "archived"},
            "Total": {"N": "1.00"},
        },
        {"PK": {"S": "TENANT#1"}, "SK": {"S": "SETTINGS"}, "Type": {"S": "settings"}},
    ]
    for entry in items:
        ddb.put_item(TableName="App", Item=entry)
    url = export_now(clients, files=3, name="App")
    example = Path(__file__).resolve().parents[2] / "examples" / "single_table.toml"
    env = {
        "CDC_CONFIG": str(example),
        "CDC_HASH_KEY": "0123456789abcdef0123456789abcdef",
        "CDC_DATABASE_URL": database.url,
    }
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    settings = load_settings(env)
    source = describe_table(ddb, "App")
    export = Export.open(clients.s3(), url, source.arn)
    report = ExportLoad(
        clients.s3(), export, source, database.engine, settings, LoadOptions(workers=1)
    ).run()
    assert report.complete and report.errors == [] and report.applied == 4
    assert database.count("customers") == 1
    assert database.count("orders") == 1 and database.count("order_lines") == 2
    assert database.count("archived_orders") == 1
    assert [r["pk"] for r in database.rows("app")] == ["TENANT#1"]
    verified = Verifier(ddb, source, database.engine, settings, settle=0).run()
    assert verified.identical
