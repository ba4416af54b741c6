"""`cdc verify`: each kind of planted difference is found, and only real ones.

Source: moto's DynamoDB. Replica: the real PostgreSQL of tests/conftest.py, filled by
`cdc backfill` and then tampered with.
"""

from __future__ import annotations

import argparse
import json
import time

import pytest
from sqlalchemy import text

from cdc.app import cli
from cdc.app.commands import verify as verify_command
from cdc.aws.clients import describe_table
from cdc.core.compare import _in_sample, same
from cdc.jobs.backfill import Backfill, BackfillOptions
from cdc.jobs.replicate import Replicator
from cdc.jobs.verify import Verifier
from tests.factories import record_from_item

REGION = "eu-central-1"
BIG = "12345678901234567890123456789012345678"


def item(pk: str, sk: int, **extra) -> dict:
    return {
        "pk": {"S": pk},
        "sk": {"N": str(sk)},
        "big": {"N": BIG},
        "price": {"N": "1.50"},
        "blob": {"B": b"\x00\x01"},
        "tags": {"SS": ["x", "y"]},
        "on": {"BOOL": True},
        **extra,
    }


@pytest.fixture
def table(clients, pg_engine, pg_settings):
    """`Events` (pk S, sk N): 20 items, replicated by a backfill."""
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Events",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(20):
        ddb.put_item(TableName="Events", Item=item(f"user#{i % 4}", i))
    source = describe_table(ddb, "Events")
    report = Backfill(ddb, source, pg_engine, pg_settings, BackfillOptions(segments=2)).run()
    assert report.complete
    return source


def run_verify(clients, pg_engine, pg_settings, **kw):
    source = describe_table(clients.dynamodb(), "Events")
    return Verifier(clients.dynamodb(), source, pg_engine, pg_settings, settle=0, **kw).run()


def sql(pg_engine, statement, **params):
    with pg_engine.begin() as c:
        c.execute(text(statement), params)


def args_for(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    verify_command.add_arguments(parser)
    return parser.parse_args(["Events", "--settle", "0", *argv])


def test_identical_replica_verifies(clients, table, pg_engine, pg_settings, capsys):
    report = run_verify(clients, pg_engine, pg_settings)
    assert report.identical and report.source_items == 20 and report.replica_rows == 20
    code = verify_command.run(pg_settings, args_for(), clients=clients)
    out = capsys.readouterr().out
    assert code == 0 and "result: identical" in out


def test_each_kind_of_planted_difference_is_found(
    clients, table, pg_engine, pg_settings, pg_schema, capsys
):
    ddb = clients.dynamodb()
    events = f'"{pg_schema}".events'
    # missing: a row deleted from the replica, and one soft-deleted there
    sql(pg_engine, f"delete from {events} where pk = 'user#1' and sk = 1")
    sql(pg_engine, f"update {events} set _cdc_deleted = true where pk = 'user#2' and sk = 2")
    # extra: a live replica row with no source item
    extra = record_from_item(item("ghost", 99), table.key_names, table.synthetic_stream_arn("x"))
    assert Replicator(pg_engine, pg_settings).process([extra]).failed == 0
    # different: the source changed without the replica hearing of it, in the 38th
    # digit of a number (float would not see it), and an attribute added
    ddb.put_item(
        TableName="Events",
        Item=item("user#3", 3, big={"N": BIG[:-1] + "9"}, note={"S": "new"}),
    )
    # different in type only: a boolean that became the number 1 (Python: True == 1)
    ddb.put_item(TableName="Events", Item=item("user#0", 4, on={"N": "1"}))

    report = run_verify(clients, pg_engine, pg_settings)

    assert report.counts == {
        "missing": 2,
        "extra": 1,
        "different": 2,
        "unreplicable": 0,
        "kept": 0,
    }
    assert {json.dumps(d.key, default=str) for d in report.examples["missing"]} == {
        '{"pk": "user#1", "sk": "1"}',
        '{"pk": "user#2", "sk": "2"}',
    }
    (ghost,) = report.examples["extra"]
    assert ghost.key["pk"] == "ghost"
    attributes = {d.key["pk"]: d.attributes for d in report.examples["different"]}
    assert attributes == {"user#3": ["big", "note"], "user#0": ["on"]}
    assert report.rechecked

    # through the command: exit 1 and a readable report
    code = verify_command.run(pg_settings, args_for("--examples", "1"), clients=clients)
    out = capsys.readouterr().out
    assert code == 1
    assert "missing (in the source, not live in the replica): 2" in out
    assert "... and 1 more" in out
    assert 'extra (live in the replica, not in the source): 1\n  {"pk":"ghost","sk":99}' in out
    assert "result: DIFFERENT" in out


def test_a_change_in_flight_is_not_reported(clients, table, pg_engine, pg_settings):
    # GIVEN the source changed and the stream has not delivered it yet
    ddb = clients.dynamodb()
    ddb.put_item(TableName="Events", Item=item("user#1", 5, price={"N": "2"}))
    changed = record_from_item(
        item("user#1", 5, price={"N": "2"}), table.key_names, table.synthetic_stream_arn("s")
    )
    changed["eventName"], changed["dynamodb"]["SequenceNumber"] = "MODIFY", "100000000000000000001"

    # WHEN the stream delivers it while verify waits to read the candidates again
    def settle(seconds):
        assert Replicator(pg_engine, pg_settings).process([changed]).failed == 0

    source = describe_table(ddb, "Events")
    report = Verifier(ddb, source, pg_engine, pg_settings, settle=1, sleep=settle).run()

    # THEN nothing is reported
    assert report.identical and report.rechecked


def test_missing_replica_table_means_everything_is_missing(clients, pg_engine, pg_settings):
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Events",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName="Events", Item={"pk": {"S": "a"}})
    report = run_verify(clients, pg_engine, pg_settings)
    assert report.counts["missing"] == 1 and not report.rechecked


def test_sampling_reads_a_fraction_and_still_finds_extras(clients, table, pg_engine, pg_settings):
    # a planted extra row whose key falls in the sample (sampling by key hash is stable)
    replicator = Replicator(pg_engine, pg_settings)
    spec = Verifier(clients.dynamodb(), table, pg_engine, pg_settings).spec
    for n in range(1000, 1100):
        record = record_from_item(
            item("ghost", n), table.key_names, table.synthetic_stream_arn("x")
        )
        key = spec.key_of(replicator.prepare([record]).changes[0])
        if _in_sample(key, 0.3):
            assert replicator.process([record]).failed == 0
            break
    report = run_verify(clients, pg_engine, pg_settings, sample=0.3, seed=7)
    assert report.sample == 0.3
    assert report.source_items < 20
    assert report.counts["extra"] == 1 and report.counts["missing"] == 0


def test_same_compares_plain_json_exactly():
    from decimal import Decimal

    assert same({"a": [Decimal("1.50")]}, {"a": [Decimal("1.5")]})
    assert not same(True, Decimal(1))
    assert not same({"a": None}, {})
    assert not same(Decimal(BIG), Decimal(BIG[:-1] + "9"))


def test_cli_verify_json(clients, table, pg_engine, pg_schema, monkeypatch, capsys):
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    assert cli.main(["verify", "Events", "--json", "--settle", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical"] is True and report["source_items"] == 20


def test_verify_help():
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", "--help"])
    assert exit_.value.code == 0


def test_typed_mapping_is_compared_column_by_column(
    clients, pg_engine, pg_schema, tmp_path, capsys
):
    # GIVEN a typed mapping: declared columns, the rest of each item in `extra`
    from cdc.config import load_settings

    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        "[tables.Things]\n"
        'keys = ["Id"]\n'
        "[tables.Things.columns]\n"
        'Id = "bigint"\n'
        'Amount = "numeric"\n'
        'At = "timestamptz"\n'
        'Tags = "text[]"\n'
        'Doc = "jsonb"\n'
    )
    settings = load_settings(
        {
            "CDC_CONFIG": str(mapping),
            "CDC_DATABASE_URL": pg_engine.url.render_as_string(hide_password=False),
            "CDC_SCHEMA": pg_schema,
        }
    )
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Things",
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def thing(i, amount=BIG, note="n"):
        return {
            "Id": {"N": str(i)},
            "Amount": {"N": amount},
            "At": {"S": "2026-01-02T03:04:05Z"},
            "Tags": {"SS": ["a", "b"]},
            "Doc": {"M": {"x": {"N": "1.50"}}},
            "note": {"S": note},  # unmapped: lands in `extra`
        }

    for i in range(5):
        ddb.put_item(TableName="Things", Item=thing(i))
    source = describe_table(ddb, "Things")
    assert Backfill(ddb, source, pg_engine, settings, BackfillOptions(segments=1)).run().complete
    verifier = Verifier(ddb, source, pg_engine, settings, settle=0)
    assert verifier.spec.key_names == ("id",) and "amount" in verifier.spec.value_names
    assert verifier.run().identical

    # WHEN a declared column and an unmapped attribute change in the source
    ddb.put_item(TableName="Things", Item=thing(1, amount=BIG[:-1] + "0"))
    ddb.put_item(TableName="Things", Item=thing(2, note="changed"))

    # THEN each is named by its column (and `extra.<attribute>` for unmapped ones)
    report = Verifier(ddb, source, pg_engine, settings, settle=0).run()
    attributes = {d.key["Id"]: d.attributes for d in report.examples["different"]}
    assert attributes == {1: ["amount"], 2: ["extra.note"]}


# --- options and limits of the replica ---------------------------------------------------


def sessions_table(clients, db, items):
    """`Sessions` (id S) with TTL on `expires`, replicated by a backfill into `db` with
    ttl_deletes = "ignore"; returns (settings, source)."""
    from cdc.core.mapping import TableOptions

    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Sessions",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(
        TableName="Sessions",
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"},
    )
    for item_ in items:
        ddb.put_item(TableName="Sessions", Item=item_)
    settings = db.settings_with(Sessions=TableOptions(ttl_deletes="ignore"))
    source = describe_table(ddb, "Sessions")
    assert Backfill(ddb, source, db.engine, settings, BackfillOptions(segments=1)).run().complete
    return settings, source


def test_rows_kept_by_ttl_deletes_ignore_are_counted_apart(clients, db, capsys):
    from cdc.app.commands.verify import print_report
    from tests.factories import remove

    now = int(time.time())
    items = {
        "gone-1": {"id": {"S": "gone-1"}, "expires": {"N": str(now - 3600)}},
        "gone-2": {"id": {"S": "gone-2"}, "expires": {"N": str(now - 60)}},
        "live": {"id": {"S": "live"}, "expires": {"N": str(now + 3600)}},
        "forever": {"id": {"S": "forever"}},
        "later": {"id": {"S": "later"}, "expires": {"N": str(now + 3600)}},
    }
    settings, source = sessions_table(clients, db, items.values())
    ddb = clients.dynamodb()

    # DynamoDB's TTL deletes two expired items; the stream's TTL REMOVEs are ignored
    records = []
    for seq, name in enumerate(("gone-1", "gone-2"), start=1):
        ddb.delete_item(TableName="Sessions", Key={"id": {"S": name}})
        expires = int(items[name]["expires"]["N"])
        records.append(remove({"id": name}, seq, {"expires": expires}, table="Sessions", ttl=True))
    result = Replicator(db.engine, settings).process(records)
    assert result.applied == 0 and not result.failed  # ignored: the rows stay live

    report = Verifier(ddb, source, db.engine, settings, settle=0).run()
    assert report.counts["kept"] == 2 and report.counts["extra"] == 0, report.counts
    assert report.identical
    assert sorted(d.key["id"] for d in report.examples["kept"]) == ["gone-1", "gone-2"]
    print_report(report)
    out = capsys.readouterr().out
    assert 'kept (ttl_deletes = "ignore"' in out and "result: identical" in out

    # a row whose item is gone without having expired is still extra: nothing TTL did
    for name in ("forever", "later"):
        ddb.delete_item(TableName="Sessions", Key={"id": {"S": name}})
    report = Verifier(ddb, source, db.engine, settings, settle=0).run()
    assert report.counts["kept"] == 2 and report.counts["extra"] == 2, report.counts
    assert not report.identical
    assert sorted(d.key["id"] for d in report.examples["extra"]) == ["forever", "later"]


def test_a_key_too_long_for_the_replica_is_unreplicable_not_missing(clients, db):
    """MySQL/MariaDB key columns hold 384 characters: a longer S key is dead-lettered by
    the apply path, and verify says so (PostgreSQL holds it: identical there)."""
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Long",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    long_key = "k" * 400
    for pk in ("short", long_key):
        ddb.put_item(TableName="Long", Item={"pk": {"S": pk}, "v": {"N": "1"}})
    source = describe_table(ddb, "Long")
    backfilled = Backfill(ddb, source, db.engine, db.settings, BackfillOptions(segments=1)).run()
    report = Verifier(ddb, source, db.engine, db.settings, settle=0).run()

    if db.name == "postgresql":
        assert backfilled.dead_lettered == 0 and report.identical
        return
    assert backfilled.dead_lettered == 1  # the apply path could not store it
    assert report.counts["missing"] == 0, report.counts
    assert report.counts["unreplicable"] == 1
    (difference,) = report.examples["unreplicable"]
    assert difference.key == {"pk": long_key}
    assert "at most 384 characters" in (difference.detail or "")
    assert "this key has 400" in (difference.detail or "")


def test_verify_json_prints_numbers_as_numbers(
    clients, table, pg_engine, pg_schema, monkeypatch, capsys
):
    sql(pg_engine, f'delete from "{pg_schema}".events where sk = 7')
    monkeypatch.setenv("CDC_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", pg_schema)
    assert cli.main(["verify", "Events", "--json", "--settle", "0"]) == 1
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report["missing"] == 1
    assert report["examples"]["missing"] == [{"key": {"pk": "user#3", "sk": 7}}]
    assert '"sk":7' in out.replace(" ", "")


@pytest.mark.parametrize("option", ["--rate=0", "--rate=-5", "--page-size=0"])
def test_rate_and_page_size_must_be_positive(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", "Events", option])
    assert exit_.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_a_missing_item_with_a_pending_dead_letter_is_unreplicable(
    clients, table, pg_engine, pg_settings, pg_schema
):
    from tests.factories import record

    # GIVEN the stream dead-lettered a change of (user#1, 5) whose row is not there, and
    # another row is missing for no known reason
    bad = record(
        "MODIFY", {"pk": "user#1", "sk": 5}, 10**20, new={"pk": "user#1", "sk": 5}, table="Events"
    )
    bad["dynamodb"]["NewImage"]["on"] = {"BOOL": "yes"}
    assert Replicator(pg_engine, pg_settings).process([bad]).dead_lettered == 1
    sql(pg_engine, f'delete from "{pg_schema}".events where sk in (5, 6)')

    report = run_verify(clients, pg_engine, pg_settings)

    # THEN the first is unreplicable, naming its letter; the second is missing
    assert report.counts["missing"] == 1 and report.counts["unreplicable"] == 1, report.counts
    assert [d.key for d in report.examples["missing"]] == [{"pk": "user#2", "sk": 6}]
    (difference,) = report.examples["unreplicable"]
    assert difference.key == {"pk": "user#1", "sk": 5}
    assert difference.detail.startswith("dead letter ")
    assert "decode" in difference.detail and "BOOL" in difference.detail
