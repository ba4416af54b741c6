"""`cdc verify` of a source table with entities (README: "Single-table designs"): each
item is looked for in the one table its routing chooses, with its values and child rows,
and nowhere else; every live row of every entity table and of the document table has
its item. And `cdc backfill` routes the items as the stream does.

Source: moto's DynamoDB table `App` with the mapping of examples/single_table.toml.
Replica: every database under test, filled by `cdc backfill` and then tampered with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from sqlalchemy import text

from cdc.app import cli
from cdc.app.commands import verify as verify_command
from cdc.aws.clients import describe_table
from cdc.config import Settings, load_settings
from cdc.core.entity_keys import SourceKeys, template
from cdc.core.errors import ConfigError
from cdc.jobs.backfill import Backfill, BackfillOptions
from cdc.jobs.replicate import Replicator
from cdc.jobs.verify import Verifier
from tests.databases import Database
from tests.factories import create_pk_sk_table, record_from_item

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "single_table.toml"
HASH_KEY = "k" * 32


def s(value: str) -> dict:
    return {"S": value}


def n(value: str) -> dict:
    return {"N": value}


def customer(i: int, name: str) -> dict:
    return {
        "PK": s(f"CUSTOMER#{i}"),
        "SK": s("PROFILE"),
        "Type": s("customer"),
        "Name": s(name),
        "Email": s(f"{name.lower()}@example.com"),  # hashed
        "Phone": s("+49 30 1234"),  # excluded
        "Vip": {"BOOL": i % 2 == 0},
        "CreatedAt": s("2026-01-02T03:04:05Z"),
        "Note": s("unmapped: in extra"),
    }


def line(sku: str, qty: int, price: str) -> dict:
    return {"M": {"Sku": s(sku), "Qty": n(str(qty)), "Price": n(price)}}


def order(customer_id: int, day: str, order_id: int, type_: str = "order", **extra) -> dict:
    return {
        "PK": s(f"CUSTOMER#{customer_id}"),
        "SK": s(f"ORDER#{day}#{order_id}"),
        "Type": s(type_),
        "Total": n("12.50"),
        "Status": s("open"),
        "PlacedAt": n("1764000000"),
        "Lines": {"L": [line("A-1", 2, "1.25"), line("B-2", 1, "10.00")]},
        **extra,
    }


ITEMS = [
    customer(42, "Ada"),
    customer(43, "Grace"),
    customer(44, "Edsger"),
    order(42, "2026-11-26", 7),
    order(42, "2026-11-27", 8),
    order(43, "2026-10-01", 3, "archived"),
    # No entity takes these: the document table `app`.
    {"PK": s("CONFIG"), "SK": s("GLOBAL"), "Type": s("config"), "Mode": s("on")},
    {"PK": s("CUSTOMER#42"), "SK": s("NOTE#1"), "Text": s("call back")},
]


def app_settings(db: Database) -> Settings:
    env = {"CDC_CONFIG": str(EXAMPLE), "CDC_HASH_KEY": HASH_KEY, "CDC_DATABASE_URL": db.url}
    if db.schema is not None:
        env["CDC_SCHEMA"] = db.schema
    return load_settings(env)


@pytest.fixture
def app(clients, database):
    """`App` (PK S, SK S) with ITEMS, replicated into `database` by a backfill; returns
    (database, settings, source)."""
    ddb = clients.dynamodb()
    create_pk_sk_table(ddb, "App")
    for item in ITEMS:
        ddb.put_item(TableName="App", Item=item)
    settings = app_settings(database)
    source = describe_table(ddb, "App")
    report = Backfill(ddb, source, database.engine, settings, BackfillOptions(segments=2)).run()
    assert report.complete and report.dead_lettered == 0
    return database, settings, source


def verify(clients, app):
    database, settings, source = app
    return Verifier(clients.dynamodb(), source, database.engine, settings, settle=0).run()


def sql(database: Database, statement: str) -> None:
    prefix = f"{database.schema}." if database.schema else ""
    with database.engine.begin() as conn:
        conn.execute(text(statement.format(s=prefix)))


def live(database: Database, table: str) -> list[dict]:
    return [r for r in database.rows(table) if not r["_cdc_deleted"]]


def test_backfill_routes_items_to_entity_tables(app):
    database, _, _ = app
    customers = {r["customer_id"]: r for r in live(database, "customers")}
    assert sorted(customers) == [42, 43, 44]
    assert customers[42]["name"] == "Ada" and customers[42]["email"] != "ada@example.com"
    assert sorted((r["customer_id"], r["order_id"]) for r in live(database, "orders")) == [
        (42, 7),
        (42, 8),
    ]
    assert [(r["customer_id"], r["order_id"]) for r in live(database, "archived_orders")] == [
        (43, 3)
    ]
    lines = sorted(
        (r["order_id"], r["position"], r["sku"], r["qty"]) for r in database.rows("order_lines")
    )
    assert lines == [(7, 0, "A-1", 2), (7, 1, "B-2", 1), (8, 0, "A-1", 2), (8, 1, "B-2", 1)]
    assert sorted((r["pk"], r["sk"]) for r in live(database, "app")) == [
        ("CONFIG", "GLOBAL"),
        ("CUSTOMER#42", "NOTE#1"),
    ]


def test_verify_finds_each_kind_of_planted_difference_in_entity_tables(clients, app):
    database, settings, source = app
    ddb = clients.dynamodb()
    # GIVEN the backfilled replica: identical, every live row of every table checked
    report = verify(clients, app)
    assert report.identical, report.as_json()
    assert report.source_items == len(ITEMS) and report.replica_rows == len(ITEMS)
    assert "customers" in report.replica_table and "app" in report.replica_table

    # an order archived through the stream: it moves, and the replica is still identical
    archived = order(42, "2026-11-27", 8, "archived")
    ddb.put_item(TableName="App", Item=archived)
    change = record_from_item(archived, source.key_names, source.synthetic_stream_arn("s"))
    change["eventName"] = "MODIFY"
    change["dynamodb"]["SequenceNumber"] = str(10**20)
    assert Replicator(database.engine, settings).process([change]).failed == 0
    assert verify(clients, app).identical

    # WHEN the replica is broken in each way
    # a row missing from its entity table; an unmatched item missing from `app`
    sql(database, "delete from {s}customers where customer_id = 43")
    sql(database, "delete from {s}app where pk = 'CONFIG'")
    # a live row left in the old entity table after the type change
    sql(database, "update {s}orders set _cdc_deleted = false where order_id = 8")
    # a wrong value, and a wrong child row
    sql(database, "update {s}customers set name = 'Wrong' where customer_id = 42")
    sql(database, "update {s}order_lines set qty = 99 where order_id = 7 and position = 1")
    # a live row whose source item is gone (the stream never heard of the delete)
    ddb.delete_item(TableName="App", Key={"PK": s("CUSTOMER#44"), "SK": s("PROFILE")})

    report = verify(clients, app)

    # THEN each is reported, naming its table, by the source key
    assert report.counts == {
        "missing": 2,
        "extra": 2,
        "different": 2,
        "unreplicable": 0,
        "kept": 0,
    }, report.as_json()
    shown = {
        kind: sorted(
            (d.table, d.key["PK"], d.key["SK"], tuple(d.attributes), d.detail)
            for d in report.examples[kind]
        )
        for kind in ("missing", "extra", "different")
    }
    assert shown["missing"] == [
        ("app", "CONFIG", "GLOBAL", (), None),
        ("customers", "CUSTOMER#43", "PROFILE", (), None),
    ]
    assert shown["extra"] == [
        ("customers", "CUSTOMER#44", "PROFILE", (), None),
        ("orders", "CUSTOMER#42", "ORDER#2026-11-27#8", (), "the item is in archived_orders"),
    ]
    assert shown["different"] == [
        ("customers", "CUSTOMER#42", "PROFILE", ("name",), None),
        ("orders", "CUSTOMER#42", "ORDER#2026-11-26#7", ("order_lines[1].qty",), None),
    ]
    assert report.rechecked
    assert report.as_json()["examples"]["extra"][0]["table"] in {"customers", "orders"}


def test_child_rows_missing_extra_or_without_a_parent_are_differences(clients, app):
    database, _, _ = app
    sql(database, "delete from {s}order_lines where order_id = 7 and position = 0")
    sql(database, "delete from {s}order_lines where order_id = 8 and position = 1")
    sql(
        database,
        "insert into {s}order_lines (customer_id, order_day, order_id, position, sku, qty) "
        "values (42, '2026-11-26', 7, 5, 'X-9', 1), (42, '2026-11-25', 5, 0, 'X-9', 1)",
    )
    report = verify(clients, app)
    assert report.counts["different"] == 2 and report.counts["extra"] == 1, report.as_json()
    # Child rows compare by position, under the parent's source key.
    attributes = {d.key["SK"]: d.attributes for d in report.examples["different"]}
    assert attributes == {
        "ORDER#2026-11-26#7": ["order_lines[0]", "order_lines[5]"],
        "ORDER#2026-11-27#8": ["order_lines[1]"],
    }
    # Child rows of no live parent row: extra, named by the parent's source key.
    (orphan,) = report.examples["extra"]
    assert orphan.table == "order_lines"
    assert orphan.key == {"PK": "CUSTOMER#42", "SK": "ORDER#2026-11-25#5"}
    assert orphan.detail == "child rows of no live row of orders"


def test_the_command_names_each_difference_s_table_and_refuses_sampling(
    clients, app, monkeypatch, capsys
):
    database, settings, _ = app
    sql(database, "delete from {s}customers where customer_id = 43")
    code = verify_command.run(settings, args_for(), clients=clients)
    out = capsys.readouterr().out
    assert code == 1
    assert "missing (in the source, not live in the replica): 1\n" in out
    assert '  {"PK":"CUSTOMER#43","SK":"PROFILE"} in customers\n' in out

    # --sample: one line saying it is not supported (yet), not a wrong report
    monkeypatch.setenv("CDC_CONFIG", str(EXAMPLE))
    monkeypatch.setenv("CDC_HASH_KEY", HASH_KEY)
    monkeypatch.setenv("CDC_DATABASE_URL", database.url)
    if database.schema is not None:
        monkeypatch.setenv("CDC_SCHEMA", database.schema)
    monkeypatch.setattr("cdc.aws.clients.Clients", lambda *a, **k: clients)
    assert cli.main(["verify", "App", "--sample", "0.5", "--settle", "0"]) == 2
    err = capsys.readouterr().err
    assert "cdc: error: verify --sample is not supported for table 'App'" in err
    with pytest.raises(ConfigError, match="--sample is not supported"):
        Verifier(clients.dynamodb(), app[2], database.engine, settings, sample=0.5)


def args_for(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    verify_command.add_arguments(parser)
    return parser.parse_args(["App", "--settle", "0", *argv])


# --- entity table keys back to source keys (cdc/core/entity_keys.py) ---------------------


def test_key_patterns_run_backwards_when_literal_outside_their_groups():
    settings = load_settings({"CDC_CONFIG": str(EXAMPLE), "CDC_HASH_KEY": HASH_KEY})
    customer_, order_, _ = settings.tables["App"].entities
    from datetime import date

    assert SourceKeys(customer_, {"PK": "S", "SK": "S"}).source_key((42,)) == {
        "PK": s("CUSTOMER#42"),
        "SK": s("PROFILE"),
    }
    keys = SourceKeys(order_, {"PK": "S", "SK": "S"})
    assert keys.why_not is None
    assert keys.source_key((42, date(2026, 11, 26), 7)) == {
        "PK": s("CUSTOMER#42"),
        "SK": s("ORDER#2026-11-26#7"),
    }
    assert keys.source_key((-1, date(2026, 11, 26), 7)) is None  # no key gives it
    assert template(r"^A\#(?P<x>[)]+)$")[0] is not None
    assert template("A|B") == (None, "'|' outside a named group")
    assert template("(?P<x>a)?")[1] == "a quantified named group"


USERS = """
[tables.Users]
unmatched = "dead_letter"

[tables.Users.entities.user]
table = "profiles"
key.PK = "(?:USER|U)#(?P<user_id>\\\\d+)"
key.SK = "PROFILE"
key_columns = { user_id = "bigint" }

[tables.Users.entities.user.columns]
Name = "text"
"""


def test_unmatched_dead_letters_and_keys_that_cannot_be_run_backwards(clients, database, tmp_path):
    # GIVEN entity keys of a pattern with an alternation (not invertible), and an item
    # no entity takes under unmatched = "dead_letter"
    mapping = tmp_path / "users.toml"
    mapping.write_text(USERS)
    env = {"CDC_CONFIG": str(mapping), "CDC_DATABASE_URL": database.url}
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    settings = load_settings(env)
    ddb = clients.dynamodb()
    create_pk_sk_table(ddb, "Users")
    for pk in ("USER#1", "U#2", "USER#3"):
        ddb.put_item(TableName="Users", Item={"PK": s(pk), "SK": s("PROFILE"), "Name": s(pk)})
    ddb.put_item(TableName="Users", Item={"PK": s("OTHER"), "SK": s("X")})
    source = describe_table(ddb, "Users")
    backfilled = Backfill(ddb, source, database.engine, settings, BackfillOptions(segments=1)).run()
    assert backfilled.dead_lettered == 1
    assert sorted(r["user_id"] for r in live(database, "profiles")) == [1, 2, 3]

    # WHEN two items are gone from the source (the stream never told), one changed
    ddb.delete_item(TableName="Users", Key={"PK": s("USER#1"), "SK": s("PROFILE")})
    ddb.delete_item(TableName="Users", Key={"PK": s("U#2"), "SK": s("PROFILE")})
    ddb.put_item(TableName="Users", Item={"PK": s("USER#3"), "SK": s("PROFILE"), "Name": s("x")})
    report = Verifier(ddb, source, database.engine, settings, settle=0).run()

    # THEN the unmatched item is unreplicable (the routing's own words); rows whose
    # source key cannot be told are extra all the same, shown by their key columns
    assert report.counts == {
        "missing": 0,
        "extra": 2,
        "different": 1,
        "unreplicable": 1,
        "kept": 0,
    }, report.as_json()
    (unmatched,) = report.examples["unreplicable"]
    assert unmatched.key == {"PK": "OTHER", "SK": "X"} and "matches no entity" in unmatched.detail
    extra = sorted(report.examples["extra"], key=lambda d: d.key["user_id"])
    assert [d.key for d in extra] == [{"user_id": 1}, {"user_id": 2}]
    assert all(d.table == "profiles" for d in extra)
    assert "source key unknown" in extra[0].detail and "not invertible" in extra[0].detail
    (changed,) = report.examples["different"]
    assert changed.key == {"PK": "USER#3", "SK": "PROFILE"} and changed.attributes == ["name"]
